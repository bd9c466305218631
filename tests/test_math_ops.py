"""graphc/ops/math.py beyond what the registry-driven tests check (kernel vs reference, inference,
the independent implementations in test_ops_reference.py, first derivatives): the compiled kernels
against ONNX's own definitions (onnx.reference, and onnxruntime on ordinary values), the integer
cases that would trap in C, rounding of halves, second derivatives, the builders and refusals.

Tolerances against ONNX: float32 1e-5 relative (libm against numpy's float32 functions: a few ulp,
2^-23 ≈ 1.2e-7 each; onnxruntime's own float erf/trig approximations within 1e-6 absolute), float64
1e-12 (libm on both sides).
"""

import math

import numpy as np
import pytest

import graphc as gc
from graphc.errors import GraphError
from graphc.graph import Graph
from graphc.session import Session

UNARY_ONNX = {
    "erf": "Erf", "floor": "Floor", "ceil": "Ceil", "round": "Round", "reciprocal": "Reciprocal",
    "sin": "Sin", "cos": "Cos", "tan": "Tan", "asin": "Asin", "acos": "Acos", "atan": "Atan",
    "sinh": "Sinh", "cosh": "Cosh", "asinh": "Asinh", "acosh": "Acosh", "atanh": "Atanh",
    "sign": "Sign", "isnan": "IsNaN",
}
BINARY_ONNX = {
    "power": "Pow", "int_div": "Div", "greater_equal": "GreaterOrEqual", "less_equal": "LessOrEqual",
    "logical_and": "And", "logical_or": "Or", "logical_xor": "Xor",
}
TOL = {np.dtype("float32"): dict(rtol=1e-5, atol=1e-6), np.dtype("float64"): dict(rtol=1e-12, atol=1e-13)}


def _run(build, *inputs, threads=1):
    """Compile build(*placeholders) and run it on inputs with the CPU kernels."""
    with Graph() as g:
        phs = [gc.placeholder(f"in{i}", x.shape, x.dtype.name) for i, x in enumerate(inputs)]
        y = build(*phs)
    plan = gc.compile(g, fetches=[y.name])
    return Session(plan, threads=threads).run({p.name: x for p, x in zip(phs, inputs)})[y.name]


def _assert_same(got, want, tol_dtype=None):
    """got == want exactly for bool and ints, within TOL[tol_dtype or got's dtype] for floats; want None:
    onnxruntime has no kernel for the op and dtype (nothing to compare)."""
    if want is None:
        return
    assert got.shape == want.shape and got.dtype == want.dtype, (got.shape, got.dtype, want.shape, want.dtype)
    if got.dtype.kind == "f":
        np.testing.assert_allclose(got, want, equal_nan=True, **TOL[np.dtype(tol_dtype or got.dtype)])
    else:
        np.testing.assert_array_equal(got, want)


# -- ONNX's definitions --------------------------------------------------------------------------

def _onnx_model(op_type, inputs, out_dtype, **attrs):
    from onnx import helper
    from onnx.helper import np_dtype_to_tensor_dtype

    names = [f"x{i}" for i in range(len(inputs))]
    node = helper.make_node(op_type, names, ["y"], **attrs)
    ins = [helper.make_tensor_value_info(n, np_dtype_to_tensor_dtype(x.dtype), x.shape) for n, x in zip(names, inputs)]
    out = helper.make_tensor_value_info("y", np_dtype_to_tensor_dtype(np.dtype(out_dtype)), None)
    graph = helper.make_graph([node], "g", ins, [out])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), names


def _onnx_reference(op_type, inputs, out_dtype, **attrs):
    from onnx.reference import ReferenceEvaluator

    model, names = _onnx_model(op_type, inputs, out_dtype, **attrs)
    with np.errstate(all="ignore"):
        return np.asarray(ReferenceEvaluator(model).run(None, dict(zip(names, inputs)))[0])


def _onnxruntime(op_type, inputs, out_dtype, **attrs):
    """onnxruntime's result, or None where it has no kernel (float64 Tan, Asin, Erf, ...)."""
    ort = pytest.importorskip("onnxruntime")
    from onnxruntime.capi.onnxruntime_pybind11_state import NotImplemented as OrtNotImplemented

    model, names = _onnx_model(op_type, inputs, out_dtype, **attrs)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    try:
        sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    except OrtNotImplemented:
        return None
    return sess.run(None, dict(zip(names, inputs)))[0]


