"""Saving and loading models: exact round trips, external weights, and one test per
class of malformed file (each built by mutating a good model's protobuf message)."""

import hashlib
import os

import numpy as np
import pytest

import graphc as gc
from graphc import serialize
from graphc._proto import graphc_pb2 as pb
from graphc.errors import ModelFormatError

# -- helpers ------------------------------------------------------------------------------

def build_rich_graph():
    """A graph touching many ops, every dtype, every attr kind, scopes, roles, metadata
    and a training spec."""
    rng = np.random.default_rng(0)
    g = gc.Graph()
    with g:
        x = gc.placeholder("x", (None, 6))
        y = gc.placeholder("y", ("batch",), dtype="int64")
        flags = gc.placeholder("flags", (None, 4), dtype="bool")
        gc.placeholder("scalar", ())
        w_init = rng.standard_normal((6, 4)).astype(np.float32)
        w_init[0, 0] = np.nan
        w_init[0, 1] = -0.0
        w_init[0, 2] = np.inf
        w = gc.variable("w", (6, 4), init=w_init)
        gc.variable("w64", init=rng.standard_normal((3, 2)), dtype="float64")                      # float64
        gc.variable("i32", init=np.arange(-5, 5, dtype=np.int32), dtype="int32")
        gc.variable("i64", init=np.array([[2**62, -(2**62)]], dtype=np.int64), dtype="int64", trainable=False)
        gc.variable("mask", init=np.array([True, False, True]), dtype="bool", trainable=False)   # bool
        gc.variable("empty", init=np.zeros((0, 3), np.float32))
        gc.variable("s", init=np.float32(3.5))                                      # rank 0
        with gc.name_scope("layer1"):
            h = gc.relu(gc.matmul(x, w) + gc.constant(rng.standard_normal(4).astype(np.float32)))
        h = gc.where(flags, h, gc.constant(np.zeros(4, np.float32)))
        a, b = gc.split(h, 2, axis=1)
        c = gc.concat([b, a, a], axis=1)
        r = gc.reshape(c, (-1, 3, 2))
        total = gc.sum(r, axis=(1, 2), keepdims=False) + gc.sum(r)
        p = gc.pow(total, 2.0)
        gc.cast(y, "float64")
        gc.constant(np.array([[1, 2]], dtype=np.int32))
        gc.constant(np.array(True))
        gc.constant(np.arange(4, dtype=np.float64))
        loss = gc.softmax_cross_entropy(gc.matmul(x, w), y)
    g.set_outputs([loss, p])
    g.nodes[-1].role = "gradient"
    g.metadata = {"author": "tests", "dataset": "none"}
    g.training = gc.optim.TrainingSpec(loss=loss.name, var_list=["w"],
                                       optimizer=gc.optim.OptimizerSpec("sgd", {"lr": 0.1}))
    return g


def test_training_spec_converts_to_the_message_and_back():
    spec = gc.optim.TrainingSpec(loss="loss", var_list=["w", "b"],
                                 optimizer=gc.optim.OptimizerSpec("adam", {"lr": 0.5, "beta1": 0.25}, 2.0))
    msg = serialize.training_to_proto(spec)
    assert isinstance(msg, pb.TrainingSpec)
    assert (msg.loss, list(msg.var_list), msg.optimizer.kind, msg.optimizer.clip_global_norm) == \
        ("loss", ["w", "b"], "adam", 2.0)
    assert dict(msg.optimizer.hyperparameters) == {"lr": 0.5, "beta1": 0.25}
    assert serialize.training_from_proto(msg) == spec
    assert serialize.training_to_proto(msg) == msg   # a message is accepted as it is
    with pytest.raises(ModelFormatError, match="TrainingSpec"):
        serialize.training_to_proto({"loss": "loss"})


