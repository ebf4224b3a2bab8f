# bind (one entry point) and the typed view of the tape the Python sweeps use.  Included by _engine.pyx (one extension module: calls between the rooms
# stay direct C calls); the include order is the module's order.

# ---------------------------------------------------------------- one entry point

def bind(int op, list ins, tuple aux, tuple out_shape, object out_dtype, str who):
    """NOTE [ One entry point ]
    Eager execution of a primitive through its replay forward kernel: the output is
    allocated on the inputs' device, the op is recorded (on the inputs' tape when the
    result requires grad or cad.record is recording) and the record's forward kernel
    (the op table's fkernel, the one cad_forward runs in a replay) computes it
    (_eager: NOTE [ One forward per primitive ]).  One forward per primitive: eager,
    replay and the CUDA device all run the same C function.  The op table's entry
    checks the arguments and gives the output's shape and dtype; every input here is
    a Tensor whose value the kernel reads (contiguous where the kernel needs it)."""
    cdef Tensor r, t
    cdef int dt = _dtype_code(out_dtype, who)
    cdef int dev = 0, i, n = len(ins), naux = len(aux)
    cdef int64_t ax[16]
    cdef bint rec = cad_rec_mode
    if naux > 16 or n > 7:
        raise ValueError(f"{who}: bind takes at most 7 inputs and 16 aux values")
    for i in range(naux):
        ax[i] = aux[i]
    dev = _common_dev(ins, who)
    for i in range(n):
        t = <Tensor>ins[i]
        if t._rg and not cad_grad_off:
            rec = True
    r = _new_out_shape(dev, out_shape, dt, who)
    _eager(op, r, ins, ax, naux, who)
    if rec:
        _record(op, r, ins, ((1 << n) - 1) | 128, ax, naux)
    return r


# ---------------------------------------------------------------- the tape from Python (transforms)

cpdef tape_records(Tape tp, int64_t lo=0, int64_t hi=-1):
    """records lo..hi-1 as (op code, out handle, input handles, aux) tuples"""
    cdef int64_t i, j
    cdef cad_rec *r
    cdef list out = []
    if hi < 0 or hi > tp.t.nrecs:
        hi = tp.t.nrecs
    for i in range(max(lo, 0), hi):
        r = &tp.t.recs[i]
        ins = _int_tuple(tp.t.args + r.arg, r.nargs)
        if r.aux >= 0:
            aux = _rec_aux(tp, i)
        else:
            aux = ()
        out.append((r.op, r.out, ins, aux))
    return out


cdef tuple _rec_back(Tape tp, int64_t i, cad_hid hoff):
    """record i of tp as tape_records gives it, its handles hoff less: a sweep that
    followed a merge (NOTE [ Merges during a C forward sweep ]) hands its rules the
    record as the tape they hold (the merged one, which _live forwards) numbers it"""
    cdef tuple rec = <tuple>tape_records(tp, i, i + 1)[0]
    if hoff == 0:
        return rec
    return (rec[0], rec[1] - hoff, tuple([h - hoff if h >= 0 else h for h in <tuple>rec[2]]), rec[3])


# NOTE [ Merges during a C forward sweep ]
# A rule the forward sweeps call (a custom primitive's jvp through its vjp, which
# records a gradient) may merge the swept tape into a larger one: cad_tape_append
# copies its records to the other's end (record offset _roff) and its values (handle
# offset _hoff), and frees its arrays.  forward_sweep_c and forward_sweep_b then
# follow it (_follow_merge): the sweep goes on over the same records in the live
# tape, its per-handle arrays and dict moved by the handle offset, and the rules,
# whose closures hold the tape they were given, get records in that tape's numbering
# (_rec_back).  Records a rule appends, to this tape or another, are not swept (the
# Python sweep's snapshot).  test_forward_sweep_c's custom-primitive cases merge.

cdef list _AUX_N = []   # per op code: the aux count the op table declares (naux), or -1


def set_aux_counts(list counts):
    global _AUX_N
    _AUX_N = counts


cdef tuple _rec_aux(Tape tp, int64_t i):
    """the aux ints of record i (their count depends on the op)"""
    cdef cad_rec *r = &tp.t.recs[i]
    cdef int64_t *a = tp.t.aux + r.aux
    cdef int64_t n
    if r.op < len(_AUX_N) and <int64_t>_AUX_N[r.op] >= 0:
        n = _AUX_N[r.op]
    elif r.op == OP_VIEW or r.op == OP_UNVIEW:
        n = 2 + 2 * a[1]
    elif r.op == OP_GATHER or r.op == OP_SCATTER:
        n = 3
    elif r.op == OP_MATMUL or r.op == OP_TO_DEVICE:
        n = 2
    elif r.op == OP_CUSTOM:   # [entry, n, layout (n ints)]
        n = 2 + a[1]
    else:
        n = 1
    return _int_tuple(a, n)


ctypedef fused _tape_word:
    int64_t     # meta and aux words
    cad_arg     # argument handles (NOTE [ Record width ])


cdef tuple _int_tuple(const _tape_word *a, int64_t n):
    """a tuple of n ints (no generator: these read the tape per record)"""
    cdef tuple r = PyTuple_New(n)
    cdef int64_t j
    cdef object v
    for j in range(n):
        v = a[j]
        Py_INCREF(v)
        PyTuple_SET_ITEM(r, j, v)
    return r


cdef Tape _live(Tape tp, cad_hid *h):
    """NOTE [ Handles across merges ]
    A Python sweep (transforms.reverse_sweep / forward_sweep) holds a tape and the
    handles of its records while its rules record new ops; those ops may merge the
    tape into a larger one (`_merge` frees the smaller tape's arrays and forwards
    it).  Every lookup of a (tape, handle) pair from Python therefore follows the
    forwarding here, so handles taken before a merge stay valid after it, and
    checks the handle's range (an out-of-range handle raises, never reads memory)."""
    cdef cad_hid k = h[0]
    while tp._into is not None:
        k += tp._hoff
        tp = tp._into
    if k < 0 or k >= tp.t.nbufs:
        raise IndexError(f"cad: handle {h[0]} is out of range for a tape of {tp.t.nbufs} values")
    h[0] = k
    return tp


def tape_live(Tape tp):
    """the tape tp was merged into (itself when it was not)"""
    while tp._into is not None:
        tp = tp._into
    return tp


cpdef tuple tape_info(Tape tp, cad_hid h):
    """(shape, dtype code, flags) of handle h"""
    tp = _live(tp, &h)
    cdef cad_buf *b = &tp.t.bufs[h]
    return _int_tuple(tp.t.meta + b.meta, b.ndim), b.dtype, b.flags


cdef bint _same_shape_h(Tape tp, cad_hid a, cad_hid b) except -1:
    """do handles a and b hold values of one shape (tape_info(..)[0] equal)?"""
    cdef Tape ta = _live(tp, &a)
    cdef Tape tb = _live(tp, &b)
    cdef cad_buf *x = &ta.t.bufs[a]
    cdef cad_buf *y = &tb.t.bufs[b]
    cdef int d
    if x.ndim != y.ndim:
        return False
    for d in range(x.ndim):
        if ta.t.meta[x.meta + d] != tb.t.meta[y.meta + d]:
            return False
    return True


cdef bint _same_info_h(Tape tp, cad_hid a, cad_hid b) except -1:
    """do handles a and b hold values of one shape and dtype (tape_info's first two
    fields equal, without the tuples)?"""
    cdef cad_hid la = a, lb = b
    cdef Tape ta = _live(tp, &la)
    cdef Tape tb = _live(tp, &lb)
    return ta.t.bufs[la].dtype == tb.t.bufs[lb].dtype and _same_shape_h(tp, a, b)


cdef bint _tensor_like_h(Tape tp, Tensor g, cad_hid h) except -1:
    """is g of handle h's shape and dtype (g.shape, g's dtype against tape_info)?"""
    cdef Tape th = _live(tp, &h)
    cdef cad_buf *b = &th.t.bufs[h]
    return g._dtype == b.dtype and _dims_are(g, 0, &th.t, b, -1)


cpdef int tape_flags(Tape tp, cad_hid h) except? -1:
    """the flags of handle h (tape_info without the shape)"""
    tp = _live(tp, &h)
    return tp.t.bufs[h].flags


cpdef object tape_node(Tape tp, cad_hid h):
    """a tensor standing for handle h: the leaf itself, a node of the tape (ops on
    it record against h), or the value of a constant; None when the value was not
    kept (nothing read it)"""
    tp = _live(tp, &h)
    cdef cad_buf *b = &tp.t.bufs[h]
    cdef Tensor r
    cdef cnp.npy_intp dims[MAXDIM]
    cdef int d
    if b.flags & BUF_LEAF:
        return <Tensor>cad_leaf(tp.t.meta, b)
    if (b.flags & BUF_INLINE):
        r = _new_inline(b.sval)
    elif b.flags & (BUF_ARENA | BUF_INPUT):   # a replayed value: a copy (the arena is reused)
        r = <Tensor>_value_of(&tp.t, h)
    elif cad_owner(tp.t.meta, b) != NULL:
        r = Tensor.__new__(Tensor)
        r._arr = <object>cad_owner(tp.t.meta, b)
        r._dtype = b.dtype
        r._dev = 1 if b.flags & BUF_CUDA else 0
    else:
        return None
    if (b.flags & BUF_RG) and not (b.flags & BUF_DEAD):
        r._tape = tp
        r._h = h
        r._rg = True
    return r


def producer(Tape tp, cad_hid h):
    """index of the record whose output is h, or -1"""
    cdef int64_t i
    for i in range(tp.t.nrecs - 1, -1, -1):
        if tp.t.recs[i].out == h:
            return i
    return -1


def first_use(Tape tp, cad_hid h):
    """index of the first record that reads or makes h, or nrecs"""
    cdef int64_t i, j
    cdef cad_rec *r
    for i in range(tp.t.nrecs):
        r = &tp.t.recs[i]
        if r.out == h:
            return i
        for j in range(r.nargs):
            if tp.t.args[r.arg + j] == h:
                return i
    return tp.t.nrecs


def leaf_handles(Tape tp, Tensor x):
    """every handle under which leaf x is registered on tp"""
    cdef int64_t i
    return [i for i in range(tp.t.nbufs) if cad_leaf(tp.t.meta, &tp.t.bufs[i]) == <void *>x]


def handle_of(Tensor t):
    """(tape, handle) of a recorded tensor, or (None, -1)"""
    if t._tape is None:
        return None, -1
    tp = _resolved(t)
    return tp, t._h


def tape_buf_count(Tape tp):
    return tp.t.nbufs


def tape_leaf(Tape tp, cad_hid h):
    """the leaf tensor registered as h, or None"""
    tp = _live(tp, &h)
    if tp.t.bufs[h].flags & BUF_LEAF:
        return <Tensor>cad_leaf(tp.t.meta, &tp.t.bufs[h])
    return None


def ones_like_value(Tensor t):
    """ones of t's shape and dtype (a constant)"""
    return _st(t).full(t.shape, t._dtype, 1)


def node_count(Tape tp):
    return tp.t.nrecs


def foreign_leaves(Tape tp, list mine):
    """does tp hold a leaf that is not in mine (a variable of an outer computation)?
    NOTE [ Orphan leaves ]: a leaf whose only references are this tape's registrations
    of it is nobody's variable (an inner transform's fresh input once that transform
    has returned: no one can ask for its gradient) and does not count; a leaf anyone
    else holds does, and so does one another tape registers (the conservative side:
    the sweep records)."""
    cdef int64_t i, j, k
    cdef set ids = {id(x) for x in mine}
    cdef set orphans = None
    cdef PyObject *lf
    for i in range(tp.t.nbufs):
        if not (tp.t.bufs[i].flags & BUF_LEAF):
            continue
        lf = <PyObject *>cad_leaf(tp.t.meta, &tp.t.bufs[i])
        if id(<object>lf) in ids or (orphans is not None and id(<object>lf) in orphans):
            continue
        k = 0   # this tape's registrations of the leaf (each an owned reference)
        for j in range(tp.t.nbufs):
            if (tp.t.bufs[j].flags & BUF_LEAF) and <PyObject *>cad_leaf(tp.t.meta, &tp.t.bufs[j]) == lf:
                k += 1
        if Py_REFCNT(<object>lf) > k:
            return True
        if orphans is None:
            orphans = set()
        orphans.add(id(<object>lf))
    return False


cdef inline bint _scalar_tangent(object v):
    """a tangent the C forward sweep holds as a double: 0-d float64 on the host"""
    cdef Tensor t
    if type(v) is not Tensor:
        return False
    t = <Tensor>v
    return t._dtype == CAD_F64 and not t._dev and (t._inline or cnp.PyArray_NDIM(<cnp.ndarray>t._arr) == 0)


cdef inline double _scalar_of(Tensor t):
    return t._sval if t._inline else (<double *>cnp.PyArray_DATA(<cnp.ndarray>t._arr))[0]


cdef int _mark_needed(Tape tp, list want, int64_t start, int64_t n, unsigned char *need) except -1:
    """need[h] = 1 for the handles in want and every input of records start..n-1 on a
    path to one of them (tp live; need holds a byte per value of tp)"""
    cdef cad_hid h
    cdef cad_rec *r
    cdef int64_t i, j
    for k in want:
        h = k
        _live(tp, &h)
        need[h] = 1
    for i in range(n - 1, start - 1, -1):
        r = &tp.t.recs[i]
        if need[r.out]:
            for j in range(r.nargs):
                h = tp.t.args[r.arg + j]
                if h >= 0:
                    need[h] = 1
    return 0


cdef set _dependents(list recs, set keep):
    """the handles computed from one in keep (keep included), over a records snapshot
    in order: only they can carry a wanted handle's cotangent (the reverse sweeps'
    pruning)"""
    cdef set dep = set(keep)
    cdef tuple rec
    for rec in recs:
        out = rec[1]
        if out not in dep:
            for h in <tuple>rec[2]:
                if h in dep:
                    dep.add(out)
                    break
    return dep


def forward_sweep_c(Tape tp, dict seeds, int64_t start, list want, object rule,
                    bytes ew_fused=b""):
    """NOTE [ C forward sweep ] (cad_kernels/cpu/forward.c): the tangents of the
    handles in want, from seeds {handle: tangent} (no batch dims, not recorded),
    pushed through records start.. of tp.  Runs of inline records go through
    cad_jvp_scalar_run in C (the GIL released for long runs, the tape marked busy
    as the reverse sweep does); any other record goes to rule(record, tangents),
    the op table's jvp rules (transforms.forward_sweep's body), which returns the
    output's tangent or None.  0-d float64 tangents live in a C array, the others
    in a dict.  None: the records include a custom primitive (its rules may record,
    growing or merging the tape; the caller's Python sweep takes the whole range).
    Records appended by a rule are not swept (as the Python sweep's snapshot).
    With ew_fused (transforms._EW_BYTES) the array records the rules would send to
    C anyway, and the common linear and bilinear ones, are pushed here without
    them (_jvp0_c; NOTE [ Array records in the forward sweep ]), and only records
    on a path to a wanted handle are swept (the rules' sweep prunes the same way)."""
    cdef int64_t n, nb, i, j, stop
    cdef cad_hid h
    cdef cad_rec *r
    cdef double *stan = NULL
    cdef unsigned char *shas = NULL
    cdef unsigned char *need = NULL
    cdef dict tan = {}
    cdef list ts
    cdef bint anyt
    cdef const unsigned char *ew = ew_fused
    cdef Py_ssize_t new = len(ew_fused)
    cdef Tape tp0
    cdef cad_hid hoff = 0   # (the rules' numbering + hoff: tp's, NOTE [ Merges during a C forward sweep ])
    cdef int64_t mv[3]
    tp = tape_live(tp)
    tp0 = tp
    n = tp.t.nrecs
    nb = tp.t.nbufs
    stan = <double *>malloc(<size_t>max(nb, 1) * sizeof(double))
    shas = <unsigned char *>calloc(<size_t>max(nb, 1), 1)
    if new:
        need = <unsigned char *>calloc(<size_t>max(nb, 1), 1)
    if stan == NULL or shas == NULL or (new and need == NULL):
        free(stan)
        free(shas)
        free(need)
        raise MemoryError("jvp: cannot allocate the tangents")
    try:
        if new:   # only records on a path to a wanted handle
            _mark_needed(tp, want, start, n, need)
        for k, v in seeds.items():
            h = k
            tp2 = _live(tp, &h)
            if tp2 is not tp:
                raise IndexError(f"cad: a seed's handle {k} is not on this tape")
            if _scalar_tangent(v):
                stan[h] = _scalar_of(<Tensor>v)
                shas[h] = 1
            else:
                tan[h] = v
        i = start
        while i < n:
            if n - i > 64 and not tp._busy:   # (busy: another thread's backward; keep the GIL)
                tp._busy = True
                try:
                    with nogil:
                        stop = cad_jvp_scalar_run(&tp.t, i, n, stan, shas)
                finally:
                    tp._busy = False
            else:
                stop = cad_jvp_scalar_run(&tp.t, i, n, stan, shas)
            i = stop
            if i >= n:
                break
            r = &tp.t.recs[i]
            if (need != NULL and not need[r.out]) or (OP_EQ <= r.op <= OP_ISNAN):
                i += 1   # (a comparison's or logic op's bools: no tangent, its rule's None)
                continue
            ts = []
            anyt = False
            for j in range(r.nargs):
                h = tp.t.args[r.arg + j]
                if h < 0:
                    ts.append(None)
                elif shas[h]:
                    ts.append(_new_inline(stan[h]))
                    anyt = True
                else:
                    v = tan.get(h)
                    ts.append(v)
                    anyt = anyt or v is not None
            if anyt:
                res = _jvp0_c(tp, r, ts, ew, new) if new else None
                if res is None:
                    res = rule(_rec_back(tp, i, hoff), ts)
                if tp._into is not None:   # (a rule merged the tape into another)
                    tp = _follow_merge(tp, mv, &stan, &shas, &need, nb, tan)
                    i += mv[1]
                    n += mv[1]
                    hoff += mv[0]
                    nb = mv[2]
                h = tp.t.recs[i].out
                if res is not None:
                    if _scalar_tangent(res):
                        stan[h] = _scalar_of(<Tensor>res)
                        shas[h] = 1
                    else:
                        tan[h] = res
            i += 1
        out = {}
        for k in want:
            h = k
            _live(tp0, &h)
            out[k] = _new_inline(stan[h]) if shas[h] else tan.get(h)
        return out
    finally:
        free(stan)
        free(shas)
        free(need)


