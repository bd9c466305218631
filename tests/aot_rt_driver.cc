// aot_rt_driver.cc — a hand-written stand-in for what `graphc compile --emit c` generates, for
// tests/test_aot_runtime.py: static plan tables, one straight-line function per entry, and a C
// API over graphc::aot (the emitted mlp.cc has the same shape).  The test compiles it with the
// runtime sources into a shared library and drives it through ctypes.
//
// The model (float32 throughout; the test builds the same plans as graphc Plan messages and
// runs them in a gc.Session to compare bits):
//   persistent: 0 'w' (128, 128) variable, 1 'b' (128,) variable, 2 'w/momentum' (128, 128)
//               optimizer state (zero); constant 0 'scale' (128,)
//   entry 0 'predict':  out = (x @ w + b) * scale; out_flat: a view of out, (4096,)
//   entry 1 'train':    y0 = x @ w; (w, w/momentum) = sgd_momentum_update(w, g, w/momentum);
//                       y1 = x @ w   (y1 must see the updated w: the version moves)
//   entry 2 'lookup':   rows = embedding(ids, w) (an id outside [0, 128) fails at run time);
//                       a second feed 'nothing' of 0 bytes that no step reads
// The sha256 strings of the tables come from the test (-D): it derives them from the initial
// values it writes into the weights image.
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>

#include "aot/aot_runtime.h"

#ifndef RT_PLAN_SHA256
#error "RT_PLAN_SHA256 must be defined"
#endif

#define RT_API extern "C" __attribute__((visibility("default")))

