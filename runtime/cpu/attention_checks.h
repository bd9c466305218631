// attention_checks.h — the shapes and checks of scaled_dot_product_attention and its gradient,
// shared by runtime/cpu/attention.cc and runtime/cuda/attention.cu: both devices accept exactly the
// same steps with the same messages.  Prepare-time code only.  Host code only.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "common.h"

namespace graphc {
namespace cpu {

struct AttnGeom {
  std::vector<int64_t> lead;
  int64_t batch = 0, L = 0, S = 0, E = 0, Ev = 0;
  std::vector<int64_t> mask_lead_stride;  // per lead dim (0: broadcast)
  int64_t mask_row = 0, mask_col = 0;
  bool empty_rows = true;  // batch · L = 0: no output row to write
};

inline AttnGeom attn_geom(const KernelArgs& a, bool causal) {
  const TensorRef &q = a.in[0], &k = a.in[1], &v = a.in[2], &m = a.in[3];
  const size_t r = q.dims.size();
  if (r < 2) a.fail("input 0 (q) must have rank >= 2 (..., L, E), got shape " + format_dims(q.dims));
  if (k.dims.size() != r || v.dims.size() != r) {
    a.fail("inputs q, k, v must have one rank, got " + format_dims(q.dims) + ", " + format_dims(k.dims) + ", " +
           format_dims(v.dims));
  }
  AttnGeom g;
  g.lead.assign(q.dims.begin(), q.dims.end() - 2);
  for (size_t d = 0; d + 2 < r; ++d) {
    if (k.dims[d] != q.dims[d] || v.dims[d] != q.dims[d]) {
      a.fail("inputs q, k, v must have equal leading dims, got " + format_dims(q.dims) + ", " + format_dims(k.dims) +
             ", " + format_dims(v.dims));
    }
  }
  g.L = q.dims[r - 2];
  g.E = q.dims[r - 1];
  g.S = k.dims[r - 2];
  g.Ev = v.dims[r - 1];
  if (k.dims[r - 1] != g.E) a.fail("input 1 (k) must have E = " + std::to_string(g.E) + ", got " + format_dims(k.dims));
  if (v.dims[r - 2] != g.S) a.fail("input 2 (v) must have S = " + std::to_string(g.S) + ", got " + format_dims(v.dims));
  expect_dtype(a, k, q.dtype, "input 1 (k)");
  expect_dtype(a, v, q.dtype, "input 2 (v)");
  expect_dtype(a, m, DType::Bool, "input 3 (mask)");
  const size_t rm = m.dims.size();
  if (causal && rm != 0) a.fail("takes a mask or causal=True, not both; got a mask of shape " + format_dims(m.dims));
  if (rm > r) a.fail("input 3 (mask) of shape " + format_dims(m.dims) + " has a higher rank than q");
  std::vector<int64_t> full = g.lead;
  full.push_back(g.L);
  full.push_back(g.S);
  std::vector<int64_t> eff(r, 0);
  int64_t stride = 1;
  for (size_t d = r; d-- > 0;) {
    if (d + rm < r) break;
    const int64_t md = m.dims[d + rm - r];
    if (md != 1 && md != full[d]) {
      a.fail("input 3 (mask) of shape " + format_dims(m.dims) + " does not broadcast to " + format_dims(full));
    }
    eff[d] = md == 1 ? 0 : stride;
    stride *= md;
  }
  g.mask_lead_stride.assign(eff.begin(), eff.end() - 2);
  g.mask_row = eff[r - 2];
  g.mask_col = eff[r - 1];
  g.empty_rows = has_zero_dim(g.lead) || g.L == 0;
  g.batch = g.empty_rows ? 0 : numel_of(g.lead);
  return g;
}

// The checked step of either op: the geometry, the scale and the causal flag.
struct AttnCheck {
  AttnGeom g;
  double scale = 1.0;
  bool causal = false;
};

// (out (..., L, Ev), lse (..., L)) for the geometry's lead dims.
inline void attn_out_dims(const AttnGeom& g, std::vector<int64_t>* od, std::vector<int64_t>* ld) {
  *od = g.lead;
  *ld = g.lead;
  od->push_back(g.L);
  od->push_back(g.Ev);
  ld->push_back(g.L);
}

inline void expect_finite_scale(const KernelArgs& args, double scale) {
  if (!std::isfinite(scale)) args.fail("scale must be finite, got " + std::to_string(scale));
}

// scaled_dot_product_attention(q, k, v, mask) -> (out, lse)
inline AttnCheck attention_check(const KernelArgs& args) {
  args.expect_arity(4, 2);
  const attrs::ScaledDotProductAttention attr(args);
  expect_finite_scale(args, attr.scale);
  AttnCheck c;
  c.scale = attr.scale;
  c.causal = attr.causal;
  c.g = attn_geom(args, c.causal);
  std::vector<int64_t> od, ld;
  attn_out_dims(c.g, &od, &ld);
  expect_dtype(args, args.out[0], args.in[0].dtype, "output 0 (out)");
  expect_dims(args, args.out[0], od, "output 0 (out)");
  expect_dtype(args, args.out[1], args.in[0].dtype, "output 1 (lse)");
  expect_dims(args, args.out[1], ld, "output 1 (lse)");
  return c;
}

// scaled_dot_product_attention_grad(q, k, v, mask, out, lse, dout, dlse) -> (dq, dk, dv)
inline AttnCheck attention_grad_check(const KernelArgs& args) {
  args.expect_arity(8, 3);
  const attrs::ScaledDotProductAttentionGrad attr(args);
  expect_finite_scale(args, attr.scale);
  AttnCheck c;
  c.scale = attr.scale;
  c.causal = attr.causal;
  c.g = attn_geom(args, c.causal);
  std::vector<int64_t> od, ld;
  attn_out_dims(c.g, &od, &ld);
  const DType dt = args.in[0].dtype;
  const char* names[] = {"input 4 (out)", "input 5 (lse)", "input 6 (dout)", "input 7 (dlse)"};
  for (int i = 4; i < 8; ++i) {
    expect_dtype(args, args.in[i], dt, names[i - 4]);
    expect_dims(args, args.in[i], i % 2 == 0 ? od : ld, names[i - 4]);
  }
  const char* onames[] = {"output 0 (dq)", "output 1 (dk)", "output 2 (dv)"};
  for (int o = 0; o < 3; ++o) {
    expect_dtype(args, args.out[o], dt, onames[o]);
    expect_dims(args, args.out[o], args.in[o].dims, onames[o]);
  }
  return c;
}

}  // namespace cpu
}  // namespace graphc
