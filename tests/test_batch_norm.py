"""Batch norm through the compiler and the runtime: one .pb, two plans.  The training plan
normalises with the batch statistics and updates the running ones in place (PyTorch's
momentum rule, unbiased running variance); the inference plan of the same model uses the
running statistics.  Compared with torch.nn.functional.batch_norm where torch imports."""

import numpy as np
import pytest

import graphc as gc
from graphc.errors import CompileError, GraphError, ShapeError
from graphc.session import Session

SHAPES = [(8, 3, 5, 7), (6, 4), (5, 3, 9)]


def _model(shape, momentum=0.1, eps=1e-5, lr=0.1, seed=0):
    """y = batch_norm(x); loss = Σ y · r (r fixed), trained by SGD on weight and bias."""
    rng = np.random.default_rng(seed)
    c = shape[1]
    with gc.Graph() as g:
        x = gc.placeholder("x", shape)
        with gc.name_scope("bn"):
            rm = gc.variable("running_mean", init=rng.uniform(-0.5, 0.5, c).astype(np.float32), trainable=False)
            rv = gc.variable("running_var", init=rng.uniform(0.5, 1.5, c).astype(np.float32), trainable=False)
            w = gc.variable("weight", init=rng.uniform(0.5, 1.5, c).astype(np.float32))
            b = gc.variable("bias", init=rng.uniform(-0.5, 0.5, c).astype(np.float32))
        y = gc.batch_norm(x, rm, rv, w, b, momentum=momentum, eps=eps, name="bn")
        r = gc.constant(rng.standard_normal(shape).astype(np.float32), name="r")
        loss = gc.sum(y * r)
        gc.optim.SGD(lr=lr).minimize(loss)
    init = {v.name: v.init_value.copy() for v in g.variables}
    return g, y, loss, init, g.tensor("r").producer.attrs["value"]


def _inputs(shape, steps, seed=1):
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal(shape) * 2 + 0.5).astype(np.float32) for _ in range(steps)]


