/* The device versions of the CPU primitives (NOTE [ CUDA backend ] in cad_cuda.h):
 * the strided iteration as row kernels (NOTE [ Kernel iteration ] in cad_kp.h),
 * fills, index and cross-entropy kernels, and matrix products through cuBLAS
 * (resolved at run time; the fake device uses the CPU's BLAS on its host memory). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cad_cuda.h"


static inline int esz(int dt) { return (dt == CAD_F64 || dt == CAD_I64) ? 8 : (dt == CAD_F32 ? 4 : 1); }

static int kid_of(const char *name) {
    int k = cad_cu_kernel_id(name);
    if (k < 0) {
        char m[160];
        snprintf(m, sizeof m, "internal: no CUDA kernel %s", name);
        cad_cu_seterr(m);
    }
    return k;
}

/* cached kernel ids of the hand-written kernels */
#define KID(var, name) static int var = -2; if (var == -2) var = kid_of(name); if (var < 0) return CAD_ECUDA

/* one optimizer step over ns slots of CUDA buffers (NOTE [ Optimizer updates ] in
 * cpu/optim.c): the slots and their offsets go to device memory in one copy, then
 * one launch of k_optim covers every element of every parameter */
int cad_cu_optim_step(const cad_opt_slot *s, int64_t ns) {
    cad_kp kp;
    int64_t k, N = 0;
    size_t sb = (size_t)ns * sizeof(cad_opt_slot), nb = sb + (size_t)(ns + 1) * sizeof(long long);
    char *h, *d;
    long long *off;
    int st;
    if (ns <= 0) return CAD_OK;
    KID(kid, "k_optim");
    h = (char *)malloc(nb);
    if (h == NULL) return CAD_ENOMEM;
    memcpy(h, s, sb);
    off = (long long *)(h + sb);
    off[0] = 0;
    for (k = 0; k < ns; k++) off[k + 1] = off[k] + s[k].n;
    N = off[ns];
    d = (char *)cad_cu_alloc(nb);
    if (d == NULL) { free(h); return CAD_EDEVMEM; }
    st = cad_cu_h2d(d, h, nb);
    free(h);
    if (st == CAD_OK && N > 0) {
        memset(&kp, 0, sizeof kp);
        kp.ptr[0] = d;
        kp.ptr[1] = d + sb;
        kp.i[0] = ns;
        kp.i[1] = N;
        st = cad_cu_launch(kid, &kp, N);
    }
    cad_cu_release(d);   /* stream order: the launch reads it before any reuse */
    return st;
}

int cad_cu_fill(void *p, int esize, int64_t n, int64_t bits) {
    cad_kp kp;
    if (n <= 0) return CAD_OK;
    memset(&kp, 0, sizeof kp);
    kp.ptr[0] = (char *)p;
    kp.i[0] = n;
    kp.i[1] = bits;
    if (esize == 8) { KID(k8, "k_fill_8"); return cad_cu_launch(k8, &kp, n); }
    if (esize == 4) { KID(k4, "k_fill_4"); return cad_cu_launch(k4, &kp, n); }
    { KID(k1, "k_fill_1"); return cad_cu_launch(k1, &kp, n); }
}

static int64_t bits_of(const void *v, int esize) {
    int64_t b = 0;
    if (esize == 8) memcpy(&b, v, 8);
    else if (esize == 4) { int32_t w; memcpy(&w, v, 4); b = w; }
    else b = *(const uint8_t *)v;
    return b;
}

/* can two different kept indices reach the same element of operand 0 (a window
 * with overlapping strides)?  Then the threads owning them would race. */
