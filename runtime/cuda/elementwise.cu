// elementwise.cu — the CUDA twin of runtime/cpu/elementwise.cc.
#include "common.cuh"

namespace graphc {
namespace cuda {

void register_elementwise_kernels(KernelRegistry& r) { (void)r; }

}  // namespace cuda
}  // namespace graphc
