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

import bisect
import os
import re

from google.protobuf.message import DecodeError

from graphc import dtypes, registry
from graphc._proto import graphc_pb2 as pb
from graphc.errors import GraphError, ModelFormatError, quote
from graphc.fileio import atomic_write
from graphc.proto_enums import dtype_from_proto, is_program_bytes

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

def _where(provenance):
    return f"{provenance.file}:{provenance.line}" if provenance.file else ""


def step_members(step):
    """The graph nodes a plan step runs, as dicts (node, op, file, line): its fused members in
    program order, or the step's own node for an unfused step."""
    if step.fused:
        return [{"node": m.node, "op": m.op, "file": m.provenance.file, "line": int(m.provenance.line)}
                for m in step.fused]
    return [{"node": step.node, "op": step.op, "file": step.provenance.file, "line": int(step.provenance.line)}]


_STEP_PREFIX = re.compile(r"step (\d+) ")


def explain_step_error(proto, message):
    """A runtime message that starts with ``step N (...)`` (the C++ executor's wording), with
    where the user built that step appended: its file:line, and for a fused step every member
    node with its own line, so the error points at the user's code rather than a fused op."""
    m = _STEP_PREFIX.match(message)
    if m is None or not 0 <= int(m.group(1)) < len(proto.steps):
        return message
    step = proto.steps[int(m.group(1))]
    if step.fused:
        members = ", ".join(f"{x['node']} ({x['op']}" + (f" at {x['file']}:{x['line']})" if x["file"] else ")")
                            for x in step_members(step))
        return f"{message} [fused step running: {members}]"
    where = _where(step.provenance)
    return f"{message} [built at {where}]" if where else message


def plan_from_bytes(data, what="plan"):
    """Parse and validate plan bytes; raises ModelFormatError."""
    proto = pb.Plan()
    try:
        proto.ParseFromString(bytes(data))
    except (DecodeError, ValueError, RuntimeError) as e:
        raise ModelFormatError(f"{what}: not a graphc plan (protobuf decode failed: {e})") from None
    if is_program_bytes(data):
        # A Program's fields (16..18) are unknown to Plan, so it would parse as an empty plan.
        raise ModelFormatError(f"{what}: is a compiled program of several entries, not a single plan (load it "
                               f"with gc.load_program, or run one entry with gc.Session(program))")
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


INT64_MAX = 2 ** 63 - 1


def _size_fits(dims, itemsize):
    """The runtime's size rule: the product of the non-zero dims times the itemsize fits
    in int64, so no index arithmetic over these dims can overflow (runtime/validate.h)."""
    n = itemsize
    for d in dims:
        if d:
            n *= d
    return n <= INT64_MAX


def _check_tensor(t, what, empty=False):
    """dtype, dims and inline byte length of a graphc.Tensor; returns (dtype name, dims).
    ``empty``: the data must be absent (a program's plan: the values live in the program)."""
    try:
        name = dtype_from_proto(t.dtype)
    except KeyError:
        raise ModelFormatError(f"{what}: invalid dtype code {t.dtype}") from None
    dims = tuple(t.dims)
    if any(d < 0 for d in dims):
        raise ModelFormatError(f"{what}: negative dimension in {list(dims)}")
    if t.HasField("external"):
        raise ModelFormatError(f"{what}: plans keep tensor data inline; external data is not allowed")
    if not _size_fits(dims, dtypes.itemsize(name)):
        raise ModelFormatError(f"{what}: dims {list(dims)} of {name} overflow int64 bytes")
    expected = 0 if empty else _numel(dims) * dtypes.itemsize(name)
    if len(t.raw_data) != expected:
        raise ModelFormatError(f"{what}: raw_data has {len(t.raw_data)} bytes, expected {expected}")
    return name, dims


