"""Benchmark of an imported ONNX model: graphc (gc.onnx.load -> compile -> Session.run) vs ONNX
Runtime on the same file, with the same threads.

The model is ResNet-18-shaped (torchvision's resnet18 layout: 7x7/2 stem conv, 3x3/2 max pool,
four stages of two BasicBlocks with 64/128/256/512 channels, 1x1/2 downsample convs, global
average pooling, a 1000-way Gemm), built with onnx.helper with He-initialised random weights
(no torch needed).  Batch norm is folded into the convolutions' biases, as torch.onnx.export
writes an eval-mode model (see tests/data/onnx/manifest.json: the exported ResNet has no
BatchNormalization).  The batch dim is symbolic ("N"), so one file serves every batch size.

For each batch size (default 1 and 8, input 3x224x224): graphc imports the file
(``trainable=False``), compiles an inference plan for that batch and runs it in a Session with
``--threads`` threads; ONNX Runtime runs the same file (CPUExecutionProvider, all graph
optimizations, intra_op_num_threads = the same threads, inter_op 1, sequential).  Before timing,
graphc's logits are checked against ONNX Runtime's.  Each framework's call is timed alone,
in alternating blocks (tools/_bench_util.median_times), and the medians are reported with
graphc/ORT (< 1.0x: graphc is faster; the target is <= 1.0x).

Run:  PYTHONPATH=. python tools/bench_onnx.py [--threads N] [--batches 1,8] [--repeat R] [--quick]
      [--model PATH]  (keep the generated model there; an existing file there is reused)
      [--size S]      (S x S images instead of 224 x 224: tests/test_bench_onnx.py's smoke run)
"""
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import _bench_util as bu  # noqa: E402

STAGES = ((64, 1), (128, 2), (256, 2), (512, 2))  # (channels, stride of the first block)
CLASSES = 1000
IMAGE = (3, 224, 224)
INPUT, OUTPUT = "input", "logits"


