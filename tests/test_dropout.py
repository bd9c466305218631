"""Dropout through the compiler and the runtime: the training plan draws Philox masks keyed on
(seed, rng/step, element index) and scales the kept elements, a fresh mask each run; the
inference plan of the same .pb is the identity with no dropout step; masks agree with the numpy
stream at every thread count, survive a checkpoint, and are regenerated (not stored) by the
gradient and by the recompute pass under a memory budget."""

import math
import zlib

import numpy as np
import pytest

import graphc as gc
from graphc._proto import graphc_pb2 as pb
from graphc.errors import CompileError, GraphError
from graphc.ops.random import dropout_keep, dropout_scale
from graphc.session import Session

N, D = 64, 257  # 16448 elements: crosses the kernel's parallel grain


def _model(p=0.3, seed=11, lr=0.5):
    """loss = Σ dropout(x · w); dL/dw_j = Σ_n x_nj · m_nj, so one SGD step shows the mask too."""
    with gc.Graph() as g:
        x = gc.placeholder("x", (N, D))
        w = gc.variable("w", init=np.ones(D, np.float32))
        h = gc.dropout(x * w, p=p, seed=seed, name="drop")
        loss = gc.sum(h)
        gc.optim.SGD(lr=lr).minimize(loss)
    return g, h, loss


def _ones():
    return np.ones((N, D), np.float32)


def test_training_mask_matches_the_philox_stream_and_advances_per_run(device):
    p, seed = 0.3, 11
    g, h, loss = _model(p, seed, lr=1e-30)  # w stays exactly ones (1 - 1e-30·g rounds to 1): y shows the mask
    plan = gc.compile(g, fetches=[h.name, loss.name], target=device)
    assert any(v.name == "rng/step" for v in plan.proto.persistent)
    sess = Session(plan, device=device, threads=2)
    scale = dropout_scale(p, np.float32)
    outs = []
    for step in range(3):
        assert int(sess.get_variable("rng/step")) == step
        y = sess.run({"x": _ones()})[h.name]
        keep = dropout_keep(N * D, seed, step, p).reshape(N, D)
        np.testing.assert_array_equal(y, np.where(keep, scale, np.float32(0)))
        outs.append(y)
    assert int(sess.get_variable("rng/step")) == 3
    assert not np.array_equal(outs[0], outs[1])


def test_keep_rate_and_scale_statistics():
    # n Bernoulli(1 - p) draws: the kept count is within 5 binomial standard deviations
    # (a false alarm has probability < 1e-6), every kept value is exactly x / (1 - p)
    for p in (0.1, 0.5, 0.8):
        g, h, _ = _model(p, seed=3)
        sess = Session(gc.compile(g, fetches=[h.name]), threads=2)
        x = np.random.default_rng(0).uniform(1, 2, (N, D)).astype(np.float32)
        y = sess.run({"x": x})[h.name]
        n = N * D
        kept = int(np.count_nonzero(y))
        assert abs(kept - n * (1 - p)) <= 5 * math.sqrt(n * p * (1 - p)), (p, kept)
        np.testing.assert_array_equal(y[y != 0], x[y != 0] * dropout_scale(p, np.float32))
        # E[y] = x: the sample mean of y / x is 1 within 5 standard errors (var of m is p / (1 - p))
        ratio = (y / x).mean()
        assert abs(ratio - 1) <= 5 * math.sqrt(p / (1 - p) / n), (p, ratio)


def test_masks_identical_at_threads_1_and_2():
    g, h, loss = _model()
    plan = gc.compile(g, fetches=[h.name, loss.name])
    x = np.random.default_rng(1).standard_normal((N, D)).astype(np.float32)
    r1 = Session(plan, threads=1).run({"x": x})
    r2 = Session(plan, threads=2).run({"x": x})
    assert r1[h.name].tobytes() == r2[h.name].tobytes()


def test_masks_independent_of_the_plan():
    # fused or not, the same (seed, step, index) gives the same bit
    g, h, loss = _model()
    x = np.random.default_rng(6).standard_normal((N, D)).astype(np.float32)
    fused = Session(gc.compile(g, fetches=[h.name, loss.name])).run({"x": x})
    unfused = Session(gc.compile(g, fetches=[h.name, loss.name], fuse=False)).run({"x": x})
    assert fused[h.name].tobytes() == unfused[h.name].tobytes()


def test_gradient_regenerates_the_mask(device):
    p, seed, lr = 0.4, 5, 0.5
    g, _, _ = _model(p, seed, lr)
    sess = Session(gc.compile(g, target=device), device=device, threads=2)
    x = np.random.default_rng(2).uniform(0.5, 1.5, (N, D)).astype(np.float32)
    sess.run({"x": x})
    m = np.where(dropout_keep(N * D, seed, 0, p).reshape(N, D), dropout_scale(p, np.float32), np.float32(0))
    want = np.ones(D, np.float32) - np.float32(lr) * (x * m).sum(axis=0, dtype=np.float64).astype(np.float32)
    np.testing.assert_allclose(sess.get_variable("w"), want, rtol=1e-5, atol=1e-5)


