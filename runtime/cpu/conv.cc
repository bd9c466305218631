// conv.cc — conv2d and its gradient ops (conv2d_grad_input, conv2d_grad_weight) over NCHW
// input and OIHW weights; graphc/ops/conv.py has the semantics (PyTorch's), docs/conv.md the
// design and the figures.
//
// im2col + GEMM, one image at a time:
//   forward       Y[n]_g (Og x P)  = W_g (Og x K) · col[n]_g (K x P)
//   grad_input    dcol_g (K x P)   = W_g^T · dY[n]_g, then col2im into dX[n]
//   grad_weight   part[n]_g (Og x K) = dY[n]_g · col[n]_g^T, then dW = Σ_n part[n] in image order
// with K = C/g·k_h·k_w and P = H_out·W_out.  A 1x1 kernel at stride 1 without padding reads
// (or writes) the image itself as its column matrix.  float32 runs graphc's own GEMM
// (gemm.h); float64, the reference-precision dtype, plain loops.
//
// The column matrices live in the step's planned workspace (KernelArgs::ws, sized by the
// op's registry `workspace` function): `slots` matrices, so up to that many images run at
// once, one per thread.  With a single slot (or one image) the GEMM itself is split.
//
// Determinism: each output element is one FMA chain in a fixed order (gemm.h), whichever
// thread computes it; col2im adds into one image from one thread in a fixed order; the
// weight gradient sums the per-image partial products in image order.  So results are the
// same bits for every thread count.
#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "common.h"
#include "gemm.h"

