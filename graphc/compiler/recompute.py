"""recompute_for_budget — drop forward activations and recompute them in the backward
pass so the plan's arena fits a memory budget (Chen et al. 2016, "Training deep nets
with sublinear memory cost", with a cost model on top).

Needs: a Graph with concrete shapes whose nodes carry roles (forward nodes, then
gradient nodes appended by autodiff); run after the optimizer pass, before
schedule_nodes.
Guarantees: the same graph when ``memory_budget`` is None or the plan already fits;
otherwise a new Graph where some forward values that gradient nodes read are no longer
kept: each gradient node reads instead a copy (role "recompute", new node and value
names ``<node>/recompute``, ``<node>/recompute:k``) computed from kept values, and the
arena of the compiled plan is at most ``memory_budget`` bytes.  Raises CompileError
naming the budget, the smallest arena reached and the values live at its peak when no
strategy fits.

How: the "stash" is the forward ARENA values read by gradient nodes (directly or
through views), in forward order.  A strategy keeps some of them (checkpoints); every
other forward value a gradient node reads is recomputed from the nearest kept values,
placeholders, variables and constants, one copy per forward node.  The scheduler runs
recompute nodes lazily (right before the gradient nodes that need them), so only one
segment is live at a time.  Strategies tried: keep every k-th stash value for several
strides k around √N (Chen's segments), each also in a variant that keeps every value
made by an expensive op (matmul, reductions, softmax...) and drops only elementwise
and shape results.  Each strategy is compiled (schedule + arena plan) and measured;
among those that fit, the one with the smallest recompute cost (estimated FLOPs of the
copied nodes) wins.  Strategies are screened by their schedule's peak of live bytes,
then the arenas of the cheapest ones are planned to confirm the fit.
"""

import math
import re

from graphc import registry
from graphc.compiler._memory import ARENA, MemoryModel, emits_step
from graphc.compiler._rebuild import copy_placeholder, copy_variable, new_graph_like, node_types
from graphc.compiler.assign_buffers import assign_buffers
from graphc.compiler.schedule_nodes import best_order
from graphc.errors import CompileError
from graphc.graph import FORWARD, GRADIENT, RECOMPUTE, Node, Tensor

_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}


def parse_bytes(budget):
    """An int, or a string such as "64MB", "1.5GiB", "4096"."""
    if isinstance(budget, bool):
        raise CompileError(f"memory_budget must be a byte count, got {budget!r}")
    if isinstance(budget, int):
        value = budget
    else:
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", str(budget))
        if not m or m.group(2).upper() not in _UNITS:
            raise CompileError(f"memory_budget {budget!r} is not a byte count such as 67108864 or '64MB'")
        value = int(float(m.group(1)) * _UNITS[m.group(2).upper()])
    if value < 0:
        raise CompileError(f"memory_budget must be >= 0 bytes, got {budget!r}")
    return value


class _Ordered:
    """``graph`` seen with its nodes in a schedule's order (no copy of its variables)."""

    def __init__(self, graph, order):
        self._graph = graph
        self.nodes = order

    def __getattr__(self, name):
        return getattr(self._graph, name)


def schedule_peak(graph):
    """(schedule, most ARENA bytes live at one step) of the memory-aware schedule."""
    return best_order(graph)


def measure(graph, order=None):
    """Plan ``graph``'s arena (schedule + packing): (arena_bytes, [(value, nbytes) live at the peak step])."""
    if order is None:
        order, _ = schedule_peak(graph)
    buffers = assign_buffers(_Ordered(graph, order))
    live = {}
    for buf in buffers.buffers.values():
        if buf.storage == ARENA and buf.start >= 0:
            for s in range(buf.start, buf.end + 1):
                live[s] = live.get(s, 0) + buf.nbytes
    peak_step = max(live, key=lambda s: (live[s], -s)) if live else 0
    peak_values = sorted((b for b in buffers.buffers.values()
                          if b.storage == ARENA and b.start <= peak_step <= b.end and b.nbytes),
                         key=lambda b: -b.nbytes)
    return buffers.arena_bytes, [(b.name, b.nbytes) for b in peak_values]


def _flops(graph, node):
    if not emits_step(node):
        return 0
    return registry.get_op(node.op).flops([graph.tensor(i).shape for i in node.inputs],
                                          [graph.tensor(o).shape for o in node.outputs], node.attrs)


def _cheap(node):
    opdef = registry.get_op(node.op)
    return opdef.elementwise or opdef.view


def stash_values(graph, model=None):
    """Forward ARENA roots read by gradient nodes (directly or through views), in forward order."""
    model = model or MemoryModel(graph)
    producer = {o: n for n in graph.nodes for o in n.outputs}
    read = set()
    for node in graph.nodes:
        if node.role == GRADIENT:
            for i in node.inputs:
                r = model.root[i]
                if model.storage[r] == ARENA and r in producer and producer[r].role == FORWARD:
                    read.add(r)
    order = graph.topological_order()
    return [o for n in order if n.role == FORWARD for o in n.outputs if o in read]


def _share_variable(dst, var):
    """Add ``var`` to ``dst`` without copying its initial value (graphs made only to be measured)."""
    dst._claim(var.name, var, "variable")
    dst._values[var.name] = Tensor(dst, var.name, var.dtype, var.shape, var)
    dst.variables.append(var)


