"""Elementwise math beyond graphc/ops/elementwise.py, with ONNX's semantics (the ops an ONNX
import maps Erf, Floor, Ceil, Round, Reciprocal, the trigonometric and hyperbolic functions,
Sign, IsNaN, IsInf, Pow, Mod, Div on integers, GreaterOrEqual, LessOrEqual, And, Or, Xor to).

The numpy references are the definitions; the kernels are runtime/cpu/math.cc.  None of these
ops is fusible.  Integer ops never trap: x mod 0 = 0, x int_div 0 = 0, INT_MIN int_div -1 =
INT_MIN (the two's complement wrap), INT_MIN mod -1 = 0.
"""

import math

import numpy as np

from graphc import dtypes
from graphc.ops._common import (
    ODD,
    UNARY_SHAPES,
    Example,
    F,
    as_tensors,
    broadcast_shapes,
    build,
    rand,
    special,
    special_values,
    unbroadcast,
)
from graphc.registry import AttrSpec, defgrad, register_op

# -- unary float functions -----------------------------------------------------------------

_erf = np.vectorize(math.erf, otypes=[np.float64])


def _quiet(fn):
    """fn with numpy's floating-point warnings off: NaN outside a domain and ±inf at a pole
    are the defined results, not errors."""
    def ref(x):
        with np.errstate(all="ignore"):
            return np.asarray(fn(x)).astype(x.dtype)
    return ref


# name: (reference, example range for random data, doc).  The ranges keep the gradient
# examples inside the domain and away from poles (tan at ±π/2, asin/acos/atanh at ±1,
# acosh at 1, reciprocal at 0).
_SMOOTH = {
    "erf": (_quiet(_erf), (-3, 3), "y = erf x = 2/√π ∫₀ˣ e^(-t²) dt (erf(±inf) = ±1)"),
    "reciprocal": (_quiet(np.reciprocal), (-3, 3), "y = 1 / x (IEEE: 1/±0 = ±inf)"),
    "sin": (_quiet(np.sin), (-4, 4), "y = sin x (radians; NaN at ±inf)"),
    "cos": (_quiet(np.cos), (-4, 4), "y = cos x (radians; NaN at ±inf)"),
    "tan": (_quiet(np.tan), (-1.4, 1.4), "y = tan x (radians; NaN at ±inf)"),
    "asin": (_quiet(np.arcsin), (-0.95, 0.95), "y = arcsin x in [-π/2, π/2] (NaN outside [-1, 1])"),
    "acos": (_quiet(np.arccos), (-0.95, 0.95), "y = arccos x in [0, π] (NaN outside [-1, 1])"),
    "atan": (_quiet(np.arctan), (-4, 4), "y = arctan x in (-π/2, π/2)"),
    "sinh": (_quiet(np.sinh), (-3, 3), "y = sinh x (±inf on overflow)"),
    "cosh": (_quiet(np.cosh), (-3, 3), "y = cosh x (inf on overflow)"),
    "asinh": (_quiet(np.arcsinh), (-4, 4), "y = arcsinh x"),
    "acosh": (_quiet(np.arccosh), (1.05, 4), "y = arccosh x >= 0 (NaN below 1)"),
    "atanh": (_quiet(np.arctanh), (-0.95, 0.95), "y = arctanh x (±inf at ±1, NaN outside [-1, 1])"),
}

# Piecewise constant: the derivative is 0 almost everywhere (differentiable=False).
_STEPS = {
    "floor": (np.floor, "y = ⌊x⌋, the largest integer <= x (NaN, ±inf, ±0 unchanged)"),
    "ceil": (np.ceil, "y = ⌈x⌉, the smallest integer >= x (NaN, ±inf, ±0 unchanged)"),
    "round": (np.round, "y = x rounded to the nearest integer, halves to even (ONNX Round, numpy.round): "
                        "round(2.5) = 2, round(-0.5) = -0"),
}


def _unary_infer(ctx):
    return ctx.dtype(0), ctx.shape(0)


