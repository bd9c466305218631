"""Benchmark of the AOT artifact (`graphc compile --emit c`) against Session.run and ONNX Runtime.

One table, one run, per thread count (default 1 and 2):
  * MLP 784-1024-1024-10 (bias + relu between layers, bench_runtime.py's seeded weights)
    inference at batch 1: the AOT artifact called from C (tools/bench_aot_driver.c, the timing
    loop in C), gc.Session.run from Python, and ONNX Runtime (the same MLP built in torch with
    graphc's weights, torch.onnx.export, intra_op threads = the same threads, called through
    its Python API: plain run and run_with_iobinding, the faster one in the table). Target: the
    artifact's latency <= ONNX Runtime's.
  * the digits MLP 64-128-10 at batch 1 (examples/aot/export_digits.py's entry "predict"), the
    same three ways: a model so small that the per-call overhead is most of the time.
  * the digits training step (the same program's entry "train", batch 64, SGD with momentum):
    the artifact from C vs Session.run (ONNX Runtime has no training step: "-").
Each call is timed alone and the medians of the per-call times are reported. The frameworks
run in alternating rounds (C driver process, Session, ONNX Runtime, ...), so a load spike from
other processes hits all of them. "overhead removed" = Session median - AOT median: what the
Python call path (feed checks, copies into numpy arrays, the GIL) costs per call.
Before timing, the artifact's fetches are checked bit-identical to Session.run's at the same
thread count (the logits; the digits loss after 3 steps from the same start) and ONNX Runtime's
close to them.

Run:  PYTHONPATH=. python tools/bench_aot.py [--threads 1,2] [--calls 400] [--rounds 5] [--quick]
      [--build-dir DIR]  (emits and builds the artifacts there and keeps them: a second run
                          with the same DIR rebuilds only what changed)
"""
import argparse
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
import _bench_util as bu  # noqa: E402
import bench_runtime as br  # noqa: E402  (the MLP and its seeded weights)

SIZES = br.SIZES
DIGITS_BATCH = 64
DRIVER = os.path.join(HERE, "bench_aot_driver.c")


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
    """examples/aot/export_digits.py's program (train / evaluate / predict over one store), a
    training batch, one test image and the initial weights as [(w, b), ...]."""
    sys.path.insert(0, os.path.join(ROOT, "examples", "aot"))
    import export_digits
    (xtr, ytr), (xte, _) = gc.datasets.load_digits()
    graph, _, _ = export_digits.build_model()
    program = export_digits.compile_program(graph, DIGITS_BATCH, len(xte))
    sess = gc.Session(program, threads=1)
    params = [(sess.get_variable(f"fc{i}/w"), sess.get_variable(f"fc{i}/b")) for i in (1, 2)]
    return program, xtr[:DIGITS_BATCH], ytr[:DIGITS_BATCH], xte[:1], params


def driver_wrapper(name):
    """The C file that builds bench_aot_driver.c for the artifact `name` (in its folder)."""
    return (f'#define _POSIX_C_SOURCE 200809L\n#include "{name}.h"\n#define AOT_NAME {name}\n'
            f'#define AOT_UNAME {name.upper()}\n#include "{DRIVER}"\n')


class Artifact:
    """An emitted artifact with the C timing driver built by its own Makefile."""

    def __init__(self, gc, source, folder, name):
        self.name, self.folder = name, folder
        result = gc.emit_c(source, folder, name=name)  # into an existing folder: make rebuilds what changed
        self.weights = result.weights
        with open(os.path.join(folder, "bench_driver.c"), "w") as f:
            f.write(driver_wrapper(name))
        jobs = str(max(1, min(4, os.cpu_count() or 1)))
        cmd = ["make", "-j", jobs, "programs", "PROGRAMS=bench_driver.c"]
        if shutil.which("ccache"):
            cmd.append(f"CXX=ccache {os.environ.get('CXX') or 'g++'}")
        r = subprocess.run(cmd, cwd=folder, capture_output=True, text=True)
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


