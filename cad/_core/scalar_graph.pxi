# NOTE [ Scalar second order in C ] (cad/ops/scalar_graph.py): the recording reverse
# sweep over 0-d float64 records of elementwise ops, with each partial run from its
# compiled program.  Included by _engine.pyx after tapeview.pxi.

cdef enum:
    SG_SLOTS = 64
    SG_CONST = 0
    SG_UN = 1
    SG_BIN = 2
    SG_VUN = 3
    SG_VBIN = 4
    SG_VF = 5
    SG_CMP = 6
    SG_SEL = 7
    SG_COPY = 8

cdef struct sg_val:
    cad_hid h     # the tape handle, -1 for an untracked constant
    double v
    bint rg       # tracked (the outer transform differentiates through it)

cdef int64_t *_sg_prog = NULL
cdef int64_t _sg_off[OP_COUNT][2]
cdef int64_t _sg_len[OP_COUNT][2]
cdef int8_t _sg_triv[OP_COUNT][2]
cdef int _sg_reads[OP_COUNT][2]
cdef bint _sg_ready = False
cdef object _sg_keep = None


def set_scalar_programs(cnp.ndarray progs, cnp.ndarray off, cnp.ndarray length, cnp.ndarray triv,
                        cnp.ndarray reads):
    """install the compiled partials (cad/ops/scalar_graph.tables())"""
    global _sg_prog, _sg_ready, _sg_keep
    cdef int op, i
    if progs.dtype != _np.int64 or progs.ndim != 2 or progs.shape[1] != 4 or not progs.flags.c_contiguous:
        raise ValueError("set_scalar_programs: programs")
    if off.shape[0] != OP_COUNT or off.shape[1] != 2:
        raise ValueError("set_scalar_programs: tables")
    for op in range(OP_COUNT):
        for i in range(2):
            _sg_off[op][i] = off[op, i] if length[op, i] <= SG_SLOTS - 4 else -1
            _sg_len[op][i] = length[op, i]
            _sg_triv[op][i] = triv[op, i]
            _sg_reads[op][i] = reads[op, i]
    _sg_keep = progs
    _sg_prog = <int64_t *>cnp.PyArray_DATA(progs)
    _sg_ready = True


cdef int _sg_emit(Tape tp, int op, int n, sg_val *a, sg_val *b, sg_val *res) except -1:
    """record op(a[, b]) -> res (res.v already computed), registering operands as
    _rec_scalar does: a constant whose value the record's derivative reads is kept"""
    cdef int need = 0
    cdef cad_hid hs[2]
    if a.rg:
        need |= cad_uses_mask(op, 0)
    if n == 2 and b.rg:
        need |= cad_uses_mask(op, 1)
    hs[0] = a.h if a.h >= 0 else (_push_scalar(tp, a.v, 0) if need & 1 else -1)
    if n == 2:
        hs[1] = b.h if b.h >= 0 else (_push_scalar(tp, b.v, 0) if need & 2 else -1)
    res.h = _push_scalar(tp, res.v, BUF_RG)
    res.rg = True
    _push_rec(tp, op, res.h, hs, n, NULL, 0)
    return 0


cdef int _sg_op(Tape tp, int op, int n, sg_val *a, sg_val *b, sg_val *res) except -1:
    """res = op(a[, b]): a record when an operand is tracked, else a constant"""
    res.v = cad_fwd_sfn[op](a.v, 0.0) if n == 1 else cad_fwd_sfn[op](a.v, b.v)
    if a.rg or (n == 2 and b.rg):
        _sg_emit(tp, op, n, a, b, res)
    else:
        res.h = -1
        res.rg = False
    return 0


cdef inline double _sg_vf(int64_t code, double x) noexcept nogil:
    if code == 0:
        return 1.0 if x > 0 else (-1.0 if x < 0 else (x if x != x else 0.0))
    if code == 1:
        return c_floor(x)
    if code == 2:
        return c_ceil(x)
    if code == 3:
        return 1.0 if x != x else 0.0
    return 1.0 if (x == x and x - x == 0) else 0.0


cdef inline double _sg_cmp(int64_t code, double x, double y) noexcept nogil:
    cdef bint r
    if code == 0:
        r = x > y
    elif code == 1:
        r = x >= y
    elif code == 2:
        r = x < y
    elif code == 3:
        r = x <= y
    elif code == 4:
        r = x == y
    elif code == 5:
        r = x != y
    elif code == 6:
        r = x != 0 and y != 0
    else:
        r = x != 0 or y != 0
    return 1.0 if r else 0.0


