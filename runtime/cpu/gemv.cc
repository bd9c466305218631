// gemv.cc — the AVX-512 and AVX2+FMA matrix-vector kernels of gemv.h.
//
// Only the functions below get an ISA target (per-function attribute, the std headers stay
// baseline), so this file builds with baseline x86-64 flags and is a stub elsewhere: on a
// CPU or build without the ISAs kernels_for() returns nullptr and matmul uses OpenBLAS.
//
// axpy form: a block of NV vectors of columns is held in registers for the whole K loop
// (one broadcast of x[k], NV loads and NV FMAs per k), so y is written once and each W
// row segment is streamed once.  dot form: R rows at a time, each with 32 lanes of
// partial sums (two zmm or four ymm: the same lanes on both ISAs, see gemv.h), x loaded
// once per 32 k for all R rows.
#include "gemv.h"

#include "isa.h"

#include <algorithm>
#include <cstdlib>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

#define GRAPHC_GEMV_AVX512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")))
#define GRAPHC_GEMV_AVX2 __attribute__((target("avx2,fma")))

namespace graphc {
namespace cpu {
namespace gemv {
namespace {

// The pairwise sum of 32 partial sums in gemv.h's order (lane i += lane i+16, i+8, ...).
// Scalar and shared by both ISAs, so their results cannot drift apart; it runs once per
// output, off the hot loop.
inline float reduce32(float* l) {
  for (int w = 16; w >= 1; w /= 2) {
    for (int i = 0; i < w; ++i) l[i] += l[i + w];
  }
  return l[0];
}

// axpy form: ranges at least this wide stream W row by row (axpy_rows*); narrower ones keep
// their columns in registers (fewer loads and stores of y; 1.1 vs 2.9 us for 1024x10).
constexpr int64_t kRowsMinWidth = 64;
// Columns of y per row-streaming block: 4 KB, in L1 next to the four W row segments.
constexpr int64_t kRowBlock = 1024;

// ---- AVX-512 ------------------------------------------------------------------------------

GRAPHC_GEMV_AVX512 inline __mmask16 mask16(int64_t n) {
  return n >= 16 ? __mmask16(0xFFFF) : n <= 0 ? __mmask16(0) : __mmask16((1u << n) - 1);
}

// y[0, 16*NV) over all K (W, y already offset to the block's first column).
template <int NV>
GRAPHC_GEMV_AVX512 void axpy_block512(int64_t K, const float* x, const float* W, int64_t ldw, float* y) {
  __m512 acc[NV];
#pragma GCC unroll 16
  for (int v = 0; v < NV; ++v) acc[v] = _mm512_setzero_ps();
  for (int64_t k = 0; k < K; ++k) {
    const __m512 xk = _mm512_set1_ps(x[k]);
    const float* w = W + k * ldw;
#pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) acc[v] = _mm512_fmadd_ps(xk, _mm512_loadu_ps(w + 16 * v), acc[v]);
  }
#pragma GCC unroll 16
  for (int v = 0; v < NV; ++v) _mm512_storeu_ps(y + 16 * v, acc[v]);
}

// y[0, n) for n < 16.
GRAPHC_GEMV_AVX512 void axpy_tail512(int64_t K, const float* x, const float* W, int64_t ldw, float* y, int64_t n) {
  const __mmask16 m = mask16(n);
  __m512 acc = _mm512_setzero_ps();
  for (int64_t k = 0; k < K; ++k) {
    acc = _mm512_fmadd_ps(_mm512_set1_ps(x[k]), _mm512_maskz_loadu_ps(m, W + k * ldw), acc);
  }
  _mm512_mask_storeu_ps(y, m, acc);
}

// Wide ranges: W streamed row by row (four rows per pass, each a contiguous segment the
// hardware prefetcher follows) into a block of y kept in L1.  y[j] still gets the same
// chain fma(x[k], W[k][j], acc) for k = 0, 1, ... (the four fmas of a pass are applied in
// k order), so the result is the one of the register-blocked loop below.  Holding columns
// in registers for the whole K loop instead reads each row segment from another page,
// where the prefetcher stops: 54 vs 43 us for 784x1024 on one core (OpenBLAS: 46 us).
GRAPHC_GEMV_AVX512 void axpy_rows512(int64_t K, const float* x, const float* W, int64_t ldw, float* y, int64_t j0,
                                     int64_t j1) {
  for (int64_t jb = j0; jb < j1; jb += kRowBlock) {
    const int64_t n = std::min<int64_t>(j1, jb + kRowBlock) - jb;
    const int64_t nv = (n + 15) / 16;
    const __mmask16 mlast = mask16(n - 16 * (nv - 1));
    float* yb = y + jb;
    const float* wb = W + jb;
    for (int64_t v = 0; v < nv; ++v) _mm512_mask_storeu_ps(yb + 16 * v, v + 1 < nv ? 0xFFFF : mlast, _mm512_setzero_ps());
    int64_t k = 0;
    for (; k + 4 <= K; k += 4) {
      const float* w0 = wb + k * ldw;
      const __m512 x0 = _mm512_set1_ps(x[k]), x1 = _mm512_set1_ps(x[k + 1]);
      const __m512 x2 = _mm512_set1_ps(x[k + 2]), x3 = _mm512_set1_ps(x[k + 3]);
      for (int64_t v = 0; v < nv; ++v) {
        const __mmask16 m = v + 1 < nv ? __mmask16(0xFFFF) : mlast;
        const int64_t o = 16 * v;
        __m512 acc = _mm512_maskz_loadu_ps(m, yb + o);
        acc = _mm512_fmadd_ps(x0, _mm512_maskz_loadu_ps(m, w0 + o), acc);
        acc = _mm512_fmadd_ps(x1, _mm512_maskz_loadu_ps(m, w0 + ldw + o), acc);
        acc = _mm512_fmadd_ps(x2, _mm512_maskz_loadu_ps(m, w0 + 2 * ldw + o), acc);
        acc = _mm512_fmadd_ps(x3, _mm512_maskz_loadu_ps(m, w0 + 3 * ldw + o), acc);
        _mm512_mask_storeu_ps(yb + o, m, acc);
      }
    }
    for (; k < K; ++k) {
      const float* w0 = wb + k * ldw;
      const __m512 x0 = _mm512_set1_ps(x[k]);
      for (int64_t v = 0; v < nv; ++v) {
        const __mmask16 m = v + 1 < nv ? __mmask16(0xFFFF) : mlast;
        const int64_t o = 16 * v;
        _mm512_mask_storeu_ps(yb + o, m,
                              _mm512_fmadd_ps(x0, _mm512_maskz_loadu_ps(m, w0 + o), _mm512_maskz_loadu_ps(m, yb + o)));
      }
    }
  }
}

GRAPHC_GEMV_AVX512 void axpy512(int64_t K, const float* x, const float* W, int64_t ldw, float* y, int64_t j0,
                                int64_t j1) {
  if (j1 - j0 >= kRowsMinWidth) return axpy_rows512(K, x, W, ldw, y, j0, j1);
  int64_t j = j0;
  for (; j + 256 <= j1; j += 256) axpy_block512<16>(K, x, W + j, ldw, y + j);
  if (j + 128 <= j1) { axpy_block512<8>(K, x, W + j, ldw, y + j); j += 128; }
  if (j + 64 <= j1) { axpy_block512<4>(K, x, W + j, ldw, y + j); j += 64; }
  if (j + 32 <= j1) { axpy_block512<2>(K, x, W + j, ldw, y + j); j += 32; }
  if (j + 16 <= j1) { axpy_block512<1>(K, x, W + j, ldw, y + j); j += 16; }
  if (j < j1) axpy_tail512(K, x, W + j, ldw, y + j, j1 - j);
}

GRAPHC_GEMV_AVX512 inline float reduce32_512(__m512 lo, __m512 hi) {
  alignas(64) float l[32];
  _mm512_store_ps(l, lo);
  _mm512_store_ps(l + 16, hi);
  return reduce32(l);
}

template <int R>
GRAPHC_GEMV_AVX512 void dot_rows512(int64_t K, const float* x, const float* W, int64_t ldw, float* y) {
  __m512 lo[R], hi[R];
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) lo[r] = hi[r] = _mm512_setzero_ps();
  int64_t k = 0;
  for (; k + 32 <= K; k += 32) {
    const __m512 x0 = _mm512_loadu_ps(x + k), x1 = _mm512_loadu_ps(x + k + 16);
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      lo[r] = _mm512_fmadd_ps(_mm512_loadu_ps(W + r * ldw + k), x0, lo[r]);
      hi[r] = _mm512_fmadd_ps(_mm512_loadu_ps(W + r * ldw + k + 16), x1, hi[r]);
    }
  }
  if (k < K) {
    // Zero-filled lanes: fma(0, 0, acc) == acc + 0, the same as AVX2's masked loads.
    const __mmask16 m0 = mask16(K - k), m1 = mask16(K - k - 16);
    const __m512 x0 = _mm512_maskz_loadu_ps(m0, x + k), x1 = _mm512_maskz_loadu_ps(m1, x + k + 16);
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      lo[r] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m0, W + r * ldw + k), x0, lo[r]);
      hi[r] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m1, W + r * ldw + k + 16), x1, hi[r]);
    }
  }
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) y[r] = reduce32_512(lo[r], hi[r]);
}

