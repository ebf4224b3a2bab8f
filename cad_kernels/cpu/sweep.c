/* The reverse sweep and the vjps the op table names by hand (views, reductions,
 * gather/scatter, concatenate, cast, matmul).  Elementwise vjps are generated
 * (_gen_ops.c) and reach cad_ew_vjp_arrays for array operands.
 * See NOTE [ Tape layout ] and NOTE [ Status codes ] in cad_cpu.h. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "cad_cuda.h"
#include "_gen_ops.h"
#include "_gen_switch.h"   /* vjp_one: the per-op dispatch, generated from the op table */

static inline int esz(int dt) { return (dt == CAD_F64 || dt == CAD_I64) ? 8 : (dt == CAD_F32 ? 4 : 1); }
static inline int fdt(int dt) { return dt == CAD_F64 ? 0 : 1; }

static const double zero64 = 0.0;
static const float zero32 = 0.0f;
static inline const void *zero_of(int dt) { return dt == CAD_F64 ? (const void *)&zero64 : (const void *)&zero32; }

typedef struct { char *p; size_t nb; } fill_job;

static void fill_task(void *arg, int tid, int nt) {
    fill_job *j = (fill_job *)arg;
    size_t a = j->nb * (size_t)tid / (size_t)nt, z = j->nb * (size_t)(tid + 1) / (size_t)nt;
    memset(j->p + a, 0, z - a);
}

static void zero_fill(char *p, size_t nb) {
    int nt = cad_num_threads > 0 ? cad_num_threads : cad_get_max_threads();
    fill_job j;
    j.p = p;
    j.nb = nb;
    if (nb >= ((size_t)8 << 20) && nt > 1) cad_parallel(fill_task, &j, nt);
    else memset(p, 0, nb);
}

int cad_grad_for(cad_buf *b, int full, int *assign) {
    *assign = 0;
    if (b->flags & BUF_DEAD) return CAD_EDEAD;
    if (!(b->flags & BUF_INLINE) && b->grad == NULL) {
        size_t nb = (size_t)b->size * (size_t)esz(b->dtype);
        if (b->flags & BUF_CUDA) {
            b->grad = (char *)cad_cu_alloc(nb ? nb : 1);
            if (!b->grad) return CAD_EDEVMEM;
            if (full && nb) *assign = 1;
            else {
                int st = cad_cu_zero(b->grad, nb);
                if (st) return st;
            }
        } else {
            b->grad = (char *)cad_alloc(nb ? nb : 1);
            if (!b->grad) return CAD_ENOMEM;
            if (full && nb) *assign = 1;
            else zero_fill(b->grad, nb);
        }
    }
    b->hasg = 1;
    return CAD_OK;
}

int cad_ensure_grad(cad_buf *b) {
    int assign;
    return cad_grad_for(b, 0, &assign);
}

static int same_shape(cad_tape *t, cad_buf *a, cad_buf *b) {
    int d;
    if (a->ndim != b->ndim) return 0;
    for (d = 0; d < a->ndim; d++)
        if (cad_shape(t, a)[d] != cad_shape(t, b)[d]) return 0;
    return 1;
}

/* cad_sweep is generated with the dispatch inlined (tools/gen_ops.py) */

/* NOTE [ Passed-on gradients ]: an input whose partial is the constant 1 (the op
 * table's cad_unit_partials: add's, sub's first) takes the output's cotangent as it
 * is, and the sweep releases the output's gradient right
 * after its record (free_tmp, the output not kept).  The last input that takes it,
 * when it has no gradient yet and has the output's shape and dtype, gets the output's
 * buffer itself instead of a copy (GMM's Qdiags * xc + xc @ L.T: two 2 MB copies per
 * gradient, one now).  Host buffers only; cad_sweep_from says when the output's
 * gradient is free to give (cad_pass_grad, this thread's sweep). */
static __thread int cad_pass_grad;
static __thread int64_t cad_passed;   /* buffers passed on by this thread (tests) */

int64_t cad_passed_grads(void) { return cad_passed; }

static int passes_grad(cad_tape *t, const cad_rec *r, int i) {
    cad_buf *B = t->bufs, *o = B + r->out, *x;
    const cad_arg *a = t->args + r->arg;
    int j;
    if (!cad_pass_grad || i >= 8 || !(cad_unit_partials[r->op] >> i & 1)) return 0;
    for (j = i + 1; j < r->nargs; j++)
        if (cad_wants(t, a[j])) return 0;   /* a later input reads the output's gradient */
    x = B + a[i];
    if (x == o || x->grad != NULL || o->grad == NULL || x->dtype != o->dtype ||
        ((x->flags | o->flags) & (BUF_INLINE | BUF_CUDA | BUF_DEAD)) || (o->flags & BUF_KEEP) ||
        !same_shape(t, x, o))
        return 0;
    x->grad = o->grad;
    o->grad = NULL;
    x->hasg = 1;
    cad_passed++;
    return 1;
}

int cad_ew_vjp_arrays(cad_tape *t, const cad_rec *r, const cad_row (*rows)[2][2], int heavy) {
    cad_buf *B = t->bufs, *o = B + r->out;
    const cad_arg *a = t->args + r->arg;
    const int n = r->nargs, ond = o->ndim;
    const int64_t *oshape = cad_shape(t, o);
    int64_t oc[CAD_MAXDIM], xc[CAD_MAXDIM];
    int i, j, d, st, assign, uses;
    cad_contig_strides(ond, oshape, oc);
    for (i = 0; i < n; i++) {
        cad_buf *x;
        cad_iter it;
        if (!cad_wants(t, a[i])) continue;
        if (passes_grad(t, r, i)) continue;   /* NOTE [ Passed-on gradients ] */
        x = B + a[i];
        st = cad_grad_for(x, same_shape(t, x, o), &assign);
        if (st) return st;
        it.nop = n + 3;
        it.ndim = ond;
        for (d = 0; d < ond; d++) it.shape[d] = oshape[d];
        cad_contig_strides(x->ndim, cad_shape(t, x), xc);
        cad_iter_operand(&it, 0, cad_gptr(x), esz(x->dtype), x->ndim, cad_shape(t, x), xc);
        cad_iter_operand(&it, 1, cad_gptr(o), esz(o->dtype), ond, oshape, oc);
        /* an operand the partial does not read goes in absent: the tape may have let
           its value go (a row never loads it, but the packed path copies whole rows) */
        uses = i < 3 ? cad_uses_mask(r->op, i) : 0xff;
        for (j = 0; j < n; j++) {
            if (a[j] >= 0 && (j >= 7 || (uses >> j & 1))) {
                cad_buf *y = B + a[j];
                cad_iter_operand(&it, 2 + j, cad_bdata(y), esz(y->dtype), y->ndim,
                                 cad_shape(t, y), cad_strides(t, y));
            } else {
                cad_iter_operand(&it, 2 + j, NULL, 8, 0, NULL, NULL);
            }
        }
        if (uses & 128)
            cad_iter_operand(&it, n + 2, cad_bdata(o), esz(o->dtype), ond, oshape, cad_strides(t, o));
        else
            cad_iter_operand(&it, n + 2, NULL, 8, 0, NULL, NULL);
        st = cad_iter_run_t(&it, rows[i][fdt(x->dtype)][assign], cad_acc_rows[x->dtype], zero_of(x->dtype),
                            heavy ? cad_par_min_heavy : cad_par_min);
        if (st) return st;
    }
    return CAD_OK;
}

