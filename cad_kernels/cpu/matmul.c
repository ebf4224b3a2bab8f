/* Matrix products through BLAS (dgemm/sgemm pointers taken from
 * scipy.linalg.cython_blas at import), with a plain-loop fallback.
 *
 * Threads: OpenBLAS's own threads pay only for large products, and on a 2-core
 * machine a second BLAS thread that has to wait for a core (another library's
 * spinning thread) stalls the whole product.  When the library has
 * openblas_set_num_threads_local (OpenBLAS >= 0.3.27, a per-calling-thread
 * setting), cad's calls run on one thread below CAD_BLAS_PAR_MIN multiply-adds and
 * on cad's thread count above, and restore the caller's setting after. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include "cad_cpu.h"

/* 3M multiply-adds: a 128^3 product (2.1M) split over the pool took 76 us against 66
 * on one thread here, and W7's replayed Hessian (one such product) 1.1-1.3x longer at
 * two threads with two busy neighbours; 160^3 (4.1M) gains (124 -> 95 us) */
double cad_blas_par_min = (double)(3 << 20);   /* cad._core._engine._blas_par_min */
#define CAD_BLAS_PAR_MIN cad_blas_par_min
static int (*p_threads_local)(int) = NULL;

typedef void (*dgemm_t)(char *, char *, int *, int *, int *, double *, double *, int *,
                        double *, int *, double *, double *, int *);
typedef void (*sgemm_t)(char *, char *, int *, int *, int *, float *, float *, int *,
                        float *, int *, float *, float *, int *);
typedef void (*dgemv_t)(char *, int *, int *, double *, double *, int *, double *, int *,
                        double *, double *, int *);
typedef void (*sgemv_t)(char *, int *, int *, float *, float *, int *, float *, int *,
                        float *, float *, int *);
static dgemm_t p_dgemm = NULL;
static sgemm_t p_sgemm = NULL;
static dgemv_t p_dgemv = NULL;
static sgemv_t p_sgemv = NULL;

void cad_set_blas(void *d, void *s, void *dv, void *sv) {
    Dl_info info;
    p_dgemm = (dgemm_t)d;
    p_sgemm = (sgemm_t)s;
    p_dgemv = (dgemv_t)dv;
    p_sgemv = (sgemv_t)sv;
    p_threads_local = NULL;
    if (d && dladdr(d, &info) && info.dli_fname) {
        void *h = dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD);
        if (h) {
            p_threads_local = (int (*)(int))dlsym(h, "openblas_set_num_threads_local");
            dlclose(h);   /* drops the reference NOLOAD added; the library stays loaded */
        }
    }
}

/* set BLAS threads for a product of m*n*k multiply-adds; returns the previous
 * setting (or -1 when the library cannot do this) */
static int blas_threads(double work) {
    int nt;
    if (!p_threads_local) return -1;
    nt = work < CAD_BLAS_PAR_MIN || cad_pool_contended() ? 1 : (cad_num_threads > 0 ? cad_num_threads : cad_get_max_threads());
    return p_threads_local(nt);
}
int cad_have_blas(void) { return p_dgemm != NULL && p_sgemm != NULL; }
int cad_blas_thread_control(void) { return p_threads_local != NULL; }
/* this thread's BLAS threads (scipy's OpenBLAS: cad.linalg's LAPACK calls); returns the
 * previous setting, -1 when the library cannot set it */
int cad_blas_threads_local(int nt) { return p_threads_local ? p_threads_local(nt) : -1; }

/* column-major description of a rows x cols matrix given row/col strides;
 * returns 0 with trans/ld for BLAS, -1 when it needs a copy */
static int blas_desc(int64_t rows, int64_t cols, int64_t rs, int64_t cs, char *trans, int64_t *ld) {
    /* we describe X^T (cols x rows) in column-major, as BLAS sees row-major X */
    if (cs == 1 || cols == 1) {
        *trans = 'N';
        *ld = (rows > 1) ? rs : cols;
        if (*ld < cols) *ld = cols;
        if (*ld < 1) *ld = 1;
        return (rows > 1 && rs < cols) ? -1 : 0;
    }
    if (rs == 1 || rows == 1) {
        *trans = 'T';
        *ld = (cols > 1) ? cs : rows;
        if (*ld < rows) *ld = rows;
        if (*ld < 1) *ld = 1;
        return (cols > 1 && cs < rows) ? -1 : 0;
    }
    return -1;
}

/* C = beta C + A B by rows of B (C[i, :] += A[i, l] B[l, :]): the inner loop runs
   along a row, contiguous when bcs == 1 (then it vectorizes) */
#define LOOP_GEMM(T)                                                           \
    {                                                                          \
        const T *A = (const T *)a, *B = (const T *)b;                         \
        T *C = (T *)c;                                                         \
        int64_t i, j, l;                                                       \
        for (i = 0; i < m; i++) {                                              \
            T *ci = C + i * crs;                                               \
            if (beta == 0) { for (j = 0; j < n; j++) ci[j] = 0; }              \
            else if (beta != 1) { for (j = 0; j < n; j++) ci[j] = (T)beta * ci[j]; } \
            for (l = 0; l < k; l++) {                                          \
                const T av = A[i * ars + l * acs];                             \
                const T *bl = B + l * brs;                                     \
                if (bcs == 1) { for (j = 0; j < n; j++) ci[j] += av * bl[j]; } \
                else { for (j = 0; j < n; j++) ci[j] += av * bl[j * bcs]; }    \
            }                                                                  \
        }                                                                      \
    }

typedef struct {
    int dtype, M, K, LDA, LDB, LDC;
    int64_t m, ars, crs;
    const char *a, *b;
    char *c;
    char ta, tb;
    double beta;
} gemm_job;

