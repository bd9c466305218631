// executor.h — validates a plan once, prepares every step once, then runs them in order.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "comm_abi.h"
#include "device.h"
#include "kernel_registry.h"
#include "plan.h"
#include "validate.h"

namespace graphc {

struct ExecutorOptions {
  int threads = 1;
  // After each step, fill the bytes of the values in its `frees` with 0xFF (NaN for
  // floats, -1 for integers), so a plan whose memory planner reuses bytes too early
  // produces visibly wrong results (GRAPHC_POISON=1).
  bool poison = false;
  std::string device = "cpu";
  // Validation limits (memory limit, in-place rule); see validate.h.
  Limits limits;
  // The arena to allocate when this executor creates its shared state: at least the plan's
  // own arena_bytes (a program's first executor passes the largest entry plan's, so every
  // other entry attaches to it).  Ignored when attaching to an existing state.
  uint64_t arena_bytes = 0;
  // Data parallel (comm_abi.h): the communicator of this process's rank, given to every
  // kernel in KernelContext::comm (not in a dry prepare); nullptr: a world of one process.
  // Owned by the caller, alive as long as the executor (the Cython Executor keeps it).
  const graphc_comm* comm = nullptr;
};

// What the executors of one program share: the device, the arena, the persistent store (a
// program's variables and every optimizer's state) with its version counters, and the mutex
// that serialises their runs.  The runs of different entries never overlap, so one arena of
// the largest plan's size serves them all; a step of one entry writing a weight bumps the
// version that every other entry's kernels compare (KernelArgs::in_version), so what they
// cached from the old bytes (matmul's packed weights) is rebuilt.  A plain Executor makes a
// state of its own and behaves as if it were unshared.
struct SharedState {
  // Declared first so it is destroyed last: the buffers below free their memory through it.
  std::shared_ptr<Device> device;
  DeviceBuffer arena;
  // Per persistent tensor: its name, dtype and dims (bytes empty), checked on attach.
  std::vector<TensorData> persistent_desc;
  std::vector<DeviceBuffer> persistent;
  // KernelArgs::in_version of each persistent tensor: bumped by write_persistent, by feeds and
  // before each step that writes it (from one process-wide counter, so never reused).
  std::vector<uint64_t> persistent_version;
  // Serialises runs, profiles, bindings and variable accesses of every executor on the state.
  std::mutex mutex;
  // The message of the first CommFailure a run on this state raised, "" before: the
  // communicator is broken for good (comm_abi.h) and the replicas may have diverged, so every
  // executor on the state refuses later runs with it.  Guarded by `mutex`.
  std::string comm_failure;
};

class Executor;

// IO binding: some feeds and fetches redirected to the caller's memory, prepared once by
// Executor::bind and reused by every Executor::run(const Binding&, ...).  Redirecting a
// value re-prepares (into the binding) only the steps that touch it or a view of it; the
// executor's own kernels and pointers are never changed, so a plain run() and runs under
// other bindings stay as they were.  The caller keeps the redirected memory alive and
// unmoved while the binding exists; the binding must not outlive its executor.
class Binding {
 public:
  // Per feed / fetch (plan order): whether the kernels use the caller's memory in place.
  const std::vector<char>& feed_in_place() const { return feed_in_place_; }
  const std::vector<char>& fetch_in_place() const { return fetch_in_place_; }
  // How many steps were prepared again for this binding.
  size_t prepared_steps() const { return own_.size(); }

