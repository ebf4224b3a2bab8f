# Where a value lives: one storage interface per device.  Included by _engine.pyx
# after device.pxi and construct.pxi.
#
# NOTE [ Storage per device ]
# A tensor's value is an ndarray (or an inline 0-d float64, `_sval`) on the CPU and a
# DevArray (a strided window of a DevBlock) on CUDA.  Which *kernel* runs is chosen by
# the backend struct in C (NOTE [ Backends ] in cad_kernels); where the *value* lives
# is said here, once: a `_Storage` object per device with the operations the engine
# needs of a value (its strides, a view, a contiguous copy, a converted copy, a fresh
# output, a constant, a copy from the host, the host copy, running an iteration on the
# device).  The engine's code above the kernels (views, elementwise dispatch, casts,
# construction, the optimizer, the Python sweeps) asks `_st(t)` / `_st_on(dev)` and
# holds no `if t._dev:` of its own.  The inline accessors at the end of this file
# (`_tndim`, `_tdims`, `_operand`) read a value's header on the per-op hot path and
# switch on the container type directly: a virtual call there would cost the scalar
# path.  A replay asks its storage for its arena, its constants' contiguous copies,
# its seeds and the copies of its values and gradients.  What stays device-specific
# elsewhere: device.pxi (the DevArray type, moves between devices, interop); a tape
# buffer's header (`_fill_buf` in tape.pxi, `_grad_tensor` in backward.pxi: BUF_CUDA
# buffers, read on the per-record path); replay.pxi's binding of inputs and its
# host-only plans (aliased views, scalar programs, outputs written into fresh arrays;
# NOTE [ CUDA replay ]).

cdef extern from "numpy/arrayobject.h":
    object _NewFromDescr "PyArray_NewFromDescr" (void *subtype, void *descr, int nd, cnp.npy_intp *dims,
                                                 cnp.npy_intp *strides, void *data, int flags, void *obj)