/* rows [m u / U, m (u + 1) / U) of C = A B, on one BLAS thread */
static void gemm_task(void *arg, int u, int U) {
    const gemm_job *j = (const gemm_job *)arg;
    const int64_t r0 = j->m * u / U, r1 = j->m * (u + 1) / U;
    const size_t es = j->dtype == CAD_F64 ? 8 : 4;
    int N = (int)(r1 - r0), M = j->M, K = j->K, LDA = j->LDA, LDB = j->LDB, LDC = j->LDC;
    char ta = j->ta, tb = j->tb;
    int prev;
    if (N <= 0) return;
    prev = p_threads_local(1);
    if (j->dtype == CAD_F64) {
        double al = 1.0, be = j->beta;
        p_dgemm(&tb, &ta, &M, &N, &K, &al, (double *)j->b, &LDA, (double *)(j->a + r0 * j->ars * es), &LDB,
                &be, (double *)(j->c + r0 * j->crs * es), &LDC);
    } else {
        float al = 1.0f, be = (float)j->beta;
        p_sgemm(&tb, &ta, &M, &N, &K, &al, (float *)j->b, &LDA, (float *)(j->a + r0 * j->ars * es), &LDB,
                &be, (float *)(j->c + r0 * j->crs * es), &LDC);
    }
    p_threads_local(prev);
}

typedef struct {
    int dtype;
    char tr;
    int64_t rows, cols, ld, incx, incy, len;
    const char *mat, *vec;
    char *c, *part;
} gemv_job;

/* one unit of a gemv (y already zeroed or scaled, beta 1).  'T' (y's element i is
 * column i of BLAS's matrix, contiguous): y's elements [len u / U, len (u + 1) / U).
 * 'N' (y's element i is row i of a matrix held by columns): the columns
 * [cols u / U, cols (u + 1) / U), each unit's y into its own row of `part` (zeroed),
 * added into y in unit order after (a row block of a column-major matrix read 375 of
 * every 3000 elements per column and did not scale) */
static void gemv_task(void *arg, int u, int U) {
    const gemv_job *j = (const gemv_job *)arg;
    const size_t es = j->dtype == CAD_F64 ? 8 : 4;
    const int64_t tot = j->tr == 'N' ? j->cols : j->len;
    const int64_t r0 = tot * u / U, r1 = tot * (u + 1) / U;
    const char *mat = j->mat + (size_t)(r0 * j->ld) * es;
    const char *vec = j->vec + (size_t)(j->tr == 'N' ? r0 * j->incx : 0) * es;
    char *y = j->tr == 'N' ? j->part + (size_t)(u * j->len) * es : j->c + (size_t)(r0 * j->incy) * es;
    int R = (int)j->rows, Cn = (int)(r1 - r0);
    int LD = (int)j->ld, IX = (int)j->incx, IY = j->tr == 'N' ? 1 : (int)j->incy, prev;
    char tr = j->tr;
    if (r1 <= r0) return;
    prev = p_threads_local(1);
    if (j->dtype == CAD_F64) {
        double al = 1.0, be = 1.0;
        p_dgemv(&tr, &R, &Cn, &al, (double *)mat, &LD, (double *)vec, &IX, &be, (double *)y, &IY);
    } else {
        float al = 1.0f, be = 1.0f;
        p_sgemv(&tr, &R, &Cn, &al, (float *)mat, &LD, (float *)vec, &IX, &be, (float *)y, &IY);
    }
    p_threads_local(prev);
}

/* NOTE [ Matrix-vector products ]: a product with one row or one column (A @ x,
   x @ B; a matrix-vector product of the forward, its vjp, a jvp) goes to gemv:
   OpenBLAS's gemm with n = 1 ran 3x slower than its gemv here (512 x 512: 72 against
   23 us).  The matrix must be BLAS-describable in one of its two orders and the
   vectors' strides positive; otherwise (-1) the caller's gemm/loop path runs.
   y = c's row or column: zeroed first, then accumulated with beta 1, so an
   uninitialised output holding NaNs is never multiplied by 0. */
