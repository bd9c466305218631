"""Activations declared as compositions of other registry ops (composite first, fused
later: STYLE.md).  Each stays one node in a .pb, in drawings and in error messages; the
compiler expands it for a target that declares no kernel for it, and autodiff
differentiates the expansion unless the op declares a gradient of its own."""

import numpy as np

from graphc import dtypes
from graphc.ops._common import UNARY_SHAPES, Example, as_tensors, build, rand
from graphc.ops.elementwise import _sigmoid, mul, sigmoid
from graphc.registry import register_op


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
