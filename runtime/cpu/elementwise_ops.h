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
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <type_traits>

#include "elementwise.h"
#include "isa.h"

namespace graphc {
namespace cpu {

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

template <class T> T sigmoid_value(T x) {
  // Two branches so that exp never overflows to inf/inf.
  if (x >= T(0)) return T(1) / (T(1) + std::exp(-x));
  T e = std::exp(x);
  return e / (T(1) + e);
}

// Binary functors: f(a, b).
struct AddF { template <class T> T operator()(T a, T b) const { return wrap_add(a, b); } };
struct SubF { template <class T> T operator()(T a, T b) const { return wrap_sub(a, b); } };
struct MulF { template <class T> T operator()(T a, T b) const { return wrap_mul(a, b); } };
struct DivF { template <class T> T operator()(T a, T b) const { return a / b; } };
struct MaximumF { template <class T> T operator()(T a, T b) const { return nan_max(a, b); } };
struct MinimumF { template <class T> T operator()(T a, T b) const { return nan_min(a, b); } };
// relu_grad(g, x) = g where x > 0, else 0 (NaN x gives 0), as runtime/cpu/nn.cc's kernel.
struct ReluGradF { template <class T> T operator()(T g, T x) const { return x > T(0) ? g : T(0); } };

// Unary functors: f(x).
struct AbsF { template <class T> T operator()(T x) const { return x < T(0) ? wrap_neg(x) : x; } };
struct NegF { template <class T> T operator()(T x) const { return wrap_neg(x); } };
struct ExpF { template <class T> T operator()(T x) const { return std::exp(x); } };
struct LogF { template <class T> T operator()(T x) const { return std::log(x); } };
struct SqrtF { template <class T> T operator()(T x) const { return std::sqrt(x); } };
// NaN stays NaN, like np.maximum(x, 0).
struct ReluF { template <class T> T operator()(T x) const { return x < T(0) ? T(0) : x; } };
struct SigmoidF { template <class T> T operator()(T x) const { return sigmoid_value(x); } };
struct TanhF { template <class T> T operator()(T x) const { return std::tanh(x); } };
// pow with a fixed exponent e (the attr cast to T).  numpy's power(x, 0.5) is sqrt(x): NaN
// for -inf and -0.0 for -0.0, where C's pow gives +inf and +0.0; every other exponent
// agrees with C's pow.  The loop picks SqrtF once when e == 0.5.
struct PowF {
  template <class T> T operator()(T x, T e) const { return static_cast<T>(std::pow(x, e)); }
};

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
