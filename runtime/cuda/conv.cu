// conv.cu — the CUDA twin of runtime/cpu/conv.cc: conv2d, conv2d_grad_input and
// conv2d_grad_weight over NCHW input and OIHW weights (graphc/ops/conv.py: semantics;
// docs/conv.md: design).
//
// Two paths, chosen by the factory once, at prepare time:
//
//  cuDNN (when CudaDevice::cudnn() is loaded, the pads are symmetric, every dim fits cuDNN's
//  int, and GRAPHC_CUDA_CONV is not "own"): the legacy convolution API (deprecated in cuDNN 9
//  but shipped; no warnings unless CUDNN_WARN_DEPRECATED is defined).  The algorithm is picked
//  at prepare time by cudnnGet*Algorithm_v7 (no benchmarking run), the first one in its ranking
//  that (1) succeeds, (2) fits the planned workspace, (3) is CUDNN_DETERMINISTIC and (4) is a
//  GEMM-type algorithm (forward: IMPLICIT_GEMM, IMPLICIT_PRECOMP_GEMM, GEMM; backward data and
//  filter: ALGO_1): FFT and Winograd transforms mix neighbouring inputs, so one inf in x would
//  turn outputs that the op's definition keeps at inf into NaN.  Math: CUDNN_FMA_MATH for
//  float32 (no TF32) unless the device allows TF32 (GRAPHC_CUDA_TF32=1: CUDNN_DEFAULT_MATH).
//  conv2d_grad_input by definition leaves out the taps that fall into the padding (the CPU's
//  scatter_grad_input); an implicit GEMM multiplies them by 0, which gives NaN for an infinite
//  weight.  So after cuDNN's backward data, a check kernel sets a flag in the workspace when w
//  holds inf or NaN, and the own kernel below (guarded: each CTA exits at once while the flag
//  is 0) recomputes dx by the definition in that case.  When no algorithm qualifies the factory
//  falls back to the own kernels.
//
//  own kernels (no cuDNN, asymmetric pads, or GRAPHC_CUDA_CONV=own): one implicit-GEMM kernel
//  template, igemm<T, Problem>, float32 and float64.  A CTA of 256 threads computes a 64 x 64
//  tile of C = A · B for one group; K runs in steps of 16 through shared memory (A and B tiles
//  gathered straight from the tensors, zeros past the edges); each thread holds a 4 x 4 block of
//  accumulators (rows ty + 16i, columns tx + 16j) and adds its products with fma in increasing
//  k: every output is one FMA chain in a fixed order, so two runs give the same bits.
//    conv2d              per group: Y (Og x N·P) = W (Og x K) · col (K x N·P), K = C/g·kh·kw;
//                        col is read from x on the fly, 0 in the padding (padding takes part
//                        in the sum, as the op's definition says).
//    conv2d_grad_input   per group: dX (C/g x N·H·W) = W^T (C/g x Og·kh·kw) · B with B the dy
//                        item each (o, tap) sends to (h, w) — a gather, no col2im; a tap that
//                        falls into the padding or between strides is *skipped* (a mask in
//                        shared memory), not multiplied by 0.
//    conv2d_grad_weight  per group: dW (Og x K) = dY (Og x N·P) · col^T (N·P x K); the
//                        reduction over N·P is split into S slices (S planned with the
//                        workspace: blockIdx.z = split · g + group) whose partial products
//                        land in the workspace, then a second kernel sums the S partials in
//                        slice order (no float atomics).  S = 1 writes dw directly.
//
// Workspaces (graphc/ops/conv.py, target "cuda"): ws[0] rank 1, the cuDNN workspace (and, last
// 256 bytes, grad_input's flag); grad_weight ws[1] (S, O·C/g·kh·kw) when S > 1.  A plan compiled
// for target "cpu" carries the CPU's (other ranks): the kernel then uses no workspace
// (cuDNN algorithms with zero workspace, S = 1).
#include <cudnn.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "../cpu/conv_checks.h"
#include "common.cuh"
#include "conv_problems.h"
#include "cudnn_api.h"

