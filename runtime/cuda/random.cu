// random.cu — the CUDA twin of runtime/cpu/random.cc: random_uniform, random_normal and their
// _like forms, drawn from the same Philox stream with the same math (philox.h, random_math.h:
// GRAPHC_HD, shared with the CPU), so element i depends on (seed, step, i) only.
//
// Kernel: one thread per Philox block (4 float32 or 2 float64 elements), grid-stride over the
// blocks; the step is read on the device (the rng/step variable changes every run, and a CUDA
// graph replays the launch with the same arguments).  y = offset + scale · v is rounded as the
// CPU rounds it (__dmul_rn/__dadd_rn: no FMA), then once to T.  A full block is stored with one
// 16-byte store when the output is 16-byte aligned.
//
// Bits: uniforms are bit-identical to the CPU's (integer math and exact scalings).  Normals use
// log, sqrt, cos and sin in double: sqrt is correctly rounded on both sides, but the device's
// log/cos/sin (CUDA: <= 1-2 ulp) may differ from glibc's in the last double ulp; a float32 normal
// is rounded from that double, so it is the CPU's bit for bit unless the double falls within
// ~2 ulp of a float32 rounding boundary (about 2^-28 of the draws); a float64 normal agrees within
// a few ulps.
#include "common.cuh"
#include "../cpu/random_checks.h"
#include "../cpu/random_math.h"

namespace graphc {
namespace cuda {
namespace {

template <class T, int K> struct Vec;
template <> struct Vec<float, 4> { using type = float4; };
template <> struct Vec<double, 2> { using type = double2; };

template <class T, int K, bool kNormal>
__global__ void fill_blocks(T* __restrict__ y, const int64_t* __restrict__ pstep, int64_t n, uint64_t seed,
                            double offset, double scale, bool aligned) {
  const uint64_t step = static_cast<uint64_t>(*pstep);
  const int64_t blocks = (n + K - 1) / K;
  GRAPHC_GRID_STRIDE(blk, blocks) {
    const philox::Words w = philox::stream_block(seed, step, static_cast<uint64_t>(blk));
    double v[K];
    if constexpr (kNormal) {
      if constexpr (K == 4) random_math::normal_f32(w, v);
      else random_math::normal_f64(w, v);
    } else {
      if constexpr (K == 4) random_math::uniform_f32(w, v);
      else random_math::uniform_f64(w, v);
    }
    T out[K];
    for (int j = 0; j < K; ++j) out[j] = static_cast<T>(__dadd_rn(offset, __dmul_rn(scale, v[j])));
    const int64_t base = blk * K;
    if (aligned && base + K <= n) {
      using V = typename Vec<T, K>::type;
      V packed;
      static_assert(sizeof(V) == sizeof(out), "one block is one vector");
      memcpy(&packed, out, sizeof(V));
      *reinterpret_cast<V*>(y + base) = packed;
    } else {
      for (int j = 0; j < K && base + j < n; ++j) y[base + j] = out[j];
    }
  }
}

template <class T, int K, bool kNormal>
Kernel fill_kernel(const KernelArgs& args, T* py, const int64_t* pstep, int64_t n, uint64_t seed, double offset,
                   double scale) {
  if (dry(args)) return no_op_kernel();
  cudaStream_t s = stream_of(args);
  const bool aligned = reinterpret_cast<uintptr_t>(py) % 16 == 0;
  const unsigned grid = blocks_for((n + K - 1) / K);
  return [=]() {
    fill_blocks<T, K, kNormal><<<grid, kThreads, 0, s>>>(py, pstep, n, seed, offset, scale, aligned);
    GRAPHC_CUDA_LAUNCH_CHECK(kNormal ? "random_normal" : "random_uniform");
  };
}

// The fill of one checked draw (cpu/random_checks.h: the same checks as the CPU's) for its dtype.
Kernel draw_kernel(const KernelArgs& args, const cpu::RandomDraw& d) {
  if (d.n == 0) return no_op_kernel();
  using random_math::kPerBlockF32;
  using random_math::kPerBlockF64;
  if (d.dtype == DType::F32) {
    float* py = args.out[0].as<float>();
    return d.normal ? fill_kernel<float, kPerBlockF32, true>(args, py, d.step, d.n, d.key, d.offset, d.scale)
                    : fill_kernel<float, kPerBlockF32, false>(args, py, d.step, d.n, d.key, d.offset, d.scale);
  }
  double* py = args.out[0].as<double>();
  return d.normal ? fill_kernel<double, kPerBlockF64, true>(args, py, d.step, d.n, d.key, d.offset, d.scale)
                  : fill_kernel<double, kPerBlockF64, false>(args, py, d.step, d.n, d.key, d.offset, d.scale);
}

Kernel random_uniform_kernel(const KernelArgs& args) { return draw_kernel(args, cpu::random_uniform_draw(args)); }
Kernel random_normal_kernel(const KernelArgs& args) { return draw_kernel(args, cpu::random_normal_draw(args)); }
Kernel random_uniform_like_kernel(const KernelArgs& args) {
  return draw_kernel(args, cpu::random_uniform_like_draw(args));
}
Kernel random_normal_like_kernel(const KernelArgs& args) {
  return draw_kernel(args, cpu::random_normal_like_draw(args));
}

}  // namespace

void register_random_kernels(KernelRegistry& r) {
  // dispatched on input 0 (the int64 step; a _like op's x, never read): the schema's dtypes
  for (DType t : cpu::schema_dtypes("random_uniform")) add_kernel(r, "random_uniform", t, random_uniform_kernel);
  for (DType t : cpu::schema_dtypes("random_normal")) add_kernel(r, "random_normal", t, random_normal_kernel);
  for (DType t : cpu::schema_dtypes("random_uniform_like")) {
    add_kernel(r, "random_uniform_like", t, random_uniform_like_kernel);
  }
  for (DType t : cpu::schema_dtypes("random_normal_like")) {
    add_kernel(r, "random_normal_like", t, random_normal_like_kernel);
  }
}

}  // namespace cuda
}  // namespace graphc
