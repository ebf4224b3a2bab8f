# the backward driver (run_backward) around the C sweep.  Included by _engine.pyx (one extension module: calls between the rooms
# stay direct C calls); the include order is the module's order.

# ---------------------------------------------------------------- backward

cdef _check(int st, str who):
    if st == CAD_OK:
        return
    if st == CAD_ENOMEM:
        raise MemoryError(f"{who}: out of memory")
    if st == CAD_EDEAD:
        raise BackwardError(f"{who}: the gradient reached a value whose tape was consumed by an "
                            "earlier backward(); pass retain_graph=True to that backward to "
                            "differentiate through it again")
    if st == CAD_EBLAS:
        raise ShapeError(f"{who}: matrix too large for the BLAS interface (2^31 - 1 per dim)")
    if st == CAD_EINDEX:
        raise IndexError(f"{who}: an index (a class label) is out of range")
    if st == CAD_ECUSTOM:
        _raise_custom(who)
    raise RuntimeError(f"{who}: internal error {st} in the sweep")


cdef void _free_capsule(object cap) noexcept:
    cad_release(PyCapsule_GetPointer(cap, NULL))


cdef list _seq(object x, str what):
    if type(x) is Tensor:
        return [x]
    if isinstance(x, Tensor):
        return [x]
    if isinstance(x, (list, tuple)):
        return list(x)
    raise TypeError(f"autograd.grad: {what} must be a tensor or a sequence of tensors, got "
                    f"{type(x).__name__}")


def grad_api(outputs, inputs, grad_outputs, retain_graph, allow_unused):
    """autograd.grad (first order): a tuple with one gradient per input"""
    cdef list outs = _seq(outputs, "outputs"), ins = _seq(inputs, "inputs"), gouts
    cdef Py_ssize_t k
    for k in range(len(ins)):
        if not isinstance(ins[k], Tensor):
            raise TypeError(f"autograd.grad: input {k} is a {type(ins[k]).__name__}, not a tensor")
    if grad_outputs is None:
        gouts = [None] * len(outs)
    else:
        gouts = _seq(grad_outputs, "grad_outputs")
        if len(gouts) != len(outs):
            raise ValueError(f"autograd.grad: {len(gouts)} grad_outputs for {len(outs)} outputs")
    return tuple(run_backward(outs, gouts, ins, bool(retain_graph), False, bool(allow_unused),
                              "autograd.grad"))


cdef Tensor _take_grad(Tape tp, cad_hid h):
    """the gradient of buf h as a tensor (taking ownership of a large buffer)"""
    cdef cad_buf *b = &tp.t.bufs[h]
    cdef cnp.npy_intp dims[MAXDIM]
    cdef cnp.ndarray a
    cdef int d
    cdef size_t nb
    cdef DevArray da
    cdef DevBlock blk
    if b.flags & BUF_INLINE:
        return _new_inline(b.sgrad)
    if b.flags & BUF_CUDA:   # the device gradient buffer becomes the tensor's block
        shape = tuple([tp.t.meta[b.meta + d] for d in range(b.ndim)])
        if b.grad == NULL:
            return _dfull(shape, b.dtype, 0)
        blk = DevBlock.__new__(DevBlock)
        blk.ptr = b.grad
        blk.nbytes = <size_t>(b.size * _ESIZE[b.dtype])
        b.grad = NULL
        da = DevArray.__new__(DevArray)
        da.block = blk
        da.ptr = blk.ptr
        da.ndim = b.ndim
        da.dt = b.dtype
        da.size = b.size
        cad_contig_strides(b.ndim, tp.t.meta + b.meta, da.st)
        for d in range(b.ndim):
            da.shp[d] = tp.t.meta[b.meta + d]
        return _dwrap(da)
    for d in range(b.ndim):
        dims[d] = tp.t.meta[b.meta + d]
    if b.grad == NULL:
        a = cnp.PyArray_ZEROS(b.ndim, dims, _TYPENUM[b.dtype], 0)
    elif b.size <= 4096:
        a = cnp.PyArray_EMPTY(b.ndim, dims, _TYPENUM[b.dtype], 0)
        nb = b.size * _ESIZE[b.dtype]
        memcpy(cnp.PyArray_DATA(a), b.grad, nb)
    else:
        a = cnp.PyArray_SimpleNewFromData(b.ndim, dims, _TYPENUM[b.dtype], <void *>b.grad)
        cnp.set_array_base(a, PyCapsule_New(<void *>b.grad, NULL, _free_capsule))
        b.grad = NULL
    return _wrap(a)


