// random.cc — random_uniform, random_normal and their _like forms: y = offset + scale · v, v a uniform in [0, 1) or a
// standard normal of element i drawn from the Philox stream at (seed, rng/step) (random_math.h;
// graphc/ops/random.py has the semantics).
//
// Element i's value depends on (seed, step, i) only, so threads split the blocks freely and
// every thread count gives the same values.  The step is read when the kernel runs: it is the
// rng/step variable the plan increments after every draw of the run.
#include <algorithm>
#include <cmath>
#include <string>

#include "common.h"
#include "random_math.h"

namespace graphc {
namespace cpu {
namespace {

using BlockValues = void (*)(philox::Words, double*);

template <class T, int K, BlockValues kValues>
Kernel fill_kernel(T* py, const int64_t* pstep, int64_t n, uint64_t seed, double offset, double scale, int threads) {
  return [=]() {
    const uint64_t step = static_cast<uint64_t>(*pstep);
    const int64_t blocks = (n + K - 1) / K;
    // ~40 ns a block (a Philox call, and for normals a log, a sqrt and a sin/cos pair per pair)
    parallel_for(blocks, threads, 1024, [&](int64_t b, int64_t e) {
      T* ys = py;  // a local: stores to y could otherwise alias the captures and force reloads
      const uint64_t key = seed, st = step;
      const double off = offset, sc = scale;
      double v[K];
      for (int64_t blk = b; blk < e; ++blk) {
        kValues(philox::stream_block(key, st, static_cast<uint64_t>(blk)), v);
        const int64_t base = blk * K;
        const int m = static_cast<int>(std::min<int64_t>(K, n - base));
        for (int j = 0; j < m; ++j) ys[base + j] = static_cast<T>(off + sc * v[j]);
      }
    });
  };
}

// The checks and the dispatch shared by the four ops; `offset`/`scale`: minval/(maxval - minval)
// or mean/stddev, already checked by the caller.  The step is the last input; a _like op's input 0
// (its shape source) is never read.
Kernel random_kernel(const KernelArgs& args, bool normal, int64_t seed, const std::vector<int64_t>& shape,
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
  const int64_t n = numel_of(args.out[0]);
  if (n == 0) return no_op_kernel();
  const int64_t* pstep = step.as<const int64_t>();
  const uint64_t key = static_cast<uint64_t>(seed);
  const int threads = args.ctx.threads;
  reserve_workers(args);  // registered with r.add, not add_kernel
  using namespace random_math;
  if (dtype == DType::F32) {
    float* py = args.out[0].as<float>();
    return normal ? fill_kernel<float, kPerBlockF32, normal_f32>(py, pstep, n, key, offset, scale, threads)
                  : fill_kernel<float, kPerBlockF32, uniform_f32>(py, pstep, n, key, offset, scale, threads);
  }
  double* py = args.out[0].as<double>();
  return normal ? fill_kernel<double, kPerBlockF64, normal_f64>(py, pstep, n, key, offset, scale, threads)
                : fill_kernel<double, kPerBlockF64, uniform_f64>(py, pstep, n, key, offset, scale, threads);
}

double uniform_scale(const KernelArgs& args, double minval, double maxval) {
  const double scale = maxval - minval;
  if (!(std::isfinite(minval) && std::isfinite(maxval) && minval <= maxval && std::isfinite(scale))) {
    args.fail("expects finite minval <= maxval with a finite maxval - minval, got minval=" + std::to_string(minval) +
              ", maxval=" + std::to_string(maxval));
  }
  return scale;
}

void check_normal(const KernelArgs& args, double mean, double stddev) {
  if (!(std::isfinite(mean) && std::isfinite(stddev) && stddev >= 0.0)) {
    args.fail("expects a finite mean and a finite stddev >= 0, got mean=" + std::to_string(mean) +
              ", stddev=" + std::to_string(stddev));
  }
}

// A _like op's drawn dtype: the attr, else x's dtype when it is a float, else float32.
DType like_dtype(const KernelArgs& args, bool has_dtype, DType dtype) {
  if (has_dtype) return dtype;
  const DType x = args.in[0].dtype;
  return x == DType::F32 || x == DType::F64 ? x : DType::F32;
}

Kernel random_uniform_kernel(const KernelArgs& args) {
  args.expect_arity(1, 1);
  const attrs::RandomUniform attr(args);
  const double scale = uniform_scale(args, attr.minval, attr.maxval);
  return random_kernel(args, false, attr.seed, attr.shape, attr.dtype, attr.minval, scale);
}

Kernel random_normal_kernel(const KernelArgs& args) {
  args.expect_arity(1, 1);
  const attrs::RandomNormal attr(args);
  check_normal(args, attr.mean, attr.stddev);
  return random_kernel(args, true, attr.seed, attr.shape, attr.dtype, attr.mean, attr.stddev);
}

Kernel random_uniform_like_kernel(const KernelArgs& args) {
  args.expect_arity(2, 1);
  const attrs::RandomUniformLike attr(args);
  const double scale = uniform_scale(args, attr.minval, attr.maxval);
  return random_kernel(args, false, attr.seed, args.in[0].dims, like_dtype(args, attr.has_dtype, attr.dtype),
                       attr.minval, scale);
}

Kernel random_normal_like_kernel(const KernelArgs& args) {
  args.expect_arity(2, 1);
  const attrs::RandomNormalLike attr(args);
  check_normal(args, attr.mean, attr.stddev);
  return random_kernel(args, true, attr.seed, args.in[0].dims, like_dtype(args, attr.has_dtype, attr.dtype),
                       attr.mean, attr.stddev);
}

}  // namespace
}  // namespace cpu

void register_random_kernels(KernelRegistry& r) {
  // dispatched on input 0, the int64 step; the drawn dtype is the attr's (checked against the output)
  r.add("random_uniform", DType::I64, cpu::random_uniform_kernel);
  r.add("random_normal", DType::I64, cpu::random_normal_kernel);
  // the _like ops dispatch on x, whose values are never read: any dtype
  for (DType t : {DType::F32, DType::F64, DType::I32, DType::I64, DType::Bool}) {
    r.add("random_uniform_like", t, cpu::random_uniform_like_kernel);
    r.add("random_normal_like", t, cpu::random_normal_like_kernel);
  }
}

}  // namespace graphc
