"""The compiler pipeline: each pass on its own (before/after structure), shape binding
errors, buffers and plan conventions, determinism, and plan files (round trip and one
test per class of malformed file)."""

import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import graphc as gc
from graphc import reference, serialize
from graphc._proto import graphc_pb2 as pb
from graphc.compiler import compile as _compile
from graphc.compiler import lower_graph
from graphc.compiler.assign_buffers import ALIGNMENT, ARENA, CONSTANT, PERSISTENT, VIEW, assign_buffers
from graphc.compiler.bind_shapes import bind_shapes
from graphc.compiler.emit_plan import emit_plan
from graphc.compiler.infer_shapes import infer_shapes
from graphc.compiler.prune_graph import prune_graph
from graphc.compiler.schedule_nodes import schedule_nodes
from graphc.compiler.validate_graph import validate_graph
from graphc.compiler.verify_plan import verify_plan
from graphc.errors import CompileError, ModelFormatError, ShapeError
from graphc.graph import GRADIENT, OPTIMIZER, Graph, Node, is_static
from graphc.plan import Plan, load_plan, memory_report, plan_from_bytes, validate_plan

# -- helpers ------------------------------------------------------------------------------


def compile(*args, **kwargs):  # noqa: A001
    """These tests name the values and steps of unfused plans; tests/test_fusion.py fuses."""
    kwargs.setdefault("fuse", False)
    return _compile(*args, **kwargs)


def mlp():
    """x (batch, 4) → relu(x @ w + b) → reshape → softmax; plus an unused branch."""
    g = Graph()
    with g:
        x = gc.placeholder("x", ("batch", 4))
        gc.placeholder("unused_in", (3,))
        w = gc.variable("w", (4, 3), init=gc.init.xavier_uniform(seed=0))
        gc.variable("unused_var", (2,), init=gc.init.ones())
        b = gc.constant(np.array([0.5, -0.5, 0.25], np.float32), name="b")
        h = gc.relu(gc.matmul(x, w, name="fc") + b)
        flat = gc.reshape(h, (-1,), name="flat")
        out = gc.softmax(flat, axis=0, name="out")
        gc.exp(x, name="dead")  # not fetched when fetches=[out]
    return g, out


def check_graph(graph):
    """The graph checker run after every pass: structure valid, types consistent."""
    validate_graph(graph)
    for node in graph.nodes:
        for o in node.outputs:
            assert graph.tensor(o).producer is node


def structure(graph):
    return ([(p.name, p.shape) for p in graph.inputs], [v.name for v in graph.variables],
            [(n.name, n.op, tuple(n.inputs), tuple(n.outputs)) for n in graph.nodes], list(graph.outputs))


def stages(model, shapes=None, fetches=None):
    seen = []
    final = lower_graph(model, shapes, fetches, on_pass=lambda name, g: seen.append((name, g)))
    return final, dict(seen)


# -- validate_graph -------------------------------------------------------------------------


def test_validate_graph_returns_a_good_graph_unchanged():
    g, _ = mlp()
    assert validate_graph(g) is g


def test_validate_graph_rejects_unknown_op():
    g = Graph()
    with g:
        x = gc.placeholder("x", (2,))
    g.insert_node(Node("bad", "no_such_op", [x.name], ["bad"], {}), [("float32", (2,))])
    with pytest.raises(CompileError, match="unknown op 'no_such_op'"):
        validate_graph(g)


def test_validate_graph_rejects_dangling_input_and_cycle():
    g = Graph()
    with g:
        gc.placeholder("x", (2,))
    g.insert_node(Node("r", "relu", ["nowhere"], ["r"], {}), [("float32", (2,))])
    with pytest.raises(CompileError, match="nowhere"):
        validate_graph(g)

    g = Graph()
    g.insert_node(Node("a", "relu", ["b"], ["a"], {}), [("float32", (2,))])
    g.insert_node(Node("b", "relu", ["a"], ["b"], {}), [("float32", (2,))])
    with pytest.raises(CompileError, match="cycle"):
        validate_graph(g)


def test_validate_graph_rejects_duplicates_and_bad_arity():
    g = Graph()
    with g:
        x = gc.placeholder("x", (2,))
    g.nodes.append(Node("x", "relu", [x.name], ["x"], {}))  # bypasses the builder's checks
    with pytest.raises(CompileError, match="duplicate name 'x'"):
        validate_graph(g)

    g = Graph()
    with g:
        x = gc.placeholder("x", (2,))
    g.insert_node(Node("r", "relu", [x.name, x.name], ["r"], {}), [("float32", (2,))])
    with pytest.raises(CompileError, match="expects 1 inputs, got 2"):
        validate_graph(g)


# -- bind_shapes ----------------------------------------------------------------------------


def test_bind_shapes_makes_placeholders_concrete_and_leaves_input_alone():
    g = Graph()
    with g:
        x = gc.placeholder("x", ("batch", None, 3))
        y = gc.placeholder("y", ("batch",), dtype="int64")
        z = gc.placeholder("z", (None, None))
        gc.relu(x)
    out = bind_shapes(g, {"x": (5, 2, 3), "z": (7, 0)})
    check_graph(out)
    assert [p.shape for p in out.inputs] == [(5, 2, 3), (5,), (7, 0)]  # y takes batch from x
    assert out.tensor("relu").shape == (5, None, 3)                    # the symbol is substituted
    assert [p.shape for p in g.inputs] == [("batch", None, 3), ("batch",), (None, None)]
    assert x.shape == ("batch", None, 3) and y.dtype == "int64" and z.shape == (None, None)


