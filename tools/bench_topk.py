"""topk benchmark: graphc's topk kernel against torch.topk on the CPU, float32, same thread count,
over the last axis of (rows, n), sorted, largest.

Cases: the sampling step of the language-model examples (one context of logits over a
vocabulary of 128 or 256, every position), a batch of GPT-2-sized vocabularies, and short rows.
Each graphc case is a one-node plan run through an IOBinding (input read and outputs written in
place, so the table times the kernel, not feed copies).  Values are checked against torch before
timing (indices may differ only among equal values, which random data lacks).  Medians of
alternating blocks (tools/_bench_util.py); ratio = graphc / torch (< 1: graphc faster).

``measure(threads, repeat, quick)`` returns the rows (dicts with "what", "graphc_ms", "torch_ms",
"ratio") for tools/bench_seq.py's combined table.

Run:  PYTHONPATH=. python tools/bench_topk.py [--threads 2] [--repeat R] [--quick]
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _bench_util as bu  # noqa: E402

# (rows, n, k, what)
CASES = [(64, 128, 40, "sampling: context 64 x vocab 128, k=40"),
         (64, 256, 256, "sampling: context 64 x vocab 256, k=all"),
         (32, 50257, 50, "32 rows x vocab 50257, k=50"),
         (65536, 16, 4, "65536 rows x 16, k=4")]


def _graphc_case(gc, threads, x, k):
    with gc.Graph() as g:
        v, i = gc.topk(gc.placeholder("x", x.shape), k)
    plan = gc.compile(g, shapes={}, fetches=[v, i], train=False)
    binding = gc.Session(plan, threads=threads).io_binding()
    binding.bind_input("x", x)
    outs = [binding.bind_output(v.name), binding.bind_output(i.name)]
    return binding.run, outs


def measure(threads, repeat, quick):
    """One row per case: {"what", "graphc_ms", "torch_ms", "ratio"} (torch_ms/ratio None without torch)."""
    import numpy as np

    import graphc as gc
    torch, _ = bu.try_import("torch")
    if torch is not None:
        torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    rows = []
    for n_rows, n, k, what in (CASES[:2] if quick else CASES):
        x = rng.standard_normal((n_rows, n)).astype(np.float32)
        run, outs = _graphc_case(gc, threads, x, k)
        fns = [run]
        if torch is not None:
            tx = torch.from_numpy(x)
            run()
            tv, _ = torch.topk(tx, k)
            if not np.array_equal(outs[0], tv.numpy()):
                raise SystemExit(f"{what}: graphc and torch.topk values differ")
            fns.append(lambda tx=tx, k=k: torch.topk(tx, k))
        times = bu.median_times(fns, repeat)
        ours, theirs = times[0], (times[1] if torch is not None else None)
        rows.append({"what": f"topk {what}", "graphc_ms": ours * 1e3,
                     "torch_ms": None if theirs is None else theirs * 1e3,
                     "ratio": None if theirs is None else ours / theirs})
    return rows


def main(argv=None):
    args = bu.parse_args(__doc__.splitlines()[0], argv=argv)
    bu.pin_threads(args.threads)
    torch, why = bu.try_import("torch")
    repeat = args.repeat or (5 if args.quick else 21)
    print(bu.machine())
    print(bu.load_note())
    print(f"threads {args.threads}; torch {torch.__version__ if torch else why}; {bu.SAMPLING}; median of {repeat}")
    rows = measure(args.threads, repeat, args.quick)
    table = [[r["what"], bu.fmt_ms(r["graphc_ms"] / 1e3),
              bu.fmt_ms(None if r["torch_ms"] is None else r["torch_ms"] / 1e3),
              bu.fmt_ratio(r["graphc_ms"], r["torch_ms"])] for r in rows]
    bu.print_table("topk float32 over the last axis (sorted, largest)", ["case", "graphc", "torch", "graphc/torch"],
                   table)


if __name__ == "__main__":
    main()
