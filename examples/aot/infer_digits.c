/* infer_digits.c: classify digits in C through the AOT artifact "digits", one image per call
 * (the entry "predict", batch 1), and print the accuracy and the per-call latency.
 *
 *   ./bin/infer_digits [-c CHECKPOINT] [-t THREADS] [-r REPEATS] [-d DATA_DIR] [-w WEIGHTS] [IMAGES.f32]
 *
 * Loads the weights image (the initial values), then the checkpoint train_digits wrote (or one
 * gc.Session.save_checkpoint wrote for this program; "-c none" keeps the initial weights), and
 * classifies the test set (digits_test_images.f32, accuracy against digits_test_labels.i32), or
 * the images of IMAGES.f32 (raw float32 [n][64], pixels in [0, 1]; prints each image's class).
 * Latency: every call is timed (CLOCK_MONOTONIC) over REPEATS passes (default 5) of the images;
 * it prints the median, the mean and the minimum per call.
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

#if DIGITS_PREDICT_FEED_X_DTYPE != DIGITS_FLOAT32 || DIGITS_PREDICT_FETCH_LOGITS_DTYPE != DIGITS_FLOAT32
#error "infer_digits.c expects the float32 digits model of examples/aot/export_digits.py"
#endif

static void fail(const char* what, const digits_context* ctx, int status) {
  fprintf(stderr, "infer_digits: %s failed (status %d): %s\n", what, status, digits_last_error(ctx));
  exit(1);
}

static void* aligned_buffer(size_t nbytes) {
  size_t rounded = (nbytes + DIGITS_ALIGNMENT - 1) / DIGITS_ALIGNMENT * DIGITS_ALIGNMENT;
  void* p = aligned_alloc(DIGITS_ALIGNMENT, rounded ? rounded : DIGITS_ALIGNMENT);
  if (!p) {
    fprintf(stderr, "infer_digits: out of memory (%zu bytes)\n", nbytes);
    exit(1);
  }
  memset(p, 0, rounded ? rounded : DIGITS_ALIGNMENT);
  return p;
}

static void* read_file(const char* path, size_t* nbytes) {
  FILE* f = fopen(path, "rb");
  long size;
  void* data;
  if (!f || fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
    fprintf(stderr, "infer_digits: cannot read %s\n", path);
    exit(1);
  }
  data = aligned_buffer((size_t)size);
  if (size > 0 && fread(data, 1, (size_t)size, f) != (size_t)size) {
    fprintf(stderr, "infer_digits: short read on %s\n", path);
    exit(1);
  }
  fclose(f);
  *nbytes = (size_t)size;
  return data;
}

static double now_seconds(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int compare_doubles(const void* a, const void* b) {
  double x = *(const double*)a, y = *(const double*)b;
  return (x > y) - (x < y);
}

static void usage(void) {
  fprintf(stderr,
          "usage: infer_digits [-c CHECKPOINT] [-t THREADS] [-r REPEATS] [-d DATA_DIR] [-w WEIGHTS] [IMAGES.f32]\n"
          "  -c CHECKPOINT  npz from train_digits or gc.Session.save_checkpoint (default digits_trained.npz;\n"
          "                 'none': the initial weights)\n"
          "  -t THREADS     kernel threads (default 1)\n"
          "  -r REPEATS     timed passes over the images (default 5)\n"
          "  -d DATA_DIR    folder of digits_test_images.f32 / digits_test_labels.i32 (default .)\n"
          "  -w WEIGHTS     weights image (default digits.weights)\n"
          "  IMAGES.f32     classify these raw float32 [n][64] images instead of the test set\n");
  exit(2);
}

static long parse_long(const char* text, long lo) {
  char* end;
  long v = strtol(text, &end, 10);
  if (*text == '\0' || *end != '\0' || v < lo) usage();
  return v;
}

int main(int argc, char** argv) {
  static const int64_t x_shape[] = DIGITS_PREDICT_FEED_X_SHAPE;
  const char* checkpoint = "digits_trained.npz";
  const char* data_dir = ".";
  const char* weights = "digits.weights";
  const char* images_path = NULL;
  long threads = 1, repeats = 5, correct = 0;
  char path[4096];
  size_t nbytes, n, i, c, calls = 0;
  float *images, logits[CLASSES];
  int32_t* labels = NULL;
  int* predicted;
  double *seconds, total = 0.0;
  void *arena, *state, *constants;
  digits_context* ctx = NULL;
  const void* feeds[DIGITS_PREDICT_NUM_FEEDS];
  void* fetches[DIGITS_PREDICT_NUM_FETCHES];
  int status, a;
  long r;

  for (a = 1; a < argc; ++a) {
    if (argv[a][0] != '-') {
      if (images_path) usage();
      images_path = argv[a];
    } else if (a + 1 >= argc || argv[a][1] == '\0' || argv[a][2] != '\0') {
      usage();
    } else if (argv[a][1] == 'c') {
      checkpoint = argv[++a];
    } else if (argv[a][1] == 't') {
      threads = parse_long(argv[++a], 1);
    } else if (argv[a][1] == 'r') {
      repeats = parse_long(argv[++a], 1);
    } else if (argv[a][1] == 'd') {
      data_dir = argv[++a];
    } else if (argv[a][1] == 'w') {
      weights = argv[++a];
    } else {
      usage();
    }
  }
  if (x_shape[0] != 1 || x_shape[1] != FEATURES || DIGITS_PREDICT_FETCH_LOGITS_BYTES != sizeof logits) {
    fprintf(stderr, "infer_digits: the 'predict' entry must map x (1, %d) to logits (1, %d)\n", FEATURES, CLASSES);
    return 1;
  }

  if (images_path) {
    images = (float*)read_file(images_path, &nbytes);
  } else {
    snprintf(path, sizeof path, "%s/digits_test_images.f32", data_dir);
    images = (float*)read_file(path, &nbytes);
  }
  if (nbytes % (FEATURES * sizeof(float)) != 0 || nbytes == 0) {
    fprintf(stderr, "infer_digits: the images file holds %zu bytes, not a positive multiple of %zu\n", nbytes,
            FEATURES * sizeof(float));
    return 1;
  }
  n = nbytes / (FEATURES * sizeof(float));
  if (!images_path) {
    snprintf(path, sizeof path, "%s/digits_test_labels.i32", data_dir);
    labels = (int32_t*)read_file(path, &nbytes);
    if (nbytes != n * sizeof(int32_t)) {
      fprintf(stderr, "infer_digits: %zu test images but %zu labels\n", n, nbytes / sizeof(int32_t));
      return 1;
    }
  }

  arena = aligned_buffer(DIGITS_ARENA_BYTES);
  state = aligned_buffer(DIGITS_STATE_BYTES);
  constants = aligned_buffer(DIGITS_CONSTANT_BYTES);
  status = digits_create(&ctx, arena, DIGITS_ARENA_BYTES, state, DIGITS_STATE_BYTES, constants,
                         DIGITS_CONSTANT_BYTES, (int)threads);
  if (status != DIGITS_OK) fail("digits_create", NULL, status);
  status = digits_load_weights(ctx, weights);
  if (status != DIGITS_OK) fail("digits_load_weights", ctx, status);
  if (strcmp(checkpoint, "none") != 0) {
    status = digits_load_checkpoint(ctx, checkpoint);
    if (status != DIGITS_OK) fail("digits_load_checkpoint", ctx, status);
  }

  predicted = (int*)aligned_buffer(n * sizeof(int));
  seconds = (double*)aligned_buffer((size_t)repeats * n * sizeof(double));
  memset(fetches, 0, sizeof fetches);
  fetches[DIGITS_PREDICT_FETCH_LOGITS] = logits;
  for (r = 0; r < repeats; ++r) {
    for (i = 0; i < n; ++i) {
      double t0;
      feeds[DIGITS_PREDICT_FEED_X] = images + i * FEATURES;
      t0 = now_seconds();
      status = digits_run_predict(ctx, feeds, fetches);
      seconds[calls] = now_seconds() - t0;
      total += seconds[calls++];
      if (status != DIGITS_OK) fail("digits_run_predict", ctx, status);
      predicted[i] = 0;
      for (c = 1; c < CLASSES; ++c)
        if (logits[c] > logits[predicted[i]]) predicted[i] = (int)c;
    }
  }
  qsort(seconds, calls, sizeof(double), compare_doubles);

  if (labels) {
    for (i = 0; i < n; ++i) correct += (long)(predicted[i] == labels[i]);
    printf("test accuracy %ld/%zu = %.4f\n", correct, n, (double)correct / (double)n);
  } else {
    for (i = 0; i < n; ++i) printf("image %zu: class %d\n", i, predicted[i]);
  }
  printf("latency per call (batch 1, %ld thread(s), %zu calls): median %.2f us, mean %.2f us, min %.2f us\n",
         threads, calls, 1e6 * (calls % 2 ? seconds[calls / 2] : 0.5 * (seconds[calls / 2 - 1] + seconds[calls / 2])),
         1e6 * total / (double)calls, 1e6 * seconds[0]);

  digits_destroy(ctx);
  free(seconds);
  free(predicted);
  free(constants);
  free(state);
  free(arena);
  free(labels);
  free(images);
  return 0;
}
