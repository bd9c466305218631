// nccl_comm.h — the NCCL communicator of data-parallel training on CUDA (runtime/comm_abi.h).
//
// graphc._runtime.nccl_communicator(host_comm, ...) (runtime/nccl.pxi) makes one: every rank
// loads libnccl.so.2 (libs.h: the nvidia-nccl-cu13 wheel first), the ranks compare what they
// found through the host communicator (graphc._mpi, host memory), rank 0's ncclUniqueId goes to
// every rank with the host's broadcast, and a nonblocking ncclCommInitRankConfig on the current
// CUDA device (graphc's device 'cuda' is device 0 of CUDA_VISIBLE_DEVICES: one GPU per rank).
//
// The plan's collective steps then call, through graphc_comm:
//   prepare(slot, nbytes, stream)   at plan load: an event per slot; deterministic scratch.
//   allreduce_start(slot, ...)      ncclAllReduce(sum, in place) enqueued on the plan's stream,
//                                   also inside the executor's stream capture (a CUDA graph).
//                                   Deterministic mode: the rank-order sum below instead.
//   allreduce_wait(slot, stream)    nothing to enqueue (same stream); reports a failure the
//                                   watchdog or ncclCommGetAsyncError saw.  wait(-1, NULL) is
//                                   that report alone: the executor's health check before each
//                                   run and after its synchronize (a CUDA graph replay runs no
//                                   step's host code; runtime/comm.h comm_check_health).
//   broadcast/allgather/barrier     the host communicator's (host memory).
//
// Deterministic mode (bit-identical on every rank, whatever NCCL's algorithm, and equal to the
// MPI communicator's deterministic sum): the bucket's `count` elements are cut in `size` chunks
// of `stride` elements (the last ones shorter or empty; deterministic_plan below).  One NCCL
// group sends chunk p to rank p and receives this rank's chunk from every peer into scratch
// slot p; a kernel sums the chunk in rank order 0, 1, ..., size-1 ((x0 + x1) + x2 ...) into
// scratch slot `rank`; ncclAllGather (in place on the scratch) gives every rank every summed
// chunk; one device copy puts the `count` elements back.
//
// Failures (the ABI's sticky error): an NCCL call's error, ncclCommGetAsyncError's, or an
// allreduce that stays pending longer than `timeout` (a watchdog thread queries, every 50 ms, an
// event recorded after each collective; "pending" counts from when it first sees the event
// enqueued and not reached, so the compute queued before it in the same run counts too) aborts the NCCL communicator (ncclCommAbort: kernels
// spinning on a dead peer return) and every later call fails with the first message.
//
// Both builds: without CUDA, or a CUDA build without nccl.h, create() and load_library()
// return GRAPHC_COMM_UNSUPPORTED saying why.  The index math (deterministic_plan,
// ordered_sum_at) is plain inline code, compiled by g++ in the tests.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "../comm_abi.h"
#include "../hd.h"

#if defined(GRAPHC_WITH_CUDA) && defined(__has_include)
#if __has_include(<nccl.h>)
#define GRAPHC_NCCL_BUILT 1
#endif
#endif

