"""Neural-network ops: softmax, log_softmax, softmax_cross_entropy, one_hot."""

import numpy as np

from graphc import dtypes
from graphc.ops._common import ODD, Example, F, as_tensors, build, rand, special
from graphc.registry import AttrSpec, IndexRange, defgrad, register_op


def _softmax_infer(ctx):
    if len(ctx.shape(0)) == 0:
        ctx.fail("expects an input of rank >= 1")
    ctx.normalize_axis(ctx.attrs["axis"], len(ctx.shape(0)))
    return ctx.dtype(0), ctx.shape(0)


def _log_softmax_ref(inputs, attrs):
    x = inputs[0]
    axis = attrs["axis"]
    if x.size == 0:
        return x.copy()
    m = np.max(x, axis=axis, keepdims=True)
    shifted = x - np.where(np.isfinite(m), m, 0)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        out = shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))
    # A row holding NaN or +inf is NaN throughout, as ONNX's exp(x - max) / Σ defines it.
    return np.where(np.isnan(m) | (m == np.inf), np.nan, out).astype(x.dtype)


def _softmax_ref(inputs, attrs):
    return np.exp(_log_softmax_ref(inputs, attrs)).astype(inputs[0].dtype)


def _softmax_examples(rng):
    out = []
    for dt in dtypes.FLOATS:
        for shape, axis in [((1,), -1), ((7,), 0), ((5, 3), -1), ((5, 3), 0), ((4, 3, 5), 1), ((0, 4), -1),
                            ((3, 0), 0), (ODD, -1), (ODD, 1)]:
            out.append(Example([rand(rng, shape, dt, -4, 4)], {"axis": axis}, note=dt))
        x = rand(rng, (3, 4), dt)
        x[0, 0] = 80.0 if dt == "float32" else 700.0  # overflow of a naive exp
        out.append(Example([x], {"axis": -1}, note="large logits"))
        out.append(Example([special(rng, (6, 5), dt, extremes=False)], {"axis": -1}, grad=False,
                           note=f"{dt} special values"))
    return out


register_op(
    "softmax",
    doc="y_i = e^{x_i - m} / Σ_j e^{x_j - m} along 'axis', m = max_j x_j (stable for large x).  "
        "A row holding NaN or +inf gives NaN throughout (ONNX).",
    inputs=[("x", dtypes.FLOATS)],
    attrs={"axis": AttrSpec("int", default=-1, doc="the axis normalised over")},
    infer=_softmax_infer,
    reference=_softmax_ref,
    examples=_softmax_examples,
)

register_op(
    "log_softmax",
    doc="y_i = x_i - m - log Σ_j e^{x_j - m} along 'axis', m = max_j x_j.",
    inputs=[("x", dtypes.FLOATS)],
    attrs={"axis": AttrSpec("int", default=-1, doc="the axis normalised over")},
    infer=_softmax_infer,
    reference=_log_softmax_ref,
    examples=_softmax_examples,
)


def softmax(x, axis=-1, name=None):
    """Softmax along ``axis``."""
    return build("softmax", as_tensors(x), {"axis": axis}, name=name)


def log_softmax(x, axis=-1, name=None):
    """Log of softmax along ``axis``, computed stably."""
    return build("log_softmax", as_tensors(x), {"axis": axis}, name=name)


# -- softmax_cross_entropy ------------------------------------------------------------------

REDUCTIONS = ("mean", "sum", "none")


def _sce_infer(ctx):
    logits, labels = ctx.shape(0), ctx.shape(1)
    if len(logits) < 1 or len(labels) != len(logits) - 1:
        ctx.fail("expects logits of shape (..., C) and integer labels of shape (...)")
    for i, (a, b) in enumerate(zip(logits[:-1], labels)):
        if isinstance(a, int) and isinstance(b, int) and a != b:
            ctx.fail(f"logits dim {i} is {a} but labels dim {i} is {b}")
    if logits[-1] == 0:
        ctx.fail("logits have 0 classes")
    reduction = ctx.attrs["reduction"]
    if reduction not in REDUCTIONS:
        ctx.fail(f"reduction={reduction!r}; expected one of {REDUCTIONS}")
    shape = () if reduction != "none" else tuple(labels)
    return ctx.dtype(0), shape


def _sce_ref(inputs, attrs):
    logits, labels = inputs
    c = logits.shape[-1]
    if labels.size and (labels.min() < 0 or labels.max() >= c):
        bad = labels[(labels < 0) | (labels >= c)].flat[0]
        raise ValueError(f"softmax_cross_entropy: label {bad} is outside [0, {c})")
    logp = _log_softmax_ref([logits], {"axis": -1})
    picked = np.take_along_axis(logp, labels[..., None].astype(np.int64), axis=-1)[..., 0]
    loss = (-picked).astype(logits.dtype)
    if attrs["reduction"] == "sum":
        return np.sum(loss, dtype=logits.dtype)
    if attrs["reduction"] == "mean":
        if loss.size == 0:
            return np.asarray(np.nan, logits.dtype)
        return np.asarray(np.sum(loss, dtype=logits.dtype) / logits.dtype.type(loss.size), logits.dtype)
    return loss


def _sce_examples(rng):
    out = []
    for dt in dtypes.FLOATS:
        for ldt in dtypes.INTS:
            for lead, c in [((1,), 1), ((5,), 3), ((7,), 10), ((0,), 4), ((2, 3), 4), ((73,), 74)]:
                for reduction in REDUCTIONS:
                    logits = rand(rng, lead + (c,), dt, -3, 3)
                    labels = rng.integers(0, c, size=lead).astype(ldt)
                    out.append(Example([logits, labels], {"reduction": reduction}, note=f"{dt} {ldt}"))
        logits = special(rng, (6, 5), dt, extremes=False)
        out.append(Example([logits, rng.integers(0, 5, size=6).astype("int64")], {"reduction": "none"}, grad=False,
                           note=f"{dt} special values"))
    return out


