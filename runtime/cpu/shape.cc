// shape.cc — data movement: broadcast_to, transpose, slice, concat, split, and a copy
// kernel for the view ops (reshape, expand_dims, squeeze, stop_gradient) for plans that
// materialise them instead of aliasing.  Everything moves raw items by item size.
#include "common.h"

namespace graphc {
namespace cpu {
namespace {

Kernel strided_copy_kernel(const KernelArgs& args, const StridedLoop<1>& loop) {
  const TensorRef &x = args.in[0], &y = args.out[0];
  const int threads = args.ctx.threads;
  return dispatch_bytes(dtype_size(x.dtype), [&](auto tag) -> Kernel {
    using T = typename decltype(tag)::type;
    const T* px = x.as<const T>();
    T* py = y.as<T>();
    return [loop, px, py, threads]() { strided_copy<T>(loop, py, px, threads); };
  });
}

void expect_same_dtype(const KernelArgs& a) {
  for (size_t i = 0; i < a.in.size(); ++i) expect_dtype(a, a.in[i], a.in[0].dtype, "input " + std::to_string(i));
  for (size_t i = 0; i < a.out.size(); ++i) expect_dtype(a, a.out[i], a.in[0].dtype, "output " + std::to_string(i));
}

Kernel broadcast_to_kernel(const KernelArgs& args) {
  args.expect_arity(1, 1);
  expect_same_dtype(args);
  expect_dims(args, args.out[0], attrs::BroadcastTo(args).shape, "output (attr 'shape')");
  auto loop = StridedLoop<1>::broadcast(args.out[0].dims, {args.in[0].dims});
  return strided_copy_kernel(args, loop);
}

Kernel transpose_kernel(const KernelArgs& args) {
  args.expect_arity(1, 1);
  expect_same_dtype(args);
  const auto& xd = args.in[0].dims;
  const int64_t rank = static_cast<int64_t>(xd.size());
  const attrs::Transpose attr(args);
  std::vector<int64_t> perm = attr.perm;
  if (!attr.has_perm) {
    for (int64_t i = rank - 1; i >= 0; --i) perm.push_back(i);
  }
  if (static_cast<int64_t>(perm.size()) != rank) {
    args.fail("attr 'perm' must have " + std::to_string(rank) + " entries (the input's rank), got " +
              std::to_string(perm.size()));
  }
  std::vector<bool> seen(rank, false);
  auto cs = contiguous_strides(xd);
  std::vector<int64_t> want;
  std::vector<std::array<int64_t, 1>> strides;
  for (int64_t p : perm) {
    if (p < 0 || p >= rank || seen[p]) {
      args.fail("attr 'perm' " + format_dims(perm) + " is not a permutation of 0.." + std::to_string(rank - 1));
    }
    seen[p] = true;
    want.push_back(xd[p]);
    strides.push_back({cs[p]});
  }
  expect_dims(args, args.out[0], want, "output");
  return strided_copy_kernel(args, StridedLoop<1>::make(want, strides));
}

// Python's slice(start, end, step).indices(dim) for one axis, then its length: returns
// (start, step, length).  Safe for any int64 attrs (step = 2**62, start = -2**63, ...):
// start + dim cannot overflow for start < 0 <= dim, and the length is computed from the
// clamped span and |step| in unsigned arithmetic (|INT64_MIN| does not fit in int64).
// A range of length <= 1 reports step 1, so a huge step never reaches a stride product.
struct Range { int64_t start, step, len; };
Range slice_range(int64_t start, int64_t end, int64_t step, int64_t dim) {
  int64_t s, e;
  uint64_t span = 0;
  if (step > 0) {
    s = start < 0 ? std::max<int64_t>(start + dim, 0) : std::min(start, dim);
    e = end < 0 ? std::max<int64_t>(end + dim, 0) : std::min(end, dim);
    if (e > s) span = static_cast<uint64_t>(e - s);
  } else {
    s = start < 0 ? std::max<int64_t>(start + dim, -1) : std::min(start, dim - 1);
    e = end < 0 ? std::max<int64_t>(end + dim, -1) : std::min(end, dim - 1);
    if (s > e) span = static_cast<uint64_t>(s - e);
  }
  if (span == 0) return {0, 1, 0};
  const uint64_t mag = step > 0 ? static_cast<uint64_t>(step) : 0 - static_cast<uint64_t>(step);
  const int64_t len = static_cast<int64_t>((span - 1) / mag + 1);  // <= span <= dim
  return {s, len > 1 ? step : 1, len};
}

// The strided loop that reads x[starts:ends:steps] along axes in C order.  Attrs is
// attrs::Slice or attrs::SliceGrad (the same attrs).
template <class Attrs>
StridedLoop<1> slice_loop(const KernelArgs& args, const std::vector<int64_t>& xd,
                          const TensorRef& sliced, const char* what) {
  const int64_t rank = static_cast<int64_t>(xd.size());
  const Attrs attr(args);
  const std::vector<int64_t>& starts = attr.starts;
  const std::vector<int64_t>& ends = attr.ends;
  std::vector<int64_t> axes = attr.axes, steps = attr.steps;
  if (!attr.has_axes) {
    for (size_t i = 0; i < starts.size(); ++i) axes.push_back(static_cast<int64_t>(i));
  }
  if (!attr.has_steps) steps.assign(starts.size(), 1);
  if (ends.size() != starts.size() || axes.size() != starts.size() || steps.size() != starts.size()) {
    args.fail("attrs starts, ends, axes and steps must have one length, got " + std::to_string(starts.size()) +
              ", " + std::to_string(ends.size()) + ", " + std::to_string(axes.size()) + " and " +
              std::to_string(steps.size()));
  }
  auto cs = contiguous_strides(xd);
  std::vector<Range> ranges(rank);
  for (int64_t i = 0; i < rank; ++i) ranges[i] = {0, 1, xd[i]};
  std::vector<bool> seen(rank, false);
  for (size_t i = 0; i < starts.size(); ++i) {
    int64_t ax = normalize_axis(args, axes[i], rank, "axes entry");
    if (seen[ax]) args.fail("axis " + std::to_string(axes[i]) + " is sliced twice");
    seen[ax] = true;
    if (steps[i] == 0) args.fail("slice step must not be 0");
    ranges[ax] = slice_range(starts[i], ends[i], steps[i], xd[ax]);
  }
  std::vector<int64_t> want;
  std::vector<std::array<int64_t, 1>> strides;
  int64_t base = 0;
  for (int64_t i = 0; i < rank; ++i) {
    want.push_back(ranges[i].len);
    strides.push_back({ranges[i].step * cs[i]});
    if (ranges[i].len > 0) base += ranges[i].start * cs[i];
  }
  expect_dims(args, sliced, want, what);
  return StridedLoop<1>::make(want, strides, {base});
}

Kernel slice_kernel(const KernelArgs& args) {
  args.expect_arity(1, 1);
  expect_same_dtype(args);
  return strided_copy_kernel(args, slice_loop<attrs::Slice>(args, args.in[0].dims, args.out[0], "output"));
}

// slice_grad(g, x): zeros of x's shape with g scattered where slice read.
Kernel slice_grad_kernel(const KernelArgs& args) {
  args.expect_arity(2, 1);
  expect_same_dtype(args);
  expect_dims(args, args.out[0], args.in[1].dims, "output");
  StridedLoop<1> loop = slice_loop<attrs::SliceGrad>(args, args.in[1].dims, args.in[0], "input 0 (the gradient)");
  if (numel_of(args.out[0]) == 0) return no_op_kernel();
  const int threads = args.ctx.threads;
  const size_t nbytes = static_cast<size_t>(numel_of(args.out[0])) * dtype_size(args.out[0].dtype);
  return dispatch_bytes(dtype_size(args.in[0].dtype), [&](auto tag) -> Kernel {
    using T = typename decltype(tag)::type;
    const T* pg = args.in[0].as<const T>();
    T* py = args.out[0].as<T>();
    return [loop, pg, py, threads, nbytes]() {
      if (nbytes) std::memset(py, 0, nbytes);
      loop.run(threads, 1 << 15, [&](int64_t o, const std::array<int64_t, 1>& off, int64_t n,
                                     const std::array<int64_t, 1>& s) {
        T* dst = py + off[0];
        const T* src = pg + o;
        for (int64_t i = 0; i < n; ++i) dst[i * s[0]] = src[i];
      });
    };
  });
}

Kernel broadcast_like_kernel(const KernelArgs& args) {
  args.expect_arity(2, 1);
  expect_dims(args, args.out[0], args.in[1].dims, "output");
  expect_dtype(args, args.out[0], args.in[0].dtype, "output");
  return strided_copy_kernel(args, StridedLoop<1>::broadcast(args.out[0].dims, {args.in[0].dims}));
}

// concat/split: outer blocks of (dim_i * inner) contiguous items per piece.
struct Piece { int64_t offset; int64_t width; };  // within one outer row, in items

Kernel concat_split_kernel(const KernelArgs& args, bool is_concat) {
  if (args.in.empty() || args.out.empty()) args.fail("needs at least one input and one output");
  if (is_concat && args.out.size() != 1) args.fail("has exactly one output");
  if (!is_concat && args.in.size() != 1) args.fail("has exactly one input");
  expect_same_dtype(args);
  const TensorRef& whole = is_concat ? args.out[0] : args.in[0];
  const std::vector<TensorRef>& parts = is_concat ? args.in : args.out;
  const int64_t rank = static_cast<int64_t>(whole.dims.size());
  if (rank == 0) args.fail("cannot work on a scalar");
  const int64_t axis = normalize_axis(args, is_concat ? attrs::Concat(args).axis : attrs::Split(args).axis, rank);
  int64_t total = 0;
  for (size_t i = 0; i < parts.size(); ++i) {
    const std::string what = (is_concat ? "input " : "output ") + std::to_string(i);
    if (parts[i].dims.size() != whole.dims.size()) {
      args.fail(what + " must have rank " + std::to_string(rank) + ", got shape " + format_dims(parts[i].dims));
    }
    std::vector<int64_t> want = whole.dims;
    want[axis] = parts[i].dims[axis];
    expect_dims(args, parts[i], want, what);
    total = checked_add(args, total, want[axis], "the pieces' sizes along axis " + std::to_string(axis));
  }
  if (!is_concat) {
    const std::vector<int64_t> sizes = attrs::Split(args).sizes;
    if (sizes.size() != parts.size()) {
      args.fail("attr 'sizes' must have one entry per output (" + std::to_string(parts.size()) + "), got " +
                std::to_string(sizes.size()));
    }
    for (size_t i = 0; i < parts.size(); ++i) {
      if (sizes[i] != parts[i].dims[axis]) {
        args.fail("output " + std::to_string(i) + " must have size " + std::to_string(sizes[i]) + " along axis " +
                  std::to_string(axis) + " (attr 'sizes'), got shape " + format_dims(parts[i].dims));
      }
    }
  }
  if (total != whole.dims[axis]) {
    args.fail("pieces along axis " + std::to_string(axis) + " sum to " + std::to_string(total) +
              ", expected " + std::to_string(whole.dims[axis]));
  }
  // Empty: nothing to copy, and the loop below would walk the other dims ((2**40, 0)
  // tensors: 2**40 rows of nothing).
  if (numel_of(whole) == 0) return no_op_kernel();
  int64_t outer = 1, inner = 1;
  for (int64_t i = 0; i < axis; ++i) outer *= whole.dims[i];
  for (int64_t i = axis + 1; i < rank; ++i) inner *= whole.dims[i];
  const int64_t row = whole.dims[axis] * inner;
  std::vector<Piece> pieces;
  std::vector<void*> ptrs;
  int64_t off = 0;
  for (const auto& p : parts) {
    pieces.push_back({off, p.dims[axis] * inner});
    off += p.dims[axis] * inner;
    ptrs.push_back(p.data);
  }
  const int threads = args.ctx.threads;
  const size_t item = dtype_size(whole.dtype);
  uint8_t* pw = static_cast<uint8_t*>(whole.data);
  return [=]() {
    parallel_for(outer, threads, std::max<int64_t>(1, (1 << 15) / std::max<int64_t>(row, 1)),
                 [&](int64_t b, int64_t e) {
      for (int64_t o = b; o < e; ++o) {
        for (size_t i = 0; i < pieces.size(); ++i) {
          const size_t n = static_cast<size_t>(pieces[i].width) * item;
          if (n == 0) continue;
          uint8_t* w = pw + (o * row + pieces[i].offset) * item;
          uint8_t* p = static_cast<uint8_t*>(ptrs[i]) + o * pieces[i].width * item;
          if (is_concat) std::memcpy(w, p, n);
          else std::memcpy(p, w, n);
        }
      }
    });
  };
}

// The output shape each view op defines from its input and attrs.
std::vector<int64_t> reshape_dims(const KernelArgs& args, int64_t numel) {
  std::vector<int64_t> target = attrs::Reshape(args).shape;
  int64_t infer_at = -1, known = 1;
  for (size_t i = 0; i < target.size(); ++i) {
    const int64_t d = target[i];
    if (d == -1 && infer_at < 0) {
      infer_at = static_cast<int64_t>(i);
      continue;
    }
    if (d < 0) args.fail("attr 'shape' " + format_dims(target) + " has a negative dim or a second -1");
    known = saturating_mul(known, d);
  }
  if (infer_at >= 0) {
    if (known == 0 || known == INT64_MAX || numel % known != 0) {
      args.fail("cannot reshape " + std::to_string(numel) + " elements into attr 'shape' " + format_dims(target));
    }
    target[infer_at] = numel / known;
  } else if (known != numel) {
    args.fail("cannot reshape " + std::to_string(numel) + " elements into attr 'shape' " + format_dims(target));
  }
  return target;
}

std::vector<int64_t> expand_dims_dims(const KernelArgs& args, const std::vector<int64_t>& xd) {
  const std::vector<int64_t> axes = attrs::ExpandDims(args).axes;
  const int64_t rank = static_cast<int64_t>(xd.size() + axes.size());
  std::vector<bool> is_new(rank, false);
  for (int64_t a : axes) {
    const int64_t ax = normalize_axis(args, a, rank, "axes entry");
    if (is_new[ax]) args.fail("attr 'axes' " + format_dims(axes) + " repeats an axis");
    is_new[ax] = true;
  }
  std::vector<int64_t> out;
  size_t j = 0;
  for (int64_t i = 0; i < rank; ++i) out.push_back(is_new[i] ? 1 : xd[j++]);
  return out;
}

std::vector<int64_t> squeeze_dims(const KernelArgs& args, const std::vector<int64_t>& xd) {
  const int64_t rank = static_cast<int64_t>(xd.size());
  std::vector<bool> drop(rank, false);
  const attrs::Squeeze attr(args);
  if (!attr.has_axes) {
    for (int64_t i = 0; i < rank; ++i) drop[i] = xd[i] == 1;
  } else {
    for (int64_t a : attr.axes) {
      const int64_t ax = normalize_axis(args, a, rank, "axes entry");
      if (rank == 0) continue;
      if (xd[ax] != 1) args.fail("cannot squeeze axis " + std::to_string(ax) + " of size " + std::to_string(xd[ax]));
      drop[ax] = true;
    }
  }
  std::vector<int64_t> out;
  for (int64_t i = 0; i < rank; ++i) {
    if (!drop[i]) out.push_back(xd[i]);
  }
  return out;
}

// reshape, expand_dims, squeeze, stop_gradient, reshape_like: plans alias them (views),
// but a plan may also materialise them; then the bytes are copied as they are, into the
// output shape the op defines (out_dims(args), called once the arity is checked).
template <class OutDims> Kernel copy_kernel(const KernelArgs& args, size_t n_in, OutDims out_dims) {
  args.expect_arity(n_in, 1);
  const TensorRef &x = args.in[0], &y = args.out[0];
  expect_dtype(args, y, x.dtype, "output");
  expect_dims(args, y, out_dims(args), "output");
  if (numel_of(x) != numel_of(y)) {
    args.fail("output " + format_dims(y.dims) + " has a different size than input " + format_dims(x.dims));
  }
  const void* src = x.data;
  void* dst = y.data;
  const size_t n = static_cast<size_t>(numel_of(x)) * dtype_size(x.dtype);
  return [src, dst, n]() {
    if (n && src != dst) std::memmove(dst, src, n);
  };
}

}  // namespace
}  // namespace cpu

void register_shape_kernels(KernelRegistry& r) {
  using cpu::add_kernel;
  using cpu::copy_kernel;
  using cpu::schema_dtypes;
  // Data movement is dtype-agnostic (raw items by size): one factory for every dtype the
  // schema allows.
  for (DType t : schema_dtypes("broadcast_to")) add_kernel(r, "broadcast_to", t, cpu::broadcast_to_kernel);
  for (DType t : schema_dtypes("transpose")) add_kernel(r, "transpose", t, cpu::transpose_kernel);
  for (DType t : schema_dtypes("slice")) add_kernel(r, "slice", t, cpu::slice_kernel);
  for (DType t : schema_dtypes("concat")) {
    add_kernel(r, "concat", t, [](const KernelArgs& a) { return cpu::concat_split_kernel(a, true); });
  }
  for (DType t : schema_dtypes("split")) {
    add_kernel(r, "split", t, [](const KernelArgs& a) { return cpu::concat_split_kernel(a, false); });
  }
  for (DType t : schema_dtypes("slice_grad")) add_kernel(r, "slice_grad", t, cpu::slice_grad_kernel);
  for (DType t : schema_dtypes("broadcast_like")) add_kernel(r, "broadcast_like", t, cpu::broadcast_like_kernel);
  for (DType t : schema_dtypes("reshape")) {
    add_kernel(r, "reshape", t, [](const KernelArgs& a) {
      return copy_kernel(a, 1, [](const KernelArgs& b) { return cpu::reshape_dims(b, cpu::numel_of(b.in[0])); });
    });
  }
  for (DType t : schema_dtypes("expand_dims")) {
    add_kernel(r, "expand_dims", t, [](const KernelArgs& a) {
      return copy_kernel(a, 1, [](const KernelArgs& b) { return cpu::expand_dims_dims(b, b.in[0].dims); });
    });
  }
  for (DType t : schema_dtypes("squeeze")) {
    add_kernel(r, "squeeze", t, [](const KernelArgs& a) {
      return copy_kernel(a, 1, [](const KernelArgs& b) { return cpu::squeeze_dims(b, b.in[0].dims); });
    });
  }
  for (DType t : schema_dtypes("stop_gradient")) {
    add_kernel(r, "stop_gradient", t, [](const KernelArgs& a) {
      return copy_kernel(a, 1, [](const KernelArgs& b) { return b.in[0].dims; });
    });
  }
  for (DType t : schema_dtypes("reshape_like")) {
    add_kernel(r, "reshape_like", t, [](const KernelArgs& a) {  // only the shape of input 1 is read
      return copy_kernel(a, 2, [](const KernelArgs& b) { return b.in[1].dims; });
    });
  }
}

}  // namespace graphc
