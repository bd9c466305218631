// libs.h — cuBLASLt and cuDNN, loaded with dlopen when a CUDA device opens.
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

namespace graphc {
namespace cuda {

struct CublasLtApi;
struct CudnnApi;

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

}  // namespace cuda
}  // namespace graphc
