// fused_reduce.cu — the CUDA twin of runtime/cpu/fused_reduce.cc.
#include "common.cuh"

namespace graphc {
namespace cuda {

void register_fused_reduce_kernels(KernelRegistry& r) { (void)r; }

}  // namespace cuda
}  // namespace graphc
