"""ONNX import handlers: elementwise math, comparisons and logic, variadic Max/Min/Sum/Mean,
Clip, activations, reductions, ArgMax/ArgMin and Softmax/LogSoftmax/Hardmax.

Each handler gives ONNX's result (the spec's reference, onnx/reference/ops/op_*.py, and the
function bodies of the ops defined by one) or refuses with OnnxUnsupportedError.  Where
ONNX's definition and a graphc op differ at some value (gelu at -inf) the handler composes
the difference; where an ONNX model is invalid or the spec and its reference disagree (a
float Mod with fmod=0, noop_with_empty_axes on ReduceL2) it refuses.
"""

import math

import numpy as np

from graphc import dtypes
from graphc.onnx._import import handler

FLOATS, INTS, NUMERIC, BOOL = dtypes.FLOATS, dtypes.INTS, dtypes.NUMERIC, ("bool",)
_END = 2 ** 62  # "to the end" of a slice (graphc.ops.shape.END)


# -- helpers -------------------------------------------------------------------------------

def _f32(value):
    """An attribute default as ONNX stores it: a float32 (LeakyRelu's alpha=0.01 is
    0.009999999776482582, also when a model leaves it out)."""
    return float(np.float32(value))


def _input(ctx, i):
    """Input i, or None when omitted (an empty name or past the end)."""
    return ctx.inputs[i] if i < len(ctx.inputs) else None


def _need(ctx, value, allowed, what="input"):
    if value.dtype not in allowed:
        ctx.unsupported(f"{what} of dtype {value.dtype} is not supported (expected {'/'.join(allowed)})")


def _same_dtype(ctx, values):
    first = values[0].dtype
    for v in values[1:]:
        if v.dtype != first:
            ctx.unsupported(f"inputs of dtypes {first} and {v.dtype}: ONNX requires one dtype")


def _c(value, dtype):
    """A numpy constant of ``dtype`` (ctx.op makes it a graphc constant)."""
    return np.asarray(value, dtype=dtype)


def _rank(ctx, x):
    if x.shape is None:
        ctx.unsupported(f"input '{x.name}' has an unknown rank")
    return len(x.shape)


def _axis(ctx, axis, rank, what="axis"):
    if not -rank <= axis < max(rank, 1):
        ctx.unsupported(f"{what}={axis} is out of range for rank {rank}")
    return axis % rank if rank else 0


def _expm1_nonpositive(ctx, x):
    """e^x - 1 for x <= 0 (NaN propagates) as 2t / (1 - t), t = tanh(x/2): within 2 ulp of
    expm1 on the whole half-line (exp(x) - 1 loses every digit near 0), -1 at -inf."""
    dt = x.dtype
    t = ctx.op("tanh", [ctx.op("mul", [x, _c(0.5, dt)])])
    return ctx.op("div", [ctx.op("mul", [t, _c(2.0, dt)]), ctx.op("sub", [_c(1.0, dt), t])])


def _elu_branch(ctx, x, alpha):
    """where(x > 0, x, alpha * expm1(x)) (Elu; Selu before its gamma)."""
    dt = x.dtype
    neg = _expm1_nonpositive(ctx, ctx.op("minimum", [x, _c(0.0, dt)]))
    return ctx.op("where", [ctx.op("greater", [x, _c(0.0, dt)]), x, ctx.op("mul", [neg, _c(alpha, dt)])])


def _unary_op(op, allowed):
    def fn(ctx):
        x = ctx.inputs[0]
        _need(ctx, x, allowed)
        return ctx.op(op, [x])
    fn.__doc__ = f"{op} ({', '.join(allowed)})"
    return fn


def _binary_op(op, allowed):
    def fn(ctx):
        a, b = ctx.inputs[0], ctx.inputs[1]
        _same_dtype(ctx, [a, b])
        _need(ctx, a, allowed)
        return ctx.op(op, [a, b])
    fn.__doc__ = f"{op}, broadcasting ({', '.join(allowed)})"
    return fn


# -- elementwise ---------------------------------------------------------------------------

