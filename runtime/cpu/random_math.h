// random_math.h — uniform and normal numbers from the Philox words of philox.h, for the
// random_uniform and random_normal ops (graphc/ops/random.py is the numpy twin and the
// specification; docs/random.md describes the layout).
//
// Plain inline functions (GRAPHC_HD = __host__ __device__ under nvcc), no std:: containers, so a
// CUDA kernel includes this file and computes the same values as the CPU, up to the last bit
// of the device's log/sin/cos.  All arithmetic is in double; the kernel rounds once to its dtype.
//
// float32 draws: one element per word, u = (word >> 8) · 2^-24 (24 bits: float32-exact).
// float64 draws: one element per word pair (hi, lo), u = ((hi << 21) | (lo >> 11)) · 2^-53.
// Normals: Box–Muller over a pair of uniforms (u1, u2): u1 takes one unit more than its bits,
// so u1 is in (0, 1] and log(u1) is finite; z0 = r cos θ, z1 = r sin θ, r = sqrt(-2 ln u1),
// θ = 2π u2.  The smallest u1 bounds |z| by sqrt(2 · 24 ln 2) ≈ 5.77 (float32) and
// sqrt(2 · 53 ln 2) ≈ 8.57 (float64): tails beyond have probability < 1e-8.
#ifndef GRAPHC_CPU_RANDOM_MATH_H_
#define GRAPHC_CPU_RANDOM_MATH_H_

#include <math.h>
#include <stdint.h>

#include "philox.h"

namespace graphc {
namespace random_math {

constexpr double kTwoPi = 6.283185307179586;  // 2π rounded to double (TWO_PI in graphc/ops/random.py)

GRAPHC_HD inline uint64_t bits24(uint32_t w) { return w >> 8; }
GRAPHC_HD inline uint64_t bits53(uint32_t hi, uint32_t lo) {
  return (static_cast<uint64_t>(hi) << 21) | (lo >> 11);
}

// A pair of independent standard normals from u1 in (0, 1] and u2 in [0, 1).
GRAPHC_HD inline void box_muller(double u1, double u2, double* z0, double* z1) {
  const double r = sqrt(-2.0 * log(u1));
  const double t = kTwoPi * u2;
  *z0 = r * cos(t);
  *z1 = r * sin(t);
}

// Elements per Philox block of a float32 draw (one word each) and of a float64 draw (two words).
constexpr int kPerBlockF32 = 4;
constexpr int kPerBlockF64 = 2;

// The uniforms in [0, 1) of the elements of one block: v[j] for element (block · K + j).
GRAPHC_HD inline void uniform_f32(philox::Words w, double* v) {
  for (int j = 0; j < 4; ++j) v[j] = static_cast<double>(bits24(w.w[j])) * 0x1p-24;
}
GRAPHC_HD inline void uniform_f64(philox::Words w, double* v) {
  v[0] = static_cast<double>(bits53(w.w[0], w.w[1])) * 0x1p-53;
  v[1] = static_cast<double>(bits53(w.w[2], w.w[3])) * 0x1p-53;
}

// The standard normals of the elements of one block: float32 — words (0, 1) give elements 0, 1
// and words (2, 3) give 2, 3; float64 — the word pairs (0, 1) and (2, 3) give u1 and u2.
GRAPHC_HD inline void normal_f32(philox::Words w, double* v) {
  for (int p = 0; p < 2; ++p) {
    const double u1 = static_cast<double>(bits24(w.w[2 * p]) + 1) * 0x1p-24;
    const double u2 = static_cast<double>(bits24(w.w[2 * p + 1])) * 0x1p-24;
    box_muller(u1, u2, &v[2 * p], &v[2 * p + 1]);
  }
}
GRAPHC_HD inline void normal_f64(philox::Words w, double* v) {
  const double u1 = static_cast<double>(bits53(w.w[0], w.w[1]) + 1) * 0x1p-53;
  const double u2 = static_cast<double>(bits53(w.w[2], w.w[3])) * 0x1p-53;
  box_muller(u1, u2, &v[0], &v[1]);
}

}  // namespace random_math
}  // namespace graphc

#endif  // GRAPHC_CPU_RANDOM_MATH_H_
