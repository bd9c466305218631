// fused_reduce.cu — the CUDA twin of runtime/cpu/fused_reduce.cc: a sum, mean or max over
// trailing axes of an elementwise program's value (the fusion pass's fused_reduce).
//
// Each output reduces one contiguous run of `run` values of the program (trailing axes only).
// One block per (output, split) — reduce.cu's rows kernel with the loads replaced by the
// program's value at the flat index (the device interpreter of cpu::FusedProgram:
// fused_program.cuh's FusedDeviceProgram<T>::eval, ELEM's, passed by value as a
// __grid_constant__ parameter): thread t accumulates values t,
// t + BS, ... of its chunk in the CPU's accumulator (double for float32), a fixed-tree block
// reduction, and for long runs of few outputs the split's partials go to the planned workspace
// (graphc/ops/fused.py plans it for target "cuda" with reduce.py's cuda_reduce_workspace) and a
// second pass combines them in order.  No atomics: two runs give the same bits; the values never
// reach memory.  sum of nothing is 0, mean of nothing NaN (as the CPU).
//
// Built only when fused_program.cuh is there; without it "fused_reduce" is not registered on
// CUDA (the schema test names it).
#include <limits>

#include "reduce_common.cuh"

#if __has_include("fused_program.cuh")
#include "fused_program.cuh"
#define GRAPHC_FUSED_REDUCE_ON_CUDA 1
#endif

