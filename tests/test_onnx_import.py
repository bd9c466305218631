"""gc.onnx.load: the importer framework and the tensor/shape handlers (graphc/onnx/_ops_tensor.py).

Each case is a tiny model built with onnx.helper; graphc's result (the numpy reference
interpreter and the compiled CPU plan) must equal onnxruntime's on the same feeds, exactly
for these data-movement ops.  The framework tests check naming, folding, initializers,
symbolic shapes, the version converter, local-function inlining and function expansion.
"""

import numpy as np
import pytest

import graphc as gc
from graphc.errors import OnnxUnsupportedError

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto as TP  # noqa: E402
from onnx import helper as h  # noqa: E402
from onnx import numpy_helper  # noqa: E402

_NP_TO_ONNX = {np.float32: TP.FLOAT, np.float64: TP.DOUBLE, np.int32: TP.INT32, np.int64: TP.INT64, np.bool_: TP.BOOL}


def _code(arr):
    return _NP_TO_ONNX[np.asarray(arr).dtype.type]


def make(nodes, feeds, outputs, inits=None, opset=17, in_shapes=None):
    """A model: graph inputs from ``feeds`` (shape from the array unless ``in_shapes`` names it),
    initializers ``inits``, outputs by name (types left to inference)."""
    inputs = [h.make_tensor_value_info(k, _code(v), (in_shapes or {}).get(k, list(np.shape(v))))
              for k, v in feeds.items()]
    outs = [h.make_tensor_value_info(o, TP.UNDEFINED, None) for o in outputs]
    init = [numpy_helper.from_array(np.asarray(v), k) for k, v in (inits or {}).items()]
    g = h.make_graph(nodes, "test", inputs, outs, init)
    m = h.make_model(g, opset_imports=[h.make_opsetid("", opset)])
    m.ir_version = 8
    return typed_outputs(m)


def typed_outputs(m):
    """The model with its untyped outputs typed by onnx's shape inference (onnxruntime needs them)."""
    inferred = onnx.shape_inference.infer_shapes(m)
    types = {vi.name: vi.type for vi in list(inferred.graph.value_info) + list(inferred.graph.output)
             + list(inferred.graph.input) if vi.type.tensor_type.elem_type != 0}
    for o in m.graph.output:
        if o.type.tensor_type.elem_type == 0 and o.name in types:
            o.type.CopyFrom(types[o.name])
    return m


def ort_run(model, feeds):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(None, feeds)))


def graphc_run(model, feeds, compiled=True, **load_kwargs):
    g = gc.onnx.load(model, **load_kwargs)
    gfeeds = {g.onnx_names[k]: v for k, v in feeds.items()}
    ref = gc.reference.evaluate(g, gfeeds, g.outputs)
    out = {}
    inv = {v: k for k, v in g.onnx_names.items()}
    for name in g.outputs:
        out[inv[name]] = ref[name]
    if compiled:
        plan = gc.compile(g, shapes={k: v.shape for k, v in gfeeds.items()}, fetches=list(g.outputs))
        sess = gc.Session(plan)
        run = sess.run({k: v for k, v in gfeeds.items() if k in sess.feed_names})   # pruned inputs are not fed
        for name in g.outputs:
            np.testing.assert_array_equal(run[name], ref[name], err_msg=f"compiled vs reference: {name}")
    return g, out


def check(model, feeds, compiled=True, **kw):
    want = ort_run(model, feeds)
    g, got = graphc_run(model, feeds, compiled=compiled, **kw)
    assert set(got) == set(want)
    for k in want:
        assert got[k].dtype == want[k].dtype, (k, got[k].dtype, want[k].dtype)
        assert got[k].shape == want[k].shape, (k, got[k].shape, want[k].shape)
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)
    return g


RNG = np.random.default_rng(0)
X234 = RNG.standard_normal((2, 3, 4)).astype(np.float32)
X35 = RNG.standard_normal((3, 5)).astype(np.float32)
I64 = np.int64


def c(name, arr):
    """A Constant node for ``arr``."""
    return h.make_node("Constant", [], [name], value=numpy_helper.from_array(np.asarray(arr), name))


