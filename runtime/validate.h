// validate.h — the runtime's one trust boundary: every plan passes validate_plan()
// before the executor allocates a byte or builds a kernel.
//
// A plan may come from anywhere (a file, a network, a fuzzer), so nothing in it is
// trusted: every index is range-checked, every size is computed with overflow checks,
// the memory it asks for is held against a limit, and the memory layout is proved safe
// by replaying the steps (the rules of graphc/compiler/verify_plan.py): values live at
// the same time occupy disjoint arena bytes, nothing is read before it is written,
// `frees` names only dead values, a step writes a VIEW only through its op's `alias` (and
// no later step reads the overwritten generation), and the inputs of a `contiguous_inputs`
// step lie back to back.  What a kernel needs of its own tensors' dims and
// attrs is checked by its factory (kernel_registry.h), not here.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "plan.h"

namespace graphc {

struct Limits {
  // The most bytes a plan may ask for: arena + persistent + constants.  0 means the
  // machine's physical memory (physical_memory_bytes()).
  uint64_t memory_limit = 0;
  // Whether `op` may write an output over the exact bytes (same offset, size and dtype)
  // of one of its direct inputs that dies at that step: true only for ops whose kernel
  // reads element k before it writes element k (elementwise ops).  Empty: the default,
  // default_inplace_ok().
  std::function<bool(const std::string& op)> inplace_ok;
};

// Throws std::invalid_argument naming the value or step (node and op) for a malformed
// or unsafe plan, and ResourceError when it needs more memory than `limits` allows.
// O((values + steps + references) log values); touches no tensor data.
void validate_plan(const PlanDesc& plan, const Limits& limits);

// The machine's physical memory in bytes (sysconf), or UINT64_MAX when unknown.
uint64_t physical_memory_bytes();

// The in-place rule used when Limits::inplace_ok is empty: the op's `elementwise` flag
// in runtime/op_schema.h (generated from the Python registry); false for an op the
// schema does not know.
bool default_inplace_ok(const std::string& op);

// The input whose arena root output `output` of a step of `op` is a view of, written in place
// by the step (the op's `alias` in runtime/op_schema.h: the data-parallel collectives), or -1.
int alias_input(const std::string& op, size_t output);

// Sets limits->inplace_ok to "op is one of `ops`" (tests and tools; the executor uses
// the default rule).
void set_inplace_ops(Limits* limits, const std::vector<std::string>& ops);

// numel * itemsize of a tensor, or false when a dim is negative or the product of the
// non-zero dims times the itemsize exceeds INT64_MAX (so no index arithmetic in a
// kernel over these dims can overflow int64, whatever its loop order).
bool tensor_nbytes(const std::vector<int64_t>& dims, DType dtype, uint64_t* nbytes);

// `text` cut to at most `limit` bytes (with "..." and the full length) for messages.
std::string shorten(const std::string& text, size_t limit = 200);

}  // namespace graphc
