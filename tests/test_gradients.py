"""Gradients: every differentiable op in the registry against float64 central differences
along a random direction (as PyTorch's gradcheck), through the reference interpreter and
through compiled plans on each device (tests/devices.py: "cuda" skips, saying why, without a
GPU), second derivatives through the ops that users differentiate twice, and the contract of
gc.gradients."""

import numpy as np
import pytest

import graphc as gc
from graphc import registry
from graphc.errors import GraphError

EPS, RTOL, ATOL = 1e-6, 1e-3, 1e-5
MAX_ELEMS = 20_000  # finite differences on the largest examples add time, not coverage


def _f64(a):
    a = np.asarray(a)
    return a.astype(np.float64) if a.dtype.kind == "f" else a


def _grad_examples(op):
    seen = set()
    for ex in op.examples(np.random.default_rng(1)):
        if not ex.grad or sum(np.size(x) for x in ex.inputs) > MAX_ELEMS:
            continue
        inputs = [_f64(x) for x in ex.inputs]
        key = (tuple((x.shape, x.dtype.str) for x in inputs), repr(sorted(ex.attrs.items(), key=lambda kv: kv[0])))
        if key in seen:
            continue
        seen.add(key)
        yield inputs, ex.attrs


def _build(op, inputs, attrs, rng):
    """L = Σ_k <out_k, r_k> for random r_k, with float placeholders for the inputs."""
    g = gc.Graph()
    with g:
        phs = [gc.placeholder(f"in{i}", x.shape, x.dtype.name) for i, x in enumerate(inputs)]
        outs = g.add_node(op.name, phs, attrs)
        terms = []
        for k, o in enumerate(outs):
            if o.dtype in ("int32", "int64", "bool"):  # indices (topk's second output) carry no gradient
                continue
            if o.dtype != "float64":  # float32 outputs (cast) are too coarse for eps = 1e-6
                return None
            r = gc.constant(rng.normal(size=o.shape).astype(o.dtype), name=f"r{k}")
            terms.append(gc.sum(o * r))
        if not terms:  # integer outputs only (an op on int inputs): nothing to differentiate
            return None
        loss = terms[0]
        for t in terms[1:]:
            loss = loss + t
    return g, phs, loss


DIFF_OPS = [op for op in registry.all_ops() if op.differentiable]


@pytest.mark.parametrize("op", DIFF_OPS, ids=lambda o: o.name)
def test_gradient_matches_finite_differences(op):
    rng = np.random.default_rng(0)
    checked = 0
    for inputs, attrs in _grad_examples(op):
        built = _build(op, inputs, attrs, rng)
        if built is None:
            continue
        g, phs, loss = built
        float_idx = [i for i, x in enumerate(inputs) if x.dtype.kind == "f"]
        grads = gc.gradients(loss, [phs[i] for i in float_idx])
        feeds = {p.name: x for p, x in zip(phs, inputs)}
        fetched = gc.reference.evaluate(g, feeds, [loss] + [t for t in grads if t is not None])
        directions = {i: rng.normal(size=inputs[i].shape) for i in float_idx}
        analytic = 0.0
        for i, t in zip(float_idx, grads):
            if t is not None:
                assert fetched[t].shape == inputs[i].shape, (op.name, attrs)
                analytic += float(np.sum(fetched[t] * directions[i]))

        def at(sign, g=g, feeds=feeds, loss=loss, phs=phs, inputs=inputs, directions=directions, idx=float_idx):
            shifted = dict(feeds)
            for i in idx:
                shifted[phs[i].name] = inputs[i] + sign * EPS * directions[i]
            return float(gc.reference.evaluate(g, shifted, [loss])[loss])

        if not np.isfinite(fetched[loss]):
            continue  # e.g. the mean of an empty batch is NaN: no derivative to compare
        numeric = (at(1) - at(-1)) / (2 * EPS)
        assert abs(analytic - numeric) <= ATOL + RTOL * abs(numeric), (op.name, attrs, [x.shape for x in inputs],
                                                                        analytic, numeric)
        checked += 1
    assert checked > 0, f"{op.name}: no example reached the gradient check"


DEVICE_EXAMPLES = 3  # per op: the reference test above covers every example; this covers the kernels


