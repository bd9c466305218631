// layer_norm.cc — layer norm over the trailing axes x.shape[axis:] of a float tensor
// (graphc/ops/layer_norm.py has the semantics): layer_norm -> (y, mean, rstd) and
// layer_norm_grad -> (dx, dweight, dbias).
//
// x is (rows, n), row-major.  Sums are accumulated in double and each output is rounded
// once to T, as the reference.  The forward and dx are one task per row (a row is read
// three times while it is in cache: Σx, Σ(x - mean)², then y or dx); dweight/dbias are column sums over the rows, computed with
// the columns as the parallel tasks and each column summed in row order, so every result
// has the same bits for any thread count.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "common.h"
#include "isa.h"

namespace graphc {
namespace cpu {
namespace {

// x as (rows, n): rows = Π x.dims[:axis], n = Π x.dims[axis:].  A zero-size x may have huge
// other dims ((2**40, 0)): its numel is 0 and no loop walks it (outputs of size rows·1 are
// real tensors, so rows fits in int64 whenever they are written).
struct RowGeom {
  int64_t axis = 0, rows = 0, n = 0;
  std::vector<int64_t> lead, tail;
  bool empty = true;  // x has no elements
};

RowGeom row_geom(const KernelArgs& a, const TensorRef& x, int64_t axis_attr) {
  const int64_t rank = static_cast<int64_t>(x.dims.size());
  if (rank < 1) a.fail("input x must have rank >= 1, got shape " + format_dims(x.dims));
  RowGeom g;
  g.axis = normalize_axis(a, axis_attr, rank);
  g.lead.assign(x.dims.begin(), x.dims.begin() + g.axis);
  g.tail.assign(x.dims.begin() + g.axis, x.dims.end());
  g.empty = has_zero_dim(x.dims);
  g.rows = g.empty && !has_zero_dim(g.lead) ? checked_numel(g.lead) : numel_of(g.lead);
  g.n = g.empty && !has_zero_dim(g.tail) ? checked_numel(g.tail) : numel_of(g.tail);
  return g;
}

// The row loops for each ISA (layer_norm_rows.inc), chosen at kernel build from active_isa().
namespace isa_baseline {
#include "layer_norm_rows.inc"
}  // namespace isa_baseline

#if defined(__x86_64__)
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#endif
namespace isa_avx2 {
#include "layer_norm_rows.inc"
}  // namespace isa_avx2
#if defined(__clang__)
#pragma clang attribute pop
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma"))), \
                             apply_to = function)
#else
#pragma GCC pop_options
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")
#endif
namespace isa_avx512 {
#include "layer_norm_rows.inc"
}  // namespace isa_avx512
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#endif  // __x86_64__

template <class T> struct RowLoops {
  decltype(&isa_baseline::forward_row<T>) forward;
  decltype(&isa_baseline::grad_row<T>) grad;
  decltype(&isa_baseline::column_block<T>) columns;
};

template <class T> RowLoops<T> row_loops() {
#if defined(__x86_64__)
  const Isa isa = active_isa();
  if (isa == Isa::Avx512) return {isa_avx512::forward_row<T>, isa_avx512::grad_row<T>, isa_avx512::column_block<T>};
  if (isa == Isa::Avx2) return {isa_avx2::forward_row<T>, isa_avx2::grad_row<T>, isa_avx2::column_block<T>};
#endif
  return {isa_baseline::forward_row<T>, isa_baseline::grad_row<T>, isa_baseline::column_block<T>};
}

int64_t row_grain(int64_t n) { return std::max<int64_t>(1, (1 << 14) / std::max<int64_t>(1, n)); }

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
  const auto forward_row = row_loops<T>().forward;
  return [=]() {
    parallel_for(rows, threads, row_grain(n), [&](int64_t rb, int64_t re) {
      for (int64_t r = rb; r < re; ++r) forward_row(px + r * n, pw, pb, py + r * n, n, eps, pmean + r, prstd + r);
    });
  };
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
  const auto grad_row = loops.grad;
  const auto column_block = loops.columns;
  return [=]() {
    // dx: one task per row
    parallel_for(rows, threads, row_grain(n), [&](int64_t rb, int64_t re) {
      for (int64_t r = rb; r < re; ++r) {
        grad_row(pdy + r * n, px + r * n, pw, pdx + r * n, n, static_cast<double>(pmean[r]),
                 static_cast<double>(prstd[r]), static_cast<double>(pdmean[r]), static_cast<double>(pdrstd[r]));
      }
    });
    // dweight, dbias: blocks of columns are the tasks; each column sums its rows in row order
    constexpr int64_t kBlock = 256;
    parallel_for(n, threads, kBlock, [&](int64_t cb, int64_t ce) {
      double sw[kBlock], sb[kBlock];
      for (int64_t c0 = cb; c0 < ce; c0 += kBlock) {
        const int64_t w = std::min(kBlock, ce - c0);
        column_block(pdy, px, pmean, prstd, rows, n, c0, w, sw, sb);
        for (int64_t j = 0; j < w; ++j) {
          pdw[c0 + j] = static_cast<T>(sw[j]);
          pdb[c0 + j] = static_cast<T>(sb[j]);
        }
      }
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
