/* Optimizer updates (cad.optim): one call updates every parameter of a step.
 *
 * NOTE [ Optimizer updates ]
 * A parameter's value is immutable (NOTE [ Values are immutable ] in
 * cad/_core/_engine.pyx): a tape, a detached tensor or a numpy view may still read
 * the old buffer.  So the kernel never writes into a parameter: it reads the old
 * value p and the gradient g and writes the new value into a fresh buffer `out`,
 * which the engine then binds to the parameter object (cad/_core/optim.pxi: the
 * object stays the same leaf, its version counter is bumped, so a tape that saw the
 * old value keeps the old buffer and backward() through it reports the change).
 * The optimizer's state (SGD's momentum buffer, Adam's exp_avg, exp_avg_sq,
 * max_exp_avg_sq) belongs to the optimizer, is never shown to the user as a live
 * tensor, and is updated in place: m0/v0/w0 (read) may equal m/v/w (written).  The
 * functional form (cad.optim.adam(...).update) passes distinct buffers and
 * CAD_OPT_DELTA, and gets the update instead of the new value (nothing mutated).
 *
 * The arithmetic follows torch.optim's single-tensor loops operation by operation
 * (lerp for exp_avg, mul then addcmul for exp_avg_sq, sqrt / bias_correction2_sqrt
 * + eps, addcdiv), in the parameter's dtype as PyTorch's CPU kernels compute (the
 * hyperparameters rounded to it).  All parameters of a step
 * form one index space that the thread pool splits evenly, so many small
 * parameters and one large one both use every thread. */
#include <math.h>
#include <stdlib.h>
#include "cad_cpu.h"

#if defined(CAD_CLONES512)
#define CAD_OPTCLONE __attribute__((target_clones("avx512f", "avx2", "default")))
#elif defined(CAD_CLONES)
#define CAD_OPTCLONE __attribute__((target_clones("avx2", "default")))
#else
#define CAD_OPTCLONE
#endif

/* The loops: the options that change which buffers are written (momentum, amsgrad,
 * the update instead of the value) are compile-time constants of each loop, the
 * others are selects, so every variant vectorizes.  A state buffer may be read and
 * written at the same index (m0 == m: in place), never at another one: no
 * loop-carried dependence (ivdep). */
#define SGD_LOOP(T, MOM, FIRST, DELTA)                                                  \
    _Pragma("GCC ivdep") for (i = lo; i < hi; i++) {                                    \
        const T pi = p[i];                                                              \
        T gi = sg * g[i];                                                               \
        gi = haswd ? gi + wd * pi : gi;                                                 \
        if (MOM) {                                                                      \
            const T b = FIRST ? gi : m0[i] * mom + keep * gi;                           \
            m[i] = b;                                                                   \
            gi = nest ? gi + mom * b : b;                                               \
        }                                                                               \
        o[i] = DELTA ? nlr * gi : pi + nlr * gi;                                        \
    }

#define SGD_RANGE(T)                                                                    \
    static CAD_OPTCLONE void sgd_##T(const cad_opt_slot *s, int64_t lo, int64_t hi) {   \
        const T *p = (const T *)s->p, *g = (const T *)s->g, *m0 = (const T *)s->m0;     \
        T *m = (T *)s->m, *o = (T *)s->out;                                             \
        const int f = s->flags, delta = (f & CAD_OPT_DELTA) != 0;                       \
        const T sg = (f & CAD_OPT_MAXIMIZE) ? -1 : 1, wd = (T)s->wd, mom = (T)s->momentum,  \
                keep = (T)(1.0 - s->dampening), nlr = (T)-s->lr;                        \
        const int haswd = wd != 0.0, first = (f & CAD_OPT_FIRST) != 0,                  \
                  nest = (f & CAD_OPT_NESTEROV) != 0;                                   \
        int64_t i;                                                                      \
        if (mom == 0.0) {                                                               \
            if (delta) SGD_LOOP(T, 0, 0, 1) else SGD_LOOP(T, 0, 0, 0)                   \
        } else if (first) {                                                             \
            if (delta) SGD_LOOP(T, 1, 1, 1) else SGD_LOOP(T, 1, 1, 0)                   \
        } else {                                                                        \
            if (delta) SGD_LOOP(T, 1, 0, 1) else SGD_LOOP(T, 1, 0, 0)                   \
        }                                                                               \
    }

#define ADAM_LOOP(T, SQRT, AMS, DELTA)                                                  \
    _Pragma("GCC ivdep") for (i = lo; i < hi; i++) {                                    \
        const T pi = p[i], mi = m0[i], vi = v0[i];                                      \
        T gi = sg * g[i], mn, vn, d;                                                    \
        gi = cwd ? gi + wd * pi : gi;                                                   \
        /* exp_avg.lerp_(grad, 1 - beta1) */                                            \
        mn = small ? mi + w1 * (gi - mi) : gi - (gi - mi) * w1c;                        \
        /* exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2) */              \
        vn = vi * b2 + c2 * gi * gi;                                                    \
        m[i] = mn;                                                                      \
        v[i] = vn;                                                                      \
        if (AMS) {   /* torch.maximum (NaN propagates) */                               \
            const T wi = w0[i];                                                         \
            vn = (wi != wi || wi > vn) ? wi : vn;                                       \
            w[i] = vn;                                                                  \
        }                                                                               \
        /* denom = exp_avg_sq.sqrt() / bias_correction2_sqrt + eps (times the reciprocal:  \
           one division per element fewer, a rounding apart); addcdiv */                \
        d = SQRT(vn) * ibc2s + eps;                                                     \
        o[i] = DELTA ? (dwd ? nlrwd * pi : 0) + nss * mn / d                            \
                     : (dwd ? pi * shrink : pi) + nss * mn / d;                         \
    }

