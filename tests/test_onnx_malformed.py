"""gc.onnx.load on malformed and unsupported models: every failure is a typed error
(OnnxFormatError / OnnxUnsupportedError) whose message names the thing, and
``graphc import`` writes nothing when it fails.  External data is read by graphc itself,
inside the model's folder only."""

import os

import numpy as np
import pytest

import graphc as gc
from graphc.cli import main as cli_main
from graphc.errors import ModelFormatError, OnnxError, OnnxFormatError, OnnxUnsupportedError

onnx = pytest.importorskip("onnx")
from onnx import TensorProto as TP  # noqa: E402
from onnx import helper as h  # noqa: E402
from onnx import numpy_helper  # noqa: E402


def model(nodes, inputs=None, outputs=("y",), inits=(), opset=17, **kw):
    inputs = inputs if inputs is not None else [h.make_tensor_value_info("x", TP.FLOAT, [2, 3])]
    outs = [h.make_tensor_value_info(o, TP.FLOAT, None) for o in outputs]
    g = h.make_graph(nodes, "bad", inputs, outs, list(inits))
    m = h.make_model(g, opset_imports=[h.make_opsetid("", opset)], **kw)
    m.ir_version = 8
    return m


def good():
    return model([h.make_node("Transpose", ["x"], ["y"], name="T0")])


def test_good_model_loads():
    g = gc.onnx.load(good())
    assert [n.op for n in g.nodes] == ["transpose"]


def test_not_a_model_bytes():
    for data in (b"", b"hello world, not protobuf", bytes(range(256)) * 4):
        with pytest.raises(OnnxFormatError, match="not an ONNX model"):
            gc.onnx.load(data)
    assert issubclass(OnnxFormatError, ModelFormatError)


