"""Elementwise ops: unary math, broadcasting binary arithmetic and comparisons,
pow with a scalar exponent, where, cast, and constants."""

import numpy as np

from graphc import dtypes
from graphc.graph import get_default_graph, user_provenance
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

# -- unary ---------------------------------------------------------------------------


def _sigmoid(x):
    # exp of a non-positive argument only, so no overflow warnings for large |x|.
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype)


_UNARY = {
    # name: (reference, allowed dtypes, example range, doc)
    "neg": (np.negative, dtypes.NUMERIC, (-3, 3), "y = -x"),
    "abs": (np.abs, dtypes.NUMERIC, (-3, 3), "y = |x|"),
    "relu": (lambda x: np.maximum(x, np.zeros((), x.dtype)), dtypes.NUMERIC, (-3, 3), "y = max(x, 0)"),
    "exp": (np.exp, dtypes.FLOATS, (-3, 3), "y = e^x"),
    "log": (np.log, dtypes.FLOATS, (0.1, 4), "y = ln x (natural logarithm; -inf at 0, NaN below)"),
    "sqrt": (np.sqrt, dtypes.FLOATS, (0.1, 4), "y = √x (NaN below 0)"),
    "sigmoid": (_sigmoid, dtypes.FLOATS, (-5, 5), "y = 1 / (1 + e^-x), computed without overflow"),
    "tanh": (np.tanh, dtypes.FLOATS, (-3, 3), "y = tanh x"),
    "logical_not": (np.logical_not, ("bool",), (0, 1), "y = not x (bool)"),
}


def _unary_infer(ctx):
    return ctx.dtype(0), ctx.shape(0)


def _unary_examples(allowed, low, high, kink_at_zero):
    def examples(rng):
        out = []
        for dt in allowed:
            for shape in UNARY_SHAPES:
                x = rand(rng, shape, dt, low, high)
                if kink_at_zero and dt in dtypes.FLOATS:
                    # keep finite differences away from the kink at 0
                    x = np.where(np.abs(x) < 0.05, np.asarray(0.5, x.dtype), x).astype(dt)
                out.append(Example([x], note=dt))
            out.append(Example([special(rng, (3, 7), dt)], grad=False, note=f"{dt} special values"))
        return out
    return examples


def _make_unary(name, ref, allowed, rng_range, doc):
    register_op(
        name,
        doc=f"Elementwise: {doc}.  Dtypes: {', '.join(allowed)}.",
        inputs=[("x", "T")],
        type_vars={"T": allowed},
        infer=_unary_infer,
        reference=lambda inputs, attrs: ref(inputs[0]),
        examples=_unary_examples(allowed, *rng_range, kink_at_zero=name in ("abs", "relu")),
        elementwise=True,
        differentiable=name != "logical_not",
        fusible=name != "logical_not",
    )


for _name, (_ref, _allowed, _range, _doc) in _UNARY.items():
    _make_unary(_name, _ref, _allowed, _range, _doc)


def neg(x, name=None):
    """-x"""
    return build("neg", as_tensors(x), name=name)


def abs(x, name=None):  # noqa: A001 - mirrors numpy's name
    """|x|"""
    return build("abs", as_tensors(x), name=name)


def relu(x, name=None):
    """max(x, 0)"""
    return build("relu", as_tensors(x), name=name)


def exp(x, name=None):
    """e^x"""
    return build("exp", as_tensors(x), name=name)


def log(x, name=None):
    """ln x"""
    return build("log", as_tensors(x), name=name)


def sqrt(x, name=None):
    """√x"""
    return build("sqrt", as_tensors(x), name=name)


def sigmoid(x, name=None):
    """1 / (1 + e^-x)"""
    return build("sigmoid", as_tensors(x), name=name)


def tanh(x, name=None):
    """tanh x"""
    return build("tanh", as_tensors(x), name=name)


def logical_not(x, name=None):
    """not x, for bool tensors"""
    return build("logical_not", as_tensors(x), name=name)


# -- pow -------------------------------------------------------------------------------

def _pow_infer(ctx):
    return ctx.dtype(0), ctx.shape(0)


