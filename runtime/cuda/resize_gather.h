// resize_gather.h — one item of resize / resize_grad on the GPU (runtime/cuda/tensor_extra.cu's
// resize_gather kernel evaluates resize_item once per destination item).  GRAPHC_HD and free of
// CUDA syntax, so a host program can run the very same code against the CPU kernel.
//
// The item's coordinates, then the tap combinations of the axes in the CPU's order (axis rank-2
// outermost ... axis 0, then the last axis innermost; tensor_extra.cc's gather_kernel) walked
// with an odometer.  Forward, an axis's taps are resize_taps(j) of its output index j (<= 2);
// backward (resize_grad, a gather: no atomics), the taps of input index i are the outputs j that
// read it, ascending: j in [ja, jb] found by binary search (both tap indices are monotone in j),
// each filtered as the CPU transposes its table.  Linear: Σ Π weights · x in float64, every
// product and sum rounded on its own (no FMA contraction on the device: the CPU's bits);
// nearest: the first tap of every axis, 0 when an axis has none.
#pragma once

#include <cstdint>

#include "../cpu/resize_taps.h"
#include "../hd.h"

namespace graphc {
namespace cuda {

constexpr int kResizeMaxDims = 8;

// One resize / resize_grad step: per axis, the forward sizes (n_in -> n_out at scale) and
// whether it is resized; the destination's dims and the source's strides (items).
struct ResizeDev {
  cpu::ResizeMath math;
  int rank = 0;
  int64_t numel = 0;  // destination items
  int64_t dst_dims[kResizeMaxDims] = {};
  int64_t src_strides[kResizeMaxDims] = {};
  bool resized[kResizeMaxDims] = {};
  int64_t n_in[kResizeMaxDims] = {}, n_out[kResizeMaxDims] = {};
  double scale[kResizeMaxDims] = {};
};

GRAPHC_HD inline double dmul(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dmul_rn(a, b);
#else
  return a * b;
#endif
}
GRAPHC_HD inline double dadd(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dadd_rn(a, b);
#else
  return a + b;
#endif
}

// Entry e of axis a's tap list for destination coordinate c: its source index and weight;
// false when the entry is not a tap.  Forward: e in [0, 2), the taps of output index c.
// Backward: e = 2 j + k for output j, its tap k when that reads input index c.
template <bool kGrad>
GRAPHC_HD inline bool tap_entry(const ResizeDev& d, int a, int64_t c, int64_t e, int64_t* src, double* w) {
  if (!d.resized[a]) {
    *src = c;
    *w = 1.0;
    return true;
  }
  int64_t idx[2];
  double wt[2];
  const int k = static_cast<int>(e & 1);
  const int64_t j = kGrad ? (e >> 1) : c;
  cpu::resize_taps(d.math, d.n_in[a], d.n_out[a], d.scale[a], j, idx, wt);
  if (wt[k] == 0) return false;
  if (kGrad && idx[k] != c) return false;
  *src = kGrad ? j : idx[k];
  *w = wt[k];
  return true;
}

// [lo, hi) of the entries of axis a for destination coordinate c.
template <bool kGrad> GRAPHC_HD inline void tap_range(const ResizeDev& d, int a, int64_t c, int64_t* lo, int64_t* hi) {
  if (!d.resized[a]) {
    *lo = 0;
    *hi = 1;
    return;
  }
  if (!kGrad) {
    *lo = 0;
    *hi = 2;
    return;
  }
  // Outputs j whose taps may read input c: idx1(j) >= c and idx0(j) <= c (both monotone in j).
  int64_t idx[2];
  double w[2];
  const int64_t n = d.n_out[a];
  int64_t b = 0, e = n;  // first j with idx1(j) >= c
  while (b < e) {
    const int64_t m = b + (e - b) / 2;
    cpu::resize_taps(d.math, d.n_in[a], n, d.scale[a], m, idx, w);
    if (idx[1] >= c) e = m; else b = m + 1;
  }
  const int64_t ja = b;
  b = ja;
  e = n;  // first j with idx0(j) > c
  while (b < e) {
    const int64_t m = b + (e - b) / 2;
    cpu::resize_taps(d.math, d.n_in[a], n, d.scale[a], m, idx, w);
    if (idx[0] > c) e = m; else b = m + 1;
  }
  *lo = 2 * ja;
  *hi = 2 * b;
}

// Destination item o.
template <class T, bool kSum, bool kGrad> GRAPHC_HD inline T resize_item(const ResizeDev& d, const T* src, int64_t o) {
  const int R = d.rank;
  int64_t c[kResizeMaxDims];
  int64_t rem = o;
  for (int a = R - 1; a >= 0; --a) {
    const int64_t q = rem / d.dst_dims[a];
    c[a] = rem - q * d.dst_dims[a];
    rem = q;
  }
  // Level l walks axis ax(l): rank-2, rank-3, ..., 0, then rank-1 (innermost).
  int axis[kResizeMaxDims];
  int64_t lo[kResizeMaxDims], hi[kResizeMaxDims];
  for (int l = 0; l < R; ++l) {
    axis[l] = l == R - 1 ? R - 1 : R - 2 - l;
    tap_range<kGrad>(d, axis[l], c[axis[l]], &lo[l], &hi[l]);
  }
  if constexpr (!kSum) {
    int64_t off = 0;
    bool found = true;
    for (int l = 0; l < R && found; ++l) {
      found = false;
      for (int64_t e = lo[l]; e < hi[l]; ++e) {
        int64_t s;
        double w;
        if (tap_entry<kGrad>(d, axis[l], c[axis[l]], e, &s, &w)) {
          off += s * d.src_strides[axis[l]];
          found = true;
          break;
        }
      }
    }
    return found ? src[off] : T(0);
  } else {
    double pre[kResizeMaxDims + 1];
    int64_t off[kResizeMaxDims + 1], ent[kResizeMaxDims];
    pre[0] = 1.0;
    off[0] = 0;
    double acc = 0.0;
    int l = 0;
    ent[0] = lo[0] - 1;
    while (l >= 0) {
      int64_t s = 0;
      double w = 0;
      bool found = false;
      while (++ent[l] < hi[l]) {
        if (tap_entry<kGrad>(d, axis[l], c[axis[l]], ent[l], &s, &w)) {
          found = true;
          break;
        }
      }
      if (!found) {
        --l;
        continue;
      }
      pre[l + 1] = dmul(pre[l], w);
      off[l + 1] = off[l] + s * d.src_strides[axis[l]];
      if (l == R - 1) {
        acc = dadd(acc, dmul(pre[R], static_cast<double>(src[off[R]])));
      } else {
        ++l;
        ent[l] = lo[l] - 1;
      }
    }
    return static_cast<T>(acc);
  }
}

}  // namespace cuda
}  // namespace graphc