namespace graphc {
namespace nccl {

// -- the deterministic sum's layout (elements, not bytes) ------------------------------------

struct Span {
  uint64_t offset = 0;  // first element
  uint64_t count = 0;
};

// One rank's part: receive `own.count` elements from each peer into scratch at
// peer * stride (recvs), send chunk p of the bucket to rank p (sends); scratch holds
// size * stride elements.
struct Transfer {
  int peer = 0;
  Span span;  // sends: the bucket's elements; recvs: scratch elements
};

struct DeterministicPlan {
  uint64_t stride = 0;  // elements per chunk: ceil(count / size)
  Span own;             // this rank's chunk of the bucket
  std::vector<Transfer> sends;
  std::vector<Transfer> recvs;
};

// Chunk p of `count` elements cut in `size` chunks of ceil(count / size).
inline Span chunk_of(uint64_t count, int size, int p) {
  Span s;
  if (size <= 0 || p < 0 || p >= size) return s;
  const uint64_t stride = (count + static_cast<uint64_t>(size) - 1) / static_cast<uint64_t>(size);
  const uint64_t begin = stride * static_cast<uint64_t>(p);
  s.offset = begin < count ? begin : count;
  s.count = begin < count ? (count - begin < stride ? count - begin : stride) : 0;
  return s;
}

inline DeterministicPlan deterministic_plan(uint64_t count, int size, int rank) {
  DeterministicPlan plan;
  if (size <= 0 || rank < 0 || rank >= size) return plan;
  plan.stride = (count + static_cast<uint64_t>(size) - 1) / static_cast<uint64_t>(size);
  plan.own = chunk_of(count, size, rank);
  for (int p = 0; p < size; ++p) {
    if (p == rank) continue;
    const Span theirs = chunk_of(count, size, p);
    if (theirs.count) plan.sends.push_back({p, theirs});
    if (plan.own.count) plan.recvs.push_back({p, {plan.stride * static_cast<uint64_t>(p), plan.own.count}});
  }
  return plan;
}

// Element i of this rank's summed chunk: the peers' copies sit in scratch at p * stride, this
// rank's own copy in `own`; the sum runs in rank order (one add at a time, no reassociation).
template <class T>
GRAPHC_HD inline T ordered_sum_at(const T* scratch, uint64_t stride, const T* own, int size, int rank, uint64_t i) {
  T acc = rank == 0 ? own[i] : scratch[i];
  for (int p = 1; p < size; ++p) acc = acc + (p == rank ? own[i] : scratch[stride * static_cast<uint64_t>(p) + i]);
  return acc;
}

// -- the communicator ------------------------------------------------------------------------

class Communicator;

#ifdef GRAPHC_NCCL_BUILT

// Whether this build has the NCCL communicator (a CUDA build that found nccl.h).
bool built();

// Loads libnccl.so.2 as create() would: 0 with its path and version (NCCL_VERSION_CODE), else
// GRAPHC_COMM_UNSUPPORTED (not built) or GRAPHC_COMM_ERROR (the library cannot be loaded: the
// message names the file, the folders searched and the pip command) with the message in *err.
int load_library(std::string* path, uint64_t* version, std::string* err);

// A communicator over `host`'s ranks (collective over them: every rank calls it).  0 and *out,
// or a return code of comm_abi.h and the message in *err (the same verdict on every rank when
// the problem is found before NCCL's init: a rank without NCCL, two ranks on one GPU).
// `timeout_s` > 0: the longest an init or an allreduce may take (at most 1e9 s; <= 0: 60 s).
int create(const graphc_comm* host, bool deterministic, double timeout_s, Communicator** out, std::string* err);

// The ABI struct (valid until destroy).
const graphc_comm* abi_of(Communicator* c);

// A blocking in-place sum of a host array over every rank, through the same allreduce_start /
// allreduce_wait as the plan's steps (a staging buffer on the device, its own stream and slot).
// For tests, the GPU check and benchmarks.  0, or a return code and *err.
int host_allreduce(Communicator* c, void* data, uint64_t count, int dtype, std::string* err);

// Ends the communicator: ncclCommFinalize + ncclCommDestroy (ncclCommAbort after a failure or
// when finalize does not finish within the timeout), then frees the scratch.  Never throws.
void destroy(Communicator* c) noexcept;

namespace detail {
// nccl_comm.cu: out[i] = ordered_sum_at(..., i) for i < n, on `stream`; a cudaError_t.
int launch_ordered_sum(int dtype, const void* scratch, uint64_t stride, const void* own, int size, int rank,
                       uint64_t n, void* out, void* stream);
}  // namespace detail
#else
// No NCCL in this build: everything says so.
inline const char* not_built_reason() {
#ifdef GRAPHC_WITH_CUDA
  return "this graphc was built with CUDA but without NCCL's header (nccl.h was not found at build time): "
         "pip install nvidia-nccl-cu13, then rebuild graphc";
#else
  return "data-parallel training on device 'cuda' needs NCCL, and this graphc was not built with CUDA "
         "(nvcc was not found at build time); use device 'cpu' (MPI)";
#endif
}
inline bool built() { return false; }
inline int load_library(std::string*, uint64_t*, std::string* err) {
  *err = not_built_reason();
  return GRAPHC_COMM_UNSUPPORTED;
}
inline int create(const graphc_comm*, bool, double, Communicator** out, std::string* err) {
  *out = nullptr;
  *err = not_built_reason();
  return GRAPHC_COMM_UNSUPPORTED;
}
inline const graphc_comm* abi_of(Communicator*) { return nullptr; }
inline int host_allreduce(Communicator*, void*, uint64_t, int, std::string* err) {
  *err = not_built_reason();
  return GRAPHC_COMM_UNSUPPORTED;
}
inline void destroy(Communicator*) noexcept {}
#endif

}  // namespace nccl
}  // namespace graphc
