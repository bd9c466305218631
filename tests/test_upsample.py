"""The generator's other ops beyond the registry-driven tests: upsample (nearest) and
leaky_relu against PyTorch where it imports (forward and gradients, special values), bad
arguments, and gc.nn.Upsample / gc.nn.LeakyReLU against torch.nn."""

import numpy as np
import pytest
from torch_compare import torch_or_skip as _torch

import graphc as gc
from graphc.errors import GraphError, ShapeError
from graphc.session import Session


def _unary_graph(shape, build, dtype="float32"):
    """x, y = build(x), loss = sum(y * r); fetches y and dy/dx."""
    with gc.Graph() as g:
        x = gc.placeholder("x", shape, dtype)
        y = build(x)
        r = gc.placeholder("r", y.shape, dtype)
        (gx,) = gc.gradients(gc.sum(y * r), [x])
    return gc.compile(g, shapes={}, fetches=[y.name, gx.name]), y, gx


def _torch_unary(torch, fn, xb, rb):
    xt = torch.from_numpy(xb).requires_grad_(True)
    yt = fn(xt)
    (yt * torch.from_numpy(rb)).sum().backward()
    return yt.detach().numpy(), xt.grad.numpy()


# --------------------------------------------------------------------------- upsample

@pytest.mark.parametrize("shape, factor", [((2, 3, 4, 4), 2), ((1, 2, 3, 5), (3, 2)), ((3, 1, 1, 1), 4),
                                           ((2, 2, 5, 3), (1, 3)), ((2, 3, 4, 4), 2.0), ((0, 2, 3, 3), 2)])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_upsample_matches_torch(shape, factor, dtype):
    torch = _torch()
    plan, y, gx = _unary_graph(shape, lambda x: gc.upsample(x, factor), dtype)
    rng = np.random.default_rng(0)
    xb = rng.standard_normal(shape).astype(dtype)
    rb = rng.standard_normal(y.shape).astype(dtype)
    out = Session(plan, threads=2).run({"x": xb, "r": rb})
    sf = tuple(float(f) for f in factor) if isinstance(factor, tuple) else float(factor)
    want_y, want_gx = _torch_unary(torch, lambda t: torch.nn.functional.interpolate(t, scale_factor=sf,
                                                                                    mode="nearest"), xb, rb)
    np.testing.assert_array_equal(out[y.name], want_y)  # a copy: exact
    tol = 1e-6 if dtype == "float32" else 1e-14  # block sums in another order
    np.testing.assert_allclose(out[gx.name], want_gx, rtol=tol, atol=tol)


def test_upsample_copies_special_values_and_its_gradient_is_the_block_sum():
    x = np.array([[[[np.nan, -0.0], [np.inf, -np.inf]]]], np.float32)
    plan, y, gx = _unary_graph(x.shape, lambda t: gc.upsample(t, (2, 3)))
    r = np.arange(4 * 6, dtype=np.float32).reshape(1, 1, 4, 6)
    out = Session(plan).run({"x": x, "r": r})
    want = np.repeat(np.repeat(x, 2, axis=2), 3, axis=3)
    np.testing.assert_array_equal(out[y.name], want)
    assert np.array_equal(np.signbit(out[y.name]), np.signbit(want))
    np.testing.assert_array_equal(out[gx.name], r.reshape(1, 1, 2, 2, 2, 3).sum(axis=(3, 5)))


def test_upsample_threads_give_the_same_bits():
    plan, y, gx = _unary_graph((9, 8, 7, 5), lambda x: gc.upsample(x, (2, 3)))
    rng = np.random.default_rng(1)
    feeds = {"x": rng.standard_normal((9, 8, 7, 5)).astype(np.float32),
             "r": rng.standard_normal(y.shape).astype(np.float32)}
    one = Session(plan, threads=1).run(feeds)
    two = Session(plan, threads=2).run(feeds)
    for name in one:
        assert one[name].tobytes() == two[name].tobytes(), name


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(scale_factor=1.5), GraphError, "integer"),
    (dict(scale_factor=0), GraphError, "integer >= 1"),
    (dict(scale_factor=(2, 2, 2)), GraphError, "pair"),
    (dict(scale_factor=2, mode="bilinear"), GraphError, "only 'nearest'"),
])
def test_upsample_bad_arguments(kwargs, error, match):
    with gc.Graph():
        x = gc.placeholder("x", (1, 2, 3, 3))
        with pytest.raises(error, match=match):
            gc.upsample(x, **kwargs)


def test_upsample_needs_nchw():
    with gc.Graph():
        x = gc.placeholder("x", (2, 3, 4))
        with pytest.raises(ShapeError, match="rank 4"):
            gc.upsample(x, 2)


