// norm_checks.h — the checks of batch_norm_train, batch_norm_train_grad and
// batch_norm_update_stats, shared by runtime/cpu/norm.cc and runtime/cuda/norm.cu: both devices
// accept exactly the same steps with the same messages.  Prepare-time code only.  Host code only.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common.h"

namespace graphc {
namespace cpu {

// x viewed as (N, C, inner): channel c of sample b is the contiguous run at (b·C + c)·inner.
struct ChannelGeom {
  int64_t n = 0, c = 0, inner = 1, count = 0;
};

inline ChannelGeom channel_geom(const KernelArgs& a, const TensorRef& x, const std::string& what) {
  if (x.dims.size() < 2) a.fail(what + " must have rank >= 2 (N, C, ...), got shape " + format_dims(x.dims));
  ChannelGeom g;
  g.n = x.dims[0];
  g.c = x.dims[1];
  for (size_t i = 2; i < x.dims.size(); ++i) g.inner *= x.dims[i];
  g.count = g.n * g.inner;  // numel fits in int64 (check_tensor_refs), so this product does too
  if (g.c == 0) g.count = 0;
  return g;
}

inline void expect_channel(const KernelArgs& a, const TensorRef& t, DType dtype, int64_t c, const std::string& what) {
  expect_dtype(a, t, dtype, what);
  expect_dims(a, t, {c}, what);
}

// batch_norm_train(x, weight, bias) -> (y, mean, var)
struct BatchNormTrainCheck {
  attrs::BatchNormTrain attr;
  ChannelGeom g;
};

inline BatchNormTrainCheck batch_norm_train_check(const KernelArgs& args) {
  args.expect_arity(3, 3);
  const attrs::BatchNormTrain attr(args);
  if (!(attr.eps >= 0)) args.fail("eps must be >= 0");
  const TensorRef& x = args.in[0];
  const ChannelGeom g = channel_geom(args, x, "input 0 (x)");
  expect_channel(args, args.in[1], x.dtype, g.c, "input 1 (weight)");
  expect_channel(args, args.in[2], x.dtype, g.c, "input 2 (bias)");
  expect_dtype(args, args.out[0], x.dtype, "output 0 (y)");
  expect_dims(args, args.out[0], x.dims, "output 0 (y)");
  expect_channel(args, args.out[1], x.dtype, g.c, "output 1 (mean)");
  expect_channel(args, args.out[2], x.dtype, g.c, "output 2 (var)");
  return {attr, g};
}

// batch_norm_train_grad(dy, x, weight, mean, var, dmean, dvar) -> (dx, dweight, dbias)
struct BatchNormTrainGradCheck {
  attrs::BatchNormTrainGrad attr;
  ChannelGeom g;
};

inline BatchNormTrainGradCheck batch_norm_train_grad_check(const KernelArgs& args) {
  args.expect_arity(7, 3);
  const attrs::BatchNormTrainGrad attr(args);
  if (!(attr.eps >= 0)) args.fail("eps must be >= 0");
  const TensorRef &dy = args.in[0], &x = args.in[1];
  const ChannelGeom g = channel_geom(args, x, "input 1 (x)");
  expect_dtype(args, dy, x.dtype, "input 0 (dy)");
  expect_dims(args, dy, x.dims, "input 0 (dy)");
  const char* names[] = {"input 2 (weight)", "input 3 (mean)", "input 4 (var)", "input 5 (dmean)", "input 6 (dvar)"};
  for (int i = 2; i < 7; ++i) expect_channel(args, args.in[i], x.dtype, g.c, names[i - 2]);
  expect_dtype(args, args.out[0], x.dtype, "output 0 (dx)");
  expect_dims(args, args.out[0], x.dims, "output 0 (dx)");
  expect_channel(args, args.out[1], x.dtype, g.c, "output 1 (dweight)");
  expect_channel(args, args.out[2], x.dtype, g.c, "output 2 (dbias)");
  return {attr, g};
}

// batch_norm_update_stats(running_mean, running_var, mean, var) -> (running_mean, running_var):
// the channel count c.
struct BatchNormUpdateStatsCheck {
  attrs::BatchNormUpdateStats attr;
  int64_t c;
};

inline BatchNormUpdateStatsCheck batch_norm_update_stats_check(const KernelArgs& args) {
  args.expect_arity(4, 2);
  const attrs::BatchNormUpdateStats attr(args);
  if (!(attr.momentum >= 0.0 && attr.momentum <= 1.0)) args.fail("momentum must be in [0, 1]");
  if (attr.count < 2) args.fail("count must be >= 2 (the unbiased variance divides by count - 1)");
  const TensorRef& rm = args.in[0];
  if (rm.dims.size() != 1) args.fail("input 0 (running_mean) must have rank 1, got shape " + format_dims(rm.dims));
  const int64_t c = rm.dims[0];
  const char* names[] = {"input 1 (running_var)", "input 2 (mean)", "input 3 (var)"};
  for (int i = 1; i < 4; ++i) expect_channel(args, args.in[i], rm.dtype, c, names[i - 1]);
  expect_channel(args, args.out[0], rm.dtype, c, "output 0 (running_mean)");
  expect_channel(args, args.out[1], rm.dtype, c, "output 1 (running_var)");
  return {attr, c};
}

}  // namespace cpu
}  // namespace graphc
