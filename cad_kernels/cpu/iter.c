/* The strided iterator: broadcasting, dimension coalescing and threading for every
 * elementwise kernel, reduction and gradient accumulation (numpy's ufunc-loop
 * design: generated "row" kernels run over the innermost dimension). */
#include <string.h>
#include "cad_cuda.h"

int cad_num_threads = 0;          /* 0: OpenMP's default */
/* Fewer elements than this run on one thread.  Measured on a 2-core VM with
 * OMP_WAIT_POLICY=passive: a second thread pays from ~1M elements for add/mul
 * (page faults of fresh outputs contend), from ~30k for sin/exp. */
int64_t cad_par_min = 1 << 19;
int64_t cad_par_min_heavy = 1 << 15;

/* an innermost dim shorter than this goes outside a dim at least 4x longer (unless its
 * rows can be packed, NOTE [ Packed rows ]); 16: GMM's d=10 rows (3.66 -> 3.38 ms) */
#define CAD_SHORT_ROW 16

int cad_get_max_threads(void) {
    static int n = 0;
    if (!n) n = cad_cpu_count();
    return n;
}

typedef struct {
    int nop, nd;
    const int64_t *shape;
    int64_t (*st)[CAD_MAXDIM];
    char *const *base;
    const int *esize;
    cad_row row;
    int64_t N;
    char *part;      /* full reductions: per-thread partial accumulators (16 bytes each) */
    int blocked;     /* (short, long) dims: run_blocked over the long dim's range */
    const int *kind; /* packed rows (packed_task): each operand's kind (pack_plan) */
    int64_t P;       /* packed rows: the outer indices */
} range_job;

void cad_contig_strides(int ndim, const int64_t *shape, int64_t *st) {
    int64_t s = 1;
    int d;
    for (d = ndim - 1; d >= 0; d--) {
        st[d] = s;
        s *= shape[d] > 1 ? shape[d] : 1;
    }
}

void cad_iter_operand(cad_iter *it, int k, char *ptr, int esize, int ondim,
                      const int64_t *shape, const int64_t *strides) {
    int d, off = it->ndim - ondim;
    it->ptr[k] = ptr;
    it->esize[k] = esize;
    for (d = 0; d < it->ndim; d++) {
        int od = d - off;
        if (od < 0 || ptr == NULL || shape[od] == 1) it->st[k][d] = 0;
        else it->st[k][d] = strides[od];
    }
}

/* [start, end) of the flat index over shape[nd]: row kernels along the innermost dim.
 * Pointers advance incrementally (an odometer over byte strides): a short inner dim
 * (a column slice's 1-3 elements) calls the row once per outer index, and recomputing
 * every operand's offset from the index per call was most of its cost. */
static void run_range(int nop, int nd, const int64_t *shape, int64_t (*st)[CAD_MAXDIM],
                      char *const *base, const int *esize, cad_row row,
                      int64_t start, int64_t end) {
    int64_t idx[CAD_MAXDIM], s_in[CAD_MAXOP], bst[CAD_MAXOP][CAD_MAXDIM], rem = start, pos = start;
    char *p[CAD_MAXOP];
    int d, k;
    const int64_t inner = shape[nd - 1];
    for (d = nd - 1; d >= 0; d--) { idx[d] = rem % shape[d]; rem /= shape[d]; }
    for (k = 0; k < nop; k++) {
        int64_t off = 0;
        s_in[k] = st[k][nd - 1];
        for (d = 0; d < nd; d++) {
            bst[k][d] = base[k] ? st[k][d] * esize[k] : 0;
            off += idx[d] * bst[k][d];
        }
        p[k] = base[k] ? base[k] + off : NULL;
    }
    while (pos < end) {
        int64_t len = inner - idx[nd - 1];
        if (len > end - pos) len = end - pos;
        row(p, s_in, len);   /* rows read p, never write it */
        pos += len;
        if (pos >= end) break;
        idx[nd - 1] += len;
        for (k = 0; k < nop; k++) if (p[k]) p[k] += len * bst[k][nd - 1];
        if (idx[nd - 1] == inner) {
            idx[nd - 1] = 0;
            for (k = 0; k < nop; k++) if (p[k]) p[k] -= inner * bst[k][nd - 1];
            for (d = nd - 2; d >= 0; d--) {
                for (k = 0; k < nop; k++) if (p[k]) p[k] += bst[k][d];
                if (++idx[d] < shape[d]) break;
                for (k = 0; k < nop; k++) if (p[k]) p[k] -= shape[d] * bst[k][d];
                idx[d] = 0;
            }
        }
    }
}

