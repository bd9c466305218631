// isa.cc — run-time ISA detection and the GRAPHC_ISA / set_isa_cap() cap (isa.h).
#include "isa.h"

#include <atomic>
#include <cstdlib>
#include <stdexcept>

namespace graphc {
namespace cpu {

namespace {

Isa detect() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  // __builtin_cpu_supports also checks that the OS enabled the registers (XGETBV), so a
  // kernel or hypervisor that does not save the AVX-512 state reports no AVX-512.
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl")) {
    return Isa::Avx512;
  }
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Isa::Avx2;
#endif
  return Isa::Baseline;
}

// -1: no cap set by set_isa_cap(); otherwise an Isa value.
std::atomic<int> g_cap{-1};

}  // namespace

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Avx512: return "avx512";
    case Isa::Avx2: return "avx2";
    default: return "baseline";
  }
}

Isa parse_isa(const std::string& name, const std::string& what) {
  if (name == "baseline") return Isa::Baseline;
  if (name == "avx2") return Isa::Avx2;
  if (name == "avx512") return Isa::Avx512;
  throw std::invalid_argument(what + " must be one of baseline, avx2, avx512; got '" + name + "'");
}

Isa detected_isa() {
  static const Isa isa = detect();
  return isa;
}

Isa active_isa() {
  int cap = g_cap.load(std::memory_order_relaxed);
  if (cap < 0) {
    // Read once; an invalid value is kept as the error to throw on every use.
    static const std::string env = [] {
      const char* v = std::getenv("GRAPHC_ISA");
      return std::string(v ? v : "");
    }();
    cap = env.empty() ? static_cast<int>(Isa::Avx512) : static_cast<int>(parse_isa(env, "GRAPHC_ISA"));
  }
  const int det = static_cast<int>(detected_isa());
  return static_cast<Isa>(cap < det ? cap : det);
}

void set_isa_cap(const std::string& name) {
  g_cap.store(name.empty() ? -1 : static_cast<int>(parse_isa(name, "set_isa's name")));
}

}  // namespace cpu
}  // namespace graphc
