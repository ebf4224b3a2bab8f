/* cross: the cross product of rows of three (cad.cross on float tensors; NOTE [ cross ]
 * in cad/ops/linalg.py).  A primitive as the op table wants it (NOTE [ A primitive's
 * rules ] in cad/ops/_registry.py): its entry in cad/ops/linalg.py, a forward kernel
 * that eager execution and replay both run, a vjp kernel for the C sweep, and the
 * CUDA kernel (k_cross in cuda/kernels.cuh) behind the thread's device flag; the row
 * arithmetic is shared with it (CAD_CROSS_ROW in cuda/cad_kp.h).
 *
 * The record: inputs a and b of one shape (..., 3) and one float dtype, contiguous (the
 * API broadcasts and copies first); the output is a fresh contiguous buffer.  The op is
 * bilinear: ga (+)= b x g, gb (+)= g x a, the same kernel. */
#include "_gen_ops.h"
#include "cad_cuda.h"


/* the CPU backend's rows: out (=|+=) x x y for n rows of three */
int cad_cross_cpu(int dtype, char *out, const char *x, const char *y, int64_t n, int acc) {
    int64_t i;
    for (i = 0; i < n; i++) {
        if (dtype == CAD_F64) CAD_CROSS_ROW(double, (double *)out, (const double *)x, (const double *)y, i, acc);
        else CAD_CROSS_ROW(float, (float *)out, (const float *)x, (const float *)y, i, acc);
    }
    return CAD_OK;
}

static int check(cad_tape *t, const cad_rec *r, cad_buf **a, cad_buf **b) {
    cad_buf *o = t->bufs + r->out;
    *a = t->bufs + t->args[r->arg];
    *b = t->bufs + t->args[r->arg + 1];
    if (!cad_contiguous(t, *a) || !cad_contiguous(t, *b) || !cad_contiguous(t, o) || (*a)->dtype != o->dtype ||
        (*b)->dtype != o->dtype || (*a)->size != o->size || (*b)->size != o->size || o->size % 3)
        return CAD_EINTERNAL;
    return CAD_OK;
}

int cad_cross_fwd(cad_tape *t, const cad_rec *r) {
    cad_buf *o = t->bufs + r->out, *a, *b;
    int st = check(t, r, &a, &b);
    if (st) return st;
    return CAD_BE->cross(o->dtype, cad_bdata(o), cad_bdata(a), cad_bdata(b), o->size / 3, 0);
}

int cad_cross_vjp(cad_tape *t, const cad_rec *r) {
    cad_buf *o = t->bufs + r->out, *a, *b;
    const cad_hid ha = t->args[r->arg], hb = t->args[r->arg + 1];
    int assign, st = check(t, r, &a, &b);
    if (st) return st;
    if (cad_wants(t, ha)) {   /* ga (+)= b x g */
        if ((st = cad_grad_for(a, 1, &assign))) return st;
        if ((st = CAD_BE->cross(o->dtype, cad_gptr(a), cad_bdata(b), cad_gptr(o), o->size / 3, !assign))) return st;
    }
    if (cad_wants(t, hb)) {   /* gb (+)= g x a */
        if ((st = cad_grad_for(b, 1, &assign))) return st;
        if ((st = CAD_BE->cross(o->dtype, cad_gptr(b), cad_gptr(o), cad_bdata(a), o->size / 3, !assign))) return st;
    }
    return CAD_OK;
}
