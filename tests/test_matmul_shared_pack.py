"""Packed weights shared between matmul steps (runtime/cpu/matmul.cc, SharedPack): several steps
multiplying by one variable share one pack, which the executor invalidates when a step of the
run writes the variable (an optimizer update), when set_variable changes it, and per run for a
feed.  Checked: a plan whose weight is a variable gives the same bits as the same plan with the
weight fed (never packed: arena values have no version); a training run after an optimizer step
gives the same bits as a fresh session loaded with the updated weight (a stale pack would not);
thread counts 1 and 2 agree bit for bit.
"""

import numpy as np
import pytest
from cpuinfo import cpu_flags

import graphc as gc

FLAGS = cpu_flags() or set()
HAS_AVX2 = {"avx2", "fma"} <= FLAGS
pytestmark = pytest.mark.skipif(not HAS_AVX2, reason="CPU lacks AVX2+FMA: no own GEMM kernel to pack for")

# Shapes on the own GEMM path (N >= 96, M*N*K > 2^18), forced too (GRAPHC_MATMUL_PATH=gemm).
M, K, N, STEPS = 32, 96, 128, 4


def _forward(xs, w):
    """An unrolled recurrence like an RNN's: h_{t+1} = tanh(x_t + h_t @ W^T) over STEPS steps,
    W (N x K) read by every step's matmul with transpose_b, and once more without it."""
    h = xs[0]
    for t in range(1, STEPS):
        h = gc.tanh(xs[t] + gc.matmul(h, w, transpose_b=True)[:, :K])
    return gc.matmul(gc.matmul(h, w, transpose_b=True), w)  # (M, N) @ (N, K): B not transposed


def _data(seed=0):
    rng = np.random.default_rng(seed)
    xs = [rng.standard_normal((M, K)).astype(np.float32) for _ in range(STEPS)]
    w = (rng.standard_normal((N, K)) / np.sqrt(K)).astype(np.float32)
    return xs, w


def _train_plan(w0, lr=0.05):
    with gc.Graph() as g:
        xs = [gc.placeholder(f"x{t}", (M, K)) for t in range(STEPS)]
        w = gc.variable("w", init=w0)
        y = _forward(xs, w)
        loss = gc.mean(y * y)
        gc.optim.SGD(lr=lr).minimize(loss)
    return gc.compile(g, fetches=[loss, y])


@pytest.fixture(autouse=True)
def _own_gemm(monkeypatch):
    monkeypatch.setenv("GRAPHC_MATMUL_PATH", "gemm")


def test_variable_weight_matches_fed_weight():
    xs, w0 = _data()
    with gc.Graph() as g:
        ph = [gc.placeholder(f"x{t}", (M, K)) for t in range(STEPS)]
        y_var = _forward(ph, gc.variable("w", init=w0))
    with gc.Graph() as gf:
        phf = [gc.placeholder(f"x{t}", (M, K)) for t in range(STEPS)]
        y_fed = _forward(phf, gc.placeholder("wf", (N, K)))
    feeds = {f"x{t}": xs[t] for t in range(STEPS)}
    for threads in (1, 2):
        sv = gc.Session(gc.compile(g, fetches=[y_var]), threads=threads)
        sf = gc.Session(gc.compile(gf, fetches=[y_fed]), threads=threads)
        for w in (w0, 2 * w0):  # set_variable between runs: the shared pack is rebuilt
            sv.set_variable("w", w)
            a = sv.run(feeds)[y_var.name]
            b = sf.run({**feeds, "wf": w})[y_fed.name]
            assert np.array_equal(a, b), threads
            a2 = sv.run(feeds)[y_var.name]  # the pack reused across runs
            assert np.array_equal(a, a2), threads


def test_training_steps_see_the_updated_weight():
    xs, w0 = _data(1)
    feeds = {f"x{t}": xs[t] for t in range(STEPS)}
    plan = _train_plan(w0)
    results = {}
    for threads in (1, 2):
        sess = gc.Session(plan, threads=threads)
        loss_name, y_name = sess.fetch_names
        runs = []
        for _ in range(3):
            w_before = sess.get_variable("w")
            out = sess.run(feeds)
            runs.append((w_before, out[loss_name], out[y_name], sess.get_variable("w")))
        # Every run against a fresh session holding the weight that run started from: a pack
        # left from before the optimizer update would give the previous run's numbers.
        for w_before, loss, y, w_after in runs:
            fresh = gc.Session(plan, threads=threads)
            fresh.set_variable("w", w_before)
            ref = fresh.run(feeds)
            assert np.array_equal(ref[loss_name], loss), threads
            assert np.array_equal(ref[y_name], y), threads
            assert np.array_equal(fresh.get_variable("w"), w_after), threads
        assert not np.array_equal(runs[0][0], runs[1][0])  # the weight did change
        assert not np.array_equal(runs[0][2], runs[1][2])
        results[threads] = runs
    for (a, b) in zip(results[1], results[2]):
        for x, y in zip(a, b):
            assert np.array_equal(x, y)


def test_training_against_numpy():
    """The recurrence's output against float64 numpy after each update (the loss uses the
    weight of that run, not a stale pack of an earlier one)."""
    xs, w0 = _data(2)
    feeds = {f"x{t}": xs[t] for t in range(STEPS)}
    sess = gc.Session(_train_plan(w0, lr=0.5), threads=2)
    loss_name, y_name = sess.fetch_names
    for _ in range(3):
        w = sess.get_variable("w").astype(np.float64)
        h = xs[0].astype(np.float64)
        for t in range(1, STEPS):
            h = np.tanh(xs[t] + (h @ w.T)[:, :K])
        ref = (h @ w.T) @ w
        y = sess.run(feeds)[y_name]
        assert np.allclose(y, ref, rtol=1e-4, atol=1e-4)


def test_lone_step_weight_rewritten_every_run():
    """One step multiplies by a weight the optimizer rewrites every run: packed on the first
    run, then on the unpacked path (matmul.cc); every run must match a fresh session started
    from the weight that run saw (which packs it), and the weight held still packs again."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((M, K)).astype(np.float32)
    w0 = (rng.standard_normal((K, N)) / np.sqrt(K)).astype(np.float32)
    with gc.Graph() as g:
        xp = gc.placeholder("x", (M, K))
        y = gc.matmul(xp, gc.variable("w", init=w0))
        loss = gc.mean(y * y)
        gc.optim.SGD(lr=0.5).minimize(loss)
    plan = gc.compile(g, fetches=[y])
    for threads in (1, 2):
        sess = gc.Session(plan, threads=threads)
        for _ in range(4):
            w = sess.get_variable("w")
            out = sess.run({"x": x})[y.name]
            fresh = gc.Session(plan, threads=threads)
            fresh.set_variable("w", w)
            assert np.array_equal(fresh.run({"x": x})[y.name], out), threads
            assert np.allclose(out, x.astype(np.float64) @ w, rtol=1e-4, atol=1e-4)
