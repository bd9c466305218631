"""CPU against CUDA on every registry example (a GPU is needed; skips saying why otherwise):
the generator and dropout bit-identical, integer and bool results exact, floats within the
CUDA tolerance table of tests/test_kernels.py; the captured CUDA graph, step by step
(GRAPHC_CUDA_GRAPHS=0) and GRAPHC_CUDA_SYNC=1 give the same bits run for run, and so do two
Sessions (determinism); a data error found by a kernel (an embedding id out of range) raises
naming the step, and the Session stays usable.  The registry's examples include size 0 and
size 1 inputs (graphc/registry.py asks for them; tests/test_cuda_dry.py checks they are there)."""

import numpy as np
import pytest
from devices import cuda_skip_reason
from single_op import single_op_graph
from test_kernels import _tol

import graphc as gc
from graphc import registry
from graphc.errors import RuntimeExecutionError

pytestmark = pytest.mark.skipif(bool(cuda_skip_reason()), reason=f"device 'cuda': {cuda_skip_reason()}")

OPS = registry.all_ops()
# Draws from the counter-based generator (runtime/cpu/philox.h, shared with the CUDA kernels).
GENERATOR_OPS = frozenset(o.name for o in OPS if o.name.startswith("random_") or o.name == "dropout_train")
RUNS = 3  # the first run goes step by step, the second is captured, the third replays the graph


def _session_runs(plan, feeds, fetches, device, runs, env, monkeypatch):
    """``runs`` results (lists of arrays) of one Session, with ``env`` set while it lives."""
    with monkeypatch.context() as m:
        for k, v in env.items():
            m.setenv(k, v)
        sess = gc.Session(plan, device=device, threads=1)
        out = []
        for _ in range(runs):
            r = sess.run(feeds)
            out.append([np.array(r[name], copy=True) for name in fetches])
        del sess
    return out


def _bits(results):
    return [[a.tobytes() for a in run] for run in results]


@pytest.mark.parametrize("op", OPS, ids=lambda o: o.name)
def test_cuda_matches_cpu_and_is_deterministic(op, monkeypatch):
    for ex in op.examples(np.random.default_rng(0)):
        g, _, outs, shapes, feeds = single_op_graph(op, ex)
        fetches = [t.name for t in outs]
        cpu_plan = gc.compile(g, shapes=shapes, fetches=fetches, target="cpu")
        cuda_plan = gc.compile(g, shapes=shapes, fetches=fetches, target="cuda")
        cpu = _session_runs(cpu_plan, feeds, fetches, "cpu", RUNS, {}, monkeypatch)
        graphs = _session_runs(cuda_plan, feeds, fetches, "cuda", RUNS, {}, monkeypatch)
        for i, (c, d) in enumerate(zip(cpu, graphs)):
            for name, a, b in zip(fetches, c, d):
                where = f"{op.name} {ex!r}, run {i + 1}, output {name}"
                assert a.shape == b.shape and a.dtype == b.dtype, (where, a.shape, a.dtype, b.shape, b.dtype)
                if op.name in GENERATOR_OPS or a.dtype.kind != "f":
                    assert a.tobytes() == b.tobytes(), f"{where}: CUDA differs from the CPU (must be bit-identical)"
                else:
                    np.testing.assert_allclose(b, a, equal_nan=True, err_msg=where, **_tol(a.dtype, "cuda", op.name))
        steps = _session_runs(cuda_plan, feeds, fetches, "cuda", RUNS, {"GRAPHC_CUDA_GRAPHS": "0"}, monkeypatch)
        assert _bits(steps) == _bits(graphs), f"{op.name} {ex!r}: GRAPHC_CUDA_GRAPHS=0 differs from the CUDA graph"
        synced = _session_runs(cuda_plan, feeds, fetches, "cuda", RUNS, {"GRAPHC_CUDA_SYNC": "1"}, monkeypatch)
        assert _bits(synced) == _bits(graphs), f"{op.name} {ex!r}: GRAPHC_CUDA_SYNC=1 differs"
        again = _session_runs(cuda_plan, feeds, fetches, "cuda", RUNS, {}, monkeypatch)
        assert _bits(again) == _bits(graphs), f"{op.name} {ex!r}: two CUDA Sessions differ"
        if op.name not in GENERATOR_OPS and not op.inplace:  # nothing changes between runs
            assert all(b == _bits(graphs)[0] for b in _bits(graphs)), f"{op.name} {ex!r}: runs of one Session differ"


