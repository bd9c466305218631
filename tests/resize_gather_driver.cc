// resize_gather_driver.cc — runs runtime/cuda/resize_gather.h (the per-item resize / resize_grad
// of the CUDA kernel, GRAPHC_HD) on the host, for tests/test_resize_gather.py.
//
// stdin, one case after another (numbers as text, floats as C99 hex):
//   grad sum ctm nearest linear exclude_outside rank
//   per axis: dst_dim src_stride resized n_in n_out scale
//   n_src  src[0] ... src[n_src-1]
// stdout: every destination item (row-major) as a hex float, then "end".
#include <cstdio>
#include <vector>

#include "cuda/resize_gather.h"

using graphc::cuda::ResizeDev;
using graphc::cuda::resize_item;

int main() {
  int grad, sum, ctm, nearest, linear, exclude, rank;
  while (std::scanf("%d %d %d %d %d %d %d", &grad, &sum, &ctm, &nearest, &linear, &exclude, &rank) == 7) {
    if (rank < 1 || rank > graphc::cuda::kResizeMaxDims) return 2;
    ResizeDev d;
    d.math.ctm = static_cast<graphc::cpu::ResizeCtm>(ctm);
    d.math.nearest = static_cast<graphc::cpu::ResizeNearest>(nearest);
    d.math.linear = linear != 0;
    d.math.exclude_outside = exclude != 0;
    d.rank = rank;
    d.numel = 1;
    for (int a = 0; a < rank; ++a) {
      long long dd, ss, ni, no;
      int resized;
      double scale;
      if (std::scanf("%lld %lld %d %lld %lld %lf", &dd, &ss, &resized, &ni, &no, &scale) != 6) return 2;
      d.dst_dims[a] = dd;
      d.src_strides[a] = ss;
      d.resized[a] = resized != 0;
      d.n_in[a] = ni;
      d.n_out[a] = no;
      d.scale[a] = scale;
      d.numel *= dd;
    }
    long long ns;
    if (std::scanf("%lld", &ns) != 1 || ns < 0) return 2;
    std::vector<double> src(static_cast<size_t>(ns));
    for (auto& v : src) {
      if (std::scanf("%lf", &v) != 1) return 2;
    }
    for (int64_t o = 0; o < d.numel; ++o) {
      double v;
      if (grad) {
        v = resize_item<double, true, true>(d, src.data(), o);
      } else if (sum) {
        v = resize_item<double, true, false>(d, src.data(), o);
      } else {
        v = resize_item<double, false, false>(d, src.data(), o);
      }
      std::printf("%a\n", v);
    }
    std::printf("end\n");
    std::fflush(stdout);
  }
  return 0;
}
