/* cad CPU kernels: tape structures, the strided iterator, hand-written kernels.
 *
 * NOTE [ Tape layout ]
 * A tape is flat C arrays (array-of-structs for locality):
 *   bufs[h]   one 32-byte slot per value on the tape (handle h; NOTE [ Value slot ]):
 *             its data pointer and strides (meta), its gradient buffer during a
 *             sweep; the Python objects that keep it alive (owner: the ndarray; leaf:
 *             the leaf Tensor whose .grad receives the gradient) in the meta pool.
 *             0-d float64 values are "inline": value and gradient live in sval/sgrad
 *             (the same words), so a scalar program never touches an ndarray.
 *   recs[i]   one 16-byte record per op (NOTE [ Record width ]): op code, output
 *             handle, args[arg .. arg+nargs) input handles (-1: a constant the
 *             derivative does not read), and aux[aux ..] op parameters (axes, view
 *             strides, flags).
 *   meta      int64 pool: for each buf that has them, owner, leaf and version, then
 *             shape[ndim] and strides[ndim] (elements); b->meta points at the shape.
 * Records are appended in execution order, so the reverse sweep is a plain loop
 * from the last record down; no topological sort.  Handles only grow, so a record's
 * output handle is larger than its inputs'.
 *
 * NOTE [ Status codes ]
 * Kernels that can fail return an int status (0 = ok); the Cython layer turns it
 * into an exception after the GIL is re-acquired.  Nothing in here prints or
 * touches Python objects.
 */
#ifndef CAD_CPU_H
#define CAD_CPU_H
#include <stdint.h>
#include <stddef.h>
#include "cad_kp.h"

#define CAD_MAXDIM 32
#define CAD_MAXOP 8

#ifndef CAD_MAX2
/* max/min as numpy's maximum/minimum: a NaN on either side propagates, a tie gives
 * b.  Written `a NaN ? a : (a > b ? a : b)`, gcc makes the inner select a maxsd
 * (vmaxpd in a vector loop) and the NaN test a blend or a branch never taken on
 * NaN-free data; the form `(a > b || a != a) ? a : b` branched on the compare and
 * mispredicted about one element in two on random data (a max reduction over
 * (25, 1000, 10): 832 -> 99 us).  One text for the CPU: the generated rows
 * (_gen_ops.h, which includes this header) and kernels.c use it; the CUDA kernels
 * (kernels.cuh, cexpr.CUDA_MACROS) keep the `||` form, with the same results. */
#define CAD_MAX2(a, b) ((a) != (a) ? (a) : ((a) > (b) ? (a) : (b)))
#define CAD_MIN2(a, b) ((a) != (a) ? (a) : ((a) < (b) ? (a) : (b)))
#endif

typedef int64_t cad_hid;

enum { CAD_F64 = 0, CAD_F32 = 1, CAD_I64 = 2, CAD_BOOL = 3 };

enum {
    CAD_OK = 0,
    CAD_ENOMEM = 1,    /* allocation failed */
    CAD_EDEAD = 2,     /* gradient reached a value of a consumed tape */
    CAD_EBLAS = 3,     /* matrix too large for 32-bit BLAS ints */
    CAD_EINTERNAL = 4, /* unknown op code or malformed record */
    CAD_EINDEX = 5,    /* an index (a label) out of range */
    CAD_ECUDA = 6,     /* a CUDA driver or cuBLAS error (message: cad_cu_error()) */
    CAD_EDEVMEM = 7,   /* out of device memory */
    CAD_ECUSTOM = 8    /* a custom primitive's Python rule raised (the engine re-raises it) */
};

