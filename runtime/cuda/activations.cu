// activations.cu — the CUDA twin of runtime/cpu/activations.cc.
#include "common.cuh"

namespace graphc {
namespace cuda {

void register_activation_kernels(KernelRegistry& r) { (void)r; }

}  // namespace cuda
}  // namespace graphc
