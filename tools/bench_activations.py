"""Activation kernels: graphc's gelu (erf and tanh forms) and softplus, forward and backward (the
gelu_grad / softplus_grad kernels), against PyTorch CPU (torch.nn.functional.gelu / softplus, and
aten's gelu_backward / softplus_backward — what autograd runs), float32, same thread count, on
(rows, n) = 2048×512 (a GPT FFN's hidden activation) by default.  gc.silu (a composite the fusion
pass turns into one fused program) and relu are rows for scale.

Each graphc case is a compiled plan run through an IOBinding (inputs read and outputs written in
place, so the table times the kernels, not feed copies); backward is the plan of
gradients(y, x, grad_ys=dy) fetching dx only (for gelu/softplus: the one *_grad kernel).  Results
are checked against torch (1e-5 of the largest magnitude) before timing.  Medians of alternating
blocks (tools/_bench_util.py); ratio = graphc / torch (< 1: graphc faster).

Run:  PYTHONPATH=. python tools/bench_activations.py [--threads 2] [--repeat R] [--quick] [--shape 2048x512]
"""
import functools
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _bench_util as bu  # noqa: E402

SHAPE = (2048, 512)


def _cases(gc, tf):
    """(what, graphc builder, torch forward, torch backward(dy, x) or None)."""
    aten = None
    try:
        import torch
        aten = torch.ops.aten
    except ImportError:
        pass
    return [
        ("gelu erf", lambda t: gc.gelu(t), tf and (lambda t: tf.gelu(t)),
         aten and (lambda dy, x: aten.gelu_backward(dy, x))),
        ("gelu tanh", lambda t: gc.gelu(t, approximate="tanh"), tf and (lambda t: tf.gelu(t, approximate="tanh")),
         aten and (lambda dy, x: aten.gelu_backward(dy, x, approximate="tanh"))),
        ("softplus", lambda t: gc.softplus(t), tf and (lambda t: tf.softplus(t)),
         aten and (lambda dy, x: aten.softplus_backward(dy, x, 1.0, 20.0))),
        ("silu (fused composite)", lambda t: gc.silu(t), tf and (lambda t: tf.silu(t)),
         aten and (lambda dy, x: aten.silu_backward(dy, x))),
        ("relu", lambda t: gc.relu(t), tf and (lambda t: tf.relu(t)),
         aten and (lambda dy, x: aten.threshold_backward(dy, tf.relu(x), 0))),
    ]


def _graphc_run(gc, threads, build, x, dy, direction):
    """(run(), output array) for one direction as a compiled plan with in-place bindings."""
    with gc.Graph() as g:
        xp = gc.placeholder("x", x.shape, "float32")
        y = build(xp)
        feeds = {"x": x}
        out = y
        if direction == "backward":
            dyp = gc.placeholder("dy", x.shape, "float32")
            (out,) = gc.gradients(y, [xp], grad_ys=dyp)
            feeds["dy"] = dy
    binding = gc.Session(gc.compile(g, fetches=[out.name]), threads=threads).io_binding()
    for name, arr in feeds.items():
        binding.bind_input(name, arr)
    result = binding.bind_output(out.name)
    return binding.run, result


def measure(threads, repeat=None, quick=False, shape=SHAPE):
    """Rows {"what", "graphc_ms", "torch_ms", "ratio"} for every case, forward and backward, at
    ``threads`` threads (torch at the same count; torch_ms/ratio None without torch)."""
    import numpy as np

    import graphc as gc
    torch, _ = bu.try_import("torch")
    tf = torch.nn.functional if torch is not None else None
    if torch is not None:
        torch.set_num_threads(threads)
    repeat = repeat or (5 if quick else 21)
    rng = np.random.default_rng(0)
    x = rng.uniform(-6, 6, shape).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    rows = []
    for what, build, t_fwd, t_bwd in _cases(gc, tf):
        for direction in ("forward", "backward"):
            run, result = _graphc_run(gc, threads, build, x, dy, direction)
            fns = [run]
            if torch is not None:
                xt, dyt = torch.from_numpy(x), torch.from_numpy(dy)
                tfn = functools.partial(t_fwd, xt) if direction == "forward" else functools.partial(t_bwd, dyt, xt)
                run()
                want = tfn().numpy()
                err = float(np.abs(result - want).max()) / (float(np.abs(want).max()) or 1.0)
                if err > 1e-5:
                    raise SystemExit(f"{what} {direction}: graphc and torch differ (max error {err:.2e})")
                fns.append(tfn)
            times = bu.median_times(fns, repeat)
            ours = times[0] * 1e3
            theirs = times[1] * 1e3 if torch is not None else None
            rows.append({"what": f"{what} {direction} {shape[0]}x{shape[1]}", "graphc_ms": ours, "torch_ms": theirs,
                         "ratio": ours / theirs if theirs else None})
    return rows


def main(argv=None):
    def extra(p):
        p.add_argument("--shape", default=f"{SHAPE[0]}x{SHAPE[1]}", help="rows x n (default %(default)s)")

    args = bu.parse_args(__doc__.splitlines()[0], extra=extra, argv=argv)
    bu.pin_threads(args.threads)
    from graphc import _runtime
    torch, why = bu.try_import("torch")
    shape = tuple(int(v) for v in args.shape.split("x"))
    repeat = args.repeat or (5 if args.quick else 21)
    print(bu.machine())
    print(bu.load_note())
    print(f"threads {args.threads}; ISA {_runtime.cpu_isa()}; torch {torch.__version__ if torch else why}; "
          f"{bu.SAMPLING}; median of {repeat}")
    rows = measure(args.threads, repeat, args.quick, shape)
    bu.print_table("activations float32, ms", ["case", "graphc", "torch", "graphc/torch"],
                   [[r["what"], bu.fmt_ms(r["graphc_ms"] / 1e3), bu.fmt_ms(r["torch_ms"] and r["torch_ms"] / 1e3),
                     bu.fmt_ratio(r["graphc_ms"], r["torch_ms"])] for r in rows])


if __name__ == "__main__":
    main()
