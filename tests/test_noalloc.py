"""No heap allocation while a plan runs (issue 14: "No allocation inside an entry call" of an AOT
artifact, which runs these same CPU kernels): every kernel's factory allocates what its runs
need when the plan is loaded, and the worker pool's threads are started then too.

tests/noalloc_shim.c, preloaded into a worker process (tests/noalloc_probe.py), counts the
calls of malloc / calloc / realloc / posix_memalign / aligned_alloc / memalign / valloc made
while the GIL is released inside Executor.run, i.e. by the executor, the kernels, the worker
pool and the BLAS; the probe reports them for the first run after load and for the runs after
it.  Both must be 0 for every case: every registry op on each of its examples and on examples
grown past the parallel grains, and whole models compiled with the default passes (MLP
training with SGD, momentum, Adam and AdamW with clipping, a CNN, an LSTM, a GRU, a
transformer layer, batch-1 and batch-128 inference, float64 products), at threads 1 and 2.

OpenBLAS allocates its own buffers inside its first calls: outside graphc's control, it would
be counted here too.  The cases pass because graphc's default paths for them do not call
OpenBLAS or because scipy-openblas32 had made its allocations before (at import); a failure
naming an OpenBLAS frame (NOALLOC_TRACE=1 prints the backtraces) is that, not a kernel's.
"""

import json
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def shim(tmp_path_factory):
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler: the allocation-counting shim cannot be built")
    out = str(tmp_path_factory.mktemp("noalloc") / "noalloc_shim.so")
    subprocess.run([cc, "-O1", "-shared", "-fPIC", "-o", out, os.path.join(ROOT, "tests", "noalloc_shim.c"), "-ldl"],
                   check=True, capture_output=True, text=True)
    return out


def _probe(shim, threads, prefixes, trace=False):
    env = dict(os.environ, LD_PRELOAD=shim, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
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


@pytest.mark.parametrize("threads", [1, 2])
def test_models_run_without_allocating(shim, threads):
    rows = _probe(shim, threads, ["model/"])
    assert len(rows) == 12
    assert _failures(rows) == []


@pytest.mark.parametrize("threads", [1, 2])
def test_every_op_runs_without_allocating(shim, threads):
    rows = _probe(shim, threads, ["op/", "op_scaled/"])
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
