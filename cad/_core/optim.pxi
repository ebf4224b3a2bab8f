# Optimizer updates (cad.optim), included by _engine.pyx: the parameters of a step on
# one device go to one call of that device's backend (cad_optim_run: the CPU's
# cad_optim_step in cad_kernels/cpu/optim.c, one k_optim launch on CUDA), which writes
# the new values into fresh buffers; each parameter object is then bound to its new
# value (NOTE [ Optimizer updates ] in optim.c, NOTE [ Values are immutable ]).  One
# code path for both devices: what differs is where a value lives (an ndarray or a
# DevArray), said once in the _opt_* helpers below.

from libc.math cimport pow as _cpow

OPT_FLAGS = {"adam": CAD_OPT_ADAM, "maximize": CAD_OPT_MAXIMIZE, "nesterov": CAD_OPT_NESTEROV,
             "amsgrad": CAD_OPT_AMSGRAD, "decoupled": CAD_OPT_DECOUPLED}

# below this many elements in all, a step runs on the calling thread with the GIL held
DEF _OPT_NOGIL_MIN = 4096


cdef char *_opt_read(Tensor x, int dt, list keep):
    """x's value as contiguous elements of dtype dt on its device (a converted copy
    where it is not); keep holds what the pointer needs alive.  x is not empty."""
    cdef cnp.ndarray a
    cdef DevArray d
    keep.append(x)
    if x._dev:
        d = <DevArray>x._arr
        if d.dt != dt:
            d = _dcopy(d, dt)
        elif not d.contig():
            d = _dcopy(d)
        keep.append(d)
        return d.ptr
    if x._inline and dt == CAD_F64:
        return <char *>&x._sval
    a = <cnp.ndarray>_arr_of(x)
    if cnp.PyArray_TYPE(a) != _TYPENUM[dt] or not cnp.PyArray_IS_C_CONTIGUOUS(a):
        a = <cnp.ndarray>_np.ascontiguousarray(a, dtype=_DTYPES[dt])
    keep.append(a)
    return <char *>cnp.PyArray_DATA(a)


cdef char *_opt_state(object a, int dt, int64_t n, int dev, str who) except NULL:
    """the data of an optimizer-owned state buffer, updated in place: a writable
    contiguous ndarray (CPU) or a CUDA tensor made by the optimizer, of dtype dt and
    n elements"""
    cdef cnp.ndarray arr
    cdef DevArray d
    if dev:
        if not isinstance(a, Tensor) or not (<Tensor>a)._dev:
            raise TypeError(f"{who}: the state of a CUDA parameter must be a CUDA tensor, got "
                            f"{type(a).__name__}")
        d = <DevArray>(<Tensor>a)._arr
        if d.dt != dt or d.size != n or not d.contig():
            raise ShapeError(f"{who}: optimizer state of shape {d.shape} and dtype {_DTNAMES[d.dt]} "
                             f"does not fit a parameter of {n} elements of dtype {_DTNAMES[dt]}")
        return d.ptr
    if not isinstance(a, _np.ndarray):
        raise TypeError(f"{who}: optimizer state must be an ndarray, got {type(a).__name__}")
    arr = <cnp.ndarray>a
    if (cnp.PyArray_TYPE(arr) != _TYPENUM[dt] or cnp.PyArray_SIZE(arr) != n
            or not cnp.PyArray_IS_C_CONTIGUOUS(arr) or not cnp.PyArray_ISWRITEABLE(arr)):
        raise ShapeError(f"{who}: optimizer state of shape {a.shape} and dtype {a.dtype} does "
                         f"not fit a parameter of {n} elements of dtype {_DTNAMES[dt]}")
    return <char *>cnp.PyArray_DATA(arr)


cdef object _opt_new_state(int dev, tuple shape, int dt, bint zero, str who):
    """a state buffer the optimizer owns, on device dev: an ndarray or a CUDA tensor
    (zeros, or uninitialised: a first step writes it whole)"""
    if dev:
        return _dfull(shape, dt, 0.0) if zero else _dwrap(_dnew_shape(shape, dt, who))
    return _np.zeros(shape, dtype=_DTYPES[dt]) if zero else _np.empty(shape, dtype=_DTYPES[dt])


