/* Tape storage: growth, append (merging two tapes), gradient reset.
 * See NOTE [ Tape layout ] in cad_cpu.h. */
#include <stdlib.h>
#include <string.h>
#include "cad_cpu.h"

/* NOTE [ Large tapes ]
 * A scalar program of 10^6 ops records ~200 MB of tape arrays.  glibc hands such
 * blocks out as fresh mappings (realloc grows them by mremap, without copying), so
 * every page is faulted in on first write and returned to the OS when the tape is
 * freed: recording W1's chain at 10^6 ops cost 0.16 us per op against 0.09 at 10^3,
 * the difference all page faults, paid again by every later recording.  The arrays
 * of the largest freed tape are kept (one tape, at most cad_cache_limit bytes,
 * returned by cad.empty_cache()) and taken over by the next tape that grows past the
 * medium cache's size, whose contents are copied in once: a loop that records the
 * same large program each iteration then writes into pages it has (0.09 us per op
 * at 10^6).  Advising the arrays for transparent huge pages (as alloc.c does) was
 * tried and lost: a first recording 0.30-0.37 us per op with it, 0.25-0.26 without
 * (three alternating runs), the kept arrays no faster; they stay as glibc makes them. */
#define GROW(ptr, cap, need, type)                                        \
    do {                                                                  \
        if ((need) > (cap)) {                                             \
            int64_t nc_ = (cap) ? (cap) : 16;                             \
            while (nc_ < (need)) nc_ *= 2;                                \
            type *np_ = (type *)realloc((ptr), (size_t)nc_ * sizeof(type)); \
            if (!np_) return CAD_ENOMEM;                                  \
            (ptr) = np_; (cap) = nc_;                                     \
        }                                                                 \
    } while (0)

/* Small tapes are created and dropped at a high rate (every x[i] of a leaf starts
 * one); their arrays are recycled here instead of going back to malloc.  A few
 * medium ones (up to CACHE_MIDBUFS values, ~2 MB of arrays) are kept too: a loop that
 * records the same computation each iteration (an optimisation step, W1) would
 * otherwise grow its tape from 16 records by doubling reallocs every time.  Only
 * touched with the GIL held (tapes are made and freed by the Cython layer). */
#define CACHE_N 32
#define CACHE_MAXBUFS 1024
#define CACHE_MID 2
#define CACHE_MIDBUFS 16384
static cad_tape cache[CACHE_N], mid[CACHE_MID];
static int ncache = 0, nmid = 0;
static cad_tape big;      /* NOTE [ Large tapes ]: the arrays of one large freed tape */
static int have_big = 0;

static size_t tape_bytes(const cad_tape *t) {
    return (size_t)t->capbufs * sizeof(cad_buf) + (size_t)t->caprecs * sizeof(cad_rec) +
           (size_t)t->capargs * sizeof(cad_arg) + (size_t)(t->capmeta + t->capaux) * sizeof(int64_t);
}

static void free_arrays(cad_tape *t) {
    free(t->bufs); free(t->recs); free(t->args); free(t->meta); free(t->aux);
    memset(t, 0, sizeof(*t));
}

/* a tape growing past the medium cache takes the kept large arrays when they hold
 * what it needs: its contents copied in, its own arrays freed */
static void take_big(cad_tape *t, int64_t nbufs, int64_t nrecs, int64_t nargs, int64_t nmeta,
                     int64_t naux) {
    cad_tape b;
    if (!have_big || nbufs <= CACHE_MIDBUFS || big.capbufs < nbufs || big.caprecs < nrecs ||
        big.capargs < nargs || big.capmeta < nmeta || big.capaux < naux)
        return;
    b = big;
    have_big = 0;
    memset(&big, 0, sizeof(big));
    memcpy(b.bufs, t->bufs, (size_t)t->nbufs * sizeof(cad_buf));
    memcpy(b.recs, t->recs, (size_t)t->nrecs * sizeof(cad_rec));
    memcpy(b.args, t->args, (size_t)t->nargs * sizeof(cad_arg));
    memcpy(b.meta, t->meta, (size_t)t->nmeta * sizeof(int64_t));
    memcpy(b.aux, t->aux, (size_t)t->naux * sizeof(int64_t));
    b.nbufs = t->nbufs; b.nrecs = t->nrecs; b.nargs = t->nargs; b.nmeta = t->nmeta; b.naux = t->naux;
    free_arrays(t);
    *t = b;
}

size_t cad_tape_cache_clear(void) {
    size_t n = have_big ? tape_bytes(&big) : 0;
    if (have_big) free_arrays(&big);
    have_big = 0;
    return n;
}

int cad_tape_init(cad_tape *t) {
    if (nmid > 0) {   /* the tape being made may grow; take a medium one first */
        *t = mid[--nmid];
        return CAD_OK;
    }
    if (ncache > 0) {
        *t = cache[--ncache];
        return CAD_OK;
    }
    memset(t, 0, sizeof(*t));
    return cad_tape_reserve(t, 16, 16, 32, 32, 16);
}

