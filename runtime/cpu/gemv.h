// gemv.h — graphc's float32 matrix-vector kernels (AVX-512 and AVX2+FMA, picked at run
// time), the batch-1 path of matmul.
//
// Two forms cover every matmul with one row or one column (matmul.cc maps them):
//   axpy form  y[j] = sum_k x[k] * W[k*ldw + j]    (x @ W, W stored K x N)
//   dot form   y[i] = sum_k W[i*ldw + k] * x[k]    (W @ x, W stored N x K)
// Each call computes a range of outputs on the calling thread; the caller splits the
// outputs over threads.  Why our own: OpenBLAS's sgemv is single-threaded for these sizes
// and its M == 1 sgemm is several times slower; ONNX Runtime (MLAS) threads the GEMV and
// won the batch-1 MLP (docs/benchmarks.md, "Batch-1 matmul").
//
// Determinism: an output's value depends only on x, W and the form, never on the range
// or thread that computes it, so results are bit-identical for any thread count and any
// split.  Both ISA versions compute the same arithmetic, so they agree bit for bit:
//   axpy form: acc = 0; acc = fma(x[k], W[k][j], acc) for k = 0, 1, ..., K-1 — the very
//              chain of gemm.h's kernels, so a one-row product gives the same bits on the
//              GEMV and the own-GEMM path;
//   dot form:  32 partial sums, lane l = the fma chain over k = l, l+32, l+64, ... (from
//              0), then summed pairwise: lane i += lane i+16, then i+8, i+4, i+2, i+1.
// Against OpenBLAS / numpy results differ by rounding only (|err| <= K * 2^-23 * sum|x W|).
// aot-sources: gemv.cc
#pragma once

#include <cstdint>
#include <string>

namespace graphc {
namespace cpu {
namespace gemv {

// y[j] for j in [j0, j1): axpy form (see above); W holds K rows of stride ldw >= j1.
using AxpyFn = void (*)(int64_t K, const float* x, const float* W, int64_t ldw, float* y, int64_t j0, int64_t j1);
// y[i] for i in [i0, i1): dot form; W holds rows of K floats with stride ldw >= K.
using DotFn = void (*)(int64_t K, const float* x, const float* W, int64_t ldw, float* y, int64_t i0, int64_t i1);

struct Kernels {
  const char* name;  // "avx512" or "avx2"
  AxpyFn axpy;
  DotFn dot;
};

// The kernels for `want` ("auto": those of isa.h's active_isa(), so GRAPHC_ISA caps them
// too; "avx512", "avx2": that one), or nullptr when the CPU (or a non-x86 build) cannot run
// it, for "auto" under GRAPHC_ISA=baseline, and for "none" / an unknown name: callers then
// use BLAS.
const Kernels* kernels_for(const std::string& want);

// kernels_for(GRAPHC_GEMV_KERNEL, default "auto"); the env var is read on every call (at
// plan load), so tests can switch it between sessions.
const Kernels* selected();

}  // namespace gemv
}  // namespace cpu
}  // namespace graphc
