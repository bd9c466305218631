// pool_items.h — what one thread of runtime/cuda/pool.cu's kernels computes, as GRAPHC_HD
// code: the kernels run it on the GPU, tests/cuda_pool_pad_emul.cc on the CPU (against the
// numpy references, tests/test_pool_pad_cuda_emul.py).  Plain C++, no CUDA header.
#pragma once

#include <cstdint>
#include <limits>

#include "../hd.h"

namespace graphc {
namespace cuda {
namespace pool_items {  // named apart: other kernel files are in graphc::cuda too

struct PoolGeom {
  int64_t planes = 0, h = 0, w = 0, ho = 0, wo = 0;
  int64_t kh = 0, kw = 0, sh = 0, sw = 0, ph = 0, pw = 0;
};

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
template <class T> GRAPHC_HD inline int64_t argmax(const T* __restrict__ x, const PoolGeom& g, const Window& win) {
  int64_t best = win.h0 * g.w + win.w0;
  T m = -std::numeric_limits<T>::infinity();
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

// The kernels' per-item work (one thread each): item idx of the output (max_fwd_item,
// avg_fwd_item: a pooled item; max_bwd_item, avg_bwd_item: an input item).
template <class T> GRAPHC_HD inline T max_fwd_item(const PoolGeom& g, const T* x, const T* src, int64_t idx) {
  const int64_t ow = idx % g.wo, t = idx / g.wo, oh = t % g.ho, p = t / g.ho;
  const int64_t base = p * g.h * g.w;
  return src[base + argmax(x + base, g, window(g, oh, ow))];
}

template <class T> GRAPHC_HD inline T max_bwd_item(const PoolGeom& g, const T* dy, const T* x, int64_t idx) {
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
  return s;
}

template <class T> GRAPHC_HD inline T avg_fwd_item(const PoolGeom& g, bool include_pad, const T* x, int64_t idx) {
  const int64_t ow = idx % g.wo, t = idx / g.wo, oh = t % g.ho, p = t / g.ho;
  const T* xp = x + p * g.h * g.w;
  const Window win = window(g, oh, ow);
  T s = T(0);  // from +0 as PyTorch: a window of -0.0 averages to +0.0
  for (int64_t i = win.h0; i < win.h1; ++i) {
    for (int64_t j = win.w0; j < win.w1; ++j) s += xp[i * g.w + j];
  }
  return s / static_cast<T>(divisor(g, win, include_pad));
}

template <class T> GRAPHC_HD inline T avg_bwd_item(const PoolGeom& g, bool include_pad, const T* dy, int64_t idx) {
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
  return s;
}

}  // namespace pool_items
}  // namespace cuda
}  // namespace graphc