def resnet18_onnx(np, seed=0, opset=17, size=IMAGE[1]):
    """A ResNet-18-shaped onnx.ModelProto: input ``input`` (N, 3, size, size) float32 (size 224
    by default), output ``logits`` (N, 1000); convolutions with biases (batch norm folded),
    random weights."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(seed)
    nodes, inits = [], []

    def param(name, array):
        inits.append(numpy_helper.from_array(np.ascontiguousarray(array, dtype=np.float32), name))
        return name

    def conv(x, name, cin, cout, k, stride, relu):
        # He-normal weights keep the activations O(1) through 18 layers; small random biases
        # stand in for a folded batch norm's shift.
        w = rng.standard_normal((cout, cin, k, k)) * np.sqrt(2.0 / (cin * k * k))
        b = 0.01 * rng.standard_normal(cout)
        out = f"{name}_out"
        nodes.append(helper.make_node("Conv", [x, param(f"{name}.weight", w), param(f"{name}.bias", b)], [out],
                                      name=name, kernel_shape=[k, k], strides=[stride, stride],
                                      pads=[k // 2] * 4))
        if not relu:
            return out
        nodes.append(helper.make_node("Relu", [out], [f"{name}_relu"], name=f"{name}_relu"))
        return f"{name}_relu"

    x = conv(INPUT, "conv1", IMAGE[0], 64, 7, 2, relu=True)
    nodes.append(helper.make_node("MaxPool", [x], ["maxpool"], name="maxpool", kernel_shape=[3, 3],
                                  strides=[2, 2], pads=[1, 1, 1, 1]))
    x, cin = "maxpool", 64
    for stage, (cout, stride) in enumerate(STAGES, 1):
        for block in range(2):
            s = stride if block == 0 else 1
            name = f"layer{stage}.{block}"
            h = conv(x, f"{name}.conv1", cin, cout, 3, s, relu=True)
            h = conv(h, f"{name}.conv2", cout, cout, 3, 1, relu=False)
            shortcut = x if s == 1 and cin == cout else conv(x, f"{name}.downsample", cin, cout, 1, s, relu=False)
            nodes.append(helper.make_node("Add", [h, shortcut], [f"{name}_add"], name=f"{name}_add"))
            nodes.append(helper.make_node("Relu", [f"{name}_add"], [f"{name}_out"], name=f"{name}_relu"))
            x, cin = f"{name}_out", cout
    nodes.append(helper.make_node("GlobalAveragePool", [x], ["pool"], name="avgpool"))
    nodes.append(helper.make_node("Flatten", ["pool"], ["flat"], name="flatten", axis=1))
    w = rng.uniform(-1, 1, (CLASSES, cin)) / np.sqrt(cin)
    b = rng.uniform(-1, 1, CLASSES) / np.sqrt(cin)
    nodes.append(helper.make_node("Gemm", ["flat", param("fc.weight", w), param("fc.bias", b)], [OUTPUT],
                                  name="fc", transB=1))
    graph = helper.make_graph(
        nodes, "resnet18", [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["N", IMAGE[0], size, size])],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["N", CLASSES])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="graphc bench_onnx")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def ort_session(ort, path, threads):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def graphc_session(gc, path, shape, threads):
    """(Session, input name, output name, import+compile seconds) for input ``shape``."""
    t0 = time.perf_counter()
    graph = gc.onnx.load(path, trainable=False)
    names = getattr(graph, "onnx_names", {})
    x, y = names.get(INPUT, INPUT), names.get(OUTPUT, OUTPUT)
    plan = gc.compile(graph, shapes={x: shape}, fetches=[y], train=False)
    return gc.Session(plan, threads=threads), x, y, time.perf_counter() - t0


def batch_list(text):
    import argparse
    try:
        sizes = [int(t) for t in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--batches takes sizes separated by commas, got {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"--batches: every size must be >= 1, got {text!r}")
    return sizes


def main(argv=None):
    def extra(parser):
        parser.add_argument("--batches", type=batch_list, default=[1, 8],
                            help="batch sizes, comma-separated (default 1,8)")
        parser.add_argument("--model", default=None, help="where to write (or reuse) the ONNX model")
        parser.add_argument("--size", type=int, default=IMAGE[1],
                            help="image height and width (default %(default)s; smaller: a smoke test)")
    args = bu.parse_args(__doc__.splitlines()[0], extra, argv)
    if args.size < 32:
        raise SystemExit(f"--size must be >= 32 (five stride-2 stages), got {args.size}")
    bu.pin_threads(args.threads)
    import numpy as np

    import graphc as gc
    ort, ort_why = bu.try_import("onnxruntime")
    repeat = args.repeat or (3 if args.quick else 10)

    tmp = None
    path = args.model
    if path is None:
        tmp = tempfile.TemporaryDirectory(prefix="graphc-bench-onnx-")
        path = os.path.join(tmp.name, "resnet18.onnx")
    image = (IMAGE[0], args.size, args.size)
    if not os.path.exists(path):
        import onnx
        onnx.save(resnet18_onnx(np, size=args.size), path)

    print(f"machine: {bu.machine()}")
    print(f"graphc {gc.__version__}, numpy {np.__version__}, "
          + (f"onnxruntime {ort.__version__}" if ort else f"onnxruntime {ort_why}"))
    print(f"model: ResNet-18-shaped ONNX ({os.path.getsize(path) / 2**20:.1f} MiB, random weights, BN folded), "
          f"input N x {'x'.join(map(str, image))}; threads {args.threads} for both; "
          f"medians of {repeat} calls; {bu.SAMPLING}")
    print(bu.load_note())
    rows, notes = [], []
    rng = np.random.default_rng(1)
    for batch in args.batches:
        X = rng.standard_normal((batch, *image), dtype=np.float32)
        sess, x_name, y_name, t_prep = graphc_session(gc, path, X.shape, args.threads)
        ours_out = sess.run({x_name: X})[y_name]
        fns = [lambda sess=sess, feeds={x_name: X}: sess.run(feeds)]
        if ort is not None:
            osess = ort_session(ort, path, args.threads)
            ref = osess.run([OUTPUT], {INPUT: X})[0]
            # Same model, float32 both ways: the sums over up to 4608 products per output differ
            # only in their rounding order.
            err = float(np.max(np.abs(ours_out - ref)) / max(1.0, float(np.max(np.abs(ref)))))
            if not np.allclose(ours_out, ref, rtol=1e-3, atol=1e-3 * float(np.max(np.abs(ref)))):
                raise SystemExit(f"batch {batch}: graphc's logits differ from ONNX Runtime's (max rel err {err:.2e})")
            notes.append(f"batch {batch}: graphc import+compile {t_prep:.2f} s; logits vs ORT: max |diff| / max|ref| "
                         f"= {err:.1e}")
            fns.append(lambda osess=osess, feeds={INPUT: X}: osess.run([OUTPUT], feeds))
        times = bu.median_times(fns, repeat)
        t_ours, t_ort = times[0], (times[1] if len(times) > 1 else None)
        ratio = bu.fmt_ratio(t_ours, t_ort)
        target = "-" if t_ort is None else ("yes" if t_ours <= t_ort else "no")
        rows.append([f"ResNet-18 batch {batch}", str(args.threads), bu.fmt_ms(t_ours), bu.fmt_ms(t_ort),
                     ratio, target])
    print()
    bu.print_table("imported ONNX ResNet-18: median inference latency per call",
                   ["case", "threads", "graphc", "ONNX Runtime", "graphc/ORT", "target <= 1.0x"], rows)
    print()
    for note in notes:
        print(note)
    print(bu.load_note().replace("at start", "at end"))
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
