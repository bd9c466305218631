// reduce_common.cuh — what reduce.cu, scan.cu and fused_reduce.cu share: the accumulator types
// and combine rules of runtime/cpu/reduce.cc, deterministic block reductions, the (outer, n,
// inner) split around one axis, and the arg-min / arg-max kernels.
//
// Determinism: every reduction below combines a fixed set of items per thread in a fixed order,
// then reduces across a block with a fixed tree (warp shuffles down, then thread 0 combines the
// warps' partials in order).  Nothing depends on timing or on atomics, so two runs give the
// same bits.
#pragma once

#include <cstdint>
#include <limits>
#include <type_traits>

#include "../cpu/reduce_checks.h"
#include "common.cuh"

namespace graphc {
namespace cuda {

// The CPU's accumulators (cpu/reduce.cc AccOf): float sums in double, int32 sums in int64.
template <class T> struct AccOf { using type = T; };
template <> struct AccOf<float> { using type = double; };
template <> struct AccOf<int32_t> { using type = int64_t; };

enum class ROp { Sum, Mean, Max, Min };

using cpu::AxisSplit;  // (outer, n, inner) around an axis: cpu/reduce_checks.h
using cpu::split_at;

// Grid for a grid-stride loop over `n` blocks of work (never 0 blocks, at most 2^31 - 1).
inline unsigned grid_for_blocks(int64_t n) {
  return static_cast<unsigned>(std::max<int64_t>(1, std::min<int64_t>(n, (int64_t(1) << 31) - 1)));
}

#if defined(__CUDACC__)

template <class T> __device__ inline bool is_nan_d(T v) {
  if constexpr (std::is_floating_point_v<T>) {
    return v != v;
  } else {
    return false;
  }
}

// a + b, wrapping for integers (as numpy; signed overflow is undefined in C++).
template <class A> __device__ inline A wrap_add_d(A a, A b) {
  if constexpr (std::is_integral_v<A>) {
    using U = std::make_unsigned_t<A>;
    return static_cast<A>(static_cast<U>(a) + static_cast<U>(b));
  } else {
    return a + b;
  }
}

// cpu/reduce.cc's combine: sums add (wrapping), max/min propagate NaN (the first one kept).
template <ROp R> struct Combine {
  template <class A> __device__ A operator()(A acc, A v) const {
    if constexpr (R == ROp::Max || R == ROp::Min) {
      if constexpr (std::is_floating_point_v<A>) {
        if (acc != acc) return acc;
        if (v != v) return v;
      }
      if constexpr (R == ROp::Max) {
        return v > acc ? v : acc;
      } else {
        return v < acc ? v : acc;
      }
    } else {
      return wrap_add_d(acc, v);
    }
  }
};

// The value that changes nothing when combined: 0 for sums, -inf/+inf (lowest/max) for max/min.
template <ROp R, class A> __device__ inline A identity_of() {
  if constexpr (R == ROp::Max) {
    if constexpr (std::is_floating_point_v<A>) {
      return -std::numeric_limits<A>::infinity();
    } else {
      return std::numeric_limits<A>::lowest();
    }
  } else if constexpr (R == ROp::Min) {
    if constexpr (std::is_floating_point_v<A>) {
      return std::numeric_limits<A>::infinity();
    } else {
      return std::numeric_limits<A>::max();
    }
  } else {
    return A(0);
  }
}

// cpu/reduce.cc's finish: mean divides in double.
template <ROp R, class A, class O> __device__ inline O finish_of(A acc, int64_t n) {
  if constexpr (R == ROp::Mean) {
    return static_cast<O>(static_cast<double>(acc) / static_cast<double>(n));
  } else {
    return static_cast<O>(acc);
  }
}

// Reduction of `v` over a warp into lane 0 (a fixed tree: deterministic).  Lanes above the
// tree's reach read their own value back and hold garbage; only lane 0's result is used.
template <class A, class Op> __device__ inline A warp_reduce_to_lane0(A v, Op op) {
  for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_down_sync(0xffffffffu, v, o));
  return v;
}

// Reduction of `v` over a block of BS threads (BS a multiple of 32, <= 1024); the result is
// valid in thread 0.  Every thread must call it (it synchronises); it may be called again
// at once (its shared buffer is protected by the leading barrier).
template <int BS, class A, class Op> __device__ inline A block_reduce(A v, Op op) {
  static_assert(BS % 32 == 0 && BS <= 1024, "block size");
  v = warp_reduce_to_lane0(v, op);
  if constexpr (BS == 32) {
    return v;
  } else {
    __shared__ A part[BS / 32];
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    __syncthreads();
    if (lane == 0) part[w] = v;
    __syncthreads();
    if (threadIdx.x == 0) {
      v = part[0];
      for (int i = 1; i < BS / 32; ++i) v = op(v, part[i]);
    }
    return v;
  }
}

// -- arg-min / arg-max -------------------------------------------------------------------

// A candidate of an arg reduction: the value and its index along the axis.
template <class T> struct ArgItem {
  T v;
  int64_t i;
};

// a comes before b in the arg-extremum order: the better value (NaN counts as the best, as
// numpy: the first NaN wins), then the lower index.  A strict total order, so any reduction
// tree picks the CPU's item: the first best.
template <bool kMax, class T> struct ArgBetter {
  __device__ bool operator()(const ArgItem<T>& a, const ArgItem<T>& b) const {
    const bool na = is_nan_d(a.v), nb = is_nan_d(b.v);
    if (na != nb) return na;
    if (!na && a.v != b.v) return kMax ? a.v > b.v : a.v < b.v;
    return a.i < b.i;
  }
};
template <bool kMax, class T> struct ArgCombine {
  __device__ ArgItem<T> operator()(const ArgItem<T>& a, const ArgItem<T>& b) const {
    return ArgBetter<kMax, T>{}(b, a) ? b : a;
  }
};
template <class T> __device__ inline ArgItem<T> shfl_down_item(const ArgItem<T>& a, int o) {
  ArgItem<T> r;
  r.v = __shfl_down_sync(0xffffffffu, a.v, o);
  r.i = __shfl_down_sync(0xffffffffu, a.i, o);
  return r;
}
// The worst item (never chosen over a real one: a real item of equal value has a lower index).
template <bool kMax, class T> __device__ inline ArgItem<T> arg_identity() {
  ArgItem<T> r;
  if constexpr (std::is_floating_point_v<T>) {
    r.v = kMax ? -std::numeric_limits<T>::infinity() : std::numeric_limits<T>::infinity();
  } else {
    r.v = kMax ? std::numeric_limits<T>::lowest() : std::numeric_limits<T>::max();
  }
  r.i = std::numeric_limits<int64_t>::max();
  return r;
}

// Rows (inner == 1): one block of BS threads per row (grid-stride over rows); thread t walks
// items t, t + BS, ... keeping its best, then the block keeps the best of the bests.
template <bool kMax, class T, int BS>
__global__ void __launch_bounds__(BS) arg_rows_kernel(const T* __restrict__ x, int64_t* __restrict__ y,
                                                       int64_t rows, int64_t n) {
  ArgCombine<kMax, T> comb;
  __shared__ ArgItem<T> part[BS / 32];
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const T* src = x + row * n;
    ArgItem<T> best = arg_identity<kMax, T>();
    for (int64_t k = threadIdx.x; k < n; k += BS) best = comb(best, ArgItem<T>{src[k], k});
    for (int o = 16; o > 0; o >>= 1) best = comb(best, shfl_down_item(best, o));
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    __syncthreads();
    if (lane == 0) part[w] = best;
    __syncthreads();
    if (threadIdx.x == 0) {
      best = part[0];
      for (int i = 1; i < BS / 32; ++i) best = comb(best, part[i]);
      y[row] = best.i;
    }
  }
}

