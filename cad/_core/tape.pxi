# the Tape object, registration of values and records.  Included by _engine.pyx (one extension module: calls between the rooms
# stay direct C calls); the include order is the module's order.

# ---------------------------------------------------------------- tape

cdef int64_t _tape_serial = 0


@cython.no_gc
@cython.freelist(16)
cdef class Tape:
    """A tape of recorded ops (see NOTE [ Tapes ]).  Tensors refer to it; users
    rarely see it."""
    cdef cad_tape t
    cdef Tape _into
    cdef cad_hid _hoff
    cdef int64_t _roff   # (merged: where this tape's records start in _into's)
    cdef int64_t _serial
    cdef bint _consumed
    cdef bint _busy
    cdef cad_hid _ch   # NOTE [ Shared constants ]: the last float constant's slot (-1: none)

    def __cinit__(self):
        global _tape_serial
        self._ch = -1
        if cad_tape_init(&self.t) != CAD_OK:
            raise MemoryError("cad: cannot allocate a tape")
        _tape_serial += 1
        self._serial = _tape_serial

    def __dealloc__(self):
        self._release()

    cdef void _release(self) noexcept:
        cdef int64_t i, n = self.t.nbufs
        cdef cad_buf *b
        cdef list refs = []
        cdef void *p
        for i in range(n):
            b = &self.t.bufs[i]
            if b.meta == 0:   # (NOTE [ Value slot ]: no owner, no leaf)
                continue
            p = cad_owner(self.t.meta, b)
            if p != NULL:
                refs.append(<object>p)
                Py_DECREF(<object>p)
                cad_set_owner(self.t.meta, b, NULL)
            p = cad_leaf(self.t.meta, b)
            if p != NULL:
                refs.append(<object>p)
                Py_DECREF(<object>p)
                cad_set_leaf(self.t.meta, b, NULL)
        cad_tape_free_arrays(&self.t)
        refs = None   # the objects die here, after the tape is consistent

    def __len__(self):
        return self.t.nrecs

    @property
    def consumed(self):
        return self._consumed

    def ops(self):
        """The recorded op names, in order."""
        return [_OP_NAMES[self.t.recs[i].op] for i in range(self.t.nrecs)]

    def __repr__(self):
        return f"<cad.Tape {self.t.nrecs} records, {self.t.nbufs} values{', consumed' if self._consumed else ''}>"

    # ---- the tape as the Python sweeps and the rules see it (tapeview.pxi): every
    # handle lookup follows merges and checks its range (NOTE [ Handles across merges ])
    def records(self, int64_t lo=0, int64_t hi=-1):
        """records lo..hi-1 as (op code, out handle, input handles, aux) tuples"""
        return tape_records(self, lo, hi)

    def info(self, cad_hid h):
        """(shape, dtype code, flags) of handle h"""
        return tape_info(self, h)

    def flags(self, cad_hid h):
        """the flags of handle h"""
        return tape_flags(self, h)

    def node(self, cad_hid h):
        """a tensor standing for handle h (None: its value was not kept)"""
        return tape_node(self, h)

    def leaf(self, cad_hid h):
        """the leaf registered as h, or None"""
        return tape_leaf(self, h)

    def leaf_handles(self, Tensor x):
        return leaf_handles(self, x)

    def producer(self, cad_hid h):
        return producer(self, h)

    def first_use(self, cad_hid h):
        return first_use(self, h)

    def foreign_leaves(self, list mine):
        return foreign_leaves(self, mine)

    def ew_jvp(self, int op, cad_hid out, tuple ins, list ts, int nb):
        return ew_jvp(self, op, out, ins, ts, nb)

    @property
    def nrecs(self):
        return self.t.nrecs

    @property
    def nbufs(self):
        return self.t.nbufs

    @property
    def nbytes(self):
        """bytes the tape's arrays hold (their allocated capacity: values, records,
        argument handles, shapes and strides, aux words); not the values' own data"""
        cdef cad_tape *T = &self.t
        return (T.capbufs * <int64_t>sizeof(cad_buf) + T.caprecs * <int64_t>sizeof(cad_rec)
                + T.capargs * <int64_t>sizeof(cad_arg) + (T.capmeta + T.capaux) * <int64_t>8)


