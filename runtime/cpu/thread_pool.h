// thread_pool.h — the CPU kernels' worker pool and parallel_for.
//
// Workers spin (with a pause instruction) for a bounded time after each job before they
// sleep on a condition variable, so back-to-back parallel regions (a plan's steps) hand
// work over in well under a microsecond instead of paying a futex wake-up (tens of us on
// a busy 2-core VM: fc1/add at batch 128 took 97 us at threads=2, docs/benchmarks.md).
// The spin is bounded, and configurable with GRAPHC_SPIN_US (microseconds, read once when
// the pool is created; 0 = sleep at once, the old behaviour), because spinning threads
// compete for cores with everything else: with OpenBLAS's own spinning threads on 2 cores
// unbounded spinning (OpenMP's default) cost 4-20x (docs/benchmarks.md, finding 1).
//
// Properties kept from the sleeping pool: one job at a time (a caller that finds the pool
// busy — another session, or a nested call — runs its chunks itself, in order); the
// caller takes part in its job; a forked child starts with an empty pool; the pool is
// never destroyed (workers may still be asleep or spinning at exit).  A job is a function
// pointer and a context pointer: dispatch allocates nothing.
#pragma once

#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace graphc {
namespace cpu {

// Tells the core this thread is spin-waiting (frees pipeline resources for the sibling
// hyper-thread, lowers power); a plain no-op where no such hint exists.
inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

// Default spin after a job, in microseconds.  Measured on the 2-core dev VM
// (tools/bench_matmul_paths.py, docs/benchmarks.md "Thread pool"): long enough to cover
// the gap between two steps of a plan (a few us) and between two Session.run calls from a
// Python loop (~20-60 us), short enough that an idle session gives its cores back quickly.
constexpr int64_t kDefaultSpinUs = 100;
// Of which the first part spins with pause only (see WorkerPool::spin_until).
constexpr int64_t kPauseNs = 5000;

// GRAPHC_SPIN_US, or the default when unset or unparsable; clamped to [0, 1 s].
inline int64_t spin_us_from_env() {
  const char* s = std::getenv("GRAPHC_SPIN_US");
  if (s == nullptr || *s == '\0') return kDefaultSpinUs;
  char* end = nullptr;
  long long v = std::strtoll(s, &end, 10);
  if (end == s || *end != '\0') return kDefaultSpinUs;
  return std::min<long long>(std::max<long long>(v, 0), 1000000);
}

class WorkerPool {
 public:
  static WorkerPool& get() {
    static WorkerPool* p = [] {
      pthread_atfork(nullptr, nullptr, [] { instance() = new WorkerPool; });  // child: no workers
      return instance() = new WorkerPool;
    }();
    (void)p;
    return *instance();  // never destroyed: workers may still be asleep at exit
  }

  // Calls f(c) for every c in [0, chunks), the caller taking part.  An exception from any
  // chunk stops the chunks not yet started and is rethrown here (the first one).
  template <class F> void run(int chunks, F& f) {
    std::unique_lock<std::mutex> busy(run_mu_, std::try_to_lock);
    if (!busy.owns_lock() || chunks <= 1) {
      for (int c = 0; c < chunks; ++c) f(c);
      return;
    }
    while (static_cast<int>(workers_.size()) < chunks - 1) {
      workers_.emplace_back([this, g = gen_.load()] { work(g); });
      workers_.back().detach();
    }
    dispatch(&trampoline<F>, &f, chunks);
  }

  // Microseconds a worker (and a caller waiting for its job) spins before it sleeps.
  int64_t spin_us() const { return spin_ns_.load(std::memory_order_relaxed) / 1000; }
  // Test and benchmark hook; takes effect from each worker's next wait.
  void set_spin_us(int64_t us) { spin_ns_.store(std::max<int64_t>(us, 0) * 1000, std::memory_order_relaxed); }

 private:
  using JobFn = void (*)(void*, int);
  template <class F> static void trampoline(void* f, int c) { (*static_cast<F*>(f))(c); }

  WorkerPool() : spin_ns_(spin_us_from_env() * 1000) {}

  static WorkerPool*& instance() {
    static WorkerPool* p = nullptr;
    return p;
  }

  // Runs chunks of the current job until none is left; the first exception stops the rest.
  void take(JobFn fn, void* ctx, int chunks) {
    for (int c = next_.fetch_add(1); c < chunks; c = next_.fetch_add(1)) {
      try {
        fn(ctx, c);
      } catch (...) {
        std::lock_guard<std::mutex> lk(err_mu_);
        if (!err_) err_ = std::current_exception();
        next_.store(chunks);
      }
    }
  }

