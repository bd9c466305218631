"""The AOT runtime (runtime/aot/aot_runtime.{h,cc}) through a hand-written "generated" artifact.

tests/aot_rt_driver.cc holds static plan tables for three entries (predict, train, lookup), the
straight-line entry functions the emitter would write and a C API (prefix rt_).  It is compiled
here with the runtime sources an artifact ships (same flags) into a shared
library driven through ctypes.  The same plans are written as graphc Plan messages and run in a
gc.Session: the artifact must compute the same bits.

The runtime objects are those of an artifact named "aotm" (-Dgraphc=graphc_aotm), put where the
emitted Makefile puts them, $GRAPHC_AOT_OBJDIR/aotm/openblas/graphc/<path>.o, so that every AOT
test of a session compiles the kernels once; an object is rebuilt when a runtime source is newer.
Without GRAPHC_AOT_OBJDIR they go to a temporary folder.
"""

import ctypes
import hashlib
import os
import shutil
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

import graphc as gc
from graphc import checkpoint
from graphc._proto import graphc_pb2 as pb
from graphc.aot import build_files, sources
from graphc.aot import weights as weights_mod

ROOT = Path(__file__).resolve().parent.parent
RUNTIME_DIR = ROOT / "runtime"

# Status codes (runtime/aot/tables.h).
OK, ARGUMENT, ALIGNMENT, SIZE, WEIGHTS, NOT_FOUND, IO, CHECKPOINT, RUNTIME, NO_MEMORY, STATE = range(11)
PREDICT, TRAIN, LOOKUP = 0, 1, 2
F32, I64 = 1, 4
ARENA, PERSISTENT, CONSTANT, VIEW = 0, 1, 2, 3
VARIABLE, OPTIMIZER_STATE, CONST_KIND = 0, 1, 2
# The artifact name whose runtime objects the AOT tests share, and its flags
# (graphc/aot/build_files.py), the namespace renamed as `make` does.
ARTIFACT = "aotm"
FLAGS = build_files.KERNEL_FLAGS.split() + [f"-Dgraphc=graphc_{ARTIFACT}"]
LR, MOMENTUM = 0.1, 0.9


# ---- the model: initial values, and the plans as graphc Plan messages ------------------------

def initial_values():
    rng = np.random.default_rng(14)
    return {
        "w": (rng.standard_normal((128, 128)) * 0.1).astype(np.float32),
        "b": rng.standard_normal(128).astype(np.float32),
        "w/momentum": np.zeros((128, 128), np.float32),
        "scale": rng.uniform(0.5, 1.5, 128).astype(np.float32),
    }


def weight_tensors(init):
    """(name, kind, dtype, dims, bytes) in table order, for graphc.aot.weights."""
    return [("w", VARIABLE, F32, (128, 128), init["w"].tobytes()),
            ("b", VARIABLE, F32, (128,), init["b"].tobytes()),
            ("w/momentum", OPTIMIZER_STATE, F32, (128, 128), None),
            ("scale", CONST_KIND, F32, (128,), init["scale"].tobytes())]


PLAN_SHA256 = hashlib.sha256(b"tests/aot_rt_driver.cc: the rt model").hexdigest()

# The entries exactly as the driver's tables spell them: values (name, dtype, storage, offset,
# index, alias_of, dims), steps (op, node, inputs, outputs, attrs), feeds, fetches, arena bytes.
ENTRIES = {
    "predict": dict(
        values=[("x", F32, ARENA, 0, 0, 0, (32, 128)), ("w", F32, PERSISTENT, 0, 0, 0, (128, 128)),
                ("b", F32, PERSISTENT, 0, 1, 0, (128,)), ("scale", F32, CONSTANT, 0, 0, 0, (128,)),
                ("xw", F32, ARENA, 16384, 0, 0, (32, 128)), ("y", F32, ARENA, 32768, 0, 0, (32, 128)),
                ("out", F32, ARENA, 49152, 0, 0, (32, 128)), ("out_flat", F32, VIEW, 0, 0, 6, (4096,))],
        steps=[("matmul", "dense/matmul", [0, 1], [4], {"transpose_a": False, "transpose_b": False}),
               ("add", "dense/add", [4, 2], [5], {}),
               ("mul", "scaled", [5, 3], [6], {})],
        feeds=[0], fetches=[6, 7], arena=65536),
    "train": dict(
        values=[("x", F32, ARENA, 0, 0, 0, (32, 128)), ("g", F32, ARENA, 16384, 0, 0, (128, 128)),
                ("w", F32, PERSISTENT, 0, 0, 0, (128, 128)), ("w/momentum", F32, PERSISTENT, 0, 2, 0, (128, 128)),
                ("y0", F32, ARENA, 81920, 0, 0, (32, 128)), ("y1", F32, ARENA, 98304, 0, 0, (32, 128)),
                ("update/w:0", F32, PERSISTENT, 0, 0, 0, (128, 128)),
                ("update/w:1", F32, PERSISTENT, 0, 2, 0, (128, 128))],
        steps=[("matmul", "before", [0, 2], [4], {"transpose_a": False, "transpose_b": False}),
               ("sgd_momentum_update", "update/w", [2, 1, 3], [6, 7],
                {"lr": LR, "momentum": MOMENTUM, "nesterov": False, "weight_decay": 0.0}),
               ("matmul", "after", [0, 6], [5], {"transpose_a": False, "transpose_b": False})],
        feeds=[0, 1], fetches=[4, 5], arena=114688),
    "lookup": dict(
        values=[("ids", I64, ARENA, 0, 0, 0, (4,)), ("w", F32, PERSISTENT, 0, 0, 0, (128, 128)),
                ("rows", F32, ARENA, 64, 0, 0, (4, 128)), ("nothing", F32, ARENA, 2112, 0, 0, (0,))],
        steps=[("embedding", "embed", [0, 1], [2], {})],
        feeds=[0, 3], fetches=[2], arena=2112),
}
ITEM = {F32: 4, I64: 8}
NP_DTYPE = {F32: np.float32, I64: np.int64}


