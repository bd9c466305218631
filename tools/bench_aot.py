"""Benchmark of the AOT artifact (`graphc compile --emit c`) against Session.run and ONNX Runtime.

One table, one run, per thread count (default 1 and 2):
  * MLP 784-1024-1024-10 (bias + relu between layers, bench_runtime.py's seeded weights)
    inference at batch 1: the AOT artifact called from C (tools/bench_aot_driver.c, the timing
    loop in C), gc.Session.run from Python, and ONNX Runtime (the same MLP built in torch with
    graphc's weights, torch.onnx.export, intra_op threads = the same threads). Target: the
    artifact's latency <= ONNX Runtime's.
  * the digits training step (examples/aot/export_digits.py's program, entry "train", batch 64):
    the artifact from C vs Session.run (ONNX Runtime has no training step: "-").
Each call is timed alone and the medians of the per-call times are reported. The frameworks
run in alternating rounds (C driver process, Session, ONNX Runtime, ...), so a load spike from
other processes hits all of them. "overhead removed" = Session median - AOT median: what the
Python call path (feed checks, copies into numpy arrays, the GIL) costs per call.
Before timing, the artifact's fetches are checked bit-identical to Session.run's at the same
thread count (the MLP's logits; the digits loss after 3 steps from the same start).

Run:  PYTHONPATH=. python tools/bench_aot.py [--threads 1,2] [--calls 400] [--rounds 5] [--quick]
      [--build-dir DIR]  (keeps the artifacts and the driver there; default: a temporary folder)
"""
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import argparse  # noqa: E402

import _bench_util as bu  # noqa: E402

SIZES = (784, 1024, 1024, 10)
DIGITS_BATCH = 64
DRIVER = os.path.join(HERE, "bench_aot_driver.c")


def make_weights(seed=0):
    """bench_runtime.py's MLP weights (nn.Linear's init range, seeded)."""
    import numpy as np
    rng = np.random.default_rng(seed)
    params = []
    for fan_in, fan_out in zip(SIZES[:-1], SIZES[1:]):
        bound = 1.0 / np.sqrt(fan_in)
        params.append((rng.uniform(-bound, bound, (fan_in, fan_out)).astype(np.float32),
                       rng.uniform(-bound, bound, (fan_out,)).astype(np.float32)))
    return params


def mlp_plan(gc, params):
    """The MLP at batch 1 with `params` as the variables' initial values (so the artifact's
    weights image holds them). Returns (plan, fetch name)."""
    with gc.Graph() as g:
        h = x = gc.placeholder("x", (None, SIZES[0]))
        for i, (w, b) in enumerate(params):
            with gc.name_scope(f"fc{i + 1}"):
                h = h @ gc.variable("w", init=w) + gc.variable("b", init=b)
                if i < len(params) - 1:
                    h = gc.relu(h)
    plan = gc.compile(g, shapes={x.name: (1, SIZES[0])}, fetches=[h.name], train=False)
    return plan, h.name


def digits_program(gc):
    """examples/aot/export_digits.py's program (train / evaluate / predict over one store)."""
    sys.path.insert(0, os.path.join(ROOT, "examples", "aot"))
    import export_digits
    (xtr, ytr), (xte, _) = gc.datasets.load_digits()
    graph, _, _ = export_digits.build_model()
    program = export_digits.compile_program(graph, DIGITS_BATCH, len(xte))
    return program, xtr[:DIGITS_BATCH], ytr[:DIGITS_BATCH]