def assert_graphs_equal(a, b):
    assert [(p.name, p.dtype, p.shape, p.provenance) for p in a.inputs] == \
        [(p.name, p.dtype, p.shape, p.provenance) for p in b.inputs]
    assert len(a.variables) == len(b.variables)
    for va, vb in zip(a.variables, b.variables):
        assert (va.name, va.dtype, va.shape, va.trainable, va.provenance) == \
            (vb.name, vb.dtype, vb.shape, vb.trainable, vb.provenance)
        assert va.init_value.dtype == vb.init_value.dtype
        assert va.init_value.shape == vb.init_value.shape
        assert va.init_value.tobytes() == vb.init_value.tobytes()   # bit-identical, NaN and -0.0 included
    assert len(a.nodes) == len(b.nodes)
    for na, nb in zip(a.nodes, b.nodes):
        assert (na.name, na.op, na.inputs, na.outputs, na.role, na.provenance, na.scope) == \
            (nb.name, nb.op, nb.inputs, nb.outputs, nb.role, nb.provenance, nb.scope)
        assert sorted(na.attrs) == sorted(nb.attrs)
        for key, va in na.attrs.items():
            vb = nb.attrs[key]
            if isinstance(va, np.ndarray):
                assert isinstance(vb, np.ndarray)
                assert va.dtype == vb.dtype and va.shape == vb.shape and va.tobytes() == vb.tobytes()
            else:
                assert type(va) is type(vb) and va == vb, (na.name, key, va, vb)
    assert a.outputs == b.outputs
    assert a.metadata == b.metadata
    assert a.training == b.training
    assert {k: (t.dtype, t.shape) for k, t in a.values.items()} == {k: (t.dtype, t.shape) for k, t in b.values.items()}


def read(path):
    with open(path, "rb") as f:
        return f.read()


@pytest.fixture
def good(tmp_path):
    """(path, Model message) of a saved model with external weights."""
    path = tmp_path / "model.pb"
    build_rich_graph().save(str(path), external_threshold=32)
    model = pb.Model()
    model.ParseFromString(read(path))
    return path, model


def write_model(path, model):
    with open(path, "wb") as f:
        f.write(model.SerializeToString())


def expect_error(path, model, *fragments):
    write_model(path, model)
    with pytest.raises(ModelFormatError) as info:
        serialize.load(str(path))
    for fragment in fragments:
        assert fragment in str(info.value), str(info.value)
    return info.value


def node_of(model, op):
    return next(n for n in model.graph.nodes if n.op == op)


def variable_of(model, name):
    return next(v for v in model.graph.variables if v.name == name)


# -- round trips --------------------------------------------------------------------------

def test_round_trip_inline_is_exact(tmp_path):
    g = build_rich_graph()
    path = tmp_path / "model.pb"
    serialize.save(g, str(path), external_threshold=1 << 30)
    assert not os.path.exists(str(path) + ".weights")
    g2 = serialize.load(str(path))
    assert isinstance(g2, gc.Graph)
    assert_graphs_equal(g, g2)
    again = tmp_path / "again" / "model.pb"
    again.parent.mkdir()
    serialize.save(g2, str(again), external_threshold=1 << 30)
    assert read(again) == read(path)


def test_every_dtype_and_attr_kind_is_covered():
    g = build_rich_graph()
    assert {v.dtype for v in g.variables} == set(gc.dtypes.ALL)
    kinds = {gc.registry.get_op(n.op).attrs[k].kind for n in g.nodes for k, v in n.attrs.items() if v is not None}
    assert kinds >= {"int", "float", "bool", "ints", "dtype", "tensor"}