  // Spins until `ready()` or the spin time is over; true when ready.  The first
  // kPauseNs spin with a pause instruction; after that each look is followed by a
  // sched_yield: on an idle machine it returns at once (still ~1 us reaction), on an
  // oversubscribed one it hands the core to a thread that has work — pure pause-spinning
  // there made a batch-1 matmul 5x slower at load 6 on 2 cores (docs/benchmarks.md).
  template <class Ready> bool spin_until(Ready ready) const {
    const int64_t spin_ns = spin_ns_.load(std::memory_order_relaxed);
    if (spin_ns <= 0) return ready();
    const auto t0 = std::chrono::steady_clock::now();
    auto elapsed = [&] {
      return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0).count();
    };
    for (unsigned i = 1;; ++i) {
      if (ready()) return true;
      cpu_relax();
      // The clock costs ~20 ns (vDSO): read it every 64 pauses only.
      if ((i & 63) == 0) {
        const int64_t t = elapsed();
        if (t > spin_ns) return ready();
        if (t > kPauseNs) break;
      }
    }
    for (;;) {
      if (ready()) return true;
      std::this_thread::yield();
      if (elapsed() > spin_ns) return ready();
    }
  }

  void dispatch(JobFn fn, void* ctx, int chunks) {
    const int nworkers = static_cast<int>(workers_.size());
    // No worker reads these now: every worker checked in after the previous job (pending_
    // reached 0) and reads them again only after it sees the new generation (release).
    fn_ = fn;
    ctx_ = ctx;
    chunks_ = chunks;
    err_ = nullptr;
    next_.store(0, std::memory_order_relaxed);
    pending_.store(nworkers, std::memory_order_relaxed);
    gen_.fetch_add(1, std::memory_order_seq_cst);
    // Dekker pair with wait_for_job: a worker bumps sleepers_ before its last look at gen_,
    // so either it sees the new generation or we see it asleep and wake it.  Taking mu_
    // closes the window between its look (under mu_) and its wait.
    if (sleepers_.load(std::memory_order_seq_cst) > 0) {
      { std::lock_guard<std::mutex> lk(mu_); }
      wake_.notify_all();
    }
    take(fn, ctx, chunks);
    // Wait for every worker to check in (also those that found no chunk left).
    auto done = [this] { return pending_.load(std::memory_order_seq_cst) == 0; };
    if (!spin_until(done)) {
      std::unique_lock<std::mutex> lk(mu_);
      caller_waiting_.store(true, std::memory_order_seq_cst);
      done_.wait(lk, done);
      caller_waiting_.store(false, std::memory_order_relaxed);
    }
    if (err_) {
      std::exception_ptr e = err_;
      err_ = nullptr;
      std::rethrow_exception(e);
    }
  }

  uint64_t wait_for_job(uint64_t seen) {
    uint64_t g = seen;
    if (spin_until([&] { return (g = gen_.load(std::memory_order_acquire)) != seen; })) return g;
    std::unique_lock<std::mutex> lk(mu_);
    sleepers_.fetch_add(1, std::memory_order_seq_cst);
    wake_.wait(lk, [&] { return (g = gen_.load(std::memory_order_seq_cst)) != seen; });
    sleepers_.fetch_sub(1, std::memory_order_relaxed);
    return g;
  }

  void work(uint64_t seen) {
    for (;;) {
      seen = wait_for_job(seen);
      take(fn_, ctx_, chunks_);
      if (pending_.fetch_sub(1, std::memory_order_seq_cst) == 1 &&
          caller_waiting_.load(std::memory_order_seq_cst)) {
        std::lock_guard<std::mutex> lk(mu_);
        done_.notify_one();
      }
    }
  }

  std::mutex run_mu_;  // one job at a time
  std::mutex mu_;      // sleeping and waking only
  std::mutex err_mu_;
  std::condition_variable wake_, done_;
  std::vector<std::thread> workers_;
  // The current job (see dispatch for why plain fields are safe).
  JobFn fn_ = nullptr;
  void* ctx_ = nullptr;
  int chunks_ = 0;
  std::exception_ptr err_;
  std::atomic<uint64_t> gen_{0};
  std::atomic<int> next_{0};
  std::atomic<int> pending_{0};
  std::atomic<int> sleepers_{0};
  std::atomic<bool> caller_waiting_{false};
  std::atomic<int64_t> spin_ns_;
};

// Split [0, n) into at most `threads` contiguous chunks of at least `grain` items and
// run f(begin, end) on each.  Chunk boundaries depend on `threads`, so kernels whose
// result would depend on them (reductions) must not use this for their reduce loop.
template <class F> void parallel_for(int64_t n, int threads, int64_t grain, F&& f) {
  if (n <= 0) return;
  int64_t chunks = std::min<int64_t>(threads, (n + grain - 1) / std::max<int64_t>(grain, 1));
  if (chunks <= 1) {
    f(int64_t(0), n);
    return;
  }
  auto chunk = [&](int c) { f(n * c / chunks, n * (c + 1) / chunks); };
  WorkerPool::get().run(static_cast<int>(chunks), chunk);
}

}  // namespace cpu
}  // namespace graphc
