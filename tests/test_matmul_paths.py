"""matmul's kernel paths (runtime/cpu/matmul.cc): the GEMV kernels, graphc's own GEMM and
OpenBLAS, each forced with GRAPHC_MATMUL_PATH (read when a plan is loaded), against float64
numpy on odd, 0 and 1 sizes, every transpose and batch broadcasting; thread counts 1 and 2
bit-identical; the GEMV ISA versions bit-identical to each other (and the axpy form to the
own GEMM); packed weights rebuilt when set_variable / load_checkpoint change them.
"""

import itertools

import numpy as np
import pytest
from cpuinfo import cpu_flags
from subproc import run_python

import graphc as gc

PATHS = ("gemv", "gemm", "blas")


FLAGS = cpu_flags() or set()
HAS_AVX2 = {"avx2", "fma"} <= FLAGS
HAS_AVX512 = HAS_AVX2 and {"avx512f", "avx512bw", "avx512dq", "avx512vl"} <= FLAGS


def stored(shape_mk, transpose):
    """The stored shape of an operand whose logical last two dims are shape_mk."""
    *batch, r, c = shape_mk
    return (*batch, c, r) if transpose else (*batch, r, c)


def session(a_shape, b_shape, ta, tb, threads, dtype="float32", b_init=None):
    """A one-matmul plan: a is fed; b is fed, or a variable (read-only across runs in an
    inference plan) when b_init is given."""
    with gc.Graph() as g:
        a = gc.placeholder("a", a_shape, dtype)
        b = gc.placeholder("b", b_shape, dtype) if b_init is None else gc.variable("w", init=b_init)
        y = gc.matmul(a, b, transpose_a=ta, transpose_b=tb, name="y")
    shapes = {"a": a_shape} if b_init is not None else {"a": a_shape, "b": b_shape}
    plan = gc.compile(g, shapes=shapes, fetches=[y.name], train=False)
    return gc.Session(plan, threads=threads), y.name


def run(monkeypatch, path, A, B, ta, tb, threads):
    monkeypatch.setenv("GRAPHC_MATMUL_PATH", path)
    sess, y = session(A.shape, B.shape, ta, tb, threads, A.dtype.name)
    return sess.run({"a": A, "b": B})[y]


def reference(A, B, ta, tb):
    """float64 product and the rounding bound K * 2^-23 * sum |a b| (float32) per element."""
    a = np.swapaxes(A, -1, -2) if ta else A
    b = np.swapaxes(B, -1, -2) if tb else B
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    K = a.shape[-1]
    eps = np.finfo(A.dtype).eps
    return a64 @ b64, (K + 2) * eps * (np.abs(a64) @ np.abs(b64)) + 1e-30


def operands(rng, M, K, N, ta, tb, abatch=(), bbatch=(), dtype=np.float32):
    A = rng.standard_normal(stored((*abatch, M, K), ta)).astype(dtype)
    B = rng.standard_normal(stored((*bbatch, K, N), tb)).astype(dtype)
    return A, B


# (M, K, N): one row, one column, both, odd, empty, K == 0, and big enough to split.
VECTOR_SHAPES = [(1, 1, 1), (1, 7, 1), (1, 33, 17), (1, 64, 16), (1, 300, 333), (5, 40, 1), (301, 257, 1),
                 (1, 0, 9), (9, 0, 1), (1, 5, 0), (0, 5, 1)]
MATRIX_SHAPES = [(2, 3, 4), (7, 13, 33), (13, 1, 5), (37, 71, 45), (4, 0, 3), (0, 3, 4), (3, 4, 0)]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("ta,tb", list(itertools.product([False, True], repeat=2)))
def test_paths_against_float64(monkeypatch, path, ta, tb):
    rng = np.random.default_rng(0)
    for M, K, N in VECTOR_SHAPES + MATRIX_SHAPES:
        A, B = operands(rng, M, K, N, ta, tb)
        y = run(monkeypatch, path, A, B, ta, tb, threads=2)
        ref, bound = reference(A, B, ta, tb)
        assert y.shape == ref.shape and y.dtype == np.float32
        assert np.all(np.abs(y - ref) <= bound), (path, ta, tb, M, K, N, np.max(np.abs(y - ref) - bound))


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("ta,tb", [(False, False), (True, True)])
def test_batch_broadcasting(monkeypatch, path, ta, tb):
    rng = np.random.default_rng(1)
    for (M, K, N), (ab, bb) in itertools.product([(1, 19, 23), (6, 19, 1), (5, 19, 23)],
                                                  [((2, 1), (3,)), ((), (2, 3)), ((4,), ()), ((1, 3), (2, 1))]):
        A, B = operands(rng, M, K, N, ta, tb, ab, bb)
        y = run(monkeypatch, path, A, B, ta, tb, threads=2)
        ref, bound = reference(A, B, ta, tb)
        assert y.shape == ref.shape
        assert np.all(np.abs(y - ref) <= bound), (path, M, K, N, ab, bb)