namespace {

using graphc::aot::AttrTable;
using graphc::aot::EntryTable;
using graphc::aot::ModelTable;
using graphc::aot::StepTable;
using graphc::aot::TensorTable;
using graphc::aot::ValueTable;

constexpr int32_t F32 = 1, I64 = 4;
constexpr int32_t ARENA = 0, PERSISTENT = 1, CONSTANT = 2, VIEW = 3;
constexpr int32_t KIND_FLOAT = 1, KIND_BOOL = 3;

const int64_t kDimsW[] = {128, 128};
const int64_t kDimsB[] = {128};
const int64_t kDimsX[] = {32, 128};
const int64_t kDimsFlat[] = {4096};
const int64_t kDimsIds[] = {4};
const int64_t kDimsRows[] = {4, 128};
const int64_t kDimsNothing[] = {0};

const TensorTable kPersistent[] = {
    {"w", 0, F32, 2, kDimsW, 0, 65536, RT_SHA256_W, 0},
    {"b", 0, F32, 1, kDimsB, 65536, 512, RT_SHA256_B, 0},
    {"w/momentum", 1, F32, 2, kDimsW, 66048, 65536, RT_SHA256_M, 1},
};
const TensorTable kConstants[] = {
    {"scale", 2, F32, 1, kDimsB, 0, 512, RT_SHA256_SCALE, 0},
};

// ---- entry 0 'predict' ----
const ValueTable kPredictValues[] = {
    {"x", F32, ARENA, 0, 16384, 0, 0, 2, kDimsX},
    {"w", F32, PERSISTENT, 0, 65536, 0, 0, 2, kDimsW},
    {"b", F32, PERSISTENT, 0, 512, 1, 0, 1, kDimsB},
    {"scale", F32, CONSTANT, 0, 512, 0, 0, 1, kDimsB},
    {"xw", F32, ARENA, 16384, 16384, 0, 0, 2, kDimsX},
    {"y", F32, ARENA, 32768, 16384, 0, 0, 2, kDimsX},
    {"out", F32, ARENA, 49152, 16384, 0, 0, 2, kDimsX},
    {"out_flat", F32, VIEW, 0, 16384, 0, 6, 1, kDimsFlat},
};
const int32_t kP0In[] = {0, 1}, kP0Out[] = {4};
const int32_t kP1In[] = {4, 2}, kP1Out[] = {5};
const int32_t kP2In[] = {5, 3}, kP2Out[] = {6};
const AttrTable kMatmulAttrs[] = {
    {"transpose_a", KIND_BOOL, 0, 0.0, nullptr, 0, 0, nullptr, nullptr},
    {"transpose_b", KIND_BOOL, 0, 0.0, nullptr, 0, 0, nullptr, nullptr},
};
const StepTable kPredictSteps[] = {
    {"matmul", "dense/matmul", "model.py:10", 2, kP0In, 1, kP0Out, 0, nullptr, 2, kMatmulAttrs},
    {"add", "dense/add", "model.py:10", 2, kP1In, 1, kP1Out, 0, nullptr, 0, nullptr},
    {"mul", "scaled", "model.py:11", 2, kP2In, 1, kP2Out, 0, nullptr, 0, nullptr},
};
const int32_t kPredictFeeds[] = {0};
const int32_t kPredictFetches[] = {6, 7};

// ---- entry 1 'train' ----
const ValueTable kTrainValues[] = {
    {"x", F32, ARENA, 0, 16384, 0, 0, 2, kDimsX},
    {"g", F32, ARENA, 16384, 65536, 0, 0, 2, kDimsW},
    {"w", F32, PERSISTENT, 0, 65536, 0, 0, 2, kDimsW},
    {"w/momentum", F32, PERSISTENT, 0, 65536, 2, 0, 2, kDimsW},
    {"y0", F32, ARENA, 81920, 16384, 0, 0, 2, kDimsX},
    {"y1", F32, ARENA, 98304, 16384, 0, 0, 2, kDimsX},
    {"update/w:0", F32, PERSISTENT, 0, 65536, 0, 0, 2, kDimsW},
    {"update/w:1", F32, PERSISTENT, 0, 65536, 2, 0, 2, kDimsW},
};
const int32_t kT0In[] = {0, 2}, kT0Out[] = {4};
const int32_t kT1In[] = {2, 1, 3}, kT1Out[] = {6, 7};
const int32_t kT2In[] = {0, 6}, kT2Out[] = {5};
const AttrTable kSgdAttrs[] = {
    // sorted by name, as the emitter writes them; 0x1.999999999999ap-4 = 0.1, 0x1.ccccccccccccdp-1 = 0.9
    {"lr", KIND_FLOAT, 0, 0x1.999999999999ap-4, nullptr, 0, 0, nullptr, nullptr},
    {"momentum", KIND_FLOAT, 0, 0x1.ccccccccccccdp-1, nullptr, 0, 0, nullptr, nullptr},
    {"nesterov", KIND_BOOL, 0, 0.0, nullptr, 0, 0, nullptr, nullptr},
    {"weight_decay", KIND_FLOAT, 0, 0.0, nullptr, 0, 0, nullptr, nullptr},
};
const StepTable kTrainSteps[] = {
    {"matmul", "before", "train.py:3", 2, kT0In, 1, kT0Out, 0, nullptr, 2, kMatmulAttrs},
    {"sgd_momentum_update", "update/w", "train.py:4", 3, kT1In, 2, kT1Out, 0, nullptr, 4, kSgdAttrs},
    {"matmul", "after", "train.py:5", 2, kT2In, 1, kT2Out, 0, nullptr, 2, kMatmulAttrs},
};
const int32_t kTrainFeeds[] = {0, 1};
const int32_t kTrainFetches[] = {4, 5};

// ---- entry 2 'lookup' ----
const ValueTable kLookupValues[] = {
    {"ids", I64, ARENA, 0, 32, 0, 0, 1, kDimsIds},
    {"w", F32, PERSISTENT, 0, 65536, 0, 0, 2, kDimsW},
    {"rows", F32, ARENA, 64, 2048, 0, 0, 2, kDimsRows},
    {"nothing", F32, ARENA, 2112, 0, 0, 0, 1, kDimsNothing},
};
const int32_t kL0In[] = {0, 1}, kL0Out[] = {2};
const StepTable kLookupSteps[] = {
    {"embedding", "embed", "model.py:42", 2, kL0In, 1, kL0Out, 0, nullptr, 0, nullptr},
};
const int32_t kLookupFeeds[] = {0, 3};
const int32_t kLookupFetches[] = {2};

const EntryTable kEntries[] = {
    {"predict", 0, 8, kPredictValues, 3, kPredictSteps, 1, kPredictFeeds, 2, kPredictFetches, 65536},
    {"train", 1, 8, kTrainValues, 3, kTrainSteps, 2, kTrainFeeds, 2, kTrainFetches, 114688},
    {"lookup", 0, 4, kLookupValues, 1, kLookupSteps, 2, kLookupFeeds, 1, kLookupFetches, 2112},
};

void register_kernels(graphc::KernelRegistry& r) {
  graphc::register_matmul_kernels(r);
  graphc::register_elementwise_kernels(r);
  graphc::register_nn_kernels(r);
  graphc::register_gather_kernels(r);
}

#ifdef RT_EMBED
// An embedded weights image (what --embed-weights assembles with .incbin).
__asm__(".section .rodata\n.balign 64\n.global rt_weights_begin\n.hidden rt_weights_begin\nrt_weights_begin:\n"
        ".incbin \"" RT_EMBED "\"\n.global rt_weights_end\n.hidden rt_weights_end\nrt_weights_end:\n.previous\n");
extern "C" const unsigned char rt_weights_begin[];
extern "C" const unsigned char rt_weights_end[];
#define RT_EMBED_BEGIN rt_weights_begin
#define RT_EMBED_END rt_weights_end
#else
#define RT_EMBED_BEGIN nullptr
#define RT_EMBED_END nullptr
#endif

const ModelTable kModel = {
    graphc::aot::kAbiVersion, "rt", RT_PLAN_SHA256, 114688, 131584, 512, 3, kPersistent, 1, kConstants, 3, kEntries,
    register_kernels, RT_EMBED_BEGIN, RT_EMBED_END};

// ---- the generated entry functions ----
void run_predict(graphc::aot::Context& c, const void* const* feeds, void* const* fetches) {
  uint8_t* const A = c.arena;
  const graphc::Kernel* const k = c.kernels(0);
  std::memcpy(A + 0, feeds[0], 16384);  // feed 0 'x' float32 (32, 128)
  c.at = 0; k[0]();  // matmul 'dense/matmul'
  c.at = 1; k[1]();  // add 'dense/add'
  c.at = 2; k[2]();  // mul 'scaled'
  if (fetches && fetches[0]) std::memcpy(fetches[0], A + 49152, 16384);  // fetch 0 'out'
  if (fetches && fetches[1]) std::memcpy(fetches[1], A + 49152, 16384);  // fetch 1 'out_flat' (a view of 'out')
}

void run_train(graphc::aot::Context& c, const void* const* feeds, void* const* fetches) {
  uint8_t* const A = c.arena;
  const graphc::Kernel* const k = c.kernels(1);
  uint64_t* const v = c.versions();
  std::memcpy(A + 0, feeds[0], 16384);      // feed 0 'x' float32 (32, 128)
  std::memcpy(A + 16384, feeds[1], 65536);  // feed 1 'g' float32 (128, 128)
  c.at = 0; k[0]();  // matmul 'before'
  v[0] = graphc::aot::next_version(); v[2] = graphc::aot::next_version();
  c.at = 1; k[1]();  // sgd_momentum_update 'update/w' writes 'w' (persistent 0), 'w/momentum' (2)
  c.at = 2; k[2]();  // matmul 'after'
  if (fetches && fetches[0]) std::memcpy(fetches[0], A + 81920, 16384);  // fetch 0 'y0'
  if (fetches && fetches[1]) std::memcpy(fetches[1], A + 98304, 16384);  // fetch 1 'y1'
}

void run_lookup(graphc::aot::Context& c, const void* const* feeds, void* const* fetches) {
  uint8_t* const A = c.arena;
  const graphc::Kernel* const k = c.kernels(2);
  std::memcpy(A + 0, feeds[0], 32);  // feed 0 'ids' int64 (4,)
  // feed 1 'nothing' float32 (0,): no bytes
  c.at = 0; k[0]();  // embedding 'embed'
  if (fetches && fetches[0]) std::memcpy(fetches[0], A + 64, 2048);  // fetch 0 'rows'
}

const graphc::aot::EntryFn kEntryFns[] = {run_predict, run_train, run_lookup};

// Broken tables for init's error paths: the same model with one thing changed.
StepTable g_bad_predict[3];
StepTable g_bad_train[3];
EntryTable g_bad_entries[3];
ModelTable g_bad_model;

void register_matmul_only(graphc::KernelRegistry& r) { graphc::register_matmul_kernels(r); }

const ModelTable* bad_model(int kind) {
  g_bad_model = kModel;
  for (int e = 0; e < 3; ++e) g_bad_entries[e] = kEntries[e];
  for (int s = 0; s < 3; ++s) g_bad_predict[s] = kPredictSteps[s];
  for (int s = 0; s < 3; ++s) g_bad_train[s] = kTrainSteps[s];
  g_bad_entries[0].steps = g_bad_predict;
  g_bad_entries[1].steps = g_bad_train;
  g_bad_model.entries = g_bad_entries;
  switch (kind) {
    case 1: g_bad_predict[2].op = "no_such_op"; break;         // no kernel of that name
    case 2: g_bad_train[1].n_attrs = 1; break;                  // sgd without 'momentum': its factory refuses
    case 3: g_bad_model.abi_version = graphc::aot::kAbiVersion + 1; break;
    case 4: g_bad_model.register_kernels = register_matmul_only; break;  // 'add' not registered
    case 5: g_bad_model.arena_bytes = 1024; break;           // values outside the arena
    default: break;
  }
  return &g_bad_model;
}

}  // namespace

