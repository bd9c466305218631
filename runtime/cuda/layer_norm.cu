// layer_norm.cu — the CUDA twin of runtime/cpu/layer_norm.cc: layer norm over the trailing axes
// x.shape[axis:] of x viewed as (rows, n), and its gradient.
//
// Kernels (what each thread/block does):
// - layer_norm: a warp per row for n <= 1024 (256-thread blocks, rows over the grid's warps), else
//   a 512-thread block per row.  One sweep for the CPU's shifted moments (Σx, Σu, Σu², u = x - x0,
//   x0 = the row's first item; double), fixed-tree reductions (nn_rows.cuh), then one sweep writing
//   y = (x - mean)·rstd·w + b in double, rounded once to T; mean and rstd rounded once to T.  The row
//   is re-read from L1/L2 (not kept in registers).
// - layer_norm_grad, dx: the same row groups; one sweep for Σg and Σg·(x - mean), g = dy·w (double),
//   then dx = rstd·g + xc·kx + k0 with the CPU's per-row constants.
// - layer_norm_grad, dweight/dbias: a (32 x 32)-thread block per (32 columns, chunk of rows);
//   thread (c, r) sums rows r, r + 32, ... of its column in the chunk in order (double), then thread
//   row 0 sums the 32 partials in order; with the planned workspace (target "cuda": up to 64 chunks
//   of >= 512 rows) a second kernel sums the chunks' partials per column in chunk order; without it,
//   one chunk.  Fixed orders, no atomics.
// Every product feeding an add is rounded first (mul_rn), as the CPU's -ffp-contract=off build;
// the sums' order differs from the CPU's 16 lanes (double sums: the T results agree within an ulp).
#include "../cpu/layer_norm_checks.h"
#include "nn_rows.cuh"

