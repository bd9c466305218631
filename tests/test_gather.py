"""gc.embedding (torch.nn.functional.embedding) and gc.take (torch.index_select / numpy.take shapes):
the compiled CPU kernels against numpy and torch, forward and backward; the deterministic
scatter-add of embedding_grad (the same bits at 1, 2 and 3 threads on many repeated ids);
out-of-range ids (negative included) as errors naming the node; int32 and int64 ids, size-0
ids, V = 1, refusals at build time."""

import re

import numpy as np
import pytest

import graphc as gc
from graphc.errors import DTypeError, RuntimeExecutionError, ShapeError
from graphc.graph import Graph
from graphc.ops._common import build
from graphc.session import Session


def _run(fn, feeds, threads=1, grads_of=None, symbolic=()):
    """Build y = fn(*placeholders) and run it; with grads_of (feed names), also run the gradients of
    L = Σ y·r (r fixed random) w.r.t. those placeholders.  Returns (y, [grads], r, y_tensor)."""
    rng = np.random.default_rng(7)
    with Graph() as g:
        phs = {k: gc.placeholder(k, tuple(None if k in symbolic and i == 0 else d for i, d in enumerate(v.shape)),
                                 v.dtype.name) for k, v in feeds.items()}
        y = fn(*phs.values())
        fetches = [y]
        r = None
        if grads_of:
            r = rng.normal(size=y.shape).astype(y.dtype)
            loss = gc.sum(y * gc.constant(r))
            fetches += gc.gradients(loss, [phs[k] for k in grads_of])
    plan = gc.compile(g, shapes={k: v.shape for k, v in feeds.items()}, fetches=[t.name for t in fetches])
    out = Session(plan, threads=threads).run(feeds)
    return out[y.name], [out[t.name] for t in fetches[1:]], r, y


def _add_at(g, ids, V):
    """The reference scatter-add: rows of g added at ids in index order (numpy.add.at)."""
    D = int(np.prod(g.shape[ids.ndim:], dtype=np.int64))
    out = np.zeros((V, D), g.dtype)
    np.add.at(out, ids.reshape(-1).astype(np.int64), g.reshape(ids.size, D))
    return out.reshape((V,) + g.shape[ids.ndim:])


CASES = [((5,), (7, 3)), ((2, 3), (4, 5)), ((), (3, 2)), ((0,), (4, 3)), ((3, 0), (2, 5)), ((6,), (1, 4)),
         ((4,), (5,)), ((3, 2), (6, 2, 3)), ((9,), (3, 0)), ((2, 37), (11, 73)), ((129,), (1000, 17))]


