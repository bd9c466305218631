#include "executor.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <stdexcept>
#include <utility>

namespace graphc {

namespace {

constexpr int64_t kMaxElems = int64_t(1) << 56;

// numel of dims, or -1 when a dim is negative or the product overflows.
int64_t checked_numel(const std::vector<int64_t>& dims) {
  int64_t n = 1;
  for (int64_t d : dims) {
    if (d < 0) return -1;
    if (d != 0 && n > kMaxElems / d) return -1;
    n *= d;
  }
  return n;
}

}  // namespace

Executor::Executor(PlanDesc plan, int threads, bool poison)
    : plan_(std::move(plan)), threads_(threads), poison_(poison) {
  if (threads_ < 1) throw std::invalid_argument("threads must be >= 1, got " + std::to_string(threads));
  validate_values();
  allocate();
  prepare_steps();
}

void Executor::validate_values() {
  const size_t nv = plan_.values.size();
  auto check_index = [nv](int32_t idx, const std::string& what) {
    if (idx < 0 || static_cast<size_t>(idx) >= nv) {
      throw std::invalid_argument(what + " refers to value " + std::to_string(idx) +
                                  ", outside [0, " + std::to_string(nv) + ")");
    }
  };
  auto check_tensor = [](const TensorData& t, const std::string& what) {
    if (!dtype_valid(t.dtype)) throw std::invalid_argument(what + " has an invalid dtype");
    if (checked_numel(t.dims) < 0) {
      throw std::invalid_argument(what + " has invalid dims " + format_dims(t.dims));
    }
  };
  for (size_t i = 0; i < plan_.persistent.size(); ++i) {
    check_tensor(plan_.persistent[i], "persistent " + std::to_string(i) + " ('" + plan_.persistent[i].name + "')");
  }
  for (size_t i = 0; i < plan_.constants.size(); ++i) {
    check_tensor(plan_.constants[i], "constant " + std::to_string(i));
  }
  for (size_t i = 0; i < nv; ++i) {
    const ValueDesc& v = plan_.values[i];
    const std::string what = "value " + std::to_string(i) + " ('" + v.name + "')";
    if (!dtype_valid(v.dtype)) throw std::invalid_argument(what + " has an invalid dtype");
    int64_t numel = checked_numel(v.dims);
    if (numel < 0) throw std::invalid_argument(what + " has invalid dims " + format_dims(v.dims));
    uint64_t nbytes = static_cast<uint64_t>(numel) * dtype_size(v.dtype);
    if (v.nbytes != nbytes) {
      throw std::invalid_argument(what + " claims " + std::to_string(v.nbytes) + " bytes, but " +
                                  dtype_name(v.dtype) + format_dims(v.dims) + " is " +
                                  std::to_string(nbytes));
    }
    switch (v.storage) {
      case Storage::Arena:
        if (v.offset % kAlignment != 0) {
          throw std::invalid_argument(what + " has arena offset " + std::to_string(v.offset) +
                                      ", not 64-byte aligned");
        }
        if (v.offset > plan_.arena_bytes || v.nbytes > plan_.arena_bytes - v.offset) {
          throw std::invalid_argument(what + " spans bytes [" + std::to_string(v.offset) + ", " +
                                      std::to_string(v.offset + v.nbytes) +
                                      ") outside the arena of " +
                                      std::to_string(plan_.arena_bytes) + " bytes");
        }
        break;
      case Storage::Persistent:
      case Storage::Constant: {
        const auto& list = v.storage == Storage::Persistent ? plan_.persistent : plan_.constants;
        const char* kind = v.storage == Storage::Persistent ? "persistent" : "constant";
        if (v.index < 0 || static_cast<size_t>(v.index) >= list.size()) {
          throw std::invalid_argument(what + " refers to " + kind + " " + std::to_string(v.index) +
                                      ", outside [0, " + std::to_string(list.size()) + ")");
        }
        const TensorData& t = list[v.index];
        // Same dtype and element count: the bytes mean the same thing (a writer may
        // spell a scalar as dims [] or [1]).
        if (t.dtype != v.dtype || checked_numel(t.dims) != numel) {
          throw std::invalid_argument(what + " is " + dtype_name(v.dtype) + format_dims(v.dims) +
                                      " but its " + kind + " tensor is " + dtype_name(t.dtype) +
                                      format_dims(t.dims));
        }
        break;
      }
      case Storage::View: {
        check_index(v.alias_of, what + " (a view)");
        // Follow the alias chain to its root; a cycle is a corrupt plan.
        size_t hops = 0;
        int32_t root = static_cast<int32_t>(i);
        while (plan_.values[root].storage == Storage::View) {
          root = plan_.values[root].alias_of;
          check_index(root, what + " (a view)");
          if (++hops > nv) throw std::invalid_argument(what + " is a view in an alias cycle");
        }
        if (plan_.values[root].nbytes < v.nbytes) {
          throw std::invalid_argument(what + " views " + std::to_string(v.nbytes) +
                                      " bytes of value '" + plan_.values[root].name +
                                      "', which has only " + std::to_string(plan_.values[root].nbytes));
        }
        break;
      }
      default:
        throw std::invalid_argument(what + " has an unknown storage kind " +
                                    std::to_string(static_cast<int32_t>(v.storage)));
    }
  }
  for (size_t i = 0; i < plan_.feeds.size(); ++i) {
    check_index(plan_.feeds[i], "feed " + std::to_string(i));
    Storage s = plan_.values[plan_.feeds[i]].storage;
    if (s == Storage::Constant || s == Storage::View) {
      throw std::invalid_argument("feed " + std::to_string(i) + " ('" + plan_.values[plan_.feeds[i]].name +
                                  "') must be an arena or persistent value");
    }
  }
  for (size_t i = 0; i < plan_.fetches.size(); ++i) check_index(plan_.fetches[i], "fetch " + std::to_string(i));
  for (size_t s = 0; s < plan_.steps.size(); ++s) {
    const StepDesc& st = plan_.steps[s];
    for (int32_t idx : st.inputs) check_index(idx, step_label(s) + " input");
    for (int32_t idx : st.outputs) {
      check_index(idx, step_label(s) + " output");
      Storage so = plan_.values[idx].storage;
      if (so == Storage::Constant || so == Storage::View) {
        throw std::invalid_argument(step_label(s) + " writes value '" + plan_.values[idx].name +
                                    "', which is a read-only " +
                                    (so == Storage::Constant ? "constant" : "view"));
      }
    }
    for (int32_t idx : st.frees) {
      check_index(idx, step_label(s) + " frees");
      if (plan_.values[idx].storage != Storage::Arena) {
        throw std::invalid_argument(step_label(s) + " frees value " + std::to_string(idx) + " ('" +
                                    plan_.values[idx].name + "'), which is not an arena value");
      }
    }
  }
}

void Executor::allocate() {
  arena_ = Arena(plan_.arena_bytes);
  auto fill = [](std::vector<AlignedBuffer>& bufs, const std::vector<TensorData>& list,
                 bool allow_empty, const char* kind) {
    bufs.reserve(list.size());
    for (size_t i = 0; i < list.size(); ++i) {
      const TensorData& t = list[i];
      size_t nbytes = static_cast<size_t>(checked_numel(t.dims)) * dtype_size(t.dtype);
      AlignedBuffer buf(nbytes);
      if (t.bytes.size() == nbytes) {
        if (nbytes) std::memcpy(buf.data(), t.bytes.data(), nbytes);
      } else if (!(allow_empty && t.bytes.empty())) {
        throw std::invalid_argument(std::string(kind) + " " + std::to_string(i) + " ('" + t.name +
                                    "') has " + std::to_string(t.bytes.size()) +
                                    " bytes of data, expected " + std::to_string(nbytes));
      }
      bufs.push_back(std::move(buf));
    }
  };
  // A persistent tensor without data starts as zeros (optimizer state).
  fill(persistent_, plan_.persistent, true, "persistent");
  fill(constants_, plan_.constants, false, "constant");
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
  for (size_t i = 0; i < plan_.values.size(); ++i) {
    int32_t root = static_cast<int32_t>(i);
    while (plan_.values[root].storage == Storage::View) root = plan_.values[root].alias_of;
    value_ptrs_[i] = value_ptrs_[root];
  }
}

std::string Executor::step_label(size_t i) const {
  const StepDesc& st = plan_.steps[i];
  return "step " + std::to_string(i) + " (node '" + st.node + "', op '" + st.op + "')";
}

void Executor::prepare_steps() {
  const KernelRegistry& reg = KernelRegistry::cpu();
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
        throw std::invalid_argument(step_label(s) + ": unknown op '" + st.op + "' (no CPU kernel)");
      }
      throw std::invalid_argument(step_label(s) + ": no CPU kernel for dtype " + dtype_name(key));
    }
    KernelArgs args(st, std::move(ins), std::move(outs), KernelContext{threads_});
    try {
      kernels_.push_back((*factory)(args));
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument(step_label(s) + ": " + e.what());
    }
  }
}