cdef Tape _follow_merge(Tape tp, int64_t *mv, double **stan, unsigned char **shas,
                        unsigned char **need, int64_t nb, dict tan):
    """NOTE [ Merges during a C forward sweep ]: the live tape tp was merged into;
    its arrays of nb per-handle entries (any may be NULL; stan and shas when given)
    and the dict tan moved to the live tape's numbering.  mv: (handle offset,
    record offset, the live tape's value count)."""
    cdef int64_t dh = 0, dr = 0, m
    cdef Tape L = tp
    cdef double *s2 = NULL
    cdef unsigned char *h2 = NULL
    cdef unsigned char *n2 = NULL
    while L._into is not None:
        dh += L._hoff
        dr += L._roff
        L = L._into
    m = L.t.nbufs
    if stan != NULL and stan[0] != NULL:
        s2 = <double *>malloc(<size_t>max(m, 1) * sizeof(double))
        h2 = <unsigned char *>calloc(<size_t>max(m, 1), 1)
        if s2 == NULL or h2 == NULL:
            free(s2)
            free(h2)
            raise MemoryError("cad: cannot allocate the tangents")
        memcpy(s2 + dh, stan[0], <size_t>nb * sizeof(double))
        memcpy(h2 + dh, shas[0], <size_t>nb)
    if need != NULL and need[0] != NULL:
        n2 = <unsigned char *>calloc(<size_t>max(m, 1), 1)
        if n2 == NULL:
            free(s2)
            free(h2)
            raise MemoryError("cad: cannot allocate the sweep's marks")
        memcpy(n2 + dh, need[0], <size_t>nb)
    if s2 != NULL:
        free(stan[0])
        free(shas[0])
        stan[0] = s2
        shas[0] = h2
    if n2 != NULL:
        free(need[0])
        need[0] = n2
    moved = {k + dh: v for k, v in tan.items()}
    tan.clear()
    tan.update(moved)
    mv[0] = dh
    mv[1] = dr
    mv[2] = m
    return L


# NOTE [ Array records in the forward sweep ]
# forward_sweep_c (jvp, hvp: one tangent, no batch dim, not recorded) pushes inline
# records in C and sent every array record to transforms._jvp_record, ~1.5-4 us of
# Python a record around what is a call of one engine op.  _jvp0_c makes those calls
# itself for the records they are: an elementwise op with a fused row (the same
# _ew_jvp_h the rule calls), a view (the same window over the tangent: as_strided,
# or the tangent itself for an identity view, as forward_sweep_b) and its adjoint
# unview (what a view's cotangent records: hvp sweeps it), sum (the tangent
# summed over the same axes), matmul of 1-D/2-D operands (the products _mm_batch
# forms with nb = 0, summed in the rule's order) and pow by a constant exponent
# (t * (x ** (c - 1) * c), _pow_dx's partial).  Anything else, or any case outside
# these (a device value, broadcasting, a tangent that is not a plain tensor), returns
# None and the rule decides.  test_forward_sweep_c compares the two sweeps.

def plain_push_c(object g, Tensor x0, Tensor seed, object jvp_record, bytes ew_fused):
    """transforms._plain_push for one tangent (nb = 0, a tensor seed; g without
    names, the caller checks): the same checks and the same forward_sweep_c call, without the Python around them
    (NOTE [ Plain grad ]).  (True, tangent of g or None); False: _plain_push's answer
    (g's tape needs _pushforward); None: forward_sweep_c declined, the Python sweep
    decides."""
    cdef Tensor y
    cdef Tape tp
    cdef list hs
    cdef int64_t start = -1, k
    cdef int prev, prev_names
    global cad_grad_off, cad_names_off
    if type(g) is not Tensor:
        return False
    y = <Tensor>g
    if not y._rg or y._tape is None:
        return False
    tp = _resolved(y)
    if tp._consumed or (not cad_grad_off and foreign_leaves(tp, [x0])):
        return False
    hs = leaf_handles(tp, x0)
    if not hs:
        return (True, None)
    for h in hs:
        k = first_use(tp, <cad_hid>h)
        if start < 0 or k < start:
            start = k

    def rule(rec, ts):
        return jvp_record(tp, rec, ts, 0, True)
    prev = cad_grad_off
    prev_names = cad_names_off
    cad_grad_off = 1     # (no_grad, as _plain_push's)
    cad_names_off = 1    # (names suspended, as forward_sweep's _unnamed)
    try:
        got = forward_sweep_c(tp, {h: seed for h in hs}, start, [y._h], rule, ew_fused)
    finally:
        cad_grad_off = prev
        cad_names_off = prev_names
    if got is None:
        return None
    return (True, got[y._h])


cdef object _jvp0_c(Tape tp, cad_rec *r, list ts, const unsigned char *ew, Py_ssize_t new):
    """one array record's tangent as transforms._jvp_record computes it for nb = 0 and
    fused (NOTE [ Array records in the forward sweep ]); None: the rule decides"""
    cdef int op = r.op, j, n = r.nargs
    cdef cad_hid hin[3]
    cdef cad_hid hx, hy
    cdef cad_buf *ob = &tp.t.bufs[r.out]
    cdef cad_buf *xb
    cdef int64_t *a
    cdef int64_t nd, mask
    cdef bint a1, b1
    cdef double c
    cdef object t, x, y
    if ob.flags & BUF_CUDA:
        return None
    for j in range(n):
        if ts[j] is not None and type(ts[j]) is not Tensor:
            return None
    if op < new and ew[op]:
        if n > 3:
            return None
        for j in range(n):
            hin[j] = tp.t.args[r.arg + j]
        return _ew_jvp_h(tp, op, r.out, hin, n, ts, 0)
    if op == OP_VIEW and n == 1 and r.aux >= 0:
        t = ts[0]
        if _identity_view_rec(&tp.t, r):
            return t
        a = tp.t.aux + r.aux
        nd = a[1]
        return as_strided(t, a[0], _int_tuple(a + 2, nd), _int_tuple(a + 2 + nd, nd))
    if op == OP_UNVIEW and n == 1 and r.aux >= 0:   # (a view's adjoint: linear, its own jvp)
        a = tp.t.aux + r.aux
        nd = a[1]
        return unview(ts[0], a[0], _int_tuple(a + 2, nd), _int_tuple(a + 2 + nd, nd),
                      _int_tuple(tp.t.meta + ob.meta, ob.ndim))
    if op == OP_SUM and n == 1 and r.aux >= 0:
        hx = tp.t.args[r.arg]
        if hx < 0:
            return None
        xb = &tp.t.bufs[hx]
        mask = tp.t.aux[r.aux]
        return reduce(OP_SUM, ts[0], _axes_of(xb.ndim, mask), ob.ndim == xb.ndim and xb.ndim > 0)
    if op == OP_MATMUL and n == 2 and r.aux >= 0:
        a1 = tp.t.aux[r.aux] != 0   # (read before any op runs: r points into the tape's arrays)
        b1 = tp.t.aux[r.aux + 1] != 0
        hx = r.out
        ins = _rec_ins(tp, r)
        t = _mm_tangent(tp, ins[0], ins[1], a1, b1, ts, _int_tuple(tp.t.meta + ob.meta, ob.ndim))
        if t is None:   # (NOTE [ Matmul's rules written once ])
            t = _matmul_jvp(tp, ins, hx, (a1, b1), ts, 0)
        return t
    if op == OP_POW and n == 2:
        hx = tp.t.args[r.arg]
        hy = tp.t.args[r.arg + 1]
        y = tape_node(tp, hy) if hy >= 0 and not (tp.t.bufs[hy].flags & BUF_RG) else None
        if type(y) is not Tensor or _tndim(<Tensor>y) != 0 or (<Tensor>y)._rg:
            # a tracked exponent (transforms._pow_const: _pow_dx does not apply): the
            # fused row, as _jvp_record's
            hin[0] = hx
            hin[1] = hy
            return _ew_jvp_h(tp, op, r.out, hin, 2, ts, 0)
        if ts[1] is not None or hx < 0 or not _same_info_h(tp, hx, r.out) or \
                not _tensor_like_h(tp, <Tensor>ts[0], hx):
            return None
        x = tape_node(tp, hx)
        if type(x) is not Tensor:
            return None
        c = float(y)
        if c == 0 or c == 1:
            return None
        return ts[0] * ((x ** (c - 1)) * c)
    if (op == OP_MAX or op == OP_MIN) and n == 1 and r.aux >= 0:
        return _jvp0_extreme(tp, r, ts[0])
    if op == OP_PROD or op == OP_CUMPROD or op == OP_CROSS or op == OP_XENT:
        t = _jvp0_product(tp, r, ts) if op == OP_PROD or op == OP_CUMPROD else None
        if t is None:   # (cross, xent, zeros in x: the rules' bodies, NOTE [ Product rules written once ])
            t = _product_jvp(tp, op, _rec_ins(tp, r), r.out, _rec_aux_of(tp, r), ts, 0)
        return t
    if op == OP_SETITEM:   # (NOTE [ Setitem records in the sweeps ])
        if n != 3 or ts[2] is not None or tp.t.args[r.arg + 2] < 0:
            return None
        xs = _int_tuple(tp.t.meta + ob.meta, ob.ndim)
        lin = tape_node(tp, tp.t.args[r.arg + 2])
        if type(lin) is not Tensor:
            return None
        return _setitem_jvp(<Tensor>lin, xs, ts[0], ts[1], 0)
    if op >= OP_CONCATENATE:
        return _jvp0_linear(tp, r, ts)
    return None


# NOTE [ Product rules written once ]
# prod's partial, cumprod's jvp and vjp and cross-entropy's delta (softmax minus the
# labels' one-hot) are their rules' bodies, written here once: reduce.py's
# _prod_partial, scan.py's _cumprod_jvp/_cumprod_vjp and nn.py's _xent_delta call
# these, and so do the sweeps that take the records without the rule (the plain,
# batched and recording forward sweeps; the recording and batched reverse ones), so
# both paths make the same ops in the same order.  With zeros in x, prod's and
# cumprod's expressions keep the zero entries as factors (NOTE [ cumprod's rules at
# zeros ]), exact at every order the rules were; without zeros and not recording,
# the eager fast path (two ops).  Values may carry nb leading batch dims (t, g);
# x and the output have the record's shapes.

def prod_partial(Tensor x, tuple xs, int64_t mask):
    """d prod / dx_i = the product of the others, exact with zeros present and
    differentiable again: the zero entries stay factors of the expression, so the
    second derivatives at zeros are right too (cnt: zeros in the slice)"""
    axes = _axes_of(len(xs), mask)
    zero = eq(x, 0.0)
    safe = where(zero, 1.0, x)
    pnz = reduce(OP_PROD, safe, axes, True)
    p0 = pnz / safe
    if not cad_rec_mode and not host(zero).any():   # the common case, eagerly
        return p0
    cnt = reduce(OP_SUM, cast(zero, x.dtype), axes, True)
    xz = reduce(OP_SUM, where(zero, x, 0.0), axes, True)   # the zero entries, summed
    p1 = where(zero, pnz, xz * p0)               # one zero: it times the others
    p2 = where(zero, (xz - x) * pnz, 0.0)         # two zeros: the other one
    return where(cnt == 0, p0, where(cnt == 1, p1, where(cnt == 2, p2, 0.0)))


cdef object _scan_f(int op, object v, int64_t ax, bint rev):
    """scan.py's cumsum(v, ax, reverse=rev) / cumprod(v, ax) of a float v (the rules'
    values are floats): the contiguous operand, one record"""
    c = contiguous(v)
    return bind(op, [c], (ax, 1 if rev else 0), c.shape, c.dtype, _OP_NAMES[op])


cdef bint _eager_no_zeros(Tensor x):
    return not cad_rec_mode and not host(eq(x, 0.0)).any()


cdef tuple _zero_parts(Tensor x, int64_t xa):
    zero = eq(x, 0.0)
    zf = cast(zero, x.dtype)
    c = _scan_f(OP_CUMSUM, zf, xa, False)
    first, second = where(c == 1, zero, False), where(c == 2, zero, False)
    safe = where(zero, 1.0, x)
    return zero, c, first, second, safe, _scan_f(OP_CUMPROD, safe, xa, False)


def cumprod_vjp(Tensor x, object out, object g, int nb, int64_t xa):
    """the cotangent of cumprod's x (axis xa) from g (nb more dims than x)"""
    cdef int64_t ax = xa + nb
    if _eager_no_zeros(x):
        return _scan_f(OP_CUMSUM, g * out, ax, True) / x
    zero, c, first, second, safe, Q = _zero_parts(x, xa)
    gQ = g * Q
    R0 = _scan_f(OP_CUMSUM, where(c == 0, gQ, 0.0), ax, True)
    R1 = _scan_f(OP_CUMSUM, where(c == 1, gQ, 0.0), ax, True)
    R2 = _scan_f(OP_CUMSUM, where(c == 2, gQ, 0.0), ax, True)
    XF = reduce(OP_SUM, where(first, x, 0.0), (xa,), True)
    XS = reduce(OP_SUM, where(second, x, 0.0), (xa,), True)
    return where(first, R1 + XS * R2, where(second, XF * R2, where(zero, 0.0, (R0 + XF * R1) / safe)))


def cumprod_jvp(Tensor x, object out, object t, int nb, int64_t xa):
    """the tangent of cumprod's output (axis xa) from x's tangent t (nb more dims)"""
    cdef int64_t ax = xa + nb
    if _eager_no_zeros(x):
        return out * _scan_f(OP_CUMSUM, t / x, ax, False)
    zero, c, first, second, safe, Q = _zero_parts(x, xa)
    s = _scan_f(OP_CUMSUM, t / safe, ax, False)
    XF = _scan_f(OP_CUMSUM, where(first, x, 0.0), xa, False)
    XS = _scan_f(OP_CUMSUM, where(second, x, 0.0), xa, False)
    TF = _scan_f(OP_CUMSUM, where(first, t, 0.0), ax, False)
    TS = _scan_f(OP_CUMSUM, where(second, t, 0.0), ax, False)
    return Q * where(c == 0, s, where(c == 1, TF + XF * (s - TF), where(c == 2, XS * TF + XF * TS, 0.0)))


def xent_delta(Tensor z, Tensor lab):
    """softmax(z) - onehot(labels): d nll / d z for logits z (N, C), as reduce.py's
    softmax over the last axis computes it (the max shifted out as a constant,
    reduce.py's _shift)"""
    global cad_grad_off
    cdef int prev = cad_grad_off
    onehot = cast(eq(reshape(lab, lab.shape + (1,)), const_on(_np.arange(z.shape[1]), z._dev)), z.dtype)
    cad_grad_off = 1   # (_shift's no_grad)
    try:
        if z.shape[1] == 0:
            m = reduce(OP_SUM, z.detach(), (1,), True)
        else:
            m = reduce(OP_MAX, z.detach(), (1,), True)
            m = where(isfinite(m), m, 0.0)
    finally:
        cad_grad_off = prev
    e = exp(z - m)
    return e / reduce(OP_SUM, e, (1,), True) - onehot


