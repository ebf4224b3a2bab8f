# dispatch of concatenate and matmul (cad/ops/shape.py, cad/ops/linalg.py).  Included by _engine.pyx (one extension module: calls between the rooms
# stay direct C calls); the include order is the module's order.

# ---------------------------------------------------------------- concatenate, matmul

def concat(list tensors, int axis):
    """concatenate along axis (numpy's promotion of dtypes)"""
    cdef int rdt = -1, nd, k
    cdef Tensor t, r
    cdef int64_t aux[1]
    cdef bint rg = False
    if not tensors:
        raise ShapeError("concatenate: need at least one tensor")
    for t in tensors:
        rdt = _promote(rdt, t._dtype)
    nd = _tndim(<Tensor>tensors[0])
    if nd == 0:
        raise ShapeError("concatenate: 0-d tensors cannot be concatenated (use stack)")
    ax = normalize_axes(nd, axis, "concatenate")[0]
    s0 = (<Tensor>tensors[0]).shape
    ts = []
    for t in tensors:
        if _tndim(t) != nd or any(t.shape[d] != s0[d] for d in range(nd) if d != ax):
            shapes = ", ".join(str((<Tensor>u).shape) for u in tensors)
            raise ShapeError(f"concatenate: shapes {shapes} differ outside axis {ax}")
        if t._dtype != rdt:
            t = <Tensor>cast(t, _DTYPES[rdt])
        rg = rg or _mode1(t)
        ts.append(t)
    if _common_dev(ts, "concatenate"):
        r = _d_concat(ts, ax, rdt)
    else:
        r = _wrap(_np.concatenate([_arr_of(t) for t in ts], axis=ax))
    if rg:
        aux[0] = ax
        _record(OP_CONCATENATE, r, ts, -1, aux, 1)
    return r


cdef Tensor _d_concat(list ts, int ax, int rdt):
    cdef Tensor t
    cdef DevArray out, x
    cdef cad_iter it
    cdef int64_t off = 0
    cdef int d, nd
    oshape = list((<Tensor>ts[0]).shape)
    oshape[ax] = sum((<Tensor>t).shape[ax] for t in ts)
    out = _dnew_shape(tuple(oshape), rdt, "concatenate")
    nd = out.ndim
    for t in ts:
        x = <DevArray>t._arr
        it.nop = 2
        it.ndim = nd
        for d in range(nd):
            it.shape[d] = x.shp[d]
        cad_iter_operand(&it, 0, out.ptr + off * out.st[ax] * _ESIZE[rdt], _ESIZE[rdt], nd, x.shp, out.st)
        cad_iter_operand(&it, 1, x.ptr, _ESIZE[rdt], nd, x.shp, x.st)
        _dcheck(_run_dev(&it, cad_copy_rows[rdt]), "concatenate")
        off += x.shp[ax]
    return _dwrap(out)


cdef inline char *_tptr(Tensor t):
    """the data pointer of a tensor's value (host or device)"""
    if t._dev:
        return (<DevArray>t._arr).ptr
    if t._inline:
        return <char *>&t._sval
    return <char *>cnp.PyArray_DATA(<cnp.ndarray>t._arr)


cdef bint _gemmable_t(Tensor t, int nd):
    """do the last two dims of t have a unit stride BLAS can use?"""
    cdef int64_t rs, cs, R, C
    cdef DevArray a
    if not t._dev:
        return _gemmable(<cnp.ndarray>t._arr, nd)
    if nd < 2:
        return True
    a = <DevArray>t._arr
    R = a.shp[nd - 2]
    C = a.shp[nd - 1]
    rs = a.st[nd - 2]
    cs = a.st[nd - 1]
    return (cs == 1 or C == 1) and (rs >= C or R == 1) or (rs == 1 or R == 1) and (cs >= R or C == 1)


cdef bint _gemmable(cnp.ndarray a, int nd):
    """do the last two dims of a have a unit stride BLAS can use?"""
    cdef int64_t es = a.itemsize, rs, cs, R, C
    if nd < 2:
        return True
    R = a.shape[nd - 2]
    C = a.shape[nd - 1]
    rs = a.strides[nd - 2] // es
    cs = a.strides[nd - 1] // es
    return (cs == 1 or C == 1) and (rs >= C or R == 1) or (rs == 1 or R == 1) and (cs >= R or C == 1)


