# record once, replay in C; loading tapes; xent.  Included by _engine.pyx (one extension module: calls between the rooms
# stay direct C calls); the include order is the module's order.

# ---------------------------------------------------------------- record once, replay in C

def record_input(Tape tp, object value, bint rg):
    """an input slot of a recording: a node of tp holding value (contiguous copy)"""
    cdef Tensor t
    cdef cad_hid h
    if isinstance(value, Tensor) and (<Tensor>value)._dev:   # a tape that replays on the GPU
        t = _dwrap(_dcopy(<DevArray>(<Tensor>value)._arr))
        h = _push_buf(tp, t, BUF_INPUT | (BUF_RG if rg else 0), True)
        t._tape = tp
        t._h = h
        t._rg = rg
        return t
    t = from_numpy(_np.array(value, order="C", copy=True) if not isinstance(value, float)
                               else value, None, False, False)
    if t._inline:
        h = _push_scalar(tp, t._sval, BUF_INPUT | (BUF_RG if rg else 0))
    else:
        h = _push_buf(tp, t, BUF_INPUT | (BUF_RG if rg else 0), True)
    t._tape = tp
    t._h = h
    t._rg = rg
    return t


cdef class Replay:
    """A recorded tape prepared for replay: inputs in fixed slots, every other value
    in a contiguous slot of an arena, constants contiguous.  One call runs the whole
    forward pass (and the reverse sweep) in C."""
    cdef Tape tp
    cdef char *arena
    cdef size_t arena_size
    cdef list in_h          # input handles
    cdef list in_shape      # input shapes
    cdef list in_dtype      # input dtype codes
    cdef list out_h         # output handles (-1: a constant)
    cdef list out_const     # constants returned as outputs
    cdef list arena_slots   # (handle, offset)
    cdef bint busy
    cdef object rg_key      # the input mask the RG flags are set for
    cdef list last_outs     # the arrays the last replay wrote its outputs into, and
    cdef list last_ins      # the inputs it read (kept alive: its values, views of them
                            # included, stay readable until the next replay)
    cdef public object guards
    cdef cad_sprog sp       # the compact scalar program, when the tape is scalar code
    cdef bint has_sp
    cdef object sp_key      # the input mask sp's backward list is planned for
    cdef public bint dev    # recorded on CUDA values: replays on the GPU
    cdef _Storage S         # where its values live (NOTE [ Storage per device ])
    cdef cad_fzplan fzp     # fused regions (NOTE [ Fused replay ]); nreg 0: none
    cdef public list fz_sources   # the generated CUDA source per region (inspection)
    cdef int64_t *alias     # NOTE [ Views in replay ]: (out, in, byte offset) per aliased view
    cdef int64_t nalias
    cdef tuple out_fresh    # (position, record, view or -1) of the outputs written into new arrays
    cdef list fwd_slots     # NOTE [ Forward-only arena ]: (handle, offset), or None
    cdef int bound          # the slots the values are bound to: 0 arena_slots, 1 fwd_slots

    def __dealloc__(self):
        if self.arena != NULL:
            # (C calls, not self.S: the GC may have cleared S, and at exit the storage
            # objects, before a Replay in a cycle is deallocated)
            if self.dev:
                cad_cu_release(self.arena)
            else:
                cad_release(self.arena)
            self.arena = NULL
        free(self.fzp.reg)
        free(self.fzp.fuse)
        free(self.alias)
        self.alias = NULL
        self.fzp.reg = NULL
        self.fzp.fuse = NULL
        self.fzp.nreg = 0
        if self.has_sp:
            cad_sprog_free(&self.sp)
            self.has_sp = False

    @property
    def fused_regions(self):
        """the number of fused regions this replay runs"""
        return self.fzp.nreg

    @property
    def scalar_program(self):
        """is this tape replayed as a compact scalar program?"""
        return self.has_sp

    @property
    def arena_bytes(self):
        """(bytes of the arena, bytes a forward-only replay uses: NOTE [ Forward-only
        arena ]; the same when it has no packed slot set)"""
        if self.fwd_slots is None:
            return self.arena_size, self.arena_size
        used = 0
        for h, off in self.fwd_slots:
            used = max(used, off + _slot_bytes(&self.tp.t.bufs[<cad_hid>h]))
        return self.arena_size, used

    def __len__(self):
        return self.tp.t.nrecs

    @property
    def tape(self):
        return self.tp


cdef inline int64_t _slot_bytes(cad_buf *b) noexcept:
    """the bytes of a value's arena slot: its size rounded up to 64 (64 when empty)"""
    cdef int64_t nb = b.size * _ESIZE[b.dtype]
    return (nb + 63) // 64 * 64 if nb else 64


cdef void _bind_arena(cad_tape *t, list slots, char *base):
    cdef cad_hid h
    for h, off in slots:
        t.bufs[h].data = base + <int64_t>off


# NOTE [ Views in replay ]
# A view record (a slice, a transpose, a broadcast, vmap's lifted parameters) of a value
# whose memory is laid out contiguously replays as a view: its value is its input's
# memory at the view's offset with the view's strides (its aux, relative to the input's
# contiguous layout, are then the memory's strides), not a copy into an arena slot.  A
# broadcast parameter then reaches matmul with batch stride 0 (one GEMM, as eagerly),
# and a column slice costs nothing.  The readers of such a value must take strides:
# elementwise records, reductions, views (a view of a strided view is a copy),
# unview, concatenate, matmul, cast, xent, setitem's target; every other reader (gather,
# scatter, a scan, setitem's values, a custom primitive) gets a copied view, as before,
# and so does a view read by a view (the forward applies a view's aux strides to its
# input's memory, which must then be contiguous).
# The outputs, guards and the Python sweeps read values through _value_of, which copies
# with strides.  _alias_fixup points each aliased view at its input after the inputs
# are bound (an input's memory changes per call), in record order (a chain resolves);
# cad_view_fwd sees its output already in place and copies nothing.  CUDA tapes copy.

cdef bint _contig_layout(cad_tape *t, cad_buf *b):
    """b's strides are the contiguous ones for its shape (size-1 dims aside)"""
    cdef int64_t want = 1
    cdef int d
    cdef int64_t *sh = t.meta + b.meta
    cdef int64_t *st = sh + b.ndim
    for d in range(b.ndim - 1, -1, -1):
        if sh[d] != 1 and st[d] != want:
            return False
        want *= sh[d]
    return True


