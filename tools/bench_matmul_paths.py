"""Per-layer and whole-MLP latency of graphc's matmul paths against ONNX Runtime.

MLP 784-1024-1024-10 (float32, bias + relu) at batch 1 and 128: each step's median time
from ``Session.profile`` (C++ steady_clock around the kernel call) and the whole
``Session.run`` latency next to ONNX Runtime's on the same thread count, sampled
round-robin, medians.  Prints which GEMM kernel and spin time were in force.

Run:  PYTHONPATH=. python tools/bench_matmul_paths.py [--threads N] [--repeat R] [--quick]
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _bench_util as bu  # noqa: E402
import bench_runtime as br  # noqa: E402


def rotating_medians(fns, repeat, min_time):
    """Median seconds per call of each fn, round-robin with the order rotated every round:
    a framework whose pool keeps spinning after a call (ONNX Runtime's does) otherwise slows
    down whichever contender always runs right after it."""
    import statistics
    import time

    inner = []
    for fn in fns:
        fn()
        t0 = time.perf_counter()
        fn()
        inner.append(max(1, int(min_time / max(time.perf_counter() - t0, 1e-7))))
    samples = [[] for _ in fns]
    for r in range(repeat * len(fns)):
        for k in range(len(fns)):
            i = (k + r) % len(fns)
            t0 = time.perf_counter()
            for _ in range(inner[i]):
                fns[i]()
            samples[i].append((time.perf_counter() - t0) / inner[i])
    return [statistics.median(v) for v in samples]


def fused_mlp_session(gc, threads, params, batch):
    """The MLP with each layer one fused_matmul step (bias add, relu as its epilogue), as
    the fusion pass makes it: what the fused kernel path costs before that pass lands."""
    with gc.Graph() as g:
        h = x = gc.placeholder("x", (None, br.SIZES[0]))
        for i, (w, b) in enumerate(params):
            wv = gc.variable(f"fc{i + 1}/w", init=w)
            bv = gc.variable(f"fc{i + 1}/b", init=b)
            program = "r0=add(p,i2);r1=relu(r0)" if i < len(params) - 1 else "r0=add(p,i2)"
            (h,) = g.add_node("fused_matmul", [h, wv, bv], {"program": program}, name=f"fc{i + 1}/fused")
    plan = gc.compile(g, shapes={x.name: (batch, br.SIZES[0])}, fetches=[h.name], train=False)
    sess = gc.Session(plan, threads=threads)
    return sess, (lambda X: sess.run({x.name: X})[h.name])


def main(argv=None):
    args = bu.parse_args(__doc__.splitlines()[0], argv=argv)
    bu.pin_threads(args.threads)
    import numpy as np

    import graphc as gc

    threads = args.threads
    repeat = args.repeat or (5 if args.quick else 30)
    iters = 50 if args.quick else 300
    ort, ort_why = bu.try_import("onnxruntime")
    onnx, onnx_why = bu.try_import("onnx")
    print(f"machine: {bu.machine()}")
    print(f"threads: {threads}; GRAPHC_SPIN_US={os.environ.get('GRAPHC_SPIN_US', '(default)')}; "
          f"GRAPHC_MATMUL_PATH={os.environ.get('GRAPHC_MATMUL_PATH', '(auto)')}; "
          f"GRAPHC_GEMV_KERNEL={os.environ.get('GRAPHC_GEMV_KERNEL', '(auto)')}; "
          f"GRAPHC_GEMM_KERNEL={os.environ.get('GRAPHC_GEMM_KERNEL', '(auto)')}")
    print(bu.load_note())
    params = br.make_weights(0)
    ort_run = br.ort_mlp(ort, onnx, threads, params) if ort and onnx else None
    rng = np.random.default_rng(1)
    rows = []
    for batch in (1, 128):
        X = rng.standard_normal((batch, br.SIZES[0]), dtype=np.float32)
        sess, run_g = br.graphc_mlp(gc, threads, params, batch)
        sess_f, run_f = fused_mlp_session(gc, threads, params, batch)
        if not np.array_equal(run_g(X), run_f(X)):
            rows.append([f"b={batch}", "WARNING: fused output differs from unfused", "-", "-"])
        for label, ss in (("", sess), ("fused ", sess_f)):
            prof = ss.profile({ss.feed_names[0]: X}, iters=iters, warmup=10)
            for p in prof:
                if p["seconds"] * 1e6 >= 0.5:
                    rows.append([f"b={batch}", label + p["node"], p["op"], f"{p['seconds'] * 1e6:.1f}"])
        fns = [lambda r=run_g, x=X: r(x), lambda r=run_f, x=X: r(x)]
        fns += [lambda x=X: ort_run(x)] if ort_run else []
        times = rotating_medians(fns, repeat, min_time=0.05)
        rows.append([f"b={batch}", "whole MLP (Session.run)", "-", f"{times[0] * 1e6:.1f}"])
        rows.append([f"b={batch}", "whole MLP fused (Session.run)", "-", f"{times[1] * 1e6:.1f}"])
        if ort_run:
            rows.append([f"b={batch}", "whole MLP (onnxruntime)", "-", f"{times[2] * 1e6:.1f}"])
            rows.append([f"b={batch}", "ratio graphc/onnxruntime", "-", f"{times[0] / times[2]:.2f}x"])
            rows.append([f"b={batch}", "ratio graphc fused/onnxruntime", "-", f"{times[1] / times[2]:.2f}x"])
        else:
            rows.append([f"b={batch}", "onnxruntime", ort_why or onnx_why, "-"])
    bu.print_table(f"MLP per step (us, median of {iters} profiled runs) and whole run, threads={threads}",
                   ["batch", "node", "op", "us"], rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
