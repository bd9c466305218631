// pad.cu — the CUDA twin of runtime/cpu/pad.cc: pad (constant / reflect / replicate, numpy.pad
// semantics) and its adjoint pad_grad.
//
// The factory validates exactly as make_plan does (same messages), then merges adjacent axes
// that are padded on neither side (an identity map over both) into one, so that a padded image
// batch (N, C, H, W) with pads on H and W only is a rank-3 walk.  The axis table (PadAxes) goes
// to the kernel by value; each thread maps indices with the same formulas as the CPU tables.
//
//  pad_kernel        one thread per output item (grid-stride, 64-bit): decompose the output
//                    index, map each axis to its source index (or the constant border), copy.
//  pad_grad_kernel   one thread per INPUT item (a gather: no atomics, deterministic): per axis
//                    the output indices that read this item form at most 3 ascending ranges
//                    (reflect: b - k, k + b, 2(d-1) - k + b; replicate: one range reaching the
//                    border; constant: k + b), and the thread sums g over their product in
//                    C order of g, from +0 — the CPU's serial order, so the same bits.
#include <cmath>
#include <limits>
#include <string>
#include <type_traits>

#include "common.cuh"

namespace graphc {
namespace cuda {
namespace {

enum PadMode : int { kConstant = 0, kReflect = 1, kReplicate = 2 };

// The merged axes (kMaxDims at most): x dims, before/after pads, x and y element strides.
struct PadAxes {
  int rank = 0;
  int mode = kConstant;
  int64_t xd[kMaxDims] = {}, yd[kMaxDims] = {}, before[kMaxDims] = {}, after[kMaxDims] = {};
  int64_t xs[kMaxDims] = {}, ys[kMaxDims] = {};
};

// make_plan's checks (runtime/cpu/pad.cc, same messages); returns the padded dims.
std::vector<int64_t> check_pads(const KernelArgs& args, const std::vector<int64_t>& xd,
                                const std::vector<int64_t>& pads, const std::string& mode) {
  if (mode != "constant" && mode != "reflect" && mode != "replicate") {
    args.fail("attr 'mode' must be 'constant', 'reflect' or 'replicate', got '" + mode + "'");
  }
  const size_t rank = xd.size();
  if (pads.size() != 2 * rank) {
    args.fail("attr 'pads' must hold 2 * rank = " + std::to_string(2 * rank) + " entries (a (before, after) pair "
              "per axis), got " + std::to_string(pads.size()));
  }
  std::vector<int64_t> yd;
  for (size_t i = 0; i < rank; ++i) {
    const int64_t b = pads[2 * i], a = pads[2 * i + 1], d = xd[i];
    const std::string where = " on axis " + std::to_string(i) + " (dim " + std::to_string(d) + ", pads (" +
                              std::to_string(b) + ", " + std::to_string(a) + "))";
    if (b < 0 || a < 0) args.fail("attr 'pads' has a negative entry" + where);
    if (b > 0 || a > 0) {
      if (mode == "reflect" && (b >= d || a >= d)) args.fail("mode 'reflect' needs pads < dim" + where);
      if (mode == "replicate" && d == 0) args.fail("mode 'replicate' cannot pad an empty axis" + where);
    }
    const std::string what = "the padded dim" + where;
    yd.push_back(cpu::checked_add(args, cpu::checked_add(args, d, b, what), a, what));
  }
  return yd;
}

// The merged axis table of a non-empty y (x may be empty only when y is).
PadAxes merge_axes(const KernelArgs& args, const std::vector<int64_t>& xd, const std::vector<int64_t>& pads,
                   const std::string& mode) {
  PadAxes p;
  p.mode = mode == "constant" ? kConstant : mode == "reflect" ? kReflect : kReplicate;
  std::vector<int64_t> mx, mb, ma;
  for (size_t i = 0; i < xd.size(); ++i) {
    const int64_t b = pads[2 * i], a = pads[2 * i + 1];
    if (!mx.empty() && b == 0 && a == 0 && mb.back() == 0 && ma.back() == 0) {
      mx.back() *= xd[i];  // two unpadded axes: one identity axis
      continue;
    }
    mx.push_back(xd[i]), mb.push_back(b), ma.push_back(a);
  }
  if (mx.empty()) mx = {1}, mb = {0}, ma = {0};  // a scalar: shape (1,), no pads
  if (mx.size() > static_cast<size_t>(kMaxDims)) {
    args.fail("pad over " + std::to_string(mx.size()) + " axes after merging the unpadded ones; the CUDA kernel "
              "takes " + std::to_string(kMaxDims) + " at most");
  }
  p.rank = static_cast<int>(mx.size());
  for (int i = 0; i < p.rank; ++i) p.xd[i] = mx[i], p.before[i] = mb[i], p.after[i] = ma[i];
  for (int i = 0; i < p.rank; ++i) p.yd[i] = p.xd[i] + p.before[i] + p.after[i];
  int64_t sx = 1, sy = 1;
  for (int i = p.rank - 1; i >= 0; --i) {
    p.xs[i] = sx, p.ys[i] = sy;
    sx *= p.xd[i], sy *= p.yd[i];
  }
  return p;
}

// border_value of runtime/cpu/pad.cc: a double attr as T, refused unless exact for ints/bool.
template <class T> T border_value(const KernelArgs& args, double v) {
  if constexpr (std::is_floating_point_v<T>) {
    if (std::is_same_v<T, float> && std::isfinite(v) && std::fabs(v) > std::numeric_limits<float>::max()) {
      const double inf_from = 0x1p128 - 0x1p103;  // FLT_MAX + half an ulp
      const float mag = std::fabs(v) >= inf_from ? std::numeric_limits<float>::infinity()
                                                 : std::numeric_limits<float>::max();
      return static_cast<T>(std::copysign(mag, static_cast<float>(v > 0 ? 1 : -1)));
    }
    return static_cast<T>(v);
  } else {
    const double lo = std::is_same_v<T, boolean> ? 0.0 : static_cast<double>(std::numeric_limits<T>::min());
    const double hi = std::is_same_v<T, boolean> ? 1.0 : static_cast<double>(std::numeric_limits<T>::max());
    const bool ok = std::isfinite(v) && v == std::trunc(v) && v >= lo &&
                    (std::is_same_v<T, int64_t> ? v < 9223372036854775808.0 : v <= hi);
    if (!ok) args.fail("attr 'value' " + std::to_string(v) + " is not exactly representable in the input's dtype");
    return static_cast<T>(v);
  }
}

// y[i] = x at the source of output item i, or `value` in a constant border.
template <class T> __global__ void pad_fwd(const PadAxes p, const T* __restrict__ x, T* __restrict__ y, T value,
                                           int64_t n) {
  GRAPHC_GRID_STRIDE(i, n) {
    int64_t r = i, off = 0;
    bool border = false;
    for (int ax = p.rank - 1; ax >= 0; --ax) {
      const int64_t q = r / p.yd[ax], o = r - q * p.yd[ax];
      r = q;
      const int64_t d = p.xd[ax];
      int64_t k = o - p.before[ax];
      if (k < 0 || k >= d) {
        if (p.mode == kConstant) {
          border = true;
          break;
        }
        if (p.mode == kReflect) k = k < 0 ? -k : 2 * (d - 1) - k;  // pads < d keeps k in [0, d)
        else k = k < 0 ? 0 : d - 1;
      }
      off += k * p.xs[ax];
    }
    y[i] = border ? value : x[off];
  }
}

// dx[i] = Σ g over the output items that read x item i, in C order of g, from +0.
template <class T> __global__ void pad_bwd(const PadAxes p, const T* __restrict__ g, T* __restrict__ dx, int64_t n) {
  GRAPHC_GRID_STRIDE(i, n) {
    // per axis: up to 3 ascending ranges [lo, hi) of output indices reading index k
    int64_t lo[kMaxDims][3], hi[kMaxDims][3], cnt[kMaxDims];
    int nr[kMaxDims];
    int64_t r = i, total = 1;
    for (int ax = p.rank - 1; ax >= 0; --ax) {
      const int64_t q = r / p.xd[ax], k = r - q * p.xd[ax];
      r = q;
      const int64_t d = p.xd[ax], b = p.before[ax], a = p.after[ax];
      int m = 0;
      if (p.mode == kReflect) {
        if (k >= 1 && k <= b) lo[ax][m] = b - k, hi[ax][m] = b - k + 1, ++m;
        lo[ax][m] = k + b, hi[ax][m] = k + b + 1, ++m;
        if (k <= d - 2 && k >= d - 1 - a) lo[ax][m] = 2 * (d - 1) - k + b, hi[ax][m] = lo[ax][m] + 1, ++m;
      } else if (p.mode == kReplicate) {
        lo[ax][0] = k == 0 ? 0 : k + b;
        hi[ax][0] = k == d - 1 ? b + d + a : k + b + 1;
        m = 1;
      } else {
        lo[ax][0] = k + b, hi[ax][0] = k + b + 1, m = 1;
      }
      nr[ax] = m;
      int64_t c = 0;
      for (int j = 0; j < m; ++j) c += hi[ax][j] - lo[ax][j];
      cnt[ax] = c;
      total *= c;
    }
    T s = T(0);
    for (int64_t t = 0; t < total; ++t) {  // t in mixed radix cnt[], the last axis fastest: C order of g
      int64_t u = t, off = 0;
      for (int ax = p.rank - 1; ax >= 0; --ax) {
        const int64_t q = u / cnt[ax];
        int64_t e = u - q * cnt[ax];
        u = q;
        int j = 0;
        while (j + 1 < nr[ax] && e >= hi[ax][j] - lo[ax][j]) e -= hi[ax][j] - lo[ax][j], ++j;
        off += (lo[ax][j] + e) * p.ys[ax];
      }
      s += g[off];
    }
    dx[i] = s;
  }
}

template <class T> Kernel pad_kernel(const KernelArgs& args) {
  args.expect_arity(1, 1);
  cpu::expect_dtype(args, args.out[0], args.in[0].dtype, "output");
  const attrs::Pad attr(args);
  if (std::is_same_v<T, boolean> && attr.mode != "constant") {
    args.fail("mode '" + attr.mode + "' takes float or int input, got bool");
  }
  const T value = border_value<T>(args, attr.value);
  const std::vector<int64_t> yd = check_pads(args, args.in[0].dims, attr.pads, attr.mode);
  cpu::expect_dims(args, args.out[0], yd, "output");
  const int64_t n = numel_of(yd);
  if (n == 0) return no_op_kernel();
  const PadAxes p = merge_axes(args, args.in[0].dims, attr.pads, attr.mode);
  const T* x = args.in[0].as<const T>();
  T* y = args.out[0].as<T>();
  const cudaStream_t stream = stream_of(args);
  const unsigned blocks = blocks_for(n);
  return [=]() {
    pad_fwd<T><<<blocks, kThreads, 0, stream>>>(p, x, y, value, n);
    GRAPHC_CUDA_LAUNCH_CHECK("pad");
  };
}

template <class T> Kernel pad_grad_kernel(const KernelArgs& args) {
  args.expect_arity(2, 1);
  cpu::expect_dtype(args, args.in[1], args.in[0].dtype, "input 1 (x)");
  cpu::expect_dtype(args, args.out[0], args.in[0].dtype, "output");
  cpu::expect_dims(args, args.out[0], args.in[1].dims, "output");
  const attrs::PadGrad attr(args);
  const std::vector<int64_t> yd = check_pads(args, args.in[1].dims, attr.pads, attr.mode);
  cpu::expect_dims(args, args.in[0], yd, "input 0 (the gradient)");
  const int64_t n = numel_of(args.out[0]);
  if (n == 0) return no_op_kernel();  // x non-empty implies g non-empty (g's dims >= x's)
  const PadAxes p = merge_axes(args, args.in[1].dims, attr.pads, attr.mode);
  const T* g = args.in[0].as<const T>();
  T* dx = args.out[0].as<T>();
  const cudaStream_t stream = stream_of(args);
  const unsigned blocks = blocks_for(n);
  return [=]() {
    pad_bwd<T><<<blocks, kThreads, 0, stream>>>(p, g, dx, n);
    GRAPHC_CUDA_LAUNCH_CHECK("pad_grad");
  };
}

}  // namespace

void register_pad_kernels(KernelRegistry& r) {
  add_typed<AllTypes>(r, "pad", [](auto tag, const KernelArgs& a) {
    return pad_kernel<typename decltype(tag)::type>(a);
  });
  add_typed<FloatTypes>(r, "pad_grad", [](auto tag, const KernelArgs& a) {
    return pad_grad_kernel<typename decltype(tag)::type>(a);
  });
}

}  // namespace cuda
}  // namespace graphc
