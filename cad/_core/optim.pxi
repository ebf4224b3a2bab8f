# Optimizer updates (cad.optim), included by _engine.pyx: the parameters of a step on
# one device go to one call of that device's backend (cad_optim_run: the CPU's
# cad_optim_step in cad_kernels/cpu/optim.c, one k_optim launch on CUDA), which writes
# the new values into fresh buffers; each parameter object is then bound to its new
# value (NOTE [ Optimizer updates ] in optim.c, NOTE [ Values are immutable ]).  One
# code path for both devices: what differs is where a value lives (an ndarray or a
# DevArray), which the storage objects say (NOTE [ Storage per device ]: fresh
# buffers, state buffers, their data, the device's readiness).

from libc.math cimport pow as _cpow

OPT_FLAGS = {"adam": CAD_OPT_ADAM, "maximize": CAD_OPT_MAXIMIZE, "nesterov": CAD_OPT_NESTEROV,
             "amsgrad": CAD_OPT_AMSGRAD, "decoupled": CAD_OPT_DECOUPLED}

cdef char *_opt_read(Tensor x, int dt, list keep):
    """x's value as contiguous elements of dtype dt on its device (a converted copy
    where it is not); keep holds what the pointer needs alive.  x is not empty."""
    cdef _Storage S
    keep.append(x)
    if x._inline and dt == CAD_F64:
        return <char *>&x._sval
    S = _st(x)
    v = S.value(x)
    v = S.astype(v, dt) if x._dtype != dt else S.contig(v)
    keep.append(v)
    return S.data(v)


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
    cdef _Storage S = _st_on(dev)
    S.ready(who)
    if total >= S.nogil_min:
        with nogil:
            st = cad_optim_run(dev, slots, ns, cad_par_min_heavy)
    else:
        st = cad_optim_run(dev, slots, ns, cad_par_min_heavy)
    _dcheck(st, who)
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
                                  f"{_devname(t._dev)} but its .grad is on {_devname(g._dev)}")
            if not _isfloat(t._dtype):
                raise DTypeError(f"{who}: a parameter of shape {t.shape} has dtype "
                                 f"{_DTNAMES[t._dtype]}; only floating-point tensors can be optimized")
            (<list>todo[t._dev]).append((t, g, hyp))
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
    cdef _Storage S = _st_on(dev)
    S.ready(who)   # (before the state buffers are made there)
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
                    st[1] = S.state_new(shape, dt, True, who)
                    st[2] = S.state_new(shape, dt, True, who)
                if flags & CAD_OPT_AMSGRAD and st[3] is None:
                    st[3] = S.state_new(shape, dt, True, who)
                st[0] = st[0] + 1.0
            elif hyp[5] != 0 and st[1] is None:
                st[1] = S.state_new(shape, dt, False, who)
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
                s.m = S.state_data(st[1], dt, n, who)
                s.v = S.state_data(st[2], dt, n, who)
                s.w = S.state_data(st[3], dt, n, who) if flags & CAD_OPT_AMSGRAD else NULL
            elif s.momentum != 0:
                s.m = S.state_data(st[1], dt, n, who)
            s.m0 = s.m
            s.v0 = s.v
            s.w0 = s.w
            s.p = _opt_read(t, dt, keep)
            s.g = _opt_read(g, dt, keep)
            out = _opt_new(t, who)
            s.out = S.data(out)
            outs.append((t, out))
            total += n
            ns += 1
        _opt_run(slots, ns, total, dev, who)
    finally:
        free(slots)
    for t, out in outs:
        t._rebind(S.wrap(out), True)


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
    cdef int64_t n
    cdef int64_t ns[2]
    cdef int64_t total[2]
    cdef cad_opt_slot *slots[2]   # per device
    cdef cad_opt_slot *s
    cdef _Storage S
    cdef str who = "optimizer update"
    for dev in range(2):
        ns[dev] = 0
        total[dev] = 0
        slots[dev] = <cad_opt_slot *>calloc(L + 1, sizeof(cad_opt_slot))
    if slots[0] == NULL or slots[1] == NULL:
        free(slots[0])
        free(slots[1])
        raise MemoryError(f"{who}: out of memory")
    try:
        for k in range(L):
            t = <Tensor?>params[k]
            g = <Tensor?>grads[k]
            dt = t._dtype
            dev = t._dev
            S = _st(t)
            if g._dev != dev:
                raise DeviceError(f"{who}: a parameter of shape {t.shape} is on "
                                  f"{_devname(dev)} but its gradient is on {_devname(g._dev)}")
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
            s = &slots[dev][ns[dev]]
            ns[dev] += 1
            total[dev] += n
            _opt_hyper(s, hyp)
            s.flags = flags
            s.dtype = dt
            s.n = n
            s.bc1 = 1.0 - _cpow(s.beta1, step)
            s.bc2 = 1.0 - _cpow(s.beta2, step)
            s.p = _opt_ptr(t, dt, dev, keep, who)
            s.g = _opt_ptr(g, dt, dev, keep, who)
            s.out = S.data(ups[k])
            if nm[k] is not None:
                s.m = S.data(nm[k])
                s.m0 = s.m if flags & CAD_OPT_FIRST else _opt_ptr(<Tensor?>ms[k], dt, dev, keep, who)
            if nv[k] is not None:
                s.v = S.data(nv[k])
                s.v0 = _opt_ptr(<Tensor?>vs[k], dt, dev, keep, who)
            if nw[k] is not None:
                s.w = S.data(nw[k])
                s.w0 = _opt_ptr(<Tensor?>ws[k], dt, dev, keep, who)
        for dev in range(2):
            if ns[dev]:
                _opt_run(slots[dev], ns[dev], total[dev], dev, who)
    finally:
        free(slots[0])
        free(slots[1])
    for lst in (ups, nm, nv, nw):
        for k in range(L):
            if lst[k] is not None:
                lst[k] = _st(<Tensor>params[k]).wrap(lst[k])
    return ups, nm, nv, nw


cdef object _opt_new(Tensor t, str who):
    """a fresh buffer of t's shape and dtype on t's device, for its new value (the
    storage's value object: an ndarray or a DevArray)"""
    return _st(t).buffer(_tndim(t), <int64_t *>_tdims(t), t._dtype, who)


cdef const char *_opt_ptr(Tensor x, int dt, int dev, list keep, str who) except NULL:
    """x's contiguous elements of dtype dt, x on device dev (a size-0 x is skipped before)"""
    if x._dev != dev:
        raise DeviceError(f"{who}: a tensor of shape {x.shape} is on {_devname(x._dev)} "
                          f"but its parameter is on {_devname(dev)}")
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
                         f"on {_devname(value._dev)} cannot replace a tensor of shape "
                         f"{t.shape}, dtype {_DTNAMES[t._dtype]} on {_devname(t._dev)}")
    r = Tensor.__new__(Tensor)
    r._arr = value._arr
    r._sval = value._sval
    r._inline = value._inline
    r._dtype = value._dtype
    r._dev = value._dev
    t._rebind(r, True)
