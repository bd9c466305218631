// dropout.cc — dropout_train: y = x · m, m = 1/(1 - p) where the Philox mask keeps the element,
// else 0 (graphc/ops/random.py has the semantics, runtime/cpu/philox.h the generator).
//
// Element i's mask bit depends on (seed, step, i) only, so threads split the blocks of four
// elements freely and every thread count gives the same bits.  The step is read when the
// kernel runs (it is a variable the plan increments after each training run).
#include <algorithm>
#include <string>

#include "common.h"
#include "philox.h"
#include "random_checks.h"

namespace graphc {
namespace cpu {
namespace {

template <class T> Kernel dropout_train_kernel(const KernelArgs& args) {
  const attrs::DropoutTrain attr = dropout_train_check(args);
  const TensorRef &x = args.in[0], &step = args.in[1];
  const int64_t n = numel_of(x);
  if (n == 0) return no_op_kernel();
  const T* px = x.as<const T>();
  const int64_t* pstep = step.as<const int64_t>();
  T* py = args.out[0].as<T>();
  const uint64_t seed = static_cast<uint64_t>(attr.seed);
  const uint32_t threshold = philox::keep_threshold(attr.p);
  const T scale = static_cast<T>(1.0 / (1.0 - attr.p));  // rounded once, as the reference
  const int threads = args.ctx.threads;
  return [=]() {
    const uint64_t s = static_cast<uint64_t>(*pstep);
    const int64_t blocks = (n + 3) / 4;
    parallel_for(blocks, threads, 4096, [&](int64_t b, int64_t e) {
      // locals, not captures: the stores to y could otherwise alias them and force reloads
      const T* xs = px;
      T* ys = py;
      const uint64_t key = seed, st = s;
      const uint32_t thr = threshold;
      const T sc = scale;
      const int64_t full = std::min<int64_t>(e, n / 4);  // blocks with all 4 elements
      int64_t blk = b;
      for (; blk < full; ++blk) {
        const philox::Words r = philox::dropout_block(key, st, static_cast<uint64_t>(blk));
        const T* xb = xs + blk * 4;
        T* yb = ys + blk * 4;
        for (int j = 0; j < 4; ++j) yb[j] = xb[j] * (philox::keep(r.w[j], thr) ? sc : T(0));
      }
      for (; blk < e; ++blk) {  // the last, partial block
        const philox::Words r = philox::dropout_block(key, st, static_cast<uint64_t>(blk));
        for (int64_t i = blk * 4; i < n; ++i) ys[i] = xs[i] * (philox::keep(r.w[i - blk * 4], thr) ? sc : T(0));
      }
    });
  };
}

}  // namespace
}  // namespace cpu

void register_dropout_kernels(KernelRegistry& r) {
  using namespace cpu;
  add_typed<FloatTypes>(r, "dropout_train", [](auto tag, const KernelArgs& a) {
    return dropout_train_kernel<typename decltype(tag)::type>(a);
  });
}

}  // namespace graphc
