"""select_mode — one model, two plans: rewrite the mode-dependent nodes for training.

Needs: a Graph with concrete shapes (after infer_shapes, before expand_composites).
The mode comes from the compile: the graph is a training graph when it has a training spec
with a loss (a model saved with one, or ``compile(train=...)``); ``compile(train=False)`` or
a model without a spec is an inference graph, returned unchanged (its ops are their own
inference forms: batch_norm normalises with the running statistics, dropout is the
identity, which expand_composites then removes).

Guarantees, in training: a new Graph in which every node whose op declares a
``train_form`` (graphc/registry.py) is replaced by the nodes that form builds from the
node's inputs, named ``<node>/<part>``, with the node's role, scope and provenance; the
node's outputs keep their names, so consumers, fetches and the loss need no renaming.
Parts no consumer reads are kept when they write state in place (batch norm's running
statistics: prune keeps in-place nodes).  A form may keep state of its own in a variable
(``ctx.state(name, init)``: created, not trainable, when the graph has none of that name;
batch norm's ``num_batches_tracked`` for momentum=None).  A form that draws random numbers reads the
int64 scalar variable ``rng/step`` (created once per graph, initial value 0, not trainable;
an existing one is reused: the random ops' builder creates it with the graph).

The next pass, append_rng_increment (graphc/compiler/rng_step.py), runs in every mode and
appends one in-place increment ``rng/step ← rng/step + 1`` when any node reads ``rng/step``
(once per plan, however many dropout and random nodes draw), so each run of any plan draws
fresh numbers, a recomputed forward node draws the same numbers as the original, and a
checkpoint (which saves ``rng/step``) resumes the sequence.
"""

import numpy as np

from graphc import registry
from graphc.compiler._rebuild import copy_node, copy_placeholder, copy_variable, new_graph_like, node_types
from graphc.errors import CompileError, GraphcError, where
from graphc.graph import Graph, Node
from graphc.ops.random import RNG_STEP


def is_training(graph):
    return graph.training is not None and bool(graph.training.loss)


class TrainFormContext:
    """What an op's ``train_form`` sees: the node, its input Tensors (placeholders of a scratch
    graph with the inputs' types) and attrs; ``rng_step()`` gives the step counter Tensor,
    ``state(name, init)`` a persistent variable of the graph (created with ``init`` when
    absent); ``require_variable(i, what)`` refuses a non-variable input that the form updates
    in place."""

    def __init__(self, node, inputs, graph, scratch, state):
        self.node = node
        self.inputs = list(inputs)
        self.attrs = node.attrs
        self._graph = graph
        self._scratch = scratch
        self._state = state  # scratch placeholder name → (variable name, initial value)

    @property
    def x(self):
        return self.inputs[0]

    def rng_step(self):
        return self.state(RNG_STEP, np.zeros((), np.int64))

    def state(self, name, init):
        init = np.asarray(init)
        key = f"state{len(self._state)}"
        for k, (var, _) in self._state.items():
            if var == name:
                return self._scratch.tensor(k)
        self._state[key] = (name, init)
        return self._scratch.add_placeholder(key, init.shape, init.dtype.name, self.node.provenance)

    def input_name(self, i):
        return self.node.inputs[i]

    def require_variable(self, i, what):
        name = self.node.inputs[i]
        if not any(v.name == name for v in self._graph.variables):
            raise CompileError(f"{self.node.describe()} in training updates {what} (input {i}, {name!r}) in place: "
                               f"it must be a variable (gc.variable(..., trainable=False))"
                               f"{where(self.node.provenance)}")


def select_mode(graph):
    if not is_training(graph) or not any(registry.get_op(n.op).train_form for n in graph.nodes):
        return graph
    out = new_graph_like(graph)
    for ph in graph.inputs:
        copy_placeholder(out, ph)
    for var in graph.variables:
        copy_variable(out, var)
    written = {}  # variable → the node whose form writes it in place (two writers would deadlock the schedule)
    for node in graph.nodes:
        opdef = registry.get_op(node.op)
        if opdef.train_form is None:
            copy_node(out, node, node_types(graph, node))
            continue
        _replace(out, graph, node, opdef, written)
    out.outputs = list(graph.outputs)
    return out


def _state_variable(out, name, init, provenance):
    """The variable ``name`` of ``out``, created with ``init`` (not trainable) when absent; an
    existing one must have init's dtype and shape."""
    for var in out.variables:
        if var.name == name:
            if var.dtype != init.dtype.name or var.shape != init.shape:
                raise CompileError(f"variable {name!r} is state of the training plan: it must be {init.dtype.name} of "
                                   f"shape {init.shape}, got {var.dtype} of shape {var.shape}{where(var.provenance)}")
            return name
    out.add_variable(name, init, trainable=False, provenance=provenance)
    return name


def _replace(out, graph, node, opdef, written):
    """Build the node's training form in a scratch graph, then copy its nodes into ``out``
    under ``<node>/`` with the node's output names."""
    scratch = Graph()
    state = {}
    with scratch:
        ins = []
        for k, name in enumerate(node.inputs):
            t = graph.tensor(name)
            ins.append(scratch.add_placeholder(f"input{k}", t.shape, t.dtype, node.provenance))
        ctx = TrainFormContext(node, ins, graph, scratch, state)
        try:
            results = opdef.train_form(ctx)
        except CompileError:
            raise
        except GraphcError as e:
            raise CompileError(f"building the training form of {node.describe()}: {e}"
                               f"{where(node.provenance)}") from None
    results = list(results) if isinstance(results, (list, tuple)) else [results]
    if len(results) != len(node.outputs):
        raise CompileError(f"the training form of {node.op} returned {len(results)} outputs for a node with "
                           f"{len(node.outputs)}")
    names = {f"input{k}": name for k, name in enumerate(node.inputs)}
    for key, (var, init) in state.items():
        names[key] = _state_variable(out, var, init, node.provenance)
    for res, orig in zip(results, node.outputs):
        if res.name in names:
            raise CompileError(f"the training form of {node.describe()} returns an input unchanged")
        names[res.name] = orig
    for sn in scratch.nodes:
        for o in sn.outputs:
            names.setdefault(o, f"{node.name}/{o}")
        for i in registry.get_op(sn.op).inplace.values():
            var = names[sn.inputs[i]]
            if var in written:
                raise CompileError(f"{node.describe()} and {written[var]} both update {var!r} in place in training "
                                   f"(share the layer's output instead of calling it twice){where(node.provenance)}")
            written[var] = node.describe()
        part = Node(f"{node.name}/{sn.name}", sn.op, [names[i] for i in sn.inputs], [names[o] for o in sn.outputs],
                    sn.attrs, node.role, node.provenance, node.scope)
        copy_node(out, part, node_types(scratch, sn))