@pytest.mark.parametrize("id_dtype", ["int32", "int64"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_embedding_forward_and_backward_match_torch(id_dtype, dtype):
    torch = pytest.importorskip("torch", reason="torch is the reference here; absent in CI")
    F = torch.nn.functional
    rng = np.random.default_rng(0)
    for ishape, wshape in CASES:
        ids = rng.integers(0, wshape[0], size=ishape).astype(id_dtype)
        w = rng.normal(size=wshape).astype(dtype)
        for threads in (1, 2):
            y, (gw,), r, _ = _run(gc.embedding, {"ids": ids, "w": w}, threads=threads, grads_of=["w"])
            tw = torch.tensor(w, requires_grad=True)
            # torch's embedding takes a 2-D weight: rows flattened, then the trailing dims restored
            ty = F.embedding(torch.tensor(ids.astype(np.int64)), tw.reshape(wshape[0], -1))
            ty = ty.reshape(ishape + wshape[1:])
            (ty * torch.tensor(r)).sum().backward()
            assert y.dtype == w.dtype and y.shape == ishape + wshape[1:]
            assert y.tobytes() == ty.detach().numpy().tobytes(), (ishape, wshape, threads)
            assert gw.shape == wshape
            np.testing.assert_allclose(gw, tw.grad.numpy(), rtol=1e-5, atol=1e-5)
            # the sums in index order: numpy.add.at's bits exactly
            assert gw.tobytes() == _add_at(r, ids, wshape[0]).tobytes(), (ishape, wshape, threads)


def test_embedding_of_int_and_bool_weights_copies_bits():
    rng = np.random.default_rng(1)
    ids = rng.integers(0, 6, size=(4, 5)).astype(np.int32)
    for w in (rng.integers(-2**31, 2**31, size=(6, 3)).astype(np.int32),
              rng.integers(-2**62, 2**62, size=(6, 2, 2)).astype(np.int64),
              rng.random((6, 7)) < 0.5,
              np.array([np.nan, -0.0, np.inf, -np.inf, 1e-45, 0.0], np.float32)):
        y, _, _, _ = _run(gc.embedding, {"ids": ids, "w": w})
        assert y.tobytes() == w[ids].tobytes()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_embedding_grad_is_the_same_bits_at_any_thread_count(dtype):
    # Many repeated ids over a few rows, values of mixed magnitude: any reordering of a row's sum
    # (atomics, per-thread partials) would change the bits.
    rng = np.random.default_rng(2)
    ids = rng.integers(0, 3, size=(4000,)).astype(np.int64)
    ids[:50] = 1  # a long run of one id as well
    g = (rng.normal(size=(4000, 200)) * 10.0 ** rng.integers(-6, 7, size=(4000, 1))).astype(dtype)
    w = np.zeros((3, 200), dtype)
    with Graph() as gr:
        gp = gc.placeholder("g", g.shape, dtype)
        ip = gc.placeholder("ids", ids.shape, "int64")
        wp = gc.placeholder("w", w.shape, dtype)
        out = build("embedding_grad", [gp, ip, wp], {})
    plan = gc.compile(gr, shapes={}, fetches=[out.name])
    feeds = {"g": g, "ids": ids, "w": w}
    results = [Session(plan, threads=t).run(feeds)[out.name] for t in (1, 2, 3)]
    want = _add_at(g, ids, 3)
    for t, got in zip((1, 2, 3), results):
        assert got.tobytes() == want.tobytes(), t


@pytest.mark.parametrize("id_dtype", ["int32", "int64"])
@pytest.mark.parametrize("bad", [-1, 4, 2**31 - 1, -2**31])
def test_out_of_range_ids_are_an_error_naming_the_node_and_the_id(id_dtype, bad):
    w = np.ones((4, 3), np.float32)
    ids = np.array([[0, 3], [bad, 1]], id_dtype)
    with Graph() as g:
        ip = gc.placeholder("ids", ids.shape, id_dtype)
        wp = gc.placeholder("w", w.shape)
        y = gc.embedding(ip, wp, name="lookup")
        (gw,) = gc.gradients(gc.sum(y), [wp])
    # the forward kernel, and the scatter-add alone (y is not fetched), each naming its node
    for fetch, node in ((y, "'lookup'"), (gw, f"'{gw.producer.name}'")):
        plan = gc.compile(g, shapes={}, fetches=[fetch.name])
        sess = Session(plan, threads=2)
        with pytest.raises(RuntimeExecutionError, match=re.escape(f"id {bad} at position 2 is outside [0, 4)")) as e:
            sess.run({"ids": ids, "w": w})
        assert f"node {node}, op '{fetch.producer.op}'" in str(e.value)
        good = sess.run({"ids": np.array([[0, 3], [2, 1]], id_dtype), "w": w})[fetch.name]  # still usable
        assert np.isfinite(good).all()


def test_empty_ids_with_zero_rows_and_size_one_cases():
    y, (gw,), _, _ = _run(gc.embedding, {"ids": np.zeros((0, 2), np.int64), "w": np.zeros((0, 5))}, grads_of=["w"])
    assert y.shape == (0, 2, 5) and gw.shape == (0, 5)
    w = np.array([[1.5, -2.0]])
    y, (gw,), r, _ = _run(gc.embedding, {"ids": np.zeros((7,), np.int32), "w": w}, grads_of=["w"])
    np.testing.assert_array_equal(y, np.repeat(w, 7, axis=0))
    assert gw.tobytes() == _add_at(r, np.zeros((7,), np.int32), 1).tobytes()
    with pytest.raises(RuntimeExecutionError, match=r"id 0 at position 0 is outside \[0, 0\)"):
        _run(gc.embedding, {"ids": np.zeros((1,), np.int64), "w": np.zeros((0, 3))})


def test_embedding_with_a_symbolic_batch_of_ids():
    rng = np.random.default_rng(3)
    w = rng.normal(size=(10, 4)).astype(np.float32)
    with Graph() as g:
        ip = gc.placeholder("ids", (None, 3), "int64")
        wp = gc.placeholder("w", w.shape)
        y = gc.embedding(ip, wp)
        (gw,) = gc.gradients(gc.sum(y * y), [wp])
    ids = rng.integers(0, 10, size=(5, 3))
    plan = gc.compile(g, shapes={"ids": ids.shape}, fetches=[y.name, gw.name])
    out = Session(plan).run({"ids": ids, "w": w})
    assert out[y.name].tobytes() == w[ids].tobytes()
    np.testing.assert_array_equal(out[gw.name], _add_at(2 * w[ids], ids, 10))


TAKE_CASES = [((5, 4), (3,), 0), ((5, 4), (2, 3), 1), ((3, 4, 5), (6,), 1), ((3, 4, 5), (), -1),
              ((2, 3, 4, 5), (2, 2), 2), ((7,), (0,), 0), ((3, 1), (4,), 1), ((2, 0, 3), (5,), 2)]


@pytest.mark.parametrize("id_dtype", ["int32", "int64"])
def test_take_matches_numpy_take_and_torch_index_select(id_dtype):
    torch = pytest.importorskip("torch", reason="torch is the reference here; absent in CI")
    rng = np.random.default_rng(4)
    for xshape, ishape, axis in TAKE_CASES:
        x = rng.normal(size=xshape)
        n = xshape[axis]
        idx = rng.integers(0, max(n, 1), size=ishape).astype(id_dtype) if n else np.zeros(ishape, id_dtype)
        for threads in (1, 2):
            y, (gx,), r, _ = _run(lambda a, b, axis=axis: gc.take(a, b, axis=axis), {"x": x, "idx": idx},
                                  threads=threads, grads_of=["x"])
            assert y.tobytes() == np.take(x, idx, axis=axis).tobytes(), (xshape, ishape, axis)
            tx = torch.tensor(x, requires_grad=True)
            flat = torch.tensor(idx.reshape(-1).astype(np.int64))
            ty = torch.index_select(tx, axis, flat)
            a = axis % len(xshape)
            ty = ty.reshape(xshape[:a] + ishape + xshape[a + 1:])
            assert y.tobytes() == ty.detach().numpy().tobytes()
            (ty * torch.tensor(r)).sum().backward()
            np.testing.assert_allclose(gx, tx.grad.numpy(), rtol=1e-12, atol=1e-12)


def test_take_on_ints_and_a_negative_index_is_an_error():
    x = np.arange(12, dtype=np.int32).reshape(3, 4)
    y, _, _, _ = _run(lambda a, b: gc.take(a, b, axis=1), {"x": x, "idx": np.array([3, 0, 3], np.int64)})
    np.testing.assert_array_equal(y, x[:, [3, 0, 3]])
    # decided: unlike numpy.take, -1 does not wrap (torch.index_select's rule)
    with pytest.raises(RuntimeExecutionError, match=r"node 'pick/embedding'.*id -1 at position 1 is outside \[0, 4\)"):
        _run(lambda a, b: gc.take(a, b, axis=1, name="pick"), {"x": x, "idx": np.array([0, -1], np.int64)})
    _, _, _, y = _run(lambda a, b: gc.take(a, b, axis=-1), {"x": x, "idx": np.array([1], np.int64)})
    assert y.name == "take" and y.producer.op == "transpose"
    with Graph() as g:
        xp = gc.placeholder("x", (3, 4))
        ip = gc.placeholder("i", (2,), "int64")
        with gc.name_scope("enc"):
            names = [gc.take(xp, ip, axis=1, name="pick").name, gc.take(xp, ip, axis=1).name,
                     gc.take(xp, ip, axis=1).name]
    assert names == ["enc/pick", "enc/take", "enc/take_1"]
    assert {"enc/pick/embedding", "enc/take/move_axis", "enc/take_1/embedding"} <= {n.name for n in g.nodes}


def test_take_and_embedding_refuse_bad_arguments_at_build_time():
    with Graph():
        x = gc.placeholder("x", (3, 4))
        ids = gc.placeholder("ids", (2,), "int64")
        with pytest.raises(ShapeError, match="axis=2 is out of range"):
            gc.take(x, ids, axis=2)
        with pytest.raises(ShapeError, match="axis=True"):
            gc.take(x, ids, axis=True)
        with pytest.raises(ShapeError, match="scalar"):
            gc.take(gc.placeholder("s", ()), ids)
        with pytest.raises(DTypeError, match="int32 or int64"):
            gc.take(x, gc.placeholder("f", (2,)))
        with pytest.raises(DTypeError):
            gc.embedding(gc.placeholder("fid", (2,)), x)
        with pytest.raises(ShapeError, match="rank >= 1"):
            gc.embedding(ids, gc.placeholder("s2", ()))


def test_second_derivative_through_embedding_grad():
    # d/dw of <embedding_grad(g(w), ids), u> with g = embedding(ids, w)²: embedding_grad's own gradient
    # is embedding again; checked against central differences.
    rng = np.random.default_rng(5)
    w0 = rng.normal(size=(4, 3))
    ids_v = np.array([0, 2, 2, 3, 0, 0])
    u = rng.normal(size=(4, 3))
    with Graph() as g:
        w = gc.placeholder("w", (4, 3), "float64")
        ids = gc.constant(ids_v)
        e = gc.embedding(ids, w)
        (gw,) = gc.gradients(gc.sum(e * e * e), [w])
        (hw,) = gc.gradients(gc.sum(gw * gc.constant(u)), [w])
    plan = gc.compile(g, shapes={}, fetches=[gw.name, hw.name])
    got = Session(plan).run({"w": w0})[hw.name]

    def grad_at(wv):
        return _add_at(3 * wv[ids_v] ** 2, ids_v, 4)

    d = rng.normal(size=w0.shape)
    numeric = (np.sum(grad_at(w0 + 1e-6 * d) * u) - np.sum(grad_at(w0 - 1e-6 * d) * u)) / 2e-6
    assert abs(np.sum(got * d) - numeric) <= 1e-5 + 1e-4 * abs(numeric)


def _bag_of_words_model():
    """A tiny text classifier: mean of token embeddings → linear → softmax cross-entropy."""
    g = Graph()
    with g:
        tokens = gc.placeholder("tokens", (None, 6), "int64")
        labels = gc.placeholder("labels", (None,), "int64")
        table = gc.variable("table", init=np.random.default_rng(8).normal(size=(20, 8)).astype(np.float32))
        proj = gc.variable("proj", init=np.random.default_rng(9).normal(size=(8, 3)).astype(np.float32) * 0.3)
        h = gc.mean(gc.embedding(tokens, table, name="lookup"), axis=1)
        loss = gc.softmax_cross_entropy(h @ proj, labels)
        gc.optim.SGD(lr=2.0).minimize(loss)
    return g, loss


def test_training_an_embedding_table_is_the_same_bits_at_1_and_2_threads():
    rng = np.random.default_rng(10)
    tokens = rng.integers(0, 20, size=(16, 6))
    tokens[:, :3] = rng.integers(0, 2, size=(16, 3))  # frequent tokens: repeated rows in every step
    labels = tokens[:, 3] % 3
    g, loss = _bag_of_words_model()
    shapes = {"tokens": tokens.shape, "labels": labels.shape}
    plan = gc.compile(g, shapes=shapes)
    graph = gc.compiler.lower_graph(g, shapes=shapes)
    state = {}
    sessions = [gc.Session(plan, threads=t) for t in (1, 2)]
    losses = []
    for step in range(30):
        feeds = {"tokens": tokens, "labels": labels}
        got = [float(s.run(feeds)[loss.name]) for s in sessions]
        want = float(gc.reference.evaluate(graph, feeds, [loss.name], state=state)[loss.name])
        assert got[0] == got[1] and abs(got[0] - want) <= 1e-4 * abs(want), (step, got, want)
        losses.append(got[0])
    assert losses[-1] < 0.5 * losses[0], losses
    for name in sessions[0].variable_names:
        a, b = (s.get_variable(name) for s in sessions)
        assert a.tobytes() == b.tobytes(), name
        np.testing.assert_allclose(a, state[name], rtol=1e-3, atol=1e-5, err_msg=name)


def test_bench_random_feeds_keep_ids_in_range():
    from graphc.cli import random_feeds
    with Graph() as g:
        ids = gc.placeholder("ids", (50,), "int32")
        idx = gc.placeholder("idx", (40,), "int64")
        w = gc.placeholder("w", (7, 3))
        x = gc.placeholder("x", (3, 5))
        y1 = gc.embedding(ids, w)
        y2 = gc.take(x, idx, axis=1)
    plan = gc.compile(g, shapes={}, fetches=[y1.name, y2.name])
    feeds = random_feeds(plan)
    assert 0 <= feeds["ids"].min() and feeds["ids"].max() < 7
    assert 0 <= feeds["idx"].min() and feeds["idx"].max() < 5
    Session(plan).run(feeds)  # no out-of-range error


def test_gather_is_tf_gather():
    # gc.gather follows tf.gather (= numpy.take with in-range indices), torch.gather is take_along_axis
    rng = np.random.default_rng(5)
    xv = rng.normal(size=(3, 4, 5))
    iv = np.array([[2, 0], [1, 1]], np.int64)
    with gc.Graph() as g:
        x = gc.placeholder("x", xv.shape, "float64")
        y = gc.gather(x, gc.constant(iv), axis=1)
    got = gc.Session(gc.compile(g, fetches=[y])).run({"x": xv})[y.name]
    np.testing.assert_array_equal(got, np.take(xv, iv, axis=1))
