// activations.cc — gelu (erf and tanh forms), softplus and their gradient ops gelu_grad and
// softplus_grad (graphc/ops/activations.py has the semantics: torch.nn.functional's formulas,
// with the mathematical limit where torch's formula meets inf·0 or an overflowing exp).
//
// Each is one elementwise pass computed in T (float32 at float32 width, as torch does); the
// inf·0 cases are removed with selects, not branches, so the loops stay branch-free.  No
// reduction, so results are the same bits for any thread count.  An output may alias an input
// of its size (the ops are declared elementwise): every loop reads item i before writing it.
#include <cmath>
#include <string>

#include "common.h"
#include "op_schema.h"

namespace graphc {
namespace cpu {
namespace {

constexpr double kSqrt1_2 = 0.70710678118654752440;     // 1/√2
constexpr double kInvSqrt2Pi = 0.39894228040143267794;  // 1/√(2π)
constexpr double kK = 0.79788456080286535588;           // √(2/π)
constexpr double kKappa = 0.044715;

constexpr int64_t kGrain = 1 << 14;  // items per task: the transcendental calls make items costly

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
  return [=]() {
    parallel_for(n, threads, kGrain, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) py[i] = f(px[i]);
    });
  };
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
  return [=]() {
    parallel_for(n, threads, kGrain, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) pdx[i] = f(pdy[i], px[i]);
    });
  };
}

// gelu, erf form: x·Φ(x) with Φ(x) = ½·erfc(-x/√2) (erfc keeps the negative tail accurate where
// torch's ½·(1 + erf) cancels to 0).  Φ = 0 only for x <= about -13 (-38 in double) or -inf:
// the result is -0 there (torch: -0 for finite x, NaN for -inf).
template <class T> T gelu_erf(T x) {
  const T cdf = T(0.5) * std::erfc(-x * T(kSqrt1_2));
  return cdf == T(0) ? T(-0.0) : x * cdf;
}

// gelu, tanh form: ½·x·(1 + tanh(√(2/π)·(x + κx³))), torch's order of operations.
template <class T> T gelu_tanh(T x) {
  const T inner = T(kK) * (x + T(kKappa) * (x * x * x));
  const T right = T(1) + std::tanh(inner);
  return right == T(0) ? T(-0.0) : T(0.5) * x * right;
}

// gelu'(x) = Φ(x) + x·φ(x); x·φ(x) -> 0 where φ underflows (|x| large, ±inf: torch NaN at ±inf).
template <class T> T gelu_erf_grad(T dy, T x) {
  const T cdf = T(0.5) * std::erfc(-x * T(kSqrt1_2));
  const T pdf = std::exp(T(-0.5) * x * x) * T(kInvSqrt2Pi);
  const T xpdf = pdf == T(0) ? T(0) : x * pdf;
  return dy * (cdf + xpdf);
}

// The tanh form's derivative, torch's terms: ½(1 + t) + ½x·(1 - t²)·√(2/π)(1 + 3κx²); the second
// term -> 0 where tanh saturates (torch: inf·0 = NaN at |x| >= about 1e13 in float32, ±inf).
template <class T> T gelu_tanh_grad(T dy, T x) {
  const T x_sq = x * x;
  const T inner = T(kK) * (x + T(kKappa) * (x_sq * x));
  const T t = std::tanh(inner);
  const T sech2 = T(1) - t * t;
  const T inner_d = T(kK) * (T(1) + T(3) * T(kKappa) * x_sq);
  const T second = sech2 == T(0) ? T(0) : T(0.5) * x * sech2 * inner_d;
  return dy * (T(0.5) * (T(1) + t) + second);
}

template <class T> Kernel gelu_kernel(const KernelArgs& a) {
  if (gelu_tanh_form(a, attrs::Gelu(a).approximate)) return unary_kernel<T>(a, [](T x) { return gelu_tanh(x); });
  return unary_kernel<T>(a, [](T x) { return gelu_erf(x); });
}

template <class T> Kernel gelu_grad_kernel(const KernelArgs& a) {
  if (gelu_tanh_form(a, attrs::GeluGrad(a).approximate)) {
    return grad_kernel<T>(a, [](T dy, T x) { return gelu_tanh_grad(dy, x); });
  }
  return grad_kernel<T>(a, [](T dy, T x) { return gelu_erf_grad(dy, x); });
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
    const T soft = (std::fmax(z, T(0)) + std::log1p(std::exp(-std::fabs(z)))) / beta;
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
    const T e = std::exp(-std::fabs(z));
    const T s = (z >= T(0) ? T(1) : e) / (T(1) + e);
    return z > threshold ? dy : dy * s;
  });
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
#undef GRAPHC_TYPED
}

}  // namespace graphc
