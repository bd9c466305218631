// executor.h — validates a plan once, prepares every step once, then runs them in order.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

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
};

// Thread safety: every public member may be called from several threads at once; run,
// profile and the variable accessors are serialised by one mutex, and run() copies the
// fetches out before it lets the next caller in.
class Executor {
 public:
  // In this order: opens the device (DeviceUnavailable), validates the plan
  // (std::invalid_argument naming the value or step; ResourceError above the memory
  // limit), allocates (ResourceError), then builds every step's kernel
  // (std::invalid_argument naming the step's node and op).
  Executor(PlanDesc plan, const ExecutorOptions& options);
  Executor(PlanDesc plan, int threads, bool poison = false);

  // Copies each feed (plan.feeds order; each exactly the value's nbytes, host memory)
  // in, runs every step, and copies each fetch (plan.fetches order) to `fetches[k]`
  // (host memory of the value's nbytes; nullptr: skip it).  A kernel failure is
  // rethrown as std::runtime_error naming the step's node and op.
  void run(const std::vector<const void*>& feeds, const std::vector<void*>& fetches);
  void run(const std::vector<const void*>& feeds) { run(feeds, {}); }

  // Runs the plan `warmup + iters` times with `feeds` (as run() does), timing every
  // step's kernel call with std::chrono::steady_clock over the last `iters` runs.
  // Returns, per step, the median seconds of one call.  run() itself is never timed.
  std::vector<double> profile(const std::vector<const void*>& feeds, int iters, int warmup);

  const PlanDesc& plan() const { return plan_; }
  int threads() const { return options_.threads; }
  bool poison() const { return options_.poison; }
  const Device& device() const { return *device_; }

  // Host copies of persistent tensor `index` (PlanDesc::persistent, shared by every
  // PERSISTENT value with that index) and of value `index` (VIEWs resolved).  `nbytes`
  // must be the tensor's size; std::invalid_argument otherwise.
  void read_persistent(int32_t index, void* dst, size_t nbytes);
  void write_persistent(int32_t index, const void* src, size_t nbytes);
  void read_value(int32_t index, void* dst, size_t nbytes);
  size_t persistent_nbytes(int32_t index) const;
  const ValueDesc& value(int32_t index) const;

 private:
  void allocate();
  void prepare_steps();
  std::string step_label(size_t i) const;
  void copy_feeds(const std::vector<const void*>& feeds);
  void run_step(size_t s);
  void poison_frees(size_t s);
  void check_persistent(int32_t index, size_t nbytes) const;
  void find_written_persistent();
  const uint64_t* read_only_version(int32_t value_index) const;

  PlanDesc plan_;
  ExecutorOptions options_;
  std::shared_ptr<Device> device_;
  DeviceBuffer arena_;
  std::vector<DeviceBuffer> persistent_;
  std::vector<DeviceBuffer> constants_;
  std::vector<void*> value_ptrs_;
  // KernelArgs::in_version: bumped by write_persistent; constants point at kConstantVersion.
  std::vector<uint64_t> persistent_version_;
  std::vector<char> persistent_written_;  // by a step or as a feed: never read-only
  std::vector<Kernel> kernels_;
  std::mutex mutex_;
};

}  // namespace graphc
