"""Training: optimizer update rules against hand-written numpy for three steps, losses,
the training spec (save/load, compile(train=...)), clipping — all through the
reference interpreter, so they hold for any runtime that matches it."""

import os

import numpy as np
import pytest

import graphc as gc
from graphc.errors import CompileError, GraphError

W0 = np.array([[0.5, -1.0, 2.0], [1.5, 0.25, -0.75]])
X = np.array([[1.0, 2.0], [-1.0, 0.5], [0.3, -0.2], [2.0, 1.0]])


def _quadratic_model(optimizer, dtype="float64"):
    """loss = mean((x @ w)²) / 2: gradient 1/N · xᵀ (x w) / out... computed by hand below."""
    g = gc.Graph()
    with g:
        x = gc.placeholder("x", (None, 2), dtype)
        w = gc.variable("w", init=W0.astype(dtype))
        y = x @ w
        loss = gc.mean(y * y) * 0.5
        optimizer.minimize(loss)
    return g


def _grad(w, x=X):
    y = x @ w
    return x.T @ y / y.size


def _run(optimizer, steps=3):
    g = _quadratic_model(optimizer)
    graph = gc.compiler.lower_graph(g, shapes={"x": X.shape})
    state = {}
    for _ in range(steps):
        gc.reference.evaluate(graph, {"x": X}, state=state)
    return state


def test_sgd_plain():
    w = W0.copy()
    for _ in range(3):
        w = w - 0.1 * (_grad(w) + 0.01 * w)
    state = _run(gc.optim.SGD(lr=0.1, weight_decay=0.01))
    np.testing.assert_allclose(state["w"], w, rtol=1e-12)


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_momentum(nesterov):
    w, v = W0.copy(), np.zeros_like(W0)
    for _ in range(3):
        g = _grad(w) + 0.001 * w
        v = 0.9 * v + g
        w = w - 0.05 * (g + 0.9 * v if nesterov else v)
    state = _run(gc.optim.SGD(lr=0.05, momentum=0.9, nesterov=nesterov, weight_decay=0.001))
    np.testing.assert_allclose(state["w"], w, rtol=1e-12)
    np.testing.assert_allclose(state["w/momentum"], v, rtol=1e-12)


@pytest.mark.parametrize("kind", ["adam", "adamw"])
def test_adam_and_adamw(kind):
    lr, b1, b2, eps, wd = 0.01, 0.8, 0.95, 1e-7, 0.1
    w, m, v = W0.copy(), np.zeros_like(W0), np.zeros_like(W0)
    for t in range(1, 4):
        g = _grad(w)
        if kind == "adamw":
            w = w * (1 - lr * wd)
        else:
            g = g + wd * w
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        w = w - lr * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps)
    cls = gc.optim.Adam if kind == "adam" else gc.optim.AdamW
    state = _run(cls(lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd))
    np.testing.assert_allclose(state["w"], w, rtol=1e-12)
    np.testing.assert_allclose(state["w/adam_m"], m, rtol=1e-12)
    np.testing.assert_allclose(state["w/adam_v"], v, rtol=1e-12)
    assert state["optimizer/step"] == 3


def test_global_norm_clipping():
    w = W0.copy()
    for _ in range(3):
        g = _grad(w)
        scale = min(1.0, 0.1 / (np.sqrt(np.sum(g * g)) + 1e-6))
        w = w - 0.5 * g * scale
    state = _run(gc.optim.SGD(lr=0.5, clip_global_norm=0.1))
    np.testing.assert_allclose(state["w"], w, rtol=1e-12)


def test_update_nodes_are_in_place_optimizer_nodes():
    g = _quadratic_model(gc.optim.Adam(lr=0.1))
    graph = gc.compiler.lower_graph(g, shapes={"x": X.shape})
    roles = {n.op: n.role for n in graph.nodes}
    assert roles["adam_update"] == "optimizer" and roles["assign"] == "optimizer"
    assert {n.role for n in graph.nodes if n.op == "matmul"} == {"forward", "gradient"}
    state_vars = {v.name: v.trainable for v in graph.variables}
    assert state_vars == {"w": True, "w/adam_m": False, "w/adam_v": False, "optimizer/step": False}
    update = next(n for n in graph.nodes if n.op == "adam_update")
    assert update.provenance == g.variables[0].provenance  # points at the user's variable


