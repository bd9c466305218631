"""No heap allocation while a plan runs (issue 14: "No allocation inside an entry call" of an AOT
artifact, which runs these same CPU kernels): every kernel's factory allocates what its runs
need when the plan is loaded, and the worker pool's threads are started then too.

tests/noalloc_shim.c, preloaded into a worker process (tests/noalloc_probe.py), counts the
calls of malloc / calloc / realloc / posix_memalign / aligned_alloc / memalign / valloc made
while the GIL is released inside Executor.run, i.e. by the executor, the kernels, the worker
pool and the BLAS; the probe reports them for the first run after load and for the runs after
it.  Both must be 0 for every case: every registry op on each of its examples and on examples
grown past the parallel grains (at threads 2), and whole models compiled with the default
passes (MLP training with SGD, momentum, Adam and AdamW with clipping, a CNN, an LSTM, a GRU, a
transformer layer, batch-1 and batch-128 inference, float64 products; at threads 1 and 2, one
process each).

OpenBLAS allocates its thread-local buffers inside its first call on a thread (outside
graphc's control, and counted here): matmul's BLAS steps make that call when they are prepared
(blas::prepare_thread), on the thread that loads the plan, which is the one that runs it here.
NOALLOC_TRACE=1 makes the shim print a backtrace per counted allocation.
"""

import json
import os
import shutil
import subprocess
import sys

import pytest
from subproc import child_env

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def shim(noalloc_shim):
    return noalloc_shim


def _probe(shim, threads, prefixes, trace=False):
    # the tested graphc (site-packages after `pip install .`, else the source tree): tests/subproc.py
    env = child_env(LD_PRELOAD=shim)
    if trace:
        env["NOALLOC_TRACE"] = "1"
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "tests", "noalloc_probe.py"), str(threads), *prefixes],
                          env=env, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-4000:]
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert rows, proc.stdout[-2000:] + proc.stderr[-2000:]
    return rows


def _failures(rows):
    return [r for r in rows if r["first"] or r["later"]]


MODELS = ["mlp_sgd", "mlp_momentum", "mlp_adam", "mlp_adamw_clip", "mlp_infer_b1", "mlp_infer_b128", "cnn", "lstm",
          "gru", "transformer", "float64", "topk_gather"]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("model", MODELS)
def test_models_run_without_allocating(shim, model, threads):
    # One fresh process per model: nothing an earlier case did (workers started, a thread's
    # buffers grown) hides what this one would allocate in its first run.
    rows = _probe(shim, threads, [f"model/{model}"])
    assert [r["case"] for r in rows] == [f"model/{model}"]
    assert _failures(rows) == []


def test_every_op_runs_without_allocating(shim):
    # threads=2 only (the models cover threads=1): the multi-threaded paths are where per-chunk
    # scratch and the worker pool come in; ~7000 one-node plans take a few minutes per pass.
    rows = _probe(shim, 2, ["op/", "op_scaled/"])
    from graphc import registry
    ops = {r["case"].split("/")[1] for r in rows if r["case"].startswith("op/")}
    assert ops == {op.name for op in registry.all_ops()}
    assert _failures(rows) == []


def test_the_counter_sees_a_run_that_allocates(shim):
    """The counter is not blind: a gather whose index is out of range throws inside the run, and
    the exception with its message is heap memory allocated with the GIL released."""
    rows = _probe(shim, 1, ["selftest/"])
    assert [r["case"] for r in rows] == ["selftest/bad_index"]
    assert rows[0]["first"] > 0 and rows[0]["later"] > 0


def _aot_mlp_program():
    import graphc as gc
    from graphc.program import build_program
    with gc.Graph() as g:
        x = gc.placeholder("x", (32, 784))
        t = gc.placeholder("t", (32,), dtype="int64")
        model = gc.nn.Sequential(gc.nn.Linear(784, 256), gc.nn.ReLU(), gc.nn.Linear(256, 256), gc.nn.ReLU(),
                                 gc.nn.Linear(256, 10))
        y = gc.reshape(model(x), (32, 10), name="y")
        loss = gc.softmax_cross_entropy(y, t, name="loss")
    train = gc.compile(g, train={"loss": loss, "optimizer": gc.optim.AdamW(lr=1e-3, clip_global_norm=1.0)})
    infer = gc.compile(g, train=False, fetches=[y])
    return build_program({"train": train, "infer": infer})


@pytest.mark.skipif(shutil.which("make") is None or shutil.which("g++") is None, reason="needs make and g++")
def test_aot_entry_calls_do_not_allocate(shim, tmp_path):
    """The issue's promise on a real artifact: an MLP train + infer program emitted with gc.emit_c,
    built with its Makefile (default BLAS), run by tests/noalloc_aot_driver.c under the shim
    counting every thread: 0 allocations in the first and in later calls of both entries, at
    threads 1 and 2.  GRAPHC_AOT_OBJDIR shares the runtime objects with tests/test_aot_emit.py."""
    from graphc.aot.emit import emit_c
    res = emit_c(_aot_mlp_program(), tmp_path / "out", name="mlp")
    shutil.copy(os.path.join(ROOT, "tests", "noalloc_aot_driver.c"), tmp_path / "driver.c")
    objdir = [f"OBJDIR={os.environ['GRAPHC_AOT_OBJDIR']}"] if os.environ.get("GRAPHC_AOT_OBJDIR") else []
    r = subprocess.run(["make", "-j2", "all", "programs", f"PROGRAMS={tmp_path / 'driver.c'}", *objdir],
                       cwd=res.out_dir, capture_output=True, text=True, timeout=1500)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    for threads in (1, 2):
        p = subprocess.run([os.path.join(res.out_dir, "bin", "driver"), str(threads), "4"], cwd=res.out_dir,
                           env=dict(os.environ, LD_PRELOAD=shim), capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, p.stdout + p.stderr
        assert f"threads={threads} train: first=0 later=0  infer: first=0 later=0" in p.stdout, p.stdout
