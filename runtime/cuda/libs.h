// libs.h — cuBLASLt and cuDNN, loaded with dlopen when a CUDA device opens; NCCL when a
// data-parallel CUDA Session makes its communicator (nccl_comm.h).
//
// graphc never links the math libraries: it is compiled against their headers (NVIDIA's
// wheels) and fills CublasLtApi / CudnnApi (cublaslt_api.h, cudnn_api.h) with dlsym, so the
// package imports and every CPU feature works with no CUDA library installed.  Search order
// for each library: the folders set_cuda_library_dirs() gave (graphc/_cuda_libs.py: the
// wheels' lib folders), then the system's (a plain dlopen of the soname: LD_LIBRARY_PATH,
// ld.so.cache).  The first file that loads is checked for its major version and kept for the
// process's life.  Host code; compiled only in a CUDA build.
#pragma once

#include <cstddef>
#include <string>

// NCCL's header is optional in a CUDA build (setup.py finds it in the nvidia-nccl-cu13 wheel):
// without it the build has no NCCL communicator (nccl_comm.h says so at run time).
#if defined(__has_include)
#if __has_include(<nccl.h>)
#define GRAPHC_HAVE_NCCL 1
#endif
#endif

namespace graphc {
namespace cuda {

struct CublasLtApi;
struct CudnnApi;
struct NcclApi;

struct LoadedLibrary {
  std::string path;    // the file loaded (the soname when the system's loader found it)
  size_t version = 0;  // cublasLtGetVersion() / cudnnGetVersion()
};

// cuBLASLt (libcublasLt.so.<major of the headers>), required by a CUDA device.  Throws
// DeviceUnavailable naming the file, the folders searched, why each candidate failed and the
// fix (`pip install "graphc[cuda]"`).  Thread-safe; a failure is not remembered (the next call
// searches again).
const CublasLtApi& load_cublaslt(LoadedLibrary* info);

// cuDNN (libcudnn.so.<major>), optional: nullptr with `*missing` saying why (as above) when it
// cannot be loaded.
const CudnnApi* load_cudnn(LoadedLibrary* info, std::string* missing);

// NCCL (libnccl.so.<NCCL_MAJOR of the headers>, the nvidia-nccl-cu13 wheel's nvidia/nccl/lib
// first), needed only by data-parallel training on CUDA: nullptr with `*missing` saying why
// (the file, the folders searched, each candidate's failure and the pip command) when it
// cannot be loaded.  ncclGetVersion() needs no GPU, so this works (and is tested) on any
// machine.  Defined only when GRAPHC_HAVE_NCCL.
const NcclApi* load_nccl(LoadedLibrary* info, std::string* missing);

}  // namespace cuda
}  // namespace graphc
