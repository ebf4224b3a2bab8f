"""User-defined primitives: a Python function with its own derivative rules, which
every transform respects (``cad.primitive``; autograd.extend's primitive/defvjp/
defjvp, jax.custom_vjp/custom_jvp, torch.autograd.Function play this part there).

NOTE [ Custom primitives ]
One entry of the op table, ``custom``, stands for every user primitive.  A call
runs the function eagerly on plain (detached) tensors, so numpy code works inside
it (``np.asarray(x)``); its float outputs are packed into one flat value, the
record's output (one output of any shape is the record's output itself), and the
caller gets them as views of it.  The record's aux is ``[entry, n, layout...]``: the
entry (the primitive and the call's non-tensor arguments) lives in ``_ENTRIES``, the
layout (n ints) gives the outputs' structure and shapes.  Then:
- the first-order reverse sweep in C reaches the record's vjp kernel, which calls
  back into Python (cad/_core/custom.pxi takes the GIL): the user's vjp on plain
  tensors, its cotangents accumulated in C;
- the Python sweeps (create_graph, forward mode, a basis of cotangents or tangents)
  call the rules below on the tape's nodes, so a vjp or jvp written with cad ops is
  recorded again and higher orders are right (a rule written in numpy is first
  order only: the README says so);
- a missing rule is derived from the other by transposition (jvp from vjp: the
  gradient in u of <vjp(u), t>; vjp from jvp: the gradient in t of <jvp(t), g>),
  which needs the given rule written with cad ops (it is linear in u or t);
- a replay calls the function again (the forward kernel's hook); vmap runs the
  primitive's ``defvmap`` rule, else one call per example, stacked;
- a saved tape cannot hold a custom record (cad.load never runs code);
- a call on CUDA tensors computes on the host: its inputs and outputs move through
  the differentiable to_device op, so the record itself is always on a CPU tape.
"""
import math

import numpy as np

from ._batch import Batched
from ._registry import VMAP, defop

try:
    from .._core import _engine as C
except ImportError:   # the build reads this table before the extension exists
    C = None

CUSTOM = defop("custom", "custom", kernel="cad_custom_vjp", method=False, export=False,
               doc="a user primitive's record (cad.primitive; internal)")

_ENTRIES = []    # entry id -> _Entry
_BY_KEY = {}     # (primitive id, static arguments) -> entry id


class _Entry:
    """one primitive with the non-tensor arguments of a call"""
    __slots__ = ("kwargs", "nargs", "prim", "static", "tpos")

    def __init__(self, prim, nargs, static, kwargs, tpos):
        self.prim = prim
        self.nargs = nargs
        self.static = static     # {position: value}
        self.kwargs = kwargs
        self.tpos = tpos         # positions of the tensor arguments (the record's inputs)

    def args(self, ts):
        """the positional arguments with tensors ts at their positions"""
        a = [None] * self.nargs
        for p, v in self.static.items():
            a[p] = v
        for p, t in zip(self.tpos, ts):
            a[p] = t
        return a


def _entry_id(prim, nargs, static, kwargs, tpos):
    try:
        key = (id(prim), nargs, tuple(sorted(static.items())), tuple(sorted(kwargs.items())),
               tuple(tpos))
        hash(key)
    except TypeError:
        key = None
    if key is not None and key in _BY_KEY:
        return _BY_KEY[key]
    _ENTRIES.append(_Entry(prim, nargs, dict(static), dict(kwargs), tuple(tpos)))
    eid = len(_ENTRIES) - 1
    if key is not None:
        _BY_KEY[key] = eid
    return eid


# ---- outputs: structure and packing

def _layout(multi, arrays):
    """the aux layout of a call's outputs: [multi, n, (is float, ndim, dims...) per output]"""
    L = [int(multi), len(arrays)]
    for a in arrays:
        L += [int(a.dtype.kind == "f"), a.ndim] + list(a.shape)
    return L


def _parse(lay):
    """(multi, [(is float, shape)]) (cached: three calls per primitive call)"""
    key = tuple(lay)
    got = _PARSED.get(key)
    if got is None:
        got = _parse_new(key)
        if len(_PARSED) < 4096:
            _PARSED[key] = got
    return got


_PARSED = {}