cdef inline Tape _resolved(Tensor x):
    """x's live tape, following merges (and updating x)"""
    cdef Tape tp = x._tape
    cdef cad_hid h
    if tp is not None and tp._into is not None:
        h = x._h
        while tp._into is not None:
            h += tp._hoff
            tp = tp._into
        x._tape = tp
        x._h = h
    return tp


cdef Tape _merge(Tape A, Tape B):
    cdef int64_t hoff
    if A._busy or B._busy:
        raise BackwardError("cad: cannot record onto a tape while another thread runs backward on it")
    if A.t.nbufs < B.t.nbufs:
        A, B = B, A
    cdef int64_t roff = A.t.nrecs
    if cad_tape_append(&A.t, &B.t, &hoff) != CAD_OK:
        raise MemoryError("cad: cannot grow the tape")
    cad_tape_free_arrays(&B.t)
    B._into = A
    B._hoff = hoff
    B._roff = roff
    return A


cdef inline Tape _input_tape(Tensor t):
    """the live (unconsumed) tape an input is on, or None"""
    cdef Tape tp
    if t is None or t._tape is None:
        return None
    tp = _resolved(t)
    if tp._consumed:
        return None
    if tp._busy:
        raise BackwardError("cad: cannot record onto a tape while another thread runs backward on it")
    return tp


cdef inline Tape _join(Tape A, Tape B):
    if A is None:
        return B
    if B is None or A is B:
        return A
    return _merge(A, B)


cdef inline bint _holds_arrays(const cad_tape *T) noexcept nogil:
    """a value of one or more dims on the tape (the sweeps release the GIL for them)"""
    cdef int64_t i
    for i in range(T.nbufs):
        if T.bufs[i].ndim:
            return True
    return False


cdef int _reserve(Tape tp, int nbufs, int nargs, int nmeta, int naux) except -1:
    cdef cad_tape *T = &tp.t
    if (T.nbufs + nbufs > T.capbufs or T.nrecs + 1 > T.caprecs or T.nargs + nargs > T.capargs
            or T.nmeta + nmeta > T.capmeta or T.naux + naux > T.capaux):
        if cad_tape_reserve(T, T.nbufs + nbufs, T.nrecs + 1, T.nargs + nargs,
                            T.nmeta + nmeta, T.naux + naux) != CAD_OK:
            raise MemoryError("cad: cannot grow the tape (out of memory, or past 2^31 - 1 "
                              "values, records or argument handles)")
    return 0


cdef cad_hid _push_buf(Tape tp, Tensor t, uint8_t flags, bint own) except -2:
    """register t's value (own: keep its ndarray alive for the sweep)"""
    cdef cad_tape *T = &tp.t
    cdef cad_buf *b
    _reserve(tp, 1, 0, CAD_SLOT_WORDS + 2 * _tndim(t), 0)
    b = &T.bufs[T.nbufs]
    _fill_buf(T, b, t, flags)
    if own and not t._inline:
        Py_INCREF(t._arr)
        cad_set_owner(T.meta, b, <void *>t._arr)
    T.nbufs += 1
    return T.nbufs - 1


cdef inline int32_t _slot_words(cad_tape *T) noexcept:
    """a value's owner, leaf and version words (NOTE [ Value slot ]), none set, at
    T.meta[T.nmeta..] (room is the caller's); the value's meta offset, just after them"""
    T.meta[T.nmeta] = 0
    T.meta[T.nmeta + 1] = 0
    T.meta[T.nmeta + 2] = 0
    T.nmeta += CAD_SLOT_WORDS
    return <int32_t>T.nmeta


