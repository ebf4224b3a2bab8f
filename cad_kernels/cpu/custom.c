/* Custom primitives (cad.primitive): one op code whose forward and vjp are Python
 * functions.  The sweeps reach them through two hooks the Cython layer installs at
 * import (cad/_core/custom.pxi); the hook takes the GIL, calls the primitive's
 * Python rule and writes the result back (NOTE [ Custom primitives ] in
 * cad/ops/custom.py).  Custom records live on CPU tapes only: a call on device
 * tensors moves them to the host through the differentiable to_device op. */
#include <string.h>
#include "cad_cpu.h"

int (*cad_custom_fwd_hook)(cad_tape *t, const cad_rec *r) = NULL;
int (*cad_custom_vjp_hook)(cad_tape *t, const cad_rec *r) = NULL;

int cad_custom_fwd(cad_tape *t, const cad_rec *r) {
    return cad_custom_fwd_hook ? cad_custom_fwd_hook(t, r) : CAD_EINTERNAL;
}

int cad_custom_vjp(cad_tape *t, const cad_rec *r) {
    if (!t->bufs[r->out].hasg) return CAD_OK;   /* no cotangent reached the output */
    return cad_custom_vjp_hook ? cad_custom_vjp_hook(t, r) : CAD_EINTERNAL;
}

/* handle h's gradient (+)= src (contiguous, h's dtype, h's size elements) */
int cad_custom_acc(cad_tape *t, cad_hid h, const char *src) {
    cad_buf *b = t->bufs + h;
    int assign, st;
    int64_t i;
    if ((st = cad_grad_for(b, 1, &assign))) return st;
    if (b->flags & BUF_INLINE) {
        b->sgrad += b->dtype == CAD_F64 ? *(const double *)src : (double)*(const float *)src;
        return CAD_OK;
    }
    if (b->dtype == CAD_F64) {
        double *g = (double *)b->grad;
        const double *s = (const double *)src;
        if (assign) memcpy(g, s, (size_t)b->size * sizeof(double));
        else for (i = 0; i < b->size; i++) g[i] += s[i];
    } else if (b->dtype == CAD_F32) {
        float *g = (float *)b->grad;
        const float *s = (const float *)src;
        if (assign) memcpy(g, s, (size_t)b->size * sizeof(float));
        else for (i = 0; i < b->size; i++) g[i] += s[i];
    } else {
        return CAD_EINTERNAL;
    }
    return CAD_OK;
}
