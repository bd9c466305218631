"""Pass 6: assign_buffers — decide where every value's bytes live.

Needs: a scheduled Graph with concrete shapes (after infer_shapes and schedule_nodes).
Guarantees: a :class:`BufferAssignment` (plain data) with one :class:`Buffer` per
value, in plan value order (placeholders, variables, then node outputs in schedule
order):

- placeholder → ARENA, kind "input" (the runtime copies feeds in);
- variable → PERSISTENT, ``index`` into ``persistent`` (variable names, graph order);
- output of a ``constant`` node → CONSTANT, ``index`` into ``constants`` (no step);
- output of a VIEW op (``opdef.view``) → VIEW, ``alias_of`` = the root non-view value
  (chains followed), ``offset``/``index`` copied from the root, kind of the root (no step);
- output ``k`` of an op with ``opdef.inplace = {k: i}`` → PERSISTENT with the ``index``
  of input ``i``'s storage (optimizer updates write into the variable), kind of that
  storage, no arena bytes;
- output ``k`` of an op with ``alias`` (``opdef.alias_map(n)[k] = i``) → VIEW of the root
  of input ``i`` (an ARENA value a step computes), written in place by the node's step;
  the root's bytes stay live to the last read of any view or alias of it;
- any other node output → ARENA, kind by role: "activation" (forward, recompute),
  "gradient", "optimizer".

Arena offsets are planned: each ARENA value is live from the step that writes it (step 0
for placeholders) to the last step that reads it or a view of it (fetched values: to
the last step).  An elementwise op's output takes over the bytes of a direct input of
the same dtype and size that dies at that step (in place).  Values live at the same
time get disjoint 64-byte aligned ranges, packed by :mod:`graphc.compiler.plan_memory`.
A size-0 value gets offset 0 and takes no room.

Contiguous inputs: the roots of the inputs of a node whose op has ``contiguous_inputs`` (a
gradient bucket of allreduce_start/allreduce_wait) form one block, placed by plan_memory as a
single range: member k at ``block offset + sum of align(nbytes) of members 0..k-1`` (size-0
members too, so the kernel can check contiguity by pointers), the block live from the first
member's write to the last read of any member or alias of one.  Members neither take over
nor give up their bytes in place.  Nodes naming the same roots in the same order share the
block; a root in two different groups, a root that is not a computed ARENA value, or a root
named twice is a CompileError.  ``frees[s]`` lists the ARENA values
whose bytes are dead after step ``s`` (the runtime's poison mode fills them with NaN).

Kernel workspaces: a step may own scratch values (``workspaces[node name]``, kind
"workspace", live at that step only); an op asks for them with an
``opdef.workspace(ctx) -> [(dtype, dims)]`` function, ``ctx`` a
:class:`graphc.registry.WorkspaceContext` (conv2d and its gradient ops: im2col matrices).
"""

from dataclasses import dataclass, field

from graphc import registry
from graphc.compiler._memory import (
    ARENA,
    CONSTANT,
    PERSISTENT,
    VIEW,
    emits_step,
    fetched_roots,
    model_of,
    value_nbytes,
)
from graphc.compiler.plan_memory import ALIGNMENT, align, plan_memory
from graphc.errors import CompileError, where
from graphc.graph import GRADIENT, OPTIMIZER

_KIND_OF_ROLE = {GRADIENT: "gradient", OPTIMIZER: "optimizer"}

__all__ = ["ALIGNMENT", "ARENA", "CONSTANT", "PERSISTENT", "VIEW", "Buffer", "BufferAssignment",
           "align", "assign_buffers", "emits_step", "value_nbytes"]


@dataclass(frozen=True)
class Buffer:
    name: str
    dtype: str
    dims: tuple
    storage: str          # ARENA, PERSISTENT, CONSTANT or VIEW
    nbytes: int
    kind: str
    offset: int = 0       # ARENA: byte offset in the arena (VIEW: the root's)
    index: int = 0        # PERSISTENT / CONSTANT: index into the matching list (VIEW: the root's)
    alias_of: str = ""    # VIEW: the root value's name
    start: int = -1       # ARENA: first step the bytes are live (written); -1 otherwise
    end: int = -1         # ARENA: last step the bytes are live (read)
    inplace_of: str = ""  # ARENA: the input whose bytes this output took over at step ``start``
    step: str = ""        # workspace: the node whose step owns it


