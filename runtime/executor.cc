#include "executor.h"

#include <algorithm>
#include <chrono>
#include <new>
#include <stdexcept>
#include <utility>

namespace graphc {

Executor::Executor(PlanDesc plan, int threads, bool poison)
    : Executor(std::move(plan), ExecutorOptions{threads, poison, "cpu", Limits{}}) {}

Executor::Executor(PlanDesc plan, const ExecutorOptions& options) : plan_(std::move(plan)), options_(options) {
  if (options_.threads < 1) {
    throw std::invalid_argument("threads must be >= 1, got " + std::to_string(options_.threads));
  }
  device_ = make_device(options_.device);
  KernelRegistry::for_device(device_->name());  // DeviceUnavailable before any work
  validate_plan(plan_, options_.limits);
  try {
    allocate();
    prepare_steps();
  } catch (const std::bad_alloc&) {
    throw ResourceError("out of memory while loading the plan on " + device_->name());
  }
}

void Executor::allocate() {
  Device* dev = device_.get();
  arena_ = DeviceBuffer(dev, plan_.arena_bytes);
  auto fill = [dev](std::vector<DeviceBuffer>& bufs, const std::vector<TensorData>& list) {
    bufs.reserve(list.size());
    for (const TensorData& t : list) {
      uint64_t nbytes = 0;
      tensor_nbytes(t.dims, t.dtype, &nbytes);  // validated
      DeviceBuffer buf(dev, nbytes);
      // validate_plan allows empty data only for persistent tensors: they start as zeros.
      if (t.bytes.size() == nbytes) dev->copy_host_to_device(buf.data(), t.bytes.data(), nbytes);
      bufs.push_back(std::move(buf));
    }
  };
  fill(persistent_, plan_.persistent);
  fill(constants_, plan_.constants);
  value_ptrs_.assign(plan_.values.size(), nullptr);
  for (size_t i = 0; i < plan_.values.size(); ++i) {
    const ValueDesc& v = plan_.values[i];
    switch (v.storage) {
      case Storage::Arena: value_ptrs_[i] = arena_.data() + v.offset; break;
      case Storage::Persistent: value_ptrs_[i] = persistent_[v.index].data(); break;
      case Storage::Constant: value_ptrs_[i] = constants_[v.index].data(); break;
      case Storage::View: break;
    }
  }
  // validate_plan: a view aliases a root value directly.
  for (size_t i = 0; i < plan_.values.size(); ++i) {
    if (plan_.values[i].storage == Storage::View) value_ptrs_[i] = value_ptrs_[plan_.values[i].alias_of];
  }
}

std::string Executor::step_label(size_t i) const {
  const StepDesc& st = plan_.steps[i];
  return "step " + std::to_string(i) + " (node '" + shorten(st.node) + "', op '" + shorten(st.op) + "')";
}

namespace {
const uint64_t kConstantVersion = 0;
}

// Which persistent tensors a run may write (a step's output, or a feed): the others, and
// constants, are read-only across runs, and kernels may cache what they derive from them.
void Executor::find_written_persistent() {
  persistent_version_.assign(plan_.persistent.size(), 0);
  persistent_written_.assign(plan_.persistent.size(), 0);
  auto mark = [this](int32_t idx) {
    const ValueDesc& v = plan_.values[idx];
    const ValueDesc& root = v.storage == Storage::View ? plan_.values[v.alias_of] : v;
    if (root.storage == Storage::Persistent) persistent_written_[root.index] = 1;
  };
  for (const StepDesc& st : plan_.steps) {
    for (int32_t idx : st.outputs) mark(idx);
  }
  for (int32_t idx : plan_.feeds) mark(idx);
}

const uint64_t* Executor::read_only_version(int32_t idx) const {
  const ValueDesc& v = plan_.values[idx];
  const ValueDesc& root = v.storage == Storage::View ? plan_.values[v.alias_of] : v;
  if (root.storage == Storage::Constant) return &kConstantVersion;
  if (root.storage == Storage::Persistent && !persistent_written_[root.index]) {
    return &persistent_version_[root.index];
  }
  return nullptr;
}

void Executor::prepare_steps() {
  const KernelRegistry& reg = KernelRegistry::for_device(device_->name());
  find_written_persistent();
  const KernelContext ctx{options_.threads, device_.get(), device_->stream()};
  kernels_.reserve(plan_.steps.size());
  for (size_t s = 0; s < plan_.steps.size(); ++s) {
    const StepDesc& st = plan_.steps[s];
    auto ref = [this](int32_t idx) {
      const ValueDesc& v = plan_.values[idx];
      return TensorRef{value_ptrs_[idx], v.dtype, v.dims};
    };
    std::vector<TensorRef> ins, outs;
    for (int32_t idx : st.inputs) ins.push_back(ref(idx));
    for (int32_t idx : st.outputs) outs.push_back(ref(idx));
    DType key = !ins.empty() ? ins[0].dtype : (!outs.empty() ? outs[0].dtype : DType::Invalid);
    const KernelFactory* factory = reg.find(st.op, key);
    if (factory == nullptr) {
      if (!reg.has_op(st.op)) {
        throw std::invalid_argument(step_label(s) + ": unknown op '" + shorten(st.op) + "' (no " + device_->name() +
                                    " kernel)");
      }
      throw std::invalid_argument(step_label(s) + ": no " + device_->name() + " kernel for dtype " +
                                  dtype_name(key));
    }
    KernelArgs args(st, std::move(ins), std::move(outs), ctx);
    args.in_version.reserve(st.inputs.size());
    for (int32_t idx : st.inputs) args.in_version.push_back(read_only_version(idx));
    try {
      kernels_.push_back((*factory)(args));
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument(step_label(s) + ": " + e.what());
    } catch (const std::bad_alloc&) {
      throw;
    } catch (const std::exception& e) {
      // A factory must throw std::invalid_argument for a bad step; anything else is
      // still the plan's fault at load time.
      throw std::invalid_argument(step_label(s) + ": " + e.what());
    }
  }
}

const ValueDesc& Executor::value(int32_t index) const {
  if (index < 0 || static_cast<size_t>(index) >= plan_.values.size()) {
    throw std::invalid_argument("value index " + std::to_string(index) + " out of range");
  }
  return plan_.values[index];
}

size_t Executor::persistent_nbytes(int32_t index) const {
  if (index < 0 || static_cast<size_t>(index) >= persistent_.size()) {
    throw std::invalid_argument("persistent index " + std::to_string(index) + " out of range");
  }
  return persistent_[index].size();
}

void Executor::check_persistent(int32_t index, size_t nbytes) const {
  size_t have = persistent_nbytes(index);
  if (nbytes != have) {
    throw std::invalid_argument("persistent " + std::to_string(index) + " ('" + shorten(plan_.persistent[index].name) +
                                "') has " + std::to_string(have) + " bytes, the buffer has " + std::to_string(nbytes));
  }
}

void Executor::read_persistent(int32_t index, void* dst, size_t nbytes) {
  check_persistent(index, nbytes);
  std::lock_guard<std::mutex> lock(mutex_);
  device_->copy_device_to_host(dst, persistent_[index].data(), nbytes);
  device_->synchronize();
}

void Executor::write_persistent(int32_t index, const void* src, size_t nbytes) {
  check_persistent(index, nbytes);
  std::lock_guard<std::mutex> lock(mutex_);
  device_->copy_host_to_device(persistent_[index].data(), src, nbytes);
  device_->synchronize();
  ++persistent_version_[index];  // kernels rebuild what they cached from it
}

void Executor::read_value(int32_t index, void* dst, size_t nbytes) {
  const ValueDesc& v = value(index);
  if (nbytes != v.nbytes) {
    throw std::invalid_argument("value " + std::to_string(index) + " ('" + shorten(v.name) + "') has " +
                                std::to_string(v.nbytes) + " bytes, the buffer has " + std::to_string(nbytes));
  }
  std::lock_guard<std::mutex> lock(mutex_);
  device_->copy_device_to_host(dst, value_ptrs_[index], nbytes);
  device_->synchronize();
}

void Executor::copy_feeds(const std::vector<const void*>& feeds) {
  if (feeds.size() != plan_.feeds.size()) {
    throw std::invalid_argument("expected " + std::to_string(plan_.feeds.size()) + " feeds, got " +
                                std::to_string(feeds.size()));
  }
  for (size_t i = 0; i < feeds.size(); ++i) {
    const ValueDesc& v = plan_.values[plan_.feeds[i]];
    if (v.nbytes == 0) continue;
    if (feeds[i] == nullptr) throw std::invalid_argument("feed '" + shorten(v.name) + "' has no data");
    device_->copy_host_to_device(value_ptrs_[plan_.feeds[i]], feeds[i], v.nbytes);
  }
}

inline void Executor::run_step(size_t s) {
  try {
    kernels_[s]();
  } catch (const std::bad_alloc&) {
    throw ResourceError(step_label(s) + ": out of memory");
  } catch (const std::exception& e) {
    throw std::runtime_error(step_label(s) + ": " + e.what());
  }
}

void Executor::poison_frees(size_t s) {
  for (int32_t idx : plan_.steps[s].frees) {
    const ValueDesc& v = plan_.values[idx];
    device_->memset(value_ptrs_[idx], 0xFF, v.nbytes);
  }
}

void Executor::run(const std::vector<const void*>& feeds, const std::vector<void*>& fetches) {
  if (!fetches.empty() && fetches.size() != plan_.fetches.size()) {
    throw std::invalid_argument("expected " + std::to_string(plan_.fetches.size()) + " fetch buffers, got " +
                                std::to_string(fetches.size()));
  }
  std::lock_guard<std::mutex> lock(mutex_);
  copy_feeds(feeds);
  const size_t n = kernels_.size();
  if (options_.poison) {
    for (size_t s = 0; s < n; ++s) {
      run_step(s);
      poison_frees(s);
    }
  } else {
    for (size_t s = 0; s < n; ++s) run_step(s);
  }
  // Still under the lock: the next run may overwrite these bytes.
  for (size_t k = 0; k < fetches.size(); ++k) {
    if (fetches[k] == nullptr) continue;
    int32_t idx = plan_.fetches[k];
    device_->copy_device_to_host(fetches[k], value_ptrs_[idx], plan_.values[idx].nbytes);
  }
  device_->synchronize();
}

std::vector<double> Executor::profile(const std::vector<const void*>& feeds, int iters, int warmup) {
  if (iters < 1) throw std::invalid_argument("iters must be >= 1, got " + std::to_string(iters));
  if (warmup < 0) throw std::invalid_argument("warmup must be >= 0, got " + std::to_string(warmup));
  std::lock_guard<std::mutex> lock(mutex_);
  using Clock = std::chrono::steady_clock;
  const size_t n = kernels_.size();
  // times[s * iters + it]: seconds of step s in timed run it.
  std::vector<double> times(n * static_cast<size_t>(iters), 0.0);
  for (int r = 0; r < warmup + iters; ++r) {
    copy_feeds(feeds);
    const bool timed = r >= warmup;
    const size_t it = timed ? static_cast<size_t>(r - warmup) : 0;
    for (size_t s = 0; s < n; ++s) {
      auto t0 = Clock::now();
      run_step(s);
      device_->synchronize();
      auto t1 = Clock::now();
      if (timed) times[s * iters + it] = std::chrono::duration<double>(t1 - t0).count();
      if (options_.poison) poison_frees(s);
    }
  }
  std::vector<double> medians(n, 0.0);
  for (size_t s = 0; s < n; ++s) {
    auto first = times.begin() + s * iters;
    auto last = first + iters;
    std::sort(first, last);
    medians[s] = (iters % 2) ? first[iters / 2] : 0.5 * (first[iters / 2 - 1] + first[iters / 2]);
  }
  return medians;
}

}  // namespace graphc