static int64_t x_size_of(cad_tape *t, cad_hid h) { return h >= 0 ? t->bufs[h].size : -1; }

/* ---- views: aux = [offset, ndim, shape[ndim], strides[ndim]] relative to the
 * contiguous layout of the input ---- */
int cad_view_vjp(cad_tape *t, const cad_rec *r) {
    cad_buf *o = t->bufs + r->out, *x;
    const int64_t *aux = t->aux + r->aux;
    const int64_t off = aux[0];
    const int nd = (int)aux[1];
    cad_hid h = t->args[r->arg];
    int64_t oc[CAD_MAXDIM];
    cad_iter it;
    int d, st, assign, full = o->size == x_size_of(t, h);
    if (!cad_wants(t, h)) return CAD_OK;
    x = t->bufs + h;
    for (d = 0; d < nd; d++)
        if (aux[2 + nd + d] == 0 && aux[2 + d] > 1) full = 0;
    st = cad_grad_for(x, full && !(o->flags & BUF_INLINE), &assign);
    if (st) return st;
    if (o->flags & BUF_INLINE) {   /* scalar read such as t[i] */
        if (x->dtype == CAD_F64) ((double *)cad_gptr(x))[off] += o->sgrad;
        return CAD_OK;
    }
    it.nop = 2;
    it.ndim = nd;
    for (d = 0; d < nd; d++) it.shape[d] = aux[2 + d];
    cad_contig_strides(nd, aux + 2, oc);
    cad_iter_operand(&it, 0, cad_gptr(x) + off * esz(x->dtype), esz(x->dtype), nd, aux + 2, aux + 2 + nd);
    cad_iter_operand(&it, 1, cad_gptr(o), esz(o->dtype), nd, aux + 2, oc);
    return cad_iter_run(&it, assign ? cad_copy_rows[x->dtype] : cad_acc_rows[x->dtype],
                        cad_acc_rows[x->dtype], zero_of(x->dtype));
}

/* strides of the (contiguous) reduced output seen from the input's dims:
 * 0 on reduced dims */
static void reduced_strides(int nd, const int64_t *xshape, uint64_t mask, int64_t *rshape, int64_t *rst) {
    int d;
    for (d = 0; d < nd; d++) rshape[d] = (mask >> d) & 1 ? 1 : xshape[d];
    cad_contig_strides(nd, rshape, rst);
}

/* ---- sum: aux = [mask] ---- */
int cad_sum_vjp(cad_tape *t, const cad_rec *r) {
    cad_buf *o = t->bufs + r->out, *x;
    cad_hid h = t->args[r->arg];
    uint64_t mask = (uint64_t)t->aux[r->aux];
    int64_t rshape[CAD_MAXDIM], rst[CAD_MAXDIM], xc[CAD_MAXDIM];
    cad_iter it;
    int d, st, nd, assign;
    if (!cad_wants(t, h)) return CAD_OK;
    x = t->bufs + h;
    st = cad_grad_for(x, 1, &assign);
    if (st) return st;
    nd = x->ndim;
    reduced_strides(nd, cad_shape(t, x), mask, rshape, rst);
    cad_contig_strides(nd, cad_shape(t, x), xc);
    it.nop = 2;
    it.ndim = nd;
    for (d = 0; d < nd; d++) it.shape[d] = cad_shape(t, x)[d];
    cad_iter_operand(&it, 0, cad_gptr(x), esz(x->dtype), nd, cad_shape(t, x), xc);
    cad_iter_operand(&it, 1, cad_gptr(o), esz(o->dtype), nd, rshape, rst);
    return cad_iter_run(&it, assign ? cad_copy_rows[x->dtype] : cad_acc_rows[x->dtype], NULL, NULL);
}

/* ---- max/min: the gradient is split evenly between tied extremes ---- */
/* NOTE [ Counts into one slot ]: a row whose count is one slot (s[0] == 0: the
 * slice runs along the row, max(x, axis=-1)) counts in an integer, which the
 * compiler vectorizes, and adds it once: c[0] += 1 per element went through memory,
 * one dependent add per element (max over the rows of a 1000 x 1000 matrix: the
 * count was half of its gradient, ~2 ms).  Counts are whole numbers, so the sum is
 * the one the per-element adds made (below 2^24 in float32, where adding 1 stops
 * changing a float). */
#define CNTEQ_ROW(name, T)                                                     \
    static void name(char **p, const int64_t *s, int64_t n) {                 \
        int64_t i;                                                            \
        T *c = (T *)p[0];                                                     \
        const T *x = (const T *)p[1], *m = (const T *)p[2];                   \
        if (s[0] == 0) {                                                      \
            int64_t k = 0;                                                    \
            if (s[1] == 1 && s[2] == 0) {                                     \
                const T mv = m[0];                                            \
                for (i = 0; i < n; i++) k += x[i] == mv;                      \
            } else {                                                          \
                for (i = 0; i < n; i++) k += x[i * s[1]] == m[i * s[2]];      \
            }                                                                 \
            c[0] += (T)k;                                                     \
            return;                                                           \
        }                                                                     \
        for (i = 0; i < n; i++) c[i * s[0]] += (T)(x[i * s[1]] == m[i * s[2]]); \
    }