/* buf flags */
#define BUF_INLINE 1u  /* 0-d float64: value in sval, gradient in sgrad */
#define BUF_RG 2u      /* gradients flow into it */
#define BUF_LEAF 4u    /* a leaf tensor (leaf != NULL) */
#define BUF_DEAD 8u    /* value from a consumed tape: a gradient reaching it is an error */
#define BUF_KEEP 16u   /* the caller reads its gradient after the sweep */
#define BUF_INPUT 32u  /* an input slot of a recorded tape (cad.record) */
#define BUF_ARENA 64u  /* a replayed value living in the replay's arena */
#define BUF_CUDA 128u  /* data and gradient are device memory (NOTE [ CUDA backend ]) */
/* a non-leaf constant's `version`: an index buffer of a gather whose positions are
 * whole rows of the gathered value laid out, pos[i w + j] = pos[i w] + j for w its last
 * dim (t[ix] of a value of 2 or more dims: NOTE [ Row gathers ] in kernels.c) */
#define CAD_VER_ROWS INT32_MIN

/* NOTE [ Value slot ]
 * A value slot is 32 bytes (issue 14's leaner tape: a scalar program's tape holds one
 * slot, one 16-byte record and ~1.7 four-byte argument handles per op).  An inline
 * value (BUF_INLINE: a 0-d float64) keeps its value and gradient in sval/sgrad, any
 * other its data and gradient pointers in the same words: read them by the flag
 * (cad_bdata, cad_gptr), never both.  What only some values need lives in three words
 * of the meta pool just before the value's shape: owner (the PyObject keeping data
 * alive, an owned reference), leaf (the leaf Tensor, owned) and version (the leaf's
 * version when registered; CAD_VER_ROWS for row gathers' positions).  A value pushed
 * with meta == 0 has no such words (the inline values of a scalar program: ops'
 * outputs and shared constants): cad_owner/cad_leaf/cad_version read NULL/0 for it,
 * and nothing may set them. */
typedef struct {
    union { char *data; double sval; };    /* strided data (see meta) / an inline value */
    union { char *grad; double sgrad; };   /* contiguous gradient (malloc'd in a sweep;
                                              NULL = zero) / an inline value's gradient */
    int64_t size;      /* number of elements */
    int32_t meta;      /* offset into tape->meta of shape[ndim], strides[ndim]; 0: none */
    int8_t ndim;
    int8_t dtype;
    uint8_t flags;
    uint8_t hasg;      /* a gradient reached it in the current sweep */
} cad_buf;
#define CAD_SLOT_WORDS 3   /* owner, leaf, version before a value's shape */
static inline void *cad_owner(const int64_t *meta, const cad_buf *b) {
    return b->meta ? (void *)(intptr_t)meta[b->meta - 3] : NULL;
}
static inline void *cad_leaf(const int64_t *meta, const cad_buf *b) {
    return b->meta ? (void *)(intptr_t)meta[b->meta - 2] : NULL;
}
static inline int32_t cad_version(const int64_t *meta, const cad_buf *b) {
    return b->meta ? (int32_t)meta[b->meta - 1] : 0;
}
static inline void cad_set_owner(int64_t *meta, const cad_buf *b, void *p) {
    meta[b->meta - 3] = (int64_t)(intptr_t)p;
}
static inline void cad_set_leaf(int64_t *meta, const cad_buf *b, void *p) {
    meta[b->meta - 2] = (int64_t)(intptr_t)p;
}
static inline void cad_set_version(int64_t *meta, const cad_buf *b, int32_t v) {
    meta[b->meta - 1] = v;
}

/* NOTE [ Record width ]
 * A record is 16 bytes and an argument handle 4 (issue 14's leaner tape): the op code
 * and the argument count share one word (op < 2^10, at most CAD_MAXNARGS inputs),
 * and handles, argument and aux offsets are 32-bit, so a tape holds at most
 * CAD_TAPE_MAX values, records, argument handles and aux words (cad_tape_reserve says
 * CAD_ENOMEM past it).  cad_hid stays 64-bit in the engine's interfaces; only what the
 * tape stores narrows. */
#define CAD_MAXNARGS ((1 << 22) - 1)
#define CAD_TAPE_MAX ((int64_t)INT32_MAX)
typedef int32_t cad_arg;   /* an argument handle as args[] stores it */
typedef struct {
    uint32_t op : 10, nargs : 22;
    int32_t out;
    int32_t arg;       /* offset into tape->args */
    int32_t aux;       /* offset into tape->aux, -1 if none */
} cad_rec;

