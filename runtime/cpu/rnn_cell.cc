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
#include "rnn_cell_checks.h"

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

template <class T> Kernel lstm_cell_kernel(const KernelArgs& args) {
  int64_t n = 0, h = 0;
  lstm_cell_check(args, &n, &h);
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
  int64_t n = 0, h = 0;
  lstm_cell_grad_check(args, &n, &h);
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
  int64_t n = 0, h = 0;
  gru_cell_check(args, &n, &h);
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
  int64_t n = 0, h = 0;
  gru_cell_grad_check(args, &n, &h);
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
