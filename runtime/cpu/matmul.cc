// matmul.cc — op(a) @ op(b) over the last two axes (op = identity or swap, from the
// transpose_a / transpose_b attrs), numpy batch broadcasting; and fused_matmul, the same
// product followed by an elementwise epilogue program (fused_program.h) over it and the
// step's extra inputs.  One kernel builder serves both, so a fused step computes its
// product on exactly the path the unfused matmul would take and its results are
// bit-identical to matmul followed by the unfused ops.
//
// Paths, chosen per shape when the plan is loaded:
//   gemv   float32 with one row or one column: gemv.h's AVX-512 / AVX2 kernels, outputs
//          split over threads when large (OpenBLAS's sgemv is single-threaded and its
//          M == 1 sgemm is several times slower; docs/benchmarks.md, "Matmul paths"); the
//          dot form only when split, OpenBLAS's sgemv matching it on one thread;
//   gemm   float32 otherwise, when gemm.h's own kernel runs on this CPU and gemm::prefer_own
//          says it wins: B packed when it is a constant or a variable, the pack shared by the
//          steps that multiply by it and kept until the executor bumps its version
//          (set_variable, or a step writing it: a training plan's optimizer update);
//   blas   blas.h (OpenBLAS by default; float64, CPUs without AVX2, what the others decline).
// The epilogue runs on each finished range while it is in cache: per thread chunk (gemv),
// per finished block (gemm's callback), or after the call over the whole output (blas).
// GRAPHC_MATMUL_PATH=gemv|gemm|blas forces a path where it applies (tests, benchmarks).
//
// Transposed operands are never copied: the trans flags and leading dims go to the kernels.
#include <climits>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <tuple>

#include "blas.h"
#include "common.h"
#include "gemm.h"
#include "gemv.h"

#if __has_include("fused_program.h")
#include "fused_program.h"
#define GRAPHC_HAVE_FUSED_PROGRAM 1
#endif

