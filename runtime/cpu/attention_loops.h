// attention_loops.h — the per-task loops of attention.cc, included once per instruction set
// inside namespace isa_baseline / isa_avx2 / isa_avx512 (attention.cc wraps each inclusion in a
// target pragma, as elementwise_isa_*.cc do).  No include guard on purpose; it includes nothing
// (attention.cc includes every header first, outside the target regions, and defines kBlock,
// AttnTask, AttnGradIn and attn_keep before it).  No lambdas: clang's
// target attribute does not reach a lambda's call operator.
//
// Every sum runs in one fixed order that depends on the shapes only (the block size is a
// constant, never the thread count), and setup.py builds with -ffp-contract=off, so each ISA's
// loops and each thread count give the same bits.  A masked key is skipped (never multiplied by
// 0), so a NaN or inf in its score or value adds nothing.

// kt[e * kBlock + jj] = src[(j0 + jj) * width + e] for jj < n: a block of rows transposed, so that
// the dot products of one row against the block vectorise over the block.
template <class T> void attn_pack(const T* __restrict src, int64_t width, int64_t j0, int64_t n, T* __restrict kt) {
  for (int64_t jj = 0; jj < n; ++jj) {
    const T* row = src + (j0 + jj) * width;
    for (int64_t e = 0; e < width; ++e) kt[e * kBlock + jj] = row[e];
  }
}

// s[jj] = Σ_e x[e] · kt[e * kBlock + jj] (e ascending) for jj < n
template <class T> void attn_dots(const T* __restrict x, const T* __restrict kt, int64_t width, int64_t n,
                                  T* __restrict s) {
  T acc[kBlock];
  for (int64_t jj = 0; jj < kBlock; ++jj) acc[jj] = T(0);
  for (int64_t e = 0; e < width; ++e) {
    const T xe = x[e];
    const T* kr = kt + e * kBlock;
    for (int64_t jj = 0; jj < kBlock; ++jj) acc[jj] += xe * kr[jj];
  }
  for (int64_t jj = 0; jj < n; ++jj) s[jj] = acc[jj];
}

// y[c] += a · x[c]
template <class T> inline void attn_axpy(T a, const T* __restrict x, T* __restrict y, int64_t n) {
  for (int64_t c = 0; c < n; ++c) y[c] += a * x[c];
}

// Σ x[jj] for jj < n in 8 lanes (jj goes to lane jj % 8) combined in one fixed tree: vectorisable,
// in an order that depends on n only.
template <class T> inline T attn_lanesum(const T* __restrict x, int64_t n) {
  T a[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t jj = 0;
  for (; jj + 8 <= n; jj += 8) {
    for (int k = 0; k < 8; ++k) a[k] += x[jj + k];
  }
  for (; jj < n; ++jj) a[jj % 8] += x[jj];
  return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
}

template <class T> inline T attn_max_tail(const T* s, int64_t jj, int64_t n, T bm) {
  for (; jj < n; ++jj) bm = s[jj] > bm ? s[jj] : bm;
  return bm;
}

// s[jj] *= scale for jj < n; returns the max of the products (NaN ignored, -inf when none).  GCC
// does not vectorise a float max (x > m ? x : m is not associative for it with NaN), so the
// AVX2/AVX-512 builds spell that very select lane by lane: vmaxps/vmaxpd (AVX2: max(x, m) is
// x > m ? x : m), a compare and a blend (AVX-512: GCC 12 warns inside _mm512_max_ps's header).  The lanes' results are combined in a fixed order; a max is exact, so only which
// of -0.0 and +0.0 is picked may depend on the ISA, and exp gives the same for both.
template <class T> inline T attn_scale_max(T* __restrict s, int64_t n, T scale) {
  const T ninf = -std::numeric_limits<T>::infinity();
  T bm = ninf;
  int64_t jj = 0;
  for (int64_t x = 0; x < n; ++x) s[x] *= scale;
#if ATTN_ISA >= 2
  if constexpr (std::is_same_v<T, float>) {
    if (n < 16) return attn_max_tail(s, 0, n, bm);
    __m512 m = _mm512_loadu_ps(s);  // (no set1: GCC 12 warns inside its own header)
    for (jj = 16; jj + 16 <= n; jj += 16) {
      const __m512 x = _mm512_loadu_ps(s + jj);
      m = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, m, _CMP_GT_OQ), m, x);
    }
    alignas(64) float lanes[16];
    _mm512_store_ps(lanes, m);
    for (int k = 0; k < 16; ++k) bm = lanes[k] > bm ? lanes[k] : bm;
  } else {
    if (n < 8) return attn_max_tail(s, 0, n, bm);
    __m512d m = _mm512_loadu_pd(s);  // (no set1: GCC 12 warns inside its own header)
    for (jj = 8; jj + 8 <= n; jj += 8) {
      const __m512d x = _mm512_loadu_pd(s + jj);
      m = _mm512_mask_blend_pd(_mm512_cmp_pd_mask(x, m, _CMP_GT_OQ), m, x);
    }
    alignas(64) double lanes[8];
    _mm512_store_pd(lanes, m);
    for (int k = 0; k < 8; ++k) bm = lanes[k] > bm ? lanes[k] : bm;
  }
