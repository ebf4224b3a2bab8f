# CUDA tensors, included by _engine.pyx.  See NOTE [ CUDA backend ] in
# cad_kernels/cuda/cad_cuda.h for the C side.
#
# NOTE [ CUDA tensors ]
# A CUDA tensor's value is a DevArray (device pointer, shape, element strides,
# dtype) over a DevBlock (one allocation from the device block cache, released
# when the last array over it dies), where a CPU tensor has a read-only ndarray;
# Tensor._dev says which (0 CPU, 1 CUDA).  Ops check their operands' devices once
# (mixing raises DeviceError naming both) and then run the same C primitives as
# on the CPU with the thread's device (cad_dev) set, so one recording path and one
# sweep serve both.  Views share the block; ops that numpy does on the CPU
# (integer arithmetic, argmax, sorting out index arrays) copy to the host and back.
# Python scalars become cached device constants, not per-op uploads.  The engine
# reaches these through the CUDA storage object (NOTE [ Storage per device ] in
# storage.pxi), not by branching on the device.

# (its C API is declared in capi.pxi)

# DLPack's structs (dlpack.h, the unversioned "dltensor" capsule every consumer takes)
cdef extern from *:
    """
    typedef struct { int32_t device_type; int32_t device_id; } cad_DLDevice;
    typedef struct { uint8_t code; uint8_t bits; uint16_t lanes; } cad_DLDataType;
    typedef struct {
        void *data; cad_DLDevice device; int32_t ndim; cad_DLDataType dtype;
        int64_t *shape; int64_t *strides; uint64_t byte_offset;
    } cad_DLTensor;
    typedef struct cad_DLManagedTensor {
        cad_DLTensor dl_tensor; void *manager_ctx;
        void (*deleter)(struct cad_DLManagedTensor *self);
    } cad_DLManagedTensor;
    """
    ctypedef struct cad_DLDevice:
        int32_t device_type
        int32_t device_id
    ctypedef struct cad_DLDataType:
        uint8_t code
        uint8_t bits
        uint16_t lanes
    ctypedef struct cad_DLTensor:
        void *data
        cad_DLDevice device
        int32_t ndim
        cad_DLDataType dtype
        int64_t *shape
        int64_t *strides
        uint64_t byte_offset
    ctypedef struct cad_DLManagedTensor:
        cad_DLTensor dl_tensor
        void *manager_ctx
        void (*deleter)(cad_DLManagedTensor *) noexcept


class OutOfMemoryError(DeviceError, MemoryError):
    """The GPU (or the fake device) has no memory left for an allocation; the
    tensors the caller holds are intact."""


cdef str _cu_msg():
    return cad_cu_error().decode("utf-8", "replace")


cdef _dcheck(int st, str who):
    if st == CAD_OK:
        return
    if st == CAD_EDEVMEM:
        raise OutOfMemoryError(f"{who}: {_cu_msg()}")
    if st == CAD_ECUDA:
        raise DeviceError(f"{who}: {_cu_msg()}")
    _check(st, who)


@cython.final
cdef class DevBlock:
    """one device allocation (from the block cache); freed with its last array.
    A foreign block (memory another library owns, NOTE [ Interop ] in
    cad/interop.py) keeps its owner alive instead: the object that exposed
    __cuda_array_interface__, or a DLPack managed tensor whose deleter runs here."""
    cdef char *ptr
    cdef size_t nbytes
    cdef object owner
    cdef cad_DLManagedTensor *dlm

    def __dealloc__(self):
        if self.dlm != NULL:
            if self.dlm.deleter != NULL:
                self.dlm.deleter(self.dlm)
            self.dlm = NULL
            self.ptr = NULL
        elif self.owner is not None:
            self.ptr = NULL
        elif self.ptr != NULL:
            cad_cu_release(self.ptr)
            self.ptr = NULL


