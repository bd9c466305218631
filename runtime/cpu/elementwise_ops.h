// elementwise_ops.h — the scalar definition of every fusible elementwise op, once.
//
// The standalone kernels (elementwise.cc, elementwise_unary.cc) and the fused-program
// interpreter (fused_program.cc) both evaluate these functors, through the same per-ISA
// loops (elementwise_loops.inc), so a member of a fused program computes bit-identically
// to its unfused kernel.  Every ISA build of the loops performs the same IEEE operations
// per element (no FMA contraction: -ffp-contract=off; no -ffast-math; transcendentals
// are the same scalar libm calls), so results are also identical across ISAs.
//
// This header is included *outside* any `#pragma GCC target` region: the functors'
// out-of-line copies (if the compiler makes any) are baseline code, and the per-ISA
// loops inline them into their own, differently named, instantiations.
// aot-sources: elementwise_isa_baseline.cc elementwise_isa_avx2.cc elementwise_isa_avx512.cc
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>

#include "../hd.h"
#include "elementwise.h"
#include "isa.h"

namespace graphc {
namespace cpu {

// Every scalar function and functor here is GRAPHC_HD: runtime/cuda/elementwise.cu and the CUDA
// fused-program interpreter evaluate the very same code (nvcc may contract a*b+c into an FMA on
// the device, so float32 results agree with the CPU's to an ulp or so, not bit for bit).

// The bits of a float32 and back: memcpy on the host (what the vectoriser understands),
// the register reinterpretation on the device.
GRAPHC_HD inline int32_t f32_bits(float x) {
#if defined(__CUDA_ARCH__)
  return __float_as_int(x);
#else
  int32_t b;
  std::memcpy(&b, &x, sizeof b);
  return b;
#endif
}
GRAPHC_HD inline float f32_from_bits(int32_t b) {
#if defined(__CUDA_ARCH__)
  return __int_as_float(b);
#else
  float x;
  std::memcpy(&x, &b, sizeof x);
  return x;
#endif
}

// The fusible ops, binary first.  Names (kEwOpNames) are the registry's op names.
enum class EwOp : int {
  Add, Sub, Mul, Div, Maximum, Minimum, ReluGrad,
  Abs, Neg, Exp, Log, Sqrt, Relu, Sigmoid, Tanh, Pow,
  kCount
};
constexpr int kNumEwOps = static_cast<int>(EwOp::kCount);
constexpr int kNumBinaryEwOps = static_cast<int>(EwOp::Abs);  // ops before Abs take 2 inputs
inline bool ew_is_binary(EwOp op) { return static_cast<int>(op) < kNumBinaryEwOps; }
extern const char* const kEwOpNames[kNumEwOps];

// exp for float32 as plain arithmetic the compiler vectorises (glibc's expf is a call per
// element: 8 ms per million here, this 1-2 ms).  Cephes' expf: n = round(x / ln2), r = x -
// n ln2 in two parts (Cody-Waite), a degree-7 polynomial, then 2^n as two exact power-of-two
// scalings so that subnormal results and overflow to inf round once.  Within 1 ulp of the
// correctly rounded result over all of [-104, 89] (checked against float64 exp on 2e7 points,
// subnormals included), exactly 1 at 0, inf above 88.73, 0 below -103.98, NaN for NaN.  Only
// IEEE +, -, * and exact integer steps: the same bits on every ISA and in every lane (no FMA:
// -ffp-contract=off).  The selects (no branches) let the vectoriser if-convert the clamps, which
// needs -fno-trapping-math (setup.py).
GRAPHC_HD inline float exp_f32(float x) {
  x = x > 89.0f ? 89.0f : x;  // selects keep NaN
  x = x < -104.0f ? -104.0f : x;
  constexpr float kMagic = 12582912.0f;  // 1.5 * 2^23: (v + kMagic) - kMagic rounds v to an integer
  const float fn = (x * 1.44269504088896341f + kMagic) - kMagic;
  float r = x - fn * 0.693359375f;  // exact: 0.693359375 has 9 significant bits
  r = r - fn * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r;
  p = p + 1.0f;
  const int32_t n = static_cast<int32_t>(fn == fn ? fn : 0.0f);  // in [-150, 129]; NaN stays in p
  const int32_t n1 = n >> 1, n2 = n - n1;
  const int32_t b1 = (n1 + 127) << 23, b2 = (n2 + 127) << 23;
  const float s1 = f32_from_bits(b1), s2 = f32_from_bits(b2);
  return p * s1 * s2;
}

// Cephes logf's kernel: log(1 + m) + fe·ln2 for a reduced argument m in [√½ - 1, √2 - 1] and an
// integer-valued fe, ln2 in two parts (0.693359375 exact, -2.12194440e-4 the rest).  Shared by
// log_f32 below and activations.cc's log1p on [0, 1]; a fixed order of operations, so the same
// bits wherever it is inlined (no FMA contraction: -ffp-contract=off).
GRAPHC_HD inline float log_reduced_f32(float m, float fe) {
  const float z = m * m;
  float y = 7.0376836292e-2f;
  y = y * m - 1.1514610310e-1f;
  y = y * m + 1.1676998740e-1f;
  y = y * m - 1.2420140846e-1f;
  y = y * m + 1.4249322787e-1f;
  y = y * m - 1.6668057665e-1f;
  y = y * m + 2.0000714765e-1f;
  y = y * m - 2.4999993993e-1f;
  y = y * m + 3.3333331174e-1f;
  y = y * m * z;
  y = y + fe * -2.12194440e-4f;
  y = y - 0.5f * z;
  const float r = m + y;
  return r + fe * 0.693359375f;
}

// log for float32, vectorisable like exp_f32.  Cephes' logf: x = m 2^e with m in [sqrt(1/2),
// sqrt(2)) (subnormals scaled by 2^23 first), log(m) from a degree-9 polynomial in m - 1, plus
// e ln2 in two parts.  Within 1 ulp of the correctly rounded result (checked against float64
// log on every 97th positive float32 bit pattern, subnormals included, and densely on [0.5, 2]);
// log(+-0) = -inf, log(x < 0) = NaN, log(inf) = inf, NaN stays NaN.
GRAPHC_HD inline float log_f32(float x) {
  int32_t bits = f32_bits(x);
  // Subnormals: scale by 2^23 first (exact), remembering the exponent shift.
  const bool sub = bits < 0x00800000;  // also true for x <= 0 and -0.0 (sign bit set: negative int)
  float xs = x * 8388608.0f;
  const int32_t bs = f32_bits(xs);
  bits = sub ? bs : bits;
  const int32_t eadj = sub ? -23 : 0;
  int32_t e = ((bits >> 23) & 0xff) - 126 + eadj;
  const int32_t mb = (bits & 0x007fffff) | 0x3f000000;  // mantissa in [0.5, 1)
  float m = f32_from_bits(mb);
  const bool low = m < 0.707106781186547524f;
  e = low ? e - 1 : e;
  m = low ? (m + m) - 1.0f : m - 1.0f;
  const float fe = static_cast<float>(e);
  float r = log_reduced_f32(m, fe);
  // Special values: log(+-0) = -inf, log(x < 0) = NaN, log(+inf) = +inf, NaN stays.
  const float inf = std::numeric_limits<float>::infinity();
  r = x == inf ? inf : r;
  r = x == 0.0f ? -inf : r;
  // The hardware's default NaN (0/0; negative on x86), as glibc's logf and numpy give.
  const float zero = x - x;  // 0, or NaN for x = -inf (still the default NaN)
  r = x < 0.0f ? zero / zero : r;
  r = x != x ? x : r;
  return r;
}

template <class T> GRAPHC_HD T log_value(T x) {
  if constexpr (std::is_same_v<T, float>) {
    return log_f32(x);
  } else {
    return std::log(x);
  }
}

template <class T> GRAPHC_HD T exp_value(T x) {
  if constexpr (std::is_same_v<T, float>) {
    return exp_f32(x);
  } else {
    return std::exp(x);
  }
}

// tanh for float32, vectorisable like exp_f32 (glibc's tanhf: ~20 ms per million here).
// Cephes' tanhf: for |x| > 0.625, 1 - 2 / (exp(2|x|) + 1) with x's sign (exp's overflow to inf
// gives exactly +-1); below, an odd degree-9 polynomial; +-0 stays +-0.  Within 1 ulp of the
// correctly rounded result (checked against float64 tanh on 2.2e7 points in [-12, 12] and
// down to 1e-40).
GRAPHC_HD inline float tanh_f32(float x) {
  const float ax = x < 0.0f ? -x : x;
  const float e = exp_f32(2.0f * ax);
  const float t = 1.0f - 2.0f / (e + 1.0f);
  const float big = x < 0.0f ? -t : t;
  const float z = x * x;
  float p = -5.70498872745e-3f;
  p = p * z + 2.06390887954e-2f;
  p = p * z - 5.37397155531e-2f;
  p = p * z + 1.33314422036e-1f;
  p = p * z - 3.33332819422e-1f;
  const float small = p * z * x + x;
  return ax > 0.625f ? big : (x == 0.0f ? x : small);
}

template <class T> GRAPHC_HD T tanh_value(T x) {
  if constexpr (std::is_same_v<T, float>) {
    return tanh_f32(x);
  } else {
    return std::tanh(x);
  }
}

template <class T> GRAPHC_HD T sigmoid_value(T x) {
  // One exp of -|x| (never overflows: no inf/inf), both quotients, a select: no branch.
  const T e = exp_value(x < T(0) ? x : -x);
  const T pos = T(1) / (T(1) + e);
  const T neg = e / (T(1) + e);
  return x >= T(0) ? pos : neg;
}

// Binary functors: f(a, b).
struct AddF { template <class T> GRAPHC_HD T operator()(T a, T b) const { return wrap_add(a, b); } };
struct SubF { template <class T> GRAPHC_HD T operator()(T a, T b) const { return wrap_sub(a, b); } };
struct MulF { template <class T> GRAPHC_HD T operator()(T a, T b) const { return wrap_mul(a, b); } };
struct DivF { template <class T> GRAPHC_HD T operator()(T a, T b) const { return a / b; } };
struct MaximumF { template <class T> GRAPHC_HD T operator()(T a, T b) const { return nan_max(a, b); } };
struct MinimumF { template <class T> GRAPHC_HD T operator()(T a, T b) const { return nan_min(a, b); } };
// relu_grad(g, x) = g where x > 0, else 0 (NaN x gives 0), as runtime/cpu/nn.cc's kernel.
struct ReluGradF { template <class T> GRAPHC_HD T operator()(T g, T x) const { return x > T(0) ? g : T(0); } };

// Unary functors: f(x).
struct AbsF { template <class T> GRAPHC_HD T operator()(T x) const { return x < T(0) ? wrap_neg(x) : x; } };
struct NegF { template <class T> GRAPHC_HD T operator()(T x) const { return wrap_neg(x); } };
struct ExpF { template <class T> GRAPHC_HD T operator()(T x) const { return exp_value(x); } };
struct LogF { template <class T> GRAPHC_HD T operator()(T x) const { return log_value(x); } };
struct SqrtF { template <class T> GRAPHC_HD T operator()(T x) const { return std::sqrt(x); } };
// NaN stays NaN, like np.maximum(x, 0).
struct ReluF { template <class T> GRAPHC_HD T operator()(T x) const { return x < T(0) ? T(0) : x; } };
struct SigmoidF { template <class T> GRAPHC_HD T operator()(T x) const { return sigmoid_value(x); } };
struct TanhF { template <class T> GRAPHC_HD T operator()(T x) const { return tanh_value(x); } };
// pow with a fixed exponent e (the attr cast to T).  numpy's power(x, 0.5) is sqrt(x): NaN
// for -inf and -0.0 for -0.0, where C's pow gives +inf and +0.0; every other exponent
// agrees with C's pow.  The loop picks SqrtF once when e == 0.5.
struct PowF {
  template <class T> GRAPHC_HD T operator()(T x, T e) const { return static_cast<T>(std::pow(x, e)); }
};

// cast: one definition for every device (GRAPHC_HD: runtime/cuda/elementwise.cu runs it too),
// matched by the numpy reference (graphc/ops/elementwise.py):
//   float -> int: truncate toward zero, saturating like Rust's `as`: NaN -> 0, +inf and
//     values >= 2^(bits-1) -> the type's max, -inf and values <= -2^(bits-1) -> its min.
//   anything -> bool: x != 0 (NaN -> true, -0.0 -> false).
//   float64 -> float32: IEEE round to nearest, ±inf beyond float32's range.
//   int64 -> int32: wraps (keeps the low 32 bits, two's complement), like numpy and C.
// Each range is checked before converting: C++ leaves an out-of-range float -> int or
// double -> float conversion undefined.
template <class From, class To> GRAPHC_HD To cast_value(From v) {
  if constexpr (std::is_same_v<To, boolean> || std::is_same_v<From, boolean>) {
    // A bool byte other than 0/1 (foreign bytes) still reads as true: 1, not 2.
    return static_cast<To>(v != From(0));
  } else if constexpr (std::is_floating_point_v<From> && std::is_integral_v<To>) {
    constexpr double lim = -static_cast<double>(std::numeric_limits<To>::min());  // 2^(bits-1), exact
    const double d = static_cast<double>(v);
    if (d != d) return To(0);
    if (d >= lim) return std::numeric_limits<To>::max();
    if (d <= -lim) return std::numeric_limits<To>::min();
    return static_cast<To>(d);  // |trunc(d)| < 2^(bits-1): in range
  } else if constexpr (std::is_same_v<From, double> && std::is_same_v<To, float>) {
    // Round to nearest, ties to even: from FLT_MAX + half an ulp (2^128 - 2^103) on, the
    // nearest float is 2^128, i.e. infinity.
    constexpr double kOverflow = 340282356779733661637539395458142568448.0;
    if (v >= kOverflow) return std::numeric_limits<float>::infinity();
    if (v <= -kOverflow) return -std::numeric_limits<float>::infinity();
    return static_cast<float>(v);  // NaN stays NaN
  } else if constexpr (std::is_integral_v<From> && std::is_integral_v<To> && sizeof(To) < sizeof(From)) {
    // Modulo 2^bits through the unsigned type (defined since C++20; GCC and Clang
    // always did so).
    return static_cast<To>(static_cast<std::make_unsigned_t<To>>(v));
  } else {
    return static_cast<To>(v);  // widening, int -> float (rounds to nearest), bool -> number
  }
}

// Elements per parallel chunk of op on T: a chunk should be several microseconds of work, or
// waking a worker costs more than it saves.  Our float32 exp/log/tanh/sigmoid and sqrt
// (vectorised) cost ~0.2-2 ns per element here, pow and the float64 libm calls 5-20 ns.
template <class T> int64_t ew_grain(EwOp op) {
  switch (op) {
    case EwOp::Pow: return kCostlyGrain;
    case EwOp::Exp: case EwOp::Log: case EwOp::Tanh: case EwOp::Sigmoid:
      return std::is_same_v<T, float> ? int64_t(1) << 13 : kCostlyGrain;
    case EwOp::Sqrt: return int64_t(1) << 13;
    default: return kCheapGrain;
  }
}

// Loops over n elements.  Strides are in elements (0: a broadcast scalar, 1: contiguous,
// anything else: strided).  out may alias an input exactly (in-place steps), never partially.
template <class T> struct EwLoops {
  using Binary = void (*)(T* out, const T* a, int64_t sa, const T* b, int64_t sb, int64_t n);
  // attr: pow's exponent (ignored by the others).
  using Unary = void (*)(T* out, const T* x, int64_t sx, int64_t n, T attr);
  Binary binary[kNumBinaryEwOps];
  Unary unary[kNumEwOps - kNumBinaryEwOps];

  void run(EwOp op, T* out, const T* a, int64_t sa, const T* b, int64_t sb, int64_t n, T attr) const {
    const int k = static_cast<int>(op);
    if (k < kNumBinaryEwOps) {
      binary[k](out, a, sa, b, sb, n);
    } else {
      unary[k - kNumBinaryEwOps](out, a, sa, n, attr);
    }
  }
};

// Reductions over a contiguous run (reduce.cc), in a fixed order that depends on n only:
// kReduceLanes interleaved partial results (lane j takes items j, j + L, j + 2L, ...),
// combined in lane order, then the tail in order.  The same on every ISA.
constexpr int64_t kReduceLanes = 16;
template <class T> struct ReduceLoops {
  using Acc = std::conditional_t<std::is_same_v<T, float>, double, T>;
  // Sum of x[0..n) in Acc.
  Acc (*sum)(const T* x, int64_t n);
  // Max of x[0..n), n >= 1; NaN if any item is NaN.
  T (*max)(const T* x, int64_t n);
  // acc[i] += x[i] (sum) or acc[i] = max(acc[i], x[i]) for i < n: one row of an
  // inner-dim reduction.
  void (*sum_rows)(Acc* acc, const T* x, int64_t n);
  void (*max_rows)(Acc* acc, const T* x, int64_t n);
};

struct EwTables {
  EwLoops<float> f32;
  EwLoops<double> f64;
  ReduceLoops<float> rf32;
  ReduceLoops<double> rf64;
};

// Each ISA's build of elementwise_loops.inc (elementwise_isa_*.cc).
namespace isa_baseline { const EwTables& tables(); }
#if defined(__x86_64__)
namespace isa_avx2 { const EwTables& tables(); }
namespace isa_avx512 { const EwTables& tables(); }
#endif

// The loops for isa (which must not exceed detected_isa()).
const EwTables& ew_tables(Isa isa);

template <class T> const EwLoops<T>& ew_loops(Isa isa) {
  if constexpr (std::is_same_v<T, float>) {
    return ew_tables(isa).f32;
  } else {
    return ew_tables(isa).f64;
  }
}
template <class T> const ReduceLoops<T>& reduce_loops(Isa isa) {
  if constexpr (std::is_same_v<T, float>) {
    return ew_tables(isa).rf32;
  } else {
    return ew_tables(isa).rf64;
  }
}

}  // namespace cpu
}  // namespace graphc