def test_truncated_file(tmp_path):
    w = numpy_helper.from_array(np.ones((64, 3), np.float32), "w")
    m = model([h.make_node("Gather", ["w", "i"], ["y"], name="G0")],
              inputs=[h.make_tensor_value_info("i", TP.INT64, [2])], inits=[w])
    data = m.SerializeToString()
    gc.onnx.load(data)
    for cut in (1, 7, len(data) // 3, len(data) // 2, len(data) - 40, len(data) - 3, len(data) - 1):
        p = tmp_path / f"cut{cut}.onnx"
        p.write_bytes(data[:cut])
        with pytest.raises(OnnxError) as e:
            gc.onnx.load(str(p))
        assert isinstance(e.value, (OnnxFormatError, OnnxUnsupportedError)), cut


def test_missing_file(tmp_path):
    with pytest.raises(OnnxFormatError, match="cannot read"):
        gc.onnx.load(str(tmp_path / "nope.onnx"))


def test_unknown_op_names_node_op_and_opset():
    m = model([h.make_node("NoSuchOp", ["x"], ["y"], name="weird_7")])
    with pytest.raises(OnnxUnsupportedError, match=r"node 'weird_7' \(NoSuchOp, opset 17\).*no handler") as e:
        gc.onnx.load(m)
    assert e.value.op_type == "NoSuchOp"


def test_unknown_domain():
    m = model([h.make_node("FusedGemm", ["x"], ["y"], name="F", domain="com.microsoft")])
    m.opset_import.append(h.make_opsetid("com.microsoft", 1))
    with pytest.raises(OnnxUnsupportedError, match=r"node 'F' \(FusedGemm, opset 1\) of domain 'com.microsoft'") as e:
        gc.onnx.load(m)
    assert e.value.op_type == "FusedGemm"
    # a model importing only another domain (valid ONNX) is refused the same way, not as malformed
    del m.opset_import[0]
    with pytest.raises(OnnxUnsupportedError, match="FusedGemm, opset 1"):
        gc.onnx.load(m)


def test_input_nothing_produces():
    m = model([h.make_node("Transpose", ["ghost"], ["y"], name="T1")])
    with pytest.raises(OnnxFormatError, match=r"T1.*'ghost'"):
        gc.onnx.load(m)


def test_output_nothing_produces():
    m = model([h.make_node("Transpose", ["x"], ["y"], name="T1")], outputs=("y", "z"))
    with pytest.raises(OnnxFormatError, match="'z'"):
        gc.onnx.load(m)


def test_unsupported_dtypes():
    m = model([h.make_node("Transpose", ["x"], ["y"])], inputs=[h.make_tensor_value_info("x", TP.FLOAT16, [2])])
    with pytest.raises(OnnxUnsupportedError, match="graph input 'x'.*FLOAT16"):
        gc.onnx.load(m)
    u8 = numpy_helper.from_array(np.ones(3, np.uint8), "w8")
    m = model([h.make_node("Identity", ["w8"], ["y"])], inputs=[], inits=[u8])
    with pytest.raises(OnnxUnsupportedError, match="'w8'.*UINT8"):
        gc.onnx.load(m)
    m = model([h.make_node("Cast", ["x"], ["y"], name="C", to=TP.BFLOAT16)])
    with pytest.raises(OnnxUnsupportedError, match=r"'C' \(Cast.*BFLOAT16"):
        gc.onnx.load(m)


def test_opset_newer_than_onnx():
    m = good()
    m.opset_import[0].version = onnx.defs.onnx_opset_version() + 1
    with pytest.raises(OnnxUnsupportedError, match="opset"):
        gc.onnx.load(m)


def test_tensor_data_shorter_or_longer_than_dims():
    t = numpy_helper.from_array(np.ones((4, 3), np.float32), "w")
    for raw in (t.raw_data[:-4], t.raw_data + b"\0\0\0\0"):
        bad = onnx.TensorProto()
        bad.CopyFrom(t)
        bad.raw_data = raw
        m = model([h.make_node("Identity", ["w"], ["y"])], inputs=[], inits=[bad])
        with pytest.raises(OnnxFormatError, match=r"tensor 'w' of dims \[4, 3\].*needs 48 bytes"):
            gc.onnx.load(m)
    typed = h.make_tensor("w", TP.FLOAT, [4, 3], [1.0] * 12)
    del typed.float_data[-1]
    m = model([h.make_node("Identity", ["w"], ["y"])], inputs=[], inits=[typed])
    with pytest.raises(OnnxFormatError, match="needs 12 elements, has 11"):
        gc.onnx.load(m)


def _external_model(location, offset=0, length=48):
    t = onnx.TensorProto()
    t.name = "w"
    t.data_type = TP.FLOAT
    t.dims.extend([4, 3])
    t.data_location = onnx.TensorProto.EXTERNAL
    for k, v in (("location", location), ("offset", str(offset)), ("length", str(length))):
        e = t.external_data.add()
        e.key, e.value = k, v
    return model([h.make_node("Identity", ["w"], ["y"])], inputs=[], inits=[t])


def test_external_data_loaded_inside_the_folder(tmp_path):
    w = np.arange(12, dtype=np.float32).reshape(4, 3)
    (tmp_path / "weights.bin").write_bytes(b"\xff" * 16 + w.tobytes())
    p = tmp_path / "m.onnx"
    p.write_bytes(_external_model("weights.bin", offset=16).SerializeToString())
    g = gc.onnx.load(str(p))
    np.testing.assert_array_equal(g.variables[0].init_value, w)
    with pytest.raises(OnnxFormatError, match="needs the model loaded from a path"):
        gc.onnx.load(p.read_bytes())


def test_external_data_escapes_refused(tmp_path):
    inner = tmp_path / "model"
    inner.mkdir()
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.zeros(12, np.float32).tobytes())
    os.symlink(secret, inner / "link.bin")
    for loc, msg in (("../secret.bin", "outside the model's folder"), (str(secret), "is absolute"),
                     ("link.bin", "outside the model's folder"), ("missing.bin", "does not exist")):
        p = inner / "m.onnx"
        p.write_bytes(_external_model(loc).SerializeToString())
        with pytest.raises(OnnxFormatError, match=msg):
            gc.onnx.load(str(p))
    (inner / "short.bin").write_bytes(b"\0" * 40)
    for loc, off, length, msg in (("short.bin", 0, 48, "outside the file"), ("short.bin", 8, 40, "outside the file"),
                                  ("short.bin", 0, 40, r"length 40 != 48")):
        p = inner / "m.onnx"
        p.write_bytes(_external_model(loc, off, length).SerializeToString())
        with pytest.raises(OnnxFormatError, match=msg):
            gc.onnx.load(str(p))


