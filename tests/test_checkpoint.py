"""Session checkpoints: every persistent variable (weights and optimizer state) saved
atomically and restored exactly, across processes; bad files are CheckpointErrors."""

import os
import signal
import subprocess
import sys
import tempfile
import textwrap

import numpy as np
import pytest

import graphc as gc
from graphc import errors
from graphc.graph import Graph
from graphc.session import Session

BATCH = 8
THREADS = 2


def _mlp(hidden=16, optimizer=True):
    with Graph() as g:
        x = gc.placeholder("x", (None, 5))
        y = gc.placeholder("y", (None,), dtype="int64")
        w1 = gc.variable("w1", (5, hidden), init=gc.init.xavier_uniform(seed=1))
        w2 = gc.variable("w2", (hidden, 3), init=gc.init.xavier_uniform(seed=2))
        loss = gc.softmax_cross_entropy(gc.relu(x @ w1) @ w2, y)
        if optimizer:
            gc.optim.Adam(lr=1e-2).minimize(loss)
    return gc.compile(g, shapes={"x": (BATCH, 5), "y": (BATCH,)}), loss


def _batches(n, seed=0):
    rng = np.random.default_rng(seed)
    return [{"x": rng.standard_normal((BATCH, 5)).astype(np.float32), "y": rng.integers(0, 3, BATCH)}
            for _ in range(n)]


def _python(code, **kw):
    # import the same graphc as this process (installed or in-place build), never the bare
    # source tree: hence PYTHONPATH = its parent folder and a cwd outside the repository
    parent = os.path.dirname(os.path.dirname(os.path.abspath(gc.__file__)))
    env = dict(os.environ, PYTHONPATH=parent + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], env=env, cwd=tempfile.gettempdir(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def _state(sess):
    return {name: sess.get_variable(name) for name in sess.variable_names}


def test_round_trip_includes_optimizer_state(tmp_path):
    plan, loss = _mlp()
    sess = Session(plan, threads=THREADS)
    assert {"w1", "w2", "w1/adam_m", "w1/adam_v", "optimizer/step"} <= set(sess.variable_names)
    for feeds in _batches(3):
        sess.run(feeds)
    path = tmp_path / "ckpt.npz"
    sess.save_checkpoint(path)
    with np.load(path) as f:  # a plain npz that numpy reads
        assert set(sess.variable_names) <= set(f.files)
    fresh = Session(plan, threads=THREADS)
    assert not np.array_equal(fresh.get_variable("w1"), sess.get_variable("w1"))
    fresh.load_checkpoint(path)
    want = _state(sess)
    got = _state(fresh)
    assert got.keys() == want.keys()
    for name in want:
        assert got[name].dtype == want[name].dtype
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)
    assert int(got["optimizer/step"]) == 3


def test_resume_in_a_new_process_equals_an_uninterrupted_run(tmp_path):
    n, m = 4, 5
    plan, loss = _mlp()
    plan.save(tmp_path / "train.plan")
    batches = _batches(n + m)
    np.savez(tmp_path / "batches.npz", **{f"{k}{i}": v for i, b in enumerate(batches) for k, v in b.items()})

    straight = Session(plan, threads=THREADS)
    straight_losses = [float(straight.run(b)[loss.name]) for b in batches]

    first = Session(plan, threads=THREADS)
    for b in batches[:n]:
        first.run(b)
    first.save_checkpoint(tmp_path / "ckpt.npz")
    del first

    proc = _python(f"""
        import numpy as np, graphc as gc
        sess = gc.Session(gc.load_plan({str(tmp_path / 'train.plan')!r}), threads={THREADS})
        sess.load_checkpoint({str(tmp_path / 'ckpt.npz')!r})
        b = np.load({str(tmp_path / 'batches.npz')!r})
        losses = []
        for i in range({n}, {n + m}):
            out = sess.run({{"x": b[f"x{{i}}"], "y": b[f"y{{i}}"]}})
            losses.append(float(out[{loss.name!r}]))
        np.save({str(tmp_path / 'losses.npy')!r}, np.array(losses))
        sess.save_checkpoint({str(tmp_path / 'final.npz')!r})
    """)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    np.testing.assert_array_equal(np.load(tmp_path / "losses.npy"), straight_losses[n:])
    resumed = Session(plan, threads=THREADS)
    resumed.load_checkpoint(tmp_path / "final.npz")
    assert int(resumed.get_variable("optimizer/step")) == n + m
    for name, want in _state(straight).items():
        np.testing.assert_array_equal(resumed.get_variable(name), want, err_msg=name)


