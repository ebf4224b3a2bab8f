# cad's C API as the engine sees it, declared once (cad_kernels/cpu/cad_cpu.h,
# cad_kernels/cuda/cad_cuda.h and the small inline helpers).  Included by _engine.pyx.

cdef extern from "cad_cpu.h" nogil:
    ctypedef int64_t cad_hid
    ctypedef void (*cad_row)(char **p, const int64_t *s, int64_t n)
    enum:
        CAD_F64
        CAD_F32
        CAD_I64
        CAD_BOOL
    enum:
        CAD_OK
        CAD_ENOMEM
        CAD_EDEAD
        CAD_EBLAS
        CAD_EINTERNAL
        CAD_EINDEX
        CAD_ECUSTOM
    enum:
        BUF_INLINE
        BUF_RG
        BUF_LEAF
        BUF_DEAD
        BUF_KEEP
        BUF_INPUT
        BUF_ARENA
    enum:
        CAD_RSUM
        CAD_RMAX
        CAD_RMIN
        CAD_RPROD
    ctypedef struct cad_buf:      # NOTE [ Value slot ]: data/sval and grad/sgrad share words
        char *data
        char *grad
        double sval
        double sgrad
        int64_t size
        int32_t meta
        int8_t ndim
        int8_t dtype
        uint8_t flags
        uint8_t hasg
    enum:
        CAD_SLOT_WORDS
    void *cad_owner(const int64_t *meta, const cad_buf *b)
    void *cad_leaf(const int64_t *meta, const cad_buf *b)
    int32_t cad_version(const int64_t *meta, const cad_buf *b)
    void cad_set_owner(int64_t *meta, const cad_buf *b, void *p)
    void cad_set_leaf(int64_t *meta, const cad_buf *b, void *p)
    void cad_set_version(int64_t *meta, const cad_buf *b, int32_t v)
    ctypedef int32_t cad_arg
    enum:
        CAD_MAXNARGS
    ctypedef struct cad_rec:      # NOTE [ Record width ]: op and nargs are bitfields
        int op
        int nargs
        int32_t out
        int32_t arg
        int32_t aux
    ctypedef struct cad_tape:
        cad_buf *bufs
        int64_t nbufs, capbufs
        cad_rec *recs
        int64_t nrecs, caprecs
        cad_arg *args
        int64_t nargs, capargs
        int64_t *meta
        int64_t nmeta, capmeta
        int64_t *aux
        int64_t naux, capaux
    ctypedef struct cad_iter:
        int nop
        int ndim
        int64_t shape[32]
        int64_t st[8][32]
        char *ptr[8]
        int esize[8]

    int cad_tape_init(cad_tape *t)
    void cad_tape_free_arrays(cad_tape *t)
    size_t cad_tape_cache_clear()
    double cad_blas_par_min
    int64_t cad_passed_grads()
    void cad_pool_stats(int64_t *out)
    int cad_pool_contended()
    void cad_topk_rows(int dtype, const char *x, int64_t R, int64_t n, int64_t k, int largest, int64_t *out)
    int64_t cad_take_rows(char *dst, const char *src, const int64_t *idx, int64_t ist, int64_t m, int64_t n, int64_t rowb)
    void cad_pool_reset_stats(int serial)
    int cad_tape_reserve(cad_tape *t, int64_t nbufs, int64_t nrecs, int64_t nargs, int64_t nmeta, int64_t naux)
    int cad_tape_append(cad_tape *dst, cad_tape *src, int64_t *hoff)
    void cad_tape_clear_grads(cad_tape *t)
    void cad_buf_release_grad(cad_buf *b)
    int cad_iter_run(cad_iter *it, cad_row row, cad_row combine, const void *init)
    int cad_iter_run_t(cad_iter *it, cad_row row, cad_row combine, const void *init, int64_t par_min)
    void cad_iter_operand(cad_iter *it, int k, char *ptr, int esize, int ondim,
                          const int64_t *shape, const int64_t *strides)
    void cad_contig_strides(int ndim, const int64_t *shape, int64_t *strides)
    void cad_set_blas(void *dgemm, void *sgemm, void *dgemv, void *sgemv)
    int cad_have_blas()
    int cad_blas_thread_control()
    int cad_blas_threads_local(int nt)
    void cad_set_lapack(void *dgetrs, void *sgetrs, void *dtrsm, void *strsm, void *dtrmm, void *strmm)
    int cad_spd_inv(int dtype, int64_t n, const char *l, char *out, char *work, double alpha)
    int cad_getrs(int dtype, int trans, int64_t n, int64_t nrhs, char *lu, int *piv, char *b)
    int cad_is_symmetric(int dtype, int64_t nb, int64_t n, const char *a)
    void cad_symmetrize(int dtype, int64_t nb, int64_t n, char *a, int upper)
    int64_t cad_trsm_small(int dtype, int lower, int trans, int64_t nb, int64_t n, int64_t k,
                           const char *a, int64_t a_bs, char *b)
    int cad_sweep(cad_tape *t, int free_tmp, int64_t stop)
    int cad_sweep_from(cad_tape *t, int free_tmp, int64_t start, int64_t stop)
    int64_t cad_jvp_scalar_run(const cad_tape *t, int64_t i, int64_t end, double *tan, unsigned char *has)
    void *cad_alloc(size_t nb)
    void cad_release(void *p)
    size_t cad_cache_clear()
    size_t cad_cache_bytes()
    size_t cad_cache_limit
    int cad_forward(cad_tape *t, int64_t frm)
    int cad_fwd_dispatch(cad_tape *t, const cad_rec *r)
    enum:
        CAD_FZ_MAXE
        CAD_FZ_MAXI
    ctypedef struct cad_fzreg:
        int nE, nI, store_all, dtype
        cad_hid ext[16]
        uint8_t ext_scalar[16]
        int op[64]
        int a[64]
        int b[64]
        cad_hid out[64]
        void *ffwd
        void *fbwd
    ctypedef struct cad_fzplan:
        int nreg
        cad_fzreg *reg
        int32_t *fuse
        int64_t nrecs
    void cad_fz_set(const cad_fzplan *p)
    ctypedef struct cad_sprog:
        int64_t n, nbwd, nv
        double *v
        double *g
    int cad_sprog_build(const cad_tape *t, cad_sprog *p)
    void cad_sprog_free(cad_sprog *p)
    void cad_sprog_forward(cad_sprog *p)
    void cad_sprog_forward_d(cad_sprog *p)
    void cad_sprog_plan(cad_sprog *p, const int64_t *sel, int nsel, int64_t out)
    void cad_sprog_backward(cad_sprog *p, int64_t out, double seed)
    int cad_xent_kernel(int dtype, char *out, const char *z, int64_t zrs, int64_t zcs,
                        const int64_t *lab, int64_t lst, int64_t N, int64_t C)
    int cad_ensure_grad(cad_buf *b)
    int (*cad_custom_fwd_hook)(cad_tape *t, const cad_rec *r)
    int (*cad_custom_vjp_hook)(cad_tape *t, const cad_rec *r)
    int cad_custom_acc(cad_tape *t, cad_hid h, const char *src)
    int cad_num_threads
    int64_t cad_par_min
    int64_t cad_par_min_heavy
    int cad_get_max_threads()

    # optimizer updates (optim.c, NOTE [ Optimizer updates ])
    enum:
        CAD_OPT_ADAM
        CAD_OPT_MAXIMIZE
        CAD_OPT_NESTEROV
        CAD_OPT_AMSGRAD
        CAD_OPT_DECOUPLED
        CAD_OPT_FIRST
        CAD_OPT_DELTA
    ctypedef struct cad_opt_slot:
        char *out
        const char *p
        const char *g
        const char *m0
        const char *v0
        const char *w0
        char *m
        char *v
        char *w
        int64_t n
        int32_t dtype, flags
        double lr, wd, beta1, beta2, eps, momentum, dampening
        double bc1, bc2
    int cad_optim_step(const cad_opt_slot *s, int64_t ns, int64_t par_min)
    int cad_optim_run(int dev, const cad_opt_slot *s, int64_t ns, int64_t par_min)

