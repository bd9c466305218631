// gemm_avx512.cc — the AVX-512 micro-kernel of gemm.h: up to 12 rows x 32 columns of C in
// 24 zmm accumulators, B read as two zmm per k from a 32-wide packed panel, A broadcast one
// float per row per k from a k-major packed strip.  Column remainders use masked loads and
// stores (B's loads too, at no cost on AVX-512: so a partial panel of B is read in place, never
// past N), so no edge copy is needed.
//
// Only the functions below get the AVX-512 target (per-function attribute, the std headers
// stay baseline), so this file builds with baseline x86-64 flags and is a stub elsewhere.
#include "gemm.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

#define GRAPHC_AVX512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")))

namespace graphc {
namespace cpu {
namespace gemm {
namespace {

constexpr int kMr = 12;
constexpr int kNr = 32;

// kRows: A(r, k) = a[r*as + k], else a[k*as + r] (gemm.h, MicroFn).
template <int R, bool kRows>
GRAPHC_AVX512 void micro(int64_t kc, const float* a, int64_t as, const float* b, int64_t bs, float* c, int64_t ldc,
                         int64_t ncols, bool accumulate) {
  // Lane masks of the two 16-float halves of the 32 columns.
  const __mmask16 m0 = ncols >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << ncols) - 1);
  const __mmask16 m1 = ncols >= 32 ? __mmask16(0xFFFF) : ncols <= 16 ? __mmask16(0)
                                                                     : __mmask16((1u << (ncols - 16)) - 1);
  __m512 c0[R], c1[R];
  if (accumulate) {
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      c0[r] = _mm512_maskz_loadu_ps(m0, c + r * ldc);
      c1[r] = _mm512_maskz_loadu_ps(m1, c + r * ldc + 16);
    }
  } else {
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      c0[r] = _mm512_setzero_ps();
      c1[r] = _mm512_setzero_ps();
    }
  }
  for (int64_t k = 0; k < kc; ++k) {
    const __m512 b0 = _mm512_maskz_loadu_ps(m0, b);
    const __m512 b1 = _mm512_maskz_loadu_ps(m1, b + 16);
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      const __m512 av = _mm512_set1_ps(kRows ? a[r * as] : a[r]);
      c0[r] = _mm512_fmadd_ps(av, b0, c0[r]);
      c1[r] = _mm512_fmadd_ps(av, b1, c1[r]);
    }
    a += kRows ? 1 : as;
    b += bs;
  }
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) {
    _mm512_mask_storeu_ps(c + r * ldc, m0, c0[r]);
    _mm512_mask_storeu_ps(c + r * ldc + 16, m1, c1[r]);
  }
}

// The narrow kernel for N <= 16 (an MLP's 10-class output layer): one zmm of columns per
// row, so a 32-wide panel would waste more than half of every FMA; up to 16 rows.
template <int R, bool kRows>
GRAPHC_AVX512 void micro_narrow(int64_t kc, const float* a, int64_t as, const float* b, int64_t bs, float* c,
                                int64_t ldc, int64_t ncols, bool accumulate) {
  const __mmask16 m0 = ncols >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << ncols) - 1);
  __m512 c0[R];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) c0[r] = accumulate ? _mm512_maskz_loadu_ps(m0, c + r * ldc) : _mm512_setzero_ps();
  for (int64_t k = 0; k < kc; ++k) {
    const __m512 b0 = _mm512_maskz_loadu_ps(m0, b);
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) c0[r] = _mm512_fmadd_ps(_mm512_set1_ps(kRows ? a[r * as] : a[r]), b0, c0[r]);
    a += kRows ? 1 : as;
    b += bs;
  }
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) _mm512_mask_storeu_ps(c + r * ldc, m0, c0[r]);
}

const KernelSet kNarrow = {
    "avx512",
    16,
    16,
    {nullptr, micro_narrow<1, false>, micro_narrow<2, false>, micro_narrow<3, false>, micro_narrow<4, false>,
     micro_narrow<5, false>, micro_narrow<6, false>, micro_narrow<7, false>, micro_narrow<8, false>,
     micro_narrow<9, false>, micro_narrow<10, false>, micro_narrow<11, false>, micro_narrow<12, false>,
     micro_narrow<13, false>, micro_narrow<14, false>, micro_narrow<15, false>, micro_narrow<16, false>},
    {nullptr, micro_narrow<1, true>, micro_narrow<2, true>, micro_narrow<3, true>, micro_narrow<4, true>,
     micro_narrow<5, true>, micro_narrow<6, true>, micro_narrow<7, true>, micro_narrow<8, true>,
     micro_narrow<9, true>, micro_narrow<10, true>, micro_narrow<11, true>, micro_narrow<12, true>,
     micro_narrow<13, true>, micro_narrow<14, true>, micro_narrow<15, true>, micro_narrow<16, true>},
    nullptr,
    pack_trans_avx2,
    true,
};

const KernelSet kSet = {
    "avx512",
    kMr,
    kNr,
    {nullptr, micro<1, false>, micro<2, false>, micro<3, false>, micro<4, false>, micro<5, false>,
     micro<6, false>, micro<7, false>, micro<8, false>, micro<9, false>, micro<10, false>, micro<11, false>,
     micro<12, false>, nullptr, nullptr, nullptr, nullptr},
    {nullptr, micro<1, true>, micro<2, true>, micro<3, true>, micro<4, true>, micro<5, true>, micro<6, true>,
     micro<7, true>, micro<8, true>, micro<9, true>, micro<10, true>, micro<11, true>, micro<12, true>,
     nullptr, nullptr, nullptr, nullptr},
    &kNarrow,
    pack_trans_avx2,
    true,
};

}  // namespace

const KernelSet* avx512_kernels() {
  static const bool ok = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                         __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
                         __builtin_cpu_supports("fma");
  return ok ? &kSet : nullptr;
}

}  // namespace gemm
}  // namespace cpu
}  // namespace graphc

#else

namespace graphc {
namespace cpu {
namespace gemm {
const KernelSet* avx512_kernels() { return nullptr; }
}  // namespace gemm
}  // namespace cpu
}  // namespace graphc

#endif