def test_training_spec_survives_save_and_load(tmp_path):
    g = _quadratic_model(gc.optim.SGD(lr=0.1, momentum=0.9))
    g.save(tmp_path / "m.pb")
    loaded = gc.load(tmp_path / "m.pb")
    assert loaded.training.optimizer.kind == "sgd"
    assert loaded.training.optimizer.hyperparameters["momentum"] == 0.9
    a = gc.compile(g, shapes={"x": X.shape})
    b = gc.compile(loaded, shapes={"x": X.shape})
    assert a.to_bytes() == b.to_bytes()
    assert a.fetches == [g.training.loss]


def test_compile_train_argument_adds_or_overrides_the_spec():
    with gc.Graph() as g:
        x = gc.placeholder("x", (4, 2), "float64")
        w = gc.variable("w", init=W0)
        loss = gc.mean(x @ w)
    plain = gc.compile(g)
    assert not any(s.role == gc._proto.graphc_pb2.OPTIMIZER for s in plain.proto.steps)
    trained = gc.compile(g, train=(loss, gc.optim.Adam(lr=0.1)))
    assert "adam_update" in [s.op for s in trained.proto.steps]
    text = gc.compile(g, train={"loss": loss, "optimizer": "sgd:lr=0.1,momentum=0.9"})
    assert "sgd_momentum_update" in [s.op for s in text.proto.steps]
    with pytest.raises(CompileError, match="no loss given"):
        gc.compile(g, train=gc.optim.SGD(lr=0.1))
    with pytest.raises(CompileError, match="unknown options"):
        gc.compile(g, train={"loss": loss, "optimizer": "sgd:lr=0.1,momentun=0.9"})


def test_optimizer_argument_errors():
    with pytest.raises(GraphError, match="lr must be > 0"):
        gc.optim.SGD(lr=0)
    with pytest.raises(GraphError, match="nesterov needs momentum"):
        gc.optim.SGD(lr=0.1, nesterov=True)
    with pytest.raises(GraphError, match="unknown optimizer"):
        gc.optim.parse("rmsprop:lr=0.1")
    with pytest.raises(GraphError, match="not a number"):
        gc.optim.parse("adam:lr=fast")
    with gc.Graph():
        v = gc.placeholder("v", (3,))
        with pytest.raises(GraphError, match="float scalar"):
            gc.optim.SGD(lr=0.1).minimize(v)


def test_loss_that_ignores_the_variables_is_an_error():
    with gc.Graph() as g:
        x = gc.placeholder("x", (3,))
        gc.variable("w", (3,))
        loss = gc.sum(x)
        gc.optim.SGD(lr=0.1).minimize(loss)
    with pytest.raises(CompileError, match="depends on none of the variables"):
        gc.compile(g)


def test_var_list_naming_a_variable_the_loss_does_not_reach():
    """As in TensorFlow and PyTorch, such a variable gets no update; the others train.  Only
    a var_list the loss reaches none of is an error."""
    with gc.Graph() as g:
        x = gc.placeholder("x", (3,))
        w = gc.variable("w", (3,), init=gc.init.ones())
        unused = gc.variable("unused", (3,), init=gc.init.ones())
        loss = gc.sum(x * w)
        gc.optim.SGD(lr=0.5).minimize(loss, var_list=[unused, w])
    plan = gc.compile(g)
    assert [v.name for v in plan.proto.persistent] == ["w"]
    sess = gc.Session(plan)
    sess.run({"x": np.array([1, 2, 3], np.float32)})
    np.testing.assert_allclose(sess.get_variable("w"), 1 - 0.5 * np.array([1, 2, 3], np.float32))
    g.training.var_list = ["unused"]
    with pytest.raises(CompileError, match=r"depends on none of the variables \['unused'\]"):
        gc.compile(g)
    g.training.var_list = ["nothing"]
    with pytest.raises(CompileError, match=r"unknown variables \['nothing'\]"):
        gc.compile(g)