cdef cnp.ndarray _opt_out(Tensor t):
    """a fresh buffer of t's shape and dtype for its new value"""
    cdef cnp.npy_intp dims[MAXDIM]
    cdef int d, nd
    if t._inline:
        return cnp.PyArray_EMPTY(0, NULL, cnp.NPY_DOUBLE, 0)
    nd = cnp.PyArray_NDIM(<cnp.ndarray>t._arr)
    for d in range(nd):
        dims[d] = cnp.PyArray_DIMS(<cnp.ndarray>t._arr)[d]
    return _empty(nd, dims, t._dtype)


cdef void _opt_hyper(cad_opt_slot *s, tuple hyp):
    s.lr = hyp[0]
    s.wd = hyp[1]
    s.beta1 = hyp[2]
    s.beta2 = hyp[3]
    s.eps = hyp[4]
    s.momentum = hyp[5]
    s.dampening = hyp[6]
    s.flags = <int32_t>hyp[7]


cdef int _opt_run(cad_opt_slot *slots, int64_t ns, int64_t total, int dev, str who) except -1:
    """the slots' step on device dev's backend (on the CPU, small steps keep the GIL)"""
    cdef int st
    if dev:
        _cuda_ready(who)
    if dev or total >= _OPT_NOGIL_MIN:
        with nogil:
            st = cad_optim_run(dev, slots, ns, cad_par_min_heavy)
    else:
        st = cad_optim_run(0, slots, ns, cad_par_min_heavy)
    if dev:
        _dcheck(st, who)
    else:
        _check(st, who)
    return 0


def optim_step(list groups, dict state):
    """One optimizer step over every parameter that has a gradient.

    groups: [(params, (lr, weight_decay, beta1, beta2, eps, momentum, dampening, flags))]
    with flags from OPT_FLAGS; state maps a parameter to its [step, m, v, w] (SGD: m is
    the momentum buffer; Adam: exp_avg, exp_avg_sq, max_exp_avg_sq) that the optimizer
    owns, made here on a parameter's first step: writable ndarrays for a CPU parameter,
    CUDA tensors for a CUDA one.  The parameters of each device are updated by one call
    of its backend (cad_optim_run) and bound to their new values."""
    cdef list todo = [[], []]   # the parameters with a gradient, per device
    cdef Tensor t, g
    cdef Py_ssize_t gi
    cdef tuple hyp
    cdef str who = "optimizer step"
    for gi in range(len(groups)):
        params, hyp = groups[gi]
        for x in params:
            t = <Tensor?>x
            if t._grad is None:
                continue
            g = <Tensor>t._grad
            if t._tape is not None:
                raise BackwardError(f"{who}: a parameter of shape {t.shape} is no longer a leaf (an "
                                    "in-place op recorded it on a tape); optimize leaf tensors")
            if t._dev != g._dev:
                raise DeviceError(f"{who}: a parameter of shape {t.shape} is on "
                                  f"{'cuda:0' if t._dev else 'cpu'} but its .grad is on "
                                  f"{'cuda:0' if g._dev else 'cpu'}")
            if not _isfloat(t._dtype):
                raise DTypeError(f"{who}: a parameter of shape {t.shape} has dtype "
                                 f"{_DTNAMES[t._dtype]}; only floating-point tensors can be optimized")
            (<list>todo[1 if t._dev else 0]).append((t, g, hyp))
    for dev in (0, 1):
        if todo[dev]:
            _opt_step_on(<list>todo[dev], state, dev, who)