#define MAXVJP_ROW(name, T)                                                    \
    static void name(char **p, const int64_t *s, int64_t n) {                 \
        int64_t i;                                                            \
        T *gx = (T *)p[0];                                                    \
        const T *g = (const T *)p[1], *x = (const T *)p[2], *m = (const T *)p[3], *c = (const T *)p[4]; \
        if (s[0] == 1 && s[2] == 1 && s[1] == 0 && s[3] == 0 && s[4] == 0) {   \
            /* one slice along the row (max(x, axis=-1)): its extreme, share and \
               NaN test are constants, so the row is a select the compiler       \
               vectorizes; adding -0.0 leaves every value as it was (+0.0 too),  \
               so the elements that are not the extreme keep their bits */       \
            const T mv = m[0], share = g[0] / c[0], other = mv != mv ? mv : (T)-0.0; \
            for (i = 0; i < n; i++) gx[i] += x[i] == mv ? share : other;     \
            return;                                                           \
        }                                                                     \
        for (i = 0; i < n; i++)                                               \
            if (x[i * s[2]] == m[i * s[3]]) gx[i * s[0]] += g[i * s[1]] / c[i * s[4]]; \
            else if (m[i * s[3]] != m[i * s[3]]) gx[i * s[0]] += m[i * s[3]]; /* NaN: every element */ \
    }
CNTEQ_ROW(cnteq_f64, double)
CNTEQ_ROW(cnteq_f32, float)
MAXVJP_ROW(maxvjp_f64, double)
MAXVJP_ROW(maxvjp_f32, float)

/* prod: counts the zeros (c += x == 0) and multiplies the non-zeros (q *= x or 1) of
 * each slice, in two passes with one accumulator each, so both can be split over
 * threads and combined (acc, mul) */
#define CNTZ_ROW(name, T)                                                      \
    static void name(char **p, const int64_t *s, int64_t n) {                 \
        int64_t i;                                                            \
        T *c = (T *)p[0];                                                     \
        const T *x = (const T *)p[1];                                         \
        if (s[0] == 0) {   /* NOTE [ Counts into one slot ] */                 \
            int64_t k = 0;                                                    \
            for (i = 0; i < n; i++) k += x[i * s[1]] == 0;                    \
            c[0] += (T)k;                                                     \
            return;                                                           \
        }                                                                     \
        for (i = 0; i < n; i++) c[i * s[0]] += (T)(x[i * s[1]] == 0);         \
    }
#define MULNZ_ROW(name, T)                                                     \
    static void name(char **p, const int64_t *s, int64_t n) {                 \
        int64_t i;                                                            \
        T *q = (T *)p[0];                                                     \
        const T *x = (const T *)p[1];                                         \
        for (i = 0; i < n; i++) {                                             \
            T v = x[i * s[1]];                                                \
            q[i * s[0]] *= v == 0 ? (T)1 : v;                                 \
        }                                                                     \
    }
#define PRODVJP_ROW(name, T)                                                   \
    static void name(char **p, const int64_t *s, int64_t n) {                 \
        int64_t i;                                                            \
        T *gx = (T *)p[0];                                                    \
        const T *g = (const T *)p[1], *x = (const T *)p[2], *c = (const T *)p[3], *q = (const T *)p[4]; \
        for (i = 0; i < n; i++) {                                             \
            T v = x[i * s[2]], cz = c[i * s[3]], pq = q[i * s[4]];            \
            if (cz == 0) gx[i * s[0]] += g[i * s[1]] * (pq / v);              \
            else if (cz == 1 && v == 0) gx[i * s[0]] += g[i * s[1]] * pq;     \
        }                                                                     \
    }
CNTZ_ROW(cntz_f64, double)
CNTZ_ROW(cntz_f32, float)
MULNZ_ROW(mulnz_f64, double)
MULNZ_ROW(mulnz_f32, float)
PRODVJP_ROW(prodvjp_f64, double)
PRODVJP_ROW(prodvjp_f32, float)

const cad_rowname cad_sweep_row_names[] = {
    {cnteq_f64, "k_cnteq_f64"}, {cnteq_f32, "k_cnteq_f32"}, {maxvjp_f64, "k_maxvjp_f64"},
    {maxvjp_f32, "k_maxvjp_f32"}, {cntz_f64, "k_cntz_f64"}, {cntz_f32, "k_cntz_f32"},
    {mulnz_f64, "k_mulnz_f64"}, {mulnz_f32, "k_mulnz_f32"},
    {prodvjp_f64, "k_prodvjp_f64"}, {prodvjp_f32, "k_prodvjp_f32"},
    {NULL, NULL}
};

static int reduce_vjp2(cad_tape *t, const cad_rec *r, int is_prod) {
    cad_buf *o = t->bufs + r->out, *x;
    cad_hid h = t->args[r->arg];
    uint64_t mask = (uint64_t)t->aux[r->aux];
    int64_t rshape[CAD_MAXDIM], rst[CAD_MAXDIM], xc[CAD_MAXDIM];
    int d, st, nd, es, dt;
    char *c, *q = NULL;
    const int64_t *xs;
    cad_iter it;
    if (!cad_wants(t, h)) return CAD_OK;
    x = t->bufs + h;
    st = cad_ensure_grad(x);
    if (st) return st;
    nd = x->ndim; es = esz(x->dtype); dt = fdt(x->dtype);
    xs = cad_shape(t, x);
    reduced_strides(nd, xs, mask, rshape, rst);
    cad_contig_strides(nd, xs, xc);
    {   /* temporaries: counts zeroed, products set to 1 */
        const cad_backend *be = CAD_BE;
        double one64 = 1.0;
        float one32 = 1.0f;
        int64_t bits = 0;
        int32_t b32;
        c = (char *)be->tmp_alloc((size_t)(o->size ? o->size : 1) * (size_t)es);
        if (!c) return cad_dev ? CAD_EDEVMEM : CAD_ENOMEM;
        st = be->zero(c, (size_t)o->size * (size_t)es);
        if (!st && is_prod) {
            q = (char *)be->tmp_alloc((size_t)(o->size ? o->size : 1) * (size_t)es);
            if (!q) st = cad_dev ? CAD_EDEVMEM : CAD_ENOMEM;
            else {
                if (dt == 0) memcpy(&bits, &one64, 8);
                else { memcpy(&b32, &one32, 4); bits = b32; }
                st = be->fill(q, es, o->size, bits);
            }
        }
        if (st) { be->tmp_free(c); be->tmp_free(q); return st; }
    }
    it.ndim = nd;
    for (d = 0; d < nd; d++) it.shape[d] = xs[d];
    if (is_prod) {   /* zeros counted, non-zeros multiplied: two reductions */
        const double one64 = 1.0;
        const float one32 = 1.0f;
        it.nop = 2;
        cad_iter_operand(&it, 0, c, es, nd, rshape, rst);
        cad_iter_operand(&it, 1, cad_bdata(x), es, nd, xs, cad_strides(t, x));
        st = cad_iter_run(&it, dt == 0 ? cntz_f64 : cntz_f32, cad_acc_rows[x->dtype], zero_of(x->dtype));
        if (!st) {
            cad_iter_operand(&it, 0, q, es, nd, rshape, rst);
            st = cad_iter_run(&it, dt == 0 ? mulnz_f64 : mulnz_f32, cad_mul_rows[dt],
                              dt == 0 ? (const void *)&one64 : (const void *)&one32);
        }
    } else {
        it.nop = 3;
        cad_iter_operand(&it, 0, c, es, nd, rshape, rst);
        cad_iter_operand(&it, 1, cad_bdata(x), es, nd, xs, cad_strides(t, x));
        cad_iter_operand(&it, 2, cad_bdata(o), es, nd, rshape, rst);
        st = cad_iter_run(&it, dt == 0 ? cnteq_f64 : cnteq_f32, cad_acc_rows[x->dtype], zero_of(x->dtype));
    }
    if (!st) {
        it.nop = 5;
        cad_iter_operand(&it, 0, cad_gptr(x), es, nd, xs, xc);
        cad_iter_operand(&it, 1, cad_gptr(o), es, nd, rshape, rst);
        cad_iter_operand(&it, 2, cad_bdata(x), es, nd, xs, cad_strides(t, x));
        if (is_prod) {
            cad_iter_operand(&it, 3, c, es, nd, rshape, rst);
            cad_iter_operand(&it, 4, q, es, nd, rshape, rst);
            st = cad_iter_run(&it, dt == 0 ? prodvjp_f64 : prodvjp_f32, NULL, NULL);
        } else {
            cad_iter_operand(&it, 3, cad_bdata(o), es, nd, rshape, rst);
            cad_iter_operand(&it, 4, c, es, nd, rshape, rst);
            st = cad_iter_run(&it, dt == 0 ? maxvjp_f64 : maxvjp_f32, NULL, NULL);
        }
    }
    CAD_BE->tmp_free(c);
    CAD_BE->tmp_free(q);
    return st;
}