cdef bint _strided_reader(int op, int j):
    """does record op's forward and vjp read argument j through its strides?"""
    if _EW_NIN[op] > 0:
        return True
    if op == OP_SUM or op == OP_MAX or op == OP_MIN or op == OP_PROD or op == OP_VIEW \
            or op == OP_UNVIEW or op == OP_CONCATENATE or op == OP_MATMUL or op == OP_CAST \
            or op == OP_XENT:
        return True
    return op == OP_SETITEM and j == 0


cdef dict _alias_plan(cad_tape *t):
    """{view output handle: (input handle, element offset)} for the view records that
    replay as views (NOTE [ Views in replay ])"""
    cdef int64_t i, j
    cdef cad_rec *r
    cdef cad_buf *o
    cdef cad_buf *x
    cdef cad_hid h
    cdef set copied = set()
    cdef dict plan = {}
    for i in range(t.nrecs):   # values some reader needs contiguous
        r = &t.recs[i]
        for j in range(r.nargs):
            h = t.args[r.arg + j]
            if h >= 0 and not _strided_reader(r.op, <int>j):
                copied.add(h)
    for i in range(t.nrecs):
        r = &t.recs[i]
        if r.op != OP_VIEW:
            continue
        o = &t.bufs[r.out]
        h = t.args[r.arg]
        x = &t.bufs[h]
        if h in plan and not _contig_layout(t, x):   # a view of a strided view: that one is
            del plan[h]                                 # copied (window_copy reads aux strides
            cad_contig_strides(x.ndim, t.meta + x.meta, t.meta + x.meta + x.ndim)   # off memory)
        if r.out in copied or (o.flags | x.flags) & (BUF_INLINE | BUF_CUDA) or o.size == 0 \
                or o.dtype != x.dtype:
            continue
        plan[r.out] = (h, t.aux[r.aux])
        for j in range(o.ndim):   # the view's strides over its input's memory
            t.meta[o.meta + o.ndim + j] = t.aux[r.aux + 2 + o.ndim + j]
    return plan


cdef inline void _alias_fixup(cad_tape *t, const int64_t *al, int64_t n) noexcept nogil:
    cdef int64_t k
    cdef cad_buf *x
    for k in range(n):
        x = &t.bufs[al[3 * k + 1]]
        t.bufs[al[3 * k]].data = x.data + al[3 * k + 2]


def replay_compile(Tape tp, list inputs, list outputs, list guards):
    """Prepare tp for replay: record outputs get arena slots (contiguous strides),
    constants become contiguous.  inputs: input node tensors; outputs: output
    tensors (or constants)."""
    cdef Replay rp = Replay.__new__(Replay)
    cdef int64_t i, off = 0
    cdef cad_buf *b
    cdef int d
    cdef set produced = set()
    cdef Tensor t
    cdef DevArray da
    cdef bint dev = False
    cdef cad_hid h
    cdef dict plan
    for i in range(tp.t.nbufs):
        if tp.t.bufs[i].flags & BUF_CUDA:
            dev = True
    if dev:   # NOTE [ CUDA replay ]: every array value on the device
        for i in range(tp.t.nrecs):
            if tp.t.recs[i].op == OP_TO_DEVICE:
                raise DeviceError("cad.record: the function moves values between the CPU and "
                                  "cuda:0; such a tape cannot be replayed (keep it on one device)")
        for i in range(tp.t.nbufs):
            if not (tp.t.bufs[i].flags & (BUF_CUDA | BUF_INLINE)):
                raise DeviceError("cad.record: the function mixes CPU arrays with cuda:0 values; "
                                  "such a tape cannot be replayed (keep it on one device)")
    rp.dev = dev
    rp.S = _st_on(dev)
    rp.tp = tp
    for i in range(tp.t.nrecs):
        produced.add(tp.t.recs[i].out)
    rp.arena_slots = []
    for i in range(tp.t.nbufs):   # contiguous strides for every produced value first
        b = &tp.t.bufs[i]
        if i in produced and not (b.flags & BUF_INLINE):
            cad_contig_strides(b.ndim, tp.t.meta + b.meta, tp.t.meta + b.meta + b.ndim)
    plan = {} if dev else _alias_plan(&tp.t)
    if plan:
        rp.alias = <int64_t *>malloc(3 * len(plan) * sizeof(int64_t))
        if rp.alias == NULL:
            raise MemoryError()
        for i in range(tp.t.nrecs):   # record order: a chain of views resolves in one pass
            h = tp.t.recs[i].out
            if h in plan and tp.t.recs[i].op == OP_VIEW:
                src, eoff = plan[h]
                rp.alias[3 * rp.nalias] = h
                rp.alias[3 * rp.nalias + 1] = src
                rp.alias[3 * rp.nalias + 2] = eoff * _ESIZE[tp.t.bufs[h].dtype]
                rp.nalias += 1
    for i in range(tp.t.nbufs):
        b = &tp.t.bufs[i]
        if b.flags & BUF_INLINE:
            continue
        if i in plan:   # a view of its input's memory (NOTE [ Views in replay ])
            b.flags |= BUF_ARENA
            if cad_owner(tp.t.meta, b) != NULL:
                Py_DECREF(<object>cad_owner(tp.t.meta, b))
                cad_set_owner(tp.t.meta, b, NULL)
            continue
        if i in produced:
            rp.arena_slots.append((i, off))
            b.flags |= BUF_ARENA
            if cad_owner(tp.t.meta, b) != NULL:
                Py_DECREF(<object>cad_owner(tp.t.meta, b))
                cad_set_owner(tp.t.meta, b, NULL)
            off += _slot_bytes(b)
        elif not (b.flags & BUF_INPUT):
            if cad_owner(tp.t.meta, b) == NULL:
                raise RuntimeError("cad.record: a constant's value was not kept (internal error)")
            a = <object>cad_owner(tp.t.meta, b)
            c = rp.S.contig(a)
            if c is not a:
                Py_DECREF(a)
                Py_INCREF(c)
                cad_set_owner(tp.t.meta, b, <void *>c)
                b.data = rp.S.data(c)
                cad_contig_strides(b.ndim, tp.t.meta + b.meta, tp.t.meta + b.meta + b.ndim)
    rp.arena_size = off
    rp.arena = rp.S.alloc(off if off else 64)
    if rp.arena == NULL:
        _dcheck(rp.S.enomem, "cad.record (the replay's buffers)")
    _bind_arena(&tp.t, rp.arena_slots, rp.arena)
    rp.in_h, rp.in_shape, rp.in_dtype = [], [], []
    for t in inputs:
        rp.in_h.append(t._h)
        rp.in_shape.append(t.shape)
        rp.in_dtype.append(t._dtype)
    rp.out_h, rp.out_const = [], []
    for o in outputs:
        if isinstance(o, Tensor) and (<Tensor>o)._tape is not None and _resolved(<Tensor>o) is tp:
            rp.out_h.append((<Tensor>o)._h)
            rp.out_const.append(None)
        else:
            rp.out_h.append(-1)
            rp.out_const.append(o)
    rp.guards = guards
    rp.rg_key = None
    rp.out_fresh = None if dev else _fresh_outs(rp, &tp.t)
    rp.fwd_slots = None if dev else _fwd_plan(rp, &tp.t)
    rp.bound = 0
    cad_tape_clear_grads(&tp.t)
    if not dev and not guards and all(sh == () and dt == CAD_F64 for sh, dt in zip(rp.in_shape, rp.in_dtype)) \
            and all(h < 0 or (tp.t.bufs[<cad_hid>h].flags & BUF_INLINE) for h in rp.out_h):
        k = cad_sprog_build(&tp.t, &rp.sp)
        if k < 0:
            raise MemoryError()
        rp.has_sp = k == 1
    return rp