typedef struct {
    cad_buf *bufs; int64_t nbufs, capbufs;
    cad_rec *recs; int64_t nrecs, caprecs;
    cad_arg *args; int64_t nargs, capargs;
    int64_t *meta; int64_t nmeta, capmeta;
    int64_t *aux; int64_t naux, capaux;
} cad_tape;

/* ---- the device hooks (NOTE [ CUDA backend ] in cuda/cad_cuda.h): the thread's
 * current device for the primitives, and gradient buffers by device */
extern __thread int cad_dev;
/* for Cython, where `cad_dev = 1` inside a function would make a local variable */
static inline void cad_set_dev(int d) { cad_dev = d; }

/* ---- fused replay (NOTE [ Fused replay ] in cuda/fuse.c): regions of elementwise
 * records run as one kernel forward and one backward.  fuse[i] for record i: 0 as
 * usual; -1 inside a region (its value comes from the region's kernel); k + 1 the
 * last record of region k.  The replay sets the thread's plan around cad_forward /
 * cad_sweep (cad_fz, NULL otherwise). */
#define CAD_FZ_MAXE 16     /* values a region reads */
#define CAD_FZ_MAXI 64     /* records in a region */
#define CAD_FZ_WORDS 96    /* the kernels' parameter block, 64-bit words */
typedef struct {
    int nE, nI, store_all, dtype;       /* store_all: every record's value is written (0-d regions) */
    cad_hid ext[CAD_FZ_MAXE];
    uint8_t ext_scalar[CAD_FZ_MAXE];    /* a 0-d constant read by every element */
    int op[CAD_FZ_MAXI], a[CAD_FZ_MAXI], b[CAD_FZ_MAXI];   /* slots: externals, then records; b -1: unary */
    cad_hid out[CAD_FZ_MAXI];
    void *ffwd, *fbwd;                  /* the compiled kernels (NULL on the fake device) */
} cad_fzreg;
typedef struct {
    int nreg;
    cad_fzreg *reg;
    int32_t *fuse;
    int64_t nrecs;
} cad_fzplan;
extern __thread const cad_fzplan *cad_fz;
static inline void cad_fz_set(const cad_fzplan *p) { cad_fz = p; }
int cad_fz_fwd(cad_tape *t, int k);
int cad_fz_vjp(cad_tape *t, int k);
void cad_buf_release_grad(cad_buf *b);

/* ---- tape storage (tape.c) ---- */
int cad_tape_init(cad_tape *t);
void cad_tape_free_arrays(cad_tape *t);
size_t cad_tape_cache_clear(void);
extern double cad_blas_par_min;   /* products split over the pool from this many multiply-adds (matmul.c) */   /* NOTE [ Large tapes ] (tape.c) */
int cad_tape_reserve(cad_tape *t, int64_t nbufs, int64_t nrecs, int64_t nargs, int64_t nmeta, int64_t naux);
/* append src to dst (handles of src shift by dst->nbufs, returned through *hoff);
 * python references move with the bufs; src is emptied */
int cad_tape_append(cad_tape *dst, cad_tape *src, int64_t *hoff);
void cad_tape_clear_grads(cad_tape *t);

static inline int64_t *cad_shape(const cad_tape *t, const cad_buf *b) { return t->meta + b->meta; }
static inline int64_t *cad_strides(const cad_tape *t, const cad_buf *b) { return t->meta + b->meta + b->ndim; }
static inline char *cad_bdata(cad_buf *b) { return (b->flags & BUF_INLINE) ? (char *)&b->sval : b->data; }
/* a buf's gradient memory; does input handle h take a gradient (-1: an unregistered
 * constant); is a buf's value contiguous (row-major, size-1 dims ignored) */
static inline char *cad_gptr(cad_buf *b) { return (b->flags & BUF_INLINE) ? (char *)&b->sgrad : b->grad; }
static inline int cad_wants(const cad_tape *t, cad_hid h) { return h >= 0 && (t->bufs[h].flags & BUF_RG); }
static inline int cad_contiguous(const cad_tape *t, const cad_buf *b) {
    int64_t s = 1;
    int d;
    if ((b->flags & BUF_INLINE) || b->size == 0) return 1;
    for (d = b->ndim - 1; d >= 0; d--) {
        if (cad_shape(t, b)[d] != 1 && cad_strides(t, b)[d] != s) return 0;
        s *= cad_shape(t, b)[d];
    }
    return 1;
}

