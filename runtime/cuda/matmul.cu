// matmul.cu — the CUDA twin of runtime/cpu/matmul.cc: op(a) @ op(b) over the last two axes
// (transpose_a / transpose_b swap them, never copied), numpy batch broadcasting; and
// fused_matmul, the same product followed by the step's elementwise program over it.
//
// Every product is a cuBLASLt call through blas.cuh's Gemm (planned once in the factory:
// descriptors, heuristic, workspace; the kernel only enqueues):
//   - b shared by every batch (b has no batch dims, or they broadcast) and a not transposed
//     with its batches contiguous: ONE product of (batch·M)×K by K×N (the batch folded into
//     M), the fastest form for the MLP / projection case;
//   - otherwise the batch loop collapses (StridedLoop<2>) to outer × inner dims: one strided
//     batched product over the inner dim (stride 0 for a broadcast operand) per outer index
//     (one call for the usual batched matmul; broadcasts like (3,1,..) @ (1,4,..) take 3).
// The cuBLASLt workspace is the step's planned workspace 0 (graphc/ops/reduce.py
// _matmul_workspace for target "cuda"); without it (a plan compiled for "cpu") the heuristic
// is limited to algorithms without workspace.
// K == 0 writes zeros (Gemm's epilogue kernel), an empty output launches nothing.
//
// fused_matmul: the product is written to out[0], then the program runs over out[0] in place
// on the same stream: one thread per output item (grid-stride) evaluating ELEM's
// FusedDeviceProgram (runtime/cuda/fused_program.cuh, the device interpreter of
// cpu::FusedProgram, passed by value as a __grid_constant__ parameter) with "p" reading out[0]
// at the same index before the thread overwrites it.  Registered only when that header exists.
// (A cuBLASLt epilogue would save the extra pass for a bias + relu program; the general
// program, and bit-equality with the unfused ops, come first.)
#include <climits>
#include <string>
#include <vector>

#include "blas.cuh"
#include "common.cuh"

#if __has_include("fused_program.cuh")
#include "fused_program.cuh"
#define GRAPHC_HAVE_CUDA_FUSED_PROGRAM 1
#endif