def _parse_new(lay):
    multi, n = bool(lay[0]), lay[1]
    outs, i = [], 2
    for _ in range(n):
        f, nd = lay[i], lay[i + 1]
        outs.append((bool(f), tuple(lay[i + 2:i + 2 + nd])))
        i += 2 + nd
    return multi, tuple(outs)


def _direct(lay):
    """one float output, not a tuple: the record's output is the output itself"""
    multi, outs = _parse(lay)
    return not multi and len(outs) == 1 and outs[0][0]


def _unpack(packed, lay, lead=()):
    """the outputs' structure (float outputs only; None for the others) from the
    packed value (a tensor, maybe tracked); lead: the packed value's leading batch
    dims, kept in front of every output"""
    multi, outs = _parse(lay)
    if not multi and len(outs) == 1 and outs[0][0]:
        return packed
    res, off = [], 0
    for f, shape in outs:
        if not f:
            res.append(None)
            continue
        n = math.prod(shape)
        part = packed[(slice(None),) * len(lead) + (slice(off, off + n),)] if lead else packed[off:off + n]
        res.append(C.reshape(part, tuple(lead) + tuple(shape)))
        off += n
    return tuple(res) if multi else res[0]


def _pack(parts, lay, dtype, lead=()):
    """the packed value of a structure of float outputs (None: zeros); lead: batch
    dims in front of every output (a part without them is broadcast to them)"""
    multi, outs = _parse(lay)
    parts = list(parts) if multi else [parts]
    lead = tuple(lead)
    if not multi and len(outs) == 1 and outs[0][0]:
        p = parts[0]
        return _cad().zeros(lead + outs[0][1], dtype=dtype) if p is None else _as(p, dtype, lead + outs[0][1])
    flat = []
    for (f, shape), p in zip(outs, parts):
        if not f:
            continue
        n = math.prod(shape)
        flat.append(_cad().zeros(lead + (n,), dtype=dtype) if p is None
                    else _cad().reshape(_as(p, dtype, lead + shape), lead + (n,)))
    if not flat:
        return _cad().zeros(lead + (0,), dtype=dtype)
    return flat[0] if len(flat) == 1 else _cad().concatenate(flat, axis=len(lead))


def _cad():
    import cad
    return cad


def _as(p, dtype, shape):
    t = p if isinstance(p, (C.Tensor, Batched)) else _cad().tensor(np.asarray(p), dtype=dtype)
    if t.dtype != dtype:
        t = t.astype(dtype)
    if tuple(t.shape) != tuple(shape):
        t = _cad().broadcast_to(t, tuple(shape))
    return t


# ---- the rules on one example (no batch dims)

def _user_vjp(e, lay, g, ans, vals, lead=()):
    """cotangents of the record's inputs (None where none) from the packed cotangent
    (lead: its batch dims, for a rule that takes them, NOTE [ Batched custom vjps ])"""
    prim = e.prim
    gs = _unpack(g, lay, lead)
    args = e.args(vals)
    if prim._vjp is not None:
        cts = prim._vjp(gs, ans, *args, **e.kwargs)
        if e.nargs == 1 and not isinstance(cts, (tuple, list)):
            cts = (cts,)
        else:
            cts = tuple(cts)
            if len(cts) != e.nargs:
                raise ValueError(f"cad.primitive {prim.__name__}: the vjp returned {len(cts)} "
                                 f"cotangents for {e.nargs} arguments")
        return [cts[p] for p in e.tpos]
    if prim._jvp is None:
        raise TypeError(f"cad.primitive {prim.__name__}: no derivative rule (defvjp or defjvp)")
    # vjp from jvp by transposition: the gradient in the tangents of <jvp(t), g>
    want = [i for i, p in enumerate(e.tpos) if vals[i].dtype.kind == "f"]
    if not want:
        return [None] * len(vals)
    gp = g

    def h(*ts):
        tt = [None] * len(vals)
        for i, t in zip(want, ts):
            tt[i] = t
        out_t = _user_jvp(e, lay, tt, ans, vals, g.dtype)
        return _cad().sum(out_t * gp) if out_t is not None else _cad().zeros((), dtype=g.dtype)
    from .. import transforms
    zs = [_cad().zeros(tuple(vals[i].shape), dtype=vals[i].dtype) for i in want]
    gr = transforms.grad(h, argnums=tuple(range(len(want))))(*zs)
    res = [None] * len(vals)
    for i, c in zip(want, gr):
        res[i] = c
    return res


