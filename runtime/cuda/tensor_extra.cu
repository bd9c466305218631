// tensor_extra.cu — the CUDA twin of runtime/cpu/tensor_extra.cc.
#include "common.cuh"

namespace graphc {
namespace cuda {

void register_tensor_extra_kernels(KernelRegistry& r) { (void)r; }

}  // namespace cuda
}  // namespace graphc
