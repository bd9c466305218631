// gemm_driver.cc — a standalone driver for runtime/cpu/gemm.h, compiled by tests/test_gemm.py
// and tools/bench_gemm.py with the system g++ (no Python in the loop, no change to the
// extension's Cython wrapper).
//
//   gemm_driver kernels
//       prints the kernels this CPU can run, one per line ("avx512", "avx2", "none").
//   gemm_driver name
//       prints kernel_name() as chosen from isa.h's active_isa() (GRAPHC_ISA caps it).
//   gemm_driver run KERNEL TA TB M N K LDA LDB LDC THREADS PACKED EPILOGUE OFFSET A.bin B.bin C.bin
//       C.bin gets the M x LDC float32 storage of C after sgemm.  C starts as NaN everywhere
//       (so a read of C before writing, or a write past column N, shows).  PACKED=1 packs B
//       with pack_b first.  EPILOGUE=1 passes a callback that counts the calls per element and
//       snapshots the elements' values at call time; the driver fails (exit 4) unless every
//       element was covered exactly once and held its final value then.  OFFSET shifts A, B
//       and C by that many floats from a 64-byte boundary (unaligned pointers).
//   gemm_driver mismatch PACK_KERNEL RUN_KERNEL N DK
//       packs an 8 x N B under one kernel and multiplies with K = 8 + DK under another: exit 3
//       (invalid_argument) when they do not match, 0 when they do.
//   gemm_driver grid KERNEL M N K THREADS PACKED
//       prints thread_grid's row and column groups and prefer_own (0/1) for that product.
//   gemm_driver bench KERNEL M N K THREADS PACKED REPS [TA TB]
//       prints the median and min wall time and the median process CPU time, in ms, of REPS
//       sgemm calls (after 3 warm-ups), and the kernel name.
// Exit status: 0 ok, 2 usage, 3 std::invalid_argument from the API (message on stderr),
// 4 epilogue check failed, 5 the kernel is not available on this CPU, 6 sgemm wrote past the
// caller's scratch (GEMM_DRIVER_SCRATCH=1: run passes scratch of exactly scratch_floats()).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "cpu/gemm.h"

namespace gemm = graphc::cpu::gemm;