cdef inline void _fill_buf(cad_tape *T, cad_buf *b, Tensor t, uint8_t flags):
    """b describes t's value (host, device or inline), its owner, leaf and version
    words (none set) and shape and strides written at T.meta[T.nmeta..] (room for
    CAD_SLOT_WORDS + 2 * ndim entries is the caller's); no reference"""
    cdef cnp.ndarray arr
    cdef DevArray da
    cdef int nd = 0, d, es
    b.grad = NULL   # (sgrad = 0.0 for an inline value: the same word)
    b.hasg = 0
    b.dtype = t._dtype
    b.meta = _slot_words(T)
    if t._dev:
        da = <DevArray>t._arr
        nd = da.ndim
        b.ndim = nd
        b.flags = flags | BUF_CUDA
        b.data = da.ptr
        b.size = da.size
        for d in range(nd):
            T.meta[T.nmeta + d] = da.shp[d]
            T.meta[T.nmeta + nd + d] = da.st[d]
        T.nmeta += 2 * nd
    elif t._inline:
        b.ndim = 0
        b.flags = flags | BUF_INLINE
        b.sval = t._sval
        b.sgrad = 0.0
        b.size = 1
    else:
        arr = <cnp.ndarray>t._arr
        nd = cnp.PyArray_NDIM(arr)
        b.ndim = nd
        b.flags = flags
        b.data = <char *>cnp.PyArray_DATA(arr)
        b.size = cnp.PyArray_SIZE(arr)
        es = _ESIZE[t._dtype]
        for d in range(nd):
            T.meta[T.nmeta + d] = cnp.PyArray_DIMS(arr)[d]
            T.meta[T.nmeta + nd + d] = cnp.PyArray_STRIDES(arr)[d] // es
        T.nmeta += 2 * nd


DEF EAGER_MAXB = 8
DEF EAGER_MAXAUX = 2 + 2 * MAXDIM   # (a view's and unview's aux)


cdef int _eager(int op, Tensor r, list ins, int64_t *aux, int naux, str who) except -1:
    """NOTE [ One forward per primitive ]
    Eager execution of a primitive: r (allocated by the caller on the inputs' device)
    = op(ins) computed by the record's forward kernel, the op table's fkernel that
    cad_forward runs in a replay and bind runs for the table's newer primitives.  The
    record lives on a tape of this C frame (no Python object, nothing kept): the
    dispatchers check arguments, give the output's shape and record on the real tape
    as before, but no primitive has a second forward of its own, and the device is
    chosen per record (the output's BUF_CUDA) as in a replay instead of by a branch
    of the dispatcher.  Used by the reductions, matmul, gather, scatter, setitem,
    concatenate, float casts, unview and bind (cumsum, cumprod, xent, cross).  Not
    here: elementwise ops (generated specializations: the inline scalar expression,
    and for arrays the same row kernels through the same iterator), views (the
    storage's views of the same memory, NOTE [ Storage per device ]), casts to or
    from integers (numpy's rules; never differentiated), and x[idx] on the CPU,
    whose value numpy's indexing computes while it checks the index (the host
    storage's `index`; the positions, recorded for the gather, select the same
    elements)."""
    cdef PyObject *small[EAGER_MAXB]
    cdef PyObject **p = small
    cdef int n = len(ins), i
    if n > EAGER_MAXB:   # (concatenate of many tensors)
        p = <PyObject **>malloc(n * sizeof(PyObject *))
        if p == NULL:
            raise MemoryError(f"{who}: out of memory")
    try:
        for i in range(n):
            p[i] = <PyObject *>ins[i]
        return _eager_p(op, r, p, n, aux, naux, who)
    finally:
        if p != small:
            free(p)


