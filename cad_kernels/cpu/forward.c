/* The forward pass of a recorded tape, for replay (cad.record).
 *
 * A replayed tape's values live in contiguous buffers (inputs and constants are
 * made contiguous, every record's output gets a slot of the arena), so a view's aux
 * strides, which are relative to its input's contiguous layout, apply to memory
 * directly.  Each primitive names its forward kernel in the op table (fkernel);
 * elementwise ops use the generated rows, with an inline-scalar path in the
 * generated dispatch.
 *
 * A tape recorded on CUDA values replays on the device: cad_forward sets the
 * thread's device per record from its output (BUF_CUDA), as the sweep does, and
 * the kernels below take their device branch (no host access to the values). */
#include <math.h>
#include <string.h>
#include "_gen_ops.h"
#include "_gen_switch.h"   /* fwd_one: the per-op dispatch, generated from the op table */
#include "cad_cuda.h"

static inline int esz(int dt) { return (dt == CAD_F64 || dt == CAD_I64) ? 8 : (dt == CAD_F32 ? 4 : 1); }

static void operand_of(cad_iter *it, int k, cad_tape *t, cad_buf *b) {
    cad_iter_operand(it, k, cad_bdata(b), esz(b->dtype), b->ndim, cad_shape(t, b), cad_strides(t, b));
}

static void iter_over(cad_iter *it, int nop, int nd, const int64_t *shape) {
    int d;
    it->nop = nop;
    it->ndim = nd;
    for (d = 0; d < nd; d++) it->shape[d] = shape[d];
}


int cad_ew_fwd_arrays(cad_tape *t, const cad_rec *r, cad_row row, int heavy) {
    cad_buf *o = t->bufs + r->out;
    const cad_arg *a = t->args + r->arg;
    cad_iter it;
    int i;
    iter_over(&it, r->nargs + 1, o->ndim, cad_shape(t, o));
    operand_of(&it, 0, t, o);
    for (i = 0; i < r->nargs; i++) operand_of(&it, 1 + i, t, t->bufs + a[i]);
    return cad_iter_run_t(&it, row, NULL, NULL, heavy ? cad_par_min_heavy : cad_par_min);
}

int cad_bool_fwd_arrays(cad_tape *t, const cad_rec *r, cad_row row) {
    return cad_ew_fwd_arrays(t, r, row, 0);
}

static int window_copy(cad_tape *t, cad_buf *dst, int64_t dst_off, const int64_t *dshape,
                       const int64_t *dstrides, cad_buf *src, int64_t src_off, const int64_t *sst,
                       int nd, int acc) {
    cad_iter it;
    iter_over(&it, 2, nd, dshape);
    cad_iter_operand(&it, 0, cad_bdata(dst) + dst_off * esz(dst->dtype), esz(dst->dtype), nd, dshape, dstrides);
    cad_iter_operand(&it, 1, cad_bdata(src) + src_off * esz(src->dtype), esz(src->dtype), nd, dshape, sst);
    return cad_iter_run(&it, acc ? cad_acc_rows[dst->dtype] : cad_copy_rows[dst->dtype], NULL, NULL);
}

int cad_view_fwd(cad_tape *t, const cad_rec *r) {
    cad_buf *o = t->bufs + r->out, *x = t->bufs + t->args[r->arg];
    const int64_t *aux = t->aux + r->aux;
    const int nd = (int)aux[1];
    if (o->flags & BUF_INLINE) {   /* a scalar read such as t[i] */
        o->sval = ((const double *)cad_bdata(x))[aux[0]];
        return CAD_OK;
    }
    if (o->data == cad_bdata(x) + aux[0] * esz(x->dtype) && o->data != NULL)
        return CAD_OK;   /* a replayed view of x's memory (NOTE [ Views in replay ], replay.pxi) */
    return window_copy(t, o, 0, aux + 2, cad_strides(t, o), x, aux[0], aux + 2 + nd, nd, 0);
}

int cad_unview_fwd(cad_tape *t, const cad_rec *r) {
    cad_buf *o = t->bufs + r->out, *g = t->bufs + t->args[r->arg];
    const int64_t *aux = t->aux + r->aux;
    const int nd = (int)aux[1];
    int st = CAD_BE->zero(cad_bdata(o), (size_t)o->size * (size_t)esz(o->dtype));
    if (st) return st;
    return window_copy(t, o, aux[0], aux + 2, aux + 2 + nd, g, 0, cad_strides(t, g), nd, 1);
}

