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
cdef bint _sg_tensor_ok[OP_COUNT][2]   # the program runs on tensors (_ew_vjp_c)
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
    cdef int64_t k, kind, a, b
    cdef bint cst[SG_SLOTS]
    for op in range(OP_COUNT):
        for i in range(2):
            _sg_off[op][i] = off[op, i] if length[op, i] <= SG_SLOTS - 4 else -1
            _sg_len[op][i] = length[op, i]
            _sg_triv[op][i] = triv[op, i]
            _sg_reads[op][i] = reads[op, i]
            _sg_tensor_ok[op][i] = _sg_off[op][i] >= 0 and triv[op, i] == 0
            if _sg_tensor_ok[op][i]:
                cst[0] = cst[1] = cst[2] = False
                for k in range(_sg_len[op][i]):
                    kind = progs[_sg_off[op][i] + k, 0]
                    a = progs[_sg_off[op][i] + k, 2]
                    b = progs[_sg_off[op][i] + k, 3]
                    cst[3 + k] = kind == SG_CONST or (kind == SG_COPY and cst[a])
                    if (kind == SG_UN or kind == SG_VUN) and cst[a]:
                        # a constant's negation: folded (-1 in "-1 / y")
                        cst[3 + k] = True
                        if progs[_sg_off[op][i] + k, 1] != OP_NEG:
                            _sg_tensor_ok[op][i] = False
                    elif (kind == SG_BIN or kind == SG_VBIN or kind == SG_CMP) and cst[a] and cst[b]:
                        _sg_tensor_ok[op][i] = False   # (Python would fold them)
                    elif (kind == SG_VF and cst[a]) or (kind == SG_SEL and cst[progs[_sg_off[op][i] + k, 1]]):
                        _sg_tensor_ok[op][i] = False
                    elif kind == SG_CMP and progs[_sg_off[op][i] + k, 1] > 7:
                        _sg_tensor_ok[op][i] = False
                    elif kind != SG_CONST and kind != SG_UN and kind != SG_BIN and kind != SG_COPY \
                            and kind != SG_VUN and kind != SG_VBIN and kind != SG_CMP and kind != SG_SEL \
                            and kind != SG_VF:
                        _sg_tensor_ok[op][i] = False
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


# NOTE [ Elementwise vjps in the reverse sweep ]
# reverse_sweep_r (the recording reverse sweep of array code: grad(grad(f)),
# hessian's reverse half, create_graph) ran an elementwise record's Python rule:
# a Ctx, the partial's expression evaluated, g * partial, unbroadcast: ~3.7 us for
# tanh's three ops of ~0.45 us each.  The same partials' compiled programs (the
# scalar ones above) run here on tensors: each instruction one engine op
# (_ew1/_ew2, recording as the rule's ops record), with the rule's spellings kept so
# the records are the rule's own: a name times itself is `square` (the rules'
# _squares), `** 2` and `** 0.5` are square and sqrt (Tensor.__pow__), a constant
# is a Python float (a negated one folded, as Python folds `-1`); comparisons, & and
# |, select, sign/floor/ceil/isnan/isfinite run as the rule's expression runs them
# (Tensor's operators, where, the engine's functions), and a partial of bools
# (relu's x > 0) is cast to the output's dtype as the rule's is.  Programs with an
# op of constants alone (Python would fold it) take the rule; so do inputs of
# another dtype, values the partial reads that were not kept, and ops with a
# special-case Python partial (the caller's `plain` table: pow keeps _pow_dx, and
# takes the programs only where _pow_dx does not apply: a tracked or array
# exponent).  An input broadcast to the output gets its term summed down as the
# rule's unbroadcast does, right after the term (_unbroadcast; bcast).  pow by a
# constant, 1-D/2-D matmul (below) and views (reverse_sweep_r: the window's adjoint,
# `unview`) are written out as their rules compute them.
# test_ew_vjp_c compares the records and the derivatives with the rules' for every
# elementwise op.

cdef int[6] _SG_CMP_OPS = [OP_GT, OP_GE, OP_LT, OP_LE, OP_EQ, OP_NE]
cdef int[6] _SG_CMP_SWAP = [OP_LT, OP_LE, OP_GT, OP_GE, OP_EQ, OP_NE]   # (c op x: x's reflected op)


