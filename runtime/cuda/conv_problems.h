// conv_problems.h — the index maps of runtime/cuda/conv.cu's implicit-GEMM kernel (igemm), as
// GRAPHC_HD code: the kernel runs them on the GPU, and tests/test_conv_cuda_plan.py runs them
// on the CPU through emulate() (tests/cuda_conv_emul.cc), against the numpy references — so
// the index math of the CUDA fallback is tested on a machine without a GPU.
//
// Plain C++ (no CUDA header): a problem is C[m][n] = Σ_k A(m, k) · B(k, n) per group, where B
// may leave a term out (b() returns false: conv2d_grad_input's taps that read no input).
#pragma once

#include <cmath>
#include <cstdint>

#include "../hd.h"

namespace graphc {
namespace cuda {
namespace conv_gemm {  // named apart: other kernel files are in graphc::cuda too

constexpr int kBM = 64, kBN = 64, kBK = 16, kTM = 4, kTN = 4, kGemmThreads = 256;

// K items per slice when the reduction is split `splits` ways: a multiple of kBK, >= kBK.
GRAPHC_HD inline int64_t k_chunk_for(int64_t K, int64_t splits) {
  const int64_t s = splits > 1 ? splits : 1, per = (K + s - 1) / s, chunk = (per + kBK - 1) / kBK * kBK;
  return chunk > kBK ? chunk : kBK;
}

// The geometry a kernel reads (by value).
struct Geo {
  int64_t c, h, w, o, kh, kw, cg, og, sh, sw, pt, pl, dh, dw, ho, wo, taps, k, p;
};
// Each problem maps the GEMM's (m, k) to A and (k, n) to B.  A thread loads B for one column
// n of its tile in every K step (igemm: nn = tid % kBN), so what depends on n alone — the
// image, the position, the tensor base — is decomposed once per CTA into a Col (col()), and
// b() is left with the k side of the index.

// conv2d: M = og (o), N = n·P (image, output position), K = cg·taps (c, tap).
template <class T> struct FwdProblem {
  static constexpr bool kMasked = false;
  Geo q;
  int64_t M, N, K;
  const T* x;
  const T* w;
  T* y;
  struct Col {
    int64_t base, r0, c0;  // x's offset of (image, group's channel 0); the window's top-left
  };
  GRAPHC_HD T a(int64_t g, int64_t m, int64_t k) const { return w[(g * q.og + m) * q.k + k]; }
  GRAPHC_HD Col col(int64_t g, int64_t n) const {
    const int64_t img = n / q.p, pp = n - img * q.p, i = pp / q.wo, j = pp - i * q.wo;
    return Col{(img * q.c + g * q.cg) * q.h * q.w, i * q.sh - q.pt, j * q.sw - q.pl};
  }
  // x_pad[img][g·cg + c][i·sh + a·dh][j·sw + b·dw]: 0 in the padding (a term all the same)
  GRAPHC_HD bool b(int64_t k, const Col& cl, T& v) const {
    const int64_t c = k / q.taps, tap = k - c * q.taps, a = tap / q.kw, bb = tap - a * q.kw;
    const int64_t r = cl.r0 + a * q.dh, cc = cl.c0 + bb * q.dw;
    v = (r >= 0 && r < q.h && cc >= 0 && cc < q.w) ? x[cl.base + (c * q.h + r) * q.w + cc] : T(0);
    return true;
  }
  GRAPHC_HD void store(int64_t g, int64_t, int64_t m, int64_t n, T v) const {
    const int64_t img = n / q.p, pp = n - img * q.p;
    y[(img * q.o + g * q.og + m) * q.p + pp] = v;
  }
};

// conv2d_grad_input: M = cg (c), N = n·H·W (image, input position), K = og·taps (o, tap).
template <class T> struct GradInputProblem {
  static constexpr bool kMasked = true;
  Geo q;
  int64_t M, N, K;
  const T* dy;
  const T* w;
  T* dx;
  struct Col {
    int64_t base, th0, tw0;  // dy's offset of (image, group's channel 0); h + pt, w + pl
  };
  GRAPHC_HD T a(int64_t g, int64_t m, int64_t k) const {
    const int64_t o = k / q.taps, tap = k - o * q.taps;
    return w[((g * q.og + o) * q.cg + m) * q.taps + tap];
  }
  GRAPHC_HD Col col(int64_t g, int64_t n) const {
    const int64_t hw = q.h * q.w, img = n / hw, rest = n - img * hw, h = rest / q.w, wc = rest - h * q.w;
    return Col{(img * q.o + g * q.og) * q.p, h + q.pt, wc + q.pl};
  }
  // dy[img][g·og + o][i][j] when tap (a, b) of output (i, j) reads input (h, w); false when none does
  GRAPHC_HD bool b(int64_t k, const Col& cl, T& v) const {
    const int64_t o = k / q.taps, tap = k - o * q.taps, a = tap / q.kw, bb = tap - a * q.kw;
    const int64_t th = cl.th0 - a * q.dh, tw = cl.tw0 - bb * q.dw;
    if (th < 0 || tw < 0) return false;
    const int64_t i = th / q.sh, j = tw / q.sw;
    if (i * q.sh != th || j * q.sw != tw || i >= q.ho || j >= q.wo) return false;
    v = dy[cl.base + o * q.p + i * q.wo + j];
    return true;
  }
  GRAPHC_HD void store(int64_t g, int64_t, int64_t m, int64_t n, T v) const {
    const int64_t hw = q.h * q.w, img = n / hw, rest = n - img * hw;
    dx[(img * q.c + g * q.cg + m) * hw + rest] = v;
  }
};

// conv2d_grad_weight: M = og (o), N = cg·taps (c, tap), K = n·P (image, output position).
template <class T> struct GradWeightProblem {
  static constexpr bool kMasked = false;
  Geo q;
  int64_t M, N, K;
  const T* dy;
  const T* x;
  T* out;         // dw, or the S partial products (slice s at out + s·wsize)
  int64_t wsize;  // o·cg·taps
  struct Col {
    int64_t base, ra, cb;  // x's channel offset (g·cg + c)·H·W; a·dh - pt, b·dw - pl
  };
  GRAPHC_HD T a(int64_t g, int64_t m, int64_t k) const {
    const int64_t img = k / q.p, pp = k - img * q.p;
    return dy[(img * q.o + g * q.og + m) * q.p + pp];
  }
  GRAPHC_HD Col col(int64_t g, int64_t n) const {
    const int64_t c = n / q.taps, tap = n - c * q.taps, a = tap / q.kw, bb = tap - a * q.kw;
    return Col{(g * q.cg + c) * q.h * q.w, a * q.dh - q.pt, bb * q.dw - q.pl};
  }
  // x_pad[img][g·cg + c][i·sh + a·dh][j·sw + b·dw]: 0 in the padding (a term all the same)
  GRAPHC_HD bool b(int64_t k, const Col& cl, T& v) const {
    const int64_t img = k / q.p, pp = k - img * q.p, i = pp / q.wo, j = pp - i * q.wo;
    const int64_t r = i * q.sh + cl.ra, cc = j * q.sw + cl.cb;
    v = (r >= 0 && r < q.h && cc >= 0 && cc < q.w) ? x[img * q.c * q.h * q.w + cl.base + r * q.w + cc] : T(0);
    return true;
  }
  GRAPHC_HD void store(int64_t g, int64_t split, int64_t m, int64_t n, T v) const {
    out[split * wsize + (g * q.og + m) * q.k + n] = v;
  }
};

// What igemm computes, serially on the host: for every group and K slice, every (m, n) as one
// FMA chain over the slice's k in increasing order, terms b() leaves out skipped.
template <class T, class P> void emulate(const P& p, int64_t groups, int64_t splits) {
  const int64_t chunk = k_chunk_for(p.K, splits);
  for (int64_t z = 0; z < groups * splits; ++z) {
    const int64_t g = z % groups, split = z / groups, kb = split * chunk;
    const int64_t ke = p.K < kb + chunk ? p.K : kb + chunk;
    for (int64_t m = 0; m < p.M; ++m) {
      for (int64_t n = 0; n < p.N; ++n) {
        const typename P::Col cl = p.col(g, n);
        T acc = T(0);
        for (int64_t k = kb; k < ke; ++k) {
          T v = T(0);
          if (p.b(k, cl, v)) acc = std::fma(p.a(g, m, k), v, acc);
        }
        p.store(g, split, m, n, acc);
      }
    }
  }
}

}  // namespace conv_gemm
}  // namespace cuda
}  // namespace graphc