def matmul(object a, object b):
    """numpy's matmul: 1-D operands are promoted, batch dims broadcast; BLAS"""
    cdef Tensor ta = as_tensor(a), tb = as_tensor(b), r
    cdef int rdt = _promote(ta._dtype, tb._dtype), and_, bnd, obnd, d, st, es
    cdef bint a1, b1
    cdef int64_t m, k, k2, n, ars, acs, brs, bcs
    cdef cad_mm mm
    cdef int64_t oshape[MAXDIM]
    cdef int64_t aux[2]
    cdef cnp.ndarray out
    cdef DevArray dout
    cdef object aa, ba
    cdef char *optr
    cdef int dev = _common_dev([ta, tb], "matmul")
    and_ = _tndim(ta)
    bnd = _tndim(tb)
    if and_ == 0 or bnd == 0:
        raise ShapeError(f"matmul: operands of shapes {ta.shape} and {tb.shape}: 0-d operands are "
                         "not allowed (use * for scalars)")
    if not _isfloat(rdt):
        _escape(ta, "matmul of integers")
        _escape(tb, "matmul of integers")
        return _to_dev(_wrap(_np.asarray(_np.matmul(_arr_of(ta), _arr_of(tb)))), dev)
    if ta._dtype != rdt:
        ta = <Tensor>cast(ta, _DTYPES[rdt])
    if tb._dtype != rdt:
        tb = <Tensor>cast(tb, _DTYPES[rdt])
    if not _gemmable_t(ta, and_):
        ta = <Tensor>contiguous(ta)
    if not _gemmable_t(tb, bnd):
        tb = <Tensor>contiguous(tb)
    aa = ta._arr
    ba = tb._arr
    es = _ESIZE[rdt]
    a1 = and_ == 1
    b1 = bnd == 1
    if a1:
        m = 1
        k = aa.shape[0]
        ars = 0
        acs = aa.strides[0] // es
    else:
        m = aa.shape[and_ - 2]
        k = aa.shape[and_ - 1]
        ars = aa.strides[and_ - 2] // es
        acs = aa.strides[and_ - 1] // es
    if b1:
        k2 = ba.shape[0]
        n = 1
        brs = ba.strides[0] // es
        bcs = 0
    else:
        k2 = ba.shape[bnd - 2]
        n = ba.shape[bnd - 1]
        brs = ba.strides[bnd - 2] // es
        bcs = ba.strides[bnd - 1] // es
    if k != k2:
        raise ShapeError(f"matmul: shapes {ta.shape} and {tb.shape} are not aligned: "
                         f"{k} (last dim of a) != {k2} ({'dim 0' if b1 else 'dim -2'} of b)")
    abatch = ta.shape[:and_ - 2] if not a1 else ()
    bbatch = tb.shape[:bnd - 2] if not b1 else ()
    try:
        obatch = _np.broadcast_shapes(abatch, bbatch)
    except ValueError:
        raise ShapeError(f"matmul: batch dims of shapes {ta.shape} and {tb.shape} cannot be "
                         "broadcast together") from None
    obnd = len(obatch)
    mm.dtype = rdt
    mm.bnd = obnd
    for d in range(obnd):
        mm.bshape[d] = obatch[d]
        oshape[d] = obatch[d]
    for d in range(obnd):
        od = d - (obnd - len(abatch))
        mm.abst[d] = 0 if od < 0 or abatch[od] == 1 else aa.strides[od] // es
        od = d - (obnd - len(bbatch))
        mm.bbst[d] = 0 if od < 0 or bbatch[od] == 1 else ba.strides[od] // es
    d = obnd
    if not a1:
        oshape[d] = m
        d += 1
    if not b1:
        oshape[d] = n
        d += 1
    ond = d
    cad_contig_strides(obnd, mm.bshape, mm.obst)
    for d in range(obnd):
        mm.obst[d] *= m * n
    r = None
    if dev:
        dout = _dnew(ond, oshape, rdt, "matmul")
        optr = dout.ptr
    elif ond == 0 and rdt == CAD_F64:
        r = _new_inline(0.0)
        optr = <char *>&r._sval
    else:
        out = _empty(ond, <cnp.npy_intp *>oshape, rdt)
        optr = <char *>cnp.PyArray_DATA(out)
    mm.m = m
    mm.n = n
    mm.k = k
    mm.a = <const char *>_tptr(ta)
    mm.ars = ars
    mm.acs = acs
    mm.b = <const char *>_tptr(tb)
    mm.brs = brs
    mm.bcs = bcs
    mm.c = optr
    mm.crs = n
    mm.beta = 0.0
    with nogil:
        cad_set_dev(dev)
        st = cad_matmul(&mm)
        cad_set_dev(0)
    _dcheck(st, "matmul")
    if dev:
        r = _dwrap(dout)
    elif r is None:
        r = _wrap(out)
    if _mode1(ta) or _mode1(tb):
        aux[0] = a1
        aux[1] = b1
        _record(OP_MATMUL, r, [ta, tb], _need(OP_MATMUL, [ta, tb]), aux, 2)
    return r
