"""Session and executor behaviour: plan loading, feeds, fetches, variables, and every
class of bad input (each must be a graphc.errors exception, never a crash)."""

import numpy as np
import pytest

import graphc as gc
from graphc import errors
from graphc._proto import graphc_pb2 as pb
from graphc.graph import Graph
from graphc.session import Session


def _mlp_plan():
    with Graph() as g:
        x = gc.placeholder("x", (None, 3))
        w = gc.variable("w", (3, 4), init=gc.init.xavier_uniform(seed=0))
        y = gc.relu(x @ w)
    return gc.compile(g, shapes={"x": (2, 3)}, fetches=[y.name]), x, y


def _hand_plan():
    """A plan built by hand: y = x + c (c constant), v = reshape(y) as a VIEW."""
    p = pb.Plan(target="cpu", arena_bytes=128)
    p.values.add(name="x", dtype=pb.FLOAT32, dims=[2, 3], storage=pb.ARENA, offset=0, nbytes=24)
    p.values.add(name="c", dtype=pb.FLOAT32, dims=[3], storage=pb.CONSTANT, index=0, nbytes=12)
    p.values.add(name="y", dtype=pb.FLOAT32, dims=[2, 3], storage=pb.ARENA, offset=64, nbytes=24)
    p.values.add(name="v", dtype=pb.FLOAT32, dims=[6], storage=pb.VIEW, alias_of=2, nbytes=24)
    p.constants.add(dtype=pb.FLOAT32, dims=[3], raw_data=np.array([1, 2, 3], np.float32).tobytes())
    p.steps.add(op="add", node="plus", inputs=[0, 1], outputs=[2])
    p.feeds.append(0)
    p.fetches.extend([2, 3])
    return p


def test_hand_built_plan_with_constant_and_view():
    sess = Session(_hand_plan(), threads=1)
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    out = sess.run({"x": x})
    np.testing.assert_array_equal(out["y"], x + [1, 2, 3])
    np.testing.assert_array_equal(out["v"], (x + [1, 2, 3]).reshape(6))


def test_run_plan_object_proto_and_path(tmp_path):
    plan, x, y = _mlp_plan()
    xv = np.random.default_rng(0).standard_normal((2, 3)).astype(np.float32)
    path = tmp_path / "m.plan"
    plan.save(path)
    results = [Session(p, threads=2).run({"x": xv})[y.name] for p in (plan, plan.proto, str(path), path)]
    w = Session(plan).get_variable("w")
    for r in results:
        np.testing.assert_allclose(r, np.maximum(xv @ w, 0), rtol=1e-6)


def test_results_are_copies_and_tensor_keys_work():
    plan, x, y = _mlp_plan()
    sess = Session(plan, threads=1)
    a = sess.run({x: np.ones((2, 3), np.float32)})[y.name]
    keep = a.copy()
    sess.run({"x": np.zeros((2, 3), np.float32)})
    np.testing.assert_array_equal(a, keep)


def test_non_contiguous_feed_is_copied():
    plan, x, y = _mlp_plan()
    sess = Session(plan, threads=1)
    big = np.random.default_rng(1).standard_normal((3, 2)).astype(np.float32)
    got = sess.run({"x": big.T})[y.name]
    want = sess.run({"x": np.ascontiguousarray(big.T)})[y.name]
    np.testing.assert_array_equal(got, want)


def test_get_and_set_variable():
    plan, x, y = _mlp_plan()
    sess = Session(plan, threads=1)
    sess.set_variable("w", np.eye(3, 4, dtype=np.float32))
    np.testing.assert_array_equal(sess.get_variable("w"), np.eye(3, 4, dtype=np.float32))
    out = sess.run({"x": np.array([[1, -2, 3], [4, 5, -6]], np.float32)})[y.name]
    np.testing.assert_array_equal(out, [[1, 0, 3, 0], [4, 5, 0, 0]])
    with pytest.raises(errors.FeedError, match="w"):
        sess.set_variable("w", np.zeros((4, 3), np.float32))
    with pytest.raises(KeyError):
        sess.get_variable("nope")


