// tensor_extra.cc — structural ops the ONNX importer maps onto (graphc/ops/tensor_extra.py):
// identity (a view: plans alias it; this copy kernel runs only where a plan materialises it).
#include "common.h"

namespace graphc {
namespace cpu {
namespace {

Kernel identity_kernel(const KernelArgs& args) {
  args.expect_arity(1, 1);
  const TensorRef &x = args.in[0], &y = args.out[0];
  expect_dtype(args, y, x.dtype, "output");
  expect_dims(args, y, x.dims, "output");
  const void* src = x.data;
  void* dst = y.data;
  const size_t n = static_cast<size_t>(numel_of(x)) * dtype_size(x.dtype);
  return [src, dst, n]() {
    if (n && src != dst) std::memmove(dst, src, n);
  };
}

}  // namespace
}  // namespace cpu

void register_tensor_extra_kernels(KernelRegistry& r) {
  using cpu::add_kernel;
  using cpu::schema_dtypes;
  for (DType t : schema_dtypes("identity")) add_kernel(r, "identity", t, cpu::identity_kernel);
}

}  // namespace graphc
