"""Optimizer update ops.  Each writes its results into the persistent storage of the
variables it updates (``inplace``: output index → input index), so a plan updates
weights and optimizer state where they live, with no copy.

The compiler orders an in-place node after every other reader of the values it
overwrites.  These ops are not differentiable."""

import numpy as np

from graphc import dtypes
from graphc.ops._common import Example, build, rand, special
from graphc.registry import AttrSpec, register_op

# -- assign ---------------------------------------------------------------------------------


def _assign_infer(ctx):
    if tuple(ctx.shape(0)) != tuple(ctx.shape(1)):
        ctx.fail("expects a value of the variable's shape")
    return ctx.dtype(0), ctx.shape(0)


def _assign_examples(rng):
    return ([Example([rand(rng, s, dt), rand(rng, s, dt)], note=dt)
             for dt in dtypes.ALL for s in [(), (1,), (0,), (5, 3), (73, 74)]]
            + [Example([rand(rng, (3, 5), dt), special(rng, (3, 5), dt)], note=f"{dt} special values")
               for dt in dtypes.ALL])


register_op(
    "assign",
    doc="var ← value: the output is the variable's new content, written in its storage.",
    inputs=[("var", "T"), ("value", "T")],
    type_vars={"T": dtypes.ALL},
    infer=_assign_infer,
    reference=lambda inputs, attrs: inputs[1].copy(),
    examples=_assign_examples,
    differentiable=False,
    inplace={0: 0},
)


def assign(var, value, name=None):
    return build("assign", [var, value], name=name)


# -- SGD ----------------------------------------------------------------------------------------

def _same_as_var(ctx, n_outputs, state_inputs):
    for i in range(1, len(ctx.inputs)):
        if i in state_inputs or i == 1:
            if tuple(ctx.shape(i)) != tuple(ctx.shape(0)):
                ctx.fail(f"expects input {i} of the variable's shape {tuple(ctx.shape(0))}")
    return [(ctx.dtype(0), ctx.shape(0))] * n_outputs


_GRAD_SCALE_DOC = ("g ← grad_scale · g first (one multiply, in the variable's dtype): data-parallel "
                   "training folds the 1/N of the gradient average in here")


def _grad_scale():
    return AttrSpec("float", default=1.0, doc=_GRAD_SCALE_DOC)


def _scaled(g, attrs):
    """g · grad_scale in g's dtype: bit-identical to feeding the scaled gradient."""
    return (g * g.dtype.type(attrs.get("grad_scale", 1.0))).astype(g.dtype)


def _sgd_ref(inputs, attrs):
    w, g = inputs
    t = w.dtype.type
    g = _scaled(g, attrs)
    g = g + t(attrs["weight_decay"]) * w if attrs["weight_decay"] else g
    return (w - t(attrs["lr"]) * g).astype(w.dtype)


def _opt_examples(n_state, attrs_list, step=False):
    def examples(rng):
        out = []
        for dt in dtypes.FLOATS:
            for shape in [(), (1,), (0,), (7,), (5, 3), (73, 74)]:
                for attrs in attrs_list:
                    inputs = [rand(rng, shape, dt), rand(rng, shape, dt)]
                    inputs += [np.abs(rand(rng, shape, dt)) for _ in range(n_state)]
                    if step:
                        inputs.append(np.asarray(3, np.int64))
                    out.append(Example(inputs, attrs, note=dt))
            # a NaN/inf gradient poisons exactly the weights it touches (no clipping here)
            inputs = [rand(rng, (3, 4), dt), special(rng, (3, 4), dt, extremes=False)]
            inputs += [np.abs(rand(rng, (3, 4), dt)) for _ in range(n_state)]
            if step:
                inputs.append(np.asarray(3, np.int64))
            out.append(Example(inputs, attrs_list[0], note=f"{dt} special values"))
        return out
    return examples


register_op(
    "sgd_update",
    doc="Plain SGD: w ← w - lr · (g + weight_decay · w); " + _GRAD_SCALE_DOC + ".",
    inputs=[("w", "T"), ("g", "T")],
    type_vars={"T": dtypes.FLOATS},
    attrs={"lr": AttrSpec("float", doc="learning rate"),
           "weight_decay": AttrSpec("float", default=0.0, doc="L2 penalty added to the gradient"),
           "grad_scale": _grad_scale()},
    infer=lambda ctx: _same_as_var(ctx, 1, ()),
    reference=_sgd_ref,
    examples=_opt_examples(0, [{"lr": 0.1, "weight_decay": 0.0}, {"lr": 0.05, "weight_decay": 0.01},
                               {"lr": 0.1, "weight_decay": 0.01, "grad_scale": 1 / 3}]),
    differentiable=False,
    inplace={0: 0},
)


