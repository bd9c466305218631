// conv_checks.h — the geometry and checks of conv2d, conv2d_grad_input and conv2d_grad_weight,
// shared by runtime/cpu/conv.cc and runtime/cuda/conv.cu: both devices accept exactly the same
// steps with the same messages.  Prepare-time code only.  Host code only.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common.h"

namespace graphc {
namespace cpu {

struct ConvGeom {
  int64_t n = 0, c = 0, h = 0, w = 0;        // input
  int64_t o = 0, kh = 0, kw = 0;             // weight (o, c / g, kh, kw)
  int64_t g = 1, cg = 0, og = 0;             // groups, channels per group
  int64_t sh = 1, sw = 1, pt = 0, pl = 0, pb = 0, pr = 0, dh = 1, dw = 1;
  int64_t ho = 0, wo = 0;                    // output
  int64_t k = 0, p = 0;                      // per-group GEMM depth cg·kh·kw, output positions ho·wo
  bool pointwise = false;                    // 1x1, stride 1, no padding: col == the image
  std::vector<int64_t> x_dims() const { return {n, c, h, w}; }
  std::vector<int64_t> w_dims() const { return {o, cg, kh, kw}; }
  std::vector<int64_t> y_dims() const { return {n, o, ho, wo}; }
};

// Reads stride / pads / dilation / groups and checks them with the tensors' dims against each
// other (any plan bytes may arrive): the C++ side of _check_attrs / _out_hw / _check_channels
// in graphc/ops/conv.py.  `in_dims` (N, C, H, W) and `w_dims` (O, C/g, kh, kw).
template <class Attr>
ConvGeom conv_geom(const KernelArgs& a, const Attr& attr, const std::vector<int64_t>& in_dims,
                   const std::vector<int64_t>& w_dims) {
  if (attr.stride.size() != 2 || attr.dilation.size() != 2 || attr.pads.size() != 4) {
    a.fail("stride and dilation must hold 2 ints and pads 4");
  }
  ConvGeom q;
  q.sh = attr.stride[0], q.sw = attr.stride[1], q.dh = attr.dilation[0], q.dw = attr.dilation[1];
  q.pt = attr.pads[0], q.pl = attr.pads[1], q.pb = attr.pads[2], q.pr = attr.pads[3];
  q.g = attr.groups;
  if (q.sh <= 0 || q.sw <= 0 || q.dh <= 0 || q.dw <= 0) a.fail("stride and dilation must be positive");
  if (q.pt < 0 || q.pl < 0 || q.pb < 0 || q.pr < 0) a.fail("pads must be >= 0");
  if (q.g <= 0) a.fail("groups must be positive, got " + std::to_string(q.g));
  q.n = in_dims[0], q.c = in_dims[1], q.h = in_dims[2], q.w = in_dims[3];
  q.o = w_dims[0], q.cg = w_dims[1], q.kh = w_dims[2], q.kw = w_dims[3];
  if (q.c % q.g != 0 || q.o % q.g != 0 || q.cg != q.c / q.g) {
    a.fail("channels do not match groups=" + std::to_string(q.g) + ": input " + format_dims(in_dims) +
           ", weight " + format_dims(w_dims));
  }
  q.og = q.o / q.g;
  if (q.h < 1 || q.w < 1 || q.kh < 1 || q.kw < 1) {
    a.fail("input " + format_dims(in_dims) + " and kernel " + format_dims(w_dims) + " need H, W, k_h, k_w >= 1");
  }
  // saturating: absurd attrs on an empty tensor must not overflow before they are refused
  const int64_t span_h = checked_add(a, saturating_mul(q.dh, q.kh - 1), 1, "dilated kernel height");
  const int64_t span_w = checked_add(a, saturating_mul(q.dw, q.kw - 1), 1, "dilated kernel width");
  const int64_t hp = checked_add(a, checked_add(a, q.h, q.pt, "padded H"), q.pb, "padded H");
  const int64_t wp = checked_add(a, checked_add(a, q.w, q.pl, "padded W"), q.pr, "padded W");
  if (hp < span_h || wp < span_w) {
    a.fail("input " + format_dims(in_dims) + " padded is smaller than the dilated kernel " + format_dims(w_dims) +
           " (the output would be empty)");
  }
  q.ho = (hp - span_h) / q.sh + 1;
  q.wo = (wp - span_w) / q.sw + 1;
  q.k = saturating_mul(saturating_mul(q.cg, q.kh), q.kw);
  q.p = saturating_mul(q.ho, q.wo);
  q.pointwise = q.kh == 1 && q.kw == 1 && q.sh == 1 && q.sw == 1 && q.pt == 0 && q.pl == 0 && q.pb == 0 && q.pr == 0;
  return q;
}

// conv2d(x, w) -> y
inline ConvGeom conv2d_check(const KernelArgs& args) {
  args.expect_arity(2, 1);
  const TensorRef &x = args.in[0], &w = args.in[1];
  if (x.dims.size() != 4 || w.dims.size() != 4) {
    args.fail("x and w must have rank 4, got " + format_dims(x.dims) + " and " + format_dims(w.dims));
  }
  const ConvGeom q = conv_geom(args, attrs::Conv2d(args), x.dims, w.dims);
  expect_dtype(args, w, x.dtype, "input 1 (w)");
  expect_dtype(args, args.out[0], x.dtype, "output");
  expect_dims(args, args.out[0], q.y_dims(), "output");
  return q;
}

// conv2d_grad_input(dy, w) -> dx
inline ConvGeom conv2d_grad_input_check(const KernelArgs& args) {
  args.expect_arity(2, 1);
  const TensorRef &dy = args.in[0], &w = args.in[1];
  const attrs::Conv2dGradInput attr(args);
  if (dy.dims.size() != 4 || w.dims.size() != 4 || attr.input_size.size() != 2) {
    args.fail("dy and w must have rank 4 and input_size hold 2 ints, got " + format_dims(dy.dims) + ", " +
              format_dims(w.dims) + " and input_size " + format_dims(attr.input_size));
  }
  const int64_t c = saturating_mul(w.dims[1], attr.groups);
  const ConvGeom q = conv_geom(args, attr, {dy.dims[0], c, attr.input_size[0], attr.input_size[1]}, w.dims);
  expect_dtype(args, w, dy.dtype, "input 1 (w)");
  expect_dims(args, dy, q.y_dims(), "input 0 (dy)");
  expect_dtype(args, args.out[0], dy.dtype, "output");
  expect_dims(args, args.out[0], q.x_dims(), "output");
  return q;
}

// conv2d_grad_weight(dy, x) -> dw
inline ConvGeom conv2d_grad_weight_check(const KernelArgs& args) {
  args.expect_arity(2, 1);
  const TensorRef &dy = args.in[0], &x = args.in[1];
  const attrs::Conv2dGradWeight attr(args);
  if (dy.dims.size() != 4 || x.dims.size() != 4 || attr.kernel_size.size() != 2) {
    args.fail("dy and x must have rank 4 and kernel_size hold 2 ints, got " + format_dims(dy.dims) + ", " +
              format_dims(x.dims) + " and kernel_size " + format_dims(attr.kernel_size));
  }
  if (attr.groups <= 0) args.fail("groups must be positive, got " + std::to_string(attr.groups));
  const ConvGeom q = conv_geom(args, attr, x.dims, {dy.dims[1], x.dims[1] / attr.groups, attr.kernel_size[0],
                                                    attr.kernel_size[1]});
  expect_dtype(args, dy, x.dtype, "input 0 (dy)");
  expect_dims(args, dy, q.y_dims(), "input 0 (dy)");
  expect_dtype(args, args.out[0], x.dtype, "output");
  expect_dims(args, args.out[0], q.w_dims(), "output");
  return q;
}

}  // namespace cpu
}  // namespace graphc
