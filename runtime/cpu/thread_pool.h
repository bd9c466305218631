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
// pointer and a context pointer: dispatch allocates nothing, and once reserve() has started
// the workers a run() allocates nothing at all (docs/runtime.md, "Allocation").
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

  // Calls f(c) for every c in [0, chunks), the caller taking part, on at most `threads`
  // threads (0: one per chunk).  Chunks are claimed in order as threads get free, so more
  // chunks than threads balance uneven progress.  An exception from any chunk stops the
  // chunks not yet started and is rethrown here (the first one).
  template <class F> void run(int chunks, F& f, int threads = 0) {
    const int team = threads > 0 ? std::min(threads, chunks) : chunks;
    std::unique_lock<std::mutex> busy(run_mu_, std::try_to_lock);
    if (!busy.owns_lock() || team <= 1 || chunks > kMaxChunks) {
      for (int c = 0; c < chunks; ++c) f(c);
      return;
    }
    slots_.store(team - 1, std::memory_order_relaxed);  // published by dispatch's release
    // A team larger than reserve() prepared for starts its missing workers now (this
    // allocates: kernel factories reserve theirs, see reserve()).
    while (static_cast<int>(workers_.size()) < team - 1) start_worker();
    dispatch(&trampoline<F>, &f, chunks);
  }

  // Starts worker threads until the pool has at least `workers`, so that run() with a team
  // of up to workers + 1 threads (the caller takes part) creates no thread and allocates
  // nothing.  Kernel factories call it with their step's threads - 1 (common.h add_kernel),
  // so an Executor or an AOT context has its workers before its first run.  Waits for a job
  // in progress; negative or 0: nothing to do.
  void reserve(int workers) {
    if (workers <= 0) return;
    std::lock_guard<std::mutex> busy(run_mu_);
    workers = std::min(workers, kMaxChunks);
    while (static_cast<int>(workers_.size()) < workers) start_worker();
    // The new workers' thread_init functions (their allocations) happen here, not in a run.
    while (ready_.load(std::memory_order_acquire) < static_cast<int>(workers_.size())) std::this_thread::yield();
  }

  // A function every worker thread runs once when it starts, before its first job: a
  // library's per-thread setup that would otherwise allocate inside a run (matmul.cc adds
  // blas::prepare_thread: OpenBLAS allocates a thread's buffers in its first call there, and
  // the BLAS path spreads its calls over the workers).  Added at static initialisation, before
  // any worker starts; at most kMaxThreadInits, repeats ignored.  Must not throw.
  using ThreadInit = void (*)();
  static bool add_thread_init(ThreadInit fn) {
    std::lock_guard<std::mutex> lock(init_mu());
    const int n = init_count().load(std::memory_order_relaxed);
    for (int i = 0; i < n; ++i) {
      if (inits()[i] == fn) return true;
    }
    if (n >= kMaxThreadInits) return false;
    inits()[n] = fn;
    init_count().store(n + 1, std::memory_order_release);
    return true;
  }
  // Worker threads started so far (tests).
  int workers() {
    std::lock_guard<std::mutex> busy(run_mu_);
    return static_cast<int>(workers_.size());
  }

  // Microseconds a worker (and a caller waiting for its job) spins before it sleeps.
  int64_t spin_us() const { return spin_ns_.load(std::memory_order_relaxed) / 1000; }
  // Test and benchmark hook; takes effect from each worker's next wait.
  void set_spin_us(int64_t us) { spin_ns_.store(std::max<int64_t>(us, 0) * 1000, std::memory_order_relaxed); }

 private:
  using JobFn = void (*)(void*, int);
  template <class F> static void trampoline(void* f, int c) { (*static_cast<F*>(f))(c); }

  // A job's chunks are claimed from one 64-bit word: generation (32 bits) | chunks (16) |
  // next chunk (16).  A worker that wakes late for a finished job fails its claim (the
  // generation or the count moved on), so the caller waits for the chunks to be done, not
  // for every worker to check in: with a descheduled worker (an oversubscribed machine)
  // the caller simply runs the remaining chunks itself.
  static constexpr int kMaxChunks = 0xFFFF;
  static uint64_t claim_word(uint64_t gen, uint64_t chunks, uint64_t next) {
    return (gen << 32) | (chunks << 16) | next;
  }

  WorkerPool() : spin_ns_(spin_us_from_env() * 1000) {}

  // Under run_mu_.  A new worker waits for the first job after the current generation.
  void start_worker() {
    workers_.emplace_back([this, g = gen_.load()] {
      run_thread_inits();
      ready_.fetch_add(1, std::memory_order_release);
      work(g);
    });
    workers_.back().detach();
  }

  static constexpr int kMaxThreadInits = 8;
  static std::mutex& init_mu() {
    static std::mutex mu;
    return mu;
  }
  static ThreadInit* inits() {
    static ThreadInit fns[kMaxThreadInits] = {};
    return fns;
  }
  static std::atomic<int>& init_count() {
    static std::atomic<int> n{0};
    return n;
  }
  static void run_thread_inits() {
    const int n = init_count().load(std::memory_order_acquire);
    for (int i = 0; i < n; ++i) {
      try {
        inits()[i]();
      } catch (...) {
      }
    }
  }

  static WorkerPool*& instance() {
    static WorkerPool* p = nullptr;
    return p;
  }

  // Runs chunks of job `gen` while any is left.  fn and ctx were read after seeing `gen`;
  // a successful claim proves the job was still unfinished, so they were still its own
  // (a caller rewrites them only after every chunk of the previous job is done).
  void take(uint32_t gen, JobFn fn, void* ctx) {
    uint64_t c = claim_.load(std::memory_order_acquire);
    for (;;) {
      const uint32_t cgen = static_cast<uint32_t>(c >> 32);
      const int chunks = static_cast<int>((c >> 16) & 0xFFFF), next = static_cast<int>(c & 0xFFFF);
      if (cgen != gen || next >= chunks) return;
      if (!claim_.compare_exchange_weak(c, c + 1, std::memory_order_acq_rel, std::memory_order_acquire)) continue;
      int finished = 1;
      try {
        fn(ctx, next);
      } catch (...) {
        {
          std::lock_guard<std::mutex> lk(err_mu_);
          if (!err_) err_ = std::current_exception();
        }
        // Claim every chunk not yet started and count it as done.
        uint64_t cur = claim_.load(std::memory_order_acquire);
        while (static_cast<uint32_t>(cur >> 32) == gen && static_cast<int>(cur & 0xFFFF) < chunks) {
          const uint64_t stop = claim_word(gen, chunks, chunks);
          if (claim_.compare_exchange_weak(cur, stop, std::memory_order_acq_rel, std::memory_order_acquire)) {
            finished += chunks - static_cast<int>(cur & 0xFFFF);
            break;
          }
        }
      }
      if (done_.fetch_add(finished, std::memory_order_seq_cst) + finished == chunks &&
          caller_waiting_.load(std::memory_order_seq_cst)) {
        std::lock_guard<std::mutex> lk(mu_);
        done_cv_.notify_one();
      }
      c = claim_.load(std::memory_order_acquire);
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
    // Every chunk of the previous job is done: no worker can still claim one, so the job's
    // fields are free to rewrite (workers read them only after seeing the new generation).
    const uint32_t gen = static_cast<uint32_t>(gen_.load(std::memory_order_relaxed)) + 1;
    fn_.store(fn, std::memory_order_relaxed);
    ctx_.store(ctx, std::memory_order_relaxed);
    err_ = nullptr;
    done_.store(0, std::memory_order_relaxed);
    claim_.store(claim_word(gen, static_cast<uint64_t>(chunks), 0), std::memory_order_release);
    gen_.store(gen, std::memory_order_seq_cst);
    // Dekker pair with wait_for_job: a worker bumps sleepers_ before its last look at gen_,
    // so either it sees the new generation or we see it asleep and wake it.  Taking mu_
    // closes the window between its look (under mu_) and its wait.
    if (sleepers_.load(std::memory_order_seq_cst) > 0) {
      { std::lock_guard<std::mutex> lk(mu_); }
      wake_.notify_all();
    }
    take(gen, fn, ctx);
    auto done = [&] { return done_.load(std::memory_order_seq_cst) == chunks; };
    if (!spin_until(done)) {
      std::unique_lock<std::mutex> lk(mu_);
      caller_waiting_.store(true, std::memory_order_seq_cst);
      done_cv_.wait(lk, done);
      caller_waiting_.store(false, std::memory_order_relaxed);
    }
    if (err_) {
      std::exception_ptr e = err_;
      err_ = nullptr;
      std::rethrow_exception(e);
    }
  }

  uint32_t wait_for_job(uint32_t seen) {
    uint32_t g = seen;
    auto moved = [&] { return (g = gen_.load(std::memory_order_seq_cst)) != seen; };
    if (spin_until(moved)) return g;
    std::unique_lock<std::mutex> lk(mu_);
    sleepers_.fetch_add(1, std::memory_order_seq_cst);
    wake_.wait(lk, moved);
    sleepers_.fetch_sub(1, std::memory_order_relaxed);
    return g;
  }

  void work(uint32_t seen) {
    for (;;) {
      seen = wait_for_job(seen);
      // A worker beyond the job's team stays out.  (One that wakes late may take a slot of
      // the next job: that job then runs on one thread fewer, with the same results.)
      if (slots_.fetch_sub(1, std::memory_order_acq_rel) <= 0) continue;
      take(seen, fn_.load(std::memory_order_relaxed), ctx_.load(std::memory_order_relaxed));
    }
  }

  std::mutex run_mu_;  // one job at a time
  std::mutex mu_;      // sleeping and waking only
  std::mutex err_mu_;
  std::condition_variable wake_, done_cv_;
  std::vector<std::thread> workers_;
  // The current job (see take() for why relaxed loads of fn_ / ctx_ are enough).
  std::atomic<JobFn> fn_{nullptr};
  std::atomic<void*> ctx_{nullptr};
  std::exception_ptr err_;  // under err_mu_ while the job runs; read after it is done
  std::atomic<uint32_t> gen_{0};
  std::atomic<uint64_t> claim_{0};
  std::atomic<int> done_{0};
  std::atomic<int> slots_{0};  // workers that may still join the current job
  std::atomic<int> sleepers_{0};
  std::atomic<bool> caller_waiting_{false};
  std::atomic<int64_t> spin_ns_;
  std::atomic<int> ready_{0};  // workers that ran their thread_init functions
};