cdef Tensor _sum_grads(Tape tp, list hs):
    """the sum of the gradients of handles hs (one value registered several times,
    e.g. a leaf used on two tapes that were merged)"""
    cdef cad_hid h0 = hs[0], h
    cdef cad_buf *b0 = &tp.t.bufs[h0]
    cdef cad_buf *b
    cdef Tensor r
    cdef cnp.ndarray a
    cdef int64_t i, n
    cdef double acc
    if len(hs) == 1:
        return _take_grad(tp, h0)
    if b0.flags & BUF_CUDA:
        r = _take_grad(tp, h0)
        for h in hs[1:]:
            if tp.t.bufs[h].grad != NULL:
                r = _plus(r, _take_grad(tp, h))
        return r
    if b0.flags & BUF_INLINE:
        acc = 0.0
        for h in hs:
            acc += tp.t.bufs[h].sgrad
        return _new_inline(acc)
    r = _take_grad(tp, h0)
    a = <cnp.ndarray>r._arr
    cnp.PyArray_ENABLEFLAGS(a, cnp.NPY_ARRAY_WRITEABLE)
    n = b0.size
    for h in hs[1:]:
        b = &tp.t.bufs[h]
        if b.grad == NULL:
            continue
        if b.dtype == CAD_F64:
            for i in range(n):
                (<double *>cnp.PyArray_DATA(a))[i] += (<double *>b.grad)[i]
        else:
            for i in range(n):
                (<float *>cnp.PyArray_DATA(a))[i] += (<float *>b.grad)[i]
    cnp.PyArray_CLEARFLAGS(a, cnp.NPY_ARRAY_WRITEABLE)
    return r


cdef Tensor _plus(Tensor a, Tensor b):
    if a._inline and b._inline:
        return _new_inline(a._sval + b._sval)
    with no_grad():
        return <Tensor>_ew_general(OP_ADD, (a, b))


cdef _consume(Tape tp):
    tp._release()
    tp._consumed = True


cdef int _seed(Tape tp, cad_hid h, object ga, str who) except -1:
    """add the seed ga (an untracked tensor of the output's device, dtype and shape;
    None: one, for a one-element output) into buffer h's gradient"""
    cdef cad_buf *b = &tp.t.bufs[h]
    cdef cad_iter it
    cdef int d
    cdef Tensor g
    cdef _Storage S
    _dcheck(cad_ensure_grad(b), who)
    if b.flags & BUF_INLINE:
        b.sgrad += 1.0 if ga is None else (<Tensor>ga).item()
        return 0
    if ga is None and not (b.flags & BUF_CUDA):   # d(y)/d(y) of a one-element host output
        if b.dtype == CAD_F64:
            (<double *>b.grad)[0] += 1.0
        else:
            (<float *>b.grad)[0] += 1.0
        return 0
    S = _st_on(1 if b.flags & BUF_CUDA else 0)
    g = S.full(tuple([tp.t.meta[b.meta + d] for d in range(b.ndim)]), b.dtype, 1) if ga is None \
        else <Tensor>ga
    it.nop = 2
    it.ndim = b.ndim
    for d in range(b.ndim):
        it.shape[d] = tp.t.meta[b.meta + d]
    cad_iter_operand(&it, 0, b.grad, _ESIZE[b.dtype], b.ndim, tp.t.meta + b.meta,
                     _contig(b.ndim, tp.t.meta + b.meta))
    _operand(&it, 1, g)
    S.run(&it, cad_acc_row(b.dtype), cad_par_min, who)
    return 0


# NOTE [ Threads and .grad ]
# Several threads may run backward passes into the same leaves at once (each on its
# own tape).  Adding a gradient into a leaf's .grad reads the old value, adds, and
# stores the sum; numpy releases the GIL inside the add for large arrays, so two
# threads could both read the old value and one update would be lost.  The add runs
# under one process-wide lock.  Cases that need no lock keep the GIL as their lock:
# the first gradient (a store) and inline scalars (an add in C with the GIL held),
# so scalar code (W1) takes no lock at all; the lock is a C lock taken without the GIL
# when it is contended (a holder may be waiting for the GIL inside numpy's add).
cdef PyThread_type_lock _grad_lock = PyThread_allocate_lock()


