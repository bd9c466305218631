#include "aot_runtime.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <exception>
#include <new>
#include <stdexcept>
#include <type_traits>
#include <utility>

#include "../cpu/thread_pool.h"
#include "npz.h"
#include "weights_file.h"

namespace graphc {
namespace aot {

namespace {

std::atomic<uint64_t> g_next_version{1};

// What KernelArgs::in_version points at for a constant: constants never change.
const uint64_t kConstantVersion = 0;

// At most `limit` bytes of a name or message the caller or a file supplied.
std::string shorten(const std::string& text, size_t limit = 200) {
  if (text.size() <= limit) return text;
  return text.substr(0, limit) + "... (" + std::to_string(text.size()) + " bytes)";
}

std::string quoted(const char* s) { return "'" + shorten(s == nullptr ? std::string() : std::string(s)) + "'"; }

std::string entry_label(const EntryTable& e) {
  return std::string("entry '") + shorten(e.name[0] != '\0' ? e.name : "main") + "'";
}

std::string step_label(const StepTable& st, int32_t s) {
  std::string out = "step " + std::to_string(s) + " (node " + quoted(st.node) + ", op " + quoted(st.op);
  if (st.where != nullptr && st.where[0] != '\0') out += ", at " + shorten(st.where);
  return out + ")";
}

std::vector<int64_t> dims_of(int32_t ndim, const int64_t* dims) {
  return std::vector<int64_t>(dims, dims + (ndim > 0 ? ndim : 0));
}

std::string describe(const TensorTable& t) {
  return std::string(graphc::dtype_name(static_cast<DType>(t.dtype))) + " " + format_dims(dims_of(t.ndim, t.dims));
}

// graphc::AttrValue from its table form, exactly as runtime/_runtime.pyx builds it from the
// protobuf attr (a Bool keeps its Bool kind with i = 0/1; a Tensor attr carries nothing).
AttrValue attr_value(const AttrTable& a) {
  AttrValue v;
  v.kind = static_cast<AttrValue::Kind>(a.kind);
  switch (v.kind) {
    case AttrValue::Int:
    case AttrValue::Bool:
    case AttrValue::DTypeKind: v.i = a.i; break;
    case AttrValue::Float: v.f = a.f; break;
    case AttrValue::String: v.s.assign(a.s == nullptr ? "" : a.s, a.s == nullptr ? 0 : a.s_len); break;
    case AttrValue::Ints: v.ints.assign(a.ints, a.ints + (a.n > 0 ? a.n : 0)); break;
    case AttrValue::Floats: v.floats.assign(a.floats, a.floats + (a.n > 0 ? a.n : 0)); break;
    case AttrValue::Tensor: break;
    default: throw Error(kArgument, std::string("attr ") + quoted(a.name) + " has unknown kind " + std::to_string(a.kind));
  }
  return v;
}

// WorkerPool::reserve(workers) starts the pool's threads up front, so no run creates one (branch
// NOALLOC adds it to runtime/cpu/thread_pool.h).  Called when the pool has it; a build against a
// thread_pool.h without it starts the workers on the first parallel kernel instead.
template <typename P, typename = void>
struct HasReserve : std::false_type {};
template <typename P>
struct HasReserve<P, decltype(std::declval<P&>().reserve(1), void())> : std::true_type {};

template <typename P>
void reserve_workers(P& pool, int workers, std::true_type) {
  pool.reserve(workers);
}
template <typename P>
void reserve_workers(P&, int, std::false_type) {}

thread_local std::string t_error;

}  // namespace

uint64_t next_version() noexcept { return g_next_version.fetch_add(1, std::memory_order_relaxed); }

const char* thread_error() noexcept { return t_error.c_str(); }

void set_thread_error(const char* message) noexcept {
  try {
    t_error.assign(message == nullptr ? "" : message);
  } catch (...) {
    t_error.clear();  // out of memory: an empty message rather than an exception
  }
}

Context::Context(const ModelTable* model) : model_(model) {}

Context::~Context() = default;

int Context::fail(int status, const std::string& message) const noexcept {
  try {
    error_ = message;
  } catch (...) {
    error_.clear();
  }
  return status;
}

int Context::ok() const noexcept {
  error_.clear();  // keeps its capacity: no allocation
  return kOk;
}

int Context::check_block(const char* what, const void* p, size_t given, uint64_t needed) noexcept {
  if (needed == 0) return kOk;  // any pointer, null too
  if (p == nullptr) {
    return fail(kArgument, std::string(what) + " is NULL; this artifact needs " + std::to_string(needed) + " bytes");
  }
  if (reinterpret_cast<uintptr_t>(p) % kTensorAlignment != 0) {
    return fail(kAlignment, std::string(what) + " at " + std::to_string(reinterpret_cast<uintptr_t>(p)) +
                                " is not aligned to " + std::to_string(kTensorAlignment) + " bytes");
  }
  if (given < needed) {
    return fail(kSize, std::string(what) + ": " + std::to_string(given) + " bytes given, this artifact needs " +
                           std::to_string(needed));
  }
  return kOk;
}

int Context::init(void* arena_p, size_t arena_bytes, void* state_p, size_t state_bytes, void* constants_p,
                  size_t constant_bytes, int threads) noexcept {
  if (model_ == nullptr) return fail(kArgument, "the context has no model tables (NULL)");
  if (ready_) return fail(kState, "the context is already initialised");
  if (model_->abi_version != kAbiVersion) {
    return fail(kArgument, "the artifact's tables are of ABI version " + std::to_string(model_->abi_version) +
                               ", this runtime reads version " + std::to_string(kAbiVersion));
  }
  if (threads < 1) return fail(kArgument, "threads must be >= 1, got " + std::to_string(threads));
  int st = check_block("arena", arena_p, arena_bytes, model_->arena_bytes);
  if (st == kOk) st = check_block("state", state_p, state_bytes, model_->state_bytes);
  if (st == kOk) st = check_block("constants", constants_p, constant_bytes, model_->constant_bytes);
  if (st != kOk) return st;
  // The three blocks are written independently: overlapping ones would corrupt each other.
  struct Block { const char* name; uintptr_t lo, hi; };
  const Block blocks[3] = {
      {"arena", reinterpret_cast<uintptr_t>(arena_p), reinterpret_cast<uintptr_t>(arena_p) + model_->arena_bytes},
      {"state", reinterpret_cast<uintptr_t>(state_p), reinterpret_cast<uintptr_t>(state_p) + model_->state_bytes},
      {"constants", reinterpret_cast<uintptr_t>(constants_p),
       reinterpret_cast<uintptr_t>(constants_p) + model_->constant_bytes}};
  for (int i = 0; i < 3; ++i) {
    for (int j = i + 1; j < 3; ++j) {
      const Block& a = blocks[i];
      const Block& b = blocks[j];
      if (a.lo < a.hi && b.lo < b.hi && a.lo < b.hi && b.lo < a.hi) {
        return fail(kArgument, std::string("the ") + a.name + " and " + b.name + " blocks overlap");
      }
    }
  }
  arena = static_cast<uint8_t*>(arena_p);
  state = static_cast<uint8_t*>(state_p);
  constants = static_cast<uint8_t*>(constants_p);
  threads_ = threads;
  try {
    prepare();
  } catch (const Error& e) {
    kernels_.clear();
    steps_.clear();
    return fail(e.status, e.what());
  } catch (const std::bad_alloc&) {
    kernels_.clear();
    steps_.clear();
    return fail(kNoMemory, "out of memory while preparing the kernels");
  } catch (const std::exception& e) {
    kernels_.clear();
    steps_.clear();
    return fail(kRuntime, e.what());
  }
  ready_ = true;
  return ok();
}

void Context::prepare() {
  if (model_->register_kernels == nullptr) throw Error(kArgument, "the artifact's tables register no kernels");
  registry_.reset(new KernelRegistry());
  model_->register_kernels(*registry_);
  versions_.assign(static_cast<size_t>(model_->n_persistent > 0 ? model_->n_persistent : 0), 0);
  for (uint64_t& v : versions_) v = next_version();
  size_t max_feeds = 1;
  for (int32_t e = 0; e < model_->n_entries; ++e) {
    max_feeds = std::max<size_t>(max_feeds, static_cast<size_t>(std::max(0, model_->entries[e].n_feeds)));
  }
  null_feeds_.assign(max_feeds, nullptr);
  // Sized once: kernels keep references to their StepDesc.
  steps_.assign(static_cast<size_t>(model_->n_entries > 0 ? model_->n_entries : 0), {});
  kernels_.assign(steps_.size(), {});
  for (int32_t e = 0; e < model_->n_entries; ++e) prepare_entry(e);
  // The CPU worker pool's threads, started now rather than inside a run.
  if (threads_ > 1) {
    cpu::WorkerPool& pool = cpu::WorkerPool::get();
    reserve_workers(pool, threads_ - 1, HasReserve<cpu::WorkerPool>{});
  }
}

// Every value's pointer (executor.cc point_values), then every step's kernel (make_kernel).
void Context::prepare_entry(int e) {
  const EntryTable& en = model_->entries[e];
  const std::string label = entry_label(en);
  const size_t nv = static_cast<size_t>(en.n_values > 0 ? en.n_values : 0);
  std::vector<void*> ptrs(nv, nullptr);
  auto table_error = [&](const std::string& what) {
    return Error(kArgument, "the artifact's tables are inconsistent: " + label + ": " + what);
  };
  for (size_t i = 0; i < nv; ++i) {
    const ValueTable& v = en.values[i];
    switch (static_cast<Storage>(v.storage)) {
      case Storage::Arena:
        if (v.offset > model_->arena_bytes || v.nbytes > model_->arena_bytes - v.offset) {
          throw table_error("value " + quoted(v.name) + " lies outside the arena");
        }
        ptrs[i] = arena + v.offset;
        break;
      case Storage::Persistent: {
        if (v.index < 0 || v.index >= model_->n_persistent) {
          throw table_error("value " + quoted(v.name) + " names persistent tensor " + std::to_string(v.index));
        }
        const TensorTable& t = model_->persistent[v.index];
        if (t.nbytes != v.nbytes || t.offset > model_->state_bytes || t.nbytes > model_->state_bytes - t.offset) {
          throw table_error("value " + quoted(v.name) + " does not match persistent tensor " + quoted(t.name));
        }
        ptrs[i] = state + t.offset;
        break;
      }
      case Storage::Constant: {
        if (v.index < 0 || v.index >= model_->n_constants) {
          throw table_error("value " + quoted(v.name) + " names constant " + std::to_string(v.index));
        }
        const TensorTable& t = model_->constants[v.index];
        if (t.nbytes != v.nbytes || t.offset > model_->constant_bytes ||
            t.nbytes > model_->constant_bytes - t.offset) {
          throw table_error("value " + quoted(v.name) + " does not match constant " + quoted(t.name));
        }
        ptrs[i] = constants + t.offset;
        break;
      }
      case Storage::View: break;
      default: throw table_error("value " + quoted(v.name) + " has storage " + std::to_string(v.storage));
    }
  }
  // A view aliases a root value directly (validate_plan checked it when the plan was emitted).
  auto root_of = [&](int32_t idx) -> const ValueTable& {
    const ValueTable& v = en.values[idx];
    return static_cast<Storage>(v.storage) == Storage::View ? en.values[v.alias_of] : v;
  };
  for (size_t i = 0; i < nv; ++i) {
    const ValueTable& v = en.values[i];
    if (static_cast<Storage>(v.storage) != Storage::View) continue;
    if (v.alias_of < 0 || static_cast<size_t>(v.alias_of) >= nv ||
        static_cast<Storage>(en.values[v.alias_of].storage) == Storage::View) {
      throw table_error("view " + quoted(v.name) + " aliases value " + std::to_string(v.alias_of));
    }
    ptrs[i] = ptrs[v.alias_of];
  }
  auto check_index = [&](int32_t idx, int32_t s) {
    if (idx < 0 || static_cast<size_t>(idx) >= nv) {
      throw table_error("step " + std::to_string(s) + " names value " + std::to_string(idx));
    }
  };
  // KernelArgs::in_version (executor.cc read_only_version): constants a fixed 0, persistent
  // tensors their counter, arena values none.
  auto version_of = [&](int32_t idx) -> const uint64_t* {
    const ValueTable& r = root_of(idx);
    if (static_cast<Storage>(r.storage) == Storage::Constant) return &kConstantVersion;
    if (static_cast<Storage>(r.storage) == Storage::Persistent) return &versions_[static_cast<size_t>(r.index)];
    return nullptr;
  };
  const size_t ns = static_cast<size_t>(en.n_steps > 0 ? en.n_steps : 0);
  std::vector<StepDesc>& descs = steps_[static_cast<size_t>(e)];
  descs.resize(ns);  // never resized again: KernelArgs keeps a reference to its StepDesc
  std::vector<Kernel>& kernels = kernels_[static_cast<size_t>(e)];
  kernels.reserve(ns);
  const KernelContext kctx{threads_, nullptr, nullptr};
  for (size_t s = 0; s < ns; ++s) {
    const StepTable& st = en.steps[s];
    const int32_t si = static_cast<int32_t>(s);
    StepDesc& d = descs[s];
    d.op = st.op;
    d.node = st.node;
    auto indices = [&](int32_t n, const int32_t* idx, std::vector<int32_t>* to) {
      for (int32_t k = 0; k < n; ++k) {
        check_index(idx[k], si);
        to->push_back(idx[k]);
      }
    };
    indices(st.n_in, st.in, &d.inputs);
    indices(st.n_out, st.out, &d.outputs);
    indices(st.n_ws, st.ws, &d.workspaces);
    for (int32_t k = 0; k < st.n_attrs; ++k) {
      try {
        d.attrs[st.attrs[k].name] = attr_value(st.attrs[k]);
      } catch (const Error& err) {
        throw table_error(step_label(st, si) + ": " + err.what());
      }
    }
    auto ref = [&](int32_t idx) {
      const ValueTable& v = en.values[idx];
      return TensorRef{ptrs[static_cast<size_t>(idx)], static_cast<DType>(v.dtype), dims_of(v.ndim, v.dims)};
    };
    std::vector<TensorRef> ins, outs;
    for (int32_t idx : d.inputs) ins.push_back(ref(idx));
    for (int32_t idx : d.outputs) outs.push_back(ref(idx));
    const DType key = !ins.empty() ? ins[0].dtype : (!outs.empty() ? outs[0].dtype : DType::Invalid);
    const KernelFactory* factory = registry_->find(d.op, key);
    if (factory == nullptr) {
      if (!registry_->has_op(d.op)) {
        throw Error(kRuntime, label + ": " + step_label(st, si) + ": op " + quoted(st.op) +
                                  " is not among this artifact's kernels");
      }
      throw Error(kRuntime, label + ": " + step_label(st, si) + ": this artifact has no kernel for dtype " +
                                graphc::dtype_name(key));
    }
    KernelArgs args(d, std::move(ins), std::move(outs), kctx);
    args.in_version.reserve(d.inputs.size());
    for (int32_t idx : d.inputs) args.in_version.push_back(version_of(idx));
    for (int32_t idx : d.workspaces) args.ws.push_back(ref(idx));
    try {
      kernels.push_back((*factory)(args));
    } catch (const std::bad_alloc&) {
      throw;
    } catch (const std::exception& err) {
      throw Error(kRuntime, label + ": " + step_label(st, si) + ": " + err.what());
    }
  }
}

void Context::bump_all() noexcept {
  for (uint64_t& v : versions_) v = next_version();
}

int Context::need_weights(const char* action) const noexcept {
  if (!ready_) return fail(kState, std::string("cannot ") + action + ": the context was not initialised");
  if (!weights_loaded_) {
    return fail(kState, std::string("cannot ") + action + ": no weights loaded yet (load the weights file, "
                        "an image in memory or the embedded weights first)");
  }
  return kOk;
}

int Context::load_weights_checked(const void* data, size_t nbytes, const char* source) noexcept {
  try {
    load_weights(data, nbytes, *model_, state, constants, source);
  } catch (const Error& e) {
    return fail(e.status, e.what());
  } catch (const std::bad_alloc&) {
    return fail(kNoMemory, "out of memory while loading the weights");
  } catch (const std::exception& e) {
    return fail(kWeights, e.what());
  }
  bump_all();  // what the kernels cached from the old bytes is stale
  weights_loaded_ = true;
  return ok();
}

int Context::load_weights_memory(const void* data, size_t nbytes) noexcept {
  if (!ready_) return fail(kState, "cannot load weights: the context was not initialised");
  if (data == nullptr) return fail(kArgument, "the weights image is NULL");
  return load_weights_checked(data, nbytes, "weights image in memory");
}

int Context::load_embedded_weights() noexcept {
  if (!ready_) return fail(kState, "cannot load weights: the context was not initialised");
  if (model_->embedded_weights_begin == nullptr || model_->embedded_weights_end == nullptr) {
    return fail(kWeights, std::string("the artifact '") + shorten(model_->name ? model_->name : "") +
                              "' embeds no weights (it was compiled without --embed-weights)");
  }
  return load_weights_checked(model_->embedded_weights_begin,
                              static_cast<size_t>(model_->embedded_weights_end - model_->embedded_weights_begin),
                              "embedded weights");
}

// The most bytes a weights image of these tables can have (graphc/aot/weights.py's layout: a
// 128-byte header, per tensor a record of 72 bytes + 8 per dim + its name, padded to 8, and its
// data padded to 64), so a file that is larger is refused before it is read.
static uint64_t max_image_bytes(const ModelTable& m) {
  uint64_t total = 128;
  auto add = [&](const TensorTable* list, int32_t n) {
    for (int32_t i = 0; i < n; ++i) {
      total += 72 + 8 * static_cast<uint64_t>(list[i].ndim) + std::strlen(list[i].name) + 8;
      total += list[i].nbytes + 64;
    }
  };
  add(m.persistent, m.n_persistent);
  add(m.constants, m.n_constants);
  return total;
}

int Context::load_weights_file(const char* path) noexcept {
  if (!ready_) return fail(kState, "cannot load weights: the context was not initialised");
  if (path == nullptr) return fail(kArgument, "the weights path is NULL");
  try {
    // O_NONBLOCK: a FIFO is refused below instead of blocking in open().
    const int fd = ::open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
      const int err = errno;
      return fail(kIo, "cannot open the weights file " + quoted(path) + ": " + std::strerror(err));
    }
    struct Closer {
      int fd;
      ~Closer() { ::close(fd); }
    } closer{fd};
    struct stat st;
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
      return fail(kIo, "the weights file " + quoted(path) + " is not a regular file");
    }
    const uint64_t size = static_cast<uint64_t>(st.st_size), limit = max_image_bytes(*model_);
    if (size > limit) {
      return fail(kWeights, "weights file " + quoted(path) + " has " + std::to_string(size) + " bytes, more than a "
                            "weights image of this artifact can have (" + std::to_string(limit) + ")");
    }
    std::vector<unsigned char> data(static_cast<size_t>(size));
    size_t got = 0;
    while (got < data.size()) {
      const ssize_t n = ::read(fd, data.data() + got, data.size() - got);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        const int err = errno;
        return fail(kIo, "cannot read the weights file " + quoted(path) + ": " + std::strerror(err));
      }
      if (n == 0) break;  // the file shrank while it was read: the loader says it is truncated
      got += static_cast<size_t>(n);
    }
    data.resize(got);
    // An empty file still goes to the loader, which says what is wrong with it.
    static const unsigned char kEmpty = 0;
    const std::string source = "weights file " + quoted(path);
    return load_weights_checked(data.empty() ? &kEmpty : data.data(), data.size(), source.c_str());
  } catch (const std::bad_alloc&) {
    return fail(kNoMemory, "out of memory while reading the weights file");
  } catch (const std::exception& e) {
    return fail(kIo, std::string("cannot read the weights file: ") + e.what());
  }
}