cdef object _cross_of(object a, object b, tuple shape, object dt):
    """linalg.py's cross(a, b) for float operands of dtype dt along their last axis,
    a batch (a dim more) on one side: the other broadcast to shape, both contiguous,
    one record of the kernel"""
    if (<Tensor>a).shape != shape:
        a = expand(a, shape)
    if (<Tensor>b).shape != shape:
        b = expand(b, shape)
    return bind(OP_CROSS, [contiguous(a), contiguous(b)], (), shape, dt, "cross")


cdef bint _cross_ok(Tensor t, Tensor other, int nb):
    """can _cross_of take t (nb batch dims) against other: one float dtype, t's
    shape other's with the batch dims in front"""
    return t._dtype == other._dtype and _isfloat(t._dtype) and _tndim(t) == _tndim(other) + nb \
        and t.shape[nb:] == other.shape


cdef object _product_jvp(Tape tp, int op, tuple ins, object out, tuple aux, list ts, int nb):
    """the tangent of a prod, cumprod, cross or xent record from its inputs' tangents
    ts (tensors with nb leading batch dims, on the CPU): the ops its rule makes
    (reduce.py's _prod_jvp through _collapse, scan.py's _cumprod_jvp, the bilinear
    rule over _cross_apply, nn.py's _xent_jvp); None: the rule decides (nothing has
    been recorded then).  Every sweep's product records (NOTE [ Product rules
    written once ])."""
    cdef Py_ssize_t n = len(ins), j
    cdef tuple xs
    cdef list others
    cdef object t, x, o, c, acc
    for j in range(n):
        t = ts[j]
        if t is not None and (type(t) is not Tensor or (<Tensor>t)._dev != 0 or _tndim(<Tensor>t) < nb):
            return None
    if op == OP_CROSS:
        if n != 2:
            return None
        others = [None, None]
        for j in range(2):
            if ts[j] is None:
                continue
            if ins[1 - j] < 0:
                return None
            o = tape_node(tp, ins[1 - j])
            if type(o) is not Tensor or not _cross_ok(<Tensor>ts[j], <Tensor>o, nb):
                return None
            others[j] = o
        acc = None
        for j in range(2):
            if others[j] is None:
                continue
            t = ts[j]
            if j == 0:
                c = _cross_of(t, others[j], (<Tensor>t).shape, (<Tensor>t).dtype)
            else:
                c = _cross_of(others[j], t, (<Tensor>t).shape, (<Tensor>t).dtype)
            acc = c if acc is None else acc + c
        return acc
    t = ts[0]
    if t is None or ins[0] < 0 or n != (2 if op == OP_XENT else 1):
        return None
    x = tape_node(tp, ins[0])
    if type(x) is not Tensor or (<Tensor>x)._dev != 0 or (<Tensor>t).shape[nb:] != (<Tensor>x).shape:
        return None
    if op == OP_XENT:
        if ts[1] is not None or ins[1] < 0:
            return None
        o = tape_node(tp, ins[1])
        if type(o) is not Tensor:
            return None
        return reduce(OP_SUM, t * xent_delta(<Tensor>x, <Tensor>o), (_tndim(<Tensor>t) - 1,), False)
    if op == OP_PROD:
        if len(aux) != 1:
            return None
        xs = (<Tensor>x).shape
        keep = len(<tuple>tape_info(tp, out)[0]) == len(xs) and len(xs) > 0
        return reduce(OP_SUM, t * prod_partial(<Tensor>x, xs, aux[0]), _axes_of(len(xs), aux[0], nb), keep)
    if op == OP_CUMPROD:
        o = tape_node(tp, out)
        if len(aux) != 2 or type(o) is not Tensor or not _isfloat((<Tensor>t)._dtype):
            return None
        return cumprod_jvp(<Tensor>x, o, t, nb, aux[0])
    return None


cdef list _product_vjp(Tape tp, int op, tuple ins, object out, tuple aux, Tensor g, set dep, int nb):
    """the cotangents of a prod, cumprod, cross or xent record from g (nb leading
    batch dims, on the CPU): the ops its rule makes (reduce.py's _prod_vjp, scan.py's
    _cumprod_vjp, linalg.py's _cross_vjp, nn.py's _xent_vjp); None: the rule decides
    (nothing has been recorded then)"""
    cdef Py_ssize_t n = len(ins), j
    cdef tuple xs, bsh
    cdef object x, o
    if g._dev != 0 or _tndim(g) < nb:
        return None
    bsh = g.shape[:nb]
    if op == OP_CROSS:
        if n != 2 or ins[0] < 0 or ins[1] < 0:
            return None
        x = tape_node(tp, ins[0])
        o = tape_node(tp, ins[1])
        if type(x) is not Tensor or type(o) is not Tensor or not _cross_ok(g, <Tensor>x, nb) \
                or not _cross_ok(g, <Tensor>o, nb):
            return None
        return [_cross_of(o, g, g.shape, g.dtype) if _wants(tp, ins[0], dep) else None,
                _cross_of(g, x, g.shape, g.dtype) if _wants(tp, ins[1], dep) else None]
    if ins[0] < 0 or n != (2 if op == OP_XENT else 1):
        return None
    if ins[0] not in dep if op != OP_CUMPROD else not _wants(tp, ins[0], dep):
        return [None] * n   # (cumprod's rule asks ctx.wants; the others' results reach dep only)
    x = tape_node(tp, ins[0])
    if type(x) is not Tensor or (<Tensor>x)._dev != 0:
        return None
    xs = (<Tensor>x).shape
    if op == OP_XENT:
        o = tape_node(tp, ins[1]) if ins[1] >= 0 else None
        if type(o) is not Tensor or g.shape[nb:] != xs[:1]:
            return None
        return [reshape(g, g.shape + (1,)) * xent_delta(<Tensor>x, <Tensor>o), None]
    if op == OP_PROD:
        if len(aux) != 1:
            return None
        return [expand(reshape(g, bsh + _kept_of(xs, aux[0])), bsh + xs) * prod_partial(<Tensor>x, xs, aux[0])]
    if op == OP_CUMPROD:
        o = tape_node(tp, out)
        if len(aux) != 2 or type(o) is not Tensor or g.shape[nb:] != xs or not _isfloat(g._dtype):
            return None
        return [cumprod_vjp(<Tensor>x, o, g, nb, aux[0])]
    return None


cdef tuple _rec_ins(Tape tp, cad_rec *r):
    """a record's input handles"""
    cdef int j
    return tuple([tp.t.args[r.arg + j] for j in range(r.nargs)])


cdef tuple _rec_aux_of(Tape tp, cad_rec *r):
    """a product record's aux (prod: the axis mask; cumprod: axis and direction;
    cross and xent: none)"""
    cdef int k = 1 if r.op == OP_PROD else 2 if r.op == OP_CUMPROD else 0
    return _int_tuple(tp.t.aux + r.aux, k) if k and r.aux >= 0 else ()


cdef object _jvp0_product(Tape tp, cad_rec *r, list ts):
    """_jvp0_c for prod and cumprod of an x without zeros (their rules' eager fast
    path: reduce.py's _prod_partial p0 = prod(x) / x, the tangent times it summed over
    the reduced axes; scan.py's out * cumsum(t / x)).  Not for a tracked tangent or x
    (the rules record); None: _product_jvp decides (zeros in x among them)."""
    cdef int op = r.op, n = r.nargs
    cdef cad_hid hx = tp.t.args[r.arg], ho = r.out
    cdef cad_buf *xb
    cdef int64_t mask, ax
    cdef int xnd, ond = tp.t.bufs[ho].ndim
    cdef object t, x, c
    t = ts[0]
    if n != 1 or t is None or hx < 0 or r.aux < 0 or _mode1(<Tensor>t):
        return None
    xb = &tp.t.bufs[hx]
    xnd = xb.ndim   # (read before any op: the tape's arrays may move)
    mask = tp.t.aux[r.aux]
    if xnd == 0 or not _tensor_like_h(tp, <Tensor>t, hx):
        return None
    x = tape_node(tp, hx)
    if type(x) is not Tensor or _mode1(<Tensor>x) or _np.any(_arr_of(<Tensor>x) == 0):
        return None
    if op == OP_PROD:
        axes = _axes_of(xnd, mask)
        return reduce(OP_SUM, t * (reduce(OP_PROD, x, axes, True) / x), axes, ond == xnd)
    if tp.t.aux[r.aux + 1] != 0:
        return None
    o = tape_node(tp, ho)
    if type(o) is not Tensor:
        return None
    ax = mask
    c = contiguous(t / x)
    return o * bind(OP_CUMSUM, [c], (ax, 0), c.shape, c.dtype, "cumsum")


cdef tuple _axes_of(int64_t nd, int64_t mask, int shift=0):
    """a reduction's axes from its mask (reduce.py's _axes_of), each shift more"""
    cdef int64_t d
    return tuple([d + shift for d in range(nd) if (mask >> d) & 1])


cdef tuple _kept_of(tuple xs, int64_t mask):
    """x's shape with the reduced axes kept as 1 (reduce.py's _kept)"""
    cdef Py_ssize_t d
    return tuple([1 if (mask >> d) & 1 else xs[d] for d in range(len(xs))])


cdef object _extreme_w(Tensor x, object o, tuple xs, int64_t mask):
    """reduce.py's _extreme_weights: where x attains its max/min o, 1/count (ties
    share), the same ops in the same order"""
    w = cast(eq(x, reshape(o, _kept_of(xs, mask))), x.dtype)
    return w / reduce(OP_SUM, w, _axes_of(len(xs), mask), True)


cdef object _jvp0_extreme(Tape tp, cad_rec *r, object t):
    """_jvp0_c for max/min: the tangent where x attains the extreme, ties sharing
    (1/count), summed over the reduced axes: reduce.py's _max_jvp and
    _extreme_weights, the same ops in the same order"""
    cdef cad_hid hx = tp.t.args[r.arg], ho = r.out
    cdef cad_buf *xb
    cdef int64_t mask = tp.t.aux[r.aux]
    cdef int d, xnd, ond = tp.t.bufs[ho].ndim
    if t is None or hx < 0 or _mode1(<Tensor>t):
        return None
    xb = &tp.t.bufs[hx]
    xnd = xb.ndim   # (read before any op: an op on a tracked x or output records, and the
    #                  tape's arrays may move)
    if not _dims_are(t, 0, &tp.t, xb, 0):
        return None
    x = tape_node(tp, hx)
    o = tape_node(tp, ho)
    if type(x) is not Tensor or type(o) is not Tensor:
        return None
    xs = _int_tuple(tp.t.meta + xb.meta, xnd)
    return reduce(OP_SUM, t * _extreme_w(<Tensor>x, o, xs, mask), _axes_of(xnd, mask), ond == xnd and xnd > 0)


cdef object _jvp0_linear(Tape tp, cad_rec *r, list ts):
    """_jvp0_c for the ops linear in their differentiable inputs, whose jvp is the op
    itself on the tangents with the record's aux (NOTE [ Linear and bilinear ops ]):
    gather and scatter (the same kernel on the tangent and the tape's positions, as
    their rules' gather/scatter compute it for nb = 0), concatenate (zeros for an input
    without a tangent, as the rule's), a float cast and cumsum (its kernel on the
    contiguous tangent, as the rule's cumsum binds it).  Not for a tracked tangent
    (the rule records it); None: the rule decides."""
    cdef int op = r.op, j, n = r.nargs
    cdef cad_hid hx, hp
    cdef cad_buf *ob = &tp.t.bufs[r.out]
    cdef cad_buf *xb
    cdef int64_t ax[3]
    cdef Tensor t, res, pos
    cdef list parts
    for j in range(n):
        if ts[j] is not None and _mode1(<Tensor>ts[j]):
            return None
    if op == OP_CAST and n == 1 and ts[0] is not None and _isfloat(ob.dtype):
        return cast(ts[0], _DTYPES[ob.dtype])
    if r.aux < 0:
        return None
    if op == OP_GATHER or op == OP_SCATTER:
        if n != 2 or ts[0] is None or ts[1] is not None:
            return None
        hx = tp.t.args[r.arg]
        hp = tp.t.args[r.arg + 1]
        if hx < 0 or hp < 0 or tp.t.bufs[hp].dtype != CAD_I64:
            return None
        t = <Tensor>ts[0]
        xb = &tp.t.bufs[hx]
        if not _dims_are(t, 0, &tp.t, xb, 0) or not _isfloat(t._dtype):
            return None
        for j in range(3):
            ax[j] = tp.t.aux[r.aux + j]
        pos = tape_node(tp, hp)
        if type(pos) is not Tensor:
            return None
        res = _new_out_shape(0, _int_tuple(tp.t.meta + ob.meta, ob.ndim), t._dtype, _OP_NAMES[op])
        _eager2(op, res, _value_contig(t), _value_contig(pos), ax, 3, _OP_NAMES[op])
        return res
    if op == OP_CONCATENATE:
        parts = []
        for j in range(n):
            hx = tp.t.args[r.arg + j]
            if ts[j] is not None:
                parts.append(ts[j])
            elif hx < 0:
                return None
            else:
                xb = &tp.t.bufs[hx]
                parts.append(_wrap(_np.zeros(_int_tuple(tp.t.meta + xb.meta, xb.ndim),
                                             dtype=_DTYPES[ob.dtype])))
        return concat(parts, <int>tp.t.aux[r.aux])
    if op == OP_CUMSUM and n == 1 and ts[0] is not None:
        t = <Tensor>ts[0]
        hx = tp.t.args[r.arg]
        if hx < 0 or _tndim(t) == 0 or not _isfloat(t._dtype) or \
                not _dims_are(t, 0, &tp.t, &tp.t.bufs[hx], 0):
            return None
        return bind(OP_CUMSUM, [contiguous(t)], (tp.t.aux[r.aux], tp.t.aux[r.aux + 1]),
                    t.shape, t.dtype, "cumsum")
    return None


# NOTE [ Batch classes ]
# jacrev's and jacfwd's structured batches (cad/ops/_rules.py's Diag, transforms.py's
# _Scaled) are Python subclasses of these two cdef classes: the fields live in C
# slots and construction runs no Python __init__ (~0.2 us a batch; the batched forward
# sweep makes one per elementwise record, W7's Hessian about ten).  The methods stay
# in Python with the rest of the rules.

cdef class DiagBase:
    """fields of a diagonal batch (cad.ops._rules.Diag): v, and unit (v is all ones)"""
    cdef public object v
    cdef public bint unit

    def __init__(self, v, unit=False):
        self.v = v
        self.unit = unit


cdef class ScaledBase:
    """fields of a scaled batch m * v (transforms._Scaled, NOTE [ Scaled tangents ])"""
    cdef public object m
    cdef public object v

    def __init__(self, m, v):
        self.m = m
        self.v = v


cdef bint _dims_are(object t, int skip, cad_tape *tt, cad_buf *b, int64_t lead):
    """is t a Tensor of shape (lead,)*skip + b's shape (lead < 0: any leading size)?"""
    cdef Tensor x
    cdef int d
    cdef cnp.npy_intp *dims
    if type(t) is not Tensor:
        return False
    x = <Tensor>t
    if _tndim(x) != skip + b.ndim:
        return False
    dims = _tdims(x)
    for d in range(skip):
        if lead >= 0 and dims[d] != lead:
            return False
    for d in range(b.ndim):
        if dims[skip + d] != tt.meta[b.meta + d]:
            return False
    return True


cdef object _ONE_F64 = None


cdef inline object _one_f64():
    """one shared inline 1.0 (float64): a unit factor the jvp rows only read"""
    global _ONE_F64
    if _ONE_F64 is None:
        _ONE_F64 = _new_inline(1.0)
    return _ONE_F64


cdef bint _same_shape_buf(cad_tape *t, cad_buf *a, cad_buf *b) noexcept:
    cdef int d
    if a.ndim != b.ndim:
        return False
    for d in range(a.ndim):
        if t.meta[a.meta + d] != t.meta[b.meta + d]:
            return False
    return True


