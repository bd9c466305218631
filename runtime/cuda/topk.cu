// topk.cu — the CUDA twin of runtime/cpu/topk.cc: topk, take_along_axis, take_along_axis_grad.
//
// Lines are the n items x[o, :, i] ((outer, n, inner) around the axis), as on the CPU.
//
//   topk, n <= kSortMax (4096) — one block per line: the line's (key, index) pairs go to shared
//       memory (key: cpu/topk.cc's order_key, so ascending (key, index) is topk's order, NaN above
//       +inf, -0.0 tied with 0.0, ties by the lower index) and a bitonic network (the all-ascending
//       form: a pair whose partner lies past n is left alone, so any n works) sorts them; the first
//       k are written.  sorted=False: the k are sorted again by index (the CPU's order).
//   topk, n > kSortMax — one block per line, a radix select: eight 8-bit passes over the key
//       (four for float32, whose key has zero low bits) with a shared 256-bin histogram find the
//       k-th key K and how many items equal to K are taken (the lowest indices); a compaction
//       pass (block scans, index order) writes the selected indices to the indices output;
//       sorted=True then sorts them by (key, index): in shared memory when k <= 2048, else
//       in place in the output (the same network, one block, keys recomputed from x).
//       The values are gathered last.  The order is a strict total order, so the result is the
//       CPU's exactly.
//   take_along_axis — one thread per output item: the index checked against [0, n) (a bad one is
//       reported through the error slot and skipped), then the gather.
//   take_along_axis_grad — deterministic, no atomics: m <= kGatherM: one thread per dx item
//       summing, in index order j, the g items whose index hits it (the CPU's order and bits);
//       larger m: dx zero-filled, then one thread per line adds its g items in order j (the
//       CPU's loop).  Bad indices are reported and skipped.
#include <cstring>

#include "../cpu/topk_checks.h"
#include "reduce_common.cuh"