def _sce_workspace(ctx):
    """CUDA only (runtime/cuda/nn.cu): one float64 loss per row for 'mean'/'sum', summed in a fixed
    order by a second kernel.  The CPU kernel needs none."""
    if ctx.target != "cuda" or ctx.attrs.get("reduction", "mean") == "none":
        return []
    rows = int(np.prod(ctx.shape(0)[:-1], dtype=np.int64))
    return [("float64", (rows,))] if rows > 0 else []


register_op(
    "softmax_cross_entropy",
    doc="Fused, stable cross-entropy with integer labels: loss_i = log Σ_c e^{z_ic} - z_i,label_i over "
        "logits z (..., C) and labels (...); 'reduction' mean (default), sum or none.  A label outside "
        "[0, C) is an error.  The gradient w.r.t. logits is softmax(z) - one_hot(label), scaled by the "
        "reduction; labels get none.",
    inputs=[("logits", dtypes.FLOATS), ("labels", dtypes.INTS)],
    attrs={"reduction": AttrSpec("str", default="mean", doc="'mean' (default), 'sum' or 'none'")},
    index_inputs={1: IndexRange(input=0, axis=-1)},
    infer=_sce_infer,
    reference=_sce_ref,
    examples=_sce_examples,
    workspace=_sce_workspace,
)


def softmax_cross_entropy(logits, labels, reduction="mean", name=None):
    """Cross-entropy between softmax(logits) and integer labels."""
    return build("softmax_cross_entropy", as_tensors(logits, labels), {"reduction": reduction}, name=name)


# -- one_hot ---------------------------------------------------------------------------------

def _one_hot_infer(ctx):
    if ctx.attrs["depth"] < 0:
        ctx.fail(f"depth={ctx.attrs['depth']} is negative")
    return ctx.attrs["dtype"], tuple(ctx.shape(0)) + (ctx.attrs["depth"],)


def _one_hot_ref(inputs, attrs):
    idx = inputs[0]
    depth = attrs["depth"]
    return (idx[..., None] == np.arange(depth)).astype(attrs["dtype"])


def _one_hot_examples(rng):
    out = []
    for idt in dtypes.INTS:
        for dt in dtypes.ALL:
            for shape, depth in [((), 3), ((5,), 4), ((2, 3), 5), ((0,), 3), ((4,), 0), ((73,), 74)]:
                idx = rng.integers(-1, depth + 2, size=shape).astype(idt)  # includes out-of-range
                out.append(Example([idx], {"depth": depth, "dtype": dt}, note=f"{idt}->{dt}"))
    return out


register_op(
    "one_hot",
    doc="y[..., k] = 1 if indices[...] == k else 0, for k < 'depth'; an index outside [0, depth) "
        "gives a row of zeros (TensorFlow's rule).  Output dtype 'dtype' (float32 by default).",
    inputs=[("indices", dtypes.INTS)],
    attrs={"depth": AttrSpec("int", doc="the number of classes"),
           "dtype": AttrSpec("dtype", default="float32", doc="the output dtype")},
    index_inputs={0: IndexRange(attr="depth")},
    infer=_one_hot_infer,
    reference=_one_hot_ref,
    examples=_one_hot_examples,
    differentiable=False,
)


def one_hot(indices, depth, dtype="float32", name=None):
    """One-hot encoding of integer ``indices`` with ``depth`` classes."""
    return build("one_hot", as_tensors(indices), {"depth": int(depth), "dtype": dtype}, name=name)


# -- gradients ------------------------------------------------------------------------------------

@defgrad("softmax")
def _grad_softmax(ctx):
    y, g = ctx.y, ctx.g
    axis = ctx.attrs["axis"]
    return [F.mul(y, F.sub(g, F.sum(F.mul(g, y), axis=axis, keepdims=True)))]


@defgrad("log_softmax")
def _grad_log_softmax(ctx):
    y, g = ctx.y, ctx.g
    axis = ctx.attrs["axis"]
    return [F.sub(g, F.mul(F.exp(y), F.sum(g, axis=axis, keepdims=True)))]


@defgrad("softmax_cross_entropy")
def _grad_sce(ctx):
    logits, labels = ctx.inputs
    return [F.softmax_cross_entropy_grad(logits, labels, ctx.g, ctx.attrs["reduction"]), None]


# -- losses built from registry ops ------------------------------------------------------------

def _reduce_loss(loss, reduction, what):
    if reduction == "mean":
        return F.mean(loss)
    if reduction == "sum":
        return F.sum(loss)
    if reduction == "none":
        return loss
    raise ValueError(f"{what}: reduction={reduction!r}; expected one of {REDUCTIONS}")


def mean_squared_error(predictions, targets, reduction="mean"):
    """(predictions - targets)², reduced by 'mean' (default), 'sum' or 'none'."""
    d = F.sub(predictions, targets)
    return _reduce_loss(F.mul(d, d), reduction, "mean_squared_error")


def binary_cross_entropy_with_logits(logits, targets, reduction="mean"):
    """-[y·log σ(z) + (1-y)·log(1-σ(z))], computed stably as max(z, 0) - z·y + log(1 + e^-|z|)."""
    z, y = as_tensors(logits, targets)
    loss = F.add(F.sub(F.relu(z), F.mul(z, y)), F.log(F.add(F.exp(F.neg(F.abs(z))), 1.0)))
    return _reduce_loss(loss, reduction, "binary_cross_entropy_with_logits")
