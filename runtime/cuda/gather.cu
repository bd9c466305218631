// gather.cu — the CUDA twin of runtime/cpu/gather.cc: embedding (rows of a weight picked by
// integer ids) and its adjoint embedding_grad, a deterministic scatter-add.
//
// An id outside [0, V) (negative included) cannot throw from a kernel: it is recorded in the
// session's error slot (kIndexOutOfRange, the id and V; the executor raises after the run naming
// the step) and its row is skipped — no read or write out of bounds.
//
// Kernels (what each thread/block does):
// - embedding: grid-stride over the output's items, moved as 16-, 8-, 4- or 1-byte words (the
//   widest that divides the row's bytes and both pointers' alignment); item j of output row i
//   copies word j % D of weight row ids[i].  A row of 0 bytes: one thread per id, only the check.
// - embedding_grad with its planned workspace (a plan compiled for target "cuda"; the workspace
//   function is graphc/ops/gather.py's): (1) one thread per id writes key = id (or V when out of
//   range, reported) and value = its position; (2) cub::DeviceRadixSort sorts the (key, position)
//   pairs by key — a stable LSD sort, so each key's positions stay in increasing order; (3) the
//   output is zeroed (memset); (4) grid (sorted positions / 8 warps, column tiles of 32): the warp
//   at the first position of a key's run sums, lane per column, that run's gradient rows in
//   position order (0 + g[p0] + g[p1] + ..., in T) and writes the weight row once.  This is the
//   CPU's exact order of additions (index order), so the results have the CPU's bits; a hot id's
//   run is split over the column tiles only.
// - embedding_grad without a workspace (a plan compiled for the CPU): the CPU's scheme — one
//   thread per column walks every id in order and adds into its column (after a check kernel and
//   a memset); deterministic and exact, but only D threads.
#include <cub/device/device_radix_sort.cuh>

#include "common.cuh"