@pytest.mark.parametrize("feeds, pattern", [
    ({}, "missing feed.*x"),
    ({"x": np.zeros((2, 3), np.float32), "zz": np.zeros(1)}, "unknown feed 'zz'"),
    ({"x": np.zeros((2, 3), np.float64)}, "'x' expects dtype float32, got float64"),
    ({"x": np.zeros((3, 3), np.float32)}, r"'x' expects shape \(2, 3\), got \(3, 3\)"),
])
def test_bad_feeds(feeds, pattern):
    plan, _, _ = _mlp_plan()
    with pytest.raises(errors.FeedError, match=pattern):
        Session(plan, threads=1).run(feeds)


def test_corrupt_plan_file(tmp_path):
    path = tmp_path / "bad.plan"
    path.write_bytes(b"\xff\xff\xff\xffnot a plan")
    with pytest.raises(errors.ModelFormatError):
        Session(str(path))
    with pytest.raises(errors.ModelFormatError):
        Session(str(tmp_path / "missing.plan"))


def test_offset_outside_arena_is_model_format_error():
    p = _hand_plan()
    p.values[2].offset = 1 << 20
    with pytest.raises(errors.ModelFormatError, match="'y'.*outside the arena"):
        Session(p)


@pytest.mark.parametrize("mutate, pattern", [
    (lambda p: setattr(p.values[2], "nbytes", 999), "claims 999 bytes"),
    (lambda p: setattr(p.values[2], "offset", 8), "not 64-byte aligned"),
    (lambda p: p.steps[0].inputs.append(42), "outside"),
    (lambda p: setattr(p.steps[0], "op", "frobnicate"), "node 'plus'.*unknown op 'frobnicate'"),
    (lambda p: setattr(p.values[3], "alias_of", 3), "alias cycle"),
    (lambda p: setattr(p.constants[0], "raw_data", b"123"), "bytes of data"),
    (lambda p: p.constants[0].dims.append(2), "its constant tensor is float32"),
])
def test_inconsistent_plans_are_rejected(mutate, pattern):
    p = _hand_plan()
    mutate(p)
    with pytest.raises(errors.ModelFormatError, match=pattern):
        Session(p)


def test_kernel_failure_names_the_node():
    with Graph() as g:
        z = gc.placeholder("z", (2, 3))
        lab = gc.placeholder("lab", (2,), dtype="int64")
        loss = gc.softmax_cross_entropy(z, lab)
    plan = gc.compile(g, shapes={}, fetches=[loss.name])
    sess = Session(plan, threads=2)
    with pytest.raises(errors.RuntimeExecutionError, match=f"{loss.name}.*label 7.*outside \\[0, 3\\)"):
        sess.run({"z": np.zeros((2, 3), np.float32), "lab": np.array([0, 7])})
    out = sess.run({"z": np.zeros((2, 3), np.float32), "lab": np.array([0, 2])})
    np.testing.assert_allclose(out[loss.name], np.log(3), rtol=1e-6)


def test_cuda_is_not_built_yet():
    plan, _, _ = _mlp_plan()
    with pytest.raises(errors.GraphcError, match="CUDA runtime is not built yet"):
        Session(plan, device="cuda")


def test_size_zero_batch():
    with Graph() as g:
        x = gc.placeholder("x", (None, 3))
        y = gc.sum(gc.exp(x), axis=0)
        m = gc.mean(x, axis=0)
    plan = gc.compile(g, shapes={"x": (0, 3)}, fetches=[y.name, m.name])
    out = Session(plan, threads=2).run({"x": np.zeros((0, 3), np.float32)})
    np.testing.assert_array_equal(out[y.name], np.zeros(3, np.float32))
    assert np.isnan(out[m.name]).all()
