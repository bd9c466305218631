"""Compiled plans: the :class:`Plan` wrapper, loading with validation, memory reports.

A plan (``graphc_pb2.Plan``, see proto/graphc.proto) is what the compiler writes and
the runtime reads: values with concrete dims and a storage each, a flat ordered
list of steps, and one arena.  This module depends only on the schema, so the
runtime side can load plans without importing the compiler.

Example::

    import graphc as gc
    plan = gc.compile(model, shapes={"x": (128, 784)})
    plan.save("model.plan")
    plan = gc.load_plan("model.plan")
    print(plan.feeds, plan.fetches, plan.arena_bytes)
    print(gc.memory_report(plan)["lower_bound_bytes"])
"""

import os

from google.protobuf.message import DecodeError

from graphc import dtypes
from graphc._proto import graphc_pb2 as pb
from graphc.errors import ModelFormatError
from graphc.fileio import atomic_write
from graphc.proto_enums import dtype_from_proto

FORMAT_VERSION = 1          # the plan format this code writes
MIN_CONSUMER_VERSION = 1    # readers older than this must refuse what we write
SUPPORTED_VERSION = 1       # the newest plan format this code reads
ALIGNMENT = 64              # ARENA offsets are multiples of this

_STORAGES = frozenset(pb.Storage.values())
_ROLES = frozenset(pb.Role.values())


class Plan:
    """A compiled plan.  ``.proto`` is the underlying ``graphc_pb2.Plan``."""

    def __init__(self, proto):
        if not isinstance(proto, pb.Plan):
            raise TypeError(f"Plan wraps a graphc_pb2.Plan, got {type(proto).__name__}")
        self.proto = proto

    # -- views of the proto --------------------------------------------------------
    @property
    def target(self):
        return self.proto.target

    @property
    def values(self):
        return self.proto.values

    @property
    def steps(self):
        return self.proto.steps

    @property
    def feeds(self):
        """Names of the values fed by the caller, in placeholder order."""
        return [self.proto.values[i].name for i in self.proto.feeds]

    @property
    def fetches(self):
        """Names of the values run() returns, in order."""
        return [self.proto.values[i].name for i in self.proto.fetches]

    @property
    def arena_bytes(self):
        return self.proto.arena_bytes

    @property
    def training(self):
        """The TrainingSpec, or None for an inference plan."""
        return self.proto.training if self.proto.HasField("training") else None

    def value_index(self, name):
        for i, v in enumerate(self.proto.values):
            if v.name == name:
                return i
        raise KeyError(f"plan has no value named {name!r}")

    def memory_report(self):
        return memory_report(self)

    # -- bytes ---------------------------------------------------------------------
    def to_bytes(self):
        """The deterministic serialization: the same plan gives the same bytes."""
        return self.proto.SerializeToString(deterministic=True)

    def save(self, path):
        """Write the plan atomically: a temp file in the same folder, fsync, rename."""
        atomic_write(path, self.to_bytes())

    def __eq__(self, other):
        return isinstance(other, Plan) and self.to_bytes() == other.to_bytes()

    __hash__ = None

    def __repr__(self):
        return (f"<gc.Plan target={self.target} steps={len(self.steps)} values={len(self.values)} "
                f"arena_bytes={self.arena_bytes} feeds={self.feeds} fetches={self.fetches}>")


# -- loading -------------------------------------------------------------------------

def plan_from_bytes(data, what="plan"):
    """Parse and validate plan bytes; raises ModelFormatError."""
    proto = pb.Plan()
    try:
        proto.ParseFromString(bytes(data))
    except (DecodeError, ValueError, RuntimeError) as e:
        raise ModelFormatError(f"{what}: not a graphc plan (protobuf decode failed: {e})") from None
    validate_plan(proto, what)
    return Plan(proto)


