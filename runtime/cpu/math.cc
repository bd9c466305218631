// math.cc — the elementwise math of graphc/ops/math.py (its numpy references are the
// definitions): erf, floor, ceil, round, reciprocal, the trigonometric and hyperbolic functions
// and their inverses, sign, isnan, isinf; the broadcasting binary ops power, mod, int_div,
// greater_equal, less_equal, logical_and, logical_or, logical_xor.
//
// Floats go through libm (float32 through the float overloads: sinf, powf, ...), as numpy's
// references do, so the kernels agree with them to a few ulp.  round is nearbyint in the default
// rounding mode: halves to even, as numpy.round and ONNX Round.  Integer division and remainder
// never trap: a zero divisor gives 0, and -1 (whose INT_MIN case is the one overflowing x86
// idiv) is handled without dividing: a / -1 = -a (wrapping: INT_MIN stays INT_MIN), a mod -1 = 0.
// No reduction: results are the same bits for any thread count.  An output may alias an input of
// its size (the ops are declared elementwise): every loop reads item i before writing it.
#include <cmath>
#include <limits>
#include <type_traits>

#include "common.h"
#include "map_kernel.h"
#include "math_ops.h"
#include "op_schema.h"

namespace graphc {
namespace cpu {
namespace {

constexpr int64_t kCheap = 1 << 15;   // items per task for compares and logic
constexpr int64_t kCostly = 1 << 11;  // for libm calls

// ---------------------------------------------------------------- loops

// y = f(x): map_kernel; y = f(a, b) with broadcasting: zip_kernel (map_kernel.h).

// Registers kernel(tag, args) for every dtype of Types the op's schema allows.
template <class Types, class O, class MakeFn>
void add_map(KernelRegistry& r, const char* name, int64_t grain, MakeFn make) {
  add_typed<Types>(r, name, [make, grain](auto tag, const KernelArgs& a) -> Kernel {
    using T = typename decltype(tag)::type;
    using Out = std::conditional_t<std::is_void_v<O>, T, O>;
    return map_kernel<T, Out>(a, make(tag, a), grain);
  });
}
template <class Types, class O, class MakeFn>
void add_zip(KernelRegistry& r, const char* name, int64_t grain, MakeFn make) {
  add_typed<Types>(r, name, [make, grain](auto tag, const KernelArgs& a) -> Kernel {
    using T = typename decltype(tag)::type;
    using Out = std::conditional_t<std::is_void_v<O>, T, O>;
    return zip_kernel<T, Out>(a, make(tag, a), grain);
  });
}

// A unary float function f(x) (the same expression for float and double: the overloads pick
// the float32 libm functions).
#define GRAPHC_FLOAT_MAP(name, expr)                                                     \
  add_map<FloatTypes, void>(r, name, kCostly, [](auto tag, const KernelArgs&) {          \
    using T = typename decltype(tag)::type;                                               \
    return [](T x) -> T { return (expr); };                                               \
  })

// sign_of, float_mod, int_mod, int_div, truth: math_ops.h (shared with runtime/cuda/math.cu).

template <class T> Kernel mod_kernel(const KernelArgs& a) {
  const bool c_fmod = attrs::Mod(a).fmod;
  if constexpr (std::is_floating_point_v<T>) {
    if (c_fmod) return zip_kernel<T, T>(a, [](T x, T y) { return std::fmod(x, y); }, kCostly);
    return zip_kernel<T, T>(a, [](T x, T y) { return float_mod(x, y); }, kCostly);
  } else {
    if (c_fmod) return zip_kernel<T, T>(a, [](T x, T y) { return int_mod(x, y, true); }, kCostly);
    return zip_kernel<T, T>(a, [](T x, T y) { return int_mod(x, y, false); }, kCostly);
  }
}

Kernel isinf_kernel(const KernelArgs& a) {
  const attrs::Isinf at(a);
  const bool pos = at.detect_positive, neg = at.detect_negative;
  return FloatTypes::dispatch(a.in[0].dtype, [&](auto tag) -> Kernel {
    using T = typename decltype(tag)::type;
    constexpr T inf = std::numeric_limits<T>::infinity();
    return map_kernel<T, boolean>(a, [pos, neg](T x) {
      return static_cast<boolean>((pos && x == inf) || (neg && x == -inf));
    }, kCheap);
  });
}

struct IntTypes {
  static bool supports(DType t) { return t == DType::I32 || t == DType::I64; }
  template <class F> static auto dispatch(DType t, F&& f) {
    if (t == DType::I64) return f(Tag<int64_t>{});
    return f(Tag<int32_t>{});
  }
};
struct BoolTypes {
  static bool supports(DType t) { return t == DType::Bool; }
  template <class F> static auto dispatch(DType, F&& f) { return f(Tag<boolean>{}); }
};

}  // namespace
}  // namespace cpu

void register_math_kernels(KernelRegistry& r) {
  using namespace cpu;
  GRAPHC_FLOAT_MAP("erf", std::erf(x));
  GRAPHC_FLOAT_MAP("floor", std::floor(x));
  GRAPHC_FLOAT_MAP("ceil", std::ceil(x));
  GRAPHC_FLOAT_MAP("round", std::nearbyint(x));
  GRAPHC_FLOAT_MAP("reciprocal", T(1) / x);
  GRAPHC_FLOAT_MAP("sin", std::sin(x));
  GRAPHC_FLOAT_MAP("cos", std::cos(x));
  GRAPHC_FLOAT_MAP("tan", std::tan(x));
  GRAPHC_FLOAT_MAP("asin", std::asin(x));
  GRAPHC_FLOAT_MAP("acos", std::acos(x));
  GRAPHC_FLOAT_MAP("atan", std::atan(x));
  GRAPHC_FLOAT_MAP("sinh", std::sinh(x));
  GRAPHC_FLOAT_MAP("cosh", std::cosh(x));
  GRAPHC_FLOAT_MAP("asinh", std::asinh(x));
  GRAPHC_FLOAT_MAP("acosh", std::acosh(x));
  GRAPHC_FLOAT_MAP("atanh", std::atanh(x));
#undef GRAPHC_FLOAT_MAP
  add_map<NumericTypes, void>(r, "sign", kCheap, [](auto tag, const KernelArgs&) {
    using T = typename decltype(tag)::type;
    return [](T x) { return sign_of(x); };
  });
  add_map<FloatTypes, boolean>(r, "isnan", kCheap, [](auto tag, const KernelArgs&) {
    using T = typename decltype(tag)::type;
    return [](T x) { return static_cast<boolean>(x != x); };
  });
  for (DType t : schema_dtypes("isinf")) add_kernel(r, "isinf", t, isinf_kernel);

  add_zip<FloatTypes, void>(r, "power", kCostly, [](auto tag, const KernelArgs&) {
    using T = typename decltype(tag)::type;
    return [](T x, T y) -> T { return std::pow(x, y); };
  });
  add_typed<NumericTypes>(r, "mod", [](auto tag, const KernelArgs& a) {
    return mod_kernel<typename decltype(tag)::type>(a);
  });
  add_zip<IntTypes, void>(r, "int_div", kCheap, [](auto tag, const KernelArgs&) {
    using T = typename decltype(tag)::type;
    return [](T x, T y) { return int_div(x, y); };
  });
  add_zip<NumericTypes, boolean>(r, "greater_equal", kCheap, [](auto tag, const KernelArgs&) {
    using T = typename decltype(tag)::type;
    return [](T x, T y) { return static_cast<boolean>(x >= y); };
  });
  add_zip<NumericTypes, boolean>(r, "less_equal", kCheap, [](auto tag, const KernelArgs&) {
    using T = typename decltype(tag)::type;
    return [](T x, T y) { return static_cast<boolean>(x <= y); };
  });
  add_zip<BoolTypes, boolean>(r, "logical_and", kCheap, [](auto, const KernelArgs&) {
    return [](boolean x, boolean y) { return static_cast<boolean>(truth(x) && truth(y)); };
  });
  add_zip<BoolTypes, boolean>(r, "logical_or", kCheap, [](auto, const KernelArgs&) {
    return [](boolean x, boolean y) { return static_cast<boolean>(truth(x) || truth(y)); };
  });
  add_zip<BoolTypes, boolean>(r, "logical_xor", kCheap, [](auto, const KernelArgs&) {
    return [](boolean x, boolean y) { return static_cast<boolean>(truth(x) != truth(y)); };
  });
}

}  // namespace graphc
