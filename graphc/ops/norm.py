"""Batch normalisation over axis 1 (channels) of (N, C), (N, C, L) or NCHW input, with
PyTorch's semantics (``torch.nn.functional.batch_norm``).

``batch_norm`` as declared is the inference form: the running statistics normalise,
y = (x - running_mean) / √(running_var + eps) · weight + bias, a composite of elementwise
ops (x · scale + shift, scale and shift per channel).  In a training plan the select_mode
pass (graphc/compiler/select_mode.py) replaces it by

- ``batch_norm_train(x, weight, bias) -> (y, mean, var)``: the batch statistics over every
  axis but 1 (``var`` biased, as the normalisation uses), one kernel;
- ``batch_norm_update_stats(running_mean, running_var, mean, var)``, in place:
  running ← (1 - momentum) · running + momentum · batch, with the unbiased batch variance
  var · n / (n - 1) for running_var (n = elements per channel), as PyTorch.

The gradient of batch_norm_train is ``batch_norm_train_grad`` (one kernel); that op's own
gradient differentiates its composite definition (the same formula from elementwise and
reduction ops), so second order works too.  The references and the kernels alike accumulate
the per-channel sums in float64 and compute each element in the input dtype from per-channel
coefficients rounded once (as PyTorch's CPU kernels), in one fixed order of operations."""

import numpy as np

from graphc import dtypes
from graphc.errors import GraphError
from graphc.ops._common import Example, F, build, numel, rand, special
from graphc.registry import AttrSpec, defgrad, register_op

EPS_ATTR = AttrSpec("float", default=1e-5, doc="added to the variance before the square root")
# absent from a .pb means None (the cumulative average); the builder's default is 0.1
MOMENTUM_ATTR = AttrSpec("float", default=None, optional=True,
                         doc="weight of the batch statistic in the running update, in [0, 1]; None: the "
                             "cumulative average of the batches seen (counted in <scope>/num_batches_tracked)")
_FLOAT_T = {"T": dtypes.FLOATS}


def _channel_shape(x_shape):
    """The shape a (C,) vector broadcasts as against x: (C, 1, ..., 1)."""
    return (x_shape[1],) + (1,) * (len(x_shape) - 2)


def _axes(rank):
    return (0,) + tuple(range(2, rank))


def _check_x(ctx, i=0):
    shape = ctx.shape(i)
    if len(shape) < 2:
        ctx.fail(f"expects x of rank >= 2 (N, C, ...) normalised over every axis but 1, got shape {tuple(shape)}")
    return shape[1]


def _check_channels(ctx, c, indices, what):
    for i, name in zip(indices, what):
        s = tuple(ctx.shape(i))
        if len(s) != 1 or (c is not None and s[0] is not None and s[0] != c):
            ctx.fail(f"expects {name} (input {i}) of shape ({c},) (x's channels), got {s}")


def _check_eps(ctx):
    if not ctx.attrs["eps"] >= 0:
        ctx.fail(f"expects eps >= 0, got {ctx.attrs['eps']}")


# -- references (float64, rounded once) ------------------------------------------------------------

def _stats(x):
    """(mean, biased var) over every axis but 1, in float64; NaN for an empty channel."""
    xd = x.astype(np.float64)
    axes = _axes(x.ndim)
    n = numel(x.shape) // x.shape[1] if x.shape[1] else 0
    mean = xd.sum(axis=axes) / n
    cs = _channel_shape(x.shape)
    var = ((xd - mean.reshape(cs)) ** 2).sum(axis=axes) / n
    return mean, var, n


def _batch_norm_ref(inputs, attrs):
    x, rm, rv, w, b = inputs
    cs = _channel_shape(x.shape)
    scale = w.astype(np.float64) / np.sqrt(rv.astype(np.float64) + attrs["eps"])
    shift = b.astype(np.float64) - rm.astype(np.float64) * scale
    return (x.astype(np.float64) * scale.reshape(cs) + shift.reshape(cs)).astype(x.dtype)


def _train_ref(inputs, attrs):
    x, w, b = inputs
    mean, var, _ = _stats(x)
    cs = _channel_shape(x.shape)
    scale = 1.0 / np.sqrt(var + attrs["eps"]) * w.astype(np.float64)
    # per element in the input dtype, from per-channel coefficients rounded once
    y = (x - mean.astype(x.dtype).reshape(cs)) * scale.astype(x.dtype).reshape(cs) + b.reshape(cs)
    return y, mean.astype(x.dtype), var.astype(x.dtype)


