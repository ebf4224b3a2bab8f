# grad mode, record mode, threads, BLAS.  Included by _engine.pyx (one extension module: calls between the rooms
# stay direct C calls); the include order is the module's order.

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
    cdef object _func

    def __init__(self, func=None):
        self._prev = []
        self._func = func   # @no_grad without parentheses

    def __enter__(self):
        global cad_grad_off
        self._prev.append(cad_grad_off)
        cad_grad_off = 1
        return self

    def __exit__(self, *exc):
        global cad_grad_off
        cad_grad_off = self._prev.pop()
        return False

    def __call__(self, *args, **kwargs):
        import functools
        if self._func is not None:   # the bare decorator: the instance is the wrapper
            with no_grad():
                return self._func(*args, **kwargs)
        if len(args) != 1 or kwargs or not callable(args[0]):
            raise TypeError("no_grad(): use it as a context manager, @no_grad or @no_grad()")
        func = args[0]

        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            with no_grad():
                return func(*args, **kwargs)
        return wrapper


cdef class enable_grad:
    """Context manager and decorator: record even inside no_grad (per thread)."""
    cdef list _prev
    cdef object _func

    def __init__(self, func=None):
        self._prev = []
        self._func = func   # @enable_grad without parentheses

    def __enter__(self):
        global cad_grad_off
        self._prev.append(cad_grad_off)
        cad_grad_off = 0
        return self

    def __exit__(self, *exc):
        global cad_grad_off
        cad_grad_off = self._prev.pop()
        return False

    def __call__(self, *args, **kwargs):
        import functools
        if self._func is not None:   # the bare decorator: the instance is the wrapper
            with enable_grad():
                return self._func(*args, **kwargs)
        if len(args) != 1 or kwargs or not callable(args[0]):
            raise TypeError("enable_grad(): use it as a context manager, @enable_grad or @enable_grad()")
        func = args[0]

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
    """Threads of the CPU kernels (cad's pool of pthreads, pool.c; not OpenMP): 1 to
    1024; None restores the default."""
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


cdef extern from *:
    """
    /* the SIMD clones this build has (setup.py's defines) and the one gcc's
       target_clones resolver runs on this CPU: the widest clone built that
       __builtin_cpu_supports, the resolver's own test, accepts */
    static int cad_simd_built(void) {
        int m = 0;
    #if defined(CAD_CLONES)
        m |= 1;
    #endif
    #if defined(CAD_CLONES512)
        m |= 2;
    #endif
    #if defined(CAD_LIBMVEC)
        m |= 4;
    #endif
        return m;
    }
    static int cad_simd_picked(void) {
    #if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
        __builtin_cpu_init();
    #if defined(CAD_CLONES512)
        if (__builtin_cpu_supports("avx512f")) return 2;
    #endif
    #if defined(CAD_CLONES)
        if (__builtin_cpu_supports("avx2")) return 1;
    #endif
    #endif
        return 0;
    }
    """
    int cad_simd_built()
    int cad_simd_picked()


def simd_info():
    """The engine's SIMD build and choice (python -m cad --info): the target clones
    of the hot loops built ("avx512f", "avx2", "default"), the one that runs on this
    CPU, and whether the build enabled glibc's vector math (libmvec; the compiler calls
    it only where it vectorizes: not at -O1, the sanitizer build)."""
    cdef int m = cad_simd_built()
    built = (["avx512f"] if m & 2 else []) + (["avx2"] if m & 1 else [])
    picked = ("default", "avx2", "avx512f")[cad_simd_picked()]
    return {"clones_built": built + ["default"] if built else [], "picked": picked,
            "libmvec": bool(m & 4)}


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
    cad_set_blas(_capsule_ptr(capi["dgemm"]), _capsule_ptr(capi["sgemm"]),
                 _capsule_ptr(capi["dgemv"]), _capsule_ptr(capi["sgemv"]))
    return True


HAVE_BLAS = _load_blas()
BLAS_THREAD_CONTROL = bool(cad_blas_thread_control())


def _load_lapack():
    try:
        from scipy.linalg import cython_lapack
    except ImportError:
        return False
    from scipy.linalg import cython_blas
    capi = cython_lapack.__pyx_capi__
    bapi = cython_blas.__pyx_capi__
    cad_set_lapack(_capsule_ptr(capi["dgetrs"]), _capsule_ptr(capi["sgetrs"]),
                   _capsule_ptr(bapi["dtrsm"]), _capsule_ptr(bapi["strsm"]),
                   _capsule_ptr(bapi["dtrmm"]), _capsule_ptr(bapi["strmm"]))
    return True


HAVE_LAPACK = _load_lapack()


