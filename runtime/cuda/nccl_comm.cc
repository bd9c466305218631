// nccl_comm.cc — the NCCL communicator (nccl_comm.h).  Host code; compiled in a CUDA build, and
// empty unless nccl.h was found (nccl_comm.h then defines the "not built" answers inline).
#include "nccl_comm.h"

#ifdef GRAPHC_NCCL_BUILT

#include <cuda_runtime_api.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <exception>
#include <map>
#include <mutex>
#include <thread>

#include "../device.h"
#include "libs.h"
#include "nccl_api.h"

namespace graphc {
namespace nccl {

namespace {

using Clock = std::chrono::steady_clock;

// The slot host_allreduce uses (plan buckets are >= 0).
constexpr int kHostSlot = -1;
// How often the watchdog looks at the pending collectives and NCCL's asynchronous error.
constexpr auto kWatchdogPeriod = std::chrono::milliseconds(50);

void write_err(char* err, size_t errlen, const std::string& msg) {
  if (err == nullptr || errlen == 0) return;
  std::snprintf(err, errlen, "%s", msg.c_str());
}

bool dtype_of(int dtype, ncclDataType_t* nccl_type, size_t* esize) {
  switch (dtype) {
    case 1: *nccl_type = ncclFloat32; *esize = 4; return true;
    case 2: *nccl_type = ncclFloat64; *esize = 8; return true;
    case 3: *nccl_type = ncclInt32; *esize = 4; return true;
    case 4: *nccl_type = ncclInt64; *esize = 8; return true;
    default: return false;
  }
}

std::string bucket_name(int slot) {
  return slot == kHostSlot ? std::string("a host array") : "bucket " + std::to_string(slot);
}

std::string seconds(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", s);
  return buf;
}

// What each rank found before NCCL's init, exchanged with the host's allgather so that every
// rank gives the same verdict (and none waits in an init a peer will never join).
struct Facts {
  int32_t ok = 0;
  int32_t version = 0;
  char host[64] = {};
  char bus[32] = {};
  char problem[384] = {};
};

}  // namespace

class Communicator {
 public:
  Communicator(const graphc_comm* host, const cuda::NcclApi* api, ncclComm_t comm, int device, bool deterministic,
               double timeout_s)
      : host_(host), api_(api), comm_(comm), device_(device), deterministic_(deterministic), timeout_s_(timeout_s) {
    abi_.abi_version = GRAPHC_COMM_ABI_VERSION;
    abi_.rank = host->rank;
    abi_.size = host->size;
    abi_.deterministic = deterministic ? 1 : 0;
    abi_.backend = "nccl";
    abi_.self = this;
    abi_.prepare = &c_prepare;
    abi_.allreduce_start = &c_start;
    abi_.allreduce_wait = &c_wait;
    abi_.broadcast = &c_broadcast;
    abi_.allgather = &c_allgather;
    abi_.barrier = &c_barrier;
    watchdog_ = std::thread([this] { watch(); });
  }

  ~Communicator() {
    {
      std::lock_guard<std::mutex> lock(stop_mu_);
      stop_ = true;
    }
    stop_cv_.notify_all();
    if (watchdog_.joinable()) watchdog_.join();
    std::lock_guard<std::mutex> lock(mu_);
    if (comm_ != nullptr) {
      bool clean = failed_.load() == 0;
      if (clean) {
        // Nonblocking: finalize answers ncclInProgress; poll until it is done (or the timeout).
        ncclResult_t r = api_->ncclCommFinalize(comm_);
        if (r == ncclSuccess || r == ncclInProgress) r = settle_locked(ncclInProgress, Clock::now() + deadline());
        clean = r == ncclSuccess;
      }
      if (clean) {
        api_->ncclCommDestroy(comm_);
      } else {
        api_->ncclCommAbort(comm_);
      }
      comm_ = nullptr;
    }
    cudaSetDevice(device_);
    for (auto& kv : slots_) {
      if (kv.second.done != nullptr) cudaEventDestroy(kv.second.done);
    }
    if (scratch_.ptr != nullptr) cudaFree(scratch_.ptr);
    if (host_scratch_.ptr != nullptr) cudaFree(host_scratch_.ptr);
    for (void* p : retired_) cudaFree(p);
    if (host_buffer_ != nullptr) cudaFree(host_buffer_);
    if (host_stream_ != nullptr) cudaStreamDestroy(host_stream_);
  }

