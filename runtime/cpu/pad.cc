// pad.cc — pad (constant / reflect / replicate, numpy.pad semantics) and its adjoint pad_grad.
//
// Both kernels precompute, per axis of the padded shape, where each output index reads x
// from (an item offset into x, or -1 for the constant border), then walk the padded shape
// row by row (a row = the last axis).  Only a row's outer index is decomposed; the inner loop
// is a table lookup.
#include <limits>
#include <memory>

#include "common.h"
#include "pad_checks.h"

namespace graphc {
namespace cpu {
namespace {

struct PadPlan {
  std::vector<int64_t> xdims, ydims;           // a scalar is treated as shape (1,), pads (0, 0)
  std::vector<std::vector<int64_t>> src;      // per axis: x item offset (index * stride) or -1
  int64_t inner = 1, outer = 0;               // ydims' last dim and the product of the others
};

// Checks the attrs against x's dims and builds the plan (src tables only for a non-empty y).
PadPlan make_plan(const KernelArgs& args, const std::vector<int64_t>& xd, const std::vector<int64_t>& pads,
                  const std::string& mode, const TensorRef& y, const char* y_what) {
  PadPlan p;
  p.ydims = padded_dims(args, xd, pads, mode);
  const size_t rank = xd.size();
  expect_dims(args, y, p.ydims, y_what);
  p.xdims = xd;
  std::vector<int64_t> full_pads = pads;
  if (rank == 0) {
    p.xdims = {1};
    p.ydims = {1};
    full_pads = {0, 0};
  }
  if (numel_of(p.ydims) == 0) return p;  // nothing to do; the tables could be huge ((2**40, 0) outputs)
  const auto strides = contiguous_strides(p.xdims);
  for (size_t i = 0; i < p.xdims.size(); ++i) {
    const int64_t b = full_pads[2 * i], d = p.xdims[i];
    std::vector<int64_t> t(static_cast<size_t>(p.ydims[i]));
    for (int64_t o = 0; o < p.ydims[i]; ++o) {
      int64_t k = o - b;
      if (k < 0 || k >= d) {
        if (mode == "constant") {
          t[o] = -1;
          continue;
        }
        if (mode == "reflect") k = k < 0 ? -k : 2 * (d - 1) - k;  // pads < d keeps k in [0, d)
        else k = k < 0 ? 0 : d - 1;
      }
      t[o] = k * strides[i];
    }
    p.src.push_back(std::move(t));
  }
  p.inner = p.ydims.back();
  p.outer = numel_of(p.ydims) / p.inner;
  return p;
}

// The x offset where row r of y starts reading (the sum over the outer axes), or -1 when the
// row lies in a constant border.
inline int64_t row_base(const PadPlan& p, int64_t r) {
  int64_t base = 0;
  for (size_t i = p.ydims.size() - 1; i-- > 0;) {
    const int64_t idx = r % p.ydims[i];
    r /= p.ydims[i];
    const int64_t s = p.src[i][idx];
    if (s < 0) return -1;
    base += s;
  }
  return base;
}

template <class T> Kernel pad_kernel(const KernelArgs& args) {
  const PadHead<T> h = pad_head<T>(args);
  const attrs::Pad& attr = h.attr;
  const T value = h.value;
  auto plan = std::make_shared<const PadPlan>(make_plan(args, args.in[0].dims, attr.pads, attr.mode, args.out[0],
                                                        "output"));
  if (plan->outer == 0) return no_op_kernel();
  const T* px = args.in[0].as<const T>();
  T* py = args.out[0].as<T>();
  const int threads = args.ctx.threads;
  return [plan, px, py, value, threads]() {
    const PadPlan& p = *plan;
    const int64_t* last = p.src.back().data();
    parallel_for(p.outer, threads, std::max<int64_t>(1, (1 << 15) / p.inner), [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; ++r) {
        T* dst = py + r * p.inner;
        const int64_t base = row_base(p, r);
        if (base < 0) {
          std::fill(dst, dst + p.inner, value);
          continue;
        }
        const T* src = px + base;
        for (int64_t j = 0; j < p.inner; ++j) dst[j] = last[j] < 0 ? value : src[last[j]];
      }
    });
  };
}

// pad_grad(g, x): zeros of x's shape, then every item of g added to the x item pad read it
// from.  reflect/replicate send several items of g to one x item: that pass runs serially in
// C order of g, so the sums do not depend on the thread count.  In constant mode each x item
// receives exactly one item of g and the rows run in parallel.
template <class T> Kernel pad_grad_kernel(const KernelArgs& args) {
  const attrs::PadGrad attr = pad_grad_head(args);
  auto plan = std::make_shared<const PadPlan>(make_plan(args, args.in[1].dims, attr.pads, attr.mode, args.in[0],
                                                        "input 0 (the gradient)"));
  const size_t nbytes = static_cast<size_t>(numel_of(args.out[0])) * sizeof(T);
  if (nbytes == 0) return no_op_kernel();
  const T* pg = args.in[0].as<const T>();
  T* pdx = args.out[0].as<T>();
  const int threads = attr.mode == "constant" ? args.ctx.threads : 1;
  return [plan, pg, pdx, nbytes, threads]() {
    std::memset(pdx, 0, nbytes);
    const PadPlan& p = *plan;
    if (p.outer == 0) return;
    const int64_t* last = p.src.back().data();
    parallel_for(p.outer, threads, std::max<int64_t>(1, (1 << 15) / p.inner), [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; ++r) {
        const int64_t base = row_base(p, r);
        if (base < 0) continue;
        const T* src = pg + r * p.inner;
        T* dst = pdx + base;
        for (int64_t j = 0; j < p.inner; ++j) {
          if (last[j] >= 0) dst[last[j]] += src[j];
        }
      }
    });
  };
}

}  // namespace
}  // namespace cpu

void register_pad_kernels(KernelRegistry& r) {
  cpu::add_typed<cpu::AllTypes>(r, "pad", [](auto tag, const KernelArgs& a) {
    return cpu::pad_kernel<typename decltype(tag)::type>(a);
  });
  cpu::add_typed<cpu::FloatTypes>(r, "pad_grad", [](auto tag, const KernelArgs& a) {
    return cpu::pad_grad_kernel<typename decltype(tag)::type>(a);
  });
}

}  // namespace graphc
