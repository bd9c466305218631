// tensor_extra.cu — the CUDA twin of runtime/cpu/tensor_extra.cc: identity, tile, resize,
// resize_grad.  Steps are checked by the CPU's own code (cpu/shape_plans.h, cpu/resize_taps.h).
// - identity: cudaMemcpyAsync device-to-device unless the plan made it a view (same buffer).
// - tile: one StridedCopy gather (copy.cuh) over y viewed as (r0, d0, r1, d1, ...) with stride 0
//   along each r axis, as the CPU.
// - resize / resize_grad: resize_gather, one thread per destination item (grid-stride).  The
//   thread computes its coordinates, then walks the tap combinations of the axes in the CPU's
//   order (axis rank-2 outermost ... axis 0, then the last axis innermost) with an odometer:
//   forward, an axis's taps are resize_taps(j) of its output index j (<= 2, the same HD function
//   the CPU builds its tables with); backward (resize_grad, a gather: no atomics), the taps of
//   input index i are the outputs j that read it, ascending: j in [ja, jb] found by binary search
//   (both tap indices are monotone in j), each filtered exactly as the CPU transposes its table.
//   Linear: Σ Π weights · x in float64 with every product and sum rounded on its own
//   (__dmul_rn/__dadd_rn: no FMA contraction, the CPU's bits); nearest: the first tap of every
//   axis, copied as raw items (any dtype), 0 when an axis has none.
#include "../cpu/resize_taps.h"
#include "../cpu/shape_plans.h"
#include "common.cuh"
#include "copy.cuh"

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

// One resize / resize_grad step for the device: per axis, the forward sizes (n_in -> n_out at
// scale) when the axis is resized; the destination's dims and the source's strides.
struct ResizeDev {
  cpu::ResizeMath math;
  int rank = 0;
  int64_t numel = 0;                 // destination items
  int64_t dst_dims[kMaxDims] = {};
  int64_t src_strides[kMaxDims] = {};
  bool resized[kMaxDims] = {};
  int64_t n_in[kMaxDims] = {}, n_out[kMaxDims] = {};
  double scale[kMaxDims] = {};
};

__device__ inline double dmul(double a, double b) { return __dmul_rn(a, b); }
__device__ inline double dadd(double a, double b) { return __dadd_rn(a, b); }

// Entry e of axis a's tap list for destination coordinate c: its source index and weight;
// false when the entry is not a tap.  Forward: e in [0, 2), the taps of output index c.
// Backward: e = 2 j + k for output j, its tap k when that reads input index c.
template <bool kGrad>
__device__ inline bool tap_entry(const ResizeDev& d, int a, int64_t c, int64_t e, int64_t* src, double* w) {
  if (!d.resized[a]) {
    *src = c;
    *w = 1.0;
    return true;
  }
  int64_t idx[2];
  double wt[2];
  const int k = static_cast<int>(e & 1);
  const int64_t j = kGrad ? (e >> 1) : c;
  cpu::resize_taps(d.math, d.n_in[a], d.n_out[a], d.scale[a], j, idx, wt);
  if (wt[k] == 0) return false;
  if (kGrad && idx[k] != c) return false;
  *src = kGrad ? j : idx[k];
  *w = wt[k];
  return true;
}

// [lo, hi) of the entries of axis a for destination coordinate c.
template <bool kGrad> __device__ inline void tap_range(const ResizeDev& d, int a, int64_t c, int64_t* lo, int64_t* hi) {
  if (!d.resized[a]) {
    *lo = 0;
    *hi = 1;
    return;
  }
  if (!kGrad) {
    *lo = 0;
    *hi = 2;
    return;
  }
  // Outputs j whose taps may read input c: idx1(j) >= c and idx0(j) <= c (both monotone in j).
  int64_t idx[2];
  double w[2];
  const int64_t n = d.n_out[a];
  int64_t b = 0, e = n;  // first j with idx1(j) >= c
  while (b < e) {
    const int64_t m = b + (e - b) / 2;
    cpu::resize_taps(d.math, d.n_in[a], n, d.scale[a], m, idx, w);
    if (idx[1] >= c) e = m; else b = m + 1;
  }
  const int64_t ja = b;
  b = ja;
  e = n;  // first j with idx0(j) > c
  while (b < e) {
    const int64_t m = b + (e - b) / 2;
    cpu::resize_taps(d.math, d.n_in[a], n, d.scale[a], m, idx, w);
    if (idx[0] > c) e = m; else b = m + 1;
  }
  *lo = 2 * ja;
  *hi = 2 * b;
}

