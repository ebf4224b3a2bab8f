/* Compact scalar programs: a recorded tape made only of elementwise ops on 0-d
 * float64 values (scalar code: W1, optimisation loops) replays from dense arrays of
 * values and gradients and four-int instructions, instead of the value slots and
 * records of the general tape (CppAD's layout).  The backward list is pruned once
 * per input selection: only instructions on a path from a selected input to the
 * output, which also keeps the general sweep's rule that a value no gradient
 * reaches contributes nothing (no 0 * inf). */
#include <stdlib.h>
#include <string.h>
#include "_gen_ops.h"

int cad_sprog_build(const cad_tape *t, cad_sprog *p) {
    int64_t i;
    memset(p, 0, sizeof(*p));
    for (i = 0; i < t->nrecs; i++) {
        const cad_rec *r = t->recs + i;
        int n = cad_scalar_op(r->op), j;
        if (!n || r->nargs != n || !(t->bufs[r->out].flags & BUF_INLINE)) return 0;
        for (j = 0; j < n; j++) {
            cad_hid h = t->args[r->arg + j];
            if (h < 0 || !(t->bufs[h].flags & BUF_INLINE)) return 0;
        }
    }
    p->n = t->nrecs;
    p->nv = t->nbufs;
    p->ins = (cad_sinst *)malloc((size_t)(p->n ? p->n : 1) * sizeof(cad_sinst));
    p->bwd = (cad_sinst *)malloc((size_t)(p->n ? p->n : 1) * sizeof(cad_sinst));
    p->v = (double *)malloc((size_t)(p->nv ? p->nv : 1) * sizeof(double));
    p->g = (double *)calloc((size_t)(p->nv ? p->nv : 1), sizeof(double));
    p->d0 = (double *)calloc((size_t)(p->nv ? p->nv : 1), sizeof(double));
    p->d1 = (double *)calloc((size_t)(p->nv ? p->nv : 1), sizeof(double));
    p->flag = (unsigned char *)calloc((size_t)(p->nv ? p->nv : 1), 1);
    p->dfr = (int64_t *)malloc((size_t)(p->n ? p->n : 1) * sizeof(int64_t));
    p->tx = (double *)malloc((size_t)(p->n ? p->n : 1) * sizeof(double));
    p->td = (double *)malloc((size_t)(p->n ? p->n : 1) * sizeof(double));
    p->ones = (double *)malloc((size_t)(p->n ? p->n : 1) * sizeof(double));
    if (!p->ins || !p->bwd || !p->v || !p->g || !p->d0 || !p->d1 || !p->flag || !p->dfr ||
        !p->tx || !p->td || !p->ones) {
        cad_sprog_free(p);
        return -1;
    }
    for (i = 0; i < t->nrecs; i++) {
        const cad_rec *r = t->recs + i;
        p->ins[i].op = r->op;
        p->ins[i].out = (int32_t)r->out;
        p->ins[i].a = (int32_t)t->args[r->arg];
        p->ins[i].b = r->nargs > 1 ? (int32_t)t->args[r->arg + 1] : p->ins[i].a;
        p->ins[i].mask = 0;
        p->ins[i].arity = (unsigned char)r->nargs;
        p->ins[i].defer = 0;
        p->ones[i] = 1.0;
    }
    for (i = 0; i < t->nbufs; i++)   /* (an array's slot holds its data pointer there) */
        p->v[i] = (t->bufs[i].flags & BUF_INLINE) ? t->bufs[i].sval : 0.0;
    return 1;
}

void cad_sprog_free(cad_sprog *p) {
    free(p->ins); free(p->bwd); free(p->v); free(p->g); free(p->d0); free(p->d1); free(p->flag);
    free(p->dfr); free(p->tx); free(p->td); free(p->ones);
    memset(p, 0, sizeof(*p));
}

void cad_sprog_forward(cad_sprog *p) {
    /* scalar code is mostly a chain: the previous result is carried in a register
       instead of a store and a reload (a store-to-load round trip per op) */
    const cad_sinst *in = p->ins, *end = p->ins + p->n;
    double *v = p->v, last = 0.0;
    int32_t lo = -1;
    for (; in < end; in++) {
        const double x = in->a == lo ? last : v[in->a];
        const double y = in->b == lo ? last : v[in->b];
        last = cad_fwd_sfn[in->op](x, y);
        v[in->out] = last;
        lo = in->out;
    }
}

