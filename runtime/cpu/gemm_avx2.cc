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

// kRows: A(r, k) = a[r*as + k], else a[k*as + r] (gemm.h, MicroFn).
template <int R, bool kRows>
GRAPHC_AVX2 void micro(int64_t kc, const float* a, int64_t as, const float* b, int64_t bs, float* c, int64_t ldc,
                       int64_t ncols, bool accumulate) {
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
    const __m256 b0 = _mm256_loadu_ps(b);
    const __m256 b1 = _mm256_loadu_ps(b + 8);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const __m256 av = _mm256_broadcast_ss(kRows ? a + r * as : a + r);
      c0[r] = _mm256_fmadd_ps(av, b0, c0[r]);
      c1[r] = _mm256_fmadd_ps(av, b1, c1[r]);
    }
    a += kRows ? 1 : as;
    b += bs;
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

// 8x8 transpose: rows r0..r7 (8 floats each) -> out[i] holds column i.
GRAPHC_AVX2 inline void transpose8(__m256 r[8]) {
  const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
  const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
  const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
  const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
  const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
  const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
  const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
  const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  r[0] = _mm256_permute2f128_ps(u0, u4, 0x20);
  r[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
  r[2] = _mm256_permute2f128_ps(u2, u6, 0x20);
  r[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
  r[4] = _mm256_permute2f128_ps(u0, u4, 0x31);
  r[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
  r[6] = _mm256_permute2f128_ps(u2, u6, 0x31);
  r[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

}  // namespace

// d[k*nr + j] = s[j*ld + k] for j < w, k < kc (gemm.h, PackTransFn): 8x8 register transposes,
// scalar edges.  Shared by the AVX-512 kernels (the CPUs that have AVX-512 have AVX2).
GRAPHC_AVX2 void pack_trans_avx2(const float* s, int64_t ld, int64_t kc, int64_t w, int nr, float* d) {
  const int64_t w8 = w / 8 * 8, k8 = kc / 8 * 8;
  for (int64_t j = 0; j < w8; j += 8) {
    for (int64_t k = 0; k < k8; k += 8) {
      __m256 r[8];
      for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(s + (j + i) * ld + k);
      transpose8(r);
      for (int i = 0; i < 8; ++i) _mm256_storeu_ps(d + (k + i) * nr + j, r[i]);
    }
    for (int64_t k = k8; k < kc; ++k) {
      for (int64_t i = 0; i < 8; ++i) d[k * nr + j + i] = s[(j + i) * ld + k];
    }
  }
  for (int64_t j = w8; j < w; ++j) {
    for (int64_t k = 0; k < kc; ++k) d[k * nr + j] = s[j * ld + k];
  }
}

namespace {

const KernelSet kSet = {
    "avx2",
    kMr,
    kNr,
    {nullptr, micro<1, false>, micro<2, false>, micro<3, false>, micro<4, false>, micro<5, false>,
     micro<6, false>, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr,
     nullptr},
    {nullptr, micro<1, true>, micro<2, true>, micro<3, true>, micro<4, true>, micro<5, true>, micro<6, true>,
     nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr},
    nullptr,
    pack_trans_avx2,
    false,
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
