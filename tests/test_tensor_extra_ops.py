"""The structural ops the ONNX importer maps onto (graphc/ops/tensor_extra.py, min/argmin in
graphc/ops/reduce.py, instance_norm in graphc/ops/norm.py) beyond what the registry-enumerating
tests check: resize and instance_norm against onnx's own reference implementation, the builders,
the typed errors, identity as a view, and the einsum composite through the compiler."""

import numpy as np
import pytest

import graphc as gc
from graphc import registry
from graphc.errors import DTypeError, GraphError, ShapeError
from graphc.graph import Graph
from graphc.session import Session


def _run(graph, fetches, feeds, shapes=None):
    shapes = shapes or {k: v.shape for k, v in feeds.items()}
    plan = gc.compile(graph, shapes=shapes, fetches=[t.name for t in fetches])
    out = Session(plan).run(feeds)
    return [out[t.name] for t in fetches], plan


# -- resize against onnx.reference ------------------------------------------------------------------

def _onnx_resize(x, sizes, scales, mode, ctm, nearest_mode, exclude_outside):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper
    from onnx.reference import ReferenceEvaluator

    dt = TensorProto.FLOAT if x.dtype == np.float32 else TensorProto.DOUBLE
    if scales is not None:
        inputs, init = ["X", "", "scales"], helper.make_tensor("scales", TensorProto.FLOAT, [x.ndim], list(scales))
    else:
        inputs, init = ["X", "", "", "sizes"], helper.make_tensor("sizes", TensorProto.INT64, [x.ndim], list(sizes))
    node = helper.make_node("Resize", inputs, ["Y"], mode=mode, coordinate_transformation_mode=ctm,
                            nearest_mode=nearest_mode, exclude_outside=int(exclude_outside))
    graph = helper.make_graph([node], "resize", [helper.make_tensor_value_info("X", dt, x.shape)],
                              [helper.make_tensor_value_info("Y", dt, None)], [init])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    del onnx
    return ReferenceEvaluator(model).run(None, {"X": x})[0]


RESIZE_ONNX_CASES = [
    ((1, 2, 4, 5), (1, 2, 8, 10), None, "nearest", "half_pixel", "round_prefer_floor", False),
    ((1, 2, 4, 5), (1, 2, 7, 3), None, "nearest", "asymmetric", "floor", False),
    ((1, 2, 4, 5), (1, 2, 9, 13), None, "nearest", "align_corners", "round_prefer_ceil", False),
    ((1, 2, 5, 7), (1, 2, 3, 4), None, "nearest", "pytorch_half_pixel", "ceil", False),
    ((2, 3, 4, 5), (2, 3, 8, 10), None, "linear", "half_pixel", "round_prefer_floor", False),
    ((2, 3, 4, 5), (2, 3, 3, 9), None, "linear", "align_corners", "round_prefer_floor", False),
    ((2, 3, 4, 5), (2, 3, 1, 7), None, "linear", "pytorch_half_pixel", "round_prefer_floor", False),
    ((2, 3, 4, 5), (2, 3, 6, 2), None, "linear", "asymmetric", "round_prefer_floor", False),
    ((1, 2, 5, 7), (1, 2, 9, 4), None, "linear", "half_pixel_symmetric", "round_prefer_floor", False),
    ((1, 2, 4, 5), (1, 2, 9, 3), None, "linear", "half_pixel", "round_prefer_floor", True),
    ((1, 2, 5, 7), None, (1.0, 1.0, 1.7, 0.6), "linear", "half_pixel", "round_prefer_floor", False),
    ((1, 2, 5, 7), None, (1.0, 1.0, 2.5, 1.3), "nearest", "asymmetric", "round_prefer_ceil", False),
    ((3, 9), (5, 4), None, "linear", "half_pixel", "round_prefer_floor", False),
]


@pytest.mark.parametrize("case", RESIZE_ONNX_CASES, ids=lambda c: f"{c[3]}-{c[4]}-{c[5]}")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_resize_matches_onnx_reference(case, dtype):
    shape, sizes, scales, mode, ctm, nm, exclude = case
    x = np.random.default_rng(0).normal(size=shape).astype(dtype)
    want = _onnx_resize(x, sizes, scales, mode, ctm, nm, exclude)
    if scales is not None:
        # ONNX's scales are float32 and give the output size floor(scale · in)
        scales = tuple(float(np.float32(s)) for s in scales)
        sizes = tuple(int(np.floor(s * d)) for s, d in zip(scales, shape))
    attrs = {"sizes": sizes, "scales": scales, "mode": mode, "coordinate_transformation_mode": ctm,
             "nearest_mode": nm, "exclude_outside": exclude}
    with Graph() as g:
        y = gc.resize(gc.placeholder("x", shape, dtype), **attrs)
    (got,), _ = _run(g, [y], {"x": x})
    ref = registry.get_op("resize").evaluate([x], attrs)[0]
    tol = 1e-6 if dtype == "float32" else 1e-12
    for result in (got, ref):  # the kernel and the numpy reference
        assert result.shape == want.shape
        np.testing.assert_allclose(result, want, rtol=tol, atol=tol)


