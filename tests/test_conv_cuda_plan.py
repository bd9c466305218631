"""The conv ops' workspaces for target "cuda" (runtime/cuda/conv.cu reads them): a rank-1 cuDNN
workspace bound, grad_input's flag at its end, grad_weight's partial products of the own kernel's
split reduction — and the CPU plan's workspaces untouched.  Runs without a GPU."""

import os
import re
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import graphc.ops  # noqa: F401  (registers the ops)
from graphc import registry
from graphc.ops import conv

CUDA_DIR = Path(__file__).resolve().parents[1] / "runtime" / "cuda"


def _ws(op, inputs, outputs, attrs, target):
    node = SimpleNamespace(op=op, attrs=attrs)
    return list(registry.get_op(op).workspace(registry.WorkspaceContext(node, inputs, outputs, target)))


def _attrs(stride=(1, 1), pads=(1, 1, 1, 1), dilation=(1, 1), groups=1, **extra):
    return dict(stride=stride, pads=pads, dilation=dilation, groups=groups, **extra)


def test_constants_match_the_cuda_kernel():
    tile = re.search(r"constexpr int kBM = (\d+), kBN = (\d+)", (CUDA_DIR / "conv_problems.h").read_text())
    flag = re.search(r"constexpr size_t kFlagBytes = (\d+);", (CUDA_DIR / "conv.cu").read_text())
    assert tile and flag, "conv_problems.h / conv.cu no longer declare kBM, kBN / kFlagBytes"
    assert int(tile.group(1)) == int(tile.group(2)) == conv.CUDA_TILE
    assert int(flag.group(1)) == conv.CUDA_FLAG_BYTES


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_forward_workspace_is_the_bounded_column_matrix(dtype):
    item = np.dtype(dtype).itemsize
    # small: the 1 MiB floor
    (w0,) = _ws("conv2d", [(dtype, (2, 3, 5, 5)), (dtype, (4, 3, 3, 3))], [(dtype, (2, 4, 5, 5))], _attrs(), "cuda")
    assert w0 == (dtype, ((1 << 20) // item,))
    # the column matrix of the batch: 8 images · 64·3·3 rows · 32·32 positions
    col = 8 * 64 * 9 * 32 * 32 * item
    (w1,) = _ws("conv2d", [(dtype, (8, 64, 32, 32)), (dtype, (64, 64, 3, 3))], [(dtype, (8, 64, 32, 32))],
                _attrs(), "cuda")
    assert w1 == (dtype, (col // item,))
    # a huge one: the 256 MiB cap
    (w2,) = _ws("conv2d", [(dtype, (256, 256, 56, 56)), (dtype, (256, 256, 3, 3))],
                [(dtype, (256, 256, 56, 56))], _attrs(), "cuda")
    assert w2 == (dtype, ((256 << 20) // item,))


def test_grad_input_workspace_has_the_flag():
    (w,) = _ws("conv2d_grad_input", [("float32", (2, 4, 5, 5)), ("float32", (4, 3, 3, 3))],
               [("float32", (2, 3, 5, 5))], _attrs(input_size=(5, 5)), "cuda")
    assert w == ("float32", (((1 << 20) + 256) // 4,))


def test_empty_outputs_plan_no_cuda_workspace():
    assert _ws("conv2d", [("float32", (0, 2, 4, 4)), ("float32", (3, 2, 3, 3))], [("float32", (0, 3, 4, 4))],
               _attrs(), "cuda") == []
    assert _ws("conv2d_grad_input", [("float32", (0, 3, 4, 4)), ("float32", (3, 2, 3, 3))],
               [("float32", (0, 2, 4, 4))], _attrs(input_size=(4, 4)), "cuda") == []
    assert _ws("conv2d_grad_weight", [("float32", (2, 0, 2, 2)), ("float32", (2, 2, 4, 4))],
               [("float32", (0, 2, 3, 3))], _attrs(pads=(0, 0, 0, 0), kernel_size=(3, 3)), "cuda") == []


def test_grad_weight_splits_its_reduction_when_the_weight_is_small():
    # 64 x 576 weight: 1 x 9 tiles; reduction 32·32·32 = 32768 items -> min(64, ceil(264/9)=30, 64) = 30
    ws = _ws("conv2d_grad_weight", [("float32", (32, 64, 32, 32)), ("float32", (32, 64, 32, 32))],
             [("float32", (64, 64, 3, 3))], _attrs(kernel_size=(3, 3)), "cuda")
    assert len(ws) == 2 and len(ws[0][1]) == 1
    assert ws[1] == ("float32", (30, 64 * 64 * 9))
    # a short reduction (1 image of 4x4): no split, no second workspace
    ws = _ws("conv2d_grad_weight", [("float32", (1, 4, 4, 4)), ("float32", (1, 3, 4, 4))],
             [("float32", (4, 3, 3, 3))], _attrs(kernel_size=(3, 3)), "cuda")
    assert len(ws) == 1


def test_cpu_target_keeps_the_cpu_workspaces():
    args = ([("float32", (2, 3, 5, 5)), ("float32", (4, 3, 3, 3))], [("float32", (2, 4, 5, 5))], _attrs())
    cpu = _ws("conv2d", *args, "cpu")
    assert cpu == conv._col_request("float32", 2, 3, (3, 3), (5, 5), panels=True)
    assert all(len(dims) != 1 for _, dims in cpu)  # conv.cu tells the plans apart by ws[0]'s rank


# -- the CUDA fallback kernel's index maps, run on the CPU -----------------------------------------
# tests/cuda_conv_emul.cc runs runtime/cuda/conv_problems.h (what igemm computes per output: one
# FMA chain over its K slice, the skipped terms of grad_input left out) on every registry example
# of the three ops, NaN/±inf included, against the numpy references.

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def emul(tmp_path_factory):
    cxx = shutil.which(os.environ.get("CXX", "g++").split()[-1]) or shutil.which("g++")
    if cxx is None:
        pytest.skip("no C++ compiler (g++) on PATH: the emulation driver cannot be built")
    exe = str(tmp_path_factory.mktemp("conv_emul") / "cuda_conv_emul")
    subprocess.run([cxx, "-O2", "-std=c++17", "-Wall", "-Werror", "-ffp-contract=off", "-I", str(ROOT / "runtime"),
                    str(ROOT / "tests" / "cuda_conv_emul.cc"), "-o", exe], check=True, capture_output=True, text=True)
    return exe


OPS = {"conv2d": "fwd", "conv2d_grad_input": "gin", "conv2d_grad_weight": "gwt"}


def _run_emul(exe, tmp_path, op, ex, splits):
    a = ex.attrs
    if op == "conv2d":
        x, w = ex.inputs
    elif op == "conv2d_grad_input":
        dy, w = ex.inputs
        x = np.zeros((dy.shape[0], w.shape[1] * a["groups"]) + tuple(a["input_size"]), dy.dtype)
    else:
        dy, x = ex.inputs
        w = np.zeros((dy.shape[1], x.shape[1] // a["groups"]) + tuple(a["kernel_size"]), dy.dtype)
    ho, wo = conv._geometry(a, x.shape[2:], w.shape[2:])
    files = [tmp_path / f"{k}.bin" for k in ("in0", "in1", "out")]
    for f, arr in zip(files[:2], ex.inputs):
        np.ascontiguousarray(arr).tofile(f)
    dt = "f32" if ex.inputs[0].dtype == np.float32 else "f64"
    nums = list(x.shape) + [w.shape[0], w.shape[2], w.shape[3], a["groups"], *a["stride"], a["pads"][0],
                            a["pads"][1], *a["dilation"], ho, wo, splits]
    subprocess.run([exe, OPS[op], dt, *map(str, nums), *map(str, files)], check=True, capture_output=True)
    shape = {"conv2d": (x.shape[0], w.shape[0], ho, wo), "conv2d_grad_input": x.shape,
             "conv2d_grad_weight": w.shape}[op]
    return np.fromfile(files[2], ex.inputs[0].dtype).reshape(shape)


@pytest.mark.parametrize("op", sorted(OPS))
def test_cuda_fallback_index_maps_match_the_reference(emul, tmp_path, op):
    opdef = registry.get_op(op)
    count = 0
    for ex in opdef.examples(np.random.default_rng(0)):
        if any(arr.size == 0 for arr in ex.inputs):
            continue  # the factories return before any kernel: nothing to emulate
        want = opdef.reference(ex.inputs, ex.attrs)
        if want.size == 0:
            continue
        f32 = ex.inputs[0].dtype == np.float32
        for splits in ((1, 3) if op == "conv2d_grad_weight" else (1,)):
            got = _run_emul(emul, tmp_path, op, ex, splits)
            np.testing.assert_allclose(got, want, rtol=2e-5 if f32 else 1e-12, atol=2e-5 if f32 else 1e-12,
                                       equal_nan=True, err_msg=f"{op} {ex.note} splits={splits}")
            # NaN exactly where the reference has it (assert_allclose treats NaN == NaN only)
            assert np.array_equal(np.isnan(got), np.isnan(want)), f"{op} {ex.note}: NaN positions differ"
        count += 1
    assert count >= 20  # every case of CASES and the special ones, per dtype