  const graphc_comm* abi() const { return &abi_; }

  int host_allreduce(void* data, uint64_t count, int dtype, std::string* err) {
    char buf[1024];
    ncclDataType_t t;
    size_t es = 0;
    if (!dtype_of(dtype, &t, &es)) return unsupported_dtype(dtype, buf, sizeof buf, err);
    const uint64_t nbytes = count * es;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (int code = sticky(buf, sizeof buf)) return (*err = buf, code);
      cudaError_t e = cudaSetDevice(device_);
      if (e == cudaSuccess && host_stream_ == nullptr) e = cudaStreamCreateWithFlags(&host_stream_, cudaStreamNonBlocking);
      if (e == cudaSuccess && nbytes > host_buffer_bytes_) {
        if (host_buffer_ != nullptr) cudaFree(host_buffer_);
        host_buffer_ = nullptr;
        host_buffer_bytes_ = 0;
        e = cudaMalloc(&host_buffer_, nbytes);
        if (e == cudaSuccess) host_buffer_bytes_ = nbytes;
      }
      if (e == cudaSuccess && nbytes) e = cudaMemcpy(host_buffer_, data, nbytes, cudaMemcpyHostToDevice);
      if (e != cudaSuccess) return (*err = cuda_message("staging a host array", e), GRAPHC_COMM_ERROR);
    }
    int code = prepare(kHostSlot, nbytes, host_stream_, buf, sizeof buf);
    if (code == 0) code = start(kHostSlot, host_buffer_, count, dtype, host_stream_, buf, sizeof buf);
    if (code == 0) code = wait(kHostSlot, host_stream_, buf, sizeof buf);
    if (code != 0) return (*err = buf, code);
    // The watchdog aborts NCCL when this takes longer than the timeout: the stream then drains.
    cudaError_t e = cudaStreamSynchronize(host_stream_);
    if (int c = sticky(buf, sizeof buf)) return (*err = buf, c);
    if (e == cudaSuccess && nbytes) e = cudaMemcpy(data, host_buffer_, nbytes, cudaMemcpyDeviceToHost);
    if (e != cudaSuccess) return (*err = cuda_message("the allreduce of a host array", e), GRAPHC_COMM_ERROR);
    return 0;
  }

 private:
  struct Slot {
    cudaEvent_t done = nullptr;  // recorded after the slot's last collective
    uint64_t nbytes = 0;         // the most prepare() announced
    uint64_t last_bytes = 0;     // the last allreduce's (for messages)
    bool pending = false;        // the watchdog saw `done` not reached...
    Clock::time_point since;     // ...first at this time
  };

  // -- the ABI's functions ---------------------------------------------------------------
  template <class F> static int guarded(void* self, char* err, size_t errlen, F&& f) {
    auto* c = static_cast<Communicator*>(self);
    try {
      return f(c);
    } catch (const std::exception& e) {
      return c->fail(GRAPHC_COMM_ERROR, c->prefix() + e.what(), err, errlen);
    } catch (...) {
      return c->fail(GRAPHC_COMM_ERROR, c->prefix() + "unknown C++ exception", err, errlen);
    }
  }
  static int c_prepare(void* self, int slot, uint64_t nbytes, void* stream, char* err, size_t errlen) {
    return guarded(self, err, errlen, [&](Communicator* c) {
      if (slot < 0) return c->fail(GRAPHC_COMM_ERROR, c->prefix() + "bucket " + std::to_string(slot) + " < 0", err, errlen);
      return c->prepare(slot, nbytes, stream, err, errlen);
    });
  }
  static int c_start(void* self, int slot, void* data, uint64_t count, int dtype, void* stream, char* err,
                     size_t errlen) {
    return guarded(self, err, errlen, [&](Communicator* c) {
      if (slot < 0) return c->fail(GRAPHC_COMM_ERROR, c->prefix() + "bucket " + std::to_string(slot) + " < 0", err, errlen);
      return c->start(slot, data, count, dtype, stream, err, errlen);
    });
  }
  static int c_wait(void* self, int slot, void* stream, char* err, size_t errlen) {
    return guarded(self, err, errlen, [&](Communicator* c) { return c->wait(slot, stream, err, errlen); });
  }
  static int c_broadcast(void* self, void* data, uint64_t nbytes, int root, char* err, size_t errlen) {
    auto* c = static_cast<Communicator*>(self);
    return c->host_->broadcast(c->host_->self, data, nbytes, root, err, errlen);
  }
  static int c_allgather(void* self, const void* send, uint64_t nbytes, void* recv, char* err, size_t errlen) {
    auto* c = static_cast<Communicator*>(self);
    return c->host_->allgather(c->host_->self, send, nbytes, recv, err, errlen);
  }
  static int c_barrier(void* self, char* err, size_t errlen) {
    auto* c = static_cast<Communicator*>(self);
    return c->host_->barrier(c->host_->self, err, errlen);
  }