def _halves(dt):
    """Values where rounding modes differ: halves, the ulp edge where every float is an
    integer (2^23 in float32, 2^52 in float64), and the special values."""
    big = 2.0 ** (23 if dt == "float32" else 52)
    vals = [0.5, -0.5, 1.5, -1.5, 2.5, -2.5, 3.5, -3.5, 0.49999997, -0.49999997, 1.0000001, -0.9999999,
            big - 0.5, -(big - 0.5), big, -big, big + 1, 2 * big + 2, 1e30, -1e30]
    return np.concatenate([np.array(vals, dt), special_values(dt)])


def _float_unary_examples(low, high, avoid_zero=False, halves=False):
    def examples(rng):
        out = []
        for dt in dtypes.FLOATS:
            for shape in UNARY_SHAPES:
                x = rand(rng, shape, dt, low, high)
                if avoid_zero:
                    x = np.where(np.abs(x) < 0.25, np.asarray(0.75, dt), x).astype(dt)
                out.append(Example([x], note=dt))
            out.append(Example([special(rng, (3, 7), dt)], grad=False, note=f"{dt} special values"))
            if halves:
                out.append(Example([_halves(dt)], grad=False, note=f"{dt} halves"))
        return out
    return examples


def _make_float_unary(name, ref, rng_range, doc, differentiable, halves=False):
    register_op(
        name,
        doc=f"Elementwise: {doc}.  Dtypes: float32, float64.",
        inputs=[("x", "T")],
        type_vars={"T": dtypes.FLOATS},
        infer=_unary_infer,
        reference=lambda inputs, attrs: ref(inputs[0]),
        examples=_float_unary_examples(*rng_range, avoid_zero=name == "reciprocal", halves=halves),
        elementwise=True,
        differentiable=differentiable,
    )


for _name, (_ref, _range, _doc) in _SMOOTH.items():
    _make_float_unary(_name, _ref, _range, _doc, differentiable=True)
for _name, (_ref, _doc) in _STEPS.items():
    _make_float_unary(_name, _quiet(_ref), (-4, 4), _doc, differentiable=False, halves=True)


# -- sign, isnan, isinf ------------------------------------------------------------------------

def _numeric_unary_examples(rng):
    out = []
    for dt in dtypes.NUMERIC:
        for shape in UNARY_SHAPES:
            out.append(Example([rand(rng, shape, dt, -3, 3)], note=dt))
        out.append(Example([special_values(dt)], note=f"{dt} special values"))
    return out


register_op(
    "sign",
    doc="Elementwise sign: -1 for x < 0, 1 for x > 0, 0 for ±0 (+0.0 for floats), NaN for NaN "
        "(numpy.sign, ONNX Sign).  Dtypes: float32, float64, int32, int64.",
    inputs=[("x", "T")],
    type_vars={"T": dtypes.NUMERIC},
    infer=_unary_infer,
    reference=lambda inputs, attrs: np.sign(inputs[0]),
    examples=_numeric_unary_examples,
    elementwise=True,
    differentiable=False,
)


def _to_bool_infer(ctx):
    return "bool", ctx.shape(0)


def _float_class_examples(attr_sets):
    def examples(rng):
        out = []
        for attrs in attr_sets:
            for dt in dtypes.FLOATS:
                for shape in UNARY_SHAPES:
                    x = rand(rng, shape, dt, -3, 3)
                    if x.size > 2:
                        x.flat[::3] = np.nan
                        x.flat[1::5] = np.inf
                        x.flat[2::7] = -np.inf
                    out.append(Example([x], attrs, note=dt))
                out.append(Example([special_values(dt)], attrs, note=f"{dt} special values"))
        return out
    return examples


register_op(
    "isnan",
    doc="Elementwise: y = (x is NaN), bool (ONNX IsNaN).  Dtypes: float32, float64.",
    inputs=[("x", dtypes.FLOATS)],
    infer=_to_bool_infer,
    reference=lambda inputs, attrs: np.isnan(inputs[0]),
    examples=_float_class_examples([{}]),
    elementwise=True,
    differentiable=False,
)


def _isinf_ref(inputs, attrs):
    x = inputs[0]
    pos = np.isposinf(x) if attrs["detect_positive"] else np.zeros(x.shape, bool)
    neg = np.isneginf(x) if attrs["detect_negative"] else np.zeros(x.shape, bool)
    return pos | neg