@cython.final
cdef class DevArray:
    """A strided array in device memory (what a CUDA tensor holds)."""
    cdef DevBlock block
    cdef char *ptr            # element 0
    cdef int ndim
    cdef int dt
    cdef int64_t size
    cdef int64_t shp[MAXDIM]
    cdef int64_t st[MAXDIM]   # element strides

    @property
    def shape(self):
        return tuple([self.shp[d] for d in range(self.ndim)])

    @property
    def strides(self):
        return tuple([self.st[d] * _ESIZE[self.dt] for d in range(self.ndim)])

    @property
    def dtype(self):
        return _DTYPES[self.dt]

    @property
    def itemsize(self):
        return _ESIZE[self.dt]

    @property
    def nbytes(self):
        return self.size * _ESIZE[self.dt]

    @property
    def ptr_int(self):
        return <size_t>self.ptr

    cdef bint contig(self):
        cdef int64_t s = 1
        cdef int d
        for d in range(self.ndim - 1, -1, -1):
            if self.shp[d] != 1 and self.st[d] != s:
                return False
            s *= self.shp[d]
        return True


cdef object _CUDA_INIT = None   # cad.cuda._init: opens the driver, compiles and loads the kernels


def _set_cuda_init(fn):
    global _CUDA_INIT
    _CUDA_INIT = fn


cdef int _cuda_ready(str who) except -1:
    if cad_cu_is_open() and cad_cu_loaded():
        return 0
    if _CUDA_INIT is None:
        import cad.cuda   # sets the hook
    _CUDA_INIT(who)
    return 0


cdef DevArray _dnew(int nd, const int64_t *shape, int dt, str who="cuda"):
    """an uninitialised contiguous device array"""
    cdef DevArray a = DevArray.__new__(DevArray)
    cdef DevBlock b = DevBlock.__new__(DevBlock)
    cdef int64_t n = 1, s = 1
    cdef int d
    if nd > MAXDIM:
        raise ShapeError(f"{who}: at most {MAXDIM} dimensions")
    for d in range(nd):
        n *= shape[d]
    b.nbytes = <size_t>(n * _ESIZE[dt])
    b.ptr = <char *>cad_cu_alloc(b.nbytes if b.nbytes else 1)
    if b.ptr == NULL:
        _dcheck(CAD_EDEVMEM, who)
    a.block = b
    a.ptr = b.ptr
    a.ndim = nd
    a.dt = dt
    a.size = n
    for d in range(nd - 1, -1, -1):
        a.shp[d] = shape[d]
        a.st[d] = s
        s *= shape[d] if shape[d] > 1 else 1
    return a


cdef DevArray _dnew_shape(tuple shape, int dt, str who="cuda"):
    cdef int64_t sh[MAXDIM]
    cdef int d, nd = len(shape)
    if nd > MAXDIM:
        raise ShapeError(f"{who}: at most {MAXDIM} dimensions")
    for d in range(nd):
        sh[d] = shape[d]
    return _dnew(nd, sh, dt, who)


cdef DevArray _dview(DevArray base, int64_t off, tuple shape, tuple strides):
    """a view of base's block: element off (relative to base's element 0), shape,
    element strides"""
    cdef DevArray a = DevArray.__new__(DevArray)
    cdef int d, nd = len(shape)
    cdef int64_t n = 1
    a.block = base.block
    a.ptr = base.ptr + off * _ESIZE[base.dt]
    a.ndim = nd
    a.dt = base.dt
    for d in range(nd):
        a.shp[d] = shape[d]
        a.st[d] = strides[d]
        n *= shape[d]
    a.size = n
    return a


cdef inline tuple _dstrides(DevArray a):
    return tuple([a.st[d] for d in range(a.ndim)])


cdef Tensor _dwrap(DevArray a):
    cdef Tensor r = Tensor.__new__(Tensor)
    r._arr = a
    r._dtype = a.dt
    r._dev = 1
    return r


cdef inline int _run_dev(cad_iter *it, cad_row row) noexcept nogil:
    cdef int st
    cad_set_dev(1)
    st = cad_iter_run(it, row, NULL, NULL)
    cad_set_dev(0)
    return st


