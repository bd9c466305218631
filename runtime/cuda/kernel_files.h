// kernel_files.h — the CUDA kernel files (runtime/cuda/*.cu) and the CUDA registry.
//
// One register function per file, mirroring runtime/cpu/ file for file (same names, in
// namespace graphc::cuda).  Compiled only in a CUDA build (GRAPHC_WITH_CUDA).
#pragma once

#include <vector>

#include "../kernel_registry.h"

namespace graphc {
namespace cuda {

void register_elementwise_kernels(KernelRegistry& r);  // cuda/elementwise.cu
void register_reduce_kernels(KernelRegistry& r);  // cuda/reduce.cu
void register_fused_reduce_kernels(KernelRegistry& r);  // cuda/fused_reduce.cu
void register_matmul_kernels(KernelRegistry& r);  // cuda/matmul.cu
void register_shape_kernels(KernelRegistry& r);  // cuda/shape.cu
void register_nn_kernels(KernelRegistry& r);  // cuda/nn.cu
void register_pad_kernels(KernelRegistry& r);  // cuda/pad.cu
void register_pool_kernels(KernelRegistry& r);  // cuda/pool.cu
void register_norm_kernels(KernelRegistry& r);  // cuda/norm.cu
void register_dropout_kernels(KernelRegistry& r);  // cuda/dropout.cu
void register_random_kernels(KernelRegistry& r);  // cuda/random.cu
void register_conv_kernels(KernelRegistry& r);  // cuda/conv.cu
void register_layer_norm_kernels(KernelRegistry& r);  // cuda/layer_norm.cu
void register_attention_kernels(KernelRegistry& r);  // cuda/attention.cu
void register_activation_kernels(KernelRegistry& r);  // cuda/activations.cu
void register_gather_kernels(KernelRegistry& r);  // cuda/gather.cu
void register_scan_kernels(KernelRegistry& r);  // cuda/scan.cu
void register_rnn_cell_kernels(KernelRegistry& r);  // cuda/rnn_cell.cu
void register_topk_kernels(KernelRegistry& r);  // cuda/topk.cu
void register_math_kernels(KernelRegistry& r);  // cuda/math.cu
void register_tensor_extra_kernels(KernelRegistry& r);  // cuda/tensor_extra.cu
void register_collective_kernels(KernelRegistry& r);  // cuda/collective.cu

// One row per register function above (source named "<file>.cu").
const std::vector<KernelFile>& cuda_kernel_files();
// Every CUDA kernel, registered on first use (KernelRegistry::for_device("cuda")).
const KernelRegistry& registry();

}  // namespace cuda
}  // namespace graphc