static int dst_overlaps(const cad_kp *kp) {
    int idx[CAD_KMAXD], i, j, n = kp->nkeep;
    long long span = 0;
    for (i = 0; i < n; i++) idx[i] = i;
    for (i = 1; i < n; i++)   /* by |stride|, ascending (n <= 8: insertion sort) */
        for (j = i; j > 0 && llabs(kp->st[0][idx[j]]) < llabs(kp->st[0][idx[j - 1]]); j--) {
            int tmp = idx[j]; idx[j] = idx[j - 1]; idx[j - 1] = tmp;
        }
    for (i = 0; i < n; i++) {
        long long a = llabs(kp->st[0][idx[i]]);
        if (a <= span) return 1;
        span += a * (kp->shape[idx[i]] - 1);
    }
    return 0;
}

int cad_cu_iter_run(cad_iter *it, cad_row row, cad_row combine, const void *init) {
    int64_t shape[CAD_MAXDIM], st[CAD_MAXOP][CAD_MAXDIM];
    int nd, d, k, nop = it->nop, kid, nkeep = 0;
    long long nk = 1, nr = 1, parts = 1;
    cad_kp kp;
    kid = cad_cu_row_kernel(row);
    if (kid < 0) return CAD_ECUDA;
    nd = cad_iter_coalesce(it, shape, st);
    if (nd < 0) return CAD_OK;
    if (nd > CAD_KMAXD) {
        char m[160];
        snprintf(m, sizeof m, "an elementwise operation over %d non-mergeable dimensions (the CUDA "
                 "kernels take at most %d); make the operands contiguous first", nd, CAD_KMAXD);
        cad_cu_seterr(m);
        return CAD_ECUDA;
    }
    memset(&kp, 0, sizeof kp);
    kp.nop = nop;
    for (k = 0; k < nop; k++) kp.ptr[k] = it->ptr[k];
    /* kept dims (the destination moves) first, reduced dims after, order kept */
    for (d = 0; d < nd; d++) {
        if (st[0][d] == 0) continue;
        kp.shape[nkeep] = shape[d];
        for (k = 0; k < nop; k++) kp.st[k][nkeep] = st[k][d];
        nk *= shape[d];
        nkeep++;
    }
    kp.nkeep = nkeep;
    kp.ndim = nkeep;
    for (d = 0; d < nd; d++) {
        if (st[0][d] != 0) continue;
        kp.shape[kp.ndim] = shape[d];
        for (k = 0; k < nop; k++) kp.st[k][kp.ndim] = st[k][d];
        nr *= shape[d];
        kp.ndim++;
    }
    if (nkeep > 1 && dst_overlaps(&kp)) {   /* two kept indices write one element: one thread */
        cad_kp k2 = kp;
        int j;
        for (d = 0; d < kp.ndim; d++) {
            k2.shape[d] = kp.shape[d];
            for (j = 0; j < nop; j++) k2.st[j][d] = kp.st[j][d];
        }
        k2.nkeep = 0;
        k2.nk = 1;
        k2.nr = nk * nr;
        k2.parts = 1;
        return cad_cu_launch(kid, &k2, 1);
    }
    kp.nk = nk;
    kp.nr = nr;
    if (combine && nr >= 64 && nk < (1LL << 18)) {   /* about 2^18 threads in all */
        parts = ((1LL << 18) + nk - 1) / nk;
        if (parts > nr / 32) parts = nr / 32;
    }
    if (nr > 1) {   /* sums: the register-accumulating kernel */
        static int acc64 = -2, acc32 = -2, racc64, racc32;
        if (acc64 == -2) {
            racc64 = cad_cu_kernel_id("k_racc_f64");
            racc32 = cad_cu_kernel_id("k_racc_f32");
            acc32 = cad_cu_kernel_id("k_acc_f32");
            acc64 = cad_cu_kernel_id("k_acc_f64");
        }
        if (kid == acc64) kid = racc64;
        else if (kid == acc32) kid = racc32;
    }
    if (parts < 2) {
        kp.parts = 1;
        if (kp.ndim == 1 && nkeep == 1) {   /* the 1-D path: CAD_VW elements a thread */
            kp.vec = 1;
            return cad_cu_launch(kid, &kp, (nk + CAD_VW - 1) / CAD_VW);
        }
        return cad_cu_launch(kid, &kp, nk);
    } else {   /* partial results per (kept index, part), combined by a second pass */
        const int es = it->esize[0];
        char *tmp = (char *)cad_cu_alloc((size_t)(nk * parts) * (size_t)es);
        cad_iter it2;
        int64_t c = 1;
        int s;
        if (!tmp) return CAD_EDEVMEM;
        s = cad_cu_fill(tmp, es, nk * parts, bits_of(init, es));
        kp.ptr[0] = tmp;
        kp.parts = parts;
        if (!s) s = cad_cu_launch(kid, &kp, nk * parts);
        if (!s) {
            it2.nop = 2;
            it2.ndim = nkeep + 1;
            it2.ptr[0] = it->ptr[0];
            it2.ptr[1] = tmp;
            it2.esize[0] = it2.esize[1] = es;
            for (d = nkeep - 1; d >= 0; d--) {
                it2.shape[d] = kp.shape[d];
                it2.st[0][d] = kp.st[0][d];
                it2.st[1][d] = c;
                c *= kp.shape[d];
            }
            it2.shape[nkeep] = parts;   /* slot part * nk + kept index */
            it2.st[0][nkeep] = 0;
            it2.st[1][nkeep] = nk;
            s = cad_cu_iter_run(&it2, combine, combine, init);
        }
        cad_cu_release(tmp);
        return s;
    }
}

