"""Pass 5: schedule_nodes — put nodes in the order the plan will run them.

Needs: an acyclic Graph.
Guarantees: a new Graph with the same placeholders, variables, values and outputs
whose ``nodes`` list is a topological order, and the same one every time for the
same input (Graph.topological_order: among ready nodes, the earliest stored first).
"""

from graphc.compiler._rebuild import copy_node, copy_placeholder, copy_variable, new_graph_like, node_types


def schedule_nodes(graph):
    out = new_graph_like(graph)
    for ph in graph.inputs:
        copy_placeholder(out, ph)
    for var in graph.variables:
        copy_variable(out, var)
    for node in graph.topological_order():
        copy_node(out, node, node_types(graph, node))
    out.outputs = list(graph.outputs)
    return out
