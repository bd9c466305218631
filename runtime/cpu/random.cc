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
#include "random_checks.h"
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

// The fill of one checked draw (random_checks.h) for its dtype.
Kernel draw_kernel(const KernelArgs& args, const RandomDraw& d) {
  if (d.n == 0) return no_op_kernel();
  const int threads = args.ctx.threads;
  reserve_workers(args);  // registered with r.add, not add_kernel
  using namespace random_math;
  if (d.dtype == DType::F32) {
    float* py = args.out[0].as<float>();
    return d.normal ? fill_kernel<float, kPerBlockF32, normal_f32>(py, d.step, d.n, d.key, d.offset, d.scale, threads)
                    : fill_kernel<float, kPerBlockF32, uniform_f32>(py, d.step, d.n, d.key, d.offset, d.scale, threads);
  }
  double* py = args.out[0].as<double>();
  return d.normal ? fill_kernel<double, kPerBlockF64, normal_f64>(py, d.step, d.n, d.key, d.offset, d.scale, threads)
                  : fill_kernel<double, kPerBlockF64, uniform_f64>(py, d.step, d.n, d.key, d.offset, d.scale, threads);
}

Kernel random_uniform_kernel(const KernelArgs& args) { return draw_kernel(args, random_uniform_draw(args)); }
Kernel random_normal_kernel(const KernelArgs& args) { return draw_kernel(args, random_normal_draw(args)); }
Kernel random_uniform_like_kernel(const KernelArgs& args) { return draw_kernel(args, random_uniform_like_draw(args)); }
Kernel random_normal_like_kernel(const KernelArgs& args) { return draw_kernel(args, random_normal_like_draw(args)); }

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
