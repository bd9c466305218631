// pad_checks.h — the checks of pad and pad_grad (mode, pads, the border value), shared by
// runtime/cpu/pad.cc and runtime/cuda/pad.cu: both devices accept exactly the same steps with the
// same messages.  Prepare-time code only.  Host code only.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "common.h"

namespace graphc {
namespace cpu {

// The attrs checked against x's dims; returns the padded dims.
inline std::vector<int64_t> padded_dims(const KernelArgs& args, const std::vector<int64_t>& xd,
                                        const std::vector<int64_t>& pads, const std::string& mode) {
  if (mode != "constant" && mode != "reflect" && mode != "replicate") {
    args.fail("attr 'mode' must be 'constant', 'reflect' or 'replicate', got '" + mode + "'");
  }
  const size_t rank = xd.size();
  if (pads.size() != 2 * rank) {
    args.fail("attr 'pads' must hold 2 * rank = " + std::to_string(2 * rank) + " entries (a (before, after) pair "
              "per axis), got " + std::to_string(pads.size()));
  }
  std::vector<int64_t> yd;
  for (size_t i = 0; i < rank; ++i) {
    const int64_t b = pads[2 * i], a = pads[2 * i + 1], d = xd[i];
    const std::string where = " on axis " + std::to_string(i) + " (dim " + std::to_string(d) + ", pads (" +
                              std::to_string(b) + ", " + std::to_string(a) + "))";
    if (b < 0 || a < 0) args.fail("attr 'pads' has a negative entry" + where);
    if (b > 0 || a > 0) {
      if (mode == "reflect" && (b >= d || a >= d)) args.fail("mode 'reflect' needs pads < dim" + where);
      if (mode == "replicate" && d == 0) args.fail("mode 'replicate' cannot pad an empty axis" + where);
    }
    const std::string what = "the padded dim" + where;
    yd.push_back(checked_add(args, checked_add(args, d, b, what), a, what));
  }
  return yd;
}

// A double attr as T, refused unless exact (ints/bool: no NaN, no fraction, in range).
template <class T> T border_value(const KernelArgs& args, double v) {
  if constexpr (std::is_floating_point_v<T>) {
    // A double beyond float's range does not convert (undefined behaviour): round as IEEE
    // does, to ±FLT_MAX up to half an ulp past it, to ±inf beyond (numpy's astype).
    if (std::is_same_v<T, float> && std::isfinite(v) && std::fabs(v) > std::numeric_limits<float>::max()) {
      const double inf_from = 0x1p128 - 0x1p103;  // FLT_MAX + half an ulp
      const float mag = std::fabs(v) >= inf_from ? std::numeric_limits<float>::infinity()
                                                 : std::numeric_limits<float>::max();
      return static_cast<T>(std::copysign(mag, static_cast<float>(v > 0 ? 1 : -1)));
    }
    return static_cast<T>(v);
  } else {
    const double lo = std::is_same_v<T, boolean> ? 0.0 : static_cast<double>(std::numeric_limits<T>::min());
    const double hi = std::is_same_v<T, boolean> ? 1.0 : static_cast<double>(std::numeric_limits<T>::max());
    // hi of int64 rounds up to 2**63 as a double: compare with < on that side.
    const bool ok = std::isfinite(v) && v == std::trunc(v) && v >= lo &&
                    (std::is_same_v<T, int64_t> ? v < 9223372036854775808.0 : v <= hi);
    if (!ok) args.fail("attr 'value' " + std::to_string(v) + " is not exactly representable in the input's dtype");
    return static_cast<T>(v);
  }
}

// pad(x) -> y: the checks before the plan; returns the attrs and the border value as T.
template <class T> struct PadHead {
  attrs::Pad attr;
  T value;
};

template <class T> PadHead<T> pad_head(const KernelArgs& args) {
  args.expect_arity(1, 1);
  expect_dtype(args, args.out[0], args.in[0].dtype, "output");
  const attrs::Pad attr(args);
  if (std::is_same_v<T, boolean> && attr.mode != "constant") {
    args.fail("mode '" + attr.mode + "' takes float or int input, got bool");
  }
  const T value = border_value<T>(args, attr.value);
  return {attr, value};
}

// pad_grad(g, x) -> dx: the checks before the plan.
inline attrs::PadGrad pad_grad_head(const KernelArgs& args) {
  args.expect_arity(2, 1);
  expect_dtype(args, args.in[1], args.in[0].dtype, "input 1 (x)");
  expect_dtype(args, args.out[0], args.in[0].dtype, "output");
  expect_dims(args, args.out[0], args.in[1].dims, "output");
  const attrs::PadGrad attr(args);
  return attr;
}

}  // namespace cpu
}  // namespace graphc