/* NOTE [ Short rows ]: two dims (short, long) after the swap below (a column slice of
 * 1-15 elements under p rows): the long dim is cut into blocks of CAD_BLOCK, and each
 * block runs one strided row per short index.  Long strided rows alone would read
 * every cache line of a wide operand once per short index (cams[:, 0:3] of BA's (p, 11)
 * cameras: 3 passes over 3.2 MB, 12x a contiguous op); a block's lines stay in L1/L2
 * across the short index, and each row call still covers CAD_BLOCK elements. */
#define CAD_BLOCK 256
static void run_blocked(int nop, const int64_t *shape, int64_t (*st)[CAD_MAXDIM],
                        char *const *base, const int *esize, cad_row row, int64_t lo, int64_t hi) {
    char *p[CAD_MAXOP];
    int64_t s_in[CAD_MAXOP], i0, j;
    int k;
    for (k = 0; k < nop; k++) s_in[k] = st[k][1];
    for (i0 = lo; i0 < hi; i0 += CAD_BLOCK) {
        const int64_t len = hi - i0 < CAD_BLOCK ? hi - i0 : CAD_BLOCK;
        for (j = 0; j < shape[0]; j++) {
            for (k = 0; k < nop; k++)
                p[k] = base[k] ? base[k] + (j * st[k][0] + i0 * st[k][1]) * esize[k] : NULL;
            row(p, s_in, len);
        }
    }
}

/* NOTE [ Packed rows ]: rows of n < CAD_PACK_N elements whose operands are either
 * contiguous over the last two dims or the same row repeated (stride 0 over the
 * second-to-last dim: `Qdiags[:, None] * xc`, x[None] - means[:, None]) cannot be
 * coalesced, and ran one row call per n elements (GMM's (K, n, d=10) arrays: a call
 * per 10 elements, the iterator's own loop 16% of the time).  Here a repeated row is
 * copied R times into a small buffer once per outer index, and each call covers R rows
 * as one contiguous run of R*n elements (the rows' SIMD paths apply).  A destination
 * that is one row repeated (the vjp of `Qdiags[:, None] * xc` into Qdiags: a sum over
 * the second-to-last dim) is packed too when the rows accumulate (a combine row and a
 * zero start): R rows are computed into a zeroed buffer and added to the destination
 * row in order, so every element sums the same terms in the same order as one row
 * call per index did (the short-row path instead ran the n dim innermost, a reduction
 * row of one sequential dependent sum per element). */
#define CAD_PACK_N 64
#define CAD_PACK_EL 512
#define CAD_PACK_BUF 4
#define CAD_PACK_ACC 16   /* a reduction into rows of at most this many: a register accumulator */
static int pack_plan(int nop, int nd, const int64_t *shape, int64_t (*st)[CAD_MAXDIM],
                     char *const *base, int *kind, int reduce) {
    const int64_t n = shape[nd - 1];
    int k, nb = 0;
    for (k = 0; k < nop; k++) {
        const int64_t si = st[k][nd - 1], so = st[k][nd - 2];
        if (!base[k] || (si == 0 && so == 0)) kind[k] = 0;   /* absent or one value */
        else if (si == 1 && so == n) kind[k] = 1;           /* contiguous rows */
        else if (si == 1 && so == 0 && (k > 0 || reduce)) { kind[k] = 2; nb++; }   /* a repeated row */
        else if (k > 0 && kind[0] == 1 && si == 0) { kind[k] = 3; nb++; }   /* one value per row */
        else if (k > 0 && kind[0] == 1 && si == 1) { kind[k] = 4; nb++; }   /* rows apart (a column slice) */
        else return 0;
    }
    if (kind[0] == 0) return 0;
    return (kind[0] == 2 || nb > 0) && nb <= CAD_PACK_BUF;
}

/* rows r0..r0+rr of an operand of kind 3 (x[r so] over each row's n elements) or 4
 * (the n elements from x + r so) laid out contiguously in buf; the short rows of BA's
 * (p, 2) and (p, 3) columns with their own loops (a loop over a variable n of 2 or 3
 * cost more than the strided rows it replaces) */