 private:
  friend class Executor;
  const Executor* owner_ = nullptr;
  std::vector<void*> value_ptrs_;         // the executor's, with the redirected roots and their views replaced
  std::vector<Kernel> own_;               // the re-prepared kernels
  std::vector<const Kernel*> kernels_;    // per step: into own_ or the executor's kernels
  std::vector<char> caller_memory_;       // per value: its bytes are the caller's (never poisoned)
  std::vector<char> feed_in_place_, fetch_in_place_;
};

// Thread safety: every public member may be called from several threads at once; run,
// profile and the variable accessors are serialised by one mutex (SharedState::mutex, shared
// by every executor of a program), and run() copies the fetches out before it lets the next
// caller in.
class Executor {
 public:
  // In this order: opens the device (DeviceUnavailable), validates the plan
  // (std::invalid_argument naming the value or step; ResourceError above the memory
  // limit), allocates (ResourceError), then builds every step's kernel
  // (std::invalid_argument naming the step's node and op).
  //
  // With `share` (another executor's shared_state()), the executor allocates no arena and no
  // persistent store of its own: it attaches to those of `share`, after checking that the
  // device is the same, that its plan's persistent list equals the state's (names, dtypes,
  // dims, in order; the plan's init data is ignored) and that the arena is large enough —
  // std::invalid_argument naming the first difference otherwise.
  Executor(PlanDesc plan, const ExecutorOptions& options, std::shared_ptr<SharedState> share = nullptr);
  Executor(PlanDesc plan, int threads, bool poison = false);
  ~Executor();
  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;

  // A dry prepare: validates `plan` (no memory limit: nothing is allocated) and calls the
  // factory of every step from device `device`'s registry with fake, aligned, non-null
  // tensor pointers and KernelContext::device == nullptr (kernel_registry.h), then drops the
  // kernels unrun.  Needs only the registry, not the device: "cuda" works on a machine
  // without a GPU (in a CUDA build).  std::invalid_argument naming the step (as the
  // constructor's) for a step its factory refuses; DeviceUnavailable for a device this
  // build has no kernels for.
  static void prepare_only(const PlanDesc& plan, const std::string& device);

  // Copies each feed (plan.feeds order; each exactly the value's nbytes, host memory)
  // in, runs every step, and copies each fetch (plan.fetches order) to `fetches[k]`
  // (host memory of the value's nbytes; nullptr: skip it).  A kernel failure is
  // rethrown as std::runtime_error naming the step's node and op; a collective's failure as
  // CommFailure naming the step, after which every run, bound run and profile of every
  // executor on the shared state throws CommFailure at once ("refuses further runs").
  void run(const std::vector<const void*>& feeds, const std::vector<void*>& fetches);
  void run(const std::vector<const void*>& feeds) { run(feeds, {}); }

  // Why feed / fetch `k` (plan order) cannot be redirected to the caller's memory, or ""
  // when it can.  On CUDA none can (feeds and fetches go through pinned staging).  A feed can (validate_plan: an arena value no step writes), unless it
  // has no bytes.  A fetch can when its root (the value itself, or what it views) is an
  // arena value written by a step, not a feed, not a workspace, not the root of another
  // fetch.  std::invalid_argument for k out of range.
  std::string feed_refusal(size_t k) const;
  std::string fetch_refusal(size_t k) const;

  // A binding where feed k's kernels read `feeds[k]` and fetch k's producer writes
  // `fetches[k]` in place (nullptr: keep the arena; `fetches` may be empty).  Each
  // non-null pointer must be aligned to its dtype's size, point to the value's nbytes,
  // and be allowed by feed_refusal/fetch_refusal; no two fetch pointers may be equal.
  // std::invalid_argument otherwise (naming the value), or naming the step whose
  // kernel refused the new pointers.  Serialised with runs (the factories run under the lock).
  std::unique_ptr<Binding> bind(const std::vector<const void*>& feeds, const std::vector<void*>& fetches);

  // run() under `binding`: `feeds[k]` is copied in when not null (it must be null only
  // for feeds the binding redirected, or of no bytes); `fetches[k]` (when `fetches` is
  // not empty) receives a copy of fetch k when not null.
  void run(const Binding& binding, const std::vector<const void*>& feeds, const std::vector<void*>& fetches);

  // Runs the plan `warmup + iters` times with `feeds` (as run() does), timing every
  // step's kernel call with std::chrono::steady_clock over the last `iters` runs.
  // Returns, per step, the median seconds of one call.  run() itself is never timed.
  // On CUDA the steps run one by one (no graph), the device synchronised around each.
  std::vector<double> profile(const std::vector<const void*>& feeds, int iters, int warmup);

