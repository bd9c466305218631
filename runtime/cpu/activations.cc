// activations.cc — gelu (erf and tanh forms), softplus, leaky_relu and their gradient ops gelu_grad,
// softplus_grad and leaky_relu_grad (graphc/ops/activations.py has the semantics: torch.nn.functional's formulas,
// with the mathematical limit where torch's formula meets inf·0 or an overflowing exp).
//
// Each is one elementwise pass computed in T (float32 at float32 width, as torch does); the
// inf·0 cases are removed with selects, not branches, so the loops stay branch-free.  float32 is
// built on exp_f32, a log1p polynomial and a rational erf (plain arithmetic, no libm call per element), and
// its loops are compiled three times — baseline x86-64, AVX2+FMA, AVX-512 — and picked at kernel
// build from active_isa() (isa.h), as the elementwise kernels are: the same operations in the
// same order (no FMA contraction: -ffp-contract=off), so every ISA gives the same bits.  float64
// keeps libm (erfc, tanh, log1p, exp): the accurate path.  No reduction, so results are the same
// bits for any thread count.  An output may alias an input of its size (the ops are declared
// elementwise): every loop reads item i before writing it.
#include <cmath>
#include <string>
#include <type_traits>

#include "common.h"
#include "elementwise_ops.h"  // exp_f32: float32 exp as vectorisable arithmetic
#include "isa.h"
#include "op_schema.h"

namespace graphc {
namespace cpu {
namespace {

constexpr double kSqrt1_2 = 0.70710678118654752440;     // 1/√2
constexpr double kInvSqrt2Pi = 0.39894228040143267794;  // 1/√(2π)
constexpr double kK = 0.79788456080286535588;           // √(2/π)
constexpr double kKappa = 0.044715;

constexpr int64_t kGrain = 1 << 14;  // items per task: the transcendental functions make items costly

// The float32 loops over one task's span, f inlined: compiled for each ISA by the macro (the
// target attribute is on the loop; the scalar functions below are baseline code inlined into
// it, as elementwise_loops.inc does).  `ivdep`: y may alias x exactly, never partially.
#define GRAPHC_ACT_SPANS(suffix, target)                                                          \
  template <class Fn> target void map1_##suffix(const float* x, float* y, int64_t n, const Fn& f) { \
    _Pragma("GCC ivdep") for (int64_t i = 0; i < n; ++i) y[i] = f(x[i]);                         \
  }                                                                                              \
  template <class Fn>                                                                            \
  target void map2_##suffix(const float* dy, const float* x, float* dx, int64_t n, const Fn& f) {  \
    _Pragma("GCC ivdep") for (int64_t i = 0; i < n; ++i) dx[i] = f(dy[i], x[i]);                 \
  }
GRAPHC_ACT_SPANS(baseline, )
#if defined(__x86_64__)
GRAPHC_ACT_SPANS(avx2, __attribute__((target("avx2,fma"))))
GRAPHC_ACT_SPANS(avx512, __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma"))))
#endif
#undef GRAPHC_ACT_SPANS

template <class Fn> using Map1 = void (*)(const float*, float*, int64_t, const Fn&);
template <class Fn> using Map2 = void (*)(const float*, const float*, float*, int64_t, const Fn&);

template <class Fn> Map1<Fn> pick_map1() {
#if defined(__x86_64__)
  const Isa isa = active_isa();
  if (isa == Isa::Avx512) return map1_avx512<Fn>;
  if (isa == Isa::Avx2) return map1_avx2<Fn>;
#endif
  return map1_baseline<Fn>;
}
template <class Fn> Map2<Fn> pick_map2() {
#if defined(__x86_64__)
  const Isa isa = active_isa();
  if (isa == Isa::Avx512) return map2_avx512<Fn>;
  if (isa == Isa::Avx2) return map2_avx2<Fn>;
#endif
  return map2_baseline<Fn>;
}

bool gelu_tanh_form(const KernelArgs& a, const std::string& approximate) {
  if (approximate != "none" && approximate != "tanh") {
    a.fail("attr 'approximate' must be 'none' or 'tanh', got '" + approximate + "'");
  }
  return approximate == "tanh";
}

struct SoftplusParams {
  double beta, threshold;
};

SoftplusParams softplus_params(const KernelArgs& a, double beta, double threshold) {
  if (!std::isfinite(beta) || beta == 0.0) a.fail("attr 'beta' must be finite and nonzero, got " + std::to_string(beta));
  if (std::isnan(threshold)) a.fail("attr 'threshold' must be a number, got nan");
  return {beta, threshold};
}

// y = f(x), one input of y's dtype and dims.
template <class T, class Fn> Kernel unary_kernel(const KernelArgs& args, Fn f) {
  args.expect_arity(1, 1);
  const TensorRef &x = args.in[0], &y = args.out[0];
  expect_dtype(args, y, x.dtype, "output");
  expect_dims(args, y, x.dims, "output");
  const T* px = x.as<const T>();
  T* py = y.as<T>();
  const int64_t n = numel_of(x);
  const int threads = args.ctx.threads;
  if constexpr (std::is_same_v<T, float>) {
    const Map1<Fn> span = pick_map1<Fn>();
    return [=]() {
      parallel_for(n, threads, kGrain, [&](int64_t b, int64_t e) { span(px + b, py + b, e - b, f); });
    };
  } else {
    return [=]() {
      parallel_for(n, threads, kGrain, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) py[i] = f(px[i]);
      });
    };
  }
}