def _user_jvp(e, lay, ts, ans, vals, dtype, lead=()):
    """the packed output tangent (None: zero) from the inputs' tangents (None: zero;
    lead: their batch dims, for a rule that takes them, NOTE [ Batched custom vjps ])"""
    prim = e.prim
    if prim._jvp is not None:
        targs = [None] * e.nargs
        for p, t, v in zip(e.tpos, ts, vals):
            if v.dtype.kind == "f":
                targs[p] = t if t is not None else _cad().zeros(tuple(v.shape), dtype=v.dtype)
        out_t = prim._jvp(tuple(targs), ans, *e.args(vals), **e.kwargs)
        return _pack(out_t, lay, dtype, lead)
    # jvp from vjp by transposition: the gradient in u of <vjp(u), t>
    live = [i for i, t in enumerate(ts) if t is not None]
    if not live:
        return None
    _, outs = _parse(lay)
    n = sum(math.prod(s) for f, s in outs if f)
    u0 = _cad().zeros(outs[0][1] if _direct(lay) else (n,), dtype=dtype)

    def h(u):
        cts = _user_vjp(e, lay, u, ans, vals)
        acc = _cad().zeros((), dtype=dtype)
        for i in live:
            if cts[i] is not None:
                acc = acc + _cad().sum(cts[i] * ts[i])
        return acc
    from .. import transforms
    return transforms.grad(h)(u0)


def _batched(nb, fn, *xs):
    """fn over the leading nb batch dims of the tensors xs (None passes), stacked"""
    lead = next(x for x in xs if x is not None).shape[:nb]
    B = math.prod(lead)
    flat = [None if x is None else C.reshape(x, (B,) + tuple(x.shape[nb:])) for x in xs]
    rows = [fn(*[None if x is None else x[b] for x in flat]) for b in range(B)]
    return rows, lead


def _stack(rows, lead):
    """stack per-example results (lists with None) into tensors with batch dims lead"""
    k = len(rows[0]) if rows else 0
    out = []
    for i in range(k):
        col = [r[i] for r in rows]
        if all(c is None for c in col):
            out.append(None)
            continue
        z = next(c for c in col if c is not None)
        col = [_cad().zeros(tuple(z.shape), dtype=z.dtype) if c is None else c for c in col]
        s = _cad().stack(col)
        out.append(C.reshape(s, tuple(lead) + tuple(s.shape[1:])))
    return out


def _record_parts(ctx):
    """a custom record as the rules see it: (entry, layout, input values, outputs)"""
    lay = ctx.aux[2:]
    vals = [ctx.val(i) for i in range(len(ctx.ins))]
    return _ENTRIES[ctx.aux[0]], lay, vals, _unpack(ctx.out_val(), lay)


@CUSTOM.vjp
def _custom_vjp(ctx, g):
    e, lay, vals, ans = _record_parts(ctx)
    want = [ctx.wants(i) for i in range(len(ctx.ins))]

    def one(gb):
        cts = _user_vjp(e, lay, gb, ans, vals)
        return [None if not w or c is None else _as(c, v.dtype, v.shape)
                for c, w, v in zip(cts, want, vals)]
    if ctx.nb == 0:
        return one(g)
    if _BATCHED_VJP and _rules_batch(e, vals):
        # NOTE [ Batched custom vjps ]
        lead = tuple(g.shape[:ctx.nb])
        cts = _user_vjp(e, lay, g, ans, vals, lead)
        return [None if not w or c is None else _as(c, v.dtype, lead + tuple(v.shape))
                for c, w, v in zip(cts, want, vals)]
    rows, lead = _batched(ctx.nb, one, g)
    return _stack(rows, lead)