void cad_sprog_forward_d(cad_sprog *p) {
    const cad_sinst *in = p->ins, *end = p->ins + p->n;
    double *v = p->v, *d0 = p->d0, *d1 = p->d1, last = 0.0;
    int32_t lo = -1;
    int64_t k, j;
    for (; in < end; in++) {
        const double x = in->a == lo ? last : v[in->a];
        const double y = in->b == lo ? last : v[in->b];
        last = in->defer ? cad_fwd_sfn[in->op](x, y) : cad_fwd_sd(in->op, x, y, d0 + in->out, d1 + in->out);
        v[in->out] = last;
        lo = in->out;
    }
    /* the deferred partials (sin's cos(x), ...), one vector row per op: gathered,
       computed with the generated vjp row (SIMD math), scattered back */
    for (k = 0; k < p->ndfr; ) {
        const int op = p->ins[p->dfr[k]].op;
        int64_t m = 0, s[4] = {1, 1, 1, 1};
        char *ptr[4];
        while (k + m < p->ndfr && p->ins[p->dfr[k + m]].op == op) {
            p->tx[m] = v[p->ins[p->dfr[k + m]].a];
            m++;
        }
        ptr[0] = (char *)p->td; ptr[1] = (char *)p->ones; ptr[2] = (char *)p->tx; ptr[3] = NULL;
        cad_heavy_partial_rows[op](ptr, s, m);
        for (j = 0; j < m; j++) d0[p->ins[p->dfr[k + j]].out] = p->td[j];
        k += m;
    }
}

/* which instructions the backward pass runs for inputs sel[] and output out:
 * flag bit 1 = depends on a selected input, bit 2 = the output depends on it */
void cad_sprog_plan(cad_sprog *p, const int64_t *sel, int nsel, int64_t out) {
    int64_t i, k = 0;
    unsigned char *f = p->flag;
    memset(f, 0, (size_t)p->nv);
    for (i = 0; i < nsel; i++) f[sel[i]] |= 1;
    for (i = 0; i < p->n; i++) {
        cad_sinst *in = p->ins + i;
        if ((f[in->a] | f[in->b]) & 1) f[in->out] |= 1;
    }
    if (out >= 0) f[out] |= 2;
    for (i = 0; i < p->n; i++) p->ins[i].defer = 2;   /* no partials, unless on the path below */
    for (i = p->n - 1; i >= 0; i--) {
        cad_sinst *in = p->ins + i;
        if ((f[in->out] & 3) != 3) continue;
        in->mask = (unsigned char)(((f[in->a] & 1) ? 1 : 0) | ((f[in->b] & 1) && in->arity == 2 ? 2 : 0));
        in->defer = (in->mask == 1 && in->arity == 1 && cad_heavy_partial_rows[in->op]) ? 1 : 0;
        if (in->mask & 1) f[in->a] |= 2;
        if (in->mask & 2) f[in->b] |= 2;
        p->bwd[k++] = *in;
    }
    p->nbwd = k;
    {   /* the deferred instructions, grouped by op (a counting sort over op codes) */
        int64_t cnt[OP_COUNT + 1];
        int op;
        memset(cnt, 0, sizeof cnt);
        for (i = 0; i < p->n; i++) if (p->ins[i].defer == 1) cnt[p->ins[i].op + 1]++;
        for (op = 0; op < OP_COUNT; op++) cnt[op + 1] += cnt[op];
        p->ndfr = cnt[OP_COUNT];
        for (i = 0; i < p->n; i++) if (p->ins[i].defer == 1) p->dfr[cnt[p->ins[i].op]++] = i;
    }
}

void cad_sprog_backward(cad_sprog *p, int64_t out, double seed) {
    /* after cad_sprog_forward_d: each instruction's partials are in d0/d1 at its
       output's index */
    const cad_sinst *in = p->bwd, *end = p->bwd + p->nbwd;
    const double *d0 = p->d0, *d1 = p->d1;
    double *g = p->g, lv = seed;
    int32_t ls = (int32_t)out;
    g[out] = seed;
    for (; in < end; in++) {   /* the gradient just accumulated is carried in a register too */
        const double gy = in->out == ls ? lv : g[in->out];
        g[in->out] = 0.0;
        if (in->mask & 2) {
            lv = g[in->b] + gy * d1[in->out];
            g[in->b] = lv;
            ls = in->b;
        }
        if (in->mask & 1) {
            lv = g[in->a] + gy * d0[in->out];
            g[in->a] = lv;
            ls = in->a;
        }
    }
}
