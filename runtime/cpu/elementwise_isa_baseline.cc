// elementwise_isa_baseline.cc — elementwise_loops.inc for the build's baseline ISA (SSE2 on
// x86-64, whatever the target is elsewhere), and the table lookup by ISA.
#include "elementwise_ops.h"

namespace graphc {
namespace cpu {

const char* const kEwOpNames[kNumEwOps] = {
    "add", "sub", "mul", "div", "maximum", "minimum", "relu_grad",
    "abs", "neg", "exp", "log", "sqrt", "relu", "sigmoid", "tanh", "pow"};

namespace isa_baseline {
#include "elementwise_loops.inc"
}  // namespace isa_baseline

const EwTables& ew_tables(Isa isa) {
#if defined(__x86_64__)
  if (isa == Isa::Avx512) return isa_avx512::tables();
  if (isa == Isa::Avx2) return isa_avx2::tables();
#endif
  (void)isa;
  return isa_baseline::tables();
}

}  // namespace cpu
}  // namespace graphc