int cad_maxmin_vjp(cad_tape *t, const cad_rec *r) { return reduce_vjp2(t, r, 0); }
int cad_prod_vjp(cad_tape *t, const cad_rec *r) { return reduce_vjp2(t, r, 1); }

/* ---- gather: args [x, lin]; aux [B, xsize]; out[b, k] = x[b, lin[k]] ----
 * ---- scatter: args [g, lin]; aux [B, xsize]; out[b, lin[k]] += g[b, k] ---- */
#define IDX_LOOP(T, DST, DI, SRC, SI)                                          \
    {                                                                          \
        int64_t b_, k_;                                                        \
        for (b_ = 0; b_ < B; b_++) {                                           \
            T *d_ = (T *)(DST) + b_ * (DI);                                    \
            const T *s_ = (const T *)(SRC) + b_ * (SI);                        \
            for (k_ = 0; k_ < n; k_++) LOOP_BODY;                              \
        }                                                                      \
    }

/* the CPU backend's index kernels (NOTE [ Backends ]) */
int cad_gather_cpu(int dtype, char *out, const char *x, const int64_t *lin, int64_t n, int64_t B, int64_t xsize) {
#define LOOP_BODY d_[k_] = s_[lin[k_]]
    if (dtype == CAD_F64 || dtype == CAD_I64) IDX_LOOP(double, out, n, x, xsize)
    else if (dtype == CAD_F32) IDX_LOOP(float, out, n, x, xsize)
    else IDX_LOOP(uint8_t, out, n, x, xsize)
#undef LOOP_BODY
    return CAD_OK;
}

int cad_scatadd_cpu(int dtype, char *out, const char *g, const int64_t *lin, int64_t n, int64_t B, int64_t xsize) {
#define LOOP_BODY d_[lin[k_]] += s_[k_]
    if (dtype == CAD_F64) IDX_LOOP(double, out, xsize, g, n)
    else IDX_LOOP(float, out, xsize, g, n)
#undef LOOP_BODY
    return CAD_OK;
}

int cad_gathadd_cpu(int dtype, char *out, const char *g, const int64_t *lin, int64_t n, int64_t B, int64_t xsize) {
#define LOOP_BODY d_[k_] += s_[lin[k_]]
    if (dtype == CAD_F64) IDX_LOOP(double, out, n, g, xsize)
    else IDX_LOOP(float, out, n, g, xsize)
#undef LOOP_BODY
    return CAD_OK;
}

int cad_gather_vjp(cad_tape *t, const cad_rec *r) {
    cad_buf *o = t->bufs + r->out, *x, *l;
    const cad_arg *a = t->args + r->arg;
    const int64_t B = t->aux[r->aux], xsize = t->aux[r->aux + 1];
    const int64_t *lin;
    int64_t n;
    int st;
    if (!cad_wants(t, a[0])) return CAD_OK;
    x = t->bufs + a[0];
    l = t->bufs + a[1];
    st = cad_ensure_grad(x);
    if (st) return st;
    lin = (const int64_t *)l->data;
    n = l->size;
    if (cad_version(t->meta, l) == CAD_VER_ROWS && !(l->flags & BUF_LEAF) && l->ndim >= 1 && B == 1 &&
            !((o->flags | x->flags) & BUF_CUDA)) {   /* NOTE [ Row gathers ] (kernels.c) */
        cad_scatadd_rows(x->dtype, cad_gptr(x), cad_gptr(o), lin, n, t->meta[l->meta + l->ndim - 1]);
        return CAD_OK;
    }
    return CAD_BE->scatadd(x->dtype, cad_gptr(x), cad_gptr(o), lin, n, B, xsize);
}

int cad_scatter_vjp(cad_tape *t, const cad_rec *r) {
    cad_buf *o = t->bufs + r->out, *g, *l;
    const cad_arg *a = t->args + r->arg;
    const int64_t B = t->aux[r->aux], xsize = t->aux[r->aux + 1];
    const int64_t *lin;
    int64_t n;
    int st;
    if (!cad_wants(t, a[0])) return CAD_OK;
    g = t->bufs + a[0];
    l = t->bufs + a[1];
    st = cad_ensure_grad(g);
    if (st) return st;
    lin = (const int64_t *)l->data;
    n = l->size;
    return CAD_BE->gathadd(g->dtype, cad_gptr(g), cad_gptr(o), lin, n, B, xsize);
}

/* ---- unview: args [g]; aux as view's, relative to the contiguous output:
 * out = zeros; as_strided(out) += g.  Its vjp reads the strided window. ---- */