/* ---- index kernels */
int cad_cu_gather(int dtype, char *out, const char *x, const int64_t *lin, int64_t n, int64_t B, int64_t xsize) {
    cad_kp kp;
    int es = esz(dtype);
    memset(&kp, 0, sizeof kp);
    kp.ptr[0] = out; kp.ptr[1] = (char *)x; kp.ptr[2] = (char *)lin;
    kp.i[0] = n; kp.i[1] = B; kp.i[2] = xsize;
    if (es == 8) { KID(k8, "k_gather_8"); return cad_cu_launch(k8, &kp, n * B); }
    if (es == 4) { KID(k4, "k_gather_4"); return cad_cu_launch(k4, &kp, n * B); }
    { KID(k1, "k_gather_1"); return cad_cu_launch(k1, &kp, n * B); }
}

int cad_cu_scatadd(int dtype, char *out, const char *g, const int64_t *lin, int64_t n, int64_t B, int64_t xsize) {
    cad_kp kp;
    memset(&kp, 0, sizeof kp);
    kp.ptr[0] = out; kp.ptr[1] = (char *)g; kp.ptr[2] = (char *)lin;
    kp.i[0] = n; kp.i[1] = B; kp.i[2] = xsize;
    if (dtype == CAD_F64) { KID(a, "k_scatadd_f64"); return cad_cu_launch(a, &kp, n * B); }
    { KID(b, "k_scatadd_f32"); return cad_cu_launch(b, &kp, n * B); }
}

int cad_cu_gathadd(int dtype, char *out, const char *x, const int64_t *lin, int64_t n, int64_t B, int64_t xsize) {
    cad_kp kp;
    memset(&kp, 0, sizeof kp);
    kp.ptr[0] = out; kp.ptr[1] = (char *)x; kp.ptr[2] = (char *)lin;
    kp.i[0] = n; kp.i[1] = B; kp.i[2] = xsize;
    if (dtype == CAD_F64) { KID(a, "k_gathadd_f64"); return cad_cu_launch(a, &kp, n * B); }
    { KID(b, "k_gathadd_f32"); return cad_cu_launch(b, &kp, n * B); }
}

