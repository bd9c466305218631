"""Session: run a compiled plan with the C++ runtime.

Example::

    import numpy as np, graphc as gc
    with gc.Graph() as g:
        x = gc.placeholder("x", (None, 3))
        y = gc.relu(x)
    plan = gc.compile(g, shapes={"x": (2, 3)})
    sess = gc.Session(plan, threads=2)
    out = sess.run({"x": np.ones((2, 3), np.float32)})   # {y.name: array}

The whole plan runs in one C++ call with the GIL released.  Results are copies, so
they stay valid after the next run.  To avoid the copies, ``run(feeds, out={...})``
writes results into your arrays, and an :class:`IOBinding` (``sess.io_binding()``) lets
the kernels read and write your arrays in place (docs/feeds.md).

A Session also runs a program (``gc.compile(model, entries=[...])``, or a program file):
every entry over one copy of the variables and optimizer state, one arena::

    sess = gc.Session(prog)                        # or gc.Session("gan.program")
    sess.run({"x": xb}, entry="train_d")           # entry= is required when there are several
    sess.run({}, entry="sample")                   # sees the weights train_d just wrote
    sess.save_checkpoint("gan.npz")                # every variable and optimizer state

A Session may be shared by threads: ``run``, ``profile``, ``get_variable``,
``set_variable`` and the checkpoint methods are serialised, and each ``run`` returns
its own fetches (copied out before the next run starts).

Environment (read when a Session is created):

- ``GRAPHC_POISON=1`` makes the runtime fill every value listed in a step's ``frees``
  with 0xFF bytes (NaN, -1) right after that step, so a memory plan that reuses bytes
  still in use gives wrong results.
- ``GRAPHC_MEMORY_LIMIT`` (bytes, or with a suffix: ``512MB``, ``4GiB``) is the most
  memory a plan may ask for (arena + variables + constants) when ``memory_limit`` is
  not given; default: the machine's physical memory.  Above it, creating the Session
  raises ResourceError before anything is allocated.
"""
import contextlib
import hashlib
import json
import math
import os
import re
import threading
from collections.abc import Mapping

import numpy as np

from graphc import checkpoint, distributed, errors
from graphc import feeds as feeds_mod
from graphc._load_blas import load_openblas
from graphc._proto import graphc_pb2 as pb
from graphc.ops.random import RNG_STEP
from graphc.plan import explain_step_error, step_members
from graphc.program import Program, is_program_bytes, program_from_bytes, validate_program

# Data-parallel: rank r's random-number counter is rank 0's + r << RANK_STREAM_SHIFT.
RANK_STREAM_SHIFT = 40

_DTYPES = {pb.FLOAT32: np.dtype(np.float32), pb.FLOAT64: np.dtype(np.float64),
           pb.INT32: np.dtype(np.int32), pb.INT64: np.dtype(np.int64), pb.BOOL: np.dtype(np.bool_)}


def _load_runtime():
    load_openblas()
    from graphc import _runtime  # the compiled extension, loaded by the first Session
    return _runtime


def _source(plan):
    """The graphc_pb2.Plan or graphc.program.Program that ``plan`` (a Plan, Program, their
    messages, or a path to either file) holds."""
    if isinstance(plan, (pb.Plan, Program)):
        return plan
    if isinstance(plan, pb.Program):
        return Program(validate_program(plan))
    proto = getattr(plan, "proto", None)
    if isinstance(proto, pb.Plan):
        return proto
    if isinstance(plan, (str, bytes, os.PathLike)):
        path = os.fspath(plan)
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as e:
            raise errors.ModelFormatError(f"cannot read plan {path!r}: {e.strerror or e}") from None
        if is_program_bytes(data):
            return program_from_bytes(data, f"program {path!r}")
        msg = pb.Plan()
        try:
            msg.ParseFromString(data)
        except Exception as e:  # protobuf raises DecodeError or RuntimeError by backend
            raise errors.ModelFormatError(f"plan {path!r}: not a graphc plan ({e})") from None
        return msg
    raise TypeError(f"Session expects a graphc Plan or Program, their protobuf message or a path, got "
                    f"{type(plan).__name__}")


def _check_declared(persistent, where):
    """ModelFormatError when a variable's initial value (its dtype and dims, which the runtime
    allocates by) disagrees with its declared dtype and dims (which the Session reads by)."""
    for i, var in enumerate(persistent):
        init = var.init
        if not init.dims and not init.raw_data:
            continue   # no init: the declaration is the runtime's too
        if init.dtype != var.dtype or list(init.dims) != list(var.dims):
            raise errors.ModelFormatError(
                f"{where}plan variable {i} ({errors.quote(var.name)}) is declared dtype {var.dtype} dims "
                f"{list(var.dims)}, but its initial value has dtype {init.dtype} dims {list(init.dims)}")


def _check_program_persistent(program):
    """ModelFormatError when the first entry's plan does not list the program's persistent
    variables (names, dtypes, dims, in order), naming the entry and the first difference.  The
    shared state is made from that plan; the runtime holds every other entry to it on attach."""
    shared = program.persistent
    for name in program.entries[:1]:
        mine = program.entry_proto(name).persistent
        if len(mine) != len(shared):
            raise errors.ModelFormatError(f"entry {name!r}: its plan lists {len(mine)} persistent variables, the "
                                          f"program {len(shared)}")
        for i, (a, b) in enumerate(zip(mine, shared)):
            if a.name != b.name or a.dtype != b.dtype or list(a.dims) != list(b.dims):
                raise errors.ModelFormatError(
                    f"entry {name!r}: persistent[{i}] is {errors.quote(a.name)} dtype {a.dtype} dims {list(a.dims)} "
                    f"in its plan, {errors.quote(b.name)} dtype {b.dtype} dims {list(b.dims)} in the program")


def _shape(dims):
    return tuple(int(d) for d in dims)


_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "m": 1000 ** 2, "mb": 1000 ** 2, "g": 1000 ** 3, "gb": 1000 ** 3,
          "t": 1000 ** 4, "tb": 1000 ** 4, "kib": 1024, "mib": 1024 ** 2, "gib": 1024 ** 3, "tib": 1024 ** 4}