def test_bind_shapes_accepts_list_and_numpy_ints():
    g = Graph()
    with g:
        gc.placeholder("x", (None, 4))
    out = bind_shapes(g, {"x": [np.int64(2), 4]})
    assert out.inputs[0].shape == (2, 4)


@pytest.mark.parametrize("shapes, message", [
    ({}, r"placeholder 'x' \(batch, 4\) has an unbound symbol 'batch' at axis 0"),
    ({"x": (2, 4, 1)}, r"placeholder 'x' has rank 2 .* got a shape of rank 3"),
    ({"x": (2, 5)}, r"placeholder 'x' has fixed dim 4 at axis 1 .* got 5"),
    ({"x": (2, 4), "nope": (1,)}, r"unknown placeholder\(s\) \['nope'\]; the graph's placeholders are: x .*, y "),
    ({"x": (2, 4), "y": (3, 2)}, r"symbol 'batch' is bound to 2 by placeholder 'x' but to 3 by placeholder 'y'"),
    ({"x": (2, -4)}, r"tuple of ints >= 0"),
    ({"x": "2,4"}, r"tuple of ints >= 0"),
])
def test_bind_shapes_errors(shapes, message):
    g = Graph()
    with g:
        gc.placeholder("x", ("batch", 4))
        gc.placeholder("y", ("batch", None))
    with pytest.raises(CompileError, match=message):
        bind_shapes(g, shapes)


def test_bind_shapes_unbound_anonymous_dim_names_the_placeholder():
    g = Graph()
    with g:
        gc.placeholder("x", ("batch", 4))
        gc.placeholder("mask", ("batch", None))
    with pytest.raises(CompileError, match=r"placeholder 'mask' .* unbound anonymous dim at axis 1"):
        bind_shapes(g, {"x": (2, 4)})


def test_anonymous_dims_are_independent():
    g = Graph()
    with g:
        gc.placeholder("a", (None, None))
        gc.placeholder("b", (None,))
    out = bind_shapes(g, {"a": (2, 3), "b": (9,)})
    assert [p.shape for p in out.inputs] == [(2, 3), (9,)]


# -- infer_shapes ---------------------------------------------------------------------------


def test_infer_shapes_makes_every_value_concrete_and_matches_the_reference():
    g, out = mlp()
    bound = bind_shapes(g, {"x": (6, 4), "unused_in": (3,)})
    concrete = infer_shapes(bound)
    check_graph(concrete)
    assert structure(concrete)[2] == structure(g)[2]
    for name, t in concrete.values.items():
        assert is_static(t.shape), name
    feeds = {"x": np.random.default_rng(1).standard_normal((6, 4)).astype(np.float32)}
    got = reference.evaluate(concrete, feeds, [n for n in concrete.values if n not in ("unused_in",)])
    for name, arr in got.items():
        assert arr.shape == concrete.tensor(name).shape, name
        assert arr.dtype.name == concrete.tensor(name).dtype, name
    assert concrete.tensor(out.name).shape == (18,)


def test_infer_shapes_surfaces_the_nodes_shape_error_with_file_and_line():
    g = Graph()
    with g:
        x = gc.placeholder("x", ("a", 4))
        y = gc.placeholder("y", ("b", 4))
        gc.add(x, y, name="sum_xy")
    with pytest.raises(ShapeError, match=r"add\(name=sum_xy\).*\(2, 4\).*\(3, 4\).*test_compiler.py:\d+"):
        compile(g, shapes={"x": (2, 4), "y": (3, 4)})


def test_infer_shapes_requires_bound_placeholders():
    g = Graph()
    with g:
        gc.relu(gc.placeholder("x", (None,)))
    with pytest.raises(CompileError, match="run bind_shapes first"):
        infer_shapes(g)


# -- prune_graph ----------------------------------------------------------------------------


def test_prune_graph_keeps_only_what_the_fetches_need():
    g, out = mlp()
    concrete = infer_shapes(bind_shapes(g, {"x": (2, 4), "unused_in": (3,)}))
    pruned = prune_graph(concrete, [out])
    check_graph(pruned)
    assert [p.name for p in pruned.inputs] == ["x"]
    assert [v.name for v in pruned.variables] == ["w"]
    assert [n.name for n in pruned.nodes] == ["b", "fc", "add", "relu", "flat", "out"]
    assert pruned.outputs == ["out"]


def test_prune_graph_default_fetches_and_dedup():
    g, out = mlp()
    concrete = infer_shapes(bind_shapes(g, {"x": (2, 4), "unused_in": (3,)}))
    assert prune_graph(concrete).outputs == ["out", "dead"]  # every unconsumed node output
    assert prune_graph(concrete, ["relu", out, "relu"]).outputs == ["relu", "out"]
    assert prune_graph(concrete, "dead").outputs == ["dead"]


def test_prune_graph_errors():
    g, _ = mlp()
    with pytest.raises(CompileError, match=r"fetches \['nope'\] are not values"):
        prune_graph(g, ["nope"])
    with pytest.raises(CompileError, match="nothing to fetch"):
        prune_graph(g, [])
    with pytest.raises(CompileError, match="value name or a Tensor"):
        prune_graph(g, [3])


