# cython: language_level=3
"""cad's engine: the Tensor type, the tape, the dispatch of every primitive op and
the driver of the backward sweep.  Kernels and the sweep itself are C
(cad_kernels/cpu); this module owns Python objects and never runs per-element
work itself.  See NOTE [ Tape layout ] in cad_kernels/cpu/cad_cpu.h.

NOTE [ Values are immutable ]
A tensor's ndarray is read-only and never written after the op that made it.
In-place operators (+=, x[i] = v, ...) compute a new value, record it, and rebind
the Tensor object to it; the tape keeps the old buffer.  So a recorded value can
never change under the tape, and `l[i] *= l[i]` differentiates correctly.

NOTE [ Tapes ]
Each recording starts on the tape of its inputs; inputs with no tape (leaves,
constants) start a new one, and inputs on two tapes merge them (the smaller is
appended to the larger and forwards its tensors there).  A tape lives as long as
a tensor refers to it, and backward() without retain_graph consumes it.
"""
cimport cython
from cpython.ref cimport PyObject, Py_INCREF, Py_DECREF, Py_XDECREF
from cpython.tuple cimport PyTuple_New, PyTuple_SET_ITEM
from cpython.pycapsule cimport PyCapsule_New, PyCapsule_GetPointer, PyCapsule_GetName
from cpython.long cimport PyLong_AsLongLongAndOverflow
from cpython.pythread cimport (PyThread_type_lock, PyThread_allocate_lock, PyThread_acquire_lock,
                               PyThread_release_lock, WAIT_LOCK, NOWAIT_LOCK)
from libc.stdint cimport int64_t, int32_t, int8_t, uint8_t, uint64_t
from libc.stdlib cimport malloc, calloc, free
from libc.string cimport memcpy
from libc.math cimport NAN
cimport numpy as cnp
import numpy as _np
import threading as _threading

cnp.import_array()

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
    ctypedef struct cad_buf:
        char *data
        char *grad
        void *owner
        void *leaf
        double sval
        double sgrad
        int64_t size
        int64_t meta
        int32_t ndim
        int32_t version
        int8_t dtype
        uint8_t flags
        uint8_t hasg
    ctypedef struct cad_rec:
        int32_t op
        int32_t nargs
        cad_hid out
        int64_t arg
        int64_t aux
    ctypedef struct cad_tape:
        cad_buf *bufs
        int64_t nbufs, capbufs
        cad_rec *recs
        int64_t nrecs, caprecs
        cad_hid *args
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
    ctypedef struct cad_mm:
        int dtype
        int bnd
        int64_t bshape[32]
        int64_t abst[32]
        int64_t bbst[32]
        int64_t obst[32]
        int64_t m, n, k
        const char *a
        int64_t ars, acs
        const char *b
        int64_t brs, bcs
        char *c
        int64_t crs
        double beta

    int cad_tape_init(cad_tape *t)
    void cad_tape_free_arrays(cad_tape *t)
    int cad_tape_reserve(cad_tape *t, int64_t nbufs, int64_t nrecs, int64_t nargs, int64_t nmeta, int64_t naux)
    int cad_tape_append(cad_tape *dst, cad_tape *src, int64_t *hoff)
    void cad_tape_clear_grads(cad_tape *t)
    void cad_buf_release_grad(cad_buf *b)
    int cad_iter_run(cad_iter *it, cad_row row, cad_row combine, const void *init)
    int cad_iter_run_t(cad_iter *it, cad_row row, cad_row combine, const void *init, int64_t par_min)
    void cad_iter_operand(cad_iter *it, int k, char *ptr, int esize, int ondim,
                          const int64_t *shape, const int64_t *strides)
    void cad_contig_strides(int ndim, const int64_t *shape, int64_t *strides)
    int cad_reduce(int kind, int dtype, char *out, const char *x, int ndim,
                   const int64_t *shape, const int64_t *xstrides, uint64_t mask)
    int cad_matmul(const cad_mm *mm)
    void cad_set_blas(void *dgemm, void *sgemm)
    int cad_have_blas()
    int cad_blas_thread_control()
    int cad_sweep(cad_tape *t, int free_tmp, int64_t stop)
    void *cad_alloc(size_t nb)
    void cad_release(void *p)
    size_t cad_cache_clear()
    size_t cad_cache_bytes()
    size_t cad_cache_limit
    void cad_gather_kernel(int dtype, char *out, const char *x, const int64_t *lin, int64_t n, int64_t B, int64_t xsize)
    void cad_scatter_kernel(int dtype, char *out, const char *g, const int64_t *lin, int64_t n, int64_t B, int64_t xsize)
    int cad_forward(cad_tape *t, int64_t frm)
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
    int cad_num_threads
    int64_t cad_par_min
    int64_t cad_par_min_heavy
    int cad_get_max_threads()

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
    """
    int cad_grad_off
    int cad_rec_mode

include "_gen_ops.pxi"

DEF MAXDIM = 32

# ---------------------------------------------------------------- dtypes
float64 = _np.dtype(_np.float64)
float32 = _np.dtype(_np.float32)
int64 = _np.dtype(_np.int64)
bool_ = _np.dtype(_np.bool_)
cdef tuple _DTYPES = (float64, float32, int64, bool_)
cdef tuple _DTNAMES = ("float64", "float32", "int64", "bool")
cdef int _TYPENUM[4]
_TYPENUM[:] = [cnp.NPY_DOUBLE, cnp.NPY_FLOAT, cnp.NPY_INT64, cnp.NPY_BOOL]
cdef int _ESIZE[4]
_ESIZE[:] = [8, 4, 8, 1]


class CadError(Exception):
    """Base of cad's own errors."""


class ShapeError(ValueError, CadError):
    """Shapes that do not fit an op (names the op and the shapes)."""


class DTypeError(TypeError, CadError):
    """A dtype an op cannot take."""


class DeviceError(RuntimeError, CadError):
    """A device that is missing or that does not match."""


class BackwardError(RuntimeError, CadError):
    """A backward pass that cannot run (consumed tape, non-scalar output, ...)."""


cdef extern from *:
    """
    static int cad_dt_from_typenum(int tn) {
        /* NPY_INT64 aliases NPY_LONG or NPY_LONGLONG depending on the platform */
        if (tn == NPY_DOUBLE) return 0;
        if (tn == NPY_FLOAT) return 1;
        if (tn == NPY_BOOL) return 3;
        if (tn == NPY_INT64 || (tn == NPY_LONGLONG && sizeof(long long) == 8)
            || (tn == NPY_LONG && sizeof(long) == 8)) return 2;
        return -1;
    }
    """
    int _dt_from_typenum "cad_dt_from_typenum"(int tn) noexcept


cdef int _dtype_code(object dt, str who) except -1:
    """cad dtype code of anything numpy understands as a dtype"""
    cdef object d
    if dt is float:
        return CAD_F64
    try:
        d = _np.dtype(dt)
    except TypeError:
        raise DTypeError(f"{who}: {dt!r} is not a dtype") from None
    if d == float64:
        return CAD_F64
    if d == float32:
        return CAD_F32
    if d == int64:
        return CAD_I64
    if d == bool_:
        return CAD_BOOL
    raise DTypeError(f"{who}: dtype {d} is not supported; cad has float64, float32, int64 and bool")


cdef inline int _promote(int a, int b) noexcept:
    """numpy's promotion over cad's dtypes (int64 with float32 gives float64)"""
    if a < 0:
        return b
    if b < 0 or a == b:
        return a
    if (a == CAD_F32 and b == CAD_I64) or (a == CAD_I64 and b == CAD_F32):
        return CAD_F64
    # order: bool(3) < int64(2) < float32(1) < float64(0)
    return a if a < b else b


cdef inline bint _isfloat(int dt) noexcept:
    return dt == CAD_F64 or dt == CAD_F32


# ---------------------------------------------------------------- grad mode, threads

def is_grad_enabled():
    """True when operations on tensors that require grad are recorded (per thread)."""
    return not cad_grad_off


def set_grad_enabled(mode):
    """Turn recording on or off in this thread; returns the previous mode."""
    global cad_grad_off
    cdef bint prev = not cad_grad_off
    cad_grad_off = 0 if mode else 1
    return prev


cdef class no_grad:
    """Context manager and decorator: nothing inside is recorded (per thread)."""
    cdef list _prev

    def __init__(self, func=None):
        self._prev = []

    def __enter__(self):
        global cad_grad_off
        self._prev.append(cad_grad_off)
        cad_grad_off = 1
        return self

    def __exit__(self, *exc):
        global cad_grad_off
        cad_grad_off = self._prev.pop()
        return False

    def __call__(self, func):
        import functools

        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            with no_grad():
                return func(*args, **kwargs)
        return wrapper


cdef class enable_grad:
    """Context manager and decorator: record even inside no_grad (per thread)."""
    cdef list _prev

    def __init__(self, func=None):
        self._prev = []

    def __enter__(self):
        global cad_grad_off
        self._prev.append(cad_grad_off)
        cad_grad_off = 0
        return self

    def __exit__(self, *exc):
        global cad_grad_off
        cad_grad_off = self._prev.pop()
        return False

    def __call__(self, func):
        import functools

        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            with enable_grad():
                return func(*args, **kwargs)
        return wrapper


no_grad_ctx = no_grad


def _set_record_mode(int on):
    """enter/leave record mode in this thread (cad.record); returns the previous mode"""
    global cad_rec_mode
    cdef int prev = cad_rec_mode
    cad_rec_mode = on
    return prev


def is_recording():
    return bool(cad_rec_mode)


cdef object _ESCAPE = None


def _set_escape_hook(fn):
    """fn(tensor, why) is called when a recorded value is read by Python in record
    mode (cad.record adds a guard for it)"""
    global _ESCAPE
    _ESCAPE = fn


cdef inline void _escape(Tensor t, str why):
    if cad_rec_mode and t is not None and t._tape is not None and _ESCAPE is not None:
        _ESCAPE(t, why)


cdef inline int _mode1(Tensor t):
    """should an op on t be recorded?  2: with gradients, 1: for its value only
    (record mode: a replay recomputes it), 0: no"""
    if t is None:
        return 0
    if t._rg and not cad_grad_off:
        return 2
    if cad_rec_mode and t._tape is not None:
        return 1
    return 0


MAX_THREADS = 1024


def set_num_threads(object n):
    """Threads of the CPU kernels (1 to 1024; None restores the default)."""
    global cad_num_threads
    if n is None:
        cad_num_threads = 0
        return
    if isinstance(n, bool) or not isinstance(n, (int, _np.integer)):
        raise TypeError(f"set_num_threads: n must be an int, got {type(n).__name__}")
    if not 1 <= n <= MAX_THREADS:
        raise ValueError(f"set_num_threads: n must be between 1 and {MAX_THREADS}, got {n}")
    cad_num_threads = int(n)


def get_num_threads():
    """Threads the CPU kernels use."""
    return cad_num_threads if cad_num_threads > 0 else cad_get_max_threads()


def _set_parallel_min(object n):
    """Smallest element counts that run on several threads, (memory-bound, heavy);
    an int sets both (for tests).  Returns the previous pair."""
    global cad_par_min, cad_par_min_heavy
    old = (cad_par_min, cad_par_min_heavy)
    if isinstance(n, tuple):
        cad_par_min, cad_par_min_heavy = n
    else:
        cad_par_min = cad_par_min_heavy = n
    return old


# ---------------------------------------------------------------- BLAS

cdef void *_capsule_ptr(object cap):
    return PyCapsule_GetPointer(cap, PyCapsule_GetName(cap))


def _load_blas():
    try:
        from scipy.linalg import cython_blas
    except ImportError:
        return False
    capi = cython_blas.__pyx_capi__
    cad_set_blas(_capsule_ptr(capi["dgemm"]), _capsule_ptr(capi["sgemm"]))
    return True


HAVE_BLAS = _load_blas()
BLAS_THREAD_CONTROL = bool(cad_blas_thread_control())

# ---------------------------------------------------------------- tape

cdef int64_t _tape_serial = 0


@cython.no_gc
@cython.freelist(16)
cdef class Tape:
    """A tape of recorded ops (see NOTE [ Tapes ]).  Tensors refer to it; users
    rarely see it."""
    cdef cad_tape t
    cdef Tape _into
    cdef cad_hid _hoff
    cdef int64_t _serial
    cdef bint _consumed
    cdef bint _busy

    def __cinit__(self):
        global _tape_serial
        if cad_tape_init(&self.t) != CAD_OK:
            raise MemoryError("cad: cannot allocate a tape")
        _tape_serial += 1
        self._serial = _tape_serial

    def __dealloc__(self):
        self._release()

    cdef void _release(self) noexcept:
        cdef int64_t i, n = self.t.nbufs
        cdef cad_buf *b
        cdef list refs = []
        for i in range(n):
            b = &self.t.bufs[i]
            if b.owner != NULL:
                refs.append(<object>b.owner)
                Py_DECREF(<object>b.owner)
                b.owner = NULL
            if b.leaf != NULL:
                refs.append(<object>b.leaf)
                Py_DECREF(<object>b.leaf)
                b.leaf = NULL
        cad_tape_free_arrays(&self.t)
        refs = None   # the objects die here, after the tape is consistent

    def __len__(self):
        return self.t.nrecs

    @property
    def consumed(self):
        return self._consumed

    def ops(self):
        """The recorded op names, in order."""
        return [_OP_NAMES[self.t.recs[i].op] for i in range(self.t.nrecs)]

    def __repr__(self):
        return f"<cad.Tape {self.t.nrecs} records, {self.t.nbufs} values{', consumed' if self._consumed else ''}>"


cdef inline Tape _resolved(Tensor x):
    """x's live tape, following merges (and updating x)"""
    cdef Tape tp = x._tape
    cdef cad_hid h
    if tp is not None and tp._into is not None:
        h = x._h
        while tp._into is not None:
            h += tp._hoff
            tp = tp._into
        x._tape = tp
        x._h = h
    return tp


cdef Tape _merge(Tape A, Tape B):
    cdef int64_t hoff
    if A._busy or B._busy:
        raise BackwardError("cad: cannot record onto a tape while another thread runs backward on it")
    if A.t.nbufs < B.t.nbufs:
        A, B = B, A
    if cad_tape_append(&A.t, &B.t, &hoff) != CAD_OK:
        raise MemoryError("cad: cannot grow the tape")
    cad_tape_free_arrays(&B.t)
    B._into = A
    B._hoff = hoff
    return A


cdef inline Tape _input_tape(Tensor t):
    """the live (unconsumed) tape an input is on, or None"""
    cdef Tape tp
    if t is None or t._tape is None:
        return None
    tp = _resolved(t)
    if tp._consumed:
        return None
    if tp._busy:
        raise BackwardError("cad: cannot record onto a tape while another thread runs backward on it")
    return tp


cdef inline Tape _join(Tape A, Tape B):
    if A is None:
        return B
    if B is None or A is B:
        return A
    return _merge(A, B)


cdef int _reserve(Tape tp, int nbufs, int nargs, int nmeta, int naux) except -1:
    cdef cad_tape *T = &tp.t
    if (T.nbufs + nbufs > T.capbufs or T.nrecs + 1 > T.caprecs or T.nargs + nargs > T.capargs
            or T.nmeta + nmeta > T.capmeta or T.naux + naux > T.capaux):
        if cad_tape_reserve(T, T.nbufs + nbufs, T.nrecs + 1, T.nargs + nargs,
                            T.nmeta + nmeta, T.naux + naux) != CAD_OK:
            raise MemoryError("cad: cannot grow the tape")
    return 0


cdef cad_hid _push_buf(Tape tp, Tensor t, uint8_t flags, bint own) except -2:
    """register t's value (own: keep its ndarray alive for the sweep)"""
    cdef cad_tape *T = &tp.t
    cdef cad_buf *b
    cdef cnp.ndarray arr
    cdef DevArray da
    cdef int nd = 0, d, es
    if t._dev:
        da = <DevArray>t._arr
        nd = da.ndim
    elif not t._inline:
        arr = <cnp.ndarray>t._arr
        nd = cnp.PyArray_NDIM(arr)
    _reserve(tp, 1, 0, 2 * nd, 0)
    b = &T.bufs[T.nbufs]
    b.grad = NULL
    b.owner = NULL
    b.leaf = NULL
    b.sgrad = 0.0
    b.hasg = 0
    b.version = 0
    b.dtype = t._dtype
    b.meta = T.nmeta
    b.ndim = nd
    if t._dev:
        b.flags = flags | BUF_CUDA
        b.sval = 0.0
        b.data = da.ptr
        b.size = da.size
        for d in range(nd):
            T.meta[T.nmeta + d] = da.shp[d]
            T.meta[T.nmeta + nd + d] = da.st[d]
        T.nmeta += 2 * nd
        if own:
            Py_INCREF(da)
            b.owner = <void *>da
    elif t._inline:
        b.flags = flags | BUF_INLINE
        b.sval = t._sval
        b.data = NULL
        b.size = 1
    else:
        b.flags = flags
        b.sval = 0.0
        b.data = <char *>cnp.PyArray_DATA(arr)
        b.size = cnp.PyArray_SIZE(arr)
        es = _ESIZE[t._dtype]
        for d in range(nd):
            T.meta[T.nmeta + d] = cnp.PyArray_DIMS(arr)[d]
            T.meta[T.nmeta + nd + d] = cnp.PyArray_STRIDES(arr)[d] // es
        T.nmeta += 2 * nd
        if own:
            Py_INCREF(arr)
            b.owner = <void *>arr
    T.nbufs += 1
    return T.nbufs - 1