cdef inline int _eager1(int op, Tensor r, Tensor a, int64_t *aux, int naux, str who) except -1:
    """_eager of one input (no list)"""
    cdef PyObject *p[1]
    p[0] = <PyObject *>a
    return _eager_p(op, r, p, 1, aux, naux, who)


cdef inline int _eager2(int op, Tensor r, Tensor a, Tensor b, int64_t *aux, int naux, str who) except -1:
    cdef PyObject *p[2]
    p[0] = <PyObject *>a
    p[1] = <PyObject *>b
    return _eager_p(op, r, p, 2, aux, naux, who)


cdef int _eager_p(int op, Tensor r, PyObject **ins, int n, int64_t *aux, int naux, str who) except -1:
    cdef cad_tape T
    cdef cad_buf sbufs[EAGER_MAXB]
    cdef cad_arg sargs[EAGER_MAXB]
    cdef int64_t smeta[EAGER_MAXB * (3 + 2 * MAXDIM)]   # (CAD_SLOT_WORDS + ...)
    cdef int64_t ax[EAGER_MAXAUX]
    cdef cad_buf *bufs = sbufs
    cdef cad_arg *args = sargs
    cdef int64_t *meta = smeta
    cdef cad_rec rec
    cdef int i, st
    if naux > EAGER_MAXAUX:
        raise ValueError(f"{who}: a primitive takes at most {EAGER_MAXAUX} aux values")
    if n > CAD_MAXNARGS:
        raise ValueError(f"{who}: at most {CAD_MAXNARGS} inputs to one op (got {n})")
    if n >= EAGER_MAXB:
        bufs = <cad_buf *>malloc((n + 1) * sizeof(cad_buf))
        args = <cad_arg *>malloc(n * sizeof(cad_arg))
        meta = <int64_t *>malloc((n + 1) * (CAD_SLOT_WORDS + 2 * MAXDIM) * sizeof(int64_t))
        if bufs == NULL or args == NULL or meta == NULL:
            free(bufs)
            free(args)
            free(meta)
            raise MemoryError(f"{who}: out of memory")
    T.bufs = bufs
    T.capbufs = n + 1
    T.recs = &rec
    T.nrecs = 1
    T.caprecs = 1
    T.args = args
    T.nargs = n
    T.capargs = n
    T.meta = meta
    T.nmeta = 0
    T.capmeta = (n + 1) * (CAD_SLOT_WORDS + 2 * MAXDIM)
    T.aux = ax
    T.naux = naux
    T.capaux = EAGER_MAXAUX
    for i in range(n):
        _fill_buf(&T, &bufs[i], <Tensor>ins[i], 0)
        args[i] = i
    _fill_buf(&T, &bufs[n], r, 0)
    T.nbufs = n + 1
    for i in range(naux):
        ax[i] = aux[i]
    rec.op = op
    rec.nargs = n
    rec.out = n
    rec.arg = 0
    rec.aux = 0 if naux else -1
    with nogil:
        st = cad_fwd_dispatch(&T, &rec)
    if r._inline:
        r._sval = bufs[n].sval
    if bufs != sbufs:
        free(bufs)
        free(args)
        free(meta)
    if st != CAD_OK:
        _dcheck(st, who)   # (a device error's message, else _check's)
    return 0


cdef inline cad_hid _push_scalar(Tape tp, double v, uint8_t flags) except -2:
    cdef cad_tape *T = &tp.t
    cdef cad_buf *b
    if T.nbufs >= T.capbufs:
        _reserve(tp, 1, 0, 0, 0)
    b = &T.bufs[T.nbufs]
    b.sval = v
    b.sgrad = 0.0
    b.size = 1
    b.meta = 0   # no owner, leaf or version words (NOTE [ Value slot ])
    b.ndim = 0
    b.dtype = CAD_F64
    b.flags = flags | BUF_INLINE
    b.hasg = 0
    T.nbufs += 1
    return T.nbufs - 1


