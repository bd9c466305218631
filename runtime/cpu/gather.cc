// gather.cc — embedding (rows of a weight picked by integer ids) and its adjoint embedding_grad,
// a scatter-add.
//
// Both kernels check every id against [0, V) before touching memory: a bad id (negative
// included) throws std::runtime_error naming the id and its position (the executor prefixes the
// node), never a read or write out of bounds.
//
// embedding_grad is deterministic: each output item is 0 plus the gradient items that selected
// its row, added in index order (C order of ids), as numpy.add.at does.  The threads split the
// row's D columns into disjoint blocks — every block walks all ids in order — so no sum is ever
// split or reordered by the thread count (no atomics, no per-thread partials).
#include <cstring>

#include "common.h"

namespace graphc {
namespace cpu {
namespace {

// Columns per parallel block of embedding_grad: 16 floats = one 64-byte line, so two threads
// rarely write the same cache line of an output row.
constexpr int64_t kColBlock = 16;

// The position of the first id outside [0, V), or -1.
template <class L> int64_t first_bad_id(const L* ids, int64_t n, int64_t V) {
  for (int64_t i = 0; i < n; ++i) {
    const int64_t v = static_cast<int64_t>(ids[i]);
    if (v < 0 || v >= V) return i;
  }
  return -1;
}

template <class L> void check_ids(const L* ids, int64_t n, int64_t V) {
  const int64_t bad = first_bad_id(ids, n, V);
  if (bad >= 0) {
    throw std::runtime_error("id " + std::to_string(static_cast<int64_t>(ids[bad])) + " at position " +
                             std::to_string(bad) + " is outside [0, " + std::to_string(V) + ")");
  }
}

// ids.dims + weight.dims[1:]
std::vector<int64_t> gathered_dims(const TensorRef& ids, const TensorRef& w) {
  std::vector<int64_t> d = ids.dims;
  d.insert(d.end(), w.dims.begin() + 1, w.dims.end());
  return d;
}

// embedding(ids, weight): y[i, :] = weight[ids[i], :], a row copied as bytes (any dtype).
template <class L> Kernel embedding_kernel(const KernelArgs& args) {
  args.expect_arity(2, 1);
  const TensorRef &ids = args.in[0], &w = args.in[1], &y = args.out[0];
  if (w.dims.empty()) args.fail("weight (input 1) must have rank >= 1, got a scalar");
  expect_dtype(args, y, w.dtype, "output");
  expect_dims(args, y, gathered_dims(ids, w), "output");
  const int64_t n = numel_of(ids), V = w.dims[0];
  const std::vector<int64_t> row_dims(w.dims.begin() + 1, w.dims.end());
  const int64_t D = numel_of(row_dims);
  const size_t row_bytes = static_cast<size_t>(D) * dtype_size(w.dtype);
  const L* pi = ids.as<const L>();
  const char* pw = static_cast<const char*>(w.data);
  char* py = static_cast<char*>(y.data);
  const int threads = args.ctx.threads;
  if (n == 0) return no_op_kernel();
  return [=]() {
    check_ids(pi, n, V);  // also when D == 0: a bad id is an error whatever the row size
    if (row_bytes == 0) return;
    parallel_for(n, threads, std::max<int64_t>(1, (1 << 16) / static_cast<int64_t>(row_bytes)),
                 [&](int64_t b, int64_t e) {
                   for (int64_t i = b; i < e; ++i) {
                     std::memcpy(py + i * row_bytes, pw + static_cast<int64_t>(pi[i]) * row_bytes, row_bytes);
                   }
                 });
  };
}

// embedding_grad(g, ids, weight): zeros of weight's shape, g's rows added at ids, in index order.
template <class T, class L> Kernel embedding_grad_kernel(const KernelArgs& args) {
  args.expect_arity(3, 1);
  const TensorRef &g = args.in[0], &ids = args.in[1], &w = args.in[2], &y = args.out[0];
  if (w.dims.empty()) args.fail("weight (input 2) must have rank >= 1, got a scalar");
  expect_dtype(args, w, g.dtype, "weight (input 2)");
  expect_dtype(args, y, g.dtype, "output");
  expect_dims(args, g, gathered_dims(ids, w), "the gradient (input 0)");
  expect_dims(args, y, w.dims, "output");
  const int64_t n = numel_of(ids), V = w.dims[0];
  const std::vector<int64_t> row_dims(w.dims.begin() + 1, w.dims.end());
  const int64_t D = numel_of(row_dims);
  const T* pg = g.as<const T>();
  const L* pi = ids.as<const L>();
  T* py = y.as<T>();
  const int threads = args.ctx.threads;
  if (numel_of(y) == 0 && n == 0) return no_op_kernel();
  return [=]() {
    check_ids(pi, n, V);
    if (D == 0) return;
    // Zeros first, whole rows (contiguous); then the sums.
    parallel_for(V, threads, std::max<int64_t>(1, (1 << 15) / D),
                 [&](int64_t b, int64_t e) { std::fill(py + b * D, py + e * D, T(0)); });
    if (n == 0) return;
    const int64_t blocks = (D + kColBlock - 1) / kColBlock;
    // Enough ids per chunk to pay for a hand-over; a chunk is whole columns, never part of a sum.
    parallel_for(blocks, threads, std::max<int64_t>(1, (1 << 15) / (n * kColBlock)), [&](int64_t b, int64_t e) {
      const int64_t c0 = b * kColBlock, c1 = std::min(D, e * kColBlock);
      for (int64_t i = 0; i < n; ++i) {
        const T* src = pg + i * D;
        T* dst = py + static_cast<int64_t>(pi[i]) * D;
        for (int64_t c = c0; c < c1; ++c) dst[c] += src[c];
      }
    });
  };
}

// Dispatch on the ids' dtype (int32 or int64), input `pos`.
template <class Make> Kernel with_ids(const KernelArgs& a, size_t pos, Make make) {
  if (a.in[pos].dtype == DType::I32) return make(int32_t{});
  if (a.in[pos].dtype == DType::I64) return make(int64_t{});
  a.fail("input " + std::to_string(pos) + " (ids) must be int32 or int64, got " + dtype_name(a.in[pos].dtype));
}

}  // namespace
}  // namespace cpu

void register_gather_kernels(KernelRegistry& r) {
  using namespace cpu;
  // embedding dispatches on its ids (input 0); the weight's dtype only sets the row's bytes.
  for (DType t : schema_dtypes("embedding")) {
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

}  // namespace graphc
