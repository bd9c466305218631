"""CNN training-step benchmark: graphc vs PyTorch CPU on a small ResNet (issue 11).

Model: a conv3×3-bn-relu stem with 32 channels, two residual blocks (torchvision BasicBlock:
32→32, then 32→64 with stride 2), global average pooling, linear to 10; input 32×3×32×32,
softmax cross-entropy (mean), SGD with momentum 0.9.  Built with gc.nn and with torch.nn; the
graphc model loads PyTorch's initial weights through ``Session.load_state_dict``, and the
first losses are checked to agree (rtol 1e-3) before timing.  One graphc step is one
``Session.run`` of a plan compiled once; one PyTorch step is zero_grad, forward, loss,
backward, optimizer step.  Both at the same thread count (--threads, default 2), medians.

Also timed: conv2d forward alone for the 3×3 64→64 layer of the second block (input
32×64×16×16, no bias): a graphc inference plan of that one op vs torch.nn.functional.conv2d
under no_grad.

Memory: graphc's figure is the plan's, computed at compile time (arena + persistent: weights,
optimizer state, batch-norm statistics), next to the growth of the process's peak resident
set size (VmHWM) over 5 training steps in a fresh child process; PyTorch's is that same
peak-RSS growth (the kernel's high-water mark is reset through /proc/self/clear_refs after the
model, the optimizer and the batch exist, so the figure is what the steps themselves add:
activations, gradients, momentum buffers, workspaces, allocator caches).

Run:  PYTHONPATH=. python tools/bench_cnn.py [--threads 2] [--repeat R] [--quick] [--batch 32]
"""
import argparse
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _bench_util as bu  # noqa: E402

BATCH, CHANNELS, SIZE, CLASSES = 32, 3, 32, 10
LR, MOMENTUM = 0.01, 0.9
CHECK_STEPS = 3
MEMORY_STEPS = 5
CONV_INPUT = (BATCH, 64, 16, 16)


def _extra(parser):
    parser.add_argument("--batch", type=int, default=BATCH)
    parser.add_argument("--memory-child", choices=("graphc", "torch"), help=argparse.SUPPRESS)
    parser.set_defaults(threads=2)


# --------------------------------------------------------------------------- the two models


def torch_model(torch):
    nn = torch.nn
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(CHANNELS, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
                         bu.torch_basic_block(torch, 32, 32, 1), bu.torch_basic_block(torch, 32, 64, 2),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, CLASSES))


def graphc_model(gc, batch):
    """(graph, loss name) of the gc.nn twin of torch_model, with its SGD training spec."""
    nn = gc.nn
    model = nn.Sequential(nn.Conv2d(CHANNELS, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
                          nn.ResidualBlock(32, 32), nn.ResidualBlock(32, 64, stride=2),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, CLASSES))
    with gc.Graph() as g:
        x = gc.placeholder("x", (None, CHANNELS, SIZE, SIZE))
        y = gc.placeholder("y", (None,), dtype="int64")
        loss = gc.softmax_cross_entropy(model(x), y, name="loss")
        gc.optim.SGD(lr=LR, momentum=MOMENTUM).minimize(loss)
    return g, loss.name


def graphc_step(gc, threads, batch, state):
    """(step(X, Y) -> loss, plan) for a Session running one training step per call."""
    g, loss = graphc_model(gc, batch)
    plan = gc.compile(g, shapes={"x": (batch, CHANNELS, SIZE, SIZE), "y": (batch,)}, fetches=[loss])
    sess = gc.Session(plan, threads=threads)
    sess.load_state_dict(state)
    import numpy as np
    out = np.empty((), np.float32)

    def step(X, Y):
        sess.run({"x": X, "y": Y}, out={loss: out})
        return float(out)
    return step, plan


def torch_step(torch, model):
    return bu.torch_sgd_step(torch, model, LR, MOMENTUM)


def batches(batch, n, seed=1):
    import numpy as np
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal((batch, CHANNELS, SIZE, SIZE), dtype=np.float32),
             rng.integers(0, CLASSES, batch).astype(np.int64)) for _ in range(n)]


