// pool_checks.h — the window geometry and checks of max_pool2d(_gather/_grad) and
// avg_pool2d(_grad), shared by runtime/cpu/pool.cc and runtime/cuda/pool.cu: both devices accept
// exactly the same steps with the same messages.  G is the geometry struct the caller fills
// (PoolGeom here; cuda/pool_items.h's device copy of it there).  Prepare-time code only.
// Host code only.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common.h"

namespace graphc {
namespace cpu {

struct PoolGeom {
  int64_t planes = 0, h = 0, w = 0, ho = 0, wo = 0;
  int64_t kh = 0, kw = 0, sh = 0, sw = 0, ph = 0, pw = 0;
};

// The window geometry from the attrs and x's dims, every attr checked (any plan bytes may
// arrive): the C++ side of _check_attrs / _pooled_shape in graphc/ops/pool.py.
template <class Attr, class G = PoolGeom> G pool_geom(const KernelArgs& a, const TensorRef& x, const std::string& what) {
  const Attr attr(a);
  if (attr.kernel_size.size() != 2 || attr.stride.size() != 2 || attr.padding.size() != 2) {
    a.fail("kernel_size, stride and padding must hold 2 ints each");
  }
  if (x.dims.size() != 4) a.fail(what + " must have rank 4 (N, C, H, W), got shape " + format_dims(x.dims));
  G g;
  g.kh = attr.kernel_size[0], g.kw = attr.kernel_size[1];
  g.sh = attr.stride[0], g.sw = attr.stride[1];
  g.ph = attr.padding[0], g.pw = attr.padding[1];
  if (g.kh <= 0 || g.kw <= 0 || g.sh <= 0 || g.sw <= 0) a.fail("kernel_size and stride must be positive");
  if (g.ph < 0 || g.pw < 0 || g.ph > g.kh / 2 || g.pw > g.kw / 2) {
    a.fail("padding must be >= 0 and at most half of kernel_size");
  }
  g.h = x.dims[2], g.w = x.dims[3];
  // 2p <= k, so h + 2p only overflows for absurd dims of an empty tensor: checked_add refuses those
  if (g.h < 1 || g.w < 1 || checked_add(a, g.h, 2 * g.ph, "H + 2 * padding") < g.kh ||
      checked_add(a, g.w, 2 * g.pw, "W + 2 * padding") < g.kw) {
    a.fail(what + " of shape " + format_dims(x.dims) + " is smaller than the kernel (the output would be empty)");
  }
  g.ho = (g.h + 2 * g.ph - g.kh) / g.sh + 1;
  g.wo = (g.w + 2 * g.pw - g.kw) / g.sw + 1;
  g.planes = x.dims[0] * x.dims[1];
  return g;
}

template <class G> std::vector<int64_t> pooled_dims(const TensorRef& x, const G& g) {
  return {x.dims[0], x.dims[1], g.ho, g.wo};
}

// max_pool2d(x) / max_pool2d_gather(g, x) (gather) / avg_pool2d(x) -> y over x's windows.
template <class Attr, class G = PoolGeom> G pool_check(const KernelArgs& args, bool gather) {
  args.expect_arity(gather ? 2 : 1, 1);
  const TensorRef& x = args.in[gather ? 1 : 0];
  const TensorRef& src = args.in[0];
  const G g = pool_geom<Attr, G>(args, x, gather ? "input 1 (x)" : "input 0 (x)");
  if (gather) {
    expect_dtype(args, src, x.dtype, "input 0 (g)");
    expect_dims(args, src, x.dims, "input 0 (g)");
  }
  expect_dtype(args, args.out[0], x.dtype, "output");
  expect_dims(args, args.out[0], pooled_dims(x, g), "output");
  return g;
}

// max_pool2d_grad(dy, x) / avg_pool2d_grad(dy, x) -> dx.
template <class Attr, class G = PoolGeom> G pool_grad_check(const KernelArgs& args) {
  args.expect_arity(2, 1);
  const TensorRef &dy = args.in[0], &x = args.in[1];
  const G g = pool_geom<Attr, G>(args, x, "input 1 (x)");
  expect_dtype(args, dy, x.dtype, "input 0 (dy)");
  expect_dims(args, dy, pooled_dims(x, g), "input 0 (dy)");
  expect_dtype(args, args.out[0], x.dtype, "output");
  expect_dims(args, args.out[0], x.dims, "output");
  return g;
}

}  // namespace cpu
}  // namespace graphc