#define PACK_LOOP(T, N) do {                                                             \
        T *d = (T *)buf;                                                                \
        const T *s = (const T *)x + r0 * so;                                            \
        if (strided_row)                                                                \
            for (q = 0; q < rr; q++, d += (N), s += so) for (c = 0; c < (N); c++) d[c] = s[c]; \
        else                                                                            \
            for (q = 0; q < rr; q++, d += (N), s += so) for (c = 0; c < (N); c++) d[c] = s[0]; \
    } while (0)
static void pack_rows(char *buf, const char *x, int es, int64_t so, int strided_row,
                      int64_t r0, int64_t rr, int64_t n) {
    int64_t q, c;
    if (es == 8) {
        if (n == 2) PACK_LOOP(double, 2);
        else if (n == 3) PACK_LOOP(double, 3);
        else if (n == 4) PACK_LOOP(double, 4);
        else PACK_LOOP(double, n);
    } else if (es == 4) {
        if (n == 2) PACK_LOOP(float, 2);
        else if (n == 3) PACK_LOOP(float, 3);
        else PACK_LOOP(float, n);
    } else {
        for (q = 0; q < rr; q++)
            for (c = 0; c < n; c++)
                memcpy(buf + (q * n + c) * es, x + ((r0 + q) * so + (strided_row ? c : 0)) * es, (size_t)es);
    }
}
#undef PACK_LOOP

/* the accumulation's start value is all zero bytes (a sum's 0.0) */
static inline int zero_init(const void *init, int es) {
    int b;
    if (!init) return 0;
    for (b = 0; b < es; b++) if (((const unsigned char *)init)[b]) return 0;
    return 1;
}

/* outer indices [o0, o1) of the dims before the last two (flattened, row-major) and
 * rows [m0, m1) of the second-to-last dim (a unit of packed_task; the whole: 0, P, 0, m) */
