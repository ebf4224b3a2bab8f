# Optimizer updates (cad.optim), included by _engine.pyx: every CPU parameter of a
# step goes to one cad_optim_step call (cad_kernels/cpu/optim.c), which writes the
# new values into fresh buffers; each parameter object is then bound to its new
# value (NOTE [ Optimizer updates ] in optim.c, NOTE [ Values are immutable ]).

from libc.math cimport pow as _cpow

OPT_FLAGS = {"adam": CAD_OPT_ADAM, "maximize": CAD_OPT_MAXIMIZE, "nesterov": CAD_OPT_NESTEROV,
             "amsgrad": CAD_OPT_AMSGRAD, "decoupled": CAD_OPT_DECOUPLED}

# below this many elements in all, a step runs on the calling thread with the GIL held
DEF _OPT_NOGIL_MIN = 4096


cdef char *_opt_read(Tensor x, int dt, list keep):
    """x's value as contiguous elements of dtype dt (a converted copy where it is not);
    keep holds what the pointer needs alive.  x is on the CPU and not empty."""
    cdef cnp.ndarray a
    keep.append(x)
    if x._inline and dt == CAD_F64:
        return <char *>&x._sval
    a = <cnp.ndarray>_arr_of(x)
    if cnp.PyArray_TYPE(a) != _TYPENUM[dt] or not cnp.PyArray_IS_C_CONTIGUOUS(a):
        a = <cnp.ndarray>_np.ascontiguousarray(a, dtype=_DTYPES[dt])
    keep.append(a)
    return <char *>cnp.PyArray_DATA(a)


cdef char *_opt_state(object a, int dt, int64_t n, str who) except NULL:
    """the data of an optimizer-owned state array (writable, contiguous, dtype dt, n elements)"""
    cdef cnp.ndarray arr
    if not isinstance(a, _np.ndarray):
        raise TypeError(f"{who}: optimizer state must be an ndarray, got {type(a).__name__}")
    arr = <cnp.ndarray>a
    if (cnp.PyArray_TYPE(arr) != _TYPENUM[dt] or cnp.PyArray_SIZE(arr) != n
            or not cnp.PyArray_IS_C_CONTIGUOUS(arr) or not cnp.PyArray_ISWRITEABLE(arr)):
        raise ShapeError(f"{who}: optimizer state of shape {a.shape} and dtype {a.dtype} does "
                         f"not fit a parameter of {n} elements of dtype {_DTNAMES[dt]}")
    return <char *>cnp.PyArray_DATA(arr)


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


cdef int _opt_run(cad_opt_slot *slots, int64_t ns, int64_t total) except -1:
    cdef int st
    if total >= _OPT_NOGIL_MIN:
        with nogil:
            st = cad_optim_step(slots, ns, cad_par_min_heavy)
    else:
        st = cad_optim_step(slots, ns, cad_par_min_heavy)
    _check(st, "optimizer step")
    return 0


