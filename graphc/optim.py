"""Optimizers.  ``opt.minimize(loss)`` records a training spec in the model; the
compiler turns it into gradient nodes plus in-place update nodes (role "optimizer"),
with optimizer state (moments, step count) in persistent variables.

Example::

    import graphc as gc
    with gc.Graph() as g:
        ...
        loss = gc.softmax_cross_entropy(logits, y)
        gc.optim.SGD(lr=0.1, momentum=0.9).minimize(loss)
    plan = gc.compile(g, shapes={"x": (128, 784), "y": (128,)})   # a training step
"""

import dataclasses

import numpy as np

from graphc import ops
from graphc.errors import GraphError, quote, where
from graphc.graph import OPTIMIZER, Entry, Placeholder, Tensor, user_provenance
from graphc.ops._common import build

KINDS = ("sgd", "adam", "adamw")


@dataclasses.dataclass
class OptimizerSpec:
    """An optimizer as a model records it: its kind (one of KINDS), its hyperparameters
    (name → float) and the global-norm clip (0: none).  Plain data; graphc.serialize
    converts it to and from the schema's OptimizerSpec message."""

    kind: str = ""
    hyperparameters: dict = dataclasses.field(default_factory=dict)
    clip_global_norm: float = 0.0


@dataclasses.dataclass
class TrainingSpec:
    """The training spec of a graph (``graph.training``): the name of the scalar loss, the
    optimizer and the variables to train (empty: every trainable variable).  Plain data;
    graphc.serialize converts it to and from the schema's TrainingSpec message."""

    loss: str = ""
    optimizer: OptimizerSpec = dataclasses.field(default_factory=OptimizerSpec)
    var_list: list = dataclasses.field(default_factory=list)


class Optimizer:
    """Base class: a kind and its hyperparameters, plus optional global-norm clipping."""

    kind = None
    defaults = {}

    def __init__(self, clip_global_norm=0.0, **hyper):
        unknown = set(hyper) - set(self.defaults)
        if unknown:
            raise GraphError(f"{type(self).__name__}: unknown hyperparameters {sorted(unknown)}; "
                             f"expected {sorted(self.defaults)}")
        self.hyper = {**self.defaults, **{k: float(v) for k, v in hyper.items()}}
        if self.hyper.get("lr") is None or not self.hyper["lr"] > 0:
            raise GraphError(f"{type(self).__name__}: lr must be > 0, got {self.hyper.get('lr')}")
        if clip_global_norm < 0:
            raise GraphError(f"clip_global_norm must be >= 0, got {clip_global_norm}")
        self.clip_global_norm = float(clip_global_norm)

    def to_spec(self, loss_name, var_list=()):
        """The TrainingSpec of this optimizer minimizing the value ``loss_name``."""
        hyper = {k: float(self.hyper[k]) for k in sorted(self.hyper)}
        return TrainingSpec(loss=loss_name, var_list=list(var_list),
                            optimizer=OptimizerSpec(self.kind, hyper, self.clip_global_norm))

    def minimize(self, loss, var_list=None, name=None, fetches=None):
        """Record a training step minimizing ``loss`` (a float scalar Tensor) in loss's graph.

        ``var_list``: the variables to train (Tensors or names of trainable variables of the
        graph; None or empty: every trainable variable).

        Without ``name`` this is the graph's default training spec (``graph.training``,
        replacing an earlier one), which ``gc.compile(model)`` compiles; its optimizer state
        is named ``<var>/adam_m``, ``<var>/momentum``, ``optimizer/step``.  Returns the
        TrainingSpec.

        With ``name`` it records the training entry ``name`` (``graph.entries[name]``, see
        :class:`graphc.graph.Entry`), compiled with ``gc.compile(model, entry=name)`` or
        joined with other entries by ``gc.compile(model, entries=[...])``; ``fetches``: values
        the step returns besides the loss (its first fetch).  Its optimizer state is its own:
        ``<name>/<var>/adam_m``, ``<name>/<var>/momentum``, ``<name>/optimizer/step``, so two
        entries training the same variable keep separate moments.  Returns the Entry.

        Example::

            gc.optim.Adam(2e-4, betas=(0.5, 0.999)).minimize(d_loss, var_list=d_vars, name="train_d")

        Raises GraphError (at the caller's line) for a loss that is not a float scalar, a
        var_list item that is not a trainable variable of the graph, a bad or duplicate entry
        name, or a fetch that is not a value of the graph.
        """
        provenance = user_provenance()
        if not isinstance(loss, Tensor):
            raise GraphError(f"minimize() takes the loss Tensor, got {type(loss).__name__}{where(provenance)}")
        what = "minimize()" if name is None else f"minimize(name={name!r})"
        if loss.shape != () or loss.dtype not in ("float32", "float64"):
            raise GraphError(f"{what}: the loss must be a float scalar, got {loss.shape} {loss.dtype}"
                             f"{where(provenance)}")
        graph = loss.graph
        if name is not None:
            graph.check_entry_name(name, provenance)
        names = _var_names(graph, var_list, what, provenance)
        spec = self.to_spec(loss.name, names)
        if name is None:
            if fetches is not None:
                raise GraphError(f"minimize(): fetches= needs name= (the default training step returns its "
                                 f"loss; name the step to give it more fetches){where(provenance)}")
            graph.training = spec
            return spec
        extra = [f for f in graph.entry_fetch_names(name, fetches, provenance) if f != loss.name]
        return graph.add_entry(Entry(name, extra, spec), provenance)