GRAPHC_GEMV_AVX512 void dot512(int64_t K, const float* x, const float* W, int64_t ldw, float* y, int64_t i0,
                               int64_t i1) {
  int64_t i = i0;
  for (; i + 4 <= i1; i += 4) dot_rows512<4>(K, x, W + i * ldw, ldw, y + i);
  for (; i < i1; ++i) dot_rows512<1>(K, x, W + i * ldw, ldw, y + i);
}

// ---- AVX2 + FMA ---------------------------------------------------------------------------

// Lanes j < n of an 8-float vector (as maskload/maskstore want them).
GRAPHC_GEMV_AVX2 inline __m256i mask8(int64_t n) {
  const int c = n >= 8 ? 8 : n <= 0 ? 0 : static_cast<int>(n);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(c), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

template <int NV>
GRAPHC_GEMV_AVX2 void axpy_block256(int64_t K, const float* x, const float* W, int64_t ldw, float* y) {
  __m256 acc[NV];
#pragma GCC unroll 8
  for (int v = 0; v < NV; ++v) acc[v] = _mm256_setzero_ps();
  for (int64_t k = 0; k < K; ++k) {
    const __m256 xk = _mm256_set1_ps(x[k]);
    const float* w = W + k * ldw;
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) acc[v] = _mm256_fmadd_ps(xk, _mm256_loadu_ps(w + 8 * v), acc[v]);
  }
#pragma GCC unroll 8
  for (int v = 0; v < NV; ++v) _mm256_storeu_ps(y + 8 * v, acc[v]);
}

