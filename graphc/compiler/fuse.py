"""fuse — turn chains of elementwise nodes, and a matmul with its elementwise epilogue, into
single fused steps (issue 10).

Needs: a Graph with concrete shapes whose ``outputs`` are the fetches (after prune_graph).
Guarantees: a new Graph computing the same values in which

* every maximal group of *fusible* nodes (registry flag ``fusible``: elementwise, one float
  dtype in and out) whose intermediate values are all of the group's output shape and read
  only inside the group becomes one ``fused_elementwise`` node (two members or more); a node
  joins a group only if every value the group reads from outside is made before that node in
  the graph's order, so fusing never holds a member (and what it reads) back behind unrelated
  work — a running sum over an unrolled loop's steps stays one add per step;
* a node whose op declares ``epilogue_into`` (matmul → ``fused_matmul``) and whose output is
  read only by such a group (even a one-member group: a bias add, an activation) joins it:
  the epilogue runs on each block of the product while it is in cache;
* otherwise, a group whose output is read only by one node whose op declares
  ``prologue_into`` (sum, mean, max → ``fused_reduce``, over trailing axes only, as its
  inference says) (a weight-decay ``sum(w * w)``, a squared error's ``mean((p - t)²)``) joins
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
from graphc.errors import GraphcError
from graphc.graph import Node
from graphc.ops.fused import Instr, format_program


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
    __slots__ = ("root", "members", "shape", "dtype", "producer", "consumer")

    def __init__(self, root, shape, dtype):
        self.root = root
        self.members = [root]   # reverse program order while collecting
        self.shape = shape
        self.dtype = dtype
        self.producer = None
        self.consumer = None


def _fusible(graph, node):
    opdef = registry.get_op(node.op)
    if not opdef.fusible or len(node.outputs) != 1:
        return False
    out = graph.tensor(node.outputs[0])
    if out.dtype not in dtypes.FLOATS:
        return False
    return all(graph.tensor(i).dtype == out.dtype for i in node.inputs)


def _kernel_on(op_name, target):
    return op_name is not None and target in registry.get_op(op_name).kernels


def _accepts(graph, op_name, inputs, attrs, name):
    """Whether ``op_name``'s own inference accepts a fused node over ``inputs`` with ``attrs``:
    the fused op's declaration, not the pass, says what it can run (fused_reduce only reduces
    trailing axes, for one)."""
    opdef = registry.get_op(op_name)
    try:
        attrs = opdef.check_attrs(attrs, name)
        opdef.infer_node(Node(name, op_name, inputs, [name], attrs), [(graph.tensor(i).dtype, graph.tensor(i).shape)
                                                                    for i in inputs])
    except GraphcError:
        return False
    return True


def epilogue_attrs(producer, program):
    """The attrs of the fused op a producer's ``epilogue_into`` names."""
    return dict(producer.attrs, program=program)


def prologue_attrs(consumer, program):
    """The attrs of the fused op a consumer's ``prologue_into`` names."""
    return dict(consumer.attrs, program=program, reduce=consumer.op)