cdef _opt_step_on(list todo, dict state, int dev, str who):
    """one step of the parameters in todo, all on device dev: their slots filled from
    the state (made on a parameter's first step), one backend call, then each
    parameter bound to its new value"""
    cdef list keep = [], outs = []
    cdef Tensor t, g
    cdef Py_ssize_t k
    cdef int64_t ns = 0, n, total = 0
    cdef int dt, flags
    cdef tuple hyp
    cdef list st
    cdef cad_opt_slot *slots
    cdef cad_opt_slot *s
    if dev:
        _cuda_ready(who)   # (before the state buffers are made there)
    slots = <cad_opt_slot *>calloc(len(todo) + 1, sizeof(cad_opt_slot))
    if slots == NULL:
        raise MemoryError(f"{who}: out of memory")
    try:
        for k in range(len(todo)):
            t, g, hyp = todo[k]
            dt = t._dtype
            flags = <int>hyp[7]
            st = <list>state.get(t)
            if st is None:
                st = [0.0, None, None, None]
                state[t] = st
            shape = t.shape
            if flags & CAD_OPT_ADAM:
                if st[1] is None:
                    st[1] = _opt_new_state(dev, shape, dt, True, who)
                    st[2] = _opt_new_state(dev, shape, dt, True, who)
                if flags & CAD_OPT_AMSGRAD and st[3] is None:
                    st[3] = _opt_new_state(dev, shape, dt, True, who)
                st[0] = st[0] + 1.0
            elif hyp[5] != 0 and st[1] is None:
                st[1] = _opt_new_state(dev, shape, dt, False, who)
                flags |= CAD_OPT_FIRST
            n = t.size
            if n == 0:
                continue
            s = &slots[ns]
            _opt_hyper(s, hyp)
            s.flags = flags
            s.dtype = dt
            s.n = n
            if flags & CAD_OPT_ADAM:   # (st keeps the state buffers alive)
                s.bc1 = 1.0 - _cpow(s.beta1, <double>st[0])
                s.bc2 = 1.0 - _cpow(s.beta2, <double>st[0])
                s.m = _opt_state(st[1], dt, n, dev, who)
                s.v = _opt_state(st[2], dt, n, dev, who)
                s.w = _opt_state(st[3], dt, n, dev, who) if flags & CAD_OPT_AMSGRAD else NULL
            elif s.momentum != 0:
                s.m = _opt_state(st[1], dt, n, dev, who)
            s.m0 = s.m
            s.v0 = s.v
            s.w0 = s.w
            s.p = _opt_read(t, dt, keep)
            s.g = _opt_read(g, dt, keep)
            out = _opt_new(t, who)
            s.out = _opt_wptr(out)
            outs.append((t, out))
            total += n
            ns += 1
        _opt_run(slots, ns, total, dev, who)
    finally:
        free(slots)
    for t, out in outs:
        t._rebind(_opt_wrap(out), True)


def optim_pure(tuple hyp, double step, list params, list grads, list ms, list vs, list ws):
    """The functional form's update (cad.optim.adam(...).update): nothing is mutated.
    params, grads and the state entries (ms, vs, ws; None where a state is absent: SGD
    without momentum or before its first step, Adam without amsgrad) are tensors, a
    parameter's gradient and state on its device; returns (updates, ms, vs, ws), new
    tensors (updates: new value - old value).  The parameters of each device go to one
    call of its backend (cad_optim_run)."""
    cdef Py_ssize_t k, L = len(params)
    cdef list keep = [], ups = [None] * L, nm = [None] * L, nv = [None] * L, nw = [None] * L
    cdef Tensor t, g
    cdef int dt, flags, dev
    cdef int64_t n, ns = 0, nd = 0, total = 0
    cdef cad_opt_slot *slots
    cdef cad_opt_slot *dslots
    cdef cad_opt_slot *s
    cdef str who = "optimizer update"
    slots = <cad_opt_slot *>calloc(L + 1, sizeof(cad_opt_slot))
    dslots = <cad_opt_slot *>calloc(L + 1, sizeof(cad_opt_slot))
    if slots == NULL or dslots == NULL:
        free(slots)
        free(dslots)
        raise MemoryError(f"{who}: out of memory")
    try:
        for k in range(L):
            t = <Tensor?>params[k]
            g = <Tensor?>grads[k]
            dt = t._dtype
            dev = t._dev
            if g._dev != dev:
                raise DeviceError(f"{who}: a parameter of shape {t.shape} is on "
                                  f"{'cuda:0' if dev else 'cpu'} but its gradient is on "
                                  f"{'cuda:0' if g._dev else 'cpu'}")
            if not _isfloat(dt):
                raise DTypeError(f"{who}: a parameter of shape {t.shape} has dtype "
                                 f"{_DTNAMES[dt]}; only floating-point tensors can be optimized")
            flags = <int>hyp[7] | CAD_OPT_DELTA
            n = t.size
            if not (flags & CAD_OPT_ADAM) and hyp[5] != 0 and ms[k] is None:
                flags |= CAD_OPT_FIRST
            ups[k] = _opt_new(t, who)
            if flags & CAD_OPT_ADAM:
                nm[k] = _opt_new(t, who)
                nv[k] = _opt_new(t, who)
                if flags & CAD_OPT_AMSGRAD:
                    nw[k] = _opt_new(t, who)
            elif hyp[5] != 0:
                nm[k] = _opt_new(t, who)
            if n == 0:
                continue
            if dev:
                s = &dslots[nd]
                nd += 1
            else:
                s = &slots[ns]
                ns += 1
                total += n
            _opt_hyper(s, hyp)
            s.flags = flags
            s.dtype = dt
            s.n = n
            s.bc1 = 1.0 - _cpow(s.beta1, step)
            s.bc2 = 1.0 - _cpow(s.beta2, step)
            s.p = _opt_ptr(t, dt, dev, keep, who)
            s.g = _opt_ptr(g, dt, dev, keep, who)
            s.out = _opt_wptr(ups[k])
            if nm[k] is not None:
                s.m = _opt_wptr(nm[k])
                s.m0 = s.m if flags & CAD_OPT_FIRST else _opt_ptr(<Tensor?>ms[k], dt, dev, keep, who)
            if nv[k] is not None:
                s.v = _opt_wptr(nv[k])
                s.v0 = _opt_ptr(<Tensor?>vs[k], dt, dev, keep, who)
            if nw[k] is not None:
                s.w = _opt_wptr(nw[k])
                s.w0 = _opt_ptr(<Tensor?>ws[k], dt, dev, keep, who)
        _opt_run(slots, ns, total, 0, who)
        if nd:
            _opt_run(dslots, nd, 0, 1, who)
    finally:
        free(slots)
        free(dslots)
    for lst in (ups, nm, nv, nw):
        for k in range(L):
            if lst[k] is not None:
                lst[k] = _opt_wrap(lst[k])
    return ups, nm, nv, nw