GRAPHC_GEMV_AVX2 void axpy_tail256(int64_t K, const float* x, const float* W, int64_t ldw, float* y, int64_t n) {
  const __m256i m = mask8(n);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t k = 0; k < K; ++k) {
    acc = _mm256_fmadd_ps(_mm256_set1_ps(x[k]), _mm256_maskload_ps(W + k * ldw, m), acc);
  }
  _mm256_maskstore_ps(y, m, acc);
}

// The AVX2 twin of axpy_rows512 (same chains, same results).
GRAPHC_GEMV_AVX2 void axpy_rows256(int64_t K, const float* x, const float* W, int64_t ldw, float* y, int64_t j0,
                                   int64_t j1) {
  for (int64_t jb = j0; jb < j1; jb += kRowBlock) {
    const int64_t n = std::min<int64_t>(j1, jb + kRowBlock) - jb;
    const int64_t nv = (n + 7) / 8;
    const __m256i full = mask8(8), mlast = mask8(n - 8 * (nv - 1));
    float* yb = y + jb;
    const float* wb = W + jb;
    for (int64_t v = 0; v < nv; ++v) _mm256_maskstore_ps(yb + 8 * v, v + 1 < nv ? full : mlast, _mm256_setzero_ps());
    int64_t k = 0;
    for (; k + 4 <= K; k += 4) {
      const float* w0 = wb + k * ldw;
      const __m256 x0 = _mm256_set1_ps(x[k]), x1 = _mm256_set1_ps(x[k + 1]);
      const __m256 x2 = _mm256_set1_ps(x[k + 2]), x3 = _mm256_set1_ps(x[k + 3]);
      int64_t v = 0;
      for (; v + 1 < nv; ++v) {
        const int64_t o = 8 * v;
        __m256 acc = _mm256_loadu_ps(yb + o);
        acc = _mm256_fmadd_ps(x0, _mm256_loadu_ps(w0 + o), acc);
        acc = _mm256_fmadd_ps(x1, _mm256_loadu_ps(w0 + ldw + o), acc);
        acc = _mm256_fmadd_ps(x2, _mm256_loadu_ps(w0 + 2 * ldw + o), acc);
        acc = _mm256_fmadd_ps(x3, _mm256_loadu_ps(w0 + 3 * ldw + o), acc);
        _mm256_storeu_ps(yb + o, acc);
      }
      const int64_t o = 8 * v;
      __m256 acc = _mm256_maskload_ps(yb + o, mlast);
      acc = _mm256_fmadd_ps(x0, _mm256_maskload_ps(w0 + o, mlast), acc);
      acc = _mm256_fmadd_ps(x1, _mm256_maskload_ps(w0 + ldw + o, mlast), acc);
      acc = _mm256_fmadd_ps(x2, _mm256_maskload_ps(w0 + 2 * ldw + o, mlast), acc);
      acc = _mm256_fmadd_ps(x3, _mm256_maskload_ps(w0 + 3 * ldw + o, mlast), acc);
      _mm256_maskstore_ps(yb + o, mlast, acc);
    }
    for (; k < K; ++k) {
      const float* w0 = wb + k * ldw;
      const __m256 x0 = _mm256_set1_ps(x[k]);
      for (int64_t v = 0; v < nv; ++v) {
        const __m256i m = v + 1 < nv ? full : mlast;
        const int64_t o = 8 * v;
        _mm256_maskstore_ps(yb + o, m, _mm256_fmadd_ps(x0, _mm256_maskload_ps(w0 + o, m), _mm256_maskload_ps(yb + o, m)));
      }
    }
  }
}