_UNARY = {
    # ONNX op: (graphc op, dtypes)
    "Neg": ("neg", NUMERIC), "Abs": ("abs", NUMERIC), "Sign": ("sign", NUMERIC), "Relu": ("relu", NUMERIC),
    "Reciprocal": ("reciprocal", FLOATS), "Sqrt": ("sqrt", FLOATS), "Exp": ("exp", FLOATS),
    "Log": ("log", FLOATS), "Erf": ("erf", FLOATS), "Floor": ("floor", FLOATS), "Ceil": ("ceil", FLOATS),
    "Round": ("round", FLOATS), "Sin": ("sin", FLOATS), "Cos": ("cos", FLOATS), "Tan": ("tan", FLOATS),
    "Asin": ("asin", FLOATS), "Acos": ("acos", FLOATS), "Atan": ("atan", FLOATS), "Sinh": ("sinh", FLOATS),
    "Cosh": ("cosh", FLOATS), "Asinh": ("asinh", FLOATS), "Acosh": ("acosh", FLOATS),
    "Atanh": ("atanh", FLOATS), "Sigmoid": ("sigmoid", FLOATS), "Tanh": ("tanh", FLOATS),
    "Not": ("logical_not", BOOL), "IsNaN": ("isnan", FLOATS),
}

for _onnx, (_op, _allowed) in _UNARY.items():
    handler(_onnx)(_unary_op(_op, _allowed))

_BINARY = {
    "Add": ("add", NUMERIC), "Sub": ("sub", NUMERIC), "Mul": ("mul", NUMERIC),
    "Equal": ("equal", dtypes.ALL), "Less": ("less", NUMERIC), "Greater": ("greater", NUMERIC),
    "LessOrEqual": ("less_equal", NUMERIC), "GreaterOrEqual": ("greater_equal", NUMERIC),
    "And": ("logical_and", BOOL), "Or": ("logical_or", BOOL), "Xor": ("logical_xor", BOOL),
}

for _onnx, (_op, _allowed) in _BINARY.items():
    handler(_onnx)(_binary_op(_op, _allowed))


@handler("Div")
def _div(ctx):
    """div (floats); int_div on ints (truncates toward zero; x/0 = 0)"""
    a, b = ctx.inputs[0], ctx.inputs[1]
    _same_dtype(ctx, [a, b])
    _need(ctx, a, NUMERIC)
    # integers truncate toward zero (C++), as ONNX's reference does
    return ctx.op("div" if a.dtype in FLOATS else "int_div", [a, b])


@handler("IsInf")
def _isinf(ctx):
    """isinf with detect_positive / detect_negative (floats)"""
    x = ctx.inputs[0]
    _need(ctx, x, FLOATS)
    return ctx.op("isinf", [x], {"detect_positive": bool(ctx.attr("detect_positive", 1)),
                                 "detect_negative": bool(ctx.attr("detect_negative", 1))})


@handler("Mod")
def _mod(ctx):
    """mod (fmod attr); float fmod=0 only from opset 28 (numpy.mod), refused before"""
    a, b = ctx.inputs[0], ctx.inputs[1]
    _same_dtype(ctx, [a, b])
    _need(ctx, a, NUMERIC)
    fmod = ctx.attr("fmod", 0)
    if fmod not in (0, 1):
        ctx.unsupported(f"attr fmod={fmod} is not 0 or 1")
    if a.dtype in FLOATS and not fmod and ctx.opset < 28:
        # opset 28 defines float fmod=0 as numpy.mod (the divisor's sign, with its special
        # cases); before, ONNX requires fmod=1 for floats
        ctx.unsupported(f"fmod=0 on {a.dtype} inputs: ONNX before opset 28 requires fmod=1 for "
                        "floating-point Mod")
    return ctx.op("mod", [a, b], {"fmod": bool(fmod)})