def test_compile_fetching_a_placeholder_or_variable():
    g, _ = mlp()
    plan = compile(g, shapes={"x": (2, 4)}, fetches=["x", "w"])
    assert plan.fetches == ["x", "w"] and plan.feeds == ["x"] and len(plan.steps) == 0


# -- schedule_nodes -------------------------------------------------------------------------


def test_schedule_nodes_orders_topologically_and_deterministically():
    src, _ = mlp()
    shuffled = Graph()
    for ph in src.inputs:
        shuffled.add_placeholder(ph.name, ph.shape, ph.dtype)
    for var in src.variables:
        shuffled.add_variable(var.name, var.init_value)
    for node in reversed(src.nodes):  # stored in reverse: consumers before producers
        shuffled.insert_node(Node(node.name, node.op, node.inputs, node.outputs, node.attrs),
                             [(src.tensor(o).dtype, src.tensor(o).shape) for o in node.outputs])
    first = schedule_nodes(shuffled)
    check_graph(first)
    position = {n.name: i for i, n in enumerate(first.nodes)}
    producer = {o: n.name for n in first.nodes for o in n.outputs}
    for n in first.nodes:
        for i in n.inputs:
            if i in producer:
                assert position[producer[i]] < position[n.name]
    assert [n.name for n in schedule_nodes(shuffled).nodes] == [n.name for n in first.nodes]
    assert sorted(position) == sorted(n.name for n in src.nodes)


# -- the whole pipeline ---------------------------------------------------------------------


def test_every_stage_passes_the_checker_and_keeps_outputs_unchanged():
    g, out = mlp()
    final, seen = stages(g, {"x": (3, 4), "unused_in": (3,)}, [out, "relu"])
    assert list(seen) == ["validate_graph", "prune_inputs", "bind_shapes", "infer_shapes", "select_mode",
                          "append_rng_increment", "expand_composites",
                          "append_gradients", "append_optimizer", "expand_gradient_composites",
                          "recompute_for_budget", "prune_graph", "fuse", "schedule_nodes"]
    for graph in seen.values():
        check_graph(graph)
    feeds = {"x": np.random.default_rng(2).standard_normal((3, 4)).astype(np.float32)}
    want = reference.evaluate(g, feeds, ["out", "relu"])
    got = reference.evaluate(final, feeds, ["out", "relu"])
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])


def test_compile_rejects_bad_target_and_model():
    g, _ = mlp()
    with pytest.raises(CompileError, match="unknown target 'tpu'"):
        compile(g, shapes={"x": (1, 4)}, target="tpu")
    with pytest.raises(CompileError, match="a Graph or a path"):
        compile(42)


# -- assign_buffers -------------------------------------------------------------------------


def scheduled(g, shapes, fetches=None):
    # one node per step: these tests name the unfused graph's values (tests/test_fusion.py fuses)
    return lower_graph(g, shapes, fetches, fuse=False)


def test_assign_buffers_storage_rules():
    g, out = mlp()
    graph = scheduled(g, {"x": (2, 4)}, [out])
    buffers = assign_buffers(graph)
    b = buffers.buffers
    assert list(b) == ["x", "w", "b", "fc", "add", "relu", "flat", "out"]
    assert (b["x"].storage, b["x"].kind) == (ARENA, "input")
    assert (b["w"].storage, b["w"].index, buffers.persistent) == (PERSISTENT, 0, ["w"])
    assert (b["b"].storage, b["b"].index, buffers.constants) == (CONSTANT, 0, ["b"])
    assert (b["flat"].storage, b["flat"].alias_of, b["flat"].dims) == (VIEW, "relu", (6,))
    assert all(b[n].kind == "activation" for n in ("fc", "add", "relu", "out"))
    assert b["fc"].nbytes == 2 * 3 * 4


def test_assign_buffers_offsets_are_aligned_and_disjoint():
    g = Graph()
    with g:
        x = gc.placeholder("x", (3,))
        m = gc.placeholder("m", (5,), dtype="bool")
        e = gc.placeholder("e", (0, 4))
        gc.relu(x)
        gc.logical_not(m)
        gc.relu(e, name="empty_relu")
        gc.cast(x, to="int64")
    buffers = assign_buffers(scheduled(g, {}))
    live = []
    for buf in buffers.buffers.values():
        assert buf.offset % ALIGNMENT == 0
        assert buf.offset + buf.nbytes <= buffers.arena_bytes
        if buf.nbytes:
            live.append(buf)
    # Values live at the same time are disjoint, except an output written in place over its dying input.
    for a in live:
        for b in live:
            if a is not b and a.start <= b.end and b.start <= a.end and b.inplace_of != a.name != "" \
                    and a.inplace_of != b.name:
                assert a.offset + a.nbytes <= b.offset or b.offset + b.nbytes <= a.offset, (a, b)
    assert buffers.buffers["logical_not"].inplace_of == "m"
    b = buffers.buffers
    assert b["m"].nbytes == 5 and b["logical_not"].nbytes == 5      # bool: one byte
    assert b["e"].nbytes == 0 and b["empty_relu"].nbytes == 0
    assert b["cast"].nbytes == 24


