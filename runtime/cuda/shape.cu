// shape.cu — the CUDA twin of runtime/cpu/shape.cc: broadcast_to, broadcast_like, transpose,
// slice, slice_grad, concat, split and the copy kernel of the view ops (reshape, reshape_like,
// expand_dims, squeeze, stop_gradient) for plans that materialise them.  The steps are checked
// by the CPU's own plans (cpu/shape_plans.h): the same steps are accepted, with the same
// messages.  Everything moves raw items by size (copy.cuh):
// - broadcast_to / broadcast_like / transpose / slice: one StridedCopy gather (copy.cuh: a
//   memcpy when contiguous, 32x33 shared-memory tiles for a transpose of the last two collapsed
//   dims, a row kernel, or one thread per item).
// - slice_grad: cudaMemsetAsync(0) of the output, then the slice walk as a scatter (one thread
//   per gradient item; the slice's offsets are distinct).
// - concat / split: concat_pieces, one launch per 32 pieces: grid.y is the piece, grid.x
//   threads grid-stride over the piece's (outer, width) items, moved in the widest unit (1-16
//   bytes) that divides every row, width, offset and address.
// - view ops: cudaMemcpyAsync device-to-device when the output is not the input's buffer.
#include "../cpu/shape_plans.h"
#include "common.cuh"
#include "copy.cuh"