// The index of persistent tensor `name`, or a failure (a negative status) after fail().
int Context::find_persistent(const char* name, size_t nbytes, bool null_ok, const void* buffer) noexcept {
  if (name == nullptr) return -fail(kArgument, "the variable name is NULL");
  try {
    for (int32_t i = 0; i < model_->n_persistent; ++i) {
      const TensorTable& t = model_->persistent[i];
      if (std::strcmp(t.name, name) != 0) continue;
      if (nbytes != t.nbytes) {
        return -fail(kArgument, "variable " + quoted(name) + " (" + describe(t) + ") has " + std::to_string(t.nbytes) +
                                    " bytes, the buffer has " + std::to_string(nbytes));
      }
      if (buffer == nullptr && !null_ok && nbytes != 0) {
        return -fail(kArgument, "the buffer for variable " + quoted(name) + " is NULL");
      }
      return i;
    }
    std::string known;
    const int32_t limit = 10;
    for (int32_t i = 0; i < model_->n_persistent && i < limit; ++i) known += (i ? ", " : "") + quoted(model_->persistent[i].name);
    if (model_->n_persistent > limit) known += " and " + std::to_string(model_->n_persistent - limit) + " more";
    return -fail(kNotFound, "no variable " + quoted(name) + " in this artifact (it has " +
                                std::to_string(model_->n_persistent) + (model_->n_persistent ? ": " + known : "") + ")");
  } catch (const std::bad_alloc&) {
    return -fail(kNoMemory, "out of memory");
  }
}

