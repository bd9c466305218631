// reduce_checks.h — the checks of the reductions (sum, mean, max, min, sum_to), argmin / argmax
// and fused_reduce, tril/triu and cumsum, shared by runtime/cpu/reduce.cc, scan.cc (argmax), fused_reduce.cc and
// runtime/cuda/reduce.cu, reduce_common.cuh, fused_reduce.cu: both devices accept exactly the
// same steps with the same messages.  Prepare-time code only.  Host code only.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common.h"

namespace graphc {
namespace cpu {

// Which of x's dims are reduced, and the output's dims.
struct ReduceAxes {
  std::vector<bool> reduced;
  std::vector<int64_t> want;
};

// The dims an `axes` attr reduces (every dim without one), each named once.
inline std::vector<bool> reduced_axes(const KernelArgs& args, bool has_axes, const std::vector<int64_t>& axes,
                                      int64_t rank) {
  std::vector<bool> reduced(rank, !has_axes);
  if (has_axes) {
    for (int64_t ax : axes) {
      const int64_t a = normalize_axis(args, ax, rank, "axes entry");
      if (rank == 0) continue;
      if (reduced[a]) args.fail("axes entry " + std::to_string(ax) + " is repeated");
      reduced[a] = true;
    }
  }
  return reduced;
}

// sum/mean/max/min(x) -> y of dtype `out`: Attr (attrs::Sum, ...) holds axes and keepdims.
template <class Attr> ReduceAxes reduce_axes(const KernelArgs& args, DType out) {
  args.expect_arity(1, 1);
  const TensorRef& x = args.in[0];
  expect_dtype(args, args.out[0], out, "output");
  const Attr attr(args);
  const int64_t rank = static_cast<int64_t>(x.dims.size());
  ReduceAxes r;
  r.reduced = reduced_axes(args, attr.has_axes, attr.axes, rank);
  for (int64_t i = 0; i < rank; ++i) {
    if (!r.reduced[i]) r.want.push_back(x.dims[i]);
    else if (attr.keepdims) r.want.push_back(1);
  }
  return r;
}

// sum_to(x, like): sum over the dims broadcasting added or stretched to reach x from like.
inline ReduceAxes sum_to_axes(const KernelArgs& args, DType out) {
  args.expect_arity(2, 1);
  const auto& xd = args.in[0].dims;
  const auto& like = args.in[1].dims;
  expect_dtype(args, args.out[0], out, "output");
  if (like.size() > xd.size()) {
    args.fail("cannot sum input 0 of shape " + format_dims(xd) + " to the shape of input 1, " + format_dims(like));
  }
  const size_t lead = xd.size() - like.size();
  ReduceAxes r;
  r.reduced.assign(xd.size(), false);
  for (size_t i = 0; i < xd.size(); ++i) {
    if (i < lead) {
      r.reduced[i] = true;
    } else if (like[i - lead] != xd[i]) {
      if (like[i - lead] != 1) {
        args.fail("cannot sum input 0 of shape " + format_dims(xd) + " to the shape of input 1, " + format_dims(like));
      }
      r.reduced[i] = true;
    }
  }
  r.want = like;
  return r;
}

// The output's dims; a reduction without an identity (max, min) refuses a size-0 reduced axis,
// whatever the output size (as the schema does).
inline void reduce_output_check(const KernelArgs& args, const std::vector<bool>& reduced,
                                const std::vector<int64_t>& want, bool no_identity) {
  const TensorRef &x = args.in[0], &y = args.out[0];
  expect_dims(args, y, want, "output");
  if (!no_identity) return;
  for (size_t i = 0; i < x.dims.size(); ++i) {
    if (reduced[i] && x.dims[i] == 0) {
      args.fail("cannot reduce over axis " + std::to_string(i) + " of size 0 (input shape " + format_dims(x.dims) +
                ")");
    }
  }
}

// argmin / argmax(x) -> int64 y along attr axis (Attr: attrs::Argmin or attrs::Argmax; `what`:
// "arg-min" or "arg-max").  Returns the normalized axis.
template <class Attr> int64_t arg_extremum_axis(const KernelArgs& args, const char* what) {
  args.expect_arity(1, 1);
  const TensorRef &x = args.in[0], &y = args.out[0];
  expect_dtype(args, y, DType::I64, "output");
  const Attr attr(args);
  const int64_t rank = static_cast<int64_t>(x.dims.size());
  const int64_t axis = normalize_axis(args, attr.axis, rank);
  std::vector<int64_t> want;
  if (rank > 0) {
    if (x.dims[axis] == 0) {
      args.fail(std::string("cannot take the ") + what + " over axis " + std::to_string(axis) + " of size 0");
    }
    for (int64_t i = 0; i < rank; ++i) {
      if (i != axis) want.push_back(x.dims[i]);
      else if (attr.keepdims) want.push_back(1);
    }
  }
  expect_dims(args, y, want, "output");
  return axis;
}

// fused_reduce(inputs...) -> y: the reduction kind, the program's value shape (the inputs
// broadcast) and the attrs, checked (only trailing reduced axes, size-1 dims aside).
enum class FusedRed { Sum, Mean, Max };

struct FusedReduceCheck {
  attrs::FusedReduce attr;
  FusedRed red;
  std::vector<int64_t> value;
};

inline FusedReduceCheck fused_reduce_check(const KernelArgs& args, DType dt) {
  if (args.in.empty() || args.out.size() != 1) {
    args.fail("expects at least 1 input and 1 output, got " + std::to_string(args.in.size()) + " and " +
              std::to_string(args.out.size()));
  }
  std::vector<std::vector<int64_t>> shapes;
  for (size_t i = 0; i < args.in.size(); ++i) {
    expect_dtype(args, args.in[i], dt, "input " + std::to_string(i));
    shapes.push_back(args.in[i].dims);
  }
  const TensorRef& y = args.out[0];
  expect_dtype(args, y, dt, "output");
  const std::vector<int64_t> value = broadcast_dims(args, shapes, "the inputs");
  const attrs::FusedReduce attr(args);
  FusedRed red;
  if (attr.reduce == "sum") red = FusedRed::Sum;
  else if (attr.reduce == "mean") red = FusedRed::Mean;
  else if (attr.reduce == "max") red = FusedRed::Max;
  else args.fail("reduce must be sum, mean or max, got '" + attr.reduce.substr(0, 40) + "'");

  const int64_t rank = static_cast<int64_t>(value.size());
  const std::vector<bool> reduced = reduced_axes(args, attr.has_axes, attr.axes, rank);
  // Only trailing reduced axes (size-1 dims aside): each output's items are one run.
  bool seen = false;
  for (int64_t i = 0; i < rank; ++i) {
    if (value[i] == 1) continue;
    if (reduced[i]) seen = true;
    else if (seen) args.fail("reduces a non-trailing axis of " + format_dims(value) + ": not supported");
  }
  std::vector<int64_t> want;
  for (int64_t i = 0; i < rank; ++i) {
    if (!reduced[i]) want.push_back(value[i]);
    else if (attr.keepdims) want.push_back(1);
    if (red == FusedRed::Max && reduced[i] && value[i] == 0) {
      args.fail("cannot reduce over axis " + std::to_string(i) + " of size 0 (no identity for max)");
    }
  }
  expect_dims(args, y, want, "output");
  return {attr, red, value};
}

// (outer, n, inner) around `axis` (a scalar: one position, an axis of one item).
struct AxisSplit {
  int64_t outer = 1, n = 1, inner = 1;
};

inline AxisSplit split_at(const std::vector<int64_t>& dims, int64_t axis) {
  AxisSplit s;
  if (dims.empty()) return s;
  for (int64_t i = 0; i < axis; ++i) s.outer *= dims[i];
  for (int64_t i = axis + 1; i < static_cast<int64_t>(dims.size()); ++i) s.inner *= dims[i];
  s.n = dims[axis];
  return s;
}

// tril / triu(x) -> y (rank >= 2): the diagonal.
inline int64_t tri_check(const KernelArgs& args, bool upper) {
  args.expect_arity(1, 1);
  const TensorRef &x = args.in[0], &y = args.out[0];
  expect_dtype(args, y, x.dtype, "output");
  expect_dims(args, y, x.dims, "output");
  const int64_t rank = static_cast<int64_t>(x.dims.size());
  if (rank < 2) args.fail("expects an input of rank >= 2, got rank " + std::to_string(rank));
  const int64_t diagonal = upper ? attrs::Triu(args).diagonal : attrs::Tril(args).diagonal;
  return diagonal;
}

// cumsum(x) -> y: the attrs and the split around the axis.
struct CumsumCheck {
  attrs::Cumsum attr;
  AxisSplit s;
};

inline CumsumCheck cumsum_check(const KernelArgs& args) {
  args.expect_arity(1, 1);
  const TensorRef &x = args.in[0], &y = args.out[0];
  expect_dtype(args, y, x.dtype, "output");
  expect_dims(args, y, x.dims, "output");
  const attrs::Cumsum attr(args);
  const int64_t rank = static_cast<int64_t>(x.dims.size());
  const int64_t axis = normalize_axis(args, attr.axis, rank);
  const AxisSplit s = split_at(x.dims, axis);
  return {attr, s};
}

}  // namespace cpu
}  // namespace graphc
