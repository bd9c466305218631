// cuda_conv_emul.cc — runs runtime/cuda/conv_problems.h's index maps (the CUDA fallback
// kernel's) on the CPU, for tests/test_conv_cuda_plan.py.
//
//   cuda_conv_emul OP DTYPE N C H W O KH KW G SH SW PT PL DH DW HO WO SPLITS IN0 IN1 OUT
//
// OP: fwd (IN0 = x, IN1 = w, OUT = y), gin (IN0 = dy, IN1 = w, OUT = dx) or gwt (IN0 = dy,
// IN1 = x, OUT = dw, the reduction split SPLITS ways and the partials summed in slice order as
// sum_partials does).  DTYPE: f32 or f64.  Files: raw C-order arrays.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "cuda/conv_problems.h"

using namespace graphc::cuda::conv_gemm;

template <class T> std::vector<T> load(const char* path, size_t n) {
  std::vector<T> v(n);
  FILE* f = std::fopen(path, "rb");
  if (f == nullptr || std::fread(v.data(), sizeof(T), n, f) != n) {
    std::fprintf(stderr, "cannot read %zu items from %s\n", n, path);
    std::exit(2);
  }
  std::fclose(f);
  return v;
}

template <class T> void save(const char* path, const std::vector<T>& v) {
  FILE* f = std::fopen(path, "wb");
  if (f == nullptr || std::fwrite(v.data(), sizeof(T), v.size(), f) != v.size()) std::exit(3);
  std::fclose(f);
}

template <class T> int run(const std::string& op, const int64_t* a, const char* in0, const char* in1, const char* out) {
  const int64_t n = a[0], c = a[1], h = a[2], w = a[3], o = a[4], kh = a[5], kw = a[6], g = a[7];
  const int64_t splits = a[16];
  Geo q{c, h, w, o, kh, kw, c / g, o / g, a[8], a[9], a[10], a[11], a[12], a[13], a[14], a[15], kh * kw,
        c / g * kh * kw, a[14] * a[15]};
  const size_t nx = n * c * h * w, nw = o * q.cg * kh * kw, ny = n * o * q.p;
  if (op == "fwd") {
    auto x = load<T>(in0, nx), wt = load<T>(in1, nw);
    std::vector<T> y(ny);
    emulate<T>(FwdProblem<T>{q, q.og, n * q.p, q.k, x.data(), wt.data(), y.data()}, g, 1);
    save(out, y);
  } else if (op == "gin") {
    auto dy = load<T>(in0, ny), wt = load<T>(in1, nw);
    std::vector<T> dx(nx);
    emulate<T>(GradInputProblem<T>{q, q.cg, n * h * w, q.og * kh * kw, dy.data(), wt.data(), dx.data()}, g, 1);
    save(out, dx);
  } else if (op == "gwt") {
    auto dy = load<T>(in0, ny), x = load<T>(in1, nx);
    std::vector<T> part(splits * nw), dw(nw);
    emulate<T>(GradWeightProblem<T>{q, q.og, q.k, n * q.p, dy.data(), x.data(), part.data(),
                                    static_cast<int64_t>(nw)}, g, splits);
    for (size_t e = 0; e < nw; ++e) {  // sum_partials: slice order
      T s = part[e];
      for (int64_t t = 1; t < splits; ++t) s += part[t * nw + e];
      dw[e] = s;
    }
    save(out, dw);
  } else {
    return 1;
  }
  return 0;
}

int main(int argc, char** argv) {
  if (argc != 23) {
    std::fprintf(stderr, "usage: cuda_conv_emul OP DTYPE N C H W O KH KW G SH SW PT PL DH DW HO WO SPLITS IN0 IN1 OUT\n");
    return 1;
  }
  int64_t a[17];
  for (int i = 0; i < 17; ++i) a[i] = std::atoll(argv[3 + i]);
  const std::string op = argv[1], dt = argv[2];
  if (dt == "f32") return run<float>(op, a, argv[20], argv[21], argv[22]);
  if (dt == "f64") return run<double>(op, a, argv[20], argv[21], argv[22]);
  return 1;
}