namespace graphc {
namespace cuda {

#if defined(GRAPHC_FUSED_REDUCE_ON_CUDA)
namespace {

// reduce.cu's split rule for rows (graphc/ops/reduce.py cuda_reduce_splits).
constexpr int64_t kFewUnits = 256, kSplitTarget = 1024, kRowChunk = 4096;

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Block (output o, split s) of nout * splits.
template <ROp R, class T, class P, int BS>
__global__ void __launch_bounds__(BS) fused_reduce_rows_kernel(const __grid_constant__ P prog, T* __restrict__ y,
                                                                typename AccOf<T>::type* __restrict__ partial,
                                                                int64_t nout, int64_t run, int64_t chunk,
                                                                int64_t splits) {
  using A = typename AccOf<T>::type;
  Combine<R> comb;
  for (int64_t b = blockIdx.x; b < nout * splits; b += gridDim.x) {
    const int64_t o = b / splits, s = b - o * splits;
    const int64_t lo = s * chunk, hi = std::min(run, lo + chunk);
    A acc = identity_of<R, A>();
    for (int64_t r = lo + threadIdx.x; r < hi; r += BS) acc = comb(acc, static_cast<A>(prog.eval(o * run + r)));
    acc = block_reduce<BS>(acc, comb);
    if (threadIdx.x == 0) {
      if (splits == 1) {
        y[o] = finish_of<R, A, T>(acc, run);
      } else {
        partial[b] = acc;
      }
    }
  }
}

template <ROp R, class A, class O, int BS>
__global__ void __launch_bounds__(BS) fused_reduce_partials_kernel(const A* __restrict__ partial, O* __restrict__ y,
                                                                    int64_t nout, int64_t splits, int64_t run) {
  Combine<R> comb;
  for (int64_t o = blockIdx.x; o < nout; o += gridDim.x) {
    A acc = identity_of<R, A>();
    for (int64_t s = threadIdx.x; s < splits; s += BS) acc = comb(acc, partial[o * splits + s]);
    acc = block_reduce<BS>(acc, comb);
    if (threadIdx.x == 0) y[o] = finish_of<R, A, O>(acc, run);
  }
}

template <class T> __global__ void fused_fill_kernel(T* __restrict__ y, int64_t n, T value) {
  GRAPHC_GRID_STRIDE(i, n) y[i] = value;
}

template <ROp R, class T, int BS>
Kernel launch_rows(const FusedDeviceProgram<T>& prog, T* py, typename AccOf<T>::type* partial, int64_t nout, int64_t run,
                   int64_t chunk, int64_t splits, cudaStream_t stream) {
  using A = typename AccOf<T>::type;
  const unsigned grid = grid_for_blocks(nout * splits);
  if (splits == 1) {
    return [=] {
      fused_reduce_rows_kernel<R, T, FusedDeviceProgram<T>, BS><<<grid, BS, 0, stream>>>(prog, py, partial, nout, run, chunk,
                                                                                   splits);
      GRAPHC_CUDA_LAUNCH_CHECK("fused_reduce");
    };
  }
  const unsigned grid2 = grid_for_blocks(nout);
  return [=] {
    fused_reduce_rows_kernel<R, T, FusedDeviceProgram<T>, BS><<<grid, BS, 0, stream>>>(prog, py, partial, nout, run, chunk,
                                                                                 splits);
    GRAPHC_CUDA_LAUNCH_CHECK("fused_reduce");
    fused_reduce_partials_kernel<R, A, T, 128><<<grid2, 128, 0, stream>>>(partial, py, nout, splits, run);
    GRAPHC_CUDA_LAUNCH_CHECK("fused_reduce");
  };
}

template <ROp R, class T>
Kernel launch(const FusedDeviceProgram<T>& prog, T* py, typename AccOf<T>::type* partial, int64_t nout, int64_t run,
              int64_t chunk, int64_t splits, cudaStream_t stream) {
  const int64_t per_block = splits > 1 ? chunk : run;
  if (per_block <= 128) return launch_rows<R, T, 32>(prog, py, partial, nout, run, chunk, splits, stream);
  if (per_block <= 2048) return launch_rows<R, T, 128>(prog, py, partial, nout, run, chunk, splits, stream);
  return launch_rows<R, T, 256>(prog, py, partial, nout, run, chunk, splits, stream);
}

template <class T> Kernel fused_reduce_kernel(const KernelArgs& args) {
  using A = typename AccOf<T>::type;
  const cpu::FusedReduceCheck chk = cpu::fused_reduce_check(args, cpu::dtype_of<T>());  // the CPU's checks
  const attrs::FusedReduce& attr = chk.attr;
  const ROp red = chk.red == cpu::FusedRed::Sum ? ROp::Sum : chk.red == cpu::FusedRed::Mean ? ROp::Mean : ROp::Max;
  const std::vector<int64_t>& value = chk.value;
  const TensorRef& y = args.out[0];
  const FusedDeviceProgram<T> prog = make_fused_program<T>(args, attr.program, 0, false, value, nullptr);
  const int64_t nout = numel_of(y);
  T* py = y.as<T>();
  if (nout == 0) return no_op_kernel();
  const int64_t total = cpu::numel_of(value);
  if (total == 0) {
    const T fill = red == ROp::Mean ? std::numeric_limits<T>::quiet_NaN() : T(0);
    if (dry(args)) return no_op_kernel();
    cudaStream_t stream = stream_of(args);
    const unsigned grid = blocks_for(nout);
    return [=] {
      fused_fill_kernel<T><<<grid, kThreads, 0, stream>>>(py, nout, fill);
      GRAPHC_CUDA_LAUNCH_CHECK("fused_reduce");
    };
  }
  const int64_t run = total / nout;
  // reduce.cu's split for rows: only with the planned workspace
  int64_t splits = 1, chunk = run;
  if (nout < kFewUnits) {
    const int64_t s = std::min(ceil_div(run, kRowChunk), ceil_div(kSplitTarget, nout));
    if (s > 1) {
      chunk = ceil_div(ceil_div(run, s), 4) * 4;
      splits = ceil_div(run, chunk);
    }
  }
  A* partial = nullptr;
  if (splits > 1) {
    partial = workspace_or_null<A>(args, 0, nout * splits);
    if (partial == nullptr) {
      splits = 1;
      chunk = run;
    }
  }
  if (dry(args)) return no_op_kernel();
  cudaStream_t stream = stream_of(args);
  switch (red) {
    case ROp::Sum: return launch<ROp::Sum, T>(prog, py, partial, nout, run, chunk, splits, stream);
    case ROp::Mean: return launch<ROp::Mean, T>(prog, py, partial, nout, run, chunk, splits, stream);
    default: return launch<ROp::Max, T>(prog, py, partial, nout, run, chunk, splits, stream);
  }
}

}  // namespace

void register_fused_reduce_kernels(KernelRegistry& r) {
  add_typed<FloatTypes>(r, "fused_reduce", [](auto tag, const KernelArgs& a) -> Kernel {
    return fused_reduce_kernel<typename decltype(tag)::type>(a);
  });
}

#else  // no device program yet: fused_reduce is not registered on CUDA

void register_fused_reduce_kernels(KernelRegistry& r) { (void)r; }

#endif

}  // namespace cuda
}  // namespace graphc