cdef bint _identity_view_rec(cad_tape *t, cad_rec *r) noexcept:
    """a view record that is its input as it is (offset 0, the input's shape, the
    contiguous strides: the fresh inputs of a transform, a reshape to the same shape)"""
    cdef int64_t *a = t.aux + r.aux
    cdef cad_buf *x
    cdef cad_hid h = t.args[r.arg]
    cdef int64_t nd, d, want = 1
    if r.aux < 0 or h < 0 or a[0] != 0:
        return False
    x = &t.bufs[h]
    nd = a[1]
    if nd != x.ndim:
        return False
    for d in range(nd - 1, -1, -1):
        if a[2 + d] != t.meta[x.meta + d]:
            return False
        if a[2 + d] != 1 and a[2 + nd + d] != want:
            return False
        want *= a[2 + d]
    return True


# NOTE [ Matmul's rules written once ]
# matmul's apply (a product with one operand a batch: nb leading dims, or a Diag)
# and its vjp were linalg.py's _mm_batch and _matmul_vjp; they are mm_batch and
# matmul_vjp here, which linalg.py's rules call, and so do the sweeps for the
# products their own cases do not take (_matmul_jvp: the bilinear jvp over
# mm_batch, _rules.py's bilinear_jvp; _matmul_vjp_g): a matrix operand's batch in
# jacfwd/hessian (X @ reshape(w, ...)), batched (3-D) products, outer products.
# The own cases (_mm_tangent/_mm_term for 1-D/2-D tangents, _mm_batch_c and
# _mv_vjp_b for a vector's batch, _matmul_vjp_c for 1-D/2-D cotangents) are the same
# products read straight off the record with typed dims: on jvp's and hvp's hot
# path, routing W7's matmul through _matmul_jvp cost ~1 us a call (jvp of W7's f
# at n = 32 14.1 -> 15.1 us), so they stay.

cdef object _swap_last(object t):
    """the last two dims swapped (linalg.py's _swap)"""
    cdef int nd = t.ndim
    return transpose(t, tuple(range(nd - 2)) + (nd - 1, nd - 2))


cdef object _unsq_at(object t, int axis):
    shape = list(t.shape)
    shape.insert(axis if axis >= 0 else len(shape) + 1 + axis, 1)
    return reshape(t, tuple(shape))


cdef object _sq_at(object t, int axis):
    shape = list(t.shape)
    del shape[axis if axis >= 0 else len(shape) + axis]   # (no wraparound: setup.py)
    return reshape(t, tuple(shape))


cdef object _rows_times_c(object g, object m):
    """g (..., n) @ m (n, k) as one GEMM over all leading dims of g"""
    cdef int64_t rows = 1
    cdef tuple gs = g.shape, ms = m.shape
    if len(gs) <= 2:
        return matmul(g, m)
    lead = gs[:len(gs) - 1]
    for d in lead:
        rows *= d
    return reshape(matmul(reshape(g, (rows, gs[len(gs) - 1])), m), lead + (ms[len(ms) - 1],))


cpdef object mm_batch(int i, object t, object other, bint a1, bint b1, int nb):
    """matmul(a, b) with operand i the batch t (nb leading dims, or a Diag over a 1-D
    value) and the other operand the value `other`; a1, b1: which operands are 1-D.
    The one place that knows how a batched product is best run: the batch folded
    into the rows of one GEMM, and a scaled identity batch times a matrix as a row
    scaling (NOTE [ Linear and bilinear ops ])."""
    cdef int own, obr, mine, oth
    if isinstance(t, DiagBase):
        v = (<DiagBase>t).v
        if v.ndim == 1 and other.ndim == 2 and ((i == 0 and a1 and not b1) or
                                                                   (i == 1 and b1 and not a1)):
            # direction j: v_j times row j of B (a (k,) @ B) or column j of A (A @ b (k,))
            d = other if i == 0 else _swap_last(other)
            return d if (<DiagBase>t).unit else reshape(v, (v.size, 1)) * d
        t = t.dense()
    if i == 0 and not b1 and other.ndim == 2:
        return _rows_times_c(t, other)                         # one GEMM
    if i == 1 and b1 and not a1 and other.ndim == 2:
        return _rows_times_c(t, _swap_last(other))             # A (m, k) @ a batch of b (k,)
    # the batch as (batched) matrices whose own batch dims line up with the output's
    mine, oth = (a1, b1) if i == 0 else (b1, a1)
    own = t.ndim - nb - (1 if mine else 2)
    obr = max(own, other.ndim - (1 if oth else 2))
    if nb and own < obr:
        sh = t.shape
        t = reshape(t, sh[:nb] + (1,) * (obr - own) + sh[nb:])
    if i == 0:
        left, right = (_unsq_at(t, -2) if a1 else t), (_unsq_at(other, -1) if b1 else other)
    else:
        left, right = (_unsq_at(other, -2) if a1 else other), (_unsq_at(t, -1) if b1 else t)
    c = _rows_times_c(left, right) if i == 0 and right.ndim == 2 else matmul(left, right)
    if b1:
        c = _sq_at(c, -1)
    if a1:
        c = _sq_at(c, -1 if b1 else -2)
    return c


cdef object _dense_of(object g):
    return g.dense() if isinstance(g, DiagBase) else g


cpdef list matmul_vjp(object g, object A, object B, bint a1, bint b1, int nb, bint w0, bint w1, tuple s0,
               tuple s1):
    """the transposes of a -> a @ B and b -> A @ b: gA = g @ B^T, gB = A^T @ g, summed
    over broadcast dims (s0, s1: the operands' shapes; B read only for w0, A for w1;
    the jvp is derived: NOTE [ Linear and bilinear ops ])"""
    cdef list res = [None, None]
    if w0:
        if b1:   # an outer product: (.., m, 1) * (k,)
            ga = _unsq_at(_dense_of(g), -1) * B
        else:
            ga = mm_batch(0, g, _swap_last(B), a1, False, nb)
        res[0] = _unbroadcast(ga, s0, nb)
    if w1:
        if a1 and b1:
            gb = _unsq_at(_dense_of(g), -1) * A                    # (.., 1) * (k,)
        elif a1:
            gb = _unsq_at(A, -1) * _unsq_at(_dense_of(g), -2)      # (k, 1) * (.., 1, n)
        elif b1:
            gb = mm_batch(0, g, A, True, False, nb)                # g (.., m) @ A (.., m, k)
        else:
            gb = mm_batch(1, g, _swap_last(A), False, False, nb)
        res[1] = _unbroadcast(gb, s1, nb)
    return res


cdef object _matmul_jvp(Tape tp, tuple ins, object out, tuple aux, list ts, int nb):
    """a matmul record's tangent from its operands' tangents (nb batch dims; Diag,
    scaled (made dense, as _jvp_record makes them) or dense): the bilinear jvp over
    mm_batch, expanded to the output (full_shape); None: the rule decides"""
    cdef int i
    cdef list others = [None, None], tt = [None, None]
    cdef object acc = None, t, o
    if len(ins) != 2 or len(aux) != 2 or len(ts) != 2:
        return None
    for i in range(2):
        t = ts[i]
        if t is None:
            continue
        if isinstance(t, ScaledBase):
            t = t.dense()
        if isinstance(t, DiagBase):
            if type((<DiagBase>t).v) is not Tensor or (<Tensor>(<DiagBase>t).v)._dev != 0:
                return None
        elif type(t) is not Tensor or (<Tensor>t)._dev != 0:
            return None
        if ins[1 - i] < 0:
            return None
        o = tape_node(tp, ins[1 - i])
        if type(o) is not Tensor or (<Tensor>o)._dev != 0:
            return None
        others[i] = o
        tt[i] = t
    for i in range(2):
        if tt[i] is None:
            continue
        c = mm_batch(i, tt[i], others[i], aux[0] != 0, aux[1] != 0, nb)
        acc = c if acc is None else acc + c
    if acc is None:
        return None
    want = (<Tensor>acc).shape[:nb] + <tuple>tape_info(tp, out)[0]
    return acc if (<Tensor>acc).shape == want else expand(acc, want)


cdef list _matmul_vjp_g(Tape tp, tuple ins, tuple aux, object g, set dep, int nb):
    """a matmul record's cotangents (g: nb batch dims, or a Diag) by matmul_vjp, as
    its rule computes them; None: the rule decides"""
    cdef bint w0, w1
    cdef object A = None, B = None
    if len(ins) != 2 or len(aux) != 2:
        return None
    if isinstance(g, DiagBase):
        if type((<DiagBase>g).v) is not Tensor or (<Tensor>(<DiagBase>g).v)._dev != 0:
            return None
    elif type(g) is not Tensor or (<Tensor>g)._dev != 0:
        return None
    w0 = _wants(tp, ins[0], dep)
    w1 = _wants(tp, ins[1], dep)
    if w0:
        B = tape_node(tp, ins[1]) if ins[1] >= 0 else None
        if type(B) is not Tensor or (<Tensor>B)._dev != 0:
            return None
    if w1:
        A = tape_node(tp, ins[0]) if ins[0] >= 0 else None
        if type(A) is not Tensor or (<Tensor>A)._dev != 0:
            return None
    return matmul_vjp(g, A, B, aux[0] != 0, aux[1] != 0, nb, w0, w1,
                      tape_info(tp, ins[0])[0] if w0 else (), tape_info(tp, ins[1])[0] if w1 else ())


cdef object _mm_batch_c(Tape tp, cad_rec *r, list ts, object Diag, object Scaled):
    """a matrix-vector record's batch of tangents without its Python rule, the cases of
    cad/ops/linalg.py's _mm_batch it reaches most (W7, W6): the vector operand carries
    the batch and the other operand is a matrix value.  A @ b's batch for b is the batch
    times A.T, a @ B's for a the batch times B, one GEMM; a diagonal batch is a row
    scaling of that matrix (the matrix itself for jacfwd's seed).  None: the rule."""
    cdef int i, k = -1
    cdef int64_t a1, b1
    cdef object t, other, d, v
    if r.nargs != 2 or r.aux < 0:
        return None
    for i in range(2):
        if ts[i] is not None:
            if k >= 0:
                return None
            k = i
    a1 = tp.t.aux[r.aux]
    b1 = tp.t.aux[r.aux + 1]
    if not ((k == 0 and a1 and not b1) or (k == 1 and b1 and not a1)):
        return None
    if tp.t.args[r.arg + 1 - k] < 0:
        return None
    other = tape_node(tp, tp.t.args[r.arg + 1 - k])
    if type(other) is not Tensor or len((<Tensor>other).shape) != 2:
        return None
    d = other if k == 0 else transpose(other, (1, 0))
    t = ts[k]
    if type(t) is Diag:
        v = (<DiagBase>t).v
        if type(v) is not Tensor or _tndim(<Tensor>v) != 1:
            return None
        return d if (<DiagBase>t).unit else reshape(v, ((<Tensor>v).size, 1)) * d
    if type(t) is Scaled:   # (its dense(): m * v)
        t = (<ScaledBase>t).m if (<ScaledBase>t).v is None else (<ScaledBase>t).m * (<ScaledBase>t).v
    if type(t) is not Tensor or _tndim(<Tensor>t) != 2:
        return None
    return matmul(t, d)


cdef object _ew_batch(Tape tp, cad_rec *r, list ts, object Diag, object Scaled):
    """an elementwise record's batch of tangents (one leading batch dim) without its
    Python rule: as transforms._jvp_record's fused paths (NOTE [ Scaled tangents ]:
    dense batches and m * v of one m give m * (sum v_i d_i); diagonal batches give a
    diagonal one; diagonal and dense mixed give the dense row plus the diagonal's
    values, _mixed_ew_fused; a 0-d output, which _scaled_ew declines, its dense
    batches through the row; an input with a tangent broadcast to the output, which
    every structured path declines, its batches made dense through the row).  None:
    the rule decides (a Diag over a 0-d value, another layout, dtype or device, no
    fused row)."""
    cdef int j, ndg = 0, nsc = 0, nde = 0
    cdef bint same = True, bcast = False
    cdef cad_buf *ob = &tp.t.bufs[r.out]
    cdef cad_hid h
    cdef object m = None, tm, t, v, ones = None
    cdef list vs
    cdef cad_hid hin[3]   # (copied: a dense() below may record and grow the tape's arrays)
    cdef cad_hid out = r.out
    cdef int op = r.op, nargs = r.nargs
    cdef DiagBase dg
    cdef ScaledBase sc
    if nargs > 3:
        return None
    for j in range(nargs):
        hin[j] = tp.t.args[r.arg + j]
    if ob.ndim == 0:   # (a scalar of loop code: _jvp_record's fused row on the dense batches)
        vs = []
        for t in ts:
            if t is not None and type(t) is Diag:
                return None
            vs.append(t.dense() if t is not None and type(t) is Scaled else t)
        return _ew_jvp_h(tp, op, out, hin, nargs, vs, 1)
    for j in range(nargs):
        t = ts[j]
        if t is None:
            continue
        h = hin[j]
        if not _same_shape_buf(&tp.t, &tp.t.bufs[h], ob):
            bcast = True
        if type(t) is Diag:
            ndg += 1
            continue
        if type(t) is Scaled:
            nsc += 1
            tm = (<ScaledBase>t).m
        elif type(t) is Tensor:
            nde += 1
            tm = t
        else:
            return None
        if m is None:
            m = tm
        elif tm is not m:
            same = False
    vs = []
    if bcast:
        # an input with a tangent broadcast to the output: _jvp_record's structured
        # paths all decline it (_scaled_ew, _diag_ew_fused, _mixed_ew_fused, _diag_jvp,
        # _diag_plus), so its batches are made dense (the scaled ones first) and go
        # through the fused row with the batch dim, as its tape.ew_jvp(..., 1)
        for t in ts:
            vs.append(t.dense() if t is not None and type(t) is Scaled else t)
        for j in range(nargs):
            if vs[j] is not None and type(vs[j]) is Diag:
                vs[j] = vs[j].dense()
            if vs[j] is not None and type(vs[j]) is not Tensor:
                return None
        return _ew_jvp_h(tp, op, out, hin, nargs, vs, 1)
    if ndg == 0:
        if same:
            if not _dims_are(m, 1, &tp.t, ob, -1):
                return None
            for t in ts:
                if t is None:
                    vs.append(None)
                elif type(t) is Scaled:
                    vs.append((<ScaledBase>t).v)
                else:
                    if ones is None:   # (float64: the shared inline 1.0, broadcast by the row)
                        ones = _one_f64() if (<Tensor>m)._dtype == CAD_F64 else \
                            _st(<Tensor>m).full(_int_tuple(tp.t.meta + ob.meta, ob.ndim),
                                                (<Tensor>m)._dtype, 1)
                    vs.append(ones)
            v = _ew_jvp_h(tp, op, out, hin, nargs, vs, 0)
            if v is None:
                return None
            sc = ScaledBase.__new__(Scaled)   # (NOTE [ Batch classes ]: no Python __init__)
            sc.m = m
            sc.v = v
            return sc
        for t in ts:   # batches of different m: dense, through the row
            vs.append(t.dense() if type(t) is Scaled else t)
        return _ew_jvp_h(tp, op, out, hin, nargs, vs, 1)
    for t in ts:   # the diagonal batches' values (all of them, or the mixed case's)
        if type(t) is Diag:
            if not _dims_are((<DiagBase>t).v, 0, &tp.t, ob, -1):
                return None
            vs.append((<DiagBase>t).v)
        else:
            vs.append(None)
    v = _ew_jvp_h(tp, op, out, hin, nargs, vs, 0)
    if v is None:
        return None
    if nsc == 0 and nde == 0:
        dg = DiagBase.__new__(Diag)
        dg.v = v
        return dg
    vs = []   # (device values: _ew_jvp and add_diag_fresh decline them)
    for t in ts:   # the dense ones, in the batch layout (m,) + shape, m the output's size
        if t is None or type(t) is Diag:
            vs.append(None)
        else:
            if type(t) is Scaled:
                t = t.dense()
                ob = &tp.t.bufs[out]   # (dense() may have recorded and grown the arrays)
            if not _dims_are(t, 1, &tp.t, ob, ob.size):
                return None
            vs.append(t)
    res = _ew_jvp_h(tp, op, out, hin, nargs, vs, 1)
    if res is None or not add_diag_fresh(<Tensor>res, <Tensor>v):
        return None
    return res


cdef object _pow_batch(Tape tp, cad_rec *r, list ts, object Diag, object Scaled):
    """a pow record's batch of tangents as transforms._jvp_record makes it: by the
    fused row (_ew_batch) where _pow_dx does not apply (transforms._fused_row); for a
    constant exponent, where _jvp_record's fused and unfused paths are one (_pow_dx's
    partial d = c x ** (c - 1) scaling a Diag's values, a scaled batch's v, a dense
    batch m as m * d, or the rule's dense path), by _ew_batch_r; None: the rule
    decides"""
    if not _pow_const_h(tp, _rec_ins(tp, r)):
        return _ew_batch(tp, r, ts, Diag, Scaled)
    return _ew_batch_r(tp, r, ts, Diag, Scaled)


