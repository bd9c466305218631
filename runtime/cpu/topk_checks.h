// topk_checks.h — the line geometry and checks of topk, take_along_axis and its gradient,
// shared by runtime/cpu/topk.cc and runtime/cuda/topk.cu: both devices accept exactly the same
// steps with the same messages.  Prepare-time code only.  Host code only.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common.h"

namespace graphc {
namespace cpu {

struct Lines {
  int64_t outer = 1, n = 1, inner = 1;
};

inline Lines lines_of(const std::vector<int64_t>& dims, int64_t axis) {
  Lines s;
  for (int64_t i = 0; i < axis; ++i) s.outer *= dims[i];
  for (int64_t i = axis + 1; i < static_cast<int64_t>(dims.size()); ++i) s.inner *= dims[i];
  s.n = dims[axis];
  return s;
}

// dims with dims[axis] replaced by n
inline std::vector<int64_t> with_axis(std::vector<int64_t> dims, int64_t axis, int64_t n) {
  dims[axis] = n;
  return dims;
}

// a and b agree on every axis but `axis` (same rank)
inline void expect_same_except(const KernelArgs& args, const TensorRef& a, const TensorRef& b, int64_t axis,
                               const std::string& a_name, const std::string& b_name) {
  if (a.dims.size() != b.dims.size() || with_axis(a.dims, axis, 0) != with_axis(b.dims, axis, 0)) {
    args.fail(a_name + " " + format_dims(a.dims) + " and " + b_name + " " + format_dims(b.dims) +
              " must agree on every axis but " + std::to_string(axis));
  }
}

// topk(x) -> (values, indices): the attrs, the axis and the outputs' dims, checked.
struct TopkCheck {
  attrs::Topk attr;
  int64_t axis, n, k;
  std::vector<int64_t> out_dims;
};

inline TopkCheck topk_check(const KernelArgs& args) {
  args.expect_arity(1, 2);
  const TensorRef &x = args.in[0], &values = args.out[0], &indices = args.out[1];
  const attrs::Topk attr(args);
  const int64_t rank = static_cast<int64_t>(x.dims.size());
  if (rank == 0) args.fail("expects an input of rank >= 1, got a scalar");
  const int64_t axis = normalize_axis(args, attr.axis, rank);
  const int64_t n = x.dims[axis], k = attr.k;
  if (k < 0 || k > n) {
    args.fail("k=" + std::to_string(k) + " must lie in [0, " + std::to_string(n) + "] (axis " +
              std::to_string(axis) + " of x " + format_dims(x.dims) + ")");
  }
  const std::vector<int64_t> out_dims = with_axis(x.dims, axis, k);
  expect_dtype(args, values, x.dtype, "output 0 (values)");
  expect_dims(args, values, out_dims, "output 0 (values)");
  expect_dtype(args, indices, DType::I64, "output 1 (indices)");
  expect_dims(args, indices, out_dims, "output 1 (indices)");
  return {attr, axis, n, k, out_dims};
}

// take_along_axis(x, indices) -> y: the axis.
inline int64_t take_along_axis_check(const KernelArgs& args) {
  args.expect_arity(2, 1);
  const TensorRef &x = args.in[0], &idx = args.in[1], &y = args.out[0];
  const int64_t rank = static_cast<int64_t>(x.dims.size());
  if (rank == 0) args.fail("expects an input of rank >= 1, got a scalar");
  const int64_t axis = normalize_axis(args, attrs::TakeAlongAxis(args).axis, rank);
  expect_dtype(args, idx, DType::I64, "input 1 (indices)");
  expect_same_except(args, x, idx, axis, "x", "indices");
  expect_dtype(args, y, x.dtype, "output");
  expect_dims(args, y, idx.dims, "output");
  return axis;
}

// take_along_axis_grad(g, indices, x) -> dx: the axis.
inline int64_t take_along_axis_grad_check(const KernelArgs& args) {
  args.expect_arity(3, 1);
  const TensorRef &g = args.in[0], &idx = args.in[1], &x = args.in[2], &dx = args.out[0];
  const int64_t rank = static_cast<int64_t>(x.dims.size());
  if (rank == 0) args.fail("expects x of rank >= 1, got a scalar");
  const int64_t axis = normalize_axis(args, attrs::TakeAlongAxisGrad(args).axis, rank);
  expect_dtype(args, idx, DType::I64, "input 1 (indices)");
  expect_dtype(args, x, g.dtype, "input 2 (x)");
  expect_same_except(args, x, idx, axis, "x", "indices");
  expect_dims(args, g, idx.dims, "input 0 (g)");
  expect_dtype(args, dx, g.dtype, "output");
  expect_dims(args, dx, x.dims, "output");
  return axis;
}

}  // namespace cpu
}  // namespace graphc