register_op(
    "isinf",
    doc="Elementwise: y = (x is +inf and detect_positive) or (x is -inf and detect_negative), bool "
        "(ONNX IsInf).  Dtypes: float32, float64.",
    inputs=[("x", dtypes.FLOATS)],
    attrs={"detect_positive": AttrSpec("bool", default=True, doc="true: +inf counts"),
           "detect_negative": AttrSpec("bool", default=True, doc="true: -inf counts")},
    infer=_to_bool_infer,
    reference=_isinf_ref,
    examples=_float_class_examples([{"detect_positive": p, "detect_negative": n}
                                    for p in (True, False) for n in (True, False)]),
    elementwise=True,
    differentiable=False,
)


# -- binary --------------------------------------------------------------------------------------

BINARY_SHAPE_PAIRS = [
    ((), ()), ((7,), ()), ((), (7,)), ((5, 3), (5, 3)), ((5, 3), (3,)), ((5, 1), (1, 4)),
    ((4, 1, 3), (2, 1)), ((0, 3), (3,)), ((0, 3), (1, 3)), ((1,), (0,)), (ODD, ODD), (ODD, (73, 1)),
]


def _binary_infer(out_dtype):
    def infer(ctx):
        return out_dtype or ctx.dtype(0), broadcast_shapes(ctx, ctx.shape(0), ctx.shape(1))
    return infer


def _outer_specials(dt, attrs=None, note=""):
    """Every special value of dt against every other (an outer product by broadcasting)."""
    s = special_values(dt)
    return Example([s[:, None].copy(), s[None, :].copy()], attrs, grad=False, note=f"{dt} special values{note}")


def _int_edge_examples(dt, attrs=None, note=""):
    """Integer operands where division and remainder differ between definitions: every sign
    pair, zero divisors, INT_MIN against -1."""
    info = np.iinfo(dt)
    a = np.array([7, -7, 6, -6, 0, 1, -1, info.min, info.max, info.min + 1, 13, -13], dt)
    b = np.array([2, -2, 3, -3, 1, -1, 0, 7, -7, info.max, info.min], dt)
    return Example([a[:, None].copy(), b[None, :].copy()], attrs, grad=False, note=f"{dt} signs, zeros, extremes{note}")


def _comparison_examples(allowed, with_edges=False):
    def examples(rng):
        out = []
        for dt in allowed:
            for sa, sb in BINARY_SHAPE_PAIRS:
                out.append(Example([rand(rng, sa, dt), rand(rng, sb, dt)], note=dt))
            if dt != "bool":
                a = rand(rng, (6, 5), dt)
                out.append(Example([a, a.copy()], note="equal inputs"))
            out.append(_outer_specials(dt))
        return out
    return examples


def _make_binary(name, ref, allowed, out_dtype, doc, examples, differentiable, attrs=None):
    register_op(
        name,
        doc=f"Elementwise with numpy broadcasting: {doc}.  Both inputs have one dtype "
            f"({', '.join(allowed)}).",
        inputs=[("a", "T"), ("b", "T")],
        type_vars={"T": allowed},
        attrs=attrs,
        infer=_binary_infer(out_dtype),
        reference=ref,
        examples=examples,
        elementwise=True,
        differentiable=differentiable,
    )


for _name, _fn, _allowed, _doc in [
    ("greater_equal", np.greater_equal, dtypes.NUMERIC, "y = (a >= b), bool (False where either is NaN)"),
    ("less_equal", np.less_equal, dtypes.NUMERIC, "y = (a <= b), bool (False where either is NaN)"),
    ("logical_and", np.logical_and, ("bool",), "y = a and b"),
    ("logical_or", np.logical_or, ("bool",), "y = a or b"),
    ("logical_xor", np.logical_xor, ("bool",), "y = a xor b (a != b)"),
]:
    _make_binary(_name, lambda inputs, attrs, fn=_fn: np.asarray(fn(inputs[0], inputs[1])), _allowed, "bool", _doc,
                 _comparison_examples(_allowed), differentiable=False)


# -- power -----------------------------------------------------------------------------------------

def _power_ref(inputs, attrs):
    a, b = inputs
    with np.errstate(all="ignore"):
        return np.asarray(np.power(a, b)).astype(a.dtype)