cdef int _sg_run(Tape tp, const int64_t *p, int64_t n, sg_val *s) except -1:
    """run a partial's program on slots s[0..2] (inputs, output); its value is s[3 + n - 1]"""
    cdef int64_t k, kind, code, a, b, slot
    cdef sg_val *d
    cdef unsigned char need[SG_SLOTS]
    for k in range(n):   # values (and which are tracked), no records yet
        kind = p[4 * k]
        code = p[4 * k + 1]
        a = p[4 * k + 2]
        b = p[4 * k + 3]
        d = &s[3 + k]
        d.h = -1
        d.rg = False
        if kind == SG_CONST:
            memcpy(&d.v, &a, 8)
        elif kind == SG_UN:
            d.v = cad_fwd_sfn[<int>code](s[a].v, 0.0)
            d.rg = s[a].rg
        elif kind == SG_BIN:
            d.v = cad_fwd_sfn[<int>code](s[a].v, s[b].v)
            d.rg = s[a].rg or s[b].rg
        elif kind == SG_VUN:
            d.v = cad_fwd_sfn[<int>code](s[a].v, 0.0)
        elif kind == SG_VBIN:
            d.v = cad_fwd_sfn[<int>code](s[a].v, s[b].v)
        elif kind == SG_VF:
            d.v = _sg_vf(code, s[a].v)
        elif kind == SG_CMP:
            d.v = _sg_cmp(code, s[a].v, s[b].v)
        elif kind == SG_SEL:
            if s[code].v != 0:
                d.v = s[a].v
                d.rg = s[a].rg
            else:
                d.v = s[b].v
                d.rg = s[b].rg
        else:   # SG_COPY
            d.v = s[a].v
            d.rg = s[a].rg
    for k in range(3 + n):
        need[k] = 0
    need[3 + n - 1] = 1
    for k in range(n - 1, -1, -1):   # what the result depends on, through the branches taken
        if not need[3 + k]:
            continue
        kind = p[4 * k]
        a = p[4 * k + 2]
        b = p[4 * k + 3]
        if kind == SG_UN or kind == SG_COPY:
            need[a] = 1
        elif kind == SG_BIN:
            need[a] = 1
            need[b] = 1
        elif kind == SG_SEL:
            need[a if s[p[4 * k + 1]].v != 0 else b] = 1
    for k in range(n):   # records for the tracked values the result needs
        slot = 3 + k
        d = &s[slot]
        if not need[slot] or not d.rg:
            continue
        kind = p[4 * k]
        code = p[4 * k + 1]
        a = p[4 * k + 2]
        b = p[4 * k + 3]
        if kind == SG_UN:
            _sg_emit(tp, <int>code, 1, &s[a], NULL, d)
        elif kind == SG_BIN:
            _sg_emit(tp, <int>code, 2, &s[a], &s[b], d)
        elif kind == SG_SEL:
            d.h = s[a].h if s[code].v != 0 else s[b].h
        elif kind == SG_COPY:
            d.h = s[a].h
    return 0


cdef int _sg_term(Tape tp, int op, int j, sg_val *s, sg_val *seed, sg_val *c) except -1:
    """c = seed * d out / d input j of a record of op (slots s loaded): the seed itself
    or its negation for the partials 1 and -1, else the partial's program times it"""
    cdef int8_t triv = _sg_triv[op][j]
    if triv == 1:
        c[0] = seed[0]
    elif triv == -1:
        _sg_op(tp, OP_NEG, 1, seed, NULL, c)
    else:
        _sg_run(tp, _sg_prog + 4 * _sg_off[op][j], _sg_len[op][j], s)
        _sg_op(tp, OP_MUL, 2, seed, &s[3 + _sg_len[op][j] - 1], c)
    return 0


cdef inline void _sg_load(cad_tape *T, cad_hid h, sg_val *v) noexcept:
    if h >= 0:
        v.h = h
        v.v = T.bufs[h].sval
        v.rg = (T.bufs[h].flags & BUF_RG) != 0
    else:
        v.h = -1
        v.v = NAN
        v.rg = False


cdef Tensor _sg_tensor(Tape tp, sg_val *c):
    cdef Tensor r = _new_inline(c.v)
    if c.rg:
        r._tape = tp
        r._h = c.h
        r._rg = True
    return r