# (id, nodes, feeds, outputs, inits, opset)
CASES = [
    ("reshape_0_-1", [c("s", np.array([0, -1], I64)), h.make_node("Reshape", ["x", "s"], ["y"])],
     {"x": X234}, ["y"], None, 17),
    ("reshape_allowzero", [c("s", np.array([0, 3], I64)), h.make_node("Reshape", ["x", "s"], ["y"], allowzero=1)],
     {"x": np.zeros((0, 3), np.float32)}, ["y"], None, 17),
    ("flatten_axes", [h.make_node("Flatten", ["x"], ["a"], axis=0), h.make_node("Flatten", ["x"], ["b"], axis=2),
                      h.make_node("Flatten", ["x"], ["d"], axis=-1)], {"x": X234}, ["a", "b", "d"], None, 17),
    ("squeeze_unsqueeze", [c("ax", np.array([-1, 0], I64)), h.make_node("Unsqueeze", ["x", "ax"], ["u"]),
                           h.make_node("Squeeze", ["u", "ax"], ["s"]), h.make_node("Squeeze", ["u"], ["s2"])],
     {"x": X35}, ["u", "s", "s2"], None, 17),
    ("unsqueeze_attr_opset11", [h.make_node("Unsqueeze", ["x"], ["u"], axes=[1])], {"x": X35}, ["u"], None, 11),
    ("transpose", [h.make_node("Transpose", ["x"], ["a"]), h.make_node("Transpose", ["x"], ["b"], perm=[1, 2, 0])],
     {"x": X234}, ["a", "b"], None, 17),
    ("concat_neg_axis", [h.make_node("Concat", ["x", "x", "z"], ["y"], axis=-1)],
     {"x": X35, "z": np.zeros((3, 0), np.float32)}, ["y"], None, 17),
    ("split_input", [c("sp", np.array([1, 4], I64)), h.make_node("Split", ["x", "sp"], ["a", "b"], axis=1)],
     {"x": X35}, ["a", "b"], None, 17),
    ("split_equal", [h.make_node("Split", ["x"], ["a", "b", "d"], axis=0)], {"x": X35}, ["a", "b", "d"], None, 17),
    ("split_num_outputs_uneven", [h.make_node("Split", ["x"], ["a", "b"], axis=1, num_outputs=2)],
     {"x": X35}, ["a", "b"], None, 18),
    ("slice_steps", [c("st", np.array([4, -100], I64)), c("en", np.array([-100, 100], I64)),
                     c("ax", np.array([1, 0], I64)), c("sp", np.array([-2, 2], I64)),
                     h.make_node("Slice", ["x", "st", "en", "ax", "sp"], ["y"])], {"x": X35}, ["y"], None, 17),
    ("slice_neg_step_clamp", [c("st", np.array([-10], I64)), c("en", np.array([-(2 ** 63)], I64)),
                              c("ax", np.array([1], I64)), c("sp", np.array([-1], I64)),
                              h.make_node("Slice", ["x", "st", "en", "ax", "sp"], ["y"])], {"x": X35}, ["y"], None, 17),
    ("slice_empty_and_big", [c("st", np.array([3, 2 ** 62], I64)), c("en", np.array([1, 2 ** 63 - 1], I64)),
                             h.make_node("Slice", ["x", "st", "en"], ["y"])], {"x": X35}, ["y"], None, 17),
    ("gather_neg_const", [c("i", np.array([[-1, 0], [2, -3]], I64)), h.make_node("Gather", ["x", "i"], ["y"], axis=1)],
     {"x": X234}, ["y"], None, 17),
    ("gather_runtime_neg", [h.make_node("Gather", ["x", "i"], ["y"], axis=2)],
     {"x": X234, "i": np.array([-4, 3, -1], np.int32)}, ["y"], None, 17),
    ("gather_scalar", [c("i", np.array(-1, I64)), h.make_node("Gather", ["x", "i"], ["y"], axis=0)],
     {"x": X35}, ["y"], None, 17),
    ("gather_elements", [h.make_node("GatherElements", ["x", "i"], ["y"], axis=1)],
     {"x": X35, "i": np.array([[0, -1, 4, 2, 1]] * 3, I64)}, ["y"], None, 17),
    ("gather_nd", [h.make_node("GatherND", ["x", "i"], ["y"]),
                   h.make_node("GatherND", ["x", "j"], ["z"], batch_dims=1)],
     {"x": X234, "i": np.array([[0, -1], [1, 2]], I64), "j": np.array([[[1], [-3]], [[0], [2]]], I64)},
     ["y", "z"], None, 17),
    ("compress_nonzero", [c("cd", np.array([False, True, False, True])), h.make_node("Compress", ["x", "cd"], ["y"],
                                                                                       axis=-1),
                          h.make_node("Compress", ["x", "cd"], ["f"]), c("nz", np.array([[1, 0], [0, 3]], np.float32)),
                          h.make_node("NonZero", ["nz"], ["n"])], {"x": X234}, ["y", "f", "n"], None, 17),
    ("expand_bidirectional", [c("s", np.array([2, 1, 4], I64)), h.make_node("Expand", ["x", "s"], ["y"])],
     {"x": np.arange(3, dtype=np.float32).reshape(3, 1)}, ["y"], None, 17),
    ("tile", [c("r", np.array([2, 1, 3], I64)), h.make_node("Tile", ["x", "r"], ["y"])], {"x": X234}, ["y"], None, 17),
    ("pad_constant_int", [c("p", np.array([1, 0, 2, 3], I64)), c("v", np.array(7, I64)),
                          h.make_node("Pad", ["x", "p", "v"], ["y"])],
     {"x": np.arange(6, dtype=I64).reshape(2, 3)}, ["y"], None, 17),
    ("pad_reflect_edge_wrap", [c("p", np.array([0, 2, 0, 1], I64)),
                               h.make_node("Pad", ["x", "p"], ["a"], mode="reflect"),
                               h.make_node("Pad", ["x", "p"], ["b"], mode="edge"),
                               c("q", np.array([1, -1, 2, 4], I64)),
                               h.make_node("Pad", ["x", "q"], ["w"], mode="wrap")],
     {"x": X35}, ["a", "b", "w"], None, 19),
    ("pad_negative", [c("p", np.array([-1, 2, 0, -2], I64)), h.make_node("Pad", ["x", "p"], ["y"]),
                      c("q", np.array([1, -3, -1, 2], I64)), h.make_node("Pad", ["x", "q"], ["z"], mode="edge")],
     {"x": X35}, ["y", "z"], None, 17),
    ("pad_axes_opset18", [c("p", np.array([1, 2], I64)), c("ax", np.array([-1], I64)),
                          c("v", np.array(1.5, np.float32)),
                          h.make_node("Pad", ["x", "p", "v", "ax"], ["y"])], {"x": X35}, ["y"], None, 18),
    ("constant_of_shape", [c("s", np.array([2, 3], I64)),
                           h.make_node("ConstantOfShape", ["s"], ["y"], value=numpy_helper.from_array(
                               np.array([5], np.int32), "v")), h.make_node("ConstantOfShape", ["s"], ["z"])],
     {}, ["y", "z"], None, 17),
    ("range_float_int", [c("a", np.array(1.5, np.float32)), c("b", np.array(-2.0, np.float32)),
                         c("d", np.array(-0.7, np.float32)), h.make_node("Range", ["a", "b", "d"], ["y"]),
                         c("a2", np.array(3, np.int32)), c("b2", np.array(10, np.int32)),
                         c("d2", np.array(3, np.int32)),
                         h.make_node("Range", ["a2", "b2", "d2"], ["z"])], {}, ["y", "z"], None, 17),
    ("where", [h.make_node("Where", ["m", "x", "z"], ["y"])],
     {"m": np.array([True, False, True, False, False]), "x": X35, "z": np.zeros((3, 1), np.float32)},
     ["y"], None, 17),
    ("trilu", [c("k", np.array(-1, I64)), h.make_node("Trilu", ["x", "k"], ["a"]),
               h.make_node("Trilu", ["x"], ["b"], upper=0)], {"x": X234}, ["a", "b"], None, 17),
    ("one_hot", [c("d", np.array(4, I64)), c("v", np.array([0.25, -3.0], np.float32)),
                 h.make_node("OneHot", ["i", "d", "v"], ["y"], axis=0)],
     {"i": np.array([[0, -1, 3], [5, -4, -5]], I64)}, ["y"], None, 17),
    ("topk", [c("k", np.array([2], I64)), h.make_node("TopK", ["x", "k"], ["v", "i"], axis=1),
              h.make_node("TopK", ["x", "k"], ["v2", "i2"], axis=0, largest=0)],
     {"x": np.array([[1, 3, 3, 0, 2], [5, 5, 1, 1, 0], [0, 0, 0, 0, 0]], np.float32)},
     ["v", "i", "v2", "i2"], None, 17),
    ("cumsum", [c("a", np.array(1, I64)), h.make_node("CumSum", ["x", "a"], ["y"], exclusive=1, reverse=1),
                h.make_node("CumSum", ["x", "a"], ["z"])], {"x": np.arange(15, dtype=np.int32).reshape(3, 5)},
     ["y", "z"], None, 17),
    ("dropout_mask", [h.make_node("Dropout", ["x"], ["y", "m"])], {"x": X35}, ["y", "m"], None, 17),
    ("eye_like", [h.make_node("EyeLike", ["x"], ["y"], k=1, dtype=TP.INT32)], {"x": X35}, ["y"], None, 17),
    ("shape_size_cast", [h.make_node("Shape", ["x"], ["s"], start=-2), h.make_node("Size", ["x"], ["n"]),
                         h.make_node("Cast", ["x"], ["i"], to=TP.INT32), h.make_node("CastLike", ["s", "x"], ["f"]),
                         h.make_node("Identity", ["x"], ["id"])],
     {"x": X234 * 3}, ["s", "n", "i", "f", "id"], None, 17),
    ("constant_forms", [h.make_node("Constant", [], ["a"], value_floats=[1.0, 2.5]),
                        h.make_node("Constant", [], ["b"], value_int=3),
                        h.make_node("Concat", ["x", "a2"], ["y"], axis=0), c("a2", np.array([7.0], np.float32))],
     {"x": np.ones(2, np.float32)}, ["a", "b", "y"], None, 17),
]


