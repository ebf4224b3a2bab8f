/* Fused replay: a region of elementwise records of a CUDA tape runs as one kernel
 * forward and one backward.
 *
 * NOTE [ Fused replay ]
 * cad.record on CUDA values plans regions (cad/fuse.py): runs of records of the
 * op table's fusable elementwise ops (x (, y) -> out, float) over one shape and
 * dtype, whose values other than the last are used only inside the region.  The
 * region reads its external values (inputs of the tape, constants, values made
 * before it; a 0-d constant is read by every element) and
 *  - forward: computes every record per element in registers and writes the last
 *    value (every value for 0-d regions, whose backward is the device sweep of
 *    NOTE [ Device scalar runs ], which reads them);
 *  - backward: recomputes the values, takes the last value's gradient and pushes
 *    it back through the records in registers, then writes (or adds) the
 *    gradients of the external values that take one.  The region's inner values
 *    never get gradients, so the sweep skips their records.
 * The kernels are generated from the op table's expressions and partials at
 * record time (cad/fuse.py, one nvcc run per tape, cached by pycuda) and launched
 * here with a parameter block of 64-bit words: [0] the element count, then the
 * external values, then (forward) the values written, or (backward) the last
 * value's gradient, the externals' gradients and a flag word (bit 2e: external e
 * takes a gradient, bit 2e+1: its buffer is fresh, so it is written, not added).
 * On the fake device the same plan runs through an interpreter of the scalar
 * forward and vjp functions (cad_fwd_sfn, cad_svjp, in double). */
#include <stdint.h>
#include <string.h>
#include "_gen_ops.h"
#include "cad_cuda.h"

__thread const cad_fzplan *cad_fz = NULL;


static inline double ld(const char *p, int dt, int64_t i) {
    return dt == CAD_F64 ? ((const double *)p)[i] : (double)((const float *)p)[i];
}
static inline void stv(char *p, int dt, int64_t i, double v) {
    if (dt == CAD_F64) ((double *)p)[i] = v;
    else ((float *)p)[i] = (float)v;
}
static inline double rnd(int dt, double v) { return dt == CAD_F64 ? v : (double)(float)v; }

/* the fake device's interpreter: values and gradients per element, in double
 * (rounded to float after each record for float32 regions) */
static void interp(const cad_fzreg *R, int64_t i, char *const *ext, double *v) {
    int e, k;
    for (e = 0; e < R->nE; e++) v[e] = ld(ext[e], R->dtype, R->ext_scalar[e] ? 0 : i);
    for (k = 0; k < R->nI; k++) {
        double x = v[R->a[k]], r;
        r = cad_fwd_sfn[R->op[k]](x, R->b[k] < 0 ? 0.0 : v[R->b[k]]);
        v[R->nE + k] = rnd(R->dtype, r);
    }
}

int cad_fz_fwd(cad_tape *t, int k) {
    const cad_fzreg *R = cad_fz->reg + k;
    cad_buf *o = t->bufs + R->out[R->nI - 1];
    const int64_t n = o->size;
    int e, j;
    if (n == 0) return CAD_OK;
    if (R->ffwd) {
        uint64_t w[CAD_FZ_WORDS];
        memset(w, 0, sizeof w);
        w[0] = (uint64_t)n;
        for (e = 0; e < R->nE; e++) w[1 + e] = (uint64_t)(uintptr_t)cad_bdata(t->bufs + R->ext[e]);
        if (R->store_all)
            for (j = 0; j < R->nI; j++) w[1 + R->nE + j] = (uint64_t)(uintptr_t)cad_bdata(t->bufs + R->out[j]);
        else
            w[1 + R->nE] = (uint64_t)(uintptr_t)cad_bdata(o);
        return cad_cu_launch_fn(R->ffwd, w, n);
    }
    if (!cad_cu_is_fake()) return CAD_EINTERNAL;
    {
        char *ext[CAD_FZ_MAXE];
        double v[CAD_FZ_MAXE + CAD_FZ_MAXI];
        int64_t i;
        for (e = 0; e < R->nE; e++) ext[e] = CAD_FAKE_HOST(char *, cad_bdata(t->bufs + R->ext[e]));
        for (i = 0; i < n; i++) {
            interp(R, i, ext, v);
            if (R->store_all) {
                for (j = 0; j < R->nI; j++)
                    stv(CAD_FAKE_HOST(char *, cad_bdata(t->bufs + R->out[j])), R->dtype, i, v[R->nE + j]);
            } else {
                stv(CAD_FAKE_HOST(char *, cad_bdata(o)), R->dtype, i, v[R->nE + R->nI - 1]);
            }
        }
    }
    return CAD_OK;
}

