// resize_taps.h — resize's per-axis coordinate transform and 2-tap kernel, shared by the CPU
// (runtime/cpu/tensor_extra.cc builds its tap tables with it) and the GPU
// (runtime/cuda/tensor_extra.cu evaluates it per item), so both read the same source items
// with the same float64 weights.  The arithmetic follows axis_taps in
// graphc/ops/tensor_extra.py step by step.  The two products that nvcc could contract into an
// FMA with the following addition are rounded on their own on the device (the CPU is built
// with -ffp-contract=off), so the weights are the same bits on both.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "../hd.h"
#include "common.h"

namespace graphc {
namespace cpu {

enum class ResizeCtm : int32_t {
  HalfPixel, HalfPixelSymmetric, PytorchHalfPixel, AlignCorners, Asymmetric, TfHalfPixelForNn
};
enum class ResizeNearest : int32_t { RoundPreferFloor, RoundPreferCeil, Floor, Ceil };

// The attrs the taps depend on, as plain values (host and device).
struct ResizeMath {
  ResizeCtm ctm = ResizeCtm::HalfPixel;
  ResizeNearest nearest = ResizeNearest::RoundPreferFloor;
  bool linear = false;
  bool exclude_outside = false;
};

GRAPHC_HD inline double resize_mul(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dmul_rn(a, b);
#else
  return a * b;
#endif
}

// Whether an axis of n_in -> n_out items at `scale` is left as it is (no taps).
GRAPHC_HD inline bool resize_axis_identity(int64_t n_in, int64_t n_out, double scale) {
  const double as = scale < 0 ? -scale : scale;
  const double d = scale - 1.0;
  return n_out == n_in && (d < 0 ? -d : d) <= 1e-9 * (as > 1.0 ? as : 1.0);
}

// The taps of output index j of an axis: input indices idx[0..1] (clamped to [0, n_in)) and
// weights w[0..1]; a tap of weight 0 is not a tap (callers skip it).  The indices depend on j
// and the coordinate transform only (not on the mode), and both are monotone non-decreasing in
// j, with idx[0] <= idx[1] <= idx[0] + 1.
GRAPHC_HD inline void resize_taps(const ResizeMath& s, int64_t n_in, int64_t n_out, double scale, int64_t j,
                                  int64_t idx[2], double w[2]) {
  const double ow = resize_mul(scale, static_cast<double>(n_in));
  const double din = static_cast<double>(n_in);
  const double y = static_cast<double>(j);
  double x;
  switch (s.ctm) {
    case ResizeCtm::AlignCorners: x = ow == 1 ? 0.0 : y * (din - 1) / (ow - 1); break;
    case ResizeCtm::Asymmetric: x = y / scale; break;
    case ResizeCtm::PytorchHalfPixel: x = ow == 1 ? -0.5 : (y + 0.5) / scale - 0.5; break;
    case ResizeCtm::HalfPixelSymmetric: {
      const double offset = resize_mul(din / 2, 1 - static_cast<double>(n_out) / ow);
      x = offset + (y + 0.5) / scale - 0.5;
      break;
    }
    case ResizeCtm::TfHalfPixelForNn: x = (y + 0.5) / scale; break;
    default: x = (y + 0.5) / scale - 0.5; break;
  }
  const double xf = floor(x);
  const double ratio = x == xf ? 1.0 : x - xf;
  const double xp = x + 1.0;
  const double p = floor(xp);
  const int64_t start = static_cast<int64_t>(p) + (xp - p == 0 ? -1 : 0) - 1;
  if (s.linear) {
    w[0] = 1.0 - ratio;
    w[1] = ratio;
  } else if (ratio == 1.0) {
    w[0] = 0.0;
    w[1] = 1.0;
  } else if (s.nearest == ResizeNearest::RoundPreferFloor) {
    w[0] = ratio <= 0.5 ? 1.0 : 0.0;
    w[1] = ratio > 0.5 ? 1.0 : 0.0;
  } else if (s.nearest == ResizeNearest::RoundPreferCeil) {
    w[0] = ratio < 0.5 ? 1.0 : 0.0;
    w[1] = ratio >= 0.5 ? 1.0 : 0.0;
  } else if (s.nearest == ResizeNearest::Floor) {
    w[0] = 1.0;
    w[1] = 0.0;
  } else {
    w[0] = 0.0;
    w[1] = 1.0;
  }
  idx[0] = start;
  idx[1] = start + 1;
  if (s.exclude_outside) {
    for (int k = 0; k < 2; ++k) {
      if (idx[k] < 0 || idx[k] >= n_in) w[k] = 0.0;
    }
    double total = w[0] + w[1];
    if (total == 0) total = 1.0;
    w[0] /= total;
    w[1] /= total;
  }
  for (int k = 0; k < 2; ++k) idx[k] = idx[k] < 0 ? 0 : (idx[k] > n_in - 1 ? n_in - 1 : idx[k]);
}

// ---- host: the attrs of resize / resize_grad, checked -------------------------------------

struct ResizeSpec {
  std::vector<int64_t> sizes;
  bool has_scales = false;
  std::vector<double> scales;
  std::string mode, ctm, nearest_mode;
  ResizeMath math;
};

template <class A> ResizeSpec resize_spec(const KernelArgs& args, const A& a, size_t rank) {
  ResizeSpec s{a.sizes, a.has_scales, a.scales, a.mode, a.coordinate_transformation_mode, a.nearest_mode, {}};
  if (s.sizes.size() != rank) {
    args.fail("attr 'sizes' must have " + std::to_string(rank) + " entries (the input's rank), got " +
              std::to_string(s.sizes.size()));
  }
  if (s.has_scales && s.scales.size() != rank) {
    args.fail("attr 'scales' must have " + std::to_string(rank) + " entries (the input's rank), got " +
              std::to_string(s.scales.size()));
  }
  for (size_t i = 0; i < rank; ++i) {
    if (s.sizes[i] < -1) args.fail("attr 'sizes' " + format_dims(s.sizes) + " has an entry below -1");
    if (s.has_scales && !(s.scales[i] > 0 && std::isfinite(s.scales[i]))) {
      args.fail("attr 'scales' entry " + std::to_string(i) + " must be finite and > 0");
    }
  }
  if (s.mode != "nearest" && s.mode != "linear") args.fail("attr 'mode' must be nearest or linear, got '" + s.mode + "'");
  static const char* const kCtm[] = {"half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners",
                                     "asymmetric", "tf_half_pixel_for_nn"};
  bool known = false;
  for (int c = 0; c < 6; ++c) {
    if (s.ctm == kCtm[c]) {
      known = true;
      s.math.ctm = static_cast<ResizeCtm>(c);
    }
  }
  if (!known) args.fail("attr 'coordinate_transformation_mode' '" + s.ctm + "' is not supported");
  if (s.ctm == "tf_half_pixel_for_nn" && s.mode != "nearest") {
    args.fail("coordinate_transformation_mode 'tf_half_pixel_for_nn' is for mode 'nearest' only");
  }
  static const char* const kNearest[] = {"round_prefer_floor", "round_prefer_ceil", "floor", "ceil"};
  known = false;
  for (int c = 0; c < 4; ++c) {
    if (s.nearest_mode == kNearest[c]) {
      known = true;
      s.math.nearest = static_cast<ResizeNearest>(c);
    }
  }
  if (!known) args.fail("attr 'nearest_mode' '" + s.nearest_mode + "' is not supported");
  s.math.linear = s.mode == "linear";
  s.math.exclude_outside = a.exclude_outside;
  return s;
}

inline std::vector<int64_t> resize_out_dims(const KernelArgs& args, const ResizeSpec& s,
                                            const std::vector<int64_t>& xd) {
  std::vector<int64_t> out;
  for (size_t i = 0; i < xd.size(); ++i) {
    const int64_t n = s.sizes[i] == -1 ? xd[i] : s.sizes[i];
    if (xd[i] == 0 && n > 0) {
      args.fail("cannot resize axis " + std::to_string(i) + " of size 0 to size " + std::to_string(n));
    }
    if (s.sizes[i] == -1 && s.has_scales && s.scales[i] != 1.0) {
      args.fail("axis " + std::to_string(i) + " keeps its size (sizes -1) but its scale is not 1");
    }
    out.push_back(n);
  }
  return out;
}

// Whether axis a (x of xd -> y of yd) is resized, and its scale.
inline bool resize_axis(const ResizeSpec& s, const std::vector<int64_t>& xd, const std::vector<int64_t>& yd,
                        size_t a, double* scale) {
  if (s.sizes[a] == -1 || yd[a] == 0) return false;
  *scale = s.has_scales ? s.scales[a] : static_cast<double>(yd[a]) / static_cast<double>(xd[a]);
  return !resize_axis_identity(xd[a], yd[a], *scale);
}

}  // namespace cpu
}  // namespace graphc
