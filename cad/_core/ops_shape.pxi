# dispatch of views, indexing and setitem (cad/ops/shape.py, cad/ops/index.py).  Included by _engine.pyx (one extension module: calls between the rooms
# stay direct C calls); the include order is the module's order.

# ---------------------------------------------------------------- views

cdef Tensor _view(Tensor x, object arr, int64_t off, tuple shape, tuple strides):
    """record a view of x: value arr, and (offset, shape, strides) relative to x's
    contiguous layout for the vjp"""
    cdef Tensor r
    cdef int nd = len(shape), d
    cdef int64_t *aux
    if isinstance(arr, DevArray):
        r = _dwrap(<DevArray>arr)
    else:
        r = _wrap(arr if cnp.PyArray_Check(arr) else _np.asarray(arr))
    if _mode1(x):
        aux = <int64_t *>malloc((2 + 2 * nd) * sizeof(int64_t))
        if aux == NULL:
            raise MemoryError()
        aux[0] = off
        aux[1] = nd
        for d in range(nd):
            aux[2 + d] = shape[d]
            aux[2 + nd + d] = strides[d]
        try:
            _record(OP_VIEW, r, [x], 0, aux, 2 + 2 * nd)
        finally:
            free(aux)
    return r


cdef tuple _cstrides(tuple shape):
    cdef int64_t s = 1
    cdef list out = [0] * len(shape)
    for d in range(len(shape) - 1, -1, -1):
        out[d] = s
        s *= max(<int64_t>shape[d], 1)
    return tuple(out)


cdef inline void _cstrides_of(int nd, const cnp.npy_intp *dims, int64_t *out) noexcept:
    """_cstrides in C: element strides of a C-ordered layout of dims (a size-0 or
    size-1 dim counted as 1), into out"""
    cdef int64_t c = 1
    cdef int d
    for d in range(nd - 1, -1, -1):
        out[d] = c
        c *= dims[d] if dims[d] > 1 else 1


cdef object _SHAPE_MAX = 1 << 62


cdef bint _exact_shape(tuple shape, int64_t n):
    """is shape a plain one: exact non-negative Python ints (no -1), at most MAXDIM of
    them, whose product is n?  (reshape's and expand's fast paths; anything else takes
    their general checks and errors)"""
    cdef Py_ssize_t i, nd = len(shape)
    cdef int64_t s, known = 1
    cdef object o
    if nd > MAXDIM:
        return False
    for i in range(nd):
        o = shape[i]
        if type(o) is not int or o < 0 or o > _SHAPE_MAX:
            return False
        s = o
        if s and known > (<int64_t>1 << 62) // s:
            return False
        known *= s
    return n < 0 or known == n


cpdef reshape(object x, tuple shape):
    """x with a new shape (C order); -1 infers one size"""
    cdef Tensor t = as_tensor(x)
    cdef int64_t n = _tsize(t)
    cdef _Storage S
    if _exact_shape(shape, n):   # (the common call: no -1, no numpy ints, no errors)
        S = _st(t)
        return _view(t, S.reshape(S.value(t), shape), 0, shape, _cstrides(shape))
    return _reshape_general(t, n, shape)


