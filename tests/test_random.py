"""random_uniform / random_normal through the compiler and the runtime: plan steps on dropout's
Philox stream keyed on (seed, rng/step, element index), a fresh draw at every run of any plan
(training or inference), one rng/step increment per plan however many nodes draw, the kernel
equal to the numpy reference (gc.reference) for the same rng/step, identical at threads 1/2/3,
the distributions within bounds derived from the sample size, no gradient through a draw, a
checkpoint resuming the sequence, and typed errors for bad arguments."""

import math
import zlib

import numpy as np
import pytest

import graphc as gc
from graphc.errors import DTypeError, GraphError, ShapeError
from graphc.ops.random import RNG_STEP, random_normals, random_uniforms
from graphc.session import Session

SHAPE = (61, 67)  # 4087 elements: odd, a partial last block, several parallel chunks at the kernel's grain


def _increments(plan):
    """The plan steps that write rng/step in place."""
    names = [v.name for v in plan.proto.values]
    return [s for s in plan.proto.steps if s.op == "assign" and names[s.inputs[0]] == RNG_STEP]


def _draws(dtype="float32", seed=5):
    with gc.Graph() as g:
        u = gc.random_uniform(SHAPE, -2.0, 3.0, dtype=dtype, seed=seed, name="u")
        z = gc.random_normal(SHAPE, 1.5, 0.5, dtype=dtype, seed=seed + 1, name="z")
    return g, u, z


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_kernel_equals_reference_and_advances_one_step_per_run(dtype, device):
    g, u, z = _draws(dtype)
    plan = gc.compile(g, fetches=[u, z], target=device)
    assert len(_increments(plan)) == 1  # an inference plan increments too: one step per run
    sess = Session(plan, device=device, threads=2)
    seen = []
    for step in range(3):
        assert int(sess.get_variable(RNG_STEP)) == step
        out = sess.run({})
        ref = gc.reference.evaluate(g, {}, [u, z], state={RNG_STEP: np.asarray(step, np.int64)})
        # uniform: the same float64 operations in the same order: equal bits
        np.testing.assert_array_equal(out["u"], ref[u])
        # normal: libm's log/sin/cos against numpy's may differ in the last ulp of float64, which
        # rounding to float32 almost always hides
        np.testing.assert_allclose(out["z"], ref[z], rtol=1e-6 if dtype == "float32" else 1e-14, atol=0)
        assert out["u"].dtype == out["z"].dtype == np.dtype(dtype)
        seen.append(out)
    assert int(sess.get_variable(RNG_STEP)) == 3
    assert not np.array_equal(seen[0]["u"], seen[1]["u"]) and not np.array_equal(seen[1]["z"], seen[2]["z"])


def test_reference_layout_matches_the_dropout_stream():
    # float32 uniforms are the 24-bit words dropout thresholds: u < p exactly where dropout drops
    from graphc.ops.random import dropout_keep
    n, seed, step, p = 1001, 77, 9, 0.37
    u = random_uniforms(n, seed, step, "float32")
    np.testing.assert_array_equal(u >= p, dropout_keep(n, seed, step, p))
    # the draws of element i depend on i only, not on how many are drawn
    assert np.array_equal(random_uniforms(5, seed, step, "float64"), random_uniforms(n, seed, step, "float64")[:5])
    assert np.array_equal(random_normals(3, seed, step, "float32"), random_normals(n, seed, step, "float32")[:3])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_identical_at_threads_1_2_3(dtype):
    with gc.Graph() as g:
        u = gc.random_uniform((257, 259), dtype=dtype, seed=3, name="u")  # > 16k blocks: every thread works
        z = gc.random_normal((257, 259), dtype=dtype, seed=4, name="z")
    plan = gc.compile(g, fetches=[u, z])
    runs = [Session(plan, threads=t).run({}) for t in (1, 2, 3)]
    for r in runs[1:]:
        assert r["u"].tobytes() == runs[0]["u"].tobytes() and r["z"].tobytes() == runs[0]["z"].tobytes()


def _ks_bound(n, alpha=1e-6):
    """The Kolmogorov–Smirnov distance a true sample of size n exceeds with probability <= alpha
    (the DKW inequality: P(D > e) <= 2 exp(-2 n e²))."""
    return math.sqrt(math.log(2 / alpha) / (2 * n))


