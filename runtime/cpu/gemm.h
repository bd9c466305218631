// gemm.h — graphc's own float32 GEMM: C = op(A) * op(B), AVX-512 or AVX2+FMA micro-kernels
// picked at run time, B optionally packed once (constant weights), a per-range epilogue hook.
//
// Why our own: OpenBLAS repacks B on every call and its thread hand-off is costly on small
// machines; ONNX Runtime (MLAS) packs constant weights once at load and wins the batch-128
// MLP.  This GEMM does the same (docs/gemm.md has the design, the blocking and the figures).
//
// Determinism: every element of C is computed by exactly one thread as one chain of fused
// multiply-adds over k = 0, 1, ..., K-1 in that order, starting from 0.  Blocking, the
// thread partition and the packing never change that chain, so for a given A and B:
//   - results are bit-identical for every thread count, packed or unpacked B, and
//   - bit-identical between the AVX-512 and AVX2 kernels (both use FMA);
//   - the portable fallback (kernel_name() == "none", no FMA in baseline x86-64) rounds the
//     product before the add, so it may differ from them in the last bits.
// Against OpenBLAS / numpy (which sum in another order) results differ by rounding only:
// |C - C_exact| <= K * 2^-23 * sum_k |A_ik B_kj| (the usual bound; tests use it).
//
// Example (C++):
//   auto pb = graphc::cpu::gemm::pack_b(false, K, N, W, N);           // once, at load
//   graphc::cpu::gemm::sgemm(false, false, M, N, K, X, K, W, N, pb.get(), Y, N, threads);
#pragma once

#include <cstdint>
#include <memory>

namespace graphc {
namespace cpu {
namespace gemm {

// True when an own SIMD kernel (AVX2+FMA or AVX-512) runs on this CPU.  When false, sgemm
// still works (portable C++ kernel) but callers should prefer OpenBLAS.
bool available();

// The kernel sgemm uses now: "avx512", "avx2" or "none" (the portable fallback).
const char* kernel_name();

// Test and benchmark hook: use kernel `name` ("avx512", "avx2", "none"), or "auto" for the
// best one this CPU has (the default; the env var GRAPHC_GEMM_KERNEL sets the initial choice).
// Returns false (and changes nothing) when the CPU cannot run `name` or the name is unknown.
// Not synchronised with concurrent sgemm calls: set it before starting work.
bool set_kernel(const char* name);

// B (K x N after op) packed into the kernel's column panels: panel p holds columns
// [p*nr, p*nr + nr) for every k, nr floats per k, zero-padded past N.  Immutable once built,
// so one PackedB may be shared by any number of threads and calls.  It belongs to the kernel
// that packed it (nr differs between kernels); sgemm rejects it under another kernel.
struct PackedB {
  int64_t K = 0, N = 0;
  int nr = 0;                 // panel width of the kernel that packed it
  const char* kernel = "";    // kernel_name() when it was packed
  int64_t panels() const { return (N + nr - 1) / nr; }
  const float* panel(int64_t p) const { return data + p * K * nr; }
  // Internal storage (64-byte aligned).
  float* data = nullptr;
  std::shared_ptr<float> storage;
};

// Packs B (stored K x N with row stride ldb, or N x K when trans_b) for the current kernel.
// Throws std::invalid_argument for negative sizes or a too-small ldb.
std::shared_ptr<const PackedB> pack_b(bool trans_b, int64_t K, int64_t N, const float* B, int64_t ldb);

// Called with a flat range [begin, end) of C's elements (row-major, index i*N + j) once they
// hold their final value, by the thread that computed them, while they are still in cache.
// Every element of C is covered by exactly one call.  Ranges never cross a row.
using RangeFn = void (*)(void* ctx, int64_t begin, int64_t end);

// C (M x N, row stride ldc) = op(A) (M x K) * op(B) (K x N), beta = 0: C is only written,
// never read before it is written (NaN already in C cannot leak in).  A is stored M x K
// (lda >= K) or, when trans_a, K x M (lda >= M); B is stored K x N (ldb >= N) or, when
// trans_b, N x K (ldb >= K).  `packed` may be null; when given it must be pack_b of this very
// B and trans_b (B and ldb are then unused and may be null / 0).  K == 0 writes zeros; M or
// N == 0 does nothing.  `threads` >= 1 runs on the shared WorkerPool (common.h).  With an
// epilogue, ldc must equal N.  Throws std::invalid_argument on bad sizes / strides / packing.
void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda,
           const float* B, int64_t ldb, const PackedB* packed, float* C, int64_t ldc, int threads,
           RangeFn epilogue = nullptr, void* epilogue_ctx = nullptr);

// Whether sgemm is expected to beat OpenBLAS for this shape and thread count on this kernel
// (measured crossovers, docs/gemm.md); `packed` says whether B comes pre-packed.  False when
// !available().
bool prefer_own(int64_t M, int64_t N, int64_t K, int threads, bool packed);

// ---- internal: what an ISA translation unit provides -------------------------------------
// micro(kc, a, b, c, ldc, ncols, accumulate): for r < R rows and j < ncols (<= nr) columns,
//   acc = accumulate ? c[r*ldc + j] : 0;  acc = fma(a[k*R + r], b[k*nr + j], acc) for k < kc;
//   c[r*ldc + j] = acc.
// a is packed k-major with R floats per k; b is a panel slice (nr floats per k, zero padded).
using MicroFn = void (*)(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, int64_t ncols,
                         bool accumulate);
constexpr int kMaxMr = 16;
struct KernelSet {
  const char* name;
  int mr;                      // rows per micro-kernel call (1..mr supported)
  int nr;                      // panel width
  MicroFn micro[kMaxMr + 1];   // micro[r] computes r rows; micro[0] unused
};
// nullptr when the ISA was not compiled in (non-x86) or the CPU lacks it.
const KernelSet* avx512_kernels();
const KernelSet* avx2_kernels();
const KernelSet* portable_kernels();

}  // namespace gemm
}  // namespace cpu
}  // namespace graphc
