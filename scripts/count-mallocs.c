/* LD_PRELOAD shim for scripts/bench-ort-mallocs.sh: counts every heap allocation call in the
 * process (malloc, calloc, realloc, memalign, posix_memalign, aligned_alloc, valloc,
 * pvalloc; C++ operator new reaches malloc) and the bytes asked for, then forwards to
 * glibc's own implementation (__libc_*: no dlsym, so no recursion at start-up).
 * The program reads the totals through `count_mallocs_read` (found with dlsym), so it can
 * bracket exactly the calls it wants to measure. Counters are process-wide atomics. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <unistd.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void __libc_free(void *);

static atomic_ullong calls, bytes, frees;

static void note(size_t n) {
    atomic_fetch_add_explicit(&calls, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&bytes, n, memory_order_relaxed);
}

/* calls, bytes, frees so far. */
void count_mallocs_read(uint64_t out[3]) {
    out[0] = atomic_load(&calls);
    out[1] = atomic_load(&bytes);
    out[2] = atomic_load(&frees);
}

void *malloc(size_t n) { note(n); return __libc_malloc(n); }
void *calloc(size_t a, size_t b) { note(a * b); return __libc_calloc(a, b); }
void *realloc(void *p, size_t n) { note(n); return __libc_realloc(p, n); }
void free(void *p) {
    if (p) atomic_fetch_add_explicit(&frees, 1, memory_order_relaxed);
    __libc_free(p);
}
void *memalign(size_t a, size_t n) { note(n); return __libc_memalign(a, n); }
void *aligned_alloc(size_t a, size_t n) { note(n); return __libc_memalign(a, n); }
void *valloc(size_t n) { note(n); return __libc_memalign((size_t)sysconf(_SC_PAGESIZE), n); }
void *pvalloc(size_t n) {
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    note(n);
    return __libc_memalign(page, (n + page - 1) / page * page);
}
int posix_memalign(void **out, size_t a, size_t n) {
    if (a % sizeof(void *) || (a & (a - 1))) return EINVAL;
    note(n);
    void *p = __libc_memalign(a, n);
    if (!p) return ENOMEM;
    *out = p;
    return 0;
}
