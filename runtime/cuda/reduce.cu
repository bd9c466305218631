// reduce.cu — the CUDA twin of runtime/cpu/reduce.cc.
#include "common.cuh"

namespace graphc {
namespace cuda {

void register_reduce_kernels(KernelRegistry& r) { (void)r; }

}  // namespace cuda
}  // namespace graphc
