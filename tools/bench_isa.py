"""Elementwise, reduction and fused-program kernels per ISA (runtime/cpu/isa.h).

    PYTHONPATH=. python tools/bench_isa.py [--n 1000000] [--repeat 50] [--quick]

Each case is one small plan over float32 inputs of n elements, timed with Session.profile
(the C++ clock around each step's kernel, feeds excluded): the median of ``--repeat`` runs,
summed over the plan's steps, in microseconds.  One column per ISA this CPU has (capped with
graphc._runtime.set_isa) and thread count.  A build without set_isa (before the ISA
dispatch) gets a single "build" column, so the same script measures before and after.
Prints a table; asserts nothing about speed.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _bench_util import machine  # noqa: E402


def main():
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="elements per input (default %(default)s)")
    parser.add_argument("--repeat", type=int, default=50, help="timed runs per case; the median is kept")
    parser.add_argument("--threads", default="1,2", help="thread counts, comma-separated (default %(default)s)")
    parser.add_argument("--quick", action="store_true", help="5 runs per case (smoke test)")
    args = parser.parse_args()
    repeat = 5 if args.quick else args.repeat

    import numpy as np

    import graphc as gc
    from graphc import _runtime
    from graphc.graph import Graph
    from graphc.session import Session

    n = args.n
    side = int(round(n ** 0.5))
    cases = [
        ("add", [(n,), (n,)], lambda xs: xs[0] + xs[1], False),
        ("relu", [(n,)], lambda xs: gc.relu(xs[0]), False),
        ("sigmoid", [(n,)], lambda xs: gc.sigmoid(xs[0]), False),
        ("sum (all)", [(n,)], lambda xs: gc.sum(xs[0]), False),
        (f"sum axis=1 ({side}x{side})", [(side, side)], lambda xs: gc.sum(xs[0], axis=1), False),
        (f"max axis=0 ({side}x{side})", [(side, side)], lambda xs: gc.max(xs[0], axis=0), False),
        ("x*w+b, relu: unfused", [(n,), (n,), (n,)], lambda xs: gc.relu(xs[0] * xs[1] + xs[2]), False),
        ("x*w+b, relu: fused", [(n,), (n,), (n,)], lambda xs: gc.relu(xs[0] * xs[1] + xs[2]), True),
    ]
    has_isa = hasattr(_runtime, "set_isa")
    if has_isa:
        order = ["baseline", "avx2", "avx512"]
        isas = order[: order.index(_runtime.cpu_isa(detected=True)) + 1]
    else:
        isas = ["build"]
    threads_list = [int(t) for t in args.threads.split(",")]
    rng = np.random.default_rng(0)

    print(f"# {machine()}; load average {os.getloadavg()[0]:.2f}")
    print(f"# float32, n = {n}, median of {repeat} runs, microseconds per plan run (kernels only)")
    cols = [f"{isa} t={t}" for isa in isas for t in threads_list]
    print(f"| {'case':<28} | " + " | ".join(f"{c:>12}" for c in cols) + " |")
    print(f"|{'-' * 30}|" + "|".join("-" * 14 for _ in cols) + "|")
    for name, shapes, build, fuse in cases:
        with Graph() as g:
            xs = [gc.placeholder(f"x{i}", s, "float32") for i, s in enumerate(shapes)]
            y = build(xs)
        kwargs = {"fuse": fuse}
        try:
            plan = gc.compile(g, shapes={}, fetches=[y.name], **kwargs)
        except TypeError:  # a build before the fusion pass
            if fuse:
                continue
            plan = gc.compile(g, shapes={}, fetches=[y.name])
        feeds = {f"x{i}": rng.uniform(-2, 2, s).astype(np.float32) for i, s in enumerate(shapes)}
        row = []
        for isa in isas:
            if has_isa:
                _runtime.set_isa(isa)
            for t in threads_list:
                steps = Session(plan, threads=t).profile(feeds, iters=repeat, warmup=3)
                row.append(sum(s["seconds"] for s in steps) * 1e6)
        if has_isa:
            _runtime.set_isa(None)
        print(f"| {name:<28} | " + " | ".join(f"{v:>12.1f}" for v in row) + " |")


if __name__ == "__main__":
    main()