cdef object _opt_new(Tensor t, str who):
    """a fresh buffer of t's shape and dtype on t's device (ndarray or DevArray)"""
    if t._dev:
        return _dnew_shape(t.shape, t._dtype, who)
    return _opt_out(t)


cdef Tensor _opt_wrap(object a):
    """a buffer _opt_new made, as a tensor"""
    return _dwrap(<DevArray>a) if isinstance(a, DevArray) else _wrap(a)


cdef char *_opt_wptr(object a):
    if isinstance(a, DevArray):
        return (<DevArray>a).ptr
    return <char *>cnp.PyArray_DATA(<cnp.ndarray>a)


cdef const char *_opt_ptr(Tensor x, int dt, int dev, list keep, str who) except NULL:
    """x's contiguous elements of dtype dt, x on device dev (a size-0 x is skipped before)"""
    if x._dev != dev:
        raise DeviceError(f"{who}: a tensor of shape {x.shape} is on {'cuda:0' if x._dev else 'cpu'} "
                          f"but its parameter is on {'cuda:0' if dev else 'cpu'}")
    return _opt_read(x, dt, keep)


def assign_(Tensor t, Tensor value):
    """Bind the leaf t to value's value in place (cad.optim's per-parameter path for
    CUDA parameters): t stays the same object and a leaf, and its version counter
    moves, so a tape that recorded the old value keeps it and backward() through that
    tape reports the change (NOTE [ Values are immutable ])."""
    cdef Tensor r
    if t._tape is not None:
        raise BackwardError(f"assign_: the tensor of shape {t.shape} is not a leaf")
    if value._dtype != t._dtype or value._dev != t._dev or value.shape != t.shape:
        raise ShapeError(f"assign_: a value of shape {value.shape}, dtype {_DTNAMES[value._dtype]} "
                         f"on {'cuda:0' if value._dev else 'cpu'} cannot replace a tensor of shape "
                         f"{t.shape}, dtype {_DTNAMES[t._dtype]} on {'cuda:0' if t._dev else 'cpu'}")
    r = Tensor.__new__(Tensor)
    r._arr = value._arr
    r._sval = value._sval
    r._inline = value._inline
    r._dtype = value._dtype
    r._dev = value._dev
    t._rebind(r, True)
