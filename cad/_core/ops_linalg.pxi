# dispatch of concatenate and matmul (cad/ops/shape.py, cad/ops/linalg.py).  Included by _engine.pyx (one extension module: calls between the rooms
# stay direct C calls); the include order is the module's order.

# ---------------------------------------------------------------- concatenate, matmul

def concat(list tensors, int axis):
    """concatenate along axis (numpy's promotion of dtypes); the record's forward kernel
    (NOTE [ One forward per primitive ])"""
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
    oshape = list(s0)
    oshape[ax] = sum((<Tensor>t).shape[ax] for t in ts)
    r = _new_out_shape(_common_dev(ts, "concatenate"), tuple(oshape), rdt, "concatenate")
    aux[0] = ax
    _eager(OP_CONCATENATE, r, ts, aux, 1, "concatenate")
    if rg:
        _record(OP_CONCATENATE, r, ts, -1, aux, 1)
    return r


cdef inline bint _gemmable_t(Tensor t, int nd):
    """do the last two dims of t have a unit stride BLAS can use?"""
    cdef _Storage S = _st(t)
    return S.gemmable(S.value(t), nd)


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


cpdef matmul(object a, object b):
    """numpy's matmul: 1-D operands are promoted, batch dims broadcast; BLAS (the
    record's forward kernel, cad_matmul_fwd: NOTE [ One forward per primitive ])"""
    cdef Tensor ta = as_tensor(a), tb = as_tensor(b), r
    cdef int rdt = _promote(ta._dtype, tb._dtype), and_, bnd, obnd, d
    cdef bint a1, b1
    cdef int64_t m, k, k2, n
    cdef int64_t oshape[MAXDIM]
    cdef int64_t aux[2]
    cdef int dev = _common_dev([ta, tb], "matmul")
    and_ = _tndim(ta)
    bnd = _tndim(tb)
    if and_ == 0 or bnd == 0:
        raise ShapeError(f"matmul: operands of shapes {ta.shape} and {tb.shape}: 0-d operands are "
                         "not allowed (use * for scalars)")
    if not _isfloat(rdt):
        _escape(ta, "matmul of integers")
        _escape(tb, "matmul of integers")
        return _st_on(dev).from_host(_np.asarray(_np.matmul(_arr_of(ta), _arr_of(tb))), -1)
    if ta._dtype != rdt:
        ta = <Tensor>cast(ta, _DTYPES[rdt])
    if tb._dtype != rdt:
        tb = <Tensor>cast(tb, _DTYPES[rdt])
    if not _gemmable_t(ta, and_):
        ta = <Tensor>contiguous(ta)
    if not _gemmable_t(tb, bnd):
        tb = <Tensor>contiguous(tb)
    a1 = and_ == 1
    b1 = bnd == 1
    m = 1 if a1 else _tdims(ta)[and_ - 2]
    k = _tdims(ta)[and_ - 1]
    k2 = _tdims(tb)[0 if b1 else bnd - 2]
    n = 1 if b1 else _tdims(tb)[bnd - 1]
    if k != k2:
        raise ShapeError(f"matmul: shapes {ta.shape} and {tb.shape} are not aligned: "
                         f"{k} (last dim of a) != {k2} ({'dim 0' if b1 else 'dim -2'} of b)")
    abatch = ta.shape[:and_ - 2] if not a1 else ()
    bbatch = tb.shape[:bnd - 2] if not b1 else ()
    # (numpy's broadcast_shapes builds arrays: ~3 us, most of a small product's call)
    if abatch == bbatch or not bbatch:
        obatch = abatch
    elif not abatch:
        obatch = bbatch
    else:
        try:
            obatch = _np.broadcast_shapes(abatch, bbatch)
        except ValueError:
            raise ShapeError(f"matmul: batch dims of shapes {ta.shape} and {tb.shape} cannot be "
                             "broadcast together") from None
    obnd = len(obatch)
    for d in range(obnd):
        oshape[d] = obatch[d]
    d = obnd
    if not a1:
        oshape[d] = m
        d += 1
    if not b1:
        oshape[d] = n
        d += 1
    r = _new_out(dev, d, oshape, rdt, "matmul")
    aux[0] = a1
    aux[1] = b1
    _eager2(OP_MATMUL, r, ta, tb, aux, 2, "matmul")
    if _mode1(ta) or _mode1(tb):
        _record(OP_MATMUL, r, [ta, tb], _need(OP_MATMUL, [ta, tb]), aux, 2)
    return r


# ---------------------------------------------------------------- cad.linalg helpers

def spd_inverse(cnp.ndarray l, double alpha=1.0):
    """alpha A^-1 for A = L L^T, l (n, n) float64/float32 holding L^T C-ordered (L
    Fortran-ordered; only that triangle is read), as a new C-contiguous (n, n) array
    from cad's block cache: column blocks of trsm, GEMM and trmm over cad's pool (NOTE
    [ Parallel SPD inverse ]; the GIL released)"""
    cdef int dt, st
    cdef int64_t n
    cdef cnp.npy_intp dims[2]
    cdef cnp.ndarray out, work
    cdef const char *pl
    cdef char *po
    cdef char *pw
    if not HAVE_LAPACK:
        raise RuntimeError("cad.linalg: scipy's LAPACK is not available")
    if l.ndim != 2 or l.shape[0] != l.shape[1]:
        raise ValueError("spd_inverse: shapes")
    if l.dtype not in (_np.float64, _np.float32):
        raise ValueError("spd_inverse: dtypes")
    if not l.flags.c_contiguous:
        raise ValueError("spd_inverse: layouts")
    dt = CAD_F64 if l.dtype == _np.float64 else CAD_F32
    n = l.shape[0]
    dims[0] = n
    dims[1] = n
    out = _empty(2, dims, dt)
    work = _empty(2, dims, dt)
    pl = <const char *>cnp.PyArray_DATA(l)
    po = <char *>cnp.PyArray_DATA(out)
    pw = <char *>cnp.PyArray_DATA(work)
    with nogil:
        st = cad_spd_inv(dt, n, pl, po, pw, alpha)
    _check(st, "cad.linalg")
    return out


def empty_array(tuple shape, object dtype):
    """an uninitialised writable ndarray; large ones from cad's block cache (alloc.c:
    no page faults on reuse), for cad.linalg's factors and packed outputs"""
    cdef cnp.npy_intp dims[MAXDIM]
    cdef int d, nd = len(shape)
    if nd > MAXDIM:
        raise ShapeError(f"cad: at most {MAXDIM} dimensions")
    for d in range(nd):
        dims[d] = shape[d]
    return _empty(nd, dims, _dtype_code(dtype, "empty_array"))
