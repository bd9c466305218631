"""The graph builder: operators, scalars, scopes, provenance, initializers, build-time
shape errors naming the user's file:line, and the reference interpreter's contract."""

import inspect
import os

import numpy as np
import pytest

import graphc as gc
from graphc.errors import DTypeError, FeedError, GraphError, RegistryError, ShapeError

HERE = os.path.basename(__file__)


def _line():
    return inspect.currentframe().f_back.f_lineno


def test_operators_build_the_expected_ops():
    with gc.Graph():
        a = gc.placeholder("a", (2, 3))
        b = gc.placeholder("b", (3,))
        cases = {
            "add": a + b, "sub": a - b, "mul": a * b, "div": a / b, "neg": -a, "pow": a ** 2,
            "equal": a == b, "less": a < b, "greater": a > b,
        }
        m = a @ gc.placeholder("c", (3, 4))
        ne = a != b
        le = a <= b
        ge = a >= b
    for op, t in cases.items():
        assert t.producer.op == op
    assert m.producer.op == "matmul" and m.shape == (2, 4)
    assert (ne.producer.op, le.producer.op, ge.producer.op) == ("logical_not", "less_equal", "greater_equal")
    with gc.Graph():
        x = gc.placeholder("x", (3,))
        assert (x ** gc.placeholder("e", (3,))).producer.op == "power"
    assert cases["pow"].producer.attrs["exponent"] == 2.0
    assert cases["equal"].dtype == "bool"


def test_reflected_operators_and_scalar_dtype():
    with gc.Graph() as g:
        x = gc.placeholder("x", (3,), "float64")
        y = 2 - x
        z = 1.5 * x
        n = gc.placeholder("n", (3,), "int32") + 1
    assert y.dtype == z.dtype == "float64"
    assert n.dtype == "int32"
    out = gc.reference.evaluate(g, {"x": np.arange(3.0), "n": np.arange(3, dtype=np.int32)}, [y, z, n])
    np.testing.assert_array_equal(out[y], 2 - np.arange(3.0))
    np.testing.assert_array_equal(out[z], 1.5 * np.arange(3.0))
    np.testing.assert_array_equal(out[n], np.arange(3) + 1)


def test_tensor_has_no_truth_value():
    with gc.Graph():
        x = gc.placeholder("x", (3,))
        with pytest.raises(TypeError):
            bool(x > 0)


def test_name_scopes_and_unique_names():
    with gc.Graph() as g:
        x = gc.placeholder("x", (3,))
        with gc.name_scope("layer1"):
            a = gc.relu(x)
            b = gc.relu(x)
            with gc.name_scope("inner"):
                c = gc.tanh(x, name="t")
        d = gc.relu(x)
    assert a.name == "layer1/relu"
    assert b.name == "layer1/relu_1"
    assert c.name == "layer1/inner/t"
    assert c.producer.scope == "layer1/inner"
    assert d.name == "relu"
    with pytest.raises(GraphError, match="duplicate"):
        with g:
            gc.relu(x, name="relu")


def test_every_node_records_the_users_file_and_line():
    with gc.Graph():
        x = gc.placeholder("x", (2, 2)); line = _line()  # noqa: E702
        y = x @ x; line_y = _line()  # noqa: E702
    assert os.path.basename(x.producer.provenance[0]) == HERE and x.producer.provenance[1] == line
    assert os.path.basename(y.producer.provenance[0]) == HERE and y.producer.provenance[1] == line_y


def _shape_error(build, exc=ShapeError):
    with pytest.raises(exc) as info:
        with gc.Graph():
            build()
    return str(info.value)