cdef inline cad_hid _push_scalar(Tape tp, double v, uint8_t flags) except -2:
    cdef cad_tape *T = &tp.t
    cdef cad_buf *b
    if T.nbufs >= T.capbufs:
        _reserve(tp, 1, 0, 0, 0)
    b = &T.bufs[T.nbufs]
    b.data = NULL
    b.grad = NULL
    b.owner = NULL
    b.leaf = NULL
    b.sval = v
    b.sgrad = 0.0
    b.size = 1
    b.meta = T.nmeta
    b.ndim = 0
    b.version = 0
    b.dtype = CAD_F64
    b.flags = flags | BUF_INLINE
    b.hasg = 0
    T.nbufs += 1
    return T.nbufs - 1


cdef inline void _own(Tape tp, cad_hid h, Tensor t):
    cdef cad_buf *b = &tp.t.bufs[h]
    if b.owner == NULL and not (b.flags & BUF_INLINE):
        Py_INCREF(t._arr)
        b.owner = <void *>t._arr


cdef cad_hid _handle(Tape tp, Tensor t, double v, bint need) except -2:
    """the handle of an input on tape tp (registering it); -1 for a constant
    whose value the derivative does not read"""
    cdef Tape tt
    cdef cad_hid h
    if t is None:
        return _push_scalar(tp, v, 0) if need else -1
    if t._tape is not None:
        tt = _resolved(t)
        if tt is tp:
            if need:
                _own(tp, t._h, t)
            return t._h
        # a value of a consumed tape: usable as data, but no gradient reaches it
        return _push_buf(tp, t, BUF_RG | BUF_DEAD, need)
    if t._rg:
        if t._lser == tp._serial and t._lver == t._version:
            if need:
                _own(tp, t._lh, t)
            return t._lh
        h = _push_buf(tp, t, BUF_RG | BUF_LEAF, need)
        Py_INCREF(t)
        tp.t.bufs[h].leaf = <void *>t
        tp.t.bufs[h].version = t._version
        t._lser = tp._serial
        t._lh = h
        t._lver = t._version
        return h
    if need:
        return _push_buf(tp, t, 0, True)
    return -1


cdef inline int _push_rec(Tape tp, int op, cad_hid out, cad_hid *args, int nargs,
                          int64_t *aux, int naux) except -1:
    cdef cad_tape *T = &tp.t
    cdef cad_rec *r
    cdef int i
    if T.nrecs >= T.caprecs or T.nargs + nargs > T.capargs or T.naux + naux > T.capaux:
        _reserve(tp, 0, nargs, 0, naux)
    r = &T.recs[T.nrecs]
    r.op = op
    r.nargs = nargs
    r.out = out
    r.arg = T.nargs
    for i in range(nargs):
        T.args[T.nargs + i] = args[i]
    T.nargs += nargs
    if naux:
        r.aux = T.naux
        for i in range(naux):
            T.aux[T.naux + i] = aux[i]
        T.naux += naux
    else:
        r.aux = -1
    T.nrecs += 1
    return 0


cdef int _record(int op, Tensor r, list ins, int need, int64_t *aux, int naux) except -1:
    """record op(ins) -> r.  need: bit i = the sweep reads input i's value,
    bit 7 = it reads the output's; need == -1: every input is registered (their
    shapes are read) and kept.  The output requires grad when an input does (grad
    mode on, float result); in record mode every input is registered and kept."""
    cdef Tape tp = None
    cdef Tensor t
    cdef int i, n = len(ins)
    cdef bint rg = False
    cdef cad_hid small[8]
    cdef cad_hid *hs = small
    cdef cad_hid ho
    for i in range(n):
        t = <Tensor>ins[i]
        if t is not None:
            if t._rg:
                rg = True
            if t._tape is not None:
                tp = _join(tp, _input_tape(t))
    rg = rg and not cad_grad_off and _isfloat(r._dtype)
    if cad_rec_mode:
        need = -1
    if tp is None:
        tp = Tape.__new__(Tape)
    if n > 8:
        hs = <cad_hid *>malloc(n * sizeof(cad_hid))
        if hs == NULL:
            raise MemoryError()
    try:
        for i in range(n):
            hs[i] = _handle(tp, <Tensor>ins[i], 0.0, need == -1 or (i < 7 and (need >> i) & 1))
        if r._inline:
            ho = _push_scalar(tp, r._sval, BUF_RG if rg else 0)
        else:
            ho = _push_buf(tp, r, BUF_RG if rg else 0, need != -1 and (need >> 7) & 1)
        _push_rec(tp, op, ho, hs, n, aux, naux)
    finally:
        if hs != small:
            free(hs)
    r._tape = tp
    r._h = ho
    r._rg = rg
    return 0


cdef int _record1(int op, Tensor r, Tensor x, int need, int64_t *aux, int naux) except -1:
    """_record for one input (views of one tensor: the seed's t[i])"""
    cdef Tape tp = _input_tape(x)
    cdef cad_hid h, ho
    cdef bint rg = x._rg and not cad_grad_off and _isfloat(r._dtype)
    if tp is None:
        tp = Tape.__new__(Tape)
    h = _handle(tp, x, 0.0, cad_rec_mode or (need & 1))
    if r._inline:
        ho = _push_scalar(tp, r._sval, BUF_RG if rg else 0)
    else:
        ho = _push_buf(tp, r, BUF_RG if rg else 0, (need >> 7) & 1)
    _push_rec(tp, op, ho, &h, 1, aux, naux)
    r._tape = tp
    r._h = ho
    r._rg = rg
    return 0


cdef int _rec_scalar(int op, Tensor r, Tensor ta, double va, Tensor tb, double vb, int n,
                     bint rg) except -1:
    """record an op on inline float64 scalars (the fast path)"""
    cdef Tape tp = _join(_input_tape(ta), _input_tape(tb) if n == 2 else None)
    cdef int need = 0
    cdef cad_hid hs[2]
    cdef cad_hid ho
    if tp is None:
        tp = Tape.__new__(Tape)
    if cad_rec_mode:
        need = 3
    else:
        if ta is not None and ta._rg:
            need |= cad_uses_mask(op, 0)
        if n == 2 and tb is not None and tb._rg:
            need |= cad_uses_mask(op, 1)
    hs[0] = _handle(tp, ta, va, need & 1)
    if n == 2:
        hs[1] = _handle(tp, tb, vb, need & 2)
    ho = _push_scalar(tp, r._sval, BUF_RG if rg else 0)
    _push_rec(tp, op, ho, hs, n, NULL, 0)
    r._tape = tp
    r._h = ho
    r._rg = rg
    return 0


# ---------------------------------------------------------------- public-function tables

cdef list _API = []
cdef dict _NP_REF = {}
cdef dict _UFUNCS = {}


def set_api(list fns):
    """the Python functions behind Tensor methods, in op-table order (cad.ops.bind)"""
    global _API
    _API = fns


def set_refs(dict refs, dict ufuncs):
    """numpy functions for integer fallbacks, and numpy ufunc name -> cad function"""
    global _NP_REF, _UFUNCS
    _NP_REF = refs
    _UFUNCS = ufuncs


# ---------------------------------------------------------------- Tensor

include "_tensor.pxi"


# ---------------------------------------------------------------- devices

cdef class Device:
    """A device: cad.device('cpu') or cad.device('cuda') (cuda:0, the one GPU cad uses)."""
    cdef readonly str type

    def __init__(self, type="cpu"):
        self.type = str(type).split(":")[0]

    @property
    def index(self):
        return 0 if self.type == "cuda" else None

    def __repr__(self):
        if self.type == "cuda":
            return "device(type='cuda', index=0)"
        return f"device(type='{self.type}')"

    def __str__(self):
        return "cuda:0" if self.type == "cuda" else self.type

    def __eq__(self, other):
        if isinstance(other, Device):
            return self.type == (<Device>other).type
        if isinstance(other, str):
            return self.type == other.split(":")[0]
        return NotImplemented

    def __hash__(self):
        return hash(self.type)


cdef Device _CPU = Device("cpu")


def device(spec="cpu"):
    return spec if isinstance(spec, Device) else Device(spec)


cdef int _check_device(object dev, str who) except -1:
    """the device code of a device spec (0 cpu, 1 cuda); CUDA is made ready (or a
    DeviceError says what is missing)"""
    cdef str spec = str(dev) if isinstance(dev, Device) else str(dev)
    cdef str t = spec.split(":")[0]
    if t == "cpu":
        return 0
    if t == "cuda":
        if ":" in spec and spec.split(":", 1)[1] not in ("0", ""):
            raise DeviceError(f"{who}: device {spec!r}: cad uses one GPU, cuda:0")
        _cuda_ready(who)
        return 1
    raise DeviceError(f"{who}: unknown device {dev!r}; cad knows 'cpu' and 'cuda'")


include "device.pxi"


# ---------------------------------------------------------------- construction helpers

cdef inline Tensor _new_inline(double v):
    cdef Tensor r = Tensor.__new__(Tensor)
    r._sval = v
    r._inline = True
    r._dtype = CAD_F64
    return r


cdef Tensor _wrap(object a):
    """Tensor over ndarray a (made read-only; a must not be shared with the user)"""
    if not isinstance(a, _np.ndarray):
        a = _np.asarray(a)   # numpy returns scalars from 0-d operations
    cdef cnp.ndarray arr = <cnp.ndarray>a
    cdef int dt = _dt_from_typenum(cnp.PyArray_TYPE(arr))
    cdef Tensor r
    if dt < 0:
        return _wrap(_np_to_supported(arr, "tensor"))
    if dt == CAD_F64 and cnp.PyArray_NDIM(arr) == 0:
        return _new_inline((<double *>cnp.PyArray_DATA(arr))[0])
    if cnp.PyArray_NDIM(arr) > MAXDIM:   # (the C side's shape arrays have MAXDIM entries)
        raise ShapeError(f"tensor: shape {(<object>arr).shape} has {cnp.PyArray_NDIM(arr)} dimensions; cad "
                         f"takes at most {MAXDIM}")
    r = Tensor.__new__(Tensor)
    cnp.PyArray_CLEARFLAGS(arr, cnp.NPY_ARRAY_WRITEABLE)
    r._arr = arr
    r._dtype = dt
    return r


cdef object _np_to_supported(cnp.ndarray a, str who):
    k = a.dtype.kind
    if k == "f":
        return a.astype(_np.float32 if a.dtype.itemsize < 4 else _np.float64)
    if k in "iu":
        if k == "u" and a.dtype.itemsize == 8 and a.size and a.max() > 0x7fffffffffffffff:
            raise OverflowError(f"{who}: uint64 value {int(a.max())} does not fit int64, cad's integer "
                                "dtype (convert to float64, or to int64 if wrapping is intended)")
        return a.astype(_np.int64)
    if k == "b":
        return a.astype(_np.bool_)
    raise DTypeError(f"{who}: dtype {a.dtype} is not supported; cad has float64, float32, int64 and bool")


cdef object _arr_of(Tensor t):
    """t's value as a read-only ndarray (materialised for inline scalars; a host
    copy for a CUDA tensor)"""
    cdef cnp.ndarray a
    if t._dev:
        a = <cnp.ndarray>_ddownload(<DevArray>t._arr)
        cnp.PyArray_CLEARFLAGS(a, cnp.NPY_ARRAY_WRITEABLE)
        return a
    if t._arr is None:
        a = cnp.PyArray_EMPTY(0, NULL, cnp.NPY_DOUBLE, 0)
        (<double *>cnp.PyArray_DATA(a))[0] = t._sval
        cnp.PyArray_CLEARFLAGS(a, cnp.NPY_ARRAY_WRITEABLE)
        t._arr = a
    return t._arr


cdef cnp.ndarray _empty(int nd, cnp.npy_intp *dims, int dt):
    """an uninitialised array for a result; large ones come from cad's block cache
    (alloc.c) so their pages are not faulted in again on every op"""
    cdef size_t nb = _ESIZE[dt]
    cdef int d
    cdef void *p
    cdef cnp.ndarray a
    for d in range(nd):
        nb *= <size_t>dims[d]
    if nb < 65536:
        return cnp.PyArray_EMPTY(nd, dims, _TYPENUM[dt], 0)
    p = cad_alloc(nb)
    if p == NULL:
        raise MemoryError(f"cad: cannot allocate {nb} bytes")
    a = cnp.PyArray_SimpleNewFromData(nd, dims, _TYPENUM[dt], p)
    cnp.set_array_base(a, PyCapsule_New(p, NULL, _free_capsule))
    return a


cdef cnp.ndarray _empty_shape(tuple shape, int dt):
    cdef cnp.npy_intp dims[MAXDIM]
    cdef int d, nd = len(shape)
    if nd > MAXDIM:
        raise ShapeError(f"cad: at most {MAXDIM} dimensions")
    for d in range(nd):
        dims[d] = shape[d]
    return _empty(nd, dims, dt)


def empty_cache():
    """Return the blocks cad keeps for reuse to the system; the number of bytes."""
    return cad_cache_clear()


def cache_info():
    """(bytes kept for reuse, limit)"""
    return cad_cache_bytes(), cad_cache_limit


def set_cache_limit(object nbytes):
    """How many bytes of freed large blocks cad keeps for reuse (default 512 MiB)."""
    global cad_cache_limit
    if isinstance(nbytes, bool) or not isinstance(nbytes, (int, _np.integer)):
        raise TypeError(f"set_cache_limit: nbytes must be an int, got {type(nbytes).__name__}")
    if not 0 <= nbytes < (1 << 63):
        raise ValueError(f"set_cache_limit: nbytes must be between 0 and 2**63 - 1, got {nbytes}")
    cad_cache_limit = <size_t>int(nbytes)


def from_numpy(object a, object dtype=None, bint requires_grad=False, bint copy=True):
    """cad.tensor's core: a tensor holding (a copy of) ndarray-like data"""
    cdef Tensor r
    cdef int dt
    arr = _np.array(a, copy=True, order="K") if copy else _np.asarray(a)
    if not isinstance(arr, _np.ndarray):
        arr = _np.asarray(arr)
    if arr.dtype.kind not in "fiub":
        raise DTypeError(f"tensor: cannot make a tensor from data of dtype {arr.dtype}")
    if dtype is not None:
        dt = _dtype_code(dtype, "tensor")
        if arr.dtype != _DTYPES[dt]:
            if dt == CAD_I64 and arr.dtype.kind == "u":
                arr = _np_to_supported(arr, "tensor")
            arr = arr.astype(_DTYPES[dt])
    elif _dt_from_typenum(cnp.PyArray_TYPE(<cnp.ndarray>arr)) < 0:
        arr = _np_to_supported(arr, "tensor")
    r = _wrap(arr)
    if requires_grad:
        r.requires_grad_(True)
    return r


cpdef Tensor as_tensor(object x):
    """x as a Tensor: tensors pass through; scalars, lists and arrays are converted
    (numpy's dtypes: Python floats give float64)"""
    if type(x) is Tensor:
        return <Tensor>x
    if type(x) is float:
        return _new_inline(<double>x)
    if isinstance(x, Tensor):
        return <Tensor>x
    if isinstance(x, (list, tuple)):
        for e in x:
            if isinstance(e, Tensor):
                return _API_stack([as_tensor(e) for e in x])
    return from_numpy(x)


def as_float(object x, str who):
    """x as a floating tensor (integers and bools become float64)"""
    cdef Tensor t = as_tensor(x)
    if not _isfloat(t._dtype):
        return cast(t, float64)
    return t


# ---------------------------------------------------------------- shapes

cdef inline int _tndim(Tensor t):
    if t._dev:
        return (<DevArray>t._arr).ndim
    return 0 if t._inline else cnp.PyArray_NDIM(<cnp.ndarray>t._arr)


cdef inline cnp.npy_intp *_tdims(Tensor t):
    if t._dev:
        return <cnp.npy_intp *>(<DevArray>t._arr).shp
    return NULL if t._inline else cnp.PyArray_DIMS(<cnp.ndarray>t._arr)


cdef int _bshape(list ts, int64_t *out, str who) except -1:
    cdef int nd = 0, d, od, k
    cdef int64_t s, size
    cdef Tensor t
    for k in range(len(ts)):
        nd = max(nd, _tndim(<Tensor>ts[k]))
    if nd > MAXDIM:
        raise ShapeError(f"{who}: at most {MAXDIM} dimensions")
    for d in range(nd):
        size = 1
        for k in range(len(ts)):
            t = <Tensor>ts[k]
            od = d - (nd - _tndim(t))
            if od >= 0:
                s = _tdims(t)[od]
                if s != 1:
                    if size == 1:
                        size = s
                    elif size != s:
                        shapes = " and ".join(str((<Tensor>u).shape) for u in ts)
                        raise ShapeError(f"{who}: shapes {shapes} cannot be broadcast together "
                                         f"(dim {d - nd} is {size} in one and {s} in another)")
        out[d] = size
    return nd


