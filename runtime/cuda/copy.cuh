// copy.cuh — raw data movement on the GPU, shared by shape.cu and tensor_extra.cu: a strided
// gather/scatter of items (cpu::StridedLoop<1> on the device), a tiled transpose, contiguous
// copies.  Items move as raw units of 1-16 bytes, whatever the dtype (bool included).
//
// The kernels (one launch each; the host picks one when the step is prepared):
// - contiguous:   cudaMemcpyAsync device-to-device on the stream (a graph memcpy node).
// - transpose_tiles: the loop's last two (collapsed) dims are (P, Q) with input strides (1, sq):
//   a block (32x8 threads) moves 32x32 tiles through shared memory (32x33: no bank conflicts),
//   reading 32 consecutive p and writing 32 consecutive q per warp (both coalesced); the blocks
//   grid-stride over (outer, p-tile, q-tile).
// - strided_rows: rank >= 2 with >= 32 items per row: grid.y grid-strides over rows, each block
//   computes its row's source offset once, grid.x threads stride over the row's items.
// - strided_items: anything else: one thread per item (grid-stride), the offset from the
//   collapsed dims (32-bit index arithmetic when the item count fits).
// A loop whose innermost stride is 1 and whose other strides, base, row length and pointers
// are all multiples of a wider unit is moved in that unit (up to 16 bytes: uint4).
// kScatter = true is the same walk with the roles swapped: dst[offset(i)] = src[i]
// (slice_grad; the offsets of one loop are distinct, so no two threads write one item).
#pragma once

#include <cstdint>

#include "common.cuh"

namespace graphc {
namespace cuda {

// The raw unit of `bytes` (1, 2, 4, 8 or 16).
template <class F> auto dispatch_unit(size_t bytes, F&& f) {
  switch (bytes) {
    case 1: return f(Tag<uint8_t>{});
    case 2: return f(Tag<uint16_t>{});
    case 4: return f(Tag<uint32_t>{});
    case 8: return f(Tag<uint64_t>{});
    case 16: return f(Tag<uint4>{});
    default: throw std::invalid_argument("unsupported item size " + std::to_string(bytes));
  }
}

// The largest unit (<= 16 bytes) dividing `v` (0 divides by everything).
inline size_t unit_dividing(uint64_t v) {
  size_t u = 16;
  while (u > 1 && v % u != 0) u >>= 1;
  return u;
}

#if defined(__CUDACC__)
// Source offset (in items) of item i of a walk (gather) / destination offset (scatter).
template <class I> __device__ inline int64_t walk_offset(const Strides<1>& s, I i, int first_dim = 0) {
  int64_t off = s.base[0];
  for (int j = s.rank - 1; j > first_dim; --j) {
    const I d = static_cast<I>(s.dims[j]);
    const I q = i / d;
    off += static_cast<int64_t>(i - q * d) * s.strides[j][0];
    i = q;
  }
  return off + static_cast<int64_t>(i) * s.strides[first_dim][0];
}

template <class T, class I, bool kScatter>
__global__ void strided_items(Strides<1> s, const T* __restrict__ src, T* __restrict__ dst) {
  const I n = static_cast<I>(s.numel);
  for (I i = static_cast<I>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += static_cast<I>(gridDim.x) * blockDim.x) {
    const int64_t off = walk_offset<I>(s, i);
    if (kScatter) {
      dst[off] = src[i];
    } else {
      dst[i] = src[off];
    }
  }
}

// s.dims[rank-1] items per row; the row's offset from dims[0..rank-2].
template <class T, bool kScatter>
__global__ void strided_rows(Strides<1> s, int64_t rows, const T* __restrict__ src, T* __restrict__ dst) {
  const int r1 = s.rank - 1;
  const int64_t inner = s.dims[r1], si = s.strides[r1][0];
  for (int64_t row = blockIdx.y; row < rows; row += gridDim.y) {
    int64_t off = s.base[0], rem = row;
    for (int j = r1 - 1; j >= 0; --j) {
      const int64_t q = rem / s.dims[j];
      off += (rem - q * s.dims[j]) * s.strides[j][0];
      rem = q;
    }
    const int64_t o = row * inner;
    for (int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; c < inner;
         c += static_cast<int64_t>(gridDim.x) * blockDim.x) {
      if (kScatter) {
        dst[off + c * si] = src[o + c];
      } else {
        dst[o + c] = src[off + c * si];
      }
    }
  }
}

constexpr int kTile = 32, kTileRows = 8;

// y (outer, P, Q) contiguous <- x with strides (outer: s, P: 1, Q: sq); s.base is x's base.
template <class T>
__global__ void transpose_tiles(Strides<1> outer, int64_t P, int64_t Q, int64_t sq, const T* __restrict__ x,
                                T* __restrict__ y) {
  __shared__ T tile[kTile][kTile + 1];
  const int64_t tp = (P + kTile - 1) / kTile, tq = (Q + kTile - 1) / kTile;
  const int64_t per_outer = tp * tq, total = outer.numel * per_outer;
  const int tx = threadIdx.x, ty = threadIdx.y;
  for (int64_t t = blockIdx.x; t < total; t += gridDim.x) {
    const int64_t b = t / per_outer, rem = t - b * per_outer;
    const int64_t p0 = (rem / tq) * kTile, q0 = (rem % tq) * kTile;
    const int64_t xb = walk_offset<int64_t>(outer, b);
    const T* xt = x + xb;
    for (int k = ty; k < kTile; k += kTileRows) {
      const int64_t p = p0 + tx, q = q0 + k;
      if (p < P && q < Q) tile[k][tx] = xt[p + q * sq];
    }
    __syncthreads();
    T* yt = y + b * P * Q;
    for (int k = ty; k < kTile; k += kTileRows) {
      const int64_t p = p0 + k, q = q0 + tx;
      if (p < P && q < Q) yt[p * Q + q] = tile[tx][k];
    }
    __syncthreads();
  }
}
#endif  // __CUDACC__

// Enqueues the walk `s` (a gather dst[i] = src[off(i)], or with scatter dst[off(i)] = src[i])
// of items of `item` bytes.  Built once when a step is prepared; calls nothing on the device
// until run.
class StridedCopy {
 public:
  StridedCopy() = default;
  StridedCopy(const KernelArgs& a, const cpu::StridedLoop<1>& loop, const void* src, void* dst, size_t item,
              bool scatter);
  bool empty() const { return s_.numel == 0; }
  void run(cudaStream_t stream) const;

