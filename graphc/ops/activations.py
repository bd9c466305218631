"""Activations declared as compositions of other registry ops (composite first, fused
later: STYLE.md).  Each stays one node in a .pb, in drawings and in error messages; the
compiler expands it for a target that declares no kernel for it, and autodiff
differentiates the expansion unless the op declares a gradient of its own."""

import math

import numpy as np

from graphc import dtypes
from graphc.errors import GraphError
from graphc.ops._common import UNARY_SHAPES, Example, F, as_tensors, build, rand, special, zeros_like
from graphc.ops.elementwise import _sigmoid, mul, sigmoid
from graphc.registry import AttrSpec, defgrad, register_op


def _silu_examples(rng):
    out = []
    for dt in dtypes.FLOATS:
        for shape in UNARY_SHAPES:
            out.append(Example([rand(rng, shape, dt, -4, 4)], note=dt))
        special = np.array([np.nan, np.inf, -np.inf, -0.0, 0.0, np.finfo(dt).max, np.finfo(dt).min,
                            np.finfo(dt).tiny], dt)
        out.append(Example([special], grad=False, note=f"{dt} special values"))
    return out


def _silu_ref(inputs, attrs):
    x = inputs[0]
    with np.errstate(over="ignore", invalid="ignore"):
        return (x * _sigmoid(x)).astype(x.dtype)


register_op(
    "silu",
    doc="SiLU (swish): y = x · σ(x), σ(x) = 1 / (1 + e^-x).  Composite: mul(x, sigmoid(x)); "
        "no kernel of its own yet.",
    inputs=[("x", dtypes.FLOATS)],
    infer=lambda ctx: (ctx.dtype(0), ctx.shape(0)),
    reference=_silu_ref,
    examples=_silu_examples,
    composite=lambda ctx: mul(ctx.x, sigmoid(ctx.x)),
    kernels=(),
)


def silu(x, name=None):
    """x · sigmoid(x) (SiLU / swish)."""
    return build("silu", as_tensors(x), name=name)


# -- gelu, softplus and their gradient ops (kernels: runtime/cpu/activations.cc) -------------------
# PyTorch's definitions (torch.nn.functional.gelu / softplus).  Where torch's formula meets
# inf · 0 or an overflowing exp, the kernels return the mathematical limit instead of torch's NaN
# or inf (gelu(-inf) = -0, gelu'(±inf) = 0 / 1, softplus with a large threshold stays finite);
# everywhere torch is finite they agree to float rounding (tests/test_activations.py).

APPROXIMATE = ("none", "tanh")
_SQRT1_2 = 0.7071067811865476     # 1/√2
_INV_SQRT_2PI = 0.3989422804014327  # 1/√(2π)
_K = 0.7978845608028654           # √(2/π), the tanh form's scale
_KAPPA = 0.044715                 # the tanh form's cubic coefficient

_erfc = np.vectorize(math.erfc, otypes=[np.float64])


def _check_approximate(ctx):
    if ctx.attrs["approximate"] not in APPROXIMATE:
        ctx.fail(f"approximate={ctx.attrs['approximate']!r} is not one of 'none' (erf form) or 'tanh'")


def _gelu_infer(ctx):
    _check_approximate(ctx)
    return ctx.dtype(0), ctx.shape(0)


def _gelu_parts(x, approximate):
    """(cdf, d): y = x·cdf and dy/dx = d, in float64 with the limits at ±inf (no inf·0)."""
    x = x.astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        if approximate == "none":
            cdf = 0.5 * _erfc(-x * _SQRT1_2)
            pdf = np.exp(-0.5 * x * x) * _INV_SQRT_2PI
            d = cdf + np.where(pdf == 0, 0.0, x * pdf)
            return cdf, d
        t = np.tanh(_K * (x + _KAPPA * x * x * x))
        sech2 = 1.0 - t * t
        du = _K * (1.0 + 3.0 * _KAPPA * x * x)
        d = 0.5 * (1.0 + t) + np.where(sech2 == 0, 0.0, 0.5 * x * sech2 * du)
        return 0.5 * (1.0 + t), d


def _gelu_ref(inputs, attrs):
    x = inputs[0]
    cdf, _ = _gelu_parts(x, attrs["approximate"])
    with np.errstate(invalid="ignore"):
        y = np.where(cdf == 0, -0.0, x.astype(np.float64) * cdf)
    return y.astype(x.dtype)


