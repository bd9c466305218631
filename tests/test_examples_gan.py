"""examples/train_gan.py in its tiny configuration, in a subprocess: both losses are finite and
move, the per-epoch and final PNG grids are written (valid PNGs of the right size), and a run
resumed from its checkpoint equals an uninterrupted one; examples/gen_common.py's score and its
quick classifier."""
import json
import os
import struct
import sys
import zlib

import numpy as np
import pytest
from subproc import run_python

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples")

# The child runs train_gan.main() once per argv list and prints, as JSON, what the test checks.
CHILD = """
import json, sys
import numpy as np
sys.path.insert(0, {examples!r})
import train_gan
out = []
for argv in {runs!r}:
    r = train_gan.main(argv)
    out.append({{"steps": r["steps"], "resumed": r["resumed"], "history": r["history"], "grids": r["grids"],
                "samples": np.asarray(r["samples"], np.float64).tolist(), "score": r.get("score")}})
print("RESULT" + json.dumps(out))
"""


def _run(runs, timeout=300, env=None):
    p = run_python(CHILD.format(examples=EXAMPLES, runs=runs), timeout=timeout, env=env)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    line = [s for s in p.stdout.splitlines() if s.startswith("RESULT")][-1]
    return json.loads(line[len("RESULT"):]), p.stdout


def _png_size(path):
    """(width, height) of a PNG written by graphc.images, after checking its signature, chunk
    CRCs and that the pixel data has the size IHDR announces."""
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", path
    pos, idat, size = 8, b"", None
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
        assert struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])[0] == zlib.crc32(kind + body) & 0xFFFFFFFF
        if kind == b"IHDR":
            size = struct.unpack(">II", body[:8])
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    w, h = size
    assert len(zlib.decompress(idat)) == h * (w + 1)
    return w, h


def _tiny(out, *extra):
    return ["--config", "tiny", "--out", str(out), "--no-progress", "--threads", "1", *extra]


def test_tiny_gan_trains_and_writes_grids(tmp_path):
    # --score quick: the end-of-run scoring path, with the quick classifier trained into a fresh cache
    (r,), stdout = _run([_tiny(tmp_path / "run", "--steps", "9", "--score", "quick")],
                        env={**os.environ, "GRAPHC_CACHE": str(tmp_path / "cache")})
    tmp_path = tmp_path / "run"
    h = np.array(r["history"])
    assert r["steps"] == 9 and h.shape == (9, 4) and np.isfinite(h).all()
    # Both losses move: every step updates D, then G, with fresh noise.
    assert len(set(h[:, 0])) > 1 and len(set(h[:, 1])) > 1
    assert ((h[:, 2:] > 0) & (h[:, 2:] < 1)).all()          # D's mean beliefs are probabilities
    # 64 digits in batches of 16: an epoch is 4 steps, so epochs 0 and 1 end within 9 steps.
    assert [os.path.basename(p) for p in r["grids"]] == ["samples_epoch000.png", "samples_epoch001.png"]
    side = 10 * (8 * 4 + 1) + 1                               # 10 × 10 digits, scale 4, padding 1
    for name in ("samples_epoch000.png", "samples_epoch001.png", "samples.png"):
        assert _png_size(tmp_path / name) == (side, side), name
    assert _png_size(tmp_path / "real_digits.png") == (side, 7 * (8 * 4 + 1) + 1)      # the tiny config's 64 digits
    for name in ("model.pb", "gan.program", "checkpoint.npz", "checkpoint.json"):
        assert (tmp_path / name).exists(), name
    s = np.array(r["samples"])
    assert s.shape == (500, 1, 8, 8) and (s > 0).all() and (s < 1).all()     # sigmoid outputs
    assert "d_loss" in stdout and "g_loss" in stdout
    sc = r["score"]          # an untrained generator: figures, not the bar
    assert sc["n"] == 500 and sum(sc["histogram"]) == 500 and 0.1 <= sc["mean_top_prob"] <= 1.0
    assert "samples per class" in stdout


