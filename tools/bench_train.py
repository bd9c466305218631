"""Training-step benchmark: graphc vs PyTorch CPU on an MLP 784-1024-1024-10.

One step = forward, softmax cross-entropy (mean), backward, SGD with momentum 0.9, at
batch 128, float32, same thread count and same initial weights for both.  The first
losses are checked to agree (rtol 1e-3) before timing; target: graphc <= 1.0x PyTorch.
graphc is timed through the public ``Session.run`` (one call per step).  If the runtime
lacks a kernel for the training ops, the graphc column says so and PyTorch still runs.

Run:  PYTHONPATH=. python tools/bench_train.py [--threads N] [--repeat R] [--quick]
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _bench_util as bu  # noqa: E402

SIZES = (784, 1024, 1024, 10)
BATCH = 128
LR, MOMENTUM = 0.01, 0.9
CHECK_STEPS = 5


def make_weights(seed=0):
    import numpy as np
    rng = np.random.default_rng(seed)
    params = []
    for fan_in, fan_out in zip(SIZES[:-1], SIZES[1:]):
        bound = 1.0 / np.sqrt(fan_in)
        params.append((rng.uniform(-bound, bound, (fan_in, fan_out)).astype(np.float32),
                       rng.uniform(-bound, bound, (fan_out,)).astype(np.float32)))
    return params


def graphc_step(gc, threads, params):
    """A Session running one training step per call; returns (step(X, y) -> loss, session)."""
    g, x, h, names = bu.graphc_mlp(gc, params, SIZES[0])
    with g:
        labels = gc.placeholder("y", (None,), dtype="int64")
        loss = gc.softmax_cross_entropy(h, labels, name="loss")
        gc.optim.SGD(lr=LR, momentum=MOMENTUM).minimize(loss)
    plan = gc.compile(g, shapes={x.name: (BATCH, SIZES[0]), labels.name: (BATCH,)}, fetches=[loss.name])
    sess = gc.Session(plan, threads=threads)
    for (wn, bn), (w, b) in zip(names, params):
        sess.set_variable(wn, w)
        sess.set_variable(bn, b)
    return (lambda X, Y: float(sess.run({x.name: X, labels.name: Y})[loss.name])), sess


def torch_step(torch, threads, params):
    torch.set_num_threads(threads)
    return bu.torch_sgd_step(torch, bu.torch_mlp(torch, params), LR, MOMENTUM)


def main(argv=None):
    args = bu.parse_args(__doc__.splitlines()[0], argv=argv)
    bu.pin_threads(args.threads)
    import numpy as np

    import graphc as gc

    threads = args.threads
    repeat = args.repeat or (5 if args.quick else 30)
    torch, torch_why = bu.try_import("torch")
    versions = [f"graphc {gc.__version__}", f"numpy {np.__version__}",
                f"torch {torch.__version__}" if torch else f"torch {torch_why}"]
    print(f"machine: {bu.machine()}")
    print(f"threads: {threads} for every framework; {', '.join(versions)}")
    print(f"repeats: {repeat}; medians, {bu.SAMPLING}")
    print(bu.load_note())
    print()

    params = make_weights(0)
    rng = np.random.default_rng(1)
    batches = [(rng.standard_normal((BATCH, SIZES[0]), dtype=np.float32),
                rng.integers(0, SIZES[-1], BATCH).astype(np.int64)) for _ in range(CHECK_STEPS)]

    notes = []
    g_step = g_why = None
    try:
        g_step, _ = graphc_step(gc, threads, params)
        g_losses = [g_step(X, Y) for X, Y in batches]
    except Exception as e:  # a missing CPU kernel surfaces as ModelFormatError or RuntimeExecutionError
        msg = str(e).splitlines()[0]
        g_step, g_why = None, ("no CPU kernel" if "no cpu kernel" in msg.lower() else "failed") + \
            f" ({type(e).__name__})"
        notes.append(f"graphc: {type(e).__name__}: {msg[:200]}")
    t_step = t_why = None
    if torch is not None:
        t_step = torch_step(torch, threads, params)
        t_losses = [t_step(X, Y) for X, Y in batches]
        notes.append("PyTorch losses, first steps: " + ", ".join(f"{v:.5f}" for v in t_losses))
    else:
        t_why = torch_why
    if g_step is not None:
        notes.append("graphc  losses, first steps: " + ", ".join(f"{v:.5f}" for v in g_losses))
        if t_step is not None:
            ok = np.allclose(g_losses, t_losses, rtol=1e-3, atol=0)
            notes.append(f"losses agree (rtol 1e-3): {ok}")
            if not ok:
                g_why = "losses disagree with PyTorch; not timed"
                g_step = None

    X, Y = batches[0]
    fns = [(lambda f=f: f(X, Y)) for f in (g_step, t_step) if f is not None]
    times = iter(bu.median_times(fns, repeat))
    t_g = next(times) if g_step is not None else None
    t_t = next(times) if t_step is not None else None

    row = ["MLP 784-1024-1024-10 train step b=128", g_why or bu.fmt_ms(t_g), t_why or bu.fmt_ms(t_t)]
    ratio = bu.fmt_ratio(t_g, t_t)
    status = "-" if ratio == "-" else ("met" if t_g / t_t <= 1.0 else "MISSED")
    bu.print_table(f"training step (SGD momentum {MOMENTUM}, lr {LR}, softmax cross-entropy), threads={threads}",
                   ["case", "graphc", "torch", "graphc/torch", "target", "status"],
                   [row + [ratio, "<= 1.00x", status]])
    print()
    for note in notes:
        print(note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
