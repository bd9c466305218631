// rnn_cell_checks.h — the checks of the fused LSTM/GRU cell steps, shared by
// runtime/cpu/rnn_cell.cc and runtime/cuda/rnn_cell.cu (the same steps are accepted with the
// same messages).  Each returns the batch N and the hidden size H.  Host code only.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common.h"

namespace graphc {
namespace cpu {

// (N, H) from gates (N, kH) and a state (N, H), both checked.
inline void rnn_cell_dims(const KernelArgs& a, size_t gi, size_t ci, int64_t* n, int64_t* h, int64_t k = 4,
                          const char* gname = "gates", const char* cname = "c_prev") {
  const TensorRef &g = a.in[gi], &c = a.in[ci];
  const std::string gw = "input " + std::to_string(gi) + " (" + gname + ")";
  const std::string cw = "input " + std::to_string(ci) + " (" + cname + ")";
  if (g.dims.size() != 2) a.fail(gw + " must be (N, " + std::to_string(k) + "H), got " + format_dims(g.dims));
  if (c.dims.size() != 2) a.fail(cw + " must be (N, H), got " + format_dims(c.dims));
  expect_dtype(a, c, g.dtype, cw);
  expect_dims(a, g, {c.dims[0], k * c.dims[1]}, gw);
  *n = c.dims[0];
  *h = c.dims[1];
}

// lstm_cell(gates, c_prev) -> (h, c)
inline void lstm_cell_check(const KernelArgs& args, int64_t* n, int64_t* h) {
  args.expect_arity(2, 2);
  rnn_cell_dims(args, 0, 1, n, h);
  const std::vector<int64_t> nh{*n, *h};
  for (size_t k = 0; k < 2; ++k) {
    const std::string what = k == 0 ? "output 0 (h)" : "output 1 (c)";
    expect_dtype(args, args.out[k], args.in[0].dtype, what);
    expect_dims(args, args.out[k], nh, what);
  }
}

// lstm_cell_grad(dh, dc, gates, c_prev, c) -> (dgates, dc_prev)
inline void lstm_cell_grad_check(const KernelArgs& args, int64_t* n, int64_t* h) {
  args.expect_arity(5, 2);
  rnn_cell_dims(args, 2, 3, n, h);
  const std::vector<int64_t> nh{*n, *h};
  const DType dt = args.in[2].dtype;
  const char* names[] = {"input 0 (dh)", "input 1 (dc)", "", "", "input 4 (c)"};
  for (size_t k : {0, 1, 4}) {
    expect_dtype(args, args.in[k], dt, names[k]);
    expect_dims(args, args.in[k], nh, names[k]);
  }
  expect_dtype(args, args.out[0], dt, "output 0 (dgates)");
  expect_dims(args, args.out[0], args.in[2].dims, "output 0 (dgates)");
  expect_dtype(args, args.out[1], dt, "output 1 (dc_prev)");
  expect_dims(args, args.out[1], nh, "output 1 (dc_prev)");
}

// gru_cell(xw, hw, h) -> h'
inline void gru_cell_check(const KernelArgs& args, int64_t* n, int64_t* h) {
  args.expect_arity(3, 1);
  rnn_cell_dims(args, 0, 2, n, h, 3, "xw", "h");
  expect_dtype(args, args.in[1], args.in[0].dtype, "input 1 (hw)");
  expect_dims(args, args.in[1], args.in[0].dims, "input 1 (hw)");
  expect_dtype(args, args.out[0], args.in[0].dtype, "output 0 (h')");
  expect_dims(args, args.out[0], {*n, *h}, "output 0 (h')");
}

// gru_cell_grad(dy, xw, hw, h) -> (dxw, dhw, dh)
inline void gru_cell_grad_check(const KernelArgs& args, int64_t* n, int64_t* h) {
  args.expect_arity(4, 3);
  rnn_cell_dims(args, 1, 3, n, h, 3, "xw", "h");
  const DType dt = args.in[1].dtype;
  const std::vector<int64_t> nh{*n, *h};
  expect_dtype(args, args.in[0], dt, "input 0 (dy)");
  expect_dims(args, args.in[0], nh, "input 0 (dy)");
  expect_dtype(args, args.in[2], dt, "input 2 (hw)");
  expect_dims(args, args.in[2], args.in[1].dims, "input 2 (hw)");
  const char* names[] = {"output 0 (dxw)", "output 1 (dhw)", "output 2 (dh)"};
  for (size_t k = 0; k < 3; ++k) {
    expect_dtype(args, args.out[k], dt, names[k]);
    expect_dims(args, args.out[k], k < 2 ? args.in[1].dims : nh, names[k]);
  }
}

}  // namespace cpu
}  // namespace graphc
