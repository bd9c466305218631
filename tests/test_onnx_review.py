"""Regression tests for the review of issue 15's importer (REV): hostile models must give typed
errors within bounded time/memory, and recurrent layers with a zero-length sequence must give
onnxruntime's result.  Each model is one or two nodes built with onnx.helper."""

import numpy as np
import pytest

import graphc as gc
from graphc.errors import OnnxFormatError, OnnxUnsupportedError

onnx = pytest.importorskip("onnx")
from onnx import TensorProto as TP  # noqa: E402
from onnx import helper as h  # noqa: E402
from onnx import numpy_helper  # noqa: E402


def _model(nodes, inputs, outputs, inits=(), opset=18):
    g = h.make_graph(nodes, "rev", inputs, outputs, initializer=list(inits))
    m = h.make_model(g, opset_imports=[h.make_opsetid("", opset)])
    m.ir_version = 9
    return m


def _range_model(start, limit, delta, dtype):
    code = {np.float32: TP.FLOAT, np.float64: TP.DOUBLE, np.int32: TP.INT32, np.int64: TP.INT64}[dtype]
    inits = [numpy_helper.from_array(np.asarray(v, dtype), k) for k, v in (("a", start), ("b", limit), ("d", delta))]
    return _model([h.make_node("Range", ["a", "b", "d"], ["y"], name="r")], [],
                  [h.make_tensor_value_info("y", code, None)], inits)


def test_range_larger_than_the_fold_limit_is_refused_not_folded():
    # 2**26 - 1 int64 items (512 MB) from a 100-byte model: the import refused it after seconds and GBs
    from graphc.onnx._import import FOLD_LIMIT

    with pytest.raises(OnnxUnsupportedError, match=r"node 'r' \(Range, opset 18\).*too large"):
        gc.onnx.load(_range_model(0, (1 << 26) - 1, 1, np.int64))
    # the bound is the importer's fold limit, inclusive
    g = gc.onnx.load(_range_model(0, FOLD_LIMIT, 1, np.int64))
    assert g.onnx_names["y"]
    with pytest.raises(OnnxUnsupportedError, match="too large"):
        gc.onnx.load(_range_model(0, FOLD_LIMIT + 1, 1, np.int64))


@pytest.mark.parametrize("start,limit,delta,dtype", [
    (0.0, np.inf, 1.0, np.float32), (0.0, np.nan, 1.0, np.float32), (-np.inf, 0.0, 1.0, np.float32),
    (0.0, 1.0, np.inf, np.float32), (0.0, 1.0, np.nan, np.float32),
    (-1e308, 1e308, 1.0, np.float64)])   # finite bounds whose difference overflows float64
def test_range_with_non_finite_bounds_gives_a_typed_error(start, limit, delta, dtype):
    with pytest.raises(OnnxUnsupportedError, match=r"node 'r' \(Range, opset 18\)"):
        gc.onnx.load(_range_model(start, limit, delta, dtype))


def test_graph_input_with_a_negative_dim_is_a_format_error():
    m = _model([h.make_node("Relu", ["x"], ["y"])], [h.make_tensor_value_info("x", TP.FLOAT, [2, -3])],
               [h.make_tensor_value_info("y", TP.FLOAT, None)])
    with pytest.raises(OnnxFormatError, match=r"graph input 'x'.*negative"):
        gc.onnx.load(m)


@pytest.mark.parametrize("op,gates", [("LSTM", 4), ("GRU", 3), ("RNN", 1)])
def test_recurrent_zero_length_sequence_has_a_zero_final_state(op, gates):
    """onnxruntime: an entry of sequence_lens 0 gives Y = 0 and Y_h (Y_c) = 0, not the initial state.
    The other entries (lengths 3 and 1) are compared with onnxruntime too."""
    ort = pytest.importorskip("onnxruntime")
    rng = np.random.default_rng(15)
    t, n, k, hs = 3, 3, 2, 4
    x = rng.standard_normal((t, n, k)).astype(np.float32)
    w = (rng.standard_normal((1, gates * hs, k)) * 0.5).astype(np.float32)
    r = (rng.standard_normal((1, gates * hs, hs)) * 0.5).astype(np.float32)
    b = (rng.standard_normal((1, 2 * gates * hs)) * 0.5).astype(np.float32)
    h0 = rng.standard_normal((1, n, hs)).astype(np.float32)
    lens = np.array([0, 3, 1], np.int32)
    names = ["x", "W", "R", "B", "lens", "h0"] + (["c0"] if op == "LSTM" else [])
    nout = 3 if op == "LSTM" else 2
    outs = [f"o{j}" for j in range(nout)]
    feeds = {"x": x, "lens": lens, "h0": h0}
    inputs = [h.make_tensor_value_info("x", TP.FLOAT, x.shape), h.make_tensor_value_info("lens", TP.INT32, [n]),
              h.make_tensor_value_info("h0", TP.FLOAT, h0.shape)]
    if op == "LSTM":
        feeds["c0"] = -h0
        inputs.append(h.make_tensor_value_info("c0", TP.FLOAT, h0.shape))
    inits = [numpy_helper.from_array(a, nm) for a, nm in ((w, "W"), (r, "R"), (b, "B"))]
    m = _model([h.make_node(op, names, outs, hidden_size=hs)], inputs,
               [h.make_tensor_value_info(o, TP.FLOAT, None) for o in outs], inits)
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    want = sess.run(None, feeds)
    # the entry of length 0: onnxruntime's rule (nothing ran: no state)
    for arr in want[1:]:
        np.testing.assert_array_equal(arr[:, 0], 0)
    g = gc.onnx.load(m, trainable=False)
    got = gc.Session(gc.compile(g)).run({g.onnx_names[k]: v for k, v in feeds.items()})
    for o, wv in zip(outs, want):
        np.testing.assert_allclose(got[g.onnx_names[o]], wv, rtol=1e-5, atol=1e-6, err_msg=f"{op} {o}")


def test_shapes_pinning_a_negative_dim_is_refused():
    m = _model([h.make_node("Relu", ["x"], ["y"])], [h.make_tensor_value_info("x", TP.FLOAT, ["N", 3])],
               [h.make_tensor_value_info("y", TP.FLOAT, None)])
    with pytest.raises(OnnxUnsupportedError, match=r"shapes=: input 'x'.*negative"):
        gc.onnx.load(m, shapes={"x": (-1, 3)})
    assert gc.onnx.load(m, shapes={"x": (2, 3)}).onnx_names["x"]


def test_external_data_location_with_a_nul_byte_is_a_format_error(tmp_path):
    (tmp_path / "d.bin").write_bytes(bytes(16))
    t = onnx.TensorProto(name="w", data_type=TP.FLOAT, dims=[4], data_location=TP.EXTERNAL)
    entry = t.external_data.add()
    entry.key, entry.value = "location", "d.bin\x00.txt"
    m = _model([h.make_node("Relu", ["w"], ["y"])], [], [h.make_tensor_value_info("y", TP.FLOAT, None)], [t])
    path = tmp_path / "m.onnx"
    path.write_bytes(m.SerializeToString())
    with pytest.raises(OnnxFormatError, match="NUL byte"):
        gc.onnx.load(str(path))
    m.graph.initializer[0].external_data[0].value = "d.bin"   # the same model without the NUL loads
    path.write_bytes(m.SerializeToString())
    assert gc.onnx.load(str(path)).onnx_names["y"]
