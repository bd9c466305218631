// nn_rows.cuh — helpers of NN's kernel files (nn.cu, layer_norm.cu, norm.cu): rounded products
// that nvcc cannot contract into an FMA, and deterministic row reductions by a warp or a block.
//
// A "row group" is the set of threads that own one row: a warp (RowWarp: lanes 0..31 of a warp,
// rows assigned warp by warp over the grid) or a whole block (RowBlock).  sum/max combine every
// thread's partial in one fixed tree (warp shuffles, then the warps' results in warp order), so
// a result depends on the row length and the launch shape only: two runs give the same bits.
#pragma once

#include "common.cuh"

namespace graphc {
namespace cuda {

#if defined(__CUDACC__)
// a·b rounded once, never fused with a following add (the CPU builds with -ffp-contract=off).
__device__ inline float mul_rn(float a, float b) { return __fmul_rn(a, b); }
__device__ inline double mul_rn(double a, double b) { return __dmul_rn(a, b); }

// e^x in T (the CPU's std::exp / exp_value in T): expf for float32, exp for float64.
__device__ inline float exp_t(float x) { return expf(x); }
__device__ inline double exp_t(double x) { return exp(x); }

// The larger of a, b as the CPU's row loops take it (`b > a ? b : a`); a NaN anywhere in a row
// makes the row's sum NaN, so which max a NaN row gets does not change its (NaN) results.
template <class T> __device__ inline T max_keep(T a, T b) { return b > a ? b : a; }

// One warp per row: lane = threadIdx.x % 32; rows id, id + count, ... over the grid's warps.
struct RowWarp {
  static constexpr int kMaxGroupsPerBlock = 32;
  __device__ int lane() const { return threadIdx.x & 31; }
  __device__ int size() const { return 32; }
  __device__ int64_t id() const { return (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) >> 5; }
  __device__ int64_t count() const { return (static_cast<int64_t>(gridDim.x) * blockDim.x) >> 5; }
  __device__ int in_block() const { return threadIdx.x >> 5; }
  __device__ double sum(double v) const { return warp_sum(v); }
  template <class T> __device__ T max(T v) const {
    for (int o = 16; o > 0; o >>= 1) v = max_keep(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
  }
  __device__ void sync() const { __syncwarp(); }
};

// One block per row (blockDim.x a multiple of 32, at most 1024).
struct RowBlock {
  static constexpr int kMaxGroupsPerBlock = 1;
  __device__ int lane() const { return threadIdx.x; }
  __device__ int size() const { return blockDim.x; }
  __device__ int64_t id() const { return blockIdx.x; }
  __device__ int64_t count() const { return gridDim.x; }
  __device__ int in_block() const { return 0; }
  // Every thread gets the block's sum: each warp's shuffle tree, then warp 0 sums the warps'
  // results in warp order.  Two barriers; safe to call again at once (the buffer is reused only
  // after the second barrier of the previous call).
  __device__ double sum(double v) const {
    __shared__ double buf[33];
    v = warp_sum(v);
    const int w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    if ((threadIdx.x & 31) == 0) buf[w] = v;
    __syncthreads();
    if (w == 0) {
      double t = (threadIdx.x < nw) ? buf[threadIdx.x] : 0.0;
      t = warp_sum(t);
      if (threadIdx.x == 0) buf[32] = t;
    }
    __syncthreads();
    const double r = buf[32];
    __syncthreads();
    return r;
  }
  template <class T> __device__ T max(T v) const {
    __shared__ T mbuf[33];
    v = RowWarp().max(v);
    const int w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    if ((threadIdx.x & 31) == 0) mbuf[w] = v;
    __syncthreads();
    if (w == 0) {
      T t = (threadIdx.x < nw) ? mbuf[threadIdx.x] : mbuf[0];
      t = RowWarp().max(t);
      if (threadIdx.x == 0) mbuf[32] = t;
    }
    __syncthreads();
    const T r = mbuf[32];
    __syncthreads();
    return r;
  }
  __device__ void sync() const { __syncthreads(); }
};
#endif  // __CUDACC__

// Launch shapes of the row kernels: a warp per row for rows of at most kWarpRowMax items, else a
// block of kRowBlockThreads per row.
constexpr int64_t kWarpRowMax = 1024;
constexpr int kRowBlockThreads = 512;
constexpr int kWarpsPerBlock = 8;  // RowWarp kernels: 256 threads

inline unsigned row_blocks(int64_t rows, bool warp_rows) {
  const int64_t per = warp_rows ? kWarpsPerBlock : 1;
  const int64_t b = (rows + per - 1) / per;
  return static_cast<unsigned>(std::max<int64_t>(1, std::min<int64_t>(b, int64_t(1) << 20)));
}

}  // namespace cuda
}  // namespace graphc