@CUSTOM.jvp
def _custom_jvp(ctx, ts):
    e, lay, vals, ans = _record_parts(ctx)
    dt = ctx.out_dtype
    oshape = tuple(ctx.out_shape)

    def one(*tb):
        r = _user_jvp(e, lay, list(tb), ans, vals, dt)
        return [None if r is None else _as(r, dt, oshape)]
    if ctx.nb == 0:
        return one(*ts)[0]
    if _BATCHED_VJP and e.prim._jvp is not None and _rules_batch(e, vals):
        # NOTE [ Batched custom vjps ]: the rule takes the batch as leading dims
        lead = next(t for t in ts if t is not None).shape[:ctx.nb]
        r = _user_jvp(e, lay, list(ts), ans, vals, dt, lead)
        return _cad().zeros(tuple(lead) + oshape, dtype=dt) if r is None else r
    if ctx.nb == 1 and _VMAP_JVP:
        # NOTE [ Batched custom jvps ]: the batch of tangents (jacfwd's, hessian's
        # forward half) through one vmap of the rule, not one call per tangent: the
        # rule's cad ops take the batch dim, a custom primitive it calls its defvmap
        # rule (linalg's solve: one batched solve for n tangents; a primitive without
        # one vmap calls per example).  A rule vmap cannot batch (it reads a tangent
        # as numpy: scipy.integrate's odeint) raises inside vmap; it is then called per
        # tangent, as the loop below did, and its primitive is not tried again.
        live = [i for i, t in enumerate(ts) if t is not None]
        if live and e.prim.__dict__.get("_jvp_vmaps", True):
            def onev(*tl):
                tb = [None] * len(ts)
                for i, t in zip(live, tl):
                    tb[i] = t
                r = one(*tb)[0]
                return _cad().zeros(oshape, dtype=dt) if r is None else r
            try:
                return _cad().vmap(onev)(*[ts[i] for i in live])
            except (ValueError, TypeError):
                e.prim._jvp_vmaps = False   # (the loop raises what is the rule's own error)
    rows, lead = _batched(ctx.nb, one, *ts)
    r = _stack(rows, lead)[0]
    if r is None:
        return _cad().zeros(tuple(lead) + oshape, dtype=dt)
    return r


_VMAP_JVP = True   # NOTE [ Batched custom jvps ]; False: one call per tangent (tests compare)

# NOTE [ Batched custom vjps ]
# jacrev (and hessian's inner jacrev of a jacrev) sends a custom record a batch of
# cotangents, one per output element, and jacfwd a batch of tangents.  The vjp rule
# was called once per cotangent: for linalg's solve at n = 32, 32 calls each
# unpacking, solving with the stored factors and forming -gb x^T; the jvp rule once
# under vmap (NOTE [ Batched custom jvps ]), whose wrapping costs more than the
# work at these sizes.  Rules written for batches of matrices (linalg's: every
# product a matmul over leading dims, every solve broadcasting its factors) take
# the whole batch as extra leading dims of the cotangents (tangents) and return
# results with the same leading dims; such a primitive says so with a predicate on
# its arguments, `prim._rules_batch(*args, **kwargs)` (linalg's solve and the
# triangular solve only for a right-hand side of two or more dims: a 1-D one would
# read the batch as its rows).  Under vmap the vjp was slower (stop 44: the factors
# are reused only for plain tensors); here it gets plain tensors, and _lu_solve
# solves a batch of right-hand sides against one matrix in one call.
_BATCHED_VJP = True   # False: one call per cotangent, the vmapped jvp (tests compare)


def _rules_batch(e, vals):
    """do the record's rules take a batch as leading dims (NOTE [ Batched custom vjps ])?"""
    ok = e.prim.__dict__.get("_rules_batch")
    return ok is not None and bool(ok(*e.args(vals), **e.kwargs))


@CUSTOM.eval
def _custom_eval(ctx, args):
    e = _ENTRIES[ctx.aux[0]]
    return e.prim._bind(e, ctx.aux[0], list(args), packed=True)


# ---- the hooks of the C sweeps (cad/_core/custom.pxi)

def _dispatch(kind, aux, ins, out, g, wants):
    e = _ENTRIES[aux[0]]
    lay = list(aux[2:])
    if kind == 0:   # forward (a replay): the packed float outputs
        arrays, _ = e.prim._run(e, ins)
        return _pack_np(arrays, lay)
    ans = _unpack(out, lay)
    cts = _user_vjp(e, lay, g, ans, ins)
    res = []
    for c, w, v in zip(cts, wants, ins):
        if not w or c is None:
            res.append(None)
        else:
            res.append(np.asarray(c.detach() if isinstance(c, C.Tensor) else c))
    return res


