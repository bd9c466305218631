// shape_plans.h — the validation and iteration plans of the shape ops (transpose, slice,
// concat/split, the view ops' output shapes), shared by runtime/cpu/shape.cc and
// runtime/cuda/shape.cu: both devices accept exactly the same steps with the same messages.
// Host code only.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "common.h"

namespace graphc {
namespace cpu {

inline void expect_same_dtype(const KernelArgs& a) {
  for (size_t i = 0; i < a.in.size(); ++i) expect_dtype(a, a.in[i], a.in[0].dtype, "input " + std::to_string(i));
  for (size_t i = 0; i < a.out.size(); ++i) expect_dtype(a, a.out[i], a.in[0].dtype, "output " + std::to_string(i));
}

// broadcast_to: the strided loop that reads input 0 for every output item.
inline StridedLoop<1> broadcast_to_loop(const KernelArgs& args) {
  args.expect_arity(1, 1);
  expect_same_dtype(args);
  expect_dims(args, args.out[0], attrs::BroadcastTo(args).shape, "output (attr 'shape')");
  return StridedLoop<1>::broadcast(args.out[0].dims, {args.in[0].dims});
}

// broadcast_like(x, like): input 0 broadcast to input 1's shape.
inline StridedLoop<1> broadcast_like_loop(const KernelArgs& args) {
  args.expect_arity(2, 1);
  expect_dims(args, args.out[0], args.in[1].dims, "output");
  expect_dtype(args, args.out[0], args.in[0].dtype, "output");
  return StridedLoop<1>::broadcast(args.out[0].dims, {args.in[0].dims});
}

// transpose: the strided loop that reads input 0 in the output's order.
inline StridedLoop<1> transpose_loop(const KernelArgs& args) {
  args.expect_arity(1, 1);
  expect_same_dtype(args);
  const auto& xd = args.in[0].dims;
  const int64_t rank = static_cast<int64_t>(xd.size());
  const attrs::Transpose attr(args);
  std::vector<int64_t> perm = attr.perm;
  if (!attr.has_perm) {
    for (int64_t i = rank - 1; i >= 0; --i) perm.push_back(i);
  }
  if (static_cast<int64_t>(perm.size()) != rank) {
    args.fail("attr 'perm' must have " + std::to_string(rank) + " entries (the input's rank), got " +
              std::to_string(perm.size()));
  }
  std::vector<bool> seen(rank, false);
  auto cs = contiguous_strides(xd);
  std::vector<int64_t> want;
  std::vector<std::array<int64_t, 1>> strides;
  for (int64_t p : perm) {
    if (p < 0 || p >= rank || seen[p]) {
      args.fail("attr 'perm' " + format_dims(perm) + " is not a permutation of 0.." + std::to_string(rank - 1));
    }
    seen[p] = true;
    want.push_back(xd[p]);
    strides.push_back({cs[p]});
  }
  expect_dims(args, args.out[0], want, "output");
  return StridedLoop<1>::make(want, strides);
}

// Python's slice(start, end, step).indices(dim) for one axis, then its length: returns
// (start, step, length).  Safe for any int64 attrs (step = 2**62, start = -2**63, ...):
// start + dim cannot overflow for start < 0 <= dim, and the length is computed from the
// clamped span and |step| in unsigned arithmetic (|INT64_MIN| does not fit in int64).
// A range of length <= 1 reports step 1, so a huge step never reaches a stride product.
struct SliceRange { int64_t start, step, len; };
inline SliceRange slice_range(int64_t start, int64_t end, int64_t step, int64_t dim) {
  int64_t s, e;
  uint64_t span = 0;
  if (step > 0) {
    s = start < 0 ? std::max<int64_t>(start + dim, 0) : std::min(start, dim);
    e = end < 0 ? std::max<int64_t>(end + dim, 0) : std::min(end, dim);
    if (e > s) span = static_cast<uint64_t>(e - s);
  } else {
    s = start < 0 ? std::max<int64_t>(start + dim, -1) : std::min(start, dim - 1);
    e = end < 0 ? std::max<int64_t>(end + dim, -1) : std::min(end, dim - 1);
    if (s > e) span = static_cast<uint64_t>(s - e);
  }
  if (span == 0) return {0, 1, 0};
  const uint64_t mag = step > 0 ? static_cast<uint64_t>(step) : 0 - static_cast<uint64_t>(step);
  const int64_t len = static_cast<int64_t>((span - 1) / mag + 1);  // <= span <= dim
  return {s, len > 1 ? step : 1, len};
}

// The strided loop that reads x[starts:ends:steps] along axes in C order.  Attrs is
// attrs::Slice or attrs::SliceGrad (the same attrs).
template <class Attrs>
StridedLoop<1> slice_loop(const KernelArgs& args, const std::vector<int64_t>& xd, const TensorRef& sliced,
                          const char* what) {
  const int64_t rank = static_cast<int64_t>(xd.size());
  const Attrs attr(args);
  const std::vector<int64_t>& starts = attr.starts;
  const std::vector<int64_t>& ends = attr.ends;
  std::vector<int64_t> axes = attr.axes, steps = attr.steps;
  if (!attr.has_axes) {
    for (size_t i = 0; i < starts.size(); ++i) axes.push_back(static_cast<int64_t>(i));
  }
  if (!attr.has_steps) steps.assign(starts.size(), 1);
  if (ends.size() != starts.size() || axes.size() != starts.size() || steps.size() != starts.size()) {
    args.fail("attrs starts, ends, axes and steps must have one length, got " + std::to_string(starts.size()) +
              ", " + std::to_string(ends.size()) + ", " + std::to_string(axes.size()) + " and " +
              std::to_string(steps.size()));
  }
  auto cs = contiguous_strides(xd);
  std::vector<SliceRange> ranges(rank);
  for (int64_t i = 0; i < rank; ++i) ranges[i] = {0, 1, xd[i]};
  std::vector<bool> seen(rank, false);
  for (size_t i = 0; i < starts.size(); ++i) {
    int64_t ax = normalize_axis(args, axes[i], rank, "axes entry");
    if (seen[ax]) args.fail("axis " + std::to_string(axes[i]) + " is sliced twice");
    seen[ax] = true;
    if (steps[i] == 0) args.fail("slice step must not be 0");
    ranges[ax] = slice_range(starts[i], ends[i], steps[i], xd[ax]);
  }
  std::vector<int64_t> want;
  std::vector<std::array<int64_t, 1>> strides;
  int64_t base = 0;
  for (int64_t i = 0; i < rank; ++i) {
    want.push_back(ranges[i].len);
    strides.push_back({ranges[i].step * cs[i]});
    if (ranges[i].len > 0) base += ranges[i].start * cs[i];
  }
  expect_dims(args, sliced, want, what);
  return StridedLoop<1>::make(want, strides, {base});
}

inline StridedLoop<1> slice_step_loop(const KernelArgs& args) {
  args.expect_arity(1, 1);
  expect_same_dtype(args);
  return slice_loop<attrs::Slice>(args, args.in[0].dims, args.out[0], "output");
}

// slice_grad(g, x): the loop over g whose offsets are the items of x (the output) slice read.
inline StridedLoop<1> slice_grad_loop(const KernelArgs& args) {
  args.expect_arity(2, 1);
  expect_same_dtype(args);
  expect_dims(args, args.out[0], args.in[1].dims, "output");
  return slice_loop<attrs::SliceGrad>(args, args.in[1].dims, args.in[0], "input 0 (the gradient)");
}

// concat/split: the whole tensor is `outer` rows of `row` items; piece i is the columns
// [offset, offset + width) of every row (items), stored contiguously as (outer, width).
struct ConcatPiece { int64_t offset; int64_t width; };
struct ConcatPlan {
  int64_t outer = 0, row = 0;
  std::vector<ConcatPiece> pieces;
  std::vector<void*> ptrs;  // the pieces' data
  void* whole = nullptr;
  size_t item = 0;
  bool empty = true;  // nothing to copy
};

inline ConcatPlan concat_split_plan(const KernelArgs& args, bool is_concat) {
  if (args.in.empty() || args.out.empty()) args.fail("needs at least one input and one output");
  if (is_concat && args.out.size() != 1) args.fail("has exactly one output");
  if (!is_concat && args.in.size() != 1) args.fail("has exactly one input");
  expect_same_dtype(args);
  const TensorRef& whole = is_concat ? args.out[0] : args.in[0];
  const std::vector<TensorRef>& parts = is_concat ? args.in : args.out;
  const int64_t rank = static_cast<int64_t>(whole.dims.size());
  if (rank == 0) args.fail("cannot work on a scalar");
  const int64_t axis = normalize_axis(args, is_concat ? attrs::Concat(args).axis : attrs::Split(args).axis, rank);
  int64_t total = 0;
  for (size_t i = 0; i < parts.size(); ++i) {
    const std::string what = (is_concat ? "input " : "output ") + std::to_string(i);
    if (parts[i].dims.size() != whole.dims.size()) {
      args.fail(what + " must have rank " + std::to_string(rank) + ", got shape " + format_dims(parts[i].dims));
    }
    std::vector<int64_t> want = whole.dims;
    want[axis] = parts[i].dims[axis];
    expect_dims(args, parts[i], want, what);
    total = checked_add(args, total, want[axis], "the pieces' sizes along axis " + std::to_string(axis));
  }
  if (!is_concat) {
    const std::vector<int64_t> sizes = attrs::Split(args).sizes;
    if (sizes.size() != parts.size()) {
      args.fail("attr 'sizes' must have one entry per output (" + std::to_string(parts.size()) + "), got " +
                std::to_string(sizes.size()));
    }
    for (size_t i = 0; i < parts.size(); ++i) {
      if (sizes[i] != parts[i].dims[axis]) {
        args.fail("output " + std::to_string(i) + " must have size " + std::to_string(sizes[i]) + " along axis " +
                  std::to_string(axis) + " (attr 'sizes'), got shape " + format_dims(parts[i].dims));
      }
    }
  }
  if (total != whole.dims[axis]) {
    args.fail("pieces along axis " + std::to_string(axis) + " sum to " + std::to_string(total) + ", expected " +
              std::to_string(whole.dims[axis]));
  }
  ConcatPlan p;
  p.item = dtype_size(whole.dtype);
  p.whole = whole.data;
  // Empty: nothing to copy, and the rows would walk the other dims ((2**40, 0) tensors:
  // 2**40 rows of nothing).
  if (numel_of(whole) == 0) return p;
  p.empty = false;
  int64_t inner = 1;
  p.outer = 1;
  for (int64_t i = 0; i < axis; ++i) p.outer *= whole.dims[i];
  for (int64_t i = axis + 1; i < rank; ++i) inner *= whole.dims[i];
  p.row = whole.dims[axis] * inner;
  int64_t off = 0;
  for (const auto& t : parts) {
    p.pieces.push_back({off, t.dims[axis] * inner});
    off += t.dims[axis] * inner;
    p.ptrs.push_back(t.data);
  }
  return p;
}

// The output shape each view op defines from its input and attrs.
inline std::vector<int64_t> reshape_dims(const KernelArgs& args, int64_t numel) {
  std::vector<int64_t> target = attrs::Reshape(args).shape;
  int64_t infer_at = -1, known = 1;
  for (size_t i = 0; i < target.size(); ++i) {
    const int64_t d = target[i];
    if (d == -1 && infer_at < 0) {
      infer_at = static_cast<int64_t>(i);
      continue;
    }
    if (d < 0) args.fail("attr 'shape' " + format_dims(target) + " has a negative dim or a second -1");
    known = saturating_mul(known, d);
  }
  if (infer_at >= 0) {
    if (known == 0 || known == INT64_MAX || numel % known != 0) {
      args.fail("cannot reshape " + std::to_string(numel) + " elements into attr 'shape' " + format_dims(target));
    }
    target[infer_at] = numel / known;
  } else if (known != numel) {
    args.fail("cannot reshape " + std::to_string(numel) + " elements into attr 'shape' " + format_dims(target));
  }
  return target;
}

inline std::vector<int64_t> expand_dims_dims(const KernelArgs& args, const std::vector<int64_t>& xd) {
  const std::vector<int64_t> axes = attrs::ExpandDims(args).axes;
  const int64_t rank = static_cast<int64_t>(xd.size() + axes.size());
  std::vector<bool> is_new(rank, false);
  for (int64_t a : axes) {
    const int64_t ax = normalize_axis(args, a, rank, "axes entry");
    if (is_new[ax]) args.fail("attr 'axes' " + format_dims(axes) + " repeats an axis");
    is_new[ax] = true;
  }
  std::vector<int64_t> out;
  size_t j = 0;
  for (int64_t i = 0; i < rank; ++i) out.push_back(is_new[i] ? 1 : xd[j++]);
  return out;
}

inline std::vector<int64_t> squeeze_dims(const KernelArgs& args, const std::vector<int64_t>& xd) {
  const int64_t rank = static_cast<int64_t>(xd.size());
  std::vector<bool> drop(rank, false);
  const attrs::Squeeze attr(args);
  if (!attr.has_axes) {
    for (int64_t i = 0; i < rank; ++i) drop[i] = xd[i] == 1;
  } else {
    for (int64_t a : attr.axes) {
      const int64_t ax = normalize_axis(args, a, rank, "axes entry");
      if (rank == 0) continue;
      if (xd[ax] != 1) args.fail("cannot squeeze axis " + std::to_string(ax) + " of size " + std::to_string(xd[ax]));
      drop[ax] = true;
    }
  }
  std::vector<int64_t> out;
  for (int64_t i = 0; i < rank; ++i) {
    if (!drop[i]) out.push_back(xd[i]);
  }
  return out;
}

// The view ops that a plan may materialise as a copy: (name, inputs, output shape).
struct ViewOp {
  const char* op;
  size_t n_in;
  std::vector<int64_t> (*out_dims)(const KernelArgs&);
};
inline const std::vector<ViewOp>& view_ops() {
  static const std::vector<ViewOp> ops = {
      {"reshape", 1, [](const KernelArgs& b) { return reshape_dims(b, numel_of(b.in[0])); }},
      {"expand_dims", 1, [](const KernelArgs& b) { return expand_dims_dims(b, b.in[0].dims); }},
      {"squeeze", 1, [](const KernelArgs& b) { return squeeze_dims(b, b.in[0].dims); }},
      {"stop_gradient", 1, [](const KernelArgs& b) { return b.in[0].dims; }},
      // only the shape of input 1 is read
      {"reshape_like", 2, [](const KernelArgs& b) { return b.in[1].dims; }},
  };
  return ops;
}

// reshape, expand_dims, squeeze, stop_gradient, reshape_like: plans alias them (views), but
// a plan may also materialise them; then the bytes are copied as they are, into the output
// shape the op defines.  Returns the number of bytes to copy from input 0 to output 0.
inline size_t view_copy_bytes(const KernelArgs& args, const ViewOp& v) {
  args.expect_arity(v.n_in, 1);
  const TensorRef &x = args.in[0], &y = args.out[0];
  expect_dtype(args, y, x.dtype, "output");
  expect_dims(args, y, v.out_dims(args), "output");
  if (numel_of(x) != numel_of(y)) {
    args.fail("output " + format_dims(y.dims) + " has a different size than input " + format_dims(x.dims));
  }
  return static_cast<size_t>(numel_of(x)) * dtype_size(x.dtype);
}

// tile: y viewed as (r0, d0, r1, d1, ...) reads x with stride 0 along each r axis.
inline StridedLoop<1> tile_loop(const KernelArgs& args) {
  args.expect_arity(1, 1);
  const TensorRef &x = args.in[0], &y = args.out[0];
  expect_dtype(args, y, x.dtype, "output");
  const attrs::Tile attr(args);
  const auto& xd = x.dims;
  if (attr.repeats.size() != xd.size()) {
    args.fail("attr 'repeats' must have " + std::to_string(xd.size()) + " entries (the input's rank), got " +
              std::to_string(attr.repeats.size()));
  }
  std::vector<int64_t> want, loop_dims;
  std::vector<std::array<int64_t, 1>> strides;
  const auto cs = contiguous_strides(xd);
  for (size_t i = 0; i < xd.size(); ++i) {
    const int64_t r = attr.repeats[i];
    if (r < 0) args.fail("attr 'repeats' " + format_dims(attr.repeats) + " has a negative entry");
    want.push_back(xd[i] == 0 || r == 0 ? 0 : saturating_mul(xd[i], r));
    loop_dims.push_back(r);
    strides.push_back({0});
    loop_dims.push_back(xd[i]);
    strides.push_back({cs[i]});
  }
  expect_dims(args, y, want, "output");
  return StridedLoop<1>::make(loop_dims, strides);
}

// identity: a copy of input 0 (plans alias it); the bytes to copy.
inline size_t identity_copy_bytes(const KernelArgs& args) {
  args.expect_arity(1, 1);
  const TensorRef &x = args.in[0], &y = args.out[0];
  expect_dtype(args, y, x.dtype, "output");
  expect_dims(args, y, x.dims, "output");
  return static_cast<size_t>(numel_of(x)) * dtype_size(x.dtype);
}

}  // namespace cpu
}  // namespace graphc