// ---- allocation counting (the test links with -Wl,--wrap=malloc,...) ----
// Every allocation the code in this library makes (the runtime, the kernels, the templates they
// instantiate) passes here: operator new is replaced inside the library (hidden, so it binds
// locally), malloc & co. are wrapped at link time.  OpenBLAS and libstdc++'s own compiled code
// are outside.  rt_allocations() tells how many there were.
namespace {
std::atomic<long> g_allocations{0};
}
extern "C" {
void* __real_malloc(size_t n);
void* __real_calloc(size_t n, size_t k);
void* __real_realloc(void* p, size_t n);
int __real_posix_memalign(void** p, size_t a, size_t n);
void* __real_aligned_alloc(size_t a, size_t n);
void* __wrap_malloc(size_t n) { g_allocations.fetch_add(1); return __real_malloc(n); }
void* __wrap_calloc(size_t n, size_t k) { g_allocations.fetch_add(1); return __real_calloc(n, k); }
void* __wrap_realloc(void* p, size_t n) { g_allocations.fetch_add(1); return __real_realloc(p, n); }
int __wrap_posix_memalign(void** p, size_t a, size_t n) { g_allocations.fetch_add(1); return __real_posix_memalign(p, a, n); }
void* __wrap_aligned_alloc(size_t a, size_t n) { g_allocations.fetch_add(1); return __real_aligned_alloc(a, n); }
}
void* operator new(size_t n) {
  g_allocations.fetch_add(1);
  if (void* p = __real_malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void* operator new[](size_t n) { return operator new(n); }
void* operator new(size_t n, const std::nothrow_t&) noexcept {
  g_allocations.fetch_add(1);
  return __real_malloc(n ? n : 1);
}
void* operator new[](size_t n, const std::nothrow_t& t) noexcept { return operator new(n, t); }
void* operator new(size_t n, std::align_val_t a) {
  g_allocations.fetch_add(1);
  void* p = nullptr;
  const size_t al = static_cast<size_t>(a) < sizeof(void*) ? sizeof(void*) : static_cast<size_t>(a);
  if (__real_posix_memalign(&p, al, n ? n : 1) == 0) return p;
  throw std::bad_alloc();
}
void* operator new[](size_t n, std::align_val_t a) { return operator new(n, a); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }
void operator delete[](void* p, size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, size_t, std::align_val_t) noexcept { std::free(p); }

RT_API long rt_allocations() { return g_allocations.load(); }

// ---- the C API (as the emitter writes it, prefix rt_) ----
using graphc::aot::Context;

RT_API int rt_create(Context** out, void* arena, size_t arena_bytes, void* state, size_t state_bytes,
                     void* constants, size_t constant_bytes, int threads) {
  return graphc::aot::create_context(&kModel, out, arena, arena_bytes, state, state_bytes, constants,
                                     constant_bytes, threads);
}
RT_API int rt_create_bad(int kind, Context** out, void* arena, size_t arena_bytes, void* state, size_t state_bytes,
                         void* constants, size_t constant_bytes, int threads) {
  return graphc::aot::create_context(bad_model(kind), out, arena, arena_bytes, state, state_bytes, constants,
                                     constant_bytes, threads);
}
RT_API void rt_destroy(Context* ctx) { graphc::aot::destroy_context(ctx); }
RT_API const char* rt_last_error(const Context* ctx) {
  return ctx ? ctx->last_error() : graphc::aot::thread_error();
}
RT_API int rt_load_weights(Context* ctx, const char* path) {
  if (!ctx) return graphc::aot::set_thread_error("the context is NULL"), graphc::aot::kArgument;
  return ctx->load_weights_file(path);
}
RT_API int rt_load_weights_from_memory(Context* ctx, const void* data, size_t n) {
  if (!ctx) return graphc::aot::set_thread_error("the context is NULL"), graphc::aot::kArgument;
  return ctx->load_weights_memory(data, n);
}
RT_API int rt_load_embedded_weights(Context* ctx) {
  if (!ctx) return graphc::aot::set_thread_error("the context is NULL"), graphc::aot::kArgument;
  return ctx->load_embedded_weights();
}
RT_API int rt_run(Context* ctx, int entry, const void* const* feeds, void* const* fetches) {
  const graphc::aot::EntryFn fn = entry >= 0 && entry < 3 ? kEntryFns[entry] : nullptr;
  return graphc::aot::run_entry(ctx, entry, feeds, fetches, fn);
}
RT_API int rt_read_variable(Context* ctx, const char* name, void* dst, size_t n) {
  if (!ctx) return graphc::aot::set_thread_error("the context is NULL"), graphc::aot::kArgument;
  return ctx->read_variable(name, dst, n);
}
RT_API int rt_write_variable(Context* ctx, const char* name, const void* src, size_t n) {
  if (!ctx) return graphc::aot::set_thread_error("the context is NULL"), graphc::aot::kArgument;
  return ctx->write_variable(name, src, n);
}
RT_API int rt_variable_info(const Context* ctx, int index, const char** name, int* dtype, int* ndim,
                            const int64_t** dims, size_t* nbytes) {
  if (!ctx) return graphc::aot::set_thread_error("the context is NULL"), graphc::aot::kArgument;
  return ctx->variable_info(index, name, dtype, ndim, dims, nbytes);
}
RT_API int rt_save_checkpoint(Context* ctx, const char* path) {
  if (!ctx) return graphc::aot::set_thread_error("the context is NULL"), graphc::aot::kArgument;
  return ctx->save_checkpoint(path);
}
RT_API int rt_load_checkpoint(Context* ctx, const char* path) {
  if (!ctx) return graphc::aot::set_thread_error("the context is NULL"), graphc::aot::kArgument;
  return ctx->load_checkpoint(path);
}
// arena, state and constant bytes, persistent count.
RT_API void rt_sizes(uint64_t* out) {
  out[0] = kModel.arena_bytes;
  out[1] = kModel.state_bytes;
  out[2] = kModel.constant_bytes;
  out[3] = static_cast<uint64_t>(kModel.n_persistent);
}
RT_API uint64_t rt_next_version() { return graphc::aot::next_version(); }