static int try_gemv(int dtype, int64_t m, int64_t n, int64_t k,
                    const char *a, int64_t ars, int64_t acs,
                    const char *b, int64_t brs, int64_t bcs,
                    char *c, int64_t crs, double beta) {
    const char *mat, *vec;
    char tr;
    int64_t rows, cols, ld, incx, incy, len, i;
    const size_t es = dtype == CAD_F64 ? 8 : 4;
    if (!p_dgemv || !p_sgemv || k < 2 || (m != 1 && n != 1)) return -1;
    if (n == 1) {                 /* y (m) = A (m x k) x (k): x has stride brs, y crs */
        mat = a; vec = b; incx = brs; incy = m > 1 ? crs : 1; len = m;
        if (acs == 1 && (m == 1 || ars >= k)) { tr = 'T'; rows = k; cols = m; ld = m > 1 ? ars : k; }
        else if (ars == 1 && acs >= m) { tr = 'N'; rows = m; cols = k; ld = acs; }
        else return -1;
    } else {                      /* y (n) = x (k) B (k x n): x has stride acs, y is c's row */
        mat = b; vec = a; incx = acs; incy = 1; len = n;
        if (bcs == 1 && brs >= n) { tr = 'N'; rows = n; cols = k; ld = brs; }
        else if (brs == 1 && bcs >= k) { tr = 'T'; rows = k; cols = n; ld = bcs; }
        else return -1;
    }
    if (incx < 1 || incy < 1 || ld < 1 || rows > INT_MAX || cols > INT_MAX || ld > INT_MAX ||
        incx > INT_MAX || incy > INT_MAX)
        return -1;
    if (beta == 0) {
        if (incy == 1) memset(c, 0, (size_t)len * es);
        else for (i = 0; i < len; i++) memset(c + i * incy * es, 0, es);
    } else if (beta != 1) {
        if (dtype == CAD_F64) for (i = 0; i < len; i++) ((double *)c)[i * incy] *= beta;
        else for (i = 0; i < len; i++) ((float *)c)[i * incy] *= (float)beta;
    }
    {
        const int nt = cad_num_threads > 0 ? cad_num_threads : cad_get_max_threads();
        if (p_threads_local && (double)m * (double)n * (double)k >= CAD_BLAS_PAR_MIN && nt > 1 &&
                len >= 64 * nt) {
            /* NOTE [ Matrix-vector products over the pool ]: in units of cad's pool, one
             * BLAS thread each, as large GEMMs are (gemm_task): OpenBLAS's own threads,
             * once woken, spin ~0.1 s after the call while cad's kernels (and numpy's
             * BLAS) want the cores, and its static split waits for a descheduled thread.
             * Units by gemv_task; fixed ranges merged in unit order: the same bits on
             * every run, contended or not (a job after a straggler runs the same units
             * on the caller: NOTE [ Stragglers ]; calling BLAS unsplit then, as this
             * did, gave a column-major product other bits, and its test failed once in
             * a few runs on a busy host) */
            gemv_job j;
            const int U = cad_pool_units(nt);
            j.dtype = dtype; j.tr = tr; j.rows = rows; j.cols = cols; j.ld = ld; j.incx = incx;
            j.incy = incy; j.len = len; j.mat = mat; j.vec = vec; j.c = c; j.part = NULL;
            if (tr == 'N') {
                j.part = (char *)calloc((size_t)U * (size_t)len, es);
                if (!j.part) return CAD_ENOMEM;
            }
            cad_parallel(gemv_task, &j, nt);
            if (tr == 'N') {
                int u;
                if (dtype == CAD_F64) {
                    for (u = 0; u < U; u++)
                        for (i = 0; i < len; i++) ((double *)c)[i * incy] += ((double *)j.part)[u * len + i];
                } else {
                    for (u = 0; u < U; u++)
                        for (i = 0; i < len; i++) ((float *)c)[i * incy] += ((float *)j.part)[u * len + i];
                }
                free(j.part);
            }
            return CAD_OK;
        }
    }
    {
        int R = (int)rows, Cn = (int)cols, LD = (int)ld, IX = (int)incx, IY = (int)incy;
        int prev = blas_threads((double)m * (double)n * (double)k);
        if (dtype == CAD_F64) {
            double al = 1.0, be = 1.0;
            p_dgemv(&tr, &R, &Cn, &al, (double *)mat, &LD, (double *)vec, &IX, &be, (double *)c, &IY);
        } else {
            float al = 1.0f, be = 1.0f;
            p_sgemv(&tr, &R, &Cn, &al, (float *)mat, &LD, (float *)vec, &IX, &be, (float *)c, &IY);
        }
        if (prev >= 0) p_threads_local(prev);
    }
    return CAD_OK;
}

#define SMALL_BT 1024   /* elements: NOTE [ Small transposed right operand ] */

int cad_gemm(int dtype, int64_t m, int64_t n, int64_t k,
             const char *a, int64_t ars, int64_t acs,
             const char *b, int64_t brs, int64_t bcs,
             char *c, int64_t crs, double beta) {
    double bt_buf[SMALL_BT];
    char ta, tb;
    int64_t lda, ldb;
    int M, N, K, LDA, LDB, LDC;
    if (m == 0 || n == 0) return CAD_OK;
    if (k == 0) {
        int64_t i;
        if (beta == 0) {
            for (i = 0; i < m; i++) memset(c + i * crs * (dtype == CAD_F64 ? 8 : 4), 0,
                                           (size_t)n * (dtype == CAD_F64 ? 8 : 4));
        }
        return CAD_OK;
    }
    if (cad_have_blas() && try_gemv(dtype, m, n, k, a, ars, acs, b, brs, bcs, c, crs, beta) == CAD_OK)
        return CAD_OK;
    /* C^T (n x m, col-major, ldc = crs) = B^T (n x k) A^T (k x m) */
    if (!cad_have_blas() || blas_desc(k, n, brs, bcs, &tb, &ldb) || blas_desc(m, k, ars, acs, &ta, &lda)) {
        if (dtype == CAD_F64) LOOP_GEMM(double) else LOOP_GEMM(float)
        return CAD_OK;
    }
    if (m > INT_MAX || n > INT_MAX || k > INT_MAX || lda > INT_MAX || ldb > INT_MAX || crs > INT_MAX)
        return CAD_EBLAS;
    if (tb == 'T' && k * n <= SMALL_BT && m >= 4 * (k > n ? k : n)) {
        /* NOTE [ Small transposed right operand ]: a small B held by columns (a
         * transposed view: a linear layer's `x @ W.T`, (1000, 10) @ (10, 10)^T) under
         * many rows of A: OpenBLAS's small kernel for it ran 1.6x its time on the same
         * B copied into rows (11.7 against 7.4 us; a batch of 25 such products: 304 ->
         * 168 us); square products read the same either way, so only a B of at most
         * SMALL_BT elements under at least 4x as many rows is copied */
        int64_t l, jj;
        if (dtype == CAD_F64) {
            double *t = (double *)bt_buf;
            for (l = 0; l < k; l++)
                for (jj = 0; jj < n; jj++) t[l * n + jj] = ((const double *)b)[l * brs + jj * bcs];
        } else {
            float *t = (float *)bt_buf;
            for (l = 0; l < k; l++)
                for (jj = 0; jj < n; jj++) t[l * n + jj] = ((const float *)b)[l * brs + jj * bcs];
        }
        b = (const char *)bt_buf;
        tb = 'N';
        ldb = n;
    }
    M = (int)n; N = (int)m; K = (int)k; LDA = (int)ldb; LDB = (int)lda;
    LDC = (int)(crs < n ? n : crs);
    {
        const double work = (double)m * (double)n * (double)k;
        const int nt = cad_num_threads > 0 ? cad_num_threads : cad_get_max_threads();
        if (p_threads_local && work >= CAD_BLAS_PAR_MIN && nt > 1 && m >= 8 * nt) {
            /* rows of C in units of cad's pool, one BLAS thread each (NOTE [ Pool units ]):
               a descheduled thread delays its unit only, where OpenBLAS's static split
               would wait for it */
            gemm_job j;
            j.dtype = dtype; j.m = m; j.M = M; j.K = K; j.a = a; j.ars = ars; j.b = b; j.LDA = LDA;
            j.LDB = LDB; j.c = c; j.crs = crs; j.LDC = LDC; j.ta = ta; j.tb = tb; j.beta = beta;
            cad_parallel(gemm_task, &j, nt);
            return CAD_OK;
        }
    }
    {
        int prev = blas_threads((double)m * (double)n * (double)k);
        if (dtype == CAD_F64) {
            double al = 1.0, be = beta;
            p_dgemm(&tb, &ta, &M, &N, &K, &al, (double *)b, &LDA, (double *)a, &LDB, &be, (double *)c, &LDC);
        } else {
            float al = 1.0f, be = (float)beta;
            p_sgemm(&tb, &ta, &M, &N, &K, &al, (float *)b, &LDA, (float *)a, &LDB, &be, (float *)c, &LDC);
        }
        if (prev >= 0) p_threads_local(prev);
    }
    return CAD_OK;
}

