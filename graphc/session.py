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
"""
import os

import numpy as np

from graphc import errors
from graphc._proto import graphc_pb2 as pb

_DTYPES = {pb.FLOAT32: np.dtype(np.float32), pb.FLOAT64: np.dtype(np.float64),
           pb.INT32: np.dtype(np.int32), pb.INT64: np.dtype(np.int64), pb.BOOL: np.dtype(np.bool_)}


def _load_runtime():
    from graphc._load_blas import load_openblas

    load_openblas()
    from graphc import _runtime
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


class Session:
    """Runs one plan on one device.

    Args:
        plan: a ``graphc.plan.Plan``, a ``graphc_pb2.Plan`` message or a path to a ``.plan``.
        device: ``"cpu"`` (``"cuda"`` is not built yet).
        threads: CPU threads for kernels and BLAS; None means ``os.cpu_count()``.

    Raises ModelFormatError when the plan is corrupt or inconsistent.
    """

    def __init__(self, plan, device="cpu", threads=None):
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
        runtime = _load_runtime()
        try:
            self._exec = runtime.Executor(self._proto, threads)
        except (ValueError, OverflowError, TypeError) as e:
            raise errors.ModelFormatError(f"invalid plan: {e}") from None
        self._feeds = [int(i) for i in self._proto.feeds]
        self._fetches = [int(i) for i in self._proto.fetches]
        self._feed_index = {values[i].name: pos for pos, i in enumerate(self._feeds)}
        self._variables = {v.name: i for i, v in enumerate(values) if v.storage == pb.PERSISTENT}

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
        feeds = dict(feeds or {})
        arrays = [None] * len(self._feeds)
        for key, value in feeds.items():
            name = key if isinstance(key, str) else getattr(key, "name", None)
            if not isinstance(name, str):
                raise errors.FeedError(f"feed key {key!r} is neither a name nor a Tensor")
            pos = self._feed_index.get(name)
            if pos is None:
                raise errors.FeedError(f"unknown feed {name!r}; the plan's placeholders are "
                                       f"{self.feed_names}")
            if arrays[pos] is not None:
                raise errors.FeedError(f"placeholder {name!r} is fed twice")
            arrays[pos] = self._check_feed(name, self._feeds[pos], value)
        missing = [self._info[self._feeds[p]][0] for p, a in enumerate(arrays) if a is None]
        if missing:
            raise errors.FeedError(f"missing feed for placeholder(s) {missing}")
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

    def _check_feed(self, name, index, value):
        _, dtype, shape = self._info[index]
        arr = np.asarray(value)
        if arr.dtype != dtype and not isinstance(value, (np.ndarray, np.generic)):
            # Python scalars and lists have no dtype of their own: take the placeholder's
            # when the conversion is exact.
            try:
                conv = np.asarray(value, dtype=dtype)
            except (TypeError, ValueError, OverflowError):
                conv = None
            if conv is not None and np.array_equal(conv, arr):
                arr = conv
        if arr.dtype != dtype:
            raise errors.FeedError(f"feed {name!r} expects dtype {dtype.name}, got {arr.dtype.name}")
        if arr.shape != shape:
            raise errors.FeedError(f"feed {name!r} expects shape {shape}, got {arr.shape}")
        return np.ascontiguousarray(arr)

    def _variable_index(self, name):
        try:
            return self._variables[name]
        except KeyError:
            raise KeyError(f"plan has no variable {name!r}; variables: {self.variable_names}") from None

    def get_variable(self, name):
        """A copy of the current value of variable ``name``."""
        i = self._variable_index(name)
        _, dtype, shape = self._info[i]
        arr = np.empty(shape, dtype)
        self._exec.read_value(i, arr)
        return arr

    def set_variable(self, name, value):
        """Overwrite variable ``name``; dtype and shape must match exactly."""
        i = self._variable_index(name)
        _, dtype, shape = self._info[i]
        arr = np.asarray(value)
        if arr.dtype != dtype or arr.shape != shape:
            raise errors.FeedError(f"variable {name!r} is {dtype.name}{shape}, got {arr.dtype.name}{arr.shape}")
        self._exec.write_value(i, np.ascontiguousarray(arr))
