"""Inference benchmark of the graphc CPU runtime against numpy, PyTorch and ONNX Runtime.

Cases (float32, every framework on the same thread count):
  * sgemm 1024x1024x1024: a one-node matmul plan through gc.Session vs numpy ``a @ b``
    (GFLOP/s; target >= 0.9x numpy), and the same plan run with IO binding (a, b and the
    result bound in place, no copies; target >= 0.95x numpy);
  * MLP 784-1024-1024-10 (bias + relu between layers) at batch 1 and 128, latency vs
    PyTorch (nn.Linear, inference_mode) and ONNX Runtime (MatMul+Add+Relu built with
    onnx.helper); target <= 1.0x ONNX Runtime at both batches.  graphc runs the default
    (fused) plan; the "no fusion" column is the same model compiled with fuse=False, timed
    in the same rounds.
  * run() overhead per call: a 3-step plan (x -> relu -> neg -> exp, x of shape (4,)
    float32) through plain ``run``, ``run(out=...)`` and an IO binding, minus the
    kernels' own time (the sum of Session.profile's per-step medians); target < 10 us.
Outputs are checked to agree (allclose) before anything is timed.  Times are medians;
graphc is timed through the public ``Session.run`` (feed checks and result copies included).

The header names the instruction set the kernels ran with (graphc._runtime.cpu_isa();
``--isa avx2`` or ``baseline`` caps it, as GRAPHC_ISA does).

Run:  PYTHONPATH=. python tools/bench_runtime.py [--threads N] [--repeat R] [--quick] [--isa ISA]
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _bench_util as bu  # noqa: E402

SIZES = (784, 1024, 1024, 10)
SGEMM_N = 1024
RTOL, ATOL = 1e-4, 1e-4


def make_weights(seed=0):
    import numpy as np
    rng = np.random.default_rng(seed)
    params = []
    for fan_in, fan_out in zip(SIZES[:-1], SIZES[1:]):
        bound = 1.0 / np.sqrt(fan_in)  # nn.Linear's default init range
        w = rng.uniform(-bound, bound, (fan_in, fan_out)).astype(np.float32)
        b = rng.uniform(-bound, bound, (fan_out,)).astype(np.float32)
        params.append((w, b))
    return params


# -- graphc ------------------------------------------------------------------------------------

def graphc_sgemm(gc, threads, n):
    with gc.Graph() as g:
        a = gc.placeholder("a", (n, n))
        b = gc.placeholder("b", (n, n))
        y = gc.matmul(a, b, name="y")
    plan = gc.compile(g, shapes={"a": (n, n), "b": (n, n)}, fetches=[y.name], train=False)
    sess = gc.Session(plan, threads=threads)
    return lambda A, B: sess.run({"a": A, "b": B})["y"]


def graphc_sgemm_bound(gc, threads, n, A, B):
    """The sgemm plan with A, B and the result bound in place: the run copies nothing.
    Returns (run, the bound result array, zero_copy flags)."""
    with gc.Graph() as g:
        a = gc.placeholder("a", (n, n))
        b = gc.placeholder("b", (n, n))
        y = gc.matmul(a, b, name="y")
    plan = gc.compile(g, shapes={"a": (n, n), "b": (n, n)}, fetches=[y.name], train=False)
    sess = gc.Session(plan, threads=threads)
    binding = sess.io_binding()
    binding.bind_input("a", A)
    binding.bind_input("b", B)
    Y = binding.bind_output(y.name)
    return binding.run, Y, binding.zero_copy


OVERHEAD_TARGET_US = 10.0


def run_overhead_rows(gc, np, threads, repeat, min_time):
    """Rows for run()'s per-call overhead on a 3-step plan, by calling path."""
    with gc.Graph() as g:
        x = gc.placeholder("x", (4,))
        y = gc.exp(gc.neg(gc.relu(x)), name="y")
    # Three steps on purpose (unfused): the fusion pass would make the chain one step.
    plan = gc.compile(g, shapes={"x": (4,)}, fetches=[y.name], train=False, fuse=False)
    assert len(plan.proto.steps) == 3, [s.op for s in plan.proto.steps]
    sess = gc.Session(plan, threads=threads)
    X = np.linspace(-1, 1, 4, dtype=np.float32)
    Y = np.empty(4, np.float32)
    feeds, out = {"x": X}, {y.name: Y}
    binding = sess.io_binding()
    binding.bind_input("x", X)
    binding.bind_output(y.name, Y)
    want = sess.run(feeds)[y.name]
    sess.run(feeds, out=out)
    same = np.array_equal(Y, want)
    binding.run()
    same = same and np.array_equal(Y, want)
    kernels = sum(r["seconds"] for r in sess.profile(feeds, iters=max(200, repeat * 20), warmup=20))
    paths = [("plain run(feeds)", lambda: sess.run(feeds)), ("run(feeds, out=...)", lambda: sess.run(feeds, out=out)),
             ("IO binding run()", binding.run)]
    times = bu.median_times([fn for _, fn in paths], repeat, warmup=50, min_time=min_time)
    rows = []
    for (label, _), t in zip(paths, times):
        over = (t - kernels) * 1e6
        rows.append([f"run() overhead, 3-step plan: {label}", "us/call over the kernels' own time",
                     f"{over:.2f} us", "-", "kernels (profile)", f"{kernels * 1e6:.2f} us", "-",
                     f"< {OVERHEAD_TARGET_US:.0f} us", "met" if over < OVERHEAD_TARGET_US else "MISSED"])
    note = (f"run() overhead: plain, out= and bound results equal bit for bit: {same}; zero_copy "
            f"{binding.zero_copy}; kernels' own time = sum of Session.profile step medians")
    return rows, note