// dx = f(dy, x): the gradient ops' (dy, x) inputs, dx of x's dtype and dims.
template <class T, class Fn> Kernel grad_kernel(const KernelArgs& args, Fn f) {
  args.expect_arity(2, 1);
  const TensorRef &dy = args.in[0], &x = args.in[1], &dx = args.out[0];
  expect_dtype(args, dy, x.dtype, "input 0 (dy)");
  expect_dtype(args, dx, x.dtype, "output");
  expect_dims(args, dy, x.dims, "input 0 (dy)");
  expect_dims(args, dx, x.dims, "output");
  const T* pdy = dy.as<const T>();
  const T* px = x.as<const T>();
  T* pdx = dx.as<T>();
  const int64_t n = numel_of(x);
  const int threads = args.ctx.threads;
  if constexpr (std::is_same_v<T, float>) {
    const Map2<Fn> span = pick_map2<Fn>();
    return [=]() {
      parallel_for(n, threads, kGrain, [&](int64_t b, int64_t e) { span(pdy + b, px + b, pdx + b, e - b, f); });
    };
  } else {
    return [=]() {
      parallel_for(n, threads, kGrain, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) pdx[i] = f(pdy[i], px[i]);
      });
    };
  }
}

// gelu, erf form: x·Φ(x) with Φ(x) = ½·erfc(-x/√2) (erfc keeps the negative tail accurate where
// torch's ½·(1 + erf) cancels to 0).  Φ = 0 only for x <= about -13 (-38 in double) or -inf:
// the result is -0 there (torch: -0 for finite x, NaN for -inf).
template <class T> T gelu_erf(T x) {
  const T cdf = T(0.5) * std::erfc(-x * T(kSqrt1_2));
  return cdf == T(0) ? T(-0.0) : x * cdf;
}

// gelu, tanh form: ½·x·(1 + tanh(√(2/π)·(x + κx³))), torch's order of operations.
template <class T> T gelu_tanh(T x) {
  const T inner = T(kK) * (x + T(kKappa) * (x * x * x));
  const T right = T(1) + std::tanh(inner);
  return right == T(0) ? T(-0.0) : T(0.5) * x * right;
}

