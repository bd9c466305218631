"""The CUDA resize / resize_grad item function (runtime/cuda/resize_gather.h, GRAPHC_HD) run on the
host through tests/resize_gather_driver.cc, against the CPU kernel (runtime/cpu/tensor_extra.cc)
bit for bit: every registry example of both ops and random cases over all coordinate transforms,
nearest modes, exclude_outside, sizes and scales.  The GPU evaluates the same code (its products
and sums rounded one by one: no FMA), so this checks the CUDA kernel's tap walk, including the
binary-searched transposed taps of resize_grad, without a GPU."""

import os
import shutil
import subprocess

import numpy as np
import pytest
from single_op import single_op_graph

import graphc as gc
from graphc import registry
from graphc.session import Session

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CTM = ["half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners", "asymmetric",
       "tf_half_pixel_for_nn"]  # the order of cpu::ResizeCtm
NEAREST = ["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"]  # cpu::ResizeNearest


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    cxx = shutil.which(os.environ.get("CXX", "g++").split()[-1]) or shutil.which("g++")
    if cxx is None:
        pytest.skip("no C++ compiler (g++) on PATH: the resize driver cannot be built")
    exe = str(tmp_path_factory.mktemp("resize") / "resize_gather_driver")
    cmd = [cxx, "-O1", "-std=c++17", "-Wall", "-Werror", "-ffp-contract=off", "-I", os.path.join(ROOT, "runtime"),
           os.path.join(ROOT, "tests", "resize_gather_driver.cc"), "-o", exe]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    proc = subprocess.Popen([exe], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    yield proc
    proc.stdin.close()
    proc.wait(timeout=30)


def _axis(xd_a, yd_a, size, scale):
    """(resized, scale) of one axis, as cpu::resize_axis decides."""
    if size == -1 or yd_a == 0:
        return 0, 1.0
    s = scale if scale is not None else yd_a / xd_a
    keep = yd_a == xd_a and abs(s - 1.0) <= 1e-9 * max(1.0, abs(s))
    return (0 if keep else 1), s


def _device_items(proc, grad, xd, attrs, src):
    sizes, scales = attrs["sizes"], attrs.get("scales")
    yd = [x if s == -1 else s for x, s in zip(xd, sizes)]
    dst, sd = (xd, yd) if grad else (yd, xd)
    linear = attrs["mode"] == "linear"
    head = [int(grad), int(linear or grad), CTM.index(attrs["coordinate_transformation_mode"]),
            NEAREST.index(attrs["nearest_mode"]), int(linear), int(bool(attrs["exclude_outside"])), len(xd)]
    lines = [" ".join(map(str, head))]
    for a in range(len(xd)):
        resized, scale = _axis(xd[a], yd[a], sizes[a], None if scales is None else scales[a])
        lines.append(f"{dst[a]} {int(np.prod(sd[a + 1:]))} {resized} {xd[a]} {yd[a]} {float(scale).hex()}")
    flat = np.asarray(src, dtype=np.float64).ravel()
    lines += [str(flat.size), " ".join(float(v).hex() for v in flat)]
    proc.stdin.write("\n".join(lines) + "\n")
    proc.stdin.flush()
    out = []
    while (line := proc.stdout.readline().strip()) != "end":
        assert line, "the driver stopped"
        out.append(float.fromhex(line))
    return np.array(out).reshape(dst)


def _cpu(opname, inputs, attrs):
    class Ex:
        pass

    ex = Ex()
    ex.inputs, ex.attrs = inputs, attrs
    g, _, outs, shapes, feeds = single_op_graph(registry.get_op(opname), ex)
    plan = gc.compile(g, shapes=shapes, fetches=[outs[0].name])
    return Session(plan).run(feeds)[outs[0].name]


def _check(proc, opname, inputs, attrs):
    x = np.asarray(inputs[0] if opname == "resize" else inputs[1])
    if x.ndim == 0 or x.size == 0 or np.asarray(inputs[0]).size == 0:
        return False
    want = _cpu(opname, inputs, attrs)
    got = _device_items(proc, opname == "resize_grad", list(x.shape), attrs, inputs[0]).astype(want.dtype)
    assert got.tobytes() == want.tobytes(), (opname, x.shape, attrs)
    return True


@pytest.mark.parametrize("opname", ["resize", "resize_grad"])
def test_registry_examples_match_the_cpu_kernel_bit_for_bit(driver, opname):
    checked = 0
    for ex in registry.get_op(opname).examples(np.random.default_rng(1)):
        checked += _check(driver, opname, [np.asarray(v) for v in ex.inputs], ex.attrs)
    assert checked >= 10


def test_random_cases_match_the_cpu_kernel_bit_for_bit(driver):
    rng = np.random.default_rng(7)
    for _ in range(80):
        rank = int(rng.integers(1, 4))
        xd = [int(rng.integers(1, 9)) for _ in range(rank)]
        use_scales = bool(rng.random() < 0.4)
        sizes, scales = [], []
        for a in range(rank):
            if rng.random() < 0.2:
                sizes.append(-1)
                scales.append(1.0)
                continue
            s = float(np.round(rng.uniform(0.3, 3.5), 2))
            sizes.append(max(1, int(np.floor(xd[a] * s))) if use_scales else int(rng.integers(1, 20)))
            scales.append(s)
        ctm = CTM[int(rng.integers(0, len(CTM)))]
        mode = "nearest" if ctm == "tf_half_pixel_for_nn" or rng.random() < 0.4 else "linear"
        attrs = {"sizes": tuple(sizes), "scales": tuple(scales) if use_scales else None, "mode": mode,
                 "coordinate_transformation_mode": ctm, "nearest_mode": NEAREST[int(rng.integers(0, 4))],
                 "exclude_outside": bool(rng.random() < 0.3)}
        dt = np.float64 if rng.random() < 0.5 else np.float32
        x = rng.standard_normal(xd).astype(dt)
        assert _check(driver, "resize", [x], attrs)
        yd = [v if s == -1 else s for v, s in zip(xd, sizes)]
        assert _check(driver, "resize_grad", [rng.standard_normal(yd).astype(dt), x], attrs)
