"""layer_norm benchmark: graphc's layer_norm and layer_norm_grad kernels against PyTorch CPU
(torch.nn.functional.layer_norm, and aten.native_layer_norm_backward — what autograd runs),
float32, same thread count, over the last axis of (rows, n).

Each graphc case is a one-node plan run through an IOBinding (inputs read and outputs written
in place, so the table times the kernel, not feed copies).  Results are checked against torch
(1e-3 of the largest magnitude) before timing.  Medians of alternating blocks
(tools/_bench_util.py); ratio = graphc / torch (< 1: graphc faster).

Run:  PYTHONPATH=. python tools/bench_layer_norm.py [--threads 2] [--repeat R] [--quick]
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _bench_util as bu  # noqa: E402

# (rows, n): the GPT benchmark's (2048 tokens, width 128), transformer-like (batch·seq, d_model) and a few odd ones
GPT_SHAPE = (2048, 128)
SHAPES = [(4096, 256), (2048, 768), (512, 4097), (65536, 31)]


def graphc_case(gc, threads, direction, arrays):
    """(run(), [output arrays]) for one direction as a one-node plan with in-place bindings."""
    x, w, b, dy, mean, rstd = arrays
    rows, n = x.shape
    with gc.Graph() as g:
        if direction == "forward":
            ph = {k: gc.placeholder(k, v.shape) for k, v in (("x", x), ("w", w), ("b", b))}
            outs = gc.layer_norm_stats(ph["x"], weight=ph["w"], bias=ph["b"])
            feeds = {"x": x, "w": w, "b": b}
        else:
            zeros = {"dm": mean * 0, "dr": rstd * 0}
            feeds = {"dy": dy, "x": x, "w": w, "m": mean, "r": rstd, **zeros}
            ph = {k: gc.placeholder(k, v.shape) for k, v in feeds.items()}
            outs = gc.layer_norm_grad(ph["dy"], ph["x"], ph["w"], ph["m"], ph["r"], ph["dm"], ph["dr"])
    plan = gc.compile(g, shapes={}, fetches=[t.name for t in outs])
    binding = gc.Session(plan, threads=threads).io_binding()
    for name, arr in feeds.items():
        binding.bind_input(name, arr)
    results = [binding.bind_output(t.name) for t in outs]
    return binding.run, results


def torch_case(torch, direction, arrays):
    x, w, b, dy, mean, rstd = (torch.from_numpy(a) for a in arrays)
    n = x.shape[1]
    if direction == "forward":
        return lambda: [torch.nn.functional.layer_norm(x, (n,), w, b)]
    m, r = mean.reshape(-1, 1), rstd.reshape(-1, 1)
    return lambda: list(torch.ops.aten.native_layer_norm_backward(dy, x, [n], m, r, w, b, [True, True, True]))


def measure(threads, repeat=None, quick=False, shapes=None):
    """Rows {"what", "graphc_ms", "torch_ms", "ratio"} for each shape, forward and backward, at
    ``threads`` threads (torch at the same count; torch_ms/ratio None without torch).  Default
    shapes: the GPT benchmark's (2048, 128) only; main() prints SHAPES."""
    import numpy as np

    import graphc as gc
    torch, _ = bu.try_import("torch")
    if torch is not None:
        torch.set_num_threads(threads)
    repeat = repeat or (5 if quick else 21)
    rng = np.random.default_rng(0)
    rows = []
    for shape in shapes or [GPT_SHAPE]:
        x = (rng.standard_normal(shape) * 2 + 0.5).astype(np.float32)
        w, b = rng.uniform(0.5, 1.5, shape[1]).astype(np.float32), rng.uniform(-0.5, 0.5, shape[1]).astype(np.float32)
        mean = x.astype(np.float64).mean(axis=1)
        rstd = (1.0 / np.sqrt(x.astype(np.float64).var(axis=1) + 1e-5)).astype(np.float32)
        arrays = (x, w, b, rng.standard_normal(shape).astype(np.float32), mean.astype(np.float32), rstd)
        for direction in ("forward", "backward"):
            run, results = graphc_case(gc, threads, direction, arrays)
            fns = [run]
            if torch is not None:
                tfn = torch_case(torch, direction, arrays)
                run()
                for got, want in zip(results, tfn()):
                    want = want.numpy()
                    err = float(np.abs(got - want).max()) / (float(np.abs(want).max()) or 1.0)
                    if err > 1e-3:
                        raise SystemExit(f"{shape} {direction}: graphc and torch differ (max error {err:.2e})")
                fns.append(tfn)
            times = bu.median_times(fns, repeat)
            ours = times[0] * 1e3
            theirs = times[1] * 1e3 if torch is not None else None
            rows.append({"what": f"layer_norm {direction} {shape[0]}x{shape[1]}", "graphc_ms": ours,
                         "torch_ms": theirs, "ratio": ours / theirs if theirs else None})
    return rows


def main(argv=None):
    args = bu.parse_args(__doc__.splitlines()[0], argv=argv)
    bu.pin_threads(args.threads)
    from graphc import _runtime
    torch, why = bu.try_import("torch")
    repeat = args.repeat or (5 if args.quick else 21)
    print(bu.machine())
    print(bu.load_note())
    print(f"threads {args.threads}; ISA {_runtime.cpu_isa()}; torch {torch.__version__ if torch else why}; "
          f"{bu.SAMPLING}; median of {repeat}")
    rows = measure(args.threads, repeat, args.quick, [GPT_SHAPE] + SHAPES)
    bu.print_table("layer_norm float32 over the last axis", ["case", "graphc", "torch", "graphc/torch"],
                   [[r["what"], bu.fmt_ms(r["graphc_ms"] / 1e3), bu.fmt_ms(r["torch_ms"] and r["torch_ms"] / 1e3),
                     bu.fmt_ratio(r["graphc_ms"], r["torch_ms"])] for r in rows])


if __name__ == "__main__":
    main()