def _pow_examples(rng):
    out = []
    for dt in dtypes.FLOATS:
        for shape in UNARY_SHAPES:
            for e in (2.0, 0.5, -1.5, 3.0):
                out.append(Example([rand(rng, shape, dt, 0.5, 2.0)], {"exponent": e}, note=dt))
        for e in (2.0, 0.5, -1.5, 3.0, 0.0, -0.0):
            out.append(Example([special(rng, (3, 4), dt)], {"exponent": e}, grad=False, note=f"{dt} special values"))
    return out


register_op(
    "pow",
    doc="Elementwise power with a scalar exponent: y = x^p (p = attr 'exponent').  "
        "Float dtypes.  A negative base with a non-integer p gives NaN, as in numpy.",
    inputs=[("x", "T")],
    type_vars={"T": dtypes.FLOATS},
    attrs={"exponent": AttrSpec("float", doc="the scalar exponent p")},
    infer=_pow_infer,
    reference=lambda inputs, attrs: np.power(inputs[0], inputs[0].dtype.type(attrs["exponent"])),
    examples=_pow_examples,
    elementwise=True,
    fusible=True,
)


def pow(x, exponent, name=None):  # noqa: A001
    """x ** exponent, exponent a Python scalar."""
    return build("pow", as_tensors(x), {"exponent": float(exponent)}, name=name)


# -- binary ------------------------------------------------------------------------------

def _safe_div(a, b):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.divide(a, b)


_BINARY = {
    # name: (reference, allowed dtypes, output dtype or None (= input dtype), doc)
    "add": (np.add, dtypes.NUMERIC, None, "y = a + b"),
    "sub": (np.subtract, dtypes.NUMERIC, None, "y = a - b"),
    "mul": (np.multiply, dtypes.NUMERIC, None, "y = a · b"),
    "div": (_safe_div, dtypes.FLOATS, None, "y = a / b (IEEE: x/0 = ±inf, 0/0 = NaN)"),
    "maximum": (np.maximum, dtypes.NUMERIC, None, "y = max(a, b) (NaN propagates)"),
    "minimum": (np.minimum, dtypes.NUMERIC, None, "y = min(a, b) (NaN propagates)"),
    "equal": (np.equal, dtypes.ALL, "bool", "y = (a == b), bool"),
    "less": (np.less, dtypes.NUMERIC, "bool", "y = (a < b), bool"),
    "greater": (np.greater, dtypes.NUMERIC, "bool", "y = (a > b), bool"),
}

BINARY_SHAPE_PAIRS = [
    ((), ()), ((7,), ()), ((), (7,)), ((5, 3), (5, 3)), ((5, 3), (3,)), ((5, 1), (1, 4)),
    ((4, 1, 3), (2, 1)), ((0, 3), (3,)), ((0, 3), (1, 3)), ((1,), (0,)), (ODD, ODD), (ODD, (73, 1)),
]


def _binary_infer(out_dtype):
    def infer(ctx):
        return out_dtype or ctx.dtype(0), broadcast_shapes(ctx, ctx.shape(0), ctx.shape(1))
    return infer


def _binary_examples(name, allowed):
    def examples(rng):
        out = []
        for dt in allowed:
            for sa, sb in BINARY_SHAPE_PAIRS:
                a = rand(rng, sa, dt)
                b = rand(rng, sb, dt)
                if name == "div":
                    b = np.where(np.abs(b) < 0.25, np.asarray(1.0, dt), b).astype(dt)
                grad = True
                if name in ("maximum", "minimum") and dt in dtypes.FLOATS:
                    # separate a from b so finite differences never straddle the switch
                    b = np.where(np.abs(a - b) < 0.05, b + np.asarray(0.5, dt), b).astype(dt)
                out.append(Example([a, b], grad=grad, note=dt))
            if name == "equal" or name in ("less", "greater"):
                a = rand(rng, (6, 5), dt)
                out.append(Example([a, a.copy()], note="equal inputs"))
            # every special value against every other (outer product by broadcasting)
            s = special_values(dt)
            out.append(Example([s[:, None].copy(), s[None, :].copy()], grad=False, note=f"{dt} special values"))
        return out
    return examples


