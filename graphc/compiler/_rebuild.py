"""Helpers shared by passes: build a new Graph from parts of an old one.

Passes never mutate their input; they build a fresh Graph with these helpers, so a
caller can keep the graph of every stage (for tests and ``graphc viz``).
"""

from graphc.graph import Graph, Node


def new_graph_like(graph):
    """An empty Graph carrying ``graph``'s training spec and metadata (outputs are set by the caller)."""
    out = Graph()
    out.training = graph.training
    out.metadata = dict(graph.metadata)
    return out


def copy_placeholder(dst, ph, shape=None):
    dst.add_placeholder(ph.name, ph.shape if shape is None else shape, ph.dtype, ph.provenance)


def copy_variable(dst, var):
    dst.add_variable(var.name, var.init_value, var.trainable, var.provenance)


def copy_node(dst, node, out_types):
    """Insert a copy of ``node`` (fresh Node object, same attrs) with the given output types."""
    clone = Node(node.name, node.op, node.inputs, node.outputs, node.attrs, node.role, node.provenance, node.scope)
    dst.insert_node(clone, out_types)
    return clone


def node_types(graph, node):
    """The (dtype, shape) of each output of ``node`` in ``graph``."""
    return [(graph.tensor(o).dtype, graph.tensor(o).shape) for o in node.outputs]


def set_outputs_kept(dst, names):
    """Declare as outputs those of ``names`` that ``dst`` still has."""
    dst.outputs = [n for n in names if dst.has_value(n)]


def clone_graph(graph):
    """A structural copy of ``graph`` (same names, attrs, types, outputs) that a pass may extend."""
    out = new_graph_like(graph)
    for ph in graph.inputs:
        copy_placeholder(out, ph)
    for var in graph.variables:
        copy_variable(out, var)
    for node in graph.nodes:
        copy_node(out, node, node_types(graph, node))
    out.outputs = list(graph.outputs)
    return out