#elif ATTN_ISA == 1
  if constexpr (std::is_same_v<T, float>) {
    if (n < 8) return attn_max_tail(s, 0, n, bm);
    __m256 m = _mm256_loadu_ps(s);  // (no set1: GCC 12 warns inside its own header)
    for (jj = 8; jj + 8 <= n; jj += 8) m = _mm256_max_ps(_mm256_loadu_ps(s + jj), m);
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, m);
    for (int k = 0; k < 8; ++k) bm = lanes[k] > bm ? lanes[k] : bm;
  } else {
    if (n < 4) return attn_max_tail(s, 0, n, bm);
    __m256d m = _mm256_loadu_pd(s);  // (no set1: GCC 12 warns inside its own header)
    for (jj = 4; jj + 4 <= n; jj += 4) m = _mm256_max_pd(_mm256_loadu_pd(s + jj), m);
    alignas(32) double lanes[4];
    _mm256_store_pd(lanes, m);
    for (int k = 0; k < 4; ++k) bm = lanes[k] > bm ? lanes[k] : bm;
  }
#endif
  return attn_max_tail(s, jj, n, bm);
}

// acc[c] += Σ_jj p[jj] · v[jj · Ev + c], jj ascending, over the kept keys (kf[jj] != 0; kf null:
// all): a masked key is skipped, so its NaN or inf value adds nothing.
template <class T>
void attn_pv(const T* __restrict p, const T* __restrict kf, const T* __restrict v, int64_t n, int64_t Ev,
             T* __restrict acc) {
  for (int64_t jj = 0; jj < n; ++jj) {
    if (kf != nullptr && kf[jj] == T(0)) continue;
    const T pj = p[jj];
    const T* vr = v + jj * Ev;
    for (int64_t c = 0; c < Ev; ++c) acc[c] += pj * vr[c];
  }
}

// 0 when every x[i] (i < n) is finite, else NaN: x - x is NaN exactly for inf and NaN, summed in
// 16 lanes so that it vectorises.
template <class T> inline T attn_nonfinite(const T* __restrict x, int64_t n) {
  T a[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    for (int k = 0; k < 16; ++k) a[k] += x[i + k] - x[i + k];
  }
  for (; i < n; ++i) a[0] += x[i] - x[i];
  T z = T(0);
  for (int k = 0; k < 16; ++k) z += a[k];
  return z;
}