def _gelu_grad_ref(inputs, attrs):
    dy, x = inputs
    _, d = _gelu_parts(x, attrs["approximate"])
    with np.errstate(invalid="ignore", over="ignore"):
        return (dy.astype(np.float64) * d).astype(x.dtype)


def _specials(dt):
    """NaN, ±inf, ±0, the extremes, and |x| where exp under- or overflows."""
    info = np.finfo(dt)
    return np.array([np.nan, np.inf, -np.inf, -0.0, 0.0, info.max, -info.max, info.tiny, -info.tiny,
                     1.0, -1.0, 10.0, -10.0, 40.0, -40.0, 100.0, -100.0, 1000.0, -1000.0, 1e30, -1e30], dt)


def _gelu_examples(rng):
    out = []
    for approximate in APPROXIMATE:
        a = {"approximate": approximate}
        for dt in dtypes.FLOATS:
            for shape in UNARY_SHAPES:
                out.append(Example([rand(rng, shape, dt, -4, 4)], a, note=f"{approximate} {dt}"))
            out.append(Example([_specials(dt)], a, grad=False, note=f"{approximate} {dt} special values"))
    return out


def _gelu_grad_examples(rng):
    out = []
    for approximate in APPROXIMATE:
        a = {"approximate": approximate}
        for dt in dtypes.FLOATS:
            for shape in UNARY_SHAPES:
                out.append(Example([rand(rng, shape, dt), rand(rng, shape, dt, -4, 4)], a, note=f"{approximate} {dt}"))
            x = _specials(dt)
            out.append(Example([np.ones_like(x), x], a, grad=False, note=f"{approximate} {dt} special x"))
            out.append(Example([special(rng, x.shape, dt), rand(rng, x.shape, dt, -4, 4)], a, grad=False,
                               note=f"{approximate} {dt} special dy"))
    return out


_APPROX_ATTR = AttrSpec("str", default="none", doc="'none': x·Φ(x) with erf (exact); 'tanh': torch's tanh form")

register_op(
    "gelu",
    doc="GELU (torch.nn.functional.gelu): y = x·Φ(x), Φ(x) = ½·erfc(-x/√2) ('none'), or "
        "½·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))) ('tanh').  gelu(-inf) = -0 (the limit; torch: NaN).",
    inputs=[("x", "T")],
    type_vars={"T": dtypes.FLOATS},
    attrs={"approximate": _APPROX_ATTR},
    infer=_gelu_infer,
    reference=_gelu_ref,
    examples=_gelu_examples,
    elementwise=True,
)


def _grad_infer(ctx):
    if ctx.shape(0) != ctx.shape(1):
        ctx.fail(f"expects the gradient and the input of one shape, got {ctx.shape(0)} and {ctx.shape(1)}")
    return ctx.dtype(1), ctx.shape(1)


def _gelu_grad_infer(ctx):
    _check_approximate(ctx)
    return _grad_infer(ctx)


register_op(
    "gelu_grad",
    doc="dx = dy · gelu'(x) for gelu's 'approximate' form: Φ(x) + x·φ(x) ('none'); the derivative of the "
        "tanh form ('tanh').  The limits at ±inf (0 and 1), where torch gives NaN.",
    inputs=[("dy", "T"), ("x", "T")],
    type_vars={"T": dtypes.FLOATS},
    attrs={"approximate": AttrSpec("str", default="none", doc="as in gelu")},
    infer=_gelu_grad_infer,
    reference=_gelu_grad_ref,
    examples=_gelu_grad_examples,
    elementwise=True,
)


@defgrad("gelu")
def _grad_gelu(ctx):
    return [build("gelu_grad", [ctx.g, ctx.x], {"approximate": ctx.attrs["approximate"]})]