namespace graphc {
namespace cpu {
namespace {

struct ConvGeom {
  int64_t n = 0, c = 0, h = 0, w = 0;        // input
  int64_t o = 0, kh = 0, kw = 0;             // weight (o, c / g, kh, kw)
  int64_t g = 1, cg = 0, og = 0;             // groups, channels per group
  int64_t sh = 1, sw = 1, pt = 0, pl = 0, pb = 0, pr = 0, dh = 1, dw = 1;
  int64_t ho = 0, wo = 0;                    // output
  int64_t k = 0, p = 0;                      // per-group GEMM depth cg·kh·kw, output positions ho·wo
  bool pointwise = false;                    // 1x1, stride 1, no padding: col == the image
  std::vector<int64_t> x_dims() const { return {n, c, h, w}; }
  std::vector<int64_t> w_dims() const { return {o, cg, kh, kw}; }
  std::vector<int64_t> y_dims() const { return {n, o, ho, wo}; }
};

// Reads stride / pads / dilation / groups and checks them with the tensors' dims against each
// other (any plan bytes may arrive): the C++ side of _check_attrs / _out_hw / _check_channels
// in graphc/ops/conv.py.  `in_dims` (N, C, H, W) and `w_dims` (O, C/g, kh, kw).
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
  // saturating: absurd attrs on an empty tensor must not overflow before they are refused
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
  q.pointwise = q.kh == 1 && q.kw == 1 && q.sh == 1 && q.sw == 1 && q.pt == 0 && q.pl == 0 && q.pb == 0 && q.pr == 0;
  return q;
}

// The im2col workspace: `slots` matrices of (C·kh·kw) x P (all groups), slots >= 1.  Returns slots.
template <class T> int64_t check_cols(const KernelArgs& a, const ConvGeom& q, size_t i) {
  const std::string what = "workspace " + std::to_string(i) + " (im2col)";
  if (a.ws.size() <= i) a.fail("expects a planned " + what + " (the plan has " + std::to_string(a.ws.size()) + ")");
  const TensorRef& t = a.ws[i];
  expect_dtype(a, t, dtype_of<T>(), what);
  if (t.dims.size() != 3 || t.dims[0] < 1 || t.dims[1] != q.k * q.g || t.dims[2] != q.p) {
    a.fail(what + " must have shape (slots >= 1, " + std::to_string(q.k * q.g) + ", " + std::to_string(q.p) +
           "), got " + format_dims(t.dims));
  }
  return t.dims[0];
}

// Rows (c, a, b) of image x's column matrix: col[(c·kh + a)·kw + b][i·wo + j] =
// x[c][i·sh + a·dh - pt][j·sw + b·dw - pl], 0 in the padding.
template <class T> void im2col(const ConvGeom& q, const T* x, T* col) {
  for (int64_t c = 0; c < q.c; ++c) {
    const T* xc = x + c * q.h * q.w;
    for (int64_t a = 0; a < q.kh; ++a) {
      for (int64_t b = 0; b < q.kw; ++b) {
        T* row = col + ((c * q.kh + a) * q.kw + b) * q.p;
        // output columns j whose input column j·sw + b·dw - pl is inside [0, w)
        const int64_t off = b * q.dw - q.pl;
        const int64_t j0 = off >= 0 ? 0 : std::min(q.wo, (-off + q.sw - 1) / q.sw);
        const int64_t j1 = std::max(j0, std::min(q.wo, off >= q.w ? 0 : (q.w - 1 - off) / q.sw + 1));
        for (int64_t i = 0; i < q.ho; ++i) {
          T* dst = row + i * q.wo;
          const int64_t r = i * q.sh + a * q.dh - q.pt;
          if (r < 0 || r >= q.h) {
            std::fill(dst, dst + q.wo, T(0));
            continue;
          }
          const T* src = xc + r * q.w;  // input column j·sw + off for output column j
          std::fill(dst, dst + j0, T(0));
          if (q.sw == 1) {
            if (j1 > j0) std::memcpy(dst + j0, src + j0 + off, sizeof(T) * (j1 - j0));
          } else {
            for (int64_t j = j0; j < j1; ++j) dst[j] = src[j * q.sw + off];
          }
          std::fill(dst + j1, dst + q.wo, T(0));
        }
      }
    }
  }
}

// dx (one image, zeroed first) += the column matrix's entries at the positions im2col read
// them from, in the fixed order (c, a, b, i, j); padding entries are dropped.
template <class T> void col2im(const ConvGeom& q, const T* col, T* dx) {
  std::fill(dx, dx + q.c * q.h * q.w, T(0));
  for (int64_t c = 0; c < q.c; ++c) {
    T* xc = dx + c * q.h * q.w;
    for (int64_t a = 0; a < q.kh; ++a) {
      for (int64_t b = 0; b < q.kw; ++b) {
        const T* row = col + ((c * q.kh + a) * q.kw + b) * q.p;
        const int64_t off = b * q.dw - q.pl;
        const int64_t j0 = off >= 0 ? 0 : std::min(q.wo, (-off + q.sw - 1) / q.sw);
        const int64_t j1 = std::max(j0, std::min(q.wo, off >= q.w ? 0 : (q.w - 1 - off) / q.sw + 1));
        for (int64_t i = 0; i < q.ho; ++i) {
          const int64_t r = i * q.sh + a * q.dh - q.pt;
          if (r < 0 || r >= q.h) continue;
          const T* src = row + i * q.wo;
          T* dst = xc + r * q.w;
          for (int64_t j = j0; j < j1; ++j) dst[j * q.sw + off] += src[j];
        }
      }
    }
  }
}

// C (M x N, ldc) = op(A) op(B): float32 on the own GEMM; float64 in plain loops, each element
// one chain over k in order (the reference-precision path, not tuned).
void gemm_t(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B,
            int64_t ldb, float* C, int64_t ldc, int threads) {
  gemm::sgemm(ta, tb, M, N, K, A, lda, B, ldb, nullptr, C, ldc, threads);
}

void gemm_t(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const double* A, int64_t lda, const double* B,
            int64_t ldb, double* C, int64_t ldc, int) {
  for (int64_t i = 0; i < M; ++i) {
    double* c = C + i * ldc;
    if (!tb) {
      std::fill(c, c + N, 0.0);
      for (int64_t k = 0; k < K; ++k) {
        const double aik = ta ? A[k * lda + i] : A[i * lda + k];
        const double* b = B + k * ldb;
        for (int64_t j = 0; j < N; ++j) c[j] += aik * b[j];
      }
    } else {
      for (int64_t j = 0; j < N; ++j) {
        const double* b = B + j * ldb;
        double s = 0.0;
        for (int64_t k = 0; k < K; ++k) s += (ta ? A[k * lda + i] : A[i * lda + k]) * b[k];
        c[j] = s;
      }
    }
  }
}

// Runs f(first image, end image, slot, gemm threads) over the images: up to `slots` chunks in
// parallel with single-threaded GEMMs, or one chunk whose GEMMs take every thread.
template <class F> void for_images(int64_t n, int64_t slots, int threads, F&& f) {
  const int64_t chunks = std::max<int64_t>(1, std::min<int64_t>({n, slots, int64_t(threads)}));
  if (chunks == 1) {
    f(int64_t(0), n, int64_t(0), threads);
    return;
  }
  auto chunk = [&](int c) { f(n * c / chunks, n * (c + 1) / chunks, int64_t(c), 1); };
  WorkerPool::get().run(static_cast<int>(chunks), chunk, threads);
}

template <class T> Kernel fill_zero_kernel(T* out, int64_t count) {
  if (count == 0) return no_op_kernel();
  return [=]() { std::fill(out, out + count, T(0)); };
}

// conv2d(x, w) -> y
template <class T> Kernel conv_kernel(const KernelArgs& args) {
  args.expect_arity(2, 1);
  const TensorRef &x = args.in[0], &w = args.in[1];
  if (x.dims.size() != 4 || w.dims.size() != 4) {
    args.fail("x and w must have rank 4, got " + format_dims(x.dims) + " and " + format_dims(w.dims));
  }
  const ConvGeom q = conv_geom(args, attrs::Conv2d(args), x.dims, w.dims);
  expect_dtype(args, w, x.dtype, "input 1 (w)");
  expect_dtype(args, args.out[0], x.dtype, "output");
  expect_dims(args, args.out[0], q.y_dims(), "output");
  T* py = args.out[0].as<T>();
  if (numel_of(args.out[0]) == 0) return no_op_kernel();
  if (q.k == 0) return fill_zero_kernel(py, numel_of(args.out[0]));  // no input channels: sums of nothing
  const int64_t slots = q.pointwise ? 1 : check_cols<T>(args, q, 0);
  T* pcol = q.pointwise ? nullptr : args.ws[0].as<T>();
  const T* px = x.as<const T>();
  const T* pw = w.as<const T>();
  const int threads = args.ctx.threads;
  return [=]() {
    for_images(q.n, q.pointwise ? q.n : slots, threads, [&](int64_t n0, int64_t n1, int64_t slot, int t) {
      T* col = q.pointwise ? nullptr : pcol + slot * q.g * q.k * q.p;
      for (int64_t n = n0; n < n1; ++n) {
        const T* xn = px + n * q.c * q.h * q.w;
        if (!q.pointwise) im2col(q, xn, col);
        const T* src = q.pointwise ? xn : col;
        for (int64_t g = 0; g < q.g; ++g) {
          gemm_t(false, false, q.og, q.p, q.k, pw + g * q.og * q.k, q.k, src + g * q.k * q.p, q.p,
                 py + (n * q.o + g * q.og) * q.p, q.p, t);
        }
      }
    });
  };
}

// conv2d_grad_input(dy, w) -> dx
template <class T> Kernel grad_input_kernel(const KernelArgs& args) {
  args.expect_arity(2, 1);
  const TensorRef &dy = args.in[0], &w = args.in[1];
  const attrs::Conv2dGradInput attr(args);
  if (dy.dims.size() != 4 || w.dims.size() != 4 || attr.input_size.size() != 2) {
    args.fail("dy and w must have rank 4 and input_size hold 2 ints, got " + format_dims(dy.dims) + ", " +
              format_dims(w.dims) + " and input_size " + format_dims(attr.input_size));
  }
  const int64_t c = saturating_mul(w.dims[1], attr.groups);
  const ConvGeom q = conv_geom(args, attr, {dy.dims[0], c, attr.input_size[0], attr.input_size[1]}, w.dims);
  expect_dtype(args, w, dy.dtype, "input 1 (w)");
  expect_dims(args, dy, q.y_dims(), "input 0 (dy)");
  expect_dtype(args, args.out[0], dy.dtype, "output");
  expect_dims(args, args.out[0], q.x_dims(), "output");
  T* pdx = args.out[0].as<T>();
  if (numel_of(args.out[0]) == 0) return no_op_kernel();
  if (q.og == 0) return fill_zero_kernel(pdx, numel_of(args.out[0]));  // no output channels
  const int64_t slots = q.pointwise ? 1 : check_cols<T>(args, q, 0);
  T* pcol = q.pointwise ? nullptr : args.ws[0].as<T>();
  const T* pdy = dy.as<const T>();
  const T* pw = w.as<const T>();
  const int threads = args.ctx.threads;
  return [=]() {
    for_images(q.n, q.pointwise ? q.n : slots, threads, [&](int64_t n0, int64_t n1, int64_t slot, int t) {
      T* col = q.pointwise ? nullptr : pcol + slot * q.g * q.k * q.p;
      for (int64_t n = n0; n < n1; ++n) {
        T* dxn = pdx + n * q.c * q.h * q.w;
        T* dst = q.pointwise ? dxn : col;
        for (int64_t g = 0; g < q.g; ++g) {
          gemm_t(true, false, q.k, q.p, q.og, pw + g * q.og * q.k, q.k, pdy + (n * q.o + g * q.og) * q.p, q.p,
                 dst + g * q.k * q.p, q.p, t);
        }
        if (!q.pointwise) col2im(q, col, dxn);
      }
    });
  };
}

// conv2d_grad_weight(dy, x) -> dw
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
  expect_dtype(args, dy, x.dtype, "input 0 (dy)");
  expect_dims(args, dy, q.y_dims(), "input 0 (dy)");
  expect_dtype(args, args.out[0], x.dtype, "output");
  expect_dims(args, args.out[0], q.w_dims(), "output");
  T* pdw = args.out[0].as<T>();
  const int64_t wsize = numel_of(args.out[0]);
  if (wsize == 0) return no_op_kernel();
  if (q.n == 0) return fill_zero_kernel(pdw, wsize);  // a sum over no images
  int64_t slots = 1;
  size_t part_ws = 0;
  if (!q.pointwise) {
    slots = check_cols<T>(args, q, 0);
    part_ws = 1;
  }
  // one weight-sized partial product per image, summed in image order afterwards
  const std::string what = "workspace " + std::to_string(part_ws) + " (per-image partial sums)";
  if (args.ws.size() != part_ws + 1) {
    args.fail("expects " + std::to_string(part_ws + 1) + " planned workspaces, got " + std::to_string(args.ws.size()));
  }
  expect_dtype(args, args.ws[part_ws], x.dtype, what);
  std::vector<int64_t> part_dims = {q.n, q.o, q.cg, q.kh, q.kw};
  expect_dims(args, args.ws[part_ws], part_dims, what);
  T* ppart = args.ws[part_ws].as<T>();
  T* pcol = q.pointwise ? nullptr : args.ws[0].as<T>();
  const T* pdy = dy.as<const T>();
  const T* px = x.as<const T>();
  const int threads = args.ctx.threads;
  return [=]() {
    for_images(q.n, q.pointwise ? q.n : slots, threads, [&](int64_t n0, int64_t n1, int64_t slot, int t) {
      T* col = q.pointwise ? nullptr : pcol + slot * q.g * q.k * q.p;
      for (int64_t n = n0; n < n1; ++n) {
        const T* xn = px + n * q.c * q.h * q.w;
        if (!q.pointwise) im2col(q, xn, col);
        const T* src = q.pointwise ? xn : col;
        for (int64_t g = 0; g < q.g; ++g) {
          gemm_t(false, true, q.og, q.k, q.p, pdy + (n * q.o + g * q.og) * q.p, q.p, src + g * q.k * q.p, q.p,
                 ppart + n * wsize + g * q.og * q.k, q.k, t);
        }
      }
    });
    // dw[e] = ((part[0][e] + part[1][e]) + part[2][e]) + ...: image order, whatever the split over e
    parallel_for(wsize, threads, 4096, [&](int64_t b, int64_t e) {
      std::copy(ppart + b, ppart + e, pdw + b);
      for (int64_t n = 1; n < q.n; ++n) {
        const T* src = ppart + n * wsize;
        for (int64_t i = b; i < e; ++i) pdw[i] += src[i];
      }
    });
  };
}

}  // namespace
}  // namespace cpu

void register_conv_kernels(KernelRegistry& r) {
  using namespace cpu;
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

}  // namespace graphc