cdef object _sprog_run(Replay rp, tuple xs, object grad_mask, object seed, str who):
    """replay_run for a compact scalar program (every value a 0-d float64)"""
    cdef cad_sprog *p = &rp.sp
    cdef int k, nsel = 0
    cdef Tensor x
    cdef int64_t sel[64]
    cdef cad_hid h, ho
    for k in range(len(xs)):
        x = xs[k] if type(xs[k]) is Tensor else as_tensor(xs[k])
        if not x._inline:
            if x._dtype != CAD_F64 or x.ndim != 0:
                if x.ndim == 0:
                    raise DTypeError(f"{who}: input {k} has dtype {_DTNAMES[x._dtype]}; the tape was "
                                     "recorded with float64 (cast the input, or record again)")
                else:
                    raise ShapeError(f"{who}: input {k} has shape {x.shape} and dtype "
                                     f"{_DTNAMES[x._dtype]}; the tape was recorded with a float64 "
                                     "scalar (record again for other shapes)")
        p.v[<cad_hid>rp.in_h[k]] = x._sval
    if grad_mask is not None and rp.out_h[0] >= 0 and grad_mask is not rp.sp_key and grad_mask != rp.sp_key:
        for k in range(len(rp.in_h)):   # the backward list for this selection (before the forward:
            if grad_mask[k]:            # it decides which partials the forward computes)
                sel[nsel] = rp.in_h[k]
                nsel += 1
        cad_sprog_plan(p, sel, nsel, rp.out_h[0])
        rp.sp_key = grad_mask
    if grad_mask is None:
        cad_sprog_forward(p)
    else:
        cad_sprog_forward_d(p)
    if grad_mask is None or len(rp.out_h) != 1:
        outs = [rp.out_const[k] if rp.out_h[k] < 0 else _new_inline(p.v[<cad_hid>rp.out_h[k]])
                for k in range(len(rp.out_h))]
    else:
        outs = None   # filled below (one scalar output)
    if grad_mask is None:
        return outs, None
    ho = rp.out_h[0]
    if ho < 0:
        if outs is None:
            outs = [rp.out_const[0]]
        return outs, [None if not m else _new_inline(0.0) for m in grad_mask]
    if outs is None:
        outs = [_new_inline(p.v[ho])]
    cad_sprog_backward(p, ho, 1.0 if seed is None else float(seed))
    grads = []
    for k in range(len(rp.in_h)):
        h = rp.in_h[k]
        grads.append(_new_inline(p.g[h]) if grad_mask[k] else None)
    for k in range(len(rp.in_h)):
        p.g[<cad_hid>rp.in_h[k]] = 0.0
    p.g[ho] = 0.0
    return outs, grads


def replay_floats(Replay rp, list xs):
    """a compact scalar program's outputs as Python floats, from inputs given as
    Python floats: no tensor per value (odeint's stepping loops, NOTE [ odeint scalar
    mode ]).  Another thread replaying the same tape: through replay_run."""
    cdef cad_sprog *p = &rp.sp
    cdef Py_ssize_t k, n = len(xs), no = len(rp.out_h)
    cdef list out
    if not rp.has_sp or n != len(rp.in_h):
        raise ValueError(f"replay_floats: the tape is not a scalar program of {n} inputs")
    if rp.busy:
        res = replay_run(rp, tuple([as_tensor(float(v)) for v in xs]), None, None, "replay_floats")[0]
        return [float(o) for o in res]
    rp.busy = True
    try:
        for k in range(n):
            p.v[<cad_hid>rp.in_h[k]] = xs[k]
        cad_sprog_forward(p)
        out = [float(rp.out_const[k]) if <cad_hid>rp.out_h[k] < 0 else p.v[<cad_hid>rp.out_h[k]]
               for k in range(no)]
    finally:
        rp.busy = False
    return out


# ---- odeint's stepping loops over scalar programs (NOTE [ odeint scalar mode ] in
# cad/scipy/integrate.py): the loops of its _forward and _backward, the same arithmetic
# in the same order, with the values in C doubles: no Python per step

cdef inline double _ode_factor(double ratio) noexcept:
    """integrate.py's _factor (safety 0.9, within [0.2, 10])"""
    cdef double f
    if ratio == 0.0:
        return 10.0
    if not ratio < 1e300:
        return 0.2
    f = 0.9 * c_pow(ratio, -0.2)   # (Cython's ** would take the complex power)
    return 10.0 if f > 10.0 else (f if f > 0.2 else 0.2)


cdef int _sp_ready(Replay rp, int nin, int nout) except -1:
    cdef Py_ssize_t k
    if not rp.has_sp or len(rp.in_h) != nin or len(rp.out_h) < nout:
        raise ValueError("odeint: the step is not a scalar program of the expected shape")
    for k in range(nout):
        if <cad_hid>rp.out_h[k] < 0:
            raise ValueError("odeint: a step output is a constant")
    return 0


