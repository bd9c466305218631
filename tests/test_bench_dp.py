"""tools/bench_data_parallel.py --quick on 2 ranks: it prints its one table with every row measured
(times, ratios, efficiencies), the communicator's sums are right, no bytes are copied for
communication and the plan runs one allreduce per bucket.  Timings are printed, never asserted."""
import os
import re
import subprocess
import sys
import tempfile

from mpirun import require_mpi
from subproc import child_env

SCRIPT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools", "bench_data_parallel.py")


def test_bench_data_parallel_quick_prints_the_table():
    require_mpi()
    r = subprocess.run([sys.executable, SCRIPT, "--quick"], env=child_env(), capture_output=True, text=True,
                       cwd=tempfile.gettempdir(), timeout=240)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    rows = {line.split(" | ")[0].strip(): [c.strip() for c in line.split(" | ")[1:]]
            for line in r.stdout.splitlines() if " | " in line}
    allreduce = [k for k in rows if k.startswith("allreduce 16 MiB")]
    assert len(allreduce) == 3, r.stdout
    for k in allreduce:
        graphc, peer, ratio = rows[k][:3]
        assert re.fullmatch(r"\d+\.\d+ ms", graphc) and re.search(r"\d+\.\d+ ms$", peer), (k, rows[k])
        assert re.fullmatch(r"\d+\.\d+x", ratio), (k, rows[k])
    assert rows["allreduce 16 MiB f32, graphc Communicator"][4] == "sum correct", r.stdout
    assert rows["allreduce 16 MiB f32, deterministic mode"][4] == "sum correct", r.stdout
    for model in ("MLP", "CNN"):
        (scaling,) = [k for k in rows if k.startswith(f"{model} train step, weak scaling")]
        assert re.fullmatch(r"\d+%", rows[scaling][2]), rows[scaling]
        assert re.fullmatch(r"\d+%", rows[f"{model} train step, cost of the allreduce"][2]), r.stdout
        assert rows[f"{model} bytes copied for communication / step"][0] == "0 B", r.stdout
        collectives = rows[f"{model} collectives / step"]
        assert collectives[2] == "equal" and int(collectives[0]) >= 1, collectives
    assert rows["NCCL allreduce / GPU weak scaling"][0] == "not measured", r.stdout
    assert "load average (1 min) at start" in r.stdout and "at end" in r.stdout
