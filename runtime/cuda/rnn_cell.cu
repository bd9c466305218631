// rnn_cell.cu — the CUDA twin of runtime/cpu/rnn_cell.cc: the fused LSTM and GRU cells
// (docs/rnn_cell.md).  The gate products are not part of these ops (the plan runs them as
// matmul / fused_matmul steps before the cell: gates = x·W_ihᵀ + h·W_hhᵀ + b), so each cell is
// one elementwise kernel: one thread per (row, column) item of the (N, H) state, grid-stride,
// 32-bit indices when N·H fits; a warp reads 32 consecutive columns of each gate block
// (coalesced).  The activations are elementwise_ops.h's sigmoid_value/tanh_value (GRAPHC_HD:
// the CPU's float32 exp/tanh arithmetic), the combinations the CPU loops' formulas in the same
// order (rnn_cell_loops.inc); nvcc may contract a product and a sum into an FMA, so float32
// results agree with the CPU's within an ulp or so rather than bit for bit.
#include "../cpu/elementwise_ops.h"
#include "../cpu/rnn_cell_checks.h"
#include "common.cuh"

namespace graphc {
namespace cuda {
namespace {

template <class T> __device__ inline T sig(T x) { return cpu::sigmoid_value<T>(x); }
template <class T> __device__ inline T tnh(T x) { return cpu::tanh_value<T>(x); }

// gates (N, 4H) in the order i, f, g, o; c_prev (N, H) -> h, c (N, H).
template <class T, class I>
__global__ void lstm_cell_items(const T* __restrict__ gates, const T* __restrict__ cp, T* __restrict__ h,
                                T* __restrict__ c, I n, I H) {
  for (I t = static_cast<I>(blockIdx.x) * blockDim.x + threadIdx.x; t < n; t += static_cast<I>(gridDim.x) * blockDim.x) {
    const I r = t / H, j = t - r * H;
    const T* g = gates + static_cast<int64_t>(r) * 4 * H + j;
    const T i = sig(g[0]), f = sig(g[H]), gg = tnh(g[2 * static_cast<int64_t>(H)]),
            o = sig(g[3 * static_cast<int64_t>(H)]);
    const T cn = f * cp[t] + i * gg;
    c[t] = cn;
    h[t] = o * tnh(cn);
  }
}

// dh, dc, c_prev, c (N, H), gates (N, 4H) -> dgates (N, 4H), dc_prev (N, H).
template <class T, class I>
__global__ void lstm_cell_grad_items(const T* __restrict__ dh, const T* __restrict__ dc, const T* __restrict__ gates,
                                     const T* __restrict__ cp, const T* __restrict__ c, T* __restrict__ dgates,
                                     T* __restrict__ dcp, I n, I H) {
  const T one = T(1);
  for (I t = static_cast<I>(blockIdx.x) * blockDim.x + threadIdx.x; t < n; t += static_cast<I>(gridDim.x) * blockDim.x) {
    const I r = t / H, j = t - r * H;
    const int64_t g0 = static_cast<int64_t>(r) * 4 * H + j;
    const int64_t h1 = H;
    const T* g = gates + g0;
    const T i = sig(g[0]), f = sig(g[h1]), gg = tnh(g[2 * h1]), o = sig(g[3 * h1]);
    const T th = tnh(c[t]), dht = dh[t];
    const T dct = dc[t] + dht * o * (one - th * th);
    T* d = dgates + g0;
    d[0] = dct * gg * (i * (one - i));
    d[h1] = dct * cp[t] * (f * (one - f));
    d[2 * h1] = dct * i * (one - gg * gg);
    d[3 * h1] = dht * th * (o * (one - o));
    dcp[t] = dct * f;
  }
}

// r, z, n of item (r, j): xw, hw (N, 3H) in the order r, z, n.
template <class T>
__device__ inline void gru_acts(const T* xw, const T* hw, int64_t h1, T* rr, T* z, T* nn) {
  *rr = sig(xw[0] + hw[0]);
  *z = sig(xw[h1] + hw[h1]);
  *nn = tnh(xw[2 * h1] + *rr * hw[2 * h1]);
}

template <class T, class I>
__global__ void gru_cell_items(const T* __restrict__ xw, const T* __restrict__ hw, const T* __restrict__ h,
                               T* __restrict__ out, I n, I H) {
  for (I t = static_cast<I>(blockIdx.x) * blockDim.x + threadIdx.x; t < n; t += static_cast<I>(gridDim.x) * blockDim.x) {
    const I r = t / H, j = t - r * H;
    const int64_t g0 = static_cast<int64_t>(r) * 3 * H + j;
    T ar, az, an;
    gru_acts(xw + g0, hw + g0, static_cast<int64_t>(H), &ar, &az, &an);
    out[t] = an + az * (h[t] - an);
  }
}

template <class T, class I>
__global__ void gru_cell_grad_items(const T* __restrict__ dy, const T* __restrict__ xw, const T* __restrict__ hw,
                                    const T* __restrict__ h, T* __restrict__ dxw, T* __restrict__ dhw,
                                    T* __restrict__ dh, I n, I H) {
  const T one = T(1);
  for (I t = static_cast<I>(blockIdx.x) * blockDim.x + threadIdx.x; t < n; t += static_cast<I>(gridDim.x) * blockDim.x) {
    const I r = t / H, j = t - r * H;
    const int64_t h1 = H;
    const int64_t g0 = static_cast<int64_t>(r) * 3 * H + j;
    T rr, z, nn;
    gru_acts(xw + g0, hw + g0, h1, &rr, &z, &nn);
    const T d = dy[t];
    const T dan = d * (one - z) * (one - nn * nn);
    const T dar = dan * hw[g0 + 2 * h1] * (rr * (one - rr));
    const T daz = d * (h[t] - nn) * (z * (one - z));
    dxw[g0] = dar;
    dxw[g0 + h1] = daz;
    dxw[g0 + 2 * h1] = dan;
    dhw[g0] = dar;
    dhw[g0 + h1] = daz;
    dhw[g0 + 2 * h1] = dan * rr;
    dh[t] = d * z;
  }
}

// Launches kernel<I> over the n·h items with 32-bit indices when they fit.
template <class Launch> Kernel cell_kernel(const KernelArgs& a, int64_t n, int64_t h, const char* op, Launch launch) {
  if (n == 0 || h == 0) return no_op_kernel();
  const int64_t items = n * h;
  cudaStream_t stream = stream_of(a);
  const unsigned blocks = blocks_for(items);
  return [=]() {
    if (items <= INT32_MAX) {
      launch(uint32_t{0}, blocks, stream, static_cast<uint32_t>(items), static_cast<uint32_t>(h));
    } else {
      launch(int64_t{0}, blocks, stream, items, h);
    }
    GRAPHC_CUDA_LAUNCH_CHECK(op);
  };
}

template <class T> Kernel lstm_cell_kernel(const KernelArgs& args) {
  int64_t n = 0, h = 0;
  cpu::lstm_cell_check(args, &n, &h);
  const T* pg = args.in[0].as<const T>();
  const T* pc = args.in[1].as<const T>();
  T* ph = args.out[0].as<T>();
  T* pcn = args.out[1].as<T>();
  return cell_kernel(args, n, h, "lstm_cell", [=](auto idx, unsigned blocks, cudaStream_t s, auto items, auto hh) {
    using I = decltype(idx);
    lstm_cell_items<T, I><<<blocks, kThreads, 0, s>>>(pg, pc, ph, pcn, items, hh);
  });
}

template <class T> Kernel lstm_cell_grad_kernel(const KernelArgs& args) {
  int64_t n = 0, h = 0;
  cpu::lstm_cell_grad_check(args, &n, &h);
  const T* pdh = args.in[0].as<const T>();
  const T* pdc = args.in[1].as<const T>();
  const T* pg = args.in[2].as<const T>();
  const T* pcp = args.in[3].as<const T>();
  const T* pc = args.in[4].as<const T>();
  T* pdg = args.out[0].as<T>();
  T* pdcp = args.out[1].as<T>();
  return cell_kernel(args, n, h, "lstm_cell_grad", [=](auto idx, unsigned blocks, cudaStream_t s, auto items, auto hh) {
    using I = decltype(idx);
    lstm_cell_grad_items<T, I><<<blocks, kThreads, 0, s>>>(pdh, pdc, pg, pcp, pc, pdg, pdcp, items, hh);
  });
}

template <class T> Kernel gru_cell_kernel(const KernelArgs& args) {
  int64_t n = 0, h = 0;
  cpu::gru_cell_check(args, &n, &h);
  const T* px = args.in[0].as<const T>();
  const T* ph = args.in[1].as<const T>();
  const T* pst = args.in[2].as<const T>();
  T* py = args.out[0].as<T>();
  return cell_kernel(args, n, h, "gru_cell", [=](auto idx, unsigned blocks, cudaStream_t s, auto items, auto hh) {
    using I = decltype(idx);
    gru_cell_items<T, I><<<blocks, kThreads, 0, s>>>(px, ph, pst, py, items, hh);
  });
}

template <class T> Kernel gru_cell_grad_kernel(const KernelArgs& args) {
  int64_t n = 0, h = 0;
  cpu::gru_cell_grad_check(args, &n, &h);
  const T* pdy = args.in[0].as<const T>();
  const T* px = args.in[1].as<const T>();
  const T* phw = args.in[2].as<const T>();
  const T* pst = args.in[3].as<const T>();
  T* pdx = args.out[0].as<T>();
  T* pdhw = args.out[1].as<T>();
  T* pdh = args.out[2].as<T>();
  return cell_kernel(args, n, h, "gru_cell_grad", [=](auto idx, unsigned blocks, cudaStream_t s, auto items, auto hh) {
    using I = decltype(idx);
    gru_cell_grad_items<T, I><<<blocks, kThreads, 0, s>>>(pdy, px, phw, pst, pdx, pdhw, pdh, items, hh);
  });
}

}  // namespace

void register_rnn_cell_kernels(KernelRegistry& r) {
  add_typed<FloatTypes>(r, "lstm_cell", [](auto tag, const KernelArgs& a) {
    return lstm_cell_kernel<typename decltype(tag)::type>(a);
  });
  add_typed<FloatTypes>(r, "lstm_cell_grad", [](auto tag, const KernelArgs& a) {
    return lstm_cell_grad_kernel<typename decltype(tag)::type>(a);
  });
  add_typed<FloatTypes>(r, "gru_cell", [](auto tag, const KernelArgs& a) {
    return gru_cell_kernel<typename decltype(tag)::type>(a);
  });
  add_typed<FloatTypes>(r, "gru_cell_grad", [](auto tag, const KernelArgs& a) {
    return gru_cell_grad_kernel<typename decltype(tag)::type>(a);
  });
}

}  // namespace cuda
}  // namespace graphc