/* ---- the strided iterator (iter.c) ----
 * A row kernel processes n elements; p[k] points at operand k's first element and
 * s[k] is its stride in elements.  Operand 0 is the destination. */
typedef void (*cad_row)(char **p, const int64_t *s, int64_t n);
/* a row and the name of its CUDA kernel (NOTE [ CUDA backend ]) */
typedef struct { cad_row row; const char *name; } cad_rowname;
extern const cad_rowname cad_gen_row_names[], cad_hand_row_names[], cad_sweep_row_names[];

typedef struct {
    int nop, ndim;
    int64_t shape[CAD_MAXDIM];
    int64_t st[CAD_MAXOP][CAD_MAXDIM];
    char *ptr[CAD_MAXOP];
    int esize[CAD_MAXOP];
} cad_iter;

/* ---- block cache (alloc.c): every gradient buffer and large array cad makes */
void *cad_alloc(size_t nb);
void cad_release(void *p);
size_t cad_cache_clear(void);
size_t cad_cache_bytes(void);
extern size_t cad_cache_limit;

/* ---- thread pool (pool.c): fn(arg, tid, nt) for tid in 0..nt-1, tid 0 on the caller */
typedef void (*cad_task)(void *arg, int tid, int nt);
void cad_parallel(cad_task fn, void *arg, int nt);
int cad_pool_units(int nt);   /* the units a job of nt threads is cut into (pool.c) */
int cad_pool_contended(void);   /* jobs run serially after a straggler (NOTE [ Stragglers ]) */
void cad_pool_stats(int64_t *out);   /* stragglers seen, jobs run serially, serial_left, backoff */
void cad_pool_reset_stats(int serial);
int cad_cpu_count(void);

extern int cad_num_threads;
extern int64_t cad_par_min;        /* threads below this many elements do not pay (memory-bound rows) */
extern int64_t cad_par_min_heavy;  /* the same for rows with transcendental functions */
int cad_get_max_threads(void);

/* Runs row over the iteration space.  If operand 0 has zero strides where the
 * shape is > 1 it is an accumulator: with combine == NULL the loop runs on one
 * thread; with combine != NULL and operand 0 fully broadcast (a full reduction),
 * threads accumulate into private partials initialised from init and merge them
 * with combine(dst, partial). */
int cad_iter_run(cad_iter *it, cad_row row, cad_row combine, const void *init);
int cad_iter_run_t(cad_iter *it, cad_row row, cad_row combine, const void *init, int64_t par_min);
/* it's dims without the size-1 ones, merged where every operand allows: the number
 * of dims left (0: one element), -1 when a dim is empty */
int cad_iter_coalesce(const cad_iter *it, int64_t *shape, int64_t (*st)[CAD_MAXDIM]);

/* set operand k of an iterator over out_shape[ndim] from a (right-aligned)
 * operand of shape[ondim] and element strides; broadcast dims get stride 0 */
void cad_iter_operand(cad_iter *it, int k, char *ptr, int esize, int ondim,
                      const int64_t *shape, const int64_t *strides);
void cad_contig_strides(int ndim, const int64_t *shape, int64_t *strides);

/* ---- generic rows (kernels.c) ---- */
extern cad_row cad_acc_rows[4];      /* dst += src, same dtype */
/* m rows of n contiguous elements (row i at x + i sx) reduced into d[i sd] by a
 * reduction row's step (NOTE [ Short reductions ] in kernels.c) */