def test_resume_equals_an_uninterrupted_run(tmp_path):
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    (a, b, c, t), _ = _run([_tiny(whole, "--steps", "10"), _tiny(parts, "--steps", "6"),
                            _tiny(parts, "--steps", "10", "--resume"),
                            _tiny(tmp_path / "threads", "--steps", "10", "--threads", "3")])
    assert not b["resumed"] and c["resumed"] and c["steps"] == 4
    # The same batches, noise draws (rng/step is in the checkpoint) and optimizer states: the
    # same losses step by step and the same generator at the end, bit for bit.
    assert b["history"] + c["history"] == a["history"]
    assert c["samples"] == a["samples"]
    assert t["history"] == a["history"] and t["samples"] == a["samples"]     # 3 threads: the same run
    assert (whole / "samples_epoch001.png").read_bytes() == (parts / "samples_epoch001.png").read_bytes()


def test_bad_flags_are_refused(tmp_path):
    sys.path.insert(0, EXAMPLES)
    try:
        import train_gan
    finally:
        sys.path.remove(EXAMPLES)
    for argv in (["--steps", "-1"], ["--config", "huge"], ["--samples", "0"], ["--threads", "0"],
                 ["--score", "maybe"]):
        with pytest.raises(SystemExit) as e:
            train_gan.main(["--out", str(tmp_path), *argv])
        assert e.value.code == 2, argv


def _gen_common():
    sys.path.insert(0, EXAMPLES)
    try:
        import gen_common
    finally:
        sys.path.remove(EXAMPLES)
    return gen_common


def test_score_counts_classes_and_top_probabilities():
    gen_common = _gen_common()
    rng = np.random.default_rng(0)
    top = np.array([0, 0, 1, 2, 3, 4, 5, 6, 7, 7])          # 8 classes
    p = rng.uniform(0.0, 0.1, size=(10, 10))
    p[np.arange(10), top] = np.linspace(0.7, 0.98, 10)
    s = gen_common.score(p)
    assert s["classes"] == 8 and s["histogram"] == np.bincount(top, minlength=10).tolist() and s["n"] == 10
    assert s["mean_top_prob"] == pytest.approx(np.mean(np.linspace(0.7, 0.98, 10)))
    assert s["passed"] == (s["mean_top_prob"] >= 0.8)                    # 0.84: passed
    assert not gen_common.score(np.eye(10)[[3] * 10])["passed"]          # sure, but one class only
    assert not gen_common.score(np.full((10, 10), 0.1) + 0.05 * np.eye(10))["passed"]   # all classes, unsure
    for bad in (np.zeros((0, 10)), np.zeros((3, 9)), np.zeros(10)):
        with pytest.raises(ValueError):
            gen_common.score(bad)


def test_quick_classifier_trains_into_the_cache_and_scores_real_digits(tmp_path):
    # In a subprocess: the classifier is trained by examples/train_cnn.py's main() (a few seconds
    # in its quick form) into $GRAPHC_CACHE, then loaded from there by a second call.
    code = f"""
import json, sys
sys.path.insert(0, {EXAMPLES!r})
import numpy as np, graphc as gc, gen_common
(_, _), (x, y) = gc.datasets.load_digits(images=True)
clf = gen_common.classifier(quick=True, threads=1)
p = clf(x)
again = gen_common.classifier(quick=True, threads=1)(x[:3])
print("RESULT" + json.dumps({{"acc": float(np.mean(p.argmax(1) == y)), "recorded": clf.test_accuracy,
      "sums": p.sum(1).tolist(), "score": gen_common.score(p), "again": np.abs(again - p[:3]).max().item()}}))
"""
    p = run_python(code, env={**os.environ, "GRAPHC_CACHE": str(tmp_path)}, timeout=300)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    r = json.loads([s for s in p.stdout.splitlines() if s.startswith("RESULT")][-1][len("RESULT"):])
    assert p.stdout.count("training the digit classifier") == 1          # the second call loads the cache
    assert (tmp_path / "digits_cnn_quick" / "checkpoint.npz").exists()
    assert r["acc"] == pytest.approx(r["recorded"], abs=1e-9)            # the same weights as train_cnn's test
    assert np.allclose(r["sums"], 1.0, atol=1e-5) and r["again"] == 0.0
    # real test digits: the classes are all there (a rough classifier still gets most right)
    assert r["acc"] > 0.5 and r["score"]["classes"] == 10
