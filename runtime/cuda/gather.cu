// gather.cu — the CUDA twin of runtime/cpu/gather.cc.
#include "common.cuh"

namespace graphc {
namespace cuda {

void register_gather_kernels(KernelRegistry& r) { (void)r; }

}  // namespace cuda
}  // namespace graphc
