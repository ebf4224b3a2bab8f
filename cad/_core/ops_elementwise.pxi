# dispatch of the elementwise ops (cad/ops/elementwise.py) and casts.  Included by _engine.pyx (one extension module: calls between the rooms
# stay direct C calls); the include order is the module's order.

# ---------------------------------------------------------------- elementwise

cdef inline bint _small_int(object v, double *out):
    cdef int ovf = 0
    cdef long long i = PyLong_AsLongLongAndOverflow(v, &ovf)
    if ovf or i > 9007199254740992 or i < -9007199254740992:
        return False
    out[0] = <double>i
    return True


cdef object _ew1(int op, object x):
    cdef Tensor t, r
    if type(x) is Tensor:
        t = <Tensor>x
        if t._inline:
            r = _new_inline(cad_fwd_sfn[op](t._sval, 0.0))
            if t._rg and not cad_grad_off:
                _rec_scalar(op, r, t, 0.0, None, 0.0, 1, True)
            elif cad_rec_mode and t._tape is not None:
                _rec_scalar(op, r, t, 0.0, None, 0.0, 1, False)
            return r
    return _ew_general(op, (x,))


cdef inline Tensor _ss2(int op, Tensor ta, double va, Tensor tb, double vb):
    cdef Tensor r = _new_inline(cad_fwd_sfn[op](va, vb))
    if not cad_grad_off and ((ta is not None and ta._rg) or (tb is not None and tb._rg)):
        _rec_scalar(op, r, ta, va, tb, vb, 2, True)
    elif cad_rec_mode and ((ta is not None and ta._tape is not None) or
                           (tb is not None and tb._tape is not None)):
        _rec_scalar(op, r, ta, va, tb, vb, 2, False)
    return r


cdef object _ew2(int op, object a, object b):
    cdef Tensor ta, tb
    cdef double v = 0.0
    if type(a) is Tensor:
        ta = <Tensor>a
        if ta._inline:
            if type(b) is Tensor:
                tb = <Tensor>b
                if tb._inline:
                    return _ss2(op, ta, ta._sval, tb, tb._sval)
            elif type(b) is float:
                return _ss2(op, ta, ta._sval, None, <double>b)
            elif type(b) is int and _small_int(b, &v):
                return _ss2(op, ta, ta._sval, None, v)
    elif type(b) is Tensor:
        tb = <Tensor>b
        if tb._inline:
            if type(a) is float:
                return _ss2(op, None, <double>a, tb, tb._sval)
            elif type(a) is int and _small_int(a, &v):
                return _ss2(op, None, v, tb, tb._sval)
    return _ew_general(op, (a, b))


cdef object _ewn(int op, tuple args):
    return _ew_general(op, args)


cdef int _weak_kind(object a):
    """Python scalars are 'weak' (NEP 50): 3 bool, 2 int, 1 float; -1 otherwise"""
    cdef type t = type(a)
    if t is float:
        return 1
    if t is int:
        return 2
    if t is bool:
        return 3
    return -1


cdef inline Tensor _scalar_operand(object v, int rdt, int dev):
    """a Python scalar as an operand of dtype rdt on device dev (0 CPU, 1 CUDA)"""
    return _st_on(dev).scalar(v, rdt)


cdef object _ew_general(int op, tuple args):
    cdef object r = _ew_general0(op, args)
    if cad_names_on and not cad_names_off:   # named dimensions (cad/names.py)
        return _ew_named(op, args, r)
    return r