def _train_grad_ref(inputs, attrs):
    dy64, x64, w64, mean64, var64, dmean64, dvar64 = (a.astype(np.float64) for a in inputs)
    dy, x, _, mean = inputs[:4]
    t = x.dtype
    axes, cs = _axes(x.ndim), _channel_shape(x.shape)
    n = numel(x.shape) // x.shape[1] if x.shape[1] else 0
    invstd = 1.0 / np.sqrt(var64 + attrs["eps"])
    db = dy64.sum(axis=axes)
    # an empty batch: Σ = 0 (its var is NaN)
    dw = (dy64 * (x64 - mean64.reshape(cs))).sum(axis=axes) * invstd if n else np.zeros_like(invstd)
    # per element in the input dtype: a·((dy - k1) - xc·k2) + k3 + xc·k4, xc = x - mean
    a, k1, k2 = w64 * invstd, db / n, invstd * dw / n
    k3, k4 = dmean64 / n, 2.0 * dvar64 / n
    a, k1, k2, k3, k4 = (v.astype(t).reshape(cs) for v in (a, k1, k2, k3, k4))
    xc = x - mean.reshape(cs)
    dx = a * ((dy - k1) - xc * k2) + k3 + xc * k4
    return dx.astype(t), dw.astype(t), db.astype(t)


def _update_ref(inputs, attrs):
    rm, rv, mean, var = (a.astype(np.float64) for a in inputs)
    m, n = attrs["momentum"], attrs["count"]
    new_mean = (1.0 - m) * rm + m * mean
    new_var = (1.0 - m) * rv + m * (var * n / (n - 1))
    return new_mean.astype(inputs[0].dtype), new_var.astype(inputs[0].dtype)


# -- inference ---------------------------------------------------------------------------------------

def _batch_norm_infer(ctx):
    c = _check_x(ctx)
    _check_channels(ctx, c, (1, 2, 3, 4), ("running_mean", "running_var", "weight", "bias"))
    _check_eps(ctx)
    m = ctx.attrs["momentum"]
    if m is not None and not 0.0 <= m <= 1.0:
        ctx.fail(f"expects momentum in [0, 1] or None, got {m}")
    return ctx.dtype(0), ctx.shape(0)


def _train_infer(ctx):
    c = _check_x(ctx)
    _check_channels(ctx, c, (1, 2), ("weight", "bias"))
    _check_eps(ctx)
    t = ctx.dtype(0)
    return [(t, ctx.shape(0)), (t, (c,)), (t, (c,))]


def _train_grad_infer(ctx):
    c = _check_x(ctx, 1)
    if len(ctx.shape(0)) != len(ctx.shape(1)) or any(
            a is not None and b is not None and a != b for a, b in zip(ctx.shape(0), ctx.shape(1))):
        ctx.fail(f"expects dy of x's shape {tuple(ctx.shape(1))}, got {tuple(ctx.shape(0))}")
    _check_channels(ctx, c, (2, 3, 4, 5, 6), ("weight", "mean", "var", "dmean", "dvar"))
    _check_eps(ctx)
    t = ctx.dtype(1)
    return [(t, ctx.shape(1)), (t, (c,)), (t, (c,))]


def _update_infer(ctx):
    c = ctx.shape(0)
    if len(c) != 1:
        ctx.fail(f"expects running_mean of rank 1 (C,), got shape {tuple(c)}")
    _check_channels(ctx, c[0], (1, 2, 3), ("running_var", "mean", "var"))
    if not 0.0 <= ctx.attrs["momentum"] <= 1.0:
        ctx.fail(f"expects momentum in [0, 1], got {ctx.attrs['momentum']}")
    if ctx.attrs["count"] < 2:
        ctx.fail(f"expects more than 1 value per channel in training (the unbiased variance divides by n - 1), "
                 f"got count={ctx.attrs['count']}")
    return [(ctx.dtype(0), c), (ctx.dtype(0), c)]


# -- examples ----------------------------------------------------------------------------------------

X_SHAPES = [(1, 1, 1, 1), (0, 3, 2, 2), (2, 0, 3, 3), (2, 3, 4, 5), (3, 5), (4, 3, 7), (1, 2, 1, 1), (3, 1, 5, 7),
            (5, 4, 9, 11), (2, 3, 73, 74)]


def _pos(rng, shape, dt):
    return rng.uniform(0.5, 2.0, size=shape).astype(dt)


