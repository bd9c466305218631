// nn.cu — the CUDA twin of runtime/cpu/nn.cc: softmax, log_softmax, softmax_cross_entropy(_grad),
// relu_grad, one_hot, assign and the optimizer updates (sgd, sgd_momentum, adam).
//
// Kernels (what each thread/block does):
// - softmax/log_softmax, last axis (inner == 1): a warp per row for rows of <= 1024 items (256-thread
//   blocks, rows over the grid's warps) with the row in registers (2, 8 or 32 items a lane: one read,
//   one exp per item, one write); else a 512-thread block per row, three sweeps over the row (max,
//   Σ e^{x-max} in double, write) re-reading it from L1/L2.  The reductions are fixed trees
//   (nn_rows.cuh), so two runs give the same bits.  A non-last axis: one thread per (outer, inner)
//   column running the CPU's three loops (coalesced across inner).
// - softmax_cross_entropy: the same row groups compute each row's log Σ e in double; 'none'
//   writes the row's loss; 'mean'/'sum' write it to a planned float64 workspace (one per row) and
//   one 1024-thread block sums it in a fixed order.  Without the workspace (a plan compiled for
//   the CPU) a single block walks every row and combines its groups' sums in order.
// - softmax_cross_entropy_grad: the same row groups; each thread writes the items it read (the
//   output may alias the logits).
// - A label outside [0, C) is reported through the error slot (the executor raises after the
//   run) and its row is skipped (a reduction counts it as 0).
// - relu_grad, one_hot, sgd, sgd_momentum, adam: grid-stride loops, one item per thread per
//   iteration, the CPU's formula order with the products rounded before any add (mul_rn: no FMA);
//   the updates scale the gradient by grad_scale first (mul_rn, as the CPU).
//   adam reads its step on the device.  assign: one device-to-device copy on the stream.
#include "../cpu/nn_checks.h"
#include "nn_rows.cuh"

