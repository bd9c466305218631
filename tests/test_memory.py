"""The memory planner (issue 5): liveness and packing, in-place reuse, in-place persistent
updates, memory-aware scheduling, recompute under a budget, the independent verifier."""

import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import graphc as gc
from graphc import reference
from graphc._proto import graphc_pb2 as pb
from graphc.compiler import compile as _compile
from graphc.compiler import lower_graph as _lower_graph
from graphc.compiler.plan_memory import plan_memory
from graphc.compiler.recompute import measure, parse_bytes, recompute_for_budget
from graphc.compiler.schedule_nodes import schedule_nodes, schedule_order
from graphc.compiler.verify_plan import PlanVerificationError, verify_plan
from graphc.errors import CompileError
from graphc.graph import GRADIENT, Graph
from graphc.plan import memory_report
from graphc.proto_enums import dtype_from_proto

# -- an arena simulator: run the plan's steps with numpy on one bytearray ----------------------


# These tests plan and verify the memory of unfused graphs, naming their values (the recompute
# pass runs before fusion in the pipeline; tests/test_fusion.py covers fused plans).
def compile(*args, **kwargs):  # noqa: A001
    kwargs.setdefault("fuse", False)
    return _compile(*args, **kwargs)


def lower_graph(*args, **kwargs):
    kwargs.setdefault("fuse", False)
    return _lower_graph(*args, **kwargs)


def simulate(plan, feeds, poison=True):
    """Execute a plan's steps with the numpy references, every ARENA value read from and
    written to its offset in one bytearray; freed values are overwritten with 0xFF (NaN)."""
    p = plan.proto
    arena = bytearray(p.arena_bytes)
    persistent = [np.frombuffer(v.init.raw_data, np.dtype(dtype_from_proto(v.dtype))).reshape(v.dims).copy()
                  for v in p.persistent]
    constants = [np.frombuffer(t.raw_data, np.dtype(dtype_from_proto(t.dtype))).reshape(t.dims)
                 for t in p.constants]

    def spec(i):
        v = p.values[i]
        return np.dtype(dtype_from_proto(v.dtype)), tuple(v.dims)

    def read(i):
        v = p.values[i]
        dtype, dims = spec(i)
        r = p.values[v.alias_of] if v.storage == pb.VIEW else v
        if r.storage == pb.ARENA:
            return np.frombuffer(bytes(arena[r.offset:r.offset + r.nbytes]), dtype).reshape(dims)
        table = persistent if r.storage == pb.PERSISTENT else constants
        return table[r.index].reshape(dims)

    def write(i, value):
        v = p.values[i]
        dtype, dims = spec(i)
        data = np.ascontiguousarray(np.asarray(value, dtype).reshape(dims))
        if v.storage == pb.ARENA:
            arena[v.offset:v.offset + v.nbytes] = data.tobytes()
        else:
            persistent[v.index] = data.copy()

    for i in p.feeds:
        write(i, feeds[p.values[i].name])
    for step in p.steps:
        opdef = gc.registry.get_op(step.op)
        node = next(n for n in plan_graph[id(plan)].nodes if n.name == step.node)
        outs = opdef.evaluate([read(i) for i in step.inputs], node.attrs)
        for i, val in zip(step.outputs, outs):
            write(i, val)
        if poison:
            for i in step.frees:
                v = p.values[i]
                arena[v.offset:v.offset + v.nbytes] = b"\xff" * v.nbytes
    return {p.values[i].name: read(i).copy() for i in p.fetches}


plan_graph = {}


def compiled(g, shapes=None, fetches=None):
    plan = compile(g, shapes=shapes, fetches=fetches)
    plan_graph[id(plan)] = lower_graph(g, shapes, fetches)
    return plan