// The online-softmax update of rows [i0, i0 + nr) with keys [j0, j0 + nc), float32, no mask:
// S = Q Kᵀ and P V by gemm::sgemm on one thread (each element one FMA chain in k order: the bits
// depend on the shapes only), the softmax between them as in the per-row path.  Causal: row i
// keeps the prefix of keys j <= i; the rest of its P row is an exact 0, which the P V GEMM
// multiplies by those keys' values, so the caller checks that they are finite.
inline void attn_block_gemm(const AttnTask<float>& t, int64_t i0, int64_t nr, int64_t j0, int64_t nc, float* sc,
                            float* acc, float* mx, float* sum, float* kept, float* pv) {
  const int64_t E = t.E, Ev = t.Ev;
  const float ninf = -std::numeric_limits<float>::infinity();
  gemm::sgemm(false, true, nr, nc, E, t.q + i0 * E, E, t.k + j0 * E, E, nullptr, sc, kBlock,
      1, nullptr, nullptr, t.gemm_scratch);
  for (int64_t r = 0; r < nr; ++r) {
    float* s = sc + r * kBlock;
    const int64_t n = t.causal ? std::max<int64_t>(0, std::min(nc, i0 + r - j0 + 1)) : nc;
    for (int64_t jj = n; jj < nc; ++jj) s[jj] = 0.0f;
    if (n == 0) continue;  // no key of the block: P row 0, the running values unchanged
    const float bm = attn_scale_max(s, n, t.scale);
    const float m_old = mx[r];
    const float m_new = m_old > bm ? m_old : bm;
    const float off = m_new == ninf ? 0.0f : m_new;
    const float alpha = m_old == ninf ? 0.0f : exp_value(m_old - off);
    mx[r] = m_new;
    kept[r] = 1.0f;
    for (int64_t jj = 0; jj < n; ++jj) s[jj] = exp_value(s[jj] - off);
    sum[r] = sum[r] * alpha + attn_lanesum(s, n);
    float* a = acc + r * Ev;
    for (int64_t c = 0; c < Ev; ++c) a[c] *= alpha;
  }
  gemm::sgemm(false, false, nr, Ev, nc, sc, kBlock, t.v + j0 * Ev, Ev, nullptr, pv, Ev,
      1, nullptr, nullptr, t.gemm_scratch);
  for (int64_t x = 0; x < nr * Ev; ++x) acc[x] += pv[x];
}

