// layer_norm.cc — layer norm over the trailing axes x.shape[axis:] of a float tensor
// (graphc/ops/layer_norm.py has the semantics): layer_norm -> (y, mean, rstd) and
// layer_norm_grad -> (dx, dweight, dbias).
//
// x is (rows, n), row-major.  Sums are accumulated in double (16 lanes, one fixed combine order)
// and each output is rounded once to T, as the reference.  The forward is one task per row (read
// three times while it is in L1: Σx, Σ(x - mean)², then y); the backward is one task per block of
// rows, each row read while in L1 for Σg and Σg·x̂, its column partials and dx; dweight/dbias sum
// the blocks' partials in block order.  Every order depends on the shapes only, so results have
// the same bits for any thread count.  The row loops are compiled per ISA (layer_norm_rows.inc).
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "common.h"
#include "layer_norm_checks.h"
#include "isa.h"
#include "isa_target.h"

#if defined(__x86_64__)
#include <immintrin.h>  // the AVX-512 float32 row sums (used only inside their target region)
#endif

namespace graphc {
namespace cpu {
namespace {

// RowGeom, row_geom and the factories' checks: layer_norm_checks.h.

// The row loops for each ISA (layer_norm_rows.inc), chosen at kernel build from active_isa().
namespace isa_baseline {
#include "layer_norm_rows.inc"
}  // namespace isa_baseline

#if defined(__x86_64__)
GRAPHC_TARGET_AVX2_BEGIN
namespace isa_avx2 {
#include "layer_norm_rows.inc"
}  // namespace isa_avx2
GRAPHC_TARGET_END
GRAPHC_TARGET_AVX512_BEGIN
namespace isa_avx512 {
// float32's row sums with intrinsics (the vectoriser leaves the generic ones' 16 double lanes
// partly scalar): the generic operations in the generic lane order — lanes 0-7 and 8-15 are two
// zmm of doubles, the tail and the combine tree are the generic code's — so the same bits.
void row_moments(const float* __restrict xr, int64_t n, double* sx, double* su, double* su2);
void sum_g_gxh(const float* __restrict dyr, const float* __restrict xr, const float* __restrict w, int64_t n,
               double mean, double* s1, double* s2);
void write_y(const float* __restrict xr, const float* __restrict w, const float* __restrict b, float* __restrict yr,
             int64_t n, double mean, double rstd);
void write_dx(const float* __restrict dyr, const float* __restrict xr, const float* __restrict w,
              float* __restrict dxr, int64_t n, double mean, double rstd, double kx, double k0,
              double* __restrict sw, double* __restrict sb);

#include "layer_norm_rows.inc"

// maskz: the unmasked form trips a false -Wmaybe-uninitialized in GCC 12 (_mm512_undefined_pd)
inline __m512d load8(const float* p) { return _mm512_maskz_cvtps_pd(static_cast<__mmask8>(0xFF), _mm256_loadu_ps(p)); }

void row_moments(const float* __restrict xr, int64_t n, double* sx, double* su, double* su2) {
  const double x0 = static_cast<double>(xr[0]);
  const __m512d v0 = _mm512_set1_pd(x0);
  __m512d al = _mm512_setzero_pd(), ah = _mm512_setzero_pd(), bl = _mm512_setzero_pd(), bh = _mm512_setzero_pd(),
          cl = _mm512_setzero_pd(), ch = _mm512_setzero_pd();
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes) {
    const __m512d xl = load8(xr + j), xh = load8(xr + j + 8);
    const __m512d ul = _mm512_sub_pd(xl, v0), uh = _mm512_sub_pd(xh, v0);
    al = _mm512_add_pd(al, xl);
    ah = _mm512_add_pd(ah, xh);
    bl = _mm512_add_pd(bl, ul);
    bh = _mm512_add_pd(bh, uh);
    cl = _mm512_add_pd(cl, _mm512_mul_pd(ul, ul));
    ch = _mm512_add_pd(ch, _mm512_mul_pd(uh, uh));
  }
  double a[kLanes], b[kLanes], c[kLanes];
  _mm512_storeu_pd(a, al);
  _mm512_storeu_pd(a + 8, ah);
  _mm512_storeu_pd(b, bl);
  _mm512_storeu_pd(b + 8, bh);
  _mm512_storeu_pd(c, cl);
  _mm512_storeu_pd(c + 8, ch);
  for (; j < n; ++j) {
    const double x = static_cast<double>(xr[j]);
    const double u = x - x0;
    a[j % kLanes] += x;
    b[j % kLanes] += u;
    c[j % kLanes] += u * u;
  }
  *sx = combine_lanes(a);
  *su = combine_lanes(b);
  *su2 = combine_lanes(c);
}

void sum_g_gxh(const float* __restrict dyr, const float* __restrict xr, const float* __restrict w, int64_t n,
               double mean, double* s1, double* s2) {
  const __m512d vm = _mm512_set1_pd(mean);
  __m512d a1l = _mm512_setzero_pd(), a1h = _mm512_setzero_pd(), a2l = _mm512_setzero_pd(), a2h = _mm512_setzero_pd();
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes) {
    const __m512d gl = _mm512_mul_pd(load8(dyr + j), load8(w + j));
    const __m512d gh = _mm512_mul_pd(load8(dyr + j + 8), load8(w + j + 8));
    const __m512d xl = _mm512_sub_pd(load8(xr + j), vm);
    const __m512d xh = _mm512_sub_pd(load8(xr + j + 8), vm);
    a1l = _mm512_add_pd(a1l, gl);
    a1h = _mm512_add_pd(a1h, gh);
    a2l = _mm512_add_pd(a2l, _mm512_mul_pd(gl, xl));
    a2h = _mm512_add_pd(a2h, _mm512_mul_pd(gh, xh));
  }
  double a1[kLanes], a2[kLanes];
  _mm512_storeu_pd(a1, a1l);
  _mm512_storeu_pd(a1 + 8, a1h);
  _mm512_storeu_pd(a2, a2l);
  _mm512_storeu_pd(a2 + 8, a2h);
  for (; j < n; ++j) {
    const double gj = static_cast<double>(dyr[j]) * static_cast<double>(w[j]);
    a1[j % kLanes] += gj;
    a2[j % kLanes] += gj * (static_cast<double>(xr[j]) - mean);
  }
  *s1 = combine_lanes(a1);
  *s2 = combine_lanes(a2);
}

inline void store8(float* p, __m512d v) { _mm256_storeu_ps(p, _mm512_maskz_cvtpd_ps(static_cast<__mmask8>(0xFF), v)); }

void write_y(const float* __restrict xr, const float* __restrict w, const float* __restrict b, float* __restrict yr,
             int64_t n, double mean, double rstd) {
  const __m512d vm = _mm512_set1_pd(mean), vr = _mm512_set1_pd(rstd);
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) {
    const __m512d t = _mm512_mul_pd(_mm512_mul_pd(_mm512_sub_pd(load8(xr + j), vm), vr), load8(w + j));
    store8(yr + j, _mm512_add_pd(t, load8(b + j)));
  }
  for (; j < n; ++j) {
    yr[j] = static_cast<float>((static_cast<double>(xr[j]) - mean) * rstd * static_cast<double>(w[j]) +
                               static_cast<double>(b[j]));
  }
}

void write_dx(const float* __restrict dyr, const float* __restrict xr, const float* __restrict w,
              float* __restrict dxr, int64_t n, double mean, double rstd, double kx, double k0,
              double* __restrict sw, double* __restrict sb) {
  const __m512d vm = _mm512_set1_pd(mean), vr = _mm512_set1_pd(rstd), vx = _mm512_set1_pd(kx),
                v0 = _mm512_set1_pd(k0);
  int64_t c = 0;
  for (; c + 8 <= n; c += 8) {
    const __m512d d = load8(dyr + c);
    const __m512d xc = _mm512_sub_pd(load8(xr + c), vm);
    _mm512_storeu_pd(sw + c, _mm512_add_pd(_mm512_loadu_pd(sw + c), _mm512_mul_pd(d, _mm512_mul_pd(xc, vr))));
    _mm512_storeu_pd(sb + c, _mm512_add_pd(_mm512_loadu_pd(sb + c), d));
    const __m512d gj = _mm512_mul_pd(d, load8(w + c));
    const __m512d t = _mm512_add_pd(_mm512_add_pd(_mm512_mul_pd(vr, gj), _mm512_mul_pd(xc, vx)), v0);
    store8(dxr + c, t);
  }
  for (; c < n; ++c) {
    const double d = static_cast<double>(dyr[c]);
    const double xc = static_cast<double>(xr[c]) - mean;
    sw[c] += d * (xc * rstd);
    sb[c] += d;
    const double gj = d * static_cast<double>(w[c]);
    dxr[c] = static_cast<float>((rstd * gj + xc * kx) + k0);
  }
}
}  // namespace isa_avx512
GRAPHC_TARGET_END
#endif  // __x86_64__

