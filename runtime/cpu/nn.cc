// nn.cc — softmax, log_softmax, softmax_cross_entropy, one_hot.
#include <atomic>
#include <limits>
#include <memory>
#include <type_traits>

#include "common.h"
#include "elementwise_ops.h"  // exp_value: float32 exp the compiler vectorises
#include "nn_checks.h"

namespace graphc {
namespace cpu {
namespace {

// Softmax over `axis` in (outer, n, inner) form; inner == 1 is the contiguous fast path.
template <class T, bool kLog> Kernel softmax_kernel(const KernelArgs& args) {
  const SoftmaxPlan plan = softmax_plan(args, kLog);
  if (plan.empty) return no_op_kernel();
  const int64_t outer = plan.outer, n = plan.n, inner = plan.inner;
  const TensorRef &x = args.in[0], &y = args.out[0];
  const T* px = x.as<const T>();
  T* py = y.as<T>();
  const int threads = args.ctx.threads;
  return [=]() {
    parallel_for(outer * inner, threads, std::max<int64_t>(1, 4096 / n), [&](int64_t b, int64_t e) {
      for (int64_t t = b; t < e; ++t) {
        const int64_t o = t / inner, i = t % inner;
        const T* src = px + o * n * inner + i;
        T* dst = py + o * n * inner + i;
        T m = src[0];
        for (int64_t k = 1; k < n; ++k) m = src[k * inner] > m ? src[k * inner] : m;
        double s = 0.0;
        for (int64_t k = 0; k < n; ++k) {
          T ex = std::exp(src[k * inner] - m);
          if (!kLog) dst[k * inner] = ex;
          s += ex;
        }
        if (kLog) {
          const T lse = m + static_cast<T>(std::log(s));
          for (int64_t k = 0; k < n; ++k) dst[k * inner] = src[k * inner] - lse;
        } else {
          const T inv = static_cast<T>(1.0 / s);
          for (int64_t k = 0; k < n; ++k) dst[k * inner] *= inv;
        }
      }
    });
  };
}

// log Σ_k e^{row[k]} over C >= 1 logits, stably (shifted by the row max), in double.
// A row holding NaN, +inf, or only -inf gives NaN (x - max is NaN somewhere), as the
// reference's log_softmax defines it.
// Float32: e^{row[k] - max} by exp_value (vectorised, within ~1 ulp; std::exp in double cost
// ~75% of the step's cross-entropy at vocab 128), summed in double in 8 lanes (an order that
// depends on C only).  Returns the max in *max_out and the sum in *sum_out when given.
template <class T> double row_logsumexp(const T* row, int64_t C, T* max_out = nullptr, double* sum_out = nullptr) {
  T m = row[0];
  for (int64_t k = 1; k < C; ++k) m = row[k] > m ? row[k] : m;
  double s = 0.0;
  if constexpr (std::is_same_v<T, float>) {
    double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    constexpr int64_t kChunk = 64;
    float e[kChunk];
    for (int64_t k0 = 0; k0 < C; k0 += kChunk) {
      const int64_t n = std::min(kChunk, C - k0);
      for (int64_t j = 0; j < n; ++j) e[j] = exp_value(row[k0 + j] - m);
      int64_t j = 0;
      for (; j + 8 <= n; j += 8) {
        for (int l = 0; l < 8; ++l) acc[l] += static_cast<double>(e[j + l]);
      }
      for (; j < n; ++j) acc[j % 8] += static_cast<double>(e[j]);
    }
    s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
  } else {
    for (int64_t k = 0; k < C; ++k) s += std::exp(static_cast<double>(row[k] - m));
  }
  if (max_out != nullptr) *max_out = m;
  if (sum_out != nullptr) *sum_out = s;
  return static_cast<double>(m) + std::log(s);
}

// Throws for the first row whose label fell outside [0, C) (bad_row < 0: none did).
template <class L> void check_labels(const L* labels, int64_t bad_row, int64_t C) {
  if (bad_row >= 0) {
    throw std::runtime_error("label " + std::to_string(static_cast<int64_t>(labels[bad_row])) + " at position " +
                             std::to_string(bad_row) + " is outside [0, " + std::to_string(C) + ")");
  }
}

template <class T, class L> Kernel sce_kernel(const KernelArgs& args) {
  const ScePlan plan = sce_plan(args);
  const int64_t rows = plan.rows, C = plan.C;
  const bool reduce = plan.reduce, mean = plan.mean;
  const TensorRef &x = args.in[0], &lab = args.in[1], &y = args.out[0];
  const T* px = x.as<const T>();
  const L* pl = lab.as<const L>();
  T* py = y.as<T>();
  const int threads = args.ctx.threads;
  // Per-row losses for the reduced forms: owned by the prepared kernel, summed in order.
  auto losses = std::make_shared<std::vector<double>>(reduce ? rows : 0);
  return [=]() {
    std::atomic<int64_t> bad_row{-1};
    double* lp = losses->data();
    parallel_for(rows, threads, std::max<int64_t>(1, 4096 / std::max<int64_t>(C, 1)), [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; ++r) {
        const int64_t label = static_cast<int64_t>(pl[r]);
        if (label < 0 || label >= C) {
          int64_t expected = -1;
          bad_row.compare_exchange_strong(expected, r);
          continue;
        }
        const T* row = px + r * C;
        const double loss = row_logsumexp(row, C) - static_cast<double>(row[label]);
        if (reduce) lp[r] = loss;
        else py[r] = static_cast<T>(loss);
      }
    });
    check_labels(pl, bad_row.load(), C);
    if (reduce) {
      double total = 0.0;
      for (int64_t r = 0; r < rows; ++r) total += lp[r];
      py[0] = static_cast<T>(mean ? total / static_cast<double>(rows) : total);
    }
  };
}

// relu_grad(g, x) = g where x > 0, else 0.
template <class T> Kernel relu_grad_kernel(const KernelArgs& args) {
  const int64_t n = relu_grad_check(args);
  const T* pg = args.in[0].as<const T>();
  const T* px = args.in[1].as<const T>();
  T* py = args.out[0].as<T>();
  const int threads = args.ctx.threads;
  return [=]() {
    parallel_for(n, threads, 1 << 15, [&](int64_t b, int64_t e) {
      // Both loads unconditional: a select, vectorised, instead of a data-dependent branch
      // (mispredicted half the time on real activations).  out may alias g or x exactly.
#pragma GCC ivdep
      for (int64_t i = b; i < e; ++i) {
        const T gi = pg[i];
        py[i] = px[i] > T(0) ? gi : T(0);
      }
    });
  };
}

// softmax_cross_entropy_grad(logits, labels, g) = (softmax(logits) - one_hot(labels)) * scale,
// scale = g per row ('none'), g ('sum') or g / max(N, 1) ('mean').
template <class T, class L> Kernel sce_grad_kernel(const KernelArgs& args) {
  const ScePlan plan = sce_grad_plan(args);
  const int64_t rows = plan.rows, C = plan.C;
  const bool per_row = !plan.reduce, mean = plan.mean;
  const TensorRef &x = args.in[0], &lab = args.in[1], &g = args.in[2], &y = args.out[0];
  const T* px = x.as<const T>();
  const L* pl = lab.as<const L>();
  const T* pg = g.as<const T>();
  T* py = y.as<T>();
  const int threads = args.ctx.threads;
  if (rows == 0) return no_op_kernel();  // no labels, an empty output
  return [=]() {
    std::atomic<int64_t> bad_row{-1};
    const T whole = per_row ? T(0) : (mean ? pg[0] / static_cast<T>(std::max<int64_t>(rows, 1)) : pg[0]);
    parallel_for(rows, threads, std::max<int64_t>(1, 4096 / std::max<int64_t>(C, 1)), [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; ++r) {
        const int64_t label = static_cast<int64_t>(pl[r]);
        if (label < 0 || label >= C) {
          int64_t expected = -1;
          bad_row.compare_exchange_strong(expected, r);
          continue;
        }
        const T* row = px + r * C;
        T* dst = py + r * C;
        const T scale = per_row ? pg[r] : whole;
        if constexpr (std::is_same_v<T, float>) {
          // p = e^{x - max} / Σ: the vectorised exp again, times the sum's reciprocal
          float m = 0.0f;
          double sum = 0.0;
          row_logsumexp(row, C, &m, &sum);
          const float inv = static_cast<float>(1.0 / sum);
          const float at_label = (exp_value(row[label] - m) * inv - 1.0f) * scale;  // read before dst may alias row
          for (int64_t k = 0; k < C; ++k) dst[k] = exp_value(row[k] - m) * inv * scale;
          dst[label] = at_label;
        } else {
          const double lse = row_logsumexp(row, C);
          for (int64_t k = 0; k < C; ++k) {
            T p = static_cast<T>(std::exp(static_cast<double>(row[k]) - lse));
            dst[k] = (p - (k == label ? T(1) : T(0))) * scale;
          }
        }
      }
    });
    check_labels(pl, bad_row.load(), C);
  };
}

// -- optimizer updates: elementwise over the variable, safe when outputs alias inputs
// (each item is read before it is written).  The arithmetic follows the numpy reference
// in the variable's dtype.  grad_scale (data-parallel averaging, 1/N) multiplies the gradient
// first, in T, as a separate rounding (the build has -ffp-contract=off): bit-identical to
// feeding g * grad_scale with grad_scale 1 (x * 1 is exact).  The checks: nn_checks.h (update_check, adam_check).

template <class T> Kernel assign_kernel(const KernelArgs& a) {
  const size_t n = static_cast<size_t>(update_check(a, 2, 1, 0)) * sizeof(T);
  const void* src = a.in[1].data;
  void* dst = a.out[0].data;
  return [=]() { if (n && src != dst) std::memmove(dst, src, n); };
}

template <class T> Kernel sgd_kernel(const KernelArgs& a) {
  const int64_t n = update_check(a, 2, 1, 0);
  const attrs::SgdUpdate attr(a);
  const T lr = static_cast<T>(attr.lr);
  const T wd = static_cast<T>(attr.weight_decay);
  const T gs = static_cast<T>(attr.grad_scale);
  const T* w = a.in[0].as<const T>();
  const T* g = a.in[1].as<const T>();
  T* y = a.out[0].as<T>();
  const int threads = a.ctx.threads;
  return [=]() {
    parallel_for(n, threads, 1 << 16, [&](int64_t b, int64_t e) {
      if (wd == T(0)) {
#pragma GCC ivdep
        for (int64_t i = b; i < e; ++i) y[i] = w[i] - lr * (g[i] * gs);
      } else {
#pragma GCC ivdep
        for (int64_t i = b; i < e; ++i) y[i] = w[i] - lr * (g[i] * gs + wd * w[i]);
      }
    });
  };
}

// One variant per (weight decay, nesterov) so that the loop has no branches and
// vectorises; outputs alias w and v exactly (in place), which ivdep allows: item i is
// read before it is written and no other item is touched.
template <class T, bool kWd, bool kNesterov>
void sgd_momentum_loop(const T* w, const T* g, const T* v, T* yw, T* yv, int64_t n, T lr, T mu, T wd, T gs) {
#pragma GCC ivdep
  for (int64_t i = 0; i < n; ++i) {
    const T wi = w[i];
    const T gi = kWd ? g[i] * gs + wd * wi : g[i] * gs;
    const T vi = mu * v[i] + gi;
    const T step = kNesterov ? gi + mu * vi : vi;
    yv[i] = vi;
    yw[i] = wi - lr * step;
  }
}

template <class T> Kernel sgd_momentum_kernel(const KernelArgs& a) {
  const int64_t n = update_check(a, 3, 2, 1);
  const attrs::SgdMomentumUpdate attr(a);
  const T lr = static_cast<T>(attr.lr);
  const T mu = static_cast<T>(attr.momentum);
  const bool nesterov = attr.nesterov;
  const T wd = static_cast<T>(attr.weight_decay);
  const T gs = static_cast<T>(attr.grad_scale);
  const T* w = a.in[0].as<const T>();
  const T* g = a.in[1].as<const T>();
  const T* v = a.in[2].as<const T>();
  T* yw = a.out[0].as<T>();
  T* yv = a.out[1].as<T>();
  const int threads = a.ctx.threads;
  return [=]() {
    parallel_for(n, threads, 1 << 16, [&](int64_t b, int64_t e) {
      if (wd == T(0) && !nesterov) {
        sgd_momentum_loop<T, false, false>(w + b, g + b, v + b, yw + b, yv + b, e - b, lr, mu, wd, gs);
      } else if (!nesterov) {
        sgd_momentum_loop<T, true, false>(w + b, g + b, v + b, yw + b, yv + b, e - b, lr, mu, wd, gs);
      } else if (wd == T(0)) {
        sgd_momentum_loop<T, false, true>(w + b, g + b, v + b, yw + b, yv + b, e - b, lr, mu, wd, gs);
      } else {
        sgd_momentum_loop<T, true, true>(w + b, g + b, v + b, yw + b, yv + b, e - b, lr, mu, wd, gs);
      }
    });
  };
}

template <class T> Kernel adam_kernel(const KernelArgs& a) {
  const int64_t n = adam_check(a);
  const attrs::AdamUpdate attr(a);
  const T lr = static_cast<T>(attr.lr);
  const T b1 = static_cast<T>(attr.beta1);
  const T b2 = static_cast<T>(attr.beta2);
  const T eps = static_cast<T>(attr.eps);
  const T wd = static_cast<T>(attr.weight_decay);
  const bool decoupled = attr.decoupled;
  const T gs = static_cast<T>(attr.grad_scale);
  const int64_t* pstep = a.in[4].as<const int64_t>();
  const T* w = a.in[0].as<const T>();
  const T* g = a.in[1].as<const T>();
  const T* m = a.in[2].as<const T>();
  const T* v = a.in[3].as<const T>();
  T* yw = a.out[0].as<T>();
  T* ym = a.out[1].as<T>();
  T* yv = a.out[2].as<T>();
  const int threads = a.ctx.threads;
  return [=]() {
    // The step is data (it changes every run), read here, not at prepare.
    const T t = static_cast<T>(*pstep);
    const T c1 = T(1) - std::pow(b1, t), c2 = T(1) - std::pow(b2, t);
    // The weight-decay form is picked once, outside the loop (mode 0: none, 1: L2 into the
    // gradient, 2: decoupled), and the loop is ivdep (the outputs alias the inputs exactly or not
    // at all: each item is read before it is written), so that it vectorises; sqrt and / are
    // correctly rounded in SIMD too, so the bits are the scalar loop's.
    const T keep = T(1) - lr * wd;
    const int mode = decoupled ? 2 : (wd != T(0) ? 1 : 0);
    parallel_for(n, threads, 1 << 13, [&](int64_t b, int64_t e) {
      auto run = [&](auto mode_c) {
        constexpr int kMode = decltype(mode_c)::value;
#pragma GCC ivdep
        for (int64_t i = b; i < e; ++i) {
          T wi = w[i], gi = g[i] * gs;
          if constexpr (kMode == 2) wi = wi * keep;
          if constexpr (kMode == 1) gi = gi + wd * wi;
          const T mi = b1 * m[i] + (T(1) - b1) * gi;
          const T vi = b2 * v[i] + (T(1) - b2) * gi * gi;
          const T mhat = mi / c1, vhat = vi / c2;
          ym[i] = mi;
          yv[i] = vi;
          yw[i] = wi - lr * mhat / (std::sqrt(vhat) + eps);
        }
      };
      if (mode == 2) run(std::integral_constant<int, 2>());
      else if (mode == 1) run(std::integral_constant<int, 1>());
      else run(std::integral_constant<int, 0>());
    });
  };
}

template <class I, class O> Kernel one_hot_kernel(const KernelArgs& args) {
  const int64_t depth = one_hot_depth(args);
  const TensorRef &x = args.in[0], &y = args.out[0];
  if (numel_of(y) == 0) return no_op_kernel();  // depth 0 or no indices
  const I* px = x.as<const I>();
  O* py = y.as<O>();
  const int64_t n = numel_of(x);
  const int threads = args.ctx.threads;
  return [=]() {
    parallel_for(n, threads, std::max<int64_t>(1, (1 << 15) / std::max<int64_t>(depth, 1)), [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        O* row = py + i * depth;
        for (int64_t k = 0; k < depth; ++k) row[k] = O(0);
        const int64_t v = static_cast<int64_t>(px[i]);
        if (v >= 0 && v < depth) row[v] = O(1);
      }
    });
  };
}

