/* bench_aot_driver.c: the C timing loop of tools/bench_aot.py for any AOT artifact.
 *
 * Not compiled on its own: bench_aot.py writes a small wrapper into the artifact's folder,
 *     #define _POSIX_C_SOURCE 200809L
 *     #include "mlp.h"
 *     #define AOT_NAME mlp
 *     #define AOT_UNAME MLP
 *     #include "/path/to/tools/bench_aot_driver.c"
 * and builds it with the emitted Makefile (`make programs PROGRAMS=bench_driver.c`).
 *
 *   bench_driver WEIGHTS THREADS ENTRY WARMUP CALLS TIMES_OUT [-f FEED_FILE]... [-o NBYTES FETCH_OUT]...
 *
 * Creates a context over aligned caller memory, loads WEIGHTS, reads every feed file (in the
 * entry's feed order) into aligned buffers, runs entry ENTRY (index) WARMUP times untimed, then
 * CALLS times, each call timed alone with CLOCK_MONOTONIC; writes the CALLS per-call times as
 * float64 seconds to TIMES_OUT and the fetches of the last call (in the entry's fetch order, each
 * NBYTES) to the FETCH_OUT files. Every status is checked; a failure prints last_error, exits 1.
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#endif
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if !defined(AOT_NAME) || !defined(AOT_UNAME)
#error "define AOT_NAME and AOT_UNAME and include the artifact's header before this file"
#endif
#define BENCH_CAT2(a, b) a##b
#define BENCH_CAT(a, b) BENCH_CAT2(a, b)
#define FN(suffix) BENCH_CAT(AOT_NAME, suffix)
#define MACRO(suffix) BENCH_CAT(AOT_UNAME, suffix)

#define MAX_IO 64

typedef FN(_context) bench_context;

static void fail(const char* what, const bench_context* ctx, int status) {
  fprintf(stderr, "bench_driver: %s failed (status %d): %s\n", what, status, FN(_last_error)(ctx));
  exit(1);
}

static void* aligned_buffer(size_t nbytes) {
  size_t rounded = (nbytes + MACRO(_ALIGNMENT) - 1) / MACRO(_ALIGNMENT) * MACRO(_ALIGNMENT);
  void* p = aligned_alloc(MACRO(_ALIGNMENT), rounded ? rounded : MACRO(_ALIGNMENT));
  if (!p) {
    fprintf(stderr, "bench_driver: out of memory (%zu bytes)\n", nbytes);
    exit(1);
  }
  memset(p, 0, rounded ? rounded : MACRO(_ALIGNMENT));
  return p;
}

static void* read_file(const char* path) {
  FILE* f = fopen(path, "rb");
  long size;
  void* data;
  if (!f || fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
    fprintf(stderr, "bench_driver: cannot read %s\n", path);
    exit(1);
  }
  data = aligned_buffer((size_t)size);
  if (size > 0 && fread(data, 1, (size_t)size, f) != (size_t)size) {
    fprintf(stderr, "bench_driver: short read on %s\n", path);
    exit(1);
  }
  fclose(f);
  return data;
}

static void write_file(const char* path, const void* data, size_t nbytes) {
  FILE* f = fopen(path, "wb");
  if (!f || fwrite(data, 1, nbytes, f) != nbytes || fclose(f) != 0) {
    fprintf(stderr, "bench_driver: cannot write %s\n", path);
    exit(1);
  }
}

static double now_seconds(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static long parse_long(const char* text, long lo, const char* what) {
  char* end;
  long v = strtol(text, &end, 10);
  if (*text == '\0' || *end != '\0' || v < lo) {
    fprintf(stderr, "bench_driver: bad %s %s\n", what, text);
    exit(2);
  }
  return v;
}

int main(int argc, char** argv) {
  const void* feeds[MAX_IO];
  void* fetches[MAX_IO];
  size_t fetch_bytes[MAX_IO];
  const char* fetch_paths[MAX_IO];
  int n_feeds = 0, n_fetches = 0, a, status, entry, threads;
  long warmup, calls, i;
  double* seconds;
  void *arena, *state, *constants;
  bench_context* ctx = NULL;

  if (argc < 7) {
    fprintf(stderr, "usage: bench_driver WEIGHTS THREADS ENTRY WARMUP CALLS TIMES_OUT [-f FEED]... "
                    "[-o NBYTES FETCH_OUT]...\n");
    return 2;
  }
  threads = (int)parse_long(argv[2], 1, "THREADS");
  entry = (int)parse_long(argv[3], 0, "ENTRY");
  warmup = parse_long(argv[4], 0, "WARMUP");
  calls = parse_long(argv[5], 1, "CALLS");
  for (a = 7; a < argc; ++a) {
    if (strcmp(argv[a], "-f") == 0 && a + 1 < argc && n_feeds < MAX_IO) {
      feeds[n_feeds++] = read_file(argv[++a]);
    } else if (strcmp(argv[a], "-o") == 0 && a + 2 < argc && n_fetches < MAX_IO) {
      fetch_bytes[n_fetches] = (size_t)parse_long(argv[++a], 0, "NBYTES");
      fetch_paths[n_fetches] = argv[++a];
      fetches[n_fetches] = aligned_buffer(fetch_bytes[n_fetches]);
      ++n_fetches;
    } else {
      fprintf(stderr, "bench_driver: bad argument %s\n", argv[a]);
      return 2;
    }
  }

  arena = aligned_buffer(MACRO(_ARENA_BYTES));
  state = aligned_buffer(MACRO(_STATE_BYTES));
  constants = aligned_buffer(MACRO(_CONSTANT_BYTES));
  status = FN(_create)(&ctx, arena, MACRO(_ARENA_BYTES), state, MACRO(_STATE_BYTES), constants,
                       MACRO(_CONSTANT_BYTES), threads);
  if (status != MACRO(_OK)) fail("create", NULL, status);
  status = FN(_load_weights)(ctx, argv[1]);
  if (status != MACRO(_OK)) fail("load_weights", ctx, status);

  seconds = (double*)aligned_buffer((size_t)calls * sizeof(double));
  for (i = 0; i < warmup; ++i) {
    status = FN(_run)(ctx, entry, feeds, n_fetches ? fetches : NULL);
    if (status != MACRO(_OK)) fail("run (warmup)", ctx, status);
  }
  for (i = 0; i < calls; ++i) {
    double t0 = now_seconds();
    status = FN(_run)(ctx, entry, feeds, n_fetches ? fetches : NULL);
    seconds[i] = now_seconds() - t0;
    if (status != MACRO(_OK)) fail("run", ctx, status);
  }
  write_file(argv[6], seconds, (size_t)calls * sizeof(double));
  for (a = 0; a < n_fetches; ++a) write_file(fetch_paths[a], fetches[a], fetch_bytes[a]);

  FN(_destroy)(ctx);
  return 0;
}
