"""gc.tril / gc.triu, gc.cumsum and gc.argmax: the compiled CPU kernels against torch (forward and
backward), the same bits at 1 and 2 threads, a causal attention mask, and refusals.

Tolerances: tril/triu and argmax are exact (a mask, an index).  cumsum sums in the same
sequential order as torch's CPU kernel for float64 along the axis, but torch may order its inner
loop differently (vectorised): float64 rtol/atol 1e-12 over at most ~100 items of |x| <= 2, and
the int and gradient paths are compared exactly where no rounding is involved.
"""

import numpy as np
import pytest

import graphc as gc
from graphc.errors import DTypeError, GraphError, ShapeError
from graphc.graph import Graph
from graphc.session import Session


def _torch():
    return pytest.importorskip("torch", reason="torch is the reference of this test (absent in CI)")


def _run(fn, x, threads=1, grad=True):
    """(y, dx of sum(y·r) or None) of one compiled plan, and r."""
    r = np.random.default_rng(3).standard_normal(x.shape).astype(x.dtype) if x.dtype.kind == "f" else None
    with Graph() as g:
        xp = gc.placeholder("x", x.shape, x.dtype.name)
        y = fn(xp)
        fetches = [y.name]
        if grad and r is not None and str(y.dtype).startswith("float"):  # argmax: no gradient
            (dx,) = gc.gradients(gc.sum(y * gc.constant(r)), [xp])
            fetches.append(dx.name)
    out = Session(gc.compile(g, fetches=fetches), threads=threads).run({"x": x})
    return [out[f] for f in fetches] + ([None] if len(fetches) == 1 else []), r


def _data(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    if dtype == "bool":
        return rng.random(shape) < 0.5
    if dtype.startswith("int"):
        return rng.integers(-50, 50, size=shape).astype(dtype)
    return rng.uniform(-2, 2, size=shape).astype(dtype)


# -- tril / triu ---------------------------------------------------------------------------------

TRI_CASES = [((4, 4), 0), ((3, 5), 1), ((5, 3), -1), ((2, 3, 6, 7), 2), ((6, 7), -6), ((6, 7), 7), ((6, 7), 100),
             ((6, 7), -100), ((1, 1), 0), ((0, 3), 0), ((3, 0), 1)]


@pytest.mark.parametrize("upper", [False, True])
@pytest.mark.parametrize("shape,k", TRI_CASES)
@pytest.mark.parametrize("dtype", ["float32", "float64", "int32", "int64", "bool"])
def test_tri_matches_torch(upper, shape, k, dtype):
    torch = _torch()
    x = _data(shape, dtype)
    ours = gc.triu if upper else gc.tril
    theirs = torch.triu if upper else torch.tril
    (y, dx), r = _run(lambda t: ours(t, diagonal=k), x)
    xt = torch.tensor(x, requires_grad=dtype.startswith("float"))
    yt = theirs(xt, diagonal=k)
    np.testing.assert_array_equal(y, yt.detach().numpy())
    assert y.dtype == x.dtype
    if dx is not None:
        (dxt,) = torch.autograd.grad((yt * torch.tensor(r)).sum(), xt)
        np.testing.assert_array_equal(dx, dxt.numpy())


def test_tri_keeps_special_values_in_the_triangle():
    x = np.full((3, 3), np.nan)
    x[0, 0], x[1, 0] = -0.0, np.inf
    (y, _), _ = _run(gc.tril, x, grad=False)
    assert np.signbit(y[0, 0]) and y[1, 0] == np.inf and np.isnan(y[2, 2])
    assert np.all(y[np.triu_indices(3, 1)] == 0)  # NaN above the diagonal is masked to 0, not kept


def test_causal_mask_softmax_matches_torch():
    torch = _torch()
    t = 9
    scores = _data((2, t, t), "float64", seed=5)
    with Graph() as g:
        s = gc.placeholder("s", scores.shape, "float64")
        keep = gc.tril(gc.constant(np.ones((t, t), np.bool_)))
        masked = gc.where(keep, s, gc.constant(np.full((t, t), -np.inf)))
        p = gc.softmax(masked, axis=-1)
    got = Session(gc.compile(g, fetches=[p.name])).run({"s": scores})[p.name]
    mask = torch.ones(t, t, dtype=torch.bool).tril()
    want = torch.tensor(scores).masked_fill(~mask, float("-inf")).softmax(-1).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-14, atol=1e-15)