cdef class _Storage:
    """where a tensor's value lives (the base: one subclass per device)"""
    cdef readonly int dev
    cdef readonly str name
    cdef readonly object device           # the Device object (t.device)
    cdef readonly tuple dlpack_device     # (DLPack device type, id)
    cdef readonly int64_t nogil_min       # below this many elements a host loop keeps the GIL
    cdef readonly int enomem              # the status of a failed allocation here

    cdef char *alloc(self, size_t nb) noexcept:
        """nb bytes of raw memory on this device (a replay's arena), NULL when out of memory"""
        return NULL

    cdef void release(self, void *p) noexcept:
        pass

    cdef int put(self, void *dst, const void *src, size_t nb, str who) except -1:
        """copy nb bytes of host memory into this device's memory at dst"""
        raise NotImplementedError

    cdef int move(self, void *dst, const void *src, size_t nb, str who) except -1:
        """copy nb bytes within this device's memory"""
        raise NotImplementedError

    cdef Tensor copy_raw(self, int nd, const int64_t *shape, const int64_t *strides, int dt,
                         const char *src, str who):
        """a new contiguous tensor holding the elements of this device's memory at src
        (element strides, NULL: contiguous): a replayed value or gradient, whose arena
        is reused"""
        cdef cad_iter it
        cdef int d
        cdef int64_t n = 1
        cdef object v = self.buffer(nd, shape, dt, who)
        cdef Tensor r
        for d in range(nd):
            n *= shape[d]
        if n and strides == NULL:
            self.move(self.data(v), src, <size_t>(n * _ESIZE[dt]), who)
        r = self.wrap(v)
        if n == 0 or strides == NULL:
            return r
        it.nop = 2
        it.ndim = nd
        for d in range(nd):
            it.shape[d] = shape[d]
        _operand(&it, 0, r)
        cad_iter_operand(&it, 1, <char *>src, _ESIZE[dt], nd, shape, strides)
        self.run(&it, cad_copy_rows[dt], cad_par_min, who)
        return r

    cdef int ready(self, str who) except -1:
        """make the device usable (opens CUDA on first use)"""
        return 0

    cdef int host_only(self, Tensor t, str who) except -1:
        """raise unless t's memory can be read on the host (numpy(), __array__)"""
        return 0

    cdef object dlpack(self, Tensor t, object stream, object max_version, object dl_device, object copy):
        """DLPack export of t's memory (NOTE [ Interop ] in cad/interop.py)"""
        raise NotImplementedError

    cdef dict cai(self, Tensor t):
        """the CUDA array interface of t's memory"""
        raise AttributeError(f"__cuda_array_interface__: the tensor is on the {self.name}")

    cdef object value(self, Tensor t):
        """t's storage object (an ndarray, materialised for an inline scalar, or a
        DevArray)"""
        raise NotImplementedError

    cdef tuple strides(self, object v):
        """v's element strides"""
        raise NotImplementedError

    cdef int64_t stride(self, object v, int d) except? -1:
        """v's element stride along dim d (strides(v)[d] without the tuple)"""
        return self.strides(v)[d]

    cdef object view(self, object v, int64_t off, tuple shape, tuple strides):
        """a read-only view of v's memory: element off (relative to v's element 0),
        shape, element strides"""
        raise NotImplementedError

    cdef object contig(self, object v):
        """v when it is C-contiguous, else a contiguous copy"""
        raise NotImplementedError

    cdef object index(self, object v, tuple idx):
        """v[idx] (idx normalised: _norm_index) with numpy's checks and IndexErrors:
        a view for basic indices; for the others the values, or None where the
        gather kernel computes them"""
        raise NotImplementedError

    cdef object take(self, object v, object ix):
        """v's rows ix (numpy's take along axis 0, its IndexErrors), or None where the
        gather kernel computes them"""
        raise NotImplementedError

    cdef object reshape(self, object v, tuple shape):
        """v in shape (a view where the layout allows, else a copy)"""
        raise NotImplementedError

    cdef object astype(self, object v, int dt):
        """a contiguous copy of v converted to dtype dt (numpy's rules)"""
        raise NotImplementedError

    cdef Tensor wrap(self, object v):
        raise NotImplementedError

    cdef Tensor new(self, int nd, const int64_t *shape, int dt, str who):
        """an uninitialised output of a kernel"""
        return self.wrap(self.buffer(nd, shape, dt, who))

    cdef object buffer(self, int nd, const int64_t *shape, int dt, str who):
        """an uninitialised contiguous value object (wrap makes it a tensor)"""
        raise NotImplementedError

    cdef Tensor new_like(self, list ts, int nd, const int64_t *shape, int dt, str who):
        """an uninitialised elementwise result over operands ts, in their memory order
        where the device follows it (NOTE [ Result memory order ])"""
        return self.new(nd, shape, dt, who)

    cdef Tensor scalar(self, object v, int dt):
        """a Python scalar as a 0-d operand of dtype dt"""
        raise NotImplementedError

    cdef Tensor full(self, tuple shape, int dt, object v):
        raise NotImplementedError

    cdef Tensor from_host(self, object a, int dt):
        """host data (an ndarray or what numpy takes) as a constant on this device
        (dtype dt, or a's own when dt < 0)"""
        raise NotImplementedError

    cdef int run(self, cad_iter *it, cad_row row, int64_t pmin, str who) except -1:
        """run row kernel `row` over the iteration it on this device"""
        raise NotImplementedError

    cdef bint gemmable(self, object v, int nd):
        """do the last two dims of v have a unit stride BLAS can use?"""
        raise NotImplementedError

    cdef char *data(self, object v):
        """the address of v's element 0"""
        raise NotImplementedError

    cdef object state_new(self, tuple shape, int dt, bint zero, str who):
        """a buffer a caller owns and updates in place (cad.optim's state): a writable
        ndarray on the CPU, a tensor on CUDA; zeros, or uninitialised"""
        raise NotImplementedError

    cdef char *state_data(self, object a, int dt, int64_t n, str who) except NULL:
        """the data of a buffer state_new made, checked to hold n contiguous elements
        of dtype dt"""
        raise NotImplementedError


