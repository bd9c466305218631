// random.cc — random_uniform and random_normal: y = offset + scale · v, v a uniform in [0, 1) or a
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

// The checks and the dispatch shared by both ops; `offset`/`scale`: minval/(maxval - minval) or
// mean/stddev, already checked by the caller.
Kernel random_kernel(const KernelArgs& args, bool normal, int64_t seed, const std::vector<int64_t>& shape,
                     DType dtype, double offset, double scale) {
  args.expect_arity(1, 1);
  if (seed < 0) args.fail("seed must be in [0, 2**63), got " + std::to_string(seed));
  if (dtype != DType::F32 && dtype != DType::F64) args.fail("attr dtype must be float32 or float64");
  for (int64_t d : shape) {
    if (d < 0) args.fail("attr shape has a negative size " + std::to_string(d));
  }
  const TensorRef& step = args.in[0];
  expect_dtype(args, step, DType::I64, "input 0 (step)");
  expect_dims(args, step, {}, "input 0 (step)");
  expect_dtype(args, args.out[0], dtype, "output");
  expect_dims(args, args.out[0], shape, "output");
  const int64_t n = numel_of(args.out[0]);
  if (n == 0) return no_op_kernel();
  const int64_t* pstep = step.as<const int64_t>();
  const uint64_t key = static_cast<uint64_t>(seed);
  const int threads = args.ctx.threads;
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

Kernel random_uniform_kernel(const KernelArgs& args) {
  const attrs::RandomUniform attr(args);
  const double scale = attr.maxval - attr.minval;
  if (!(std::isfinite(attr.minval) && std::isfinite(attr.maxval) && attr.minval <= attr.maxval &&
        std::isfinite(scale))) {
    args.fail("expects finite minval <= maxval with a finite maxval - minval, got minval=" +
              std::to_string(attr.minval) + ", maxval=" + std::to_string(attr.maxval));
  }
  return random_kernel(args, false, attr.seed, attr.shape, attr.dtype, attr.minval, scale);
}

Kernel random_normal_kernel(const KernelArgs& args) {
  const attrs::RandomNormal attr(args);
  if (!(std::isfinite(attr.mean) && std::isfinite(attr.stddev) && attr.stddev >= 0.0)) {
    args.fail("expects a finite mean and a finite stddev >= 0, got mean=" + std::to_string(attr.mean) +
              ", stddev=" + std::to_string(attr.stddev));
  }
  return random_kernel(args, true, attr.seed, attr.shape, attr.dtype, attr.mean, attr.stddev);
}

}  // namespace
}  // namespace cpu

void register_random_kernels(KernelRegistry& r) {
  // dispatched on input 0, the int64 step; the drawn dtype is the attr's (checked against the output)
  r.add("random_uniform", DType::I64, cpu::random_uniform_kernel);
  r.add("random_normal", DType::I64, cpu::random_normal_kernel);
}

}  // namespace graphc