namespace graphc {
namespace cuda {
namespace {

using cpu::expect_dims;
using cpu::expect_dtype;
using cpu::normalize_axis;

// ---- softmax / log_softmax ---------------------------------------------------------------

template <class T, bool kLog, class G>
__global__ void softmax_rows(const T* __restrict__ x, T* __restrict__ y, int64_t rows, int64_t n) {
  const G g;
  for (int64_t r = g.id(); r < rows; r += g.count()) {
    const T* src = x + r * n;
    T* dst = y + r * n;
    T m = -INFINITY;
    for (int64_t k = g.lane(); k < n; k += g.size()) m = max_keep(m, src[k]);
    m = g.max(m);
    double s = 0.0;
    for (int64_t k = g.lane(); k < n; k += g.size()) s += static_cast<double>(exp_t(src[k] - m));
    s = g.sum(s);
    if (kLog) {
      const T lse = m + static_cast<T>(log(s));
      for (int64_t k = g.lane(); k < n; k += g.size()) dst[k] = src[k] - lse;
    } else {
      const T inv = static_cast<T>(1.0 / s);
      for (int64_t k = g.lane(); k < n; k += g.size()) dst[k] = exp_t(src[k] - m) * inv;
    }
  }
}

// Rows of n <= 32·VPT items, a warp per row with the row in registers: lane l holds items l,
// l + 32, ... (VPT of them, -inf past the end); one read, one exp per item, one write.
template <class T, bool kLog, int VPT>
__global__ void softmax_warp_regs(const T* __restrict__ x, T* __restrict__ y, int64_t rows, int64_t n) {
  const RowWarp g;
  for (int64_t r = g.id(); r < rows; r += g.count()) {
    const T* src = x + r * n;
    T* dst = y + r * n;
    T v[VPT];
    T m = -INFINITY;
#pragma unroll
    for (int j = 0; j < VPT; ++j) {
      const int64_t k = g.lane() + 32 * j;
      v[j] = k < n ? src[k] : static_cast<T>(-INFINITY);
      m = max_keep(m, v[j]);
    }
    m = g.max(m);
    double s = 0.0;
#pragma unroll
    for (int j = 0; j < VPT; ++j) {
      const int64_t k = g.lane() + 32 * j;
      if (k < n) {
        const T e = exp_t(v[j] - m);
        if (!kLog) v[j] = e;
        s += static_cast<double>(e);
      }
    }
    s = g.sum(s);
    if (kLog) {
      const T lse = m + static_cast<T>(log(s));
#pragma unroll
      for (int j = 0; j < VPT; ++j) {
        const int64_t k = g.lane() + 32 * j;
        if (k < n) dst[k] = v[j] - lse;
      }
    } else {
      const T inv = static_cast<T>(1.0 / s);
#pragma unroll
      for (int j = 0; j < VPT; ++j) {
        const int64_t k = g.lane() + 32 * j;
        if (k < n) dst[k] = v[j] * inv;
      }
    }
  }
}

// A non-last axis: thread t owns column (o, i) of (outer, n, inner) and runs the CPU's loops.
template <class T, bool kLog>
__global__ void softmax_strided(const T* __restrict__ x, T* __restrict__ y, int64_t outer, int64_t n, int64_t inner) {
  GRAPHC_GRID_STRIDE(t, outer * inner) {
    const int64_t o = t / inner, i = t - o * inner;
    const T* src = x + o * n * inner + i;
    T* dst = y + o * n * inner + i;
    T m = src[0];
    for (int64_t k = 1; k < n; ++k) m = max_keep(m, src[k * inner]);
    double s = 0.0;
    for (int64_t k = 0; k < n; ++k) s += static_cast<double>(exp_t(src[k * inner] - m));
    if (kLog) {
      const T lse = m + static_cast<T>(log(s));
      for (int64_t k = 0; k < n; ++k) dst[k * inner] = src[k * inner] - lse;
    } else {
      const T inv = static_cast<T>(1.0 / s);
      for (int64_t k = 0; k < n; ++k) dst[k * inner] = exp_t(src[k * inner] - m) * inv;
    }
  }
}

template <class T, bool kLog> Kernel softmax_kernel(const KernelArgs& args) {
  const cpu::SoftmaxPlan plan = cpu::softmax_plan(args, kLog);
  if (plan.empty) return no_op_kernel();
  const int64_t outer = plan.outer, n = plan.n, inner = plan.inner;
  const TensorRef &x = args.in[0], &y = args.out[0];
  const T* px = x.as<const T>();
  T* py = y.as<T>();
  if (dry(args)) return no_op_kernel();
  cudaStream_t s = stream_of(args);
  const char* what = kLog ? "log_softmax" : "softmax";
  if (inner > 1) {
    return [=]() {
      softmax_strided<T, kLog><<<blocks_for(outer * inner), kThreads, 0, s>>>(px, py, outer, n, inner);
      GRAPHC_CUDA_LAUNCH_CHECK(what);
    };
  }
  if (n <= kWarpRowMax) {
    const unsigned grid = row_blocks(outer, true), threads = kWarpsPerBlock * 32;
    if (n <= 64) {
      return [=]() {
        softmax_warp_regs<T, kLog, 2><<<grid, threads, 0, s>>>(px, py, outer, n);
        GRAPHC_CUDA_LAUNCH_CHECK(what);
      };
    }
    if (n <= 256) {
      return [=]() {
        softmax_warp_regs<T, kLog, 8><<<grid, threads, 0, s>>>(px, py, outer, n);
        GRAPHC_CUDA_LAUNCH_CHECK(what);
      };
    }
    return [=]() {
      softmax_warp_regs<T, kLog, 32><<<grid, threads, 0, s>>>(px, py, outer, n);
      GRAPHC_CUDA_LAUNCH_CHECK(what);
    };
  }
  return [=]() {
    softmax_rows<T, kLog, RowBlock><<<row_blocks(outer, false), kRowBlockThreads, 0, s>>>(px, py, outer, n);
    GRAPHC_CUDA_LAUNCH_CHECK(what);
  };
}

// ---- softmax cross entropy ---------------------------------------------------------------

// The row's max and Σ e^{x - max} (double) as the CPU's row_logsumexp: every thread of g gets them.
template <class T, class G> __device__ void row_max_sum(const G& g, const T* row, int64_t C, T* m_out, double* s_out) {
  T m = -INFINITY;
  for (int64_t k = g.lane(); k < C; k += g.size()) m = max_keep(m, row[k]);
  m = g.max(m);
  double s = 0.0;
  for (int64_t k = g.lane(); k < C; k += g.size()) s += static_cast<double>(exp_t(row[k] - m));
  *m_out = m;
  *s_out = g.sum(s);
}

// The row's label when it is in [0, C); else reported (lane 0) and -1.
template <class L, class G>
__device__ int64_t checked_label(const G& g, const L* labels, int64_t r, int64_t C, ErrorSlot* slot, int64_t step) {
  const int64_t label = static_cast<int64_t>(labels[r]);
  if (label < 0 || label >= C) {
    if (g.lane() == 0) report_error(slot, kIndexOutOfRange, step, label, C);
    return -1;
  }
  return label;
}

// Mode: per_row (y[r] = loss), to `lp` (lp[r] = loss, summed by sce_sum), or, when neither (the
// no-workspace path, launched as ONE block), each group's lane 0 sums its rows and the block
// combines the groups in order into y[0] (divided by rows for 'mean').
template <class T, class L, class G>
__global__ void sce_rows(const T* __restrict__ x, const L* __restrict__ labels, T* __restrict__ y,
                         double* __restrict__ lp, int64_t rows, int64_t C, bool per_row, bool mean, ErrorSlot* slot,
                         int64_t step) {
  const G g;
  double acc = 0.0;  // the no-workspace path's running sum (lane 0)
  for (int64_t r = g.id(); r < rows; r += g.count()) {
    const int64_t label = checked_label(g, labels, r, C, slot, step);
    if (label < 0) {
      if (lp != nullptr && g.lane() == 0) lp[r] = 0.0;
      continue;
    }
    const T* row = x + r * C;
    T m;
    double s;
    row_max_sum(g, row, C, &m, &s);
    const double loss = (static_cast<double>(m) + log(s)) - static_cast<double>(row[label]);
    if (g.lane() == 0) {
      if (per_row) y[r] = static_cast<T>(loss);
      else if (lp != nullptr) lp[r] = loss;
      else acc += loss;
    }
  }
  if (per_row || lp != nullptr) return;
  __shared__ double part[G::kMaxGroupsPerBlock];
  if (g.lane() == 0) part[g.in_block()] = acc;
  __syncthreads();
  if (threadIdx.x == 0) {
    const int groups = G::kMaxGroupsPerBlock == 1 ? 1 : static_cast<int>(blockDim.x >> 5);
    double total = 0.0;
    for (int i = 0; i < groups; ++i) total += part[i];
    y[0] = static_cast<T>(mean ? total / static_cast<double>(rows) : total);
  }
}

// y[0] = Σ lp (one block of 1024 threads: thread t sums items t, t + 1024, ... in order, then the
// block's fixed tree), divided by rows for 'mean' (0 rows: 0/0 = NaN, as the CPU).
template <class T> __global__ void sce_sum(const double* __restrict__ lp, T* __restrict__ y, int64_t rows, bool mean) {
  double s = 0.0;
  for (int64_t r = threadIdx.x; r < rows; r += blockDim.x) s += lp[r];
  s = RowBlock().sum(s);
  if (threadIdx.x == 0) y[0] = static_cast<T>(mean ? s / static_cast<double>(rows) : s);
}

template <class T, class L> Kernel sce_kernel(const KernelArgs& args) {
  const cpu::ScePlan plan = cpu::sce_plan(args);
  const int64_t rows = plan.rows, C = plan.C;
  const bool reduce = plan.reduce, mean = plan.mean;
  const TensorRef &x = args.in[0], &lab = args.in[1], &y = args.out[0];
  if (!reduce && rows == 0) return no_op_kernel();
  const T* px = x.as<const T>();
  const L* pl = lab.as<const L>();
  T* py = y.as<T>();
  double* lp = reduce ? workspace_or_null<double>(args, 0, rows) : nullptr;
  ErrorSlot* slot = error_slot_of(args);
  const int64_t step = args.ctx.step_index;
  if (dry(args)) return no_op_kernel();
  cudaStream_t s = stream_of(args);
  const bool warp = C <= kWarpRowMax;
  const bool single = reduce && lp == nullptr;  // the no-workspace reduction: one block
  const unsigned grid = single ? 1u : row_blocks(rows, warp);
  const unsigned threads = warp ? kWarpsPerBlock * 32 : kRowBlockThreads;
  return [=]() {
    if (rows > 0 || single) {
      if (warp) sce_rows<T, L, RowWarp><<<grid, threads, 0, s>>>(px, pl, py, lp, rows, C, !reduce, mean, slot, step);
      else sce_rows<T, L, RowBlock><<<grid, threads, 0, s>>>(px, pl, py, lp, rows, C, !reduce, mean, slot, step);
      GRAPHC_CUDA_LAUNCH_CHECK("softmax_cross_entropy");
    }
    if (reduce && !single) {
      sce_sum<T><<<1, 1024, 0, s>>>(lp, py, rows, mean);
      GRAPHC_CUDA_LAUNCH_CHECK("softmax_cross_entropy");
    }
  };
}

// (softmax(row) - one_hot(label)) · scale; scale = g[r] ('none'), g[0] ('sum'), g[0] / rows ('mean').
template <class T, class L, class G>
__global__ void sce_grad_rows(const T* x, const L* __restrict__ labels, const T* __restrict__ gin, T* y, int64_t rows,
                              int64_t C, bool per_row, bool mean, ErrorSlot* slot, int64_t step) {
  const G g;
  const T whole = per_row ? T(0) : (mean ? gin[0] / static_cast<T>(rows > 1 ? rows : 1) : gin[0]);
  for (int64_t r = g.id(); r < rows; r += g.count()) {
    const int64_t label = checked_label(g, labels, r, C, slot, step);
    if (label < 0) continue;
    const T* row = x + r * C;
    T* dst = y + r * C;
    const T scale = per_row ? gin[r] : whole;
    T m;
    double sum;
    row_max_sum(g, row, C, &m, &sum);
    g.sync();  // every thread has read the row before any writes it (dst may alias row)
    if constexpr (std::is_same_v<T, float>) {
      const float inv = static_cast<float>(1.0 / sum);
      for (int64_t k = g.lane(); k < C; k += g.size()) {
        const float p = mul_rn(exp_t(row[k] - m), inv);
        dst[k] = k == label ? mul_rn(p - 1.0f, scale) : mul_rn(p, scale);
      }
    } else {
      const double lse = static_cast<double>(m) + log(sum);
      for (int64_t k = g.lane(); k < C; k += g.size()) {
        const T p = static_cast<T>(exp(static_cast<double>(row[k]) - lse));
        dst[k] = mul_rn(p - (k == label ? T(1) : T(0)), scale);
      }
    }
    g.sync();  // the row's writes before the group moves on (no overlap between rows anyway)
  }
}

template <class T, class L> Kernel sce_grad_kernel(const KernelArgs& args) {
  const cpu::ScePlan plan = cpu::sce_grad_plan(args);
  const int64_t rows = plan.rows, C = plan.C;
  const bool per_row = !plan.reduce, mean = plan.mean;
  const TensorRef &x = args.in[0], &lab = args.in[1], &g = args.in[2], &y = args.out[0];
  const T* px = x.as<const T>();
  const L* pl = lab.as<const L>();
  const T* pg = g.as<const T>();
  T* py = y.as<T>();
  if (rows == 0 || C == 0) return no_op_kernel();  // C == 0: every label is out of range, nothing is written
  ErrorSlot* slot = error_slot_of(args);
  const int64_t step = args.ctx.step_index;
  if (dry(args)) return no_op_kernel();
  cudaStream_t s = stream_of(args);
  const bool warp = C <= kWarpRowMax;
  const unsigned grid = row_blocks(rows, warp);
  return [=]() {
    if (warp) {
      sce_grad_rows<T, L, RowWarp><<<grid, kWarpsPerBlock * 32, 0, s>>>(px, pl, pg, py, rows, C, per_row, mean, slot,
                                                                         step);
    } else {
      sce_grad_rows<T, L, RowBlock><<<grid, kRowBlockThreads, 0, s>>>(px, pl, pg, py, rows, C, per_row, mean, slot,
                                                                       step);
    }
    GRAPHC_CUDA_LAUNCH_CHECK("softmax_cross_entropy_grad");
  };
}

// ---- relu_grad ---------------------------------------------------------------------------

template <class T> __global__ void relu_grad_items(const T* g, const T* x, T* y, int64_t n) {
  GRAPHC_GRID_STRIDE(i, n) {
    const T gi = g[i];
    y[i] = x[i] > T(0) ? gi : T(0);
  }
}

template <class T> Kernel relu_grad_kernel(const KernelArgs& args) {
  const int64_t n = cpu::relu_grad_check(args);
  const T* pg = args.in[0].as<const T>();
  const T* px = args.in[1].as<const T>();
  T* py = args.out[0].as<T>();
  if (n == 0 || dry(args)) return no_op_kernel();
  cudaStream_t s = stream_of(args);
  return [=]() {
    relu_grad_items<T><<<blocks_for(n), kThreads, 0, s>>>(pg, px, py, n);
    GRAPHC_CUDA_LAUNCH_CHECK("relu_grad");
  };
}

// ---- optimizer updates (the checks: cpu/nn_checks.h update_check, adam_check) --------------

template <class T> Kernel assign_kernel(const KernelArgs& a) {
  const size_t n = static_cast<size_t>(cpu::update_check(a, 2, 1, 0)) * sizeof(T);
  const void* src = a.in[1].data;
  void* dst = a.out[0].data;
  if (n == 0 || src == dst || dry(a)) return no_op_kernel();
  cudaStream_t s = stream_of(a);
  return [=]() { GRAPHC_CUDA_CHECK(cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToDevice, s)); };
}

template <class T> __global__ void sgd_items(const T* w, const T* g, T* y, int64_t n, T lr, T wd, T gs) {
  GRAPHC_GRID_STRIDE(i, n) {
    const T wi = w[i], gi = mul_rn(g[i], gs);
    y[i] = wd == T(0) ? wi - mul_rn(lr, gi) : wi - mul_rn(lr, gi + mul_rn(wd, wi));
  }
}

template <class T> Kernel sgd_kernel(const KernelArgs& a) {
  const int64_t n = cpu::update_check(a, 2, 1, 0);
  const attrs::SgdUpdate attr(a);
  const T lr = static_cast<T>(attr.lr);
  const T wd = static_cast<T>(attr.weight_decay);
  const T gs = static_cast<T>(attr.grad_scale);
  const T* w = a.in[0].as<const T>();
  const T* g = a.in[1].as<const T>();
  T* y = a.out[0].as<T>();
  if (n == 0 || dry(a)) return no_op_kernel();
  cudaStream_t s = stream_of(a);
  return [=]() {
    sgd_items<T><<<blocks_for(n), kThreads, 0, s>>>(w, g, y, n, lr, wd, gs);
    GRAPHC_CUDA_LAUNCH_CHECK("sgd_update");
  };
}

template <class T>
__global__ void sgd_momentum_items(const T* w, const T* g, const T* v, T* yw, T* yv, int64_t n, T lr, T mu, T wd,
                                   T gs, bool use_wd, bool nesterov) {
  GRAPHC_GRID_STRIDE(i, n) {
    const T wi = w[i], gsi = mul_rn(g[i], gs);
    const T gi = use_wd ? gsi + mul_rn(wd, wi) : gsi;
    const T vi = mul_rn(mu, v[i]) + gi;
    const T step = nesterov ? gi + mul_rn(mu, vi) : vi;
    yv[i] = vi;
    yw[i] = wi - mul_rn(lr, step);
  }
}

template <class T> Kernel sgd_momentum_kernel(const KernelArgs& a) {
  const int64_t n = cpu::update_check(a, 3, 2, 1);
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
  if (n == 0 || dry(a)) return no_op_kernel();
  cudaStream_t s = stream_of(a);
  const bool use_wd = wd != T(0);
  return [=]() {
    sgd_momentum_items<T><<<blocks_for(n), kThreads, 0, s>>>(w, g, v, yw, yv, n, lr, mu, wd, gs, use_wd, nesterov);
    GRAPHC_CUDA_LAUNCH_CHECK("sgd_momentum_update");
  };
}

// mode 0: no decay, 1: L2 into the gradient, 2: decoupled (AdamW); the bias corrections from the
// step, read on the device (it changes every run), exactly as the CPU: c = 1 - b^t in T.
template <class T>
__global__ void adam_items(const T* w, const T* g, const T* m, const T* v, T* yw, T* ym, T* yv, int64_t n,
                           const int64_t* pstep, T lr, T b1, T b2, T one_b1, T one_b2, T eps, T wd, T keep, T gs,
                           int mode) {
  const T t = static_cast<T>(*pstep);
  const T c1 = T(1) - pow(b1, t), c2 = T(1) - pow(b2, t);
  GRAPHC_GRID_STRIDE(i, n) {
    T wi = w[i], gi = mul_rn(g[i], gs);
    if (mode == 2) wi = mul_rn(wi, keep);
    if (mode == 1) gi = gi + mul_rn(wd, wi);
    const T mi = mul_rn(b1, m[i]) + mul_rn(one_b1, gi);
    const T vi = mul_rn(b2, v[i]) + mul_rn(mul_rn(one_b2, gi), gi);
    const T mhat = mi / c1, vhat = vi / c2;
    ym[i] = mi;
    yv[i] = vi;
    yw[i] = wi - mul_rn(lr, mhat) / (sqrt(vhat) + eps);
  }
}

template <class T> Kernel adam_kernel(const KernelArgs& a) {
  const int64_t n = cpu::adam_check(a);
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
  if (n == 0 || dry(a)) return no_op_kernel();
  const T lr_wd = lr * wd;  // a separate statement: the host compiler cannot fuse it with the subtraction
  const T keep = T(1) - lr_wd;
  const T one_b1 = T(1) - b1, one_b2 = T(1) - b2;
  const int mode = decoupled ? 2 : (wd != T(0) ? 1 : 0);
  cudaStream_t s = stream_of(a);
  return [=]() {
    adam_items<T><<<blocks_for(n), kThreads, 0, s>>>(w, g, m, v, yw, ym, yv, n, pstep, lr, b1, b2, one_b1, one_b2, eps,
                                                     wd, keep, gs, mode);
    GRAPHC_CUDA_LAUNCH_CHECK("adam_update");
  };
}

// ---- one_hot -----------------------------------------------------------------------------

// Item j of the (n, depth) output: 1 where the index of its row equals its column.
template <class I, class O> __global__ void one_hot_items(const I* x, O* y, int64_t total, int64_t depth) {
  GRAPHC_GRID_STRIDE(j, total) {
    const int64_t i = j / depth, k = j - i * depth;
    y[j] = static_cast<int64_t>(x[i]) == k ? O(1) : O(0);
  }
}

template <class I, class O> Kernel one_hot_kernel(const KernelArgs& args) {
  const int64_t depth = cpu::one_hot_depth(args);
  const TensorRef &x = args.in[0], &y = args.out[0];
  const int64_t total = numel_of(y);
  if (total == 0 || dry(args)) return no_op_kernel();
  const I* px = x.as<const I>();
  O* py = y.as<O>();
  cudaStream_t s = stream_of(args);
  return [=]() {
    one_hot_items<I, O><<<blocks_for(total), kThreads, 0, s>>>(px, py, total, depth);
    GRAPHC_CUDA_LAUNCH_CHECK("one_hot");
  };
}

template <class Make> void add_label_kernels(KernelRegistry& r, const char* op, size_t n_in, Make make) {
  add_typed<FloatTypes>(r, op, [n_in, make](auto tag, const KernelArgs& a) -> Kernel {
    return cpu::dispatch_labels<typename decltype(tag)::type>(a, n_in, make);
  });
}

}  // namespace

void register_nn_kernels(KernelRegistry& r) {
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
  for (DType t : cpu::schema_dtypes("one_hot")) {
    add_kernel(r, "one_hot", t, [t](const KernelArgs& a) -> Kernel {
      const DType to = cpu::one_hot_out_dtype(a);
      return cpu::dispatch_all(t, [&](auto it) -> Kernel {
        using I = typename decltype(it)::type;
        return cpu::dispatch_all(to, [&](auto ot) -> Kernel { return one_hot_kernel<I, typename decltype(ot)::type>(a); });
      });
    });
  }
}

}  // namespace cuda
}  // namespace graphc
