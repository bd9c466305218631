// elementwise.cc — binary arithmetic and comparisons with numpy broadcasting.
// Unary math, cast and where live in elementwise_unary.cc.
#include "elementwise.h"

namespace graphc {
namespace cpu {
namespace {

// ---------------------------------------------------------------- binary

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

template <class T, class O, class Op> Kernel binary_kernel(const KernelArgs& args, Op op) {
  args.expect_arity(2, 1);
  const TensorRef &a = args.in[0], &b = args.in[1], &y = args.out[0];
  expect_dtype(args, a, dtype_of<T>(), "input 0");
  expect_dtype(args, b, dtype_of<T>(), "input 1");
  expect_dtype(args, y, dtype_of<O>(), "output");
  expect_broadcast_output(args, y, {a.dims, b.dims});
  auto loop = StridedLoop<2>::broadcast(y.dims, {a.dims, b.dims});
  const T* pa = a.as<const T>();
  const T* pb = b.as<const T>();
  O* py = y.as<O>();
  const int threads = args.ctx.threads;
  return [loop, pa, pb, py, threads, op]() {
    loop.run(threads, kCheapGrain, [&](int64_t o, const std::array<int64_t, 2>& off, int64_t n,
                                       const std::array<int64_t, 2>& s) {
      binary_segment<T, O>(py + o, pa + off[0], s[0], pb + off[1], s[1], n, op);
    });
  };
}

template <class Op> void add_binary(KernelRegistry& r, const char* name, const DType* types,
                                    size_t ntypes, bool to_bool, Op op_template) {
  for (size_t i = 0; i < ntypes; ++i) {
    DType t = types[i];
    dispatch_all(t, [&](auto tag) {
      using T = typename decltype(tag)::type;
      if (to_bool) {
        add_kernel(r, name, t, [op_template](const KernelArgs& a) {
          return binary_kernel<T, boolean>(a, [op_template](T x, T y) {
            return static_cast<boolean>(op_template(x, y));
          });
        });
      } else {
        add_kernel(r, name, t, [op_template](const KernelArgs& a) {
          return binary_kernel<T, T>(a, [op_template](T x, T y) { return static_cast<T>(op_template(x, y)); });
        });
      }
      return 0;
    });
  }
}

}  // namespace

void register_elementwise_kernels(KernelRegistry& r) {
  const DType* num = kNumericTypes;
  const DType* flt = kFloatTypes;
  const DType* all = kAllTypes;
  add_binary(r, "add", num, 4, false, [](auto a, auto b) { return wrap_add(a, b); });
  add_binary(r, "sub", num, 4, false, [](auto a, auto b) { return wrap_sub(a, b); });
  add_binary(r, "mul", num, 4, false, [](auto a, auto b) { return wrap_mul(a, b); });
  add_binary(r, "div", flt, 2, false, [](auto a, auto b) { return a / b; });
  add_binary(r, "maximum", num, 4, false, [](auto a, auto b) { return nan_max(a, b); });
  add_binary(r, "minimum", num, 4, false, [](auto a, auto b) { return nan_min(a, b); });
  add_binary(r, "equal", all, 5, true, [](auto a, auto b) { return a == b; });
  add_binary(r, "less", num, 4, true, [](auto a, auto b) { return a < b; });
  add_binary(r, "greater", num, 4, true, [](auto a, auto b) { return a > b; });

  register_unary_kernels(r);
}

}  // namespace cpu

void register_elementwise_kernels(KernelRegistry& r) { cpu::register_elementwise_kernels(r); }

}  // namespace graphc
