// map_kernel.h — the elementwise loops the standalone kernels share.
// map_kernel: y = f(x) item by item: x of dtype T, y of dtype O and x's dims, split over the
// threads in chunks of `grain` items (the unary ops of elementwise_unary.cc and math.cc).
// zip_kernel: y = f(a, b) with numpy broadcasting (the binary ops of elementwise.cc that do not run
// an ISA loop, and math.cc's).  An output may alias an input: item i is read before it is written.
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

// One contiguous run of a broadcast loop: n items, input strides sa and sb (0 = broadcast).
template <class T, class O, class Op>
inline void binary_segment(O* out, const T* a, int64_t sa, const T* b, int64_t sb, int64_t n, Op op) {
  // ivdep: out may alias an input exactly (in-place steps), never partially, so there is
  // no loop-carried dependency and the vectoriser needs no runtime overlap check.
  if (sa == 1 && sb == 1) {
#pragma GCC ivdep
    for (int64_t i = 0; i < n; ++i) out[i] = op(a[i], b[i]);
  } else if (sa == 1 && sb == 0) {
    const T bv = b[0];
#pragma GCC ivdep
    for (int64_t i = 0; i < n; ++i) out[i] = op(a[i], bv);
  } else if (sa == 0 && sb == 1) {
    const T av = a[0];
#pragma GCC ivdep
    for (int64_t i = 0; i < n; ++i) out[i] = op(av, b[i]);
  } else {
    for (int64_t i = 0; i < n; ++i) out[i] = op(a[i * sa], b[i * sb]);
  }
}

// The checked operands of a broadcasting binary kernel: a and b of dtype T, y of dtype O with
// their broadcast dims, and the loop over y.
template <class T, class O> struct ZipOperands {
  StridedLoop<2> loop;
  const T* a;
  const T* b;
  O* y;
  int threads;
};
template <class T, class O> ZipOperands<T, O> zip_operands(const KernelArgs& args) {
  args.expect_arity(2, 1);
  const TensorRef &a = args.in[0], &b = args.in[1], &y = args.out[0];
  expect_dtype(args, a, dtype_of<T>(), "input 0");
  expect_dtype(args, b, dtype_of<T>(), "input 1");
  expect_dtype(args, y, dtype_of<O>(), "output");
  expect_broadcast_output(args, y, {a.dims, b.dims});
  return {StridedLoop<2>::broadcast(y.dims, {a.dims, b.dims}), a.as<const T>(), b.as<const T>(), y.as<O>(),
          args.ctx.threads};
}

template <class T, class O, class Fn> Kernel zip_kernel(const KernelArgs& args, Fn f, int64_t grain) {
  const ZipOperands<T, O> z = zip_operands<T, O>(args);
  return [z, grain, f]() {
    z.loop.run(z.threads, grain, [&](int64_t o, const std::array<int64_t, 2>& off, int64_t n,
                                     const std::array<int64_t, 2>& s) {
      binary_segment<T, O>(z.y + o, z.a + off[0], s[0], z.b + off[1], s[1], n, f);
    });
  };
}

}  // namespace cpu
}  // namespace graphc
