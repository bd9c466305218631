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

#include <math_constants.h>

#include "common.cuh"

namespace graphc {
namespace cuda {
namespace {

struct PoolGeom {
  int64_t planes = 0, h = 0, w = 0, ho = 0, wo = 0;
  int64_t kh = 0, kw = 0, sh = 0, sw = 0, ph = 0, pw = 0;
};

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

// Window (oh, ow) clipped to the input: rows [h0, h1), columns [w0, w1).
struct Window {
  int64_t h0, h1, w0, w1;
};

GRAPHC_HD inline Window window(const PoolGeom& g, int64_t oh, int64_t ow) {
  const int64_t h0 = oh * g.sh - g.ph, w0 = ow * g.sw - g.pw;
  Window win;
  win.h0 = h0 > 0 ? h0 : 0;
  win.h1 = h0 + g.kh < g.h ? h0 + g.kh : g.h;
  win.w0 = w0 > 0 ? w0 : 0;
  win.w1 = w0 + g.kw < g.w ? w0 + g.kw : g.w;
  return win;
}

GRAPHC_HD inline int64_t divisor(const PoolGeom& g, const Window& win, bool count_include_pad) {
  return count_include_pad ? g.kh * g.kw : (win.h1 - win.h0) * (win.w1 - win.w0);
}

// The pooled rows (or columns) whose windows contain input row i: [lo, hi], maybe empty.
GRAPHC_HD inline void covering(int64_t i, int64_t pad, int64_t k, int64_t s, int64_t n_out, int64_t& lo, int64_t& hi) {
  const int64_t t = i + pad;  // >= 0: the row in the padded input
  lo = t - k < 0 ? 0 : (t - k) / s + 1;
  hi = t / s < n_out - 1 ? t / s : n_out - 1;
}

// Offset in the plane of the window's max (cpu::argmax: val > max || isnan(val)).
template <class T> __device__ inline int64_t argmax(const T* __restrict__ x, const PoolGeom& g, const Window& win) {
  int64_t best = win.h0 * g.w + win.w0;
  T m = -CUDART_INF_F;
  for (int64_t i = win.h0; i < win.h1; ++i) {
    for (int64_t j = win.w0; j < win.w1; ++j) {
      const T v = x[i * g.w + j];
      if (v > m || v != v) {
        m = v;
        best = i * g.w + j;
      }
    }
  }
  return best;
}

template <class T>
__global__ void max_fwd(const PoolGeom g, const T* __restrict__ x, const T* __restrict__ src, T* __restrict__ y,
                        int64_t n) {
  GRAPHC_GRID_STRIDE(idx, n) {
    const int64_t ow = idx % g.wo, t = idx / g.wo, oh = t % g.ho, p = t / g.ho;
    const int64_t base = p * g.h * g.w;
    y[idx] = src[base + argmax(x + base, g, window(g, oh, ow))];
  }
}

template <class T>
__global__ void max_bwd(const PoolGeom g, const T* __restrict__ dy, const T* __restrict__ x, T* __restrict__ dx,
                        int64_t n) {
  GRAPHC_GRID_STRIDE(idx, n) {
    const int64_t j = idx % g.w, t = idx / g.w, i = t % g.h, p = t / g.h;
    const T* xp = x + p * g.h * g.w;
    const T* dyp = dy + p * g.ho * g.wo;
    const int64_t me = i * g.w + j;
    int64_t oh0, oh1, ow0, ow1;
    covering(i, g.ph, g.kh, g.sh, g.ho, oh0, oh1);
    covering(j, g.pw, g.kw, g.sw, g.wo, ow0, ow1);
    T s = T(0);
    for (int64_t oh = oh0; oh <= oh1; ++oh) {
      for (int64_t ow = ow0; ow <= ow1; ++ow) {
        if (argmax(xp, g, window(g, oh, ow)) == me) s += dyp[oh * g.wo + ow];
      }
    }
    dx[idx] = s;
  }
}

template <class T>
__global__ void avg_fwd(const PoolGeom g, bool include_pad, const T* __restrict__ x, T* __restrict__ y, int64_t n) {
  GRAPHC_GRID_STRIDE(idx, n) {
    const int64_t ow = idx % g.wo, t = idx / g.wo, oh = t % g.ho, p = t / g.ho;
    const T* xp = x + p * g.h * g.w;
    const Window win = window(g, oh, ow);
    T s = T(0);  // from +0 as PyTorch: a window of -0.0 averages to +0.0
    for (int64_t i = win.h0; i < win.h1; ++i) {
      for (int64_t j = win.w0; j < win.w1; ++j) s += xp[i * g.w + j];
    }
    y[idx] = s / static_cast<T>(divisor(g, win, include_pad));
  }
}

template <class T>
__global__ void avg_bwd(const PoolGeom g, bool include_pad, const T* __restrict__ dy, T* __restrict__ dx, int64_t n) {
  GRAPHC_GRID_STRIDE(idx, n) {
    const int64_t j = idx % g.w, t = idx / g.w, i = t % g.h, p = t / g.h;
    const T* dyp = dy + p * g.ho * g.wo;
    int64_t oh0, oh1, ow0, ow1;
    covering(i, g.ph, g.kh, g.sh, g.ho, oh0, oh1);
    covering(j, g.pw, g.kw, g.sw, g.wo, ow0, ow1);
    T s = T(0);
    for (int64_t oh = oh0; oh <= oh1; ++oh) {
      for (int64_t ow = ow0; ow <= ow1; ++ow) {
        s += dyp[oh * g.wo + ow] / static_cast<T>(divisor(g, window(g, oh, ow), include_pad));
      }
    }
    dx[idx] = s;
  }
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
