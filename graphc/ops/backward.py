"""Ops that gradients are built from (dedicated backward ops, faster than compositions)
and the helpers gradient functions use to undo broadcasting.

``sum_to(x, like)`` and ``broadcast_like(x, like)`` read only the *shape* of ``like``, so
gradients work on graphs whose batch dimension is unknown until compile time."""

import numpy as np

from graphc import dtypes
from graphc.ops._common import (  # noqa: F401  (the gradient helpers stay importable from here)
    ODD,
    Example,
    F,
    broadcast_as,
    broadcast_axes,
    build,
    check_broadcastable,
    numel,
    ones_like,
    rand,
    reshape_as,
    special,
    unbroadcast,
    zeros_like,
)
from graphc.ops.nn import _log_softmax_ref
from graphc.ops.reduce import cuda_reduce_workspace
from graphc.ops.shape import SLICE_ATTRS, _slice_examples, _slice_infer, _slice_ref, slice_index
from graphc.registry import AttrSpec, IndexRange, defgrad, register_op
from graphc.shapes import is_static

# -- sum_to / broadcast_like / reshape_like ---------------------------------------------


def _sum_to_ref(inputs, attrs):
    x, like = inputs
    return reduce_to_shape(x, like.shape)


def reduce_to_shape(x, shape):
    """Sum x over the dims numpy broadcasting added or stretched to reach x.shape from shape."""
    lead = x.ndim - len(shape)
    axes = broadcast_axes(shape, x.shape)
    out = np.sum(x, axis=axes, keepdims=True, dtype=x.dtype) if axes else x
    return np.reshape(out[(0,) * lead] if lead else out, shape).copy()


def _sum_to_infer(ctx):
    x, like = ctx.shape(0), ctx.shape(1)
    check_broadcastable(ctx, like, x, verb="sum back from")  # sum_to undoes like → x
    return ctx.dtype(0), tuple(like)


def _like_examples(pairs):
    def examples(rng):
        out = []
        for dt in dtypes.FLOATS:
            for sx, sl in pairs:
                out.append(Example([rand(rng, sx, dt), rand(rng, sl, dt)], note=dt))
            sx, sl = max(pairs, key=lambda p: int(np.prod(p[0])))  # the largest x holds every special value
            out.append(Example([special(rng, sx, dt, extremes=False), rand(rng, sl, dt)], grad=False,
                               note=f"{dt} special values"))
        return out
    return examples


def _sum_to_workspace(ctx):
    """CUDA only: the reduction's two-pass partials (graphc.ops.reduce.cuda_reduce_workspace)."""
    if ctx.target != "cuda":
        return []
    x, like = ctx.shape(0), ctx.shape(1)
    lead = len(x) - len(like)
    reduced = [i < lead or like[i - lead] != x[i] for i in range(len(x))]
    return cuda_reduce_workspace(x, reduced)


SUM_TO_PAIRS = [((), ()), ((3,), ()), ((5, 3), (3,)), ((5, 3), (5, 1)), ((4, 5, 3), (5, 1)), ((0, 3), (3,)),
                ((2, 0), (1, 0)), ((1,), (1,)), (ODD, (73, 1))]

register_op(
    "sum_to",
    doc="y = x summed over the dims that broadcasting stretched, so y.shape == like.shape "
        "(the adjoint of broadcast_like).  Only the shape of 'like' is read.",
    inputs=[("x", dtypes.NUMERIC), ("like", dtypes.ALL)],
    infer=_sum_to_infer,
    reference=_sum_to_ref,
    examples=_like_examples(SUM_TO_PAIRS),
    workspace=_sum_to_workspace,
)


def _broadcast_like_infer(ctx):
    x, like = ctx.shape(0), ctx.shape(1)
    check_broadcastable(ctx, x, like)
    return ctx.dtype(0), tuple(like)


register_op(
    "broadcast_like",
    doc="y = x broadcast (numpy rules) to the shape of 'like'; only that shape is read.",
    inputs=[("x", dtypes.ALL), ("like", dtypes.ALL)],
    infer=_broadcast_like_infer,
    reference=lambda inputs, attrs: np.broadcast_to(inputs[0], inputs[1].shape).copy(),
    examples=_like_examples([(sl, sx) for sx, sl in SUM_TO_PAIRS]),
)


def _reshape_like_infer(ctx):
    a, b = numel(ctx.shape(0)), numel(ctx.shape(1))
    if a is not None and b is not None and a != b:
        ctx.fail(f"cannot reshape {a} elements like a tensor of {b}")
    return ctx.dtype(0), tuple(ctx.shape(1))


