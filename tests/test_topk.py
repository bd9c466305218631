"""gc.topk and gc.take_along_axis: the compiled CPU kernels against torch.topk / torch.gather
(forward and backward), the order rule on ties and NaN, thread-count determinism on long rows,
refused arguments, and the sampling path of docs/text.md (an inference plan fetches topk, numpy
draws).  The registry-driven tests (test_kernels, test_gradients, test_ops_reference, ...) check
the ops on their examples; this file checks what those do not: PyTorch's semantics.

Comparisons against PyTorch skip, saying so, where torch is not installed."""

import re

import numpy as np
import pytest

import graphc as gc
from graphc import registry
from graphc.errors import DTypeError, GraphError, RuntimeExecutionError, ShapeError
from graphc.session import Session


def _torch():
    torch = pytest.importorskip("torch", reason="torch is not installed: gc.topk is checked against torch.topk")
    torch.set_num_threads(1)
    return torch


def _run(fn, feeds, threads=1, grads_of=()):
    """Build outs = fn(*placeholders) (a tuple), optionally the gradients of sum(outs[0] * r) with
    r fed as 'r', compile and run; returns (list of outputs, list of gradients)."""
    with gc.Graph() as g:
        phs = [gc.placeholder(k, v.shape, v.dtype.name) for k, v in feeds.items() if k != "r"]
        outs = fn(*phs)
        outs = list(outs) if isinstance(outs, (list, tuple)) else [outs]
        grads = []
        if grads_of:
            r = gc.placeholder("r", feeds["r"].shape, feeds["r"].dtype.name)
            grads = gc.gradients(gc.sum(outs[0] * r), [p for p in phs if p.name in grads_of])
    fetches = outs + grads
    plan = gc.compile(g, shapes={k: v.shape for k, v in feeds.items()}, fetches=[t.name for t in fetches])
    res = Session(plan, threads=threads).run(feeds)
    got = [res[t.name] for t in fetches]
    return got[:len(outs)], got[len(outs):]


# (shape, axis, k)
CASES = [((10,), 0, 3), ((6, 17), 1, 5), ((6, 17), 0, 6), ((4, 5, 33), -1, 1), ((4, 33, 5), 1, 33), ((3, 7, 2), 1, 0),
         ((2, 1000), 1, 40), ((128, 129), -1, 64)]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("largest", [True, False])
@pytest.mark.parametrize("shape,axis,k", CASES)
def test_topk_matches_torch_values_indices_and_gradient(shape, axis, k, largest, dtype):
    torch = _torch()
    rng = np.random.default_rng(hash((shape, axis, k)) % 2**32)
    x = rng.standard_normal(shape).astype(dtype)  # distinct values: torch's order is then unique too
    out_shape = tuple(k if i == axis % len(shape) else d for i, d in enumerate(shape))
    r = rng.standard_normal(out_shape).astype(dtype)
    (values, indices), (dx,) = _run(lambda p: gc.topk(p, k, axis=axis, largest=largest), {"x": x, "r": r},
                                    grads_of=("x",))
    tx = torch.tensor(x, requires_grad=True)
    tv, ti = torch.topk(tx, k, dim=axis, largest=largest, sorted=True)
    (tv * torch.tensor(r)).sum().backward()
    assert values.dtype == x.dtype and indices.dtype == np.int64
    np.testing.assert_array_equal(values, tv.detach().numpy())
    np.testing.assert_array_equal(indices, ti.numpy())
    np.testing.assert_array_equal(dx, tx.grad.numpy())  # a scatter of r: no arithmetic to differ


@pytest.mark.parametrize("largest", [True, False])
def test_topk_unsorted_holds_torchs_items_in_index_order(largest):
    torch = _torch()
    x = np.random.default_rng(3).standard_normal((5, 40)).astype(np.float32)
    (values, indices), _ = _run(lambda p: gc.topk(p, 9, largest=largest, sorted=False), {"x": x})
    _, ti = torch.topk(torch.tensor(x), 9, largest=largest, sorted=True)
    np.testing.assert_array_equal(indices, np.sort(ti.numpy(), axis=1))
    np.testing.assert_array_equal(values, np.take_along_axis(x, indices, axis=1))


