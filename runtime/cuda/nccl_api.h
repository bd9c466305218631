// nccl_api.h — the NCCL functions graphc calls, as pointers filled by dlsym.
//
// Compiled against NVIDIA's own header (nccl.h from the nvidia-nccl-cu13 wheel, a build
// requirement of a CUDA build), so every call is type-checked; the library itself is never
// linked: libs.cc dlopens libnccl.so.2 when a data-parallel CUDA Session makes its
// communicator (nccl_comm.h).  Only functions of NCCL 2.19 and later are listed (nonblocking
// init and ncclCommGetAsyncError polling, ncclCommFinalize), so an older library is refused by
// name.  To call a new function, add it to the list.
#pragma once

#include <nccl.h>

#define GRAPHC_NCCL_FUNCS(X)     \
  X(ncclGetVersion)              \
  X(ncclGetErrorString)          \
  X(ncclGetLastError)            \
  X(ncclGetUniqueId)             \
  X(ncclCommInitRankConfig)      \
  X(ncclCommGetAsyncError)       \
  X(ncclCommFinalize)            \
  X(ncclCommDestroy)             \
  X(ncclCommAbort)               \
  X(ncclCommCount)               \
  X(ncclCommUserRank)            \
  X(ncclAllReduce)               \
  X(ncclAllGather)               \
  X(ncclSend)                    \
  X(ncclRecv)                    \
  X(ncclGroupStart)              \
  X(ncclGroupEnd)

namespace graphc {
namespace cuda {

struct NcclApi {
#define GRAPHC_NCCL_MEMBER(name) decltype(&::name) name = nullptr;
  GRAPHC_NCCL_FUNCS(GRAPHC_NCCL_MEMBER)
#undef GRAPHC_NCCL_MEMBER
};

}  // namespace cuda
}  // namespace graphc
