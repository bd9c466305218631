"""Nearest-neighbour upsampling of NCHW images by integer factors: ``upsample_nearest2d``.

y[n, c, i, j] = x[n, c, i // s_h, j // s_w], y of shape (N, C, H·s_h, W·s_w) — what
torch.nn.functional.interpolate(x, scale_factor=(s_h, s_w), mode="nearest") gives for integer
factors.  Composite (composite first, fused later: STYLE.md): x reshaped to (N, C, H, 1, W, 1),
multiplied by ones of shape (1, 1, 1, s_h, 1, s_w) (the one pass: a broadcast product, exact for
every value) and reshaped to the output (a view).  Autodiff differentiates that definition: the
gradient is the sum of dy over each s_h x s_w block (mul's gradient summed to x's shape, a
reduction in a fixed order: the same bits at any thread count).
"""

import numpy as np

from graphc import dtypes
from graphc.errors import GraphError, ShapeError
from graphc.ops._common import Example, F, as_tensors, build, rand, special
from graphc.registry import AttrSpec, register_op

MODES = ("nearest",)


def _known(d):
    return isinstance(d, int)


def _infer(ctx):
    scales = ctx.attrs["scales"]
    if len(scales) != 2 or any(s < 1 for s in scales):
        ctx.fail(f"scales={list(scales)} must hold 2 ints >= 1 (s_h, s_w)")
    x = ctx.shape(0)
    if len(x) != 4:
        ctx.fail(f"expects x of rank 4 (N, C, H, W), got shape {tuple(x)}")
    return ctx.dtype(0), tuple(x[:2]) + tuple(d * s if _known(d) else None for d, s in zip(x[2:], scales))


def _ref(inputs, attrs):
    sh, sw = attrs["scales"]
    return np.repeat(np.repeat(inputs[0], sh, axis=2), sw, axis=3)


def _composite(ctx):
    x = ctx.x
    sh, sw = ctx.attrs["scales"]
    n, c, h, w = x.shape
    if not all(_known(d) for d in (c, h, w)):
        raise ShapeError(f"upsample_nearest2d: needs known channels and spatial sizes, got {tuple(x.shape)}")
    # a symbolic batch (gc.gradients at build time) is the reshape's -1; a known one is spelt out
    # (-1 cannot stand for the batch of an empty tensor)
    lead = n if _known(n) else -1
    # x · 1 broadcast over the block axes: exact for every value (NaN, ±inf, -0.0), and unlike
    # broadcast_to it needs no concrete batch
    ones = F.constant(np.ones((1, 1, 1, sh, 1, sw), dtypes.as_dtype(x.dtype)), graph=x.graph)
    blocks = F.mul(F.reshape(x, (lead, c, h, 1, w, 1)), ones)
    return F.reshape(blocks, (lead, c, h * sh, w * sw))


# (x shape, scales): size 1, size 0 (batch, channels), odd sizes, unequal and unit factors
_CASES = [((1, 1, 1, 1), (1, 1)), ((1, 1, 1, 1), (2, 2)), ((0, 2, 3, 3), (2, 2)), ((2, 0, 3, 3), (2, 2)),
          ((2, 3, 5, 4), (2, 2)), ((1, 2, 3, 7), (3, 2)), ((2, 1, 4, 3), (1, 3)), ((3, 5, 9, 7), (2, 3)),
          ((1, 3, 72, 73), (2, 1))]


def _examples(rng):
    out = []
    for dt in dtypes.FLOATS:
        for shape, scales in _CASES:
            out.append(Example([rand(rng, shape, dt)], {"scales": scales}, note=dt))
        out.append(Example([special(rng, (2, 3, 4, 5), dt)], {"scales": (2, 3)}, grad=False,
                           note=f"{dt} special values"))
    return out


register_op(
    "upsample_nearest2d",
    doc="Nearest upsampling by integer factors: y[n, c, i, j] = x[n, c, i // s_h, j // s_w], y of shape "
        "(N, C, H·s_h, W·s_w).  Composite: reshape, a broadcast mul by ones, reshape.",
    inputs=[("x", "T")],
    type_vars={"T": dtypes.FLOATS},
    attrs={"scales": AttrSpec("ints", doc="integer factors (s_h, s_w), each >= 1")},
    infer=_infer,
    reference=_ref,
    examples=_examples,
    cost=lambda in_shapes, out_shapes, attrs: 2 * int(np.prod(out_shapes[0])),
    composite=_composite,
    kernels=(),
)


def _factor(v):
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        return int(v)
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return int(v)
    return None


def upsample(x, scale_factor=2, mode="nearest", name=None):
    """Nearest-neighbour upsampling of NCHW ``x`` by integer factors, as
    ``torch.nn.functional.interpolate(x, scale_factor=scale_factor, mode="nearest")``: each pixel
    becomes an s_h x s_w block.  ``scale_factor``: an int (or integral float) or an (h, w) pair;
    ``mode``: only ``"nearest"``.

    >>> import graphc as gc
    >>> with gc.Graph():
    ...     x = gc.placeholder("x", (None, 8, 4, 4))
    ...     gc.upsample(x, 2).shape
    (None, 8, 8, 8)
    """
    (x,) = as_tensors(x)
    if mode not in MODES:
        raise GraphError(f"upsample: mode={mode!r} is not supported (only 'nearest')")
    pair = (scale_factor, scale_factor) if not isinstance(scale_factor, (tuple, list)) else tuple(scale_factor)
    scales = tuple(_factor(v) for v in pair)
    if len(scales) != 2 or any(s is None or s < 1 for s in scales):
        raise GraphError(f"upsample: scale_factor={scale_factor!r} must be an integer >= 1 or a pair of them "
                         f"(non-integer factors are not supported)")
    if len(x.shape) != 4:
        raise ShapeError(f"upsample: x must have rank 4 (N, C, H, W), got shape {tuple(x.shape)}")
    return build("upsample_nearest2d", [x], {"scales": scales}, name=name)
