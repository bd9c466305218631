// dropout.cu — the CUDA twin of runtime/cpu/dropout.cc.
#include "common.cuh"

namespace graphc {
namespace cuda {

void register_dropout_kernels(KernelRegistry& r) { (void)r; }

}  // namespace cuda
}  // namespace graphc