def load_plan(path):
    """Load a ``.plan`` file written by ``Plan.save``; raises ModelFormatError for a
    missing, truncated, corrupt, inconsistent or too-new file."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ModelFormatError(f"cannot read plan {path!r}: {e.strerror or e}") from None
    return plan_from_bytes(data, f"plan {path!r}")


def _numel(dims):
    n = 1
    for d in dims:
        n *= d
    return n


def _check_tensor(t, what):
    """dtype, dims and inline byte length of a graphc.Tensor; returns (dtype name, dims)."""
    try:
        name = dtype_from_proto(t.dtype)
    except KeyError:
        raise ModelFormatError(f"{what}: invalid dtype code {t.dtype}") from None
    dims = tuple(t.dims)
    if any(d < 0 for d in dims):
        raise ModelFormatError(f"{what}: negative dimension in {list(dims)}")
    if t.HasField("external"):
        raise ModelFormatError(f"{what}: plans keep tensor data inline; external data is not allowed")
    expected = _numel(dims) * dtypes.itemsize(name)
    if len(t.raw_data) != expected:
        raise ModelFormatError(f"{what}: raw_data has {len(t.raw_data)} bytes, expected {expected}")
    return name, dims


def validate_plan(proto, what="plan"):
    """Check every structural claim of a plan; raises ModelFormatError on the first lie.

    Checked: versions; value names unique, dtypes valid, dims >= 0, nbytes ==
    numel * itemsize; ARENA offsets aligned and inside the arena; PERSISTENT /
    CONSTANT indices in range with matching dtype and dims; VIEW aliases in range,
    non-view, same byte size; step, feed and fetch indices in range; no step writes a
    CONSTANT; feeds in ARENA.
    """
    if proto.format_version < 1:
        raise ModelFormatError(f"{what}: not a graphc plan (format_version {proto.format_version})")
    if proto.min_consumer_version > SUPPORTED_VERSION:
        raise ModelFormatError(f"{what}: needs a reader of plan format >= {proto.min_consumer_version}; "
                               f"this graphc reads up to {SUPPORTED_VERSION}")
    persistent = []
    for i, var in enumerate(proto.persistent):
        vwhat = f"{what}: persistent[{i}] ({var.name!r})"
        dtype, dims = _check_tensor(var.init, vwhat + " init")
        try:
            vdtype = dtype_from_proto(var.dtype)
        except KeyError:
            raise ModelFormatError(f"{vwhat}: invalid dtype code {var.dtype}") from None
        if vdtype != dtype or tuple(var.dims) != dims:
            raise ModelFormatError(f"{vwhat}: init is {dtype} {list(dims)} but the variable is "
                                   f"{vdtype} {list(var.dims)}")
        persistent.append((dtype, dims))
    constants = [_check_tensor(t, f"{what}: constants[{i}]") for i, t in enumerate(proto.constants)]

    n = len(proto.values)
    names = set()
    arena = proto.arena_bytes
    for i, v in enumerate(proto.values):
        vwhat = f"{what}: values[{i}] ({v.name!r})"
        if not v.name or v.name in names:
            raise ModelFormatError(f"{vwhat}: value names must be unique and non-empty")
        names.add(v.name)
        try:
            dtype = dtype_from_proto(v.dtype)
        except KeyError:
            raise ModelFormatError(f"{vwhat}: invalid dtype code {v.dtype}") from None
        dims = tuple(v.dims)
        if any(d < 0 for d in dims):
            raise ModelFormatError(f"{vwhat}: negative dimension in {list(dims)}")
        if v.nbytes != _numel(dims) * dtypes.itemsize(dtype):
            raise ModelFormatError(f"{vwhat}: nbytes {v.nbytes} != numel * itemsize of {dtype} {list(dims)}")
        if v.storage not in _STORAGES:
            raise ModelFormatError(f"{vwhat}: invalid storage code {v.storage}")
        if v.storage == pb.ARENA:
            if v.offset % ALIGNMENT:
                raise ModelFormatError(f"{vwhat}: arena offset {v.offset} is not {ALIGNMENT}-byte aligned")
            if v.offset + v.nbytes > arena:
                raise ModelFormatError(f"{vwhat}: bytes [{v.offset}, {v.offset + v.nbytes}) lie outside the "
                                       f"arena of {arena} bytes")
        elif v.storage in (pb.PERSISTENT, pb.CONSTANT):
            table, tname = (persistent, "persistent") if v.storage == pb.PERSISTENT else (constants, "constants")
            if not 0 <= v.index < len(table):
                raise ModelFormatError(f"{vwhat}: index {v.index} is outside {tname} (size {len(table)})")
            if table[v.index] != (dtype, dims):
                raise ModelFormatError(f"{vwhat}: is {dtype} {list(dims)} but {tname}[{v.index}] is "
                                       f"{table[v.index][0]} {list(table[v.index][1])}")
        else:  # VIEW
            if not 0 <= v.alias_of < n or v.alias_of == i:
                raise ModelFormatError(f"{vwhat}: alias_of {v.alias_of} is not another value (there are {n})")
            root = proto.values[v.alias_of]
            if root.storage == pb.VIEW:
                raise ModelFormatError(f"{vwhat}: alias_of must name a root value, not another view")
            if root.nbytes != v.nbytes:
                raise ModelFormatError(f"{vwhat}: a view of {v.nbytes} bytes cannot alias {root.name!r} "
                                       f"of {root.nbytes} bytes")

    def check_index(idx, where):
        if not 0 <= idx < n:
            raise ModelFormatError(f"{what}: {where} names value {idx}, but there are {n} values")

    for s, step in enumerate(proto.steps):
        if not step.op:
            raise ModelFormatError(f"{what}: steps[{s}] has no op")
        if step.role not in _ROLES:
            raise ModelFormatError(f"{what}: steps[{s}] has an invalid role code {step.role}")
        for idx in step.inputs:
            check_index(idx, f"steps[{s}] ({step.node!r}) input")
        for idx in step.outputs:
            check_index(idx, f"steps[{s}] ({step.node!r}) output")
            if proto.values[idx].storage == pb.CONSTANT:
                raise ModelFormatError(f"{what}: steps[{s}] ({step.node!r}) writes constant "
                                       f"{proto.values[idx].name!r}, which is read-only")
    for idx in proto.feeds:
        check_index(idx, "feeds")
        if proto.values[idx].storage != pb.ARENA:
            raise ModelFormatError(f"{what}: feed {proto.values[idx].name!r} must live in the arena")
    for idx in proto.fetches:
        check_index(idx, "fetches")
    return proto


# -- memory report -------------------------------------------------------------------

def compute_memory_report(proto):
    """The memory report of a plan, computed from its values and steps (a dict).

    Liveness: an ARENA value is live from the step that produces it (inputs and other
    values no step produces: from step 0) to the last step that reads it or a view of
    it; a fetched value (or the root of a fetched view) stays live to the last step.
    ``step_live_bytes[s]`` counts the distinct arena buffers live at step ``s``: an
    output that takes over the bytes of a dying direct input in place (same offset,
    size and dtype; the input not fetched and read for the last time at that step, as
    ``verify_plan`` accepts it) is counted once.  ``lower_bound_bytes`` is the most of
    these over the steps: the buffers live at one step occupy disjoint bytes, so no
    arena for this schedule and these reuse decisions can be smaller.  With no steps,
    every arena value counts as live at once.
    """
    values = proto.values
    nsteps = len(proto.steps)
    last = max(nsteps - 1, 0)

    def root(i):
        v = values[i]
        return v.alias_of if v.storage == pb.VIEW else i

    start, end = {}, {}
    for i, v in enumerate(values):
        if v.storage == pb.ARENA:
            start[i] = 0
            end[i] = 0
    produced = set()
    for s, step in enumerate(proto.steps):
        for i in step.workspaces:
            if i in start:
                produced.add(i)
                start[i] = end[i] = s
        for i in step.outputs:
            r = root(i)
            if r in start and r not in produced:  # the first write starts the live range
                produced.add(r)
                start[r] = s
                end[r] = max(end[r], s)
        for i in step.inputs:
            r = root(i)
            if r in end:
                end[r] = max(end[r], s)
    for i in proto.fetches:
        r = root(i)
        if r in end:
            end[r] = last
    arena_values = [i for i in range(len(values)) if values[i].storage == pb.ARENA]
    delta = [0] * (nsteps + 2)
    for i in arena_values:
        delta[start[i]] += values[i].nbytes
        delta[end[i] + 1] -= values[i].nbytes
    # In-place takeovers: the output and the dying input share bytes at that step.
    fetched = {root(i) for i in proto.fetches}
    taken = set()
    for s, step in enumerate(proto.steps):
        for o in step.outputs:
            vo = values[o]
            if vo.storage != pb.ARENA or not vo.nbytes or start.get(o) != s:
                continue
            for i in step.inputs:
                vi = values[i]
                if (i != o and vi.storage == pb.ARENA and i not in taken and i not in fetched
                        and end.get(i) == s and vi.offset == vo.offset and vi.nbytes == vo.nbytes
                        and vi.dtype == vo.dtype):
                    taken.add(i)
                    delta[s] -= vo.nbytes
                    delta[s + 1] += vo.nbytes
                    break
    step_live, running = [], 0
    for s in range(nsteps):
        running += delta[s]
        step_live.append(running)
    if nsteps:
        peak_step = max(range(nsteps), key=lambda s: (step_live[s], -s))
        lower = step_live[peak_step]
        peak_values = [values[i].name for i in arena_values
                       if start[i] <= peak_step <= end[i] and not (i in taken and end[i] == peak_step)]
    else:
        peak_step = -1
        lower = sum(values[i].nbytes for i in arena_values)
        peak_values = [values[i].name for i in arena_values]
    by_kind = {}
    for i in arena_values:
        by_kind[values[i].kind] = by_kind.get(values[i].kind, 0) + values[i].nbytes
    return {
        "arena_bytes": int(proto.arena_bytes),
        "naive_bytes": int(sum(values[i].nbytes for i in arena_values)),
        "lower_bound_bytes": int(lower),
        "arena_over_lower_bound": (proto.arena_bytes / lower if lower else
                                   float("inf") if proto.arena_bytes else 1.0),
        "peak_step": peak_step,
        "peak_values": peak_values,
        "step_live_bytes": [int(b) for b in step_live],
        "bytes_by_kind": dict(sorted(by_kind.items())),
        "persistent_bytes": int(sum(_numel(p.dims) * _itemsize(p.dtype) for p in proto.persistent)),
        "persistent_bytes_by_kind": _persistent_by_kind(proto),
    }


def _itemsize(code):
    try:
        return dtypes.itemsize(dtype_from_proto(code))
    except KeyError:
        return 0


def _persistent_by_kind(proto):
    """Persistent bytes split into "variable" (trainable), "optimizer_state" (not trainable,
    written by an optimizer step) and "state" (other non-trainable variables)."""
    written_by_optimizer = set()
    for step in proto.steps:
        if step.role == pb.OPTIMIZER:
            for i in step.outputs:
                if 0 <= i < len(proto.values) and proto.values[i].storage == pb.PERSISTENT:
                    written_by_optimizer.add(proto.values[i].index)
    out = {}
    for k, p in enumerate(proto.persistent):
        kind = "variable" if p.trainable else "optimizer_state" if k in written_by_optimizer else "state"
        out[kind] = out.get(kind, 0) + _numel(p.dims) * _itemsize(p.dtype)
    return dict(sorted(out.items()))


def fill_memory_report(proto):
    """Compute the memory report and store it in ``proto.memory``."""
    report = compute_memory_report(proto)
    m = proto.memory
    m.Clear()
    m.arena_bytes = report["arena_bytes"]
    m.naive_bytes = report["naive_bytes"]
    m.lower_bound_bytes = report["lower_bound_bytes"]
    m.peak_step = report["peak_step"]
    m.peak_values.extend(report["peak_values"])
    m.step_live_bytes.extend(report["step_live_bytes"])
    for kind, nbytes in report["bytes_by_kind"].items():
        m.bytes_by_kind[kind] = nbytes
    m.persistent_bytes = report["persistent_bytes"]
    for kind, nbytes in report["persistent_bytes_by_kind"].items():
        m.persistent_bytes_by_kind[kind] = nbytes
    return report


def memory_report(plan):
    """The memory report of a Plan (or graphc_pb2.Plan, or a .plan path) as a dict:
    arena_bytes, naive_bytes, lower_bound_bytes, arena_over_lower_bound, peak_step, peak_values,
    step_live_bytes, bytes_by_kind (arena: input, activation, gradient, optimizer,
    workspace), persistent_bytes, persistent_bytes_by_kind (variable, optimizer_state,
    state).  Recomputed from the plan's
    values and steps, so it is right even for a plan whose stored report is stale."""
    if isinstance(plan, (str, os.PathLike)):
        plan = load_plan(plan)
    proto = plan.proto if isinstance(plan, Plan) else plan
    return compute_memory_report(proto)