def test_resize_nearest_moves_ints_and_bools_exactly():
    x = np.arange(-6, 6, dtype=np.int64).reshape(1, 1, 3, 4) * (2 ** 60 // 7)
    b = (x % 3 == 0)
    with Graph() as g:
        xi = gc.placeholder("xi", x.shape, "int64")
        xb = gc.placeholder("xb", b.shape, "bool")
        yi = gc.resize(xi, (1, 1, 6, 8), mode="nearest", coordinate_transformation_mode="asymmetric",
                       nearest_mode="floor")
        yb = gc.resize(xb, (1, 1, 6, 8), mode="nearest", coordinate_transformation_mode="asymmetric",
                       nearest_mode="floor")
    (gi, gb), _ = _run(g, [yi, yb], {"xi": x, "xb": b})
    np.testing.assert_array_equal(gi, np.repeat(np.repeat(x, 2, axis=2), 2, axis=3))
    np.testing.assert_array_equal(gb, np.repeat(np.repeat(b, 2, axis=2), 2, axis=3))


def test_resize_keeps_axes_marked_minus_one_with_a_symbolic_batch():
    x = np.random.default_rng(1).normal(size=(3, 2, 4, 4)).astype(np.float32)
    with Graph() as g:
        xp = gc.placeholder("x", ("N", 2, 4, 4))
        y = gc.resize(xp, (-1, -1, 8, 6), mode="linear")
    assert y.shape == ("N", 2, 8, 6)
    (got,), _ = _run(g, [y], {"x": x}, shapes={"x": x.shape})
    want = registry.get_op("resize").evaluate([x], {"sizes": (3, 2, 8, 6), "scales": None, "mode": "linear",
                                                    "coordinate_transformation_mode": "half_pixel",
                                                    "nearest_mode": "round_prefer_floor",
                                                    "exclude_outside": False})[0]
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_resize_gradient_trains_through_the_compiler():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, 3, 5, 4))
    r = rng.normal(size=(2, 3, 9, 7))
    with Graph() as g:
        xp = gc.placeholder("x", x.shape, "float64")
        y = gc.resize(xp, (2, 3, 9, 7), mode="linear", coordinate_transformation_mode="align_corners")
        loss = gc.sum(y * gc.constant(r))
        (dx,) = gc.gradients(loss, [xp])
    (got,), _ = _run(g, [dx], {"x": x})
    # d/dx Σ r·R(x) = Rᵀ r: probe with unit vectors through the reference
    op = registry.get_op("resize")
    attrs = {"sizes": (2, 3, 9, 7), "scales": None, "mode": "linear", "coordinate_transformation_mode": "align_corners",
             "nearest_mode": "round_prefer_floor", "exclude_outside": False}
    want = np.zeros_like(x)
    for idx in np.ndindex(*x.shape):
        e = np.zeros_like(x)
        e[idx] = 1.0
        want[idx] = np.sum(op.evaluate([e], attrs)[0] * r)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kwargs,err", [
    (dict(sizes=(1, 2, 8)), ShapeError),
    (dict(sizes=(1, 2, 8, 8), mode="cubic"), ShapeError),
    (dict(sizes=(1, 2, 8, 8), coordinate_transformation_mode="tf_crop_and_resize"), ShapeError),
    (dict(sizes=(1, 2, 8, 8), mode="linear", coordinate_transformation_mode="tf_half_pixel_for_nn"), ShapeError),
    (dict(sizes=(1, 2, 8, 8), nearest_mode="nearest"), ShapeError),
    (dict(sizes=(1, 2, 8, 8), scales=(1.0, 1.0, 0.0, 2.0)), ShapeError),
    (dict(sizes=(-1, 2, 8, 8), scales=(2.0, 1.0, 2.0, 2.0)), ShapeError),
    (dict(sizes=(1, 2, -3, 8)), ShapeError),
])
def test_resize_refuses_bad_attrs(kwargs, err):
    with Graph():
        x = gc.placeholder("x", (1, 2, 4, 4))
        with pytest.raises(err):
            gc.resize(x, **kwargs)


def test_resize_linear_refuses_ints():
    with Graph():
        x = gc.placeholder("x", (1, 2, 4, 4), "int32")
        with pytest.raises(DTypeError, match="linear"):
            gc.resize(x, (1, 2, 8, 8), mode="linear")


# -- instance_norm against onnx.reference ---------------------------------------------------------------