@handler("Pow")
def _pow(ctx):
    """pow (scalar exponent known at import), else power; float base only; mixed dtypes via float64

    An int base is refused; a float32 base with another exponent dtype is computed in float64
    and rounded, as ONNX's reference (numpy's promotion) does."""
    x, e = ctx.inputs[0], ctx.inputs[1]
    _need(ctx, x, FLOATS, "base")
    _need(ctx, e, NUMERIC, "exponent")
    dt = x.dtype
    rank = _rank(ctx, x)
    if e.const is not None and e.const.size == 1 and e.const.ndim <= rank:
        p = e.const.reshape(()).item()
        if e.dtype == dt or float(np.asarray(p, dt)) == p:
            # a scalar exponent exact in x's dtype: the scalar-exponent op, computed in x's dtype
            return ctx.op("pow", [x], {"exponent": float(p)})
    if e.dtype == dt:
        return ctx.op("power", [x, e])
    # ONNX's reference computes np.power(x, e): mixed dtypes promote to float64, then the
    # result is rounded to x's dtype.  float64 holds every float32 and int32 exactly and
    # rounds an int64 as numpy's promotion does.
    x64 = x if dt == "float64" else ctx.op("cast", [x], {"to": "float64"})
    e64 = ctx.op("cast", [e], {"to": "float64"})
    y = ctx.op("power", [x64, e64])
    return y if dt == "float64" else ctx.op("cast", [y], {"to": dt})


@handler("Max", "Min", "Sum", "Mean")
def _variadic(ctx):
    """Max/Min: maximum/minimum chains (numbers); Sum/Mean: add chain (/ n) (floats)"""
    values = [v for v in ctx.inputs if v is not None]
    if not values:
        ctx.unsupported("needs at least one input")
    _same_dtype(ctx, values)
    # ONNX types Sum and Mean for floats only, Max and Min for every number
    _need(ctx, values[0], FLOATS if ctx.op_type in ("Sum", "Mean") else NUMERIC)
    op = {"Max": "maximum", "Min": "minimum", "Sum": "add", "Mean": "add"}[ctx.op_type]
    y = values[0]
    for v in values[1:]:
        y = ctx.op(op, [y, v])
    if ctx.op_type == "Mean" and len(values) > 1:
        y = ctx.op("div", [y, _c(len(values), y.dtype)])
    return y


def _scalar_bound(ctx, x, v, what):
    """A Clip bound: x's dtype, and one value that broadcasting leaves x's shape alone."""
    if v.dtype != x.dtype:
        ctx.unsupported(f"{what} of dtype {v.dtype} differs from the input's {x.dtype}")
    if v.shape is None or len(v.shape) > _rank(ctx, x) or any(d != 1 for d in v.shape):
        ctx.unsupported(f"{what} of shape {v.shape} is not a scalar")
    return v


@handler("Clip")
def _clip(ctx):
    """maximum(x, min) then minimum(·, max); bounds optional, scalars of x's dtype"""
    x = ctx.inputs[0]
    _need(ctx, x, NUMERIC)
    lo, hi = _input(ctx, 1), _input(ctx, 2)
    y = x
    # np.clip: min(max(x, lo), hi) (hi wins where lo > hi; NaN propagates)
    if lo is not None:
        y = ctx.op("maximum", [y, _scalar_bound(ctx, x, lo, "min")])
    if hi is not None:
        y = ctx.op("minimum", [y, _scalar_bound(ctx, x, hi, "max")])
    return y


# -- activations ------------------------------------------------------------------------------

@handler("LeakyRelu")
def _leaky_relu(ctx):
    """leaky_relu (floats)"""
    x = ctx.inputs[0]
    _need(ctx, x, FLOATS)
    alpha = float(ctx.attr("alpha", _f32(0.01)))
    if not math.isfinite(alpha):
        ctx.unsupported(f"attr alpha={alpha} is not finite")
    return ctx.op("leaky_relu", [x], {"negative_slope": alpha})


@handler("PRelu")
def _prelu(ctx):
    """where(x > 0, x, x · slope); slope broadcasts to x"""
    x, slope = ctx.inputs[0], ctx.inputs[1]
    _same_dtype(ctx, [x, slope])
    _need(ctx, x, NUMERIC)
    rank = _rank(ctx, x)
    # slope broadcasts to x (unidirectionally): the output has x's shape
    if slope.shape is None or len(slope.shape) > rank or any(
            s != 1 and s != d for s, d in zip(slope.shape[::-1], x.shape[::-1])):
        ctx.unsupported(f"slope of shape {slope.shape} does not broadcast to the input's {x.shape}")
    zero = _c(0, x.dtype)
    return ctx.op("where", [ctx.op("greater", [x, zero]), x, ctx.op("mul", [x, slope])])


