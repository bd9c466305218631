// mpi_comm.cc — see mpi_comm.h.
#include "mpi_comm.h"

#include <mpi.h>
#include <sched.h>
#include <signal.h>
#include <time.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <cmath>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <new>
#include <thread>
#include <unordered_map>
#include <vector>

namespace graphc {
namespace mpi {

void built_vendor(std::string* name, int* major, int* minor, int* micro) {
  *major = *minor = *micro = 0;
#if defined(I_MPI_VERSION)
  *name = "Intel MPI";
  std::sscanf(I_MPI_VERSION, "%d.%d.%d", major, minor, micro);
#elif defined(MVAPICH2_VERSION)
  *name = "MVAPICH2";
  std::sscanf(MVAPICH2_VERSION, "%d.%d.%d", major, minor, micro);
#elif defined(MVAPICH_VERSION)
  *name = "MVAPICH";
  std::sscanf(MVAPICH_VERSION, "%d.%d.%d", major, minor, micro);
#elif defined(OMPI_MAJOR_VERSION)
  *name = "Open MPI";
  *major = OMPI_MAJOR_VERSION;
  *minor = OMPI_MINOR_VERSION;
  *micro = OMPI_RELEASE_VERSION;
#elif defined(MPICH_VERSION)
  *name = "MPICH";
  std::sscanf(MPICH_VERSION, "%d.%d.%d", major, minor, micro);
#else
  *name = "unknown";
  *major = MPI_VERSION;
  *minor = MPI_SUBVERSION;
#endif
}

namespace {

// SIGTERM while a wait blocks (mpirun tearing the job down after a rank died): the wait ends
// with GRAPHC_COMM_ABORTED instead of the process dying mid-collective without a word.
volatile sig_atomic_t g_sigterm = 0;
std::atomic<int> g_in_wait{0};
struct sigaction g_prev_sigterm;
std::atomic<bool> g_handler_installed{false};

extern "C" void on_sigterm(int sig) {
  g_sigterm = 1;
  if (g_in_wait.load() == 0) {
    // Not in a collective: SIGTERM does what it did before (it is blocked in this handler, so
    // the re-raised one arrives once the handler returns, under the restored disposition).
    sigaction(sig, &g_prev_sigterm, nullptr);
    raise(sig);
  }
}

struct Slot {
  std::vector<MPI_Request> reqs;  // pending requests of this slot's collective
  void* data = nullptr;
  uint64_t count = 0;
  int dtype = 0;
  bool active = false;
  // Deterministic mode: every rank's chunk of this rank, then summed in rank order.
  std::vector<unsigned char> scratch;
};

// The sum mode's reductions run on a worker thread as blocking MPI_Allreduce calls on a second
// duplicate of the communicator (when MPI provides MPI_THREAD_MULTIPLE): Open MPI's blocking
// allreduce uses its tuned algorithms (about twice as fast as the non-blocking schedule for
// 16 MiB here), and the worker makes progress while the executor computes.  The jobs run in
// start order, which every rank shares (identical plans); the wait blocks on a condition
// variable in slices, so the timeout and SIGTERM still end it.
struct Job {
  int slot;
  void* data;
  uint64_t count;
  int dtype;
};

struct Worker {
  MPI_Comm comm = MPI_COMM_NULL;
  std::thread thread;
  std::mutex mutex;
  std::condition_variable wake, done;
  std::deque<Job> queue;
  std::unordered_map<int, int> finished;  // slot -> MPI return code of its last job
  bool stop = false;
};

struct State {
  graphc_comm c;
  MPI_Comm comm = MPI_COMM_NULL;
  double timeout_s = 60.0;
  int sticky_code = GRAPHC_COMM_OK;
  std::string sticky;
  bool pending = false;  // a request left behind by a failure: never free the communicator then
  std::unordered_map<int, Slot> slots;
  std::mutex mutex;
  std::unique_ptr<Worker> worker;  // null: MPI_Iallreduce + MPI_Testall (deterministic, no MULTIPLE)
};

State* state(void* self) { return static_cast<State*>(self); }

// MPI counts are int: a buffer of more than INT_MAX elements goes as several requests.
constexpr uint64_t kMaxPiece = uint64_t(1) << 30;

size_t dtype_bytes(int dtype) {
  switch (dtype) {
    case 1: case 3: return 4;
    case 2: case 4: return 8;
    default: return 0;
  }
}

const char* dtype_label(int dtype) {
  switch (dtype) {
    case 1: return "float32";
    case 2: return "float64";
    case 3: return "int32";
    case 4: return "int64";
    default: return "unknown";
  }
}

MPI_Datatype mpi_type(int dtype) {
  switch (dtype) {
    case 1: return MPI_FLOAT;
    case 2: return MPI_DOUBLE;
    case 3: return MPI_INT32_T;
    case 4: return MPI_INT64_T;
    default: return MPI_DATATYPE_NULL;
  }
}

std::string mpi_error(int rc) {
  char buf[MPI_MAX_ERROR_STRING + 1];
  int len = 0;
  if (MPI_Error_string(rc, buf, &len) != MPI_SUCCESS) return "MPI error code " + std::to_string(rc);
  buf[std::min(len, MPI_MAX_ERROR_STRING)] = '\0';
  return std::string(buf) + " (MPI error code " + std::to_string(rc) + ")";
}

void put(char* err, size_t errlen, const std::string& msg) {
  if (err == nullptr || errlen == 0) return;
  const size_t n = std::min(msg.size(), errlen - 1);
  std::memcpy(err, msg.data(), n);
  err[n] = '\0';
}

// Records the first failure (sticky) and returns its code with its message.
int fail(State* st, int code, const std::string& msg, char* err, size_t errlen) {
  if (st->sticky_code == GRAPHC_COMM_OK) {
    st->sticky_code = code;
    st->sticky = msg;
  }
  put(err, errlen, st->sticky);
  return st->sticky_code;
}

std::string rank_prefix(const State* st) { return "rank " + std::to_string(st->c.rank) + ": "; }

std::string seconds(double s) {
  if (std::isinf(s)) return "forever";
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%g s", s);
  return buf;
}

// Drives `reqs` to completion (MPI_Testall; the polling is what progresses them), within the
// timeout and unless SIGTERM arrives.  `what` names the operation for the message.
int poll(State* st, std::vector<MPI_Request>& reqs, const std::string& what, char* err, size_t errlen) {
  using Clock = std::chrono::steady_clock;
  if (reqs.empty()) return GRAPHC_COMM_OK;
  const auto t0 = Clock::now();
  g_in_wait.fetch_add(1);
  struct Leave {
    ~Leave() { g_in_wait.fetch_sub(1); }
  } leave;
  uint64_t spins = 0;
  for (;;) {
    int done = 0;
    const int rc = MPI_Testall(static_cast<int>(reqs.size()), reqs.data(), &done, MPI_STATUSES_IGNORE);
    if (rc != MPI_SUCCESS) {
      st->pending = true;
      return fail(st, GRAPHC_COMM_ERROR, rank_prefix(st) + what + " failed: " + mpi_error(rc), err, errlen);
    }
    if (done) {
      reqs.clear();
      return GRAPHC_COMM_OK;
    }
    if (g_sigterm) {
      st->pending = true;
      return fail(st, GRAPHC_COMM_ABORTED,
                  rank_prefix(st) + what + " was aborted: the launcher sent SIGTERM (another rank probably "
                  "failed or was killed)", err, errlen);
    }
    if ((++spins & 63) != 0) continue;
    const double waited = std::chrono::duration<double>(Clock::now() - t0).count();
    if (waited > st->timeout_s) {
      st->pending = true;
      return fail(st, GRAPHC_COMM_TIMEOUT,
                  rank_prefix(st) + what + " did not complete within " + seconds(st->timeout_s) +
                  ": a peer rank died, hangs, or runs a different plan (GRAPHC_COMM_TIMEOUT sets the limit "
                  "in seconds)", err, errlen);
    }
    // Busy polling for the first 10 ms (latency), then yield the core (ranks oversubscribed on
    // few cores make progress only when they run), then sleep (a peer far behind).
    if (waited > 1.0) {
      const timespec ts{0, 200 * 1000};
      nanosleep(&ts, nullptr);
    } else if (waited > 0.01) {
      sched_yield();
    }
  }
}

// The sticky error, if any, for a call about to start.
bool broken(State* st, char* err, size_t errlen, int* rc) {
  if (st->sticky_code == GRAPHC_COMM_OK) return false;
  put(err, errlen, st->sticky);
  *rc = st->sticky_code;
  return true;
}

std::string bucket_label(int slot, uint64_t nbytes) {
  return (slot >= 0 ? "allreduce of bucket " + std::to_string(slot) : std::string("allreduce")) + " (" +
         std::to_string(nbytes) + " bytes)";
}

// Deterministic mode: chunk j of a buffer of `count` elements is [start(j), start(j + 1)).
uint64_t chunk_start(uint64_t count, int size, int j) {
  const uint64_t base = count / size, extra = count % size;
  return base * j + std::min<uint64_t>(j, extra);
}

template <class T>
void ordered_sum(T* out, const T* chunks, uint64_t n, int size) {
  // out = ((c0 + c1) + c2) + ...: numpy's a[0] + a[1] + a[2] on every rank, bit for bit.
  std::memcpy(out, chunks, n * sizeof(T));
  for (int r = 1; r < size; ++r) {
    const T* c = chunks + static_cast<uint64_t>(r) * n;
    for (uint64_t i = 0; i < n; ++i) out[i] += c[i];
  }
}

void run_worker(Worker* w) {
  for (;;) {
    Job j;
    {
      std::unique_lock<std::mutex> lock(w->mutex);
      w->wake.wait(lock, [w] { return w->stop || !w->queue.empty(); });
      if (w->queue.empty()) return;  // stop
      j = w->queue.front();
      w->queue.pop_front();
    }
    int rc = MPI_SUCCESS;
    auto* bytes = static_cast<unsigned char*>(j.data);
    const size_t esize = dtype_bytes(j.dtype);
    for (uint64_t at = 0; at < j.count && rc == MPI_SUCCESS; at += kMaxPiece) {
      rc = MPI_Allreduce(MPI_IN_PLACE, bytes + at * esize, static_cast<int>(std::min(kMaxPiece, j.count - at)),
                         mpi_type(j.dtype), MPI_SUM, w->comm);
    }
    {
      std::lock_guard<std::mutex> lock(w->mutex);
      w->finished[j.slot] = rc;
    }
    w->done.notify_all();
  }
}

// The wait of a slot whose job the worker runs: in 5 ms slices, checking SIGTERM and the timeout.
int wait_worker(State* st, int slot, const std::string& what, char* err, size_t errlen) {
  using Clock = std::chrono::steady_clock;
  Worker& w = *st->worker;
  const auto t0 = Clock::now();
  g_in_wait.fetch_add(1);
  struct Leave {
    ~Leave() { g_in_wait.fetch_sub(1); }
  } leave;
  std::unique_lock<std::mutex> lock(w.mutex);
  for (;;) {
    auto f = w.finished.find(slot);
    if (f != w.finished.end()) {
      const int mrc = f->second;
      w.finished.erase(f);
      lock.unlock();
      if (mrc == MPI_SUCCESS) return GRAPHC_COMM_OK;
      return fail(st, GRAPHC_COMM_ERROR, rank_prefix(st) + what + " failed: " + mpi_error(mrc), err, errlen);
    }
    if (g_sigterm) {
      st->pending = true;
      lock.unlock();
      return fail(st, GRAPHC_COMM_ABORTED,
                  rank_prefix(st) + what + " was aborted: the launcher sent SIGTERM (another rank probably "
                  "failed or was killed)", err, errlen);
    }
    const double waited = std::chrono::duration<double>(Clock::now() - t0).count();
    if (waited > st->timeout_s) {
      st->pending = true;
      lock.unlock();
      return fail(st, GRAPHC_COMM_TIMEOUT,
                  rank_prefix(st) + what + " did not complete within " + seconds(st->timeout_s) +
                  ": a peer rank died, hangs, or runs a different plan (GRAPHC_COMM_TIMEOUT sets the limit "
                  "in seconds)", err, errlen);
    }
    w.done.wait_for(lock, std::chrono::milliseconds(5));
  }
}

int c_prepare(void* self, int slot, uint64_t nbytes, void* stream, char* err, size_t errlen) {
  State* st = state(self);
  std::lock_guard<std::mutex> lock(st->mutex);
  int rc = 0;
  if (broken(st, err, errlen, &rc)) return rc;
  if (stream != nullptr) {
    put(err, errlen, rank_prefix(st) + "the MPI communicator reduces host memory only; this plan runs on a "
        "CUDA stream (use the NCCL communicator)");
    return GRAPHC_COMM_UNSUPPORTED;
  }
  if (slot < 0) {
    put(err, errlen, rank_prefix(st) + "prepare: bucket " + std::to_string(slot) + " is negative");
    return GRAPHC_COMM_ERROR;
  }
  Slot& s = st->slots[slot];
  if (st->c.deterministic && st->c.size > 1) {
    // Room for every rank's copy of this rank's largest chunk (at most ceil(n / size) 8-byte
    // elements whatever the dtype: sized in bytes rounded up).
    const uint64_t chunk = (nbytes + st->c.size - 1) / st->c.size + 8;
    const uint64_t need = chunk * static_cast<uint64_t>(st->c.size);
    try {
      if (s.scratch.size() < need) s.scratch.resize(need);
    } catch (const std::bad_alloc&) {
      put(err, errlen, rank_prefix(st) + "out of memory for the " + std::to_string(need) +
          " bytes of deterministic-allreduce scratch of bucket " + std::to_string(slot));
      return GRAPHC_COMM_ERROR;
    }
  }
  return GRAPHC_COMM_OK;
}

int c_allreduce_start(void* self, int slot, void* data, uint64_t count, int dtype, void* stream, char* err,
                      size_t errlen) {
  State* st = state(self);
  std::lock_guard<std::mutex> lock(st->mutex);
  int rc = 0;
  if (broken(st, err, errlen, &rc)) return rc;
  const size_t esize = dtype_bytes(dtype);
  const std::string what = bucket_label(slot, count * esize);
  if (stream != nullptr) {
    put(err, errlen, rank_prefix(st) + what + ": the MPI communicator reduces host memory only (use the NCCL "
        "communicator on CUDA)");
    return GRAPHC_COMM_UNSUPPORTED;
  }
  if (esize == 0) {
    put(err, errlen, rank_prefix(st) + what + ": unsupported dtype code " + std::to_string(dtype));
    return GRAPHC_COMM_UNSUPPORTED;
  }
  Slot& s = st->slots[slot];
  if (s.active) {
    put(err, errlen, rank_prefix(st) + what + " started twice without a wait");
    return GRAPHC_COMM_ERROR;
  }
  s.data = data;
  s.count = count;
  s.dtype = dtype;
  s.active = true;
  s.reqs.clear();
  if (st->c.size == 1 || count == 0) return GRAPHC_COMM_OK;
  const MPI_Datatype type = mpi_type(dtype);
  auto* bytes = static_cast<unsigned char*>(data);
  if (st->worker) {
    Worker& w = *st->worker;
    {
      std::lock_guard<std::mutex> qlock(w.mutex);
      w.finished.erase(slot);
      w.queue.push_back(Job{slot, data, count, dtype});
    }
    w.wake.notify_one();
    return GRAPHC_COMM_OK;
  }
  if (!st->c.deterministic) {
    for (uint64_t at = 0; at < count; at += kMaxPiece) {
      const int n = static_cast<int>(std::min(kMaxPiece, count - at));
      MPI_Request req;
      const int mrc = MPI_Iallreduce(MPI_IN_PLACE, bytes + at * esize, n, type, MPI_SUM, st->comm, &req);
      if (mrc != MPI_SUCCESS) {
        s.active = false;
        st->pending = !s.reqs.empty();
        return fail(st, GRAPHC_COMM_ERROR, rank_prefix(st) + what + ": MPI_Iallreduce failed: " + mpi_error(mrc), err,
                    errlen);
      }
      s.reqs.push_back(req);
    }
    return GRAPHC_COMM_OK;
  }
  // Deterministic: every rank sends chunk j to rank j and receives its own chunk of every rank.
  const int size = st->c.size, me = st->c.rank;
  const uint64_t mine = chunk_start(count, size, me + 1) - chunk_start(count, size, me);
  if ((count + size - 1) / size > static_cast<uint64_t>(INT_MAX) / static_cast<uint64_t>(size)) {
    s.active = false;
    return fail(st, GRAPHC_COMM_UNSUPPORTED, rank_prefix(st) + what + ": too large for the deterministic mode "
                "(more than INT_MAX elements per rank's chunk)", err, errlen);
  }
  const uint64_t need = mine * esize * size;
  if (s.scratch.size() < need) {
    try {
      s.scratch.resize(need);
    } catch (const std::bad_alloc&) {
      s.active = false;
      put(err, errlen, rank_prefix(st) + what + ": out of memory for " + std::to_string(need) + " bytes of scratch");
      return GRAPHC_COMM_ERROR;
    }
  }
  std::vector<int> scounts(size), sdispls(size), rcounts(size), rdispls(size);
  for (int j = 0; j < size; ++j) {
    scounts[j] = static_cast<int>(chunk_start(count, size, j + 1) - chunk_start(count, size, j));
    sdispls[j] = static_cast<int>(chunk_start(count, size, j));
    rcounts[j] = static_cast<int>(mine);
    rdispls[j] = static_cast<int>(mine * j);
  }
  if (chunk_start(count, size, size - 1) > static_cast<uint64_t>(INT_MAX)) {
    s.active = false;
    return fail(st, GRAPHC_COMM_UNSUPPORTED, rank_prefix(st) + what + ": too large for the deterministic mode "
                "(displacements above INT_MAX elements)", err, errlen);
  }
  MPI_Request req;
  const int mrc = MPI_Ialltoallv(data, scounts.data(), sdispls.data(), type, s.scratch.data(), rcounts.data(),
                                 rdispls.data(), type, st->comm, &req);
  if (mrc != MPI_SUCCESS) {
    s.active = false;
    return fail(st, GRAPHC_COMM_ERROR, rank_prefix(st) + what + ": MPI_Ialltoallv failed: " + mpi_error(mrc), err,
                errlen);
  }
  s.reqs.push_back(req);
  return GRAPHC_COMM_OK;
}

int c_allreduce_wait(void* self, int slot, void* stream, char* err, size_t errlen) {
  State* st = state(self);
  std::lock_guard<std::mutex> lock(st->mutex);
  int rc = 0;
  if (broken(st, err, errlen, &rc)) return rc;
  auto it = st->slots.find(slot);
  // Slot -1 with nothing started: the health check of comm.h (the sticky error was answered above).
  if (slot == -1 && stream == nullptr && (it == st->slots.end() || !it->second.active)) return GRAPHC_COMM_OK;
  if (it == st->slots.end() || !it->second.active) {
    put(err, errlen, rank_prefix(st) + "wait of bucket " + std::to_string(slot) + " without a start");
    return GRAPHC_COMM_ERROR;
  }
  (void)stream;  // host memory: nothing is enqueued
  Slot& s = it->second;
  s.active = false;
  const size_t esize = dtype_bytes(s.dtype);
  const std::string what = bucket_label(slot, s.count * esize);
  if (st->worker && st->c.size > 1 && s.count > 0) return wait_worker(st, slot, what, err, errlen);
  rc = poll(st, s.reqs, what, err, errlen);
  if (rc != GRAPHC_COMM_OK || !st->c.deterministic || st->c.size == 1 || s.count == 0) return rc;
  const int size = st->c.size, me = st->c.rank;
  const uint64_t lo = chunk_start(s.count, size, me), mine = chunk_start(s.count, size, me + 1) - lo;
  auto* bytes = static_cast<unsigned char*>(s.data);
  switch (s.dtype) {
    case 1: ordered_sum(reinterpret_cast<float*>(bytes) + lo, reinterpret_cast<const float*>(s.scratch.data()), mine, size); break;
    case 2: ordered_sum(reinterpret_cast<double*>(bytes) + lo, reinterpret_cast<const double*>(s.scratch.data()), mine, size); break;
    case 3: ordered_sum(reinterpret_cast<int32_t*>(bytes) + lo, reinterpret_cast<const int32_t*>(s.scratch.data()), mine, size); break;
    case 4: ordered_sum(reinterpret_cast<int64_t*>(bytes) + lo, reinterpret_cast<const int64_t*>(s.scratch.data()), mine, size); break;
    default: break;
  }
  std::vector<int> counts(size), displs(size);
  for (int j = 0; j < size; ++j) {
    counts[j] = static_cast<int>(chunk_start(s.count, size, j + 1) - chunk_start(s.count, size, j));
    displs[j] = static_cast<int>(chunk_start(s.count, size, j));
  }
  MPI_Request req;
  const int mrc = MPI_Iallgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, s.data, counts.data(), displs.data(),
                                  mpi_type(s.dtype), st->comm, &req);
  if (mrc != MPI_SUCCESS) {
    return fail(st, GRAPHC_COMM_ERROR, rank_prefix(st) + what + ": MPI_Iallgatherv failed: " + mpi_error(mrc), err,
                errlen);
  }
  s.reqs.push_back(req);
  return poll(st, s.reqs, what, err, errlen);
}

int c_broadcast(void* self, void* data, uint64_t nbytes, int root, char* err, size_t errlen) {
  State* st = state(self);
  std::lock_guard<std::mutex> lock(st->mutex);
  int rc = 0;
  if (broken(st, err, errlen, &rc)) return rc;
  const std::string what = "broadcast from rank " + std::to_string(root) + " (" + std::to_string(nbytes) + " bytes)";
  if (root < 0 || root >= st->c.size) {
    put(err, errlen, rank_prefix(st) + what + ": root out of range [0, " + std::to_string(st->c.size) + ")");
    return GRAPHC_COMM_ERROR;
  }
  std::vector<MPI_Request> reqs;
  auto* bytes = static_cast<unsigned char*>(data);
  for (uint64_t at = 0; at < nbytes; at += kMaxPiece) {
    MPI_Request req;
    const int mrc = MPI_Ibcast(bytes + at, static_cast<int>(std::min(kMaxPiece, nbytes - at)), MPI_BYTE, root,
                               st->comm, &req);
    if (mrc != MPI_SUCCESS) {
      st->pending = !reqs.empty();
      return fail(st, GRAPHC_COMM_ERROR, rank_prefix(st) + what + ": MPI_Ibcast failed: " + mpi_error(mrc), err, errlen);
    }
    reqs.push_back(req);
  }
  return poll(st, reqs, what, err, errlen);
}

int c_allgather(void* self, const void* send, uint64_t nbytes, void* recv, char* err, size_t errlen) {
  State* st = state(self);
  std::lock_guard<std::mutex> lock(st->mutex);
  int rc = 0;
  if (broken(st, err, errlen, &rc)) return rc;
  const std::string what = "allgather of " + std::to_string(nbytes) + " bytes per rank";
  if (nbytes > static_cast<uint64_t>(INT_MAX)) {
    put(err, errlen, rank_prefix(st) + what + ": more than INT_MAX bytes per rank");
    return GRAPHC_COMM_UNSUPPORTED;
  }
  std::vector<MPI_Request> reqs(1);
  const int mrc = MPI_Iallgather(send, static_cast<int>(nbytes), MPI_BYTE, recv, static_cast<int>(nbytes), MPI_BYTE,
                                 st->comm, &reqs[0]);
  if (mrc != MPI_SUCCESS) {
    return fail(st, GRAPHC_COMM_ERROR, rank_prefix(st) + what + ": MPI_Iallgather failed: " + mpi_error(mrc), err, errlen);
  }
  return poll(st, reqs, what, err, errlen);
}

int c_barrier(void* self, char* err, size_t errlen) {
  State* st = state(self);
  std::lock_guard<std::mutex> lock(st->mutex);
  int rc = 0;
  if (broken(st, err, errlen, &rc)) return rc;
  std::vector<MPI_Request> reqs(1);
  const int mrc = MPI_Ibarrier(st->comm, &reqs[0]);
  if (mrc != MPI_SUCCESS) {
    return fail(st, GRAPHC_COMM_ERROR, rank_prefix(st) + "barrier: MPI_Ibarrier failed: " + mpi_error(mrc), err, errlen);
  }
  return poll(st, reqs, "barrier", err, errlen);
}

}  // namespace

bool install_sigterm_handler() {
  if (g_handler_installed.load()) return true;
  struct sigaction current;
  if (sigaction(SIGTERM, nullptr, &current) != 0) return false;
  // Someone else's handler (Python's signal.signal, the user's): leave it alone.
  if ((current.sa_flags & SA_SIGINFO) || current.sa_handler != SIG_DFL) return false;
  struct sigaction ours;
  std::memset(&ours, 0, sizeof(ours));
  ours.sa_handler = on_sigterm;
  sigemptyset(&ours.sa_mask);
  ours.sa_flags = 0;  // no SA_RESTART needed: the wait polls
  g_prev_sigterm = current;
  if (sigaction(SIGTERM, &ours, nullptr) != 0) return false;
  g_handler_installed.store(true);
  return true;
}

graphc_comm* create(int fortran_handle, int deterministic, double timeout_s, std::string* err) {
  int flag = 0;
  MPI_Initialized(&flag);
  if (!flag) {
    *err = "MPI is not initialised (import mpi4py.MPI first, or run under mpirun)";
    return nullptr;
  }
  MPI_Finalized(&flag);
  if (flag) {
    *err = "MPI is already finalised";
    return nullptr;
  }
  if (!(timeout_s > 0)) {
    *err = "the timeout must be > 0 seconds, got " + std::to_string(timeout_s);
    return nullptr;
  }
  MPI_Comm user = MPI_Comm_f2c(fortran_handle);
  if (user == MPI_COMM_NULL) {
    *err = "the communicator is MPI_COMM_NULL";
    return nullptr;
  }
  auto* st = new State();
  st->timeout_s = timeout_s;
  std::memset(&st->c, 0, sizeof(st->c));
  st->c.abi_version = GRAPHC_COMM_ABI_VERSION;
  st->c.deterministic = deterministic ? 1 : 0;
  st->c.backend = "mpi";
  st->c.self = st;
  st->c.prepare = c_prepare;
  st->c.allreduce_start = c_allreduce_start;
  st->c.allreduce_wait = c_allreduce_wait;
  st->c.broadcast = c_broadcast;
  st->c.allgather = c_allgather;
  st->c.barrier = c_barrier;
  int rank = 0, size = 0;
  int rc = MPI_Comm_rank(user, &rank);
  if (rc == MPI_SUCCESS) rc = MPI_Comm_size(user, &size);
  if (rc != MPI_SUCCESS) {
    *err = "not a valid communicator: " + mpi_error(rc);
    delete st;
    return nullptr;
  }
  st->c.rank = rank;
  st->c.size = size;
  // The duplicate is collective: MPI_Comm_idup, polled within the timeout (a rank that never
  // joins is reported, not waited for forever).
  std::vector<MPI_Request> reqs(1);
  MPI_Comm dup = MPI_COMM_NULL;
  rc = MPI_Comm_idup(user, &dup, &reqs[0]);
  if (rc != MPI_SUCCESS) {
    *err = "MPI_Comm_idup failed: " + mpi_error(rc);
    delete st;
    return nullptr;
  }
  char buf[1024];
  if (poll(st, reqs, "duplicating the communicator (MPI_Comm_idup)", buf, sizeof(buf)) != GRAPHC_COMM_OK) {
    *err = buf;
    // The request may still complete later: leak the state rather than free what MPI writes.
    return nullptr;
  }
  st->comm = dup;
  MPI_Comm_set_errhandler(st->comm, MPI_ERRORS_RETURN);
  // The worker (see Worker): sum mode, MPI_THREAD_MULTIPLE, more than one rank, and not turned
  // off with GRAPHC_COMM_THREAD=0.  Every rank decides alike (same MPI, same environment), and
  // the second duplicate is made by all or none.
  int provided = MPI_THREAD_SINGLE;
  MPI_Query_thread(&provided);
  const char* env = std::getenv("GRAPHC_COMM_THREAD");
  const bool off = env != nullptr && std::string(env) == "0";
  if (!deterministic && size > 1 && provided == MPI_THREAD_MULTIPLE && !off) {
    MPI_Comm second = MPI_COMM_NULL;
    reqs.assign(1, MPI_REQUEST_NULL);
    rc = MPI_Comm_idup(user, &second, &reqs[0]);
    if (rc != MPI_SUCCESS) {
      *err = "MPI_Comm_idup failed: " + mpi_error(rc);
      return nullptr;  // the first duplicate is leaked with the state (rare; freeing it is collective-safe but moot)
    }
    if (poll(st, reqs, "duplicating the communicator (MPI_Comm_idup)", buf, sizeof(buf)) != GRAPHC_COMM_OK) {
      *err = buf;
      return nullptr;
    }
    MPI_Comm_set_errhandler(second, MPI_ERRORS_RETURN);
    st->worker.reset(new Worker());
    st->worker->comm = second;
    st->worker->thread = std::thread(run_worker, st->worker.get());
  }
  return &st->c;
}

void destroy(graphc_comm* comm) {
  if (comm == nullptr) return;
  State* st = state(comm->self);
  int finalized = 0;
  MPI_Finalized(&finalized);
  // A communicator with a collective left pending (a failure) is leaked: freeing it under a
  // live request is undefined.  After MPI_Finalize nothing may be called.
  if (st->pending) {
    // The worker may be blocked in MPI for good: let it be (the process is going down).
    if (st->worker && st->worker->thread.joinable()) st->worker->thread.detach();
    return;
  }
  if (st->worker) {
    {
      std::lock_guard<std::mutex> lock(st->worker->mutex);
      st->worker->stop = true;
    }
    st->worker->wake.notify_all();
    st->worker->thread.join();
    if (!finalized && st->worker->comm != MPI_COMM_NULL) MPI_Comm_free(&st->worker->comm);
  }
  if (!finalized && st->comm != MPI_COMM_NULL) MPI_Comm_free(&st->comm);
  delete st;
}

double timeout_of(const graphc_comm* comm) { return state(comm->self)->timeout_s; }

bool uses_worker(const graphc_comm* comm) { return state(comm->self)->worker != nullptr; }

void abort_job(const graphc_comm* comm, int code) {
  State* st = state(comm->self);
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Abort(st->comm != MPI_COMM_NULL ? st->comm : MPI_COMM_WORLD, code);
}

}  // namespace mpi
}  // namespace graphc