GRAPHC_GEMV_AVX2 void axpy256(int64_t K, const float* x, const float* W, int64_t ldw, float* y, int64_t j0,
                              int64_t j1) {
  if (j1 - j0 >= kRowsMinWidth) return axpy_rows256(K, x, W, ldw, y, j0, j1);
  int64_t j = j0;
  for (; j + 96 <= j1; j += 96) axpy_block256<12>(K, x, W + j, ldw, y + j);
  if (j + 64 <= j1) { axpy_block256<8>(K, x, W + j, ldw, y + j); j += 64; }
  if (j + 32 <= j1) { axpy_block256<4>(K, x, W + j, ldw, y + j); j += 32; }
  if (j + 16 <= j1) { axpy_block256<2>(K, x, W + j, ldw, y + j); j += 16; }
  if (j + 8 <= j1) { axpy_block256<1>(K, x, W + j, ldw, y + j); j += 8; }
  if (j < j1) axpy_tail256(K, x, W + j, ldw, y + j, j1 - j);
}

GRAPHC_GEMV_AVX2 inline float reduce32_256(__m256 a0, __m256 a1, __m256 a2, __m256 a3) {
  alignas(32) float l[32];
  _mm256_store_ps(l, a0);
  _mm256_store_ps(l + 8, a1);
  _mm256_store_ps(l + 16, a2);
  _mm256_store_ps(l + 24, a3);
  return reduce32(l);
}

