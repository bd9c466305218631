// fused_program.h — the interpreter of a fused op's elementwise *program* (the `program`
// attr of fused_elementwise and fused_matmul; grammar in graphc/ops/fused.py):
//
//     "r0=add(p,i2);r1=relu(r0)"      "r0=mul(i0,i1);r1=pow[exponent=2.0](r0);r2=sub(r1,i0)"
//
// Parsed and checked once when the kernel is built.  Evaluated in tiles of kFusedTile
// output elements: each statement is one tight loop over the tile (the per-ISA loops of
// elementwise_loops.inc, chosen from active_isa() at build time), registers live in
// per-call tile buffers that stay in L1, inputs of the output's full shape are read in
// place, broadcast scalars as stride-0 operands, other broadcast inputs are gathered into a
// tile buffer.  The last statement writes the output directly.  Each member computes
// bit-identically to its standalone kernel (elementwise_ops.h).
// aot-sources: fused_program.cc
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common.h"

namespace graphc {
namespace cpu {

constexpr int64_t kFusedTile = 512;
// The reduce-axis block of sum/mean/max (reduce.cc) and fused_reduce: each block's partial
// is reduced alone, then the partials are combined in order, so both give the same bits.
constexpr int64_t kReduceBlock = 4096;

class FusedProgram {
 public:
  // first_input: index of the first step input the program may name (0 for
  // fused_elementwise, 2 for fused_matmul).  allow_product: "p" allowed (fused_matmul).
  // Checks every named input broadcasts to args.out[0]'s dims and has its dtype (F32/F64).
  // Throws via args.fail(...) (std::invalid_argument) naming the statement at fault.
  FusedProgram(const KernelArgs& args, const std::string& text, int first_input, bool allow_product);
  // A program whose value (of shape `value_dims`, the output's dtype) is not the step's
  // output but goes to caller buffers through run_range_to (fused_reduce's prologue).
  FusedProgram(const KernelArgs& args, const std::string& text, const std::vector<int64_t>& value_dims);

  // Output elements [begin, end) (flat C-order indices into args.out[0]); "p" reads the
  // output buffer at the same index (the matmul wrote it there).  Single-threaded; safe to
  // run concurrently on disjoint ranges.
  void run_range(int64_t begin, int64_t end) const;
  // Values [begin, end) written to dst[0 .. end - begin) (a buffer of the output's dtype).
  void run_range_to(int64_t begin, int64_t end, void* dst) const;
  // The whole output, split over `threads` on tile boundaries; every element is computed
  // the same way whatever the split, so results are identical for any thread count.
  void run(int threads) const;

  int64_t numel() const { return numel_; }
  size_t num_statements() const { return num_statements_; }

  struct Impl {
    virtual ~Impl() = default;
    virtual void run_range(int64_t begin, int64_t end) const = 0;
    virtual void run_range_to(int64_t begin, int64_t end, void* dst) const = 0;
  };

 private:
  void init(const KernelArgs& args, const TensorRef& y, const std::string& text, int first_input, bool allow_product);
  std::shared_ptr<const Impl> impl_;
  int64_t numel_ = 0;
  int64_t grain_ = 0;  // elements per parallel chunk, at least
  size_t num_statements_ = 0;
};

// One parsed statement "rK=op(a, b)" (op: an EwOp index, elementwise_ops.h), for interpreters
// other than this file's: runtime/cuda/fused_program.cuh evaluates the same parse on the device.
struct FusedInstr {
  enum ArgKind { Input = 0, Reg = 1, Product = 2 };
  int op = 0;
  double exponent = 0.0;  // pow's attr (as written; the kernel casts it to T)
  int nargs = 0;
  int kind[2] = {0, 0};   // ArgKind
  int index[2] = {0, 0};  // Input: the step input; Reg: the register (statement) index
};
// Parses and checks `text` exactly as FusedProgram does (same messages, via args.fail); the
// inputs' dtypes and shapes are not checked here.
std::vector<FusedInstr> parse_fused_program(const KernelArgs& args, const std::string& text, int first_input,
                                            bool allow_product);

// The member ops the interpreter knows, sorted (graphc._runtime.fused_ops(); a test checks
// it equals the registry's fusible set).
std::vector<std::string> fused_ops();

// Registers the "fused_elementwise" kernels (F32, F64); called from elementwise.cc.
void register_fused_elementwise_kernels(KernelRegistry& r);

}  // namespace cpu
}  // namespace graphc