@pytest.mark.parametrize("op", DIFF_OPS, ids=lambda o: o.name)
def test_compiled_gradient_matches_finite_differences_on_device(op, device):
    """The same check through gc.compile and a Session on each device: the analytic
    directional derivative from the compiled backward pass (the device's gradient kernels)
    against central differences of the compiled forward loss, both in float64 on ``device``."""
    rng = np.random.default_rng(0)
    checked = 0
    for inputs, attrs in _grad_examples(op):
        if checked >= DEVICE_EXAMPLES:
            break
        built = _build(op, inputs, attrs, rng)
        if built is None:
            continue
        g, phs, loss = built
        float_idx = [i for i, x in enumerate(inputs) if x.dtype.kind == "f"]
        grads = gc.gradients(loss, [phs[i] for i in float_idx])
        pairs = [(i, t) for i, t in zip(float_idx, grads) if t is not None]
        plan = gc.compile(g, fetches=[loss.name] + [t.name for _, t in pairs], target=device)
        sess = gc.Session(plan, device=device, threads=1)
        feeds = {p.name: x for p, x in zip(phs, inputs)}
        fetched = sess.run(feeds)
        if not np.isfinite(fetched[loss.name]):
            continue
        directions = {i: rng.normal(size=inputs[i].shape) for i in float_idx}
        analytic = sum(float(np.sum(fetched[t.name] * directions[i])) for i, t in pairs)

        def at(sign, sess=sess, feeds=feeds, loss=loss, phs=phs, inputs=inputs, directions=directions, idx=float_idx):
            shifted = dict(feeds)
            for i in idx:
                shifted[phs[i].name] = inputs[i] + sign * EPS * directions[i]
            return float(sess.run(shifted)[loss.name])

        numeric = (at(1) - at(-1)) / (2 * EPS)
        assert abs(analytic - numeric) <= ATOL + RTOL * abs(numeric), (device, op.name, attrs,
                                                                        [x.shape for x in inputs], analytic, numeric)
        checked += 1
    if checked == 0:
        pytest.skip(f"{op.name}: no float64 example with a finite loss reaches a gradient check")


SECOND_ORDER = {
    "tanh": lambda x: gc.tanh(x), "sigmoid": lambda x: gc.sigmoid(x), "exp": lambda x: gc.exp(x),
    "log": lambda x: gc.log(x), "pow": lambda x: x ** 3.0, "div": lambda x: 1.0 / x,
    "softmax": lambda x: gc.softmax(x, axis=-1), "log_softmax": lambda x: gc.log_softmax(x, axis=-1),
    "matmul": lambda x: x @ x, "relu": lambda x: gc.relu(x) * x,
    "sqrt": lambda x: gc.sqrt(x), "softmax_cross_entropy": None,
}


@pytest.mark.parametrize("name", sorted(SECOND_ORDER))
def test_second_order_hessian_vector_product(name):
    rng = np.random.default_rng(2)
    x0 = rng.uniform(0.5, 1.5, size=(4, 4))
    x0 = np.where(np.abs(x0) < 0.05, 0.5, x0)
    g = gc.Graph()
    with g:
        x = gc.placeholder("x", (4, 4), "float64")
        if name == "softmax_cross_entropy":
            labels = gc.constant(np.array([0, 3, 1, 2], np.int64))
            loss = gc.softmax_cross_entropy(x * x, labels)
        else:
            r = gc.constant(rng.normal(size=(4, 4)))
            loss = gc.sum(SECOND_ORDER[name](x) * r)
        (gx,) = gc.gradients(loss, [x])
        u = gc.constant(rng.normal(size=(4, 4)), name="u")
        (hu,) = gc.gradients(gc.sum(gx * u), [x])
    w = rng.normal(size=(4, 4))
    got = float(np.sum(gc.reference.evaluate(g, {"x": x0}, [hu])[hu] * w))
    uval = g.tensor("u").producer.attrs["value"]

    def grad_at(xv):
        return gc.reference.evaluate(g, {"x": xv}, [gx])[gx]

    numeric = float(np.sum((grad_at(x0 + EPS * uval) - grad_at(x0 - EPS * uval)) / (2 * EPS) * w))
    assert abs(got - numeric) <= ATOL + RTOL * abs(numeric), (name, got, numeric)


def test_every_differentiable_op_declares_a_gradient():
    registry.check_complete()
    # a composite without a gradient of its own is differentiated through its definition
    assert {op.name for op in DIFF_OPS} <= {op.name for op in registry.all_ops() if op.gradient or op.composite}


def test_fanout_gradients_are_summed():
    with gc.Graph() as g:
        x = gc.placeholder("x", (3,), "float64")
        y = gc.sum(x * x + x)  # x used three times
        (gx,) = gc.gradients(y, [x])
    xv = np.array([1.0, -2.0, 0.5])
    np.testing.assert_allclose(gc.reference.evaluate(g, {"x": xv}, [gx])[gx], 2 * xv + 1)


def test_stop_gradient_and_integer_paths_get_no_gradient():
    with gc.Graph():
        x = gc.placeholder("x", (3,), "float64")
        n = gc.placeholder("n", (3,), "int64")
        y = gc.sum(gc.stop_gradient(x) * 2.0)
        z = gc.sum(gc.cast(n, "float64") * x)
        assert gc.gradients(y, [x]) == [None]
        gx, gn = gc.gradients(z, [x, n])
    assert gn is None and gx is not None


