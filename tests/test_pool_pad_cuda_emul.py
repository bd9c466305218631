"""The CUDA pooling and pad kernels' per-item code (runtime/cuda/pool_items.h, pad_items.h: what
one thread computes) run on the CPU by tests/cuda_pool_pad_emul.cc, item by item, against the
numpy references on every registry example (NaN/±inf, ties, padding, every pad mode and
dtype).  The kernels themselves need a GPU; their index maps and the CPU's order are checked
here.  Runs without a GPU."""

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import graphc.ops  # noqa: F401  (registers the ops)
from graphc import registry

ROOT = Path(__file__).resolve().parents[1]
DT = {"float32": "f32", "float64": "f64", "int32": "i32", "int64": "i64", "bool": "b8"}
POOL = {"max_pool2d": "max", "max_pool2d_gather": "gather", "max_pool2d_grad": "max_grad", "avg_pool2d": "avg",
        "avg_pool2d_grad": "avg_grad"}


@pytest.fixture(scope="module")
def emul(tmp_path_factory):
    cxx = shutil.which(os.environ.get("CXX", "g++").split()[-1]) or shutil.which("g++")
    if cxx is None:
        pytest.skip("no C++ compiler (g++) on PATH: the emulation driver cannot be built")
    exe = str(tmp_path_factory.mktemp("pool_pad_emul") / "cuda_pool_pad_emul")
    subprocess.run([cxx, "-O2", "-std=c++17", "-Wall", "-Werror", "-ffp-contract=off", "-I", str(ROOT / "runtime"),
                    str(ROOT / "tests" / "cuda_pool_pad_emul.cc"), "-o", exe],
                   check=True, capture_output=True, text=True)
    return exe


def _attr(opdef, ex, name):
    return ex.attrs[name] if name in ex.attrs else opdef.attrs[name].default


def _check(got, want, what):
    if np.issubdtype(want.dtype, np.floating):
        # the same sums in the same order as the CPU kernel, against a float64 reference
        np.testing.assert_allclose(got, want, rtol=1e-6 if want.dtype == np.float32 else 1e-13, atol=1e-6,
                                   equal_nan=True, err_msg=what)
        assert np.array_equal(np.isnan(got), np.isnan(want)), what + ": NaN positions differ"
    else:
        np.testing.assert_array_equal(got, want, err_msg=what)


@pytest.mark.parametrize("op", sorted(POOL))
def test_pool_items_match_the_reference(emul, tmp_path, op):
    opdef = registry.get_op(op)
    count = 0
    for ex in opdef.examples(np.random.default_rng(0)):
        want = np.asarray(opdef.reference(ex.inputs, ex.attrs))
        if want.size == 0:
            continue  # the factories return before any kernel
        x = ex.inputs[1] if op in ("max_pool2d_gather", "max_pool2d_grad", "avg_pool2d_grad") else ex.inputs[0]
        files = [tmp_path / "in0.bin", tmp_path / "in1.bin", tmp_path / "out.bin"]
        np.ascontiguousarray(ex.inputs[0]).tofile(files[0])
        if len(ex.inputs) > 1:
            np.ascontiguousarray(ex.inputs[1]).tofile(files[1])
        include_pad = int(bool(_attr(opdef, ex, "count_include_pad"))) if op.startswith("avg") else 1
        args = [*x.shape, *_attr(opdef, ex, "kernel_size"), *_attr(opdef, ex, "stride"),
                *_attr(opdef, ex, "padding"), include_pad]
        subprocess.run([emul, "pool", POOL[op], DT[x.dtype.name], *map(str, args), *map(str, files)], check=True,
                       capture_output=True)
        got = np.fromfile(files[2], x.dtype).reshape(want.shape)
        _check(got, want, f"{op} {ex.note}")
        count += 1
    assert count >= 4


@pytest.mark.parametrize("op", ["pad", "pad_grad"])
def test_pad_items_match_the_reference(emul, tmp_path, op):
    opdef = registry.get_op(op)
    modes = {"constant": 0, "reflect": 1, "replicate": 2}
    count = 0
    for ex in opdef.examples(np.random.default_rng(0)):
        x = ex.inputs[0] if op == "pad" else ex.inputs[1]
        want = np.asarray(opdef.reference(ex.inputs, ex.attrs))
        if want.size == 0 or (op == "pad_grad" and x.size == 0):
            continue  # the factories return before any kernel
        pads = list(_attr(opdef, ex, "pads"))
        mode = _attr(opdef, ex, "mode")
        value = _attr(opdef, ex, "value") if op == "pad" else 0.0
        if np.issubdtype(x.dtype, np.floating):
            with np.errstate(over="ignore"):
                value = repr(float(np.array(value).astype(x.dtype)))  # border_value's rounding
        else:
            value = repr(float(value))
        files = [tmp_path / "in.bin", tmp_path / "out.bin"]
        np.ascontiguousarray(ex.inputs[0]).tofile(files[0])
        rank = x.ndim
        args = [modes[mode], value, rank, *x.shape, *pads]
        r = subprocess.run([emul, "pad", "fwd" if op == "pad" else "grad", DT[x.dtype.name], *map(str, args),
                            *map(str, files)], capture_output=True)
        if r.returncode == 4:
            continue  # more than kPadMaxAxes padded axes: the factory refuses it (a clear error)
        assert r.returncode == 0, r.stderr
        got = np.fromfile(files[1], want.dtype).reshape(want.shape)
        _check(got, want, f"{op} {ex.note} mode={mode} pads={pads}")
        count += 1
    assert count >= 4
