"""Sessions shared by threads: every concurrent run() returns exactly what a serial
run with the same feeds returns (no torn fetches), for one Session and for several,
and variable reads/writes and checkpoints interleave safely with runs."""

import threading

import numpy as np

import graphc as gc
from graphc.graph import Graph
from graphc.session import Session, _load_runtime

THREADS = 8
RUNS_PER_THREAD = 40


def _inference_plan():
    """Big enough that a run takes a while (so threads overlap), small enough to be quick."""
    with Graph() as g:
        x = gc.placeholder("x", (None, 64))
        w1 = gc.variable("w1", (64, 128), init=gc.init.xavier_uniform(seed=3))
        w2 = gc.variable("w2", (128, 32), init=gc.init.xavier_uniform(seed=4))
        h = gc.tanh(x @ w1)
        y = h @ w2
        s = gc.sum(y, axis=1)
    return gc.compile(g, shapes={"x": (32, 64)}, fetches=[y.name, s.name])


def _feeds(k):
    return {"x": np.random.default_rng(1000 + k).standard_normal((32, 64)).astype(np.float32)}


def _hammer(sessions, feeds, expected, errors_out):
    """THREADS threads, each running RUNS_PER_THREAD times on sessions[t % n] with
    feeds[(t + r) % n_feeds]; every result is compared with the serial one."""
    barrier = threading.Barrier(THREADS)

    def work(t):
        try:
            barrier.wait(timeout=30)
            for r in range(RUNS_PER_THREAD):
                k = (t + r) % len(feeds)
                out = sessions[t % len(sessions)].run(feeds[k])
                for name, want in expected[k].items():
                    if not np.array_equal(out[name], want):
                        errors_out.append(f"thread {t} run {r} feed {k}: {name} differs from the serial run")
                        return
        except Exception as e:  # noqa: BLE001 — reported by the test
            errors_out.append(f"thread {t}: {type(e).__name__}: {e}")

    threads = [threading.Thread(target=work, args=(t,)) for t in range(THREADS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=120)
    assert not any(th.is_alive() for th in threads), "a thread did not finish: deadlock?"


def test_many_threads_one_session_match_serial_runs():
    plan = _inference_plan()
    sess = Session(plan, threads=2)
    feeds = [_feeds(k) for k in range(6)]
    expected = [sess.run(f) for f in feeds]
    # The feeds differ, so a torn fetch (another run's bytes) cannot pass unnoticed.
    assert not np.array_equal(expected[0][plan.fetches[0]], expected[1][plan.fetches[0]])
    errors = []
    _hammer([sess], feeds, expected, errors)
    assert not errors, errors[:5]


def test_many_threads_several_sessions_match_serial_runs():
    plan = _inference_plan()
    sessions = [Session(plan, threads=1) for _ in range(3)]
    feeds = [_feeds(k) for k in range(5)]
    expected = [sessions[0].run(f) for f in feeds]
    errors = []
    _hammer(sessions, feeds, expected, errors)
    assert not errors, errors[:5]


def test_executor_run_copies_fetches_under_its_lock():
    """The C++ layer alone (no Session lock): threads calling _runtime.Executor.run with
    their own fetch buffers get their own results."""
    plan = _inference_plan()
    ex = _load_runtime().Executor(plan.proto, 1, False)
    sess = Session(plan, threads=1)
    feeds = [_feeds(k) for k in range(4)]
    expected = [sess.run(f) for f in feeds]
    names = plan.fetches
    errors = []

    def work(t):
        for r in range(RUNS_PER_THREAD):
            k = (t + r) % len(feeds)
            outs = [np.empty_like(expected[k][n]) for n in names]
            ex.run([feeds[k]["x"]], outs)
            for n, o in zip(names, outs):
                if not np.array_equal(o, expected[k][n]):
                    errors.append(f"thread {t} run {r}: {n} torn")
                    return

    threads = [threading.Thread(target=work, args=(t,)) for t in range(THREADS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=120)
    assert not errors, errors[:5]


def test_set_variable_and_checkpoints_interleave_with_runs(tmp_path):
    """Each run sees one whole version of w1 (all ones or all twos), never a mix, while
    another thread keeps rewriting it; a checkpoint taken meanwhile is one version."""
    plan = _inference_plan()
    sess = Session(plan, threads=1)
    versions = {v: np.full((64, 128), v, np.float32) for v in (1.0, 2.0)}
    feeds = _feeds(0)
    expected = {}
    for v, w in versions.items():
        sess.set_variable("w1", w)
        expected[v] = sess.run(feeds)[plan.fetches[0]]
    assert not np.array_equal(expected[1.0], expected[2.0])
    stop = threading.Event()
    errors = []

    def writer():
        k = 0
        while not stop.is_set():
            sess.set_variable("w1", versions[1.0 if k % 2 else 2.0])
            k += 1

    def runner():
        for _ in range(RUNS_PER_THREAD):
            got = sess.run(feeds)[plan.fetches[0]]
            if not any(np.array_equal(got, e) for e in expected.values()):
                errors.append("a run saw a half-written w1")
                return

    def checkpointer():
        for k in range(10):
            path = tmp_path / f"ck{k}.npz"
            sess.save_checkpoint(path)
            w = np.load(path)["w1"]
            if not (np.all(w == 1.0) or np.all(w == 2.0)):
                errors.append("a checkpoint holds a half-written w1")
                return

    threads = [threading.Thread(target=writer)] + [threading.Thread(target=runner) for _ in range(3)]
    threads.append(threading.Thread(target=checkpointer))
    for th in threads:
        th.start()
    for th in threads[1:]:
        th.join(timeout=120)
    stop.set()
    threads[0].join(timeout=30)
    assert not errors, errors[:5]