template <class T> struct RowLoops {
  decltype(&isa_baseline::forward_rows<T>) forward;
  decltype(&isa_baseline::grad_rows<T>) grad;
  decltype(&isa_baseline::combine_columns<T>) columns;
};

template <class T> RowLoops<T> row_loops() {
#if defined(__x86_64__)
  const Isa isa = active_isa();
  if (isa == Isa::Avx512) return {isa_avx512::forward_rows<T>, isa_avx512::grad_rows<T>, isa_avx512::combine_columns<T>};
  if (isa == Isa::Avx2) return {isa_avx2::forward_rows<T>, isa_avx2::grad_rows<T>, isa_avx2::combine_columns<T>};
#endif
  return {isa_baseline::forward_rows<T>, isa_baseline::grad_rows<T>, isa_baseline::combine_columns<T>};
}

int64_t row_grain(int64_t n) { return std::max<int64_t>(1, (1 << 14) / std::max<int64_t>(1, n)); }

template <class T> Kernel layer_norm_kernel(const KernelArgs& args) {
  const auto chk = layer_norm_check(args);
  const auto& attr = chk.attr;
  const RowGeom& g = chk.g;
  const TensorRef& x = args.in[0];
  T* pmean = args.out[1].as<T>();
  T* prstd = args.out[2].as<T>();
  if (g.empty) {
    if (has_zero_dim(g.lead)) return no_op_kernel();
    const int64_t rows = g.rows;  // rows of length 0: 0/0, NaN statistics (the reference's answer)
    return [=]() {
      for (int64_t r = 0; r < rows; ++r) pmean[r] = prstd[r] = static_cast<T>(std::nan(""));
    };
  }
  const T* px = x.as<const T>();
  const T* pw = args.in[1].as<const T>();
  const T* pb = args.in[2].as<const T>();
  T* py = args.out[0].as<T>();
  const int64_t rows = g.rows, n = g.n;
  const double eps = attr.eps;
  const int threads = args.ctx.threads;
  const auto forward_rows = row_loops<T>().forward;
  return [=]() {
    parallel_for(rows, threads, row_grain(n), [&](int64_t rb, int64_t re) {
      forward_rows(px + rb * n, pw, pb, py + rb * n, n, re - rb, eps, pmean + rb, prstd + rb);
    });
  };
}

