// gemm_avx2.cc — the AVX2+FMA micro-kernel of gemm.h: up to 6 rows x 16 columns of C in 12
// ymm accumulators (+2 for B, 1 for the broadcast A: 15 of the 16 registers), B read as two
// ymm per k from a 16-wide packed panel.  Column remainders use vmaskmov loads and stores.
//
// Only the functions below get the AVX2 target (per-function attribute, the std headers stay
// baseline), so this file builds with baseline x86-64 flags and is a stub elsewhere.
#include "gemm.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

#define GRAPHC_AVX2 __attribute__((target("avx2,fma")))

namespace graphc {
namespace cpu {
namespace gemm {
namespace {

constexpr int kMr = 6;
constexpr int kNr = 16;

// Lane mask with the first n (clamped to 0..8) lanes set.
GRAPHC_AVX2 inline __m256i first_lanes(int64_t n) {
  const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const int nn = n < 0 ? 0 : (n > 8 ? 8 : static_cast<int>(n));
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(nn), iota);
}

template <int R>
GRAPHC_AVX2 void micro(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, int64_t ncols,
                       bool accumulate) {
  __m256 c0[R], c1[R];
  const bool full = ncols >= kNr;
  const __m256i m0 = first_lanes(ncols), m1 = first_lanes(ncols - 8);
  if (accumulate) {
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      if (full) {
        c0[r] = _mm256_loadu_ps(c + r * ldc);
        c1[r] = _mm256_loadu_ps(c + r * ldc + 8);
      } else {
        c0[r] = _mm256_maskload_ps(c + r * ldc, m0);
        c1[r] = _mm256_maskload_ps(c + r * ldc + 8, m1);
      }
    }
  } else {
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      c0[r] = _mm256_setzero_ps();
      c1[r] = _mm256_setzero_ps();
    }
  }
  for (int64_t k = 0; k < kc; ++k) {
    const __m256 b0 = _mm256_load_ps(b);
    const __m256 b1 = _mm256_load_ps(b + 8);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const __m256 av = _mm256_broadcast_ss(a + r);
      c0[r] = _mm256_fmadd_ps(av, b0, c0[r]);
      c1[r] = _mm256_fmadd_ps(av, b1, c1[r]);
    }
    a += R;
    b += kNr;
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    if (full) {
      _mm256_storeu_ps(c + r * ldc, c0[r]);
      _mm256_storeu_ps(c + r * ldc + 8, c1[r]);
    } else {
      _mm256_maskstore_ps(c + r * ldc, m0, c0[r]);
      _mm256_maskstore_ps(c + r * ldc + 8, m1, c1[r]);
    }
  }
}

const KernelSet kSet = {
    "avx2",
    kMr,
    kNr,
    {nullptr, micro<1>, micro<2>, micro<3>, micro<4>, micro<5>, micro<6>, nullptr, nullptr, nullptr, nullptr,
     nullptr, nullptr, nullptr, nullptr, nullptr, nullptr},
};

}  // namespace

const KernelSet* avx2_kernels() {
  static const bool ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return ok ? &kSet : nullptr;
}

}  // namespace gemm
}  // namespace cpu
}  // namespace graphc

#else

namespace graphc {
namespace cpu {
namespace gemm {
const KernelSet* avx2_kernels() { return nullptr; }
}  // namespace gemm
}  // namespace cpu
}  // namespace graphc

#endif
