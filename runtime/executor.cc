#include "executor.h"

#include "comm.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <new>
#include <stdexcept>
#include <cstdlib>
#include <cstring>
#include <utility>

#ifdef GRAPHC_WITH_CUDA
#include "cuda/common.cuh"  // ErrorSlot, CudaDevice
#endif

namespace graphc {

Executor::Executor(PlanDesc plan, int threads, bool poison)
    : Executor(std::move(plan), ExecutorOptions{threads, poison, "cpu", Limits{}}) {}

Executor::Executor(PlanDesc plan, const ExecutorOptions& options, std::shared_ptr<SharedState> share)
    : plan_(std::move(plan)), options_(options) {
  if (options_.threads < 1) {
    throw std::invalid_argument("threads must be >= 1, got " + std::to_string(options_.threads));
  }
  if (share) {
    // The state's device, not a second one: the buffers this executor uses belong to it.
    if (share->device->name() != options_.device) {
      throw std::invalid_argument("cannot attach to the shared state: it is on device '" + share->device->name() +
                                  "', this executor on '" + shorten(options_.device) + "'");
    }
    device_ = share->device;
  } else {
    device_ = make_device(options_.device);
  }
  KernelRegistry::for_device(device_->name());  // DeviceUnavailable before any work
  check_comm(options_.comm);
  validate_plan(plan_, options_.limits);
  try {
    reserve_memory(share != nullptr);
    if (share) {
      attach(share);
    } else {
      allocate();
    }
    if (device_->name() == "cuda") cuda_open();
    point_values();
    prepare_steps();
  } catch (const std::bad_alloc&) {
    throw ResourceError("out of memory while loading the plan on " + device_->name());
  }
}

namespace {
std::string plan_step_label(const PlanDesc& plan, size_t i) {
  const StepDesc& st = plan.steps[i];
  return "step " + std::to_string(i) + " (node '" + shorten(st.node) + "', op '" + shorten(st.op) + "')";
}

const uint64_t kConstantVersion = 0;
// Versions of persistent values are drawn from one process-wide counter, so a version is never
// reused, even by another executor: a cache keyed by (version pointer, version) can never take
// a stale entry for current (matmul shares packed weights between steps this way).
std::atomic<uint64_t> g_next_version{1};
uint64_t next_version() { return g_next_version.fetch_add(1, std::memory_order_relaxed); }

std::string describe_tensor(const TensorData& t) {
  std::string out = "'" + shorten(t.name) + "' " + dtype_name(t.dtype) + " [";
  for (size_t i = 0; i < t.dims.size(); ++i) out += (i ? ", " : "") + std::to_string(t.dims[i]);
  return out + "]";
}

// A block of `nbytes` on `dev`, holding `t`'s data when it has any (validate_plan allows empty
// data only for persistent tensors: they start as zeros).
DeviceBuffer upload(Device* dev, const TensorData& t) {
  uint64_t nbytes = 0;
  tensor_nbytes(t.dims, t.dtype, &nbytes);  // validated
  DeviceBuffer buf(dev, nbytes);
  if (t.bytes.size() == nbytes) dev->copy_host_to_device(buf.data(), t.bytes.data(), nbytes);
  return buf;
}
}  // namespace

// ResourceError when a shared arena of `arena_bytes` plus this plan's persistent tensors (the
// shared store's, equal on attach) and constants is above this executor's memory limit.  The
// constants of the other executors on the state are not counted here (the Session holds the
// whole program against the limit before it makes any executor).
namespace {
void check_shared_memory(const PlanDesc& plan, const ExecutorOptions& options, uint64_t arena_bytes) {
  const uint64_t limit = options.limits.memory_limit ? options.limits.memory_limit : physical_memory_bytes();
  uint64_t total = arena_bytes;
  bool overflow = false;
  for (const auto* list : {&plan.persistent, &plan.constants}) {
    for (const TensorData& t : *list) {
      uint64_t nbytes = 0;
      tensor_nbytes(t.dims, t.dtype, &nbytes);  // validated
      overflow |= __builtin_add_overflow(total, nbytes, &total);
    }
  }
  if (overflow || total > limit) {
    throw ResourceError("the shared arena of " + std::to_string(arena_bytes) + " bytes with this plan's persistent "
                        "tensors and constants needs " + (overflow ? std::string("more than 2^64") :
                        std::to_string(total)) + " bytes, above the memory limit of " + std::to_string(limit) +
                        " bytes");
  }
}
}  // namespace

// Device::reserve with what this executor is about to allocate: the arena and the persistent
// store unless it attaches to another executor's, its constants, and (CUDA) the error slot;
// each block rounded up to 256 bytes as the CUDA pool places them.
void Executor::reserve_memory(bool attaching) {
  auto round = [](uint64_t n) { return n == 0 ? 256 : (n + 255) / 256 * 256; };
  uint64_t total = 256;  // the error slot
  if (!attaching) {
    total += round(std::max<uint64_t>(plan_.arena_bytes, options_.arena_bytes));
  }
  for (const auto* list : {&plan_.persistent, &plan_.constants}) {
    if (attaching && list == &plan_.persistent) continue;
    for (const TensorData& t : *list) {
      uint64_t nbytes = 0;
      tensor_nbytes(t.dims, t.dtype, &nbytes);  // validated
      total += round(nbytes);
    }
  }
  device_->reserve(total);
}

// A state of this executor's own: an arena of max(plan, options) bytes and the persistent store
// filled from the plan's init data.
void Executor::allocate() {
  Device* dev = device_.get();
  const uint64_t arena_bytes = std::max<uint64_t>(plan_.arena_bytes, options_.arena_bytes);
  // validate_plan held the plan's own needs against the limit; with a larger shared arena, the
  // arena together with the persistent store and constants is held too.
  if (arena_bytes > plan_.arena_bytes) check_shared_memory(plan_, options_, arena_bytes);
  auto st = std::make_shared<SharedState>();
  st->device = device_;
  st->arena = DeviceBuffer(dev, arena_bytes);
  st->persistent.reserve(plan_.persistent.size());
  st->persistent_desc.reserve(plan_.persistent.size());
  for (const TensorData& t : plan_.persistent) {
    st->persistent.push_back(upload(dev, t));
    st->persistent_desc.push_back(TensorData{t.name, t.dtype, t.dims, std::string()});
  }
  st->persistent_version.assign(plan_.persistent.size(), 0);
  for (uint64_t& v : st->persistent_version) v = next_version();
  share_ = std::move(st);
}

// Another executor's state: its persistent list must be this plan's, in order, and its arena
// large enough for this plan.
void Executor::attach(const std::shared_ptr<SharedState>& share) {
  const std::vector<TensorData>& have = share->persistent_desc;
  const std::vector<TensorData>& mine = plan_.persistent;
  const std::string why = "cannot attach to the shared state: ";
  for (size_t i = 0; i < std::min(have.size(), mine.size()); ++i) {
    if (have[i].name != mine[i].name || have[i].dtype != mine[i].dtype || have[i].dims != mine[i].dims) {
      throw std::invalid_argument(why + "persistent[" + std::to_string(i) + "] is " + describe_tensor(mine[i]) +
                                  " in this plan, " + describe_tensor(have[i]) + " in the shared store");
    }
  }
  if (have.size() != mine.size()) {
    throw std::invalid_argument(why + "this plan lists " + std::to_string(mine.size()) +
                                " persistent tensors, the shared store " + std::to_string(have.size()));
  }
  // The shared arena may be larger than this plan's own (validate_plan counted that one).
  if (share->arena.size() > plan_.arena_bytes) check_shared_memory(plan_, options_, share->arena.size());
  if (share->arena.size() < plan_.arena_bytes) {
    throw std::invalid_argument(why + "its arena has " + std::to_string(share->arena.size()) + " bytes, this plan needs " +
                                std::to_string(plan_.arena_bytes) + " (create the first executor with arena_bytes of "
                                "the largest plan)");
  }
  share_ = share;
}

void Executor::point_values() {
  Device* dev = device_.get();
  constants_.reserve(plan_.constants.size());
  for (const TensorData& t : plan_.constants) constants_.push_back(upload(dev, t));
  value_ptrs_.assign(plan_.values.size(), nullptr);
  for (size_t i = 0; i < plan_.values.size(); ++i) {
    const ValueDesc& v = plan_.values[i];
    switch (v.storage) {
      case Storage::Arena: value_ptrs_[i] = share_->arena.data() + v.offset; break;
      case Storage::Persistent: value_ptrs_[i] = share_->persistent[v.index].data(); break;
      case Storage::Constant: value_ptrs_[i] = constants_[v.index].data(); break;
      case Storage::View: break;
    }
  }
  // validate_plan: a view aliases a root value directly.
  for (size_t i = 0; i < plan_.values.size(); ++i) {
    if (plan_.values[i].storage == Storage::View) value_ptrs_[i] = value_ptrs_[plan_.values[i].alias_of];
  }
}

std::string Executor::step_label(size_t i) const { return plan_step_label(plan_, i); }

// Which persistent tensors a run may write (a step's output, or a feed): the others, and
// constants, are read-only across runs, and kernels may cache what they derive from them
// (KernelArgs::in_version; matmul packs such weights once).
//
// Written persistent values (a training plan's weights) get a version too, but theirs also
// moves during a run: after every step that writes them (bump_written) and when a run's feeds
// are copied in, so a kernel may cache data derived from them between two writes (matmul packs
// an RNN's W_hh once per run for all time steps, docs/gemm.md).  KernelArgs::in_version is
// non-null for them as well: a cache must compare the version on every call either way.
void Executor::find_written_persistent() {
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
  if (root.storage == Storage::Persistent) return &share_->persistent_version[root.index];
  return nullptr;
}

void Executor::prepare_steps() {
  find_written_persistent();
  kernels_.reserve(plan_.steps.size());
  for (size_t s = 0; s < plan_.steps.size(); ++s) kernels_.push_back(make_kernel(s, value_ptrs_));
  kernel_ptrs_.resize(kernels_.size());
  for (size_t s = 0; s < kernels_.size(); ++s) kernel_ptrs_[s] = &kernels_[s];
  producer_.assign(plan_.values.size(), -1);
  for (size_t s = 0; s < plan_.steps.size(); ++s) {
    for (int32_t idx : plan_.steps[s].outputs) producer_[idx] = static_cast<int32_t>(s);
  }
}

namespace {

// The kernel of step `s` of `plan` from `reg` over the value pointers `ptrs`; `version(idx)`
// gives KernelArgs::in_version of value idx.  std::invalid_argument naming the step when the
// registry has no kernel for it or its factory refuses it.
template <class VersionOf>
Kernel build_kernel(const PlanDesc& plan, size_t s, const std::vector<void*>& ptrs, const KernelRegistry& reg,
                    const std::string& device_name, const KernelContext& ctx, VersionOf version) {
  const StepDesc& st = plan.steps[s];
  auto ref = [&](int32_t idx) {
    const ValueDesc& v = plan.values[idx];
    return TensorRef{ptrs[idx], v.dtype, v.dims};
  };
  std::vector<TensorRef> ins, outs;
  for (int32_t idx : st.inputs) ins.push_back(ref(idx));
  for (int32_t idx : st.outputs) outs.push_back(ref(idx));
  DType key = !ins.empty() ? ins[0].dtype : (!outs.empty() ? outs[0].dtype : DType::Invalid);
  const KernelFactory* factory = reg.find(st.op, key);
  if (factory == nullptr) {
    if (!reg.has_op(st.op)) {
      throw std::invalid_argument(plan_step_label(plan, s) + ": unknown op '" + shorten(st.op) + "' (no " +
                                  device_name + " kernel)");
    }
    throw std::invalid_argument(plan_step_label(plan, s) + ": no " + device_name + " kernel for dtype " +
                                dtype_name(key));
  }
  KernelArgs args(st, std::move(ins), std::move(outs), ctx);
  args.ctx.step_index = static_cast<int64_t>(s);
  args.in_version.reserve(st.inputs.size());
  for (int32_t idx : st.inputs) args.in_version.push_back(version(idx));
  // Workspaces are arena values: a binding's ptrs carry the executor's own arena pointers for them.
  for (int32_t idx : st.workspaces) args.ws.push_back(ref(idx));
  try {
    return (*factory)(args);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(plan_step_label(plan, s) + ": " + e.what());
  } catch (const std::bad_alloc&) {
    throw;
  } catch (const CommFailure& e) {
    // The communicator refused the step at load (comm->prepare: an MPI communicator given a
    // CUDA plan, no memory for scratch, a broken communicator): CommError, not a bad plan.
    throw CommFailure(plan_step_label(plan, s) + ": " + e.what(), e.code());
  } catch (const std::exception& e) {
    // A factory must throw std::invalid_argument for a bad step; anything else is
    // still the plan's fault at load time.
    throw std::invalid_argument(plan_step_label(plan, s) + ": " + e.what());
  }
}

}  // namespace

// The kernel of step `s` over the value pointers `ptrs` (value_ptrs_, or a binding's).
Kernel Executor::make_kernel(size_t s, const std::vector<void*>& ptrs) const {
  const KernelRegistry& reg = KernelRegistry::for_device(device_->name());
  KernelContext ctx{options_.threads, device_.get(), device_->stream()};
  ctx.error_slot = cuda_error_slot();
  ctx.comm = options_.comm;
  return build_kernel(plan_, s, ptrs, reg, device_->name(), ctx,
                      [this](int32_t idx) { return read_only_version(idx); });
}

// Fake device addresses: every root value gets its own 256-aligned range above this base
// (arena values at base + offset, then the persistent tensors, then the constants), so a
// factory sees distinct, aligned, non-null pointers that nothing ever dereferences.
void Executor::prepare_only(const PlanDesc& plan, const std::string& device) {
  const KernelRegistry& reg = KernelRegistry::for_device(device);  // DeviceUnavailable when not built
  Limits limits;
  limits.memory_limit = UINT64_MAX;  // nothing is allocated
  validate_plan(plan, limits);
  constexpr uintptr_t kBase = uintptr_t(1) << 32;
  auto round = [](uint64_t n) { return (n + 255) / 256 * 256 + 256; };
  std::vector<uintptr_t> persistent_at(plan.persistent.size()), constant_at(plan.constants.size());
  uintptr_t next = kBase + round(plan.arena_bytes);
  auto place = [&](const std::vector<TensorData>& list, std::vector<uintptr_t>& at) {
    for (size_t i = 0; i < list.size(); ++i) {
      uint64_t nbytes = 0;
      tensor_nbytes(list[i].dims, list[i].dtype, &nbytes);  // validated
      at[i] = next;
      next += round(nbytes);
    }
  };
  place(plan.persistent, persistent_at);
  place(plan.constants, constant_at);
  std::vector<void*> ptrs(plan.values.size(), nullptr);
  for (size_t i = 0; i < plan.values.size(); ++i) {
    const ValueDesc& v = plan.values[i];
    switch (v.storage) {
      case Storage::Arena: ptrs[i] = reinterpret_cast<void*>(kBase + v.offset); break;
      case Storage::Persistent: ptrs[i] = reinterpret_cast<void*>(persistent_at[v.index]); break;
      case Storage::Constant: ptrs[i] = reinterpret_cast<void*>(constant_at[v.index]); break;
      case Storage::View: break;
    }
  }
  for (size_t i = 0; i < plan.values.size(); ++i) {
    if (plan.values[i].storage == Storage::View) ptrs[i] = ptrs[plan.values[i].alias_of];
  }
  // Constants and persistent values get a version as in a real executor (read-only inputs).
  const uint64_t version = 0;
  auto version_of = [&](int32_t idx) -> const uint64_t* {
    const ValueDesc& v = plan.values[idx];
    const ValueDesc& root = v.storage == Storage::View ? plan.values[v.alias_of] : v;
    return root.storage == Storage::Constant || root.storage == Storage::Persistent ? &version : nullptr;
  };
  KernelContext ctx;  // device, stream and error slot nullptr: a dry prepare
  for (size_t s = 0; s < plan.steps.size(); ++s) {
    Kernel k = build_kernel(plan, s, ptrs, reg, device, ctx, version_of);
    (void)k;
  }
}

int32_t Executor::root(int32_t idx) const {
  const ValueDesc& v = plan_.values[idx];
  return v.storage == Storage::View ? v.alias_of : idx;
}

std::string Executor::feed_refusal(size_t k) const {
  if (k >= plan_.feeds.size()) {
    throw std::invalid_argument("feed " + std::to_string(k) + " out of range (the plan has " +
                                std::to_string(plan_.feeds.size()) + ")");
  }
  if (cuda_) return "device 'cuda': feeds are copied through pinned staging";
  // validate_plan: a feed is an arena value that no step writes, so the kernels only
  // read it and any memory of its bytes will do.
  if (plan_.values[plan_.feeds[k]].nbytes == 0) return "it has no bytes";
  return "";
}

std::string Executor::fetch_refusal(size_t k) const {
  if (k >= plan_.fetches.size()) {
    throw std::invalid_argument("fetch " + std::to_string(k) + " out of range (the plan has " +
                                std::to_string(plan_.fetches.size()) + ")");
  }
  if (cuda_) return "device 'cuda': fetches are copied through pinned staging";
  const int32_t idx = plan_.fetches[k];
  const int32_t r = root(idx);
  const ValueDesc& v = plan_.values[r];
  const std::string of = r == idx ? "it" : "the value it views ('" + shorten(v.name) + "')";
  if (v.nbytes == 0) return "it has no bytes";
  switch (v.storage) {
    case Storage::Persistent: return of + " is a variable, which lives in the runtime's persistent storage";
    case Storage::Constant: return of + " is a constant of the plan";
    default: break;
  }
  for (int32_t f : plan_.feeds) {
    if (f == r) return of + " is a placeholder fed by the caller";
  }
  for (size_t j = 0; j < plan_.fetches.size(); ++j) {
    if (j != k && root(plan_.fetches[j]) == r) {
      return of + " is fetched twice (also as fetch " + std::to_string(j) + ", '" +
             shorten(plan_.values[plan_.fetches[j]].name) + "'): its bytes have one place";
    }
  }
  for (const StepDesc& st : plan_.steps) {
    for (int32_t w : st.workspaces) {
      if (w == r) return of + " is a step's workspace";
    }
  }
  if (producer_[r] < 0) return of + " is written by no step";
  return "";
}

std::unique_ptr<Binding> Executor::bind(const std::vector<const void*>& feeds,
                                        const std::vector<void*>& fetches) {
  check_feed_count(feeds.size());
  if (!fetches.empty() && fetches.size() != plan_.fetches.size()) {
    throw std::invalid_argument("expected " + std::to_string(plan_.fetches.size()) + " fetch pointers, got " +
                                std::to_string(fetches.size()));
  }
  auto b = std::make_unique<Binding>();
  b->owner_ = this;
  b->value_ptrs_ = value_ptrs_;
  b->caller_memory_.assign(plan_.values.size(), 0);
  b->feed_in_place_.assign(plan_.feeds.size(), 0);
  b->fetch_in_place_.assign(plan_.fetches.size(), 0);
  auto check_ptr = [this](const void* p, int32_t idx, const std::string& what) {
    const ValueDesc& v = plan_.values[idx];
    const size_t align = dtype_size(v.dtype);
    if (align > 1 && reinterpret_cast<uintptr_t>(p) % align != 0) {
      throw std::invalid_argument(what + " '" + shorten(v.name) + "': the memory at " +
                                  std::to_string(reinterpret_cast<uintptr_t>(p)) + " is not aligned to " +
                                  std::to_string(align) + " bytes (" + dtype_name(v.dtype) + ")");
    }
  };
  for (size_t k = 0; k < feeds.size(); ++k) {
    if (feeds[k] == nullptr) continue;
    const int32_t idx = plan_.feeds[k];
    std::string why = feed_refusal(k);
    if (!why.empty()) {
      throw std::invalid_argument("feed '" + shorten(plan_.values[idx].name) + "' cannot be bound: " + why);
    }
    check_ptr(feeds[k], idx, "feed");
    // The kernels only read a feed (validate_plan), so the caller's read-only memory is safe.
    b->value_ptrs_[idx] = const_cast<void*>(feeds[k]);
    b->caller_memory_[idx] = 1;
    b->feed_in_place_[k] = 1;
  }
  for (size_t k = 0; k < fetches.size(); ++k) {
    if (fetches[k] == nullptr) continue;
    const int32_t idx = plan_.fetches[k];
    std::string why = fetch_refusal(k);
    if (!why.empty()) {
      throw std::invalid_argument("fetch '" + shorten(plan_.values[idx].name) + "' cannot be bound: " + why);
    }
    check_ptr(fetches[k], idx, "fetch");
    // A kernel writing memory that another bound value reads or writes would see its
    // inputs change under it.
    auto overlaps = [&](const void* other, int32_t oidx) {
      const auto lo = reinterpret_cast<uintptr_t>(fetches[k]), hi = lo + plan_.values[idx].nbytes;
      const auto olo = reinterpret_cast<uintptr_t>(other), ohi = olo + plan_.values[oidx].nbytes;
      return lo < ohi && olo < hi;
    };
    for (size_t j = 0; j < fetches.size(); ++j) {
      if (j != k && fetches[j] != nullptr && overlaps(fetches[j], plan_.fetches[j])) {
        throw std::invalid_argument("fetch '" + shorten(plan_.values[idx].name) +
                                    "' is bound to memory that overlaps fetch '" +
                                    shorten(plan_.values[plan_.fetches[j]].name) + "'");
      }
    }
    for (size_t j = 0; j < feeds.size(); ++j) {
      if (feeds[j] != nullptr && overlaps(feeds[j], plan_.feeds[j])) {
        throw std::invalid_argument("fetch '" + shorten(plan_.values[idx].name) +
                                    "' is bound to memory that overlaps feed '" +
                                    shorten(plan_.values[plan_.feeds[j]].name) + "'");
      }
    }
    const int32_t r = root(idx);
    b->value_ptrs_[r] = fetches[k];
    b->caller_memory_[r] = 1;
    b->fetch_in_place_[k] = 1;
  }
  // validate_plan: a view aliases a root directly, so one pass moves every view along.
  for (size_t i = 0; i < plan_.values.size(); ++i) {
    if (plan_.values[i].storage == Storage::View) {
      const int32_t r = plan_.values[i].alias_of;
      b->value_ptrs_[i] = b->value_ptrs_[r];
      b->caller_memory_[i] = b->caller_memory_[r];
    }
  }
  // Only the steps that touch a redirected value get new kernels (kernels capture pointers).
  std::vector<size_t> touched;
  for (size_t s = 0; s < plan_.steps.size(); ++s) {
    const StepDesc& st = plan_.steps[s];
    bool hit = false;
    for (int32_t idx : st.inputs) hit = hit || b->caller_memory_[idx];
    for (int32_t idx : st.outputs) hit = hit || b->caller_memory_[idx];
    if (hit) touched.push_back(s);
  }
  b->own_.reserve(touched.size());  // no reallocation: kernels_ below points into it
  {
    std::lock_guard<std::mutex> lock(share_->mutex);
    for (size_t s : touched) b->own_.push_back(make_kernel(s, b->value_ptrs_));
  }
  b->kernels_ = kernel_ptrs_;
  for (size_t t = 0; t < touched.size(); ++t) b->kernels_[touched[t]] = &b->own_[t];
  return b;
}

const ValueDesc& Executor::value(int32_t index) const {
  if (index < 0 || static_cast<size_t>(index) >= plan_.values.size()) {
    throw std::invalid_argument("value index " + std::to_string(index) + " out of range");
  }
  return plan_.values[index];
}

size_t Executor::persistent_nbytes(int32_t index) const {
  if (index < 0 || static_cast<size_t>(index) >= share_->persistent.size()) {
    throw std::invalid_argument("persistent index " + std::to_string(index) + " out of range");
  }
  return share_->persistent[index].size();
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
  std::lock_guard<std::mutex> lock(share_->mutex);
  device_->copy_device_to_host(dst, share_->persistent[index].data(), nbytes);
  device_->synchronize();
}

void Executor::write_persistent(int32_t index, const void* src, size_t nbytes) {
  check_persistent(index, nbytes);
  std::lock_guard<std::mutex> lock(share_->mutex);
  device_->copy_host_to_device(share_->persistent[index].data(), src, nbytes);
  device_->synchronize();
  share_->persistent_version[index] = next_version();  // kernels rebuild what they cached from it
}

void Executor::read_value(int32_t index, void* dst, size_t nbytes) {
  const ValueDesc& v = value(index);
  if (nbytes != v.nbytes) {
    throw std::invalid_argument("value " + std::to_string(index) + " ('" + shorten(v.name) + "') has " +
                                std::to_string(v.nbytes) + " bytes, the buffer has " + std::to_string(nbytes));
  }
  std::lock_guard<std::mutex> lock(share_->mutex);
  device_->copy_device_to_host(dst, value_ptrs_[index], nbytes);
  device_->synchronize();
}

void Executor::check_feed_count(size_t n) const {
  if (n != plan_.feeds.size()) {
    throw std::invalid_argument("expected " + std::to_string(plan_.feeds.size()) + " feeds, got " + std::to_string(n));
  }
}

// A null feed is one a binding redirected (its kernels read the caller's memory).
void Executor::copy_feeds(const std::vector<const void*>& feeds, const std::vector<void*>& ptrs) {
  for (size_t i = 0; i < feeds.size(); ++i) {
    const int32_t idx = plan_.feeds[i];
    // A persistent feed changes every run, copied in or (bound in place) in the caller's hands.
    const ValueDesc& fv = plan_.values[idx];
    const ValueDesc& froot = fv.storage == Storage::View ? plan_.values[fv.alias_of] : fv;
    if (froot.storage == Storage::Persistent) share_->persistent_version[froot.index] = next_version();
    if (feeds[i] == nullptr) continue;
    const ValueDesc& v = plan_.values[idx];
    if (v.nbytes == 0) continue;
    device_->copy_host_to_device(ptrs[idx], feeds[i], v.nbytes);
  }
}

inline void Executor::run_step(const Kernel& k, size_t s) {
  // What kernels cached from a persistent value this step writes is stale from now on (bumped
  // before the call: a step that fails half-way has still changed the bytes).
  for (int32_t idx : plan_.steps[s].outputs) {
    const ValueDesc& v = plan_.values[idx];
    const ValueDesc& root = v.storage == Storage::View ? plan_.values[v.alias_of] : v;
    if (root.storage == Storage::Persistent) share_->persistent_version[root.index] = next_version();
  }
  try {
    k();
  } catch (const std::bad_alloc&) {
    throw ResourceError(step_label(s) + ": out of memory");
  } catch (const CommFailure& e) {
    throw CommFailure(step_label(s) + ": " + e.what(), e.code());
  } catch (const std::exception& e) {
    throw std::runtime_error(step_label(s) + ": " + e.what());
  }
}

// The caller's memory is never poisoned: a bound feed dies in the plan, not in the
// caller's hands.
void Executor::poison_frees(size_t s, const std::vector<void*>& ptrs, const std::vector<char>* caller_memory) {
  for (int32_t idx : plan_.steps[s].frees) {
    if (caller_memory != nullptr && (*caller_memory)[idx]) continue;
    device_->memset(ptrs[idx], 0xFF, plan_.values[idx].nbytes);
  }
}

void Executor::run_steps(const std::vector<const Kernel*>& kernels, const std::vector<void*>& ptrs,
                         const std::vector<char>* caller_memory) {
  const size_t n = kernels.size();
  if (options_.poison) {
    for (size_t s = 0; s < n; ++s) {
      run_step(*kernels[s], s);
      poison_frees(s, ptrs, caller_memory);
    }
  } else {
    for (size_t s = 0; s < n; ++s) run_step(*kernels[s], s);
  }
}

void Executor::copy_fetches(const std::vector<void*>& fetches, const std::vector<void*>& ptrs) {
  for (size_t k = 0; k < fetches.size(); ++k) {
    if (fetches[k] == nullptr) continue;
    int32_t idx = plan_.fetches[k];
    device_->copy_device_to_host(fetches[k], ptrs[idx], plan_.values[idx].nbytes);
  }
  device_->synchronize();
}

void Executor::check_comm_usable() const {
  if (!share_->comm_failure.empty()) {
    throw CommFailure("a collective failed in an earlier run, so this session refuses further runs (the ranks "
                      "may hold different weights now; restart the job, e.g. from a checkpoint): " +
                      share_->comm_failure);
  }
}

template <class F>
void Executor::guard_comm(F body) {
  check_comm_usable();
  try {
    body();
  } catch (const CommFailure& e) {
    share_->comm_failure = e.what();
    throw;
  }
}

void Executor::run(const std::vector<const void*>& feeds, const std::vector<void*>& fetches) {
  if (!fetches.empty() && fetches.size() != plan_.fetches.size()) {
    throw std::invalid_argument("expected " + std::to_string(plan_.fetches.size()) + " fetch buffers, got " +
                                std::to_string(fetches.size()));
  }
  check_feed_count(feeds.size());
  for (size_t i = 0; i < feeds.size(); ++i) {
    const ValueDesc& v = plan_.values[plan_.feeds[i]];
    if (feeds[i] == nullptr && v.nbytes != 0) throw std::invalid_argument("feed '" + shorten(v.name) + "' has no data");
  }
  std::lock_guard<std::mutex> lock(share_->mutex);
  guard_comm([&] {
    if (cuda_) return cuda_run(feeds, fetches);
    copy_feeds(feeds, value_ptrs_);
    run_steps(kernel_ptrs_, value_ptrs_, nullptr);
    // Still under the lock: the next run may overwrite these bytes.
    copy_fetches(fetches, value_ptrs_);
  });
}

void Executor::run(const Binding& b, const std::vector<const void*>& feeds, const std::vector<void*>& fetches) {
  if (b.owner_ != this) throw std::invalid_argument("the binding belongs to another executor");
  if (!fetches.empty() && fetches.size() != plan_.fetches.size()) {
    throw std::invalid_argument("expected " + std::to_string(plan_.fetches.size()) + " fetch buffers, got " +
                                std::to_string(fetches.size()));
  }
  check_feed_count(feeds.size());
  for (size_t i = 0; i < feeds.size(); ++i) {
    const ValueDesc& v = plan_.values[plan_.feeds[i]];
    if (feeds[i] == nullptr && v.nbytes != 0 && !b.feed_in_place_[i]) {
      throw std::invalid_argument("feed '" + shorten(v.name) + "' has no data");
    }
    if (feeds[i] != nullptr && b.feed_in_place_[i]) {
      throw std::invalid_argument("feed '" + shorten(v.name) + "' is bound in place; it takes no copy");
    }
  }
  std::lock_guard<std::mutex> lock(share_->mutex);
  guard_comm([&] {
    // On CUDA a binding redirects nothing (feed_refusal/fetch_refusal): the plain run.
    if (cuda_) return cuda_run(feeds, fetches);
    copy_feeds(feeds, b.value_ptrs_);
    run_steps(b.kernels_, b.value_ptrs_, &b.caller_memory_);
    copy_fetches(fetches, b.value_ptrs_);
  });
}

std::vector<double> Executor::profile(const std::vector<const void*>& feeds, int iters, int warmup) {
  if (iters < 1) throw std::invalid_argument("iters must be >= 1, got " + std::to_string(iters));
  if (warmup < 0) throw std::invalid_argument("warmup must be >= 0, got " + std::to_string(warmup));
  check_feed_count(feeds.size());
  for (size_t i = 0; i < feeds.size(); ++i) {
    const ValueDesc& v = plan_.values[plan_.feeds[i]];
    if (feeds[i] == nullptr && v.nbytes != 0) throw std::invalid_argument("feed '" + shorten(v.name) + "' has no data");
  }
  std::lock_guard<std::mutex> lock(share_->mutex);
  using Clock = std::chrono::steady_clock;
  const size_t n = kernels_.size();
  // times[s * iters + it]: seconds of step s in timed run it.
  std::vector<double> times(n * static_cast<size_t>(iters), 0.0);
  guard_comm([&] {
    for (int r = 0; r < warmup + iters; ++r) {
      copy_feeds(feeds, value_ptrs_);
      if (cuda_) cuda_profile_begin();
      const bool timed = r >= warmup;
      const size_t it = timed ? static_cast<size_t>(r - warmup) : 0;
      for (size_t s = 0; s < n; ++s) {
        auto t0 = Clock::now();
        run_step(kernels_[s], s);
        if (cuda_) {
          cuda_sync_step(s);
        } else {
          device_->synchronize();
        }
        auto t1 = Clock::now();
        if (timed) times[s * iters + it] = std::chrono::duration<double>(t1 - t0).count();
        if (options_.poison) poison_frees(s, value_ptrs_, nullptr);
      }
    }
  });
  std::vector<double> medians(n, 0.0);
  for (size_t s = 0; s < n; ++s) {
    auto first = times.begin() + s * iters;
    auto last = first + iters;
    std::sort(first, last);
    medians[s] = (iters % 2) ? first[iters / 2] : 0.5 * (first[iters / 2 - 1] + first[iters / 2]);
  }
  return medians;
}

// ---- CUDA ----------------------------------------------------------------------------------
//
// A CUDA run (docs/runtime.md, "CUDA"): the caller's feeds are copied (host memcpy) into pinned
// staging; then one enqueue of the whole step on the device's stream — reset the error slot,
// copy the staged feeds to their arena values, every kernel, the poison memsets, copy every
// fetch and the error slot back to pinned staging — either directly (the first run, and every
// run when GRAPHC_CUDA_GRAPHS=0 or GRAPHC_CUDA_SYNC=1) or by replaying the graph captured from
// that enqueue on the second run; one stream synchronisation; a data error a kernel recorded
// in the slot is raised naming its step; the staged fetches are copied to the caller.

#ifdef GRAPHC_WITH_CUDA

struct Executor::CudaState {
  cuda::CudaDevice* dev = nullptr;
  DeviceBuffer slot;                   // one cuda::ErrorSlot in device memory
  void* pinned = nullptr;              // the pinned block: the host slot, then feeds, then fetches
  size_t pinned_bytes = 0;
  cuda::ErrorSlot* host_slot = nullptr;
  std::vector<uint8_t*> feed_stage;    // per feed (plan order); nullptr for a value of no bytes
  std::vector<uint8_t*> fetch_stage;   // per fetch
  std::vector<int32_t> bumped;         // persistent indices a run writes (steps' outputs, feeds)
  std::unique_ptr<cuda::CudaGraph> graph;
  bool graphs = true;                  // GRAPHC_CUDA_GRAPHS
  bool sync_each_step = false;         // GRAPHC_CUDA_SYNC
  std::string graph_failure;           // why the capture failed (graphs are then off)
  int64_t runs = 0;                    // completed runs

