// topk.cu — the CUDA twin of runtime/cpu/topk.cc.
#include "common.cuh"

namespace graphc {
namespace cuda {

void register_topk_kernels(KernelRegistry& r) { (void)r; }

}  // namespace cuda
}  // namespace graphc
