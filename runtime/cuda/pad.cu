// pad.cu — the CUDA twin of runtime/cpu/pad.cc: pad (constant / reflect / replicate, numpy.pad
// semantics) and its adjoint pad_grad.
//
// The factory validates exactly as make_plan does (same messages), then merges adjacent axes
// that are padded on neither side (an identity map over both) into one, so that a padded image
// batch (N, C, H, W) with pads on H and W only is a rank-3 walk.  The axis table (PadAxes) goes
// to the kernel by value; each thread maps indices with the same formulas as the CPU tables.
//
//  pad_kernel        one thread per output item (grid-stride, 64-bit): decompose the output
//                    index, map each axis to its source index (or the constant border), copy.
//  pad_grad_kernel   one thread per INPUT item (a gather: no atomics, deterministic): per axis
//                    the output indices that read this item form at most 3 ascending ranges
//                    (reflect: b - k, k + b, 2(d-1) - k + b; replicate: one range reaching the
//                    border; constant: k + b), and the thread sums g over their product in
//                    C order of g, from +0 — the CPU's serial order, so the same bits.
#include <cmath>
#include <limits>
#include <string>
#include <type_traits>

#include "../cpu/pad_checks.h"
#include "common.cuh"
#include "pad_items.h"

namespace graphc {
namespace cuda {
namespace {

using namespace pad_items;

using cpu::padded_dims;  // the checks of pad and pad_grad: cpu/pad_checks.h (as the CPU's)

// The merged axis table of a non-empty y (x may be empty only when y is).
PadAxes merge_axes(const KernelArgs& args, const std::vector<int64_t>& xd, const std::vector<int64_t>& pads,
                   const std::string& mode) {
  PadAxes p;
  const int rank = make_pad_axes(xd, pads, mode == "constant" ? kConstant : mode == "reflect" ? kReflect : kReplicate,
                                 &p);
  if (rank > kPadMaxAxes) {
    args.fail("pad over " + std::to_string(rank) + " axes after merging the unpadded ones; the CUDA kernel "
              "takes " + std::to_string(kPadMaxAxes) + " at most");
  }
  return p;
}

template <class T> __global__ void pad_fwd(const PadAxes p, const T* __restrict__ x, T* __restrict__ y, T value,
                                           int64_t n) {
  GRAPHC_GRID_STRIDE(i, n) { y[i] = pad_fwd_item(p, x, value, i); }
}

template <class T> __global__ void pad_bwd(const PadAxes p, const T* __restrict__ g, T* __restrict__ dx, int64_t n) {
  GRAPHC_GRID_STRIDE(i, n) { dx[i] = pad_bwd_item(p, g, i); }
}

template <class T> Kernel pad_kernel(const KernelArgs& args) {
  const cpu::PadHead<T> h = cpu::pad_head<T>(args);
  const attrs::Pad& attr = h.attr;
  const T value = h.value;
  const std::vector<int64_t> yd = padded_dims(args, args.in[0].dims, attr.pads, attr.mode);
  cpu::expect_dims(args, args.out[0], yd, "output");
  const int64_t n = numel_of(yd);
  if (n == 0) return no_op_kernel();
  const PadAxes p = merge_axes(args, args.in[0].dims, attr.pads, attr.mode);
  const T* x = args.in[0].as<const T>();
  T* y = args.out[0].as<T>();
  const cudaStream_t stream = stream_of(args);
  const unsigned blocks = blocks_for(n);
  return [=]() {
    pad_fwd<T><<<blocks, kThreads, 0, stream>>>(p, x, y, value, n);
    GRAPHC_CUDA_LAUNCH_CHECK("pad");
  };
}

template <class T> Kernel pad_grad_kernel(const KernelArgs& args) {
  const attrs::PadGrad attr = cpu::pad_grad_head(args);
  const std::vector<int64_t> yd = padded_dims(args, args.in[1].dims, attr.pads, attr.mode);
  cpu::expect_dims(args, args.in[0], yd, "input 0 (the gradient)");
  const int64_t n = numel_of(args.out[0]);
  if (n == 0) return no_op_kernel();  // x non-empty implies g non-empty (g's dims >= x's)
  const PadAxes p = merge_axes(args, args.in[1].dims, attr.pads, attr.mode);
  const T* g = args.in[0].as<const T>();
  T* dx = args.out[0].as<T>();
  const cudaStream_t stream = stream_of(args);
  const unsigned blocks = blocks_for(n);
  return [=]() {
    pad_bwd<T><<<blocks, kThreads, 0, stream>>>(p, g, dx, n);
    GRAPHC_CUDA_LAUNCH_CHECK("pad_grad");
  };
}

}  // namespace

void register_pad_kernels(KernelRegistry& r) {
  add_typed<AllTypes>(r, "pad", [](auto tag, const KernelArgs& a) {
    return pad_kernel<typename decltype(tag)::type>(a);
  });
  add_typed<FloatTypes>(r, "pad_grad", [](auto tag, const KernelArgs& a) {
    return pad_grad_kernel<typename decltype(tag)::type>(a);
  });
}

}  // namespace cuda
}  // namespace graphc
