// nn_checks.h — the validation and plans of the nn ops (softmax, log_softmax,
// softmax_cross_entropy(_grad), relu_grad, one_hot, assign and the optimizer updates), shared by
// runtime/cpu/nn.cc and runtime/cuda/nn.cu: both devices accept exactly the same steps with the
// same messages.  Prepare-time code only (nothing here runs per item).  Host code only.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common.h"

namespace graphc {
namespace cpu {

// softmax / log_softmax over `axis` in (outer, n, inner) form; empty: numel 0 (no kernel).
struct SoftmaxPlan {
  bool empty = false;
  int64_t outer = 1, n = 0, inner = 1;
};

inline SoftmaxPlan softmax_plan(const KernelArgs& args, bool log) {
  args.expect_arity(1, 1);
  const TensorRef &x = args.in[0], &y = args.out[0];
  expect_dtype(args, y, x.dtype, "output");
  expect_dims(args, y, x.dims, "output");
  const int64_t rank = static_cast<int64_t>(x.dims.size());
  if (rank == 0) args.fail("needs rank >= 1");
  const int64_t axis = normalize_axis(args, log ? attrs::LogSoftmax(args).axis : attrs::Softmax(args).axis, rank);
  SoftmaxPlan p;
  if (numel_of(x) == 0) {  // before any product of the other dims
    p.empty = true;
    return p;
  }
  for (int64_t i = 0; i < axis; ++i) p.outer *= x.dims[i];
  for (int64_t i = axis + 1; i < rank; ++i) p.inner *= x.dims[i];
  p.n = x.dims[axis];
  return p;
}

// softmax_cross_entropy(logits, labels) and its gradient: rows = the labels' count, C classes.
struct ScePlan {
  int64_t rows = 0, C = 0;
  bool reduce = false;  // 'mean' or 'sum' (not 'none')
  bool mean = false;
};

inline void check_reduction(const KernelArgs& args, const std::string& reduction) {
  if (reduction != "mean" && reduction != "sum" && reduction != "none") {
    args.fail("reduction must be 'mean', 'sum' or 'none', got '" + reduction + "'");
  }
}

// The logits' leading dims (the labels' shape); the logits must have rank >= 1.
inline std::vector<int64_t> sce_lead_dims(const KernelArgs& args) {
  const TensorRef& x = args.in[0];
  if (x.dims.empty()) args.fail("logits must have rank >= 1");
  std::vector<int64_t> lead(x.dims.begin(), x.dims.end() - 1);
  expect_dims(args, args.in[1], lead, "labels");
  return lead;
}

// softmax_cross_entropy(logits, labels) -> loss; C == 0 is refused.
inline ScePlan sce_plan(const KernelArgs& args) {
  args.expect_arity(2, 1);
  const TensorRef &x = args.in[0], &y = args.out[0];
  expect_dtype(args, y, x.dtype, "output");
  const std::vector<int64_t> lead = sce_lead_dims(args);
  const std::string reduction = attrs::SoftmaxCrossEntropy(args).reduction;
  check_reduction(args, reduction);
  ScePlan p;
  p.reduce = reduction != "none";
  p.mean = reduction == "mean";
  expect_dims(args, y, p.reduce ? std::vector<int64_t>{} : lead, "output");
  p.rows = numel_of(lead);
  p.C = x.dims.back();
  if (p.C == 0) args.fail("logits " + format_dims(x.dims) + " have 0 classes");
  return p;
}

// softmax_cross_entropy_grad(logits, labels, g) -> dlogits; reduce false: g per row ('none').
inline ScePlan sce_grad_plan(const KernelArgs& args) {
  args.expect_arity(3, 1);
  const TensorRef &x = args.in[0], &g = args.in[2], &y = args.out[0];
  expect_dtype(args, y, x.dtype, "output");
  expect_dtype(args, g, x.dtype, "input 2 (the gradient)");
  const std::vector<int64_t> lead = sce_lead_dims(args);
  expect_dims(args, y, x.dims, "output");
  const std::string reduction = attrs::SoftmaxCrossEntropyGrad(args).reduction;
  check_reduction(args, reduction);
  ScePlan p;
  p.reduce = reduction != "none";
  p.mean = reduction == "mean";
  expect_dims(args, g, p.reduce ? std::vector<int64_t>{} : lead, "input 2 (the gradient)");
  p.rows = numel_of(lead);
  p.C = x.dims.back();
  return p;
}

// Kernels over float logits (input 0) and integer labels (input 1): dispatches on the labels'
// dtype at plan load, make(T{}, Label{}, args).
template <class T, class Make> Kernel dispatch_labels(const KernelArgs& a, size_t n_in, const Make& make) {
  a.expect_arity(n_in, 1);
  if (a.in[1].dtype == DType::I32) return make(T{}, int32_t{}, a);
  if (a.in[1].dtype == DType::I64) return make(T{}, int64_t{}, a);
  a.fail(std::string("input 1 (labels) must be int32 or int64, got ") + dtype_name(a.in[1].dtype));
}

// relu_grad(g, x) -> y, all alike; returns the item count.
inline int64_t relu_grad_check(const KernelArgs& args) {
  args.expect_arity(2, 1);
  const TensorRef &g = args.in[0], &x = args.in[1], &y = args.out[0];
  expect_dtype(args, x, g.dtype, "input 1");
  expect_dtype(args, y, g.dtype, "output");
  expect_dims(args, x, g.dims, "input 1");
  expect_dims(args, y, g.dims, "output");
  return numel_of(g);
}

// The optimizer updates and assign: inputs 1..n_state+1 and every output like the variable
// (input 0); returns the variable's item count.
inline int64_t update_check(const KernelArgs& a, size_t n_in, size_t n_out, size_t n_state) {
  a.expect_arity(n_in, n_out);
  for (size_t i = 1; i < 1 + n_state + 1 && i < a.in.size(); ++i) {
    expect_dtype(a, a.in[i], a.in[0].dtype, "input " + std::to_string(i));
    expect_dims(a, a.in[i], a.in[0].dims, "input " + std::to_string(i));
  }
  for (size_t i = 0; i < a.out.size(); ++i) {
    expect_dtype(a, a.out[i], a.in[0].dtype, "output " + std::to_string(i));
    expect_dims(a, a.out[i], a.in[0].dims, "output " + std::to_string(i));
  }
  return numel_of(a.in[0]);
}

// adam_update(w, g, m, v, step) -> (w, m, v): the step is an int64 scalar (read per run).
inline int64_t adam_check(const KernelArgs& a) {
  const int64_t n = update_check(a, 5, 3, 2);
  expect_dtype(a, a.in[4], DType::I64, "input 4 (the step)");
  expect_dims(a, a.in[4], {}, "input 4 (the step)");
  return n;
}

// one_hot(indices) -> (indices' shape + (depth,)) of attr dtype: the output dtype, checked.
inline DType one_hot_out_dtype(const KernelArgs& a) {
  a.expect_arity(1, 1);
  const DType to = attrs::OneHot(a).dtype;
  expect_dtype(a, a.out[0], to, "output");
  return to;
}

// The depth, checked against the output's dims.
inline int64_t one_hot_depth(const KernelArgs& args) {
  const int64_t depth = attrs::OneHot(args).depth;
  if (depth < 0) args.fail("depth must be >= 0, got " + std::to_string(depth));
  std::vector<int64_t> want = args.in[0].dims;
  want.push_back(depth);
  expect_dims(args, args.out[0], want, "output (the indices' shape + (depth,))");
  return depth;
}

}  // namespace cpu
}  // namespace graphc
