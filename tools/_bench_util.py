"""Shared helpers for tools/bench_*.py: thread setup, machine header, timing, tables.

Kept free of numpy/torch imports at module level: ``pin_threads`` must run before
numpy is imported so that numpy's own OpenBLAS honours the thread count.
"""
import argparse
import importlib
import os
import platform
import statistics
import time


def parse_args(description, extra=None, argv=None):
    """Common flags: --threads (default: all cores), --repeat, --quick."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="threads for every framework (default: all cores, %(default)s)")
    parser.add_argument("--repeat", type=int, default=None,
                        help="timed repetitions per case; the median is reported")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (smoke test)")
    if extra:
        extra(parser)
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    return args


def pin_threads(threads):
    """Give numpy's OpenBLAS (and any OpenMP/MKL runtime) the same thread count.

    Must run before numpy is imported: OpenBLAS reads these once, at load.
    """
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)


def machine():
    """One line: CPU model, logical cores, OS and Python."""
    model, physical = platform.processor() or "unknown CPU", None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and model in ("unknown CPU", platform.processor()):
                    model = value.strip()
                elif key == "cpu cores" and physical is None:
                    physical = value.strip()
    except OSError:
        pass
    cores = f"{os.cpu_count()} logical cores" + (f" ({physical} per socket)" if physical else "")
    return f"{model}, {cores}, {platform.system()} {platform.release()}, Python {platform.python_version()}"


def try_import(name):
    """(module, None) or (None, reason); an absent peer is reported, never fatal."""
    try:
        return importlib.import_module(name), None
    except Exception as e:  # ImportError, or a broken install raising anything at import
        return None, f"missing ({type(e).__name__}: {str(e).splitlines()[0][:60]})"


def median_time(fn, repeat, warmup=2, min_time=0.0):
    """Median seconds per call of ``fn()`` over ``repeat`` timed calls after ``warmup`` calls.

    When ``min_time`` > 0, each sample runs fn enough times to last about that long,
    so sub-millisecond cases are not dominated by timer resolution.
    """
    for _ in range(warmup):
        fn()
    inner = 1
    if min_time > 0:
        t0 = time.perf_counter()
        fn()
        one = max(time.perf_counter() - t0, 1e-7)
        inner = max(1, int(min_time / one))
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        samples.append((time.perf_counter() - t0) / inner)
    return statistics.median(samples)


# Calls per framework in a row in median_times; the first of each block is discarded.
BLOCK = 6
# Pause before each block: OpenBLAS's idle threads spin for about 2^28 cycles (~0.1 s) after a
# call and ONNX Runtime's for a while too; a framework timed right after another would share
# the 2 cores with those spinning threads for its whole block.
SETTLE = 0.25
SAMPLING = (f"frameworks timed in alternating blocks of {BLOCK} calls after a {SETTLE:g} s pause (peers' "
            "idle worker threads spin for ~0.1 s after a call), the first of each block discarded")


def median_times(fns, repeat, warmup=2, min_time=0.0, block=BLOCK, settle=SETTLE):
    """Median seconds per call of each ``fns[i]()``, sampled in alternating blocks.

    Each framework runs ``block`` samples in a row, then the next framework, round after
    round until each has ``repeat`` samples; a load spike from other processes still
    hits every contender within a round.  ONNX Runtime's and OpenBLAS's idle worker threads
    keep spinning for a while after each call (OpenBLAS: ~0.1 s), so whoever runs right
    after another framework on a small machine pays for them (strict round-robin charged
    that to every call): each block starts after a ``settle`` pause, and its first sample
    is discarded.
    """
    inner = []
    for fn in fns:
        for _ in range(warmup):
            fn()
        t0 = time.perf_counter()
        fn()
        one = max(time.perf_counter() - t0, 1e-7)
        inner.append(max(1, int(min_time / one)) if min_time > 0 else 1)
    samples = [[] for _ in fns]
    block = max(2, int(block))
    while any(len(s) < repeat for s in samples):
        for i, fn in enumerate(fns):
            if len(samples[i]) >= repeat:
                continue
            if settle and len(fns) > 1:
                time.sleep(settle)
            for j in range(min(block, repeat - len(samples[i]) + 1)):
                t0 = time.perf_counter()
                for _ in range(inner[i]):
                    fn()
                dt = (time.perf_counter() - t0) / inner[i]
                if j > 0:
                    samples[i].append(dt)
    return [statistics.median(s) for s in samples]


def load_note():
    """The 1-minute load average against the core count: shared machines skew timings."""
    try:
        load = os.getloadavg()[0]
    except OSError:
        return "load average: unknown"
    cores = os.cpu_count() or 1
    warn = "  WARNING: other processes compete for the cores; multi-thread timings are unreliable" \
        if load > 0.5 * cores else ""
    return f"load average (1 min) at start: {load:.2f} on {cores} cores{warn}"


def graphc_mlp(gc, params, width):
    """The graphc twin of :func:`torch_mlp`: an MLP graph over ``x`` (None, width) with
    variables shaped like ``params``.  Returns (graph, x, logits, [(w name, b name), ...])."""
    with gc.Graph() as g:
        h = x = gc.placeholder("x", (None, width))
        names = []
        for i, (w, b) in enumerate(params):
            with gc.name_scope(f"fc{i + 1}"):
                wv = gc.variable("w", w.shape)
                bv = gc.variable("b", b.shape)
                h = h @ wv + bv
                if i < len(params) - 1:
                    h = gc.relu(h)
            names.append((wv.name, bv.name))
    return g, x, h, names


def torch_mlp(torch, params):
    """nn.Sequential of Linear layers (weights (in, out) as graphc stores them) with ReLU
    between them, initialised from ``params`` = [(w, b), ...]."""
    layers = []
    for i, (w, b) in enumerate(params):
        lin = torch.nn.Linear(w.shape[0], w.shape[1])
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(w.T.copy()))
            lin.bias.copy_(torch.from_numpy(b))
        layers.append(lin)
        if i < len(params) - 1:
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers)


def torch_basic_block(torch, cin, cout, stride):
    """torchvision's BasicBlock, written out (torchvision is not a dependency): the twin of
    gc.nn.ResidualBlock, with the same child names (conv1, bn1, conv2, bn2, downsample)."""
    nn = torch.nn

    class BasicBlock(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.downsample = None
            if stride != 1 or cin != cout:
                self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

        def forward(self, x):
            out = torch.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            return torch.relu(out + (x if self.downsample is None else self.downsample(x)))

    return BasicBlock()


def torch_sgd_step(torch, model, lr, momentum):
    """step(X, Y) -> loss: one PyTorch training step (cross entropy, SGD with momentum)."""
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step(X, Y):
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(torch.from_numpy(X)), torch.from_numpy(Y))
        loss.backward()
        opt.step()
        return float(loss.detach())
    return step


def print_table(title, header, rows):
    """A plain fixed-width table; cells are strings."""
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    line = "  ".join("-" * w for w in widths)
    print(title)
    print("  ".join(str(h).ljust(w) for h, w in zip(header, widths)))
    print(line)
    for r in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)))


def fmt_ms(seconds):
    return "-" if seconds is None else f"{seconds * 1e3:.3f} ms"


def fmt_ratio(ours, theirs):
    """graphc time / peer time (< 1.0 means graphc is faster)."""
    if ours is None or theirs is None:
        return "-"
    return f"{ours / theirs:.2f}x"