def test_gradient_nodes_carry_role_and_forward_provenance():
    with gc.Graph() as g:
        x = gc.placeholder("x", (2, 3))
        w = gc.variable("w", (3, 4), init=gc.init.ones())
        h = x @ w
        loss = gc.mean(gc.tanh(h))
        (gw,) = gc.gradients(loss, [w])
    grad_nodes = [n for n in g.nodes if n.role == "gradient"]
    assert grad_nodes and gw.producer.role == "gradient"
    assert gw.producer.provenance == h.producer.provenance
    assert [n.role for n in g.nodes[:3]] == ["forward"] * 3


def test_op_without_gradient_names_op_and_line():
    op = registry.get_op("tanh")
    saved = op.gradient
    op.gradient = None
    try:
        with gc.Graph():
            x = gc.placeholder("x", (3,))
            y = gc.sum(gc.tanh(x))
            with pytest.raises(GraphError, match=r"tanh.*has no gradient.*test_gradients.py:\d+"):
                gc.gradients(y, [x])
    finally:
        op.gradient = saved


def test_gradients_on_symbolic_batch_dimension():
    rng = np.random.default_rng(0)
    with gc.Graph() as g:
        x = gc.placeholder("x", (None, 3), "float64")
        b = gc.variable("b", init=rng.normal(size=(3,)))
        loss = gc.mean(gc.sum((x + b) * (x + b), axis=1))
        (gb,) = gc.gradients(loss, [b])
    xv = rng.normal(size=(5, 3))
    got = gc.reference.evaluate(g, {"x": xv}, [gb])[gb]
    bv = g.variables[0].init_value
    np.testing.assert_allclose(got, 2 * np.mean(xv + bv, axis=0), rtol=1e-12)


def test_grad_ys_scales():
    with gc.Graph() as g:
        x = gc.placeholder("x", (2,), "float64")
        y = x * 3.0
        (gx,) = gc.gradients(y, [x], grad_ys=[np.array([1.0, 2.0])])
    np.testing.assert_allclose(gc.reference.evaluate(g, {"x": np.zeros(2)}, [gx])[gx], [3.0, 6.0])


@pytest.mark.parametrize("transpose_b", [False, True])
def test_shared_weight_gradient_of_a_batched_matmul_is_one_matmul(transpose_b):
    # x (N, T, K) · W: W's gradient sums N·T rows; it is built as one 2-D matmul over the folded
    # rows (no batched partial products and no reduction over the batch), with the same value.
    rng = np.random.default_rng(1)
    xv, cv = rng.normal(size=(3, 5, 4)), rng.normal(size=(3, 5, 6))
    wv = rng.normal(size=(6, 4) if transpose_b else (4, 6))
    with gc.Graph() as g:
        x = gc.placeholder("x", (None, 5, 4), "float64")
        w = gc.variable("w", init=wv)
        y = gc.matmul(x, w, transpose_b=transpose_b)
        loss = gc.sum(y * gc.constant(cv))
        (gw,) = gc.gradients(loss, [w])
    got = gc.reference.evaluate(g, {"x": xv}, [gw])[gw]
    expected = np.einsum("ntk,ntm->km", xv, cv)      # dW[k, m] = Σ_nt x[n,t,k] c[n,t,m] for y = x·W
    np.testing.assert_allclose(got, expected.T if transpose_b else expected, rtol=1e-12)
    # the gradient is one matmul of 2-D operands (the folded rows), not a sum over the batch
    assert gw.op == "matmul" and [len(g.tensor(t).shape) for t in gw.producer.inputs] == [2, 2], gw.op


def test_weight_gradient_through_a_split_of_outer_products():
    # w1 and w2 (halves of W) each get a gradient gᵀx, an outer-product term held apart for one
    # stacked matmul; the split that made them must still pass the gradient on to W.
    rng = np.random.default_rng(2)
    xv, wv = rng.normal(size=(5, 4)), rng.normal(size=(6, 4))
    with gc.Graph() as g:
        x = gc.placeholder("x", (5, 4), "float64")
        w = gc.variable("w", init=wv)
        w1, w2 = gc.split(w, 2, axis=0)
        loss = gc.sum(gc.matmul(x, w1, transpose_b=True)) + 2.0 * gc.sum(gc.matmul(x, w2, transpose_b=True))
        (gw,) = gc.gradients(loss, [w])
    assert gw is not None
    got = gc.reference.evaluate(g, {"x": xv}, [gw])[gw]
    col = xv.sum(axis=0)                  # d Σ x·w_rowᵀ / d w_row = Σ_n x[n]
    np.testing.assert_allclose(got, np.concatenate([np.tile(col, (3, 1)), 2 * np.tile(col, (3, 1))]), rtol=1e-12)