@handler("Elu")
def _elu(ctx):
    """where(x > 0, x, alpha · expm1(x)), expm1 via tanh (accurate near 0)"""
    x = ctx.inputs[0]
    _need(ctx, x, FLOATS)
    return _elu_branch(ctx, x, float(ctx.attr("alpha", 1.0)))


@handler("Selu")
def _selu(ctx):
    """gamma · Elu(alpha)"""
    x = ctx.inputs[0]
    _need(ctx, x, FLOATS)
    alpha = float(ctx.attr("alpha", 1.67326319217681884765625))
    gamma = float(ctx.attr("gamma", 1.05070102214813232421875))
    return ctx.op("mul", [_elu_branch(ctx, x, alpha), _c(gamma, x.dtype)])


@handler("Celu")
def _celu(ctx):
    """max(0, x) + min(0, alpha · expm1(x / alpha)); alpha > 0"""
    x = ctx.inputs[0]
    _need(ctx, x, FLOATS)
    alpha = float(ctx.attr("alpha", 1.0))
    if not (math.isfinite(alpha) and alpha > 0):
        ctx.unsupported(f"attr alpha={alpha} is not a positive number")
    dt = x.dtype
    # max(0, x) + min(0, alpha * expm1(x / alpha)); for alpha > 0 the second term only sees x <= 0
    z = ctx.op("minimum", [ctx.op("div", [x, _c(alpha, dt)]), _c(0.0, dt)])
    neg = ctx.op("minimum", [ctx.op("mul", [_expm1_nonpositive(ctx, z), _c(alpha, dt)]), _c(0.0, dt)])
    return ctx.op("add", [ctx.op("maximum", [x, _c(0.0, dt)]), neg])


def _hard_sigmoid(ctx, x, alpha, beta):
    dt = x.dtype
    z = ctx.op("add", [ctx.op("mul", [x, _c(alpha, dt)]), _c(beta, dt)])
    return ctx.op("maximum", [ctx.op("minimum", [z, _c(1.0, dt)]), _c(0.0, dt)])


@handler("HardSigmoid")
def _hardsigmoid(ctx):
    """max(0, min(1, alpha · x + beta))"""
    x = ctx.inputs[0]
    _need(ctx, x, FLOATS)
    return _hard_sigmoid(ctx, x, float(ctx.attr("alpha", _f32(0.2))), float(ctx.attr("beta", 0.5)))


@handler("HardSwish")
def _hardswish(ctx):
    """x · HardSigmoid(alpha=1/6, beta=0.5)"""
    x = ctx.inputs[0]
    _need(ctx, x, FLOATS)
    # ONNX's function body: Mul(X, HardSigmoid<alpha=1/6 (a float32 attr), beta=0.5>(X))
    return ctx.op("mul", [x, _hard_sigmoid(ctx, x, _f32(1.0 / 6.0), 0.5)])


@handler("Softplus")
def _softplus(ctx):
    """softplus (beta=1, no linear region)"""
    x = ctx.inputs[0]
    _need(ctx, x, FLOATS)
    # log(1 + e^x) without torch's linear region (threshold=inf): graphc's kernel computes
    # max(x, 0) + log1p(e^-|x|), which never overflows
    return ctx.op("softplus", [x], {"beta": 1.0, "threshold": math.inf})


@handler("Softsign")
def _softsign(ctx):
    """x / (1 + abs(x))"""
    x = ctx.inputs[0]
    _need(ctx, x, FLOATS)
    return ctx.op("div", [x, ctx.op("add", [ctx.op("abs", [x]), _c(1.0, x.dtype)])])


@handler("ThresholdedRelu")
def _thresholded_relu(ctx):
    """where(x > alpha, x, 0)"""
    x = ctx.inputs[0]
    _need(ctx, x, FLOATS)
    dt = x.dtype
    alpha = float(ctx.attr("alpha", 1.0))
    return ctx.op("where", [ctx.op("greater", [x, _c(alpha, dt)]), x, _c(0.0, dt)])


