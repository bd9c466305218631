// shape.cc — data movement: broadcast_to, transpose, slice, concat, split, and a copy
// kernel for the view ops (reshape, expand_dims, squeeze, stop_gradient) for plans that
// materialise them instead of aliasing.  Everything moves raw items by item size.
#include "common.h"
#include "shape_plans.h"

namespace graphc {
namespace cpu {
namespace {

Kernel strided_copy_kernel(const KernelArgs& args, const StridedLoop<1>& loop) {
  const TensorRef &x = args.in[0], &y = args.out[0];
  const int threads = args.ctx.threads;
  return dispatch_bytes(dtype_size(x.dtype), [&](auto tag) -> Kernel {
    using T = typename decltype(tag)::type;
    const T* px = x.as<const T>();
    T* py = y.as<T>();
    return [loop, px, py, threads]() { strided_copy<T>(loop, py, px, threads); };
  });
}

// slice_grad(g, x): zeros of x's shape with g scattered where slice read.
Kernel slice_grad_kernel(const KernelArgs& args) {
  StridedLoop<1> loop = slice_grad_loop(args);
  if (numel_of(args.out[0]) == 0) return no_op_kernel();
  const int threads = args.ctx.threads;
  const size_t nbytes = static_cast<size_t>(numel_of(args.out[0])) * dtype_size(args.out[0].dtype);
  return dispatch_bytes(dtype_size(args.in[0].dtype), [&](auto tag) -> Kernel {
    using T = typename decltype(tag)::type;
    const T* pg = args.in[0].as<const T>();
    T* py = args.out[0].as<T>();
    return [loop, pg, py, threads, nbytes]() {
      if (nbytes) std::memset(py, 0, nbytes);
      loop.run(threads, 1 << 15, [&](int64_t o, const std::array<int64_t, 1>& off, int64_t n,
                                     const std::array<int64_t, 1>& s) {
        T* dst = py + off[0];
        const T* src = pg + o;
        for (int64_t i = 0; i < n; ++i) dst[i * s[0]] = src[i];
      });
    };
  });
}

Kernel concat_split_kernel(const KernelArgs& args, bool is_concat) {
  const ConcatPlan plan = concat_split_plan(args, is_concat);
  if (plan.empty) return no_op_kernel();
  const int threads = args.ctx.threads;
  const size_t item = plan.item;
  const int64_t outer = plan.outer, row = plan.row;
  const std::vector<ConcatPiece> pieces = plan.pieces;
  const std::vector<void*> ptrs = plan.ptrs;
  uint8_t* pw = static_cast<uint8_t*>(plan.whole);
  return [=]() {
    parallel_for(outer, threads, std::max<int64_t>(1, (1 << 15) / std::max<int64_t>(row, 1)),
                 [&](int64_t b, int64_t e) {
      for (int64_t o = b; o < e; ++o) {
        for (size_t i = 0; i < pieces.size(); ++i) {
          const size_t n = static_cast<size_t>(pieces[i].width) * item;
          if (n == 0) continue;
          uint8_t* w = pw + (o * row + pieces[i].offset) * item;
          uint8_t* p = static_cast<uint8_t*>(ptrs[i]) + o * pieces[i].width * item;
          if (is_concat) std::memcpy(w, p, n);
          else std::memcpy(p, w, n);
        }
      }
    });
  };
}

// The view ops a plan materialises: the bytes copied as they are.
Kernel view_copy_kernel(const KernelArgs& args, const ViewOp& v) {
  const size_t n = view_copy_bytes(args, v);
  const void* src = args.in[0].data;
  void* dst = args.out[0].data;
  return [src, dst, n]() {
    if (n && src != dst) std::memmove(dst, src, n);
  };
}

}  // namespace
}  // namespace cpu

void register_shape_kernels(KernelRegistry& r) {
  using cpu::add_kernel;
  using cpu::schema_dtypes;
  using cpu::StridedLoop;
  // Data movement is dtype-agnostic (raw items by size): one factory for every dtype the
  // schema allows.
  auto strided = [&](const char* op, StridedLoop<1> (*loop)(const KernelArgs&)) {
    for (DType t : schema_dtypes(op)) {
      add_kernel(r, op, t, [loop](const KernelArgs& a) { return cpu::strided_copy_kernel(a, loop(a)); });
    }
  };
  strided("broadcast_to", cpu::broadcast_to_loop);
  strided("transpose", cpu::transpose_loop);
  strided("slice", cpu::slice_step_loop);
  strided("broadcast_like", cpu::broadcast_like_loop);
  for (DType t : schema_dtypes("concat")) {
    add_kernel(r, "concat", t, [](const KernelArgs& a) { return cpu::concat_split_kernel(a, true); });
  }
  for (DType t : schema_dtypes("split")) {
    add_kernel(r, "split", t, [](const KernelArgs& a) { return cpu::concat_split_kernel(a, false); });
  }
  for (DType t : schema_dtypes("slice_grad")) add_kernel(r, "slice_grad", t, cpu::slice_grad_kernel);
  for (const cpu::ViewOp& v : cpu::view_ops()) {
    for (DType t : schema_dtypes(v.op)) {
      add_kernel(r, v.op, t, [&v](const KernelArgs& a) { return cpu::view_copy_kernel(a, v); });
    }
  }
}

}  // namespace graphc
