"""runtime/cpu/blas.h, the CPU kernels' one BLAS entry point, on each of its three backends:
scipy-openblas32 (the default), any CBLAS (GRAPHC_BLAS_CBLAS: built here against the same
OpenBLAS through a cblas.h that maps the standard names onto its prefixed ones) and the
portable built-in loops (GRAPHC_BLAS_NONE, no library linked).

tests/blas_driver.cc is compiled once per backend with the system g++ and the kernels' flags.
Results are compared with numpy in float64 (float128 for float64 inputs where available)
against the bound every summation order meets:
|C - C_exact| <= (K + 2) * eps * sum_k |A_ik B_kj| (+ the smallest normal, for underflow).
"""

import os
import shutil
import subprocess

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAGS = ["-std=c++17", "-O3", "-pthread", "-ffp-contract=off", "-fno-trapping-math", "-fno-math-errno"]
BACKENDS = ("openblas", "cblas", "none")


def _openblas():
    import scipy_openblas32
    return scipy_openblas32.get_include_dir(), scipy_openblas32.get_lib_dir(), scipy_openblas32.get_library()


@pytest.fixture(scope="module")
def drivers(tmp_path_factory):
    cxx = shutil.which(os.environ.get("CXX", "g++").split()[-1]) or shutil.which("g++")
    if cxx is None:
        pytest.skip("no C++ compiler (g++) on PATH: the BLAS test driver cannot be built")
    d = tmp_path_factory.mktemp("blas")
    inc, libdir, lib = _openblas()
    # A standard-named cblas.h over scipy-openblas32's prefixed symbols: the CBLAS backend
    # compiles against <cblas.h> and calls cblas_* / openblas_set_num_threads.
    shim = d / "shim"
    shim.mkdir()
    names = ["sgemm", "dgemm", "sgemv", "dgemv"]
    (shim / "cblas.h").write_text(
        f'#include "{inc}/cblas.h"\n' + "".join(f"#define cblas_{n} scipy_cblas_{n}\n" for n in names)
        + "#define openblas_set_num_threads scipy_openblas_set_num_threads\n")
    blas_link = [f"-L{libdir}", f"-Wl,-rpath,{libdir}", f"-l{lib}"]
    variants = {
        "openblas": ([f"-I{inc}"], blas_link),
        "cblas": ([f"-I{shim}", "-DGRAPHC_BLAS_CBLAS", "-DGRAPHC_BLAS_OPENBLAS"], blas_link),
        "none": (["-DGRAPHC_BLAS_NONE"], []),
    }
    out = {}
    for name, (cflags, ldflags) in variants.items():
        exe = str(d / f"blas_driver_{name}")
        cmd = [cxx, *FLAGS, *cflags, "-I", os.path.join(ROOT, "runtime"), os.path.join(ROOT, "tests", "blas_driver.cc"),
               "-o", exe, *ldflags]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        assert proc.returncode == 0, f"{name}: {' '.join(cmd)}\n{proc.stderr}"
        out[name] = exe
    return out, d


def test_backend_names(drivers):
    exes, _ = drivers
    got = {b: subprocess.run([exes[b], "name"], check=True, capture_output=True, text=True).stdout.strip()
           for b in BACKENDS}
    assert got == {"openblas": "scipy-openblas32", "cblas": "cblas (openblas)", "none": "builtin"}


def test_builtin_links_no_blas(drivers):
    exes, _ = drivers
    ldd = shutil.which("ldd")
    if ldd is None:
        pytest.skip("no ldd")
    libs = subprocess.run([ldd, exes["none"]], check=True, capture_output=True, text=True).stdout
    assert "blas" not in libs.lower(), libs
    assert "blas" in subprocess.run([ldd, exes["openblas"]], check=True, capture_output=True,
                                    text=True).stdout.lower()


def _exact(x):
    return x.astype(np.longdouble)