# NOTE [ Recorded tangent batches ]
# jacfwd inside another transform (jacfwd(jacfwd(f)), jacrev(jacfwd(f)), a jacfwd
# that closes over a tracked value) pushes a batch of tangents that must record: no
# fused C row (not differentiable).  transforms.forward_sweep ran that sweep in
# Python, every record by its rule (_jvp_record with fused False).  forward_sweep_b
# takes it with fused=False: an elementwise record computes its partials as the
# rule's partial_rule does (the programs on tensors, _pow_dx for pow by a constant,
# 1 and -1 as floats) and combines them with the batches as _jvp_record does (m * v
# kept scaled, _scaled_ew; diagonal batches kept diagonal, _diag_jvp; the rest dense,
# the ew rule's lift, products and full_shape), in the same order; the other records
# take the batched sweep's own paths, which make the same engine ops recording or
# not.  What it declines (a mixed diagonal and dense add, where/clip, a value not
# kept) goes to the rule.

cdef int _triv(int op, int j) noexcept:
    """_sg_triv for every elementwise op: where's and clip's (three inputs, no
    programs) are nontrivial but where's condition (not differentiable)"""
    if op == OP_WHERE or op == OP_CLIP:
        return 2 if op == OP_WHERE and j == 0 else 0
    return _sg_triv[op][j]


cdef object _partial_r(Tape tp, int op, int j, tuple ins, object out, int odt):
    """d out / d input j of an elementwise record as the rule's partial_rule gives it:
    1.0 or -1.0 for a trivial partial, elementwise.py's _pow_dx for pow's x by a
    constant, else the partial's program on tensors cast to the output's dtype"""
    cdef int tr = _triv(op, j)
    cdef int s
    cdef double c
    cdef list slots
    if tr == 1:
        return 1.0
    if tr == -1:
        return -1.0
    if op == OP_WHERE or op == OP_CLIP:
        return _rule_partial(tp, op, j, ins, out, odt)
    if op == OP_POW and j == 0 and _pow_const_h(tp, ins):
        x = tape_node(tp, ins[0])
        c = float(tape_node(tp, ins[1]))
        if c == 0:
            return _ew2(OP_MUL, ones_like_value(<Tensor>x), 0.0)
        if c == 1:
            return ones_like_value(<Tensor>x)
        return _ew2(OP_MUL, x ** (c - 1), c)
    slots = [None, None, None]
    for s in range(3):
        if (_sg_reads[op][j] >> s) & 1:
            slots[s] = tape_node(tp, out if s == 2 else ins[s])
    d = _tensor_prog(op, j, slots)
    if type(d) is Tensor and (<Tensor>d)._dtype != odt:
        d = cast(d, _DTYPES[odt])
    return d


cdef bint _partial_ok(Tape tp, int op, int j, tuple ins, object out):
    """can _partial_r give input j's partial (without recording anything first)?"""
    cdef int tr = _triv(op, j)
    cdef int s
    cdef object v
    if tr != 0:
        return True
    if op == OP_WHERE or op == OP_CLIP:
        return len(ins) == 3 and _rule_partial_ok(tp, op, j, ins, out)
    if op == OP_POW and j == 0 and _pow_const_h(tp, ins):
        return type(tape_node(tp, ins[0])) is Tensor
    if not _sg_ready or not _sg_tensor_ok[op][j]:
        return False
    for s in range(3):
        if (_sg_reads[op][j] >> s) & 1:
            if s < 2 and (s >= len(ins) or ins[s] < 0):
                return False
            v = tape_node(tp, out if s == 2 else ins[s])
            if type(v) is not Tensor or (<Tensor>v)._dev != 0:
                return False
    return True


cdef object _scale_by(object v, object d):
    """transforms._scale: v times a partial (1 and -1 cost no multiply)"""
    if type(d) is float:
        if <double>d == 1.0:
            return v
        if <double>d == -1.0:
            return -v
    return v * d


cdef object _ew_batch_r(Tape tp, cad_rec *r, list ts, object Diag, object Scaled):
    """an elementwise record's batch of tangents (one batch dim) when the sweep records
    (NOTE [ Recorded tangent batches ]): transforms._jvp_record's ops for fused False;
    None: the rule decides (nothing recorded then)"""
    cdef int op = r.op, n = r.nargs, j, ndg = 0, nt = 0, odt
    cdef cad_hid out = r.out
    cdef tuple ins, oshape, xs
    cdef list shapes = [], vs, tt
    cdef bint same = True, allsame = True
    cdef object m = None, tm, t, acc, c, d, nbs = None
    if n < 1 or n > 3:
        return None
    ins = _rec_ins(tp, r)
    oinfo = tape_info(tp, out)
    oshape = oinfo[0]
    odt = oinfo[1]
    for j in range(n):
        t = ts[j]
        shapes.append(tape_info(tp, ins[j])[0] if ins[j] >= 0 else None)
        if t is None or _triv(op, j) == 2:
            continue
        if ins[j] < 0 or not _partial_ok(tp, op, j, ins, out):
            return None
        nt += 1
        if type(t) is Diag:
            if type((<DiagBase>t).v) is not Tensor or (<Tensor>(<DiagBase>t).v)._dev != 0:
                return None
            ndg += 1
        elif type(t) is Scaled:
            if type((<ScaledBase>t).m) is not Tensor:
                return None
        elif type(t) is not Tensor or (<Tensor>t)._dev != 0 or _tndim(<Tensor>t) < 1:
            return None
        if shapes[j] != oshape:
            allsame = False
    if nt == 0:
        return None
    if ndg == 0 and len(oshape) and allsame:   # (_scaled_ew: one m for every batch)
        vs = []
        for j in range(n):
            t = ts[j]
            if t is None or _triv(op, j) == 2:
                vs.append(None)
                continue
            if type(t) is Scaled:
                tm = (<ScaledBase>t).m
                vs.append((<ScaledBase>t).v)
            else:
                tm = t
                vs.append(None)
            if m is None:
                m = tm
            elif tm is not m:
                same = False
        if same and (<Tensor>m).shape[1:] == oshape:
            acc = None
            for j in range(n):
                if ts[j] is None or _triv(op, j) == 2:
                    continue
                d = _partial_r(tp, op, j, ins, out, odt)
                if vs[j] is not None:
                    c = _scale_by(vs[j], d)
                elif type(d) is float:
                    c = const_on(_np.ones(oshape, dtype=_DTYPES[(<Tensor>m)._dtype]), (<Tensor>m)._dev) * d
                else:
                    c = d
                acc = c if acc is None else acc + c
            if acc is not None and (<Tensor>acc).shape == oshape:
                sc = ScaledBase.__new__(Scaled)
                (<ScaledBase>sc).m = m
                (<ScaledBase>sc).v = acc
                return sc
            # (a partial of a broadcast shape: _scaled_ew declines, the rule goes on)
    tt = [t.dense() if t is not None and type(t) is Scaled else t for t in ts]
    if ndg == 1 and op == OP_ADD and n == 2 and tt[0] is not None and tt[1] is not None and allsame:
        # (_diag_plus: the Diag's values added along the dense batch's diagonal)
        c = tt[1].plus(tt[0]) if type(tt[1]) is Diag else tt[0].plus(tt[1])
        if c is not None:
            return c
    if ndg:
        if ndg == nt and allsame:   # (_diag_jvp: every batch diagonal, the output's shape)
            acc = None
            for j in range(n):
                if tt[j] is None or _triv(op, j) == 2:
                    continue
                d = _partial_r(tp, op, j, ins, out, odt)
                c = _scale_by((<DiagBase>tt[j]).v, d)
                acc = c if acc is None else acc + c
            dg = DiagBase.__new__(Diag)
            (<DiagBase>dg).v = acc
            (<DiagBase>dg).unit = False
            return dg
        tt = [t.dense() if t is not None and type(t) is Diag else t for t in tt]
    acc = None   # (the ew rule's jvp with nb = 1: lift, t * partial, full_shape)
    for j in range(n):
        t = tt[j]
        if t is None or _triv(op, j) == 2:
            continue
        if type(t) is not Tensor:
            return None
        xs = <tuple>shapes[j]
        if nbs is None:
            nbs = (<Tensor>t).shape[:1]
        if len(oshape) > len(xs):
            t = reshape(t, (<Tensor>t).shape[:1] + (1,) * (len(oshape) - len(xs)) + xs)
        if _triv(op, j) == 1:
            c = t
        elif _triv(op, j) == -1:
            c = -t
        else:
            c = t * _partial_r(tp, op, j, ins, out, odt)
        acc = c if acc is None else acc + c
    if acc is None:
        return None
    want = nbs + oshape
    return acc if (<Tensor>acc).shape == want else expand(acc, want)


def forward_sweep_b(Tape tp, dict seeds, int64_t start, list want, object rule, bytes ew_fused,
                    object diag_cls, object scaled_cls, bint fused=True):
    """NOTE [ C forward sweep ] for a batch of tangents (one leading batch dim, not
    recorded: jacfwd, the forward half of hessian): the records start.. of tp on a
    path to a handle in want, in a loop here; an elementwise record with a fused row
    (ew_fused[op]) pushes its batch in C (_ew_batch), any other record goes to
    rule(record, tangents) (transforms._jvp_record).  Tangents are tensors, Diag or
    _Scaled batches (diag_cls, scaled_cls); the caller densifies the results.  None:
    the records include a custom primitive (the caller's Python sweep takes them).
    fused False: the tangents record (NOTE [ Recorded tangent batches ]): elementwise
    records by their partials, not the fused rows."""
    cdef int64_t n, nbuf, i, j
    cdef cad_hid h
    cdef cad_rec *r
    cdef dict tan = {}
    cdef list ts
    cdef bint anyt
    cdef unsigned char *need
    cdef const unsigned char *ew = ew_fused
    cdef Py_ssize_t new = len(ew_fused)
    cdef Tape tp0
    cdef cad_hid hoff = 0   # (NOTE [ Merges during a C forward sweep ])
    cdef int64_t mv[3]
    tp = tape_live(tp)
    tp0 = tp
    n = tp.t.nrecs
    nbuf = tp.t.nbufs
    for k, v in seeds.items():
        h = k
        if _live(tp, &h) is not tp:
            raise IndexError(f"cad: a seed's handle {k} is not on this tape")
        tan[h] = v
    need = <unsigned char *>calloc(<size_t>max(nbuf, 1), 1)
    if need == NULL:
        raise MemoryError("jacfwd: cannot allocate the sweep's marks")
    try:
        _mark_needed(tp, want, start, n, need)   # only records on a path to a wanted handle
        i = start - 1
        while i + 1 < n:   # (a merge moves i and n: NOTE [ Merges during a C forward sweep ])
            i += 1
            r = &tp.t.recs[i]
            if not need[r.out] or (OP_EQ <= r.op <= OP_ISNAN):   # (bools: no tangent)
                continue
            ts = []
            anyt = False
            for j in range(r.nargs):
                h = tp.t.args[r.arg + j]
                if h < 0:
                    ts.append(None)
                else:
                    v = tan.get(h)
                    ts.append(v)
                    anyt = anyt or v is not None
            if not anyt:
                continue
            res = None
            if r.op < new and ew[r.op]:
                if fused:
                    res = _ew_batch(tp, r, ts, diag_cls, scaled_cls)
                else:
                    res = _ew_batch_r(tp, r, ts, diag_cls, scaled_cls)
            elif r.op == OP_POW and new:
                res = _pow_batch(tp, r, ts, diag_cls, scaled_cls) if fused else \
                    _ew_batch_r(tp, r, ts, diag_cls, scaled_cls)
            elif r.op == OP_VIEW and _identity_view_rec(&tp.t, r):
                res = ts[0]   # (the batch as it is: dense, diagonal or scaled)
            elif r.op == OP_MATMUL:
                res = _mm_batch_c(tp, r, ts, diag_cls, scaled_cls)
                if res is None and r.aux >= 0:   # (NOTE [ Matmul's rules written once ])
                    res = _matmul_jvp(tp, _rec_ins(tp, r), r.out, _int_tuple(tp.t.aux + r.aux, 2), ts, 1)
            elif r.op >= OP_SUM:
                res = _lin_batch(tp, r, ts, diag_cls, scaled_cls, not fused)
            if res is None:
                res = rule(_rec_back(tp, i, hoff), ts)
            if tp._into is not None:   # (a rule merged the tape into another)
                tp = _follow_merge(tp, mv, NULL, NULL, &need, nbuf, tan)
                i += mv[1]
                n += mv[1]
                hoff += mv[0]
                nbuf = mv[2]
            r = &tp.t.recs[i]   # (a rule or an op on a tracked value may have grown the arrays)
            if res is not None:
                tan[r.out] = res
        out = {}
        for k in want:
            h = k
            _live(tp0, &h)
            out[k] = tan.get(h)
        return out
    finally:
        free(need)


cdef object _diag_view(Tensor v, int64_t off, tuple vsh, tuple vst):
    """as_strided(Diag(v).dense(), off, (n,) + vsh, (n,) + vst), the view record's
    rule on the densified batch (Diag.dense's numpy branch: nothing tracks v), without
    the n x n matrix: row p of the batch is v[p] at the view's elements that read
    position p of x, zeros elsewhere (a scalar x[i] of loop code read a 20 x 20
    identity for one column)"""
    cdef Py_ssize_t n = v.size, m = _prod_of(vsh), d
    cdef object P, R, vf
    P = _np.full(vsh, off, dtype=_np.int64)
    for d in range(len(vsh)):
        P += _np.arange(<int64_t>vsh[d], dtype=_np.int64).reshape(
            tuple([-1 if k == d else 1 for k in range(len(vsh))])) * <int64_t>vst[d]
    P = P.reshape(-1)
    vf = _arr_of(v).reshape(-1)
    R = _np.zeros((n, m), dtype=vf.dtype)
    R[P, _np.arange(m)] = vf[P]
    return from_numpy(R.reshape((n,) + vsh), None, False, False)


cdef int64_t _prod_of(tuple shape):
    cdef int64_t p = 1
    for s in shape:
        p *= <int64_t>s
    return p


