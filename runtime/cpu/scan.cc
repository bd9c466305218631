// scan.cc — tril / triu, cumsum and argmax (graphc/ops/scan.py has the semantics).
//
// All three walk the input in (outer, n, inner) form around one axis.  cumsum and argmax run
// each position's walk along the axis sequentially, in one task; threads split only the other
// positions, so results are the same bits for any thread count.
#include <cmath>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "common.h"
#include "op_schema.h"
#include "reduce_checks.h"

namespace graphc {
namespace cpu {
namespace {

constexpr int64_t kGrain = 1 << 15;  // items per task

// -- tril / triu --------------------------------------------------------------------------------

template <class T, bool kUpper> Kernel tri_kernel(const KernelArgs& args) {
  const int64_t diagonal = tri_check(args, kUpper);
  const TensorRef &x = args.in[0], &y = args.out[0];
  const int64_t rank = static_cast<int64_t>(x.dims.size());
  const int64_t rows_n = x.dims[rank - 2], cols = x.dims[rank - 1];
  const int64_t nrows = numel_of(x) == 0 ? 0 : numel_of(x) / cols;  // all rows of all matrices
  if (nrows == 0) return no_op_kernel();
  const T* px = x.as<const T>();
  T* py = y.as<T>();
  const int threads = args.ctx.threads;
  return [=]() {
    parallel_for(nrows, threads, std::max<int64_t>(1, kGrain / cols), [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; ++r) {
        const int64_t i = r % rows_n;
        // kept columns: j <= i + diagonal (tril) or j >= i + diagonal (triu), clamped to [0, cols]
        // without overflow at the int64 extremes of diagonal
        int64_t cut;
        if (kUpper) {
          cut = diagonal <= -i ? 0 : (diagonal >= cols - i ? cols : i + diagonal);  // first kept
        } else {
          cut = diagonal < -i ? 0 : (diagonal >= cols - i - 1 ? cols : i + diagonal + 1);  // first dropped
        }
        const T* src = px + r * cols;
        T* dst = py + r * cols;
        for (int64_t j = 0; j < cols; ++j) {
          const bool keep = kUpper ? j >= cut : j < cut;
          dst[j] = keep ? src[j] : T(0);
        }
      }
    });
  };
}

// -- cumsum -------------------------------------------------------------------------------------

// a + b, wrapping for ints (signed overflow is undefined in C++; numpy wraps)
template <class T> inline T wrap_add(T a, T b) {
  if constexpr (std::is_integral_v<T>) {
    using U = std::make_unsigned_t<T>;
    return static_cast<T>(static_cast<U>(a) + static_cast<U>(b));
  } else {
    return a + b;
  }
}

template <class T> Kernel cumsum_kernel(const KernelArgs& args) {
  const CumsumCheck chk = cumsum_check(args);
  const attrs::Cumsum& attr = chk.attr;
  const AxisSplit s = chk.s;
  const TensorRef &x = args.in[0], &y = args.out[0];
  if (numel_of(x) == 0) return no_op_kernel();
  const bool exclusive = attr.exclusive, reverse = attr.reverse;
  const T* px = x.as<const T>();
  T* py = y.as<T>();
  const int threads = args.ctx.threads;
  // Tasks: (outer index, a block of the inner positions); each runs its positions' whole axis.
  const int64_t block = std::min<int64_t>(s.inner, 1024);
  const int64_t nblocks = (s.inner + block - 1) / block;
  return [=]() {
    const int64_t n = s.n, inner = s.inner;
    parallel_for(s.outer * nblocks, threads, std::max<int64_t>(1, kGrain / std::max<int64_t>(1, n * block)),
                 [&](int64_t b, int64_t e) {
      for (int64_t t = b; t < e; ++t) {
        const int64_t o = t / nblocks, j0 = (t % nblocks) * block, j1 = std::min(inner, j0 + block);
        const T* xo = px + o * n * inner;
        T* yo = py + o * n * inner;
        // step k of the walk is axis index k (forward) or n-1-k (reverse)
        auto at = [&](int64_t k) { return (reverse ? n - 1 - k : k) * inner; };
        if (exclusive) {
          for (int64_t j = j0; j < j1; ++j) yo[at(0) + j] = T(0);
          // y at step 1 is x at step 0 exactly (no 0 + x: keeps -0.0), then the running sum
          if (n > 1) for (int64_t j = j0; j < j1; ++j) yo[at(1) + j] = xo[at(0) + j];
          for (int64_t k = 2; k < n; ++k) {
            const int64_t p = at(k), q = at(k - 1);
            for (int64_t j = j0; j < j1; ++j) yo[p + j] = wrap_add(yo[q + j], xo[q + j]);
          }
        } else {
          for (int64_t j = j0; j < j1; ++j) yo[at(0) + j] = xo[at(0) + j];
          for (int64_t k = 1; k < n; ++k) {
            const int64_t p = at(k), q = at(k - 1);
            for (int64_t j = j0; j < j1; ++j) yo[p + j] = wrap_add(yo[q + j], xo[p + j]);
          }
        }
      }
    });
  };
}

// -- argmax -------------------------------------------------------------------------------------

// v beats the best so far: larger, or the first NaN (NaN counts as the largest; once the best is
// NaN nothing beats it, so the first NaN wins as in numpy/torch).
template <class T> inline bool beats(T v, T best) {
  if constexpr (std::is_floating_point_v<T>) {
    return v > best || (std::isnan(v) && !std::isnan(best));
  } else {
    return v > best;
  }
}

template <class T> Kernel argmax_kernel(const KernelArgs& args) {
  const int64_t axis = arg_extremum_axis<attrs::Argmax>(args, "arg-max");
  const TensorRef &x = args.in[0], &y = args.out[0];
  const AxisSplit s = split_at(x.dims, axis);
  if (numel_of(x) == 0) return no_op_kernel();
  const T* px = x.as<const T>();
  int64_t* py = y.as<int64_t>();
  const int threads = args.ctx.threads;
  // inner > 1: a best value per inner position, per chunk
  const int64_t col_grain = std::max<int64_t>(1, kGrain / (s.n * s.inner));
  const KernelBuffer<T> bests(s.inner > 1 ? parallel_chunks(s.outer, threads, col_grain) * s.inner : 0);
  return [=]() {
    const int64_t n = s.n, inner = s.inner;
    if (inner == 1) {
      parallel_for(s.outer, threads, std::max<int64_t>(1, kGrain / n), [&](int64_t b, int64_t e) {
        for (int64_t o = b; o < e; ++o) {
          const T* row = px + o * n;
          T best = row[0];
          int64_t idx = 0;
          for (int64_t k = 1; k < n; ++k) {
            if (beats(row[k], best)) {
              best = row[k];
              idx = k;
            }
          }
          py[o] = idx;
        }
      });
      return;
    }
    // inner > 1: walk the axis row by row (contiguous reads), a best value per inner position
    parallel_for_chunks(s.outer, threads, col_grain, [&](int64_t b, int64_t e, int64_t c) {
      T* const best = bests.data() + c * inner;
      for (int64_t o = b; o < e; ++o) {
        const T* xo = px + o * n * inner;
        int64_t* yo = py + o * inner;
        for (int64_t j = 0; j < inner; ++j) {
          best[j] = xo[j];
          yo[j] = 0;
        }
        for (int64_t k = 1; k < n; ++k) {
          const T* row = xo + k * inner;
          for (int64_t j = 0; j < inner; ++j) {
            if (beats(row[j], best[j])) {
              best[j] = row[j];
              yo[j] = k;
            }
          }
        }
      }
    });
  };
}

}  // namespace
}  // namespace cpu

void register_scan_kernels(KernelRegistry& r) {
  cpu::add_typed<cpu::AllTypes>(r, "tril", [](auto tag, const KernelArgs& a) {
    return cpu::tri_kernel<typename decltype(tag)::type, false>(a);
  });
  cpu::add_typed<cpu::AllTypes>(r, "triu", [](auto tag, const KernelArgs& a) {
    return cpu::tri_kernel<typename decltype(tag)::type, true>(a);
  });
  cpu::add_typed<cpu::NumericTypes>(r, "cumsum", [](auto tag, const KernelArgs& a) {
    return cpu::cumsum_kernel<typename decltype(tag)::type>(a);
  });
  cpu::add_typed<cpu::NumericTypes>(r, "argmax", [](auto tag, const KernelArgs& a) {
    return cpu::argmax_kernel<typename decltype(tag)::type>(a);
  });
}

}  // namespace graphc
