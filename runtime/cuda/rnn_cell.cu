// rnn_cell.cu — the CUDA twin of runtime/cpu/rnn_cell.cc.
#include "common.cuh"

namespace graphc {
namespace cuda {

void register_rnn_cell_kernels(KernelRegistry& r) { (void)r; }

}  // namespace cuda
}  // namespace graphc