cdef object _lin_batch(Tape tp, cad_rec *r, list ts, object diag_cls, object scaled_cls, bint rec=False):
    """forward_sweep_b's batch (one leading batch dim: dense, scaled, or a Diag made
    dense, as _jvp_record makes it when _diag_jvp declines; a full sum of a Diag its v)
    through sum, max/min, a view or its adjoint, gather, scatter, concatenate, a float
    cast and cumsum: the rules' own ops for nb = 1 (reduce.py's _collapse and
    _max_jvp, shape.py's _view_jvp, _unview_jvp and _concat_jvp, index.py's
    _gather_jvp and _scatter_jvp, linalg.py's _cast_jvp, scan.py's _cumsum_jvp), a
    scaled batch made dense first as _jvp_record makes it; None: the rule decides.
    Everything is read from r before the first op: an op on a tracked value (x, the
    output) records, and the tape's arrays may move."""
    cdef int op = r.op, j, n = r.nargs, d
    cdef cad_hid hx = -1, hp = -1, hl = -1, ho = r.out
    cdef cad_buf *ob = &tp.t.bufs[ho]
    cdef int odt = ob.dtype
    cdef int64_t nd = 0, w0 = 0, w1 = 0, w2 = 0, inner
    cdef Py_ssize_t k
    cdef list dts = [], hs = []
    cdef tuple xs = (), osh, bsh, vsh = (), vst = (), pins = None, paux = ()
    cdef object t, x, o, w, lin
    cdef bint product = op == OP_PROD or op == OP_CUMPROD or op == OP_CROSS or op == OP_XENT
    if ob.flags & BUF_CUDA:
        return None
    if not (op == OP_SUM or op == OP_MAX or op == OP_MIN or op == OP_VIEW or op == OP_UNVIEW
            or op == OP_CONCATENATE or op == OP_GATHER or op == OP_SCATTER or op == OP_CAST
            or op == OP_CUMSUM or op == OP_SETITEM or product):
        return None
    if r.aux < 0 and op != OP_CAST and op != OP_SETITEM and op != OP_CROSS and op != OP_XENT:
        return None
    if product:
        pins = _rec_ins(tp, r)
        paux = _rec_aux_of(tp, r)
    if op == OP_SETITEM:
        if n != 3 or tp.t.args[r.arg + 2] < 0:
            return None
        hl = tp.t.args[r.arg + 2]
    osh = _int_tuple(tp.t.meta + ob.meta, ob.ndim)
    for j in range(n):
        hx = tp.t.args[r.arg + j]
        if hx < 0:
            hs.append(None)
        else:
            hs.append(_int_tuple(tp.t.meta + tp.t.bufs[hx].meta, tp.t.bufs[hx].ndim))
    hx = tp.t.args[r.arg] if n else -1
    if n > 1:
        hp = tp.t.args[r.arg + 1]
    if r.aux >= 0:
        w0 = tp.t.aux[r.aux]
        if op == OP_VIEW or op == OP_UNVIEW:
            nd = tp.t.aux[r.aux + 1]
            vsh = _int_tuple(tp.t.aux + r.aux + 2, nd)
            vst = _int_tuple(tp.t.aux + r.aux + 2 + nd, nd)
        elif op == OP_GATHER or op == OP_SCATTER:
            w1 = tp.t.aux[r.aux + 1]
            w2 = tp.t.aux[r.aux + 2]
        elif op == OP_CUMSUM:
            w1 = tp.t.aux[r.aux + 1]
    r = NULL   # (not read again)
    if n < 1 or hx < 0 and op != OP_CONCATENATE and op != OP_SETITEM:
        return None
    for j in range(n):
        t = ts[j]
        if t is not None and type(t) is diag_cls:
            v = (<DiagBase>t).v
            if type(v) is not Tensor:
                return None
            if op == OP_SUM and n == 1 and (<Tensor>v).size == _prod_of(<tuple>hs[0]) and _prod_of(osh) == 1:
                return reshape(v, ((<Tensor>v).size,) + osh)   # (_diag_jvp: a full sum)
            if op == OP_VIEW and n == 1 and (<Tensor>v).size == _prod_of(<tuple>hs[0]) and \
                    not (<Tensor>v)._rg and not cad_rec_mode and (<Tensor>v)._dev == 0:
                return _diag_view(<Tensor>v, w0, vsh, vst)
            t = t.dense()   # (_diag_jvp declines the rest: _jvp_record densifies)
            if type(t) is not Tensor:
                return None
        elif t is not None and type(t) is not Tensor:
            if not isinstance(t, scaled_cls):
                return None
            t = t.dense()   # (_jvp_record's ts[i].dense() for a scaled batch)
            if type(t) is not Tensor:
                return None
        if t is not None and ((_mode1(<Tensor>t) and not rec) or _tndim(<Tensor>t) < 1):
            return None   # (rec: a recorded batch, NOTE [ Recorded tangent batches ]: the same ops)
        dts.append(t)
    if op == OP_SETITEM:   # (NOTE [ Setitem records in the sweeps ])
        lin = tape_node(tp, hl)
        if type(lin) is not Tensor or dts[2] is not None:
            return None
        return _setitem_jvp(<Tensor>lin, osh, dts[0], dts[1], 1)
    if product:   # (NOTE [ Product rules written once ])
        return _product_jvp(tp, op, pins, ho, paux, dts, 1)
    if op == OP_CONCATENATE:
        t = None
        for j in range(n):
            if dts[j] is not None:
                t = dts[j]
                break
        bsh = (<Tensor>t).shape[:1]
        parts = []
        for j in range(n):
            if dts[j] is not None:
                parts.append(dts[j])
            elif hs[j] is None:
                return None
            else:
                parts.append(_wrap(_np.zeros(bsh + <tuple>hs[j], dtype=_DTYPES[odt])))
        return concat(parts, <int>w0 + 1)
    t = dts[0]
    if t is None:
        return None
    if op == OP_CAST:
        if n != 1 or not _isfloat(odt):
            return None
        return cast(t, _DTYPES[odt])
    xs = <tuple>hs[0]
    bsh = (<Tensor>t).shape[:1]
    if (<Tensor>t).shape[1:] != xs:
        return None
    if op == OP_SUM or op == OP_MAX or op == OP_MIN:
        if n != 1:
            return None
        if op != OP_SUM:
            x = tape_node(tp, hx)
            o = tape_node(tp, ho)
            if type(x) is not Tensor or type(o) is not Tensor:
                return None
            t = t * _extreme_w(<Tensor>x, o, xs, w0)
        return reduce(OP_SUM, t, _axes_of(len(xs), w0, 1), len(osh) == len(xs) and len(xs) > 0)
    if op == OP_VIEW or op == OP_UNVIEW:
        if n != 1:
            return None
        inner = _prod_of(xs if op == OP_VIEW else osh)
        if op == OP_VIEW:
            return as_strided(t, w0, bsh + vsh, (inner,) + vst)
        return unview(t, w0, bsh + vsh, (inner,) + vst, bsh + osh)
    if op == OP_GATHER or op == OP_SCATTER:
        if n != 2 or dts[1] is not None or hp < 0:
            return None
        lin = tape_node(tp, hp)
        if type(lin) is not Tensor:
            return None
        if op == OP_GATHER:
            return gather(t, lin, None, 1 + <int>w2)
        return scatter(t, lin, w1, 1 + <int>w2)
    if op == OP_CUMSUM:
        if n != 1 or not _isfloat((<Tensor>t)._dtype):
            return None
        t = contiguous(t)
        return bind(OP_CUMSUM, [t], (w0 + 1, 1 if w1 else 0), (<Tensor>t).shape,
                    (<Tensor>t).dtype, "cumsum")
    return None


cdef bint _wants(Tape tp, object h, set dep):
    """does input handle h take a cotangent (Ctx.wants)?"""
    return h >= 0 and h in dep and (tape_flags(tp, h) & 2) != 0


def reverse_sweep_r(Tape tp, dict seeds, int64_t stop, list want, list vjps, object ctx_cls,
                    bytes ew_plain=b""):
    """transforms.reverse_sweep's loop for cotangents without batch dims (nb == 0), in
    Cython: the same records (a snapshot taken first: rules that record may grow or
    merge the tape, NOTE [ Handles across merges ]), the same dependency pruning and
    accumulation order, each record's rule from vjps; add's (the cotangent itself for
    inputs of the output's shape) and sum's (the cotangent spread back over the
    reduced axes) without their Python rule, recording the same ops; with ew_plain
    given, elementwise ops it marks by their partials' programs, pow by a constant,
    1-D/2-D matmul and views in Cython too (NOTE [ Elementwise vjps in the reverse
    sweep ])."""
    cdef list recs = tape_records(tp, stop, -1)
    cdef dict cot = dict(seeds)
    cdef set keep = set(want)
    cdef set dep = _dependents(recs, keep)
    cdef Py_ssize_t k, j, n = len(recs)
    cdef tuple rec, ins, oshape, xs
    cdef int op
    cdef int64_t mask
    cdef bint fast
    cdef list res
    cdef const unsigned char *plain = ew_plain
    cdef Py_ssize_t nplain = len(ew_plain)
    for k in range(n - 1, -1, -1):
        rec = <tuple>recs[k]
        op = rec[0]
        out = rec[1]
        g = cot.get(out)
        if g is None or out in keep:
            continue
        del cot[out]
        if out not in dep:
            continue
        ins = <tuple>rec[2]
        res = None
        if op == OP_ADD and len(ins) == 2 and type(g) is Tensor:
            fast = True
            res = [None, None]
            for j in range(2):
                if _wants(tp, ins[j], dep):
                    if not _same_shape_h(tp, ins[j], out):
                        fast = False
                        break
                    res[j] = g
            if not fast:   # (a broadcast input: its sum, as the rule's unbroadcast)
                res = _ew_vjp_c(tp, op, ins, out, <Tensor>g, dep, 0, False, True) \
                    if nplain and op < nplain and plain[op] else None
        elif op == OP_SUM and type(g) is Tensor:
            res = [None]
            if ins[0] >= 0 and ins[0] in dep:
                xs = tape_info(tp, ins[0])[0]
                mask = (<tuple>rec[3])[0]
                res[0] = expand(reshape(g, _kept_of(xs, mask)), xs)
        elif op < nplain and plain[op] and type(g) is Tensor:
            res = _ew_vjp_c(tp, op, ins, out, <Tensor>g, dep, 0, False, True)
        elif op == OP_POW and nplain and type(g) is Tensor:
            res = _pow_vjp_c(tp, ins, out, <Tensor>g, dep)
            if res is None and not _pow_const_h(tp, ins, dep):   # (both partials by their programs)
                res = _ew_vjp_c(tp, op, ins, out, <Tensor>g, dep, 0, False, True)
        elif op == OP_MATMUL and nplain and type(g) is Tensor:
            res = _matmul_vjp_c(tp, ins, out, <tuple>rec[3], <Tensor>g, dep)
            if res is None:   # (NOTE [ Matmul's rules written once ])
                res = _matmul_vjp_g(tp, ins, <tuple>rec[3], g, dep, 0)
        elif op == OP_VIEW and nplain and type(g) is Tensor and len(ins) == 1 and ins[0] >= 0:
            # (cad/ops/shape.py's _view_vjp for unbatched cotangents: the window's adjoint)
            aux = <tuple>rec[3]
            nd = aux[1]
            res = [unview(g, aux[0], aux[2:2 + nd], aux[2 + nd:2 + 2 * nd], tape_info(tp, ins[0])[0])]
        elif op >= OP_MAX and nplain and type(g) is Tensor:
            res = _lin_vjp_r(tp, op, ins, out, <tuple>rec[3], <Tensor>g, dep)
        if res is None:
            res = vjps[op](ctx_cls(tp, ins, out, rec[3], 0, dep), g)
        for j in range(len(ins)):
            c = res[j]
            h = ins[j]
            if c is None or h < 0 or h not in dep:
                continue
            if tape_flags(tp, h) & 8:
                raise BackwardError("the gradient reached a value whose tape was consumed by an "
                                    "earlier backward(); pass retain_graph=True to that backward")
            prev = cot.get(h)
            cot[h] = c if prev is None else prev + c
    return {h: cot.get(h) for h in want}


cdef list _lin_vjp_r(Tape tp, int op, tuple ins, object out, tuple aux, Tensor g, set dep, int nb=0):
    """the cotangents (nb = 0: reverse_sweep_r; nb = 1: a dense batch in
    reverse_sweep_b) for max/min, a view (nb = 1; reverse_sweep_r has its own) and
    its adjoint (unview), gather, scatter, a cast, cumsum, concatenate and (nb = 1) sum:
    the ops their rules make, in their order (reduce.py's _max_vjp and _sum_vjp,
    shape.py's _view_vjp, _unview_vjp and _concat_vjp, index.py's _gather_vjp and
    _scatter_vjp, linalg.py's _cast_vjp, scan.py's _cumsum_vjp), without the rule's
    context; None: the rule decides"""
    cdef Py_ssize_t nd, j, n = len(ins)
    cdef int64_t mask, off, inner
    cdef int d
    cdef tuple xs, bsh, bst
    cdef list res
    cdef object x, o, lin, w
    if _tndim(g) < nb:
        return None
    bsh = g.shape[:nb]
    if op == OP_PROD or op == OP_CUMPROD or op == OP_CROSS or op == OP_XENT:
        return _product_vjp(tp, op, ins, out, aux, g, dep, nb)   # (NOTE [ Product rules written once ])
    if op == OP_SETITEM:   # (NOTE [ Setitem records in the sweeps ])
        lin = _setitem_lin(tp, ins)
        if lin is None:
            return None
        return _setitem_vjp(<Tensor>lin, tape_info(tp, out)[0], g, _wants(tp, ins[0], dep),
                            _wants(tp, ins[1], dep), nb)
    if op == OP_UNVIEW or op == OP_VIEW or op == OP_CAST or op == OP_CUMSUM or op == OP_MAX \
            or op == OP_MIN or op == OP_SUM:
        if n != 1 or ins[0] < 0 or (op == OP_VIEW or op == OP_SUM) and nb == 0:
            return None
        if not _wants(tp, ins[0], dep):
            return [None]
    if op == OP_SUM:
        if len(aux) != 1:
            return None
        return [_sum_vjp_b(tp, ins[0], aux, g)]
    if op == OP_UNVIEW or op == OP_VIEW:
        nd = aux[1]
        xs = tape_info(tp, out if op == OP_UNVIEW else ins[0])[0]
        inner = _prod_of(xs)
        bst = (inner,) if nb else ()
        if op == OP_UNVIEW:
            return [as_strided(g, aux[0], bsh + aux[2:2 + nd], bst + aux[2 + nd:2 + 2 * nd])]
        return [unview(g, aux[0], bsh + aux[2:2 + nd], bst + aux[2 + nd:2 + 2 * nd], bsh + xs)]
    if op == OP_CAST:
        return [cast(g, _DTYPES[tape_info(tp, ins[0])[1]])]
    if op == OP_CUMSUM:
        if _tndim(g) == nb or not _isfloat(g._dtype):
            return None
        return [bind(OP_CUMSUM, [contiguous(g)], (aux[0] + nb, 0 if aux[1] else 1), g.shape, g.dtype,
                     "cumsum")]
    if op == OP_MAX or op == OP_MIN:
        if len(aux) != 1:
            return None
        x = tape_node(tp, ins[0])
        o = tape_node(tp, out)
        if type(x) is not Tensor or type(o) is not Tensor:
            return None
        xs = tape_info(tp, ins[0])[0]
        mask = aux[0]
        w = _extreme_w(<Tensor>x, o, xs, mask)
        return [expand(reshape(g, bsh + _kept_of(xs, mask)), bsh + xs) * w]   # (_spread(g) * weights)
    if op == OP_GATHER or op == OP_SCATTER:
        if n != 2 or ins[0] < 0 or ins[1] < 0 or len(aux) != 3:
            return None
        if not _wants(tp, ins[0], dep):
            return [None, None]
        lin = tape_node(tp, ins[1])
        if type(lin) is not Tensor:
            return None
        if op == OP_SCATTER:
            return [gather(g, lin, None, nb + aux[2]), None]
        return [reshape(scatter(g, lin, aux[1], _tndim(g) - _tndim(<Tensor>lin)),
                        bsh + tape_info(tp, ins[0])[0]), None]
    if op == OP_CONCATENATE:
        if len(aux) != 1:
            return None
        nd = aux[0]
        res = []
        off = 0
        for j in range(n):
            if ins[j] < 0:
                return None
            d = tape_info(tp, ins[j])[0][nd]
            res.append(g[(slice(None),) * (nb + nd) + (slice(off, off + d),)] if _wants(tp, ins[j], dep)
                       else None)
            off += d
        return res
    return None


# NOTE [ Setitem records in the sweeps ]
# x[i] = v records SETITEM (x, v, positions): the output is x with the positions'
# elements replaced.  Its rules (index.py) build two masks, the elements of x no
# write reaches (keep) and the writes that survive (last: the last of repeated
# positions), by numpy (np.unique for `last`, ~10 us), then run two or three engine
# ops.  Scientific code fills arrays element by element in loops (u[i] = ... for each
# i), so a sweep met hundreds of these records, each through its Python rule: jvp of
# a 48-setitem stencil took 14x the function.  set_masks makes both masks in one
# pass from the end (a position first seen from the end is its last write), and the
# sweeps (the plain, recording and batched forward ones, the recording and batched
# reverse ones) run the rules' ops on them here: _setitem_jvp (tx * keep, plus the
# writes' tangents times last scattered to their positions) and _setitem_vjp
# (g * keep; gather(g, positions) * last).  The rules call set_masks too, so both
# paths use the same masks.

def set_masks(Tensor lin, tuple xs):
    """(keep, last) for a setitem's positions lin into a value of shape xs: bool
    tensors, keep of shape xs (no write reaches the element) and last of lin's shape
    (the write survives: the last to its position); None for a device tensor or a
    position out of range (the caller's numpy path decides)"""
    cdef Py_ssize_t size = 1, m, i
    cdef int64_t p
    cdef object la, keep, last
    cdef const int64_t *li
    cdef uint8_t *kv
    cdef uint8_t *lv
    if lin._dev != 0 or lin._dtype != CAD_I64:
        return None
    for d in xs:
        size *= <Py_ssize_t>d
    la = _np.ascontiguousarray(_arr_of(lin)).reshape(-1)
    m = la.shape[0]
    keep = _np.ones(size, dtype=_np.bool_)
    last = _np.zeros(m, dtype=_np.bool_)
    li = <const int64_t *>cnp.PyArray_DATA(la)
    kv = <uint8_t *>cnp.PyArray_DATA(keep)
    lv = <uint8_t *>cnp.PyArray_DATA(last)
    for i in range(m - 1, -1, -1):
        p = li[i]
        if p < 0 or p >= size:
            return None
        if kv[p]:
            kv[p] = 0
            lv[i] = 1
    return _wrap(keep.reshape(xs)), _wrap(last.reshape(lin.shape))


