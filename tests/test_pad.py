"""gc.pad (numpy.pad per-axis pairs; constant, reflect, replicate) and gc.flatten (torch.flatten):
the compiled CPU kernels against numpy.pad and torch.nn.functional.pad, gradients through a
training-style graph, edge cases and refusals."""

import numpy as np
import pytest

import graphc as gc
from graphc.errors import DTypeError, GraphError, ModelFormatError, ShapeError
from graphc.graph import Graph
from graphc.ops._common import build
from graphc.session import Session

NUMPY_MODE = {"constant": "constant", "reflect": "reflect", "replicate": "edge"}


def _run(build, feeds, shapes=None, threads=1):
    """Build a graph with build(placeholders...) and run its one output on feeds."""
    with Graph() as g:
        phs = [gc.placeholder(k, (None,) * v.ndim if shapes == "symbolic" else v.shape, v.dtype.name)
               for k, v in feeds.items()]
        y = build(*phs)
    plan = gc.compile(g, shapes={k: v.shape for k, v in feeds.items()}, fetches=[y.name])
    return Session(plan, threads=threads).run(feeds)[y.name], y


def _numpy_pad(x, pads, mode, value=0.0):
    if mode == "constant":
        return np.pad(x, pads, mode="constant", constant_values=np.asarray(value).astype(x.dtype))
    return np.pad(x, pads, mode=NUMPY_MODE[mode])


CASES = [((5,), [(2, 3)]), ((3, 4), [(1, 2), (0, 3)]), ((2, 3, 9), [(0, 0), (2, 1), (8, 8)]),
         ((1, 1), [(0, 0), (0, 0)]), ((4, 1, 7, 6), [(0, 1), (0, 0), (6, 6), (5, 0)]),
         ((0, 3), [(0, 0), (2, 2)]), ((2, 300, 301), [(0, 0), (3, 3), (1, 2)])]


@pytest.mark.parametrize("mode", ["constant", "reflect", "replicate"])
@pytest.mark.parametrize("dtype", ["float32", "float64", "int32", "int64"])
def test_pad_matches_numpy_pad(mode, dtype):
    rng = np.random.default_rng(0)
    for shape, pads in CASES:
        x = (rng.normal(size=shape) * 100).astype(dtype)
        want = _numpy_pad(x, pads, mode, value=7.0)
        for threads in (1, 2):
            got, _ = _run(lambda t, pads=pads: gc.pad(t, pads, mode=mode, value=7.0), {"x": x}, threads=threads)
            assert got.dtype == want.dtype and got.shape == want.shape, (shape, pads)
            assert got.tobytes() == want.tobytes(), (shape, pads, threads)


def test_pad_special_values_move_bit_for_bit():
    x = np.array([[np.nan, -0.0, np.inf], [-np.inf, 0.0, 1e-45]], np.float32)
    for mode in ("constant", "reflect", "replicate"):
        got, _ = _run(lambda t, mode=mode: gc.pad(t, [(1, 1), (2, 2)], mode=mode, value=-0.0), {"x": x})
        assert got.tobytes() == _numpy_pad(x, [(1, 1), (2, 2)], mode, -0.0).tobytes(), mode
    # values past float32's range round to ±inf (or to ±FLT_MAX within half an ulp), as numpy casts them
    flt_max = float(np.finfo(np.float32).max)
    for v in (np.nan, np.inf, -np.inf, 1e300, -1e39, flt_max, -(flt_max + 2.0 ** 103 - 2.0 ** 80)):
        got, _ = _run(lambda t, v=v: gc.pad(t, [(0, 1), (1, 0)], value=v), {"x": x})
        with np.errstate(over="ignore"):
            want = _numpy_pad(x, [(0, 1), (1, 0)], "constant", v)
        assert got.tobytes() == want.tobytes(), v