def _lookup_plan():
    with gc.Graph() as g:
        table = gc.placeholder("table", (5, 3))
        ids = gc.placeholder("ids", (4,), dtype="int64")
        out = gc.embedding(ids, table, name="lookup")
    return gc.compile(g, fetches=[out.name], target="cuda"), out.name


@pytest.mark.parametrize("graphs", ["1", "0"], ids=["cuda_graph", "step_by_step"])
def test_embedding_id_out_of_range_names_the_step(graphs, monkeypatch):
    monkeypatch.setenv("GRAPHC_CUDA_GRAPHS", graphs)
    plan, name = _lookup_plan()
    sess = gc.Session(plan, device="cuda")
    table = np.arange(15, dtype=np.float32).reshape(5, 3)
    good = {"table": table, "ids": np.array([0, 1, 4, 2])}
    np.testing.assert_array_equal(sess.run(good)[name], table[[0, 1, 4, 2]])
    np.testing.assert_array_equal(sess.run(good)[name], table[[0, 1, 4, 2]])  # captured (graph mode)
    with pytest.raises(RuntimeExecutionError) as info:
        sess.run({"table": table, "ids": np.array([0, 1, 7, 2])})
    msg = str(info.value)
    for part in ("step 0", "'lookup'", "embedding", "7", "[0, 5)", "test_cuda_parity.py"):
        assert part in msg, (part, msg)
    # A data error is not a device fault: the Session keeps working (and the error slot is clear).
    np.testing.assert_array_equal(sess.run(good)[name], table[[0, 1, 4, 2]])
    with pytest.raises(RuntimeExecutionError, match="-1"):
        sess.run({"table": table, "ids": np.array([-1, 0, 0, 0])})
    np.testing.assert_array_equal(sess.run(good)[name], table[[0, 1, 4, 2]])


def test_training_step_matches_the_cpu(monkeypatch):
    """A whole training plan (MLP, SGD with momentum): 5 steps on both devices from the same
    weights, losses within 1e-4 relative, weights within 1e-4; CUDA graph and step-by-step
    runs bit-identical."""
    rng = np.random.default_rng(0)
    with gc.Graph() as g:
        x = gc.placeholder("x", (16, 20))
        y = gc.placeholder("y", (16,), dtype="int64")
        w1 = gc.variable("w1", init=(rng.standard_normal((20, 32)) * 0.3).astype(np.float32))
        w2 = gc.variable("w2", init=(rng.standard_normal((32, 5)) * 0.3).astype(np.float32))
        loss = gc.softmax_cross_entropy(gc.relu(x @ w1) @ w2, y, name="loss")
        gc.optim.SGD(lr=0.1, momentum=0.9).minimize(loss)
    feeds = {"x": rng.standard_normal((16, 20)).astype(np.float32), "y": rng.integers(0, 5, 16)}
    results = {}
    for device, env in (("cpu", {}), ("cuda", {}), ("cuda-steps", {"GRAPHC_CUDA_GRAPHS": "0"})):
        dev = device.split("-")[0]
        plan = gc.compile(g, target=dev)
        with monkeypatch.context() as m:
            for k, v in env.items():
                m.setenv(k, v)
            sess = gc.Session(plan, device=dev)
            losses = [float(sess.run(feeds)[loss.name]) for _ in range(5)]
            results[device] = (losses, sess.get_variable("w1"), sess.get_variable("w2"))
    np.testing.assert_allclose(results["cuda"][0], results["cpu"][0], rtol=1e-4)
    for k in (1, 2):
        np.testing.assert_allclose(results["cuda"][k], results["cpu"][k], rtol=1e-4, atol=1e-5)
        assert results["cuda"][k].tobytes() == results["cuda-steps"][k].tobytes()
    assert results["cuda"][0] == results["cuda-steps"][0]
