"""append_rng_increment — one ``rng/step`` increment per plan that draws random numbers, in every mode.

Needs: a Graph after select_mode (the pipeline runs it next, in training and in inference alike).
Guarantees: when some node reads the int64 scalar variable ``rng/step`` (dropout's training form,
random_uniform, random_normal and their ``_like`` forms) and no node writes it yet, a new Graph
with one in-place increment ``rng/step ← rng/step + 1`` appended (role optimizer, nodes
``rng/step/one``, ``rng/step/next``, ``rng/step/increment``); otherwise the graph itself.

The scheduler runs an in-place write after every other reader of the variable (schedule_nodes),
and later passes only add readers (gradients of dropout_train, recomputed copies), so every draw
of a run reads the same step — a recomputed node draws what the original drew — and the next run
of any plan of the model draws fresh numbers.  A checkpoint saves ``rng/step``, so a resumed run
continues the sequence.  One counter serves every random node and every entry of a program: each
run of a plan that draws increments it exactly once.
"""

import numpy as np

from graphc import registry
from graphc.compiler._rebuild import clone_graph
from graphc.graph import OPTIMIZER
from graphc.ops.random import RNG_STEP


def append_rng_increment(graph):
    if not graph.has_value(RNG_STEP):
        return graph
    reads = writes = False
    first_reader = None
    for node in graph.nodes:
        if RNG_STEP in {node.inputs[i] for i in registry.get_op(node.op).inplace.values()}:
            writes = True
        elif RNG_STEP in node.inputs:
            reads = True
            first_reader = first_reader or node
    if not reads or writes:
        return graph
    out = clone_graph(graph)
    step = out.tensor(RNG_STEP)
    # The user's line of the first draw: the increment exists because of it (and the plan's
    # bytes do not depend on where compile() was called).
    where = first_reader.provenance
    with out.building(OPTIMIZER):
        one = out.add_node("constant", [], {"value": np.ones((), np.int64)}, name=f"{RNG_STEP}/one",
                           provenance=where)
        nxt = out.add_node("add", [step, one[0]], name=f"{RNG_STEP}/next", provenance=where)
        out.add_node("assign", [step, nxt[0]], name=f"{RNG_STEP}/increment", provenance=where)
    return out

