// norm.cu — the CUDA twin of runtime/cpu/norm.cc: batch_norm_train, batch_norm_train_grad and the
// in-place batch_norm_update_stats over axis 1 of (N, C, ...) float tensors.
//
// Kernels (what each thread/block does):
// - batch_norm_train: a 512-thread block per channel (grid-stride over channels).  Thread t sums a
//   fixed set of the channel's items (each_owned: items t, t + 512, ... of every sample's run when
//   the run has >= 512 items, else of the flattened channel; double), the block combines the
//   partials in a fixed tree (nn_rows.cuh): the mean; a second sweep the same way: Σ(x - mean)²;
//   then y = (x - m)·scale + bias in T with the CPU's coefficients rounded once to T.
// - batch_norm_train_grad: the same block per channel: Σdy and Σdy·(x - mean) in one sweep, then dx
//   in T in the reference's order of operations (products rounded before adds: mul_rn).
// - batch_norm_update_stats: one thread per channel, in place.
// Deterministic (fixed blocking, no atomics).  Not done: splitting one channel over several blocks
// (a (N, 3, H, W) input runs on 3 blocks).
#include "../cpu/norm_checks.h"
#include "nn_rows.cuh"

namespace graphc {
namespace cuda {
namespace {

using cpu::expect_dims;
using cpu::expect_dtype;

using cpu::ChannelGeom;  // the geometry and the checks: cpu/norm_checks.h (as the CPU's)

constexpr int kChannelThreads = 512;

// f(i) for the offset i of every item of channel ch this thread owns: with inner >= the block
// size, thread t takes items t, t + blockDim, ... of each sample's contiguous run (no division,
// coalesced); else items t, t + blockDim, ... of the channel in (sample, inner) order.  Either way
// a fixed assignment: the same partial sums every run.
template <class F> __device__ inline void each_owned(int64_t ch, int64_t n, int64_t c, int64_t inner, F&& f) {
  if (inner >= blockDim.x) {
    for (int64_t b = 0; b < n; ++b) {
      const int64_t base = (b * c + ch) * inner;
      for (int64_t k = threadIdx.x; k < inner; k += blockDim.x) f(base + k);
    }
  } else {
    for (int64_t j = threadIdx.x; j < n * inner; j += blockDim.x) {
      const int64_t b = j / inner, k = j - b * inner;
      f((b * c + ch) * inner + k);
    }
  }
}

template <class T>
__global__ void bn_train_channels(const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ bias,
                                  T* __restrict__ y, T* __restrict__ mean_out, T* __restrict__ var_out, int64_t n,
                                  int64_t c, int64_t inner, int64_t count, double eps) {
  const RowBlock g;
  const double cnt = static_cast<double>(count);
  for (int64_t ch = blockIdx.x; ch < c; ch += gridDim.x) {
    double s = 0.0;
    each_owned(ch, n, c, inner, [&](int64_t i) { s += static_cast<double>(x[i]); });
    const double mean = g.sum(s) / cnt;
    double q = 0.0;
    each_owned(ch, n, c, inner, [&](int64_t i) {
      const double d = static_cast<double>(x[i]) - mean;
      q += mul_rn(d, d);
    });
    const double var = g.sum(q) / cnt;
    const double invstd = 1.0 / sqrt(var + eps);
    const T m = static_cast<T>(mean), scale = static_cast<T>(mul_rn(invstd, static_cast<double>(w[ch]))), b = bias[ch];
    each_owned(ch, n, c, inner, [&](int64_t i) { y[i] = mul_rn(x[i] - m, scale) + b; });
    if (threadIdx.x == 0) {
      mean_out[ch] = m;
      var_out[ch] = static_cast<T>(var);
    }
  }
}

template <class T> __global__ void fill_two(T* a, T* b, int64_t n, T v) {
  GRAPHC_GRID_STRIDE(i, n) {
    a[i] = v;
    b[i] = v;
  }
}

template <class T> Kernel batch_norm_train_kernel(const KernelArgs& args) {
  const auto chk = cpu::batch_norm_train_check(args);
  const auto& attr = chk.attr;
  const ChannelGeom& g = chk.g;
  const TensorRef& x = args.in[0];
  if (g.c == 0 || dry(args)) return no_op_kernel();
  const T* px = x.as<const T>();
  const T* pw = args.in[1].as<const T>();
  const T* pb = args.in[2].as<const T>();
  T* py = args.out[0].as<T>();
  T* pmean = args.out[1].as<T>();
  T* pvar = args.out[2].as<T>();
  const double eps = attr.eps;
  cudaStream_t s = stream_of(args);
  const int64_t n = g.n, c = g.c, inner = g.inner, count = g.count;
  if (count == 0) {  // an empty batch: NaN statistics (0/0, as the reference)
    const T nan = static_cast<T>(NAN);
    return [=]() {
      fill_two<T><<<blocks_for(c), kThreads, 0, s>>>(pmean, pvar, c, nan);
      GRAPHC_CUDA_LAUNCH_CHECK("batch_norm_train");
    };
  }
  const unsigned grid = static_cast<unsigned>(std::min<int64_t>(c, int64_t(1) << 20));
  return [=]() {
    bn_train_channels<T><<<grid, kChannelThreads, 0, s>>>(px, pw, pb, py, pmean, pvar, n, c, inner, count,
                                                           eps);
    GRAPHC_CUDA_LAUNCH_CHECK("batch_norm_train");
  };
}

template <class T>
__global__ void bn_grad_channels(const T* __restrict__ dy, const T* __restrict__ x, const T* __restrict__ w,
                                 const T* __restrict__ mean_in, const T* __restrict__ var_in,
                                 const T* __restrict__ dmean, const T* __restrict__ dvar, T* __restrict__ dx,
                                 T* __restrict__ dw_out, T* __restrict__ db_out, int64_t n, int64_t c,
                                 int64_t inner, int64_t count, double eps) {
  const RowBlock g;
  const double cnt = static_cast<double>(count);
  for (int64_t ch = blockIdx.x; ch < c; ch += gridDim.x) {
    const double mean = static_cast<double>(mean_in[ch]);
    const double invstd = 1.0 / sqrt(static_cast<double>(var_in[ch]) + eps);
    double sdb = 0.0, sdx = 0.0;
    each_owned(ch, n, c, inner, [&](int64_t i) {
      const double d = static_cast<double>(dy[i]);
      sdb += d;
      sdx += mul_rn(d, static_cast<double>(x[i]) - mean);
    });
    const double db = g.sum(sdb);
    const double dw = mul_rn(g.sum(sdx), invstd);
    const T a = static_cast<T>(mul_rn(static_cast<double>(w[ch]), invstd));
    const T k1 = static_cast<T>(db / cnt), k2 = static_cast<T>(mul_rn(invstd, dw) / cnt);
    const T k3 = static_cast<T>(static_cast<double>(dmean[ch]) / cnt);
    const T k4 = static_cast<T>(mul_rn(2.0, static_cast<double>(dvar[ch])) / cnt);
    const T m = mean_in[ch];
    each_owned(ch, n, c, inner, [&](int64_t i) {
      const T xc = x[i] - m;
      // a·((dy - k1) - xc·k2) + k3 + xc·k4, left to right, each product rounded
      dx[i] = (mul_rn(a, (dy[i] - k1) - mul_rn(xc, k2)) + k3) + mul_rn(xc, k4);
    });
    if (threadIdx.x == 0) {
      dw_out[ch] = static_cast<T>(dw);
      db_out[ch] = static_cast<T>(db);
    }
  }
}

template <class T> Kernel batch_norm_train_grad_kernel(const KernelArgs& args) {
  const auto chk = cpu::batch_norm_train_grad_check(args);
  const auto& attr = chk.attr;
  const ChannelGeom& g = chk.g;
  const TensorRef &dy = args.in[0], &x = args.in[1];
  if (g.c == 0 || dry(args)) return no_op_kernel();
  const T* pdy = dy.as<const T>();
  const T* px = x.as<const T>();
  const T *pw = args.in[2].as<const T>(), *pmean = args.in[3].as<const T>(), *pvar = args.in[4].as<const T>();
  const T *pdmean = args.in[5].as<const T>(), *pdvar = args.in[6].as<const T>();
  T* pdx = args.out[0].as<T>();
  T* pdw = args.out[1].as<T>();
  T* pdb = args.out[2].as<T>();
  const double eps = attr.eps;
  cudaStream_t s = stream_of(args);
  const int64_t n = g.n, c = g.c, inner = g.inner, count = g.count;
  if (count == 0) {  // an empty batch: the sums are 0 (all-zero bits) and dx is empty
    const size_t bytes = static_cast<size_t>(c) * sizeof(T);
    return [=]() {
      GRAPHC_CUDA_CHECK(cudaMemsetAsync(pdw, 0, bytes, s));
      GRAPHC_CUDA_CHECK(cudaMemsetAsync(pdb, 0, bytes, s));
    };
  }
  const unsigned grid = static_cast<unsigned>(std::min<int64_t>(c, int64_t(1) << 20));
  return [=]() {
    bn_grad_channels<T><<<grid, kChannelThreads, 0, s>>>(pdy, px, pw, pmean, pvar, pdmean, pdvar, pdx, pdw, pdb, n,
                                                         c, inner, count, eps);
    GRAPHC_CUDA_LAUNCH_CHECK("batch_norm_train_grad");
  };
}

// In place (outputs are the storage of inputs 0 and 1): item i read before it is written.
template <class T>
__global__ void bn_update_items(const T* rm, const T* rv, const T* mean, const T* var, T* om, T* ov, int64_t c,
                                double m, double n) {
  GRAPHC_GRID_STRIDE(i, c) {
    const double keep = 1.0 - m;
    const double new_mean = mul_rn(keep, static_cast<double>(rm[i])) + mul_rn(m, static_cast<double>(mean[i]));
    const double unbiased = mul_rn(static_cast<double>(var[i]), n) / (n - 1);
    const double new_var = mul_rn(keep, static_cast<double>(rv[i])) + mul_rn(m, unbiased);
    om[i] = static_cast<T>(new_mean);
    ov[i] = static_cast<T>(new_var);
  }
}

template <class T> Kernel batch_norm_update_stats_kernel(const KernelArgs& args) {
  const auto chk = cpu::batch_norm_update_stats_check(args);
  const auto& attr = chk.attr;
  const int64_t c = chk.c;
  const TensorRef& rm = args.in[0];
  if (c == 0 || dry(args)) return no_op_kernel();
  const T *prm = rm.as<const T>(), *prv = args.in[1].as<const T>();
  const T *pmean = args.in[2].as<const T>(), *pvar = args.in[3].as<const T>();
  T* om = args.out[0].as<T>();
  T* ov = args.out[1].as<T>();
  const double m = attr.momentum, n = static_cast<double>(attr.count);
  cudaStream_t s = stream_of(args);
  return [=]() {
    bn_update_items<T><<<blocks_for(c), kThreads, 0, s>>>(prm, prv, pmean, pvar, om, ov, c, m, n);
    GRAPHC_CUDA_LAUNCH_CHECK("batch_norm_update_stats");
  };
}

}  // namespace

void register_norm_kernels(KernelRegistry& r) {
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

}  // namespace cuda
}  // namespace graphc