cdef object _tensor_prog(int op, int j, list slots):
    """run the program of d out / d input j on tensors (slots 0-2: the inputs' and
    the output's values); its result.  The ops the rule's expression makes
    (_rules.py's ew_rules: the vocabulary of _env over the operators of Tensor):
    comparisons and & | as Tensor's operators (a constant on the left: the reflected
    one, as Python calls it), select as where, sign/floor/ceil/isnan/isfinite as
    the engine's functions; the value-only kinds (under a comparison or select's
    condition) are the same ops."""
    cdef const int64_t *p = _sg_prog + 4 * _sg_off[op][j]
    cdef int64_t n = _sg_len[op][j], k, kind, code, a, b
    cdef double c
    for k in range(n):
        kind = p[4 * k]
        code = p[4 * k + 1]
        a = p[4 * k + 2]
        b = p[4 * k + 3]
        if kind == SG_CONST:
            memcpy(&c, &a, 8)
            slots.append(c)
        elif kind == SG_UN or kind == SG_VUN:
            if type(slots[a]) is float:   # (-c: a constant, as Python folds it)
                slots.append(-<double>slots[a])
            else:
                slots.append(_ew1(<int>code, slots[a]))
        elif kind == SG_CMP:
            if code == 6 or code == 7:   # (& and |: Tensor.__and__/__or__)
                if type(slots[a]) is Tensor:
                    slots.append(_bitop(OP_LOGICAL_AND if code == 6 else OP_LOGICAL_OR,
                                        _np.bitwise_and if code == 6 else _np.bitwise_or, slots[a], slots[b]))
                else:
                    slots.append(_bitop(OP_LOGICAL_AND if code == 6 else OP_LOGICAL_OR,
                                        _np.bitwise_and if code == 6 else _np.bitwise_or, slots[b], slots[a]))
            elif type(slots[a]) is Tensor:
                slots.append(_boolop(_SG_CMP_OPS[code], (slots[a], slots[b])))
            else:
                slots.append(_boolop(_SG_CMP_SWAP[code], (slots[b], slots[a])))
        elif kind == SG_SEL:
            slots.append(where(slots[code], slots[a], slots[b]))
        elif kind == SG_VF:
            slots.append((sign, floor, ceil, isnan, isfinite)[code](slots[a]))
        elif kind == SG_BIN or kind == SG_VBIN:
            if code == OP_MUL and a == b and a < 3:   # (the rules' square(x) for x * x)
                slots.append(_ew1(OP_SQUARE, slots[a]))
            elif code == OP_POW and type(slots[b]) is float and type(slots[a]) is Tensor and \
                    (<double>slots[b] == 2.0 or <double>slots[b] == 0.5):   # (Tensor.__pow__)
                slots.append(_ew1(OP_SQUARE if <double>slots[b] == 2.0 else OP_SQRT, slots[a]))
            else:
                slots.append(_ew2(<int>code, slots[a], slots[b]))
        else:   # SG_COPY
            slots.append(slots[a])
    return slots[3 + n - 1]


cdef object _ew_vjp_c(Tape tp, int op, tuple ins, object out, Tensor g, set dep, int nb=0,
                      bint scalar_ins=False, bint bcast=False):
    """the cotangents of an elementwise record's inputs (NOTE [ Elementwise vjps in
    the reverse sweep ]), a list as the rule returns; None: the rule decides
    (nothing has been recorded then).  nb = 1: g is a batch (a leading dim of any
    size over the output's shape; the partials broadcast over it, as in the rule).
    scalar_ins: an input may be 0-d (of the output's dtype) where the output is not;
    its entry is then g times its partial, of the output's shape, not summed (the
    batched sweep's diagonal batch: reverse_sweep_b sums it).  bcast: an input may
    have any shape that broadcasts to the output's (of its dtype); its cotangent is
    summed down to it (the rule's unbroadcast)"""
    cdef int n = len(ins), j
    cdef bint want[2]
    cdef list unb = None
    cdef tuple oshape
    cdef cad_hid ho
    cdef Tape to
    if n == 3 and (op == OP_WHERE or op == OP_CLIP) and not scalar_ins:
        return _ew3_vjp(tp, op, ins, out, g, dep, nb, bcast)
    if n < 1 or n > 2 or not _sg_ready:
        return None
    if nb == 0:
        if not _tensor_like_h(tp, g, out):   # (g of the output's shape and dtype)
            return None
    else:
        ho = out
        to = _live(tp, &ho)
        if nb != 1 or g._dtype != to.t.bufs[ho].dtype or not _dims_are(g, 1, &to.t, &to.t.bufs[ho], -1):
            return None
    for j in range(n):
        want[j] = _sg_triv[op][j] != 2 and _wants(tp, ins[j], dep)
        if bcast and want[j] and not _same_shape_h(tp, ins[j], out):
            if unb is None:
                unb = [None] * n
                oshape = tape_info(tp, out)[0]
            unb[j] = tape_info(tp, ins[j])[0]
            if len(<tuple>unb[j]) > len(oshape):
                return None
    if unb is not None:
        return _ew_terms(tp, op, ins, out, [g] * n, want, 2, unb, nb)
    return _ew_terms(tp, op, ins, out, [g] * n, want, scalar_ins)


