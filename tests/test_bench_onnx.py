"""tools/bench_onnx.py --quick at 32x32: the ResNet-18-shaped ONNX model builds, passes
onnx.checker, imports into graphc, agrees with ONNX Runtime before timing, and one row per
batch size is printed with both latencies and their ratio (the 224x224 run is the README's)."""
import os
import re
import subprocess
import sys
import tempfile

import pytest
from subproc import child_env

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime", reason="tools/bench_onnx.py compares graphc with ONNX Runtime")

SCRIPT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools", "bench_onnx.py")


def test_bench_onnx_quick_checks_and_times_each_batch():
    r = subprocess.run([sys.executable, SCRIPT, "--quick", "--threads", "1", "--batches", "1,2", "--size", "32",
                        "--repeat", "2"], env=child_env(), capture_output=True, text=True,
                       cwd=tempfile.gettempdir(), timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    out = r.stdout
    assert out.startswith("machine: ") and "input N x 3x32x32" in out, out
    rows = [line for line in out.splitlines() if line.startswith("ResNet-18 batch")]
    assert [row.split()[2] for row in rows] == ["1", "2"], out
    for row in rows:
        # graphc's time, ONNX Runtime's and their ratio: the case was checked and timed
        assert len(re.findall(r"\d+\.\d+ ms", row)) == 2 and re.search(r"\d+\.\d+x\s+(yes|no)\s*$", row), row
    assert len(re.findall(r"logits vs ORT: max \|diff\| / max\|ref\| = ", out)) == 2, out


def test_bench_onnx_refuses_a_too_small_image():
    r = subprocess.run([sys.executable, SCRIPT, "--size", "16", "--batches", "1"], env=child_env(),
                       capture_output=True, text=True, cwd=tempfile.gettempdir(), timeout=120)
    assert r.returncode != 0 and "--size must be >= 32" in r.stderr, r.stdout + r.stderr
