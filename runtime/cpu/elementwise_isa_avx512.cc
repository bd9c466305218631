// elementwise_isa_avx512.cc — elementwise_loops.inc compiled for AVX-512 F+BW+DQ+VL (Skylake-X on); used only
// when detected_isa() allows it (isa.h).  x86-64 only; empty elsewhere.
//
// Every header is included first, outside the target region: only the loops defined in
// namespace isa_avx512 get the wider ISA (elementwise_loops.inc says why).  No FMA contraction
// happens although the target has FMA: setup.py builds with -ffp-contract=off.
#include "elementwise_ops.h"

#if defined(__x86_64__)

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")
#endif

namespace graphc {
namespace cpu {
namespace isa_avx512 {
#include "elementwise_loops.inc"
}  // namespace isa_avx512
}  // namespace cpu
}  // namespace graphc

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#endif  // __x86_64__