int cad_unview_vjp(cad_tape *t, const cad_rec *r) {
    cad_buf *o = t->bufs + r->out, *g;
    const int64_t *aux = t->aux + r->aux;
    const int64_t off = aux[0];
    const int nd = (int)aux[1];
    cad_hid h = t->args[r->arg];
    int64_t gc[CAD_MAXDIM];
    cad_iter it;
    int d, st, assign;
    if (!cad_wants(t, h)) return CAD_OK;
    g = t->bufs + h;
    st = cad_grad_for(g, 1, &assign);
    if (st) return st;
    it.nop = 2;
    it.ndim = nd;
    for (d = 0; d < nd; d++) it.shape[d] = aux[2 + d];
    cad_contig_strides(nd, aux + 2, gc);
    cad_iter_operand(&it, 0, cad_gptr(g), esz(g->dtype), nd, aux + 2, gc);
    cad_iter_operand(&it, 1, cad_gptr(o) + off * esz(o->dtype), esz(o->dtype), nd, aux + 2, aux + 2 + nd);
    return cad_iter_run(&it, assign ? cad_copy_rows[g->dtype] : cad_acc_rows[g->dtype], NULL, NULL);
}

/* ---- setitem: args [x, v, lin]; out = x with out.flat[lin[k]] = v.flat[k]
 * (the last write wins for repeated positions) ---- */
int cad_setitem_vjp(cad_tape *t, const cad_rec *r) {
    cad_buf *o = t->bufs + r->out, *x, *v, *l;
    const cad_arg *a = t->args + r->arg;
    const int64_t *lin;
    int64_t n;
    int st;
    char *gv = NULL, *gx = NULL;
    l = t->bufs + a[2];
    lin = (const int64_t *)l->data;
    n = l->size;
    if (cad_wants(t, a[1])) {
        v = t->bufs + a[1];
        if ((st = cad_ensure_grad(v))) return st;
        gv = cad_gptr(v);
    }
    if (cad_wants(t, a[0])) {
        x = t->bufs + a[0];
        if ((st = cad_ensure_grad(x))) return st;
        gx = cad_gptr(x);
    }
    return CAD_BE->setitem_vjp(o->dtype, gx, gv, cad_gptr(o), lin, n, o->size);
}

/* the CPU backend's setitem and its vjp: the value's gradient at the written
 * positions (the last write wins), x's everywhere else */
int cad_setitem_cpu(int dtype, char *out, const char *v, const int64_t *lin, int64_t n, int64_t osize) {
    const int es = esz(dtype);
    int64_t k;
    (void)osize;
    for (k = 0; k < n; k++) memcpy(out + lin[k] * es, v + k * es, (size_t)es);
    return CAD_OK;
}

int cad_setitem_vjp_cpu(int dtype, char *gx, char *gv, const char *go, const int64_t *lin, int64_t n,
                        int64_t osize) {
    unsigned char *mask = (unsigned char *)calloc((size_t)(osize ? osize : 1), 1);
    const int es = esz(dtype);
    int64_t k, j;
    if (!mask) return CAD_ENOMEM;
    for (k = n - 1; k >= 0; k--) {
        if (mask[lin[k]]) continue;
        mask[lin[k]] = 1;
        if (!gv) continue;
        if (es == 8) ((double *)gv)[k] += ((const double *)go)[lin[k]];
        else ((float *)gv)[k] += ((const float *)go)[lin[k]];
    }
    if (gx) {
        for (j = 0; j < osize; j++) {
            if (mask[j]) continue;
            if (es == 8) ((double *)gx)[j] += ((const double *)go)[j];
            else ((float *)gx)[j] += ((const float *)go)[j];
        }
    }
    free(mask);
    return CAD_OK;
}

/* ---- concatenate: aux = [axis] ---- */
int cad_concat_vjp(cad_tape *t, const cad_rec *r) {
    cad_buf *o = t->bufs + r->out;
    const cad_arg *a = t->args + r->arg;
    const int axis = (int)t->aux[r->aux];
    const int nd = o->ndim, es = esz(o->dtype);
    int64_t oc[CAD_MAXDIM], xc[CAD_MAXDIM], off = 0;
    int i, d, st;
    cad_contig_strides(nd, cad_shape(t, o), oc);
    for (i = 0; i < r->nargs; i++) {
        cad_buf *x = t->bufs + a[i];
        const int64_t *xs = cad_shape(t, x);
        cad_iter it;
        if (cad_wants(t, a[i])) {
            int assign;
            st = cad_grad_for(x, 1, &assign);
            if (st) return st;
            cad_contig_strides(nd, xs, xc);
            it.nop = 2;
            it.ndim = nd;
            for (d = 0; d < nd; d++) it.shape[d] = xs[d];
            cad_iter_operand(&it, 0, cad_gptr(x), es, nd, xs, xc);
            cad_iter_operand(&it, 1, cad_gptr(o) + off * oc[axis] * es, es, nd, xs, oc);
            st = cad_iter_run(&it, assign ? cad_copy_rows[x->dtype] : cad_acc_rows[x->dtype], NULL, NULL);
            if (st) return st;
        }
        off += xs[axis];
    }
    return CAD_OK;
}

/* ---- cast between float dtypes ---- */
int cad_cast_vjp(cad_tape *t, const cad_rec *r) {
    cad_buf *o = t->bufs + r->out, *x;
    cad_hid h = t->args[r->arg];
    int64_t c[CAD_MAXDIM];
    cad_iter it;
    int d, st, assign;
    if (!cad_wants(t, h)) return CAD_OK;
    x = t->bufs + h;
    st = cad_grad_for(x, 1, &assign);
    if (st) return st;
    cad_contig_strides(x->ndim, cad_shape(t, x), c);
    it.nop = 2;
    it.ndim = x->ndim;
    for (d = 0; d < x->ndim; d++) it.shape[d] = cad_shape(t, x)[d];
    cad_iter_operand(&it, 0, cad_gptr(x), esz(x->dtype), x->ndim, cad_shape(t, x), c);
    cad_iter_operand(&it, 1, cad_gptr(o), esz(o->dtype), x->ndim, cad_shape(t, x), c);
    return cad_iter_run(&it, assign ? cad_cast_rows[x->dtype][o->dtype]
                                    : cad_castacc_rows[fdt(x->dtype)][fdt(o->dtype)], NULL, NULL);
}