def _make_binary(name, ref, allowed, out_dtype, doc):
    register_op(
        name,
        doc=f"Elementwise with numpy broadcasting: {doc}.  Both inputs have one dtype "
            f"({', '.join(allowed)}).",
        inputs=[("a", "T"), ("b", "T")],
        type_vars={"T": allowed},
        infer=_binary_infer(out_dtype),
        reference=lambda inputs, attrs: np.asarray(ref(inputs[0], inputs[1])),
        examples=_binary_examples(name, allowed),
        elementwise=True,
        differentiable=out_dtype is None,
        fusible=out_dtype is None,
    )


for _name, (_ref, _allowed, _out, _doc) in _BINARY.items():
    _make_binary(_name, _ref, _allowed, _out, _doc)


def add(a, b, name=None):
    """a + b with broadcasting"""
    return build("add", as_tensors(a, b), name=name)


def sub(a, b, name=None):
    """a - b with broadcasting"""
    return build("sub", as_tensors(a, b), name=name)


def mul(a, b, name=None):
    """a * b with broadcasting"""
    return build("mul", as_tensors(a, b), name=name)


def div(a, b, name=None):
    """a / b with broadcasting (float dtypes)"""
    return build("div", as_tensors(a, b), name=name)


def maximum(a, b, name=None):
    """elementwise max with broadcasting"""
    return build("maximum", as_tensors(a, b), name=name)


def minimum(a, b, name=None):
    """elementwise min with broadcasting"""
    return build("minimum", as_tensors(a, b), name=name)


def equal(a, b, name=None):
    """a == b (bool)"""
    return build("equal", as_tensors(a, b), name=name)


def less(a, b, name=None):
    """a < b (bool)"""
    return build("less", as_tensors(a, b), name=name)


def greater(a, b, name=None):
    """a > b (bool)"""
    return build("greater", as_tensors(a, b), name=name)


# -- where ------------------------------------------------------------------------------

def _where_infer(ctx):
    return ctx.dtype(1), broadcast_shapes(ctx, ctx.shape(0), ctx.shape(1), ctx.shape(2))


def _where_examples(rng):
    out = []
    for dt in dtypes.ALL:
        for sc, sx, sy in [((), (), ()), ((5, 3), (5, 3), (5, 3)), ((5, 1), (3,), (1, 3)), ((0, 2), (2,), ()),
                           (ODD, ODD, (74,))]:
            out.append(Example([rand(rng, sc, "bool"), rand(rng, sx, dt), rand(rng, sy, dt)], note=dt))
        out.append(Example([rand(rng, (3, 7), "bool"), special(rng, (3, 7), dt), special(rng, (7,), dt)], grad=False,
                           note=f"{dt} special values"))
    return out


register_op(
    "where",
    doc="y = x where cond else y, elementwise with three-way numpy broadcasting.  "
        "cond is bool; x and y share a dtype.  The gradient flows to x where cond, to y elsewhere.",
    inputs=[("cond", ("bool",)), ("x", "T"), ("y", "T")],
    type_vars={"T": dtypes.ALL},
    infer=_where_infer,
    reference=lambda inputs, attrs: np.where(inputs[0], inputs[1], inputs[2]),
    examples=_where_examples,
    elementwise=True,
)


def where(cond, x, y, name=None):
    """Pick x where cond is true, else y (numpy.where)."""
    cond, x, y = as_tensors(cond, x, y)
    return build("where", [cond, x, y], name=name)


# -- cast -------------------------------------------------------------------------------

def _cast_reference(inputs, attrs):
    x = inputs[0]
    to = attrs["to"]
    if to == "bool":
        return np.asarray(x != 0)
    if to in dtypes.INTS and x.dtype.kind == "f":
        # Saturating, like Rust's `as` (numpy's own float→int cast of NaN, ±inf or an
        # out-of-range value is undefined and differs between machines).
        info = np.iinfo(to)
        lim = 2.0 ** (info.bits - 1)  # exact in float32 and float64
        xd = x.astype(np.float64)
        nan, high, low = np.isnan(xd), xd >= lim, xd <= -lim
        inside = np.trunc(np.where(nan | high | low, 0.0, xd)).astype(to)
        return np.where(high, np.asarray(info.max, to), np.where(low, np.asarray(info.min, to), inside)).astype(to)
    # int64→int32 wraps (numpy's astype); float64→float32 rounds to nearest, ±inf beyond range.
    with np.errstate(over="ignore"):
        return x.astype(to)


def _cast_infer(ctx):
    return ctx.attrs["to"], ctx.shape(0)


