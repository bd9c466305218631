"""ONNX import of the nn ops (graphc/onnx/_ops_nn.py): small onnx.helper models, each imported,
compiled and run by graphc and compared with onnx's ReferenceEvaluator and onnxruntime; and the
refusals (OnnxUnsupportedError naming the node) for what graphc does not convert exactly."""

import numpy as np
import pytest

import graphc as gc
from graphc.errors import OnnxUnsupportedError

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402

OPSET = 21
_TYPES = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.float64): TensorProto.DOUBLE,
          np.dtype(np.int64): TensorProto.INT64, np.dtype(np.int32): TensorProto.INT32}


def _rng(seed=0):
    return np.random.default_rng(seed)


def _f32(rng, *shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def make_model(op, feeds, inits=None, attrs=None, outputs=("y",), inputs=None, opset=OPSET):
    """A one-node model: graph inputs `feeds` (name -> array), initializers `inits`; the node's
    inputs default to the feeds then the inits in order ('' for an omitted optional input)."""
    inits = inits or {}
    names = inputs if inputs is not None else list(feeds) + list(inits)
    node = helper.make_node(op, names, list(outputs), name=f"{op}_0", **(attrs or {}))
    graph = helper.make_graph(
        [node], f"{op}_test",
        [helper.make_tensor_value_info(k, _TYPES[v.dtype], v.shape) for k, v in feeds.items()],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs if o],
        [numpy_helper.from_array(v, k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 10
    return model


def run_graphc(model, feeds):
    g = gc.onnx.load(model)
    plan = gc.compile(g, shapes={g.onnx_names[k]: v.shape for k, v in feeds.items()})
    out = gc.Session(plan).run({g.onnx_names[k]: v for k, v in feeds.items()})
    return [out[g.onnx_names[o.name]] for o in model.graph.output]


def check(model, feeds, rtol=1e-4, atol=1e-5, use_ort=True, use_ref=True):
    """graphc's outputs equal the reference evaluator's and onnxruntime's (use_ref / use_ort
    False where that implementation lacks the case or gets it wrong: said at the call)."""
    assert use_ort or use_ref
    got = run_graphc(model, feeds)
    wants = []
    if use_ref:
        wants.append(("reference", ReferenceEvaluator(model).run(None, feeds)))
    if use_ort:
        sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        wants.append(("onnxruntime", sess.run(None, feeds)))
    for who, want in wants:
        for g, w, o in zip(got, want, model.graph.output):
            assert g.shape == np.shape(w), (who, o.name, g.shape, np.shape(w))
            np.testing.assert_allclose(g, w, rtol=rtol, atol=atol, err_msg=f"output {o.name} vs {who}")
    return got


def refused(model, *words):
    with pytest.raises(OnnxUnsupportedError) as e:
        gc.onnx.load(model)
    msg = str(e.value)
    for w in words:
        assert w in msg, msg
    return msg


# -- Gemm, MatMul ------------------------------------------------------------------------------

@pytest.mark.parametrize("ta,tb,alpha,beta,c_shape", [
    (0, 0, 1.0, 1.0, (5,)), (1, 0, 0.5, 2.0, (1, 5)), (0, 1, 1.0, 0.5, (3, 5)), (1, 1, -1.5, 1.0, None),
    (0, 0, 1.0, 0.0, (3, 1))])
def test_gemm(ta, tb, alpha, beta, c_shape):
    rng = _rng(1)
    a = _f32(rng, *((4, 3) if ta else (3, 4)))
    inits = {"B": _f32(rng, *((5, 4) if tb else (4, 5)))}
    if c_shape is not None:
        inits["C"] = _f32(rng, *c_shape)
    m = make_model("Gemm", {"A": a}, inits, dict(transA=ta, transB=tb, alpha=alpha, beta=beta))
    check(m, {"A": a})


@pytest.mark.parametrize("sa,sb", [((2, 3, 4), (4, 5)), ((4,), (3, 4, 5)), ((3, 4), (4,)), ((4,), (4,)),
                                   ((2, 1, 3, 4), (5, 4, 6))])
def test_matmul(sa, sb):
    rng = _rng(2)
    a, b = _f32(rng, *sa), _f32(rng, *sb)
    check(make_model("MatMul", {"a": a, "b": b}), {"a": a, "b": b})


def test_gemm_integer_refused():
    a = np.ones((2, 2), np.int64)
    refused(make_model("Gemm", {"A": a}, {"B": a}), "Gemm_0", "Gemm", "int64")


# -- Conv, ConvTranspose ----------------------------------------------------------------------

@pytest.mark.parametrize("xs,ws,attrs", [
    ((2, 3, 7, 8), (4, 3, 3, 3), dict(pads=[1, 0, 2, 1], strides=[2, 1])),
    ((1, 4, 9, 9), (6, 2, 3, 2), dict(group=2, dilations=[2, 1])),
    ((1, 2, 7, 6), (3, 2, 3, 3), dict(auto_pad="SAME_UPPER", strides=[2, 2])),
    ((1, 2, 6, 7), (3, 2, 2, 4), dict(auto_pad="SAME_LOWER")),
    ((1, 2, 6, 7), (3, 2, 3, 3), dict(auto_pad="VALID", strides=[1, 2])),
    ((2, 3, 11), (5, 3, 3), dict(pads=[2, 1], strides=[2], dilations=[2])),
    ((1, 2, 10), (2, 1, 4), dict(group=2, auto_pad="SAME_UPPER")),
])
def test_conv(xs, ws, attrs):
    rng = _rng(3)
    x = _f32(rng, *xs)
    m = make_model("Conv", {"x": x}, {"w": _f32(rng, *ws), "b": _f32(rng, ws[0])}, attrs)
    check(m, {"x": x})


@pytest.mark.parametrize("xs,ws,attrs", [
    ((1, 3, 4, 5), (3, 2, 3, 3), dict(strides=[2, 2], pads=[1, 1, 1, 1], output_padding=[1, 0])),
    ((2, 4, 3, 3), (4, 1, 2, 3), dict(group=2, dilations=[1, 2], pads=[0, 1, 1, 0])),
    ((1, 2, 3, 4), (2, 3, 3, 3), dict(strides=[2, 2], output_shape=[7, 8])),
    ((1, 2, 3, 4), (2, 3, 3, 3), dict(strides=[2, 3], auto_pad="SAME_UPPER")),
    ((1, 2, 3, 4), (2, 3, 3, 4), dict(strides=[2, 2], auto_pad="SAME_LOWER")),
    ((2, 3, 5), (3, 2, 3), dict(strides=[3], pads=[1, 0], output_padding=[2])),
    ((1, 1, 3, 3), (1, 2, 3, 3), dict(strides=[3, 2], output_shape=[10, 8])),  # beyond the full output: zeros
])
def test_conv_transpose(xs, ws, attrs):
    rng = _rng(4)
    x = _f32(rng, *xs)
    c_out = ws[1] * attrs.get("group", 1)
    m = make_model("ConvTranspose", {"x": x}, {"w": _f32(rng, *ws), "b": _f32(rng, c_out)}, attrs)
    # onnx's reference ConvTranspose fails on group > 1 and ignores output_shape without auto_pad
    check(m, {"x": x}, use_ref="group" not in attrs and "output_shape" not in attrs)


def test_conv_3d_refused():
    x = np.zeros((1, 1, 3, 3, 3), np.float32)
    refused(make_model("Conv", {"x": x}, {"w": np.zeros((1, 1, 1, 1, 1), np.float32)}), "Conv_0", "3-D")


# -- pools ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("op,xs,attrs", [
    ("MaxPool", (2, 3, 7, 8), dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])),
    ("MaxPool", (1, 2, 7, 8), dict(kernel_shape=[3, 2], strides=[2, 2], ceil_mode=1)),
    ("MaxPool", (1, 2, 6, 7), dict(kernel_shape=[3, 3], pads=[0, 2, 1, 0])),
    ("MaxPool", (1, 2, 8, 9), dict(kernel_shape=[2, 3], dilations=[2, 2], pads=[1, 1, 1, 1])),
    ("MaxPool", (1, 2, 7, 7), dict(kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER")),
    ("MaxPool", (2, 3, 9), dict(kernel_shape=[3], strides=[2], pads=[1, 1], ceil_mode=1)),
    ("AveragePool", (2, 3, 7, 8), dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])),
    ("AveragePool", (2, 3, 7, 8), dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
                                       count_include_pad=1)),
    ("AveragePool", (1, 2, 6, 7), dict(kernel_shape=[3, 2], pads=[2, 0, 0, 1], count_include_pad=1)),
    ("AveragePool", (1, 2, 6, 7), dict(kernel_shape=[3, 2], pads=[2, 0, 0, 1])),
    ("AveragePool", (1, 2, 7, 8), dict(kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1, pads=[1, 1, 1, 1],
                                       count_include_pad=1)),
    ("AveragePool", (1, 2, 7, 8), dict(kernel_shape=[2, 2], strides=[2, 3], ceil_mode=1)),
    ("AveragePool", (1, 2, 8, 8), dict(kernel_shape=[2, 2], dilations=[2, 2], pads=[1, 1, 1, 1])),
    ("AveragePool", (1, 2, 7, 7), dict(kernel_shape=[2, 2], auto_pad="SAME_LOWER")),
    ("AveragePool", (2, 2, 9), dict(kernel_shape=[4], strides=[3], pads=[1, 2], count_include_pad=1)),
])
def test_pool(op, xs, attrs):
    x = _f32(_rng(5), *xs)
    pads = attrs.get("pads", [0, 0])
    asymmetric = pads[:len(pads) // 2] != pads[len(pads) // 2:]
    # onnxruntime has no dilated AveragePool; onnx's reference MaxPool pairs asymmetric pads wrongly
    # (a (6, 7) input with pads [0, 2, 1, 0] and a 3x3 kernel gives (6, 6), onnxruntime (5, 7))
    check(make_model(op, {"x": x}, attrs=attrs), {"x": x}, use_ort=op != "AveragePool" or "dilations" not in attrs,
          use_ref=op != "MaxPool" or not asymmetric)


@pytest.mark.parametrize("op", ["GlobalAveragePool", "GlobalMaxPool"])
@pytest.mark.parametrize("xs", [(2, 3, 5, 4), (2, 3, 6)])
def test_global_pool(op, xs):
    x = _f32(_rng(6), *xs)
    # onnx's reference GlobalMaxPool drops the trailing axis of a 1-D (N, C, L) input
    check(make_model(op, {"x": x}), {"x": x}, use_ref=op != "GlobalMaxPool" or len(xs) == 4)


@pytest.mark.parametrize("xs,attrs", [((2, 3, 5, 6), dict(kernel_shape=[2, 2])),
                                      ((1, 2, 7, 8), dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])),
                                      ((1, 2, 7, 8), dict(kernel_shape=[3, 2], strides=[2, 2], ceil_mode=1,
                                                          pads=[0, 1, 1, 0])),
                                      ((2, 2, 9), dict(kernel_shape=[3], strides=[2], dilations=[2])),
                                      ((2, 2, 5, 7), dict(kernel_shape=[2, 3], strides=[1, 2], storage_order=1))])