@pytest.mark.parametrize("path", PATHS)
def test_threads_bit_identical(monkeypatch, path):
    rng = np.random.default_rng(2)
    # The GEMV path splits products of >= 2^21 multiply-adds (runtime/cpu/matmul.cc): the
    # batch of 2 makes the second and third shapes that large.
    for (M, K, N), (ta, tb) in itertools.product([(1, 300, 333), (1, 2048, 1536), (3000, 1024, 1), (130, 300, 129)],
                                                 [(False, False), (False, True), (True, False)]):
        A, B = operands(rng, M, K, N, ta, tb, (2,), ())
        y1 = run(monkeypatch, path, A, B, ta, tb, threads=1)
        y2 = run(monkeypatch, path, A, B, ta, tb, threads=2)
        assert np.array_equal(y1.view(np.uint32), y2.view(np.uint32)), (path, M, K, N, ta, tb)


def test_float64_on_blas(monkeypatch):
    # float64 always goes to OpenBLAS, one row or not; the forced float32 paths do not apply.
    rng = np.random.default_rng(3)
    for path, (M, K, N) in itertools.product(PATHS, [(1, 31, 9), (7, 31, 1), (6, 31, 9)]):
        A, B = operands(rng, M, K, N, False, True, dtype=np.float64)
        y = run(monkeypatch, path, A, B, False, True, threads=2)
        ref, bound = reference(A, B, False, True)
        assert y.dtype == np.float64 and np.all(np.abs(y - ref) <= bound)


GEMV_ISAS = [pytest.param("avx512", marks=pytest.mark.skipif(not HAS_AVX512, reason="CPU lacks AVX-512")),
             pytest.param("avx2", marks=pytest.mark.skipif(not HAS_AVX2, reason="CPU lacks AVX2+FMA"))]


@pytest.mark.parametrize("isa", GEMV_ISAS)
def test_gemv_isa_versions_agree(monkeypatch, isa):
    """Each GEMV ISA version against the other available one and float64; the two compute
    the same chains of fused multiply-adds (runtime/cpu/gemv.h), so they agree bit for bit."""
    rng = np.random.default_rng(4)
    other = "avx2" if isa == "avx512" else ("avx512" if HAS_AVX512 else "avx2")
    for (M, K, N), (ta, tb) in itertools.product([(1, 1, 1), (1, 33, 17), (1, 300, 333), (45, 77, 1)],
                                                 [(False, False), (False, True), (True, False)]):
        A, B = operands(rng, M, K, N, ta, tb)
        monkeypatch.setenv("GRAPHC_GEMV_KERNEL", isa)
        y = run(monkeypatch, "gemv", A, B, ta, tb, threads=2)
        monkeypatch.setenv("GRAPHC_GEMV_KERNEL", other)
        y_other = run(monkeypatch, "gemv", A, B, ta, tb, threads=1)
        ref, bound = reference(A, B, ta, tb)
        assert np.all(np.abs(y - ref) <= bound), (isa, M, K, N, ta, tb)
        assert np.array_equal(y.view(np.uint32), y_other.view(np.uint32)), (isa, other, M, K, N, ta, tb)