namespace graphc {
namespace cuda {
namespace {

using cpu::expect_dims;
using cpu::expect_dtype;

using cpu::RowGeom;  // the geometry and the checks: cpu/layer_norm_checks.h (as the CPU's)

template <class T, class G>
__global__ void ln_forward_rows(const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ b,
                                T* __restrict__ y, T* __restrict__ mean_out, T* __restrict__ rstd_out, int64_t rows,
                                int64_t n, double eps) {
  const G g;
  const double dn = static_cast<double>(n);
  for (int64_t r = g.id(); r < rows; r += g.count()) {
    const T* xr = x + r * n;
    const double x0 = static_cast<double>(xr[0]);
    double sx = 0.0, su = 0.0, su2 = 0.0;
    for (int64_t j = g.lane(); j < n; j += g.size()) {
      const double xv = static_cast<double>(xr[j]);
      const double u = xv - x0;
      sx += xv;
      su += u;
      su2 += mul_rn(u, u);
    }
    sx = g.sum(sx);
    su = g.sum(su);
    su2 = g.sum(su2);
    const double mean = sx / dn;
    const double mu = su / dn;
    double var = su2 / dn - mul_rn(mu, mu);
    var = var < 0.0 ? 0.0 : var;  // rounding; NaN stays NaN
    const double rstd = 1.0 / sqrt(var + eps);
    T* yr = y + r * n;
    for (int64_t j = g.lane(); j < n; j += g.size()) {
      const double t = mul_rn(mul_rn(static_cast<double>(xr[j]) - mean, rstd), static_cast<double>(w[j]));
      yr[j] = static_cast<T>(t + static_cast<double>(b[j]));
    }
    if (g.lane() == 0) {
      mean_out[r] = static_cast<T>(mean);
      rstd_out[r] = static_cast<T>(rstd);
    }
  }
}

template <class T> __global__ void fill_items(T* p, int64_t n, T v) {
  GRAPHC_GRID_STRIDE(i, n) p[i] = v;
}

template <class T> Kernel layer_norm_kernel(const KernelArgs& args) {
  const auto chk = cpu::layer_norm_check(args);
  const auto& attr = chk.attr;
  const RowGeom& g = chk.g;
  const TensorRef& x = args.in[0];
  T* pmean = args.out[1].as<T>();
  T* prstd = args.out[2].as<T>();
  if (g.empty && cpu::has_zero_dim(g.lead)) return no_op_kernel();
  if (dry(args)) return no_op_kernel();
  cudaStream_t s = stream_of(args);
  const int64_t rows = g.rows, n = g.n;
  if (g.empty) {  // rows of length 0: 0/0, NaN statistics (the reference's answer)
    const T nan = static_cast<T>(NAN);
    return [=]() {
      fill_items<T><<<blocks_for(rows), kThreads, 0, s>>>(pmean, rows, nan);
      GRAPHC_CUDA_LAUNCH_CHECK("layer_norm");
      fill_items<T><<<blocks_for(rows), kThreads, 0, s>>>(prstd, rows, nan);
      GRAPHC_CUDA_LAUNCH_CHECK("layer_norm");
    };
  }
  const T* px = x.as<const T>();
  const T* pw = args.in[1].as<const T>();
  const T* pb = args.in[2].as<const T>();
  T* py = args.out[0].as<T>();
  const double eps = attr.eps;
  if (n <= kWarpRowMax) {
    return [=]() {
      ln_forward_rows<T, RowWarp><<<row_blocks(rows, true), kWarpsPerBlock * 32, 0, s>>>(px, pw, pb, py, pmean, prstd,
                                                                                         rows, n, eps);
      GRAPHC_CUDA_LAUNCH_CHECK("layer_norm");
    };
  }
  return [=]() {
    ln_forward_rows<T, RowBlock><<<row_blocks(rows, false), kRowBlockThreads, 0, s>>>(px, pw, pb, py, pmean, prstd,
                                                                                      rows, n, eps);
    GRAPHC_CUDA_LAUNCH_CHECK("layer_norm");
  };
}

// dx of each row: the CPU's grad_rows constants, then dx = rstd·g + xc·kx + k0 rounded once to T.
template <class T, class G>
__global__ void ln_grad_rows(const T* __restrict__ dy, const T* __restrict__ x, const T* __restrict__ w,
                             T* __restrict__ dx, const T* __restrict__ mean, const T* __restrict__ rstd,
                             const T* __restrict__ dmean, const T* __restrict__ drstd, int64_t rows, int64_t n) {
  const G g;
  const double dn = static_cast<double>(n);
  for (int64_t r = g.id(); r < rows; r += g.count()) {
    const T* dyr = dy + r * n;
    const T* xr = x + r * n;
    const double mr = static_cast<double>(mean[r]), sr = static_cast<double>(rstd[r]);
    double s1 = 0.0, s2 = 0.0;
    for (int64_t j = g.lane(); j < n; j += g.size()) {
      const double gj = mul_rn(static_cast<double>(dyr[j]), static_cast<double>(w[j]));
      s1 += gj;
      s2 += mul_rn(gj, static_cast<double>(xr[j]) - mr);
    }
    s1 = g.sum(s1);
    s2 = g.sum(s2);
    const double k1 = s1 / dn;
    const double k2 = mul_rn(sr, s2) / dn;
    const double k3 = static_cast<double>(dmean[r]) / dn;
    const double k4 = mul_rn(mul_rn(mul_rn(-static_cast<double>(drstd[r]), sr), sr), sr) / dn;
    const double kx = k4 - mul_rn(mul_rn(sr, sr), k2);
    const double k0 = k3 - mul_rn(sr, k1);
    T* dxr = dx + r * n;
    for (int64_t j = g.lane(); j < n; j += g.size()) {
      const double d = static_cast<double>(dyr[j]);
      const double xc = static_cast<double>(xr[j]) - mr;
      const double gj = mul_rn(d, static_cast<double>(w[j]));
      dxr[j] = static_cast<T>((mul_rn(sr, gj) + mul_rn(xc, kx)) + k0);
    }
  }
}

// dweight[c] = Σ_r dy·((x - mean)·rstd), dbias[c] = Σ_r dy, 32 columns per block.  Block (tile,
// chunk) sums rows [chunk·chunk_rows, ...) of its columns: thread (c, t) rows t, t + 32, ... in order
// (double), then thread row 0 the 32 partials in order; with one chunk it writes the outputs, else
// chunk `chunk`'s partials (pw, pb: chunks x n doubles, the planned workspace) that
// ln_grad_combine sums in chunk order.  Fixed orders throughout: the same bits every run.
constexpr int kColTile = 32, kRowLanes = 32;
template <class T>
__global__ void ln_grad_columns(const T* __restrict__ dy, const T* __restrict__ x, const T* __restrict__ mean,
                                const T* __restrict__ rstd, T* __restrict__ dw, T* __restrict__ db,
                                double* __restrict__ pw_out, double* __restrict__ pb_out, int64_t rows, int64_t n,
                                int64_t chunk_rows) {
  __shared__ double pw[kRowLanes][kColTile + 1], pb[kRowLanes][kColTile + 1];
  const int tc = threadIdx.x, tr = threadIdx.y;
  const int64_t r0 = static_cast<int64_t>(blockIdx.y) * chunk_rows;
  const int64_t r1 = r0 + chunk_rows < rows ? r0 + chunk_rows : rows;
  for (int64_t c0 = static_cast<int64_t>(blockIdx.x) * kColTile; c0 < n; c0 += static_cast<int64_t>(gridDim.x) * kColTile) {
    const int64_t c = c0 + tc;
    double sw = 0.0, sb = 0.0;
    if (c < n) {
      for (int64_t r = r0 + tr; r < r1; r += kRowLanes) {
        const double d = static_cast<double>(dy[r * n + c]);
        const double xc = static_cast<double>(x[r * n + c]) - static_cast<double>(mean[r]);
        sw += mul_rn(d, mul_rn(xc, static_cast<double>(rstd[r])));
        sb += d;
      }
    }
    pw[tr][tc] = sw;
    pb[tr][tc] = sb;
    __syncthreads();
    if (tr == 0 && c < n) {
      double tw = 0.0, tb = 0.0;
      for (int k = 0; k < kRowLanes; ++k) {
        tw += pw[k][tc];
        tb += pb[k][tc];
      }
      if (pw_out == nullptr) {
        dw[c] = static_cast<T>(tw);
        db[c] = static_cast<T>(tb);
      } else {
        pw_out[blockIdx.y * n + c] = tw;
        pb_out[blockIdx.y * n + c] = tb;
      }
    }
    __syncthreads();
  }
}

// dweight, dbias: column c sums the chunks' partials in chunk order.
template <class T>
__global__ void ln_grad_combine(const double* __restrict__ pw, const double* __restrict__ pb, T* __restrict__ dw,
                                T* __restrict__ db, int64_t chunks, int64_t n) {
  GRAPHC_GRID_STRIDE(c, n) {
    double tw = 0.0, tb = 0.0;
    for (int64_t k = 0; k < chunks; ++k) {
      tw += pw[k * n + c];
      tb += pb[k * n + c];
    }
    dw[c] = static_cast<T>(tw);
    db[c] = static_cast<T>(tb);
  }
}

// Row chunks of the column sums (graphc/ops/layer_norm.py plans the partials for the same count):
// one per 512 rows, at most 64.
constexpr int64_t kChunkRows = 512, kMaxChunks = 64;
inline int64_t column_chunks(int64_t rows) {
  return std::max<int64_t>(1, std::min<int64_t>(kMaxChunks, (rows + kChunkRows - 1) / kChunkRows));
}

template <class T> Kernel layer_norm_grad_kernel(const KernelArgs& args) {
  const RowGeom g = cpu::layer_norm_grad_check(args).g;
  const TensorRef &dy = args.in[0], &x = args.in[1];
  T* pdw = args.out[1].as<T>();
  T* pdb = args.out[2].as<T>();
  if (g.empty && cpu::has_zero_dim(g.tail)) return no_op_kernel();
  if (dry(args)) return no_op_kernel();
  cudaStream_t s = stream_of(args);
  const int64_t rows = g.rows, n = g.n;
  if (g.empty) {  // no rows: the column sums are 0 (all-zero bits), dx is empty
    const size_t bytes = static_cast<size_t>(n) * sizeof(T);
    return [=]() {
      GRAPHC_CUDA_CHECK(cudaMemsetAsync(pdw, 0, bytes, s));
      GRAPHC_CUDA_CHECK(cudaMemsetAsync(pdb, 0, bytes, s));
    };
  }
  const T* pdy = dy.as<const T>();
  const T* px = x.as<const T>();
  const T* pw = args.in[2].as<const T>();
  const T *pmean = args.in[3].as<const T>(), *prstd = args.in[4].as<const T>();
  const T *pdmean = args.in[5].as<const T>(), *pdrstd = args.in[6].as<const T>();
  T* pdx = args.out[0].as<T>();
  const bool warp = n <= kWarpRowMax;
  const unsigned grid = row_blocks(rows, warp);
  const unsigned col_grid = static_cast<unsigned>(std::min<int64_t>((n + kColTile - 1) / kColTile, int64_t(1) << 20));
  // The column sums in row chunks when the plan has their partials (target "cuda"), else one chunk.
  int64_t chunks = column_chunks(rows);
  double* part = chunks > 1 ? workspace_or_null<double>(args, 0, 2 * chunks * n) : nullptr;
  if (part == nullptr) chunks = 1;
  const int64_t chunk_rows = (rows + chunks - 1) / chunks;
  double* part_b = part == nullptr ? nullptr : part + chunks * n;
  return [=]() {
    if (warp) {
      ln_grad_rows<T, RowWarp><<<grid, kWarpsPerBlock * 32, 0, s>>>(pdy, px, pw, pdx, pmean, prstd, pdmean, pdrstd,
                                                                     rows, n);
    } else {
      ln_grad_rows<T, RowBlock><<<grid, kRowBlockThreads, 0, s>>>(pdy, px, pw, pdx, pmean, prstd, pdmean, pdrstd, rows,
                                                                   n);
    }
    GRAPHC_CUDA_LAUNCH_CHECK("layer_norm_grad");
    ln_grad_columns<T><<<dim3(col_grid, static_cast<unsigned>(chunks)), dim3(kColTile, kRowLanes), 0, s>>>(
        pdy, px, pmean, prstd, pdw, pdb, part, part_b, rows, n, chunk_rows);
    GRAPHC_CUDA_LAUNCH_CHECK("layer_norm_grad");
    if (part != nullptr) {
      ln_grad_combine<T><<<blocks_for(n), kThreads, 0, s>>>(part, part_b, pdw, pdb, chunks, n);
      GRAPHC_CUDA_LAUNCH_CHECK("layer_norm_grad");
    }
  };
}

}  // namespace

void register_layer_norm_kernels(KernelRegistry& r) {
  add_typed<FloatTypes>(r, "layer_norm", [](auto tag, const KernelArgs& a) {
    return layer_norm_kernel<typename decltype(tag)::type>(a);
  });
  add_typed<FloatTypes>(r, "layer_norm_grad", [](auto tag, const KernelArgs& a) {
    return layer_norm_grad_kernel<typename decltype(tag)::type>(a);
  });
}

}  // namespace cuda
}  // namespace graphc
