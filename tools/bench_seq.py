"""Sequence-model benchmark of issue 12, one table from one run: the GPT-style training step
(tools/bench_gpt.py), the LSTM language-model training step (tools/bench_lstm.py) and the
attention forward alone at sequence 256 and 1024 with its peak memory
(tools/bench_attention.py), each graphc vs PyTorch at the same thread count, medians.

Each row comes from the named script's ``measure(threads, repeat, quick)``; see those scripts
for how each side is built, checked against the other (the first losses agree before timing)
and timed.  Targets (issue 12): each training step ≤ 1.0× PyTorch; attention memory linear in
the sequence length.

Run:  PYTHONPATH=. python tools/bench_seq.py [--threads 2] [--repeat R] [--quick]
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _bench_util as bu  # noqa: E402

PARTS = ("bench_gpt", "bench_lstm", "bench_attention")


def _fmt(v, unit):
    return "-" if v is None else f"{v:.1f} {unit}"


def main(argv=None):
    args = bu.parse_args(__doc__.splitlines()[0], argv=argv)
    bu.pin_threads(args.threads)
    import importlib

    repeat = args.repeat or (3 if args.quick else 15)
    rows = []
    for part in PARTS:
        mod = importlib.import_module(part)
        rows += mod.measure(args.threads, repeat, args.quick)
    print(f"# {bu.machine()}; threads {args.threads}; {bu.load_note()}")
    table = []
    for r in rows:
        ratio = r.get("ratio")
        mem = ""
        if r.get("graphc_mib") is not None or r.get("torch_mib") is not None:
            mem = f"{_fmt(r.get('graphc_mib'), 'MiB')} / {_fmt(r.get('torch_mib'), 'MiB')}"
        table.append([r["what"], _fmt(r.get("graphc_ms"), "ms"), _fmt(r.get("torch_ms"), "ms"),
                      "-" if ratio is None else f"{ratio:.2f}x", mem])
    bu.print_table(f"issue 12: sequence models, graphc vs PyTorch (medians of {repeat})",
                   ["what", "graphc", "PyTorch", "graphc/PyTorch", "peak memory graphc / PyTorch"], table)


if __name__ == "__main__":
    main()
