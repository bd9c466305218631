// activations.cc — gelu (erf and tanh forms), softplus, leaky_relu and their gradient ops gelu_grad,
// softplus_grad and leaky_relu_grad (graphc/ops/activations.py has the semantics: torch.nn.functional's formulas,
// with the mathematical limit where torch's formula meets inf·0 or an overflowing exp).
//
// Each is one elementwise pass computed in T (float32 at float32 width, as torch does); the
// inf·0 cases are removed with selects, not branches, so the loops stay branch-free.  float32 is
// built on exp_f32, a log1p polynomial and a rational erf (plain arithmetic, no libm call per element), and
// its loops are compiled three times — baseline x86-64, AVX2+FMA, AVX-512 — and picked at kernel
// build from active_isa() (isa.h), as the elementwise kernels are: the same operations in the
// same order (no FMA contraction: -ffp-contract=off), so every ISA gives the same bits.  float64
// keeps libm (erfc, tanh, log1p, exp): the accurate path.  No reduction, so results are the same
// bits for any thread count.  An output may alias an input of its size (the ops are declared
// elementwise): every loop reads item i before writing it.
#include <cmath>
#include <string>
#include <type_traits>

#include "common.h"
#include "activation_ops.h"  // the scalar math, shared with the CUDA kernels
#include "elementwise_ops.h"  // exp_f32: float32 exp as vectorisable arithmetic
#include "isa.h"
#include "op_schema.h"

namespace graphc {
namespace cpu {
namespace {

constexpr int64_t kGrain = 1 << 14;  // items per task: the transcendental functions make items costly

// The float32 loops over one task's span, f inlined: compiled for each ISA by the macro (the
// target attribute is on the loop; the scalar functions below are baseline code inlined into
// it, as elementwise_loops.inc does).  `ivdep`: y may alias x exactly, never partially.
#define GRAPHC_ACT_SPANS(suffix, target)                                                          \
  template <class Fn> target void map1_##suffix(const float* x, float* y, int64_t n, const Fn& f) { \
    _Pragma("GCC ivdep") for (int64_t i = 0; i < n; ++i) y[i] = f(x[i]);                         \
  }                                                                                              \
  template <class Fn>                                                                            \
  target void map2_##suffix(const float* dy, const float* x, float* dx, int64_t n, const Fn& f) {  \
    _Pragma("GCC ivdep") for (int64_t i = 0; i < n; ++i) dx[i] = f(dy[i], x[i]);                 \
  }
GRAPHC_ACT_SPANS(baseline, )
#if defined(__x86_64__)
GRAPHC_ACT_SPANS(avx2, __attribute__((target("avx2,fma"))))
GRAPHC_ACT_SPANS(avx512, __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma"))))
#endif
#undef GRAPHC_ACT_SPANS

template <class Fn> using Map1 = void (*)(const float*, float*, int64_t, const Fn&);
template <class Fn> using Map2 = void (*)(const float*, const float*, float*, int64_t, const Fn&);

template <class Fn> Map1<Fn> pick_map1() {
#if defined(__x86_64__)
  const Isa isa = active_isa();
  if (isa == Isa::Avx512) return map1_avx512<Fn>;
  if (isa == Isa::Avx2) return map1_avx2<Fn>;
#endif
  return map1_baseline<Fn>;
}
template <class Fn> Map2<Fn> pick_map2() {
#if defined(__x86_64__)
  const Isa isa = active_isa();
  if (isa == Isa::Avx512) return map2_avx512<Fn>;
  if (isa == Isa::Avx2) return map2_avx2<Fn>;
#endif
  return map2_baseline<Fn>;
}

bool gelu_tanh_form(const KernelArgs& a, const std::string& approximate) {
  if (approximate != "none" && approximate != "tanh") {
    a.fail("attr 'approximate' must be 'none' or 'tanh', got '" + approximate + "'");
  }
  return approximate == "tanh";
}

struct SoftplusParams {
  double beta, threshold;
};

SoftplusParams softplus_params(const KernelArgs& a, double beta, double threshold) {
  if (!std::isfinite(beta) || beta == 0.0) a.fail("attr 'beta' must be finite and nonzero, got " + std::to_string(beta));
  if (std::isnan(threshold)) a.fail("attr 'threshold' must be a number, got nan");
  return {beta, threshold};
}

// y = f(x), one input of y's dtype and dims.
template <class T, class Fn> Kernel unary_kernel(const KernelArgs& args, Fn f) {
  args.expect_arity(1, 1);
  const TensorRef &x = args.in[0], &y = args.out[0];
  expect_dtype(args, y, x.dtype, "output");
  expect_dims(args, y, x.dims, "output");
  const T* px = x.as<const T>();
  T* py = y.as<T>();
  const int64_t n = numel_of(x);
  const int threads = args.ctx.threads;
  if constexpr (std::is_same_v<T, float>) {
    const Map1<Fn> span = pick_map1<Fn>();
    return [=]() {
      parallel_for(n, threads, kGrain, [&](int64_t b, int64_t e) { span(px + b, py + b, e - b, f); });
    };
  } else {
    return [=]() {
      parallel_for(n, threads, kGrain, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) py[i] = f(px[i]);
      });
    };
  }
}