namespace {

std::vector<float> read_floats(const char* path, size_t n) {
  std::vector<float> v(n);
  FILE* f = std::fopen(path, "rb");
  if (!f) throw std::runtime_error(std::string("cannot open ") + path);
  const size_t got = n ? std::fread(v.data(), sizeof(float), n, f) : 0;
  std::fclose(f);
  if (got != n) throw std::runtime_error(std::string("short read from ") + path);
  return v;
}

// A float buffer whose data() is `offset` floats past a 64-byte boundary.
struct Buf {
  std::vector<float> raw;
  float* p;
  Buf(size_t n, int offset, float fill) : raw(n + 16 + offset, fill) {
    auto addr = reinterpret_cast<uintptr_t>(raw.data());
    p = reinterpret_cast<float*>((addr + 63) / 64 * 64) + offset;
  }
};

struct EpiState {
  const float* C;
  std::vector<int> count;
  std::vector<float> snapshot;
};

void epilogue(void* ctx, int64_t b, int64_t e) {
  auto* s = static_cast<EpiState*>(ctx);
  for (int64_t i = b; i < e; ++i) {
    // Racing increments would only under-count, which the check reports too.
    s->count[i] += 1;
    s->snapshot[i] = s->C[i];
  }
}

int run(char** a) {
  const std::string kernel = a[0];
  const bool ta = std::atoi(a[1]) != 0, tb = std::atoi(a[2]) != 0;
  const int64_t M = std::atoll(a[3]), N = std::atoll(a[4]), K = std::atoll(a[5]);
  const int64_t lda = std::atoll(a[6]), ldb = std::atoll(a[7]), ldc = std::atoll(a[8]);
  const int threads = std::atoi(a[9]);
  const bool packed = std::atoi(a[10]) != 0, epi = std::atoi(a[11]) != 0;
  const int offset = std::atoi(a[12]);
  if (!gemm::set_kernel(kernel.c_str())) return 5;
  const size_t na = static_cast<size_t>(std::max<int64_t>(0, (ta ? K : M) * lda));
  const size_t nb = static_cast<size_t>(std::max<int64_t>(0, (tb ? N : K) * ldb));
  const size_t nc = static_cast<size_t>(std::max<int64_t>(0, M * ldc));
  Buf A(na, offset, 0.0f), B(nb, offset, 0.0f), C(nc, offset, std::numeric_limits<float>::quiet_NaN());
  std::vector<float> va = read_floats(a[13], na), vb = read_floats(a[14], nb);
  std::copy(va.begin(), va.end(), A.p);
  std::copy(vb.begin(), vb.end(), B.p);
  EpiState st{C.p, std::vector<int>(nc, 0), std::vector<float>(nc, 0.0f)};
  std::shared_ptr<const gemm::PackedB> pb;
  // GEMM_DRIVER_SCRATCH=1: the caller's scratch of exactly scratch_floats(...) floats, NaN
  // filled, followed by a guard of 64 sentinel floats that must survive (exit 6 otherwise).
  const char* use_scratch = std::getenv("GEMM_DRIVER_SCRATCH");
  const int64_t sfloats = use_scratch != nullptr && use_scratch[0] == '1'
                              ? gemm::scratch_floats(M, N, K, threads, packed) : -1;
  constexpr float kGuard = 12345.5f;
  std::vector<float> sstore(sfloats >= 0 ? static_cast<size_t>(sfloats) + 16 + 64 : 0);
  float* scratch = nullptr;
  if (sfloats >= 0) {
    size_t skip = 0;
    while ((reinterpret_cast<uintptr_t>(sstore.data() + skip) & 63) != 0) ++skip;
    scratch = sstore.data() + skip;
    std::fill(scratch, scratch + sfloats, std::numeric_limits<float>::quiet_NaN());
    std::fill(scratch + sfloats, scratch + sfloats + 64, kGuard);
  }
  try {
    if (packed) pb = gemm::pack_b(tb, K, N, B.p, ldb);
    gemm::sgemm(ta, tb, M, N, K, A.p, lda, packed ? nullptr : B.p, packed ? 0 : ldb, pb.get(), C.p, ldc, threads,
                epi ? epilogue : nullptr, epi ? &st : nullptr, scratch);
  } catch (const std::invalid_argument& e) {
    std::fprintf(stderr, "invalid_argument: %s\n", e.what());
    return 3;
  }
  if (scratch != nullptr) {
    for (int i = 0; i < 64; ++i) {
      if (scratch[sfloats + i] != kGuard) {
        std::fprintf(stderr, "sgemm wrote past scratch_floats() = %lld\n", static_cast<long long>(sfloats));
        return 6;
      }
    }
  }
  if (epi) {
    for (size_t i = 0; i < nc; ++i) {
      if (st.count[i] != 1) {
        std::fprintf(stderr, "epilogue covered element %zu %d times\n", i, st.count[i]);
        return 4;
      }
      if (std::memcmp(&st.snapshot[i], &C.p[i], sizeof(float)) != 0) {
        std::fprintf(stderr, "element %zu changed after its epilogue call\n", i);
        return 4;
      }
    }
  }
  FILE* f = std::fopen(a[15], "wb");
  if (!f) return 2;
  if (nc) std::fwrite(C.p, sizeof(float), nc, f);
  std::fclose(f);
  return 0;
}

double cpu_ms() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

int bench(char** a) {
  const std::string kernel = a[0];
  const int64_t M = std::atoll(a[1]), N = std::atoll(a[2]), K = std::atoll(a[3]);
  const int threads = std::atoi(a[4]);
  const bool packed = std::atoi(a[5]) != 0;
  const int reps = std::max(1, std::atoi(a[6]));
  const bool ta = a[7] != nullptr && std::atoi(a[7]) != 0, tb = a[7] != nullptr && std::atoi(a[8]) != 0;
  if (!gemm::set_kernel(kernel.c_str())) return 5;
  Buf A(M * K, 0, 0.0f), B(K * N, 0, 0.0f), C(M * N, 0, 0.0f);
  uint32_t s = 12345;
  auto rnd = [&] {
    s = s * 1664525u + 1013904223u;
    return static_cast<float>(s >> 8) / 16777216.0f - 0.5f;
  };
  for (int64_t i = 0; i < M * K; ++i) A.p[i] = rnd();
  for (int64_t i = 0; i < K * N; ++i) B.p[i] = rnd();
  std::shared_ptr<const gemm::PackedB> pb;
  if (packed) pb = gemm::pack_b(tb, K, N, B.p, tb ? K : N);
  std::vector<double> t, cpu;
  for (int r = 0; r < reps + 3; ++r) {
    const double c0 = cpu_ms();
    auto t0 = std::chrono::steady_clock::now();
    gemm::sgemm(ta, tb, M, N, K, A.p, ta ? M : K, B.p, tb ? K : N, pb.get(), C.p, N, threads);
    auto t1 = std::chrono::steady_clock::now();
    const double c1 = cpu_ms();
    if (r >= 3) {
      t.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
      cpu.push_back(c1 - c0);
    }
  }
  std::sort(t.begin(), t.end());
  std::sort(cpu.begin(), cpu.end());
  // Wall median, wall min, process CPU time median (all threads; on a loaded machine the
  // CPU time of a 1-thread run is the steadier figure), kernel.
  std::printf("%.6f %.6f %.6f %s\n", t[t.size() / 2], t[0], cpu[cpu.size() / 2], gemm::kernel_name());
  return 0;
}

}  // namespace

