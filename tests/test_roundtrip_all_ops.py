"""Save/load round trip of one graph holding every op of the registry (every example,
so every dtype and attr kind the ops use), and a property test of broadcasting."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import graphc as gc
from graphc import registry


def _every_op_graph():
    g = gc.Graph()
    rng = np.random.default_rng(0)
    feeds = {}
    with g:
        for op in registry.all_ops():
            for k, ex in enumerate(op.examples(rng)[:12]):
                ins = []
                for i, x in enumerate(ex.inputs):
                    name = f"{op.name}_{k}_in{i}"
                    ins.append(gc.placeholder(name, x.shape, x.dtype.name))
                    feeds[name] = x
                g.add_node(op.name, ins, ex.attrs, name=f"{op.name}_{k}")
    return g, feeds


def test_every_op_round_trips_bit_identically(tmp_path):
    g, feeds = _every_op_graph()
    assert {n.op for n in g.nodes} == {op.name for op in registry.all_ops()}
    g.save(tmp_path / "all.pb")
    loaded = gc.load(tmp_path / "all.pb")
    assert [(n.name, n.op, n.inputs, n.outputs) for n in loaded.nodes] == \
        [(n.name, n.op, n.inputs, n.outputs) for n in g.nodes]
    for a, b in zip(g.nodes, loaded.nodes):
        assert a.attrs.keys() == b.attrs.keys(), a.name
        for key in a.attrs:
            va, vb = a.attrs[key], b.attrs[key]
            if isinstance(va, np.ndarray):
                assert va.dtype == vb.dtype and va.shape == vb.shape and va.tobytes() == vb.tobytes()
            else:
                assert va == vb, (a.name, key)
    loaded.save(tmp_path / "again.pb")
    assert (tmp_path / "all.pb").read_bytes() == (tmp_path / "again.pb").read_bytes()
    # and the loaded graph computes the same thing
    fetches = [n.outputs[0] for n in g.nodes if n.op in ("matmul", "softmax", "cast", "slice", "one_hot")]
    want = gc.reference.evaluate(g, feeds, fetches)
    got = gc.reference.evaluate(loaded, feeds, fetches)
    for name in fetches:
        np.testing.assert_array_equal(got[name], want[name])


dims = st.integers(min_value=0, max_value=4)


@st.composite
def broadcastable(draw):
    out = draw(st.lists(dims, min_size=0, max_size=4))
    def operand():
        rank = draw(st.integers(min_value=0, max_value=len(out)))
        tail = out[len(out) - rank:]
        return tuple(d if draw(st.booleans()) else 1 for d in tail)
    return operand(), operand()


@settings(max_examples=80, deadline=None)
@given(broadcastable())
def test_broadcast_inference_matches_numpy(shapes):
    a, b = shapes
    with gc.Graph() as g:
        x = gc.placeholder("a", a)
        y = gc.placeholder("b", b)
        z = x * y
    want = np.broadcast_shapes(a, b)
    assert z.shape == want
    out = gc.reference.evaluate(g, {"a": np.ones(a, np.float32), "b": np.ones(b, np.float32)}, [z])
    assert out[z].shape == want
