// kernel_files.cc — which runtime/cpu file registers which kernels, and the CPU registry.
//
// One row per register_* function, named after the .cc file that defines it.  The full CPU
// registry (KernelRegistry::cpu(), for_device("cpu")) runs every row; an AOT artifact
// (graphc compile --emit c) ships kernel_registry.cc without this file and registers only the
// rows its plan needs (graphc/aot/sources.py reads the table through graphc._runtime.kernel_files()).
#include <string>
#include <vector>

#include "../errors.h"
#include "../kernel_registry.h"
#ifdef GRAPHC_WITH_CUDA
#include "../cuda/kernel_files.h"
#endif

namespace graphc {

const std::vector<KernelFile>& cpu_kernel_files() {
  static const std::vector<KernelFile> files = {
      {"elementwise.cc", "register_elementwise_kernels", register_elementwise_kernels},
      {"reduce.cc", "register_reduce_kernels", register_reduce_kernels},
      {"fused_reduce.cc", "register_fused_reduce_kernels", register_fused_reduce_kernels},
      {"matmul.cc", "register_matmul_kernels", register_matmul_kernels},
      {"shape.cc", "register_shape_kernels", register_shape_kernels},
      {"nn.cc", "register_nn_kernels", register_nn_kernels},
      {"pad.cc", "register_pad_kernels", register_pad_kernels},
      {"pool.cc", "register_pool_kernels", register_pool_kernels},
      {"norm.cc", "register_norm_kernels", register_norm_kernels},
      {"dropout.cc", "register_dropout_kernels", register_dropout_kernels},
      {"random.cc", "register_random_kernels", register_random_kernels},
      {"conv.cc", "register_conv_kernels", register_conv_kernels},
      {"layer_norm.cc", "register_layer_norm_kernels", register_layer_norm_kernels},
      {"attention.cc", "register_attention_kernels", register_attention_kernels},
      {"activations.cc", "register_activation_kernels", register_activation_kernels},
      {"gather.cc", "register_gather_kernels", register_gather_kernels},
      {"scan.cc", "register_scan_kernels", register_scan_kernels},
      {"rnn_cell.cc", "register_rnn_cell_kernels", register_rnn_cell_kernels},
      {"topk.cc", "register_topk_kernels", register_topk_kernels},
      {"math.cc", "register_math_kernels", register_math_kernels},
      {"tensor_extra.cc", "register_tensor_extra_kernels", register_tensor_extra_kernels},
      {"collective.cc", "register_collective_kernels", register_collective_kernels},
  };
  return files;
}

const KernelRegistry& KernelRegistry::cpu() {
  // A function-local static: thread-safe initialisation, no static-order issues.
  static const KernelRegistry registry = [] {
    KernelRegistry r;
    for (const KernelFile& f : cpu_kernel_files()) f.register_fn(r);
    return r;
  }();
  return registry;
}

const KernelRegistry& KernelRegistry::for_device(const std::string& name) {
  if (name == "cpu") return cpu();
#ifdef GRAPHC_WITH_CUDA
  if (name == "cuda") return cuda::registry();
#endif
  std::string shown = name.size() > 64 ? name.substr(0, 64) + "..." : name;
  throw DeviceUnavailable("no kernels for device '" + shown + "' in this build");
}

}  // namespace graphc
