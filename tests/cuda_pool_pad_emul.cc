// cuda_pool_pad_emul.cc — runs runtime/cuda/pool_items.h and pad_items.h (what one thread of
// the CUDA pooling and pad kernels computes) on the CPU, item by item, for
// tests/test_pool_pad_cuda_emul.py.
//
//   cuda_pool_pad_emul pool OP DTYPE N C H W KH KW SH SW PH PW INCLUDE_PAD IN0 IN1 OUT
//     OP: max (IN0 = x), gather (IN0 = g, IN1 = x), max_grad (IN0 = dy, IN1 = x), avg (IN0 = x),
//     avg_grad (IN0 = dy); IN1 is "-" when unused.
//   cuda_pool_pad_emul pad OP DTYPE MODE VALUE RANK D0 .. D(RANK-1) B0 A0 .. IN OUT
//     OP: fwd (IN = x, OUT = y) or grad (IN = g, OUT = dx); MODE 0 constant, 1 reflect, 2 replicate.
// DTYPE: f32 f64 i32 i64 b8.  Files: raw C-order arrays.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "cuda/pad_items.h"
#include "cuda/pool_items.h"

using namespace graphc::cuda;

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

template <class T> int pool(const std::string& op, char** a) {
  using namespace pool_items;
  PoolGeom g;
  const int64_t n = std::atoll(a[0]), c = std::atoll(a[1]);
  g.h = std::atoll(a[2]), g.w = std::atoll(a[3]), g.kh = std::atoll(a[4]), g.kw = std::atoll(a[5]);
  g.sh = std::atoll(a[6]), g.sw = std::atoll(a[7]), g.ph = std::atoll(a[8]), g.pw = std::atoll(a[9]);
  const bool include_pad = std::atoi(a[10]) != 0;
  g.ho = (g.h + 2 * g.ph - g.kh) / g.sh + 1, g.wo = (g.w + 2 * g.pw - g.kw) / g.sw + 1, g.planes = n * c;
  const size_t nx = g.planes * g.h * g.w, ny = g.planes * g.ho * g.wo;
  const char *in0 = a[11], *in1 = a[12], *out = a[13];
  if (op == "max" || op == "gather") {
    auto x = load<T>(op == "max" ? in0 : in1, nx), src = load<T>(in0, nx);
    std::vector<T> y(ny);
    for (size_t i = 0; i < ny; ++i) y[i] = max_fwd_item(g, x.data(), src.data(), static_cast<int64_t>(i));
    save(out, y);
  } else if (op == "max_grad") {
    auto dy = load<T>(in0, ny), x = load<T>(in1, nx);
    std::vector<T> dx(nx);
    for (size_t i = 0; i < nx; ++i) dx[i] = max_bwd_item(g, dy.data(), x.data(), static_cast<int64_t>(i));
    save(out, dx);
  } else if (op == "avg") {
    auto x = load<T>(in0, nx);
    std::vector<T> y(ny);
    for (size_t i = 0; i < ny; ++i) y[i] = avg_fwd_item(g, include_pad, x.data(), static_cast<int64_t>(i));
    save(out, y);
  } else if (op == "avg_grad") {
    auto dy = load<T>(in0, ny);
    std::vector<T> dx(nx);
    for (size_t i = 0; i < nx; ++i) dx[i] = avg_bwd_item(g, include_pad, dy.data(), static_cast<int64_t>(i));
    save(out, dx);
  } else {
    return 1;
  }
  return 0;
}

template <class T> int pad(const std::string& op, char** a) {
  using namespace pad_items;
  const int mode = std::atoi(a[0]);
  const T value = static_cast<T>(std::atof(a[1]));
  const int rank = std::atoi(a[2]);
  std::vector<int64_t> xd, pads;
  for (int i = 0; i < rank; ++i) xd.push_back(std::atoll(a[3 + i]));
  for (int i = 0; i < 2 * rank; ++i) pads.push_back(std::atoll(a[3 + rank + i]));
  const char *in = a[3 + 3 * rank], *out = a[4 + 3 * rank];
  size_t nx = 1, ny = 1;
  for (int i = 0; i < rank; ++i) nx *= xd[i], ny *= xd[i] + pads[2 * i] + pads[2 * i + 1];
  PadAxes p;
  if (make_pad_axes(xd, pads, mode, &p) > kPadMaxAxes) return 4;
  if (op == "fwd") {
    auto x = load<T>(in, nx);
    std::vector<T> y(ny);
    for (size_t i = 0; i < ny; ++i) y[i] = pad_fwd_item(p, x.data(), value, static_cast<int64_t>(i));
    save(out, y);
  } else if (op == "grad") {
    auto g = load<T>(in, ny);
    std::vector<T> dx(nx);
    for (size_t i = 0; i < nx; ++i) dx[i] = pad_bwd_item(p, g.data(), static_cast<int64_t>(i));
    save(out, dx);
  } else {
    return 1;
  }
  return 0;
}

template <class F> int by_dtype(const std::string& dt, F&& f) {
  if (dt == "f32") return f(float{});
  if (dt == "f64") return f(double{});
  if (dt == "i32") return f(int32_t{});
  if (dt == "i64") return f(int64_t{});
  if (dt == "b8") return f(uint8_t{});
  return 1;
}

int main(int argc, char** argv) {
  if (argc < 4) return 1;
  const std::string kind = argv[1], op = argv[2], dt = argv[3];
  if (kind == "pool") {
    if (argc != 18) return 1;
    return by_dtype(dt, [&](auto t) { return pool<decltype(t)>(op, argv + 4); });
  }
  if (kind == "pad") {
    if (argc < 7 || argc != 9 + 3 * std::atoi(argv[6])) return 1;
    return by_dtype(dt, [&](auto t) { return pad<decltype(t)>(op, argv + 4); });
  }
  return 1;
}
