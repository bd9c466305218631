"""Pass 4: prune_graph — keep only what the fetches need.

Needs: a Graph (usually after infer_shapes) and ``fetches``: value names or Tensor
handles (from this graph or an equal one), or None for :func:`default_fetches`.
Guarantees: a new Graph holding exactly the nodes, placeholders and variables that
the fetched values and the side effects (nodes of in-place ops: optimizer updates)
depend on (stored order kept), whose ``outputs`` are the fetches
(duplicates dropped, order kept).  An unknown fetch or an empty fetch list is a
CompileError.
"""

from graphc import registry
from graphc.compiler._rebuild import copy_node, copy_placeholder, copy_variable, new_graph_like, node_types
from graphc.errors import CompileError


def default_fetches(graph):
    """What a plan returns when the caller names nothing: the graph's declared outputs,
    else every node output no node consumes (see Graph.default_fetches).

    A graph with a training spec fetches its loss (the update nodes are kept as side
    effects, see prune_graph).
    """
    if graph.training is not None and graph.training.loss:
        return [graph.training.loss]
    return graph.default_fetches()


def side_effects(graph):
    """Outputs of nodes whose op writes a variable in place (optimizer updates)."""
    return [o for node in graph.nodes if registry.get_op(node.op).inplace for o in node.outputs]


def resolve_fetches(graph, fetches):
    """Fetches (names, Tensors, or None) as a list of unique value names of ``graph``."""
    if fetches is None:
        names = default_fetches(graph)
    else:
        if isinstance(fetches, str) or not hasattr(fetches, "__iter__"):
            fetches = [fetches]
        names = []
        for f in fetches:
            name = f if isinstance(f, str) else getattr(f, "name", None)
            if not isinstance(name, str):
                raise CompileError(f"a fetch must be a value name or a Tensor, got {f!r}")
            names.append(name)
    names = list(dict.fromkeys(names))
    missing = [n for n in names if not graph.has_value(n)]
    if missing:
        raise CompileError(f"fetches {missing} are not values of the graph")
    if not names:
        raise CompileError("nothing to fetch: the graph has no outputs and no fetches were given")
    return names


def prune_graph(graph, fetches=None):
    names = resolve_fetches(graph, fetches)
    # in-place updates (optimizer steps) are roots too: nothing consumes them; so is the
    # training loss, which the gradient pass still needs when this runs early
    roots = list(names) + side_effects(graph)
    if graph.training is not None and graph.training.loss and graph.has_value(graph.training.loss):
        roots.append(graph.training.loss)
    producer_of = {o: node for node in graph.nodes for o in node.outputs}
    needed_values = set()
    needed_nodes = set()
    stack = list(roots)
    while stack:
        v = stack.pop()
        if v in needed_values:
            continue
        needed_values.add(v)
        node = producer_of.get(v)
        if node is not None and node.name not in needed_nodes:
            needed_nodes.add(node.name)
            stack.extend(node.inputs)
            needed_values.update(node.outputs)
    if (len(needed_nodes) == len(graph.nodes) and names == list(graph.outputs)
            and all(ph.name in needed_values for ph in graph.inputs)
            and all(var.name in needed_values for var in graph.variables)):
        return graph  # nothing to prune: the input graph is the result (passes never mutate a graph)
    out = new_graph_like(graph)
    for ph in graph.inputs:
        if ph.name in needed_values:
            copy_placeholder(out, ph)
    for var in graph.variables:
        if var.name in needed_values:
            copy_variable(out, var)
    for node in graph.nodes:
        if node.name in needed_nodes:
            copy_node(out, node, node_types(graph, node))
    out.outputs = names
    return out
