// gemm.cc — the ISA-independent part of gemm.h: kernel choice, packing, blocking, threads.
//
// Loop nest of one thread's rectangle of C (rows [i0, i1), panels [p0, p1)), BLIS-like:
//   for each block of kNcCols columns              (jc)
//     for each block of at most kKc values of k    (pc)
//       B block: the packed weights, packed now into thread-local scratch (L2), or B in place
//       for each strip of mr rows                  (ir)
//         the A strip: packed (mr x kc, k-major, L1) or read in place
//         for each panel of nr columns in the block: micro-kernel (A strip x B panel slice)
//         after the last k block: the epilogue over the strip's rows of this column block
// A later k block reloads the partial sums from C and continues the same chain, so C is an
// exact continuation and the result does not depend on the blocking or on the partition.
#include "gemm.h"

#include <cstdlib>
#include <cstring>
#include <new>
#include <stdexcept>
#include <string>

#include "common.h"
#include "isa.h"

namespace graphc {
namespace cpu {
namespace gemm {
namespace {

// k values per block: the A strip (12 x 256 x 4 B = 12 KiB) stays in L1 while the B panel
// slices (256 x 32 x 4 B = 32 KiB each) stream from L2.
constexpr int64_t kKc = 256;
// Columns per column block: the B block (kKc x 1024 floats = 1 MiB) is about the L2 (1 MiB
// per core on the Zen 4 this was tuned on) that every row strip of the thread passes over.
// Swept on 1024^3 and 128x784x1024 at one thread (CPU time, docs/gemm.md): kKc 192..512 were
// within noise; 1024 columns beat 512 by 5-10% (fewer A strip repacks and C reloads).
constexpr int64_t kNcCols = 1024;
// Panels per column block from which the A strip is packed (k-major, L1) rather than read in
// place: packing costs about one move per element of A, the micro-kernel's broadcast from a
// packed strip saves address arithmetic on every panel.  Below 4 panels (N <= 96) packing
// does not pay: 256x784x10 took 118 us with packing, 64 us without (one thread).
constexpr int64_t kPackAPanels = 4;
// Rows of a thread's rectangle up to which a non-transposed, unpacked B is read in place
// instead of packed: packing costs a read and a write of every B element, which only pays
// when enough row strips reuse the copy.  Measured at one thread (CPU time): M=4 x 1024 x
// 1024 packed 0.24 ms, in place 0.11 ms; M=24 0.70 vs 0.62 ms; M=36 1.08 vs 2.26 ms (rows
// 4 KiB apart alias in L1 once several strips re-read them).
constexpr int64_t kDirectBRows = 24;
// Multiply-adds below which one thread runs the whole product: handing work to the pool
// costs several microseconds, as long as ~2^20 multiply-adds take on one core.
constexpr int64_t kMinParallelWork = int64_t(1) << 20;

// ---- the portable kernel: plain C++ (SSE2 by the compiler), used when no own SIMD kernel
// runs (non-x86 builds, GRAPHC_ISA=baseline) ------------------------------------------------
constexpr int kPortableMr = 4;
constexpr int kPortableNr = 16;

template <int R, bool kRows>
void portable_micro(int64_t kc, const float* a, int64_t as, const float* b, int64_t bs, float* c, int64_t ldc,
                    int64_t ncols, bool accumulate) {
  float acc[R][kPortableNr];
  for (int r = 0; r < R; ++r) {
    for (int j = 0; j < kPortableNr; ++j) acc[r][j] = accumulate && j < ncols ? c[r * ldc + j] : 0.0f;
  }
  for (int64_t k = 0; k < kc; ++k) {
    for (int r = 0; r < R; ++r) {
      const float av = kRows ? a[r * as + k] : a[k * as + r];
      for (int j = 0; j < kPortableNr; ++j) acc[r][j] += av * b[k * bs + j];
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int64_t j = 0; j < ncols; ++j) c[r * ldc + j] = acc[r][j];
  }
}

const KernelSet kPortable = {
    "none",
    kPortableMr,
    kPortableNr,
    {nullptr, portable_micro<1, false>, portable_micro<2, false>, portable_micro<3, false>,
     portable_micro<4, false>, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr,
     nullptr, nullptr, nullptr, nullptr},
    {nullptr, portable_micro<1, true>, portable_micro<2, true>, portable_micro<3, true>,
     portable_micro<4, true>, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr,
     nullptr, nullptr, nullptr},
    nullptr,
    nullptr,
    false,
};

// The kernel for the ISA the CPU kernels use now (isa.h: detected, capped by GRAPHC_ISA or
// set_isa_cap): AVX-512, else AVX2+FMA, else the portable kernel.
const KernelSet* isa_kernel() {
  switch (active_isa()) {
    case Isa::Avx512:
      if (const KernelSet* k = avx512_kernels()) return k;
      [[fallthrough]];
    case Isa::Avx2:
      if (const KernelSet* k = avx2_kernels()) return k;
      [[fallthrough]];
    default:
      return &kPortable;
  }
}

// nullptr for an unknown name or a kernel this CPU cannot run.
const KernelSet* kernel_by_name(const std::string& name) {
  if (name == "avx512") return avx512_kernels();
  if (name == "avx2") return avx2_kernels();
  if (name == "none") return &kPortable;
  return nullptr;
}

// set_kernel's choice; nullptr: follow active_isa() (read on every call, so a cap set for
// later sessions applies to their products too).
std::atomic<const KernelSet*> g_forced{nullptr};

const KernelSet* current_kernel() {
  if (const KernelSet* k = g_forced.load(std::memory_order_acquire)) return k;
  return isa_kernel();
}

// 64-byte aligned, grow-only scratch owned by one thread (pool workers live for the process):
// sgemm's buffers when the caller gives none.
class ThreadScratch {
 public:
  ~ThreadScratch() { std::free(p_); }
  float* get(int64_t floats) {
    const size_t bytes = (static_cast<size_t>(floats) * sizeof(float) + 63) / 64 * 64;
    if (bytes > cap_) {
      std::free(p_);
      p_ = nullptr;
      cap_ = 0;
      p_ = static_cast<float*>(std::aligned_alloc(64, bytes));
      if (p_ == nullptr) throw std::bad_alloc();
      cap_ = bytes;
    }
    return p_;
  }

