/* A cache of large blocks for the arrays and gradient buffers cad makes.
 *
 * On the VMs this project runs on, a fresh page costs a fault plus a TLB
 * shootdown to every core the process has threads on; glibc returns freed
 * blocks >= 128 KiB to the OS and faults them in again on the next allocation,
 * which made a 128x128 Hessian 3x slower than its arithmetic.  Blocks between
 * CACHE_MIN and CACHE_BLOCK_MAX bytes are kept (up to cad_cache_limit bytes in all)
 * and handed out again by exact size class.  Only cad's own allocations use it;
 * process-wide malloc settings are untouched.  cad.empty_cache() returns it all. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <sys/mman.h>
#include <stdlib.h>
#include <string.h>
#include "cad_cpu.h"

#define HDR 64                       /* keeps the data 64-byte aligned */
#define CACHE_MIN ((size_t)64 << 10)
#define CACHE_BLOCK_MAX ((size_t)64 << 20)
#define NSLOTS 512

typedef struct { size_t cls; void *p; } slot;
static slot slots[NSLOTS];
static int nslots = 0;
static size_t cached = 0;
size_t cad_cache_limit = (size_t)512 << 20;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

/* large blocks: 2 MiB aligned and advised for transparent huge pages, as numpy
 * does for its arrays (40 faults for 80 MB instead of 20,000) */
#define HUGE_MIN ((size_t)4 << 20)
#define HUGE_ALIGN ((size_t)2 << 20)

static char *raw_alloc(size_t total) {
    void *p = NULL;
    if (total >= HUGE_MIN) {
        if (posix_memalign(&p, HUGE_ALIGN, total) != 0) return NULL;
#ifdef MADV_HUGEPAGE
        madvise(p, total / HUGE_ALIGN * HUGE_ALIGN, MADV_HUGEPAGE);   /* only whole huge pages we own */
#endif
        return (char *)p;
    }
    return (char *)malloc(total);
}

static size_t size_class(size_t nb) {
    const size_t g = (size_t)16 << 10;
    return (nb + g - 1) / g * g;
}

void *cad_alloc(size_t nb) {
    size_t cls;
    char *base;
    int i;
    if (nb < CACHE_MIN || nb > CACHE_BLOCK_MAX) {
        base = raw_alloc(nb + HDR);
        if (!base) return NULL;
        *(size_t *)base = 0;           /* class 0: not cached */
        return base + HDR;
    }
    cls = size_class(nb);
    pthread_mutex_lock(&mu);
    for (i = nslots - 1; i >= 0; i--) {
        if (slots[i].cls == cls) {
            base = (char *)slots[i].p;
            slots[i] = slots[--nslots];
            cached -= cls;
            pthread_mutex_unlock(&mu);
            return base + HDR;
        }
    }
    pthread_mutex_unlock(&mu);
    base = raw_alloc(cls + HDR);
    if (!base) return NULL;
    *(size_t *)base = cls;
    return base + HDR;
}

void cad_release(void *p) {
    char *base;
    size_t cls;
    if (!p) return;
    base = (char *)p - HDR;
    cls = *(size_t *)base;
    if (cls) {
        pthread_mutex_lock(&mu);
        if (nslots < NSLOTS && cached + cls <= cad_cache_limit) {
            slots[nslots].cls = cls;
            slots[nslots].p = base;
            nslots++;
            cached += cls;
            pthread_mutex_unlock(&mu);
            return;
        }
        pthread_mutex_unlock(&mu);
    }
    free(base);
}

size_t cad_cache_clear(void) {
    size_t n;
    int i;
    pthread_mutex_lock(&mu);
    for (i = 0; i < nslots; i++) free(slots[i].p);
    n = cached;
    nslots = 0;
    cached = 0;
    pthread_mutex_unlock(&mu);
    return n;
}

size_t cad_cache_bytes(void) { return cached; }