typedef void (*cad_short_red)(char *d, const char *x, int64_t m, int64_t n, int64_t sd, int64_t sx);
cad_short_red cad_short_red_of(cad_row row);   /* NULL: row is not a reduction row */
/* m values x[i sx] copied (or added) over the n contiguous elements at d + i sd */
cad_short_red cad_short_bcast_of(cad_row row);
void cad_topk_rows(int dtype, const char *x, int64_t R, int64_t n, int64_t k, int largest, int64_t *out);   /* NOTE [ Top k ] (kernels.c) */
int64_t cad_take_rows(char *dst, const char *src, const int64_t *idx, int64_t ist, int64_t m,
                      int64_t n, int64_t rowb);   /* NOTE [ Row gathers ] (kernels.c) */
void cad_gather_rows(int es, char *out, const char *x, const int64_t *lin, int64_t n, int64_t w);
void cad_scatadd_rows(int dtype, char *gx, const char *g, const int64_t *lin, int64_t n, int64_t w);   /* NULL: not a copy/accumulate row */
extern cad_row cad_copy_rows[4];     /* dst = src */
extern cad_row cad_max_rows[2], cad_min_rows[2], cad_mul_rows[2];
extern cad_row cad_cast_rows[4][4];  /* [dst][src] dst = (T)src */
extern cad_row cad_castacc_rows[2][2];

/* reductions: out (contiguous, shape of x with reduced dims of size 1) */
int cad_reduce(int kind, int dtype, char *out, const char *x, int ndim,
               const int64_t *shape, const int64_t *xstrides, uint64_t mask);
enum { CAD_RSUM = 0, CAD_RMAX = 1, CAD_RMIN = 2, CAD_RPROD = 3 };

/* matmul: out[batch, m, n] (+)= a[batch, m, k] @ b[batch, k, n]; operands are
 * described by batch shape/strides and matrix strides; out contiguous. */
typedef struct {
    int dtype;
    int bnd;                       /* number of batch dims of the output */
    int64_t bshape[CAD_MAXDIM];
    int64_t abst[CAD_MAXDIM], bbst[CAD_MAXDIM], obst[CAD_MAXDIM];
    int64_t m, n, k;
    const char *a; int64_t ars, acs;
    const char *b; int64_t brs, bcs;
    char *c; int64_t crs;
    double beta;
} cad_mm;
int cad_matmul(const cad_mm *mm);
int cad_gemm(int dtype, int64_t m, int64_t n, int64_t k,
             const char *a, int64_t ars, int64_t acs,
             const char *b, int64_t brs, int64_t bcs,
             char *c, int64_t crs, double beta);
void cad_set_blas(void *dgemm, void *sgemm, void *dgemv, void *sgemv);
int cad_have_blas(void);
int cad_blas_thread_control(void);
int cad_blas_threads_local(int nt);
void cad_set_lapack(void *dgetrs, void *sgetrs, void *dtrsm, void *strsm, void *dtrmm, void *strmm);
int cad_spd_inv(int dtype, int64_t n, const char *l, char *out, char *work, double alpha);
int cad_getrs(int dtype, int trans, int64_t n, int64_t nrhs, char *lu, int *piv, char *b);
int cad_is_symmetric(int dtype, int64_t nb, int64_t n, const char *a);
void cad_symmetrize(int dtype, int64_t nb, int64_t n, char *a, int upper);
int64_t cad_trsm_small(int dtype, int lower, int trans, int64_t nb, int64_t n, int64_t k,
                       const char *a, int64_t a_bs, char *b);

/* ---- reverse sweep (sweep.c) ---- */
/* records with index >= stop, last first */
int cad_sweep(cad_tape *t, int free_tmp, int64_t stop);
int64_t cad_passed_grads(void);   /* NOTE [ Passed-on gradients ] (sweep.c): this thread's count */
int cad_sweep_from(cad_tape *t, int free_tmp, int64_t start, int64_t stop);
int cad_ensure_grad(cad_buf *b);
/* Prepare b's gradient for a kernel about to write into it.  full != 0: the kernel
 * writes every element exactly once, so a new buffer is left unzeroed and *assign
 * is set: the kernel stores instead of accumulating (no zero fill, no read of
 * fresh pages).  Otherwise a new buffer is zeroed by writing (never calloc: reading
 * calloc'd pages first maps the zero page, then every write faults again). */
