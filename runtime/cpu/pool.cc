// pool.cc — max_pool2d, avg_pool2d and their gradient ops over NCHW float tensors
// (graphc/ops/pool.py has the semantics: PyTorch's CPU kernels, floor mode).
//
// Every (n, c) plane is independent, so the planes are split over threads and each plane
// runs in one fixed order: the results are the same for any thread count.
#include <limits>
#include <string>
#include <vector>

#include "common.h"
#include "pool_checks.h"

namespace graphc {
namespace cpu {
namespace {

// PoolGeom, pool_geom and the factories' checks: pool_checks.h.


// Window (oh, ow) clipped to the input: rows [h0, h1), columns [w0, w1).
struct Window {
  int64_t h0, h1, w0, w1;
};

inline Window window(const PoolGeom& g, int64_t oh, int64_t ow) {
  const int64_t h0 = oh * g.sh - g.ph, w0 = ow * g.sw - g.pw;
  return {std::max<int64_t>(h0, 0), std::min(h0 + g.kh, g.h), std::max<int64_t>(w0, 0), std::min(w0 + g.kw, g.w)};
}

// Offset in the plane of the window's max: PyTorch's rule (val > max || isnan(val)), so the
// last NaN, else the first maximum; a window of -inf gives its first element.
template <class T> inline int64_t argmax(const T* x, const PoolGeom& g, const Window& win) {
  int64_t best = win.h0 * g.w + win.w0;
  T m = -std::numeric_limits<T>::infinity();
  for (int64_t i = win.h0; i < win.h1; ++i) {
    for (int64_t j = win.w0; j < win.w1; ++j) {
      const T v = x[i * g.w + j];
      if (v > m || std::isnan(v)) {
        m = v;
        best = i * g.w + j;
      }
    }
  }
  return best;
}

// Runs f(plane) over every plane, split over threads.
template <class F> void for_planes(const PoolGeom& g, int threads, F&& f) {
  const int64_t grain = std::max<int64_t>(1, (1 << 15) / std::max<int64_t>(1, g.h * g.w));
  parallel_for(g.planes, threads, grain, [&](int64_t b, int64_t e) {
    for (int64_t p = b; p < e; ++p) f(p);
  });
}

// max_pool2d(x) and max_pool2d_gather(g, x): y = source at the max of x's window.
template <class T, class Attr> Kernel max_pool_kernel(const KernelArgs& args, bool gather) {
  const PoolGeom g = pool_check<Attr>(args, gather);
  const TensorRef& x = args.in[gather ? 1 : 0];
  const TensorRef& src = args.in[0];
  if (numel_of(args.out[0]) == 0) return no_op_kernel();
  const T* px = x.as<const T>();
  const T* ps = src.as<const T>();
  T* py = args.out[0].as<T>();
  const int threads = args.ctx.threads;
  return [=]() {
    for_planes(g, threads, [&](int64_t p) {
      const T* xp = px + p * g.h * g.w;
      const T* sp = ps + p * g.h * g.w;
      T* yp = py + p * g.ho * g.wo;
      for (int64_t oh = 0; oh < g.ho; ++oh) {
        for (int64_t ow = 0; ow < g.wo; ++ow) yp[oh * g.wo + ow] = sp[argmax(xp, g, window(g, oh, ow))];
      }
    });
  };
}

// max_pool2d_grad(dy, x): dy added at each window's max, zeros elsewhere.
template <class T> Kernel max_pool_grad_kernel(const KernelArgs& args) {
  const PoolGeom g = pool_grad_check<attrs::MaxPool2dGrad>(args);
  const TensorRef &dy = args.in[0], &x = args.in[1];
  if (numel_of(x) == 0) return no_op_kernel();
  const T* px = x.as<const T>();
  const T* pdy = dy.as<const T>();
  T* pdx = args.out[0].as<T>();
  const int threads = args.ctx.threads;
  return [=]() {
    for_planes(g, threads, [&](int64_t p) {
      const T* xp = px + p * g.h * g.w;
      const T* dyp = pdy + p * g.ho * g.wo;
      T* dxp = pdx + p * g.h * g.w;
      std::fill(dxp, dxp + g.h * g.w, T(0));
      for (int64_t oh = 0; oh < g.ho; ++oh) {
        for (int64_t ow = 0; ow < g.wo; ++ow) dxp[argmax(xp, g, window(g, oh, ow))] += dyp[oh * g.wo + ow];
      }
    });
  };
}

inline int64_t divisor(const PoolGeom& g, const Window& win, bool count_include_pad) {
  return count_include_pad ? g.kh * g.kw : (win.h1 - win.h0) * (win.w1 - win.w0);
}

// avg_pool2d(x): the window's sum, in the input dtype in row-major order (PyTorch), / divisor.
template <class T> Kernel avg_pool_kernel(const KernelArgs& args) {
  const PoolGeom g = pool_check<attrs::AvgPool2d>(args, false);
  const bool include_pad = attrs::AvgPool2d(args).count_include_pad;
  const TensorRef& x = args.in[0];
  if (numel_of(args.out[0]) == 0) return no_op_kernel();
  const T* px = x.as<const T>();
  T* py = args.out[0].as<T>();
  const int threads = args.ctx.threads;
  return [=]() {
    for_planes(g, threads, [&](int64_t p) {
      const T* xp = px + p * g.h * g.w;
      T* yp = py + p * g.ho * g.wo;
      for (int64_t oh = 0; oh < g.ho; ++oh) {
        for (int64_t ow = 0; ow < g.wo; ++ow) {
          const Window win = window(g, oh, ow);
          T s = T(0);  // from +0 as PyTorch: a window of -0.0 averages to +0.0
          for (int64_t i = win.h0; i < win.h1; ++i) {
            for (int64_t j = win.w0; j < win.w1; ++j) s += xp[i * g.w + j];
          }
          yp[oh * g.wo + ow] = s / static_cast<T>(divisor(g, win, include_pad));
        }
      }
    });
  };
}

// avg_pool2d_grad(dy, x): dy / divisor added over each window; only x's dims are read.
template <class T> Kernel avg_pool_grad_kernel(const KernelArgs& args) {
  const PoolGeom g = pool_grad_check<attrs::AvgPool2dGrad>(args);
  const bool include_pad = attrs::AvgPool2dGrad(args).count_include_pad;
  const TensorRef &dy = args.in[0], &x = args.in[1];
  if (numel_of(x) == 0) return no_op_kernel();
  const T* pdy = dy.as<const T>();
  T* pdx = args.out[0].as<T>();
  const int threads = args.ctx.threads;
  return [=]() {
    for_planes(g, threads, [&](int64_t p) {
      const T* dyp = pdy + p * g.ho * g.wo;
      T* dxp = pdx + p * g.h * g.w;
      std::fill(dxp, dxp + g.h * g.w, T(0));
      for (int64_t oh = 0; oh < g.ho; ++oh) {
        for (int64_t ow = 0; ow < g.wo; ++ow) {
          const Window win = window(g, oh, ow);
          const T d = dyp[oh * g.wo + ow] / static_cast<T>(divisor(g, win, include_pad));
          for (int64_t i = win.h0; i < win.h1; ++i) {
            for (int64_t j = win.w0; j < win.w1; ++j) dxp[i * g.w + j] += d;
          }
        }
      }
    });
  };
}

}  // namespace
}  // namespace cpu

void register_pool_kernels(KernelRegistry& r) {
  using namespace cpu;
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

}  // namespace graphc