def _power_examples(rng):
    out = []
    for dt in dtypes.FLOATS:
        for sa, sb in BINARY_SHAPE_PAIRS:
            out.append(Example([rand(rng, sa, dt, 0.5, 2.0), rand(rng, sb, dt, -2.0, 2.0)], note=dt))
        # negative bases: integer exponents are defined, others NaN (the b-derivative is not)
        a = rand(rng, (4, 1), dt, -3.0, -0.5)
        b = np.array([-3, -2, -1, 0, 1, 2, 3, 0.5, -0.5], dt)
        out.append(Example([a, b], grad=False, note=f"{dt} negative base"))
        out.append(_outer_specials(dt))
    return out


_make_binary("power", _power_ref, dtypes.FLOATS, None,
             "y = a^b (C pow, ONNX Pow on floats: a^±0 = 1 and 1^b = 1 even for NaN, a negative base with a "
             "non-integer exponent gives NaN, 0^b = inf for b < 0)", _power_examples, differentiable=True)


# -- mod ---------------------------------------------------------------------------------------------

def _mod_ref(inputs, attrs):
    a, b = inputs
    with np.errstate(all="ignore"):
        if a.dtype.kind == "f":
            return np.asarray(np.fmod(a, b) if attrs["fmod"] else np.mod(a, b)).astype(a.dtype)
        # b = 0 and b = -1 (INT_MIN mod -1 would trap in C) give 0; a divisor of 1 gives that
        safe = np.where((b == 0) | (b == -1), np.ones((), a.dtype), b)
        r = np.fmod(a, safe) if attrs["fmod"] else np.mod(a, safe)
        return np.asarray(r).astype(a.dtype)


def _away_from_steps(rng, a, b, margin=0.01, tries=30, max_elems=20_000):
    """Resample a until no a/b lies within margin of an integer (mod jumps there): the
    gradient examples stay on one smooth piece.  Returns (a, found); large examples are
    not tried (the gradient check skips them)."""
    if np.prod(np.broadcast_shapes(a.shape, b.shape)) > max_elems:
        return a, False
    for _ in range(tries):
        with np.errstate(all="ignore"):
            q = a / b
        frac = q - np.floor(q)
        if np.all((frac > margin) & (frac < 1 - margin)):
            return a, True
        a = rand(rng, a.shape, a.dtype, -6.0, 6.0)
    return a, False


def _mod_examples(rng):
    out = []
    for fmod in (False, True):
        attrs = {"fmod": fmod}
        for dt in dtypes.NUMERIC:
            for sa, sb in BINARY_SHAPE_PAIRS:
                if dt in dtypes.FLOATS:
                    sign = np.where(rng.random(sb) < 0.5, -1, 1)
                    b = np.asarray(rand(rng, sb, dt, 0.5, 2.0) * sign, dt)
                    a, smooth = _away_from_steps(rng, rand(rng, sa, dt, -6.0, 6.0), b)
                    out.append(Example([a, b], attrs, grad=smooth, note=f"{dt} fmod={fmod}"))
                else:
                    a, b = rand(rng, sa, dt, -6, 6), rand(rng, sb, dt, -2, 2)
                    out.append(Example([a, b], attrs, note=f"{dt} fmod={fmod}"))
            if dt in dtypes.INTS:
                out.append(_int_edge_examples(dt, attrs, f" fmod={fmod}"))
            out.append(_outer_specials(dt, attrs, f" fmod={fmod}"))
    return out


_make_binary(
    "mod", _mod_ref, dtypes.NUMERIC, None,
    "the remainder of a / b.  fmod=False: the sign of the divisor, a - b·⌊a/b⌋ (numpy.mod, Python %, "
    "ONNX Mod fmod=0); fmod=True: the sign of the dividend, a - b·trunc(a/b) (C fmod, ONNX Mod fmod=1).  "
    "Floats: x mod ±0 = NaN, ±inf mod b = NaN, a mod ±inf = a for fmod=True, and for fmod=False a where "
    "a and b have one sign, else b (numpy).  Integers: x mod 0 = 0 (no trap)",
    _mod_examples, differentiable=True,
    attrs={"fmod": AttrSpec("bool", default=False, doc="false: the result has the divisor's sign; "
                                                        "true: the dividend's (C fmod)")})


