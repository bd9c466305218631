// collective.cc — allreduce_start / allreduce_wait on host memory: the in-place sum of one
// gradient bucket over every rank, through the communicator in KernelContext::comm
// (runtime/comm_abi.h; the MPI one is graphc._mpi).  The checks and the communicator calls:
// collective_checks.h, shared with runtime/cuda/collective.cu.
//
// start returns at once (the communicator polls a nonblocking MPI_Iallreduce in wait), so the
// steps the scheduler placed between start and wait (the rest of the backward pass) overlap the
// communication.  Without a communicator, or in a world of one process, both are no-ops: the
// sum over one rank is the value itself.
#include "collective_checks.h"

namespace graphc {
namespace cpu {
namespace {

Kernel allreduce_start_kernel(const KernelArgs& a) {
  const BucketRange r = bucket_check(a);
  if (!comm_active(a, r)) return no_op_kernel();
  bucket_prepare(a, r, nullptr);
  const graphc_comm* c = a.ctx.comm;
  return [c, r]() { bucket_start(c, r, nullptr); };
}

Kernel allreduce_wait_kernel(const KernelArgs& a) {
  const BucketRange r = bucket_check(a);
  if (!comm_active(a, r)) return no_op_kernel();
  const graphc_comm* c = a.ctx.comm;
  return [c, r]() { bucket_wait(c, r, nullptr); };
}

}  // namespace
}  // namespace cpu

void register_collective_kernels(KernelRegistry& r) {
  using namespace cpu;
  add_typed<FloatTypes>(r, "allreduce_start", [](auto, const KernelArgs& a) { return allreduce_start_kernel(a); });
  add_typed<FloatTypes>(r, "allreduce_wait", [](auto, const KernelArgs& a) { return allreduce_wait_kernel(a); });
}

}  // namespace graphc