static int reduce_fwd(cad_tape *t, const cad_rec *r, int kind) {
    cad_buf *o = t->bufs + r->out, *x = t->bufs + t->args[r->arg];
    return cad_reduce(kind, x->dtype, cad_bdata(o), cad_bdata(x), x->ndim, cad_shape(t, x),
                      cad_strides(t, x), (uint64_t)t->aux[r->aux]);
}

int cad_sum_fwd(cad_tape *t, const cad_rec *r) { return reduce_fwd(t, r, CAD_RSUM); }
int cad_prod_fwd(cad_tape *t, const cad_rec *r) { return reduce_fwd(t, r, CAD_RPROD); }
int cad_maxmin_fwd(cad_tape *t, const cad_rec *r) {
    return reduce_fwd(t, r, r->op == OP_MAX ? CAD_RMAX : CAD_RMIN);
}

int cad_gather_fwd(cad_tape *t, const cad_rec *r) {
    cad_buf *o = t->bufs + r->out, *x = t->bufs + t->args[r->arg], *l = t->bufs + t->args[r->arg + 1];
    if (cad_version(t->meta, l) == CAD_VER_ROWS && !(l->flags & BUF_LEAF) && l->ndim >= 1 && t->aux[r->aux] == 1 &&
            !((o->flags | x->flags) & BUF_CUDA)) {   /* NOTE [ Row gathers ] (kernels.c) */
        cad_gather_rows(esz(x->dtype), cad_bdata(o), cad_bdata(x), (const int64_t *)cad_bdata(l), l->size,
                        cad_shape(t, l)[l->ndim - 1]);
        return CAD_OK;
    }
    return CAD_BE->gather(x->dtype, cad_bdata(o), cad_bdata(x), (const int64_t *)cad_bdata(l), l->size,
                          t->aux[r->aux], t->aux[r->aux + 1]);
}

int cad_scatter_fwd(cad_tape *t, const cad_rec *r) {
    cad_buf *o = t->bufs + r->out, *g = t->bufs + t->args[r->arg], *l = t->bufs + t->args[r->arg + 1];
    int st = CAD_BE->zero(cad_bdata(o), (size_t)o->size * (size_t)esz(o->dtype));
    return st ? st : CAD_BE->scatadd(g->dtype, cad_bdata(o), cad_bdata(g), (const int64_t *)cad_bdata(l),
                                     l->size, t->aux[r->aux], t->aux[r->aux + 1]);
}

int cad_setitem_fwd(cad_tape *t, const cad_rec *r) {
    cad_buf *o = t->bufs + r->out, *x = t->bufs + t->args[r->arg], *v = t->bufs + t->args[r->arg + 1];
    cad_buf *l = t->bufs + t->args[r->arg + 2];
    const int64_t *lin = (const int64_t *)cad_bdata(l);
    int st = window_copy(t, o, 0, cad_shape(t, o), cad_strides(t, o), x, 0, cad_strides(t, x), o->ndim, 0);
    if (st) return st;
    return CAD_BE->setitem(o->dtype, cad_bdata(o), cad_bdata(v), lin, l->size, o->size);
}

int cad_concat_fwd(cad_tape *t, const cad_rec *r) {
    cad_buf *o = t->bufs + r->out;
    const int axis = (int)t->aux[r->aux];
    const int64_t *ost = cad_strides(t, o);
    int64_t off = 0;
    int i, st;
    for (i = 0; i < r->nargs; i++) {
        cad_buf *x = t->bufs + t->args[r->arg + i];
        st = window_copy(t, o, off * ost[axis], cad_shape(t, x), ost, x, 0, cad_strides(t, x), o->ndim, 0);
        if (st) return st;
        off += cad_shape(t, x)[axis];
    }
    return CAD_OK;
}

int cad_cast_fwd(cad_tape *t, const cad_rec *r) {
    cad_buf *o = t->bufs + r->out, *x = t->bufs + t->args[r->arg];
    cad_iter it;
    iter_over(&it, 2, o->ndim, cad_shape(t, o));
    operand_of(&it, 0, t, o);
    operand_of(&it, 1, t, x);
    return cad_iter_run(&it, cad_cast_rows[o->dtype][x->dtype], NULL, NULL);
}

