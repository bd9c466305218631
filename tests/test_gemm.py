"""Tests of graphc's own float32 GEMM (runtime/cpu/gemm.h) through a standalone C++ driver.

tests/gemm_driver.cc is compiled once per session with the system g++ against
runtime/cpu/gemm*.cc (the extension's Cython wrapper is not involved), then run per case:
A and B go in as raw float32 files, C comes back as raw float32 storage (M x ldc).  C starts
as NaN in the driver, so a read of C before it is written, or a write outside the M x N
window, shows up.  Every kernel this CPU can run is tested ("avx512", "avx2", and the
portable "none" everywhere); the kernels the CPU lacks are skipped with the reason.
"""

import os
import shutil
import subprocess

import numpy as np
import pytest
from cpuinfo import cpu_flags
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCES = ["tests/gemm_driver.cc", "runtime/cpu/gemm.cc", "runtime/cpu/gemm_avx512.cc",
           "runtime/cpu/gemm_avx2.cc", "runtime/cpu/isa.cc"]
ALL_KERNELS = ["avx512", "avx2", "none"]
EPS32 = np.finfo(np.float32).eps


@pytest.fixture(scope="session")
def driver(tmp_path_factory):
    cxx = shutil.which(os.environ.get("CXX", "g++").split()[-1]) or shutil.which("g++")
    if cxx is None:
        pytest.skip("no C++ compiler (g++) on PATH: the gemm test driver cannot be built")
    exe = str(tmp_path_factory.mktemp("gemm") / "gemm_driver")
    # GRAPHC_SANITIZE=1 (as tools/sanitize.sh sets): the driver under ASan + UBSan, where any
    # report exits non-zero and fails the case.
    sanitize = ["-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=all"] \
        if os.environ.get("GRAPHC_SANITIZE") == "1" else []
    cmd = [cxx, "-O2", "-std=c++17", "-pthread", "-Wall", "-Werror", *sanitize, "-I",
           os.path.join(ROOT, "runtime"), *[os.path.join(ROOT, s) for s in SOURCES], "-o", exe]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return exe


@pytest.fixture(scope="session")
def kernels(driver):
    out = subprocess.run([driver, "kernels"], check=True, capture_output=True, text=True).stdout
    return out.split()


def need(kernels, kernel):
    if kernel not in kernels:
        pytest.skip(f"CPU lacks the ISA of the {kernel} gemm kernel")


def storage(rng, rows, cols, ld):
    """A rows x ld float32 array whose first `cols` columns are the matrix (the rest: padding)."""
    return rng.standard_normal((rows, max(ld, 0))).astype(np.float32)


def run_gemm(driver, tmp_path, kernel, ta, tb, M, N, K, lda=None, ldb=None, ldc=None, threads=1,
             packed=False, epilogue=False, offset=0, seed=0, A=None, B=None, expect_rc=0, scratch=False):
    """Runs one sgemm in the driver; returns (C (M x N view of the storage), storage, A, B)."""
    lda = lda if lda is not None else (M if ta else K)
    ldb = ldb if ldb is not None else (K if tb else N)
    ldc = ldc if ldc is not None else N
    rng = np.random.default_rng(seed)
    if A is None:
        A = storage(rng, K if ta else M, M if ta else K, lda)
    if B is None:
        B = storage(rng, N if tb else K, K if tb else N, ldb)
    fa, fb, fc = tmp_path / "a.bin", tmp_path / "b.bin", tmp_path / "c.bin"
    A.astype(np.float32).tofile(fa)
    B.astype(np.float32).tofile(fb)
    args = [driver, "run", kernel, str(int(ta)), str(int(tb)), str(M), str(N), str(K), str(lda), str(ldb),
            str(ldc), str(threads), str(int(packed)), str(int(epilogue)), str(offset), str(fa), str(fb), str(fc)]
    env = dict(os.environ, GEMM_DRIVER_SCRATCH="1") if scratch else None
    proc = subprocess.run(args, capture_output=True, text=True, env=env)
    assert proc.returncode == expect_rc, proc.stderr
    if expect_rc != 0:
        return proc.stderr
    cs = np.fromfile(fc, dtype=np.float32).reshape(max(M, 0), max(ldc, 0))
    return cs[:, :N], cs, A, B


def logical(A, rows, cols):
    return A[:rows, :cols].astype(np.float64)


def reference(A, B, ta, tb, M, N, K):
    a = logical(A, K, M).T if ta else logical(A, M, K)
    b = logical(B, N, K).T if tb else logical(B, K, N)
    return a @ b, np.abs(a) @ np.abs(b)


