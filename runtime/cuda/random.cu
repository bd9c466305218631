// random.cu — the CUDA twin of runtime/cpu/random.cc.
#include "common.cuh"

namespace graphc {
namespace cuda {

void register_random_kernels(KernelRegistry& r) { (void)r; }

}  // namespace cuda
}  // namespace graphc