namespace graphc {
namespace cpu {
namespace {

// M*N*K below which OpenBLAS runs on one thread.  Not swept: 2^22 keeps every MLP batch-1
// layer (<= 2^20) single-threaded and every batch-128 hidden layer (>= 2^26.6)
// multi-threaded; (128,1024)@(1024,10) (2^20.3) runs single-threaded (docs/benchmarks.md).
constexpr int64_t kSmallWork = int64_t(1) << 22;
// Multiply-adds per thread below which the GEMV path stays on fewer threads.  A hand-off to
// a spinning worker costs ~1 us, which 2^15 multiply-adds would repay on two free cores; but
// the products are memory-bound and on the shared 2-core VM a second thread did not pay for
// the MLP's batch-1 layers (784x1024: 38 us on one thread, 45-55 us split over two, load
// 2.5-3.5; docs/benchmarks.md), so only products of 2^21 multiply-adds and more are split.
constexpr int64_t kGemvWorkPerThread = int64_t(1) << 20;
constexpr int64_t kOverSplit = 4;
// Narrower products stay on OpenBLAS: own GEMM's 32/16-column panels are mostly padding
// there.  One thread, B packed, load ~2.6 (tools, docs/benchmarks.md): (128,1024)@(1024,N)
// OpenBLAS vs own: N=10 61 vs 86 us, N=64 212 vs 256 us, N=96 259 vs 254 us, N=128 344 vs
// 351 us, N=256 695 vs 683 us; (1024,1024)@(1024,64) 1.49 vs 1.86 ms.  (gemm::prefer_own
// does not look at N yet; this belongs there.)
constexpr int64_t kOwnGemmMinN = 96;
// The BLAS path's fixed output blocks (blas_kernel): rows of C per gemm call, outputs per gemv call.
constexpr int64_t kBlasRows = 64;
constexpr int64_t kBlasCols = 1024;
// Those blocks run on graphc's workers, and OpenBLAS allocates a thread's own buffers in its
// first call there: every worker makes that call when it starts (WorkerPool::add_thread_init,
// inside reserve() at prepare time), so no run allocates.
[[maybe_unused]] const bool kBlasWorkersPrepared = WorkerPool::add_thread_init(&blas::prepare_thread);

// What runs after the product, on flat output ranges [b, e) that hold their final p.
// Empty for plain matmul.
struct Epilogue {
  gemm::RangeFn range = nullptr;      // single-threaded, on one finished range
  void* ctx = nullptr;
  std::function<void(int)> whole;     // the whole output on `threads` threads
  std::shared_ptr<void> keep;         // owns ctx
  explicit operator bool() const { return range != nullptr; }
};

// The shape of one matmul step, validated.
struct Shape {
  bool ta = false, tb = false;
  int64_t ar = 0, ac = 0, br = 0, bc = 0;  // stored (rows, cols) of a and b per batch
  int64_t M = 0, N = 0, K = 0;
  int64_t nbatch = 0;
  std::vector<int64_t> aoff, boff;  // element offsets of each batch's A and B
  bool b_single = false;            // every batch uses the same B matrix
};

// Validates a step's a = in[0], b = in[1] and out[0] like matmul; empty output: nbatch = 0.
Shape matmul_shape(const KernelArgs& args, bool ta, bool tb) {
  const TensorRef &a = args.in[0], &b = args.in[1], &y = args.out[0];
  expect_dtype(args, b, a.dtype, "input 1");
  expect_dtype(args, y, a.dtype, "output");
  if (a.dims.size() < 2 || b.dims.size() < 2) {
    args.fail("inputs must have rank >= 2, got " + format_dims(a.dims) + " and " + format_dims(b.dims));
  }
  Shape s;
  s.ta = ta;
  s.tb = tb;
  s.ar = a.dims[a.dims.size() - 2];
  s.ac = a.dims.back();
  s.br = b.dims[b.dims.size() - 2];
  s.bc = b.dims.back();
  s.M = ta ? s.ac : s.ar;
  s.K = ta ? s.ar : s.ac;
  const int64_t K2 = tb ? s.bc : s.br;
  s.N = tb ? s.br : s.bc;
  if (s.K != K2) {
    args.fail("expects input 1 of shape " + std::string(tb ? "(..., N, " : "(..., ") + std::to_string(s.K) +
              (tb ? ")" : ", N)") + " (transpose_a=" + (ta ? "true" : "false") + ", transpose_b=" +
              (tb ? "true" : "false") + "), got " + format_dims(b.dims));
  }
  if (s.ar > INT_MAX || s.ac > INT_MAX || s.br > INT_MAX || s.bc > INT_MAX) {
    args.fail("matrix dims exceed the BLAS int range: " + format_dims(a.dims) + " and " + format_dims(b.dims));
  }
  std::vector<int64_t> abatch(a.dims.begin(), a.dims.end() - 2), bbatch(b.dims.begin(), b.dims.end() - 2);
  std::vector<int64_t> batch = broadcast_dims(args, {abatch, bbatch}, "batch dims of the inputs");
  std::vector<int64_t> want = batch;
  want.push_back(s.M);
  want.push_back(s.N);
  expect_dims(args, y, want, "output");
  // An empty output: nothing to write (and the batch offsets below would be products of
  // possibly huge dims).
  if (numel_of(y) == 0) return s;
  auto loop = StridedLoop<2>::broadcast(batch, {abatch, bbatch});
  s.nbatch = numel_of(batch);
  s.aoff.reserve(s.nbatch);
  s.boff.reserve(s.nbatch);
  loop.run(1, 1, [&](int64_t, const std::array<int64_t, 2>& off, int64_t n, const std::array<int64_t, 2>& st) {
    for (int64_t i = 0; i < n; ++i) {
      s.aoff.push_back((off[0] + i * st[0]) * s.M * s.K);
      s.boff.push_back((off[1] + i * st[1]) * s.K * s.N);
    }
  });
  s.b_single = true;
  for (int64_t o : s.boff) s.b_single = s.b_single && o == s.boff[0];
  return s;
}

enum class Path { Gemv, Gemm, Blas };

std::string forced_path() {
  const char* s = std::getenv("GRAPHC_MATMUL_PATH");
  return s != nullptr ? std::string(s) : std::string();
}

// The float64 kernel: OpenBLAS, then the epilogue over the whole output.
template <class T>
Kernel blas_kernel(const Shape& s, const T* pa, const T* pb, T* py, int threads_arg, Epilogue ep) {
  const int64_t M = s.M, N = s.N, K = s.K;
  const int threads = saturating_mul(saturating_mul(M, N), K) < kSmallWork ? 1 : threads_arg;
  const int lda = static_cast<int>(std::max<int64_t>(s.ac, 1));
  const int ldb = static_cast<int>(std::max<int64_t>(s.bc, 1));
  const int m = static_cast<int>(M), n = static_cast<int>(N), k = static_cast<int>(K);
  // 0: gemm; 1: one row (y^T = op(B)^T x, x = the row of op(A), contiguous whether or not
  // transposed since M == 1); 2: one column (y = op(A) x, x = the column of op(B)).
  const int mode = M == 1 ? 1 : (N == 1 ? 2 : 0);
  const size_t ybytes = static_cast<size_t>(s.nbatch * M * N) * sizeof(T);
  const bool ta = s.ta, tb = s.tb;
  if (K > 0) blas::prepare_thread();  // the library's per-thread buffers, now rather than in a run
  const int64_t nbatch = s.nbatch;
  auto aoff = s.aoff, boff = s.boff;
  // OpenBLAS's own threading changes its bits with the thread count on some CPUs (seen: sgemm
  // 130x300x129 on a Zen AVX2 VM with scipy-openblas32 0.3.34).  So the library always runs on
  // one thread, over a partition of the outputs that does not depend on `threads`: blocks of
  // kBlasRows rows of C (gemm, one column) or kBlasCols outputs (one row), each a call of its own;
  // the blocks are spread over graphc's workers.  Same bits at every thread count.
  const int64_t L = mode == 1 ? N : M;
  const int64_t block = mode == 0 ? kBlasRows : kBlasCols;
  const int64_t nblocks = K > 0 ? (L + block - 1) / block : 0;
  return [=]() {
    if (K == 0 || mode != 0) {
      // K == 0: the result is zeros.  gemv: zero y first so that beta = 0 never meets
      // garbage (some OpenBLAS versions scale y by beta, propagating NaN).
      std::memset(py, 0, ybytes);
    }
    if (K > 0) {
      // OpenBLAS keeps one global thread count; one thread for every call (above).
      blas::set_threads(1);
      auto task = [&](int64_t t) {
        const int64_t i = t / nblocks, b0 = (t % nblocks) * block;
        const int len = static_cast<int>(std::min(block, L - b0));
        const T* ai = pa + aoff[i];
        const T* bi = pb + boff[i];
        T* yi = py + i * M * N;
        if (mode == 1) {
          // y^T = x^T op(B), outputs [b0, b0 + len): B stored (K, N): columns b0..; stored
          // (N, K) (tb): rows b0..
          if (tb) blas::gemv(false, len, k, bi + b0 * K, std::max(k, 1), ai, yi + b0);
          else blas::gemv(true, k, len, bi + b0, std::max(n, 1), ai, yi + b0);
        } else if (mode == 2) {
          // y = op(A) x, rows [b0, b0 + len): A stored (M, K): rows b0..; stored (K, M) (ta):
          // columns b0..
          if (ta) blas::gemv(true, k, len, ai + b0, std::max(m, 1), bi, yi + b0);
          else blas::gemv(false, len, k, ai + b0 * K, std::max(k, 1), bi, yi + b0);
        } else {
          // rows [b0, b0 + len) of C = op(A) op(B): op(A)'s rows b0.. start at A + b0 * lda
          // (stored (M, K)) or A + b0 (ta: stored (K, M)).
          blas::gemm(ta, tb, len, n, k, ta ? ai + b0 : ai + b0 * lda, lda, bi, ldb, yi + b0 * N, n);
        }
      };
      parallel_for(nbatch * nblocks, threads, 1, [&](int64_t b, int64_t e) {
        for (int64_t t = b; t < e; ++t) task(t);
      });
    }
    if (ep) ep.whole(threads_arg);
  };
}

// float32 with one row or one column: gemv.h's kernels, outputs split over threads.
Kernel gemv_kernel(const gemv::Kernels* kern, const Shape& s, const float* pa, const float* pb, float* py,
                   int threads_arg, Epilogue ep) {
  // Per batch: L outputs, each a K-long product of x with a row (dot) or column (axpy) of W.
  //   M == 1 (N == 1 too): x = the row of op(A) (contiguous), W = B: dot form when B's rows
  //     are the outputs (tb, or N == 1 where B is one contiguous K-vector), else axpy over
  //     B stored (K, N);
  //   N == 1: x = the column of op(B) (contiguous), W = A: dot over A stored (M, K), or axpy
  //     over A stored (K, M) (ta).
  const int64_t M = s.M, N = s.N, K = s.K;
  const bool row = M == 1;
  const int64_t L = row ? N : M;
  const bool dot = row ? (s.tb || N == 1) : !s.ta;
  const int64_t ldw = dot ? std::max<int64_t>(K, 1) : L;
  const int64_t total = s.nbatch * L;
  // Chunks of whole 16-output units (so the vector blocks stay full), at least
  // kGemvWorkPerThread multiply-adds and 64 outputs each; kOverSplit chunks per thread,
  // claimed dynamically, so that a thread slowed down by a busy core takes fewer of them
  // (on the shared 2-core VM the second core is often half taken: an even split then runs
  // at the slow core's pace).
  const int64_t units = (total + 15) / 16;
  const int64_t by_work = std::max<int64_t>(1, saturating_mul(total, std::max<int64_t>(K, 1)) / kGemvWorkPerThread);
  const int threads = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>({threads_arg, units, by_work})));
  const int chunks = threads <= 1 ? 1 : static_cast<int>(std::min<int64_t>({int64_t(threads) * kOverSplit,
                                                                              std::max<int64_t>(units / 4, threads),
                                                                              by_work}));
  auto aoff = s.aoff, boff = s.boff;
  return [=]() {
    auto run_range = [&](int64_t b, int64_t e) {
      // Flat outputs [b, e) may span batches: one kernel call per batch segment.
      while (b < e) {
        const int64_t i = b / L, j0 = b % L, j1 = std::min<int64_t>(L, j0 + (e - b));
        const float* x = row ? pa + aoff[i] : pb + boff[i];
        const float* W = row ? pb + boff[i] : pa + aoff[i];
        float* y = py + i * L;
        if (K == 0) {
          std::memset(y + j0, 0, static_cast<size_t>(j1 - j0) * sizeof(float));
        } else if (dot) {
          kern->dot(K, x, W, ldw, y, j0, j1);
        } else {
          kern->axpy(K, x, W, ldw, y, j0, j1);
        }
        if (ep) ep.range(ep.ctx, i * L + j0, i * L + j1);
        b += j1 - j0;
      }
    };
    if (chunks <= 1) {
      run_range(0, total);
      return;
    }
    // Unit boundaries depend on the thread count; the values do not (gemv.h).
    auto chunk = [&](int c) {
      const int64_t ub = units * c / chunks, ue = units * (c + 1) / chunks;
      run_range(ub * 16, std::min<int64_t>(total, ue * 16));
    };
    WorkerPool::get().run(chunks, chunk, threads);
  };
}

// B packed for gemm.h, shared by every gemm step that multiplies by the same B the same way
// (same buffer, version counter, trans_b, K, N, ldb), rebuilt when its version (or the gemm
// kernel) changed.  The executor bumps the version when B is set from outside and, for a
// variable the plan writes, after every step that writes it (KernelArgs::in_version): an
// unrolled LSTM's 32 steps h @ W_hh^T then share one pack per run instead of repacking W_hh
// at each step (docs/gemm.md, "Packed weights shared between steps").
//
// Whether packing pays: always once the pack is reused (several steps, or several runs of an
// unchanged weight); a weight that one step multiplies by and the plan rewrites every run
// (an MLP layer in training) would be packed, single-threaded, for one use: once a pack went
// stale after a single use, such a lone step stays on the unpacked path (whose per-thread
// packing is split over the threads, or which reads B in place).  The values are the same
// either way: packing never changes gemm.h's summation chain.
//
// The pack's memory is allocated when the first step registers (prepare time) and every
// repack writes it in place, so a run allocates nothing (docs/runtime.md, "Allocation").  In
// place is safe: the entry's version pointer belongs to one executor state, whose runs are
// serialised (KernelArgs::in_version), so no step reads the pack while another repacks it.
struct SharedPack {
  std::mutex mu;
  const uint64_t* version = nullptr;
  int users = 0;                 // steps that registered it (all of them at plan load)
  uint64_t packed_version = 0;
  int64_t uses = 0;              // calls served by the current pack
  uint64_t seen_version = 0;     // the version at the last call
  bool unpacked = false;         // a lone step's B that changes every call: not packed
  bool valid = false;            // `pack` holds B as of packed_version
  std::shared_ptr<gemm::PackedB> pack;  // storage for any kernel (gemm::alloc_packed_b)
  // The pack to use now, or null for the unpacked path.
  const gemm::PackedB* get(bool tb, const float* B, int64_t ldb) {
    std::lock_guard<std::mutex> lock(mu);
    const uint64_t v = *version, last_seen = seen_version;
    seen_version = v;
    const bool fresh = valid && v == packed_version && std::strcmp(pack->kernel, gemm::kernel_name()) == 0;
    if (!fresh) {
      // A lone step whose last pack served one call and whose B changed again since its last
      // call: rewritten every run, unpacked.  Packed again once B stays unchanged from one
      // call to the next.
      if (users == 1 && (unpacked || (valid && uses <= 1)) && v != last_seen) {
        valid = false;
        unpacked = true;
        return nullptr;
      }
      gemm::repack_b(*pack, tb, B, ldb);
      valid = true;
      packed_version = v;
      unpacked = false;
      uses = 0;
    }
    ++uses;
    return pack.get();
  }
};

struct PackKey {
  const uint64_t* version;
  const float* B;
  bool tb;
  int64_t K, N, ldb;
  bool operator<(const PackKey& o) const {
    return std::tie(version, B, tb, K, N, ldb) < std::tie(o.version, o.B, o.tb, o.K, o.N, o.ldb);
  }
};

// The entries of live kernels.  The version pointer in the key is unique to one executor's
// value while it lives, and versions are never reused (executor.cc), so an entry left by a
// destroyed executor whose memory was reused can never look fresh.
std::shared_ptr<SharedPack> shared_pack(const PackKey& key) {
  static std::mutex mu;
  static std::map<PackKey, std::weak_ptr<SharedPack>> entries;
  std::lock_guard<std::mutex> lock(mu);
  for (auto it = entries.begin(); it != entries.end();) {
    it = it->second.expired() ? entries.erase(it) : std::next(it);
  }
  std::shared_ptr<SharedPack> sp = entries[key].lock();
  if (!sp) {
    sp = std::make_shared<SharedPack>();
    sp->version = key.version;
    sp->pack = gemm::alloc_packed_b(key.K, key.N);
    entries[key] = sp;
  }
  std::lock_guard<std::mutex> entry_lock(sp->mu);
  ++sp->users;
  return sp;
}

// The epilogue of one batch matrix: gemm reports ranges relative to its C.
struct BatchRange {
  const Epilogue* ep;
  int64_t base;
  static void call(void* c, int64_t b, int64_t e) {
    auto* r = static_cast<BatchRange*>(c);
    r->ep->range(r->ep->ctx, r->base + b, r->base + e);
  }
};

// float32 products with M, N > 1 on gemm.h's kernel.
Kernel gemm_kernel(const Shape& s, const float* pa, const float* pb, float* py, int threads, Epilogue ep,
                   const uint64_t* b_version) {
  const int64_t M = s.M, N = s.N, K = s.K;
  const int64_t lda = std::max<int64_t>(s.ac, 1), ldb = std::max<int64_t>(s.bc, 1);
  const bool ta = s.ta, tb = s.tb;
  const int64_t nbatch = s.nbatch;
  auto aoff = s.aoff, boff = s.boff;
  // Pack only a B shared by every batch whose changes the executor tracks (a constant or a
  // variable); K == 0 has nothing to pack.
  std::shared_ptr<SharedPack> cache;
  if (b_version != nullptr && s.b_single && K > 0) cache = shared_pack({b_version, pb + boff[0], tb, K, N, ldb});
  // Enough for the unpacked path, which needs more than the packed one.
  const gemm::Scratch scratch(gemm::scratch_floats(M, N, K, threads, false));
  return [=]() {
    const gemm::PackedB* packed = cache ? cache->get(tb, pb + boff[0], ldb) : nullptr;
    for (int64_t i = 0; i < nbatch; ++i) {
      BatchRange r{&ep, i * M * N};
      gemm::sgemm(ta, tb, M, N, K, pa + aoff[i], lda, packed ? nullptr : pb + boff[i], packed ? 0 : ldb, packed,
                  py + i * M * N, N, threads, ep ? &BatchRange::call : nullptr, &r, scratch.data());
    }
  };
}

template <class T>
Kernel product_kernel(const KernelArgs& args, bool ta, bool tb, Epilogue ep) {
  const Shape s = matmul_shape(args, ta, tb);
  if (s.nbatch == 0) return no_op_kernel();
  const T* pa = args.in[0].as<const T>();
  const T* pb = args.in[1].as<const T>();
  T* py = args.out[0].as<T>();
  const int threads = args.ctx.threads;
  if constexpr (std::is_same<T, float>::value) {
    const std::string force = forced_path();
    const bool vector = s.M == 1 || s.N == 1;
    if (vector && force != "blas" && force != "gemm") {
      // The dot form (x @ W^T, W @ x) was not faster than OpenBLAS's sgemv on one thread
      // (1024x1024: 56 vs 51 us in a plan, 48-71 vs 40-66 us in a C++ driver; both are
      // memory-bound): it runs here only when it is split over threads (or forced).
      const bool dot = s.M == 1 ? (s.tb || s.N == 1) : !s.ta;
      const int64_t work = saturating_mul(s.nbatch * (s.M == 1 ? s.N : s.M), s.K);
      const bool split = threads > 1 && work >= 2 * kGemvWorkPerThread;
      const gemv::Kernels* kern = gemv::selected();
      if (kern != nullptr && (force == "gemv" || !dot || split)) {
        return gemv_kernel(kern, s, pa, pb, py, threads, ep);
      }
    }
    // B a constant or variable (its changes tracked, so it can be packed and the pack kept).
    // Only M == 1 products get another answer from prefer_own with packed = true, and those
    // took the branch above: whether a variable is written by the plan changes no path.
    const bool read_only_b = args.input_version(1) != nullptr && s.b_single;
    // A narrow product big enough for OpenBLAS to thread (>= kSmallWork) takes the own GEMM too,
    // whatever `threads` is (the path must not depend on it: same bits at any thread count).
    // After a threaded call OpenBLAS's workers spin (blas_thread_server) for ~2^28 cycles,
    // taking a core from the worker pool's steps that follow: in the LSTM LM training step at 2
    // threads (its N = 64 input-gradient GEMMs) that was 19% of the samples (perf) and the step
    // 199 -> 131-141 ms median without it (load ~3.5 on 2 cores); 123 -> 115 ms at one thread.
    const bool wide = s.N >= kOwnGemmMinN || saturating_mul(saturating_mul(s.M, s.N), s.K) >= kSmallWork;
    const bool own = !vector && wide && gemm::prefer_own(s.M, s.N, s.K, threads, read_only_b);
    if (force == "gemm" || (force != "blas" && own)) {
      return gemm_kernel(s, pa, pb, py, threads, ep, args.input_version(1));
    }
  }
  return blas_kernel<T>(s, pa, pb, py, threads, std::move(ep));
}

template <class T> Kernel matmul_kernel(const KernelArgs& args) {
  args.expect_arity(2, 1);
  const attrs::Matmul attr(args);
  return product_kernel<T>(args, attr.transpose_a, attr.transpose_b, Epilogue{});
}

#ifdef GRAPHC_HAVE_FUSED_PROGRAM
template <class T> Kernel fused_matmul_kernel(const KernelArgs& args) {
  if (args.in.size() < 2 || args.out.size() != 1) {
    args.fail("expects at least 2 inputs and 1 output, got " + std::to_string(args.in.size()) + " and " +
              std::to_string(args.out.size()));
  }
  const attrs::FusedMatmul attr(args);
  // The program reads "p" from the output buffer (the product written there first) and
  // inputs 2.. broadcast to the output.
  auto prog = std::make_shared<FusedProgram>(args, attr.program, 2, true);
  Epilogue ep;
  ep.range = [](void* c, int64_t b, int64_t e) { static_cast<const FusedProgram*>(c)->run_range(b, e); };
  ep.ctx = prog.get();
  ep.whole = [p = prog.get()](int threads) { p->run(threads); };
  ep.keep = prog;
  return product_kernel<T>(args, attr.transpose_a, attr.transpose_b, std::move(ep));
}
#endif

}  // namespace
}  // namespace cpu

void register_matmul_kernels(KernelRegistry& r) {
  cpu::add_typed<cpu::FloatTypes>(r, "matmul", [](auto tag, const KernelArgs& a) {
    return cpu::matmul_kernel<typename decltype(tag)::type>(a);
  });
#ifdef GRAPHC_HAVE_FUSED_PROGRAM
  cpu::add_typed<cpu::FloatTypes>(r, "fused_matmul", [](auto tag, const KernelArgs& a) {
    return cpu::fused_matmul_kernel<typename decltype(tag)::type>(a);
  });
#endif
}

}  // namespace graphc
