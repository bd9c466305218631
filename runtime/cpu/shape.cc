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
  if (args.has("shape")) expect_dims(args, args.out[0], args.attr_ints("shape"), "output");
  auto l2 = StridedLoop<1>::broadcast(args.out[0].dims, {args.in[0].dims});
  return strided_copy_kernel(args, l2);
}

Kernel transpose_kernel(const KernelArgs& args) {
  args.expect_arity(1, 1);
  expect_same_dtype(args);
  const auto& xd = args.in[0].dims;
  const int64_t rank = static_cast<int64_t>(xd.size());
  std::vector<int64_t> perm;
  if (args.has("perm")) {
    perm = args.attr_ints("perm");
  } else {
    for (int64_t i = rank - 1; i >= 0; --i) perm.push_back(i);
  }
  if (static_cast<int64_t>(perm.size()) != rank) args.fail("perm must have " + std::to_string(rank) + " entries");
  std::vector<bool> seen(rank, false);
  auto cs = contiguous_strides(xd);
  std::vector<int64_t> want;
  std::vector<std::array<int64_t, 1>> strides;
  for (int64_t& p : perm) {
    p = normalize_axis(args, p, rank, "perm entry");
    if (seen[p]) args.fail("perm is not a permutation");
    seen[p] = true;
    want.push_back(xd[p]);
    strides.push_back({cs[p]});
  }
  expect_dims(args, args.out[0], want, "output");
  return strided_copy_kernel(args, StridedLoop<1>::make(want, strides));
}

// numpy slice normalisation for one axis: returns (start, step, length).
struct Range { int64_t start, step, len; };
Range slice_range(int64_t start, int64_t end, int64_t step, int64_t dim) {
  int64_t s, e;
  if (step > 0) {
    s = start < 0 ? std::max<int64_t>(start + dim, 0) : std::min(start, dim);
    e = end < 0 ? std::max<int64_t>(end + dim, 0) : std::min(end, dim);
    return {s, step, e > s ? (e - s + step - 1) / step : 0};
  }
  s = start < 0 ? std::max<int64_t>(start + dim, -1) : std::min(start, dim - 1);
  e = end < 0 ? std::max<int64_t>(end + dim, -1) : std::min(end, dim - 1);
  return {s, step, s > e ? (s - e + (-step) - 1) / (-step) : 0};
}

// The strided loop that reads x[starts:ends:steps] along axes in C order.
StridedLoop<1> slice_loop(const KernelArgs& args, const std::vector<int64_t>& xd,
                          const TensorRef& sliced, const char* what) {
  const int64_t rank = static_cast<int64_t>(xd.size());
  std::vector<int64_t> starts = args.attr_ints("starts"), ends = args.attr_ints("ends");
  std::vector<int64_t> axes, steps;
  if (args.has("axes")) {
    axes = args.attr_ints("axes");
  } else {
    for (size_t i = 0; i < starts.size(); ++i) axes.push_back(static_cast<int64_t>(i));
  }
  steps = args.has("steps") ? args.attr_ints("steps") : std::vector<int64_t>(starts.size(), 1);
  if (ends.size() != starts.size() || axes.size() != starts.size() || steps.size() != starts.size()) {
    args.fail("starts, ends, axes and steps must have the same length");
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
  return strided_copy_kernel(args, slice_loop(args, args.in[0].dims, args.out[0], "output"));
}

// slice_grad(g, x): zeros of x's shape with g scattered where slice read.
Kernel slice_grad_kernel(const KernelArgs& args) {
  args.expect_arity(2, 1);
  expect_same_dtype(args);
  expect_dims(args, args.out[0], args.in[1].dims, "output");
  StridedLoop<1> loop = slice_loop(args, args.in[1].dims, args.in[0], "input 0 (the gradient)");
  const int threads = args.ctx.threads;
  const size_t nbytes = static_cast<size_t>(args.out[0].numel()) * dtype_size(args.out[0].dtype);
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
  const int64_t axis = normalize_axis(args, args.attr_int("axis"), rank);
  int64_t total = 0;
  for (size_t i = 0; i < parts.size(); ++i) {
    std::vector<int64_t> want = whole.dims;
    want[axis] = parts[i].dims.size() == whole.dims.size() ? parts[i].dims[axis] : -1;
    expect_dims(args, parts[i], want, (is_concat ? "input " : "output ") + std::to_string(i));
    total += want[axis];
  }
  if (!is_concat && args.has("sizes")) {
    auto sizes = args.attr_ints("sizes");
    if (sizes.size() != parts.size()) args.fail("sizes must have one entry per output");
    for (size_t i = 0; i < parts.size(); ++i) {
      if (sizes[i] != parts[i].dims[axis]) args.fail("sizes disagree with the output shapes");
    }
  }
  if (total != whole.dims[axis]) {
    args.fail("pieces along axis " + std::to_string(axis) + " sum to " + std::to_string(total) +
              ", expected " + std::to_string(whole.dims[axis]));
  }
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

Kernel copy_kernel(const KernelArgs& args) {
  // reshape_like has a second input whose shape only is read.
  if (args.step.op == "reshape_like") args.expect_arity(2, 1);
  else args.expect_arity(1, 1);
  expect_dtype(args, args.out[0], args.in[0].dtype, "output");
  if (args.in[0].numel() != args.out[0].numel()) {
    args.fail("output " + format_dims(args.out[0].dims) + " has a different size than input " +
              format_dims(args.in[0].dims));
  }
  const void* src = args.in[0].data;
  void* dst = args.out[0].data;
  const size_t n = static_cast<size_t>(args.in[0].numel()) * dtype_size(args.in[0].dtype);
  return [src, dst, n]() {
    if (n && src != dst) std::memmove(dst, src, n);
  };
}

}  // namespace
}  // namespace cpu

void register_shape_kernels(KernelRegistry& r) {
  for (DType t : cpu::kAllTypes) {
    r.add("broadcast_to", t, cpu::broadcast_to_kernel);
    r.add("transpose", t, cpu::transpose_kernel);
    r.add("slice", t, cpu::slice_kernel);
    r.add("concat", t, [](const KernelArgs& a) { return cpu::concat_split_kernel(a, true); });
    r.add("split", t, [](const KernelArgs& a) { return cpu::concat_split_kernel(a, false); });
    r.add("slice_grad", t, cpu::slice_grad_kernel);
    r.add("broadcast_like", t, cpu::broadcast_like_kernel);
    for (const char* op : {"reshape", "expand_dims", "squeeze", "stop_gradient", "reshape_like"}) {
      r.add(op, t, cpu::copy_kernel);
    }
  }
}

}  // namespace graphc