/* ---- matmul: args [a, b]; aux = [a_is_1d, b_is_1d] ---- */
void cad_mat_desc(cad_tape *t, cad_buf *x, int is1d, int is_left, int *bnd,
                     const int64_t **bshape, const int64_t **bst,
                     int64_t *rows, int64_t *cols, int64_t *rs, int64_t *cs) {
    const int64_t *sh = cad_shape(t, x), *st = cad_strides(t, x);
    const int nd = x->ndim;
    if (is1d) {
        *bnd = 0; *bshape = sh; *bst = st;
        if (is_left) { *rows = 1; *cols = sh[0]; *rs = 0; *cs = st[0]; }
        else { *rows = sh[0]; *cols = 1; *rs = st[0]; *cs = 0; }
    } else {
        *bnd = nd - 2; *bshape = sh; *bst = st;
        *rows = sh[nd - 2]; *cols = sh[nd - 1]; *rs = st[nd - 2]; *cs = st[nd - 1];
    }
}

/* batch strides of an operand aligned to the output's batch dims (0 = broadcast) */
void cad_align_batch(int obnd, const int64_t *obshape, int bnd, const int64_t *bshape,
                        const int64_t *bst, int64_t *out) {
    int d;
    for (d = 0; d < obnd; d++) {
        int od = d - (obnd - bnd);
        out[d] = (od < 0 || bshape[od] == 1) ? 0 : bst[od];
    }
}

int cad_matmul_vjp(cad_tape *t, const cad_rec *r) {
    cad_buf *o = t->bufs + r->out, *A, *Bm;
    const cad_arg *ar = t->args + r->arg;
    const int a1 = (int)t->aux[r->aux], b1 = (int)t->aux[r->aux + 1];
    int abnd, bbnd, obnd, d, st;
    const int64_t *abs_, *abst, *bbs, *bbst;
    int64_t m, k, k2, n, ars, acs, brs, bcs;
    int64_t ac[CAD_MAXDIM], bc[CAD_MAXDIM], oc_b[CAD_MAXDIM];
    cad_mm mm;
    memset(&mm, 0, sizeof(mm));
    A = t->bufs + ar[0];
    Bm = t->bufs + ar[1];
    cad_mat_desc(t, A, a1, 1, &abnd, &abs_, &abst, &m, &k, &ars, &acs);
    cad_mat_desc(t, Bm, b1, 0, &bbnd, &bbs, &bbst, &k2, &n, &brs, &bcs);
    (void)k2;
    obnd = o->ndim - (a1 ? 0 : 1) - (b1 ? 0 : 1);
    mm.dtype = o->dtype;
    mm.bnd = obnd;
    for (d = 0; d < obnd; d++) mm.bshape[d] = cad_shape(t, o)[d];
    cad_contig_strides(obnd, mm.bshape, oc_b);
    for (d = 0; d < obnd; d++) oc_b[d] *= m * n;
    if (cad_wants(t, ar[0])) {   /* gA (+)= gC @ B^T, gA contiguous in A's shape */
        int64_t agc[CAD_MAXDIM], nbo = 1, nba = 1;
        int assign;
        for (d = 0; d < obnd; d++) nbo *= mm.bshape[d];
        for (d = 0; d < abnd; d++) nba *= abs_[d];
        st = cad_grad_for(A, nbo == nba, &assign);
        if (st) return st;
        cad_contig_strides(abnd, abs_, ac);
        for (d = 0; d < abnd; d++) ac[d] *= m * k;
        cad_align_batch(obnd, mm.bshape, abnd, abs_, ac, agc);
        for (d = 0; d < obnd; d++) { mm.obst[d] = agc[d]; mm.abst[d] = oc_b[d]; }
        cad_align_batch(obnd, mm.bshape, bbnd, bbs, bbst, mm.bbst);
        mm.m = m; mm.n = k; mm.k = n;
        mm.a = cad_gptr(o); mm.ars = n; mm.acs = 1;
        mm.b = cad_bdata(Bm); mm.brs = bcs; mm.bcs = brs;
        mm.c = cad_gptr(A); mm.crs = k; mm.beta = assign ? 0.0 : 1.0;
        st = cad_matmul(&mm);
        if (st) return st;
    }
    if (cad_wants(t, ar[1])) {   /* gB (+)= A^T @ gC */
        int64_t bgc[CAD_MAXDIM], nbo = 1, nbb = 1;
        int assign;
        for (d = 0; d < obnd; d++) nbo *= mm.bshape[d];
        for (d = 0; d < bbnd; d++) nbb *= bbs[d];
        st = cad_grad_for(Bm, nbo == nbb, &assign);
        if (st) return st;
        cad_contig_strides(bbnd, bbs, bc);
        for (d = 0; d < bbnd; d++) bc[d] *= k * n;
        cad_align_batch(obnd, mm.bshape, bbnd, bbs, bc, bgc);
        for (d = 0; d < obnd; d++) { mm.obst[d] = bgc[d]; mm.bbst[d] = oc_b[d]; }
        cad_align_batch(obnd, mm.bshape, abnd, abs_, abst, mm.abst);
        mm.m = k; mm.n = n; mm.k = m;
        mm.a = cad_bdata(A); mm.ars = acs; mm.acs = ars;
        mm.b = cad_gptr(o); mm.brs = n; mm.bcs = 1;
        mm.c = cad_gptr(Bm); mm.crs = n; mm.beta = assign ? 0.0 : 1.0;
        st = cad_matmul(&mm);
        if (st) return st;
    }
    return CAD_OK;
}

/* ---- cross-entropy: args [z (N, C), labels (N,)]; out (N,) = lse(z) - z[label];
 * gz[i, j] (+)= g[i] (softmax(z[i])_j - [j == label_i]); lse = out + z[label] ---- */
#define XENT_VJP(T, EXP)                                                       \
    {                                                                          \
        T *GZ = (T *)gz;                                                       \
        const T *Z = (const T *)z, *O = (const T *)out;                        \
        const T *G = (const T *)g;                                             \
        const int64_t *L = lab;                                                \
        int64_t i, j;                                                          \
        for (i = 0; i < N; i++) {                                              \
            const T *row = Z + i * zrs;                                        \
            const int64_t lb = L[i * lst];                                     \
            const T lse = O[i * os] + row[lb * zcs], g = G[i];                 \
            T *grow = GZ + i * C;                                              \
            if (assign) for (j = 0; j < C; j++) grow[j] = g * EXP(row[j * zcs] - lse); \
            else for (j = 0; j < C; j++) grow[j] += g * EXP(row[j * zcs] - lse); \
            grow[lb] -= g;                                                     \
        }                                                                      \
    }