# -- cumsum --------------------------------------------------------------------------------------

CUMSUM_CASES = [((7,), 0), ((5, 3), 0), ((5, 3), 1), ((4, 3, 5), 1), ((4, 3, 5), -1), ((1,), 0), ((0, 4), 1),
                ((3, 97), 1), ((97, 3), 0)]


def _torch_cumsum(torch, x, axis, exclusive, reverse):
    v = torch.flip(x, [axis]) if reverse else x
    s = torch.cumsum(v, axis)
    if exclusive:
        s = s - v  # exact for ints; for floats within the tolerance
    return torch.flip(s, [axis]) if reverse else s


@pytest.mark.parametrize("exclusive", [False, True])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("shape,axis", CUMSUM_CASES)
@pytest.mark.parametrize("dtype", ["float32", "float64", "int32", "int64"])
def test_cumsum_matches_torch(exclusive, reverse, shape, axis, dtype):
    torch = _torch()
    x = _data(shape, dtype)
    (y, dx), r = _run(lambda t: gc.cumsum(t, axis, exclusive=exclusive, reverse=reverse), x)
    assert y.dtype == x.dtype  # kept (torch promotes ints to int64)
    xt = torch.tensor(x, requires_grad=dtype.startswith("float"))
    yt = _torch_cumsum(torch, xt, axis, exclusive, reverse)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == "float32" else dict(rtol=1e-12, atol=1e-12)
    if dtype.startswith("int"):
        np.testing.assert_array_equal(y, yt.numpy())
        return
    np.testing.assert_allclose(y, yt.detach().numpy(), **tol)
    (dxt,) = torch.autograd.grad((yt * torch.tensor(r)).sum(), xt)
    np.testing.assert_allclose(dx, dxt.numpy(), **tol)


def test_cumsum_inclusive_forward_float64_is_torchs_order():
    """Sequential sums: the same bits as torch's CPU cumsum along a contiguous axis."""
    torch = _torch()
    x = _data((5, 301), "float64", seed=9)
    (y, _), _ = _run(lambda t: gc.cumsum(t, 1), x, grad=False)
    np.testing.assert_array_equal(y, torch.cumsum(torch.tensor(x), 1).numpy())


def test_cumsum_int_wraps_and_keeps_minus_zero():
    x = np.array([2**31 - 1, 1, 5], np.int32)
    (y, _), _ = _run(lambda t: gc.cumsum(t, 0), x)
    np.testing.assert_array_equal(y, np.array([2**31 - 1, -(2**31), -(2**31) + 5], np.int32))
    z = np.array([-0.0, -0.0, 1.0])
    (y, _), _ = _run(lambda t: gc.cumsum(t, 0, exclusive=True), z, grad=False)
    assert not np.signbit(y[0]) and np.signbit(y[1]) and np.signbit(y[2])  # y_1 = x_0 exactly


# -- argmax --------------------------------------------------------------------------------------

ARGMAX_CASES = [((7,), 0), ((5, 3), 0), ((5, 3), 1), ((4, 3, 5), 1), ((4, 3, 5), -1), ((1,), 0), ((0, 4), 1),
                ((3, 97), 1), ((97, 3), 0)]


@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("shape,axis", ARGMAX_CASES)
@pytest.mark.parametrize("dtype", ["float32", "float64", "int32", "int64"])
def test_argmax_matches_torch(keepdims, shape, axis, dtype):
    torch = _torch()
    x = _data(shape, dtype)
    if dtype.startswith("int"):
        x = (x % 4).astype(dtype)  # many ties: the first maximum must win
    elif x.size:
        x.flat[:: 3] = np.round(x.flat[:: 3])  # ties
    (y, _), _ = _run(lambda t: gc.argmax(t, axis, keepdims=keepdims), x, grad=False)
    want = torch.argmax(torch.tensor(x), dim=axis, keepdim=keepdims).numpy()
    assert y.dtype == np.int64
    np.testing.assert_array_equal(y, want)


