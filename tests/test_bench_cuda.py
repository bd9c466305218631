"""tools/bench_cuda.py where there is no GPU: it says why and exits 2, never printing a figure;
its --smoke-cpu mode runs the rows' code on the CPU (small sizes) and prints no figure either."""

import os
import re
import subprocess
import sys
import tempfile

import pytest
from devices import cuda_available
from subproc import child_env

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "tools", "bench_cuda.py")


def _run(*args):
    # the graphc under test (installed or in place: tests/subproc.py), run outside the source tree
    return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True, env=child_env(),
                          cwd=tempfile.gettempdir(), timeout=600)


def test_without_a_gpu_it_exits_2_saying_why():
    if cuda_available():
        pytest.skip("a CUDA GPU is usable here: the benchmark would run")
    r = _run("--quick")
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "no usable CUDA GPU, nothing measured" in r.stderr
    assert "cuda" in r.stderr.split("nothing measured:", 1)[1].lower()  # the runtime's reason follows
    assert not re.search(r"\d\s*(TFLOP/s|GB/s|ms|us)\b", r.stdout + r.stderr)


def test_unknown_row_is_a_usage_error():
    r = _run("--only", "sgemm,nope")
    assert r.returncode == 2 and "unknown rows ['nope']" in r.stderr


def test_smoke_cpu_runs_the_rows_and_prints_no_figure():
    r = _run("--smoke-cpu", "--repeat", "2", "--only", "sgemm,add,host")
    assert r.returncode == 0, r.stdout + r.stderr
    for row in ("sgemm", "add", "host"):
        assert re.search(rf"^  {row}: done in", r.stdout, re.M), r.stdout
    assert not re.search(r"(TFLOP/s|GB/s| us |% of copy)", r.stdout), r.stdout
