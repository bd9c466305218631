"""max_pool2d / avg_pool2d: the compiled CPU kernels (forward and gradient) against PyTorch's
CPU implementation, thread-count independence, second order, and the refusals of bad
arguments (typed graphc errors naming the op)."""

import numpy as np
import pytest

import graphc as gc
from graphc import errors
from graphc.session import Session

# (shape, kernel_size, stride, padding): odd sizes, rectangular windows, overlap, padding
CONFIGS = [
    ((2, 3, 7, 9), 3, 2, 1),
    ((1, 2, 5, 6), (2, 3), (1, 2), (1, 0)),
    ((2, 1, 8, 8), 2, None, 0),
    ((1, 2, 6, 5), 3, 1, 0),
    ((3, 2, 11, 13), (3, 5), (2, 3), (1, 2)),
    ((1, 1, 1, 1), 1, None, 0),
    ((2, 4, 17, 15), 4, 3, 2),
]


def _run(build, x, dtype, threads=1):
    """Compile loss = sum(pool(x) * r) and fetch y and dL/dx (the kernels' path)."""
    rng = np.random.default_rng(1)
    with gc.Graph() as g:
        xp = gc.placeholder("x", x.shape, dtype)
        y = build(xp)
        r = gc.constant(rng.normal(size=y.shape).astype(dtype), name="r")
        loss = gc.sum(y * r)
        (gx,) = gc.gradients(loss, [xp])
    sess = Session(gc.compile(g, fetches=[y.name, gx.name]), threads=threads)
    out = sess.run({"x": x})
    return out[y.name], out[gx.name], g.tensor("r").producer.attrs["value"]


def _torch_pair(torch, fn, x, r):
    t = torch.tensor(x, requires_grad=True)
    y = fn(t)
    y.backward(torch.tensor(r))
    return y.detach().numpy(), t.grad.numpy()