static char *last_writers(const int64_t *lin, int64_t n, int64_t osize, int *st) {
    cad_kp kp;
    char *w = (char *)cad_cu_alloc((size_t)(osize ? osize : 1) * 8);
    static int kl = -2;
    if (!w) { *st = CAD_EDEVMEM; return NULL; }
    if (kl == -2) kl = kid_of("k_lastw");
    if (kl < 0) { *st = CAD_ECUDA; cad_cu_release(w); return NULL; }
    *st = cad_cu_zero(w, (size_t)osize * 8);
    memset(&kp, 0, sizeof kp);
    kp.ptr[0] = w; kp.ptr[1] = (char *)lin; kp.i[0] = n;
    if (!*st) *st = cad_cu_launch(kl, &kp, n);
    if (*st) { cad_cu_release(w); return NULL; }
    return w;
}

int cad_cu_setitem(int dtype, char *out, const char *v, const int64_t *lin, int64_t n, int64_t osize) {
    cad_kp kp;
    int st, es = esz(dtype), kid;
    char *w;
    if (n <= 0) return CAD_OK;
    kid = cad_cu_kernel_id(es == 8 ? "k_setw_8" : (es == 4 ? "k_setw_4" : "k_setw_1"));
    w = last_writers(lin, n, osize, &st);
    if (!w) return st;
    memset(&kp, 0, sizeof kp);
    kp.ptr[0] = out; kp.ptr[1] = (char *)v; kp.ptr[2] = (char *)lin; kp.ptr[3] = w;
    kp.i[0] = n;
    st = cad_cu_launch(kid, &kp, n);
    cad_cu_release(w);
    return st;
}

int cad_cu_setitem_vjp(int dtype, char *gx, char *gv, const char *go, const int64_t *lin, int64_t n, int64_t osize) {
    cad_kp kp;
    int st = CAD_OK;
    char *w = last_writers(lin, n, osize, &st);
    if (!w) return st;
    if (gv && n > 0) {
        memset(&kp, 0, sizeof kp);
        kp.ptr[0] = gv; kp.ptr[1] = (char *)go; kp.ptr[2] = (char *)lin; kp.ptr[3] = w;
        kp.i[0] = n;
        st = cad_cu_launch(cad_cu_kernel_id(dtype == CAD_F64 ? "k_setgv_f64" : "k_setgv_f32"), &kp, n);
    }
    if (!st && gx) {
        memset(&kp, 0, sizeof kp);
        kp.ptr[0] = gx; kp.ptr[1] = (char *)go; kp.ptr[2] = w;
        kp.i[0] = osize;
        st = cad_cu_launch(cad_cu_kernel_id(dtype == CAD_F64 ? "k_setgx_f64" : "k_setgx_f32"), &kp, osize);
    }
    cad_cu_release(w);
    return st;
}

/* ---- cross-entropy */
int cad_cu_xent(int dtype, char *out, const char *z, int64_t zrs, int64_t zcs,
                const int64_t *lab, int64_t lst, int64_t N, int64_t C) {
    cad_kp kp;
    char *e;
    if (C == 0) return N ? CAD_EINDEX : CAD_OK;
    if (N == 0) return CAD_OK;
    e = cad_cu_errword();   /* a label out of range: reported at the next copy to the host */
    if (!e) return CAD_EDEVMEM;
    memset(&kp, 0, sizeof kp);
    kp.ptr[0] = out; kp.ptr[1] = (char *)z; kp.ptr[2] = (char *)lab; kp.ptr[3] = e;
    kp.i[0] = N; kp.i[1] = C; kp.i[2] = zrs; kp.i[3] = zcs; kp.i[4] = lst;
    return cad_cu_launch(cad_cu_kernel_id(dtype == CAD_F64 ? "k_xent_f64" : "k_xent_f32"), &kp, N);
}

