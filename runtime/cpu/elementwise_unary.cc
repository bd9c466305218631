// elementwise_unary.cc — unary math, cast, where.
#include <limits>

#include "elementwise.h"
#include "elementwise_ops.h"
#include "map_kernel.h"

namespace graphc {
namespace cpu {
namespace {

// ---------------------------------------------------------------- unary
// (the loop: map_kernel, map_kernel.h)

// One kernel per dtype the op's schema allows, instantiated for Types only.
template <class Types, class MakeOp>
void add_unary(KernelRegistry& r, const char* name, int64_t grain, MakeOp make_op) {
  add_typed<Types>(r, name, [make_op, grain](auto tag, const KernelArgs& a) -> Kernel {
    using T = typename decltype(tag)::type;
    return map_kernel<T, T>(a, make_op(tag, a), grain);
  });
}

// A fusible op (elementwise_ops.h): integer dtypes run the functor here, float dtypes the
// active ISA's loop, the very loop a fused program runs.  attr: pow's exponent.
template <class Types, class F> void add_fusible_unary(KernelRegistry& r, EwOp ew_op, int64_t grain) {
  const char* name = kEwOpNames[static_cast<int>(ew_op)];
  add_typed<Types>(r, name, [ew_op, grain](auto tag, const KernelArgs& args) -> Kernel {
    using T = typename decltype(tag)::type;
    if constexpr (std::is_floating_point_v<T>) {
      args.expect_arity(1, 1);
      const TensorRef &x = args.in[0], &y = args.out[0];
      expect_dtype(args, x, dtype_of<T>(), "input");
      expect_dtype(args, y, dtype_of<T>(), "output");
      expect_dims(args, y, x.dims, "output");
      const T attr = ew_op == EwOp::Pow ? static_cast<T>(attrs::Pow(args).exponent) : T(0);
      const auto fn = ew_loops<T>(active_isa()).unary[static_cast<int>(ew_op) - kNumBinaryEwOps];
      const T* px = x.as<const T>();
      T* py = y.as<T>();
      const int64_t n = numel_of(x);
      const int threads = args.ctx.threads;
      const int64_t g = ew_grain<T>(ew_op);
      return [px, py, n, threads, g, fn, attr]() {
        parallel_for(n, threads, g, [&](int64_t b, int64_t e) { fn(py + b, px + b, 1, e - b, attr); });
      };
    } else {
      return map_kernel<T, T>(args, F{}, grain);
    }
  });
}

// ---------------------------------------------------------------- cast

// cast_value (elementwise_ops.h): one definition for the CPU and CUDA kernels.

Kernel cast_kernel(const KernelArgs& args) {
  args.expect_arity(1, 1);
  const DType to = attrs::Cast(args).to;
  expect_dtype(args, args.out[0], to, "output");
  return dispatch_all(args.in[0].dtype, [&](auto from_tag) {
    using From = typename decltype(from_tag)::type;
    return dispatch_all(to, [&](auto to_tag) {
      using To = typename decltype(to_tag)::type;
      return map_kernel<From, To>(args, [](From v) { return cast_value<From, To>(v); }, kCheapGrain);
    });
  });
}

// ---------------------------------------------------------------- where

Kernel where_kernel(const KernelArgs& args) {
  args.expect_arity(3, 1);
  const TensorRef &c = args.in[0], &x = args.in[1], &yv = args.in[2], &out = args.out[0];
  expect_dtype(args, c, DType::Bool, "input 0 (cond)");
  expect_dtype(args, yv, x.dtype, "input 2 (y, like x)");
  expect_dtype(args, out, x.dtype, "output");
  expect_broadcast_output(args, out, {c.dims, x.dims, yv.dims});
  auto loop = StridedLoop<3>::broadcast(out.dims, {c.dims, x.dims, yv.dims});
  const int threads = args.ctx.threads;
  return dispatch_bytes(dtype_size(x.dtype), [&](auto tag) -> Kernel {
    using T = typename decltype(tag)::type;
    const boolean* pc = c.as<const boolean>();
    const T* px = x.as<const T>();
    const T* py = yv.as<const T>();
    T* po = out.as<T>();
    return [loop, pc, px, py, po, threads]() {
      loop.run(threads, kCheapGrain, [&](int64_t o, const std::array<int64_t, 3>& off, int64_t n,
                                         const std::array<int64_t, 3>& s) {
        const boolean* cc = pc + off[0];
        const T* xx = px + off[1];
        const T* yy = py + off[2];
        T* dst = po + o;
        if (s[0] == 1 && s[1] == 1 && s[2] == 1) {
          for (int64_t i = 0; i < n; ++i) dst[i] = cc[i] ? xx[i] : yy[i];
        } else {
          for (int64_t i = 0; i < n; ++i) dst[i] = cc[i * s[0]] ? xx[i * s[1]] : yy[i * s[2]];
        }
      });
    };
  });
}

}  // namespace

void register_unary_kernels(KernelRegistry& r) {
  add_fusible_unary<NumericTypes, NegF>(r, EwOp::Neg, kCheapGrain);
  add_fusible_unary<NumericTypes, AbsF>(r, EwOp::Abs, kCheapGrain);
  add_fusible_unary<NumericTypes, ReluF>(r, EwOp::Relu, kCheapGrain);
  add_fusible_unary<FloatTypes, ExpF>(r, EwOp::Exp, kCostlyGrain);
  add_fusible_unary<FloatTypes, LogF>(r, EwOp::Log, kCostlyGrain);
  add_fusible_unary<FloatTypes, SqrtF>(r, EwOp::Sqrt, kCostlyGrain);
  add_fusible_unary<FloatTypes, SigmoidF>(r, EwOp::Sigmoid, kCostlyGrain);
  add_fusible_unary<FloatTypes, TanhF>(r, EwOp::Tanh, kCostlyGrain);
  add_fusible_unary<FloatTypes, SqrtF>(r, EwOp::Pow, kCostlyGrain);  // float only: F is never used
  add_unary<AllTypes>(r, "logical_not", kCheapGrain, [](auto tag, const KernelArgs&) {
    using T = typename decltype(tag)::type;
    return [](T x) { return static_cast<T>(x == 0); };
  });

  for (DType t : schema_dtypes("cast")) add_kernel(r, "cast", t, cast_kernel);
  for (DType t : schema_dtypes("where")) add_kernel(r, "where", t, where_kernel);  // keyed by cond: bool
}


}  // namespace cpu
}  // namespace graphc