  // -- the work --------------------------------------------------------------------------
  int prepare(int slot, uint64_t nbytes, void* stream, char* err, size_t errlen) {
    if (stream == nullptr) {
      return fail(GRAPHC_COMM_UNSUPPORTED,
                  prefix() + "the NCCL communicator reduces device memory only (" + bucket_name(slot) +
                      " has no CUDA stream)",
                  err, errlen, /*sticky=*/false);
    }
    std::lock_guard<std::mutex> lock(mu_);
    if (int code = sticky(err, errlen)) return code;
    cudaError_t e = cudaSetDevice(device_);
    Slot& s = slots_[slot];
    if (e == cudaSuccess && s.done == nullptr) e = cudaEventCreateWithFlags(&s.done, cudaEventDisableTiming);
    s.nbytes = std::max(s.nbytes, nbytes);
    if (e == cudaSuccess && deterministic_) {
      // size chunks of ceil(count / size) elements: at most size - 1 elements of 8 bytes more.
      const uint64_t need = (nbytes + 8 * static_cast<uint64_t>(abi_.size) + 255) / 256 * 256;
      // The plan's buckets share one scratch (they run in order on the plan's stream);
      // host_allreduce, on its own stream, has its own.
      Scratch& sc = slot == kHostSlot ? host_scratch_ : scratch_;
      if (need > sc.bytes) {
        void* p = nullptr;
        e = cudaMalloc(&p, need);
        if (e == cudaSuccess) {
          // A captured graph of another executor may still hold the old pointer: keep it.
          if (sc.ptr != nullptr) retired_.push_back(sc.ptr);
          sc.ptr = p;
          sc.bytes = need;
        }
      }
    }
    if (e != cudaSuccess) {
      return fail(GRAPHC_COMM_ERROR, cuda_message("preparing " + bucket_name(slot) + " (" + std::to_string(nbytes) +
                                                  " bytes)", e),
                  err, errlen);
    }
    return 0;
  }