@pytest.mark.parametrize("name,build,needle", [
    ("broadcast", lambda: gc.placeholder("a", (3, 4)) + gc.placeholder("b", (5,)), "cannot broadcast"),
    ("matmul", lambda: gc.placeholder("a", (3, 4)) @ gc.placeholder("b", (5, 2)), "(..., 4, N)"),
    ("matmul_rank", lambda: gc.placeholder("a", (3,)) @ gc.placeholder("b", (3, 2)), "rank >= 2"),
    ("reshape", lambda: gc.reshape(gc.placeholder("a", (3, 4)), (5, 2)), "cannot reshape 12 elements"),
    ("reshape_two_minus_one", lambda: gc.reshape(gc.placeholder("a", (3, 4)), (-1, -1)), "more than one -1"),
    ("transpose", lambda: gc.transpose(gc.placeholder("a", (3, 4)), (0, 0)), "not a permutation"),
    ("concat", lambda: gc.concat([gc.placeholder("a", (3, 4)), gc.placeholder("b", (2, 5))], axis=0),
     "differs from input 0 in dim 1"),
    ("split", lambda: gc.split(gc.placeholder("a", (7,)), [3, 3]), "sum to 6"),
    ("squeeze", lambda: gc.squeeze(gc.placeholder("a", (3, 4)), 1), "cannot squeeze axis 1 of size 4"),
    ("axis", lambda: gc.softmax(gc.placeholder("a", (3, 4)), axis=2), "out of range"),
    ("reduce_axis", lambda: gc.sum(gc.placeholder("a", (3, 4)), axis=-3), "out of range"),
    ("max_empty", lambda: gc.max(gc.placeholder("a", (0, 4)), axis=0), "size 0"),
    ("sce_labels", lambda: gc.softmax_cross_entropy(gc.placeholder("a", (3, 4)),
                                                    gc.placeholder("l", (5,), "int64")), "labels dim 0 is 5"),
    ("broadcast_to", lambda: gc.broadcast_to(gc.placeholder("a", (3, 4)), (3, 5)), "cannot broadcast dim 1"),
    ("slice_step", lambda: gc.slice(gc.placeholder("a", (3, 4)), [0], [2], steps=[0]), "steps must not be 0"),
])
def test_shape_errors_name_op_node_shapes_and_user_line(name, build, needle):
    msg = _shape_error(build)
    assert needle in msg
    assert f"{HERE}:" in msg, msg  # the user's file:line
    assert "(name=" in msg  # the node


@pytest.mark.parametrize("build,needle", [
    (lambda: gc.placeholder("a", (3,)) + gc.placeholder("b", (3,), "float64"), "one dtype"),
    (lambda: gc.exp(gc.placeholder("a", (3,), "int32")), "float32/float64"),
    (lambda: gc.where(gc.placeholder("c", (3,)), gc.placeholder("a", (3,)), gc.placeholder("b", (3,))), "bool"),
    (lambda: gc.softmax_cross_entropy(gc.placeholder("a", (3, 4)), gc.placeholder("l", (3,))), "int32/int64"),
])
def test_dtype_errors(build, needle):
    msg = _shape_error(build, DTypeError)
    assert needle in msg and f"{HERE}:" in msg


def test_symbolic_dims_propagate_and_check_at_runtime_shape():
    with gc.Graph() as g:
        x = gc.placeholder("x", (None, 784))
        y = gc.placeholder("y", ("batch",), "int64")
        w = gc.variable("w", (784, 10), init=gc.init.xavier_uniform(seed=0))
        logits = x @ w
        loss = gc.softmax_cross_entropy(logits, y)
        flat = gc.reshape(logits, (-1,))
    assert logits.shape == (None, 10)
    assert loss.shape == ()
    assert flat.shape == (None,)
    out = gc.reference.evaluate(g, {"x": np.zeros((4, 784), np.float32), "y": np.zeros(4, np.int64)}, [loss])
    np.testing.assert_allclose(out[loss], np.log(10), rtol=1e-6)


def test_getitem():
    with gc.Graph() as g:
        x = gc.placeholder("x", (4, 5, 6))
        parts = [x[1], x[:, 2:4], x[..., -1], x[::2, None, 1:5:2], x[-1, :, ::-1]]
    data = np.random.default_rng(0).normal(size=(4, 5, 6)).astype(np.float32)
    out = gc.reference.evaluate(g, {"x": data}, parts)
    for t, want in zip(parts, [data[1], data[:, 2:4], data[..., -1], data[::2, None, 1:5:2], data[-1, :, ::-1]]):
        assert t.shape == want.shape
        np.testing.assert_array_equal(out[t], want)
    with pytest.raises(IndexError):
        with g:
            x[4]


@pytest.mark.parametrize("init,check", [
    (gc.init.zeros(), lambda a: np.all(a == 0)),
    (gc.init.ones(), lambda a: np.all(a == 1)),
    (gc.init.constant(0.25), lambda a: np.all(a == 0.25)),
    (gc.init.uniform(-1, 1, seed=1), lambda a: a.min() >= -1 and a.max() < 1 and abs(a.mean()) < 0.05),
    (gc.init.normal(0, 2, seed=1), lambda a: abs(a.std() - 2) < 0.1),
    (gc.init.xavier_uniform(seed=1), lambda a: np.abs(a).max() <= np.sqrt(6 / (300 + 200))),
    (gc.init.xavier_normal(seed=1), lambda a: abs(a.std() - np.sqrt(2 / 500)) < 0.003),
    (gc.init.kaiming_uniform(seed=1), lambda a: np.abs(a).max() <= np.sqrt(6 / 300)),
    (gc.init.kaiming_normal(seed=1), lambda a: abs(a.std() - np.sqrt(2 / 300)) < 0.004),
])
def test_initializers(init, check):
    a = init((300, 200), "float32")
    assert a.dtype == np.float32 and a.shape == (300, 200)
    assert check(a)