def check_lower_bound(plan):
    """The report's lower bound is the verifier's: the most bytes of distinct buffers live
    at one step (in a verified plan, live values overlap only where an output took over an
    input's exact bytes), and the arena is at least that; the ratio is reported."""
    r = memory_report(plan)
    live = verify_plan(plan)
    p = plan.proto
    per_step = []
    for s in range(max(len(p.steps), 1)):
        ranges = {(p.values[i].offset, p.values[i].nbytes) for i, (a, b) in live.items()
                  if (a <= s <= b or not p.steps) and p.values[i].nbytes}
        per_step.append(sum(n for _, n in ranges))
    assert r["lower_bound_bytes"] == max(per_step)
    assert 0 <= r["lower_bound_bytes"] <= r["naive_bytes"]
    assert r["arena_bytes"] >= r["lower_bound_bytes"]
    if r["lower_bound_bytes"]:
        assert r["arena_over_lower_bound"] == pytest.approx(r["arena_bytes"] / r["lower_bound_bytes"])
        assert r["arena_over_lower_bound"] >= 1.0
    return r


# -- hand-built cases with a known optimal arena ------------------------------------------------


def test_chain_reuses_two_blocks_and_matches_lower_bound():
    g = Graph()
    with g:
        x = gc.placeholder("x", (16, 16))          # 1 KiB each
        h = x
        for _ in range(10):
            h = gc.matmul(h, h)                     # not elementwise: input and output coexist
    plan = compile(g)
    r = memory_report(plan)
    assert r["lower_bound_bytes"] == 2048 and r["arena_bytes"] == 2048
    assert r["naive_bytes"] == 11 * 1024


def test_elementwise_chain_runs_in_place_in_one_block():
    g = Graph()
    with g:
        x = gc.placeholder("x", (64,))
        h = x
        for _ in range(6):
            h = gc.tanh(gc.neg(h))
    plan = compile(g)
    assert plan.arena_bytes == 256
    offsets = {v.offset for v in plan.values if v.storage == pb.ARENA}
    assert offsets == {0}
    assert all(not s.frees for s in plan.steps)        # every dying input was taken over in place


def test_diamond_optimal_arena():
    # a (256 B) feeds b and c; d = b + c.  Peak: a, b, c live together at step 1 → 768.
    g = Graph()
    with g:
        x = gc.placeholder("x", (64,))
        a = gc.exp(x, name="a")
        b = gc.matmul(gc.reshape(a, (8, 8)), gc.reshape(a, (8, 8)), name="b")
        c = gc.matmul(gc.reshape(a, (8, 8)), gc.reshape(a, (8, 8)), name="c")
        gc.add(b, c, name="d")
    plan = compile(g, fetches=["d"])
    r = memory_report(plan)
    assert r["lower_bound_bytes"] == 768 and plan.arena_bytes == 768


def test_plan_memory_best_fit_packing_exact():
    # Three 64-byte blocks, two overlapping in time, the third reusing a gap; one big one after.
    offsets, total, _ = plan_memory([("a", 64, 0, 1), ("b", 64, 1, 2), ("c", 64, 2, 3), ("d", 128, 3, 4)])
    assert total == 192
    assert offsets["a"] != offsets["b"] and offsets["b"] != offsets["c"]
    assert offsets["d"] + 128 <= 192 and not (offsets["c"] < offsets["d"] + 128 and offsets["d"] < offsets["c"] + 64)
    assert plan_memory([]) == ({}, 0, "size")


def test_fetched_values_stay_live_and_feeds_are_reused():
    g = Graph()
    with g:
        x = gc.placeholder("x", (16, 16))
        a = gc.matmul(x, x, name="a")
        b = gc.matmul(a, a, name="b")
        gc.matmul(b, b, name="c")
    plan = compile(g, fetches=["a", "c"])
    live = verify_plan(plan)
    idx = plan.value_index("a")
    assert live[idx] == (0, 2)
    assert all(plan.value_index("a") not in s.frees for s in plan.steps)
    # x dies at step 0 and its bytes are reused by c.
    assert plan.proto.steps[0].frees == [plan.value_index("x")]


# -- in-place persistent updates -----------------------------------------------------------------

def _inplace_op():
    """The registry's ``assign(var, value) -> var``: output 0 overwrites input 0."""
    assert gc.registry.get_op("assign").inplace == {0: 0}
    return "assign"