def check_close(C, A, B, ta, tb, M, N, K):
    ref, mag = reference(A, B, ta, tb, M, N, K)
    # The standard bound for a length-K float32 dot product (any summation order): |err| <=
    # K * eps * sum |a_k b_k|, plus a tiny absolute term for results that round to 0.
    tol = (K + 1) * EPS32 * mag + 1e-30
    err = np.abs(C.astype(np.float64) - ref)
    assert np.all(np.isfinite(C)), "non-finite values in C"
    assert np.all(err <= tol), f"max error {err.max()} vs tolerance {tol.max()}"


def test_driver_lists_every_kernel_the_cpu_has(kernels):
    assert "none" in kernels
    flags = cpu_flags()
    if flags is None:
        pytest.skip("no /proc/cpuinfo to compare the kernel list against")
    has512 = {"avx512f", "avx512bw", "avx512dq", "avx512vl", "fma"} <= flags
    has2 = {"avx2", "fma"} <= flags
    assert ("avx512" in kernels) == has512
    assert ("avx2" in kernels) == has2


SHAPES = [
    (1, 1, 1), (1, 37, 5), (29, 1, 3), (2, 3, 1), (5, 7, 9), (13, 33, 17), (12, 32, 256), (25, 65, 257),
    (72, 73, 74), (37, 600, 300), (130, 100, 520),
]


@pytest.mark.parametrize("kernel", ALL_KERNELS)
@pytest.mark.parametrize("ta,tb", [(False, False), (False, True), (True, False), (True, True)])
@pytest.mark.parametrize("M,N,K", SHAPES)
def test_matches_float64_numpy(driver, kernels, tmp_path, kernel, ta, tb, M, N, K):
    need(kernels, kernel)
    C, cs, A, B = run_gemm(driver, tmp_path, kernel, ta, tb, M, N, K, seed=M * 1000 + N + K)
    check_close(C, A, B, ta, tb, M, N, K)


@pytest.mark.parametrize("kernel", ALL_KERNELS)
def test_leading_dims_and_unaligned_pointers(driver, kernels, tmp_path, kernel):
    need(kernels, kernel)
    # N = 31 / 63 / 15: one column short of a panel, where a mask off by one writes past N.
    cases = [((23, 45, 67), ta, tb) for ta in (False, True) for tb in (False, True)]
    cases += [((13, 31, 300), False, False), ((7, 63, 9), True, False), ((14, 15, 5), False, True)]
    for (M, N, K), ta, tb in cases:
        lda = (M if ta else K) + 3
        ldb = (K if tb else N) + 5
        ldc = N + 7
        for offset in (0, 1, 3):
            C, cs, A, B = run_gemm(driver, tmp_path, kernel, ta, tb, M, N, K, lda, ldb, ldc, threads=2,
                                   offset=offset, seed=offset)
            check_close(C, A, B, ta, tb, M, N, K)
            # The padding columns of C are never written: they still hold the driver's NaN.
            assert np.all(np.isnan(cs[:, N:]))


@pytest.mark.parametrize("kernel", ALL_KERNELS)
def test_caller_scratch_is_large_enough_and_changes_no_bit(driver, kernels, tmp_path, kernel):
    """sgemm on the caller's scratch (what the kernels allocate when they are prepared, so that a
    run allocates nothing) of exactly scratch_floats(): no write past it (the driver's guard) and
    the same bits as on the thread-local buffers, over several k blocks, column blocks and tasks."""
    need(kernels, kernel)
    for (M, N, K) in [(128, 300, 270), (61, 1100, 40), (300, 70, 600), (50, 10, 700), (1, 33, 5), (7, 2100, 513)]:
        for ta, tb in [(False, False), (True, True), (False, True), (True, False)]:
            for threads, packed in [(1, False), (2, False), (3, True), (4, False)]:
                base = run_gemm(driver, tmp_path, kernel, ta, tb, M, N, K, threads=threads, packed=packed, seed=3)[0]
                own = run_gemm(driver, tmp_path, kernel, ta, tb, M, N, K, threads=threads, packed=packed, seed=3,
                               scratch=True)[0]
                assert np.array_equal(base.view(np.uint32), own.view(np.uint32)), (M, N, K, ta, tb, threads, packed)


@pytest.mark.parametrize("kernel", ALL_KERNELS)
def test_bit_identical_across_threads_packing_and_alignment(driver, kernels, tmp_path, kernel):
    need(kernels, kernel)
    for (M, N, K) in [(128, 300, 270), (61, 1030, 40), (300, 70, 600), (50, 10, 700)]:
        for ta, tb in [(False, False), (True, True), (False, True)]:
            base = run_gemm(driver, tmp_path, kernel, ta, tb, M, N, K, threads=1, seed=7)[0]
            for threads, packed, offset in [(2, False, 0), (3, False, 0), (1, True, 0), (2, True, 1), (4, True, 2)]:
                other = run_gemm(driver, tmp_path, kernel, ta, tb, M, N, K, threads=threads, packed=packed,
                                 offset=offset, seed=7)[0]
                assert np.array_equal(base.view(np.uint32), other.view(np.uint32)), (M, N, K, ta, tb, threads,
                                                                                      packed, offset)