class Artifact:
    """An emitted artifact with the C timing driver built by its own Makefile."""

    def __init__(self, gc, source, folder, name):
        self.name, self.folder = name, folder
        if os.path.isdir(folder):
            shutil.rmtree(folder)
        result = gc.emit_c(source, folder, name=name)
        self.weights = result.weights if getattr(result, "weights", None) else os.path.join(folder, f"{name}.weights")
        with open(os.path.join(folder, "bench_driver.c"), "w") as f:
            f.write(f'#define _POSIX_C_SOURCE 200809L\n#include "{name}.h"\n#define AOT_NAME {name}\n'
                    f'#define AOT_UNAME {name.upper()}\n#include "{DRIVER}"\n')
        jobs = str(max(1, min(4, os.cpu_count() or 1)))
        r = subprocess.run(["make", "-j", jobs, "programs", "PROGRAMS=bench_driver.c"], cwd=folder,
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise SystemExit(f"building the {name} artifact failed:\n{r.stdout[-3000:]}{r.stderr[-3000:]}")
        self.binary = os.path.join(folder, "bin", "bench_driver")

    def run(self, entry, feeds, fetch_bytes, threads, warmup, calls):
        """Per-call seconds (numpy array) and the last call's fetches (bytes, in order)."""
        import numpy as np
        io_dir = os.path.join(self.folder, "io")
        os.makedirs(io_dir, exist_ok=True)
        args = [self.binary, self.weights, str(threads), str(entry), str(warmup), str(calls),
                os.path.join(io_dir, "times.f64")]
        for k, value in enumerate(feeds):
            path = os.path.join(io_dir, f"feed{k}.bin")
            with open(path, "wb") as f:
                f.write(np.ascontiguousarray(value).tobytes())
            args += ["-f", path]
        for k, nbytes in enumerate(fetch_bytes):
            args += ["-o", str(nbytes), os.path.join(io_dir, f"fetch{k}.bin")]
        r = subprocess.run(args, capture_output=True, text=True)
        if r.returncode != 0:
            raise SystemExit(f"{self.binary} failed ({r.returncode}): {r.stderr.strip()}")
        times = np.fromfile(os.path.join(io_dir, "times.f64"), dtype=np.float64)
        outs = []
        for k in range(len(fetch_bytes)):
            with open(os.path.join(io_dir, f"fetch{k}.bin"), "rb") as f:
                outs.append(f.read())
        return times, outs


def per_call_times(fn, calls, warmup):
    """Each of `calls` calls of fn() timed alone (after `warmup` untimed ones), in seconds."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(calls):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def ort_session(ort, torch, params, threads, folder):
    """ONNX Runtime over the MLP built in torch with graphc's weights and torch.onnx.export."""
    import warnings

    model = bu.torch_mlp(torch, params).eval()
    path = os.path.join(folder, "mlp.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(1, SIZES[0]),), path, input_names=["x"], output_names=["y"],
                          dynamo=False)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    return lambda X: sess.run(["y"], {"x": X})[0]


def measure(c, threads, rounds, calls, warmup):
    """Check, then time, both cases at one thread count. Returns (table rows, notes)."""
    np, X, xb, yb, mlp, digits = c["np"], c["X"], c["xb"], c["yb"], c["mlp"], c["digits"]
    notes = []
    # The MLP: the artifact's logits against Session.run's, bit for bit.
    sess = c["gc"].Session(c["plan"], threads=threads)
    want = sess.run({"x": X})[c["y_name"]]
    _, (got,) = mlp.run(0, [X], [want.nbytes], threads, 0, 1)
    same_mlp = got == np.ascontiguousarray(want).tobytes()
    ort_fn = None
    if c["ort"]:
        ort_fn = ort_session(c["ort"], c["torch"], c["params"], threads, c["build_dir"])
        close = np.allclose(ort_fn(X), want, rtol=1e-4, atol=1e-5)
        notes.append(f"threads {threads}: MLP logits AOT == Session bit for bit: {same_mlp}; "
                     f"ONNX Runtime allclose(rtol=1e-4, atol=1e-5): {close}")
    else:
        notes.append(f"threads {threads}: MLP logits AOT == Session bit for bit: {same_mlp}")
    # The digits step: 3 steps from the initial weights in both, the last loss compared.
    dsess = c["gc"].Session(c["program"], threads=threads)
    for _ in range(3):
        loss = dsess.run({"x": xb, "y": yb}, entry="train")["loss"]
    _, (got_loss,) = digits.run(c["train_entry"], [xb, yb], [loss.nbytes], threads, 0, 3)
    same_digits = got_loss == np.ascontiguousarray(loss).tobytes()
    notes.append(f"threads {threads}: digits loss after 3 steps AOT == Session bit for bit: {same_digits}")

    samples = {"mlp_aot": [], "mlp_sess": [], "mlp_ort": [], "dig_aot": [], "dig_sess": []}
    feeds_mlp, feeds_dig = {"x": X}, {"x": xb, "y": yb}
    run_sess = lambda: sess.run(feeds_mlp)  # noqa: E731
    run_ort = lambda: ort_fn(X)  # noqa: E731
    run_dsess = lambda: dsess.run(feeds_dig, entry="train")  # noqa: E731
    for _ in range(rounds):
        samples["mlp_aot"] += list(mlp.run(0, [X], [], threads, warmup, calls)[0])
        samples["mlp_sess"] += per_call_times(run_sess, calls, warmup)
        if ort_fn:
            samples["mlp_ort"] += per_call_times(run_ort, calls, warmup)
        samples["dig_aot"] += list(digits.run(c["train_entry"], [xb, yb], [], threads, warmup, calls)[0])
        samples["dig_sess"] += per_call_times(run_dsess, calls, warmup)
    med = {k: statistics.median(v) for k, v in samples.items() if v}
    t_ort = med.get("mlp_ort")
    rows = [["MLP 784-1024-1024-10 inference b=1", str(threads), fmt_us(med["mlp_aot"]), fmt_us(med["mlp_sess"]),
             fmt_us(t_ort) if t_ort else c["ort_why"], f"{med['mlp_aot'] / t_ort:.2f}x" if t_ort else "-",
             fmt_us(med["mlp_sess"] - med["mlp_aot"]),
             ("met" if med["mlp_aot"] <= t_ort else "MISSED") if t_ort else "-"],
            [f"digits training step b={DIGITS_BATCH}", str(threads), fmt_us(med["dig_aot"]), fmt_us(med["dig_sess"]),
             "-", "-", fmt_us(med["dig_sess"] - med["dig_aot"]), "-"]]
    return rows, notes


def fmt_us(seconds):
    return f"{seconds * 1e6:.1f} us"


def thread_list(text):
    try:
        counts = [int(t) for t in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--threads takes counts separated by commas, got {text!r}") from None
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"--threads: every count must be >= 1, got {text!r}")
    return counts


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=thread_list, default=[1, 2],
                        help="thread counts, comma-separated (default 1,2): every framework gets the same")
    parser.add_argument("--calls", type=int, default=None, help="timed calls per framework per round")
    parser.add_argument("--rounds", type=int, default=None, help="alternating rounds (default 5, quick 2)")
    parser.add_argument("--quick", action="store_true", help="fewer calls and rounds (smoke test)")
    parser.add_argument("--build-dir", default=None, help="where to emit and build the artifacts (kept)")
    args = parser.parse_args(argv)
    thread_counts = args.threads
    bu.pin_threads(max(thread_counts))
    import numpy as np

    import graphc as gc

    calls = args.calls or (50 if args.quick else 400)
    rounds = args.rounds or (2 if args.quick else 5)
    warmup = 20 if args.quick else 100
    torch, torch_why = bu.try_import("torch")
    ort, ort_why = bu.try_import("onnxruntime")
    if ort is not None and torch is None:
        ort, ort_why = None, f"missing (the ONNX model is exported from torch: {torch_why})"
    build_dir = args.build_dir or tempfile.mkdtemp(prefix="graphc-bench-aot-")
    os.makedirs(build_dir, exist_ok=True)

    print(f"machine: {bu.machine()}")
    print(f"graphc {gc.__version__}, numpy {np.__version__}, "
          + (f"onnxruntime {ort.__version__}, torch {torch.__version__}" if ort else f"onnxruntime {ort_why}"))
    print(f"per-call medians over {rounds} alternating rounds of {calls} calls per framework "
          f"(after {warmup} warm-up calls each round); artifacts in {build_dir}")
    print(bu.load_note())
    t0 = time.perf_counter()
    params = make_weights(0)
    plan, y_name = mlp_plan(gc, params)
    mlp = Artifact(gc, plan, os.path.join(build_dir, "mlp"), "mlp")
    program, xb, yb = digits_program(gc)
    digits = Artifact(gc, program, os.path.join(build_dir, "digits"), "digits")
    train_entry = program.entries.index("train")
    print(f"emitted and built both artifacts in {time.perf_counter() - t0:.1f} s")
    print()

    rng = np.random.default_rng(1)
    X = rng.standard_normal((1, SIZES[0]), dtype=np.float32)
    rows, notes = [], []
    for threads in thread_counts:
        ctx = dict(gc=gc, np=np, plan=plan, y_name=y_name, program=program, xb=xb, yb=yb, mlp=mlp, digits=digits,
                   train_entry=train_entry, X=X, params=params, build_dir=build_dir, torch=torch, ort=ort,
                   ort_why=ort_why)
        r, n = measure(ctx, threads, rounds, calls, warmup)
        rows += r
        notes += n

    bu.print_table("AOT artifact (C) vs Session.run (Python) vs ONNX Runtime (Python API): median per-call latency",
                   ["case", "threads", "AOT from C", "Session.run", "ONNX Runtime", "AOT/ORT",
                    "overhead removed", "target AOT <= ORT"], rows)
    print()
    for note in notes:
        print(note)
    if not args.build_dir:
        shutil.rmtree(build_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