@handler("Mish")
def _mish(ctx):
    """x · tanh(softplus(x))"""
    x = ctx.inputs[0]
    _need(ctx, x, FLOATS)
    sp = ctx.op("softplus", [x], {"beta": 1.0, "threshold": math.inf})
    return ctx.op("mul", [x, ctx.op("tanh", [sp])])


@handler("Gelu")
def _gelu(ctx):
    """gelu (approximate none/tanh); NaN at -inf as ONNX's body"""
    x = ctx.inputs[0]
    _need(ctx, x, FLOATS)
    approximate = ctx.attr("approximate", "none")
    if approximate not in ("none", "tanh"):
        ctx.unsupported(f"attr approximate={approximate!r} is not 'none' or 'tanh'")
    y = ctx.op("gelu", [x], {"approximate": approximate})
    # ONNX's body computes x * 0.5 * (1 + ...), which is -inf * 0 = NaN at -inf; graphc's
    # gelu gives the limit -0 there.
    dt = x.dtype
    return ctx.op("where", [ctx.op("equal", [x, _c(-np.inf, dt)]), _c(np.nan, dt), y])


@handler("Swish")
def _swish(ctx):
    """silu (alpha=1), else x · sigmoid(alpha · x)"""
    x = ctx.inputs[0]
    _need(ctx, x, FLOATS)
    alpha = float(ctx.attr("alpha", 1.0))
    if alpha == 1.0:
        return ctx.op("silu", [x])
    return ctx.op("mul", [x, ctx.op("sigmoid", [ctx.op("mul", [x, _c(alpha, x.dtype)])])])


@handler("Shrink")
def _shrink(ctx):
    """where(x < -lambd, x + bias, where(x > lambd, x - bias, 0)); ints only with integral bias/lambd"""
    x = ctx.inputs[0]
    _need(ctx, x, NUMERIC)
    dt = x.dtype
    bias, lambd = float(ctx.attr("bias", 0.0)), float(ctx.attr("lambd", 0.5))
    if dt in INTS and not (bias.is_integer() and lambd.is_integer()):
        ctx.unsupported(f"bias={bias}, lambd={lambd} on {dt} input: only integral values are exact")
    lo = ctx.op("less", [x, _c(-lambd, dt)])
    hi = ctx.op("greater", [x, _c(lambd, dt)])
    mid = ctx.op("where", [hi, ctx.op("sub", [x, _c(bias, dt)]), _c(0, dt)])
    return ctx.op("where", [lo, ctx.op("add", [x, _c(bias, dt)]), mid])


# -- reductions --------------------------------------------------------------------------------

_REDUCE = {
    # ONNX op: (dtypes, value of an empty reduction, noop_with_empty_axes gives the input)
    "ReduceSum": (NUMERIC, 0, True),
    "ReduceMean": (FLOATS, math.nan, True),
    "ReduceMax": (NUMERIC, "lowest", True),
    "ReduceMin": (NUMERIC, "highest", True),
    "ReduceProd": (NUMERIC, 1, True),
    "ReduceL1": (NUMERIC, 0, False),
    "ReduceL2": (FLOATS, 0, False),
    "ReduceLogSum": (FLOATS, -math.inf, False),
    "ReduceLogSumExp": (FLOATS, -math.inf, False),
    "ReduceSumSquare": (NUMERIC, 0, False),
}


def _reduce_axes(ctx, x, rank, noop_is_identity):
    """Sorted axes, or None for 'return the input' (noop_with_empty_axes)."""
    axes_in = _input(ctx, 1)
    if axes_in is not None:
        axes = [int(a) for a in np.asarray(ctx.const_input(1, "axes")).ravel()]
    else:
        axes = ctx.attr("axes", None)
        axes = None if axes is None else [int(a) for a in axes]
    if not axes:
        if ctx.attr("noop_with_empty_axes", 0):
            if not noop_is_identity:
                # the spec says the output is the input; its reference applies the op's map
                # (|x|, x², log x) instead: refuse rather than pick one
                ctx.unsupported("noop_with_empty_axes=1 with empty axes is not supported for this op")
            return None
        return tuple(range(rank))
    out = sorted({_axis(ctx, a, rank, "axes") for a in axes})
    if len(out) != len(axes):
        ctx.unsupported(f"axes={axes} repeats an axis")
    return tuple(out)


