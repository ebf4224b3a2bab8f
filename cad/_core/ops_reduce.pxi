# dispatch of the reductions (cad/ops/reduce.py).  Included by _engine.pyx (one extension module: calls between the rooms
# stay direct C calls); the include order is the module's order.

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
            _record(op, r, [t], _need(op, [t]), aux, 1)
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
        _record(op, r, [t], _need(op, [t]), aux, 1)
    return r
