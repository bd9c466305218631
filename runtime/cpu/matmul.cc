// matmul.cc — op(a) @ op(b) over the last two axes (op = identity or swap, from the
// transpose_a / transpose_b attrs), numpy batch broadcasting, via OpenBLAS.
//
// Transposed operands are never copied: the trans flags and leading dims go to BLAS.
// A product with one row or one column goes to gemv (OpenBLAS's gemm with M == 1 is
// several times slower than gemv), and products below kSmallWork multiply-adds run
// single-threaded: on 2 cores, OpenBLAS's thread hand-off costs more than it saves for
// them, and under load it collapses (docs/benchmarks.md, finding 1).
#include <climits>

#include <cblas.h>

#include "common.h"

namespace graphc {
namespace cpu {
namespace {

// M*N*K below which OpenBLAS runs on one thread.  Not swept: 2^22 keeps every MLP batch-1
// layer (<= 2^20) single-threaded and every batch-128 hidden layer (>= 2^26.6)
// multi-threaded; (128,1024)@(1024,10) (2^20.3) runs single-threaded (docs/benchmarks.md).
constexpr int64_t kSmallWork = int64_t(1) << 22;

inline CBLAS_TRANSPOSE tr(bool t) { return t ? CblasTrans : CblasNoTrans; }

inline void gemm(bool ta, bool tb, blasint m, blasint n, blasint k, const float* a, blasint lda,
                 const float* b, blasint ldb, float* c) {
  scipy_cblas_sgemm(CblasRowMajor, tr(ta), tr(tb), m, n, k, 1.0f, a, lda, b, ldb, 0.0f, c, n);
}
inline void gemm(bool ta, bool tb, blasint m, blasint n, blasint k, const double* a, blasint lda,
                 const double* b, blasint ldb, double* c) {
  scipy_cblas_dgemm(CblasRowMajor, tr(ta), tr(tb), m, n, k, 1.0, a, lda, b, ldb, 0.0, c, n);
}
// y = op(A) x with A stored row-major (rows x cols).
inline void gemv(bool t, blasint rows, blasint cols, const float* a, const float* x, float* y) {
  scipy_cblas_sgemv(CblasRowMajor, tr(t), rows, cols, 1.0f, a, std::max<blasint>(cols, 1), x, 1, 0.0f, y, 1);
}
inline void gemv(bool t, blasint rows, blasint cols, const double* a, const double* x, double* y) {
  scipy_cblas_dgemv(CblasRowMajor, tr(t), rows, cols, 1.0, a, std::max<blasint>(cols, 1), x, 1, 0.0, y, 1);
}

template <class T> Kernel matmul_kernel(const KernelArgs& args) {
  args.expect_arity(2, 1);
  const TensorRef &a = args.in[0], &b = args.in[1], &y = args.out[0];
  expect_dtype(args, b, a.dtype, "input 1");
  expect_dtype(args, y, a.dtype, "output");
  if (a.dims.size() < 2 || b.dims.size() < 2) {
    args.fail("inputs must have rank >= 2, got " + format_dims(a.dims) + " and " + format_dims(b.dims));
  }
  const attrs::Matmul attr(args);
  const bool ta = attr.transpose_a, tb = attr.transpose_b;
  // Stored shapes: a is (ar, ac), b is (br, bc) per batch.
  const int64_t ar = a.dims[a.dims.size() - 2], ac = a.dims.back();
  const int64_t br = b.dims[b.dims.size() - 2], bc = b.dims.back();
  const int64_t M = ta ? ac : ar, K = ta ? ar : ac;
  const int64_t K2 = tb ? bc : br, N = tb ? br : bc;
  if (K != K2) {
    args.fail("expects input 1 of shape " + std::string(tb ? "(..., N, " : "(..., ") + std::to_string(K) +
              (tb ? ")" : ", N)") + " (transpose_a=" + (ta ? "true" : "false") + ", transpose_b=" +
              (tb ? "true" : "false") + "), got " + format_dims(b.dims));
  }
  if (ar > INT_MAX || ac > INT_MAX || br > INT_MAX || bc > INT_MAX) {
    args.fail("matrix dims exceed the BLAS int range: " + format_dims(a.dims) + " and " + format_dims(b.dims));
  }
  std::vector<int64_t> abatch(a.dims.begin(), a.dims.end() - 2), bbatch(b.dims.begin(), b.dims.end() - 2);
  std::vector<int64_t> batch = broadcast_dims(args, {abatch, bbatch}, "batch dims of the inputs");
  std::vector<int64_t> want = batch;
  want.push_back(M);
  want.push_back(N);
  expect_dims(args, y, want, "output");
  // An empty output: nothing to write (and the batch offsets below would be products of
  // possibly huge dims).
  if (numel_of(y) == 0) return no_op_kernel();
  // Element offsets of each batch's A and B matrices, broadcast like numpy.
  auto loop = StridedLoop<2>::broadcast(batch, {abatch, bbatch});
  const int64_t nbatch = numel_of(batch);
  std::vector<int64_t> aoff, boff;
  aoff.reserve(nbatch);
  boff.reserve(nbatch);
  loop.run(1, 1, [&](int64_t, const std::array<int64_t, 2>& off, int64_t n, const std::array<int64_t, 2>& s) {
    for (int64_t i = 0; i < n; ++i) {
      aoff.push_back((off[0] + i * s[0]) * M * K);
      boff.push_back((off[1] + i * s[1]) * K * N);
    }
  });
  const T* pa = a.as<const T>();
  const T* pb = b.as<const T>();
  T* py = y.as<T>();
  const int threads = saturating_mul(saturating_mul(M, N), K) < kSmallWork ? 1 : args.ctx.threads;
  const blasint lda = static_cast<blasint>(std::max<int64_t>(ac, 1));
  const blasint ldb = static_cast<blasint>(std::max<int64_t>(bc, 1));
  const blasint m = static_cast<blasint>(M), n = static_cast<blasint>(N), k = static_cast<blasint>(K);
  // 0: gemm; 1: one row (y^T = op(B)^T x, x = the row of op(A), contiguous whether or not
  // transposed since M == 1); 2: one column (y = op(A) x, x = the column of op(B)).
  const int mode = M == 1 ? 1 : (N == 1 ? 2 : 0);
  const size_t ybytes = static_cast<size_t>(nbatch * M * N) * sizeof(T);
  return [=]() {
    if (K == 0 || mode != 0) {
      // K == 0: the result is zeros.  gemv: zero y first so that beta = 0 never meets
      // garbage (some OpenBLAS versions scale y by beta, propagating NaN).
      std::memset(py, 0, ybytes);
      if (K == 0) return;
    }
    // OpenBLAS keeps one global thread count; set it to this step's before each call.
    scipy_openblas_set_num_threads(threads);
    for (int64_t i = 0; i < nbatch; ++i) {
      const T* ai = pa + aoff[i];
      const T* bi = pb + boff[i];
      T* yi = py + i * M * N;
      if (mode == 1) {
        // B stored (K, N): y = B^T x; stored (N, K) (tb): y = B x.
        if (tb) gemv(false, n, k, bi, ai, yi);
        else gemv(true, k, n, bi, ai, yi);
      } else if (mode == 2) {
        // A stored (M, K): y = A x; stored (K, M) (ta): y = A^T x.
        if (ta) gemv(true, k, m, ai, bi, yi);
        else gemv(false, m, k, ai, bi, yi);
      } else {
        gemm(ta, tb, m, n, k, ai, lda, bi, ldb, yi);
      }
    }
  };
}

}  // namespace
}  // namespace cpu

void register_matmul_kernels(KernelRegistry& r) {
  cpu::add_typed<cpu::FloatTypes>(r, "matmul", [](auto tag, const KernelArgs& a) {
    return cpu::matmul_kernel<typename decltype(tag)::type>(a);
  });
}

}  // namespace graphc