def ort_mlp(ort, torch, np, params, threads, path, X):
    """ONNX Runtime over an MLP built in torch with graphc's weights (bu.torch_mlp: Linear layers,
    ReLU between) and exported with torch.onnx.export. Returns (output for X, {path: call}) with
    two calling paths: plain ``run`` and ``run_with_iobinding`` (X and the output bound as
    OrtValues once: the least Python per call)."""
    import warnings
    model = bu.torch_mlp(torch, params).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(1, params[0][0].shape[0]),), path, input_names=["x"],
                          output_names=["y"], dynamo=False)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    y = sess.run(["y"], {"x": X})[0]
    binding = sess.io_binding()
    binding.bind_ortvalue_input("x", ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(X)))
    out = ort.OrtValue.ortvalue_from_numpy(np.empty_like(y))
    binding.bind_ortvalue_output("y", out)
    sess.run_with_iobinding(binding)
    if not np.array_equal(out.numpy(), y):
        raise SystemExit("ONNX Runtime: run and run_with_iobinding disagree")
    feeds = {"x": X}
    return y, {"run": lambda: sess.run(["y"], feeds), "io binding": lambda: sess.run_with_iobinding(binding)}


class Case:
    """One row: an artifact entry, its Session twin and (for inference) an ONNX Runtime twin."""

    def __init__(self, label, artifact, entry, feeds, session_call, ort_calls=None):
        self.label, self.artifact, self.entry, self.feeds = label, artifact, entry, feeds
        self.session_call, self.ort_calls = session_call, ort_calls or {}
        self.samples = {"aot": [], "session": []}
        self.samples.update({f"ort {k}": [] for k in self.ort_calls})

    def time_round(self, threads, calls, warmup):
        self.samples["aot"] += list(self.artifact.run(self.entry, self.feeds, [], threads, warmup, calls)[0])
        self.samples["session"] += per_call_times(self.session_call, calls, warmup)
        for k, call in self.ort_calls.items():
            self.samples[f"ort {k}"] += per_call_times(call, calls, warmup)

    def medians(self):
        return {k: statistics.median(v) for k, v in self.samples.items() if v}

    def row(self, threads, ort_why):
        """The table row; ONNX Runtime's column is its faster calling path (named)."""
        med = self.medians()
        t_aot, t_sess = med["aot"], med["session"]
        ort_paths = {k[4:]: v for k, v in med.items() if k.startswith("ort ")}
        best = min(ort_paths, key=ort_paths.get) if ort_paths else None
        t_ort = ort_paths.get(best)
        if t_ort:
            peer, ratio, status = (f"{fmt_us(t_ort)} ({best})", f"{t_aot / t_ort:.2f}x",
                                   "met" if t_aot <= t_ort else "MISSED")
        elif not self.ort_calls and ort_why is None:
            peer, ratio, status = "-", "-", "-"
        else:
            peer, ratio, status = ort_why or "-", "-", "-"
        return [self.label, str(threads), fmt_us(t_aot), fmt_us(t_sess), peer, ratio, fmt_us(t_sess - t_aot), status]