  int start(int slot, void* data, uint64_t count, int dtype, void* stream, char* err, size_t errlen) {
    ncclDataType_t t;
    size_t es = 0;
    if (!dtype_of(dtype, &t, &es)) {
      std::string msg;
      return unsupported_dtype(dtype, err, errlen, &msg);
    }
    if (stream == nullptr) {
      return fail(GRAPHC_COMM_UNSUPPORTED, prefix() + "the NCCL communicator reduces device memory only",
                  err, errlen, /*sticky=*/false);
    }
    const uint64_t nbytes = count * es;
    std::lock_guard<std::mutex> lock(mu_);
    if (int code = sticky(err, errlen)) return code;
    auto it = slots_.find(slot);
    if (it == slots_.end()) {
      return fail(GRAPHC_COMM_ERROR, prefix() + "allreduce of " + bucket_name(slot) + " before its prepare()", err,
                  errlen);
    }
    Slot& s = it->second;
    if (deterministic_ && nbytes > s.nbytes) {
      return fail(GRAPHC_COMM_ERROR,
                  prefix() + "allreduce of " + bucket_name(slot) + " of " + std::to_string(nbytes) +
                      " bytes, prepared for " + std::to_string(s.nbytes),
                  err, errlen);
    }
    s.last_bytes = nbytes;
    if (count == 0) return 0;
    const std::string what = "allreduce of " + bucket_name(slot) + " (" + std::to_string(nbytes) + " bytes)";
    auto st = static_cast<cudaStream_t>(stream);
    ncclResult_t r;
    if (!deterministic_) {
      r = settle_locked(api_->ncclAllReduce(data, data, count, t, ncclSum, comm_, st), Clock::now() + deadline());
      if (r != ncclSuccess) return nccl_failure(what + ": ncclAllReduce", r, err, errlen);
    } else {
      const DeterministicPlan plan = deterministic_plan(count, abi_.size, abi_.rank);
      auto* d = static_cast<char*>(data);
      auto* a = static_cast<char*>((slot == kHostSlot ? host_scratch_ : scratch_).ptr);
      ncclResult_t first = api_->ncclGroupStart();
      for (const Transfer& x : plan.sends) {
        if (first != ncclSuccess) break;
        first = api_->ncclSend(d + x.span.offset * es, x.span.count, t, x.peer, comm_, st);
      }
      for (const Transfer& x : plan.recvs) {
        if (first != ncclSuccess) break;
        first = api_->ncclRecv(a + x.span.offset * es, x.span.count, t, x.peer, comm_, st);
      }
      r = settle_locked(api_->ncclGroupEnd(), Clock::now() + deadline());
      if (first != ncclSuccess) r = first;
      if (r != ncclSuccess) return nccl_failure(what + ": the chunks' ncclSend/ncclRecv", r, err, errlen);
      char* mine = a + plan.stride * static_cast<uint64_t>(abi_.rank) * es;
      if (plan.own.count) {
        auto e = static_cast<cudaError_t>(detail::launch_ordered_sum(dtype, a, plan.stride, d + plan.own.offset * es,
                                                                     abi_.size, abi_.rank, plan.own.count, mine, st));
        if (e != cudaSuccess) return fail(GRAPHC_COMM_ERROR, cuda_message(what + ": the ordered sum", e), err, errlen);
      }
      r = settle_locked(api_->ncclAllGather(mine, a, plan.stride, t, comm_, st), Clock::now() + deadline());
      if (r != ncclSuccess) return nccl_failure(what + ": ncclAllGather", r, err, errlen);
      cudaError_t e = cudaMemcpyAsync(d, a, nbytes, cudaMemcpyDeviceToDevice, st);
      if (e != cudaSuccess) return fail(GRAPHC_COMM_ERROR, cuda_message(what + ": the copy back", e), err, errlen);
    }
    // The watchdog's marker; inside the executor's capture it must be an event-record node.
    cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
    cudaError_t e = cudaStreamIsCapturing(st, &capture);
    if (e == cudaSuccess) {
      e = cudaEventRecordWithFlags(s.done, st,
                                   capture == cudaStreamCaptureStatusActive ? cudaEventRecordExternal : cudaEventRecordDefault);
    }
    if (e != cudaSuccess) return fail(GRAPHC_COMM_ERROR, cuda_message(what + ": recording its event", e), err, errlen);
    return 0;
  }

  // The collectives run on the plan's stream: the steps after the wait are ordered after them
  // already.  What is left to do is to report a failure found since.  Slot -1 with no stream is
  // the executor's health check before a CUDA graph replay (whose steps' host code never runs):
  // the same answer, for the communicator as a whole.
  int wait(int slot, void* stream, char* err, size_t errlen) {
    (void)stream;
    std::lock_guard<std::mutex> lock(mu_);
    if (int code = sticky(err, errlen)) return code;
    ncclResult_t async = ncclSuccess;
    ncclResult_t r = api_->ncclCommGetAsyncError(comm_, &async);
    if (r == ncclSuccess) r = async;
    if (r != ncclSuccess && r != ncclInProgress) {
      return nccl_failure(slot < 0 ? std::string("the NCCL communicator (asynchronous error)")
                                   : "the NCCL communicator (reported at the wait of " + bucket_name(slot) + ")",
                          r, err, errlen);
    }
    return 0;
  }

  // -- failures ----------------------------------------------------------------------------
  std::string prefix() const { return "rank " + std::to_string(abi_.rank) + ": "; }

  std::chrono::nanoseconds deadline() const {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::duration<double>(timeout_s_));
  }

