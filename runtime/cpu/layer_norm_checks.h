// layer_norm_checks.h — the row geometry and checks of layer_norm and layer_norm_grad, shared by
// runtime/cpu/layer_norm.cc and runtime/cuda/layer_norm.cu: both devices accept exactly the same
// steps with the same messages.  Prepare-time code only.  Host code only.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common.h"

namespace graphc {
namespace cpu {

// x as (rows, n): rows = Π x.dims[:axis], n = Π x.dims[axis:].  A zero-size x may have huge
// other dims ((2**40, 0)): its numel is 0 and no loop walks it (outputs of size rows·1 are
// real tensors, so rows fits in int64 whenever they are written).
struct RowGeom {
  int64_t axis = 0, rows = 0, n = 0;
  std::vector<int64_t> lead, tail;
  bool empty = true;  // x has no elements
};

inline RowGeom row_geom(const KernelArgs& a, const TensorRef& x, int64_t axis_attr) {
  const int64_t rank = static_cast<int64_t>(x.dims.size());
  if (rank < 1) a.fail("input x must have rank >= 1, got shape " + format_dims(x.dims));
  RowGeom g;
  g.axis = normalize_axis(a, axis_attr, rank);
  g.lead.assign(x.dims.begin(), x.dims.begin() + g.axis);
  g.tail.assign(x.dims.begin() + g.axis, x.dims.end());
  g.empty = has_zero_dim(x.dims);
  g.rows = g.empty && !has_zero_dim(g.lead) ? checked_numel(g.lead) : numel_of(g.lead);
  g.n = g.empty && !has_zero_dim(g.tail) ? checked_numel(g.tail) : numel_of(g.tail);
  return g;
}

// layer_norm(x, weight, bias) -> (y, mean, rstd)
struct LayerNormCheck {
  attrs::LayerNorm attr;
  RowGeom g;
};

inline LayerNormCheck layer_norm_check(const KernelArgs& args) {
  args.expect_arity(3, 3);
  const attrs::LayerNorm attr(args);
  if (!(attr.eps >= 0)) args.fail("eps must be >= 0");
  const TensorRef& x = args.in[0];
  const RowGeom g = row_geom(args, x, attr.axis);
  expect_dtype(args, args.in[1], x.dtype, "input 1 (weight)");
  expect_dims(args, args.in[1], g.tail, "input 1 (weight)");
  expect_dtype(args, args.in[2], x.dtype, "input 2 (bias)");
  expect_dims(args, args.in[2], g.tail, "input 2 (bias)");
  expect_dtype(args, args.out[0], x.dtype, "output 0 (y)");
  expect_dims(args, args.out[0], x.dims, "output 0 (y)");
  expect_dtype(args, args.out[1], x.dtype, "output 1 (mean)");
  expect_dims(args, args.out[1], g.lead, "output 1 (mean)");
  expect_dtype(args, args.out[2], x.dtype, "output 2 (rstd)");
  expect_dims(args, args.out[2], g.lead, "output 2 (rstd)");
  return {attr, g};
}

// layer_norm_grad(dy, x, weight, mean, rstd, dmean, drstd) -> (dx, dweight, dbias)
struct LayerNormGradCheck {
  attrs::LayerNormGrad attr;
  RowGeom g;
};

inline LayerNormGradCheck layer_norm_grad_check(const KernelArgs& args) {
  args.expect_arity(7, 3);
  const attrs::LayerNormGrad attr(args);
  if (!(attr.eps >= 0)) args.fail("eps must be >= 0");
  const TensorRef &dy = args.in[0], &x = args.in[1];
  const RowGeom g = row_geom(args, x, attr.axis);
  expect_dtype(args, dy, x.dtype, "input 0 (dy)");
  expect_dims(args, dy, x.dims, "input 0 (dy)");
  expect_dtype(args, args.in[2], x.dtype, "input 2 (weight)");
  expect_dims(args, args.in[2], g.tail, "input 2 (weight)");
  const char* names[] = {"input 3 (mean)", "input 4 (rstd)", "input 5 (dmean)", "input 6 (drstd)"};
  for (int i = 3; i < 7; ++i) {
    expect_dtype(args, args.in[i], x.dtype, names[i - 3]);
    expect_dims(args, args.in[i], g.lead, names[i - 3]);
  }
  expect_dtype(args, args.out[0], x.dtype, "output 0 (dx)");
  expect_dims(args, args.out[0], x.dims, "output 0 (dx)");
  expect_dtype(args, args.out[1], x.dtype, "output 1 (dweight)");
  expect_dims(args, args.out[1], g.tail, "output 1 (dweight)");
  expect_dtype(args, args.out[2], x.dtype, "output 2 (dbias)");
  expect_dims(args, args.out[2], g.tail, "output 2 (dbias)");
  return {attr, g};
}

}  // namespace cpu
}  // namespace graphc