 private:
  enum class Path { Memcpy, Tiles, Rows, Items32, Items64 };
  Strides<1> s_;
  Path path_ = Path::Items64;
  size_t unit_ = 1;
  bool scatter_ = false;
  const void* src_ = nullptr;
  void* dst_ = nullptr;
  Strides<1> outer_;  // Tiles: the outer dims
};

// ---- StridedCopy -------------------------------------------------------------------------

inline StridedCopy::StridedCopy(const KernelArgs& a, const cpu::StridedLoop<1>& loop, const void* src, void* dst,
                                size_t item, bool scatter)
    : s_(to_device(a, loop)), unit_(item), scatter_(scatter), src_(src), dst_(dst) {
  if (s_.numel == 0) return;
  const int r1 = s_.rank - 1;
  // A wider unit when the innermost dim is contiguous and everything else is a multiple of it.
  if (s_.strides[r1][0] == 1) {
    uint64_t all = static_cast<uint64_t>(s_.dims[r1]) * item | static_cast<uint64_t>(s_.base[0]) * item |
                   reinterpret_cast<uintptr_t>(src) | reinterpret_cast<uintptr_t>(dst);
    for (int j = 0; j < r1; ++j) all |= static_cast<uint64_t>(s_.strides[j][0]) * item;
    const size_t u = std::max(unit_dividing(all), item);
    if (u > item) {
      const int64_t k = static_cast<int64_t>(u / item);
      s_.dims[r1] /= k;
      for (int j = 0; j < r1; ++j) s_.strides[j][0] /= k;
      s_.base[0] /= k;
      s_.numel /= k;
      unit_ = u;
    }
  }
  if (s_.rank == 1 && s_.strides[0][0] == 1) {
    path_ = Path::Memcpy;
  } else if (!scatter && s_.rank >= 2 && s_.strides[r1 - 1][0] == 1 && s_.strides[r1][0] != 1 &&
             s_.strides[r1][0] != 0 && s_.dims[r1 - 1] >= 8 && s_.dims[r1] >= 8) {
    path_ = Path::Tiles;
    outer_.rank = std::max(1, s_.rank - 2);
    outer_.numel = 1;
    outer_.dims[0] = 1;
    outer_.strides[0][0] = 0;
    for (int j = 0; j + 2 < s_.rank; ++j) {
      outer_.dims[j] = s_.dims[j];
      outer_.strides[j][0] = s_.strides[j][0];
      outer_.numel *= s_.dims[j];
    }
    outer_.base[0] = s_.base[0];
  } else if (s_.rank >= 2 && s_.dims[r1] >= 32) {
    path_ = Path::Rows;
  } else {
    path_ = s_.numel <= INT32_MAX ? Path::Items32 : Path::Items64;
  }
}

#if defined(__CUDACC__)
inline void StridedCopy::run(cudaStream_t stream) const {
  if (s_.numel == 0) return;
  if (path_ == Path::Memcpy) {
    const size_t n = static_cast<size_t>(s_.numel) * unit_;
    const size_t b = static_cast<size_t>(s_.base[0]) * unit_;
    const void* from = scatter_ ? src_ : static_cast<const uint8_t*>(src_) + b;
    void* to = scatter_ ? static_cast<uint8_t*>(dst_) + b : dst_;
    GRAPHC_CUDA_CHECK(cudaMemcpyAsync(to, from, n, cudaMemcpyDeviceToDevice, stream));
    return;
  }
  dispatch_unit(unit_, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* src = static_cast<const T*>(src_);
    T* dst = static_cast<T*>(dst_);
    switch (path_) {
      case Path::Tiles: {
        const int64_t P = s_.dims[s_.rank - 2], Q = s_.dims[s_.rank - 1];
        const int64_t tiles = outer_.numel * ((P + kTile - 1) / kTile) * ((Q + kTile - 1) / kTile);
        const unsigned blocks = static_cast<unsigned>(std::min<int64_t>(tiles, int64_t(1) << 20));
        transpose_tiles<T><<<blocks, dim3(kTile, kTileRows), 0, stream>>>(outer_, P, Q, s_.strides[s_.rank - 1][0],
                                                                          src, dst);
        break;
      }
      case Path::Rows: {
        const int64_t inner = s_.dims[s_.rank - 1], rows = s_.numel / inner;
        const dim3 grid(std::min<unsigned>(blocks_for(inner), 64u),
                        static_cast<unsigned>(std::min<int64_t>(rows, 65535)));
        if (scatter_) {
          strided_rows<T, true><<<grid, kThreads, 0, stream>>>(s_, rows, src, dst);
        } else {
          strided_rows<T, false><<<grid, kThreads, 0, stream>>>(s_, rows, src, dst);
        }
        break;
      }
      case Path::Items32:
        if (scatter_) {
          strided_items<T, uint32_t, true><<<blocks_for(s_.numel), kThreads, 0, stream>>>(s_, src, dst);
        } else {
          strided_items<T, uint32_t, false><<<blocks_for(s_.numel), kThreads, 0, stream>>>(s_, src, dst);
        }
        break;
      default:
        if (scatter_) {
          strided_items<T, int64_t, true><<<blocks_for(s_.numel), kThreads, 0, stream>>>(s_, src, dst);
        } else {
          strided_items<T, int64_t, false><<<blocks_for(s_.numel), kThreads, 0, stream>>>(s_, src, dst);
        }
        break;
    }
  });
  GRAPHC_CUDA_LAUNCH_CHECK("strided copy");
}
#endif  // __CUDACC__

// A device-to-device copy of n bytes on the stream unless src == dst (a view op a plan
// materialises; plans never hand a kernel partly overlapping buffers).
inline Kernel device_copy_kernel(const KernelArgs& a, const void* src, void* dst, size_t n) {
  if (n == 0 || src == dst) return no_op_kernel();
  cudaStream_t stream = stream_of(a);
  return [src, dst, n, stream]() {
    GRAPHC_CUDA_CHECK(cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToDevice, stream));
  };
}

}  // namespace cuda
}  // namespace graphc