  std::string cuda_message(const std::string& what, cudaError_t e) const {
    return prefix() + what + ": CUDA error " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")";
  }

  int unsupported_dtype(int dtype, char* err, size_t errlen, std::string* out) {
    const std::string msg = prefix() + "allreduce of dtype " + std::to_string(dtype) +
                            ": the NCCL communicator sums float32, float64, int32 and int64 (1-4)";
    write_err(err, errlen, msg);
    *out = msg;
    return GRAPHC_COMM_UNSUPPORTED;
  }

  // An NCCL call failed (mu_ held): the communicator is aborted and the error is sticky.
  int nccl_failure(const std::string& what, ncclResult_t r, char* err, size_t errlen) {
    std::string msg = prefix() + what + " failed: " + (r == ncclInProgress ? std::string("did not complete within ") +
                                                                                 seconds(timeout_s_) + " s"
                                                                           : api_->ncclGetErrorString(r));
    const char* last = api_->ncclGetLastError(comm_);
    if (r != ncclInProgress && last != nullptr && last[0] != '\0') msg += std::string(" (") + last + ")";
    abort_locked();
    return fail(r == ncclInProgress ? GRAPHC_COMM_TIMEOUT : GRAPHC_COMM_ERROR, msg + "; the NCCL communicator was aborted",
                err, errlen);
  }

  // Records the first failure (sticky unless told otherwise) and writes the message to err.
  int fail(int code, const std::string& msg, char* err, size_t errlen, bool sticky_error = true) {
    if (!sticky_error) {
      write_err(err, errlen, msg);
      return code;
    }
    std::lock_guard<std::mutex> lock(err_mu_);
    if (failed_.load() == 0) {
      first_error_ = msg;
      failed_.store(code);
    }
    write_err(err, errlen, first_error_);
    return failed_.load();
  }

  int sticky(char* err, size_t errlen) {
    if (failed_.load() == 0) return 0;
    std::lock_guard<std::mutex> lock(err_mu_);
    write_err(err, errlen, first_error_);
    return failed_.load();
  }

  // mu_ held.  Kernels spinning on a dead peer return; the handle is gone.
  void abort_locked() {
    if (comm_ != nullptr) api_->ncclCommAbort(comm_);
    comm_ = nullptr;
  }

  // mu_ held.  A nonblocking communicator's call may answer ncclInProgress: poll its state.
  ncclResult_t settle_locked(ncclResult_t r, Clock::time_point until) {
    while (r == ncclInProgress && comm_ != nullptr) {
      ncclResult_t async = ncclSuccess;
      ncclResult_t q = api_->ncclCommGetAsyncError(comm_, &async);
      if (q != ncclSuccess) return q;
      if (async != ncclInProgress) return async;
      if (Clock::now() >= until) return ncclInProgress;
      std::this_thread::yield();
    }
    return r;
  }

  // The watchdog: NCCL's asynchronous error, and a collective pending too long.
  void watch() {
    cudaStreamCaptureMode mode = cudaStreamCaptureModeRelaxed;
    cudaThreadExchangeStreamCaptureMode(&mode);  // never disturb the executor's capture
    cudaSetDevice(device_);
    std::unique_lock<std::mutex> stop_lock(stop_mu_);
    while (!stop_cv_.wait_for(stop_lock, kWatchdogPeriod, [this] { return stop_; })) {
      if (failed_.load() != 0) continue;
      std::lock_guard<std::mutex> lock(mu_);
      if (comm_ == nullptr) continue;
      ncclResult_t async = ncclSuccess;
      ncclResult_t r = api_->ncclCommGetAsyncError(comm_, &async);
      if (r == ncclSuccess) r = async;
      if (r != ncclSuccess && r != ncclInProgress) {
        nccl_failure("the NCCL communicator (asynchronous error)", r, nullptr, 0);
        continue;
      }
      const Clock::time_point now = Clock::now();
      for (auto& kv : slots_) {
        Slot& s = kv.second;
        if (s.done == nullptr) continue;
        const cudaError_t q = cudaEventQuery(s.done);
        if (q != cudaErrorNotReady) {
          s.pending = false;
          continue;
        }
        if (!s.pending) {
          s.pending = true;
          s.since = now;
        } else if (now - s.since > deadline()) {
          abort_locked();
          fail(GRAPHC_COMM_TIMEOUT,
               prefix() + "allreduce of " + bucket_name(kv.first) + " (" + std::to_string(s.last_bytes) +
                   " bytes) did not complete within " + seconds(timeout_s_) +
                   " s (a peer rank died or hangs); the NCCL communicator was aborted",
               nullptr, 0);
          break;
        }
      }
    }
  }

