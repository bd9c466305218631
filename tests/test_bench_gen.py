"""tools/bench_gen.py --quick: the generative examples' benchmark runs, checks graphc against its
torch twins before timing, and prints one row per case (the tiny configs: seconds)."""
import os
import re
import subprocess
import sys
import tempfile

import pytest
from subproc import child_env

pytest.importorskip("torch", reason="tools/bench_gen.py compares graphc against PyTorch; torch is not installed")

SCRIPT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools", "bench_gen.py")


def test_bench_gen_quick_checks_and_times_every_case():
    r = subprocess.run([sys.executable, SCRIPT, "--quick", "--threads", "1"], env=child_env(), capture_output=True,
                       text=True, cwd=tempfile.gettempdir(), timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    out = r.stdout
    assert "load average (1 min) at start" in out
    rows = [line for line in out.splitlines()
            if line.startswith(("GAN step", "DDPM train step", "DDPM sampling", "conv_transpose2d fwd+bwd"))]
    assert len(rows) == 4, out
    for line in rows:
        # graphc time, torch time and their ratio: every case was checked and timed
        assert len(re.findall(r"\d+\.\d+ ms", line)) == 2 and re.search(r"\d+\.\d+x\s*$", line), line
    checks = out.split("checked before timing")[1]
    assert checks.count(": agree") == 4 and "DISAGREE" not in checks, out