@pytest.mark.parametrize("shape", SHAPES)
def test_training_matches_torch_for_three_steps(shape):
    torch = pytest.importorskip("torch", reason="torch is not installed: the PyTorch comparison needs it")
    F = torch.nn.functional
    momentum, eps, lr = 0.1, 1e-5, 0.1
    g, y, loss, init, r = _model(shape, momentum, eps, lr)
    sess = Session(gc.compile(g, fetches=[y.name, loss.name]), threads=2)
    t = {k: torch.tensor(v) for k, v in init.items()}
    w = t["bn/weight"].clone().requires_grad_(True)
    b = t["bn/bias"].clone().requires_grad_(True)
    rm, rv = t["bn/running_mean"].clone(), t["bn/running_var"].clone()
    for xv in _inputs(shape, 3):
        got = sess.run({"x": xv})
        ty = F.batch_norm(torch.tensor(xv), rm, rv, w, b, training=True, momentum=momentum, eps=eps)
        tl = (ty * torch.tensor(r)).sum()
        tl.backward()
        with torch.no_grad():
            w -= lr * w.grad
            b -= lr * b.grad
            w.grad = None
            b.grad = None
        np.testing.assert_allclose(got[y.name], ty.detach().numpy(), rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(got[loss.name], tl.item(), rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(sess.get_variable("bn/running_mean"), rm.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(sess.get_variable("bn/running_var"), rv.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(sess.get_variable("bn/weight"), w.detach().numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(sess.get_variable("bn/bias"), b.detach().numpy(), rtol=1e-4, atol=1e-4)


def test_inference_plan_of_the_same_pb_uses_running_stats(tmp_path):
    shape = (8, 3, 5, 7)
    g, y, _, init, _ = _model(shape)
    path = str(tmp_path / "bn.pb")
    g.save(path)
    train = Session(gc.compile(path), threads=2)
    for xv in _inputs(shape, 3):
        train.run({"x": xv})
    infer_plan = gc.compile(path, train=False, fetches=[y.name])
    ops = [s.op for s in infer_plan.proto.steps] + [m.op for s in infer_plan.proto.steps for m in s.fused]
    assert not any(op.startswith("batch_norm") for op in ops), ops
    infer = Session(infer_plan)
    for name in infer.variable_names:
        infer.set_variable(name, train.get_variable(name))
    rm, rv = train.get_variable("bn/running_mean"), train.get_variable("bn/running_var")
    w, b = train.get_variable("bn/weight"), train.get_variable("bn/bias")
    assert not np.allclose(rm, init["bn/running_mean"])  # training moved them
    xv = _inputs(shape, 1, seed=9)[0]
    got = infer.run({"x": xv})[y.name]
    cs = (3, 1, 1)
    want = (xv - rm.reshape(cs)) / np.sqrt(rv.reshape(cs) + 1e-5) * w.reshape(cs) + b.reshape(cs)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    infer.run({"x": xv})
    assert infer.get_variable("bn/running_mean").tobytes() == rm.tobytes()  # inference changes nothing
    torch = pytest.importorskip("torch", reason="torch is not installed: the PyTorch comparison needs it")
    ty = torch.nn.functional.batch_norm(torch.tensor(xv), torch.tensor(rm), torch.tensor(rv), torch.tensor(w),
                                        torch.tensor(b), training=False, eps=1e-5)
    np.testing.assert_allclose(got, ty.numpy(), rtol=1e-5, atol=1e-5)


def test_a_model_without_training_spec_is_inference():
    rng = np.random.default_rng(0)
    with gc.Graph() as g:
        x = gc.placeholder("x", (4, 2, 3))
        rm = gc.variable("rm", init=np.array([0.5, -1.0], np.float32), trainable=False)
        rv = gc.variable("rv", init=np.array([4.0, 0.25], np.float32), trainable=False)
        y = gc.batch_norm(x, rm, rv)  # weight, bias None: ones, zeros
    xv = rng.standard_normal((4, 2, 3)).astype(np.float32)
    got = Session(gc.compile(g)).run({"x": xv})[y.name]
    want = (xv - np.array([0.5, -1.0], np.float32)[:, None]) / np.sqrt(np.array([4.0, 0.25])[:, None] + 1e-5)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_training_results_identical_at_threads_1_and_2():
    shape = (16, 5, 9, 11)
    g, y, loss, _, _ = _model(shape)
    plan = gc.compile(g, fetches=[y.name, loss.name])
    s1, s2 = Session(plan, threads=1), Session(plan, threads=2)
    for xv in _inputs(shape, 2):
        r1, r2 = s1.run({"x": xv}), s2.run({"x": xv})
        assert r1[y.name].tobytes() == r2[y.name].tobytes()
    for name in ("bn/running_mean", "bn/running_var", "bn/weight"):
        assert s1.get_variable(name).tobytes() == s2.get_variable(name).tobytes()


def test_training_nodes_keep_the_user_name_and_provenance():
    from graphc.compiler.pipeline import lower_graph
    g, y, _, _, _ = _model((4, 3, 2, 2))
    graph = lower_graph(g)
    parts = {n.name: n for n in graph.nodes if n.name.startswith("bn/")}
    assert parts["bn/train"].op == "batch_norm_train" and parts["bn/update_stats"].op == "batch_norm_update_stats"
    assert parts["bn/train"].outputs[0] == "bn"  # consumers read the node's own output name
    assert parts["bn/train"].provenance == g.node("bn").provenance
    assert parts["bn/train"].provenance[0].endswith("test_batch_norm.py")


def test_bad_arguments_are_refused():
    with gc.Graph():
        x = gc.placeholder("x", (2, 3))
        rm = gc.variable("rm", init=np.zeros(3, np.float32), trainable=False)
        rv = gc.variable("rv", init=np.ones(3, np.float32), trainable=False)
        with pytest.raises(ShapeError, match=r"momentum in \[0, 1\] or None"):
            gc.batch_norm(x, rm, rv, momentum=1.5)
        with pytest.raises(ShapeError, match=r"running_var \(input 2\) of shape \(3,\)"):
            gc.batch_norm(x, rm, gc.variable("rv4", init=np.ones(4, np.float32)))
        with pytest.raises(ShapeError, match="rank >= 2"):
            gc.batch_norm(gc.placeholder("v", (3,)), rm, rv)
        with pytest.raises(GraphError, match="attr 'eps'"):
            gc.batch_norm(x, rm, rv, eps="small")


def test_momentum_none_is_the_cumulative_average_as_torch():
    torch = pytest.importorskip("torch", reason="torch is not installed: the PyTorch comparison needs it")
    shape, c = (8, 3, 5, 7), 3
    with gc.Graph() as g:
        x = gc.placeholder("x", shape)
        with gc.name_scope("bn1"):
            rm = gc.variable("running_mean", init=np.zeros(c, np.float32), trainable=False)
            rv = gc.variable("running_var", init=np.ones(c, np.float32), trainable=False)
            w = gc.variable("weight", init=np.ones(c, np.float32))
            b = gc.variable("bias", init=np.zeros(c, np.float32))
        y = gc.batch_norm(x, rm, rv, w, b, momentum=None, name="bn1/norm")
        gc.optim.SGD(lr=1e-30).minimize(gc.sum(y * y))  # weight and bias stay 1 and 0 (rounding)
    plan = gc.compile(g, fetches=[y.name])
    # the counter sits beside the running statistics, as PyTorch's state_dict key bn1.num_batches_tracked
    assert "bn1/num_batches_tracked" in [v.name for v in plan.proto.persistent]
    sess = Session(plan, threads=2)
    module = torch.nn.BatchNorm2d(c, momentum=None, affine=False)
    module.train()
    for xv in _inputs(shape, 3):
        got = sess.run({"x": xv})[y.name]
        want = module(torch.tensor(xv)).detach().numpy()
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(sess.get_variable("bn1/running_mean"), module.running_mean.numpy(), rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(sess.get_variable("bn1/running_var"), module.running_var.numpy(), rtol=1e-5, atol=1e-6)
    assert int(sess.get_variable("bn1/num_batches_tracked")) == int(module.num_batches_tracked) == 3
    # inference: no counter, the running statistics normalise
    infer = gc.compile(g, train=False, fetches=[y.name])
    assert "bn1/num_batches_tracked" not in [v.name for v in infer.proto.persistent]


def _train_graph(x_shape, stats_are_variables=True, momentum=0.1):
    c = x_shape[1]
    with gc.Graph() as g:
        x = gc.placeholder("x", x_shape)
        if stats_are_variables:
            rm = gc.variable("rm", init=np.zeros(c, np.float32), trainable=False)
        else:
            rm = gc.constant(np.zeros(c, np.float32))
        rv = gc.variable("rv", init=np.ones(c, np.float32), trainable=False)
        w = gc.variable("w", init=np.ones(c, np.float32))
        y = gc.batch_norm(x, rm, rv, w, momentum=momentum, name="norm")
        gc.optim.SGD(lr=0.1).minimize(gc.sum(y * y))
    return g


def test_training_refuses_one_value_per_channel_and_constant_stats():
    with pytest.raises(CompileError, match=r"norm.*more than 1 value per channel.*count=1"):
        gc.compile(_train_graph((1, 3, 1, 1)))
    with pytest.raises(CompileError, match=r"norm.*more than 1 value per channel.*count=1"):
        gc.compile(_train_graph((1, 3), momentum=None))
    with pytest.raises(CompileError, match=r"norm.*updates running_mean.*must be a variable"):
        gc.compile(_train_graph((4, 3), stats_are_variables=False))
    # inference accepts both (nothing is updated)
    gc.compile(_train_graph((1, 3, 1, 1)), train=False)


def test_two_batch_norms_sharing_running_stats_are_refused_in_training():
    with gc.Graph() as g:
        x = gc.placeholder("x", (4, 3))
        rm = gc.variable("rm", init=np.zeros(3, np.float32), trainable=False)
        rv = gc.variable("rv", init=np.ones(3, np.float32), trainable=False)
        w = gc.variable("w", init=np.ones(3, np.float32))
        y = gc.batch_norm(gc.batch_norm(x * w, rm, rv, name="a"), rm, rv, name="b")
        gc.optim.SGD(lr=0.1).minimize(gc.sum(y * y))
    with pytest.raises(CompileError, match="both update 'rm' in place"):
        gc.compile(g)


def test_select_mode_pass_structure():
    """select_mode alone: inference graphs come back unchanged (the same object); a training graph
    gets each mode-dependent node's training form, one rng/step variable and one increment."""
    from graphc.compiler.pipeline import lower_graph, with_training
    from graphc.compiler.select_mode import select_mode
    from graphc.compiler.validate_graph import validate_graph
    with gc.Graph() as g:
        x = gc.placeholder("x", (4, 3, 2, 2))
        rm = gc.variable("rm", init=np.zeros(3, np.float32), trainable=False)
        rv = gc.variable("rv", init=np.ones(3, np.float32), trainable=False)
        w = gc.variable("w", init=np.ones(3, np.float32))
        h = gc.dropout(gc.batch_norm(x, rm, rv, w, name="bn"), 0.5, seed=1, name="drop")
        gc.optim.SGD(lr=0.1).minimize(gc.mean(h * h))
    seen = {}
    lower_graph(g, on_pass=lambda name, graph: seen.setdefault(name, graph))
    before, after = seen["infer_shapes"], seen["append_rng_increment"]
    validate_graph(after)
    for node in after.nodes:
        for o in node.outputs:
            assert after.tensor(o).producer is node
    ops = {n.name: (n.op, tuple(n.inputs), tuple(n.outputs)) for n in after.nodes}
    assert ops["bn/train"][0] == "batch_norm_train" and ops["bn/train"][1][:2] == ("x", "w")  # bias: zeros
    assert ops["bn/train"][2] == ("bn", "bn/train:1", "bn/train:2")
    assert ops["bn/update_stats"] == ("batch_norm_update_stats", ("rm", "rv", "bn/train:1", "bn/train:2"),
                                      ("bn/update_stats:0", "bn/update_stats:1"))
    assert ops["drop/train"] == ("dropout_train", ("bn", "rng/step"), ("drop",))
    assert ops["rng/step/increment"][0] == "assign" and ops["rng/step/increment"][1][0] == "rng/step"
    assert [v.name for v in after.variables] == [v.name for v in before.variables] + ["rng/step"]
    assert not any(n.op in ("batch_norm", "dropout") for n in after.nodes)
    # inference: nothing to do
    untrained = with_training(before, False)
    assert select_mode(untrained) is untrained
    inference = lower_graph(g, train=False, fuse=False)
    assert not any(n.op.startswith(("batch_norm_", "dropout")) for n in inference.nodes)


def test_recompute_under_a_budget_keeps_results_and_running_stats():
    rng = np.random.default_rng(3)
    with gc.Graph() as g:
        x = gc.placeholder("x", (16, 4, 6, 6))
        y = gc.placeholder("y", (16,), "int64")
        h = x
        for k in range(4):
            with gc.name_scope(f"bn{k}"):
                rm = gc.variable("running_mean", init=np.zeros(4, np.float32), trainable=False)
                rv = gc.variable("running_var", init=np.ones(4, np.float32), trainable=False)
                w = gc.variable("weight", init=rng.uniform(0.5, 1.5, (4, 1, 1)).astype(np.float32))
            h = gc.tanh(gc.batch_norm(h * w, rm, rv, name=f"bn{k}/norm"))
        fc = gc.variable("fc", (144, 6), init=gc.init.xavier_uniform(seed=0))
        loss = gc.softmax_cross_entropy(gc.reshape(h, (16, 144)) @ fc, y)
        gc.optim.SGD(lr=0.1).minimize(loss)
    free = gc.compile(g, fuse=False)
    budget = free.arena_bytes * 7 // 10
    tight = gc.compile(g, memory_budget=budget, fuse=False)
    assert tight.arena_bytes <= budget
    from graphc._proto import graphc_pb2 as pb
    # (the pass keeps batch_norm_train's outputs, not elementwise, and recomputes the cheap products)
    assert any(s.role == pb.RECOMPUTE for s in tight.proto.steps)
    feeds = {"x": rng.standard_normal((16, 4, 6, 6)).astype(np.float32), "y": rng.integers(0, 6, 16)}
    a, b = Session(free), Session(tight)
    for _ in range(3):
        assert a.run(feeds)[loss.name].tobytes() == b.run(feeds)[loss.name].tobytes()
    for name in a.variable_names:
        assert a.get_variable(name).tobytes() == b.get_variable(name).tobytes(), name
