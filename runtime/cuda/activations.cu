// activations.cu — the CUDA twin of runtime/cpu/activations.cc: gelu (erf and tanh forms),
// softplus, leaky_relu and their gradient ops gelu_grad, softplus_grad, leaky_relu_grad.
//
// The scalar math is the CPU's (cpu/activation_ops.h, GRAPHC_HD): float32 on exp_f32, the log1p
// polynomial and the rational erf; float64 through the math library (erfc, tanh, log1p, exp).
// The attrs are checked with the CPU's rules and messages.
// Launch shapes (ew.cuh): the forward ops: one 16-byte vector (float4 / double2) per thread per
// grid-stride iteration; the gradients: the same over the (dy, x) pair.
#include <cmath>
#include <string>

#include "../cpu/activation_ops.h"
#include "ew.cuh"

namespace graphc {
namespace cuda {
namespace {

// ---------------------------------------------------------------- functors

struct GeluErfF {
  template <class T> GRAPHC_HD T operator()(T x) const {
    if constexpr (std::is_same_v<T, float>) {
      return cpu::gelu_erf_f32(x);
    } else {
      return cpu::gelu_erf(x);
    }
  }
};
struct GeluTanhF {
  template <class T> GRAPHC_HD T operator()(T x) const {
    if constexpr (std::is_same_v<T, float>) {
      return cpu::gelu_tanh_f32(x);
    } else {
      return cpu::gelu_tanh(x);
    }
  }
};
struct GeluErfGradF {
  template <class T> GRAPHC_HD T operator()(T dy, T x) const {
    if constexpr (std::is_same_v<T, float>) {
      return cpu::gelu_erf_grad_f32(dy, x);
    } else {
      return cpu::gelu_erf_grad(dy, x);
    }
  }
};
struct GeluTanhGradF {
  template <class T> GRAPHC_HD T operator()(T dy, T x) const {
    if constexpr (std::is_same_v<T, float>) {
      return cpu::gelu_tanh_grad_f32(dy, x);
    } else {
      return cpu::gelu_tanh_grad(dy, x);
    }
  }
};

// softplus: x where z = beta·x > threshold, else (max(z, 0) + log1p(e^-|z|))/beta (activations.cc).
template <class T> struct SoftplusF {
  T beta, threshold;
  GRAPHC_HD T operator()(T x) const {
    const T z = x * beta;
    const T soft = cpu::softplus_soft(z, beta);
    return z > threshold ? x : soft;
  }
};
// softplus_grad: dy where z > threshold, else dy·σ(z).
template <class T> struct SoftplusGradF {
  T beta, threshold;
  GRAPHC_HD T operator()(T dy, T x) const {
    const T z = x * beta;
    const T s = cpu::sigmoid_of(z);
    return z > threshold ? dy : dy * s;
  }
};
template <class T> struct LeakyReluF {
  T slope;
  GRAPHC_HD T operator()(T x) const { return x > T(0) ? x : x * slope; }
};
template <class T> struct LeakyReluGradF {
  T slope;
  GRAPHC_HD T operator()(T dy, T x) const { return x > T(0) ? dy : dy * slope; }
};

// ---------------------------------------------------------------- attrs (activations.cc's rules)

bool gelu_tanh_form(const KernelArgs& a, const std::string& approximate) {
  if (approximate != "none" && approximate != "tanh") {
    a.fail("attr 'approximate' must be 'none' or 'tanh', got '" + approximate + "'");
  }
  return approximate == "tanh";
}

void check_softplus(const KernelArgs& a, double beta, double threshold) {
  if (!std::isfinite(beta) || beta == 0.0) {
    a.fail("attr 'beta' must be finite and nonzero, got " + std::to_string(beta));
  }
  if (std::isnan(threshold)) a.fail("attr 'threshold' must be a number, got nan");
}

double leaky_slope(const KernelArgs& a, double slope) {
  if (!std::isfinite(slope)) a.fail("attr 'negative_slope' must be finite, got " + std::to_string(slope));
  return slope;
}

// y = f(x): activations.cc's unary_kernel checks (y of x's dtype and dims).
template <class T, class F> Kernel unary(const KernelArgs& args, F f, const char* what) {
  args.expect_arity(1, 1);
  const TensorRef &x = args.in[0], &y = args.out[0];
  cpu::expect_dtype(args, y, x.dtype, "output");
  cpu::expect_dims(args, y, x.dims, "output");
  return ew_map_launch<T, T>(args, x.as<const T>(), y.as<T>(), numel_of(x), f, what);
}

template <class T> Kernel gelu_kernel(const KernelArgs& a) {
  if (gelu_tanh_form(a, attrs::Gelu(a).approximate)) return unary<T>(a, GeluTanhF{}, "gelu");
  return unary<T>(a, GeluErfF{}, "gelu");
}
template <class T> Kernel gelu_grad_kernel(const KernelArgs& a) {
  if (gelu_tanh_form(a, attrs::GeluGrad(a).approximate)) return ew_grad<T>(a, GeluTanhGradF{}, "gelu_grad");
  return ew_grad<T>(a, GeluErfGradF{}, "gelu_grad");
}
template <class T> Kernel softplus_kernel(const KernelArgs& a) {
  const attrs::Softplus at(a);
  check_softplus(a, at.beta, at.threshold);
  return unary<T>(a, SoftplusF<T>{T(at.beta), T(at.threshold)}, "softplus");
}
template <class T> Kernel softplus_grad_kernel(const KernelArgs& a) {
  const attrs::SoftplusGrad at(a);
  check_softplus(a, at.beta, at.threshold);
  return ew_grad<T>(a, SoftplusGradF<T>{T(at.beta), T(at.threshold)}, "softplus_grad");
}
template <class T> Kernel leaky_relu_kernel(const KernelArgs& a) {
  const T slope = T(leaky_slope(a, attrs::LeakyRelu(a).negative_slope));
  return unary<T>(a, LeakyReluF<T>{slope}, "leaky_relu");
}
template <class T> Kernel leaky_relu_grad_kernel(const KernelArgs& a) {
  const T slope = T(leaky_slope(a, attrs::LeakyReluGrad(a).negative_slope));
  return ew_grad<T>(a, LeakyReluGradF<T>{slope}, "leaky_relu_grad");
}

}  // namespace

void register_activation_kernels(KernelRegistry& r) {
#define GRAPHC_TYPED(kernel) [](auto tag, const KernelArgs& a) { return kernel<typename decltype(tag)::type>(a); }
  add_typed<FloatTypes>(r, "gelu", GRAPHC_TYPED(gelu_kernel));
  add_typed<FloatTypes>(r, "gelu_grad", GRAPHC_TYPED(gelu_grad_kernel));
  add_typed<FloatTypes>(r, "softplus", GRAPHC_TYPED(softplus_kernel));
  add_typed<FloatTypes>(r, "softplus_grad", GRAPHC_TYPED(softplus_grad_kernel));
  add_typed<FloatTypes>(r, "leaky_relu", GRAPHC_TYPED(leaky_relu_kernel));
  add_typed<FloatTypes>(r, "leaky_relu_grad", GRAPHC_TYPED(leaky_relu_grad_kernel));
#undef GRAPHC_TYPED
}

}  // namespace cuda
}  // namespace graphc
