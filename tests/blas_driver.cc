// blas_driver.cc — a standalone driver for runtime/cpu/blas.h, compiled by tests/test_blas.py
// once per backend (no define: scipy-openblas32; -DGRAPHC_BLAS_CBLAS; -DGRAPHC_BLAS_NONE: the
// built-in loops) with the system g++.
//
//   blas_driver name
//       prints blas::name().
//   blas_driver gemm f32|f64 TA TB M N K LDA LDB LDC A.bin B.bin C.bin
//       C.bin gets the M x LDC storage of C = op(A) op(B).  C starts as NaN everywhere, so a
//       read of C before writing (beta = 0 must not read it) or a write past column N shows.
//   blas_driver gemv f32|f64 T ROWS COLS LDA A.bin X.bin Y.bin
//       Y.bin gets y = op(A) x (ROWS entries, COLS when T); y starts as NaN.
// A.bin / B.bin / X.bin hold the operands' raw storage (row-major, leading dims as given).
// Exit status: 0 ok, 2 usage or I/O error.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "cpu/blas.h"

namespace blas = graphc::cpu::blas;

namespace {

int usage() {
  std::fprintf(stderr,
               "usage: blas_driver name | gemm f32|f64 TA TB M N K LDA LDB LDC A B C | "
               "gemv f32|f64 T ROWS COLS LDA A X Y\n");
  return 2;
}

template <class T> bool read_file(const char* path, std::vector<T>& out, size_t n) {
  out.assign(n == 0 ? 1 : n, T(0));
  FILE* f = std::fopen(path, "rb");
  if (f == nullptr) return false;
  const size_t got = n == 0 ? 0 : std::fread(out.data(), sizeof(T), n, f);
  std::fclose(f);
  return got == n;
}

template <class T> bool write_file(const char* path, const std::vector<T>& v, size_t n) {
  FILE* f = std::fopen(path, "wb");
  if (f == nullptr) return false;
  const size_t put = n == 0 ? 0 : std::fwrite(v.data(), sizeof(T), n, f);
  return std::fclose(f) == 0 && put == n;
}

template <class T> int gemm(char** a) {
  const bool ta = std::atoi(a[0]) != 0, tb = std::atoi(a[1]) != 0;
  const int m = std::atoi(a[2]), n = std::atoi(a[3]), k = std::atoi(a[4]);
  const int lda = std::atoi(a[5]), ldb = std::atoi(a[6]), ldc = std::atoi(a[7]);
  const size_t asize = static_cast<size_t>(ta ? k : m) * lda, bsize = static_cast<size_t>(tb ? n : k) * ldb;
  const size_t csize = static_cast<size_t>(m) * ldc;
  std::vector<T> A, B;
  if (!read_file(a[8], A, asize) || !read_file(a[9], B, bsize)) return 2;
  std::vector<T> C(csize == 0 ? 1 : csize, std::numeric_limits<T>::quiet_NaN());
  blas::set_threads(1);
  blas::gemm(ta, tb, m, n, k, A.data(), lda, B.data(), ldb, C.data(), ldc);
  return write_file(a[10], C, csize) ? 0 : 2;
}

template <class T> int gemv(char** a) {
  const bool t = std::atoi(a[0]) != 0;
  const int rows = std::atoi(a[1]), cols = std::atoi(a[2]), lda = std::atoi(a[3]);
  const size_t xn = static_cast<size_t>(t ? rows : cols), yn = static_cast<size_t>(t ? cols : rows);
  std::vector<T> A, X;
  if (!read_file(a[4], A, static_cast<size_t>(rows) * lda) || !read_file(a[5], X, xn)) return 2;
  std::vector<T> Y(yn == 0 ? 1 : yn, std::numeric_limits<T>::quiet_NaN());
  // The CBLAS contract leaves y untouched when the sum is empty; callers (matmul.cc) zero it
  // first, and so does this driver when there is nothing to sum.
  if (xn == 0) std::fill(Y.begin(), Y.end(), T(0));
  blas::set_threads(1);
  blas::gemv(t, rows, cols, A.data(), lda, X.data(), Y.data());
  return write_file(a[6], Y, yn) ? 0 : 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 2 && std::strcmp(argv[1], "name") == 0) {
    std::printf("%s\n", blas::name());
    return 0;
  }
  if (argc == 14 && std::strcmp(argv[1], "gemm") == 0) {
    if (std::strcmp(argv[2], "f32") == 0) return gemm<float>(argv + 3);
    if (std::strcmp(argv[2], "f64") == 0) return gemm<double>(argv + 3);
  }
  if (argc == 10 && std::strcmp(argv[1], "gemv") == 0) {
    if (std::strcmp(argv[2], "f32") == 0) return gemv<float>(argv + 3);
    if (std::strcmp(argv[2], "f64") == 0) return gemv<double>(argv + 3);
  }
  return usage();
}