 private:
  float* p_ = nullptr;
  size_t cap_ = 0;
};

// Copies one full row of a panel: a fixed-size loop the compiler turns into vector moves
// (a memcpy call per 64-128 bytes cost ~20% of a 128x784x1024 product).
template <int NR> inline void copy_row(float* d, const float* s) {
  for (int j = 0; j < NR; ++j) d[j] = s[j];
}

template <int NR>
void pack_b_panels(bool trans_b, const float* B, int64_t ldb, int64_t N, int64_t k0, int64_t kc, int64_t col0,
                   int64_t npan, float* dst, int64_t pstride, PackTransFn pack_trans) {
  if (!trans_b) {
    // k outer: each row of B is read once, left to right, into every panel of the block.
    for (int64_t k = 0; k < kc; ++k) {
      const float* s = B + (k0 + k) * ldb + col0;
      for (int64_t q = 0; q < npan; ++q) {
        float* d = dst + q * pstride + k * NR;
        const int64_t w = std::min<int64_t>(NR, N - col0 - q * NR);
        if (w == NR) {
          copy_row<NR>(d, s + q * NR);
        } else {
          for (int64_t j = 0; j < w; ++j) d[j] = s[q * NR + j];
          for (int64_t j = w; j < NR; ++j) d[j] = 0.0f;
        }
      }
    }
    return;
  }
  for (int64_t q = 0; q < npan; ++q) {
    const int64_t col = col0 + q * NR;
    const int64_t w = std::min<int64_t>(NR, N - col);
    float* d = dst + q * pstride;
    // op(B)[k][col + j] = B[(col + j) * ldb + k]: read rows of B, write columns of the panel
    // (the kc x NR panel slice stays in L1 meanwhile).
    if (pack_trans != nullptr) {
      pack_trans(B + col * ldb + k0, ldb, kc, w, NR, d);
    } else {
      for (int64_t j = 0; j < w; ++j) {
        const float* s = B + (col + j) * ldb + k0;
        for (int64_t k = 0; k < kc; ++k) d[k * NR + j] = s[k];
      }
    }
    for (int64_t j = w; j < NR; ++j) {
      for (int64_t k = 0; k < kc; ++k) d[k * NR + j] = 0.0f;
    }
  }
}

// Packs op(B)[k0 : k0+kc, col0 : col0 + npan*nr) into npan panels, panel q at dst + q*pstride,
// nr floats per k, columns past N zero.
void pack_b_block(const KernelSet& ks, bool trans_b, const float* B, int64_t ldb, int64_t N, int64_t k0,
                  int64_t kc, int64_t col0, int64_t npan, float* dst, int64_t pstride) {
  const int nr = ks.nr;
  switch (nr) {
    case 16: return pack_b_panels<16>(trans_b, B, ldb, N, k0, kc, col0, npan, dst, pstride, ks.pack_trans);
    case 32: return pack_b_panels<32>(trans_b, B, ldb, N, k0, kc, col0, npan, dst, pstride, ks.pack_trans);
    default: throw std::logic_error("gemm: no packing routine for panel width " + std::to_string(nr));
  }
}

template <int R> void pack_a_trans(const float* s, int64_t lda, int64_t kc, float* dst) {
  for (int64_t k = 0; k < kc; ++k) copy_row<R>(dst + k * R, s + k * lda);
}

// Packs op(A)[i : i+R, k0 : k0+kc) k-major: dst[k*R + r].
void pack_a_strip(bool trans_a, const float* A, int64_t lda, int64_t i, int R, int64_t k0, int64_t kc,
                  float* dst) {
  if (trans_a) {
    // op(A)[i + r][k] = A[k * lda + i + r]: R contiguous floats per k.
    const float* s = A + k0 * lda + i;
    switch (R) {
      case 12: return pack_a_trans<12>(s, lda, kc, dst);
      case 6: return pack_a_trans<6>(s, lda, kc, dst);
      case 4: return pack_a_trans<4>(s, lda, kc, dst);
      default:
        for (int64_t k = 0; k < kc; ++k) {
          for (int r = 0; r < R; ++r) dst[k * R + r] = s[k * lda + r];
        }
        return;
    }
  }
  for (int r = 0; r < R; ++r) {
    const float* s = A + (i + r) * lda + k0;
    for (int64_t k = 0; k < kc; ++k) dst[k * R + r] = s[k];
  }
}

struct Problem {
  const KernelSet* ks;
  bool trans_a, trans_b;
  int64_t M, N, K;
  const float* A;
  int64_t lda;
  const float* B;
  int64_t ldb;
  const PackedB* packed;
  float* C;
  int64_t ldc;
  RangeFn epilogue;
  void* ctx;
};

thread_local ThreadScratch t_a_scratch, t_b_scratch;

int64_t round16(int64_t floats) { return (floats + 15) / 16 * 16; }
// K split into equal blocks of at most kKc (784 -> 4 x 196, not 3 x 256 + 16: a short last
// block pays a full load and store of C for a few multiply-adds).
int64_t kc_step_for(int64_t K) { return (K + (K + kKc - 1) / kKc - 1) / ((K + kKc - 1) / kKc); }
// One task's scratch: the A strip (at most kMaxMr x kKc) and, unless B is packed, the B block
// (kc_step x at most kNcCols columns, whole panels of at most 32).  Both grow with M, N and K,
// so the scratch of a product bounds that of every smaller one.
int64_t a_scratch_floats() { return round16(int64_t(kMaxMr) * kKc); }
int64_t b_scratch_floats(int64_t N, int64_t K, bool packed) {
  if (packed || K <= 0) return 0;
  // min(K, kKc) >= kc_step_for(K), and grows with K: a bound for every smaller product too.
  return round16(std::min(K, kKc) * std::min<int64_t>(kNcCols, (N + 31) / 32 * 32));
}
// Thread tasks of one product: at most the grid's thread count (grid_for).
int64_t max_tasks(int64_t M, int64_t N, int64_t K, int threads) {
  const int64_t work = saturating_mul(saturating_mul(M, N), K);
  return std::max<int64_t>(1, std::min<int64_t>(threads, std::max<int64_t>(1, work / kMinParallelWork)));
}

// One thread's rectangle: rows [i0, i1), panels [p0, p1); `scratch` (null: the thread's own)
// holds a_scratch_floats() then b_scratch_floats(...) floats.
void run_rect(const Problem& P, int64_t i0, int64_t i1, int64_t p0, int64_t p1, float* scratch) {
  const KernelSet& ks = *P.ks;
  const int nr = ks.nr, mr = ks.mr;
  const int64_t nc_panels = std::max<int64_t>(1, kNcCols / nr);
  const int64_t kc_step = kc_step_for(P.K);
  float* apack = scratch ? scratch : t_a_scratch.get(static_cast<int64_t>(mr) * kKc);
  float* bscratch = P.packed ? nullptr
                    : scratch ? scratch + a_scratch_floats()
                              : t_b_scratch.get(kKc * nc_panels * nr);
  for (int64_t pb = p0; pb < p1; pb += nc_panels) {
    const int64_t pe = std::min(pb + nc_panels, p1);
    const int64_t col_begin = pb * nr, col_end = std::min(pe * nr, P.N);
    const bool pack_a = pe - pb >= kPackAPanels;
    // B read in place (not packed) when few row strips would reuse the packed copy.
    // A B with rows of at most two panels (N <= 2*nr, contiguous: an MLP's 10-class layer) is
    // compact enough to read in place at any M.
    const bool direct_b = !P.packed && !P.trans_b && (i1 - i0 <= kDirectBRows || P.ldb <= 2 * nr);
    for (int64_t k0 = 0; k0 < P.K; k0 += kc_step) {
      const int64_t kc = std::min(kc_step, P.K - k0);
      const bool last_k = k0 + kc == P.K;
      const float* bblock;
      int64_t pstride;
      if (P.packed) {
        bblock = P.packed->panel(pb) + k0 * nr;
        pstride = P.K * nr;
      } else if (direct_b) {
        // Full panels are read in place; a partial last panel too when the kernel masks its
        // loads of B, else it is packed (reading nr columns would run past row ends).
        bblock = P.B + k0 * P.ldb + col_begin;
        pstride = nr;
        if (!ks.masked_b_loads && col_end - col_begin < (pe - pb) * nr) {
          pack_b_block(ks, false, P.B, P.ldb, P.N, k0, kc, (pe - 1) * nr, 1, bscratch, kc * nr);
        }
      } else {
        pack_b_block(ks, P.trans_b, P.B, P.ldb, P.N, k0, kc, col_begin, pe - pb, bscratch, kc * nr);
        bblock = bscratch;
        pstride = kc * nr;
      }
      for (int64_t i = i0; i < i1; i += mr) {
        const int R = static_cast<int>(std::min<int64_t>(mr, i1 - i));
        // The strip of A: packed when enough panels reuse it, else read in place.
        const float* a;
        int64_t as;
        MicroFn micro;
        if (pack_a) {
          pack_a_strip(P.trans_a, P.A, P.lda, i, R, k0, kc, apack);
          a = apack, as = R, micro = ks.micro[R];
        } else if (P.trans_a) {
          a = P.A + k0 * P.lda + i, as = P.lda, micro = ks.micro[R];
        } else {
          a = P.A + i * P.lda + k0, as = P.lda, micro = ks.micro_rows[R];
        }
        float* crow = P.C + i * P.ldc;
        for (int64_t p = pb; p < pe; ++p) {
          const int64_t col = p * nr;
          const int64_t ncols = std::min<int64_t>(nr, P.N - col);
          if (direct_b) {
            if (ncols == nr || ks.masked_b_loads) {
              micro(kc, a, as, bblock + (p - pb) * nr, P.ldb, crow + col, P.ldc, ncols, k0 > 0);
            } else {
              micro(kc, a, as, bscratch, nr, crow + col, P.ldc, ncols, k0 > 0);
            }
          } else {
            micro(kc, a, as, bblock + (p - pb) * pstride, nr, crow + col, P.ldc, ncols, k0 > 0);
          }
        }
        if (last_k && P.epilogue) {
          for (int r = 0; r < R; ++r) P.epilogue(P.ctx, (i + r) * P.N + col_begin, (i + r) * P.N + col_end);
        }
      }
    }
  }
}

// Threads grid: tm row groups x tn panel groups, minimising the largest rectangle (in
// micro-tiles); ties go to fewer threads, then to more panel groups (rows share all of B,
// panel groups read disjoint parts of it).
void choose_grid(int64_t strips, int64_t panels, int threads, int& tm, int& tn) {
  tm = tn = 1;
  int64_t best = strips * panels;
  for (int n = 1; n <= threads; ++n) {
    for (int m = 1; m * n <= threads; ++m) {
      if (n > panels || m > strips) continue;
      const int64_t cost = ((strips + m - 1) / m) * ((panels + n - 1) / n);
      if (cost < best || (cost == best && m * n < tm * tn) || (cost == best && m * n == tm * tn && n > tn)) {
        best = cost;
        tm = m;
        tn = n;
      }
    }
  }
}

void grid_for(const KernelSet& ks, int64_t M, int64_t N, int64_t K, int threads, int& tm, int& tn) {
  const int64_t strips = (M + ks.mr - 1) / ks.mr;
  const int64_t panels = (N + ks.nr - 1) / ks.nr;
  const int64_t work = saturating_mul(saturating_mul(M, N), K);
  const int usable = static_cast<int>(std::min<int64_t>(threads, std::max<int64_t>(1, work / kMinParallelWork)));
  choose_grid(strips, panels, usable, tm, tn);
}

void check_ld(const char* what, int64_t ld, int64_t width) {
  if (ld < width) {
    throw std::invalid_argument(std::string("sgemm: ") + what + " = " + std::to_string(ld) +
                                " is smaller than the row width " + std::to_string(width));
  }
}

}  // namespace

bool available() { return std::strcmp(current_kernel()->name, "none") != 0; }

const char* kernel_name() { return current_kernel()->name; }

bool set_kernel(const char* name) {
  if (name == nullptr) return false;
  if (std::strcmp(name, "auto") == 0) {
    g_forced.store(nullptr, std::memory_order_release);
    return true;
  }
  const KernelSet* k = kernel_by_name(name);
  if (k == nullptr) return false;
  g_forced.store(k, std::memory_order_release);
  return true;
}

std::shared_ptr<PackedB> alloc_packed_b(int64_t K, int64_t N) {
  if (K < 0 || N < 0) {
    throw std::invalid_argument("pack_b: negative size K=" + std::to_string(K) + ", N=" + std::to_string(N));
  }
  // Panels of the widest kernel (32 columns) hold every narrower kernel's too.
  const int64_t floats = std::max<int64_t>(1, saturating_mul((N + 31) / 32 * 32, K));
  if (floats > INT64_MAX / 8) {
    throw std::invalid_argument("pack_b: B of " + std::to_string(K) + "x" + std::to_string(N) + " is too large");
  }
  auto pb = std::make_shared<PackedB>();
  pb->K = K;
  pb->N = N;
  const size_t bytes = (static_cast<size_t>(floats) * sizeof(float) + 63) / 64 * 64;
  float* data = static_cast<float*>(std::aligned_alloc(64, bytes));
  if (data == nullptr) throw std::bad_alloc();
  pb->storage = std::shared_ptr<float>(data, [](float* p) { std::free(p); });
  pb->data = data;
  return pb;
}

void repack_b(PackedB& pb, bool trans_b, const float* B, int64_t ldb) {
  const int64_t K = pb.K, N = pb.N;
  if (K > 0 && N > 0) {
    check_ld("ldb", ldb, trans_b ? K : N);
    if (B == nullptr) throw std::invalid_argument("pack_b: B is null");
  }
  const KernelSet* ks = kernels_for(current_kernel(), N);
  pb.nr = ks->nr;
  pb.kernel = ks->name;
  if (K > 0 && N > 0) pack_b_block(*ks, trans_b, B, ldb, N, 0, K, 0, pb.panels(), pb.data, K * ks->nr);
}

std::shared_ptr<const PackedB> pack_b(bool trans_b, int64_t K, int64_t N, const float* B, int64_t ldb) {
  std::shared_ptr<PackedB> pb = alloc_packed_b(K, N);
  repack_b(*pb, trans_b, B, ldb);
  return pb;
}

int64_t scratch_floats(int64_t M, int64_t N, int64_t K, int threads, bool packed) {
  if (M <= 0 || N <= 0 || K <= 0) return 0;
  return max_tasks(M, N, K, std::max(threads, 1)) * (a_scratch_floats() + b_scratch_floats(N, K, packed));
}

Scratch::Scratch(int64_t floats) {
  if (floats <= 0) return;
  const size_t bytes = (static_cast<size_t>(floats) * sizeof(float) + 63) / 64 * 64;
  float* p = static_cast<float*>(std::aligned_alloc(64, bytes));
  if (p == nullptr) throw std::bad_alloc();
  data_ = std::shared_ptr<float>(p, [](float* q) { std::free(q); });
}

void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda,
           const float* B, int64_t ldb, const PackedB* packed, float* C, int64_t ldc, int threads,
           RangeFn epilogue, void* epilogue_ctx, float* scratch) {
  if (M < 0 || N < 0 || K < 0) {
    throw std::invalid_argument("sgemm: negative size M=" + std::to_string(M) + ", N=" + std::to_string(N) +
                                ", K=" + std::to_string(K));
  }
  if (threads < 1) throw std::invalid_argument("sgemm: threads must be >= 1, got " + std::to_string(threads));
  const KernelSet* ks = kernels_for(current_kernel(), N);
  if (M == 0 || N == 0) return;
  check_ld("ldc", ldc, N);
  if (C == nullptr) throw std::invalid_argument("sgemm: C is null");
  if (epilogue && ldc != N) {
    throw std::invalid_argument("sgemm: an epilogue needs ldc == N (" + std::to_string(N) + "), got " +
                                std::to_string(ldc));
  }
  if (K == 0) {
    for (int64_t i = 0; i < M; ++i) {
      std::memset(C + i * ldc, 0, static_cast<size_t>(N) * sizeof(float));
      if (epilogue) epilogue(epilogue_ctx, i * N, i * N + N);
    }
    return;
  }
  check_ld("lda", lda, trans_a ? M : K);
  if (A == nullptr) throw std::invalid_argument("sgemm: A is null");
  if (packed) {
    if (packed->K != K || packed->N != N) {
      throw std::invalid_argument("sgemm: packed B is " + std::to_string(packed->K) + "x" +
                                  std::to_string(packed->N) + ", the product needs " + std::to_string(K) + "x" +
                                  std::to_string(N));
    }
    if (packed->nr != ks->nr || std::strcmp(packed->kernel, ks->name) != 0) {
      throw std::invalid_argument(std::string("sgemm: B was packed for kernel ") + packed->kernel +
                                  ", the current kernel is " + ks->name);
    }
  } else {
    check_ld("ldb", ldb, trans_b ? K : N);
    if (B == nullptr) throw std::invalid_argument("sgemm: B is null");
  }
  const Problem P{ks, trans_a, trans_b, M, N, K, A, lda, B, ldb, packed, C, ldc, epilogue, epilogue_ctx};
  const int64_t strips = (M + ks->mr - 1) / ks->mr;
  const int64_t panels = (N + ks->nr - 1) / ks->nr;
  int tm, tn;
  grid_for(*ks, M, N, K, threads, tm, tn);
  const int64_t task_floats = a_scratch_floats() + b_scratch_floats(N, K, packed != nullptr);
  auto task = [&](int64_t t) {
    const int64_t gm = t / tn, gn = t % tn;
    const int64_t s0 = strips * gm / tm, s1 = strips * (gm + 1) / tm;
    const int64_t p0 = panels * gn / tn, p1 = panels * (gn + 1) / tn;
    float* own = scratch ? scratch + t * task_floats : nullptr;
    run_rect(P, s0 * ks->mr, std::min(s1 * ks->mr, M), p0, p1, own);
  };
  const int64_t tasks = int64_t(tm) * tn;
  parallel_for(tasks, static_cast<int>(tasks), 1, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) task(t);
  });
}

void thread_grid(int64_t M, int64_t N, int64_t K, int threads, int& row_groups, int& col_groups) {
  row_groups = col_groups = 1;
  if (M <= 0 || N <= 0 || K <= 0 || threads < 1) return;
  grid_for(*kernels_for(current_kernel(), N), M, N, K, threads, row_groups, col_groups);
}

bool prefer_own(int64_t M, int64_t N, int64_t K, int threads, bool packed) {
  (void)threads;  // the 2-thread crossovers could not be measured apart from load (docs/gemm.md)
  if (!available()) return false;
  // At or below 2^18 multiply-adds (64^3) the fixed cost of a call (kernel choice, scratch,
  // packing) shows: own/OpenBLAS 1.01-1.17x at one thread, packed or not.
  if (saturating_mul(saturating_mul(M, N), K) <= (int64_t(1) << 18)) return false;
  if (packed) return true;  // 0.17-1.06x above that size
  // One row: a gemv, memory-bound, where OpenBLAS's row-streaming gemv beats panels read in
  // place (1x1024x1024: own 3.8x slower unpacked, 0.87x packed).
  return M > 1;
}

const KernelSet* portable_kernels() { return &kPortable; }

}  // namespace gemm
}  // namespace cpu
}  // namespace graphc
