"""The graphc command line tool, driven as a subprocess (``python -m graphc ...``) on a
small MLP: every subcommand, --json, drawings, and each class of bad input (one line
on stderr, exit code 2, no traceback, nothing overwritten)."""

import inspect
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import pytest
from subproc import child_env

import graphc as gc
from graphc._proto import graphc_pb2 as pb
from graphc.errors import GraphcError

BATCH = 4


def graphc(*args, cwd=None, env=None):
    e = child_env(env)
    # not the repository root as cwd: `python -m` puts the cwd first on sys.path
    return subprocess.run([sys.executable, "-m", "graphc", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd or tempfile.gettempdir(), env=e, timeout=120)


class InProcess:
    """The same main() in this process (fast, for the many variants of one error class);
    each class is also checked once through a real subprocess."""

    def __init__(self, returncode, stdout, stderr):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


@pytest.fixture
def cli(capsys):
    from graphc.cli import main

    def call(*args):
        capsys.readouterr()
        rc = main([str(a) for a in args])
        out, err = capsys.readouterr()
        return InProcess(rc, out, err)
    return call


def ok(result):
    assert result.returncode == 0, f"rc={result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result.stdout


def bad(result, *needles):
    """Exit 2 with one line on stderr naming the problem, no traceback."""
    assert result.returncode == 2, f"rc={result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def build_mlp():
    with gc.Graph() as g:
        x = gc.placeholder("x", (None, 6))
        y = gc.placeholder("y", (None,), dtype="int64")
        with gc.name_scope("fc1"):
            w1 = gc.variable("w", (6, 8), init=gc.init.xavier_uniform(seed=0))
            h = gc.relu(x @ w1)
        with gc.name_scope("fc2"):
            w2 = gc.variable("w", (8, 3), init=gc.init.xavier_uniform(seed=1))
            logits = h @ w2
        gc.softmax_cross_entropy(logits, y, name="loss")
    return g


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    g = build_mlp()
    g.save(str(d / "mlp.pb"))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((BATCH, 6)).astype(np.float32)
    y = rng.integers(0, 3, BATCH).astype(np.int64)
    np.save(d / "x.npy", x)
    np.save(d / "y.npy", y)
    np.savez(d / "feeds.npz", x=x, y=y)
    ok(graphc("compile", d / "mlp.pb", "-o", d / "mlp.plan", "--shape", f"x={BATCH},6", "--shape", f"y={BATCH}"))
    return d


# -- compile ---------------------------------------------------------------------------------

def test_compile_prints_summary_and_writes_a_loadable_plan(work):
    out = ok(graphc("compile", work / "mlp.pb", "-o", work / "c.plan", "--shape", "x=2,6", "--shape", "y=2"))
    assert f"wrote {work / 'c.plan'}" in out
    assert "steps: 3" in out   # fc1's matmul and relu run as one fused step
    assert "fused: 1 steps run 2 graph nodes" in out
    assert "parameters: 72 in 2 variables" in out   # 6*8 + 8*3
    assert "arena:" in out and "naive" in out
    plan = gc.load_plan(str(work / "c.plan"))
    assert [tuple(plan.values[plan.value_index(n)].dims) for n in plan.feeds] == [(2, 6), (2,)]


def test_compile_is_deterministic_and_default_output_name(work, tmp_path, cli):
    shutil.copy(work / "mlp.pb", tmp_path / "m.pb")
    ok(cli("compile", tmp_path / "m.pb", "--shape", "x=2,6", "--shape", "y=2"))
    ok(cli("compile", tmp_path / "m.pb", "-o", tmp_path / "again.plan", "--shape", "x=2,6", "--shape", "y=2"))
    assert (tmp_path / "m.plan").read_bytes() == (tmp_path / "again.plan").read_bytes()


def test_compile_verbose_reports_each_pass(work, cli):
    out = ok(cli("compile", work / "mlp.pb", "-o", work / "v.plan", "--shape", "x=2,6", "--shape", "y=2", "-v"))
    for name in ("validate_graph", "bind_shapes", "infer_shapes", "schedule_nodes", "compile (total)"):
        assert name in out
    row = next(line for line in out.splitlines() if line.startswith("infer_shapes")).split()
    float(row[1])
    assert int(row[2]) == 4


def test_compile_target_and_fetch(work, cli):
    ok(cli("compile", work / "mlp.pb", "-o", work / "t.plan", "--shape", "x=2,6", "--shape", "y=2",
              "--target", "cuda", "--fetch", "fc1/relu"))
    plan = gc.load_plan(str(work / "t.plan"))
    assert plan.target == "cuda"
    assert plan.fetches == ["fc1/relu"]


def test_memory_budget_is_parsed_and_passed_or_refused(work, cli):
    from graphc import compiler

    r = cli("compile", work / "mlp.pb", "-o", work / "b.plan", "--shape", "x=2,6", "--shape", "y=2",
               "--memory-budget", "1MiB")
    if "memory_budget" in inspect.signature(compiler.compile).parameters:
        ok(r)
    else:
        bad(r, "--memory-budget", "no memory budget support")


@pytest.mark.parametrize("text, nbytes", [("64MB", 64 * 10**6), ("64MiB", 64 * 2**20), ("1.5GB", 1_500_000_000),
                                          ("512KiB", 512 * 1024), ("4096", 4096), ("10 kb", 10_000), ("2GiB", 2**31)])
def test_parse_bytes(text, nbytes):
    from graphc.cli import parse_bytes
    assert parse_bytes(text) == nbytes


def test_parse_optimizer():
    from graphc.cli import UsageError, parse_optimizer
    assert parse_optimizer("sgd:lr=0.1,momentum=0.9") == ("sgd", {"lr": 0.1, "momentum": 0.9})
    assert parse_optimizer("Adam:lr=1e-3") == ("adam", {"lr": 1e-3})
    for text in ("rmsprop:lr=1", "sgd:lr", "sgd:lr=fast", "sgd:lr=nan"):
        with pytest.raises(UsageError):
            parse_optimizer(text)


# -- info ------------------------------------------------------------------------------------

def test_info_model_text(work, cli):
    out = ok(cli("info", work / "mlp.pb"))
    assert "model" in out and "4 nodes" in out
    assert "matmul" in out and "relu" in out and "softmax_cross_entropy" in out
    assert "parameters: 72 in 2 variables, 288 B" in out
    assert "x" in out and "(?, 6)" in out and "int64" in out
    assert "training: none" in out


def test_info_model_json(work):
    info = json.loads(ok(graphc("info", work / "mlp.pb", "--json")))
    assert info["kind"] == "model"
    assert info["ops"] == {"matmul": 2, "relu": 1, "softmax_cross_entropy": 1}
    assert info["parameters"]["count"] == 72 and info["parameters"]["bytes"] == 288
    assert info["inputs"] == [{"name": "x", "dtype": "float32", "shape": [None, 6]},
                              {"name": "y", "dtype": "int64", "shape": [None]}]
    assert info["outputs"] == [{"name": "loss", "dtype": "float32", "shape": []}]
    assert info["training"] is None


def test_info_plan_json_has_memory_report(work):
    info = json.loads(ok(graphc("info", work / "mlp.plan", "--json")))
    assert info["kind"] == "plan" and info["steps"] == 3
    assert info["fused"] == [{"step": 0, "op": "fused_matmul", "members": ["fc1/matmul", "fc1/relu"]}]
    report = gc.memory_report(str(work / "mlp.plan"))
    mem = info["memory"]
    assert mem["arena_bytes"] == report["arena_bytes"]
    assert mem["naive_bytes"] == report["naive_bytes"]
    assert mem["lower_bound_bytes"] == report["lower_bound_bytes"]
    assert mem["bytes_by_kind"] == report["bytes_by_kind"]
    peak = mem["peak"]
    assert peak["step"] == report["peak_step"]
    assert {v["name"] for v in peak["largest"]} <= set(report["peak_values"])
    sizes = [v["bytes"] for v in peak["largest"]]
    assert sizes == sorted(sizes, reverse=True)
    assert info["inputs"][0] == {"name": "x", "dtype": "float32", "shape": [BATCH, 6]}


def test_info_plan_text(work, cli):
    out = ok(cli("info", work / "mlp.plan"))
    for needle in ("steps", "memory:", "arena", "naive", "lower bound", "peak: step", "largest"):
        assert needle in out


def test_info_shows_training_spec_from_the_model(tmp_path, cli):
    g = build_mlp()
    g.training = pb.TrainingSpec(loss="loss", optimizer=pb.OptimizerSpec(
        kind="adam", hyperparameters={"lr": 0.001, "beta1": 0.9}))
    g.save(str(tmp_path / "t.pb"))
    info = json.loads(ok(cli("info", tmp_path / "t.pb", "--json")))
    assert info["training"]["loss"] == "loss"
    assert info["training"]["optimizer"]["kind"] == "adam"
    assert info["training"]["optimizer"]["hyperparameters"] == {"beta1": 0.9, "lr": 0.001}
    assert "training: loss loss, optimizer adam (beta1=0.9, lr=0.001)" in ok(cli("info", tmp_path / "t.pb"))


# -- viz -------------------------------------------------------------------------------------

def test_viz_dot_of_model(work):
    out = ok(graphc("viz", work / "mlp.pb", "-o", work / "g.dot"))
    assert "wrote" in out
    dot = (work / "g.dot").read_text()
    assert "subgraph cluster_fc1" in dot and "subgraph cluster_fc2" in dot
    assert '"matmul\\nfc1/matmul"' in dot
    assert "#cfe2f3" in dot                       # forward colour
    assert 'label="f32[?,6]"' in dot              # edge: dtype and shape
    assert "test_cli.py:" in dot                  # provenance tooltip


def test_viz_dot_of_plan_has_arena_offsets(work, cli):
    ok(cli("viz", work / "mlp.plan", "-o", work / "p.dot"))
    dot = (work / "p.dot").read_text()
    plan = gc.load_plan(str(work / "mlp.plan"))
    v = plan.values[plan.value_index("fc1/relu")]
    assert f"f32[{BATCH},8]\\n@{v.offset} +{v.nbytes}B" in dot
    assert "step 0" in dot


def test_viz_collapse_draws_scopes_as_boxes(work, cli):
    ok(cli("viz", work / "mlp.pb", "-o", work / "c.dot", "--collapse"))
    dot = (work / "c.dot").read_text()
    assert "cluster_fc1" not in dot
    assert "box3d" in dot and "fc1\\n2 nodes" in dot and "fc2\\n1 node" in dot
    ok(cli("viz", work / "mlp.pb", "-o", work / "d.dot", "--depth", "1"))
    assert "cluster_fc1" in (work / "d.dot").read_text()


@pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz's dot program is not installed")
def test_viz_svg_with_tooltips(work):
    ok(graphc("viz", work / "mlp.plan", "-o", work / "g.svg"))
    svg = (work / "g.svg").read_text()
    assert svg.lstrip().startswith("<?xml") or "<svg" in svg[:400]
    # fc1/matmul runs inside a fused step: its tooltip lists each member with its line
    assert "fc1/matmul (matmul) — built at" in svg and "fc1/relu (relu) — built at" in svg and "test_cli.py:" in svg


def test_viz_without_dot_writes_dot_file_and_says_how_to_install(work, tmp_path):
    env = dict(os.environ, PATH=str(tmp_path))     # no dot on PATH
    r = graphc("viz", work / "mlp.pb", "-o", tmp_path / "g.svg", env=env)
    assert r.returncode == 0, r.stderr
    assert "apt-get install graphviz" in r.stderr and str(tmp_path / "g.dot") in r.stderr
    assert not (tmp_path / "g.svg").exists()
    assert "digraph" in (tmp_path / "g.dot").read_text()


# -- run and bench ---------------------------------------------------------------------------

def _expected_loss(work):
    g = gc.load(str(work / "mlp.pb"))
    out = gc.reference.evaluate(g, {"x": np.load(work / "x.npy"), "y": np.load(work / "y.npy")})
    return float(out["loss"])


def test_run_prints_fetches(work):
    out = ok(graphc("run", work / "mlp.plan", "--feed", f"x={work / 'x.npy'}", "--feed", f"y={work / 'y.npy'}"))
    line = next(s for s in out.splitlines() if s.startswith("loss"))
    assert abs(float(line.split(":")[-1]) - _expected_loss(work)) < 1e-4


def test_run_from_npz_writes_npz(work):
    ok(graphc("run", work / "mlp.plan", "--feed", work / "feeds.npz", "-o", work / "out.npz"))
    with np.load(work / "out.npz") as out:
        assert list(out.files) == ["loss"]
        np.testing.assert_allclose(out["loss"], _expected_loss(work), rtol=1e-5)


def test_bench_prints_latency(work):
    out = ok(graphc("bench", work / "mlp.plan", "--warmup", "2", "--iters", "20"))
    line = next(s for s in out.splitlines() if s.startswith("latency ms"))
    assert "min" in line and "median" in line and "p90" in line
    from graphc.session import Session
    if hasattr(Session, "profile"):
        assert "time per node" in out and "fc1/matmul" in out and "test_cli.py:" in out
    else:
        assert "no profile(feeds, iters)" in out


def test_random_feeds_fit_the_labels(work):
    from graphc.cli import random_feeds
    feeds = random_feeds(gc.load_plan(str(work / "mlp.plan")))
    assert feeds["x"].shape == (BATCH, 6) and feeds["x"].dtype == np.float32
    assert feeds["y"].dtype == np.int64 and feeds["y"].min() >= 0 and feeds["y"].max() < 3


def test_per_step_seconds_accepts_common_profile_shapes(work):
    from graphc.cli import per_step_seconds
    plan = gc.load_plan(str(work / "mlp.plan"))
    # steps: fused fc1 (matmul + relu), fc2/matmul, loss
    assert per_step_seconds([(0, 1.0), (2, 0.5), (0, 1.0)], plan) == [2.0, 0.0, 0.5]
    assert per_step_seconds({"fc2/matmul": 3.0}, plan) == [0.0, 3.0, 0.0]
    assert per_step_seconds([0.1, 0.2, 0.3], plan) == [0.1, 0.2, 0.3]
    with pytest.raises(GraphcError):
        per_step_seconds([(9, 1.0)], plan)


def test_run_steps_trains(work, tmp_path):
    ok(graphc("compile", work / "mlp.pb", "-o", tmp_path / "train.plan", "--shape", f"x={BATCH},6",
              "--shape", f"y={BATCH}", "--train", "loss", "--optimizer", "sgd:lr=0.5"))
    info = json.loads(ok(graphc("info", tmp_path / "train.plan", "--json")))
    assert info["training"]["loss"] == "loss" and info["training"]["optimizer"]["kind"] == "sgd"
    out = ok(graphc("run", tmp_path / "train.plan", "--feed", work / "feeds.npz", "--steps", "30"))
    line = next(s for s in out.splitlines() if s.startswith("step 30"))
    assert "loss" in gc.load_plan(str(tmp_path / "train.plan")).fetches
    assert float(line.rsplit(" ", 1)[1]) < _expected_loss(work)
    ckpt = tmp_path / "w.ckpt"
    r = graphc("run", tmp_path / "train.plan", "--feed", work / "feeds.npz", "--steps", "2", "--checkpoint", ckpt)
    ok(r)
    assert ckpt.exists()
    ok(graphc("run", tmp_path / "train.plan", "--feed", work / "feeds.npz", "--steps", "2", "--checkpoint", ckpt))


# -- bad input -------------------------------------------------------------------------------

def test_missing_file(work, cli):
    bad(graphc("info", work / "nope.pb"), "nope.pb", "no such file")
    bad(cli("compile", work / "nope.pb"), "no such file")
    bad(cli("run", work / "nope.plan"), "no such file")


def test_wrong_kind_of_file(work, tmp_path, cli):
    bad(graphc("run", work / "mlp.pb", "--feed", work / "feeds.npz"), "is a model", "graphc compile")
    bad(cli("bench", work / "mlp.pb"), "is a model")
    bad(cli("compile", work / "mlp.plan", "-o", tmp_path / "x.plan"), "is a compiled plan")
    (tmp_path / "junk.pb").write_bytes(b"\x00\xffnot a protobuf at all" * 10)
    bad(graphc("info", tmp_path / "junk.pb"), "junk.pb")
    bad(cli("viz", tmp_path, "-o", tmp_path / "g.dot"), "is a directory")


@pytest.mark.parametrize("args, needle", [
    (["--shape", "x=2,a"], "dimension 'a'"),
    (["--shape", "x"], "NAME=D0,D1"),
    (["--shape", "x=2,6", "--shape", "x=3,6"], "given twice"),
    (["--memory-budget", "12XB"], "unknown unit 'XB'"),
    (["--memory-budget", "lots"], "bad size"),
    (["--optimizer", "rmsprop:lr=1", "--train", "loss"], "unknown optimizer 'rmsprop'"),
    (["--optimizer", "sgd:lr=x", "--train", "loss"], "not a number"),
    (["--train", "loss"], "needs --optimizer"),
    (["--optimizer", "sgd:lr=0.1"], "needs --train"),
    (["--train", "nothing", "--optimizer", "sgd:lr=0.1"], "no value named 'nothing'"),
    (["--train", "fc1/relu", "--optimizer", "sgd:lr=0.1"], "float scalar"),
    (["--target", "tpu"], "invalid choice: 'tpu'"),
])
def test_bad_compile_flags(work, tmp_path, cli, args, needle):
    bad(cli("compile", work / "mlp.pb", "-o", tmp_path / "o.plan", *args), needle)
    assert not (tmp_path / "o.plan").exists()


def test_unknown_shape_name_leaves_existing_output_alone(work, tmp_path):
    out = tmp_path / "keep.plan"
    out.write_bytes(b"previous contents")
    bad(graphc("compile", work / "mlp.pb", "-o", out, "--shape", "z=1,2"), "unknown placeholder", "'z'")
    assert out.read_bytes() == b"previous contents"
    assert os.listdir(tmp_path) == ["keep.plan"]      # no temp files left behind


def test_bad_viz_flags(work, tmp_path, cli):
    bad(cli("viz", work / "mlp.pb", "-o", tmp_path / "g.jpg"), ".svg")
    bad(cli("viz", work / "mlp.pb", "-o", tmp_path / "g.dot", "--depth", "-1"), "--depth")
    bad(cli("viz", work / "mlp.pb", "-o", tmp_path / "missing" / "g.dot"), "g.dot")


@pytest.mark.parametrize("feeds, needle", [
    (["x=X"], "missing feed 'y'"),
    (["x=X", "y=Y", "z=X"], "unknown feed 'z'"),
    (["x=Y", "y=Y"], "feed 'x': expected dtype float32, got int64"),
    (["x=X6", "y=Y"], "feed 'x': expected shape (4, 6), got (6, 6)"),
    (["x=X", "y=nope.npy"], "no such file"),
    (["x=X", "y=JUNK"], "not a .npy or .npz"),
    (["x=NPZ", "y=Y"], "has no array named 'x'"),
    (["X"], "a .npy file needs a name"),
])
def test_feeds_not_matching_the_plan(work, tmp_path, cli, feeds, needle):
    np.save(tmp_path / "x6.npy", np.zeros((6, 6), np.float32))
    np.savez(tmp_path / "two.npz", a=np.zeros(1), b=np.zeros(1))
    (tmp_path / "junk.npy").write_bytes(b"junk")
    files = {"X": work / "x.npy", "Y": work / "y.npy", "X6": tmp_path / "x6.npy", "JUNK": tmp_path / "junk.npy",
             "NPZ": tmp_path / "two.npz"}
    args = []
    for f in feeds:
        name, _, key = f.rpartition("=")
        path = str(files.get(key, tmp_path / key))
        args += ["--feed", f"{name}={path}" if name else path]
    out = tmp_path / "out.npz"
    bad(cli("run", work / "mlp.plan", *args, "-o", out), needle)
    assert not out.exists()


def test_bad_flags_and_feeds_through_a_subprocess(work, tmp_path):
    bad(graphc("compile", work / "mlp.pb", "-o", tmp_path / "o.plan", "--memory-budget", "12XB"), "unknown unit")
    bad(graphc("run", work / "mlp.plan", "--feed", f"x={work / 'y.npy'}", "--feed", f"y={work / 'y.npy'}"),
        "feed 'x': expected dtype float32, got int64")


def test_run_flag_checks(work, cli):
    bad(cli("run", work / "mlp.plan", "--feed", work / "feeds.npz", "--steps", "0"), "--steps")
    bad(cli("run", work / "mlp.plan", "--feed", work / "feeds.npz", "--steps", "3"), "needs a training plan")
    bad(cli("run", work / "mlp.plan", "--feed", work / "feeds.npz", "-o", work / "out.txt"), ".npz")
    bad(cli("bench", work / "mlp.plan", "--iters", "0"), "--iters")
    bad(cli("run", work / "mlp.plan", "--feed", work / "feeds.npz", "--device", "cuda"), "cuda")


def test_verbose_shows_the_traceback(work, cli):
    r = cli("compile", work / "mlp.pb", "--shape", "z=1", "-v")
    assert r.returncode == 2
    assert "Traceback" in r.stderr and "CompileError" in r.stderr


def test_main_in_process_returns_status(work, capsys):
    from graphc.cli import main
    assert main(["info", str(work / "mlp.pb"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["kind"] == "model"
    assert main(["info", str(work / "missing.pb")]) == 2
    assert main([]) == 2


# -- programs: several entries over one store ---------------------------------------------------

@pytest.fixture(scope="module")
def prog(work):
    """A program of the MLP: 'train' (SGD on the loss) and 'logits' (inference), built with
    graphc.program.build_program over plans compiled as usual."""
    from graphc.program import build_program
    g = gc.load(str(work / "mlp.pb"))
    shapes = {"x": (BATCH, 6), "y": (BATCH,)}
    train = gc.compile(g, shapes=shapes, train={"loss": "loss", "optimizer": gc.optim.SGD(lr=0.5)})
    logits = gc.compile(g, shapes={"x": (BATCH, 6)}, train=False, fetches=["fc2/matmul"])
    program = build_program({"train": train, "logits": logits})
    path = work / "mlp.program"
    program.save(str(path))
    return path, program


def test_info_of_a_program_lists_entries_and_the_shared_store(prog, cli):
    path, program = prog
    info = json.loads(ok(cli("info", path, "--json")))
    assert info["kind"] == "program" and [e["name"] for e in info["entries"]] == ["train", "logits"]
    train, logits = info["entries"]
    assert train["kind"] == "training" and train["training"]["loss"] == "loss"
    assert [v["name"] for v in train["inputs"]] == ["x", "y"] and [v["name"] for v in logits["inputs"]] == ["x"]
    assert logits["kind"] == "inference" and logits["outputs"][0]["shape"] == [BATCH, 3]
    mem = program.memory_report()
    assert info["memory"]["arena_bytes"] == mem["arena_bytes"] == max(e["arena_bytes"] for e in info["entries"])
    assert info["memory"]["persistent_bytes"] == mem["persistent_bytes"] > 0
    text = ok(cli("info", path))
    assert f"program {path}: 2 entries" in text
    assert "entry train (training)" in text and "entry logits (inference)" in text and "shared arena" in text


def test_run_an_entry_of_a_program(prog, work, tmp_path, cli):
    path, program = prog
    out = ok(graphc("run", path, "--entry", "logits", "--feed", f"x={work / 'x.npy'}", "-o", tmp_path / "o.npz"))
    assert "wrote" in out
    sess = gc.Session(program.plan("logits"), threads=1)
    with np.load(tmp_path / "o.npz") as got:
        want = sess.run({"x": np.load(work / "x.npy")})
        for name in want:
            np.testing.assert_array_equal(got[name], want[name])
    # Training steps through the program: the checkpoint holds every variable of the program.
    ckpt = tmp_path / "p.npz"
    ok(cli("run", path, "--entry", "train", "--feed", work / "feeds.npz", "--steps", "3", "--checkpoint", ckpt))
    with np.load(ckpt) as saved:
        assert sorted(n for n in saved.files if not n.startswith("__graphc")) == sorted(
            v.name for v in program.persistent)
        w = saved["fc1/w"]
    whole = gc.Session(program, threads=1)
    assert not np.array_equal(w, whole.get_variable("fc1/w"))
    bad(cli("run", path, "--feed", work / "feeds.npz"), "program of 2 entries", "--entry", "train, logits")
    bad(cli("run", path, "--entry", "nope", "--feed", work / "feeds.npz"), "--entry nope", "no such entry")
    bad(cli("run", path, "--entry", "logits", "--steps", "2", "--feed", f"x={work / 'x.npy'}"),
        "entry 'logits'", "inference entry")
    bad(cli("run", work / "mlp.plan", "--entry", "train", "--feed", work / "feeds.npz"),
        "single compiled plan", "no entry name")
    bad(cli("bench", path, "--iters", "2"), "program of 2 entries")
    assert "latency ms" in ok(cli("bench", path, "--entry", "logits", "--iters", "2", "--warmup", "0"))


def test_viz_of_an_entry_of_a_program(prog, tmp_path, cli):
    path, program = prog
    ok(cli("viz", path, "--entry", "train", "-o", tmp_path / "t.dot"))
    dot = (tmp_path / "t.dot").read_text()
    assert "sgd" in dot.lower() and "step " in dot
    bad(cli("viz", path, "-o", tmp_path / "u.dot"), "program of 2 entries", "--entry")
    bad(cli("viz", path, "--entry", "nope", "-o", tmp_path / "u.dot"), "no such entry")


def test_compile_entry_flag_checks(work, tmp_path, cli):
    out = tmp_path / "e.program"
    bad(cli("compile", work / "mlp.pb", "--entry", "a", "--train", "loss", "-o", out), "--train", "--entry")
    bad(cli("compile", work / "mlp.pb", "--entry", "a", "--fetch", "loss", "-o", out), "--fetch")
    bad(cli("compile", work / "mlp.pb", "--entry", "a", "--entries", "all", "-o", out), "not both")
    bad(cli("compile", work / "mlp.pb", "--entries", "a,,b", "-o", out), "bad --entries")
    bad(cli("compile", work / "mlp.pb", "--entry", "a", "--entry", "a", "-o", out), "twice")
    assert not out.exists()


def build_entries_model():
    """The MLP with named entries: 'step' (SGD on the loss, fetching the logits too) and
    'predict' (the logits)."""
    with gc.Graph() as g:
        x = gc.placeholder("x", (None, 6))
        y = gc.placeholder("y", (None,), dtype="int64")
        with gc.name_scope("fc1"):
            w1 = gc.variable("w", (6, 8), init=gc.init.xavier_uniform(seed=0))
            h = gc.relu(x @ w1)
        with gc.name_scope("fc2"):
            w2 = gc.variable("w", (8, 3), init=gc.init.xavier_uniform(seed=1))
            logits = h @ w2
        loss = gc.softmax_cross_entropy(logits, y, name="loss")
        gc.optim.SGD(0.5).minimize(loss, var_list=[w2], name="step", fetches=[logits])
        g.entry("predict", fetches=[logits])
    return g


def test_compile_info_and_run_entries_of_a_model(work, tmp_path, cli):
    pb_path = tmp_path / "ent.pb"
    build_entries_model().save(str(pb_path))
    info = json.loads(ok(cli("info", pb_path, "--json")))
    assert info["entries"] == [
        {"name": "step", "kind": "training", "fetches": ["fc2/matmul"], "loss": "loss", "optimizer": "sgd",
         "var_list": 1},
        {"name": "predict", "kind": "inference", "fetches": ["fc2/matmul"]}]
    text = ok(cli("info", pb_path))
    assert "step                 training, loss loss, sgd, var_list 1; fetches: fc2/matmul" in text
    assert "training: no default spec" in text
    # One entry: a plan (default name MODEL.plan); all of them: a program (MODEL.program).
    out = ok(cli("compile", pb_path, "--entry", "predict", "--shape", f"x={BATCH},6"))
    assert f"wrote {tmp_path / 'ent.plan'} (entry predict" in out
    assert gc.load_plan(str(tmp_path / "ent.plan")).fetches == ["fc2/matmul"]
    # Flat shapes bind every entry; ENTRY:NAME=... overrides one entry's.
    out = ok(cli("compile", pb_path, "--entries", "all", "--shape", f"x={BATCH},6", "--shape", f"y={BATCH}",
                 "--shape", "predict:x=1,6"))
    assert "program of 2 entries" in out and "shared: arena" in out
    program = gc.load_program(str(tmp_path / "ent.program"))
    assert program.entries == ["step", "predict"]
    assert list(program.plan("predict").proto.values[program.plan("predict").proto.feeds[0]].dims) == [1, 6]
    ok(cli("compile", pb_path, "--entry", "predict", "--entry", "step", "--shape", f"x={BATCH},6",
           "--shape", f"y={BATCH}", "-o", tmp_path / "two.program"))
    assert gc.load_program(str(tmp_path / "two.program")).entries == ["predict", "step"]
    # Train through the program, then predict from the trained weights in one process.
    whole = gc.Session(program, threads=1)
    ckpt = tmp_path / "ent.npz"
    ok(cli("run", tmp_path / "ent.program", "--entry", "step", "--feed", work / "feeds.npz", "--steps", "4",
           "--checkpoint", ckpt))
    whole.load_checkpoint(str(ckpt))
    assert set(whole.variable_names) == {"fc1/w", "fc2/w"}   # plain SGD keeps no state
    bad(cli("compile", pb_path, "--entry", "nope", "--shape", f"x={BATCH},6"), "nope")
    bad(cli("info", tmp_path / "ent.program", "--entry", "x"), "unrecognized arguments")


def test_viz_entry_of_a_model_draws_the_part_it_computes(tmp_path, cli):
    pb_path = tmp_path / "ent.pb"
    build_entries_model().save(str(pb_path))
    ok(cli("viz", pb_path, "--entry", "predict", "-o", tmp_path / "p.dot"))
    ok(cli("viz", pb_path, "--entry", "step", "-o", tmp_path / "s.dot"))
    predict, step = (tmp_path / "p.dot").read_text(), (tmp_path / "s.dot").read_text()
    assert "fc2/matmul" in predict and "softmax_cross_entropy" not in predict and 'label="y\\n' not in predict
    assert "softmax_cross_entropy" in step and 'label="y\\n' in step
    bad(cli("viz", pb_path, "--entry", "nope", "-o", tmp_path / "n.dot"), "no such entry", "step, predict")


# -- data-parallel (issue 17) ----------------------------------------------------------------

def _dp_compile(cli, work, out, *extra):
    return cli("compile", work / "mlp.pb", "-o", out, "--shape", f"x={BATCH},6", "--shape", f"y={BATCH}",
               "--train", "loss", "--optimizer", "sgd:lr=0.5", *extra)


def test_compile_data_parallel_records_the_world_and_buckets(work, tmp_path, cli):
    out = ok(_dp_compile(cli, work, tmp_path / "dp.plan", "--data-parallel", "2", "--bucket-cap", "1MB"))
    assert "data-parallel: 2 ranks, 1 allreduce buckets" in out
    plan = gc.load_plan(str(tmp_path / "dp.plan"))
    assert plan.proto.metadata["data_parallel.world_size"] == "2"
    assert any(s.op == "allreduce_start" for s in plan.proto.steps)
    info = json.loads(ok(cli("info", tmp_path / "dp.plan", "--json")))
    assert info["data_parallel"].startswith("2 ranks")
    assert "data-parallel: 2 ranks" in ok(cli("info", tmp_path / "dp.plan"))
    # --data-parallel without N: the launcher's world (here: none, so the compiler says how to fix it)
    env = {k: v for k, v in os.environ.items() if k not in ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE",
                                                            "MV2_COMM_WORLD_SIZE")}
    r = graphc("compile", work / "mlp.pb", "-o", tmp_path / "auto.plan", "--shape", f"x={BATCH},6", "--shape",
               f"y={BATCH}", "--train", "loss", "--optimizer", "sgd:lr=0.5", "--data-parallel", env=env)
    bad(r, "mpirun")
    r = graphc("compile", work / "mlp.pb", "-o", tmp_path / "auto.plan", "--shape", f"x={BATCH},6", "--shape",
               f"y={BATCH}", "--train", "loss", "--optimizer", "sgd:lr=0.5", "--data-parallel",
               env=dict(env, OMPI_COMM_WORLD_SIZE="3"))
    ok(r)
    assert gc.load_plan(str(tmp_path / "auto.plan")).proto.metadata["data_parallel.world_size"] == "3"


@pytest.mark.parametrize("args, needle", [
    (["--data-parallel", "0"], "number of ranks >= 1"),
    (["--data-parallel", "two"], "number of ranks >= 1"),
    (["--bucket-cap", "1MB"], "--bucket-cap needs --data-parallel"),
    (["--data-parallel", "2", "--bucket-cap", "lots"], "bad size"),
])
def test_bad_data_parallel_flags(work, tmp_path, cli, args, needle):
    bad(_dp_compile(cli, work, tmp_path / "o.plan", *args), needle)
    assert not (tmp_path / "o.plan").exists()


def test_run_data_parallel_outside_mpirun_says_how(work, tmp_path, cli):
    pytest.importorskip("mpi4py")
    ok(_dp_compile(cli, work, tmp_path / "dp.plan", "--data-parallel", "2"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMPI_", "PMI", "PMIX_"))}
    bad(graphc("run", tmp_path / "dp.plan", "--data-parallel", "--feed", work / "feeds.npz", env=env),
        "compiled for 2 ranks", "1 process joined", "mpirun -np 2")


def test_run_data_parallel_flag_checks(work, tmp_path, cli):
    bad(cli("run", work / "mlp.plan", "--feed", work / "feeds.npz", "--data-parallel"),
        "not a data-parallel plan", "--data-parallel N")
    bad(cli("run", work / "mlp.plan", "--feed", work / "feeds.npz", "--deterministic-allreduce"),
        "--deterministic-allreduce")


def test_shard_feeds_gives_rank_r_its_block_of_each_global_batch(work):
    from graphc.cli import shard_feeds
    plan = gc.load_plan(str(work / "mlp.plan"))       # x (4, 6), y (4,)
    x = np.arange(3 * 2 * BATCH * 6, dtype=np.float32).reshape(3 * 2 * BATCH, 6)   # 3 global batches of 2 ranks
    y = np.arange(2 * BATCH, dtype=np.int64)
    for rank in (0, 1):
        got = shard_feeds(plan, {"x": x, "y": y}, rank, 2, quiet=True)
        want = np.concatenate([x[(2 * j + rank) * BATCH:(2 * j + rank + 1) * BATCH] for j in range(3)])
        np.testing.assert_array_equal(got["x"], want)
        np.testing.assert_array_equal(got["y"], y[rank * BATCH:(rank + 1) * BATCH])
    same = shard_feeds(plan, {"x": x[:BATCH], "y": y[:BATCH]}, 1, 2, quiet=True)   # the plan's shape: replicated
    np.testing.assert_array_equal(same["x"], x[:BATCH])
    with pytest.raises(gc.errors.FeedError, match="2 x 4 rows"):
        shard_feeds(plan, {"x": x[:6], "y": y}, 0, 2, quiet=True)


def test_run_data_parallel_under_mpirun(work, tmp_path, cli):
    """graphc run --data-parallel under mpirun -np 2: each rank takes its block of the global batch,
    rank 0 alone prints, writes -o and the checkpoint, whose weights are those of one process
    trained on the global batch."""
    from mpirun import mpirun, require_mpi
    require_mpi()
    ok(_dp_compile(cli, work, tmp_path / "dp.plan", "--data-parallel", "2"))
    ok(cli("compile", work / "mlp.pb", "-o", tmp_path / "one.plan", "--shape", f"x={2 * BATCH},6", "--shape",
           f"y={2 * BATCH}", "--train", "loss", "--optimizer", "sgd:lr=0.5"))
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3 * 2 * BATCH, 6)).astype(np.float32)    # 3 global batches
    y = rng.integers(0, 3, 3 * 2 * BATCH).astype(np.int64)
    np.savez(tmp_path / "global.npz", x=x, y=y)
    r = mpirun("import sys\nfrom graphc.cli import main\nsys.exit(main(sys.argv[1:]))\n", np=2,
               args=["run", tmp_path / "dp.plan", "--data-parallel", "--feed", tmp_path / "global.npz", "--steps", "3",
                     "--threads", "1", "-o", tmp_path / "out.npz", "--checkpoint", tmp_path / "ck.npz"], timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("step 3: loss") == 1 and "(mean over 2 ranks)" in r.stdout, r.stdout
    assert r.stdout.count("wrote ") == 1
    one = gc.Session(str(tmp_path / "one.plan"), threads=1)
    for k in range(3):
        one.run({"x": x[k * 2 * BATCH:(k + 1) * 2 * BATCH], "y": y[k * 2 * BATCH:(k + 1) * 2 * BATCH]})
    with np.load(tmp_path / "ck.npz") as ck:
        for name in ("fc1/w", "fc2/w"):
            np.testing.assert_allclose(ck[name], one.get_variable(name), rtol=1e-5, atol=1e-6)
    r = mpirun("import sys\nfrom graphc.cli import main\nsys.exit(main(sys.argv[1:]))\n", np=2,
               args=["bench", tmp_path / "dp.plan", "--iters", "3", "--warmup", "1", "--threads", "1"], timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("latency ms") == 1 and "rank 0 of 2 (data-parallel)" in r.stdout, r.stdout
    assert "allreduce_wait" in r.stdout


def test_info_of_a_data_parallel_program(tmp_path, cli):
    with gc.Graph() as g:
        x = gc.placeholder("x", (None, 3))
        w = gc.variable("w", (3, 2), init=gc.init.xavier_uniform(seed=0))
        y = gc.tanh(x @ w)
        gc.optim.SGD(lr=0.1).minimize(gc.mean(y * y), name="train")
        g.entry("predict", fetches=[y])
    gc.compile(g, shapes={"x": (4, 3)}, entries="all", data_parallel=2).save(str(tmp_path / "dp.program"))
    info = json.loads(ok(cli("info", tmp_path / "dp.program", "--json")))
    by_name = {e["name"]: e for e in info["entries"]}
    assert by_name["train"]["data_parallel"].startswith("2 ranks, 1 allreduce buckets")
    assert by_name["predict"]["data_parallel"].startswith("2 ranks, 0 allreduce buckets")
    assert "  data-parallel: 2 ranks" in ok(cli("info", tmp_path / "dp.program"))
