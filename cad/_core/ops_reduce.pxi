# dispatch of the reductions (cad/ops/reduce.py).  Included by _engine.pyx (one extension module: calls between the rooms
# stay direct C calls); the include order is the module's order.

# ---------------------------------------------------------------- reductions

cdef dict _RKIND = {}


def reduce(int op, object x, object axis, bint keepdims):
    """sum/max/min/prod over axis (None: all) as numpy (the record's forward kernel:
    NOTE [ One forward per primitive ])"""
    cdef Tensor t = as_tensor(x), r
    cdef str who = _OP_NAMES[op]
    cdef int nd = _tndim(t), d
    cdef uint64_t mask = 0
    cdef int64_t shape[MAXDIM]
    cdef int64_t oshape[MAXDIM]
    cdef int ond = 0
    cdef int64_t aux[1]
    axes = normalize_axes(nd, axis, who)
    if not _isfloat(t._dtype):
        _escape(t, who + " of integers")
        return _st(t).from_host(_np.asarray(_NP_REF[op](_arr_of(t), axis=axes, keepdims=keepdims)), -1)
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
    r = _new_out(t._dev, ond, oshape, t._dtype, who)
    aux[0] = <int64_t>mask
    _eager1(op, r, t, aux, 1, who)
    if _mode1(t):
        _record(op, r, [t], _need(op, [t]), aux, 1)
    return r