// The forward of query rows [i0, i1) (i1 - i0 <= kBlock): out (L, Ev) and lse (L,) rows.
// ws holds kBlock·(E + kBlock + 2·Ev + 4) values.
template <class T> void attn_forward_task(const AttnTask<T>& t, int64_t i0, int64_t i1, T* out, T* lse, T* ws) {
  const int64_t E = t.E, Ev = t.Ev, nr = i1 - i0;
  T* kt = ws;                          // E x kBlock
  T* sc = kt + E * kBlock;             // kBlock x kBlock scores, then probabilities
  T* acc = sc + kBlock * kBlock;       // nr x Ev
  T* mx = acc + kBlock * Ev;           // running max over the kept scores (-inf: none yet)
  T* sum = mx + kBlock;                // running Σ exp(s - max)
  T* kept = sum + kBlock;              // 1 once a row has a kept key
  T* kf = kept + kBlock;               // the current row's kept flags in the key block
  T* pv = kf + kBlock;                 // kBlock x Ev: P·V of a block (GEMM path)
  const T ninf = -std::numeric_limits<T>::infinity();
  for (int64_t r = 0; r < nr; ++r) {
    mx[r] = ninf;
    sum[r] = T(0);
    kept[r] = T(0);
    for (int64_t c = 0; c < Ev; ++c) acc[r * Ev + c] = T(0);
  }
  const int64_t jend = t.causal ? std::min(t.S, i1) : t.S;  // causal: no key beyond the last row
  for (int64_t j0 = 0; j0 < jend; j0 += kBlock) {
    const int64_t nc = std::min(kBlock, jend - j0);
    bool scores_done = false;
    if constexpr (std::is_same_v<T, float>) {
      if (t.use_gemm) {
        // every row keeps every key of the block, or a causal prefix of it over finite values: both
        // products as GEMMs (FMA micro-kernels)
        if (t.mask == nullptr &&
            (!t.causal || j0 + nc - 1 <= i0 || attn_nonfinite(t.v + j0 * Ev, nc * Ev) == 0.0f)) {
          attn_block_gemm(t, i0, nr, j0, nc, sc, acc, mx, sum, kept, pv);
          continue;
        }
        // else the scores as one GEMM (a masked key's score is computed and ignored), P·V per row
        gemm::sgemm(false, true, nr, nc, E, t.q + i0 * E, E, t.k + j0 * E, E, nullptr, sc, kBlock,
            1, nullptr, nullptr, t.gemm_scratch);
        scores_done = true;
      }
    }
    if (!scores_done) attn_pack(t.k, E, j0, nc, kt);
    for (int64_t r = 0; r < nr; ++r) {
      const int64_t i = i0 + r;
      T* s = sc + r * kBlock;
      if (!scores_done) attn_dots(t.q + i * E, kt, E, nc, s);
      // kf[jj]: 1 for a kept key.  Without a mask the kept keys are a prefix of the block (all of
      // it, or up to the causal diagonal): the same arithmetic on the prefix, without the flags'
      // selects and branches.
      const bool full = t.mask == nullptr;
      const int64_t n = full && t.causal ? std::min(nc, i - j0 + 1) : nc;
      if (n <= 0) continue;
      bool any = full;
      if (!full) {
        for (int64_t jj = 0; jj < n; ++jj) {
          kf[jj] = attn_keep(t, i, j0 + jj) ? T(1) : T(0);
          any = any || kf[jj] != T(0);
        }
      }
      if (!any) continue;
      // a NaN score is not the max; its exp makes the row NaN below
      T bm = attn_scale_max(s, n, t.scale);
      if (!full) {
        bm = ninf;
        for (int64_t jj = 0; jj < n; ++jj) bm = (kf[jj] != T(0) && s[jj] > bm) ? s[jj] : bm;
      }
      const T m_old = mx[r];
      const T m_new = m_old > bm ? m_old : bm;
      const T off = m_new == ninf ? T(0) : m_new;  // every kept score so far -inf: exp(-inf - 0) = 0
      // Nothing accumulated yet (m_old = -inf): the old sums are 0 (or NaN, kept NaN by · 0)
      const T alpha = m_old == ninf ? T(0) : exp_value(m_old - off);
      mx[r] = m_new;
      kept[r] = T(1);
      if (full) {
        for (int64_t jj = 0; jj < n; ++jj) s[jj] = exp_value(s[jj] - off);
      } else {
        for (int64_t jj = 0; jj < n; ++jj) s[jj] = kf[jj] != T(0) ? exp_value(s[jj] - off) : T(0);
      }
      sum[r] = sum[r] * alpha + attn_lanesum(s, n);
      T* a = acc + r * Ev;
      for (int64_t c = 0; c < Ev; ++c) a[c] *= alpha;
      attn_pv(s, full ? nullptr : kf, t.v + j0 * Ev, n, Ev, a);
    }
  }
  const T nan = std::numeric_limits<T>::quiet_NaN();
  for (int64_t r = 0; r < nr; ++r) {
    T* o = out + (i0 + r) * Ev;
    if (kept[r] == T(0)) {  // a fully masked row: a defined 0 (torch: NaN)
      for (int64_t c = 0; c < Ev; ++c) o[c] = T(0);
      lse[i0 + r] = ninf;
      continue;
    }
    const T l = sum[r];
    for (int64_t c = 0; c < Ev; ++c) o[c] = acc[r * Ev + c] / l;
    // l = 0: every kept score is -inf, no softmax (out is 0/0 = NaN above, as the reference)
    lse[i0 + r] = l == T(0) ? nan : mx[r] + std::log(l);
  }
}

template <class T> inline T attn_rowdot(const T* __restrict a, const T* __restrict b, int64_t n) {
  T d = T(0);
  for (int64_t c = 0; c < n; ++c) d += a[c] * b[c];
  return d;
}