cdef inline void _grad_lock_acquire():
    if not PyThread_acquire_lock(_grad_lock, NOWAIT_LOCK):
        with nogil:
            PyThread_acquire_lock(_grad_lock, WAIT_LOCK)


def run_backward(list outputs, list grad_outputs, object inputs, bint retain, bint accumulate,
                 bint allow_unused, str who, int64_t stop=0):
    """The sweep driver behind backward() and autograd.grad.  accumulate: add into
    leaves' .grad; otherwise return the gradients of `inputs` (a list)."""
    if cad_rec_mode:
        raise BackwardError(f"{who}: inside cad.record the backward pass is not replayable; "
                            "record the function and call tape.grad, or use cad.grad inside it")
    cdef Tensor y, x, g
    cdef Tape tp
    cdef Py_ssize_t k, j, ti, nout = len(outputs), nin
    cdef list tapes = []
    cdef list seeds = []       # (tape index, handle, seed array or None)
    cdef list direct = []      # (leaf output, seed)
    cdef list ins = list(inputs) if inputs is not None else []
    cdef list in_h = []        # (input index, tape index, handle)
    cdef list got
    cdef dict leafg
    cdef set early = set()     # ids of leaves whose hooks ran during the sweep
    cdef int64_t i
    cdef int st
    cdef cad_buf *b
    nin = len(ins)
    if len(grad_outputs) != nout:
        raise ValueError(f"{who}: {len(grad_outputs)} gradients (grad_tensors) for {nout} tensors; "
                         "pass one per tensor (None for a scalar), or none at all")
    for k in range(nout):
        y = outputs[k] if type(outputs[k]) is Tensor else as_tensor(outputs[k])
        ga = grad_outputs[k]
        if not y._rg:
            raise BackwardError(f"{who}: output {k} does not require grad (no input of the ops "
                                "that made it requires grad, or it was made under no_grad)")
        if ga is None:
            if not y._inline and y.size != 1:
                raise BackwardError(f"{who}: output of shape {y.shape} is not a scalar; pass "
                                    "grad_output (a tensor of the output's shape)")
        else:   # grad_output as an untracked tensor of the output's device, dtype and shape
            ga = _to_dev(as_tensor(ga).detach(), y._dev)
            if (<Tensor>ga)._dtype != y._dtype:
                ga = cast(ga, _DTYPES[y._dtype])
            if (<Tensor>ga).shape != y.shape:
                raise ShapeError(f"{who}: grad_output of shape {(<Tensor>ga).shape} does not match the "
                                 f"output's shape {y.shape}")
        if y._tape is None:
            direct.append((y, ga))
            continue
        tp = _resolved(y)
        if tp._consumed:
            raise BackwardError(f"{who}: this tensor's tape was consumed by an earlier backward(); "
                                "pass retain_graph=True to the first call to run backward again")
        if tp._busy:
            raise BackwardError(f"{who}: another thread is running backward on this tape")
        for ti in range(len(tapes)):
            if tapes[ti] is tp:
                break
        else:
            tapes.append(tp)
            ti = len(tapes) - 1
        seeds.append((ti, y._h, ga))
    for j in range(nin):
        x = ins[j]
        if not _isfloat(x._dtype):
            raise DTypeError(f"{who}: input {j} has dtype {_DTNAMES[x._dtype]}; gradients are "
                             "defined for float inputs only")
        if not x._rg:
            raise BackwardError(f"{who}: input {j} (shape {x.shape}) does not require grad")
    # seed, mark, sweep each tape
    for ti in range(len(tapes)):
        tp = tapes[ti]
        cad_tape_clear_grads(&tp.t)
        for sd in seeds:
            if sd[0] == ti:
                _seed(tp, <cad_hid>sd[1], sd[2], who)
        if accumulate:
            for i in range(tp.t.nbufs):
                if tp.t.bufs[i].flags & BUF_LEAF:
                    tp.t.bufs[i].flags |= BUF_KEEP
        else:
            for j in range(nin):
                x = ins[j]
                if x._tape is not None:
                    if _resolved(x) is tp:
                        tp.t.bufs[x._h].flags |= BUF_KEEP
                        in_h.append((j, ti, x._h))
                else:
                    for i in range(tp.t.nbufs):
                        if cad_leaf(tp.t.meta, &tp.t.bufs[i]) == <void *>x:
                            tp.t.bufs[i].flags |= BUF_KEEP
                            in_h.append((j, ti, i))
        tp._busy = True
        if accumulate and _ANY_HOOKS and len(tapes) == 1 and not direct:
            # NOTE [ Gradient hooks ]: the sweep in segments, hooked leaves handed over
            # (and their hooks run) as soon as their gradients are final
            try:
                st = _sweep_hooked(tp, stop, early, who)
            except BaseException:
                tp._busy = False
                cad_tape_clear_grads(&tp.t)
                raise
        elif tp.t.nrecs > 64 or _holds_arrays(&tp.t):
            with nogil:
                st = cad_sweep(&tp.t, 1, stop)
        else:   # a few scalar records: releasing the GIL costs more than the sweep
            st = cad_sweep(&tp.t, 1, stop)
        tp._busy = False
        if st != CAD_OK:
            for tp2 in tapes:
                cad_tape_clear_grads(&(<Tape>tp2).t)
            _check(st, who)
    # collect (nothing the user holds changes before every check passed)
    got = [None] * nin
    leafg = {}
    try:
        for ti in range(len(tapes)):
            tp = tapes[ti]
            groups = {}    # id(value) -> [handles]: a leaf may be registered several times
            if accumulate:
                for i in range(tp.t.nbufs):
                    b = &tp.t.bufs[i]
                    if (b.flags & BUF_LEAF) and b.hasg:
                        x = <Tensor>cad_leaf(tp.t.meta, b)
                        if x._version != cad_version(tp.t.meta, b):
                            raise BackwardError(
                                f"{who}: a leaf of shape {x.shape} was modified in place "
                                f"(version {x._version}, recorded at {cad_version(tp.t.meta, b)}) after it was "
                                "used; its gradient would belong to the old value")
                        hl = groups.get(id(x))
                        if hl is None:
                            groups[id(x)] = [x, i]
                        else:
                            hl.append(i)
                for hl in groups.values():
                    x = hl[0]
                    if early and id(x) in early:   # handed over during the sweep
                        continue
                    g = _sum_grads(tp, hl[1:])
                    prev = leafg.get(id(x))
                    leafg[id(x)] = (x, g if prev is None else _plus(prev[1], g))
            else:
                for e in in_h:
                    if e[1] == ti and tp.t.bufs[<cad_hid>e[2]].hasg:
                        hl = groups.get(e[0])
                        if hl is None:
                            groups[e[0]] = [e[2]]
                        else:
                            hl.append(e[2])
                for j, hl in groups.items():
                    g = _sum_grads(tp, hl)
                    got[j] = g if got[j] is None else _plus(got[j], g)
        for e in direct:
            y = e[0]
            g = _st(y).full(y.shape, y._dtype, 1) if e[1] is None else <Tensor>e[1]
            if accumulate:
                prev = leafg.get(id(y))
                leafg[id(y)] = (y, g if prev is None else _plus(prev[1], g))
            else:
                for j in range(nin):
                    if ins[j] is y:
                        got[j] = g if got[j] is None else _plus(got[j], g)
    finally:
        for tp in tapes:
            cad_tape_clear_grads(&tp.t)
            if not retain:
                _consume(tp)
    if accumulate:   # NOTE [ Threads and .grad ]
        for e in leafg.values():
            x = e[0]
            g = <Tensor>e[1]
            _accumulate_into(x, g)
            if _ANY_HOOKS:
                _run_hooks(x)
        return None
    if not allow_unused:
        for j in range(nin):
            if got[j] is None:
                raise BackwardError(f"{who}: input {j} (shape {ins[j].shape}) was not used to "
                                    "compute the outputs; pass allow_unused=True to get None for it")
    return got


