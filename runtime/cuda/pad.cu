// pad.cu — the CUDA twin of runtime/cpu/pad.cc.
#include "common.cuh"

namespace graphc {
namespace cuda {

void register_pad_kernels(KernelRegistry& r) { (void)r; }

}  // namespace cuda
}  // namespace graphc