cdef object _setitem_jvp(Tensor lin, tuple xs, object tx, object tv, int nb):
    """index.py's _setitem_jvp: tx * keep + the writes' tangents (tv * last) scattered
    to their positions, tangents with nb leading batch dims; None: the rule decides"""
    cdef object r = None, s
    cdef tuple bsh
    masks = set_masks(lin, xs)
    if masks is None:
        return None
    keep, last = masks
    if tx is not None:
        r = tx * keep
    if tv is not None:
        bsh = (<Tensor>tv).shape[:nb]
        s = reshape(scatter(tv * last, lin, _prod_of(xs), nb, True), bsh + xs)   # (set_masks checked lin)
        r = s if r is None else r + s
    return r


cdef list _setitem_vjp(Tensor lin, tuple xs, Tensor g, bint wx, bint wv, int nb):
    """index.py's _setitem_vjp: [g * keep, gather(g, positions) * last, None] (nb
    leading batch dims); None: the rule decides"""
    masks = set_masks(lin, xs)
    if masks is None:
        return None
    keep, last = masks
    return [g * keep if wx else None, gather(g, lin, None, nb, True) * last if wv else None, None]


cdef object _setitem_lin(Tape tp, tuple ins):
    """a setitem record's positions (a CPU int64 tensor), or None"""
    if len(ins) != 3 or ins[2] < 0:
        return None
    lin = tape_node(tp, ins[2])
    if type(lin) is not Tensor or (<Tensor>lin)._dev != 0 or (<Tensor>lin)._dtype != CAD_I64:
        return None
    return lin


# NOTE [ Recording forward sweep ]
# jvp and jacfwd record their tangents' ops when an outer computation tracks
# something in them (grad of a jvp: reverse over forward; jvp of a jvp; cad.record).
# transforms.forward_sweep ran that sweep in Python, every record by its rule
# through a Ctx (~2-4 us a record around a few engine ops).  forward_sweep_r is the
# same loop for tangents without batch dims in Cython: the same records (a snapshot
# taken first: the ops it records may grow or merge the tape, NOTE [ Handles across
# merges ]), the same pruning to records on a path to a wanted handle, and for the
# common records the ops their rules record, in their order, without the rule
# (_jvp_r): elementwise ops by their partials' programs (_ew_jvp_r, NOTE
# [ Elementwise vjps in the reverse sweep ]; pow by a tracked or array exponent
# too), pow by a constant, sum and max/min, views and their adjoint, 1-D/2-D
# matmul, casts, cumsum, gather, scatter, concatenate, setitem, and prod, cumprod,
# cross and xent by their rules' bodies (NOTE [ Product rules written once ]).
# Every lookup goes through the handle (tape_info, tape_node), never a record
# pointer, since the first op may merge the tape.  Anything else (custom
# primitives, a device value) goes to its rule.  test_forward_sweep_r compares the
# records and the tangents with the rules' sweep.

def forward_sweep_r(Tape tp, dict seeds, int64_t start, list want, object rule,
                    bytes ew_plain=b""):
    """transforms.forward_sweep's loop for recorded tangents without batch dims
    (nb = 0, not fused), in Cython (NOTE [ Recording forward sweep ]); rule(record,
    tangents) for the records _jvp_r declines"""
    cdef list recs = tape_records(tp, start, -1)
    cdef dict tan = dict(seeds)
    cdef set need = set(want)
    cdef Py_ssize_t k, n = len(recs)
    cdef tuple rec, ins
    cdef list ts
    cdef bint anyt
    cdef const unsigned char *plain = ew_plain
    cdef Py_ssize_t nplain = len(ew_plain)
    for k in range(n - 1, -1, -1):
        rec = <tuple>recs[k]
        if rec[1] in need:
            need.update(<tuple>rec[2])
    for k in range(n):
        rec = <tuple>recs[k]
        out = rec[1]
        if out not in need or OP_EQ <= <int>rec[0] <= OP_ISNAN:   # (bools: no tangent)
            continue
        ins = <tuple>rec[2]
        ts = []
        anyt = False
        for h in ins:
            t = tan.get(h) if h >= 0 else None
            ts.append(t)
            anyt = anyt or t is not None
        if not anyt:
            continue
        res = _jvp_r(tp, <int>rec[0], ins, out, <tuple>rec[3], ts, plain, nplain) if nplain else None
        if res is None:
            res = rule(rec, ts)
        if res is not None:
            tan[out] = res
    return {h: tan.get(h) for h in want}


cdef object _jvp_r(Tape tp, int op, tuple ins, object out, tuple aux, list ts,
                   const unsigned char *plain, Py_ssize_t nplain):
    """one record's tangent for forward_sweep_r: the ops its rule records for nb = 0
    (reduce.py's _sum_jvp/_max_jvp, shape.py's _view_jvp/_unview_jvp/_concat_jvp,
    the bilinear matmul jvp through _mm_batch, linalg.py's _cast_jvp, scan.py's
    _cumsum_jvp, index.py's _gather_jvp/_scatter_jvp, the elementwise rules); None:
    the rule decides (nothing has been recorded then)"""
    cdef Py_ssize_t n = len(ins), j, nd
    cdef int64_t mask
    cdef tuple xs, oinfo
    cdef list parts
    cdef object t, x, o
    for j in range(n):
        t = ts[j]
        if t is not None and (type(t) is not Tensor or (<Tensor>t)._dev != 0):
            return None
    if op < nplain and plain[op]:
        return _ew_jvp_r(tp, op, ins, out, ts)
    if op == OP_POW:
        t = _pow_jvp_r(tp, ins, out, ts)
        if t is None and not _pow_const_h(tp, ins):
            # (a tracked exponent, or an array one: _pow_dx does not apply, so the rule
            # takes both partials from the programs)
            t = _ew_jvp_r(tp, op, ins, out, ts)
        return t
    if op == OP_PROD or op == OP_CUMPROD or op == OP_CROSS or op == OP_XENT:
        return _product_jvp(tp, op, ins, out, aux, ts, 0)   # (NOTE [ Product rules written once ])
    t = ts[0]
    if op == OP_SUM or op == OP_MAX or op == OP_MIN:
        if n != 1 or t is None or ins[0] < 0 or len(aux) != 1:
            return None
        xs = tape_info(tp, ins[0])[0]
        mask = aux[0]
        keep = len(<tuple>tape_info(tp, out)[0]) == len(xs) and len(xs) > 0
        if op != OP_SUM:   # (ts[0] * _extreme_weights(ctx))
            x = tape_node(tp, ins[0])
            o = tape_node(tp, out)
            if type(x) is not Tensor or type(o) is not Tensor:
                return None
            t = t * _extreme_w(<Tensor>x, o, xs, mask)
        return reduce(OP_SUM, t, _axes_of(len(xs), mask), keep)
    if op == OP_VIEW or op == OP_UNVIEW:
        if n != 1 or t is None or len(aux) < 2:
            return None
        nd = aux[1]
        if op == OP_VIEW:
            return as_strided(t, aux[0], aux[2:2 + nd], aux[2 + nd:2 + 2 * nd])
        return unview(t, aux[0], aux[2:2 + nd], aux[2 + nd:2 + 2 * nd], tape_info(tp, out)[0])
    if op == OP_MATMUL:
        if n != 2 or len(aux) != 2:
            return None
        t = _mm_tangent(tp, ins[0], ins[1], aux[0] != 0, aux[1] != 0, ts, tape_info(tp, out)[0])
        if t is None:   # (NOTE [ Matmul's rules written once ])
            t = _matmul_jvp(tp, ins, out, aux, ts, 0)
        return t
    if op == OP_CAST:
        if n != 1 or t is None:
            return None
        return cast(t, _DTYPES[tape_info(tp, out)[1]])
    if op == OP_CUMSUM:
        if n != 1 or t is None or len(aux) != 2 or _tndim(<Tensor>t) == 0 or \
                not _isfloat((<Tensor>t)._dtype):
            return None
        c = contiguous(t)
        return bind(OP_CUMSUM, [c], (aux[0], 1 if aux[1] else 0), c.shape, c.dtype, "cumsum")
    if op == OP_GATHER or op == OP_SCATTER:
        if n != 2 or t is None or ts[1] is not None or ins[1] < 0 or len(aux) != 3:
            return None
        x = tape_node(tp, ins[1])
        if type(x) is not Tensor:
            return None
        if op == OP_GATHER:
            return gather(t, x, None, aux[2])
        return scatter(t, x, aux[1], aux[2])
    if op == OP_SETITEM:   # (NOTE [ Setitem records in the sweeps ])
        x = _setitem_lin(tp, ins)
        if x is None or ts[2] is not None:
            return None
        return _setitem_jvp(<Tensor>x, tape_info(tp, out)[0], ts[0], ts[1], 0)
    if op == OP_CONCATENATE:
        if len(aux) != 1:
            return None
        oinfo = tape_info(tp, out)
        parts = []
        for j in range(n):
            if ts[j] is not None:
                parts.append(ts[j])
            elif ins[j] < 0:
                return None
            else:
                parts.append(_wrap(_np.zeros(tape_info(tp, ins[j])[0], dtype=_DTYPES[oinfo[1]])))
        return concat(parts, <int>aux[0])
    return None


cdef object _mm_tangent(Tape tp, cad_hid h0, cad_hid h1, bint a1, bint b1, list ts, tuple oshape):
    """matmul's tangent (the bilinear jvp through _mm_batch for nb = 0: the product of
    each operand's tangent with the other operand, summed, expanded to the output as
    full_shape does) for operands of 1 or 2 dims; None: the rule decides (nothing has
    been recorded then: every check runs before the first op).  The plain and the
    recording forward sweeps' matmul records."""
    cdef int j
    cdef cad_hid hs[2]
    cdef list others = [None, None]
    cdef object o, c, acc = None
    hs[0] = h0
    hs[1] = h1
    for j in range(2):
        if ts[j] is None:
            continue
        if hs[1 - j] < 0 or _tndim(<Tensor>ts[j]) != (1 if (a1 if j == 0 else b1) else 2):
            return None
        o = tape_node(tp, hs[1 - j])
        if type(o) is not Tensor or _tndim(<Tensor>o) != (1 if (b1 if j == 0 else a1) else 2):
            return None
        others[j] = o
    for j in range(2):
        if others[j] is None:
            continue
        c = _mm_term(j, ts[j], others[j], a1, b1)
        acc = c if acc is None else acc + c
    if acc is not None and (<Tensor>acc).shape != oshape:
        acc = expand(acc, oshape)   # (full_shape)
    return acc


cdef object _mm_term(int i, object t, object other, bint a1, bint b1):
    """linalg.py's _mm_batch(i, t, other, a1, b1, 0) for operands of 1 or 2 dims: the
    same reshapes and products"""
    cdef tuple sh
    if i == 0 and not b1 and _tndim(<Tensor>other) == 2:
        return matmul(t, other)                              # (_rows_times)
    if i == 1 and b1 and not a1 and _tndim(<Tensor>other) == 2:
        return matmul(t, transpose(other, (1, 0)))           # (_rows_times(t, _swap(other)))
    if i == 0:
        left = reshape(t, (1,) + t.shape) if a1 else t       # (_unsq(t, -2))
        right = reshape(other, other.shape + (1,)) if b1 else other   # (_unsq(other, -1))
    else:
        left = reshape(other, (1,) + other.shape) if a1 else other
        right = reshape(t, t.shape + (1,)) if b1 else t
    c = matmul(left, right)
    if b1:   # (_sq(c, -1))
        c = reshape(c, c.shape[:-1])
    if a1:   # (_sq(c, -1 if b1 else -2))
        sh = c.shape
        c = reshape(c, sh[:-1] if b1 else sh[:-2] + sh[-1:])
    return c


cdef bint _pow_const_h(Tape tp, tuple ins, set dep=None):
    """does elementwise.py's _pow_dx apply (a constant 0-d exponent: transforms._pow_const;
    dep: a reverse sweep's, where the rule asks ctx.wants(1))?"""
    if len(ins) != 2 or ins[1] < 0:
        return False
    if (_wants(tp, ins[1], dep) if dep is not None else (tape_flags(tp, ins[1]) & 2) != 0):
        return False
    y = tape_node(tp, ins[1])
    return type(y) is Tensor and _tndim(<Tensor>y) == 0 and not (<Tensor>y)._rg


cdef object _pow_jvp_r(Tape tp, tuple ins, object out, list ts):
    """pow's tangent for a constant exponent, as its rule computes it with _pow_dx
    (t * (x ** (c - 1) * c); ones or zeros for c = 1 or 0); None: the rule decides"""
    cdef double c
    cdef object t = ts[0] if len(ts) == 2 else None
    if t is None or ts[1] is not None or ins[0] < 0 or ins[1] < 0 or (tape_flags(tp, ins[1]) & 2):
        return None
    if not _same_info_h(tp, ins[0], out) or not _tensor_like_h(tp, <Tensor>t, out):
        return None
    y = tape_node(tp, ins[1])
    x = tape_node(tp, ins[0])
    if type(y) is not Tensor or type(x) is not Tensor or _tndim(<Tensor>y) != 0 or (<Tensor>y)._rg:
        return None
    c = float(y)
    if c == 0:   # (_pow_dx's constant partials: no pow(x, -1) or pow(x, 0))
        return _ew2(OP_MUL, t, _ew2(OP_MUL, ones_like_value(<Tensor>x), 0.0))
    if c == 1:
        return _ew2(OP_MUL, t, ones_like_value(<Tensor>x))
    return _ew2(OP_MUL, t, _ew2(OP_MUL, x ** (c - 1), c))


# NOTE [ Batched reverse sweep ]
# jacrev sweeps a batch of cotangents (nb == 1): its seed is a Diag, the output basis,
# which an elementwise record keeps diagonal (cotangent i: Diag(v * d_i), when the
# inputs have the output's shape) until a matmul turns it into a dense batch.  The
# rules' Python loop cost ~10 us a record around one multiply of the value's size
# (a 70-op elementwise chain after W @ x at n = 32: jacrev 840 us, jacfwd 214).
# reverse_sweep_b is that loop (the same snapshot, pruning, order and accumulation)
# with the diagonal elementwise records (_ew_vjp_c on the diagonal: the products the
# nb = 0 sweep records), pow by a constant, identity views, add's dense batches and
# elementwise records' dense batches (_ew_vjp_c with nb = 1: the partials broadcast
# over the batch, as the rule multiplies them) and a matrix-vector record's batch for
# its vector (_mv_vjp_b: W @ x's row scaling or GEMM) and a sum's dense batch (_sum_vjp_b:
# the rule's reshape and expand) here; every other record goes to
# rule(record, cotangent, dep), the Python loop's
# body (transforms._rev_record).  test_reverse_sweep_b compares the two.

cdef object _sum_vjp_b(Tape tp, cad_hid hx, tuple aux, Tensor g):
    """a sum record's cotangent for x from a dense batch g (one batch dim): reduce.py's
    _spread, g reshaped to the kept dims and expanded to x's shape, the same two ops"""
    cdef cad_buf *xb = &tp.t.bufs[hx]
    cdef int64_t mask = aux[0]
    cdef int d
    xs = _int_tuple(tp.t.meta + xb.meta, xb.ndim)
    kept = _kept_of(xs, mask)
    bsh = g.shape[:1]
    return expand(reshape(g, bsh + kept), bsh + xs)


cdef bint _identity_view_aux(tuple aux, tuple xs):
    """a view record's aux (offset, nd, shape, strides) the input itself: offset 0,
    its shape, contiguous strides (transforms._identity_view)"""
    cdef Py_ssize_t nd, d
    cdef int64_t s = 1, sh
    if len(aux) < 2:
        return False
    nd = aux[1]
    if aux[0] != 0 or len(aux) != 2 + 2 * nd or tuple(aux[2:2 + nd]) != xs:
        return False
    for d in range(nd - 1, -1, -1):
        sh = aux[2 + d]
        if sh != 1 and aux[2 + nd + d] != s:
            return False
        s *= sh if sh > 1 else 1
    return True


cdef object _mv_vjp_b(Tape tp, tuple ins, tuple aux, object g, object diag_cls, set dep):
    """a matrix-vector record A @ b's cotangents for a batch g when only b takes one
    (jacrev through W @ x): as _matmul_vjp's _mm_batch(0, g, A, True, False, 1) makes
    them, a diagonal batch's rows of A scaled (A itself for a unit one), a dense
    batch times A (one GEMM); None: the rule decides"""
    cdef object A, v
    if len(aux) != 2 or aux[0] or not aux[1] or ins[0] < 0 or _wants(tp, ins[0], dep) \
            or not _wants(tp, ins[1], dep):
        return None
    A = tape_node(tp, ins[0])
    if type(A) is not Tensor or _tndim(<Tensor>A) != 2:
        return None
    if type(g) is diag_cls:
        v = (<DiagBase>g).v
        if type(v) is not Tensor or _tndim(<Tensor>v) != 1 or (<Tensor>v)._dtype != (<Tensor>A)._dtype \
                or _tdims(<Tensor>v)[0] != _tdims(<Tensor>A)[0]:
            return None
        if (<DiagBase>g).unit:
            return [None, A]
        return [None, reshape(v, ((<Tensor>v).size, 1)) * A]
    if type(g) is Tensor and _tndim(<Tensor>g) == 2 and (<Tensor>g)._dtype == (<Tensor>A)._dtype \
            and _tdims(<Tensor>g)[1] == _tdims(<Tensor>A)[0]:
        return [None, matmul(g, A)]
    return None