cdef object _reshape_general(Tensor t, int64_t n, tuple shape):
    cdef object known = 1
    cdef int neg = -1
    for s in shape:
        if isinstance(s, bool) or not isinstance(s, (int, _np.integer)):
            raise TypeError(f"reshape: sizes must be ints, got {type(s).__name__} {s!r} in {shape}")
    shape = tuple(int(s) for s in shape)
    for i, s in enumerate(shape):
        if s == -1:
            if neg >= 0:
                raise ShapeError(f"reshape: only one dimension can be -1, got {shape}")
            neg = i
        elif s < 0:
            raise ShapeError(f"reshape: negative size in {shape}")
        else:
            known *= s
    if neg >= 0:
        if known == 0 or n % known or n // known > (1 << 62):
            raise ShapeError(f"reshape: cannot reshape tensor of shape {t.shape} ({n} elements) "
                             f"into shape {shape}")
        shape = shape[:neg] + (n // known,) + shape[neg + 1:]
    elif known != n:
        raise ShapeError(f"reshape: cannot reshape tensor of shape {t.shape} ({n} elements) "
                         f"into shape {shape} ({known} elements)")
    cdef _Storage S = _st(t)
    return _view(t, S.reshape(S.value(t), shape), 0, shape, _cstrides(shape))


def contiguous(object x):
    """x with C-contiguous storage (recorded as an identity view)"""
    cdef Tensor t = as_tensor(x)
    cdef _Storage S
    if t._inline:
        return t
    S = _st(t)
    v = S.value(t)
    c = S.contig(v)
    if c is v:
        return t
    shape = t.shape
    return _view(t, c, 0, shape, _cstrides(shape))


cpdef transpose(object x, tuple axes):
    """x with its axes permuted"""
    cdef Tensor t = as_tensor(x)
    cdef int nd = _tndim(t), d, a
    cdef int64_t ccs[MAXDIM]
    cdef int64_t ps[MAXDIM]
    cdef int64_t pst[MAXDIM]
    cdef int64_t pvs[MAXDIM]
    cdef uint64_t seen = 0
    cdef cnp.npy_intp *dims
    cdef _Storage S
    cdef bint plain = len(axes) == nd and nd <= MAXDIM
    for d in range(nd if plain else 0):   # a permutation of exact non-negative ints?
        o = axes[d]
        if type(o) is not int or o < 0 or o >= nd:
            plain = False
            break
        a = o
        if (seen >> a) & 1:
            plain = False
            break
        seen |= (<uint64_t>1) << a
    if plain:   # (the common call: the strides in C, no normalize_axes)
        S = _st(t)
        v = S.value(t)
        dims = _tdims(t)
        _cstrides_of(nd, dims, ccs)
        for d in range(nd):
            a = axes[d]
            ps[d] = dims[a]
            pvs[d] = S.stride(v, a)
            pst[d] = ccs[a]
        pshape = _int_tuple(ps, nd)
        return _view(t, S.view(v, 0, pshape, _int_tuple(pvs, nd)), 0, pshape, _int_tuple(pst, nd))
    ax = normalize_axes(nd, axes, "transpose")
    if len(ax) != nd:
        raise ShapeError(f"transpose: axes {axes} do not match a tensor of dimension {nd}")
    S = _st(t)
    cs = _cstrides(t.shape)
    shape = t.shape
    v = S.value(t)
    vs = S.strides(v)
    pshape = tuple([shape[a] for a in ax])
    return _view(t, S.view(v, 0, pshape, tuple([vs[a] for a in ax])), 0, pshape, tuple([cs[a] for a in ax]))


cpdef expand(object x, tuple shape):
    """x broadcast to shape (numpy's broadcast_to)"""
    cdef Tensor t = as_tensor(x)
    cdef int nd = len(shape), xnd = _tndim(t), off = nd - xnd, d
    cdef int64_t st[MAXDIM]
    cdef int64_t vst[MAXDIM]
    cdef int64_t xcs[MAXDIM]
    cdef int64_t xd, sd
    cdef cnp.npy_intp *dims
    cdef _Storage S
    if off >= 0 and _exact_shape(shape, -1):   # (plain shapes: no numpy ints, no errors)
        S = _st(t)
        v = S.value(t)
        dims = _tdims(t)
        _cstrides_of(xnd, dims, xcs)
        for d in range(nd):   # strides as _cstrides(xs) / the value's, or 0
            if d < off:
                st[d] = 0
                vst[d] = 0
                continue
            xd = dims[d - off]
            sd = shape[d]
            if xd == sd:
                st[d] = xcs[d - off]
                vst[d] = S.stride(v, d - off)
            elif xd == 1:
                st[d] = 0
                vst[d] = 0
            else:
                return _expand_general(t, shape)   # (its error)
        return _view(t, S.view(v, 0, shape, _int_tuple(vst, nd)), 0, shape, _int_tuple(st, nd))
    return _expand_general(t, shape)


cdef object _expand_general(Tensor t, tuple shape):
    cdef int nd = len(shape), xnd = _tndim(t), off = nd - xnd
    xs = t.shape
    if off < 0:
        raise ShapeError(f"broadcast_to: cannot broadcast shape {xs} to the shorter shape {shape}")
    cs = _cstrides(xs)
    st = []
    for d in range(nd):
        if d < off:
            st.append(0)
        elif xs[d - off] == shape[d]:
            st.append(cs[d - off])
        elif xs[d - off] == 1:
            st.append(0)
        else:
            raise ShapeError(f"broadcast_to: cannot broadcast shape {xs} to {shape} (dim {d})")
    cdef _Storage S = _st(t)
    v = S.value(t)
    vs = S.strides(v)
    vst = tuple([0 if d < off or xs[d - off] != shape[d] else vs[d - off] for d in range(nd)])
    return _view(t, S.view(v, 0, shape, vst), 0, shape, tuple(st))


def squeeze_axes(object x, tuple axes):
    cdef Tensor t = as_tensor(x)
    shape = tuple(s for i, s in enumerate(t.shape) if i not in axes)
    return reshape(t, shape)


cdef object _basic_index(tuple shape, tuple strides, tuple idx):
    """(offset, shape, strides) of a basic index (ints, slices, None, Ellipsis)
    applied to a layout given by shape/strides; idx is already valid for numpy"""
    cdef int nd = len(shape), d = 0, nreal = 0
    cdef int64_t off = 0, i, n
    out_shape = []
    out_st = []
    for e in idx:
        if e is not None and e is not Ellipsis:
            nreal += 1
    for e in idx:
        if e is None:
            out_shape.append(1)
            out_st.append(0)
        elif e is Ellipsis:
            for _ in range(nd - nreal):
                out_shape.append(shape[d])
                out_st.append(strides[d])
                d += 1
            nreal = nd   # a second Ellipsis is invalid and was rejected by numpy
        elif isinstance(e, slice):
            start, stop, step = e.indices(shape[d])
            n = len(range(start, stop, step))
            off += start * strides[d] if n > 0 else 0
            out_shape.append(n)
            out_st.append(strides[d] * step)
            d += 1
        else:
            i = int(e)
            if i < 0:
                i += shape[d]
            off += i * strides[d]
            d += 1
    while d < nd:
        out_shape.append(shape[d])
        out_st.append(strides[d])
        d += 1
    return off, tuple(out_shape), tuple(out_st)


cdef bint _is_basic(object e):
    return e is None or e is Ellipsis or isinstance(e, slice) or \
        (isinstance(e, (int, _np.integer)) and not isinstance(e, (bool, _np.bool_)))


cdef tuple _norm_index(object idx):
    cdef list out = []
    if not isinstance(idx, tuple):
        idx = (idx,)
    for e in idx:
        if isinstance(e, Tensor):
            _escape(<Tensor>e, "indexing with a tensor")
            e = _arr_of(<Tensor>e)
            if e.ndim == 0 and e.dtype.kind in "iu":
                e = int(e)
        out.append(e)
    return tuple(out)


cdef object _lin_index(Tensor t, tuple idx):
    """flat positions (C order of t) selected by idx: int64 array of the result's shape.
    A position is the sum over dims of index * stride, and indexing selects, so it is
    the sum over dims of the index applied to that dim's term broadcast to t's shape
    (a view of shape[d] numbers): work of the result's size per dim, where indexing a
    template arange(t.size) made a pass over all of t (diagonal of a 1000 x 1000
    matrix, recorded: 0.31 ms against 0.014 untracked)"""
    cdef tuple shape = tuple(t.shape)
    cdef int nd = len(shape), d
    cdef int64_t s = 1
    if nd == 0 or t.size <= 4096:
        tmpl = _np.arange(t.size, dtype=_np.int64).reshape(shape)
        return _np.array(tmpl[idx], dtype=_np.int64, order="C")
    st = [0] * nd
    for d in range(nd - 1, -1, -1):
        st[d] = s
        s *= shape[d]
    lin = None
    for d in range(nd):
        if shape[d] == 1:
            continue   # (its only index is 0)
        term = _np.broadcast_to((_np.arange(shape[d], dtype=_np.int64) * st[d]).reshape(
            (-1,) + (1,) * (nd - 1 - d)), shape)[idx]
        lin = term if lin is None else lin + term
    if lin is None:   # every dim of size 1: position 0 wherever idx selects
        lin = _np.zeros(shape, dtype=_np.int64)[idx]
    return _np.array(lin, dtype=_np.int64, order="C")


cdef object _getitem(Tensor t, object index):
    if cad_names_on and not cad_names_off and t._names is not None:
        return _NAMES_GETITEM(t, index)   # cad/names.py: the surviving dims keep their names
    return _getitem0(t, index)


cdef object _getitem0(Tensor t, object index):
    cdef tuple idx
    if _BATCHED_T is not None:   # an index batched by cad.vmap: its getitem rule
        if type(index) is _BATCHED_T or (type(index) is tuple and
                                         any(type(e) is _BATCHED_T for e in <tuple>index)):
            return _BATCH_HOOK("getitem", (t, index))
    idx = _norm_index(index)
    cdef _Storage S = _st(t)
    v = S.value(t)
    if len(idx) == 1 and type(idx[0]) is _np.ndarray and (<cnp.ndarray>idx[0]).dtype.kind in "iu" \
            and _tndim(t) >= 1:
        return _take_rows(t, S, v, idx[0])
    try:
        val = S.index(v, idx)   # basic indices: a view; others: the values, or None (the gather kernel's)
    except IndexError as e:
        raise IndexError(f"{e} (indexing a tensor of shape {t.shape})") from None
    if all(_is_basic(e) for e in idx):
        if not _mode1(t):
            return S.wrap(val)
        off, shape, st = _basic_index(t.shape, _cstrides(t.shape), idx)
        return _view(t, val, off, shape, st)
    if not _mode1(t) and val is not None:
        return S.wrap(val)
    return gather(t, _lin_index(t, idx), val, checked=True)   # (positions of t's own template)


cdef object _take_rows(Tensor t, _Storage S, object v, object ix):
    """t[ix] for one integer array ix: rows of t (numpy's take along axis 0, a copy of
    each row: half the time of the general fancy index on BA's cams[ci]); the flat
    positions, when recorded, are ix's rows laid out (no arange template indexed)"""
    cdef int64_t n = _tdims(t)[0]
    try:
        val = S.take(v, ix)   # the rows, or None where the gather kernel makes them
    except IndexError as e:
        raise IndexError(f"{e} (indexing a tensor of shape {t.shape})") from None
    if not _mode1(t) and val is not None:
        return S.wrap(val)
    row = t.size // n if n else 0
    i64 = ix.astype(_np.int64, copy=False)
    if i64.size and i64.min() < 0:
        i64 = _np.where(i64 < 0, i64 + n, i64)
    r = gather(t, _row_positions(i64, row, ix.shape + t.shape[1:]), val, checked=True)
    if _tndim(t) >= 2:
        _mark_rows(<Tensor>r)
    return r


cdef void _mark_rows(Tensor r):
    """the gather record that just made r reads whole rows: its positions buffer is
    marked CAD_VER_ROWS (NOTE [ Row gathers ] in kernels.c)"""
    cdef Tape tp = r._tape
    cdef cad_rec *rec
    cdef cad_hid h
    if tp is None or tp._into is not None or tp.t.nrecs == 0:
        return
    rec = &tp.t.recs[tp.t.nrecs - 1]
    if rec.op != OP_GATHER or rec.out != r._h or rec.nargs < 2:
        return
    h = tp.t.args[rec.arg + 1]
    if h >= 0 and not (tp.t.bufs[h].flags & BUF_LEAF) and tp.t.bufs[h].ndim >= 1 \
            and tp.t.bufs[h].meta:
        cad_set_version(tp.t.meta, &tp.t.bufs[h], CAD_VER_ROWS)


cdef cnp.ndarray _row_positions(object i64, int64_t row, tuple shape):
    """the flat positions of rows i64 (in range, non-negative) of a row-major array with
    `row` elements per row, laid out as `shape`, in cad's block cache: numpy's
    broadcast (i64[:, None] * row + arange(row)) made two fresh 3.2 MB arrays for BA's
    cams[ci], faulted in on every call"""
    cdef cnp.ndarray ia = _np.ascontiguousarray(i64, dtype=_np.int64)
    cdef cnp.npy_intp dims[MAXDIM]
    cdef int nd = len(shape), d
    cdef cnp.ndarray out
    cdef const int64_t *src = <const int64_t *>cnp.PyArray_DATA(ia)
    cdef int64_t *dst
    cdef int64_t k, j, m = cnp.PyArray_SIZE(ia), base
    for d in range(nd):
        dims[d] = shape[d]
    out = _empty(nd, dims, CAD_I64)
    dst = <int64_t *>cnp.PyArray_DATA(out)
    with nogil:
        for k in range(m):
            base = src[k] * row
            for j in range(row):
                dst[k * row + j] = base + j
    return out


def gather(object x, object lin, object value=None, int nb=0, bint checked=False):
    """out[b..., k...] = x[b..., flat position lin[k...]] (C order over x's trailing
    dims after nb batch dims); the result has shape x.shape[:nb] + lin.shape.
    checked: the caller made the positions in range (their bounds are not read again)"""
    cdef Tensor t = as_tensor(x), r, tl
    cdef int64_t B = 1, xsize
    cdef object la
    cdef int64_t aux[3]
    la = _np.array(_arr_of(<Tensor>lin) if isinstance(lin, Tensor) else lin, dtype=_np.int64, order="C",
                  copy=None)
    shape = t.shape
    for d in range(nb):
        B *= shape[d]
    xsize = t.size // B if B else 0
    if not checked and la.size and (la.min() < 0 or la.max() >= xsize):
        raise IndexError(f"gather: position out of range for {xsize} elements")
    tl = _index_tensor(la, t._dev)
    aux[0] = B
    aux[1] = xsize
    aux[2] = nb
    if value is None:
        r = _new_out_shape(t._dev, shape[:nb] + la.shape, t._dtype, "gather")
        _eager2(OP_GATHER, r, _value_contig(t), tl, aux, 3, "gather")
    else:   # (the value the storage's indexing computed with the positions: _getitem)
        r = _st(t).wrap(value)
    if _mode1(t):
        _record(OP_GATHER, r, [t, tl], _need(OP_GATHER, [t, tl]), aux, 3)
    return r


def scatter(object g, object lin, int64_t xsize, int nb=0, bint checked=False):
    """the adjoint of gather: zeros of shape g.shape[:nb] + (xsize,), then
    out[b..., lin[k...]] += g[b..., k...]; checked: as gather's"""
    cdef Tensor t = as_tensor(g), r, tl
    cdef int64_t B = 1
    cdef object la
    cdef int64_t aux[3]
    la = _np.array(_arr_of(<Tensor>lin) if isinstance(lin, Tensor) else lin, dtype=_np.int64, order="C",
                  copy=None)
    shape = t.shape
    for d in range(nb):
        B *= shape[d]
    if not _isfloat(t._dtype):
        raise DTypeError("scatter: float values only")
    if not checked and la.size and (la.min() < 0 or la.max() >= xsize):
        raise IndexError(f"scatter: position out of range for {xsize} elements")
    tl = _index_tensor(la, t._dev)
    r = _new_out_shape(t._dev, shape[:nb] + (xsize,), t._dtype, "scatter")
    aux[0] = B
    aux[1] = xsize
    aux[2] = nb
    _eager2(OP_SCATTER, r, _value_contig(t), tl, aux, 3, "scatter")
    if _mode1(t):
        _record(OP_SCATTER, r, [t, tl], _need(OP_SCATTER, [t, tl]), aux, 3)
    return r


def as_strided(object x, int64_t offset, tuple shape, tuple strides):
    """a view of x given relative to x's contiguous (C-order) layout, recorded
    like every view (transforms build the views of their rules with it)"""
    cdef Tensor t = as_tensor(x)
    cdef _Storage S = _st(t)
    return _view(t, S.view(S.contig(S.value(t)), offset, shape, strides), offset, shape, strides)


def fresh_view(object x):
    """as_strided(x, 0, x.shape, C-order strides of x.shape): the identity view a
    transform differentiates with respect to (transforms._fresh), its strides in C"""
    cdef Tensor t = as_tensor(x)
    cdef _Storage S = _st(t)
    cdef int nd = _tndim(t)
    cdef int64_t cs[MAXDIM]
    _cstrides_of(nd, _tdims(t), cs)
    shape = t.shape
    strides = _int_tuple(cs, nd)
    return _view(t, S.view(S.contig(S.value(t)), 0, shape, strides), 0, shape, strides)


cpdef unview(object g, int64_t offset, tuple vshape, tuple vstrides, tuple out_shape):
    """the adjoint of as_strided: zeros of out_shape, whose strided window
    (offset, vshape, vstrides) receives g (overlaps add up); the record's forward
    kernel (NOTE [ One forward per primitive ])"""
    cdef Tensor t = as_tensor(g), r
    cdef int nd = len(vshape), d
    cdef int64_t aux[2 + 2 * MAXDIM]
    if t.shape != vshape:
        raise ShapeError(f"unview: value of shape {t.shape} does not match the window {vshape}")
    if nd > MAXDIM:
        raise ShapeError(f"unview: {nd} dims; cad has at most {MAXDIM}")
    aux[0] = offset
    aux[1] = nd
    for d in range(nd):
        aux[2 + d] = vshape[d]
        aux[2 + nd + d] = vstrides[d]
    r = _new_out_shape(t._dev, out_shape, t._dtype, "unview")
    _eager1(OP_UNVIEW, r, t, aux, 2 + 2 * nd, "unview")
    if _mode1(t):
        _record1(OP_UNVIEW, r, t, 0, aux, 2 + 2 * nd)
    return r


cdef _setitem(Tensor x, object index, object value):
    cdef tuple idx
    cdef Tensor v = as_tensor(value) if isinstance(value, Tensor) else None
    cdef Tensor r, tl
    cdef bint leaf = x._tape is None
    cdef _Storage S
    if type(value) is _BATCHED_T:
        raise ValueError(f"cad.vmap: x[...] = v writes a batched value into a tensor of shape "
                         f"{x.shape} that is not batched (as torch.func and JAX, cad does not "
                         f"batch x in place); build the result with cad.where or cad.stack")
    idx = _norm_index(index)
    if leaf and x._rg and not cad_grad_off:
        raise BackwardError("setitem: in-place change of a leaf tensor that requires grad; wrap "
                            "it in `with cad.no_grad():` or build a new tensor")
    if v is not None:
        _common_dev([x, v], "setitem")
    if v is None:
        v = _st(x).from_host(value, x._dtype)
    if v._dtype != x._dtype:
        if _isfloat(x._dtype) and _isfloat(v._dtype):
            v = <Tensor>cast(v, _DTYPES[x._dtype])
        else:
            S = _st(v)
            v = S.wrap(S.astype(S.value(v), x._dtype))
    recording = _mode1(x) or _mode1(v)
    try:
        lin = _lin_index(x, idx)
    except IndexError as e:
        raise IndexError(f"{e} (assigning into a tensor of shape {x.shape})") from None
    if v.shape != lin.shape:
        try:
            v = <Tensor>expand(v, lin.shape)
        except ShapeError:
            raise ShapeError(f"setitem: value of shape {v.shape} cannot be broadcast to the "
                             f"indexed shape {lin.shape}") from None
    tl = _index_tensor(_np.asarray(lin, dtype=_np.int64, order="C"), x._dev)   # (asarray keeps 0-d)
    r = _new_out_shape(x._dev, x.shape, x._dtype, "setitem")
    _eager(OP_SETITEM, r, [x, _value_contig(v), tl], NULL, 0, "setitem")
    if recording:
        _record(OP_SETITEM, r, [x, v, tl], _need(OP_SETITEM, [x, v, tl]), NULL, 0)
    x._rebind(r, leaf and x._rg)