  ~CudaState() {
    if (pinned != nullptr) dev->free_pinned(pinned);
  }
};

void* Executor::cuda_error_slot() const { return cuda_ ? cuda_->slot.data() : nullptr; }

void Executor::cuda_open() {
  auto* dev = dynamic_cast<cuda::CudaDevice*>(device_.get());
  if (dev == nullptr) throw std::logic_error("device 'cuda' is not a CudaDevice");
  const CudaOptions opt = cuda_options();
  auto cs = std::make_unique<CudaState>();
  cs->dev = dev;
  cs->graphs = opt.graphs && !opt.sync;
  cs->sync_each_step = opt.sync;
  cs->slot = DeviceBuffer(dev, sizeof(cuda::ErrorSlot));
  auto round = [](size_t n) { return (n + 63) / 64 * 64; };
  size_t total = round(sizeof(cuda::ErrorSlot));
  for (int32_t idx : plan_.feeds) total += round(plan_.values[idx].nbytes);
  for (int32_t idx : plan_.fetches) total += round(plan_.values[idx].nbytes);
  cs->pinned = dev->alloc_pinned(total);
  cs->pinned_bytes = total;
  auto* p = static_cast<uint8_t*>(cs->pinned);
  cs->host_slot = reinterpret_cast<cuda::ErrorSlot*>(p);
  std::memset(cs->host_slot, 0, sizeof(cuda::ErrorSlot));
  size_t at = round(sizeof(cuda::ErrorSlot));
  for (int32_t idx : plan_.feeds) {
    const size_t n = plan_.values[idx].nbytes;
    cs->feed_stage.push_back(n ? p + at : nullptr);
    at += round(n);
  }
  for (int32_t idx : plan_.fetches) {
    const size_t n = plan_.values[idx].nbytes;
    cs->fetch_stage.push_back(n ? p + at : nullptr);
    at += round(n);
  }
  std::vector<char> seen(plan_.persistent.size(), 0);
  auto mark = [&](int32_t idx) {
    const ValueDesc& v = plan_.values[idx];
    const ValueDesc& r = v.storage == Storage::View ? plan_.values[v.alias_of] : v;
    if (r.storage == Storage::Persistent && !seen[r.index]) {
      seen[r.index] = 1;
      cs->bumped.push_back(r.index);
    }
  };
  for (const StepDesc& st : plan_.steps) {
    for (int32_t idx : st.outputs) mark(idx);
  }
  for (int32_t idx : plan_.feeds) mark(idx);
  cuda_ = std::move(cs);
}

std::string Executor::cuda_graph_state() const {
  if (!cuda_) return "";
  if (cuda_->sync_each_step) return "off (GRAPHC_CUDA_SYNC=1)";
  if (!cuda_->graph_failure.empty()) return "failed: " + cuda_->graph_failure;
  if (!cuda_->graphs) return "off (GRAPHC_CUDA_GRAPHS=0)";
  return cuda_->graph ? "captured" : "not yet";
}

namespace {
// A device error raised while step `label` ran: a sticky one stays a DeviceFault (the Session
// is unusable), any other becomes a std::runtime_error; both name the step.
[[noreturn]] void rethrow_at_step(const std::string& label) {
  try {
    throw;
  } catch (const DeviceFault& e) {
    throw DeviceFault(label + ": " + e.what());
  } catch (const CommFailure& e) {
    throw CommFailure(label + ": " + e.what(), e.code());
  } catch (const ResourceError&) {
    throw;
  } catch (const std::bad_alloc&) {
    throw ResourceError(label + ": out of memory");
  } catch (const std::exception& e) {
    throw std::runtime_error(label + ": " + e.what());
  }
}
}  // namespace

// The whole run on the stream (or into a capture): see the section comment.  Every kernel is
// called under its step's label; with `sync_each_step` the stream is synchronised and the
// error slot read after each step, so a fault names the step that caused it.
void Executor::cuda_enqueue(bool sync_each_step) {
  CudaState& cs = *cuda_;
  cuda::CudaDevice& dev = *cs.dev;
  dev.memset(cs.slot.data(), 0, sizeof(cuda::ErrorSlot));
  for (size_t k = 0; k < plan_.feeds.size(); ++k) {
    const int32_t idx = plan_.feeds[k];
    if (cs.feed_stage[k] != nullptr) dev.copy_host_to_device_async(value_ptrs_[idx], cs.feed_stage[k], plan_.values[idx].nbytes);
  }
  for (size_t s = 0; s < kernels_.size(); ++s) {
    try {
      kernels_[s]();
    } catch (const DeviceFault& e) {
      // A launch check reports a sticky fault of ANY earlier kernel still in flight: without
      // a sync after each step, this step is only where it surfaced.
      if (sync_each_step) throw DeviceFault(step_label(s) + ": " + e.what());
      throw DeviceFault("at or before " + step_label(s) + ": " + e.what() +
                        " (set GRAPHC_CUDA_SYNC=1 to name the step that failed)");
    } catch (...) {
      rethrow_at_step(step_label(s));
    }
    if (options_.poison) poison_frees(s, value_ptrs_, nullptr);
    if (sync_each_step) cuda_sync_step(s);
  }
  for (size_t k = 0; k < plan_.fetches.size(); ++k) {
    const int32_t idx = plan_.fetches[k];
    if (cs.fetch_stage[k] != nullptr) dev.copy_device_to_host_async(cs.fetch_stage[k], value_ptrs_[idx], plan_.values[idx].nbytes);
  }
  dev.copy_device_to_host_async(cs.host_slot, cs.slot.data(), sizeof(cuda::ErrorSlot));
}

// GRAPHC_CUDA_SYNC=1 and profile(): waits for step `s`, then reads the error slot.
void Executor::cuda_sync_step(size_t s) {
  CudaState& cs = *cuda_;
  try {
    cs.dev->copy_device_to_host_async(cs.host_slot, cs.slot.data(), sizeof(cuda::ErrorSlot));
    cs.dev->synchronize();
  } catch (...) {
    rethrow_at_step(step_label(s));
  }
  cuda_check_slot();
}

// The data error a kernel recorded in the slot (already copied to host_slot), if any, as a
// std::runtime_error naming its step in the CPU kernels' words.
void Executor::cuda_check_slot() {
  cuda::ErrorSlot e = *cuda_->host_slot;
  if (e.code == cuda::kNoError) return;
  std::memset(cuda_->host_slot, 0, sizeof(cuda::ErrorSlot));
  std::string what;
  switch (e.code) {
    case cuda::kIndexOutOfRange:
      what = "index " + std::to_string(e.v0) + " is outside [0, " + std::to_string(e.v1) + ")";
      break;
    case cuda::kInvalidValue: what = "invalid value " + std::to_string(e.v0); break;
    default: what = "error code " + std::to_string(e.code) + " (" + std::to_string(e.v0) + ", " + std::to_string(e.v1) + ")";
  }
  if (e.step_index >= 0 && static_cast<size_t>(e.step_index) < plan_.steps.size()) {
    throw std::runtime_error(step_label(static_cast<size_t>(e.step_index)) + ": " + what);
  }
  throw std::runtime_error("a CUDA kernel reported: " + what + " (at an unknown step " + std::to_string(e.step_index) + ")");
}

void Executor::cuda_profile_begin() {
  cuda_->dev->memset(cuda_->slot.data(), 0, sizeof(cuda::ErrorSlot));
}

void Executor::cuda_run(const std::vector<const void*>& feeds, const std::vector<void*>& fetches) {
  CudaState& cs = *cuda_;
  cuda::CudaDevice& dev = *cs.dev;
  dev.check_usable();
  for (size_t k = 0; k < feeds.size(); ++k) {
    if (cs.feed_stage[k] != nullptr) std::memcpy(cs.feed_stage[k], feeds[k], plan_.values[plan_.feeds[k]].nbytes);
  }
  // Kernels compare these versions to rebuild what they cached (CUDA kernels cache nothing
  // across runs, but a run still writes these tensors): bumped once per run, graph or not.
  for (int32_t i : cs.bumped) share_->persistent_version[i] = next_version();
  // A replayed graph never runs the collective steps' host code: a communicator that broke
  // between runs (NCCL's watchdog aborted it) is reported here, before its kernels launch.
  const bool check_comm = options_.comm != nullptr && options_.comm->size > 1;
  if (check_comm) comm_check_health(options_.comm);
  try {
    cuda_launch_run();
  } catch (...) {
    // Work enqueued before the failure may still read the staging: let it finish before the
    // next run refills it (a sticky error raises again here: the first one is what we report).
    try {
      dev.synchronize();
    } catch (...) {
    }
    throw;
  }
  try {
    dev.synchronize();
  } catch (const DeviceFault& e) {
    throw DeviceFault(std::string(e.what()) + (cs.sync_each_step ? "" : " (set GRAPHC_CUDA_SYNC=1 to name the step that failed)"));
  }
  ++cs.runs;
  // ... and one that broke during this run (its sums are partial): raised now, not next run.
  if (check_comm) comm_check_health(options_.comm);
  cuda_check_slot();
  for (size_t k = 0; k < fetches.size(); ++k) {
    if (fetches[k] != nullptr && cs.fetch_stage[k] != nullptr) {
      std::memcpy(fetches[k], cs.fetch_stage[k], plan_.values[plan_.fetches[k]].nbytes);
    }
  }
}

// The run's device work: a replay of the captured graph, the capture (second run), or the
// enqueue step by step.
void Executor::cuda_launch_run() {
  CudaState& cs = *cuda_;
  cuda::CudaDevice& dev = *cs.dev;
  if (cs.graph) {
    cs.graph->launch(dev.cuda_stream());
  } else if (cs.graphs && cs.runs >= 1) {
    // The second run: capture the enqueue (nothing executes), then launch the graph.  A
    // capture that fails (a kernel calling what a capture forbids) turns graphs off for this
    // executor (cuda_graph_state says why) and the run goes step by step; a sticky error is a
    // DeviceFault either way.
    bool captured = false;
    dev.begin_capture();
    try {
      cuda_enqueue(false);
      cs.graph = dev.end_capture();
      captured = true;
    } catch (const DeviceFault&) {
      dev.abort_capture();
      throw;
    } catch (const CommFailure&) {
      // The communicator is broken (sticky): not a reason to run without a graph.
      dev.abort_capture();
      throw;
    } catch (const std::exception& e) {
      dev.abort_capture();
      cs.graph_failure = e.what();
      cs.graphs = false;
    }
    if (captured) {
      cs.graph->launch(dev.cuda_stream());
    } else {
      cuda_enqueue(cs.sync_each_step);
    }
  } else {
    cuda_enqueue(cs.sync_each_step);
  }
}

#else  // no CUDA in this build: make_device("cuda") throws, so none of these is ever called

struct Executor::CudaState {};
void* Executor::cuda_error_slot() const { return nullptr; }
void Executor::cuda_open() { throw std::logic_error("this graphc was not built with CUDA"); }
std::string Executor::cuda_graph_state() const { return ""; }
void Executor::cuda_run(const std::vector<const void*>&, const std::vector<void*>&) {}
void Executor::cuda_launch_run() {}
void Executor::cuda_enqueue(bool) {}
void Executor::cuda_sync_step(size_t) {}
void Executor::cuda_check_slot() {}
void Executor::cuda_profile_begin() {}
#endif

Executor::~Executor() = default;

}  // namespace graphc