cdef void _accumulate_into(Tensor x, Tensor g) except *:
    """x.grad += g (the first gradient a store), named as x"""
    if x._grad is None or ((<Tensor>x._grad)._inline and g._inline):
        x._grad = g if x._grad is None else _new_inline((<Tensor>x._grad)._sval + g._sval)
    else:
        _grad_lock_acquire()
        try:
            x._grad = _plus(<Tensor>x._grad, g)
        finally:
            PyThread_release_lock(_grad_lock)
    if x._names is not None and (<Tensor>x._grad)._names is None:
        (<Tensor>x._grad)._names = x._names   # the gradient is named as its leaf


# NOTE [ Gradient hooks ]
# t.register_post_accumulate_grad_hook(fn) (PyTorch's name): fn(t) runs once t.grad
# holds this backward's gradient.  A backward over one tape whose leaves have hooks
# sweeps in segments: each hooked leaf's gradient is final once the sweep has passed
# the first record that reads the leaf (the records below never touch it), so the
# sweep stops there (the GIL taken back), hands that leaf's gradient over and runs its
# hooks, then goes on.  Leaves without hooks are handed over at the end as always; a
# hooked leaf's .grad is thus set before the sweep finishes, so an error later in the
# sweep leaves it updated (the others unchanged).  cad.distributed's
# all_reduce_grads(overlap) starts a bucket's non-blocking all-reduce from the hook
# of its last leaf while the sweep goes on.
# The hooks live in _HOOKS, not on the tensor (a field on every tensor cost W1 its
# allocation size class): id(leaf) -> [leaf, hook, ...]; the entry keeps the leaf
# alive, so its id cannot be reused, until its last hook is removed.
cdef bint _ANY_HOOKS = False
cdef dict _HOOKS = {}