def test_topk_ties_lower_index_first_and_nan_largest():
    torch = _torch()
    row = [1.0, 3.0, 3.0, -0.0, 0.0, 3.0, np.nan, 1.0, np.nan, -np.inf, np.inf]
    x = np.array([row, row[::-1]], np.float64)
    for largest in (True, False):
        (values, indices), _ = _run(lambda p, lg=largest: gc.topk(p, 11, largest=lg), {"x": x})
        tv, _ = torch.topk(torch.tensor(x), 11, largest=largest)
        # torch's values in the same order (its indices among ties are unspecified)
        np.testing.assert_array_equal(values, tv.numpy())
        np.testing.assert_array_equal(values, np.take_along_axis(x, indices, axis=1))
        # among equal values (and among NaNs) the lower index comes first
        for v_row, i_row in zip(values, indices):
            for a in range(10):
                same = (v_row[a] == v_row[a + 1]) or (np.isnan(v_row[a]) and np.isnan(v_row[a + 1]))
                if same:
                    assert i_row[a] < i_row[a + 1], (largest, v_row, i_row)
    (values, indices), _ = _run(lambda p: gc.topk(p, 4), {"x": x})
    assert indices[0].tolist() == [6, 8, 10, 1] and np.isnan(values[0, :2]).all()
    (values, indices), _ = _run(lambda p: gc.topk(p, 4, largest=False), {"x": x})
    assert indices[0].tolist() == [9, 3, 4, 0]     # -inf, then -0.0 and 0.0 in index order
    assert np.signbit(values[0, 1]) and not np.signbit(values[0, 2])


def test_topk_long_rows_same_bits_at_one_and_two_threads():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 200_001)).astype(np.float32)
    x[:, ::1000] = 0.5     # ties across the row
    x[1, 7::5003] = np.nan
    feeds = {"x": x}
    a, _ = _run(lambda p: gc.topk(p, 50, axis=1), feeds, threads=1)
    b, _ = _run(lambda p: gc.topk(p, 50, axis=1), feeds, threads=2)
    for u, v in zip(a, b):
        assert u.tobytes() == v.tobytes()
    want = registry.get_op("topk").evaluate([x], {"k": 50, "axis": 1, "largest": True, "sorted": True})
    np.testing.assert_array_equal(a[1], want[1])
    # many short lines along axis 0, split over the threads
    y = rng.standard_normal((31, 5000)).astype(np.float64)
    a, _ = _run(lambda p: gc.topk(p, 3, axis=0, largest=False), {"x": y}, threads=1)
    b, _ = _run(lambda p: gc.topk(p, 3, axis=0, largest=False), {"x": y}, threads=2)
    assert all(u.tobytes() == v.tobytes() for u, v in zip(a, b))
    np.testing.assert_array_equal(a[1], np.argsort(y, axis=0, kind="stable")[:3])


@pytest.mark.parametrize("largest", [True, False])
@pytest.mark.parametrize("sorted_", [True, False])
@pytest.mark.parametrize("k", [1, 20, 125, 600])   # the kernel's heap (k * 16 <= n) and selection paths
def test_topk_many_ties_nans_and_infinities_match_the_reference(k, sorted_, largest):
    rng = np.random.default_rng(k)
    pool = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0, 2.5, 1e-40], np.float32)
    x = rng.choice(pool, size=(4, 2000)).astype(np.float32)
    x[3] = rng.standard_normal(2000).astype(np.float32)   # one line without ties
    attrs = {"k": k, "axis": 1, "largest": largest, "sorted": sorted_}
    (values, indices), _ = _run(lambda p: gc.topk(p, k, largest=largest, sorted=sorted_), {"x": x})
    want_v, want_i = registry.get_op("topk").evaluate([x], attrs)
    np.testing.assert_array_equal(indices, want_i)
    assert values.tobytes() == want_v.tobytes()   # the items themselves: -0.0 stays -0.0


def test_topk_refuses_bad_arguments_at_build_time():
    with gc.Graph():
        x = gc.placeholder("x", (4, 6))
        with pytest.raises(ShapeError, match=r"k=7 must lie in \[0, 6\]"):
            gc.topk(x, 7)
        with pytest.raises(ShapeError, match=r"k=5 must lie in \[0, 4\]"):
            gc.topk(x, 5, axis=0)
        for bad in (-1, 2.0, True, None):
            with pytest.raises(GraphError, match="topk: k="):
                gc.topk(x, bad)
        with pytest.raises(GraphError, match="axis"):
            gc.topk(x, 1, axis=2)
        with pytest.raises(GraphError, match="axis"):
            gc.topk(x, 1, axis=1.0)
        with pytest.raises(ShapeError, match="scalar"):
            gc.topk(gc.placeholder("s", ()), 1)
        with pytest.raises(DTypeError):
            gc.topk(gc.placeholder("i", (4,), "int64"), 1)
        v, i = gc.topk(x, 2, axis=0, name="best")
        assert v.shape == (2, 6) and i.shape == (2, 6) and i.dtype == "int64" and v.dtype == "float32"