cdef inline void _own(Tape tp, cad_hid h, Tensor t):
    cdef cad_buf *b = &tp.t.bufs[h]
    if not (b.flags & BUF_INLINE) and cad_owner(tp.t.meta, b) == NULL:
        Py_INCREF(t._arr)
        cad_set_owner(tp.t.meta, b, <void *>t._arr)


# NOTE [ Shared constants ]
# A Python float on the other side of an op whose derivative reads it (y * 0.999) gets a
# value slot on the tape.  Consecutive uses of the same constant (bit for bit) share the
# slot: W1's chain made one 80-byte slot per product, a quarter of its tape.  The slot is
# taken again only while it still holds that constant and nothing else (flags exactly
# BUF_INLINE: no gradient flows into it), so a merge or any reuse of the handle is safe.
cdef inline cad_hid _const_slot(Tape tp, double v) except -2:
    cdef cad_hid h = tp._ch
    cdef cad_buf *b
    if 0 <= h < tp.t.nbufs:
        b = &tp.t.bufs[h]
        if b.flags == BUF_INLINE and memcmp(&b.sval, &v, sizeof(double)) == 0:
            return h
    h = _push_scalar(tp, v, 0)
    tp._ch = h
    return h


cdef cad_hid _handle(Tape tp, Tensor t, double v, bint need) except -2:
    """the handle of an input on tape tp (registering it); -1 for a constant
    whose value the derivative does not read"""
    cdef Tape tt
    cdef cad_hid h
    if t is None:
        return _const_slot(tp, v) if need else -1
    if t._tape is not None:
        tt = _resolved(t)
        if tt is tp:
            if need:
                _own(tp, t._h, t)
            return t._h
        # a value of a consumed tape: usable as data, but no gradient reaches it
        return _push_buf(tp, t, BUF_RG | BUF_DEAD, need)
    if t._rg:
        if t._lser == tp._serial and t._lver == t._version:
            if need:
                _own(tp, t._lh, t)
            return t._lh
        h = _push_buf(tp, t, BUF_RG | BUF_LEAF, need)
        Py_INCREF(t)
        cad_set_leaf(tp.t.meta, &tp.t.bufs[h], <void *>t)
        cad_set_version(tp.t.meta, &tp.t.bufs[h], t._version)
        t._lser = tp._serial
        t._lh = h
        t._lver = t._version
        return h
    if need:
        return _push_buf(tp, t, 0, True)
    return -1


cdef inline int _push_rec(Tape tp, int op, cad_hid out, cad_hid *args, int nargs,
                          int64_t *aux, int naux) except -1:
    cdef cad_tape *T = &tp.t
    cdef cad_rec *r
    cdef int i
    if nargs > CAD_MAXNARGS:
        raise ValueError(f"cad: {_OP_NAMES[op]}: at most {CAD_MAXNARGS} inputs to one op "
                         f"(got {nargs})")
    if T.nrecs >= T.caprecs or T.nargs + nargs > T.capargs or T.naux + naux > T.capaux:
        _reserve(tp, 0, nargs, 0, naux)
    r = &T.recs[T.nrecs]
    r.op = op
    r.nargs = nargs
    r.out = out
    r.arg = T.nargs
    for i in range(nargs):
        T.args[T.nargs + i] = args[i]
    T.nargs += nargs
    if naux:
        r.aux = T.naux
        for i in range(naux):
            T.aux[T.naux + i] = aux[i]
        T.naux += naux
    else:
        r.aux = -1
    T.nrecs += 1
    return 0