def optim_step(list groups, dict state):
    """One optimizer step over every parameter that has a gradient.

    groups: [(params, (lr, weight_decay, beta1, beta2, eps, momentum, dampening, flags))]
    with flags from OPT_FLAGS; state maps a parameter to its [step, m, v, w] (SGD: m is
    the momentum buffer; Adam: exp_avg, exp_avg_sq, max_exp_avg_sq), writable ndarrays
    that the optimizer owns, made here on a parameter's first step.  The CPU parameters
    are updated by one cad_optim_step call and bound to their new values; the CUDA ones
    with a gradient are returned, as [(group index, parameter)], for the caller's
    per-parameter path.  Nothing changes when an argument is wrong."""
    cdef list todo = [], dev = [], keep = [], outs = []
    cdef Tensor t, g
    cdef Py_ssize_t gi, k
    cdef int64_t ns = 0, n, total = 0
    cdef int dt, flags
    cdef tuple hyp
    cdef list st
    cdef cad_opt_slot *slots
    cdef cad_opt_slot *s
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
            if t._dev:
                dev.append((t, g, hyp))
            else:
                todo.append((t, g, hyp))
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
                    st[1] = _np.zeros(shape, dtype=_DTYPES[dt])
                    st[2] = _np.zeros(shape, dtype=_DTYPES[dt])
                if flags & CAD_OPT_AMSGRAD and st[3] is None:
                    st[3] = _np.zeros(shape, dtype=_DTYPES[dt])
                st[0] = st[0] + 1.0
            elif hyp[5] != 0 and st[1] is None:
                st[1] = _np.empty(shape, dtype=_DTYPES[dt])
                flags |= CAD_OPT_FIRST
            n = t.size
            if n == 0:
                continue
            s = &slots[ns]
            _opt_hyper(s, hyp)
            s.flags = flags
            s.dtype = dt
            s.n = n
            if flags & CAD_OPT_ADAM:
                s.bc1 = 1.0 - _cpow(s.beta1, <double>st[0])
                s.bc2 = 1.0 - _cpow(s.beta2, <double>st[0])
                s.m = _opt_state(st[1], dt, n, who)
                s.v = _opt_state(st[2], dt, n, who)
                s.w = _opt_state(st[3], dt, n, who) if flags & CAD_OPT_AMSGRAD else NULL
            elif s.momentum != 0:
                s.m = _opt_state(st[1], dt, n, who)
            s.m0 = s.m
            s.v0 = s.v
            s.w0 = s.w
            s.p = _opt_read(t, dt, keep)
            s.g = _opt_read(g, dt, keep)
            out = _opt_out(t)
            s.out = <char *>cnp.PyArray_DATA(<cnp.ndarray>out)
            outs.append((t, out))
            total += n
            ns += 1
        _opt_run(slots, ns, total)
    finally:
        free(slots)
    for t, out in outs:
        t._rebind(_wrap(out), True)
    if dev:
        _opt_dev_step(dev, state, who)


cdef DevArray _opt_dev_read(Tensor x, int dt, list keep):
    """x's device value as contiguous elements of dtype dt (a converted copy where not)"""
    cdef DevArray a = <DevArray>x._arr
    if a.dt != dt:
        a = _dcopy(a, dt)
    elif not a.contig():
        a = _dcopy(a)
    keep.append(a)
    return a


cdef DevArray _opt_dev_state(object t, int dt, int64_t n, str who):
    """an optimizer-owned device state buffer (a CUDA tensor of dtype dt, n elements,
    contiguous, made by the optimizer: updated in place)"""
    cdef DevArray a
    if not isinstance(t, Tensor) or not (<Tensor>t)._dev:
        raise TypeError(f"{who}: the state of a CUDA parameter must be a CUDA tensor, got "
                        f"{type(t).__name__}")
    a = <DevArray>(<Tensor>t)._arr
    if a.dt != dt or a.size != n or not a.contig():
        raise ShapeError(f"{who}: optimizer state of shape {a.shape} and dtype {_DTNAMES[a.dt]} "
                         f"does not fit a parameter of {n} elements of dtype {_DTNAMES[dt]}")
    return a


