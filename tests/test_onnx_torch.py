"""PyTorch models through ONNX into graphc (issue 15's round trips from torch).

The fixtures in tests/data/onnx/ were exported by ``torch.onnx.export`` with
tools/make_onnx_fixtures.py (manifest.json records the torch version, exporter, opset and the
ONNX ops of each) together with torch's outputs for fixed inputs, so these tests need no
torch: each model imports (gc.onnx.load), compiles and runs in graphc, and matches torch's
outputs within 1e-4 relative; the imported ResNet trains after a loss and SGD are appended.
When torch is importable, models are also re-exported live (a fresh seed) and compared.
"""

import json
import os
import sys

import numpy as np
import pytest

import graphc as gc

onnx = pytest.importorskip("onnx")

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "data", "onnx")
TOOLS = os.path.join(os.path.dirname(HERE), "tools")
with open(os.path.join(DATA, "manifest.json")) as _f:
    MANIFEST = json.load(_f)
NAMES = sorted(MANIFEST)
MAX_FIXTURE_BYTES = 2 * 2**20

# Relative tolerance of the issue (1e-4) plus an absolute floor of 1e-5 of the output's largest
# magnitude: torch and graphc both compute in float32 but sum the dot products (up to 288 terms
# in the ResNet's convs, 128 in the MLP, the attention and feed-forward sums in the Transformer)
# in different orders, so an output that cancels to near zero carries a rounding error of
# the order of eps × the magnitude of its terms, not of itself.  onnxruntime differs from torch
# by at most 1.5e-7 of the largest magnitude on these fixtures; the floor leaves a 60x margin
# and still fails any real mistake (a wrong weight, transpose or gate order moves outputs by
# a large fraction of their scale).
RTOL, ATOL_SCALE = 1e-4, 1e-5


def fixture(name):
    """(path of NAME.onnx, {input name: array}, {output name: torch's array})."""
    with np.load(os.path.join(DATA, f"{name}.npz")) as z:
        feeds = {k[3:]: z[k] for k in z.files if k.startswith("in:")}
        expected = {k[4:]: z[k] for k in z.files if k.startswith("out:")}
    return os.path.join(DATA, f"{name}.onnx"), feeds, expected


def assert_matches(got, expected, what):
    for k, ref in expected.items():
        np.testing.assert_allclose(got[k], ref, rtol=RTOL, atol=ATOL_SCALE * float(np.max(np.abs(ref))),
                                   err_msg=f"{what}: output {k!r}")


def run_graphc(model, feeds, outputs, trainable=False):
    """Import ``model``, compile an inference plan for the feeds' shapes, run it once; returns
    ({ONNX output name: array}, the imported Graph)."""
    g = gc.onnx.load(model, trainable=trainable)
    names = g.onnx_names
    plan = gc.compile(g, shapes={names[k]: v.shape for k, v in feeds.items()},
                      fetches=[names[o] for o in outputs], train=False)
    got = gc.Session(plan, threads=2).run({names[k]: v for k, v in feeds.items()})
    return {o: got[names[o]] for o in outputs}, g


def test_fixtures_are_listed_small_and_complete():
    on_disk = sorted(f[:-5] for f in os.listdir(DATA) if f.endswith(".onnx"))
    assert on_disk == NAMES, "manifest.json and the .onnx files disagree; rerun tools/make_onnx_fixtures.py"
    for name in NAMES:
        path, feeds, expected = fixture(name)
        assert os.path.getsize(path) < MAX_FIXTURE_BYTES, f"{name}.onnx is over 2 MB"
        assert list(feeds) == list(MANIFEST[name]["inputs"])
        assert {k: list(v.shape) for k, v in expected.items()} == MANIFEST[name]["outputs"]
        model = onnx.load(path)
        assert sorted({n.op_type for n in model.graph.node}) == MANIFEST[name]["ops"]


@pytest.mark.parametrize("name", NAMES)
def test_fixture_outputs_are_onnxruntimes(name):
    """The stored torch outputs are what the ONNX file computes (onnxruntime agrees): the
    fixtures themselves are sound, so a mismatch in the graphc test below is graphc's."""
    ort = pytest.importorskip("onnxruntime")
    path, feeds, expected = fixture(name)
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    got = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))
    assert_matches(got, expected, f"onnxruntime on {name}.onnx")


