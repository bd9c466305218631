"""Compiled programs: several plans, one per entry point of a model, over one persistent store.

A model may record several named entry points (``minimize(..., name="train_d")``,
``graph.entry("sample", fetches=[...])``); ``gc.compile(model, entries=[...])`` compiles
each into a plan and joins them into a :class:`Program` (``graphc_pb2.Program``, see
proto/graphc.proto): the variables and every optimizer's state are listed once, in
``Program.persistent``, and every entry's plan indexes that one list, so a runtime keeps one
copy that all entries read and update.  A runtime also needs only one arena, of the largest
plan's size, since runs of different entries are serialised.

Example::

    import graphc as gc
    prog = gc.compile(model, entries=["train_d", "train_g", "sample"], shapes={"x": (64, 1, 8, 8)})
    prog.save("gan.program")
    prog = gc.load_program("gan.program")
    prog.entries                    # ['train_d', 'train_g', 'sample']
    prog.plan("sample").fetches     # a standalone Plan of one entry (initial values filled in)
    sess = gc.Session(prog)         # sess.run(feeds, entry="train_d")

Like the plan module, this one depends only on the schema: the runtime side loads programs
without importing the compiler.
"""

import os
import re

from google.protobuf.message import DecodeError

from graphc._proto import graphc_pb2 as pb
from graphc.errors import CompileError, ModelFormatError, quote
from graphc.fileio import atomic_write
from graphc.plan import (
    FORMAT_VERSION,
    MIN_CONSUMER_VERSION,
    SUPPORTED_VERSION,
    Plan,
    _check_tensor,
    fill_memory_report,
    plan_from_bytes,
    validate_plan,
)
from graphc.proto_enums import dtype_from_proto, is_program_bytes  # noqa: F401 (re-exported)

ENTRY_NAME = re.compile(r"[A-Za-z0-9_.\-]+")


class Program:
    """A compiled program.  ``.proto`` is the underlying ``graphc_pb2.Program``."""

    def __init__(self, proto):
        if not isinstance(proto, pb.Program):
            raise TypeError(f"Program wraps a graphc_pb2.Program, got {type(proto).__name__}")
        self.proto = proto
        self._index = {e.name: k for k, e in enumerate(proto.entries)}

    @property
    def entries(self):
        """The entry names, in the order they were compiled."""
        return [e.name for e in self.proto.entries]

    @property
    def persistent(self):
        """The shared store: ``graphc_pb2.Variable`` messages with their initial values."""
        return self.proto.persistent

    @property
    def arena_bytes(self):
        """The one arena a runtime allocates: the largest entry plan's."""
        return max((e.plan.arena_bytes for e in self.proto.entries), default=0)

    @property
    def target(self):
        return self.proto.entries[0].plan.target if self.proto.entries else "cpu"

    def entry_proto(self, name):
        """The stored ``graphc_pb2.Plan`` of entry ``name`` (persistent init data left out)."""
        return self.proto.entries[self._entry_index(name)].plan

    def plan(self, name):
        """A standalone :class:`graphc.plan.Plan` of entry ``name``: its plan with the
        program's initial values filled in (a copy)."""
        proto = pb.Plan()
        proto.CopyFrom(self.entry_proto(name))
        for var, src in zip(proto.persistent, self.proto.persistent):
            var.init.raw_data = src.init.raw_data
        return Plan(proto)

    def _entry_index(self, name):
        k = self._index.get(name)
        if k is None:
            raise KeyError(f"program has no entry {name!r}; entries: {self.entries}")
        return k

    def memory_report(self):
        """Figures of the whole program: the shared arena (the largest entry's), the arena
        each entry would need alone, what separate arenas would sum to, and the persistent
        bytes (variables and every optimizer's state, stored once)."""
        per_entry = {e.name: int(e.plan.arena_bytes) for e in self.proto.entries}
        persistent = 0
        for var in self.proto.persistent:
            persistent += len(var.init.raw_data)
        return {"arena_bytes": self.arena_bytes, "arena_bytes_by_entry": per_entry,
                "separate_arenas_bytes": sum(per_entry.values()), "persistent_bytes": persistent}

    def to_bytes(self):
        """The deterministic serialization: the same program gives the same bytes."""
        return self.proto.SerializeToString(deterministic=True)

    def save(self, path):
        """Write the program atomically (a temp file in the same folder, fsync, rename)."""
        atomic_write(path, self.to_bytes())

    def __eq__(self, other):
        return isinstance(other, Program) and self.to_bytes() == other.to_bytes()

    __hash__ = None

    def __repr__(self):
        return (f"<gc.Program target={self.target} entries={self.entries} arena_bytes={self.arena_bytes} "
                f"persistent={len(self.persistent)}>")


def _same_variable(a, b):
    return a.dtype == b.dtype and list(a.dims) == list(b.dims) and a.trainable == b.trainable