cdef inline void _operand(cad_iter *it, int k, Tensor t):
    cdef cnp.ndarray arr
    cdef DevArray da
    cdef int nd, d, es
    cdef int64_t st[MAXDIM]
    if t._dev:
        da = <DevArray>t._arr
        cad_iter_operand(it, k, da.ptr, _ESIZE[da.dt], da.ndim, da.shp, da.st)
        return
    if t._inline:
        cad_iter_operand(it, k, <char *>&t._sval, 8, 0, NULL, NULL)
        return
    arr = <cnp.ndarray>t._arr
    nd = cnp.PyArray_NDIM(arr)
    es = _ESIZE[t._dtype]
    for d in range(nd):
        st[d] = cnp.PyArray_STRIDES(arr)[d] // es
    cad_iter_operand(it, k, <char *>cnp.PyArray_DATA(arr), es, nd, <int64_t *>cnp.PyArray_DIMS(arr), st)


def normalize_axes(int ndim, object axis, str who, bint unique=True):
    """axis (None, int or sequence) as a tuple of non-negative ints"""
    cdef list out = []
    cdef int a
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, (int, _np.integer)) and not isinstance(axis, bool):
        axis = (axis,)
    elif not isinstance(axis, (tuple, list)):
        raise TypeError(f"{who}: axis must be an int, a tuple of ints or None, got "
                        f"{type(axis).__name__} {axis!r}")
    for x in axis:
        if isinstance(x, bool) or not isinstance(x, (int, _np.integer)):
            raise TypeError(f"{who}: axis must be an int, a tuple of ints or None, got "
                            f"{type(x).__name__} {x!r} in {axis!r}")
        a = int(x)
        if a < -ndim or a >= ndim:
            raise ShapeError(f"{who}: axis {x} is out of bounds for a tensor of dimension {ndim}")
        if a < 0:
            a += ndim
        if unique and a in out:
            raise ShapeError(f"{who}: axis {a} is repeated")
        out.append(a)
    return tuple(out)


# ---------------------------------------------------------------- elementwise

cdef inline bint _small_int(object v, double *out):
    cdef int ovf = 0
    cdef long long i = PyLong_AsLongLongAndOverflow(v, &ovf)
    if ovf or i > 9007199254740992 or i < -9007199254740992:
        return False
    out[0] = <double>i
    return True


cdef object _ew1(int op, object x):
    cdef Tensor t, r
    if type(x) is Tensor:
        t = <Tensor>x
        if t._inline:
            r = _new_inline(cad_fwd_s1(op, t._sval))
            if t._rg and not cad_grad_off:
                _rec_scalar(op, r, t, 0.0, None, 0.0, 1, True)
            elif cad_rec_mode and t._tape is not None:
                _rec_scalar(op, r, t, 0.0, None, 0.0, 1, False)
            return r
    return _ew_general(op, (x,))


cdef inline Tensor _ss2(int op, Tensor ta, double va, Tensor tb, double vb):
    cdef Tensor r = _new_inline(cad_fwd_s2(op, va, vb))
    if not cad_grad_off and ((ta is not None and ta._rg) or (tb is not None and tb._rg)):
        _rec_scalar(op, r, ta, va, tb, vb, 2, True)
    elif cad_rec_mode and ((ta is not None and ta._tape is not None) or
                           (tb is not None and tb._tape is not None)):
        _rec_scalar(op, r, ta, va, tb, vb, 2, False)
    return r


cdef object _ew2(int op, object a, object b):
    cdef Tensor ta, tb
    cdef double v = 0.0
    if type(a) is Tensor:
        ta = <Tensor>a
        if ta._inline:
            if type(b) is Tensor:
                tb = <Tensor>b
                if tb._inline:
                    return _ss2(op, ta, ta._sval, tb, tb._sval)
            elif type(b) is float:
                return _ss2(op, ta, ta._sval, None, <double>b)
            elif type(b) is int and _small_int(b, &v):
                return _ss2(op, ta, ta._sval, None, v)
    elif type(b) is Tensor:
        tb = <Tensor>b
        if tb._inline:
            if type(a) is float:
                return _ss2(op, None, <double>a, tb, tb._sval)
            elif type(a) is int and _small_int(a, &v):
                return _ss2(op, None, v, tb, tb._sval)
    return _ew_general(op, (a, b))


cdef object _ewn(int op, tuple args):
    return _ew_general(op, args)


cdef int _weak_kind(object a):
    """Python scalars are 'weak' (NEP 50): 3 bool, 2 int, 1 float; -1 otherwise"""
    cdef type t = type(a)
    if t is float:
        return 1
    if t is int:
        return 2
    if t is bool:
        return 3
    return -1


cdef inline Tensor _scalar_operand(object v, int rdt, int dev):
    """a Python scalar as an operand of dtype rdt on device dev (0 CPU, 1 CUDA)"""
    if dev:
        return _dconst(v, rdt)
    if rdt == CAD_F64:
        return _new_inline(float(v))
    return _wrap(_np.array(v, dtype=_DTYPES[rdt]))


cdef object _ew_general(int op, tuple args):
    cdef int n = len(args), i, rdt = -1, wk, weak = -1, dt, nd, dev
    cdef str who = _OP_NAMES[op]
    cdef list ts = [None] * n
    cdef list ins
    cdef bint is_where = op == OP_WHERE, rg = False
    cdef Tensor t, r
    cdef int64_t oshape[MAXDIM]
    cdef cad_iter it
    cdef cnp.ndarray out
    cdef DevArray dout
    cdef char *optr
    cdef int st
    cdef int64_t pmin
    for i in range(n):
        a = args[i]
        if isinstance(a, Tensor):
            t = <Tensor>a
            ts[i] = t
            if not (is_where and i == 0):
                rdt = _promote(rdt, t._dtype)
        else:
            wk = _weak_kind(a)
            if wk < 0:
                t = as_tensor(a)
                ts[i] = t
                if not (is_where and i == 0):
                    rdt = _promote(rdt, t._dtype)
            elif not (is_where and i == 0):
                weak = wk if weak < 0 else min(weak, wk)
    dev = _common_dev(ts, who)
    # weak Python scalars only raise the kind (bool < int < float)
    if rdt < 0:
        rdt = CAD_F64 if weak == 1 or weak < 0 else (CAD_I64 if weak == 2 else CAD_BOOL)
    elif weak == 1 and not _isfloat(rdt):
        rdt = CAD_F64
    elif weak == 2 and rdt == CAD_BOOL:
        rdt = CAD_I64
    if not _isfloat(rdt):
        if op not in _NP_REF:
            rdt = CAD_F64
        else:
            for i in range(n):
                _escape(<Tensor>ts[i], _OP_NAMES[op] + " on integers")
            arrs = [_arr_of(<Tensor>ts[i]) if ts[i] is not None else args[i] for i in range(n)]
            return _to_dev(_wrap(_np.asarray(_NP_REF[op](*arrs))), dev)
    # every operand as a tensor of the result dtype (the condition of where: bool)
    for i in range(n):
        t = <Tensor>ts[i]
        if is_where and i == 0:
            if t is None:
                t = _dconst(bool(args[i]), CAD_BOOL) if dev else from_numpy(bool(args[i]))
            elif t._dtype != CAD_BOOL:
                t = <Tensor>_boolop(OP_NE, (t, 0))
        elif t is None:
            t = _scalar_operand(args[i], rdt, dev)
        elif t._dtype != rdt:
            t = <Tensor>cast(t, _DTYPES[rdt])
        ts[i] = t
        if _mode1(t):
            rg = True
    nd = _bshape(ts, oshape, who)
    it.nop = n + 1
    it.ndim = nd
    for i in range(nd):
        it.shape[i] = oshape[i]
    r = None
    if dev:
        dout = _dnew(nd, oshape, rdt, who)
        optr = dout.ptr
    elif nd == 0 and rdt == CAD_F64:
        r = _new_inline(0.0)
        optr = <char *>&r._sval
    else:
        out = _empty(nd, <cnp.npy_intp *>oshape, rdt)
        optr = <char *>cnp.PyArray_DATA(out)
    cad_iter_operand(&it, 0, optr, _ESIZE[rdt], nd, oshape, NULL if nd == 0 else _contig(nd, oshape))
    for i in range(n):
        _operand(&it, i + 1, <Tensor>ts[i])
    pmin = cad_par_min_heavy if cad_fwd_heavy(op) else cad_par_min
    if dev:
        st = _run_dev(&it, cad_fwd_row(op, rdt))
        _dcheck(st, who)
        r = _dwrap(dout)
    elif r is None and cnp.PyArray_SIZE(out) >= 4096:
        with nogil:
            st = cad_iter_run_t(&it, cad_fwd_row(op, rdt), NULL, NULL, pmin)
    else:
        st = cad_iter_run_t(&it, cad_fwd_row(op, rdt), NULL, NULL, pmin)
    if r is None:
        r = _wrap(out)
    if rg:
        need = 0
        for i in range(n):
            if (<Tensor>ts[i])._rg:
                need |= cad_uses_mask(op, i)
        _record(op, r, ts, need, NULL, 0)
    return r


cdef object _bitop(int op, object npfn, object a, object b):
    """& | ^: logic on bools (recorded), numpy's bitwise ops on integers"""
    cdef Tensor ta = as_tensor(a) if not isinstance(a, (bool, int)) else None
    cdef Tensor tb = as_tensor(b) if not isinstance(b, (bool, int)) else None
    if (ta is None or ta._dtype == CAD_BOOL) and (tb is None or tb._dtype == CAD_BOOL):
        return _boolop(op, (a, b))
    return _nondiff(npfn, (a, b))


cdef Tensor _view_norg(Tensor x, tuple shape):
    """an identity view of x recorded for its value only (detach in cad.record)"""
    cdef Tensor r = _dwrap(<DevArray>x._arr) if x._dev else _wrap(_arr_of(x))
    cdef int nd = len(shape), d
    cdef int64_t *aux = <int64_t *>malloc((2 + 2 * nd) * sizeof(int64_t))
    cs = _cstrides(shape)
    if aux == NULL:
        raise MemoryError()
    aux[0] = 0
    aux[1] = nd
    for d in range(nd):
        aux[2 + d] = shape[d]
        aux[2 + nd + d] = cs[d]
    try:
        _record1(OP_VIEW, r, x, 0, aux, 2 + 2 * nd)
    finally:
        free(aux)
    r._rg = False
    return r


cdef object _boolop(int op, tuple args):
    """a comparison or logic op: inputs promoted to a common dtype (numpy's rules,
    Python scalars weak), a bool result; recorded like any op (never requires grad)"""
    cdef int n = len(args), i, rdt = -1, wk, weak = -1, nd, st, dev
    cdef str who = _OP_NAMES[op]
    cdef list ts = [None] * n
    cdef Tensor t, r
    cdef int64_t oshape[MAXDIM]
    cdef cad_iter it
    cdef cnp.ndarray out
    cdef DevArray dout
    cdef bint rec = False
    for i in range(n):
        a = args[i]
        if isinstance(a, Tensor):
            ts[i] = a
            rdt = _promote(rdt, (<Tensor>a)._dtype)
        else:
            wk = _weak_kind(a)
            if wk < 0:
                ts[i] = as_tensor(a)
                rdt = _promote(rdt, (<Tensor>ts[i])._dtype)
            else:
                weak = wk if weak < 0 else min(weak, wk)
    dev = _common_dev(ts, who)
    if rdt < 0:
        rdt = CAD_F64 if weak == 1 or weak < 0 else (CAD_I64 if weak == 2 else CAD_BOOL)
    elif weak == 1 and not _isfloat(rdt):
        rdt = CAD_F64
    elif weak == 2 and rdt == CAD_BOOL:
        rdt = CAD_I64
    for i in range(n):
        t = <Tensor>ts[i]
        if t is None:
            t = _scalar_operand(args[i], rdt, dev)
        elif t._dtype != rdt:
            t = <Tensor>cast(t, _DTYPES[rdt])
        ts[i] = t
        if _mode1(t):
            rec = True
    nd = _bshape(ts, oshape, who)
    it.nop = n + 1
    it.ndim = nd
    for i in range(nd):
        it.shape[i] = oshape[i]
    if dev:
        dout = _dnew(nd, oshape, CAD_BOOL, who)
        cad_iter_operand(&it, 0, dout.ptr, 1, nd, oshape, NULL if nd == 0 else _contig(nd, oshape))
    else:
        out = _empty(nd, <cnp.npy_intp *>oshape, CAD_BOOL)
        cad_iter_operand(&it, 0, <char *>cnp.PyArray_DATA(out), 1, nd, oshape,
                         NULL if nd == 0 else _contig(nd, oshape))
    for i in range(n):
        _operand(&it, i + 1, <Tensor>ts[i])
    if dev:
        _dcheck(_run_dev(&it, cad_bool_row(op, rdt)), who)
        r = _dwrap(dout)
    else:
        st = cad_iter_run(&it, cad_bool_row(op, rdt), NULL, NULL)
        r = _wrap(out)
    if rec:
        _record(op, r, ts, 0, NULL, 0)
    return r


cdef int64_t _cst[MAXDIM]

cdef int64_t *_contig(int nd, const int64_t *shape):
    cad_contig_strides(nd, shape, _cst)
    return _cst


cdef object _nondiff(object fn, tuple args):
    """numpy on the values; the result does not require grad"""
    for a in args:
        if isinstance(a, Tensor):
            _escape(<Tensor>a, fn.__name__)
    cdef int dev = _common_dev([a for a in args if isinstance(a, Tensor)], fn.__name__)
    arrs = [_arr_of(<Tensor>a) if isinstance(a, Tensor) else a for a in args]
    try:
        res = fn(*arrs)
    except TypeError as e:   # numpy's "no loop for these types"
        dts = " and ".join(str(_np.asarray(a).dtype) if a is not None else "None" for a in arrs)
        raise DTypeError(f"{fn.__name__}: operands of dtypes {dts} are not supported ({e})") from None
    except ValueError as e:
        shapes = " and ".join(str(_np.shape(a)) for a in arrs)
        raise ShapeError(f"{fn.__name__}: {e} (operands of shapes {shapes})") from None
    res = _np.asarray(res)
    if res.dtype.kind not in "fiub":
        raise DTypeError(f"{fn.__name__}: the result has dtype {res.dtype}; cad has float64, float32, "
                         "int64 and bool (was an operand a string or an object?)")
    return _to_dev(_wrap(res), dev)


# ---------------------------------------------------------------- casts

def cast(object x, object dtype):
    """x converted to dtype; between float dtypes the gradient flows back"""
    cdef Tensor t = as_tensor(x), r
    cdef int dt = _dtype_code(dtype, "astype")
    if dt == t._dtype:
        return t
    if t._dev:
        r = _dwrap(_dcopy(<DevArray>t._arr, dt))
    else:
        r = _wrap(_arr_of(t).astype(_DTYPES[dt]))
    if _mode1(t):
        _record(OP_CAST, r, [t], 0, NULL, 0)
    return r


# ---------------------------------------------------------------- reductions

cdef dict _RKIND = {}


def reduce(int op, object x, object axis, bint keepdims):
    """sum/max/min/prod over axis (None: all) as numpy"""
    cdef Tensor t = as_tensor(x), r
    cdef str who = _OP_NAMES[op]
    cdef int nd = _tndim(t), d, kind, st
    cdef uint64_t mask = 0
    cdef int64_t shape[MAXDIM]
    cdef int64_t xst[MAXDIM]
    cdef int64_t oshape[MAXDIM]
    cdef int ond = 0
    cdef cnp.ndarray out, xa
    cdef DevArray dout, dx
    cdef char *optr
    cdef char *xptr
    cdef int64_t aux[1]
    axes = normalize_axes(nd, axis, who)
    if not _isfloat(t._dtype):
        _escape(t, who + " of integers")
        return _to_dev(_wrap(_np.asarray(_NP_REF[op](_arr_of(t), axis=axes, keepdims=keepdims))), t._dev)
    for d in axes:
        mask |= (<uint64_t>1) << d
    for d in range(nd):
        shape[d] = _tdims(t)[d]
        if (mask >> d) & 1:
            if shape[d] == 0 and (op == OP_MAX or op == OP_MIN):
                raise ShapeError(f"{who}: reduction over axis {d} of size 0 has no identity "
                                 f"(tensor of shape {t.shape})")
            if keepdims:
                oshape[ond] = 1
                ond += 1
        else:
            oshape[ond] = shape[d]
            ond += 1
    kind = CAD_RSUM if op == OP_SUM else CAD_RMAX if op == OP_MAX else CAD_RMIN if op == OP_MIN else CAD_RPROD
    if t._dev:
        dout = _dnew(ond, oshape, t._dtype, who)
        dx = <DevArray>t._arr
        with nogil:
            cad_set_dev(1)
            st = cad_reduce(kind, t._dtype, dout.ptr, dx.ptr, nd, shape, dx.st, mask)
            cad_set_dev(0)
        _dcheck(st, who)
        r = _dwrap(dout)
        if _mode1(t):
            aux[0] = <int64_t>mask
            _record(op, r, [t], 0 if op == OP_SUM else (1 if op == OP_PROD else 1 | 128), aux, 1)
        return r
    if ond == 0 and t._dtype == CAD_F64:
        r = _new_inline(0.0)
        optr = <char *>&r._sval
    else:
        out = _empty(ond, <cnp.npy_intp *>oshape, t._dtype)
        optr = <char *>cnp.PyArray_DATA(out)
        r = None
    if t._inline:
        xptr = <char *>&t._sval
    else:
        xa = <cnp.ndarray>t._arr
        xptr = <char *>cnp.PyArray_DATA(xa)
        for d in range(nd):
            xst[d] = cnp.PyArray_STRIDES(xa)[d] // _ESIZE[t._dtype]
    with nogil:
        st = cad_reduce(kind, t._dtype, optr, xptr, nd, shape, xst, mask)
    if r is None:
        r = _wrap(out)
    if _mode1(t):
        aux[0] = <int64_t>mask
        _record(op, r, [t], 0 if op == OP_SUM else (1 if op == OP_PROD else 1 | 128), aux, 1)
    return r


