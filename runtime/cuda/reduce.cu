// reduce.cu — the CUDA twin of runtime/cpu/reduce.cc: sum, mean, max, min over axes, sum_to,
// and argmin along one axis.
//
// The factory merges the input's dims exactly as the CPU does (size-1 dims dropped, adjacent
// dims that are all reduced or all kept merged) and picks one of three kernels:
//   rows    — one reduced group that is innermost (each output reduces a contiguous run):
//             one block per (output, split); each thread accumulates items tid, tid + BS, ...
//             (16-byte vector loads when aligned), then a fixed-tree block reduction.  Runs of
//             <= 16 items: one thread per output, walking its run in order (the CPU's order).
//   cols    — one reduced group with kept dims inside it (the reduced axis is not last): a
//             32 x 8 block per (32 adjacent outputs, split); lane x owns output column x, the
//             8 thread rows stride the reduced axis (each step reads 32 contiguous items), then
//             the 8 partials of a column are combined in order through shared memory.
//   general — several reduced groups: one block per output; item r of its reduction is found
//             by decomposing r over the reduced dims (a device stride table), the output's base
//             by decomposing its index over the kept dims.
// Long reductions of few outputs are cut into `splits` fixed chunks whose partials go to the
// step's planned workspace (graphc/ops/reduce.py plans it for target "cuda" with the same
// formula, cuda_reduce_splits), then one block per output combines them in order: two passes,
// no atomics.  Without the workspace (a plan compiled for "cpu") the kernels run in one pass.
// Accumulators are the CPU's (float sums in double, int32 sums in int64, wrapping integer
// sums); max/min propagate NaN; the mean divides in double; an empty input fills the output
// with 0 (sum) or NaN (mean).  Every order is fixed by the shape: two runs give the same bits.
#include <limits>

#include "reduce_common.cuh"