def _inference_examples(rng):
    out = []
    for dt in dtypes.FLOATS:
        for i, shape in enumerate(X_SHAPES):
            c = (shape[1],)
            attrs = {"eps": [1e-5, 1e-3][i % 2], "momentum": [0.1, None][i % 2]}  # momentum: training only
            out.append(Example([rand(rng, shape, dt), rand(rng, c, dt), _pos(rng, c, dt), rand(rng, c, dt),
                                rand(rng, c, dt)], attrs, note=dt))
        shape = (2, 3, 4, 5)
        out.append(Example([special(rng, shape, dt), rand(rng, (3,), dt), _pos(rng, (3,), dt),
                            rand(rng, (3,), dt), rand(rng, (3,), dt)], {"eps": 1e-5, "momentum": 0.1}, grad=False,
                           note=f"{dt} special values"))
        # a zero running variance with eps = 0 divides by zero: ±inf scale, NaN where x equals the mean
        out.append(Example([rand(rng, shape, dt), rand(rng, (3,), dt), np.zeros(3, dt), rand(rng, (3,), dt),
                            rand(rng, (3,), dt)], {"eps": 0.0, "momentum": 0.1}, grad=False,
                           note=f"{dt} zero variance"))
    return out


def _train_examples(rng):
    out = []
    for dt in dtypes.FLOATS:
        for i, shape in enumerate(X_SHAPES):
            c = (shape[1],)
            out.append(Example([rand(rng, shape, dt), rand(rng, c, dt), rand(rng, c, dt)],
                               {"eps": [1e-5, 1e-3][i % 2]}, note=dt))
        # one channel holds NaN/inf: its statistics (and only its outputs) are NaN
        out.append(Example([special(rng, (2, 3, 4, 5), dt), rand(rng, (3,), dt), rand(rng, (3,), dt)],
                           {"eps": 1e-5}, grad=False, note=f"{dt} special values"))
        # a constant channel: variance 0, y = bias
        out.append(Example([np.full((3, 2, 3, 3), 1.5, dt), rand(rng, (2,), dt), rand(rng, (2,), dt)],
                           {"eps": 1e-5}, grad=False, note=f"{dt} constant"))
    return out


def _train_grad_examples(rng):
    out = []
    for ex in _train_examples(rng):
        x, w, _ = ex.inputs
        dt = x.dtype.name
        c = (x.shape[1],)
        with np.errstate(all="ignore"):  # an empty batch's statistics are NaN
            mean, var, _ = _stats(x)
        if ex.grad:
            # finite statistics (an empty batch's are NaN), the variance away from 0 so finite
            # differences in var stay smooth
            mean, var = np.nan_to_num(mean), np.maximum(np.nan_to_num(var, nan=1.0), 0.1)
        dy = rand(rng, x.shape, dt) if ex.grad else special(rng, x.shape, dt, extremes=False)
        out.append(Example([dy, x, w, mean.astype(dt), var.astype(dt), rand(rng, c, dt), rand(rng, c, dt)],
                           ex.attrs, grad=ex.grad, note=ex.note))
    return out


def _update_examples(rng):
    out = []
    for dt in dtypes.FLOATS:
        for i, c in enumerate([(0,), (1,), (3,), (7,), (73,)]):
            out.append(Example([rand(rng, c, dt), _pos(rng, c, dt), rand(rng, c, dt), _pos(rng, c, dt)],
                               {"momentum": [0.1, 0.0, 1.0, 0.3, 0.01][i], "count": [2, 5, 17, 3, 1000][i]}, note=dt))
        out.append(Example([rand(rng, (12,), dt), _pos(rng, (12,), dt), special(rng, (12,), dt),
                            special(rng, (12,), dt)], {"momentum": 0.1, "count": 8}, note=f"{dt} special values"))
    return out


# -- declarations ------------------------------------------------------------------------------------

def _inference_composite(ctx):
    x, rm, rv, w, b = ctx.inputs
    cs = _channel_shape(x.shape)
    eps = F.constant(np.asarray(ctx.attrs["eps"], x.dtype), graph=x.graph)
    scale = F.div(w, F.sqrt(F.add(rv, eps)))
    shift = F.sub(b, F.mul(rm, scale))
    return F.add(F.mul(x, F.reshape(scale, cs)), F.reshape(shift, cs))


