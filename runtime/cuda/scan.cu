// scan.cu — the CUDA twin of runtime/cpu/scan.cc.
#include "common.cuh"

namespace graphc {
namespace cuda {

void register_scan_kernels(KernelRegistry& r) { (void)r; }

}  // namespace cuda
}  // namespace graphc