def test_inplace_update_writes_persistent_storage_after_every_reader():
    op = _inplace_op()
    g = Graph()
    with g:
        x = gc.placeholder("x", (4,))
        w = gc.variable("w", init=np.arange(4, dtype=np.float32))
        (new_w,) = g.add_node(op, [w, x * 2.0], name="update")
        # Stored after the update, but reads the old w: must run before it.
        late = gc.add(gc.reshape(w, (2, 2)), 1.0, name="late_reader")
    plan = compiled(g, fetches=[late, new_w])
    steps = [s.node for s in plan.steps]
    assert steps.index("late_reader") < steps.index("update")
    v = plan.values[plan.value_index("update")]
    assert v.storage == pb.PERSISTENT and v.index == plan.values[plan.value_index("w")].index
    out = simulate(plan, {"x": np.ones(4, np.float32)})
    np.testing.assert_array_equal(out["late_reader"], np.arange(4, dtype=np.float32).reshape(2, 2) + 1)
    np.testing.assert_array_equal(out["update"], np.full(4, 2.0, np.float32))
    # The verifier catches an order that reads the old version after the overwrite.
    bad = gc.Plan(type(plan.proto).FromString(plan.proto.SerializeToString()))
    a, b = steps.index("late_reader"), steps.index("update")
    sa, sb = pb.PlanStep(), pb.PlanStep()
    sa.CopyFrom(bad.proto.steps[a])
    sb.CopyFrom(bad.proto.steps[b])
    bad.proto.steps[a].CopyFrom(sb)
    bad.proto.steps[b].CopyFrom(sa)
    for s in bad.proto.steps:
        del s.frees[:]
    with pytest.raises(PlanVerificationError, match="overwrote"):
        verify_plan(bad)


def test_inplace_update_of_an_arena_value_is_refused():
    op = _inplace_op()
    g = Graph()
    with g:
        x = gc.placeholder("x", (4,))
        g.add_node(op, [gc.relu(x), x], name="bad_update")
    with pytest.raises(CompileError, match="persistent"):
        compile(g)


def test_inplace_cycle_is_a_compile_error():
    op = _inplace_op()
    g = Graph()
    with g:
        w = gc.variable("w", init=np.zeros(4, np.float32))
        (new_w,) = g.add_node(op, [w, gc.constant(np.ones(4, np.float32))], name="update")
        gc.add(w, new_w, name="reads_both")   # must run before the update and after it
    with pytest.raises(CompileError, match="cycle"):
        compile(g, fetches=["reads_both"])


# -- the verifier ------------------------------------------------------------------------------------


def _mlp_plan():
    g = Graph()
    with g:
        x = gc.placeholder("x", (8, 16))
        w = gc.variable("w", (16, 16), init=gc.init.xavier_uniform(seed=0))
        h = gc.relu(x @ w)
        gc.sum(gc.tanh(h @ w), name="out")
    return compile(g), g


def test_verifier_rejects_overlap_read_before_write_and_bad_frees():
    plan, _ = _mlp_plan()
    verify_plan(plan)
    p = plan.proto

    def broken(mutate):
        q = pb.Plan.FromString(p.SerializeToString())
        mutate(q)
        return q

    # Two values live at once put at the same offset.
    a = [i for i, v in enumerate(p.values) if v.storage == pb.ARENA and v.name == "matmul"][0]
    q = broken(lambda q: setattr(q.values[a], "offset", q.values[q.feeds[0]].offset))
    with pytest.raises(PlanVerificationError, match="overlap"):
        verify_plan(q)
    # A step that reads a value no step wrote yet.
    q = broken(lambda q: q.steps[0].inputs.__setitem__(0, q.steps[-1].outputs[0]))
    with pytest.raises(PlanVerificationError, match="before any step writes it"):
        verify_plan(q)
    # Freeing a value that a later step still reads.
    q = broken(lambda q: q.steps[0].frees.append(q.steps[0].outputs[0]))
    with pytest.raises(PlanVerificationError, match="frees"):
        verify_plan(q)
    # An offset outside the arena.
    q = broken(lambda q: setattr(q, "arena_bytes", 64))
    with pytest.raises(PlanVerificationError, match="outside the arena"):
        verify_plan(q)


