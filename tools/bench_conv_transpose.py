"""conv_transpose2d benchmark: graphc against PyTorch CPU (torch.nn.functional.conv_transpose2d,
and its autograd backward for x and w), float32, same thread count.

graphc's conv_transpose2d is conv2d_grad_input (its forward) with conv2d and conv2d_grad_weight
as its gradients (graphc/ops/conv.py): this table times those kernels on a DCGAN generator's
shapes — the brief's layer (N=64, 64->32 channels, 4x4 -> 8x8, k4 s2 p1), the digits GAN's last
layer (32->1, 8x8 -> 16x16) and a wider one (128->64, 7x7 -> 14x14).  Each graphc case is a
plan run through an IOBinding (inputs read, outputs written in place): "forward" fetches y;
"fwd+bwd" fetches y, dL/dx and dL/dw for L = sum(y · r).  Results are checked against torch
(max error 1e-3 of the largest magnitude) before timing.  Medians of alternating blocks
(tools/_bench_util.py); ratio = graphc / torch (< 1: graphc faster).

``--cpu-time`` (with --threads 1) times process CPU time instead of wall clock, round-robin,
median: the steadier figure on a machine that other processes load (tools/bench_conv.py's).

Run:  PYTHONPATH=. python tools/bench_conv_transpose.py [--threads 2] [--repeat R] [--quick] [--cpu-time]
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _bench_util as bu  # noqa: E402
from bench_conv import cpu_times  # noqa: E402

# name, x (N, C_in, H, W), w (C_in, C_out, kh, kw), stride, padding
SHAPES = [
    ("64->32 4x4->8x8", (64, 64, 4, 4), (64, 32, 4, 4), 2, 1),
    ("32->1 8x8->16x16", (64, 32, 8, 8), (32, 1, 4, 4), 2, 1),
    ("128->64 7x7->14x14", (64, 128, 7, 7), (128, 64, 4, 4), 2, 1),
]


def graphc_case(gc, threads, backward, xs, ws, stride, padding, arrays):
    """(run(), [result arrays]) as a plan with in-place bindings."""
    x_arr, w_arr, r_arr = arrays
    with gc.Graph() as g:
        x, w = gc.placeholder("x", xs), gc.placeholder("w", ws)
        y = gc.conv_transpose2d(x, w, stride=stride, padding=padding)
        outs = [y]
        feeds = {"x": x_arr, "w": w_arr}
        if backward:
            r = gc.placeholder("r", r_arr.shape)
            outs += gc.gradients(gc.sum(y * r), [x, w])
            feeds["r"] = r_arr
    plan = gc.compile(g, shapes={}, fetches=[t.name for t in outs], train=False)
    binding = gc.Session(plan, threads=threads).io_binding()
    for name, arr in feeds.items():
        binding.bind_input(name, arr)
    return binding.run, [binding.bind_output(t.name) for t in outs]


def torch_case(torch, backward, stride, padding, arrays):
    x, w, r = (torch.from_numpy(a) for a in arrays)
    if not backward:
        return lambda: [torch.nn.functional.conv_transpose2d(x, w, stride=stride, padding=padding)]
    xg, wg = x.clone().requires_grad_(True), w.clone().requires_grad_(True)

    def run():
        y = torch.nn.functional.conv_transpose2d(xg, wg, stride=stride, padding=padding)
        return [y.detach()] + list(torch.autograd.grad(y, [xg, wg], grad_outputs=r))
    return run


def main(argv=None):
    def extra(parser):
        parser.add_argument("--cpu-time", action="store_true",
                            help="time process CPU time, round-robin (needs --threads 1)")
    args = bu.parse_args(__doc__.splitlines()[0], extra=extra, argv=argv)
    if args.cpu_time and args.threads != 1:
        raise SystemExit("--cpu-time needs --threads 1 (CPU time adds up every thread's)")
    bu.pin_threads(args.threads)
    import numpy as np

    import graphc as gc
    from graphc import _runtime
    torch, why = bu.try_import("torch")
    repeat = args.repeat or (5 if args.quick else 21)
    print(bu.machine())
    print(bu.load_note())
    print(f"threads {args.threads}; ISA {_runtime.cpu_isa()}; torch {torch.__version__ if torch else why}; "
          f"{'process CPU time, calls round-robin' if args.cpu_time else bu.SAMPLING}; median of {repeat}")
    if torch is not None:
        torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    rows = []
    for name, xs, ws, stride, padding in SHAPES:
        ho, wo = ((d - 1) * stride - 2 * padding + k for d, k in zip(xs[2:], ws[2:]))
        arrays = (rng.standard_normal(xs).astype(np.float32), (rng.standard_normal(ws) * 0.1).astype(np.float32),
                  rng.standard_normal((xs[0], ws[1], ho, wo)).astype(np.float32))
        for backward in (False, True):
            run, results = graphc_case(gc, args.threads, backward, xs, ws, stride, padding, arrays)
            fns = [run]
            if torch is not None:
                tfn = torch_case(torch, backward, stride, padding, arrays)
                run()
                for what, ours, want in zip(("y", "dx", "dw"), results, tfn()):
                    want = want.numpy()
                    err = float(np.abs(ours - want).max()) / (float(np.abs(want).max()) or 1.0)
                    if err > 1e-3:
                        raise SystemExit(f"{name} {what}: graphc and torch differ (max error {err:.2e} of max)")
                fns.append(tfn)
            times = cpu_times(fns, repeat) if args.cpu_time else bu.median_times(fns, repeat)
            ours, theirs = times[0], (times[1] if torch is not None else None)
            rows.append([name, "fwd+bwd" if backward else "forward", bu.fmt_ms(ours), bu.fmt_ms(theirs),
                         bu.fmt_ratio(ours, theirs)])
    bu.print_table("conv_transpose2d float32, k4 s2 p1, batch 64", ["shape", "pass", "graphc", "torch",
                                                                    "graphc/torch"], rows)


if __name__ == "__main__":
    main()
