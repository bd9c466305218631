// blas.h — the one place the CPU kernels call a BLAS: row-major C = op(A) op(B) and
// y = op(A) x (alpha 1, beta 0) in float32 and float64, the library's thread count and name.
//
// The backend is fixed at compile time, so an AOT artifact (graphc compile --emit c) can be
// built against whatever its target has:
//   (no define)          scipy-openblas32, the OpenBLAS graphc itself links (scipy_cblas_*,
//                        scipy_openblas_set_num_threads) — the Python Session's backend, so
//                        an artifact built this way computes the Session's bits;
//   GRAPHC_BLAS_CBLAS    any CBLAS through <cblas.h> (cblas_*); set_threads calls
//                        openblas_set_num_threads when GRAPHC_BLAS_OPENBLAS is defined too,
//                        otherwise it is a no-op (the library's own setting applies);
//   GRAPHC_BLAS_NONE     the portable loops below: no library at all, single-threaded.
// Other backends sum in other orders, so their results differ from the default's by rounding
// only (|C - C_exact| <= K * eps * sum_k |A_ik B_kj|); paths that do not go through BLAS
// (gemm.h, gemv.h) are unaffected.
//
// No function here allocates (the built-in loops use fixed stack tiles).  OpenBLAS allocates
// its own buffers inside its first call on each thread (prepare_thread makes that call) and
// starts its threads when it is loaded; that is outside graphc's control (docs/runtime.md,
// "Allocation").
//
// Example:
//   graphc::cpu::blas::set_threads(1);
//   graphc::cpu::blas::gemm(false, true, M, N, K, A, K, B, K, C, N);   // C = A B^T
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>

#if defined(GRAPHC_BLAS_NONE)
// nothing to include
#elif defined(GRAPHC_BLAS_CBLAS)
#include <cblas.h>
#if defined(GRAPHC_BLAS_OPENBLAS)
extern "C" void openblas_set_num_threads(int num_threads);
#endif
#else
#include <cblas.h>  // scipy_openblas32's header (include dir from setup.py / the Makefile)
#endif