# where(c, x, y) and clip(x, lo, hi) have three inputs, beyond the programs' two:
# their partials are the rule's own functions of the table's expressions
# (_rules.py's ew_rules: op.partials, installed by set_rule_partials), each cast
# to the output's dtype as the rule's partial is, then the rule's products, sums
# and unbroadcast.

cdef list _RULE_PARTIALS = None   # per op code: op.partials (None: not elementwise)


def set_rule_partials(list partials):
    """install the rules' partial functions (transforms._tables)"""
    global _RULE_PARTIALS
    _RULE_PARTIALS = partials


cdef bint _rule_partial_ok(Tape tp, int op, int j, tuple ins, object out):
    """can _rule_partial give input j's partial: the function exists and every value
    it reads was kept, on the CPU?"""
    cdef object v
    if _RULE_PARTIALS is None or _RULE_PARTIALS[op] is None or j >= len(<list>_RULE_PARTIALS[op]):
        return False
    e = (<list>_RULE_PARTIALS[op])[j]
    if e is None:
        return False
    for k in <tuple>e[1]:
        if ins[k] < 0:
            return False
        v = tape_node(tp, ins[k])
        if type(v) is not Tensor or (<Tensor>v)._dev != 0:
            return False
    if e[2]:
        v = tape_node(tp, out)
        if type(v) is not Tensor or (<Tensor>v)._dev != 0:
            return False
    return True


cdef object _rule_partial(Tape tp, int op, int j, tuple ins, object out, int odt):
    """d out / d input j by the rule's own function (after _rule_partial_ok), cast
    to the output's dtype as the rule's partial is"""
    e = (<list>_RULE_PARTIALS[op])[j]
    vals = [tape_node(tp, ins[k]) for k in <tuple>e[1]]
    if e[2]:
        vals.append(tape_node(tp, out))
    d = e[0](*vals)
    if type(d) is Tensor and (<Tensor>d)._dtype != odt:
        d = cast(d, _DTYPES[odt])
    return d


cdef list _ew3_vjp(Tape tp, int op, tuple ins, object out, Tensor g, set dep, int nb, bint bcast):
    """where's and clip's cotangents as their rule computes them (g * partial,
    unbroadcast; nb batch dims); None: the rule decides (nothing recorded then)"""
    cdef int j, odt
    cdef list res
    cdef tuple oinfo = tape_info(tp, out), xs
    odt = oinfo[1]
    if g._dev != 0 or g._dtype != odt or _tndim(g) != nb + len(<tuple>oinfo[0]) or g.shape[nb:] != oinfo[0]:
        return None
    for j in range(3):
        if (op != OP_WHERE or j != 0) and _wants(tp, ins[j], dep):
            if (not bcast and not _same_shape_h(tp, ins[j], out)) or not _rule_partial_ok(tp, op, j, ins, out):
                return None
    res = [None, None, None]
    for j in range(3):
        if (op == OP_WHERE and j == 0) or not _wants(tp, ins[j], dep):
            continue
        xs = tape_info(tp, ins[j])[0]
        res[j] = _unbroadcast(g * _rule_partial(tp, op, j, ins, out, odt), xs, nb)
    return res


cdef object _ew3_jvp(Tape tp, int op, tuple ins, object out, list ts):
    """where's and clip's tangent (no batch dim) as their rule computes it (t *
    partial summed in input order, expanded to the output); None: the rule decides"""
    cdef int j, odt
    cdef tuple oinfo = tape_info(tp, out)
    cdef object acc = None, t
    odt = oinfo[1]
    for j in range(3):
        t = ts[j]
        if t is not None and (op != OP_WHERE or j != 0) and \
                (type(t) is not Tensor or (<Tensor>t)._dev != 0 or (<Tensor>t)._dtype != odt
                 or not _rule_partial_ok(tp, op, j, ins, out)):
            return None
    for j in range(3):
        t = ts[j]
        if t is None or (op == OP_WHERE and j == 0):
            continue
        c = t * _rule_partial(tp, op, j, ins, out, odt)
        acc = c if acc is None else acc + c
    if acc is not None and (<Tensor>acc).shape != oinfo[0]:
        acc = expand(acc, oinfo[0])
    return acc


