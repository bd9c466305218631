"""GPT-style training-step benchmark: graphc vs PyTorch CPU.

The model (issue 12): token embedding + learned position embedding, 4 pre-norm
TransformerEncoderLayers (width 128, 4 heads, GELU, dim_feedforward 512, dropout 0), causal,
a final LayerNorm and a Linear to the 128-symbol vocabulary; context 64, batch 32, AdamW
(lr 1e-3, weight decay 0.01), softmax cross-entropy (mean).  PyTorch runs the same model built
from ``nn.TransformerEncoderLayer(norm_first=True, activation="gelu", batch_first=True)`` with a
causal mask; graphc loads PyTorch's initial weights with ``Session.load_state_dict`` and the
first losses are checked to agree (rtol 1e-3) before timing.  Medians, same thread count.
``--profile`` then prints where graphc's step spends its time, by op.

Run:  PYTHONPATH=. python tools/bench_gpt.py [--threads 2] [--repeat R] [--quick] [--profile] [--ff 512]
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _bench_util as bu  # noqa: E402

VOCAB, CONTEXT, BATCH = 128, 64, 32
WIDTH, HEADS, LAYERS, FF = 128, 4, 4, 512
LR, WEIGHT_DECAY = 1e-3, 0.01
CHECK_STEPS = 3


def torch_model(torch, ff=FF):
    nn = torch.nn

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.tok = nn.Embedding(VOCAB, WIDTH)
            self.pos = nn.Embedding(CONTEXT, WIDTH)
            layer = nn.TransformerEncoderLayer(WIDTH, HEADS, ff, dropout=0.0, activation="gelu", batch_first=True,
                                               norm_first=True)
            self.blocks = nn.TransformerEncoder(layer, LAYERS, enable_nested_tensor=False)
            self.ln_f = nn.LayerNorm(WIDTH)
            self.head = nn.Linear(WIDTH, VOCAB)
            self.register_buffer("mask", torch.triu(torch.ones(CONTEXT, CONTEXT, dtype=torch.bool), 1),
                                 persistent=False)
            self.register_buffer("positions", torch.arange(CONTEXT), persistent=False)

        def forward(self, ids):
            x = self.tok(ids) + self.pos(self.positions)
            x = self.blocks(x, mask=self.mask, is_causal=True)
            return self.head(self.ln_f(x))

    return GPT()


def graphc_model(gc, ff=FF):
    """The graphc twin, with the same child names as :func:`torch_model` (so its state dict loads)."""
    import numpy as np

    class GPT(gc.nn.Module):
        def __init__(self):
            super().__init__()
            self.tok = gc.nn.Embedding(VOCAB, WIDTH)
            self.pos = gc.nn.Embedding(CONTEXT, WIDTH)
            layer = gc.nn.TransformerEncoderLayer(WIDTH, HEADS, ff, dropout=0.0, activation="gelu",
                                                  batch_first=True, norm_first=True)
            self.blocks = gc.nn.TransformerEncoder(layer, LAYERS)
            self.ln_f = gc.nn.LayerNorm(WIDTH)
            self.head = gc.nn.Linear(WIDTH, VOCAB)

        def forward(self, ids):
            positions = gc.constant(np.arange(ids.shape[1], dtype=np.int64), graph=ids.graph)
            x = self.tok(ids) + self.pos(positions)
            return self.head(self.ln_f(self.blocks(x, is_causal=True)))

    return GPT()


def graphc_session(gc, threads, state, ff=FF):
    """A Session running one AdamW step per call, from PyTorch's weights ``state``."""
    with gc.Graph() as g:
        ids = gc.placeholder("ids", (None, CONTEXT), dtype="int64")
        labels = gc.placeholder("labels", (None, CONTEXT), dtype="int64")
        logits = graphc_model(gc, ff)(ids)
        loss = gc.softmax_cross_entropy(logits, labels, name="loss")
        gc.optim.AdamW(lr=LR, weight_decay=WEIGHT_DECAY).minimize(loss)
    plan = gc.compile(g, shapes={"ids": (BATCH, CONTEXT), "labels": (BATCH, CONTEXT)}, fetches=[loss.name])
    sess = gc.Session(plan, threads=threads)
    sess.load_state_dict(state)
    return sess, loss.name


def torch_step(torch, model):
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    f = torch.nn.functional

    def step(ids, labels):
        opt.zero_grad(set_to_none=True)
        logits = model(ids)
        loss = f.cross_entropy(logits.reshape(-1, VOCAB), labels.reshape(-1))
        loss.backward()
        opt.step()
        return loss.item()
    return step


def _batches(np, n, seed=1):
    rng = np.random.default_rng(seed)
    return [(rng.integers(0, VOCAB, (BATCH, CONTEXT)).astype(np.int64),
             rng.integers(0, VOCAB, (BATCH, CONTEXT)).astype(np.int64)) for _ in range(n)]