// inner > 1: one thread per (outer, inner) position walking the axis in order (the CPU's
// walk); neighbouring threads read neighbouring items, so each step of the walk is coalesced.
template <bool kMax, class T>
__global__ void arg_cols_kernel(const T* __restrict__ x, int64_t* __restrict__ y, int64_t outer, int64_t n,
                                int64_t inner) {
  ArgBetter<kMax, T> better;
  GRAPHC_GRID_STRIDE(p, outer * inner) {
    const int64_t o = p / inner, j = p - o * inner;
    const T* line = x + o * n * inner + j;
    ArgItem<T> best{line[0], 0};
    for (int64_t k = 1; k < n; ++k) {
      const ArgItem<T> c{line[k * inner], k};
      if (better(c, best)) best = c;
    }
    y[p] = best.i;
  }
}
#endif  // __CUDACC__

// argmin / argmax along one axis (the CPU's validation and messages; `what` is "arg-min" or
// "arg-max").  Attr is attrs::Argmin or attrs::Argmax.
template <bool kMax, class T, class Attr> Kernel arg_extremum_kernel(const KernelArgs& args, const char* what);

#if defined(__CUDACC__)
template <bool kMax, class T, class Attr> Kernel arg_extremum_kernel(const KernelArgs& args, const char* what) {
  const int64_t axis = cpu::arg_extremum_axis<Attr>(args, what);  // cpu/reduce_checks.h: the CPU's checks
  const TensorRef &x = args.in[0], &y = args.out[0];
  if (numel_of(x) == 0) return no_op_kernel();
  const AxisSplit s = split_at(x.dims, axis);
  const T* px = x.as<const T>();
  int64_t* py = y.as<int64_t>();
  if (dry(args)) return no_op_kernel();
  cudaStream_t stream = stream_of(args);
  if (s.inner == 1) {
    const int64_t rows = s.outer, n = s.n;
    const unsigned grid = grid_for_blocks(rows);
    if (n <= 64) {
      return [=] {
        arg_rows_kernel<kMax, T, 32><<<grid, 32, 0, stream>>>(px, py, rows, n);
        GRAPHC_CUDA_LAUNCH_CHECK(kMax ? "argmax" : "argmin");
      };
    }
    if (n <= 1024) {
      return [=] {
        arg_rows_kernel<kMax, T, 128><<<grid, 128, 0, stream>>>(px, py, rows, n);
        GRAPHC_CUDA_LAUNCH_CHECK(kMax ? "argmax" : "argmin");
      };
    }
    return [=] {
      arg_rows_kernel<kMax, T, 256><<<grid, 256, 0, stream>>>(px, py, rows, n);
      GRAPHC_CUDA_LAUNCH_CHECK(kMax ? "argmax" : "argmin");
    };
  }
  const int64_t outer = s.outer, n = s.n, inner = s.inner;
  const unsigned grid = blocks_for(outer * inner);
  return [=] {
    arg_cols_kernel<kMax, T><<<grid, kThreads, 0, stream>>>(px, py, outer, n, inner);
    GRAPHC_CUDA_LAUNCH_CHECK(kMax ? "argmax" : "argmin");
  };
}
#endif  // __CUDACC__

}  // namespace cuda
}  // namespace graphc
