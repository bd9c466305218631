"""Pass 1: validate_graph — refuse a structurally broken graph before any other pass.

Needs: any Graph (built in Python or loaded from a .pb file).
Guarantees (else CompileError naming the node and the user's file:line): names of
placeholders, variables, nodes and values are unique; every node's op is registered
and gets the number of inputs it expects; every input has a producer; the graph is
acyclic; declared outputs exist.  Returns the same graph, unchanged.
"""

from graphc import registry
from graphc.errors import CompileError, GraphError, where


def validate_graph(graph):
    owner = {}  # every node name and value name → what claimed it
    values = set()

    def claim(name, what, provenance=None):
        if name in owner:
            raise CompileError(f"duplicate name {name!r}: claimed by {owner[name]} and by {what}{where(provenance)}")
        owner[name] = what

    for ph in graph.inputs:
        claim(ph.name, f"placeholder {ph.name!r}", ph.provenance)
        values.add(ph.name)
    for var in graph.variables:
        claim(var.name, f"variable {var.name!r}", var.provenance)
        values.add(var.name)
    for node in graph.nodes:
        for name in dict.fromkeys([node.name, *node.outputs]):
            claim(name, node.describe(), node.provenance)
        values.update(node.outputs)
        if not registry.has_op(node.op):
            raise CompileError(f"node {node.name!r} uses unknown op {node.op!r}{where(node.provenance)}")
        try:
            registry.get_op(node.op).check_arity(len(node.inputs), node.name, node.provenance)
        except GraphError as e:
            raise CompileError(str(e)) from None
    try:
        graph.topological_order()
    except GraphError as e:
        raise CompileError(str(e)) from None
    for name in graph.outputs:
        if name not in values:
            raise CompileError(f"declared output {name!r} is not a value of the graph")
    return graph
