"""Regression tests for the review of issue 15's importer (REV): hostile models must give typed
errors within bounded time/memory.  Each model is one or two nodes built with onnx.helper."""

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


def test_shapes_pinning_a_negative_dim_is_refused():
    m = _model([h.make_node("Relu", ["x"], ["y"])], [h.make_tensor_value_info("x", TP.FLOAT, ["N", 3])],
               [h.make_tensor_value_info("y", TP.FLOAT, None)])
    with pytest.raises(OnnxUnsupportedError, match=r"shapes=: input 'x'.*negative"):
        gc.onnx.load(m, shapes={"x": (-1, 3)})
    assert gc.onnx.load(m, shapes={"x": (2, 3)}).onnx_names["x"]