def _normal_cdf(x):
    return 0.5 * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_distributions(dtype):
    # Every bound below fails a correct generator with probability about 1e-6 or less: means within
    # 5 standard errors, variances within 5 standard errors of the sample variance, the KS distance
    # under the DKW bound, adjacent elements (a Box–Muller pair) uncorrelated within 5 / √n.
    n = 200_000
    with gc.Graph() as g:
        u = gc.random_uniform((n,), -1.0, 3.0, dtype=dtype, seed=21, name="u")
        z = gc.random_normal((n,), 2.0, 3.0, dtype=dtype, seed=22, name="z")
    out = Session(gc.compile(g, fetches=[u, z]), threads=2).run({})
    uu, zz = out["u"].astype(np.float64), out["z"].astype(np.float64)
    assert uu.min() >= -1.0 and uu.max() < 3.0
    se = 5 / math.sqrt(n)
    assert abs(uu.mean() - 1.0) <= se * 4 / math.sqrt(12)           # uniform(-1, 3): σ = 4/√12
    assert abs(uu.var() - 16 / 12) <= se * math.sqrt(64 / 45)  # Var((u - m)²) = a⁴/5 - (a²/3)² = 64/45, a = 2
    x = np.sort((uu + 1) / 4)
    ecdf = np.arange(1, n + 1) / n
    assert np.max(np.maximum(ecdf - x, x - (ecdf - 1 / n))) <= _ks_bound(n)
    s = (zz - 2.0) / 3.0
    assert abs(s.mean()) <= se and abs(s.var() - 1) <= se * math.sqrt(2)  # Var of z² is 2
    cdf = _normal_cdf(np.sort(s))
    assert np.max(np.maximum(ecdf - cdf, cdf - (ecdf - 1 / n))) <= _ks_bound(n)
    assert abs(np.mean(s[:-1] * s[1:])) <= se and abs(np.mean((uu[:-1] - 1) * (uu[1:] - 1)) / (16 / 12)) <= se
    # Box–Muller's r is bounded by the smallest u₁: |z| <= √(2 · bits · ln 2)
    assert np.abs(s).max() <= math.sqrt(2 * (24 if dtype == "float32" else 53) * math.log(2)) + 1e-6


def test_seeds_and_default_seed():
    g1, u1, _ = _draws(seed=5)
    g2, u2, _ = _draws(seed=6)
    a = Session(gc.compile(g1, fetches=[u1])).run({})["u"]
    b = Session(gc.compile(g2, fetches=[u2])).run({})["u"]
    assert not np.array_equal(a, b)
    assert np.array_equal(a, Session(gc.compile(_draws(seed=5)[0], fetches=["u"])).run({})["u"])  # reproducible
    with gc.Graph() as g:
        with g.name_scope("gen"):
            p = gc.random_normal((3, 4))
            q = gc.random_normal((3, 4))
    nodes = {n.name: n for n in g.nodes}
    # seed None: crc32 of the node's full name (as dropout), so two nodes differ and rebuilding agrees
    assert nodes[p.name].attrs["seed"] == zlib.crc32(b"gen/random_normal")
    assert nodes[q.name].attrs["seed"] == zlib.crc32(q.name.encode())
    assert [v.name for v in g.variables] == [RNG_STEP]  # one counter, outside the scope
    out = gc.reference.evaluate(g, {}, [p, q])
    assert not np.array_equal(out[p], out[q])