// Pass A: dq of query rows [i0, i1): dq_i = scale · Σ_j dS_ij k_j over the kept keys, j ascending.
// ws holds kBlock·(2E + 2Ev + 4) values.
template <class T>
void attn_grad_q_task(const AttnTask<T>& t, const AttnGradIn<T>& g, int64_t i0, int64_t i1, T* dq, T* ws) {
  const int64_t E = t.E, Ev = t.Ev, nr = i1 - i0;
  T* kt = ws;                  // E x kBlock
  T* vt = kt + E * kBlock;     // Ev x kBlock
  T* s = vt + Ev * kBlock;     // kBlock
  T* dp = s + kBlock;          // kBlock
  T* dd = dp + kBlock;         // kBlock: D_i = rowsum(dout ∘ out) - dlse
  T* acc = dd + kBlock;        // nr x E
  for (int64_t r = 0; r < nr; ++r) {
    const int64_t i = i0 + r;
    dd[r] = attn_rowdot(g.dout + i * Ev, g.out + i * Ev, Ev) - g.dlse[i];
    for (int64_t e = 0; e < E; ++e) acc[r * E + e] = T(0);
  }
  const int64_t jend = t.causal ? std::min(t.S, i1) : t.S;
  for (int64_t j0 = 0; j0 < jend; j0 += kBlock) {
    const int64_t nc = std::min(kBlock, jend - j0);
    attn_pack(t.k, E, j0, nc, kt);
    attn_pack(t.v, Ev, j0, nc, vt);
    for (int64_t r = 0; r < nr; ++r) {
      const int64_t i = i0 + r;
      attn_dots(t.q + i * E, kt, E, nc, s);
      attn_dots(g.dout + i * Ev, vt, Ev, nc, dp);
      const T li = g.lse[i], di = dd[r];
      for (int64_t jj = 0; jj < nc; ++jj) {
        if (!attn_keep(t, i, j0 + jj)) continue;
        const T p = exp_value(s[jj] * t.scale - li);
        attn_axpy(p * (dp[jj] - di), t.k + (j0 + jj) * E, acc + r * E, E);
      }
    }
  }
  for (int64_t r = 0; r < nr; ++r) {
    for (int64_t e = 0; e < E; ++e) dq[(i0 + r) * E + e] = acc[r * E + e] * t.scale;
  }
}

// Pass B: dk, dv of keys [j0, j1): dk_j = scale · Σ_i dS_ij q_i, dv_j = Σ_i P_ij dout_i over the
// query rows that keep key j, i ascending.  ws holds kBlock·(2E + 2Ev + 4) values.
template <class T>
void attn_grad_kv_task(const AttnTask<T>& t, const AttnGradIn<T>& g, int64_t j0, int64_t j1, T* dk, T* dv, T* ws) {
  const int64_t E = t.E, Ev = t.Ev, nk = j1 - j0;
  T* qt = ws;                  // E x kBlock
  T* ot = qt + E * kBlock;     // Ev x kBlock (dout rows)
  T* s = ot + Ev * kBlock;     // kBlock
  T* dp = s + kBlock;          // kBlock
  T* dd = dp + kBlock;         // kBlock
  T* acc_k = dd + kBlock;      // nk x E
  T* acc_v = acc_k + kBlock * E;  // nk x Ev
  for (int64_t x = 0; x < nk * E; ++x) acc_k[x] = T(0);
  for (int64_t x = 0; x < nk * Ev; ++x) acc_v[x] = T(0);
  const int64_t ibeg = t.causal ? j0 / kBlock * kBlock : 0;  // causal: rows i < j0 keep no key here
  for (int64_t q0 = ibeg; q0 < t.L; q0 += kBlock) {
    const int64_t nq = std::min(kBlock, t.L - q0);
    attn_pack(t.q, E, q0, nq, qt);
    attn_pack(g.dout, Ev, q0, nq, ot);
    for (int64_t ii = 0; ii < nq; ++ii) {
      const int64_t i = q0 + ii;
      dd[ii] = attn_rowdot(g.dout + i * Ev, g.out + i * Ev, Ev) - g.dlse[i];
    }
    for (int64_t jj = 0; jj < nk; ++jj) {
      const int64_t j = j0 + jj;
      attn_dots(t.k + j * E, qt, E, nq, s);
      attn_dots(t.v + j * Ev, ot, Ev, nq, dp);
      for (int64_t ii = 0; ii < nq; ++ii) {
        const int64_t i = q0 + ii;
        if (!attn_keep(t, i, j)) continue;
        const T p = exp_value(s[ii] * t.scale - g.lse[i]);
        attn_axpy(p, g.dout + i * Ev, acc_v + jj * Ev, Ev);
        attn_axpy(p * (dp[ii] - dd[ii]), t.q + i * E, acc_k + jj * E, E);
      }
    }
  }
  for (int64_t jj = 0; jj < nk; ++jj) {
    for (int64_t e = 0; e < E; ++e) dk[(j0 + jj) * E + e] = acc_k[jj * E + e] * t.scale;
    for (int64_t c = 0; c < Ev; ++c) dv[(j0 + jj) * Ev + c] = acc_v[jj * Ev + c];
  }
}