def test_maxpool_indices(xs, attrs):
    # ties would make the index implementation-defined: distinct values (a permutation)
    x = _rng(23).permutation(int(np.prod(xs))).astype(np.float32).reshape(xs)
    m = make_model("MaxPool", {"x": x}, attrs=attrs, outputs=("y", "i"))
    m.graph.output[1].type.tensor_type.elem_type = TensorProto.INT64
    y, i = run_graphc(m, {"x": x})
    ry, ri = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    np.testing.assert_array_equal(y, ry)
    np.testing.assert_array_equal(i, ri)
    if not attrs.get("storage_order"):
        np.testing.assert_array_equal(x.reshape(-1)[i], y)


# -- normalisations --------------------------------------------------------------------------------

def test_batch_norm_inference():
    rng = _rng(7)
    x = _f32(rng, 2, 3, 4, 5)
    inits = {"s": _f32(rng, 3), "b": _f32(rng, 3), "m": _f32(rng, 3), "v": np.abs(_f32(rng, 3)) + 0.5}
    check(make_model("BatchNormalization", {"x": x}, inits, dict(epsilon=1e-3)), {"x": x})


def test_batch_norm_training_mode():
    rng = _rng(8)
    x = _f32(rng, 4, 3, 5)
    inits = {"s": _f32(rng, 3), "b": _f32(rng, 3), "m": _f32(rng, 3), "v": np.abs(_f32(rng, 3)) + 0.5}
    m = make_model("BatchNormalization", {"x": x}, inits, dict(training_mode=1, momentum=0.8),
                   outputs=("y", "rm", "rv"))
    check(m, {"x": x}, use_ort=False)  # onnxruntime's CPU kernel has no training mode