register_op(
    "reshape_like",
    doc="y = x reshaped to the shape of 'like' (same element count).  A view.",
    inputs=[("x", dtypes.ALL), ("like", dtypes.ALL)],
    infer=_reshape_like_infer,
    reference=lambda inputs, attrs: np.reshape(inputs[0], inputs[1].shape).copy(),
    examples=_like_examples([((6,), (2, 3)), ((2, 3), (3, 2)), ((0, 2), (2, 0)), ((1,), ()), (ODD, (73, 72, 74))]),
    view=True,
)


def sum_to(x, like, name=None):
    return build("sum_to", [x, like], name=name)


def broadcast_like(x, like, name=None):
    return build("broadcast_like", [x, like], name=name)


def reshape_like(x, like, name=None):
    return build("reshape_like", [x, like], name=name)


@defgrad("sum_to")
def _grad_sum_to(ctx):
    return [broadcast_as(ctx.g, ctx.x), None]


@defgrad("broadcast_like")
def _grad_broadcast_like(ctx):
    return [unbroadcast(ctx.g, ctx.x), None]


@defgrad("reshape_like")
def _grad_reshape_like(ctx):
    return [reshape_as(ctx.g, ctx.x), None]


# -- relu_grad ---------------------------------------------------------------------------------

def _relu_grad_infer(ctx):
    if ctx.shape(0) != ctx.shape(1):
        ctx.fail("expects the gradient and the input of one shape")
    return ctx.dtype(0), ctx.shape(0)


def _relu_grad_examples(rng):
    out = []
    for dt in dtypes.FLOATS:
        for s in [(), (1,), (0,), (5, 3), ODD]:
            x = rand(rng, s, dt)
            x = np.where(np.abs(x) < 0.05, np.asarray(0.5, dt), x).astype(dt)
            out.append(Example([rand(rng, s, dt), x], note=dt))
        out.append(Example([special(rng, (4, 6), dt), special(rng, (4, 6), dt)], grad=False,
                           note=f"{dt} special values"))
    return out


register_op(
    "relu_grad",
    doc="dx = g where x > 0 else 0: the gradient of relu, in one pass.",
    inputs=[("g", "T"), ("x", "T")],
    type_vars={"T": dtypes.NUMERIC},
    infer=_relu_grad_infer,
    reference=lambda inputs, attrs: np.where(inputs[1] > 0, inputs[0], np.zeros((), inputs[0].dtype)),
    examples=_relu_grad_examples,
    elementwise=True,
    fusible=True,
)


@defgrad("relu_grad")
def _grad_relu_grad(ctx):
    # d/dg = relu_grad(G, x); d/dx = 0 almost everywhere.
    return [relu_grad(ctx.g, ctx.inputs[1]), None]


def relu_grad(g, x, name=None):
    return build("relu_grad", [g, x], name=name)


# -- softmax_cross_entropy_grad -----------------------------------------------------------------

def _sce_grad_infer(ctx):
    logits, labels = ctx.shape(0), ctx.shape(1)
    if len(logits) < 1 or len(labels) != len(logits) - 1 or any(
            isinstance(a, int) and isinstance(b, int) and a != b for a, b in zip(logits[:-1], labels)):
        ctx.fail("expects logits of shape (..., C) and labels of their leading shape (...)")
    reduction = ctx.attrs["reduction"]
    want = () if reduction != "none" else tuple(labels)
    g = ctx.shape(2)
    if len(g) != len(want) or any(isinstance(a, int) and isinstance(b, int) and a != b for a, b in zip(g, want)):
        ctx.fail(f"expects an upstream gradient of shape {want}")
    return ctx.dtype(0), ctx.shape(0)


def _sce_grad_ref(inputs, attrs):
    logits, labels, g = inputs
    p = np.exp(_log_softmax_ref([logits], {"axis": -1})).astype(logits.dtype)
    onehot = (labels[..., None] == np.arange(logits.shape[-1])).astype(logits.dtype)
    d = p - onehot
    if attrs["reduction"] == "none":
        return (d * g[..., None]).astype(logits.dtype)
    scale = g / logits.dtype.type(max(labels.size, 1)) if attrs["reduction"] == "mean" else g
    return (d * scale).astype(logits.dtype)


def _sce_grad_examples(rng):
    out = []
    for dt in dtypes.FLOATS:
        for lead, c in [((1,), 1), ((5,), 3), ((0,), 4), ((2, 3), 4), ((73,), 74)]:
            for reduction in ("mean", "sum", "none"):
                gshape = lead if reduction == "none" else ()
                out.append(Example([rand(rng, lead + (c,), dt), rng.integers(0, c, size=lead).astype("int64"),
                                    rand(rng, gshape, dt)], {"reduction": reduction}, note=dt))
        out.append(Example([special(rng, (6, 5), dt, extremes=False), rng.integers(0, 5, size=6).astype("int64"),
                            special(rng, (6,), dt, extremes=False)], {"reduction": "none"}, grad=False,
                           note=f"{dt} special values"))
    return out


