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
  Executor(PlanDesc plan, int threads);

  // Copies each feed (plan.feeds order; each exactly the value's nbytes) into its value,
  // then runs every step.  A kernel failure is rethrown as std::runtime_error naming the
  // step's node and op.  Serialised: one run at a time per executor.
  void run(const std::vector<const void*>& feeds);

  const PlanDesc& plan() const { return plan_; }
  int threads() const { return threads_; }
  // Bytes of value `index` (VIEWs resolved); valid for the executor's lifetime.
  void* value_data(int32_t index) const;
  const ValueDesc& value(int32_t index) const;

 private:
  void validate_values();
  void allocate();
  void prepare_steps();
  std::string step_label(size_t i) const;

  PlanDesc plan_;
  int threads_;
  Arena arena_;
  std::vector<AlignedBuffer> persistent_;
  std::vector<AlignedBuffer> constants_;
  std::vector<void*> value_ptrs_;
  std::vector<Kernel> kernels_;
  std::mutex run_mutex_;
};

}  // namespace graphc