def rewrite_with_recompute(graph, keep, model=None, share_variables=False):
    """A new Graph where gradient nodes read recomputed copies of forward values whose
    root is an ARENA value produced by a forward node and not in ``keep``."""
    model = model or MemoryModel(graph)
    producer = {o: n for n in graph.nodes for o in n.outputs}
    keep = set(keep)

    def dropped(value):
        r = model.root[value]
        p = producer.get(value)
        return (p is not None and p.role == FORWARD and not registry.get_op(p.op).constant
                and model.storage[r] == ARENA and r not in keep)

    # Forward nodes to copy: the closure from gradient inputs back to kept values.
    need, stack = set(), []
    for node in graph.nodes:
        if node.role == GRADIENT:
            stack.extend(i for i in node.inputs if dropped(i))
    while stack:
        v = stack.pop()
        p = producer[v]
        if p.name in need:
            continue
        need.add(p.name)
        stack.extend(i for i in p.inputs if dropped(i))
    if not need:
        return graph

    taken = set(graph.values) | {n.name for n in graph.nodes} | {p.name for p in graph.inputs} | \
        {v.name for v in graph.variables}
    rename = {}
    clones = []
    for node in graph.topological_order():
        if node.name not in need:
            continue
        base = f"{node.name}/recompute"
        name, k = base, 0
        while name in taken or any(o in taken for o in _outputs_for(name, node)):
            k += 1
            name = f"{base}_{k}"
        outs = _outputs_for(name, node)
        taken.update([name, *outs])
        for old, new in zip(node.outputs, outs):
            rename[old] = new
        clones.append((Node(name, node.op, [rename.get(i, i) for i in node.inputs], outs, node.attrs,
                            RECOMPUTE, node.provenance, node.scope), node_types(graph, node)))

    out = new_graph_like(graph)
    for ph in graph.inputs:
        copy_placeholder(out, ph)
    for var in graph.variables:
        if share_variables:
            _share_variable(out, var)
        else:
            copy_variable(out, var)
    for node in graph.nodes:
        inputs = [rename.get(i, i) if node.role == GRADIENT else i for i in node.inputs]
        out.insert_node(Node(node.name, node.op, inputs, node.outputs, node.attrs, node.role, node.provenance,
                             node.scope), node_types(graph, node))
    for clone, types in clones:
        out.insert_node(clone, types)
    out.outputs = list(graph.outputs)
    return out


def _outputs_for(name, node):
    return [name] if len(node.outputs) == 1 else [f"{name}:{k}" for k in range(len(node.outputs))]


def strategies(graph, stash):
    """Candidate kept sets: (label, keep) pairs, cheapest recompute first."""
    n = len(stash)
    producer = {o: nd for nd in graph.nodes for o in nd.outputs}
    expensive = {v for v in stash if not _cheap(producer[v])}
    root = max(1, round(math.sqrt(n)))
    strides = sorted({k for k in (2, 3, 4, root // 2, root, 2 * root, 4 * root, n // 4, n // 2, n, n + 1)
                      if k >= 2})
    out = [("cheap-only", expensive)] if expensive else []
    for k in strides:
        every = {v for j, v in enumerate(stash) if (j + 1) % k == 0}
        if expensive:
            out.append((f"expensive+every-{k}", every | expensive))
        out.append((f"every-{k}", every))
    return out


def recompute_for_budget(graph, memory_budget):
    """Graph → Graph: fit the arena into ``memory_budget`` bytes by recomputation (see module doc)."""
    if memory_budget is None:
        return graph
    budget = parse_bytes(memory_budget)
    arena, peak = measure(graph)
    if arena <= budget:
        return graph
    model = MemoryModel(graph)
    stash = stash_values(graph, model)
    # Screen every strategy by its schedule's peak of live bytes (cheap), then plan the
    # arenas of the cheapest fitting ones in order of recompute cost.
    screened = []
    for label, keep in strategies(graph, stash):
        candidate = rewrite_with_recompute(graph, keep, model, share_variables=True)
        if candidate is graph:
            continue
        order, c_peak = schedule_peak(candidate)
        cost = sum(_flops(candidate, nd) for nd in candidate.nodes if nd.role == RECOMPUTE)
        screened.append((c_peak, cost, label, keep, candidate, order))
    fitting = sorted((c for c in screened if c[0] <= budget), key=lambda c: (c[1], c[0]))
    rest = sorted((c for c in screened if c[0] > budget), key=lambda c: (c[0], c[1]))[:2]
    best_any = (arena, peak, "no recompute")
    for _, _, label, keep, candidate, order in fitting + rest:
        c_arena, c_live = measure(candidate, order)
        if c_arena <= budget:
            out = rewrite_with_recompute(graph, keep, model)
            out.metadata["graphc.recompute"] = label
            return out
        if c_arena < best_any[0]:
            best_any = (c_arena, c_live, label)
    c_arena, c_peak, label = best_any
    shown = ", ".join(f"{name} ({nbytes} B)" for name, nbytes in c_peak[:8])
    more = f" and {len(c_peak) - 8} more" if len(c_peak) > 8 else ""
    raise CompileError(f"no plan fits the memory budget of {budget} bytes: the smallest arena reached is "
                       f"{c_arena} bytes (strategy {label!r}, recomputing among {len(stash)} stashed forward "
                       f"values); values live at its peak: {shown}{more}")