def test_mismatched_checkpoint_names_the_variable(tmp_path):
    plan, _ = _mlp(hidden=16)
    Session(plan, threads=1).save_checkpoint(tmp_path / "h16.npz")
    other, _ = _mlp(hidden=7)
    sess = Session(other, threads=1)
    before = _state(sess)
    with pytest.raises(errors.CheckpointError, match=r"'w1'.*\(5, 7\).*\(5, 16\)"):
        sess.load_checkpoint(tmp_path / "h16.npz")
    for name, value in before.items():  # nothing was half-loaded
        np.testing.assert_array_equal(sess.get_variable(name), value)
    # An inference checkpoint has no optimizer state for a training plan.
    infer, _ = _mlp(optimizer=False)
    Session(infer, threads=1).save_checkpoint(tmp_path / "infer.npz")
    with pytest.raises(errors.CheckpointError, match=r"missing variable 'optimizer/step'.*'w1/adam_m'"):
        Session(plan, threads=1).load_checkpoint(tmp_path / "infer.npz")
    # ...and the other way round the training state is unexpected.
    with pytest.raises(errors.CheckpointError, match=r"unexpected variable 'optimizer/step'"):
        Session(infer, threads=1).load_checkpoint(tmp_path / "h16.npz")


def test_writer_killed_mid_write_leaves_the_previous_checkpoint(tmp_path):
    plan, loss = _mlp()
    plan.save(tmp_path / "train.plan")
    sess = Session(plan, threads=THREADS)
    sess.run(_batches(1)[0])
    path = tmp_path / "ckpt.npz"
    sess.save_checkpoint(path)
    saved = _state(sess)
    proc = _python(f"""
        import sys, time
        import numpy as np, graphc as gc
        import graphc.checkpoint as ckpt
        real = ckpt.atomic_write
        def half_then_hang(path, data):
            def write(f):
                f.write(data[: len(data) // 2])
                f.flush()
                print("HALF", flush=True)
                time.sleep(600)
                f.write(data[len(data) // 2:])
            real(path, write)
        ckpt.atomic_write = half_then_hang
        sess = gc.Session(gc.load_plan({str(tmp_path / 'train.plan')!r}), threads=1)
        sess.set_variable("w1", np.full((5, 16), 7.0, np.float32))
        sess.save_checkpoint({str(path)!r})
    """)
    try:
        line = proc.stdout.readline()
        assert line.strip() == "HALF", proc.stderr.read()
        assert any(p.name.endswith(".tmp") for p in tmp_path.iterdir())  # the half-written temp file
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    fresh = Session(plan, threads=THREADS)
    fresh.load_checkpoint(path)
    for name, want in saved.items():
        np.testing.assert_array_equal(fresh.get_variable(name), want, err_msg=name)


def test_corrupt_or_truncated_checkpoint(tmp_path):
    plan, _ = _mlp()
    sess = Session(plan, threads=1)
    good = tmp_path / "good.npz"
    sess.save_checkpoint(good)
    data = good.read_bytes()
    cases = {
        "truncated.npz": data[: len(data) // 2],
        "tail_cut.npz": data[:-10],
        "garbage.npz": b"\x00\x01not a checkpoint at all" * 10,
        "empty.npz": b"",
    }
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(errors.CheckpointError):
            sess.load_checkpoint(tmp_path / name)
    # A valid npz that is not a graphc checkpoint.
    np.savez(tmp_path / "foreign.npz", w1=np.zeros((5, 16), np.float32))
    with pytest.raises(errors.CheckpointError, match="not a graphc checkpoint"):
        sess.load_checkpoint(tmp_path / "foreign.npz")
    with pytest.raises(errors.CheckpointError, match="does not exist"):
        sess.load_checkpoint(tmp_path / "missing.npz")
    # Bit flips inside the compressed-free payload: CRC or shape check must catch it.
    flipped = bytearray(data)
    mid = len(flipped) // 2
    flipped[mid] ^= 0xFF
    (tmp_path / "flipped.npz").write_bytes(bytes(flipped))
    with pytest.raises(errors.CheckpointError):
        sess.load_checkpoint(tmp_path / "flipped.npz")
    sess.load_checkpoint(good)  # the good one still loads
