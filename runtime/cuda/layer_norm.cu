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
// - layer_norm_grad, dweight/dbias: a (32 x 32)-thread block per 32 columns; thread (c, r) sums
//   rows r, r + 32, ... of its column in order (double), then thread row 0 sums the 32 partials in
//   order: a fixed order, no atomics, no workspace.
// Every product feeding an add is rounded first (mul_rn), as the CPU's -ffp-contract=off build;
// the sums' order differs from the CPU's 16 lanes (double sums: the T results agree within an ulp).
#include "nn_rows.cuh"

namespace graphc {
namespace cuda {
namespace {

using cpu::expect_dims;
using cpu::expect_dtype;

struct RowGeom {
  int64_t axis = 0, rows = 0, n = 0;
  std::vector<int64_t> lead, tail;
  bool empty = true;
};

RowGeom row_geom(const KernelArgs& a, const TensorRef& x, int64_t axis_attr) {
  const int64_t rank = static_cast<int64_t>(x.dims.size());
  if (rank < 1) a.fail("input x must have rank >= 1, got shape " + format_dims(x.dims));
  RowGeom g;
  g.axis = cpu::normalize_axis(a, axis_attr, rank);
  g.lead.assign(x.dims.begin(), x.dims.begin() + g.axis);
  g.tail.assign(x.dims.begin() + g.axis, x.dims.end());
  g.empty = cpu::has_zero_dim(x.dims);
  g.rows = g.empty && !cpu::has_zero_dim(g.lead) ? cpu::checked_numel(g.lead) : numel_of(g.lead);
  g.n = g.empty && !cpu::has_zero_dim(g.tail) ? cpu::checked_numel(g.tail) : numel_of(g.tail);
  return g;
}

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
  args.expect_arity(3, 3);
  const attrs::LayerNorm attr(args);
  if (!(attr.eps >= 0)) args.fail("eps must be >= 0");
  const TensorRef& x = args.in[0];
  const RowGeom g = row_geom(args, x, attr.axis);
  expect_dtype(args, args.in[1], x.dtype, "input 1 (weight)");
  expect_dims(args, args.in[1], g.tail, "input 1 (weight)");
  expect_dtype(args, args.in[2], x.dtype, "input 2 (bias)");
  expect_dims(args, args.in[2], g.tail, "input 2 (bias)");
  expect_dtype(args, args.out[0], x.dtype, "output 0 (y)");
  expect_dims(args, args.out[0], x.dims, "output 0 (y)");
  expect_dtype(args, args.out[1], x.dtype, "output 1 (mean)");
  expect_dims(args, args.out[1], g.lead, "output 1 (mean)");
  expect_dtype(args, args.out[2], x.dtype, "output 2 (rstd)");
  expect_dims(args, args.out[2], g.lead, "output 2 (rstd)");
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

// dweight[c] = Σ_r dy·((x - mean)·rstd), dbias[c] = Σ_r dy over the rows, 32 columns per block.
constexpr int kColTile = 32, kRowLanes = 32;
template <class T>
__global__ void ln_grad_columns(const T* __restrict__ dy, const T* __restrict__ x, const T* __restrict__ mean,
                                const T* __restrict__ rstd, T* __restrict__ dw, T* __restrict__ db, int64_t rows,
                                int64_t n) {
  __shared__ double pw[kRowLanes][kColTile + 1], pb[kRowLanes][kColTile + 1];
  const int tc = threadIdx.x, tr = threadIdx.y;
  for (int64_t c0 = static_cast<int64_t>(blockIdx.x) * kColTile; c0 < n; c0 += static_cast<int64_t>(gridDim.x) * kColTile) {
    const int64_t c = c0 + tc;
    double sw = 0.0, sb = 0.0;
    if (c < n) {
      for (int64_t r = tr; r < rows; r += kRowLanes) {
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
      dw[c] = static_cast<T>(tw);
      db[c] = static_cast<T>(tb);
    }
    __syncthreads();
  }
}

template <class T> Kernel layer_norm_grad_kernel(const KernelArgs& args) {
  args.expect_arity(7, 3);
  const attrs::LayerNormGrad attr(args);
  if (!(attr.eps >= 0)) args.fail("eps must be >= 0");
  const TensorRef &dy = args.in[0], &x = args.in[1];
  const RowGeom g = row_geom(args, x, attr.axis);
  expect_dtype(args, dy, x.dtype, "input 0 (dy)");
  expect_dims(args, dy, x.dims, "input 0 (dy)");
  expect_dtype(args, args.in[2], x.dtype, "input 2 (weight)");
  expect_dims(args, args.in[2], g.tail, "input 2 (weight)");
  const char* names[] = {"input 3 (mean)", "input 4 (rstd)", "input 5 (dmean)", "input 6 (drstd)"};
  for (int i = 3; i < 7; ++i) {
    expect_dtype(args, args.in[i], x.dtype, names[i - 3]);
    expect_dims(args, args.in[i], g.lead, names[i - 3]);
  }
  expect_dtype(args, args.out[0], x.dtype, "output 0 (dx)");
  expect_dims(args, args.out[0], x.dims, "output 0 (dx)");
  expect_dtype(args, args.out[1], x.dtype, "output 1 (dweight)");
  expect_dims(args, args.out[1], g.tail, "output 1 (dweight)");
  expect_dtype(args, args.out[2], x.dtype, "output 2 (dbias)");
  expect_dims(args, args.out[2], g.tail, "output 2 (dbias)");
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
  return [=]() {
    if (warp) {
      ln_grad_rows<T, RowWarp><<<grid, kWarpsPerBlock * 32, 0, s>>>(pdy, px, pw, pdx, pmean, prstd, pdmean, pdrstd,
                                                                     rows, n);
    } else {
      ln_grad_rows<T, RowBlock><<<grid, kRowBlockThreads, 0, s>>>(pdy, px, pw, pdx, pmean, prstd, pdmean, pdrstd, rows,
                                                                   n);
    }
    GRAPHC_CUDA_LAUNCH_CHECK("layer_norm_grad");
    ln_grad_columns<T><<<col_grid, dim3(kColTile, kRowLanes), 0, s>>>(pdy, px, pmean, prstd, pdw, pdb, rows, n);
    GRAPHC_CUDA_LAUNCH_CHECK("layer_norm_grad");
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
