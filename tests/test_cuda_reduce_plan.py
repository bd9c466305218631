"""The CUDA reductions' planned workspace (graphc.ops.reduce.cuda_reduce_splits, the Python side of
runtime/cuda/reduce.cu's two-pass split), and the dry prepare of the CUDA reduce/scan/topk
factories on shapes the registry examples do not reach (split reductions, block scans, the radix
select of long topk lines, the line-wise take_along_axis_grad).  The prepare tests need a CUDA
build with graphc._runtime.prepare_only; they skip, saying which is missing, otherwise."""

import numpy as np
import pytest

import graphc as gc
from graphc import _runtime
from graphc.ops.reduce import cuda_reduce_splits


def _merged(shape, reduced):
    """reduce.cu's merge: size-1 dims dropped, runs of equal kind merged."""
    dims, kinds = [], []
    for d, r in zip(shape, reduced):
        if d == 1:
            continue
        if kinds and kinds[-1] == r:
            dims[-1] *= d
        else:
            dims.append(d)
            kinds.append(r)
    return dims, kinds


SHAPES = [
    ((1 << 22,), (True,)), ((4, 1 << 20), (False, True)), ((1 << 20, 3), (True, False)),
    ((1000, 1000), (False, True)), ((2, 3, 4), (True, False, True)), ((5000,), (True,)),
    ((4097,), (True,)), ((3, 1, 70000, 1), (False, True, True, True)), ((300, 9000), (False, True)),
    ((1, 1), (True, True)), ((0, 5), (False, True)), ((7, 65536, 40), (False, True, False)),
]


@pytest.mark.parametrize("shape,reduced", SHAPES)
def test_splits_cut_every_reduction_into_nonempty_chunks(shape, reduced):
    nout, splits = cuda_reduce_splits(shape, reduced)
    want_out = 0 if 0 in shape else int(np.prod([d for d, r in zip(shape, reduced) if not r], dtype=np.int64))
    assert nout == want_out
    if splits == 1:
        return
    dims, kinds = _merged(shape, reduced)
    assert kinds.count(True) == 1, "only one reduced group is ever split"
    j = kinds.index(True)
    red = dims[j]
    outer = int(np.prod(dims[:j], dtype=np.int64))
    inner = int(np.prod(dims[j + 1:], dtype=np.int64))
    rows = inner == 1
    # split only when the one-pass grid would be small, into chunks of at least the minimum
    units = outer if rows else outer * -(-inner // 32)
    assert units < 256
    assert 2 <= splits <= -(-1024 // units)
    assert splits <= -(-red // (4096 if rows else 1024))
    # the kernel's chunk: a multiple of 4 items; `splits` of them cover the axis, none empty
    chunk = -(-red // splits)
    assert any((splits - 1) * c < red <= splits * c for c in range(chunk - chunk % 4, chunk + 8, 4) if c > 0)


def _workspaces(plan):
    out = []
    for st in plan.proto.steps:
        out.append((st.op, [(plan.proto.values[w].dtype, list(plan.proto.values[w].dims)) for w in st.workspaces]))
    return out


def test_only_cuda_plans_get_the_partials():
    with gc.Graph() as g:
        x = gc.placeholder("x", (1 << 20,))
        y = gc.sum(x)
        z = gc.mean(gc.placeholder("m", (8, 3, 4096)), axis=(0,))
    fetches = [y.name, z.name]
    cpu = _workspaces(gc.compile(g, fetches=fetches, target="cpu"))
    cuda = _workspaces(gc.compile(g, fetches=fetches, target="cuda"))
    assert all(ws == [] for _, ws in cpu)
    by_op = dict(cuda)
    assert by_op["sum"] and by_op["sum"][0][1] == [1 * cuda_reduce_splits((1 << 20,), [True])[1]]
    nout, splits = cuda_reduce_splits((8, 3, 4096), [True, False, False])
    assert splits == 1 and by_op["mean"] == []  # 8 rows of a column tile: no split worth planning
    assert nout == 3 * 4096


def _prepare(g, fetches, shapes=None):
    fn = getattr(_runtime, "prepare_only", None)
    if not _runtime.cuda_built():
        pytest.skip("graphc was built without CUDA: no CUDA registry to prepare against")
    if fn is None:
        pytest.skip("this build has no graphc._runtime.prepare_only (CORE's dry prepare)")
    for target in ("cuda", "cpu"):
        plan = gc.compile(g, shapes=shapes, fetches=fetches, target=target)
        fn(plan.proto, "cuda")


@pytest.mark.parametrize("shape,axes,op", [
    ((1 << 20,), None, "sum"), ((3, 1 << 18), (1,), "max"), ((1 << 18, 5), (0,), "mean"),
    ((1 << 16, 40), (0,), "min"), ((4, 5, 6, 7), (0, 2), "sum"), ((64, 9), (1,), "sum"),
    ((2, 70000), (1,), "mean"), ((5, 0), (1,), "sum"),
])
def test_reductions_prepare_on_cuda(shape, axes, op):
    with gc.Graph() as g:
        x = gc.placeholder("x", shape)
        y = getattr(gc, op)(x, axis=axes)
    _prepare(g, [y.name])


def test_scan_and_topk_prepare_on_cuda():
    with gc.Graph() as g:
        x = gc.placeholder("x", (3, 10000))
        outs = [gc.cumsum(x, axis=1), gc.cumsum(x, axis=0), gc.argmax(x, axis=1), gc.argmax(x, axis=0)]
        v, i = gc.topk(x, 5, axis=1)
        v2, i2 = gc.topk(x, 5000, axis=1, sorted=False)
        v3, i3 = gc.topk(x, 3000, axis=1)
        idx = gc.placeholder("i", (3, 100), "int64")
        t = gc.take_along_axis(x, idx, axis=1)
        outs += [v, i, v2, i2, v3, i3, t]
    _prepare(g, [o.name for o in outs])