def _gelu_second(x, approximate):
    """gelu''(x) from registry ops (second derivatives: Hessian-vector products)."""
    x2 = F.mul(x, x)
    if approximate == "none":
        # (Φ + xφ)' = 2φ + xφ' = φ·(2 - x²)
        phi = F.mul(F.exp(F.mul(x2, -0.5)), _INV_SQRT_2PI)
        return F.mul(phi, F.sub(2.0, x2))
    # f = ½x(1+t), t = tanh u, u = k(x + κx³): f'' = (1-t²)·(u' + ½x·(u'' - 2t·u'²))
    t = F.tanh(F.mul(F.add(x, F.mul(F.mul(x2, x), _KAPPA)), _K))
    du = F.mul(F.add(F.mul(x2, 3.0 * _KAPPA), 1.0), _K)
    ddu = F.mul(x, 6.0 * _K * _KAPPA)
    inner = F.add(du, F.mul(F.mul(x, 0.5), F.sub(ddu, F.mul(F.mul(t, 2.0), F.mul(du, du)))))
    return F.mul(F.sub(1.0, F.mul(t, t)), inner)


@defgrad("gelu_grad")
def _grad_gelu_grad(ctx):
    dy, x = ctx.inputs
    approximate = ctx.attrs["approximate"]
    d_dy = build("gelu_grad", [ctx.g, x], {"approximate": approximate})
    return [d_dy, F.mul(F.mul(ctx.g, dy), _gelu_second(x, approximate))]


def gelu(x, approximate="none", name=None):
    """GELU as ``torch.nn.functional.gelu(x, approximate)``: ``x·Φ(x)`` with the normal CDF Φ
    (``approximate="none"``, the erf form) or PyTorch's tanh approximation (``"tanh"``)."""
    if approximate not in APPROXIMATE:
        raise GraphError(f"gelu: approximate={approximate!r} is not one of 'none' (erf form) or 'tanh'")
    return build("gelu", as_tensors(x), {"approximate": approximate}, name=name)


# -- softplus ----------------------------------------------------------------------------------------

def _check_softplus_attrs(ctx):
    beta, threshold = ctx.attrs["beta"], ctx.attrs["threshold"]
    if not math.isfinite(beta) or beta == 0:
        ctx.fail(f"beta={beta!r} must be finite and nonzero (y = log(1 + e^(beta·x)) / beta)")
    if math.isnan(threshold):
        ctx.fail("threshold=nan: expected a number (y = x where beta·x > threshold)")


def _softplus_infer(ctx):
    _check_softplus_attrs(ctx)
    return ctx.dtype(0), ctx.shape(0)


def _softplus_z(x, attrs):
    """(z = beta·x rounded to x's dtype as torch computes it, linear = z > threshold)."""
    dt = x.dtype.type
    with np.errstate(over="ignore", invalid="ignore"):
        z = x * dt(attrs["beta"])
        return z.astype(np.float64), z > dt(attrs["threshold"])


def _softplus_ref(inputs, attrs):
    x = inputs[0]
    z, linear = _softplus_z(x, attrs)
    with np.errstate(over="ignore", invalid="ignore"):
        # log(1 + e^z) = max(z, 0) + log1p(e^-|z|): no overflow, whatever the threshold
        soft = (np.maximum(z, 0.0) + np.log1p(np.exp(-np.abs(z)))) / attrs["beta"]
    return np.where(linear, x, soft.astype(x.dtype)).astype(x.dtype)


def _softplus_grad_ref(inputs, attrs):
    dy, x = inputs
    z, linear = _softplus_z(x, attrs)
    s = _sigmoid(z)
    with np.errstate(invalid="ignore", over="ignore"):
        return np.where(linear, dy, (dy.astype(np.float64) * s).astype(x.dtype)).astype(x.dtype)


_SOFTPLUS_ATTRS = [{"beta": 1.0, "threshold": 20.0}, {"beta": 2.0, "threshold": 5.0},
                   {"beta": -1.5, "threshold": 3.0}, {"beta": 0.5, "threshold": 1000.0}]


def _softplus_examples(rng, grad_op=False):
    out = []
    for a in _SOFTPLUS_ATTRS:
        for dt in dtypes.FLOATS:
            for shape in UNARY_SHAPES:
                x = rand(rng, shape, dt, -4, 4)
                # keep finite differences off the jump at beta·x = threshold
                x = np.where(np.abs(x * a["beta"] - a["threshold"]) < 1e-3, np.asarray(0.5, dt), x).astype(dt)
                ins = [rand(rng, shape, dt), x] if grad_op else [x]
                out.append(Example(ins, a, note=f"{a} {dt}"))
            x = _specials(dt)
            ins = [np.ones_like(x), x] if grad_op else [x]
            out.append(Example(ins, a, grad=False, note=f"{a} {dt} special values"))
            if grad_op:
                out.append(Example([special(rng, x.shape, dt), rand(rng, x.shape, dt, -4, 4)], a, grad=False,
                                   note=f"{a} {dt} special dy"))
    return out