cdef object _ew_general0(int op, tuple args):
    cdef int n = len(args), i, rdt = -1, wk, weak = -1, dt, nd, dev
    cdef str who = _OP_NAMES[op]
    cdef list ts = [None] * n
    cdef list ins
    cdef bint is_where = op == OP_WHERE, rg = False
    cdef Tensor t, r
    cdef int64_t oshape[MAXDIM]
    cdef cad_iter it
    cdef _Storage S
    for i in range(n):
        a = args[i]
        if isinstance(a, Tensor):
            t = <Tensor>a
            ts[i] = t
            if not (is_where and i == 0):
                rdt = _promote(rdt, t._dtype)
        else:
            wk = _weak_kind(a)
            if wk < 0:
                if type(a) is _BATCHED_T:
                    return _BATCH_HOOK(who, args)
                t = as_tensor(a)
                ts[i] = t
                if not (is_where and i == 0):
                    rdt = _promote(rdt, t._dtype)
            elif not (is_where and i == 0):
                weak = wk if weak < 0 else min(weak, wk)
    dev = _common_dev(ts, who)
    # weak Python scalars only raise the kind (bool < int < float)
    if rdt < 0:
        rdt = CAD_F64 if weak == 1 or weak < 0 else (CAD_I64 if weak == 2 else CAD_BOOL)
    elif weak == 1 and not _isfloat(rdt):
        rdt = CAD_F64
    elif weak == 2 and rdt == CAD_BOOL:
        rdt = CAD_I64
    if not _isfloat(rdt):
        if op not in _NP_REF:
            rdt = CAD_F64
        else:
            for i in range(n):
                _escape(<Tensor>ts[i], _OP_NAMES[op] + " on integers")
            arrs = [_arr_of(<Tensor>ts[i]) if ts[i] is not None else args[i] for i in range(n)]
            return _st_on(dev).from_host(_np.asarray(_NP_REF[op](*arrs)), -1)
    # every operand as a tensor of the result dtype (the condition of where: bool)
    for i in range(n):
        t = <Tensor>ts[i]
        if is_where and i == 0:
            if t is None:
                t = _st_on(dev).scalar(bool(args[i]), CAD_BOOL)
            elif t._dtype != CAD_BOOL:
                t = <Tensor>_boolop(OP_NE, (t, 0))
        elif t is None:
            t = _scalar_operand(args[i], rdt, dev)
        elif t._dtype != rdt:
            t = <Tensor>cast(t, _DTYPES[rdt])
        ts[i] = t
        if _mode1(t):
            rg = True
    nd = _bshape(ts, oshape, who)
    it.nop = n + 1
    it.ndim = nd
    for i in range(nd):
        it.shape[i] = oshape[i]
    S = _st_on(dev)
    r = S.new_like(ts, nd, oshape, rdt, who)   # (NOTE [ Result memory order ])
    _operand(&it, 0, r)
    for i in range(n):
        _operand(&it, i + 1, <Tensor>ts[i])
    S.run(&it, cad_fwd_row(op, rdt), cad_par_min_heavy if cad_fwd_heavy(op) else cad_par_min, who)
    if rg:
        need = 0
        for i in range(n):
            if (<Tensor>ts[i])._rg:
                need |= cad_uses_mask(op, i)
        _record(op, r, ts, need, NULL, 0)
    return r


cdef object _bitop(int op, object npfn, object a, object b):
    """& | ^: logic on bools (recorded), numpy's bitwise ops on integers"""
    cdef Tensor ta = as_tensor(a) if not isinstance(a, (bool, int)) else None
    cdef Tensor tb = as_tensor(b) if not isinstance(b, (bool, int)) else None
    if (ta is None or ta._dtype == CAD_BOOL) and (tb is None or tb._dtype == CAD_BOOL):
        return _boolop(op, (a, b))
    return _nondiff(npfn, (a, b))


cdef Tensor _view_norg(Tensor x, tuple shape):
    """an identity view of x recorded for its value only (detach in cad.record)"""
    cdef _Storage S = _st(x)
    cdef Tensor r = S.wrap(S.value(x))
    cdef int nd = len(shape), d
    cdef int64_t *aux = <int64_t *>malloc((2 + 2 * nd) * sizeof(int64_t))
    cs = _cstrides(shape)
    if aux == NULL:
        raise MemoryError()
    aux[0] = 0
    aux[1] = nd
    for d in range(nd):
        aux[2 + d] = shape[d]
        aux[2 + nd + d] = cs[d]
    try:
        _record1(OP_VIEW, r, x, 0, aux, 2 + 2 * nd)
    finally:
        free(aux)
    r._rg = False
    return r


cdef object _boolop(int op, tuple args):
    cdef object r = _boolop0(op, args)
    if cad_names_on and not cad_names_off:
        return _ew_named(op, args, r)
    return r


cdef object _boolop0(int op, tuple args):
    """a comparison or logic op: inputs promoted to a common dtype (numpy's rules,
    Python scalars weak), a bool result; recorded like any op (never requires grad)"""
    cdef int n = len(args), i, rdt = -1, wk, weak = -1, nd, st, dev
    cdef str who = _OP_NAMES[op]
    cdef list ts = [None] * n
    cdef Tensor t, r
    cdef int64_t oshape[MAXDIM]
    cdef cad_iter it
    cdef _Storage S
    cdef bint rec = False
    for i in range(n):
        a = args[i]
        if isinstance(a, Tensor):
            ts[i] = a
            rdt = _promote(rdt, (<Tensor>a)._dtype)
        else:
            wk = _weak_kind(a)
            if wk < 0:
                if type(a) is _BATCHED_T:
                    return _BATCH_HOOK(who, args)
                ts[i] = as_tensor(a)
                rdt = _promote(rdt, (<Tensor>ts[i])._dtype)
            else:
                weak = wk if weak < 0 else min(weak, wk)
    dev = _common_dev(ts, who)
    if rdt < 0:
        rdt = CAD_F64 if weak == 1 or weak < 0 else (CAD_I64 if weak == 2 else CAD_BOOL)
    elif weak == 1 and not _isfloat(rdt):
        rdt = CAD_F64
    elif weak == 2 and rdt == CAD_BOOL:
        rdt = CAD_I64
    for i in range(n):
        t = <Tensor>ts[i]
        if t is None:
            t = _scalar_operand(args[i], rdt, dev)
        elif t._dtype != rdt:
            t = <Tensor>cast(t, _DTYPES[rdt])
        ts[i] = t
        if _mode1(t):
            rec = True
    nd = _bshape(ts, oshape, who)
    it.nop = n + 1
    it.ndim = nd
    for i in range(nd):
        it.shape[i] = oshape[i]
    S = _st_on(dev)
    r = S.new(nd, oshape, CAD_BOOL, who)
    _operand(&it, 0, r)
    for i in range(n):
        _operand(&it, i + 1, <Tensor>ts[i])
    S.run(&it, cad_bool_row(op, rdt), cad_par_min, who)
    if rec:
        _record(op, r, ts, 0, NULL, 0)
    return r