def validate_plan(proto, what="plan", inplace_ok=None, layout=True, shared_persistent=False):
    """Check every claim of a plan; raises ModelFormatError on the first lie.

    The same rules as the C++ runtime's validator (runtime/validate.cc, the trust
    boundary), with friendlier messages; both are run against one corpus of malformed
    plans (tests/plan_corpus.py).  Checked: versions; value names unique, dtypes valid,
    dims >= 0, sizes that fit int64 (non-zero dims × itemsize), nbytes == numel *
    itemsize; ARENA offsets aligned and inside the arena; PERSISTENT / CONSTANT indices
    in range with matching dtype and dims; VIEW aliases in range, non-view, same byte
    size; step, feed, fetch, frees and workspace indices in range; no step writes a
    CONSTANT, nor a VIEW unless its op declares that output an ``alias`` of an input and
    the view aliases that input's ARENA root; frees and workspaces name ARENA values; feeds
    in ARENA, each once; ops known to the registry; and the memory layout
    (:func:`check_memory_layout`: liveness, overlap, alias generations, contiguity).
    Not checked here: the memory limit (a property of the machine that runs the plan:
    Session checks it) and what each kernel requires of its step's dims and attrs.

    ``inplace_ok(op) -> bool``: which ops may write an output over the exact bytes of a
    dying input; default: the registry's ``elementwise`` flag.  ``shared_persistent``: the
    plan is an entry of a program (graphc/program.py), whose persistent variables carry no
    init data (the program holds it once).
    """
    if proto.format_version < 1:
        raise ModelFormatError(f"{what}: not a graphc plan (format_version {proto.format_version})")
    if proto.min_consumer_version > SUPPORTED_VERSION:
        raise ModelFormatError(f"{what}: needs a reader of plan format >= {proto.min_consumer_version}; "
                               f"this graphc reads up to {SUPPORTED_VERSION}")
    persistent = []
    for i, var in enumerate(proto.persistent):
        vwhat = f"{what}: persistent[{i}] ({quote(var.name)})"
        dtype, dims = _check_tensor(var.init, vwhat + " init", empty=shared_persistent)
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
        vwhat = f"{what}: values[{i}] ({quote(v.name)})"
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
        if not _size_fits(dims, dtypes.itemsize(dtype)):
            raise ModelFormatError(f"{vwhat}: dims {list(dims)} of {dtype} overflow int64 bytes")
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
                raise ModelFormatError(f"{vwhat}: a view of {v.nbytes} bytes cannot alias {quote(root.name)} "
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
            check_index(idx, f"steps[{s}] ({quote(step.node)}) input")
        aliases = None
        for k, idx in enumerate(step.outputs):
            check_index(idx, f"steps[{s}] ({quote(step.node)}) output")
            storage = proto.values[idx].storage
            if storage == pb.VIEW:
                if aliases is None:
                    aliases = _alias_map(step.op, len(step.outputs))
                if k in aliases:
                    _check_alias_output(proto, s, step, k, aliases[k], what, check_index)
                    continue
            if storage in (pb.CONSTANT, pb.VIEW):
                kind = "constant" if storage == pb.CONSTANT else "view"
                raise ModelFormatError(f"{what}: steps[{s}] ({quote(step.node)}) writes {kind} "
                                       f"{quote(proto.values[idx].name)}, which is read-only")
        for field in ("frees", "workspaces"):
            for idx in getattr(step, field):
                check_index(idx, f"steps[{s}] ({quote(step.node)}) {field}")
                if proto.values[idx].storage != pb.ARENA:
                    raise ModelFormatError(f"{what}: steps[{s}] ({quote(step.node)}) {field} value {idx} "
                                           f"({quote(proto.values[idx].name)}), which is not an ARENA value")
    fed = set()
    for idx in proto.feeds:
        check_index(idx, "feeds")
        if proto.values[idx].storage != pb.ARENA:
            raise ModelFormatError(f"{what}: feed {quote(proto.values[idx].name)} must live in the arena")
        if idx in fed:
            raise ModelFormatError(f"{what}: feed {quote(proto.values[idx].name)} is listed twice")
        fed.add(idx)
    for idx in proto.fetches:
        check_index(idx, "fetches")
    if layout:
        check_memory_layout(proto, what, inplace_ok)
    return proto


def _alias_map(op, num_outputs):
    """The registry's ``{output: input}`` alias map of ``op`` ({} for an unknown op: whether the
    op exists is the in-place rule's question, see :func:`_registry_inplace_ok`)."""
    return registry.get_op(op).alias_map(num_outputs) if registry.has_op(op) else {}


def _check_alias_output(proto, s, step, k, i, what, check_index):
    """Output ``k`` of ``step`` is a VIEW its op writes in place through input ``i``: the view
    must alias that input's root, an ARENA value."""
    values = proto.values
    o = step.outputs[k]
    label = f"{what}: steps[{s}] ({quote(step.op)} {quote(step.node)})"
    if i >= len(step.inputs):
        raise ModelFormatError(f"{label} writes view {quote(values[o].name)} in place through input {i}, "
                               f"but the step has {len(step.inputs)} inputs")
    check_index(step.inputs[i], f"steps[{s}] ({quote(step.node)}) input")
    src = step.inputs[i]
    root = values[src].alias_of if values[src].storage == pb.VIEW else src
    if values[root].storage != pb.ARENA:
        raise ModelFormatError(f"{label} writes view {quote(values[o].name)} in place through input {i} "
                               f"({quote(values[src].name)}), which is not an arena value")
    if values[o].alias_of != root:
        raise ModelFormatError(f"{label} writes view {quote(values[o].name)} in place through input {i} "
                               f"({quote(values[src].name)}), so the view must alias that input's root "
                               f"{quote(values[root].name)}, not value {values[o].alias_of}")


def _check_contiguous(proto, s, step, label, name, root):
    values = proto.values
    roots = [root(i) for i in step.inputs]
    seen = set()
    for k, r in enumerate(roots):
        if values[r].storage != pb.ARENA:
            raise ModelFormatError(f"{label} needs its inputs back to back in the arena, but input {k} "
                                   f"({name(step.inputs[k])}) is not an arena value")
        if r in seen:
            raise ModelFormatError(f"{label} names the bytes of {name(r)} twice among its contiguous inputs")
        seen.add(r)
        if k:
            prev = values[roots[k - 1]]
            expected = (prev.offset + prev.nbytes + ALIGNMENT - 1) // ALIGNMENT * ALIGNMENT
            if values[r].offset != expected:
                raise ModelFormatError(f"{label} needs its inputs back to back in the arena, but input {k} "
                                       f"({name(step.inputs[k])}) is at offset {values[r].offset}, not "
                                       f"{expected} (input {k - 1} {name(roots[k - 1])} is bytes "
                                       f"[{prev.offset}, {prev.offset + prev.nbytes}))")


def _registry_inplace_ok(what):
    def inplace_ok(op):
        try:
            return registry.get_op(op).elementwise
        except GraphError:
            raise ModelFormatError(f"{what}: unknown op {quote(op)}") from None
    return inplace_ok


def check_memory_layout(proto, what="plan", inplace_ok=None):
    """Replay the steps of a structurally valid plan and check its memory layout, by the
    rules of graphc/compiler/verify_plan.py (and of the runtime's validator):

    - read before write: a step reads only feeds, constants, variables and values an
      earlier step wrote; persistent storage is not read in an old version after a step
      overwrote it, and a fetched persistent value is its last version;
    - an ARENA value is written once (never a feed), a PERSISTENT value at most once;
    - no overlap: ARENA values live at the same time (from the step that writes them,
      step 0 for feeds, to the last step that reads them or a view of them, fetched
      values to the end, workspaces at their step) occupy disjoint bytes, except an
      output written over the exact bytes (offset, size, dtype) of a direct input that
      dies at that step, when ``inplace_ok(op)``;
    - frees: each value in ``steps[s].frees`` is dead after step ``s``;
    - alias writes (a step writing a VIEW output through its op's ``alias``: the
      data-parallel collectives): the view's root is an ARENA value that is neither a feed
      nor a workspace; a view is written by one step, and read only after it; a step writing
      a root in place starts a new generation of it, and no later step reads an older one
      (the root itself, or a view written before);
    - contiguous inputs (ops with ``contiguous_inputs``): the inputs' roots are distinct
      ARENA values laid out back to back, each at the first 64-byte aligned offset after
      the previous one's end, so the one range the kernel reduces holds only them and
      padding no value can own;
    - split-phase completion: the outputs of a contiguous alias step whose op is scheduled
      "asap" (allreduce_start) are the inputs, in order, of a later contiguous alias step
      (its allreduce_wait), so the bucket's bytes stay live until the collective is done,
      and no other step reads those in-flight views.

    Returns the replayed liveness: ``{arena value index: (first step, last step)}``.
    """
    values = proto.values
    nsteps = len(proto.steps)
    last = max(nsteps - 1, 0)
    if inplace_ok is None:
        inplace_ok = _registry_inplace_ok(what)

    def name(i):
        return quote(values[i].name)

    def where(s):
        return f"{what}: steps[{s}] ({quote(proto.steps[s].op)} {quote(proto.steps[s].node)})"

    def root(i):
        return values[i].alias_of if values[i].storage == pb.VIEW else i

    feeds = set(proto.feeds)
    fetched_roots = {root(i) for i in proto.fetches}
    written = {i: -1 for i in feeds}       # ARENA value → the step that wrote it
    start = {i: 0 for i in feeds}
    end = dict(start)
    workspace_of = {}
    for s, step in enumerate(proto.steps):
        for w in step.workspaces:
            if w in workspace_of or w in feeds:
                raise ModelFormatError(f"{where(s)}: workspace {name(w)} must be an ARENA value owned by one step")
            workspace_of[w] = s
            start[w] = end[w] = s
            written[w] = s - 1             # usable during its step
    view_writer = {}                       # VIEW value written in place → the step that writes it
    # Only steps of alias / contiguous_inputs ops write views (validate_plan refuses the rest):
    # visit those alone, so plans without collectives pay one look at each step's op.
    ops = [step.op for step in proto.steps]
    special = {op for op in set(ops) if registry.has_op(op) and (registry.get_op(op).alias or
                                                                 registry.get_op(op).contiguous_inputs)}
    started = {}                           # outputs of a split-phase start (schedule asap) → its step
    completer = {}                         # a started view → the step that completes it (its only reader)
    for s in ([s for s, op in enumerate(ops) if op in special] if special else ()):
        step = proto.steps[s]
        for o in step.outputs:
            if values[o].storage != pb.VIEW:
                continue
            r = values[o].alias_of
            if o in view_writer:
                raise ModelFormatError(f"{where(s)} writes view {name(o)}, which steps[{view_writer[o]}] writes")
            if r in feeds or r in workspace_of:
                raise ModelFormatError(f"{where(s)} writes in place into {name(r)}, which is "
                                       f"{'a feed' if r in feeds else 'a workspace'}")
            view_writer[o] = s
        opdef = registry.get_op(step.op)
        if step.inputs and opdef.contiguous_inputs:
            _check_contiguous(proto, s, step, where(s), name, root)
            if opdef.alias and started.pop(tuple(step.inputs), None) is not None:
                for o in step.inputs:               # completes a split-phase start
                    completer[o] = s
        if opdef.alias and opdef.schedule == "asap" and opdef.contiguous_inputs:
            started.setdefault(tuple(step.outputs), s)
    if started:
        s = min(started.values())
        raise ModelFormatError(f"{where(s)} starts writing its inputs in place, but no later step completes it "
                               f"(a step of a contiguous_inputs alias op taking its outputs, in order): the bytes "
                               f"could be reused while the collective still writes them")
    generation = {}                        # ARENA root → the latest step that wrote it in place
    version = {i: -1 for i, v in enumerate(values)
               if v.storage == pb.PERSISTENT and v.name == proto.persistent[v.index].name}
    last_write = {}                        # persistent index → the latest step that wrote it
    inplace = []                           # (step, output, input whose exact bytes it may take)
    for s, step in enumerate(proto.steps):
        for i in step.inputs:
            r = root(i)
            st = values[r].storage
            if st == pb.ARENA:
                if written.get(r, s) >= s:
                    raise ModelFormatError(f"{where(s)} reads {name(i)} before any step writes it")
                end[r] = max(end[r], s)
                if view_writer:
                    w = view_writer.get(i)
                    if w is not None and w >= s:
                        raise ModelFormatError(f"{where(s)} reads {name(i)} before steps[{w}] writes it in place")
                    c = completer.get(i)
                    if c is not None and c != s:
                        raise ModelFormatError(f"{where(s)} reads {name(i)}, which steps[{w}] started writing in "
                                               f"place; only steps[{c}], which completes it, may read it")
                    g = generation.get(r)
                    if g is not None and (i == r or w is not None) and (w if w is not None else -1) < g:
                        raise ModelFormatError(f"{where(s)} reads {name(i)}, but steps[{g}] "
                                               f"({quote(proto.steps[g].node)}) overwrote {name(r)} in place before")
            elif st == pb.PERSISTENT:
                if version.get(r, s) >= s:
                    raise ModelFormatError(f"{where(s)} reads persistent {name(i)} before any step writes it")
                lw = last_write.get(values[r].index, -1)
                if lw > version[r]:
                    raise ModelFormatError(f"{where(s)} reads {name(i)} (persistent[{values[r].index}] as written "
                                           f"at step {version[r]}), but steps[{lw}] ({quote(proto.steps[lw].node)}) "
                                           f"overwrote it before")
        for o in step.outputs:
            st = values[o].storage
            if st == pb.ARENA:
                if o in written:
                    why = ("is a feed" if o in feeds else "is a workspace" if o in workspace_of
                           else "an earlier step wrote")
                    raise ModelFormatError(f"{where(s)} writes {name(o)}, which {why}")
                written[o] = start[o] = end[o] = s
            elif st == pb.PERSISTENT:
                if o in version:
                    raise ModelFormatError(f"{where(s)} writes persistent {name(o)} a second time")
                version[o] = s
                last_write[values[o].index] = s
            elif st == pb.VIEW:
                generation[values[o].alias_of] = s
        may_take_over = inplace_ok(step.op)  # asked of every step: an unknown op fails here
        if step.inputs and step.outputs and may_take_over:
            for o in step.outputs:
                vo = values[o]
                if vo.storage != pb.ARENA or not vo.nbytes:
                    continue
                took = [i for i in step.inputs if values[i].storage == pb.ARENA and i != o and
                        (values[i].offset, values[i].nbytes, values[i].dtype) == (vo.offset, vo.nbytes, vo.dtype)]
                if took:
                    inplace.append((s, o, took[-1]))
    for i in proto.fetches:
        r = root(i)
        st = values[r].storage
        if st == pb.ARENA:
            if r not in written:
                raise ModelFormatError(f"{what}: fetch {name(i)} is never written")
            end[r] = last
        elif st == pb.PERSISTENT:
            if r not in version:
                raise ModelFormatError(f"{what}: fetch {name(i)} is never written")
            lw = last_write.get(values[r].index, -1)
            if lw > version[r]:
                raise ModelFormatError(f"{what}: fetch {name(i)} would return persistent[{values[r].index}] "
                                       f"after steps[{lw}] ({quote(proto.steps[lw].node)}) overwrote it")
    arena = [i for i, v in enumerate(values) if v.storage == pb.ARENA]
    for i in arena:
        if i not in written:
            start[i] = end[i] = 0          # never written nor read: its bytes at step 0 only
    taken = {}                             # output → the input whose bytes it took over
    taken_inputs = set()                   # taken's values, for O(1) membership
    for s, o, i in inplace:
        if end[i] == s and i not in fetched_roots and i not in taken_inputs and o not in taken:
            taken[o] = i
            taken_inputs.add(i)

    born, died = {}, {}
    for i in arena:
        if values[i].nbytes:
            born.setdefault(start[i], []).append(i)
            died.setdefault(end[i], []).append(i)
    alive = []                             # sorted (lo, hi, index), pairwise disjoint
    lows = []                              # the lo of each entry of `alive`, for bisect

    def describe(i, lo, hi):
        return f"{name(i)} bytes [{lo}, {hi}) live steps {start[i]}..{end[i]}"

    def remove(i):
        k = bisect.bisect_left(lows, values[i].offset)
        if k < len(alive) and alive[k][2] == i:
            del alive[k], lows[k]

    for s in range(max(nsteps, 1)):
        for i in sorted(born.get(s, []), key=lambda i: (i not in feeds, i)):
            if i in taken:
                remove(taken[i])
            lo, hi = values[i].offset, values[i].offset + values[i].nbytes
            k = bisect.bisect_left(lows, lo)
            for j in (k - 1, k):
                if 0 <= j < len(alive) and alive[j][0] < hi and lo < alive[j][1]:
                    a_lo, a_hi, other = alive[j]
                    raise ModelFormatError(f"{what}: at step {s}, {describe(i, lo, hi)} overlap "
                                           f"{describe(other, a_lo, a_hi)}")
            alive.insert(k, (lo, hi, i))
            lows.insert(k, lo)
        for i in died.get(s, []):
            remove(i)

    for s, step in enumerate(proto.steps):
        for i in step.frees:
            if i in fetched_roots or end[i] != s or i in taken_inputs:
                why = ("it is fetched" if i in fetched_roots else
                       f"it is live until step {end[i]}" if end[i] != s else "an output took its bytes over")
                raise ModelFormatError(f"{where(s)} frees {name(i)}, but {why}")
    return {i: (start[i], end[i]) for i in arena}


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
