/* comm_abi.h — the communicator a data-parallel plan's collective steps call.
 *
 * Plain C on purpose: the MPI communicator lives in an optional extension module
 * (graphc._mpi, built with the MPI compiler wrapper only where MPI is installed) and the
 * NCCL one in the CUDA part of graphc._runtime; both hand the executor a pointer to this
 * struct (in Python: a PyCapsule named "graphc.comm"), so no C++ class crosses a shared
 * object boundary.  The executor passes it to kernels in KernelContext::comm; nullptr there
 * means a world of one process (every collective is a no-op).
 *
 * Collectives of a plan are *in place* on planned arena memory: a bucket is one contiguous
 * range of gradients (graphc/compiler/data_parallel.py).  `slot` names one outstanding
 * reduction (the plan's bucket number, attr `bucket` of allreduce_start/allreduce_wait):
 * start(slot) returns at once, wait(slot) blocks until the sum is in place.  Every rank
 * calls the same collectives in the same order (the plans are byte-identical: the Session
 * checks a hash of them across ranks before the first run).
 *
 * Every function returns 0 on success; otherwise a nonzero code and a NUL-terminated
 * one-line message in err[0..errlen) that names the rank, the operation and the cause
 * ("rank 1: allreduce of bucket 2 (4194304 bytes) did not complete within 60 s: ...").
 * After a failure the communicator is broken: every later call fails at once with the
 * first message (a sticky error), and the Session refuses further runs.
 */
#ifndef GRAPHC_COMM_ABI_H_
#define GRAPHC_COMM_ABI_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define GRAPHC_COMM_ABI_VERSION 1
#define GRAPHC_COMM_CAPSULE "graphc.comm"

/* Return codes. */
#define GRAPHC_COMM_OK 0
#define GRAPHC_COMM_ERROR 1     /* the library reported an error (a peer died, a bad argument) */
#define GRAPHC_COMM_TIMEOUT 2   /* the operation did not complete within the timeout */
#define GRAPHC_COMM_ABORTED 3   /* the process is being torn down (SIGTERM from the launcher) */
#define GRAPHC_COMM_UNSUPPORTED 4 /* e.g. device memory on a host-only (MPI) communicator */

typedef struct graphc_comm {
  int abi_version;          /* GRAPHC_COMM_ABI_VERSION */
  int rank;                 /* 0 <= rank < size */
  int size;                 /* >= 1 */
  int deterministic;        /* 1: sums are taken in rank order 0, 1, ..., size-1, bit-identical
                               on every rank and whatever the library's algorithm */
  const char* backend;      /* "mpi", "nccl" */
  void* self;               /* the implementation's state; passed back to every function */

  /* Called once per bucket at plan load (not in a dry prepare): the largest byte count slot
   * will reduce, so scratch (deterministic mode) is allocated before the first run.
   * `stream`: NULL for host memory, else the CUDA stream the plan runs on. */
  int (*prepare)(void* self, int slot, uint64_t nbytes, void* stream, char* err, size_t errlen);
  /* Start the in-place sum over all ranks of `count` elements of `dtype` (graphc::DType
   * numbering: 1 float32, 2 float64, 3 int32, 4 int64) at `data`.  Host memory when `stream`
   * is NULL; device memory enqueued on `stream` otherwise (NCCL: also inside stream capture). */
  int (*allreduce_start)(void* self, int slot, void* data, uint64_t count, int dtype, void* stream,
                         char* err, size_t errlen);
  /* Block until slot's sum is in `data` (host), or enqueue the wait on `stream` (device). */
  int (*allreduce_wait)(void* self, int slot, void* stream, char* err, size_t errlen);
  /* Blocking host-memory collectives for start-up and checkpoints. */
  int (*broadcast)(void* self, void* data, uint64_t nbytes, int root, char* err, size_t errlen);
  int (*allgather)(void* self, const void* send, uint64_t nbytes, void* recv, char* err, size_t errlen);
  int (*barrier)(void* self, char* err, size_t errlen);
} graphc_comm;

#ifdef __cplusplus
}  /* extern "C" */
#endif

#endif  /* GRAPHC_COMM_ABI_H_ */
