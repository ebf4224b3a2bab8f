# Custom primitives (cad.primitive, NOTE [ Custom primitives ] in cad/ops/custom.py):
# the two hooks the C sweeps call for a record of the `custom` op (custom.c), and
# the entry that records an eagerly computed call.  A hook takes the GIL, copies
# the record's values out, calls cad.ops.custom's dispatcher, and writes the result
# (the forward's output, or the inputs' gradients) back; an exception is kept per
# thread and re-raised by the driver that ran the sweep (status CAD_ECUSTOM).

cdef object _custom_call = None
cdef object _custom_tls = _threading.local()


def set_custom_dispatch(fn):
    """fn(kind, aux, ins, out, g, wants): kind 0 = forward (returns the output
    array), 1 = vjp (returns one cotangent array or None per input)"""
    global _custom_call
    _custom_call = fn


cdef _raise_custom(str who):
    e = getattr(_custom_tls, "err", None)
    _custom_tls.err = None
    if e is None:
        raise RuntimeError(f"{who}: a custom primitive's rule failed")
    raise e


cdef tuple _custom_aux(cad_tape *t, const cad_rec *r):
    cdef int64_t i, n
    if r.aux < 0:
        return ()
    n = t.aux[r.aux + 1]   # [id, number of layout ints, layout...]
    return tuple([t.aux[r.aux + i] for i in range(n + 2)])


cdef list _custom_ins(cad_tape *t, const cad_rec *r):
    cdef int i
    cdef cad_hid h
    cdef list ins = []
    for i in range(r.nargs):
        h = t.args[r.arg + i]
        ins.append(None if h < 0 else _value_of(t, h))
    return ins


cdef int _custom_fwd_cb(cad_tape *t, const cad_rec *r) noexcept with gil:
    cdef cad_buf *o = &t.bufs[r.out]
    cdef cnp.ndarray a
    try:
        res = _custom_call(0, _custom_aux(t, r), _custom_ins(t, r), None, None, None)
        a = _np.ascontiguousarray(res, dtype=_DTYPES[o.dtype])
        if a.size != o.size:
            raise ValueError(f"cad.primitive: the forward gave {a.size} values where the "
                             f"recorded call gave {o.size}")
        if o.flags & BUF_INLINE:
            o.sval = float(a.reshape(-1)[0])
        elif o.size:
            memcpy(o.data, cnp.PyArray_DATA(a), o.size * _ESIZE[o.dtype])
        return CAD_OK
    except BaseException as e:
        _custom_tls.err = e
        return CAD_ECUSTOM


cdef int _custom_vjp_cb(cad_tape *t, const cad_rec *r) noexcept with gil:
    cdef cad_buf *o = &t.bufs[r.out]
    cdef cad_buf *b
    cdef cnp.ndarray a, g
    cdef cnp.npy_intp dims[MAXDIM]
    cdef int i, d, st
    cdef cad_hid h
    try:
        out = _value_of(t, r.out)
        for d in range(o.ndim):
            dims[d] = t.meta[o.meta + d]
        g = _empty(o.ndim, dims, o.dtype)
        if o.flags & BUF_INLINE:
            g[()] = o.sgrad
        elif o.size:
            memcpy(cnp.PyArray_DATA(g), o.grad, o.size * _ESIZE[o.dtype])
        wants = []
        for i in range(r.nargs):
            h = t.args[r.arg + i]
            wants.append(h >= 0 and bool(t.bufs[h].flags & BUF_RG))
        cts = _custom_call(1, _custom_aux(t, r), _custom_ins(t, r), out, _wrap(g), wants)
        for i in range(r.nargs):
            c = cts[i]
            if c is None or not wants[i]:
                continue
            h = t.args[r.arg + i]
            b = &t.bufs[h]
            shape = tuple([t.meta[b.meta + d] for d in range(b.ndim)])
            a = _np.ascontiguousarray(_np.broadcast_to(c, shape), dtype=_DTYPES[b.dtype])
            st = cad_custom_acc(t, h, <const char *>cnp.PyArray_DATA(a))
            if st != CAD_OK:
                return st
        return CAD_OK
    except BaseException as e:
        _custom_tls.err = e
        return CAD_ECUSTOM


cad_custom_fwd_hook = _custom_fwd_cb
cad_custom_vjp_hook = _custom_vjp_cb


def record_custom(int op, Tensor r, list ins, tuple aux):
    """record op(ins) -> r for an output computed by the caller (a custom
    primitive's eager call): on the inputs' tape when one requires grad (grad mode
    on) or cad.record is recording; every input's value and the output's are kept"""
    cdef int64_t small[32]
    cdef int64_t *ax = small
    cdef Py_ssize_t i, naux = len(aux)
    cdef bint rec = cad_rec_mode
    cdef Tensor t
    if len(ins) > 7:
        raise ValueError("cad.primitive: at most 7 tensor arguments")
    if r._tape is not None:
        raise ValueError("cad.primitive: the output is already recorded")
    if not rec and not cad_grad_off:
        for x in ins:
            t = <Tensor>x
            if t._rg:
                rec = True
                break
    if not rec:
        return r
    if naux > 32:
        ax = <int64_t *>malloc(naux * sizeof(int64_t))
        if ax == NULL:
            raise MemoryError()
    try:
        for i in range(naux):
            ax[i] = aux[i]
        _record(op, r, ins, 255, ax, <int>naux)
    finally:
        if ax != small:
            free(ax)
    return r
