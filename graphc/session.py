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

Environment: ``GRAPHC_POISON=1`` (read when a Session is created) makes the runtime
fill every value listed in a step's ``frees`` with 0xFF bytes (NaN, -1) right after
that step, so a memory plan that reuses bytes still in use gives wrong results.
"""
import os

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


def _poison_from_env():
    return os.environ.get("GRAPHC_POISON", "").strip().lower() not in ("", "0", "false", "no", "off")


class Session:
    """Runs one plan on one device.

    Args:
        plan: a ``graphc.plan.Plan``, a ``graphc_pb2.Plan`` message or a path to a ``.plan``.
        device: ``"cpu"`` (``"cuda"`` is not built yet).
        threads: CPU threads for kernels and BLAS; None means ``os.cpu_count()``.
        poison: fill dead values with 0xFF after each step (see the module docstring);
            None reads ``GRAPHC_POISON`` from the environment.

    Raises ModelFormatError when the plan is corrupt or inconsistent.
    """

    def __init__(self, plan, device="cpu", threads=None, poison=None):
        if device == "cuda":
            raise errors.GraphcError("device='cuda': the CUDA runtime is not built yet (a later issue); "
                                     "use device='cpu'")
        if device != "cpu":
            raise errors.GraphcError(f"unknown device {device!r}; expected 'cpu' or 'cuda'")
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
            self._exec = runtime.Executor(self._proto, threads, self.poison)
        except (ValueError, OverflowError, TypeError) as e:
            raise errors.ModelFormatError(f"invalid plan: {e}") from None
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
        try:
            self._exec.run(arrays)
        except RuntimeError as e:
            raise errors.RuntimeExecutionError(str(e)) from None
        out = {}
        for i in self._fetches:
            name, dtype, shape = self._info[i]
            arr = np.empty(shape, dtype)
            self._exec.read_value(i, arr)
            out[name] = arr
        return out

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
        try:
            secs = self._exec.profile(arrays, iters, warmup)
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
        self._exec.read_persistent(i, arr)
        return arr

    def set_variable(self, name, value):
        """Overwrite variable ``name``; dtype and shape must match exactly."""
        i, dtype, shape = self._variable(name)
        arr = np.asarray(value)
        if arr.dtype != dtype or arr.shape != shape:
            raise errors.FeedError(f"variable {name!r} is {dtype.name}{shape}, got {arr.dtype.name}{arr.shape}")
        self._exec.write_persistent(i, np.ascontiguousarray(arr))

    def save_checkpoint(self, path):
        """Write every persistent variable (weights and optimizer state) to ``path``, an
        ``.npz`` archive, atomically: a crash mid-write leaves any previous file intact."""
        checkpoint.save(path, {name: self.get_variable(name) for name in self.variable_names})

    def load_checkpoint(self, path):
        """Restore every persistent variable from ``path``.  Raises CheckpointError, and
        changes nothing, when the file is missing, corrupt, or its variables differ from
        the plan's in names, dtypes or shapes."""
        # checkpoint.load reads and checks every variable before returning, so nothing
        # below runs unless the whole file is good: a failure changes no variable.
        expected = {name: (dtype, shape) for name, (_, dtype, shape) in self._variables.items()}
        values = checkpoint.load(path, expected)
        for name, value in values.items():
            self.set_variable(name, value)