@pytest.mark.parametrize("case", CASES, ids=[cs[0] for cs in CASES])
def test_handler_matches_onnxruntime(case):
    _, nodes, feeds, outputs, inits, opset = case
    check(make(nodes, feeds, outputs, inits, opset), feeds)


def test_names_and_passthrough_outputs():
    x = np.ones((2, 3), np.float32)
    m = make([h.make_node("Identity", ["in:0"], ["out:0"]), h.make_node("Identity", ["in:0"], ["out2"])],
             {"in:0": x}, ["out:0", "out2", "in:0"])
    for o in m.graph.output:
        o.type.tensor_type.elem_type = TP.FLOAT
    g = check(m, {"in:0": x})
    assert g.onnx_names == {"in:0": "in_0", "out:0": "out_0", "out2": "out2"}
    assert g.onnx_names["out:0"] == "out_0"
    assert {n.op for n in g.nodes} == {"identity"}
    assert len(set(g.outputs)) == 3


def test_folding_leaves_no_nodes_for_static_shape_math():
    x = RNG.standard_normal((2, 3, 4)).astype(np.float32)
    nodes = [h.make_node("Shape", ["x"], ["s"]), c("i", np.array([0], I64)), h.make_node("Gather", ["s", "i"], ["b"]),
             c("m", np.array([-1], I64)), h.make_node("Concat", ["b", "m"], ["t"], axis=0),
             h.make_node("Reshape", ["x", "t"], ["y"])]
    g = check(make(nodes, {"x": x}, ["y"]), {"x": x})
    assert [n.op for n in g.nodes] == ["reshape"] and g.nodes[0].name == "y"