cdef class _HookHandle:
    cdef object _key
    cdef object _fn

    def __init__(self, key, fn):
        self._key = key
        self._fn = fn

    def remove(self):
        """unregister the hook (a second remove does nothing); the tensor is no longer
        kept alive by it"""
        global _ANY_HOOKS
        hl = _HOOKS.get(self._key)
        if hl is None:
            return
        for i in range(1, len(hl)):
            if hl[i] is self._fn:
                del hl[i]
                break
        if len(hl) == 1:
            del _HOOKS[self._key]
            _ANY_HOOKS = len(_HOOKS) > 0


cdef inline bint _hooked(Tensor x):
    return _ANY_HOOKS and id(x) in _HOOKS


cdef void _run_hooks(Tensor x) except *:
    hl = _HOOKS.get(id(x))
    if hl is not None:
        for h in hl[1:]:
            h(x)


cdef int _sweep_hooked(Tape tp, int64_t stop, set early, str who) except? -1:
    """the sweep of one tape in segments at its hooked leaves' first uses (NOTE [
    Gradient hooks ]); returns the sweep's status"""
    cdef dict at = {}          # first use -> [leaf, handles...] per hooked leaf
    cdef dict groups = {}
    cdef int64_t i, k, start = tp.t.nrecs, fu
    cdef int st = CAD_OK
    cdef cad_buf *b
    cdef Tensor x
    for i in range(tp.t.nbufs):
        b = &tp.t.bufs[i]
        if (b.flags & BUF_LEAF) and cad_leaf(tp.t.meta, b) != NULL:
            x = <Tensor>cad_leaf(tp.t.meta, b)
            if _hooked(x):
                hl = groups.get(id(x))
                if hl is None:
                    groups[id(x)] = [x, i]
                else:
                    hl.append(i)
    for hl in groups.values():
        fu = min([first_use(tp, h) for h in hl[1:]])
        at.setdefault(max(fu, stop), []).append(hl)
    for k in sorted(at, reverse=True):
        with nogil:
            st = cad_sweep_from(&tp.t, 1, start, k)
        if st != CAD_OK:
            return st
        start = k
        for hl in at[k]:
            x = hl[0]
            handles = [h for h in hl[1:] if tp.t.bufs[<cad_hid>h].hasg]
            if not handles:
                continue
            if x._version != cad_version(tp.t.meta, &tp.t.bufs[<cad_hid>handles[0]]):
                raise BackwardError(f"{who}: a leaf of shape {x.shape} was modified in place "
                                    f"(version {x._version}, recorded at "
                                    f"{cad_version(tp.t.meta, &tp.t.bufs[<cad_hid>handles[0]])}) after it was used; its "
                                    "gradient would belong to the old value")
            _accumulate_into(x, _sum_grads(tp, handles))
            early.add(id(x))
            _run_hooks(x)
    if start > stop:
        with nogil:
            st = cad_sweep_from(&tp.t, 1, start, stop)
    return st