// dx = f(dy, x): the gradient ops' (dy, x) inputs, dx of x's dtype and dims.
template <class T, class Fn> Kernel grad_kernel(const KernelArgs& args, Fn f) {
  args.expect_arity(2, 1);
  const TensorRef &dy = args.in[0], &x = args.in[1], &dx = args.out[0];
  expect_dtype(args, dy, x.dtype, "input 0 (dy)");
  expect_dtype(args, dx, x.dtype, "output");
  expect_dims(args, dy, x.dims, "input 0 (dy)");
  expect_dims(args, dx, x.dims, "output");
  const T* pdy = dy.as<const T>();
  const T* px = x.as<const T>();
  T* pdx = dx.as<T>();
  const int64_t n = numel_of(x);
  const int threads = args.ctx.threads;
  if constexpr (std::is_same_v<T, float>) {
    const Map2<Fn> span = pick_map2<Fn>();
    return [=]() {
      parallel_for(n, threads, kGrain, [&](int64_t b, int64_t e) { span(pdy + b, px + b, pdx + b, e - b, f); });
    };
  } else {
    return [=]() {
      parallel_for(n, threads, kGrain, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) pdx[i] = f(pdy[i], px[i]);
      });
    };
  }
}

// The scalar math (gelu_erf, phi_f32, softplus_soft, sigmoid_of, ...): activation_ops.h, shared with
// runtime/cuda/activations.cu.

template <class T> Kernel gelu_tanh_kernel(const KernelArgs& a) {
  return unary_kernel<T>(a, [](T x) { return gelu_tanh(x); });
}
template <> Kernel gelu_tanh_kernel<float>(const KernelArgs& a) {
  return unary_kernel<float>(a, [](float x) { return gelu_tanh_f32(x); });
}
template <class T> Kernel gelu_tanh_grad_kernel(const KernelArgs& a) {
  return grad_kernel<T>(a, [](T dy, T x) { return gelu_tanh_grad(dy, x); });
}
template <> Kernel gelu_tanh_grad_kernel<float>(const KernelArgs& a) {
  return grad_kernel<float>(a, [](float dy, float x) { return gelu_tanh_grad_f32(dy, x); });
}

template <class T> Kernel gelu_erf_kernel(const KernelArgs& a) {
  return unary_kernel<T>(a, [](T x) { return gelu_erf(x); });
}
template <> Kernel gelu_erf_kernel<float>(const KernelArgs& a) {
  return unary_kernel<float>(a, [](float x) { return gelu_erf_f32(x); });
}
template <class T> Kernel gelu_erf_grad_kernel(const KernelArgs& a) {
  return grad_kernel<T>(a, [](T dy, T x) { return gelu_erf_grad(dy, x); });
}
template <> Kernel gelu_erf_grad_kernel<float>(const KernelArgs& a) {
  return grad_kernel<float>(a, [](float dy, float x) { return gelu_erf_grad_f32(dy, x); });
}

