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
they stay valid after the next run.

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
import os
import re
import threading

import numpy as np

from graphc import checkpoint, errors
from graphc import feeds as feeds_mod
from graphc._load_blas import load_openblas
from graphc._proto import graphc_pb2 as pb

_DTYPES = {pb.FLOAT32: np.dtype(np.float32), pb.FLOAT64: np.dtype(np.float64),
           pb.INT32: np.dtype(np.int32), pb.INT64: np.dtype(np.int64), pb.BOOL: np.dtype(np.bool_)}


def _load_runtime():
    load_openblas()
    from graphc import _runtime  # the compiled extension, loaded by the first Session
    return _runtime


def _plan_proto(plan):
    if isinstance(plan, pb.Plan):
        return plan
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
        msg = pb.Plan()
        try:
            msg.ParseFromString(data)
        except Exception as e:  # protobuf raises DecodeError or RuntimeError by backend
            raise errors.ModelFormatError(f"plan {path!r}: not a graphc plan ({e})") from None
        return msg
    raise TypeError(f"Session expects a graphc Plan, a graphc_pb2.Plan or a path, got {type(plan).__name__}")


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


class Session:
    """Runs one plan on one device.

    Args:
        plan: a ``graphc.plan.Plan``, a ``graphc_pb2.Plan`` message or a path to a ``.plan``.
        device: ``"cpu"`` or ``"cuda"`` (``graphc._runtime.devices()`` lists those built).
        threads: CPU threads for kernels and BLAS; None means ``os.cpu_count()``.
        poison: fill dead values with 0xFF after each step (see the module docstring);
            None reads ``GRAPHC_POISON`` from the environment.
        memory_limit: the most bytes the plan may ask for (arena + variables +
            constants), an int or a string such as ``"2GiB"``; None reads
            ``GRAPHC_MEMORY_LIMIT``, else the machine's physical memory.

    The C++ runtime validates the plan before it allocates anything (indices, sizes
    and their overflow, alignment, and that values live at the same time never share
    arena bytes).  Raises ModelFormatError when the plan is corrupt, inconsistent or
    unsafe, ResourceError when it needs more memory than allowed or an allocation
    fails, DeviceError when ``device`` is unknown or not usable on this build/machine.
    """

    def __init__(self, plan, device="cpu", threads=None, poison=None, memory_limit=None):
        if not isinstance(device, str):
            raise errors.DeviceError(f"device must be a name such as 'cpu' or 'cuda', got {errors.quote(device)}")
        limit = _memory_limit(memory_limit)
        if threads is None:
            threads = os.cpu_count() or 1
        threads = int(threads)
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        self._proto = _plan_proto(plan)
        self.device = device
        self.threads = threads
        values = self._proto.values
        self._info = []
        for i, v in enumerate(values):
            if v.dtype not in _DTYPES:
                raise errors.ModelFormatError(f"plan value {i} ({v.name!r}) has invalid dtype {v.dtype}")
            self._info.append((v.name, _DTYPES[v.dtype], _shape(v.dims)))
        self.poison = _poison_from_env() if poison is None else bool(poison)
        # Variables are keyed by Plan.persistent: several PERSISTENT values may share one
        # storage index (a variable and the in-place outputs of its update ops).
        self._variables = {}
        for i, var in enumerate(self._proto.persistent):
            if var.dtype not in _DTYPES:
                raise errors.ModelFormatError(f"plan variable {i} ({var.name!r}) has invalid dtype {var.dtype}")
            if var.name in self._variables:
                raise errors.ModelFormatError(f"plan variable {var.name!r} is listed twice")
            self._variables[var.name] = (i, _DTYPES[var.dtype], _shape(var.dims))
        runtime = _load_runtime()
        try:
            self._exec = runtime.Executor(self._proto, threads, self.poison, device, limit)
        except errors.GraphcError:
            raise  # ResourceError, DeviceError: already typed by the runtime
        except MemoryError as e:
            raise errors.ResourceError(f"out of memory loading the plan: {e}") from None
        except (ValueError, OverflowError, TypeError, RuntimeError) as e:
            raise errors.ModelFormatError(f"invalid plan: {e}") from None
        # run() and the variable accessors are serialised by the executor; this lock
        # makes a checkpoint a consistent snapshot (no run between two variables).
        self._lock = threading.RLock()
        self._feeds = [int(i) for i in self._proto.feeds]
        self._fetches = [int(i) for i in self._proto.fetches]
        self._feed_index = {values[i].name: pos for pos, i in enumerate(self._feeds)}

    @property
    def feed_names(self):
        return [self._info[i][0] for i in self._feeds]

    @property
    def fetch_names(self):
        return [self._info[i][0] for i in self._fetches]

    @property
    def variable_names(self):
        return sorted(self._variables)

    def run(self, feeds=None):
        """Run the plan once.  ``feeds`` maps placeholder names (or Tensor handles) to arrays.

        Returns {fetch name: numpy array}.  Raises FeedError for a missing, unknown,
        wrong-dtype or wrong-shape feed and RuntimeExecutionError when a kernel fails.
        """
        arrays = self._feed_arrays(feeds)
        outs = [np.empty(self._info[i][2], self._info[i][1]) for i in self._fetches]
        with self._lock:
            try:
                self._exec.run(arrays, outs)
            except errors.GraphcError:
                raise
            except RuntimeError as e:
                raise errors.RuntimeExecutionError(str(e)) from None
        return {self._info[i][0]: arr for i, arr in zip(self._fetches, outs)}

    def profile(self, feeds=None, iters=10, warmup=2):
        """Time every step: run ``warmup`` untimed then ``iters`` timed runs with ``feeds``.

        Each step's kernel call is timed in C++ (std::chrono::steady_clock); ``run()``
        carries no timing.  The runs are real runs: a training plan takes
        ``warmup + iters`` optimizer steps.  Returns one dict per step, in plan order:
        ``{"step", "node", "op", "file", "line", "seconds"}`` where ``seconds`` is the
        median over the timed runs of one call, and ``seconds_total`` is that median
        times ``iters``.
        """
        iters, warmup = int(iters), int(warmup)
        if iters < 1:
            raise ValueError(f"iters must be >= 1, got {iters}")
        if warmup < 0:
            raise ValueError(f"warmup must be >= 0, got {warmup}")
        arrays = self._feed_arrays(feeds)
        with self._lock:
            try:
                secs = self._exec.profile(arrays, iters, warmup)
            except errors.GraphcError:
                raise
            except RuntimeError as e:
                raise errors.RuntimeExecutionError(str(e)) from None
        out = []
        for i, (step, t) in enumerate(zip(self._proto.steps, secs)):
            out.append({"step": i, "node": step.node, "op": step.op, "file": step.provenance.file,
                        "line": int(step.provenance.line), "seconds": float(t),
                        "seconds_total": float(t) * iters})
        return out

    def _feed_arrays(self, feeds):
        # The rules live in graphc.feeds (shared wording, docs/feeds.md); specs in plan order.
        return feeds_mod.check_feeds(feeds, [self._info[i] for i in self._feeds])

    def _check_feed(self, name, index, value):
        _, dtype, shape = self._info[index]
        return feeds_mod.check_feed(name, value, dtype, shape)

    def _variable(self, name):
        try:
            return self._variables[name]
        except KeyError:
            raise KeyError(f"plan has no variable {name!r}; variables: {self.variable_names}") from None

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
        ``.npz`` archive, atomically: a crash mid-write leaves any previous file intact."""
        with self._lock:
            values = {name: self.get_variable(name) for name in self.variable_names}
        checkpoint.save(path, values)

    def load_checkpoint(self, path):
        """Restore every persistent variable from ``path``.  Raises CheckpointError, and
        changes nothing, when the file is missing, corrupt, or its variables differ from
        the plan's in names, dtypes or shapes."""
        # checkpoint.load reads and checks every variable before returning, so nothing
        # below runs unless the whole file is good: a failure changes no variable.
        expected = {name: (dtype, shape) for name, (_, dtype, shape) in self._variables.items()}
        values = checkpoint.load(path, expected)
        with self._lock:
            for name, value in values.items():
                self.set_variable(name, value)
