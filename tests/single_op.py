"""One registry op as a graph, for the tests that run every op through the compiler."""

import numpy as np

import graphc as gc
from graphc import registry
from graphc.graph import Graph


def completion(op):
    """The op whose step completes ``op``'s in-place collective, or None: a collective that starts
    writing its inputs (contiguous_inputs, scheduled "asap": allreduce_start) is valid in a plan
    only when a later step (contiguous_inputs, "alap": allreduce_wait) takes its outputs, so the
    tests append that step after it."""
    if not (op.contiguous_inputs and op.schedule == "asap"):
        return None
    return next(o for o in registry.all_ops() if o.contiguous_inputs and o.schedule == "alap")


def single_op_graph(op, ex):
    """(graph, inputs, outputs, shapes, feeds) for one node of ``op`` on example ``ex``:
    a placeholder per input, except inputs the op updates in place (optimizer updates),
    which must be variables, and inputs an output aliases (collectives), fed through a copy;
    ``shapes`` and ``feeds`` cover the placeholders."""
    inplace = set(op.inplace.values())
    # Inputs an output is a view of, written in place (the collectives' bucket members): values a
    # step computes, never a feed (feeds are not written by steps) — through a copy, as the
    # data_parallel pass materialises such a gradient (broadcast_to its own shape).
    aliased = set(op.alias_map(len(ex.inputs)).values())
    g = Graph()
    with g:
        ins = [gc.variable(f"in{i}", init=np.asarray(x)) if i in inplace else
               gc.placeholder(f"in{i}", np.shape(x), np.asarray(x).dtype.name) for i, x in enumerate(ex.inputs)]
        node_ins = [g.add_node("broadcast_to", [t], {"shape": tuple(np.shape(x))})[0] if i in aliased else t
                    for i, (t, x) in enumerate(zip(ins, ex.inputs))]
        outs = g.add_node(op.name, node_ins, ex.attrs)
        done = completion(op)
        if done is not None:  # the same values, summed in place: the reference's identity still holds
            outs = g.add_node(done.name, list(outs), ex.attrs)
    outs = list(outs) if isinstance(outs, (list, tuple)) else [outs]
    placeholders = [i for i in range(len(ex.inputs)) if i not in inplace]
    shapes = {f"in{i}": np.shape(ex.inputs[i]) for i in placeholders}
    feeds = {f"in{i}": np.asarray(ex.inputs[i]) for i in placeholders}
    return g, [ins[i] for i in placeholders], outs, shapes, feeds
