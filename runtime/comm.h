// comm.h — C++ helpers over the communicator C ABI (comm_abi.h): what the collective kernels
// (cpu/collective.cc, cuda/collective.cu) and the executor use to call a graphc_comm and turn
// its nonzero return codes into graphc::CommFailure (errors.h), with the communicator's message.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "comm_abi.h"
#include "errors.h"

namespace graphc {

// Whether the collectives on `comm` are no-ops: no communicator (a world of one process, a dry
// prepare) or a world of size 1.
inline bool comm_is_trivial(const graphc_comm* comm) { return comm == nullptr || comm->size <= 1; }

// std::invalid_argument unless `comm` is null or a well-formed communicator of this ABI
// (the executor checks what Python hands it before any kernel sees it).
inline void check_comm(const graphc_comm* comm) {
  if (comm == nullptr) return;
  if (comm->abi_version != GRAPHC_COMM_ABI_VERSION) {
    throw std::invalid_argument("the communicator has ABI version " + std::to_string(comm->abi_version) +
                                ", this runtime expects " + std::to_string(GRAPHC_COMM_ABI_VERSION) +
                                " (graphc and its communicator module were built apart: rebuild graphc)");
  }
  if (comm->size < 1 || comm->rank < 0 || comm->rank >= comm->size) {
    throw std::invalid_argument("the communicator has rank " + std::to_string(comm->rank) + " of size " +
                                std::to_string(comm->size));
  }
  if (comm->prepare == nullptr || comm->allreduce_start == nullptr || comm->allreduce_wait == nullptr ||
      comm->broadcast == nullptr || comm->allgather == nullptr || comm->barrier == nullptr) {
    throw std::invalid_argument("the communicator lacks a function (a null pointer in its graphc_comm)");
  }
}

// The name of a communicator return code.
inline const char* comm_code_name(int rc) {
  switch (rc) {
    case GRAPHC_COMM_OK: return "ok";
    case GRAPHC_COMM_ERROR: return "error";
    case GRAPHC_COMM_TIMEOUT: return "timeout";
    case GRAPHC_COMM_ABORTED: return "aborted";
    case GRAPHC_COMM_UNSUPPORTED: return "unsupported";
    default: return "unknown code";
  }
}

// Calls `f(err, errlen)` (one graphc_comm function with its message buffer); throws
// CommFailure with the communicator's message (or, when it left none, `what` and the code)
// when it returns nonzero.
template <class F>
void comm_call(const graphc_comm* comm, const char* what, F f) {
  char err[1024];
  err[0] = '\0';
  const int rc = f(err, sizeof(err));
  if (rc == GRAPHC_COMM_OK) return;
  err[sizeof(err) - 1] = '\0';
  std::string msg = err[0] != '\0' ? std::string(err)
                                   : "rank " + std::to_string(comm->rank) + ": " + what + " failed (" +
                                         comm_code_name(rc) + ", code " + std::to_string(rc) + ")";
  throw CommFailure(msg, rc);
}

// The kernels' calls (see comm_abi.h for each): CommFailure on a nonzero return.
inline void comm_prepare(const graphc_comm* comm, int slot, uint64_t nbytes, void* stream) {
  comm_call(comm, "prepare", [&](char* err, size_t n) { return comm->prepare(comm->self, slot, nbytes, stream, err, n); });
}

inline void comm_allreduce_start(const graphc_comm* comm, int slot, void* data, uint64_t count, int dtype,
                                 void* stream) {
  comm_call(comm, "allreduce_start", [&](char* err, size_t n) {
    return comm->allreduce_start(comm->self, slot, data, count, dtype, stream, err, n);
  });
}

inline void comm_allreduce_wait(const graphc_comm* comm, int slot, void* stream) {
  comm_call(comm, "allreduce_wait",
            [&](char* err, size_t n) { return comm->allreduce_wait(comm->self, slot, stream, err, n); });
}

// Health check (not a collective): allreduce_wait with slot -1, no stream, and nothing started
// on slot -1 reports the communicator's sticky (or, for NCCL, asynchronous) error without
// touching any memory or stream, 0 when it is healthy.  The CUDA executor calls it around each
// run of a captured graph, whose replays never run the collective steps' host code.
inline void comm_check_health(const graphc_comm* comm) {
  comm_call(comm, "health check",
            [&](char* err, size_t n) { return comm->allreduce_wait(comm->self, -1, nullptr, err, n); });
}

}  // namespace graphc
