// norm.cc — batch norm's training ops over axis 1 of (N, C, ...) float tensors:
// batch_norm_train, batch_norm_train_grad and the in-place batch_norm_update_stats
// (graphc/ops/norm.py has the semantics; the inference form is a composite, no kernel).
//
// Statistics are accumulated in double and every output is computed in double in the
// reference's order, then rounded once.  A channel is one task: its sums run in one fixed
// order on one thread, so results are identical for any thread count.
#include <cmath>
#include <string>
#include <vector>

#include "common.h"

namespace graphc {
namespace cpu {
namespace {

// x viewed as (N, C, inner): channel c of sample b is the contiguous run at (b·C + c)·inner.
struct ChannelGeom {
  int64_t n = 0, c = 0, inner = 1, count = 0;
};

ChannelGeom channel_geom(const KernelArgs& a, const TensorRef& x, const std::string& what) {
  if (x.dims.size() < 2) a.fail(what + " must have rank >= 2 (N, C, ...), got shape " + format_dims(x.dims));
  ChannelGeom g;
  g.n = x.dims[0];
  g.c = x.dims[1];
  for (size_t i = 2; i < x.dims.size(); ++i) g.inner *= x.dims[i];
  g.count = g.n * g.inner;  // numel fits in int64 (check_tensor_refs), so this product does too
  if (g.c == 0) g.count = 0;
  return g;
}

void expect_channel(const KernelArgs& a, const TensorRef& t, DType dtype, int64_t c, const std::string& what) {
  expect_dtype(a, t, dtype, what);
  expect_dims(a, t, {c}, what);
}

template <class F> void for_channels(const ChannelGeom& g, int threads, F&& f) {
  const int64_t grain = std::max<int64_t>(1, (1 << 16) / std::max<int64_t>(1, g.count));
  parallel_for(g.c, threads, grain, [&](int64_t b, int64_t e) {
    for (int64_t ch = b; ch < e; ++ch) f(ch);
  });
}

// Calls f(value pointer offset) for every element of channel ch, in (sample, inner) order.
template <class F> inline void each_in_channel(const ChannelGeom& g, int64_t ch, F&& f) {
  for (int64_t b = 0; b < g.n; ++b) {
    const int64_t base = (b * g.c + ch) * g.inner;
    for (int64_t k = 0; k < g.inner; ++k) f(base + k);
  }
}

template <class T> Kernel batch_norm_train_kernel(const KernelArgs& args) {
  args.expect_arity(3, 3);
  const attrs::BatchNormTrain attr(args);
  if (!(attr.eps >= 0)) args.fail("eps must be >= 0");
  const TensorRef& x = args.in[0];
  const ChannelGeom g = channel_geom(args, x, "input 0 (x)");
  expect_channel(args, args.in[1], x.dtype, g.c, "input 1 (weight)");
  expect_channel(args, args.in[2], x.dtype, g.c, "input 2 (bias)");
  expect_dtype(args, args.out[0], x.dtype, "output 0 (y)");
  expect_dims(args, args.out[0], x.dims, "output 0 (y)");
  expect_channel(args, args.out[1], x.dtype, g.c, "output 1 (mean)");
  expect_channel(args, args.out[2], x.dtype, g.c, "output 2 (var)");
  if (g.c == 0) return no_op_kernel();
  const T* px = x.as<const T>();
  const T* pw = args.in[1].as<const T>();
  const T* pb = args.in[2].as<const T>();
  T* py = args.out[0].as<T>();
  T* pmean = args.out[1].as<T>();
  T* pvar = args.out[2].as<T>();
  const double eps = attr.eps;
  const int threads = args.ctx.threads;
  return [=]() {
    for_channels(g, threads, [&](int64_t ch) {
      const double cnt = static_cast<double>(g.count);
      double s = 0;
      each_in_channel(g, ch, [&](int64_t i) { s += static_cast<double>(px[i]); });
      const double mean = s / cnt;  // 0/0 = NaN for an empty batch, as the reference
      double q = 0;
      each_in_channel(g, ch, [&](int64_t i) {
        const double d = static_cast<double>(px[i]) - mean;
        q += d * d;
      });
      const double var = q / cnt;
      const double invstd = 1.0 / std::sqrt(var + eps);
      const double scale = invstd * static_cast<double>(pw[ch]);
      const double bias = static_cast<double>(pb[ch]);
      each_in_channel(g, ch, [&](int64_t i) {
        py[i] = static_cast<T>((static_cast<double>(px[i]) - mean) * scale + bias);
      });
      pmean[ch] = static_cast<T>(mean);
      pvar[ch] = static_cast<T>(var);
    });
  };
}

template <class T> Kernel batch_norm_train_grad_kernel(const KernelArgs& args) {
  args.expect_arity(7, 3);
  const attrs::BatchNormTrainGrad attr(args);
  if (!(attr.eps >= 0)) args.fail("eps must be >= 0");
  const TensorRef &dy = args.in[0], &x = args.in[1];
  const ChannelGeom g = channel_geom(args, x, "input 1 (x)");
  expect_dtype(args, dy, x.dtype, "input 0 (dy)");
  expect_dims(args, dy, x.dims, "input 0 (dy)");
  const char* names[] = {"input 2 (weight)", "input 3 (mean)", "input 4 (var)", "input 5 (dmean)", "input 6 (dvar)"};
  for (int i = 2; i < 7; ++i) expect_channel(args, args.in[i], x.dtype, g.c, names[i - 2]);
  expect_dtype(args, args.out[0], x.dtype, "output 0 (dx)");
  expect_dims(args, args.out[0], x.dims, "output 0 (dx)");
  expect_channel(args, args.out[1], x.dtype, g.c, "output 1 (dweight)");
  expect_channel(args, args.out[2], x.dtype, g.c, "output 2 (dbias)");
  if (g.c == 0) return no_op_kernel();
  const T* pdy = dy.as<const T>();
  const T* px = x.as<const T>();
  const T *pw = args.in[2].as<const T>(), *pmean = args.in[3].as<const T>(), *pvar = args.in[4].as<const T>();
  const T *pdmean = args.in[5].as<const T>(), *pdvar = args.in[6].as<const T>();
  T* pdx = args.out[0].as<T>();
  T* pdw = args.out[1].as<T>();
  T* pdb = args.out[2].as<T>();
  const double eps = attr.eps;
  const int threads = args.ctx.threads;
  return [=]() {
    for_channels(g, threads, [&](int64_t ch) {
      const double cnt = static_cast<double>(g.count);
      const double mean = static_cast<double>(pmean[ch]);
      const double invstd = 1.0 / std::sqrt(static_cast<double>(pvar[ch]) + eps);
      double db = 0, sdx = 0;
      each_in_channel(g, ch, [&](int64_t i) {
        const double d = static_cast<double>(pdy[i]);
        db += d;
        sdx += d * (static_cast<double>(px[i]) - mean);
      });
      const double dw = g.count ? sdx * invstd : 0.0;  // Σ dy·x̂ over an empty batch is 0 (its var is NaN)
      // the reference's order: a·(dy - k1 - xc·k2) + k3 + xc·k4
      const double a = static_cast<double>(pw[ch]) * invstd;
      const double k1 = db / cnt, k2 = invstd * dw / cnt;
      const double k3 = static_cast<double>(pdmean[ch]) / cnt, k4 = 2.0 * static_cast<double>(pdvar[ch]) / cnt;
      each_in_channel(g, ch, [&](int64_t i) {
        const double xc = static_cast<double>(px[i]) - mean;
        pdx[i] = static_cast<T>(a * (static_cast<double>(pdy[i]) - k1 - xc * k2) + k3 + xc * k4);
      });
      pdw[ch] = static_cast<T>(dw);
      pdb[ch] = static_cast<T>(db);
    });
  };
}

// In place: outputs 0 and 1 are the storage of inputs 0 and 1 (running mean and variance).
template <class T> Kernel batch_norm_update_stats_kernel(const KernelArgs& args) {
  args.expect_arity(4, 2);
  const attrs::BatchNormUpdateStats attr(args);
  if (!(attr.momentum >= 0.0 && attr.momentum <= 1.0)) args.fail("momentum must be in [0, 1]");
  if (attr.count < 2) args.fail("count must be >= 2 (the unbiased variance divides by count - 1)");
  const TensorRef& rm = args.in[0];
  if (rm.dims.size() != 1) args.fail("input 0 (running_mean) must have rank 1, got shape " + format_dims(rm.dims));
  const int64_t c = rm.dims[0];
  const char* names[] = {"input 1 (running_var)", "input 2 (mean)", "input 3 (var)"};
  for (int i = 1; i < 4; ++i) expect_channel(args, args.in[i], rm.dtype, c, names[i - 1]);
  expect_channel(args, args.out[0], rm.dtype, c, "output 0 (running_mean)");
  expect_channel(args, args.out[1], rm.dtype, c, "output 1 (running_var)");
  if (c == 0) return no_op_kernel();
  const T *prm = rm.as<const T>(), *prv = args.in[1].as<const T>();
  const T *pmean = args.in[2].as<const T>(), *pvar = args.in[3].as<const T>();
  T* om = args.out[0].as<T>();
  T* ov = args.out[1].as<T>();
  const double m = attr.momentum, n = static_cast<double>(attr.count);
  return [=]() {
    // C values: one thread; each element reads its old value before writing it (in place)
    for (int64_t i = 0; i < c; ++i) {
      const double new_mean = (1.0 - m) * static_cast<double>(prm[i]) + m * static_cast<double>(pmean[i]);
      const double new_var = (1.0 - m) * static_cast<double>(prv[i]) + m * (static_cast<double>(pvar[i]) * n / (n - 1));
      om[i] = static_cast<T>(new_mean);
      ov[i] = static_cast<T>(new_var);
    }
  };
}

}  // namespace
}  // namespace cpu

void register_norm_kernels(KernelRegistry& r) {
  using namespace cpu;
  add_typed<FloatTypes>(r, "batch_norm_train", [](auto tag, const KernelArgs& a) {
    return batch_norm_train_kernel<typename decltype(tag)::type>(a);
  });
  add_typed<FloatTypes>(r, "batch_norm_train_grad", [](auto tag, const KernelArgs& a) {
    return batch_norm_train_grad_kernel<typename decltype(tag)::type>(a);
  });
  add_typed<FloatTypes>(r, "batch_norm_update_stats", [](auto tag, const KernelArgs& a) {
    return batch_norm_update_stats_kernel<typename decltype(tag)::type>(a);
  });
}

}  // namespace graphc