def _special_values(dt):
    """Values where casts differ between definitions: NaN, ±inf, -0.0, halves, the int
    ranges' edges as floats, float32's overflow threshold, and each dtype's extremes."""
    if dt == "bool":
        return np.array([False, True])
    if dt in dtypes.INTS:
        info = np.iinfo(dt)
        return np.array([info.min, info.min + 1, -1, 0, 1, info.max - 1, info.max], dt)
    f = np.finfo(dt)
    vals = [np.nan, np.inf, -np.inf, -0.0, 0.0, 0.5, -0.5, 1.5, -1.5, 2.5, -2.5, float(f.tiny), float(f.max),
            float(f.min), 2.0 ** 31, -2.0 ** 31, 2.0 ** 31 - 128, -2.0 ** 31 - 256, 2.0 ** 63, -2.0 ** 63,
            2.0 ** 62, -2.0 ** 62 - 2.0 ** 40, 1e30, -1e30]
    if dt == "float64":
        # float32's rounding edge: FLT_MAX + half an ulp (2^128 - 2^103) rounds up to inf.
        edge = 2.0 ** 128 - 2.0 ** 103
        vals += [edge, -edge, np.nextafter(edge, 0.0), -np.nextafter(edge, 0.0), 2.0 ** 31 - 0.5,
                 -2.0 ** 31 - 0.5, 1e300, -1e300, 5e-324]
    return np.array(vals, dt)


def _cast_examples(rng):
    out = []
    for src in dtypes.ALL:
        for to in dtypes.ALL:
            for shape in [(), (7,), (0, 3), ODD]:
                out.append(Example([rand(rng, shape, src, -3, 3)], {"to": to}, note=f"{src}->{to}"))
            out.append(Example([_special_values(src)], {"to": to}, grad=False, note=f"{src}->{to} special values"))
    return out


register_op(
    "cast",
    doc="Convert to dtype 'to'.  Floats to ints truncate toward zero and saturate: NaN becomes 0, "
        "+inf and values >= 2^(bits-1) the int's max, -inf and values <= -2^(bits-1) its min (Rust's "
        "`as`).  int64 to int32 wraps (keeps the low 32 bits, two's complement, like numpy and C).  "
        "float64 to float32 rounds to nearest; beyond float32's range it gives ±inf (IEEE).  Anything "
        "to bool is x != 0 (NaN is true, -0.0 false); bool to numbers is 0/1.",
    inputs=[("x", dtypes.ALL)],
    attrs={"to": AttrSpec("dtype", doc="the output dtype")},
    infer=_cast_infer,
    reference=_cast_reference,
    examples=_cast_examples,
    elementwise=True,
)


def cast(x, to, name=None):
    """x converted to dtype ``to``."""
    return build("cast", as_tensors(x), {"to": dtypes.as_dtype(to)}, name=name)


# -- constant -----------------------------------------------------------------------------

def _constant_infer(ctx):
    value = ctx.attrs["value"]
    return dtypes.as_dtype(value.dtype), tuple(int(d) for d in value.shape)


def _constant_examples(rng):
    return [Example([], {"value": rand(rng, s, dt)}, note=dt)
            for dt in dtypes.ALL for s in [(), (0,), (3, 4)]]


register_op(
    "constant",
    doc="A value fixed at build time (attr 'value', a tensor).  The compiler stores it as "
        "read-only data; large constants are saved in the external weights file.",
    inputs=[],
    attrs={"value": AttrSpec("tensor", doc="the value, any dtype and shape")},
    constant=True,
    kernels=(),  # its value is stored as constant data: never a step
    infer=_constant_infer,
    reference=lambda inputs, attrs: np.array(attrs["value"], copy=True),
    examples=_constant_examples,
    differentiable=False,
)


def constant(value, dtype=None, name=None, graph=None):
    """A constant tensor holding ``value`` (anything numpy.asarray accepts)."""
    arr = np.asarray(value, dtype=None if dtype is None else dtypes.as_dtype(dtype))
    if dtype is None and not isinstance(value, (np.ndarray, np.generic)) and arr.dtype == np.float64:
        arr = arr.astype(np.float32)  # Python floats default to float32, as in TF and PyTorch
    if arr.dtype.name not in dtypes.ALL:
        if arr.dtype.kind == "f":
            arr = arr.astype(np.float32)
        elif arr.dtype.kind in "iu":
            arr = arr.astype(np.int64)
        else:
            raise TypeError(f"constant: unsupported dtype {arr.dtype}")
    arr = np.array(arr, order="C")  # ascontiguousarray would turn a 0-d array into 1-d
    g = graph or get_default_graph()
    return g.add_node("constant", [], {"value": arr}, name=name, provenance=user_provenance())[0]


