// isa.h — which vector instruction set the CPU kernels use, chosen at run time.
//
// The extension is built for baseline x86-64 (SSE2) so that one wheel runs on any x86-64
// machine.  The hot elementwise, reduction and fused-program loops are compiled a further
// time for AVX2 (+FMA) and for AVX-512 (F+BW+DQ+VL) in their own translation units
// (elementwise_isa_*.cc, via `#pragma GCC target`), and a kernel picks one set of loops when
// it is built (at plan load) from active_isa().  Every set computes identical bits
// (elementwise_ops.h says why), so the choice changes speed only.
// aot-sources: isa.cc
#pragma once

#include <string>

namespace graphc {
namespace cpu {

enum class Isa : int { Baseline = 0, Avx2 = 1, Avx512 = 2 };

// What this CPU (and its OS, which must save the wider registers) supports; cached.
// Always Baseline on non-x86 builds.
Isa detected_isa();

// The ISA kernels built from now on use: min(detected_isa(), cap).  The cap is
// set_isa_cap()'s when set, else the environment variable GRAPHC_ISA (baseline|avx2|avx512,
// read once), else no cap.  A GRAPHC_ISA with another value throws std::invalid_argument
// (naming the variable and the accepted values) here, i.e. when the first Session builds
// its kernels: a mistyped setting fails loudly instead of being silently ignored.
Isa active_isa();

// Tests and benchmarks: cap the ISA for kernels built afterwards ("" removes the cap, back
// to GRAPHC_ISA or none).  Throws std::invalid_argument for an unknown name.
void set_isa_cap(const std::string& name);

const char* isa_name(Isa isa);
// Throws std::invalid_argument naming `what` for an unknown name.
Isa parse_isa(const std::string& name, const std::string& what);

}  // namespace cpu
}  // namespace graphc
