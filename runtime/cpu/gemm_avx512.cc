// gemm_avx512.cc — the AVX-512 micro-kernel of gemm.h: up to 12 rows x 32 columns of C in
// 24 zmm accumulators, B read as two zmm per k from a 32-wide packed panel, A broadcast one
// float per row per k from a k-major packed strip.  Column remainders use masked loads and
// stores, so no edge copy is needed.
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

template <int R>
GRAPHC_AVX512 void micro(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, int64_t ncols,
                         bool accumulate) {
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
    const __m512 b0 = _mm512_load_ps(b);
    const __m512 b1 = _mm512_load_ps(b + 16);
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      const __m512 av = _mm512_set1_ps(a[r]);
      c0[r] = _mm512_fmadd_ps(av, b0, c0[r]);
      c1[r] = _mm512_fmadd_ps(av, b1, c1[r]);
    }
    a += R;
    b += kNr;
  }
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) {
    _mm512_mask_storeu_ps(c + r * ldc, m0, c0[r]);
    _mm512_mask_storeu_ps(c + r * ldc + 16, m1, c1[r]);
  }
}

const KernelSet kSet = {
    "avx512",
    kMr,
    kNr,
    {nullptr, micro<1>, micro<2>, micro<3>, micro<4>, micro<5>, micro<6>, micro<7>, micro<8>, micro<9>,
     micro<10>, micro<11>, micro<12>, nullptr, nullptr, nullptr, nullptr},
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