@pytest.mark.parametrize("shape", [(2, 3, 5), (1, 4, 3, 6), (2, 2, 2, 3, 4)])
def test_instance_norm_matches_onnx_reference(shape):
    pytest.importorskip("onnx")
    from onnx import TensorProto, helper
    from onnx.reference import ReferenceEvaluator

    rng = np.random.default_rng(3)
    x = rng.normal(size=shape).astype(np.float32)
    s = rng.normal(size=shape[1]).astype(np.float32)
    b = rng.normal(size=shape[1]).astype(np.float32)
    node = helper.make_node("InstanceNormalization", ["X", "S", "B"], ["Y"], epsilon=1e-3)
    vi = [helper.make_tensor_value_info(n, TensorProto.FLOAT, a.shape) for n, a in (("X", x), ("S", s), ("B", b))]
    model = helper.make_model(helper.make_graph([node], "in", vi, [helper.make_tensor_value_info("Y", 1, None)]),
                              opset_imports=[helper.make_opsetid("", 17)])
    want = ReferenceEvaluator(model).run(None, {"X": x, "S": s, "B": b})[0]
    with Graph() as g:
        xp, sp, bp = (gc.placeholder(n, a.shape) for n, a in (("x", x), ("s", s), ("b", b)))
        y = gc.instance_norm(xp, sp, bp, eps=1e-3)
    (got,), _ = _run(g, [y], {"x": x, "s": s, "b": b})
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_instance_norm_refuses_rank_2_and_wrong_channels():
    with Graph():
        x = gc.placeholder("x", (2, 3))
        c = gc.placeholder("c", (3,))
        with pytest.raises(ShapeError, match="rank >= 3"):
            gc.instance_norm(x, c, c)
        x3 = gc.placeholder("x3", (2, 4, 5))
        with pytest.raises(ShapeError, match="scale"):
            gc.instance_norm(x3, c, c)


# -- einsum ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("eq,shapes", [
    ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]),
    ("ij,kj", [(3, 4), (5, 4)]),
    ("...ij,...jk->...ik", [(2, 1, 3, 4), (5, 4, 2)]),
    ("abc,cd,de->abe", [(2, 3, 4), (4, 5), (5, 3)]),
    ("bhqd,bhkd->bhqk", [(2, 3, 4, 5), (2, 3, 6, 5)]),
    ("ijk->", [(2, 3, 4)]),
    ("->", [()]),
    ("ij->ij", [(3, 4)]),
])
def test_einsum_matches_numpy_through_the_compiler(eq, shapes):
    rng = np.random.default_rng(4)
    xs = [rng.normal(size=s) for s in shapes]
    with Graph() as g:
        ps = [gc.placeholder(f"x{i}", s, "float64") for i, s in enumerate(shapes)]
        y = gc.einsum(eq, *ps, name="y")
    g.set_outputs([y])
    (got,), plan = _run(g, [y], {f"x{i}": x for i, x in enumerate(xs)})
    assert plan.fetches == ["y"]  # a no-op equation keeps its own output (an identity view)
    np.testing.assert_allclose(got, np.einsum(eq, *xs), rtol=1e-12, atol=1e-12)
    assert "einsum" not in [s.op for s in plan.steps]  # a composite: expanded by the compiler


@pytest.mark.parametrize("eq,shapes,match", [
    ("ii->i", [(3, 3)], "diagonal"),
    ("ij,jk->ik", [(3, 4)], "operands"),
    ("ij->ijk", [(3, 4)], "appear in no operand"),
    ("ij,jk->ik", [(3, 4), (5, 6)], "sizes 4 and 5"),
    ("i1->i", [(3, 4)], "not letters"),
    ("...ij->ij", [(2, 3, 4)], "ellipsis"),
    ("ijk->ij", [(3, 4)], "rank"),
])
def test_einsum_refuses_what_it_cannot_do(eq, shapes, match):
    with Graph():
        ps = [gc.placeholder(f"x{i}", s) for i, s in enumerate(shapes)]
        with pytest.raises((GraphError, ShapeError), match=match):
            gc.einsum(eq, *ps)


# -- tile, min, argmin, identity -------------------------------------------------------------------------

def test_tile_min_argmin_builders_match_numpy():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(3, 4, 5)).astype(np.float32)
    with Graph() as g:
        xp = gc.placeholder("x", x.shape)
        t = gc.tile(xp, (2, 1, 3))
        m = gc.min(xp, axis=(0, 2), keepdims=True)
        a = gc.argmin(xp, axis=1)
    (gt, gm, ga), _ = _run(g, [t, m, a], {"x": x})
    np.testing.assert_array_equal(gt, np.tile(x, (2, 1, 3)))
    np.testing.assert_array_equal(gm, x.min(axis=(0, 2), keepdims=True))
    np.testing.assert_array_equal(ga, x.argmin(axis=1))


def test_tile_refuses_wrong_repeats():
    with Graph():
        x = gc.placeholder("x", (3, 4))
        with pytest.raises(ShapeError, match="one entry per axis"):
            gc.tile(x, (2,))
        with pytest.raises(ShapeError, match=">= 0"):
            gc.tile(x, (2, -1))


def test_identity_is_a_view_and_passes_the_gradient():
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    with Graph() as g:
        xp = gc.placeholder("x", x.shape)
        y = gc.identity(xp * 2.0, name="out")
        (dx,) = gc.gradients(gc.sum(y * y), [xp])
    (gy, gdx), plan = _run(g, [y, dx], {"x": x})
    np.testing.assert_array_equal(gy, 2 * x)
    np.testing.assert_allclose(gdx, 8 * x)
    assert registry.get_op("identity").view
    assert y.name == "out"
