"""Every registered op's kernel against its numpy reference, through the compiler and a
Session, on every device (tests/devices.py; "cuda" skips with the reason where it cannot run):
one placeholder per example input, one node, fetch its outputs.
Also: on the CPU, threads=1 and threads=2 give identical bits; on CUDA, two Sessions do."""

import numpy as np
import pytest
from devices import DEVICES
from single_op import single_op_graph

import graphc as gc
from graphc import registry
from graphc.graph import Graph
from graphc.session import Session

OPS = registry.all_ops()


def _run_example(op, ex, threads, device="cpu"):
    g, _, outs, shapes, feeds = single_op_graph(op, ex)
    plan = gc.compile(g, shapes=shapes, fetches=[t.name for t in outs], target=device)
    result = Session(plan, device=device, threads=threads).run(feeds)
    return [result[t.name] for t in outs]


# CUDA against the numpy reference, (rtol, atol) by kind of op and float dtype; integer and
# bool results are exact on every device.  "product": cuBLASLt/cuDNN products and what is
# built on them (TF32 off: FP32 inputs and accumulation, but another summation order and
# FMA contraction than the reference's float64 sums); "reduction": sums over rows/axes in a
# fixed block order (float32 accumulation where the CPU accumulates in float64);
# "elementwise": everything else (CUDA's libdevice float math is within 2 ulp).
CUDA_PRODUCT_OPS = frozenset({
    "matmul", "fused_matmul", "einsum", "conv2d", "conv2d_grad_input", "conv2d_grad_weight", "conv_transpose2d",
    "scaled_dot_product_attention", "scaled_dot_product_attention_grad", "lstm_cell", "lstm_cell_grad",
    "gru_cell", "gru_cell_grad"})
CUDA_REDUCTION_OPS = frozenset({
    "sum", "mean", "max", "min", "sum_to", "cumsum", "fused_reduce", "softmax", "log_softmax",
    "softmax_cross_entropy", "softmax_cross_entropy_grad", "layer_norm", "layer_norm_grad", "batch_norm",
    "batch_norm_train", "batch_norm_train_grad", "batch_norm_update_stats", "instance_norm", "embedding_grad",
    "avg_pool2d", "avg_pool2d_grad", "max_pool2d_grad", "resize", "resize_grad", "pad_grad", "slice_grad",
    "take_along_axis_grad", "upsample_nearest2d"})
CUDA_TOLERANCES = {
    "elementwise": {"float32": (1e-5, 1e-5), "float64": (1e-12, 1e-13)},
    "reduction": {"float32": (1e-5, 1e-5), "float64": (1e-11, 1e-12)},
    "product": {"float32": (1e-4, 1e-4), "float64": (1e-10, 1e-12)},
}


def cuda_kind(op_name):
    if op_name in CUDA_PRODUCT_OPS:
        return "product"
    if op_name in CUDA_REDUCTION_OPS:
        return "reduction"
    return "elementwise"


def _tol(dtype, device="cpu", op_name=""):
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        return dict(rtol=0, atol=0)
    if device == "cuda":
        rtol, atol = CUDA_TOLERANCES[cuda_kind(op_name)][dtype.name]
        return dict(rtol=rtol, atol=atol)
    if dtype == np.float32:
        return dict(rtol=1e-5, atol=1e-5)  # numpy sums float32 in float32; we sum in float64
    return dict(rtol=1e-12, atol=1e-13)


def test_cuda_tolerance_table_names_registry_ops():
    """The table names registry ops only (a renamed op would fall silently into another row)."""
    names = {o.name for o in OPS}
    assert not (CUDA_PRODUCT_OPS | CUDA_REDUCTION_OPS) - names
    assert not CUDA_PRODUCT_OPS & CUDA_REDUCTION_OPS