cdef int _record(int op, Tensor r, list ins, int need, int64_t *aux, int naux) except -1:
    """record op(ins) -> r.  need: bit i = the sweep reads input i's value,
    bit 7 = it reads the output's; need == -1: every input is registered (their
    shapes are read) and kept.  The output requires grad when an input does (grad
    mode on, float result); in record mode every input and the output are registered
    and kept."""
    cdef Tape tp = None
    cdef Tensor t
    cdef int i, n = len(ins)
    cdef bint rg = False
    cdef cad_hid small[8]
    cdef cad_hid *hs = small
    cdef cad_hid ho
    for i in range(n):
        t = <Tensor>ins[i]
        if t is not None:
            if t._rg:
                rg = True
            if t._tape is not None:
                tp = _join(tp, _input_tape(t))
    rg = rg and not cad_grad_off and _isfloat(r._dtype)
    if cad_rec_mode:
        need = -1
    if tp is None:
        tp = Tape.__new__(Tape)
    if n > 8:
        hs = <cad_hid *>malloc(n * sizeof(cad_hid))
        if hs == NULL:
            raise MemoryError()
    try:
        for i in range(n):
            hs[i] = _handle(tp, <Tensor>ins[i], 0.0, need == -1 or (i < 7 and (need >> i) & 1))
        if r._inline:
            ho = _push_scalar(tp, r._sval, BUF_RG if rg else 0)
        else:
            # (record mode keeps the output too: a transform recorded inside cad.record
            # reads the value of f's own output, which no later record takes as input)
            ho = _push_buf(tp, r, BUF_RG if rg else 0, need == -1 or (need >> 7) & 1)
        _push_rec(tp, op, ho, hs, n, aux, naux)
    finally:
        if hs != small:
            free(hs)
    r._tape = tp
    r._h = ho
    r._rg = rg
    return 0


cdef inline int _need(int op, list ins):
    """what the tape keeps of a record: the values that the derivatives of the inputs
    requiring grad read (bit i: input i, bit 7: the output), from the op table (the
    partials of an elementwise op, the `reads` of the others: generated cad_uses)"""
    cdef int m = 0, i
    cdef object t
    for i in range(min(len(ins), 3)):
        t = ins[i]
        if t is not None and (<Tensor>t)._rg:
            m |= cad_uses_mask(op, i)
    return m


cdef int _record1(int op, Tensor r, Tensor x, int need, int64_t *aux, int naux) except -1:
    """_record for one input (views of one tensor: the seed's t[i])"""
    cdef Tape tp = _input_tape(x)
    cdef cad_hid h, ho
    cdef bint rg = x._rg and not cad_grad_off and _isfloat(r._dtype)
    if tp is None:
        tp = Tape.__new__(Tape)
    h = _handle(tp, x, 0.0, cad_rec_mode or (need & 1))
    if r._inline:
        ho = _push_scalar(tp, r._sval, BUF_RG if rg else 0)
    else:
        ho = _push_buf(tp, r, BUF_RG if rg else 0, cad_rec_mode or (need >> 7) & 1)
    _push_rec(tp, op, ho, &h, 1, aux, naux)
    r._tape = tp
    r._h = ho
    r._rg = rg
    return 0


cdef int _rec_scalar(int op, Tensor r, Tensor ta, double va, Tensor tb, double vb, int n,
                     bint rg) except -1:
    """record an op on inline float64 scalars (the fast path)"""
    cdef Tape tp = _join(_input_tape(ta), _input_tape(tb) if n == 2 else None)
    cdef int need = 0
    cdef cad_hid hs[2]
    cdef cad_hid ho
    if tp is None:
        tp = Tape.__new__(Tape)
    if cad_rec_mode:
        need = 3
    else:
        if ta is not None and ta._rg:
            need |= cad_uses_mask(op, 0)
        if n == 2 and tb is not None and tb._rg:
            need |= cad_uses_mask(op, 1)
    hs[0] = _handle(tp, ta, va, need & 1)
    if n == 2:
        hs[1] = _handle(tp, tb, vb, need & 2)
    ho = _push_scalar(tp, r._sval, BUF_RG if rg else 0)
    _push_rec(tp, op, ho, hs, n, NULL, 0)
    r._tape = tp
    r._h = ho
    r._rg = rg
    return 0