template <class T> Kernel gelu_kernel(const KernelArgs& a) {
  if (gelu_tanh_form(a, attrs::Gelu(a).approximate)) return gelu_tanh_kernel<T>(a);
  return gelu_erf_kernel<T>(a);
}

template <class T> Kernel gelu_grad_kernel(const KernelArgs& a) {
  if (gelu_tanh_form(a, attrs::GeluGrad(a).approximate)) return gelu_tanh_grad_kernel<T>(a);
  return gelu_erf_grad_kernel<T>(a);
}

// softplus: x where z = beta·x > threshold, else log(1 + e^z)/beta as (max(z, 0) + log1p(e^-|z|))/beta:
// equal to torch's log1p(e^z)/beta to rounding, and finite where e^z overflows under a large
// threshold (torch: inf).  NaN x: the comparison is false and the NaN flows through.
template <class T> Kernel softplus_kernel(const KernelArgs& a) {
  const attrs::Softplus at(a);
  const SoftplusParams p = softplus_params(a, at.beta, at.threshold);
  const T beta = T(p.beta), threshold = T(p.threshold);
  return unary_kernel<T>(a, [beta, threshold](T x) {
    const T z = x * beta;
    const T soft = softplus_soft(z, beta);
    return z > threshold ? x : soft;
  });
}

// softplus_grad: dy where z > threshold, else dy·σ(z), σ from e^-|z| (never overflows).
template <class T> Kernel softplus_grad_kernel(const KernelArgs& a) {
  const attrs::SoftplusGrad at(a);
  const SoftplusParams p = softplus_params(a, at.beta, at.threshold);
  const T beta = T(p.beta), threshold = T(p.threshold);
  return grad_kernel<T>(a, [beta, threshold](T dy, T x) {
    const T z = x * beta;
    const T s = sigmoid_of(z);
    return z > threshold ? dy : dy * s;
  });
}

// leaky_relu: x where x > 0, else x·slope (the slope rounded to T once, as torch).  A select, so
// NaN flows through the product and -0.0 stays -0.0 for slope >= 0.
double leaky_slope(const KernelArgs& a, double slope) {
  if (!std::isfinite(slope)) a.fail("attr 'negative_slope' must be finite, got " + std::to_string(slope));
  return slope;
}

template <class T> Kernel leaky_relu_kernel(const KernelArgs& a) {
  const T slope = T(leaky_slope(a, attrs::LeakyRelu(a).negative_slope));
  return unary_kernel<T>(a, [slope](T x) { return x > T(0) ? x : x * slope; });
}

// leaky_relu_grad: dy where x > 0, else dy·slope.
template <class T> Kernel leaky_relu_grad_kernel(const KernelArgs& a) {
  const T slope = T(leaky_slope(a, attrs::LeakyReluGrad(a).negative_slope));
  return grad_kernel<T>(a, [slope](T dy, T x) { return x > T(0) ? dy : dy * slope; });
}

}  // namespace
}  // namespace cpu

void register_activation_kernels(KernelRegistry& r) {
  using namespace cpu;
#define GRAPHC_TYPED(kernel) [](auto tag, const KernelArgs& a) { return kernel<typename decltype(tag)::type>(a); }
  add_typed<FloatTypes>(r, "gelu", GRAPHC_TYPED(gelu_kernel));
  add_typed<FloatTypes>(r, "gelu_grad", GRAPHC_TYPED(gelu_grad_kernel));
  add_typed<FloatTypes>(r, "softplus", GRAPHC_TYPED(softplus_kernel));
  add_typed<FloatTypes>(r, "softplus_grad", GRAPHC_TYPED(softplus_grad_kernel));
  add_typed<FloatTypes>(r, "leaky_relu", GRAPHC_TYPED(leaky_relu_kernel));
  add_typed<FloatTypes>(r, "leaky_relu_grad", GRAPHC_TYPED(leaky_relu_grad_kernel));
#undef GRAPHC_TYPED
}

}  // namespace graphc