int cad_matmul(const cad_mm *mm) {
    return CAD_BE->matmul(mm);
}

/* Batched products (vmap's batched matmul, per-example gradients): when b is
   shared by the whole batch (its batch strides all 0) and the batch of a and of
   c stack their rows evenly, the batch is one GEMM with nb*m rows; otherwise
   products too small for a BLAS call to pay off run the loop in place. */
#define CAD_MM_SMALL 4096.0

static int rows_stack(const cad_mm *mm, const int64_t *bst, int64_t rs) {
    int64_t want = mm->m * rs;
    int d;
    for (d = mm->bnd - 1; d >= 0; d--) {
        if (mm->bshape[d] != 1 && bst[d] != want) return 0;
        want *= mm->bshape[d];
    }
    return 1;
}

/* every product of a batch of small ones, in place (no BLAS call per product);
   cloned for AVX-512/AVX2 where the build has them (the rows vectorize) */
#if defined(CAD_CLONES512)
#define CAD_MMCLONE __attribute__((target_clones("avx512f", "avx2", "default")))
#elif defined(CAD_CLONES)
#define CAD_MMCLONE __attribute__((target_clones("avx2", "default")))
#else
#define CAD_MMCLONE
#endif

#define SMALL_BATCH(T)                                                         \
    static CAD_MMCLONE void small_batch_##T(const cad_mm *mm, int64_t nb) {    \
        int64_t idx[CAD_MAXDIM], i, r, j, l;                                   \
        const int64_t m = mm->m, n = mm->n, k = mm->k, ars = mm->ars, acs = mm->acs, \
                      brs = mm->brs, bcs = mm->bcs, crs = mm->crs;             \
        const T beta = (T)mm->beta;                                            \
        int d;                                                                 \
        for (d = 0; d < mm->bnd; d++) idx[d] = 0;                              \
        for (i = 0; i < nb; i++) {                                             \
            int64_t ao = 0, bo = 0, co = 0;                                    \
            for (d = 0; d < mm->bnd; d++) {                                    \
                ao += idx[d] * mm->abst[d];                                    \
                bo += idx[d] * mm->bbst[d];                                    \
                co += idx[d] * mm->obst[d];                                    \
            }                                                                  \
            {                                                                  \
                const T *A = (const T *)mm->a + ao, *B = (const T *)mm->b + bo; \
                T *C = (T *)mm->c + co;                                        \
                if (n == 1 && ars == 1 && crs == 1 && m >= 8) {                \
                    /* the same sums with A held by columns (vmap of W.T @ x): the \
                       rows side by side, each element's terms added in the same \
                       order, the loop over rows vectorized */                  \
                    T *__restrict c1 = C;                                      \
                    int64_t l0 = 0;                                            \
                    if (beta == 0 && k > 0) {                                  \
                        const T b0 = B[0];                                     \
                        for (r = 0; r < m; r++) c1[r] = A[r] * b0;             \
                        l0 = 1;                                                \
                    } else if (beta == 0) {                                    \
                        for (r = 0; r < m; r++) c1[r] = 0;                     \
                    } else if (beta != 1) {                                    \
                        for (r = 0; r < m; r++) c1[r] *= beta;                 \
                    }                                                          \
                    for (l = l0; l < k; l++) {                                 \
                        const T bl = B[l * brs];                               \
                        const T *__restrict al = A + l * acs;                  \
                        for (r = 0; r < m; r++) c1[r] += al[r] * bl;           \
                    }                                                          \
                } else if (n == 1) {   /* a matrix-vector product (vmap of A @ x): the \
                    terms of each element summed in a register, in the order   \
                    the general loop adds them (its inner loop of one element  \
                    cost ~5 ns per term: 256 products (16, 32) @ (32,) 335 us) */ \
                    for (r = 0; r < m; r++) {                                  \
                        T acc;                                                 \
                        int64_t l0 = 0;                                        \
                        if (beta == 0) {                                       \
                            acc = k > 0 ? A[r * ars] * B[0] : (T)0;            \
                            l0 = 1;                                            \
                        } else {                                               \
                            acc = beta != 1 ? C[r * crs] * beta : C[r * crs];  \
                        }                                                      \
                        for (l = l0; l < k; l++) acc += A[r * ars + l * acs] * B[l * brs]; \
                        C[r * crs] = acc;                                      \
                    }                                                          \
                } else                                                         \
                for (r = 0; r < m; r++) {                                      \
                    T *__restrict ci = C + r * crs;                            \
                    int64_t l0 = 0;                                            \
                    if (beta == 0 && k > 0) {   /* the first term assigns */    \
                        const T av = A[r * ars];                               \
                        if (bcs == 1) { for (j = 0; j < n; j++) ci[j] = av * B[j]; } \
                        else { for (j = 0; j < n; j++) ci[j] = av * B[j * bcs]; } \
                        l0 = 1;                                                \
                    }                                                          \
                    else if (beta == 0) { for (j = 0; j < n; j++) ci[j] = 0; } \
                    else if (beta != 1) { for (j = 0; j < n; j++) ci[j] *= beta; } \
                    for (l = l0; l < k; l++) {                                 \
                        const T av = A[r * ars + l * acs];                     \
                        const T *__restrict bl = B + l * brs;                  \
                        if (bcs == 1) { for (j = 0; j < n; j++) ci[j] += av * bl[j]; } \
                        else { for (j = 0; j < n; j++) ci[j] += av * bl[j * bcs]; } \
                    }                                                          \
                }                                                              \
            }                                                                  \
            for (d = mm->bnd - 1; d >= 0; d--) {                               \
                if (++idx[d] < mm->bshape[d]) break;                           \
                idx[d] = 0;                                                    \
            }                                                                  \
        }                                                                      \
    }