def ode_forward_sprog(Replay rp, list yf0, double t, double h, double d, list ts,
                      cnp.ndarray out, int n, long mxstep, double hmax, double hmin, list pitems):
    """_forward's loop: rp is the dense Dopri step (y, f, t, h, p) -> (y1, f1, ratio,
    5 n coefficients); fills out[1:] (len(ts), n) with the solution at ts.  False:
    another thread replays rp (nothing done)"""
    cdef Py_ssize_t nt = len(ts), i = 1, k, j
    cdef int n2 = 2 * n, m = len(pitems)
    cdef cad_sprog *p = &rp.sp
    cdef double tend = ts[nt - 1], tnext = ts[1], rem, hs, ratio, tn, s, c
    cdef bint last
    cdef long steps = 0
    cdef double *y = <double *>cnp.PyArray_DATA(out)
    cdef cad_hid *ih
    cdef cad_hid *oh
    cdef const double[:] tsv = _np.asarray(ts, dtype=_np.float64)
    _sp_ready(rp, n2 + 2 + m, n2 + 1 + 5 * n)
    if not (out.flags.c_contiguous and out.dtype == _np.float64 and out.shape[0] == nt and out.shape[1] == n):
        raise ValueError("odeint: the output buffer")
    if rp.busy:   # another thread steps with it: the caller's Python loop (private copies)
        return False
    ih = <cad_hid *>malloc((n2 + 2 + m + n2 + 1 + 5 * n) * sizeof(cad_hid))
    if ih == NULL:
        raise MemoryError()
    oh = ih + n2 + 2 + m
    for k in range(n2 + 2 + m):
        ih[k] = rp.in_h[k]
    for k in range(n2 + 1 + 5 * n):
        oh[k] = rp.out_h[k]
    rp.busy = True
    try:
        for k in range(n2):
            p.v[ih[k]] = yf0[k]
        for k in range(m):
            p.v[ih[n2 + 2 + k]] = pitems[k]
        while True:
            rem = (tend - t) * d
            last = h >= rem
            hs = rem if last else h
            p.v[ih[n2]] = t
            p.v[ih[n2 + 1]] = d * hs
            cad_sprog_forward(p)
            ratio = p.v[oh[n2]]
            steps += 1
            if ratio <= 1.0:
                tn = tend if last else t + d * hs
                if (tn - tnext) * d >= 0:
                    while (tn - tnext) * d >= 0:
                        s = (tnext - t) / (d * hs)
                        for j in range(n):
                            y[i * n + j] = ((((p.v[oh[n2 + 1 + j]] * s + p.v[oh[n2 + 1 + n + j]]) * s
                                              + p.v[oh[n2 + 1 + 2 * n + j]]) * s + p.v[oh[n2 + 1 + 3 * n + j]]) * s
                                            + p.v[oh[n2 + 1 + 4 * n + j]])
                        i += 1
                        if i == nt:
                            return True
                        tnext = tsv[i]
                    steps = 0
                t = tn
                for k in range(n2):   # the accepted step's y1, f1 are the next inputs
                    p.v[ih[k]] = p.v[oh[k]]
            if steps > mxstep:
                raise RuntimeError(f"odeint: more than mxstep={mxstep} steps between t={ts[i - 1]!r} and "
                                   f"t={ts[i]!r} (the problem may be stiff, or the tolerances too "
                                   "tight; raise mxstep)")
            h = hs * _ode_factor(ratio)
            h = min(h, hmax)
            if h < hmin:
                raise RuntimeError(f"odeint: the step size fell below {h:.1e} at t={t!r} (the solution "
                                   "may blow up there)")
    finally:
        rp.busy = False
        free(ih)


def ode_backward_sprog(Replay rp, Replay jrp, list st0, double h, double d, list ts,
                       cnp.ndarray g, cnp.ndarray ys, cnp.ndarray gt, int N, int n, long mxstep,
                       double hmax, double hmin, list pitems):
    """_backward's loop: rp is the adjoint's Dopri step (s, f, t, h, p) -> (s1, f1,
    ratio), jrp the jump (s, g_i, y_i, t, p) -> (s with a += g_i, f there, g_i . f(y_i));
    fills gt[1:-1] and returns the final (s, f) as floats; None: another thread
    replays one of them (nothing done)"""
    cdef Py_ssize_t nt = len(ts), i, k
    cdef int N2 = 2 * N, m = len(pitems)
    cdef cad_sprog *p = &rp.sp
    cdef cad_sprog *q = &jrp.sp
    cdef double t, t_stop, rem, hs, ratio
    cdef bint last
    cdef long steps
    cdef const double[:, :] gv = g
    cdef const double[:, :] yv = ys
    cdef double[:] gtv = gt
    cdef const double[:] tsv = _np.asarray(ts, dtype=_np.float64)
    cdef cad_hid *ih
    cdef cad_hid *oh
    cdef cad_hid *jih
    cdef cad_hid *joh
    _sp_ready(rp, N2 + 2 + m, N2 + 1)
    _sp_ready(jrp, N + 2 * n + 1 + m, N2 + 1)
    if len(jrp.out_h) != N2 + 1:
        raise ValueError("odeint: the jump program's outputs")
    if rp.busy or jrp.busy:   # another thread steps with them: the caller's Python loop
        return None
    ih = <cad_hid *>malloc((N2 + 2 + m + N2 + 1 + N + 2 * n + 1 + m + N2 + 1) * sizeof(cad_hid))
    if ih == NULL:
        raise MemoryError()
    oh = ih + N2 + 2 + m
    jih = oh + N2 + 1
    joh = jih + N + 2 * n + 1 + m
    for k in range(N2 + 2 + m):
        ih[k] = rp.in_h[k]
    for k in range(N2 + 1):
        oh[k] = rp.out_h[k]
    for k in range(N + 2 * n + 1 + m):
        jih[k] = jrp.in_h[k]
    for k in range(N2 + 1):
        joh[k] = jrp.out_h[k]
    rp.busy = True
    jrp.busy = True
    try:
        for k in range(N2):
            p.v[ih[k]] = st0[k]
        for k in range(m):
            p.v[ih[N2 + 2 + k]] = pitems[k]
            q.v[jih[N + 2 * n + 1 + k]] = pitems[k]
        for i in range(nt - 1, 0, -1):
            t = tsv[i]
            t_stop = tsv[i - 1]
            steps = 0
            while True:
                rem = (t_stop - t) * d
                if rem <= 0:
                    break
                last = h >= rem
                hs = rem if last else h
                p.v[ih[N2]] = t
                p.v[ih[N2 + 1]] = d * hs
                cad_sprog_forward(p)
                ratio = p.v[oh[N2]]
                steps += 1
                if ratio <= 1.0:
                    t = t_stop if last else t + d * hs
                    for k in range(N2):
                        p.v[ih[k]] = p.v[oh[k]]
                    if last:
                        continue
                if steps > mxstep:
                    raise RuntimeError(f"odeint (gradient): more than mxstep={mxstep} steps of the "
                                       f"adjoint between t={ts[i]!r} and t={ts[i - 1]!r} (raise mxstep)")
                h = hs * _ode_factor(ratio)
                h = min(h, hmax)
                if h < hmin:
                    raise RuntimeError(f"odeint (gradient): the adjoint's step size fell below {h:.1e} "
                                       f"at t={t!r}")
            if i > 1:   # a += g_i, the dynamics at the new state, and dL/dt_i
                for k in range(N):
                    q.v[jih[k]] = p.v[ih[k]]
                for k in range(n):
                    q.v[jih[N + k]] = gv[i - 1, k]
                    q.v[jih[N + n + k]] = yv[i - 1, k]
                q.v[jih[N + 2 * n]] = t_stop
                cad_sprog_forward(q)
                for k in range(N2):
                    p.v[ih[k]] = q.v[joh[k]]
                gtv[i - 1] = q.v[joh[N2]]
        return [p.v[ih[k]] for k in range(N2)]
    finally:
        rp.busy = False
        jrp.busy = False
        free(ih)


