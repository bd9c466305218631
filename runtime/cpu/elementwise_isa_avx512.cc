// elementwise_isa_avx512.cc — elementwise_loops.inc compiled for AVX-512 F+BW+DQ+VL (Skylake-X on); used only
// when detected_isa() allows it (isa.h).  x86-64 only; empty elsewhere.
//
// Every header is included first, outside the target region: only the loops defined in
// namespace isa_avx512 get the wider ISA (elementwise_loops.inc says why).  No FMA contraction
// happens although the target has FMA: setup.py builds with -ffp-contract=off.
#include "elementwise_ops.h"
#include "isa_target.h"

#if defined(__x86_64__)

GRAPHC_TARGET_AVX512_BEGIN

namespace graphc {
namespace cpu {
namespace isa_avx512 {
#include "elementwise_loops.inc"
}  // namespace isa_avx512
}  // namespace cpu
}  // namespace graphc

GRAPHC_TARGET_END

#endif  // __x86_64__
