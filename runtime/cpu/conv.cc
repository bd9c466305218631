// conv.cc — conv2d and its gradient ops (conv2d_grad_input, conv2d_grad_weight) over NCHW
// input and OIHW weights; graphc/ops/conv.py has the semantics (PyTorch's), docs/conv.md the
// design and the figures.
//
// Two strategies, one image at a time (K = C/g·k_h·k_w, P = H_out·W_out):
//  - implicit GEMM (float32, one group, more than one tap, >= 16 input channels; grad_input at
//    stride 1 only): gemm.h's micro-kernels read the zero-padded image (split into stride
//    phases) in place, one FMA chain per output over (tap, channel) — see struct Implicit;
//  - im2col + GEMM otherwise:
//      forward       Y[n]_g (Og x P)  = W_g (Og x K) · col[n]_g (K x P), col written in the
//                    GEMM's packed-B layout (float32)
//      grad_input    dcol_g (K x P)   = W_g^T · dY[n]_g, then col2im into dX[n]
//      grad_weight   part[n]_g (K x Og) = col[n]_g · dY[n]_g^T, then dW = Σ_n part[n] in image
//                    order
//    A 1x1 kernel at stride 1 without padding reads (or writes) the image itself as its column
//    matrix.  float32 runs graphc's own GEMM (gemm.h); float64, the reference-precision dtype,
//    plain loops.
//
// Scratch lives in the step's planned workspaces (KernelArgs::ws, sized by the op's registry
// `workspace` function, which takes the same decisions): `slots` column matrices or padded
// images, so up to that many images run at once, one per thread; with one image (or slot)
// the GEMM itself is split.
//
// Determinism: each output element is one FMA chain in a fixed order (gemm.h), whichever
// thread computes it; col2im adds into one image from one thread in a fixed order; the
// weight gradient sums the per-image partial products in image order.  So results are the
// same bits for every thread count.
#include <algorithm>
#include <atomic>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <type_traits>
#include <vector>

#include "common.h"
#include "conv_checks.h"
#include "gemm.h"