// Kernels over float logits (input 0) and integer labels (input 1): one registration per
// float dtype the schema allows, dispatching on the labels' dtype at plan load.
// make(T{}, Label{}, args).
template <class Make>
void add_label_kernels(KernelRegistry& r, const char* op, size_t n_in, Make make) {
  add_typed<FloatTypes>(r, op, [n_in, make](auto tag, const KernelArgs& a) -> Kernel {
    return dispatch_labels<typename decltype(tag)::type>(a, n_in, make);
  });
}

}  // namespace
}  // namespace cpu

void register_nn_kernels(KernelRegistry& r) {
  using namespace cpu;
  // T of each kernel from the tag; the dtypes from the schema (add_typed).
#define GRAPHC_TYPED(kernel) [](auto tag, const KernelArgs& a) { return kernel<typename decltype(tag)::type>(a); }
  add_typed<FloatTypes>(r, "softmax", [](auto tag, const KernelArgs& a) {
    return softmax_kernel<typename decltype(tag)::type, false>(a);
  });
  add_typed<FloatTypes>(r, "log_softmax", [](auto tag, const KernelArgs& a) {
    return softmax_kernel<typename decltype(tag)::type, true>(a);
  });
  add_label_kernels(r, "softmax_cross_entropy", 2,
                    [](auto t, auto l, const KernelArgs& a) { return sce_kernel<decltype(t), decltype(l)>(a); });
  add_label_kernels(r, "softmax_cross_entropy_grad", 3,
                    [](auto t, auto l, const KernelArgs& a) { return sce_grad_kernel<decltype(t), decltype(l)>(a); });
  add_typed<AllTypes>(r, "assign", GRAPHC_TYPED(assign_kernel));
  add_typed<FloatTypes>(r, "sgd_update", GRAPHC_TYPED(sgd_kernel));
  add_typed<FloatTypes>(r, "sgd_momentum_update", GRAPHC_TYPED(sgd_momentum_kernel));
  add_typed<FloatTypes>(r, "adam_update", GRAPHC_TYPED(adam_kernel));
  add_typed<NumericTypes>(r, "relu_grad", GRAPHC_TYPED(relu_grad_kernel));
#undef GRAPHC_TYPED
  for (DType t : schema_dtypes("one_hot")) {
    add_kernel(r, "one_hot", t, [t](const KernelArgs& a) -> Kernel {
      const DType to = one_hot_out_dtype(a);
      return dispatch_all(t, [&](auto it) -> Kernel {
        using I = typename decltype(it)::type;
        return dispatch_all(to, [&](auto ot) -> Kernel { return one_hot_kernel<I, typename decltype(ot)::type>(a); });
      });
    });
  }
}

}  // namespace graphc