@pytest.mark.skipif(not HAS_AVX2, reason="CPU lacks AVX2+FMA: no own GEMV/GEMM kernel")
def test_gemv_axpy_form_matches_own_gemm(monkeypatch):
    """x @ W (W stored K x N) on the GEMV path is the very fma chain of the own GEMM kernel,
    so a batch-1 product does not change bits when it moves between the two paths."""
    rng = np.random.default_rng(5)
    for M, K, N in [(1, 784, 1024), (1, 37, 45), (1, 1, 3)]:
        A, B = operands(rng, M, K, N, False, False)
        y_gemv = run(monkeypatch, "gemv", A, B, False, False, threads=2)
        y_gemm = run(monkeypatch, "gemm", A, B, False, False, threads=2)
        assert np.array_equal(y_gemv.view(np.uint32), y_gemm.view(np.uint32)), (M, K, N)


@pytest.mark.parametrize("path", PATHS)
def test_weights_changed_between_runs(monkeypatch, path, tmp_path):
    """B is a variable of an inference plan: read-only across runs, so the own GEMM packs it
    once; set_variable and load_checkpoint must make the next run see the new weights."""
    monkeypatch.setenv("GRAPHC_MATMUL_PATH", path)
    rng = np.random.default_rng(6)
    for M, K, N in [(33, 70, 45), (1, 70, 45)]:
        A = rng.standard_normal((M, K)).astype(np.float32)
        W1 = rng.standard_normal((K, N)).astype(np.float32)
        W2 = rng.standard_normal((K, N)).astype(np.float32)
        sess, y = session(A.shape, W1.shape, False, False, 2, b_init=W1)
        ckpt = tmp_path / f"w{M}.ckpt"
        sess.save_checkpoint(str(ckpt))
        out = sess.run({"a": A})[y]  # packs W1 (own GEMM path)
        ref, bound = reference(A, W1, False, False)
        assert np.all(np.abs(out - ref) <= bound), (path, M, "initial")
        for W in (W2, W1, W2):
            sess.set_variable("w", W)
            out = sess.run({"a": A})[y]
            ref, bound = reference(A, W, False, False)
            assert np.all(np.abs(out - ref) <= bound), (path, M, "set_variable")
        sess.set_variable("w", W2)
        sess.run({"a": A})
        sess.load_checkpoint(str(ckpt))  # back to W1
        out = sess.run({"a": A})[y]
        ref, bound = reference(A, W1, False, False)
        assert np.all(np.abs(out - ref) <= bound), (path, M, "load_checkpoint")


# -- the worker pool (runtime/cpu/thread_pool.h) -------------------------------------------------

POOL_SCRIPT = """
import sys
import numpy as np
import graphc as gc
rng = np.random.default_rng(7)
with gc.Graph() as g:
    x = gc.placeholder("x", (64, 300))
    w = gc.placeholder("w", (300, 257))
    y = gc.relu(gc.matmul(x, w) + 1.0, name="y")
plan = gc.compile(g, shapes={"x": (64, 300), "w": (300, 257)}, fetches=[y.name], train=False)
sess = gc.Session(plan, threads=2)
X = rng.standard_normal((64, 300)).astype(np.float32)
W = rng.standard_normal((300, 257)).astype(np.float32)
outs = [sess.run({"x": X, "w": W})[y.name] for _ in range(20)]
assert all(np.array_equal(o, outs[0]) for o in outs)
sys.stdout.buffer.write(outs[0].tobytes())
"""


def pool_run(spin_us):
    import os

    env = dict(os.environ)
    if spin_us is None:
        env.pop("GRAPHC_SPIN_US", None)
    else:
        env["GRAPHC_SPIN_US"] = spin_us
    res = run_python(POOL_SCRIPT, env=env, text=False)
    assert res.returncode == 0, res.stderr.decode()[-2000:]
    return res.stdout


def test_pool_spin_settings_same_results():
    """GRAPHC_SPIN_US only changes how workers wait: sleeping at once (0), the default, a
    long spin and an unparsable value (the default) give the same bytes, run after run."""
    outs = [pool_run(s) for s in ("0", None, "5000", "junk")]
    assert len(outs[0]) == 64 * 257 * 4
    assert all(o == outs[0] for o in outs[1:])


