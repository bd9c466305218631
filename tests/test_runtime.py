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
    (lambda p: setattr(p.values[3], "alias_of", 3), "alias_of 3 is not another value"),
    (lambda p: setattr(p.constants[0], "raw_data", b"123"), "bytes of data"),
    (lambda p: p.constants[0].dims.append(2), "constant 0.*has 12 bytes of data, expected 24"),
    (lambda p: setattr(p.constants[0], "dtype", pb.INT32), r"is float32\(3,\) but its constant tensor is int32"),
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


def test_cuda_without_a_usable_gpu_is_a_device_error():
    from graphc import _runtime

    plan, _, _ = _mlp_plan()
    status = _runtime.cuda_status()
    if not _runtime.cuda_built():
        assert _runtime.devices() == ["cpu"] and "not built with CUDA" in status
        with pytest.raises(errors.DeviceError):
            _runtime.kernel_keys("cuda")
    else:
        assert _runtime.devices() == ["cpu", "cuda"]
    if status:  # no GPU here (or no driver, no cuBLASLt...): the Session says why, in those words
        with pytest.raises(errors.DeviceError) as info:
            Session(plan, device="cuda")
        assert str(info.value) == status
    with pytest.raises(errors.DeviceError, match="unknown device 'tpu'"):
        Session(plan, device="tpu")
    with pytest.raises(errors.DeviceError):
        Session(plan, device=3)


def test_kernel_keys_lists_op_dtype_pairs():
    from graphc import _runtime

    keys = _runtime.kernel_keys("cpu")
    assert keys == sorted(keys) and len(keys) == len(set(keys))
    assert {d for _, d in keys} <= {"float32", "float64", "int32", "int64", "bool"}
    assert ("matmul", "float32") in keys and ("add", "int64") in keys
    assert sorted({op for op, _ in keys}) == _runtime.kernel_ops("cpu")


def test_memory_limit_from_argument_and_environment(monkeypatch):
    plan, x, y = _mlp_plan()
    need = (plan.arena_bytes + sum(len(v.init.raw_data) for v in plan.proto.persistent)
            + sum(len(c.raw_data) for c in plan.proto.constants))
    monkeypatch.delenv("GRAPHC_MEMORY_LIMIT", raising=False)
    Session(plan, memory_limit=need)  # exactly enough
    with pytest.raises(errors.ResourceError, match=f"needs {need} bytes.*limit of {need - 1} bytes"):
        Session(plan, memory_limit=need - 1)
    monkeypatch.setenv("GRAPHC_MEMORY_LIMIT", str(need - 1))
    with pytest.raises(errors.ResourceError, match="GRAPHC_MEMORY_LIMIT"):
        Session(plan)
    monkeypatch.setenv("GRAPHC_MEMORY_LIMIT", "1GiB")
    Session(plan).run({"x": np.ones((2, 3), np.float32)})
    monkeypatch.setenv("GRAPHC_MEMORY_LIMIT", "lots")
    with pytest.raises(errors.GraphcError, match="GRAPHC_MEMORY_LIMIT"):
        Session(plan)
    monkeypatch.delenv("GRAPHC_MEMORY_LIMIT")
    for bad in (-1, 0, 2 ** 64, "12 parsecs", 1.5, True):
        with pytest.raises(errors.GraphcError):
            Session(plan, memory_limit=bad)


def test_resource_error_is_typed_and_a_memory_error():
    p = _hand_plan()
    p.arena_bytes = 2 ** 62
    with pytest.raises(errors.ResourceError, match="physical memory") as info:
        Session(p)
    assert isinstance(info.value, MemoryError) and isinstance(info.value, errors.GraphcError)


def test_parse_bytes():
    from graphc.session import parse_bytes

    assert parse_bytes("1024") == 1024
    assert parse_bytes("512MB") == 512 * 10 ** 6
    assert parse_bytes("4GiB") == 4 * 2 ** 30
    assert parse_bytes(" 1.5 kib ") == 1536
    for bad in ("", "-5", "5 XB", "1e9"):
        with pytest.raises(errors.GraphcError):
            parse_bytes(bad)


