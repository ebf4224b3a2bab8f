# making tensors: wrapping arrays, constants, shapes.  Included by _engine.pyx (one extension module: calls between the rooms
# stay direct C calls); the include order is the module's order.

# ---------------------------------------------------------------- construction helpers

cdef inline Tensor _new_inline(double v):
    cdef Tensor r = Tensor.__new__(Tensor)
    r._sval = v
    r._inline = True
    r._dtype = CAD_F64
    return r


cdef Tensor _wrap(object a):
    """Tensor over ndarray a (made read-only; a must not be shared with the user)"""
    if not cnp.PyArray_Check(a):   # (not isinstance(a, _np.ndarray): a module lookup per op)
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


cdef Tensor _new_out(int dev, int nd, const int64_t *shape, int dt, str who):
    """an uninitialized output for a primitive's forward kernel on device dev
    (NOTE [ Storage per device ])"""
    return _st_on(dev).new(nd, shape, dt, who)


cdef Tensor _new_out_shape(int dev, tuple shape, int dt, str who):
    cdef int64_t sh[MAXDIM]
    cdef int d, nd = len(shape)
    if nd > MAXDIM:
        raise ShapeError(f"{who}: {nd} dims; cad has at most {MAXDIM}")
    for d in range(nd):
        sh[d] = shape[d]
    return _new_out(dev, nd, sh, dt, who)


cdef Tensor _value_contig(Tensor t):
    """t's value, C-contiguous (a copy when it is not), as an untracked tensor: the
    input of a kernel that reads flat positions"""
    cdef _Storage S
    if t._inline:
        return t
    S = _st(t)
    v = S.value(t)
    c = S.contig(v)
    return t if c is v else S.wrap(c)


cdef Tensor _index_tensor(object la, int dev):
    """int64 positions (a C-contiguous ndarray) as a tensor on the device"""
    return _st_on(dev).from_host(la, CAD_I64)


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


def empty_cache():
    """Return the blocks cad keeps for reuse to the system (and the arrays of the
    largest freed tape: NOTE [ Large tapes ] in tape.c); the number of bytes."""
    return cad_cache_clear() + cad_tape_cache_clear()


def _blas_par_min(object work=None):
    """the multiply-adds from which a matrix product splits over cad's pool (NOTE [ Pool
    units ]); with work, set it; returns the previous value (for tests and bench)"""
    global cad_blas_par_min
    prev = cad_blas_par_min
    if work is not None:
        cad_blas_par_min = float(work)
    return prev


def _par_min(object light=None, object heavy=None):
    """the elements from which an elementwise pass, reduction or accumulation splits
    over cad's pool (light: add, mul, copies; heavy: exp, sin, ...); with values, set
    them; returns the previous (light, heavy) (for tests and bench)"""
    global cad_par_min, cad_par_min_heavy
    prev = (cad_par_min, cad_par_min_heavy)
    if light is not None:
        if light < 1:
            raise ValueError(f"_par_min: light must be >= 1, got {light}")
        cad_par_min = light
    if heavy is not None:
        if heavy < 1:
            raise ValueError(f"_par_min: heavy must be >= 1, got {heavy}")
        cad_par_min_heavy = heavy
    return prev


def _topk_rows(cnp.ndarray a, int64_t k, bint largest):
    """positions (R, k) of the k largest (smallest) elements of each row of a C-ordered
    float64/float32 (R, n) array, in the order of a stable descending (ascending) sort,
    NaN largest (NOTE [ Top k ] in kernels.c; cad.topk's host path for small k)"""
    cdef int dt
    cdef int64_t R, n
    if cnp.PyArray_NDIM(a) != 2 or not cnp.PyArray_IS_C_CONTIGUOUS(a) or not a.dtype.isnative:
        raise ValueError("_topk_rows: needs a C-ordered 2-d array of native byte order")
    if a.dtype == _np.float64:
        dt = CAD_F64
    elif a.dtype == _np.float32:
        dt = CAD_F32
    else:
        raise TypeError(f"_topk_rows: needs float64 or float32, got {a.dtype}")
    R, n = cnp.PyArray_DIMS(a)[0], cnp.PyArray_DIMS(a)[1]
    if not 0 <= k <= n:
        raise ValueError(f"_topk_rows: k={k} out of range for rows of {n}")
    cdef cnp.ndarray out = _np.empty((R, k), dtype=_np.int64)
    cdef const char *src = <const char *>cnp.PyArray_DATA(a)
    cdef int64_t *dst = <int64_t *>cnp.PyArray_DATA(out)
    with nogil:
        cad_topk_rows(dt, src, R, n, k, largest, dst)
    return out


def _passed_grads():
    """gradient buffers this thread's sweeps passed on instead of copying (NOTE
    [ Passed-on gradients ] in sweep.c; for tests)"""
    return cad_passed_grads()


def _pool_contended():
    """True while the pool runs jobs on the caller alone after a straggler (NOTE
    [ Stragglers ] in pool.c): cad.linalg's LAPACK calls then take one BLAS thread"""
    return cad_pool_contended() != 0


def _pool_stats(bint reset=False, int serial=0):
    """the pool's straggler state (NOTE [ Stragglers ] in pool.c; for tests and bench):
    {"straggles": jobs that waited for a worker held off its core, "serial": jobs run
    on the caller alone after one, "serial_left": jobs still to run so, "backoff": the
    count the next straggler doubles}; reset=True clears it first and makes the next
    `serial` jobs serial"""
    cdef int64_t s[4]
    if serial < 0:
        raise ValueError(f"_pool_stats: serial must be >= 0, got {serial}")
    if reset:
        with nogil:
            cad_pool_reset_stats(serial)
    cad_pool_stats(s)
    return {"straggles": s[0], "serial": s[1], "serial_left": s[2], "backoff": s[3]}


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
    if _BATCHED_T is not None and isinstance(x, _BATCHED_T):
        _BATCH_HOOK("as_tensor", (x,))   # raises: the right message (escaped, or no rule)
    return from_numpy(x)


def as_float(object x, str who):
    """x as a floating tensor (integers and bools become float64)"""
    cdef Tensor t = as_tensor(x)
    if not _isfloat(t._dtype):
        return cast(t, float64)
    return t


# ---------------------------------------------------------------- shapes

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
