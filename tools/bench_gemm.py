"""Benchmark graphc's own float32 GEMM (runtime/cpu/gemm.h) against OpenBLAS (numpy) and
ONNX Runtime's MatMul (MLAS, constant B pre-packed at session load).

    python tools/bench_gemm.py [--threads 1,2] [--repeat 31] [--kernel auto] [--sweep]

The own kernel runs from tests/gemm_driver.cc built as a shared library with the system g++
(-O3, baseline x86-64 like the extension) and called through ctypes, so all contenders run
round-robin in one process with the same thread count: a load spike from other processes hits
them alike.  Prints one table of medians (ms and GFLOP/s) per shape and thread count, and with
--sweep the own/OpenBLAS time ratio on small shapes (the crossovers behind gemm::prefer_own).
"""
import argparse
import ctypes
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _bench_util as bu  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCES = ["tests/gemm_driver.cc", "runtime/cpu/gemm.cc", "runtime/cpu/gemm_avx512.cc",
           "runtime/cpu/gemm_avx2.cc", "runtime/cpu/isa.cc"]
SHAPES = [(128, 784, 1024), (128, 1024, 1024), (1024, 1024, 1024)]  # (M, K, N)
SWEEP = [(m, k, n) for m in (1, 4, 16, 64, 256) for (k, n) in ((64, 64), (256, 256), (1024, 1024), (784, 10))]


def build_library(out_dir):
    cxx = shutil.which("g++")
    if cxx is None:
        sys.exit("bench_gemm: no g++ on PATH to build the gemm driver")
    lib = os.path.join(out_dir, "libgemm_driver.so")
    cmd = [cxx, "-O3", "-std=c++17", "-pthread", "-shared", "-fPIC", "-DGEMM_DRIVER_LIBRARY", "-I",
           os.path.join(ROOT, "runtime"), *[os.path.join(ROOT, s) for s in SOURCES], "-o", lib]
    subprocess.run(cmd, check=True)
    dll = ctypes.CDLL(lib)
    i64, fp, vp = ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p
    dll.gemm_driver_set_kernel.argtypes = [ctypes.c_char_p]
    dll.gemm_driver_kernel_name.restype = ctypes.c_char_p
    dll.gemm_driver_pack.argtypes = [i64, i64, fp]
    dll.gemm_driver_pack.restype = vp
    dll.gemm_driver_free.argtypes = [vp]
    dll.gemm_driver_sgemm.argtypes = [i64, i64, i64, fp, fp, vp, fp, ctypes.c_int]
    return dll


def openblas_threads_setter():
    """numpy's bundled OpenBLAS set_num_threads (found in this process's mappings), or None."""
    with open("/proc/self/maps") as f:
        paths = sorted({line.split()[-1] for line in f if "openblas" in line.lower() and ".so" in line})
    for path in paths:
        lib = ctypes.CDLL(path)
        for sym in ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads", "openblas_set_num_threads"):
            if hasattr(lib, sym):
                fn = getattr(lib, sym)
                fn.argtypes = [ctypes.c_int]
                return fn
    return None