def plan_message(entry, init):
    """The entry's plan as a graphc Plan message (what the compiler would have written)."""
    e = ENTRIES[entry]
    p = pb.Plan(format_version=1, min_consumer_version=1, producer_name="test_aot_runtime", target="cpu",
                arena_bytes=e["arena"])
    for name, dtype, storage, offset, index, alias_of, dims in e["values"]:
        p.values.add(name=name, dtype=dtype, dims=dims, storage=storage, offset=offset,
                     nbytes=ITEM[dtype] * int(np.prod(dims)), index=index, alias_of=alias_of)
    last_use = {}
    for s, (_, _, ins, outs, _) in enumerate(e["steps"]):
        for i in ins + outs:
            last_use[i] = s
    for s, (op, node, ins, outs, attrs) in enumerate(e["steps"]):
        st = p.steps.add(op=op, node=node, inputs=ins, outputs=outs)
        for key, val in attrs.items():
            if isinstance(val, bool):
                st.attrs[key].b = val
            elif isinstance(val, float):
                st.attrs[key].f = val
            elif isinstance(val, list):
                st.attrs[key].ints.values.extend(val)
        st.frees.extend(i for i in sorted(last_use) if last_use[i] == s and e["values"][i][2] == ARENA
                        and i not in e["fetches"] and i not in e["feeds"])
    p.feeds.extend(e["feeds"])
    p.fetches.extend(e["fetches"])
    for name, kind in (("w", VARIABLE), ("b", VARIABLE), ("w/momentum", OPTIMIZER_STATE)):
        a = init[name]
        p.persistent.add(name=name, dtype=F32, dims=a.shape, trainable=kind == VARIABLE,
                         init=pb.Tensor(dtype=F32, dims=a.shape, raw_data=a.tobytes()))
    p.constants.add(dtype=F32, dims=(128,), raw_data=init["scale"].tobytes())
    return gc.Plan(p)


# ---- building the driver ---------------------------------------------------------------------

def _compiler():
    cxx = os.environ.get("CXX", "g++").split()
    if shutil.which("ccache") and "ccache" not in cxx[0]:
        cxx = ["ccache"] + cxx
    return cxx


def _compile(cxx, src, obj, extra):
    cmd = cxx + FLAGS + ["-I", str(RUNTIME_DIR)] + extra + ["-c", str(src), "-o", str(obj)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)}\n{r.stderr[-4000:]}")
    return obj


OPS = sorted({step[0] for e in ENTRIES.values() for step in e["steps"]})


def _runtime_sources():
    """The .cc files an artifact running OPS ships (graphc.aot.sources): the registry, the AOT
    runtime and the kernel files with their companions."""
    files = sources.select_sources(OPS)
    assert "aot/aot_runtime.cc" in files and "cpu/thread_pool.h" in files
    return [RUNTIME_DIR / f for f in files if f.endswith(".cc")]


