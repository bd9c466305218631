/* train_digits.c: train the digits MLP in C through the AOT artifact "digits" (no Python, no
 * graphc runtime installed), print the test accuracy and save a checkpoint that
 * gc.Session.load_checkpoint reads.
 *
 *   python examples/aot/export_digits.py --out OUT      (the artifact + raw data files)
 *   cd OUT && make programs PROGRAMS="train_digits.c infer_digits.c"
 *   ./bin/train_digits [STEPS] [-t THREADS] [-s SEED] [-d DATA_DIR] [-w WEIGHTS] [-o CHECKPOINT]
 *
 * STEPS training steps (default 300) of the entry "train" over batches of the shuffled training
 * set (a splitmix64-driven Fisher-Yates shuffle per epoch: export_digits.batch_indices is the
 * same order in Python), then the entry "evaluate" classifies the test set in one call.
 * With the same THREADS as gc.Session(..., threads=THREADS) the loss, the weights and the
 * accuracy are bit-identical to a Python run of the same steps.
 *
 * Every call's status is checked; a failure prints digits_last_error() and exits 1.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "digits.h"

#define FEATURES 64
#define CLASSES 10

#if DIGITS_TRAIN_FEED_X_DTYPE != DIGITS_FLOAT32 || DIGITS_TRAIN_FETCH_LOSS_DTYPE != DIGITS_FLOAT32
#error "train_digits.c expects the float32 digits model of examples/aot/export_digits.py"
#endif
#if DIGITS_TRAIN_FEED_Y_DTYPE == DIGITS_INT64
typedef int64_t label_t;
#elif DIGITS_TRAIN_FEED_Y_DTYPE == DIGITS_INT32
typedef int32_t label_t;
#else
#error "the labels feed 'y' must be int64 or int32"
#endif

static void fail(const char* what, const digits_context* ctx, int status) {
  fprintf(stderr, "train_digits: %s failed (status %d): %s\n", what, status, digits_last_error(ctx));
  exit(1);
}

/* Memory aligned to DIGITS_ALIGNMENT (aligned_alloc wants a multiple of the alignment). */
static void* aligned_buffer(size_t nbytes) {
  size_t rounded = (nbytes + DIGITS_ALIGNMENT - 1) / DIGITS_ALIGNMENT * DIGITS_ALIGNMENT;
  void* p = aligned_alloc(DIGITS_ALIGNMENT, rounded ? rounded : DIGITS_ALIGNMENT);
  if (!p) {
    fprintf(stderr, "train_digits: out of memory (%zu bytes)\n", nbytes);
    exit(1);
  }
  memset(p, 0, rounded ? rounded : DIGITS_ALIGNMENT);
  return p;
}

/* The whole file `dir/name` in a fresh buffer; *nbytes its size. Exits on any error. */
static void* read_file(const char* dir, const char* name, size_t* nbytes) {
  char path[4096];
  FILE* f;
  long size;
  void* data;
  snprintf(path, sizeof path, "%s/%s", dir, name);
  f = fopen(path, "rb");
  if (!f || fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
    fprintf(stderr, "train_digits: cannot read %s (run examples/aot/export_digits.py --out DIR first)\n", path);
    exit(1);
  }
  data = aligned_buffer((size_t)size);
  if (size > 0 && fread(data, 1, (size_t)size, f) != (size_t)size) {
    fprintf(stderr, "train_digits: short read on %s\n", path);
    exit(1);
  }
  fclose(f);
  *nbytes = (size_t)size;
  return data;
}

/* splitmix64: the shuffle's random stream (export_digits.splitmix64 is the same in Python). */
static uint64_t splitmix64(uint64_t* state) {
  uint64_t z = (*state += UINT64_C(0x9E3779B97F4A7C15));
  z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
  z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
  return z ^ (z >> 31);
}