cdef DevArray _dcopy(DevArray a, int dt=-1):
    """a contiguous copy (cast to dt)"""
    cdef DevArray r
    cdef cad_iter it
    cdef int d, st
    if dt < 0:
        dt = a.dt
    r = _dnew(a.ndim, a.shp, dt)
    it.nop = 2
    it.ndim = a.ndim
    for d in range(a.ndim):
        it.shape[d] = a.shp[d]
    cad_iter_operand(&it, 0, r.ptr, _ESIZE[dt], a.ndim, r.shp, r.st)
    cad_iter_operand(&it, 1, a.ptr, _ESIZE[a.dt], a.ndim, a.shp, a.st)
    st = _run_dev(&it, cad_cast_rows[dt][a.dt])
    _dcheck(st, "cuda copy")
    return r


cdef DevArray _dcontig(DevArray a):
    return a if a.contig() else _dcopy(a)


cdef DevArray _dupload(object host, int dt=-1):
    """a device copy of host data (an ndarray or anything numpy takes)"""
    cdef cnp.ndarray h
    cdef DevArray r
    cdef int d, nd
    cdef int64_t sh[MAXDIM]
    if dt < 0:   # (asarray keeps 0-d arrays 0-d; ascontiguousarray would not)
        h = _np.asarray(host, order="C")
        dt = _dt_from_typenum(cnp.PyArray_TYPE(h))
        if dt < 0:
            h = _np.asarray(_np_to_supported(h, "cuda"), order="C")
            dt = _dt_from_typenum(cnp.PyArray_TYPE(h))
    else:
        h = _np.asarray(host, dtype=_DTYPES[dt], order="C")
    nd = cnp.PyArray_NDIM(h)
    for d in range(nd):
        sh[d] = cnp.PyArray_DIMS(h)[d]
    r = _dnew(nd, sh, dt)
    _dcheck(cad_cu_h2d(r.ptr, cnp.PyArray_DATA(h), <size_t>(r.size * _ESIZE[dt])), "to('cuda')")
    return r


cdef object _ddownload(DevArray a):
    """a new host ndarray with a's values (contiguous)"""
    cdef DevArray c = _dcontig(a)
    cdef cnp.ndarray h = _np.empty(a.shape, dtype=_DTYPES[a.dt])
    _dcheck(cad_cu_d2h(cnp.PyArray_DATA(h), c.ptr, <size_t>(c.size * _ESIZE[c.dt])), "cpu()")
    return h


cdef dict _DCONST = {}


cdef Tensor _dconst(object v, int dt):
    """a 0-d device constant for a Python scalar (cached: no upload per op)"""
    cdef tuple key = (dt, v, type(v))
    cdef Tensor r = _DCONST.get(key)
    if r is None:
        if len(_DCONST) > 4096:
            _DCONST.clear()
        r = _dwrap(_dupload(_np.array(v, dtype=_DTYPES[dt])))
        _DCONST[key] = r
    return r


cdef Tensor _dfull(tuple shape, int dt, object v):
    cdef DevArray a = _dnew_shape(shape, dt)
    cdef int64_t bits
    h = _np.array(v, dtype=_DTYPES[dt]).reshape(1)
    if _ESIZE[dt] == 8:
        bits = h.view(_np.int64)[0]
    elif _ESIZE[dt] == 4:
        bits = h.view(_np.int32)[0]
    else:
        bits = h.view(_np.uint8)[0]
    _dcheck(cad_cu_fill(a.ptr, _ESIZE[dt], a.size, bits), "cuda fill")
    return _dwrap(a)


cdef Device _CUDA = Device("cuda")


cdef inline int _devof(object x):
    return (<Tensor>x)._dev if isinstance(x, Tensor) else 0


cdef int _common_dev(list ts, str who) except -1:
    """the device of the tensors in ts (None entries skipped); mixing raises"""
    cdef int dev = -1, k
    cdef Tensor t
    for k in range(len(ts)):
        if ts[k] is None:
            continue
        t = <Tensor>ts[k]
        if dev < 0:
            dev = t._dev
        elif t._dev != dev:
            raise DeviceError(f"{who}: operands on different devices (cpu and cuda:0; shapes "
                              + " and ".join(f"{(<Tensor>u).shape} on {'cuda:0' if (<Tensor>u)._dev else 'cpu'}"
                                             for u in ts if u is not None)
                              + "); move them with .to('cuda') or .cpu()")
    return dev if dev > 0 else 0


