// attention.cc — scaled dot-product attention (graphc/ops/attention.py has the semantics):
// scaled_dot_product_attention -> (out, lse) and scaled_dot_product_attention_grad -> (dq, dk, dv).
//
// The forward is FlashAttention's loop on the CPU's caches: a task is (batch item, block of
// kBlock query rows); it walks the keys in blocks of kBlock (the block transposed into the
// workspace, so each row's kBlock dot products vectorise over the block), keeps per row a running
// max, a running Σ exp(s - max) and an accumulator rescaled when the max grows, and writes
// out = acc / Σ and lse = max + log Σ at the end.  The (L, S) matrix is never stored: a task
// needs kBlock·(E + kBlock + 2·Ev + 4) values of workspace, whatever L and S are.
//
// The backward is FlashAttention-2's, in two passes that recompute P = exp(s - lse) block by
// block: pass A (tasks: query blocks) sums dq_i over the keys, pass B (tasks: key blocks) sums
// dk_j and dv_j over the query rows.  Each output is written by one task and summed in one order
// (keys or rows ascending), so there are no atomics and the bits do not depend on the thread
// count.  The price is computing s and dP twice.  For float32 without a mask (causal or none)
// and finite inputs, one task per batch item runs the whole backward as GEMMs instead
// (attn_grad_item_gemm), computing P once.
//
// Workspace: `slots` (<= kSlots) rows of per-task scratch, planned in the arena
// (graphc/ops/attention.py computes the same sizes).  Chunk c of min(tasks, slots) chunks runs
// tasks c, c + chunks, ... (interleaved: causal rows at the end cost more) with slot c.
//
// The loops are compiled for baseline x86-64, AVX2 and AVX-512 (attention_loops.h, included
// once per ISA below) and picked at plan load from active_isa(); -ffp-contract=off keeps the
// bits equal across the three.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "attention_checks.h"
#include "common.h"
#include "elementwise_ops.h"  // exp_value: float32 exp the compiler vectorises
#include "gemm.h"
#include "isa.h"
#include "isa_target.h"

#if defined(__x86_64__)
#include <immintrin.h>  // attention_loops.h's max loops (used only inside the AVX2/AVX-512 regions)
#endif