cdef int64_t _cst[MAXDIM]

# NOTE [ Result memory order ]
# An elementwise result takes its operands' memory order, as numpy's (order K): when
# every operand of the result's full shape is Fortran-ordered (a transpose, a tangent
# batch laid out by columns, LAPACK's results), the result is Fortran-ordered too and
# the op runs as one contiguous row; `W.T * d` at 256x256 read W across rows into a
# C-ordered result, 3.7x numpy.  Any other mix gives a C-ordered result.  Readers of a
# result take its strides (the tape, the sweep, the replay: a replayed value's layout is
# its own, NOTE [ Views in replay ]).

cdef bint _all_fortran(list ts, int nd, const int64_t *oshape):
    """(host storage) every operand of the full (unbroadcast) shape is Fortran- and not
    C-contiguous, and there is one"""
    cdef Tensor t
    cdef cnp.ndarray a
    cdef int d
    cdef bint found = False
    for t in ts:
        if t._inline:
            continue
        a = <cnp.ndarray>t._arr
        if cnp.PyArray_NDIM(a) != nd:
            continue
        for d in range(nd):
            if cnp.PyArray_DIMS(a)[d] != oshape[d]:
                break
        else:
            if cnp.PyArray_IS_C_CONTIGUOUS(a) or not cnp.PyArray_IS_F_CONTIGUOUS(a):
                return False
            found = True
    return found


cdef int64_t *_contig(int nd, const int64_t *shape):
    cad_contig_strides(nd, shape, _cst)
    return _cst


cdef object _mod(object a, object b):
    """a % b: the remainder op (numpy's remainder, the sign of b; d/da = 1 and
    d/db = -floor(a / b), as numpy-autograd, JAX and PyTorch)"""
    return _ew2(OP_REMAINDER, a, b)


cdef object _nondiff(object fn, tuple args):
    cdef object r = _nondiff0(fn, args)
    if cad_names_on and not cad_names_off:
        return _ew_named(fn.__name__, args, r)
    return r


cdef object _nondiff0(object fn, tuple args):
    """numpy on the values; the result does not require grad"""
    for a in args:
        if type(a) is _BATCHED_T:
            return _BATCH_HOOK(fn, args)
    for a in args:
        if isinstance(a, Tensor):
            _escape(<Tensor>a, fn.__name__)
    cdef int dev = _common_dev([a for a in args if isinstance(a, Tensor)], fn.__name__)
    arrs = [_arr_of(<Tensor>a) if isinstance(a, Tensor) else a for a in args]
    try:
        res = fn(*arrs)
    except TypeError as e:   # numpy's "no loop for these types"
        dts = " and ".join(str(_np.asarray(a).dtype) if a is not None else "None" for a in arrs)
        raise DTypeError(f"{fn.__name__}: operands of dtypes {dts} are not supported ({e})") from None
    except ValueError as e:
        shapes = " and ".join(str(_np.shape(a)) for a in arrs)
        raise ShapeError(f"{fn.__name__}: {e} (operands of shapes {shapes})") from None
    res = _np.asarray(res)
    if res.dtype.kind not in "fiub":
        raise DTypeError(f"{fn.__name__}: the result has dtype {res.dtype}; cad has float64, float32, "
                         "int64 and bool (was an operand a string or an object?)")
    return _st_on(dev).from_host(res, -1)


# ---------------------------------------------------------------- casts

def cast(object x, object dtype):
    """x converted to dtype; between float dtypes the gradient flows back"""
    cdef Tensor t = as_tensor(x), r
    cdef _Storage S
    cdef int dt = _dtype_code(dtype, "astype")
    if dt == t._dtype:
        return t
    if _isfloat(dt) and _isfloat(t._dtype):   # the record's forward kernel (NOTE [ One forward per primitive ])
        r = _new_out_shape(t._dev, t.shape, dt, "astype")
        _eager1(OP_CAST, r, t, NULL, 0, "astype")
    else:   # (not differentiable; numpy's rules for ints and bools)
        S = _st(t)
        r = S.wrap(S.astype(S.value(t), dt))
    if _mode1(t):
        _record(OP_CAST, r, [t], 0, NULL, 0)
    return r
