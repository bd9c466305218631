"""conv2d benchmark: graphc's conv2d, conv2d_grad_input and conv2d_grad_weight kernels against
PyTorch CPU (torch.nn.functional.conv2d, and aten.convolution_backward — what autograd runs —
for the input and the weight gradient), float32, same thread count.

Shapes: the 3x3 64->64 layer on (32, 64, 16, 16) and the convolutions of the benchmark CNN
(issue 11: stem 3->32 on 32x32, 32->32 3x3 on 32x32, 32->64 3x3 stride 2 with its 1x1
stride-2 shortcut, 64->64 3x3 on 16x16; batch 32).  Each graphc case is a one-node plan run
through an IOBinding (inputs read and the output written in place, so the table times the
kernel, not feed copies).  Results are checked against torch (rtol 1e-3) before timing.
Medians of alternating blocks (tools/_bench_util.py); ratio = graphc / torch (< 1: graphc
faster).

``--cpu-time`` (with --threads 1) times process CPU time instead of wall clock, round-robin,
median: the steadier figure on a machine that other processes load.

Run:  PYTHONPATH=. python tools/bench_conv.py [--threads 2] [--repeat R] [--quick] [--cpu-time]
"""
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _bench_util as bu  # noqa: E402

# name, (N, C, H, W), (O, C, kh, kw), stride, padding
SHAPES = [
    ("3x3 64->64 16x16", (32, 64, 16, 16), (64, 64, 3, 3), 1, 1),
    ("stem 3->32 32x32", (32, 3, 32, 32), (32, 3, 3, 3), 1, 1),
    ("3x3 32->32 32x32", (32, 32, 32, 32), (32, 32, 3, 3), 1, 1),
    ("3x3 32->64 s2", (32, 32, 32, 32), (64, 32, 3, 3), 2, 1),
    ("1x1 32->64 s2", (32, 32, 32, 32), (64, 32, 1, 1), 2, 0),
]
DIRECTIONS = ("forward", "grad_input", "grad_weight")


def graphc_case(gc, np, threads, direction, xs, ws, stride, padding, arrays):
    """(run(), result array) for one direction as a one-node plan with in-place bindings."""
    x_arr, w_arr, dy_arr = arrays
    attrs = {"stride": (stride, stride), "pads": (padding,) * 4, "dilation": (1, 1), "groups": 1}
    with gc.Graph() as g:
        if direction == "forward":
            a, b = gc.placeholder("x", xs), gc.placeholder("w", ws)
            out = gc.conv2d(a, b, stride=stride, padding=padding)
            feeds = {"x": x_arr, "w": w_arr}
        elif direction == "grad_input":
            a, b = gc.placeholder("dy", dy_arr.shape), gc.placeholder("w", ws)
            out = gc.conv2d_grad_input(a, b, xs[2:], attrs)
            feeds = {"dy": dy_arr, "w": w_arr}
        else:
            a, b = gc.placeholder("dy", dy_arr.shape), gc.placeholder("x", xs)
            out = gc.conv2d_grad_weight(a, b, ws[2:], attrs)
            feeds = {"dy": dy_arr, "x": x_arr}
    plan = gc.compile(g, shapes={}, fetches=[out.name])
    sess = gc.Session(plan, threads=threads)
    binding = sess.io_binding()
    for name, arr in feeds.items():
        binding.bind_input(name, arr)
    result = binding.bind_output(out.name)
    return binding.run, result


def torch_case(torch, direction, stride, padding, arrays):
    x, w, dy = (torch.from_numpy(a) for a in arrays)
    if direction == "forward":
        return lambda: torch.nn.functional.conv2d(x, w, stride=stride, padding=padding)
    mask = [direction == "grad_input", direction == "grad_weight", False]
    k = 0 if direction == "grad_input" else 1

    def run():
        return torch.ops.aten.convolution_backward(dy, x, w, None, [stride] * 2, [padding] * 2, [1, 1], False,
                                                   [0, 0], 1, mask)[k]
    return run


def cpu_times(fns, repeat, warmup=2):
    """Median process CPU seconds per call of each fn, calls round-robin (one thread only)."""
    for fn in fns:
        for _ in range(warmup):
            fn()
    samples = [[] for _ in fns]
    for _ in range(repeat):
        for i, fn in enumerate(fns):
            t0 = time.process_time()
            fn()
            samples[i].append(time.process_time() - t0)
    return [statistics.median(s) for s in samples]


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
    print(f"threads {args.threads}; ISA {_runtime.cpu_isa()}; "
          f"torch {torch.__version__ if torch else why}; "
          f"{'process CPU time, calls round-robin' if args.cpu_time else bu.SAMPLING}; median of {repeat}")
    if torch is not None:
        torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    rows = []
    for name, xs, ws, stride, padding in SHAPES:
        ho = (xs[2] + 2 * padding - ws[2]) // stride + 1
        wo = (xs[3] + 2 * padding - ws[3]) // stride + 1
        arrays = (rng.standard_normal(xs).astype(np.float32), (rng.standard_normal(ws) * 0.1).astype(np.float32),
                  rng.standard_normal((xs[0], ws[0], ho, wo)).astype(np.float32))
        for direction in DIRECTIONS:
            if name.startswith("stem") and direction == "grad_input":
                continue  # the stem's input is data: no gradient flows into it
            run, result = graphc_case(gc, np, args.threads, direction, xs, ws, stride, padding, arrays)
            fns = [run]
            if torch is not None:
                tfn = torch_case(torch, direction, stride, padding, arrays)
                run()
                want = tfn().numpy()
                scale = float(np.abs(want).max()) or 1.0
                err = float(np.abs(result - want).max()) / scale
                if err > 1e-3:
                    raise SystemExit(f"{name} {direction}: graphc and torch differ (max error {err:.2e} of max |y|)")
                fns.append(tfn)
            times = cpu_times(fns, repeat) if args.cpu_time else bu.median_times(fns, repeat)
            ours, theirs = times[0], (times[1] if torch is not None else None)
            rows.append([name, direction, bu.fmt_ms(ours), bu.fmt_ms(theirs), bu.fmt_ratio(ours, theirs)])
    bu.print_table("conv2d float32, batch 32", ["shape", "direction", "graphc", "torch", "graphc/torch"], rows)


if __name__ == "__main__":
    main()
