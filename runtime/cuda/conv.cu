// conv.cu — the CUDA twin of runtime/cpu/conv.cc.
#include "common.cuh"

namespace graphc {
namespace cuda {

void register_conv_kernels(KernelRegistry& r) { (void)r; }

}  // namespace cuda
}  // namespace graphc