  graphc_comm abi_{};
  const graphc_comm* host_;
  const cuda::NcclApi* api_;
  ncclComm_t comm_;  // nullptr once aborted or destroyed
  int device_;
  bool deterministic_;
  double timeout_s_;

  std::mutex mu_;  // NCCL calls, slots_, the scratch
  std::map<int, Slot> slots_;
  struct Scratch {
    void* ptr = nullptr;
    uint64_t bytes = 0;
  };
  Scratch scratch_;       // the plan's buckets (deterministic mode)
  Scratch host_scratch_;  // host_allreduce's
  std::vector<void*> retired_;
  cudaStream_t host_stream_ = nullptr;
  void* host_buffer_ = nullptr;
  uint64_t host_buffer_bytes_ = 0;

  std::mutex err_mu_;
  std::atomic<int> failed_{0};
  std::string first_error_;

  std::mutex stop_mu_;
  std::condition_variable stop_cv_;
  bool stop_ = false;
  std::thread watchdog_;
};

bool built() { return true; }

int load_library(std::string* path, uint64_t* version, std::string* err) {
  cuda::LoadedLibrary info;
  std::string missing;
  if (cuda::load_nccl(&info, &missing) == nullptr) {
    *err = missing;
    return GRAPHC_COMM_ERROR;
  }
  *path = info.path;
  *version = info.version;
  return 0;
}