int cad_cu_xent_vjp(int dtype, char *gz, const char *g, const char *z, int64_t zrs, int64_t zcs,
                    const int64_t *lab, int64_t lst, const char *out, int64_t os, int64_t N, int64_t C,
                    int assign) {
    cad_kp kp;
    memset(&kp, 0, sizeof kp);
    kp.ptr[0] = gz; kp.ptr[1] = (char *)g; kp.ptr[2] = (char *)z; kp.ptr[3] = (char *)lab;
    kp.ptr[4] = (char *)out;
    kp.i[0] = N; kp.i[1] = C; kp.i[2] = zrs; kp.i[3] = zcs; kp.i[4] = lst; kp.i[5] = os; kp.i[6] = assign;
    return cad_cu_launch(cad_cu_kernel_id(dtype == CAD_F64 ? "k_xentb_f64" : "k_xentb_f32"), &kp, N * C);
}

/* ---- cross products of rows of three: one thread per row */
int cad_cu_cross(int dtype, char *out, const char *x, const char *y, int64_t n, int acc) {
    cad_kp kp;
    if (n == 0) return CAD_OK;
    memset(&kp, 0, sizeof kp);
    kp.ptr[0] = out; kp.ptr[1] = (char *)x; kp.ptr[2] = (char *)y;
    kp.i[0] = n; kp.i[1] = acc;
    return cad_cu_launch(cad_cu_kernel_id(dtype == CAD_F64 ? "k_cross_f64" : "k_cross_f32"), &kp, n);
}

/* ---- scans (cumsum, cumprod) and cumprod's vjp: one thread per slice */
int cad_cu_scan(int dtype, char *out, const char *x, int64_t outer, int64_t n, int64_t inner,
                int rev, int prod, int acc) {
    cad_kp kp;
    if (outer * n * inner == 0) return CAD_OK;
    memset(&kp, 0, sizeof kp);
    kp.ptr[0] = out; kp.ptr[1] = (char *)x;
    kp.i[0] = outer; kp.i[1] = n; kp.i[2] = inner; kp.i[3] = rev; kp.i[4] = prod; kp.i[5] = acc;
    return cad_cu_launch(cad_cu_kernel_id(dtype == CAD_F64 ? "k_scan_f64" : "k_scan_f32"), &kp, outer * inner);
}

int cad_cu_cumprod_vjp(int dtype, char *gx, const char *g, const char *x, const char *out,
                       int64_t outer, int64_t n, int64_t inner, int acc) {
    cad_kp kp;
    if (outer * n * inner == 0) return CAD_OK;
    memset(&kp, 0, sizeof kp);
    kp.ptr[0] = gx; kp.ptr[1] = (char *)g; kp.ptr[2] = (char *)x; kp.ptr[3] = (char *)out;
    kp.i[0] = outer; kp.i[1] = n; kp.i[2] = inner; kp.i[3] = acc;
    return cad_cu_launch(cad_cu_kernel_id(dtype == CAD_F64 ? "k_cumprodb_f64" : "k_cumprodb_f32"), &kp,
                         outer * inner);
}

/* ---- matrix products: cuBLAS (column-major), resolved at run time */
typedef int cublasStatus_t;
typedef struct cublasContext *cublasHandle_t;
static struct {
    void *lib;
    cublasHandle_t h;
    cublasStatus_t (*Create)(cublasHandle_t *);
    cublasStatus_t (*SetMathMode)(cublasHandle_t, int);
    cublasStatus_t (*Dgemm)(cublasHandle_t, int, int, int, int, int, const double *, const double *, int,
                            long long, const double *, int, long long, const double *, double *, int,
                            long long, int);
    cublasStatus_t (*Sgemm)(cublasHandle_t, int, int, int, int, int, const float *, const float *, int,
                            long long, const float *, int, long long, const float *, float *, int,
                            long long, int);
} cb;
static pthread_mutex_t cbmu = PTHREAD_MUTEX_INITIALIZER;

/* The fake device's cuBLAS: the column-major strided-batched GEMM of the cuBLAS API,
 * written out naively, so the fake device tests cad's mapping of row-major operands
 * with any strides onto cuBLAS's arguments (op, ld, batch strides). */
