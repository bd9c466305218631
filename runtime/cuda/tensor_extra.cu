// tensor_extra.cu — the CUDA twin of runtime/cpu/tensor_extra.cc: identity, tile, resize,
// resize_grad.  Steps are checked by the CPU's own code (cpu/shape_plans.h, cpu/resize_taps.h).
// - identity: cudaMemcpyAsync device-to-device unless the plan made it a view (same buffer).
// - tile: one StridedCopy gather (copy.cuh) over y viewed as (r0, d0, r1, d1, ...) with stride 0
//   along each r axis, as the CPU.
// - resize / resize_grad: resize_gather, one thread per destination item (grid-stride), the
//   item computed by resize_item (resize_gather.h: the taps of every axis from the same HD
//   resize_taps the CPU builds its tables with, walked in the CPU's order, float64 sums with
//   every operation rounded on its own; resize_grad is a gather over binary-searched output
//   ranges: no atomics, deterministic).
#include "../cpu/resize_taps.h"
#include "../cpu/shape_plans.h"
#include "common.cuh"
#include "copy.cuh"
#include "resize_gather.h"

namespace graphc {
namespace cuda {
namespace {

Kernel identity_kernel(const KernelArgs& a) {
  const size_t n = cpu::identity_copy_bytes(a);
  return device_copy_kernel(a, a.in[0].data, a.out[0].data, n);
}

Kernel tile_kernel(const KernelArgs& a) {
  const cpu::StridedLoop<1> loop = cpu::tile_loop(a);
  if (numel_of(a.out[0]) == 0) return no_op_kernel();
  const StridedCopy copy(a, loop, a.in[0].data, a.out[0].data, dtype_size(a.in[0].dtype), false);
  cudaStream_t stream = stream_of(a);
  return [copy, stream]() { copy.run(stream); };
}

// -- resize ----------------------------------------------------------------------------------------

template <class T, bool kSum, bool kGrad>
__global__ void resize_gather(ResizeDev d, const T* __restrict__ src, T* __restrict__ dst) {
  GRAPHC_GRID_STRIDE(o, d.numel) dst[o] = resize_item<T, kSum, kGrad>(d, src, o);
}

// dst (dims dd) <- src (dims sd) through the taps; grad: the transposed taps.
template <class T, bool kSum, bool kGrad>
Kernel resize_launch(const KernelArgs& a, const cpu::ResizeSpec& s, const TensorRef& src_t, const TensorRef& dst_t,
                     const std::vector<int64_t>& xd, const std::vector<int64_t>& yd) {
  const int64_t numel = numel_of(dst_t);
  if (numel == 0) return no_op_kernel();
  const size_t rank = dst_t.dims.size();
  if (rank == 0) return device_copy_kernel(a, src_t.data, dst_t.data, sizeof(T));
  if (rank > static_cast<size_t>(kResizeMaxDims)) {
    a.fail("the CUDA resize takes rank " + std::to_string(kResizeMaxDims) + " at most, got " + format_dims(dst_t.dims));
  }
  ResizeDev d;
  d.math = s.math;
  d.rank = static_cast<int>(rank);
  d.numel = numel;
  const auto ss = cpu::contiguous_strides(src_t.dims);
  bool any = false;
  for (size_t i = 0; i < rank; ++i) {
    d.dst_dims[i] = dst_t.dims[i];
    d.src_strides[i] = ss[i];
    double scale = 1.0;
    d.resized[i] = cpu::resize_axis(s, xd, yd, i, &scale);
    d.n_in[i] = xd[i];
    d.n_out[i] = yd[i];
    d.scale[i] = scale;
    any = any || d.resized[i];
  }
  // Nearest with every axis kept: the items as they are.
  if (!kSum && !any) return device_copy_kernel(a, src_t.data, dst_t.data, static_cast<size_t>(numel) * sizeof(T));
  const T* ps = src_t.as<const T>();
  T* pd = dst_t.as<T>();
  cudaStream_t stream = stream_of(a);
  return [d, ps, pd, stream]() {
    resize_gather<T, kSum, kGrad><<<blocks_for(d.numel), kThreads, 0, stream>>>(d, ps, pd);
    GRAPHC_CUDA_LAUNCH_CHECK(kGrad ? "resize_grad" : "resize");
  };
}

template <class T> Kernel resize_kernel(const KernelArgs& a) {
  a.expect_arity(1, 1);
  const TensorRef &x = a.in[0], &y = a.out[0];
  cpu::expect_dtype(a, y, x.dtype, "output");
  const cpu::ResizeSpec s = cpu::resize_spec(a, attrs::Resize(a), x.dims.size());
  const auto want = cpu::resize_out_dims(a, s, x.dims);
  cpu::expect_dims(a, y, want, "output");
  if (numel_of(y) == 0) return no_op_kernel();
  if (s.math.linear) {
    if constexpr (std::is_floating_point_v<T>) {
      return resize_launch<T, true, false>(a, s, x, y, x.dims, want);
    } else {
      a.fail("mode 'linear' needs a float input");
    }
  }
  return resize_launch<T, false, false>(a, s, x, y, x.dims, want);
}

template <class T> Kernel resize_grad_kernel(const KernelArgs& a) {
  a.expect_arity(2, 1);
  const TensorRef &dy = a.in[0], &x = a.in[1], &dx = a.out[0];
  cpu::expect_dtype(a, x, dy.dtype, "input 1");
  cpu::expect_dtype(a, dx, dy.dtype, "output");
  cpu::expect_dims(a, dx, x.dims, "output");
  const cpu::ResizeSpec s = cpu::resize_spec(a, attrs::ResizeGrad(a), x.dims.size());
  const auto yd = cpu::resize_out_dims(a, s, x.dims);
  cpu::expect_dims(a, dy, yd, "input 0 (dy)");
  const int64_t n = numel_of(dx);
  if (n == 0) return no_op_kernel();
  if (numel_of(dy) == 0) {
    void* p = dx.data;
    const size_t nbytes = static_cast<size_t>(n) * sizeof(T);
    cudaStream_t stream = stream_of(a);
    return [p, nbytes, stream]() { GRAPHC_CUDA_CHECK(cudaMemsetAsync(p, 0, nbytes, stream)); };
  }
  return resize_launch<T, true, true>(a, s, dy, dx, x.dims, yd);
}

}  // namespace

void register_tensor_extra_kernels(KernelRegistry& r) {
  using cpu::schema_dtypes;
  for (DType t : schema_dtypes("identity")) add_kernel(r, "identity", t, identity_kernel);
  for (DType t : schema_dtypes("tile")) add_kernel(r, "tile", t, tile_kernel);
  add_typed<AllTypes>(r, "resize", [](auto tag, const KernelArgs& a) {
    return resize_kernel<typename decltype(tag)::type>(a);
  });
  add_typed<FloatTypes>(r, "resize_grad", [](auto tag, const KernelArgs& a) {
    return resize_grad_kernel<typename decltype(tag)::type>(a);
  });
}

}  // namespace cuda
}  // namespace graphc