namespace graphc {
namespace cuda {
namespace {

// -- the plan ---------------------------------------------------------------------------------

struct ReducePlan {
  enum Kind { Rows, Cols, General } kind = Rows;
  int64_t outer = 1, red = 1, inner = 1;  // Rows/Cols: (outer, red, inner); General: red = items per output
  int64_t nout = 1;
  Strides<1> kept;  // General: output index -> element offset of its first item
  Strides<1> rmap;  // General: reduced index -> element offset from that first item
  int64_t splits = 1, chunk = 1;
};

// The split rule (graphc/ops/reduce.py cuda_reduce_splits computes the same numbers): only when
// the kernel would otherwise run fewer than kFewUnits blocks, enough chunks to reach about
// kSplitTarget blocks, each at least kRowChunk items (rows) or kColChunk rows of a column tile.
constexpr int64_t kFewUnits = 256, kSplitTarget = 1024, kRowChunk = 4096, kColChunk = 1024, kColTile = 32;
constexpr int64_t kColRows = 8;  // thread rows of the column kernel's block

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

void choose_splits(ReducePlan& p) {
  p.splits = 1;
  p.chunk = p.red;
  if (p.kind == ReducePlan::General) return;
  const int64_t units = p.kind == ReducePlan::Rows ? p.outer : p.outer * ceil_div(p.inner, kColTile);
  const int64_t min_chunk = p.kind == ReducePlan::Rows ? kRowChunk : kColChunk;
  if (units >= kFewUnits) return;
  const int64_t s = std::min(ceil_div(p.red, min_chunk), ceil_div(kSplitTarget, units));
  if (s <= 1) return;
  // chunks of a multiple of 4 items (the vector loads' alignment), then as many as needed
  p.chunk = ceil_div(ceil_div(p.red, s), 4) * 4;
  p.splits = ceil_div(p.red, p.chunk);
}

ReducePlan make_plan(const KernelArgs& args, const std::vector<int64_t>& dims, const std::vector<bool>& reduced) {
  std::vector<int64_t> d, stride;
  std::vector<bool> k;
  const auto cs = cpu::contiguous_strides(dims);
  for (size_t i = 0; i < dims.size(); ++i) {
    if (dims[i] == 1) continue;
    if (!d.empty() && k.back() == reduced[i]) {
      d.back() *= dims[i];
      stride.back() = cs[i];
    } else {
      d.push_back(dims[i]);
      k.push_back(reduced[i]);
      stride.push_back(cs[i]);
    }
  }
  ReducePlan p;
  size_t groups = 0;
  for (bool b : k) groups += b;
  if (groups <= 1) {
    size_t j = 0;
    for (; j < d.size() && !k[j]; ++j) p.outer *= d[j];
    if (j < d.size() && k[j]) p.red = d[j++];
    for (; j < d.size(); ++j) p.inner *= d[j];
    p.kind = p.inner == 1 ? ReducePlan::Rows : ReducePlan::Cols;
    p.nout = p.outer * p.inner;
    choose_splits(p);
    return p;
  }
  p.kind = ReducePlan::General;
  std::vector<int64_t> rdims, kdims;
  std::vector<std::array<int64_t, 1>> rstr, kstr;
  for (size_t j = 0; j < d.size(); ++j) {
    if (k[j]) {
      rdims.push_back(d[j]);
      rstr.push_back({stride[j]});
    } else {
      kdims.push_back(d[j]);
      kstr.push_back({stride[j]});
    }
  }
  p.red = cpu::numel_of(rdims);
  p.nout = cpu::numel_of(kdims);
  p.kept = to_device(args, cpu::StridedLoop<1>::make(kdims, kstr));
  p.rmap = to_device(args, cpu::StridedLoop<1>::make(rdims, rstr));
  choose_splits(p);
  return p;
}

// -- kernels ----------------------------------------------------------------------------------

// 16 bytes of T: one vector load.
template <class T> struct alignas(16) Pack {
  static constexpr int kN = 16 / sizeof(T);
  T v[kN];
};

// Rows: block (output o, split s) of nout * splits; see the file comment.
template <ROp R, class T, class O, int BS, bool kVec>
__global__ void __launch_bounds__(BS) reduce_rows_kernel(const T* __restrict__ x, O* __restrict__ y,
                                                          typename AccOf<T>::type* __restrict__ partial, int64_t nout,
                                                          int64_t red, int64_t chunk, int64_t splits) {
  using A = typename AccOf<T>::type;
  Combine<R> comb;
  for (int64_t b = blockIdx.x; b < nout * splits; b += gridDim.x) {
    const int64_t o = b / splits, s = b - o * splits;
    const int64_t lo = s * chunk, hi = std::min(red, lo + chunk);
    const T* src = x + o * red;
    A acc = identity_of<R, A>();
    if constexpr (kVec) {
      constexpr int W = Pack<T>::kN;  // lo, hi and src are multiples of W items (checked on the host)
      for (int64_t r = lo + int64_t(threadIdx.x) * W; r < hi; r += int64_t(BS) * W) {
        const Pack<T> pk = *reinterpret_cast<const Pack<T>*>(src + r);
#pragma unroll
        for (int q = 0; q < W; ++q) acc = comb(acc, static_cast<A>(pk.v[q]));
      }
    } else {
      for (int64_t r = lo + threadIdx.x; r < hi; r += BS) acc = comb(acc, static_cast<A>(src[r]));
    }
    acc = block_reduce<BS>(acc, comb);
    if (threadIdx.x == 0) {
      if (splits == 1) {
        y[o] = finish_of<R, A, O>(acc, red);
      } else {
        partial[b] = acc;
      }
    }
  }
}

// Short rows (red <= kShortRow): one thread per output, its run in order.
constexpr int64_t kShortRow = 16;
template <ROp R, class T, class O>
__global__ void reduce_short_rows_kernel(const T* __restrict__ x, O* __restrict__ y, int64_t nout, int64_t red) {
  using A = typename AccOf<T>::type;
  Combine<R> comb;
  GRAPHC_GRID_STRIDE(o, nout) {
    const T* src = x + o * red;
    A acc = static_cast<A>(src[0]);
    for (int64_t r = 1; r < red; ++r) acc = comb(acc, static_cast<A>(src[r]));
    if constexpr (R == ROp::Sum || R == ROp::Mean) {
      // the CPU adds the first item to 0 (keeps -0.0 + 0.0 = 0.0 as it does)
      acc = comb(A(0), acc);
    }
    y[o] = finish_of<R, A, O>(acc, red);
  }
}

// General: one block per output (grid-stride), items by decomposition.
template <ROp R, class T, class O, int BS>
__global__ void __launch_bounds__(BS) reduce_general_kernel(const T* __restrict__ x, O* __restrict__ y, int64_t nout,
                                                             int64_t red, Strides<1> kept, Strides<1> rmap) {
  using A = typename AccOf<T>::type;
  Combine<R> comb;
  for (int64_t o = blockIdx.x; o < nout; o += gridDim.x) {
    int64_t base[1];
    kept.offsets(o, base);
    A acc = identity_of<R, A>();
    for (int64_t r = threadIdx.x; r < red; r += BS) {
      int64_t off[1];
      rmap.offsets(r, off);
      acc = comb(acc, static_cast<A>(x[base[0] + off[0]]));
    }
    acc = block_reduce<BS>(acc, comb);
    if (threadIdx.x == 0) y[o] = finish_of<R, A, O>(acc, red);
  }
}

// Cols: block (32 x 8) per (outer index, tile of 32 inner positions, split); see the file comment.
template <ROp R, class T, class O>
__global__ void __launch_bounds__(kColTile * kColRows)
    reduce_cols_kernel(const T* __restrict__ x, O* __restrict__ y, typename AccOf<T>::type* __restrict__ partial,
                       int64_t outer, int64_t red, int64_t inner, int64_t chunk, int64_t splits) {
  using A = typename AccOf<T>::type;
  Combine<R> comb;
  __shared__ A tile[kColRows][kColTile + 1];
  const int64_t ntile = (inner + kColTile - 1) / kColTile;
  const int tx = threadIdx.x, ty = threadIdx.y;
  for (int64_t b = blockIdx.x; b < outer * ntile * splits; b += gridDim.x) {
    const int64_t s = b % splits, t = b / splits;
    const int64_t o = t / ntile, i = (t - o * ntile) * kColTile + tx;
    const int64_t lo = s * chunk, hi = std::min(red, lo + chunk);
    A acc = identity_of<R, A>();
    if (i < inner) {
      const T* src = x + o * red * inner + i;
      for (int64_t r = lo + ty; r < hi; r += kColRows) acc = comb(acc, static_cast<A>(src[r * inner]));
    }
    __syncthreads();  // the previous iteration's readers are done with `tile`
    tile[ty][tx] = acc;
    __syncthreads();
    if (ty == 0 && i < inner) {
      A a = tile[0][tx];
      for (int k = 1; k < kColRows; ++k) a = comb(a, tile[k][tx]);
      const int64_t q = o * inner + i;
      if (splits == 1) {
        y[q] = finish_of<R, A, O>(a, red);
      } else {
        partial[q * splits + s] = a;
      }
    }
  }
}

// Second pass: one block per output combines its `splits` partials (fixed tree).
template <ROp R, class A, class O, int BS>
__global__ void __launch_bounds__(BS) reduce_partials_kernel(const A* __restrict__ partial, O* __restrict__ y,
                                                              int64_t nout, int64_t splits, int64_t red) {
  Combine<R> comb;
  for (int64_t o = blockIdx.x; o < nout; o += gridDim.x) {
    A acc = identity_of<R, A>();
    for (int64_t s = threadIdx.x; s < splits; s += BS) acc = comb(acc, partial[o * splits + s]);
    acc = block_reduce<BS>(acc, comb);
    if (threadIdx.x == 0) y[o] = finish_of<R, A, O>(acc, red);
  }
}

template <class O> __global__ void fill_kernel(O* __restrict__ y, int64_t n, O value) {
  GRAPHC_GRID_STRIDE(i, n) y[i] = value;
}

// -- factories --------------------------------------------------------------------------------

const char* op_name(ROp r) {
  switch (r) {
    case ROp::Sum: return "sum";
    case ROp::Mean: return "mean";
    case ROp::Max: return "max";
    default: return "min";
  }
}

template <ROp R> struct AttrsOf;
template <> struct AttrsOf<ROp::Sum> { using type = attrs::Sum; };
template <> struct AttrsOf<ROp::Mean> { using type = attrs::Mean; };
template <> struct AttrsOf<ROp::Max> { using type = attrs::Max; };
template <> struct AttrsOf<ROp::Min> { using type = attrs::Min; };

template <ROp R, class T, class O, int BS>
Kernel rows_launch(const T* px, O* py, typename AccOf<T>::type* partial, const ReducePlan& p, bool vec,
                   cudaStream_t stream, const char* what) {
  const int64_t nout = p.nout, red = p.red, chunk = p.chunk, splits = p.splits;
  const unsigned grid = grid_for_blocks(nout * splits);
  if (vec) {
    return [=] {
      reduce_rows_kernel<R, T, O, BS, true><<<grid, BS, 0, stream>>>(px, py, partial, nout, red, chunk, splits);
      GRAPHC_CUDA_LAUNCH_CHECK(what);
    };
  }
  return [=] {
    reduce_rows_kernel<R, T, O, BS, false><<<grid, BS, 0, stream>>>(px, py, partial, nout, red, chunk, splits);
    GRAPHC_CUDA_LAUNCH_CHECK(what);
  };
}

template <ROp R, class T, class O>
Kernel reduce_prepared(const KernelArgs& args, const std::vector<bool>& reduced, const std::vector<int64_t>& want) {
  using A = typename AccOf<T>::type;
  const TensorRef &x = args.in[0], &y = args.out[0];
  cpu::reduce_output_check(args, reduced, want, R == ROp::Max || R == ROp::Min);  // no identity
  const char* what = op_name(R);
  const int64_t ny = numel_of(y);
  O* py = y.as<O>();
  if (ny == 0) return no_op_kernel();
  if (numel_of(x) == 0) {
    O fill = O(0);
    if constexpr (R == ROp::Mean) fill = std::numeric_limits<O>::quiet_NaN();
    if (dry(args)) return no_op_kernel();
    cudaStream_t stream = stream_of(args);
    const unsigned grid = blocks_for(ny);
    return [=] {
      fill_kernel<O><<<grid, kThreads, 0, stream>>>(py, ny, fill);
      GRAPHC_CUDA_LAUNCH_CHECK(what);
    };
  }
  ReducePlan p = make_plan(args, x.dims, reduced);
  if (p.nout != ny) args.fail("internal: the reduction plan has " + std::to_string(p.nout) + " outputs, not " + std::to_string(ny));
  // The two-pass split needs the planned workspace; without it (a "cpu" plan) one pass.
  A* partial = nullptr;
  if (p.splits > 1) {
    partial = workspace_or_null<A>(args, 0, p.nout * p.splits);
    if (partial == nullptr) {
      p.splits = 1;
      p.chunk = p.red;
    }
  }
  const T* px = x.as<const T>();
  if (dry(args)) return no_op_kernel();
  cudaStream_t stream = stream_of(args);

  Kernel first;
  if (p.kind == ReducePlan::Rows && p.red <= kShortRow && p.splits == 1) {
    const int64_t nout = p.nout, red = p.red;
    const unsigned grid = blocks_for(nout);
    return [=] {
      reduce_short_rows_kernel<R, T, O><<<grid, kThreads, 0, stream>>>(px, py, nout, red);
      GRAPHC_CUDA_LAUNCH_CHECK(what);
    };
  }
  if (p.kind == ReducePlan::Rows) {
    constexpr int64_t W = Pack<T>::kN;
    const bool vec = p.red % W == 0 && p.chunk % W == 0 && reinterpret_cast<uintptr_t>(px) % 16 == 0;
    const int64_t per_block = p.splits > 1 ? p.chunk : p.red;
    if (per_block <= 128) {
      first = rows_launch<R, T, O, 32>(px, py, partial, p, vec, stream, what);
    } else if (per_block <= 2048) {
      first = rows_launch<R, T, O, 128>(px, py, partial, p, vec, stream, what);
    } else {
      first = rows_launch<R, T, O, 256>(px, py, partial, p, vec, stream, what);
    }
  } else if (p.kind == ReducePlan::Cols) {
    const int64_t outer = p.outer, red = p.red, inner = p.inner, chunk = p.chunk, splits = p.splits;
    const unsigned grid = grid_for_blocks(outer * ceil_div(inner, kColTile) * splits);
    const dim3 block(kColTile, kColRows);
    first = [=] {
      reduce_cols_kernel<R, T, O><<<grid, block, 0, stream>>>(px, py, partial, outer, red, inner, chunk, splits);
      GRAPHC_CUDA_LAUNCH_CHECK(what);
    };
  } else {
    const int64_t nout = p.nout, red = p.red;
    const Strides<1> kept = p.kept, rmap = p.rmap;
    const unsigned grid = grid_for_blocks(nout);
    if (red <= 256) {
      return [=] {
        reduce_general_kernel<R, T, O, 32><<<grid, 32, 0, stream>>>(px, py, nout, red, kept, rmap);
        GRAPHC_CUDA_LAUNCH_CHECK(what);
      };
    }
    return [=] {
      reduce_general_kernel<R, T, O, 256><<<grid, 256, 0, stream>>>(px, py, nout, red, kept, rmap);
      GRAPHC_CUDA_LAUNCH_CHECK(what);
    };
  }
  if (p.splits == 1) return first;
  const int64_t nout = p.nout, splits = p.splits, red = p.red;
  const unsigned grid = grid_for_blocks(nout);
  return [=] {
    first();
    reduce_partials_kernel<R, A, O, 128><<<grid, 128, 0, stream>>>(partial, py, nout, splits, red);
    GRAPHC_CUDA_LAUNCH_CHECK(what);
  };
}

template <ROp R, class T> Kernel reduce_kernel(const KernelArgs& args) {
  const cpu::ReduceAxes r = cpu::reduce_axes<typename AttrsOf<R>::type>(args, cpu::dtype_of<T>());
  return reduce_prepared<R, T, T>(args, r.reduced, r.want);
}

template <class T> Kernel sum_to_kernel(const KernelArgs& args) {
  const cpu::ReduceAxes r = cpu::sum_to_axes(args, cpu::dtype_of<T>());
  return reduce_prepared<ROp::Sum, T, T>(args, r.reduced, r.want);
}

template <ROp R> void add_reduce(KernelRegistry& r, const char* name) {
  add_typed<NumericTypes>(r, name, [](auto tag, const KernelArgs& a) -> Kernel {
    using T = typename decltype(tag)::type;
    return reduce_kernel<R, T>(a);
  });
}

}  // namespace

void register_reduce_kernels(KernelRegistry& r) {
  add_reduce<ROp::Sum>(r, "sum");
  add_reduce<ROp::Mean>(r, "mean");
  add_reduce<ROp::Max>(r, "max");
  add_reduce<ROp::Min>(r, "min");
  add_typed<NumericTypes>(r, "argmin", [](auto tag, const KernelArgs& a) {
    return arg_extremum_kernel<false, typename decltype(tag)::type, attrs::Argmin>(a, "arg-min");
  });
  add_typed<NumericTypes>(r, "sum_to", [](auto tag, const KernelArgs& a) {
    return sum_to_kernel<typename decltype(tag)::type>(a);
  });
}

}  // namespace cuda
}  // namespace graphc