def _data(shape, dtype, special):
    rng = np.random.default_rng(sum(shape))
    x = rng.uniform(-2, 2, size=shape).astype(dtype)
    if special:  # NaN (the window's max), ±inf, -0.0, and repeated values (ties: the first max)
        vals = np.array([np.nan, np.inf, -np.inf, -0.0, 0.0, 1.0, 1.0], dtype)
        flat = x.reshape(-1)
        pick = rng.choice(flat.size, size=max(1, flat.size // 4), replace=False)
        flat[pick] = rng.choice(vals, size=pick.size)
    return x


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("special", [False, True], ids=["random", "special"])
@pytest.mark.parametrize("shape,k,s,p", CONFIGS)
def test_max_pool2d_matches_torch(shape, k, s, p, special, dtype):
    torch = pytest.importorskip("torch", reason="PyTorch is the reference for pooling semantics")
    x = _data(shape, dtype, special)
    y, gx, r = _run(lambda t: gc.max_pool2d(t, k, stride=s, padding=p), x, dtype)
    ty, tgx = _torch_pair(torch, lambda t: torch.nn.functional.max_pool2d(t, k, stride=s, padding=p), x, r)
    # selection and scatter of single values: bit for bit (NaN where torch has NaN)
    np.testing.assert_array_equal(y, ty)
    np.testing.assert_array_equal(gx, tgx)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("include_pad", [True, False])
@pytest.mark.parametrize("special", [False, True], ids=["random", "special"])
@pytest.mark.parametrize("shape,k,s,p", CONFIGS)
def test_avg_pool2d_matches_torch(shape, k, s, p, special, include_pad, dtype):
    torch = pytest.importorskip("torch", reason="PyTorch is the reference for pooling semantics")
    x = _data(shape, dtype, special)
    y, gx, r = _run(lambda t: gc.avg_pool2d(t, k, stride=s, padding=p, count_include_pad=include_pad), x, dtype)
    ty, tgx = _torch_pair(torch, lambda t: torch.nn.functional.avg_pool2d(
        t, k, stride=s, padding=p, count_include_pad=include_pad), x, r)
    # the same summation order as PyTorch's CPU kernel; a tolerance in case its build vectorizes
    tol = 1e-6 if dtype == "float32" else 1e-14
    np.testing.assert_allclose(y, ty, rtol=tol, atol=tol)
    np.testing.assert_allclose(gx, tgx, rtol=tol, atol=tol)


@pytest.mark.parametrize("op", ["max", "avg"])
def test_results_do_not_depend_on_thread_count(op):
    x = _data((4, 8, 33, 31), "float32", special=True)

    def build(t):
        return gc.max_pool2d(t, 3, 2, 1) if op == "max" else gc.avg_pool2d(t, 3, 2, 1, count_include_pad=False)

    one = _run(build, x, "float32", threads=1)
    for threads in (2, 3, 8):
        other = _run(build, x, "float32", threads=threads)
        for a, b in zip(one[:2], other[:2]):
            assert a.tobytes() == b.tobytes()


@pytest.mark.parametrize("op", ["max", "avg"])
def test_second_order_matches_finite_differences(op):
    """d/dx <d/dx sum(pool(x)² · r), u>, through the gradient ops' own gradients (float64)."""
    rng = np.random.default_rng(3)
    shape = (2, 2, 7, 6)
    x0 = rng.uniform(0.5, 1.5, size=shape)
    with gc.Graph() as g:
        x = gc.placeholder("x", shape, "float64")
        y = gc.max_pool2d(x, 3, 2, 1) if op == "max" else gc.avg_pool2d(x, 3, 2, 1, count_include_pad=False)
        r = gc.constant(rng.normal(size=y.shape), name="r")
        (gx,) = gc.gradients(gc.sum(y * y * r), [x])
        u = gc.constant(rng.normal(size=shape), name="u")
        (hu,) = gc.gradients(gc.sum(gx * u), [x])
    sess = Session(gc.compile(g, fetches=[gx.name, hu.name]), threads=1)
    uval = g.tensor("u").producer.attrs["value"]
    w = rng.normal(size=shape)
    got = float(np.sum(sess.run({"x": x0})[hu.name] * w))
    eps = 1e-6
    numeric = float(np.sum((sess.run({"x": x0 + eps * uval})[gx.name]
                            - sess.run({"x": x0 - eps * uval})[gx.name]) / (2 * eps) * w))
    assert abs(got - numeric) <= 1e-5 + 1e-4 * abs(numeric), (got, numeric)


def test_defaults_and_pairs():
    with gc.Graph():
        x = gc.placeholder("x", (2, 3, 9, 8))
        assert gc.max_pool2d(x, 2).shape == (2, 3, 4, 4)  # stride defaults to kernel_size
        assert gc.avg_pool2d(x, (3, 2), stride=(2, 1), padding=(1, 0)).shape == (2, 3, 5, 7)
        assert gc.max_pool2d(gc.placeholder("b", (None, 3, 9, 8)), 3, 3).shape == (None, 3, 3, 2)


@pytest.mark.parametrize("call,match", [
    (lambda x: gc.max_pool2d(x, 2, ceil_mode=True), "max_pool2d: ceil_mode=True is not supported"),
    (lambda x: gc.avg_pool2d(x, 2, ceil_mode=True), "avg_pool2d: ceil_mode=True is not supported"),
    (lambda x: gc.max_pool2d(x, (2, 2, 2)), "kernel_size must be an int or a pair"),
    (lambda x: gc.max_pool2d(x, 2, padding=2), "padding=\\[2, 2\\] must be >= 0 and at most half"),
    (lambda x: gc.avg_pool2d(x, 0), "must be positive"),
    (lambda x: gc.max_pool2d(x, 2, stride=0), "must be positive"),
    (lambda x: gc.max_pool2d(x, 7), "smaller than the kernel size 7"),
    (lambda x: gc.max_pool2d(gc.reshape(x, (2, 3, 30)), 2), "rank 4"),
])
def test_bad_arguments_are_refused(call, match):
    with gc.Graph():
        x = gc.placeholder("x", (2, 3, 5, 6))
        with pytest.raises(errors.GraphError, match=match):
            call(x)


def test_integer_input_is_refused():
    with gc.Graph():
        x = gc.placeholder("x", (1, 1, 4, 4), "int32")
        with pytest.raises(errors.DTypeError, match="max_pool2d"):
            gc.max_pool2d(x, 2)


def test_gradient_of_wrong_shape_is_refused():
    with gc.Graph():
        x = gc.placeholder("x", (1, 2, 6, 6))
        dy = gc.placeholder("dy", (1, 2, 4, 4))
        attrs = {"kernel_size": (2, 2), "stride": (2, 2), "padding": (0, 0)}
        with pytest.raises(errors.ShapeError, match="max_pool2d_grad.*pooled shape \\(1, 2, 3, 3\\)"):
            gc.max_pool2d_grad(dy, x, attrs)


def test_gradients_on_symbolic_batch_dimension():
    """The batch size is bound at compile time; the gradient ops infer through None dims."""
    x0 = np.random.default_rng(4).uniform(-1, 1, size=(3, 2, 6, 6)).astype(np.float32)
    with gc.Graph() as g:
        x = gc.placeholder("x", (None, 2, 6, 6))
        y = gc.avg_pool2d(gc.max_pool2d(x, 2, 1), 3, 2, 1)
        (gx,) = gc.gradients(gc.sum(y), [x])
    assert gx.shape == (None, 2, 6, 6)
    sess = Session(gc.compile(g, shapes={"x": x0.shape}, fetches=[y.name, gx.name]), threads=2)
    out = sess.run({"x": x0})
    want = gc.reference.evaluate(g, {"x": x0}, [y, gx])
    np.testing.assert_allclose(out[y.name], want[y], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(out[gx.name], want[gx], rtol=1e-6, atol=1e-6)