@dataclass
class BufferAssignment:
    buffers: dict = field(default_factory=dict)      # value name → Buffer, in plan value order
    arena_bytes: int = 0
    persistent: list = field(default_factory=list)   # variable names, Plan.persistent order
    constants: list = field(default_factory=list)    # constant value names, Plan.constants order
    frees: list = field(default_factory=list)        # per step: ARENA value names dead after it
    workspaces: dict = field(default_factory=dict)   # node name → workspace value names
    packing: str = ""                                # which plan_memory order won


def _workspace_requests(node, graph, target):
    fn = getattr(registry.get_op(node.op), "workspace", None)
    if fn is None:
        return []
    types = [(graph.tensor(t).dtype, tuple(graph.tensor(t).shape)) for t in node.inputs]
    outs = [(graph.tensor(t).dtype, tuple(graph.tensor(t).shape)) for t in node.outputs]
    return list(fn(registry.WorkspaceContext(node, types, outs, target)))


def assign_buffers(graph, target="cpu"):
    """``target``: the device whose kernels' workspaces are planned (an op's ``workspace``
    function sees it as ``ctx.target``: the CUDA matmul's cuBLASLt workspace, the CPU conv's
    im2col matrices)."""
    result = BufferAssignment()
    model = model_of(graph, graph.nodes)
    steps = [node for node in graph.nodes if emits_step(node)]
    last = max(len(steps) - 1, 0)
    fetched = fetched_roots(graph, model)

    # Arena values, their kinds and live intervals.
    info = {}   # name → [dtype, dims, nbytes, kind, start, end]
    for ph in graph.inputs:
        info[ph.name] = [ph.dtype, tuple(ph.shape), model.nbytes[ph.name], "input", 0, 0]
    step_of = {}
    for s, node in enumerate(steps):
        step_of[node.name] = s
        for r in model.arena_roots_read(node):
            info[r][5] = s
        for o in node.outputs:
            if model.storage[o] == ARENA and model.root[o] == o:
                t = graph.tensor(o)
                info[o] = [t.dtype, tuple(t.shape), model.nbytes[o], _KIND_OF_ROLE.get(node.role, "activation"), s, s]
        for k, (dtype, dims) in enumerate(_workspace_requests(node, graph, target)):
            name = f"{node.name}/workspace:{k}"
            info[name] = [dtype, tuple(dims), value_nbytes(dtype, dims), "workspace", s, s]
            result.workspaces.setdefault(node.name, []).append(name)
    for r in fetched:
        info[r][5] = last
    groups, member_of = _contiguous_groups(steps, model, info, graph)

    # In place: an elementwise output takes over a dying direct input of the same dtype and size.
    group = {name: name for name in info}
    inplace_of = {}
    taken = set()  # inputs whose bytes an output already took (inplace_of's values, for O(1) lookups)
    for s, node in enumerate(steps):
        if not registry.get_op(node.op).elementwise or len(node.outputs) != 1:
            continue
        o = node.outputs[0]
        if o not in info or info[o][2] == 0 or o in member_of:
            continue
        for i in node.inputs:
            if (i in info and model.root[i] == i and i not in fetched and info[i][5] == s and i not in member_of
                    and info[i][0] == info[o][0] and info[i][2] == info[o][2] and i not in taken):
                inplace_of[o] = i
                taken.add(i)
                group[o] = group[i]
                break
    members = {}
    for name in info:
        members.setdefault(group[name], []).append(name)
    blocks = []
    prefix = {}  # contiguous member → its byte offset in the block
    for g, roots in enumerate(groups):
        at = 0
        for r in roots:
            prefix[r] = at
            at += align(info[r][2])
        size = prefix[roots[-1]] + info[roots[-1]][2]
        blocks.append((("contiguous", g), size, min(info[r][4] for r in roots), max(info[r][5] for r in roots)))
    for head, names in members.items():
        if head in member_of:
            continue
        if len(names) == 1:
            _, _, nbytes, _, start, end = info[head]
            blocks.append((head, nbytes, start, end))
        else:
            blocks.append((head, max(info[n][2] for n in names), min(info[n][4] for n in names),
                           max(info[n][5] for n in names)))
    offsets, arena_bytes, how = plan_memory(blocks)
    result.arena_bytes = arena_bytes
    result.packing = how

    # Frees: after its last step a value's bytes are dead, unless an output took them over.
    result.frees = [[] for _ in steps]
    for name, (_, _, _, _, _, end) in info.items():
        if name not in fetched and name not in taken and steps:
            result.frees[end].append(name)

    buffers = result.buffers

    def arena(name):
        dtype, dims, nbytes, kind, start, end = info[name]
        if name in member_of:
            offset = offsets[("contiguous", member_of[name])] + prefix[name]
        else:
            offset = offsets[group[name]] if nbytes else 0
        buffers[name] = Buffer(name, dtype, dims, ARENA, nbytes, kind, offset=offset,
                               start=start, end=end, inplace_of=inplace_of.get(name, ""))

    for ph in graph.inputs:
        arena(ph.name)
    for var in graph.variables:
        buffers[var.name] = Buffer(var.name, var.dtype, tuple(var.shape), PERSISTENT, model.nbytes[var.name],
                                   "variable", index=len(result.persistent))
        result.persistent.append(var.name)
    for node in graph.nodes:
        opdef = registry.get_op(node.op)
        for o in node.outputs:
            t = graph.tensor(o)
            if o in model.aliased:
                root = buffers[model.root[o]]
                buffers[o] = Buffer(o, t.dtype, tuple(t.shape), VIEW, model.nbytes[o], root.kind,
                                    offset=root.offset, index=root.index, alias_of=root.name)
            elif opdef.constant:
                buffers[o] = Buffer(o, t.dtype, tuple(t.shape), CONSTANT, model.nbytes[o], "constant",
                                    index=len(result.constants))
                result.constants.append(o)
            elif opdef.view:
                root = buffers[model.root[o]]
                buffers[o] = Buffer(o, t.dtype, tuple(t.shape), VIEW, model.nbytes[o], root.kind,
                                    offset=root.offset, index=root.index, alias_of=root.name)
            elif model.storage[o] == PERSISTENT:
                var = buffers[model.variable[o]]
                buffers[o] = Buffer(o, t.dtype, tuple(t.shape), PERSISTENT, model.nbytes[o], var.kind,
                                    index=var.index)
            else:
                arena(o)
        for w in result.workspaces.get(node.name, []):
            arena(w)
            buffers[w] = Buffer(**{**buffers[w].__dict__, "step": node.name})
    # Sort frees in plan value order for determinism.
    position = {name: k for k, name in enumerate(buffers)}
    result.frees = [sorted(f, key=position.__getitem__) if len(f) > 1 else f for f in result.frees]
    return result


