"""expand_composites — replace composite nodes the target has no kernel for by their
definition.

Needs: a Graph with concrete shapes (after infer_shapes).
Guarantees: a new Graph in which no node's op is a composite lacking a kernel on
``target`` (expansion repeats until none is left, so a composite may use another).
An expanded node becomes the nodes its definition builds, named ``<node>/<part>``,
with the node's role, scope and provenance (the user's file:line), so errors and
drawings still point at the line that built it; its outputs keep their names, so
consumers, fetches and the training loss need no renaming.  Nodes whose op has a
kernel on the target stay whole (a fused kernel wins).
"""

from graphc import registry
from graphc.compiler._rebuild import copy_node, copy_placeholder, copy_variable, new_graph_like, node_types
from graphc.errors import CompileError, GraphcError, where
from graphc.graph import Graph, Node

MAX_DEPTH = 16


def needs_expansion(opdef, target):
    return opdef.composite is not None and target not in opdef.kernels


def expand_composites(graph, target="cpu"):
    for _ in range(MAX_DEPTH):
        if not any(needs_expansion(registry.get_op(n.op), target) for n in graph.nodes):
            return graph
        graph = _expand_once(graph, target)
    raise CompileError(f"composite ops still unexpanded after {MAX_DEPTH} rounds (a composite that "
                       f"builds itself?)")


def _expand_once(graph, target):
    out = new_graph_like(graph)
    for ph in graph.inputs:
        copy_placeholder(out, ph)
    for var in graph.variables:
        copy_variable(out, var)
    for node in graph.nodes:
        opdef = registry.get_op(node.op)
        if not needs_expansion(opdef, target):
            copy_node(out, node, node_types(graph, node))
            continue
        _expand_node(out, graph, node, opdef)
    out.outputs = list(graph.outputs)
    return out


def _expand_node(out, graph, node, opdef):
    """Build the definition in a scratch graph over placeholders of the inputs' types, then
    copy its nodes into ``out`` under ``<node>/`` with the node's outputs' names."""
    scratch = Graph()
    with scratch:
        ins = []
        for k, name in enumerate(node.inputs):
            t = graph.tensor(name)
            ins.append(scratch.add_placeholder(f"input{k}", t.shape, t.dtype, node.provenance))
        try:
            results = registry.expand_node(opdef, node, ins)
        except GraphcError as e:
            raise CompileError(f"expanding {node.describe()} for its composite definition: {e}"
                               f"{where(node.provenance)}") from None
    names = {f"input{k}": name for k, name in enumerate(node.inputs)}
    passthrough = []  # (output index, input name): the definition returns an input unchanged
    for k, (res, orig) in enumerate(zip(results, node.outputs)):
        if res.name in names:
            passthrough.append((k, orig, names[res.name]))
        else:
            names[res.name] = orig
    for sn in scratch.nodes:
        for o in sn.outputs:
            names.setdefault(o, f"{node.name}/{o}")
        part = Node(f"{node.name}/{sn.name}", sn.op, [names[i] for i in sn.inputs], [names[o] for o in sn.outputs],
                    sn.attrs, node.role, node.provenance, node.scope)
        copy_node(out, part, node_types(scratch, sn))
    # An output that is an input passed through keeps its own name as an ``identity`` view (free),
    # so fetches, graph outputs and the loss that name it need no renaming.
    for k, orig, src in passthrough:
        part_name = node.name if orig == node.name else f"{node.name}/passthrough{k}"
        part = Node(part_name, "identity", [src], [orig], {}, node.role, node.provenance, node.scope)
        t = graph.tensor(orig)
        copy_node(out, part, [(t.dtype, t.shape)])