def _sgd_momentum_ref(inputs, attrs):
    w, g, v = inputs
    t = w.dtype.type
    g = _scaled(g, attrs)
    if attrs["weight_decay"]:
        g = g + t(attrs["weight_decay"]) * w
    v = (t(attrs["momentum"]) * v + g).astype(w.dtype)
    step = g + t(attrs["momentum"]) * v if attrs["nesterov"] else v
    return (w - t(attrs["lr"]) * step).astype(w.dtype), v


register_op(
    "sgd_momentum_update",
    doc="SGD with momentum (PyTorch's rule, dampening 0): g' = g + wd·w; v ← μ·v + g'; "
        "w ← w - lr·(g' + μ·v) with nesterov, else w ← w - lr·v; " + _GRAD_SCALE_DOC + ".",
    inputs=[("w", "T"), ("g", "T"), ("velocity", "T")],
    type_vars={"T": dtypes.FLOATS},
    attrs={"lr": AttrSpec("float", doc="learning rate"), "momentum": AttrSpec("float", doc="momentum factor"),
           "nesterov": AttrSpec("bool", default=False, doc="Nesterov momentum"),
           "weight_decay": AttrSpec("float", default=0.0, doc="L2 penalty added to the gradient"),
           "grad_scale": _grad_scale()},
    infer=lambda ctx: _same_as_var(ctx, 2, (2,)),
    reference=_sgd_momentum_ref,
    examples=_opt_examples(1, [{"lr": 0.1, "momentum": 0.9, "nesterov": False, "weight_decay": 0.0},
                               {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-2},
                               {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-2,
                                "grad_scale": 0.125}]),
    differentiable=False,
    inplace={0: 0, 1: 2},
)


# -- Adam / AdamW -------------------------------------------------------------------------------

def _adam_infer(ctx):
    out = _same_as_var(ctx, 3, (2, 3))
    if tuple(ctx.shape(4)) != ():
        ctx.dtype_fail("expects the step count (input 4) as an int64 scalar")
    return out


def _adam_ref(inputs, attrs):
    w, g, m, v, step = inputs
    t = w.dtype.type
    g = _scaled(g, attrs)
    lr, b1, b2, eps, wd = (t(attrs[k]) for k in ("lr", "beta1", "beta2", "eps", "weight_decay"))
    if attrs["decoupled"]:
        w = w * (t(1) - lr * wd)
    elif attrs["weight_decay"]:
        g = g + wd * w
    m = b1 * m + (t(1) - b1) * g
    v = b2 * v + (t(1) - b2) * g * g
    n = int(step)
    mhat = m / (t(1) - b1 ** t(n))
    vhat = v / (t(1) - b2 ** t(n))
    w = w - lr * mhat / (np.sqrt(vhat) + eps)
    return w.astype(inputs[0].dtype), m.astype(inputs[0].dtype), v.astype(inputs[0].dtype)


register_op(
    "adam_update",
    doc="Adam (Kingma & Ba) with bias correction at step t (input 4, counted from 1): "
        "m ← β1·m + (1-β1)·g; v ← β2·v + (1-β2)·g²; w ← w - lr·m̂/(√v̂ + ε), m̂ = m/(1-β1^t), "
        "v̂ = v/(1-β2^t).  weight_decay adds wd·w to g, or with decoupled=true (AdamW) scales "
        "w by (1 - lr·wd) first; " + _GRAD_SCALE_DOC + ".",
    inputs=[("w", "T"), ("g", "T"), ("m", "T"), ("v", "T"), ("step", ("int64",))],
    type_vars={"T": dtypes.FLOATS},
    attrs={"lr": AttrSpec("float", doc="learning rate"),
           "beta1": AttrSpec("float", default=0.9, doc="decay of the first moment"),
           "beta2": AttrSpec("float", default=0.999, doc="decay of the second moment"),
           "eps": AttrSpec("float", default=1e-8, doc="added to the denominator"),
           "weight_decay": AttrSpec("float", default=0.0, doc="L2 (or decoupled) weight decay"),
           "decoupled": AttrSpec("bool", default=False, doc="AdamW: decay the weights, not the gradient"),
           "grad_scale": _grad_scale()},
    infer=_adam_infer,
    reference=_adam_ref,
    examples=_opt_examples(2, [{"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0,
                                "decoupled": False},
                               {"lr": 1e-2, "beta1": 0.8, "beta2": 0.99, "eps": 1e-6, "weight_decay": 0.1,
                                "decoupled": True},
                               {"lr": 1e-2, "beta1": 0.8, "beta2": 0.99, "eps": 1e-6, "weight_decay": 0.1,
                                "decoupled": False, "grad_scale": 1 / 3}], step=True),
    differentiable=False,
    inplace={0: 0, 1: 2, 2: 3},
)
