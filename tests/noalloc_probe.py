"""Worker of tests/test_noalloc.py: runs plans under the allocation-counting shim
(tests/noalloc_shim.c, LD_PRELOAD) and prints one JSON line per case:
``{"case": ..., "first": n, "later": n, "first_bytes": b, "later_bytes": b}`` — the heap
allocations the C++ run made (GIL released: executor, kernels, worker pool, BLAS) during the
first run after load and during the runs after it.

``python tests/noalloc_probe.py THREADS [CASE...]`` (the shim must be preloaded): a CASE is a
case's name (``model/cnn``) or a prefix ending in ``/`` (``model/``, ``op/topk/``).

Cases: every registry op on each of its examples (one node, as tests/test_kernels.py builds
it), the same on examples scaled up so that the parallel paths run, and whole models compiled
with the default passes (fusion on): MLP training with each optimizer (and clipping), a CNN,
an LSTM and a GRU, a transformer encoder layer, inference at batch 1 and 128, float64 products.
"""

import ctypes
import json
import sys

import numpy as np

import graphc as gc
from graphc import registry
from graphc.session import Session

LATER_RUNS = 3


def _shim():
    lib = ctypes.PyDLL(None)  # the preloaded shim's symbols are global; PyDLL keeps the GIL
    if not hasattr(lib, "noalloc_loaded"):
        sys.exit("noalloc_probe.py: the shim is not preloaded (LD_PRELOAD=.../noalloc_shim.so)")
    lib.noalloc_arm.argtypes = [ctypes.c_void_p]
    lib.noalloc_count.restype = ctypes.c_long
    lib.noalloc_bytes.restype = ctypes.c_long
    return lib


SHIM = None
GIL_CHECK = ctypes.cast(ctypes.pythonapi.PyGILState_Check, ctypes.c_void_p).value


def _measure(run):
    SHIM.noalloc_arm(GIL_CHECK)
    try:
        run()
    finally:
        SHIM.noalloc_disarm()
    return SHIM.noalloc_count(), SHIM.noalloc_bytes()


def probe(name, plan, feeds, threads):
    """Counts of the first run and of the LATER_RUNS runs after it, through the executor."""
    sess = Session(plan, threads=threads)
    entry = sess._first
    arrays = entry._feed_arrays(feeds)
    outs = [np.empty(shape, dtype) for shape, dtype in entry._fetch_specs]
    ex = entry._exec

    def once():
        try:
            ex.run(arrays, outs)
        except RuntimeError:
            if not name.startswith("selftest/"):
                raise

    first, first_b = _measure(once)
    later, later_b = 0, 0
    for _ in range(LATER_RUNS):
        n, b = _measure(once)
        later += n
        later_b += b
    return {"case": name, "first": first, "later": later, "first_bytes": first_b, "later_bytes": later_b}


# -- cases -------------------------------------------------------------------------------------