@pytest.mark.parametrize("xs,axis,ws,outputs", [
    ((2, 3, 4), -1, (4,), ("y",)), ((2, 3, 4), 1, (3, 4), ("y", "mean", "rstd")), ((3, 5), 1, (1,), ("y",))])
def test_layer_norm(xs, axis, ws, outputs):
    rng = _rng(9)
    x = _f32(rng, *xs)
    m = make_model("LayerNormalization", {"x": x}, {"s": _f32(rng, *ws), "b": _f32(rng, *ws)},
                   dict(axis=axis, epsilon=1e-4), outputs=outputs)
    check(m, {"x": x})


def test_instance_norm():
    rng = _rng(10)
    x = _f32(rng, 2, 3, 4, 5)
    check(make_model("InstanceNormalization", {"x": x}, {"s": _f32(rng, 3), "b": _f32(rng, 3)}), {"x": x})


@pytest.mark.parametrize("opset,per", [(21, "channel"), (18, "group")])
def test_group_norm(opset, per):
    rng = _rng(11)
    x = _f32(rng, 2, 6, 3, 2)
    n = 6 if per == "channel" else 3
    m = make_model("GroupNormalization", {"x": x}, {"s": _f32(rng, n), "b": _f32(rng, n)},
                   dict(num_groups=3, epsilon=1e-3), opset=opset)
    got = run_graphc(m, {"x": x})[0]
    # the expected value from the definition (ONNX's backend test case _group_normalization)
    g = x.reshape(2, 3, -1).astype(np.float64)
    norm = ((g - g.mean(-1, keepdims=True)) / np.sqrt(g.var(-1, keepdims=True) + 1e-3)).reshape(x.shape)
    s, b = (numpy_helper.to_array(t) for t in m.graph.initializer)
    if per == "group":
        s, b = np.repeat(s, 2), np.repeat(b, 2)
    want = norm * s.reshape(6, 1, 1) + b.reshape(6, 1, 1)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("p,axis", [(2, -1), (1, 0), (2, 1)])