SMALL_BATCH(double)
SMALL_BATCH(float)

/* NOTE [ Batches over the pool ]: a batch of products each too small to split
 * (under CAD_BLAS_PAR_MIN multiply-adds, one BLAS thread) whose whole batch holds at
 * least CAD_BATCH_PAR_MIN multiply-adds runs its products in units of cad's pool,
 * each unit a fixed range of the batch: GMM's (25, 1000, 10) @ (25, 10, 10) and its
 * two vjp products (2.5M multiply-adds, ~170 us on one thread) ran one product after
 * another while the other core idled.  Each product is the same cad_gemm call on
 * whichever thread, so the result has the same bits. */
#define CAD_BATCH_PAR_MIN (double)(1 << 18)
typedef struct {
    const cad_mm *mm;
    int64_t nb;
    int es;
    int st[64];   /* a unit's status (cad_pool_units is at most POOL_MAX) */
} batch_job;

static int batch_range(const cad_mm *mm, int64_t i0, int64_t i1, int es) {
    int64_t idx[CAD_MAXDIM], i, r = i0;
    int d, st;
    for (d = mm->bnd - 1; d >= 0; d--) {   /* i0 as a batch index */
        idx[d] = mm->bshape[d] > 0 ? r % mm->bshape[d] : 0;
        r = mm->bshape[d] > 0 ? r / mm->bshape[d] : 0;
    }
    for (i = i0; i < i1; i++) {
        int64_t ao = 0, bo = 0, co = 0;
        for (d = 0; d < mm->bnd; d++) {
            ao += idx[d] * mm->abst[d];
            bo += idx[d] * mm->bbst[d];
            co += idx[d] * mm->obst[d];
        }
        st = cad_gemm(mm->dtype, mm->m, mm->n, mm->k, mm->a + ao * es, mm->ars, mm->acs,
                      mm->b + bo * es, mm->brs, mm->bcs, mm->c + co * es, mm->crs, mm->beta);
        if (st) return st;
        for (d = mm->bnd - 1; d >= 0; d--) {
            if (++idx[d] < mm->bshape[d]) break;
            idx[d] = 0;
        }
    }
    return CAD_OK;
}

static void batch_task(void *arg, int u, int U) {
    batch_job *j = (batch_job *)arg;
    j->st[u] = batch_range(j->mm, j->nb * u / U, j->nb * (u + 1) / U, j->es);
}

int cad_matmul_cpu(const cad_mm *mm) {
    int64_t nb = 1;
    int d, es = mm->dtype == CAD_F64 ? 8 : 4, shared = 1, small;
    for (d = 0; d < mm->bnd; d++) {
        nb *= mm->bshape[d];
        if (mm->bshape[d] != 1 && mm->bbst[d] != 0) shared = 0;
    }
    if (nb > 1 && shared && rows_stack(mm, mm->abst, mm->ars)
            && rows_stack(mm, mm->obst, mm->crs))
        return cad_gemm(mm->dtype, nb * mm->m, mm->n, mm->k, mm->a, mm->ars, mm->acs, mm->b,
                        mm->brs, mm->bcs, mm->c, mm->crs, mm->beta);
    small = nb > 1 && (double)mm->m * (double)mm->n * (double)mm->k <= CAD_MM_SMALL;
    if (small) {
        if (mm->dtype == CAD_F64) small_batch_double(mm, nb); else small_batch_float(mm, nb);
        return CAD_OK;
    }
    {
        const double work = (double)mm->m * (double)mm->n * (double)mm->k;
        const int nt = cad_num_threads > 0 ? cad_num_threads : cad_get_max_threads();
        if (nb >= 2 && nt > 1 && work < CAD_BLAS_PAR_MIN && work * (double)nb >= CAD_BATCH_PAR_MIN
                && cad_pool_units(nt) <= 64) {   /* NOTE [ Batches over the pool ] */
            batch_job j;
            int u, U = cad_pool_units(nt);
            j.mm = mm; j.nb = nb; j.es = es;
            for (u = 0; u < U; u++) j.st[u] = CAD_OK;
            cad_parallel(batch_task, &j, nt);
            for (u = 0; u < U; u++)
                if (j.st[u]) return j.st[u];
            return CAD_OK;
        }
    }
    return batch_range(mm, 0, nb, es);
}