def test_pad_bool_constant_and_scalar():
    x = np.array([True, False, True])
    got, _ = _run(lambda t: gc.pad(t, [(2, 1)], value=1), {"x": x})
    np.testing.assert_array_equal(got, [True, True, True, False, True, True])
    s = np.array(2.5, np.float64)
    got, y = _run(lambda t: gc.pad(t, []), {"x": s})
    assert y.shape == () and got.shape == () and got == 2.5


def test_reflect_at_the_limit_and_size_one_axes():
    x = np.arange(4.0)
    got, _ = _run(lambda t: gc.pad(t, [(3, 3)], mode="reflect"), {"x": x})  # pad == dim - 1
    np.testing.assert_array_equal(got, [3, 2, 1, 0, 1, 2, 3, 2, 1, 0])
    one = np.array([[5.0]])
    got, _ = _run(lambda t: gc.pad(t, [(2, 0), (1, 3)], mode="replicate"), {"x": one})
    np.testing.assert_array_equal(got, np.full((3, 5), 5.0))
    got, _ = _run(lambda t: gc.pad(t, [(0, 0), (0, 0)], mode="reflect"), {"x": one})  # zero pads on size 1
    np.testing.assert_array_equal(got, one)


def test_pad_with_symbolic_shapes_binds_at_compile():
    x = np.arange(24.0).reshape(2, 3, 4)
    got, y = _run(lambda t: gc.pad(t, [(0, 0), (1, 1), (2, 0)], mode="reflect"), {"x": x}, shapes="symbolic")
    assert y.shape == (None, None, None)
    np.testing.assert_array_equal(got, np.pad(x, [(0, 0), (1, 1), (2, 0)], mode="reflect"))


def test_pad_matches_torch_functional_pad():
    torch = pytest.importorskip("torch", reason="torch is not installed")
    F = torch.nn.functional
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 3, 5, 7)).astype(np.float32)
    pads = [(0, 0), (0, 0), (1, 4), (3, 2)]
    torch_pads = (3, 2, 1, 4)  # torch: last axis first
    for mode in ("constant", "reflect", "replicate"):
        kw = {"value": 1.5} if mode == "constant" else {}
        want = F.pad(torch.from_numpy(x), torch_pads, mode=mode, **kw).numpy()
        got, _ = _run(lambda t, mode=mode: gc.pad(t, pads, mode=mode, value=1.5), {"x": x})
        np.testing.assert_array_equal(got, want, err_msg=mode)


@pytest.mark.parametrize("mode", ["constant", "reflect", "replicate"])
def test_pad_gradient_against_torch_autograd(mode):
    torch = pytest.importorskip("torch", reason="torch is not installed")
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, 3, 6, 5))
    w = rng.normal(size=(2, 3, 6 + 5 + 2, 5 + 1 + 4))
    pads = [(0, 0), (0, 0), (5, 2), (1, 4)]
    with Graph() as g:
        tx = gc.placeholder("x", x.shape, "float64")
        loss = gc.sum(gc.pad(tx, pads, mode=mode) * gc.constant(w))
        (dx,) = gc.gradients(loss, [tx])
    plan = gc.compile(g, fetches=[dx.name])
    got = Session(plan, threads=2).run({"x": x})[dx.name]
    xt = torch.from_numpy(x).requires_grad_(True)
    (torch.nn.functional.pad(xt, (1, 4, 5, 2), mode=mode) * torch.from_numpy(w)).sum().backward()
    np.testing.assert_allclose(got, xt.grad.numpy(), rtol=1e-12, atol=1e-12)


def test_pad_grad_is_identical_across_thread_counts():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(3, 40, 50)).astype(np.float32)
    gy = rng.normal(size=(3, 40 + 39 + 39, 50 + 49)).astype(np.float32)
    for mode in ("reflect", "replicate", "constant"):
        outs = []
        for threads in (1, 2):
            got, _ = _run(lambda a, b, mode=mode: build("pad_grad", [a, b], {"pads": (0, 0, 39, 39, 0, 49),
                                                                             "mode": mode}),
                          {"g": gy, "x": x}, threads=threads)
            outs.append(got.tobytes())
        assert outs[0] == outs[1], mode