def test_lp_norm(p, axis):
    x = _f32(_rng(12), 3, 4)
    x[1] = 0.0  # a zero row: norm 0 gives 0
    got = run_graphc(make_model("LpNormalization", {"x": x}, attrs=dict(p=p, axis=axis)), {"x": x})[0]
    norm = np.sum(np.abs(x) ** p, axis=axis, keepdims=True) ** (1.0 / p)
    with np.errstate(invalid="ignore", divide="ignore"):
        want = np.where(norm == 0, 0, x / norm)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


# -- Resize ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("attrs,scales,sizes", [
    (dict(mode="nearest"), [1, 1, 2, 2], None),
    (dict(mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor"), [1, 1, 1.5, 0.5], None),
    (dict(mode="linear"), None, [1, 2, 7, 5]),
    (dict(mode="linear", coordinate_transformation_mode="align_corners"), [1, 1, 2, 3], None),
    (dict(mode="nearest", coordinate_transformation_mode="tf_half_pixel_for_nn"), None, [1, 2, 3, 9]),
])
def test_resize(attrs, scales, sizes):
    x = _f32(_rng(13), 1, 2, 4, 3)
    inits = {"roi": np.zeros(0, np.float32),
             "scales": np.asarray(scales if scales is not None else [], np.float32)}
    names = ["x", "roi", "scales"]
    if sizes is not None:
        inits["sizes"] = np.asarray(sizes, np.int64)
        names = ["x", "", "", "sizes"]
        inits = {"sizes": inits["sizes"]}
    # tf_half_pixel_for_nn is Resize-11's (kept by the version converter); onnx's reference dropped it
    check(make_model("Resize", {"x": x}, inits, attrs, inputs=names), {"x": x},
          use_ref=attrs.get("coordinate_transformation_mode") != "tf_half_pixel_for_nn")