def graphc_mlp(gc, threads, params, batch, fuse=True):
    g, x, out, names = bu.graphc_mlp(gc, params, SIZES[0])
    plan = gc.compile(g, shapes={x.name: (batch, SIZES[0])}, fetches=[out.name], train=False, fuse=fuse)
    sess = gc.Session(plan, threads=threads)
    for (wn, bn), (w, b) in zip(names, params):
        sess.set_variable(wn, w)
        sess.set_variable(bn, b)
    return sess, (lambda X: sess.run({x.name: X})[out.name])


# -- peers -------------------------------------------------------------------------------------

def torch_mlp(torch, threads, params):
    torch.set_num_threads(threads)
    model = bu.torch_mlp(torch, params).eval()

    def run(X):
        with torch.inference_mode():
            return model(torch.from_numpy(X)).numpy()
    return run


def onnx_model_bytes(onnx, params):
    from onnx import TensorProto, helper, numpy_helper
    nodes, inits, h = [], [], "x"
    for i, (w, b) in enumerate(params):
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(b, f"b{i}")]
        nodes += [helper.make_node("MatMul", [h, f"w{i}"], [f"mm{i}"]),
                  helper.make_node("Add", [f"mm{i}", f"b{i}"], [f"z{i}"])]
        h = f"z{i}"
        if i < len(params) - 1:
            nodes.append(helper.make_node("Relu", [h], [f"r{i}"]))
            h = f"r{i}"
    graph = helper.make_graph(
        nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", SIZES[0]])],
        [helper.make_tensor_value_info(h, TensorProto.FLOAT, ["N", SIZES[-1]])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # readable by older onnxruntime builds too
    onnx.checker.check_model(model)
    return model.SerializeToString()


def ort_mlp(ort, onnx, threads, params):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    sess = ort.InferenceSession(onnx_model_bytes(onnx, params), opts, providers=["CPUExecutionProvider"])
    out_name = sess.get_outputs()[0].name
    return lambda X: sess.run([out_name], {"x": X})[0]


def main(argv=None):
    def extra(parser):
        parser.add_argument("--isa", choices=("avx512", "avx2", "baseline"),
                            help="cap the kernels' instruction set (default: the best the CPU has)")

    args = bu.parse_args(__doc__.splitlines()[0], extra=extra, argv=argv)
    bu.pin_threads(args.threads)
    import numpy as np

    import graphc as gc
    from graphc import _runtime

    if args.isa:
        _runtime.set_isa(args.isa)

    threads = args.threads
    rep_mm = args.repeat or (3 if args.quick else 15)
    rep_mlp = args.repeat or (5 if args.quick else 30)
    min_time = 0.02 if args.quick else 0.1

    torch, torch_why = bu.try_import("torch")
    ort, ort_why = bu.try_import("onnxruntime")
    onnx, onnx_why = bu.try_import("onnx")
    if ort is not None and onnx is None:
        ort, ort_why = None, f"missing (needs onnx to build the model: {onnx_why})"

    versions = [f"graphc {gc.__version__}", f"numpy {np.__version__}"]
    versions += [f"torch {torch.__version__}" if torch else f"torch {torch_why}"]
    versions += [f"onnxruntime {ort.__version__}" if ort else f"onnxruntime {ort_why}"]
    print(f"machine: {bu.machine()}")
    print(f"threads: {threads} for every framework; {', '.join(versions)}")
    print(f"graphc kernels: ISA {_runtime.cpu_isa()} (the CPU has {_runtime.cpu_isa(detected=True)})"
          + (f"; {_runtime.matmul_info()}" if hasattr(_runtime, "matmul_info") else ""))
    print(f"repeats: {rep_mm} (sgemm), {rep_mlp} (MLP, run() overhead); medians, {bu.SAMPLING}")
    print(bu.load_note())
    print()

    rows, notes = [], []

    # sgemm -------------------------------------------------------------------------------
    rng = np.random.default_rng(1)
    n = SGEMM_N
    A = rng.standard_normal((n, n), dtype=np.float32)
    B = rng.standard_normal((n, n), dtype=np.float32)
    flops = 2.0 * n ** 3
    gmm = graphc_sgemm(gc, threads, n)
    ref = A @ B
    ok = np.allclose(gmm(A, B), ref, rtol=1e-3, atol=1e-3)
    notes.append(f"sgemm graphc vs numpy allclose(rtol=1e-3, atol=1e-3): {ok}")
    run_bound, Y, zero_copy = graphc_sgemm_bound(gc, threads, n, A, B)
    run_bound()
    ok_b = np.allclose(Y, ref, rtol=1e-3, atol=1e-3)
    notes.append(f"sgemm with IO binding vs numpy allclose(rtol=1e-3, atol=1e-3): {ok_b}; zero_copy {zero_copy}")
    t_g, t_b, t_np = bu.median_times([lambda: gmm(A, B), run_bound, lambda: A @ B], rep_mm)
    ratio = (flops / t_g) / (flops / t_np)
    rows.append([f"sgemm {n}x{n}x{n}", "GFLOP/s (higher is better)", f"{flops / t_g / 1e9:.1f}", "-", "numpy",
                 f"{flops / t_np / 1e9:.1f}", f"{ratio:.2f}x", ">= 0.90x", "met" if ratio >= 0.9 else "MISSED"])
    ratio_b = (flops / t_b) / (flops / t_np)
    rows.append([f"sgemm {n}x{n}x{n}, IO binding", "GFLOP/s (higher is better)", f"{flops / t_b / 1e9:.1f}",
                 "-", "numpy", f"{flops / t_np / 1e9:.1f}", f"{ratio_b:.2f}x", ">= 0.95x",
                 "met" if ratio_b >= 0.95 else "MISSED"])

    # MLP ---------------------------------------------------------------------------------
    params = make_weights(0)
    peers = {}
    peers["torch"] = (torch_mlp(torch, threads, params), None) if torch else (None, torch_why)
    peers["onnxruntime"] = (ort_mlp(ort, onnx, threads, params), None) if ort else (None, ort_why)
    targets = {1: "onnxruntime", 128: "onnxruntime"}
    for batch in (1, 128):
        X = rng.standard_normal((batch, SIZES[0]), dtype=np.float32)
        _, run_g = graphc_mlp(gc, threads, params, batch)
        _, run_u = graphc_mlp(gc, threads, params, batch, fuse=False)
        y_g = run_g(X)
        notes.append(f"MLP batch {batch}: fused and unfused outputs bit-identical: {np.array_equal(y_g, run_u(X))}")
        h = X
        for i, (w, b) in enumerate(params):  # float64 numpy reference
            h = h.astype(np.float64) @ w + b
            if i < len(params) - 1:
                h = np.maximum(h, 0)
        checks = [f"numpy {np.allclose(y_g, h, rtol=RTOL, atol=ATOL)}"]
        for name, (fn, _) in peers.items():
            if fn is not None:
                checks.append(f"{name} {np.allclose(y_g, fn(X), rtol=RTOL, atol=ATOL)}")
        notes.append(f"MLP batch {batch}: graphc output allclose(rtol={RTOL}, atol={ATOL}) vs " + ", ".join(checks))
        live = [(name, fn) for name, (fn, _) in peers.items() if fn is not None]
        fns = [lambda r=run_g, x=X: r(x), lambda r=run_u, x=X: r(x)] + [(lambda f=fn, x=X: f(x)) for _, fn in live]
        times = bu.median_times(fns, rep_mlp, min_time=min_time)
        t_g, t_u, peer_t = times[0], times[1], dict(zip([name for name, _ in live], times[2:]))
        for name, (fn, why) in peers.items():
            is_target = targets[batch] == name
            if fn is None:
                rows.append([f"MLP 784-1024-1024-10 b={batch}", "latency", bu.fmt_ms(t_g), bu.fmt_ms(t_u), name, why,
                             "-", "<= 1.00x" if is_target else "", "-" if is_target else ""])
                continue
            t_p = peer_t[name]
            status = ""
            if is_target:
                status = "met" if t_g / t_p <= 1.0 else "MISSED"
            rows.append([f"MLP 784-1024-1024-10 b={batch}", "latency", bu.fmt_ms(t_g), bu.fmt_ms(t_u), name,
                         bu.fmt_ms(t_p), bu.fmt_ratio(t_g, t_p), "<= 1.00x" if is_target else "", status])

    # run() overhead ----------------------------------------------------------------------
    over_rows, note = run_overhead_rows(gc, np, threads, rep_mlp, min_time)
    rows += over_rows
    notes.append(note)

    bu.print_table(f"graphc runtime vs peers, threads={threads} (ratio: sgemm = graphc/peer GFLOP/s, "
                   "MLP = graphc/peer time)",
                   ["case", "metric", "graphc", "no fusion", "peer", "peer value", "ratio", "target", "status"], rows)
    print()
    for note in notes:
        print(note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
