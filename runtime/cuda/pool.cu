// pool.cu — the CUDA twin of runtime/cpu/pool.cc: max_pool2d, max_pool2d_gather,
// max_pool2d_grad, avg_pool2d and avg_pool2d_grad over NCHW float tensors (graphc/ops/pool.py
// has the semantics: PyTorch's CPU kernels, floor mode).
//
// Every kernel is a grid-stride loop with one thread per item of its OUTPUT, so nothing is
// scattered and no atomics are needed; each thread walks its window(s) in the CPU's order, so
// the results are the CPU's bits:
//  max_fwd   one thread per pooled item (n, c, oh, ow): the window's argmax with PyTorch's rule
//            (v > max || isnan(v): the last NaN, else the first maximum; a window of -inf gives
//            its first item), then y = source[argmax] (x itself, or g for max_pool2d_gather).
//  max_bwd   one thread per input item (n, c, i, j): over the windows containing it in (oh, ow)
//            row-major order, recompute each window's argmax and add dy there when it is (i, j);
//            from +0 — the CPU's scatter order for that item.
//  avg_fwd   one thread per pooled item: the clipped window's sum in row-major order from +0,
//            divided by the divisor (k_h·k_w with count_include_pad, else the clipped area).
//  avg_bwd   one thread per input item: Σ dy[oh, ow] / divisor(oh, ow) over the windows that
//            contain it, in (oh, ow) order from +0 (the CPU computes the same quotients and adds
//            them into the item in that order).
#include <string>
#include <vector>

#include "../cpu/pool_checks.h"
#include "common.cuh"
#include "pool_items.h"