int cad_matmul_fwd(cad_tape *t, const cad_rec *r) {
    cad_buf *o = t->bufs + r->out, *A = t->bufs + t->args[r->arg], *Bm = t->bufs + t->args[r->arg + 1];
    const int a1 = (int)t->aux[r->aux], b1 = (int)t->aux[r->aux + 1];
    int abnd, bbnd, d;
    const int64_t *abs_, *abst, *bbs, *bbst;
    int64_t m, k, k2, n, ars, acs, brs, bcs;
    cad_mm mm;
    memset(&mm, 0, sizeof(mm));
    cad_mat_desc(t, A, a1, 1, &abnd, &abs_, &abst, &m, &k, &ars, &acs);
    cad_mat_desc(t, Bm, b1, 0, &bbnd, &bbs, &bbst, &k2, &n, &brs, &bcs);
    (void)k2;
    mm.dtype = o->dtype;
    mm.bnd = o->ndim - (a1 ? 0 : 1) - (b1 ? 0 : 1);
    for (d = 0; d < mm.bnd; d++) mm.bshape[d] = cad_shape(t, o)[d];
    cad_align_batch(mm.bnd, mm.bshape, abnd, abs_, abst, mm.abst);
    cad_align_batch(mm.bnd, mm.bshape, bbnd, bbs, bbst, mm.bbst);
    cad_contig_strides(mm.bnd, mm.bshape, mm.obst);
    for (d = 0; d < mm.bnd; d++) mm.obst[d] *= m * n;
    mm.m = m; mm.n = n; mm.k = k;
    mm.a = cad_bdata(A); mm.ars = ars; mm.acs = acs;
    mm.b = cad_bdata(Bm); mm.brs = brs; mm.bcs = bcs;
    mm.c = cad_bdata(o); mm.crs = n; mm.beta = 0.0;
    return cad_matmul(&mm);
}

int cad_xent_fwd(cad_tape *t, const cad_rec *r) {
    cad_buf *o = t->bufs + r->out, *z = t->bufs + t->args[r->arg], *l = t->bufs + t->args[r->arg + 1];
    return cad_xent_kernel(z->dtype, cad_bdata(o), cad_bdata(z), cad_strides(t, z)[0],
                           cad_strides(t, z)[1], (const int64_t *)cad_bdata(l),
                           l->ndim ? cad_strides(t, l)[0] : 0, cad_shape(t, z)[0], cad_shape(t, z)[1]);
}

/* a replay never moves values between devices (cad.record refuses CUDA tensors) */
int cad_transfer_fwd(cad_tape *t, const cad_rec *r) {
    (void)t; (void)r;
    return CAD_EINTERNAL;
}

/* the forward replay: records from..nrecs-1 (the generated dispatch inlined into the
 * loop); a fused region of a CUDA tape runs as one kernel (NOTE [ Fused replay ]) */
int cad_forward(cad_tape *t, int64_t from) {
    int64_t i;
    const int dev0 = cad_dev;
    for (i = from < 0 ? 0 : from; i < t->nrecs; i++) {
        int st;
        cad_dev = (t->bufs[t->recs[i].out].flags & BUF_CUDA) != 0;   /* where it runs */
        if (cad_fz && i < cad_fz->nrecs && cad_fz->fuse[i]) {   /* a fused region */
            if (cad_fz->fuse[i] < 0) continue;
            st = cad_fz_fwd(t, cad_fz->fuse[i] - 1);
            if (st) { cad_dev = dev0; return st; }
            continue;
        }
        st = fwd_one(t, t->recs + i);
        if (st) { cad_dev = dev0; return st; }
    }
    cad_dev = dev0;
    return CAD_OK;
}

/* one record's forward kernel, on the device its output lives on: eager execution of a
 * primitive through the engine's bind (NOTE [ One entry point ]) */
int cad_fwd_dispatch(cad_tape *t, const cad_rec *r) {
    const int dev0 = cad_dev;
    int st;
    cad_dev = (t->bufs[r->out].flags & BUF_CUDA) != 0;
    st = fwd_one(t, r);
    cad_dev = dev0;
    return st;
}

/* NOTE [ C forward sweep ]
 * Forward mode (jvp, not recording) pushes the tangents of inline records (0-d
 * float64: scalar code) here, record after record with the generated partials, the
 * same expressions the reverse sweep reads (jvp_scalar_one in _gen_switch.h):
 * tan[h] is handle h's tangent where has[h].  It stops at the first record that is
 * not an inline elementwise op and returns its index (end when none): the caller
 * (tapeview.pxi's forward_sweep) pushes that record with the op table's rules and
 * calls again, so a scalar chain runs in C and arrays keep their rules. */
int64_t cad_jvp_scalar_run(const cad_tape *t, int64_t i, int64_t end, double *tan, unsigned char *has) {
    for (; i < end; i++)
        if (!jvp_scalar_one(t, t->recs + i, tan, has)) break;
    return i;
}