cdef _opt_dev_step(list todo, dict state, str who):
    """every CUDA parameter of the step in one launch (cad_cu_optim_step, the kernel
    k_optim: NOTE [ Optimizer updates ] in cad_kernels/cpu/optim.c).  State buffers
    are CUDA tensors the optimizer owns, updated in place; each parameter is bound to
    a fresh buffer holding its new value."""
    cdef list keep = [], outs = []
    cdef Tensor t, g
    cdef DevArray out, sa
    cdef Py_ssize_t k
    cdef int64_t ns = 0, n
    cdef int dt, flags, st_
    cdef tuple hyp
    cdef list st
    cdef cad_opt_slot *slots
    cdef cad_opt_slot *s
    _cuda_ready(who)
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
                    st[1] = _dfull(shape, dt, 0.0)
                    st[2] = _dfull(shape, dt, 0.0)
                if flags & CAD_OPT_AMSGRAD and st[3] is None:
                    st[3] = _dfull(shape, dt, 0.0)
                st[0] = st[0] + 1.0
            elif hyp[5] != 0 and st[1] is None:
                st[1] = _dwrap(_dnew_shape(shape, dt, who))
                flags |= CAD_OPT_FIRST
            n = t.size
            if n == 0:
                continue
            s = &slots[ns]
            _opt_hyper(s, hyp)
            s.flags = flags
            s.dtype = dt
            s.n = n
            if flags & CAD_OPT_ADAM:
                s.bc1 = 1.0 - _cpow(s.beta1, <double>st[0])
                s.bc2 = 1.0 - _cpow(s.beta2, <double>st[0])
                sa = _opt_dev_state(st[1], dt, n, who)   # (st keeps the buffers alive)
                s.m = sa.ptr
                sa = _opt_dev_state(st[2], dt, n, who)
                s.v = sa.ptr
                if flags & CAD_OPT_AMSGRAD:
                    sa = _opt_dev_state(st[3], dt, n, who)
                    s.w = sa.ptr
            elif s.momentum != 0:
                sa = _opt_dev_state(st[1], dt, n, who)
                s.m = sa.ptr
            s.m0 = s.m
            s.v0 = s.v
            s.w0 = s.w
            sa = _opt_dev_read(t, dt, keep)   # (keep holds them)
            s.p = sa.ptr
            sa = _opt_dev_read(g, dt, keep)
            s.g = sa.ptr
            out = _dnew_shape(shape, dt, who)
            s.out = out.ptr
            outs.append((t, out))
            ns += 1
        with nogil:
            st_ = cad_cu_optim_step(slots, ns)
        _dcheck(st_, who)
    finally:
        free(slots)
    for t, out in outs:
        t._rebind(_dwrap(out), True)


def optim_pure(tuple hyp, double step, list params, list grads, list ms, list vs, list ws):
    """The functional form's update (cad.optim.adam(...).update): nothing is mutated.
    params, grads and the state entries (ms, vs, ws; None where a state is absent: SGD
    without momentum or before its first step, Adam without amsgrad) are tensors, a
    parameter's gradient and state on its device; returns (updates, ms, vs, ws), new
    tensors (updates: new value - old value).  The CPU parameters go to one
    cad_optim_step call, the CUDA ones to one launch (cad_cu_optim_step)."""
    cdef Py_ssize_t k, L = len(params)
    cdef list keep = [], ups = [None] * L, nm = [None] * L, nv = [None] * L, nw = [None] * L
    cdef Tensor t, g
    cdef int dt, flags, dev, st_
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
        _opt_run(slots, ns, total)
        if nd:
            _cuda_ready(who)
            with nogil:
                st_ = cad_cu_optim_step(dslots, nd)
            _dcheck(st_, who)
    finally:
        free(slots)
        free(dslots)
    for lst in (ups, nm, nv, nw):
        for k in range(L):
            if lst[k] is not None:
                lst[k] = _dwrap(<DevArray>lst[k]) if isinstance(lst[k], DevArray) else _wrap(lst[k])
    return ups, nm, nv, nw


cdef object _opt_new(Tensor t, str who):
    """a fresh buffer of t's shape and dtype on t's device (ndarray or DevArray)"""
    if t._dev:
        return _dnew_shape(t.shape, t._dtype, who)
    return _opt_out(t)


cdef char *_opt_wptr(object a):
    if isinstance(a, DevArray):
        return (<DevArray>a).ptr
    return <char *>cnp.PyArray_DATA(<cnp.ndarray>a)


cdef const char *_opt_ptr(Tensor x, int dt, int dev, list keep, str who) except NULL:
    """x's contiguous elements of dtype dt, x on device dev (a size-0 x is skipped before)"""
    if x._dev != dev:
        raise DeviceError(f"{who}: a tensor of shape {x.shape} is on {'cuda:0' if x._dev else 'cpu'} "
                          f"but its parameter is on {'cuda:0' if dev else 'cpu'}")
    cdef DevArray a
    if x._dev:
        a = _opt_dev_read(x, dt, keep)   # (keep holds it)
        return a.ptr
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
