// fused_reduce.cc — a sum, mean or max over trailing axes with an elementwise prologue (the
// fusion pass's fused_reduce; graphc/ops/fused.py).
//
// Each output reduces one contiguous run of the prologue's values.  The run is cut into
// blocks of kReduceBlock items exactly as reduce.cc cuts a stored input: the prologue fills
// a block-sized buffer (FusedProgram::run_range_to, the members' own scalar code), the
// active ISA's reduce loop reduces it, and the block partials are combined in order.  So a
// fused reduction gives the same bits as the members' kernels followed by the reduction,
// for any thread count, and the prologue's values never reach memory.
#include <limits>

#include "common.h"
#include "elementwise_ops.h"
#include "fused_program.h"
#include "reduce_checks.h"

namespace graphc {
namespace cpu {
namespace {

using Red = FusedRed;

template <class T> Kernel fused_reduce_kernel(const KernelArgs& args) {
  using A = typename ReduceLoops<T>::Acc;
  const FusedReduceCheck chk = fused_reduce_check(args, dtype_of<T>());
  const attrs::FusedReduce& attr = chk.attr;
  const Red red = chk.red;
  const std::vector<int64_t>& value = chk.value;
  const TensorRef& y = args.out[0];
  const FusedProgram prog(args, attr.program, value);
  const int64_t outer = numel_of(y);
  T* py = y.as<T>();
  if (outer == 0) return no_op_kernel();
  const int64_t total = prog.numel();
  if (total == 0) {
    const T fill = red == Red::Mean ? std::numeric_limits<T>::quiet_NaN() : T(0);
    return [py, outer, fill]() { std::fill(py, py + outer, fill); };
  }
  const int64_t run = total / outer;  // items per output (>= 1 here)
  const int64_t nblocks = (run + kReduceBlock - 1) / kReduceBlock;
  const ReduceLoops<T>* rl = &reduce_loops<T>(active_isa());
  const int threads = args.ctx.threads;

  // Block b of output o, reduced: its values made in buf, then the ISA's loop.
  auto block = [prog, rl, run, red](int64_t o, int64_t b, T* buf, T* first) -> A {
    const int64_t lo = b * kReduceBlock, hi = std::min(run, lo + kReduceBlock);
    prog.run_range_to(o * run + lo, o * run + hi, buf);
    if (first != nullptr) *first = buf[0];
    if (red == Red::Max) return static_cast<A>(rl->max(buf, hi - lo));
    return rl->sum(buf, hi - lo);
  };
  // reduce.cc's combine and finish: NaN-propagating max; sums added; mean in double.
  auto combine = [red](A acc, A v) -> A {
    if (red != Red::Max) return acc + v;
    if (acc != acc) return acc;
    if (v != v) return v;
    return v > acc ? v : acc;
  };
  auto finish = [red, run](A acc) -> T {
    if (red == Red::Mean) return static_cast<T>(static_cast<double>(acc) / static_cast<double>(run));
    return static_cast<T>(acc);
  };
  // Per-chunk value buffers (one block each) and the per-block partials, allocated now so that
  // a run allocates nothing.
  const bool by_output = outer >= threads || nblocks == 1;
  const int64_t out_grain = std::max<int64_t>(1, (1 << 14) / run);
  const int64_t buf_len = std::min(run, kReduceBlock);
  const int64_t chunks = by_output ? parallel_chunks(outer, threads, out_grain) : parallel_chunks(nblocks, threads, 1);
  const KernelBuffer<T> bufs(chunks * buf_len);
  const KernelBuffer<A> partials(by_output ? 0 : nblocks);
  const KernelBuffer<T> firsts_buf(by_output ? 0 : nblocks);
  return [=]() {
    if (by_output) {
      parallel_for_chunks(outer, threads, out_grain, [&](int64_t b, int64_t e, int64_t c) {
        T* const buf = bufs.data() + c * buf_len;
        for (int64_t o = b; o < e; ++o) {
          T first = T(0);
          A acc = block(o, 0, buf, &first);
          // reduce.cc starts from the run's first item for max (0 for sums), then combines
          acc = combine(red == Red::Max ? static_cast<A>(first) : A(0), acc);
          for (int64_t k = 1; k < nblocks; ++k) acc = combine(acc, block(o, k, buf, nullptr));
          py[o] = finish(acc);
        }
      });
      return;
    }
    A* const partial = partials.data();
    T* const firsts = firsts_buf.data();
    for (int64_t o = 0; o < outer; ++o) {
      parallel_for_chunks(nblocks, threads, 1, [&](int64_t b, int64_t e, int64_t c) {
        T* const buf = bufs.data() + c * buf_len;
        for (int64_t k = b; k < e; ++k) partial[k] = block(o, k, buf, &firsts[k]);
      });
      A acc = red == Red::Max ? static_cast<A>(firsts[0]) : A(0);
      for (int64_t k = 0; k < nblocks; ++k) acc = combine(acc, partial[k]);
      py[o] = finish(acc);
    }
  };
}

}  // namespace
}  // namespace cpu

void register_fused_reduce_kernels(KernelRegistry& r) {
  cpu::add_typed<cpu::FloatTypes>(r, "fused_reduce", [](auto tag, const KernelArgs& a) -> Kernel {
    return cpu::fused_reduce_kernel<typename decltype(tag)::type>(a);
  });
}

}  // namespace graphc
