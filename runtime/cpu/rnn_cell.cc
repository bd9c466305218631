// rnn_cell.cc — the fused LSTM and GRU cells (graphc/ops/rnn_cell.py has the semantics):
// lstm_cell(gates, c_prev) -> (h, c), lstm_cell_grad(dh, dc, gates, c_prev, c) -> (dgates, dc_prev),
// gru_cell(xw, hw, h) -> h', gru_cell_grad(dy, xw, hw, h) -> (dxw, dhw, dh).
//
// Every output element depends on its own column of the inputs only, so rows are the parallel
// tasks and the bits do not depend on the thread count.  The row loops (rnn_cell_loops.inc) are
// compiled per ISA and picked by active_isa() when the step is prepared; the float32 ones
// vectorise elementwise_ops.h's exp/tanh (libm's expf/tanhf are a call per element).
#include <algorithm>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "common.h"
#include "elementwise_ops.h"
#include "isa_target.h"

namespace graphc {
namespace cpu {

namespace isa_baseline_rnn {
#include "rnn_cell_loops.inc"
}  // namespace isa_baseline_rnn

#if defined(__x86_64__)
GRAPHC_TARGET_AVX2_BEGIN
namespace isa_avx2_rnn {
#include "rnn_cell_loops.inc"
}  // namespace isa_avx2_rnn
GRAPHC_TARGET_END
GRAPHC_TARGET_AVX512_BEGIN
namespace isa_avx512_rnn {
#include "rnn_cell_loops.inc"
}  // namespace isa_avx512_rnn
GRAPHC_TARGET_END
#endif  // __x86_64__

namespace {

template <class T> struct CellLoops {
  decltype(&isa_baseline_rnn::lstm_cell_rows<T>) lstm;
  decltype(&isa_baseline_rnn::lstm_cell_grad_rows<T>) lstm_grad;
  decltype(&isa_baseline_rnn::gru_cell_rows<T>) gru;
  decltype(&isa_baseline_rnn::gru_cell_grad_rows<T>) gru_grad;
};

#define GRAPHC_CELL_LOOPS(ns) \
  CellLoops<T> { &ns::lstm_cell_rows<T>, &ns::lstm_cell_grad_rows<T>, &ns::gru_cell_rows<T>, &ns::gru_cell_grad_rows<T> }

template <class T> CellLoops<T> cell_loops() {
#if defined(__x86_64__)
  switch (active_isa()) {
    case Isa::Avx512: return GRAPHC_CELL_LOOPS(isa_avx512_rnn);
    case Isa::Avx2: return GRAPHC_CELL_LOOPS(isa_avx2_rnn);
    default: break;
  }
#endif
  return GRAPHC_CELL_LOOPS(isa_baseline_rnn);
}
#undef GRAPHC_CELL_LOOPS

// Rows per parallel chunk: a chunk should be several microseconds of work (a row element is
// 4-5 exp/tanh evaluations, ~2-10 ns) or waking a worker costs more than it saves.
int64_t row_grain(int64_t h) { return std::max<int64_t>(1, 2048 / std::max<int64_t>(h, 1)); }

// (N, H) from gates (N, kH) and a state (N, H), both checked.
void cell_dims(const KernelArgs& a, size_t gi, size_t ci, int64_t* n, int64_t* h, int64_t k = 4,
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

template <class T> Kernel lstm_cell_kernel(const KernelArgs& args) {
  args.expect_arity(2, 2);
  int64_t n = 0, h = 0;
  cell_dims(args, 0, 1, &n, &h);
  const std::vector<int64_t> nh{n, h};
  for (size_t k = 0; k < 2; ++k) {
    const std::string what = k == 0 ? "output 0 (h)" : "output 1 (c)";
    expect_dtype(args, args.out[k], args.in[0].dtype, what);
    expect_dims(args, args.out[k], nh, what);
  }
  if (n == 0 || h == 0) return no_op_kernel();
  const T* pg = args.in[0].as<const T>();
  const T* pc = args.in[1].as<const T>();
  T* ph = args.out[0].as<T>();
  T* pcn = args.out[1].as<T>();
  const auto fn = cell_loops<T>().lstm;
  const int threads = args.ctx.threads;
  return [=]() {
    parallel_for(n, threads, row_grain(h), [&](int64_t rb, int64_t re) { fn(pg, pc, ph, pcn, h, rb, re); });
  };
}

template <class T> Kernel lstm_cell_grad_kernel(const KernelArgs& args) {
  args.expect_arity(5, 2);
  int64_t n = 0, h = 0;
  cell_dims(args, 2, 3, &n, &h);
  const std::vector<int64_t> nh{n, h};
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
  if (n == 0 || h == 0) return no_op_kernel();
  const T* pdh = args.in[0].as<const T>();
  const T* pdc = args.in[1].as<const T>();
  const T* pg = args.in[2].as<const T>();
  const T* pcp = args.in[3].as<const T>();
  const T* pc = args.in[4].as<const T>();
  T* pdg = args.out[0].as<T>();
  T* pdcp = args.out[1].as<T>();
  const auto fn = cell_loops<T>().lstm_grad;
  const int threads = args.ctx.threads;
  return [=]() {
    parallel_for(n, threads, row_grain(h),
                 [&](int64_t rb, int64_t re) { fn(pdh, pdc, pg, pcp, pc, pdg, pdcp, h, rb, re); });
  };
}

template <class T> Kernel gru_cell_kernel(const KernelArgs& args) {
  args.expect_arity(3, 1);
  int64_t n = 0, h = 0;
  cell_dims(args, 0, 2, &n, &h, 3, "xw", "h");
  expect_dtype(args, args.in[1], args.in[0].dtype, "input 1 (hw)");
  expect_dims(args, args.in[1], args.in[0].dims, "input 1 (hw)");
  expect_dtype(args, args.out[0], args.in[0].dtype, "output 0 (h')");
  expect_dims(args, args.out[0], {n, h}, "output 0 (h')");
  if (n == 0 || h == 0) return no_op_kernel();
  const T* px = args.in[0].as<const T>();
  const T* ph = args.in[1].as<const T>();
  const T* pst = args.in[2].as<const T>();
  T* py = args.out[0].as<T>();
  const auto fn = cell_loops<T>().gru;
  const int threads = args.ctx.threads;
  return [=]() {
    parallel_for(n, threads, row_grain(h), [&](int64_t rb, int64_t re) { fn(px, ph, pst, py, h, rb, re); });
  };
}

template <class T> Kernel gru_cell_grad_kernel(const KernelArgs& args) {
  args.expect_arity(4, 3);
  int64_t n = 0, h = 0;
  cell_dims(args, 1, 3, &n, &h, 3, "xw", "h");
  const DType dt = args.in[1].dtype;
  const std::vector<int64_t> nh{n, h};
  expect_dtype(args, args.in[0], dt, "input 0 (dy)");
  expect_dims(args, args.in[0], nh, "input 0 (dy)");
  expect_dtype(args, args.in[2], dt, "input 2 (hw)");
  expect_dims(args, args.in[2], args.in[1].dims, "input 2 (hw)");
  const char* names[] = {"output 0 (dxw)", "output 1 (dhw)", "output 2 (dh)"};
  for (size_t k = 0; k < 3; ++k) {
    expect_dtype(args, args.out[k], dt, names[k]);
    expect_dims(args, args.out[k], k < 2 ? args.in[1].dims : nh, names[k]);
  }
  if (n == 0 || h == 0) return no_op_kernel();
  const T* pdy = args.in[0].as<const T>();
  const T* px = args.in[1].as<const T>();
  const T* phw = args.in[2].as<const T>();
  const T* pst = args.in[3].as<const T>();
  T* pdx = args.out[0].as<T>();
  T* pdhw = args.out[1].as<T>();
  T* pdh = args.out[2].as<T>();
  const auto fn = cell_loops<T>().gru_grad;
  const int threads = args.ctx.threads;
  return [=]() {
    parallel_for(n, threads, row_grain(h),
                 [&](int64_t rb, int64_t re) { fn(pdy, px, phw, pst, pdx, pdhw, pdh, h, rb, re); });
  };
}

}  // namespace
}  // namespace cpu

void register_rnn_cell_kernels(KernelRegistry& r) {
  using namespace cpu;
  add_typed<FloatTypes>(r, "lstm_cell", [](auto tag, const KernelArgs& a) {
    return lstm_cell_kernel<typename decltype(tag)::type>(a);
  });
  add_typed<FloatTypes>(r, "lstm_cell_grad", [](auto tag, const KernelArgs& a) {
    return lstm_cell_grad_kernel<typename decltype(tag)::type>(a);
  });
  add_typed<FloatTypes>(r, "gru_cell", [](auto tag, const KernelArgs& a) {
    return gru_cell_kernel<typename decltype(tag)::type>(a);
  });
  add_typed<FloatTypes>(r, "gru_cell_grad", [](auto tag, const KernelArgs& a) {
    return gru_cell_grad_kernel<typename decltype(tag)::type>(a);
  });
}

}  // namespace graphc