def batches_tracked_name(running_mean_name):
    """The counter of momentum=None batch norm: ``<scope>/num_batches_tracked`` beside a
    ``<scope>/running_mean`` (PyTorch's state_dict key with '.' → '/'), else
    ``<running_mean>/num_batches_tracked``."""
    if running_mean_name.endswith("running_mean"):
        return running_mean_name[:-len("running_mean")] + "num_batches_tracked"
    return running_mean_name + "/num_batches_tracked"


def _train_form(ctx):
    x, rm, rv, w, b = ctx.inputs
    for i, what in ((1, "running_mean"), (2, "running_var")):
        ctx.require_variable(i, what)
    y, mean, var = batch_norm_train(x, w, b, eps=ctx.attrs["eps"], name="train")
    count = numel(x.shape) // x.shape[1] if x.shape[1] else 0
    if ctx.attrs["momentum"] is not None:
        build("batch_norm_update_stats", [rm, rv, mean, var], {"momentum": ctx.attrs["momentum"], "count": count},
              name="update_stats")
        return [y]
    # momentum=None (PyTorch): t ← t + 1, running ← (1 - 1/t)·running + (1/t)·batch, from in-place assigns
    if count < 2:
        raise GraphError(f"expects more than 1 value per channel in training (the unbiased variance divides by "
                         f"n - 1), got count={count}")
    t = ctx.state(batches_tracked_name(ctx.input_name(1)), np.zeros((), np.int64))
    t1 = F.add(t, F.constant(np.ones((), np.int64), graph=t.graph), name="count_next")
    build("assign", [t, t1], name="count_update")
    dt = x.dtype

    def const(v):
        return F.constant(np.asarray(v, dt), graph=x.graph)

    f = F.div(const(1.0), F.cast(t1, dt))
    keep = F.sub(const(1.0), f)
    unbiased = F.mul(var, const(count / (count - 1)))
    build("assign", [rm, F.add(F.mul(rm, keep), F.mul(mean, f))], name="update_mean")
    build("assign", [rv, F.add(F.mul(rv, keep), F.mul(unbiased, f))], name="update_var")
    return [y]


register_op(
    "batch_norm",
    doc="Batch norm, inference form: y = (x - running_mean) / √(running_var + eps) · weight + bias per channel "
        "(axis 1).  In a training plan select_mode makes it batch_norm_train + batch_norm_update_stats.",
    inputs=[("x", "T"), ("running_mean", "T"), ("running_var", "T"), ("weight", "T"), ("bias", "T")],
    type_vars=_FLOAT_T,
    attrs={"momentum": MOMENTUM_ATTR, "eps": EPS_ATTR},
    infer=_batch_norm_infer,
    reference=_batch_norm_ref,
    examples=_inference_examples,
    composite=_inference_composite,
    kernels=(),
    train_form=_train_form,
)

register_op(
    "batch_norm_train",
    doc="Batch norm, training form: mean, var = the mean and biased variance of x over every axis but 1; "
        "y = (x - mean) / √(var + eps) · weight + bias.  Outputs (y, mean, var).",
    inputs=[("x", "T"), ("weight", "T"), ("bias", "T")],
    type_vars=_FLOAT_T,
    attrs={"eps": EPS_ATTR},
    infer=_train_infer,
    reference=_train_ref,
    examples=_train_examples,
)


def _train_grad_composite(ctx):
    dy, x, w, mean, var, dmean, dvar = ctx.inputs
    cs, axes = _channel_shape(x.shape), _axes(len(x.shape))
    n = numel(x.shape) // x.shape[1] if x.shape[1] else 0
    t = x.dtype

    def const(v):
        return F.constant(np.asarray(v, t), graph=x.graph)

    def chan(v):
        return F.reshape(v, cs)

    invstd = F.div(const(1.0), F.sqrt(F.add(var, const(ctx.attrs["eps"]))))
    xc = F.sub(x, chan(mean))
    db = F.sum(dy, axis=axes)
    dw = F.sum(F.mul(F.mul(dy, xc), chan(invstd)), axis=axes)  # Σ dy·x̂: 0 for an empty batch
    inv_n = const(1.0 / n if n else 0.0)  # n = 0: dx is empty; 0 keeps the second-order sums at 0, not NaN
    centred = F.sub(F.sub(dy, chan(F.mul(db, inv_n))), F.mul(xc, chan(F.mul(invstd, F.mul(dw, inv_n)))))
    dx = F.add(F.add(F.mul(chan(F.mul(w, invstd)), centred), chan(F.mul(dmean, inv_n))),
               F.mul(xc, chan(F.mul(dvar, F.mul(const(2.0), inv_n)))))
    return dx, dw, db


