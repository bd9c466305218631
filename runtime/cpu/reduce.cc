// reduce.cc — sum, mean, max, min over arbitrary axes, and argmin along one axis.
//
// min runs the plain loops (no ISA build of its own): comparisons are exact, so it gives the
// same bits as any vectorised order would.
//
// Prepare merges adjacent dims that are all reduced or all kept.  One reduced group gives
// the (outer, reduce, inner) form with contiguous loops; several groups fall back to a
// precomputed list of reduced offsets.  Summation order never depends on the thread
// count: a long reduce axis is cut into fixed-size blocks whose partials are combined in
// order, so threads=1 and threads=N give identical bits.  Float loops run the active ISA's
// build (elementwise_loops.inc): inside a block, kReduceLanes interleaved partial sums, an
// order fixed by the shape alone, so every ISA gives identical bits too.
#include <limits>

#include "common.h"
#include "elementwise_ops.h"
#include "fused_program.h"
#include "reduce_checks.h"

namespace graphc {
namespace cpu {
namespace {

constexpr int64_t kBlock = kReduceBlock;  // fixed, so results are deterministic (and fused_reduce's)

enum class ReduceOp { Sum, Mean, Max, Min };

template <class T> struct AccOf { using type = T; };
template <> struct AccOf<float> { using type = double; };
template <> struct AccOf<int32_t> { using type = int64_t; };

template <class A> A wrap_add_acc(A a, A b) {
  if constexpr (std::is_integral_v<A>) {
    using U = std::make_unsigned_t<A>;
    return static_cast<A>(static_cast<U>(a) + static_cast<U>(b));
  } else {
    return a + b;
  }
}

template <ReduceOp R, class A> inline A combine(A acc, A v) {
  if constexpr (R == ReduceOp::Max) {
    if constexpr (std::is_floating_point_v<A>) {
      if (acc != acc) return acc;
      if (v != v) return v;
    }
    return v > acc ? v : acc;
  } else if constexpr (R == ReduceOp::Min) {
    if constexpr (std::is_floating_point_v<A>) {
      if (acc != acc) return acc;
      if (v != v) return v;
    }
    return v < acc ? v : acc;
  } else {
    return wrap_add_acc(acc, v);
  }
}

struct ReducePlan {
  int64_t outer = 1, red = 1, inner = 1;  // fast form
  bool general = false;
  std::vector<int64_t> red_offsets;   // general: element offsets of every reduced position
  StridedLoop<1> kept;                // general: offsets of each output's first element
};

ReducePlan make_plan(const KernelArgs& args, const std::vector<int64_t>& dims, std::vector<bool> reduced) {
  // Drop size-1 dims (they change nothing) and merge runs of equal kind.
  std::vector<int64_t> d;
  std::vector<bool> k;
  std::vector<int64_t> stride;
  auto cs = contiguous_strides(dims);
  for (size_t i = 0; i < dims.size(); ++i) {
    if (dims[i] == 1) continue;
    if (!d.empty() && k.back() == reduced[i]) {
      d.back() *= dims[i];
      stride.back() = cs[i];
    } else {
      d.push_back(dims[i]);
      k.push_back(reduced[i]);
      stride.push_back(cs[i]);
    }
  }
  ReducePlan p;
  size_t groups = 0;
  for (bool b : k) groups += b;
  if (groups <= 1) {
    size_t j = 0;
    for (; j < d.size() && !k[j]; ++j) p.outer *= d[j];
    if (j < d.size() && k[j]) p.red = d[j++];
    for (; j < d.size(); ++j) p.inner *= d[j];
    return p;
  }
  p.general = true;
  std::vector<int64_t> rdims, rstr, kdims;
  std::vector<std::array<int64_t, 1>> kstr;
  for (size_t j = 0; j < d.size(); ++j) {
    if (k[j]) {
      rdims.push_back(d[j]);
      rstr.push_back(stride[j]);
    } else {
      kdims.push_back(d[j]);
      kstr.push_back({stride[j]});
    }
  }
  int64_t nred = numel_of(rdims);
  if (nred > (int64_t(1) << 28)) args.fail("reduction too large for the multi-axis path");
  p.red = nred;
  p.red_offsets.reserve(nred);
  std::vector<int64_t> idx(rdims.size(), 0);
  for (int64_t r = 0; r < nred; ++r) {
    int64_t off = 0;
    for (size_t j = 0; j < rdims.size(); ++j) off += idx[j] * rstr[j];
    p.red_offsets.push_back(off);
    for (int64_t j = static_cast<int64_t>(rdims.size()) - 1; j >= 0; --j) {
      if (++idx[j] < rdims[j]) break;
      idx[j] = 0;
    }
  }
  p.kept = StridedLoop<1>::make(kdims, kstr);
  return p;
}

template <ReduceOp R, class T, class O>
Kernel reduce_prepared(const KernelArgs& args, const std::vector<bool>& reduced, const std::vector<int64_t>& want);

// The op's typed attrs (axes, keepdims), generated from the registry.
template <ReduceOp R> struct AttrsOf;
template <> struct AttrsOf<ReduceOp::Sum> { using type = attrs::Sum; };
template <> struct AttrsOf<ReduceOp::Mean> { using type = attrs::Mean; };
template <> struct AttrsOf<ReduceOp::Max> { using type = attrs::Max; };
template <> struct AttrsOf<ReduceOp::Min> { using type = attrs::Min; };

template <ReduceOp R, class T, class O> Kernel reduce_kernel(const KernelArgs& args) {
  const ReduceAxes r = reduce_axes<typename AttrsOf<R>::type>(args, dtype_of<O>());
  return reduce_prepared<R, T, O>(args, r.reduced, r.want);
}

// sum_to(x, like): sum over the dims broadcasting added or stretched to reach x from like.
template <class T> Kernel sum_to_kernel(const KernelArgs& args) {
  const ReduceAxes r = sum_to_axes(args, dtype_of<T>());
  return reduce_prepared<ReduceOp::Sum, T, T>(args, r.reduced, r.want);
}

template <ReduceOp R, class T, class O>
Kernel reduce_prepared(const KernelArgs& args, const std::vector<bool>& reduced, const std::vector<int64_t>& want) {
  using A = typename AccOf<T>::type;
  const TensorRef &x = args.in[0], &y = args.out[0];
  reduce_output_check(args, reduced, want, R == ReduceOp::Max || R == ReduceOp::Min);  // no identity
  const int64_t ny = numel_of(y);
  O* py = y.as<O>();
  if (ny == 0) return no_op_kernel();
  if (numel_of(x) == 0) {
    // Every output reduces nothing: the sum of nothing is 0, the mean NaN (0/0, as numpy).
    // No loop may run over the input's other (possibly huge) dims.
    O fill = O(0);
    if constexpr (R == ReduceOp::Mean) fill = std::numeric_limits<O>::quiet_NaN();
    return [py, ny, fill]() { std::fill(py, py + ny, fill); };
  }
  ReducePlan p = make_plan(args, x.dims, reduced);

  const T* px = x.as<const T>();
  const int threads = args.ctx.threads;
  auto finish = [](A acc, int64_t n) -> O {
    if constexpr (R == ReduceOp::Mean) {
      return static_cast<O>(static_cast<double>(acc) / static_cast<double>(n));
    } else {
      return static_cast<O>(acc);
    }
  };
  auto first_or_zero = [](const T* src) -> A {
    return R == ReduceOp::Max || R == ReduceOp::Min ? static_cast<A>(src[0]) : A(0);
  };
  // The float loops of the active ISA (nullptr for integer types, which keep the plain loops).
  const ReduceLoops<T>* rl = nullptr;
  if constexpr (std::is_floating_point_v<T>) {
    static_assert(std::is_same_v<typename ReduceLoops<T>::Acc, A>, "one accumulator type");
    rl = &reduce_loops<T>(active_isa());
  }
  (void)rl;

  if (p.general) {
    return [p, px, py, threads, finish, first_or_zero]() {
      const int64_t nred = p.red;
      const int64_t* ro = p.red_offsets.data();
      p.kept.run(threads, std::max<int64_t>(1, (1 << 14) / std::max<int64_t>(nred, 1)),
                 [&](int64_t o, const std::array<int64_t, 1>& off, int64_t n, const std::array<int64_t, 1>& s) {
        for (int64_t i = 0; i < n; ++i) {
          const T* src = px + off[0] + i * s[0];
          A acc = first_or_zero(src);
          for (int64_t r = 0; r < nred; ++r) acc = combine<R>(acc, static_cast<A>(src[ro[r]]));
          py[o + i] = finish(acc, nred);
        }
      });
    };
  }

  const int64_t outer = p.outer, red = p.red, inner = p.inner;
  if (inner == 1) {
    // Each output reduces a contiguous run of `red` items, in blocks of kBlock.
    const int64_t nblocks = std::max<int64_t>(1, (red + kBlock - 1) / kBlock);
    // The per-block partials of one output, when the blocks are what runs in parallel.
    const KernelBuffer<A> partials(outer >= threads || nblocks == 1 ? 0 : nblocks);
    return [=]() {
      auto reduce_run = [&](const T* src, int64_t n) -> A {
        if constexpr (std::is_floating_point_v<T> && R != ReduceOp::Min) {
          if constexpr (R == ReduceOp::Max) {
            return static_cast<A>(rl->max(src, n));  // n >= 1: blocks are never empty
          } else {
            return rl->sum(src, n);
          }
        } else {
          A acc = n > 0 ? first_or_zero(src) : A(0);
          for (int64_t r = 0; r < n; ++r) acc = combine<R>(acc, static_cast<A>(src[r]));
          return acc;
        }
      };
      if (outer >= threads || nblocks == 1) {
        parallel_for(outer, threads, std::max<int64_t>(1, (1 << 14) / std::max<int64_t>(red, 1)),
                     [&](int64_t b, int64_t e) {
          for (int64_t o = b; o < e; ++o) {
            const T* src = px + o * red;
            A acc = red > 0 ? first_or_zero(src) : A(0);
            for (int64_t blk = 0; blk < nblocks; ++blk) {
              int64_t lo = blk * kBlock, hi = std::min(red, lo + kBlock);
              acc = combine<R>(acc, reduce_run(src + lo, hi - lo));
            }
            py[o] = finish(acc, red);
          }
        });
      } else {
        A* const partial = partials.data();
        for (int64_t o = 0; o < outer; ++o) {
          const T* src = px + o * red;
          parallel_for(nblocks, threads, 1, [&](int64_t b, int64_t e) {
            for (int64_t blk = b; blk < e; ++blk) {
              int64_t lo = blk * kBlock, hi = std::min(red, lo + kBlock);
              partial[blk] = reduce_run(src + lo, hi - lo);
            }
          });
          A acc = first_or_zero(src);
          for (int64_t blk = 0; blk < nblocks; ++blk) acc = combine<R>(acc, partial[blk]);
          py[o] = finish(acc, red);
        }
      }
    };
  }
  // inner > 1: accumulate rows of `inner` contiguous items; parallel over (outer, inner tiles).
  constexpr int64_t kTile = 512;
  const int64_t ntiles = (inner + kTile - 1) / kTile;
  return [=]() {
    parallel_for(outer * ntiles, threads, std::max<int64_t>(1, (1 << 14) / std::max<int64_t>(red * kTile, 1)),
                 [&](int64_t b, int64_t e) {
      A acc[kTile];
      for (int64_t t = b; t < e; ++t) {
        const int64_t o = t / ntiles, i0 = (t % ntiles) * kTile;
        const int64_t n = std::min(kTile, inner - i0);
        const T* src = px + o * red * inner + i0;
        for (int64_t i = 0; i < n; ++i) acc[i] = red > 0 ? first_or_zero(src + i) : A(0);
        for (int64_t r = 0; r < red; ++r) {
          const T* row = src + r * inner;
          if constexpr (std::is_floating_point_v<T> && R != ReduceOp::Min) {
            if constexpr (R == ReduceOp::Max) {
              rl->max_rows(acc, row, n);
            } else {
              rl->sum_rows(acc, row, n);
            }
          } else {
            for (int64_t i = 0; i < n; ++i) acc[i] = combine<R>(acc[i], static_cast<A>(row[i]));
          }
        }
        O* dst = py + o * inner + i0;
        for (int64_t i = 0; i < n; ++i) dst[i] = finish(acc[i], red);
      }
    });
  };
}

// argmin along one axis: the first minimum; NaN counts as the smallest, so the first NaN wins
// (numpy.argmin).  Each position's walk along the axis runs in one task: the same bits at any
// thread count.
template <class T> inline bool below(T v, T best) {
  if constexpr (std::is_floating_point_v<T>) {
    return v < best || (std::isnan(v) && !std::isnan(best));
  } else {
    return v < best;
  }
}

template <class T> Kernel argmin_kernel(const KernelArgs& args) {
  const int64_t axis = arg_extremum_axis<attrs::Argmin>(args, "arg-min");
  const TensorRef &x = args.in[0], &y = args.out[0];
  const int64_t rank = static_cast<int64_t>(x.dims.size());
  int64_t outer = 1, n = 1, inner = 1;
  if (numel_of(x) == 0) return no_op_kernel();
  if (rank > 0) {
    for (int64_t i = 0; i < axis; ++i) outer *= x.dims[i];
    for (int64_t i = axis + 1; i < rank; ++i) inner *= x.dims[i];
    n = x.dims[axis];
  }
  const T* px = x.as<const T>();
  int64_t* py = y.as<int64_t>();
  const int threads = args.ctx.threads;
  constexpr int64_t kGrain = 1 << 15;
  return [=]() {
    // one task per (outer, inner) position's walk; contiguous reads when inner == 1
    parallel_for(outer * inner, threads, std::max<int64_t>(1, kGrain / n), [&](int64_t b, int64_t e) {
      for (int64_t p = b; p < e; ++p) {
        const int64_t o = p / inner, j = p % inner;
        const T* line = px + o * n * inner + j;
        T best = line[0];
        int64_t idx = 0;
        for (int64_t k = 1; k < n; ++k) {
          const T v = line[k * inner];
          if (below(v, best)) {
            best = v;
            idx = k;
          }
        }
        py[p] = idx;
      }
    });
  };
}

// The output has the input's dtype (the schema's rule; integer sums wrap).
template <ReduceOp R> void add_reduce(KernelRegistry& r, const char* name) {
  add_typed<NumericTypes>(r, name, [](auto tag, const KernelArgs& a) -> Kernel {
    using T = typename decltype(tag)::type;
    return reduce_kernel<R, T, T>(a);
  });
}

}  // namespace
}  // namespace cpu

void register_reduce_kernels(KernelRegistry& r) {
  cpu::add_reduce<cpu::ReduceOp::Sum>(r, "sum");
  cpu::add_reduce<cpu::ReduceOp::Mean>(r, "mean");
  cpu::add_reduce<cpu::ReduceOp::Max>(r, "max");
  cpu::add_reduce<cpu::ReduceOp::Min>(r, "min");
  cpu::add_typed<cpu::NumericTypes>(r, "argmin", [](auto tag, const KernelArgs& a) {
    return cpu::argmin_kernel<typename decltype(tag)::type>(a);
  });
  cpu::add_typed<cpu::NumericTypes>(r, "sum_to", [](auto tag, const KernelArgs& a) {
    return cpu::sum_to_kernel<typename decltype(tag)::type>(a);
  });
}

}  // namespace graphc