cdef bint _sg_seed(Tape tp, object val, sg_val *c) except -1:
    """a seed (cotangent or tangent) as a scalar value: a float, or an inline tensor
    (tracked on tp, or untracked); False for anything else"""
    cdef Tensor t
    if type(val) is float or type(val) is int:
        c.h = -1
        c.v = <double>val
        c.rg = False
        return True
    if type(val) is not Tensor or not (<Tensor>val)._inline:
        return False
    t = <Tensor>val
    c.v = t._sval
    if t._rg:
        if t._tape is None:   # a leaf: registered on tp, as the rule's first op on it would
            c.h = _handle(tp, t, t._sval, True)
        elif _resolved(t) is tp:
            c.h = t._h
        else:
            return False
        c.rg = True
    else:
        c.h = -1
        c.rg = False
    return True


cdef bint _sg_eligible(cad_tape *T, cad_rec *r, unsigned char *mark) noexcept:
    """is r a 0-d float64 record of an elementwise op whose partials (for the inputs
    marked, which carry a derivative) have programs that read only kept values?"""
    cdef int op = r.op, j, n
    cdef cad_hid h
    cdef int fl
    if r.nargs > 2 or r.nargs < 1 or op < 0 or op >= OP_COUNT or r.aux != -1 \
            or not (T.bufs[r.out].flags & BUF_INLINE) or T.bufs[r.out].dtype != CAD_F64:
        return False
    for j in range(r.nargs):
        h = T.args[r.arg + j]
        if h < 0:
            continue
        fl = T.bufs[h].flags
        if not (fl & BUF_INLINE) or T.bufs[h].dtype != CAD_F64:
            return False
        if mark[h]:
            if (fl & BUF_DEAD) or _sg_off[op][j] < 0:
                return False
            if _sg_triv[op][j] == 0:
                for n in range(2):
                    if (_sg_reads[op][j] >> n) & 1 and (n >= r.nargs or T.args[r.arg + n] < 0):
                        return False
    return True


def scalar_graph_forward(Tape tp, dict tangents, int64_t start, list want):
    """The recording forward sweep (transforms.forward_sweep with nb == 0, not fused)
    over records start.. of tp when every record a tangent reaches is a 0-d float64
    record of an elementwise op with compiled partials (NOTE [ Scalar second order in
    C ]): t_out = sum_i t_i * d_i, recorded on tp as the Python rules record it.  The
    tangents of the handles in `want` (None where none reaches), or None when the
    segment or the tangents are not of that kind (nothing was recorded then)."""
    cdef cad_tape *T = &tp.t
    cdef int64_t nb0 = T.nbufs, nr = T.nrecs, i
    cdef int j, n, op
    cdef cad_hid h, out
    cdef cad_rec *r
    cdef unsigned char *has = NULL
    cdef sg_val *tan = NULL
    cdef sg_val s[SG_SLOTS]
    cdef sg_val c, acc, prev
    cdef bint any_t
    if not _sg_ready or cad_rec_mode or cad_grad_off or tp._into is not None or tp._busy \
            or tp._consumed or start < 0:
        return None
    for h in want:
        if h < 0 or h >= nb0:
            return None
    has = <unsigned char *>calloc(nb0 + 1, 1)
    tan = <sg_val *>malloc((nb0 + 1) * sizeof(sg_val))
    if has == NULL or tan == NULL:
        free(has)
        free(tan)
        raise MemoryError("cad: scalar_graph_forward")
    try:
        for key, val in tangents.items():
            h = key
            if h < 0 or h >= nb0 or not _sg_seed(tp, val, &c):
                return None
            tan[h] = c
            has[h] = 1
        for i in range(start, nr):   # every record a tangent reaches is of the kind (marks only)
            r = &T.recs[i]
            any_t = False
            for j in range(r.nargs):
                h = T.args[r.arg + j]
                if h >= 0 and has[h]:
                    any_t = True
            if not any_t:
                continue
            if not _sg_eligible(T, r, has):
                return None
            if not has[r.out]:
                has[r.out] = 2   # reached (a tangent will be computed): not yet set
        for h in range(nb0):
            if has[h] == 2:
                has[h] = 0
        for i in range(start, nr):
            r = &T.recs[i]
            op = r.op
            n = r.nargs
            any_t = False
            for j in range(n):
                h = T.args[r.arg + j]
                if h >= 0 and has[h]:
                    any_t = True
            if not any_t:
                continue
            out = r.out
            for j in range(n):
                _sg_load(T, T.args[r.arg + j], &s[j])
            if n == 1:
                _sg_load(T, -1, &s[1])
            _sg_load(T, out, &s[2])
            acc.h = -1
            acc.v = 0.0
            acc.rg = False
            any_t = False
            for j in range(n):
                h = T.args[T.recs[i].arg + j]   # the tape's arrays move as records are pushed
                if h < 0 or not has[h]:
                    continue
                if _sg_triv[op][j] == 2:
                    continue
                _sg_term(tp, op, j, s, &tan[h], &c)
                if any_t:
                    prev = acc
                    _sg_op(tp, OP_ADD, 2, &prev, &c, &acc)
                else:
                    acc = c
                    any_t = True
            if any_t:
                tan[out] = acc
                has[out] = 1
        res = {}
        for h in want:
            res[h] = _sg_tensor(tp, &tan[h]) if has[h] else None
        return res
    finally:
        free(has)
        free(tan)