def lu_solve(cnp.ndarray lu, cnp.ndarray piv, cnp.ndarray b, bint trans):
    """b := op(A)^-1 b in place, A = P L U from getrf: lu (n, n) and b (n, k) Fortran-
    ordered of one float dtype, piv int32 1-based (LAPACK's); the GIL released, the
    right-hand sides split over cad's pool (cad_getrs)"""
    cdef int dt
    cdef int64_t n, k
    cdef int st
    cdef char *plu
    cdef char *pb
    cdef int *pp
    if not HAVE_LAPACK:
        raise RuntimeError("cad.linalg: scipy's LAPACK is not available")
    if lu.ndim != 2 or b.ndim != 2 or piv.ndim != 1 or lu.shape[0] != lu.shape[1] \
            or b.shape[0] != lu.shape[0] or piv.shape[0] != lu.shape[0]:
        raise ValueError("lu_solve: shapes")
    if lu.dtype != b.dtype or lu.dtype not in (_np.float64, _np.float32) or piv.dtype != _np.int32:
        raise ValueError("lu_solve: dtypes")
    if not (lu.flags.f_contiguous and b.flags.f_contiguous and b.flags.writeable and
            piv.flags.c_contiguous):
        raise ValueError("lu_solve: layouts")
    dt = CAD_F64 if lu.dtype == _np.float64 else CAD_F32
    n = lu.shape[0]
    k = b.shape[1]
    plu = <char *>cnp.PyArray_DATA(lu)
    pb = <char *>cnp.PyArray_DATA(b)
    pp = <int *>cnp.PyArray_DATA(piv)
    with nogil:
        st = cad_getrs(dt, trans, n, k, plu, pp, pb)
    _check(st, "cad.linalg")
    return b


def is_symmetric(cnp.ndarray a):
    """whether every matrix of a (nb, n, n) C-contiguous float64/float32 array equals
    its transpose exactly (cad_is_symmetric; the GIL released)"""
    cdef int dt, r
    cdef int64_t nb, n
    cdef const char *pa
    if a.ndim != 3 or a.shape[1] != a.shape[2]:
        raise ValueError("is_symmetric: shapes")
    if a.dtype not in (_np.float64, _np.float32):
        raise ValueError("is_symmetric: dtypes")
    if not a.flags.c_contiguous:
        raise ValueError("is_symmetric: layouts")
    dt = CAD_F64 if a.dtype == _np.float64 else CAD_F32
    nb = a.shape[0]
    n = a.shape[1]
    pa = <const char *>cnp.PyArray_DATA(a)
    with nogil:
        r = cad_is_symmetric(dt, nb, n, pa)
    return bool(r)


def symmetrize(cnp.ndarray a, bint upper):
    """in place: each matrix of a (nb, n, n) C-contiguous writable float64/float32 array
    made symmetric from its upper (upper) or lower triangle (cad_symmetrize)"""
    cdef int dt
    cdef int64_t nb, n
    cdef char *pa
    if a.ndim != 3 or a.shape[1] != a.shape[2]:
        raise ValueError("symmetrize: shapes")
    if a.dtype not in (_np.float64, _np.float32):
        raise ValueError("symmetrize: dtypes")
    if not (a.flags.c_contiguous and a.flags.writeable):
        raise ValueError("symmetrize: layouts")
    dt = CAD_F64 if a.dtype == _np.float64 else CAD_F32
    nb = a.shape[0]
    n = a.shape[1]
    pa = <char *>cnp.PyArray_DATA(a)
    with nogil:
        cad_symmetrize(dt, nb, n, pa, upper)
    return a


def trsm_small(cnp.ndarray a, cnp.ndarray b, bint lower, bint trans):
    """b := op(T)^-1 b in place for a batch of triangular matrices (NOTE [ Small
    triangular solves ]): a (na, n, n) with na 1 or nb, b (nb, n, k), both C-contiguous
    of one float dtype; only T's triangle (lower or upper) is read.  Returns 0, or 1 +
    the batch index of a matrix with a zero on its diagonal."""
    cdef int dt
    cdef int64_t nb, n, k, a_bs, r
    cdef const char *pa
    cdef char *pb
    if a.ndim != 3 or b.ndim != 3 or a.shape[1] != a.shape[2] or b.shape[1] != a.shape[1] \
            or a.shape[0] not in (1, b.shape[0]):
        raise ValueError("trsm_small: shapes")
    if a.dtype != b.dtype or a.dtype not in (_np.float64, _np.float32):
        raise ValueError("trsm_small: dtypes")
    if not (a.flags.c_contiguous and b.flags.c_contiguous and b.flags.writeable):
        raise ValueError("trsm_small: layouts")
    dt = CAD_F64 if a.dtype == _np.float64 else CAD_F32
    nb = b.shape[0]
    n = b.shape[1]
    k = b.shape[2]
    a_bs = n * n if a.shape[0] > 1 else 0
    pa = <const char *>cnp.PyArray_DATA(a)
    pb = <char *>cnp.PyArray_DATA(b)
    with nogil:
        r = cad_trsm_small(dt, lower, trans, nb, n, k, pa, a_bs, pb)
    return r


def blas_threads_local(int nt):
    """set this thread's BLAS threads in scipy's OpenBLAS (cad.linalg's LAPACK calls);
    returns the previous setting, or -1 when the library cannot do this"""
    return cad_blas_threads_local(nt)
