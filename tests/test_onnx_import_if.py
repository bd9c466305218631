"""gc.onnx.load of ONNX ``If`` (graphc/onnx/_ops_control.py).

Small models built with onnx.helper, run by graphc (numpy reference interpreter and the
compiled CPU plan) and by onnx's ReferenceEvaluator (ONNX's semantics): a condition known at
import (only the taken branch is imported), a run-time condition (both branches, selected with
where), branches reading values of the enclosing graphs, nested Ifs, and the refusals.
"""

import numpy as np
import pytest

import graphc as gc
from graphc.errors import OnnxFormatError, OnnxUnsupportedError

onnx = pytest.importorskip("onnx")
from onnx import TensorProto as TP  # noqa: E402
from onnx import helper as h  # noqa: E402
from onnx import numpy_helper  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402

_CODE = {np.float32: TP.FLOAT, np.float64: TP.DOUBLE, np.int32: TP.INT32, np.int64: TP.INT64, np.bool_: TP.BOOL}


def _code(arr):
    return _CODE[np.asarray(arr).dtype.type]


def branch(nodes, outputs, name, inits=None):
    """A subgraph (no inputs) whose outputs are ``{name: (elem type, shape or None)}``."""
    outs = [h.make_tensor_value_info(o, t, s) for o, (t, s) in outputs.items()]
    init = [numpy_helper.from_array(np.asarray(v), k) for k, v in (inits or {}).items()]
    return h.make_graph(nodes, name, [], outs, init)