# -- property: the planned run equals the reference interpreter ----------------------------------

_UNARY = ["relu", "neg", "exp", "tanh", "sigmoid"]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(_UNARY + ["add", "mul", "matmul", "reshape", "sum", "concat"]),
                          st.integers(0, 1000), st.integers(0, 1000)), min_size=1, max_size=18),
       st.integers(1, 3))
def test_property_planned_run_equals_reference(ops, nfetch):
    g = Graph()
    with g:
        vals = [gc.placeholder("x", (4, 4)), gc.placeholder("y", (4, 4))]
        for op, a, b in ops:
            u, v = vals[a % len(vals)], vals[b % len(vals)]
            if op in _UNARY:
                vals.append(getattr(gc, op)(u))
            elif op == "reshape":
                vals.append(gc.reshape(gc.reshape(u, (-1,)), (4, 4)))
            elif op == "sum":
                vals.append(gc.add(u, gc.sum(v, axis=1, keepdims=True)))
            elif op == "concat":
                vals.append(gc.split(gc.concat([u, v], axis=0), [4, 4], axis=0)[a % 2])
            else:
                vals.append(getattr(gc, op)(u, v) if op != "matmul" else gc.tanh(gc.matmul(u, v)))
    fetches = list(dict.fromkeys(t.name for t in vals[-nfetch:]))
    rng = np.random.default_rng(len(ops))
    feeds = {"x": rng.standard_normal((4, 4)).astype(np.float32),
             "y": rng.standard_normal((4, 4)).astype(np.float32)}
    plan = compiled(g, fetches=fetches)
    verify_plan(plan)
    got = simulate(plan, feeds)
    want = reference.evaluate(g, feeds, fetches)
    for k in fetches:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-6, atol=1e-6)
    check_lower_bound(plan)
    assert plan.arena_bytes <= sum(-(-v.nbytes // 64) * 64 for v in plan.values if v.storage == pb.ARENA)


# -- memory-aware scheduling -----------------------------------------------------------------------


def test_memory_aware_schedule_lowers_the_peak():
    # Stored order builds every big branch first, then reduces them; the memory-aware order
    # reduces each branch as soon as it is built.
    g = Graph()
    with g:
        x = gc.placeholder("x", (4, 256))
        big = [gc.exp(gc.mul(x, float(k + 1)), name=f"big{k}") for k in range(6)]
        small = [gc.sum(b, name=f"s{k}") for k, b in enumerate(big)]
        total = small[0]
        for s in small[1:]:
            total = total + s
    g.set_outputs([total])
    graph = g   # stored order: not scheduled yet
    from graphc.compiler._memory import MemoryModel, peak_live_bytes
    model = MemoryModel(graph)
    stored = peak_live_bytes(graph, model, schedule_order(graph, "stored"))
    memory = peak_live_bytes(graph, model, schedule_order(graph, "memory"))
    assert memory < stored
    sched = schedule_nodes(graph)
    assert peak_live_bytes(sched, MemoryModel(sched), sched.nodes) == memory
    assert [n.name for n in schedule_nodes(graph).nodes] == [n.name for n in sched.nodes]


def test_planning_a_10000_node_graph_is_fast():
    g = Graph()
    with g:
        x = gc.placeholder("x", (8, 8))
        h = x
        for k in range(10000):
            h = gc.matmul(h, x) if k % 2 else gc.tanh(h)
            if k % 100 == 0:
                h = h + gc.relu(h)
    t = time.perf_counter()
    plan = compile(g)
    elapsed = time.perf_counter() - t
    assert len(plan.steps) >= 10000 and elapsed < 30
    assert plan.arena_bytes <= 4 * 256


# -- recompute under a budget ------------------------------------------------------------------------


def _deep_training_graph(depth=12, width=64, batch=32):
    g = Graph()
    with g:
        x = gc.placeholder("x", (batch, width))
        y = gc.placeholder("y", (batch,), dtype="int64")
        h, ws = x, []
        for k in range(depth):
            w = gc.variable(f"w{k}", (width, width), init=gc.init.xavier_uniform(seed=k))
            ws.append(w)
            h = gc.relu(h @ w)
        loss = gc.softmax_cross_entropy(h, y)
        grads = gc.gradients(loss, ws)
        with g.building("optimizer"):
            total = gc.sum(grads[0] * grads[0])
            for d in grads[1:]:
                total = total + gc.sum(d * d)
    g.set_outputs([loss, total])
    return g


def test_recompute_fits_the_budget_and_keeps_results():
    g = _deep_training_graph()
    base = lower_graph(g, {"x": (32, 64)})
    arena, _ = measure(base)
    budget = arena * 7 // 10
    out = recompute_for_budget(base, budget)
    assert any(n.role == "recompute" for n in out.nodes)
    assert all(n.name.endswith("/recompute") or "/recompute_" in n.name for n in out.nodes if n.role == "recompute")
    plan = compiled(out)
    assert plan.arena_bytes <= budget
    check_lower_bound(plan)
    assert any(s.role == pb.RECOMPUTE for s in plan.steps)
    rng = np.random.default_rng(0)
    feeds = {"x": rng.standard_normal((32, 64)).astype(np.float32), "y": rng.integers(0, 64, 32)}
    want = reference.evaluate(g, feeds, g.outputs)
    got = simulate(plan, feeds)
    for k in g.outputs:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-5)
    # Gradient nodes read the copies, not the dropped forward values.
    assert recompute_for_budget(base, None) is base and recompute_for_budget(base, arena) is base


def test_recompute_impossible_budget_names_budget_peak_and_values():
    base = lower_graph(_deep_training_graph(depth=4))
    with pytest.raises(CompileError, match=r"budget of 1000 bytes.*smallest arena reached is \d+ bytes.*live at"):
        recompute_for_budget(base, 1000)


def test_parse_bytes():
    assert parse_bytes(4096) == 4096 and parse_bytes("64MB") == 64 * 10**6 and parse_bytes("1KiB") == 1024
    with pytest.raises(CompileError):
        parse_bytes("lots")


def test_memory_report_splits_kinds_and_persistent():
    plan, _ = _mlp_plan()
    r = memory_report(plan)
    assert r["persistent_bytes"] == 16 * 16 * 4 and r["persistent_bytes_by_kind"] == {"variable": 1024}
    assert set(r["bytes_by_kind"]) == {"input", "activation"}
    assert r["arena_bytes"] <= 1.1 * r["lower_bound_bytes"]
    assert plan.proto.memory.persistent_bytes_by_kind["variable"] == 1024


def test_gradient_role_by_hand_and_session_if_available():
    g = Graph()
    with g:
        x = gc.placeholder("x", (4, 4))
        a = gc.tanh(x)
        (d,) = g.add_node("mul", [a, a], role=GRADIENT)
    plan = compiled(g, fetches=[d])
    out = simulate(plan, {"x": np.eye(4, dtype=np.float32)})
    np.testing.assert_allclose(out[d.name], np.tanh(np.eye(4)) ** 2, rtol=1e-6)


def test_training_plan_arena_is_at_least_the_lower_bound():
    # The digits MLP training step (SGD with momentum): its arena once came out below the
    # "lower bound", which counted an in-place output and the input it took over twice.
    g = Graph()
    with g:
        x = gc.placeholder("x", (64, 64))
        y = gc.placeholder("y", (64,), dtype="int64")
        w1 = gc.variable("w1", (64, 128), init=gc.init.kaiming_uniform(seed=0))
        b1 = gc.variable("b1", (128,))
        w2 = gc.variable("w2", (128, 10), init=gc.init.xavier_uniform(seed=1))
        b2 = gc.variable("b2", (10,))
        loss = gc.softmax_cross_entropy(gc.relu(x @ w1 + b1) @ w2 + b2, y)
        gc.optim.SGD(lr=0.1, momentum=0.9).minimize(loss)
    plan = compile(g)
    r = check_lower_bound(plan)
    assert r["arena_bytes"] <= 1.1 * r["lower_bound_bytes"]
    assert plan.proto.memory.lower_bound_bytes == r["lower_bound_bytes"]