def find_groups(graph, target="cpu"):
    """The groups the pass fuses, each a (members in program order, producer or None, consumer
    or None) triple: the producer is a node whose op declares ``epilogue_into`` (a matmul whose
    product the group reads), the consumer one whose op declares ``prologue_into`` (a
    reduction of the group's output), each only where the target has the fused op's kernel
    and the fused op's inference accepts the node.  Groups of one member with neither are
    left out (nothing to fuse)."""
    order = _topological(graph)
    consumers = graph.consumers()
    protected = set(graph.outputs)
    if graph.training is not None and graph.training.loss:
        protected.add(graph.training.loss)
    producer_of = {o: node for node in order for o in node.outputs}
    # A fused node runs where its last member stood, so a member joins a group only if every
    # value the group reads from outside is made before that member: otherwise the member, and
    # the bytes it reads, would wait for later work.  (A gradient summed over the 64 steps of an
    # unrolled LSTM is a chain of adds, each reading a term made after the previous add; fused
    # into one node, all 64 terms of 1 MiB would be live at once.)  Constants are made nowhere.
    position = {}
    for k, node in enumerate(order):
        position[node.name] = -1 if registry.get_op(node.op).constant else k

    def made_at(value):
        prod = producer_of.get(value)
        return -1 if prod is None else position[prod.name]

    group_of = {}
    groups = []
    outside = []    # per group: {value it reads from outside: its producer's position}
    for node in reversed(order):
        if not _fusible(graph, node):
            continue
        out = graph.tensor(node.outputs[0])
        readers = consumers.get(out.name, ())
        group = None
        if out.name not in protected and readers:
            ids = {group_of.get(r.name) for r in readers}
            if len(ids) == 1 and None not in ids:
                gid = ids.pop()
                cand = groups[gid]
                if cand.shape == out.shape and cand.dtype == out.dtype and \
                        max((p for v, p in outside[gid].items() if v != out.name), default=-1) < position[node.name]:
                    group = cand
        if group is None:
            gid = group_of[node.name] = len(groups)
            groups.append(_Group(node, out.shape, out.dtype))
            outside.append({})
        else:
            gid = group_of[node.name] = group_of[group.root.name]
            group.members.append(node)
            del outside[gid][out.name]
        outside[gid].update((i, made_at(i)) for i in node.inputs)
    for gid, group in enumerate(groups):
        members = list(reversed(group.members))
        for member in members:  # program order: the first producer met wins
            for i in member.inputs:
                prod = producer_of.get(i)
                if prod is None or i in protected or len(prod.outputs) != 1:
                    continue
                fused_op = registry.get_op(prod.op).epilogue_into
                t = graph.tensor(i)
                if not _kernel_on(fused_op, target) or t.shape != group.shape or t.dtype != group.dtype:
                    continue
                if not all(group_of.get(r.name) == gid for r in consumers.get(i, ())):
                    continue
                inputs, program = build_program(members, prod)
                if _accepts(graph, fused_op, inputs, epilogue_attrs(prod, program), group.root.name):
                    group.producer = prod
                    break
            if group.producer is not None:
                break
        out_name = group.root.outputs[0]
        readers = consumers.get(out_name, ())
        if group.producer is not None or out_name in protected or len(readers) != 1:
            continue
        cons = readers[0]
        fused_op = registry.get_op(cons.op).prologue_into
        if not _kernel_on(fused_op, target) or len(cons.inputs) != 1 or len(cons.outputs) != 1:
            continue
        inputs, program = build_program(members)
        if _accepts(graph, fused_op, inputs, prologue_attrs(cons, program), cons.name):
            group.consumer = cons
    out = []
    for group in groups:
        members = list(reversed(group.members))
        if len(members) >= 2 or group.producer is not None or group.consumer is not None:
            out.append((members, group.producer, group.consumer))
    return out


def build_program(members, producer=None):
    """The fused node's inputs (value names) and program text for ``members`` (program order),
    with ``producer``'s output as ``p`` when given (its inputs come first)."""
    inputs = list(producer.inputs) if producer is not None else []
    first = len(inputs)
    arg_of = {}
    if producer is not None:
        arg_of[producer.outputs[0]] = ("p", 0)
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
    chains = _kernel_on("fused_elementwise", target)
    groups = [(members, prod, cons) for members, prod, cons in find_groups(graph, target)
              if prod is not None or cons is not None or chains]
    if not groups:
        return graph
    fused_at = {}      # name of the node whose place the fused node takes -> the fused Node
    absorbed = set()   # names of nodes replaced by a fused node
    for members, prod, cons in groups:
        inputs, program = build_program(members, prod)
        parts = ([prod] if prod is not None else []) + members + ([cons] if cons is not None else [])
        root = parts[-1]
        op, attrs = "fused_elementwise", {"program": program}
        if prod is not None:
            op, attrs = registry.get_op(prod.op).epilogue_into, epilogue_attrs(prod, program)
        elif cons is not None:
            op, attrs = registry.get_op(cons.op).prologue_into, prologue_attrs(cons, program)
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