cdef Tensor _to_dev(Tensor t, int dev):
    """t on device dev (0 CPU, 1 CUDA), recorded when it requires grad (the
    gradient goes back to t's device)"""
    cdef Tensor r
    cdef int64_t aux[2]
    if t._dev == dev:
        return t
    if dev == 1:
        _cuda_ready("to('cuda')")
        r = _dwrap(_dupload(_arr_of(t), t._dtype))
    else:
        r = _wrap(_ddownload(<DevArray>t._arr))
    if _mode1(t):
        aux[0] = t._dev
        aux[1] = dev
        _record(OP_TO_DEVICE, r, [t], 0, aux, 2)
    return r


def to_device(object x, int dev):
    """x copied to device dev (0: CPU, 1: CUDA), recorded (used by the op table)"""
    return _to_dev(as_tensor(x), dev)


def cuda_sync():
    _dcheck(cad_cu_sync(), "cuda.synchronize")


def cuda_open(bint fake):
    """open the driver (or the fake device); returns '' or the reason it failed"""
    cdef int st = cad_cu_open(fake)
    return "" if st == CAD_OK else _cu_msg()


def cuda_device_count():
    """devices the driver sees; -1 and a message when there is no driver"""
    cdef int n = cad_cu_device_count()
    return n, ("" if n > 0 else _cu_msg())


def cuda_load(bytes image):
    _dcheck(cad_cu_load(<const char *>image), "cuda: loading cad's kernels")


def cuda_state():
    """(open, fake, kernels loaded)"""
    return bool(cad_cu_is_open()), bool(cad_cu_is_fake()), bool(cad_cu_loaded())


def cuda_info():
    cdef char buf[256]
    cdef int ma = 0, mi = 0
    cdef size_t fr = 0, tot = 0
    name = ""
    if cad_cu_name(buf, 256) == CAD_OK:
        name = buf.decode("utf-8", "replace")
    cad_cu_capability(&ma, &mi)
    cad_cu_meminfo(&fr, &tot)
    return {"name": name, "capability": (ma, mi), "free": fr, "total": tot,
            "in_use": cad_cu_in_use(), "cached": cad_cu_cache_bytes()}


def cuda_empty_cache():
    return cad_cu_cache_clear()


def cuda_set_fake_limit(int64_t nbytes):
    global cad_cu_fake_limit
    cad_cu_fake_limit = nbytes


def cuda_set_tf32(bint on):
    global cad_cu_allow_tf32
    cad_cu_allow_tf32 = on


def cuda_set_cublas_paths(str paths):
    b = paths.encode()
    cad_cu_set_cublas_paths(b)


def dev_ptr(Tensor t):
    """(device pointer, shape, byte strides, dtype) of a CUDA tensor (interop)"""
    cdef DevArray a
    if t._dev != 1:
        raise DeviceError("dev_ptr: the tensor is on the cpu")
    a = <DevArray>t._arr
    return <size_t>a.ptr, a.shape, a.strides, _DTYPES[a.dt]


def host(object x):
    """x's value as a host ndarray (a copy for a CUDA tensor; for the op table's
    rules, which sort out index bookkeeping with numpy)"""
    return _arr_of(as_tensor(x))


def dev_of(object x):
    """0 for the CPU, 1 for CUDA"""
    return (<Tensor>x)._dev if isinstance(x, Tensor) else 0


def const_on(object arr, int dev):
    """a constant tensor holding numpy data, on device dev"""
    cdef Tensor t = from_numpy(arr, None, False, False)
    return _to_dev(t, dev) if dev else t


def device_full(tuple shape, object dtype, object value):
    """a tensor of shape filled with value, made on the GPU"""
    return _dfull(shape, _dtype_code(dtype, "tensor"), value)


