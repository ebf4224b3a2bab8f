/* Scans: cumsum and cumprod along one axis (aux = [axis, reverse]).
 *
 * A primitive as the op table wants it (NOTE [ A primitive's rules ] in
 * cad/ops/_registry.py): its entry (cad/ops/scan.py: shape rule, aux schema, the
 * differentiable rules), a forward kernel that eager execution and replay both run
 * (cad_cumsum_fwd: the engine's `bind` records the op and runs this same function on
 * the record), a vjp kernel for the C sweep, and their CUDA kernels (k_scan,
 * k_cumprodb in cuda/kernels.cuh) behind the thread's device flag.  The per-slice
 * arithmetic is shared with the CUDA kernels (CAD_SCAN_SLICE and
 * CAD_CUMPROD_VJP_SLICE in cuda/cad_kp.h).
 *
 * Layouts: the output is a fresh contiguous buffer; the input is contiguous (the
 * engine passes a contiguous copy; a replay's arena and constants are contiguous);
 * gradient buffers are contiguous.  A non-contiguous operand is an internal error. */
#include <string.h>
#include "_gen_ops.h"
#include "cad_cuda.h"


/* outer, n, inner of a contiguous value scanned along axis */
static void split(cad_tape *t, cad_buf *b, int axis, int64_t *outer, int64_t *n, int64_t *inner) {
    int d;
    *outer = 1;
    *inner = 1;
    *n = b->ndim ? cad_shape(t, b)[axis] : 1;
    for (d = 0; d < axis; d++) *outer *= cad_shape(t, b)[d];
    for (d = axis + 1; d < b->ndim; d++) *inner *= cad_shape(t, b)[d];
}

static int scan(int dtype, char *out, const char *x, int64_t outer, int64_t n, int64_t inner,
                int rev, int prod, int acc) {
    return CAD_BE->scan(dtype, out, x, outer, n, inner, rev, prod, acc);
}

/* the CPU backend's scan and cumprod vjp (NOTE [ Backends ]) */
int cad_scan_cpu(int dtype, char *out, const char *x, int64_t outer, int64_t n, int64_t inner,
                 int rev, int prod, int acc) {
    int64_t s;
    for (s = 0; s < outer * inner; s++) {
        const int64_t o = s / inner, base = o * n * inner + (s - o * inner);
        if (dtype == CAD_F64) CAD_SCAN_SLICE(double, (double *)out, (const double *)x, base, n, inner, rev, prod, acc);
        else CAD_SCAN_SLICE(float, (float *)out, (const float *)x, base, n, inner, rev, prod, acc);
    }
    return CAD_OK;
}

static int scan_fwd(cad_tape *t, const cad_rec *r, int prod) {
    cad_buf *o = t->bufs + r->out, *x = t->bufs + t->args[r->arg];
    const int axis = (int)t->aux[r->aux], rev = (int)t->aux[r->aux + 1];
    int64_t outer, n, inner;
    if (!cad_contiguous(t, x) || !cad_contiguous(t, o) || x->dtype != o->dtype) return CAD_EINTERNAL;
    split(t, x, axis, &outer, &n, &inner);
    return scan(o->dtype, cad_bdata(o), cad_bdata(x), outer, n, inner, rev, prod, 0);
}

int cad_cumsum_fwd(cad_tape *t, const cad_rec *r) { return scan_fwd(t, r, 0); }
int cad_cumprod_fwd(cad_tape *t, const cad_rec *r) { return scan_fwd(t, r, 1); }

/* what both vjps start with: x's gradient buffer (*x NULL: x takes none) and the
 * (outer, n, inner) split of the scanned axis */
static int vjp_setup(cad_tape *t, const cad_rec *r, cad_buf **x, int64_t *outer, int64_t *n,
                     int64_t *inner, int *assign) {
    const cad_hid h = t->args[r->arg];
    int st;
    *x = NULL;
    if (!cad_wants(t, h)) return CAD_OK;
    if ((st = cad_grad_for(t->bufs + h, 1, assign))) return st;
    *x = t->bufs + h;
    split(t, *x, (int)t->aux[r->aux], outer, n, inner);
    return CAD_OK;
}

/* gx (+)= the scan of go in the other direction */
int cad_cumsum_vjp(cad_tape *t, const cad_rec *r) {
    cad_buf *o = t->bufs + r->out, *x;
    int64_t outer, n, inner;
    int assign, st = vjp_setup(t, r, &x, &outer, &n, &inner, &assign);
    if (st || !x) return st;
    return scan(o->dtype, cad_gptr(x), cad_gptr(o), outer, n, inner, !(int)t->aux[r->aux + 1], 0, !assign);
}

int cad_cumprod_vjp(cad_tape *t, const cad_rec *r) {
    cad_buf *o = t->bufs + r->out, *x;
    int64_t outer, n, inner;
    int assign, st;
    if (!cad_wants(t, t->args[r->arg])) return CAD_OK;
    if (t->aux[r->aux + 1]) return CAD_EINTERNAL;   /* cad.cumprod scans forward only */
    if (!cad_contiguous(t, t->bufs + t->args[r->arg])) return CAD_EINTERNAL;
    st = vjp_setup(t, r, &x, &outer, &n, &inner, &assign);
    if (st || !x) return st;
    return CAD_BE->cumprod_vjp(o->dtype, cad_gptr(x), cad_gptr(o), cad_bdata(x), cad_bdata(o), outer, n, inner,
                               !assign);
}

int cad_cumprod_vjp_cpu(int dtype, char *gx, const char *g, const char *x, const char *out,
                        int64_t outer, int64_t n, int64_t inner, int acc) {
    int64_t s;
    for (s = 0; s < outer * inner; s++) {
        const int64_t q = s / inner, base = q * n * inner + (s - q * inner);
        if (dtype == CAD_F64)
            CAD_CUMPROD_VJP_SLICE(double, (double *)gx, (const double *)g, (const double *)x,
                                  (const double *)out, base, n, inner, acc);
        else
            CAD_CUMPROD_VJP_SLICE(float, (float *)gx, (const float *)g, (const float *)x,
                                  (const float *)out, base, n, inner, acc);
    }
    return CAD_OK;
}
