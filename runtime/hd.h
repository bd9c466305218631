// hd.h — GRAPHC_HD marks a function __host__ __device__ under nvcc and plain elsewhere.
//
// Op math shared by the CPU and CUDA kernels lives in headers whose functions carry it
// (runtime/cpu/philox.h, the elementwise functors, ...): the CPU build compiles them as
// ordinary inline functions, so the CPU tests cover the very code a CUDA kernel runs.
#ifndef GRAPHC_HD_H_
#define GRAPHC_HD_H_

#ifndef GRAPHC_HD
#if defined(__CUDACC__)
#define GRAPHC_HD __host__ __device__
#else
#define GRAPHC_HD
#endif
#endif

#endif  // GRAPHC_HD_H_