int create(const graphc_comm* host, bool deterministic, double timeout_s, Communicator** out, std::string* err) {
  *out = nullptr;
  if (host == nullptr || host->abi_version != GRAPHC_COMM_ABI_VERSION) {
    *err = "the host communicator is not a graphc_comm of ABI version " + std::to_string(GRAPHC_COMM_ABI_VERSION);
    return GRAPHC_COMM_ERROR;
  }
  const int rank = host->rank, size = host->size;
  const std::string me = "rank " + std::to_string(rank) + ": ";
  if (!(timeout_s > 0)) timeout_s = 60;
  timeout_s = std::min(timeout_s, 1e9);  // "no timeout": 31 years (a finite deadline never overflows)
  const auto deadline =
      Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(timeout_s));

  // 1. What this rank has: the library, a GPU, (rank 0) the unique id.
  Facts mine;
  std::string problem;
  cuda::LoadedLibrary lib;
  const cuda::NcclApi* api = cuda::load_nccl(&lib, &problem);
  int device = -1;
  if (api != nullptr) {
    cudaError_t e = cudaGetDevice(&device);
    if (e == cudaSuccess) e = cudaDeviceGetPCIBusId(mine.bus, sizeof mine.bus, device);
    if (e != cudaSuccess) {
      problem = std::string("no usable CUDA device: ") + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")";
      // CUDA says "driver version is insufficient" when there is no driver at all: add what
      // device 'cuda' would say (device.h), which names the missing piece and the fix.
      const std::string status = cuda_status();
      if (!status.empty() && status.find("not built") == std::string::npos) problem += "; " + status;
    }
  }
  ncclUniqueId id;
  std::memset(&id, 0, sizeof id);
  if (problem.empty() && rank == 0) {
    const ncclResult_t r = api->ncclGetUniqueId(&id);
    if (r != ncclSuccess) problem = std::string("ncclGetUniqueId failed: ") + api->ncclGetErrorString(r);
  }
  mine.ok = problem.empty() ? 1 : 0;
  mine.version = static_cast<int32_t>(lib.version);
  gethostname(mine.host, sizeof mine.host - 1);
  std::snprintf(mine.problem, sizeof mine.problem, "%s", problem.c_str());

  // 2. The same verdict on every rank.
  std::vector<Facts> all(static_cast<size_t>(size));
  char buf[1024] = {};
  if (int code = host->allgather(host->self, &mine, sizeof mine, all.data(), buf, sizeof buf)) {
    *err = me + "cannot make the NCCL communicator: the host communicator's allgather failed: " + buf;
    return code;
  }
  for (int k = 0; k < size; ++k) {
    if (!all[k].ok) {
      all[k].problem[sizeof all[k].problem - 1] = '\0';
      *err = me + "cannot make the NCCL communicator: rank " + std::to_string(k) + ": " + all[k].problem;
      return GRAPHC_COMM_ERROR;
    }
  }
  for (int a = 0; a < size; ++a) {
    for (int b = a + 1; b < size; ++b) {
      if (std::strncmp(all[a].host, all[b].host, sizeof all[a].host) == 0 &&
          std::strncmp(all[a].bus, all[b].bus, sizeof all[a].bus) == 0) {
        all[a].host[sizeof all[a].host - 1] = '\0';
        all[a].bus[sizeof all[a].bus - 1] = '\0';
        *err = me + "cannot make the NCCL communicator: ranks " + std::to_string(a) + " and " + std::to_string(b) +
               " both use GPU " + all[a].bus + " on host " + all[a].host +
               "; NCCL needs one GPU per rank (graphc uses device 0 of CUDA_VISIBLE_DEVICES: give each rank its own, "
               "e.g. CUDA_VISIBLE_DEVICES=$OMPI_COMM_WORLD_LOCAL_RANK)";
        return GRAPHC_COMM_ERROR;
      }
    }
    if (all[a].version / 100 != all[0].version / 100) {
      *err = me + "cannot make the NCCL communicator: rank 0 loaded NCCL " + std::to_string(all[0].version) +
             " and rank " + std::to_string(a) + " NCCL " + std::to_string(all[a].version) + "; install one version";
      return GRAPHC_COMM_ERROR;
    }
  }

  // 3. Rank 0's id to everyone, then a nonblocking init polled up to the timeout.
  if (int code = host->broadcast(host->self, &id, sizeof id, 0, buf, sizeof buf)) {
    *err = me + "cannot make the NCCL communicator: broadcasting the NCCL id failed: " + buf;
    return code;
  }
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;
  ncclComm_t comm = nullptr;
  ncclResult_t r = api->ncclCommInitRankConfig(&comm, size, id, rank, &config);
  while (r == ncclInProgress && comm != nullptr) {
    ncclResult_t async = ncclSuccess;
    ncclResult_t q = api->ncclCommGetAsyncError(comm, &async);
    r = q != ncclSuccess ? q : async;
    if (r == ncclInProgress) {
      if (Clock::now() >= deadline) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
  if (r != ncclSuccess) {
    std::string why = r == ncclInProgress ? "did not complete within " + seconds(timeout_s) + " s (a peer rank died or hangs)"
                                          : std::string(api->ncclGetErrorString(r));
    const char* last = api->ncclGetLastError(comm);
    if (r != ncclInProgress && last != nullptr && last[0] != '\0') why += std::string(" (") + last + ")";
    if (comm != nullptr) api->ncclCommAbort(comm);
    *err = me + "ncclCommInitRankConfig over " + std::to_string(size) + " ranks on CUDA device " +
           std::to_string(device) + " failed: " + why;
    return r == ncclInProgress ? GRAPHC_COMM_TIMEOUT : GRAPHC_COMM_ERROR;
  }
  try {
    *out = new Communicator(host, api, comm, device, deterministic, timeout_s);
  } catch (const std::exception& e) {
    api->ncclCommAbort(comm);
    *err = me + "cannot make the NCCL communicator: " + e.what();
    return GRAPHC_COMM_ERROR;
  }
  return 0;
}

const graphc_comm* abi_of(Communicator* c) { return c == nullptr ? nullptr : c->abi(); }

int host_allreduce(Communicator* c, void* data, uint64_t count, int dtype, std::string* err) {
  try {
    return c->host_allreduce(data, count, dtype, err);
  } catch (const std::exception& e) {
    *err = e.what();
    return GRAPHC_COMM_ERROR;
  }
}

void destroy(Communicator* c) noexcept { delete c; }

}  // namespace nccl
}  // namespace graphc

#endif  // GRAPHC_NCCL_BUILT