def _empty_value(kind, dt):
    if dt == "bool":
        return kind == "highest"  # max of nothing is False, min of nothing True
    if kind == "lowest":
        return -np.inf if dt in FLOATS else np.iinfo(dt).min
    if kind == "highest":
        return np.inf if dt in FLOATS else np.iinfo(dt).max
    return kind


def _reduce_prod(ctx, x, axes, keepdims):
    """Product over static axes by pairwise halving along each axis (log2(n) mul nodes)."""
    y = x
    for a in axes:
        n = x.shape[a]
        while n > 1:
            h = n // 2
            lo = ctx.op("slice", [y], {"starts": (0,), "ends": (h,), "axes": (a,), "steps": (1,)})
            hi = ctx.op("slice", [y], {"starts": (h,), "ends": (2 * h,), "axes": (a,), "steps": (1,)})
            z = ctx.op("mul", [lo, hi])
            if n % 2:
                rest = ctx.op("slice", [y], {"starts": (2 * h,), "ends": (n,), "axes": (a,), "steps": (1,)})
                z = ctx.op("concat", [z, rest], {"axis": a})
            y, n = z, h + n % 2
    if not keepdims and axes:
        y = ctx.op("squeeze", [y], {"axes": tuple(axes)})
    return y


@handler(*_REDUCE)
def _reduce(ctx):
    """sum/mean/max/min/pairwise product/... over axes known at import (attr or input)

    An empty set gives ONNX's identities; bool ReduceMax/ReduceMin from opset 20."""
    allowed, empty, noop_is_identity = _REDUCE[ctx.op_type]
    x = ctx.inputs[0]
    if ctx.op_type in ("ReduceMax", "ReduceMin") and ctx.opset >= 20:
        allowed = NUMERIC + BOOL  # opset 20: bool (max = any, min = all)
    _need(ctx, x, allowed)
    rank = _rank(ctx, x)
    axes = _reduce_axes(ctx, x, rank, noop_is_identity)
    if axes is None:
        return x
    keepdims = bool(ctx.attr("keepdims", 1))
    out_shape = tuple(1 if i in axes else d for i, d in enumerate(x.shape) if keepdims or i not in axes)
    if 0 in x.shape:
        # an empty input: the result is the reduction's identity (ONNX's reference values)
        if not all(isinstance(d, int) for d in out_shape):
            ctx.unsupported(f"an empty input of shape {x.shape} with symbolic output dims")
        return np.full(out_shape, _empty_value(empty, x.dtype), dtype=x.dtype)
    attrs = {"axes": axes, "keepdims": keepdims}
    op = ctx.op_type
    if op == "ReduceSum":
        return ctx.op("sum", [x], attrs)
    if op == "ReduceMean":
        return ctx.op("mean", [x], attrs)
    if op in ("ReduceMax", "ReduceMin"):
        reduce_op = "max" if op == "ReduceMax" else "min"
        if x.dtype == "bool":  # on 0/1: max = any, min = all
            y = ctx.op(reduce_op, [ctx.op("cast", [x], {"to": "int32"})], attrs)
            return ctx.op("cast", [y], {"to": "bool"})
        return ctx.op(reduce_op, [x], attrs)
    if op == "ReduceProd":
        bad = [a for a in axes if not isinstance(x.shape[a], int)]
        if bad:
            ctx.unsupported(f"ReduceProd over symbolic dims {[x.shape[a] for a in bad]}; pass shapes= to pin them")
        return _reduce_prod(ctx, x, axes, keepdims)
    if op == "ReduceL1":
        return ctx.op("sum", [ctx.op("abs", [x])], attrs)
    if op == "ReduceL2":
        return ctx.op("sqrt", [ctx.op("sum", [ctx.op("mul", [x, x])], attrs)])
    if op == "ReduceSumSquare":
        return ctx.op("sum", [ctx.op("mul", [x, x])], attrs)
    if op == "ReduceLogSum":
        return ctx.op("log", [ctx.op("sum", [x], attrs)])
    # ReduceLogSumExp = log(Σ e^x), computed as ONNX's reference does: m = max over the finite
    # values (±inf read as -inf), log(Σ e^(x - m)) + m; m = 0 where no value is finite (the
    # reference's m = -inf gives NaN there, where log Σ e^x is -inf or inf: onnxruntime's result).
    # m carries no gradient (it cancels).
    dt = x.dtype
    finite = ctx.op("where", [ctx.op("isinf", [x], {"detect_positive": True, "detect_negative": True}),
                              _c(-np.inf, dt), x])
    m = ctx.op("max", [finite], {"axes": axes, "keepdims": True})
    m = ctx.op("where", [ctx.op("equal", [m, _c(-np.inf, dt)]), _c(0.0, dt), m])
    m = ctx.op("stop_gradient", [m])
    s = ctx.op("sum", [ctx.op("exp", [ctx.op("sub", [x, m])])], {"axes": axes, "keepdims": True})
    y = ctx.op("add", [ctx.op("log", [s]), m])
    if not keepdims:
        y = ctx.op("squeeze", [y], {"axes": axes})
    return y


