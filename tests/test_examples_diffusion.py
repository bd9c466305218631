"""examples/train_diffusion.py: the tiny configuration in a subprocess (the loss is finite and
moves, the PNG grids are written, a run resumed from its checkpoint equals an uninterrupted one),
and the sample_step entry against the DDPM update computed in numpy from the same predicted noise
and the same z."""
import importlib.util
import json
import os
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
from subproc import child_env, run_python

import graphc as gc

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples")

# The child runs train_diffusion.main() once per argv list and prints, as JSON, what the test checks.
CHILD = """
import json, sys
import numpy as np
sys.path.insert(0, {examples!r})
import train_diffusion
out = []
for argv in {runs!r}:
    r = train_diffusion.main(argv)
    out.append({{"steps": r["steps"], "resumed": r["resumed"], "losses": r["losses"], "grids": r["grids"],
                "samples": np.asarray(r["samples"], np.float64).tolist()}})
print("RESULT" + json.dumps(out))
"""


def _run(runs, timeout=300):
    p = run_python(CHILD.format(examples=EXAMPLES, runs=runs), timeout=timeout)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    line = [s for s in p.stdout.splitlines() if s.startswith("RESULT")][-1]
    return json.loads(line[len("RESULT"):]), p.stdout


def _tiny(out, *extra):
    return ["--config", "tiny", "--out", str(out), "--no-progress", "--threads", "1", *extra]


