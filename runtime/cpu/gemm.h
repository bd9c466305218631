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
// aot-sources: gemm.cc gemm_avx2.cc gemm_avx512.cc
#pragma once

#include <cstdint>
#include <memory>

namespace graphc {
namespace cpu {
namespace gemm {

// True when an own SIMD kernel (AVX2+FMA or AVX-512) runs: the CPU has one and the ISA cap
// (isa.h: GRAPHC_ISA, set_isa_cap) allows it.  When false, sgemm still works (portable C++
// kernel) but callers should prefer OpenBLAS.  Throws std::invalid_argument for a bad GRAPHC_ISA.
bool available();

// The kernel sgemm uses now: "avx512", "avx2" or "none" (the portable fallback).  It follows
// isa.h's active_isa() on every call unless set_kernel forced one.
const char* kernel_name();

// Test and benchmark hook: force kernel `name` ("avx512", "avx2", "none"), or "auto" to
// follow active_isa() again (the default).  Returns false (and changes nothing) when the CPU
// cannot run `name` or the name is unknown.  Not synchronised with concurrent sgemm calls
// (a PackedB from another kernel is rejected): set it before starting work.
bool set_kernel(const char* name);

// B (K x N after op) packed into the kernel's column panels: panel p holds columns
// [p*nr, p*nr + nr) for every k, nr floats per k, zero-padded past N.  Immutable once built,
// so one PackedB may be shared by any number of threads and calls.  It belongs to the kernel
// that packed it (nr differs between kernels); sgemm rejects it under another kernel.
struct PackedB {
  int64_t K = 0, N = 0;
  int nr = 0;                 // panel width of the kernel that packed it (narrower for small N)
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

// A PackedB with storage for a K x N B under any kernel and nothing packed yet (kernel ""),
// for repack_b: a caller that repacks a changing B allocates once, when it prepares.
std::shared_ptr<PackedB> alloc_packed_b(int64_t K, int64_t N);
// Packs B into `pb` (from alloc_packed_b(K, N) with this K and N) for the current kernel, in
// place: allocates nothing.  The caller makes sure no sgemm reads `pb` meanwhile.
void repack_b(PackedB& pb, bool trans_b, const float* B, int64_t ldb);

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
// `scratch`: at least scratch_floats(M, N, K, threads, packed != nullptr) floats, 64-byte
// aligned, this call's alone (callers running concurrently need their own): the call then
// allocates nothing.  Null: per-thread buffers, allocated by each thread's first call.
void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda,
           const float* B, int64_t ldb, const PackedB* packed, float* C, int64_t ldc, int threads,
           RangeFn epilogue = nullptr, void* epilogue_ctx = nullptr, float* scratch = nullptr);

// The scratch sgemm needs for this product (an upper bound under every kernel; a multiple
// of 16 floats): A strips and, unless B is packed, B blocks, per thread task.
int64_t scratch_floats(int64_t M, int64_t N, int64_t K, int threads, bool packed);

// Owns scratch for sgemm: sized at construction (prepare time), 64-byte aligned.
class Scratch {
 public:
  Scratch() = default;
  explicit Scratch(int64_t floats);
  float* data() const { return data_.get(); }

 private:
  std::shared_ptr<float> data_;
};

// The partition sgemm uses: row_groups x col_groups rectangles of C, one per pool task (1 x 1:
// the calling thread alone).  Products under ~2^20 multiply-adds run on one thread.
void thread_grid(int64_t M, int64_t N, int64_t K, int threads, int& row_groups, int& col_groups);

// Whether sgemm is expected to beat OpenBLAS for this shape and thread count on this kernel
// (measured crossovers, docs/gemm.md); `packed` says whether B comes pre-packed.  False when
// !available().
bool prefer_own(int64_t M, int64_t N, int64_t K, int threads, bool packed);

// ---- internal: what an ISA translation unit provides -------------------------------------
// micro(kc, a, as, b, bs, c, ldc, ncols, accumulate): for r < R rows and j < ncols (<= nr)
// columns, acc = accumulate ? c[r*ldc + j] : 0;  acc = fma(A(r, k), b[k*bs + j], acc) for k < kc;
//   c[r*ldc + j] = acc.
// micro[R] reads A k-major, A(r, k) = a[k*as + r] (the packed strip with as = R, or a
// transposed A in place with as = lda); micro_rows[R] reads A row-major, A(r, k) = a[r*as + k]
// (a non-transposed A in place, as = lda).  b: a packed panel slice (bs = nr, zero padded past
// N) or a non-transposed B in place (bs = ldb); all nr columns of b are read, whatever ncols,
// unless the set has masked_b_loads (then only the first ncols).
using MicroFn = void (*)(int64_t kc, const float* a, int64_t as, const float* b, int64_t bs, float* c,
                         int64_t ldc, int64_t ncols, bool accumulate);
// pack_trans(s, ld, kc, w, nr, d): d[k*nr + j] = s[j*ld + k] for j < w, k < kc (packing a
// transposed B's panel); null: the portable loop.
using PackTransFn = void (*)(const float* s, int64_t ld, int64_t kc, int64_t w, int nr, float* d);
constexpr int kMaxMr = 16;
struct KernelSet {
  const char* name;
  int mr;                        // rows per micro-kernel call (1..mr supported)
  int nr;                        // panel width
  MicroFn micro[kMaxMr + 1];     // micro[r] computes r rows; micro[0] unused
  MicroFn micro_rows[kMaxMr + 1];
  const KernelSet* narrow;     // used instead when N <= narrow->nr (a narrower panel), or null
  PackTransFn pack_trans;      // or null
  bool masked_b_loads;         // micro reads only ncols columns of b: a partial panel in place
};
// The set sgemm and pack_b use for N columns: `ks` or its narrow variant.
inline const KernelSet* kernels_for(const KernelSet* ks, int64_t N) {
  return ks->narrow != nullptr && N <= ks->narrow->nr ? ks->narrow : ks;
}
// nullptr when the ISA was not compiled in (non-x86) or the CPU lacks it.
const KernelSet* avx512_kernels();
#if defined(__x86_64__)
void pack_trans_avx2(const float* s, int64_t ld, int64_t kc, int64_t w, int nr, float* d);
#endif
const KernelSet* avx2_kernels();
const KernelSet* portable_kernels();

}  // namespace gemm
}  // namespace cpu
}  // namespace graphc
