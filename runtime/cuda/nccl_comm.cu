// nccl_comm.cu — the ordered-sum kernel of the NCCL communicator's deterministic mode
// (nccl_comm.h: the index math is ordered_sum_at, shared with the host tests).
#include "nccl_comm.h"

#ifdef GRAPHC_NCCL_BUILT

#include <cuda_runtime.h>

#include <cstdint>

namespace graphc {
namespace nccl {
namespace detail {

namespace {

template <class T>
__global__ void ordered_sum_kernel(const T* scratch, uint64_t stride, const T* own, int size, int rank, uint64_t n,
                                   T* out) {
  for (uint64_t i = blockIdx.x * static_cast<uint64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<uint64_t>(gridDim.x) * blockDim.x) {
    out[i] = ordered_sum_at(scratch, stride, own, size, rank, i);
  }
}

template <class T>
cudaError_t launch(const void* scratch, uint64_t stride, const void* own, int size, int rank, uint64_t n, void* out,
                   cudaStream_t stream) {
  constexpr unsigned kThreads = 256;
  const uint64_t want = (n + kThreads - 1) / kThreads;
  const unsigned blocks = static_cast<unsigned>(want < 4096 ? want : 4096);
  ordered_sum_kernel<T><<<blocks, kThreads, 0, stream>>>(static_cast<const T*>(scratch), stride,
                                                          static_cast<const T*>(own), size, rank, n,
                                                          static_cast<T*>(out));
  return cudaGetLastError();
}

}  // namespace

int launch_ordered_sum(int dtype, const void* scratch, uint64_t stride, const void* own, int size, int rank,
                       uint64_t n, void* out, void* stream) {
  if (n == 0) return cudaSuccess;
  auto st = static_cast<cudaStream_t>(stream);
  switch (dtype) {
    case 1: return launch<float>(scratch, stride, own, size, rank, n, out, st);
    case 2: return launch<double>(scratch, stride, own, size, rank, n, out, st);
    case 3: return launch<int32_t>(scratch, stride, own, size, rank, n, out, st);
    case 4: return launch<int64_t>(scratch, stride, own, size, rank, n, out, st);
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace detail
}  // namespace nccl
}  // namespace graphc

#endif  // GRAPHC_NCCL_BUILT