def reverse_sweep_b(Tape tp, dict seeds, int64_t stop, list want, object rule, object add,
                    bytes ew_plain, object diag_cls):
    """transforms.reverse_sweep's loop for cotangents with one batch dim (nb == 1: dense
    batches or Diag, diag_cls) in Cython (NOTE [ Batched reverse sweep ]); add(a, b):
    transforms._add, for sums with a Diag"""
    cdef list recs = tape_records(tp, stop, -1)
    cdef dict cot = dict(seeds)
    cdef set keep = set(want)
    cdef set dep = _dependents(recs, keep)
    cdef Py_ssize_t k, j, n = len(recs)
    cdef tuple rec, ins
    cdef int op
    cdef list res, r
    cdef const unsigned char *plain = ew_plain
    cdef Py_ssize_t nplain = len(ew_plain)
    cdef bint ok
    cdef DiagBase dg
    for k in range(n - 1, -1, -1):
        rec = <tuple>recs[k]
        op = rec[0]
        out = rec[1]
        g = cot.get(out)
        if g is None or out in keep:
            continue
        del cot[out]
        if out not in dep:
            continue
        ins = <tuple>rec[2]
        res = None
        if op == OP_MATMUL and nplain and len(ins) == 2:
            res = _mv_vjp_b(tp, ins, <tuple>rec[3], g, diag_cls, dep)
            if res is None:   # (NOTE [ Matmul's rules written once ])
                res = _matmul_vjp_g(tp, ins, <tuple>rec[3], g, dep, 1)
        elif type(g) is diag_cls and type((<DiagBase>g).v) is Tensor:
            v = (<DiagBase>g).v
            r = None
            if op < nplain and plain[op]:
                r = _ew_vjp_c(tp, op, ins, out, <Tensor>v, dep, 0, True)
            elif op == OP_POW and nplain:
                r = _pow_vjp_c(tp, ins, out, <Tensor>v, dep)
                if r is None and not _pow_const_h(tp, ins, dep):
                    r = _ew_vjp_c(tp, op, ins, out, <Tensor>v, dep, 0, True)
            elif op == OP_VIEW and len(ins) == 1 and ins[0] >= 0:
                xs = tape_info(tp, ins[0])[0]
                if _identity_view_aux(<tuple>rec[3], xs):
                    dg = DiagBase.__new__(diag_cls)
                    dg.v = reshape(v, xs)
                    dg.unit = (<DiagBase>g).unit
                    res = [dg]
            if r is not None:
                res = []
                for j in range(len(r)):
                    c = r[j]
                    if c is None:
                        res.append(None)
                    elif _tndim(<Tensor>c) and not tape_info(tp, ins[j])[0]:
                        # a 0-d input beside the diagonal batch: cotangent k is g_k's
                        # entry times its partial there (the rule's unbroadcast of the
                        # densified batch: one nonzero term a row)
                        res.append(reshape(c, ((<Tensor>c).size,)))
                    else:
                        dg = DiagBase.__new__(diag_cls)   # (NOTE [ Batch classes ])
                        dg.v = c
                        dg.unit = False
                        res.append(dg)
        elif type(g) is Tensor and op != OP_ADD and (op < nplain and plain[op] or
                                                     op == OP_POW and nplain and not _pow_const_h(tp, ins, dep)):
            res = _ew_vjp_c(tp, op, ins, out, <Tensor>g, dep, 1, False, True)   # (a dense batch)
        elif type(g) is Tensor and op == OP_POW and nplain:   # (by a constant: _pow_dx's partial)
            res = _pow_vjp_c(tp, ins, out, <Tensor>g, dep, 1)
        elif op == OP_SUM and len(ins) == 1 and type(g) is Tensor and ins[0] >= 0 and len(<tuple>rec[3]):
            # the rule's _spread: g (batch + out shape) back over the reduced axes
            res = [_sum_vjp_b(tp, ins[0], <tuple>rec[3], <Tensor>g) if ins[0] in dep else None]
        elif op == OP_ADD and len(ins) == 2 and type(g) is Tensor:
            ok = True
            res = [None, None]
            for j in range(2):
                if _wants(tp, ins[j], dep):
                    if not _same_shape_h(tp, ins[j], out):
                        ok = False
                        break
                    res[j] = g   # (the rule's unbroadcast of a batch of the output's shape)
            if not ok:
                res = _ew_vjp_c(tp, op, ins, out, <Tensor>g, dep, 1, False, True) \
                    if nplain and op < nplain and plain[op] else None
        if res is None and nplain and type(g) is diag_cls and (
                op < nplain and plain[op] or op == OP_POW and not _pow_const_h(tp, ins, dep)):
            # an elementwise record the diagonal path declined (an input broadcast to
            # the output): the Diag made dense, as _rev_record makes it when
            # _diag_vjp declines, and its dense batch summed down per input
            gd = g.dense()
            if type(gd) is Tensor:
                res = _ew_vjp_c(tp, op, ins, out, <Tensor>gd, dep, 1, False, True)
                if res is None:
                    g = gd   # (the rule densifies it anyway)
        if res is None and nplain and (op == OP_SUM or op == OP_MAX or op == OP_MIN or op == OP_VIEW
                                       or op == OP_UNVIEW or op == OP_GATHER or op == OP_SCATTER
                                       or op == OP_CAST or op == OP_CUMSUM or op == OP_CONCATENATE
                                       or op == OP_SETITEM or op == OP_PROD or op == OP_CUMPROD
                                       or op == OP_CROSS or op == OP_XENT):
            # the linear ops and max/min: a Diag made dense, as _rev_record makes it when
            # _diag_vjp declines (an identity view's Diag stayed diagonal above)
            gd = g.dense() if type(g) is diag_cls else g
            if type(gd) is Tensor:
                res = _lin_vjp_r(tp, op, ins, out, <tuple>rec[3], <Tensor>gd, dep, 1)
                if res is None and gd is not g:
                    g = gd   # (the rule densifies it anyway)
        if res is None:
            res = rule(rec, g, dep)
        for j in range(len(ins)):
            c = res[j]
            h = ins[j]
            if c is None or h < 0 or h not in dep:
                continue
            if tape_flags(tp, h) & 8:
                raise BackwardError("the gradient reached a value whose tape was consumed by an "
                                    "earlier backward(); pass retain_graph=True to that backward")
            prev = cot.get(h)
            if prev is None:
                cot[h] = c
            elif type(prev) is Tensor and type(c) is Tensor:
                cot[h] = prev + c
            else:
                cot[h] = add(prev, c)
    out = {}
    for h in want:
        v = cot.get(h)
        out[h] = v.dense() if type(v) is diag_cls else v
    return out


def ew_jvp(Tape tp, int op, cad_hid out, tuple ins, list ts, int nb):
    """The fused C jvp of an elementwise record: t_out = sum t_i * d_i in one pass
    (the tangents carry nb leading batch dims; not recorded).  None when the op has
    no fused row for this set of tangents."""
    return _ew_jvp(tp, op, out, ins, ts, nb)


cdef object _ew_jvp(Tape tp, int op, cad_hid out, tuple ins, list ts, int nb):
    cdef cad_hid hin[3]
    cdef int i, n = len(ins)
    if n > 3:
        return None
    for i in range(n):
        hin[i] = ins[i]
    return _ew_jvp_h(tp, op, out, hin, n, ts, nb)


cdef object _ew_jvp_h(Tape tp, int op, cad_hid out, const cad_hid *ins, int n, list ts, int nb):
    """_ew_jvp with the inputs' handles as a C array (n of them)"""
    cdef int i, d, mask = 0, dt, ond, xnd, fnd, k
    cdef cad_buf *ob
    cdef cad_buf *xb
    cdef cad_row row
    cdef cad_iter it
    cdef cnp.npy_intp dims[MAXDIM]
    cdef int64_t lshape[MAXDIM]
    cdef int64_t lst[MAXDIM]
    cdef cnp.ndarray res, ta
    cdef Tensor t
    cdef int st
    cdef cad_hid h
    cdef bint kord = False
    cdef int64_t ost[2]
    cdef cnp.npy_intp tdims[2]
    cdef cad_hid hv[3]
    cdef cnp.npy_intp s0, s1
    for i in range(n):
        if ts[i] is not None:
            mask |= 1 << i
    if n > 3:
        return None
    for i in range(n):   # the inputs' handles on the live tape
        h = ins[i]
        if h >= 0:
            _live(tp, &h)
        hv[i] = h
    tp = _live(tp, &out)
    ob = &tp.t.bufs[out]
    if ob.dtype != CAD_F64 and ob.dtype != CAD_F32:
        return None
    if ob.flags & BUF_CUDA:   # device records use the rules (their ops run on the device)
        return None
    dt = ob.dtype
    row = cad_jvp_row(op, mask, 0 if dt == CAD_F64 else 1)
    if row == NULL:   # (more than three inputs were declined above)
        return None
    ond = ob.ndim
    first = None
    for i in range(n):   # (a loop: a generator expression here cost ~1 us a record)
        if ts[i] is not None:
            first = ts[i]
            break
    fnd = nb + ond
    if fnd > MAXDIM or (nb and _tndim(<Tensor>first) < nb):
        return None
    for d in range(nb):
        dims[d] = _tdims(<Tensor>first)[d]
    for d in range(ond):
        dims[nb + d] = tp.t.meta[ob.meta + d]
    # NOTE [ Tangent layout ]: a batch of tangents laid out column-major (jacfwd's
    # basis pushed through a matmul is W's transpose, a view) is computed in its own
    # memory order, into a result with the same layout, so no operand is read across
    # rows (numpy's K order); jacfwd's final transpose then makes it C-ordered again
    if fnd == 2 and nb == 1 and not (<Tensor>first)._inline and _tndim(<Tensor>first) == 2:
        ta = <cnp.ndarray>(<Tensor>first)._arr
        # (strides' magnitudes by hand: `abs` here is this module's elementwise op,
        # which made two tensors and compared them, ~1.5 us a record)
        s0 = cnp.PyArray_STRIDES(ta)[0]
        s1 = cnp.PyArray_STRIDES(ta)[1]
        if s0 < 0:
            s0 = -s0
        if s1 < 0:
            s1 = -s1
        if 0 < s0 < s1 and \
                dims[0] > 1 and dims[1] > 1:
            kord = True
    if kord:
        tdims[0] = dims[1]
        tdims[1] = dims[0]
        res = _empty(2, tdims, dt).T
        ost[0] = 1
        ost[1] = dims[0]
    else:
        res = _empty(fnd, dims, dt)
    it.nop = 2 + 2 * n
    it.ndim = fnd
    for d in range(fnd):
        it.shape[d] = dims[d]
    if kord:
        cad_iter_operand(&it, 0, <char *>cnp.PyArray_DATA(res), _ESIZE[dt], fnd, <int64_t *>dims, &ost[0])
    else:
        cad_iter_operand(&it, 0, <char *>cnp.PyArray_DATA(res), _ESIZE[dt], fnd, <int64_t *>dims,
                         _contig(fnd, <int64_t *>dims))
    for i in range(n):
        if ts[i] is None:
            cad_iter_operand(&it, 1 + i, NULL, 8, 0, NULL, NULL)
            continue
        t = <Tensor>ts[i]
        if t._dtype != dt:
            return None
        xnd = _tndim(t) - nb
        # the tangent as batch + (1,)*(ond - xnd) + x shape, aligned with the output
        k = 0
        if t._inline:
            cad_iter_operand(&it, 1 + i, <char *>&t._sval, 8, 0, NULL, NULL)
            continue
        ta = <cnp.ndarray>t._arr
        for d in range(nb):
            lshape[k] = cnp.PyArray_DIMS(ta)[d]
            lst[k] = cnp.PyArray_STRIDES(ta)[d] // _ESIZE[dt]
            k += 1
        for d in range(ond - xnd):
            lshape[k] = 1
            lst[k] = 0
            k += 1
        for d in range(xnd):
            lshape[k] = cnp.PyArray_DIMS(ta)[nb + d]
            lst[k] = cnp.PyArray_STRIDES(ta)[nb + d] // _ESIZE[dt]
            k += 1
        cad_iter_operand(&it, 1 + i, <char *>cnp.PyArray_DATA(ta), _ESIZE[dt], k, lshape, lst)
    for i in range(n):
        if hv[i] < 0:
            cad_iter_operand(&it, 1 + n + i, NULL, 8, 0, NULL, NULL)
            continue
        xb = &tp.t.bufs[hv[i]]
        if (xb.flags & (BUF_INLINE | BUF_ARENA | BUF_INPUT)) or cad_owner(tp.t.meta, xb) != NULL:
            cad_iter_operand(&it, 1 + n + i, _bdata(xb), _ESIZE[xb.dtype], xb.ndim,
                             tp.t.meta + xb.meta, tp.t.meta + xb.meta + xb.ndim)
        else:
            cad_iter_operand(&it, 1 + n + i, NULL, 8, 0, NULL, NULL)
    if (ob.flags & (BUF_INLINE | BUF_ARENA | BUF_INPUT)) or cad_owner(tp.t.meta, ob) != NULL:
        cad_iter_operand(&it, 1 + 2 * n, _bdata(ob), _ESIZE[dt], ond, tp.t.meta + ob.meta,
                         tp.t.meta + ob.meta + ond)
    else:
        cad_iter_operand(&it, 1 + 2 * n, NULL, 8, 0, NULL, NULL)
    if kord:   # iterate in the result's memory order: the two dims swapped for every operand
        ost[0] = it.shape[0]
        it.shape[0] = it.shape[1]
        it.shape[1] = ost[0]
        for k in range(it.nop):
            ost[0] = it.st[k][0]
            it.st[k][0] = it.st[k][1]
            it.st[k][1] = ost[0]
    if cnp.PyArray_SIZE(res) >= 4096:
        with nogil:
            st = cad_iter_run_t(&it, row, NULL, NULL,
                                cad_par_min_heavy if cad_partial_heavy(op) else cad_par_min)
    else:
        st = cad_iter_run_t(&it, row, NULL, NULL, cad_par_min)
    return _wrap(res)


def add_diag_fresh(Tensor r, Tensor v):
    """r viewed as an (m, m) matrix += diag(v), in place; m = v.size.  Only for a
    result the caller has just made and no one else holds (a forward sweep's mixed
    diagonal and dense tangents: transforms._mixed_ew_fused).  False (r unchanged):
    r's layout is not a 2-D array nor a C-ordered one, another dtype, or a device
    tensor."""
    cdef cnp.ndarray a, vv
    cdef Py_ssize_t m = v.size, k, step, vst
    cdef char *p
    cdef char *q
    if r._inline or not isinstance(r._arr, cnp.ndarray) or r.size != m * m or r._dtype != v._dtype or \
            (r._dtype != CAD_F64 and r._dtype != CAD_F32) or \
            not (v._inline or isinstance(v._arr, cnp.ndarray)):   # (host memory only)
        return False
    a = <cnp.ndarray>r._arr
    if cnp.PyArray_NDIM(a) == 2:
        step = cnp.PyArray_STRIDES(a)[0] + cnp.PyArray_STRIDES(a)[1]
    elif cnp.PyArray_IS_C_CONTIGUOUS(a):
        step = (m + 1) * _ESIZE[r._dtype]
    else:
        return False
    p = <char *>cnp.PyArray_DATA(a)
    if v._inline:
        if r._dtype == CAD_F64:
            (<double *>p)[0] += v._sval
        else:
            (<float *>p)[0] += <float>v._sval
        return True
    vv = <cnp.ndarray>(<cnp.ndarray>v._arr).reshape(-1)
    q = <char *>cnp.PyArray_DATA(vv)
    vst = cnp.PyArray_STRIDES(vv)[0]
    if r._dtype == CAD_F64:
        for k in range(m):
            (<double *>(p + k * step))[0] += (<double *>(q + k * vst))[0]
    else:
        for k in range(m):
            (<float *>(p + k * step))[0] += (<float *>(q + k * vst))[0]
    return True