def test_second_order_gradient_is_pad_again():
    with Graph() as g:
        x = gc.placeholder("x", (4, 5), "float64")
        y = gc.pad(x, [(1, 2), (3, 0)], mode="reflect")
        (dx,) = gc.gradients(gc.sum(y * y), [x])
        (ddx,) = gc.gradients(gc.sum(dx), [x])
    assert ddx.shape == (4, 5)
    x0 = np.random.default_rng(4).normal(size=(4, 5))
    out = gc.reference.evaluate(g, {"x": x0}, [ddx])[ddx]
    # dx = P^T (2 P x), so d/dx sum(dx) = 2 P^T P 1 = 2 P^T 1: twice the number of copies pad makes of each item
    counts = np.zeros(20)
    np.add.at(counts, np.pad(np.arange(20).reshape(4, 5), [(1, 2), (3, 0)], mode="reflect").ravel(), 1.0)
    np.testing.assert_allclose(out, 2 * counts.reshape(4, 5))


# -- refusals ------------------------------------------------------------------------------------

def test_pad_refusals():
    with Graph():
        x = gc.placeholder("x", (3, 4))
        with pytest.raises(ShapeError, match="torch.nn.functional.pad"):
            gc.pad(x, [1, 1, 2, 2])  # torch's flat list
        with pytest.raises(ShapeError, match="needs 2"):
            gc.pad(x, [(1, 1)])  # torch-style trailing axes only
        with pytest.raises(ShapeError, match="'edge' is 'replicate'"):
            gc.pad(x, [(1, 1), (0, 0)], mode="edge")
        with pytest.raises(ShapeError, match="negative"):
            gc.pad(x, [(1, -1), (0, 0)])
        with pytest.raises(ShapeError, match="must hold ints"):
            gc.pad(x, [(1.5, 1), (0, 0)])
        with pytest.raises(ShapeError, match="reflect.*pads < dim on axis 0"):
            gc.pad(x, [(3, 0), (0, 0)], mode="reflect")
        gc.pad(x, [(2, 2), (3, 3)], mode="reflect")  # the limit is fine
        with pytest.raises(ShapeError, match="not exactly representable"):
            gc.pad(gc.placeholder("i", (3,), "int32"), [(1, 1)], value=0.5)
        with pytest.raises(ShapeError, match="not exactly representable"):
            gc.pad(gc.placeholder("i64", (3,), "int64"), [(1, 1)], value=np.nan)
        with pytest.raises(ShapeError, match="not exactly representable"):
            gc.pad(gc.placeholder("b", (3,), "bool"), [(1, 1)], value=2)
        with pytest.raises(DTypeError, match="bool"):
            gc.pad(gc.placeholder("b2", (3,), "bool"), [(1, 1)], mode="replicate")
        with pytest.raises(ShapeError, match="replicate.*size 0"):
            gc.pad(gc.placeholder("e", (0, 2)), [(1, 0), (0, 0)], mode="replicate")


def test_reflect_checked_again_when_shapes_bind():
    with Graph() as g:
        x = gc.placeholder("x", (None, 4))
        y = gc.pad(x, [(2, 0), (0, 0)], mode="reflect")
    with pytest.raises(GraphError, match="pads < dim"):
        gc.compile(g, shapes={"x": (2, 4)}, fetches=[y.name])


# -- flatten ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape,start,end", [((2, 3, 4, 5), 1, -1), ((2, 3, 4, 5), 0, -1), ((2, 3, 4, 5), 1, 2),
                                             ((2, 3, 4, 5), -2, -1), ((7,), 0, 0), ((0, 3, 5), 1, -1),
                                             ((3, 0, 2), 0, 1), ((1, 1), 1, -1), ((), 0, -1)])