namespace graphc {
namespace cuda {
namespace {

using namespace pool_items;

// the geometry and the checks: cpu/pool_checks.h (as the CPU's), filling pool_items' PoolGeom
using cpu::pooled_dims;

template <class T>
__global__ void max_fwd(const PoolGeom g, const T* __restrict__ x, const T* __restrict__ src, T* __restrict__ y,
                        int64_t n) {
  GRAPHC_GRID_STRIDE(idx, n) { y[idx] = max_fwd_item(g, x, src, idx); }
}

template <class T>
__global__ void max_bwd(const PoolGeom g, const T* __restrict__ dy, const T* __restrict__ x, T* __restrict__ dx,
                        int64_t n) {
  GRAPHC_GRID_STRIDE(idx, n) { dx[idx] = max_bwd_item(g, dy, x, idx); }
}

template <class T>
__global__ void avg_fwd(const PoolGeom g, bool include_pad, const T* __restrict__ x, T* __restrict__ y, int64_t n) {
  GRAPHC_GRID_STRIDE(idx, n) { y[idx] = avg_fwd_item(g, include_pad, x, idx); }
}

template <class T>
__global__ void avg_bwd(const PoolGeom g, bool include_pad, const T* __restrict__ dy, T* __restrict__ dx, int64_t n) {
  GRAPHC_GRID_STRIDE(idx, n) { dx[idx] = avg_bwd_item(g, include_pad, dy, idx); }
}

// max_pool2d(x) and max_pool2d_gather(g, x): y = source at the max of x's window.
template <class T, class Attr> Kernel max_pool_kernel(const KernelArgs& args, bool gather) {
  const PoolGeom g = cpu::pool_check<Attr, PoolGeom>(args, gather);
  const TensorRef& x = args.in[gather ? 1 : 0];
  const TensorRef& src = args.in[0];
  const int64_t n = numel_of(args.out[0]);
  if (n == 0) return no_op_kernel();
  const T* px = x.as<const T>();
  const T* ps = src.as<const T>();
  T* py = args.out[0].as<T>();
  const cudaStream_t stream = stream_of(args);
  const unsigned blocks = blocks_for(n);
  const char* op = gather ? "max_pool2d_gather" : "max_pool2d";
  return [=]() {
    max_fwd<T><<<blocks, kThreads, 0, stream>>>(g, px, ps, py, n);
    GRAPHC_CUDA_LAUNCH_CHECK(op);
  };
}

// max_pool2d_grad(dy, x): dy added at each window's max, zeros elsewhere.
template <class T> Kernel max_pool_grad_kernel(const KernelArgs& args) {
  const PoolGeom g = cpu::pool_grad_check<attrs::MaxPool2dGrad, PoolGeom>(args);
  const TensorRef &dy = args.in[0], &x = args.in[1];
  const int64_t n = numel_of(x);
  if (n == 0) return no_op_kernel();
  const T* px = x.as<const T>();
  const T* pdy = dy.as<const T>();
  T* pdx = args.out[0].as<T>();
  const cudaStream_t stream = stream_of(args);
  const unsigned blocks = blocks_for(n);
  return [=]() {
    max_bwd<T><<<blocks, kThreads, 0, stream>>>(g, pdy, px, pdx, n);
    GRAPHC_CUDA_LAUNCH_CHECK("max_pool2d_grad");
  };
}

// avg_pool2d(x): the window's sum, in the input dtype in row-major order, / divisor.
template <class T> Kernel avg_pool_kernel(const KernelArgs& args) {
  const PoolGeom g = cpu::pool_check<attrs::AvgPool2d, PoolGeom>(args, false);
  const bool include_pad = attrs::AvgPool2d(args).count_include_pad;
  const TensorRef& x = args.in[0];
  const int64_t n = numel_of(args.out[0]);
  if (n == 0) return no_op_kernel();
  const T* px = x.as<const T>();
  T* py = args.out[0].as<T>();
  const cudaStream_t stream = stream_of(args);
  const unsigned blocks = blocks_for(n);
  return [=]() {
    avg_fwd<T><<<blocks, kThreads, 0, stream>>>(g, include_pad, px, py, n);
    GRAPHC_CUDA_LAUNCH_CHECK("avg_pool2d");
  };
}

// avg_pool2d_grad(dy, x): dy / divisor added over each window; only x's dims are read.
template <class T> Kernel avg_pool_grad_kernel(const KernelArgs& args) {
  const PoolGeom g = cpu::pool_grad_check<attrs::AvgPool2dGrad, PoolGeom>(args);
  const bool include_pad = attrs::AvgPool2dGrad(args).count_include_pad;
  const TensorRef &dy = args.in[0], &x = args.in[1];
  const int64_t n = numel_of(x);
  if (n == 0) return no_op_kernel();
  const T* pdy = dy.as<const T>();
  T* pdx = args.out[0].as<T>();
  const cudaStream_t stream = stream_of(args);
  const unsigned blocks = blocks_for(n);
  return [=]() {
    avg_bwd<T><<<blocks, kThreads, 0, stream>>>(g, include_pad, pdy, pdx, n);
    GRAPHC_CUDA_LAUNCH_CHECK("avg_pool2d_grad");
  };
}

}  // namespace

void register_pool_kernels(KernelRegistry& r) {
  add_typed<FloatTypes>(r, "max_pool2d", [](auto tag, const KernelArgs& a) {
    return max_pool_kernel<typename decltype(tag)::type, attrs::MaxPool2d>(a, false);
  });
  add_typed<FloatTypes>(r, "max_pool2d_gather", [](auto tag, const KernelArgs& a) {
    return max_pool_kernel<typename decltype(tag)::type, attrs::MaxPool2dGather>(a, true);
  });
  add_typed<FloatTypes>(r, "max_pool2d_grad", [](auto tag, const KernelArgs& a) {
    return max_pool_grad_kernel<typename decltype(tag)::type>(a);
  });
  add_typed<FloatTypes>(r, "avg_pool2d", [](auto tag, const KernelArgs& a) {
    return avg_pool_kernel<typename decltype(tag)::type>(a);
  });
  add_typed<FloatTypes>(r, "avg_pool2d_grad", [](auto tag, const KernelArgs& a) {
    return avg_pool_grad_kernel<typename decltype(tag)::type>(a);
  });
}

}  // namespace cuda
}  // namespace graphc