int cad_fz_vjp(cad_tape *t, int k) {
    const cad_fzreg *R = cad_fz->reg + k;
    cad_buf *o = t->bufs + R->out[R->nI - 1];
    const int64_t n = o->size;
    char *gE[CAD_FZ_MAXE];
    uint64_t flags = 0;
    int e, j, st;
    for (e = 0; e < R->nE; e++) {
        cad_buf *x = t->bufs + R->ext[e];
        int assign = 0;
        gE[e] = NULL;
        if (R->ext_scalar[e] || !(x->flags & BUF_RG)) continue;
        if ((st = cad_grad_for(x, 1, &assign))) return st;
        gE[e] = x->grad;
        flags |= (uint64_t)1 << (2 * e);
        if (assign) flags |= (uint64_t)1 << (2 * e + 1);
    }
    if (n == 0 || !flags) return CAD_OK;
    if (R->fbwd) {
        uint64_t w[CAD_FZ_WORDS];
        memset(w, 0, sizeof w);
        w[0] = (uint64_t)n;
        for (e = 0; e < R->nE; e++) w[1 + e] = (uint64_t)(uintptr_t)cad_bdata(t->bufs + R->ext[e]);
        w[1 + R->nE] = (uint64_t)(uintptr_t)o->grad;
        for (e = 0; e < R->nE; e++) w[2 + R->nE + e] = (uint64_t)(uintptr_t)gE[e];
        w[2 + 2 * R->nE] = flags;
        return cad_cu_launch_fn(R->fbwd, w, n);
    }
    if (!cad_cu_is_fake()) return CAD_EINTERNAL;
    {
        char *ext[CAD_FZ_MAXE];
        const char *go = CAD_FAKE_HOST(const char *, o->grad);
        double v[CAD_FZ_MAXE + CAD_FZ_MAXI], gv[CAD_FZ_MAXE + CAD_FZ_MAXI];
        int64_t i;
        for (e = 0; e < R->nE; e++) ext[e] = CAD_FAKE_HOST(char *, cad_bdata(t->bufs + R->ext[e]));
        for (i = 0; i < n; i++) {
            interp(R, i, ext, v);
            memset(gv, 0, sizeof(double) * (size_t)(R->nE + R->nI));
            gv[R->nE + R->nI - 1] = ld(go, R->dtype, i);
            for (j = R->nI - 1; j >= 0; j--) {
                double gx = 0.0, gy = 0.0;
                const int b = R->b[j];
                cad_svjp(R->op[j], b < 0 ? 1 : 3, gv[R->nE + j], v[R->a[j]], b < 0 ? 0.0 : v[b],
                         v[R->nE + j], &gx, &gy);
                gv[R->a[j]] += gx;
                if (b >= 0) gv[b] += gy;
            }
            for (e = 0; e < R->nE; e++) {
                char *g;
                if (!(flags >> (2 * e) & 1)) continue;
                g = CAD_FAKE_HOST(char *, gE[e]);
                stv(g, R->dtype, i, (flags >> (2 * e + 1) & 1) ? gv[e] : ld(g, R->dtype, i) + gv[e]);
            }
        }
    }
    return CAD_OK;
}