@cython.final
cdef void _take_c(cnp.ndarray a, cnp.ndarray i, cnp.ndarray out) except *:
    """_HostStorage.take's rows of a C-ordered array by a 1-D int64 array of positions
    (any stride) into out, in C (NOTE [ Row gathers ] in kernels.c: the range checked
    while copying)"""
    cdef int64_t n = cnp.PyArray_DIMS(a)[0], m = cnp.PyArray_SIZE(i), bad
    cdef int64_t rowb = (cnp.PyArray_SIZE(a) // n if n else 0) * cnp.PyArray_ITEMSIZE(a)
    cdef char *dst = <char *>cnp.PyArray_DATA(out)
    cdef const char *src = <const char *>cnp.PyArray_DATA(a)
    cdef const int64_t *idx = <const int64_t *>cnp.PyArray_DATA(i)
    cdef int64_t ist = cnp.PyArray_STRIDES(i)[0] // 8
    if rowb * m >= 65536:
        with nogil:
            bad = cad_take_rows(dst, src, idx, ist, m, n, rowb)
    else:
        bad = cad_take_rows(dst, src, idx, ist, m, n, rowb)
    if bad >= 0:
        raise IndexError(f"index {idx[bad * ist]} is out of bounds for axis 0 with size {n}")


cdef class _HostStorage(_Storage):
    cdef object dlpack(self, Tensor t, object stream, object max_version, object dl_device, object copy):
        cdef object a = _arr_of(t)
        kw = {}
        if max_version is not None:
            kw["max_version"] = max_version
        if dl_device is not None:
            kw["dl_device"] = dl_device
        if copy is not None:
            kw["copy"] = copy
        try:
            return a.__dlpack__(**kw)
        except BufferError:
            # a consumer without DLPack 1.0 cannot be told the memory is read-only
            if copy is False:
                raise BufferError("__dlpack__: a cad tensor is read-only and this consumer "
                                  "does not take DLPack 1.0's read-only flag; copy=False forbids a copy") from None
            return a.copy().__dlpack__()

    cdef object value(self, Tensor t):
        return _arr_of(t)

    cdef tuple strides(self, object v):
        cdef cnp.ndarray a = <cnp.ndarray>v
        cdef int d, es = cnp.PyArray_ITEMSIZE(a)
        return tuple([cnp.PyArray_STRIDES(a)[d] // es for d in range(cnp.PyArray_NDIM(a))])

    cdef int64_t stride(self, object v, int d) except? -1:
        return cnp.PyArray_STRIDES(<cnp.ndarray>v)[d] // cnp.PyArray_ITEMSIZE(<cnp.ndarray>v)

    cdef object view(self, object v, int64_t off, tuple shape, tuple strides):
        cdef cnp.ndarray a = <cnp.ndarray>v
        cdef int nd = len(shape), d
        cdef int64_t es = cnp.PyArray_ITEMSIZE(a)
        cdef cnp.npy_intp dims[MAXDIM]
        cdef cnp.npy_intp st[MAXDIM]
        cdef cnp.PyArray_Descr *descr = cnp.PyArray_DESCR(a)
        if nd > MAXDIM:
            raise ShapeError(f"view: {nd} dims; cad has at most {MAXDIM}")
        for d in range(nd):
            dims[d] = shape[d]
            st[d] = strides[d] * es
        Py_INCREF(<object>descr)   # (NewFromDescr steals it)
        r = _NewFromDescr(<void *>_np.ndarray, <void *>descr, nd, dims, st,
                          <char *>cnp.PyArray_DATA(a) + off * es, cnp.NPY_ARRAY_ALIGNED, NULL)
        cnp.set_array_base(<cnp.ndarray>r, a)
        cnp.PyArray_UpdateFlags(<cnp.ndarray>r, cnp.NPY_ARRAY_C_CONTIGUOUS | cnp.NPY_ARRAY_F_CONTIGUOUS)
        return r

    cdef object contig(self, object v):
        if cnp.PyArray_IS_C_CONTIGUOUS(<cnp.ndarray>v):
            return v
        return _np.ascontiguousarray(v)

    cdef object reshape(self, object v, tuple shape):
        if cnp.PyArray_IS_C_CONTIGUOUS(<cnp.ndarray>v):   # (a view made here: no ndarray.reshape call)
            return self.view(v, 0, shape, _cstrides(shape))
        return (<cnp.ndarray>v).reshape(shape)

    cdef object index(self, object v, tuple idx):
        r = (<cnp.ndarray>v)[idx]
        return r if type(r) is _np.ndarray else _np.asarray(r)   # (a full index gives a numpy scalar)

    cdef object take(self, object v, object ix):
        # into cad's block cache (alloc.c): numpy's own output of BA's cams[ci] (3.2 MB)
        # was fresh pages, faulted in on every call.  numpy buffers `out` under
        # mode='raise', so the positions are checked (and negatives wrapped) here and
        # taken with mode='clip', which then never clips
        cdef cnp.npy_intp dims[MAXDIM]
        cdef int d, nd, dt
        cdef bint c_rows
        cdef cnp.ndarray a = <cnp.ndarray>v
        cdef cnp.ndarray i = <cnp.ndarray>ix
        n = cnp.PyArray_DIMS(a)[0]
        nd = cnp.PyArray_NDIM(i) + cnp.PyArray_NDIM(a) - 1
        dt = _dt_from_typenum(cnp.PyArray_TYPE(a))
        if nd > MAXDIM or cnp.PyArray_SIZE(i) == 0 or dt < 0:
            return _np.take(v, ix, axis=0)
        c_rows = cnp.PyArray_TYPE(i) == cnp.NPY_INT64 and cnp.PyArray_NDIM(i) == 1 and \
            cnp.PyArray_ISALIGNED(i) and cnp.PyArray_ISNOTSWAPPED(i) and \
            cnp.PyArray_STRIDES(i)[0] % 8 == 0 and cnp.PyArray_IS_C_CONTIGUOUS(a) and \
            cnp.PyArray_ISNOTSWAPPED(a) and cnp.PyArray_ISALIGNED(a)
        if not c_rows:
            lo, hi = i.min(), i.max()
            if lo < -n or hi >= n:
                bad = lo if lo < -n else hi
                raise IndexError(f"index {bad} is out of bounds for axis 0 with size {n}")
            if lo < 0:
                ix = _np.where(i < 0, i + n, i)
        for d in range(cnp.PyArray_NDIM(i)):
            dims[d] = cnp.PyArray_DIMS(i)[d]
        for d in range(1, cnp.PyArray_NDIM(a)):
            dims[cnp.PyArray_NDIM(i) + d - 1] = cnp.PyArray_DIMS(a)[d]
        out = _empty(nd, dims, dt)
        if c_rows:
            _take_c(a, i, <cnp.ndarray>out)
        else:
            _np.take(v, ix, axis=0, out=out, mode="clip")
        return out

    cdef object astype(self, object v, int dt):
        return _np.array(v, dtype=_DTYPES[dt], order="C")

    cdef Tensor wrap(self, object v):
        return _wrap(v)

    cdef Tensor new(self, int nd, const int64_t *shape, int dt, str who):
        if nd == 0 and dt == CAD_F64:   # (a 0-d float64 lives inline)
            return _new_inline(0.0)
        return _wrap(_empty(nd, <cnp.npy_intp *>shape, dt))

    cdef object buffer(self, int nd, const int64_t *shape, int dt, str who):
        return _empty(nd, <cnp.npy_intp *>shape, dt)

    cdef Tensor new_like(self, list ts, int nd, const int64_t *shape, int dt, str who):
        cdef int64_t rshape[MAXDIM]
        cdef int i
        if nd >= 2 and _all_fortran(ts, nd, shape):   # NOTE [ Result memory order ]
            for i in range(nd):
                rshape[i] = shape[nd - 1 - i]
            return _wrap(_empty(nd, <cnp.npy_intp *>rshape, dt).T)
        return self.new(nd, shape, dt, who)

    cdef Tensor scalar(self, object v, int dt):
        if dt == CAD_F64:
            return _new_inline(float(v))
        return _wrap(_np.array(v, dtype=_DTYPES[dt]))

    cdef Tensor full(self, tuple shape, int dt, object v):
        if shape == () and dt == CAD_F64:
            return _new_inline(float(v))
        if v == 0:
            return _wrap(_np.zeros(shape, dtype=_DTYPES[dt]))
        a = _np.empty(shape, dtype=_DTYPES[dt])   # (numpy's full is a Python function)
        a.fill(v)
        return _wrap(a)

    cdef Tensor from_host(self, object a, int dt):
        if dt >= 0:
            a = _np.asarray(a, dtype=_DTYPES[dt])
        return _wrap(a)

    cdef int run(self, cad_iter *it, cad_row row, int64_t pmin, str who) except -1:
        cdef int64_t n = 1
        cdef int d, st
        for d in range(it.ndim):
            n *= it.shape[d]
        if n >= self.nogil_min:
            with nogil:
                st = cad_iter_run_t(it, row, NULL, NULL, pmin)
        else:
            st = cad_iter_run_t(it, row, NULL, NULL, pmin)
        if st != CAD_OK:
            _check(st, who)
        return 0

    cdef bint gemmable(self, object v, int nd):
        return _gemmable(<cnp.ndarray>v, nd)

    cdef char *data(self, object v):
        return <char *>cnp.PyArray_DATA(<cnp.ndarray>v)

    cdef object state_new(self, tuple shape, int dt, bint zero, str who):
        return _np.zeros(shape, dtype=_DTYPES[dt]) if zero else _np.empty(shape, dtype=_DTYPES[dt])

    cdef char *alloc(self, size_t nb) noexcept:
        return <char *>cad_alloc(nb)

    cdef void release(self, void *p) noexcept:
        cad_release(p)

    cdef int put(self, void *dst, const void *src, size_t nb, str who) except -1:
        memcpy(dst, src, nb)
        return 0

    cdef int move(self, void *dst, const void *src, size_t nb, str who) except -1:
        memcpy(dst, src, nb)
        return 0

    cdef char *state_data(self, object a, int dt, int64_t n, str who) except NULL:
        cdef cnp.ndarray arr
        if not isinstance(a, _np.ndarray):
            raise TypeError(f"{who}: optimizer state must be an ndarray, got {type(a).__name__}")
        arr = <cnp.ndarray>a
        if (cnp.PyArray_TYPE(arr) != _TYPENUM[dt] or cnp.PyArray_SIZE(arr) != n
                or not cnp.PyArray_IS_C_CONTIGUOUS(arr) or not cnp.PyArray_ISWRITEABLE(arr)):
            raise ShapeError(f"{who}: optimizer state of shape {a.shape} and dtype {a.dtype} does "
                             f"not fit a parameter of {n} elements of dtype {_DTNAMES[dt]}")
        return <char *>cnp.PyArray_DATA(arr)


@cython.final
cdef class _CudaStorage(_Storage):
    cdef int host_only(self, Tensor t, str who) except -1:
        raise DeviceError(f"{who}: the tensor (shape {t.shape}) is on cuda:0; copy it to the host "
                          "first with .cpu()")

    cdef object dlpack(self, Tensor t, object stream, object max_version, object dl_device, object copy):
        return _dev_dlpack(t, stream, max_version, dl_device, copy)

    cdef dict cai(self, Tensor t):
        return _dev_cai(t)

    cdef object value(self, Tensor t):
        return t._arr

    cdef tuple strides(self, object v):
        return _dstrides(<DevArray>v)

    cdef object view(self, object v, int64_t off, tuple shape, tuple strides):
        return _dview(<DevArray>v, off, shape, strides)

    cdef object contig(self, object v):
        return _dcontig(<DevArray>v)

    cdef object reshape(self, object v, tuple shape):
        return _dview(_dcontig(<DevArray>v), 0, shape, _cstrides(shape))

    cdef object index(self, object v, tuple idx):
        cdef DevArray a = <DevArray>v
        shape = a.shape
        dummy = _np.lib.stride_tricks.as_strided(_np.zeros(1, dtype=_np.int8), shape, (0,) * len(shape))
        dummy[idx]   # numpy's checks and errors, on no data
        if all(_is_basic(e) for e in idx):
            off, vshape, vst = _basic_index(shape, _dstrides(a), idx)
            return _dview(a, off, vshape, vst)
        return None

    cdef object take(self, object v, object ix):
        n = (<DevArray>v).shp[0]
        _np.take(_np.lib.stride_tricks.as_strided(_np.zeros(1, dtype=_np.int8), (n,), (0,)), ix)   # (numpy's checks)
        return None

    cdef object astype(self, object v, int dt):
        return _dcopy(<DevArray>v, dt)

    cdef Tensor wrap(self, object v):
        return _dwrap(<DevArray>v)

    cdef object buffer(self, int nd, const int64_t *shape, int dt, str who):
        return _dnew(nd, shape, dt, who)

    cdef Tensor scalar(self, object v, int dt):
        return _dconst(v, dt)

    cdef Tensor full(self, tuple shape, int dt, object v):
        return _dfull(shape, dt, v)

    cdef Tensor from_host(self, object a, int dt):
        _cuda_ready("to('cuda')")
        return _dwrap(_dupload(a, dt))

    cdef int run(self, cad_iter *it, cad_row row, int64_t pmin, str who) except -1:
        _dcheck(_run_dev(it, row), who)
        return 0

    cdef bint gemmable(self, object v, int nd):
        cdef DevArray a = <DevArray>v
        cdef int64_t rs, cs, R, C
        if nd < 2:
            return True
        R = a.shp[nd - 2]
        C = a.shp[nd - 1]
        rs = a.st[nd - 2]
        cs = a.st[nd - 1]
        return (cs == 1 or C == 1) and (rs >= C or R == 1) or (rs == 1 or R == 1) and (cs >= R or C == 1)

    cdef char *data(self, object v):
        return (<DevArray>v).ptr

    cdef int ready(self, str who) except -1:
        _cuda_ready(who)
        return 0

    cdef char *alloc(self, size_t nb) noexcept:
        return <char *>cad_cu_alloc(nb)

    cdef void release(self, void *p) noexcept:
        cad_cu_release(p)

    cdef int put(self, void *dst, const void *src, size_t nb, str who) except -1:
        _dcheck(cad_cu_h2d(dst, src, nb), who)
        return 0

    cdef int move(self, void *dst, const void *src, size_t nb, str who) except -1:
        _dcheck(cad_cu_d2d(dst, src, nb), who)
        return 0

    cdef object state_new(self, tuple shape, int dt, bint zero, str who):
        return _dfull(shape, dt, 0.0) if zero else _dwrap(_dnew_shape(shape, dt, who))

    cdef char *state_data(self, object a, int dt, int64_t n, str who) except NULL:
        cdef DevArray d
        if not isinstance(a, Tensor) or not (<Tensor>a)._dev:
            raise TypeError(f"{who}: the state of a CUDA parameter must be a CUDA tensor, got "
                            f"{type(a).__name__}")
        d = <DevArray>(<Tensor>a)._arr
        if d.dt != dt or d.size != n or not d.contig():
            raise ShapeError(f"{who}: optimizer state of shape {d.shape} and dtype {_DTNAMES[d.dt]} "
                             f"does not fit a parameter of {n} elements of dtype {_DTNAMES[dt]}")
        return d.ptr


cdef _HostStorage _HOST_ST = _HostStorage.__new__(_HostStorage)
_HOST_ST.dev = 0
_HOST_ST.name = "cpu"
_HOST_ST.device = _CPU
_HOST_ST.dlpack_device = (1, 0)
_HOST_ST.nogil_min = 4096
_HOST_ST.enomem = CAD_ENOMEM
cdef _CudaStorage _CUDA_ST = _CudaStorage.__new__(_CudaStorage)
_CUDA_ST.dev = 1
_CUDA_ST.name = "cuda:0"
_CUDA_ST.device = _CUDA
_CUDA_ST.dlpack_device = (2, 0)
_CUDA_ST.nogil_min = 0
_CUDA_ST.enomem = CAD_EDEVMEM


cdef inline _Storage _st_on(int dev):
    """the storage of device dev (0 CPU, 1 CUDA)"""
    return _CUDA_ST if dev else _HOST_ST


cdef inline _Storage _st(Tensor t):
    """where t's value lives"""
    return _CUDA_ST if t._dev else _HOST_ST


cdef inline str _devname(int dev):
    return _st_on(dev).name


# ---------------------------------------------------------------- the value's header, inline
# (the per-op hot path reads these; NOTE [ Storage per device ])

cdef object _arr_of(Tensor t):
    """t's value as a read-only host ndarray (materialised for inline scalars; a host
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



cdef inline int64_t _tsize(Tensor t):
    if t._inline:
        return 1
    if t._dev:
        return (<DevArray>t._arr).size
    return cnp.PyArray_SIZE(<cnp.ndarray>t._arr)


cdef inline int _tndim(Tensor t):
    if t._dev:
        return (<DevArray>t._arr).ndim
    return 0 if t._inline else cnp.PyArray_NDIM(<cnp.ndarray>t._arr)


cdef inline cnp.npy_intp *_tdims(Tensor t):
    if t._dev:
        return <cnp.npy_intp *>(<DevArray>t._arr).shp
    return NULL if t._inline else cnp.PyArray_DIMS(<cnp.ndarray>t._arr)


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