def _scaled(x):
    """An example input grown along its leading axis (>= 4096 elements), same dtype and
    value range: the kernels' parallel paths start at a few thousand elements."""
    x = np.asarray(x)
    if x.ndim == 0 or x.size == 0 or x.size >= 4096:
        return x
    reps = -(-4096 // x.size)
    return np.concatenate([x] * reps, axis=0)


def op_cases(scaled):
    from single_op import single_op_graph
    rng = np.random.default_rng(0)
    for op in registry.all_ops():
        for k, ex in enumerate(op.examples(rng)):
            if scaled:
                inputs = [_scaled(x) for x in ex.inputs]
                try:
                    op.evaluate(inputs, ex.attrs)  # the op accepts the grown shapes
                except Exception:  # noqa: BLE001 (shapes the op refuses once grown: not a case)
                    continue
                if all(np.shape(a) == np.shape(b) for a, b in zip(inputs, ex.inputs)):
                    continue
                ex = registry.Example(inputs, ex.attrs, ex.grad, ex.note)
            try:
                g, _, outs, shapes, feeds = single_op_graph(op, ex)
                plan = gc.compile(g, shapes=shapes, fetches=[t.name for t in outs])
            except Exception:  # noqa: BLE001 (grown inputs the graph refuses: not a case)
                if scaled:
                    continue
                raise
            yield f"{'op_scaled' if scaled else 'op'}/{op.name}/{k}", plan, feeds


def _mlp(opt, batch, hidden=256, train=True):
    rng = np.random.default_rng(1)
    with gc.Graph() as g:
        x = gc.placeholder("x", (batch, 784))
        y = gc.placeholder("y", (batch,), dtype="int64")
        model = gc.nn.Sequential(gc.nn.Linear(784, hidden), gc.nn.ReLU(), gc.nn.Linear(hidden, hidden),
                                 gc.nn.ReLU(), gc.nn.Linear(hidden, 10))
        logits = model(x)
        loss = gc.softmax_cross_entropy(logits, y)
        if train:
            opt.minimize(loss)
    feeds = {"x": rng.standard_normal((batch, 784)).astype(np.float32), "y": rng.integers(0, 10, batch)}
    if not train:
        del feeds["y"]
        return gc.compile(g, shapes={"x": (batch, 784)}, fetches=[logits.name]), feeds
    return gc.compile(g, shapes={k: v.shape for k, v in feeds.items()}), feeds


def _cnn():
    rng = np.random.default_rng(2)
    with gc.Graph() as g:
        x = gc.placeholder("x", (8, 3, 16, 16))
        y = gc.placeholder("y", (8,), dtype="int64")
        model = gc.nn.Sequential(
            gc.nn.Conv2d(3, 16, 3, padding=1, bias=False), gc.nn.BatchNorm2d(16), gc.nn.ReLU(),
            gc.nn.MaxPool2d(2), gc.nn.ResidualBlock(16, 32, stride=2), gc.nn.Dropout(0.1),
            gc.nn.AvgPool2d(2), gc.nn.AdaptiveAvgPool2d(1), gc.nn.Flatten(), gc.nn.Linear(32, 10))
        loss = gc.softmax_cross_entropy(model(x), y)
        gc.optim.SGD(lr=0.05, momentum=0.9).minimize(loss)
    feeds = {"x": rng.standard_normal((8, 3, 16, 16)).astype(np.float32), "y": rng.integers(0, 10, 8)}
    return gc.compile(g, shapes={k: v.shape for k, v in feeds.items()}), feeds


def _rnn(kind):
    rng = np.random.default_rng(3)
    T, B, F, H = 12, 4, 16, 32
    with gc.Graph() as g:
        x = gc.placeholder("x", (T, B, F))
        layer = (gc.nn.LSTM if kind == "lstm" else gc.nn.GRU)(F, H, num_layers=2)
        out = layer(x)
        out = out[0] if isinstance(out, (tuple, list)) else out
        loss = gc.mean(out * out)
        gc.optim.Adam(lr=1e-3, clip_global_norm=1.0).minimize(loss)
    feeds = {"x": rng.standard_normal((T, B, F)).astype(np.float32)}
    return gc.compile(g, shapes={"x": (T, B, F)}), feeds


def _transformer():
    rng = np.random.default_rng(4)
    S, B, E = 16, 4, 32
    with gc.Graph() as g:
        ids = gc.placeholder("ids", (S, B), dtype="int64")
        emb = gc.nn.Embedding(50, E, name="emb")
        layer = gc.nn.TransformerEncoderLayer(E, 4, dim_feedforward=64, dropout=0.1, activation="gelu", name="enc")
        h = layer(emb(ids))
        logits = gc.nn.Linear(E, 50, name="head")(h)
        flat = gc.reshape(logits, (S * B, 50))
        loss = gc.softmax_cross_entropy(flat, gc.reshape(ids, (S * B,)))
        gc.optim.AdamW(lr=1e-3, clip_global_norm=0.5).minimize(loss)
    feeds = {"ids": rng.integers(0, 50, (S, B))}
    return gc.compile(g, shapes={"ids": (S, B)}), feeds


def _float64_products():
    rng = np.random.default_rng(5)
    with gc.Graph() as g:
        a = gc.placeholder("a", (64, 96), dtype="float64")
        w = gc.variable("w", (96, 128), dtype="float64", init=gc.init.xavier_uniform(seed=1))
        v = gc.placeholder("v", (1, 64), dtype="float64")
        y = a @ w
        z = v @ y
    feeds = {"a": rng.standard_normal((64, 96)), "v": rng.standard_normal((1, 64))}
    return gc.compile(g, shapes={}, fetches=[y.name, z.name]), feeds


def _topk_gather():
    rng = np.random.default_rng(6)
    with gc.Graph() as g:
        x = gc.placeholder("x", (64, 500))
        vals, idx = gc.topk(x, 10)
        rows = gc.gather(x, gc.placeholder("i", (32,), dtype="int64"))
    feeds = {"x": rng.standard_normal((64, 500)).astype(np.float32), "i": rng.integers(0, 64, 32)}
    return gc.compile(g, shapes={}, fetches=[vals.name, idx.name, rows.name]), feeds


MODELS = {
    "model/mlp_sgd": lambda: _mlp(gc.optim.SGD(lr=0.1), 32),
    "model/mlp_momentum": lambda: _mlp(gc.optim.SGD(lr=0.1, momentum=0.9, nesterov=True), 32),
    "model/mlp_adam": lambda: _mlp(gc.optim.Adam(lr=1e-3), 32),
    "model/mlp_adamw_clip": lambda: _mlp(gc.optim.AdamW(lr=1e-3, clip_global_norm=1.0), 32),
    "model/mlp_infer_b1": lambda: _mlp(None, 1, hidden=1024, train=False),
    "model/mlp_infer_b128": lambda: _mlp(None, 128, hidden=1024, train=False),
    "model/cnn": _cnn,
    "model/lstm": lambda: _rnn("lstm"),
    "model/gru": lambda: _rnn("gru"),
    "model/transformer": _transformer,
    "model/float64": _float64_products,
    "model/topk_gather": _topk_gather,
}


def selected(name, prefixes):
    """A case is selected by its exact name, or by a prefix ending in '/' (a family, an op)."""
    return not prefixes or any(name == p or (p.endswith("/") and name.startswith(p)) for p in prefixes)


def model_cases(prefixes=()):
    for name, build in MODELS.items():
        if selected(name, prefixes):
            yield name, *build()


def selftest_cases():
    """A run that must allocate: a gather whose index is out of range fails inside the run, and
    its exception (a std::runtime_error with a message) is heap memory the counter must see."""
    with gc.Graph() as g:
        w = gc.placeholder("w", (4, 3))
        i = gc.placeholder("i", (2,), dtype="int64")
        y = gc.gather(w, i)
    feeds = {"w": np.ones((4, 3), np.float32), "i": np.array([1, 7])}
    yield "selftest/bad_index", gc.compile(g, shapes={}, fetches=[y.name]), feeds


def main(argv):
    global SHIM
    SHIM = _shim()
    threads = int(argv[1])
    prefixes = argv[2:]
    families = {"selftest/": selftest_cases, "model/": lambda: model_cases(prefixes),
                "op/": lambda: op_cases(scaled=False),
                "op_scaled/": lambda: op_cases(scaled=True)}
    for family, cases in families.items():
        if prefixes and not any(p.startswith(family) or family.startswith(p) for p in prefixes):
            continue
        for name, plan, feeds in cases():
            if not selected(name, prefixes):
                continue
            print(json.dumps(probe(name, plan, feeds, threads)), flush=True)


if __name__ == "__main__":
    sys.path.insert(0, __import__("os").path.dirname(__file__))
    main(sys.argv)