def test_upsample_symbolic_batch():
    with gc.Graph():
        x = gc.placeholder("x", (None, 2, 3, 4))
        assert gc.upsample(x, (2, 3)).shape == (None, 2, 6, 12)
        assert gc.nn.Upsample(scale_factor=2)(x).shape == (None, 2, 6, 8)


def test_nn_upsample_matches_torch_and_refuses_what_it_lacks():
    torch = _torch()
    xb = np.random.default_rng(2).standard_normal((2, 3, 4, 5)).astype(np.float32)
    with gc.Graph() as g:
        x = gc.placeholder("x", xb.shape)
        y = gc.nn.Upsample(scale_factor=2)(x)
    out = Session(gc.compile(g, shapes={}, fetches=[y.name], train=False)).run({"x": xb})
    np.testing.assert_array_equal(out[y.name], torch.nn.Upsample(scale_factor=2)(torch.from_numpy(xb)).numpy())
    assert repr(gc.nn.Upsample(scale_factor=2)) == "Upsample(scale_factor=2, mode='nearest')"
    for kwargs, words in [(dict(size=8), "size"), (dict(), "scale_factor"),
                          (dict(scale_factor=2, mode="bilinear"), "mode")]:
        with pytest.raises(GraphError, match=words):
            gc.nn.Upsample(**kwargs)


# --------------------------------------------------------------------------- leaky_relu

def _leaky_inputs(rng, dtype):
    x = rng.standard_normal((5, 7, 9)).astype(dtype)
    special = np.array([np.nan, np.inf, -np.inf, -0.0, 0.0, np.finfo(dtype).max, -np.finfo(dtype).max], dtype)
    x.flat[:special.size] = special
    return x


@pytest.mark.parametrize("slope", [0.01, 0.2, 0.0, -0.5, 1.5])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_leaky_relu_matches_torch(slope, dtype):
    torch = _torch()
    rng = np.random.default_rng(4)
    xb = _leaky_inputs(rng, dtype)
    rb = rng.standard_normal(xb.shape).astype(dtype)
    plan, y, gx = _unary_graph(xb.shape, lambda x: gc.leaky_relu(x, slope), dtype)
    with np.errstate(over="ignore"):
        out = Session(plan, threads=2).run({"x": xb, "r": rb})
    want_y, want_gx = _torch_unary(torch, lambda t: torch.nn.functional.leaky_relu(t, slope), xb, rb)
    # the same select and one product, as torch: the same bits, NaN, infinities and -0.0 included
    np.testing.assert_array_equal(out[y.name], want_y)
    assert np.array_equal(np.signbit(out[y.name]), np.signbit(want_y))
    np.testing.assert_array_equal(out[gx.name], want_gx)


def test_leaky_relu_gradient_reads_the_output_for_a_nonnegative_slope():
    # the pre-activation need not stay alive for the backward pass when slope >= 0
    for slope, reads_output in [(0.2, True), (0.0, True), (-0.2, False)]:
        with gc.Graph() as g:
            x = gc.placeholder("x", (3, 4))
            y = gc.leaky_relu(x, slope)
            gc.gradients(gc.sum(y), [x])
        (node,) = [n for n in g.nodes if n.op == "leaky_relu_grad"]
        assert node.inputs[1] == (y.name if reads_output else x.name), (slope, node.inputs)


@pytest.mark.parametrize("slope", ["0.1", float("nan"), float("inf"), True])
def test_leaky_relu_bad_slope(slope):
    with gc.Graph():
        x = gc.placeholder("x", (2, 3))
        with pytest.raises(GraphError, match="negative_slope"):
            gc.leaky_relu(x, slope)
    with pytest.raises(GraphError, match="negative_slope"):
        gc.nn.LeakyReLU(slope)


def test_leaky_relu_refuses_integers():
    with gc.Graph():
        x = gc.placeholder("x", (2, 3), "int64")
        with pytest.raises(GraphError, match="leaky_relu"):
            gc.leaky_relu(x)


def test_nn_leaky_relu_matches_torch():
    torch = _torch()
    xb = _leaky_inputs(np.random.default_rng(5), "float32")
    with gc.Graph() as g:
        x = gc.placeholder("x", xb.shape)
        y = gc.nn.LeakyReLU(0.2)(x)
    out = Session(gc.compile(g, shapes={}, fetches=[y.name], train=False)).run({"x": xb})
    np.testing.assert_array_equal(out[y.name], torch.nn.LeakyReLU(0.2)(torch.from_numpy(xb)).numpy())
    assert repr(gc.nn.LeakyReLU()) == "LeakyReLU(negative_slope=0.01)"