def build_program(plans):
    """Join compiled plans into one :class:`Program`: ``plans`` maps entry names to
    :class:`graphc.plan.Plan` (or is a list of ``(name, Plan)`` pairs), in entry order.

    A variable's name identifies it across plans: the program lists each once (in the order
    the entries first name them), with its initial value, and every plan's PERSISTENT values
    are renumbered into that list.  Raises CompileError when two plans disagree on a
    variable's dtype, shape or trainability, or for a bad or repeated entry name."""
    items = list(plans.items()) if hasattr(plans, "items") else list(plans)
    if not items:
        raise CompileError("a program needs at least one entry")
    proto = pb.Program(format_version=FORMAT_VERSION, min_consumer_version=MIN_CONSUMER_VERSION)
    index, seen = {}, set()
    for name, plan in items:
        if not isinstance(name, str) or not ENTRY_NAME.fullmatch(name):
            raise CompileError(f"entry name {quote(name)} must be letters, digits, '_', '.' or '-'")
        if name in seen:
            raise CompileError(f"entry {name!r} is listed twice")
        seen.add(name)
        src = plan.proto if isinstance(plan, Plan) else plan
        if not proto.producer_name:
            proto.producer_name, proto.producer_version = src.producer_name, src.producer_version
        for var in src.persistent:
            k = index.get(var.name)
            if k is None:
                index[var.name] = len(proto.persistent)
                proto.persistent.add().CopyFrom(var)
            elif not _same_variable(proto.persistent[k], var):
                have = proto.persistent[k]
                raise CompileError(f"entry {name!r}: variable {var.name!r} is {_describe(var)} there but "
                                   f"{_describe(have)} in an earlier entry")
    for name, plan in items:
        src = plan.proto if isinstance(plan, Plan) else plan
        entry = proto.entries.add(name=name)
        out = entry.plan
        out.CopyFrom(src)
        renumber = [index[var.name] for var in src.persistent]
        for v in out.values:
            if v.storage == pb.PERSISTENT:
                v.index = renumber[v.index]
        del out.persistent[:]
        for var in proto.persistent:
            stripped = out.persistent.add()
            stripped.CopyFrom(var)
            stripped.init.raw_data = b""
        out.metadata["entry"] = name
        fill_memory_report(out)
    return Program(proto)


def _describe(var):
    try:
        dtype = dtype_from_proto(var.dtype)
    except KeyError:
        dtype = f"dtype {var.dtype}"
    return f"{dtype} {list(var.dims)}" + ("" if var.trainable else " (not trainable)")


def validate_program(proto, what="program"):
    """Check every claim of a program; raises ModelFormatError on the first lie: versions,
    the persistent variables (names unique, inits of their dtype and dims), the entries
    (names valid and unique, at least one), and every entry's plan (graphc.plan.validate_plan)
    with a persistent list equal to the program's (names, dtypes, dims; no init data)."""
    if proto.format_version < 1:
        raise ModelFormatError(f"{what}: not a graphc program (format_version {proto.format_version})")
    if proto.min_consumer_version > SUPPORTED_VERSION:
        raise ModelFormatError(f"{what}: needs a reader of plan format >= {proto.min_consumer_version}; "
                               f"this graphc reads up to {SUPPORTED_VERSION}")
    names = set()
    for i, var in enumerate(proto.persistent):
        vwhat = f"{what}: persistent[{i}] ({quote(var.name)})"
        if not var.name or var.name in names:
            raise ModelFormatError(f"{vwhat}: variable names must be unique and non-empty")
        names.add(var.name)
        _check_tensor(var.init, vwhat + " init")
        if var.init.dtype != var.dtype or list(var.init.dims) != list(var.dims):
            raise ModelFormatError(f"{vwhat}: init does not match the variable's dtype and dims")
    if not proto.entries:
        raise ModelFormatError(f"{what}: has no entries")
    seen = set()
    for k, entry in enumerate(proto.entries):
        ewhat = f"{what}: entry {k} ({quote(entry.name)})"
        if not ENTRY_NAME.fullmatch(entry.name) or entry.name in seen:
            raise ModelFormatError(f"{ewhat}: entry names must be unique, of letters, digits, '_', '.' or '-'")
        seen.add(entry.name)
        plan = entry.plan
        if len(plan.persistent) != len(proto.persistent):
            raise ModelFormatError(f"{ewhat}: its plan lists {len(plan.persistent)} persistent variables, the "
                                   f"program {len(proto.persistent)}")
        for i, (mine, shared) in enumerate(zip(plan.persistent, proto.persistent)):
            if mine.name != shared.name or not _same_variable(mine, shared):
                raise ModelFormatError(f"{ewhat}: persistent[{i}] is {quote(mine.name)} {_describe(mine)}, the "
                                       f"program's is {quote(shared.name)} {_describe(shared)}")
        validate_plan(plan, ewhat, shared_persistent=True)
    return proto


def program_from_bytes(data, what="program"):
    """Parse and validate program bytes; raises ModelFormatError."""
    proto = pb.Program()
    try:
        proto.ParseFromString(bytes(data))
    except (DecodeError, ValueError, RuntimeError) as e:
        raise ModelFormatError(f"{what}: not a graphc program (protobuf decode failed: {e})") from None
    validate_program(proto, what)
    return Program(proto)


def _read(path, what):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise ModelFormatError(f"cannot read {what} {path!r}: {e.strerror or e}") from None



def load_program(path):
    """Load a program written by ``Program.save``; raises ModelFormatError for a missing,
    truncated, corrupt, inconsistent or too-new file (and for a single plan's file)."""
    path = os.fspath(path)
    data = _read(path, "program")
    if not is_program_bytes(data):
        raise ModelFormatError(f"program {path!r}: not a graphc program (no entries; a single plan is loaded "
                               f"with gc.load_plan)")
    return program_from_bytes(data, f"program {path!r}")


def load_plan_or_program(path):
    """A :class:`graphc.plan.Plan` or a :class:`Program`, whichever the file holds."""
    path = os.fspath(path)
    data = _read(path, "plan")
    if is_program_bytes(data):
        return program_from_bytes(data, f"program {path!r}")
    return plan_from_bytes(data, f"plan {path!r}")
