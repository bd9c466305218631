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
- any other node output → ARENA, kind by role: "activation" (forward, recompute),
  "gradient", "optimizer".

``nbytes`` = numel * itemsize (bool: 1 byte).  Each ARENA value gets its own region at
a 64-byte aligned offset (a size-0 value gets nbytes 0 at a valid aligned offset
and takes no room); ``arena_bytes`` is the end of the last region.  The memory
planner will replace this pass with one that reuses regions; it must return the same
structure.
"""

from dataclasses import dataclass, field

from graphc import dtypes, registry
from graphc.graph import GRADIENT, OPTIMIZER

ALIGNMENT = 64

ARENA, PERSISTENT, CONSTANT, VIEW = "ARENA", "PERSISTENT", "CONSTANT", "VIEW"

_KIND_OF_ROLE = {GRADIENT: "gradient", OPTIMIZER: "optimizer"}


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


@dataclass
class BufferAssignment:
    buffers: dict = field(default_factory=dict)      # value name → Buffer, in plan value order
    arena_bytes: int = 0
    persistent: list = field(default_factory=list)   # variable names, Plan.persistent order
    constants: list = field(default_factory=list)    # constant value names, Plan.constants order


def align(n, alignment=ALIGNMENT):
    return (n + alignment - 1) // alignment * alignment


def value_nbytes(dtype, dims):
    numel = 1
    for d in dims:
        numel *= int(d)
    return numel * dtypes.itemsize(dtype)


def emits_step(node):
    """Whether a node becomes a PlanStep (constants and views do not)."""
    return node.op != "constant" and not registry.get_op(node.op).view


def assign_buffers(graph):
    result = BufferAssignment()
    buffers = result.buffers
    cursor = 0

    def arena(name, dtype, dims, kind):
        nonlocal cursor
        nbytes = value_nbytes(dtype, dims)
        buffers[name] = Buffer(name, dtype, tuple(dims), ARENA, nbytes, kind, offset=cursor)
        cursor = align(cursor + nbytes)

    for ph in graph.inputs:
        arena(ph.name, ph.dtype, ph.shape, "input")
    for var in graph.variables:
        buffers[var.name] = Buffer(var.name, var.dtype, tuple(var.shape), PERSISTENT,
                                   value_nbytes(var.dtype, var.shape), "variable", index=len(result.persistent))
        result.persistent.append(var.name)
    for node in graph.nodes:
        for o in node.outputs:
            t = graph.tensor(o)
            nbytes = value_nbytes(t.dtype, t.shape)
            if node.op == "constant":
                buffers[o] = Buffer(o, t.dtype, tuple(t.shape), CONSTANT, nbytes, "constant",
                                    index=len(result.constants))
                result.constants.append(o)
            elif registry.get_op(node.op).view:
                root = buffers[node.inputs[0]]
                if root.storage == VIEW:
                    root = buffers[root.alias_of]
                buffers[o] = Buffer(o, t.dtype, tuple(t.shape), VIEW, nbytes, root.kind,
                                    offset=root.offset, index=root.index, alias_of=root.name)
            else:
                arena(o, t.dtype, t.shape, _KIND_OF_ROLE.get(node.role, "activation"))
    result.arena_bytes = cursor
    return result
