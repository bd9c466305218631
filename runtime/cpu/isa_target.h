// isa_target.h — begin and end a region of a translation unit compiled for one x86-64 ISA.
//
// The extension is built for baseline x86-64; the per-ISA loops (elementwise, layer_norm,
// attention, the RNN cells) are compiled two more times inside such a region and picked at run
// time by isa.h's active_isa().  Every function defined inside gets the target; include every
// header BEFORE the region (only the loops meant for the ISA may be compiled with it).  No FMA
// contraction happens although the targets have FMA: setup.py builds with -ffp-contract=off.
//
//   GRAPHC_TARGET_AVX2_BEGIN     namespace isa_avx2 { ... }     GRAPHC_TARGET_END
//   GRAPHC_TARGET_AVX512_BEGIN   namespace isa_avx512 { ... }   GRAPHC_TARGET_END
//
// x86-64 only: use inside `#if defined(__x86_64__)`.
#pragma once

#if defined(__x86_64__)
#if defined(__clang__)
#define GRAPHC_TARGET_AVX2_BEGIN \
  _Pragma("clang attribute push(__attribute__((target(\"avx2,fma\"))), apply_to = function)")
// (one string: _Pragma does not join adjacent literals)
#define GRAPHC_TARGET_AVX512_BEGIN \
  _Pragma("clang attribute push(__attribute__((target(\"avx512f,avx512bw,avx512dq,avx512vl,avx2,fma\"))), apply_to = function)")
#define GRAPHC_TARGET_END _Pragma("clang attribute pop")
#else
#define GRAPHC_TARGET_AVX2_BEGIN _Pragma("GCC push_options") _Pragma("GCC target(\"avx2,fma\")")
#define GRAPHC_TARGET_AVX512_BEGIN \
  _Pragma("GCC push_options") _Pragma("GCC target(\"avx512f,avx512bw,avx512dq,avx512vl,avx2,fma\")")
#define GRAPHC_TARGET_END _Pragma("GCC pop_options")
#endif
#endif