@pytest.mark.parametrize("name", NAMES)
def test_imported_model_matches_torch(name):
    path, feeds, expected = fixture(name)
    got, g = run_graphc(path, feeds, list(expected))
    assert_matches(got, expected, f"graphc on {name}.onnx ({MANIFEST[name]['exporter']} exporter, "
                                  f"opset {MANIFEST[name]['opset']})")
    for k, v in feeds.items():
        shape = g.tensor(g.onnx_names[k]).shape
        if MANIFEST[name].get("dynamic_batch"):
            assert isinstance(shape[0], str) and tuple(shape[1:]) == v.shape[1:], shape
        else:
            assert tuple(shape) == v.shape


@pytest.mark.parametrize("name", [n for n in NAMES if MANIFEST[n].get("dynamic_batch")])
def test_dynamic_batch_compiles_for_another_batch(name):
    """A model exported with a symbolic batch dim (the TorchScript exporter's Shape/Gather/
    Concat/Reshape chain; the dynamo exporter's Reshape to -1) runs at batch 1 as well."""
    path, feeds, expected = fixture(name)
    got, _ = run_graphc(path, {k: v[:1] for k, v in feeds.items()}, list(expected))
    assert_matches(got, {k: v[:1] for k, v in expected.items()}, f"graphc on {name}.onnx at batch 1")


def test_imported_resnet_trains():
    """The torch ResNet, imported with trainable weights, learns the digits: a softmax
    cross-entropy and SGD with momentum appended to the imported graph make the loss fall, step
    for step as torch's own training of the same model did (the recorded "train:loss")."""
    spec = MANIFEST["resnet"]["train"]
    path = os.path.join(DATA, "resnet.onnx")
    with np.load(os.path.join(DATA, "resnet.npz")) as z:
        torch_losses = z["train:loss"]
    g = gc.onnx.load(path, trainable=True)
    names = g.onnx_names
    (xtr, ytr), _ = gc.datasets.load_digits(images=True)
    xb = np.ascontiguousarray(xtr[:spec["batch"]], dtype=np.float32)
    yb = ytr[:spec["batch"]].astype(np.int64)
    with g:
        labels = gc.placeholder("labels", (None,), dtype="int64")
        loss = gc.softmax_cross_entropy(g.tensor(names["y"]), labels, name="loss")
        gc.optim.SGD(lr=spec["lr"], momentum=spec["momentum"]).minimize(loss)
    plan = gc.compile(g, shapes={names["x"]: xb.shape, "labels": yb.shape})
    sess = gc.Session(plan, threads=2)
    losses = np.array([float(sess.run({names["x"]: xb, "labels": yb})[loss.name]) for _ in range(spec["steps"])])
    assert np.all(np.isfinite(losses)), losses
    assert losses[-1] < 0.9 * losses[0], losses
    # The first loss is the imported forward pass alone; later ones also need every gradient
    # and momentum update to be torch's.  Rounding differences compound over the 20 steps
    # (each update feeds the next forward; measured: 3e-5 relative at step 20), so the curve is
    # held to 2e-4 relative: a wrong or missing gradient (torch training the folded biases
    # frozen, say) moves it by 1e-4 at step 2 and 1.5e-3 by step 20.
    np.testing.assert_allclose(losses[0], torch_losses[0], rtol=1e-4)
    np.testing.assert_allclose(losses, torch_losses, rtol=2e-4)


# -- live re-export (only where torch is installed: not in CI) ------------------------------------

def _live_names():
    """GRAPHC_TORCH_LIVE=all re-exports every fixture; by default two (the dynamo exporter is
    slow: ~10-30 s a model on a busy machine)."""
    return NAMES if os.environ.get("GRAPHC_TORCH_LIVE") == "all" else ["mlp_legacy", "resnet"]


@pytest.mark.parametrize("name", _live_names())
def test_live_torch_export_matches(name, tmp_path):
    """Re-export with torch now (seed 1, not the fixtures' seed 0) and compare graphc with torch."""
    pytest.importorskip("torch", reason="torch is not installed: the committed fixtures are the coverage")
    pytest.importorskip("onnxscript", reason="onnxscript (torch's dynamo ONNX exporter) is not installed")
    sys.path.insert(0, TOOLS)
    try:
        import make_onnx_fixtures as mk
    finally:
        sys.path.remove(TOOLS)
    model, feeds, options = mk.build(name, seed=1)
    path = str(tmp_path / f"{name}.onnx")
    proto = mk.export(model, feeds, options, path)
    expected = dict(zip([o.name for o in proto.graph.output], mk.torch_outputs(model, feeds)))
    got, _ = run_graphc(path, feeds, list(expected))
    assert_matches(got, expected, f"graphc on a live torch export of {name}")