def test_pool_after_fork():
    """A child forked after the pool has workers starts with an empty pool (the parent's
    workers do not exist there) and still runs threaded steps, without hanging."""
    import os
    import select

    rng = np.random.default_rng(8)
    A, B = operands(rng, 200, 300, 257, False, False)
    sess, y = session(A.shape, B.shape, False, False, 2)
    expect = sess.run({"a": A, "b": B})[y]  # the parent's pool now has a worker
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: report through the pipe, never return into pytest
        code = 1
        try:
            out = sess.run({"a": A, "b": B})[y]
            os.write(w, b"ok" if np.array_equal(out, expect) else b"mismatch")
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    ready, _, _ = select.select([r], [], [], 60)
    if not ready:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        pytest.fail("the forked child hung in a threaded run")
    msg = os.read(r, 100)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    assert msg == b"ok" and os.WEXITSTATUS(status) == 0, msg


# -- fused_matmul: the same product, then the epilogue on each finished range -------------------

EPILOGUES = [
    # (program, extra input shapes as functions of (batch, M, N))
    ("r0=add(p,i2);r1=relu(r0)", lambda bt, M, N: [(N,)]),
    ("r0=add(p,i2)", lambda bt, M, N: [(*bt, M, N)]),
    ("r0=mul(p,i2);r1=add(r0,i3);r2=tanh(r1);r3=sub(r2,p)", lambda bt, M, N: [(1, N), (M, 1)]),
    ("r0=sigmoid(p)", lambda bt, M, N: []),
]


def fused_pair(a_shape, b_shape, extra_shapes, ta, tb, program, b_init=None, dtype="float32"):
    """(fused graph, unfused graph, fetch names): fused_matmul vs matmul and the program's
    member ops as separate nodes."""
    from graphc.ops.fused import parse_program

    def inputs():
        a = gc.placeholder("a", a_shape, dtype)
        b = gc.placeholder("b", b_shape, dtype) if b_init is None else gc.variable("w", init=b_init)
        extra = [gc.placeholder(f"e{i}", s, dtype) for i, s in enumerate(extra_shapes)]
        return a, b, extra

    attrs = {"transpose_a": ta, "transpose_b": tb}
    with gc.Graph() as fused:
        a, b, extra = inputs()
        (yf,) = fused.add_node("fused_matmul", [a, b, *extra], {**attrs, "program": program})
    with gc.Graph() as unfused:
        a, b, extra = inputs()
        p = gc.matmul(a, b, **attrs)
        regs = []
        for ins in parse_program(program, 2 + len(extra), first_input=2, allow_product=True):
            args = [p if k == "p" else (extra[n - 2] if k == "i" else regs[n]) for k, n in ins.args]
            (r,) = unfused.add_node(ins.op, args, ins.attrs)
            regs.append(r)
        yu = regs[-1]
    return fused, unfused, yf.name, yu.name


def run_graph(g, fetch, feeds, threads):
    shapes = {k: v.shape for k, v in feeds.items()}
    sess = gc.Session(gc.compile(g, shapes=shapes, fetches=[fetch], train=False), threads=threads)
    return sess, sess.run(feeds)[fetch]


def same_bits(x, y):
    return x.shape == y.shape and x.dtype == y.dtype and x.tobytes() == y.tobytes()


@pytest.mark.parametrize("path", PATHS)
def test_fused_matmul_bit_identical_to_unfused(monkeypatch, path):
    monkeypatch.setenv("GRAPHC_MATMUL_PATH", path)
    rng = np.random.default_rng(9)
    cases = [((), 1, 300, 333, False, False), ((), 1, 77, 45, False, True), ((), 301, 257, 1, False, False),
             ((), 45, 77, 1, True, False), ((), 37, 71, 45, False, False), ((), 37, 71, 45, True, True),
             ((2,), 5, 19, 23, False, False), ((2,), 1, 19, 23, False, True), ((), 4, 0, 3, False, False),
             ((), 1, 0, 3, False, False), ((), 1, 2048, 1100, False, False), ((), 2100, 1024, 1, False, False)]
    for (bt, M, K, N, ta, tb), (program, extra_fn), threads in itertools.product(cases, EPILOGUES, (1, 2)):
        A, B = operands(rng, M, K, N, ta, tb, bt, ())
        extra_shapes = extra_fn(bt, M, N)
        feeds = {"a": A, "b": B}
        feeds.update({f"e{i}": rng.standard_normal(s).astype(np.float32) for i, s in enumerate(extra_shapes)})
        fused, unfused, yf, yu = fused_pair(A.shape, B.shape, extra_shapes, ta, tb, program)
        _, out_f = run_graph(fused, yf, feeds, threads)
        _, out_u = run_graph(unfused, yu, feeds, threads)
        assert same_bits(out_f, out_u), (path, bt, M, K, N, ta, tb, program, threads)