#define EMU_GEMM(NAME, T)                                                      \
    static cublasStatus_t NAME(cublasHandle_t h, int ta, int tb, int m, int n, int k,  \
                               const T *alpha, const T *A, int lda, long long sA,      \
                               const T *B, int ldb, long long sB, const T *beta, T *C,  \
                               int ldc, long long sC, int batch) {                      \
        int b, i, j, l;                                                         \
        (void)h;                                                                \
        if (batch > 1 && sC == 0) return 7;   /* cuBLAS would race: INVALID_VALUE */ \
        A = CAD_FAKE_HOST(const T *, A);                                        \
        B = CAD_FAKE_HOST(const T *, B);                                        \
        C = CAD_FAKE_HOST(T *, C);                                              \
        for (b = 0; b < batch; b++)                                             \
            for (j = 0; j < n; j++)                                             \
                for (i = 0; i < m; i++) {                                       \
                    T acc = 0;                                                  \
                    for (l = 0; l < k; l++) {                                   \
                        T a = ta ? A[b * sA + l + (long long)i * lda] : A[b * sA + i + (long long)l * lda]; \
                        T bb = tb ? B[b * sB + j + (long long)l * ldb] : B[b * sB + l + (long long)j * ldb]; \
                        acc += a * bb;                                          \
                    }                                                           \
                    T *c = C + b * sC + i + (long long)j * ldc;                 \
                    *c = *alpha * acc + (*beta == 0 ? (T)0 : *beta * *c);       \
                }                                                               \
        return 0;                                                               \
    }
EMU_GEMM(emu_dgemm, double)
EMU_GEMM(emu_sgemm, float)
static cublasStatus_t emu_mathmode(cublasHandle_t h, int mode) { (void)h; (void)mode; return 0; }

static char cublas_paths[2048] = "";

void cad_cu_set_cublas_paths(const char *paths) {   /* ':'-separated candidates, tried first */
    snprintf(cublas_paths, sizeof cublas_paths, "%s", paths ? paths : "");
}

static int cublas_open(void) {
    static const char *names[] = {"libcublas.so.13", "libcublas.so.12", "libcublas.so.11", "libcublas.so", NULL};
    char buf[2048], *tok, *save = NULL;
    int i;
    if (cb.h) return CAD_OK;
    if (cad_cu_is_fake()) {   /* the emulation above, on host memory */
        cb.SetMathMode = emu_mathmode;
        cb.Dgemm = emu_dgemm;
        cb.Sgemm = emu_sgemm;
        cb.h = (cublasHandle_t)&cb;
        return CAD_OK;
    }
    snprintf(buf, sizeof buf, "%s", cublas_paths);
    for (tok = strtok_r(buf, ":", &save); tok && !cb.lib; tok = strtok_r(NULL, ":", &save))
        cb.lib = dlopen(tok, RTLD_NOW | RTLD_LOCAL);
    for (i = 0; names[i] && !cb.lib; i++) cb.lib = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
    if (!cb.lib) {
        cad_cu_seterr("cuBLAS (libcublas.so) cannot be loaded: matrix products on the GPU need it "
                      "(set CAD_CUBLAS to its path)");
        return CAD_ECUDA;
    }
    *(void **)&cb.Create = dlsym(cb.lib, "cublasCreate_v2");
    *(void **)&cb.SetMathMode = dlsym(cb.lib, "cublasSetMathMode");
    *(void **)&cb.Dgemm = dlsym(cb.lib, "cublasDgemmStridedBatched");
    *(void **)&cb.Sgemm = dlsym(cb.lib, "cublasSgemmStridedBatched");
    if (!cb.Create || !cb.SetMathMode || !cb.Dgemm || !cb.Sgemm) {
        cad_cu_seterr("cuBLAS lacks cublasCreate_v2/cublasSetMathMode/cublas{D,S}gemmStridedBatched");
        return CAD_ECUDA;
    }
    if (cb.Create(&cb.h)) { cad_cu_seterr("cublasCreate failed"); cb.h = NULL; return CAD_ECUDA; }
    return CAD_OK;
}