# ---------------------------------------------------------------- views

cdef Tensor _view(Tensor x, object arr, int64_t off, tuple shape, tuple strides):
    """record a view of x: value arr, and (offset, shape, strides) relative to x's
    contiguous layout for the vjp"""
    cdef Tensor r
    cdef int nd = len(shape), d
    cdef int64_t *aux
    if isinstance(arr, DevArray):
        r = _dwrap(<DevArray>arr)
    else:
        r = _wrap(arr if isinstance(arr, _np.ndarray) else _np.asarray(arr))
    if _mode1(x):
        aux = <int64_t *>malloc((2 + 2 * nd) * sizeof(int64_t))
        if aux == NULL:
            raise MemoryError()
        aux[0] = off
        aux[1] = nd
        for d in range(nd):
            aux[2 + d] = shape[d]
            aux[2 + nd + d] = strides[d]
        try:
            _record(OP_VIEW, r, [x], 0, aux, 2 + 2 * nd)
        finally:
            free(aux)
    return r


cdef tuple _cstrides(tuple shape):
    cdef int64_t s = 1
    cdef list out = [0] * len(shape)
    for d in range(len(shape) - 1, -1, -1):
        out[d] = s
        s *= max(<int64_t>shape[d], 1)
    return tuple(out)


def reshape(object x, tuple shape):
    """x with a new shape (C order); -1 infers one size"""
    cdef Tensor t = as_tensor(x)
    cdef int64_t n = t.size
    cdef object known = 1
    cdef int neg = -1
    for s in shape:
        if isinstance(s, bool) or not isinstance(s, (int, _np.integer)):
            raise TypeError(f"reshape: sizes must be ints, got {type(s).__name__} {s!r} in {shape}")
    shape = tuple(int(s) for s in shape)
    for i, s in enumerate(shape):
        if s == -1:
            if neg >= 0:
                raise ShapeError(f"reshape: only one dimension can be -1, got {shape}")
            neg = i
        elif s < 0:
            raise ShapeError(f"reshape: negative size in {shape}")
        else:
            known *= s
    if neg >= 0:
        if known == 0 or n % known or n // known > (1 << 62):
            raise ShapeError(f"reshape: cannot reshape tensor of shape {t.shape} ({n} elements) "
                             f"into shape {shape}")
        shape = shape[:neg] + (n // known,) + shape[neg + 1:]
    elif known != n:
        raise ShapeError(f"reshape: cannot reshape tensor of shape {t.shape} ({n} elements) "
                         f"into shape {shape} ({known} elements)")
    if t._dev:
        return _view(t, _dview(_dcontig(<DevArray>t._arr), 0, shape, _cstrides(shape)), 0, shape,
                     _cstrides(shape))
    return _view(t, _arr_of(t).reshape(shape), 0, shape, _cstrides(shape))


def contiguous(object x):
    """x with C-contiguous storage (recorded as an identity view)"""
    cdef Tensor t = as_tensor(x)
    if t._dev:
        if (<DevArray>t._arr).contig():
            return t
        shape = t.shape
        return _view(t, _dcopy(<DevArray>t._arr), 0, shape, _cstrides(shape))
    if t._inline or (<cnp.ndarray>t._arr).flags.c_contiguous:
        return t
    shape = t.shape
    return _view(t, _np.ascontiguousarray(t._arr), 0, shape, _cstrides(shape))


def transpose(object x, tuple axes):
    """x with its axes permuted"""
    cdef Tensor t = as_tensor(x)
    cdef int nd = _tndim(t)
    ax = normalize_axes(nd, axes, "transpose")
    if len(ax) != nd:
        raise ShapeError(f"transpose: axes {axes} do not match a tensor of dimension {nd}")
    cs = _cstrides(t.shape)
    shape = t.shape
    if t._dev:
        ds = _dstrides(<DevArray>t._arr)
        return _view(t, _dview(<DevArray>t._arr, 0, tuple(shape[a] for a in ax), tuple(ds[a] for a in ax)),
                     0, tuple(shape[a] for a in ax), tuple(cs[a] for a in ax))
    return _view(t, _arr_of(t).transpose(ax), 0, tuple(shape[a] for a in ax), tuple(cs[a] for a in ax))


def expand(object x, tuple shape):
    """x broadcast to shape (numpy's broadcast_to)"""
    cdef Tensor t = as_tensor(x)
    cdef int nd = len(shape), xnd = _tndim(t), off = nd - xnd
    xs = t.shape
    if off < 0:
        raise ShapeError(f"broadcast_to: cannot broadcast shape {xs} to the shorter shape {shape}")
    cs = _cstrides(xs)
    st = []
    for d in range(nd):
        if d < off:
            st.append(0)
        elif xs[d - off] == shape[d]:
            st.append(cs[d - off])
        elif xs[d - off] == 1:
            st.append(0)
        else:
            raise ShapeError(f"broadcast_to: cannot broadcast shape {xs} to {shape} (dim {d})")
    if t._dev:
        ds = _dstrides(<DevArray>t._arr)
        vst = tuple(0 if d < off or xs[d - off] != shape[d] else ds[d - off] for d in range(nd))
        return _view(t, _dview(<DevArray>t._arr, 0, shape, vst), 0, shape, tuple(st))
    return _view(t, _np.broadcast_to(_arr_of(t), shape), 0, shape, tuple(st))


def squeeze_axes(object x, tuple axes):
    cdef Tensor t = as_tensor(x)
    shape = tuple(s for i, s in enumerate(t.shape) if i not in axes)
    return reshape(t, shape)


cdef object _basic_index(tuple shape, tuple strides, tuple idx):
    """(offset, shape, strides) of a basic index (ints, slices, None, Ellipsis)
    applied to a layout given by shape/strides; idx is already valid for numpy"""
    cdef int nd = len(shape), d = 0, nreal = 0
    cdef int64_t off = 0, i, n
    out_shape = []
    out_st = []
    for e in idx:
        if e is not None and e is not Ellipsis:
            nreal += 1
    for e in idx:
        if e is None:
            out_shape.append(1)
            out_st.append(0)
        elif e is Ellipsis:
            for _ in range(nd - nreal):
                out_shape.append(shape[d])
                out_st.append(strides[d])
                d += 1
            nreal = nd   # a second Ellipsis is invalid and was rejected by numpy
        elif isinstance(e, slice):
            start, stop, step = e.indices(shape[d])
            n = len(range(start, stop, step))
            off += start * strides[d] if n > 0 else 0
            out_shape.append(n)
            out_st.append(strides[d] * step)
            d += 1
        else:
            i = int(e)
            if i < 0:
                i += shape[d]
            off += i * strides[d]
            d += 1
    while d < nd:
        out_shape.append(shape[d])
        out_st.append(strides[d])
        d += 1
    return off, tuple(out_shape), tuple(out_st)


cdef bint _is_basic(object e):
    return e is None or e is Ellipsis or isinstance(e, slice) or \
        (isinstance(e, (int, _np.integer)) and not isinstance(e, (bool, _np.bool_)))


cdef tuple _norm_index(object idx):
    cdef list out = []
    if not isinstance(idx, tuple):
        idx = (idx,)
    for e in idx:
        if isinstance(e, Tensor):
            _escape(<Tensor>e, "indexing with a tensor")
            e = _arr_of(<Tensor>e)
            if e.ndim == 0 and e.dtype.kind in "iu":
                e = int(e)
        out.append(e)
    return tuple(out)


cdef object _lin_index(Tensor t, tuple idx):
    """flat positions (C order of t) selected by idx: int64 array of the result's shape"""
    tmpl = _np.arange(t.size, dtype=_np.int64).reshape(t.shape)
    return _np.array(tmpl[idx], dtype=_np.int64, order="C")


cdef object _d_getitem(Tensor t, tuple idx):
    """indexing a CUDA tensor: basic indices are views, the others a gather"""
    shape = t.shape
    dummy = _np.lib.stride_tricks.as_strided(_np.zeros(1, dtype=_np.int8), shape, (0,) * len(shape))
    try:
        dummy[idx]   # numpy's checks and errors, on no data
    except IndexError as e:
        raise IndexError(f"{e} (indexing a tensor of shape {t.shape})") from None
    if all(_is_basic(e) for e in idx):
        off, vshape, vst = _basic_index(shape, _dstrides(<DevArray>t._arr), idx)
        value = _dview(<DevArray>t._arr, off, vshape, vst)
        if not _mode1(t):
            return _dwrap(value)
        off, vshape, vst = _basic_index(shape, _cstrides(shape), idx)
        return _view(t, value, off, vshape, vst)
    return gather(t, _lin_index(t, idx))


cdef object _getitem(Tensor t, object index):
    cdef tuple idx = _norm_index(index)
    if t._dev:
        return _d_getitem(t, idx)
    arr = _arr_of(t)
    try:
        val = arr[idx]
    except IndexError as e:
        raise IndexError(f"{e} (indexing a tensor of shape {t.shape})") from None
    if all(_is_basic(e) for e in idx):
        if not _mode1(t):
            return _wrap(_np.asarray(val))
        off, shape, st = _basic_index(t.shape, _cstrides(t.shape), idx)
        if not isinstance(val, _np.ndarray):
            val = _np.asarray(val)
        return _view(t, val, off, shape, st)
    if not _mode1(t):
        return _wrap(_np.asarray(val))
    return gather(t, _lin_index(t, idx), _np.asarray(val))


def gather(object x, object lin, object value=None, int nb=0):
    """out[b..., k...] = x[b..., flat position lin[k...]] (C order over x's trailing
    dims after nb batch dims); the result has shape x.shape[:nb] + lin.shape"""
    cdef Tensor t = as_tensor(x), r, tl
    cdef int64_t B = 1, xsize, n
    cdef object la, xa, out
    cdef int64_t aux[3]
    la = _np.array(_arr_of(<Tensor>lin) if isinstance(lin, Tensor) else lin, dtype=_np.int64, order="C",
                  copy=None)
    shape = t.shape
    for d in range(nb):
        B *= shape[d]
    xsize = t.size // B if B else 0
    if la.size and (la.min() < 0 or la.max() >= xsize):
        raise IndexError(f"gather: position out of range for {xsize} elements")
    if t._dev:
        xd = _dcontig(<DevArray>t._arr)
        od = _dnew_shape(shape[:nb] + la.shape, t._dtype, "gather")
        ld = _dupload(la, CAD_I64)
        _dcheck(cad_cu_gather(t._dtype, (<DevArray>od).ptr, (<DevArray>xd).ptr,
                              <const int64_t *>(<DevArray>ld).ptr, la.size, B, xsize), "gather")
        r = _dwrap(<DevArray>od)
        if _mode1(t):
            tl = _dwrap(<DevArray>ld)
            aux[0] = B
            aux[1] = xsize
            aux[2] = nb
            _record(OP_GATHER, r, [t, tl], 2, aux, 3)
        return r
    if value is None:
        xa = _np.ascontiguousarray(_arr_of(t))
        out = _empty_shape(shape[:nb] + la.shape, t._dtype)
        n = la.size
        cad_gather_kernel(t._dtype, <char *>cnp.PyArray_DATA(<cnp.ndarray>out),
                       <const char *>cnp.PyArray_DATA(<cnp.ndarray>xa),
                       <const int64_t *>cnp.PyArray_DATA(<cnp.ndarray>la), n, B, xsize)
        value = out
    r = _wrap(_np.asarray(value))
    if _mode1(t):
        tl = _wrap(la)
        aux[0] = B
        aux[1] = xsize
        aux[2] = nb
        _record(OP_GATHER, r, [t, tl], 2, aux, 3)
    return r


def scatter(object g, object lin, int64_t xsize, int nb=0):
    """the adjoint of gather: zeros of shape g.shape[:nb] + (xsize,), then
    out[b..., lin[k...]] += g[b..., k...]"""
    cdef Tensor t = as_tensor(g), r, tl
    cdef int64_t B = 1
    cdef object la, ga, out
    cdef int64_t aux[3]
    la = _np.array(_arr_of(<Tensor>lin) if isinstance(lin, Tensor) else lin, dtype=_np.int64, order="C",
                  copy=None)
    shape = t.shape
    for d in range(nb):
        B *= shape[d]
    if not _isfloat(t._dtype):
        raise DTypeError("scatter: float values only")
    if la.size and (la.min() < 0 or la.max() >= xsize):
        raise IndexError(f"scatter: position out of range for {xsize} elements")
    if t._dev:
        gd = _dcontig(<DevArray>t._arr)
        od = _dnew_shape(shape[:nb] + (xsize,), t._dtype, "scatter")
        ld = _dupload(la, CAD_I64)
        _dcheck(cad_cu_zero((<DevArray>od).ptr, <size_t>((<DevArray>od).size * _ESIZE[t._dtype])), "scatter")
        _dcheck(cad_cu_scatadd(t._dtype, (<DevArray>od).ptr, (<DevArray>gd).ptr,
                               <const int64_t *>(<DevArray>ld).ptr, la.size, B, xsize), "scatter")
        r = _dwrap(<DevArray>od)
        if _mode1(t):
            tl = _dwrap(<DevArray>ld)
            aux[0] = B
            aux[1] = xsize
            aux[2] = nb
            _record(OP_SCATTER, r, [t, tl], 2, aux, 3)
        return r
    ga = _np.ascontiguousarray(_arr_of(t))
    out = _empty_shape(shape[:nb] + (xsize,), t._dtype)
    cad_scatter_kernel(t._dtype, <char *>cnp.PyArray_DATA(<cnp.ndarray>out),
                    <const char *>cnp.PyArray_DATA(<cnp.ndarray>ga),
                    <const int64_t *>cnp.PyArray_DATA(<cnp.ndarray>la), la.size, B, xsize)
    r = _wrap(out)
    if _mode1(t):
        tl = _wrap(la)
        aux[0] = B
        aux[1] = xsize
        aux[2] = nb
        _record(OP_SCATTER, r, [t, tl], 2, aux, 3)
    return r


def as_strided(object x, int64_t offset, tuple shape, tuple strides):
    """a view of x given relative to x's contiguous (C-order) layout, recorded
    like every view (transforms build the views of their rules with it)"""
    cdef Tensor t = as_tensor(x)
    cdef int64_t es = _ESIZE[t._dtype]
    if t._dev:
        return _view(t, _dview(_dcontig(<DevArray>t._arr), offset, shape, strides), offset, shape, strides)
    flat = _np.ascontiguousarray(_arr_of(t)).reshape(-1)
    base = flat[offset:] if flat.size else flat
    val = _np.lib.stride_tricks.as_strided(base, shape=shape, strides=tuple(s * es for s in strides),
                                           writeable=False)
    return _view(t, val, offset, shape, strides)


def unview(object g, int64_t offset, tuple vshape, tuple vstrides, tuple out_shape):
    """the adjoint of as_strided: zeros of out_shape, whose strided window
    (offset, vshape, vstrides) receives g (overlaps add up)"""
    cdef Tensor t = as_tensor(g), r
    cdef int nd = len(vshape), d, st
    cdef cnp.ndarray out
    cdef cad_iter it
    cdef int64_t vs[MAXDIM]
    cdef int64_t vst[MAXDIM]
    cdef int64_t *aux
    cdef int64_t es = _ESIZE[t._dtype]
    cdef DevArray dout
    if t.shape != vshape:
        raise ShapeError(f"unview: value of shape {t.shape} does not match the window {vshape}")
    for d in range(nd):
        vs[d] = vshape[d]
        vst[d] = vstrides[d]
    it.nop = 2
    it.ndim = nd
    for d in range(nd):
        it.shape[d] = vs[d]
    if t._dev:
        dout = _dnew_shape(out_shape, t._dtype, "unview")
        _dcheck(cad_cu_zero(dout.ptr, <size_t>(dout.size * es)), "unview")
        cad_iter_operand(&it, 0, dout.ptr + offset * es, es, nd, vs, vst)
        _operand(&it, 1, t)
        _dcheck(_run_dev_acc(&it, cad_acc_row(t._dtype), t._dtype), "unview")
        r = _dwrap(dout)
    else:
        out = _empty_shape(out_shape, t._dtype)
        out.fill(0)   # written, not calloc'd: reading calloc'd pages first faults twice
        cad_iter_operand(&it, 0, <char *>cnp.PyArray_DATA(out) + offset * es, es, nd, vs, vst)
        _operand(&it, 1, t)
        st = cad_iter_run(&it, cad_acc_row(t._dtype), NULL, NULL)
        r = _wrap(out)
    if _mode1(t):
        aux = <int64_t *>malloc((2 + 2 * nd) * sizeof(int64_t))
        if aux == NULL:
            raise MemoryError()
        aux[0] = offset
        aux[1] = nd
        for d in range(nd):
            aux[2 + d] = vs[d]
            aux[2 + nd + d] = vst[d]
        try:
            _record1(OP_UNVIEW, r, t, 0, aux, 2 + 2 * nd)
        finally:
            free(aux)
    return r


cdef _setitem(Tensor x, object index, object value):
    cdef tuple idx = _norm_index(index)
    cdef Tensor v = as_tensor(value) if isinstance(value, Tensor) else None
    cdef Tensor r, tl
    cdef bint leaf = x._tape is None
    if leaf and x._rg and not cad_grad_off:
        raise BackwardError("setitem: in-place change of a leaf tensor that requires grad; wrap "
                            "it in `with cad.no_grad():` or build a new tensor")
    if v is not None:
        _common_dev([x, v], "setitem")
    if v is None:
        v = _wrap(_np.asarray(value, dtype=_DTYPES[x._dtype]))
        if x._dev:
            v = _to_dev(v, 1)
    if v._dtype != x._dtype:
        if _isfloat(x._dtype) and _isfloat(v._dtype):
            v = <Tensor>cast(v, _DTYPES[x._dtype])
        elif v._dev:
            v = _dwrap(_dcopy(<DevArray>v._arr, x._dtype))
        else:
            v = _wrap(_arr_of(v).astype(_DTYPES[x._dtype]))
    recording = _mode1(x) or _mode1(v)
    try:
        lin = _lin_index(x, idx)
    except IndexError as e:
        raise IndexError(f"{e} (assigning into a tensor of shape {x.shape})") from None
    if v.shape != lin.shape:
        try:
            v = <Tensor>expand(v, lin.shape)
        except ShapeError:
            raise ShapeError(f"setitem: value of shape {v.shape} cannot be broadcast to the "
                             f"indexed shape {lin.shape}") from None
    if x._dev:
        dnew = _dcopy(<DevArray>x._arr)
        dv = _dcontig(<DevArray>v._arr)
        dl = _dupload(lin, CAD_I64)
        _dcheck(cad_cu_setitem(x._dtype, (<DevArray>dnew).ptr, (<DevArray>dv).ptr,
                               <const int64_t *>(<DevArray>dl).ptr, lin.size, (<DevArray>dnew).size),
                "setitem")
        r = _dwrap(<DevArray>dnew)
        if recording:
            _record(OP_SETITEM, r, [x, v, _dwrap(<DevArray>dl)], 4, NULL, 0)
        x._rebind(r, leaf and x._rg)
        return
    new = _np.array(_arr_of(x), order="C", copy=True)
    new.reshape(-1)[lin.reshape(-1)] = _arr_of(v).reshape(-1)
    r = _wrap(new)
    if recording:
        tl = _wrap(lin)
        _record(OP_SETITEM, r, [x, v, tl], 4, NULL, 0)
    x._rebind(r, leaf and x._rg)


# ---------------------------------------------------------------- concatenate, matmul

def concat(list tensors, int axis):
    """concatenate along axis (numpy's promotion of dtypes)"""
    cdef int rdt = -1, nd, k
    cdef Tensor t, r
    cdef int64_t aux[1]
    cdef bint rg = False
    if not tensors:
        raise ShapeError("concatenate: need at least one tensor")
    for t in tensors:
        rdt = _promote(rdt, t._dtype)
    nd = _tndim(<Tensor>tensors[0])
    if nd == 0:
        raise ShapeError("concatenate: 0-d tensors cannot be concatenated (use stack)")
    ax = normalize_axes(nd, axis, "concatenate")[0]
    s0 = (<Tensor>tensors[0]).shape
    ts = []
    for t in tensors:
        if _tndim(t) != nd or any(t.shape[d] != s0[d] for d in range(nd) if d != ax):
            shapes = ", ".join(str((<Tensor>u).shape) for u in tensors)
            raise ShapeError(f"concatenate: shapes {shapes} differ outside axis {ax}")
        if t._dtype != rdt:
            t = <Tensor>cast(t, _DTYPES[rdt])
        rg = rg or _mode1(t)
        ts.append(t)
    if _common_dev(ts, "concatenate"):
        r = _d_concat(ts, ax, rdt)
    else:
        r = _wrap(_np.concatenate([_arr_of(t) for t in ts], axis=ax))
    if rg:
        aux[0] = ax
        _record(OP_CONCATENATE, r, ts, -1, aux, 1)
    return r


cdef Tensor _d_concat(list ts, int ax, int rdt):
    cdef Tensor t
    cdef DevArray out, x
    cdef cad_iter it
    cdef int64_t off = 0
    cdef int d, nd
    oshape = list((<Tensor>ts[0]).shape)
    oshape[ax] = sum((<Tensor>t).shape[ax] for t in ts)
    out = _dnew_shape(tuple(oshape), rdt, "concatenate")
    nd = out.ndim
    for t in ts:
        x = <DevArray>t._arr
        it.nop = 2
        it.ndim = nd
        for d in range(nd):
            it.shape[d] = x.shp[d]
        cad_iter_operand(&it, 0, out.ptr + off * out.st[ax] * _ESIZE[rdt], _ESIZE[rdt], nd, x.shp, out.st)
        cad_iter_operand(&it, 1, x.ptr, _ESIZE[rdt], nd, x.shp, x.st)
        _dcheck(_run_dev(&it, cad_copy_rows[rdt]), "concatenate")
        off += x.shp[ax]
    return _dwrap(out)


cdef inline char *_tptr(Tensor t):
    """the data pointer of a tensor's value (host or device)"""
    if t._dev:
        return (<DevArray>t._arr).ptr
    if t._inline:
        return <char *>&t._sval
    return <char *>cnp.PyArray_DATA(<cnp.ndarray>t._arr)


cdef bint _gemmable_t(Tensor t, int nd):
    """do the last two dims of t have a unit stride BLAS can use?"""
    cdef int64_t rs, cs, R, C
    cdef DevArray a
    if not t._dev:
        return _gemmable(<cnp.ndarray>t._arr, nd)
    if nd < 2:
        return True
    a = <DevArray>t._arr
    R = a.shp[nd - 2]
    C = a.shp[nd - 1]
    rs = a.st[nd - 2]
    cs = a.st[nd - 1]
    return (cs == 1 or C == 1) and (rs >= C or R == 1) or (rs == 1 or R == 1) and (cs >= R or C == 1)


cdef bint _gemmable(cnp.ndarray a, int nd):
    """do the last two dims of a have a unit stride BLAS can use?"""
    cdef int64_t es = a.itemsize, rs, cs, R, C
    if nd < 2:
        return True
    R = a.shape[nd - 2]
    C = a.shape[nd - 1]
    rs = a.strides[nd - 2] // es
    cs = a.strides[nd - 1] // es
    return (cs == 1 or C == 1) and (rs >= C or R == 1) or (rs == 1 or R == 1) and (cs >= R or C == 1)


def matmul(object a, object b):
    """numpy's matmul: 1-D operands are promoted, batch dims broadcast; BLAS"""
    cdef Tensor ta = as_tensor(a), tb = as_tensor(b), r
    cdef int rdt = _promote(ta._dtype, tb._dtype), and_, bnd, obnd, d, st, es
    cdef bint a1, b1
    cdef int64_t m, k, k2, n, ars, acs, brs, bcs
    cdef cad_mm mm
    cdef int64_t oshape[MAXDIM]
    cdef int64_t aux[2]
    cdef cnp.ndarray out
    cdef DevArray dout
    cdef object aa, ba
    cdef char *optr
    cdef int dev = _common_dev([ta, tb], "matmul")
    and_ = _tndim(ta)
    bnd = _tndim(tb)
    if and_ == 0 or bnd == 0:
        raise ShapeError(f"matmul: operands of shapes {ta.shape} and {tb.shape}: 0-d operands are "
                         "not allowed (use * for scalars)")
    if not _isfloat(rdt):
        _escape(ta, "matmul of integers")
        _escape(tb, "matmul of integers")
        return _to_dev(_wrap(_np.asarray(_np.matmul(_arr_of(ta), _arr_of(tb)))), dev)
    if ta._dtype != rdt:
        ta = <Tensor>cast(ta, _DTYPES[rdt])
    if tb._dtype != rdt:
        tb = <Tensor>cast(tb, _DTYPES[rdt])
    if not _gemmable_t(ta, and_):
        ta = <Tensor>contiguous(ta)
    if not _gemmable_t(tb, bnd):
        tb = <Tensor>contiguous(tb)
    aa = ta._arr
    ba = tb._arr
    es = _ESIZE[rdt]
    a1 = and_ == 1
    b1 = bnd == 1
    if a1:
        m = 1
        k = aa.shape[0]
        ars = 0
        acs = aa.strides[0] // es
    else:
        m = aa.shape[and_ - 2]
        k = aa.shape[and_ - 1]
        ars = aa.strides[and_ - 2] // es
        acs = aa.strides[and_ - 1] // es
    if b1:
        k2 = ba.shape[0]
        n = 1
        brs = ba.strides[0] // es
        bcs = 0
    else:
        k2 = ba.shape[bnd - 2]
        n = ba.shape[bnd - 1]
        brs = ba.strides[bnd - 2] // es
        bcs = ba.strides[bnd - 1] // es
    if k != k2:
        raise ShapeError(f"matmul: shapes {ta.shape} and {tb.shape} are not aligned: "
                         f"{k} (last dim of a) != {k2} ({'dim 0' if b1 else 'dim -2'} of b)")
    abatch = ta.shape[:and_ - 2] if not a1 else ()
    bbatch = tb.shape[:bnd - 2] if not b1 else ()
    try:
        obatch = _np.broadcast_shapes(abatch, bbatch)
    except ValueError:
        raise ShapeError(f"matmul: batch dims of shapes {ta.shape} and {tb.shape} cannot be "
                         "broadcast together") from None
    obnd = len(obatch)
    mm.dtype = rdt
    mm.bnd = obnd
    for d in range(obnd):
        mm.bshape[d] = obatch[d]
        oshape[d] = obatch[d]
    for d in range(obnd):
        od = d - (obnd - len(abatch))
        mm.abst[d] = 0 if od < 0 or abatch[od] == 1 else aa.strides[od] // es
        od = d - (obnd - len(bbatch))
        mm.bbst[d] = 0 if od < 0 or bbatch[od] == 1 else ba.strides[od] // es
    d = obnd
    if not a1:
        oshape[d] = m
        d += 1
    if not b1:
        oshape[d] = n
        d += 1
    ond = d
    cad_contig_strides(obnd, mm.bshape, mm.obst)
    for d in range(obnd):
        mm.obst[d] *= m * n
    r = None
    if dev:
        dout = _dnew(ond, oshape, rdt, "matmul")
        optr = dout.ptr
    elif ond == 0 and rdt == CAD_F64:
        r = _new_inline(0.0)
        optr = <char *>&r._sval
    else:
        out = _empty(ond, <cnp.npy_intp *>oshape, rdt)
        optr = <char *>cnp.PyArray_DATA(out)
    mm.m = m
    mm.n = n
    mm.k = k
    mm.a = <const char *>_tptr(ta)
    mm.ars = ars
    mm.acs = acs
    mm.b = <const char *>_tptr(tb)
    mm.brs = brs
    mm.bcs = bcs
    mm.c = optr
    mm.crs = n
    mm.beta = 0.0
    with nogil:
        cad_set_dev(dev)
        st = cad_matmul(&mm)
        cad_set_dev(0)
    _dcheck(st, "matmul")
    if dev:
        r = _dwrap(dout)
    elif r is None:
        r = _wrap(out)
    if _mode1(ta) or _mode1(tb):
        aux[0] = a1
        aux[1] = b1
        _record(OP_MATMUL, r, [ta, tb], (2 if ta._rg else 0) | (1 if tb._rg else 0), aux, 2)
    return r


# ---------------------------------------------------------------- backward

cdef _check(int st, str who):
    if st == CAD_OK:
        return
    if st == CAD_ENOMEM:
        raise MemoryError(f"{who}: out of memory")
    if st == CAD_EDEAD:
        raise BackwardError(f"{who}: the gradient reached a value whose tape was consumed by an "
                            "earlier backward(); pass retain_graph=True to that backward to "
                            "differentiate through it again")
    if st == CAD_EBLAS:
        raise ShapeError(f"{who}: matrix too large for the BLAS interface (2^31 - 1 per dim)")
    if st == CAD_EINDEX:
        raise IndexError(f"{who}: an index (a class label) is out of range")
    raise RuntimeError(f"{who}: internal error {st} in the sweep")


cdef void _free_capsule(object cap) noexcept:
    cad_release(PyCapsule_GetPointer(cap, NULL))


cdef list _seq(object x, str what):
    if type(x) is Tensor:
        return [x]
    if isinstance(x, Tensor):
        return [x]
    if isinstance(x, (list, tuple)):
        return list(x)
    raise TypeError(f"autograd.grad: {what} must be a tensor or a sequence of tensors, got "
                    f"{type(x).__name__}")


def grad_api(outputs, inputs, grad_outputs, retain_graph, allow_unused):
    """autograd.grad (first order): a tuple with one gradient per input"""
    cdef list outs = _seq(outputs, "outputs"), ins = _seq(inputs, "inputs"), gouts
    cdef Py_ssize_t k
    for k in range(len(ins)):
        if not isinstance(ins[k], Tensor):
            raise TypeError(f"autograd.grad: input {k} is a {type(ins[k]).__name__}, not a tensor")
    if grad_outputs is None:
        gouts = [None] * len(outs)
    else:
        gouts = _seq(grad_outputs, "grad_outputs")
        if len(gouts) != len(outs):
            raise ValueError(f"autograd.grad: {len(gouts)} grad_outputs for {len(outs)} outputs")
    return tuple(run_backward(outs, gouts, ins, bool(retain_graph), False, bool(allow_unused),
                              "autograd.grad"))


cdef Tensor _take_grad(Tape tp, cad_hid h):
    """the gradient of buf h as a tensor (taking ownership of a large buffer)"""
    cdef cad_buf *b = &tp.t.bufs[h]
    cdef cnp.npy_intp dims[MAXDIM]
    cdef cnp.ndarray a
    cdef int d
    cdef size_t nb
    cdef DevArray da
    cdef DevBlock blk
    if b.flags & BUF_INLINE:
        return _new_inline(b.sgrad)
    if b.flags & BUF_CUDA:   # the device gradient buffer becomes the tensor's block
        shape = tuple([tp.t.meta[b.meta + d] for d in range(b.ndim)])
        if b.grad == NULL:
            return _dfull(shape, b.dtype, 0)
        blk = DevBlock.__new__(DevBlock)
        blk.ptr = b.grad
        blk.nbytes = <size_t>(b.size * _ESIZE[b.dtype])
        b.grad = NULL
        da = DevArray.__new__(DevArray)
        da.block = blk
        da.ptr = blk.ptr
        da.ndim = b.ndim
        da.dt = b.dtype
        da.size = b.size
        cad_contig_strides(b.ndim, tp.t.meta + b.meta, da.st)
        for d in range(b.ndim):
            da.shp[d] = tp.t.meta[b.meta + d]
        return _dwrap(da)
    for d in range(b.ndim):
        dims[d] = tp.t.meta[b.meta + d]
    if b.grad == NULL:
        a = cnp.PyArray_ZEROS(b.ndim, dims, _TYPENUM[b.dtype], 0)
    elif b.size <= 4096:
        a = cnp.PyArray_EMPTY(b.ndim, dims, _TYPENUM[b.dtype], 0)
        nb = b.size * _ESIZE[b.dtype]
        memcpy(cnp.PyArray_DATA(a), b.grad, nb)
    else:
        a = cnp.PyArray_SimpleNewFromData(b.ndim, dims, _TYPENUM[b.dtype], <void *>b.grad)
        cnp.set_array_base(a, PyCapsule_New(<void *>b.grad, NULL, _free_capsule))
        b.grad = NULL
    return _wrap(a)


cdef Tensor _sum_grads(Tape tp, list hs):
    """the sum of the gradients of handles hs (one value registered several times,
    e.g. a leaf used on two tapes that were merged)"""
    cdef cad_hid h0 = hs[0], h
    cdef cad_buf *b0 = &tp.t.bufs[h0]
    cdef cad_buf *b
    cdef Tensor r
    cdef cnp.ndarray a
    cdef int64_t i, n
    cdef double acc
    if len(hs) == 1:
        return _take_grad(tp, h0)
    if b0.flags & BUF_CUDA:
        r = _take_grad(tp, h0)
        for h in hs[1:]:
            if tp.t.bufs[h].grad != NULL:
                r = _plus(r, _take_grad(tp, h))
        return r
    if b0.flags & BUF_INLINE:
        acc = 0.0
        for h in hs:
            acc += tp.t.bufs[h].sgrad
        return _new_inline(acc)
    r = _take_grad(tp, h0)
    a = <cnp.ndarray>r._arr
    cnp.PyArray_ENABLEFLAGS(a, cnp.NPY_ARRAY_WRITEABLE)
    n = b0.size
    for h in hs[1:]:
        b = &tp.t.bufs[h]
        if b.grad == NULL:
            continue
        if b.dtype == CAD_F64:
            for i in range(n):
                (<double *>cnp.PyArray_DATA(a))[i] += (<double *>b.grad)[i]
        else:
            for i in range(n):
                (<float *>cnp.PyArray_DATA(a))[i] += (<float *>b.grad)[i]
    cnp.PyArray_CLEARFLAGS(a, cnp.NPY_ARRAY_WRITEABLE)
    return r


cdef Tensor _plus(Tensor a, Tensor b):
    if a._inline and b._inline:
        return _new_inline(a._sval + b._sval)
    if a._dev or b._dev:
        with no_grad():
            return <Tensor>_ew_general(OP_ADD, (a, b))
    return _wrap(_np.add(_arr_of(a), _arr_of(b)))


cdef _consume(Tape tp):
    tp._release()
    tp._consumed = True


cdef int _seed(Tape tp, cad_hid h, object ga, str who) except -1:
    cdef cad_buf *b = &tp.t.bufs[h]
    cdef cnp.ndarray a
    cdef int64_t i
    cdef cad_iter it
    cdef int d
    cdef Tensor g
    _dcheck(cad_ensure_grad(b), who)
    if b.flags & BUF_CUDA:   # seed on the device: ones, or grad_output (made a device tensor)
        g = _dfull(tuple([tp.t.meta[b.meta + d] for d in range(b.ndim)]), b.dtype, 1) if ga is None \
            else <Tensor>ga
        it.nop = 2
        it.ndim = b.ndim
        for d in range(b.ndim):
            it.shape[d] = tp.t.meta[b.meta + d]
        cad_iter_operand(&it, 0, b.grad, _ESIZE[b.dtype], b.ndim, tp.t.meta + b.meta,
                         _contig(b.ndim, tp.t.meta + b.meta))
        _operand(&it, 1, g)
        _dcheck(_run_dev(&it, cad_acc_row(b.dtype)), who)
        return 0
    if ga is None:   # d(y)/d(y) of a one-element output
        if b.flags & BUF_INLINE:
            b.sgrad += 1.0
        elif b.dtype == CAD_F64:
            (<double *>b.grad)[0] += 1.0
        else:
            (<float *>b.grad)[0] += 1.0
        return 0
    if b.flags & BUF_INLINE:
        b.sgrad += float(ga)
        return 0
    a = _np.ascontiguousarray(ga)
    if b.dtype == CAD_F64:
        for i in range(b.size):
            (<double *>b.grad)[i] += (<double *>cnp.PyArray_DATA(a))[i]
    else:
        for i in range(b.size):
            (<float *>b.grad)[i] += (<float *>cnp.PyArray_DATA(a))[i]
    return 0


# NOTE [ Threads and .grad ]
# Several threads may run backward passes into the same leaves at once (each on its
# own tape).  Adding a gradient into a leaf's .grad reads the old value, adds, and
# stores the sum; numpy releases the GIL inside the add for large arrays, so two
# threads could both read the old value and one update would be lost.  The add runs
# under one process-wide lock.  Cases that need no lock keep the GIL as their lock:
# the first gradient (a store) and inline scalars (an add in C with the GIL held),
# so scalar code (W1) takes no lock at all; the lock is a C lock taken without the GIL
# when it is contended (a holder may be waiting for the GIL inside numpy's add).
cdef PyThread_type_lock _grad_lock = PyThread_allocate_lock()


cdef inline void _grad_lock_acquire():
    if not PyThread_acquire_lock(_grad_lock, NOWAIT_LOCK):
        with nogil:
            PyThread_acquire_lock(_grad_lock, WAIT_LOCK)


def run_backward(list outputs, list grad_outputs, object inputs, bint retain, bint accumulate,
                 bint allow_unused, str who, int64_t stop=0):
    """The sweep driver behind backward() and autograd.grad.  accumulate: add into
    leaves' .grad; otherwise return the gradients of `inputs` (a list)."""
    if cad_rec_mode:
        raise BackwardError(f"{who}: inside cad.record the backward pass is not replayable; "
                            "record the function and call tape.grad, or use cad.grad inside it")
    cdef Tensor y, x, g
    cdef Tape tp
    cdef Py_ssize_t k, j, ti, nout = len(outputs), nin
    cdef list tapes = []
    cdef list seeds = []       # (tape index, handle, seed array or None)
    cdef list direct = []      # (leaf output, seed)
    cdef list ins = list(inputs) if inputs is not None else []
    cdef list in_h = []        # (input index, tape index, handle)
    cdef list got
    cdef dict leafg
    cdef int64_t i
    cdef int st
    cdef cad_buf *b
    nin = len(ins)
    if len(grad_outputs) != nout:
        raise ValueError(f"{who}: {len(grad_outputs)} gradients (grad_tensors) for {nout} tensors; "
                         "pass one per tensor (None for a scalar), or none at all")
    for k in range(nout):
        y = outputs[k] if type(outputs[k]) is Tensor else as_tensor(outputs[k])
        ga = grad_outputs[k]
        if not y._rg:
            raise BackwardError(f"{who}: output {k} does not require grad (no input of the ops "
                                "that made it requires grad, or it was made under no_grad)")
        if ga is None:
            if not y._inline and y.size != 1:
                raise BackwardError(f"{who}: output of shape {y.shape} is not a scalar; pass "
                                    "grad_output (a tensor of the output's shape)")
        elif y._dev:   # grad_output as a device tensor of the output's dtype
            ga = as_tensor(ga) if isinstance(ga, Tensor) else _to_dev(from_numpy(_np.asarray(ga, dtype=_DTYPES[y._dtype])), 1)
            if (<Tensor>ga)._dev != 1:
                ga = _to_dev(<Tensor>ga, 1)
            if (<Tensor>ga)._dtype != y._dtype:
                ga = cast(ga, _DTYPES[y._dtype])
            if (<Tensor>ga).shape != y.shape:
                raise ShapeError(f"{who}: grad_output of shape {(<Tensor>ga).shape} does not match the "
                                 f"output's shape {y.shape}")
            ga = (<Tensor>ga).detach()
        else:
            ga = _np.asarray(_arr_of(as_tensor(ga)), dtype=_DTYPES[y._dtype])
            if ga.shape != y.shape:
                raise ShapeError(f"{who}: grad_output of shape {ga.shape} does not match the "
                                 f"output's shape {y.shape}")
        if y._tape is None:
            direct.append((y, ga))
            continue
        tp = _resolved(y)
        if tp._consumed:
            raise BackwardError(f"{who}: this tensor's tape was consumed by an earlier backward(); "
                                "pass retain_graph=True to the first call to run backward again")
        if tp._busy:
            raise BackwardError(f"{who}: another thread is running backward on this tape")
        for ti in range(len(tapes)):
            if tapes[ti] is tp:
                break
        else:
            tapes.append(tp)
            ti = len(tapes) - 1
        seeds.append((ti, y._h, ga))
    for j in range(nin):
        x = ins[j]
        if not _isfloat(x._dtype):
            raise DTypeError(f"{who}: input {j} has dtype {_DTNAMES[x._dtype]}; gradients are "
                             "defined for float inputs only")
        if not x._rg:
            raise BackwardError(f"{who}: input {j} (shape {x.shape}) does not require grad")
    # seed, mark, sweep each tape
    for ti in range(len(tapes)):
        tp = tapes[ti]
        cad_tape_clear_grads(&tp.t)
        for sd in seeds:
            if sd[0] == ti:
                _seed(tp, <cad_hid>sd[1], sd[2], who)
        if accumulate:
            for i in range(tp.t.nbufs):
                if tp.t.bufs[i].flags & BUF_LEAF:
                    tp.t.bufs[i].flags |= BUF_KEEP
        else:
            for j in range(nin):
                x = ins[j]
                if x._tape is not None:
                    if _resolved(x) is tp:
                        tp.t.bufs[x._h].flags |= BUF_KEEP
                        in_h.append((j, ti, x._h))
                else:
                    for i in range(tp.t.nbufs):
                        if tp.t.bufs[i].leaf == <void *>x:
                            tp.t.bufs[i].flags |= BUF_KEEP
                            in_h.append((j, ti, i))
        tp._busy = True
        if tp.t.nrecs > 64 or tp.t.nmeta > 0:
            with nogil:
                st = cad_sweep(&tp.t, 1, stop)
        else:   # a few scalar records: releasing the GIL costs more than the sweep
            st = cad_sweep(&tp.t, 1, stop)
        tp._busy = False
        if st != CAD_OK:
            for tp2 in tapes:
                cad_tape_clear_grads(&(<Tape>tp2).t)
            _check(st, who)
    # collect (nothing the user holds changes before every check passed)
    got = [None] * nin
    leafg = {}
    try:
        for ti in range(len(tapes)):
            tp = tapes[ti]
            groups = {}    # id(value) -> [handles]: a leaf may be registered several times
            if accumulate:
                for i in range(tp.t.nbufs):
                    b = &tp.t.bufs[i]
                    if (b.flags & BUF_LEAF) and b.hasg:
                        x = <Tensor>b.leaf
                        if x._version != b.version:
                            raise BackwardError(
                                f"{who}: a leaf of shape {x.shape} was modified in place "
                                f"(version {x._version}, recorded at {b.version}) after it was "
                                "used; its gradient would belong to the old value")
                        hl = groups.get(id(x))
                        if hl is None:
                            groups[id(x)] = [x, i]
                        else:
                            hl.append(i)
                for hl in groups.values():
                    x = hl[0]
                    g = _sum_grads(tp, hl[1:])
                    prev = leafg.get(id(x))
                    leafg[id(x)] = (x, g if prev is None else _plus(prev[1], g))
            else:
                for e in in_h:
                    if e[1] == ti and tp.t.bufs[<cad_hid>e[2]].hasg:
                        hl = groups.get(e[0])
                        if hl is None:
                            groups[e[0]] = [e[2]]
                        else:
                            hl.append(e[2])
                for j, hl in groups.items():
                    g = _sum_grads(tp, hl)
                    got[j] = g if got[j] is None else _plus(got[j], g)
        for e in direct:
            y = e[0]
            if y._dev:
                g = _dfull(y.shape, y._dtype, 1) if e[1] is None else <Tensor>e[1]
            else:
                g = _wrap(_np.ones(y.shape, dtype=_DTYPES[y._dtype]) if e[1] is None else e[1].copy())
            if accumulate:
                prev = leafg.get(id(y))
                leafg[id(y)] = (y, g if prev is None else _plus(prev[1], g))
            else:
                for j in range(nin):
                    if ins[j] is y:
                        got[j] = g if got[j] is None else _plus(got[j], g)
    finally:
        for tp in tapes:
            cad_tape_clear_grads(&tp.t)
            if not retain:
                _consume(tp)
    if accumulate:   # NOTE [ Threads and .grad ]
        for e in leafg.values():
            x = e[0]
            g = <Tensor>e[1]
            if x._grad is None or ((<Tensor>x._grad)._inline and g._inline):
                x._grad = g if x._grad is None else _new_inline((<Tensor>x._grad)._sval + g._sval)
            else:
                _grad_lock_acquire()
                try:
                    x._grad = _plus(<Tensor>x._grad, g)
                finally:
                    PyThread_release_lock(_grad_lock)
        return None
    if not allow_unused:
        for j in range(nin):
            if got[j] is None:
                raise BackwardError(f"{who}: input {j} (shape {ins[j].shape}) was not used to "
                                    "compute the outputs; pass allow_unused=True to get None for it")
    return got


# ---------------------------------------------------------------- bound later by cad.ops

cdef object _API_matmul = matmul
cdef object _API_stack = None
cdef object _API_T = None
cdef object _API_mT = None


def _bind_helpers(matmul_fn, stack_fn, T_fn, mT_fn):
    global _API_matmul, _API_stack, _API_T, _API_mT
    _API_matmul = matmul_fn
    _API_stack = stack_fn
    _API_T = T_fn
    _API_mT = mT_fn


def _check_device_py(dev, str who):
    return _check_device(dev, who)


def _tape_of(Tensor t):
    """the (resolved) tape a tensor was recorded on, or None (for tests and tools)"""
    if t._tape is None:
        return None
    return _resolved(t)



# ---------------------------------------------------------------- the tape from Python (transforms)

def tape_records(Tape tp, int64_t lo=0, int64_t hi=-1):
    """records lo..hi-1 as (op code, out handle, input handles, aux) tuples"""
    cdef int64_t i, j
    cdef cad_rec *r
    cdef list out = []
    if hi < 0 or hi > tp.t.nrecs:
        hi = tp.t.nrecs
    for i in range(max(lo, 0), hi):
        r = &tp.t.recs[i]
        ins = tuple(tp.t.args[r.arg + j] for j in range(r.nargs))
        if r.aux >= 0:
            aux = _rec_aux(tp, i)
        else:
            aux = ()
        out.append((r.op, r.out, ins, aux))
    return out


cdef tuple _rec_aux(Tape tp, int64_t i):
    """the aux ints of record i (their count depends on the op)"""
    cdef cad_rec *r = &tp.t.recs[i]
    cdef int64_t *a = tp.t.aux + r.aux
    cdef int64_t n
    if r.op == OP_VIEW or r.op == OP_UNVIEW:
        n = 2 + 2 * a[1]
    elif r.op == OP_GATHER or r.op == OP_SCATTER:
        n = 3
    elif r.op == OP_MATMUL or r.op == OP_TO_DEVICE:
        n = 2
    else:
        n = 1
    return tuple(a[j] for j in range(n))


def tape_info(Tape tp, cad_hid h):
    """(shape, dtype code, flags) of handle h"""
    cdef cad_buf *b = &tp.t.bufs[h]
    shape = tuple(tp.t.meta[b.meta + d] for d in range(b.ndim))
    return shape, b.dtype, b.flags


def tape_node(Tape tp, cad_hid h):
    """a tensor standing for handle h: the leaf itself, a node of the tape (ops on
    it record against h), or the value of a constant; None when the value was not
    kept (nothing read it)"""
    cdef cad_buf *b = &tp.t.bufs[h]
    cdef Tensor r
    cdef cnp.npy_intp dims[MAXDIM]
    cdef int d
    if b.flags & BUF_LEAF:
        return <Tensor>b.leaf
    if (b.flags & BUF_INLINE):
        r = _new_inline(b.sval)
    elif b.flags & (BUF_ARENA | BUF_INPUT):   # a replayed value: a copy (the arena is reused)
        r = <Tensor>_value_of(&tp.t, h)
    elif b.owner != NULL:
        r = Tensor.__new__(Tensor)
        r._arr = <object>b.owner
        r._dtype = b.dtype
        r._dev = 1 if b.flags & BUF_CUDA else 0
    else:
        return None
    if (b.flags & BUF_RG) and not (b.flags & BUF_DEAD):
        r._tape = tp
        r._h = h
        r._rg = True
    return r


def producer(Tape tp, cad_hid h):
    """index of the record whose output is h, or -1"""
    cdef int64_t i
    for i in range(tp.t.nrecs - 1, -1, -1):
        if tp.t.recs[i].out == h:
            return i
    return -1


def first_use(Tape tp, cad_hid h):
    """index of the first record that reads or makes h, or nrecs"""
    cdef int64_t i, j
    cdef cad_rec *r
    for i in range(tp.t.nrecs):
        r = &tp.t.recs[i]
        if r.out == h:
            return i
        for j in range(r.nargs):
            if tp.t.args[r.arg + j] == h:
                return i
    return tp.t.nrecs


def leaf_handles(Tape tp, Tensor x):
    """every handle under which leaf x is registered on tp"""
    cdef int64_t i
    return [i for i in range(tp.t.nbufs) if tp.t.bufs[i].leaf == <void *>x]


def handle_of(Tensor t):
    """(tape, handle) of a recorded tensor, or (None, -1)"""
    if t._tape is None:
        return None, -1
    tp = _resolved(t)
    return tp, t._h


def tape_buf_count(Tape tp):
    return tp.t.nbufs


def tape_leaf(Tape tp, cad_hid h):
    """the leaf tensor registered as h, or None"""
    if tp.t.bufs[h].flags & BUF_LEAF:
        return <Tensor>tp.t.bufs[h].leaf
    return None


def ones_like_value(Tensor t):
    """ones of t's shape and dtype (a constant)"""
    if t._inline:
        return _new_inline(1.0)
    if t._dev:
        return _dfull(t.shape, t._dtype, 1)
    return _wrap(_np.ones(t.shape, dtype=_DTYPES[t._dtype]))


def node_count(Tape tp):
    return tp.t.nrecs


def foreign_leaves(Tape tp, list mine):
    """does tp hold a leaf that is not in mine (a variable of an outer computation)?"""
    cdef int64_t i
    cdef set ids = {id(x) for x in mine}
    for i in range(tp.t.nbufs):
        if (tp.t.bufs[i].flags & BUF_LEAF) and id(<object>tp.t.bufs[i].leaf) not in ids:
            return True
    return False


def ew_jvp(Tape tp, int op, cad_hid out, tuple ins, list ts, int nb):
    """The fused C jvp of an elementwise record: t_out = sum t_i * d_i in one pass
    (the tangents carry nb leading batch dims; not recorded).  None when the op has
    no fused row for this set of tangents."""
    cdef int n = len(ins), i, d, mask = 0, dt, ond, xnd, fnd, k
    cdef cad_buf *ob
    cdef cad_buf *xb
    cdef cad_row row
    cdef cad_iter it
    cdef cnp.npy_intp dims[MAXDIM]
    cdef int64_t lshape[MAXDIM]
    cdef int64_t lst[MAXDIM]
    cdef cnp.ndarray res, ta
    cdef Tensor t
    cdef int st
    for i in range(n):
        if ts[i] is not None:
            mask |= 1 << i
    ob = &tp.t.bufs[out]
    if ob.dtype != CAD_F64 and ob.dtype != CAD_F32:
        return None
    if ob.flags & BUF_CUDA:   # device records use the rules (their ops run on the device)
        return None
    dt = ob.dtype
    row = cad_jvp_row(op, mask, 0 if dt == CAD_F64 else 1)
    if row == NULL or n > 3:
        return None
    ond = ob.ndim
    first = next(x for x in ts if x is not None)
    bsh = (<Tensor>first).shape[:nb]
    fnd = nb + ond
    if fnd > MAXDIM:
        return None
    for d in range(nb):
        dims[d] = bsh[d]
    for d in range(ond):
        dims[nb + d] = tp.t.meta[ob.meta + d]
    res = _empty(fnd, dims, dt)
    it.nop = 2 + 2 * n
    it.ndim = fnd
    for d in range(fnd):
        it.shape[d] = dims[d]
    cad_iter_operand(&it, 0, <char *>cnp.PyArray_DATA(res), _ESIZE[dt], fnd, <int64_t *>dims,
                     _contig(fnd, <int64_t *>dims))
    for i in range(n):
        if ts[i] is None:
            cad_iter_operand(&it, 1 + i, NULL, 8, 0, NULL, NULL)
            continue
        t = <Tensor>ts[i]
        if t._dtype != dt:
            return None
        xnd = _tndim(t) - nb
        # the tangent as batch + (1,)*(ond - xnd) + x shape, aligned with the output
        k = 0
        if t._inline:
            cad_iter_operand(&it, 1 + i, <char *>&t._sval, 8, 0, NULL, NULL)
            continue
        ta = <cnp.ndarray>t._arr
        for d in range(nb):
            lshape[k] = cnp.PyArray_DIMS(ta)[d]
            lst[k] = cnp.PyArray_STRIDES(ta)[d] // _ESIZE[dt]
            k += 1
        for d in range(ond - xnd):
            lshape[k] = 1
            lst[k] = 0
            k += 1
        for d in range(xnd):
            lshape[k] = cnp.PyArray_DIMS(ta)[nb + d]
            lst[k] = cnp.PyArray_STRIDES(ta)[nb + d] // _ESIZE[dt]
            k += 1
        cad_iter_operand(&it, 1 + i, <char *>cnp.PyArray_DATA(ta), _ESIZE[dt], k, lshape, lst)
    for i in range(n):
        if ins[i] < 0:
            cad_iter_operand(&it, 1 + n + i, NULL, 8, 0, NULL, NULL)
            continue
        xb = &tp.t.bufs[<cad_hid>ins[i]]
        if (xb.flags & (BUF_INLINE | BUF_ARENA | BUF_INPUT)) or xb.owner != NULL:
            cad_iter_operand(&it, 1 + n + i, _bdata(xb), _ESIZE[xb.dtype], xb.ndim,
                             tp.t.meta + xb.meta, tp.t.meta + xb.meta + xb.ndim)
        else:
            cad_iter_operand(&it, 1 + n + i, NULL, 8, 0, NULL, NULL)
    if (ob.flags & (BUF_INLINE | BUF_ARENA | BUF_INPUT)) or ob.owner != NULL:
        cad_iter_operand(&it, 1 + 2 * n, _bdata(ob), _ESIZE[dt], ond, tp.t.meta + ob.meta,
                         tp.t.meta + ob.meta + ond)
    else:
        cad_iter_operand(&it, 1 + 2 * n, NULL, 8, 0, NULL, NULL)
    if cnp.PyArray_SIZE(res) >= 4096:
        with nogil:
            st = cad_iter_run_t(&it, row, NULL, NULL,
                                cad_par_min_heavy if cad_fwd_heavy(op) else cad_par_min)
    else:
        st = cad_iter_run_t(&it, row, NULL, NULL, cad_par_min)
    return _wrap(res)



# ---------------------------------------------------------------- record once, replay in C

def record_input(Tape tp, object value, bint rg):
    """an input slot of a recording: a node of tp holding value (contiguous copy)"""
    cdef Tensor t
    cdef cad_hid h
    if isinstance(value, Tensor) and (<Tensor>value)._dev:   # a tape that replays on the GPU
        t = _dwrap(_dcopy(<DevArray>(<Tensor>value)._arr))
        h = _push_buf(tp, t, BUF_INPUT | (BUF_RG if rg else 0), True)
        t._tape = tp
        t._h = h
        t._rg = rg
        return t
    t = from_numpy(_np.array(value, order="C", copy=True) if not isinstance(value, float)
                               else value, None, False, False)
    if t._inline:
        h = _push_scalar(tp, t._sval, BUF_INPUT | (BUF_RG if rg else 0))
    else:
        h = _push_buf(tp, t, BUF_INPUT | (BUF_RG if rg else 0), True)
    t._tape = tp
    t._h = h
    t._rg = rg
    return t


cdef class Replay:
    """A recorded tape prepared for replay: inputs in fixed slots, every other value
    in a contiguous slot of an arena, constants contiguous.  One call runs the whole
    forward pass (and the reverse sweep) in C."""
    cdef Tape tp
    cdef char *arena
    cdef size_t arena_size
    cdef list in_h          # input handles
    cdef list in_shape      # input shapes
    cdef list in_dtype      # input dtype codes
    cdef list out_h         # output handles (-1: a constant)
    cdef list out_const     # constants returned as outputs
    cdef list arena_slots   # (handle, offset)
    cdef bint busy
    cdef object rg_key      # the input mask the RG flags are set for
    cdef public object guards
    cdef cad_sprog sp       # the compact scalar program, when the tape is scalar code
    cdef bint has_sp
    cdef object sp_key      # the input mask sp's backward list is planned for
    cdef public bint dev    # recorded on CUDA values: replays on the GPU
    cdef cad_fzplan fzp     # fused regions (NOTE [ Fused replay ]); nreg 0: none
    cdef public list fz_sources   # the generated CUDA source per region (inspection)

    def __dealloc__(self):
        if self.arena != NULL:
            if self.dev:
                cad_cu_release(self.arena)
            else:
                cad_release(self.arena)
            self.arena = NULL
        free(self.fzp.reg)
        free(self.fzp.fuse)
        self.fzp.reg = NULL
        self.fzp.fuse = NULL
        self.fzp.nreg = 0
        if self.has_sp:
            cad_sprog_free(&self.sp)
            self.has_sp = False

    @property
    def fused_regions(self):
        """the number of fused regions this replay runs"""
        return self.fzp.nreg

    @property
    def scalar_program(self):
        """is this tape replayed as a compact scalar program?"""
        return self.has_sp

    def __len__(self):
        return self.tp.t.nrecs

    @property
    def tape(self):
        return self.tp


cdef void _bind_arena(cad_tape *t, list slots, char *base):
    cdef cad_hid h
    for h, off in slots:
        t.bufs[h].data = base + <int64_t>off


def replay_compile(Tape tp, list inputs, list outputs, list guards):
    """Prepare tp for replay: record outputs get arena slots (contiguous strides),
    constants become contiguous.  inputs: input node tensors; outputs: output
    tensors (or constants)."""
    cdef Replay rp = Replay.__new__(Replay)
    cdef int64_t i, off = 0, nb
    cdef cad_buf *b
    cdef int d
    cdef set produced = set()
    cdef Tensor t
    cdef DevArray da
    cdef bint dev = False
    for i in range(tp.t.nbufs):
        if tp.t.bufs[i].flags & BUF_CUDA:
            dev = True
    if dev:   # NOTE [ CUDA replay ]: every array value on the device
        for i in range(tp.t.nrecs):
            if tp.t.recs[i].op == OP_TO_DEVICE:
                raise DeviceError("cad.record: the function moves values between the CPU and "
                                  "cuda:0; such a tape cannot be replayed (keep it on one device)")
        for i in range(tp.t.nbufs):
            if not (tp.t.bufs[i].flags & (BUF_CUDA | BUF_INLINE)):
                raise DeviceError("cad.record: the function mixes CPU arrays with cuda:0 values; "
                                  "such a tape cannot be replayed (keep it on one device)")
    rp.dev = dev
    rp.tp = tp
    for i in range(tp.t.nrecs):
        produced.add(tp.t.recs[i].out)
    rp.arena_slots = []
    for i in range(tp.t.nbufs):
        b = &tp.t.bufs[i]
        if b.flags & BUF_INLINE:
            continue
        if i in produced:
            cad_contig_strides(b.ndim, tp.t.meta + b.meta, tp.t.meta + b.meta + b.ndim)
            rp.arena_slots.append((i, off))
            b.flags |= BUF_ARENA
            if b.owner != NULL:
                Py_DECREF(<object>b.owner)
                b.owner = NULL
            nb = b.size * _ESIZE[b.dtype]
            off += (nb + 63) // 64 * 64 if nb else 64
        elif not (b.flags & BUF_INPUT):
            if b.owner == NULL:
                raise RuntimeError("cad.record: a constant's value was not kept (internal error)")
            a = <object>b.owner
            if dev:
                da = _dcontig(<DevArray>a)
                if da is not a:
                    Py_DECREF(a)
                    Py_INCREF(da)
                    b.owner = <void *>da
                    b.data = da.ptr
                    cad_contig_strides(b.ndim, tp.t.meta + b.meta, tp.t.meta + b.meta + b.ndim)
            elif not a.flags.c_contiguous:
                c = _np.ascontiguousarray(a)
                Py_DECREF(a)
                Py_INCREF(c)
                b.owner = <void *>c
                b.data = <char *>cnp.PyArray_DATA(<cnp.ndarray>c)
                cad_contig_strides(b.ndim, tp.t.meta + b.meta, tp.t.meta + b.meta + b.ndim)
    rp.arena_size = off
    if dev:
        rp.arena = <char *>cad_cu_alloc(off if off else 64)
        if rp.arena == NULL:
            _dcheck(CAD_EDEVMEM, "cad.record (the replay's device buffers)")
    else:
        rp.arena = <char *>cad_alloc(off if off else 64)
    if rp.arena == NULL:
        raise MemoryError("cad.record: cannot allocate the replay's buffers")
    _bind_arena(&tp.t, rp.arena_slots, rp.arena)
    rp.in_h, rp.in_shape, rp.in_dtype = [], [], []
    for t in inputs:
        rp.in_h.append(t._h)
        rp.in_shape.append(t.shape)
        rp.in_dtype.append(t._dtype)
    rp.out_h, rp.out_const = [], []
    for o in outputs:
        if isinstance(o, Tensor) and (<Tensor>o)._tape is not None and _resolved(<Tensor>o) is tp:
            rp.out_h.append((<Tensor>o)._h)
            rp.out_const.append(None)
        else:
            rp.out_h.append(-1)
            rp.out_const.append(o)
    rp.guards = guards
    rp.rg_key = None
    cad_tape_clear_grads(&tp.t)
    if not dev and not guards and all(sh == () and dt == CAD_F64 for sh, dt in zip(rp.in_shape, rp.in_dtype)) \
            and all(h < 0 or (tp.t.bufs[<cad_hid>h].flags & BUF_INLINE) for h in rp.out_h):
        k = cad_sprog_build(&tp.t, &rp.sp)
        if k < 0:
            raise MemoryError()
        rp.has_sp = k == 1
    return rp


cdef object _sprog_run(Replay rp, tuple xs, object grad_mask, object seed, str who):
    """replay_run for a compact scalar program (every value a 0-d float64)"""
    cdef cad_sprog *p = &rp.sp
    cdef int k, nsel = 0
    cdef Tensor x
    cdef int64_t sel[64]
    cdef cad_hid h, ho
    for k in range(len(xs)):
        x = xs[k] if type(xs[k]) is Tensor else as_tensor(xs[k])
        if not x._inline:
            if x._dtype != CAD_F64 or x.ndim != 0:
                if x.ndim == 0:
                    raise DTypeError(f"{who}: input {k} has dtype {_DTNAMES[x._dtype]}; the tape was "
                                     "recorded with float64 (cast the input, or record again)")
                else:
                    raise ShapeError(f"{who}: input {k} has shape {x.shape} and dtype "
                                     f"{_DTNAMES[x._dtype]}; the tape was recorded with a float64 "
                                     "scalar (record again for other shapes)")
        p.v[<cad_hid>rp.in_h[k]] = x._sval
    if grad_mask is not None and rp.out_h[0] >= 0 and grad_mask is not rp.sp_key and grad_mask != rp.sp_key:
        for k in range(len(rp.in_h)):   # the backward list for this selection (before the forward:
            if grad_mask[k]:            # it decides which partials the forward computes)
                sel[nsel] = rp.in_h[k]
                nsel += 1
        cad_sprog_plan(p, sel, nsel, rp.out_h[0])
        rp.sp_key = grad_mask
    if grad_mask is None:
        cad_sprog_forward(p)
    else:
        cad_sprog_forward_d(p)
    if grad_mask is None or len(rp.out_h) != 1:
        outs = [rp.out_const[k] if rp.out_h[k] < 0 else _new_inline(p.v[<cad_hid>rp.out_h[k]])
                for k in range(len(rp.out_h))]
    else:
        outs = None   # filled below (one scalar output)
    if grad_mask is None:
        return outs, None
    ho = rp.out_h[0]
    if ho < 0:
        if outs is None:
            outs = [rp.out_const[0]]
        return outs, [None if not m else _new_inline(0.0) for m in grad_mask]
    if outs is None:
        outs = [_new_inline(p.v[ho])]
    cad_sprog_backward(p, ho, 1.0 if seed is None else float(seed))
    grads = []
    for k in range(len(rp.in_h)):
        h = rp.in_h[k]
        grads.append(_new_inline(p.g[h]) if grad_mask[k] else None)
    for k in range(len(rp.in_h)):
        p.g[<cad_hid>rp.in_h[k]] = 0.0
    p.g[ho] = 0.0
    return outs, grads


cdef void _set_rg(cad_tape *t, list in_h, tuple mask) noexcept:
    """gradients flow from the selected inputs only: RG flags recomputed forward"""
    cdef int64_t i, j
    cdef cad_buf *b
    cdef cad_rec *r
    cdef bint rg
    for i in range(t.nbufs):
        t.bufs[i].flags &= ~BUF_RG
    for j in range(len(in_h)):
        if mask[j]:
            t.bufs[<cad_hid>in_h[j]].flags |= BUF_RG
    for i in range(t.nrecs):
        r = &t.recs[i]
        b = &t.bufs[r.out]
        if b.dtype != CAD_F64 and b.dtype != CAD_F32:
            continue
        rg = False
        for j in range(r.nargs):
            if t.args[r.arg + j] >= 0 and (t.bufs[t.args[r.arg + j]].flags & BUF_RG):
                rg = True
                break
        if rg:
            b.flags |= BUF_RG


cdef object _value_of(cad_tape *t, cad_hid h):
    """a copy of handle h's value (replayed values live in a reused arena)"""
    cdef cad_buf *b = &t.bufs[h]
    cdef cnp.npy_intp dims[MAXDIM]
    cdef cnp.ndarray a
    cdef int d
    if b.flags & BUF_INLINE:
        return _new_inline(b.sval)
    if b.flags & BUF_CUDA:
        return _dwrap(_dcopy_raw(t, b, b.data))
    for d in range(b.ndim):
        dims[d] = t.meta[b.meta + d]
    a = _empty(b.ndim, dims, b.dtype)
    if b.size:
        memcpy(cnp.PyArray_DATA(a), b.data, b.size * _ESIZE[b.dtype])
    return _wrap(a)


def replay_grads(Replay rp, tuple xs, tuple mask, str who):
    """tape.grad's common path: the gradients of the inputs selected by mask, as a
    tuple (one replay, no Python-level filtering)"""
    cdef list grads = replay_run(rp, xs, mask, None, who)[1]
    cdef Py_ssize_t k, n = len(mask), m = 0
    for k in range(n):
        if mask[k]:
            m += 1
    cdef tuple out = PyTuple_New(m)
    m = 0
    for k in range(n):
        if mask[k]:
            g = grads[k]
            Py_INCREF(g)
            PyTuple_SET_ITEM(out, m, g)
            m += 1
    return out


def replay_set_fused(Replay rp, list regions, list marks, object cubin):
    """attach fused regions (cad/fuse.py): regions as (externals, scalar flags, ops,
    a slots, b slots, outputs, store_all, dtype); marks: fuse[i] per record; cubin:
    the compiled kernels fz_fwd_<k>/fz_bwd_<k> (None on the fake device)"""
    cdef int k, j, n = len(regions)
    cdef cad_fzreg *R
    cdef void *ff[256]
    cdef void *fb[256]
    if not rp.dev or n == 0 or n > 256:
        return
    if cubin is not None:
        _dcheck(cad_cu_fz_load(<const char *>cubin, n, ff, fb), "cad.record (fused kernels)")
    free(rp.fzp.reg)
    free(rp.fzp.fuse)
    rp.fzp.nreg = 0
    rp.fzp.reg = <cad_fzreg *>calloc(n, sizeof(cad_fzreg))
    rp.fzp.fuse = <int32_t *>calloc(len(marks) if marks else 1, sizeof(int32_t))
    if rp.fzp.reg == NULL or rp.fzp.fuse == NULL:
        raise MemoryError()
    for k in range(n):
        ext, scal, ops, aa, bb, outs, store_all, dt = regions[k]
        R = &rp.fzp.reg[k]
        R.nE = len(ext)
        R.nI = len(ops)
        R.store_all = store_all
        R.dtype = dt
        for j in range(R.nE):
            R.ext[j] = ext[j]
            R.ext_scalar[j] = scal[j]
        for j in range(R.nI):
            R.op[j] = ops[j]
            R.a[j] = aa[j]
            R.b[j] = bb[j]
            R.out[j] = outs[j]
        R.ffwd = ff[k] if cubin is not None else NULL
        R.fbwd = fb[k] if cubin is not None else NULL
    for j in range(len(marks)):
        rp.fzp.fuse[j] = marks[j]
    rp.fzp.nrecs = len(marks)
    rp.fzp.nreg = n


# NOTE [ CUDA replay ]
# A tape recorded on CUDA values (every array value on the device; a transfer inside
# the function is refused) replays there: replay_compile gives the records' values
# slots of one device arena and makes constants contiguous on the device;
# cad_forward sets the thread's device per record from its output, as the sweep
# does, so the same forward kernels and vjp rules run their device branches with
# the GIL released; inputs are bound by pointer (host inputs are moved first),
# outputs and gradients are copied out of the reused arena.  Runs of elementwise
# records are fused (NOTE [ Fused replay ] in cad_kernels/cuda/fuse.c) unless the
# caller needs every value (the Python sweeps of tape.jacobian/hvp/hessian).

cdef DevArray _dcopy_raw(cad_tape *t, cad_buf *b, const char *src):
    """a new device array with b's shape holding the b.size elements at device
    address src (a replayed value or gradient: the arena is reused)"""
    cdef DevArray a = _dnew(b.ndim, t.meta + b.meta, b.dtype, "replay")
    _dcheck(cad_cu_d2d(a.ptr, src, <size_t>(b.size * _ESIZE[b.dtype])), "replay")
    return a


cdef Tensor _bind_dev_input(cad_tape *t, cad_buf *b, Tensor x, int k, Replay rp, str who):
    """point input slot b of a CUDA tape at x's (contiguous) device values; returns
    what must stay alive during the replay"""
    cdef DevArray da
    cdef int d
    cdef bint same
    if not x._dev:
        x = _to_dev(x.detach(), 1)   # host inputs are moved (as jax.jit does)
    da = <DevArray>x._arr
    same = da.ndim == b.ndim
    if same:
        for d in range(b.ndim):
            if da.shp[d] != t.meta[b.meta + d]:
                same = False
    if not same:
        raise ShapeError(f"{who}: input {k} has shape {x.shape}; the tape was recorded with "
                         f"shape {rp.in_shape[k]} (record again for other shapes)")
    da = _dcontig(da)
    b.data = da.ptr
    return _dwrap(da)


def replay_run(Replay rp, tuple xs, object grad_mask, object seed, str who, bint fused=True):
    """One replay: inputs xs -> (outputs, gradients of the selected inputs or None).
    grad_mask: a tuple of bools (which inputs get gradients) or None (forward only).
    A CUDA tape (rp.dev) runs on the device (NOTE [ CUDA replay ]); fused=False:
    every record's value is computed (the Python sweeps read them)."""
    cdef cad_tape *t = &rp.tp.t
    cdef cad_tape priv
    cdef bint own = False, dev = rp.dev, st_ok = False, big
    cdef list keep = []
    cdef int64_t i
    cdef int st, k
    cdef cad_buf *b
    cdef Tensor x
    cdef cad_hid h
    cdef char *priv_arena = NULL
    cdef const cad_fzplan *fz = NULL
    cdef double one64
    cdef float one32
    if len(xs) != len(rp.in_h):
        raise TypeError(f"{who}: the tape was recorded with {len(rp.in_h)} inputs, got {len(xs)}")
    if not dev:
        for k in range(len(xs)):
            if isinstance(xs[k], Tensor) and (<Tensor>xs[k])._dev:
                raise DeviceError(f"{who}: input {k} is on cuda:0; the tape was recorded on the CPU "
                                  "(record it with CUDA inputs to replay on the GPU)")
    if rp.has_sp and not rp.busy and len(xs) <= 64:
        rp.busy = True
        try:
            return _sprog_run(rp, xs, grad_mask, seed, who)
        finally:
            rp.busy = False
    if rp.busy:   # another thread replays this tape: work on a private copy of the values
        priv = rp.tp.t
        priv.bufs = <cad_buf *>malloc(t.nbufs * sizeof(cad_buf))
        if priv.bufs == NULL:
            raise MemoryError()
        memcpy(priv.bufs, t.bufs, t.nbufs * sizeof(cad_buf))
        if dev:
            priv_arena = <char *>cad_cu_alloc(rp.arena_size if rp.arena_size else 64)
        else:
            priv_arena = <char *>cad_alloc(rp.arena_size if rp.arena_size else 64)
        if priv_arena == NULL:
            free(priv.bufs)
            _dcheck(CAD_EDEVMEM if dev else CAD_ENOMEM, who)
        _bind_arena(&priv, rp.arena_slots, priv_arena)
        for i in range(t.nbufs):
            priv.bufs[i].grad = NULL
        t = &priv
        own = True
    else:
        rp.busy = True
    try:
        for k in range(len(xs)):
            x = xs[k] if type(xs[k]) is Tensor else as_tensor(xs[k])
            if x._dtype != <int>rp.in_dtype[k]:
                raise DTypeError(f"{who}: input {k} has dtype {_DTNAMES[x._dtype]}; the tape was "
                                 f"recorded with {_DTNAMES[rp.in_dtype[k]]} (cast the input, or "
                                 "record again)")
            h = rp.in_h[k]
            b = &t.bufs[h]
            if dev:
                keep.append(_bind_dev_input(t, b, x, k, rp, who))
            elif b.flags & BUF_INLINE:
                if not x._inline:
                    raise ShapeError(f"{who}: input {k} has shape {x.shape}; the tape was recorded "
                                     f"with shape () (record again for other shapes)")
                b.sval = x._sval
            else:
                if not _same_shape(x, t, b):
                    raise ShapeError(f"{who}: input {k} has shape {x.shape}; the tape was recorded with "
                                     f"shape {rp.in_shape[k]} (record again for other shapes)")
                a = x._arr
                if not cnp.PyArray_IS_C_CONTIGUOUS(<cnp.ndarray>a):
                    a = _np.array(a, order="C")
                keep.append(a)
                b.data = <char *>cnp.PyArray_DATA(<cnp.ndarray>a)
        if grad_mask is not None and grad_mask != rp.rg_key:
            if own:
                raise RuntimeError(f"{who}: concurrent replays must use the same argnums")
            _set_rg(t, rp.in_h, grad_mask)
            rp.rg_key = grad_mask
        if fused and rp.fzp.nreg:
            fz = &rp.fzp
        # gradients are clean between replays (cleared after each gradient replay)
        big = dev or t.nrecs > 64 or t.nmeta > 0
        if big:
            with nogil:
                cad_fz_set(fz)
                st = cad_forward(t, 0)
                cad_fz_set(NULL)
        else:
            st = cad_forward(t, 0)
        _dcheck(st, who)
        if rp.guards:
            for g in rp.guards:
                g.check(host(_value_of(t, g.handle)), k=None)
        outs = [rp.out_const[k] if rp.out_h[k] < 0 else _value_of(t, rp.out_h[k])
                for k in range(len(rp.out_h))]
        if grad_mask is None:
            return outs, None
        h = rp.out_h[0]
        if h < 0 or not (t.bufs[h].flags & BUF_RG):
            return outs, [None if not m else _zeros_of(rp.in_shape[k], rp.in_dtype[k], dev)
                          for k, m in enumerate(grad_mask)]
        b = &t.bufs[h]
        if b.size != 1:
            raise BackwardError(f"{who}: the output has shape {outs[0].shape}; gradients need a "
                                "scalar output (use tape.jacobian)")
        _dcheck(cad_ensure_grad(b), who)
        one64 = 1.0 if seed is None else float(seed)
        one32 = <float>one64
        if b.flags & BUF_INLINE:
            b.sgrad = one64
        elif dev:
            _dcheck(cad_cu_h2d(b.grad, &one64, 8) if b.dtype == CAD_F64 else cad_cu_h2d(b.grad, &one32, 4), who)
        elif b.dtype == CAD_F64:
            (<double *>b.grad)[0] = one64
        else:
            (<float *>b.grad)[0] = one32
        for k in range(len(rp.in_h)):
            if grad_mask[k]:
                t.bufs[<cad_hid>rp.in_h[k]].flags |= BUF_KEEP
        if big:
            with nogil:
                cad_fz_set(fz)
                st = cad_sweep(t, 1, 0)
                cad_fz_set(NULL)
        else:
            st = cad_sweep(t, 1, 0)
        _dcheck(st, who)
        st_ok = True
        grads = []
        for k in range(len(rp.in_h)):
            if not grad_mask[k]:
                grads.append(None)
                continue
            b = &t.bufs[<cad_hid>rp.in_h[k]]
            if not b.hasg:
                grads.append(_zeros_of(rp.in_shape[k], rp.in_dtype[k], dev))
            elif b.flags & BUF_INLINE:
                grads.append(_new_inline(b.sgrad))
            elif dev:
                grads.append(_dwrap(_dcopy_raw(t, b, b.grad)))
            else:
                grads.append(_grad_copy(t, b))
        return outs, grads
    finally:
        if grad_mask is not None:
            if st_ok:   # the sweep left every propagated value clean: only inputs remain
                for k in range(len(rp.in_h)):
                    _clear_buf(&t.bufs[<cad_hid>rp.in_h[k]])
            else:
                cad_tape_clear_grads(t)
        if own:
            free(t.bufs)
            if dev:
                cad_cu_release(priv_arena)
            else:
                cad_release(priv_arena)
        else:
            rp.busy = False


cdef inline bint _same_shape(Tensor x, cad_tape *t, cad_buf *b):
    cdef int d
    cdef cnp.ndarray a
    if x._inline:
        return b.ndim == 0
    a = <cnp.ndarray>x._arr
    if cnp.PyArray_NDIM(a) != b.ndim:
        return False
    for d in range(b.ndim):
        if cnp.PyArray_DIMS(a)[d] != t.meta[b.meta + d]:
            return False
    return True


cdef inline void _clear_buf(cad_buf *b) noexcept:
    cad_buf_release_grad(b)   # host or device
    b.grad = NULL
    b.sgrad = 0.0
    b.hasg = 0
    b.flags &= ~BUF_KEEP


cdef Tensor _zeros_of(tuple shape, int dt, bint dev=False):
    if dev:
        return _dfull(shape, dt, 0)
    return _wrap(_np.zeros(shape, dtype=_DTYPES[dt]))


cdef Tensor _grad_copy(cad_tape *t, cad_buf *b):
    cdef cnp.npy_intp dims[MAXDIM]
    cdef cnp.ndarray a
    cdef int d
    for d in range(b.ndim):
        dims[d] = t.meta[b.meta + d]
    a = _empty(b.ndim, dims, b.dtype)
    if b.size:
        memcpy(cnp.PyArray_DATA(a), b.grad, b.size * _ESIZE[b.dtype])
    return _wrap(a)


def replay_values(Replay rp):
    """node tensors for the replayed values (for the Python sweeps: jacobian, hvp);
    valid until the next replay"""
    return rp.tp


def tape_value(Tape tp, cad_hid h):
    """a copy of handle h's current value"""
    return _value_of(&tp.t, h)


def tape_push_buf(Tape tp, object value, int dtype, tuple shape, int flags):
    """append a buf (loading a saved tape): a constant/input value (ndarray or
    float) or None for a value the replay computes"""
    cdef Tensor t
    cdef cad_hid h
    cdef cad_tape *T = &tp.t
    cdef cad_buf *b
    cdef int nd = len(shape), d
    if flags & BUF_INLINE:
        return _push_scalar(tp, float(value) if value is not None else 0.0,
                            flags & ~BUF_INLINE & 0xff)
    if value is not None:
        t = _wrap(_np.array(value, dtype=_DTYPES[dtype], order="C", copy=True))
        h = _push_buf(tp, t, flags, True)
        return h
    _reserve(tp, 1, 0, 2 * nd, 0)
    b = &T.bufs[T.nbufs]
    b.data = NULL
    b.grad = NULL
    b.owner = NULL
    b.leaf = NULL
    b.sval = 0.0
    b.sgrad = 0.0
    b.hasg = 0
    b.version = 0
    b.dtype = dtype
    b.flags = flags
    b.ndim = nd
    b.meta = T.nmeta
    b.size = 1
    for d in range(nd):
        T.meta[T.nmeta + d] = shape[d]
        b.size *= shape[d]
    cad_contig_strides(nd, T.meta + T.nmeta, T.meta + T.nmeta + nd)
    T.nmeta += 2 * nd
    T.nbufs += 1
    return T.nbufs - 1


def tape_push_rec(Tape tp, int op, cad_hid out, tuple args, tuple aux):
    """append a record (loading a saved tape)"""
    cdef int n = len(args), na = len(aux), i
    cdef cad_hid hs[64]
    cdef int64_t ax[80]
    if n > 64 or na > 80:
        raise ValueError("tape_push_rec: too many arguments")
    for i in range(n):
        hs[i] = args[i]
    for i in range(na):
        ax[i] = aux[i]
    _push_rec(tp, op, out, hs, n, ax, na)


def tape_node_of(Tape tp, cad_hid h, object value):
    """a tensor standing for handle h holding value (an input node of a loaded tape)"""
    cdef Tensor t = as_tensor(value)
    t = t.detach()
    t._tape = tp
    t._h = h
    t._rg = bool(tp.t.bufs[h].flags & BUF_RG)
    return t


def replay_inputs(Replay rp):
    return list(rp.in_h), list(rp.in_shape), list(rp.in_dtype)


def replay_outputs(Replay rp):
    return list(rp.out_h), list(rp.out_const)



def xent(object logits, object labels):
    """per-row cross-entropy: logsumexp(z[i]) - z[i, labels[i]] for z (N, C) and
    integer labels (N,); one pass in C, labels read by the kernel (so a recorded tape
    takes new labels)"""
    cdef Tensor z = as_tensor(logits), l = as_tensor(labels), r
    cdef int st
    cdef int64_t N, Cn
    cdef cnp.ndarray out, za, la
    cdef DevArray dz, dl, dout
    if z.ndim != 2 or not _isfloat(z._dtype):
        raise ShapeError(f"cross_entropy: logits must be a float (N, C) tensor, got {z.shape} "
                         f"{_DTNAMES[z._dtype]}")
    if l._dtype != CAD_I64:
        raise DTypeError(f"cross_entropy: labels must be integers, got {_DTNAMES[l._dtype]}")
    if l.shape != (z.shape[0],):
        raise ShapeError(f"cross_entropy: logits of shape {z.shape} need labels of shape "
                         f"({z.shape[0]},), got {l.shape}")
    N = z.shape[0]
    Cn = z.shape[1]
    if _common_dev([z, l], "cross_entropy"):
        dz = <DevArray>z._arr
        dl = <DevArray>l._arr
        dout = _dnew_shape((N,), z._dtype, "cross_entropy")
        with nogil:
            cad_set_dev(1)
            st = cad_xent_kernel(z._dtype, dout.ptr, dz.ptr, dz.st[0], dz.st[1],
                                 <const int64_t *>dl.ptr, dl.st[0], N, Cn)
            cad_set_dev(0)
        _dcheck(st, "cross_entropy")
        r = _dwrap(dout)
        if _mode1(z) or _mode1(l):
            _record(OP_XENT, r, [z, l], 1 | 2 | 128, NULL, 0)
        return r
    za = <cnp.ndarray>_arr_of(z)
    la = <cnp.ndarray>_arr_of(l)
    out = _empty_shape((N,), z._dtype)
    st = cad_xent_kernel(z._dtype, <char *>cnp.PyArray_DATA(out), <const char *>cnp.PyArray_DATA(za),
                         za.strides[0] // za.itemsize, za.strides[1] // za.itemsize,
                         <const int64_t *>cnp.PyArray_DATA(la), la.strides[0] // 8, N, Cn)
    _check(st, "cross_entropy")
    r = _wrap(out)
    if _mode1(z) or _mode1(l):
        _record(OP_XENT, r, [z, l], 1 | 2 | 128, NULL, 0)
    return r