template <class T> Kernel layer_norm_grad_kernel(const KernelArgs& args) {
  const RowGeom g = layer_norm_grad_check(args).g;
  const TensorRef &dy = args.in[0], &x = args.in[1];
  T* pdw = args.out[1].as<T>();
  T* pdb = args.out[2].as<T>();
  if (g.empty) {
    if (has_zero_dim(g.tail)) return no_op_kernel();
    const int64_t n = g.n;  // no rows: the column sums are 0 (dx is empty)
    return [=]() {
      for (int64_t j = 0; j < n; ++j) pdw[j] = pdb[j] = T(0);
    };
  }
  const T* pdy = dy.as<const T>();
  const T* px = x.as<const T>();
  const T* pw = args.in[2].as<const T>();
  const T *pmean = args.in[3].as<const T>(), *prstd = args.in[4].as<const T>();
  const T *pdmean = args.in[5].as<const T>(), *pdrstd = args.in[6].as<const T>();
  T* pdx = args.out[0].as<T>();
  const int64_t rows = g.rows, n = g.n;
  const int threads = args.ctx.threads;
  const RowLoops<T> loops = row_loops<T>();
  const auto grad_rows = loops.grad;
  const auto combine_columns = loops.columns;
  // dweight/dbias: each block of R rows (R from the row count only: at most 64 blocks) sums its
  // rows' dy·x̂ and dy in row order into partials of its own while it computes their dx, then the
  // partials are summed in block order — one pass over dy and x, and the same bits at any thread
  // count.  Partials: nblocks·n doubles each, at most 64·n.
  const int64_t block_rows = std::max<int64_t>(16, (rows + 63) / 64);
  const int64_t nblocks = (rows + block_rows - 1) / block_rows;
  const int64_t block_grain = std::max<int64_t>(1, row_grain(n) / block_rows);
  const KernelBuffer<double> part(2 * nblocks * n);
  return [=]() {
    double* pw_part = part.data();
    double* pb_part = part.data() + nblocks * n;
    std::fill(pw_part, pw_part + 2 * nblocks * n, 0.0);
    parallel_for(nblocks, threads, block_grain, [&](int64_t kb, int64_t ke) {
      for (int64_t k = kb; k < ke; ++k) {
        const int64_t r0 = k * block_rows, r1 = std::min(rows, r0 + block_rows);
        grad_rows(pdy + r0 * n, px + r0 * n, pw, pdx + r0 * n, n, r1 - r0, pmean + r0, prstd + r0, pdmean + r0,
                  pdrstd + r0, pw_part + k * n, pb_part + k * n);
      }
    });
    parallel_for(n, threads, 256, [&](int64_t cb, int64_t ce) {
      combine_columns(pw_part, pb_part, nblocks, n, cb, ce, pdw, pdb);
    });
  };
}

}  // namespace
}  // namespace cpu

void register_layer_norm_kernels(KernelRegistry& r) {
  using namespace cpu;
  add_typed<FloatTypes>(r, "layer_norm", [](auto tag, const KernelArgs& a) {
    return layer_norm_kernel<typename decltype(tag)::type>(a);
  });
  add_typed<FloatTypes>(r, "layer_norm_grad", [](auto tag, const KernelArgs& a) {
    return layer_norm_grad_kernel<typename decltype(tag)::type>(a);
  });
}

}  // namespace graphc