def cases_for(c, threads):
    """Check every artifact against Session.run (bit for bit) and ONNX Runtime (close) at
    `threads`, and return (the Cases to time, notes)."""
    gc, np, build_dir = c["gc"], c["np"], c["build_dir"]
    notes, cases = [], []
    ort, torch = c["ort"], c["torch"]

    # MLP 784-1024-1024-10, batch 1.
    X = c["X"]
    sess = gc.Session(c["plan"], threads=threads)
    want = sess.run({"x": X})[c["y_name"]]
    _, (got,) = c["mlp"].run(0, [X], [want.nbytes], threads, 0, 1)
    note = f"threads {threads}: MLP 784-1024-1024-10 logits AOT == Session bit for bit: " \
           f"{got == np.ascontiguousarray(want).tobytes()}"
    ort_calls = None
    if ort:
        y, ort_calls = ort_mlp(ort, torch, np, c["params"], threads, os.path.join(build_dir, "mlp.onnx"), X)
        note += f"; ONNX Runtime allclose(rtol=1e-4, atol=1e-5): {np.allclose(y, want, 1e-4, 1e-5)}"
    notes.append(note)
    feeds = {"x": X}
    cases.append(Case("MLP 784-1024-1024-10 inference b=1", c["mlp"], 0, [X], lambda: sess.run(feeds), ort_calls))

    # The digits program: predict (batch 1) and train (batch 64).
    program, digits = c["program"], c["digits"]
    dsess = gc.Session(program, threads=threads)
    xi = c["x_image"]
    predict = program.entries.index("predict")
    want = dsess.run({"x": xi}, entry="predict")["logits"]
    _, (got,) = digits.run(predict, [xi], [want.nbytes], threads, 0, 1)
    note = f"threads {threads}: digits predict logits AOT == Session bit for bit: " \
           f"{got == np.ascontiguousarray(want).tobytes()}"
    ort_calls = None
    if ort:
        y, ort_calls = ort_mlp(ort, torch, np, c["digits_params"], threads, os.path.join(build_dir, "digits.onnx"),
                               xi)
        note += f"; ONNX Runtime allclose(rtol=1e-4, atol=1e-5): {np.allclose(y, want, 1e-4, 1e-5)}"
    notes.append(note)
    pfeeds = {"x": xi}
    cases.append(Case("digits MLP 64-128-10 inference b=1", digits, predict, [xi],
                      lambda: dsess.run(pfeeds, entry="predict"), ort_calls))

    xb, yb = c["xb"], c["yb"]
    train = program.entries.index("train")
    tsess = gc.Session(program, threads=threads)
    for _ in range(3):  # 3 steps from the initial weights in both; the last loss compared
        loss = tsess.run({"x": xb, "y": yb}, entry="train")["loss"]
    _, (got,) = digits.run(train, [xb, yb], [loss.nbytes], threads, 0, 3)
    notes.append(f"threads {threads}: digits loss after 3 training steps AOT == Session bit for bit: "
                 f"{got == np.ascontiguousarray(loss).tobytes()}")
    tfeeds = {"x": xb, "y": yb}
    cases.append(Case(f"digits training step b={DIGITS_BATCH}", digits, train, [xb, yb],
                      lambda: tsess.run(tfeeds, entry="train")))
    return cases, notes


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
    bu.pin_threads(max(args.threads))
    import numpy as np

    import graphc as gc

    calls = args.calls or (50 if args.quick else 400)
    rounds = args.rounds or (2 if args.quick else 5)
    warmup = 20 if args.quick else 100
    torch, torch_why = bu.try_import("torch")
    ort, ort_why = bu.try_import("onnxruntime")
    if ort is not None and torch is None:
        ort, ort_why = None, f"missing (the ONNX models are exported from torch: {torch_why})"
    build_dir = os.path.abspath(args.build_dir or tempfile.mkdtemp(prefix="graphc-bench-aot-"))
    os.makedirs(build_dir, exist_ok=True)

    print(f"machine: {bu.machine()}")
    print(f"graphc {gc.__version__}, numpy {np.__version__}, "
          + (f"onnxruntime {ort.__version__}, torch {torch.__version__}" if ort else f"onnxruntime {ort_why}"))
    print(f"per-call medians over {rounds} alternating rounds of {calls} calls per framework "
          f"(after {warmup} warm-up calls each round); artifacts in {build_dir}")
    print(bu.load_note())
    t0 = time.perf_counter()
    params = br.make_weights(0)
    plan, y_name = mlp_plan(gc, params)
    mlp = Artifact(gc, plan, os.path.join(build_dir, "mlp"), "mlp")
    program, xb, yb, x_image, digits_params = digits_program(gc)
    digits = Artifact(gc, program, os.path.join(build_dir, "digits"), "digits")
    print(f"emitted and built both artifacts in {time.perf_counter() - t0:.1f} s")
    print()

    rng = np.random.default_rng(1)
    ctx = dict(gc=gc, np=np, build_dir=build_dir, ort=ort, torch=torch, plan=plan, y_name=y_name, mlp=mlp,
               params=params, X=rng.standard_normal((1, SIZES[0]), dtype=np.float32), program=program,
               digits=digits, digits_params=digits_params, x_image=x_image, xb=xb, yb=yb)
    rows, notes = [], []
    for threads in args.threads:
        cases, case_notes = cases_for(ctx, threads)
        notes += case_notes
        for _ in range(rounds):
            for case in cases:
                case.time_round(threads, calls, warmup)
        rows += [case.row(threads, ort_why if not case.ort_calls and "inference" in case.label else None)
                 for case in cases]
        for case in cases:
            ort_paths = [f"{k[4:]} {fmt_us(v)}" for k, v in case.medians().items() if k.startswith("ort ")]
            if ort_paths:
                notes.append(f"threads {threads}: {case.label}: ONNX Runtime by calling path: {', '.join(ort_paths)}")

    bu.print_table("AOT artifact (C) vs Session.run (Python) vs ONNX Runtime (Python API): median per-call latency",
                   ["case", "threads", "AOT from C", "Session.run", "ONNX Runtime", "AOT/ORT",
                    "overhead removed", "target AOT <= ORT"], rows)
    print()
    for note in notes:
        print(note)
    print(bu.load_note().replace("at start", "at end"))
    if not args.build_dir:
        shutil.rmtree(build_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