cdef void _set_rg(cad_tape *t, list in_h, tuple mask) noexcept:
    """gradients flow from the selected inputs only: RG flags recomputed forward"""
    cdef int64_t i, j
    cdef cad_buf *b
    cdef cad_rec *r
    cdef bint rg
    for i in range(t.nbufs):
        t.bufs[i].flags &= ~BUF_RG
    for j in range(len(in_h)):
        if mask[j]:
            t.bufs[<cad_hid>in_h[j]].flags |= BUF_RG
    for i in range(t.nrecs):
        r = &t.recs[i]
        b = &t.bufs[r.out]
        if b.dtype != CAD_F64 and b.dtype != CAD_F32:
            continue
        rg = False
        for j in range(r.nargs):
            if t.args[r.arg + j] >= 0 and (t.bufs[t.args[r.arg + j]].flags & BUF_RG):
                rg = True
                break
        if rg:
            b.flags |= BUF_RG


cdef object _value_of(cad_tape *t, cad_hid h):
    """a copy of handle h's value (replayed values live in a reused arena; a view's
    value is read through its strides, NOTE [ Views in replay ])"""
    cdef cad_buf *b = &t.bufs[h]
    if b.flags & BUF_INLINE:
        return _new_inline(b.sval)
    return _st_on(1 if b.flags & BUF_CUDA else 0).copy_raw(
        b.ndim, t.meta + b.meta, NULL if _contig_layout(t, b) else t.meta + b.meta + b.ndim,
        b.dtype, b.data, "replay")


def replay_grads(Replay rp, tuple xs, tuple mask, str who):
    """tape.grad's common path: the gradients of the inputs selected by mask, as a
    tuple (one replay, no Python-level filtering)"""
    cdef list grads = replay_run(rp, xs, mask, None, who)[1]
    cdef Py_ssize_t k, n = len(mask), m = 0
    for k in range(n):
        if mask[k]:
            m += 1
    cdef tuple out = PyTuple_New(m)
    m = 0
    for k in range(n):
        if mask[k]:
            g = grads[k]
            Py_INCREF(g)
            PyTuple_SET_ITEM(out, m, g)
            m += 1
    return out


def replay_set_fused(Replay rp, list regions, list marks, object cubin):
    """attach fused regions (cad/fuse.py): regions as (externals, scalar flags, ops,
    a slots, b slots, outputs, store_all, dtype); marks: fuse[i] per record; cubin:
    the compiled kernels fz_fwd_<k>/fz_bwd_<k> (None on the fake device)"""
    cdef int k, j, n = len(regions)
    cdef cad_fzreg *R
    cdef void *ff[256]
    cdef void *fb[256]
    if not rp.dev or n == 0 or n > 256:
        return
    if cubin is not None:
        _dcheck(cad_cu_fz_load(<const char *>cubin, n, ff, fb), "cad.record (fused kernels)")
    free(rp.fzp.reg)
    free(rp.fzp.fuse)
    rp.fzp.nreg = 0
    rp.fzp.reg = <cad_fzreg *>calloc(n, sizeof(cad_fzreg))
    rp.fzp.fuse = <int32_t *>calloc(len(marks) if marks else 1, sizeof(int32_t))
    if rp.fzp.reg == NULL or rp.fzp.fuse == NULL:
        raise MemoryError()
    for k in range(n):
        ext, scal, ops, aa, bb, outs, store_all, dt = regions[k]
        R = &rp.fzp.reg[k]
        R.nE = len(ext)
        R.nI = len(ops)
        R.store_all = store_all
        R.dtype = dt
        for j in range(R.nE):
            R.ext[j] = ext[j]
            R.ext_scalar[j] = scal[j]
        for j in range(R.nI):
            R.op[j] = ops[j]
            R.a[j] = aa[j]
            R.b[j] = bb[j]
            R.out[j] = outs[j]
        R.ffwd = ff[k] if cubin is not None else NULL
        R.fbwd = fb[k] if cubin is not None else NULL
    for j in range(len(marks)):
        rp.fzp.fuse[j] = marks[j]
    rp.fzp.nrecs = len(marks)
    rp.fzp.nreg = n


# NOTE [ CUDA replay ]
# A tape recorded on CUDA values (every array value on the device; a transfer inside
# the function is refused) replays there: replay_compile gives the records' values
# slots of one device arena and makes constants contiguous on the device;
# cad_forward sets the thread's device per record from its output, as the sweep
# does, so the same forward kernels and vjp rules run their device branches with
# the GIL released; inputs are bound by pointer (host inputs are moved first),
# outputs and gradients are copied out of the reused arena.  Runs of elementwise
# records are fused (NOTE [ Fused replay ] in cad_kernels/cuda/fuse.c) unless the
# caller needs every value (the Python sweeps of tape.jacobian/hvp/hessian).  Three
# plans of a host replay are not made for a device tape: aliased views (NOTE [ Views
# in replay ]; a device view gets its own arena slot), the compact scalar programs
# (0-d float64 inputs live on the host) and outputs written into fresh arrays (a
# device output is copied out of the arena).  Where a value lives is otherwise the
# replay's storage object's (NOTE [ Storage per device ]).

cdef Tensor _bind_dev_input(cad_tape *t, cad_buf *b, Tensor x, int k, Replay rp, str who):
    """point input slot b of a CUDA tape at x's (contiguous) device values; returns
    what must stay alive during the replay"""
    cdef DevArray da
    cdef int d
    cdef bint same
    if not x._dev:
        x = _to_dev(x.detach(), 1)   # host inputs are moved (as jax.jit does)
    da = <DevArray>x._arr
    same = da.ndim == b.ndim
    if same:
        for d in range(b.ndim):
            if da.shp[d] != t.meta[b.meta + d]:
                same = False
    if not same:
        raise ShapeError(f"{who}: input {k} has shape {x.shape}; the tape was recorded with "
                         f"shape {rp.in_shape[k]} (record again for other shapes)")
    da = _dcontig(da)
    b.data = da.ptr
    return _dwrap(da)


