// aot_runtime.h — the runtime of an AOT artifact (graphc compile --emit c).
//
// An artifact's generated <name>.cc holds its plan as static tables (tables.h), one
// straight-line function per entry and thin extern "C" wrappers.  This file is what those
// call: a Context turns the tables into prepared kernels once, over memory the caller owns
// (arena, state, constants), and does weights, variables, checkpoints and errors.  The
// semantics mirror runtime/executor.cc exactly (value pointers, views, versions, kernel
// arguments), so an artifact computes the same bits as a gc.Session with the same threads.
//
// Every public function returns a Status and never throws; the message of the last call is
// last_error() ("" after a call that succeeded).  No call allocates inside an entry run
// (run_entry); init and the loading functions do.  One context per thread: a context is not
// locked.  Process-wide: the version counter, the CPU worker pool, OpenBLAS's thread count
// (the kernels set it on every call).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "../kernel_registry.h"
#include "../plan.h"
#include "tables.h"

namespace graphc {
namespace aot {

// A version from one process-wide counter, never reused (KernelArgs::in_version): kernels may
// cache what they derive from a persistent tensor (packed weights) until its version moves.
uint64_t next_version() noexcept;

class Context {
 public:
  explicit Context(const ModelTable* model);
  ~Context();
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  // Checks the caller's memory (kArgument for a null block the artifact needs, kAlignment for a
  // block not aligned to kTensorAlignment, kSize for one smaller than the artifact needs, naming the
  // block and both sizes; a block the artifact needs 0 bytes of may be anything, null too),
  // threads >= 1 and the tables' ABI version, then builds the kernel registry
  // (ModelTable::register_kernels) and prepares every step of every entry.  A kernel factory
  // that refuses a step: kRuntime naming the entry and step; out of memory: kNoMemory.
  int init(void* arena, size_t arena_bytes, void* state, size_t state_bytes, void* constants,
           size_t constant_bytes, int threads) noexcept;

  // The weights image (weights_file.h; checked completely before anything is copied).  After
  // a successful load every version moves and runs are allowed.
  int load_weights_file(const char* path) noexcept;
  int load_weights_memory(const void* data, size_t nbytes) noexcept;
  int load_embedded_weights() noexcept;  // kWeights when the artifact embeds none

  // Persistent tensors (variables and optimizer state) by name; nbytes must be the tensor's.
  int read_variable(const char* name, void* dst, size_t nbytes) noexcept;
  int write_variable(const char* name, const void* src, size_t nbytes) noexcept;  // bumps its version
  // Metadata of persistent tensor `index` (ModelTable order); a null out-pointer is skipped.
  int variable_info(int index, const char** name, int* dtype, int* ndim, const int64_t** dims,
                    size_t* nbytes) const noexcept;

  // Session.save_checkpoint's npz (every persistent tensor + the version marker), written
  // atomically; load is strict and all-or-nothing and bumps every version.
  int save_checkpoint(const char* path) noexcept;
  int load_checkpoint(const char* path) noexcept;

  const char* last_error() const noexcept { return error_.c_str(); }
  const ModelTable* model() const noexcept { return model_; }
  bool ready() const noexcept { return ready_; }
  bool weights_loaded() const noexcept { return weights_loaded_; }
  int threads() const noexcept { return threads_; }

  // For the generated entry functions (and run_entry).
  uint8_t* arena = nullptr;
  uint8_t* state = nullptr;
  uint8_t* constants = nullptr;
  // The prepared kernels of `entry`, in step order (valid after a successful init).
  const Kernel* kernels(int entry) const { return kernels_[static_cast<size_t>(entry)].data(); }
  // One per persistent tensor (KernelArgs::in_version of the kernels that read it).
  uint64_t* versions() { return versions_.data(); }
  int at = -1;  // the step running now, -1 outside a step (error messages)

  // Internal to the runtime (run_entry): records a failure and returns `status`.
  int fail(int status, const std::string& message) const noexcept;
  int ok() const noexcept;
  // `feeds` of an entry whose feeds all have 0 bytes may be null: this array of nulls, at least
  // as long as the largest entry's feed list, stands in.
  const void* const* null_feeds() const { return null_feeds_.data(); }

 private:
  void prepare();
  void prepare_entry(int e);
  int check_block(const char* what, const void* p, size_t given, uint64_t needed) noexcept;
  int need_weights(const char* action) const noexcept;
  int find_persistent(const char* name, size_t nbytes, bool null_ok, const void* buffer) noexcept;
  void bump_all() noexcept;
  int load_weights_checked(const void* data, size_t nbytes, const char* source) noexcept;

  const ModelTable* model_;
  int threads_ = 1;
  bool ready_ = false;
  bool weights_loaded_ = false;
  mutable std::string error_;
  std::unique_ptr<KernelRegistry> registry_;
  // Kept alive for the kernels' lives: KernelArgs refers to its StepDesc.
  std::vector<std::vector<StepDesc>> steps_;
  std::vector<std::vector<Kernel>> kernels_;
  std::vector<uint64_t> versions_;
  std::vector<const void*> null_feeds_;
};

// The generated function of one entry (writes straight-line calls of c.kernels(entry)).
using EntryFn = void (*)(Context& c, const void* const* feeds, void* const* fetches);

// Checks ctx (kArgument when null, with thread_error set), that it is initialised and has its
// weights (kState), the entry index (kArgument) and the feeds (a null `feeds` or feeds[k] of a
// feed with bytes: kArgument naming the feed), then runs fn.  An exception from a kernel:
// kRuntime "entry 'train': step 17 (node 'x', op 'y', at model.py:12): ..."; kNoMemory for
// std::bad_alloc.  `fetches` may be null (nothing copied out), as may any fetches[k].
int run_entry(Context* ctx, int entry, const void* const* feeds, void* const* fetches, EntryFn fn) noexcept;

// Convenience for the generated C API: a new context over `model`, initialised.  On failure
// *out is null, the status is returned and thread_error() says why.
int create_context(const ModelTable* model, Context** out, void* arena, size_t arena_bytes, void* state,
                   size_t state_bytes, void* constants, size_t constant_bytes, int threads) noexcept;
void destroy_context(Context* ctx) noexcept;

// The calling thread's last error outside a context (create_context, a null context); "" when none.
const char* thread_error() noexcept;
void set_thread_error(const char* message) noexcept;

}  // namespace aot
}  // namespace graphc
