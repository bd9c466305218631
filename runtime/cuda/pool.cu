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

#include "common.cuh"
#include "pool_items.h"

namespace graphc {
namespace cuda {
namespace {

using namespace pool_items;

// pool_geom of runtime/cpu/pool.cc (same checks, same messages).
template <class Attr> PoolGeom pool_geom(const KernelArgs& a, const TensorRef& x, const std::string& what) {
  const Attr attr(a);
  if (attr.kernel_size.size() != 2 || attr.stride.size() != 2 || attr.padding.size() != 2) {
    a.fail("kernel_size, stride and padding must hold 2 ints each");
  }
  if (x.dims.size() != 4) a.fail(what + " must have rank 4 (N, C, H, W), got shape " + format_dims(x.dims));
  PoolGeom g;
  g.kh = attr.kernel_size[0], g.kw = attr.kernel_size[1];
  g.sh = attr.stride[0], g.sw = attr.stride[1];
  g.ph = attr.padding[0], g.pw = attr.padding[1];
  if (g.kh <= 0 || g.kw <= 0 || g.sh <= 0 || g.sw <= 0) a.fail("kernel_size and stride must be positive");
  if (g.ph < 0 || g.pw < 0 || g.ph > g.kh / 2 || g.pw > g.kw / 2) {
    a.fail("padding must be >= 0 and at most half of kernel_size");
  }
  g.h = x.dims[2], g.w = x.dims[3];
  if (g.h < 1 || g.w < 1 || cpu::checked_add(a, g.h, 2 * g.ph, "H + 2 * padding") < g.kh ||
      cpu::checked_add(a, g.w, 2 * g.pw, "W + 2 * padding") < g.kw) {
    a.fail(what + " of shape " + format_dims(x.dims) + " is smaller than the kernel (the output would be empty)");
  }
  g.ho = (g.h + 2 * g.ph - g.kh) / g.sh + 1;
  g.wo = (g.w + 2 * g.pw - g.kw) / g.sw + 1;
  g.planes = x.dims[0] * x.dims[1];
  return g;
}

std::vector<int64_t> pooled_dims(const TensorRef& x, const PoolGeom& g) { return {x.dims[0], x.dims[1], g.ho, g.wo}; }

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
  args.expect_arity(gather ? 2 : 1, 1);
  const TensorRef& x = args.in[gather ? 1 : 0];
  const TensorRef& src = args.in[0];
  const PoolGeom g = pool_geom<Attr>(args, x, gather ? "input 1 (x)" : "input 0 (x)");
  if (gather) {
    cpu::expect_dtype(args, src, x.dtype, "input 0 (g)");
    cpu::expect_dims(args, src, x.dims, "input 0 (g)");
  }
  cpu::expect_dtype(args, args.out[0], x.dtype, "output");
  cpu::expect_dims(args, args.out[0], pooled_dims(x, g), "output");
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
  args.expect_arity(2, 1);
  const TensorRef &dy = args.in[0], &x = args.in[1];
  const PoolGeom g = pool_geom<attrs::MaxPool2dGrad>(args, x, "input 1 (x)");
  cpu::expect_dtype(args, dy, x.dtype, "input 0 (dy)");
  cpu::expect_dims(args, dy, pooled_dims(x, g), "input 0 (dy)");
  cpu::expect_dtype(args, args.out[0], x.dtype, "output");
  cpu::expect_dims(args, args.out[0], x.dims, "output");
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
  args.expect_arity(1, 1);
  const TensorRef& x = args.in[0];
  const PoolGeom g = pool_geom<attrs::AvgPool2d>(args, x, "input 0 (x)");
  const bool include_pad = attrs::AvgPool2d(args).count_include_pad;
  cpu::expect_dtype(args, args.out[0], x.dtype, "output");
  cpu::expect_dims(args, args.out[0], pooled_dims(x, g), "output");
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
  args.expect_arity(2, 1);
  const TensorRef &dy = args.in[0], &x = args.in[1];
  const PoolGeom g = pool_geom<attrs::AvgPool2dGrad>(args, x, "input 1 (x)");
  const bool include_pad = attrs::AvgPool2dGrad(args).count_include_pad;
  cpu::expect_dtype(args, dy, x.dtype, "input 0 (dy)");
  cpu::expect_dims(args, dy, pooled_dims(x, g), "input 0 (dy)");
  cpu::expect_dtype(args, args.out[0], x.dtype, "output");
  cpu::expect_dims(args, args.out[0], x.dims, "output");
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