#define ADAM_RANGE(T, SQRT)                                                             \
    static CAD_OPTCLONE void adam_##T(const cad_opt_slot *s, int64_t lo, int64_t hi) {  \
        const T *p = (const T *)s->p, *g = (const T *)s->g;                             \
        const T *m0 = (const T *)s->m0, *v0 = (const T *)s->v0, *w0 = (const T *)s->w0; \
        T *m = (T *)s->m, *v = (T *)s->v, *w = (T *)s->w, *o = (T *)s->out;             \
        const int f = s->flags, delta = (f & CAD_OPT_DELTA) != 0,                       \
                  ams = (f & CAD_OPT_AMSGRAD) != 0, dec = (f & CAD_OPT_DECOUPLED) != 0; \
        const double w1d = 1.0 - s->beta1;                                              \
        const T sg = (f & CAD_OPT_MAXIMIZE) ? -1 : 1, wd = (T)s->wd, w1 = (T)w1d,       \
                w1c = (T)(1.0 - w1d), b2 = (T)s->beta2, c2 = (T)(1.0 - s->beta2),       \
                eps = (T)s->eps, ibc2s = (T)(1.0 / sqrt(s->bc2)), nss = (T)-(s->lr / s->bc1),  \
                /* AdamW: param.mul_(1 - lr * wd); as an update: -lr * wd * p */        \
                shrink = (T)(1.0 - s->lr * s->wd), nlrwd = (T)(-s->lr * s->wd);         \
        const int cwd = s->wd != 0.0 && !dec, dwd = s->wd != 0.0 && dec, small = fabs(w1d) < 0.5;  \
        int64_t i;                                                                      \
        if (ams) {                                                                      \
            if (delta) ADAM_LOOP(T, SQRT, 1, 1) else ADAM_LOOP(T, SQRT, 1, 0)           \
        } else {                                                                        \
            if (delta) ADAM_LOOP(T, SQRT, 0, 1) else ADAM_LOOP(T, SQRT, 0, 0)           \
        }                                                                               \
    }

SGD_RANGE(double)
SGD_RANGE(float)
ADAM_RANGE(double, sqrt)
ADAM_RANGE(float, sqrtf)

static void slot_range(const cad_opt_slot *s, int64_t lo, int64_t hi) {
    const int adam = (s->flags & CAD_OPT_ADAM) != 0;
    if (s->dtype == CAD_F32) {
        if (adam) adam_float(s, lo, hi);
        else sgd_float(s, lo, hi);
    } else {
        if (adam) adam_double(s, lo, hi);
        else sgd_double(s, lo, hi);
    }
}

typedef struct {
    const cad_opt_slot *s;
    const int64_t *off;   /* off[k]: first global index of slot k; off[ns] = total */
    int64_t ns;
} opt_job;

/* thread tid's share [N*tid/nt, N*(tid+1)/nt) of the concatenated parameters */
static void opt_task(void *arg, int tid, int nt) {
    const opt_job *j = (const opt_job *)arg;
    const int64_t N = j->off[j->ns], lo = N * tid / nt, hi = N * (tid + 1) / nt;
    int64_t a = 0, b = j->ns, k;
    if (lo >= hi) return;
    while (b - a > 1) {   /* the last slot starting at or before lo */
        int64_t c = (a + b) / 2;
        if (j->off[c] <= lo) a = c; else b = c;
    }
    for (k = a; k < j->ns && j->off[k] < hi; k++) {
        int64_t s0 = lo > j->off[k] ? lo - j->off[k] : 0;
        int64_t s1 = (hi < j->off[k + 1] ? hi : j->off[k + 1]) - j->off[k];
        if (s1 > s0) slot_range(&j->s[k], s0, s1);
    }
}

int cad_optim_step(const cad_opt_slot *s, int64_t ns, int64_t par_min) {
    int64_t k, N = 0;
    int nt = cad_num_threads > 0 ? cad_num_threads : cad_get_max_threads();
    for (k = 0; k < ns; k++) N += s[k].n;
    if (N < par_min || nt < 2) {
        for (k = 0; k < ns; k++) slot_range(&s[k], 0, s[k].n);
        return CAD_OK;
    }
    {
        opt_job j;
        int64_t *off = (int64_t *)malloc((size_t)(ns + 1) * sizeof(int64_t));
        if (off == NULL) return CAD_ENOMEM;
        off[0] = 0;
        for (k = 0; k < ns; k++) off[k + 1] = off[k] + s[k].n;
        j.s = s;
        j.off = off;
        j.ns = ns;
        if (par_min > 0 && (int64_t)nt > N / par_min + 1) nt = (int)(N / par_min) + 1;   /* >= par_min/2 each */
        cad_parallel(opt_task, &j, nt);
        free(off);
    }
    return CAD_OK;
}

int cad_optim_run(int dev, const cad_opt_slot *s, int64_t ns, int64_t par_min) {
    int st;
    cad_set_dev(dev);
    st = CAD_BE->optim(s, ns, par_min);
    cad_set_dev(0);
    return st;
}