_BETA = AttrSpec("float", default=1.0, doc="the sharpness: y = log(1 + e^(beta·x)) / beta (finite, nonzero)")
_THRESHOLD = AttrSpec("float", default=20.0, doc="y = x where beta·x > threshold (torch's linear region)")

register_op(
    "softplus",
    doc="Softplus (torch.nn.functional.softplus): y = x where beta·x > threshold, else "
        "log(1 + e^(beta·x)) / beta, computed as (max(z, 0) + log1p(e^-|z|)) / beta (z = beta·x) so a "
        "large threshold never overflows (torch: inf).",
    inputs=[("x", "T")],
    type_vars={"T": dtypes.FLOATS},
    attrs={"beta": _BETA, "threshold": _THRESHOLD},
    infer=_softplus_infer,
    reference=_softplus_ref,
    examples=_softplus_examples,
    elementwise=True,
)


def _softplus_grad_infer(ctx):
    _check_softplus_attrs(ctx)
    return _grad_infer(ctx)


register_op(
    "softplus_grad",
    doc="dx = dy where beta·x > threshold, else dy·σ(beta·x) (σ computed without overflow; torch: NaN "
        "where e^(beta·x) overflows below a large threshold).",
    inputs=[("dy", "T"), ("x", "T")],
    type_vars={"T": dtypes.FLOATS},
    attrs={"beta": AttrSpec("float", default=1.0, doc="as in softplus"),
           "threshold": AttrSpec("float", default=20.0, doc="as in softplus")},
    infer=_softplus_grad_infer,
    reference=_softplus_grad_ref,
    examples=lambda rng: _softplus_examples(rng, grad_op=True),
    elementwise=True,
)


def _softplus_attrs(attrs):
    return {"beta": attrs["beta"], "threshold": attrs["threshold"]}


@defgrad("softplus")
def _grad_softplus(ctx):
    return [build("softplus_grad", [ctx.g, ctx.x], _softplus_attrs(ctx.attrs))]


@defgrad("softplus_grad")
def _grad_softplus_grad(ctx):
    dy, x = ctx.inputs
    beta, threshold = ctx.attrs["beta"], ctx.attrs["threshold"]
    d_dy = build("softplus_grad", [ctx.g, x], _softplus_attrs(ctx.attrs))
    # d/dx (dy·σ(beta·x)) = dy·beta·σ·(1-σ) below the threshold, 0 above it
    z = F.mul(x, beta)
    s = F.sigmoid(z)
    d2 = F.mul(F.mul(ctx.g, dy), F.mul(F.mul(s, F.sub(1.0, s)), beta))
    return [d_dy, F.where(F.greater(z, threshold), zeros_like(d2), d2)]


def softplus(x, beta=1.0, threshold=20.0, name=None):
    """Softplus as ``torch.nn.functional.softplus(x, beta, threshold)``: ``log(1 + e^(beta·x)) / beta``,
    and ``x`` itself where ``beta·x > threshold``.  beta must be finite and nonzero."""
    for what, v in (("beta", beta), ("threshold", threshold)):
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
            raise GraphError(f"softplus: {what}={v!r} must be a number")
    if not math.isfinite(beta) or beta == 0:
        raise GraphError(f"softplus: beta={beta!r} must be finite and nonzero")
    if math.isnan(threshold):
        raise GraphError("softplus: threshold=nan: expected a number")
    return build("softplus", as_tensors(x), {"beta": float(beta), "threshold": float(threshold)}, name=name)


# -- leaky_relu ----------------------------------------------------------------------------------------
# torch.nn.functional.leaky_relu: y = x where x > 0, else x · negative_slope (the slope cast to x's
# dtype, one rounding, as torch's kernel).  NaN stays NaN, -0.0 gives -0.0 (0 · slope keeps the sign
# for slope >= 0).  The gradient op reads x; for slope >= 0 the sign of y is the sign of x, so the
# gradient reads the output instead and the planner can free the pre-activation (as relu's does).

def _check_slope(ctx):
    slope = ctx.attrs["negative_slope"]
    if not math.isfinite(slope):
        ctx.fail(f"negative_slope={slope!r} must be finite")


