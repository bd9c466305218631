// scan.cu — the CUDA twin of runtime/cpu/scan.cc: tril / triu, cumsum and argmax.
//
//   tril/triu — one thread per item (grid-stride): its row i inside the matrix and column j
//               decide keep or zero, with the CPU's overflow-free cut.
//   cumsum    — lines (outer, inner) around the axis.  inner > 1, or short lines: one thread per
//               line walking the axis in order (the CPU's arithmetic exactly; neighbouring
//               threads read neighbouring items).  inner == 1 and n > kShortLine: one block per
//               row, tiles of BS * kItems items: each thread scans kItems consecutive items in
//               order, a warp scan (shuffles) and the warps' totals give each thread its prefix,
//               the tile's total carries into the next tile; deterministic (a fixed tree), the
//               first item copied exactly (no 0 + x: -0.0 kept), integers wrap as numpy.
//   argmax    — reduce_common.cuh's arg kernels: a block per row (inner == 1), else a thread per
//               (outer, inner) position; the first maximum, the first NaN wins (numpy).
#include "reduce_common.cuh"

namespace graphc {
namespace cuda {
namespace {

// -- tril / triu ------------------------------------------------------------------------------

template <class T, bool kUpper>
__global__ void tri_kernel_d(const T* __restrict__ x, T* __restrict__ y, int64_t total, int64_t rows_n, int64_t cols,
                             int64_t diagonal) {
  GRAPHC_GRID_STRIDE(p, total) {
    const int64_t r = p / cols, j = p - r * cols;
    const int64_t i = r % rows_n;
    int64_t cut;
    if (kUpper) {
      cut = diagonal <= -i ? 0 : (diagonal >= cols - i ? cols : i + diagonal);  // first kept
    } else {
      cut = diagonal < -i ? 0 : (diagonal >= cols - i - 1 ? cols : i + diagonal + 1);  // first dropped
    }
    const bool keep = kUpper ? j >= cut : j < cut;
    y[p] = keep ? x[p] : T(0);
  }
}

template <class T, bool kUpper> Kernel tri_kernel(const KernelArgs& args) {
  const int64_t diagonal = cpu::tri_check(args, kUpper);  // cpu/reduce_checks.h: the CPU's checks
  const TensorRef &x = args.in[0], &y = args.out[0];
  const int64_t rank = static_cast<int64_t>(x.dims.size());
  const int64_t rows_n = x.dims[rank - 2], cols = x.dims[rank - 1];
  const int64_t total = numel_of(x);
  if (total == 0) return no_op_kernel();
  const T* px = x.as<const T>();
  T* py = y.as<T>();
  if (dry(args)) return no_op_kernel();
  cudaStream_t stream = stream_of(args);
  const unsigned grid = blocks_for(total);
  return [=] {
    tri_kernel_d<T, kUpper><<<grid, kThreads, 0, stream>>>(px, py, total, rows_n, cols, diagonal);
    GRAPHC_CUDA_LAUNCH_CHECK(kUpper ? "triu" : "tril");
  };
}

// -- cumsum -----------------------------------------------------------------------------------

// One thread per line (o, j): the CPU's walk.
template <class T>
__global__ void cumsum_lines_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t outer, int64_t n,
                                    int64_t inner, bool exclusive, bool reverse) {
  GRAPHC_GRID_STRIDE(p, outer * inner) {
    const int64_t o = p / inner, j = p - o * inner;
    const T* xo = x + o * n * inner + j;
    T* yo = y + o * n * inner + j;
    auto at = [&](int64_t k) { return (reverse ? n - 1 - k : k) * inner; };
    if (exclusive) {
      yo[at(0)] = T(0);
      if (n > 1) {
        T run = xo[at(0)];
        yo[at(1)] = run;
        for (int64_t k = 2; k < n; ++k) {
          run = wrap_add_d(run, xo[at(k - 1)]);
          yo[at(k)] = run;
        }
      }
    } else {
      T run = xo[at(0)];
      yo[at(0)] = run;
      for (int64_t k = 1; k < n; ++k) {
        run = wrap_add_d(run, xo[at(k)]);
        yo[at(k)] = run;
      }
    }
  }
}

constexpr int64_t kShortLine = 64;
constexpr int kScanThreads = 256, kScanItems = 8;

// inner == 1: one block per row (grid-stride over rows); see the file comment.
template <class T>
__global__ void __launch_bounds__(kScanThreads) cumsum_rows_kernel(const T* __restrict__ x, T* __restrict__ y,
                                                                   int64_t rows, int64_t n, bool exclusive,
                                                                   bool reverse) {
  constexpr int BS = kScanThreads, ITEMS = kScanItems, NW = BS / 32;
  __shared__ T warp_total[NW];
  __shared__ T tile_carry;
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const T* xr = x + row * n;
    T* yr = y + row * n;
    auto pos = [&](int64_t k) { return reverse ? n - 1 - k : k; };
    T carry = T(0);
    bool has_carry = false;  // the same in every thread
    for (int64_t base = 0; base < n; base += int64_t(BS) * ITEMS) {
      const int64_t k0 = base + int64_t(threadIdx.x) * ITEMS;
      T v[ITEMS];
      T total = T(0);
      bool any = false;
#pragma unroll
      for (int q = 0; q < ITEMS; ++q) {
        const int64_t k = k0 + q;
        if (k < n) {
          const T xv = xr[pos(k)];
          total = any ? wrap_add_d(total, xv) : xv;
          any = true;
        }
        v[q] = total;
      }
      // inclusive scan of the thread totals over the warp (threads past the end add 0 after
      // every real one: they change no real prefix)
      T incl = total;
#pragma unroll
      for (int o = 1; o < 32; o <<= 1) {
        const T up = __shfl_up_sync(0xffffffffu, incl, o);
        if (lane >= o) incl = wrap_add_d(up, incl);
      }
      const T excl_lane = __shfl_up_sync(0xffffffffu, incl, 1);  // lane 0: none
      if (lane == 31) warp_total[w] = incl;
      __syncthreads();
      // the prefix of this warp: the carry, then the earlier warps' totals, in order
      bool has_wpre = has_carry;
      T wpre = carry;
      for (int i = 0; i < w; ++i) {
        wpre = has_wpre ? wrap_add_d(wpre, warp_total[i]) : warp_total[i];
        has_wpre = true;
      }
      const bool has_pre = has_wpre || lane > 0;
      T pre = excl_lane;
      if (has_wpre) pre = lane > 0 ? wrap_add_d(wpre, excl_lane) : wpre;
#pragma unroll
      for (int q = 0; q < ITEMS; ++q) {
        const int64_t k = k0 + q;
        if (k < n) {
          const T out = has_pre ? wrap_add_d(pre, v[q]) : v[q];
          if (!exclusive) {
            yr[pos(k)] = out;
          } else if (k + 1 < n) {
            yr[pos(k + 1)] = out;
          }
        }
      }
      if (exclusive && base == 0 && threadIdx.x == 0) yr[pos(0)] = T(0);
      __syncthreads();  // every thread has read warp_total and the carry
      if (threadIdx.x == BS - 1) tile_carry = has_pre ? wrap_add_d(pre, total) : total;
      __syncthreads();
      carry = tile_carry;
      has_carry = true;
    }
  }
}

template <class T> Kernel cumsum_kernel(const KernelArgs& args) {
  const cpu::CumsumCheck chk = cpu::cumsum_check(args);  // cpu/reduce_checks.h: the CPU's checks
  const attrs::Cumsum& attr = chk.attr;
  const AxisSplit s = chk.s;
  const TensorRef &x = args.in[0], &y = args.out[0];
  if (numel_of(x) == 0) return no_op_kernel();
  const bool exclusive = attr.exclusive, reverse = attr.reverse;
  const T* px = x.as<const T>();
  T* py = y.as<T>();
  if (dry(args)) return no_op_kernel();
  cudaStream_t stream = stream_of(args);
  const int64_t outer = s.outer, n = s.n, inner = s.inner;
  if (inner > 1 || n <= kShortLine) {
    const unsigned grid = blocks_for(outer * inner);
    return [=] {
      cumsum_lines_kernel<T><<<grid, kThreads, 0, stream>>>(px, py, outer, n, inner, exclusive, reverse);
      GRAPHC_CUDA_LAUNCH_CHECK("cumsum");
    };
  }
  const unsigned grid = grid_for_blocks(outer);
  return [=] {
    cumsum_rows_kernel<T><<<grid, kScanThreads, 0, stream>>>(px, py, outer, n, exclusive, reverse);
    GRAPHC_CUDA_LAUNCH_CHECK("cumsum");
  };
}

}  // namespace

void register_scan_kernels(KernelRegistry& r) {
  add_typed<AllTypes>(r, "tril", [](auto tag, const KernelArgs& a) {
    return tri_kernel<typename decltype(tag)::type, false>(a);
  });
  add_typed<AllTypes>(r, "triu", [](auto tag, const KernelArgs& a) {
    return tri_kernel<typename decltype(tag)::type, true>(a);
  });
  add_typed<NumericTypes>(r, "cumsum", [](auto tag, const KernelArgs& a) {
    return cumsum_kernel<typename decltype(tag)::type>(a);
  });
  add_typed<NumericTypes>(r, "argmax", [](auto tag, const KernelArgs& a) {
    return arg_extremum_kernel<true, typename decltype(tag)::type, attrs::Argmax>(a, "arg-max");
  });
}

}  // namespace cuda
}  // namespace graphc