# NOTE [ Forward-only arena ]
# The arena gives every computed value its own slot: a gradient replay's backward reads
# them.  A forward-only replay (tape(x), fused) reads each value only until its last
# reader, so its values are packed by liveness into fewer bytes: slots are taken in
# record order, a value's slot is free again after the record that reads it last (a
# view's readers count as its base's), outputs and guarded values live to the end, and
# a record's output never shares its inputs' bytes (their slots are freed after it is
# placed).  BA's residual replayed wrote ~40 values of up to 0.9 MB each into 20 MB of
# arena per call, every value's lines new to the cache, where the eager calls reused a
# few freed blocks (replayed 1.12x its eager time, in blocks of calls).  The two slot
# sets share the arena (the packed one is never larger); a call rebinds the values when
# it switches between them.  Python sweeps that read every value afterwards replay with
# fused=False, which keeps one slot per value.  Tapes with custom primitives keep one
# slot per value.

cdef int64_t _root(dict src, int64_t h):
    while h in src:
        h = src[h]
    return h


def _block_size(b):
    return b[1]


cdef list _fwd_plan(Replay rp, cad_tape *t):
    cdef set arena = set()
    cdef dict src = {}
    cdef dict last = {}
    cdef dict placed = {}   # handle: (offset, size), until its last reader
    cdef int64_t i, j, n = t.nrecs, h, r, nb, off, size, best, end = 0
    cdef cad_rec *rec
    cdef list free_ = []   # (offset, size)
    cdef list res = []
    if not rp.arena_slots:
        return None
    for h, off in rp.arena_slots:
        arena.add(h)
    for i in range(n):
        if t.recs[i].op == OP_CUSTOM:
            return None
    for j in range(rp.nalias):
        src[rp.alias[3 * j]] = rp.alias[3 * j + 1]
    for i in range(n):
        rec = &t.recs[i]
        for j in range(rec.nargs):
            h = t.args[rec.arg + j]
            if h >= 0:
                last[_root(src, h)] = i
    for h in rp.out_h:
        if h >= 0:
            last[_root(src, h)] = n
    for g in rp.guards or ():
        last[_root(src, g.handle)] = n
    for i in range(n):
        rec = &t.recs[i]
        h = rec.out
        if h in arena:
            size = _slot_bytes(&t.bufs[h])
            best = -1
            for j in range(len(free_)):   # the smallest free block that fits
                if free_[j][1] >= size and (best < 0 or free_[j][1] < free_[best][1]):
                    best = j
            if best >= 0:
                off, nb = free_.pop(best)
                if nb > size:
                    free_.append((off + size, nb - size))
            else:
                off = end
                end += size
            res.append((h, off))
            placed[h] = (off, size)
            if h not in last:
                last[h] = i   # (never read: its slot is free after it)
        for j in range(rec.nargs + 1):   # the values whose last reader this record is
            h = t.args[rec.arg + j] if j < rec.nargs else rec.out
            if h < 0:
                continue
            r = _root(src, h)
            if last.get(r, -2) == i and r in placed:
                free_.append(placed.pop(r))
                if len(free_) > 256:   # (a bounded search per value: the smallest blocks
                    free_.sort(key=_block_size)   # are left unused, never reused wrongly)
                    del free_[:128]
    if end >= rp.arena_size:
        return None
    return res


cdef void _bind_mode(Replay rp, cad_tape *t, int mode, char *base):
    """bind the arena's values to one slot set (NOTE [ Forward-only arena ])"""
    _bind_arena(t, rp.fwd_slots if mode else rp.arena_slots, base)


cdef tuple _fresh_outs(Replay rp, cad_tape *t):
    """the outputs a CPU replay writes straight into new arrays, as (position, root,
    view): computed records of their own (not a constant, an input, a 0-d value, a
    second mention of a handle: _value_of copies those), view -1; or a view replayed
    as a view (NOTE [ Views in replay ]) of all of such a record's memory, with
    strides >= 0 (a recorded jacfwd's or Hessian's transpose): the record writes into
    a new array and the output is the view of it (_view_outs), not a strided copy
    out of the arena.  None when there are none."""
    cdef list res = []
    cdef set seen = set()
    cdef dict src = {}
    cdef cad_buf *b
    cdef cad_buf *rb
    cdef int64_t k, j, h, r
    cdef int d
    cdef bint ok
    for j in range(rp.nalias):
        src[rp.alias[3 * j]] = rp.alias[3 * j + 1]
    for k in range(len(rp.out_h)):
        h = rp.out_h[k]
        if h < 0 or h in seen:
            continue
        r = h
        while r in src:
            r = src[r]
        b = &t.bufs[<cad_hid>h]
        rb = &t.bufs[<cad_hid>r]
        if (rb.flags & (BUF_INLINE | BUF_INPUT)) or not (rb.flags & BUF_ARENA) or rb.size == 0:
            continue
        if r != h:
            ok = rb.size == b.size and rb.dtype == b.dtype
            for d in range(b.ndim):
                ok = ok and t.meta[b.meta + b.ndim + d] >= 0
            if not ok:
                continue
        seen.add(h)
        res.append((k, r, h if r != h else -1))
    return tuple(res) if res else None


cdef list _bind_outs(Replay rp, cad_tape *t):
    """each output of rp.out_fresh gets a new array (one per record: an output and
    its view share it) and its record writes there (no copy out of the reused
    arena): per output, that array or None (views: _view_outs after the forward)"""
    cdef list fresh = [None] * len(rp.out_h)
    cdef dict made = None
    cdef cad_buf *b
    cdef cnp.npy_intp dims[MAXDIM]
    cdef int d
    for k, r, v in rp.out_fresh:
        a = None
        if made is not None:
            a = made.get(r)
        if a is None:
            b = &t.bufs[<cad_hid>r]
            for d in range(b.ndim):
                dims[d] = t.meta[b.meta + d]
            a = _empty(b.ndim, dims, b.dtype)
            b.data = <char *>cnp.PyArray_DATA(<cnp.ndarray>a)
            if made is None:
                made = {}
            made[r] = a
        fresh[k] = a
    if t == &rp.tp.t:
        rp.last_outs = fresh
    return fresh


