"""Pass: append_optimizer — the optimizer's update nodes of a training model.

Needs: the output of append_gradients (``graph.gradients_of``).  Guarantees: a new
Graph with optimizer state variables (non-trainable, zero-initialised:
``<var>/momentum``, ``<var>/adam_m``, ``<var>/adam_v``, ``optimizer/step``) and
in-place update nodes (role "optimizer") for every trained variable, following the
spec's optimizer and global-norm clipping.  Update nodes are side effects: prune keeps
them (their ops declare ``inplace``).  A graph without a training spec is returned unchanged.

A named training entry's state is its own: ``state_prefix`` (the entry name) is prepended
(``train_d/<var>/adam_m``, ``train_d/optimizer/step``), so entries training the same
variable never share moments.

A data-parallel graph (the data_parallel pass's output for a world of N ranks) gets
``grad_scale = 1/N`` in every update op: the gradients it reads are sums over N ranks.
"""

from graphc import optim
from graphc.compiler._rebuild import clone_graph
from graphc.compiler.data_parallel import grad_scale
from graphc.errors import CompileError, GraphError


def append_optimizer(graph, state_prefix="", model_variables=()):
    """``model_variables``: every variable name of the model before the early prune; a state
    variable may take none of them (a variable the loss does not read is pruned before this
    pass, and would otherwise share its name, so its storage in a program, with the state)."""
    if graph.training is None or not graph.training.loss:
        return graph
    grads_of = getattr(graph, "gradients_of", None)
    if grads_of is None:
        raise CompileError("append_optimizer needs append_gradients first")
    try:
        optimizer = optim.from_spec(graph.training.optimizer)
    except GraphError as e:
        raise CompileError(f"training spec: {e}") from None
    out = clone_graph(graph)
    pairs = [(out.tensor(g), out.tensor(v)) for v, g in grads_of.items()]
    # the step counter and the clipping nodes belong to no one variable: they get the loss's line
    loss_provenance = out.tensor(graph.training.loss).producer.provenance
    who = f"entry {state_prefix!r}: " if state_prefix else ""
    scale = grad_scale(graph)
    if not state_prefix:
        optim.append_updates(out, optimizer, pairs, provenance=loss_provenance, grad_scale=scale)
    else:
        try:
            optim.append_updates(out, optimizer, pairs, prefix=state_prefix, provenance=loss_provenance,
                                 grad_scale=scale)
        except GraphError as e:   # a user variable already holds a state variable's name
            raise CompileError(f"{who}optimizer state: {e}") from None
    taken = set(model_variables)
    for var in out.variables[len(graph.variables):]:
        if var.name in taken:
            raise CompileError(f"{who}optimizer state: the model has a variable named {var.name!r}, the name of "
                               f"the optimizer's state; rename that variable")
    out.gradients_of = dict(grads_of)
    return out