def test_view_chains_alias_the_root_and_get_no_step():
    g = Graph()
    with g:
        x = gc.placeholder("x", ("n", 4))
        r = gc.relu(x)
        v = gc.squeeze(gc.expand_dims(gc.reshape(r, (2, -1)), 0), 0)
        s = gc.stop_gradient(v)
        xv = gc.reshape(x, (-1,), name="x_flat")
        out = gc.add(s, gc.constant(np.float32(1.0)), name="out")
    plan = compile(g, shapes={"x": (4, 4)}, fetches=[out, xv])
    vals = plan.values
    relu_i = plan.value_index("relu")
    views = [v for v in vals if v.storage == pb.VIEW]
    assert {v.name for v in views} == {"reshape", "expand_dims", "squeeze", "stop_gradient", "x_flat"}
    for v in views:
        want = plan.value_index("x") if v.name == "x_flat" else relu_i
        assert v.alias_of == want and v.offset == vals[want].offset and v.nbytes == vals[want].nbytes
    assert vals[plan.value_index("reshape")].dims == [2, 8]
    assert [s.op for s in plan.steps] == ["relu", "add"]
    add = plan.steps[1]
    assert list(add.inputs) == [plan.value_index("stop_gradient"), plan.value_index("constant")]


def test_constants_become_constant_storage_with_inline_data():
    g = Graph()
    with g:
        x = gc.placeholder("x", (2, 3), dtype="int32")
        k = gc.constant(np.arange(6, dtype=np.int32).reshape(2, 3), name="k")
        gc.mul(x, k, name="out")
    plan = compile(g)
    v = plan.values[plan.value_index("k")]
    assert v.storage == pb.CONSTANT and v.kind == "constant"
    t = plan.proto.constants[v.index]
    assert list(t.dims) == [2, 3] and t.dtype == pb.INT32
    np.testing.assert_array_equal(np.frombuffer(t.raw_data, "<i4").reshape(2, 3), np.arange(6).reshape(2, 3))
    assert [s.op for s in plan.steps] == ["mul"]


def test_roles_set_the_value_kind_and_step_role():
    g = Graph()
    with g:
        x = gc.placeholder("x", (2,))
        gc.relu(x, name="fwd")
    (gr,) = g.add_node("neg", [g.tensor("fwd")], name="grad_node", role=GRADIENT)
    (op,) = g.add_node("neg", [gr], name="opt_node", role=OPTIMIZER)
    plan = compile(g, fetches=["fwd", op], fuse=False)
    kinds = {v.name: v.kind for v in plan.values}
    assert kinds == {"x": "input", "fwd": "activation", "grad_node": "gradient", "opt_node": "optimizer"}
    assert [s.role for s in plan.steps] == [pb.FORWARD, pb.GRADIENT, pb.OPTIMIZER]
    assert plan.memory_report()["bytes_by_kind"] == {"activation": 8, "gradient": 8, "input": 8, "optimizer": 8}


# -- emit_plan ------------------------------------------------------------------------------


def test_emit_plan_header_feeds_fetches_persistent():
    g, out = mlp()
    g.metadata["author"] = "test"
    with g:
        loss = gc.mean(out, name="loss")
    g.training = gc.optim.SGD(lr=0.1).to_spec(loss.name, ["w"])
    plan = compile(g, shapes={"x": (2, 4), "unused_in": (3,)}, fetches=[out, "dead"], target="cuda")
    p = plan.proto
    assert (p.format_version, p.min_consumer_version, p.producer_name, p.target) == (1, 1, "graphc", "cuda")
    assert plan.feeds == ["x"] and plan.fetches == ["out", "dead"]
    assert [v.name for v in p.persistent] == ["w"]
    np.testing.assert_array_equal(np.frombuffer(p.persistent[0].init.raw_data, "<f4").reshape(4, 3),
                                  g.variables[0].init_value)
    assert p.persistent[0].trainable and p.persistent[0].provenance.file.endswith("test_compiler.py")
    assert p.training.loss == "loss" and list(p.training.var_list) == ["w"]
    assert [s.op for s in p.steps if s.role == pb.OPTIMIZER] == ["sgd_update"]
    assert dict(p.metadata) == {"author": "test"}
    for step in p.steps:
        assert step.provenance.file.endswith("test_compiler.py") and step.provenance.line > 0
    validate_plan(p)


def test_feeds_follow_placeholder_order():
    g = Graph()
    with g:
        b = gc.placeholder("b", (2,))
        a = gc.placeholder("a", (2,))
        gc.sub(a, b)
    assert compile(g).feeds == ["b", "a"]


def test_step_attrs_are_encoded_as_serialize_encodes_them():
    g = Graph()
    with g:
        x = gc.placeholder("x", (4, 6))
        parts = gc.split(x, [2, 4], axis=1)
        gc.sum(parts[1], axis=(0,), keepdims=True, name="s")
        gc.cast(parts[0], to="int32", name="c")
        gc.pow(x, exponent=2.0, name="p")
    model = serialize.model_to_proto(g)
    plan = compile(g)
    for step in plan.steps:
        node = next(n for n in model.graph.nodes if n.name == step.node)
        assert dict(step.attrs) == dict(node.attrs), step.node


def test_reshape_attr_is_the_resolved_output_shape():
    g = Graph()
    with g:
        x = gc.placeholder("x", ("n", 6))
        gc.relu(gc.reshape(x, (-1, 3), name="r"), name="out")
    graph = lower_graph(g, {"x": (4, 6)})
    buffers = assign_buffers(graph)
    # The view gets no step; its dims carry the resolved shape.
    plan = emit_plan(graph, buffers)
    assert list(plan.values[[v.name for v in plan.values].index("r")].dims) == [8, 3]