register_op(
    "batch_norm_train_grad",
    doc="The gradient of batch_norm_train (dy, dmean, dvar the gradients of its outputs): with s = 1/√(var + eps), "
        "x̂ = (x - mean)·s, n the elements per channel: db = Σ dy, dw = Σ dy·x̂, "
        "dx = w·s·(dy - db/n - x̂·dw/n) + dmean/n + 2·dvar·(x - mean)/n (sums over every axis but 1).",
    inputs=[("dy", "T"), ("x", "T"), ("weight", "T"), ("mean", "T"), ("var", "T"), ("dmean", "T"), ("dvar", "T")],
    type_vars=_FLOAT_T,
    attrs={"eps": EPS_ATTR},
    infer=_train_grad_infer,
    reference=_train_grad_ref,
    examples=_train_grad_examples,
    composite=_train_grad_composite,  # no gradient of its own: autodiff differentiates this definition
)

register_op(
    "batch_norm_update_stats",
    doc="running_mean ← (1 - momentum)·running_mean + momentum·mean; running_var ← (1 - momentum)·running_var + "
        "momentum·var·count/(count - 1) (the unbiased batch variance), in place.",
    inputs=[("running_mean", "T"), ("running_var", "T"), ("mean", "T"), ("var", "T")],
    type_vars=_FLOAT_T,
    attrs={"momentum": AttrSpec("float", doc="weight of the batch statistic, in [0, 1]"),
           "count": AttrSpec("int", doc="elements per channel in the batch (n >= 2)")},
    infer=_update_infer,
    reference=_update_ref,
    examples=_update_examples,
    differentiable=False,
    inplace={0: 0, 1: 1},
)


@defgrad("batch_norm_train")
def _grad_batch_norm_train(ctx):
    x, w, _ = ctx.inputs
    _, mean, var = ctx.outputs
    dy, dmean, dvar = ctx.grads
    dx, dw, db = batch_norm_train_grad(dy, x, w, mean, var, dmean, dvar, eps=ctx.attrs["eps"])
    return [dx, dw, db]


# -- builders ----------------------------------------------------------------------------------------

def batch_norm(x, running_mean, running_var, weight=None, bias=None, momentum=0.1, eps=1e-5, name=None):
    """Batch normalisation over axis 1 of ``x`` ((N, C), (N, C, L) or (N, C, H, W)), as
    ``torch.nn.functional.batch_norm``.

    ``running_mean`` and ``running_var`` are (C,) variables (``trainable=False``); ``weight`` and
    ``bias`` are (C,) tensors or None (ones and zeros).  The compile decides the mode: a training
    plan normalises with the batch's statistics and updates the running ones in place
    (running ← (1 - momentum)·running + momentum·batch, the unbiased batch variance for
    running_var); an inference plan (a model without training spec, or ``compile(train=False)``)
    normalises with the running statistics.  momentum=None is PyTorch's cumulative average: the
    weight of batch t is 1/t, counted in the int64 variable ``<scope>/num_batches_tracked`` beside
    ``<scope>/running_mean`` (created by the training compile when absent;
    :func:`batches_tracked_name`).

    Example::

        rm = gc.variable("bn/running_mean", init=np.zeros(16, np.float32), trainable=False)
        rv = gc.variable("bn/running_var", init=np.ones(16, np.float32), trainable=False)
        y = gc.batch_norm(x, rm, rv, weight=gamma, bias=beta)
    """
    c = running_mean.shape[0] if len(running_mean.shape) == 1 else None
    if (weight is None or bias is None) and not isinstance(c, int):
        raise GraphError(f"batch_norm: running_mean must have shape (C,), got {running_mean.shape}")
    dt = running_mean.dtype
    if weight is None:
        weight = F.constant(np.ones(c, dt), graph=running_mean.graph)
    if bias is None:
        bias = F.constant(np.zeros(c, dt), graph=running_mean.graph)
    return build("batch_norm", [x, running_mean, running_var, weight, bias],
                 {"momentum": momentum, "eps": eps}, name=name)


def batch_norm_train(x, weight, bias, eps=1e-5, name=None):
    """The training form of batch_norm: (y, batch mean, biased batch variance)."""
    return build("batch_norm_train", [x, weight, bias], {"eps": eps}, name=name)


