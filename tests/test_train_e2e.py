"""End to end on real data: the digits MLP trained through gc.compile + gc.Session."""

import importlib.util
import os

import numpy as np
import pytest

import graphc as gc

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _example():
    path = os.path.join(ROOT, "examples", "train_digits.py")
    if not os.path.exists(path):
        pytest.skip("examples/ is not in this checkout")
    spec = importlib.util.spec_from_file_location("train_digits", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("optimizer", [gc.optim.SGD(lr=0.1, momentum=0.9), gc.optim.Adam(lr=3e-3)],
                         ids=["sgd_momentum", "adam"])
def test_first_20_losses_match_the_reference_interpreter(optimizer):
    (xtr, ytr), _ = gc.datasets.load_digits()
    example = _example()
    g, _, loss = example.build_model(hidden=32)
    optimizer.minimize(loss)
    shapes = {"x": (32, 64), "y": (32,)}
    plan = gc.compile(g, shapes=shapes)
    sess = gc.Session(plan, threads=2)
    graph = gc.compiler.lower_graph(g, shapes=shapes)
    state = {}
    for step in range(20):
        batch = slice(step * 32, (step + 1) * 32)
        feeds = {"x": xtr[batch], "y": ytr[batch]}
        got = float(sess.run(feeds)[loss.name])
        want = float(gc.reference.evaluate(graph, feeds, [loss.name], state=state)[loss.name])
        assert abs(got - want) <= 1e-4 * abs(want), (step, got, want)
    for name in sess.variable_names:
        np.testing.assert_allclose(sess.get_variable(name), state[name], rtol=1e-3, atol=1e-5, err_msg=name)


def test_digits_mlp_reaches_96_percent(tmp_path):
    accuracy = _example().main(["--epochs", "30", "--threads", "2", "--out", str(tmp_path)])
    assert accuracy >= 0.96
    for name in ("model.pb", "train.plan", "infer.plan"):
        assert (tmp_path / name).exists()
