// blas.cu — Gemm (blas.cuh) on cuBLASLt.
//
// Row-major through the transpose trick: cuBLASLt is column-major, and a row-major matrix X
// (r×c, row stride ld) is the column-major matrix Xᵀ (c×r, leading dimension ld).  So the
// row-major C = op(A)·op(B) is computed as the column-major Cᵀ = op(B)ᵀ·op(A)ᵀ: cuBLASLt's
// "A" is our B, its "B" is our A, its M, N, K are our n, m, k, and the transposes carry over
// unchanged (our B stored k×n row-major is cuBLASLt's n×k column-major, op N; stored n×k
// with trans_b it is k×n, op T).  A bias per row-major column n is a bias per column-major
// row M, which is exactly cuBLASLt's BIAS epilogue.
//
// Epilogues: Bias goes to cuBLASLt (CUBLASLT_EPILOGUE_BIAS) when the heuristic has an
// algorithm for it, else to graphc's epilogue kernel below.  ReLU and GELU are ALWAYS applied
// by the epilogue kernel, not by cuBLASLt: graphc's relu propagates NaN (numpy's maximum),
// and graphc's gelu is the erf form x·½·erfc(-x/√2) with gelu(-inf) = -0, while cuBLASLt's
// GELU epilogue is the tanh approximation (the one torch pairs it with) — a different
// function.  The extra pass costs one read+write of C.
//
// Zero sizes never reach cuBLASLt: m, n or batch of 0 writes nothing; k of 0 makes the
// product 0, so C = beta·C (0 when beta is 0, NaN in C ignored, as BLAS) then the epilogue,
// in the epilogue kernel.
#include <cublasLt.h>

#include <cstdint>
#include <cstring>
#include <string>

#include "blas.cuh"
#include "cublaslt_api.h"