/* M (R x Cc, strides rs, cs) seen as the column-major operand M^T (Cc x R):
 * op N with ld when the columns are contiguous, op T when the rows are; 0 if neither */
static int coldesc(int64_t R, int64_t Cc, int64_t rs, int64_t cs, int *op, int64_t *ld) {
    if (cs == 1 || Cc == 1) {
        *op = 0;
        *ld = R <= 1 ? (Cc > 1 ? Cc : 1) : rs;
        if (*ld >= (Cc > 1 ? Cc : 1)) return 1;
    }
    if (rs == 1 || R == 1) {
        *op = 1;
        *ld = Cc <= 1 ? (R > 1 ? R : 1) : cs;
        if (*ld >= (R > 1 ? R : 1)) return 1;
    }
    return 0;
}

static int copy_contig(int dtype, const char *src, int64_t R, int64_t Cc, int64_t rs, int64_t cs, char **dst) {
    cad_iter it;
    int64_t sh[2] = {R, Cc}, dst_st[2] = {Cc, 1}, src_st[2] = {rs, cs};
    int es = esz(dtype);
    *dst = (char *)cad_cu_alloc((size_t)(R * Cc > 0 ? R * Cc : 1) * (size_t)es);
    if (!*dst) return CAD_EDEVMEM;
    it.nop = 2;
    it.ndim = 2;
    it.shape[0] = R; it.shape[1] = Cc;
    cad_iter_operand(&it, 0, *dst, es, 2, sh, dst_st);
    cad_iter_operand(&it, 1, (char *)src, es, 2, sh, src_st);
    return cad_cu_iter_run(&it, cad_copy_rows[dtype], NULL, NULL);
}

