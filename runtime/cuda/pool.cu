// pool.cu — the CUDA twin of runtime/cpu/pool.cc.
#include "common.cuh"

namespace graphc {
namespace cuda {

void register_pool_kernels(KernelRegistry& r) { (void)r; }

}  // namespace cuda
}  // namespace graphc
