// pad_items.h — what one thread of runtime/cuda/pad.cu's kernels computes, and the merged
// axis table it reads, as GRAPHC_HD code: the kernels run it on the GPU,
// tests/cuda_pool_pad_emul.cc on the CPU (against the numpy references,
// tests/test_pool_pad_cuda_emul.py).  Plain C++, no CUDA header.
#pragma once

#include <cstdint>
#include <vector>

#include "../hd.h"

namespace graphc {
namespace cuda {
namespace pad_items {  // named apart: other kernel files are in graphc::cuda too

constexpr int kPadMaxAxes = 8;
enum PadMode : int { kConstant = 0, kReflect = 1, kReplicate = 2 };

// The merged axes (kPadMaxAxes at most): x dims, before/after pads, x and y element strides.
struct PadAxes {
  int rank = 0;
  int mode = kConstant;
  int64_t xd[kPadMaxAxes] = {}, yd[kPadMaxAxes] = {}, before[kPadMaxAxes] = {}, after[kPadMaxAxes] = {};
  int64_t xs[kPadMaxAxes] = {}, ys[kPadMaxAxes] = {};
};

// The axis table of x (dims xd, checked pads) with adjacent axes that are padded on neither side
// merged into one (an identity map over both), a scalar as shape (1,).  Returns the merged rank;
// when it exceeds kPadMaxAxes the table is not filled (the factory refuses the step).
inline int make_pad_axes(const std::vector<int64_t>& xd, const std::vector<int64_t>& pads, int mode, PadAxes* p) {
  p->mode = mode;
  std::vector<int64_t> mx, mb, ma;
  for (size_t i = 0; i < xd.size(); ++i) {
    const int64_t b = pads[2 * i], a = pads[2 * i + 1];
    if (!mx.empty() && b == 0 && a == 0 && mb.back() == 0 && ma.back() == 0) {
      mx.back() *= xd[i];  // two unpadded axes: one identity axis
      continue;
    }
    mx.push_back(xd[i]), mb.push_back(b), ma.push_back(a);
  }
  if (mx.empty()) mx = {1}, mb = {0}, ma = {0};
  const int rank = static_cast<int>(mx.size());
  if (rank > kPadMaxAxes) return rank;
  p->rank = rank;
  for (int i = 0; i < rank; ++i) {
    p->xd[i] = mx[i], p->before[i] = mb[i], p->after[i] = ma[i];
    p->yd[i] = mx[i] + mb[i] + ma[i];
  }
  int64_t sx = 1, sy = 1;
  for (int i = rank - 1; i >= 0; --i) {
    p->xs[i] = sx, p->ys[i] = sy;
    sx *= p->xd[i], sy *= p->yd[i];
  }
  return rank;
}

// y item i: x at its source, or `value` in a constant border.
template <class T> GRAPHC_HD inline T pad_fwd_item(const PadAxes& p, const T* x, T value, int64_t i) {
  int64_t r = i, off = 0;
  for (int ax = p.rank - 1; ax >= 0; --ax) {
    const int64_t q = r / p.yd[ax], o = r - q * p.yd[ax];
    r = q;
    const int64_t d = p.xd[ax];
    int64_t k = o - p.before[ax];
    if (k < 0 || k >= d) {
      if (p.mode == kConstant) return value;
      if (p.mode == kReflect) k = k < 0 ? -k : 2 * (d - 1) - k;  // pads < d keeps k in [0, d)
      else k = k < 0 ? 0 : d - 1;
    }
    off += k * p.xs[ax];
  }
  return x[off];
}

// dx item i: Σ g over the output items that read x item i, in C order of g, from +0.
template <class T> GRAPHC_HD inline T pad_bwd_item(const PadAxes& p, const T* g, int64_t i) {
  // per axis: up to 3 ascending ranges [lo, hi) of output indices reading index k
  int64_t lo[kPadMaxAxes][3], hi[kPadMaxAxes][3], cnt[kPadMaxAxes];
  int nr[kPadMaxAxes];
  int64_t r = i, total = 1;
  for (int ax = p.rank - 1; ax >= 0; --ax) {
    const int64_t q = r / p.xd[ax], k = r - q * p.xd[ax];
    r = q;
    const int64_t d = p.xd[ax], b = p.before[ax], a = p.after[ax];
    int m = 0;
    if (p.mode == kReflect) {
      if (k >= 1 && k <= b) lo[ax][m] = b - k, hi[ax][m] = b - k + 1, ++m;
      lo[ax][m] = k + b, hi[ax][m] = k + b + 1, ++m;
      if (k <= d - 2 && k >= d - 1 - a) lo[ax][m] = 2 * (d - 1) - k + b, hi[ax][m] = lo[ax][m] + 1, ++m;
    } else if (p.mode == kReplicate) {
      lo[ax][0] = k == 0 ? 0 : k + b;
      hi[ax][0] = k == d - 1 ? b + d + a : k + b + 1;
      m = 1;
    } else {
      lo[ax][0] = k + b, hi[ax][0] = k + b + 1, m = 1;
    }
    nr[ax] = m;
    int64_t c = 0;
    for (int j = 0; j < m; ++j) c += hi[ax][j] - lo[ax][j];
    cnt[ax] = c;
    total *= c;
  }
  T s = T(0);
  for (int64_t t = 0; t < total; ++t) {  // t in mixed radix cnt[], the last axis fastest: C order of g
    int64_t u = t, off = 0;
    for (int ax = p.rank - 1; ax >= 0; --ax) {
      const int64_t q = u / cnt[ax];
      int64_t e = u - q * cnt[ax];
      u = q;
      int j = 0;
      while (j + 1 < nr[ax] && e >= hi[ax][j] - lo[ax][j]) e -= hi[ax][j] - lo[ax][j], ++j;
      off += (lo[ax][j] + e) * p.ys[ax];
    }
    s += g[off];
  }
  return s;
}

}  // namespace pad_items
}  // namespace cuda
}  // namespace graphc
