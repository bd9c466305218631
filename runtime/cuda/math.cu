// math.cu — the CUDA twin of runtime/cpu/math.cc: erf, floor, ceil, round, reciprocal, the
// trigonometric and hyperbolic functions and their inverses, sign, isnan, isinf; the broadcasting
// binary ops power, mod, int_div, greater_equal, less_equal, logical_and, logical_or, logical_xor.
//
// Floats go through CUDA's math library (the float overloads for float32: erff, sinf, powf, ...;
// within a few ulp of the CPU's libm, as the kernel tests allow); round is nearbyint (halves to
// even).  sign, mod, int_div and the bool logic are the CPU's own GRAPHC_HD functions
// (cpu/math_ops.h): integer division and remainder never trap (b = 0 gives 0, b = -1 is handled
// without dividing).
// Launch shapes (ew.cuh): unary ops: one 16-byte vector of the wider type per thread per
// iteration, grid-stride; binary ops: the flat vector kernel when both operands are contiguous or
// scalar (and aligned), else one thread per output item through Strides<2>.
#include <cmath>
#include <limits>
#include <type_traits>

#include "../cpu/math_ops.h"
#include "ew.cuh"

namespace graphc {
namespace cuda {
namespace {

using cpu::boolean;

// A unary float function f(x) as a functor (the same expression for float and double: the
// overloads pick the float32 functions).
#define GRAPHC_FLOAT_FN(Name, expr) \
  struct Name {                     \
    template <class T> GRAPHC_HD T operator()(T x) const { return (expr); } \
  }
GRAPHC_FLOAT_FN(ErfF, std::erf(x));
GRAPHC_FLOAT_FN(FloorF, std::floor(x));
GRAPHC_FLOAT_FN(CeilF, std::ceil(x));
GRAPHC_FLOAT_FN(RoundF, std::nearbyint(x));
GRAPHC_FLOAT_FN(ReciprocalF, T(1) / x);
GRAPHC_FLOAT_FN(SinF, std::sin(x));
GRAPHC_FLOAT_FN(CosF, std::cos(x));
GRAPHC_FLOAT_FN(TanF, std::tan(x));
GRAPHC_FLOAT_FN(AsinF, std::asin(x));
GRAPHC_FLOAT_FN(AcosF, std::acos(x));
GRAPHC_FLOAT_FN(AtanF, std::atan(x));
GRAPHC_FLOAT_FN(SinhF, std::sinh(x));
GRAPHC_FLOAT_FN(CoshF, std::cosh(x));
GRAPHC_FLOAT_FN(AsinhF, std::asinh(x));
GRAPHC_FLOAT_FN(AcoshF, std::acosh(x));
GRAPHC_FLOAT_FN(AtanhF, std::atanh(x));
#undef GRAPHC_FLOAT_FN

struct SignF {
  template <class T> GRAPHC_HD T operator()(T x) const { return cpu::sign_of(x); }
};
struct IsnanF {
  template <class T> GRAPHC_HD boolean operator()(T x) const { return static_cast<boolean>(x != x); }
};
struct IsinfF {
  bool pos, neg;
  template <class T> GRAPHC_HD boolean operator()(T x) const {
    constexpr T inf = std::numeric_limits<T>::infinity();
    return static_cast<boolean>((pos && x == inf) || (neg && x == -inf));
  }
};
struct PowerF {
  template <class T> GRAPHC_HD T operator()(T x, T y) const { return std::pow(x, y); }
};
struct FmodF {
  template <class T> GRAPHC_HD T operator()(T x, T y) const {
    if constexpr (std::is_floating_point_v<T>) {
      return std::fmod(x, y);
    } else {
      return cpu::int_mod(x, y, true);
    }
  }
};
struct FloorModF {
  template <class T> GRAPHC_HD T operator()(T x, T y) const {
    if constexpr (std::is_floating_point_v<T>) {
      return cpu::float_mod(x, y);
    } else {
      return cpu::int_mod(x, y, false);
    }
  }
};
struct IntDivF {
  template <class T> GRAPHC_HD T operator()(T x, T y) const { return cpu::int_div(x, y); }
};
struct GreaterEqualF {
  template <class T> GRAPHC_HD boolean operator()(T x, T y) const { return static_cast<boolean>(x >= y); }
};
struct LessEqualF {
  template <class T> GRAPHC_HD boolean operator()(T x, T y) const { return static_cast<boolean>(x <= y); }
};
struct AndF {
  GRAPHC_HD boolean operator()(boolean x, boolean y) const {
    return static_cast<boolean>(cpu::truth(x) && cpu::truth(y));
  }
};
struct OrF {
  GRAPHC_HD boolean operator()(boolean x, boolean y) const {
    return static_cast<boolean>(cpu::truth(x) || cpu::truth(y));
  }
};
struct XorF {
  GRAPHC_HD boolean operator()(boolean x, boolean y) const {
    return static_cast<boolean>(cpu::truth(x) != cpu::truth(y));
  }
};

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

// y = F(x) (O void: T) for every dtype of Types the schema allows.
template <class Types, class O, class F> void add_map(KernelRegistry& r, const char* name) {
  add_typed<Types>(r, name, [name](auto tag, const KernelArgs& a) -> Kernel {
    using T = typename decltype(tag)::type;
    using Out = std::conditional_t<std::is_void_v<O>, T, O>;
    return ew_map<T, Out>(a, F{}, name);
  });
}
// y = F(a, b) with broadcasting.
template <class Types, class O, class F> void add_zip(KernelRegistry& r, const char* name) {
  add_typed<Types>(r, name, [name](auto tag, const KernelArgs& a) -> Kernel {
    using T = typename decltype(tag)::type;
    using Out = std::conditional_t<std::is_void_v<O>, T, O>;
    return ew_zip<T, Out>(a, F{}, name);
  });
}

template <class T> Kernel mod_kernel(const KernelArgs& a) {
  if (attrs::Mod(a).fmod) return ew_zip<T, T>(a, FmodF{}, "mod");
  return ew_zip<T, T>(a, FloorModF{}, "mod");
}

Kernel isinf_kernel(const KernelArgs& a) {
  const attrs::Isinf at(a);
  const IsinfF f{at.detect_positive, at.detect_negative};
  return FloatTypes::dispatch(a.in[0].dtype, [&](auto tag) -> Kernel {
    using T = typename decltype(tag)::type;
    return ew_map<T, boolean>(a, f, "isinf");
  });
}

}  // namespace

void register_math_kernels(KernelRegistry& r) {
  add_map<FloatTypes, void, ErfF>(r, "erf");
  add_map<FloatTypes, void, FloorF>(r, "floor");
  add_map<FloatTypes, void, CeilF>(r, "ceil");
  add_map<FloatTypes, void, RoundF>(r, "round");
  add_map<FloatTypes, void, ReciprocalF>(r, "reciprocal");
  add_map<FloatTypes, void, SinF>(r, "sin");
  add_map<FloatTypes, void, CosF>(r, "cos");
  add_map<FloatTypes, void, TanF>(r, "tan");
  add_map<FloatTypes, void, AsinF>(r, "asin");
  add_map<FloatTypes, void, AcosF>(r, "acos");
  add_map<FloatTypes, void, AtanF>(r, "atan");
  add_map<FloatTypes, void, SinhF>(r, "sinh");
  add_map<FloatTypes, void, CoshF>(r, "cosh");
  add_map<FloatTypes, void, AsinhF>(r, "asinh");
  add_map<FloatTypes, void, AcoshF>(r, "acosh");
  add_map<FloatTypes, void, AtanhF>(r, "atanh");
  add_map<NumericTypes, void, SignF>(r, "sign");
  add_map<FloatTypes, boolean, IsnanF>(r, "isnan");
  for (DType t : cpu::schema_dtypes("isinf")) add_kernel(r, "isinf", t, isinf_kernel);

  add_zip<FloatTypes, void, PowerF>(r, "power");
  add_typed<NumericTypes>(r, "mod", [](auto tag, const KernelArgs& a) {
    return mod_kernel<typename decltype(tag)::type>(a);
  });
  add_zip<IntTypes, void, IntDivF>(r, "int_div");
  add_zip<NumericTypes, boolean, GreaterEqualF>(r, "greater_equal");
  add_zip<NumericTypes, boolean, LessEqualF>(r, "less_equal");
  add_zip<BoolTypes, boolean, AndF>(r, "logical_and");
  add_zip<BoolTypes, boolean, OrF>(r, "logical_or");
  add_zip<BoolTypes, boolean, XorF>(r, "logical_xor");
}

}  // namespace cuda
}  // namespace graphc