template <int R>
GRAPHC_GEMV_AVX2 void dot_rows256(int64_t K, const float* x, const float* W, int64_t ldw, float* y) {
  __m256 a[R][4];
#pragma GCC unroll 2
  for (int r = 0; r < R; ++r) a[r][0] = a[r][1] = a[r][2] = a[r][3] = _mm256_setzero_ps();
  int64_t k = 0;
  for (; k + 32 <= K; k += 32) {
    __m256 xv[4];
#pragma GCC unroll 4
    for (int q = 0; q < 4; ++q) xv[q] = _mm256_loadu_ps(x + k + 8 * q);
#pragma GCC unroll 2
    for (int r = 0; r < R; ++r) {
#pragma GCC unroll 4
      for (int q = 0; q < 4; ++q) a[r][q] = _mm256_fmadd_ps(_mm256_loadu_ps(W + r * ldw + k + 8 * q), xv[q], a[r][q]);
    }
  }
  if (k < K) {
    __m256i m[4];
    __m256 xv[4];
#pragma GCC unroll 4
    for (int q = 0; q < 4; ++q) {
      m[q] = mask8(K - k - 8 * q);
      xv[q] = _mm256_maskload_ps(x + k + 8 * q, m[q]);
    }
#pragma GCC unroll 2
    for (int r = 0; r < R; ++r) {
#pragma GCC unroll 4
      for (int q = 0; q < 4; ++q) {
        a[r][q] = _mm256_fmadd_ps(_mm256_maskload_ps(W + r * ldw + k + 8 * q, m[q]), xv[q], a[r][q]);
      }
    }
  }
#pragma GCC unroll 2
  for (int r = 0; r < R; ++r) y[r] = reduce32_256(a[r][0], a[r][1], a[r][2], a[r][3]);
}

GRAPHC_GEMV_AVX2 void dot256(int64_t K, const float* x, const float* W, int64_t ldw, float* y, int64_t i0,
                             int64_t i1) {
  int64_t i = i0;
  for (; i + 2 <= i1; i += 2) dot_rows256<2>(K, x, W + i * ldw, ldw, y + i);
  for (; i < i1; ++i) dot_rows256<1>(K, x, W + i * ldw, ldw, y + i);
}

const Kernels kAvx512{"avx512", &axpy512, &dot512};
const Kernels kAvx2{"avx2", &axpy256, &dot256};

// isa.h's detection also checks that the OS saves the wider registers.
bool has_avx512() { return detected_isa() >= Isa::Avx512; }
bool has_avx2() { return detected_isa() >= Isa::Avx2; }

}  // namespace

const Kernels* kernels_for(const std::string& want) {
  if (want == "avx512") return has_avx512() ? &kAvx512 : nullptr;
  if (want == "avx2") return has_avx2() ? &kAvx2 : nullptr;
  if (want == "auto") {
    // The ISA the other kernels use (GRAPHC_ISA caps it): GRAPHC_ISA=baseline means BLAS here.
    const Isa isa = active_isa();
    return isa >= Isa::Avx512 ? &kAvx512 : isa >= Isa::Avx2 ? &kAvx2 : nullptr;
  }
  return nullptr;
}

}  // namespace gemv
}  // namespace cpu
}  // namespace graphc

#else  // no x86-64 SIMD kernels in this build: matmul uses OpenBLAS

namespace graphc {
namespace cpu {
namespace gemv {
const Kernels* kernels_for(const std::string&) { return nullptr; }
}  // namespace gemv
}  // namespace cpu
}  // namespace graphc

#endif

namespace graphc {
namespace cpu {
namespace gemv {

const Kernels* selected() {
  const char* s = std::getenv("GRAPHC_GEMV_KERNEL");
  return kernels_for(s != nullptr && *s != '\0' ? s : "auto");
}

}  // namespace gemv
}  // namespace cpu
}  // namespace graphc
