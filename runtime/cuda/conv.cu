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

#include "common.cuh"
#include "cudnn_api.h"

namespace graphc {
namespace cuda {
namespace {

struct ConvGeom {
  int64_t n = 0, c = 0, h = 0, w = 0;  // input
  int64_t o = 0, kh = 0, kw = 0;       // weight (o, c / g, kh, kw)
  int64_t g = 1, cg = 0, og = 0;       // groups, channels per group
  int64_t sh = 1, sw = 1, pt = 0, pl = 0, pb = 0, pr = 0, dh = 1, dw = 1;
  int64_t ho = 0, wo = 0;  // output
  int64_t k = 0, p = 0;    // per-group GEMM depth cg·kh·kw, output positions ho·wo
  std::vector<int64_t> x_dims() const { return {n, c, h, w}; }
  std::vector<int64_t> w_dims() const { return {o, cg, kh, kw}; }
  std::vector<int64_t> y_dims() const { return {n, o, ho, wo}; }
};

// conv_geom of runtime/cpu/conv.cc: the same checks, the same messages.
template <class Attr>
ConvGeom conv_geom(const KernelArgs& a, const Attr& attr, const std::vector<int64_t>& in_dims,
                   const std::vector<int64_t>& w_dims) {
  if (attr.stride.size() != 2 || attr.dilation.size() != 2 || attr.pads.size() != 4) {
    a.fail("stride and dilation must hold 2 ints and pads 4");
  }
  ConvGeom q;
  q.sh = attr.stride[0], q.sw = attr.stride[1], q.dh = attr.dilation[0], q.dw = attr.dilation[1];
  q.pt = attr.pads[0], q.pl = attr.pads[1], q.pb = attr.pads[2], q.pr = attr.pads[3];
  q.g = attr.groups;
  if (q.sh <= 0 || q.sw <= 0 || q.dh <= 0 || q.dw <= 0) a.fail("stride and dilation must be positive");
  if (q.pt < 0 || q.pl < 0 || q.pb < 0 || q.pr < 0) a.fail("pads must be >= 0");
  if (q.g <= 0) a.fail("groups must be positive, got " + std::to_string(q.g));
  q.n = in_dims[0], q.c = in_dims[1], q.h = in_dims[2], q.w = in_dims[3];
  q.o = w_dims[0], q.cg = w_dims[1], q.kh = w_dims[2], q.kw = w_dims[3];
  if (q.c % q.g != 0 || q.o % q.g != 0 || q.cg != q.c / q.g) {
    a.fail("channels do not match groups=" + std::to_string(q.g) + ": input " + format_dims(in_dims) +
           ", weight " + format_dims(w_dims));
  }
  q.og = q.o / q.g;
  if (q.h < 1 || q.w < 1 || q.kh < 1 || q.kw < 1) {
    a.fail("input " + format_dims(in_dims) + " and kernel " + format_dims(w_dims) + " need H, W, k_h, k_w >= 1");
  }
  using cpu::checked_add;
  using cpu::saturating_mul;
  const int64_t span_h = checked_add(a, saturating_mul(q.dh, q.kh - 1), 1, "dilated kernel height");
  const int64_t span_w = checked_add(a, saturating_mul(q.dw, q.kw - 1), 1, "dilated kernel width");
  const int64_t hp = checked_add(a, checked_add(a, q.h, q.pt, "padded H"), q.pb, "padded H");
  const int64_t wp = checked_add(a, checked_add(a, q.w, q.pl, "padded W"), q.pr, "padded W");
  if (hp < span_h || wp < span_w) {
    a.fail("input " + format_dims(in_dims) + " padded is smaller than the dilated kernel " + format_dims(w_dims) +
           " (the output would be empty)");
  }
  q.ho = (hp - span_h) / q.sh + 1;
  q.wo = (wp - span_w) / q.sw + 1;
  q.k = saturating_mul(saturating_mul(q.cg, q.kh), q.kw);
  q.p = saturating_mul(q.ho, q.wo);
  return q;
}

// The geometry a kernel reads (by value).
struct Geo {
  int64_t c, h, w, o, kh, kw, cg, og, sh, sw, pt, pl, dh, dw, ho, wo, taps, k, p;
};
Geo geo_of(const ConvGeom& q) {
  return Geo{q.c, q.h, q.w, q.o, q.kh, q.kw, q.cg, q.og, q.sh, q.sw, q.pt, q.pl, q.dh, q.dw, q.ho, q.wo,
             q.kh * q.kw, q.k, q.p};
}

// ---- the own implicit-GEMM kernel ---------------------------------------------------------

constexpr int kBM = 64, kBN = 64, kBK = 16, kTM = 4, kTN = 4, kGemmThreads = 256;

// Each problem maps the GEMM's (m, k) to A and (k, n) to B.  A thread loads B for one column
// n of its tile in every K step (igemm: nn = tid % kBN), so what depends on n alone — the
// image, the position, the tensor base — is decomposed once per CTA into a Col (col()), and
// b() is left with the k side of the index.

// conv2d: M = og (o), N = n·P (image, output position), K = cg·taps (c, tap).
template <class T> struct FwdProblem {
  static constexpr bool kMasked = false;
  Geo q;
  int64_t M, N, K;
  const T* x;
  const T* w;
  T* y;
  struct Col {
    int64_t base, r0, c0;  // x's offset of (image, group's channel 0); the window's top-left
  };
  __device__ T a(int64_t g, int64_t m, int64_t k) const { return w[(g * q.og + m) * q.k + k]; }
  __device__ Col col(int64_t g, int64_t n) const {
    const int64_t img = n / q.p, pp = n - img * q.p, i = pp / q.wo, j = pp - i * q.wo;
    return Col{(img * q.c + g * q.cg) * q.h * q.w, i * q.sh - q.pt, j * q.sw - q.pl};
  }
  // x_pad[img][g·cg + c][i·sh + a·dh][j·sw + b·dw]: 0 in the padding (a term all the same)
  __device__ bool b(int64_t k, const Col& cl, T& v) const {
    const int64_t c = k / q.taps, tap = k - c * q.taps, a = tap / q.kw, bb = tap - a * q.kw;
    const int64_t r = cl.r0 + a * q.dh, cc = cl.c0 + bb * q.dw;
    v = (r >= 0 && r < q.h && cc >= 0 && cc < q.w) ? x[cl.base + (c * q.h + r) * q.w + cc] : T(0);
    return true;
  }
  __device__ void store(int64_t g, int64_t, int64_t m, int64_t n, T v) const {
    const int64_t img = n / q.p, pp = n - img * q.p;
    y[(img * q.o + g * q.og + m) * q.p + pp] = v;
  }
};

// conv2d_grad_input: M = cg (c), N = n·H·W (image, input position), K = og·taps (o, tap).
template <class T> struct GradInputProblem {
  static constexpr bool kMasked = true;
  Geo q;
  int64_t M, N, K;
  const T* dy;
  const T* w;
  T* dx;
  struct Col {
    int64_t base, th0, tw0;  // dy's offset of (image, group's channel 0); h + pt, w + pl
  };
  __device__ T a(int64_t g, int64_t m, int64_t k) const {
    const int64_t o = k / q.taps, tap = k - o * q.taps;
    return w[((g * q.og + o) * q.cg + m) * q.taps + tap];
  }
  __device__ Col col(int64_t g, int64_t n) const {
    const int64_t hw = q.h * q.w, img = n / hw, rest = n - img * hw, h = rest / q.w, wc = rest - h * q.w;
    return Col{(img * q.o + g * q.og) * q.p, h + q.pt, wc + q.pl};
  }
  // dy[img][g·og + o][i][j] when tap (a, b) of output (i, j) reads input (h, w); false when none does
  __device__ bool b(int64_t k, const Col& cl, T& v) const {
    const int64_t o = k / q.taps, tap = k - o * q.taps, a = tap / q.kw, bb = tap - a * q.kw;
    const int64_t th = cl.th0 - a * q.dh, tw = cl.tw0 - bb * q.dw;
    if (th < 0 || tw < 0) return false;
    const int64_t i = th / q.sh, j = tw / q.sw;
    if (i * q.sh != th || j * q.sw != tw || i >= q.ho || j >= q.wo) return false;
    v = dy[cl.base + o * q.p + i * q.wo + j];
    return true;
  }
  __device__ void store(int64_t g, int64_t, int64_t m, int64_t n, T v) const {
    const int64_t hw = q.h * q.w, img = n / hw, rest = n - img * hw;
    dx[(img * q.c + g * q.cg + m) * hw + rest] = v;
  }
};

// conv2d_grad_weight: M = og (o), N = cg·taps (c, tap), K = n·P (image, output position).
template <class T> struct GradWeightProblem {
  static constexpr bool kMasked = false;
  Geo q;
  int64_t M, N, K;
  const T* dy;
  const T* x;
  T* out;         // dw, or the S partial products (slice s at out + s·wsize)
  int64_t wsize;  // o·cg·taps
  struct Col {
    int64_t base, ra, cb;  // x's channel offset (g·cg + c)·H·W; a·dh - pt, b·dw - pl
  };
  __device__ T a(int64_t g, int64_t m, int64_t k) const {
    const int64_t img = k / q.p, pp = k - img * q.p;
    return dy[(img * q.o + g * q.og + m) * q.p + pp];
  }
  __device__ Col col(int64_t g, int64_t n) const {
    const int64_t c = n / q.taps, tap = n - c * q.taps, a = tap / q.kw, bb = tap - a * q.kw;
    return Col{(g * q.cg + c) * q.h * q.w, a * q.dh - q.pt, bb * q.dw - q.pl};
  }
  // x_pad[img][g·cg + c][i·sh + a·dh][j·sw + b·dw]: 0 in the padding (a term all the same)
  __device__ bool b(int64_t k, const Col& cl, T& v) const {
    const int64_t img = k / q.p, pp = k - img * q.p, i = pp / q.wo, j = pp - i * q.wo;
    const int64_t r = i * q.sh + cl.ra, cc = j * q.sw + cl.cb;
    v = (r >= 0 && r < q.h && cc >= 0 && cc < q.w) ? x[img * q.c * q.h * q.w + cl.base + r * q.w + cc] : T(0);
    return true;
  }
  __device__ void store(int64_t g, int64_t split, int64_t m, int64_t n, T v) const {
    out[split * wsize + (g * q.og + m) * q.k + n] = v;
  }
};

// One CTA: the 64 x 64 tile (blockIdx.y, blockIdx.x) of group blockIdx.z % groups, over the
// K slice blockIdx.z / groups (k_chunk items, a multiple of kBK).  When `guard` is set, the
// CTA does nothing while *guard is 0 (grad_input's fix-up after cuDNN).
template <class T, class P>
__global__ void __launch_bounds__(kGemmThreads) igemm(const P p, int groups, int64_t k_chunk, const int* guard) {
  if (guard != nullptr && *guard == 0) return;
  __shared__ T As[kBK][kBM];
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
  const int64_t per = (K + splits - 1) / std::max<int64_t>(splits, 1);
  l.k_chunk = std::max<int64_t>(kBK, (per + kBK - 1) / kBK * kBK);
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
  args.expect_arity(2, 1);
  const TensorRef &x = args.in[0], &w = args.in[1];
  if (x.dims.size() != 4 || w.dims.size() != 4) {
    args.fail("x and w must have rank 4, got " + format_dims(x.dims) + " and " + format_dims(w.dims));
  }
  const ConvGeom q = conv_geom(args, attrs::Conv2d(args), x.dims, w.dims);
  cpu::expect_dtype(args, w, x.dtype, "input 1 (w)");
  cpu::expect_dtype(args, args.out[0], x.dtype, "output");
  cpu::expect_dims(args, args.out[0], q.y_dims(), "output");
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
  args.expect_arity(2, 1);
  const TensorRef &dy = args.in[0], &w = args.in[1];
  const attrs::Conv2dGradInput attr(args);
  if (dy.dims.size() != 4 || w.dims.size() != 4 || attr.input_size.size() != 2) {
    args.fail("dy and w must have rank 4 and input_size hold 2 ints, got " + format_dims(dy.dims) + ", " +
              format_dims(w.dims) + " and input_size " + format_dims(attr.input_size));
  }
  const int64_t c = cpu::saturating_mul(w.dims[1], attr.groups);
  const ConvGeom q = conv_geom(args, attr, {dy.dims[0], c, attr.input_size[0], attr.input_size[1]}, w.dims);
  cpu::expect_dtype(args, w, dy.dtype, "input 1 (w)");
  cpu::expect_dims(args, dy, q.y_dims(), "input 0 (dy)");
  cpu::expect_dtype(args, args.out[0], dy.dtype, "output");
  cpu::expect_dims(args, args.out[0], q.x_dims(), "output");
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
  args.expect_arity(2, 1);
  const TensorRef &dy = args.in[0], &x = args.in[1];
  const attrs::Conv2dGradWeight attr(args);
  if (dy.dims.size() != 4 || x.dims.size() != 4 || attr.kernel_size.size() != 2) {
    args.fail("dy and x must have rank 4 and kernel_size hold 2 ints, got " + format_dims(dy.dims) + ", " +
              format_dims(x.dims) + " and kernel_size " + format_dims(attr.kernel_size));
  }
  if (attr.groups <= 0) args.fail("groups must be positive, got " + std::to_string(attr.groups));
  const ConvGeom q = conv_geom(args, attr, x.dims, {dy.dims[1], x.dims[1] / attr.groups, attr.kernel_size[0],
                                                    attr.kernel_size[1]});
  cpu::expect_dtype(args, dy, x.dtype, "input 0 (dy)");
  cpu::expect_dims(args, dy, q.y_dims(), "input 0 (dy)");
  cpu::expect_dtype(args, args.out[0], x.dtype, "output");
  cpu::expect_dims(args, args.out[0], q.w_dims(), "output");
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