def model(nodes, feeds, outputs, opset=17):
    inputs = [h.make_tensor_value_info(k, _code(v), list(np.shape(v))) for k, v in feeds.items()]
    outs = [h.make_tensor_value_info(o, TP.UNDEFINED, None) for o in outputs]
    m = h.make_model(h.make_graph(nodes, "if_test", inputs, outs), opset_imports=[h.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def const(name, arr):
    return h.make_node("Constant", [], [name], value=numpy_helper.from_array(np.asarray(arr), name))


def graphc_run(m, feeds):
    """(graph, {onnx output: array}) by the reference interpreter; the compiled plan must agree."""
    g = gc.onnx.load(m)
    gfeeds = {g.onnx_names[k]: v for k, v in feeds.items() if k in g.onnx_names}
    ref = gc.reference.evaluate(g, gfeeds, g.outputs)
    plan = gc.compile(g, shapes={k: v.shape for k, v in gfeeds.items()}, fetches=list(g.outputs))
    sess = gc.Session(plan, threads=1)
    run = sess.run({k: v for k, v in gfeeds.items() if k in sess.feed_names})
    inv = {v: k for k, v in g.onnx_names.items()}
    for name in g.outputs:
        np.testing.assert_array_equal(run[name], ref[name], err_msg=f"compiled vs reference: {name}")
    return g, {inv[name]: run[name] for name in g.outputs}


def check(m, feeds):
    """graphc's outputs equal onnx.reference's exactly (dtype, shape, bits of NaN/±0 aside)."""
    ev = ReferenceEvaluator(m)
    want = dict(zip(ev.output_names, ev.run(None, feeds)))
    g, got = graphc_run(m, feeds)
    assert set(got) == set(want)
    for k, w in want.items():
        w = np.asarray(w)
        assert got[k].dtype == w.dtype and got[k].shape == w.shape, (k, got[k].dtype, got[k].shape, w.dtype, w.shape)
        np.testing.assert_array_equal(got[k], w, err_msg=k)
    return g


X = np.array([[1.5, -2.0, 0.0], [4.0, -0.5, 3.0]], np.float32)
F32 = (TP.FLOAT, None)


def _simple_if(cond_node, then_scale=2.0, else_shift=10.0):
    """y = If(c) then x * then_scale else x + else_shift: branches read the outer x."""
    then_g = branch([const("ts", np.float32(then_scale)), h.make_node("Mul", ["x", "ts"], ["t_out"])],
                    {"t_out": F32}, "then")
    else_g = branch([const("es", np.float32(else_shift)), h.make_node("Add", ["x", "es"], ["e_out"])],
                    {"e_out": F32}, "else")
    return [cond_node, h.make_node("If", ["c"], ["y"], name="the_if", then_branch=then_g, else_branch=else_g)]


@pytest.mark.parametrize("flag", [True, False])
def test_cond_known_at_import_imports_the_taken_branch_only(flag):
    m = model(_simple_if(const("c", np.array(flag))), {"x": X}, ["y"])
    g = check(m, {"x": X})
    names = {n.name for n in g.nodes}   # the branches' nodes take their ONNX output names
    assert ("t_out" in names) == flag
    assert ("e_out" in names) == (not flag)
    assert not any(n.op == "where" for n in g.nodes)


def test_cond_known_from_a_folded_comparison():
    # cond = ReduceSum(shape(x)) > 4: folded at import (x's shape is static)
    nodes = [h.make_node("Shape", ["x"], ["s"]), h.make_node("ReduceSum", ["s"], ["n"], keepdims=0),
             const("four", np.int64(4)), h.make_node("Greater", ["n", "four"], ["c"])]
    m = model(nodes + _simple_if(const("unused", np.float32(0)))[1:], {"x": X}, ["y"])
    g = check(m, {"x": X})
    assert "e_out" not in {n.name for n in g.nodes}


@pytest.mark.parametrize("flag", [True, False])
@pytest.mark.parametrize("cond_shape", [(), (1,), (1, 1)])
def test_runtime_cond_selects_exactly(flag, cond_shape):
    c = np.full(cond_shape, flag)
    m = model(_simple_if(h.make_node("Identity", ["cin"], ["c"])), {"x": X, "cin": c}, ["y"])
    g = check(m, {"x": X, "cin": c})
    assert any(n.op == "where" for n in g.nodes)
    assert {"t_out", "e_out"} <= {n.name for n in g.nodes}


def test_runtime_cond_untaken_branch_nan_does_not_leak():
    # then: log(x) (NaN for x < 0, -inf at 0), else: x; a run-time False must give x exactly
    then_g = branch([h.make_node("Log", ["x"], ["t"])], {"t": F32}, "then")
    else_g = branch([h.make_node("Identity", ["x"], ["e"])], {"e": F32}, "else")
    m = model([h.make_node("If", ["c"], ["y"], then_branch=then_g, else_branch=else_g)],
              {"x": X, "c": np.array(False)}, ["y"])
    for flag in (False, True):
        check(m, {"x": X, "c": np.array(flag)})


def test_outer_scope_reads_of_computed_values_and_multiple_outputs():
    # the branches read a value computed in the main graph (z), a graph input (x) and an
    # initializer of their own; two outputs of different dtypes; the If node is listed
    # before z's producer (the importer orders nodes by the branches' reads too)
    then_g = branch([h.make_node("Sub", ["z", "w"], ["t0"]), h.make_node("ArgMax", ["x"], ["t1"], axis=1)],
                    {"t0": F32, "t1": (TP.INT64, None)}, "then", inits={"w": np.float32([1, 2, 3])})
    else_g = branch([h.make_node("Mul", ["z", "x"], ["e0"]), h.make_node("ArgMin", ["x"], ["e1"], axis=1)],
                    {"e0": F32, "e1": (TP.INT64, None)}, "else")
    nodes = [h.make_node("If", ["c"], ["y0", "y1"], then_branch=then_g, else_branch=else_g),
             h.make_node("Mul", ["x", "x"], ["z"])]
    m = model(nodes, {"x": X, "c": np.array(True)}, ["y0", "y1"])
    ordered = model(nodes[::-1], {"x": X, "c": np.array(True)}, ["y0", "y1"])   # onnx.reference needs the order
    for flag in (True, False):
        feeds = {"x": X, "c": np.array(flag)}
        ev = ReferenceEvaluator(ordered)
        want = dict(zip(ev.output_names, ev.run(None, feeds)))
        _, got = graphc_run(m, feeds)
        for k in want:
            assert got[k].dtype == want[k].dtype
            np.testing.assert_array_equal(got[k], want[k], err_msg=k)


def test_output_passed_through_from_the_enclosing_graph():
    then_g = branch([], {"x": F32}, "then")           # the branch's output is the outer x itself
    else_g = branch([h.make_node("Neg", ["x"], ["e"])], {"e": F32}, "else")
    m = model([h.make_node("If", ["c"], ["y"], then_branch=then_g, else_branch=else_g)],
              {"x": X, "c": np.array(True)}, ["y"])
    for flag in (True, False):
        check(m, {"x": X, "c": np.array(flag)})


def _attr(node, name):
    return next(a.g for a in node.attribute if a.name == name)


def test_nested_if():
    # outer If(c1): then = If(c2) (x*2 | x+10) reading the outer scope twice removed; else = -x
    inner = _simple_if(h.make_node("Identity", ["c2"], ["c"]))
    inner_if = h.make_node("If", ["c"], ["t"], name="inner", then_branch=_attr(inner[1], "then_branch"),
                           else_branch=_attr(inner[1], "else_branch"))
    then_g = branch(inner[:1] + [inner_if], {"t": F32}, "then")
    else_g = branch([h.make_node("Neg", ["x"], ["e"])], {"e": F32}, "else")
    m = model([h.make_node("If", ["c1"], ["y"], name="outer", then_branch=then_g, else_branch=else_g)],
              {"x": X, "c1": np.array(True), "c2": np.array(True)}, ["y"])
    for c1 in (True, False):
        for c2 in (True, False):
            check(m, {"x": X, "c1": np.array(c1), "c2": np.array(c2)})


def test_nested_if_with_a_known_inner_condition():
    inner_then = branch([h.make_node("Neg", ["x"], ["it"])], {"it": F32}, "it")
    inner_else = branch([h.make_node("Abs", ["x"], ["ie"])], {"ie": F32}, "ie")
    then_g = branch([const("k", np.array([False])),
                     h.make_node("If", ["k"], ["t"], then_branch=inner_then, else_branch=inner_else)],
                    {"t": F32}, "then")
    else_g = branch([h.make_node("Identity", ["x"], ["e"])], {"e": F32}, "else")
    m = model([h.make_node("If", ["c"], ["y"], then_branch=then_g, else_branch=else_g)],
              {"x": X, "c": np.array(True)}, ["y"])
    g = check(m, {"x": X, "c": np.array(True)})
    check(m, {"x": X, "c": np.array(False)})
    assert not any(n.op == "neg" for n in g.nodes)   # the inner If imported its else branch only


def _runtime_if(then_nodes, then_out, else_nodes, else_out, feeds=None, name="bad_if"):
    then_g = branch(then_nodes, then_out, "then")
    else_g = branch(else_nodes, else_out, "else")
    feeds = dict(feeds or {"x": X})
    feeds["c"] = np.array(True)
    return model([h.make_node("If", ["c"], ["y"], name=name, then_branch=then_g, else_branch=else_g)], feeds, ["y"])


def test_shape_mismatch_is_refused():
    m = _runtime_if([h.make_node("Identity", ["x"], ["t"])], {"t": F32},
                    [h.make_node("ReduceSum", ["x"], ["e"], keepdims=0)], {"e": F32})
    with pytest.raises(OnnxUnsupportedError, match=r"bad_if.*If.*shape \(2, 3\), else_branch \(\)"):
        gc.onnx.load(m)
    # the same model with the condition known at import imports
    m.graph.node.insert(0, const("c", np.array(False)))
    del m.graph.input[1]
    check(m, {"x": X})


def test_dtype_mismatch_is_refused():
    m = _runtime_if([h.make_node("Identity", ["x"], ["t"])], {"t": F32},
                    [h.make_node("Cast", ["x"], ["e"], to=TP.DOUBLE)], {"e": (TP.DOUBLE, None)})
    with pytest.raises(OnnxUnsupportedError, match="float32, else_branch float64"):
        gc.onnx.load(m)


def test_random_inside_a_runtime_branch_is_refused():
    # graphc imports Dropout (inference) as its dropout op, which drops in training plans
    m = _runtime_if([h.make_node("Dropout", ["x"], ["t"])], {"t": F32},
                    [h.make_node("Identity", ["x"], ["e"])], {"e": F32})
    with pytest.raises(OnnxUnsupportedError, match=r"bad_if.*then_branch computes dropout \(random"):
        gc.onnx.load(m)
    # BatchNormalization: graphc's training plans update its running statistics (a side effect)
    stats = {n: numpy_helper.from_array(np.float32([1, 2, 3]), n) for n in ("s", "b", "mu", "var")}
    m = _runtime_if([h.make_node("Identity", ["x"], ["t"])], {"t": F32},
                    [h.make_node("BatchNormalization", ["x", "s", "b", "mu", "var"], ["e"])], {"e": F32})
    m.graph.initializer.extend(stats.values())
    with pytest.raises(OnnxUnsupportedError, match=r"bad_if.*else_branch computes batch_norm"):
        gc.onnx.load(m)


def test_runtime_indices_inside_a_runtime_branch_are_refused_constant_indices_import():
    ids = np.array([2, 0], np.int64)
    m = _runtime_if([h.make_node("Gather", ["x", "ids"], ["t"], axis=1)], {"t": F32},
                    [h.make_node("Gather", ["x", "k"], ["e"], axis=1), ], {"e": F32},
                    feeds={"x": X, "ids": ids})
    m.graph.node.insert(0, const("k", np.array([1, -1], np.int64)))
    with pytest.raises(OnnxUnsupportedError, match=r"then_branch computes \w+ with run-time indices"):
        gc.onnx.load(m)
    # indices known at import in both branches import and run
    m.graph.node.insert(0, const("ids2", ids))
    then_g = next(a.g for a in m.graph.node[-1].attribute if a.name == "then_branch")
    then_g.node[0].input[1] = "ids2"
    for flag in (True, False):
        check(m, {"x": X, "ids": ids, "c": np.array(flag)})


def test_error_inside_a_branch_names_the_if_node_and_the_branch():
    m = _runtime_if([h.make_node("Identity", ["x"], ["t"])], {"t": F32},
                    [h.make_node("Cast", ["x"], ["e"], to=TP.FLOAT16)], {"e": (TP.FLOAT16, None)})
    with pytest.raises(OnnxUnsupportedError, match="bad_if/else_branch"):
        gc.onnx.load(m)
    m = _runtime_if([h.make_node("Identity", ["nowhere"], ["t"])], {"t": F32},
                    [h.make_node("Identity", ["x"], ["e"])], {"e": F32})
    with pytest.raises(OnnxFormatError, match=r"bad_if.*then_branch.*'nowhere'"):
        gc.onnx.load(m)


def test_malformed_if_is_a_format_error():
    m = _runtime_if([h.make_node("Identity", ["x"], ["t"])], {"t": F32},
                    [h.make_node("Identity", ["x"], ["e"])], {"e": F32}, feeds={"x": X})
    m.graph.input[1].type.tensor_type.elem_type = TP.FLOAT     # a float cond
    with pytest.raises(OnnxFormatError, match="cond must be bool"):
        gc.onnx.load(m)
    m = _runtime_if([h.make_node("Identity", ["x"], ["t"]), h.make_node("Neg", ["x"], ["t2"])],
                    {"t": F32, "t2": F32}, [h.make_node("Identity", ["x"], ["e"])], {"e": F32})
    with pytest.raises(OnnxFormatError, match="then_branch has 2 outputs, the If node 1"):
        gc.onnx.load(m)


def test_a_branch_reading_the_if_output_is_a_cycle():
    m = _runtime_if([h.make_node("Neg", ["y"], ["t"])], {"t": F32}, [h.make_node("Identity", ["x"], ["e"])], {"e": F32})
    with pytest.raises(OnnxFormatError, match="cycle"):
        gc.onnx.load(m)


def test_branch_values_do_not_leak_into_the_enclosing_graph():
    # a node after the If reading a branch-internal name: nothing in the main graph produces it
    then_g = branch([h.make_node("Neg", ["x"], ["inner"])], {"inner": F32}, "then")
    else_g = branch([h.make_node("Identity", ["x"], ["e"])], {"e": F32}, "else")
    m = model([const("c", np.array(True)), h.make_node("If", ["c"], ["y"], then_branch=then_g, else_branch=else_g),
               h.make_node("Add", ["y", "inner"], ["z"])], {"x": X}, ["z"])
    with pytest.raises(OnnxFormatError, match="inner"):
        gc.onnx.load(m)


@pytest.mark.parametrize("align_corners", [0, 1])
def test_a_function_body_holding_if_expands(align_corners):
    # AffineGrid has no handler: its ONNX function body, which holds If nodes, is expanded with
    # the branches' names bound to the call (graphc/onnx/_import.py _bind_function_graph)
    theta = np.random.default_rng(0).standard_normal((2, 2, 3)).astype(np.float32)
    m = model([const("size", np.array([2, 3, 4, 5], np.int64)),
               h.make_node("AffineGrid", ["theta", "size"], ["y"], align_corners=align_corners)],
              {"theta": theta}, ["y"], opset=20)
    want = ReferenceEvaluator(m).run(None, {"theta": theta})[0]
    g = gc.onnx.load(m)
    plan = gc.compile(g, shapes={g.onnx_names["theta"]: theta.shape}, fetches=list(g.outputs))
    got = gc.Session(plan, threads=1).run({g.onnx_names["theta"]: theta})[g.onnx_names["y"]]
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