namespace graphc {
namespace cuda {
namespace {

using namespace conv_gemm;

using cpu::ConvGeom;  // the geometry and the checks: cpu/conv_checks.h (as the CPU's)

Geo geo_of(const ConvGeom& q) {
  return Geo{q.c, q.h, q.w, q.o, q.kh, q.kw, q.cg, q.og, q.sh, q.sw, q.pt, q.pl, q.dh, q.dw, q.ho, q.wo,
             q.kh * q.kw, q.k, q.p};
}

// ---- the own implicit-GEMM kernel ---------------------------------------------------------

// One CTA: the 64 x 64 tile (blockIdx.y, blockIdx.x) of group blockIdx.z % groups, over the
// K slice blockIdx.z / groups (k_chunk items, a multiple of kBK).  When `guard` is set, the
// CTA does nothing while *guard is 0 (grad_input's fix-up after cuDNN).
template <class T, class P>
__global__ void __launch_bounds__(kGemmThreads) igemm(const P p, int groups, int64_t k_chunk, const int* guard) {
  if (guard != nullptr && *guard == 0) return;
  __shared__ T As[kBK][kBM + 1];  // +1: the k-fastest stores below hit different banks
  __shared__ T Bs[kBK][kBN];
  __shared__ unsigned char Bv[P::kMasked ? kBK : 1][P::kMasked ? kBN : 1];
  const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
  const int64_t n0 = static_cast<int64_t>(blockIdx.x) * kBN, m0 = static_cast<int64_t>(blockIdx.y) * kBM;
  const int64_t g = blockIdx.z % groups, split = blockIdx.z / groups;
  const int64_t kb = split * k_chunk, ke = min(p.K, kb + k_chunk);
  static_assert(kGemmThreads % kBN == 0 && (kBK * kBN) % kGemmThreads == 0, "B tile loads");
  const int bn = tid % kBN, bk0 = tid / kBN;  // this thread's B column, first B row
  const bool n_ok = n0 + bn < p.N;
  const typename P::Col cl = n_ok ? p.col(g, n0 + bn) : typename P::Col{};
  T acc[kTM][kTN];
#pragma unroll
  for (int i = 0; i < kTM; ++i) {
#pragma unroll
    for (int j = 0; j < kTN; ++j) acc[i][j] = T(0);
  }
  for (int64_t k0 = kb; k0 < ke; k0 += kBK) {
#pragma unroll
    for (int r = 0; r < kBM * kBK / kGemmThreads; ++r) {  // A: k fastest over the threads
      const int e = tid + r * kGemmThreads, mm = e / kBK, kk = e % kBK;
      const int64_t m = m0 + mm, k = k0 + kk;
      As[kk][mm] = (m < p.M && k < ke) ? p.a(g, m, k) : T(0);
    }
#pragma unroll
    for (int r = 0; r < kBK * kBN / kGemmThreads; ++r) {  // B: column bn, rows bk0 + r·(threads / kBN)
      const int kk = bk0 + r * (kGemmThreads / kBN);
      const int64_t k = k0 + kk;
      T v = T(0);
      const bool ok = n_ok && k < ke && p.b(k, cl, v);
      Bs[kk][bn] = ok ? v : T(0);
      if constexpr (P::kMasked) Bv[kk][bn] = ok;
    }
    __syncthreads();
    const int64_t rem = ke - k0;
    const int kn = rem < kBK ? static_cast<int>(rem) : kBK;
    for (int kk = 0; kk < kn; ++kk) {
      T av[kTM], bv[kTN];
#pragma unroll
      for (int i = 0; i < kTM; ++i) av[i] = As[kk][ty + 16 * i];
#pragma unroll
      for (int j = 0; j < kTN; ++j) bv[j] = Bs[kk][tx + 16 * j];
      if constexpr (P::kMasked) {
#pragma unroll
        for (int j = 0; j < kTN; ++j) {
          if (!Bv[kk][tx + 16 * j]) continue;  // a tap that reads no input: not a term of the sum
#pragma unroll
          for (int i = 0; i < kTM; ++i) acc[i][j] = fma(av[i], bv[j], acc[i][j]);
        }
      } else {
#pragma unroll
        for (int i = 0; i < kTM; ++i) {
#pragma unroll
          for (int j = 0; j < kTN; ++j) acc[i][j] = fma(av[i], bv[j], acc[i][j]);
        }
      }
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < kTM; ++i) {
#pragma unroll
    for (int j = 0; j < kTN; ++j) {
      const int64_t m = m0 + ty + 16 * i, n = n0 + tx + 16 * j;
      if (m < p.M && n < p.N) p.store(g, split, m, n, acc[i][j]);
    }
  }
}

// dw[e] = ((part[0][e] + part[1][e]) + part[2][e]) + ...: slice order, one thread per item.
template <class T> __global__ void sum_partials(const T* __restrict__ part, int64_t splits, int64_t wsize,
                                                T* __restrict__ dw) {
  GRAPHC_GRID_STRIDE(e, wsize) {
    T s = part[e];
    for (int64_t t = 1; t < splits; ++t) s += part[t * wsize + e];
    dw[e] = s;
  }
}

// *flag = 1 when w holds inf or NaN (every writer writes 1: the race is benign).
template <class T> __global__ void flag_non_finite(const T* __restrict__ w, int64_t n, int* flag) {
  GRAPHC_GRID_STRIDE(i, n) {
    if (!isfinite(w[i])) *flag = 1;
  }
}

// A launch of igemm over an M x N problem per group, `splits` K slices.
struct GemmLaunch {
  dim3 grid;
  int groups = 1;
  int64_t k_chunk = 0;
};
GemmLaunch gemm_launch(const KernelArgs& a, int64_t M, int64_t N, int64_t K, int64_t groups, int64_t splits) {
  GemmLaunch l;
  const int64_t nt = (N + kBN - 1) / kBN, mt = (M + kBM - 1) / kBM, z = groups * splits;
  if (nt > INT32_MAX || mt > 65535 || z > 65535) {
    a.fail("the convolution's GEMM (" + std::to_string(M) + " x " + std::to_string(N) + " per group, " +
           std::to_string(groups) + " groups, " + std::to_string(splits) + " slices) exceeds the CUDA grid");
  }
  l.grid = dim3(static_cast<unsigned>(std::max<int64_t>(nt, 1)), static_cast<unsigned>(std::max<int64_t>(mt, 1)),
                static_cast<unsigned>(std::max<int64_t>(z, 1)));
  l.groups = static_cast<int>(groups);
  l.k_chunk = k_chunk_for(K, splits);
  return l;
}

// ---- workspaces ---------------------------------------------------------------------------

// ws[0] when it is the CUDA plan's (rank 1, the op's dtype): its bytes, else 0.
template <class T> size_t cuda_ws_bytes(const KernelArgs& a, void** data) {
  *data = nullptr;
  if (a.ws.empty()) return 0;
  const TensorRef& t = a.ws[0];
  if (t.dims.size() != 1 || t.dtype != dtype_of<T>()) return 0;
  *data = t.data;
  return static_cast<size_t>(numel_of(t)) * sizeof(T);
}

constexpr size_t kFlagBytes = 256;  // grad_input's flag: the last 256 bytes of ws[0]

// ---- cuDNN --------------------------------------------------------------------------------

[[noreturn]] void cudnn_fail(const CudnnApi& api, const char* op, const char* what, cudnnStatus_t s) {
  throw std::runtime_error(std::string(op) + ": cuDNN " + what + " failed: " + api.cudnnGetErrorString(s));
}
#define GRAPHC_CUDNN(api, op, call)                                                 \
  do {                                                                              \
    const cudnnStatus_t graphc_cudnn_status = (api).call;                           \
    if (graphc_cudnn_status != CUDNN_STATUS_SUCCESS) {                              \
      ::graphc::cuda::cudnn_fail((api), (op), #call, graphc_cudnn_status);          \
    }                                                                               \
  } while (0)

// The descriptors of one convolution (x, w, y, conv) and the chosen algorithm; destroyed
// with the kernel.
struct CudnnConv {
  const CudnnApi* api = nullptr;
  cudnnHandle_t handle = nullptr;
  cudnnTensorDescriptor_t x = nullptr, y = nullptr;
  cudnnFilterDescriptor_t w = nullptr;
  cudnnConvolutionDescriptor_t conv = nullptr;
  int algo = -1;
  size_t ws_bytes = 0;
  CudnnConv() = default;
  CudnnConv(const CudnnConv&) = delete;
  CudnnConv& operator=(const CudnnConv&) = delete;
  ~CudnnConv() {
    if (api == nullptr) return;
    if (x != nullptr) api->cudnnDestroyTensorDescriptor(x);
    if (y != nullptr) api->cudnnDestroyTensorDescriptor(y);
    if (w != nullptr) api->cudnnDestroyFilterDescriptor(w);
    if (conv != nullptr) api->cudnnDestroyConvolutionDescriptor(conv);
  }
};

// Whether cuDNN may take this convolution: loaded, not switched off, symmetric pads, every
// dim and every tensor's item count within int, at least one channel and image on each side.
bool cudnn_eligible(const KernelArgs& a, const ConvGeom& q) {
  if (dry(a)) return false;
  const char* env = std::getenv("GRAPHC_CUDA_CONV");
  if (env != nullptr && std::strcmp(env, "own") == 0) return false;
  if (device_of(a).cudnn() == nullptr) return false;
  if (q.pt != q.pb || q.pl != q.pr) return false;
  if (q.n < 1 || q.cg < 1 || q.og < 1) return false;
  const int64_t lim = INT32_MAX;
  for (int64_t v : {q.n, q.c, q.h, q.w, q.o, q.kh, q.kw, q.g, q.sh, q.sw, q.pt, q.pl, q.dh, q.dw, q.ho, q.wo}) {
    if (v > lim) return false;
  }
  for (const auto& d : {q.x_dims(), q.w_dims(), q.y_dims()}) {
    if (cpu::checked_numel(d) < 0 || cpu::checked_numel(d) > lim) return false;
  }
  return true;
}

// The descriptors of q in dtype T (x: N C H W, w: O C/g kh kw, y: N O Ho Wo), math as above.
template <class T> std::shared_ptr<CudnnConv> cudnn_descriptors(const KernelArgs& a, const ConvGeom& q,
                                                                const char* op) {
  CudaDevice& dev = device_of(a);
  auto d = std::make_shared<CudnnConv>();
  const CudnnApi& api = *dev.cudnn();
  d->api = &api;
  d->handle = static_cast<cudnnHandle_t>(dev.cudnn_handle());
  const cudnnDataType_t dt = std::is_same<T, float>::value ? CUDNN_DATA_FLOAT : CUDNN_DATA_DOUBLE;
  auto i = [](int64_t v) { return static_cast<int>(v); };
  GRAPHC_CUDNN(api, op, cudnnCreateTensorDescriptor(&d->x));
  GRAPHC_CUDNN(api, op, cudnnSetTensor4dDescriptor(d->x, CUDNN_TENSOR_NCHW, dt, i(q.n), i(q.c), i(q.h), i(q.w)));
  GRAPHC_CUDNN(api, op, cudnnCreateTensorDescriptor(&d->y));
  GRAPHC_CUDNN(api, op, cudnnSetTensor4dDescriptor(d->y, CUDNN_TENSOR_NCHW, dt, i(q.n), i(q.o), i(q.ho), i(q.wo)));
  GRAPHC_CUDNN(api, op, cudnnCreateFilterDescriptor(&d->w));
  GRAPHC_CUDNN(api, op, cudnnSetFilter4dDescriptor(d->w, dt, CUDNN_TENSOR_NCHW, i(q.o), i(q.cg), i(q.kh), i(q.kw)));
  GRAPHC_CUDNN(api, op, cudnnCreateConvolutionDescriptor(&d->conv));
  GRAPHC_CUDNN(api, op, cudnnSetConvolution2dDescriptor(d->conv, i(q.pt), i(q.pl), i(q.sh), i(q.sw), i(q.dh),
                                                        i(q.dw), CUDNN_CROSS_CORRELATION, dt));
  GRAPHC_CUDNN(api, op, cudnnSetConvolutionGroupCount(d->conv, i(q.g)));
  const cudnnMathType_t math = std::is_same<T, float>::value && !dev.allow_tf32() ? CUDNN_FMA_MATH : CUDNN_DEFAULT_MATH;
  GRAPHC_CUDNN(api, op, cudnnSetConvolutionMathType(d->conv, math));
  return d;
}

// The first of cuDNN's ranked algorithms that succeeds, fits `ws_bytes`, is deterministic, is
// one of `allowed` and uses no tensor-op math unless TF32 is allowed; -1 when none.
template <class Perf> int pick_algo(const Perf* perf, int count, size_t ws_bytes, std::initializer_list<int> allowed,
                                    bool tf32, size_t* need) {
  for (int i = 0; i < count; ++i) {
    const Perf& r = perf[i];
    if (r.status != CUDNN_STATUS_SUCCESS || r.memory > ws_bytes || r.determinism != CUDNN_DETERMINISTIC) continue;
    if (!tf32 && (r.mathType == CUDNN_TENSOR_OP_MATH || r.mathType == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION)) continue;
    bool ok = false;
    for (int v : allowed) ok = ok || static_cast<int>(r.algo) == v;
    if (!ok) continue;
    *need = r.memory;
    return static_cast<int>(r.algo);
  }
  return -1;
}

enum class Pass { kForward, kData, kFilter };

// cuDNN's descriptors and algorithm for q, or nullptr when cuDNN does not take it.
template <class T> std::shared_ptr<CudnnConv> cudnn_plan(const KernelArgs& a, const ConvGeom& q, Pass pass,
                                                         size_t ws_bytes, const char* op) {
  if (!cudnn_eligible(a, q)) return nullptr;
  auto d = cudnn_descriptors<T>(a, q, op);
  const CudnnApi& api = *d->api;
  const bool tf32 = std::is_same<T, float>::value && device_of(a).allow_tf32();
  int returned = 0;
  size_t need = 0;
  if (pass == Pass::kForward) {
    cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
    GRAPHC_CUDNN(api, op, cudnnGetConvolutionForwardAlgorithm_v7(d->handle, d->x, d->w, d->conv, d->y,
                                                                 CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &returned, perf));
    d->algo = pick_algo(perf, returned, ws_bytes,
                        {CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM, CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM,
                         CUDNN_CONVOLUTION_FWD_ALGO_GEMM},
                        tf32, &need);
  } else if (pass == Pass::kData) {
    cudnnConvolutionBwdDataAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
    GRAPHC_CUDNN(api, op, cudnnGetConvolutionBackwardDataAlgorithm_v7(
                              d->handle, d->w, d->y, d->conv, d->x, CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &returned,
                              perf));
    d->algo = pick_algo(perf, returned, ws_bytes, {CUDNN_CONVOLUTION_BWD_DATA_ALGO_1}, tf32, &need);
  } else {
    cudnnConvolutionBwdFilterAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
    GRAPHC_CUDNN(api, op, cudnnGetConvolutionBackwardFilterAlgorithm_v7(
                              d->handle, d->x, d->y, d->conv, d->w, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT,
                              &returned, perf));
    d->algo = pick_algo(perf, returned, ws_bytes, {CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1}, tf32, &need);
  }
  if (d->algo < 0) return nullptr;
  d->ws_bytes = need;
  return d;
}

template <class T> struct Scale {
  T one = T(1), zero = T(0);
};

// ---- factories ----------------------------------------------------------------------------

// conv2d(x, w) -> y.
template <class T> Kernel conv_kernel(const KernelArgs& args) {
  const ConvGeom q = cpu::conv2d_check(args);
  const TensorRef &x = args.in[0], &w = args.in[1];
  const int64_t ny = numel_of(args.out[0]);
  if (ny == 0) return no_op_kernel();
  const T* px = x.as<const T>();
  const T* pw = w.as<const T>();
  T* py = args.out[0].as<T>();
  const cudaStream_t stream = stream_of(args);
  void* ws = nullptr;
  const size_t ws_bytes = cuda_ws_bytes<T>(args, &ws);
  if (auto d = cudnn_plan<T>(args, q, Pass::kForward, ws_bytes, "conv2d")) {
    return [=]() {
      const Scale<T> s;
      GRAPHC_CUDNN(*d->api, "conv2d", cudnnSetStream(d->handle, stream));
      GRAPHC_CUDNN(*d->api, "conv2d",
                   cudnnConvolutionForward(d->handle, &s.one, d->x, px, d->w, pw, d->conv,
                                           static_cast<cudnnConvolutionFwdAlgo_t>(d->algo), ws, d->ws_bytes, &s.zero,
                                           d->y, py));
    };
  }
  FwdProblem<T> p{geo_of(q), q.og, q.n * q.p, q.k, px, pw, py};
  const GemmLaunch l = gemm_launch(args, p.M, p.N, p.K, q.g, 1);
  return [=]() {
    igemm<T, FwdProblem<T>><<<l.grid, kGemmThreads, 0, stream>>>(p, l.groups, l.k_chunk, nullptr);
    GRAPHC_CUDA_LAUNCH_CHECK("conv2d");
  };
}

// conv2d_grad_input(dy, w) -> dx.
template <class T> Kernel grad_input_kernel(const KernelArgs& args) {
  const ConvGeom q = cpu::conv2d_grad_input_check(args);
  const TensorRef &dy = args.in[0], &w = args.in[1];
  if (numel_of(args.out[0]) == 0) return no_op_kernel();
  const T* pdy = dy.as<const T>();
  const T* pw = w.as<const T>();
  T* pdx = args.out[0].as<T>();
  const cudaStream_t stream = stream_of(args);
  GradInputProblem<T> p{geo_of(q), q.cg, q.n * q.h * q.w, q.og * q.kh * q.kw, pdy, pw, pdx};
  const GemmLaunch l = gemm_launch(args, p.M, p.N, p.K, q.g, 1);
  void* ws = nullptr;
  const size_t ws_total = cuda_ws_bytes<T>(args, &ws);
  if (ws_total >= kFlagBytes) {  // the flag needs the workspace: without one, the own kernel
    const size_t ws_bytes = ws_total - kFlagBytes;
    int* flag = reinterpret_cast<int*>(static_cast<char*>(ws) + ws_bytes);
    if (auto d = cudnn_plan<T>(args, q, Pass::kData, ws_bytes, "conv2d_grad_input")) {
      const int64_t nw = numel_of(w);
      const unsigned fblocks = blocks_for(nw);
      return [=]() {
        const Scale<T> s;
        GRAPHC_CUDNN(*d->api, "conv2d_grad_input", cudnnSetStream(d->handle, stream));
        GRAPHC_CUDNN(*d->api, "conv2d_grad_input",
                     cudnnConvolutionBackwardData(d->handle, &s.one, d->w, pw, d->y, pdy, d->conv,
                                                  static_cast<cudnnConvolutionBwdDataAlgo_t>(d->algo), ws,
                                                  d->ws_bytes, &s.zero, d->x, pdx));
        // w with inf or NaN: dx again by the definition (padding taps left out)
        GRAPHC_CUDA_CHECK(cudaMemsetAsync(flag, 0, sizeof(int), stream));
        flag_non_finite<T><<<fblocks, kThreads, 0, stream>>>(pw, nw, flag);
        GRAPHC_CUDA_LAUNCH_CHECK("conv2d_grad_input");
        igemm<T, GradInputProblem<T>><<<l.grid, kGemmThreads, 0, stream>>>(p, l.groups, l.k_chunk, flag);
        GRAPHC_CUDA_LAUNCH_CHECK("conv2d_grad_input");
      };
    }
  }
  return [=]() {
    igemm<T, GradInputProblem<T>><<<l.grid, kGemmThreads, 0, stream>>>(p, l.groups, l.k_chunk, nullptr);
    GRAPHC_CUDA_LAUNCH_CHECK("conv2d_grad_input");
  };
}

// conv2d_grad_weight(dy, x) -> dw.
template <class T> Kernel grad_weight_kernel(const KernelArgs& args) {
  const ConvGeom q = cpu::conv2d_grad_weight_check(args);
  const TensorRef &dy = args.in[0], &x = args.in[1];
  const int64_t wsize = numel_of(args.out[0]);
  if (wsize == 0) return no_op_kernel();
  const T* pdy = dy.as<const T>();
  const T* px = x.as<const T>();
  T* pdw = args.out[0].as<T>();
  const cudaStream_t stream = stream_of(args);
  if (q.n == 0) {  // a sum over no images
    if (dry(args)) return no_op_kernel();
    return [=]() { GRAPHC_CUDA_CHECK(cudaMemsetAsync(pdw, 0, static_cast<size_t>(wsize) * sizeof(T), stream)); };
  }
  void* ws = nullptr;
  const size_t ws_bytes = cuda_ws_bytes<T>(args, &ws);
  if (auto d = cudnn_plan<T>(args, q, Pass::kFilter, ws_bytes, "conv2d_grad_weight")) {
    return [=]() {
      const Scale<T> s;
      GRAPHC_CUDNN(*d->api, "conv2d_grad_weight", cudnnSetStream(d->handle, stream));
      GRAPHC_CUDNN(*d->api, "conv2d_grad_weight",
                   cudnnConvolutionBackwardFilter(d->handle, &s.one, d->x, px, d->y, pdy, d->conv,
                                                  static_cast<cudnnConvolutionBwdFilterAlgo_t>(d->algo), ws,
                                                  d->ws_bytes, &s.zero, d->w, pdw));
    };
  }
  // the planned split of the reduction: ws[1] (S, wsize) of the CUDA plan, else S = 1
  int64_t splits = 1;
  T* part = nullptr;
  if (args.ws.size() >= 2 && args.ws[1].dims.size() == 2 && args.ws[1].dtype == dtype_of<T>() &&
      args.ws[1].dims[1] == wsize && args.ws[1].dims[0] >= 1 && ws_bytes > 0) {
    splits = args.ws[1].dims[0];
    part = args.ws[1].as<T>();
  }
  GradWeightProblem<T> p{geo_of(q), q.og, q.k, q.n * q.p, pdy, px, splits > 1 ? part : pdw, wsize};
  const GemmLaunch l = gemm_launch(args, p.M, p.N, p.K, q.g, splits);
  const unsigned rblocks = blocks_for(wsize);
  return [=]() {
    igemm<T, GradWeightProblem<T>><<<l.grid, kGemmThreads, 0, stream>>>(p, l.groups, l.k_chunk, nullptr);
    GRAPHC_CUDA_LAUNCH_CHECK("conv2d_grad_weight");
    if (splits > 1) {
      sum_partials<T><<<rblocks, kThreads, 0, stream>>>(part, splits, wsize, pdw);
      GRAPHC_CUDA_LAUNCH_CHECK("conv2d_grad_weight");
    }
  };
}

}  // namespace

void register_conv_kernels(KernelRegistry& r) {
  add_typed<FloatTypes>(r, "conv2d", [](auto tag, const KernelArgs& a) {
    return conv_kernel<typename decltype(tag)::type>(a);
  });
  add_typed<FloatTypes>(r, "conv2d_grad_input", [](auto tag, const KernelArgs& a) {
    return grad_input_kernel<typename decltype(tag)::type>(a);
  });
  add_typed<FloatTypes>(r, "conv2d_grad_weight", [](auto tag, const KernelArgs& a) {
    return grad_weight_kernel<typename decltype(tag)::type>(a);
  });
}

}  // namespace cuda
}  // namespace graphc