def test_memory_report_liveness():
    g = Graph()
    with g:
        x = gc.placeholder("x", (16,))            # 64 bytes
        a = gc.relu(x, name="a")                 # step 0
        b = gc.neg(a, name="b")                  # step 1
        c = gc.exp(b, name="c")                  # step 2 (b dies here)
        gc.add(c, a, name="d")                   # step 3 (a, c die here)
    plan = compile(g, fetches=["d"], fuse=False)
    report = memory_report(plan)
    # x dies after step 0; a lives 0..3, b 1..2, c 2..3, d 3..3.  In place: a takes over x at
    # step 0, c over b at step 2, d over c at step 3; each such pair counts once.
    assert report["step_live_bytes"] == [64, 128, 128, 128]
    assert report["lower_bound_bytes"] == 128 and report["peak_step"] == 1
    assert report["peak_values"] == ["a", "b"]
    # Planned: a over x and c over b in place, then d over c: two 64-byte blocks.
    assert report["naive_bytes"] == 5 * 64 and report["arena_bytes"] == 2 * 64
    assert report["arena_bytes"] >= report["lower_bound_bytes"]
    assert report["bytes_by_kind"] == {"activation": 256, "input": 64}
    assert report["persistent_bytes"] == 0
    m = plan.proto.memory
    assert (m.lower_bound_bytes, list(m.step_live_bytes), m.peak_step) == (128, [64, 128, 128, 128], 1)
    assert list(m.peak_values) == ["a", "b"] and dict(m.bytes_by_kind) == report["bytes_by_kind"]
    # A fetched value stays live to the last step (and x, fetched, is not taken over).
    assert memory_report(compile(g, fetches=["d", "x"], fuse=False))["step_live_bytes"] == [128, 192, 192, 192]
    # No steps: every arena value counts as live at once.
    report = memory_report(compile(g, fetches=["x"]))
    assert (report["step_live_bytes"], report["lower_bound_bytes"], report["peak_step"]) == ([], 64, -1)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["relu", "neg", "reshape", "expand_dims", "add", "stop_gradient"]),
                          st.integers(0, 7)), min_size=1, max_size=12),
       st.integers(0, 5), st.integers(1, 4), st.sampled_from(["float32", "float64", "int32", "int64"]))
def test_property_random_graphs_give_valid_plans(ops, n, m, dtype):
    """Random chains of elementwise ops and views: the plan validates, arena regions are
    the verifier accepts them, views point at non-view roots, and lower ≤ naive."""
    g = Graph()
    with g:
        vals = [gc.placeholder("x", ("n", m), dtype=dtype)]
        for op, pick in ops:
            a = vals[pick % len(vals)]
            if op == "add":
                b = vals[(pick * 7 + 3) % len(vals)]
                vals.append(gc.add(a, b) if a.shape == b.shape else gc.add(a, a))
            elif op == "reshape":
                vals.append(gc.reshape(a, (-1,)))
            elif op == "expand_dims":
                vals.append(gc.expand_dims(a, 0))
            else:
                vals.append(getattr(gc, op)(a))
    plan = compile(g, shapes={"x": (n, m)}, fetches=[vals[-1]])
    p = validate_plan(plan.proto)
    verify_plan(plan)   # values live at the same time are disjoint (issue 5: the memory planner)
    for v in p.values:
        if v.storage == pb.VIEW:
            assert p.values[v.alias_of].storage != pb.VIEW
    assert not any(p.values[o].storage == pb.VIEW for s in p.steps for o in s.outputs)
    r = memory_report(plan)
    assert r["lower_bound_bytes"] <= r["naive_bytes"] and r["arena_bytes"] <= max(r["naive_bytes"], 64) + 64 * 13
    assert plan_from_bytes(plan.to_bytes()) == plan


# -- determinism ----------------------------------------------------------------------------


def test_plans_are_byte_identical(tmp_path):
    plans = []
    for _ in range(2):
        g, out = mlp()
        plans.append(compile(g, shapes={"x": (8, 4), "unused_in": (3,)}))
    assert plans[0].to_bytes() == plans[1].to_bytes()
    plans[0].save(tmp_path / "a.plan")
    plans[1].save(tmp_path / "b.plan")
    assert (tmp_path / "a.plan").read_bytes() == (tmp_path / "b.plan").read_bytes()
    g, _ = mlp()
    assert compile(g, shapes={"x": (8, 4), "unused_in": (3,)}).to_bytes() == plans[0].to_bytes()


def test_compile_from_a_model_file_matches_compile_from_the_graph(tmp_path):
    g, out = mlp()
    g.save(tmp_path / "m.pb")
    from_file = compile(str(tmp_path / "m.pb"), shapes={"x": (8, 4), "unused_in": (3,)}, fetches=["out"])
    from_graph = compile(g, shapes={"x": (8, 4), "unused_in": (3,)}, fetches=[out])
    assert from_file.to_bytes() == from_graph.to_bytes()
    with pytest.raises(ModelFormatError):
        compile(str(tmp_path / "missing.pb"))


# -- plan files -----------------------------------------------------------------------------


@pytest.fixture
def good_plan():
    g, out = mlp()
    return compile(g, shapes={"x": (2, 4)}, fetches=[out], fuse=False)  # tests name the unfused steps


