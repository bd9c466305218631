// attention.cu — the CUDA twin of runtime/cpu/attention.cc.
#include "common.cuh"

namespace graphc {
namespace cuda {

void register_attention_kernels(KernelRegistry& r) { (void)r; }

}  // namespace cuda
}  // namespace graphc