// gelu'(x) = Φ(x) + x·φ(x); x·φ(x) -> 0 where φ underflows (|x| large, ±inf: torch NaN at ±inf).
template <class T> T gelu_erf_grad(T dy, T x) {
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
inline float phi_f32(float x) {
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

inline float gelu_erf_f32(float x) {
  const float cdf = phi_f32(x);
  return cdf == 0.0f ? -0.0f : x * cdf;
}

inline float gelu_erf_grad_f32(float dy, float x) {
  const float cdf = phi_f32(x);
  const float pdf = exp_f32(-0.5f * x * x) * float(kInvSqrt2Pi);
  const float xpdf = pdf == 0.0f ? 0.0f : x * pdf;
  return dy * (cdf + xpdf);
}

// The tanh form's derivative, torch's terms: ½(1 + t) + ½x·(1 - t²)·√(2/π)(1 + 3κx²); the second
// term -> 0 where tanh saturates (torch: inf·0 = NaN at |x| >= about 1e13 in float32, ±inf).
template <class T> T gelu_tanh_grad(T dy, T x) {
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
inline void sigmoid2_f32(float u, float& s, float& q) {  // s = σ(2u), q = σ(2u)·σ(-2u)
  const float a = exp_f32(-2.0f * std::fabs(u));
  const float inv = 1.0f / (1.0f + a);
  s = u >= 0.0f ? inv : a * inv;
  q = a * inv * inv;
}

inline float gelu_tanh_f32(float x) {
  float s, q;
  sigmoid2_f32(float(kK) * (x + float(kKappa) * (x * x * x)), s, q);
  return s == 0.0f ? -0.0f : x * s;
}

inline float gelu_tanh_grad_f32(float dy, float x) {
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
inline float log1p_unit_f32(float a) {
  const bool big = a > 0.41421356f;
  const float f = big ? (a - 1.0f) * 0.5f : a;
  const float fe = big ? 1.0f : 0.0f;
  return log_reduced_f32(f, fe);  // elementwise_ops.h: logf's polynomial
}

template <class T> T softplus_soft(T z, T beta) {
  return ((z > T(0) ? z : T(0)) + std::log1p(std::exp(-std::fabs(z)))) / beta;
}
template <> inline float softplus_soft<float>(float z, float beta) {
  return ((z > 0.0f ? z : 0.0f) + log1p_unit_f32(exp_f32(-std::fabs(z)))) / beta;
}

template <class T> T sigmoid_of(T z) {
  const T e = std::exp(-std::fabs(z));
  return (z >= T(0) ? T(1) : e) / (T(1) + e);
}
template <> inline float sigmoid_of<float>(float z) {
  const float e = exp_f32(-std::fabs(z));
  return (z >= 0.0f ? 1.0f : e) / (1.0f + e);
}

template <class T> Kernel gelu_tanh_kernel(const KernelArgs& a) {
  return unary_kernel<T>(a, [](T x) { return gelu_tanh(x); });
}
template <> Kernel gelu_tanh_kernel<float>(const KernelArgs& a) {
  return unary_kernel<float>(a, [](float x) { return gelu_tanh_f32(x); });
}
template <class T> Kernel gelu_tanh_grad_kernel(const KernelArgs& a) {
  return grad_kernel<T>(a, [](T dy, T x) { return gelu_tanh_grad(dy, x); });
}
template <> Kernel gelu_tanh_grad_kernel<float>(const KernelArgs& a) {
  return grad_kernel<float>(a, [](float dy, float x) { return gelu_tanh_grad_f32(dy, x); });
}

template <class T> Kernel gelu_erf_kernel(const KernelArgs& a) {
  return unary_kernel<T>(a, [](T x) { return gelu_erf(x); });
}
template <> Kernel gelu_erf_kernel<float>(const KernelArgs& a) {
  return unary_kernel<float>(a, [](float x) { return gelu_erf_f32(x); });
}
template <class T> Kernel gelu_erf_grad_kernel(const KernelArgs& a) {
  return grad_kernel<T>(a, [](T dy, T x) { return gelu_erf_grad(dy, x); });
}
template <> Kernel gelu_erf_grad_kernel<float>(const KernelArgs& a) {
  return grad_kernel<float>(a, [](float dy, float x) { return gelu_erf_grad_f32(dy, x); });
}

template <class T> Kernel gelu_kernel(const KernelArgs& a) {
  if (gelu_tanh_form(a, attrs::Gelu(a).approximate)) return gelu_tanh_kernel<T>(a);
  return gelu_erf_kernel<T>(a);
}

template <class T> Kernel gelu_grad_kernel(const KernelArgs& a) {
  if (gelu_tanh_form(a, attrs::GeluGrad(a).approximate)) return gelu_tanh_grad_kernel<T>(a);
  return gelu_erf_grad_kernel<T>(a);
}

// softplus: x where z = beta·x > threshold, else log(1 + e^z)/beta as (max(z, 0) + log1p(e^-|z|))/beta:
// equal to torch's log1p(e^z)/beta to rounding, and finite where e^z overflows under a large
// threshold (torch: inf).  NaN x: the comparison is false and the NaN flows through.
template <class T> Kernel softplus_kernel(const KernelArgs& a) {
  const attrs::Softplus at(a);
  const SoftplusParams p = softplus_params(a, at.beta, at.threshold);
  const T beta = T(p.beta), threshold = T(p.threshold);
  return unary_kernel<T>(a, [beta, threshold](T x) {
    const T z = x * beta;
    const T soft = softplus_soft(z, beta);
    return z > threshold ? x : soft;
  });
}

// softplus_grad: dy where z > threshold, else dy·σ(z), σ from e^-|z| (never overflows).
template <class T> Kernel softplus_grad_kernel(const KernelArgs& a) {
  const attrs::SoftplusGrad at(a);
  const SoftplusParams p = softplus_params(a, at.beta, at.threshold);
  const T beta = T(p.beta), threshold = T(p.threshold);
  return grad_kernel<T>(a, [beta, threshold](T dy, T x) {
    const T z = x * beta;
    const T s = sigmoid_of(z);
    return z > threshold ? dy : dy * s;
  });
}

// leaky_relu: x where x > 0, else x·slope (the slope rounded to T once, as torch).  A select, so
// NaN flows through the product and -0.0 stays -0.0 for slope >= 0.
double leaky_slope(const KernelArgs& a, double slope) {
  if (!std::isfinite(slope)) a.fail("attr 'negative_slope' must be finite, got " + std::to_string(slope));
  return slope;
}

template <class T> Kernel leaky_relu_kernel(const KernelArgs& a) {
  const T slope = T(leaky_slope(a, attrs::LeakyRelu(a).negative_slope));
  return unary_kernel<T>(a, [slope](T x) { return x > T(0) ? x : x * slope; });
}

// leaky_relu_grad: dy where x > 0, else dy·slope.
template <class T> Kernel leaky_relu_grad_kernel(const KernelArgs& a) {
  const T slope = T(leaky_slope(a, attrs::LeakyReluGrad(a).negative_slope));
  return grad_kernel<T>(a, [slope](T dy, T x) { return x > T(0) ? dy : dy * slope; });
}

}  // namespace
}  // namespace cpu

void register_activation_kernels(KernelRegistry& r) {
  using namespace cpu;
#define GRAPHC_TYPED(kernel) [](auto tag, const KernelArgs& a) { return kernel<typename decltype(tag)::type>(a); }
  add_typed<FloatTypes>(r, "gelu", GRAPHC_TYPED(gelu_kernel));
  add_typed<FloatTypes>(r, "gelu_grad", GRAPHC_TYPED(gelu_grad_kernel));
  add_typed<FloatTypes>(r, "softplus", GRAPHC_TYPED(softplus_kernel));
  add_typed<FloatTypes>(r, "softplus_grad", GRAPHC_TYPED(softplus_grad_kernel));
  add_typed<FloatTypes>(r, "leaky_relu", GRAPHC_TYPED(leaky_relu_kernel));
  add_typed<FloatTypes>(r, "leaky_relu_grad", GRAPHC_TYPED(leaky_relu_grad_kernel));
#undef GRAPHC_TYPED
}

}  // namespace graphc