def test_symbolic_batch_reshape_and_pinned_shapes():
    x = RNG.standard_normal((5, 3, 4)).astype(np.float32)
    nodes = [h.make_node("Shape", ["x"], ["s"]), c("i", np.array(0, I64)), h.make_node("Gather", ["s", "i"], ["b"]),
             c("ax", np.array([0], I64)), h.make_node("Unsqueeze", ["b", "ax"], ["bu"]),
             c("m", np.array([-1], I64)), h.make_node("Concat", ["bu", "m"], ["t"], axis=0),
             h.make_node("Reshape", ["x", "t"], ["y"]), h.make_node("Flatten", ["x"], ["f"])]
    m = make(nodes, {"x": x}, ["y", "f"], in_shapes={"x": ["N", 3, 4]})
    g = check(m, {"x": x})
    assert g.inputs[0].shape == ("N", 3, 4)
    # two symbolic dims in one target: refused, then fine with shapes=
    nodes2 = [h.make_node("Shape", ["x"], ["s"]), c("i", np.array([0, 1], I64)),
              h.make_node("Gather", ["s", "i"], ["b"]),
              c("m", np.array([-1], I64)), h.make_node("Concat", ["b", "m"], ["t"], axis=0),
              h.make_node("Reshape", ["x", "t"], ["y"])]
    m2 = make(nodes2, {"x": x}, ["y"], in_shapes={"x": ["N", "C", 4]})
    with pytest.raises(OnnxUnsupportedError, match="shapes="):
        gc.onnx.load(m2)
    check(m2, {"x": x}, shapes={"x": (5, 3, 4)})


