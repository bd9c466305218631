// attention.cu — the CUDA twin of runtime/cpu/attention.cc: scaled_dot_product_attention ->
// (out, lse) and scaled_dot_product_attention_grad -> (dq, dk, dv), with the CPU's semantics
// (graphc/ops/attention.py, docs/attention.md): a masked key is SKIPPED (its score or value
// never enters a sum, even NaN or inf), a fully masked row gives out = 0, lse = -inf and zero
// gradients, a kept row whose scores are all -inf gives NaN; causal keeps j <= i.
//
// Products: the raw scores q·kᵀ (and the backward's dout·vᵀ) are cuBLASLt GEMMs (blas.cuh) into
// a planned workspace, a chunk of batch items at a time (plan_scores); that is safe with masks
// because every score is computed and the kernels only read the kept ones.  P·V and the
// backward's dS·k, dSᵀ·q, Pᵀ·dout are NOT GEMMs: they would multiply a masked entry's 0 by its
// key's value, so an inf or NaN in a masked key or row would leak into the sums (the CPU
// restricts its GEMM path to finite inputs for this reason).  The kernels walk the keys and
// skip the masked ones, FlashAttention-style (online softmax over the kept keys), in a fixed
// order: every output element is one chain of operations whatever the launch, so two runs give
// the same bits (no atomics).  Without a large enough workspace (a plan compiled for the CPU,
// or L·S past graphc/ops/attention.py's ATTN_CUDA_SCORES) the kernels compute each dot product
// themselves.
//
// Launch shape, every kernel: blocks of kWarps warps, ONE WARP PER OUTPUT ROW (a query row for
// the forward and dq, a key row for dk/dv); gridDim.y splits the row's output columns into
// groups of kGroup (each lane owns columns c0 + lane + 32·t, t < NC, in registers).  A group
// recomputes the row's scores: only rows wider than kGroup pay that.  Within a warp the
// lanes take 32 keys (or query rows) at a time: each lane computes one dot product, the warp
// combines max / sum with shuffles, then the kept keys of the 32 are accumulated in ascending
// order, each lane on its own columns.  Reads of q/k/v rows go through L1/L2 (no shared-memory
// tiling yet: correct first; a tiled flash kernel with tensor-core P·V is the next step).
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "../cpu/attention_checks.h"
#include "blas.cuh"
#include "common.cuh"