def test_cli_import_writes_nothing_on_failure(tmp_path, capsys):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(model([h.make_node("NoSuchOp", ["x"], ["y"], name="n0")]).SerializeToString())
    out = tmp_path / "out.pb"
    assert cli_main(["import", str(bad), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "NoSuchOp" in err and "n0" in err
    assert not out.exists() and sorted(os.listdir(tmp_path)) == ["bad.onnx"]
    trunc = tmp_path / "trunc.onnx"
    trunc.write_bytes(good().SerializeToString()[:-5])
    assert cli_main(["import", str(trunc), "-o", str(out)]) == 2
    assert not out.exists()


def test_cli_import_writes_a_model(tmp_path, capsys):
    src = tmp_path / "m.onnx"
    src.write_bytes(model([h.make_node("Transpose", ["x:0"], ["y"])],
                          inputs=[h.make_tensor_value_info("x:0", TP.FLOAT, ["N", 3])]).SerializeToString())
    out = tmp_path / "m.pb"
    assert cli_main(["import", str(src), "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "1 nodes" in text and "'x:0' -> 'x_0'" in text
    g = gc.load(str(out))
    assert [p.name for p in g.inputs] == ["x_0"] and g.inputs[0].shape == ("N", 3)
    assert cli_main(["import", str(src), "-o", str(out), "--shape", "x:0=5,3"]) == 0
    assert gc.load(str(out)).inputs[0].shape == (5, 3)


def test_cli_export_then_import(tmp_path, capsys):
    ort = pytest.importorskip("onnxruntime")
    with gc.Graph() as g:
        x = gc.placeholder("x", (2, 3))
        y = gc.transpose(gc.relu(x))
    g.set_outputs([y])
    g.save(str(tmp_path / "m.pb"))
    assert cli_main(["export", str(tmp_path / "m.pb"), "-o", str(tmp_path / "m.onnx")]) == 0
    assert "wrote" in capsys.readouterr().out
    xv = np.array([[-1, 2, 3], [4, -5, 6]], np.float32)
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_array_equal(sess.run(None, {"x": xv})[0], np.maximum(xv, 0).T)
    assert cli_main(["import", str(tmp_path / "m.onnx"), "-o", str(tmp_path / "back.pb")]) == 0
    back = gc.load(str(tmp_path / "back.pb"))
    out = gc.reference.evaluate(back, {"x": xv}, back.outputs)
    np.testing.assert_array_equal(out[back.outputs[0]], np.maximum(xv, 0).T)


def test_cli_export_fetch_picks_the_outputs(tmp_path):
    with gc.Graph() as g:
        x = gc.placeholder("x", (2, 3))
        r = gc.relu(x, name="r")
        y = gc.transpose(r, name="y")
    g.set_outputs([y])
    g.save(str(tmp_path / "m.pb"))
    assert cli_main(["export", str(tmp_path / "m.pb"), "-o", str(tmp_path / "m.onnx"), "--fetch", "r"]) == 0
    import onnx
    assert [o.name for o in onnx.load(str(tmp_path / "m.onnx")).graph.output] == ["r"]
    assert [o.name for o in gc.onnx.save(g, str(tmp_path / "d.onnx")).graph.output] == ["y"]