namespace graphc {
namespace cpu {
namespace {

// Query rows and keys per block (the tasks' grain and the workspace's unit) and workspace slots:
// graphc/ops/attention.py holds the same numbers (ATTN_BLOCK, ATTN_SLOTS); a plan whose workspace
// differs is refused below.
constexpr int64_t kBlock = 128;
constexpr int64_t kSlots = 8;

// Where one (batch item, query or key block) task reads.
template <class T> struct AttnTask {
  const T *q, *k, *v;          // (L, E), (S, E), (S, Ev) of this batch item
  const boolean* mask;         // the item's mask at (0, 0); nullptr: every key kept
  int64_t mask_row, mask_col;  // element strides of the mask along L and S (0: broadcast)
  int64_t L, S, E, Ev;
  bool causal;
  bool use_gemm;  // float32 blocks that keep every key run the products through gemm::sgemm
  T scale;
  float* gemm_scratch;  // sgemm's scratch for this task's slot (AttnGemmScratch)
};

template <class T> struct AttnGradIn {
  const T *out, *lse, *dout, *dlse;  // (L, Ev), (L,), (L, Ev), (L,) of this batch item
};

template <class T> inline bool attn_keep(const AttnTask<T>& t, int64_t i, int64_t j) {
  if (t.causal && j > i) return false;
  return t.mask == nullptr || t.mask[i * t.mask_row + j * t.mask_col] != 0;
}

#define ATTN_ISA 0
namespace isa_baseline {
#include "attention_loops.h"
}  // namespace isa_baseline
#undef ATTN_ISA

#if defined(__x86_64__)
GRAPHC_TARGET_AVX2_BEGIN
#define ATTN_ISA 1
namespace isa_avx2 {
#include "attention_loops.h"
}  // namespace isa_avx2
#undef ATTN_ISA
GRAPHC_TARGET_END
GRAPHC_TARGET_AVX512_BEGIN
#define ATTN_ISA 2
namespace isa_avx512 {
#include "attention_loops.h"
}  // namespace isa_avx512
#undef ATTN_ISA
GRAPHC_TARGET_END
#endif

template <class T> struct AttnLoops {
  void (*forward)(const AttnTask<T>&, int64_t, int64_t, T*, T*, T*);
  void (*grad_q)(const AttnTask<T>&, const AttnGradIn<T>&, int64_t, int64_t, T*, T*);
  void (*grad_kv)(const AttnTask<T>&, const AttnGradIn<T>&, int64_t, int64_t, T*, T*, T*);
  bool (*grad_item)(const AttnTask<T>&, const AttnGradIn<T>&, T*, T*, T*, T*);
};

template <class T> AttnLoops<T> attn_loops() {
#if defined(__x86_64__)
  switch (active_isa()) {
    case Isa::Avx512:
      return {&isa_avx512::attn_forward_task<T>, &isa_avx512::attn_grad_q_task<T>, &isa_avx512::attn_grad_kv_task<T>,
              &isa_avx512::attn_grad_item_gemm<T>};
    case Isa::Avx2:
      return {&isa_avx2::attn_forward_task<T>, &isa_avx2::attn_grad_q_task<T>, &isa_avx2::attn_grad_kv_task<T>,
              &isa_avx2::attn_grad_item_gemm<T>};
    default:
      break;
  }
#endif
  return {&isa_baseline::attn_forward_task<T>, &isa_baseline::attn_grad_q_task<T>,
          &isa_baseline::attn_grad_kv_task<T>, &isa_baseline::attn_grad_item_gemm<T>};
}

int64_t ceil_div(int64_t n, int64_t d) { return (n + d - 1) / d; }

// The workspace the op declares: (slots, per_task) with slots = min(tasks, kSlots), none for no task.
template <class T> T* attn_workspace(const KernelArgs& a, int64_t tasks, int64_t per_task) {
  const int64_t slots = std::min(tasks, kSlots);
  if (slots == 0) {
    if (!a.ws.empty()) a.fail("expects no workspace for an empty problem, got " + std::to_string(a.ws.size()));
    return nullptr;
  }
  if (a.ws.size() != 1) a.fail("expects 1 workspace, got " + std::to_string(a.ws.size()));
  expect_dtype(a, a.ws[0], a.in[0].dtype, "workspace 0");
  expect_dims(a, a.ws[0], {slots, per_task}, "workspace 0");
  return a.ws[0].as<T>();
}

int64_t mask_offset(const AttnGeom& g, int64_t b) {
  int64_t off = 0;
  for (size_t d = g.lead.size(); d-- > 0;) {
    off += (b % g.lead[d]) * g.mask_lead_stride[d];
    b /= g.lead[d];
  }
  return off;
}

template <class T>
AttnTask<T> make_task(const AttnGeom& g, const T* q, const T* k, const T* v, const boolean* mask, bool all_kept,
                      bool causal, T scale, bool use_gemm, int64_t b, float* gemm_scratch) {
  AttnTask<T> t;
  t.gemm_scratch = gemm_scratch;
  t.q = q + b * g.L * g.E;
  t.k = k + b * g.S * g.E;
  t.v = v + b * g.S * g.Ev;
  t.mask = all_kept ? nullptr : mask + mask_offset(g, b);
  t.mask_row = g.mask_row;
  t.mask_col = g.mask_col;
  t.L = g.L;
  t.S = g.S;
  t.E = g.E;
  t.Ev = g.Ev;
  t.causal = causal;
  t.scale = scale;
  t.use_gemm = use_gemm;
  return t;
}

// The scratch of the single-threaded sgemm calls of one task per workspace slot (gemm.h),
// allocated when the kernel is prepared so that a run allocates nothing: products of at most
// kBlock rows with N and K at most max(kBlock, E, Ev).  Empty for float64 (no sgemm).
template <class T> struct AttnGemmScratch {
  gemm::Scratch buf;
  int64_t per_slot = 0;
  AttnGemmScratch(const AttnGeom& g, int64_t tasks) {
    if (!std::is_same<T, float>::value || tasks == 0) return;
    const int64_t w = std::max({kBlock, g.E, g.Ev});
    per_slot = gemm::scratch_floats(kBlock, w, w, 1, false);
    buf = gemm::Scratch(std::min(tasks, kSlots) * per_slot);
  }
  float* at(int64_t slot) const { return buf.data() ? buf.data() + slot * per_slot : nullptr; }
};

// Runs f(task, slot) for task < tasks: chunk c of min(tasks, kSlots) chunks takes tasks c, c + chunks, ...
// Tasks are numbered block-major (task = block · batch + item), so with causal masking, where a
// block's cost grows with its index, every chunk gets a like mix of blocks.
template <class F> void for_tasks(int64_t tasks, int threads, F&& f) {
  const int64_t chunks = std::min(tasks, kSlots);
  parallel_for(chunks, threads, 1, [&](int64_t cb, int64_t ce) {
    for (int64_t c = cb; c < ce; ++c) {
      for (int64_t t = c; t < tasks; t += chunks) f(t, c);
    }
  });
}

template <class T> Kernel attention_kernel(const KernelArgs& args) {
  const AttnCheck chk = attention_check(args);
  const AttnGeom& g = chk.g;
  const bool causal = chk.causal;
  const int64_t qblocks = ceil_div(g.L, kBlock), tasks = g.batch * qblocks;
  T* ws = attn_workspace<T>(args, tasks, kBlock * (g.E + kBlock + 2 * g.Ev + 4));
  if (tasks == 0) return no_op_kernel();
  const T *pq = args.in[0].as<const T>(), *pk = args.in[1].as<const T>(), *pv = args.in[2].as<const T>();
  const boolean* pm = args.in[3].as<const boolean>();
  const bool scalar_mask = args.in[3].dims.empty();
  T *po = args.out[0].as<T>(), *pl = args.out[1].as<T>();
  const int64_t per = kBlock * (g.E + kBlock + 2 * g.Ev + 4);
  const T scale = static_cast<T>(chk.scale);
  const auto loops = attn_loops<T>();
  const int threads = args.ctx.threads;
  // only where sgemm has FMA micro-kernels (AVX2, AVX-512: the same bits); else the own loops
  const bool use_gemm = std::is_same<T, float>::value && gemm::available();
  const AttnGemmScratch<T> gs(g, tasks);
  return [=]() {
    const bool all_kept = scalar_mask && pm[0] != 0;  // read at run time: the mask may be fed
    for_tasks(tasks, threads, [&](int64_t task, int64_t slot) {
      const int64_t b = task % g.batch, i0 = (task / g.batch) * kBlock;
      const AttnTask<T> t = make_task(g, pq, pk, pv, pm, all_kept, causal, scale, use_gemm, b, gs.at(slot));
      loops.forward(t, i0, std::min(g.L, i0 + kBlock), po + b * g.L * g.Ev, pl + b * g.L, ws + slot * per);
    });
  };
}

template <class T> Kernel attention_grad_kernel(const KernelArgs& args) {
  const AttnCheck chk = attention_grad_check(args);
  const AttnGeom& g = chk.g;
  const bool causal = chk.causal;
  const int64_t qblocks = ceil_div(g.L, kBlock), kblocks = ceil_div(g.S, kBlock);
  const int64_t tasks_q = g.batch * qblocks, tasks_kv = g.batch * kblocks;
  const int64_t per = kBlock * (2 * kBlock + 2 * g.E + 2 * g.Ev + 4);  // attn_grad_item_gemm's bound
  T* ws = attn_workspace<T>(args, std::max(tasks_q, tasks_kv), per);
  T *pdq = args.out[0].as<T>(), *pdk = args.out[1].as<T>(), *pdv = args.out[2].as<T>();
  if (g.batch == 0) {
    // no query row: dk and dv are 0 (S rows of nothing to sum); dq is empty
    const int64_t nk = args.out[1].numel(), nv = args.out[2].numel();
    if (has_zero_dim(g.lead) || (nk == 0 && nv == 0)) return no_op_kernel();
    return [=]() {
      std::fill(pdk, pdk + nk, T(0));
      std::fill(pdv, pdv + nv, T(0));
    };
  }
  const T *pq = args.in[0].as<const T>(), *pk = args.in[1].as<const T>(), *pv = args.in[2].as<const T>();
  const boolean* pm = args.in[3].as<const boolean>();
  const bool scalar_mask = args.in[3].dims.empty();
  const T *pout = args.in[4].as<const T>(), *plse = args.in[5].as<const T>();
  const T *pdout = args.in[6].as<const T>(), *pdlse = args.in[7].as<const T>();
  const T scale = static_cast<T>(chk.scale);
  const auto loops = attn_loops<T>();
  const int threads = args.ctx.threads;
  const bool use_gemm = false;  // the per-row loops (P must match pass A and pass B)
  // float32 with sgemm's FMA kernels: one task per batch item, its whole backward as GEMMs
  // (attn_grad_item_gemm) when every key is kept or the mask is causal and its inputs are finite,
  // else that item's per-row loops.  Each output row is written by one task either way.
  const bool item_gemm = std::is_same<T, float>::value && gemm::available() && scalar_mask;
  const int64_t qtasks_per_item = qblocks, ktasks_per_item = kblocks;
  const AttnGemmScratch<T> gs(g, std::max(tasks_q, tasks_kv));
  return [=]() {
    const bool all_kept = scalar_mask && pm[0] != 0;
    if (item_gemm && all_kept) {
      for_tasks(g.batch, threads, [&](int64_t b, int64_t slot) {
        const AttnTask<T> t = make_task(g, pq, pk, pv, pm, all_kept, causal, scale, use_gemm, b, gs.at(slot));
        const AttnGradIn<T> gi{pout + b * g.L * g.Ev, plse + b * g.L, pdout + b * g.L * g.Ev, pdlse + b * g.L};
        T *dq = pdq + b * g.L * g.E, *dk = pdk + b * g.S * g.E, *dv = pdv + b * g.S * g.Ev, *w = ws + slot * per;
        if (loops.grad_item(t, gi, dq, dk, dv, w)) return;
        for (int64_t blk = 0; blk < qtasks_per_item; ++blk) {
          loops.grad_q(t, gi, blk * kBlock, std::min(g.L, (blk + 1) * kBlock), dq, w);
        }
        for (int64_t blk = 0; blk < ktasks_per_item; ++blk) {
          loops.grad_kv(t, gi, blk * kBlock, std::min(g.S, (blk + 1) * kBlock), dk, dv, w);
        }
      });
      return;
    }
    for_tasks(tasks_q, threads, [&](int64_t task, int64_t slot) {
      const int64_t b = task % g.batch, i0 = (task / g.batch) * kBlock;
      const AttnTask<T> t = make_task(g, pq, pk, pv, pm, all_kept, causal, scale, use_gemm, b, gs.at(slot));
      const AttnGradIn<T> gi{pout + b * g.L * g.Ev, plse + b * g.L, pdout + b * g.L * g.Ev, pdlse + b * g.L};
      loops.grad_q(t, gi, i0, std::min(g.L, i0 + kBlock), pdq + b * g.L * g.E, ws + slot * per);
    });
    for_tasks(tasks_kv, threads, [&](int64_t task, int64_t slot) {
      const int64_t b = task % g.batch, j0 = (task / g.batch) * kBlock;
      const AttnTask<T> t = make_task(g, pq, pk, pv, pm, all_kept, causal, scale, use_gemm, b, gs.at(slot));
      const AttnGradIn<T> gi{pout + b * g.L * g.Ev, plse + b * g.L, pdout + b * g.L * g.Ev, pdlse + b * g.L};
      loops.grad_kv(t, gi, j0, std::min(g.S, j0 + kBlock), pdk + b * g.S * g.E, pdv + b * g.S * g.Ev,
                    ws + slot * per);
    });
  };
}

}  // namespace
}  // namespace cpu

void register_attention_kernels(KernelRegistry& r) {
  using namespace cpu;
  add_typed<FloatTypes>(r, "scaled_dot_product_attention", [](auto tag, const KernelArgs& a) {
    return attention_kernel<typename decltype(tag)::type>(a);
  });
  add_typed<FloatTypes>(r, "scaled_dot_product_attention_grad", [](auto tag, const KernelArgs& a) {
    return attention_grad_kernel<typename decltype(tag)::type>(a);
  });
}

}  // namespace graphc
