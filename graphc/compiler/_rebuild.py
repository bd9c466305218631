"""Helpers shared by passes: build a new Graph from parts of an old one.

Passes never mutate their input; they build a fresh Graph with these helpers, so a
caller can keep the graph of every stage (for tests and ``graphc viz``).  Node objects
are never changed once in a graph (a pass that changes a node builds a new one), so the
graphs of consecutive stages share the Node objects they have in common: copying a node
into a new graph gives it new Tensor handles only (a pass that does nothing may even
return its input graph).  Sharing saves a copy of every node's inputs, outputs and attrs
per pass (tools/bench_compile.py).
"""

from graphc.graph import Graph


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
    """Insert ``node`` into ``dst`` with the given output types (the Node object is shared, see
    the module doc; the Tensor handles are ``dst``'s own)."""
    dst.insert_node(node, out_types)
    return node


def node_types(graph, node):
    """The (dtype, shape) of each output of ``node`` in ``graph``."""
    types = []
    for o in node.outputs:
        t = graph.tensor(o)
        types.append((t.dtype, t.shape))
    return types


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
