"""A small CNN (conv, batch norm, dropout, pooling, a residual add) through .pb → compile →
Session, as issue 11 asks: one .pb gives a training plan and an inference plan; the training
plan under a memory budget recomputes activations (dropout masks included) and gives the
same bits as the plan without a budget."""

import numpy as np
import pytest

import graphc as gc
from graphc._proto import graphc_pb2 as pb


def build_cnn(path, batch=4, dropout=0.25):
    """conv-bn-relu → residual (conv-bn-relu-conv-bn + x, relu) → dropout → avg pool → linear."""
    rng = np.random.default_rng(0)

    def var(name, shape, scale=0.2, trainable=True):
        return gc.variable(name, init=(rng.standard_normal(shape) * scale).astype(np.float32), trainable=trainable)

    def bn(x, name, c):
        with gc.name_scope(name):
            rm = gc.variable("running_mean", init=np.zeros(c, np.float32), trainable=False)
            rv = gc.variable("running_var", init=np.ones(c, np.float32), trainable=False)
            w = gc.variable("weight", init=np.ones(c, np.float32))
            b = gc.variable("bias", init=np.zeros(c, np.float32))
            return gc.batch_norm(x, rm, rv, w, b)

    with gc.Graph() as g:
        x = gc.placeholder("x", (None, 1, 8, 8))
        y = gc.placeholder("y", (None,), dtype="int64")
        h = gc.relu(bn(gc.conv2d(x, var("stem/weight", (8, 1, 3, 3)), padding=1), "stem_bn", 8))
        r = gc.relu(bn(gc.conv2d(h, var("block/conv1/weight", (8, 8, 3, 3)), padding=1), "block_bn1", 8))
        r = bn(gc.conv2d(r, var("block/conv2/weight", (8, 8, 3, 3)), padding=1), "block_bn2", 8)
        h = gc.relu(r + h)
        h = gc.dropout(h, p=dropout, seed=7)
        h = gc.avg_pool2d(h, 2)
        logits = gc.flatten(h) @ var("fc/weight", (8 * 4 * 4, 10))
        loss = gc.mean(gc.softmax_cross_entropy(logits, y))
        gc.optim.SGD(lr=0.05, momentum=0.9).minimize(loss)
    g.set_outputs([logits])
    g.save(path)
    return loss.name, logits.name


def batches(n, batch, seed=1):
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal((batch, 1, 8, 8)).astype(np.float32), rng.integers(0, 10, batch))
            for _ in range(n)]


def train(plan, data, threads=1):
    sess = gc.Session(plan, threads=threads)
    losses = [float(sess.run({"x": x, "y": y})[plan.fetches[0]]) for x, y in data]
    return sess, losses


def ops_of(plan, role=None):
    return [s.op for s in plan.proto.steps if role is None or s.role == role]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("cnn") / "cnn.pb")
    loss, logits = build_cnn(path)
    return path, loss, logits


def test_one_pb_gives_a_training_plan_and_an_inference_plan(model):
    path, loss, logits = model
    shapes = {"x": (4, 1, 8, 8), "y": (4,)}
    train_plan = gc.compile(path, shapes=shapes)
    infer_plan = gc.compile(path, shapes={"x": (4, 1, 8, 8)}, fetches=[logits], train=False)
    train_ops, infer_ops = set(ops_of(train_plan)), set(ops_of(infer_plan))
    assert any("dropout" in op for op in train_ops)
    assert not any("dropout" in op for op in infer_ops), infer_ops
    assert any("batch_norm" in op for op in train_ops)
    # the training plan updates the running statistics in place; the inference plan reads them
    sess, losses = train(train_plan, batches(5, 4))
    assert all(np.isfinite(losses))
    rm = sess.get_variable("block_bn1/running_mean")
    rv = sess.get_variable("block_bn1/running_var")
    assert np.any(rm != 0) and np.any(rv != 1)
    ckpt = path + ".ckpt.npz"
    sess.save_checkpoint(ckpt)
    inf = gc.Session(infer_plan)
    inf.load_checkpoint(ckpt, strict=False)   # the training state (momentum, rng/step) is not needed here
    x = batches(1, 4, seed=9)[0][0]
    got = inf.run({"x": x})[logits]
    # the inference plan is deterministic (no dropout) and equals the reference interpreter
    # evaluating the same graph with the trained variables (inference mode: running statistics)
    assert np.array_equal(got, inf.run({"x": x})[logits])
    g = gc.load(path)
    state = {name: sess.get_variable(name) for name in sess.variable_names}
    want = gc.reference.evaluate(g, {"x": x}, [logits], state=state)[logits]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("threads", [1, 2])
def test_recompute_under_a_budget_keeps_the_bits_dropout_included(model, threads):
    path, loss, logits = model
    shapes = {"x": (4, 1, 8, 8), "y": (4,)}
    full = gc.compile(path, shapes=shapes)
    budget = int(full.arena_bytes * 0.9)
    tight = gc.compile(path, shapes=shapes, memory_budget=budget)
    assert tight.arena_bytes <= budget < full.arena_bytes
    recomputed = ops_of(tight, pb.RECOMPUTE)
    assert any("dropout" in op for op in recomputed), recomputed   # the mask is recomputed, not stored
    data = batches(4, 4)
    s_full, l_full = train(full, data, threads)
    s_tight, l_tight = train(tight, data, threads)
    assert l_full == l_tight
    for name in s_full.variable_names:
        assert np.array_equal(s_full.get_variable(name), s_tight.get_variable(name)), name
