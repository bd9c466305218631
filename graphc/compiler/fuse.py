"""fuse — turn chains of elementwise nodes, and a matmul with its elementwise epilogue, into
single fused steps (issue 10).

Needs: a Graph with concrete shapes whose ``outputs`` are the fetches (after prune_graph).
Guarantees: a new Graph computing the same values in which

* every maximal group of *fusible* nodes (registry flag ``fusible``: elementwise, one float
  dtype in and out) whose intermediate values are all of the group's output shape and read
  only inside the group becomes one ``fused_elementwise`` node (two members or more);
* a ``matmul`` whose product is read only by such a group (even a one-member group: a bias
  add, an activation) joins it as a ``fused_matmul`` node: the epilogue runs on each block
  of the product while it is in cache;
* otherwise, a group whose output is read only by one ``sum``, ``mean`` or ``max`` over
  trailing axes (a weight-decay ``sum(w * w)``, a squared error's ``mean((p - t)²)``) joins
  that reduction as a ``fused_reduce`` node: the prologue's values are reduced as they are
  made and never reach memory.

A group has one output, its last member's, which keeps its name: consumers, fetches and the
training loss need no renaming.  The fused node takes the last member's name, role, scope
and provenance, and lists every member (name, op, role, provenance) in ``Node.fused``, which
the plan keeps (PlanStep.fused) so that profiles, errors and drawings name the user's nodes
and lines.  Values the caller fetches are never fused away.  Because every intermediate has
the output's shape, a fused step does exactly the members' arithmetic, element by element:
the kernels evaluate each member with the unfused kernel's own scalar code, so fused and
unfused plans agree bit for bit (tests/test_fusion.py).

Fusion is skipped for a target whose runtime has no kernel for the fused op (its registry
``kernels``), and entirely with ``enabled=False`` (``compile(fuse=False)``,
``graphc compile --no-fuse``).  A group is convex by construction: only its last member's
output leaves it, so joining it cannot create a cycle.
"""

from graphc import dtypes, registry
from graphc.compiler._rebuild import copy_node, copy_placeholder, copy_variable, new_graph_like, node_types
from graphc.graph import Node
from graphc.ops.fused import REDUCTIONS, Instr, format_program, reduced_axes_are_trailing


class FusedMember:
    """One node a fused node runs, as the plan records it (PlanStep.fused)."""

    __slots__ = ("name", "op", "role", "provenance")

    def __init__(self, name, op, role, provenance):
        self.name = name
        self.op = op
        self.role = role
        self.provenance = provenance

    def __repr__(self):
        return f"FusedMember({self.name!r}, {self.op!r})"


def _topological(graph):
    """The graph's nodes in a topological order (its own order when that is one)."""
    produced = {ph.name for ph in graph.inputs} | {v.name for v in graph.variables}
    ok = True
    for node in graph.nodes:
        if any(i not in produced for i in node.inputs):
            ok = False
            break
        produced.update(node.outputs)
    if ok:
        return list(graph.nodes)
    producer = {o: node for node in graph.nodes for o in node.outputs}
    order, state = [], {}
    for root in graph.nodes:
        stack = [(root, False)]
        while stack:
            node, done = stack.pop()
            if done:
                if state.get(node.name) != 2:
                    state[node.name] = 2
                    order.append(node)
                continue
            if state.get(node.name):
                continue
            state[node.name] = 1
            stack.append((node, True))
            stack.extend((producer[i], False) for i in node.inputs if i in producer and not state.get(producer[i].name))
    return order


class _Group:
    __slots__ = ("root", "members", "shape", "dtype", "matmul", "reduce")

    def __init__(self, root, shape, dtype):
        self.root = root
        self.members = [root]   # reverse program order while collecting
        self.shape = shape
        self.dtype = dtype
        self.matmul = None
        self.reduce = None


def _fusible(graph, node):
    opdef = registry.get_op(node.op)
    if not opdef.fusible or len(node.outputs) != 1:
        return False
    out = graph.tensor(node.outputs[0])
    if out.dtype not in dtypes.FLOATS:
        return False
    return all(graph.tensor(i).dtype == out.dtype for i in node.inputs)


def _is_matmul(graph, node):
    return node.op == "matmul" and graph.tensor(node.outputs[0]).dtype in dtypes.FLOATS