def test_inference_plan_of_the_same_model_is_the_identity(tmp_path):
    g, h, _ = _model()
    path = str(tmp_path / "m.pb")
    g.save(path)
    for plan in (gc.compile(path, train=False, fetches=[h.name]), gc.compile(path, train=False)):
        ops = [s.op for s in plan.proto.steps] + [m.op for s in plan.proto.steps for m in s.fused]
        assert not any("dropout" in op for op in ops), ops
        assert all(v.name != "rng/step" for v in plan.proto.persistent)
    x = np.random.default_rng(3).standard_normal((N, D)).astype(np.float32)
    out = Session(gc.compile(path, train=False, fetches=[h.name])).run({"x": x})
    np.testing.assert_array_equal(out[h.name], x)
    # a model without a training spec is an inference model too
    with gc.Graph() as g2:
        x2 = gc.placeholder("x", (3, 4))
        y2 = gc.dropout(x2, 0.5)
    xv = np.arange(12, dtype=np.float32).reshape(3, 4)
    np.testing.assert_array_equal(Session(gc.compile(g2)).run({"x": xv})[y2.name], xv)


def test_default_seed_is_crc32_of_the_node_name():
    p = 0.5
    with gc.Graph() as g:
        x = gc.placeholder("x", (N, D))
        w = gc.variable("w", init=np.ones(D, np.float32))
        with gc.name_scope("block"):
            h = gc.dropout(x * w, p=p)
        gc.optim.SGD(lr=0.1).minimize(gc.sum(h))
    assert h.name == "block/dropout"
    y = Session(gc.compile(g, fetches=[h.name])).run({"x": _ones()})[h.name]
    keep = dropout_keep(N * D, zlib.crc32(b"block/dropout"), 0, p).reshape(N, D)
    np.testing.assert_array_equal(y != 0, keep)


def test_two_dropouts_share_one_step_counter_and_draw_different_masks():
    with gc.Graph() as g:
        x = gc.placeholder("x", (N, D))
        w = gc.variable("w", init=np.ones(D, np.float32))
        a = gc.dropout(x * w, 0.5, name="a")
        b = gc.dropout(x * w, 0.5, name="b")
        gc.optim.SGD(lr=0.1).minimize(gc.sum(a) + gc.sum(b))
    plan = gc.compile(g, fetches=[a.name, b.name])
    assert [v.name for v in plan.proto.persistent].count("rng/step") == 1
    sess = Session(plan)
    r = sess.run({"x": _ones()})
    assert not np.array_equal(r[a.name], r[b.name])
    assert int(sess.get_variable("rng/step")) == 1


def test_checkpoint_resumes_the_mask_sequence(tmp_path):
    g, h, loss = _model()
    plan = gc.compile(g, fetches=[h.name, loss.name])
    x = np.random.default_rng(4).standard_normal((N, D)).astype(np.float32)
    a = Session(plan)
    a.run({"x": x})
    ck = str(tmp_path / "ck.npz")
    a.save_checkpoint(ck)
    want = a.run({"x": x})[h.name]
    b = Session(plan)
    b.load_checkpoint(ck)
    assert b.run({"x": x})[h.name].tobytes() == want.tobytes()


def _deep_dropout_net(depth=6, width=96, batch=32):
    with gc.Graph() as g:
        x = gc.placeholder("x", (batch, width))
        y = gc.placeholder("y", (batch,), "int64")
        hid = x
        for k in range(depth):
            w = gc.variable(f"w{k}", (width, width), init=gc.init.xavier_uniform(seed=k))
            hid = gc.dropout(gc.tanh(hid @ w), p=0.2, seed=100 + k, name=f"drop{k}")
        loss = gc.softmax_cross_entropy(hid, y)
        gc.optim.SGD(lr=0.1, momentum=0.9).minimize(loss)
    return g


def test_recompute_under_a_budget_regenerates_the_same_masks():
    g = _deep_dropout_net()
    free = gc.compile(g, fuse=False)
    budget = free.arena_bytes * 7 // 10  # tight enough that dropout outputs are dropped and recomputed
    tight = gc.compile(g, memory_budget=budget, fuse=False)
    assert tight.arena_bytes <= budget < free.arena_bytes
    recomputed = [s for s in tight.proto.steps if s.role == pb.RECOMPUTE]
    assert any(s.op == "dropout_train" for s in recomputed), [s.op for s in recomputed]
    rng = np.random.default_rng(5)
    feeds = {"x": rng.standard_normal((32, 96)).astype(np.float32), "y": rng.integers(0, 96, 32)}
    s_free, s_tight = Session(free), Session(tight)
    for _ in range(3):
        assert s_free.run(feeds)[g.training.loss].tobytes() == s_tight.run(feeds)[g.training.loss].tobytes()
    for k in range(6):
        assert s_free.get_variable(f"w{k}").tobytes() == s_tight.get_variable(f"w{k}").tobytes()


@pytest.mark.parametrize("p", [1.0, -0.1, 1.5, True, "0.5"])
def test_bad_p_is_refused(p):
    with gc.Graph():
        x = gc.placeholder("x", (3,))
        with pytest.raises(GraphError, match="p must be a number in"):
            gc.dropout(x, p)


def test_bad_seed_and_step_variable_are_refused():
    with gc.Graph():
        x = gc.placeholder("x", (3,))
        with pytest.raises(GraphError, match=r"seed in \[0, 2\*\*63\)"):
            gc.dropout(x, 0.5, seed=-1)
    with gc.Graph() as g:
        x = gc.placeholder("x", (3,))
        v = gc.variable("rng/step", init=np.zeros(2, np.float32), trainable=False)
        w = gc.variable("w", init=np.ones(3, np.float32))
        gc.optim.SGD(lr=0.1).minimize(gc.sum(gc.dropout(x * w, 0.5)) + gc.sum(v))
    with pytest.raises(CompileError, match=r"rng/step.*must be int64 of shape \(\)"):
        gc.compile(g)
