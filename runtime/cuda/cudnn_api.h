// cudnn_api.h — the cuDNN functions graphc calls, as pointers filled by dlsym.
//
// Compiled against NVIDIA's own headers (the nvidia-cudnn-cu13 wheel, a build requirement
// of a CUDA build); libs.cc dlopens libcudnn.so.9 when a CUDA Session opens.  cuDNN is
// optional: without it CudaDevice::cudnn() is nullptr and convolution runs graphc's own
// implicit-GEMM kernel.  To call a new function, add it to the list.
#pragma once

#include <cudnn.h>

#define GRAPHC_CUDNN_FUNCS(X)                        \
  X(cudnnCreate)                                     \
  X(cudnnDestroy)                                    \
  X(cudnnSetStream)                                  \
  X(cudnnGetVersion)                                 \
  X(cudnnGetErrorString)                             \
  X(cudnnCreateTensorDescriptor)                     \
  X(cudnnDestroyTensorDescriptor)                    \
  X(cudnnSetTensor4dDescriptor)                      \
  X(cudnnSetTensorNdDescriptor)                      \
  X(cudnnCreateFilterDescriptor)                     \
  X(cudnnDestroyFilterDescriptor)                    \
  X(cudnnSetFilter4dDescriptor)                      \
  X(cudnnCreateConvolutionDescriptor)                \
  X(cudnnDestroyConvolutionDescriptor)               \
  X(cudnnSetConvolution2dDescriptor)                 \
  X(cudnnSetConvolutionGroupCount)                   \
  X(cudnnSetConvolutionMathType)                     \
  X(cudnnGetConvolutionForwardAlgorithm_v7)          \
  X(cudnnGetConvolutionBackwardDataAlgorithm_v7)     \
  X(cudnnGetConvolutionBackwardFilterAlgorithm_v7)   \
  X(cudnnGetConvolutionForwardWorkspaceSize)         \
  X(cudnnGetConvolutionBackwardDataWorkspaceSize)    \
  X(cudnnGetConvolutionBackwardFilterWorkspaceSize)  \
  X(cudnnConvolutionForward)                         \
  X(cudnnConvolutionBackwardData)                    \
  X(cudnnConvolutionBackwardFilter)

namespace graphc {
namespace cuda {

struct CudnnApi {
#define GRAPHC_CUDNN_MEMBER(name) decltype(&::name) name = nullptr;
  GRAPHC_CUDNN_FUNCS(GRAPHC_CUDNN_MEMBER)
#undef GRAPHC_CUDNN_MEMBER
};

}  // namespace cuda
}  // namespace graphc