@pytest.mark.parametrize("policy", ["not_larger", "not_smaller"])
def test_resize_keep_aspect_ratio(policy):
    x = _f32(_rng(26), 1, 2, 4, 3)
    m = make_model("Resize", {"x": x}, {"sizes": np.asarray([7, 8], np.int64)},
                   dict(mode="nearest", keep_aspect_ratio_policy=policy, axes=[2, 3]), inputs=["x", "", "", "sizes"])
    check(m, {"x": x})


def test_resize_cubic_refused():
    x = np.zeros((1, 1, 2, 2), np.float32)
    m = make_model("Resize", {"x": x}, {"scales": np.asarray([1, 1, 2, 2], np.float32)}, dict(mode="cubic"),
                   inputs=["x", "", "scales"])
    refused(m, "Resize_0", "cubic")


# -- DepthToSpace, SpaceToDepth ----------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["DCR", "CRD"])
def test_depth_to_space(mode):
    x = _f32(_rng(14), 2, 8, 2, 3)
    check(make_model("DepthToSpace", {"x": x}, attrs=dict(blocksize=2, mode=mode)), {"x": x})


def test_space_to_depth():
    x = _f32(_rng(15), 2, 3, 4, 6)
    check(make_model("SpaceToDepth", {"x": x}, attrs=dict(blocksize=2)), {"x": x})


# -- recurrent layers -------------------------------------------------------------------------------

def _rnn_model(op, gates, t=3, n=2, i=4, h=5, direction="forward", layout=0, bias=True, initial=False,
               peep=False, seed=16, **attrs):
    rng = _rng(seed)
    d = 2 if direction == "bidirectional" else 1
    x = _f32(rng, *((n, t, i) if layout else (t, n, i)))
    inits = {"W": _f32(rng, d, gates * h, i, scale=0.5), "R": _f32(rng, d, gates * h, h, scale=0.5)}
    names = ["x", "W", "R"]
    if bias:
        inits["B"] = _f32(rng, d, 2 * gates * h, scale=0.5)
    names.append("B" if bias else "")
    feeds = {"x": x}
    if initial or peep:
        names.append("")  # sequence_lens
        state = (n, d, h) if layout else (d, n, h)
        feeds["h0"] = _f32(rng, *state)
        names.append("h0")
        if op == "LSTM":
            feeds["c0"] = _f32(rng, *state)
            names.append("c0")
            if peep:
                inits["P"] = _f32(rng, d, 3 * h, scale=0.5)
                names.append("P")
    outs = ("y", "yh", "yc") if op == "LSTM" else ("y", "yh")
    attrs = dict(attrs, hidden_size=h, direction=direction, layout=layout)
    return make_model(op, feeds, inits, attrs, outputs=outs, inputs=names), feeds


@pytest.mark.parametrize("kw", [dict(), dict(direction="bidirectional", initial=True), dict(layout=1, initial=True),
                                dict(direction="reverse", bias=False), dict(peep=True)])
def test_lstm(kw):
    m, feeds = _rnn_model("LSTM", 4, **kw)
    check(m, feeds, use_ort=not kw.get("layout"))  # onnxruntime refuses layout=1


