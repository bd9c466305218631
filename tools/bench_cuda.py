"""CUDA benchmarks (issue 16): graphc's CUDA runtime against PyTorch CUDA on the same GPU.

Rows (float32, TF32 off in both frameworks):
  sgemm 4096^3            TFLOP/s, graphc vs torch.matmul (target: >= 0.9x)
  add, 256 MiB operands   bandwidth as % of a device-to-device copy (target: >= 85%)
  softmax, rows of 1024   % of copy bandwidth (target: >= 75%), 256 MiB input
  layer norm, rows 1024   % of copy bandwidth (target: >= 75%), 256 MiB input
  run() host time         a 200-step plan of tiny adds and the MLP training step, with the
                          whole-plan CUDA graph vs step by step (GRAPHC_CUDA_GRAPHS=0)
  training steps          MLP, CNN, GPT and LSTM of tools/bench_{train,cnn,gpt,lstm}.py vs torch
                          eager and torch CUDA-graph (target: <= 1.0x eager)

How graphc's kernels are timed: a Session's run() also copies feeds and fetches and waits for
the GPU, so a kernel's time is the slope between two plans that apply it N1 and N2 times in a
chain (fuse=False, operands in variables uploaded once, a one-element slice fetched):
(median run() of N2 - median run() of N1) / (N2 - N1).  PyTorch's kernels are timed with CUDA
events.  Bandwidth counts bytes read plus bytes written (the copy: 2x its size; add: 3x; softmax
and layer norm: 2x).  Training steps: wall time of one step with the loss read back on the host
(graphc: Session.run with host numpy feeds; PyTorch: batches already on the GPU, loss.item()),
medians of alternating blocks (tools/_bench_util.py), first losses checked to agree (rtol 1e-3)
before timing.

Without a usable CUDA GPU (graphc built without CUDA, no driver, no GPU) it prints why and exits
with status 2: it never prints a figure it did not measure.

Run:  PYTHONPATH=. python tools/bench_cuda.py [--repeat R] [--quick] [--json FILE] [--only ROWS]
"""
import argparse
import copy
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _bench_util as bu  # noqa: E402

NO_GPU_EXIT = 2
MIB = 2 ** 20
# --smoke-cpu: every row's code on the CPU at small sizes, to test this script where there is
# no GPU; it prints which rows ran and no figure.
DEV, TDEV, SCALE = "cuda", "cuda", 1
ROWS = ("sgemm", "add", "softmax", "layer_norm", "host", "mlp", "cnn", "gpt", "lstm")


def cuda_unavailable():
    """Why graphc cannot open a CUDA Session here, or "" when it can."""
    try:
        from graphc import _runtime
    except ImportError as e:
        return f"graphc's runtime does not import: {e}"
    if not _runtime.cuda_built():
        return "this graphc was built without CUDA (no nvcc at build time, or GRAPHC_CUDA=0)"
    status = getattr(_runtime, "cuda_status", None)
    if status is not None:
        return status()
    import numpy as np

    import graphc as gc
    from graphc.errors import DeviceError
    with gc.Graph() as g:
        y = gc.relu(gc.placeholder("x", (2,)))
    try:
        gc.Session(gc.compile(g, fetches=[y.name], target="cuda"), device="cuda").run({"x": np.zeros(2, np.float32)})
    except DeviceError as e:
        return str(e)
    return ""


# --------------------------------------------------------------------------- timing


def wall_median(fn, repeat, warmup=3):
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def torch_event_time(torch, fn, repeat, warmup=3):
    """Median seconds per call of ``fn`` (GPU work only) by CUDA events."""
    if TDEV == "cpu":
        return wall_median(fn, repeat, warmup)
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    samples = []
    for _ in range(repeat):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        samples.append(start.elapsed_time(end) * 1e-3)
    return statistics.median(samples)