# --------------------------------------------------------------------------- memory (child process)


def _status_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError(f"/proc/self/status has no {field}")


def _reset_peak():
    """Reset VmHWM to the current RSS (Linux >= 4.0); False when the kernel refuses."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def memory_child(which, threads, batch):
    """Print {"rss_growth": bytes, "method": ...} for MEMORY_STEPS training steps of ``which``."""
    bu.pin_threads(threads)
    import numpy as np  # noqa: F401

    data = batches(batch, 1)
    X, Y = data[0]
    if which == "torch":
        import torch
        torch.set_num_threads(threads)
        step = torch_step(torch, torch_model(torch))
    else:
        import torch

        import graphc as gc
        state = {k: v.numpy() for k, v in torch_model(torch).state_dict().items()}
        step, _ = graphc_step(gc, threads, batch, state)
    reset = _reset_peak()
    base = _status_kib("VmRSS") if reset else _status_kib("VmHWM")
    for _ in range(MEMORY_STEPS):
        step(X, Y)
    peak = _status_kib("VmHWM")
    method = "peak RSS (VmHWM) growth over the steps, peak reset before" if reset else \
        "VmHWM growth (clear_refs refused: includes earlier peaks)"
    print(json.dumps({"rss_growth": max(0, peak - base) * 1024, "method": method}))
    return 0


def run_memory_child(which, threads, batch):
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    try:
        r = subprocess.run([sys.executable, os.path.abspath(__file__), "--memory-child", which, "--threads",
                            str(threads), "--batch", str(batch)], capture_output=True, text=True, env=env,
                           timeout=600)
        return json.loads(r.stdout.strip().splitlines()[-1])
    except Exception as e:  # a failed child is reported in the table, never fatal
        return {"error": f"{type(e).__name__}: {str(e)[:120]}"}


def fmt_mib(nbytes):
    return "-" if nbytes is None else f"{nbytes / 2**20:.1f} MiB"


# --------------------------------------------------------------------------- main


def main(argv=None):
    args = bu.parse_args(__doc__.splitlines()[0], extra=_extra, argv=argv)
    if args.memory_child:
        return memory_child(args.memory_child, args.threads, args.batch)
    bu.pin_threads(args.threads)
    import numpy as np

    import graphc as gc

    threads, batch = args.threads, args.batch
    repeat = args.repeat or (5 if args.quick else 30)
    torch, torch_why = bu.try_import("torch")
    versions = [f"graphc {gc.__version__}", f"numpy {np.__version__}",
                f"torch {torch.__version__}" if torch else f"torch {torch_why}"]
    print(f"machine: {bu.machine()}")
    print(f"threads: {threads} for every framework; {', '.join(versions)}")
    print(f"repeats: {repeat}; medians, {bu.SAMPLING}")
    print(bu.load_note())
    print()
    if torch is None:
        print("PyTorch is required for this comparison (the graphc model loads its initial weights)")
        return 1
    torch.set_num_threads(threads)

    data = batches(batch, CHECK_STEPS)
    tm = torch_model(torch)
    state = {k: v.detach().numpy().copy() for k, v in tm.state_dict().items()}
    notes = []
    g_step = g_why = plan = None
    try:
        g_step, plan = graphc_step(gc, threads, batch, state)
        g_losses = [g_step(X, Y) for X, Y in data]
    except Exception as e:  # a missing kernel surfaces as ModelFormatError or RuntimeExecutionError
        msg = str(e).splitlines()[0]
        g_step, g_why = None, f"failed ({type(e).__name__})"
        notes.append(f"graphc: {type(e).__name__}: {msg[:300]}")
    t_step = torch_step(torch, tm)
    t_losses = [t_step(X, Y) for X, Y in data]
    notes.append("PyTorch losses, first steps: " + ", ".join(f"{v:.5f}" for v in t_losses))
    if g_step is not None:
        notes.append("graphc  losses, first steps: " + ", ".join(f"{v:.5f}" for v in g_losses))
        ok = np.allclose(g_losses, t_losses, rtol=1e-3, atol=0)
        notes.append(f"losses agree (rtol 1e-3): {ok}")
        if not ok:
            g_why, g_step = "losses disagree with PyTorch; not timed", None

    # conv2d forward alone: the 3x3 64->64 layer of the second block
    rng = np.random.default_rng(2)
    cx = rng.standard_normal((batch,) + CONV_INPUT[1:], dtype=np.float32)
    cw = (rng.standard_normal((64, 64, 3, 3), dtype=np.float32) / 24).astype(np.float32)
    c_step = c_why = None
    try:
        with gc.Graph() as cg:
            xin = gc.placeholder("x", cx.shape)
            wv = gc.variable("w", init=cw)
            cy = gc.conv2d(xin, wv, padding=1)
        csess = gc.Session(gc.compile(cg, shapes={"x": cx.shape}, fetches=[cy]), threads=threads)
        cout = np.empty(tuple(cy.shape), np.float32)
        c_step = lambda: csess.run({"x": cx}, out={cy.name: cout})  # noqa: E731
        c_step()
        want = torch.nn.functional.conv2d(torch.from_numpy(cx), torch.from_numpy(cw), padding=1).numpy()
        err = float(np.max(np.abs(cout - want)) / np.max(np.abs(want)))
        notes.append(f"conv2d 3x3 64->64: max |graphc - torch| / max |torch| = {err:.2e}")
    except Exception as e:
        c_why = f"failed ({type(e).__name__})"
        notes.append(f"graphc conv2d: {type(e).__name__}: {str(e).splitlines()[0][:300]}")
    tcx, tcw = torch.from_numpy(cx), torch.from_numpy(cw)

    def t_conv():
        with torch.no_grad():
            torch.nn.functional.conv2d(tcx, tcw, padding=1)

    X, Y = data[0]
    fns = [(lambda f=f: f(X, Y)) for f in (g_step, t_step) if f is not None]
    times = iter(bu.median_times(fns, repeat))
    t_g = next(times) if g_step is not None else None
    t_t = next(times)
    cfns = [f for f in (c_step, t_conv) if f is not None]
    ctimes = iter(bu.median_times(cfns, repeat * 2, min_time=0.02))
    tc_g = next(ctimes) if c_step is not None else None
    tc_t = next(ctimes)

    def status(ours, theirs):
        return "-" if ours is None else ("met" if ours / theirs <= 1.0 else "MISSED")

    rows = [[f"ResNet train step, x {batch}x3x32x32", g_why or bu.fmt_ms(t_g), bu.fmt_ms(t_t),
             bu.fmt_ratio(t_g, t_t), "<= 1.00x", status(t_g, t_t)],
            [f"conv2d fwd 3x3 64->64, x {batch}x64x16x16", c_why or bu.fmt_ms(tc_g), bu.fmt_ms(tc_t),
             bu.fmt_ratio(tc_g, tc_t), "-", "-"]]
    bu.print_table(f"CNN training step (SGD momentum {MOMENTUM}, lr {LR}, softmax cross-entropy), threads={threads}",
                   ["case", "graphc", "torch", "graphc/torch", "target", "status"], rows)
    print()

    g_mem = run_memory_child("graphc", threads, batch) if g_step is not None else {"error": "not run"}
    t_mem = run_memory_child("torch", threads, batch)
    mem_rows = []
    if plan is not None:
        rep = plan.memory_report()
        mem_rows.append(["graphc plan: arena + persistent", fmt_mib(rep["arena_bytes"] + rep["persistent_bytes"]),
                         f"arena {fmt_mib(rep['arena_bytes'])} (workspaces included), persistent "
                         f"{fmt_mib(rep['persistent_bytes'])}"])
    for name, m in (("graphc", g_mem), ("torch", t_mem)):
        mem_rows.append([f"{name}: peak RSS growth, {MEMORY_STEPS} steps", fmt_mib(m.get("rss_growth")),
                         m.get("method") or m.get("error", "")])
    bu.print_table("peak memory of the training step (fresh child process per framework)",
                   ["what", "bytes", "how"], mem_rows)
    print()
    for note in notes:
        print(note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
