// ew.cuh — the elementwise launch helpers of ELEM's kernel files (elementwise.cu, math.cu,
// activations.cu): one unary map, one broadcasting binary zip, one ternary select, each
// templated on the scalar functor (the GRAPHC_HD functors of runtime/cpu/elementwise_ops.h,
// math_ops.h, activation_ops.h), with the CPU twins' validation (cpu::zip_operands, the same
// expect_* checks and messages).
//
// Launch shape: kThreads-thread blocks, a grid-stride loop (blocks_for), 64-bit item indices.
// Contiguous operands whose addresses are 16-byte aligned (known at prepare: every address is
// fixed by the plan) take a vector path: each thread loads and stores one 16-byte vector of the
// wider type per iteration (float4, double2, ...), the n % V tail items by the first threads.
// Broadcast operands go through Strides<N> (collapsed dims and per-input strides, by value),
// with 32-bit index arithmetic when the output has fewer than 2^31 items.  An output may alias
// an input exactly: each thread reads its items before writing them, and no item is read by
// another thread.
#pragma once

#include <cstdint>
#include <type_traits>

#include "../cpu/map_kernel.h"
#include "common.cuh"

namespace graphc {
namespace cuda {

// Items per vector: 16 bytes of the wider of T and O.
template <class T, class O> constexpr int vec_width() {
  constexpr size_t w = sizeof(T) > sizeof(O) ? sizeof(T) : sizeof(O);
  return static_cast<int>(16 / w);
}

template <class T, int V> struct alignas(sizeof(T) * V) Vec {
  T v[V];
};

inline bool aligned_to(const void* p, size_t bytes) { return reinterpret_cast<uintptr_t>(p) % bytes == 0; }

#if defined(__CUDACC__)

// Element offsets of output item i into each input (Strides<N>::offsets in index type I: 32-bit
// division when the caller checked that every offset fits).
template <class I, int N>
__device__ __forceinline__ void ew_offsets(const Strides<N>& s, int64_t i64, int64_t (&off)[N]) {
  if (s.rank == 1) {
#pragma unroll
    for (int k = 0; k < N; ++k) off[k] = s.base[k] + i64 * s.strides[0][k];
    return;
  }
  I o[N];
#pragma unroll
  for (int k = 0; k < N; ++k) o[k] = 0;
  I i = static_cast<I>(i64);
  for (int j = s.rank - 1; j >= 0; --j) {
    const I d = static_cast<I>(s.dims[j]);
    const I q = i / d;
    const I r = i - q * d;
    i = q;
#pragma unroll
    for (int k = 0; k < N; ++k) o[k] += r * static_cast<I>(s.strides[j][k]);
  }
#pragma unroll
  for (int k = 0; k < N; ++k) off[k] = s.base[k] + static_cast<int64_t>(o[k]);
}

// y[i] = f(x[i]), i < n.  Each thread: V items per grid-stride iteration (one vector load and
// store; V = 1 when unaligned), then at most one of the n % V tail items.
template <class T, class O, int V, class F> __global__ void ew_map_kernel(const T* x, O* y, int64_t n, F f) {
  const int64_t nv = n / V;
  const Vec<T, V>* xv = reinterpret_cast<const Vec<T, V>*>(x);
  Vec<O, V>* yv = reinterpret_cast<Vec<O, V>*>(y);
  GRAPHC_GRID_STRIDE(i, nv) {
    const Vec<T, V> a = xv[i];
    Vec<O, V> b;
#pragma unroll
    for (int k = 0; k < V; ++k) b.v[k] = f(a.v[k]);
    yv[i] = b;
  }
  if (V > 1) {
    const int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (t < n - nv * V) y[nv * V + t] = f(x[nv * V + t]);
  }
}

// y[i] = f(a[i·sa], b[i·sb]) with sa, sb in {0, 1}, not both 0: the contiguous operand(s) read
// as V-item vectors, a broadcast scalar read once per thread.
template <class T, class O, int V, class F>
__global__ void ew_zip_flat_kernel(const T* a, bool a_scalar, const T* b, bool b_scalar, O* y, int64_t n, F f) {
  const int64_t nv = n / V;
  const T as = a_scalar ? a[0] : T(0);
  const T bs = b_scalar ? b[0] : T(0);
  Vec<O, V>* yv = reinterpret_cast<Vec<O, V>*>(y);
  GRAPHC_GRID_STRIDE(i, nv) {
    Vec<T, V> va, vb;
    if (a_scalar) {
#pragma unroll
      for (int k = 0; k < V; ++k) va.v[k] = as;
    } else {
      va = reinterpret_cast<const Vec<T, V>*>(a)[i];
    }
    if (b_scalar) {
#pragma unroll
      for (int k = 0; k < V; ++k) vb.v[k] = bs;
    } else {
      vb = reinterpret_cast<const Vec<T, V>*>(b)[i];
    }
    Vec<O, V> r;
#pragma unroll
    for (int k = 0; k < V; ++k) r.v[k] = f(va.v[k], vb.v[k]);
    yv[i] = r;
  }
  if (V > 1) {
    const int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    const int64_t j = nv * V + t;
    if (t < n - nv * V) y[j] = f(a_scalar ? as : a[j], b_scalar ? bs : b[j]);
  }
}

// y[i] = f(a[off_a(i)], b[off_b(i)]): any broadcast, one item per thread per iteration.
template <class T, class O, class I, class F>
__global__ void ew_zip_strided_kernel(const T* a, const T* b, O* y, const Strides<2> s, F f) {
  GRAPHC_GRID_STRIDE(i, s.numel) {
    int64_t off[2];
    ew_offsets<I>(s, i, off);
    y[i] = f(a[off[0]], b[off[1]]);
  }
}

// out[i] = c[i] ? x[i] : y[i] on contiguous, aligned operands: V items per thread per iteration.
template <class T, int V>
__global__ void ew_where_flat_kernel(const cpu::boolean* c, const T* x, const T* y, T* out, int64_t n) {
  const int64_t nv = n / V;
  GRAPHC_GRID_STRIDE(i, nv) {
    const Vec<cpu::boolean, V> vc = reinterpret_cast<const Vec<cpu::boolean, V>*>(c)[i];
    const Vec<T, V> vx = reinterpret_cast<const Vec<T, V>*>(x)[i];
    const Vec<T, V> vy = reinterpret_cast<const Vec<T, V>*>(y)[i];
    Vec<T, V> r;
#pragma unroll
    for (int k = 0; k < V; ++k) r.v[k] = vc.v[k] ? vx.v[k] : vy.v[k];
    reinterpret_cast<Vec<T, V>*>(out)[i] = r;
  }
  if (V > 1) {
    const int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    const int64_t j = nv * V + t;
    if (t < n - nv * V) out[j] = c[j] ? x[j] : y[j];
  }
}

// out[i] = c[off_c(i)] ? x[off_x(i)] : y[off_y(i)]: any broadcast.
template <class T, class I>
__global__ void ew_where_strided_kernel(const cpu::boolean* c, const T* x, const T* y, T* out, const Strides<3> s) {
  GRAPHC_GRID_STRIDE(i, s.numel) {
    int64_t off[3];
    ew_offsets<I>(s, i, off);
    out[i] = c[off[0]] ? x[off[1]] : y[off[2]];
  }
}

// ---- host: launches (inside the returned Kernel; the factories below build them) ----------

// Whether 32-bit offsets suffice: every offset of a broadcast input is below the output's
// item count (inputs are contiguous, strides >= 0).
inline bool small_index(int64_t numel) { return numel < (int64_t(1) << 31); }

// y = f(x) over n contiguous items.
template <class T, class O, class F>
Kernel ew_map_launch(const KernelArgs& args, const T* x, O* y, int64_t n, F f, const char* what) {
  if (n == 0) return no_op_kernel();
  constexpr int V = vec_width<T, O>();
  const cudaStream_t stream = stream_of(args);
  if (aligned_to(x, sizeof(T) * V) && aligned_to(y, sizeof(O) * V)) {
    const unsigned blocks = blocks_for(std::max<int64_t>(n / V, 1));
    return [=] {
      ew_map_kernel<T, O, V, F><<<blocks, kThreads, 0, stream>>>(x, y, n, f);
      GRAPHC_CUDA_LAUNCH_CHECK(what);
    };
  }
  const unsigned blocks = blocks_for(n);
  return [=] {
    ew_map_kernel<T, O, 1, F><<<blocks, kThreads, 0, stream>>>(x, y, n, f);
    GRAPHC_CUDA_LAUNCH_CHECK(what);
  };
}

// cpu::map_kernel's checks (one input of T, the output of O and x's dims), then y = f(x).
template <class T, class O, class F> Kernel ew_map(const KernelArgs& args, F f, const char* what) {
  args.expect_arity(1, 1);
  const TensorRef &x = args.in[0], &y = args.out[0];
  cpu::expect_dtype(args, x, dtype_of<T>(), "input");
  cpu::expect_dtype(args, y, dtype_of<O>(), "output");
  cpu::expect_dims(args, y, x.dims, "output");
  return ew_map_launch<T, O>(args, x.as<const T>(), y.as<O>(), numel_of(x), f, what);
}

// y = f(a, b) with numpy broadcasting: cpu::zip_operands' checks, then the flat vector kernel
// when each operand is contiguous or one scalar (and aligned), else the strided kernel.
template <class T, class O, class F> Kernel ew_zip(const KernelArgs& args, F f, const char* what) {
  const cpu::ZipOperands<T, O> z = cpu::zip_operands<T, O>(args);
  if (z.loop.numel == 0) return no_op_kernel();
  const Strides<2> s = to_device(args, z.loop);
  const cudaStream_t stream = stream_of(args);
  const T* a = z.a;
  const T* b = z.b;
  O* y = z.y;
  const int64_t n = s.numel;
  constexpr int V = vec_width<T, O>();
  if (s.rank == 1) {
    const int64_t sa = s.strides[0][0], sb = s.strides[0][1];
    const bool flat = (sa == 0 || sa == 1) && (sb == 0 || sb == 1) && (sa == 1 || sb == 1);
    const T* pa = a + s.base[0];
    const T* pb = b + s.base[1];
    if (flat && (sa == 0 || aligned_to(pa, sizeof(T) * V)) && (sb == 0 || aligned_to(pb, sizeof(T) * V)) &&
        aligned_to(y, sizeof(O) * V)) {
      const unsigned blocks = blocks_for(std::max<int64_t>(n / V, 1));
      return [=] {
        ew_zip_flat_kernel<T, O, V, F><<<blocks, kThreads, 0, stream>>>(pa, sa == 0, pb, sb == 0, y, n, f);
        GRAPHC_CUDA_LAUNCH_CHECK(what);
      };
    }
  }
  const unsigned blocks = blocks_for(n);
  if (small_index(n)) {
    return [=] {
      ew_zip_strided_kernel<T, O, uint32_t, F><<<blocks, kThreads, 0, stream>>>(a, b, y, s, f);
      GRAPHC_CUDA_LAUNCH_CHECK(what);
    };
  }
  return [=] {
    ew_zip_strided_kernel<T, O, uint64_t, F><<<blocks, kThreads, 0, stream>>>(a, b, y, s, f);
    GRAPHC_CUDA_LAUNCH_CHECK(what);
  };
}

// dx = f(dy, x), the activation gradients' same-shape pair (activations.cc's grad_kernel checks).
template <class T, class F> Kernel ew_grad(const KernelArgs& args, F f, const char* what) {
  args.expect_arity(2, 1);
  const TensorRef &dy = args.in[0], &x = args.in[1], &dx = args.out[0];
  cpu::expect_dtype(args, dy, x.dtype, "input 0 (dy)");
  cpu::expect_dtype(args, dx, x.dtype, "output");
  cpu::expect_dims(args, dy, x.dims, "input 0 (dy)");
  cpu::expect_dims(args, dx, x.dims, "output");
  const int64_t n = numel_of(x);
  if (n == 0) return no_op_kernel();
  const T* pdy = dy.as<const T>();
  const T* px = x.as<const T>();
  T* pdx = dx.as<T>();
  const cudaStream_t stream = stream_of(args);
  constexpr int V = vec_width<T, T>();
  if (aligned_to(pdy, sizeof(T) * V) && aligned_to(px, sizeof(T) * V) && aligned_to(pdx, sizeof(T) * V)) {
    const unsigned blocks = blocks_for(std::max<int64_t>(n / V, 1));
    return [=] {
      ew_zip_flat_kernel<T, T, V, F><<<blocks, kThreads, 0, stream>>>(pdy, false, px, false, pdx, n, f);
      GRAPHC_CUDA_LAUNCH_CHECK(what);
    };
  }
  const unsigned blocks = blocks_for(n);
  return [=] {
    ew_zip_flat_kernel<T, T, 1, F><<<blocks, kThreads, 0, stream>>>(pdy, false, px, false, pdx, n, f);
    GRAPHC_CUDA_LAUNCH_CHECK(what);
  };
}

#endif  // __CUDACC__

}  // namespace cuda
}  // namespace graphc