int cad_xent_vjp(cad_tape *t, const cad_rec *r) {
    cad_buf *o = t->bufs + r->out, *z, *l;
    const cad_arg *a = t->args + r->arg;
    int64_t N, C, zrs, zcs, lst, os;
    int st, assign;
    if (!cad_wants(t, a[0])) return CAD_OK;
    z = t->bufs + a[0];
    l = t->bufs + a[1];
    st = cad_grad_for(z, 1, &assign);
    if (st) return st;
    N = cad_shape(t, z)[0];
    C = cad_shape(t, z)[1];
    zrs = cad_strides(t, z)[0];
    zcs = cad_strides(t, z)[1];
    lst = l->ndim ? cad_strides(t, l)[0] : 0;
    os = o->ndim ? cad_strides(t, o)[0] : 0;
    return CAD_BE->xent_vjp(z->dtype, cad_gptr(z), cad_gptr(o), cad_bdata(z), zrs, zcs,
                            (const int64_t *)cad_bdata(l), lst, cad_bdata(o), os, N, C, assign);
}

/* the CPU backend's cross-entropy vjp */
int cad_xent_vjp_cpu(int dtype, char *gz, const char *g, const char *z, int64_t zrs, int64_t zcs,
                     const int64_t *lab, int64_t lst, const char *out, int64_t os, int64_t N, int64_t C,
                     int assign) {
    if (dtype == CAD_F64) XENT_VJP(double, exp)
    else XENT_VJP(float, expf)
    return CAD_OK;
}

/* ---- to_device: args [x]; aux = [from, to] (0 cpu, 1 cuda); gx += go moved back
 * to x's device (through a host or device temporary) */
int cad_transfer_vjp(cad_tape *t, const cad_rec *r) {
    cad_buf *o = t->bufs + r->out, *x;
    cad_hid h = t->args[r->arg];
    const int es = esz(o->dtype), xdev = (int)t->aux[r->aux];
    const size_t nb = (size_t)o->size * (size_t)es;
    int64_t c[CAD_MAXDIM];
    char *tmp;
    cad_iter it;
    int st, d, saved = cad_dev;
    if (!cad_wants(t, h)) return CAD_OK;
    x = t->bufs + h;
    if ((st = cad_ensure_grad(x))) return st;
    if (xdev) {   /* gradient from the host to the device */
        tmp = (char *)cad_cu_alloc(nb ? nb : 1);
        if (!tmp) return CAD_EDEVMEM;
        st = cad_cu_h2d(tmp, cad_gptr(o), nb);
    } else {
        tmp = (char *)malloc(nb ? nb : 1);
        if (!tmp) return CAD_ENOMEM;
        st = cad_cu_d2h(tmp, cad_gptr(o), nb);
    }
    if (!st) {
        cad_contig_strides(x->ndim, cad_shape(t, x), c);
        it.nop = 2;
        it.ndim = x->ndim;
        for (d = 0; d < x->ndim; d++) it.shape[d] = cad_shape(t, x)[d];
        cad_iter_operand(&it, 0, cad_gptr(x), es, x->ndim, cad_shape(t, x), c);
        cad_iter_operand(&it, 1, tmp, es, x->ndim, cad_shape(t, x), c);
        cad_dev = xdev;
        st = cad_iter_run(&it, cad_acc_rows[x->dtype], NULL, NULL);
        cad_dev = saved;
    }
    if (xdev) cad_cu_release(tmp); else free(tmp);
    return st;
}

/* NOTE [ Device scalar runs ]
 * Scalar code on the GPU (a chain of ops on 0-d CUDA tensors) would pay one kernel
 * launch per record in the backward sweep (~3 us each, while the arithmetic is a
 * few flops).  cad_dsweep takes a run of consecutive records whose values are all
 * 0-d device scalars of one dtype and whose ops have scalar vjps, replays exactly
 * what the per-record sweep would do (records whose output has no gradient are
 * skipped, found here on the host) as a list of instructions, and runs it in one
 * kernel on one thread: gradient slots start from the buffers' current gradients,
 * and end in the gradient buffers of the values the rest of the sweep (or the
 * caller) reads; the run's intermediates never get a buffer. */
#define DSWEEP_MIN 16

typedef struct { cad_hid h; int slot; } dslot_t;

static int dslot(dslot_t *map, int cap, cad_hid h, int *n) {
    int i = (int)((uint64_t)h * 0x9E3779B97F4A7C15ull >> 40) % cap;
    while (map[i].h != -1 && map[i].h != h) i = (i + 1) % cap;
    if (map[i].h == -1) { map[i].h = h; map[i].slot = (*n)++; }
    return map[i].slot;
}

static int ds_eligible(cad_tape *t, const cad_rec *r, int dtype) {
    const cad_buf *o = t->bufs + r->out;
    int j;
    if (!cad_scalar_op(r->op) || r->nargs != cad_scalar_op(r->op)) return 0;
    if (!(o->flags & BUF_CUDA) || o->ndim != 0 || o->dtype != dtype) return 0;
    for (j = 0; j < r->nargs; j++) {
        cad_hid h = t->args[r->arg + j];
        if (h < 0) continue;
        if (!(t->bufs[h].flags & BUF_CUDA) || t->bufs[h].ndim != 0 || t->bufs[h].dtype != dtype) return 0;
    }
    return 1;
}

/* records first..i (first found here) as one kernel; *done = 0 when the run is too
 * short to pay (the caller sweeps record i itself) */
