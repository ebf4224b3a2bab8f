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
    cdef int64_t _serial
    cdef bint _consumed
    cdef bint _busy

    def __cinit__(self):
        global _tape_serial
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
        for i in range(n):
            b = &self.t.bufs[i]
            if b.owner != NULL:
                refs.append(<object>b.owner)
                Py_DECREF(<object>b.owner)
                b.owner = NULL
            if b.leaf != NULL:
                refs.append(<object>b.leaf)
                Py_DECREF(<object>b.leaf)
                b.leaf = NULL
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
    if cad_tape_append(&A.t, &B.t, &hoff) != CAD_OK:
        raise MemoryError("cad: cannot grow the tape")
    cad_tape_free_arrays(&B.t)
    B._into = A
    B._hoff = hoff
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


cdef int _reserve(Tape tp, int nbufs, int nargs, int nmeta, int naux) except -1:
    cdef cad_tape *T = &tp.t
    if (T.nbufs + nbufs > T.capbufs or T.nrecs + 1 > T.caprecs or T.nargs + nargs > T.capargs
            or T.nmeta + nmeta > T.capmeta or T.naux + naux > T.capaux):
        if cad_tape_reserve(T, T.nbufs + nbufs, T.nrecs + 1, T.nargs + nargs,
                            T.nmeta + nmeta, T.naux + naux) != CAD_OK:
            raise MemoryError("cad: cannot grow the tape")
    return 0


cdef cad_hid _push_buf(Tape tp, Tensor t, uint8_t flags, bint own) except -2:
    """register t's value (own: keep its ndarray alive for the sweep)"""
    cdef cad_tape *T = &tp.t
    cdef cad_buf *b
    cdef cnp.ndarray arr
    cdef DevArray da
    cdef int nd = 0, d, es
    if t._dev:
        da = <DevArray>t._arr
        nd = da.ndim
    elif not t._inline:
        arr = <cnp.ndarray>t._arr
        nd = cnp.PyArray_NDIM(arr)
    _reserve(tp, 1, 0, 2 * nd, 0)
    b = &T.bufs[T.nbufs]
    b.grad = NULL
    b.owner = NULL
    b.leaf = NULL
    b.sgrad = 0.0
    b.hasg = 0
    b.version = 0
    b.dtype = t._dtype
    b.meta = T.nmeta
    b.ndim = nd
    if t._dev:
        b.flags = flags | BUF_CUDA
        b.sval = 0.0
        b.data = da.ptr
        b.size = da.size
        for d in range(nd):
            T.meta[T.nmeta + d] = da.shp[d]
            T.meta[T.nmeta + nd + d] = da.st[d]
        T.nmeta += 2 * nd
        if own:
            Py_INCREF(da)
            b.owner = <void *>da
    elif t._inline:
        b.flags = flags | BUF_INLINE
        b.sval = t._sval
        b.data = NULL
        b.size = 1
    else:
        b.flags = flags
        b.sval = 0.0
        b.data = <char *>cnp.PyArray_DATA(arr)
        b.size = cnp.PyArray_SIZE(arr)
        es = _ESIZE[t._dtype]
        for d in range(nd):
            T.meta[T.nmeta + d] = cnp.PyArray_DIMS(arr)[d]
            T.meta[T.nmeta + nd + d] = cnp.PyArray_STRIDES(arr)[d] // es
        T.nmeta += 2 * nd
        if own:
            Py_INCREF(arr)
            b.owner = <void *>arr
    T.nbufs += 1
    return T.nbufs - 1


cdef inline cad_hid _push_scalar(Tape tp, double v, uint8_t flags) except -2:
    cdef cad_tape *T = &tp.t
    cdef cad_buf *b
    if T.nbufs >= T.capbufs:
        _reserve(tp, 1, 0, 0, 0)
    b = &T.bufs[T.nbufs]
    b.data = NULL
    b.grad = NULL
    b.owner = NULL
    b.leaf = NULL
    b.sval = v
    b.sgrad = 0.0
    b.size = 1
    b.meta = T.nmeta
    b.ndim = 0
    b.version = 0
    b.dtype = CAD_F64
    b.flags = flags | BUF_INLINE
    b.hasg = 0
    T.nbufs += 1
    return T.nbufs - 1


cdef inline void _own(Tape tp, cad_hid h, Tensor t):
    cdef cad_buf *b = &tp.t.bufs[h]
    if b.owner == NULL and not (b.flags & BUF_INLINE):
        Py_INCREF(t._arr)
        b.owner = <void *>t._arr


cdef cad_hid _handle(Tape tp, Tensor t, double v, bint need) except -2:
    """the handle of an input on tape tp (registering it); -1 for a constant
    whose value the derivative does not read"""
    cdef Tape tt
    cdef cad_hid h
    if t is None:
        return _push_scalar(tp, v, 0) if need else -1
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
        tp.t.bufs[h].leaf = <void *>t
        tp.t.bufs[h].version = t._version
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
