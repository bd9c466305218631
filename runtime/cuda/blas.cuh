// blas.cuh — matrix products on the GPU through cuBLASLt, for every kernel file that needs one
// (matmul.cu, attention.cu, rnn_cell.cu, conv.cu's fallback may too).  Implemented in blas.cu.
//
// Row-major, like the rest of graphc: C[b] (m×n) = alpha · op(A[b]) (m×k) · op(B[b]) (k×n)
// + beta · C[b], then the epilogue (bias per column n, ReLU or GELU), for b < batch with
// element strides stride_a/b/c between the matrices (0: the same matrix for every b).  lda,
// ldb, ldc are row strides in elements of A, B, C as stored (before op()).
//
// Gemm::plan() is called by a factory: it builds the cuBLASLt descriptors and asks the
// heuristic for an algorithm that fits `workspace_bytes` (0 is allowed: cuBLASLt then uses an
// algorithm without workspace), so run() only enqueues cublasLtMatmul on the stream (safe in a
// captured CUDA graph).  In a dry prepare (a.ctx.device == nullptr) plan() validates only.
// TF32 is used for float32 only when the device allows it (GRAPHC_CUDA_TF32=1).
// Epilogues: Bias by cuBLASLt where it has an algorithm (else graphc's epilogue kernel); ReLU
// (NaN-propagating, as numpy's maximum) and GELU (graphc's erf form, NOT cuBLASLt's tanh
// approximation) always by graphc's epilogue kernel, one extra pass over C.
#pragma once

#include <cstdint>
#include <memory>

#include "common.cuh"

namespace graphc {
namespace cuda {

enum class Epilogue { None, Bias, Relu, BiasRelu, Gelu, BiasGelu };

struct GemmDesc {
  DType dtype = DType::F32;  // F32 or F64 (A, B, C, bias all of it)
  bool trans_a = false, trans_b = false;
  int64_t m = 0, n = 0, k = 0;
  int64_t lda = 0, ldb = 0, ldc = 0;
  int64_t batch = 1;
  int64_t stride_a = 0, stride_b = 0, stride_c = 0;
  double alpha = 1.0, beta = 0.0;
  Epilogue epilogue = Epilogue::None;
  // The pointers run() will get, when known at plan time (a factory's a.ins[i].data plus any
  // offset; nullptr: a whole pooled tensor, 256-byte aligned).  Only their alignment is used:
  // the heuristic then picks an algorithm that accepts it; run() throws when a pointer is
  // less aligned than planned.
  const void* a_hint = nullptr;
  const void* b_hint = nullptr;
  const void* c_hint = nullptr;
  const void* bias_hint = nullptr;
};

class Gemm {
 public:
  // Throws std::invalid_argument (via a.fail) for a shape cuBLASLt cannot take; m, n or k of 0
  // is allowed (run() then writes beta·C, or nothing when m or n is 0).
  static Gemm plan(const KernelArgs& a, const GemmDesc& d, void* workspace, size_t workspace_bytes);
  // Enqueues the product on `stream`.  `bias` (n items) is read only by the Bias* epilogues.
  void run(cudaStream_t stream, const void* A, const void* B, void* C, const void* bias = nullptr) const;

 private:
  struct State;
  std::shared_ptr<const State> state_;  // shared by the kernel's copies
};

}  // namespace cuda
}  // namespace graphc