# ---------------------------------------------------------------- interop (NOTE [ Interop ] in cad/interop.py)

cdef tuple _DL_CODES = ((2, 64), (2, 32), (0, 64), (6, 8))   # cad dtype -> (DLPack type code, bits)
cdef tuple _CAI_TYPESTR = ("<f8", "<f4", "<i8", "|b1")


cdef dict _dev_cai(Tensor t):
    cdef DevArray a = <DevArray>t._arr
    cdef bint c = a.contig()
    return {"shape": a.shape, "typestr": _CAI_TYPESTR[a.dt],
            "data": (<size_t>a.ptr if a.size else 0, True),
            "strides": None if c else a.strides, "version": 3,
            "stream": None}   # cad's work is on the legacy default stream, done in order


cdef void _dl_delete(cad_DLManagedTensor *m) noexcept with gil:
    Py_XDECREF(<PyObject *>m.manager_ctx)
    free(m.dl_tensor.shape)
    free(m)


cdef void _dl_capsule_delete(object cap) noexcept:
    cdef cad_DLManagedTensor *m
    if PyCapsule_IsValid(cap, "dltensor"):   # never consumed: ours to free
        m = <cad_DLManagedTensor *>PyCapsule_GetPointer(cap, "dltensor")
        m.deleter(m)


cdef object _dev_dlpack(Tensor t, object stream, object max_version, object dl_device, object copy):
    cdef DevArray a = <DevArray>t._arr
    cdef cad_DLManagedTensor *m
    cdef int d
    if dl_device is not None and tuple(dl_device) != (2, 0):
        raise BufferError(f"__dlpack__: the tensor is on cuda:0, not on DLPack device {tuple(dl_device)}")
    if copy:
        a = _dcopy(a)
    _dcheck(cad_cu_sync(), "__dlpack__")   # cad's queued work is done before any consumer stream reads
    m = <cad_DLManagedTensor *>calloc(1, sizeof(cad_DLManagedTensor))
    if m == NULL:
        raise MemoryError()
    m.dl_tensor.shape = <int64_t *>malloc((2 * a.ndim + 1) * sizeof(int64_t))
    if m.dl_tensor.shape == NULL:
        free(m)
        raise MemoryError()
    m.dl_tensor.strides = m.dl_tensor.shape + a.ndim
    for d in range(a.ndim):
        m.dl_tensor.shape[d] = a.shp[d]
        m.dl_tensor.strides[d] = a.st[d]
    m.dl_tensor.data = <void *>a.ptr
    m.dl_tensor.device.device_type = 2    # kDLCUDA
    m.dl_tensor.device.device_id = 0
    m.dl_tensor.ndim = a.ndim
    m.dl_tensor.dtype.code = _DL_CODES[a.dt][0]
    m.dl_tensor.dtype.bits = _DL_CODES[a.dt][1]
    m.dl_tensor.dtype.lanes = 1
    m.dl_tensor.byte_offset = 0
    Py_INCREF(a)
    m.manager_ctx = <void *>a
    m.deleter = _dl_delete
    return PyCapsule_New(<void *>m, "dltensor", <PyCapsule_Destructor>_dl_capsule_delete)


cdef DevArray _foreign(char *ptr, tuple shape, tuple strides, int dt, object owner,
                       cad_DLManagedTensor *dlm, str who):
    """a DevArray over memory another library owns (strides in elements)"""
    cdef DevArray a = DevArray.__new__(DevArray)
    cdef DevBlock b = DevBlock.__new__(DevBlock)
    cdef int d, nd = len(shape)
    cdef int64_t n = 1
    if nd > MAXDIM:
        if dlm != NULL and dlm.deleter != NULL:
            dlm.deleter(dlm)
        raise ShapeError(f"{who}: shape {shape} has {nd} dimensions; cad takes at most {MAXDIM}")
    b.ptr = ptr
    b.owner = owner
    b.dlm = dlm
    a.block = b
    a.ptr = ptr
    a.ndim = nd
    a.dt = dt
    for d in range(nd):
        a.shp[d] = shape[d]
        a.st[d] = strides[d]
        n *= shape[d]
    a.size = n
    return a