def _setup(threads, ff=FF):
    """(graphc step, torch step, notes, graphc session, feeds); the losses checked first."""
    import numpy as np
    import torch

    import graphc as gc

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = torch_model(torch, ff)
    sess, loss_name = graphc_session(gc, threads, model.state_dict(), ff)
    t_step = torch_step(torch, model)
    batches = _batches(np, CHECK_STEPS)
    g_losses = [float(sess.run({"ids": i, "labels": y})[loss_name]) for i, y in batches]
    t_losses = [t_step(torch.from_numpy(i), torch.from_numpy(y)) for i, y in batches]
    notes = ["PyTorch losses, first steps: " + ", ".join(f"{v:.5f}" for v in t_losses),
             "graphc  losses, first steps: " + ", ".join(f"{v:.5f}" for v in g_losses)]
    ok = bool(np.allclose(g_losses, t_losses, rtol=1e-3, atol=0))
    notes.append(f"losses agree (rtol 1e-3): {ok}")
    ids, labels = batches[0]
    feeds = {"ids": ids, "labels": labels}
    tids, tlabels = torch.from_numpy(ids), torch.from_numpy(labels)
    g = (lambda: sess.run(feeds)) if ok else None
    return g, (lambda: t_step(tids, tlabels)), notes, sess, feeds


def measure(threads=2, repeat=20, quick=False, ff=FF):
    """Rows {"what", "graphc_ms", "torch_ms", "ratio"} of the GPT training step (graphc_ms None
    when the first losses disagree), for the combined table of tools/bench_seq.py."""
    bu.pin_threads(threads)
    g, t, notes, _, _ = _setup(threads, ff)
    repeat = 5 if quick else repeat
    fns = [f for f in (g, t) if f is not None]
    times = bu.median_times(fns, repeat)
    t_g = times[0] * 1e3 if g is not None else None
    t_t = times[-1] * 1e3
    return [{"what": f"GPT train step (4 pre-norm layers, w{WIDTH}, ff{ff}, ctx {CONTEXT}, b{BATCH}, AdamW)",
             "graphc_ms": t_g, "torch_ms": t_t, "ratio": None if t_g is None else t_g / t_t, "notes": notes}]


def profile_by_op(sess, feeds, iters=10):
    """{op: (ms per step, steps)} of graphc's step, fused steps counted under "fused:<ops>"."""
    by_op = {}
    for row in sess.profile(feeds, iters=iters, warmup=2):
        op = row["op"]
        if row["fused"]:
            op = "fused:" + "+".join(m["op"] for m in row["fused"])
        ms, n = by_op.get(op, (0.0, 0))
        by_op[op] = (ms + row["seconds"] * 1e3, n + 1)
    return dict(sorted(by_op.items(), key=lambda kv: -kv[1][0]))


def main(argv=None):
    def extra(p):
        p.add_argument("--profile", action="store_true", help="print graphc's per-op time after the table")
        p.add_argument("--ff", type=int, default=FF, help="dim_feedforward (default %(default)s)")
    args = bu.parse_args(__doc__.splitlines()[0], extra=extra, argv=argv)
    bu.pin_threads(args.threads)
    import numpy as np
    import torch

    import graphc as gc

    repeat = args.repeat or (5 if args.quick else 20)
    print(f"machine: {bu.machine()}")
    print(f"threads: {args.threads} for both; graphc {gc.__version__}, numpy {np.__version__}, "
          f"torch {torch.__version__}")
    print(f"repeats: {repeat}; medians, {bu.SAMPLING}")
    print(bu.load_note())
    print()
    g, t, notes, sess, feeds = _setup(args.threads, args.ff)
    fns = [f for f in (g, t) if f is not None]
    times = bu.median_times(fns, repeat)
    t_g = times[0] if g is not None else None
    t_t = times[-1]
    ratio = bu.fmt_ratio(t_g, t_t)
    status = "-" if ratio == "-" else ("met" if t_g / t_t <= 1.0 else "MISSED")
    row = [f"GPT 4x(w{WIDTH}, h{HEADS}, ff{args.ff}) ctx {CONTEXT} b{BATCH}",
           "losses disagree" if g is None else bu.fmt_ms(t_g), bu.fmt_ms(t_t)]
    bu.print_table(f"GPT-style training step (AdamW, softmax cross-entropy), threads={args.threads}",
                   ["case", "graphc", "torch", "graphc/torch", "target", "status"],
                   [row + [ratio, "<= 1.00x", status]])
    print()
    for note in notes:
        print(note)
    print(bu.load_note().replace("at start", "at end"))
    if args.profile:
        prof = profile_by_op(sess, feeds)
        total = sum(ms for ms, _ in prof.values())
        print()
        print(f"graphc step by op (Session.profile, median of 10 per step, summed): total {total:.1f} ms")
        for op, (ms, n) in prof.items():
            print(f"  {op[:70]:70s} {ms:8.2f} ms  {100 * ms / total:5.1f}%  ({n} steps)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
