// common.cuh — what every runtime/cuda kernel file shares.
//
// A CUDA kernel file mirrors its runtime/cpu twin: the factory is host code that validates
// the step with the CPU's own helpers (cpu/common.h: check_tensor_refs, broadcast_dims,
// StridedLoop, the generated attrs::<Op>(args)), precomputes everything (launch shape, device
// stride tables passed by value), and returns a Kernel that only enqueues work on the
// device's stream.  A Kernel never synchronises, never allocates and never reads device
// memory on the host: the executor captures a whole run into a CUDA graph and replays it, so
// whatever a Kernel decides on the host is decided once, at prepare time.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "../cpu/common.h"
#include "../hd.h"
#include "cuda_device.h"

namespace graphc {
namespace cuda {

using cpu::boolean;
using cpu::dtype_of;
using cpu::Tag;
using cpu::numel_of;
using cpu::AllTypes;
using cpu::FloatTypes;
using cpu::NumericTypes;

// ---- host side -------------------------------------------------------------------------

// A dry prepare (KernelContext): validate and precompute, call no CUDA or library function.
inline bool dry(const KernelArgs& a) { return a.ctx.device == nullptr; }

// Data errors a kernel cannot throw: it records the first one here (ctx.error_slot, device
// memory) and the executor raises after the run: "step N (node, op): <message>".
enum ErrorCode : int32_t {
  kNoError = 0,
  kIndexOutOfRange = 1,  // v0: the index, v1: the exclusive bound
  kInvalidValue = 2,     // v0: the value (an integer input out of its allowed set)
};
struct ErrorSlot {
  int32_t code;        // ErrorCode; 0 while no error was recorded
  int32_t pad;
  int64_t step_index;  // KernelContext::step_index of the kernel that recorded it
  int64_t v0, v1;
};
inline ErrorSlot* error_slot_of(const KernelArgs& a) { return static_cast<ErrorSlot*>(a.ctx.error_slot); }

// The device a step's tensors live on.  Throws std::invalid_argument when the step is not
// prepared for a CUDA device (a CPU executor never reaches a CUDA kernel).
inline CudaDevice& device_of(const KernelArgs& a) {
  auto* d = dynamic_cast<CudaDevice*>(a.ctx.device);
  if (d == nullptr) a.fail("a CUDA kernel needs a CUDA device");
  return *d;
}
inline cudaStream_t stream_of(const KernelArgs& a) { return static_cast<cudaStream_t>(a.ctx.stream); }

constexpr int kThreads = 256;  // the default block size

// Blocks for a grid-stride loop over n items: enough to fill the GPU, never more than needed.
inline unsigned blocks_for(int64_t n, int threads = kThreads) {
  if (n <= 0) return 1;
  int64_t b = (n + threads - 1) / threads;
  return static_cast<unsigned>(std::min<int64_t>(b, int64_t(1) << 20));
}

// Registers a CUDA factory behind check_tensor_refs (as cpu::add_kernel does, without the
// worker pool).
inline void add_kernel(KernelRegistry& r, const std::string& op, DType dtype, KernelFactory factory) {
  r.add(op, dtype, [dtype, f = std::move(factory)](const KernelArgs& a) {
    cpu::check_tensor_refs(a, dtype);
    return f(a);
  });
}

// As cpu::add_typed: make(Tag<T>{}, args) for every dtype the schema allows and Types supports.
template <class Types, class Make> void add_typed(KernelRegistry& r, const char* op, Make make) {
  for (DType t : cpu::schema_dtypes(op)) {
    if (!Types::supports(t)) continue;
    add_kernel(r, op, t, [t, make](const KernelArgs& a) -> Kernel {
      return Types::dispatch(t, [&](auto tag) -> Kernel { return make(tag, a); });
    });
  }
}

inline Kernel no_op_kernel() {
  return [] {};
}

// The step's planned workspace `i` as T*, at least `count` items; nullptr when the plan has no
// such workspace (a plan compiled for target "cpu"): the kernel then takes its no-scratch path.
template <class T> T* workspace_or_null(const KernelArgs& a, size_t i, int64_t count) {
  if (i >= a.ws.size()) return nullptr;
  const TensorRef& w = a.ws[i];
  if (static_cast<int64_t>(w.numel() * dtype_size(w.dtype)) < count * static_cast<int64_t>(sizeof(T))) {
    a.fail("workspace " + std::to_string(i) + " is too small: " + std::to_string(w.numel() * dtype_size(w.dtype)) +
           " bytes, the kernel needs " + std::to_string(count * static_cast<int64_t>(sizeof(T))));
  }
  return static_cast<T*>(w.data);
}

// ---- device-side strided iteration -----------------------------------------------------

// cpu::StridedLoop<N> as a value a kernel takes by argument: the collapsed output dims and
// each input's element strides.  Built on the host once; kMaxDims collapsed dims at most
// (a broadcast of rank-8 tensors collapses to fewer; more is refused by the factory).
constexpr int kMaxDims = 8;

template <int N> struct Strides {
  int rank = 1;
  int64_t numel = 0;
  int64_t dims[kMaxDims] = {};
  int64_t strides[kMaxDims][N] = {};
  int64_t base[N] = {};

  // Element offsets into each input of output item `i` (row-major over dims).
  GRAPHC_HD void offsets(int64_t i, int64_t (&off)[N]) const {
    for (int k = 0; k < N; ++k) off[k] = base[k];
    for (int j = rank - 1; j >= 0; --j) {
      const int64_t d = dims[j];
      const int64_t q = i / d;
      const int64_t r = i - q * d;
      i = q;
      for (int k = 0; k < N; ++k) off[k] += r * strides[j][k];
    }
  }
  // Whether every input is read contiguously at its base (the flat fast path).
  bool contiguous() const {
    if (rank != 1) return false;
    for (int k = 0; k < N; ++k) if (strides[0][k] != 1) return false;
    return true;
  }
};

template <int N> Strides<N> to_device(const KernelArgs& a, const cpu::StridedLoop<N>& L) {
  Strides<N> s;
  if (L.dims.size() > static_cast<size_t>(kMaxDims)) {
    a.fail("the iteration has " + std::to_string(L.dims.size()) + " dims after merging; the CUDA kernels take " +
           std::to_string(kMaxDims) + " at most");
  }
  s.rank = static_cast<int>(L.dims.size());
  s.numel = L.numel;
  for (int j = 0; j < s.rank; ++j) {
    s.dims[j] = L.dims[j];
    for (int k = 0; k < N; ++k) s.strides[j][k] = L.strides[j][k];
  }
  for (int k = 0; k < N; ++k) s.base[k] = L.base[k];
  return s;
}

// ---- device side -----------------------------------------------------------------------

#if defined(__CUDACC__)
// for (int64_t i = ...; i < n; i += stride): one grid-stride loop, 64-bit indices.
#define GRAPHC_GRID_STRIDE(i, n)                                                         \
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); \
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)

// Records the first data error of a run (later ones are dropped); the kernel goes on safely
// (e.g. reads no out-of-range row) and the executor raises once the run is done.
__device__ inline void report_error(ErrorSlot* slot, int32_t code, int64_t step, int64_t v0, int64_t v1) {
  if (slot == nullptr) return;
  if (atomicCAS(reinterpret_cast<int*>(&slot->code), 0, code) == 0) {
    slot->step_index = step;
    slot->v0 = v0;
    slot->v1 = v1;
  }
}

// Sum of `v` over a warp (every lane gets it), in a fixed order: deterministic.
template <class T> __device__ inline T warp_sum(T v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
template <class T> __device__ inline T warp_max(T v) {
  for (int o = 16; o > 0; o >>= 1) {
    T w = __shfl_xor_sync(0xffffffffu, v, o);
    v = (w > v || w != w) ? w : v;  // NaN propagates, as numpy's max
  }
  return v;
}
#endif

}  // namespace cuda
}  // namespace graphc