void* Executor::value_data(int32_t index) const {
  if (index < 0 || static_cast<size_t>(index) >= value_ptrs_.size()) {
    throw std::invalid_argument("value index " + std::to_string(index) + " out of range");
  }
  return value_ptrs_[index];
}

const ValueDesc& Executor::value(int32_t index) const {
  if (index < 0 || static_cast<size_t>(index) >= plan_.values.size()) {
    throw std::invalid_argument("value index " + std::to_string(index) + " out of range");
  }
  return plan_.values[index];
}

void* Executor::persistent_data(int32_t index) const {
  if (index < 0 || static_cast<size_t>(index) >= persistent_.size()) {
    throw std::invalid_argument("persistent index " + std::to_string(index) + " out of range");
  }
  return persistent_[index].data();
}

size_t Executor::persistent_nbytes(int32_t index) const {
  if (index < 0 || static_cast<size_t>(index) >= persistent_.size()) {
    throw std::invalid_argument("persistent index " + std::to_string(index) + " out of range");
  }
  return persistent_[index].size();
}

void Executor::copy_feeds(const std::vector<const void*>& feeds) {
  if (feeds.size() != plan_.feeds.size()) {
    throw std::invalid_argument("expected " + std::to_string(plan_.feeds.size()) + " feeds, got " +
                                std::to_string(feeds.size()));
  }
  for (size_t i = 0; i < feeds.size(); ++i) {
    const ValueDesc& v = plan_.values[plan_.feeds[i]];
    if (v.nbytes == 0) continue;
    if (feeds[i] == nullptr) throw std::invalid_argument("feed '" + v.name + "' has no data");
    std::memcpy(value_ptrs_[plan_.feeds[i]], feeds[i], v.nbytes);
  }
}