def _float_inputs(rng, name, dt):
    """Ordinary values of each op's domain, then every special value."""
    low, high = {"asin": (-1, 1), "acos": (-1, 1), "atanh": (-1, 1), "acosh": (1, 6)}.get(name, (-6, 6))
    x = rng.uniform(low, high, size=(5, 9)).astype(dt)
    x[0, :6] = [0.5, 1.5, 2.5, -0.5, -1.5, -2.5]  # halves (round)
    specials = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0, np.finfo(dt).max, -np.finfo(dt).max,
                         np.finfo(dt).tiny], dt)
    return x, specials


@pytest.mark.parametrize("name", sorted(UNARY_ONNX))
def test_unary_matches_onnx(name):
    pytest.importorskip("onnx")
    rng = np.random.default_rng(0)
    dts = ["float32", "float64", "int32", "int64"] if name == "sign" else ["float32", "float64"]
    for dt in dts:
        if dt.startswith("int"):
            cases = [np.array([[-5, -1, 0, 1, 7, np.iinfo(dt).min, np.iinfo(dt).max]], dt)]
            ordinary = cases
        else:
            x, specials = _float_inputs(rng, name, dt)
            cases, ordinary = [x, specials], [x]
        out_dt = bool if name == "isnan" else dt
        for x in cases:
            got = _run(getattr(gc, name), x)
            # onnx.reference's Erf rounds to float32 (np.vectorize(math.erf, otypes=["f"])) for every dtype
            tol_dt = "float32" if name == "erf" else None
            _assert_same(got, _onnx_reference(UNARY_ONNX[name], [x], out_dt).astype(got.dtype), tol_dt)
        for x in ordinary:
            _assert_same(_run(getattr(gc, name), x), _onnxruntime(UNARY_ONNX[name], [x], out_dt))


@pytest.mark.parametrize("pos,neg", [(1, 1), (1, 0), (0, 1), (0, 0)])
def test_isinf_matches_onnx(pos, neg):
    pytest.importorskip("onnx")
    for dt in ("float32", "float64"):
        x = np.array([np.inf, -np.inf, np.nan, 0.0, -1.0, np.finfo(dt).max, -np.finfo(dt).max], dt)
        got = _run(lambda t, p=pos, n=neg: gc.isinf(t, detect_positive=bool(p), detect_negative=bool(n)), x)
        _assert_same(got, _onnx_reference("IsInf", [x], bool, detect_positive=pos, detect_negative=neg))
        _assert_same(got, _onnxruntime("IsInf", [x], bool, detect_positive=pos, detect_negative=neg))


def _binary_cases(rng, name, dt):
    """(a, b) pairs broadcasting against each other, and whether onnxruntime is a reference for them
    (it traps or is undefined on integer zero divisors; its Pow on special values is not C's pow)."""
    if dt == "bool":
        return [(rng.random((4, 1)) < 0.5, rng.random((1, 5)) < 0.5, True),
                (np.array([True, False]), np.array([[True], [False]]), True)]
    if dt in ("int32", "int64"):
        a = rng.integers(-50, 50, size=(6, 7)).astype(dt)
        b = rng.integers(-9, 9, size=(7,)).astype(dt)
        b[b == 0] = 3
        return [(a, b, True), (np.array([7, -7, 0, 6, -6], dt)[:, None], np.array([2, -2, 3, -3, 1, -1], dt), True)]
    if name == "power":
        a = rng.uniform(0.1, 3, size=(6, 1)).astype(dt)
        b = rng.uniform(-3, 3, size=(1, 7)).astype(dt)
        neg = np.array([[-2.0], [-0.5]], dt)
        ints = np.array([-3, -2, -1, 0, 1, 2, 3], dt)
        s = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0, 0.5, 2.0, -3.0], dt)
        return [(a, b, True), (neg, ints, True), (s[:, None], s[None, :], False)]
    a = rng.uniform(-5, 5, size=(6, 1)).astype(dt)
    b = rng.uniform(-5, 5, size=(1, 7)).astype(dt)
    s = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0, 2.5], dt)
    return [(a, b, True), (a, a.copy(), True), (s[:, None], s[None, :], True)]