namespace graphc {
namespace cuda {
namespace {

std::vector<int64_t> gathered_dims(const TensorRef& ids, const TensorRef& w) {
  std::vector<int64_t> d = ids.dims;
  d.insert(d.end(), w.dims.begin() + 1, w.dims.end());
  return d;
}

template <class L> __device__ inline bool valid_id(const L* ids, int64_t i, int64_t V, ErrorSlot* slot, int64_t step) {
  const int64_t v = static_cast<int64_t>(ids[i]);
  if (v >= 0 && v < V) return true;
  report_error(slot, kIndexOutOfRange, step, v, V);
  return false;
}

template <class L> __global__ void check_ids(const L* ids, int64_t n, int64_t V, ErrorSlot* slot, int64_t step) {
  GRAPHC_GRID_STRIDE(i, n) { valid_id(ids, i, V, slot, step); }
}

// y (n, D words) = w[ids] row by row; the id of row i is checked by the thread of its word 0.
template <class W, class L>
__global__ void gather_rows(const L* __restrict__ ids, const W* __restrict__ w, W* __restrict__ y, int64_t n,
                            int64_t D, int64_t V, ErrorSlot* slot, int64_t step) {
  GRAPHC_GRID_STRIDE(j, n * D) {
    const int64_t i = j / D, c = j - i * D;
    const int64_t v = static_cast<int64_t>(ids[i]);
    if (v >= 0 && v < V) {
      y[j] = w[v * D + c];
    } else if (c == 0) {
      report_error(slot, kIndexOutOfRange, step, v, V);
    }
  }
}

template <class L> Kernel embedding_kernel(const KernelArgs& args) {
  args.expect_arity(2, 1);
  const TensorRef &ids = args.in[0], &w = args.in[1], &y = args.out[0];
  if (w.dims.empty()) args.fail("weight (input 1) must have rank >= 1, got a scalar");
  cpu::expect_dtype(args, y, w.dtype, "output");
  cpu::expect_dims(args, y, gathered_dims(ids, w), "output");
  const int64_t n = numel_of(ids), V = w.dims[0];
  const std::vector<int64_t> row_dims(w.dims.begin() + 1, w.dims.end());
  const int64_t row_bytes = numel_of(row_dims) * static_cast<int64_t>(dtype_size(w.dtype));
  const L* pi = ids.as<const L>();
  const void* pw = w.data;
  void* py = y.data;
  if (n == 0 || dry(args)) return no_op_kernel();
  ErrorSlot* slot = error_slot_of(args);
  const int64_t step = args.ctx.step_index;
  cudaStream_t s = stream_of(args);
  if (row_bytes == 0) {  // a bad id is an error whatever the row size
    return [=]() {
      check_ids<L><<<blocks_for(n), kThreads, 0, s>>>(pi, n, V, slot, step);
      GRAPHC_CUDA_LAUNCH_CHECK("embedding");
    };
  }
  const uintptr_t align = reinterpret_cast<uintptr_t>(pw) | reinterpret_cast<uintptr_t>(py);
  auto launch = [&](auto word) -> Kernel {
    using W = decltype(word);
    const int64_t D = row_bytes / static_cast<int64_t>(sizeof(W));
    const W* wp = static_cast<const W*>(pw);
    W* yp = static_cast<W*>(py);
    return [=]() {
      gather_rows<W, L><<<blocks_for(n * D), kThreads, 0, s>>>(pi, wp, yp, n, D, V, slot, step);
      GRAPHC_CUDA_LAUNCH_CHECK("embedding");
    };
  };
  if (row_bytes % 16 == 0 && align % 16 == 0) return launch(uint4{});
  if (row_bytes % 8 == 0 && align % 8 == 0) return launch(uint64_t{});
  if (row_bytes % 4 == 0 && align % 4 == 0) return launch(uint32_t{});
  return launch(uint8_t{});
}

// (1) keys and positions: key = id, or V for an id outside [0, V) (reported; sorted last, skipped).
template <class L>
__global__ void grad_keys(const L* __restrict__ ids, uint64_t* __restrict__ keys, int64_t* __restrict__ pos, int64_t n,
                          int64_t V, ErrorSlot* slot, int64_t step) {
  GRAPHC_GRID_STRIDE(i, n) {
    keys[i] = valid_id(ids, i, V, slot, step) ? static_cast<uint64_t>(ids[i]) : static_cast<uint64_t>(V);
    pos[i] = i;
  }
}

// (4) the warp at the first sorted position of each key's run sums the run's rows, one column per
// lane of its 32-column tile (blockIdx.y, grid-stride), in position order.
constexpr int kGradWarps = 8;
template <class T>
__global__ void grad_runs(const uint64_t* __restrict__ keys, const int64_t* __restrict__ pos, const T* __restrict__ g,
                          T* __restrict__ y, int64_t n, int64_t D, uint64_t V) {
  const int lane = threadIdx.x & 31;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * kGradWarps;
  for (int64_t j = static_cast<int64_t>(blockIdx.x) * kGradWarps + (threadIdx.x >> 5); j < n; j += warps) {
    const uint64_t key = keys[j];
    if (key >= V || (j > 0 && keys[j - 1] == key)) continue;
    int64_t end = j + 1;
    while (end < n && keys[end] == key) ++end;
    for (int64_t c = static_cast<int64_t>(blockIdx.y) * 32 + lane; c < D; c += static_cast<int64_t>(gridDim.y) * 32) {
      T sum = T(0);
      for (int64_t k = j; k < end; ++k) sum += g[pos[k] * D + c];
      y[static_cast<int64_t>(key) * D + c] = sum;
    }
  }
}

// The no-workspace path: thread c walks every id in order, adding row i's item c into row ids[i].
template <class T, class L>
__global__ void grad_columns(const L* __restrict__ ids, const T* __restrict__ g, T* __restrict__ y, int64_t n,
                             int64_t D, int64_t V) {
  GRAPHC_GRID_STRIDE(c, D) {
    for (int64_t i = 0; i < n; ++i) {
      const int64_t v = static_cast<int64_t>(ids[i]);
      if (v < 0 || v >= V) continue;  // reported by check_ids
      y[v * D + c] += g[i * D + c];
    }
  }
}

int end_bit_for(int64_t V) {
  int bits = 1;
  while (bits < 64 && (static_cast<uint64_t>(V) >> bits) != 0) ++bits;
  return bits;
}

template <class T, class L> Kernel embedding_grad_kernel(const KernelArgs& args) {
  args.expect_arity(3, 1);
  const TensorRef &g = args.in[0], &ids = args.in[1], &w = args.in[2], &y = args.out[0];
  if (w.dims.empty()) args.fail("weight (input 2) must have rank >= 1, got a scalar");
  cpu::expect_dtype(args, w, g.dtype, "weight (input 2)");
  cpu::expect_dtype(args, y, g.dtype, "output");
  cpu::expect_dims(args, g, gathered_dims(ids, w), "the gradient (input 0)");
  cpu::expect_dims(args, y, w.dims, "output");
  const int64_t n = numel_of(ids), V = w.dims[0];
  const std::vector<int64_t> row_dims(w.dims.begin() + 1, w.dims.end());
  const int64_t D = numel_of(row_dims);
  const T* pg = g.as<const T>();
  const L* pi = ids.as<const L>();
  T* py = y.as<T>();
  if (numel_of(y) == 0 && n == 0) return no_op_kernel();
  // The sort's workspace: keys and positions double-buffered (4n int64 words), then cub's scratch.
  int64_t* ws = (n > 0 && D > 0) ? workspace_or_null<int64_t>(args, 0, 4 * n) : nullptr;
  const int64_t ws_bytes = ws != nullptr ? args.ws[0].numel() * static_cast<int64_t>(dtype_size(args.ws[0].dtype)) : 0;
  if (dry(args)) return no_op_kernel();
  ErrorSlot* slot = error_slot_of(args);
  const int64_t step = args.ctx.step_index;
  cudaStream_t s = stream_of(args);
  const size_t out_bytes = static_cast<size_t>(numel_of(y)) * sizeof(T);
  if (n == 0 || D == 0) {  // zeros, or only the ids' check
    return [=]() {
      if (out_bytes != 0) GRAPHC_CUDA_CHECK(cudaMemsetAsync(py, 0, out_bytes, s));
      if (n != 0) {
        check_ids<L><<<blocks_for(n), kThreads, 0, s>>>(pi, n, V, slot, step);
        GRAPHC_CUDA_LAUNCH_CHECK("embedding_grad");
      }
    };
  }
  if (ws == nullptr) {
    return [=]() {
      check_ids<L><<<blocks_for(n), kThreads, 0, s>>>(pi, n, V, slot, step);
      GRAPHC_CUDA_LAUNCH_CHECK("embedding_grad");
      GRAPHC_CUDA_CHECK(cudaMemsetAsync(py, 0, out_bytes, s));
      grad_columns<T, L><<<blocks_for(D), kThreads, 0, s>>>(pi, pg, py, n, D, V);
      GRAPHC_CUDA_LAUNCH_CHECK("embedding_grad");
    };
  }
  uint64_t* keys0 = reinterpret_cast<uint64_t*>(ws);
  uint64_t* keys1 = keys0 + n;
  int64_t* pos0 = ws + 2 * n;
  int64_t* pos1 = ws + 3 * n;
  void* temp = ws + 4 * n;
  const int end_bit = end_bit_for(V);
  size_t temp_bytes = 0;
  {
    cub::DoubleBuffer<uint64_t> k(keys0, keys1);
    cub::DoubleBuffer<int64_t> p(pos0, pos1);
    const cudaError_t e = cub::DeviceRadixSort::SortPairs(nullptr, temp_bytes, k, p, n, 0, end_bit, s);
    if (e != cudaSuccess) args.fail(std::string("cub::DeviceRadixSort: ") + cudaGetErrorString(e));
  }
  const size_t have = static_cast<size_t>(ws_bytes - 4 * n * static_cast<int64_t>(sizeof(int64_t)));
  if (temp_bytes > have) {
    args.fail("workspace 0 is too small for the sort: " + std::to_string(have) + " bytes of scratch, cub needs " +
              std::to_string(temp_bytes));
  }
  const int64_t tiles = std::min<int64_t>((D + 31) / 32, 65535);
  const unsigned gx = static_cast<unsigned>(std::min<int64_t>((n + kGradWarps - 1) / kGradWarps, int64_t(1) << 20));
  return [=]() {
    grad_keys<L><<<blocks_for(n), kThreads, 0, s>>>(pi, keys0, pos0, n, V, slot, step);
    GRAPHC_CUDA_LAUNCH_CHECK("embedding_grad");
    cub::DoubleBuffer<uint64_t> k(keys0, keys1);
    cub::DoubleBuffer<int64_t> p(pos0, pos1);
    size_t bytes = temp_bytes;
    const cudaError_t e = cub::DeviceRadixSort::SortPairs(temp, bytes, k, p, n, 0, end_bit, s);
    if (e != cudaSuccess) throw std::runtime_error(std::string("embedding_grad: cub sort: ") + cudaGetErrorString(e));
    GRAPHC_CUDA_CHECK(cudaMemsetAsync(py, 0, out_bytes, s));
    grad_runs<T><<<dim3(gx, static_cast<unsigned>(tiles)), kGradWarps * 32, 0, s>>>(
        k.Current(), p.Current(), pg, py, n, D, static_cast<uint64_t>(V));
    GRAPHC_CUDA_LAUNCH_CHECK("embedding_grad");
  };
}

template <class Make> Kernel with_ids(const KernelArgs& a, size_t pos, Make make) {
  if (a.in[pos].dtype == DType::I32) return make(int32_t{});
  if (a.in[pos].dtype == DType::I64) return make(int64_t{});
  a.fail("input " + std::to_string(pos) + " (ids) must be int32 or int64, got " + dtype_name(a.in[pos].dtype));
}

}  // namespace

void register_gather_kernels(KernelRegistry& r) {
  for (DType t : cpu::schema_dtypes("embedding")) {
    add_kernel(r, "embedding", t, [](const KernelArgs& a) -> Kernel {
      a.expect_arity(2, 1);
      return with_ids(a, 0, [&](auto l) { return embedding_kernel<decltype(l)>(a); });
    });
  }
  add_typed<FloatTypes>(r, "embedding_grad", [](auto tag, const KernelArgs& a) -> Kernel {
    using T = typename decltype(tag)::type;
    a.expect_arity(3, 1);
    return with_ids(a, 1, [&](auto l) { return embedding_grad_kernel<T, decltype(l)>(a); });
  });
}

}  // namespace cuda
}  // namespace graphc