def _bound(a_op, b_op, dtype):
    eps = np.finfo(dtype).eps
    k = a_op.shape[1]
    mag = np.abs(a_op).astype(np.float64) @ np.abs(b_op).astype(np.float64)
    return (k + 2) * eps * mag + np.finfo(dtype).tiny


GEMM_SHAPES = [(0, 3, 4), (3, 0, 4), (3, 4, 0), (1, 1, 1), (1, 7, 5), (6, 1, 9), (5, 3, 1), (17, 33, 65),
               (64, 64, 64), (70, 130, 129), (129, 67, 300), (2, 300, 257)]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_gemm_matches_numpy(drivers, backend, dtype):
    exes, d = drivers
    rng = np.random.default_rng(11)
    code = "f32" if dtype == np.float32 else "f64"
    for m, n, k in GEMM_SHAPES:
        for ta in (False, True):
            for tb in (False, True):
                # Stored operands, with leading dims padded past the row width on some cases.
                pad = (m + n + k) % 3
                a_rows, a_cols = (k, m) if ta else (m, k)
                b_rows, b_cols = (n, k) if tb else (k, n)
                lda, ldb, ldc = max(a_cols, 1) + pad, max(b_cols, 1) + pad, max(n, 1) + pad
                A = rng.standard_normal((a_rows, lda)).astype(dtype)
                B = rng.standard_normal((b_rows, ldb)).astype(dtype)
                A.tofile(d / "a.bin")
                B.tofile(d / "b.bin")
                args = [exes[backend], "gemm", code, str(int(ta)), str(int(tb)), str(m), str(n), str(k), str(lda),
                        str(ldb), str(ldc), str(d / "a.bin"), str(d / "b.bin"), str(d / "c.bin")]
                subprocess.run(args, check=True, capture_output=True)
                C = np.fromfile(d / "c.bin", dtype=dtype).reshape(m, ldc) if m * ldc else np.zeros((m, ldc), dtype)
                a_op = A[:, :a_cols].T if ta else A[:, :a_cols]
                b_op = B[:, :b_cols].T if tb else B[:, :b_cols]
                want = _exact(a_op) @ _exact(b_op)
                got = C[:, :n]
                what = f"{backend} {code} ta={ta} tb={tb} m={m} n={n} k={k}"
                assert np.all(np.isfinite(got)), what
                err = np.abs(got.astype(np.longdouble) - want)
                assert np.all(err <= _bound(a_op, b_op, dtype)), (what, float(err.max()))
                if k == 0:
                    assert np.all(got == 0), what
                if pad and m:
                    # Columns past N are the caller's: never written.
                    assert np.all(np.isnan(C[:, n:])), what


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_gemv_matches_numpy(drivers, backend, dtype):
    exes, d = drivers
    rng = np.random.default_rng(12)
    code = "f32" if dtype == np.float32 else "f64"
    for rows, cols in [(0, 5), (5, 0), (1, 1), (1, 9), (9, 1), (33, 65), (300, 17), (257, 1024)]:
        for t in (False, True):
            lda = max(cols, 1) + (rows % 2)
            A = rng.standard_normal((rows, lda)).astype(dtype)
            x = rng.standard_normal(rows if t else cols).astype(dtype)
            A.tofile(d / "a.bin")
            x.tofile(d / "x.bin")
            args = [exes[backend], "gemv", code, str(int(t)), str(rows), str(cols), str(lda), str(d / "a.bin"),
                    str(d / "x.bin"), str(d / "y.bin")]
            subprocess.run(args, check=True, capture_output=True)
            y = np.fromfile(d / "y.bin", dtype=dtype)
            a_op = A[:, :cols].T if t else A[:, :cols]
            want = _exact(a_op) @ _exact(x)
            what = f"{backend} {code} t={t} rows={rows} cols={cols}"
            assert y.shape == want.shape and np.all(np.isfinite(y)), what
            err = np.abs(y.astype(np.longdouble) - want)
            assert np.all(err <= _bound(a_op, x[:, None], dtype)[:, 0]), (what, float(err.max()) if err.size else 0)