namespace graphc {
namespace cuda {

namespace {

enum class Act : int { None = 0, Relu = 1, Gelu = 2 };

constexpr int64_t kDefaultAlign = 256;  // what cuBLASLt assumes of a pointer it is not told about

// ---- the epilogue kernel ---------------------------------------------------------------

template <class T> __device__ inline T gelu_erf_dev(T x) {
  // graphc's gelu (runtime/cpu/activations.cc gelu_erf): x·Φ(x), Φ(x) = ½·erfc(-x/√2); -0 where Φ = 0.
  const T cdf = T(0.5) * erfc(-x * T(0.70710678118654752440));
  return cdf == T(0) ? T(-0.0) : x * cdf;
}

// One thread per element of the batch of m×n row-major matrices C (row stride ldc, matrix
// stride stride_c), grid-stride over batch·m·n with 64-bit indices:
//   v = scale_c ? (beta == 0 ? 0 : beta·C) : C;  v += bias[col] (if bias);  C = act(v).
// scale_c is the k == 0 case (the product is 0); otherwise C already holds cuBLASLt's result.
template <class T>
__global__ void epilogue_kernel(T* __restrict__ C, int64_t m, int64_t n, int64_t ldc, int64_t stride_c, int64_t total,
                                const T* __restrict__ bias, int act, bool scale_c, T beta) {
  GRAPHC_GRID_STRIDE(i, total) {
    const int64_t col = i % n;
    const int64_t rest = i / n;
    const int64_t row = rest % m;
    const int64_t b = rest / m;
    T* p = C + b * stride_c + row * ldc + col;
    T v;
    if (scale_c) {
      v = beta == T(0) ? T(0) : beta * *p;
    } else {
      v = *p;
    }
    if (bias != nullptr) v = v + bias[col];
    if (act == static_cast<int>(Act::Relu)) {
      v = (v > T(0) || v != v) ? v : T(0);  // numpy maximum(v, 0): NaN stays NaN
    } else if (act == static_cast<int>(Act::Gelu)) {
      v = gelu_erf_dev(v);
    }
    *p = v;
  }
}

std::string status_text(const CublasLtApi& api, cublasStatus_t s) {
  const char* t = api.cublasLtGetStatusString ? api.cublasLtGetStatusString(s) : nullptr;
  return std::string(t != nullptr ? t : "unknown status") + " (" + std::to_string(static_cast<int>(s)) + ")";
}

void lt_check(const CublasLtApi& api, cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS) throw std::runtime_error(std::string("cuBLASLt ") + what + ": " + status_text(api, s));
}

// The largest power of two (<= 256) that divides the address (nullptr: 256, the pool's alignment).
int64_t alignment_of(const void* p) {
  if (p == nullptr) return kDefaultAlign;
  const auto v = reinterpret_cast<uintptr_t>(p);
  int64_t a = 1;
  while (a < kDefaultAlign && (v & static_cast<uintptr_t>(a)) == 0) a <<= 1;
  return a;
}

bool has_bias(Epilogue e) { return e == Epilogue::Bias || e == Epilogue::BiasRelu || e == Epilogue::BiasGelu; }

Act act_of(Epilogue e) {
  switch (e) {
    case Epilogue::Relu:
    case Epilogue::BiasRelu: return Act::Relu;
    case Epilogue::Gelu:
    case Epilogue::BiasGelu: return Act::Gelu;
    default: return Act::None;
  }
}

const char* epilogue_name(Epilogue e) {
  switch (e) {
    case Epilogue::None: return "none";
    case Epilogue::Bias: return "bias";
    case Epilogue::Relu: return "relu";
    case Epilogue::BiasRelu: return "bias+relu";
    case Epilogue::Gelu: return "gelu";
    case Epilogue::BiasGelu: return "bias+gelu";
  }
  return "?";
}

}  // namespace

struct Gemm::State {
  GemmDesc d;
  bool nothing = false;      // m, n or batch is 0: run() writes nothing
  bool k_zero = false;       // the product is 0: only the epilogue kernel runs
  bool lt_bias = false;      // cuBLASLt applies the bias
  bool post_bias = false;    // the epilogue kernel applies the bias
  Act act = Act::None;       // the epilogue kernel's activation
  int64_t align_a = kDefaultAlign, align_b = kDefaultAlign, align_c = kDefaultAlign, align_bias = kDefaultAlign;
  unsigned post_blocks = 1;  // the epilogue kernel's grid
  // cuBLASLt (none in a dry prepare or when k_zero/nothing)
  const CublasLtApi* api = nullptr;
  cublasLtHandle_t handle = nullptr;
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t la = nullptr, lb = nullptr, lc = nullptr;
  cublasLtMatmulAlgo_t algo{};
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
  float alpha_f = 1.f, beta_f = 0.f;
  double alpha_d = 1.0, beta_d = 0.0;