namespace graphc {
namespace cpu {
namespace blas {

// Dimensions and leading dimensions must fit in int (callers check: matmul.cc).
// gemm: C (m x n, row stride ldc) = op(A) op(B); A stored (m x k) or, transposed, (k x m)
// with row stride lda; B stored (k x n) or (n x k) with row stride ldb.  k == 0 gives zeros.
// gemv: y = op(A) x, A stored (rows x cols) with row stride lda; y has rows entries
// (cols when transposed).  Callers zero y first when K could be 0 on another backend.

#if defined(GRAPHC_BLAS_NONE)

namespace builtin {

// Tiles of op(B) (kKc x kNc) and of one row of op(A) (kKc), packed contiguous on the stack
// so that every case (transposed or not) runs the same inner loop over contiguous memory:
// 128 x 64 doubles = 64 KiB at most.  For each C element the sum runs k = 0, 1, ..., K-1 in
// order from 0, whatever the blocking.
constexpr int kKc = 128;
constexpr int kNc = 64;
constexpr int kMc = 64;

template <class T>
void gemm(bool ta, bool tb, int m, int n, int k, const T* a, int lda, const T* b, int ldb, T* c, int ldc) {
  if (m <= 0 || n <= 0) return;
  for (int i = 0; i < m; ++i) {
    T* row = c + static_cast<ptrdiff_t>(i) * ldc;
    std::fill(row, row + n, T(0));
  }
  if (k <= 0) return;
  T bt[kKc * kNc];
  T arow[kKc];
  for (int j0 = 0; j0 < n; j0 += kNc) {
    const int nb = std::min(kNc, n - j0);
    for (int p0 = 0; p0 < k; p0 += kKc) {
      const int kb = std::min(kKc, k - p0);
      // bt[p][j] = op(B)[p0 + p][j0 + j]
      for (int p = 0; p < kb; ++p) {
        T* dst = bt + p * kNc;
        if (!tb) {
          const T* src = b + static_cast<ptrdiff_t>(p0 + p) * ldb + j0;
          for (int j = 0; j < nb; ++j) dst[j] = src[j];
        } else {
          const T* src = b + static_cast<ptrdiff_t>(j0) * ldb + (p0 + p);
          for (int j = 0; j < nb; ++j) dst[j] = src[static_cast<ptrdiff_t>(j) * ldb];
        }
      }
      for (int i0 = 0; i0 < m; i0 += kMc) {
        const int mb = std::min(kMc, m - i0);
        for (int i = i0; i < i0 + mb; ++i) {
          for (int p = 0; p < kb; ++p) {
            arow[p] = ta ? a[static_cast<ptrdiff_t>(p0 + p) * lda + i] : a[static_cast<ptrdiff_t>(i) * lda + p0 + p];
          }
          T* crow = c + static_cast<ptrdiff_t>(i) * ldc + j0;
          for (int p = 0; p < kb; ++p) {
            const T av = arow[p];
            const T* brow = bt + p * kNc;
            for (int j = 0; j < nb; ++j) crow[j] += av * brow[j];
          }
        }
      }
    }
  }
}

template <class T>
void gemv(bool t, int rows, int cols, const T* a, int lda, const T* x, T* y) {
  if (!t) {
    for (int i = 0; i < rows; ++i) {
      const T* r = a + static_cast<ptrdiff_t>(i) * lda;
      T s = 0;
      for (int j = 0; j < cols; ++j) s += r[j] * x[j];
      y[i] = s;
    }
  } else {
    for (int j = 0; j < cols; ++j) y[j] = 0;
    for (int i = 0; i < rows; ++i) {
      const T* r = a + static_cast<ptrdiff_t>(i) * lda;
      const T xi = x[i];
      for (int j = 0; j < cols; ++j) y[j] += xi * r[j];
    }
  }
}

}  // namespace builtin

inline void gemm(bool ta, bool tb, int m, int n, int k, const float* a, int lda, const float* b, int ldb, float* c,
                 int ldc) {
  builtin::gemm<float>(ta, tb, m, n, k, a, lda, b, ldb, c, ldc);
}
inline void gemm(bool ta, bool tb, int m, int n, int k, const double* a, int lda, const double* b, int ldb,
                 double* c, int ldc) {
  builtin::gemm<double>(ta, tb, m, n, k, a, lda, b, ldb, c, ldc);
}
inline void gemv(bool t, int rows, int cols, const float* a, int lda, const float* x, float* y) {
  builtin::gemv<float>(t, rows, cols, a, lda, x, y);
}
inline void gemv(bool t, int rows, int cols, const double* a, int lda, const double* x, double* y) {
  builtin::gemv<double>(t, rows, cols, a, lda, x, y);
}
inline void set_threads(int) {}
inline const char* name() { return "builtin"; }

#else  // a CBLAS: scipy-openblas32's prefixed one by default, or <cblas.h>'s cblas_*

#if defined(GRAPHC_BLAS_CBLAS)
#define GRAPHC_CBLAS_FN(f) cblas_##f
#else
#define GRAPHC_CBLAS_FN(f) scipy_cblas_##f
#endif

inline CBLAS_TRANSPOSE trans(bool t) { return t ? CblasTrans : CblasNoTrans; }

inline void gemm(bool ta, bool tb, int m, int n, int k, const float* a, int lda, const float* b, int ldb, float* c,
                 int ldc) {
  GRAPHC_CBLAS_FN(sgemm)(CblasRowMajor, trans(ta), trans(tb), m, n, k, 1.0f, a, lda, b, ldb, 0.0f, c, ldc);
}
inline void gemm(bool ta, bool tb, int m, int n, int k, const double* a, int lda, const double* b, int ldb,
                 double* c, int ldc) {
  GRAPHC_CBLAS_FN(dgemm)(CblasRowMajor, trans(ta), trans(tb), m, n, k, 1.0, a, lda, b, ldb, 0.0, c, ldc);
}
inline void gemv(bool t, int rows, int cols, const float* a, int lda, const float* x, float* y) {
  GRAPHC_CBLAS_FN(sgemv)(CblasRowMajor, trans(t), rows, cols, 1.0f, a, lda, x, 1, 0.0f, y, 1);
}
inline void gemv(bool t, int rows, int cols, const double* a, int lda, const double* x, double* y) {
  GRAPHC_CBLAS_FN(dgemv)(CblasRowMajor, trans(t), rows, cols, 1.0, a, lda, x, 1, 0.0, y, 1);
}
#undef GRAPHC_CBLAS_FN

#if defined(GRAPHC_BLAS_CBLAS)
#if defined(GRAPHC_BLAS_OPENBLAS)
// OpenBLAS keeps one process-wide thread count: set before each call.
inline void set_threads(int threads) { openblas_set_num_threads(threads); }
inline const char* name() { return "cblas (openblas)"; }
#else
inline void set_threads(int) {}
inline const char* name() { return "cblas"; }
#endif
#else
// OpenBLAS keeps one process-wide thread count: set before each call.
inline void set_threads(int threads) { scipy_openblas_set_num_threads(threads); }
inline const char* name() { return "scipy-openblas32"; }
#endif

#endif

// Makes the library's per-thread allocations on the calling thread now: OpenBLAS's first call
// on a thread allocates its thread-local buffers (the dynamic linker's TLS block, ~140 KiB).
// matmul's BLAS steps call it when they are prepared, so a plan prepared and run on one thread
// allocates nothing inside BLAS calls.
inline void prepare_thread() {
  float a = 0.0f, b = 0.0f, c = 0.0f;
  set_threads(1);
  gemm(false, false, 1, 1, 1, &a, 1, &b, 1, &c, 1);
}

}  // namespace blas
}  // namespace cpu
}  // namespace graphc
