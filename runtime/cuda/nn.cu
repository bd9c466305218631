// nn.cu — the CUDA twin of runtime/cpu/nn.cc.
#include "common.cuh"

namespace graphc {
namespace cuda {

void register_nn_kernels(KernelRegistry& r) { (void)r; }

}  // namespace cuda
}  // namespace graphc