int Context::read_variable(const char* name, void* dst, size_t nbytes) noexcept {
  if (int st = need_weights("read a variable")) return st;
  const int i = find_persistent(name, nbytes, false, dst);
  if (i < 0) return -i;
  const TensorTable& t = model_->persistent[i];
  if (nbytes) std::memcpy(dst, state + t.offset, nbytes);
  return ok();
}

int Context::write_variable(const char* name, const void* src, size_t nbytes) noexcept {
  if (int st = need_weights("write a variable")) return st;
  const int i = find_persistent(name, nbytes, false, src);
  if (i < 0) return -i;
  const TensorTable& t = model_->persistent[i];
  if (nbytes) std::memcpy(state + t.offset, src, nbytes);
  versions_[static_cast<size_t>(i)] = next_version();  // kernels rebuild what they cached from it
  return ok();
}

int Context::variable_info(int index, const char** name, int* dtype, int* ndim, const int64_t** dims,
                           size_t* nbytes) const noexcept {
  if (model_ == nullptr) return fail(kArgument, "the context has no model tables (NULL)");
  if (index < 0 || index >= model_->n_persistent) {
    return fail(kArgument, "variable index " + std::to_string(index) + " out of range (this artifact has " +
                               std::to_string(model_->n_persistent) + ")");
  }
  const TensorTable& t = model_->persistent[index];
  if (name) *name = t.name;
  if (dtype) *dtype = t.dtype;
  if (ndim) *ndim = t.ndim;
  if (dims) *dims = t.dims;
  if (nbytes) *nbytes = static_cast<size_t>(t.nbytes);
  return ok();
}

