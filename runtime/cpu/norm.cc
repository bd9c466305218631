// norm.cc — batch norm's training ops over axis 1 of (N, C, ...) float tensors:
// batch_norm_train, batch_norm_train_grad and the in-place batch_norm_update_stats
// (graphc/ops/norm.py has the semantics; the inference form is a composite, no kernel).
//
// Sums are accumulated in double; each element is then computed in T from per-channel
// coefficients rounded once to T, in the reference's order of operations (so the float32
// loops run at float32 width).  A channel is one task: its sums run in one fixed
// order on one thread, so results are identical for any thread count.
#include <cmath>
#include <string>
#include <vector>

#include "common.h"
#include "norm_checks.h"

namespace graphc {
namespace cpu {
namespace {

// ChannelGeom, channel_geom and the factories' checks: norm_checks.h.

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

// Sums over a channel in 8 interleaved double accumulators (element j of each contiguous run
// goes to lane j % 8), combined in one fixed tree: 8 independent add chains instead of one
// (a single chain is bound by the add latency), and the same order for any thread count.
constexpr int kLanes = 8;
struct Lanes {
  double a[kLanes] = {0, 0, 0, 0, 0, 0, 0, 0};
  double total() const { return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7])); }
};

// f(lanes, k, offset) for every element of channel ch; k = the element's lane.
template <class F> inline void each_in_channel_laned(const ChannelGeom& g, int64_t ch, F&& f) {
  for (int64_t b = 0; b < g.n; ++b) {
    const int64_t base = (b * g.c + ch) * g.inner;
    int64_t j = 0;
    for (; j + kLanes <= g.inner; j += kLanes) {
      for (int k = 0; k < kLanes; ++k) f(k, base + j + k);
    }
    for (; j < g.inner; ++j) f(static_cast<int>(j % kLanes), base + j);
  }
}

template <class T> Kernel batch_norm_train_kernel(const KernelArgs& args) {
  const auto chk = batch_norm_train_check(args);
  const auto& attr = chk.attr;
  const ChannelGeom& g = chk.g;
  const TensorRef& x = args.in[0];
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
    if (g.count == 0) {  // an empty batch (maybe (2**40, C, 0): walk no samples): NaN statistics
      for (int64_t ch = 0; ch < g.c; ++ch) pmean[ch] = pvar[ch] = static_cast<T>(std::nan(""));
      return;
    }
    for_channels(g, threads, [&](int64_t ch) {
      const double cnt = static_cast<double>(g.count);
      Lanes s;
      each_in_channel_laned(g, ch, [&](int k, int64_t i) { s.a[k] += static_cast<double>(px[i]); });
      const double mean = s.total() / cnt;  // 0/0 = NaN for an empty batch, as the reference
      Lanes q;
      each_in_channel_laned(g, ch, [&](int k, int64_t i) {
        const double d = static_cast<double>(px[i]) - mean;
        q.a[k] += d * d;
      });
      const double var = q.total() / cnt;
      const double invstd = 1.0 / std::sqrt(var + eps);
      const T m = static_cast<T>(mean), scale = static_cast<T>(invstd * static_cast<double>(pw[ch])), bias = pb[ch];
      each_in_channel(g, ch, [&](int64_t i) { py[i] = (px[i] - m) * scale + bias; });
      pmean[ch] = static_cast<T>(mean);
      pvar[ch] = static_cast<T>(var);
    });
  };
}

template <class T> Kernel batch_norm_train_grad_kernel(const KernelArgs& args) {
  const auto chk = batch_norm_train_grad_check(args);
  const auto& attr = chk.attr;
  const ChannelGeom& g = chk.g;
  const TensorRef &dy = args.in[0], &x = args.in[1];
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
    if (g.count == 0) {  // an empty batch: the sums are 0 and dx is empty (walk no samples)
      for (int64_t ch = 0; ch < g.c; ++ch) pdw[ch] = pdb[ch] = T(0);
      return;
    }
    for_channels(g, threads, [&](int64_t ch) {
      const double cnt = static_cast<double>(g.count);
      const double mean = static_cast<double>(pmean[ch]);
      const double invstd = 1.0 / std::sqrt(static_cast<double>(pvar[ch]) + eps);
      Lanes sdb, sdx;
      each_in_channel_laned(g, ch, [&](int k, int64_t i) {
        const double d = static_cast<double>(pdy[i]);
        sdb.a[k] += d;
        sdx.a[k] += d * (static_cast<double>(px[i]) - mean);
      });
      const double db = sdb.total();
      const double dw = sdx.total() * invstd;
      // the reference's order, in T: a·((dy - k1) - xc·k2) + k3 + xc·k4 with xc = x - mean
      const T a = static_cast<T>(static_cast<double>(pw[ch]) * invstd);
      const T k1 = static_cast<T>(db / cnt), k2 = static_cast<T>(invstd * dw / cnt);
      const T k3 = static_cast<T>(static_cast<double>(pdmean[ch]) / cnt);
      const T k4 = static_cast<T>(2.0 * static_cast<double>(pdvar[ch]) / cnt);
      const T m = pmean[ch];
      each_in_channel(g, ch, [&](int64_t i) {
        const T xc = px[i] - m;
        pdx[i] = a * ((pdy[i] - k1) - xc * k2) + k3 + xc * k4;
      });
      pdw[ch] = static_cast<T>(dw);
      pdb[ch] = static_cast<T>(db);
    });
  };
}

// In place: outputs 0 and 1 are the storage of inputs 0 and 1 (running mean and variance).
template <class T> Kernel batch_norm_update_stats_kernel(const KernelArgs& args) {
  const auto chk = batch_norm_update_stats_check(args);
  const auto& attr = chk.attr;
  const int64_t c = chk.c;
  const TensorRef& rm = args.in[0];
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