// The chunks parallel_for(n, threads, grain, f) splits [0, n) into (0 for n <= 0).
inline int64_t parallel_chunks(int64_t n, int threads, int64_t grain) {
  if (n <= 0) return 0;
  return std::max<int64_t>(1, std::min<int64_t>(threads, (n + grain - 1) / std::max<int64_t>(grain, 1)));
}

// Split [0, n) into at most `threads` contiguous chunks of at least `grain` items and
// run f(begin, end, chunk) on each, chunk < parallel_chunks(n, threads, grain) <= threads: the
// index of per-chunk scratch a kernel allocated when it was prepared (KernelBuffer, common.h).
// Chunk boundaries depend on `threads`, so kernels whose result would depend on them
// (reductions) must not use this for their reduce loop.
template <class F> void parallel_for_chunks(int64_t n, int threads, int64_t grain, F&& f) {
  const int64_t chunks = parallel_chunks(n, threads, grain);
  if (chunks == 0) return;
  if (chunks == 1) {
    f(int64_t(0), n, int64_t(0));
    return;
  }
  auto chunk = [&](int c) { f(n * c / chunks, n * (c + 1) / chunks, int64_t(c)); };
  WorkerPool::get().run(static_cast<int>(chunks), chunk);
}

// parallel_for_chunks without the chunk index: f(begin, end).
template <class F> void parallel_for(int64_t n, int threads, int64_t grain, F&& f) {
  parallel_for_chunks(n, threads, grain, [&](int64_t b, int64_t e, int64_t) { f(b, e); });
}

}  // namespace cpu
}  // namespace graphc