cdef object _unbroadcast(Tensor c, tuple shape, int nb):
    """_rules.py's unbroadcast: c (nb batch dims + a shape shape broadcasts to)
    summed down to the batch dims + shape, the same ops"""
    cdef tuple cs = c.shape, want
    cdef Py_ssize_t lead = len(cs) - nb - len(shape), d
    cdef list axes
    if nb == 0 and cs == shape:
        return c
    axes = list(range(nb, nb + lead))
    for d in range(len(shape)):
        if shape[d] == 1 and cs[nb + lead + d] != 1:
            axes.append(nb + lead + d)
    if axes:
        c = reduce(OP_SUM, c, tuple(axes), True)
    want = cs[:nb] + shape
    if c.shape != want:
        c = reshape(c, want)
    return c


cdef object _ew_jvp_r(Tape tp, int op, tuple ins, object out, list ts):
    """an elementwise record's tangent from its inputs' tangents ts (no batch dim),
    the ops its jvp rule (_rules.py's ew_rules) records: t, -t or t * partial per
    input with a tangent, in input order, summed (NOTE [ Elementwise vjps in the
    reverse sweep ]: the partials' programs); None: the rule decides"""
    cdef int n = len(ins), j
    cdef bint want[2]
    cdef list terms
    cdef tuple oinfo
    cdef object acc = None
    if n == 3 and (op == OP_WHERE or op == OP_CLIP):
        return _ew3_jvp(tp, op, ins, out, ts)
    if n < 1 or n > 2 or not _sg_ready:
        return None
    for j in range(n):
        want[j] = ts[j] is not None and _sg_triv[op][j] != 2
        if want[j] and (type(ts[j]) is not Tensor or not _tensor_like_h(tp, <Tensor>ts[j], ins[j])):
            return None
    oinfo = tape_info(tp, out)
    terms = _ew_terms(tp, op, ins, out, ts, want, 2)
    if terms is None:
        return None
    for j in range(n):
        if terms[j] is not None:
            acc = terms[j] if acc is None else _ew2(OP_ADD, acc, terms[j])
    if acc is not None and (<Tensor>acc).shape != oinfo[0]:
        acc = expand(acc, oinfo[0])   # (full_shape: a tangent broadcast to the output)
    return acc


cdef list _ew_terms(Tape tp, int op, tuple ins, object out, list ms, bint *want, int scalar_ins,
                    list unb=None, int nb=0):
    """ms[j] times d out / d input j for each input j wanted (ms[j] itself or its
    negation for a partial of 1 or -1), in input order, the ops the rules record;
    None (nothing recorded): an input the programs cannot take (see _ew_vjp_c).
    scalar_ins: 1, a wanted input may be 0-d where the output is not (_ew_vjp_c); 2,
    of any shape that broadcasts to the output's (a jvp: ms[j] has the input's shape
    and the products broadcast as the rule's do); either of the output's dtype.
    unb: a vjp's per-input shapes (None: the output's), each term summed down to its
    input's as the rule's unbroadcast does, right after it (nb batch dims)"""
    cdef int n = len(ins), j, s
    cdef int8_t tr
    cdef list res, slots
    cdef object v, d
    slots = [None, None, None]
    for j in range(n):
        if not want[j]:
            continue
        tr = _sg_triv[op][j]
        if not _same_info_h(tp, ins[j], out):
            if not scalar_ins:
                return None
            xi = tape_info(tp, ins[j])
            if (scalar_ins == 1 and len(<tuple>xi[0]) != 0) or xi[1] != tape_info(tp, out)[1]:
                return None
        if tr != 0:
            continue
        if not _sg_tensor_ok[op][j]:
            return None
        for s in range(3):
            if (_sg_reads[op][j] >> s) & 1 and slots[s] is None:
                h = out if s == 2 else (ins[s] if s < n else -1)
                if h < 0:
                    return None
                v = tape_node(tp, h)
                if v is None:
                    return None
                slots[s] = v
    res = [None] * n
    for j in range(n):
        if not want[j]:
            continue
        tr = _sg_triv[op][j]
        if tr == 1:
            res[j] = ms[j]
        elif tr == -1:
            res[j] = _ew1(OP_NEG, ms[j])
        else:
            d = _tensor_prog(op, j, list(slots))
            if type(d) is Tensor and (<Tensor>d)._dtype != (<Tensor>ms[j])._dtype:
                # (a comparison's bools: the rule's cast to the output's dtype, which
                # ms[j] has: _ew_vjp_c's and _ew_jvp_r's checks)
                d = cast(d, _DTYPES[(<Tensor>ms[j])._dtype])
            res[j] = _ew2(OP_MUL, ms[j], d)
        if unb is not None and unb[j] is not None:
            res[j] = _unbroadcast(res[j], <tuple>unb[j], nb)
    return res