int cad_grad_for(cad_buf *b, int full, int *assign);
/* hand-written vjps named by the op table */
int cad_view_vjp(cad_tape *t, const cad_rec *r);
int cad_sum_vjp(cad_tape *t, const cad_rec *r);
int cad_maxmin_vjp(cad_tape *t, const cad_rec *r);
int cad_prod_vjp(cad_tape *t, const cad_rec *r);
int cad_gather_vjp(cad_tape *t, const cad_rec *r);
int cad_scatter_vjp(cad_tape *t, const cad_rec *r);
int cad_unview_vjp(cad_tape *t, const cad_rec *r);
/* the index ops' loops (B batches of xsize / n elements, contiguous) */
void cad_mat_desc(cad_tape *t, cad_buf *x, int is1d, int is_left, int *bnd,
                  const int64_t **bshape, const int64_t **bst,
                  int64_t *rows, int64_t *cols, int64_t *rs, int64_t *cs);
void cad_align_batch(int obnd, const int64_t *obshape, int bnd, const int64_t *bshape,
                     const int64_t *bst, int64_t *out);

/* ---- compact scalar programs (sprog.c) */
/* defer: 0 the forward computes the local partials, 1 they come from a vector pass
 * after it (cad_heavy_partial_rows), 2 nobody needs them */
typedef struct { int32_t op, out, a, b; unsigned char mask, arity, defer; } cad_sinst;
typedef struct {
    cad_sinst *ins, *bwd;
    int64_t n, nbwd, nv;
    double *v, *g, *d0, *d1;   /* values, gradients, partials by output value */
    unsigned char *flag;
    int64_t *dfr, ndfr;        /* deferred instructions, grouped by op */
    double *tx, *td, *ones;    /* the vector pass's gathered inputs, partials, seeds */
} cad_sprog;
int cad_sprog_build(const cad_tape *t, cad_sprog *p);   /* 1 built, 0 not a scalar tape, -1 no memory */
void cad_sprog_free(cad_sprog *p);
void cad_sprog_forward(cad_sprog *p);
void cad_sprog_forward_d(cad_sprog *p);   /* also the local partials, for cad_sprog_backward */
void cad_sprog_plan(cad_sprog *p, const int64_t *sel, int nsel, int64_t out);   /* before the forward */
void cad_sprog_backward(cad_sprog *p, int64_t out, double seed);

/* ---- forward replay (forward.c): recompute records from..nrecs-1 into their
 * buffers (contiguous; see cad.record) */
int cad_forward(cad_tape *t, int64_t from);
int cad_ew_fwd_arrays(cad_tape *t, const cad_rec *r, cad_row row, int heavy);
/* the forward (tangent) sweep of inline records from i: the first record it leaves to
 * the caller (NOTE [ C forward sweep ] in forward.c) */