@pytest.mark.parametrize("name", sorted(BINARY_ONNX))
def test_binary_matches_onnx(name):
    pytest.importorskip("onnx")
    rng = np.random.default_rng(1)
    dts = {"power": ["float32", "float64"], "int_div": ["int32", "int64"]}.get(
        name, ["bool"] if name.startswith("logical") else ["float32", "float64", "int32", "int64"])
    out_dt = None if name in ("power", "int_div") else bool
    for dt in dts:
        for a, b, ort_too in _binary_cases(rng, name, dt):
            got = _run(getattr(gc, name), a, b)
            want_dt = out_dt or dt
            _assert_same(got, _onnx_reference(BINARY_ONNX[name], [a, b], want_dt).astype(got.dtype))
            if ort_too:
                _assert_same(got, _onnxruntime(BINARY_ONNX[name], [a, b], want_dt))


@pytest.mark.parametrize("fmod", [0, 1])
def test_mod_matches_onnx(fmod):
    pytest.importorskip("onnx")
    rng = np.random.default_rng(2)
    for dt in ("float32", "float64", "int32", "int64"):
        if dt.startswith("float") and not fmod:
            # ONNX requires fmod=1 for floats; its reference's fmod=0 is numpy.mod, our definition
            a = rng.uniform(-9, 9, size=(5, 1)).astype(dt)
            b = rng.uniform(-4, 4, size=(1, 6)).astype(dt)
            with np.errstate(all="ignore"):
                _assert_same(_run(lambda x, y: gc.mod(x, y), a, b), np.mod(a, b))
            continue
        if dt.startswith("float"):
            a = rng.uniform(-9, 9, size=(5, 1)).astype(dt)
            b = rng.uniform(-4, 4, size=(1, 6)).astype(dt)
        else:
            a = np.array([7, -7, 0, 6, -6, 13, -13, 100], dt)[:, None]
            b = np.array([2, -2, 3, -3, 1, -1, 5, -5], dt)
        got = _run(lambda x, y, f=fmod: gc.mod(x, y, fmod=bool(f)), a, b)
        _assert_same(got, _onnx_reference("Mod", [a, b], dt, fmod=fmod))
        _assert_same(got, _onnxruntime("Mod", [a, b], dt, fmod=fmod))


# -- what C leaves undefined, defined -----------------------------------------------------------------

@pytest.mark.parametrize("dt", ["int32", "int64"])
@pytest.mark.parametrize("threads", [1, 2])
def test_integer_division_and_remainder_never_trap(dt, threads):
    lo, hi = np.iinfo(dt).min, np.iinfo(dt).max
    a = np.array([lo, lo, 5, -5, 0, hi, lo], dt)
    b = np.array([-1, 0, 0, 0, 0, -1, 1], dt)
    assert _run(gc.int_div, a, b, threads=threads).tolist() == [lo, 0, 0, 0, 0, -hi, lo]
    for fmod in (False, True):
        got = _run(lambda x, y, f=fmod: gc.mod(x, y, fmod=f), a, b, threads=threads)
        assert got.tolist() == [0] * 7


def test_int_div_truncates_and_mod_takes_the_documented_sign():
    a = np.array([7, -7, 7, -7], "int64")
    b = np.array([2, 2, -2, -2], "int64")
    assert _run(gc.int_div, a, b).tolist() == [3, -3, -3, 3]
    assert _run(gc.mod, a, b).tolist() == [1, 1, -1, -1]  # the divisor's sign: a - b·⌊a/b⌋
    assert _run(lambda x, y: gc.mod(x, y, fmod=True), a, b).tolist() == [1, -1, 1, -1]  # the dividend's
    f = a.astype("float64")
    g = b.astype("float64")
    assert _run(gc.mod, f, g).tolist() == [1.0, 1.0, -1.0, -1.0]
    assert _run(lambda x, y: gc.mod(x, y, fmod=True), f, g).tolist() == [1.0, -1.0, 1.0, -1.0]


@pytest.mark.parametrize("dt", ["float32", "float64"])
def test_round_halves_to_even(dt):
    x = np.array([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 0.49999997, 2.0 ** 23 + 1], dt)
    got = _run(gc.round, x)
    assert got.tolist() == [0.0, 2.0, 2.0, -0.0, -2.0, -2.0, 0.0, 2.0 ** 23 + 1]
    assert math.copysign(1.0, float(got[3])) == -1.0  # round(-0.5) = -0, as numpy and ONNX


