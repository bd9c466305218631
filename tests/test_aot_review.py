"""Review of issue 14's AOT pipeline: checks of what the artifact relies on that the other AOT
test modules do not cover.

matmul's BLAS path (runtime/cpu/matmul.cc blas_kernel) runs OpenBLAS on one thread over fixed
output blocks (64 rows of C, 1024 outputs of a gemv) spread over graphc's workers, so that an
artifact and a Session give the same bits at any `threads`.  tests/aot_review_probe.py runs
float64 products (always the BLAS path) big enough to be split, in every layout the kernel
distinguishes (gemm with op(A)/op(B) transposed or not, one row, one column, a batch): the
bytes must not depend on the thread count, the blocks must put every output in its place (numpy
agrees to rounding), and a run must allocate nothing, the first one included, even though
the workers make OpenBLAS calls of their own (docs/aot.md, "Threads and what is process-wide").
"""

import json
import os
import shutil
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PROBE = os.path.join(HERE, "aot_review_probe.py")


def _rows(threads, *extra, env=None):
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, PROBE, str(threads), *extra], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert rows, proc.stdout[-2000:]
    return {r["case"]: r for r in rows}


def test_blas_blocks_give_the_same_bits_at_any_thread_count():
    by_threads = {t: _rows(t) for t in (1, 2, 3)}
    names = list(by_threads[1])
    assert len(names) >= 9
    for name in names:
        row = by_threads[1][name]
        assert row["shape_ok"], name
        # every block in its place: numpy's product agrees to rounding
        assert row["rel_err"] < 1e-12, (name, row["rel_err"])
        for t in (2, 3):
            assert by_threads[t][name]["sha256"] == row["sha256"], (name, t)


@pytest.fixture(scope="module")
def shim(tmp_path_factory):
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler: the allocation-counting shim cannot be built")
    out = str(tmp_path_factory.mktemp("review_noalloc") / "noalloc_shim.so")
    subprocess.run([cc, "-O1", "-shared", "-fPIC", "-o", out, os.path.join(HERE, "noalloc_shim.c"), "-ldl"],
                   check=True, capture_output=True, text=True)
    return out


@pytest.mark.parametrize("case", ["gemm", "gemm_ta", "row_tb", "col_ta", "batched"])
def test_blas_blocks_on_the_workers_allocate_nothing(shim, case):
    # One process per case: its first run is the first OpenBLAS call of the workers.
    rows = _rows(2, "count", case, env=dict(os.environ, LD_PRELOAD=shim))
    row = rows[case]
    assert (row["first"], row["later"]) == (0, 0), row
