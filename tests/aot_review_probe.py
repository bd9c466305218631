"""Driver of tests/test_aot_review.py: matmul's BLAS path (runtime/cpu/matmul.cc blas_kernel:
OpenBLAS on one thread over fixed output blocks spread over graphc's workers) through a Session.

    python tests/aot_review_probe.py THREADS            one JSON line per case
    LD_PRELOAD=.../noalloc_shim.so python tests/aot_review_probe.py THREADS count [CASE]

Each line: the case, the sha256 of every fetch's bytes, the largest error against numpy
relative to the result's scale, and with "count" the heap allocations of the first run and of
the runs after it (tests/noalloc_shim.c, armed as tests/noalloc_probe.py arms it).
"""

import hashlib
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import graphc as gc  # noqa: E402

# Every case is big enough (M*N*K >= matmul.cc's kSmallWork = 2**22) for the BLAS path to split
# its blocks over the workers, and covers several blocks (64 rows of C, 1024 outputs of a gemv).
# (name, a shape, b shape, transpose_a, transpose_b)
CASES = [
    ("gemm", (300, 129), (129, 130), False, False),
    ("gemm_ta", (129, 300), (129, 130), True, False),
    ("gemm_tb", (300, 129), (130, 129), False, True),
    ("gemm_ta_tb", (129, 300), (130, 129), True, True),
    ("row", (1, 4096), (4096, 1100), False, False),
    ("row_tb", (1, 4096), (1100, 4096), False, True),
    ("col", (2100, 2048), (2048, 1), False, False),
    ("col_ta", (2048, 2100), (2048, 1), True, False),
    ("batched", (3, 200, 129), (3, 129, 130), False, False),
]


def _case(name, ashape, bshape, ta, tb):
    rng = np.random.default_rng([ord(c) for c in name])
    a_val = rng.standard_normal(ashape)
    b_val = rng.standard_normal(bshape)
    with gc.Graph() as g:
        a = gc.placeholder("a", ashape, dtype="float64")
        b = gc.variable("b", init=b_val)
        y = gc.matmul(a, b, transpose_a=ta, transpose_b=tb, name="y")
    plan = gc.compile(g, shapes={}, fetches=[y.name])
    aa = np.swapaxes(a_val, -1, -2) if ta else a_val
    bb = np.swapaxes(b_val, -1, -2) if tb else b_val
    return plan, {"a": a_val}, aa @ bb


def main(argv):
    threads = int(argv[1])
    count = len(argv) > 2 and argv[2] == "count"
    only = argv[3] if len(argv) > 3 else None
    if count:
        import noalloc_probe
        noalloc_probe.SHIM = noalloc_probe._shim()
    for name, ashape, bshape, ta, tb in CASES:
        if only is not None and name != only:
            continue
        plan, feeds, want = _case(name, ashape, bshape, ta, tb)
        row = {"case": name}
        if count:
            row.update(noalloc_probe.probe(name, plan, feeds, threads))
        sess = gc.Session(plan, threads=threads)
        out = sess.run(feeds)
        got = np.asarray(out["y"] if isinstance(out, dict) else out[0])
        row["sha256"] = hashlib.sha256(np.ascontiguousarray(got).tobytes()).hexdigest()
        row["shape_ok"] = list(got.shape) == list(want.shape)
        row["rel_err"] = float(np.max(np.abs(got - want)) / max(1.0, float(np.max(np.abs(want)))))
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main(sys.argv)