def _contiguous_groups(steps, model, info, graph):
    """The blocks of contiguous inputs: (list of root lists, {root: group index})."""
    groups, member_of, by_roots = [], {}, {}
    placeholders = {ph.name for ph in graph.inputs}
    for node in steps:
        if not getattr(registry.get_op(node.op), "contiguous_inputs", False):
            continue
        roots = tuple(model.root[i] for i in node.inputs)
        if roots in by_roots:
            continue
        for k, r in enumerate(roots):
            why = None
            if r in placeholders:
                why = "is a fed placeholder"
            elif model.storage[r] != ARENA or r not in info:
                why = f"is a {model.storage[r].lower()} value, not one a step computes in the arena"
            elif r in roots[:k]:
                why = f"is also input {roots.index(r)} of the node (each member once)"
            elif r in member_of:
                other = groups[member_of[r]]
                why = (f"is already in the contiguous block {list(other)} of another node, "
                       f"in a different arrangement")
            if why:
                raise CompileError(f"{node.describe()} needs its inputs back to back in one arena range "
                                   f"(contiguous_inputs), but input {k} ({node.inputs[k]!r}, bytes of "
                                   f"{r!r}) {why}{where(node.provenance)}")
        by_roots[roots] = len(groups)
        for r in roots:
            member_of[r] = len(groups)
        groups.append(list(roots))
    return groups, member_of