template <class T, bool kSum, bool kGrad>
__global__ void resize_gather(ResizeDev d, const T* __restrict__ src, T* __restrict__ dst) {
  const int R = d.rank;
  GRAPHC_GRID_STRIDE(o, d.numel) {
    int64_t c[kMaxDims];
    int64_t rem = o;
    for (int a = R - 1; a >= 0; --a) {
      const int64_t q = rem / d.dst_dims[a];
      c[a] = rem - q * d.dst_dims[a];
      rem = q;
    }
    // Level l walks axis ax(l): rank-2, rank-3, ..., 0, then rank-1 (innermost).
    int axis[kMaxDims];
    int64_t lo[kMaxDims], hi[kMaxDims];
    for (int l = 0; l < R; ++l) {
      axis[l] = l == R - 1 ? R - 1 : R - 2 - l;
      tap_range<kGrad>(d, axis[l], c[axis[l]], &lo[l], &hi[l]);
    }
    if (!kSum) {
      int64_t off = 0;
      bool found = true;
      for (int l = 0; l < R && found; ++l) {
        found = false;
        for (int64_t e = lo[l]; e < hi[l]; ++e) {
          int64_t s;
          double w;
          if (tap_entry<kGrad>(d, axis[l], c[axis[l]], e, &s, &w)) {
            off += s * d.src_strides[axis[l]];
            found = true;
            break;
          }
        }
      }
      dst[o] = found ? src[off] : T(0);
    } else {
      double pre[kMaxDims + 1];
      int64_t off[kMaxDims + 1], ent[kMaxDims];
      pre[0] = 1.0;
      off[0] = 0;
      double acc = 0.0;
      int l = 0;
      ent[0] = lo[0] - 1;
      while (l >= 0) {
        int64_t s = 0;
        double w = 0;
        bool found = false;
        while (++ent[l] < hi[l]) {
          if (tap_entry<kGrad>(d, axis[l], c[axis[l]], ent[l], &s, &w)) {
            found = true;
            break;
          }
        }
        if (!found) {
          --l;
          continue;
        }
        pre[l + 1] = dmul(pre[l], w);
        off[l + 1] = off[l] + s * d.src_strides[axis[l]];
        if (l == R - 1) {
          acc = dadd(acc, dmul(pre[R], static_cast<double>(src[off[R]])));
        } else {
          ++l;
          ent[l] = lo[l] - 1;
        }
      }
      dst[o] = static_cast<T>(acc);
    }
  }
}

// dst (dims dd) <- src (dims sd) through the taps; grad: the transposed taps.
template <class T, bool kSum, bool kGrad>
Kernel resize_launch(const KernelArgs& a, const cpu::ResizeSpec& s, const TensorRef& src_t, const TensorRef& dst_t,
                     const std::vector<int64_t>& xd, const std::vector<int64_t>& yd) {
  const int64_t numel = numel_of(dst_t);
  if (numel == 0) return no_op_kernel();
  const size_t rank = dst_t.dims.size();
  if (rank == 0) return device_copy_kernel(a, src_t.data, dst_t.data, sizeof(T));
  if (rank > static_cast<size_t>(kMaxDims)) {
    a.fail("the CUDA resize takes rank " + std::to_string(kMaxDims) + " at most, got " + format_dims(dst_t.dims));
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