def _pack_np(arrays, lay):
    if _direct(lay):
        return arrays[0]
    fl = [a.reshape(-1) for a in arrays if a.dtype.kind == "f"]
    if not fl:
        return np.zeros(0)
    dt = np.result_type(*fl)
    out = C.empty_array((sum(a.size for a in fl),), dt)   # (cad's block cache: a large
    return np.concatenate(fl, out=out)                     # one is not faulted in again)


# ---- the public API

class Primitive:
    """A function whose derivatives are the rules you give (``defvjp``, ``defjvp``),
    respected by every transform (grad, vjp, jvp, jacobian, hessian, vmap, record).

    The function gets its tensor arguments as plain tensors (numpy works on them)
    and its other arguments as given; it returns an array or tensor, or a tuple of
    them.  Integer and bool outputs are not differentiable."""

    def __init__(self, fun, name=None):
        self.fun = fun
        self.__name__ = name or getattr(fun, "__name__", "primitive")
        self.__doc__ = getattr(fun, "__doc__", None)
        self.__wrapped__ = fun
        self._vjp = None
        self._autograd_form = False
        self._jvp = None
        self._vmap = None

    def __repr__(self):
        return f"<cad.primitive {self.__name__}>"

    # -- rules
    def defvjp(self, *rules, argnums=None):
        """``p.defvjp(vjp)`` with vjp(g, ans, *args, **kwargs) -> one cotangent per
        positional argument (None for none; a single value for one argument); g and
        ans have the structure of the outputs.  Also autograd's form
        ``p.defvjp(maker_0, maker_1, ...)`` with maker_i(ans, *args) -> (g -> cotangent
        of argument i) (None for an argument without one).  Usable as a decorator."""
        if len(rules) == 1 and argnums is None and not self._autograd_form:
            self._vjp = rules[0]
            return rules[0]
        makers = list(rules)
        nums = list(argnums) if argnums is not None else list(range(len(makers)))

        def vjp(g, ans, *args, **kw):
            cts = [None] * len(args)
            for p, mk in zip(nums, makers):
                if mk is not None:
                    cts[p] = mk(ans, *args, **kw)(g)
            return tuple(cts)
        self._vjp = vjp
        return self

    def defjvp(self, *rules, argnums=None):
        """``p.defjvp(jvp)`` with jvp(tangents, ans, *args, **kwargs) -> the outputs'
        tangent (tangents: one per positional argument, zeros for a float tensor
        without one, None for the others).  Also autograd's form
        ``p.defjvp(jvp_0, jvp_1, ...)`` with jvp_i(t_i, ans, *args) -> argument i's
        contribution (the contributions are added).  Usable as a decorator."""
        if len(rules) == 1 and argnums is None:
            self._jvp = rules[0]
            return rules[0]
        parts = list(rules)
        nums = list(argnums) if argnums is not None else list(range(len(parts)))

        def jvp(ts, ans, *args, **kw):
            acc = None
            for p, r in zip(nums, parts):
                if r is not None and ts[p] is not None:
                    c = r(ts[p], ans, *args, **kw)
                    acc = c if acc is None else (tuple(a + b for a, b in zip(acc, c))
                                                 if isinstance(c, tuple) else acc + c)
            return acc
        self._jvp = jvp
        return self

    def defvmap(self, rule):
        """``p.defvmap(rule)`` with rule(*args, **kwargs) -> the outputs with a leading
        batch axis, where every tensor argument has one (size 1 broadcasts against
        the others' size); without it, vmap calls the primitive once per example.
        Usable as a decorator."""
        self._vmap = rule
        return rule

    # -- calls
    def _run(self, e, ins):
        """the function on plain tensors ins: (list of ndarrays, multi)"""
        prev = C._set_record_mode(0)   # a replay calls the function again: no guards
        try:
            with C.no_grad():
                res = self.fun(*e.args([x.detach() if isinstance(x, C.Tensor) else x for x in ins]),
                               **e.kwargs)
        finally:
            C._set_record_mode(prev)
        multi = isinstance(res, (tuple, list))
        arrays = []
        for o in (res if multi else (res,)):
            a = np.asarray(o.detach() if isinstance(o, C.Tensor) else o)   # (_bind copies once)
            if a.dtype.kind == "c":
                raise TypeError(f"cad.primitive {self.__name__}: complex outputs are not supported")
            if a.dtype.kind == "f" and a.dtype not in (np.float64, np.float32):
                a = a.astype(np.float64)
            arrays.append(a)
        return arrays, multi

    def _bind(self, e, eid, ts, packed=False):
        arrays, multi = self._run(e, ts)
        lay = _layout(multi, arrays)
        fl = [a for a in arrays if a.dtype.kind == "f"]
        dt = np.result_type(*fl) if fl else np.dtype(np.float64)
        buf = _pack_np([a.astype(dt, copy=False) if a.dtype.kind == "f" else a for a in arrays], lay) \
            if fl else np.zeros(0, dtype=dt)
        if _direct(lay):   # the function's own array (maybe an input's): a copy
            buf = np.array(buf, copy=True, order="C")
        ptensor = C.from_numpy(buf, None, False, False)   # a fresh array: no second copy
        if fl:
            C.record_custom(CUSTOM.code, ptensor, list(ts), (eid, len(lay)) + tuple(lay))
        if packed:
            return ptensor
        outs = _unpack(ptensor, lay)
        if not multi:
            return outs if arrays[0].dtype.kind == "f" else _cad().tensor(arrays[0])
        return tuple(o if a.dtype.kind == "f" else _cad().tensor(a) for o, a in zip(outs, arrays))

    def __call__(self, *args, **kwargs):
        if VMAP[0]:
            r = self._vmapped(args, kwargs)
            if r is not NotImplemented:
                return r
        static, tpos, ts = {}, [], []
        dev = None
        for p, a in enumerate(args):
            if isinstance(a, C.Tensor):
                tpos.append(p)
                ts.append(a)
                if a.device.type != "cpu":
                    dev = a.device
            elif isinstance(a, np.ndarray) or (isinstance(a, (list, tuple)) and a
                                               and any(isinstance(x, C.Tensor) for x in a)):
                tpos.append(p)
                ts.append(_cad().tensor(a))
            else:
                static[p] = a
        if len(ts) > 7:
            raise ValueError(f"cad.primitive {self.__name__}: at most 7 tensor arguments, got {len(ts)}")
        if dev is not None:   # computed on the host (NOTE [ Custom primitives ])
            ts = [t.to("cpu") if t.device.type != "cpu" else t for t in ts]
        eid = _entry_id(self, len(args), static, kwargs, tpos)
        out = self._bind(_ENTRIES[eid], eid, [C.contiguous(t) for t in ts])
        if dev is not None:
            if isinstance(out, tuple):
                return tuple(o.to(dev) for o in out)
            return out.to(dev)
        return out

    def _vmapped(self, args, kwargs):
        from ._batch import Batched, _find, lift
        level = _find(args, kwargs)
        if level is None:
            return NotImplemented
        if self._vmap is not None:
            vals = [lift(a, level) if type(a) is Batched and a.level is level else a for a in args]
            r = self._vmap(*vals, **kwargs)
            return tuple(Batched(x, level) for x in r) if isinstance(r, (tuple, list)) \
                else Batched(r, level)
        # one call per example, stacked
        B = next(a.val.shape[0] for a in args if type(a) is Batched and a.level is level)
        rows = []
        for b in range(B):
            ex = [a.val[b] if type(a) is Batched and a.level is level else a for a in args]
            rows.append(self(*ex, **kwargs))
        stack = _cad().stack
        if isinstance(rows[0], tuple):
            return tuple(Batched(stack([r[i] for r in rows]), level) for i in range(len(rows[0])))
        return Batched(stack(rows), level)


def primitive(fun=None, *, name=None):
    """``@cad.primitive`` makes fun a primitive whose derivative rules you give with
    ``.defvjp`` / ``.defjvp`` (NOTE [ Custom primitives ])."""
    if fun is None:
        return lambda f: Primitive(f, name)
    return Primitive(fun, name)


def defvjp(prim, *makers, argnums=None):
    """autograd.extend's form: defvjp(prim, maker_0, maker_1, ...)"""
    prim._autograd_form = True
    return prim.defvjp(*makers, argnums=argnums if argnums is not None else list(range(len(makers))))


def defjvp(prim, *rules, argnums=None):
    """autograd.extend's form: defjvp(prim, jvp_0, jvp_1, ...)"""
    return prim.defjvp(*rules, argnums=argnums if argnums is not None else list(range(len(rules))))


def attach():
    """install the C sweeps' hooks (called once the engine is bound)"""
    C.set_custom_dispatch(_dispatch)