/* ---- LU solves through scipy's LAPACK (cad.linalg, NOTE [ Linear algebra ]):
 * getrs on column blocks of the right-hand sides, split over cad's pool with one
 * BLAS thread each (NOTE [ Pool units ]), so an inverse from the factors
 * (n right-hand sides) uses every core and no thread waits for a busy one. */
typedef void (*dgetrs_t)(char *, int *, int *, double *, int *, int *, double *, int *, int *);
typedef void (*sgetrs_t)(char *, int *, int *, float *, int *, int *, float *, int *, int *);
static dgetrs_t p_dgetrs = NULL;
static sgetrs_t p_sgetrs = NULL;

typedef void (*dtrxm_t)(char *, char *, char *, char *, int *, int *, double *, double *, int *,
                        double *, int *);
typedef void (*strxm_t)(char *, char *, char *, char *, int *, int *, float *, float *, int *,
                        float *, int *);
static dtrxm_t p_dtrsm = NULL, p_dtrmm = NULL;
static strxm_t p_strsm = NULL, p_strmm = NULL;

void cad_set_lapack(void *dgetrs, void *sgetrs, void *dtrsm, void *strsm, void *dtrmm, void *strmm) {
    p_dgetrs = (dgetrs_t)dgetrs;
    p_sgetrs = (sgetrs_t)sgetrs;
    p_dtrsm = (dtrxm_t)dtrsm;
    p_strsm = (strxm_t)strsm;
    p_dtrmm = (dtrxm_t)dtrmm;
    p_strmm = (strxm_t)strmm;
}

typedef struct {
    int dtype, n, ldb;
    int64_t nrhs;
    char trans;
    char *lu, *b;
    int *piv;
    int info;
} getrs_job;

static void getrs_task(void *arg, int u, int U) {
    getrs_job *j = (getrs_job *)arg;
    const int64_t c0 = j->nrhs * u / U, c1 = j->nrhs * (u + 1) / U;
    const size_t es = j->dtype == CAD_F64 ? 8 : 4;
    int n = j->n, lda = j->n, ldb = j->ldb, nr = (int)(c1 - c0), info = 0, prev = -1;
    char tr = j->trans;
    if (nr <= 0) return;
    if (p_threads_local) prev = p_threads_local(1);
    if (j->dtype == CAD_F64)
        p_dgetrs(&tr, &n, &nr, (double *)j->lu, &lda, j->piv, (double *)(j->b + (size_t)c0 * ldb * es), &ldb, &info);
    else
        p_sgetrs(&tr, &n, &nr, (float *)j->lu, &lda, j->piv, (float *)(j->b + (size_t)c0 * ldb * es), &ldb, &info);
    if (prev >= 0) p_threads_local(prev);
    if (info) j->info = info;
}

/* B := op(A)^-1 B for A = P L U (lu: n x n column-major, piv: LAPACK's 1-based pivots),
 * B n x nrhs column-major; returns CAD_OK, CAD_EBLAS (sizes), or CAD_EINTERNAL */
int cad_getrs(int dtype, int trans, int64_t n, int64_t nrhs, char *lu, int *piv, char *b) {
    getrs_job j;
    int nt = cad_num_threads > 0 ? cad_num_threads : cad_get_max_threads();
    if (!p_dgetrs || !p_sgetrs) return CAD_EINTERNAL;
    if (n > INT_MAX || nrhs > INT_MAX) return CAD_EBLAS;
    if (n == 0 || nrhs == 0) return CAD_OK;
    j.dtype = dtype; j.n = (int)n; j.ldb = (int)n; j.nrhs = nrhs; j.trans = trans ? 'T' : 'N';
    j.lu = lu; j.b = b; j.piv = piv; j.info = 0;
    if (nt > 1 && nrhs >= 2 * nt && (double)n * (double)n * (double)nrhs >= CAD_BLAS_PAR_MIN * 8)
        cad_parallel(getrs_task, &j, nt);
    else
        getrs_task(&j, 0, 1);
    return j.info ? CAD_EINTERNAL : CAD_OK;
}

/* ---- NOTE [ Parallel SPD inverse ]
 * alpha A^-1 from A's Cholesky factor L (A = L L^T; slogdet's derivative at a symmetric
 * positive definite matrix, NOTE [ Symmetric factors ] in cad/linalg.py), in place of
 * LAPACK's potri, whose triangular inverse runs partly in level-2 BLAS on one thread
 * (W10, n = 512: 3.3-3.9 ms; OpenBLAS's two threads 1.9 ms, but a second BLAS thread
 * waiting for a busy core stalls the whole call, issue 14).  Almost all of it is GEMM
 * and trmm (OpenBLAS's trsm ran at 14 GFMA/s here, its trmm at 27-33, gemm at 27-37),
 * in column blocks of NB that are independent within a step, taken from cad's pool one at a time (NOTE
 * [ Pool units ]), the largest first:
 *   0. D_i = L_ii^-1 for each diagonal block (a small trsm on the identity), stored in
 *      M's diagonal blocks (their upper triangles exact zeros);
 *   1. M = L^-1 by block forward substitution, column block j at a time:
 *      M_ij = -D_i (L[i, j..i) M[j..i, j]) for i > j (two GEMMs);
 *   2. A^-1 = M^T M: column block j's lower part (rows j..) is M[j.., j..]^T M[j.., j]
 *      (trmm on a copy of M's block), its rows of the upper part the transpose (the
 *      diagonal block from its lower triangle, so the result is exactly symmetric),
 *      copied in 8 x 8 tiles (element by element, the stride of n = 512 doubles made
 *      every write of a column miss: 0.6 ms of 2.5).
 * n^3/3 multiply-adds in all (as potri) plus O(n^2 NB); n = 512: 2.5 ms on one thread,
 * 1.6 on two (potri 3.3).  Which thread runs a block
 * changes nothing: the result is the same at any thread count.  l: column-major n x n,
 * L in its lower triangle (the rest is not read); out and work: n x n, out written
 * whole (symmetric, so either order), work scratch.  Returns CAD_OK, CAD_EBLAS (sizes)
 * or CAD_EINTERNAL (no BLAS). */