cdef object _pow_vjp_c(Tape tp, tuple ins, object out, Tensor g, set dep, int nb=0):
    """pow's cotangents for a constant exponent, as its rule computes them with
    _pow_dx (g * (x ** (c - 1) * c); g: nb batch dims); None: the rule decides"""
    cdef double c
    if len(ins) != 2 or ins[1] < 0 or _wants(tp, ins[1], dep) or not _wants(tp, ins[0], dep):
        return None
    oinfo = tape_info(tp, out)
    xinfo = tape_info(tp, ins[0])
    if g._dtype != oinfo[1] or _tndim(g) != nb + len(<tuple>oinfo[0]) or g.shape[nb:] != oinfo[0] \
            or xinfo[0] != oinfo[0] or xinfo[1] != oinfo[1]:
        return None
    y = tape_node(tp, ins[1])
    x = tape_node(tp, ins[0])
    if type(y) is not Tensor or type(x) is not Tensor or (<Tensor>y).ndim != 0 or (<Tensor>y)._rg:
        return None
    c = float(y)
    if c == 0 or c == 1:
        return None
    return [_ew2(OP_MUL, g, _ew2(OP_MUL, x ** (c - 1), c)), None]


cdef object _matmul_vjp_c(Tape tp, tuple ins, object out, tuple aux, Tensor g, set dep):
    """matmul's cotangents for 1-D and 2-D operands, the ops its rule (_matmul_vjp,
    _mm_batch) records for them; None: the rule decides"""
    cdef bint a1, b1, w0, w1
    cdef object A = None, B = None, ga = None, gb = None
    if len(ins) != 2 or len(aux) != 2:
        return None
    a1 = aux[0]
    b1 = aux[1]
    if a1 and b1:
        return None
    oinfo = tape_info(tp, out)
    if g._dtype != oinfo[1] or g.shape != oinfo[0]:
        return None
    w0 = _wants(tp, ins[0], dep)
    w1 = _wants(tp, ins[1], dep)
    if w1:   # (the values each cotangent reads)
        if ins[0] < 0:
            return None
        A = tape_node(tp, ins[0])
        if type(A) is not Tensor or (<Tensor>A).ndim != (1 if a1 else 2) or (<Tensor>A)._dtype != g._dtype:
            return None
        sa = (<Tensor>A).shape
        # gb's shape (as its rule makes it) must be b's: no unbroadcast
        if b1:
            want = sa[1:]
        elif a1:
            want = (sa[0], g.shape[0])
        else:
            want = (sa[1], g.shape[1])
        if tape_info(tp, ins[1])[0] != want:
            return None
    if w0:
        if ins[1] < 0:
            return None
        B = tape_node(tp, ins[1])
        if type(B) is not Tensor or (<Tensor>B).ndim != (1 if b1 else 2) or (<Tensor>B)._dtype != g._dtype:
            return None
        sb = (<Tensor>B).shape
        if a1:   # ga's shape must be a's
            want = sb[:1]
        else:
            want = (g.shape[0], sb[0])
        if tape_info(tp, ins[0])[0] != want:
            return None
    if w0:
        if b1:   # A (m, k) @ b (k,): ga = g[:, None] * b
            ga = _ew2(OP_MUL, reshape(g, g.shape + (1,)), B)
        else:    # (a (k,) or A (m, k)) @ B (k, n): ga = g @ B^T
            ga = matmul(g, transpose(B, (1, 0)))
    if w1:
        if b1:   # A (m, k) @ b (k,): gb = g @ A
            gb = matmul(g, A)
        elif a1:   # a (k,) @ B (k, n): gB = a[:, None] * g[None, :]
            gb = _ew2(OP_MUL, reshape(A, A.shape + (1,)), reshape(g, (1,) + g.shape))
        else:    # A (m, k) @ B (k, n): gB = A^T @ g
            gb = matmul(transpose(A, (1, 0)), g)
    return [ga, gb]