cdef void _view_outs(Replay rp, cad_tape *t, list fresh):
    """the view outputs of rp.out_fresh as numpy views of their record's new array
    (its views' data pointers are set by _alias_fixup)"""
    cdef cad_buf *b
    cdef int d
    cdef int64_t es
    for k, r, v in rp.out_fresh:
        if v < 0:
            continue
        b = &t.bufs[<cad_hid>v]
        es = _ESIZE[b.dtype]
        base = fresh[k]
        fresh[k] = _np.ndarray(tuple([t.meta[b.meta + d] for d in range(b.ndim)]), dtype=base.dtype,
                               buffer=base, offset=b.data - t.bufs[<cad_hid>r].data,
                               strides=tuple([t.meta[b.meta + b.ndim + d] * es for d in range(b.ndim)]))


def replay_run(Replay rp, tuple xs, object grad_mask, object seed, str who, bint fused=True):
    """One replay: inputs xs -> (outputs, gradients of the selected inputs or None).
    grad_mask: a tuple of bools (which inputs get gradients) or None (forward only).
    A CUDA tape (rp.dev) runs on the device (NOTE [ CUDA replay ]); fused=False:
    every record's value is computed (the Python sweeps read them)."""
    cdef cad_tape *t = &rp.tp.t
    cdef cad_tape priv
    cdef bint own = False, dev = rp.dev, st_ok = False, big
    cdef list keep = []
    cdef int64_t i
    cdef int st, k, mode
    cdef cad_buf *b
    cdef Tensor x
    cdef cad_hid h
    cdef char *priv_arena = NULL
    cdef const cad_fzplan *fz = NULL
    cdef double one64
    cdef float one32
    if len(xs) != len(rp.in_h):
        raise TypeError(f"{who}: the tape was recorded with {len(rp.in_h)} inputs, got {len(xs)}")
    if not dev:
        for k in range(len(xs)):
            if isinstance(xs[k], Tensor) and (<Tensor>xs[k])._dev:
                raise DeviceError(f"{who}: input {k} is on cuda:0; the tape was recorded on the CPU "
                                  "(record it with CUDA inputs to replay on the GPU)")
    if rp.has_sp and not rp.busy and len(xs) <= 64 and not isinstance(seed, _np.ndarray):
        rp.busy = True
        try:
            return _sprog_run(rp, xs, grad_mask, seed, who)
        finally:
            rp.busy = False
    if rp.busy:   # another thread replays this tape: work on a private copy of the values
        priv = rp.tp.t
        priv.bufs = <cad_buf *>malloc(t.nbufs * sizeof(cad_buf))
        if priv.bufs == NULL:
            raise MemoryError()
        memcpy(priv.bufs, t.bufs, t.nbufs * sizeof(cad_buf))
        priv_arena = rp.S.alloc(rp.arena_size if rp.arena_size else 64)
        if priv_arena == NULL:
            free(priv.bufs)
            _dcheck(rp.S.enomem, who)
        mode = 1 if grad_mask is None and fused and rp.fwd_slots is not None else 0
        _bind_mode(rp, &priv, mode, priv_arena)
        for i in range(t.nbufs):
            priv.bufs[i].grad = NULL
        t = &priv
        own = True
    else:
        rp.busy = True
        mode = 1 if grad_mask is None and fused and rp.fwd_slots is not None else 0
        if mode != rp.bound:
            _bind_mode(rp, t, mode, rp.arena)
            rp.bound = mode
    try:
        for k in range(len(xs)):
            x = xs[k] if type(xs[k]) is Tensor else as_tensor(xs[k])
            if x._dtype != <int>rp.in_dtype[k]:
                raise DTypeError(f"{who}: input {k} has dtype {_DTNAMES[x._dtype]}; the tape was "
                                 f"recorded with {_DTNAMES[rp.in_dtype[k]]} (cast the input, or "
                                 "record again)")
            h = rp.in_h[k]
            b = &t.bufs[h]
            if dev:
                keep.append(_bind_dev_input(t, b, x, k, rp, who))
            elif b.flags & BUF_INLINE:
                if not x._inline:
                    raise ShapeError(f"{who}: input {k} has shape {x.shape}; the tape was recorded "
                                     f"with shape () (record again for other shapes)")
                b.sval = x._sval
            else:
                if not _same_shape(x, t, b):
                    raise ShapeError(f"{who}: input {k} has shape {x.shape}; the tape was recorded with "
                                     f"shape {rp.in_shape[k]} (record again for other shapes)")
                a = x._arr
                if not cnp.PyArray_IS_C_CONTIGUOUS(<cnp.ndarray>a):
                    a = _np.array(a, order="C")
                keep.append(a)
                b.data = <char *>cnp.PyArray_DATA(<cnp.ndarray>a)
        if not own:   # the values stay readable after the call (the Python sweeps of
            rp.last_ins = keep   # tape.jacobian/hvp/hessian read a replayed view of an input)
        fresh = _bind_outs(rp, t) if rp.out_fresh is not None else None   # (before the views:
                                                                        # one may view an output)
        if rp.nalias:
            _alias_fixup(t, rp.alias, rp.nalias)
        if grad_mask is not None and grad_mask != rp.rg_key:
            if own:
                raise RuntimeError(f"{who}: concurrent replays must use the same argnums")
            _set_rg(t, rp.in_h, grad_mask)
            rp.rg_key = grad_mask
        if fused and rp.fzp.nreg:
            fz = &rp.fzp
        # gradients are clean between replays (cleared after each gradient replay)
        big = dev or t.nrecs > 64 or _holds_arrays(t)
        if big:
            with nogil:
                cad_fz_set(fz)
                st = cad_forward(t, 0)
                cad_fz_set(NULL)
        else:
            st = cad_forward(t, 0)
        _dcheck(st, who)
        if fresh is not None:
            _view_outs(rp, t, fresh)
        if rp.guards:
            for g in rp.guards:
                g.check(host(_value_of(t, g.handle)), k=None)
        outs = [rp.out_const[k] if rp.out_h[k] < 0 else
                (_wrap(fresh[k]) if fresh is not None and fresh[k] is not None else _value_of(t, rp.out_h[k]))
                for k in range(len(rp.out_h))]
        if grad_mask is None:
            return outs, None
        h = rp.out_h[0]
        if h < 0 or not (t.bufs[h].flags & BUF_RG):
            return outs, [None if not m else _zeros_of(rp.in_shape[k], rp.in_dtype[k], dev)
                          for k, m in enumerate(grad_mask)]
        b = &t.bufs[h]
        if isinstance(seed, _np.ndarray):   # a cotangent of the output's size (tape.jacobian's rows)
            sd = _np.ascontiguousarray(seed, dtype=_np.float64 if b.dtype == CAD_F64 else _np.float32)
            if sd.size != b.size:
                raise ShapeError(f"{who}: a cotangent of {sd.size} elements for an output of {b.size}")
            _dcheck(cad_ensure_grad(b), who)
            if b.flags & BUF_INLINE:
                b.sgrad = (<double *>cnp.PyArray_DATA(sd))[0]
            else:
                rp.S.put(b.grad, cnp.PyArray_DATA(sd), sd.nbytes, who)
        elif b.size != 1:
            raise BackwardError(f"{who}: the output has shape {outs[0].shape}; gradients need a "
                                "scalar output (use tape.jacobian)")
        else:
            _dcheck(cad_ensure_grad(b), who)
        one64 = 1.0 if seed is None or isinstance(seed, _np.ndarray) else float(seed)
        one32 = <float>one64
        if isinstance(seed, _np.ndarray):
            pass   # seeded above
        elif b.flags & BUF_INLINE:
            b.sgrad = one64
        elif b.dtype == CAD_F64:
            rp.S.put(b.grad, &one64, 8, who)
        else:
            rp.S.put(b.grad, &one32, 4, who)
        for k in range(len(rp.in_h)):
            if grad_mask[k]:
                t.bufs[<cad_hid>rp.in_h[k]].flags |= BUF_KEEP
        if big:
            with nogil:
                cad_fz_set(fz)
                st = cad_sweep(t, 1, 0)
                cad_fz_set(NULL)
        else:
            st = cad_sweep(t, 1, 0)
        _dcheck(st, who)
        st_ok = True
        grads = []
        for k in range(len(rp.in_h)):
            if not grad_mask[k]:
                grads.append(None)
                continue
            b = &t.bufs[<cad_hid>rp.in_h[k]]
            if not b.hasg:
                grads.append(_zeros_of(rp.in_shape[k], rp.in_dtype[k], dev))
            elif b.flags & BUF_INLINE:
                grads.append(_new_inline(b.sgrad))
            else:
                grads.append(rp.S.copy_raw(b.ndim, t.meta + b.meta, NULL, b.dtype, b.grad, who))
        return outs, grads
    finally:
        if grad_mask is not None:
            if st_ok:   # the sweep left every propagated value clean: only inputs remain
                for k in range(len(rp.in_h)):
                    _clear_buf(&t.bufs[<cad_hid>rp.in_h[k]])
            else:
                cad_tape_clear_grads(t)
        if own:
            free(t.bufs)
            rp.S.release(priv_arena)
        else:
            rp.busy = False


