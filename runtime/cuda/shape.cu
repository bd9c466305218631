// shape.cu — the CUDA twin of runtime/cpu/shape.cc.
#include "common.cuh"

namespace graphc {
namespace cuda {

void register_shape_kernels(KernelRegistry& r) { (void)r; }

}  // namespace cuda
}  // namespace graphc