def test_avx512_and_avx2_bit_identical(driver, kernels, tmp_path):
    need(kernels, "avx512")
    need(kernels, "avx2")
    for (M, N, K) in [(37, 77, 300), (128, 64, 33), (40, 10, 300), (30, 500, 20)]:
        for ta, tb in [(False, True), (True, False)]:
            c1 = run_gemm(driver, tmp_path, "avx512", ta, tb, M, N, K, threads=2, seed=3)[0]
            c2 = run_gemm(driver, tmp_path, "avx2", ta, tb, M, N, K, threads=1, packed=True, seed=3)[0]
            assert np.array_equal(c1.view(np.uint32), c2.view(np.uint32))


@pytest.mark.parametrize("kernel", ALL_KERNELS)
@pytest.mark.parametrize("M,N,K", [(1, 1, 1), (13, 35, 7), (200, 600, 300), (9, 11, 0)])
def test_epilogue_covers_each_element_once_with_its_final_value(driver, kernels, tmp_path, kernel, M, N, K):
    need(kernels, kernel)
    for threads, packed in [(1, False), (2, True), (3, False)]:
        # The driver exits 4 unless every element got exactly one call holding its final value.
        C, cs, A, B = run_gemm(driver, tmp_path, kernel, False, False, M, N, K, threads=threads, packed=packed,
                               epilogue=True)
        check_close(C, A, B, False, False, M, N, K)


@pytest.mark.parametrize("kernel", ALL_KERNELS)
def test_k_zero_writes_zeros_and_empty_outputs(driver, kernels, tmp_path, kernel):
    need(kernels, kernel)
    C, cs, A, B = run_gemm(driver, tmp_path, kernel, False, False, 5, 6, 0, ldc=9, threads=2)
    assert np.array_equal(C, np.zeros((5, 6), np.float32))   # the driver's NaN was overwritten
    assert np.all(np.isnan(cs[:, 6:]))
    for M, N in [(0, 5), (5, 0), (0, 0)]:
        C = run_gemm(driver, tmp_path, kernel, False, False, M, N, 4, packed=True)[0]
        assert C.shape == (M, N)


def test_nan_and_inf_inputs_propagate_like_ieee(driver, kernels, tmp_path):
    # An Inf in A times a 0 in B is NaN in IEEE arithmetic; the kernel must not drop or invent it.
    kernel = kernels[0]
    M, N, K = 4, 40, 5
    A = np.ones((M, K), np.float32)
    B = np.ones((K, N), np.float32)
    A[1, 2] = np.inf
    B[2, 3] = 0.0
    C = run_gemm(driver, tmp_path, kernel, False, False, M, N, K, A=A, B=B)[0]
    with np.errstate(invalid="ignore"):   # inf * 0 is the point of the test
        ref = A.astype(np.float64) @ B.astype(np.float64)
    assert np.array_equal(np.isnan(C), np.isnan(ref))
    assert np.array_equal(np.isinf(C), np.isinf(ref))


@pytest.mark.parametrize("args,message", [
    (dict(M=-1, N=2, K=2, lda=2, ldb=2, ldc=2), "negative size"),
    (dict(M=3, N=4, K=5, lda=4), "lda"),
    (dict(M=3, N=4, K=5, ldb=3), "ldb"),
    (dict(M=3, N=4, K=5, ldc=3), "ldc"),
    (dict(M=3, N=4, K=5, ldc=6, epilogue=True), "epilogue needs ldc == N"),
    (dict(M=3, N=4, K=5, threads=0), "threads"),
])
def test_bad_arguments_raise_invalid_argument(driver, tmp_path, args, message):
    kw = dict(args)
    M, N, K = kw.pop("M"), kw.pop("N"), kw.pop("K")
    rng = np.random.default_rng(0)
    err = run_gemm(driver, tmp_path, "none", False, False, M, N, K,
                   A=rng.standard_normal(64).astype(np.float32), B=rng.standard_normal(64).astype(np.float32),
                   expect_rc=3, **kw)
    assert message in err


def grid(driver, kernel, M, N, K, threads, packed=False):
    out = subprocess.run([driver, "grid", kernel, str(M), str(N), str(K), str(threads), str(int(packed))],
                         check=True, capture_output=True, text=True).stdout.split()
    return int(out[0]), int(out[1]), out[2] == "1"