def _along_axis(ctx, allowed, default_axis):
    """(x, rank, axis) of an op along one axis (ArgMax/ArgMin, Softmax family): input 0 of an
    ``allowed`` dtype and rank >= 1, attr axis (``default_axis`` when absent) normalized."""
    x = ctx.inputs[0]
    _need(ctx, x, allowed)
    rank = _rank(ctx, x)
    if rank == 0:
        ctx.unsupported("a rank-0 input")
    return x, rank, _axis(ctx, int(ctx.attr("axis", default_axis)), rank)


# -- arg max / min -------------------------------------------------------------------------------

@handler("ArgMax", "ArgMin")
def _argmax(ctx):
    """argmax/argmin; select_last_index via the reversed axis (static dim)"""
    x, rank, axis = _along_axis(ctx, NUMERIC, 0)
    keepdims = bool(ctx.attr("keepdims", 1))
    last = ctx.attr("select_last_index", 0)
    src = x
    if last:
        n = x.shape[axis]
        if not isinstance(n, int):
            ctx.unsupported(f"select_last_index=1 along a symbolic dim {n!r}; pass shapes= to pin it")
        # the last extremum is the first one of the reversed axis
        src = ctx.op("slice", [x], {"starts": (-1,), "ends": (-_END,), "axes": (axis,), "steps": (-1,)})
    attrs = {"axis": axis, "keepdims": keepdims}
    i = ctx.op("argmax" if ctx.op_type == "ArgMax" else "argmin", [src], attrs)
    if last:
        i = ctx.op("sub", [_c(n - 1, "int64"), i])
    return i


# -- softmax family ------------------------------------------------------------------------------

@handler("Softmax", "LogSoftmax")
def _softmax(ctx):
    """softmax / log_softmax (opset 13 axis; older opsets converted)"""
    x, rank, axis = _along_axis(ctx, FLOATS, -1)
    return ctx.op("softmax" if ctx.op_type == "Softmax" else "log_softmax", [x], {"axis": axis})


@handler("Hardmax")
def _hardmax(ctx):
    """one_hot(argmax(x, axis)) moved to axis (static dim)"""
    x, rank, axis = _along_axis(ctx, FLOATS, -1)
    if 0 in x.shape:
        if not all(isinstance(d, int) for d in x.shape):
            ctx.unsupported(f"an empty input of shape {x.shape} with symbolic dims")
        return np.zeros(x.shape, x.dtype)
    n = x.shape[axis]
    if not isinstance(n, int):
        ctx.unsupported(f"Hardmax along a symbolic dim {n!r}; pass shapes= to pin it")
    # 1 at the first maximum (NaN counts as the largest: numpy's argmax), 0 elsewhere
    idx = ctx.op("argmax", [x], {"axis": axis, "keepdims": False})
    y = ctx.op("one_hot", [idx], {"depth": n, "dtype": x.dtype})
    if axis != rank - 1:
        perm = tuple(range(axis)) + (rank - 1,) + tuple(range(axis, rank - 1))
        y = ctx.op("transpose", [y], {"perm": perm})
    return y