def test_save_load_round_trip(good_plan, tmp_path):
    path = tmp_path / "m.plan"
    good_plan.save(path)
    loaded = load_plan(path)
    assert loaded == good_plan and loaded.proto == good_plan.proto
    assert loaded.feeds == ["x"] and loaded.fetches == ["out"] and loaded.arena_bytes == good_plan.arena_bytes
    assert [s.op for s in loaded.steps] == ["matmul", "add", "relu", "softmax"]
    assert memory_report(str(path)) == memory_report(good_plan)
    assert "steps=4" in repr(loaded) and "feeds=['x']" in repr(loaded)
    assert os.listdir(tmp_path) == ["m.plan"]  # no temp file left behind
    good_plan.save(path)                       # overwrite in place
    assert load_plan(path) == good_plan


def write(tmp_path, data):
    path = tmp_path / "bad.plan"
    path.write_bytes(data)
    return path


def mutated(plan, mutate):
    proto = pb.Plan()
    proto.CopyFrom(plan.proto)
    mutate(proto)
    return proto.SerializeToString()


def test_load_plan_missing_empty_truncated_garbage(good_plan, tmp_path):
    with pytest.raises(ModelFormatError, match="cannot read plan"):
        load_plan(tmp_path / "nope.plan")
    with pytest.raises(ModelFormatError, match="not a graphc plan"):
        load_plan(write(tmp_path, b""))
    data = good_plan.to_bytes()
    for cut in (1, 7, len(data) // 3, len(data) // 2, len(data) - 1):
        with pytest.raises(ModelFormatError):
            load_plan(write(tmp_path, data[:cut]))
    rng = np.random.default_rng(0)
    for _ in range(20):
        with pytest.raises(ModelFormatError):
            load_plan(write(tmp_path, rng.integers(0, 256, 200, dtype=np.uint8).tobytes()))
    with pytest.raises(ModelFormatError):
        load_plan(write(tmp_path, b"\x08\x01\x10\x01" + b"PK\x03\x04 not a plan at all"))


def _set(field, value):
    def mutate(p):
        obj, attr = field(p)
        setattr(obj, attr, value)
    return mutate


@pytest.mark.parametrize("mutate, message", [
    (_set(lambda p: (p, "min_consumer_version"), 2), "needs a reader of plan format >= 2"),
    (_set(lambda p: (p, "format_version"), 0), "not a graphc plan"),
    (_set(lambda p: (p, "arena_bytes"), 64), "outside the arena"),
    (_set(lambda p: (p.values[3], "offset"), 10**9), "outside the arena"),
    (_set(lambda p: (p.values[3], "offset"), 65), "not 64-byte aligned"),
    (lambda p: p.steps[0].inputs.append(999), "names value 999"),
    (lambda p: p.steps[0].outputs.append(-1), "names value -1"),
    (lambda p: p.fetches.append(50), "fetches names value 50"),
    (lambda p: p.feeds.append(1), "feed 'w' must live in the arena"),
    (lambda p: p.values[0].dims.append(-2), "negative dimension"),
    (_set(lambda p: (p.values[0], "dtype"), 42), "invalid dtype code 42"),
    (_set(lambda p: (p.values[0], "dtype"), 0), "invalid dtype code 0"),
    (_set(lambda p: (p.values[0], "nbytes"), 7), "nbytes 7"),
    (_set(lambda p: (p.values[0], "storage"), 9), "invalid storage code 9"),
    (_set(lambda p: (p.values[1], "index"), 3), r"index 3 is outside persistent"),
    (_set(lambda p: (p.values[2], "index"), -1), r"index -1 is outside constants"),
    (_set(lambda p: (p.values[6], "alias_of"), 6), "is not another value"),
    (_set(lambda p: (p.values[6], "alias_of"), 0), "cannot alias"),
    (_set(lambda p: (p.values[1], "name"), "x"), "unique"),
    (_set(lambda p: (p.persistent[0].init, "raw_data"), b"\0" * 5), "raw_data has 5 bytes"),
    (lambda p: p.constants[0].dims.append(2), "raw_data has"),
    (_set(lambda p: (p.steps[0], "op"), ""), "has no op"),
    (lambda p: p.steps[0].outputs.append(2), "writes constant 'b', which is read-only"),
])
def test_load_plan_rejects_inconsistent_plans(good_plan, tmp_path, mutate, message):
    assert [v.name for v in good_plan.values][:7] == ["x", "w", "b", "fc", "add", "relu", "flat"]
    with pytest.raises(ModelFormatError, match=message):
        load_plan(write(tmp_path, mutated(good_plan, mutate)))
    with pytest.raises(ModelFormatError, match=message):
        plan_from_bytes(mutated(good_plan, mutate))


def test_plan_wraps_only_plan_protos():
    with pytest.raises(TypeError):
        Plan(pb.Model())


# -- compile time stays near-linear (issue 9): the fast paths give the same plans ----------------


def _reference_pack(blocks, order):
    """The best-fit packer as first written: per placement, filter every placed block live at
    the same time, sort the overlapping ones by offset, take the smallest aligned gap that fits."""
    placed, offsets, top = [], [0] * len(blocks), 0
    for i in order:
        _, size, a, b = blocks[i]
        if size == 0:
            continue
        ranges = sorted((lo, hi) for lo, hi, s, e in placed if s <= b and e >= a)
        best, reach, fit = None, 0, None
        for lo, hi in ranges:
            cand = (reach + ALIGNMENT - 1) // ALIGNMENT * ALIGNMENT
            if lo - cand >= size and (fit is None or lo - cand < fit):
                best, fit = cand, lo - cand
            reach = max(reach, hi)
        if best is None:
            best = (reach + ALIGNMENT - 1) // ALIGNMENT * ALIGNMENT
        offsets[i] = best
        placed.append((best, best + size, a, b))
        top = max(top, best + size)
    return offsets, (top + ALIGNMENT - 1) // ALIGNMENT * ALIGNMENT


def _pack_every_order(blocks):
    """plan_memory as first written: every order packed in full, the first smallest arena kept."""
    from graphc.compiler.plan_memory import ORDERS, _order

    best = None
    for how in ORDERS:
        offsets, total = _reference_pack(blocks, _order(blocks, how))
        if best is None or total < best[1]:
            best = (offsets, total, how)
    if best is None:
        return {}, 0, ORDERS[0]
    return {blocks[i][0]: best[0][i] for i in range(len(blocks))}, best[1], best[2]


_blocks = st.lists(st.tuples(st.sampled_from([0, 1, 63, 64, 65, 128, 200, 700]) | st.integers(0, 700),
                             st.integers(0, 12), st.integers(0, 6)), max_size=40).map(
    lambda rows: [(f"v{k}", size, start, start + length) for k, (size, start, length) in enumerate(rows)])


@settings(max_examples=300, deadline=None)
@given(_blocks)
def test_plan_memory_matches_the_reference_packer_on_every_order(blocks):
    from graphc.compiler.plan_memory import lower_bound, plan_memory

    offsets, total, how = plan_memory(blocks)
    assert (offsets, total, how) == _pack_every_order(blocks)
    assert total >= lower_bound(blocks)


def test_plan_memory_lower_bound_counts_aligned_bytes_live_at_one_step():
    from graphc.compiler.plan_memory import lower_bound, plan_memory

    # steps 0..1: 1 + 64 bytes (two aligned slots); step 2: 65 bytes (two slots); step 3: 0 bytes
    blocks = [("a", 1, 0, 1), ("b", 64, 0, 2), ("c", 65, 2, 2), ("d", 0, 3, 3)]
    assert lower_bound(blocks) == 3 * ALIGNMENT
    assert lower_bound([]) == 0
    # a nested clique (every block live with every other) packs at the bound: one order suffices
    nested = [(f"n{k}", 128, k, 40 - k) for k in range(20)]
    assert plan_memory(nested)[1] == lower_bound(nested) == 20 * 128


def test_inplace_control_deps_list_each_reader_once_in_graph_order():
    from graphc.compiler._memory import inplace_control_deps

    with Graph() as g:
        x = gc.placeholder("x", (2, 3))
        b = gc.variable("b", (3,))
        h = x
        for _ in range(50):  # b read by many nodes: the update runs after every one of them
            h = gc.relu(h + b)
        loss = gc.mean(h, name="loss")
        gc.optim.SGD(lr=0.1, momentum=0.9).minimize(loss)
    graph = lower_graph(g, shapes={"x": (2, 3)})
    deps = inplace_control_deps(graph)
    update = next(n for n in graph.nodes if n.role == OPTIMIZER and n.inputs[0] == "b")
    readers = [n.name for n in graph.nodes if "b" in n.inputs and n is not update]
    assert len(readers) >= 50
    assert deps[update.name] == readers
    positions = {n.name: k for k, n in enumerate(graph.nodes)}
    assert all(positions[r] < positions[update.name] for r in readers)


def test_assign_buffers_each_input_taken_over_at_most_once():
    with Graph() as g:
        x = gc.placeholder("x", (4, 8))
        h = x
        for k in range(60):  # an elementwise chain: every output takes over its dying input
            h = gc.relu(h) if k % 2 else h * 2.0
    graph = lower_graph(g, fetches=[h], fuse=False)
    buffers = assign_buffers(graph)
    taken = [b.inplace_of for b in buffers.buffers.values() if b.inplace_of]
    assert len(taken) > 50
    assert len(taken) == len(set(taken))
    verify_plan(emit_plan(graph, buffers))


@pytest.mark.parametrize("enabled", [True, False])
def test_compile_restores_the_garbage_collector_state(enabled):
    import gc as pygc

    g, out = mlp()
    was = pygc.isenabled()
    try:
        pygc.enable() if enabled else pygc.disable()
        compile(g, shapes={"x": (2, 4)}, fetches=[out])
        assert pygc.isenabled() is enabled
        with pytest.raises(CompileError):
            compile(g, shapes={"x": (2, 4)}, fetches=["no_such_value"])
        assert pygc.isenabled() is enabled
    finally:
        pygc.enable() if was else pygc.disable()


def _chain_training_graph(n, budget_fraction=None):
    with Graph() as g:
        x = gc.placeholder("x", (4, 8))
        w = gc.variable("w", (8, 8), init=gc.init.xavier_uniform(seed=0))
        b = gc.variable("b", (8,))
        h = x @ w
        for k in range(n):
            h = gc.relu(h) if k % 3 == 0 else (h + b if k % 3 == 1 else h * x)
        loss = gc.mean(h, name="loss")
        gc.optim.SGD(lr=0.1, momentum=0.9).minimize(loss)
    return g


@pytest.mark.parametrize("case", ["mlp", "mlp-all-outputs", "chain-inference", "chain-training", "recompute"])
def test_best_order_skips_only_policies_that_could_not_win(case):
    from graphc.compiler._memory import MemoryModel, peak_live_bytes
    from graphc.compiler.recompute import rewrite_with_recompute, stash_values
    from graphc.compiler.schedule_nodes import POLICIES, _peak_floor, _Prepared, best_order, schedule_order

    if case.startswith("mlp"):
        g, out = mlp()
        graph = lower_graph(g, shapes={"x": (2, 4)}, fetches=[out] if case == "mlp" else None)
    else:
        g = _chain_training_graph(30)
        graph = lower_graph(g, train=False if case == "chain-inference" else None)
        if case == "recompute":
            graph = rewrite_with_recompute(graph, stash_values(graph)[::3])
    model = MemoryModel(graph)
    floor = _peak_floor(graph, model, _Prepared(graph, model))
    every = []
    for policy in POLICIES:
        order = schedule_order(graph, policy, model)
        every.append(([n.name for n in order], peak_live_bytes(graph, model, order)))
    assert all(peak >= floor for _, peak in every)
    first_best = min(range(len(every)), key=lambda k: (every[k][1], k))
    order, peak = best_order(graph)
    assert ([n.name for n in order], peak) == every[first_best]


@pytest.mark.parametrize("case", ["mlp", "chain-inference", "chain-training", "recompute"])
def test_schedule_order_counts_the_peak_that_peak_live_bytes_measures(case):
    from graphc.compiler._memory import MemoryModel, peak_live_bytes
    from graphc.compiler.recompute import rewrite_with_recompute, stash_values
    from graphc.compiler.schedule_nodes import POLICIES, schedule_order

    if case == "mlp":
        g, out = mlp()
        graph = lower_graph(g, shapes={"x": (2, 4)}, fetches=[out])
    else:
        graph = lower_graph(_chain_training_graph(30), train=False if case == "chain-inference" else None)
        if case == "recompute":
            graph = rewrite_with_recompute(graph, stash_values(graph)[::3])
    model = MemoryModel(graph)
    for policy in POLICIES:
        order, peak = schedule_order(graph, policy, model, with_peak=True)
        assert order == schedule_order(graph, policy, model)
        assert peak == peak_live_bytes(graph, model, order) > 0


@settings(max_examples=300, deadline=None)
@given(_blocks)
def test_time_order_fast_packer_matches_the_reference(blocks):
    from graphc.compiler.plan_memory import _order, _pack, _pack_by_time

    order = _order(blocks, "time")
    assert _pack_by_time(blocks, order) == _reference_pack(blocks, order) == _pack(blocks, order)


def test_plan_memory_packs_only_the_time_order_above_the_exhaustive_limit(monkeypatch):
    from graphc.compiler import plan_memory as pm

    # every block live with the next two: "size" and "time" orders give different layouts
    blocks = [(f"v{k}", 64 * (1 + k % 5), k, k + 2) for k in range(40)]
    small = pm.plan_memory(blocks)
    monkeypatch.setattr(pm, "EXHAUSTIVE_LIMIT", len(blocks) - 1)
    offsets, total, how = pm.plan_memory(blocks)
    ref_offsets, ref_total = _reference_pack(blocks, pm._order(blocks, "time"))
    assert how == "time" and total == ref_total >= pm.lower_bound(blocks)
    assert offsets == {b[0]: off for b, off in zip(blocks, ref_offsets)}
    assert total >= small[1]


def test_topological_order_keeps_a_topological_stored_order_and_sorts_any_other():
    g = Graph()
    with g:
        x = gc.placeholder("x", (2,))
        a = gc.relu(x, name="a")
        gc.neg(a, name="b")
        gc.exp(x, name="c")
    assert [n.name for n in g.topological_order()] == ["a", "b", "c"]
    shuffled = Graph()
    shuffled.add_placeholder("x", (2,))
    for name in ("b", "c", "a"):  # b reads a, stored after it
        node = g.node(name)
        shuffled.insert_node(node, [(g.tensor(name).dtype, g.tensor(name).shape)])
    assert [n.name for n in shuffled.topological_order()] == ["c", "a", "b"]


def test_compile_leaves_the_model_nodes_unchanged_and_no_op_passes_return_their_input():
    # Stages share Node objects (graphc.compiler._rebuild), so no pass may change one.
    g = _chain_training_graph(30)
    before = [(n.name, n.op, list(n.inputs), list(n.outputs), dict(n.attrs), n.role) for n in g.nodes]
    stages = {}
    compile(g, on_pass=lambda name, graph: stages.__setitem__(name, graph))
    compile(g, train=False)
    assert [(n.name, n.op, list(n.inputs), list(n.outputs), dict(n.attrs), n.role) for n in g.nodes] == before
    # pruning a pruned graph drops nothing: the graph comes through as it was
    assert prune_graph(stages["prune_graph"]) is stages["prune_graph"]
    # a chain has one topological order: scheduling keeps it and copies nothing
    chain = infer_shapes(bind_shapes(validate_graph(_unary_chain()), {"x": (2,)}))
    assert schedule_nodes(chain) is chain


def _unary_chain():
    g = Graph()
    with g:
        gc.neg(gc.relu(gc.placeholder("x", (None,))), name="out")
    return g
