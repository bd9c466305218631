// kernel_files.cc — which runtime/cuda file registers which kernels, and the CUDA registry.
#include "kernel_files.h"

namespace graphc {
namespace cuda {

const std::vector<KernelFile>& cuda_kernel_files() {
  static const std::vector<KernelFile> files = {
      {"elementwise.cu", "register_elementwise_kernels", register_elementwise_kernels},
      {"reduce.cu", "register_reduce_kernels", register_reduce_kernels},
      {"fused_reduce.cu", "register_fused_reduce_kernels", register_fused_reduce_kernels},
      {"matmul.cu", "register_matmul_kernels", register_matmul_kernels},
      {"shape.cu", "register_shape_kernels", register_shape_kernels},
      {"nn.cu", "register_nn_kernels", register_nn_kernels},
      {"pad.cu", "register_pad_kernels", register_pad_kernels},
      {"pool.cu", "register_pool_kernels", register_pool_kernels},
      {"norm.cu", "register_norm_kernels", register_norm_kernels},
      {"dropout.cu", "register_dropout_kernels", register_dropout_kernels},
      {"random.cu", "register_random_kernels", register_random_kernels},
      {"conv.cu", "register_conv_kernels", register_conv_kernels},
      {"layer_norm.cu", "register_layer_norm_kernels", register_layer_norm_kernels},
      {"attention.cu", "register_attention_kernels", register_attention_kernels},
      {"activations.cu", "register_activation_kernels", register_activation_kernels},
      {"gather.cu", "register_gather_kernels", register_gather_kernels},
      {"scan.cu", "register_scan_kernels", register_scan_kernels},
      {"rnn_cell.cu", "register_rnn_cell_kernels", register_rnn_cell_kernels},
      {"topk.cu", "register_topk_kernels", register_topk_kernels},
      {"math.cu", "register_math_kernels", register_math_kernels},
      {"tensor_extra.cu", "register_tensor_extra_kernels", register_tensor_extra_kernels},
      {"collective.cu", "register_collective_kernels", register_collective_kernels},
  };
  return files;
}

const KernelRegistry& registry() {
  static const KernelRegistry registry = [] {
    KernelRegistry r;
    for (const KernelFile& f : cuda_kernel_files()) f.register_fn(r);
    return r;
  }();
  return registry;
}

}  // namespace cuda
}  // namespace graphc