def ort_matmul(ort, onnx, np, a_shape, b, threads):
    """An ORT session computing A @ B with B a constant initializer (MLAS pre-packs it)."""
    from onnx import TensorProto, helper, numpy_helper
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["A", "B"], ["Y"])], "mm",
        [helper.make_tensor_value_info("A", TensorProto.FLOAT, list(a_shape))],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [a_shape[0], b.shape[1]])],
        [numpy_helper.from_array(b, "B")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def median_times(fns, repeat, clock, warmup=3, min_time=0.0):
    """Median seconds per call of each fn, sampled round-robin (as _bench_util.median_times), on
    ``clock``: time.perf_counter (wall) or time.process_time (this process's CPU time: with one
    thread, the time the call itself ran, steadier than wall time on a loaded machine)."""
    inner = []
    for fn in fns:
        for _ in range(warmup):
            fn()
        t0 = time.perf_counter()
        fn()
        one = max(time.perf_counter() - t0, 1e-7)
        inner.append(max(1, int(min_time / one)))
    samples = [[] for _ in fns]
    for _ in range(repeat):
        for i, fn in enumerate(fns):
            t0 = clock()
            for _ in range(inner[i]):
                fn()
            samples[i].append((clock() - t0) / inner[i])
    return [statistics.median(s) for s in samples]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts (default 1,2)")
    parser.add_argument("--repeat", type=int, default=31, help="round-robin rounds; medians reported")
    parser.add_argument("--kernel", default="auto", help="own kernel: auto, avx512, avx2 or none")
    parser.add_argument("--sweep", action="store_true", help="also print own/OpenBLAS ratios on small shapes")
    parser.add_argument("--cpu-time", action="store_true",
                        help="time with process CPU time instead of wall time (meaningful at one thread only)")
    args = parser.parse_args()
    threads_list = [int(t) for t in args.threads.split(",")]
    clock = time.process_time if args.cpu_time else time.perf_counter

    import numpy as np
    ort, ort_missing = bu.try_import("onnxruntime")
    onnx, onnx_missing = bu.try_import("onnx")
    set_blas_threads = openblas_threads_setter()

    tmp = tempfile.mkdtemp(prefix="bench_gemm_")
    try:
        dll = build_library(tmp)
        if not dll.gemm_driver_set_kernel(args.kernel.encode()):
            sys.exit(f"bench_gemm: kernel {args.kernel!r} is unknown or not supported by this CPU")
        kernel = dll.gemm_driver_kernel_name().decode()
        print(bu.machine())
        print(bu.load_note())
        print(f"own kernel: {kernel}; OpenBLAS via numpy {np.__version__}; ONNX Runtime: "
              f"{ort.__version__ if ort else ort_missing}; clock: {'process CPU time' if args.cpu_time else 'wall'}")
        print()

        def fp(x):
            return x.ctypes.data_as(ctypes.c_void_p)

        def contenders(M, K, N, threads, with_ort):
            rng = np.random.default_rng(0)
            a = rng.standard_normal((M, K)).astype(np.float32)
            b = rng.standard_normal((K, N)).astype(np.float32)
            c = np.empty((M, N), np.float32)
            packed = dll.gemm_driver_pack(K, N, fp(b))
            # Pointers made once: ndarray.ctypes costs microseconds per call, more than a small gemm.
            pa, pb, pc = fp(a), fp(b), fp(c)
            sg = dll.gemm_driver_sgemm
            fns = {
                "own packed": lambda: sg(M, N, K, pa, None, packed, pc, threads),
                "own": lambda: sg(M, N, K, pa, pb, None, pc, threads),
                "OpenBLAS": lambda: np.matmul(a, b, out=c),
            }
            if with_ort and ort and onnx:
                sess = ort_matmul(ort, onnx, np, a.shape, b, threads)
                binding = sess.io_binding()
                binding.bind_cpu_input("A", a)
                binding.bind_output("Y", "cpu")
                fns["ORT"] = lambda: sess.run_with_iobinding(binding)
            return fns, packed

        rows = []
        for threads in threads_list:
            if set_blas_threads:
                set_blas_threads(threads)
            for (M, K, N) in SHAPES:
                fns, packed = contenders(M, K, N, threads, True)
                names = list(fns)
                times = median_times([fns[n] for n in names], args.repeat, clock, min_time=0.02)
                dll.gemm_driver_free(packed)
                t = dict(zip(names, times))
                gf = {n: 2.0 * M * N * K / t[n] / 1e9 for n in names}
                cells = [f"{M}x{K}x{N}", str(threads)]
                for n in ("own packed", "own", "OpenBLAS", "ORT"):
                    cells.append(f"{t[n] * 1e3:.3f} ({gf[n]:.0f})" if n in t else "-")
                cells.append(bu.fmt_ratio(t["own"], t["OpenBLAS"]))
                cells.append(bu.fmt_ratio(t["own packed"], t["ORT"]) if "ORT" in t else "-")
                rows.append(cells)
        bu.print_table(f"sgemm C = A @ B, medians of {args.repeat} round-robin rounds, ms (GFLOP/s); "
                       "ratio < 1: own faster",
                       ["MxKxN", "threads", "own packed", "own", "OpenBLAS", "ORT (B packed)", "own/OpenBLAS",
                        "own packed/ORT"], rows)

        if args.sweep:
            print()
            rows = []
            for (M, K, N) in SWEEP:
                cells = [f"{M}x{K}x{N}"]
                for threads in threads_list:
                    if set_blas_threads:
                        set_blas_threads(threads)
                    fns, packed = contenders(M, K, N, threads, False)
                    names = list(fns)
                    times = median_times([fns[n] for n in names], max(5, args.repeat // 3), clock, min_time=0.005)
                    dll.gemm_driver_free(packed)
                    t = dict(zip(names, times))
                    cells += [f"{t['OpenBLAS'] * 1e6:.1f} us", bu.fmt_ratio(t["own"], t["OpenBLAS"]),
                              bu.fmt_ratio(t["own packed"], t["OpenBLAS"])]
                rows.append(cells)
            header = ["MxKxN"]
            for threads in threads_list:
                header += [f"OpenBLAS t={threads}", f"own/OB t={threads}", f"packed/OB t={threads}"]
            bu.print_table("small shapes: own time / OpenBLAS time (< 1: own faster)", header, rows)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