namespace graphc {
namespace cuda {
namespace {

Kernel strided_copy_kernel(const KernelArgs& a, const cpu::StridedLoop<1>& loop) {
  const StridedCopy copy(a, loop, a.in[0].data, a.out[0].data, dtype_size(a.in[0].dtype), false);
  if (copy.empty()) return no_op_kernel();
  cudaStream_t stream = stream_of(a);
  return [copy, stream]() { copy.run(stream); };
}

Kernel slice_grad_kernel(const KernelArgs& a) {
  const cpu::StridedLoop<1> loop = cpu::slice_grad_loop(a);
  const int64_t n = numel_of(a.out[0]);
  if (n == 0) return no_op_kernel();
  const size_t nbytes = static_cast<size_t>(n) * dtype_size(a.out[0].dtype);
  const StridedCopy scatter(a, loop, a.in[0].data, a.out[0].data, dtype_size(a.in[0].dtype), true);
  void* py = a.out[0].data;
  cudaStream_t stream = stream_of(a);
  return [scatter, py, nbytes, stream]() {
    GRAPHC_CUDA_CHECK(cudaMemsetAsync(py, 0, nbytes, stream));
    scatter.run(stream);
  };
}

constexpr int kMaxPieces = 32;  // pieces per launch (the table is a kernel argument: 768 bytes)

struct PieceTable {
  void* ptr[kMaxPieces];        // the piece's data (contiguous (outer, width))
  int64_t offset[kMaxPieces];   // its first column in a row of the whole, in units
  int64_t width[kMaxPieces];    // its columns, in units
};

// blockIdx.y: the piece; the block's threads grid-stride over its outer * width units.
template <class U, class I, bool kConcat>
__global__ void concat_pieces(PieceTable t, U* __restrict__ whole, int64_t outer, int64_t row) {
  const int p = blockIdx.y;
  const I width = static_cast<I>(t.width[p]);
  if (width == 0) return;
  const I n = static_cast<I>(outer) * width;
  U* part = static_cast<U*>(t.ptr[p]);
  U* w = whole + t.offset[p];
  for (I i = static_cast<I>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += static_cast<I>(gridDim.x) * blockDim.x) {
    const I o = i / width;
    const I c = i - o * width;
    if (kConcat) {
      w[static_cast<int64_t>(o) * row + c] = part[i];
    } else {
      part[i] = w[static_cast<int64_t>(o) * row + c];
    }
  }
}

Kernel concat_split_kernel(const KernelArgs& a, bool is_concat) {
  const cpu::ConcatPlan plan = cpu::concat_split_plan(a, is_concat);
  if (plan.empty) return no_op_kernel();
  // The widest unit dividing every byte count and address.
  uint64_t all = static_cast<uint64_t>(plan.row) * plan.item | reinterpret_cast<uintptr_t>(plan.whole);
  for (size_t i = 0; i < plan.pieces.size(); ++i) {
    all |= static_cast<uint64_t>(plan.pieces[i].offset) * plan.item |
           static_cast<uint64_t>(plan.pieces[i].width) * plan.item | reinterpret_cast<uintptr_t>(plan.ptrs[i]);
  }
  const size_t unit = std::max(unit_dividing(all), plan.item);
  const int64_t k = static_cast<int64_t>(unit / plan.item);
  struct Launch {
    PieceTable table;
    int pieces;
    int64_t max_items;
  };
  std::vector<Launch> launches;
  for (size_t i = 0; i < plan.pieces.size(); ++i) {
    if (plan.pieces[i].width == 0) continue;
    if (launches.empty() || launches.back().pieces == kMaxPieces) launches.push_back(Launch{{}, 0, 0});
    Launch& l = launches.back();
    l.table.ptr[l.pieces] = plan.ptrs[i];
    l.table.offset[l.pieces] = plan.pieces[i].offset / k;
    l.table.width[l.pieces] = plan.pieces[i].width / k;
    l.max_items = std::max(l.max_items, plan.outer * (plan.pieces[i].width / k));
    ++l.pieces;
  }
  const int64_t outer = plan.outer, row = plan.row / k;
  void* whole = plan.whole;
  cudaStream_t stream = stream_of(a);
  return dispatch_unit(unit, [&](auto tag) -> Kernel {
    using U = typename decltype(tag)::type;
    return [launches, outer, row, whole, stream, is_concat]() {
      for (const Launch& l : launches) {
        const dim3 grid(blocks_for(l.max_items), static_cast<unsigned>(l.pieces));
        U* w = static_cast<U*>(whole);
        const bool small = l.max_items <= INT32_MAX;
        if (is_concat) {
          if (small) concat_pieces<U, uint32_t, true><<<grid, kThreads, 0, stream>>>(l.table, w, outer, row);
          else concat_pieces<U, int64_t, true><<<grid, kThreads, 0, stream>>>(l.table, w, outer, row);
        } else {
          if (small) concat_pieces<U, uint32_t, false><<<grid, kThreads, 0, stream>>>(l.table, w, outer, row);
          else concat_pieces<U, int64_t, false><<<grid, kThreads, 0, stream>>>(l.table, w, outer, row);
        }
        GRAPHC_CUDA_LAUNCH_CHECK(is_concat ? "concat" : "split");
      }
    };
  });
}

Kernel view_copy_kernel(const KernelArgs& a, const cpu::ViewOp& v) {
  const size_t n = cpu::view_copy_bytes(a, v);
  return device_copy_kernel(a, a.in[0].data, a.out[0].data, n);
}

}  // namespace

void register_shape_kernels(KernelRegistry& r) {
  using cpu::schema_dtypes;
  using cpu::StridedLoop;
  auto strided = [&](const char* op, StridedLoop<1> (*loop)(const KernelArgs&)) {
    for (DType t : schema_dtypes(op)) {
      add_kernel(r, op, t, [loop](const KernelArgs& a) { return strided_copy_kernel(a, loop(a)); });
    }
  };
  strided("broadcast_to", cpu::broadcast_to_loop);
  strided("transpose", cpu::transpose_loop);
  strided("slice", cpu::slice_step_loop);
  strided("broadcast_like", cpu::broadcast_like_loop);
  for (DType t : schema_dtypes("concat")) {
    add_kernel(r, "concat", t, [](const KernelArgs& a) { return concat_split_kernel(a, true); });
  }
  for (DType t : schema_dtypes("split")) {
    add_kernel(r, "split", t, [](const KernelArgs& a) { return concat_split_kernel(a, false); });
  }
  for (DType t : schema_dtypes("slice_grad")) add_kernel(r, "slice_grad", t, slice_grad_kernel);
  for (const cpu::ViewOp& v : cpu::view_ops()) {
    for (DType t : schema_dtypes(v.op)) {
      add_kernel(r, v.op, t, [&v](const KernelArgs& a) { return view_copy_kernel(a, v); });
    }
  }
}

}  // namespace cuda
}  // namespace graphc
