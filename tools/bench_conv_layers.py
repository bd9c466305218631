"""Single conv2d layers of an inference plan (the weight a variable, as an imported model's
constants): median time per Session.run, for ResNet-18's layer shapes by default.

Run:  PYTHONPATH=. python tools/bench_conv_layers.py [--threads T] [--repeat R] [--cpu-time]
      [LAYER ...]   LAYER = n,c,o,hw,k,stride (padding k // 2), e.g. 1,512,512,7,3,1

--cpu-time times process CPU time (with --threads 1 the figure that other processes on a shared
machine disturb least); the default is wall clock.  Prints the load average with each row.
"""
import argparse
import os
import time

import numpy as np

import graphc as gc
from graphc.session import Session

RESNET18 = ["1,3,64,224,7,2", "1,64,64,56,3,1", "1,128,128,28,3,1", "1,256,256,14,3,1", "1,512,512,7,3,1",
            "8,512,512,7,3,1", "1,64,128,56,1,2"]


def layer(spec):
    try:
        n, c, o, hw, k, s = (int(v) for v in spec.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"a layer is n,c,o,hw,k,stride (6 ints), got {spec!r}") from None
    if min(n, c, o, hw, k, s) < 1:
        raise argparse.ArgumentTypeError(f"every field of a layer must be >= 1, got {spec!r}")
    return n, c, o, hw, k, s


def bench(n, c, o, hw, k, s, threads, repeat, clock):
    with gc.Graph() as g:
        x = gc.placeholder("x", (n, c, hw, hw))
        w = gc.variable("w", (o, c, k, k), trainable=False)
        y = gc.conv2d(x, w, stride=s, padding=k // 2)
    plan = gc.compile(g, shapes={}, fetches=[y.name], train=False)
    sess = Session(plan, threads=threads)
    sess.set_variable("w", (np.random.default_rng(0).standard_normal((o, c, k, k)) * 0.05).astype(np.float32))
    feeds = {"x": np.random.default_rng(1).standard_normal((n, c, hw, hw)).astype(np.float32)}
    sess.run(feeds)  # the first run packs the weights
    times = []
    for _ in range(repeat):
        t0 = clock()
        sess.run(feeds)
        times.append(clock() - t0)
    t = float(np.median(times))
    ho = (hw + 2 * (k // 2) - k) // s + 1
    return t, 2.0 * n * o * c * k * k * ho * ho / t / 1e9


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("layers", nargs="*", type=layer, help="n,c,o,hw,k,stride (default: ResNet-18's shapes)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--cpu-time", action="store_true", help="process CPU time instead of wall clock")
    args = ap.parse_args(argv)
    if args.threads < 1 or args.repeat < 1:
        ap.error("--threads and --repeat must be >= 1")
    clock = time.process_time if args.cpu_time else time.perf_counter
    for n, c, o, hw, k, s in args.layers or [layer(v) for v in RESNET18]:
        t, gflops = bench(n, c, o, hw, k, s, args.threads, args.repeat, clock)
        print(f"batch {n} {c}->{o} {hw}x{hw} k{k} s{s}, {args.threads} threads: {t * 1e3:8.2f} ms "
              f"{gflops:6.1f} GFLOP/s  load {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