#define SPD_NB 64

typedef struct {
    int dtype, n, nblk;
    double alpha;
    const char *l;
    char *out, *work;
} spdinv_job;

/* the U units take blocks u, u + U, ...: unit 0 the first (largest) */
#define SPD_STEP_BODY(T_, TRSM, GEMM, TRMM)                                                   \
    {                                                                                         \
        T_ *L = (T_ *)(uintptr_t)j->l, *M = (T_ *)j->work, *O = (T_ *)j->out;                 \
        T_ one = 1, mone = -1, zero = 0, al = (T_)j->alpha, T[SPD_NB * SPD_NB];               \
        for (b = u; b < K; b += U) {                                                          \
            int c0 = b * SPD_NB, w = n - c0 < SPD_NB ? n - c0 : SPD_NB;                       \
            if (step == 0) {                                                                  \
                T_ *D = M + c0 + (size_t)c0 * n;                                              \
                for (c = 0; c < w; c++) {                                                     \
                    memset(D + (size_t)c * n, 0, (size_t)w * sizeof(T_));                     \
                    D[(size_t)c * n + c] = 1;                                                 \
                }                                                                             \
                TRSM(&cl, &cl, &cn, &cn, &w, &w, &one, L + c0 + (size_t)c0 * n, &n, D, &n);   \
            } else if (step == 1) {                                                           \
                for (i = b + 1; i < K; i++) {                                                 \
                    int r0 = i * SPD_NB, wi = n - r0 < SPD_NB ? n - r0 : SPD_NB, kk = r0 - c0; \
                    GEMM(&cn, &cn, &wi, &w, &kk, &one, L + r0 + (size_t)c0 * n, &n,           \
                         M + c0 + (size_t)c0 * n, &n, &zero, T, &wi);                         \
                    GEMM(&cn, &cn, &wi, &w, &wi, &mone, M + r0 + (size_t)r0 * n, &n, T, &wi,  \
                         &zero, M + r0 + (size_t)c0 * n, &n);                                 \
                }                                                                             \
            } else {                                                                          \
                T_ *Ob = O + c0 + (size_t)c0 * n;                                             \
                int m = n - c0;                                                               \
                for (c = 0; c < w; c++)                                                       \
                    memcpy(Ob + (size_t)c * n, M + c0 + (size_t)(c0 + c) * n,                 \
                           (size_t)m * sizeof(T_));                                           \
                TRMM(&cl, &cl, &ct, &cn, &m, &w, &al, M + c0 + (size_t)c0 * n, &n, Ob, &n);     \
                for (t0 = 0; t0 < m; t0 += 8)    /* the upper part of rows c0..c0+w */        \
                    for (i = 0; i < w && i <= t0; i += 8) {                                   \
                        if (i + 8 <= t0 && i + 8 <= w && t0 + 8 <= m) {   /* an 8 x 8 tile */ \
                            T_ tl[64];                                                        \
                            for (c = 0; c < 8; c++)                                           \
                                for (r = 0; r < 8; r++)                                       \
                                    tl[r * 8 + c] = Ob[t0 + r + (size_t)(i + c) * n];         \
                            for (r = 0; r < 8; r++)                                           \
                                for (c = 0; c < 8; c++)                                       \
                                    Ob[i + c + (size_t)(t0 + r) * n] = tl[r * 8 + c];         \
                        } else                                                                \
                            for (c = i; c < i + 8 && c < w; c++)                              \
                                for (r = t0 > c ? t0 : c + 1; r < t0 + 8 && r < m; r++)       \
                                    Ob[c + (size_t)r * n] = Ob[r + (size_t)c * n];            \
                    }                                                                         \
            }                                                                                 \
        }                                                                                     \
    }

static void spdinv_run(spdinv_job *j, int step, int u, int U) {
    int n = j->n, K = j->nblk, b, i, c, r, t0, prev = -1;
    char cl = 'L', cn = 'N', ct = 'T';
    if (p_threads_local) prev = p_threads_local(1);
    if (j->dtype == CAD_F64)
        SPD_STEP_BODY(double, p_dtrsm, p_dgemm, p_dtrmm)
    else
        SPD_STEP_BODY(float, p_strsm, p_sgemm, p_strmm)
    if (prev >= 0) p_threads_local(prev);
}

static void spdinv_task0(void *arg, int u, int U) { spdinv_run((spdinv_job *)arg, 0, u, U); }
static void spdinv_task1(void *arg, int u, int U) { spdinv_run((spdinv_job *)arg, 1, u, U); }
static void spdinv_task2(void *arg, int u, int U) { spdinv_run((spdinv_job *)arg, 2, u, U); }