def chain_slope(gc, build, n1, n2, repeat, setup=None):
    """Seconds per application of an op: ``build(n)`` -> (graph, fetch name) applies it n
    times in a chain; the slope of run() time between n1 and n2 applications."""
    times = []
    for n in (n1, n2):
        g, fetch = build(n)
        plan = gc.compile(g, fetches=[fetch], target=DEV, fuse=False)
        sess = gc.Session(plan, device=DEV)
        if setup is not None:
            setup(sess)
        times.append(wall_median(lambda sess=sess: sess.run({}), repeat))
        del sess
    return (times[1] - times[0]) / (n2 - n1)


def corner(gc, x):
    return gc.slice(x, [0] * len(x.shape), [1] * len(x.shape)).name


# --------------------------------------------------------------------------- kernel rows


def bench_copy(torch, nbytes, repeat):
    src = torch.empty(nbytes // 4, dtype=torch.float32, device=TDEV).uniform_()
    dst = torch.empty_like(src)
    t = torch_event_time(torch, lambda: dst.copy_(src), repeat)
    return 2 * nbytes / t


def bench_sgemm(gc, np, torch, repeat):
    n = 4096 // SCALE
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = (rng.standard_normal((n, n), dtype=np.float32) / np.sqrt(n)).astype(np.float32)

    def build(k):
        with gc.Graph() as g:
            va = gc.variable("a", (n, n), init=gc.init.zeros())
            vb = gc.variable("b", (n, n), init=gc.init.zeros())
            c = va @ vb
            for _ in range(k - 1):
                c = c @ vb
        return g, corner(gc, c)

    def setup(sess):
        sess.set_variable("a", a)
        sess.set_variable("b", b)
    flops = 2.0 * n ** 3
    ours = flops / chain_slope(gc, build, 1, 4, repeat, setup)
    theirs = None
    if torch is not None:
        ta, tb = torch.from_numpy(a).to(TDEV), torch.from_numpy(b).to(TDEV)
        theirs = flops / torch_event_time(torch, lambda: torch.matmul(ta, tb), repeat)
    return {"row": f"sgemm {n}^3 fp32 (TF32 off)", "graphc": f"{ours / 1e12:.1f} TFLOP/s",
            "torch": "-" if theirs is None else f"{theirs / 1e12:.1f} TFLOP/s",
            "ratio": None if theirs is None else ours / theirs, "target": ">= 0.90x torch",
            "ok": None if theirs is None else ours / theirs >= 0.9}


def _bandwidth_row(gc, np, torch, repeat, copy_bw, what, shape, bytes_per_op, build, torch_fn, target):
    ours = bytes_per_op / chain_slope(gc, build, 1, 11, repeat)
    theirs = None
    if torch is not None:
        x = torch.randn(*shape, device=TDEV)
        theirs = bytes_per_op / torch_event_time(torch, lambda: torch_fn(x), repeat)
    pct = None if copy_bw is None else 100 * ours / copy_bw
    return {"row": what, "graphc": f"{ours / 1e9:.0f} GB/s" + ("" if pct is None else f" ({pct:.0f}% of copy)"),
            "torch": "-" if theirs is None else f"{theirs / 1e9:.0f} GB/s"
            + ("" if copy_bw is None else f" ({100 * theirs / copy_bw:.0f}%)"),
            "ratio": None if theirs is None else ours / theirs, "target": f">= {target}% of copy",
            "ok": None if pct is None else pct >= target}


def bench_add(gc, np, torch, repeat, copy_bw):
    rows, cols = 65536 // SCALE, 1024   # 256 MiB of float32

    def build(k):
        with gc.Graph() as g:
            a = gc.variable("a", (rows, cols), init=gc.init.zeros())
            b = gc.variable("b", (rows, cols), init=gc.init.zeros())
            c = a + b
            for _ in range(k - 1):
                c = c + b
        return g, corner(gc, c)
    nbytes = rows * cols * 4
    if torch is not None:
        y = torch.randn(rows, cols, device=TDEV)
        out = torch.empty_like(y)

        def torch_fn(x):
            return torch.add(x, y, out=out)
    else:
        torch_fn = None
    return _bandwidth_row(gc, np, torch, repeat, copy_bw, "add f32, 256 MiB operands", (rows, cols), 3 * nbytes,
                          build, torch_fn, 85)


def bench_softmax(gc, np, torch, repeat, copy_bw):
    rows, cols = 65536 // SCALE, 1024

    def build(k):
        with gc.Graph() as g:
            c = gc.variable("x", (rows, cols), init=gc.init.zeros())
            for _ in range(k):
                c = gc.softmax(c, axis=-1)
        return g, corner(gc, c)
    return _bandwidth_row(gc, np, torch, repeat, copy_bw, "softmax f32, rows of 1024 (256 MiB)", (rows, cols),
                          2 * rows * cols * 4, build, lambda x: torch.softmax(x, dim=-1), 75)


def bench_layer_norm(gc, np, torch, repeat, copy_bw):
    rows, cols = 65536 // SCALE, 1024

    def build(k):
        with gc.Graph() as g:
            c = gc.variable("x", (rows, cols), init=gc.init.zeros())
            w = gc.variable("w", (cols,), init=gc.init.ones())
            b = gc.variable("b", (cols,), init=gc.init.zeros())
            for _ in range(k):
                c = gc.layer_norm(c, axis=-1, weight=w, bias=b)
        return g, corner(gc, c)
    if torch is not None:
        w, b = torch.ones(cols, device=TDEV), torch.zeros(cols, device=TDEV)

        def torch_fn(x):
            return torch.nn.functional.layer_norm(x, (cols,), w, b)
    else:
        torch_fn = None
    return _bandwidth_row(gc, np, torch, repeat, copy_bw, "layer norm f32, rows of 1024 (256 MiB)", (rows, cols),
                          2 * rows * cols * 4, build, torch_fn, 75)


class _Env:
    """Set environment variables for a with-block (GRAPHC_CUDA_GRAPHS is read by the runtime)."""

    def __init__(self, **values):
        self.values, self.saved = values, {}

    def __enter__(self):
        for k, v in self.values.items():
            self.saved[k] = os.environ.get(k)
            os.environ[k] = v

    def __exit__(self, *exc):
        for k, v in self.saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def bench_host(gc, np, torch, repeat):
    """Host time per run(): the captured graph (default) vs step by step."""
    with gc.Graph() as g:
        x = gc.placeholder("x", (256,))
        y = x
        for _ in range(200):
            y = y + 1.0
    plan = gc.compile(g, fetches=[y.name], target=DEV, fuse=False)
    feeds = {"x": np.zeros(256, np.float32)}
    out = {}
    for mode, env in (("graph", "1"), ("steps", "0")):
        with _Env(GRAPHC_CUDA_GRAPHS=env):
            sess = gc.Session(plan, device=DEV)
            got = sess.run(feeds)[y.name]
            if not np.array_equal(got, np.full(256, 200, np.float32)):
                raise RuntimeError(f"200 adds of 1 gave {got[:4]}... (GRAPHC_CUDA_GRAPHS={env})")
            out[mode] = wall_median(lambda sess=sess: sess.run(feeds), repeat * 5)
            del sess
    return {"row": f"run() host time, {len(plan.steps)}-step plan of tiny adds",
            "graphc": f"{out['graph'] * 1e6:.0f} us with the CUDA graph, {out['steps'] * 1e6:.0f} us step by step "
                      f"({out['graph'] / out['steps']:.2f}x)",
            "torch": "-", "ratio": None, "target": "graph < steps", "ok": out["graph"] < out["steps"]}


# --------------------------------------------------------------------------- training rows


def _torch_trainers(torch, model, make_opt, loss_of, batch):
    """(eager step, CUDA-graph step or reason) over one fixed on-GPU batch; each returns the loss."""
    x, y = batch
    opt = make_opt(model.parameters())

    def eager():
        opt.zero_grad(set_to_none=True)
        loss = loss_of(model(x), y)
        loss.backward()
        opt.step()
        return loss.item()

    def make_graph():
        gmodel = copy.deepcopy(model)
        gopt = make_opt(gmodel.parameters(), capturable=True)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                gopt.zero_grad(set_to_none=True)
                loss_of(gmodel(x), y).backward()
                gopt.step()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        gopt.zero_grad(set_to_none=True)
        with torch.cuda.graph(graph):
            static_loss = loss_of(gmodel(x), y)
            static_loss.backward()
            gopt.step()

        def replay():
            graph.replay()
            return static_loss.item()
        return replay
    return eager, make_graph


def _opt(torch, kind, **kw):
    def make(params, capturable=False):
        if kind == "sgd":
            return torch.optim.SGD(params, **kw)
        cls = torch.optim.Adam if kind == "adam" else torch.optim.AdamW
        return cls(params, capturable=capturable, **kw) if capturable else cls(params, **kw)
    return make


def _model_setups(gc, np, torch, which):
    """(label, graphc session, feeds, loss name, torch model (CPU), optimizer maker, loss fn, host batch)."""
    ce = torch.nn.functional.cross_entropy
    if which == "mlp":
        import bench_train as bt
        params = bt.make_weights(0)
        g, x, h, names = bu.graphc_mlp(gc, params, bt.SIZES[0])
        with g:
            labels = gc.placeholder("y", (None,), dtype="int64")
            loss = gc.softmax_cross_entropy(h, labels, name="loss")
            gc.optim.SGD(lr=bt.LR, momentum=bt.MOMENTUM).minimize(loss)
        plan = gc.compile(g, shapes={x.name: (bt.BATCH, bt.SIZES[0]), "y": (bt.BATCH,)}, fetches=[loss.name],
                          target=DEV)
        sess = gc.Session(plan, device=DEV)
        for (wn, bn), (w, b) in zip(names, params):
            sess.set_variable(wn, w)
            sess.set_variable(bn, b)
        rng = np.random.default_rng(1)
        batch = (rng.standard_normal((bt.BATCH, bt.SIZES[0]), dtype=np.float32),
                 rng.integers(0, bt.SIZES[-1], bt.BATCH).astype(np.int64))
        return (f"MLP {'-'.join(map(str, bt.SIZES))} batch {bt.BATCH}, SGD", sess, {x.name: batch[0], "y": batch[1]},
                loss.name, bu.torch_mlp(torch, params), _opt(torch, "sgd", lr=bt.LR, momentum=bt.MOMENTUM), ce, batch)
    if which == "cnn":
        import bench_cnn as bc
        torch.manual_seed(0)
        tm = bc.torch_model(torch)
        g, loss = bc.graphc_model(gc, bc.BATCH)
        plan = gc.compile(g, shapes={"x": (bc.BATCH, bc.CHANNELS, bc.SIZE, bc.SIZE), "y": (bc.BATCH,)},
                          fetches=[loss], target=DEV)
        sess = gc.Session(plan, device=DEV)
        sess.load_state_dict(tm.state_dict())
        batch = bc.batches(bc.BATCH, 1)[0]
        return (f"CNN (small ResNet) batch {bc.BATCH}, SGD", sess, {"x": batch[0], "y": batch[1]}, loss, tm,
                _opt(torch, "sgd", lr=bc.LR, momentum=bc.MOMENTUM), ce, batch)
    if which == "gpt":
        import bench_gpt as bg
        torch.manual_seed(0)
        tm = bg.torch_model(torch)
        with gc.Graph() as g:
            ids = gc.placeholder("ids", (None, bg.CONTEXT), dtype="int64")
            labels = gc.placeholder("labels", (None, bg.CONTEXT), dtype="int64")
            loss = gc.softmax_cross_entropy(bg.graphc_model(gc)(ids), labels, name="loss")
            gc.optim.AdamW(lr=bg.LR, weight_decay=bg.WEIGHT_DECAY).minimize(loss)
        plan = gc.compile(g, shapes={"ids": (bg.BATCH, bg.CONTEXT), "labels": (bg.BATCH, bg.CONTEXT)},
                          fetches=[loss.name], target=DEV)
        sess = gc.Session(plan, device=DEV)
        sess.load_state_dict(tm.state_dict())
        batch = bg._batches(np, 1)[0]
        return (f"GPT {bg.LAYERS}x{bg.WIDTH} ctx {bg.CONTEXT} batch {bg.BATCH}, AdamW", sess,
                {"ids": batch[0], "labels": batch[1]}, loss.name, tm,
                _opt(torch, "adamw", lr=bg.LR, weight_decay=bg.WEIGHT_DECAY),
                lambda logits, y: ce(logits.reshape(-1, bg.VOCAB), y.reshape(-1)), batch)
    if which == "lstm":
        import bench_lstm as bl
        tm = bl._torch_model(torch)
        g, loss = bl._graphc_model(gc)
        plan = gc.compile(g, fetches=[loss], target=DEV)
        sess = gc.Session(plan, device=DEV)
        sess.load_state_dict(tm.state_dict())
        rng = np.random.default_rng(0)
        batch = (rng.integers(0, bl.VOCAB, (bl.BATCH, bl.SEQ)), rng.integers(0, bl.VOCAB, (bl.BATCH, bl.SEQ)))
        return (f"LSTM LM {bl.LAYERS}x{bl.HIDDEN} seq {bl.SEQ} batch {bl.BATCH}, Adam", sess,
                {"ids": batch[0], "y": batch[1]}, loss.name, tm, _opt(torch, "adam", lr=1e-3),
                lambda logits, y: ce(logits.reshape(-1, bl.VOCAB), y.reshape(-1)), batch)
    raise ValueError(which)


def bench_training(gc, np, torch, which, repeat):
    label, sess, feeds, loss_name, tm, make_opt, loss_of, batch = _model_setups(gc, np, torch, which)

    def ours_fn():
        return float(sess.run(feeds)[loss_name])
    row = {"row": f"train step: {label}", "ok": None}
    if torch is None:
        row.update(graphc=bu.fmt_ms(bu.median_times([ours_fn], repeat, warmup=3)[0]), torch="-", ratio=None,
                   target="<= 1.0x torch eager")
        return row
    tm = tm.to(TDEV)
    tbatch = tuple(torch.from_numpy(np.asarray(a)).to(TDEV) for a in batch)
    eager, make_graph = _torch_trainers(torch, tm, make_opt, loss_of, tbatch)
    g_losses = [ours_fn() for _ in range(3)]
    t_losses = [eager() for _ in range(3)]
    if not np.allclose(g_losses, t_losses, rtol=1e-3, atol=0):
        row.update(graphc=f"LOSSES DIFFER: {g_losses}", torch=f"{t_losses}", ratio=None, target="-", ok=False)
        return row
    fns, names = [ours_fn, eager], ["graphc", "eager"]
    graph_note = ""
    try:
        fns.append(make_graph())
        names.append("graph")
    except Exception as e:  # a model PyTorch cannot capture: say so, time the rest
        graph_note = f"; torch CUDA graph failed: {type(e).__name__}: {str(e).splitlines()[0][:80]}"
    times = dict(zip(names, bu.median_times(fns, repeat, warmup=3)))
    row.update(graphc=bu.fmt_ms(times["graphc"]),
               torch=f"eager {bu.fmt_ms(times['eager'])}"
               + (f", graph {bu.fmt_ms(times['graph'])} ({times['graphc'] / times['graph']:.2f}x)"
                  if "graph" in times else graph_note),
               ratio=times["graphc"] / times["eager"], target="<= 1.0x torch eager",
               ok=times["graphc"] <= times["eager"])
    return row


# --------------------------------------------------------------------------- main


def format_table(rows):
    """The table as text lines: one row per measurement, with graphc/torch ratios."""
    header = ["what", "graphc", "torch", "graphc/torch", "target", "met"]
    cells = [[r["row"], r["graphc"], r["torch"], "-" if r.get("ratio") is None else f"{r['ratio']:.2f}x",
              r.get("target", "-"), {True: "yes", False: "NO", None: "-"}[r.get("ok")]] for r in rows]
    widths = [max(len(str(c[i])) for c in [header] + cells) for i in range(len(header))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths)), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(cell, widths)) for cell in cells]
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=None, help="timed repetitions per case (median)")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (smoke test)")
    parser.add_argument("--json", default=None, help="also write the rows as JSON to this file")
    parser.add_argument("--only", default=",".join(ROWS), help=f"comma-separated subset of {','.join(ROWS)}")
    parser.add_argument("--smoke-cpu", action="store_true",
                        help="run every row's code on the CPU at 1/16 size to test this script; prints no figure")
    args = parser.parse_args(argv)
    global DEV, TDEV, SCALE
    only = [r.strip() for r in args.only.split(",") if r.strip()]
    bad = [r for r in only if r not in ROWS]
    if bad:
        parser.error(f"unknown rows {bad}; choose from {', '.join(ROWS)}")
    if args.smoke_cpu:
        DEV, TDEV, SCALE = "cpu", "cpu", 16
    why = "" if args.smoke_cpu else cuda_unavailable()
    if why:
        print(f"bench_cuda: no usable CUDA GPU, nothing measured: {why}", file=sys.stderr)
        return NO_GPU_EXIT
    repeat = args.repeat or (5 if args.quick else 20)

    import numpy as np

    import graphc as gc
    torch, torch_why = bu.try_import("torch")
    if torch is not None and TDEV == "cuda" and not torch.cuda.is_available():
        torch, torch_why = None, "torch sees no CUDA GPU"
    if torch is not None:
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    from graphc import _runtime
    info = getattr(_runtime, "cuda_info", None)
    gpu = info() if info is not None and not args.smoke_cpu else {}
    print(f"machine: {bu.machine()}")
    print(f"GPU: {gpu.get('gpu') or (torch.cuda.get_device_name() if torch and TDEV == 'cuda' else 'none')}; "
          f"graphc {gc.__version__}; " + (f"torch {torch.__version__}" if torch else f"torch: {torch_why}"))
    options = getattr(_runtime, "cuda_options", None)
    print(f"repeats: {repeat}; TF32 off in torch; graphc CUDA options: {options() if options else 'unknown'}")
    print()
    if args.smoke_cpu:
        print("SMOKE TEST on the CPU at 1/16 size: the rows' code runs, no figure is printed")
    copy_bw = bench_copy(torch, 256 * MIB, repeat) if torch is not None else None
    if copy_bw is not None and not args.smoke_cpu:
        print(f"device-to-device copy (torch, 256 MiB): {copy_bw / 1e9:.0f} GB/s (read + written)")
    rows = []
    benches = {
        "sgemm": lambda: bench_sgemm(gc, np, torch, repeat),
        "add": lambda: bench_add(gc, np, torch, repeat, copy_bw),
        "softmax": lambda: bench_softmax(gc, np, torch, repeat, copy_bw),
        "layer_norm": lambda: bench_layer_norm(gc, np, torch, repeat, copy_bw),
        "host": lambda: bench_host(gc, np, torch, repeat),
    }
    for which in ("mlp", "cnn", "gpt", "lstm"):
        benches[which] = (lambda w=which: bench_training(gc, np, torch, w, repeat))
    for name in only:
        t0 = time.perf_counter()
        try:
            row = benches[name]()
        except Exception as e:  # one broken row must not hide the others: it says why instead
            row = {"row": name, "graphc": f"FAILED: {type(e).__name__}: {str(e).splitlines()[0][:100]}",
                   "torch": "-", "ratio": None, "target": "-", "ok": False}
        row["seconds"] = round(time.perf_counter() - t0, 1)
        rows.append(row)
        failed = str(row["graphc"]).startswith(("FAILED", "LOSSES DIFFER"))
        print(f"  {name}: {'FAILED' if failed else 'done'} in {row['seconds']} s"
              + (f": {row['graphc']}" if failed else ""), flush=True)
    print()
    if args.smoke_cpu:
        return 1 if any(str(r["graphc"]).startswith(("FAILED", "LOSSES DIFFER")) for r in rows) else 0
    for line in format_table(rows):
        print(line)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"gpu": gpu, "copy_bytes_per_s": copy_bw, "repeat": repeat, "rows": rows}, f, indent=1,
                      default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
