// common.h — helpers shared by the CPU kernels: dtype dispatch, parallel loops (thread_pool.h),
// broadcast and strided iteration plans (computed once at prepare time).
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <exception>
#include <memory>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "../kernel_registry.h"
#include "../op_schema.h"  // typed attrs with the registry's defaults: attrs::<Op>(args)
#include "thread_pool.h"  // WorkerPool, parallel_for

namespace graphc {
namespace cpu {

template <class T> struct Tag { using type = T; };

// bool is stored as one byte 0/1.
using boolean = uint8_t;

template <class T> constexpr DType dtype_of();
template <> constexpr DType dtype_of<float>() { return DType::F32; }
template <> constexpr DType dtype_of<double>() { return DType::F64; }
template <> constexpr DType dtype_of<int32_t>() { return DType::I32; }
template <> constexpr DType dtype_of<int64_t>() { return DType::I64; }
template <> constexpr DType dtype_of<boolean>() { return DType::Bool; }

template <class F> auto dispatch_all(DType t, F&& f) {
  switch (t) {
    case DType::F32: return f(Tag<float>{});
    case DType::F64: return f(Tag<double>{});
    case DType::I32: return f(Tag<int32_t>{});
    case DType::I64: return f(Tag<int64_t>{});
    case DType::Bool: return f(Tag<boolean>{});
    default: throw std::invalid_argument("invalid dtype");
  }
}

// Types that move as raw bytes, by item size.
template <class F> auto dispatch_bytes(size_t itemsize, F&& f) {
  switch (itemsize) {
    case 1: return f(Tag<uint8_t>{});
    case 4: return f(Tag<uint32_t>{});
    case 8: return f(Tag<uint64_t>{});
    default: throw std::invalid_argument("unsupported item size");
  }
}

// Element counts and strides.  Every TensorRef a factory sees has passed
// check_tensor_refs (below): dims >= 0 and, unless a dim is 0, a product that fits in
// int64.  A zero-size tensor may still have huge other dims ((2**40, 0) or (0, 2**40,
// 2**40)), so no partial product of a tensor's dims is formed before its numel is
// known to be non-zero.

inline bool has_zero_dim(const std::vector<int64_t>& dims) {
  for (int64_t d : dims) {
    if (d == 0) return true;
  }
  return false;
}

inline int64_t numel_of(const std::vector<int64_t>& dims) {
  if (has_zero_dim(dims)) return 0;
  int64_t n = 1;
  for (int64_t d : dims) n *= d;
  return n;
}

inline int64_t numel_of(const TensorRef& t) { return numel_of(t.dims); }

// numel of dims, or -1 when a dim is negative or the product overflows int64.
inline int64_t checked_numel(const std::vector<int64_t>& dims) {
  for (int64_t d : dims) {
    if (d < 0) return -1;
  }
  if (has_zero_dim(dims)) return 0;
  int64_t n = 1;
  for (int64_t d : dims) {
    if (n > INT64_MAX / d) return -1;
    n *= d;
  }
  return n;
}

// a * b for non-negative operands, saturating at INT64_MAX (for cost heuristics only).
inline int64_t saturating_mul(int64_t a, int64_t b) {
  if (a == 0 || b == 0) return 0;
  return a > INT64_MAX / b ? INT64_MAX : a * b;
}

// Contiguous strides (elements) of dims; all 0 for a zero-size tensor, whose strides
// are never used to address anything (and whose partial products may overflow).
inline std::vector<int64_t> contiguous_strides(const std::vector<int64_t>& dims) {
  std::vector<int64_t> s(dims.size(), has_zero_dim(dims) ? 0 : 1);
  if (has_zero_dim(dims)) return s;
  for (int64_t i = static_cast<int64_t>(dims.size()) - 2; i >= 0; --i) s[i] = s[i + 1] * dims[i + 1];
  return s;
}

// Iterates a contiguous output of `dims` while N inputs are read with arbitrary element
// strides (0 for a broadcast dim, negative for reversed slices).  Built once; dims of size
// 1 are dropped and adjacent dims merged when every operand allows, so same-shape, scalar
// and trailing-broadcast cases become one or two flat loops.
template <int N> struct StridedLoop {
  static constexpr int64_t kStackRank = 16;
  std::vector<int64_t> dims;                      // collapsed; at least one dim
  std::vector<std::array<int64_t, N>> strides;    // per dim, per input
  std::array<int64_t, N> base{};                  // element offset of the first item
  int64_t numel = 0;

  int64_t inner() const { return dims.back(); }
  int64_t rows() const { return numel == 0 ? 0 : numel / dims.back(); }

  static StridedLoop make(const std::vector<int64_t>& out_dims,
                          const std::vector<std::array<int64_t, N>>& in_strides,
                          std::array<int64_t, N> base = {}) {
    StridedLoop L;
    L.base = base;
    L.numel = numel_of(out_dims);
    if (L.numel == 0) {
      // Nothing to visit: one empty dim, so run() returns at once and no merged dim
      // (a product of the other, possibly huge, dims) is ever formed.
      L.dims.push_back(0);
      L.strides.push_back({});
      return L;
    }
    for (size_t j = 0; j < out_dims.size(); ++j) {
      if (out_dims[j] == 1) continue;
      if (!L.dims.empty()) {
        bool mergeable = true;
        for (int k = 0; k < N; ++k) {
          if (L.strides.back()[k] != in_strides[j][k] * out_dims[j]) mergeable = false;
        }
        if (mergeable) {
          L.dims.back() *= out_dims[j];
          L.strides.back() = in_strides[j];
          continue;
        }
      }
      L.dims.push_back(out_dims[j]);
      L.strides.push_back(in_strides[j]);
    }
    if (L.dims.empty()) {
      L.dims.push_back(1);
      L.strides.push_back({});
    }
    return L;
  }

  // Numpy broadcasting of inputs (contiguous) against out_dims; throws on mismatch.
  static StridedLoop broadcast(const std::vector<int64_t>& out_dims,
                               const std::vector<std::vector<int64_t>>& in_dims) {
    const size_t r = out_dims.size();
    std::vector<std::array<int64_t, N>> strides(r);
    for (int k = 0; k < N; ++k) {
      const auto& d = in_dims[k];
      if (d.size() > r) {
        throw std::invalid_argument("input " + std::to_string(k) + " of shape " + format_dims(d) +
                                    " does not broadcast to " + format_dims(out_dims));
      }
      auto cs = contiguous_strides(d);
      for (size_t j = 0; j < r; ++j) {
        int64_t jj = static_cast<int64_t>(j) - static_cast<int64_t>(r - d.size());
        if (jj < 0 || d[jj] == 1) {
          strides[j][k] = 0;
        } else if (d[jj] == out_dims[j]) {
          strides[j][k] = cs[jj];
        } else {
          throw std::invalid_argument("input " + std::to_string(k) + " of shape " + format_dims(d) +
                                      " does not broadcast to " + format_dims(out_dims));
        }
      }
    }
    return make(out_dims, strides);
  }

  // f(out_offset, in_offsets, n, inner_strides) for each row segment; parallel over rows,
  // or over the inner dim when there is a single row.
  template <class F> void run(int threads, int64_t grain, F&& f) const {
    if (numel == 0) return;
    const int64_t n_inner = inner();
    const std::array<int64_t, N> s_inner = strides.back();
    if (dims.size() == 1) {
      parallel_for(n_inner, threads, grain, [&](int64_t b, int64_t e) {
        std::array<int64_t, N> off;
        for (int k = 0; k < N; ++k) off[k] = base[k] + b * s_inner[k];
        f(b, off, e - b, s_inner);
      });
      return;
    }
    const int64_t nrows = rows();
    const int64_t outer_rank = static_cast<int64_t>(dims.size()) - 1;
    parallel_for(nrows, threads, std::max<int64_t>(1, grain / std::max<int64_t>(n_inner, 1)),
                 [&](int64_t b, int64_t e) {
      // Multi-index of row b over the outer dims: on the stack up to kStackRank outer dims
      // (every collapsed loop in practice), so a run allocates nothing.
      int64_t idx_stack[kStackRank];
      std::vector<int64_t> idx_heap;
      if (outer_rank > kStackRank) idx_heap.resize(static_cast<size_t>(outer_rank));
      int64_t* const idx = outer_rank > kStackRank ? idx_heap.data() : idx_stack;
      std::array<int64_t, N> off = base;
      int64_t rem = b;
      for (int64_t j = outer_rank - 1; j >= 0; --j) {
        idx[j] = rem % dims[j];
        rem /= dims[j];
        for (int k = 0; k < N; ++k) off[k] += idx[j] * strides[j][k];
      }
      for (int64_t row = b; row < e; ++row) {
        f(row * n_inner, off, n_inner, s_inner);
        for (int64_t j = outer_rank - 1; j >= 0; --j) {
          if (++idx[j] < dims[j]) {
            for (int k = 0; k < N; ++k) off[k] += strides[j][k];
            break;
          }
          idx[j] = 0;
          for (int k = 0; k < N; ++k) off[k] -= (dims[j] - 1) * strides[j][k];
        }
      }
    });
  }
};

// Strided copy of raw items: out (contiguous) <- in with the loop's strides.
template <class T> void strided_copy(const StridedLoop<1>& L, T* out, const T* in, int threads) {
  L.run(threads, 1 << 15, [&](int64_t o, const std::array<int64_t, 1>& off, int64_t n,
                              const std::array<int64_t, 1>& s) {
    const T* src = in + off[0];
    T* dst = out + o;
    if (s[0] == 1) {
      std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(T));
    } else {
      const int64_t st = s[0];
      for (int64_t i = 0; i < n; ++i) dst[i] = src[i * st];
    }
  });
}

inline int64_t normalize_axis(const KernelArgs& a, int64_t axis, int64_t rank, const char* what = "axis") {
  if (axis < -rank || axis >= std::max<int64_t>(rank, 1) || (rank == 0 && axis != 0 && axis != -1)) {
    a.fail(std::string(what) + " " + std::to_string(axis) + " is out of range for rank " +
           std::to_string(rank));
  }
  return axis < 0 ? axis + rank : axis;
}

inline void expect_dtype(const KernelArgs& a, const TensorRef& t, DType want, const std::string& what) {
  if (t.dtype != want) {
    a.fail(what + " must be " + dtype_name(want) + ", got " + dtype_name(t.dtype));
  }
}

inline void expect_dims(const KernelArgs& a, const TensorRef& t, const std::vector<int64_t>& want,
                        const std::string& what) {
  if (t.dims != want) {
    a.fail(what + " must have shape " + format_dims(want) + ", got " + format_dims(t.dims));
  }
}

inline std::string shapes_text(const std::vector<std::vector<int64_t>>& shapes) {
  std::string s;
  for (size_t i = 0; i < shapes.size(); ++i) s += (i ? ", " : "") + format_dims(shapes[i]);
  return s;
}

// numpy's broadcast of shapes (right-aligned; a 1 stretches, 0 only meets 0 or 1).
inline std::vector<int64_t> broadcast_dims(const KernelArgs& a, const std::vector<std::vector<int64_t>>& shapes,
                                           const std::string& what = "inputs") {
  size_t r = 0;
  for (const auto& s : shapes) r = std::max(r, s.size());
  std::vector<int64_t> out(r, 1);
  for (const auto& s : shapes) {
    for (size_t j = 0; j < s.size(); ++j) {
      int64_t& o = out[r - s.size() + j];
      if (s[j] == 1 || s[j] == o) continue;
      if (o != 1) a.fail(what + " of shapes " + shapes_text(shapes) + " do not broadcast together");
      o = s[j];
    }
  }
  return out;
}

// The output of an elementwise op must have exactly the broadcast shape of its inputs.
inline void expect_broadcast_output(const KernelArgs& a, const TensorRef& out,
                                    const std::vector<std::vector<int64_t>>& in_shapes) {
  expect_dims(a, out, broadcast_dims(a, in_shapes), "output (the broadcast of the inputs)");
}

inline void expect_rank_at_least(const KernelArgs& a, const TensorRef& t, size_t rank, const std::string& what) {
  if (t.dims.size() < rank) {
    a.fail(what + " must have rank >= " + std::to_string(rank) + ", got shape " + format_dims(t.dims));
  }
}

// a + b for non-negative sizes; fails instead of overflowing.
inline int64_t checked_add(const KernelArgs& a, int64_t x, int64_t y, const std::string& what) {
  if (x > INT64_MAX - y) a.fail(what + " overflows int64");
  return x + y;
}

// What every factory may rely on before it looks at a single dim: valid dtypes, dims
// >= 0 whose product fits in int64 (or has a 0), storage for every non-empty tensor,
// and input 0 (output 0 for ops without inputs) of the dtype the kernel was registered
// for.  The executor's plan validation already promises most of this; a kernel is also
// the last line of defence for callers that build KernelArgs themselves.
inline void check_tensor_refs(const KernelArgs& a, DType registered) {
  auto check = [&](const TensorRef& t, const std::string& what) {
    if (!dtype_valid(t.dtype)) a.fail(what + " has an invalid dtype");
    if (checked_numel(t.dims) < 0) a.fail(what + " has invalid dims " + format_dims(t.dims));
    if (t.data == nullptr && numel_of(t.dims) > 0) a.fail(what + " has no storage");
  };
  for (size_t i = 0; i < a.in.size(); ++i) check(a.in[i], "input " + std::to_string(i));
  for (size_t i = 0; i < a.out.size(); ++i) check(a.out[i], "output " + std::to_string(i));
  for (size_t i = 0; i < a.ws.size(); ++i) check(a.ws[i], "workspace " + std::to_string(i));
  const TensorRef* key = !a.in.empty() ? &a.in[0] : (!a.out.empty() ? &a.out[0] : nullptr);
  if (key == nullptr) a.fail("has neither inputs nor outputs");
  if (key->dtype != registered) {
    a.fail(std::string(a.in.empty() ? "output 0" : "input 0") + " must be " + dtype_name(registered) + ", got " +
           dtype_name(key->dtype));
  }
}

// Memory a kernel allocates when it is prepared and reuses on every run, so that a run
// allocates nothing (docs/runtime.md, "Allocation"); the kernel's copies share it.  Zeroed
// once, at allocation: a run that needs zeros writes them.
template <class T> class KernelBuffer {
 public:
  KernelBuffer() = default;
  explicit KernelBuffer(int64_t count)
      : data_(std::make_shared<std::vector<T>>(static_cast<size_t>(std::max<int64_t>(count, 0)))) {}
  T* data() const { return data_ ? data_->data() : nullptr; }

 private:
  std::shared_ptr<std::vector<T>> data_;
};

// Starts the worker threads a kernel of `threads` may hand work to, when it is prepared: its
// runs then create no thread (WorkerPool::reserve).
inline void reserve_workers(const KernelArgs& a) { WorkerPool::get().reserve(a.ctx.threads - 1); }

// Registers a factory behind check_tensor_refs: every CPU kernel goes through here.
inline void add_kernel(KernelRegistry& r, const std::string& op, DType dtype, KernelFactory factory) {
  r.add(op, dtype, [dtype, f = std::move(factory)](const KernelArgs& a) {
    check_tensor_refs(a, dtype);
    reserve_workers(a);
    return f(a);
  });
}

// The dtypes op's schema dispatches on (the generated op_schema.h): kernels register for
// exactly these, so no dtype list is written twice.  An op the schema does not know gets
// none (and the schema coverage test names it).
inline std::vector<DType> schema_dtypes(const char* op) {
  std::vector<DType> out;
  if (const schema::OpInfo* info = schema::find_op(op)) {
    for (DType t : {DType::F32, DType::F64, DType::I32, DType::I64, DType::Bool}) {
      if (schema::allows_dtype(*info, t)) out.push_back(t);
    }
  }
  return out;
}

// Type sets a kernel template is instantiated for: supports(t) at registration, and
// dispatch(t, f) calls f(Tag<T>{}) for the C++ type of t.
struct FloatTypes {
  static bool supports(DType t) { return t == DType::F32 || t == DType::F64; }
  template <class F> static auto dispatch(DType t, F&& f) {
    if (t == DType::F64) return f(Tag<double>{});
    return f(Tag<float>{});
  }
};
struct NumericTypes {
  static bool supports(DType t) { return t != DType::Bool && dtype_valid(t); }
  template <class F> static auto dispatch(DType t, F&& f) {
    switch (t) {
      case DType::F64: return f(Tag<double>{});
      case DType::I32: return f(Tag<int32_t>{});
      case DType::I64: return f(Tag<int64_t>{});
      default: return f(Tag<float>{});
    }
  }
};
struct AllTypes {
  static bool supports(DType t) { return dtype_valid(t); }
  template <class F> static auto dispatch(DType t, F&& f) { return dispatch_all(t, std::forward<F>(f)); }
};

// Registers make(Tag<T>{}, args) for every dtype the schema allows for op and Types
// supports (a schema dtype without an implementation is left out, for the coverage test
// to report).
template <class Types, class Make> void add_typed(KernelRegistry& r, const char* op, Make make) {
  for (DType t : schema_dtypes(op)) {
    if (!Types::supports(t)) continue;
    add_kernel(r, op, t, [t, make](const KernelArgs& a) -> Kernel {
      return Types::dispatch(t, [&](auto tag) -> Kernel { return make(tag, a); });
    });
  }
}

// A kernel with nothing to do (every output is empty).
inline Kernel no_op_kernel() {
  return [] {};
}


}  // namespace cpu
}  // namespace graphc