int cad_tape_reserve(cad_tape *t, int64_t nbufs, int64_t nrecs, int64_t nargs,
                     int64_t nmeta, int64_t naux) {
    /* handles and offsets are stored 32-bit (NOTE [ Record width ]) */
    if (nbufs > CAD_TAPE_MAX || nrecs > CAD_TAPE_MAX || nargs > CAD_TAPE_MAX ||
        nmeta > CAD_TAPE_MAX || naux > CAD_TAPE_MAX)
        return CAD_ENOMEM;
    if (nbufs > t->capbufs || nrecs > t->caprecs || nargs > t->capargs || nmeta > t->capmeta ||
        naux > t->capaux)
        take_big(t, nbufs, nrecs, nargs, nmeta, naux);
    GROW(t->bufs, t->capbufs, nbufs, cad_buf);
    GROW(t->recs, t->caprecs, nrecs, cad_rec);
    GROW(t->args, t->capargs, nargs, cad_arg);
    GROW(t->meta, t->capmeta, nmeta, int64_t);
    GROW(t->aux, t->capaux, naux, int64_t);
    return CAD_OK;
}

void cad_tape_free_arrays(cad_tape *t) {
    int64_t i;
    for (i = 0; i < t->nbufs; i++) {
        cad_buf *b = t->bufs + i;
        cad_buf_release_grad(b);
    }
    if (t->bufs && t->capbufs <= CACHE_MAXBUFS && t->caprecs <= CACHE_MAXBUFS && ncache < CACHE_N) {
        t->nbufs = t->nrecs = t->nargs = t->nmeta = t->naux = 0;
        cache[ncache++] = *t;
    } else if (t->bufs && t->capbufs <= CACHE_MIDBUFS && t->caprecs <= CACHE_MIDBUFS &&
               t->capargs <= 2 * CACHE_MIDBUFS && t->capmeta <= 4 * CACHE_MIDBUFS &&
               t->capaux <= 4 * CACHE_MIDBUFS && nmid < CACHE_MID) {
        t->nbufs = t->nrecs = t->nargs = t->nmeta = t->naux = 0;
        mid[nmid++] = *t;
    } else if (t->bufs && t->capbufs > CACHE_MIDBUFS && tape_bytes(t) <= cad_cache_limit &&
               (!have_big || tape_bytes(t) > tape_bytes(&big))) {
        if (have_big) free_arrays(&big);   /* keep the larger (NOTE [ Large tapes ]) */
        t->nbufs = t->nrecs = t->nargs = t->nmeta = t->naux = 0;
        big = *t;
        have_big = 1;
    } else {
        free(t->bufs); free(t->recs); free(t->args); free(t->meta); free(t->aux);
    }
    memset(t, 0, sizeof(*t));
}

int cad_tape_append(cad_tape *dst, cad_tape *src, int64_t *hoff) {
    int64_t i, ho = dst->nbufs, ro = dst->nrecs, ao = dst->nargs, mo = dst->nmeta, xo = dst->naux;
    int st = cad_tape_reserve(dst, dst->nbufs + src->nbufs, dst->nrecs + src->nrecs,
                              dst->nargs + src->nargs, dst->nmeta + src->nmeta,
                              dst->naux + src->naux);
    if (st) return st;
    memcpy(dst->bufs + ho, src->bufs, (size_t)src->nbufs * sizeof(cad_buf));
    for (i = 0; i < src->nbufs; i++)
        if (dst->bufs[ho + i].meta) dst->bufs[ho + i].meta += (int32_t)mo;   /* 0: none */
    memcpy(dst->recs + ro, src->recs, (size_t)src->nrecs * sizeof(cad_rec));
    for (i = 0; i < src->nrecs; i++) {
        cad_rec *r = dst->recs + ro + i;
        r->out += ho; r->arg += ao;
        if (r->aux >= 0) r->aux += xo;
    }
    for (i = 0; i < src->nargs; i++) {
        cad_hid h = src->args[i];
        dst->args[ao + i] = h >= 0 ? h + ho : h;
    }
    memcpy(dst->meta + mo, src->meta, (size_t)src->nmeta * sizeof(int64_t));
    memcpy(dst->aux + xo, src->aux, (size_t)src->naux * sizeof(int64_t));
    dst->nbufs += src->nbufs; dst->nrecs += src->nrecs; dst->nargs += src->nargs;
    dst->nmeta += src->nmeta; dst->naux += src->naux;
    src->nbufs = src->nrecs = src->nargs = src->nmeta = src->naux = 0;
    *hoff = ho;
    return CAD_OK;
}

void cad_cu_release(void *p);

/* an array's gradient buffer freed (an inline value's sgrad is left as it is:
 * NOTE [ Value slot ]) */
void cad_buf_release_grad(cad_buf *b) {
    if (b->flags & BUF_INLINE) return;
    if (b->grad) {
        if (b->flags & BUF_CUDA) cad_cu_release(b->grad);
        else cad_release(b->grad);
    }
    b->grad = NULL;
}

void cad_tape_clear_grads(cad_tape *t) {
    int64_t i;
    for (i = 0; i < t->nbufs; i++) {
        cad_buf *b = t->bufs + i;
        if (!(b->hasg | (b->grad != NULL) | (b->flags & BUF_KEEP))) continue;   /* already clean */
        if (b->flags & BUF_INLINE) b->sgrad = 0.0;   /* (grad != NULL above: sgrad != 0) */
        else cad_buf_release_grad(b);
        b->hasg = 0;
        b->flags &= (uint8_t)~BUF_KEEP;
    }
}