register_op(
    "softmax_cross_entropy_grad",
    doc="d loss / d logits of softmax_cross_entropy: (softmax(z) - one_hot(label)) · g, divided by the "
        "number of labels for reduction 'mean', with g broadcast per row for 'none'.",
    inputs=[("logits", "T"), ("labels", dtypes.INTS), ("g", "T")],
    type_vars={"T": dtypes.FLOATS},
    attrs={"reduction": AttrSpec("str", default="mean", doc="'mean', 'sum' or 'none', as in the forward op")},
    index_inputs={1: IndexRange(input=0, axis=-1)},
    infer=_sce_grad_infer,
    reference=_sce_grad_ref,
    examples=_sce_grad_examples,
)


@defgrad("softmax_cross_entropy_grad")
def _grad_sce_grad(ctx):
    logits, labels, g = ctx.inputs
    G = ctx.g
    reduction = ctx.attrs["reduction"]
    p = F.softmax(logits, axis=-1)
    d = F.sub(p, F.one_hot(labels, logits.shape[-1], dtype=logits.dtype)) if isinstance(
        logits.shape[-1], int) else None
    if reduction == "none":
        scale = F.expand_dims(g, -1)
    elif reduction == "mean":
        scale = F.div(g, _count(labels, logits.dtype))
    else:
        scale = g
    # y = d * scale ; dy/dlogits · G = softmax-Jacobian applied to (G * scale)
    gs = F.mul(G, scale)
    glogits = F.mul(p, F.sub(gs, F.sum(F.mul(gs, p), axis=-1, keepdims=True)))
    if d is None:
        return [glogits, None, None]
    dg = F.sum(F.mul(d, G), axis=-1)
    if reduction == "mean":
        dg = F.div(F.sum(dg), _count(labels, logits.dtype))
    elif reduction == "sum":
        dg = F.sum(dg)
    return [glogits, None, dg]


def _count(labels, dtype):
    """The number of labels as a scalar of dtype (a constant when the shape is static)."""
    if is_static(labels.shape):
        return F.constant(np.asarray(max(int(np.prod(labels.shape)), 1), dtype), graph=labels.graph)
    return F.maximum(F.sum(ones_like(F.cast(labels, dtype))),
                     F.constant(np.asarray(1, dtype), graph=labels.graph))


def softmax_cross_entropy_grad(logits, labels, g, reduction="mean", name=None):
    return build("softmax_cross_entropy_grad", [logits, labels, g], {"reduction": reduction}, name=name)


# -- slice_grad ------------------------------------------------------------------------------------

def _slice_grad_infer(ctx):
    sub = type(ctx)(ctx.opdef, ctx.node, [ctx.inputs[1]])
    _, sliced = _slice_infer(sub)
    g = ctx.shape(0)
    if len(g) != len(sliced) or any(isinstance(a, int) and isinstance(b, int) and a != b for a, b in zip(g, sliced)):
        ctx.fail(f"expects a gradient of the slice's shape {sliced}")
    return ctx.dtype(1), ctx.shape(1)


def _slice_grad_ref(inputs, attrs):
    g, x = inputs
    out = np.zeros_like(x)
    out[slice_index(x.ndim, attrs)] = g
    return out


def _slice_grad_examples(rng):
    out = []
    for ex in _slice_examples(rng):
        x = ex.inputs[0]
        if x.dtype.name not in dtypes.FLOATS:
            continue
        g = rand(rng, _slice_ref([x], ex.attrs).shape, x.dtype.name)
        out.append(Example([g, x], ex.attrs, note=ex.note))
    return out


register_op(
    "slice_grad",
    doc="The adjoint of slice: zeros of x's shape with g written at x[starts:ends:steps] along axes.  "
        "Only the shape of x is read.",
    inputs=[("g", "T"), ("x", "T")],
    type_vars={"T": dtypes.ALL},
    attrs=SLICE_ATTRS,
    infer=_slice_grad_infer,
    reference=_slice_grad_ref,
    examples=_slice_grad_examples,
)


@defgrad("slice_grad")
def _grad_slice_grad(ctx):
    a = ctx.attrs
    return [F.slice(ctx.g, a["starts"], a["ends"], a["axes"], a["steps"]), None]


def slice_grad(g, x, attrs, name=None):
    return build("slice_grad", [g, x], dict(attrs), name=name)
