// collective.cu — the CUDA twin of runtime/cpu/collective.cc: allreduce_start / allreduce_wait of
// one gradient bucket in device memory, through the communicator in KernelContext::comm (the
// NCCL one: graphc._runtime.nccl_communicator, runtime/cuda/nccl_comm.cc).  The checks and the
// communicator calls: cpu/collective_checks.h, shared with the CPU.
//
// No kernel of our own: start enqueues the in-place sum of the bucket's range on the plan's
// stream (NCCL: ncclAllReduce, capturable in the session's CUDA graph); wait orders the stream
// after it (NCCL on the same stream: nothing to do, the communicator says so).  A host-memory
// communicator (MPI) given device memory answers GRAPHC_COMM_UNSUPPORTED: a CommFailure naming it.
// Without a communicator, in a world of one process and in a dry prepare, both are no-ops.
#include "../cpu/collective_checks.h"
#include "common.cuh"

namespace graphc {
namespace cuda {
namespace {

using cpu::BucketRange;

Kernel allreduce_start_kernel(const KernelArgs& a) {
  const BucketRange r = cpu::bucket_check(a);
  if (dry(a) || !cpu::comm_active(a, r)) return no_op_kernel();
  void* stream = a.ctx.stream;
  cpu::bucket_prepare(a, r, stream);
  const graphc_comm* c = a.ctx.comm;
  return [c, r, stream]() { cpu::bucket_start(c, r, stream); };
}

Kernel allreduce_wait_kernel(const KernelArgs& a) {
  const BucketRange r = cpu::bucket_check(a);
  if (dry(a) || !cpu::comm_active(a, r)) return no_op_kernel();
  void* stream = a.ctx.stream;
  const graphc_comm* c = a.ctx.comm;
  return [c, r, stream]() { cpu::bucket_wait(c, r, stream); };
}

}  // namespace

void register_collective_kernels(KernelRegistry& r) {
  add_typed<cpu::FloatTypes>(r, "allreduce_start", [](auto, const KernelArgs& a) { return allreduce_start_kernel(a); });
  add_typed<cpu::FloatTypes>(r, "allreduce_wait", [](auto, const KernelArgs& a) { return allreduce_wait_kernel(a); });
}

}  // namespace cuda
}  // namespace graphc