inline void Executor::run_step(size_t s) {
  try {
    kernels_[s]();
  } catch (const std::exception& e) {
    throw std::runtime_error(step_label(s) + ": " + e.what());
  }
}

void Executor::poison_frees(size_t s) {
  for (int32_t idx : plan_.steps[s].frees) {
    const ValueDesc& v = plan_.values[idx];
    if (v.nbytes) std::memset(value_ptrs_[idx], 0xFF, v.nbytes);
  }
}

void Executor::run(const std::vector<const void*>& feeds) {
  std::lock_guard<std::mutex> lock(run_mutex_);
  copy_feeds(feeds);
  const size_t n = kernels_.size();
  if (poison_) {
    for (size_t s = 0; s < n; ++s) {
      run_step(s);
      poison_frees(s);
    }
  } else {
    for (size_t s = 0; s < n; ++s) run_step(s);
  }
}

std::vector<double> Executor::profile(const std::vector<const void*>& feeds, int iters, int warmup) {
  if (iters < 1) throw std::invalid_argument("iters must be >= 1, got " + std::to_string(iters));
  if (warmup < 0) throw std::invalid_argument("warmup must be >= 0, got " + std::to_string(warmup));
  std::lock_guard<std::mutex> lock(run_mutex_);
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
      auto t1 = Clock::now();
      if (timed) times[s * iters + it] = std::chrono::duration<double>(t1 - t0).count();
      if (poison_) poison_frees(s);
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