def _leaky_relu_infer(ctx):
    _check_slope(ctx)
    return ctx.dtype(0), ctx.shape(0)


def _leaky_relu_grad_infer(ctx):
    _check_slope(ctx)
    return _grad_infer(ctx)


def _leaky_relu_ref(inputs, attrs):
    x = inputs[0]
    with np.errstate(over="ignore", invalid="ignore"):
        return np.where(x > 0, x, x * x.dtype.type(attrs["negative_slope"])).astype(x.dtype)


def _leaky_relu_grad_ref(inputs, attrs):
    dy, x = inputs
    with np.errstate(over="ignore", invalid="ignore"):
        return np.where(x > 0, dy, dy * dy.dtype.type(attrs["negative_slope"])).astype(dy.dtype)


_SLOPES = [0.01, 0.2, -0.5, 1.5, 0.0]


def _off_kink(x, dt):
    # finite differences across the kink at 0 would be wrong: keep the examples' x away from it
    return np.where(np.abs(x) < 0.05, np.asarray(0.5, dt), x).astype(dt)


def _leaky_relu_examples(rng, grad_op=False):
    out = []
    for slope in _SLOPES:
        a = {"negative_slope": slope}
        for dt in dtypes.FLOATS:
            for shape in UNARY_SHAPES:
                x = _off_kink(rand(rng, shape, dt), dt)
                ins = [rand(rng, shape, dt), x] if grad_op else [x]
                out.append(Example(ins, a, note=f"slope {slope} {dt}"))
            x = _specials(dt)
            ins = [special(rng, x.shape, dt), x] if grad_op else [x]
            out.append(Example(ins, a, grad=False, note=f"slope {slope} {dt} special values"))
    return out


_SLOPE_ATTR = AttrSpec("float", default=0.01, doc="y = x · negative_slope where x <= 0 (finite)")

register_op(
    "leaky_relu",
    doc="Leaky ReLU (torch.nn.functional.leaky_relu): y = x where x > 0, else x · negative_slope.",
    inputs=[("x", "T")],
    type_vars={"T": dtypes.FLOATS},
    attrs={"negative_slope": _SLOPE_ATTR},
    infer=_leaky_relu_infer,
    reference=_leaky_relu_ref,
    examples=_leaky_relu_examples,
    elementwise=True,
)

register_op(
    "leaky_relu_grad",
    doc="dx = dy where x > 0, else dy · negative_slope (x may be leaky_relu's output when negative_slope >= 0: "
        "it has x's sign).",
    inputs=[("dy", "T"), ("x", "T")],
    type_vars={"T": dtypes.FLOATS},
    attrs={"negative_slope": AttrSpec("float", default=0.01, doc="as in leaky_relu")},
    infer=_leaky_relu_grad_infer,
    reference=_leaky_relu_grad_ref,
    examples=lambda rng: _leaky_relu_examples(rng, grad_op=True),
    elementwise=True,
)


@defgrad("leaky_relu")
def _grad_leaky_relu(ctx):
    slope = ctx.attrs["negative_slope"]
    # slope >= 0: y > 0 exactly where x > 0 (NaN in both), so the output can stand in for x
    sign_source = ctx.y if slope >= 0 else ctx.x
    return [build("leaky_relu_grad", [ctx.g, sign_source], {"negative_slope": slope})]


@defgrad("leaky_relu_grad")
def _grad_leaky_relu_grad(ctx):
    # linear in dy; piecewise constant in x (0 almost everywhere)
    return [build("leaky_relu_grad", [ctx.g, ctx.inputs[1]], {"negative_slope": ctx.attrs["negative_slope"]}), None]


def leaky_relu(x, negative_slope=0.01, name=None):
    """Leaky ReLU as ``torch.nn.functional.leaky_relu(x, negative_slope)``: ``x`` where ``x > 0``,
    else ``x · negative_slope`` (any finite slope)."""
    if isinstance(negative_slope, bool) or not isinstance(negative_slope, (int, float, np.integer, np.floating)):
        raise GraphError(f"leaky_relu: negative_slope={negative_slope!r} must be a number")
    if not math.isfinite(negative_slope):
        raise GraphError(f"leaky_relu: negative_slope={negative_slope!r} must be finite")
    return build("leaky_relu", as_tensors(x), {"negative_slope": float(negative_slope)}, name=name)
