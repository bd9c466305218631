// norm.cu — the CUDA twin of runtime/cpu/norm.cc.
#include "common.cuh"

namespace graphc {
namespace cuda {

void register_norm_kernels(KernelRegistry& r) { (void)r; }

}  // namespace cuda
}  // namespace graphc