def test_topk_symbolic_batch():
    with gc.Graph() as g:
        x = gc.placeholder("x", (None, 10))
        v, i = gc.topk(x, 3)
    assert tuple(v.shape[1:]) == (3,)
    x0 = np.arange(20, dtype=np.float32).reshape(2, 10)
    out = Session(gc.compile(g, shapes={"x": (2, 10)}, fetches=[v.name, i.name])).run({"x": x0})
    np.testing.assert_array_equal(out[i.name], [[9, 8, 7], [9, 8, 7]])


# -- take_along_axis ----------------------------------------------------------------------------------

@pytest.mark.parametrize("axis", [0, 1, -1])
def test_take_along_axis_matches_torch_gather_and_its_gradient(axis):
    torch = _torch()
    rng = np.random.default_rng(11)
    x = rng.standard_normal((5, 7, 9))
    idx_shape = [5, 7, 9]
    idx_shape[axis] = 13
    idx = rng.integers(0, x.shape[axis], size=idx_shape).astype(np.int64)  # repeats: the gradient sums
    r = rng.standard_normal(idx_shape)
    (y,), (dx,) = _run(lambda p, q: gc.take_along_axis(p, q, axis=axis), {"x": x, "i": idx, "r": r}, grads_of=("x",))
    tx = torch.tensor(x, requires_grad=True)
    ty = torch.gather(tx, axis, torch.tensor(idx))
    (ty * torch.tensor(r)).sum().backward()
    np.testing.assert_array_equal(y, ty.detach().numpy())
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("bad", [-1, 7, 2**40])
def test_take_along_axis_bad_index_is_a_runtime_error_naming_the_node(bad):
    x = np.zeros((2, 7), np.float32)
    idx = np.array([[0, 6], [bad, 1]], np.int64)
    with gc.Graph() as g:
        y = gc.take_along_axis(gc.placeholder("x", (2, 7)), gc.placeholder("i", (2, 2), "int64"), axis=1,
                               name="pick")
        (gx,) = gc.gradients(gc.sum(y), [g.tensor("x")])
    for fetch in (y, gx):
        sess = Session(gc.compile(g, shapes={"x": (2, 7), "i": (2, 2)}, fetches=[fetch.name]))
        with pytest.raises(RuntimeExecutionError, match=re.escape(f"index {bad} at position 2 is outside [0, 7)")):
            sess.run({"x": x, "i": idx})
    sess = Session(gc.compile(g, shapes={"x": (2, 7), "i": (2, 2)}, fetches=[y.name]))
    with pytest.raises(RuntimeExecutionError, match="pick"):
        sess.run({"x": x, "i": idx})


def test_take_along_axis_refuses_bad_arguments_at_build_time():
    with gc.Graph():
        x = gc.placeholder("x", (4, 6))
        with pytest.raises(DTypeError, match="int64"):
            gc.take_along_axis(x, gc.placeholder("i32", (4, 2), "int32"), axis=1)
        with pytest.raises(ShapeError, match="same rank"):
            gc.take_along_axis(x, gc.placeholder("i1", (4,), "int64"), axis=1)
        with pytest.raises(ShapeError, match="differ on axis 0"):
            gc.take_along_axis(x, gc.placeholder("i2", (3, 2), "int64"), axis=1)


# -- the sampling path of docs/text.md ------------------------------------------------------------------

def test_sampling_from_an_inference_plan_is_deterministic():
    vocab, k, temperature = 128, 5, 0.8
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((1, vocab)).astype(np.float32) * 3
    with gc.Graph() as g:  # as docs/text.md: the temperature is a scalar feed
        z = gc.placeholder("logits", (1, vocab))
        t = gc.placeholder("temperature", (), "float32")
        values, indices = gc.topk(z / t, k, name="next")
    sess = Session(gc.compile(g, shapes={"logits": (1, vocab)}, fetches=[values, indices], train=False))
    out = sess.run({"logits": logits, "temperature": np.float32(temperature)})
    top = np.argsort(-logits[0], kind="stable")[:k]
    np.testing.assert_array_equal(out[indices.name][0], top)
    np.testing.assert_allclose(out[values.name][0], logits[0, top] / np.float32(temperature), rtol=1e-6)

    def draw(seed, n=200):
        gen = np.random.default_rng(seed)
        out = sess.run({"logits": logits, "temperature": np.float32(temperature)})
        return [gc.text.sample_from_topk(out[values.name][0], out[indices.name][0], gen) for _ in range(n)]

    a, b = draw(1), draw(1)
    assert a == b and a != draw(2)
    assert set(a) <= set(top.tolist()) and len(set(a)) > 1