def test_validator_alone_and_its_inplace_rule():
    """_runtime.validate_plan runs the C++ validator without allocating; an injected
    in-place rule decides whether an exact-bytes takeover is accepted."""
    from graphc import _runtime

    p = pb.Plan(target="cpu", arena_bytes=64)
    p.values.add(name="x", dtype=pb.FLOAT32, dims=[4], storage=pb.ARENA, offset=0, nbytes=16)
    p.values.add(name="y", dtype=pb.FLOAT32, dims=[4], storage=pb.ARENA, offset=0, nbytes=16)
    p.steps.add(op="relu", node="y", inputs=[0], outputs=[1])
    p.feeds.append(0)
    p.fetches.append(1)
    assert _runtime.validate_plan(p, inplace_ops=["relu"]) >= 0
    with pytest.raises(ValueError, match="overlap"):
        _runtime.validate_plan(p, inplace_ops=[])
    # x is fetched, so it does not die at the step: no takeover whatever the rule.
    p.fetches.append(0)
    with pytest.raises(ValueError, match="overlap"):
        _runtime.validate_plan(p, inplace_ops=["relu"])
    with pytest.raises(errors.ResourceError):
        _runtime.validate_plan(p, memory_limit=8)


def test_cli_run_exits_2_for_device_and_resource_errors(tmp_path, capsys, monkeypatch):
    from graphc import cli

    plan, _, _ = _mlp_plan()
    path = tmp_path / "m.plan"
    plan.save(path)
    np.save(tmp_path / "x.npy", np.ones((2, 3), np.float32))
    feed = ["--feed", f"x={tmp_path / 'x.npy'}"]
    from graphc import _runtime

    if _runtime.cuda_status():
        assert cli.main(["run", str(path), *feed, "--device", "cuda"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and _runtime.cuda_status() in err[0]
    monkeypatch.setenv("GRAPHC_MEMORY_LIMIT", "64")
    assert cli.main(["run", str(path), *feed]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "memory limit" in err[0]


def test_size_zero_batch():
    with Graph() as g:
        x = gc.placeholder("x", (None, 3))
        y = gc.sum(gc.exp(x), axis=0)
        m = gc.mean(x, axis=0)
    plan = gc.compile(g, shapes={"x": (0, 3)}, fetches=[y.name, m.name])
    out = Session(plan, threads=2).run({"x": np.zeros((0, 3), np.float32)})
    np.testing.assert_array_equal(out[y.name], np.zeros(3, np.float32))
    assert np.isnan(out[m.name]).all()


# -- GRAPHC_POISON ------------------------------------------------------------------------

def _train_plan(seed=0):
    with Graph() as g:
        x = gc.placeholder("x", (None, 4))
        lab = gc.placeholder("lab", (None,), dtype="int64")
        w1 = gc.variable("w1", (4, 8), init=gc.init.xavier_uniform(seed=seed + 1))
        w2 = gc.variable("w2", (8, 3), init=gc.init.xavier_uniform(seed=seed + 2))
        loss = gc.softmax_cross_entropy(gc.relu(x @ w1) @ w2, lab)
        gc.optim.Adam(lr=1e-2).minimize(loss)
    return gc.compile(g, shapes={"x": (6, 4), "lab": (6,)}), loss


def _train_feeds(step):
    rng = np.random.default_rng(100 + step)
    return {"x": rng.standard_normal((6, 4)).astype(np.float32), "lab": rng.integers(0, 3, 6)}


def test_poison_mode_gives_the_same_results(monkeypatch):
    plan, loss = _train_plan()
    assert any(len(s.frees) for s in plan.proto.steps), "the plan frees nothing: the test proves nothing"
    monkeypatch.delenv("GRAPHC_POISON", raising=False)
    plain = Session(plan, threads=2)
    monkeypatch.setenv("GRAPHC_POISON", "1")
    poisoned = Session(plan, threads=2)
    assert poisoned.poison and not plain.poison
    for step in range(4):
        a = plain.run(_train_feeds(step))[loss.name]
        b = poisoned.run(_train_feeds(step))[loss.name]
        assert np.isfinite(a) and a == b
    for name in plain.variable_names:
        np.testing.assert_array_equal(plain.get_variable(name), poisoned.get_variable(name), err_msg=name)


def _early_free_plan():
    """a = relu(x); b = x + x; y = a + b, with offsets of its own for each value."""
    p = pb.Plan(target="cpu", arena_bytes=256)
    for k, name in enumerate(["x", "a", "b", "y"]):
        p.values.add(name=name, dtype=pb.FLOAT32, dims=[2, 3], storage=pb.ARENA, offset=64 * k, nbytes=24)
    p.steps.add(op="relu", node="a", inputs=[0], outputs=[1])
    p.steps.add(op="add", node="b", inputs=[0, 0], outputs=[2])
    p.steps.add(op="add", node="y", inputs=[1, 2], outputs=[3])
    p.feeds.append(0)
    p.fetches.append(3)
    return p


def test_broken_memory_plans_are_rejected_before_they_run():
    """Poisoning made a bad `frees` visible at run time; the validator now refuses such
    plans at load, and two live values on overlapping bytes too."""
    x = np.array([[1, -2, 3], [-4, 5, 6]], np.float32)
    want = np.maximum(x, 0) + 2 * x
    good = _early_free_plan()
    good.steps[2].frees.extend([1, 2])
    for poison in (False, True):
        np.testing.assert_array_equal(Session(good, threads=1, poison=poison).run({"x": x})["y"], want)
    # `frees` claims that `a` dies right after it is made although `y` reads it.
    early = _early_free_plan()
    early.steps[0].frees.append(1)
    with pytest.raises(errors.ModelFormatError, match="frees value 1 \\('a'\\), but it is live until step 2"):
        Session(early, threads=1)
    # Two live values on overlapping bytes (b takes a's offset): a silently wrong y before.
    overlap = _early_free_plan()
    overlap.values[2].offset = overlap.values[1].offset
    pattern = r"'b'\) bytes \[64, 88\) live steps 1..2 overlap value 1 \('a'\) bytes \[64, 88\)"
    with pytest.raises(errors.ModelFormatError, match=pattern):
        Session(overlap, threads=1)


def test_a_compiled_plan_with_a_moved_free_is_rejected():
    plan, loss = _train_plan()
    p = pb.Plan()
    p.CopyFrom(plan.proto)
    # Move the free of a value read by a later step to right after its producer.
    producer = {o: s for s, st in enumerate(p.steps) for o in st.outputs}
    moved = None
    for s, st in enumerate(p.steps):
        for i in st.frees:
            if i in producer and producer[i] < s - 1:
                moved = (i, s, producer[i])
                break
        if moved:
            break
    assert moved, "no value lives across a step"
    i, s, prod = moved
    p.steps[s].frees.remove(i)
    p.steps[prod].frees.append(i)
    with pytest.raises(errors.ModelFormatError, match=f"step {prod} .*frees .*live until step {s}"):
        Session(p, threads=1)


def test_frees_must_name_arena_values():
    p = _hand_plan()
    p.steps[0].frees.append(1)  # a constant
    with pytest.raises(errors.ModelFormatError, match="frees value 1.*not an arena value"):
        Session(p)
    p = _hand_plan()
    p.steps[0].frees.append(9)
    with pytest.raises(errors.ModelFormatError, match="frees refers to value 9"):
        Session(p)


# -- training plans and variables ---------------------------------------------------------

def test_training_plan_updates_persistent_storage_in_place():
    plan, loss = _train_plan()
    persistent = [v for v in plan.proto.values if v.storage == pb.PERSISTENT]
    assert len(persistent) > len(plan.proto.persistent)  # update outputs share storage indices
    sess = Session(plan, threads=2)
    assert sess.variable_names == sorted(v.name for v in plan.proto.persistent)
    w0 = sess.get_variable("w1")
    losses = [float(sess.run(_train_feeds(0))[loss.name]) for _ in range(20)]
    assert losses[-1] < losses[0]
    assert not np.array_equal(sess.get_variable("w1"), w0)
    assert sess.get_variable("optimizer/step") == 20
    assert np.abs(sess.get_variable("w1/adam_m")).sum() > 0
    with pytest.raises(KeyError):
        sess.get_variable("w1/update:0")


# -- profile ------------------------------------------------------------------------------

def test_profile_times_every_step():
    plan, x, y = _mlp_plan()
    sess = Session(plan, threads=1)
    feeds = {"x": np.ones((2, 3), np.float32)}
    prof = sess.profile(feeds, iters=5, warmup=1)
    assert [r["step"] for r in prof] == list(range(len(plan.proto.steps)))
    for r, st in zip(prof, plan.proto.steps):
        assert r["node"] == st.node and r["op"] == st.op
        assert r["file"].endswith("test_runtime.py") and r["line"] > 0
        assert isinstance(r["seconds"], float) and 0 <= r["seconds"] < 1
    assert any(r["seconds"] > 0 for r in prof)
    np.testing.assert_array_equal(sess.run(feeds)[y.name], np.maximum(np.ones((2, 3)) @ sess.get_variable("w"), 0)
                                  .astype(np.float32))
    with pytest.raises(ValueError):
        sess.profile(feeds, iters=0)
    with pytest.raises(errors.FeedError):
        sess.profile({}, iters=1)


def test_profile_of_a_training_plan_runs_real_steps():
    plan, loss = _train_plan()
    sess = Session(plan, threads=1)
    prof = sess.profile(_train_feeds(0), iters=3, warmup=2)
    assert len(prof) == len(plan.proto.steps)
    assert sess.get_variable("optimizer/step") == 5


def test_executor_checks_every_buffer_it_is_given():
    """The Cython layer pins buffers with PyObject_GetBuffer: a wrong size, a strided or a
    read-only buffer is a ValueError naming the feed or fetch, never a crash."""
    from graphc.session import _load_runtime
    runtime = _load_runtime()
    ex = runtime.Executor(_hand_plan(), 1, False)
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    y, v = np.empty((2, 3), np.float32), np.empty(6, np.float32)
    ex.run([x], [y, v])
    np.testing.assert_array_equal(y, x + np.array([1, 2, 3], np.float32))
    np.testing.assert_array_equal(v, y.ravel())
    with pytest.raises(ValueError, match="feed 0: buffer has 4 bytes, expected 24"):
        ex.run([np.zeros(1, np.float32)])
    with pytest.raises(ValueError, match="feed 0: .*contiguous"):
        ex.run([np.ones((3, 2), np.float32).T])
    ro = np.zeros((2, 3), np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="fetch 0: .*(writable|read-only)"):
        ex.run([x], [ro, v])
    with pytest.raises(ValueError, match="expected 1 feeds, got 2"):
        ex.run([x, x])
    with pytest.raises(ValueError, match="feed 0: not a buffer"):
        ex.run([object()])
    # y and its view v share their bytes: neither can be written in place by a binding.
    assert ex.feed_refusals() == [""]
    assert all("fetched twice" in r for r in ex.fetch_refusals())
    with pytest.raises(ValueError, match="cannot be bound: .*fetched twice"):
        ex.bind([None], [y, None])
    b = ex.bind([x], [None, None])
    assert b.feed_in_place == [True] and b.fetch_in_place == [False, False]
    with pytest.raises(ValueError, match="bound in place; it takes no copy"):
        ex.run_bound(b, [x], None)
    ex.run_bound(b, None, [y, v])
    np.testing.assert_array_equal(y, x + np.array([1, 2, 3], np.float32))
    with pytest.raises(ValueError, match="another executor"):
        runtime.Executor(_hand_plan(), 1, False).run_bound(b)
    with pytest.raises(ValueError, match="not made by Executor.bind"):
        assert runtime.Binding().feed_in_place is None  # raises first
    with pytest.raises(ValueError, match="another executor"):
        ex.run_bound(runtime.Binding())