def test_same_graph_gives_same_bytes(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    build_rich_graph().save(str(tmp_path / "a" / "m.pb"), external_threshold=32)
    build_rich_graph().save(str(tmp_path / "b" / "m.pb"), external_threshold=32)
    for name in ("m.pb", "m.pb.weights"):
        assert read(tmp_path / "a" / name) == read(tmp_path / "b" / name)


def test_model_to_proto_and_back():
    g = build_rich_graph()
    model = serialize.model_to_proto(g)
    assert model.format_version == 1 and model.min_consumer_version == 1
    assert model.producer_name == "graphc"
    assert not any(v.init.HasField("external") for v in model.graph.variables)
    g2 = serialize.graph_from_proto(model, None)
    assert_graphs_equal(g, g2)


def test_proto_fields(tmp_path):
    g = build_rich_graph()
    model = serialize.model_to_proto(g)
    x = model.graph.inputs[0]
    assert x.shape.dims[0].WhichOneof("value") == "symbol" and x.shape.dims[0].symbol == ""
    assert x.shape.dims[1].size == 6
    assert model.graph.inputs[1].shape.dims[0].symbol == "batch"
    assert list(model.graph.outputs) == g.outputs
    assert dict(model.metadata) == {"author": "tests", "dataset": "none"}
    assert model.graph.nodes[-1].role == pb.GRADIENT
    assert any(n.scope == "layer1" for n in model.graph.nodes)
    # optional attrs left at None are absent, not encoded
    for n, node in zip(model.graph.nodes, g.nodes):
        assert set(n.attrs) == {k for k, v in node.attrs.items() if v is not None}


def test_stored_order_need_not_be_topological(good, tmp_path):
    path, model = good
    nodes = list(model.graph.nodes)
    del model.graph.nodes[:]
    model.graph.nodes.extend(reversed(nodes))
    write_model(path, model)
    g = serialize.load(str(path))
    assert [n.name for n in g.nodes] == [n.name for n in reversed(nodes)]
    out = tmp_path / "resaved" / "model.pb"
    out.parent.mkdir()
    g.save(str(out), external_threshold=32)
    assert read(out) == model.SerializeToString(deterministic=True)


def test_loaded_graph_evaluates_like_the_original(tmp_path):
    g = build_rich_graph()
    path = tmp_path / "model.pb"
    g.save(str(path), external_threshold=32)
    g2 = serialize.load(str(path))
    rng = np.random.default_rng(1)
    feeds = {"x": rng.standard_normal((3, 6)).astype(np.float32), "y": np.array([0, 3, 1]),
             "flags": rng.random((3, 4)) < 0.5, "scalar": np.float32(2.0)}
    fetches = [n.outputs[0] for n in g.nodes]
    want = gc.reference.evaluate(g, feeds, fetches)
    got = gc.reference.evaluate(g2, feeds, fetches)
    for name in fetches:
        np.testing.assert_array_equal(np.asarray(got[name]), np.asarray(want[name]), err_msg=name)


def test_mutated_files_raise_only_model_format_error(good):
    """A small deterministic fuzz: random byte edits either load or raise ModelFormatError."""
    path, model = good
    data = model.SerializeToString(deterministic=True)
    rng = np.random.default_rng(7)
    for _ in range(300):
        b = bytearray(data)
        for _ in range(int(rng.integers(1, 4))):
            i = int(rng.integers(len(b)))
            if rng.random() < 0.7:
                b[i] = int(rng.integers(256))
            else:
                del b[i:i + int(rng.integers(1, 8))]
        path.write_bytes(bytes(b))
        try:
            serialize.load(str(path))
        except ModelFormatError:
            pass


# -- external weights ---------------------------------------------------------------------

def test_external_weights(tmp_path):
    g = build_rich_graph()
    path = tmp_path / "model.pb"
    g.save(str(path), external_threshold=32)
    weights = str(path) + ".weights"
    assert os.path.isfile(weights)
    model = pb.Model()
    model.ParseFromString(read(path))
    externals = [(v.name, v.init) for v in model.graph.variables if v.init.HasField("external")]
    externals += [(n.name, n.attrs["value"].tensor) for n in model.graph.nodes
                  if n.op == "constant" and n.attrs["value"].tensor.HasField("external")]
    assert {name for name, _ in externals} >= {"w", "w64", "i32"}
    data = read(weights)
    for _name, t in externals:
        ext = t.external
        assert ext.location == "model.pb.weights"
        assert ext.offset % 4096 == 0
        assert t.raw_data == b""
        assert hashlib.sha256(data[ext.offset:ext.offset + ext.length]).hexdigest() == ext.sha256
    for v in g.variables:
        t = variable_of(model, v.name).init
        if t.HasField("external"):
            mm = np.memmap(weights, dtype=v.dtype, mode="r", offset=t.external.offset, shape=v.shape)
            assert np.asarray(mm).tobytes() == v.init_value.tobytes()
        else:
            assert v.init_value.nbytes <= 32
    g2 = serialize.load(str(path))
    assert_graphs_equal(g, g2)
    out = tmp_path / "again" / "model.pb"
    out.parent.mkdir()
    g2.save(str(out), external_threshold=32)
    assert read(out) == read(path)
    assert read(str(out) + ".weights") == data


def test_save_is_atomic_and_overwrites(tmp_path):
    path = tmp_path / "model.pb"
    build_rich_graph().save(str(path), external_threshold=32)
    first = read(path)
    build_rich_graph().save(str(path), external_threshold=32)
    assert read(path) == first
    assert sorted(os.listdir(tmp_path)) == ["model.pb", "model.pb.weights"]   # no temp files left


def test_inline_budget_forces_external(tmp_path, monkeypatch):
    """Models over protobuf's 2 GB limit: once the inline total would pass the budget,
    tensors go external whatever the threshold, so the .pb stays small."""
    monkeypatch.setattr(serialize, "INLINE_BUDGET", 10_000)
    g = gc.Graph()
    with g:
        x = gc.placeholder("x", (None, 1000))
        vs = [gc.variable(f"v{i}", init=np.full((1000,), i, np.float32)) for i in range(5)]   # 4000 bytes each
        for v in vs:
            x = x + v
    path = tmp_path / "big.pb"
    g.save(str(path), external_threshold=1 << 40)
    model = pb.Model()
    model.ParseFromString(read(path))
    external = [v.name for v in model.graph.variables if v.init.HasField("external")]
    assert external == ["v2", "v3", "v4"]
    assert os.path.getsize(path) < 10_000 + 4096
    assert_graphs_equal(g, serialize.load(str(path)))
    with pytest.raises(ModelFormatError, match="2 GiB"):
        serialize.model_to_proto(g)


def test_external_data_beyond_4gib_offset(tmp_path):
    """Offsets past 4 GiB load (a sparse file, so nothing large is written)."""
    path = tmp_path / "model.pb"
    g = gc.Graph()
    with g:
        gc.variable("w", init=np.arange(1024, dtype=np.float32))
    g.save(str(path), external_threshold=16)
    model = pb.Model()
    model.ParseFromString(read(path))
    ext = variable_of(model, "w").init.external
    payload = read(str(path) + ".weights")[ext.offset:ext.offset + ext.length]
    offset = 5 * 2**30
    with open(str(path) + ".weights", "r+b") as f:
        try:
            f.truncate(offset + len(payload))
        except OSError as e:
            pytest.skip(f"no sparse files here: {e}")
        f.seek(offset)
        f.write(payload)
    ext.offset = offset
    write_model(path, model)
    assert serialize.load(str(path)).variables[0].init_value.tobytes() == payload


# -- malformed files: one test per class ----------------------------------------------------

def test_missing_file(tmp_path):
    with pytest.raises(ModelFormatError, match="no such model file"):
        serialize.load(str(tmp_path / "nope.pb"))


def test_empty_file(tmp_path):
    path = tmp_path / "model.pb"
    path.write_bytes(b"")
    with pytest.raises(ModelFormatError, match="empty"):
        serialize.load(str(path))


@pytest.mark.parametrize("data", [b"\xff\xff\xff\xff", b"hello, this is not a model", b"\x08"])
def test_not_protobuf(tmp_path, data):
    path = tmp_path / "model.pb"
    path.write_bytes(data)
    with pytest.raises(ModelFormatError):
        serialize.load(str(path))


def test_truncated(good):
    path, model = good
    data = model.SerializeToString(deterministic=True)
    for cut in (1, 5, len(data) // 3, len(data) // 2, len(data) - 1):
        path.write_bytes(data[:cut])
        with pytest.raises(ModelFormatError):
            serialize.load(str(path))


def test_unknown_op(good):
    path, model = good
    node_of(model, "relu").op = "no_such_op"
    expect_error(path, model, "unknown op", "no_such_op")


def test_unsupported_version(good):
    path, model = good
    model.min_consumer_version = 2
    expect_error(path, model, "unsupported format")


def test_not_a_graphc_model(good):
    path, model = good
    model.format_version = 0
    expect_error(path, model, "format_version")


def test_dangling_input(good):
    path, model = good
    n = node_of(model, "relu")
    n.inputs[0] = "ghost"
    expect_error(path, model, "ghost", n.name, "dangling")


def test_cycle(good):
    path, model = good
    relu = node_of(model, "relu")
    split = node_of(model, "split")
    relu.inputs[0] = split.outputs[0]
    expect_error(path, model, "cycle", relu.name)


def test_self_loop(good):
    path, model = good
    relu = node_of(model, "relu")
    relu.inputs[0] = relu.name
    expect_error(path, model, "cycle", relu.name)


@pytest.mark.parametrize("what", ["placeholder-variable", "node-variable", "node-node", "node-placeholder"])
def test_duplicate_name(good, what):
    path, model = good
    g = model.graph
    if what == "placeholder-variable":
        g.variables[0].name = g.inputs[0].name
        dup = g.inputs[0].name
    elif what == "node-variable":
        g.nodes[0].name = g.variables[0].name
        g.nodes[0].outputs[0] = g.variables[0].name
        dup = g.variables[0].name
    elif what == "node-node":
        single = [n for n in g.nodes if len(n.outputs) == 1]
        single[1].name = single[0].name
        single[1].outputs[0] = single[0].name
        dup = single[0].name
    else:
        g.nodes[0].name = g.inputs[0].name
        g.nodes[0].outputs[0] = g.inputs[0].name
        dup = g.inputs[0].name
    expect_error(path, model, "duplicate name", dup)


def test_raw_data_length_mismatch(good):
    path, model = good
    var = variable_of(model, "mask")
    var.init.raw_data = var.init.raw_data[:-1]
    expect_error(path, model, "'mask'", "raw_data")


def test_bool_data_not_0_or_1(good):
    path, model = good
    var = variable_of(model, "mask")
    var.init.raw_data = b"\x01\x02\x00"
    expect_error(path, model, "'mask'", "bool")


@pytest.mark.parametrize("code", [0, 99])
def test_invalid_dtype(good, code):
    path, model = good
    model.graph.inputs[0].dtype = code
    expect_error(path, model, "invalid dtype", model.graph.inputs[0].name)


def test_invalid_tensor_dtype(good):
    path, model = good
    var = variable_of(model, "mask")
    var.dtype = 42
    var.init.dtype = 42
    expect_error(path, model, "invalid dtype", "'mask'")


def test_external_missing(good):
    path, model = good
    os.unlink(str(path) + ".weights")
    expect_error(path, model, "missing", "'w'")


@pytest.mark.parametrize("location", ["/etc/passwd", "../model.pb.weights", "sub/../../model.pb.weights", ""])
def test_external_path_outside_folder(good, location):
    path, model = good
    variable_of(model, "w").init.external.location = location
    expect_error(path, model, "'w'")


def test_external_symlink_escape(good, tmp_path):
    path, model = good
    outside = tmp_path.parent / (tmp_path.name + "_outside.bin")
    outside.write_bytes(read(str(path) + ".weights"))
    link = tmp_path / "link.weights"
    try:
        os.symlink(str(outside), str(link))
    except (OSError, NotImplementedError) as e:
        pytest.skip(f"no symlinks: {e}")
    variable_of(model, "w").init.external.location = "link.weights"
    expect_error(path, model, "outside the model's folder", "'w'")


def test_external_sha256_mismatch(good):
    path, model = good
    ext = variable_of(model, "w").init.external
    weights = str(path) + ".weights"
    data = bytearray(read(weights))
    data[ext.offset] ^= 0xFF
    with open(weights, "wb") as f:
        f.write(data)
    expect_error(path, model, "SHA-256", "'w'")


def test_external_beyond_end_of_file(good):
    path, model = good
    ext = variable_of(model, "w").init.external
    ext.offset = os.path.getsize(str(path) + ".weights") - ext.length + 8
    expect_error(path, model, "beyond", "'w'")


def test_external_length_mismatch(good):
    path, model = good
    variable_of(model, "w").init.external.length -= 4
    expect_error(path, model, "length", "'w'")


def test_negative_dim(good):
    path, model = good
    var = variable_of(model, "i32")
    var.dims[0] = -10
    var.init.dims[0] = -10
    expect_error(path, model, "negative", "'i32'")


def test_placeholder_negative_dim(good):
    path, model = good
    model.graph.inputs[0].shape.dims[1].size = -1
    expect_error(path, model, "invalid dimension", "'x'")


def test_overflowing_dims_refused_before_allocation(good):
    path, model = good
    n = node_of(model, "constant")
    t = n.attrs["value"].tensor
    del t.dims[:]
    t.dims.extend([2**40, 2**40, 2**40])
    expect_error(path, model, "too large", n.name)


def test_variable_init_mismatch(good):
    path, model = good
    variable_of(model, "w").dims[0] = 7
    expect_error(path, model, "'w'", "initial value")


def test_unknown_attr(good):
    path, model = good
    n = node_of(model, "concat")
    n.attrs["bogus"].i = 1
    expect_error(path, model, "unknown attr", "bogus", n.name)


def test_missing_required_attr(good):
    path, model = good
    n = node_of(model, "concat")
    del n.attrs["axis"]
    expect_error(path, model, "missing required attr", "axis", n.name)


@pytest.mark.parametrize("op,attr,kind", [("concat", "axis", "f"), ("reshape", "shape", "i"),
                                          ("cast", "to", "s"), ("constant", "value", "ints")])
def test_attr_of_wrong_kind(good, op, attr, kind):
    path, model = good
    n = node_of(model, op)
    a = n.attrs[attr]
    if kind == "f":
        a.f = 1.0
    elif kind == "i":
        a.i = 3
    elif kind == "s":
        a.s = "float32"
    else:
        a.ints.values.extend([1, 2])
    expect_error(path, model, attr, n.name, "kind")


def test_attr_with_no_value(good):
    path, model = good
    n = node_of(model, "concat")
    n.attrs["axis"].Clear()
    expect_error(path, model, "axis", n.name)


def test_wrong_number_of_inputs(good):
    path, model = good
    n = node_of(model, "matmul")
    del n.inputs[1]
    expect_error(path, model, "expects 2 inputs", n.name)


def test_output_names_inconsistent(good):
    path, model = good
    n = node_of(model, "relu")
    n.outputs[0] = "somewhere_else"
    expect_error(path, model, "inconsistent", n.name)


def test_output_count_differs_from_op(good):
    path, model = good
    n = node_of(model, "split")
    n.outputs.append(f"{n.name}:{len(n.outputs)}")
    expect_error(path, model, "output", n.name)


def test_no_outputs(good):
    path, model = good
    n = node_of(model, "relu")
    del n.outputs[:]
    expect_error(path, model, "no outputs", n.name)


def test_inference_failure_names_node(good):
    path, model = good
    n = node_of(model, "concat")
    n.attrs["axis"].i = 7
    expect_error(path, model, n.name, "inference failed")


def test_inference_dtype_failure_names_node(good):
    path, model = good
    n = node_of(model, "matmul")
    n.inputs[1] = "i32"
    expect_error(path, model, n.name, "inference failed")


def test_invalid_role(good):
    path, model = good
    n = node_of(model, "relu")
    n.role = 17
    expect_error(path, model, "role", n.name)


def test_unknown_graph_output(good):
    path, model = good
    model.graph.outputs.append("ghost")
    expect_error(path, model, "ghost")


def test_training_loss_unknown(good):
    path, model = good
    model.training.loss = "ghost"
    expect_error(path, model, "training", "ghost")