int cad_cu_matmul(const cad_mm *mm) {
    int opa, opb, st = CAD_OK, d, inner;
    int64_t lda, ldb, nbatch = 1, nouter, o;
    char *ta = NULL, *tb = NULL;
    const char *A = mm->a, *B = mm->b;
    int64_t ars = mm->ars, acs = mm->acs, brs = mm->brs, bcs = mm->bcs;
    const int es = esz(mm->dtype);
    if ((st = cad_cu_ctx())) return st;   /* cuBLAS works in the thread's current context */
    for (d = 0; d < mm->bnd; d++) nbatch *= mm->bshape[d];
    if (mm->m == 0 || mm->n == 0 || nbatch == 0) return CAD_OK;
    if (mm->m > 0x7fffffff || mm->n > 0x7fffffff || mm->k > 0x7fffffff) return CAD_EBLAS;
    if (!coldesc(mm->m, mm->k, ars, acs, &opa, &lda)) {
        if ((st = copy_contig(mm->dtype, A, mm->m, mm->k, ars, acs, &ta))) goto out;
        A = ta; ars = mm->k; acs = 1;
        coldesc(mm->m, mm->k, ars, acs, &opa, &lda);
    }
    if (!coldesc(mm->k, mm->n, brs, bcs, &opb, &ldb)) {
        if ((st = copy_contig(mm->dtype, B, mm->k, mm->n, brs, bcs, &tb))) goto out;
        B = tb; brs = mm->n; bcs = 1;
        coldesc(mm->k, mm->n, brs, bcs, &opb, &ldb);
    }
    pthread_mutex_lock(&cbmu);
    st = cublas_open();
    if (!st && cb.SetMathMode(cb.h, (mm->dtype == CAD_F32 && cad_cu_allow_tf32) ? 3 : 0))
        st = CAD_ECUDA;
    if (!st) {
        /* batches: the innermost batch dim that the output moves along runs as
         * cuBLAS's strided batch, the others are looped in order.  A batch dim the
         * output does not move along (the gradient of a broadcast operand sums
         * over it) is never a cuBLAS batch, whose members run concurrently and
         * would race on the one output; looped, its later products add (beta 1). */
        inner = -1;
        for (d = mm->bnd - 1; d >= 0; d--)
            if (mm->bshape[d] > 1 && mm->obst[d] != 0) { inner = d; break; }
        nouter = nbatch / (inner >= 0 ? mm->bshape[inner] : 1);
        for (o = 0; o < nouter && !st; o++) {
            int64_t rem = o, aoff = 0, boff = 0, coff = 0;
            int cnt = inner >= 0 ? (int)mm->bshape[inner] : 1, again = 0;
            for (d = mm->bnd - 1; d >= 0; d--) {
                int64_t i;
                if (d == inner) continue;
                i = rem % mm->bshape[d];
                rem /= mm->bshape[d];
                aoff += i * mm->abst[d]; boff += i * mm->bbst[d]; coff += i * mm->obst[d];
                if (i > 0 && mm->obst[d] == 0) again = 1;
            }
            {
                long long sa = inner >= 0 ? mm->abst[inner] : 0, sb = inner >= 0 ? mm->bbst[inner] : 0;
                long long sc = inner >= 0 ? mm->obst[inner] : 0;
                double beta_ = again ? 1.0 : mm->beta;
                int r;
                if (mm->dtype == CAD_F64) {
                    double one = 1.0, beta = beta_;
                    r = cb.Dgemm(cb.h, opb, opa, (int)mm->n, (int)mm->m, (int)mm->k, &one,
                                 (const double *)B + boff, (int)ldb, sb, (const double *)A + aoff, (int)lda, sa,
                                 &beta, (double *)mm->c + coff, (int)mm->crs, sc, cnt);
                } else {
                    float one = 1.0f, beta = (float)beta_;
                    r = cb.Sgemm(cb.h, opb, opa, (int)mm->n, (int)mm->m, (int)mm->k, &one,
                                 (const float *)B + boff, (int)ldb, sb, (const float *)A + aoff, (int)lda, sa,
                                 &beta, (float *)mm->c + coff, (int)mm->crs, sc, cnt);
                }
                if (r) {
                    char m[128];
                    snprintf(m, sizeof m, "cublas%cgemmStridedBatched failed (status %d)",
                             mm->dtype == CAD_F64 ? 'D' : 'S', r);
                    cad_cu_seterr(m);
                    st = CAD_ECUDA;
                }
            }
        }
    }
    pthread_mutex_unlock(&cbmu);
    (void)es;
out:
    if (ta) cad_cu_release(ta);
    if (tb) cad_cu_release(tb);
    return st;
}

/* The CUDA backend (NOTE [ Backends ] in cpu/cad_cpu.h): device scratch from the block
 * cache, the kernels above, cuBLAS.  The fake device runs the same functions. */
static void *be_alloc(size_t nb) { return cad_cu_alloc(nb ? nb : 1); }
static void be_free(void *p) { if (p) cad_cu_release(p); }
static int be_iter_run(cad_iter *it, cad_row row, cad_row combine, const void *init, int64_t par_min) {
    (void)par_min;
    return cad_cu_iter_run(it, row, combine, init);
}

static int be_optim(const cad_opt_slot *s, int64_t ns, int64_t par_min) {
    (void)par_min;   /* one launch covers every element */
    return cad_cu_optim_step(s, ns);
}

const cad_backend cad_be_cuda = {
    "cuda", be_alloc, be_free, cad_cu_zero, cad_cu_fill, be_iter_run, cad_cu_matmul,
    cad_cu_gather, cad_cu_scatadd, cad_cu_gathadd, cad_cu_setitem, cad_cu_setitem_vjp,
    cad_cu_xent, cad_cu_xent_vjp, cad_cu_scan, cad_cu_cumprod_vjp, cad_cu_cross,
    be_optim,
};