def test_fused_matmul_float64_and_packed_weights(monkeypatch, tmp_path):
    rng = np.random.default_rng(10)
    program = "r0=add(p,i2);r1=relu(r0)"
    # float64 (OpenBLAS, then the epilogue over the whole output).
    A, B = operands(rng, 9, 31, 17, False, False, dtype=np.float64)
    bias = rng.standard_normal(17)
    fused, unfused, yf, yu = fused_pair(A.shape, B.shape, [(17,)], False, False, program, dtype="float64")
    feeds = {"a": A, "b": B, "e0": bias}
    assert same_bits(run_graph(fused, yf, feeds, 2)[1], run_graph(unfused, yu, feeds, 2)[1])
    # A read-only weight on the own GEMM path: packed once, repacked after set_variable, the
    # epilogue applied to the new product.
    monkeypatch.setenv("GRAPHC_MATMUL_PATH", "gemm")
    A, W1 = operands(rng, 33, 70, 45, False, False)
    W2 = rng.standard_normal(W1.shape).astype(np.float32)
    bias = rng.standard_normal(45).astype(np.float32)
    fused, unfused, yf, yu = fused_pair(A.shape, W1.shape, [(45,)], False, False, program, b_init=W1)
    feeds = {"a": A, "e0": bias}
    sf, out_f = run_graph(fused, yf, feeds, 2)
    su, out_u = run_graph(unfused, yu, feeds, 2)
    assert same_bits(out_f, out_u)
    for W in (W2, W1):
        sf.set_variable("w", W)
        su.set_variable("w", W)
        out_f, out_u = sf.run(feeds)[yf], su.run(feeds)[yu]
        assert same_bits(out_f, out_u)
        ref, bound = reference(A, W, False, False)
        assert np.all(np.abs(out_f - np.maximum(ref + bias, 0)) <= bound + 1e-6)


def test_fused_matmul_bad_program_is_a_typed_error():
    with gc.Graph() as g:
        a = gc.placeholder("a", (2, 3))
        b = gc.placeholder("b", (3, 4))
        (y,) = g.add_node("fused_matmul", [a, b], {"program": "r0=relu(p)"})
    plan = gc.compile(g, shapes={"a": (2, 3), "b": (3, 4)}, fetches=[y.name], train=False)
    (step,) = [st for st in plan.proto.steps if st.op == "fused_matmul"]
    gc.Session(plan, threads=1)  # the compiled program loads
    # A corrupted program must be refused at load with a typed error naming it.
    step.attrs["program"].s = "r0=nosuchop(p)"
    with pytest.raises(gc.errors.GraphcError, match="nosuchop"):
        gc.Session(plan, threads=1)


def test_gemv_follows_the_isa_cap(monkeypatch):
    """GRAPHC_ISA / set_isa cap the GEMV kernels like every other kernel: under "baseline"
    a batch-1 product goes to OpenBLAS (the same bits as the forced blas path)."""
    from graphc import _runtime

    rng = np.random.default_rng(11)
    A, B = operands(rng, 1, 300, 333, False, False)
    y_blas = run(monkeypatch, "blas", A, B, False, False, threads=1)
    try:
        _runtime.set_isa("baseline")
        y_capped = run(monkeypatch, "", A, B, False, False, threads=1)
    finally:
        _runtime.set_isa("")
    assert np.array_equal(y_capped.view(np.uint32), y_blas.view(np.uint32))
    if HAS_AVX2:
        # Uncapped, the GEMV kernel runs: the sequential fma chain, not OpenBLAS's order.
        y_auto = run(monkeypatch, "", A, B, False, False, threads=1)
        y_gemv = run(monkeypatch, "gemv", A, B, False, False, threads=1)
        assert np.array_equal(y_auto.view(np.uint32), y_gemv.view(np.uint32))
        # ...which rounds differently from OpenBLAS here, so the capped check above can fail.
        assert not np.array_equal(y_gemv.view(np.uint32), y_blas.view(np.uint32))
