// executor.h — validates a plan once, prepares every step once, then runs them in order.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "arena.h"
#include "kernel_registry.h"
#include "plan.h"

namespace graphc {

class Executor {
 public:
  // Throws std::invalid_argument when the plan is inconsistent (message names the value
  // or the step's node and op) and std::runtime_error when memory cannot be allocated.
  // `poison`: after each step, fill the bytes of the values in its `frees` with 0xFF
  // (NaN for floats, -1 for integers), so a plan whose memory planner reuses bytes too
  // early produces visibly wrong results (GRAPHC_POISON=1).
  Executor(PlanDesc plan, int threads, bool poison = false);

  // Copies each feed (plan.feeds order; each exactly the value's nbytes) into its value,
  // then runs every step.  A kernel failure is rethrown as std::runtime_error naming the
  // step's node and op.  Serialised: one run at a time per executor.
  void run(const std::vector<const void*>& feeds);

  // Runs the plan `warmup + iters` times with `feeds` (as run() does), timing every
  // step's kernel call with std::chrono::steady_clock over the last `iters` runs.
  // Returns, per step, the median seconds of one call.  run() itself is never timed.
  std::vector<double> profile(const std::vector<const void*>& feeds, int iters, int warmup);

  const PlanDesc& plan() const { return plan_; }
  int threads() const { return threads_; }
  bool poison() const { return poison_; }
  // Storage of persistent tensor `index` (PlanDesc::persistent), shared by every
  // PERSISTENT value with that index; valid for the executor's lifetime.
  void* persistent_data(int32_t index) const;
  size_t persistent_nbytes(int32_t index) const;
  // Bytes of value `index` (VIEWs resolved); valid for the executor's lifetime.
  void* value_data(int32_t index) const;
  const ValueDesc& value(int32_t index) const;

 private:
  void validate_values();
  void allocate();
  void prepare_steps();
  std::string step_label(size_t i) const;
  void copy_feeds(const std::vector<const void*>& feeds);
  void run_step(size_t s);
  void poison_frees(size_t s);

  PlanDesc plan_;
  int threads_;
  bool poison_;
  Arena arena_;
  std::vector<AlignedBuffer> persistent_;
  std::vector<AlignedBuffer> constants_;
  std::vector<void*> value_ptrs_;
  std::vector<Kernel> kernels_;
  std::mutex run_mutex_;
};

}  // namespace graphc
