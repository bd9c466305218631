// tensor_extra.cc — structural ops the ONNX importer maps onto (graphc/ops/tensor_extra.py):
// identity (a view: plans alias it; this copy kernel runs only where a plan materialises it) and
// tile (a strided copy: y viewed as (r0, d0, r1, d1, ...) reads x with stride 0 along each r axis),
// resize and resize_grad.
//
// resize: each axis whose size or scale changes gets, per output index, a list of (input index,
// weight) taps computed at prepare time exactly as graphc/ops/tensor_extra.py's axis_taps (ONNX's
// coordinate transforms and 2-tap kernels, zero-weight taps left out).  An output item is then
// Σ over the tap combinations of Π weights · x[...] in float64 (n-linear), or the one tap's item
// copied (nearest, any dtype).  resize_grad runs the same loop on the transposed taps (per input
// index, the outputs that read it, in ascending order): a gather, so no two threads write one
// item and every item is summed in one fixed order at any thread count.
#include <cmath>
#include <string>
#include <utility>

#include "common.h"
#include "resize_taps.h"
#include "shape_plans.h"

namespace graphc {
namespace cpu {
namespace {

Kernel identity_kernel(const KernelArgs& args) {
  const size_t n = identity_copy_bytes(args);
  const void* src = args.in[0].data;
  void* dst = args.out[0].data;
  return [src, dst, n]() {
    if (n && src != dst) std::memmove(dst, src, n);
  };
}

Kernel tile_kernel(const KernelArgs& args) {
  const auto loop = tile_loop(args);
  const TensorRef &x = args.in[0], &y = args.out[0];
  if (numel_of(y) == 0) return no_op_kernel();
  const int threads = args.ctx.threads;
  return dispatch_bytes(dtype_size(x.dtype), [&](auto tag) -> Kernel {
    using T = typename decltype(tag)::type;
    const T* px = x.as<const T>();
    T* py = y.as<T>();
    return [loop, px, py, threads]() { strided_copy<T>(loop, py, px, threads); };
  });
}

// -- resize ----------------------------------------------------------------------------------------

// The taps of one axis, per output index j: (input index, weight) pairs (resize_taps.h).
void axis_taps(const ResizeSpec& s, int64_t n_in, int64_t n_out, double scale,
               std::vector<std::vector<std::pair<int64_t, double>>>& taps) {
  taps.assign(static_cast<size_t>(n_out), {});
  for (int64_t j = 0; j < n_out; ++j) {
    int64_t idx[2];
    double w[2];
    resize_taps(s.math, n_in, n_out, scale, j, idx, w);
    for (int k = 0; k < 2; ++k) {
      if (w[k] != 0) taps[j].emplace_back(idx[k], w[k]);
    }
  }
}

// One destination axis of the gather: identity, or per destination index a list of (source
// index, weight) in CSR form.
struct AxisGather {
  bool identity = true;
  std::vector<int64_t> ptr, src;
  std::vector<double> w;
  int64_t max_taps = 1;
};

// The gathers of resize (transposed = false: destination y, source x) or of resize_grad
// (transposed = true: destination dx, source dy).
std::vector<AxisGather> resize_gathers(const ResizeSpec& s, const std::vector<int64_t>& xd,
                                       const std::vector<int64_t>& yd, bool transposed) {
  std::vector<AxisGather> out(xd.size());
  for (size_t a = 0; a < xd.size(); ++a) {
    double scale = 1.0;
    if (!resize_axis(s, xd, yd, a, &scale)) continue;
    std::vector<std::vector<std::pair<int64_t, double>>> taps;
    axis_taps(s, xd[a], yd[a], scale, taps);
    AxisGather& g = out[a];
    g.identity = false;
    g.max_taps = 1;  // at least the one pair a row starts from (a list may be empty: exclude_outside)
    if (transposed) {
      std::vector<std::vector<std::pair<int64_t, double>>> inv(static_cast<size_t>(xd[a]));
      for (int64_t j = 0; j < yd[a]; ++j) {
        for (const auto& t : taps[j]) inv[t.first].emplace_back(j, t.second);
      }
      taps.swap(inv);
    }
    g.ptr.push_back(0);
    for (const auto& list : taps) {
      for (const auto& t : list) {
        g.src.push_back(t.first);
        g.w.push_back(t.second);
      }
      g.ptr.push_back(static_cast<int64_t>(g.src.size()));
      g.max_taps = std::max<int64_t>(g.max_taps, static_cast<int64_t>(list.size()));
    }
  }
  return out;
}

// dst[o] = Σ over tap combinations of Π weights · src[...] (kSum, in float64) or the one tap's item
// (nearest: at most one tap per axis; none gives 0).
template <class T, bool kSum> Kernel gather_kernel(const KernelArgs& args, const TensorRef& src_t, const TensorRef& dst_t,
                                                   std::vector<AxisGather> axes) {
  const std::vector<int64_t> dd = dst_t.dims, sd = src_t.dims;
  const int64_t rank = static_cast<int64_t>(dd.size());
  const int64_t numel = numel_of(dd);
  if (numel == 0) return no_op_kernel();
  if (rank == 0) {
    const T* ps = src_t.as<const T>();
    T* pd = dst_t.as<T>();
    return [ps, pd]() { pd[0] = ps[0]; };
  }
  const auto ss = contiguous_strides(sd);
  int64_t max_pairs = 1;
  for (int64_t a = 0; a + 1 < rank; ++a) {
    max_pairs = saturating_mul(max_pairs, axes[a].max_taps);
    if (max_pairs > (int64_t(1) << 24)) args.fail("resize: too many taps per row (" + format_dims(dd) + ")");
  }
  const int64_t last = dd[rank - 1];
  const int64_t rows = numel / last;
  const int threads = args.ctx.threads;
  const int64_t grain = std::max<int64_t>(1, (1 << 14) / std::max<int64_t>(last, 1));
  const int64_t chunks = parallel_chunks(rows, threads, grain);
  const KernelBuffer<int64_t> offs(chunks * 2 * max_pairs);
  const KernelBuffer<double> wts(chunks * 2 * max_pairs);
  const T* ps = src_t.as<const T>();
  T* pd = dst_t.as<T>();
  return [=]() {
    const AxisGather& lg = axes[rank - 1];
    const int64_t ls = ss[rank - 1];
    parallel_for_chunks(rows, threads, grain, [&](int64_t b, int64_t e, int64_t c) {
      int64_t* off_a = offs.data() + c * 2 * max_pairs;
      int64_t* off_b = off_a + max_pairs;
      double* w_a = wts.data() + c * 2 * max_pairs;
      double* w_b = w_a + max_pairs;
      for (int64_t row = b; row < e; ++row) {
        // the (source offset, weight) pairs of this row's leading indices
        int64_t* off = off_a;
        double* w = w_a;
        int64_t np = 1;
        off[0] = 0;
        w[0] = 1.0;
        int64_t rem = row;
        for (int64_t a = rank - 2; a >= 0; --a) {
          const int64_t i = rem % dd[a];
          rem /= dd[a];
          const AxisGather& g = axes[a];
          if (g.identity) {
            for (int64_t k = 0; k < np; ++k) off[k] += i * ss[a];
            continue;
          }
          int64_t* noff = off == off_a ? off_b : off_a;
          double* nw = w == w_a ? w_b : w_a;
          int64_t nn = 0;
          for (int64_t k = 0; k < np; ++k) {
            for (int64_t t = g.ptr[i]; t < g.ptr[i + 1]; ++t) {
              noff[nn] = off[k] + g.src[t] * ss[a];
              nw[nn] = w[k] * g.w[t];
              ++nn;
            }
          }
          off = noff;
          w = nw;
          np = nn;
        }
        T* out = pd + row * last;
        for (int64_t j = 0; j < last; ++j) {
          const int64_t t0 = lg.identity ? 0 : lg.ptr[j], t1 = lg.identity ? 1 : lg.ptr[j + 1];
          if constexpr (kSum) {
            double acc = 0.0;
            for (int64_t k = 0; k < np; ++k) {
              for (int64_t t = t0; t < t1; ++t) {
                const int64_t si = lg.identity ? j : lg.src[t];
                const double wt = lg.identity ? 1.0 : lg.w[t];
                acc += w[k] * wt * static_cast<double>(ps[off[k] + si * ls]);
              }
            }
            out[j] = static_cast<T>(acc);
          } else {
            if (np == 0 || t1 == t0) {
              out[j] = T(0);
            } else {
              out[j] = ps[off[0] + (lg.identity ? j : lg.src[t0]) * ls];
            }
          }
        }
      }
    });
  };
}

template <class T> Kernel resize_kernel(const KernelArgs& args) {
  args.expect_arity(1, 1);
  const TensorRef &x = args.in[0], &y = args.out[0];
  expect_dtype(args, y, x.dtype, "output");
  const ResizeSpec s = resize_spec(args, attrs::Resize(args), x.dims.size());
  const auto want = resize_out_dims(args, s, x.dims);
  expect_dims(args, y, want, "output");
  if (numel_of(y) == 0) return no_op_kernel();
  auto axes = resize_gathers(s, x.dims, want, false);
  if (s.mode == "linear") {
    if constexpr (std::is_floating_point_v<T>) {
      return gather_kernel<T, true>(args, x, y, std::move(axes));
    } else {
      args.fail("mode 'linear' needs a float input");
    }
  }
  return gather_kernel<T, false>(args, x, y, std::move(axes));
}

template <class T> Kernel resize_grad_kernel(const KernelArgs& args) {
  args.expect_arity(2, 1);
  const TensorRef &dy = args.in[0], &x = args.in[1], &dx = args.out[0];
  expect_dtype(args, x, dy.dtype, "input 1");
  expect_dtype(args, dx, dy.dtype, "output");
  expect_dims(args, dx, x.dims, "output");
  const ResizeSpec s = resize_spec(args, attrs::ResizeGrad(args), x.dims.size());
  const auto yd = resize_out_dims(args, s, x.dims);
  expect_dims(args, dy, yd, "input 0 (dy)");
  const int64_t n = numel_of(dx);
  if (n == 0) return no_op_kernel();
  T* pdx = dx.as<T>();
  if (numel_of(dy) == 0) return [pdx, n]() { std::fill(pdx, pdx + n, T(0)); };
  return gather_kernel<T, true>(args, dy, dx, resize_gathers(s, x.dims, yd, true));
}

}  // namespace
}  // namespace cpu

void register_tensor_extra_kernels(KernelRegistry& r) {
  using cpu::add_kernel;
  using cpu::schema_dtypes;
  for (DType t : schema_dtypes("identity")) add_kernel(r, "identity", t, cpu::identity_kernel);
  for (DType t : schema_dtypes("tile")) add_kernel(r, "tile", t, cpu::tile_kernel);
  cpu::add_typed<cpu::AllTypes>(r, "resize", [](auto tag, const KernelArgs& a) {
    return cpu::resize_kernel<typename decltype(tag)::type>(a);
  });
  cpu::add_typed<cpu::FloatTypes>(r, "resize_grad", [](auto tag, const KernelArgs& a) {
    return cpu::resize_grad_kernel<typename decltype(tag)::type>(a);
  });
}

}  // namespace graphc
