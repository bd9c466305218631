/* noalloc_shim.c — an LD_PRELOAD library that counts heap allocations made by the CPU
 * kernels while a plan runs (tests/test_noalloc.py; docs/runtime.md, "Allocation").
 *
 * It replaces malloc, calloc, realloc, posix_memalign, aligned_alloc, memalign, valloc and
 * pvalloc (operator new and every C++ container end in one of them) and forwards to glibc's
 * __libc_* entry points.  An allocation is counted when the counter is armed
 * (noalloc_arm) and the calling thread does not hold the GIL: Executor.run releases the GIL
 * around the C++ run, so what is counted is exactly what the executor, the kernels, the
 * worker pool and the BLAS allocate during the run, and nothing Python allocates around it.
 * With NOALLOC_TRACE=1 each counted allocation prints its size and a backtrace to stderr.
 *
 * Build: cc -O1 -shared -fPIC -o noalloc_shim.so noalloc_shim.c -ldl
 */
#define _GNU_SOURCE
#include <errno.h>
#include <execinfo.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

extern void* __libc_malloc(size_t);
extern void* __libc_calloc(size_t, size_t);
extern void* __libc_realloc(void*, size_t);
extern void* __libc_memalign(size_t, size_t);
extern void* __libc_valloc(size_t);
extern void* __libc_pvalloc(size_t);

static atomic_int armed;
static atomic_long count;
static atomic_long bytes;
static int (*holds_gil)(void);  /* PyGILState_Check, passed in by noalloc_arm */
static int trace;
static __thread int in_trace;

static void note(size_t n) {
  if (!atomic_load_explicit(&armed, memory_order_relaxed) || in_trace) return;
  if (holds_gil != NULL && holds_gil()) return;
  atomic_fetch_add(&count, 1);
  atomic_fetch_add(&bytes, (long)n);
  if (trace) {
    void* frames[32];
    char line[64];
    int len;
    in_trace = 1;
    len = snprintf(line, sizeof line, "noalloc: %zu bytes\n", n);
    if (write(2, line, (size_t)len) < 0) { /* nothing to do */ }
    backtrace_symbols_fd(frames, backtrace(frames, 32), 2);
    in_trace = 0;
  }
}

void* malloc(size_t n) { note(n); return __libc_malloc(n); }
void* calloc(size_t a, size_t b) { note(a * b); return __libc_calloc(a, b); }
void* realloc(void* p, size_t n) { note(n); return __libc_realloc(p, n); }
void* memalign(size_t al, size_t n) { note(n); return __libc_memalign(al, n); }
void* aligned_alloc(size_t al, size_t n) { note(n); return __libc_memalign(al, n); }
void* valloc(size_t n) { note(n); return __libc_valloc(n); }
void* pvalloc(size_t n) { note(n); return __libc_pvalloc(n); }
int posix_memalign(void** out, size_t al, size_t n) {
  void* p;
  if (al < sizeof(void*) || (al & (al - 1)) != 0) return EINVAL;
  note(n);
  p = __libc_memalign(al, n);
  if (p == NULL && n != 0) return ENOMEM;
  *out = p;
  return 0;
}

/* Start counting from zero; gil_check: PyGILState_Check (NULL: count on every thread). */
void noalloc_arm(int (*gil_check)(void)) {
  void* warm[1];
  trace = getenv("NOALLOC_TRACE") != NULL;
  if (trace) {  /* backtrace() loads libgcc_s (which allocates) on its first call */
    in_trace = 1;
    backtrace(warm, 1);
    in_trace = 0;
  }
  holds_gil = gil_check;
  atomic_store(&count, 0);
  atomic_store(&bytes, 0);
  atomic_store(&armed, 1);
}

void noalloc_disarm(void) { atomic_store(&armed, 0); }
long noalloc_count(void) { return atomic_load(&count); }
long noalloc_bytes(void) { return atomic_load(&bytes); }
int noalloc_loaded(void) { return 1; }
