// random_checks.h — the checks of random_uniform, random_normal, their _like forms and dropout_train,
// shared by runtime/cpu/random.cc, dropout.cc and runtime/cuda/random.cu, dropout.cu: both devices
// accept exactly the same steps with the same messages and draw the same values (random_math.h).
// Prepare-time code only.  Host code only.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "common.h"

namespace graphc {
namespace cpu {

// One checked draw: y = offset + scale · v, v a uniform in [0, 1) or a standard normal; `dtype`
// F32 or F64; n items of the output; the step (the last input) read per run through `step`.
struct RandomDraw {
  bool normal = false;
  uint64_t key = 0;  // the seed
  DType dtype = DType::F32;
  double offset = 0.0, scale = 1.0;
  int64_t n = 0;
  const int64_t* step = nullptr;
};

inline double uniform_scale(const KernelArgs& args, double minval, double maxval) {
  const double scale = maxval - minval;
  if (!(std::isfinite(minval) && std::isfinite(maxval) && minval <= maxval && std::isfinite(scale))) {
    args.fail("expects finite minval <= maxval with a finite maxval - minval, got minval=" + std::to_string(minval) +
              ", maxval=" + std::to_string(maxval));
  }
  return scale;
}

inline void check_normal(const KernelArgs& args, double mean, double stddev) {
  if (!(std::isfinite(mean) && std::isfinite(stddev) && stddev >= 0.0)) {
    args.fail("expects a finite mean and a finite stddev >= 0, got mean=" + std::to_string(mean) +
              ", stddev=" + std::to_string(stddev));
  }
}

// A _like op's drawn dtype: the attr, else x's dtype when it is a float, else float32.
inline DType like_dtype(const KernelArgs& args, bool has_dtype, DType dtype) {
  if (has_dtype) return dtype;
  const DType x = args.in[0].dtype;
  return x == DType::F32 || x == DType::F64 ? x : DType::F32;
}

// The checks shared by the four ops; `offset`/`scale`: minval/(maxval - minval) or mean/stddev,
// already checked by the caller.  The step is the last input; a _like op's input 0 (its shape
// source) is never read.
inline RandomDraw random_draw(const KernelArgs& args, bool normal, int64_t seed, const std::vector<int64_t>& shape,
                              DType dtype, double offset, double scale) {
  const int step_input = static_cast<int>(args.in.size()) - 1;
  if (seed < 0) args.fail("seed must be in [0, 2**63), got " + std::to_string(seed));
  if (dtype != DType::F32 && dtype != DType::F64) args.fail("attr dtype must be float32 or float64");
  for (int64_t d : shape) {
    if (d < 0) args.fail("attr shape has a negative size " + std::to_string(d));
  }
  const TensorRef& step = args.in[step_input];
  const std::string step_name = "input " + std::to_string(step_input) + " (step)";
  expect_dtype(args, step, DType::I64, step_name);
  expect_dims(args, step, {}, step_name);
  expect_dtype(args, args.out[0], dtype, "output");
  expect_dims(args, args.out[0], shape, "output");
  RandomDraw d;
  d.normal = normal;
  d.key = static_cast<uint64_t>(seed);
  d.dtype = dtype;
  d.offset = offset;
  d.scale = scale;
  d.n = numel_of(args.out[0]);
  d.step = step.as<const int64_t>();
  return d;
}

// random_uniform(step) / random_normal(step) / random_uniform_like(x, step) /
// random_normal_like(x, step) -> y
inline RandomDraw random_uniform_draw(const KernelArgs& args) {
  args.expect_arity(1, 1);
  const attrs::RandomUniform attr(args);
  const double scale = uniform_scale(args, attr.minval, attr.maxval);
  return random_draw(args, false, attr.seed, attr.shape, attr.dtype, attr.minval, scale);
}

inline RandomDraw random_normal_draw(const KernelArgs& args) {
  args.expect_arity(1, 1);
  const attrs::RandomNormal attr(args);
  check_normal(args, attr.mean, attr.stddev);
  return random_draw(args, true, attr.seed, attr.shape, attr.dtype, attr.mean, attr.stddev);
}

inline RandomDraw random_uniform_like_draw(const KernelArgs& args) {
  args.expect_arity(2, 1);
  const attrs::RandomUniformLike attr(args);
  const double scale = uniform_scale(args, attr.minval, attr.maxval);
  return random_draw(args, false, attr.seed, args.in[0].dims, like_dtype(args, attr.has_dtype, attr.dtype),
                     attr.minval, scale);
}

inline RandomDraw random_normal_like_draw(const KernelArgs& args) {
  args.expect_arity(2, 1);
  const attrs::RandomNormalLike attr(args);
  check_normal(args, attr.mean, attr.stddev);
  return random_draw(args, true, attr.seed, args.in[0].dims, like_dtype(args, attr.has_dtype, attr.dtype),
                     attr.mean, attr.stddev);
}

// dropout_train(x, step) -> y: the attrs (p in [0, 1), seed >= 0), checked.
inline attrs::DropoutTrain dropout_train_check(const KernelArgs& args) {
  args.expect_arity(2, 1);
  const attrs::DropoutTrain attr(args);
  if (!(attr.p >= 0.0 && attr.p < 1.0)) args.fail("p must be in [0, 1), got " + std::to_string(attr.p));
  if (attr.seed < 0) args.fail("seed must be in [0, 2**63), got " + std::to_string(attr.seed));
  const TensorRef &x = args.in[0], &step = args.in[1];
  expect_dtype(args, step, DType::I64, "input 1 (step)");
  expect_dims(args, step, {}, "input 1 (step)");
  expect_dtype(args, args.out[0], x.dtype, "output");
  expect_dims(args, args.out[0], x.dims, "output");
  return attr;
}

}  // namespace cpu
}  // namespace graphc