# -- int_div -------------------------------------------------------------------------------------------

def _int_div_ref(inputs, attrs):
    a, b = inputs
    with np.errstate(all="ignore"):
        safe = np.where((b == 0) | (b == -1), np.ones((), a.dtype), b)
        q = np.floor_divide(a, safe)
        r = np.remainder(a, safe)
        q = q + ((r != 0) & ((a < 0) != (safe < 0))).astype(a.dtype)  # floor → toward zero
        wrapped = (np.zeros((), a.dtype) - a).astype(a.dtype)  # -INT_MIN wraps to INT_MIN
        q = np.where(b == -1, wrapped, np.where(b == 0, np.zeros((), a.dtype), q))
        return np.asarray(q).astype(a.dtype)


def _int_div_examples(rng):
    out = []
    for dt in dtypes.INTS:
        for sa, sb in BINARY_SHAPE_PAIRS:
            out.append(Example([rand(rng, sa, dt, -6, 6), rand(rng, sb, dt, -2, 2)], note=dt))
        out.append(_int_edge_examples(dt))
        out.append(_outer_specials(dt))
    return out


_make_binary("int_div", _int_div_ref, dtypes.INTS, None,
             "y = a / b truncated toward zero (C, ONNX Div on integers): 7/-2 = -3.  x/0 = 0 and "
             "INT_MIN/-1 = INT_MIN (two's complement wrap): defined, never a trap",
             _int_div_examples, differentiable=False)


# -- builders -------------------------------------------------------------------------------------------

def _unary_builder(op, doc):
    def builder(x, name=None):
        return build(op, as_tensors(x), name=name)
    builder.__name__ = builder.__qualname__ = op
    builder.__doc__ = doc
    return builder


erf = _unary_builder("erf", "erf x, the Gauss error function")
floor = _unary_builder("floor", "⌊x⌋")
ceil = _unary_builder("ceil", "⌈x⌉")
round = _unary_builder("round", "x rounded to the nearest integer, halves to even")  # noqa: A001
reciprocal = _unary_builder("reciprocal", "1 / x")
sin = _unary_builder("sin", "sin x")
cos = _unary_builder("cos", "cos x")
tan = _unary_builder("tan", "tan x")
asin = _unary_builder("asin", "arcsin x")
acos = _unary_builder("acos", "arccos x")
atan = _unary_builder("atan", "arctan x")
sinh = _unary_builder("sinh", "sinh x")
cosh = _unary_builder("cosh", "cosh x")
asinh = _unary_builder("asinh", "arcsinh x")
acosh = _unary_builder("acosh", "arccosh x")
atanh = _unary_builder("atanh", "arctanh x")
sign = _unary_builder("sign", "-1, 0 or 1 by the sign of x (NaN stays NaN)")
isnan = _unary_builder("isnan", "x is NaN (bool)")


def isinf(x, detect_positive=True, detect_negative=True, name=None):
    """x is +inf (when detect_positive) or -inf (when detect_negative), bool."""
    return build("isinf", as_tensors(x), {"detect_positive": bool(detect_positive),
                                          "detect_negative": bool(detect_negative)}, name=name)


def power(a, b, name=None):
    """a ** b elementwise with broadcasting (float dtypes); b a tensor (pow takes a scalar)."""
    return build("power", as_tensors(a, b), name=name)


def mod(a, b, fmod=False, name=None):
    """Remainder of a / b: with the divisor's sign (fmod=False, Python's %) or the dividend's
    (fmod=True, C fmod).  Integer x mod 0 is 0."""
    return build("mod", as_tensors(a, b), {"fmod": bool(fmod)}, name=name)


def int_div(a, b, name=None):
    """Integer a / b truncated toward zero; x / 0 = 0, INT_MIN / -1 = INT_MIN."""
    return build("int_div", as_tensors(a, b), name=name)


def greater_equal(a, b, name=None):
    """a >= b (bool)"""
    return build("greater_equal", as_tensors(a, b), name=name)


def less_equal(a, b, name=None):
    """a <= b (bool)"""
    return build("less_equal", as_tensors(a, b), name=name)