namespace graphc {
namespace cuda {
namespace {

using cpu::expect_dims;
using cpu::expect_dtype;
using cpu::has_zero_dim;

constexpr int kWarps = 4;     // warps (rows) per block
constexpr int kGroup = 256;   // output columns per warp: NC = 8 registers per lane at most
constexpr unsigned kFull = 0xffffffffu;

// ---- host: shapes and checks: cpu/attention_checks.h (attn_geom, attention_check) ----------

using cpu::AttnCheck;
using cpu::AttnGeom;

// The mask's element offset of batch item b at (0, 0), on the device: the lead dims with a
// non-zero mask stride (broadcast dims dropped), at most kMaxDims of them.
struct MaskMap {
  int rank = 0;
  int64_t dims[kMaxDims] = {};     // the lead dims' sizes (innermost last) ...
  int64_t strides[kMaxDims] = {};  // ... and the mask's strides along them
  int64_t row = 0, col = 0;        // strides along L and S (0: broadcast)
  int64_t inner = 1;               // product of the lead dims after the last kept one
  GRAPHC_HD int64_t offset(int64_t b) const {
    int64_t off = 0;
    b /= inner;
    for (int d = rank - 1; d >= 0; --d) {
      off += (b % dims[d]) * strides[d];
      b /= dims[d];
    }
    return off;
  }
};

MaskMap mask_map(const KernelArgs& a, const AttnGeom& g) {
  MaskMap mm;
  mm.row = g.mask_row;
  mm.col = g.mask_col;
  // Keep the lead dims up to the last one with a stride; the ones after only divide b.
  int last = -1;
  for (size_t d = 0; d < g.lead.size(); ++d) {
    if (g.mask_lead_stride[d] != 0) last = static_cast<int>(d);
  }
  for (size_t d = static_cast<size_t>(last + 1); d < g.lead.size(); ++d) mm.inner *= std::max<int64_t>(g.lead[d], 1);
  // Merge consecutive broadcast (stride 0) dims into one, so that only a few remain.
  std::vector<int64_t> dims, strides;
  for (int d = 0; d <= last; ++d) {
    const int64_t s = g.mask_lead_stride[static_cast<size_t>(d)], n = g.lead[static_cast<size_t>(d)];
    if (!dims.empty() && s == 0 && strides.back() == 0) {
      dims.back() *= n;
      continue;
    }
    dims.push_back(n);
    strides.push_back(s);
  }
  if (dims.size() > static_cast<size_t>(kMaxDims)) {
    a.fail("the mask's batch dims do not fit the CUDA kernel (" + std::to_string(dims.size()) + " > " +
           std::to_string(kMaxDims) + " after merging)");
  }
  mm.rank = static_cast<int>(dims.size());
  for (int d = 0; d < mm.rank; ++d) {
    mm.dims[d] = dims[static_cast<size_t>(d)];
    mm.strides[d] = strides[static_cast<size_t>(d)];
  }
  return mm;
}

template <class T> struct AttnParams {
  const T *q = nullptr, *k = nullptr, *v = nullptr;  // (batch, L, E), (batch, S, E), (batch, S, Ev)
  const boolean* mask = nullptr;
  MaskMap mm;
  int64_t batch = 0, L = 0, S = 0, E = 0, Ev = 0;
  bool causal = false;
  T scale = T(1);
  // The chunk of batch items [b0, b1) this launch covers, and its raw scores q·kᵀ (and for the
  // backward dout·vᵀ) as (b1 - b0, L, S) row-major matrices made by cuBLASLt, or nullptr: the
  // kernel computes each dot product itself.
  int64_t b0 = 0, b1 = 0;
  const T* sc = nullptr;
  const T* dp = nullptr;
};

template <class T> struct AttnGradParams {
  const T *out = nullptr, *lse = nullptr, *dout = nullptr, *dlse = nullptr;  // (batch, L, Ev), (batch, L), ...
  const T* D = nullptr;  // (batch, L): rowsum(dout ∘ out) - dlse, or nullptr: computed inline
};

// Blocks for `rows` warps (kWarps per block) and column groups for `cols` columns.
dim3 grid_for(const KernelArgs& a, int64_t rows, int64_t cols) {
  const int64_t bx = (rows + kWarps - 1) / kWarps;
  const int64_t by = std::max<int64_t>(1, (cols + kGroup - 1) / kGroup);
  if (bx > INT32_MAX) a.fail("too many rows for one launch: " + std::to_string(rows));
  if (by > 65535) a.fail("rows too wide for one launch: " + std::to_string(cols) + " columns");
  return dim3(static_cast<unsigned>(std::max<int64_t>(bx, 1)), static_cast<unsigned>(by), 1);
}

// Registers per lane for a group of min(cols, kGroup) columns.
int lanes_cols(int64_t cols) {
  const int64_t w = std::min<int64_t>(cols, kGroup);
  return w <= 32 ? 1 : w <= 64 ? 2 : w <= 128 ? 4 : 8;
}

// ---- device ------------------------------------------------------------------------------------

#if defined(__CUDACC__)
__device__ inline float dexp(float x) { return expf(x); }
__device__ inline double dexp(double x) { return exp(x); }
__device__ inline float dlog(float x) { return logf(x); }
__device__ inline double dlog(double x) { return log(x); }

template <class T> __device__ inline T dot(const T* __restrict__ a, const T* __restrict__ b, int64_t n) {
  T d = T(0);
  for (int64_t e = 0; e < n; ++e) d += a[e] * b[e];
  return d;
}

template <class T> __device__ inline bool attn_keep(const AttnParams<T>& p, int64_t moff, int64_t i, int64_t j) {
  if (p.causal && j > i) return false;
  return p.mask[moff + i * p.mm.row + j * p.mm.col] != 0;
}

// D_i = rowsum(dout_i ∘ out_i) - dlse_i, sequentially over the columns (the CPU's order).
template <class T> __device__ inline T attn_delta(const AttnGradParams<T>& g, int64_t row, int64_t Ev) {
  return dot(g.dout + row * Ev, g.out + row * Ev, Ev) - g.dlse[row];
}

// Forward: one warp per query row (b, i), column group blockIdx.y of out's Ev columns.
// Online softmax over the kept keys, 32 keys per step (one per lane); lse written by group 0.
template <class T, int NC>
__global__ void __launch_bounds__(kWarps * 32) attn_forward_kernel(AttnParams<T> p, T* __restrict__ out,
                                                                   T* __restrict__ lse) {
  const int lane = static_cast<int>(threadIdx.x & 31);
  const int64_t row = p.b0 * p.L + static_cast<int64_t>(blockIdx.x) * kWarps + (threadIdx.x >> 5);
  if (row >= p.b1 * p.L) return;  // warp-uniform
  const int64_t b = row / p.L, i = row - b * p.L;
  const int64_t c0 = static_cast<int64_t>(blockIdx.y) * kGroup, cend = min(p.Ev, c0 + kGroup);
  const T* sc = p.sc != nullptr ? p.sc + (row - p.b0 * p.L) * p.S : nullptr;
  const T* q = p.q + row * p.E;
  const T* k = p.k + b * p.S * p.E;
  const T* v = p.v + b * p.S * p.Ev;
  const int64_t moff = p.mm.offset(b);
  const T ninf = -std::numeric_limits<T>::infinity();
  T m = ninf, l = T(0), acc[NC];
  bool any = false;
#pragma unroll
  for (int c = 0; c < NC; ++c) acc[c] = T(0);
  const int64_t jend = p.causal ? min(p.S, i + 1) : p.S;
  for (int64_t j0 = 0; j0 < jend; j0 += 32) {
    const int64_t j = j0 + lane;
    const bool kept = j < jend && attn_keep(p, moff, i, j);
    const unsigned kmask = __ballot_sync(kFull, kept);
    if (kmask == 0) continue;
    const T s = kept ? (sc != nullptr ? sc[j] : dot(q, k + j * p.E, p.E)) * p.scale : T(0);
    // the max over the kept scores; a NaN score is not the max (its exp makes the row NaN)
    T bm = (kept && s > ninf) ? s : ninf;
    for (int o = 16; o > 0; o >>= 1) {
      const T w = __shfl_xor_sync(kFull, bm, o);
      bm = w > bm ? w : bm;
    }
    const T m_new = m > bm ? m : bm;
    const T off = m_new == ninf ? T(0) : m_new;         // every kept score so far -inf: exp(-inf) = 0
    const T alpha = m == ninf ? T(0) : dexp(m - off);  // nothing accumulated yet: 0 (NaN stays NaN)
    m = m_new;
    any = true;
    const T e = kept ? dexp(s - off) : T(0);
    l = l * alpha + warp_sum(e);
#pragma unroll
    for (int c = 0; c < NC; ++c) acc[c] *= alpha;
    for (unsigned bits = kmask; bits != 0; bits &= bits - 1) {
      const int jj = __ffs(static_cast<int>(bits)) - 1;
      const T pj = __shfl_sync(kFull, e, jj);
      const T* vr = v + (j0 + jj) * p.Ev;
#pragma unroll
      for (int c = 0; c < NC; ++c) {
        const int64_t col = c0 + lane + 32 * c;
        if (col < cend) acc[c] += pj * vr[col];
      }
    }
  }
  T* o = out + row * p.Ev;
#pragma unroll
  for (int c = 0; c < NC; ++c) {
    const int64_t col = c0 + lane + 32 * c;
    if (col < cend) o[col] = any ? acc[c] / l : T(0);  // a fully masked row: a defined 0 (torch: NaN)
  }
  if (blockIdx.y == 0 && lane == 0) {
    // l = 0: every kept score is -inf, no softmax (out is 0/0 = NaN above, as the reference)
    lse[row] = !any ? ninf : (l == T(0) ? std::numeric_limits<T>::quiet_NaN() : m + dlog(l));
  }
}

// D for every row (one thread per row): the backward's per-row constant.
template <class T> __global__ void attn_delta_kernel(AttnGradParams<T> g, int64_t rows, int64_t Ev, T* __restrict__ D) {
  GRAPHC_GRID_STRIDE(row, rows) { D[row] = attn_delta(g, row, Ev); }
}

// Pass A, dq: one warp per query row (b, i), column group blockIdx.y of dq's E columns.
// dq_i = scale · Σ_j dS_ij k_j over the kept keys j ascending, dS_ij = P_ij (dP_ij - D_i).
template <class T, int NC>
__global__ void __launch_bounds__(kWarps * 32) attn_grad_q_kernel(AttnParams<T> p, AttnGradParams<T> g,
                                                                  T* __restrict__ dq) {
  const int lane = static_cast<int>(threadIdx.x & 31);
  const int64_t row = p.b0 * p.L + static_cast<int64_t>(blockIdx.x) * kWarps + (threadIdx.x >> 5);
  if (row >= p.b1 * p.L) return;
  const int64_t b = row / p.L, i = row - b * p.L;
  const int64_t c0 = static_cast<int64_t>(blockIdx.y) * kGroup, cend = min(p.E, c0 + kGroup);
  const int64_t srow = (row - p.b0 * p.L) * p.S;  // this row's scores in p.sc / p.dp
  const T* q = p.q + row * p.E;
  const T* k = p.k + b * p.S * p.E;
  const T* v = p.v + b * p.S * p.Ev;
  const T* dout = g.dout + row * p.Ev;
  const int64_t moff = p.mm.offset(b);
  const T li = g.lse[row];
  const T di = g.D != nullptr ? g.D[row] : attn_delta(g, row, p.Ev);
  T acc[NC];
#pragma unroll
  for (int c = 0; c < NC; ++c) acc[c] = T(0);
  const int64_t jend = p.causal ? min(p.S, i + 1) : p.S;
  for (int64_t j0 = 0; j0 < jend; j0 += 32) {
    const int64_t j = j0 + lane;
    const bool kept = j < jend && attn_keep(p, moff, i, j);
    const unsigned kmask = __ballot_sync(kFull, kept);
    if (kmask == 0) continue;
    T ds = T(0);
    if (kept) {
      const T sj = p.sc != nullptr ? p.sc[srow + j] : dot(q, k + j * p.E, p.E);
      const T dpj = p.dp != nullptr ? p.dp[srow + j] : dot(dout, v + j * p.Ev, p.Ev);
      const T pr = dexp(sj * p.scale - li);
      ds = pr * (dpj - di);
    }
    for (unsigned bits = kmask; bits != 0; bits &= bits - 1) {
      const int jj = __ffs(static_cast<int>(bits)) - 1;
      const T dsj = __shfl_sync(kFull, ds, jj);
      const T* kr = k + (j0 + jj) * p.E;
#pragma unroll
      for (int c = 0; c < NC; ++c) {
        const int64_t col = c0 + lane + 32 * c;
        if (col < cend) acc[c] += dsj * kr[col];
      }
    }
  }
#pragma unroll
  for (int c = 0; c < NC; ++c) {
    const int64_t col = c0 + lane + 32 * c;
    if (col < cend) dq[row * p.E + col] = acc[c] * p.scale;
  }
}

// Pass B, dk and dv: one warp per key row (b, j), column group blockIdx.y of max(E, Ev) columns.
// dk_j = scale · Σ_i dS_ij q_i, dv_j = Σ_i P_ij dout_i over the query rows that keep key j,
// i ascending, 32 rows per step (one per lane).
template <class T, int NC>
__global__ void __launch_bounds__(kWarps * 32) attn_grad_kv_kernel(AttnParams<T> p, AttnGradParams<T> g,
                                                                   T* __restrict__ dk, T* __restrict__ dv) {
  const int lane = static_cast<int>(threadIdx.x & 31);
  const int64_t krow = p.b0 * p.S + static_cast<int64_t>(blockIdx.x) * kWarps + (threadIdx.x >> 5);
  if (krow >= p.b1 * p.S) return;
  const int64_t b = krow / p.S, j = krow - b * p.S;
  const int64_t c0 = static_cast<int64_t>(blockIdx.y) * kGroup;
  const int64_t cend_k = min(p.E, c0 + kGroup), cend_v = min(p.Ev, c0 + kGroup);
  const T* kj = p.k + krow * p.E;
  const T* vj = p.v + krow * p.Ev;
  const T* q = p.q + b * p.L * p.E;
  const T* dout = g.dout + b * p.L * p.Ev;
  const int64_t moff = p.mm.offset(b);
  T acc_k[NC], acc_v[NC];
#pragma unroll
  for (int c = 0; c < NC; ++c) acc_k[c] = acc_v[c] = T(0);
  const int64_t ibeg = p.causal ? j : 0;  // causal: rows i < j do not keep key j
  for (int64_t i0 = ibeg; i0 < p.L; i0 += 32) {
    const int64_t i = i0 + lane;
    const bool kept = i < p.L && attn_keep(p, moff, i, j);
    const unsigned kmask = __ballot_sync(kFull, kept);
    if (kmask == 0) continue;
    T pr = T(0), ds = T(0);
    if (kept) {
      const int64_t row = b * p.L + i;
      const T di = g.D != nullptr ? g.D[row] : attn_delta(g, row, p.Ev);
      const int64_t sidx = ((b - p.b0) * p.L + i) * p.S + j;  // (i, j) in p.sc / p.dp
      const T sij = p.sc != nullptr ? p.sc[sidx] : dot(kj, q + i * p.E, p.E);
      const T dpij = p.dp != nullptr ? p.dp[sidx] : dot(vj, dout + i * p.Ev, p.Ev);
      pr = dexp(sij * p.scale - g.lse[row]);
      ds = pr * (dpij - di);
    }
    for (unsigned bits = kmask; bits != 0; bits &= bits - 1) {
      const int ii = __ffs(static_cast<int>(bits)) - 1;
      const T pi = __shfl_sync(kFull, pr, ii);
      const T dsi = __shfl_sync(kFull, ds, ii);
      const T* qr = q + (i0 + ii) * p.E;
      const T* dr = dout + (i0 + ii) * p.Ev;
#pragma unroll
      for (int c = 0; c < NC; ++c) {
        const int64_t col = c0 + lane + 32 * c;
        if (col < cend_v) acc_v[c] += pi * dr[col];
        if (col < cend_k) acc_k[c] += dsi * qr[col];
      }
    }
  }
#pragma unroll
  for (int c = 0; c < NC; ++c) {
    const int64_t col = c0 + lane + 32 * c;
    if (col < cend_k) dk[krow * p.E + col] = acc_k[c] * p.scale;
    if (col < cend_v) dv[krow * p.Ev + col] = acc_v[c];
  }
}
#endif

// Launches kernel<T, NC> with NC from the column count.
#define GRAPHC_ATTN_LAUNCH(KERNEL, NC_COLS, GRID, STREAM, ...)                                 \
  do {                                                                                         \
    switch (lanes_cols(NC_COLS)) {                                                             \
      case 1: KERNEL<T, 1><<<(GRID), kWarps * 32, 0, (STREAM)>>>(__VA_ARGS__); break;          \
      case 2: KERNEL<T, 2><<<(GRID), kWarps * 32, 0, (STREAM)>>>(__VA_ARGS__); break;          \
      case 4: KERNEL<T, 4><<<(GRID), kWarps * 32, 0, (STREAM)>>>(__VA_ARGS__); break;          \
      default: KERNEL<T, 8><<<(GRID), kWarps * 32, 0, (STREAM)>>>(__VA_ARGS__); break;         \
    }                                                                                          \
  } while (0)

template <class T> AttnParams<T> params_of(const KernelArgs& args, const AttnGeom& g, bool causal, double scale) {
  AttnParams<T> p;
  p.q = args.in[0].as<const T>();
  p.k = args.in[1].as<const T>();
  p.v = args.in[2].as<const T>();
  p.mask = args.in[3].as<const boolean>();
  p.mm = mask_map(args, g);
  p.batch = g.batch;
  p.L = g.L;
  p.S = g.S;
  p.E = g.E;
  p.Ev = g.Ev;
  p.causal = causal;
  p.scale = static_cast<T>(scale);
  p.b0 = 0;
  p.b1 = g.batch;
  return p;
}

// The raw score products of a chunk of batch items on cuBLASLt (blas.cuh), into the planned
// workspace (graphc/ops/attention.py: ATTN_CUDA_SCORES elements at most): per item an (L, S)
// matrix q·kᵀ, and for the backward dout·vᵀ after it.  Safe with masks: every score is
// computed, and the kernels read only the kept ones (unlike P·V, no masked entry is ever
// multiplied into a sum).  Chunks of `chunk` items run one after the other on the stream (the
// next chunk's products wait for the previous chunk's kernels).  chunk 0: no workspace large
// enough, the kernels compute the dot products themselves.
struct ScorePlan {
  int64_t chunk = 0, batch = 0;
  int products = 0;                // 1: q·kᵀ; 2: and dout·vᵀ
  Gemm full[2], last[2];           // a whole chunk, the last (partial) chunk
  dim3 grid_full[2], grid_last[2]; // the kernels' grids for them (per pass)
  void* sc = nullptr;              // chunk·L·S scores, then (products 2) chunk·L·S dP
  void* dp = nullptr;
};

// The less aligned of p and p + step·size (the starts of every chunk are multiples of step).
const void* chunk_hint(const void* p, int64_t step, size_t size, bool several) {
  if (!several || p == nullptr) return p;
  const char* q = static_cast<const char*>(p) + step * static_cast<int64_t>(size);
  auto al = [](const void* x) {
    const uintptr_t v = reinterpret_cast<uintptr_t>(x) & uintptr_t(255);
    return v == 0 ? uintptr_t(256) : (v & (~v + 1));
  };
  return al(q) < al(p) ? static_cast<const void*>(q) : p;
}

// ws_index: the workspace holding the scores; products: 1 (forward) or 2 (backward);
// cols[pass]: each pass's output columns (for its grid); rows_per_item[pass]: L or S.
template <class T>
ScorePlan plan_scores(const KernelArgs& args, const AttnGeom& g, size_t ws_index, int products, const int64_t* cols,
                      const int64_t* rows_per_item, int passes) {
  ScorePlan sp;
  sp.batch = g.batch;
  sp.products = products;
  const int64_t need = static_cast<int64_t>(products) * g.L * g.S;  // per batch item
  if (g.batch > 0 && need > 0 && args.ws.size() > ws_index && args.ws[ws_index].dtype == args.in[0].dtype) {
    sp.chunk = std::min(g.batch, args.ws[ws_index].numel() / need);
  }
  const int64_t step = sp.chunk > 0 ? sp.chunk : g.batch;
  const int64_t rest = g.batch % step;
  for (int ps = 0; ps < passes; ++ps) {
    sp.grid_full[ps] = grid_for(args, step * rows_per_item[ps], cols[ps]);
    sp.grid_last[ps] = grid_for(args, (rest > 0 ? rest : step) * rows_per_item[ps], cols[ps]);
  }
  if (sp.chunk == 0) return sp;
  T* ws = args.ws[ws_index].as<T>();
  sp.sc = ws;
  sp.dp = products == 2 ? ws + sp.chunk * g.L * g.S : nullptr;
  const bool several = g.batch > sp.chunk;
  for (int pr = 0; pr < products; ++pr) {
    // pr 0: q (L, E) · k (S, E)ᵀ; pr 1: dout (L, Ev) · v (S, Ev)ᵀ
    const int64_t width = pr == 0 ? g.E : g.Ev;
    const TensorRef& A = pr == 0 ? args.in[0] : args.in[6];
    const TensorRef& B = pr == 0 ? args.in[1] : args.in[2];
    GemmDesc d;
    d.dtype = args.in[0].dtype;
    d.trans_b = true;
    d.m = g.L;
    d.n = g.S;
    d.k = width;
    d.lda = std::max<int64_t>(width, 1);
    d.ldb = std::max<int64_t>(width, 1);
    d.ldc = g.S;
    d.stride_a = g.L * width;
    d.stride_b = g.S * width;
    d.stride_c = g.L * g.S;
    d.a_hint = chunk_hint(A.data, sp.chunk * g.L * width, sizeof(T), several);
    d.b_hint = chunk_hint(B.data, sp.chunk * g.S * width, sizeof(T), several);
    d.c_hint = pr == 0 ? sp.sc : sp.dp;
    d.batch = sp.chunk;
    sp.full[pr] = Gemm::plan(args, d, nullptr, 0);
    if (rest > 0) {
      d.batch = rest;
      sp.last[pr] = Gemm::plan(args, d, nullptr, 0);
    }
  }
  return sp;
}

template <class T> Kernel attention_kernel(const KernelArgs& args) {
  const AttnCheck chk = cpu::attention_check(args);
  const AttnGeom& g = chk.g;
  const bool causal = chk.causal;
  const AttnParams<T> p = params_of<T>(args, g, causal, chk.scale);
  if (g.batch == 0) return no_op_kernel();
  const int64_t cols[1] = {g.Ev}, rows_per[1] = {g.L};
  const ScorePlan sp = plan_scores<T>(args, g, 0, 1, cols, rows_per, 1);
  if (dry(args)) return no_op_kernel();
  T* out = args.out[0].as<T>();
  T* lse = args.out[1].as<T>();
  cudaStream_t stream = stream_of(args);
  return [=] {
    const int64_t step = sp.chunk > 0 ? sp.chunk : sp.batch;
    for (int64_t b0 = 0; b0 < sp.batch; b0 += step) {
      const int64_t b1 = std::min(sp.batch, b0 + step);
      const bool whole = b1 - b0 == step;
      AttnParams<T> pc = p;
      pc.b0 = b0;
      pc.b1 = b1;
      if (sp.chunk > 0) {
        (whole ? sp.full[0] : sp.last[0]).run(stream, p.q + b0 * p.L * p.E, p.k + b0 * p.S * p.E, sp.sc);
        pc.sc = static_cast<const T*>(sp.sc);
      }
      const dim3 grid = whole ? sp.grid_full[0] : sp.grid_last[0];
      GRAPHC_ATTN_LAUNCH(attn_forward_kernel, p.Ev, grid, stream, pc, out, lse);
      GRAPHC_CUDA_LAUNCH_CHECK("scaled_dot_product_attention");
    }
  };
}

template <class T> Kernel attention_grad_kernel(const KernelArgs& args) {
  const AttnCheck chk = cpu::attention_grad_check(args);
  const AttnGeom& g = chk.g;
  const bool causal = chk.causal;
  const DType dt = args.in[0].dtype;
  const AttnParams<T> p = params_of<T>(args, g, causal, chk.scale);
  T *pdq = args.out[0].as<T>(), *pdk = args.out[1].as<T>(), *pdv = args.out[2].as<T>();
  if (g.batch == 0) {
    // no query row: dk and dv are 0 (S rows of nothing to sum); dq is empty
    const int64_t nk = args.out[1].numel(), nv = args.out[2].numel();
    if (has_zero_dim(g.lead) || (nk == 0 && nv == 0) || dry(args)) return no_op_kernel();
    cudaStream_t stream = stream_of(args);
    return [=] {
      if (nk > 0) GRAPHC_CUDA_CHECK(cudaMemsetAsync(pdk, 0, static_cast<size_t>(nk) * sizeof(T), stream));
      if (nv > 0) GRAPHC_CUDA_CHECK(cudaMemsetAsync(pdv, 0, static_cast<size_t>(nv) * sizeof(T), stream));
    };
  }
  const int64_t rows = g.batch * g.L;
  // Workspace 0: D (graphc/ops/attention.py, target "cuda").  A plan made for the CPU carries the
  // CPU kernel's scratch there (same dtype): used when it is large enough, else D is recomputed
  // where it is needed.  Workspace 1: the score products (plan_scores).
  T* D = nullptr;
  if (!args.ws.empty() && args.ws[0].dtype == dt && args.ws[0].numel() >= rows) D = args.ws[0].as<T>();
  const int64_t cols[2] = {g.E, std::max(g.E, g.Ev)}, rows_per[2] = {g.L, g.S};
  const ScorePlan sp = plan_scores<T>(args, g, 1, 2, cols, rows_per, 2);
  if (dry(args)) return no_op_kernel();
  AttnGradParams<T> gp;
  gp.out = args.in[4].as<const T>();
  gp.lse = args.in[5].as<const T>();
  gp.dout = args.in[6].as<const T>();
  gp.dlse = args.in[7].as<const T>();
  gp.D = D;
  cudaStream_t stream = stream_of(args);
  const unsigned dblocks = blocks_for(rows);
  return [=] {
    if (D != nullptr) {
      AttnGradParams<T> g0 = gp;
      g0.D = nullptr;
      attn_delta_kernel<T><<<dblocks, kThreads, 0, stream>>>(g0, rows, p.Ev, D);
      GRAPHC_CUDA_LAUNCH_CHECK("scaled_dot_product_attention_grad (D)");
    }
    const int64_t step = sp.chunk > 0 ? sp.chunk : sp.batch;
    for (int64_t b0 = 0; b0 < sp.batch; b0 += step) {
      const int64_t b1 = std::min(sp.batch, b0 + step);
      const bool whole = b1 - b0 == step;
      AttnParams<T> pc = p;
      pc.b0 = b0;
      pc.b1 = b1;
      if (sp.chunk > 0) {
        (whole ? sp.full[0] : sp.last[0]).run(stream, p.q + b0 * p.L * p.E, p.k + b0 * p.S * p.E, sp.sc);
        (whole ? sp.full[1] : sp.last[1]).run(stream, gp.dout + b0 * p.L * p.Ev, p.v + b0 * p.S * p.Ev, sp.dp);
        pc.sc = static_cast<const T*>(sp.sc);
        pc.dp = static_cast<const T*>(sp.dp);
      }
      if (p.E > 0) {
        GRAPHC_ATTN_LAUNCH(attn_grad_q_kernel, p.E, whole ? sp.grid_full[0] : sp.grid_last[0], stream, pc, gp, pdq);
        GRAPHC_CUDA_LAUNCH_CHECK("scaled_dot_product_attention_grad (dq)");
      }
      if (p.S > 0 && std::max(p.E, p.Ev) > 0) {
        GRAPHC_ATTN_LAUNCH(attn_grad_kv_kernel, std::max(p.E, p.Ev), whole ? sp.grid_full[1] : sp.grid_last[1],
                           stream, pc, gp, pdk, pdv);
        GRAPHC_CUDA_LAUNCH_CHECK("scaled_dot_product_attention_grad (dk, dv)");
      }
    }
  };
}

}  // namespace

void register_attention_kernels(KernelRegistry& r) {
  add_typed<FloatTypes>(r, "scaled_dot_product_attention", [](auto tag, const KernelArgs& a) {
    return attention_kernel<typename decltype(tag)::type>(a);
  });
  add_typed<FloatTypes>(r, "scaled_dot_product_attention_grad", [](auto tag, const KernelArgs& a) {
    return attention_grad_kernel<typename decltype(tag)::type>(a);
  });
}

}  // namespace cuda
}  // namespace graphc