def test_like_shape_is_bound_at_compile_time_and_roundtrips(tmp_path):
    with gc.Graph() as g:
        x = gc.placeholder("x", (None, 1, 3, 3))
        eps = gc.random_normal(x, seed=8, name="eps")   # a Tensor shape: the _like form
        u = gc.random_uniform_like(x, seed=9, name="u", dtype="float64")
        y = x + 0.1 * eps
    assert eps.shape == (None, 1, 3, 3) and eps.dtype == "float32" and u.dtype == "float64"
    g.save(tmp_path / "m.pb")
    model = gc.load(tmp_path / "m.pb")
    xv = np.zeros((5, 1, 3, 3), np.float32)
    out = Session(gc.compile(model, shapes={"x": xv.shape}, fetches=[y.name, "u"])).run({"x": xv})
    assert out[y.name].shape == (5, 1, 3, 3)
    ref = gc.reference.evaluate(g, {"x": xv}, [y, u])
    np.testing.assert_allclose(out[y.name], ref[y], rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(out["u"], ref[u])
    # a plan fetching only the draw still takes x (a data-less input: its dims, not its values)
    only = Session(gc.compile(model, shapes={"x": (2, 1, 3, 3)}, fetches=["eps"]))
    assert only.feed_names == ["x"]
    e1 = only.run({"x": np.full((2, 1, 3, 3), np.nan, np.float32)})["eps"]
    assert e1.shape == (2, 1, 3, 3) and np.isfinite(e1).all()


def test_dropout_and_random_ops_share_one_increment_in_training():
    with gc.Graph() as g:
        x = gc.placeholder("x", (8, 16))
        w = gc.variable("w", init=np.ones((16, 16), np.float32))
        noise = gc.random_normal_like(x, stddev=0.1, seed=1)
        h = gc.dropout(gc.relu((x + noise) @ w), p=0.2, seed=2)
        loss = gc.mean(h * h)
        gc.optim.SGD(lr=0.01).minimize(loss)
    plan = gc.compile(g)
    assert len(_increments(plan)) == 1
    assert [v.name for v in plan.proto.persistent].count(RNG_STEP) == 1
    sess = Session(plan, threads=2)
    xv = np.random.default_rng(0).standard_normal((8, 16)).astype(np.float32)
    for _ in range(3):
        sess.run({"x": xv})
    assert int(sess.get_variable(RNG_STEP)) == 3


def test_no_gradient_through_a_draw():
    # DDPM-like: loss = mean((w · (x + eps) - eps)²); the noise is a constant for autodiff
    with gc.Graph() as g:
        x = gc.placeholder("x", (None, 4))
        w = gc.variable("w", init=np.full(4, 0.5, np.float32))
        eps = gc.random_normal(x, seed=3, name="eps")
        loss = gc.mean((w * (x + eps) - eps) ** 2)
        (gw,) = gc.gradients(loss, [w])
    xv = np.random.default_rng(1).standard_normal((6, 4)).astype(np.float32)
    sess = Session(gc.compile(g, shapes={"x": xv.shape}, fetches=[loss, gw, eps]))
    out = sess.run({"x": xv})
    e = out["eps"].astype(np.float64)
    want = np.sum(2 * (0.5 * (xv + e) - e) * (xv + e), axis=0) / e.size  # d/dw of the mean over (6, 4)
    np.testing.assert_allclose(out[gw.name], want, rtol=1e-5, atol=1e-6)
    # a training entry over w compiles and trains
    with g:
        gc.optim.SGD(lr=0.1).minimize(loss)
    tsess = Session(gc.compile(g, shapes={"x": xv.shape}))
    before = tsess.get_variable("w").copy()
    tsess.run({"x": xv})
    assert not np.array_equal(before, tsess.get_variable("w"))


def test_checkpoint_resumes_the_sequence(tmp_path, device):
    g, u, z = _draws()
    plan = gc.compile(g, fetches=[u, z], target=device)
    a = Session(plan, device=device)
    a.run({})
    ck = str(tmp_path / "rng.ckpt")
    a.save_checkpoint(ck)
    want = [a.run({}) for _ in range(2)]
    b = Session(plan, device=device)
    b.load_checkpoint(ck)
    got = [b.run({}) for _ in range(2)]
    for w, r in zip(want, got):
        assert w["u"].tobytes() == r["u"].tobytes() and w["z"].tobytes() == r["z"].tobytes()


def test_errors_are_typed_and_name_the_argument():
    with gc.Graph():
        x = gc.placeholder("x", (None, 3))
        with pytest.raises(GraphError, match="shape must be a tuple of ints"):
            gc.random_normal((None, 3))
        with pytest.raises(GraphError, match="shape must be"):
            gc.random_uniform((2, -1))
        with pytest.raises(GraphError, match="seed must be"):
            gc.random_normal((2,), seed=-1)
        with pytest.raises(GraphError, match="seed must be"):
            gc.random_normal((2,), seed=2**63)
        with pytest.raises(ShapeError, match=r"random_uniform\(name=bad\).*minval <= maxval"):
            gc.random_uniform((2,), 1.0, 0.0, name="bad")
        with pytest.raises(ShapeError, match="stddev >= 0"):
            gc.random_normal((2,), stddev=-1.0)
        with pytest.raises(ShapeError, match="finite"):
            gc.random_normal_like(x, mean=float("nan"))
        with pytest.raises(DTypeError, match="float32 or float64"):
            gc.random_normal((2,), dtype="int32")
        with pytest.raises(DTypeError, match="float32 or float64"):
            gc.random_uniform_like(x, dtype="int64")
        with pytest.raises(GraphError, match="must be a Tensor"):
            gc.random_normal_like(np.zeros(3))
    with gc.Graph():
        gc.variable(RNG_STEP, init=np.zeros(2, np.float32), trainable=False)
        with pytest.raises(GraphError, match="rng/step.*int64 scalar variable"):
            gc.random_normal((2,))


def test_a_plan_without_draws_has_no_increment():
    with gc.Graph() as g:
        x = gc.placeholder("x", (3,))
        z = gc.random_normal((3,), seed=1, name="z")
        y = x * 2.0
    plan = gc.compile(g, fetches=[y])  # the draw is pruned: nothing reads rng/step
    assert not _increments(plan) and all(v.name != RNG_STEP for v in plan.proto.persistent)
    assert len(_increments(gc.compile(g, fetches=[y, z]))) == 1


def test_rng_increment_carries_the_first_draws_line():
    """The appended rng/step increment names the user's line of the first draw (as every other
    node names a user line).  Before: its steps had no provenance at all."""
    import inspect
    with gc.Graph() as g:
        x = gc.placeholder("x", (2, 3))
        line = inspect.currentframe().f_lineno + 1
        y = x + gc.random_normal((2, 3), seed=1)
    plan = gc.compile(g, fetches=[y])
    steps = [s for s in plan.proto.steps if s.node.startswith("rng/step/")]
    assert steps, "the plan increments rng/step"
    for s in steps:
        assert s.HasField("provenance") and s.provenance.file == __file__ and s.provenance.line == line, s
