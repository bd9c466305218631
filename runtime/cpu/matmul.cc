// matmul.cc — (..., M, K) @ (..., K, N) with numpy batch broadcasting, via OpenBLAS gemm.
#include <climits>

#include <cblas.h>

#include "common.h"

namespace graphc {
namespace cpu {
namespace {

inline void gemm(const float* a, const float* b, float* c, blasint m, blasint n, blasint k) {
  scipy_cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1.0f, a, k, b, n, 0.0f, c, n);
}
inline void gemm(const double* a, const double* b, double* c, blasint m, blasint n, blasint k) {
  scipy_cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1.0, a, k, b, n, 0.0, c, n);
}

template <class T> Kernel matmul_kernel(const KernelArgs& args) {
  args.expect_arity(2, 1);
  const TensorRef &a = args.in[0], &b = args.in[1], &y = args.out[0];
  expect_dtype(args, b, a.dtype, "input 1");
  expect_dtype(args, y, a.dtype, "output");
  if (a.dims.size() < 2 || b.dims.size() < 2) {
    args.fail("inputs must have rank >= 2, got " + format_dims(a.dims) + " and " + format_dims(b.dims));
  }
  const int64_t M = a.dims[a.dims.size() - 2], K = a.dims.back();
  const int64_t K2 = b.dims[b.dims.size() - 2], N = b.dims.back();
  if (K != K2) {
    args.fail("expects input 1 of shape (..., " + std::to_string(K) + ", N), got " + format_dims(b.dims));
  }
  if (M > INT_MAX || N > INT_MAX || K > INT_MAX) args.fail("matrix dims exceed the BLAS int range");
  std::vector<int64_t> abatch(a.dims.begin(), a.dims.end() - 2), bbatch(b.dims.begin(), b.dims.end() - 2);
  std::vector<int64_t> batch(y.dims.begin(), y.dims.end() - std::min<size_t>(2, y.dims.size()));
  std::vector<int64_t> want = batch;
  want.push_back(M);
  want.push_back(N);
  expect_dims(args, y, want, "output");
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
  const int threads = args.ctx.threads;
  return [=]() {
    if (M == 0 || N == 0) return;
    if (K == 0) {
      std::memset(py, 0, static_cast<size_t>(nbatch * M * N) * sizeof(T));
      return;
    }
    // OpenBLAS keeps one global thread count; set it to this session's before each call.
    scipy_openblas_set_num_threads(threads);
    for (int64_t i = 0; i < nbatch; ++i) {
      gemm(pa + aoff[i], pb + boff[i], py + i * M * N, static_cast<blasint>(M), static_cast<blasint>(N),
           static_cast<blasint>(K));
    }
  };
}

}  // namespace
}  // namespace cpu

void register_matmul_kernels(KernelRegistry& r) {
  r.add("matmul", DType::F32, cpu::matmul_kernel<float>);
  r.add("matmul", DType::F64, cpu::matmul_kernel<double>);
}

}  // namespace graphc