def _var_names(graph, var_list, what, provenance):
    """The names of ``var_list`` (Tensors or names), each a trainable variable of ``graph``."""
    if var_list is None:
        return []
    if isinstance(var_list, (str, Tensor)):
        var_list = [var_list]
    variables = {var.name: var for var in graph.variables}
    names = []
    for v in var_list:
        if isinstance(v, Tensor):
            if v.graph is not graph:
                raise GraphError(f"{what}: var_list item {v.name!r} is a Tensor of another graph{where(provenance)}")
            name = v.name
        elif isinstance(v, str):
            name = v
        else:
            raise GraphError(f"{what}: var_list items must be variables (Tensors) or their names, got "
                             f"{type(v).__name__}{where(provenance)}")
        var = variables.get(name)
        if var is None:
            if graph.has_value(name):
                producer = graph.producer(name)
                kind = "a placeholder" if isinstance(producer, Placeholder) else f"the output of {producer.describe()}"
                raise GraphError(f"{what}: var_list names {name!r}, which is {kind}, not a variable"
                                 f"{where(provenance)}")
            raise GraphError(f"{what}: var_list names {name!r}, which is not a value of the graph{where(provenance)}")
        if not var.trainable:
            raise GraphError(f"{what}: var_list names {name!r}, a variable created with trainable=False"
                             f"{where(provenance)}")
        names.append(name)
    return list(dict.fromkeys(names))


class SGD(Optimizer):
    """SGD with optional momentum / Nesterov momentum and L2 weight decay (PyTorch's rule)."""

    kind = "sgd"
    defaults = {"lr": None, "momentum": 0.0, "nesterov": 0.0, "weight_decay": 0.0}

    def __init__(self, lr, momentum=0.0, nesterov=False, weight_decay=0.0, clip_global_norm=0.0):
        if nesterov and momentum <= 0:
            raise GraphError("SGD: nesterov needs momentum > 0")
        super().__init__(clip_global_norm, lr=lr, momentum=momentum, nesterov=float(bool(nesterov)),
                         weight_decay=weight_decay)