@pytest.mark.parametrize("axis", [0, 1])
def test_argmax_nan_is_the_maximum_like_torch_and_numpy(axis):
    torch = _torch()
    x = np.array([[1.0, np.nan, 3.0, np.nan, np.inf],
                  [np.inf, 2.0, np.inf, -np.inf, np.nan],
                  [-0.0, 0.0, -np.inf, np.nan, 5.0],
                  [np.nan, np.nan, 1.0, 2.0, 1.0]], np.float32)
    x = x if axis == 1 else np.ascontiguousarray(x.T)
    (y, _), _ = _run(lambda t: gc.argmax(t, axis=1), x, grad=False)
    np.testing.assert_array_equal(y, torch.argmax(torch.tensor(x), dim=1).numpy())
    np.testing.assert_array_equal(y, np.argmax(x, axis=1))


def test_argmax_is_not_differentiable():
    """Like torch (an int64 index has no gradient): no gradient flows back through argmax."""
    from graphc import registry

    assert not registry.get_op("argmax").differentiable
    with Graph():
        x = gc.placeholder("x", (3, 4), "float64")
        (dx,) = gc.gradients(gc.sum(gc.cast(gc.argmax(x), "float64")), [x])
        assert dx is None


# -- thread counts -------------------------------------------------------------------------------

@pytest.mark.parametrize("fn", [lambda t: gc.tril(t, -3), lambda t: gc.triu(t, 5), lambda t: gc.cumsum(t, 0),
                                lambda t: gc.cumsum(t, 1, exclusive=True, reverse=True),
                                lambda t: gc.cumsum(t, 2, reverse=True), lambda t: gc.argmax(t, 0),
                                lambda t: gc.argmax(t, 1), lambda t: gc.argmax(t, 2)],
                         ids=["tril", "triu", "cumsum0", "cumsum1", "cumsum2", "argmax0", "argmax1", "argmax2"])
@pytest.mark.parametrize("dtype", ["float32", "int32"])
def test_same_bits_at_one_and_two_threads(fn, dtype):
    x = _data((37, 129, 65), dtype, seed=11)
    if dtype == "float32":
        x.flat[::97] = np.nan
    a, _ = _run(fn, x, threads=1)
    b, _ = _run(fn, x, threads=2)
    for u, v in zip(a, b):
        if u is not None:
            assert u.tobytes() == v.tobytes()


# -- refusals ------------------------------------------------------------------------------------

def test_refusals():
    with Graph():
        v = gc.placeholder("v", (5,))
        m = gc.placeholder("m", (3, 0))
        b = gc.placeholder("b", (3, 4), "bool")
        with pytest.raises(ShapeError, match="rank >= 2"):
            gc.tril(v)
        with pytest.raises(ShapeError, match="rank >= 2"):
            gc.triu(gc.placeholder("s", ()))
        with pytest.raises(GraphError, match="diagonal"):
            gc.tril(m, diagonal=1.5)
        with pytest.raises(ShapeError, match="out of range"):
            gc.cumsum(v, 1)
        with pytest.raises(GraphError, match="axis"):
            gc.cumsum(v, None)
        with pytest.raises(DTypeError):
            gc.cumsum(b, 0)
        with pytest.raises(DTypeError):
            gc.argmax(b)
        with pytest.raises(ShapeError, match="size 0"):
            gc.argmax(m, axis=1)
        with pytest.raises(ShapeError, match="out of range"):
            gc.argmax(m, axis=-3)
        assert gc.argmax(m, axis=0).shape == (0,)
        assert gc.argmax(m, axis=0, keepdims=True).shape == (1, 0)