def _load_example():
    spec = importlib.util.spec_from_file_location("train_diffusion", os.path.join(EXAMPLES, "train_diffusion.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _png_pixels(path):
    """The 8-bit grey pixels (H, W) of a PNG written by graphc.images, after checking its
    signature, chunk CRCs and filter bytes (the writer uses filter 0)."""
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
    rows = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(h, w + 1)
    assert (rows[:, 0] == 0).all()
    return rows[:, 1:]


def test_tiny_config_trains_and_writes_grids(tmp_path):
    (r,), stdout = _run([_tiny(tmp_path)])
    losses = np.array(r["losses"])
    tiny = _load_example().CONFIGS["tiny"]
    assert r["steps"] == tiny["steps"] == len(losses) and np.isfinite(losses).all()
    assert len(set(losses.tolist())) > 1                    # fresh batches, timesteps and noise every step
    # a grid at step sample_every (before the end) and the final one
    assert [os.path.basename(p) for p in r["grids"]] == [f"samples_step{tiny['sample_every']:06d}.png", "samples.png"]
    side = 10 * (8 * 4 + 1) + 1                            # 10 × 10 digits, scale 4, padding 1
    for path in r["grids"]:
        assert _png_pixels(path).shape == (side, side), path
    for name in ("model.pb", "diffusion.program", "checkpoint.npz", "checkpoint.json"):
        assert (tmp_path / name).exists(), name
    s = np.array(r["samples"])
    assert s.shape == (tiny["samples"], 1, 8, 8) and (s >= 0).all() and (s <= 1).all()
    assert s.std() > 0
    # the final grid shows the first 100 samples: pixel (row 0, col 0) of digit 0 is at (1, 1), scale 4
    pixels = _png_pixels(tmp_path / "samples.png")
    assert abs(int(pixels[1, 1]) - round(255 * s[0, 0, 0, 0])) <= 1
    assert "loss" in stdout and "sample_step" in stdout


def test_resume_equals_an_uninterrupted_run(tmp_path):
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    (a, b, c), _ = _run([_tiny(whole, "--steps", "6"), _tiny(parts, "--steps", "3"),
                         _tiny(parts, "--steps", "6", "--resume")])
    assert not a["resumed"] and c["resumed"] and c["steps"] == 3 and b["steps"] == 3
    # the same batches, timesteps, in-graph noise (the random counter is in the checkpoint) and Adam state
    assert b["losses"] + c["losses"] == a["losses"]
    np.testing.assert_array_equal(np.array(c["samples"]), np.array(a["samples"]))


def test_sample_step_is_the_ddpm_update():
    td = _load_example()
    cfg = dict(td.CONFIGS["tiny"], samples=37)
    gc.nn.manual_seed(0)
    graph, sched, names = td.build_graph(cfg, seed=5)
    program = gc.compile(graph, entries=["train", "sample_step"],
                         shapes={"x": (cfg["batch"], 1, 8, 8), "t": (cfg["batch"],),
                                 "sample_step": {"x_t": (37, 1, 8, 8), "t": (37,)}})
    sess = gc.Session(program, threads=1)
    rng = np.random.default_rng(1)
    # train a few steps so the network's prediction is not just its initial one
    for step in range(3):
        idx, ts = td.batch_of_step(step, 0, 200, cfg["batch"], cfg["T"])
        sess.run({"x": rng.random((cfg["batch"], 1, 8, 8), dtype=np.float32), "t": ts}, entry="train")
    x_t = (2.0 * rng.standard_normal((37, 1, 8, 8))).astype(np.float32)   # wide enough that x̂_0 is clipped
    t = rng.integers(0, cfg["T"], 37).astype(np.int64)
    t[:3] = 0                                                # σ_0 = 0: the last step adds no noise
    t[3:6] = cfg["T"] - 1
    r1 = sess.run({"x_t": x_t, "t": t}, entry="sample_step")
    r2 = sess.run({"x_t": x_t, "t": t}, entry="sample_step")
    for r in (r1, r2):
        expected = td.sample_update(x_t.astype(np.float64), r[names["eps_hat"]].astype(np.float64), t, sched,
                                    r[names["z"]].astype(np.float64))
        np.testing.assert_allclose(r[names["x_prev"]], expected, rtol=1e-5, atol=1e-5)
    # the same input gives the same prediction, but a fresh z every run
    np.testing.assert_array_equal(r1[names["eps_hat"]], r2[names["eps_hat"]])
    assert not np.array_equal(r1[names["z"]], r2[names["z"]])
    # the prediction is the network's: the reference interpreter of the same graph and weights agrees
    state = {n: sess.get_variable(n) for n in sess.variable_names if n.startswith("denoiser/")}
    ref = gc.reference.evaluate(graph, {"x_t": x_t, "t": t}, [names["eps_hat"]], state=state)[names["eps_hat"]]
    np.testing.assert_allclose(r1[names["eps_hat"]], ref, rtol=1e-4, atol=1e-5)
    # x_T -> x_{T-1} moves the sample, and at t = 0 the step is the clipped x̂_0 with no noise
    x0_rows = r1[names["x_prev"]][:3]
    assert (np.abs(x0_rows) <= 1.0 + 1e-6).all()


def test_schedule_tables():
    td = _load_example()
    s = td.cosine_schedule(100)
    assert all(v.shape == (100,) for v in s.values())
    assert (np.diff(s["alpha_bar"]) < 0).all() and 0 < s["alpha_bar"][-1] < 1e-3 < s["alpha_bar"][0] < 1
    np.testing.assert_allclose(s["alpha_bar"], np.cumprod(1 - s["beta"]))
    assert s["sigma"][0] == 0 and (s["sigma"][1:] > 0).all() and (s["sigma"] ** 2 <= s["beta"] + 1e-15).all()


def test_script_scores_the_samples_and_exits_by_the_bar(tmp_path):
    # the script as a user runs it, --score quick: the quick classifier trained into a fresh cache
    env = child_env(GRAPHC_CACHE=str(tmp_path / "cache"))
    p = subprocess.run([sys.executable, os.path.join(EXAMPLES, "train_diffusion.py"), *_tiny(tmp_path / "run"),
                        "--score", "quick"], env=env, capture_output=True, text=True, timeout=300,
                       cwd=str(tmp_path))
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]      # tiny: no bar to meet
    assert "500 samples" not in p.stdout and "100 samples: mean top-class probability" in p.stdout
    assert (tmp_path / "cache" / "digits_cnn_quick" / "checkpoint.npz").exists()
    td = _load_example()
    passed, missed = {"passed": True}, {"passed": False}
    assert td.exit_code({"config": "full", "score": missed}) == 1
    assert td.exit_code({"config": "full", "score": passed}) == 0
    assert td.exit_code({"config": "tiny", "score": missed}) == 0
    assert td.exit_code({"config": "full", "score": None}) == 0        # --score none: nothing judged


@pytest.mark.parametrize("argv", [["--steps", "-1"], ["--sample-every", "-2"], ["--config", "huge"],
                                  ["--score", "maybe"], ["--seed", "-3"]])
def test_bad_flags_are_refused(tmp_path, argv):
    with pytest.raises(SystemExit) as e:
        _load_example().main(["--out", str(tmp_path), *argv])
    assert e.value.code == 2, argv