@pytest.mark.parametrize("kw", [dict(), dict(linear_before_reset=1), dict(direction="bidirectional", initial=True),
                                dict(linear_before_reset=1, layout=1, initial=True, direction="reverse")])
def test_gru(kw):
    m, feeds = _rnn_model("GRU", 3, **kw)
    check(m, feeds, use_ort=not kw.get("layout"))


@pytest.mark.parametrize("kw", [dict(), dict(direction="bidirectional", initial=True, layout=1)])
def test_rnn(kw):
    m, feeds = _rnn_model("RNN", 1, **kw)
    check(m, feeds, use_ort=not kw.get("layout"))


def test_lstm_clip_refused():
    m, _ = _rnn_model("LSTM", 4, clip=1.0)
    refused(m, "LSTM_0", "clip")


@pytest.mark.parametrize("op,gates,kw", [("LSTM", 4, dict()), ("LSTM", 4, dict(peep=True)), ("GRU", 3, dict()),
                                         ("GRU", 3, dict(linear_before_reset=1)), ("RNN", 1, dict(initial=True))])
def test_sequence_lens_at_run_time(op, gates, kw):
    """Shorter sequences (sequence_lens a graph input): the state stops at each sequence's end and Y is
    0 past it, as onnxruntime (onnx's reference ignores sequence_lens)."""
    m, feeds = _rnn_model(op, gates, t=4, n=3, initial=True, **kw) if "initial" not in kw else \
        _rnn_model(op, gates, t=4, n=3, **kw)
    m.graph.node[0].input[4] = "lens"
    m.graph.input.append(helper.make_tensor_value_info("lens", TensorProto.INT32, [3]))
    feeds["lens"] = np.asarray([4, 1, 2], np.int32)
    check(m, feeds, use_ref=False)


def test_sequence_lens_reverse_refused():
    m, _ = _rnn_model("LSTM", 4, direction="reverse", initial=True)
    m.graph.node[0].input[4] = "lens"
    m.graph.input.append(helper.make_tensor_value_info("lens", TensorProto.INT32, [2]))
    refused(m, "LSTM_0", "sequence_lens", "forward direction only")


# -- losses ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True])
def test_softmax_cross_entropy(reduction, weighted):
    rng = _rng(17)
    x = _f32(rng, 4, 5, 3)
    labels = rng.integers(0, 5, (4, 3)).astype(np.int64)
    labels[0, 0] = -1
    inits = {"w": np.abs(_f32(rng, 5)) + 0.1} if weighted else {}
    m = make_model("SoftmaxCrossEntropyLoss", {"x": x, "labels": labels}, inits,
                   dict(reduction=reduction, ignore_index=-1), outputs=("loss", "logp"))
    check(m, {"x": x, "labels": labels})


def test_nll_loss():
    rng = _rng(18)
    x = _f32(rng, 6, 4)
    labels = rng.integers(0, 4, (6,)).astype(np.int64)
    m = make_model("NegativeLogLikelihoodLoss", {"x": x, "labels": labels}, {"w": np.abs(_f32(rng, 4)) + 0.1})
    check(m, {"x": x, "labels": labels})


# -- Einsum ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("eq,shapes", [("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]), ("ij->ji", [(3, 4)]),
                                       ("i,j->ij", [(3,), (4,)]), ("...ij,jk", [(2, 3, 4), (4, 2)]),
                                       ("bhqd, bhkd -> bhqk", [(1, 2, 3, 4), (1, 2, 5, 4)])])
def test_einsum(eq, shapes):
    rng = _rng(19)
    feeds = {f"x{i}": _f32(rng, *s) for i, s in enumerate(shapes)}
    check(make_model("Einsum", feeds, attrs=dict(equation=eq)), feeds)


def test_einsum_diagonal_refused():
    x = np.zeros((3, 3), np.float32)
    refused(make_model("Einsum", {"x": x}, attrs=dict(equation="ii->i")), "Einsum_0")


# -- models: a symbolic batch, trainability -------------------------------------------------------

