"""Pass: append_gradients — the autodiff pass of a training model.

Needs: a Graph with concrete shapes (after infer_shapes) whose ``training`` spec names
a scalar float loss and, optionally, the variables to train (default: every trainable
variable).  Guarantees: a new Graph with the gradient nodes (role "gradient") of the
loss w.r.t. those variables appended, and ``graph.gradients_of``: variable name →
gradient value name (variables the loss does not depend on are left out).  A graph
without a training spec is returned unchanged.
"""

from graphc.autodiff import gradients
from graphc.compiler._rebuild import clone_graph
from graphc.errors import CompileError


def trained_variables(graph, model_variables=()):
    """The names of the variables the training spec trains that ``graph`` still holds.

    ``model_variables``: every variable name of the model before the early prune; a var_list
    name among them that the graph no longer holds is a variable the loss does not reach (the
    prune dropped it): it gets no update, as in TensorFlow and PyTorch.  A name that is no
    variable at all is a CompileError."""
    spec = graph.training
    present = {v.name for v in graph.variables}
    if not spec.var_list:
        return [v.name for v in graph.variables if v.trainable]
    known = present | set(model_variables)
    unknown = [n for n in spec.var_list if n not in known]
    if unknown:
        raise CompileError(f"training spec names unknown variables {unknown}")
    return [n for n in spec.var_list if n in present]


def append_gradients(graph, stack_outer_products=True, model_variables=()):
    """``stack_outer_products``: see :func:`graphc.autodiff.gradients` (off under a memory
    budget: summing a weight's per-step gradient terms as they come keeps less live).
    ``model_variables``: see :func:`trained_variables`."""
    if graph.training is None or not graph.training.loss:
        return graph
    spec = graph.training
    if not graph.has_value(spec.loss):
        raise CompileError(f"training loss {spec.loss!r} is not a value of the graph")
    out = clone_graph(graph)
    loss = out.tensor(spec.loss)
    if loss.shape != () or loss.dtype not in ("float32", "float64"):
        raise CompileError(f"training loss {spec.loss!r} must be a float scalar, got {loss.shape} {loss.dtype}")
    names = trained_variables(out, model_variables)
    grads = gradients(loss, [out.tensor(n) for n in names], stack_outer_products=stack_outer_products)
    out.gradients_of = {n: g.name for n, g in zip(names, grads) if g is not None}
    if not out.gradients_of:
        raise CompileError(f"the loss {spec.loss!r} depends on none of the variables "
                           f"{list(spec.var_list) if spec.var_list else names}")
    return out