int64_t cad_jvp_scalar_run(const cad_tape *t, int64_t i, int64_t end, double *tan, unsigned char *has);
int cad_bool_fwd_arrays(cad_tape *t, const cad_rec *r, cad_row row);
int cad_view_fwd(cad_tape *t, const cad_rec *r);
int cad_unview_fwd(cad_tape *t, const cad_rec *r);
int cad_sum_fwd(cad_tape *t, const cad_rec *r);
int cad_maxmin_fwd(cad_tape *t, const cad_rec *r);
int cad_prod_fwd(cad_tape *t, const cad_rec *r);
int cad_gather_fwd(cad_tape *t, const cad_rec *r);
int cad_scatter_fwd(cad_tape *t, const cad_rec *r);
int cad_setitem_fwd(cad_tape *t, const cad_rec *r);
int cad_concat_fwd(cad_tape *t, const cad_rec *r);
int cad_cast_fwd(cad_tape *t, const cad_rec *r);
int cad_matmul_fwd(cad_tape *t, const cad_rec *r);
int cad_fwd_dispatch(cad_tape *t, const cad_rec *r);   /* forward.c: one record (bind) */
int cad_setitem_vjp(cad_tape *t, const cad_rec *r);
int cad_concat_vjp(cad_tape *t, const cad_rec *r);
int cad_cast_vjp(cad_tape *t, const cad_rec *r);
int cad_matmul_vjp(cad_tape *t, const cad_rec *r);
int cad_cumsum_vjp(cad_tape *t, const cad_rec *r);
int cad_cumsum_fwd(cad_tape *t, const cad_rec *r);
int cad_cross_vjp(cad_tape *t, const cad_rec *r);
int cad_cross_fwd(cad_tape *t, const cad_rec *r);
int cad_cumprod_vjp(cad_tape *t, const cad_rec *r);
int cad_cumprod_fwd(cad_tape *t, const cad_rec *r);
int cad_xent_vjp(cad_tape *t, const cad_rec *r);
int cad_xent_fwd(cad_tape *t, const cad_rec *r);
int cad_transfer_vjp(cad_tape *t, const cad_rec *r);
/* a run of 0-d device records ending at record i, swept in one kernel (sweep.c) */
int cad_dsweep(cad_tape *t, int64_t i, int64_t stop, int free_tmp, int64_t *first, int *done);
int cad_transfer_fwd(cad_tape *t, const cad_rec *r);
/* custom primitives (custom.c): Python rules behind two hooks */
extern int (*cad_custom_fwd_hook)(cad_tape *t, const cad_rec *r);
extern int (*cad_custom_vjp_hook)(cad_tape *t, const cad_rec *r);
int cad_custom_fwd(cad_tape *t, const cad_rec *r);
int cad_custom_vjp(cad_tape *t, const cad_rec *r);
int cad_custom_acc(cad_tape *t, cad_hid h, const char *src);
/* out[i] = logsumexp(z[i, :]) - z[i, lab[i]] for N rows of C logits (strided) */
int cad_xent_kernel(int dtype, char *out, const char *z, int64_t zrs, int64_t zcs,
                    const int64_t *lab, int64_t lst, int64_t N, int64_t C);
/* the elementwise vjp over arrays (broadcasting); rows[i][dtype] per input */
/* rows[input][dtype][assign]; heavy: the rows call transcendental functions */
int cad_ew_vjp_arrays(cad_tape *t, const cad_rec *r, const cad_row (*rows)[2][2], int heavy);

/* ---- optimizer updates (optim.c; NOTE [ Optimizer updates ] there): the slot
 * struct and flags live in cuda/cad_kp.h, shared with the CUDA kernel ---- */
/* every slot, the work split over the thread pool when there are >= par_min elements */
int cad_optim_step(const cad_opt_slot *s, int64_t ns, int64_t par_min);
/* the same on device dev's backend (the engine's one call for both devices) */
int cad_optim_run(int dev, const cad_opt_slot *s, int64_t ns, int64_t par_min);

/* generated (_gen_ops.c) */
int cad_vjp_dispatch(cad_tape *t, const cad_rec *r);

/* NOTE [ Backends ]
 * What a record's kernels need from a device sits behind one struct of function
 * pointers, implemented twice: cad_be_cpu (cpu/backend.c: C loops, the thread pool,
 * BLAS) and cad_be_cuda (cuda/exec.c: CUDA kernels, cuBLAS; the fake device runs the
 * same launcher on the host).  A kernel file (sweep.c, forward.c, kernels.c, scan.c,
 * matmul.c, iter.c) writes its algorithm once against CAD_BE, the backend of the
 * thread's device flag, which the sweep and the forward replay set per record from
 * the record's output buffer (BUF_CUDA) and the engine sets around eager device ops.
 * Adding a device is a third struct; adding a primitive is a member (or none, when it
 * is built from the members already here).  Moving values between devices
 * (cad_transfer_vjp) is the one place that names both. */