# -- gradients -----------------------------------------------------------------------------
# Built from registry ops, so they differentiate again (Hessian-vector products).

def _ub(g, x):
    return unbroadcast(g, x)


@defgrad("neg")
def _grad_neg(ctx):
    return [neg(ctx.g)]


@defgrad("abs")
def _grad_abs(ctx):
    zero = constant(np.zeros((), ctx.x.dtype), graph=ctx.x.graph)
    return [where(less(ctx.x, zero), neg(ctx.g), ctx.g)]


@defgrad("relu")
def _grad_relu(ctx):
    # relu(x) > 0 exactly where x > 0, so reading the output lets the planner free the
    # pre-activation right after the forward relu: one activation per layer, not two.
    return [F.relu_grad(ctx.g, ctx.y)]


@defgrad("exp")
def _grad_exp(ctx):
    return [mul(ctx.g, ctx.y)]


@defgrad("log")
def _grad_log(ctx):
    return [div(ctx.g, ctx.x)]


@defgrad("sqrt")
def _grad_sqrt(ctx):
    return [div(mul(ctx.g, 0.5), ctx.y)]


@defgrad("sigmoid")
def _grad_sigmoid(ctx):
    return [mul(ctx.g, mul(ctx.y, sub(1.0, ctx.y)))]


@defgrad("tanh")
def _grad_tanh(ctx):
    return [mul(ctx.g, sub(1.0, mul(ctx.y, ctx.y)))]


@defgrad("pow")
def _grad_pow(ctx):
    p = ctx.attrs["exponent"]
    if p == 0:
        return [mul(ctx.g, 0.0)]
    d = mul(pow(ctx.x, p - 1), p) if p != 1 else None
    return [ctx.g if d is None else mul(ctx.g, d)]


@defgrad("add")
def _grad_add(ctx):
    a, b = ctx.inputs
    return [_ub(ctx.g, a), _ub(ctx.g, b)]


@defgrad("sub")
def _grad_sub(ctx):
    a, b = ctx.inputs
    return [_ub(ctx.g, a), _ub(neg(ctx.g), b)]


@defgrad("mul")
def _grad_mul(ctx):
    a, b = ctx.inputs
    return [_ub(mul(ctx.g, b), a), _ub(mul(ctx.g, a), b)]


@defgrad("div")
def _grad_div(ctx):
    a, b = ctx.inputs
    ga = div(ctx.g, b)
    gb = neg(mul(ga, ctx.y))  # -g a / b² = -(g / b) · (a / b)
    return [_ub(ga, a), _ub(gb, b)]


def _select_grad(ctx, a_wins):
    a, b = ctx.inputs
    zero = constant(np.zeros((), ctx.g.dtype), graph=ctx.g.graph)
    return [_ub(where(a_wins, ctx.g, zero), a), _ub(where(a_wins, zero, ctx.g), b)]


@defgrad("maximum")
def _grad_maximum(ctx):
    # ties send the gradient to a, as in TensorFlow
    return _select_grad(ctx, logical_not(less(ctx.inputs[0], ctx.inputs[1])))


@defgrad("minimum")
def _grad_minimum(ctx):
    return _select_grad(ctx, logical_not(greater(ctx.inputs[0], ctx.inputs[1])))


@defgrad("where")
def _grad_where(ctx):
    cond, x, y = ctx.inputs
    zero = constant(np.zeros((), ctx.g.dtype), graph=ctx.g.graph)
    return [None, _ub(where(cond, ctx.g, zero), x), _ub(where(cond, zero, ctx.g), y)]


@defgrad("cast")
def _grad_cast(ctx):
    if ctx.x.dtype in dtypes.FLOATS and ctx.y.dtype in dtypes.FLOATS:
        return [cast(ctx.g, ctx.x.dtype)]
    return [None]