static double now_seconds(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void usage(void) {
  fprintf(stderr,
          "usage: train_digits [STEPS] [-t THREADS] [-s SEED] [-d DATA_DIR] [-w WEIGHTS] [-o CHECKPOINT]\n"
          "  STEPS       training steps (default 300)\n"
          "  -t THREADS  kernel threads, as gc.Session(threads=) (default 1)\n"
          "  -s SEED     shuffle seed (default 1)\n"
          "  -d DATA_DIR folder of the digits_*.f32/.i32 files (default .)\n"
          "  -w WEIGHTS  weights image (default digits.weights)\n"
          "  -o CHECKPOINT  where to save the trained variables, npz (default digits_trained.npz)\n");
  exit(2);
}

static long parse_long(const char* text, long lo) {
  char* end;
  long v = strtol(text, &end, 10);
  if (*text == '\0' || *end != '\0' || v < lo) usage();
  return v;
}

int main(int argc, char** argv) {
  static const int64_t train_x_shape[] = DIGITS_TRAIN_FEED_X_SHAPE;
  static const int64_t eval_x_shape[] = DIGITS_EVALUATE_FEED_X_SHAPE;
  const size_t batch = (size_t)train_x_shape[0];
  const size_t n_eval = (size_t)eval_x_shape[0];
  long steps = 300, threads = 1;
  uint64_t seed = 1;
  const char* data_dir = ".";
  const char* weights = "digits.weights";
  const char* checkpoint = "digits_trained.npz";
  size_t n_train, n_test, nbytes, per_epoch, i, b;
  float *xtr, *xte, *xb, *logits;
  int32_t *ytr, *yte;
  label_t* yb;
  size_t* order;
  void *arena, *state, *constants;
  digits_context* ctx = NULL;
  const void* feeds[DIGITS_TRAIN_NUM_FEEDS > DIGITS_EVALUATE_NUM_FEEDS ? DIGITS_TRAIN_NUM_FEEDS
                                                                        : DIGITS_EVALUATE_NUM_FEEDS];
  void* fetches[DIGITS_TRAIN_NUM_FETCHES > DIGITS_EVALUATE_NUM_FETCHES ? DIGITS_TRAIN_NUM_FETCHES
                                                                        : DIGITS_EVALUATE_NUM_FETCHES];
  float loss = 0.0f;
  long step, correct = 0;
  int status, a;
  double t0, train_seconds;

  for (a = 1; a < argc; ++a) {
    if (argv[a][0] != '-') {
      steps = parse_long(argv[a], 0);
    } else if (a + 1 >= argc || argv[a][1] == '\0' || argv[a][2] != '\0') {
      usage();
    } else if (argv[a][1] == 't') {
      threads = parse_long(argv[++a], 1);
    } else if (argv[a][1] == 's') {
      seed = (uint64_t)parse_long(argv[++a], 0);
    } else if (argv[a][1] == 'd') {
      data_dir = argv[++a];
    } else if (argv[a][1] == 'w') {
      weights = argv[++a];
    } else if (argv[a][1] == 'o') {
      checkpoint = argv[++a];
    } else {
      usage();
    }
  }
  if (train_x_shape[1] != FEATURES || eval_x_shape[1] != FEATURES) {
    fprintf(stderr, "train_digits: the artifact's x is not (N, %d)\n", FEATURES);
    return 1;
  }

  /* The data: raw little-endian arrays, rows = file size / row size. */
  xtr = (float*)read_file(data_dir, "digits_train_images.f32", &nbytes);
  n_train = nbytes / (FEATURES * sizeof(float));
  ytr = (int32_t*)read_file(data_dir, "digits_train_labels.i32", &nbytes);
  if (nbytes != n_train * sizeof(int32_t)) {
    fprintf(stderr, "train_digits: %zu training images but %zu labels\n", n_train, nbytes / sizeof(int32_t));
    return 1;
  }
  xte = (float*)read_file(data_dir, "digits_test_images.f32", &nbytes);
  n_test = nbytes / (FEATURES * sizeof(float));
  yte = (int32_t*)read_file(data_dir, "digits_test_labels.i32", &nbytes);
  if (nbytes != n_test * sizeof(int32_t) || n_test != n_eval) {
    fprintf(stderr, "train_digits: %zu test images, %zu labels; the 'evaluate' entry takes %zu\n", n_test,
            nbytes / sizeof(int32_t), n_eval);
    return 1;
  }
  if (n_train < batch) {
    fprintf(stderr, "train_digits: %zu training images, fewer than one batch of %zu\n", n_train, batch);
    return 1;
  }

  /* Caller-owned memory: the arena (temporaries), the state (variables and optimizer state)
   * and the constants, each aligned and exactly as large as the header says. */
  arena = aligned_buffer(DIGITS_ARENA_BYTES);
  state = aligned_buffer(DIGITS_STATE_BYTES);
  constants = aligned_buffer(DIGITS_CONSTANT_BYTES);
  status = digits_create(&ctx, arena, DIGITS_ARENA_BYTES, state, DIGITS_STATE_BYTES, constants,
                         DIGITS_CONSTANT_BYTES, (int)threads);
  if (status != DIGITS_OK) fail("digits_create", NULL, status);
  status = digits_load_weights(ctx, weights);
  if (status != DIGITS_OK) fail("digits_load_weights", ctx, status);

  xb = (float*)aligned_buffer(DIGITS_TRAIN_FEED_X_BYTES);
  yb = (label_t*)aligned_buffer(DIGITS_TRAIN_FEED_Y_BYTES);
  order = (size_t*)aligned_buffer(n_train * sizeof(size_t));
  per_epoch = n_train / batch;
  memset(fetches, 0, sizeof fetches);
  feeds[DIGITS_TRAIN_FEED_X] = xb;
  feeds[DIGITS_TRAIN_FEED_Y] = yb;
  fetches[DIGITS_TRAIN_FETCH_LOSS] = &loss;

  printf("training %ld steps, batch %zu, %ld thread(s), %zu training images\n", steps, batch, threads, n_train);
  t0 = now_seconds();
  for (step = 0; step < steps; ++step) {
    if ((size_t)step % per_epoch == 0) { /* a new epoch: shuffle 0..n-1 (Fisher-Yates) */
      for (i = 0; i < n_train; ++i) order[i] = i;
      for (i = n_train - 1; i > 0; --i) {
        size_t j = (size_t)(splitmix64(&seed) % (uint64_t)(i + 1)), t = order[i];
        order[i] = order[j];
        order[j] = t;
      }
    }
    b = (size_t)step % per_epoch;
    for (i = 0; i < batch; ++i) {
      size_t row = order[b * batch + i];
      memcpy(xb + i * FEATURES, xtr + row * FEATURES, FEATURES * sizeof(float));
      yb[i] = (label_t)ytr[row];
    }
    status = digits_run_train(ctx, feeds, fetches);
    if (status != DIGITS_OK) fail("digits_run_train", ctx, status);
    if (step % 100 == 0 || step == steps - 1) printf("step %5ld  loss %.6f\n", step, (double)loss);
  }
  train_seconds = now_seconds() - t0;

  /* The test set through the inference entry, in one call. */
  logits = (float*)aligned_buffer(DIGITS_EVALUATE_FETCH_LOGITS_BYTES);
  memset(fetches, 0, sizeof fetches);
  feeds[DIGITS_EVALUATE_FEED_X] = xte;
  fetches[DIGITS_EVALUATE_FETCH_LOGITS] = logits;
  status = digits_run_evaluate(ctx, feeds, fetches);
  if (status != DIGITS_OK) fail("digits_run_evaluate", ctx, status);
  for (i = 0; i < n_test; ++i) {
    size_t c, best = 0;
    for (c = 1; c < CLASSES; ++c)
      if (logits[i * CLASSES + c] > logits[i * CLASSES + best]) best = c;
    correct += (long)(best == (size_t)yte[i]);
  }

  status = digits_save_checkpoint(ctx, checkpoint);
  if (status != DIGITS_OK) fail("digits_save_checkpoint", ctx, status);

  printf("trained %ld steps in %.3f s (%.1f us/step)\n", steps, train_seconds,
         steps ? 1e6 * train_seconds / (double)steps : 0.0);
  printf("final loss %.9g\n", (double)loss);
  printf("test accuracy %ld/%zu = %.4f\n", correct, n_test, (double)correct / (double)n_test);
  printf("checkpoint %s\n", checkpoint);

  digits_destroy(ctx);
  free(logits);
  free(order);
  free(yb);
  free(xb);
  free(constants);
  free(state);
  free(arena);
  free(yte);
  free(xte);
  free(ytr);
  free(xtr);
  return 0;
}
