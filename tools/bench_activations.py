"""Activation kernels: graphc's gelu (erf and tanh forms), softplus and their gradient ops against
PyTorch CPU (torch.nn.functional.gelu / softplus forward, and the backward autograd runs), on a
vector of N items, float32 and float64, same thread count.  gc.silu (a composite the fusion pass
turns into one fused program) and relu are rows for scale.

Each graphc case is one compiled plan run through Session.run (the time includes copying the feed
in and the result out: ~0.3 ms per 1M float32 here).  Results are checked against torch (rtol
1e-5 float32, 1e-12 float64) before timing; medians of --repeat runs, in ms.

Run:  PYTHONPATH=. python tools/bench_activations.py [--n 1048576] [--threads 1] [--repeat 15]
"""
import argparse
import statistics
import time

import numpy as np

import graphc as gc
from graphc.graph import Graph
from graphc.session import Session

try:
    import torch
except ImportError:  # the table then has no torch column
    torch = None


def _median_ms(fn, repeat):
    fn()
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts) * 1e3


def _cases():
    tf = torch.nn.functional if torch is not None else None
    return [
        ("gelu none", lambda t: gc.gelu(t), tf and (lambda t: tf.gelu(t))),
        ("gelu tanh", lambda t: gc.gelu(t, approximate="tanh"), tf and (lambda t: tf.gelu(t, approximate="tanh"))),
        ("softplus", gc.softplus, tf and tf.softplus),
        ("silu (fused composite)", gc.silu, tf and tf.silu),
        ("relu", gc.relu, tf and tf.relu),
    ]


def _row(ours, theirs, x, threads, repeat):
    """[graphc fwd, torch fwd, graphc fwd+bwd, torch fwd+bwd] in ms (torch None without torch)."""
    dt = x.dtype.name
    with Graph() as g:
        xp = gc.placeholder("x", x.shape, dt)
        y = ours(xp)
        (dx,) = gc.gradients(gc.sum(y), [xp])
    fwd = Session(gc.compile(g, fetches=[y.name]), threads=threads)
    both = Session(gc.compile(g, fetches=[y.name, dx.name]), threads=threads)
    row = [_median_ms(lambda: fwd.run({"x": x}), repeat), None, _median_ms(lambda: both.run({"x": x}), repeat), None]
    if theirs is None:
        return row
    xt = torch.tensor(x)
    tol = dict(rtol=1e-5, atol=1e-5) if dt == "float32" else dict(rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(fwd.run({"x": x})[y.name], theirs(xt).numpy(), **tol)
    xg = xt.clone().requires_grad_(True)

    def torch_both():
        out = theirs(xg)
        out.backward(torch.ones_like(out))
        xg.grad = None

    with torch.no_grad():
        row[1] = _median_ms(lambda: theirs(xt), repeat)
    row[3] = _median_ms(torch_both, repeat)
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1 << 20)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=15)
    args = ap.parse_args()
    if torch is not None:
        torch.set_num_threads(args.threads)
    print(f"N = {args.n}, threads = {args.threads}, median of {args.repeat} runs, ms")
    print(f"{'dtype':8s} {'op':24s} {'fwd':>8s} {'torch':>8s} {'fwd+bwd':>8s} {'torch':>8s}")
    for dt in ("float32", "float64"):
        x = np.random.default_rng(0).uniform(-6, 6, args.n).astype(dt)
        for name, ours, theirs in _cases():
            row = _row(ours, theirs, x, args.threads, args.repeat)
            cells = " ".join(f"{v:8.2f}" if v is not None else f"{'-':>8s}" for v in row)
            print(f"{dt:8s} {name:24s} {cells}")


if __name__ == "__main__":
    main()