int cad_dsweep(cad_tape *t, int64_t i, int64_t stop, int free_tmp, int64_t *first, int *done) {
    const int dtype = t->bufs[t->recs[i].out].dtype, es = esz(dtype);
    int64_t j = i, k;
    int n = 0, ns = 0, cap, st = CAD_OK, s, q;
    dslot_t *map;
    cad_dsinst *ins;
    char *host = NULL, *dev = NULL, *G = NULL, **init, **wb;
    unsigned char *hg = NULL, *made = NULL;
    cad_kp kp;
    *done = 0;
    if (dtype != CAD_F64 && dtype != CAD_F32) return CAD_OK;
    while (j - 1 >= stop && ds_eligible(t, t->recs + j - 1, dtype)) j--;
    if (!ds_eligible(t, t->recs + i, dtype) || i - j + 1 < DSWEEP_MIN) return CAD_OK;
    cap = (int)(4 * (i - j + 1) * 3 + 16);
    map = (dslot_t *)malloc((size_t)cap * sizeof(dslot_t));
    ins = (cad_dsinst *)malloc((size_t)(i - j + 1) * sizeof(cad_dsinst));
    hg = (unsigned char *)calloc((size_t)cap, 1);
    made = (unsigned char *)calloc((size_t)cap, 1);
    if (!map || !ins || !hg || !made) { st = CAD_ENOMEM; goto out; }
    for (s = 0; s < cap; s++) map[s].h = -1;
    /* slots, and which values start with a gradient */
    for (k = i; k >= j; k--) {
        const cad_rec *r = t->recs + k;
        s = dslot(map, cap, r->out, &ns);
        made[s] = 1;
        for (q = 0; q < r->nargs; q++)
            if (t->args[r->arg + q] >= 0) dslot(map, cap, t->args[r->arg + q], &ns);
    }
    for (s = 0; s < cap; s++)
        if (map[s].h != -1) hg[map[s].slot] = t->bufs[map[s].h].hasg;
    /* the instructions, in sweep order, skipping records no gradient reaches */
    for (k = i; k >= j; k--) {
        const cad_rec *r = t->recs + k;
        cad_dsinst *in = ins + n;
        int so = dslot(map, cap, r->out, &ns);
        if (!hg[so]) continue;
        memset(in, 0, sizeof *in);
        in->op = r->op;
        in->gout = so;
        in->out = t->bufs[r->out].data;
        for (q = 0; q < r->nargs; q++) {
            cad_hid h = t->args[r->arg + q];
            int sq;
            if (h < 0) continue;
            sq = dslot(map, cap, h, &ns);
            if (q == 0) { in->x = t->bufs[h].data; in->gx = sq; }
            else { in->y = t->bufs[h].data; in->gy = sq; }
            if (t->bufs[h].flags & BUF_RG) {
                if (t->bufs[h].flags & BUF_DEAD) { st = CAD_EDEAD; goto out; }
                in->mask |= 1 << q;
                hg[sq] = 1;
            }
        }
        n++;
    }
    /* slot -> starting gradient and -> gradient buffer at the end */
    host = (char *)malloc((size_t)n * sizeof(cad_dsinst) + 2 * (size_t)ns * sizeof(char *));
    if (!host) { st = CAD_ENOMEM; goto out; }
    memcpy(host, ins, (size_t)n * sizeof(cad_dsinst));
    init = (char **)(host + (size_t)n * sizeof(cad_dsinst));
    wb = init + ns;
    for (s = 0; s < cap; s++) {
        cad_buf *b;
        int sl;
        if (map[s].h == -1) continue;
        b = t->bufs + map[s].h;
        sl = map[s].slot;
        init[sl] = (b->hasg && b->grad) ? b->grad : NULL;
        wb[sl] = NULL;
        if (!hg[sl]) continue;
        if (made[sl] && free_tmp && !(b->flags & BUF_KEEP)) continue;   /* an intermediate */
        if (!b->grad) {
            b->grad = (char *)cad_cu_alloc((size_t)es);
            if (!b->grad) { st = CAD_EDEVMEM; goto out; }
        }
        b->hasg = 1;
        wb[sl] = b->grad;
    }
    G = (char *)cad_cu_alloc((size_t)(ns ? ns : 1) * (size_t)es);
    dev = (char *)cad_cu_alloc((size_t)n * sizeof(cad_dsinst) + 2 * (size_t)ns * sizeof(char *));
    if (!G || !dev) { st = CAD_EDEVMEM; goto out; }
    st = cad_cu_h2d(dev, host, (size_t)n * sizeof(cad_dsinst) + 2 * (size_t)ns * sizeof(char *));
    if (st) goto out;
    memset(&kp, 0, sizeof kp);
    kp.ptr[0] = dev;
    kp.ptr[1] = G;
    kp.ptr[2] = dev + (size_t)n * sizeof(cad_dsinst);
    kp.ptr[3] = dev + (size_t)n * sizeof(cad_dsinst) + (size_t)ns * sizeof(char *);
    kp.i[0] = n;
    kp.i[1] = ns;
    st = cad_cu_launch(cad_cu_kernel_id(dtype == CAD_F64 ? "k_dsweep_f64" : "k_dsweep_f32"), &kp, 1);
    if (st) goto out;
    /* the run's intermediates are done with, as the per-record sweep leaves them */
    if (free_tmp)
        for (s = 0; s < cap; s++) {
            cad_buf *b;
            if (map[s].h == -1 || !made[map[s].slot]) continue;
            b = t->bufs + map[s].h;
            if (b->flags & BUF_KEEP) continue;
            cad_buf_release_grad(b);
            b->hasg = 0;
        }
    *first = j;
    *done = 1;
out:
    cad_cu_release(G);
    cad_cu_release(dev);
    free(map); free(ins); free(hg); free(made); free(host);
    return st;
}

int cad_vjp_dispatch(cad_tape *t, const cad_rec *r) { return vjp_one(t, r); }

/* The reverse sweep (NOTE [ Tape layout ]): records stop..nrecs-1, last first, with
 * the per-op dispatch inlined.  free_tmp: a value whose gradient has been propagated
 * is left clean (its buffer released) unless the caller keeps it (BUF_KEEP). */
int cad_sweep(cad_tape *t, int free_tmp, int64_t stop) {
    return cad_sweep_from(t, free_tmp, t->nrecs, stop);
}

/* the records start-1 down to stop (a backward sweep in segments: a leaf's gradient
   is final once the sweep passed the first record that reads it) */
int cad_sweep_from(cad_tape *t, int free_tmp, int64_t start, int64_t stop) {
    int64_t i;
    const int dev0 = cad_dev;
    if (stop < 0) stop = 0;
    if (start > t->nrecs) start = t->nrecs;
    for (i = start - 1; i >= stop; i--) {
        const cad_rec *r = t->recs + i;
        cad_buf *o = t->bufs + r->out;
        int st;
        if (!o->hasg) continue;
        cad_dev = (o->flags & BUF_CUDA) != 0;   /* where this record's kernels run */
        if (cad_dev && o->ndim == 0) {   /* a run of 0-d device records: one kernel */
            int64_t first;
            int done;
            st = cad_dsweep(t, i, stop, free_tmp, &first, &done);
            if (st) { cad_dev = dev0; return st; }
            if (done) { i = first; continue; }
        }
        if (cad_fz && i < cad_fz->nrecs && cad_fz->fuse[i] > 0 && !cad_fz->reg[cad_fz->fuse[i] - 1].store_all)
            st = cad_fz_vjp(t, cad_fz->fuse[i] - 1);   /* a fused region's backward */
        else {
            cad_pass_grad = free_tmp && !(o->flags & BUF_KEEP);   /* NOTE [ Passed-on gradients ] */
            st = vjp_one(t, r);
            cad_pass_grad = 0;
        }
        if (st) { cad_dev = dev0; return st; }
        if (free_tmp && !(o->flags & BUF_KEEP)) {
            cad_buf_release_grad(o);
            o->sgrad = 0.0;
            o->hasg = 0;
        }
    }
    cad_dev = dev0;
    return CAD_OK;
}
