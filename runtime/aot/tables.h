// tables.h — what an AOT artifact (graphc compile --emit c) compiles in: its plan as static
// tables.  The emitter (graphc/aot/emit.py) writes them into <name>.cc as `static const` data
// (no constructors run, no parsing at run time); the AOT runtime (aot_runtime.h) turns them into
// prepared kernels once, when a context is created, and the generated entry functions then call
// those kernels in straight-line code over fixed offsets.
//
// Trust: the tables come from a plan that graphc validated when it emitted them, and they are
// compiled into the artifact, so the runtime trusts them.  What it does not trust is everything
// that arrives at run time: the caller's memory (alignment, sizes), a weights file or image
// (weights_file.h: sizes and sha256 checked against these tables), a checkpoint (npz.h).
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

namespace graphc {

class KernelRegistry;

namespace aot {

// Bumped when the tables or the C API change shape; the header of every artifact carries it
// (<NAME>_ABI_VERSION) and the runtime refuses tables of another version.
constexpr uint32_t kAbiVersion = 1;

// Status codes of every C API function (the emitted header repeats them as <NAME>_OK, ...).
enum Status : int {
  kOk = 0,
  kArgument = 1,    // a null pointer, an unknown entry index, a wrong byte count
  kAlignment = 2,   // caller memory not aligned to kTensorAlignment (arena, state, constants) or the dtype
  kSize = 3,        // caller memory smaller than the artifact needs
  kWeights = 4,     // a weights file/image that is not this artifact's (sizes, hashes, format)
  kNotFound = 5,    // an unknown variable name
  kIo = 6,          // a file could not be opened, read or written
  kCheckpoint = 7,  // a checkpoint that is corrupt or does not match the artifact's variables
  kRuntime = 8,     // a kernel failed while running an entry
  kNoMemory = 9,    // an allocation failed (context creation, loading)
  kState = 10,      // a call out of order (running before weights were loaded)
};

// The error type the AOT runtime's helpers throw; the C API catches it and returns `status`
// with what() as <name>_last_error(ctx).  No exception ever crosses the C API.
class Error : public std::runtime_error {
 public:
  Error(Status status, const std::string& what) : std::runtime_error(what), status(status) {}
  Status status;
};

// Every caller-owned block (arena, state, constants) and every tensor inside state and
// constant memory is aligned to this.
constexpr uint64_t kTensorAlignment = 64;

// One attribute of a step: graphc::AttrValue as data.  `kind` is AttrValue::Kind.
struct AttrTable {
  const char* name;
  int32_t kind;
  int64_t i;              // Int, Bool (0/1), DTypeKind (a DType number)
  double f;               // Float (the exact double, written with %a by the emitter)
  const char* s;          // String: s_len bytes (may hold NUL bytes), not NUL-terminated
  uint64_t s_len;
  int32_t n;              // Ints / Floats: element count
  const int64_t* ints;
  const double* floats;
};

// One value of an entry's plan: graphc::ValueDesc as data.
struct ValueTable {
  const char* name;
  int32_t dtype;          // graphc::DType
  int32_t storage;        // graphc::Storage: 0 arena, 1 persistent, 2 constant, 3 view
  uint64_t offset;        // Arena: byte offset in the arena
  uint64_t nbytes;
  int32_t index;          // Persistent: index into ModelTable::persistent;
                          // Constant: index into ModelTable::constants (model-wide)
  int32_t alias_of;       // View: the value (of this entry) whose bytes it aliases, a root
  int32_t ndim;
  const int64_t* dims;
};

// One step of an entry's plan: graphc::StepDesc as data (frees are not needed at run time).
struct StepTable {
  const char* op;
  const char* node;
  const char* where;      // the user's file:line that made the node, or ""
  int32_t n_in;
  const int32_t* in;      // indices into EntryTable::values
  int32_t n_out;
  const int32_t* out;
  int32_t n_ws;
  const int32_t* ws;      // workspaces (arena values)
  int32_t n_attrs;
  const AttrTable* attrs; // sorted by name
};

struct EntryTable {
  const char* name;       // "" for the single plan of a plain (non-program) artifact
  int32_t training;       // 1: the entry updates variables
  int32_t n_values;
  const ValueTable* values;
  int32_t n_steps;
  const StepTable* steps;
  int32_t n_feeds;
  const int32_t* feeds;   // indices into values, in the plan's feed order
  int32_t n_fetches;
  const int32_t* fetches;
  uint64_t arena_bytes;   // this entry's own; the context's arena is ModelTable::arena_bytes
};

// A tensor with bytes of its own: a persistent tensor (in state memory) or a constant (in
// constant memory).
enum TensorKind : int32_t { kVariable = 0, kOptimizerState = 1, kConstant = 2 };

struct TensorTable {
  const char* name;
  int32_t kind;           // TensorKind
  int32_t dtype;
  int32_t ndim;
  const int64_t* dims;
  uint64_t offset;        // in state memory (variables, optimizer state) or constant memory;
                          // a multiple of kTensorAlignment
  uint64_t nbytes;
  const char* sha256;     // 64 lowercase hex digits: sha256 of the initial bytes
  int32_t zero_init;      // 1: the initial value is all zero bytes (not stored in the weights)
};

struct ModelTable {
  uint32_t abi_version;   // kAbiVersion of the emitter that wrote the tables
  const char* name;       // the artifact's C prefix
  const char* plan_sha256;  // sha256 (hex) of the serialized plan or program it came from
  uint64_t arena_bytes;   // the largest entry's arena
  uint64_t state_bytes;   // variables then optimizer state, each tensor at its offset
  uint64_t constant_bytes;
  int32_t n_persistent;
  const TensorTable* persistent;  // the plan's persistent list, in its order
  int32_t n_constants;
  const TensorTable* constants;
  int32_t n_entries;
  const EntryTable* entries;
  // Registers the kernels of exactly the runtime/cpu files this artifact ships.
  void (*register_kernels)(KernelRegistry& r);
  // --embed-weights: the weights image assembled into the library (.incbin): [begin, end);
  // both nullptr without it.
  const unsigned char* embedded_weights_begin;
  const unsigned char* embedded_weights_end;
};

}  // namespace aot
}  // namespace graphc
