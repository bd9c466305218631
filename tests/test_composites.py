"""Composite ops: one node in files, drawings and errors; expanded by the compiler for a
target without a kernel, kept whole where one exists; differentiated through their
definition when they declare no gradient of their own."""

import numpy as np

import graphc as gc
from graphc import registry
from graphc.compiler.bind_shapes import bind_shapes
from graphc.compiler.expand_composites import expand_composites
from graphc.compiler.infer_shapes import infer_shapes


def _model():
    with gc.Graph() as g:
        x = gc.placeholder("x", (None, 5))
        y = gc.silu(x, name="act")  # the line the expanded nodes point at
    return g, x, y


def test_composite_is_one_node_in_the_model_file(tmp_path):
    g, _, y = _model()
    path = tmp_path / "m.pb"
    g.save(path)
    loaded = gc.load(str(path))
    assert [n.op for n in loaded.nodes] == ["silu"]
    assert loaded.nodes[0].provenance[0].endswith("test_composites.py")


def test_compiler_expands_a_composite_without_kernel_and_keeps_names_and_provenance():
    g, x, y = _model()
    plan = gc.compile(g, shapes={"x": (3, 5)}, fetches=[y], fuse=False)  # the expansion's own steps
    ops = [s.op for s in plan.proto.steps]
    assert "silu" not in ops and ops.count("mul") == 1 and ops.count("sigmoid") == 1
    assert all(s.node.startswith("act/") for s in plan.proto.steps)
    assert all(s.provenance.file.endswith("test_composites.py") for s in plan.proto.steps)
    assert plan.fetches == [y.name]  # the fetched value keeps its name
    xv = np.linspace(-4, 4, 15, dtype=np.float32).reshape(3, 5)
    got = gc.Session(plan, threads=1).run({"x": xv})[y.name]
    np.testing.assert_allclose(got, registry.get_op("silu").evaluate([xv], {})[0], rtol=1e-6, atol=1e-7)


def test_a_target_with_a_kernel_keeps_the_node_whole(monkeypatch):
    g, _, _ = _model()
    graph = infer_shapes(bind_shapes(g, shapes={"x": (2, 5)}))
    monkeypatch.setattr(registry.get_op("silu"), "kernels", ("cpu",))
    assert [n.op for n in expand_composites(graph, "cpu").nodes] == ["silu"]
    monkeypatch.setattr(registry.get_op("silu"), "kernels", ())
    assert sorted(n.op for n in expand_composites(graph, "cpu").nodes) == ["mul", "sigmoid"]


def test_gradient_of_a_composite_differentiates_its_definition():
    with gc.Graph() as g:
        x = gc.placeholder("x", (4,), "float64")
        y = gc.sum(gc.silu(x))
        (dx,) = gc.gradients(y, [x])
    xv = np.array([-3.0, -0.5, 0.25, 2.0])
    got = gc.reference.evaluate(g, {"x": xv}, [dx])[dx]
    s = 1 / (1 + np.exp(-xv))
    np.testing.assert_allclose(got, s * (1 + xv * (1 - s)), rtol=1e-12)


def test_training_through_a_composite_matches_the_reference():
    with gc.Graph() as g:
        x = gc.placeholder("x", (8, 3))
        w = gc.variable("w", init=np.full((3, 2), 0.5, np.float32))
        loss = gc.mean(gc.silu(x @ w))
        gc.optim.SGD(lr=0.1).minimize(loss)
    plan = gc.compile(g)
    assert "silu" not in {s.op for s in plan.proto.steps}
    xv = np.random.default_rng(0).standard_normal((8, 3)).astype(np.float32)
    sess = gc.Session(plan, threads=1)
    sess.run({"x": xv})
    s = 1 / (1 + np.exp(-(xv @ np.full((3, 2), 0.5))))
    z = xv @ np.full((3, 2), 0.5)
    dw = xv.T @ (s * (1 + z * (1 - s)) / 16)
    np.testing.assert_allclose(sess.get_variable("w"), 0.5 - 0.1 * dw, rtol=1e-5, atol=1e-6)