def test_initializers_become_variables_or_constants():
    w = RNG.standard_normal((4, 3)).astype(np.float32)
    nodes = [c("i", np.array([2, 0], I64)), h.make_node("Gather", ["w", "ids"], ["y"]),
             h.make_node("Gather", ["n", "i"], ["z"])]
    m = make(nodes, {"ids": np.array([1, 3], I64)}, ["y", "z"], inits={"w": w, "n": np.arange(4, dtype=I64)})
    g = gc.onnx.load(m)
    assert [(v.name, v.trainable) for v in g.variables] == [("w", True)]
    g2 = gc.onnx.load(m, trainable=False)
    assert g2.variables == []
    check(m, {"ids": np.array([1, 3], I64)})
    # a graph input that is also an initializer takes the initializer's value
    m.graph.input.append(h.make_tensor_value_info("w", TP.FLOAT, [4, 3]))
    g3 = gc.onnx.load(m)
    assert [p.name for p in g3.inputs] == ["ids"]


def test_imported_variables_train():
    w = RNG.standard_normal((4, 3)).astype(np.float32)
    m = make([h.make_node("Gather", ["w", "ids"], ["y"])], {"ids": np.array([1, 3], I64)}, ["y"], inits={"w": w})
    g = gc.onnx.load(m)
    with g:
        loss = gc.sum(g.tensor("y") * g.tensor("y"))
        gc.optim.SGD(lr=0.1).minimize(loss)
    sess = gc.Session(gc.compile(g, shapes={"ids": (2,)}))
    sess.run({"ids": np.array([1, 3], I64)})
    want = w.copy()
    want[[1, 3]] -= 0.1 * 2 * w[[1, 3]]   # d/dw sum(w[ids]^2) = 2 w on the picked rows
    np.testing.assert_allclose(sess.get_variable("w"), want, rtol=1e-6)


def test_old_opset_is_converted():
    x = X35
    m = make([h.make_node("Unsqueeze", ["x"], ["u"], axes=[0]), h.make_node("Squeeze", ["u"], ["y"], axes=[0])],
             {"x": x}, ["y"], opset=9)
    check(m, {"x": x})


def test_local_functions_are_inlined():
    f = h.make_function("local", "TwoT", ["a"], ["b"],
                        [h.make_node("Transpose", ["a"], ["t"]), h.make_node("Transpose", ["t"], ["b"])],
                        opset_imports=[h.make_opsetid("", 17)])
    x = X35
    g = h.make_graph([h.make_node("TwoT", ["x"], ["y"], domain="local")], "t",
                     [h.make_tensor_value_info("x", TP.FLOAT, [3, 5])], [h.make_tensor_value_info("y", TP.FLOAT, None)])
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 17), h.make_opsetid("local", 1)], functions=[f])
    m.ir_version = 8
    check(m, {"x": x})
    _, out = graphc_run(m, {"x": x})
    np.testing.assert_array_equal(out["y"], x)


def test_docs_handler_table_is_current():
    import os
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    from graphc.onnx._import import replace_handler_table

    with open(os.path.join(root, "docs", "onnx.md"), encoding="utf-8") as f:
        text = f.read()
    assert replace_handler_table(text) == text, "run python tools/onnx_handler_table.py --write"
    for op in ("Reshape", "Slice", "Gather", "Pad"):
        assert f"| {op} | tensor |" in text
    assert subprocess.run([sys.executable, os.path.join(root, "tools", "onnx_handler_table.py")],
                          capture_output=True).returncode == 0