static void run_packed(int nop, int nd, const int64_t *shape, int64_t (*st)[CAD_MAXDIM],
                       char *const *base, const int *esize, cad_row row, cad_row combine,
                       const int *kind, int64_t o0, int64_t o1, int64_t m0, int64_t m1) {
    const int64_t n = shape[nd - 1], m = m1;
    int64_t R = CAD_PACK_EL / n, idx[CAD_MAXDIM], s_in[CAD_MAXOP], r0, q, oi, rem;
    double buf[CAD_PACK_BUF][CAD_PACK_EL + CAD_PACK_N];
    char *bp[CAD_MAXOP], *p[CAD_MAXOP];
    int k, d, b, j, same[CAD_MAXOP];
    if (o0 >= o1 || m0 >= m1) return;
    if (R > m1 - m0) R = m1 - m0;
    for (k = 0, b = 0; k < nop; k++) {
        s_in[k] = kind[k] ? 1 : 0;
        bp[k] = NULL;
        same[k] = -1;
        if (kind[k] >= 3)   /* the same rows as an earlier operand (x * x): packed once */
            for (j = 1; j < k; j++)
                if (kind[j] == kind[k] && base[j] == base[k] && esize[j] == esize[k] &&
                    memcmp(st[j], st[k], sizeof(int64_t) * (size_t)nd) == 0) {
                    same[k] = j;
                    bp[k] = bp[j];
                    break;
                }
        if (kind[k] >= 2 && !bp[k]) bp[k] = (char *)buf[b++];
    }
    for (d = nd - 3, rem = o0; d >= 0; d--) {   /* o0 as an outer index */
        idx[d] = rem % shape[d];
        rem /= shape[d];
    }
    for (oi = o0;;) {
        char *o[CAD_MAXOP];
        for (k = 0; k < nop; k++) {
            int64_t off = 0;
            for (d = 0; d < nd - 2; d++) off += idx[d] * st[k][d];
            o[k] = base[k] ? base[k] + off * esize[k] : NULL;
            if (kind[k] == 2 && k > 0)   /* the repeated row, R times */
                for (q = 0; q < R; q++) memcpy(bp[k] + q * n * esize[k], o[k], (size_t)(n * esize[k]));
        }
        for (r0 = m0; r0 < m; r0 += R) {
            const int64_t rr = m - r0 < R ? m - r0 : R;
            for (k = 0; k < nop; k++) {
                p[k] = kind[k] == 1 ? o[k] + r0 * n * esize[k] : (kind[k] >= 2 ? bp[k] : o[k]);
                if (kind[k] >= 3 && same[k] < 0) pack_rows(bp[k], o[k], esize[k], st[k][nd - 2], kind[k] == 4, r0, rr, n);
            }
            if (kind[0] == 2) {   /* a reduction into one row: rr rows from zero, then added in order */
                int64_t s1[2] = {1, 1};
                char *pp[2];
                /* (the zeros go CAD_PACK_ACC elements past the rows: the short-row sum
                   below reads that many from the last row's start) */
                memset(bp[0], 0, (size_t)((rr * n + CAD_PACK_ACC) * esize[0]));
                row(p, s_in, rr * n);
                if (combine == cad_acc_rows[CAD_F64] && n <= CAD_PACK_ACC) {
                    /* the rows added in order into a fixed-size accumulator the compiler
                       keeps in registers (the loop below goes through memory per row) */
                    double *dd = (double *)o[0], acc[CAD_PACK_ACC];
                    const double *bb = (const double *)bp[0];
                    int64_t c;
                    for (c = 0; c < CAD_PACK_ACC; c++) acc[c] = c < n ? dd[c] : 0.0;
                    for (q = 0; q < rr; q++)
                        for (c = 0; c < CAD_PACK_ACC; c++) acc[c] += bb[q * n + c];
                    for (c = 0; c < n; c++) dd[c] = acc[c];
                } else if (combine == cad_acc_rows[CAD_F64]) {   /* the rows added in order, one loop */
                    double *dd = (double *)o[0];
                    const double *bb = (const double *)bp[0];
                    int64_t c;
                    for (q = 0; q < rr; q++)
                        for (c = 0; c < n; c++) dd[c] += bb[q * n + c];
                } else if (combine == cad_acc_rows[CAD_F32]) {
                    float *dd = (float *)o[0];
                    const float *bb = (const float *)bp[0];
                    int64_t c;
                    for (q = 0; q < rr; q++)
                        for (c = 0; c < n; c++) dd[c] += bb[q * n + c];
                } else {
                    pp[0] = o[0];
                    for (q = 0; q < rr; q++) {
                        pp[1] = bp[0] + q * n * esize[0];
                        combine(pp, s1, n);
                    }
                }
            } else {
                row(p, s_in, rr * n);
            }
        }
        if (++oi >= o1) break;
        for (d = nd - 3; d >= 0; d--) {
            if (++idx[d] < shape[d]) break;
            idx[d] = 0;
        }
        if (d < 0) break;
    }
}

/* NOTE [ Packed rows over the pool ]: packed rows whose destination is written once
 * per element (no accumulation) split into units: ranges of the outer indices when
 * there are enough of them, else ranges of the rows.  Without it a job large enough
 * for two threads took the strided path instead (the long dim innermost, the short
 * one outside, stores strided by the row length): (100, 1, 10) * (100, 1000, 10) read
 * 0.84-1.4 ms at two threads against 0.33 ms packed on one. */
static void packed_task(void *arg, int u, int U) {
    const range_job *j = (const range_job *)arg;
    const int64_t m = j->shape[j->nd - 2];
    if (j->P >= U)
        run_packed(j->nop, j->nd, j->shape, j->st, j->base, j->esize, j->row, NULL, j->kind,
                   j->P * u / U, j->P * (u + 1) / U, 0, m);
    else
        run_packed(j->nop, j->nd, j->shape, j->st, j->base, j->esize, j->row, NULL, j->kind,
                   0, j->P, m * u / U, m * (u + 1) / U);
}

static void range_task(void *arg, int tid, int T) {
    range_job *j = (range_job *)arg;
    char *b2[CAD_MAXOP];
    int k;
    for (k = 0; k < j->nop; k++) b2[k] = j->base[k];
    if (j->part) b2[0] = j->part + 16 * tid;
    if (j->blocked) {
        run_blocked(j->nop, j->shape, j->st, b2, j->esize, j->row, j->shape[1] * tid / T,
                    j->shape[1] * (tid + 1) / T);
        return;
    }
    run_range(j->nop, j->nd, j->shape, j->st, b2, j->esize, j->row, j->N * tid / T, j->N * (tid + 1) / T);
}