def parse_bytes(text, what="memory_limit"):
    """``"512MB"`` → 512000000, ``"4GiB"`` → 4294967296, ``"1024"`` → 1024; raises
    GraphcError for anything else (negative, fractional bytes, unknown unit)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", str(text))
    unit = m.group(2).lower() if m else None
    if m is None or unit not in _UNITS:
        raise errors.GraphcError(f"{what}: expected a number of bytes such as 1073741824, 512MB or 4GiB, "
                                 f"got {errors.quote(text)}")
    number = float(m.group(1)) if "." in m.group(1) else int(m.group(1))
    value = int(number * _UNITS[unit])
    if value >= 2 ** 64:
        raise errors.GraphcError(f"{what}: {errors.quote(text)} is more than 2**64 bytes")
    return value


def _memory_limit(value):
    if value is None:
        env = os.environ.get("GRAPHC_MEMORY_LIMIT", "").strip()
        return parse_bytes(env, "GRAPHC_MEMORY_LIMIT") if env else 0
    if isinstance(value, str):
        return parse_bytes(value)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 < value < 2 ** 64:
        raise errors.GraphcError(f"memory_limit must be a positive number of bytes (or None), got "
                                 f"{errors.quote(value)}")
    return int(value)


def _poison_from_env():
    return os.environ.get("GRAPHC_POISON", "").strip().lower() not in ("", "0", "false", "no", "off")


def _nbytes(dtype_enum, dims):
    n = _DTYPES[dtype_enum].itemsize
    for d in dims:
        n *= int(d)
    return n


class _Names(list):
    """A list of names that can also be called with an entry name: ``sess.feed_names`` (the
    list) and ``sess.feed_names("train_d")`` (that entry's list)."""

    __slots__ = ("_of",)

    def __call__(self, entry=None):
        return list(self._of(entry))


def _names(values, of):
    out = _Names(values)
    out._of = of
    return out


class _Entry:
    """One entry of a Session: its plan, its executor (on the session's shared state) and the
    tables run() uses.  The attribute names are the ones IOBinding reads."""

    def __init__(self, session, name, proto, info):
        self.session = session
        self.name = name
        # Prefix of messages that concern this entry (programs only: a plain plan's messages
        # read as before).
        self.label = f"entry {name!r}: " if session._program is not None else ""
        self._proto = proto
        self._info = info
        self._exec = None

    def _build_tables(self):
        """run()'s tables; only once the runtime validated the plan (indices in range)."""
        proto, info = self._proto, self._info
        values = proto.values
        self._feeds = [int(i) for i in proto.feeds]
        self._fetches = [int(i) for i in proto.fetches]
        self._feed_index = {values[i].name: pos for pos, i in enumerate(self._feeds)}
        # run()'s per-call work, precomputed: specs per feed (plan order) for the fast
        # path, (shape, dtype) per fetch for the result arrays.
        self._feed_specs = [info[i] for i in self._feeds]
        self._fetch_names = [info[i][0] for i in self._fetches]
        self._fetch_specs = [(info[i][2], info[i][1]) for i in self._fetches]
        self._fetch_index = {name: k for k, name in enumerate(self._fetch_names)}

    @property
    def feed_names(self):
        return [spec[0] for spec in self._feed_specs]

    def _raise(self, exc_type, message):
        raise exc_type(self.label + message) from None

    def _run(self, arrays, outs):
        self._call(self._exec.run, arrays, outs)

    def _run_bound(self, rt_binding, feeds, outs):
        self._call(self._exec.run_bound, rt_binding, feeds, outs)

    def _call(self, run, *args):
        """``run(*args)`` under the session's lock, its errors typed and labelled with the entry."""
        session = self.session
        with session._lock:
            if session._broken is not None:
                self._raise(errors.CommError, f"this session's communicator failed earlier; it runs no more: "
                                              f"{session._broken}")
            try:
                run(*args)
            except errors.CommError as e:
                session._comm_failed(str(e))
                self._reraise_typed(e)
            except errors.GraphcError as e:
                self._reraise_typed(e)
            except RuntimeError as e:
                self._raise(errors.RuntimeExecutionError, explain_step_error(self._proto, str(e)))

    def _reraise_typed(self, e):
        """Re-raise a typed runtime error with the entry's label; a DeviceError that names a step
        (a CUDA fault: the Session can no longer be used) gets the step's file:line as well."""
        msg = explain_step_error(self._proto, str(e)) if isinstance(e, errors.DeviceError) else str(e)
        if self.label or msg != str(e):
            self._raise(type(e), msg)
        raise e

    def _feed_arrays(self, feeds):
        # Fast path for the common call: a dict of str keys to C-contiguous numpy arrays of
        # exactly the placeholder's dtype and shape, every placeholder once (n distinct
        # known keys).  Anything else takes graphc.feeds' full check, which owns the rules
        # and their wording (docs/feeds.md); the fast path accepts nothing it refuses.
        specs = self._feed_specs
        if type(feeds) is dict and len(feeds) == len(specs):
            arrays = [None] * len(specs)
            index = self._feed_index
            for key, value in feeds.items():
                if type(key) is not str or type(value) is not np.ndarray:
                    break
                pos = index.get(key)
                if pos is None:
                    break
                spec = specs[pos]
                if value.dtype != spec[1] or value.shape != spec[2] or not value.flags.c_contiguous:
                    break
                arrays[pos] = value
            else:
                return arrays
        elif feeds is None and not specs:
            return []
        if not self.label:
            return feeds_mod.check_feeds(feeds, specs)
        try:
            return feeds_mod.check_feeds(feeds, specs)
        except errors.FeedError as e:
            self._raise(errors.FeedError, str(e))

    def _out_arrays(self, out):
        """One array per fetch for run(out=...): the caller's where given, new ones elsewhere."""
        if type(out) is not dict and not isinstance(out, Mapping):
            raise errors.FeedError(f"{self.label}out must be a dict mapping fetch names (or Tensors) to arrays, got "
                                   f"{type(out).__name__}")
        outs = [None] * len(self._fetches)
        specs, index = self._fetch_specs, self._fetch_index
        for key, arr in out.items():
            # Fast path: a known str key and a writable C-contiguous ndarray of the exact spec.
            k = index.get(key) if type(key) is str else None
            if k is not None and outs[k] is None and type(arr) is np.ndarray:
                spec = specs[k]
                if arr.dtype == spec[1] and arr.shape == spec[0]:
                    flags = arr.flags
                    if flags.c_contiguous and flags.writeable:
                        outs[k] = arr
                        continue
            k = self._fetch_pos(key, "out")
            name = errors.quote(self._fetch_names[k])
            if outs[k] is not None:
                raise errors.FeedError(f"{self.label}out names fetch {name} twice")
            shape, dtype = self._fetch_specs[k]
            try:
                _check_out_array(f"out[{name}]", arr, dtype, shape)
            except errors.FeedError as e:
                self._raise(errors.FeedError, str(e))
            if not arr.flags.c_contiguous:
                raise errors.FeedError(f"{self.label}out[{name}] must be C-contiguous; got strides {arr.strides} for "
                                       f"shape {arr.shape} (pass np.empty(...) or np.ascontiguousarray(...))")
            outs[k] = arr
        for k, (shape, dtype) in enumerate(self._fetch_specs):
            if outs[k] is None:
                outs[k] = np.empty(shape, dtype)
        return outs

    def _fetch_pos(self, key, what):
        name = key if isinstance(key, str) else getattr(key, "name", None)
        if not isinstance(name, str):
            raise errors.FeedError(f"{self.label}{what} key {errors.quote(key)} is neither a fetch name nor a Tensor")
        k = self._fetch_index.get(name)
        if k is None:
            raise errors.FeedError(f"{self.label}unknown fetch {errors.quote(name)} in {what}; the plan's fetches "
                                   f"are {feeds_mod._listing(self._fetch_names)}")
        return k

    def _feed_pos(self, key):
        name = key if isinstance(key, str) else getattr(key, "name", None)
        if not isinstance(name, str):
            raise errors.FeedError(f"{self.label}feed key {errors.quote(key)} is neither a placeholder name nor a "
                                   f"Tensor")
        pos = self._feed_index.get(name)
        if pos is None:
            raise errors.FeedError(f"{self.label}unknown feed {errors.quote(name)}; the plan's placeholders are "
                                   f"{feeds_mod._listing(self.feed_names)}")
        return pos


class Session:
    """Runs one plan, or every entry of a program, on one device.

    Args:
        plan: a ``graphc.plan.Plan``, a ``graphc_pb2.Plan`` message, a
            :class:`graphc.program.Program` (``gc.compile(model, entries=[...])``), a
            ``graphc_pb2.Program`` message, or a path to a plan or program file.
        device: ``"cpu"`` or ``"cuda"`` (``graphc._runtime.devices()`` lists those built).
        threads: CPU threads for kernels and BLAS; None means ``os.cpu_count()``.
        poison: fill dead values with 0xFF after each step (see the module docstring);
            None reads ``GRAPHC_POISON`` from the environment.
        memory_limit: the most bytes the plan may ask for (arena + variables +
            constants), an int or a string such as ``"2GiB"``; None reads
            ``GRAPHC_MEMORY_LIMIT``, else the machine's physical memory.  For a program it
            holds the whole program: the shared arena, the shared store and every entry
            plan's constants.
        comm: data-parallel plans only (``gc.compile(..., data_parallel=N)``): the mpi4py
            communicator the ranks share; None means ``MPI.COMM_WORLD``.  A plain plan with
            a comm is a ValueError.
        deterministic_allreduce: sum the gradients in rank order, bit-identical whatever
            MPI's algorithm (slower); None reads ``GRAPHC_DETERMINISTIC_ALLREDUCE``.
        comm_timeout: seconds a collective may wait for the other ranks before it fails
            with CommError; None reads ``GRAPHC_COMM_TIMEOUT`` (default 60).

    Data-parallel (issue 17, docs/data_parallel.md): a plan compiled for N ranks runs under
    ``mpirun -np N``, one Session per rank, each fed its own shard of every batch
    (``gc.data.DataLoader(..., shard=sess)``); the plan's collective steps sum the
    gradients across ranks and the update averages them.  Creating the Session is
    collective: the ranks check that they all load the same plan (a sha256 of its bytes; on
    a mismatch every rank raises the same CommError naming the ranks and what differs),
    make the communicator (``sess.comm``), and every rank starts from rank 0's variables
    and optimizer state.  ``sess.rank`` and ``sess.world_size`` say where this process
    stands (0 and 1 for other plans).  After a CommError (a peer died, a collective timed
    out) the session refuses runs, and when this process exits it ends the whole MPI job
    (MPI_Abort, exit status 1), so a hung peer cannot keep the job alive.  ``save_checkpoint``
    writes on rank 0 alone and every rank waits for it; ``load_checkpoint`` reads on every rank.  ``set_variable`` and
    ``load_state_dict`` change this rank only: call them on every rank with the same values.
    Random ops (dropout, noise) draw different numbers on each rank: rank r's ``rng/step``
    counter is rank 0's plus r·2**40 (rank 0's is the one checkpoints save).  Example, run
    with ``mpirun -np 2 python train.py``::

        plan = gc.compile(model, shapes={"x": (64, 784), "y": (64,)}, data_parallel=True)  # 64 per rank
        sess = gc.Session(plan)                      # joins MPI.COMM_WORLD
        loader = gc.data.DataLoader((x, y), batch_size=64, drop_last=True, shard=sess)
        for epoch, (xb, yb) in loader.epochs(3):
            sess.run({"x": xb, "y": yb})
        sess.save_checkpoint("model.npz")            # rank 0 writes, every rank waits
    On ``device="cuda"`` each rank needs its own GPU: when ``CUDA_VISIBLE_DEVICES`` is unset
    and the launcher started several ranks on the machine, local rank k is given GPU k.

    The C++ runtime validates the plan before it allocates anything (indices, sizes
    and their overflow, alignment, and that values live at the same time never share
    arena bytes).  Raises ModelFormatError when the plan is corrupt, inconsistent or
    unsafe, ResourceError when it needs more memory than allowed or an allocation
    fails, DeviceError when ``device`` is unknown or not usable on this build/machine.

    A program's entries run on one shared state (runtime/executor.h, SharedState): one
    copy of the variables and every optimizer's state, which every entry reads and
    updates (a training entry's step is seen by the next run of an inference entry), and
    one arena of the largest entry plan's size.  Runs of different entries are
    serialised.  ``run(feeds, entry="train_d")`` names the entry (required when the
    program has several); ``feed_names("sample")``/``fetch_names("sample")`` list one
    entry's names, while the bare ``feed_names``/``fetch_names`` lists hold the only
    entry's names (a plain plan's, as before), or for several entries every name any
    entry has (in entry order, each once).  Checkpoints and state dicts cover the whole
    program.
    """

    def __init__(self, plan, device="cpu", threads=None, poison=None, memory_limit=None, comm=None,
                 deterministic_allreduce=None, comm_timeout=None):
        if not isinstance(device, str):
            raise errors.DeviceError(f"device must be a name such as 'cpu' or 'cuda', got {errors.quote(device)}")
        limit = _memory_limit(memory_limit)
        source = _source(plan)
        world = distributed.plan_world_size(source)
        if threads is None:
            # Ranks started on one machine share its cores.
            local = distributed.local_world_size() if world is not None else 1
            threads = max(1, (os.cpu_count() or 1) // local)
        threads = int(threads)
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        self._program = source if isinstance(source, Program) else None
        self.device = device
        self.threads = threads
        self.poison = _poison_from_env() if poison is None else bool(poison)
        # run() and the variable accessors are serialised by the executors' shared mutex;
        # this lock makes a checkpoint a consistent snapshot (no run between two variables).
        self._lock = threading.RLock()
        # Set to the message of the first CommError: the session then refuses runs.
        self._broken = None
        self.rank, self.world_size, self.comm = 0, 1, None
        self.deterministic_allreduce = False
        if world == 1 and comm is None and (distributed.launcher_world_size() or 1) == 1:
            world = None   # a world of one outside mpirun: every collective is a no-op, no MPI needed
        if world is None:
            if comm is not None and distributed.plan_world_size(source) is None:
                raise ValueError("comm= is for a data-parallel plan, and this plan was compiled without "
                                 "data_parallel: compile it with gc.compile(..., data_parallel=N) (graphc compile "
                                 "--data-parallel N) and run it under mpirun -np N")
            self._load_tables(source)
            self._create_executors(_load_runtime(), limit, None)
        else:
            self._start_data_parallel(source, limit, comm, deterministic_allreduce, comm_timeout)

    def _load_tables(self, source):
        """The variable table and each entry's tables, from the plan alone (no runtime)."""
        if self._program is None:
            name = source.metadata.get("entry") or None
            protos = [(name, source)]
            persistent = source.persistent
        else:
            names = self._program.entries
            # The first entry's plan carries the initial values (it creates the shared store);
            # the others attach to it (their init data is empty).
            protos = [(names[0], self._program.plan(names[0]).proto)]
            protos += [(n, self._program.entry_proto(n)) for n in names[1:]]
            persistent = self._program.persistent
            # A Program object may be built from an unchecked message: the runtime checks that the
            # entries agree with each other (the shared state is made from the first entry's plan),
            # but the variable table below is read from the program's own list, so hold them equal.
            _check_program_persistent(self._program)
        # Variables are keyed by the persistent list: several PERSISTENT values may share one
        # storage index (a variable and the in-place outputs of its update ops).
        self._variables = {}
        self._trainable = [bool(var.trainable) for var in persistent]
        for i, var in enumerate(persistent):
            if var.dtype not in _DTYPES:
                raise errors.ModelFormatError(f"plan variable {i} ({var.name!r}) has invalid dtype {var.dtype}")
            if var.name in self._variables:
                raise errors.ModelFormatError(f"plan variable {var.name!r} is listed twice")
            self._variables[var.name] = (i, _DTYPES[var.dtype], _shape(var.dims))
        self._entries = {}
        for name, proto in protos:
            _check_declared(proto.persistent, f"entry {name!r}: " if self._program is not None else "")
            info = []
            for i, v in enumerate(proto.values):
                if v.dtype not in _DTYPES:
                    where = f"entry {name!r}: " if self._program is not None else ""
                    raise errors.ModelFormatError(f"{where}plan value {i} ({v.name!r}) has invalid dtype {v.dtype}")
                info.append((v.name, _DTYPES[v.dtype], _shape(v.dims)))
            self._entries[name] = _Entry(self, name, proto, info)

    def _check_runtime(self, runtime, limit):
        """Checks that need the runtime but allocate nothing: the CUDA environment and, for a
        program, the whole program's memory."""
        if self.device == "cuda" and runtime.cuda_built():
            try:
                runtime.cuda_options()  # GRAPHC_CUDA_*: a bad value is the environment's fault, not the plan's
            except ValueError as e:
                raise errors.DeviceError(f"device 'cuda': {e}") from None
        if self._program is not None:
            self._check_program_memory(runtime, limit, self._arena_bytes())

    def _arena_bytes(self):
        return max(int(e._proto.arena_bytes) for e in self._entries.values())

    def _create_executors(self, runtime, limit, comm, checked=False):
        """One executor per entry on one shared state; ``comm`` (a communicator, or None) goes
        to every one of them (the plan's collective steps call it)."""
        if not checked:
            self._check_runtime(runtime, limit)
        arena_bytes = self._arena_bytes()
        extra = {} if comm is None else {"comm": comm}
        first = None
        for entry in self._entries.values():
            try:
                entry._exec = runtime.Executor(entry._proto, self.threads, self.poison, self.device, limit,
                                               share=first, arena_bytes=arena_bytes, **extra)
            except errors.GraphcError as e:
                if entry.label:
                    entry._raise(type(e), str(e))
                raise  # ResourceError, DeviceError: already typed by the runtime
            except MemoryError as e:
                entry._raise(errors.ResourceError, f"out of memory loading the plan: {e}")
            except (ValueError, OverflowError, TypeError, RuntimeError) as e:
                entry._raise(errors.ModelFormatError, f"invalid plan: {explain_step_error(entry._proto, str(e))}")
            entry._build_tables()
            first = first or entry._exec
        self._first = next(iter(self._entries.values()))
        self._exec = self._first._exec   # any executor reaches the shared store

    # -- data-parallel start-up -------------------------------------------------------------

    def _start_data_parallel(self, source, limit, comm, deterministic, timeout):
        """Join the world, check that every rank runs the same plan, make the communicator,
        load the plan and give every rank rank 0's variables.

        Every rank takes part in every exchange below, in the same order, whatever failed
        locally before it; each verdict is computed from the gathered records alone, so a
        failure anywhere is the same CommError on every rank, never a hang."""
        if self.device == "cuda":
            distributed.pin_local_gpu()   # before CUDA starts in this process: local rank k → GPU k
        host = distributed.world_comm(comm)   # CommError (no mpi4py) on every rank alike
        local_error, cause = "", None
        try:
            deterministic = distributed.deterministic_from_env(deterministic)
            timeout = distributed.timeout_from_env(timeout)
            self._load_tables(source)
            runtime = _load_runtime()
            self._check_runtime(runtime, limit)
            problem = distributed.communicator_problem(self.device)
            if problem:
                raise errors.CommError(problem)
        except (errors.GraphcError, ImportError, ValueError, OSError) as e:
            local_error, cause = f"{type(e).__name__}: {e}", e
            deterministic = bool(deterministic) if isinstance(deterministic, bool) else False
        if not isinstance(timeout, float):
            timeout = None   # GRAPHC_COMM_TIMEOUT was bad: already this rank's local error
        record = distributed.start_record(source, self.device, deterministic, local_error)
        try:
            records = distributed.gather(host, record, timeout=timeout)
        except errors.CommError:
            distributed.abort_at_exit(host)   # a rank never came: it may hang, so end the job at exit
            raise
        verdict = distributed.check_plans(records)
        if verdict:
            raise errors.CommError(verdict) from cause
        self.rank, self.world_size = int(host.Get_rank()), int(host.Get_size())
        self.deterministic_allreduce = deterministic
        self.comm = distributed.make_communicator(host, self.device, deterministic, timeout)
        local_error, cause = "", None
        try:
            self._create_executors(runtime, limit, self.comm, checked=True)
        except (errors.GraphcError, ValueError, MemoryError) as e:
            local_error, cause = f"{type(e).__name__}: {e}", e
        try:
            distributed.agree(host, local_error, "loading the plan", timeout=timeout)
        except errors.CommError as e:
            if "did not answer" in str(e):
                distributed.abort_at_exit(host)
            raise errors.CommError(str(e)) from cause
        self._broadcast_state()
        self._offset_rng_stream()

    def _offset_rng_stream(self):
        """Give this rank its own random numbers: rank r's ``rng/step`` counter is rank 0's plus
        r·2**40.  Every random op draws element i of step s from Philox(seed, counter, i), so with
        the counters identical (the plan and rank 0's state are the same everywhere) every
        rank's dropout masks and noise would repeat rank 0's; offset, the ranks' streams never
        meet for 2**40 steps.  Rank 0 keeps the plain counter, which its checkpoints save."""
        found = self._variables.get(RNG_STEP)
        if found is None or self.rank == 0:
            return
        i, dtype, shape = found
        if dtype != np.int64 or shape != ():
            return
        with self._lock:
            value = self.get_variable(RNG_STEP)
            self._exec.write_persistent(i, np.asarray(int(value) + (self.rank << RANK_STREAM_SHIFT), np.int64))

    def _broadcast_state(self):
        """Overwrite every rank's variables and optimizer state with rank 0's, in one
        broadcast of their bytes back to back (store order)."""
        names = [name for name, (_, dtype, shape) in sorted(self._variables.items(), key=lambda kv: kv[1][0])
                 if dtype.itemsize * math.prod(shape) > 0]
        if not names:
            return
        sizes = [self._variables[n][1].itemsize * math.prod(self._variables[n][2]) for n in names]
        buf = np.empty(sum(sizes), np.uint8)
        with self._lock:
            if self.rank == 0:
                at = 0
                for name, size in zip(names, sizes):
                    buf[at:at + size] = self.get_variable(name).reshape(-1).view(np.uint8)
                    at += size
            self._collective(self.comm.broadcast, buf, 0)
            at = 0
            for name, size in zip(names, sizes):
                i, dtype, shape = self._variables[name]
                self._exec.write_persistent(i, buf[at:at + size].view(dtype).reshape(shape))
                at += size

    def _comm_failed(self, message):
        """A collective failed: the session refuses runs from now on, and this process ends
        the whole MPI job when it exits (see :func:`graphc.distributed.abort_at_exit`)."""
        self._broken = message
        if self.comm is not None:
            distributed.abort_at_exit(self.comm)

    def _collective(self, call, *args):
        """``call(*args)`` on the communicator: a failure breaks the session (CommError)."""
        if self._broken is not None:
            raise errors.CommError(f"this session's communicator failed earlier; it runs no more: {self._broken}")
        try:
            return call(*args)
        except errors.CommError as e:
            self._comm_failed(str(e))
            raise
        except (RuntimeError, OSError) as e:
            self._comm_failed(f"rank {self.rank}: {e}")
            raise errors.CommError(self._broken) from None

    def _agree(self, error, what, payload=""):
        """Every rank's (error, payload) through the communicator; raises the same
        CheckpointError on every rank when any failed.  Returns the payloads in rank order."""
        mine = json.dumps({"error": error or "", "payload": payload}).encode()
        records = [json.loads(bytes(r).decode()) for r in self._collective(self.comm.allgather, mine)]
        failed = [(r, rec["error"]) for r, rec in enumerate(records) if rec["error"]]
        if failed:
            shown = "; ".join(f"rank {r}: {why}" for r, why in failed[:distributed.LIST_LIMIT])
            raise errors.CheckpointError(f"{what} failed on {len(failed)} of {len(records)} ranks: {shown}")
        return [rec["payload"] for rec in records]

    def _check_program_memory(self, runtime, limit, arena_bytes):
        """ResourceError when the whole program (shared arena, shared store, every entry's
        constants) needs more than ``limit`` bytes (0: physical memory), before any allocation."""
        report = self._memory_figures(arena_bytes)
        cap = limit or runtime.physical_memory()
        if report["total_bytes"] > cap:
            raise errors.ResourceError(
                f"the program needs {report['total_bytes']} bytes (shared arena {report['arena_bytes']}, persistent "
                f"{report['persistent_bytes']}, constants {report['constants_bytes']}), more than the memory limit "
                f"of {cap} bytes")

    def _memory_figures(self, arena_bytes):
        persistent = sum(dtype.itemsize * math.prod(shape) for _, dtype, shape in self._variables.values())
        constants = {}
        for name, entry in self._entries.items():
            constants[name] = sum(_nbytes(t.dtype, t.dims) if t.dtype in _DTYPES else 0 for t in entry._proto.constants)
        total_constants = sum(constants.values())
        return {"arena_bytes": int(arena_bytes),
                "arena_bytes_by_entry": {name: int(e._proto.arena_bytes) for name, e in self._entries.items()},
                "persistent_bytes": persistent, "constants_bytes": total_constants,
                "constants_bytes_by_entry": constants,
                "total_bytes": int(arena_bytes) + persistent + total_constants}

    def memory_report(self):
        """The memory this session holds, in bytes: ``arena_bytes`` (the one arena, shared by
        every entry: the largest entry plan's), ``arena_bytes_by_entry`` (what each plan asks
        for), ``persistent_bytes`` (variables and optimizer state, stored once),
        ``constants_bytes`` (every plan's own constants) and its ``constants_bytes_by_entry``,
        and ``total_bytes``.  A plain plan's entry is keyed by its name, or None."""
        return self._memory_figures(self._exec.arena_bytes)

    # -- entries ----------------------------------------------------------------------------

    @property
    def entries(self):
        """The entry names (a program's, in order; a plain plan's name when it has one, else [])."""
        return [name for name in self._entries if name is not None]

    def _entry(self, entry):
        """The _Entry that ``entry`` names; None names the only one.  KeyError otherwise,
        listing the entries."""
        if entry is None:
            if len(self._entries) == 1:
                return self._first
            raise EntryError(f"this program has {len(self._entries)} entries; name one with entry=: "
                                    f"{self.entries}")
        if not isinstance(entry, str):
            raise EntryError(f"entry must be an entry name (str), got {errors.quote(entry)}")
        found = self._entries.get(entry)
        if found is None:
            if self._program is None:
                have = f"the plan's entry is {self._first.name!r}" if self._first.name else "the plan has no entries"
                raise EntryError(f"unknown entry {entry!r}: this session runs one plan ({have}; pass "
                                        f"entry=None)")
            raise EntryError(f"unknown entry {entry!r}; the program's entries are {self.entries}")
        return found

    def _all_names(self, attr):
        seen = {}
        for e in self._entries.values():
            for n in getattr(e, attr):
                seen.setdefault(n, None)
        return list(seen)

    @property
    def feed_names(self):
        """The placeholder names of the only entry (a plain plan's), or of every entry; call it
        with an entry name for one entry's: ``sess.feed_names("sample")``."""
        return _names(self._all_names("feed_names"), lambda entry: self._entry(entry).feed_names)

    @property
    def fetch_names(self):
        """The fetch names of the only entry (a plain plan's), or of every entry; call it with
        an entry name for one entry's: ``sess.fetch_names("train_d")``."""
        return _names(self._all_names("_fetch_names"), lambda entry: self._entry(entry)._fetch_names)

    @property
    def variable_names(self):
        return sorted(self._variables)

    # The only (or first) entry's tables, as attributes of a plain plan's session had them.
    @property
    def _proto(self):
        return self._first._proto

    @property
    def _info(self):
        return self._first._info

    @property
    def _feeds(self):
        return self._first._feeds

    def _feed_arrays(self, feeds):
        return self._first._feed_arrays(feeds)

    def run(self, feeds=None, entry=None, out=None):
        """Run the plan (or ``entry`` of a program) once.  ``feeds`` maps placeholder names
        (or Tensor handles) to arrays.

        Returns {fetch name: numpy array}.  Raises FeedError for a missing, unknown,
        wrong-dtype or wrong-shape feed and RuntimeExecutionError when a kernel fails.
        ``entry``: the entry to run; required when the program has several (EntryError,
        a KeyError, listing them, otherwise); for a plain plan None or the plan's name.

        ``out`` maps fetch names (or Tensors) to arrays the results are written into
        (each a writable, C-contiguous numpy array of exactly the fetch's dtype and
        shape; FeedError otherwise); they are returned in the dict, the same objects.
        Fetches not in ``out`` get new arrays.  ``out`` saves the allocation; the
        result is still copied out of the runtime's memory, which :meth:`io_binding`
        avoids.  Example::

            y = np.empty((2, 3), np.float32)
            sess.run({"x": xb}, out={"y": y})     # y holds the result
        """
        e = self._first if entry is None and len(self._entries) == 1 else self._entry(entry)
        arrays = e._feed_arrays(feeds)
        if out is None:
            outs = [np.empty(shape, dtype) for shape, dtype in e._fetch_specs]
        else:
            outs = e._out_arrays(out)
        e._run(arrays, outs)
        return dict(zip(e._fetch_names, outs))

    def io_binding(self, entry=None):
        """A new :class:`IOBinding` of this session (of ``entry`` of a program): feeds read and
        fetches written in place in your own arrays.  See :class:`IOBinding`."""
        return IOBinding(self, entry=entry)

    def run_with_binding(self, binding):
        """Run the plan once with the arrays bound in ``binding`` (an :class:`IOBinding`
        of this session); the same as ``binding.run()``."""
        if not isinstance(binding, IOBinding) or binding._session is not self:
            raise TypeError(f"run_with_binding expects an IOBinding of this session (session.io_binding()), "
                            f"got {type(binding).__name__}")
        return binding.run()

    def profile(self, feeds=None, iters=10, warmup=2, entry=None):
        """Time every step: run ``warmup`` untimed then ``iters`` timed runs with ``feeds``
        (of ``entry``, for a program: as in :meth:`run`).

        Each step's kernel call is timed in C++ (std::chrono::steady_clock); ``run()``
        carries no timing.  The runs are real runs: a training plan takes
        ``warmup + iters`` optimizer steps.  Returns one dict per step, in plan order:
        ``{"step", "node", "op", "file", "line", "seconds"}`` where ``seconds`` is the
        median over the timed runs of one call, and ``seconds_total`` is that median
        times ``iters``; ``"fused"`` lists, for a fused step, the graph nodes it runs
        (``{"node", "op", "file", "line"}`` each, in program order), else ``[]``.
        """
        iters, warmup = int(iters), int(warmup)
        if iters < 1:
            raise ValueError(f"iters must be >= 1, got {iters}")
        if warmup < 0:
            raise ValueError(f"warmup must be >= 0, got {warmup}")
        e = self._entry(entry)
        arrays = e._feed_arrays(feeds)
        with self._lock:
            if self._broken is not None:
                e._raise(errors.CommError, f"this session's communicator failed earlier; it runs no more: "
                                           f"{self._broken}")
            try:
                secs = e._exec.profile(arrays, iters, warmup)
            except errors.CommError as exc:
                self._comm_failed(str(exc))
                e._reraise_typed(exc)
            except errors.GraphcError as exc:
                e._reraise_typed(exc)
            except RuntimeError as exc:
                e._raise(errors.RuntimeExecutionError, explain_step_error(e._proto, str(exc)))
        out = []
        for i, (step, t) in enumerate(zip(e._proto.steps, secs)):
            out.append({"step": i, "node": step.node, "op": step.op, "file": step.provenance.file,
                        "line": int(step.provenance.line), "seconds": float(t),
                        "seconds_total": float(t) * iters,
                        "fused": step_members(step) if step.fused else []})
        return out

    def _variable(self, name):
        try:
            return self._variables[name]
        except KeyError:
            what = "program" if self._program is not None else "plan"
            raise KeyError(f"{what} has no variable {name!r}; variables: {self.variable_names}") from None

    def get_variable(self, name):
        """A copy of the current value of variable ``name`` (a ``Plan.persistent`` name:
        weights and optimizer state such as ``w/adam_m``)."""
        i, dtype, shape = self._variable(name)
        arr = np.empty(shape, dtype)
        with self._lock:
            self._exec.read_persistent(i, arr)
        return arr

    def set_variable(self, name, value):
        """Overwrite variable ``name``; dtype and shape must match exactly."""
        i, dtype, shape = self._variable(name)
        arr = np.asarray(value)
        if arr.dtype != dtype or arr.shape != shape:
            raise errors.FeedError(f"variable {name!r} is {dtype.name}{shape}, got {arr.dtype.name}{arr.shape}")
        with self._lock:
            self._exec.write_persistent(i, np.ascontiguousarray(arr))

    def save_checkpoint(self, path):
        """Write every persistent variable (weights and optimizer state) to ``path``, an
        ``.npz`` archive, atomically: a crash mid-write leaves any previous file intact.

        Data-parallel: every rank calls it; rank 0 alone writes (the ranks hold the same
        values), and every rank returns once the file is in place, or raises the same
        CheckpointError when rank 0 could not write it."""
        if self.comm is None:
            with self._lock:
                values = {name: self.get_variable(name) for name in self.variable_names}
            checkpoint.save(path, values)
            return
        error = ""
        if self.rank == 0:
            try:
                with self._lock:
                    values = {name: self.get_variable(name) for name in self.variable_names}
                checkpoint.save(path, values)
            except (OSError, errors.GraphcError) as e:
                error = f"{type(e).__name__}: {e}"
        self._agree(error, "saving a checkpoint on rank 0")

    def load_checkpoint(self, path, strict=True):
        """Restore every persistent variable from ``path``.  Raises CheckpointError, and
        changes nothing, when the file is missing, corrupt, or its variables differ from
        the plan's in names, dtypes or shapes.

        ``strict=False`` restores the variables the file and the plan share and returns
        ``(missing, unexpected)`` name lists like PyTorch's ``load_state_dict``: an inference
        plan loads a training plan's checkpoint this way (its momentum buffers and
        ``rng/step`` are unexpected there); shapes and dtypes must still match."""
        # checkpoint.load reads and checks every variable before returning, so nothing
        # below runs unless the whole file is good: a failure changes no variable.
        expected = {name: (dtype, shape) for name, (_, dtype, shape) in self._variables.items()}
        in_file = []
        if self.comm is None:
            values = checkpoint.load(path, expected, strict=strict, found=in_file)
        else:
            values = self._load_checkpoint_everywhere(path, expected, strict, in_file)
        with self._lock:
            for name, value in values.items():
                self.set_variable(name, value)
            if self.comm is not None and RNG_STEP in values:
                self._offset_rng_stream()
        if not strict:
            missing = sorted(set(expected) - set(values))
            return missing, sorted(set(in_file) - set(expected))
        return None

    def _load_checkpoint_everywhere(self, path, expected, strict, in_file):
        """Data-parallel load: every rank reads ``path`` and checks it; the ranks then compare
        what they read (a digest of the values), so a rank that cannot read the file, or reads
        a different one, is the same CheckpointError on every rank and nothing changes."""
        error, digest, values = "", "", {}
        try:
            values = checkpoint.load(path, expected, strict=strict, found=in_file)
            h = hashlib.sha256()
            for name in sorted(values):
                h.update(name.encode() + b"\0" + np.ascontiguousarray(values[name]).tobytes())
            digest = h.hexdigest()
        except (OSError, errors.GraphcError) as e:
            error = f"{type(e).__name__}: {e}"
        what = "loading a checkpoint"   # the path may differ by rank: the failures name theirs
        digests = self._agree(error, what, digest)
        if len(set(digests)) > 1:
            groups = {}
            for r, d in enumerate(digests):
                groups.setdefault(d, []).append(str(r))
            listing = "; ".join(f"ranks {', '.join(rs)} read {d[:12]}" for d, rs in groups.items())
            raise errors.CheckpointError(f"{what}: the ranks read different files ({listing}); every rank must "
                                         f"read the same checkpoint (a shared folder), nothing was loaded")
        return values

    # -- PyTorch-style state dicts --------------------------------------------------------

    def _model_variable_names(self):
        """The model variables in store order: trainable ones and the other state the model
        keeps (batch-norm running statistics), not the optimizer's state (written only by
        optimizer steps, of any entry: momentum buffers, Adam moments, the step counts)."""
        by_optimizer = set()
        for e in self._entries.values():
            values = e._proto.values
            for step in e._proto.steps:
                if step.role == pb.OPTIMIZER:
                    for i in step.outputs:
                        if 0 <= i < len(values) and values[i].storage == pb.PERSISTENT:
                            by_optimizer.add(values[i].index)
        return [name for name, (k, _, _) in self._variables.items()
                if self._trainable[k] or k not in by_optimizer]

    def state_dict(self):
        """{PyTorch-style key: array copy} of the model variables (``conv1/weight`` →
        ``conv1.weight``), without the optimizer's state; the inverse of :meth:`load_state_dict`."""
        with self._lock:
            return {name.replace("/", "."): self.get_variable(name) for name in self._model_variable_names()}

    def load_state_dict(self, state_dict, strict=True):
        """Copy weights in from ``state_dict``, a mapping of names to arrays: a PyTorch
        ``module.state_dict()`` (torch tensors are converted with ``np.asarray``; torch need
        not be imported here) or ``{graphc name: numpy array}``.

        A key names the variable of the same name, else the variable whose name is the key
        with ``.`` → ``/`` (``layer1.0.conv1.weight`` → ``layer1/0/conv1/weight``).  Keys
        ending in ``num_batches_tracked`` beside a ``running_mean`` are skipped (graphc's
        BatchNorm2d keeps no counter).  Values are cast to the variable's dtype when numpy
        casts safely or within a kind (float64 → float32).

        Every entry is checked before any variable changes: a key that names no variable
        (unexpected), a model variable no key names (missing; optimizer state is never
        missing), a shape or dtype that does not fit (mismatched), or two keys naming one
        variable raise :class:`StateDictError` listing all of them, and nothing is written.
        ``strict=False`` tolerates missing and unexpected entries (still not mismatched
        ones), as PyTorch's.  Returns ``{"missing_keys": [...], "unexpected_keys": [...]}``.

        Example::

            sess.load_state_dict(torch_model.state_dict())
        """
        if not isinstance(state_dict, Mapping):
            raise StateDictError(f"load_state_dict expects a mapping of names to arrays, got "
                                 f"{type(state_dict).__name__}")
        resolved, sources = {}, {}
        unexpected, mismatched = [], []
        for key, value in state_dict.items():
            if not isinstance(key, str):
                unexpected.append(key)
                continue
            name = key if key in self._variables else key.replace(".", "/")
            if name not in self._variables:
                base = name.rpartition("/")[0]
                if not (name.rpartition("/")[2] == "num_batches_tracked"
                        and (base + "/running_mean" if base else "running_mean") in self._variables):
                    unexpected.append(key)
                continue
            if name in sources:
                mismatched.append(f"{errors.quote(key, 120)}: names variable {name!r}, already given as "
                                  f"{errors.quote(sources[name], 120)}")
                continue
            sources[name] = key
            _, dtype, shape = self._variables[name]
            arr, why = _state_array(value, dtype, shape)
            if why:
                mismatched.append(f"{errors.quote(key, 120)} (variable {name!r}): {why}")
            else:
                resolved[name] = arr
        missing = [n for n in self._model_variable_names() if n not in sources]
        if mismatched or (strict and (missing or unexpected)):
            parts = []
            if missing:
                parts.append(f"{len(missing)} missing (no key for the variable): "
                             + ", ".join(errors.quote(n, 120) for n in missing))
            if unexpected:
                parts.append(f"{len(unexpected)} unexpected (no variable of that name, with '.' read as '/'): "
                             + ", ".join(errors.quote(k, 120) for k in unexpected))
            if mismatched:
                parts.append(f"{len(mismatched)} mismatched: " + "; ".join(mismatched))
            raise StateDictError("load_state_dict: nothing was loaded; " + "; ".join(parts),
                                 missing=missing, unexpected=unexpected, mismatched=mismatched)
        with self._lock:
            for name, arr in resolved.items():
                i = self._variables[name][0]
                self._exec.write_persistent(i, arr)
        return {"missing_keys": missing, "unexpected_keys": unexpected}


class EntryError(errors.FeedError, KeyError):
    """``entry=`` names no entry of the session, or is missing where the program has several
    (a FeedError and a KeyError).  The message lists the entries."""

    __str__ = errors.FeedError.__str__


class StateDictError(errors.CheckpointError):
    """:meth:`Session.load_state_dict` found entries that do not fit the plan.  The message
    lists every one; the attributes ``missing`` (variable names), ``unexpected`` (keys) and
    ``mismatched`` (one description per entry) hold them too."""

    def __init__(self, message, missing=(), unexpected=(), mismatched=()):
        super().__init__(message)
        self.missing = list(missing)
        self.unexpected = list(unexpected)
        self.mismatched = list(mismatched)


def _state_array(value, dtype, shape):
    """(C-contiguous array of ``dtype``, None), or (None, why ``value`` cannot be the variable's)."""
    try:
        if hasattr(value, "detach") and hasattr(value, "cpu"):   # a torch tensor, maybe requiring grad
            value = value.detach().cpu()
        arr = np.asarray(value)
    except Exception as e:  # any array-like's own conversion error (e.g. a bfloat16 tensor)
        return None, f"cannot be read as an array ({type(e).__name__}: {str(e)[:80]})"
    if arr.dtype == object or arr.dtype.kind not in "biuf":
        return None, f"expected {dtype.name}{shape}, got a {type(value).__name__} of dtype {arr.dtype}"
    if tuple(arr.shape) != shape:
        return None, f"expected shape {shape}, got {tuple(arr.shape)}"
    if arr.dtype != dtype and not (np.can_cast(arr.dtype, dtype, "safe")
                                   or (arr.dtype.kind == "f" and dtype.kind == "f")):
        return None, f"expected dtype {dtype.name}, got {arr.dtype.name} (no safe cast)"
    return np.ascontiguousarray(arr, dtype=dtype), None


def _check_out_array(what, arr, dtype, shape):
    """The checks every array written by the runtime passes: a writable numpy array of
    exactly ``dtype`` (native byte order) and ``shape``.  FeedError naming ``what``."""
    want = f"a writable numpy array of {dtype.name} {shape}"
    if not isinstance(arr, np.ndarray) or isinstance(arr, np.ma.MaskedArray):
        raise errors.FeedError(f"{what} expects {want}, got {type(arr).__name__}")
    if arr.dtype != dtype:
        raise errors.FeedError(f"{what} expects dtype {dtype.name}, got {feeds_mod._describe_dtype(arr.dtype)}")
    if arr.shape != shape:
        raise errors.FeedError(f"{what} expects shape {shape}, got {arr.shape}")
    if not arr.flags.writeable:
        raise errors.FeedError(f"{what} is read-only; expected {want}")


def _byte_range(arr):
    """[lo, hi) of the bytes a C-contiguous array spans."""
    lo = arr.__array_interface__["data"][0]
    return lo, lo + arr.nbytes


def _why_not_in_place(arr, dtype):
    """Why the kernels cannot use ``arr`` (checked for dtype and shape) directly, or None."""
    if arr.dtype != dtype:
        return f"its dtype is {feeds_mod._describe_dtype(arr.dtype)}, not native {dtype.name}"
    if not arr.flags.c_contiguous:
        return f"it is not C-contiguous (strides {arr.strides})"
    if not arr.flags.aligned:
        return (f"its data at address {arr.__array_interface__['data'][0]} is not aligned to {dtype.itemsize} "
                f"bytes ({dtype.name})")
    return None


class IOBinding:
    """Feeds read and fetches written in place, in the caller's own arrays (ONNX Runtime's
    IOBinding).  Made by :meth:`Session.io_binding` or ``gc.IOBinding(session)``; for a
    program, of one entry: ``sess.io_binding(entry="sample")``.

    ``bind_input(name, array)`` binds a placeholder to a numpy array: each run reads the
    array as it is then (refill it in place between runs).  ``bind_output(name, array)``
    binds a fetch: each run writes the result into it; without an array the binding
    allocates one.  :meth:`run` (or ``session.run_with_binding(b)``) runs the plan and
    returns ``{fetch name: array}``: the bound arrays themselves for bound fetches, new
    arrays for the others.  Every placeholder must be bound before :meth:`run`.

    In place (no copy at all) when the layout and the plan allow it: a C-contiguous
    array aligned to its dtype's size, of exactly the value's dtype and shape (outputs:
    writable, overlapping no other bound array), and, for a fetch, a value the plan
    computes into its own memory (not a variable, a constant, a placeholder, or a value
    fetched twice).  Otherwise the binding copies (``copy=None``, the default) or, with
    ``copy=False``, raises FeedError naming the value and the reason; ``copy=True``
    always copies.  :attr:`zero_copy` says which bindings are in place.  A wrong dtype
    or shape, or a read-only output array, is always a FeedError.

    Binding prepares again (once, when a binding changes, never per run) the steps that
    touch a redirected value; a plain :meth:`Session.run` and other bindings are not
    affected, and may run from other threads at the same time.  Bound arrays are kept
    alive (and cannot be resized) while bound.  Example::

        b = sess.io_binding()
        x = np.zeros((2, 3), np.float32)
        b.bind_input("x", x)
        y = b.bind_output("y")             # an array allocated by the binding
        for batch in batches:
            x[...] = batch                 # refill in place
            b.run()                        # y now holds this batch's result
    """

    def __init__(self, session, entry=None):
        if not isinstance(session, Session):
            raise TypeError(f"IOBinding expects a graphc Session, got {type(session).__name__}")
        self._session = session
        # The entry bound (its executor, feeds and fetches); None: the session's only entry.
        self._sess = session._entry(entry)
        self._inputs = {}    # feed position -> (array, copy flag)
        self._outputs = {}   # fetch position -> (array, copy flag)
        self._in_place_in = {}
        self._in_place_out = {}
        self._rt = None      # the runtime's Binding; None: none made for the current bindings yet
        self._lock = threading.RLock()
        self._plan_ok_in = None
        self._plan_ok_out = None
        self._last = None    # the last run's {fetch name: array}

    # -- binding --------------------------------------------------------------------------

    def bind_input(self, name, array, copy=None):
        """Bind placeholder ``name`` (or its Tensor) to ``array``, a numpy array of exactly
        its dtype and shape (FeedError otherwise, worded as for :meth:`Session.run`).
        ``copy``: None reads it in place when possible and copies it in otherwise;
        False requires in place (FeedError saying why not); True always copies."""
        with self._named():
            self._bind_input(name, array, copy)

    def _bind_input(self, name, array, copy):
        sess = self._sess
        pos = sess._feed_pos(name)
        pname, dtype, shape = sess._feed_specs[pos]
        if not isinstance(array, np.ndarray) or isinstance(array, np.ma.MaskedArray):
            if isinstance(array, np.ma.MaskedArray):
                feeds_mod.check_feed(pname, array, dtype, shape)  # its FeedError
            raise errors.FeedError(f"bind_input({errors.quote(pname)}) expects a numpy array of {dtype.name} "
                                   f"{shape}, got {type(array).__name__}: bind np.asarray(value), then refill it "
                                   f"in place")
        feeds_mod.check_feed(pname, array, dtype, shape)   # dtype, shape: FeedError as in run()
        self._change(self._inputs, pos, (array, _copy_flag(copy)))

    bind_cpu_input = bind_input   # ONNX Runtime's name; graphc binds host arrays only

    def bind_output(self, name, array=None, copy=None):
        """Bind fetch ``name`` (or its Tensor) to ``array``, a writable numpy array of
        exactly its dtype and shape (FeedError otherwise); None allocates one.  Returns
        the bound array.  ``copy`` as in :meth:`bind_input`."""
        with self._named():
            return self._bind_output(name, array, copy)

    @contextlib.contextmanager
    def _named(self):
        """A program entry's binding: its FeedErrors start with ``entry 'NAME': `` as run()'s do."""
        label = self._sess.label
        try:
            yield
        except errors.FeedError as e:
            if not label or str(e).startswith(label):
                raise
            raise type(e)(label + str(e)) from None

    def _bind_output(self, name, array, copy):
        sess = self._sess
        k = sess._fetch_pos(name, "bind_output")
        shape, dtype = sess._fetch_specs[k]
        if array is None:
            array = np.empty(shape, dtype)
        _check_out_array(f"bind_output({errors.quote(sess._fetch_names[k])})", array, dtype, shape)
        self._change(self._outputs, k, (array, _copy_flag(copy)))
        return array

    def unbind_input(self, name):
        """Forget the binding of placeholder ``name`` (KeyError when it has none)."""
        pos = self._sess._feed_pos(name)
        with self._lock:
            if pos not in self._inputs:
                raise KeyError(f"placeholder {self._sess._feed_specs[pos][0]!r} is not bound")
            self._change(self._inputs, pos, None)

    def unbind_output(self, name):
        """Forget the binding of fetch ``name``: runs return a new array for it again."""
        k = self._sess._fetch_pos(name, "unbind_output")
        with self._lock:
            if k not in self._outputs:
                raise KeyError(f"fetch {self._sess._fetch_names[k]!r} is not bound")
            self._change(self._outputs, k, None)

    def clear(self):
        """Forget every binding (the arrays are released)."""
        with self._lock:
            self._inputs, self._outputs = {}, {}
            self._decide()
            self._rt = self._last = None

    def clear_binding_inputs(self):
        """Forget every input binding (ONNX Runtime's name)."""
        with self._lock:
            self._inputs = {}
            self._decide()
            self._rt = None

    def clear_binding_outputs(self):
        """Forget every output binding (ONNX Runtime's name)."""
        with self._lock:
            self._outputs = {}
            self._decide()
            self._rt = self._last = None

    def get_outputs(self):
        """The last run's results as a list in the plan's fetch order (bound fetches: the
        bound arrays themselves); [] before the first run."""
        last = self._last
        return [] if last is None else [last[name] for name in self._sess._fetch_names]

    def copy_outputs_to_cpu(self):
        """Copies of :meth:`get_outputs` (ONNX Runtime's name): they keep their values
        when the next run overwrites the bound arrays."""
        return [np.array(a, copy=True) for a in self.get_outputs()]

    @property
    def zero_copy(self):
        """{name: bool} for every bound placeholder and fetch: True when the kernels use the
        bound array in place, False when a run copies it (a name bound both as input and
        as output is True only if both are in place)."""
        with self._lock:
            out = {}
            for pos, flag in self._in_place_in.items():
                out[self._sess._feed_specs[pos][0]] = flag
            for k, flag in self._in_place_out.items():
                name = self._sess._fetch_names[k]
                out[name] = out.get(name, True) and flag
            return out

    @property
    def bound_inputs(self):
        """{placeholder name: bound array}."""
        return {self._sess._feed_specs[p][0]: a for p, (a, _) in sorted(self._inputs.items())}

    @property
    def bound_outputs(self):
        """{fetch name: bound array}."""
        return {self._sess._fetch_names[k]: a for k, (a, _) in sorted(self._outputs.items())}

    def _change(self, table, key, entry):
        """Apply one change, decide what is in place, prepare the runtime's binding; on a
        FeedError (a strict binding no longer possible) leave everything as it was."""
        with self._lock:
            old = table.get(key)
            if entry is None:
                del table[key]
            else:
                table[key] = entry
            try:
                self._decide()
                self._prepare()
            except BaseException:
                if old is None:
                    table.pop(key, None)
                else:
                    table[key] = old
                self._decide()
                self._prepare()
                raise

    def _decide(self):
        """Which bindings are in place; FeedError for a strict one that cannot be."""
        sess = self._sess
        if self._plan_ok_in is None:
            self._plan_ok_in = sess._exec.feed_refusals()
            self._plan_ok_out = sess._exec.fetch_refusals()
        in_place_in, in_place_out = {}, {}
        ranges = []   # (lo, hi, label) of every bound array the kernels may read in place
        for pos, (arr, copy) in sorted(self._inputs.items()):
            name, dtype, _ = sess._feed_specs[pos]
            why = "copy=True" if copy else (self._plan_ok_in[pos] or _why_not_in_place(arr, dtype))
            if why and copy is False:
                raise errors.FeedError(f"bind_input({errors.quote(name)}, copy=False): the array cannot be read "
                                       f"in place: {why}")
            in_place_in[pos] = not why
            if not why and arr.nbytes:
                ranges.append((*_byte_range(arr), f"input {errors.quote(name)}"))
        for k, (arr, copy) in sorted(self._outputs.items()):
            name = sess._fetch_names[k]
            dtype = sess._fetch_specs[k][1]
            why = "copy=True" if copy else (self._plan_ok_out[k] or _why_not_in_place(arr, dtype))
            if not why and arr.nbytes:
                lo, hi = _byte_range(arr)
                for olo, ohi, label in ranges:
                    if lo < ohi and olo < hi:
                        why = f"it overlaps the array bound as {label}"
                        break
                else:
                    for j, (other, _) in self._outputs.items():
                        if j != k and np.may_share_memory(arr, other):
                            why = f"it overlaps the array bound as output {errors.quote(sess._fetch_names[j])}"
                            break
            if why and copy is False:
                raise errors.FeedError(f"bind_output({errors.quote(name)}, copy=False): the result cannot be "
                                       f"written in place: {why}")
            in_place_out[k] = not why
        self._in_place_in, self._in_place_out = in_place_in, in_place_out

    def _prepare(self):
        """The runtime's binding for the current decisions, and run()'s per-call lists."""
        sess = self._sess
        n_in, n_out = len(sess._feeds), len(sess._fetches)
        feeds = [None] * n_in
        fetches = [None] * n_out
        for pos, flag in self._in_place_in.items():
            if flag:
                feeds[pos] = self._inputs[pos][0]
        for k, flag in self._in_place_out.items():
            if flag:
                fetches[k] = self._outputs[k][0]
        try:
            self._rt = sess._exec.bind(feeds, fetches)
        except ValueError as e:  # the checks above make this the runtime's own refusal
            raise errors.FeedError(f"cannot bind: {e}") from None
        # Per run: feeds to copy (None for those read in place), and whether any needs a
        # conversion each run (a strided or byte-swapped array is re-read every run).
        self._copy_feeds = [None] * n_in
        self._convert = []
        for pos, (arr, _) in self._inputs.items():
            if self._in_place_in[pos]:
                continue
            name, dtype, shape = sess._feed_specs[pos]
            if arr.flags.c_contiguous and arr.dtype == dtype:
                self._copy_feeds[pos] = arr        # memcpy'd each run: alignment does not matter
            else:
                self._convert.append(pos)
        self._all_in_place = all(self._in_place_in.get(p, False) for p in range(n_in))
        self._missing = [sess._feed_specs[p][0] for p in range(n_in) if p not in self._inputs]
        self._copy_outs = [k for k in range(n_out) if not self._in_place_out.get(k, False)]
        self._result_names = sess._fetch_names

    def run(self):
        """Run the plan once with the bound arrays; returns {fetch name: array} (bound
        fetches: the bound arrays, now holding this run's values; others: new arrays).
        FeedError when a placeholder is not bound; RuntimeExecutionError when a kernel fails."""
        with self._lock:
            if self._rt is None:
                self._decide()
                self._prepare()
            if self._missing:
                raise errors.FeedError(f"missing feed for placeholder(s) {feeds_mod._listing(self._missing)}; "
                                       f"bind each with bind_input(name, array)")
            sess = self._sess
            feeds = None
            if not self._all_in_place:
                feeds = self._copy_feeds
                if self._convert:
                    feeds = list(feeds)
                    for pos in self._convert:
                        name, dtype, shape = sess._feed_specs[pos]
                        feeds[pos] = feeds_mod.check_feed(name, self._inputs[pos][0], dtype, shape)
            results = [None] * len(self._result_names)
            for k, (arr, _) in self._outputs.items():
                results[k] = arr
            if not self._copy_outs:
                sess._run_bound(self._rt, feeds, None)
                self._last = out = dict(zip(self._result_names, results))
                return out
            outs = [None] * len(results)
            strided = []
            for k in self._copy_outs:
                bound = self._outputs.get(k)
                if bound is not None and bound[0].flags.c_contiguous:
                    outs[k] = bound[0]             # memcpy'd into: alignment does not matter
                else:
                    shape, dtype = sess._fetch_specs[k]
                    outs[k] = np.empty(shape, dtype)
                    if bound is None:
                        results[k] = outs[k]
                    else:
                        strided.append(k)
            sess._run_bound(self._rt, feeds, outs)
            for k in strided:
                results[k][...] = outs[k]
            self._last = out = dict(zip(self._result_names, results))
            return out


def _copy_flag(copy):
    if copy is None or copy is True or copy is False:
        return copy
    raise TypeError(f"copy must be None, True or False, got {copy!r}")
