"""LSTM language model training step: graphc (gc.nn.LSTM unrolled, compiled plan) against
PyTorch's nn.LSTM, float32, same thread count.

The model (issue 12): Embedding(128, 64) → LSTM(64, 256, num_layers=2, batch_first=True) →
Linear(256, 128), softmax cross-entropy over every position, Adam(lr=1e-3); batch 32,
sequence 32.  graphc's weights are loaded from the torch model (Session.load_state_dict) and
the first step's losses are checked equal (1e-4 relative) before timing.  A step is
forward + backward + Adam update in both.  Medians of alternating blocks
(tools/_bench_util.py); ratio = graphc / torch (< 1: graphc faster).  ``--profile`` adds
graphc's time per op kind (Session.profile) for the step.

Run:  PYTHONPATH=. python tools/bench_lstm.py [--threads 2] [--repeat R] [--quick] [--profile]
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _bench_util as bu  # noqa: E402

VOCAB, EMB, HIDDEN, LAYERS, SEQ, BATCH = 128, 64, 256, 2, 32, 32


def _graphc_model(gc):
    class LM(gc.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = gc.nn.Embedding(VOCAB, EMB)
            self.lstm = gc.nn.LSTM(EMB, HIDDEN, num_layers=LAYERS, batch_first=True)
            self.fc = gc.nn.Linear(HIDDEN, VOCAB)

        def forward(self, ids):
            out, _ = self.lstm(self.emb(ids))
            return self.fc(out)

    with gc.Graph() as g:
        ids = gc.placeholder("ids", (BATCH, SEQ), dtype="int64")
        y = gc.placeholder("y", (BATCH, SEQ), dtype="int64")
        logits = LM()(ids)
        loss = gc.softmax_cross_entropy(gc.reshape(logits, (-1, VOCAB)), gc.reshape(y, (-1,)))
        gc.optim.Adam(lr=1e-3).minimize(loss)
    return g, loss


def _torch_model(torch):
    nn = torch.nn

    class LM(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(VOCAB, EMB)
            self.lstm = nn.LSTM(EMB, HIDDEN, num_layers=LAYERS, batch_first=True)
            self.fc = nn.Linear(HIDDEN, VOCAB)

        def forward(self, ids):
            out, _ = self.lstm(self.emb(ids))
            return self.fc(out)

    torch.manual_seed(0)
    return LM()


def measure(threads, repeat, quick=False, profile=False):
    """Rows {"what", "graphc_ms", "torch_ms", "ratio", "compile_s", "arena_mib"} (torch_ms and
    ratio None without torch); with ``profile`` also "profile": [(op, ms per step)], largest
    first.  Call after bu.pin_threads(threads) for numpy's BLAS to honour ``threads``."""
    import time

    import numpy as np

    import graphc as gc
    torch, _ = bu.try_import("torch")
    g, loss = _graphc_model(gc)
    t0 = time.perf_counter()
    plan = gc.compile(g, fetches=[loss])
    compile_s = time.perf_counter() - t0
    sess = gc.Session(plan, threads=threads)
    rng = np.random.default_rng(0)
    ids = rng.integers(0, VOCAB, (BATCH, SEQ))
    y = rng.integers(0, VOCAB, (BATCH, SEQ))
    feeds = {"ids": ids, "y": y}
    fns = [lambda: sess.run(feeds)]
    if torch is not None:
        torch.set_num_threads(threads)
        tm = _torch_model(torch)
        sess.load_state_dict(tm.state_dict())
        opt = torch.optim.Adam(tm.parameters(), lr=1e-3)
        tids, ty = torch.from_numpy(ids), torch.from_numpy(y).reshape(-1)

        def torch_step():
            opt.zero_grad()
            lt = torch.nn.functional.cross_entropy(tm(tids).reshape(-1, VOCAB), ty)
            lt.backward()
            opt.step()
            return lt

        ours = float(sess.run(feeds)[loss.name])
        theirs = float(torch_step().item())
        if abs(ours - theirs) > 1e-4 * abs(theirs):
            raise SystemExit(f"first losses differ: graphc {ours!r}, torch {theirs!r}")
        fns.append(torch_step)
    times = bu.median_times(fns, repeat, warmup=1 if quick else 2)
    ours = times[0]
    theirs = times[1] if torch is not None else None
    row = {"what": f"LSTM LM train step (emb {EMB}, {LAYERS}x{HIDDEN}, seq {SEQ}, batch {BATCH}, Adam)",
           "graphc_ms": ours * 1e3, "torch_ms": None if theirs is None else theirs * 1e3,
           "ratio": None if theirs is None else ours / theirs, "compile_s": compile_s,
           "arena_mib": plan.arena_bytes / 2**20}
    if profile:
        by_op = {}
        for step in sess.profile(feeds, iters=3 if quick else 10, warmup=1):
            key = step["op"] if not step["fused"] else f"{step['op']}[{'+'.join(m['op'] for m in step['fused'])}]"
            key = key if len(key) < 60 else key[:57] + "..."
            by_op[key] = by_op.get(key, 0.0) + step["seconds"] * 1e3
        row["profile"] = sorted(by_op.items(), key=lambda kv: -kv[1])
    return [row]


def main(argv=None):
    args = bu.parse_args(__doc__.splitlines()[0], argv=argv,
                         extra=lambda p: p.add_argument("--profile", action="store_true",
                                                        help="graphc's time per op kind"))
    bu.pin_threads(args.threads)
    import graphc as gc  # noqa: F401  (the extension loads its BLAS after the thread pin)
    from graphc import _runtime
    torch, why = bu.try_import("torch")
    repeat = args.repeat or (5 if args.quick else 21)
    print(bu.machine())
    print(bu.load_note())
    print(f"threads {args.threads}; ISA {_runtime.cpu_isa()}; torch {torch.__version__ if torch else why}; "
          f"{bu.SAMPLING}; median of {repeat}")
    rows = measure(args.threads, repeat, args.quick, args.profile)
    bu.print_table("LSTM language model training step, float32",
                   ["what", "graphc", "torch", "graphc/torch", "compile", "arena"],
                   [[r["what"], bu.fmt_ms(r["graphc_ms"] / 1e3),
                     bu.fmt_ms(None if r["torch_ms"] is None else r["torch_ms"] / 1e3),
                     "-" if r["ratio"] is None else f"{r['ratio']:.2f}x", f"{r['compile_s']:.2f} s",
                     f"{r['arena_mib']:.1f} MiB"] for r in rows])
    for r in rows:
        if "profile" in r:
            total = sum(ms for _, ms in r["profile"])
            bu.print_table(f"graphc step by op ({total:.2f} ms of kernel time)", ["op", "ms/step", "share"],
                           [[op, f"{ms:.3f}", f"{100 * ms / total:.1f}%"] for op, ms in r["profile"][:25]])


if __name__ == "__main__":
    main()
