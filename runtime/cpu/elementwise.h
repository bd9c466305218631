// elementwise.h — what the two elementwise files share: integer arithmetic that wraps
// like numpy, NaN-propagating max/min, parallel grains, and the unary registration.
// (Split in two files so that a parallel build compiles them side by side.)
// aot-sources: elementwise_unary.cc
#pragma once

#include "../hd.h"
#include "common.h"

namespace graphc {
namespace cpu {

constexpr int64_t kCheapGrain = 1 << 15;
constexpr int64_t kCostlyGrain = 1 << 11;

// GRAPHC_HD: the CUDA kernels (runtime/cuda/elementwise.cu) use the same functions.
// Integer arithmetic wraps (two's complement) like numpy instead of being undefined on
// overflow: neg and abs of INT_MIN give INT_MIN, as numpy's do.
template <class T> GRAPHC_HD T wrap_add(T a, T b) {
  if constexpr (std::is_integral_v<T>) {
    using U = std::make_unsigned_t<T>;
    return static_cast<T>(static_cast<U>(a) + static_cast<U>(b));
  } else {
    return a + b;
  }
}
template <class T> GRAPHC_HD T wrap_sub(T a, T b) {
  if constexpr (std::is_integral_v<T>) {
    using U = std::make_unsigned_t<T>;
    return static_cast<T>(static_cast<U>(a) - static_cast<U>(b));
  } else {
    return a - b;
  }
}
template <class T> GRAPHC_HD T wrap_mul(T a, T b) {
  if constexpr (std::is_integral_v<T>) {
    using U = std::make_unsigned_t<T>;
    return static_cast<T>(static_cast<U>(a) * static_cast<U>(b));
  } else {
    return a * b;
  }
}
template <class T> GRAPHC_HD T wrap_neg(T a) { return wrap_sub(T(0), a); }

// numpy maximum/minimum propagate NaN.
// Written as selects, not early returns, so that the vectoriser if-converts them (the
// reductions' max loops stayed scalar with the early returns); same results.
template <class T> GRAPHC_HD T nan_max(T a, T b) {
  T m = a > b ? a : b;
  if constexpr (std::is_floating_point_v<T>) {
    m = b != b ? b : m;
    m = a != a ? a : m;
  }
  return m;
}
template <class T> GRAPHC_HD T nan_min(T a, T b) {
  T m = a < b ? a : b;
  if constexpr (std::is_floating_point_v<T>) {
    m = b != b ? b : m;
    m = a != a ? a : m;
  }
  return m;
}

// elementwise_unary.cc: unary math, cast, where.
void register_unary_kernels(KernelRegistry& r);

}  // namespace cpu
}  // namespace graphc