def test_sign_of_zero_and_nan():
    got = _run(gc.sign, np.array([-0.0, 0.0, np.nan, -3.0, np.inf], "float32"))
    assert got[0] == 0 and math.copysign(1.0, float(got[0])) == 1.0  # numpy.sign(-0.0) = +0.0
    assert np.isnan(got[2]) and got[[1, 3, 4]].tolist() == [0.0, -1.0, 1.0]


# -- second derivatives (Hessian-vector products against central differences) ----------------------

SECOND = {
    "erf": (lambda x: gc.erf(x), (-2, 2)),
    "sin": (lambda x: gc.sin(x), (-3, 3)),
    "tan": (lambda x: gc.tan(x), (-1.2, 1.2)),
    "asin": (lambda x: gc.asin(x), (-0.9, 0.9)),
    "atanh": (lambda x: gc.atanh(x), (-0.9, 0.9)),
    "acosh": (lambda x: gc.acosh(x + 2.0), (-0.5, 2)),
    "reciprocal": (lambda x: gc.reciprocal(x), (0.5, 2)),
    "power": (lambda x: gc.power(x, gc.sin(x)), (0.5, 2)),
    "mod": (lambda x: gc.mod(x * x, x + 3.0), (0.3, 1.2)),
}


@pytest.mark.parametrize("name", sorted(SECOND))
def test_second_derivative(name):
    fn, (low, high) = SECOND[name]
    rng = np.random.default_rng(3)
    x0 = rng.uniform(low, high, size=(3, 4))
    with Graph() as g:
        x = gc.placeholder("x", (3, 4), "float64")
        loss = gc.sum(fn(x) * gc.constant(rng.normal(size=(3, 4))))
        (gx,) = gc.gradients(loss, [x])
        u = rng.normal(size=(3, 4))
        (hu,) = gc.gradients(gc.sum(gx * gc.constant(u)), [x])
    w = rng.normal(size=(3, 4))

    def grad_at(xv):
        return gc.reference.evaluate(g, {"x": xv}, [gx])[gx]

    eps = 1e-6
    numeric = float(np.sum((grad_at(x0 + eps * u) - grad_at(x0 - eps * u)) / (2 * eps) * w))
    got = float(np.sum(gc.reference.evaluate(g, {"x": x0}, [hu])[hu] * w))
    assert abs(got - numeric) <= 1e-5 + 1e-3 * abs(numeric), (name, got, numeric)


def test_power_gradient_at_zero_base_and_zero_exponent():
    """d/da a^b is 0 where b = 0 and d/db is 0 where a = 0, b >= 0 (no 0·inf = NaN)."""
    a0 = np.array([0.0, 0.0, 2.0, 0.0])
    b0 = np.array([0.0, 2.0, 0.0, 1.0])
    with Graph() as g:
        a = gc.placeholder("a", (4,), "float64")
        b = gc.placeholder("b", (4,), "float64")
        ga, gb = gc.gradients(gc.sum(gc.power(a, b)), [a, b])
    out = gc.reference.evaluate(g, {"a": a0, "b": b0}, [ga, gb])
    assert out[ga].tolist() == [0.0, 0.0, 0.0, 1.0]  # b·a^(b-1): 0 (b=0), 2·0, 0 (b=0), 1·0^0
    assert out[gb].tolist() == [0.0, 0.0, math.log(2.0), 0.0]  # a^b·ln a: 0 where a = 0


# -- builders and refusals ------------------------------------------------------------------------------

def test_builders_are_exported_and_check_dtypes():
    with Graph():
        f = gc.placeholder("f", (3,))
        i = gc.placeholder("i", (3,), "int32")
        bl = gc.placeholder("b", (3,), "bool")
        assert gc.isinf(f).dtype == "bool" and gc.isnan(f).dtype == "bool"
        assert gc.greater_equal(i, 2).dtype == "bool"
        assert gc.mod(i, 3).dtype == "int32" and gc.int_div(i, 2).dtype == "int32"
        assert gc.logical_xor(bl, True).dtype == "bool"
        assert gc.power(f, 2.0).shape == (3,)
        with pytest.raises(GraphError, match="int_div"):
            gc.int_div(f, f)
        with pytest.raises(GraphError, match="power"):
            gc.power(i, i)
        with pytest.raises(GraphError, match="sin"):
            gc.sin(i)
        with pytest.raises(GraphError, match="logical_and"):
            gc.logical_and(f, f)
        with pytest.raises(GraphError, match="cannot broadcast"):
            gc.mod(f, gc.placeholder("g", (4,)))