def test_flatten_matches_torch_flatten(shape, start, end):
    torch = pytest.importorskip("torch", reason="torch is not installed")
    x = np.arange(int(np.prod(shape)), dtype=np.float32).reshape(shape)
    want = torch.flatten(torch.from_numpy(x), start, end).numpy()
    got, y = _run(lambda t: gc.flatten(t, start, end), {"x": x})
    assert y.shape == want.shape
    np.testing.assert_array_equal(got, want)


def test_flatten_symbolic_batch_and_refusals():
    with Graph() as g:
        x = gc.placeholder("x", (None, 3, 4, 5))
        y = gc.flatten(x)
        assert y.shape == (None, 60)
        z = gc.flatten(x, 0, 1)  # the unknown dim is inside the merged axes
        assert z.shape == (None, 4, 5)
        with pytest.raises(ShapeError, match="out of range"):
            gc.flatten(x, 4)
        with pytest.raises(ShapeError, match="comes after"):
            gc.flatten(x, 2, 1)
        with pytest.raises(GraphError, match="one reshape"):
            gc.flatten(gc.placeholder("w", (None, 3, None)), 2, 2)
    x0 = np.arange(2 * 60, dtype=np.float32).reshape(2, 3, 4, 5)
    plan = gc.compile(g, shapes={"x": x0.shape}, fetches=[y.name, z.name])
    out = Session(plan).run({"x": x0})
    np.testing.assert_array_equal(out[y.name], x0.reshape(2, 60))
    np.testing.assert_array_equal(out[z.name], x0.reshape(6, 4, 5))


def test_flatten_is_one_reshape_node():
    with Graph() as g:
        x = gc.placeholder("x", (2, 3, 4))
        gc.flatten(x)
    assert [n.op for n in g.nodes if n.op != "placeholder"] == ["reshape"]


# -- the C++ kernels' own checks (a plan's attrs may be any bytes) ---------------------------------

def _tampered_plan(dtype, mode, edit):
    with Graph() as g:
        x = gc.placeholder("x", (3, 4), dtype)
        y = gc.pad(x, [(1, 1), (2, 2)], mode=mode)
    proto = gc.compile(g, fetches=[y.name]).proto
    (step,) = [s for s in proto.steps if s.op == "pad"]
    edit(step.attrs)
    return proto


def _set_mode(a, v):
    a["mode"].s = v


def _set_pads(a, v):
    a["pads"].ints.values[:] = v


def _set_value(a, v):
    a["value"].f = v


@pytest.mark.parametrize("dtype,mode,edit,match", [
    ("float32", "constant", lambda a: _set_mode(a, "wrap"), "attr 'mode' must be"),
    ("float32", "reflect", lambda a: _set_pads(a, [1, 1, 4, 0]), "pads < dim"),  # the output dims differ too
    ("float32", "reflect", lambda a: _set_pads(a, [0, 2, 4, 0]), "pads < dim"),  # the same output dims (5, 8)
    ("float32", "constant", lambda a: _set_pads(a, [1, 1, 2]), "2 \\* rank = 4"),
    ("float32", "constant", lambda a: _set_pads(a, [-1, 3, 2, 2]), "negative"),
    ("float32", "constant", lambda a: _set_pads(a, [2 ** 62, 2 ** 62, 2, 2]), "overflows|output"),
    ("int32", "constant", lambda a: _set_value(a, 0.5), "not exactly representable"),
    ("int32", "constant", lambda a: _set_value(a, float("nan")), "not exactly representable"),
    ("int64", "constant", lambda a: _set_value(a, 2.0 ** 63), "not exactly representable"),
    ("bool", "constant", lambda a: (_set_mode(a, "replicate")), "takes float or int input, got bool"),
])
def test_kernel_refuses_tampered_attrs(dtype, mode, edit, match):
    proto = _tampered_plan(dtype, mode, edit)
    with pytest.raises(ModelFormatError, match=match):
        Session(proto).run({"x": np.ones((3, 4), dtype)})