def _c_strides(tuple shape):
    cdef list st = []
    cdef int64_t s = 1
    for n in reversed(shape):
        st.append(s)
        s *= n if n > 1 else 1
    return tuple(reversed(st))


def from_cai(object obj, str who="from_dlpack"):
    """a CUDA tensor over obj's memory (obj has __cuda_array_interface__), no copy"""
    _cuda_ready(who)
    cai = obj.__cuda_array_interface__
    shape = tuple(int(n) for n in cai["shape"])
    try:
        dtype = _np.dtype(cai["typestr"])
    except TypeError:
        raise DTypeError(f"{who}: typestr {cai['typestr']!r} is not a dtype") from None
    dt = _dt_from_typenum(dtype.num) if dtype.isnative else -1
    if dt < 0:
        raise DTypeError(f"{who}: a CUDA array of dtype {dtype} (cad holds float64, float32, int64 "
                         f"and bool); convert it where it lives first")
    if cai.get("mask") is not None:
        raise ValueError(f"{who}: masked CUDA arrays are not supported")
    ptr = int(cai["data"][0])
    strides = cai.get("strides")
    if strides is None:
        est = _c_strides(shape)
    else:
        if any(s % dtype.itemsize for s in strides):
            raise ValueError(f"{who}: strides {tuple(strides)} are not multiples of the item size "
                             f"{dtype.itemsize}")
        est = tuple(int(s) // dtype.itemsize for s in strides)
    if cai.get("stream") is not None:   # the producer's stream may still be writing
        _dcheck(cad_cu_sync(), who)
    return _dwrap(_foreign(<char *><size_t>ptr, shape, est, dt, obj, NULL, who))


def from_dlpack_capsule(object cap, str who="from_dlpack"):
    """a CUDA tensor over a "dltensor" capsule's memory, no copy (the capsule is consumed)"""
    cdef cad_DLManagedTensor *m
    cdef int d, dt = -1
    cdef char *ptr
    if not PyCapsule_IsValid(cap, "dltensor"):
        raise BufferError(f"{who}: not a DLPack capsule, or one already consumed")
    _cuda_ready(who)
    m = <cad_DLManagedTensor *>PyCapsule_GetPointer(cap, "dltensor")
    if m.dl_tensor.device.device_type != 2:
        raise BufferError(f"{who}: the capsule's memory is on DLPack device "
                          f"{m.dl_tensor.device.device_type}, not CUDA")
    for d in range(4):
        if (m.dl_tensor.dtype.code, m.dl_tensor.dtype.bits) == _DL_CODES[d] and m.dl_tensor.dtype.lanes == 1:
            dt = d
    if m.dl_tensor.dtype.code == 1 and m.dl_tensor.dtype.bits == 8:
        dt = 3   # some producers spell bool as uint8 (kDLUInt, 8 bits)
    if dt < 0:
        raise DTypeError(f"{who}: DLPack dtype (code {m.dl_tensor.dtype.code}, {m.dl_tensor.dtype.bits} "
                         f"bits) is not one of cad's (float64, float32, int64, bool)")
    shape = tuple([m.dl_tensor.shape[d] for d in range(m.dl_tensor.ndim)])
    if m.dl_tensor.strides == NULL:
        est = _c_strides(shape)
    else:
        est = tuple([m.dl_tensor.strides[d] for d in range(m.dl_tensor.ndim)])
    ptr = <char *>m.dl_tensor.data + m.dl_tensor.byte_offset
    PyCapsule_SetName(cap, "used_dltensor")
    return _dwrap(_foreign(ptr, shape, est, dt, None, m, who))


def dev_copy(Tensor t):
    """a CUDA tensor's value in a new device block of cad's own (untracked)"""
    if not t._dev:
        raise DeviceError("dev_copy: the tensor is on the CPU")
    return _dwrap(_dcopy(<DevArray>t._arr))