  const PlanDesc& plan() const { return plan_; }
  int threads() const { return options_.threads; }
  const graphc_comm* comm() const { return options_.comm; }
  bool poison() const { return options_.poison; }
  const Device& device() const { return *device_; }
  // CUDA: whether run() replays a captured graph: "captured", "not yet" (before the 2nd run),
  // "off (GRAPHC_CUDA_GRAPHS=0)", "off (GRAPHC_CUDA_SYNC=1)", "failed: <why>" (the capture
  // failed and runs go step by step).  "" on other devices.
  std::string cuda_graph_state() const;
  // The state this executor runs on (to attach another executor of the same program).
  std::shared_ptr<SharedState> shared_state() const { return share_; }
  // The bytes of the (shared) arena: at least plan().arena_bytes.
  size_t arena_nbytes() const { return share_->arena.size(); }

  // Host copies of persistent tensor `index` (PlanDesc::persistent, shared by every
  // PERSISTENT value with that index) and of value `index` (VIEWs resolved; an arena value's
  // bytes are the last run's on the shared state, which may be another entry's).  `nbytes`
  // must be the tensor's size; std::invalid_argument otherwise.
  void read_persistent(int32_t index, void* dst, size_t nbytes);
  void write_persistent(int32_t index, const void* src, size_t nbytes);
  void read_value(int32_t index, void* dst, size_t nbytes);
  size_t persistent_nbytes(int32_t index) const;
  const ValueDesc& value(int32_t index) const;

 private:
  void reserve_memory(bool attaching);
  void allocate();
  void attach(const std::shared_ptr<SharedState>& share);
  void point_values();
  void prepare_steps();
  Kernel make_kernel(size_t s, const std::vector<void*>& ptrs) const;
  std::string step_label(size_t i) const;
  void check_feed_count(size_t n) const;
  void copy_feeds(const std::vector<const void*>& feeds, const std::vector<void*>& ptrs);
  void run_steps(const std::vector<const Kernel*>& kernels, const std::vector<void*>& ptrs,
                 const std::vector<char>* caller_memory);
  void copy_fetches(const std::vector<void*>& fetches, const std::vector<void*>& ptrs);
  void run_step(const Kernel& k, size_t s);
  // Called under the state's mutex: CommFailure when an earlier run failed in a collective.
  void check_comm_usable() const;
  // Runs `body` (a run under the state's mutex); a CommFailure out of it is recorded in the
  // shared state before it propagates.
  template <class F>
  void guard_comm(F body);
  void poison_frees(size_t s, const std::vector<void*>& ptrs, const std::vector<char>* caller_memory);
  int32_t root(int32_t idx) const;
  void check_persistent(int32_t index, size_t nbytes) const;
  void find_written_persistent();
  const uint64_t* read_only_version(int32_t value_index) const;

  PlanDesc plan_;
  ExecutorOptions options_;
  std::shared_ptr<Device> device_;
  // The arena, persistent store, versions and mutex (shared with the other executors of a
  // program, or this executor's alone).  Constants are the plan's own.
  std::shared_ptr<SharedState> share_;
  std::vector<DeviceBuffer> constants_;
  std::vector<void*> value_ptrs_;
  std::vector<char> persistent_written_;  // by a step or as a feed: never read-only
  std::vector<Kernel> kernels_;
  std::vector<const Kernel*> kernel_ptrs_;  // &kernels_[s]: the plain run's step list
  std::vector<int32_t> producer_;           // per value: the step that writes it, -1 for none

  // CUDA (executor.cc, compiled only with GRAPHC_WITH_CUDA): pinned staging for feeds and
  // fetches, the device-side error slot and the captured graph; nullptr on other devices.
  // Declared last: destroyed first, while the device is still open.
  struct CudaState;
  void* cuda_error_slot() const;
  void cuda_open();
  void cuda_run(const std::vector<const void*>& feeds, const std::vector<void*>& fetches);
  void cuda_launch_run();
  void cuda_enqueue(bool sync_each_step);
  void cuda_sync_step(size_t s);
  void cuda_check_slot();
  void cuda_profile_begin();
  std::unique_ptr<CudaState> cuda_;
};

}  // namespace graphc
