"""Error messages repeat at most a few hundred characters of a user's bytes: a model
whose names, attrs or paths are megabytes long fails validation with a short message
(graphc.errors.quote) that still shows the start of the offending name and its length.
Checkpoint and feed messages are checked the same way in test_checkpoint.py and
test_feeds.py."""

import re

import pytest

import graphc as gc
from graphc import serialize
from graphc.errors import ModelFormatError

HUGE = 10 << 20          # 10 MB of name
LIMIT = 2000             # what "a short message" means here


def _model():
    with gc.Graph() as g:
        x = gc.placeholder("x", (None, 4))
        y = gc.placeholder("y", (None,), dtype="int64")
        w = gc.variable("w", (4, 3), init=gc.init.ones())
        h = gc.concat([x @ w, x @ w], axis=1)
        loss = gc.softmax_cross_entropy(h, y)
    g.set_outputs([loss])
    return serialize.model_to_proto(g)


def _node(model, op):
    return next(n for n in model.graph.nodes if n.op == op)


def _rename_node(model, node, new):
    """Rename a single-output node and every reference to its output, consistently."""
    old = node.name
    node.name = new
    node.outputs[0] = new
    for n in model.graph.nodes:
        for i, name in enumerate(n.inputs):
            if name == old:
                n.inputs[i] = new
    for i, name in enumerate(model.graph.outputs):
        if name == old:
            model.graph.outputs[i] = new


def _spoil(case):
    model = _model()
    big = "n" * HUGE
    g = model.graph
    if case == "node name, inference fails":
        n = _node(model, "concat")
        _rename_node(model, n, big)
        n.attrs["axis"].i = 7
        return model, "inference failed"
    if case == "node name, wrong arity":
        n = _node(model, "concat")
        _rename_node(model, n, big)
        n.op = "relu"
        return model, "expects 1 input"
    if case == "node name, unknown attr":
        n = _node(model, "concat")
        _rename_node(model, n, big)
        n.attrs["nope"].i = 1
        return model, "unknown attr 'nope'"
    if case == "attr name":
        _node(model, "concat").attrs[big].i = 1
        return model, "unknown attr 'nnnn"
    if case == "str attr value":
        _node(model, "softmax_cross_entropy").attrs["reduction"].s = big
        return model, "reduction"
    if case == "op name":
        _node(model, "concat").op = big
        return model, "unknown op 'nnnn"
    if case == "placeholder name with ':'":
        g.inputs[0].name = big + ":0"
        return model, "must not contain ':'"
    if case == "duplicate variable name":
        g.inputs[0].name = big
        g.variables[0].name = big
        return model, "duplicate name 'nnnn"
    if case == "dangling input":
        _node(model, "concat").inputs[0] = big
        return model, "has no producer"
    if case == "graph output":
        g.outputs.append(big)
        return model, "graph output 'nnnn"
    if case == "training loss":
        model.training.loss = big
        return model, "training spec: loss 'nnnn"
    if case == "external location":
        v = g.variables[0].init
        v.external.location = big
        v.external.length = len(v.raw_data)
        v.raw_data = b""
        return model, "external"
    if case == "output list":
        n = _node(model, "concat")
        n.outputs.extend([big] * 3)
        return model, "inconsistent"
    raise AssertionError(case)


CASES = ["node name, inference fails", "node name, wrong arity", "node name, unknown attr", "attr name",
         "str attr value", "op name", "placeholder name with ':'", "duplicate variable name", "dangling input",
         "graph output", "training loss", "external location", "output list"]


@pytest.mark.parametrize("case", CASES)
def test_huge_user_bytes_give_a_short_message(case, tmp_path):
    model, fragment = _spoil(case)
    with pytest.raises(ModelFormatError) as info:
        serialize.graph_from_proto(model, str(tmp_path))
    msg = str(info.value)
    assert fragment in msg
    assert len(msg) < LIMIT, (len(msg), msg[:300])


def test_huge_node_name_through_a_file(tmp_path):
    model, _ = _spoil("node name, inference fails")
    path = tmp_path / "m.pb"
    path.write_bytes(model.SerializeToString())
    with pytest.raises(ModelFormatError) as info:
        serialize.load(path)
    msg = str(info.value)
    assert len(msg) < LIMIT and "inference failed" in msg
    # the op's own message (it names the node in full) loses its middle, keeping what was
    # wrong and where the node was built
    cut = re.search(r" … \[(\d+) characters cut\] … ", msg)
    assert cut and int(cut[1]) > HUGE - LIMIT
    assert "out of range" in msg and re.search(r"built at .*test_bounded_messages.py:\d+$", msg)


def test_normal_names_read_as_before():
    # Short names are shown unquoted in op(name=...) and quoted elsewhere, as they always were.
    model = _model()
    n = _node(model, "concat")
    n.attrs["axis"].i = 7
    with pytest.raises(ModelFormatError, match=r"concat\(name=concat\)"):
        serialize.graph_from_proto(model)
    model = _model()
    _node(model, "concat").attrs["nope"].i = 1
    with pytest.raises(ModelFormatError, match=r"concat\(name=concat\): unknown attr 'nope'"):
        serialize.graph_from_proto(model)