def find_groups(graph, allow_matmul=True, allow_reduce=True):
    """The groups the pass fuses, each a (members in program order, matmul node or None, reduce
    node or None) triple; groups of one member with neither are left out (nothing to fuse)."""
    order = _topological(graph)
    consumers = graph.consumers()
    protected = set(graph.outputs)
    if graph.training is not None and graph.training.loss:
        protected.add(graph.training.loss)
    group_of = {}
    groups = []
    for node in reversed(order):
        if not _fusible(graph, node):
            continue
        out = graph.tensor(node.outputs[0])
        readers = consumers.get(out.name, ())
        group = None
        if out.name not in protected and readers:
            ids = {group_of.get(r.name) for r in readers}
            if len(ids) == 1 and None not in ids:
                cand = groups[ids.pop()]
                if cand.shape == out.shape and cand.dtype == out.dtype:
                    group = cand
        if group is None:
            group_of[node.name] = len(groups)
            groups.append(_Group(node, out.shape, out.dtype))
        else:
            group_of[node.name] = group_of[group.root.name]
            group.members.append(node)
    if allow_matmul:
        producer = {o: node for node in order for o in node.outputs}
        for gid, group in enumerate(groups):
            for member in reversed(group.members):  # program order: the first matmul met wins
                for i in member.inputs:
                    mm = producer.get(i)
                    if mm is None or not _is_matmul(graph, mm) or i in protected:
                        continue
                    t = graph.tensor(i)
                    if t.shape != group.shape or t.dtype != group.dtype:
                        continue
                    if all(group_of.get(r.name) == gid for r in consumers.get(i, ())):
                        group.matmul = mm
                        break
                if group.matmul is not None:
                    break
    if allow_reduce:
        for group in groups:
            out_name = group.root.outputs[0]
            readers = consumers.get(out_name, ())
            if group.matmul is not None or out_name in protected or len(readers) != 1:
                continue
            red = readers[0]
            if red.op not in REDUCTIONS or graph.tensor(red.outputs[0]).dtype != group.dtype:
                continue
            if reduced_axes_are_trailing(group.shape, red.attrs.get("axes")):
                group.reduce = red
    out = []
    for group in groups:
        members = list(reversed(group.members))
        if len(members) >= 2 or group.matmul is not None or group.reduce is not None:
            out.append((members, group.matmul, group.reduce))
    return out


def build_program(members, matmul=None):
    """The fused node's inputs (value names) and program text for ``members`` (program order),
    with ``matmul``'s product as ``p`` when given (its operands are then inputs 0 and 1)."""
    inputs = list(matmul.inputs) if matmul is not None else []
    first = len(inputs)
    arg_of = {}
    if matmul is not None:
        arg_of[matmul.outputs[0]] = ("p", 0)
    instrs = []
    for member in members:
        args = []
        for i in member.inputs:
            arg = arg_of.get(i)
            if arg is None:
                if i not in inputs[first:]:
                    inputs.append(i)
                arg = ("i", first + inputs[first:].index(i))
            args.append(arg)
        opdef = registry.get_op(member.op)
        attrs = {k: v for k, v in member.attrs.items() if k in opdef.attrs}
        instrs.append(Instr(member.op, args, attrs))
        arg_of[member.outputs[0]] = ("r", len(instrs) - 1)
    return inputs, format_program(instrs)


def fuse(graph, target="cpu", enabled=True):
    if not enabled:
        return graph
    fe = target in registry.get_op("fused_elementwise").kernels
    fm = target in registry.get_op("fused_matmul").kernels
    fr = target in registry.get_op("fused_reduce").kernels
    if not (fe or fm or fr):
        return graph
    groups = []
    for members, mm, red in find_groups(graph, allow_matmul=fm, allow_reduce=fr):
        if mm is None and red is None and not fe:
            continue
        groups.append((members, mm, red))
    if not groups:
        return graph
    fused_at = {}      # name of the node whose place the fused node takes -> the fused Node
    absorbed = set()   # names of nodes replaced by a fused node
    for members, mm, red in groups:
        inputs, program = build_program(members, mm)
        parts = ([mm] if mm is not None else []) + members + ([red] if red is not None else [])
        root = parts[-1]
        attrs = {"program": program}
        op = "fused_elementwise"
        if mm is not None:
            op = "fused_matmul"
            attrs = {"transpose_a": mm.attrs.get("transpose_a", False),
                     "transpose_b": mm.attrs.get("transpose_b", False), "program": program}
        elif red is not None:
            op = "fused_reduce"
            attrs = {"program": program, "reduce": red.op, "axes": red.attrs.get("axes"),
                     "keepdims": red.attrs.get("keepdims", False)}
        node = Node(root.name, op, inputs, root.outputs, attrs, root.role, root.provenance, root.scope)
        node.fused = tuple(FusedMember(p.name, p.op, p.role, p.provenance) for p in parts)
        fused_at[root.name] = node
        absorbed.update(p.name for p in parts)
    out = new_graph_like(graph)
    for ph in graph.inputs:
        copy_placeholder(out, ph)
    for var in graph.variables:
        copy_variable(out, var)
    for node in _topological(graph):
        if node.name in fused_at:
            copy_node(out, fused_at[node.name], node_types(graph, node))
        elif node.name not in absorbed:
            copy_node(out, node, node_types(graph, node))
    out.outputs = list(graph.outputs)
    return out