def logical_and(a, b, name=None):
    """a and b, for bool tensors"""
    return build("logical_and", as_tensors(a, b), name=name)


def logical_or(a, b, name=None):
    """a or b, for bool tensors"""
    return build("logical_or", as_tensors(a, b), name=name)


def logical_xor(a, b, name=None):
    """a xor b, for bool tensors"""
    return build("logical_xor", as_tensors(a, b), name=name)


# -- gradients ---------------------------------------------------------------------------------------
# Built from registry ops, so they differentiate again.

def _zero(t):
    return F.constant(np.zeros((), t.dtype), graph=t.graph)


@defgrad("erf")
def _grad_erf(ctx):
    return [F.mul(ctx.g, F.mul(F.exp(F.neg(F.mul(ctx.x, ctx.x))), 2.0 / math.sqrt(math.pi)))]


@defgrad("reciprocal")
def _grad_reciprocal(ctx):
    return [F.neg(F.mul(ctx.g, F.mul(ctx.y, ctx.y)))]


@defgrad("sin")
def _grad_sin(ctx):
    return [F.mul(ctx.g, cos(ctx.x))]


@defgrad("cos")
def _grad_cos(ctx):
    return [F.neg(F.mul(ctx.g, sin(ctx.x)))]


@defgrad("tan")
def _grad_tan(ctx):
    return [F.mul(ctx.g, F.add(F.mul(ctx.y, ctx.y), 1.0))]


def _sqrt_one_minus_sq(x):
    return F.sqrt(F.sub(1.0, F.mul(x, x)))


@defgrad("asin")
def _grad_asin(ctx):
    return [F.div(ctx.g, _sqrt_one_minus_sq(ctx.x))]


@defgrad("acos")
def _grad_acos(ctx):
    return [F.neg(F.div(ctx.g, _sqrt_one_minus_sq(ctx.x)))]


@defgrad("atan")
def _grad_atan(ctx):
    return [F.div(ctx.g, F.add(F.mul(ctx.x, ctx.x), 1.0))]


@defgrad("sinh")
def _grad_sinh(ctx):
    return [F.mul(ctx.g, cosh(ctx.x))]


@defgrad("cosh")
def _grad_cosh(ctx):
    return [F.mul(ctx.g, sinh(ctx.x))]


@defgrad("asinh")
def _grad_asinh(ctx):
    return [F.div(ctx.g, F.sqrt(F.add(F.mul(ctx.x, ctx.x), 1.0)))]


@defgrad("acosh")
def _grad_acosh(ctx):
    # √(x-1)·√(x+1), not √(x²-1): no cancellation near 1, no overflow of x² for large x
    return [F.div(ctx.g, F.mul(F.sqrt(F.sub(ctx.x, 1.0)), F.sqrt(F.add(ctx.x, 1.0))))]


@defgrad("atanh")
def _grad_atanh(ctx):
    return [F.div(ctx.g, F.sub(1.0, F.mul(ctx.x, ctx.x)))]


@defgrad("power")
def _grad_power(ctx):
    # PyTorch's conventions where the formulas meet 0·inf: d/da is 0 where b = 0 (a^0 = 1 for
    # every a), d/db is 0 where a = 0 and b >= 0 (0^b is constant there).
    a, b = ctx.inputs
    da = F.where(F.equal(b, _zero(b)), _zero(a), F.mul(b, power(a, F.sub(b, 1.0))))
    a_zero = logical_and(F.equal(a, _zero(a)), greater_equal(b, _zero(b)))
    db = F.where(a_zero, _zero(a), F.mul(ctx.y, F.log(a)))
    return [unbroadcast(F.mul(ctx.g, da), a), unbroadcast(F.mul(ctx.g, db), b)]


@defgrad("mod")
def _grad_mod(ctx):
    # y = a - b·k with k = ⌊a/b⌋ (fmod=False) or trunc(a/b) (fmod=True), constant on each
    # piece: dy/da = 1, dy/db = -k, k read back as (a - y) / b.
    a, b = ctx.inputs
    k = F.div(F.sub(a, ctx.y), b)
    return [unbroadcast(ctx.g, a), unbroadcast(F.neg(F.mul(ctx.g, k)), b)]