def _object_dir(tmp):
    """The Makefile's $(OBJDIR)/$(NAME)/$(BLAS) for GRAPHC_AOT_OBJDIR, else a folder under tmp."""
    shared = os.environ.get("GRAPHC_AOT_OBJDIR")
    return (Path(shared) if shared else tmp / "obj") / ARTIFACT / "openblas"


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    inc, libdir, lib = build_files.openblas_defaults()
    assert libdir, "scipy-openblas32 (graphc's own BLAS, the artifact's default) is not installed"
    out = tmp_path_factory.mktemp("aot_rt")
    objdir = _object_dir(out)
    newest = max(p.stat().st_mtime for p in RUNTIME_DIR.rglob("*") if p.suffix in (".h", ".cc", ".inc"))

    def runtime_object(src):
        obj = objdir / "graphc" / src.relative_to(RUNTIME_DIR).with_suffix(".o")
        if obj.exists() and obj.stat().st_mtime > newest:
            return obj
        obj.parent.mkdir(parents=True, exist_ok=True)
        tmp = obj.with_name(f"{obj.name}.{os.getpid()}.tmp")
        _compile(cxx, src, tmp, ["-I", inc])
        os.replace(tmp, obj)
        return obj

    init = initial_values()
    image = weights_mod.weights_image(PLAN_SHA256, weight_tensors(init))
    (out / "rt.weights").write_bytes(image.data)
    defines = [f"-DRT_PLAN_SHA256=\"{PLAN_SHA256}\""]
    for macro, rec in zip(("W", "B", "M", "SCALE"), image.layout.records):
        defines.append(f"-DRT_SHA256_{macro}=\"{rec.sha256}\"")
    cxx = _compiler()
    with ThreadPoolExecutor(max_workers=2) as pool:
        objs = list(pool.map(runtime_object, _runtime_sources()))
        plain = pool.submit(_compile, cxx, ROOT / "tests" / "aot_rt_driver.cc", out / "driver.o", defines)
        embed = pool.submit(_compile, cxx, ROOT / "tests" / "aot_rt_driver.cc", out / "driver_embed.o",
                            defines + [f"-DRT_EMBED=\"{out / 'rt.weights'}\""])
        drivers = {"plain": plain.result(), "embed": embed.result()}
    libs = {}
    for kind, driver in drivers.items():
        so = out / f"librt_{kind}.so"
        cmd = cxx + ["-shared", "-pthread", "-o", str(so), str(driver)] + [str(o) for o in objs] + [
            "-L", libdir, "-l", lib, f"-Wl,-rpath,{libdir}",
            "-Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=posix_memalign,--wrap=aligned_alloc"]
        r = subprocess.run(cmd, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr[-4000:]
        libs[kind] = _load(so)
    return dict(libs=libs, dir=out, init=init, image=image, weights=out / "rt.weights")


def _load(path):
    lib = ctypes.CDLL(str(path))
    vp, sz, i, cp = ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_char_p
    sig = {
        "rt_create": (i, [ctypes.POINTER(vp), vp, sz, vp, sz, vp, sz, i]),
        "rt_create_bad": (i, [i, ctypes.POINTER(vp), vp, sz, vp, sz, vp, sz, i]),
        "rt_destroy": (None, [vp]),
        "rt_last_error": (cp, [vp]),
        "rt_load_weights": (i, [vp, cp]),
        "rt_load_weights_from_memory": (i, [vp, vp, sz]),
        "rt_load_embedded_weights": (i, [vp]),
        "rt_run": (i, [vp, i, vp, vp]),
        "rt_read_variable": (i, [vp, cp, vp, sz]),
        "rt_write_variable": (i, [vp, cp, vp, sz]),
        "rt_variable_info": (i, [vp, i, ctypes.POINTER(cp), ctypes.POINTER(i), ctypes.POINTER(i),
                                 ctypes.POINTER(ctypes.POINTER(ctypes.c_int64)), ctypes.POINTER(sz)]),
        "rt_save_checkpoint": (i, [vp, cp]),
        "rt_load_checkpoint": (i, [vp, cp]),
        "rt_sizes": (None, [ctypes.POINTER(ctypes.c_uint64)]),
        "rt_next_version": (ctypes.c_uint64, []),
        "rt_allocations": (ctypes.c_long, []),
    }
    for name, (res, args) in sig.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = res, args
    return lib


def aligned(nbytes, offset=0):
    """A zeroed numpy byte buffer whose data starts `offset` bytes past a 64-byte boundary."""
    raw = np.zeros(nbytes + 128, np.uint8)
    start = (-raw.ctypes.data) % 64 + offset
    return raw[start:start + nbytes]


def sizes(lib):
    out = (ctypes.c_uint64 * 4)()
    lib.rt_sizes(out)
    return list(out)


class Ctx:
    """A context over freshly allocated, aligned memory."""

    def __init__(self, lib, threads=1, load=True):
        self.lib = lib
        arena, state, consts, _ = sizes(lib)
        self.arena, self.state, self.consts = aligned(arena), aligned(state), aligned(consts)
        h = ctypes.c_void_p()
        st = lib.rt_create(ctypes.byref(h), self.arena.ctypes.data, arena, self.state.ctypes.data, state,
                           self.consts.ctypes.data, consts, threads)
        assert st == OK, lib.rt_last_error(None)
        self.h = h
        if load:
            assert self.call("rt_load_weights", str(WEIGHTS_PATH[0]).encode()) == OK, self.error()

    def call(self, name, *args):
        return getattr(self.lib, name)(self.h, *args)

    def error(self):
        return self.lib.rt_last_error(self.h).decode()

    def run(self, entry, feeds, fetch_shapes=None, fetches=True):
        e = ENTRIES[list(ENTRIES)[entry]]
        if fetch_shapes is None:
            fetch_shapes = [(e["values"][i][6], NP_DTYPE[e["values"][i][1]]) for i in e["fetches"]]
        outs = [np.full(shape, np.nan if dtype == np.float32 else -1, dtype) for shape, dtype in fetch_shapes]
        feed_arr = (ctypes.c_void_p * max(1, len(feeds)))(*[None if f is None else f.ctypes.data for f in feeds])
        fetch_arr = (ctypes.c_void_p * len(outs))(*[o.ctypes.data for o in outs]) if fetches else None
        st = self.lib.rt_run(self.h, entry, feed_arr, fetch_arr)
        return st, outs

    def read(self, name, shape=(128, 128), dtype=np.float32):
        out = np.empty(shape, dtype)
        st = self.call("rt_read_variable", name.encode(), out.ctypes.data, out.nbytes)
        assert st == OK, self.error()
        return out

    def close(self):
        if self.h:
            self.lib.rt_destroy(self.h)
            self.h = None


WEIGHTS_PATH = [None]


@pytest.fixture
def lib(build):
    WEIGHTS_PATH[0] = build["weights"]
    return build["libs"]["plain"]


@pytest.fixture
def ctx(lib):
    c = Ctx(lib)
    yield c
    c.close()


def feeds_predict(seed=0):
    return np.random.default_rng(seed).standard_normal((32, 128)).astype(np.float32)


def feeds_train(seed=1):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((32, 128)).astype(np.float32), (rng.standard_normal((128, 128)) * 0.01).astype(
        np.float32)


def matmul_tolerance(a, b):
    """|float32 a @ b - exact| bound: K rounding steps of the float32 sums."""
    k = a.shape[-1]
    return k * np.finfo(np.float32).eps * (np.abs(a.astype(np.float64)) @ np.abs(b.astype(np.float64)))


# ---- results ----------------------------------------------------------------------------------

def test_tables_agree_with_the_weights_layout(build, lib):
    arena, state, consts, n = sizes(lib)
    layout = build["image"].layout
    assert (state, consts, n) == (layout.state_bytes, layout.constant_bytes, 3)
    assert arena == max(e["arena"] for e in ENTRIES.values())
    # The driver's TensorTable offsets are IO's layout (w, b, w/momentum in state; scale in constants).
    assert [r.offset for r in layout.records] == [0, 65536, 66048, 0]


@pytest.mark.parametrize("threads", [1, 2])
def test_predict_matches_session_bits_and_numpy(build, lib, threads):
    init = build["init"]
    c = Ctx(lib, threads=threads)
    x = feeds_predict()
    st, (out, flat) = c.run(PREDICT, [x])
    assert st == OK, c.error()
    assert c.error() == ""
    exact = (x.astype(np.float64) @ init["w"] + init["b"]) * init["scale"]
    tol = (matmul_tolerance(x, init["w"]) + 3 * np.finfo(np.float32).eps * np.abs(exact)) * np.abs(init["scale"])
    assert np.all(np.abs(out - exact) <= tol + 1e-30)
    np.testing.assert_array_equal(flat, out.reshape(-1))
    sess = gc.Session(plan_message("predict", init), threads=threads)
    ref = sess.run({"x": x})
    assert ref["out"].tobytes() == out.tobytes()
    assert ref["out_flat"].tobytes() == flat.tobytes()
    c.close()


@pytest.mark.parametrize("threads", [1, 2])
def test_training_matches_session_bits(build, lib, threads):
    init = build["init"]
    c = Ctx(lib, threads=threads)
    sess = gc.Session(plan_message("train", init), threads=threads)
    for step in range(3):
        x, g = feeds_train(step)
        st, (y0, y1) = c.run(TRAIN, [x, g])
        assert st == OK, c.error()
        ref = sess.run({"x": x, "g": g})
        assert ref["y0"].tobytes() == y0.tobytes()
        assert ref["y1"].tobytes() == y1.tobytes()
        for name in ("w", "w/momentum"):
            assert sess.get_variable(name).tobytes() == c.read(name).tobytes(), name
    # y1 used the updated w, y0 the old one (the version moved between the two matmuls).
    assert not np.array_equal(y0, y1)
    w = c.read("w")
    np.testing.assert_array_less(np.abs(y1 - x.astype(np.float64) @ w) - matmul_tolerance(x, w), 1e-30)
    c.close()


def test_momentum_update_matches_numpy(build, ctx):
    init = build["init"]
    x, g = feeds_train(0)
    assert ctx.run(TRAIN, [x, g])[0] == OK
    v = np.float32(MOMENTUM) * init["w/momentum"] + g
    w = init["w"] - np.float32(LR) * v
    np.testing.assert_array_equal(ctx.read("w/momentum"), v)
    np.testing.assert_array_equal(ctx.read("w"), w)


def test_write_variable_invalidates_what_kernels_cached(build, ctx):
    """matmul packs the persistent w once (its version unchanged); a write must repack."""
    init = build["init"]
    x = feeds_predict()
    first = ctx.run(PREDICT, [x])[1][0]
    again = ctx.run(PREDICT, [x])[1][0]
    np.testing.assert_array_equal(first, again)
    w2 = (init["w"] * -2).astype(np.float32)
    assert ctx.call("rt_write_variable", b"w", w2.ctypes.data, w2.nbytes) == OK, ctx.error()
    out = ctx.run(PREDICT, [x])[1][0]
    sess = gc.Session(plan_message("predict", init), threads=1)
    sess.set_variable("w", w2)
    assert sess.run({"x": x})["out"].tobytes() == out.tobytes()
    np.testing.assert_array_equal(ctx.read("w"), w2)


def test_lookup_and_zero_byte_feed(build, ctx):
    ids = np.array([3, 0, 127, 3], np.int64)
    st, (rows,) = ctx.run(LOOKUP, [ids, None])  # 'nothing' has 0 bytes: NULL is fine
    assert st == OK, ctx.error()
    np.testing.assert_array_equal(rows, build["init"]["w"][ids])


def test_null_fetches_are_skipped(ctx):
    x = feeds_predict()
    st, _ = ctx.run(PREDICT, [x], fetches=False)
    assert st == OK, ctx.error()
    out = np.full((32, 128), np.nan, np.float32)
    arr = (ctypes.c_void_p * 2)(None, out.ctypes.data)
    feeds = (ctypes.c_void_p * 1)(x.ctypes.data)
    assert ctx.lib.rt_run(ctx.h, PREDICT, feeds, arr) == OK, ctx.error()
    assert not np.isnan(out).any()


# ---- errors -----------------------------------------------------------------------------------

def test_kernel_failure_names_entry_step_node_op_and_where(ctx):
    ids = np.array([1, 200, 2, 3], np.int64)
    st, (rows,) = ctx.run(LOOKUP, [ids, None])
    assert st == RUNTIME
    msg = ctx.error()
    assert msg.startswith("entry 'lookup': step 0 (node 'embed', op 'embedding', at model.py:42): ")
    assert "id 200 at position 1" in msg and "[0, 128)" in msg
    # The context still runs, and a success clears the message.
    st, (rows,) = ctx.run(LOOKUP, [np.array([1, 2, 3, 4], np.int64), None])
    assert st == OK and ctx.error() == ""


@pytest.mark.parametrize("entry", [-1, 3, 1 << 30])
def test_bad_entry_index(ctx, entry):
    feeds = (ctypes.c_void_p * 2)()
    assert ctx.lib.rt_run(ctx.h, entry, feeds, None) == ARGUMENT
    msg = ctx.error()
    assert f"entry index {entry} out of range" in msg
    assert "0 'predict', 1 'train', 2 'lookup'" in msg


def test_null_feeds(ctx):
    assert ctx.lib.rt_run(ctx.h, PREDICT, None, None) == ARGUMENT
    assert ctx.error() == "entry 'predict': feed 0 'x' (16384 bytes) is NULL"
    x, _ = feeds_train()
    st, _ = ctx.run(TRAIN, [x, None])
    assert st == ARGUMENT
    assert ctx.error() == "entry 'train': feed 1 'g' (65536 bytes) is NULL"


def test_null_context(lib):
    assert lib.rt_run(None, PREDICT, None, None) == ARGUMENT
    assert lib.rt_last_error(None) == b"the context is NULL"


def test_weights_must_be_loaded_first(lib):
    c = Ctx(lib, load=False)
    x = feeds_predict()
    st, _ = c.run(PREDICT, [x])
    assert st == STATE
    assert "entry 'predict'" in c.error() and "no weights loaded" in c.error()
    buf = np.empty((128, 128), np.float32)
    assert c.call("rt_read_variable", b"w", buf.ctypes.data, buf.nbytes) == STATE
    assert c.call("rt_write_variable", b"w", buf.ctypes.data, buf.nbytes) == STATE
    assert c.call("rt_save_checkpoint", str(WEIGHTS_PATH[0].parent / "never.npz").encode()) == STATE
    assert not (WEIGHTS_PATH[0].parent / "never.npz").exists()
    c.close()


def test_unknown_variable_and_wrong_size(ctx):
    buf = np.empty((128, 128), np.float32)
    assert ctx.call("rt_read_variable", b"nope", buf.ctypes.data, buf.nbytes) == NOT_FOUND
    assert ctx.error() == "no variable 'nope' in this artifact (it has 3: 'w', 'b', 'w/momentum')"
    long = b"v" * 5000
    assert ctx.call("rt_write_variable", long, buf.ctypes.data, buf.nbytes) == NOT_FOUND
    assert len(ctx.error()) < 600 and "(5000 bytes)" in ctx.error()
    assert ctx.call("rt_read_variable", b"b", buf.ctypes.data, buf.nbytes) == ARGUMENT
    assert ctx.error() == "variable 'b' (float32 (128,)) has 512 bytes, the buffer has 65536"
    assert ctx.call("rt_read_variable", None, buf.ctypes.data, buf.nbytes) == ARGUMENT
    assert ctx.call("rt_read_variable", b"w", None, buf.nbytes) == ARGUMENT


def test_variable_info(ctx):
    name, dtype, ndim = ctypes.c_char_p(), ctypes.c_int(), ctypes.c_int()
    dims, nbytes = ctypes.POINTER(ctypes.c_int64)(), ctypes.c_size_t()
    got = []
    for i in range(3):
        assert ctx.call("rt_variable_info", i, ctypes.byref(name), ctypes.byref(dtype), ctypes.byref(ndim),
                        ctypes.byref(dims), ctypes.byref(nbytes)) == OK
        got.append((name.value.decode(), dtype.value, tuple(dims[k] for k in range(ndim.value)), nbytes.value))
    assert got == [("w", F32, (128, 128), 65536), ("b", F32, (128,), 512), ("w/momentum", F32, (128, 128), 65536)]
    assert ctx.call("rt_variable_info", 3, None, None, None, None, None) == ARGUMENT
    assert ctx.error() == "variable index 3 out of range (this artifact has 3)"
    assert ctx.call("rt_variable_info", 0, None, None, None, None, None) == OK


# ---- context creation -------------------------------------------------------------------------

def _create(lib, arena, state, consts, threads=1, arena_n=None, state_n=None, consts_n=None, bad=None):
    h = ctypes.c_void_p(12345)
    ptr = lambda a: None if a is None else a.ctypes.data  # noqa: E731
    n = lambda a, given: given if given is not None else (0 if a is None else a.nbytes)  # noqa: E731
    args = (ctypes.byref(h), ptr(arena), n(arena, arena_n), ptr(state), n(state, state_n), ptr(consts),
            n(consts, consts_n), threads)
    st = lib.rt_create(*args) if bad is None else lib.rt_create_bad(bad, *args)
    if st == OK:
        lib.rt_destroy(h)
    else:
        assert h.value is None  # *out is NULL on failure
    return st, lib.rt_last_error(None).decode()


def test_create_checks_memory(lib):
    a, s, c, _ = sizes(lib)
    arena, state, consts = aligned(a), aligned(s), aligned(c)
    assert _create(lib, arena, state, consts) == (OK, "")
    st, msg = _create(lib, aligned(a, 8), state, consts)
    assert st == ALIGNMENT and msg.startswith("arena at ") and msg.endswith("is not aligned to 64 bytes")
    assert _create(lib, arena, state, consts, arena_n=a - 1) == (
        SIZE, f"arena: {a - 1} bytes given, this artifact needs {a}")
    assert _create(lib, arena, aligned(s)[: s - 64], consts) == (
        SIZE, f"state: {s - 64} bytes given, this artifact needs {s}")
    assert _create(lib, arena, state, None) == (ARGUMENT, f"constants is NULL; this artifact needs {c} bytes")
    assert _create(lib, arena, state, aligned(c, 4)) [0] == ALIGNMENT
    assert _create(lib, arena, state, consts, threads=0) == (ARGUMENT, "threads must be >= 1, got 0")
    big = aligned(a + s)
    st, msg = _create(lib, big[:a], big[a - 64:a - 64 + s], consts)
    assert (st, msg) == (ARGUMENT, "the arena and state blocks overlap")
    # Larger blocks than needed are fine.
    assert _create(lib, aligned(a + 64), aligned(s + 64), aligned(c + 640)) == (OK, "")


def test_create_failure_message_is_per_thread(lib):
    a, s, c, _ = sizes(lib)
    assert _create(lib, aligned(a), aligned(s), None)[0] == ARGUMENT
    seen = []
    t = threading.Thread(target=lambda: seen.append(lib.rt_last_error(None)))
    t.start()
    t.join()
    assert seen == [b""]
    assert lib.rt_last_error(None).startswith(b"constants is NULL")


@pytest.mark.parametrize("kind, status, message", [
    (1, RUNTIME, "entry 'predict': step 2 (node 'scaled', op 'no_such_op', at model.py:11): op 'no_such_op' is "
                 "not among this artifact's kernels"),
    (2, RUNTIME, "entry 'train': step 1 (node 'update/w', op 'sgd_momentum_update', at train.py:4): missing attr "
                 "'momentum'"),
    (3, ARGUMENT, "the artifact's tables are of ABI version 2, this runtime reads version 1"),
    (4, RUNTIME, "entry 'predict': step 1 (node 'dense/add', op 'add', at model.py:10): op 'add' is not among "
                 "this artifact's kernels"),
    (5, ARGUMENT, "the artifact's tables are inconsistent: entry 'predict': value 'x' lies outside the arena"),
])
def test_create_refuses_bad_tables(lib, kind, status, message):
    a, s, c, _ = sizes(lib)
    assert _create(lib, aligned(a), aligned(s), aligned(c), bad=kind) == (status, message)


# ---- weights ------------------------------------------------------------------------------------

def test_weights_from_memory_and_embedded(build):
    init = build["init"]
    for lib, how in ((build["libs"]["plain"], "memory"), (build["libs"]["embed"], "embedded")):
        c = Ctx(lib, load=False)
        if how == "memory":
            data = np.frombuffer(build["image"].data, np.uint8)
            assert c.call("rt_load_weights_from_memory", data.ctypes.data, data.nbytes) == OK, c.error()
        else:
            assert c.call("rt_load_embedded_weights") == OK, c.error()
        np.testing.assert_array_equal(c.read("w"), init["w"])
        np.testing.assert_array_equal(c.read("b", (128,)), init["b"])
        np.testing.assert_array_equal(c.consts.view(np.float32), init["scale"])
        c.close()
    c = Ctx(build["libs"]["plain"], load=False)
    assert c.call("rt_load_embedded_weights") == WEIGHTS
    assert c.error() == "the artifact 'rt' embeds no weights (it was compiled without --embed-weights)"
    c.close()


def test_bad_weights_change_nothing(build, lib, tmp_path):
    c = Ctx(lib, load=False)
    missing = tmp_path / "missing.weights"
    assert c.call("rt_load_weights", str(missing).encode()) == IO
    assert c.error() == f"cannot open the weights file '{missing}': No such file or directory"
    data = bytearray(build["image"].data)
    data[-1] ^= 1  # the last byte of 'scale'
    bad = tmp_path / "bad.weights"
    bad.write_bytes(bytes(data))
    assert c.call("rt_load_weights", str(bad).encode()) == WEIGHTS
    assert "scale" in c.error()
    assert not c.state.any() and not c.consts.any()
    assert c.run(PREDICT, [feeds_predict()])[0] == STATE  # still not loaded
    assert c.call("rt_load_weights", None) == ARGUMENT
    assert c.call("rt_load_weights", str(build["weights"]).encode()) == OK
    assert c.error() == ""
    c.close()


def test_weights_files_that_are_not_images_are_refused_before_reading(build, lib, tmp_path):
    """A FIFO (open would block), a device (/dev/zero never ends) and a file larger than any image
    of this artifact are refused from their metadata, nothing read and nothing changed."""
    c = Ctx(lib, load=False)
    fifo = tmp_path / "fifo.weights"
    os.mkfifo(fifo)
    assert c.call("rt_load_weights", str(fifo).encode()) == IO
    assert c.error() == f"the weights file '{fifo}' is not a regular file"
    assert c.call("rt_load_weights", b"/dev/zero") == IO
    assert "is not a regular file" in c.error()
    huge = tmp_path / "huge.weights"
    with open(huge, "wb") as f:
        f.truncate(1 << 40)  # sparse: 1 TiB of metadata, no disk
    assert c.call("rt_load_weights", str(huge).encode()) == WEIGHTS
    assert f"has {1 << 40} bytes, more than a weights image of this artifact can have" in c.error()
    assert not c.state.any() and not c.consts.any()
    # an image with bytes appended is not refused by size alone (the loader names what is wrong)
    longer = tmp_path / "longer.weights"
    longer.write_bytes(bytes(build["image"].data) + b"\0" * 64)
    assert c.call("rt_load_weights", str(longer).encode()) == WEIGHTS
    assert "more than a weights image" not in c.error()
    assert c.call("rt_load_weights", str(build["weights"]).encode()) == OK
    c.close()



def test_loading_weights_again_resets_and_moves_versions(build, ctx):
    """Weights loaded after runs replace what training changed, and kernels repack."""
    x, g = feeds_train(0)
    before = ctx.run(PREDICT, [x])[1][0]
    assert ctx.run(TRAIN, [x, g])[0] == OK
    assert not np.array_equal(ctx.run(PREDICT, [x])[1][0], before)
    assert ctx.call("rt_load_weights", str(build["weights"]).encode()) == OK
    assert ctx.run(PREDICT, [x])[1][0].tobytes() == before.tobytes()


# ---- checkpoints ------------------------------------------------------------------------------

def test_checkpoint_round_trip_with_python(build, ctx, tmp_path):
    init = build["init"]
    x, g = feeds_train(0)
    assert ctx.run(TRAIN, [x, g])[0] == OK
    path = tmp_path / "ckpt.npz"
    assert ctx.call("rt_save_checkpoint", str(path).encode()) == OK, ctx.error()
    expected = {"w": ((128, 128), np.float32), "b": ((128,), np.float32), "w/momentum": ((128, 128), np.float32)}
    expected = {k: (np.dtype(d), s) for k, (s, d) in expected.items()}
    loaded = checkpoint.load(str(path), expected)
    for name in expected:
        np.testing.assert_array_equal(loaded[name], ctx.read(name, loaded[name].shape))
    # A checkpoint written by Python, loaded by the artifact: the next run uses its values.
    new = {"w": init["w"] * 3, "b": init["b"] - 1, "w/momentum": np.ones((128, 128), np.float32)}
    py_path = tmp_path / "py.npz"
    checkpoint.save(str(py_path), new)
    xp = feeds_predict()
    ctx.run(PREDICT, [xp])  # packs the current w
    assert ctx.call("rt_load_checkpoint", str(py_path).encode()) == OK, ctx.error()
    for name, value in new.items():
        np.testing.assert_array_equal(ctx.read(name, value.shape), value)
    sess = gc.Session(plan_message("predict", init), threads=1)
    for name, value in new.items():
        sess.set_variable(name, value)
    assert ctx.run(PREDICT, [xp])[1][0].tobytes() == sess.run({"x": xp})["out"].tobytes()


def test_bad_checkpoint_changes_nothing(ctx, tmp_path):
    before = ctx.state.copy()
    path = tmp_path / "partial.npz"
    checkpoint.save(str(path), {"w": np.zeros((128, 128), np.float32), "b": np.zeros(128, np.float32)})
    assert ctx.call("rt_load_checkpoint", str(path).encode()) == CHECKPOINT
    assert "w/momentum" in ctx.error()
    np.testing.assert_array_equal(ctx.state, before)
    assert ctx.call("rt_load_checkpoint", str(tmp_path / "none.npz").encode()) == IO
    assert "none.npz" in ctx.error() and "does not exist" in ctx.error()
    np.testing.assert_array_equal(ctx.state, before)
    assert ctx.call("rt_save_checkpoint", str(tmp_path / "no" / "such" / "dir.npz").encode()) == IO
    assert "dir.npz" in ctx.error()


def test_versions_are_never_reused(lib):
    got = [lib.rt_next_version() for _ in range(5)]
    assert got == sorted(set(got))


def test_contexts_in_parallel_threads(lib):
    """One context per thread: two contexts training at once get what each gets alone."""
    steps = [feeds_train(seed) for seed in range(8)]

    def train(c):
        outs = []
        for x, g in steps:
            st, (y0, y1) = c.run(TRAIN, [x, g])
            assert st == OK, c.error()
            outs.append(y1.tobytes())
        return outs, c.read("w").tobytes()

    alone = Ctx(lib, threads=2)
    expected = train(alone)
    alone.close()
    ctxs = [Ctx(lib, threads=t) for t in (1, 2)]
    with ThreadPoolExecutor(max_workers=2) as pool:
        got = list(pool.map(train, ctxs))
    for c in ctxs:
        c.close()
    assert got == [expected, expected]


@pytest.mark.parametrize("threads", [1, 2])
def test_entry_calls_allocate_nothing(lib, threads):
    """No allocation inside an entry call, the first one included (the library's own code: the
    runtime and the kernels; OpenBLAS is outside the count)."""
    before = lib.rt_allocations()
    c = Ctx(lib, threads=threads)
    assert lib.rt_allocations() > before  # the counter sees creation and loading
    x = feeds_predict()
    xt, g = feeds_train(0)
    ids = np.array([3, 1, 4, 1], np.int64)
    feeds = {PREDICT: [x], TRAIN: [xt, g], LOOKUP: [ids, None]}
    # Buffers and ctypes arrays made before counting (they are Python's, not the library's).
    calls, keep = [], []
    for entry, fs in feeds.items():
        e = ENTRIES[list(ENTRIES)[entry]]
        outs = [np.empty(e["values"][i][6], NP_DTYPE[e["values"][i][1]]) for i in e["fetches"]]
        keep.append(outs)  # alive while the library writes into them
        calls.append((entry, (ctypes.c_void_p * len(fs))(*[None if f is None else f.ctypes.data for f in fs]),
                      (ctypes.c_void_p * len(outs))(*[o.ctypes.data for o in outs])))
    start = lib.rt_allocations()
    for _ in range(3):
        for entry, fa, oa in calls:
            assert lib.rt_run(c.h, entry, fa, oa) == OK
    assert lib.rt_allocations() - start == 0
    c.close()
