// activation_ops.h — the scalar math of activations.cc's ops (gelu in both forms, softplus,
// their gradients): GRAPHC_HD, so runtime/cuda/activations.cu evaluates the same formulas (the
// float32 ones as arithmetic on exp_f32 and friends; float64 through the math library).
#pragma once

#include <cmath>

#include "../hd.h"
#include "elementwise_ops.h"  // exp_f32, log_reduced_f32

namespace graphc {
namespace cpu {

constexpr double kSqrt1_2 = 0.70710678118654752440;     // 1/√2
constexpr double kInvSqrt2Pi = 0.39894228040143267794;  // 1/√(2π)
constexpr double kK = 0.79788456080286535588;           // √(2/π)
constexpr double kKappa = 0.044715;

// gelu, erf form: x·Φ(x) with Φ(x) = ½·erfc(-x/√2) (erfc keeps the negative tail accurate where
// torch's ½·(1 + erf) cancels to 0).  Φ = 0 only for x <= about -13 (-38 in double) or -inf:
// the result is -0 there (torch: -0 for finite x, NaN for -inf).
template <class T> GRAPHC_HD T gelu_erf(T x) {
  const T cdf = T(0.5) * std::erfc(-x * T(kSqrt1_2));
  return cdf == T(0) ? T(-0.0) : x * cdf;
}

// gelu, tanh form: ½·x·(1 + tanh(√(2/π)·(x + κx³))), torch's order of operations.
template <class T> GRAPHC_HD T gelu_tanh(T x) {
  const T inner = T(kK) * (x + T(kKappa) * (x * x * x));
  const T right = T(1) + std::tanh(inner);
  return right == T(0) ? T(-0.0) : T(0.5) * x * right;
}

// gelu'(x) = Φ(x) + x·φ(x); x·φ(x) -> 0 where φ underflows (|x| large, ±inf: torch NaN at ±inf).
template <class T> GRAPHC_HD T gelu_erf_grad(T dy, T x) {
  const T cdf = T(0.5) * std::erfc(-x * T(kSqrt1_2));
  const T pdf = std::exp(T(-0.5) * x * x) * T(kInvSqrt2Pi);
  const T xpdf = pdf == T(0) ? T(0) : x * pdf;
  return dy * (cdf + xpdf);
}

// Φ(x) = ½(1 + erf(x/√2)) in float32 as arithmetic (vectorises; libm's erfcf is a call per
// element, ~60× torch's time): erf(z) = z·P(z²)/Q(z²) for |z| < 3.9 (±1 beyond), Eigen's rational
// approximation of float erf (the one TensorFlow/XLA use): within 1.1 ulp of erf in exact
// arithmetic, 7 ulp (4.2e-7) once evaluated in float32 without FMA; torch's vectorised float erf
// (Abramowitz–Stegun 7.1.26) has 1.5e-7 before rounding.  No exp: a third of the operations of an
// erfc-based Φ, which is what keeps gelu near torch's speed.  Like torch's, the error is absolute:
// the negative tail (Φ < 1e-7) is not relative-accurate, and Φ = 0 (gelu = -0) for x <= -3.9√2.
GRAPHC_HD inline float phi_f32(float x) {
  const float z = x * float(kSqrt1_2);
  const float z2 = z * z;
  float p = -2.72614225801306e-10f;
  p = p * z2 + 2.77068142495902e-08f;
  p = p * z2 - 2.10102402082508e-06f;
  p = p * z2 - 5.69250639462346e-05f;
  p = p * z2 - 7.34990630326855e-04f;
  p = p * z2 - 2.95459980854025e-03f;
  p = p * z2 - 1.60960333262415e-02f;
  float q = -1.45660718464996e-05f;
  q = q * z2 - 2.13374055278905e-04f;
  q = q * z2 - 1.68282697438203e-03f;
  q = q * z2 - 7.37332916720468e-03f;
  q = q * z2 - 1.42647390514189e-02f;
  float erf = z * p / q;
  // erf(z) rounds to ±1 in float32 from |z| = 3.87 on; exactly ±1 there (so Φ is exactly 0 or 1,
  // as torch's erf gives), and for ±inf where P/Q is inf/inf.  NaN: both compares false.
  erf = z >= 3.9f ? 1.0f : erf;
  erf = z <= -3.9f ? -1.0f : erf;
  return 0.5f + 0.5f * erf;
}

GRAPHC_HD inline float gelu_erf_f32(float x) {
  const float cdf = phi_f32(x);
  return cdf == 0.0f ? -0.0f : x * cdf;
}

GRAPHC_HD inline float gelu_erf_grad_f32(float dy, float x) {
  const float cdf = phi_f32(x);
  const float pdf = exp_f32(-0.5f * x * x) * float(kInvSqrt2Pi);
  const float xpdf = pdf == 0.0f ? 0.0f : x * pdf;
  return dy * (cdf + xpdf);
}

// The tanh form's derivative, torch's terms: ½(1 + t) + ½x·(1 - t²)·√(2/π)(1 + 3κx²); the second
// term -> 0 where tanh saturates (torch: inf·0 = NaN at |x| >= about 1e13 in float32, ±inf).
template <class T> GRAPHC_HD T gelu_tanh_grad(T dy, T x) {
  const T x_sq = x * x;
  const T inner = T(kK) * (x + T(kKappa) * (x_sq * x));
  const T t = std::tanh(inner);
  const T sech2 = T(1) - t * t;
  const T inner_d = T(kK) * (T(1) + T(3) * T(kKappa) * x_sq);
  const T second = sech2 == T(0) ? T(0) : T(0.5) * x * sech2 * inner_d;
  return dy * (T(0.5) * (T(1) + t) + second);
}

// float32 tanh form via ½(1 + tanh u) = σ(2u) and 1 - tanh² u = 4σ(2u)σ(-2u), with a = e^(-2|u|) in
// [0, 1] (never overflows): σ(2|u|) = 1/(1 + a), σ(-2|u|) = a/(1 + a).  Equal to torch's literal
// formula up to its rounding (whose 1 + tanh u cancels for u < 0; this form does not).
GRAPHC_HD inline void sigmoid2_f32(float u, float& s, float& q) {  // s = σ(2u), q = σ(2u)·σ(-2u)
  const float a = exp_f32(-2.0f * std::fabs(u));
  const float inv = 1.0f / (1.0f + a);
  s = u >= 0.0f ? inv : a * inv;
  q = a * inv * inv;
}

GRAPHC_HD inline float gelu_tanh_f32(float x) {
  float s, q;
  sigmoid2_f32(float(kK) * (x + float(kKappa) * (x * x * x)), s, q);
  return s == 0.0f ? -0.0f : x * s;
}

GRAPHC_HD inline float gelu_tanh_grad_f32(float dy, float x) {
  const float x_sq = x * x;
  float s, q;
  sigmoid2_f32(float(kK) * (x + float(kKappa) * (x_sq * x)), s, q);
  const float inner_d = float(kK) * (1.0f + 3.0f * float(kKappa) * x_sq);
  const float second = q == 0.0f ? 0.0f : 2.0f * x * q * inner_d;  // ½x·(1 - t²)·u' = 2x·q·u'
  return dy * (s + second);
}

// log1p(a) for a in [0, 1] (softplus's a = e^-|z|), Cephes' logf core without its general
// argument handling: 1 + a = 2^e·(1 + f) with f = a (e = 0, exact: no rounding of 1 + a) for
// a <= √2 - 1, else f = (a - 1)/2 (e = 1; a - 1 is exact for a >= ½, half an ulp of a below),
// f in [√½ - 1, √2 - 1], then logf's polynomial in f and e·ln2 in two parts (log_reduced_f32).  Within 1.4 ulp of
// log1p (measured against float64 on 1.1e6 points of [0, 1], down to 1e-45); no division, a
// third fewer operations than log_f32 with Goldberg's correction.  NaN stays NaN.
GRAPHC_HD inline float log1p_unit_f32(float a) {
  const bool big = a > 0.41421356f;
  const float f = big ? (a - 1.0f) * 0.5f : a;
  const float fe = big ? 1.0f : 0.0f;
  return log_reduced_f32(f, fe);  // elementwise_ops.h: logf's polynomial
}

template <class T> GRAPHC_HD T softplus_soft(T z, T beta) {
  return ((z > T(0) ? z : T(0)) + std::log1p(std::exp(-std::fabs(z)))) / beta;
}
template <> GRAPHC_HD inline float softplus_soft<float>(float z, float beta) {
  return ((z > 0.0f ? z : 0.0f) + log1p_unit_f32(exp_f32(-std::fabs(z)))) / beta;
}

template <class T> GRAPHC_HD T sigmoid_of(T z) {
  const T e = std::exp(-std::fabs(z));
  return (z >= T(0) ? T(1) : e) / (T(1) + e);
}
template <> GRAPHC_HD inline float sigmoid_of<float>(float z) {
  const float e = exp_f32(-std::fabs(z));
  return (z >= 0.0f ? 1.0f : e) / (1.0f + e);
}

}  // namespace cpu
}  // namespace graphc