def test_the_plan_does_not_depend_on_the_line_that_compiles_it():
    """Nodes the compiler builds for no one forward node (Adam's step counter, global-norm
    clipping, summed gradient terms) used to record the gc.compile call's file:line."""
    with gc.Graph() as g:
        x = gc.placeholder("x", (4, 3))
        w = gc.variable("w", (3, 3), init=gc.init.xavier_uniform(seed=0))
        h = x @ w
        loss = gc.mean((h @ w) ** 2, name="loss")    # w read twice: two gradient terms summed
        gc.optim.AdamW(1e-3, clip_global_norm=1.0).minimize(loss)
    first = gc.compile(g)
    second = gc.compile(g)
    assert first.to_bytes() == second.to_bytes()
    files = {s.provenance.file for s in first.proto.steps}
    assert os.path.basename(__file__) in {os.path.basename(f) for f in files if f}
    lines = {s.provenance.line for s in first.proto.steps if s.provenance.file}
    here = test_the_plan_does_not_depend_on_the_line_that_compiles_it.__code__.co_firstlineno
    assert lines <= set(range(here, here + 8)), lines   # the graph's lines, none of the compile calls


# -- losses ---------------------------------------------------------------------------------


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_mse_and_bce_with_logits(reduction):
    rng = np.random.default_rng(0)
    z = rng.normal(size=(5, 3)) * 3
    t = (rng.random((5, 3)) < 0.5).astype(np.float64)
    with gc.Graph() as g:
        zp = gc.placeholder("z", (5, 3), "float64")
        tp = gc.placeholder("t", (5, 3), "float64")
        mse = gc.mean_squared_error(zp, tp, reduction)
        bce = gc.binary_cross_entropy_with_logits(zp, tp, reduction)
    out = gc.reference.evaluate(g, {"z": z, "t": t}, [mse, bce])
    sig = 1 / (1 + np.exp(-z))
    want_bce = -(t * np.log(sig) + (1 - t) * np.log(1 - sig))
    reduce = {"mean": np.mean, "sum": np.sum, "none": lambda a: a}[reduction]
    np.testing.assert_allclose(out[mse], reduce((z - t) ** 2), rtol=1e-12)
    np.testing.assert_allclose(out[bce], reduce(want_bce), rtol=1e-10)


def test_bce_with_logits_is_stable_for_large_logits():
    with gc.Graph() as g:
        z = gc.constant(np.array([1000.0, -1000.0]))
        loss = gc.binary_cross_entropy_with_logits(z, np.array([1.0, 0.0]), reduction="none")
    out = gc.reference.evaluate(g, {}, [loss])[loss]
    np.testing.assert_allclose(out, [0.0, 0.0], atol=1e-12)


def test_softmax_cross_entropy_reductions_and_stability():
    logits = np.array([[1000.0, 0.0, -1000.0], [1.0, 2.0, 3.0]])
    labels = np.array([0, 2])
    with gc.Graph() as g:
        lp = gc.constant(logits)
        lb = gc.constant(labels)
        losses = {r: gc.softmax_cross_entropy(lp, lb, reduction=r) for r in ("mean", "sum", "none")}
    out = gc.reference.evaluate(g, {}, list(losses.values()))
    row2 = np.log(np.sum(np.exp([1.0, 2.0, 3.0]))) - 3.0
    np.testing.assert_allclose(out[losses["none"]], [0.0, row2], atol=1e-12)
    np.testing.assert_allclose(out[losses["sum"]], row2)
    np.testing.assert_allclose(out[losses["mean"]], row2 / 2)


def test_digits_dataset():
    (xtr, ytr), (xte, yte) = gc.datasets.load_digits()
    assert xtr.shape == (1438, 64) and xte.shape == (359, 64)
    assert xtr.dtype == np.float32 and ytr.dtype == np.int64
    assert 0 <= xtr.min() and xtr.max() <= 1
    assert set(np.unique(np.concatenate([ytr, yte]))) == set(range(10))
