// math.cu — the CUDA twin of runtime/cpu/math.cc.
#include "common.cuh"

namespace graphc {
namespace cuda {

void register_math_kernels(KernelRegistry& r) { (void)r; }

}  // namespace cuda
}  // namespace graphc
