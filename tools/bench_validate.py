"""Plan validation time (issue 9: the runtime's trust boundary), one table per run.

The C++ validator (runtime/validate.cc) runs before a Session allocates anything, so
its cost is paid by every Session; the target is well under a second for a
100,000-step plan.  Two synthetic plan shapes per size, each valid:

- ``chain``: relu after relu, two arena buffers used in turn (each value dies at the
  step after the one that writes it);
- ``skip``: step k adds values k and k-8, so nine values stay live at every step, in
  ten rotating buffers.

Columns: steps; the C++ validator alone (``_runtime.validate_plan``: liveness sweep
included, no allocation); the Cython conversion of the protobuf message into the
plan structs (the rest of that call); Python's ``graphc.plan.validate_plan`` (the
friendly-message twin run by ``gc.load_plan``); the whole ``gc.Session(plan)``
(conversion, validation, allocation, kernel preparation).  Median of --repeat runs.

Run:  PYTHONPATH=. python tools/bench_validate.py [--quick] [--repeat N]
"""
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _bench_util as bu  # noqa: E402


def synthetic_plan(nsteps, shape):
    from graphc._proto import graphc_pb2 as pb

    size = 64  # 16 float32 per value
    slots = 2 if shape == "chain" else 10
    p = pb.Plan(format_version=1, min_consumer_version=1, target="cpu", arena_bytes=slots * size)
    for k in range(nsteps + 1):
        p.values.add(name=f"v{k}", dtype=pb.FLOAT32, dims=[16], storage=pb.ARENA, offset=(k % slots) * size,
                     nbytes=size)
    for k in range(nsteps):
        if shape == "chain":
            st = p.steps.add(op="relu", node=f"n{k}", inputs=[k], outputs=[k + 1])
            st.frees.append(k)
        else:
            other = max(k - 8, 0)
            st = p.steps.add(op="add", node=f"n{k}", inputs=[k, other], outputs=[k + 1])
            if k >= 8:
                st.frees.append(other)
    p.feeds.append(0)
    p.fetches.append(nsteps)
    return p


def median_time(fn, repeat):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    args = bu.parse_args("time plan validation for 1k/10k/100k-step synthetic plans")
    bu.pin_threads(1)
    from graphc import plan as gplan
    from graphc.session import Session, _load_runtime

    runtime = _load_runtime()
    repeat = args.repeat or (1 if args.quick else 5)
    sizes = (1_000, 10_000) if args.quick else (1_000, 10_000, 100_000)
    print(bu.machine())
    print(f"median of {repeat} runs")
    print(f"{'shape':6} {'steps':>8} {'C++ validate':>13} {'conversion':>11} {'Python validate':>16} "
          f"{'Session()':>10}")
    for shape in ("chain", "skip"):
        for n in sizes:
            p = synthetic_plan(n, shape)
            cpp, total = [], []
            for _ in range(repeat):
                t0 = time.perf_counter()
                cpp.append(runtime.validate_plan(p))
                total.append(time.perf_counter() - t0)
            conv = statistics.median(t - c for t, c in zip(total, cpp))
            py = median_time(lambda p=p: gplan.validate_plan(p), repeat)
            sess = median_time(lambda p=p: Session(p, threads=1), repeat)
            print(f"{shape:6} {n:>8} {statistics.median(cpp) * 1e3:>10.2f} ms {conv * 1e3:>8.1f} ms "
                  f"{py * 1e3:>13.1f} ms {sess * 1e3:>7.1f} ms")


if __name__ == "__main__":
    main()
