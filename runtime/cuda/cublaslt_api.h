// cublaslt_api.h — the cuBLASLt functions graphc calls, as pointers filled by dlsym.
//
// Compiled against NVIDIA's own header (the nvidia-cublas wheel, a build requirement of a
// CUDA build), so every call is type-checked; the library itself is never linked: libs.cc
// dlopens libcublasLt.so.13 when a CUDA Session opens and fills one CublasLtApi.  To call a
// new function, add it to the list.
#pragma once

#include <cublasLt.h>

#define GRAPHC_CUBLASLT_FUNCS(X)            \
  X(cublasLtCreate)                         \
  X(cublasLtDestroy)                        \
  X(cublasLtGetVersion)                     \
  X(cublasLtGetStatusString)                \
  X(cublasLtMatmul)                         \
  X(cublasLtMatmulDescCreate)               \
  X(cublasLtMatmulDescDestroy)              \
  X(cublasLtMatmulDescSetAttribute)         \
  X(cublasLtMatrixLayoutCreate)             \
  X(cublasLtMatrixLayoutDestroy)            \
  X(cublasLtMatrixLayoutSetAttribute)       \
  X(cublasLtMatmulPreferenceCreate)         \
  X(cublasLtMatmulPreferenceDestroy)        \
  X(cublasLtMatmulPreferenceSetAttribute)   \
  X(cublasLtMatmulAlgoGetHeuristic)

namespace graphc {
namespace cuda {

struct CublasLtApi {
#define GRAPHC_CUBLASLT_MEMBER(name) decltype(&::name) name = nullptr;
  GRAPHC_CUBLASLT_FUNCS(GRAPHC_CUBLASLT_MEMBER)
#undef GRAPHC_CUBLASLT_MEMBER
};

}  // namespace cuda
}  // namespace graphc