def batch_norm_train_grad(dy, x, weight, mean, var, dmean, dvar, eps=1e-5, name=None):
    """The gradient (dx, dweight, dbias) of batch_norm_train (see the op's doc)."""
    return build("batch_norm_train_grad", [dy, x, weight, mean, var, dmean, dvar], {"eps": eps}, name=name)


# -- instance_norm (ONNX InstanceNormalization) ----------------------------------------------------------

def _instance_infer(ctx):
    shape = ctx.shape(0)
    if len(shape) < 3:
        ctx.fail(f"expects x of rank >= 3 (N, C, D1, ...) normalised over the spatial axes, got shape {tuple(shape)}")
    _check_channels(ctx, shape[1], (1, 2), ("scale", "bias"))
    _check_eps(ctx)
    return ctx.dtype(0), shape


def _instance_ref(inputs, attrs):
    x, scale, bias = inputs
    xd = x.astype(np.float64)
    axes = tuple(range(2, x.ndim))
    cs = (1, x.shape[1]) + (1,) * (x.ndim - 2)
    n = numel(x.shape[2:])
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = xd.sum(axis=axes, keepdims=True) / n
        var = ((xd - mean) ** 2).sum(axis=axes, keepdims=True) / n
        y = (xd - mean) / np.sqrt(var + attrs["eps"]) * scale.astype(np.float64).reshape(cs) \
            + bias.astype(np.float64).reshape(cs)
    return y.astype(x.dtype)


def _instance_composite(ctx):
    x, scale, bias = ctx.inputs
    rank = len(x.shape)
    axes = tuple(range(2, rank))
    cs = (-1,) + (1,) * (rank - 2)  # (C, 1, ..., 1) broadcasts against (N, C, D1, ...)
    mean = F.mean(x, axis=axes, keepdims=True)
    xc = F.sub(x, mean)
    var = F.mean(F.mul(xc, xc), axis=axes, keepdims=True)
    eps = F.constant(np.asarray(ctx.attrs["eps"], x.dtype), graph=x.graph)
    inv = F.div(F.constant(np.asarray(1.0, x.dtype), graph=x.graph), F.sqrt(F.add(var, eps)))
    return F.add(F.mul(F.mul(xc, inv), F.reshape(scale, cs)), F.reshape(bias, cs))


_INSTANCE_CASES = [(1, 1, 1), (2, 3, 5), (1, 2, 7, 9), (3, 4, 1, 1), (0, 3, 4, 4), (2, 0, 3), (2, 3, 4, 5, 6),
                   (1, 5, 73)]


def _instance_examples(rng):
    out = []
    for dt in dtypes.FLOATS:
        for shape in _INSTANCE_CASES:
            c = shape[1]
            out.append(Example([rand(rng, shape, dt), rand(rng, (c,), dt), rand(rng, (c,), dt)],
                               {"eps": 1e-5}, note=dt))
        out.append(Example([rand(rng, (2, 3, 6), dt), rand(rng, (3,), dt), rand(rng, (3,), dt)], {"eps": 0.1},
                           note=f"{dt} eps 0.1"))
        x = special(rng, (2, 3, 8), dt, extremes=False)
        out.append(Example([x, rand(rng, (3,), dt), rand(rng, (3,), dt)], {"eps": 1e-5}, grad=False,
                           note=f"{dt} special values"))
    return out


register_op(
    "instance_norm",
    doc="Instance norm (ONNX InstanceNormalization): per sample n and channel c, mean and biased variance over "
        "the spatial axes 2.. of x (N, C, D1, ...); y = (x - mean) / √(var + eps) · scale[c] + bias[c].  A "
        "composite of reductions and elementwise ops (autodiff differentiates it); an empty spatial extent "
        "gives NaN (0/0), as the reference.",
    inputs=[("x", "T"), ("scale", "T"), ("bias", "T")],
    type_vars=_FLOAT_T,
    attrs={"eps": EPS_ATTR},
    infer=_instance_infer,
    reference=_instance_ref,
    examples=_instance_examples,
    composite=_instance_composite,
    kernels=(),
)


def instance_norm(x, scale, bias, eps=1e-5, name=None):
    """Instance normalisation of ``x`` (N, C, D1, ...): each (n, c) slice normalised over its
    spatial axes, then ``· scale[c] + bias[c]`` ((C,) tensors), as ONNX InstanceNormalization and
    ``torch.nn.functional.instance_norm`` without running statistics."""
    return build("instance_norm", [x, scale, bias], {"eps": eps}, name=name)