int cad_spd_inv(int dtype, int64_t n, const char *l, char *out, char *work, double alpha) {
    spdinv_job j;
    int nt = cad_num_threads > 0 ? cad_num_threads : cad_get_max_threads();
    if (!p_dtrsm || !p_strsm || !p_dtrmm || !p_strmm || !p_dgemm || !p_sgemm) return CAD_EINTERNAL;
    if (n > INT_MAX / 2) return CAD_EBLAS;
    if (n == 0) return CAD_OK;
    j.dtype = dtype; j.n = (int)n; j.nblk = (int)((n + SPD_NB - 1) / SPD_NB);
    j.alpha = alpha; j.l = l; j.out = out; j.work = work;
    if (nt > 1 && j.nblk > 1 && (double)n * (double)n * (double)n / 3 >= CAD_BLAS_PAR_MIN) {
        cad_parallel(spdinv_task0, &j, nt);
        cad_parallel(spdinv_task1, &j, nt);
        cad_parallel(spdinv_task2, &j, nt);
    } else {
        spdinv_run(&j, 0, 0, 1);
        spdinv_run(&j, 1, 0, 1);
        spdinv_run(&j, 2, 0, 1);
    }
    return CAD_OK;
}

/* ---- Is a batch of (n, n) row-major matrices exactly symmetric?  (cad.linalg's
 * factorizations take Cholesky's path for a symmetric positive definite matrix, NOTE
 * [ Symmetric factors ] in cad/linalg.py.)  Compared in 32 x 32 tiles, so both reads
 * stay in cache, stopping at the first difference; a NaN is never equal.  0.05 ms for
 * n = 512 where numpy's array_equal(a, a.T) takes 0.6. */
#define CAD_SYM_BODY(T_)                                                                    \
    for (q = 0; q < nb; q++) {                                                              \
        const T_ *A = (const T_ *)a + q * n * n;                                            \
        for (i0 = 0; i0 < n; i0 += 32)                                                      \
            for (j0 = 0; j0 <= i0; j0 += 32) {                                              \
                const int64_t i1 = i0 + 32 < n ? i0 + 32 : n;                               \
                for (i = i0; i < i1; i++) {                                                 \
                    const int64_t j1 = j0 + 32 < i ? j0 + 32 : i;                           \
                    for (j = j0; j < j1; j++)                                               \
                        if (!(A[i * n + j] == A[j * n + i])) return 0;                      \
                }                                                                           \
            }                                                                               \
    }

int cad_is_symmetric(int dtype, int64_t nb, int64_t n, const char *a) {
    int64_t q, i0, j0, i, j;
    if (dtype == CAD_F64) {
        CAD_SYM_BODY(double)
    } else {
        CAD_SYM_BODY(float)
    }
    return 1;
}

/* a := the symmetric matrix whose upper (upper != 0) or lower triangle a holds, for a
 * batch of (n, n) row-major matrices, in 32 x 32 tiles (potri leaves one triangle of
 * the inverse; numpy's tril(x) + tril(x, -1).T took 0.8 ms at n = 512) */
#define CAD_SYMZ_BODY(T_)                                                                   \
    for (q = 0; q < nb; q++) {                                                              \
        T_ *A = (T_ *)a + q * n * n;                                                        \
        for (i0 = 0; i0 < n; i0 += 32)                                                      \
            for (j0 = 0; j0 <= i0; j0 += 32) {                                              \
                const int64_t i1 = i0 + 32 < n ? i0 + 32 : n;                               \
                for (i = i0; i < i1; i++) {                                                 \
                    const int64_t j1 = j0 + 32 < i ? j0 + 32 : i;                           \
                    for (j = j0; j < j1; j++) {                                             \
                        if (upper) A[i * n + j] = A[j * n + i];                             \
                        else A[j * n + i] = A[i * n + j];                                   \
                    }                                                                       \
                }                                                                           \
            }                                                                               \
    }

void cad_symmetrize(int dtype, int64_t nb, int64_t n, char *a, int upper) {
    int64_t q, i0, j0, i, j;
    if (dtype == CAD_F64) {
        CAD_SYMZ_BODY(double)
    } else {
        CAD_SYMZ_BODY(float)
    }
}

/* ---- NOTE [ Small triangular solves ]: op(T) X = B for a batch of small triangular
 * matrices (cad.linalg.solve_triangular, and the derivatives of cholesky and of the
 * solve itself), by substitution in C: a (nb, n, n) and b (nb, n, k) row-major, b
 * overwritten with X; a_bs is a's batch stride in elements (0: one matrix for every
 * right-hand side block).  Only T's triangle is read.  numpy's batched solve took
 * ~25 us per call on (10, 5, 5) (an LU per matrix, for a triangle); this takes ~1.
 * Rows of X are finished in order (forward or backward substitution), each an axpy
 * over the k columns.  Returns 0, or 1 + the batch index of a zero on a diagonal. */
#define CAD_TRSM_BODY(T_)                                                                   \
    for (q = 0; q < nb; q++) {                                                              \
        const T_ *A = (const T_ *)a + q * a_bs;                                             \
        T_ *B = (T_ *)b + q * n * k;                                                        \
        for (s = 0; s < n; s++) {                                                           \
            const int64_t i = low ? s : n - 1 - s;                                          \
            T_ *Bi = B + i * k, d = A[i * n + i];                                           \
            if (d == 0) return 1 + q;                                                       \
            for (j = low ? 0 : i + 1; j < (low ? i : n); j++) {                             \
                const T_ m = trans ? A[j * n + i] : A[i * n + j];                           \
                const T_ *Bj = B + j * k;                                                   \
                if (m != 0)                                                                 \
                    for (c = 0; c < k; c++) Bi[c] -= m * Bj[c];                             \
            }                                                                               \
            for (c = 0; c < k; c++) Bi[c] /= d;                                             \
        }                                                                                   \
    }

int64_t cad_trsm_small(int dtype, int lower, int trans, int64_t nb, int64_t n, int64_t k,
                       const char *a, int64_t a_bs, char *b) {
    const int low = lower ^ trans;   /* op(T) is lower triangular */
    int64_t q, s, j, c;
    if (dtype == CAD_F64) {
        CAD_TRSM_BODY(double)
    } else {
        CAD_TRSM_BODY(float)
    }
    return 0;
}