cdef inline bint _same_shape(Tensor x, cad_tape *t, cad_buf *b):
    cdef int d
    cdef cnp.ndarray a
    if x._inline:
        return b.ndim == 0
    a = <cnp.ndarray>x._arr
    if cnp.PyArray_NDIM(a) != b.ndim:
        return False
    for d in range(b.ndim):
        if cnp.PyArray_DIMS(a)[d] != t.meta[b.meta + d]:
            return False
    return True


cdef inline void _clear_buf(cad_buf *b) noexcept:
    cad_buf_release_grad(b)   # host or device
    b.grad = NULL
    b.sgrad = 0.0
    b.hasg = 0
    b.flags &= ~BUF_KEEP


cdef Tensor _zeros_of(tuple shape, int dt, bint dev=False):
    return _st_on(dev).full(shape, dt, 0)


def replay_values(Replay rp):
    """node tensors for the replayed values (for the Python sweeps: jacobian, hvp);
    valid until the next replay"""
    return rp.tp


def tape_value(Tape tp, cad_hid h):
    """a copy of handle h's current value"""
    return _value_of(&tp.t, h)


def tape_push_buf(Tape tp, object value, int dtype, tuple shape, int flags):
    """append a buf (loading a saved tape): a constant/input value (ndarray or
    float) or None for a value the replay computes"""
    cdef Tensor t
    cdef cad_hid h
    cdef cad_tape *T = &tp.t
    cdef cad_buf *b
    cdef int nd = len(shape), d
    if flags & BUF_INLINE:
        return _push_scalar(tp, float(value) if value is not None else 0.0,
                            flags & ~BUF_INLINE & 0xff)
    if value is not None:
        t = _wrap(_np.array(value, dtype=_DTYPES[dtype], order="C", copy=True))
        h = _push_buf(tp, t, flags, True)
        return h
    _reserve(tp, 1, 0, CAD_SLOT_WORDS + 2 * nd, 0)
    b = &T.bufs[T.nbufs]
    b.data = NULL
    b.grad = NULL
    b.hasg = 0
    b.dtype = dtype
    b.flags = flags
    b.ndim = nd
    b.meta = _slot_words(T)
    b.size = 1
    for d in range(nd):
        T.meta[T.nmeta + d] = shape[d]
        b.size *= shape[d]
    cad_contig_strides(nd, T.meta + T.nmeta, T.meta + T.nmeta + nd)
    T.nmeta += 2 * nd
    T.nbufs += 1
    return T.nbufs - 1


def tape_push_rec(Tape tp, int op, cad_hid out, tuple args, tuple aux):
    """append a record (loading a saved tape)"""
    cdef int n = len(args), na = len(aux), i
    cdef cad_hid hs[64]
    cdef int64_t ax[80]
    if n > 64 or na > 80:
        raise ValueError("tape_push_rec: too many arguments")
    if not 0 <= op < OP_COUNT or not 0 <= out < tp.t.nbufs:   # (stored narrow: NOTE [ Record width ])
        raise ValueError(f"tape_push_rec: op {op} or output handle {out} out of range")
    for i in range(n):
        hs[i] = args[i]
        if not -1 <= hs[i] < tp.t.nbufs:
            raise ValueError(f"tape_push_rec: argument handle {hs[i]} out of range")
    for i in range(na):
        ax[i] = aux[i]
    _push_rec(tp, op, out, hs, n, ax, na)


def tape_node_of(Tape tp, cad_hid h, object value):
    """a tensor standing for handle h holding value (an input node of a loaded tape)"""
    cdef Tensor t = as_tensor(value)
    tp = _live(tp, &h)
    t = t.detach()
    t._tape = tp
    t._h = h
    t._rg = bool(tp.t.bufs[h].flags & BUF_RG)
    return t


def replay_inputs(Replay rp):
    return list(rp.in_h), list(rp.in_shape), list(rp.in_dtype)


def replay_outputs(Replay rp):
    return list(rp.out_h), list(rp.out_const)