@pytest.mark.parametrize("op", OPS, ids=lambda o: o.name)
def test_kernel_matches_reference(op, device):
    examples = list(op.examples(np.random.default_rng(0)))
    assert examples, f"{op.name} has no examples"
    for ex in examples:
        want = op.evaluate(ex.inputs, ex.attrs)
        if device == "cpu":
            got1 = _run_example(op, ex, threads=1)
            got2 = _run_example(op, ex, threads=2)
            again = "threads=1 and threads=2 differ"
        else:  # two Sessions (each a fresh upload of the inputs an in-place op updates)
            got1 = _run_example(op, ex, threads=1, device=device)
            got2 = _run_example(op, ex, threads=1, device=device)
            again = f"two {device} Sessions differ"
        assert len(got1) == len(want), ex
        for a, b, r in zip(got1, got2, want):
            assert a.shape == r.shape and a.dtype == r.dtype, (ex, a.shape, a.dtype, r.shape, r.dtype)
            np.testing.assert_allclose(a, r, equal_nan=True, err_msg=f"{device}: {ex!r}",
                                       **_tol(r.dtype, device, op.name))
            assert a.tobytes() == b.tobytes(), f"{again} for {ex}"


def test_large_shapes_parallel_paths(device):
    """Sizes above the parallel grain, so the worker-pool and blocked-reduction paths run
    (on CUDA: several blocks per row and per reduction)."""
    rng = np.random.default_rng(1)
    with Graph() as g:
        x = gc.placeholder("x", (300, 257))
        b = gc.placeholder("b", (257,))
        w = gc.placeholder("w", (257, 65))
        y = gc.tanh(x + b)
        s0 = gc.sum(y, axis=0)
        s1 = gc.mean(y, axis=1)
        sall = gc.sum(y)
        m = gc.max(y, axis=(0, 1), keepdims=True)
        mm = y @ w
        sm = gc.softmax(mm, axis=0)
    feeds = {"x": rng.standard_normal((300, 257)).astype(np.float32),
             "b": rng.standard_normal(257).astype(np.float32),
             "w": rng.standard_normal((257, 65)).astype(np.float32)}
    plan = gc.compile(g, shapes={}, fetches=[t.name for t in (y, s0, s1, sall, m, mm, sm)], target=device)
    r1 = Session(plan, device=device, threads=1).run(feeds)
    r2 = Session(plan, device=device, threads=2).run(feeds)
    yy = np.tanh(feeds["x"] + feeds["b"])
    mmr = yy.astype(np.float64) @ feeds["w"]
    e = np.exp(mmr - mmr.max(0))
    want = {y.name: yy, s0.name: yy.sum(0), s1.name: yy.mean(1), sall.name: yy.sum(),
            m.name: yy.max(keepdims=True), mm.name: mmr, sm.name: e / e.sum(0)}
    for k, v in want.items():
        np.testing.assert_allclose(r1[k], v, rtol=1e-4, atol=1e-4, err_msg=k)
        np.testing.assert_allclose(r2[k], v, rtol=1e-4, atol=1e-4, err_msg=k)
        # OpenBLAS splits large gemms by thread count, so only our own kernels are
        # bit-identical across thread counts (the design promises same threads, same bits).
        # On CUDA nothing depends on threads: every value is bit-identical.
        if k not in (mm.name, sm.name) or device != "cpu":
            assert r1[k].tobytes() == r2[k].tobytes(), k
    again = Session(plan, device=device, threads=2).run(feeds)
    assert all(again[k].tobytes() == r2[k].tobytes() for k in want)


@pytest.mark.parametrize("built", DEVICES)
def test_every_kernel_op_is_registered(built):
    """Runs without a GPU: the CUDA registry exists in every CUDA build."""
    from graphc import _runtime
    if built not in _runtime.devices():
        pytest.skip(f"this graphc has no {built!r} kernels (devices: {_runtime.devices()})")
    names = {o.name for o in OPS}
    missing = [op for op in _runtime.kernel_ops(built) if op not in names]
    assert not missing, f"{built} kernels without a registry op: {missing}"