cdef extern from *:
    """
    static cad_row cad_acc_row(int dt) { return cad_acc_rows[dt]; }
    static char *cad_bdata_(cad_buf *b) { return cad_bdata(b); }
    """
    cad_row cad_acc_row(int dt) nogil
    char *_bdata "cad_bdata_"(cad_buf *b)

cdef extern from *:
    """
    /* grad mode is per thread, like torch's: no_grad() in one thread does not
       stop recording in another */
    static __thread int cad_grad_off = 0;
    /* inside cad.record: every op on a recorded value is recorded (for replay),
       whether or not it requires grad */
    static __thread int cad_rec_mode = 0;
    /* named dimensions (cad/names.py): on for the process once a named tensor
       was made (until then no op looks at names); off per thread while a name
       rule runs an op's body (the rule names the result) */
    static int cad_names_on = 0;
    static __thread int cad_names_off = 0;
    """
    int cad_grad_off
    int cad_rec_mode
    int cad_names_on
    int cad_names_off

cdef extern from "cad_cuda.h" nogil:
    void cad_set_dev(int d)   # the thread's device (cad_dev): a function, never `cad_dev = ...`
    int cad_cu_open(int fake)
    int cad_cu_is_open()
    int cad_cu_is_fake()
    int cad_cu_device_count()
    const char *cad_cu_error()
    int cad_cu_load(const void *image)
    int cad_cu_loaded()
    int cad_cu_sync()
    int cad_cu_name(char *buf, int n)
    int cad_cu_capability(int *major, int *minor)
    int cad_cu_meminfo(size_t *free_b, size_t *total_b)
    int64_t cad_cu_fake_limit
    int cad_cu_optim_step(const cad_opt_slot *s, int64_t ns)
    int cad_cu_allow_tf32
    void *cad_cu_alloc(size_t nb)
    void cad_cu_release(void *p)
    size_t cad_cu_cache_clear()
    size_t cad_cu_cache_bytes()
    size_t cad_cu_in_use()
    int cad_cu_h2d(void *dst, const void *src, size_t nb)
    int cad_cu_d2h(void *dst, const void *src, size_t nb)
    int cad_cu_d2d(void *dst, const void *src, size_t nb)
    int cad_cu_fz_load(const void *image, int nreg, void **ffwd, void **fbwd)
    int cad_cu_zero(void *p, size_t nb)
    int cad_cu_fill(void *p, int esize, int64_t n, int64_t bits)
    void cad_cu_set_cublas_paths(const char *paths)
    enum:
        CAD_ECUDA
        CAD_EDEVMEM
        BUF_CUDA
        CAD_VER_ROWS
    cad_row cad_copy_rows[4]
    cad_row cad_cast_rows[4][4]