typedef struct {
    const char *name;
    void *(*tmp_alloc)(size_t nb);           /* scratch; NULL: out of memory */
    void (*tmp_free)(void *p);
    int (*zero)(void *p, size_t nb);
    int (*fill)(void *p, int esize, int64_t n, int64_t bits);   /* n elements := bits */
    int (*iter_run)(cad_iter *it, cad_row row, cad_row combine, const void *init, int64_t par_min);
    int (*matmul)(const cad_mm *mm);
    /* out[b, k] = x[b, lin[k]] (gather); out[b, lin[k]] += g[b, k] (scatadd);
     * out[b, k] += g[b, lin[k]] (gathadd); b < B */
    int (*gather)(int dtype, char *out, const char *x, const int64_t *lin, int64_t n, int64_t B, int64_t xsize);
    int (*scatadd)(int dtype, char *out, const char *g, const int64_t *lin, int64_t n, int64_t B, int64_t xsize);
    int (*gathadd)(int dtype, char *out, const char *g, const int64_t *lin, int64_t n, int64_t B, int64_t xsize);
    /* out.flat[lin[k]] = v.flat[k] (the last write wins), and its vjp (gx, gv may be NULL) */
    int (*setitem)(int dtype, char *out, const char *v, const int64_t *lin, int64_t n, int64_t osize);
    int (*setitem_vjp)(int dtype, char *gx, char *gv, const char *go, const int64_t *lin, int64_t n,
                       int64_t osize);
    int (*xent)(int dtype, char *out, const char *z, int64_t zrs, int64_t zcs, const int64_t *lab,
                int64_t lst, int64_t N, int64_t C);
    int (*xent_vjp)(int dtype, char *gz, const char *g, const char *z, int64_t zrs, int64_t zcs,
                    const int64_t *lab, int64_t lst, const char *out, int64_t os, int64_t N, int64_t C,
                    int assign);
    int (*scan)(int dtype, char *out, const char *x, int64_t outer, int64_t n, int64_t inner, int rev,
                int prod, int acc);
    int (*cumprod_vjp)(int dtype, char *gx, const char *g, const char *x, const char *out, int64_t outer,
                       int64_t n, int64_t inner, int acc);
    /* out (=|+=) x x y for n contiguous rows of three (acc: add) */
    int (*cross)(int dtype, char *out, const char *x, const char *y, int64_t n, int acc);
    /* one optimizer step over ns parameter slots (NOTE [ Optimizer updates ] in optim.c) */
    int (*optim)(const cad_opt_slot *s, int64_t ns, int64_t par_min);
} cad_backend;
extern const cad_backend cad_be_cpu, cad_be_cuda;
#define CAD_BE (cad_dev ? &cad_be_cuda : &cad_be_cpu)
/* the CPU backend's members (backend.c gathers them) */
int cad_iter_run_cpu(cad_iter *it, cad_row row, cad_row combine, const void *init, int64_t par_min);
int cad_matmul_cpu(const cad_mm *mm);
int cad_gather_cpu(int dtype, char *out, const char *x, const int64_t *lin, int64_t n, int64_t B, int64_t xsize);
int cad_scatadd_cpu(int dtype, char *out, const char *g, const int64_t *lin, int64_t n, int64_t B, int64_t xsize);
int cad_gathadd_cpu(int dtype, char *out, const char *g, const int64_t *lin, int64_t n, int64_t B, int64_t xsize);
int cad_setitem_cpu(int dtype, char *out, const char *v, const int64_t *lin, int64_t n, int64_t osize);
int cad_setitem_vjp_cpu(int dtype, char *gx, char *gv, const char *go, const int64_t *lin, int64_t n,
                        int64_t osize);
int cad_xent_cpu(int dtype, char *out, const char *z, int64_t zrs, int64_t zcs, const int64_t *lab,
                 int64_t lst, int64_t N, int64_t C);
int cad_xent_vjp_cpu(int dtype, char *gz, const char *g, const char *z, int64_t zrs, int64_t zcs,
                     const int64_t *lab, int64_t lst, const char *out, int64_t os, int64_t N, int64_t C,
                     int assign);
int cad_scan_cpu(int dtype, char *out, const char *x, int64_t outer, int64_t n, int64_t inner, int rev,
                 int prod, int acc);
int cad_cumprod_vjp_cpu(int dtype, char *gx, const char *g, const char *x, const char *out, int64_t outer,
                        int64_t n, int64_t inner, int acc);
int cad_cross_cpu(int dtype, char *out, const char *x, const char *y, int64_t n, int acc);

#endif