def test_initializers_are_deterministic_with_a_seed():
    for make in (gc.init.uniform, gc.init.normal, gc.init.xavier_uniform, gc.init.kaiming_normal):
        np.testing.assert_array_equal(make(seed=7)((5, 4), "float64"), make(seed=7)((5, 4), "float64"))


def test_variable_contract():
    with gc.Graph() as g:
        w = gc.variable("w", (3, 2), init=gc.init.ones())
        v = gc.variable("v", init=np.arange(4, dtype=np.float64))
        with pytest.raises(GraphError, match="concrete shape"):
            gc.variable("bad", (None, 2), init=gc.init.ones())
    assert w.shape == (3, 2) and w.dtype == "float32"
    assert v.dtype == "float64"
    assert [x.name for x in g.variables] == ["w", "v"]


def test_registry_refuses_duplicates_and_missing_parts():
    op = gc.registry.get_op("add")
    with pytest.raises(RegistryError, match="already registered"):
        gc.registry.register_op("add", doc="x", inputs=[("a", "T"), ("b", "T")], type_vars={"T": ("float32",)},
                                infer=op.infer, reference=op.reference, examples=op.examples)
    with pytest.raises(RegistryError, match="missing reference"):
        gc.registry.register_op("brand_new_op", doc="x", inputs=[("x", ("float32",))], infer=op.infer,
                                reference=None, examples=op.examples)
    assert not gc.registry.has_op("brand_new_op")


def test_registry_completeness():
    for op in gc.registry.all_ops():
        assert op.doc and op.infer and op.reference and op.examples, op.name
        for key, spec in op.attrs.items():
            assert spec.kind in gc.registry.ATTR_KINDS, (op.name, key)


def test_bad_attrs_are_graph_errors():
    with gc.Graph():
        x = gc.placeholder("x", (3,))
        with pytest.raises(GraphError, match="unknown attr"):
            x.graph.add_node("relu", [x], {"alpha": 1.0})
        with pytest.raises(GraphError, match="missing required attr 'exponent'"):
            x.graph.add_node("pow", [x], {})
        with pytest.raises(GraphError, match="attr 'axis'"):
            gc.softmax(x, axis="last")
        with pytest.raises(GraphError, match="expects 2 inputs"):
            x.graph.add_node("add", [x], {})


# -- reference interpreter ------------------------------------------------------------


def _small_graph():
    g = gc.Graph()
    with g:
        x = gc.placeholder("x", (None, 3))
        h = gc.relu(x, name="h")
        y = gc.sum(h * 2.0, axis=1, name="y")
    return g, x, h, y


def test_evaluate_fetches_by_name_or_handle():
    g, x, h, y = _small_graph()
    data = np.array([[1, -2, 3], [-1, 0, 2]], np.float32)
    by_handle = gc.reference.evaluate(g, {x: data}, [h, y])
    assert set(by_handle) == {h, y}
    by_name = gc.reference.evaluate(g, {"x": data}, ["y"])
    np.testing.assert_array_equal(by_name["y"], [8, 4])
    np.testing.assert_array_equal(by_handle[h], np.maximum(data, 0))
    single = gc.reference.evaluate(g, {"x": data}, y)
    assert list(single) == [y]


def test_evaluate_default_fetches():
    g, x, h, y = _small_graph()
    data = np.ones((2, 3), np.float32)
    assert list(gc.reference.evaluate(g, {"x": data})) == ["y"]  # the only unconsumed value
    g.set_outputs([h])
    assert list(gc.reference.evaluate(g, {"x": data})) == ["h"]


def test_evaluate_bad_feeds():
    g, x, h, y = _small_graph()
    with pytest.raises(FeedError, match="missing feed for placeholder 'x'"):
        gc.reference.evaluate(g, {})
    with pytest.raises(FeedError, match="unknown feed 'z'"):
        gc.reference.evaluate(g, {"x": np.ones((1, 3), np.float32), "z": 1})
    with pytest.raises(FeedError, match="expected shape"):
        gc.reference.evaluate(g, {"x": np.ones((1, 4), np.float32)})
    with pytest.raises(FeedError, match="expected dtype float32, got int64"):
        gc.reference.evaluate(g, {"x": np.ones((1, 3), np.int64)})
    with pytest.raises(KeyError):
        gc.reference.evaluate(g, {"x": np.ones((1, 3), np.float32)}, ["nope"])


def test_evaluate_runs_only_what_fetches_need():
    with gc.Graph() as g:
        x = gc.placeholder("x", (3,))
        unused = gc.placeholder("unused", (3,))
        y = gc.relu(x)
        gc.relu(unused)
    out = gc.reference.evaluate(g, {"x": np.ones(3, np.float32)}, [y])
    assert list(out) == [y]
