// math_ops.h — the scalar semantics of math.cc's ops that are more than one library call:
// numpy's sign and mod, the trap-free integer division and remainder, and the truth of a bool
// byte.  GRAPHC_HD: runtime/cuda/math.cu evaluates the same functions on the device.
#pragma once

#include <cmath>
#include <type_traits>

#include "../hd.h"
#include "common.h"

namespace graphc {
namespace cpu {

// numpy.sign: ±1, +0 for ±0, NaN for NaN.
template <class T> GRAPHC_HD T sign_of(T x) {
  if constexpr (std::is_floating_point_v<T>) {
    const T s = x > T(0) ? T(1) : (x < T(0) ? T(-1) : T(0));
    return x != x ? x : s;
  } else {
    return static_cast<T>((x > T(0)) - (x < T(0)));
  }
}

// numpy.mod on floats (npy_divmod): C fmod, then moved by b when it has the other sign; an exact
// 0 takes b's sign.  NaN stays NaN (b = 0, a = ±inf); a mod ±inf is a, or b when the signs differ.
template <class T> GRAPHC_HD T float_mod(T a, T b) {
  T m = std::fmod(a, b);
  if (b == T(0)) return m;
  if (m != T(0)) {
    if (std::isless(b, T(0)) != std::isless(m, T(0))) m += b;
  } else {
    m = std::copysign(T(0), b);
  }
  return m;
}

// Integer remainder without a trap: 0 for b = 0 and b = -1; the sign of b (floor) or of a (fmod).
template <class T> GRAPHC_HD T int_mod(T a, T b, bool c_fmod) {
  if (b == T(0) || b == T(-1)) return T(0);
  T m = a % b;
  if (!c_fmod && m != T(0) && ((m < T(0)) != (b < T(0)))) m += b;  // |m| < |b|: no overflow
  return m;
}

// Integer quotient toward zero without a trap: 0 for b = 0; -a wrapping for b = -1.
template <class T> GRAPHC_HD T int_div(T a, T b) {
  using U = std::make_unsigned_t<T>;
  if (b == T(0)) return T(0);
  if (b == T(-1)) return static_cast<T>(U(0) - static_cast<U>(a));
  return a / b;
}

// A bool byte other than 0/1 (foreign bytes) reads as true.
GRAPHC_HD inline bool truth(boolean v) { return v != boolean(0); }

}  // namespace cpu
}  // namespace graphc