int Context::save_checkpoint(const char* path) noexcept {
  if (int st = need_weights("save a checkpoint")) return st;
  if (path == nullptr) return fail(kArgument, "the checkpoint path is NULL");
  try {
    std::vector<NpzTensor> tensors;
    tensors.reserve(static_cast<size_t>(model_->n_persistent));
    for (int32_t i = 0; i < model_->n_persistent; ++i) {
      const TensorTable& t = model_->persistent[i];
      tensors.push_back(NpzTensor{t.name, t.dtype, dims_of(t.ndim, t.dims), state + t.offset, t.nbytes});
    }
    write_npz_atomic(path, tensors);
  } catch (const Error& e) {
    return fail(e.status, e.what());
  } catch (const std::bad_alloc&) {
    return fail(kNoMemory, "out of memory while saving the checkpoint");
  } catch (const std::exception& e) {
    return fail(kIo, e.what());
  }
  return ok();
}

int Context::load_checkpoint(const char* path) noexcept {
  if (int st = need_weights("load a checkpoint")) return st;
  if (path == nullptr) return fail(kArgument, "the checkpoint path is NULL");
  try {
    std::vector<NpzExpect> expect;
    expect.reserve(static_cast<size_t>(model_->n_persistent));
    for (int32_t i = 0; i < model_->n_persistent; ++i) {
      const TensorTable& t = model_->persistent[i];
      expect.push_back(NpzExpect{t.name, t.dtype, dims_of(t.ndim, t.dims), state + t.offset, t.nbytes});
    }
    read_npz(path, expect);
  } catch (const Error& e) {
    return fail(e.status, e.what());
  } catch (const std::bad_alloc&) {
    return fail(kNoMemory, "out of memory while loading the checkpoint");
  } catch (const std::exception& e) {
    return fail(kCheckpoint, e.what());
  }
  bump_all();
  return ok();
}

