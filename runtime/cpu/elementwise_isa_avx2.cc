// elementwise_isa_avx2.cc — elementwise_loops.inc compiled for AVX2 + FMA (Haswell on); used only
// when detected_isa() allows it (isa.h).  x86-64 only; empty elsewhere.
//
// Every header is included first, outside the target region: only the loops defined in
// namespace isa_avx2 get the wider ISA (elementwise_loops.inc says why).  No FMA contraction
// happens although the target has FMA: setup.py builds with -ffp-contract=off.
#include "elementwise_ops.h"
#include "isa_target.h"

#if defined(__x86_64__)

GRAPHC_TARGET_AVX2_BEGIN

namespace graphc {
namespace cpu {
namespace isa_avx2 {
#include "elementwise_loops.inc"
}  // namespace isa_avx2
}  // namespace cpu
}  // namespace graphc

GRAPHC_TARGET_END

#endif  // __x86_64__