@pytest.mark.parametrize("kernel", ALL_KERNELS)
def test_two_threads_share_the_mlp_and_square_products(driver, kernels, kernel):
    need(kernels, kernel)
    for M, N, K in [(128, 1024, 784), (128, 1024, 1024), (1024, 1024, 1024), (1024, 64, 1024)]:
        tm, tn = grid(driver, kernel, M, N, K, 2)[:2]
        assert tm * tn == 2, (M, N, K, tm, tn)
    # Tiny products stay on the calling thread: handing them out costs more than they take.
    assert grid(driver, kernel, 16, 16, 16, 2)[:2] == (1, 1)
    assert grid(driver, kernel, 5, 0, 5, 2)[:2] == (1, 1)


def test_prefer_own(driver, kernels):
    own = [k for k in kernels if k != "none"]
    if not own:
        pytest.skip("CPU lacks AVX2+FMA and AVX-512: no own SIMD gemm kernel to prefer")
    k = own[0]
    assert grid(driver, k, 128, 1024, 784, 2, packed=True)[2]
    assert grid(driver, k, 128, 1024, 784, 1)[2]
    assert not grid(driver, k, 16, 16, 16, 1, packed=True)[2]     # overhead-bound
    assert not grid(driver, k, 1, 1024, 1024, 1)[2]               # a gemv: OpenBLAS
    assert grid(driver, k, 1, 1024, 1024, 1, packed=True)[2]
    assert not grid(driver, "none", 128, 1024, 784, 2, packed=True)[2]


def test_kernel_follows_the_isa_cap(driver, kernels):
    env = dict(os.environ)
    env.pop("GRAPHC_ISA", None)
    out = subprocess.run([driver, "name"], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == [kernels[0]]   # the best this CPU has
    for isa, kernel in [("avx512", "avx512"), ("avx2", "avx2"), ("baseline", "none")]:
        if kernel not in kernels:
            continue
        env["GRAPHC_ISA"] = isa
        out = subprocess.run([driver, "name"], env=env, capture_output=True, text=True, check=True)
        assert out.stdout.split() == [kernel]
    env["GRAPHC_ISA"] = "sse9"
    out = subprocess.run([driver, "name"], env=env, capture_output=True, text=True)
    assert out.returncode != 0 and "GRAPHC_ISA" in out.stderr and "sse9" in out.stderr


def test_packed_b_is_checked_against_the_kernel_and_sizes(driver, kernels):
    def rc(pack_kernel, run_kernel, N, dk):
        out = subprocess.run([driver, "mismatch", pack_kernel, run_kernel, str(N), str(dk)], capture_output=True,
                             text=True)
        return out.returncode, out.stderr

    for k in kernels:
        assert rc(k, k, 40, 0)[0] == 0
        code, err = rc(k, k, 40, 1)
        assert code == 3 and "packed B is 8x40" in err
    if "avx512" in kernels and "avx2" in kernels:
        code, err = rc("avx512", "avx2", 40, 0)
        assert code == 3 and "packed for kernel avx512" in err


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(M=st.integers(0, 70), N=st.integers(0, 140), K=st.integers(0, 600), ta=st.booleans(), tb=st.booleans(),
       pads=st.tuples(st.integers(0, 5), st.integers(0, 5), st.integers(0, 5)), threads=st.integers(1, 4),
       packed=st.booleans(), epilogue=st.booleans(), offset=st.integers(0, 3), seed=st.integers(0, 2**16))
def test_random_products_match_numpy_and_one_thread(driver, kernels, tmp_path, M, N, K, ta, tb, pads, threads,
                                                   packed, epilogue, offset, seed):
    """Any shape, transposes, leading dims, alignment, threads, packing and epilogue: within the
    float32 bound of float64 numpy, and the same bits as one thread with plain arguments."""
    kernel = kernels[0]
    lda = (M if ta else K) + pads[0]
    ldb = (K if tb else N) + pads[1]
    ldc = N + (0 if epilogue else pads[2])
    C, cs, A, B = run_gemm(driver, tmp_path, kernel, ta, tb, M, N, K, lda, ldb, ldc, threads=threads,
                           packed=packed, epilogue=epilogue, offset=offset, seed=seed)
    check_close(C, A, B, ta, tb, M, N, K)
    assert np.all(np.isnan(cs[:, N:]))
    plain = run_gemm(driver, tmp_path, kernel, ta, tb, M, N, K, lda, ldb, N, threads=1, A=A, B=B)[0]
    assert np.array_equal(C.view(np.uint32), plain.view(np.uint32))