int cad_iter_run(cad_iter *it, cad_row row, cad_row combine, const void *init) {
    return cad_iter_run_t(it, row, combine, init, cad_par_min);
}

int cad_iter_coalesce(const cad_iter *it, int64_t *shape, int64_t (*st)[CAD_MAXDIM]) {
    int nd = 0, d, k, nop = it->nop;
    for (d = 0; d < it->ndim; d++) {
        if (it->shape[d] == 0) return -1;
        if (it->shape[d] == 1) continue;
        if (nd > 0) {   /* merge into the previous kept dim when every operand allows */
            int ok = 1;
            for (k = 0; k < nop; k++)
                if (st[k][nd - 1] != it->st[k][d] * it->shape[d]) { ok = 0; break; }
            if (ok) {
                shape[nd - 1] *= it->shape[d];
                for (k = 0; k < nop; k++) st[k][nd - 1] = it->st[k][d];
                continue;
            }
        }
        shape[nd] = it->shape[d];
        for (k = 0; k < nop; k++) st[k][nd] = it->st[k][d];
        nd++;
    }
    return nd;
}

static inline int iter_run_cpu(cad_iter *it, cad_row row, cad_row combine, const void *init,
                               int64_t par_min);

/* the backend's iteration; the CPU one is called directly (inlined here): a row kernel
 * on a few elements costs tens of instructions, and an indirect call per record was
 * 5% of a small replay (W9 W2) */
int cad_iter_run_t(cad_iter *it, cad_row row, cad_row combine, const void *init, int64_t par_min) {
    if (cad_dev) return cad_be_cuda.iter_run(it, row, combine, init, par_min);
    return iter_run_cpu(it, row, combine, init, par_min);
}

/* the CPU backend's iteration (NOTE [ Backends ]) */
int cad_iter_run_cpu(cad_iter *it, cad_row row, cad_row combine, const void *init, int64_t par_min) {
    return iter_run_cpu(it, row, combine, init, par_min);
}

/* the destination is laid out by columns (its strides grow along the dims, none 0):
 * the dims are visited in reverse, so that Fortran-ordered operands coalesce */
static inline int fortran_dst(const cad_iter *it) {
    int64_t prev = 0;
    int d, seen = 0;
    if (!it->ptr[0]) return 0;
    for (d = 0; d < it->ndim; d++) {
        if (it->shape[d] == 1) continue;
        if (it->st[0][d] <= prev) return 0;
        prev = it->st[0][d];
        seen++;
    }
    return seen >= 2;
}