def test_values_fix_graph_inputs_at_import():
    x = X234
    m = make([h.make_node("Reshape", ["x", "s"], ["y"]), h.make_node("TopK", ["y", "k"], ["v", "i"])],
             {"x": x, "s": np.array([4, 6], I64), "k": np.array([2], I64)}, ["v", "i"])
    with pytest.raises(OnnxUnsupportedError, match="graph input 's'") as e:
        gc.onnx.load(m)
    assert e.value.input_name == "s" and e.value.op_type == "Reshape"
    feeds = {"x": x, "s": np.array([4, 6], I64), "k": np.array([2], I64)}
    want = ort_run(m, feeds)
    g = gc.onnx.load(m, values={"s": feeds["s"], "k": feeds["k"]})
    assert [p.name for p in g.inputs] == ["x"]
    out = gc.reference.evaluate(g, {"x": x}, g.outputs)
    for k in ("v", "i"):
        np.testing.assert_array_equal(out[g.onnx_names[k]], want[k])
    with pytest.raises(OnnxUnsupportedError, match="values="):
        gc.onnx.load(m, values={"s": np.array([4, 6], np.int32)})


def test_large_results_are_not_folded():
    # Expand of a 2-element constant to 8M elements: a run-time broadcast_to, not 32 MB stored in the graph
    nodes = [c("v", np.array([1.0, 2.0], np.float32)), c("s", np.array([4096, 1024, 2], I64)),
             h.make_node("Expand", ["v", "s"], ["y"])]
    g = gc.onnx.load(make(nodes, {}, ["y"]))
    assert [n.op for n in g.nodes] == ["constant", "broadcast_to"]
    assert g.nodes[0].attrs["value"].size == 2


def test_untyped_outputs_and_non_trainable_initializers():
    # an output declared by name only (elem_type UNDEFINED) takes graphc's inferred dtype
    x = X35
    g = h.make_graph([h.make_node("Transpose", ["x"], ["y"])], "t", [h.make_tensor_value_info("x", TP.FLOAT, [3, 5])],
                     [h.make_tensor_value_info("y", TP.UNDEFINED, None)])
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 17)])
    _, out = graphc_run(m, {"x": x}, compiled=False)
    np.testing.assert_array_equal(out["y"], x.T)
    # Value.trainable: a handler may keep an initializer out of training (running statistics)
    from graphc.onnx._import import Value
    v = Value("w", "float32", (2,), init=np.ones(2, np.float32))
    v.trainable = False
    assert v.trainable is False


def test_shape_arithmetic_on_symbolic_dims():
    # torch-style shape code: [N * 1, C * W] from Shape(x) with a symbolic batch; Mul is the math handler's
    x = RNG.standard_normal((5, 3, 4)).astype(np.float32)
    nodes = [h.make_node("Shape", ["x"], ["s"]), c("i0", np.array([0], I64)), c("i1", np.array([1], I64)),
             c("i2", np.array([2], I64)), c("one", np.array([1], I64)),
             h.make_node("Gather", ["s", "i0"], ["n"]), h.make_node("Mul", ["n", "one"], ["n1"]),
             h.make_node("Gather", ["s", "i1"], ["cc"]), h.make_node("Gather", ["s", "i2"], ["w"]),
             h.make_node("Mul", ["cc", "w"], ["cw"]), h.make_node("Concat", ["n1", "cw"], ["t"], axis=0),
             h.make_node("Reshape", ["x", "t"], ["y"])]
    m = make(nodes, {"x": x}, ["y"], in_shapes={"x": ["N", 3, 4]})
    g = check(m, {"x": x})
    assert [n.op for n in g.nodes] == ["reshape"] and g.nodes[0].attrs["shape"] == (-1, 12)


def test_tile_with_symbolic_dims():
    x = RNG.standard_normal((5, 3)).astype(np.float32)
    nodes = [c("r", np.array([2, 3], I64)), h.make_node("Tile", ["x", "r"], ["y"])]
    g = check(make(nodes, {"x": x}, ["y"], in_shapes={"x": ["N", 3]}), {"x": x})
    assert [n.op for n in g.nodes] == ["tile"]