// The whole backward of one batch item by GEMMs (float32, no mask: every key kept, or causal):
// per (key block, query block) pair S = Q Kᵀ and dP = dO Vᵀ by gemm::sgemm, P = exp(scale·S -
// lse) and dS = P ∘ (dP - D) with the causally masked entries set to an exact 0, then dV += Pᵀ dO,
// dK += dSᵀ Q, dQ += dS K (three more GEMMs, each block's product added to its accumulator in
// block order).  One task owns the item's dq, dk and dv, so the bits depend on the shapes only.
// P is computed once per entry (the per-row loops compute it in both passes).  Multiplying by a
// masked entry's 0 would turn an inf or NaN of a masked key or row into NaN, so an item with any
// non-finite input is left to the per-row loops (returns false); double also returns false.
// ws holds 2·kBlock² + kBlock·(max(E, Ev) + E + Ev + 1) <= kBlock·(2·kBlock + 2E + 2Ev + 4) values.
template <class T>
bool attn_grad_item_gemm(const AttnTask<T>& t, const AttnGradIn<T>& g, T* dq, T* dk, T* dv, T* ws) {
  if constexpr (!std::is_same_v<T, float>) {
    return false;
  } else {
    const int64_t L = t.L, S = t.S, E = t.E, Ev = t.Ev, W = std::max(E, Ev);
    const float bad = attn_nonfinite(t.q, L * E) + attn_nonfinite(t.k, S * E) + attn_nonfinite(t.v, S * Ev) +
                      attn_nonfinite(g.out, L * Ev) + attn_nonfinite(g.dout, L * Ev) + attn_nonfinite(g.lse, L) +
                      attn_nonfinite(g.dlse, L);
    if (bad != 0.0f) return false;  // NaN != 0
    float* sc = ws;                       // kBlock x kBlock: scores, then P
    float* dp = sc + kBlock * kBlock;     // kBlock x kBlock: dP, then dS
    float* tmp = dp + kBlock * kBlock;    // kBlock x W: one block's product before it is added
    float* acc_k = tmp + kBlock * W;      // kBlock x E
    float* acc_v = acc_k + kBlock * E;    // kBlock x Ev
    float* dd = acc_v + kBlock * Ev;      // kBlock: D_i = rowsum(dout ∘ out) - dlse
    for (int64_t x = 0; x < L * E; ++x) dq[x] = 0.0f;
    for (int64_t j0 = 0; j0 < S; j0 += kBlock) {
      const int64_t nk = std::min(kBlock, S - j0);
      for (int64_t x = 0; x < nk * E; ++x) acc_k[x] = 0.0f;
      for (int64_t x = 0; x < nk * Ev; ++x) acc_v[x] = 0.0f;
      for (int64_t q0 = t.causal ? j0 : 0; q0 < L; q0 += kBlock) {  // causal: rows i < j0 keep no key here
        const int64_t nq = std::min(kBlock, L - q0);
        // causal: keys past the block's last row are masked in every row of it
        const int64_t nc = t.causal ? std::min(nk, q0 + nq - j0) : nk;
        gemm::sgemm(false, true, nq, nc, E, t.q + q0 * E, E, t.k + j0 * E, E, nullptr, sc, kBlock,
            1, nullptr, nullptr, t.gemm_scratch);
        gemm::sgemm(false, true, nq, nc, Ev, g.dout + q0 * Ev, Ev, t.v + j0 * Ev, Ev, nullptr, dp, kBlock,
            1, nullptr, nullptr, t.gemm_scratch);
        for (int64_t r = 0; r < nq; ++r) {
          const int64_t i = q0 + r;
          dd[r] = attn_rowdot(g.dout + i * Ev, g.out + i * Ev, Ev) - g.dlse[i];
        }
        for (int64_t r = 0; r < nq; ++r) {
          const int64_t i = q0 + r;
          const int64_t n = t.causal ? std::min(nc, i - j0 + 1) : nc;  // >= 1: i >= q0 >= j0 when causal
          float* s = sc + r * kBlock;
          float* d = dp + r * kBlock;
          const float li = g.lse[i], di = dd[r], scale = t.scale;
          for (int64_t jj = 0; jj < n; ++jj) s[jj] = exp_value(s[jj] * scale - li);
          for (int64_t jj = 0; jj < n; ++jj) d[jj] = s[jj] * (d[jj] - di);
          for (int64_t jj = n; jj < nc; ++jj) s[jj] = d[jj] = 0.0f;
        }
        gemm::sgemm(true, false, nc, Ev, nq, sc, kBlock, g.dout + q0 * Ev, Ev, nullptr, tmp, Ev,
            1, nullptr, nullptr, t.gemm_scratch);
        for (int64_t x = 0; x < nc * Ev; ++x) acc_v[x] += tmp[x];
        gemm::sgemm(true, false, nc, E, nq, dp, kBlock, t.q + q0 * E, E, nullptr, tmp, E,
            1, nullptr, nullptr, t.gemm_scratch);
        for (int64_t x = 0; x < nc * E; ++x) acc_k[x] += tmp[x];
        gemm::sgemm(false, false, nq, E, nc, dp, kBlock, t.k + j0 * E, E, nullptr, tmp, E,
            1, nullptr, nullptr, t.gemm_scratch);
        float* dqb = dq + q0 * E;
        for (int64_t x = 0; x < nq * E; ++x) dqb[x] += tmp[x];
      }
      for (int64_t x = 0; x < nk * E; ++x) dk[j0 * E + x] = acc_k[x] * t.scale;
      for (int64_t x = 0; x < nk * Ev; ++x) dv[j0 * Ev + x] = acc_v[x];
    }
    for (int64_t x = 0; x < L * E; ++x) dq[x] *= t.scale;
    return true;
  }
}

// One instantiation per dtype, so that attention.cc can take their addresses.
template void attn_forward_task<float>(const AttnTask<float>&, int64_t, int64_t, float*, float*, float*);
template void attn_forward_task<double>(const AttnTask<double>&, int64_t, int64_t, double*, double*, double*);
template void attn_grad_q_task<float>(const AttnTask<float>&, const AttnGradIn<float>&, int64_t, int64_t, float*,
                                      float*);
template void attn_grad_q_task<double>(const AttnTask<double>&, const AttnGradIn<double>&, int64_t, int64_t, double*,
                                       double*);
template void attn_grad_kv_task<float>(const AttnTask<float>&, const AttnGradIn<float>&, int64_t, int64_t, float*,
                                       float*, float*);
template bool attn_grad_item_gemm<float>(const AttnTask<float>&, const AttnGradIn<float>&, float*, float*, float*,
                                         float*);
template bool attn_grad_item_gemm<double>(const AttnTask<double>&, const AttnGradIn<double>&, double*, double*,
                                          double*, double*);
template void attn_grad_kv_task<double>(const AttnTask<double>&, const AttnGradIn<double>&, int64_t, int64_t,
                                        double*, double*, double*);