  State() = default;
  State(const State&) = delete;
  State& operator=(const State&) = delete;
  ~State() {
    if (api == nullptr) return;
    if (la != nullptr) api->cublasLtMatrixLayoutDestroy(la);
    if (lb != nullptr) api->cublasLtMatrixLayoutDestroy(lb);
    if (lc != nullptr) api->cublasLtMatrixLayoutDestroy(lc);
    if (op != nullptr) api->cublasLtMatmulDescDestroy(op);
  }
};

Gemm Gemm::plan(const KernelArgs& a, const GemmDesc& d, void* workspace, size_t workspace_bytes) {
  const std::string what = "gemm (m=" + std::to_string(d.m) + ", n=" + std::to_string(d.n) +
                           ", k=" + std::to_string(d.k) + ", batch=" + std::to_string(d.batch) + ")";
  if (d.dtype != DType::F32 && d.dtype != DType::F64) a.fail(what + ": cuBLASLt products take float32 or float64");
  if (d.m < 0 || d.n < 0 || d.k < 0 || d.batch < 0) a.fail(what + ": negative size");
  // Row-major leading dimensions: at least the stored row length (and 1).
  const int64_t a_cols = d.trans_a ? d.m : d.k, b_cols = d.trans_b ? d.k : d.n;
  if (d.lda < std::max<int64_t>(1, a_cols)) a.fail(what + ": lda " + std::to_string(d.lda) + " < " + std::to_string(a_cols));
  if (d.ldb < std::max<int64_t>(1, b_cols)) a.fail(what + ": ldb " + std::to_string(d.ldb) + " < " + std::to_string(b_cols));
  if (d.ldc < std::max<int64_t>(1, d.n)) a.fail(what + ": ldc " + std::to_string(d.ldc) + " < " + std::to_string(d.n));
  if (d.stride_a < 0 || d.stride_b < 0 || d.stride_c < 0) a.fail(what + ": negative batch stride");
  if (d.batch > 1 && d.stride_c == 0 && d.m > 0 && d.n > 0) {
    a.fail(what + ": the batch's results would overlap (stride_c 0)");
  }
  if (d.batch > INT32_MAX) a.fail(what + ": cuBLASLt takes at most 2^31-1 matrices in one batch");

  auto s = std::make_shared<State>();
  s->d = d;
  s->nothing = d.m == 0 || d.n == 0 || d.batch == 0;
  s->k_zero = !s->nothing && d.k == 0;
  s->act = act_of(d.epilogue);
  const int64_t es = static_cast<int64_t>(dtype_size(d.dtype));
  s->align_a = std::min(alignment_of(d.a_hint), kDefaultAlign);
  s->align_b = std::min(alignment_of(d.b_hint), kDefaultAlign);
  s->align_c = std::min(alignment_of(d.c_hint), kDefaultAlign);
  s->align_bias = std::min(alignment_of(d.bias_hint), kDefaultAlign);
  // (a dry prepare's addresses are fake: their alignment says nothing)
  for (int64_t* al : {&s->align_a, &s->align_b, &s->align_c, &s->align_bias}) {
    if (*al < es && !dry(a)) a.fail(what + ": a pointer is not aligned to its element size");
  }
  s->post_blocks = blocks_for(s->nothing ? 0 : d.batch * d.m * d.n);
  if (s->nothing || dry(a)) {
    s->post_bias = has_bias(d.epilogue);
    Gemm g;
    g.state_ = std::move(s);
    return g;
  }
  if (s->k_zero) {
    s->post_bias = has_bias(d.epilogue);
    Gemm g;
    g.state_ = std::move(s);
    return g;
  }

  CudaDevice& dev = device_of(a);
  const CublasLtApi& api = dev.cublaslt();
  s->api = &api;
  s->handle = static_cast<cublasLtHandle_t>(dev.lt_handle());
  const bool f64 = d.dtype == DType::F64;
  const cudaDataType_t dt = f64 ? CUDA_R_64F : CUDA_R_32F;
  const cublasComputeType_t ct =
      f64 ? CUBLAS_COMPUTE_64F : (dev.allow_tf32() ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F);
  s->alpha_f = static_cast<float>(d.alpha);
  s->beta_f = static_cast<float>(d.beta);
  s->alpha_d = d.alpha;
  s->beta_d = d.beta;

  // Workspace: 256-byte aligned start (cuBLASLt's requirement for its scratch).
  if (workspace != nullptr && workspace_bytes > 0) {
    const auto v = reinterpret_cast<uintptr_t>(workspace);
    const uintptr_t pad = (256 - v % 256) % 256;
    if (workspace_bytes > pad) {
      s->workspace = reinterpret_cast<void*>(v + pad);
      s->workspace_bytes = (workspace_bytes - pad) / 256 * 256;
    }
  }
  if (s->workspace_bytes == 0) s->workspace = nullptr;

  // Layouts, column-major (see the top of the file): cuBLASLt A = our B, B = our A.
  const uint64_t la_rows = static_cast<uint64_t>(d.trans_b ? d.k : d.n), la_cols = static_cast<uint64_t>(d.trans_b ? d.n : d.k);
  const uint64_t lb_rows = static_cast<uint64_t>(d.trans_a ? d.m : d.k), lb_cols = static_cast<uint64_t>(d.trans_a ? d.k : d.m);
  lt_check(api, api.cublasLtMatrixLayoutCreate(&s->la, dt, la_rows, la_cols, d.ldb), "matrix layout (B)");
  lt_check(api, api.cublasLtMatrixLayoutCreate(&s->lb, dt, lb_rows, lb_cols, d.lda), "matrix layout (A)");
  lt_check(api, api.cublasLtMatrixLayoutCreate(&s->lc, dt, static_cast<uint64_t>(d.n), static_cast<uint64_t>(d.m), d.ldc),
           "matrix layout (C)");
  if (d.batch > 1) {
    const int32_t count = static_cast<int32_t>(d.batch);
    const int64_t strides[3] = {d.stride_b, d.stride_a, d.stride_c};
    cublasLtMatrixLayout_t layouts[3] = {s->la, s->lb, s->lc};
    for (int i = 0; i < 3; ++i) {
      lt_check(api, api.cublasLtMatrixLayoutSetAttribute(layouts[i], CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count, sizeof(count)),
               "batch count");
      lt_check(api,
               api.cublasLtMatrixLayoutSetAttribute(layouts[i], CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &strides[i],
                                                    sizeof(strides[i])),
               "batch stride");
    }
  }

  lt_check(api, api.cublasLtMatmulDescCreate(&s->op, ct, dt), "matmul descriptor");
  const cublasOperation_t op_a = d.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;  // cuBLASLt's A is our B
  const cublasOperation_t op_b = d.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  lt_check(api, api.cublasLtMatmulDescSetAttribute(s->op, CUBLASLT_MATMUL_DESC_TRANSA, &op_a, sizeof(op_a)), "transa");
  lt_check(api, api.cublasLtMatmulDescSetAttribute(s->op, CUBLASLT_MATMUL_DESC_TRANSB, &op_b, sizeof(op_b)), "transb");

  cublasLtMatmulPreference_t pref = nullptr;
  lt_check(api, api.cublasLtMatmulPreferenceCreate(&pref), "preference");
  struct PrefGuard {
    const CublasLtApi& api;
    cublasLtMatmulPreference_t p;
    ~PrefGuard() { api.cublasLtMatmulPreferenceDestroy(p); }
  } guard{api, pref};
  const uint64_t ws_limit = s->workspace_bytes;
  lt_check(api, api.cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws_limit, sizeof(ws_limit)),
           "workspace limit");
  // cuBLASLt's A/B/C/D are our B/A/C/C.
  const uint32_t al[4] = {static_cast<uint32_t>(s->align_b), static_cast<uint32_t>(s->align_a),
                          static_cast<uint32_t>(s->align_c), static_cast<uint32_t>(s->align_c)};
  const cublasLtMatmulPreferenceAttributes_t al_attr[4] = {
      CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
      CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES};
  for (int i = 0; i < 4; ++i) {
    lt_check(api, api.cublasLtMatmulPreferenceSetAttribute(pref, al_attr[i], &al[i], sizeof(al[i])), "alignment");
  }

