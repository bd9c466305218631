/* noalloc_aot_driver.c — allocation check of an AOT artifact named "mlp" with entries "train"
 * (feeds x float32, t int64; fetch 0 the loss) and "infer" (feed x; fetch y), built by
 * tests/test_noalloc.py with the artifact's `make programs`.  Runs train STEPS times, then infer
 * 3 times; tests/noalloc_shim.c (LD_PRELOAD) counts every allocation of every thread during each
 * entry call.  Usage: driver THREADS STEPS (in the artifact's folder).  Prints one line:
 *   threads=T train: first=N later=N  infer: first=N later=N  loss=L
 * (first: the first call after the weights were loaded; later: the sum over the other calls). */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "mlp.h"
typedef void (*arm_fn)(void*);
typedef void (*disarm_fn)(void);
typedef long (*count_fn)(void);
static void* block(size_t n) { return n ? aligned_alloc(64, (n + 63) / 64 * 64) : NULL; }
int main(int argc, char** argv) {
  int threads = atoi(argv[1]), steps = atoi(argv[2]), i;
  arm_fn arm = (arm_fn)dlsym(RTLD_DEFAULT, "noalloc_arm");
  disarm_fn disarm = (disarm_fn)dlsym(RTLD_DEFAULT, "noalloc_disarm");
  count_fn count = (count_fn)dlsym(RTLD_DEFAULT, "noalloc_count");
  mlp_context* ctx = NULL;
  void* arena = block(MLP_ARENA_BYTES); void* state = block(MLP_STATE_BYTES); void* consts = block(MLP_CONSTANT_BYTES);
  const void* feeds[2]; void* fetches[4] = {0, 0, 0, 0}; float loss; float* y = malloc(MLP_INFER_FETCH_Y_BYTES + 64);
  float* x = calloc(1, MLP_TRAIN_FEED_X_BYTES); long long* t = calloc(1, MLP_TRAIN_FEED_T_BYTES);
  long first = -1, later = 0, ifirst = -1, ilater = 0;
  if (!arm) { fprintf(stderr, "shim not preloaded\n"); return 2; }
  for (i = 0; i < (int)(MLP_TRAIN_FEED_X_BYTES / 4); ++i) x[i] = (float)((i * 7919) % 997) / 997.0f - 0.5f;
  for (i = 0; i < (int)(MLP_TRAIN_FEED_T_BYTES / 8); ++i) t[i] = i % 10;
  if (mlp_create(&ctx, arena, MLP_ARENA_BYTES, state, MLP_STATE_BYTES, consts, MLP_CONSTANT_BYTES, threads)) {
    fprintf(stderr, "create: %s\n", mlp_last_error(NULL)); return 1;
  }
  if (mlp_load_weights(ctx, "mlp.weights")) { fprintf(stderr, "%s\n", mlp_last_error(ctx)); return 1; }
  feeds[MLP_TRAIN_FEED_X] = x; feeds[MLP_TRAIN_FEED_T] = t; fetches[0] = &loss;
  for (i = 0; i < steps; ++i) {
    int st; long n;
    arm(NULL); st = mlp_run(ctx, MLP_ENTRY_TRAIN, feeds, fetches); disarm(); n = count();
    if (st) { fprintf(stderr, "%s\n", mlp_last_error(ctx)); return 1; }
    if (i == 0) first = n; else later += n;
  }
  for (i = 0; i < 3; ++i) {
    const void* f1[1]; void* o1[1]; long n; int st;
    f1[0] = x; o1[0] = y;
    arm(NULL); st = mlp_run(ctx, MLP_ENTRY_INFER, f1, o1); disarm(); n = count();
    if (st) { fprintf(stderr, "%s\n", mlp_last_error(ctx)); return 1; }
    if (i == 0) ifirst = n; else ilater += n;
  }
  printf("threads=%d train: first=%ld later=%ld  infer: first=%ld later=%ld  loss=%g\n", threads, first, later, ifirst, ilater, loss);
  mlp_destroy(ctx);
  return 0;
}