static inline int iter_run_cpu(cad_iter *it, cad_row row, cad_row combine, const void *init,
                               int64_t par_min) {
    int64_t shape[CAD_MAXDIM], st[CAD_MAXOP][CAD_MAXDIM], N = 1;
    int nd, d, k, nop = it->nop, acc0 = 0, full0 = 1, nt, blocked = 0;
    cad_iter rev;
    if (it->ndim >= 2 && fortran_dst(it)) {   /* NOTE [ Result memory order ] (ops_elementwise.pxi) */
        rev.nop = nop; rev.ndim = it->ndim;
        for (d = 0; d < it->ndim; d++) {
            rev.shape[d] = it->shape[it->ndim - 1 - d];
            for (k = 0; k < nop; k++) rev.st[k][d] = it->st[k][it->ndim - 1 - d];
        }
        for (k = 0; k < nop; k++) { rev.ptr[k] = it->ptr[k]; rev.esize[k] = it->esize[k]; }
        it = &rev;
    }
    nd = cad_iter_coalesce(it, shape, st);
    if (nd < 0) return CAD_OK;   /* an empty dim: nothing to do */
    if (nd == 0) {   /* one element: no threads, no partials (dst may be uninitialised for an assigning row) */
        int64_t s0[CAD_MAXOP] = {0};
        row(it->ptr, s0, 1);
        return CAD_OK;
    }
    for (d = 0; d < nd; d++) {
        N *= shape[d];
        if (st[0][d] == 0) acc0 = 1; else full0 = 0;
    }
    nt = cad_num_threads > 0 ? cad_num_threads : cad_get_max_threads();
    if (N < par_min || nt < 2) nt = 1;
    if (acc0 && !(full0 && combine)) nt = 1;
    if (nd == 2 && nop == 2 && combine == row && shape[1] < CAD_SHORT_ROW && st[0][1] == 0 &&
        st[1][1] == 1 && st[0][0] != 0) {   /* NOTE [ Short reductions ] (kernels.c) */
        cad_short_red k = cad_short_red_of(row);
        if (k) {   /* (a partial reduction: nt is 1 here) */
            k(it->ptr[0], it->ptr[1], shape[0], shape[1], st[0][0], st[1][0]);
            return CAD_OK;
        }
    }
    if (nd == 2 && nop == 2 && !combine && shape[1] < CAD_SHORT_ROW && st[0][1] == 1 &&
        st[1][1] == 0 && N < par_min) {   /* its reverse: one value over each short row */
        cad_short_red k = cad_short_bcast_of(row);
        if (k) {
            k(it->ptr[0], it->ptr[1], shape[0], shape[1], st[0][0], st[1][0]);
            return CAD_OK;
        }
    }
    if (nd >= 2 && shape[nd - 1] < CAD_PACK_N && shape[nd - 2] > 1 && (nt == 1 || !acc0)) {
        int kind[CAD_MAXOP];
        if (pack_plan(nop, nd, shape, st, it->ptr, kind, combine != NULL && zero_init(init, it->esize[0]))) {   /* NOTE [ Packed rows ] */
            int64_t P = 1;
            for (d = 0; d < nd - 2; d++) P *= shape[d];
            if (nt == 1 || kind[0] != 1) {
                run_packed(nop, nd, shape, st, it->ptr, it->esize, row, combine, kind, 0, P, 0,
                           shape[nd - 2]);
            } else {   /* NOTE [ Packed rows over the pool ] */
                range_job j;
                memset(&j, 0, sizeof j);
                j.nop = nop; j.nd = nd; j.shape = shape; j.st = st; j.base = it->ptr;
                j.esize = it->esize; j.row = row; j.kind = kind; j.P = P;
                cad_parallel(packed_task, &j, nt);
            }
            return CAD_OK;
        }
    }
    if (nd >= 2 && shape[nd - 1] < CAD_SHORT_ROW) {
        /* a short innermost dim (a column slice's 1-3 elements) under a long one: the
         * long one goes innermost, so the row kernel runs a few long strided rows
         * instead of one call per outer index (numpy's nditer orders dims by strides
         * and calls its inner loop per short row: 2-3x slower on BA's (p, 2) slices).
         * Any dim order visits the same elements; a reduction's sum order changes
         * (deterministically) */
        int b = 0;
        for (d = 1; d < nd - 1; d++) if (shape[d] > shape[b]) b = d;
        if (shape[b] >= 4 * shape[nd - 1]) {
            int64_t t = shape[b];
            shape[b] = shape[nd - 1]; shape[nd - 1] = t;
            for (k = 0; k < nop; k++) { t = st[k][b]; st[k][b] = st[k][nd - 1]; st[k][nd - 1] = t; }
            blocked = nd == 2 && shape[1] > CAD_BLOCK;   /* NOTE [ Short rows ] */
        }
    }
    if (nt == 1) {
        if (blocked) run_blocked(nop, shape, st, it->ptr, it->esize, row, 0, shape[1]);
        else run_range(nop, nd, shape, st, it->ptr, it->esize, row, 0, N);
        return CAD_OK;
    }
    {
        double part[64 * 2];   /* full reductions: partials, up to 64 units x 16 bytes */
        range_job j;
        int nu;
        if (nt > 64) nt = 64;
        nu = cad_pool_units(nt);   /* the pool calls range_task once per unit */
        j.nop = nop; j.nd = nd; j.shape = shape; j.st = st; j.base = it->ptr;
        j.esize = it->esize; j.row = row; j.N = N; j.part = NULL; j.blocked = blocked;
        if (acc0) {
            for (k = 0; k < nu; k++) memcpy((char *)(part + 2 * k), init, (size_t)it->esize[0]);
            j.part = (char *)part;
        }
        cad_parallel(range_task, &j, nt);
        if (acc0) {   /* merged in unit order: deterministic */
            for (k = 0; k < nu; k++) {
                char *pp[2];
                int64_t ss[2] = {0, 0};
                pp[0] = it->ptr[0];
                pp[1] = (char *)(part + 2 * k);
                combine(pp, ss, 1);
            }
        }
    }
    return CAD_OK;
}