class Adam(Optimizer):
    """Adam with bias correction; weight_decay is L2 added to the gradient."""

    kind = "adam"
    defaults = {"lr": None, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0}

    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, clip_global_norm=0.0):
        super().__init__(clip_global_norm, lr=lr, beta1=betas[0], beta2=betas[1], eps=eps,
                         weight_decay=weight_decay)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter), default weight_decay 0.01."""

    kind = "adamw"

    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01, clip_global_norm=0.0):
        super().__init__(lr, betas, eps, weight_decay, clip_global_norm)


def from_spec(spec):
    """An Optimizer from an OptimizerSpec (or anything with its fields: the schema's message)."""
    h = dict(spec.hyperparameters)
    kind = spec.kind
    clip = spec.clip_global_norm
    if kind == "sgd":
        return SGD(h.get("lr", 0.0), h.get("momentum", 0.0), bool(h.get("nesterov", 0.0)),
                   h.get("weight_decay", 0.0), clip)
    if kind in ("adam", "adamw"):
        cls = Adam if kind == "adam" else AdamW
        return cls(h.get("lr", 1e-3), (h.get("beta1", 0.9), h.get("beta2", 0.999)), h.get("eps", 1e-8),
                   h.get("weight_decay", 0.0 if kind == "adam" else 0.01), clip)
    raise GraphError(f"unknown optimizer {quote(kind)}; expected one of {', '.join(KINDS)}")


def parse(text):
    """'sgd:lr=0.1,momentum=0.9' → Optimizer (the CLI's --optimizer syntax)."""
    kind, _, rest = text.partition(":")
    kind = kind.strip().lower()
    values = {}
    for item in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, val = item.partition("=")
        if not eq:
            raise GraphError(f"bad optimizer option {item!r}: expected key=value")
        try:
            values[key.strip()] = float(val)
        except ValueError:
            raise GraphError(f"bad optimizer option {item!r}: {val!r} is not a number") from None
    spec = OptimizerSpec(kind=kind)
    clip = values.pop("clip_global_norm", 0.0)
    spec.clip_global_norm = clip
    defaults = {"sgd": SGD.defaults, "adam": Adam.defaults, "adamw": AdamW.defaults}.get(kind)
    if defaults is None:
        raise GraphError(f"unknown optimizer {quote(kind)}; expected one of {', '.join(KINDS)}")
    if "betas" in values:
        raise GraphError("give beta1= and beta2= separately")
    unknown = set(values) - set(defaults)
    if unknown:
        raise GraphError(f"{kind}: unknown options {sorted(unknown)}; expected {sorted(defaults)}")
    for k, v in values.items():
        spec.hyperparameters[k] = v
    return from_spec(spec)


# -- the compiler's side: update nodes ----------------------------------------------------------

def _state(graph, var, suffix, dtype=None, shape=None, value=0, prefix=""):
    name = f"{var.name}/{suffix}" if var is not None else suffix
    if prefix:
        name = f"{prefix}/{name}"
    arr = np.full(shape if shape is not None else var.shape, value, dtype or var.dtype)
    return graph.add_variable(name, arr, trainable=False, provenance=var.producer.provenance if var is not None
                              else ("", 0))


def clip_by_global_norm(grads, clip, grad_scale=1.0):
    """Scale every gradient by min(1, clip / (‖g‖₂ + 1e-6)), ‖g‖₂ over all gradients.

    ``grad_scale``: the factor the update ops apply to the gradients after this
    (data-parallel averaging, 1/N): the norm measured is that of ``grad_scale · g``, the
    gradients the step takes, so N ranks clip as one process on the whole batch does."""
    squares = [ops.sum(ops.mul(g, g)) for g in grads]
    total = squares[0]
    for s in squares[1:]:
        total = ops.add(total, ops.cast(s, total.dtype) if s.dtype != total.dtype else s)
    norm = ops.sqrt(total)
    if grad_scale != 1.0:
        # ‖s·g‖ = s·‖g‖ (s > 0); exact when s is a power of two
        norm = ops.mul(norm, grad_scale)
    scale = ops.minimum(ops.div(clip, ops.add(norm, 1e-6)), 1.0)
    return [ops.mul(g, ops.cast(scale, g.dtype) if g.dtype != scale.dtype else scale) for g in grads]


def append_updates(graph, optimizer, grads_and_vars, prefix="", provenance=None, grad_scale=1.0):
    """Append the update nodes (role optimizer) for (gradient, variable) pairs; returns them.
    ``provenance``: the (file, line) of the nodes that serve every variable (the step counter,
    global-norm clipping); a variable's own update carries the variable's.

    ``grad_scale``: every update op first multiplies its gradient by it (attr ``grad_scale``;
    1/N for the sum of N data-parallel ranks' gradients, graphc/compiler/data_parallel.py);
    global-norm clipping then measures the scaled gradients.

    ``prefix``: the training entry's name: its optimizer state (and update nodes) are named
    ``<prefix>/<var>/adam_m``, ``<prefix>/optimizer/step``, ...; "" (the default training
    step) keeps ``<var>/adam_m``, ``optimizer/step``."""

    def named(name):
        return f"{prefix}/{name}" if prefix else name

    with graph.building(OPTIMIZER, provenance):
        grads = [g for g, _ in grads_and_vars]
        if optimizer.clip_global_norm > 0 and grads:
            grads = clip_by_global_norm(grads, optimizer.clip_global_norm, grad_scale)
        updates = []
        step = None
        if optimizer.kind in ("adam", "adamw") and grads_and_vars:
            counter = _state(graph, None, "optimizer/step", dtype="int64", shape=(), prefix=prefix)
            step = build("assign", [counter, ops.add(counter, np.int64(1))], name=named("optimizer/step_update"))
        for g, var in zip(grads, (v for _, v in grads_and_vars)):
            with graph.building(OPTIMIZER, var.producer.provenance):
                updates.extend(_update(graph, optimizer, var, g, step, prefix, grad_scale))
        if step is not None:
            updates.append(step)
    return updates


def _update(graph, optimizer, var, g, step, prefix="", grad_scale=1.0):
    """The update node(s) of one variable; returns their outputs."""

    h = optimizer.hyper
    name = f"{prefix}/{var.name}/update" if prefix else f"{var.name}/update"
    # grad_scale only when it scales: a plan that is not data-parallel keeps its attrs (and bytes)
    scale = {"grad_scale": float(grad_scale)} if grad_scale != 1.0 else {}
    if optimizer.kind == "sgd" and h["momentum"] == 0:
        out = build("sgd_update", [var, g], {"lr": h["lr"], "weight_decay": h["weight_decay"], **scale}, name=name)
    elif optimizer.kind == "sgd":
        vel = _state(graph, var, "momentum", prefix=prefix)
        out = build("sgd_momentum_update", [var, g, vel],
                    {"lr": h["lr"], "momentum": h["momentum"], "nesterov": bool(h["nesterov"]),
                     "weight_decay": h["weight_decay"], **scale}, name=name)
    else:
        m = _state(graph, var, "adam_m", prefix=prefix)
        v = _state(graph, var, "adam_v", prefix=prefix)
        out = build("adam_update", [var, g, m, v, step],
                    {"lr": h["lr"], "beta1": h["beta1"], "beta2": h["beta2"], "eps": h["eps"],
                     "weight_decay": h["weight_decay"], "decoupled": optimizer.kind == "adamw", **scale}, name=name)
    return list(out) if isinstance(out, tuple) else [out]
