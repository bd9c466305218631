// topk.cc — topk, take_along_axis and its adjoint take_along_axis_grad (graphc/ops/topk.py has
// the semantics).
//
// All three walk the tensors in (outer, n, inner) form around the axis: a "line" is the n items
// x[o, :, i].  Each line is handled by one task from start to end, and threads split only the
// lines (or the outer blocks), so results are the same bits at any thread count.
//
// topk's order is a strict total order (value, NaN above every number, then the lower index), so
// the k items it selects and their order are unique whatever the selection algorithm does; it
// turns items into (integer key, index) pairs and selects with a heap of k (small k) or
// std::nth_element (O(n)), then sorts the k selected ones — never the whole line unless k = n.
//
// take_along_axis and take_along_axis_grad check every index against [0, n) before touching memory:
// a bad one throws std::runtime_error naming the index and its position (the executor prefixes
// the node), never a read or write out of bounds.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <string>
#include <vector>

#include "common.h"
#include "topk_checks.h"
#include "op_schema.h"

namespace graphc {
namespace cpu {
namespace {

constexpr int64_t kGrain = 1 << 14;  // items per task

// Lines, lines_of, with_axis, expect_same_except and the factories' checks: topk_checks.h.

// -- topk ---------------------------------------------------------------------------------------

// An item of a line as one unsigned key and its index: ascending (key, index) is topk's order, so
// the selection compares two integers instead of floats with NaN cases.  The key maps the value
// to an unsigned integer that orders like the value (flip the sign bit of a positive number, all
// bits of a negative one), -0.0 to 0.0's key (they tie), every NaN to the largest key (above
// +inf); for largest=true the key is inverted, so larger values (and NaN) come first.
struct Item {
  uint64_t key;
  int64_t i;
  bool operator<(const Item& o) const { return key < o.key || (key == o.key && i < o.i); }
};

template <class T> inline uint64_t order_key(T v, bool largest) {
  uint64_t k;
  if (std::isnan(v)) {
    k = ~uint64_t(0);
  } else {
    using U = std::conditional_t<sizeof(T) == 4, uint32_t, uint64_t>;
    constexpr U kSign = U(1) << (8 * sizeof(T) - 1);
    if (v == T(0)) v = T(0);  // -0.0 ties with 0.0
    U bits;
    std::memcpy(&bits, &v, sizeof bits);
    bits = (bits & kSign) ? U(~bits) : U(bits | kSign);
    // float32: into the high half, so NaN's key (all ones) stays above +inf's
    k = sizeof(T) == 4 ? (uint64_t(bits) << 32) : uint64_t(bits);
  }
  return largest ? ~k : k;
}

// A small k of a long line (sampling from a large vocabulary): a max-heap of the k best so far,
// whose top is the worst of them; most items lose one integer comparison against it and are never
// stored.  O(n) on most data, O(n log k) at worst (a line in the selected order).
constexpr int64_t kHeapRatio = 16;  // the heap when k * kHeapRatio <= n

// buf[0:k] = the k first items of the line src[0], src[stride], ... in topk's order.
template <class T>
void select_line(const T* src, int64_t n, int64_t stride, int64_t k, bool largest, Item* buf) {
  if (k > 0 && k * kHeapRatio <= n) {
    Item* const end = buf + k;
    for (int64_t j = 0; j < k; ++j) buf[j] = Item{order_key(src[j * stride], largest), j};
    std::make_heap(buf, end);
    // thr: the value of the worst kept item.  An item strictly worse as a float (v < thr for
    // largest) loses without its key; NaN, ties and a NaN thr fail the float test and go on to the
    // exact (key, index) comparison.
    T thr = src[buf[0].i * stride];
    for (int64_t j = k; j < n; ++j) {
      const T v = src[j * stride];
      if (largest ? v < thr : v > thr) continue;
      const Item it{order_key(v, largest), j};
      if (it < buf[0]) {
        std::pop_heap(buf, end);
        end[-1] = it;
        std::push_heap(buf, end);
        thr = src[buf[0].i * stride];
      }
    }
    std::sort_heap(buf, end);
    return;
  }
  for (int64_t j = 0; j < n; ++j) buf[j] = Item{order_key(src[j * stride], largest), j};
  Item* const first = buf;
  Item* const kth = buf + k;
  Item* const last = buf + n;
  if (kth != last) std::nth_element(first, kth, last);  // selection: O(n), not a sort of the line
  std::sort(first, kth);
}

template <class T> Kernel topk_kernel(const KernelArgs& args) {
  const TopkCheck chk = topk_check(args);
  const auto& attr = chk.attr;
  const int64_t axis = chk.axis, n = chk.n, k = chk.k;
  const std::vector<int64_t>& out_dims = chk.out_dims;
  const TensorRef &x = args.in[0], &values = args.out[0], &indices = args.out[1];
  const Lines s = lines_of(x.dims, axis);
  if (numel_of(out_dims) == 0) return no_op_kernel();
  const T* px = x.as<const T>();
  T* pv = values.as<T>();
  int64_t* pi = indices.as<int64_t>();
  const bool largest = attr.largest, sorted = attr.sorted;
  const int threads = args.ctx.threads;
  const int64_t nlines = s.outer * s.inner, grain = std::max<int64_t>(1, kGrain / n);
  const KernelBuffer<Item> bufs(parallel_chunks(nlines, threads, grain) * n);  // one line per chunk
  return [=]() {
    parallel_for_chunks(nlines, threads, grain, [&](int64_t b, int64_t e, int64_t c) {
      Item* const buf = bufs.data() + c * n;
      for (int64_t line = b; line < e; ++line) {
        const int64_t o = line / s.inner, i = line % s.inner;
        const T* src = px + o * n * s.inner + i;
        select_line(src, n, s.inner, k, largest, buf);
        if (!sorted) std::sort(buf, buf + k, [](const Item& a, const Item& b) { return a.i < b.i; });
        T* dv = pv + o * k * s.inner + i;
        int64_t* di = pi + o * k * s.inner + i;
        for (int64_t j = 0; j < k; ++j) {
          dv[j * s.inner] = src[buf[j].i * s.inner];  // the item itself: -0.0 and NaN payloads kept
          di[j * s.inner] = buf[j].i;
        }
      }
    });
  };
}

// -- take_along_axis / take_along_axis_grad ----------------------------------------------------

// Every index in [0, n), or throw naming the first bad one and its position.
void check_indices(const int64_t* idx, int64_t count, int64_t n) {
  for (int64_t p = 0; p < count; ++p) {
    if (idx[p] < 0 || idx[p] >= n) {
      throw std::runtime_error("index " + std::to_string(idx[p]) + " at position " + std::to_string(p) +
                               " is outside [0, " + std::to_string(n) + ")");
    }
  }
}

// y[o, j, i] = x[o, idx[o, j, i], i]; any dtype (copied as T).
template <class T> Kernel take_along_axis_kernel(const KernelArgs& args) {
  const int64_t axis = take_along_axis_check(args);
  const TensorRef &x = args.in[0], &idx = args.in[1], &y = args.out[0];
  const Lines sx = lines_of(x.dims, axis);
  const int64_t m = idx.dims[axis], count = numel_of(idx);
  if (count == 0) return no_op_kernel();
  const T* px = x.as<const T>();
  const int64_t* pi = idx.as<const int64_t>();
  T* py = y.as<T>();
  const int threads = args.ctx.threads;
  return [=]() {
    check_indices(pi, count, sx.n);
    const int64_t block = m * sx.inner;  // items of one outer index in y
    parallel_for(sx.outer, threads, std::max<int64_t>(1, kGrain / block), [&](int64_t b, int64_t e) {
      for (int64_t o = b; o < e; ++o) {
        const T* xo = px + o * sx.n * sx.inner;
        const int64_t* io = pi + o * block;
        T* yo = py + o * block;
        for (int64_t j = 0; j < m; ++j) {
          for (int64_t i = 0; i < sx.inner; ++i) yo[j * sx.inner + i] = xo[io[j * sx.inner + i] * sx.inner + i];
        }
      }
    });
  };
}

// dx = 0, then dx[o, idx[o, j, i], i] += g[o, j, i] for j = 0, 1, ... in order.
template <class T> Kernel take_along_axis_grad_kernel(const KernelArgs& args) {
  const int64_t axis = take_along_axis_grad_check(args);
  const TensorRef &g = args.in[0], &idx = args.in[1], &x = args.in[2], &dx = args.out[0];
  const Lines sx = lines_of(x.dims, axis);
  const int64_t m = idx.dims[axis], count = numel_of(idx), total = numel_of(x);
  // (x empty with indices not: x's axis is empty, so every index is out of range; the check throws)
  if (total == 0 && count == 0) return no_op_kernel();
  const T* pg = g.as<const T>();
  const int64_t* pi = idx.as<const int64_t>();
  T* pd = dx.as<T>();
  const int threads = args.ctx.threads;
  return [=]() {
    check_indices(pi, count, sx.n);
    const int64_t block = m * sx.inner, xblock = sx.n * sx.inner;
    // One outer index per task: its dx items receive only its own g items, in order.
    parallel_for(sx.outer, threads, std::max<int64_t>(1, kGrain / std::max<int64_t>(1, block + xblock)),
                 [&](int64_t b, int64_t e) {
      for (int64_t o = b; o < e; ++o) {
        T* d = pd + o * xblock;
        std::fill(d, d + xblock, T(0));
        const T* go = pg + o * block;
        const int64_t* io = pi + o * block;
        for (int64_t j = 0; j < m; ++j) {
          for (int64_t i = 0; i < sx.inner; ++i) d[io[j * sx.inner + i] * sx.inner + i] += go[j * sx.inner + i];
        }
      }
    });
  };
}

}  // namespace
}  // namespace cpu

void register_topk_kernels(KernelRegistry& r) {
  cpu::add_typed<cpu::FloatTypes>(r, "topk", [](auto tag, const KernelArgs& a) {
    return cpu::topk_kernel<typename decltype(tag)::type>(a);
  });
  cpu::add_typed<cpu::AllTypes>(r, "take_along_axis", [](auto tag, const KernelArgs& a) {
    return cpu::take_along_axis_kernel<typename decltype(tag)::type>(a);
  });
  cpu::add_typed<cpu::FloatTypes>(r, "take_along_axis_grad", [](auto tag, const KernelArgs& a) {
    return cpu::take_along_axis_grad_kernel<typename decltype(tag)::type>(a);
  });
}

}  // namespace graphc