namespace graphc {
namespace cuda {
namespace {

constexpr int64_t kSortMax = 4096;  // shared memory: 12 bytes a pair, 48 KiB at most
constexpr int64_t kSelectSortMax = 2048;  // the select kernel's shared sort (it has static shared too)
constexpr int kSelectThreads = 256;

// the line geometry and the checks: cpu/topk_checks.h (as the CPU's)
using cpu::Lines;
using cpu::lines_of;
using cpu::with_axis;

// -- topk: keys and the sorting network ----------------------------------------------------------

// cpu/topk.cc order_key's order on the device: an unsigned key that orders like the value
// (NaN above +inf, -0.0 tied with 0.0), inverted for largest.  float32's key is 32 bits in the
// high half (its low half is 0 either way, so the radix select skips those digits).
template <class T> __device__ inline uint64_t order_key(T v, bool largest) {
  if (v == T(0)) v = T(0);  // -0.0 ties with 0.0
  if constexpr (sizeof(T) == 4) {
    uint32_t bits = ~0u;
    if (v == v) {
      bits = __float_as_uint(v);
      bits = (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
    }
    if (largest) bits = ~bits;
    return uint64_t(bits) << 32;
  } else {
    uint64_t bits = ~uint64_t(0);
    if (v == v) {
      bits = static_cast<uint64_t>(__double_as_longlong(v));
      bits = (bits & 0x8000000000000000ull) ? ~bits : (bits | 0x8000000000000000ull);
    }
    return largest ? ~bits : bits;
  }
}

// Pair a comes after pair b: by (key, index), or by index alone (kByIndex).
template <bool kByIndex> __device__ inline bool after(uint64_t ka, int64_t ia, uint64_t kb, int64_t ib) {
  if constexpr (kByIndex) {
    return ia > ib;
  } else {
    return ka > kb || (ka == kb && ia > ib);
  }
}

// Sorts pairs (key[t], idx[t]), t < n, ascending, with a bitonic network whose comparators all
// point up (the first step of each stage compares mirrored positions).  A comparator whose
// upper position is >= n is skipped: as if the missing items were +inf.  The block's threads
// share the work; a barrier after each step.  Keys/indices live in memory `Mem` (shared or
// global) through the accessor.
template <bool kByIndex, class Acc> __device__ void bitonic_sort(Acc acc, int64_t n) {
  int64_t pow2 = 1;
  while (pow2 < n) pow2 <<= 1;
  const int64_t half_n = pow2 / 2;
  for (int64_t size = 2; size <= pow2; size <<= 1) {
    for (int64_t stride = size / 2; stride > 0; stride >>= 1) {
      const bool flip = stride == size / 2;
      for (int64_t t = threadIdx.x; t < half_n; t += blockDim.x) {
        const int64_t blk = t / stride, off = t - blk * stride;
        int64_t i, j;
        if (flip) {
          i = blk * size + off;
          j = blk * size + size - 1 - off;
        } else {
          i = blk * 2 * stride + off;
          j = i + stride;
        }
        if (j >= n) continue;
        const uint64_t ki = acc.key(i), kj = acc.key(j);
        const int64_t ii = acc.idx(i), ij = acc.idx(j);
        if (after<kByIndex>(ki, ii, kj, ij)) {
          acc.set(i, kj, ij);
          acc.set(j, ki, ii);
        }
      }
      __syncthreads();
    }
  }
}

struct SharedPairs {
  uint64_t* keys;
  int32_t* ids;
  __device__ uint64_t key(int64_t t) const { return keys[t]; }
  __device__ int64_t idx(int64_t t) const { return ids[t]; }
  __device__ void set(int64_t t, uint64_t k, int64_t i) const {
    keys[t] = k;
    ids[t] = static_cast<int32_t>(i);
  }
};

// The selected indices in the indices output (stride `inner`), keys recomputed from the line.
template <class T> struct GlobalPairs {
  const T* line;  // x + o * n * inner + i
  int64_t* out;   // indices + o * k * inner + i
  int64_t inner;
  bool largest;
  __device__ uint64_t key(int64_t t) const { return order_key(line[out[t * inner] * inner], largest); }
  __device__ int64_t idx(int64_t t) const { return out[t * inner]; }
  __device__ void set(int64_t t, uint64_t, int64_t i) const { out[t * inner] = i; }
};

// Small lines: one block per line (grid-stride over lines); dynamic shared memory n pairs.
template <class T>
__global__ void topk_sort_kernel(const T* __restrict__ x, T* __restrict__ values, int64_t* __restrict__ indices,
                                 int64_t nlines, int64_t n, int64_t inner, int64_t k, bool largest, bool sorted) {
  extern __shared__ __align__(16) unsigned char smem[];
  SharedPairs sp{reinterpret_cast<uint64_t*>(smem), reinterpret_cast<int32_t*>(smem + n * sizeof(uint64_t))};
  for (int64_t line = blockIdx.x; line < nlines; line += gridDim.x) {
    const int64_t o = line / inner, i = line - o * inner;
    const T* src = x + o * n * inner + i;
    for (int64_t t = threadIdx.x; t < n; t += blockDim.x) sp.set(t, order_key(src[t * inner], largest), t);
    __syncthreads();
    bitonic_sort<false>(sp, n);
    if (!sorted) bitonic_sort<true>(sp, k);  // the k selected, by index (cpu/topk.cc)
    T* dv = values + o * k * inner + i;
    int64_t* di = indices + o * k * inner + i;
    for (int64_t j = threadIdx.x; j < k; j += blockDim.x) {
      const int64_t id = sp.idx(j);
      dv[j * inner] = src[id * inner];  // the item itself: -0.0 and NaN payloads kept
      di[j * inner] = id;
    }
    __syncthreads();  // the next line overwrites the pairs
  }
}

// Exclusive prefix sum of v over the block (kSelectThreads threads); *total gets the sum.
__device__ inline int block_exclusive_scan(int v, int* total) {
  constexpr int NW = kSelectThreads / 32;
  __shared__ int warp_sums[NW + 1];
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
  int incl = v;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const int up = __shfl_up_sync(0xffffffffu, incl, o);
    if (lane >= o) incl += up;
  }
  if (lane == 31) warp_sums[w] = incl;
  __syncthreads();
  if (threadIdx.x == 0) {
    int s = 0;
    for (int q = 0; q < NW; ++q) {
      const int t = warp_sums[q];
      warp_sums[q] = s;
      s += t;
    }
    warp_sums[NW] = s;
  }
  __syncthreads();
  const int res = warp_sums[w] + incl - v;
  *total = warp_sums[NW];
  __syncthreads();  // warp_sums may be reused at once
  return res;
}

// Large lines: one block of kSelectThreads per line (grid-stride); see the file comment.
// Dynamic shared memory: k pairs when sorted and k <= kSelectSortMax, else none.
template <class T>
__global__ void __launch_bounds__(kSelectThreads)
    topk_select_kernel(const T* __restrict__ x, T* __restrict__ values, int64_t* __restrict__ indices, int64_t nlines,
                       int64_t n, int64_t inner, int64_t k, bool largest, bool sorted) {
  extern __shared__ __align__(16) unsigned char smem[];
  __shared__ unsigned int hist[256];
  __shared__ uint64_t s_prefix;
  __shared__ int64_t s_remaining;
  constexpr int kLowDigit = sizeof(T) == 4 ? 4 : 0;  // float32 keys have 32 zero low bits
  for (int64_t line = blockIdx.x; line < nlines; line += gridDim.x) {
    const int64_t o = line / inner, i = line - o * inner;
    const T* src = x + o * n * inner + i;
    int64_t* di = indices + o * k * inner + i;
    // 1. radix select: the k-th smallest key K (1-based rank `remaining` among the candidates)
    uint64_t prefix = 0, mask = 0;
    int64_t remaining = k;
    for (int d = 7; d >= kLowDigit; --d) {
      const int shift = 8 * d;
      for (int b = threadIdx.x; b < 256; b += blockDim.x) hist[b] = 0;
      __syncthreads();
      for (int64_t t = threadIdx.x; t < n; t += blockDim.x) {
        const uint64_t key = order_key(src[t * inner], largest);
        if ((key & mask) == prefix) atomicAdd(&hist[(key >> shift) & 255u], 1u);
      }
      __syncthreads();
      if (threadIdx.x == 0) {
        int64_t before = 0;
        int b = 0;
        for (; b < 255; ++b) {
          if (before + hist[b] >= remaining) break;
          before += hist[b];
        }
        s_prefix = prefix | (uint64_t(b) << shift);
        s_remaining = remaining - before;
      }
      __syncthreads();
      prefix = s_prefix;
      remaining = s_remaining;
      mask |= uint64_t(255) << shift;
      __syncthreads();  // s_prefix / hist reused by the next digit
    }
    const uint64_t K = prefix;  // the k-th key; `remaining` items equal to K are taken
    // 2. compaction in index order: key < K, or key == K among the first `remaining` of them
    int64_t eq_seen = 0, written = 0;
    for (int64_t base = 0; base < n; base += blockDim.x) {
      const int64_t t = base + threadIdx.x;
      uint64_t key = 0;
      if (t < n) key = order_key(src[t * inner], largest);
      const int is_eq = t < n && key == K;
      int eq_total = 0;
      const int eq_before = block_exclusive_scan(is_eq, &eq_total);
      const int sel = t < n && (key < K || (is_eq && eq_seen + eq_before < remaining));
      int sel_total = 0;
      const int slot = block_exclusive_scan(sel, &sel_total);
      if (sel) di[(written + slot) * inner] = t;
      eq_seen += eq_total;
      written += sel_total;
    }
    __syncthreads();  // the indices written are visible to the whole block
    // 3. sorted: by (key, index)
    if (sorted) {
      if (k <= kSelectSortMax) {
        SharedPairs sp{reinterpret_cast<uint64_t*>(smem), reinterpret_cast<int32_t*>(smem + k * sizeof(uint64_t))};
        for (int64_t j = threadIdx.x; j < k; j += blockDim.x) {
          const int64_t id = di[j * inner];
          sp.set(j, order_key(src[id * inner], largest), id);
        }
        __syncthreads();
        bitonic_sort<false>(sp, k);
        for (int64_t j = threadIdx.x; j < k; j += blockDim.x) di[j * inner] = sp.idx(j);
        __syncthreads();
      } else {
        bitonic_sort<false>(GlobalPairs<T>{src, di, inner, largest}, k);
      }
    }
    // 4. the values
    T* dv = values + o * k * inner + i;
    for (int64_t j = threadIdx.x; j < k; j += blockDim.x) dv[j * inner] = src[di[j * inner] * inner];
    __syncthreads();
  }
}

template <class T> Kernel topk_kernel(const KernelArgs& args) {
  const cpu::TopkCheck chk = cpu::topk_check(args);
  const auto& attr = chk.attr;
  const int64_t axis = chk.axis, n = chk.n, k = chk.k;
  const std::vector<int64_t>& out_dims = chk.out_dims;
  const TensorRef &x = args.in[0], &values = args.out[0], &indices = args.out[1];
  const Lines s = lines_of(x.dims, axis);
  if (numel_of(out_dims) == 0) return no_op_kernel();
  if (n > (int64_t(1) << 31) - 1) args.fail("the CUDA topk takes lines of at most 2^31 - 1 items, got " + std::to_string(n));
  const T* px = x.as<const T>();
  T* pv = values.as<T>();
  int64_t* pi = indices.as<int64_t>();
  const bool largest = attr.largest, sorted = attr.sorted;
  const int64_t nlines = s.outer * s.inner, inner = s.inner;
  if (dry(args)) return no_op_kernel();
  cudaStream_t stream = stream_of(args);
  const unsigned grid = grid_for_blocks(nlines);
  if (n <= kSortMax) {
    const size_t smem = static_cast<size_t>(n) * (sizeof(uint64_t) + sizeof(int32_t));
    const int threads = n <= 64 ? 32 : (n <= 512 ? 128 : 256);
    return [=] {
      topk_sort_kernel<T><<<grid, threads, smem, stream>>>(px, pv, pi, nlines, n, inner, k, largest, sorted);
      GRAPHC_CUDA_LAUNCH_CHECK("topk");
    };
  }
  const size_t smem = sorted && k <= kSelectSortMax ? static_cast<size_t>(k) * (sizeof(uint64_t) + sizeof(int32_t)) : 0;
  return [=] {
    topk_select_kernel<T><<<grid, kSelectThreads, smem, stream>>>(px, pv, pi, nlines, n, inner, k, largest, sorted);
    GRAPHC_CUDA_LAUNCH_CHECK("topk");
  };
}

// -- take_along_axis / take_along_axis_grad ----------------------------------------------------

// y[o, j, i] = x[o, idx[o, j, i], i]: one thread per output item.
template <class T>
__global__ void take_along_kernel(const T* __restrict__ x, const int64_t* __restrict__ idx, T* __restrict__ y,
                                  int64_t count, int64_t m, int64_t n, int64_t inner, ErrorSlot* slot, int64_t step) {
  GRAPHC_GRID_STRIDE(p, count) {
    const int64_t id = idx[p];
    if (id < 0 || id >= n) {
      report_error(slot, kIndexOutOfRange, step, id, n);
      continue;
    }
    const int64_t o = p / (m * inner), i = p % inner;
    y[p] = x[(o * n + id) * inner + i];
  }
}

// Every index checked (reported, nothing written): the grad of an empty x with indices.
__global__ void check_indices_kernel(const int64_t* __restrict__ idx, int64_t count, int64_t n, ErrorSlot* slot,
                                     int64_t step) {
  GRAPHC_GRID_STRIDE(p, count) {
    const int64_t id = idx[p];
    if (id < 0 || id >= n) report_error(slot, kIndexOutOfRange, step, id, n);
  }
}

constexpr int64_t kGatherM = 32;

// m <= kGatherM: one thread per dx item (o, r, i) sums the g items that hit it, in order j; the
// r == 0 thread of each line reports the line's bad indices.
template <class T>
__global__ void take_along_grad_gather_kernel(const T* __restrict__ g, const int64_t* __restrict__ idx,
                                              T* __restrict__ dx, int64_t total, int64_t m, int64_t n, int64_t inner,
                                              ErrorSlot* slot, int64_t step) {
  GRAPHC_GRID_STRIDE(p, total) {
    const int64_t i = p % inner, q = p / inner;
    const int64_t r = q % n, o = q / n;
    const int64_t* io = idx + o * m * inner + i;
    const T* go = g + o * m * inner + i;
    T acc = T(0);
    for (int64_t j = 0; j < m; ++j) {
      const int64_t id = io[j * inner];
      if (id == r) acc += go[j * inner];
      if (r == 0 && (id < 0 || id >= n)) report_error(slot, kIndexOutOfRange, step, id, n);
    }
    dx[p] = acc;
  }
}

template <class T> __global__ void zero_kernel(T* __restrict__ y, int64_t n) {
  GRAPHC_GRID_STRIDE(p, n) y[p] = T(0);
}

// Larger m: one thread per line (o, i), its g items added in order j (dx zeroed before).
template <class T>
__global__ void take_along_grad_lines_kernel(const T* __restrict__ g, const int64_t* __restrict__ idx,
                                             T* __restrict__ dx, int64_t outer, int64_t m, int64_t n, int64_t inner,
                                             ErrorSlot* slot, int64_t step) {
  GRAPHC_GRID_STRIDE(line, outer * inner) {
    const int64_t o = line / inner, i = line - o * inner;
    const int64_t* io = idx + o * m * inner + i;
    const T* go = g + o * m * inner + i;
    T* d = dx + o * n * inner + i;
    for (int64_t j = 0; j < m; ++j) {
      const int64_t id = io[j * inner];
      if (id < 0 || id >= n) {
        report_error(slot, kIndexOutOfRange, step, id, n);
        continue;
      }
      d[id * inner] += go[j * inner];
    }
  }
}

template <class T> Kernel take_along_axis_kernel(const KernelArgs& args) {
  const int64_t axis = cpu::take_along_axis_check(args);
  const TensorRef &x = args.in[0], &idx = args.in[1], &y = args.out[0];
  const Lines sx = lines_of(x.dims, axis);
  const int64_t m = idx.dims[axis], count = numel_of(idx);
  if (count == 0) return no_op_kernel();
  const T* px = x.as<const T>();
  const int64_t* pi = idx.as<const int64_t>();
  T* py = y.as<T>();
  if (dry(args)) return no_op_kernel();
  cudaStream_t stream = stream_of(args);
  ErrorSlot* slot = error_slot_of(args);
  const int64_t step = args.ctx.step_index, n = sx.n, inner = sx.inner;
  const unsigned grid = blocks_for(count);
  return [=] {
    take_along_kernel<T><<<grid, kThreads, 0, stream>>>(px, pi, py, count, m, n, inner, slot, step);
    GRAPHC_CUDA_LAUNCH_CHECK("take_along_axis");
  };
}

template <class T> Kernel take_along_axis_grad_kernel(const KernelArgs& args) {
  const int64_t axis = cpu::take_along_axis_grad_check(args);
  const TensorRef &g = args.in[0], &idx = args.in[1], &x = args.in[2], &dx = args.out[0];
  const Lines sx = lines_of(x.dims, axis);
  const int64_t m = idx.dims[axis], count = numel_of(idx), total = numel_of(x);
  if (total == 0 && count == 0) return no_op_kernel();
  const T* pg = g.as<const T>();
  const int64_t* pi = idx.as<const int64_t>();
  T* pd = dx.as<T>();
  if (dry(args)) return no_op_kernel();
  cudaStream_t stream = stream_of(args);
  ErrorSlot* slot = error_slot_of(args);
  const int64_t step = args.ctx.step_index, n = sx.n, inner = sx.inner, outer = sx.outer;
  if (total == 0) {
    // x's axis is empty (its other dims are not, as idx has items): every index is out of range
    const unsigned grid = blocks_for(count);
    return [=] {
      check_indices_kernel<<<grid, kThreads, 0, stream>>>(pi, count, n, slot, step);
      GRAPHC_CUDA_LAUNCH_CHECK("take_along_axis_grad");
    };
  }
  if (count == 0 || m <= kGatherM) {
    const unsigned grid = blocks_for(total);
    if (count == 0) {
      return [=] {
        zero_kernel<T><<<grid, kThreads, 0, stream>>>(pd, total);
        GRAPHC_CUDA_LAUNCH_CHECK("take_along_axis_grad");
      };
    }
    return [=] {
      take_along_grad_gather_kernel<T><<<grid, kThreads, 0, stream>>>(pg, pi, pd, total, m, n, inner, slot, step);
      GRAPHC_CUDA_LAUNCH_CHECK("take_along_axis_grad");
    };
  }
  const unsigned zgrid = blocks_for(total), lgrid = blocks_for(outer * inner);
  return [=] {
    zero_kernel<T><<<zgrid, kThreads, 0, stream>>>(pd, total);
    GRAPHC_CUDA_LAUNCH_CHECK("take_along_axis_grad");
    take_along_grad_lines_kernel<T><<<lgrid, kThreads, 0, stream>>>(pg, pi, pd, outer, m, n, inner, slot, step);
    GRAPHC_CUDA_LAUNCH_CHECK("take_along_axis_grad");
  };
}

}  // namespace

void register_topk_kernels(KernelRegistry& r) {
  add_typed<FloatTypes>(r, "topk", [](auto tag, const KernelArgs& a) {
    return topk_kernel<typename decltype(tag)::type>(a);
  });
  add_typed<AllTypes>(r, "take_along_axis", [](auto tag, const KernelArgs& a) {
    return take_along_axis_kernel<typename decltype(tag)::type>(a);
  });
  add_typed<FloatTypes>(r, "take_along_axis_grad", [](auto tag, const KernelArgs& a) {
    return take_along_axis_grad_kernel<typename decltype(tag)::type>(a);
  });
}

}  // namespace cuda
}  // namespace graphc