def _cnn_model(rng):
    """Conv -> BatchNormalization -> MaxPool -> GlobalAveragePool -> Flatten -> Gemm, batch 'N'."""
    inits = {"w": _f32(rng, 4, 3, 3, 3, scale=0.3), "cb": _f32(rng, 4), "s": _f32(rng, 4), "b": _f32(rng, 4),
             "m": _f32(rng, 4), "v": np.abs(_f32(rng, 4)) + 0.5, "fw": _f32(rng, 4, 5), "fb": _f32(rng, 5)}
    nodes = [helper.make_node("Conv", ["x", "w", "cb"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c", "s", "b", "m", "v"], ["n"], name="bn"),
             helper.make_node("MaxPool", ["n"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("GlobalAveragePool", ["p"], ["g"], name="gap"),
             helper.make_node("Flatten", ["g"], ["f"], name="flat"),
             helper.make_node("Gemm", ["f", "fw", "fb"], ["y"], name="fc")]
    graph = helper.make_graph(nodes, "cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5])],
                              [numpy_helper.from_array(v, k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 10
    return model


def test_symbolic_batch_cnn():
    rng = _rng(20)
    model = _cnn_model(rng)
    g = gc.onnx.load(model)
    assert tuple(g.inputs[0].shape) == ("N", 3, 8, 8)
    for n in (1, 3):
        x = _f32(rng, n, 3, 8, 8)
        check(model, {"x": x})


def test_symbolic_batch_lstm():
    m, feeds = _rnn_model("LSTM", 4, n=3)
    m.graph.input[0].type.tensor_type.shape.dim[1].dim_param = "N"
    check(m, feeds)


def test_batch_norm_statistics_not_trainable():
    g = gc.onnx.load(_cnn_model(_rng(21)))
    trainable = {v.name: v.trainable for v in g.variables}
    assert trainable["m"] is False and trainable["v"] is False
    assert trainable["w"] is True and trainable["s"] is True and trainable["fw"] is True


def test_train_imported_cnn():
    """An imported Conv/BatchNormalization/Gemm model with ONNX's SoftmaxCrossEntropyLoss trains in
    graphc: the loss falls, the convolution weight moves and the batch-norm statistics are updated
    as running state (momentum 1 - ONNX's), not by the optimizer."""
    rng = _rng(22)
    model = _cnn_model(rng)
    g0 = model.graph
    g0.node.append(helper.make_node("SoftmaxCrossEntropyLoss", ["y", "labels"], ["loss"], name="sce"))
    g0.input.append(helper.make_tensor_value_info("labels", TensorProto.INT64, ["N"]))
    del g0.output[:]
    g0.output.append(helper.make_tensor_value_info("loss", TensorProto.FLOAT, []))
    g = gc.onnx.load(model)
    names = g.onnx_names
    x = _f32(rng, 8, 3, 8, 8)
    labels = rng.integers(0, 5, (8,)).astype(np.int64)
    plan = gc.compile(g, shapes={names["x"]: x.shape, names["labels"]: labels.shape},
                      train={"loss": names["loss"], "optimizer": "sgd:lr=0.1"})
    sess = gc.Session(plan)
    m0, w0 = sess.get_variable("m").copy(), sess.get_variable("w").copy()
    feeds = {names["x"]: x, names["labels"]: labels}
    losses = [float(sess.run(feeds)[names["loss"]])]
    # the first step's running mean: 0.9 · m0 + 0.1 · the batch mean of the conv output (ONNX's
    # training-mode BatchNormalization with its default momentum 0.9), the conv output from onnx's reference
    conv = helper.make_model(helper.make_graph(
        [g0.node[0]], "conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x.shape)],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, None)],
        [t for t in g0.initializer if t.name in ("w", "cb")]), opset_imports=[helper.make_opsetid("", OPSET)])
    c = ReferenceEvaluator(conv).run(None, {"x": x})[0]
    np.testing.assert_allclose(sess.get_variable("m"), 0.9 * m0 + 0.1 * c.mean(axis=(0, 2, 3)), rtol=1e-4, atol=1e-5)
    losses += [float(sess.run(feeds)[names["loss"]]) for _ in range(14)]
    assert losses[-1] < 0.7 * losses[0], losses
    assert not np.allclose(sess.get_variable("w"), w0)


@pytest.mark.parametrize("op", ["MaxPool", "AveragePool"])
def test_dilated_pool_symbolic_batch(op):
    x = _f32(_rng(24), 3, 2, 11, 10)
    m = make_model(op, {"x": x}, attrs=dict(kernel_shape=[3, 2], dilations=[3, 2], strides=[2, 1], pads=[2, 1, 1, 0]))
    m.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "N"
    check(m, {"x": x}, use_ort=op == "MaxPool")  # onnxruntime has no dilated AveragePool


# -- gradients through the imported compositions ---------------------------------------------------

def _as_float64(model):
    """The model with every float32 initializer, input and output made float64."""
    for t in model.graph.initializer:
        a = numpy_helper.to_array(t)
        if a.dtype == np.float32:
            t.CopyFrom(numpy_helper.from_array(a.astype(np.float64), t.name))
    for vi in list(model.graph.input) + list(model.graph.output):
        if vi.type.tensor_type.elem_type == TensorProto.FLOAT:
            vi.type.tensor_type.elem_type = TensorProto.DOUBLE
    return model


@pytest.mark.parametrize("case", ["lstm_peephole", "lstm_bidirectional", "gru", "dilated_avg_pool"])
def test_gradient_matches_finite_differences(case):
    """d(Σ y·G)/d(weight) of the imported graph (gc.gradients, compiled, float64) equals the central
    difference of onnx's reference evaluator along a random direction."""
    rng = _rng(25)
    if case == "dilated_avg_pool":
        x = _f32(rng, 2, 3, 9, 8)
        m = make_model("Conv", {"x": x}, {"w": _f32(rng, 4, 3, 2, 2)}, dict(pads=[1, 0, 0, 1]), outputs=("c",))
        m.graph.node.append(helper.make_node("AveragePool", ["c"], ["y"], name="pool", kernel_shape=[2, 3],
                                             dilations=[2, 2], pads=[0, 1, 1, 1], strides=[2, 1]))
        m.graph.output[0].name = "y"
        feeds, wname = {"x": x}, "w"
    else:
        kw = {"lstm_peephole": dict(peep=True), "lstm_bidirectional": dict(direction="bidirectional", initial=True),
              "gru": dict(initial=True)}[case]
        m, feeds = _rnn_model("GRU" if case == "gru" else "LSTM", 3 if case == "gru" else 4, **kw)
        del m.graph.output[1:]
        wname = "R"
    m = _as_float64(m)
    feeds = {k: v.astype(np.float64) for k, v in feeds.items()}
    g = gc.onnx.load(m)
    ref_out = ReferenceEvaluator(m).run(None, feeds)[0]
    weight = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}[wname]
    gy = rng.standard_normal(ref_out.shape)
    with g:
        y = g.tensor(g.onnx_names["y"])
        loss = gc.sum(gc.mul(y, gc.constant(gy)))
        (dw,) = gc.gradients(loss, [g.tensor(wname)])
    plan = gc.compile(g, shapes={g.onnx_names[k]: v.shape for k, v in feeds.items()}, fetches=[dw])
    got = gc.Session(plan).run({g.onnx_names[k]: v for k, v in feeds.items()})[dw.name]
    direction = rng.standard_normal(weight.shape)
    eps = 1e-6

    def f(w):
        m2 = onnx.ModelProto()
        m2.CopyFrom(m)
        for t in m2.graph.initializer:
            if t.name == wname:
                t.CopyFrom(numpy_helper.from_array(w, wname))
        return float(np.sum(ReferenceEvaluator(m2).run(None, feeds)[0] * gy))

    numeric = (f(weight + eps * direction) - f(weight - eps * direction)) / (2 * eps)
    np.testing.assert_allclose(float(np.sum(got * direction)), numeric, rtol=1e-6, atol=1e-8)
