// elementwise.cc — unary, binary (numpy broadcasting), where, cast.
#include <limits>

#include "common.h"

namespace graphc {
namespace cpu {
namespace {

constexpr int64_t kCheapGrain = 1 << 15;
constexpr int64_t kCostlyGrain = 1 << 11;

// Integer arithmetic wraps like numpy instead of being undefined on overflow.
template <class T> T wrap_add(T a, T b) {
  if constexpr (std::is_integral_v<T>) {
    using U = std::make_unsigned_t<T>;
    return static_cast<T>(static_cast<U>(a) + static_cast<U>(b));
  } else {
    return a + b;
  }
}
template <class T> T wrap_sub(T a, T b) {
  if constexpr (std::is_integral_v<T>) {
    using U = std::make_unsigned_t<T>;
    return static_cast<T>(static_cast<U>(a) - static_cast<U>(b));
  } else {
    return a - b;
  }
}
template <class T> T wrap_mul(T a, T b) {
  if constexpr (std::is_integral_v<T>) {
    using U = std::make_unsigned_t<T>;
    return static_cast<T>(static_cast<U>(a) * static_cast<U>(b));
  } else {
    return a * b;
  }
}
template <class T> T wrap_neg(T a) { return wrap_sub(T(0), a); }

// numpy maximum/minimum propagate NaN.
template <class T> T nan_max(T a, T b) {
  if constexpr (std::is_floating_point_v<T>) {
    if (a != a) return a;
    if (b != b) return b;
  }
  return a > b ? a : b;
}
template <class T> T nan_min(T a, T b) {
  if constexpr (std::is_floating_point_v<T>) {
    if (a != a) return a;
    if (b != b) return b;
  }
  return a < b ? a : b;
}

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
  if (b.dtype != a.dtype) {
    args.fail(std::string("inputs must have the same dtype, got ") + dtype_name(a.dtype) + " and " +
              dtype_name(b.dtype));
  }
  expect_dtype(args, y, dtype_of<O>(), "output");
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
        r.add(name, t, [op_template](const KernelArgs& a) {
          return binary_kernel<T, boolean>(a, [op_template](T x, T y) {
            return static_cast<boolean>(op_template(x, y));
          });
        });
      } else {
        r.add(name, t, [op_template](const KernelArgs& a) {
          return binary_kernel<T, T>(a, [op_template](T x, T y) { return static_cast<T>(op_template(x, y)); });
        });
      }
      return 0;
    });
  }
}

// ---------------------------------------------------------------- unary

template <class T, class O, class Op> Kernel unary_kernel(const KernelArgs& args, Op op, int64_t grain) {
  args.expect_arity(1, 1);
  const TensorRef &x = args.in[0], &y = args.out[0];
  expect_dtype(args, y, dtype_of<O>(), "output");
  expect_dims(args, y, x.dims, "output");
  const T* px = x.as<const T>();
  O* py = y.as<O>();
  const int64_t n = x.numel();
  const int threads = args.ctx.threads;
  return [px, py, n, threads, grain, op]() {
    parallel_for(n, threads, grain, [&](int64_t b, int64_t e) {
#pragma GCC ivdep
      for (int64_t i = b; i < e; ++i) py[i] = op(px[i]);
    });
  };
}

template <class MakeOp>
void add_unary(KernelRegistry& r, const char* name, const DType* types, size_t ntypes, int64_t grain,
               MakeOp make_op) {
  for (size_t i = 0; i < ntypes; ++i) {
    DType t = types[i];
    dispatch_all(t, [&](auto tag) {
      using T = typename decltype(tag)::type;
      r.add(name, t, [make_op, grain](const KernelArgs& a) {
        return unary_kernel<T, T>(a, make_op(Tag<T>{}, a), grain);
      });
      return 0;
    });
  }
}

template <class T> T sigmoid(T x) {
  if (x >= T(0)) return T(1) / (T(1) + std::exp(-x));
  T e = std::exp(x);
  return e / (T(1) + e);
}

// ---------------------------------------------------------------- cast