int run_entry(Context* ctx, int entry, const void* const* feeds, void* const* fetches, EntryFn fn) noexcept {
  if (ctx == nullptr) {
    set_thread_error("the context is NULL");
    return kArgument;
  }
  const ModelTable* m = ctx->model();
  if (m == nullptr || !ctx->ready()) return ctx->fail(kState, "cannot run: the context was not initialised");
  if (entry < 0 || entry >= m->n_entries) {
    try {
      std::string names;
      for (int32_t e = 0; e < m->n_entries && e < 10; ++e) {
        names += (e ? ", " : "") + std::to_string(e) + " " + entry_label(m->entries[e]).substr(6);
      }
      return ctx->fail(kArgument, "entry index " + std::to_string(entry) + " out of range (this artifact has " +
                                      std::to_string(m->n_entries) + " entries: " + names + ")");
    } catch (...) {
      return ctx->fail(kArgument, "entry index out of range");
    }
  }
  if (fn == nullptr) return ctx->fail(kArgument, "the entry function is NULL");
  if (!ctx->weights_loaded()) {
    return ctx->fail(kState, "cannot run " + entry_label(m->entries[entry]) +
                                 ": no weights loaded yet (load the weights file, an image in memory or the "
                                 "embedded weights first)");
  }
  const EntryTable& en = m->entries[entry];
  for (int32_t k = 0; k < en.n_feeds; ++k) {
    const ValueTable& v = en.values[en.feeds[k]];
    if (v.nbytes == 0) continue;
    if (feeds == nullptr || feeds[k] == nullptr) {
      return ctx->fail(kArgument, entry_label(en) + ": feed " + std::to_string(k) + " '" + shorten(v.name) + "' (" +
                                      std::to_string(v.nbytes) + " bytes) is NULL");
    }
  }
  if (feeds == nullptr) feeds = ctx->null_feeds();
  ctx->at = -1;
  try {
    fn(*ctx, feeds, fetches);
  } catch (const std::bad_alloc&) {
    const int at = ctx->at;
    ctx->at = -1;
    if (at >= 0 && at < en.n_steps) {
      return ctx->fail(kNoMemory, entry_label(en) + ": " + step_label(en.steps[at], at) + ": out of memory");
    }
    return ctx->fail(kNoMemory, entry_label(en) + ": out of memory");
  } catch (const std::exception& e) {
    const int at = ctx->at;
    ctx->at = -1;
    if (at >= 0 && at < en.n_steps) {
      return ctx->fail(kRuntime, entry_label(en) + ": " + step_label(en.steps[at], at) + ": " + e.what());
    }
    return ctx->fail(kRuntime, entry_label(en) + ": " + e.what());
  } catch (...) {
    const int at = ctx->at;
    ctx->at = -1;
    if (at >= 0 && at < en.n_steps) {
      return ctx->fail(kRuntime, entry_label(en) + ": " + step_label(en.steps[at], at) + ": unknown C++ exception");
    }
    return ctx->fail(kRuntime, entry_label(en) + ": unknown C++ exception");
  }
  ctx->at = -1;
  return ctx->ok();
}

int create_context(const ModelTable* model, Context** out, void* arena, size_t arena_bytes, void* state,
                   size_t state_bytes, void* constants, size_t constant_bytes, int threads) noexcept {
  if (out == nullptr) {
    set_thread_error("the context out-pointer is NULL");
    return kArgument;
  }
  *out = nullptr;
  Context* ctx = new (std::nothrow) Context(model);
  if (ctx == nullptr) {
    set_thread_error("out of memory while creating the context");
    return kNoMemory;
  }
  const int st = ctx->init(arena, arena_bytes, state, state_bytes, constants, constant_bytes, threads);
  if (st != kOk) {
    set_thread_error(ctx->last_error());
    delete ctx;
    return st;
  }
  set_thread_error("");
  *out = ctx;
  return kOk;
}

void destroy_context(Context* ctx) noexcept { delete ctx; }

}  // namespace aot
}  // namespace graphc