namespace graphc {
namespace cuda {
namespace {

using cpu::broadcast_dims;
using cpu::expect_dims;
using cpu::expect_dtype;

// One planned product and the element offsets of each of its calls.
struct Product {
  Gemm gemm;
  std::vector<int64_t> aoff, boff, coff;  // per call (element offsets into a, b, y)
};

// The step's planned workspace 0 in bytes (0 when the plan has none).
size_t workspace_bytes(const KernelArgs& a, void** ptr) {
  *ptr = nullptr;
  if (a.ws.empty()) return 0;
  const TensorRef& w = a.ws[0];
  *ptr = w.data;
  return static_cast<size_t>(w.numel()) * dtype_size(w.dtype);
}

// The least aligned of base + off·elem over offs (for Gemm's alignment hints).
const void* least_aligned(const void* base, const std::vector<int64_t>& offs, size_t elem) {
  if (base == nullptr || offs.empty()) return base;
  const char* p = static_cast<const char*>(base);
  const void* worst = p + offs[0] * static_cast<int64_t>(elem);
  auto low_bits = [](const void* q) { return reinterpret_cast<uintptr_t>(q) & uintptr_t(255); };
  auto align = [&](const void* q) {
    const uintptr_t v = low_bits(q);
    return v == 0 ? uintptr_t(256) : (v & (~v + 1));
  };
  for (int64_t o : offs) {
    const void* q = p + o * static_cast<int64_t>(elem);
    if (align(q) < align(worst)) worst = q;
  }
  return worst;
}

// Validates a step's a = in[0], b = in[1], out[0] exactly as cpu/matmul.cc's matmul_shape
// (same messages) and plans its products.  An empty output: no calls.
template <class T> Product plan_product(const KernelArgs& args, bool ta, bool tb) {
  const TensorRef &a = args.in[0], &b = args.in[1], &y = args.out[0];
  expect_dtype(args, b, a.dtype, "input 1");
  expect_dtype(args, y, a.dtype, "output");
  if (a.dims.size() < 2 || b.dims.size() < 2) {
    args.fail("inputs must have rank >= 2, got " + format_dims(a.dims) + " and " + format_dims(b.dims));
  }
  const int64_t ar = a.dims[a.dims.size() - 2], ac = a.dims.back();
  const int64_t br = b.dims[b.dims.size() - 2], bc = b.dims.back();
  const int64_t M = ta ? ac : ar, K = ta ? ar : ac;
  const int64_t K2 = tb ? bc : br, N = tb ? br : bc;
  if (K != K2) {
    args.fail("expects input 1 of shape " + std::string(tb ? "(..., N, " : "(..., ") + std::to_string(K) +
              (tb ? ")" : ", N)") + " (transpose_a=" + (ta ? "true" : "false") + ", transpose_b=" +
              (tb ? "true" : "false") + "), got " + format_dims(b.dims));
  }
  if (ar > INT_MAX || ac > INT_MAX || br > INT_MAX || bc > INT_MAX) {
    args.fail("matrix dims exceed the BLAS int range: " + format_dims(a.dims) + " and " + format_dims(b.dims));
  }
  std::vector<int64_t> abatch(a.dims.begin(), a.dims.end() - 2), bbatch(b.dims.begin(), b.dims.end() - 2);
  std::vector<int64_t> batch = broadcast_dims(args, {abatch, bbatch}, "batch dims of the inputs");
  std::vector<int64_t> want = batch;
  want.push_back(M);
  want.push_back(N);
  expect_dims(args, y, want, "output");
  Product p;
  if (numel_of(y) == 0) return p;

  const auto loop = cpu::StridedLoop<2>::broadcast(batch, {abatch, bbatch});
  const int64_t nbatch = loop.numel;
  const int64_t inner = loop.dims.back();
  const int64_t sa = loop.strides.back()[0], sb = loop.strides.back()[1];

  GemmDesc d;
  d.dtype = y.dtype;
  d.trans_a = ta;
  d.trans_b = tb;
  d.n = N;
  d.k = K;
  d.lda = std::max<int64_t>(ac, 1);
  d.ldb = std::max<int64_t>(bc, 1);
  d.ldc = std::max<int64_t>(N, 1);
  if (nbatch == 1 || (loop.dims.size() == 1 && sb == 0 && sa == 1 && !ta)) {
    // b shared, a's batches back to back: one (nbatch·M)×K product.  (nbatch == 1 too.)
    d.m = nbatch * M;
    d.batch = 1;
    p.aoff.push_back(loop.base[0] * M * K);
    p.boff.push_back(loop.base[1] * K * N);
    p.coff.push_back(0);
  } else {
    d.m = M;
    d.batch = inner;
    d.stride_a = sa * M * K;
    d.stride_b = sb * K * N;
    d.stride_c = M * N;
    // One call per index of the outer collapsed dims (row-major), at its batch offsets.
    const int outer_rank = static_cast<int>(loop.dims.size()) - 1;
    for (int64_t o = 0; o < nbatch / inner; ++o) {
      int64_t off_a = loop.base[0], off_b = loop.base[1], rest = o;
      for (int j = outer_rank - 1; j >= 0; --j) {
        const int64_t r = rest % loop.dims[j];
        rest /= loop.dims[j];
        off_a += r * loop.strides[j][0];
        off_b += r * loop.strides[j][1];
      }
      p.aoff.push_back(off_a * M * K);
      p.boff.push_back(off_b * K * N);
      p.coff.push_back(o * inner * M * N);
    }
  }
  d.a_hint = least_aligned(a.data, p.aoff, sizeof(T));
  d.b_hint = least_aligned(b.data, p.boff, sizeof(T));
  d.c_hint = least_aligned(y.data, p.coff, sizeof(T));
  void* ws = nullptr;
  const size_t ws_bytes = workspace_bytes(args, &ws);
  p.gemm = Gemm::plan(args, d, ws, ws_bytes);
  return p;
}

// Enqueues every call of a planned product.
template <class T> void run_product(const Product& p, cudaStream_t stream, const T* A, const T* B, T* Y) {
  for (size_t i = 0; i < p.coff.size(); ++i) p.gemm.run(stream, A + p.aoff[i], B + p.boff[i], Y + p.coff[i]);
}

template <class T> Kernel matmul_kernel(const KernelArgs& args) {
  args.expect_arity(2, 1);
  const attrs::Matmul attr(args);
  Product p = plan_product<T>(args, attr.transpose_a, attr.transpose_b);
  if (p.coff.empty() || dry(args)) return no_op_kernel();
  const T* A = args.in[0].as<const T>();
  const T* B = args.in[1].as<const T>();
  T* Y = args.out[0].as<T>();
  cudaStream_t stream = stream_of(args);
  return [p = std::move(p), stream, A, B, Y] { run_product<T>(p, stream, A, B, Y); };
}

#if defined(GRAPHC_HAVE_CUDA_FUSED_PROGRAM) && defined(__CUDACC__)
// One thread per output item: y[i] = program(p = y[i], inputs 2..) (grid-stride).
template <class T> __global__ void fused_epilogue_kernel(const __grid_constant__ FusedDeviceProgram<T> prog, T* y) {
  GRAPHC_GRID_STRIDE(i, prog.numel) { y[i] = prog.eval(i); }
}
#endif

#ifdef GRAPHC_HAVE_CUDA_FUSED_PROGRAM
template <class T> Kernel fused_matmul_kernel(const KernelArgs& args) {
  if (args.in.size() < 2 || args.out.size() != 1) {
    args.fail("expects at least 2 inputs and 1 output, got " + std::to_string(args.in.size()) + " and " +
              std::to_string(args.out.size()));
  }
  const attrs::FusedMatmul attr(args);
  Product p = plan_product<T>(args, attr.transpose_a, attr.transpose_b);
  // The program reads "p" from out[0] (the product written there first) and inputs 2..
  // broadcast to the output; validated here even when the output is empty, as the CPU does.
  T* Y = args.out[0].as<T>();
  const FusedDeviceProgram<T> prog = make_fused_program<T>(args, attr.program, 2, true, args.out[0].dims, Y);
  if (p.coff.empty() || dry(args)) return no_op_kernel();
  const T* A = args.in[0].as<const T>();
  const T* B = args.in[1].as<const T>();
  cudaStream_t stream = stream_of(args);
  const unsigned blocks = blocks_for(prog.numel);
  return [p = std::move(p), prog, blocks, stream, A, B, Y] {
    run_product<T>(p, stream, A, B, Y);
    fused_epilogue_kernel<T><<<blocks, kThreads, 0, stream>>>(prog, Y);
    GRAPHC_CUDA_LAUNCH_CHECK("fused_matmul");
  };
}
#endif

}  // namespace

void register_matmul_kernels(KernelRegistry& r) {
  add_typed<FloatTypes>(r, "matmul", [](auto tag, const KernelArgs& a) {
    return matmul_kernel<typename decltype(tag)::type>(a);
  });
#ifdef GRAPHC_HAVE_CUDA_FUSED_PROGRAM
  add_typed<FloatTypes>(r, "fused_matmul", [](auto tag, const KernelArgs& a) {
    return fused_matmul_kernel<typename decltype(tag)::type>(a);
  });
#endif
}

}  // namespace cuda
}  // namespace graphc