def scalar_graph_sweep(Tape tp, dict seeds, int64_t stop, list want):
    """The recording reverse sweep (transforms.reverse_sweep with nb == 0) over records
    stop.. of tp when every record it differentiates is a 0-d float64 record of an
    elementwise op with compiled partials (NOTE [ Scalar second order in C ]): the
    cotangents of the handles in `want` as tensors (None where none reaches), their
    records on tp.  None when the segment or the seeds are not of that kind (the
    Python sweep runs then; nothing was recorded)."""
    cdef cad_tape *T = &tp.t
    cdef int64_t nb0 = T.nbufs, nr = T.nrecs, i
    cdef int j, n, op
    cdef cad_hid h, out
    cdef cad_rec *r
    cdef unsigned char *dep = NULL
    cdef unsigned char *keep = NULL
    cdef unsigned char *has = NULL
    cdef sg_val *cot = NULL
    cdef sg_val s[SG_SLOTS]
    cdef sg_val g, c, prev
    if not _sg_ready or cad_rec_mode or cad_grad_off or tp._into is not None or tp._busy \
            or tp._consumed or stop < 0:
        return None
    for h in want:
        if h < 0 or h >= nb0:
            return None
    dep = <unsigned char *>calloc(nb0 + 1, 3)
    cot = <sg_val *>malloc((nb0 + 1) * sizeof(sg_val))
    if dep == NULL or cot == NULL:
        free(dep)
        free(cot)
        raise MemoryError("cad: scalar_graph_sweep")
    keep = dep + (nb0 + 1)
    has = keep + (nb0 + 1)
    try:
        for h in want:
            dep[h] = 1
            keep[h] = 1
        for i in range(stop, nr):   # values computed from a wanted one
            r = &T.recs[i]
            if dep[r.out]:
                continue
            for j in range(r.nargs):
                h = T.args[r.arg + j]
                if h >= 0 and dep[h]:
                    dep[r.out] = 1
                    break
        for i in range(stop, nr):   # every record the sweep may differentiate is of the kind
            r = &T.recs[i]
            if dep[r.out] and not keep[r.out] and not _sg_eligible(T, r, dep):
                return None
        for key, val in seeds.items():
            h = key
            if h < 0 or h >= nb0 or not _sg_seed(tp, val, &c):
                return None
            cot[h] = c
            has[h] = 1
        for i in range(nr - 1, stop - 1, -1):
            r = &T.recs[i]
            out = r.out
            if not has[out] or keep[out]:
                continue
            g = cot[out]
            has[out] = 0
            if not dep[out]:
                continue
            op = r.op
            n = r.nargs
            for j in range(n):
                _sg_load(T, T.args[r.arg + j], &s[j])
            if n == 1:
                _sg_load(T, -1, &s[1])
            _sg_load(T, out, &s[2])
            for j in range(n):
                h = T.args[T.recs[i].arg + j]   # the tape's arrays move as records are pushed
                if h < 0 or not dep[h] or not (T.bufs[h].flags & BUF_RG):
                    continue
                if _sg_triv[op][j] == 2:
                    continue
                _sg_term(tp, op, j, s, &g, &c)
                if has[h]:
                    prev = cot[h]
                    _sg_op(tp, OP_ADD, 2, &prev, &c, &cot[h])
                else:
                    cot[h] = c
                    has[h] = 1
        res = {}
        for h in want:
            res[h] = _sg_tensor(tp, &cot[h]) if has[h] else None
        return res
    finally:
        free(dep)
        free(cot)
