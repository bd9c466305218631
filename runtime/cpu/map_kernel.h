// map_kernel.h — y = f(x) item by item: x of dtype T, y of dtype O and x's dims, split over the
// threads in chunks of `grain` items.  The loop the unary ops of elementwise_unary.cc and math.cc
// share.  An output may alias its input: item i is read before it is written.
#pragma once

#include "common.h"

namespace graphc {
namespace cpu {

template <class T, class O, class Fn> Kernel map_kernel(const KernelArgs& args, Fn f, int64_t grain) {
  args.expect_arity(1, 1);
  const TensorRef &x = args.in[0], &y = args.out[0];
  expect_dtype(args, x, dtype_of<T>(), "input");
  expect_dtype(args, y, dtype_of<O>(), "output");
  expect_dims(args, y, x.dims, "output");
  const T* px = x.as<const T>();
  O* py = y.as<O>();
  const int64_t n = numel_of(x);
  const int threads = args.ctx.threads;
  return [px, py, n, threads, grain, f]() {
    parallel_for(n, threads, grain, [&](int64_t b, int64_t e) {
#pragma GCC ivdep
      for (int64_t i = b; i < e; ++i) py[i] = f(px[i]);
    });
  };
}

}  // namespace cpu
}  // namespace graphc