  auto heuristic = [&](cublasLtEpilogue_t epi) -> bool {
    lt_check(api, api.cublasLtMatmulDescSetAttribute(s->op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof(epi)), "epilogue");
    cublasLtMatmulHeuristicResult_t result;
    std::memset(&result, 0, sizeof(result));
    int found = 0;
    const cublasStatus_t st =
        api.cublasLtMatmulAlgoGetHeuristic(s->handle, s->op, s->la, s->lb, s->lc, s->lc, pref, 1, &result, &found);
    if (st == CUBLAS_STATUS_NOT_SUPPORTED || (st == CUBLAS_STATUS_SUCCESS && found == 0)) return false;
    lt_check(api, st, "algorithm heuristic");
    if (result.state != CUBLAS_STATUS_SUCCESS) return false;
    s->algo = result.algo;
    return true;
  };
  // The bias in cuBLASLt when it has an algorithm for it (the pointer is set by run(); its
  // alignment by the hint), else in the epilogue kernel.
  bool ok = false;
  if (has_bias(d.epilogue)) {
    // The heuristic reads the bias pointer only for its alignment: give it one as aligned as the hint.
    const void* probe = reinterpret_cast<const void*>(static_cast<uintptr_t>(s->align_bias));
    lt_check(api, api.cublasLtMatmulDescSetAttribute(s->op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &probe, sizeof(probe)),
             "bias pointer");
    ok = heuristic(CUBLASLT_EPILOGUE_BIAS);
    s->lt_bias = ok;
    if (!ok) {
      const void* none = nullptr;
      lt_check(api, api.cublasLtMatmulDescSetAttribute(s->op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &none, sizeof(none)),
               "bias pointer");
    }
  }
  if (!ok) ok = heuristic(CUBLASLT_EPILOGUE_DEFAULT);
  if (!ok) {
    throw std::runtime_error("cuBLASLt has no algorithm for " + what + std::string(f64 ? " float64" : " float32") +
                             " (trans_a=" + std::to_string(d.trans_a) + ", trans_b=" + std::to_string(d.trans_b) +
                             ", lda=" + std::to_string(d.lda) + ", ldb=" + std::to_string(d.ldb) + ", ldc=" +
                             std::to_string(d.ldc) + ", epilogue " + epilogue_name(d.epilogue) + ", workspace " +
                             std::to_string(s->workspace_bytes) + " bytes)");
  }
  s->post_bias = has_bias(d.epilogue) && !s->lt_bias;
  Gemm g;
  g.state_ = std::move(s);
  return g;
}