// The C API tools/bench_gemm.py loads with ctypes (the driver built with -shared -fPIC
// -DGEMM_DRIVER_LIBRARY), so that the own kernel, numpy and ONNX Runtime are timed round-robin
// in one process.  Row-major, no transposes, ld = width.
extern "C" {
int gemm_driver_set_kernel(const char* name) { return gemm::set_kernel(name) ? 1 : 0; }
const char* gemm_driver_kernel_name() { return gemm::kernel_name(); }
void* gemm_driver_pack(int64_t K, int64_t N, const float* B) {
  return new std::shared_ptr<const gemm::PackedB>(gemm::pack_b(false, K, N, B, N));
}
void gemm_driver_free(void* packed) { delete static_cast<std::shared_ptr<const gemm::PackedB>*>(packed); }
int gemm_driver_sgemm(int64_t M, int64_t N, int64_t K, const float* A, const float* B, void* packed, float* C,
                      int threads) {
  try {
    const gemm::PackedB* pb = packed ? static_cast<std::shared_ptr<const gemm::PackedB>*>(packed)->get() : nullptr;
    gemm::sgemm(false, false, M, N, K, A, K, B, N, pb, C, N, threads);
    return 0;
  } catch (const std::exception&) {
    return 1;
  }
}
}

#ifndef GEMM_DRIVER_LIBRARY
int main(int argc, char** argv) {
  try {
    if (argc == 2 && std::strcmp(argv[1], "kernels") == 0) {
      for (const char* k : {"avx512", "avx2", "none"}) {
        if (gemm::set_kernel(k)) std::printf("%s\n", k);
      }
      return 0;
    }
    if (argc == 2 && std::strcmp(argv[1], "name") == 0) {
      std::printf("%s\n", gemm::kernel_name());
      return 0;
    }
    if (argc == 18 && std::strcmp(argv[1], "run") == 0) return run(argv + 2);
    if (argc == 6 && std::strcmp(argv[1], "mismatch") == 0) {
      // B packed under kernel argv[2] (K x N = 8 x argv[4]), sgemm run under argv[3] with
      // K = 8 + argv[5]: exit 3 expected when the kernels or the sizes differ.
      const int64_t N = std::atoll(argv[4]), K = 8, K2 = K + std::atoll(argv[5]);
      std::vector<float> A(4 * K2, 1.0f), B(K * N, 1.0f), C(4 * N);
      if (!gemm::set_kernel(argv[2])) return 5;
      auto pb = gemm::pack_b(false, K, N, B.data(), N);
      if (!gemm::set_kernel(argv[3])) return 5;
      try {
        gemm::sgemm(false, false, 4, N, K2, A.data(), K2, nullptr, 0, pb.get(), C.data(), N, 1);
      } catch (const std::invalid_argument& e) {
        std::fprintf(stderr, "invalid_argument: %s\n", e.what());
        return 3;
      }
      return 0;
    }
    if (argc == 8 && std::strcmp(argv[1], "grid") == 0) {
      if (!gemm::set_kernel(argv[2])) return 5;
      int tm = 0, tn = 0;
      gemm::thread_grid(std::atoll(argv[3]), std::atoll(argv[4]), std::atoll(argv[5]), std::atoi(argv[6]), tm, tn);
      std::printf("%d %d %d\n", tm, tn, gemm::prefer_own(std::atoll(argv[3]), std::atoll(argv[4]),
                                                         std::atoll(argv[5]), std::atoi(argv[6]), argv[7][0] == '1'));
      return 0;
    }
    if ((argc == 9 || argc == 11) && std::strcmp(argv[1], "bench") == 0) return bench(argv + 2);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 2;
  }
  std::fprintf(stderr, "usage: see the comment at the top of tests/gemm_driver.cc\n");
  return 2;
}
#endif  // GEMM_DRIVER_LIBRARY