// float -> int truncates toward zero; NaN and out-of-range give the type's minimum
// (what numpy's astype does on x86) instead of undefined behaviour.
template <class From, class To> To cast_value(From v) {
  if constexpr (std::is_same_v<To, boolean>) {
    return static_cast<boolean>(v != From(0));
  } else if constexpr (std::is_floating_point_v<From> && std::is_integral_v<To>) {
    constexpr double lo = static_cast<double>(std::numeric_limits<To>::min());
    constexpr double hi = -lo;  // 2^(bits-1), exactly representable
    double d = static_cast<double>(v);
    if (!(d > lo - 1.0 && d < hi)) return std::numeric_limits<To>::min();
    return static_cast<To>(d);
  } else {
    return static_cast<To>(v);
  }
}

Kernel cast_kernel(const KernelArgs& args) {
  args.expect_arity(1, 1);
  DType to = args.attr_dtype("to", args.out[0].dtype);
  expect_dtype(args, args.out[0], to, "output");
  return dispatch_all(args.in[0].dtype, [&](auto from_tag) {
    using From = typename decltype(from_tag)::type;
    return dispatch_all(to, [&](auto to_tag) {
      using To = typename decltype(to_tag)::type;
      return unary_kernel<From, To>(args, [](From v) { return cast_value<From, To>(v); }, kCheapGrain);
    });
  });
}

// ---------------------------------------------------------------- where

Kernel where_kernel(const KernelArgs& args) {
  args.expect_arity(3, 1);
  const TensorRef &c = args.in[0], &x = args.in[1], &yv = args.in[2], &out = args.out[0];
  expect_dtype(args, c, DType::Bool, "cond");
  if (yv.dtype != x.dtype) {
    args.fail(std::string("x and y must have the same dtype, got ") + dtype_name(x.dtype) + " and " +
              dtype_name(yv.dtype));
  }
  expect_dtype(args, out, x.dtype, "output");
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

  add_unary(r, "neg", num, 4, kCheapGrain, [](auto tag, const KernelArgs&) {
    using T = typename decltype(tag)::type;
    return [](T x) { return wrap_neg(x); };
  });
  add_unary(r, "abs", num, 4, kCheapGrain, [](auto tag, const KernelArgs&) {
    using T = typename decltype(tag)::type;
    return [](T x) { return x < T(0) ? wrap_neg(x) : x; };
  });
  add_unary(r, "relu", num, 4, kCheapGrain, [](auto tag, const KernelArgs&) {
    using T = typename decltype(tag)::type;
    return [](T x) { return x < T(0) ? T(0) : x; };  // NaN stays NaN, like np.maximum(x, 0)
  });
  add_unary(r, "exp", flt, 2, kCostlyGrain, [](auto tag, const KernelArgs&) {
    using T = typename decltype(tag)::type;
    return [](T x) { return std::exp(x); };
  });
  add_unary(r, "log", flt, 2, kCostlyGrain, [](auto tag, const KernelArgs&) {
    using T = typename decltype(tag)::type;
    return [](T x) { return std::log(x); };
  });
  add_unary(r, "sqrt", flt, 2, kCostlyGrain, [](auto tag, const KernelArgs&) {
    using T = typename decltype(tag)::type;
    return [](T x) { return std::sqrt(x); };
  });
  add_unary(r, "sigmoid", flt, 2, kCostlyGrain, [](auto tag, const KernelArgs&) {
    using T = typename decltype(tag)::type;
    return [](T x) { return sigmoid(x); };
  });
  add_unary(r, "tanh", flt, 2, kCostlyGrain, [](auto tag, const KernelArgs&) {
    using T = typename decltype(tag)::type;
    return [](T x) { return std::tanh(x); };
  });
  add_unary(r, "pow", flt, 2, kCostlyGrain, [](auto tag, const KernelArgs& a) {
    using T = typename decltype(tag)::type;
    const T e = static_cast<T>(a.attr_float("exponent"));
    return [e](T x) { return static_cast<T>(std::pow(x, e)); };
  });
  const DType bool_only[] = {DType::Bool};
  add_unary(r, "logical_not", bool_only, 1, kCheapGrain, [](auto tag, const KernelArgs&) {
    using T = typename decltype(tag)::type;
    return [](T x) { return static_cast<T>(x == 0); };
  });

  for (DType t : kAllTypes) r.add("cast", t, cast_kernel);
  r.add("where", DType::Bool, where_kernel);
}

}  // namespace cpu

void register_elementwise_kernels(KernelRegistry& r) { cpu::register_elementwise_kernels(r); }

}  // namespace graphc