namespace graphc {
namespace cpu {
namespace {

// ConvGeom, conv_geom and the factories' checks: conv_checks.h.

// The im2col workspace: `slots` matrices of (C·kh·kw) x P (all groups), slots >= 1.  Returns slots.
// `width` is P, or P rounded up to kPanel for the forward's panel layout.
template <class T> int64_t check_cols(const KernelArgs& a, const ConvGeom& q, size_t i, int64_t width) {
  const std::string what = "workspace " + std::to_string(i) + " (im2col)";
  if (a.ws.size() <= i) a.fail("expects a planned " + what + " (the plan has " + std::to_string(a.ws.size()) + ")");
  const TensorRef& t = a.ws[i];
  expect_dtype(a, t, dtype_of<T>(), what);
  if (t.dims.size() != 3 || t.dims[0] < 1 || t.dims[1] != q.k * q.g || t.dims[2] != width) {
    a.fail(what + " must have shape (slots >= 1, " + std::to_string(q.k * q.g) + ", " + std::to_string(width) +
           "), got " + format_dims(t.dims));
  }
  return t.dims[0];
}

// The widest B panel of the own GEMM (AVX-512); graphc/ops/conv.py's PANEL sizes the workspace by it.
constexpr int64_t kPanel = 32;
inline int64_t round_up_panel(int64_t p) { return (p + kPanel - 1) / kPanel * kPanel; }

// Rows (c, a, b) of image x's column matrix: col[(c·kh + a)·kw + b][i·wo + j] =
// x[c][i·sh + a·dh - pt][j·sw + b·dw - pl], 0 in the padding.
template <class T> void im2col(const ConvGeom& q, const T* x, T* col) {
  for (int64_t c = 0; c < q.c; ++c) {
    const T* xc = x + c * q.h * q.w;
    for (int64_t a = 0; a < q.kh; ++a) {
      for (int64_t b = 0; b < q.kw; ++b) {
        T* row = col + ((c * q.kh + a) * q.kw + b) * q.p;
        // output columns j whose input column j·sw + b·dw - pl is inside [0, w)
        const int64_t off = b * q.dw - q.pl;
        const int64_t j0 = off >= 0 ? 0 : std::min(q.wo, (-off + q.sw - 1) / q.sw);
        const int64_t j1 = std::max(j0, std::min(q.wo, off >= q.w ? 0 : (q.w - 1 - off) / q.sw + 1));
        for (int64_t i = 0; i < q.ho; ++i) {
          T* dst = row + i * q.wo;
          const int64_t r = i * q.sh + a * q.dh - q.pt;
          if (r < 0 || r >= q.h) {
            std::fill(dst, dst + q.wo, T(0));
            continue;
          }
          const T* src = xc + r * q.w;  // input column j·sw + off for output column j
          // plain loops, not memcpy/fill: the rows are short (16-32 items) and many
          for (int64_t j = 0; j < j0; ++j) dst[j] = T(0);
          if (q.sw == 1) {
            const T* s1 = src + off;
            for (int64_t j = j0; j < j1; ++j) dst[j] = s1[j];
          } else {
            for (int64_t j = j0; j < j1; ++j) dst[j] = src[j * q.sw + off];
          }
          for (int64_t j = j1; j < q.wo; ++j) dst[j] = T(0);
        }
      }
    }
  }
}

// The kernel set sgemm uses now for N columns (gemm.h: it follows the ISA cap on every call).
const gemm::KernelSet* active_kernels(int64_t n) {
  const char* name = gemm::kernel_name();
  const gemm::KernelSet* ks = nullptr;
  if (std::strcmp(name, "avx512") == 0) ks = gemm::avx512_kernels();
  if (std::strcmp(name, "avx2") == 0) ks = gemm::avx2_kernels();
  return gemm::kernels_for(ks != nullptr ? ks : gemm::portable_kernels(), n);
}

// im2col of image x for the float32 forward, written straight in the GEMM's packed-B layout
// (gemm.h PackedB: per group, panel j holds output positions [j·nr, j·nr + nr) for every row k,
// nr floats per k, zero past P), so sgemm multiplies it without packing a copy of it.
// Only panels [pb0, pb1) are written, panel pb0 first (a band: the caller multiplies it while
// it is in cache).  Returns the group stride (floats) in `col`.
int64_t im2col_panels(const ConvGeom& q, const float* x, float* col, int64_t nr, int64_t pb0, int64_t pb1) {
  const int64_t panels = (q.p + nr - 1) / nr, gstride = (pb1 - pb0) * nr * q.k;
  const int64_t pos0 = pb0 * nr, pos1 = std::min(q.p, pb1 * nr);  // the band's output positions
  const int shift = __builtin_ctzll(static_cast<unsigned long long>(nr));
  for (int64_t c = 0; c < q.c; ++c) {
    const float* xc = x + c * q.h * q.w;
    const int64_t g = c / q.cg;
    for (int64_t a = 0; a < q.kh; ++a) {
      for (int64_t b = 0; b < q.kw; ++b) {
        const int64_t kl = ((c - g * q.cg) * q.kh + a) * q.kw + b;  // row within the group's matrix
        float* base = col + g * gstride + kl * nr;
        const int64_t off = b * q.dw - q.pl;
        const int64_t j0 = off >= 0 ? 0 : std::min(q.wo, (-off + q.sw - 1) / q.sw);
        const int64_t j1 = std::max(j0, std::min(q.wo, off >= q.w ? 0 : (q.w - 1 - off) / q.sw + 1));
        for (int64_t i = pos0 / q.wo; i * q.wo < pos1; ++i) {
          const int64_t r = i * q.sh + a * q.dh - q.pt;
          const bool inside = r >= 0 && r < q.h;
          const float* src = xc + (inside ? r : 0) * q.w;
          // output columns [js, je) of row i (within the band) fall into one panel at a time
          const int64_t jend = std::min(q.wo, pos1 - i * q.wo);
          for (int64_t js = std::max<int64_t>(0, pos0 - i * q.wo); js < jend;) {
            const int64_t pos = i * q.wo + js, in_panel = pos & (nr - 1);  // nr is a power of 2
            const int64_t je = std::min(jend, js + nr - in_panel);
            float* __restrict d = base + ((pos >> shift) - pb0) * q.k * nr + in_panel;  // d[j - js] for column j
            const int64_t lo = inside ? std::min(std::max(js, j0), je) : je;
            const int64_t hi = inside ? std::max(lo, std::min(je, j1)) : je;
            for (int64_t j = js; j < lo; ++j) d[j - js] = 0.0f;
            if (q.sw == 1) {
              const float* __restrict s1 = src + off + js;
              for (int64_t j = lo - js; j < hi - js; ++j) d[j] = s1[j];
            } else {
              for (int64_t j = lo; j < hi; ++j) d[j - js] = src[j * q.sw + off];
            }
            for (int64_t j = hi; j < je; ++j) d[j - js] = 0.0f;
            js = je;
          }
        }
        // the last panel's columns past P: zeros, as pack_b leaves them
        const int64_t tail = panels * nr - q.p;
        float* last = base + (panels - 1 - pb0) * q.k * nr;
        if (tail > 0 && pb1 >= panels) std::fill(last + (nr - tail), last + nr, 0.0f);
      }
    }
  }
  return gstride;
}

// ---- implicit GEMM for float32 convolutions (no im2col) -----------------------------------
//
// On the zero-padded image xpad (C x Hp x Wp), output (i, j) of tap (a, b) reads
// xpad[c][i·sh + a·dh][j·sw + b·dw].  The padded image is stored as sh·sw phase images
// xq[py][px][c][u][v] = xpad[c][u·sh + py][v·sw + px] (one phase at stride 1), so the read is
// xq[(a·dh) % sh][(b·dw) % sw][c][i + (a·dh) / sh][j + (b·dw) / sw]: unit stride in j.  Computing
// the outputs on the phase grid — positions p' = i·Wq + j for j < Wq, the last Wq - Wo of each
// row wasted — makes it xq[phase][c][p' + offset(tap)]: for each tap, B (C x Ho·Wq) is a phase
// image itself at an offset, read in place by gemm.h's micro-kernels with row stride Hq·Wq.
// Each output tile (up to mr channels x nr positions) is one FMA chain over (tap, c) in that
// order: the micro-kernel's accumulate flag continues it from tap to tap.  A, the weights, is
// packed strip-major (pack_implicit_weights: per strip of output channels, [tap][c][r]), once
// for a constant weight, per call otherwise.  The valid columns are then copied out of the grid.  graphc/ops/conv.py takes the same decision.
struct Implicit {
  int64_t cin = 0, cout = 0, h = 0, w = 0;    // input image, channels in and out
  int64_t pt = 0, pl = 0, hp = 0, wp = 0;     // padding (top, left) and the padded image
  int64_t kh = 0, kw = 0, dh = 1, dw = 1, sh = 1, sw = 1;
  int64_t hq = 0, wq = 0;                     // a phase image: ceil(Hp / sh) x ceil(Wp / sw)
  int64_t ho = 0, wo = 0, grid = 0;           // output and its grid Ho·Wq
  int64_t plane() const { return hq * wq; }
  int64_t phase_floats() const { return cin * plane(); }
  // xq floats: every phase, and the tail that the last tap's last tile reads past the last one
  int64_t xpad_floats() const { return sh * sw * phase_floats() + dw * (kw - 1) / sw + kPanel; }
  // where tap (a, b) reads position 0 of channel 0
  int64_t tap_offset(int64_t a, int64_t b) const {
    return ((a * dh) % sh * sw + (b * dw) % sw) * phase_floats() + (a * dh) / sh * wq + (b * dw) / sw;
  }
};

// Implicit geometry of a convolution of `cin`-channel images with pads (t, l, b, r).
inline Implicit implicit_geom(int64_t cin, int64_t cout, int64_t h, int64_t w, int64_t kh, int64_t kw, int64_t dh,
                              int64_t dw, int64_t pt, int64_t pl, int64_t pb, int64_t pr, int64_t sh = 1,
                              int64_t sw = 1) {
  Implicit m;
  m.cin = cin, m.cout = cout, m.h = h, m.w = w, m.kh = kh, m.kw = kw, m.dh = dh, m.dw = dw, m.sh = sh, m.sw = sw;
  m.pt = pt, m.pl = pl, m.hp = h + pt + pb, m.wp = w + pl + pr;
  m.hq = (m.hp + sh - 1) / sh, m.wq = (m.wp + sw - 1) / sw;
  m.ho = (m.hp - dh * (kh - 1) - 1) / sh + 1, m.wo = (m.wp - dw * (kw - 1) - 1) / sw + 1;
  m.grid = m.ho * m.wq;
  return m;
}

// xq = the phase images of x (cin x h x w) zero-padded.
inline void pad_image(const Implicit& m, const float* x, float* xq) {
  for (int64_t py = 0; py < m.sh; ++py) {
    for (int64_t px = 0; px < m.sw; ++px) {
      float* phase = xq + (py * m.sw + px) * m.phase_floats();
      // columns v of this phase hold padded columns v·sw + px, input columns v·sw + px - pl
      const int64_t first = px >= m.pl ? 0 : (m.pl - px + m.sw - 1) / m.sw;
      const int64_t end = std::max(first, std::min(m.wq, (m.pl + m.w - px + m.sw - 1) / m.sw));
      for (int64_t c = 0; c < m.cin; ++c) {
        const float* xc = x + c * m.h * m.w;
        for (int64_t u = 0; u < m.hq; ++u) {
          float* d = phase + c * m.plane() + u * m.wq;
          const int64_t r = u * m.sh + py - m.pt;
          if (r < 0 || r >= m.h) {
            for (int64_t v = 0; v < m.wq; ++v) d[v] = 0.0f;
            continue;
          }
          // src[v·sw] for v in [first, end); locals, not m's fields: the stores through d
          // could alias m, and the loop reloaded the stride on every element (21% of a
          // stride-2 layer)
          const int64_t sw = m.sw, wq = m.wq, len = end - first;
          const float* __restrict src = xc + r * m.w + (first * sw + px - m.pl);  // input column of v = first
          float* __restrict dv = d + first;
          for (int64_t v = 0; v < first; ++v) d[v] = 0.0f;
          if (sw == 1) {
            for (int64_t v = 0; v < len; ++v) dv[v] = src[v];
          } else if (sw == 2) {
            for (int64_t v = 0; v < len; ++v) dv[v] = src[2 * v];
          } else {
            for (int64_t v = 0; v < len; ++v) dv[v] = src[v * sw];
          }
          for (int64_t v = end; v < wq; ++v) d[v] = 0.0f;
        }
      }
    }
  }
  // the tail is read only into the wasted columns; zeros keep it defined
  std::fill(xq + m.sh * m.sw * m.phase_floats(), xq + m.xpad_floats(), 0.0f);
}

// The micro-kernel set of the implicit GEMM for geometry m, and whether its tiles are row
// segments (below).  The packed weights' strips follow its mr, so the pack is rebuilt when it
// changes (the ISA cap follows set_isa_cap on every call).
struct ImplicitChoice {
  const gemm::KernelSet* ks = nullptr;
  bool rows = false;
  int64_t strips = 0;
};
inline ImplicitChoice implicit_choice(const Implicit& m) {
  ImplicitChoice ch;
  ch.ks = active_kernels(m.grid);
  ch.rows = m.wo % ch.ks->nr == 0;
  if (!ch.rows && ch.ks->narrow != nullptr && m.wo % ch.ks->narrow->nr == 0) {
    ch.ks = ch.ks->narrow;
    ch.rows = true;
  }
  ch.strips = (m.cout + ch.ks->mr - 1) / ch.ks->mr;
  return ch;
}

// Strip s of the output channels: [cout·s / strips, cout·(s + 1) / strips) — rows split evenly
// over the strips (64 = 11+11+11+11+10+10, not 5x12+4: a 4-row strip does 8 FMAs per 6 loads).
inline int64_t strip_begin(int64_t cout, int64_t strips, int64_t s) { return cout * s / strips; }

// The GEMM's A for every tap, strip-major: strip s (rows o0 .. o0 + R) is one contiguous block
// at wp + o0·taps·cin holding [tap][c][r] (k-major, as = R), so each micro-kernel call streams
// its A and a strip's block is read in order for every tile.  Before (issue 15) A was
// wt[tap][c][o] (as = cout), repacked per call with one pass over w per tap: for ResNet-18's
// 512-channel 3x3 layers (9.4 MB of weights) the repack and the 2 KiB-strided A reads made the
// layer 27 ms at batch 1 on 2 threads, 6x slower per FLOP than the 64-channel ones.
// value(tap, c, o): w[o][c][tap] (w is (cout, cin, kh, kw)), or when flip w[c][o][taps-1-tap]
// (w is (cin, cout, kh, kw): the forward's (O, C, kh, kw) read at the flipped tap).  A pure
// copy, split over the threads by strip: the same bits at any thread count.
inline void pack_implicit_weights(const Implicit& m, int64_t strips, const float* w, bool flip, float* wp,
                                  int threads) {
  const int64_t taps = m.kh * m.kw, cin = m.cin, cout = m.cout;
  parallel_for(strips, threads, 1, [&](int64_t sb, int64_t se) {
    for (int64_t s = sb; s < se; ++s) {
      const int64_t o0 = strip_begin(cout, strips, s), nrows = strip_begin(cout, strips, s + 1) - o0;
      float* __restrict d = wp + o0 * taps * cin;
      if (!flip) {
        for (int64_t r = 0; r < nrows; ++r) {  // w row o0 + r: cin·taps contiguous floats
          const float* src = w + (o0 + r) * cin * taps;
          for (int64_t c = 0; c < cin; ++c) {
            for (int64_t tap = 0; tap < taps; ++tap) d[(tap * cin + c) * nrows + r] = src[c * taps + tap];
          }
        }
      } else {
        for (int64_t c = 0; c < cin; ++c) {  // w[c][o0 .. o0 + nrows][taps] is contiguous
          const float* src = w + (c * cout + o0) * taps;
          for (int64_t r = 0; r < nrows; ++r) {
            for (int64_t tap = 0; tap < taps; ++tap) d[(tap * cin + c) * nrows + r] = src[r * taps + (taps - 1 - tap)];
          }
        }
      }
    }
  });
}

// The convolution of one image (xq) into y (cout x ho x wo) with the strip-major packed
// weights wp (pack_implicit_weights under the same choice); tiles split over `threads`.
// When whole tiles fit in an output row (Wo a multiple of the panel width: 32x32 images on
// AVX-512, or 16x16 ones on its 16-wide kernel or on AVX2), the tiles are row segments written
// straight into y: no wasted columns, no copy.  Otherwise the tiles run along the grid into
// ygrid and the valid columns are copied out (unpad_output).  Either way each output element
// is the same FMA chain over (tap, c), so the two give the same bits.  Returns whether y holds
// the result (else ygrid does).
inline bool implicit_gemm(const Implicit& m, const ImplicitChoice& ch, const float* xq, const float* wp,
                          float* ygrid, float* y, int threads) {
  const gemm::KernelSet* ks = ch.ks;
  const bool rows = ch.rows;
  const int64_t nr = ks->nr, strips = ch.strips;
  const int64_t tiles = rows ? m.ho * (m.wo / nr) : (m.grid + nr - 1) / nr;
  const int64_t taps = m.kh * m.kw, p = m.ho * m.wo;
  auto run = [&](int64_t b, int64_t e) {
    for (int64_t task = b; task < e; ++task) {
      const int64_t s = task / tiles, t = task - s * tiles;
      const int64_t o0 = strip_begin(m.cout, strips, s), nrows = strip_begin(m.cout, strips, s + 1) - o0;
      const gemm::MicroFn micro = ks->micro[nrows];
      const float* a = wp + o0 * taps * m.cin;
      int64_t p0, ncols, ldc;  // the tile's first grid position, its width; c and its row stride
      float* c;
      if (rows) {
        const int64_t i = t / (m.wo / nr), j0 = (t - i * (m.wo / nr)) * nr;
        p0 = i * m.wq + j0, ncols = nr, ldc = p, c = y + o0 * p + i * m.wo + j0;
      } else {
        p0 = t * nr, ncols = std::min(nr, m.grid - p0), ldc = m.grid, c = ygrid + o0 * m.grid + p0;
      }
      for (int64_t tap = 0; tap < taps; ++tap) {
        const int64_t aa = tap / m.kw, bb = tap - aa * m.kw;
        micro(m.cin, a + tap * m.cin * nrows, nrows, xq + m.tap_offset(aa, bb) + p0, m.plane(), c, ldc, ncols,
              tap > 0);
      }
    }
  };
  // strip-major task order: a strip's weights (taps·cin·mr floats) stay in cache across its tiles
  parallel_for(strips * tiles, threads, std::max<int64_t>(1, (strips * tiles) / std::max(threads, 1)), run);
  return rows;
}

// y (cout x ho x wo) = the valid columns of the padded grid.
inline void unpad_output(const Implicit& m, const float* ygrid, float* y) {
  for (int64_t o = 0; o < m.cout; ++o) {
    for (int64_t i = 0; i < m.ho; ++i) {
      const float* s = ygrid + o * m.grid + i * m.wq;
      float* d = y + (o * m.ho + i) * m.wo;
      for (int64_t j = 0; j < m.wo; ++j) d[j] = s[j];
    }
  }
}

// dx (one image, zeroed first) += the column matrix's entries at the positions im2col read
// them from, in the fixed order (c, a, b, i, j); padding entries are dropped.
template <class T> void col2im(const ConvGeom& q, const T* col, T* dx) {
  std::fill(dx, dx + q.c * q.h * q.w, T(0));
  for (int64_t c = 0; c < q.c; ++c) {
    T* xc = dx + c * q.h * q.w;
    for (int64_t a = 0; a < q.kh; ++a) {
      for (int64_t b = 0; b < q.kw; ++b) {
        const T* row = col + ((c * q.kh + a) * q.kw + b) * q.p;
        const int64_t off = b * q.dw - q.pl;
        const int64_t j0 = off >= 0 ? 0 : std::min(q.wo, (-off + q.sw - 1) / q.sw);
        const int64_t j1 = std::max(j0, std::min(q.wo, off >= q.w ? 0 : (q.w - 1 - off) / q.sw + 1));
        for (int64_t i = 0; i < q.ho; ++i) {
          const int64_t r = i * q.sh + a * q.dh - q.pt;
          if (r < 0 || r >= q.h) continue;
          const T* src = row + i * q.wo;
          T* dst = xc + r * q.w;
          for (int64_t j = j0; j < j1; ++j) dst[j * q.sw + off] += src[j];
        }
      }
    }
  }
}

// C (M x N, ldc) = op(A) op(B): float32 on the own GEMM; float64 in plain loops, each element
// one chain over k in order (the reference-precision path, not tuned).
void gemm_t(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B,
            int64_t ldb, float* C, int64_t ldc, int threads, float* scratch) {
  gemm::sgemm(ta, tb, M, N, K, A, lda, B, ldb, nullptr, C, ldc, threads, nullptr, nullptr, scratch);
}

void gemm_t(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const double* A, int64_t lda, const double* B,
            int64_t ldb, double* C, int64_t ldc, int, float*) {
  for (int64_t i = 0; i < M; ++i) {
    double* c = C + i * ldc;
    if (!tb) {
      std::fill(c, c + N, 0.0);
      for (int64_t k = 0; k < K; ++k) {
        const double aik = ta ? A[k * lda + i] : A[i * lda + k];
        const double* b = B + k * ldb;
        for (int64_t j = 0; j < N; ++j) c[j] += aik * b[j];
      }
    } else {
      for (int64_t j = 0; j < N; ++j) {
        const double* b = B + j * ldb;
        double s = 0.0;
        for (int64_t k = 0; k < K; ++k) s += (ta ? A[k * lda + i] : A[i * lda + k]) * b[k];
        c[j] = s;
      }
    }
  }
}

// Runs f(first image, end image, slot, gemm threads) over the images: chunks of images on up to
// `slots` threads at once, each chunk with single-threaded GEMMs and a workspace slot of its own,
// or one chunk whose GEMMs take every thread.  Several chunks per thread, claimed as threads get
// free, so a thread that another process holds up (a shared machine) does not stall the step:
// a chunk takes the lowest free slot, and at most `team` <= slots chunks run at once.
inline int64_t image_team(int64_t n, int64_t slots, int threads) {
  return std::max<int64_t>(1, std::min<int64_t>({n, slots, int64_t(threads), int64_t(64)}));
}

template <class F> void for_images(int64_t n, int64_t slots, int threads, F&& f) {
  const int64_t team = image_team(n, slots, threads);
  if (team == 1) {
    f(int64_t(0), n, int64_t(0), threads);
    return;
  }
  const int64_t chunks = std::min<int64_t>(n, 4 * team);
  std::atomic<uint64_t> busy{0};
  auto chunk = [&](int c) {
    uint64_t cur = busy.load(std::memory_order_relaxed);
    int64_t slot = 0;
    for (;;) {
      slot = __builtin_ctzll(~cur);  // a free bit exists: fewer than 64 chunks run at once
      if (busy.compare_exchange_weak(cur, cur | (uint64_t(1) << slot), std::memory_order_acquire)) break;
    }
    f(n * c / chunks, n * (c + 1) / chunks, slot, 1);
    busy.fetch_and(~(uint64_t(1) << slot), std::memory_order_release);
  };
  WorkerPool::get().run(static_cast<int>(chunks), chunk, static_cast<int>(team));
}

// The float32 GEMMs' scratch (gemm.h) of a kernel that runs for_images(n, slots, threads): one
// region per image slot for single-threaded GEMMs of M x N x K, or one for the GEMM that
// takes every thread (a team of one); allocated when the kernel is prepared, so a run
// allocates nothing.  Float64 kernels need none.
template <class T> struct GemmScratch {
  gemm::Scratch buf;
  int64_t per_slot = 0;
  GemmScratch(int64_t n, int64_t slots, int threads, int64_t M, int64_t N, int64_t K) {
    if (!std::is_same<T, float>::value) return;
    per_slot = gemm::scratch_floats(M, N, K, 1, false);
    const int64_t threaded = gemm::scratch_floats(M, N, K, threads, false);
    buf = gemm::Scratch(std::max(image_team(n, slots, threads) * per_slot, threaded));
  }
  float* at(int64_t slot) const { return buf.data() ? buf.data() + slot * per_slot : nullptr; }
};

template <class T> Kernel fill_zero_kernel(T* out, int64_t count) {
  if (count == 0) return no_op_kernel();
  return [=]() { std::fill(out, out + count, T(0)); };
}

// The workspace at index i: `slots` tensors of `per_slot` dims, dtype T.
template <class T> T* check_slots(const KernelArgs& a, size_t i, int64_t slots, const std::vector<int64_t>& per_slot,
                                  const std::string& what) {
  const std::string name = "workspace " + std::to_string(i) + " (" + what + ")";
  if (a.ws.size() <= i) a.fail("expects a planned " + name + " (the plan has " + std::to_string(a.ws.size()) + ")");
  std::vector<int64_t> want = {slots};
  want.insert(want.end(), per_slot.begin(), per_slot.end());
  expect_dtype(a, a.ws[i], dtype_of<T>(), name);
  expect_dims(a, a.ws[i], want, name);
  return a.ws[i].as<T>();
}

// dst (cols x rows) = src (rows x cols) transposed, in tiles that stay in L1.
template <class T> void transpose(const T* src, int64_t rows, int64_t cols, T* dst) {
  constexpr int64_t kTile = 16;
  for (int64_t r0 = 0; r0 < rows; r0 += kTile) {
    const int64_t r1 = std::min(rows, r0 + kTile);
    for (int64_t c0 = 0; c0 < cols; c0 += kTile) {
      const int64_t c1 = std::min(cols, c0 + kTile);
      for (int64_t c = c0; c < c1; ++c) {
        for (int64_t r = r0; r < r1; ++r) dst[c * rows + r] = src[r * cols + c];
      }
    }
  }
}

// Channels below which a tap's K (= input channels) is too short for the implicit GEMM: each
// micro-kernel call loads and stores its C tile once per tap (the 3-channel stem stays on im2col).
constexpr int64_t kImplicitMinChannels = 16;

// graphc/ops/conv.py's _implicit (and the workspace functions that call it) takes the same decisions.
inline bool forward_is_implicit(const ConvGeom& q) {
  return q.g == 1 && q.kh * q.kw > 1 && q.c >= kImplicitMinChannels;
}
inline bool grad_input_is_implicit(const ConvGeom& q) {
  return q.g == 1 && q.sh == 1 && q.sw == 1 && q.kh * q.kw > 1 && q.o >= kImplicitMinChannels &&
         q.pt <= q.dh * (q.kh - 1) && q.pb <= q.dh * (q.kh - 1) && q.pl <= q.dw * (q.kw - 1) &&
         q.pr <= q.dw * (q.kw - 1);
}

// No inf or NaN among p[0, n): exponent bits all ones, tested on the integer bits (the loop
// vectorizes; a float reduction would not, without reassociation).
inline bool all_finite(const float* p, int64_t n) {
  uint32_t bad = 0;
  for (int64_t i = 0; i < n; ++i) {
    uint32_t bits;
    std::memcpy(&bits, p + i, sizeof bits);
    bad |= static_cast<uint32_t>((bits & 0x7f800000u) == 0x7f800000u);
  }
  return bad == 0;
}

// conv2d_grad_input of one image by its definition, for weights with inf or NaN: dx[c][h][w]
// += dy[o][i][j] · w[o][c][a][b] over the taps that read x[c][h][w] (m is the flipped
// convolution's geometry: dy is its input (m.cin = O channels of m.h x m.w), dx its output).
inline void scatter_grad_input(const Implicit& m, const float* dy, const float* w, float* dx) {
  const int64_t o_ch = m.cin, c_ch = m.cout, taps = m.kh * m.kw;
  const int64_t pt = m.dh * (m.kh - 1) - m.pt, pl = m.dw * (m.kw - 1) - m.pl;  // the forward's pads
  std::fill(dx, dx + c_ch * m.ho * m.wo, 0.0f);
  for (int64_t o = 0; o < o_ch; ++o) {
    for (int64_t i = 0; i < m.h; ++i) {
      for (int64_t j = 0; j < m.w; ++j) {
        const float g = dy[(o * m.h + i) * m.w + j];
        for (int64_t c = 0; c < c_ch; ++c) {
          for (int64_t tap = 0; tap < taps; ++tap) {
            const int64_t a = tap / m.kw, b = tap - a * m.kw;
            const int64_t r = i + a * m.dh - pt, q = j + b * m.dw - pl;
            if (r >= 0 && r < m.ho && q >= 0 && q < m.wo) {
              dx[(c * m.ho + r) * m.wo + q] += g * w[(o * c_ch + c) * taps + tap];
            }
          }
        }
      }
    }
  }
}

// The implicit GEMM's packed weights of a tracked weight (KernelArgs::in_version), kept across
// runs: valid for `version` under the micro-kernel set `ks` with `strips` strips.  Storage is
// allocated when the kernel is prepared, so a run allocates nothing; runs of one executor are
// serialised, the mutex guards a kernel shared otherwise.
struct WeightPack {
  explicit WeightPack(int64_t floats) : data(static_cast<size_t>(floats)) {}
  std::mutex mu;
  std::vector<float> data;
  bool valid = false, finite = true;
  uint64_t version = 0;
  int64_t strips = 0;
  const gemm::KernelSet* ks = nullptr;
};

// The slot count of the implicit GEMM's first workspace (3 in all: checked by the caller).
inline int64_t implicit_slots(const KernelArgs& args) {
  if (args.ws.size() != 3) {
    args.fail("expects 3 planned workspaces (implicit GEMM), got " + std::to_string(args.ws.size()));
  }
  const int64_t slots = args.ws[0].dims.size() == 2 ? args.ws[0].dims[0] : 0;
  if (slots < 1) {
    args.fail("workspace 0 (padded images) must have shape (slots >= 1, n), got " + format_dims(args.ws[0].dims));
  }
  return slots;
}

// The implicit-GEMM kernel over n images of m.cin channels: workspaces xpad (slots, xpad
// floats), ygrid (slots, cout·grid) and wt (taps·cin, cout).  w is the OIHW weight of the
// convolution (flip: of the convolution whose input gradient this is: wt[tap'][o][c] =
// w[o][c][flipped tap'], so the GEMM's input channels are w's output channels).
Kernel implicit_kernel(const KernelArgs& args, const Implicit& m, int64_t n, const float* in, const float* w,
                       float* out, bool flip) {
  const int64_t slots = implicit_slots(args);
  float* xpads = check_slots<float>(args, 0, slots, {m.xpad_floats()}, "padded images");
  float* grids = check_slots<float>(args, 1, slots, {m.cout * m.grid}, "output on the padded grid");
  float* wt = check_slots<float>(args, 2, m.kh * m.kw * m.cin, {m.cout}, "repacked weights");
  const int threads = args.ctx.threads;
  // A weight whose changes the executor tracks (a constant, a variable) is packed into storage
  // of the kernel's own, allocated here, and repacked only when its version (or the micro-kernel
  // set) changed: an inference plan packs once.  Otherwise the step's workspace takes the pack.
  const uint64_t* version = args.input_version(1);
  std::shared_ptr<WeightPack> cache;
  if (version != nullptr) cache = std::make_shared<WeightPack>(m.kh * m.kw * m.cin * m.cout);
  return [=]() {
    const int64_t taps = m.kh * m.kw;
    const ImplicitChoice ch = implicit_choice(m);
    const float* wp = wt;
    bool finite = true;
    if (cache) {
      std::lock_guard<std::mutex> lock(cache->mu);
      if (!cache->valid || cache->version != *version || cache->strips != ch.strips || cache->ks != ch.ks) {
        cache->finite = !flip || all_finite(w, taps * m.cin * m.cout);
        if (cache->finite) pack_implicit_weights(m, ch.strips, w, flip, cache->data.data(), threads);
        cache->valid = true, cache->version = *version, cache->strips = ch.strips, cache->ks = ch.ks;
      }
      finite = cache->finite;
      wp = cache->data.data();
    } else {
      finite = !flip || all_finite(w, taps * m.cin * m.cout);
      if (finite) pack_implicit_weights(m, ch.strips, w, flip, wt, threads);
    }
    if (!finite) {
      // The flipped convolution would add 0 · w for the taps that fall into dy's padding:
      // NaN where w is inf or NaN, which the op's definition (and the im2col path) leaves out.
      for_images(n, n, threads, [&](int64_t n0, int64_t n1, int64_t, int) {
        for (int64_t i = n0; i < n1; ++i) {
          scatter_grad_input(m, in + i * m.cin * m.h * m.w, w, out + i * m.cout * m.ho * m.wo);
        }
      });
      return;
    }
    for_images(n, slots, threads, [&](int64_t n0, int64_t n1, int64_t slot, int t) {
      float* xpad = xpads + slot * m.xpad_floats();
      float* grid = grids + slot * m.cout * m.grid;
      for (int64_t i = n0; i < n1; ++i) {
        pad_image(m, in + i * m.cin * m.h * m.w, xpad);
        float* y = out + i * m.cout * m.ho * m.wo;
        if (!implicit_gemm(m, ch, xpad, wp, grid, y, t)) unpad_output(m, grid, y);
      }
    });
  };
}

// Images whose weight-gradient products are summed in one chain into one partial (below): the
// chain does not depend on the thread count, and the partials to add up afterwards are 4x fewer.
// graphc/ops/conv.py's IMAGES_PER_PARTIAL sizes the workspace by it.
constexpr int64_t kImagesPerPartial = 4;

// conv2d_grad_weight of one image by its definition (for an image with inf or NaN, below):
// part[tap][c][o] (+)= Σ_{i,j} dy[o][i][j] · x_pad[c][i·sh + a·dh][j·sw + b·dw], padding as 0.
inline void direct_grad_weight(const ConvGeom& q, const float* dy, const float* x, float* part, bool accumulate) {
  const int64_t taps = q.kh * q.kw;
  for (int64_t tap = 0; tap < taps; ++tap) {
    const int64_t a = tap / q.kw, b = tap - a * q.kw;
    for (int64_t c = 0; c < q.c; ++c) {
      for (int64_t o = 0; o < q.o; ++o) {
        float s = 0.0f;
        for (int64_t i = 0; i < q.ho; ++i) {
          const int64_t r = i * q.sh + a * q.dh - q.pt;
          for (int64_t j = 0; j < q.wo; ++j) {
            const int64_t col = j * q.sw + b * q.dw - q.pl;
            const float xv = r >= 0 && r < q.h && col >= 0 && col < q.w ? x[(c * q.h + r) * q.w + col] : 0.0f;
            s += dy[(o * q.ho + i) * q.wo + j] * xv;
          }
        }
        float& dst = part[(tap * q.c + c) * q.o + o];
        dst = accumulate ? dst + s : s;
      }
    }
  }
}

// conv2d_grad_weight as an implicit GEMM (the forward's conditions): per image and tap,
// part[tap] (C x O) = Xs (C x G) · dyT (G x O), where Xs(c, p') = xq[phase][c][offset(tap) + p']
// is the forward's B read as a row-major A (micro_rows) and dyT (G x O) is dy transposed onto the
// grid, zero in the wasted columns.  Those columns meet real values of x there (0 · x), so an
// image holding inf or NaN is done by the definition instead (direct_grad_weight).  Each group of
// kImagesPerPartial images accumulates into one partial (layout [tap][c][o]) in image order; the
// partials are summed in group order and permuted into dw[o][c][tap].
// Workspaces: xq (slots, xpad floats), dyT (slots, G·O + kPanel), partials (groups, O·C·kh·kw).
Kernel implicit_grad_weight_kernel(const KernelArgs& args, const ConvGeom& q, const float* dy, const float* x,
                                   float* dw) {
  const Implicit m = implicit_geom(q.c, q.o, q.h, q.w, q.kh, q.kw, q.dh, q.dw, q.pt, q.pl, q.pb, q.pr, q.sh, q.sw);
  const int64_t slots = implicit_slots(args);
  float* xqs = check_slots<float>(args, 0, slots, {m.xpad_floats()}, "padded images");
  float* dyts = check_slots<float>(args, 1, slots, {m.grid * q.o + kPanel}, "dy transposed onto the grid");
  const int64_t wsize = q.o * q.c * q.kh * q.kw;
  const int64_t groups = (q.n + kImagesPerPartial - 1) / kImagesPerPartial;
  float* parts = check_slots<float>(args, 2, groups, {wsize}, "partial sums of image groups");
  const int threads = args.ctx.threads;
  return [=]() {
    const int64_t taps = q.kh * q.kw;
    // work units: groups of kImagesPerPartial images, each one chunk's, summed in one chain
    for_images(groups, slots, threads, [&](int64_t g0, int64_t g1, int64_t slot, int t) {
      float* xq = xqs + slot * m.xpad_floats();
      float* dyt = dyts + slot * (m.grid * q.o + kPanel);
      for (int64_t n = g0 * kImagesPerPartial; n < std::min(q.n, g1 * kImagesPerPartial); ++n) {
        const float* xn = x + n * q.c * q.h * q.w;
        const float* dyn = dy + n * q.o * q.p;
        float* part = parts + n / kImagesPerPartial * wsize;
        const bool accumulate = n % kImagesPerPartial != 0;  // continue the group's chain
        if (!all_finite(xn, q.c * q.h * q.w)) {
          direct_grad_weight(q, dyn, xn, part, accumulate);
          continue;
        }
        pad_image(m, xn, xq);
        // dyt[i·wq + j][o] = dy[o][i][j], in blocks of 8 channels: 8 read streams, 32-byte writes
        // (one channel at a time wrote single floats at a stride of O floats; all channels at
        // once read at a stride of P floats, 4 KiB at 32x32, which aliases in L1)
        for (int64_t o0 = 0; o0 < q.o; o0 += 8) {
          const int64_t ob = std::min<int64_t>(8, q.o - o0);
          const float* src = dyn + o0 * q.p;
          for (int64_t i = 0; i < q.ho; ++i) {
            for (int64_t j = 0; j < q.wo; ++j) {
              float* d = dyt + (i * m.wq + j) * q.o + o0;
              const float* sp = src + i * q.wo + j;
              for (int64_t oo = 0; oo < ob; ++oo) d[oo] = sp[oo * q.p];
            }
          }
        }
        for (int64_t i = 0; i < q.ho; ++i) {
          std::fill(dyt + (i * m.wq + q.wo) * q.o, dyt + (i + 1) * m.wq * q.o, 0.0f);
        }
        std::fill(dyt + m.grid * q.o, dyt + m.grid * q.o + kPanel, 0.0f);
        const gemm::KernelSet* ks = active_kernels(q.o);
        const int64_t mr = ks->mr, nr = ks->nr;
        const int64_t strips = (q.c + mr - 1) / mr, tiles = (q.o + nr - 1) / nr;
        auto run = [&](int64_t b, int64_t e) {
          for (int64_t task = b; task < e; ++task) {
            const int64_t tap = task / (strips * tiles), rest = task - tap * strips * tiles;
            const int64_t s = rest / tiles, tl = rest - s * tiles;
            const int64_t c0 = q.c * s / strips, rows = q.c * (s + 1) / strips - c0;
            const int64_t o0 = tl * nr, ncols = std::min(nr, q.o - o0);
            const int64_t a = tap / q.kw, bb = tap - a * q.kw;
            ks->micro_rows[rows](m.grid, xq + m.tap_offset(a, bb) + c0 * m.plane(), m.plane(), dyt + o0, q.o,
                                 part + (tap * q.c + c0) * q.o + o0, q.o, ncols, accumulate);
          }
        };
        const int64_t tasks = taps * strips * tiles;
        parallel_for(tasks, t, std::max<int64_t>(1, tasks / std::max(t, 1)), run);
      }
    });
    // part[0][e] = ((part[0][e] + part[1][e]) + part[2][e]) + ...: image order, whatever the split over e
    parallel_for(wsize, threads, 4096, [&](int64_t b, int64_t e) {
      for (int64_t n = 1; n < groups; ++n) {
        const float* src = parts + n * wsize;
        for (int64_t i = b; i < e; ++i) parts[i] += src[i];
      }
    });
    for (int64_t o = 0; o < q.o; ++o) {
      for (int64_t c = 0; c < q.c; ++c) {
        for (int64_t tap = 0; tap < taps; ++tap) dw[(o * q.c + c) * taps + tap] = parts[(tap * q.c + c) * q.o + o];
      }
    }
  };
}

// The forward's im2col band (floats): 256 KiB, within L2 with the GEMM's A.
constexpr int64_t kBandFloats = 64 * 1024;

// Y[n]_g (Og x P, in place in y) = W_g (Og x K) · col_g (K x P) for one image.
inline void forward_image(const ConvGeom& q, const float* xn, const float* w, float* col, float* yn, int t,
                          float* scratch) {
  if (q.pointwise) {  // the image is its own column matrix (sgemm packs it)
    for (int64_t g = 0; g < q.g; ++g) {
      gemm::sgemm(false, false, q.og, q.p, q.k, w + g * q.og * q.k, q.k, xn + g * q.k * q.p, q.p, nullptr,
                  yn + g * q.og * q.p, q.p, t, nullptr, nullptr, scratch);
    }
    return;
  }
  const gemm::KernelSet* ks = active_kernels(q.p);
  if (ks->nr > kPanel || (ks->nr & (ks->nr - 1)) != 0) {  // every kernel today: 16 or 32
    throw std::runtime_error("conv2d: the GEMM's panel width " + std::to_string(ks->nr) + " is not a power of 2 <= " +
                             std::to_string(kPanel));
  }
  // Bands of panels whose column matrix (all groups) is about kBandFloats: im2col writes a band
  // and the GEMM reads it back while it is in L2 (the stem's whole 7x7/2 column matrix at 224x224
  // is 7.4 MB per image).  Each output element is still one chain over k (gemm.h), so the bits
  // do not depend on the band.
  const int64_t nr = ks->nr, panels = (q.p + nr - 1) / nr;
  const int64_t band = std::max<int64_t>(1, std::min(panels, kBandFloats / std::max<int64_t>(1, q.g * q.k * nr)));
  for (int64_t pb0 = 0; pb0 < panels; pb0 += band) {
    const int64_t pb1 = std::min(panels, pb0 + band), n0 = pb0 * nr, ncols = std::min(q.p, pb1 * nr) - n0;
    const int64_t gstride = im2col_panels(q, xn, col, nr, pb0, pb1);
    for (int64_t g = 0; g < q.g; ++g) {
      gemm::PackedB pb;
      pb.K = q.k, pb.N = ncols, pb.nr = static_cast<int>(nr), pb.kernel = ks->name, pb.data = col + g * gstride;
      gemm::sgemm(false, false, q.og, ncols, q.k, w + g * q.og * q.k, q.k, nullptr, 0, &pb,
                  yn + g * q.og * q.p + n0, q.p, t, nullptr, nullptr, scratch);
    }
  }
}

inline void forward_image(const ConvGeom& q, const double* xn, const double* w, double* col, double* yn, int t,
                          float* scratch) {
  if (!q.pointwise) im2col(q, xn, col);
  const double* src = q.pointwise ? xn : col;
  for (int64_t g = 0; g < q.g; ++g) {
    gemm_t(false, false, q.og, q.p, q.k, w + g * q.og * q.k, q.k, src + g * q.k * q.p, q.p, yn + g * q.og * q.p, q.p,
           t, scratch);
  }
}

// conv2d(x, w) -> y.
template <class T> Kernel conv_kernel(const KernelArgs& args) {
  const ConvGeom q = conv2d_check(args);
  const TensorRef &x = args.in[0], &w = args.in[1];
  T* py = args.out[0].as<T>();
  if (numel_of(args.out[0]) == 0) return no_op_kernel();
  if (q.k == 0) return fill_zero_kernel(py, numel_of(args.out[0]));  // no input channels: sums of nothing
  if (std::is_same<T, float>::value && forward_is_implicit(q)) {
    return implicit_kernel(args,
                           implicit_geom(q.c, q.o, q.h, q.w, q.kh, q.kw, q.dh, q.dw, q.pt, q.pl, q.pb, q.pr, q.sh,
                                         q.sw),
                           q.n, reinterpret_cast<const float*>(x.data), reinterpret_cast<const float*>(w.data),
                           reinterpret_cast<float*>(py), /*flip=*/false);
  }
  const int64_t width = round_up_panel(q.p);
  const int64_t slots = q.pointwise ? q.n : check_cols<T>(args, q, 0, width);
  T* pcol = q.pointwise ? nullptr : args.ws[0].as<T>();
  const T* px = x.as<const T>();
  const T* pw = w.as<const T>();
  const int threads = args.ctx.threads;
  const GemmScratch<T> scratch(q.n, slots, threads, q.og, q.p, q.k);
  return [=]() {
    for_images(q.n, slots, threads, [&](int64_t n0, int64_t n1, int64_t slot, int t) {
      T* col = q.pointwise ? nullptr : pcol + slot * q.g * q.k * width;
      for (int64_t n = n0; n < n1; ++n) {
        forward_image(q, px + n * q.c * q.h * q.w, pw, col, py + n * q.o * q.p, t, scratch.at(slot));
      }
    });
  };
}

// conv2d_grad_input(dy, w) -> dx
template <class T> Kernel grad_input_kernel(const KernelArgs& args) {
  const ConvGeom q = conv2d_grad_input_check(args);
  const TensorRef &dy = args.in[0], &w = args.in[1];
  T* pdx = args.out[0].as<T>();
  if (numel_of(args.out[0]) == 0) return no_op_kernel();
  if (q.og == 0) return fill_zero_kernel(pdx, numel_of(args.out[0]));  // no output channels
  if (std::is_same<T, float>::value && grad_input_is_implicit(q)) {
    // dx is the stride-1 convolution of dy with the flipped, transposed kernel, padded by d·(k-1) - p
    const Implicit m = implicit_geom(q.o, q.c, q.ho, q.wo, q.kh, q.kw, q.dh, q.dw, q.dh * (q.kh - 1) - q.pt,
                                     q.dw * (q.kw - 1) - q.pl, q.dh * (q.kh - 1) - q.pb, q.dw * (q.kw - 1) - q.pr);
    if (m.ho != q.h || m.wo != q.w) args.fail("internal: the flipped convolution's output is not x's size");
    return implicit_kernel(args, m, q.n, reinterpret_cast<const float*>(dy.data),
                           reinterpret_cast<const float*>(w.data), reinterpret_cast<float*>(pdx), /*flip=*/true);
  }
  const int64_t slots = q.pointwise ? 1 : check_cols<T>(args, q, 0, q.p);
  T* pcol = q.pointwise ? nullptr : args.ws[0].as<T>();
  const T* pdy = dy.as<const T>();
  const T* pw = w.as<const T>();
  const int threads = args.ctx.threads;
  const GemmScratch<T> scratch(q.n, q.pointwise ? q.n : slots, threads, q.k, q.p, q.og);
  return [=]() {
    for_images(q.n, q.pointwise ? q.n : slots, threads, [&](int64_t n0, int64_t n1, int64_t slot, int t) {
      T* col = q.pointwise ? nullptr : pcol + slot * q.g * q.k * q.p;
      for (int64_t n = n0; n < n1; ++n) {
        T* dxn = pdx + n * q.c * q.h * q.w;
        T* dst = q.pointwise ? dxn : col;
        for (int64_t g = 0; g < q.g; ++g) {
          gemm_t(true, false, q.k, q.p, q.og, pw + g * q.og * q.k, q.k, pdy + (n * q.o + g * q.og) * q.p, q.p,
                 dst + g * q.k * q.p, q.p, t, scratch.at(slot));
        }
        if (!q.pointwise) col2im(q, col, dxn);
      }
    });
  };
}

// conv2d_grad_weight(dy, x) -> dw.  Per image and group, the partial dW^T (K x Og) = col (K x P) ·
// dY^T (P x Og) (the better GEMM shape, as the forward's), stored per image; the partials are
// then summed in image order and transposed into dw.
template <class T> Kernel grad_weight_kernel(const KernelArgs& args) {
  const ConvGeom q = conv2d_grad_weight_check(args);
  const TensorRef &dy = args.in[0], &x = args.in[1];
  T* pdw = args.out[0].as<T>();
  const int64_t wsize = numel_of(args.out[0]);
  if (wsize == 0) return no_op_kernel();
  if (q.n == 0) return fill_zero_kernel(pdw, wsize);  // a sum over no images
  if (std::is_same<T, float>::value && forward_is_implicit(q)) {
    return implicit_grad_weight_kernel(args, q, reinterpret_cast<const float*>(dy.data),
                                       reinterpret_cast<const float*>(x.data), reinterpret_cast<float*>(pdw));
  }
  const int64_t slots = q.pointwise ? q.n : check_cols<T>(args, q, 0, q.p);
  T* pcol = q.pointwise ? nullptr : args.ws[0].as<T>();
  // per image, per group: the K x Og partial product (the layout of dims (N, O, C/g, kh, kw)'s bytes)
  T* ppart = check_slots<T>(args, q.pointwise ? 0 : 1, q.n, q.w_dims(), "per-image partial sums");
  const T* pdy = dy.as<const T>();
  const T* px = x.as<const T>();
  const int threads = args.ctx.threads;
  const GemmScratch<T> scratch(q.n, slots, threads, q.k, q.og, q.p);
  return [=]() {
    for_images(q.n, slots, threads, [&](int64_t n0, int64_t n1, int64_t slot, int t) {
      T* col = q.pointwise ? nullptr : pcol + slot * q.g * q.k * q.p;
      for (int64_t n = n0; n < n1; ++n) {
        const T* xn = px + n * q.c * q.h * q.w;
        if (!q.pointwise) im2col(q, xn, col);
        const T* src = q.pointwise ? xn : col;
        for (int64_t g = 0; g < q.g; ++g) {
          gemm_t(false, true, q.k, q.og, q.p, src + g * q.k * q.p, q.p, pdy + (n * q.o + g * q.og) * q.p, q.p,
                 ppart + n * wsize + g * q.k * q.og, q.og, t, scratch.at(slot));
        }
      }
    });
    // part[0][e] = ((part[0][e] + part[1][e]) + part[2][e]) + ...: image order, whatever the split over e
    parallel_for(wsize, threads, 4096, [&](int64_t b, int64_t e) {
      for (int64_t n = 1; n < q.n; ++n) {
        const T* src = ppart + n * wsize;
        for (int64_t i = b; i < e; ++i) ppart[i] += src[i];
      }
    });
    for (int64_t g = 0; g < q.g; ++g) transpose(ppart + g * q.k * q.og, q.k, q.og, pdw + g * q.og * q.k);
  };
}

}  // namespace
}  // namespace cpu

void register_conv_kernels(KernelRegistry& r) {
  using namespace cpu;
  add_typed<FloatTypes>(r, "conv2d", [](auto tag, const KernelArgs& a) {
    return conv_kernel<typename decltype(tag)::type>(a);
  });
  add_typed<FloatTypes>(r, "conv2d_grad_input", [](auto tag, const KernelArgs& a) {
    return grad_input_kernel<typename decltype(tag)::type>(a);
  });
  add_typed<FloatTypes>(r, "conv2d_grad_weight", [](auto tag, const KernelArgs& a) {
    return grad_weight_kernel<typename decltype(tag)::type>(a);
  });
}

}  // namespace graphc
