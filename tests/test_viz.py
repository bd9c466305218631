"""graphc.viz: DOT text of graphs and plans (labels, roles, clusters, collapse, depth,
tooltips), rendering, and the fallback without graphviz's dot program."""

import shutil

import graphviz
import pytest

import graphc as gc
import graphc.viz as viz
from graphc.errors import GraphcError


def build():
    with gc.Graph() as g:
        x = gc.placeholder("x", ("batch", 4))
        with gc.name_scope("enc"):
            with gc.name_scope("l1"):
                w1 = gc.variable("w", (4, 5), init=gc.init.ones())
                h = gc.relu(x @ w1)
            with gc.name_scope("l2"):
                w2 = gc.variable("w", (5, 2), init=gc.init.ones())
                z = gc.tanh(h @ w2)
        s = gc.sum(z, axis=1, keepdims=True)
        # a node with another role, as the autodiff pass would add
        g.add_node("neg", [s], role="gradient", name="fake_grad")
    return g


def test_to_digraph_returns_a_graphviz_digraph():
    d = viz.to_digraph(build())
    assert isinstance(d, graphviz.Digraph)
    assert d.source == viz.to_dot(build())  # deterministic


def test_labels_edges_and_attrs():
    dot = viz.to_dot(build())
    assert '"matmul\\nenc/l1/matmul"' in dot
    assert "sum\\nsum\\naxes=(1), keepdims=True" in dot
    assert 'label="f32[batch,4]"' in dot                 # edge: dtype and symbolic shape
    assert '"x\\ninput f32[batch,4]"' in dot
    assert "cylinder" in dot                             # variables


def test_colours_by_role():
    dot = viz.to_dot(build())
    fake = next(line for line in dot.splitlines() if "fake_grad" in line and "label" in line)
    assert viz.ROLE_COLORS["gradient"] in fake
    relu = next(line for line in dot.splitlines() if "enc/l1/relu" in line and "label" in line)
    assert viz.ROLE_COLORS["forward"] in relu


def test_nested_scopes_are_nested_clusters():
    dot = viz.to_dot(build())
    enc, l1, l2 = dot.index("subgraph cluster_enc {"), dot.index('subgraph "cluster_enc/l1"'), \
        dot.index('subgraph "cluster_enc/l2"')
    assert enc < l1 < l2


def test_collapse_and_depth():
    collapsed = viz.to_dot(build(), collapse=True)
    assert "cluster_" not in collapsed
    assert '"enc\\n4 nodes\\nmatmul×2, relu×1, tanh×1\\n2 variables"' in collapsed
    depth1 = viz.to_dot(build(), depth=1)
    assert "subgraph cluster_enc" in depth1 and "cluster_enc/l1" not in depth1
    assert '"enc/l1\\n2 nodes' in depth1 and "box3d" in depth1
    assert viz.to_dot(build(), depth=5) == viz.to_dot(build())
    with pytest.raises(ValueError):
        viz.to_digraph(build(), depth=-1)


def test_tooltips_name_provenance():
    dot = viz.to_dot(build())
    assert "enc/l1/relu — built at" in dot and "test_viz.py:" in dot


def test_plan_edges_show_arena_offsets():
    plan = gc.compile(build(), shapes={"x": (3, 4)})
    dot = viz.to_dot(plan)
    v = plan.values[plan.value_index("enc/l1/relu")]
    assert f'"f32[3,5]\\n@{v.offset} +{v.nbytes}B"' in dot
    assert "persistent" in dot and "peripheries=2" in dot   # variables, fetched node


def test_draw_dot_and_bad_extension(tmp_path):
    assert viz.draw(build(), tmp_path / "g.dot") == str(tmp_path / "g.dot")
    assert (tmp_path / "g.dot").read_text().startswith("digraph")
    with pytest.raises(GraphcError, match=".svg"):
        viz.draw(build(), tmp_path / "g.bmp")


@pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz's dot program is not installed")
@pytest.mark.parametrize("ext, magic", [("svg", b"<?xml"), ("png", b"\x89PNG"), ("pdf", b"%PDF")])
def test_draw_renders(tmp_path, ext, magic):
    path = tmp_path / f"g.{ext}"
    viz.draw(build(), path)
    assert path.read_bytes().startswith(magic)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_without_dot_the_dot_file_is_written(tmp_path, monkeypatch):
    monkeypatch.setattr(viz.shutil, "which", lambda name: None)
    (tmp_path / "g.svg").write_text("old drawing")
    with pytest.raises(viz.GraphvizNotFoundError, match="apt-get install graphviz") as info:
        viz.draw(build(), tmp_path / "g.svg")
    assert info.value.dot_path == str(tmp_path / "g.dot")
    assert (tmp_path / "g.dot").read_text().startswith("digraph")
    assert (tmp_path / "g.svg").read_text() == "old drawing"


def _entries_graph():
    with gc.Graph() as g:
        x = gc.placeholder("x", (2, 3))
        t = gc.placeholder("t", (2, 4))
        w = gc.variable("w", (3, 4), init=gc.init.ones())
        y = gc.matmul(x, w, name="y")
        z = gc.relu(y, name="z")
        d = z - t
        gc.optim.SGD(0.1).minimize(gc.mean(d * d, name="loss"), name="train")
        g.entry("infer", fetches=[y])
    return g


def test_entry_of_a_graph_draws_the_part_it_computes():
    g = _entries_graph()
    infer = viz.to_dot(g, entry="infer")
    train = viz.to_dot(g, entry="train")
    assert "matmul\\ny" in infer and "relu" not in infer and "t\\ninput" not in infer
    assert "relu" in train and "t\\ninput" in train and "loss" in train
    with pytest.raises(GraphcError, match="no entry 'nope'.*'train', 'infer'"):
        viz.to_dot(g, entry="nope")


def test_a_program_draws_one_entry_plan(tmp_path):
    g = _entries_graph()
    prog = gc.compile(g, entries="all")
    dot = viz.to_dot(prog, entry="train")
    assert "step 0" in dot and "sgd" in dot.lower()
    assert "sgd" not in viz.to_dot(prog, entry="infer").lower()
    with pytest.raises(GraphcError, match="2 entries; name the one to draw"):
        viz.to_dot(prog)
    with pytest.raises(GraphcError, match="no entry 'nope'"):
        viz.to_dot(prog, entry="nope")
    path = tmp_path / "m.program"
    prog.save(str(path))
    assert viz.to_dot(str(path), entry="infer") == viz.to_dot(prog, entry="infer")
    # A plan: entry= must be its own entry name.
    plan = prog.plan("infer")
    assert viz.to_dot(plan, entry="infer") == viz.to_dot(plan)
    with pytest.raises(GraphcError, match="one compiled plan"):
        viz.to_dot(plan, entry="train")