void Gemm::run(cudaStream_t stream, const void* A, const void* B, void* C, const void* bias) const {
  const State& s = *state_;
  const GemmDesc& d = s.d;
  if (s.nothing) return;
  const bool want_bias = has_bias(d.epilogue);
  if (want_bias && bias == nullptr) throw std::runtime_error("gemm: the bias epilogue needs a bias pointer");
  if (alignment_of(C) < s.align_c || (!s.k_zero && (alignment_of(A) < s.align_a || alignment_of(B) < s.align_b)) ||
      (want_bias && alignment_of(bias) < s.align_bias)) {
    throw std::runtime_error("gemm: a pointer is less aligned than the plan assumed (set GemmDesc's *_hint)");
  }
  if (!s.k_zero) {
    if (s.api == nullptr) throw std::runtime_error("gemm: run() of a dry-prepared plan");
    const CublasLtApi& api = *s.api;
    if (s.lt_bias) {
      lt_check(api, api.cublasLtMatmulDescSetAttribute(s.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)),
               "bias pointer");
    }
    const bool f64 = d.dtype == DType::F64;
    const void* alpha = f64 ? static_cast<const void*>(&s.alpha_d) : static_cast<const void*>(&s.alpha_f);
    const void* beta = f64 ? static_cast<const void*>(&s.beta_d) : static_cast<const void*>(&s.beta_f);
    lt_check(api,
             api.cublasLtMatmul(s.handle, s.op, alpha, B, s.la, A, s.lb, beta, C, s.lc, C, s.lc, &s.algo, s.workspace,
                                s.workspace_bytes, stream),
             "matmul");
  }
  const bool post = s.k_zero || s.post_bias || s.act != Act::None;
  if (!post) return;
  const int64_t total = d.batch * d.m * d.n;
  const void* post_bias = (s.k_zero || s.post_bias) && want_bias ? bias : nullptr;
  if (d.dtype == DType::F64) {
    epilogue_kernel<double><<<s.post_blocks, kThreads, 0, stream>>>(
        static_cast<double*>(C), d.m, d.n, d.ldc, d.stride_c, total, static_cast<const double*>(post_bias),
        static_cast<int>(s.act), s.k_zero, d.beta);
  } else {
    epilogue_kernel<float><<<s.post_blocks, kThreads, 0, stream>>>(
        static_cast<float*>(C), d.m, d.n, d.ldc, d.stride_c, total, static_cast<const float*>(post_bias),
        static_cast<int>(s.act), s.k_zero, static_cast<float>(d.beta));
  }
  GRAPHC_CUDA_LAUNCH_CHECK("gemm epilogue");
}

}  // namespace cuda
}  // namespace graphc
