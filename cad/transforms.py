"""Function transforms: grad, value_and_grad, vjp, jvp, jacrev, jacfwd, jacobian,
hessian, hvp.  Thin: each records f on a tape and sweeps it.

NOTE [ Transforms and tapes ]
A transform feeds f fresh inputs: a new leaf when the argument is a plain value, or
an identity view recorded on the argument's tape when an outer computation tracks it
(an outer transform, or a tensor that requires grad).  It differentiates with respect
to those nodes only, and sweeps only the records made after them, so nested
transforms never confuse their perturbations.  Reverse mode uses the C sweep when
nothing outside the transform is involved; otherwise, and for batched cotangents or
tangents and for forward mode, it runs the op table's differentiable rules over the
records (`reverse_sweep`, `forward_sweep`) with recording on, so the result can be
differentiated again (by any transform, in either order).
"""
from __future__ import annotations

from typing import Any, Callable, Sequence, Tuple, Union

import math

import numpy as np

from . import tree as T
from . import vmap as _V
from ._core import _engine as C
from .ops import REGISTRY, primitives
from .ops import _batch as _B
from .ops._registry import NAMES as _NAMES
from .ops._rules import Ctx, Diag
from . import names as _N

_VJP = None
_JVP = None
_PRIMS = None
_EW_PLAIN = b""


def _tables():
    global _VJP, _JVP, _PRIMS, _EW_PLAIN
    if _VJP is None:
        _PRIMS = primitives()
        _JVP = [op.jvp_rule for op in _PRIMS]
        # elementwise ops whose vjp is their partials' programs (no special-case partial)
        _EW_PLAIN = bytes(op.kind == "ew" and not op.fast_partial for op in _PRIMS)
        from .ops import scalar_graph
        C.set_scalar_programs(*scalar_graph.tables())
        C.set_rule_partials([getattr(op, "partials", None) for op in _PRIMS])
        _VJP = [op.vjp_rule for op in _PRIMS]   # (last: a thread that sees it set finds the rest)
    return _VJP, _JVP


_FLAG_RG, _FLAG_DEAD = 2, 8
_C_FORWARD = True   # NOTE [ C forward sweep ]; False: every record by its rule (tests compare)
_C_SCALAR_GRAPH = True   # NOTE [ Scalar second order in C ]; False: the Python sweep (tests compare)
_C_REVERSE = True   # the rules' reverse sweep's loop in Cython (reverse_sweep_r); False: in Python
_C_EW_VJP = True   # NOTE [ Elementwise vjps in the reverse sweep ]; False: their rules (tests compare)


def _identity_view(ctx):
    off, nd = ctx.aux[0], ctx.aux[1]
    shape, st = tuple(ctx.aux[2:2 + nd]), tuple(ctx.aux[2 + nd:2 + 2 * nd])
    if off or shape != tuple(ctx.shape(0)):
        return False
    s = 1
    for d in range(nd - 1, -1, -1):
        if shape[d] != 1 and st[d] != s:
            return False
        s *= max(shape[d], 1)
    return True


def _scale(v, d):
    """v times a partial (a tensor or a constant: 1 and -1 cost no multiply)"""
    if isinstance(d, float):
        return v if d == 1.0 else (-v if d == -1.0 else v * d)
    return v * d


def _diag_vjp(opdef, ctx, g):
    """the pullback of a diagonal batch g through one record, keeping it diagonal
    where the op allows; None: densify and use the op's rule"""
    kind = opdef.kind
    if kind == "ew":
        res = []
        for i, a in enumerate(opdef.args):
            if a not in opdef.d or not ctx.wants(i):
                res.append(None)
            elif ctx.shape(i) != ctx.out_shape:
                return None
            else:
                d = opdef.partial_rule(ctx, a)
                res.append(Diag(_scale(g.v, d)))
        return res
    if kind == "view" and _identity_view(ctx):
        return [Diag(C.reshape(g.v, tuple(ctx.shape(0))), g.unit)]
    if opdef.bilinear:   # its vjp takes the Diag (NOTE [ Linear and bilinear ops ])
        return opdef.vjp_rule(ctx, g)
    return None


def _diag_jvp(opdef, ctx, ts):
    """the pushforward of diagonal tangent batches through one record, kept diagonal
    where the op allows (a Diag, a dense tensor, or False: densify and use the
    op's rule).  Only called when some tangent is a Diag."""
    kind = opdef.kind
    if kind == "ew":
        acc = None
        for i, a in enumerate(opdef.args):
            t = ts[i]
            if t is None or a not in opdef.d:
                continue
            if not isinstance(t, Diag) or ctx.shape(i) != ctx.out_shape:
                return False
            d = opdef.partial_rule(ctx, a)
            c = _scale(t.v, d)
            acc = c if acc is None else acc + c
        return None if acc is None else Diag(acc)
    if kind == "view" and _identity_view(ctx):
        return Diag(C.reshape(ts[0].v, tuple(ctx.out_shape)), ts[0].unit)
    if opdef.name == "sum" and ts[0].v.size == math.prod(ctx.shape(0)) and math.prod(ctx.out_shape) == 1:
        # a full sum: direction k moves the one output by v_k
        return C.reshape(ts[0].v, (ts[0].v.size,) + tuple(ctx.out_shape))
    if opdef.bilinear:   # its derived jvp takes the Diag (NOTE [ Linear and bilinear ops ])
        return opdef.jvp_rule(ctx, ts)
    return False


def _unnamed(sweep):
    """a sweep runs its rules with name checking off (NOTE [ Named dimensions ]):
    the rules' inner ops are arithmetic on values; the transform names its results"""
    def run(*args, **kwargs):
        if not _NAMES[0]:
            return sweep(*args, **kwargs)
        prev = C._names_suspend()
        try:
            return sweep(*args, **kwargs)
        finally:
            C._names_restore(prev)
    run.__name__ = sweep.__name__
    run.__doc__ = sweep.__doc__
    return run


def _rev_record(tape, rec, g, nb, dep):
    """one record's input cotangents from its output's g in the rules' reverse sweep:
    a Diag kept diagonal where the op allows (_diag_vjp), else the op's vjp rule"""
    op, out, ins, aux = rec
    ctx = Ctx(tape, ins, out, aux, nb, dep)
    if isinstance(g, Diag):
        res = _diag_vjp(_PRIMS[op], ctx, g)
        if res is not None:
            return res
        g = g.dense()
    return _VJP[op](ctx, g)


@_unnamed
def reverse_sweep(tape, seeds, stop, nb, want):
    """Cotangents of the handles in `want`, from seeds {handle: cotangent with nb
    batch dims, or a Diag}, over records stop.. of tape, with the op table's rules."""
    _tables()
    if nb == 0 and _C_SCALAR_GRAPH:   # NOTE [ Scalar second order in C ]: scalar code, recording
        got = C.scalar_graph_sweep(tape, seeds, stop, want)
        if got is not None:
            return got
    if nb == 0 and _C_REVERSE and not any(isinstance(g, Diag) for g in seeds.values()):
        return C.reverse_sweep_r(tape, seeds, stop, list(want), _VJP, Ctx,   # (the same loop)
                                 _EW_PLAIN if _C_EW_VJP else b"")
    if nb == 1 and _C_REVERSE:   # NOTE [ Batched reverse sweep ] (the same loop)
        return C.reverse_sweep_b(tape, seeds, stop, list(want),
                                 lambda rec, g, dep: _rev_record(tape, rec, g, nb, dep), _add,
                                 _EW_PLAIN if _C_EW_VJP else b"", Diag)
    recs = tape.records(stop)
    cot = dict(seeds)
    keep = set(want)
    # only values computed from a wanted one can carry its cotangent: the others
    # (data such as vmap's batched inputs, which the recording tracks) get none, and a
    # wanted value's own producer is not swept (what made it is not differentiated)
    dep = set(keep)
    for op, out, ins, aux in recs:
        if out not in dep:
            for h in ins:
                if h in dep:
                    dep.add(out)
                    break
    for op, out, ins, aux in reversed(recs):
        g = cot.get(out)
        if g is None:
            continue
        if out in keep:
            continue
        del cot[out]
        if out not in dep:
            continue
        res = _rev_record(tape, (op, out, ins, aux), g, nb, dep)
        for h, c in zip(ins, res):
            if c is None or h < 0 or h not in dep:
                continue
            if tape.flags(h) & _FLAG_DEAD:
                raise C.BackwardError("the gradient reached a value whose tape was consumed by an "
                                      "earlier backward(); pass retain_graph=True to that backward")
            prev = cot.get(h)
            cot[h] = _add(prev, c)
    return {h: (cot[h].dense() if isinstance(cot.get(h), Diag) else cot.get(h)) for h in want}


_EW = None


def _ew_tables():
    global _EW, _EW_ANY, _EW_BYTES
    # ops with a cheaper special-case partial (pow with a constant exponent) keep
    # their rule: the fused row would evaluate the general expression per element
    ew = [op.kind == "ew" and not op.fast_partial for op in primitives()]
    _EW_ANY = [op.kind == "ew" for op in primitives()]
    _EW_BYTES = bytes(ew)
    _EW = ew   # (last: another thread that sees _EW set finds the other two set)


@_unnamed
def forward_sweep(tape, tangents, start, nb, want, fused=False):
    """Tangents of the handles in `want`, from tangents {handle: tangent with nb
    batch dims}, pushed through records start.. of tape with the op table's rules.
    fused: elementwise records use the generated one-pass C jvp rows (only when
    the tangents need not be differentiable)."""
    _tables()
    if _EW is None:
        _ew_tables()

    def rule(rec, ts):
        return _jvp_record(tape, rec, ts, nb, fused)
    if not fused and nb == 0 and _C_SCALAR_GRAPH:   # NOTE [ Scalar second order in C ]: recording
        got = C.scalar_graph_forward(tape, tangents, start, list(want))
        if got is not None:
            return got
    if _C_FORWARD and not fused and nb == 0 and all(type(t) is C.Tensor for t in tangents.values()):
        # NOTE [ Recording forward sweep ]: the same loop in Cython, the common records
        # without their rules
        return C.forward_sweep_r(tape, tangents, start, list(want), rule,
                                 _EW_PLAIN if _C_EW_VJP else b"")
    if _C_FORWARD and not fused and nb == 1 and _SCALED:
        # NOTE [ Recorded tangent batches ]: a batch that records, the same loop
        got = C.forward_sweep_b(tape, tangents, start, list(want), rule, _EW_BYTES, Diag, _Scaled, False)
        if got is not None:
            return {h: _unscaled(t) for h, t in got.items()}
    if _C_FORWARD and fused and nb == 1 and _SCALED and _DIAG_FUSED:
        # NOTE [ C forward sweep ]: elementwise records' batches in C, the other records
        # in Cython by their rules' ops, custom primitives by rule
        got = C.forward_sweep_b(tape, tangents, start, list(want), rule, _EW_BYTES, Diag, _Scaled)
        if got is not None:
            return {h: _unscaled(t) for h, t in got.items()}
    if _C_FORWARD and fused and nb == 0 and not any(isinstance(t, Diag) for t in tangents.values()):
        # NOTE [ C forward sweep ]: inline (scalar) records in C, the common array
        # records in Cython (NOTE [ Array records in the forward sweep ]), custom
        # primitives by rule
        got = C.forward_sweep_c(tape, tangents, start, list(want), rule, _EW_BYTES)
        if got is not None:
            return got
    tan = dict(tangents)
    recs = tape.records(start, tape.nrecs)
    # only records on a path to a wanted handle: hessian's forward half sweeps the
    # gradient's tape, whose first records compute f itself (its value's tangent,
    # an (n, n) batch through W7's sum, is never read)
    need = set(want)
    for rec in reversed(recs):
        if rec[1] in need:
            need.update(rec[2])
    for rec in recs:
        if rec[1] not in need:
            continue
        ts = [tan.get(h) if h >= 0 else None for h in rec[2]]
        if all(t is None for t in ts):
            continue
        r = rule(rec, ts)
        if r is not None:
            tan[rec[1]] = r
    return {h: _unscaled(tan.get(h)) for h in want}


def _unscaled(t):
    return t.dense() if isinstance(t, _Scaled) else t


_DIAG_FUSED = True


def _diag_ew_fused(tape, rec, ts):
    """the diagonal tangent batches of an elementwise record through its fused C jvp
    row: Diag(sum_i v_i * d_i), what _diag_jvp's ew branch computes with one cad op
    per partial.  None (the rules decide): a dense tangent among them, an input
    broadcast to the output, or no row for this set of tangents."""
    op, out, ins, aux = rec
    oshape = tape.info(out)[0]
    vs = []
    for t in ts:
        if t is None:
            vs.append(None)
        elif isinstance(t, Diag) and tuple(t.v.shape) == oshape:
            vs.append(t.v)
        else:
            return None
    r = tape.ew_jvp(op, out, ins, vs, 0)
    return None if r is None else Diag(r)


def _mixed_ew_fused(tape, rec, ts):
    """an elementwise record whose tangents mix diagonal batches and dense ones (W7:
    the gradient's x**3 part, diagonal, plus its W.T @ ... part, dense): the dense
    ones through the fused C row, then the diagonal ones' sum added along the
    diagonal of that fresh result in place, where densifying the Diag made an
    (m, m) matrix and one more pass.  None (the rules decide): a Diag or a dense
    tangent not of the output's shape, or no row."""
    op, out, ins, aux = rec
    oshape = tape.info(out)[0]
    m = math.prod(oshape)
    dense_ts, diag_ts = [], []
    for t in ts:
        if isinstance(t, Diag):
            if tuple(t.v.shape) != oshape or C.dev_of(t.v):
                return None
            dense_ts.append(None)
            diag_ts.append(t)
        else:
            if t is not None and tuple(t.shape) != (m,) + oshape:
                return None
            dense_ts.append(t)
            diag_ts.append(None)
    d = _diag_ew_fused(tape, rec, diag_ts)
    if d is None:
        return None
    r = tape.ew_jvp(op, out, ins, dense_ts, 1)
    if r is None:
        return None
    return r if C.add_diag_fresh(r, d.v) else None


# NOTE [ Scaled tangents ]
# A batch of tangents pushed through a chain of elementwise records is the batch that
# entered the chain times one value-shaped factor: t_out = sum_i t_i * d_i, and when
# every t_i is m * v_i for one batch m, t_out = m * (sum_i v_i * d_i).  The forward
# sweep keeps such a batch as _Scaled(m, v) and computes only v, at the value's size,
# multiplying m in (one pass at the batch's size) where a record is not elementwise
# or mixes batches.  W7's Hessian pushed W.T (a 128 x 128 batch, from the matmul)
# through tanh, square, sub and mul: four passes at the batch's size, now one, and a
# recorded Hessian (tape.hessian) records four products of 128-vectors and one of the
# batch instead of four of the batch.  Only for one leading batch dim (nb == 1: a
# single tangent gains nothing) and inputs of the output's shape (a broadcast input's
# factor would not be the output's).  m may be tracked: `dense` is a cad op, as the
# rules' own products, so the result differentiates again.


class _Scaled(C.ScaledBase):
    """a batch of tangents m * v, v broadcast along the batch dim (NOTE [ Scaled
    tangents ]); v None: m itself.  _Scaled(m, v); the fields are C slots of the
    engine's ScaledBase (NOTE [ Batch classes ])."""
    __slots__ = ()

    def dense(self):
        return self.m if self.v is None else self.m * self.v


_OP_ADD = C.OP_NAMES.index("add")
_OP_POW = C.OP_NAMES.index("pow")
_SCALED = True   # NOTE [ Scaled tangents ]; False: every batch dense (tests compare)
_EW_ANY = None
_EW_BYTES = b""


def _scaled_ew(tape, rec, ts, fused):
    """an elementwise record's tangent batches, all m * v_i for one m (a dense batch
    is m * 1), as _Scaled(m, sum_i v_i * d_i); None: a Diag among them, batches of
    different m, an input broadcast to the output, or no fused row"""
    op, out, ins, aux = rec
    m = None
    vs = []
    for t in ts:
        if t is None:
            vs.append(None)
            continue
        if isinstance(t, _Scaled):
            tm, tv = t.m, t.v
        elif isinstance(t, Diag):
            return None
        else:
            tm, tv = t, None
        if m is None:
            m = tm
        elif tm is not m:
            return None
        vs.append(tv)
    oshape = tape.info(out)[0]
    if tuple(m.shape[1:]) != oshape or not oshape:
        return None
    for i, t in enumerate(ts):
        if t is not None and ins[i] >= 0 and tape.info(ins[i])[0] != oshape:
            return None
    if fused and _fused_row(tape, op, ins):   # sum_i v_i * d_i by the op's fused C row (a dense batch: v_i = 1)
        ones = None
        for i, t in enumerate(ts):
            if t is not None and vs[i] is None:
                if ones is None:
                    ones = _ones(m, oshape)
                vs[i] = ones
        v = tape.ew_jvp(op, out, ins, vs, 0)
        return None if v is None else _Scaled(m, v)
    opdef = _PRIMS[op]
    ctx = Ctx(tape, ins, out, aux, 0)
    acc = None
    for i, a in enumerate(opdef.args):
        if ts[i] is None or a not in opdef.d:
            continue
        d = opdef.partial_rule(ctx, a)
        if isinstance(d, (int, float)):   # (a constant partial: 1, -1, 0)
            d = float(d)
        if vs[i] is not None:
            c = _scale(vs[i], d)
        elif isinstance(d, float):
            c = _ones(m, oshape) * d
        else:
            c = d
        acc = c if acc is None else acc + c
    if acc is None or tuple(acc.shape) != oshape:   # (a partial of a broadcast shape)
        return None
    return _Scaled(m, acc)


def _ones(m, shape):
    return C.const_on(np.ones(shape, dtype=m.dtype), C.dev_of(m))


def _diag_plus(tape, rec, ts):
    """add's tangent batches, one a Diag and one dense, both inputs of the output's
    shape: the Diag's values added along the dense batch's diagonal (Diag.plus);
    None: the rule decides"""
    a, b = ts
    if isinstance(a, Diag) == isinstance(b, Diag):
        return None
    oshape = tape.info(rec[1])[0]
    if any(h < 0 or tape.info(h)[0] != oshape for h in rec[2]):
        return None
    return b.plus(a) if isinstance(b, Diag) else a.plus(b)


def _jvp_record(tape, rec, ts, nb, fused):
    """the tangent of one record's output from its inputs' tangents ts (some
    present): the op table's rule, kept diagonal for Diag tangents, kept scaled
    (NOTE [ Scaled tangents ]) through elementwise records, or the fused C row of an
    elementwise op (fused: the tangents need not be differentiable)"""
    op, out, ins, aux = rec
    if nb == 1 and _SCALED and _EW_ANY[op]:
        r = _scaled_ew(tape, rec, ts, fused)
        if r is not None:
            return r
    ts = [t.dense() if isinstance(t, _Scaled) else t for t in ts]
    if any(isinstance(t, Diag) for t in ts):
        if fused and _DIAG_FUSED and _fused_row(tape, op, ins):
            r = _diag_ew_fused(tape, rec, ts)
            if r is None and nb == 1:
                r = _mixed_ew_fused(tape, rec, ts)
            if r is not None:
                return r
        r = _diag_jvp(_PRIMS[op], Ctx(tape, ins, out, aux, nb), ts)
        if r is not False:
            return r
        if op == _OP_ADD and nb == 1 and len(ts) == 2 and all(t is not None for t in ts):
            r = _diag_plus(tape, rec, ts)
            if r is not None:
                return r
        ts = [t.dense() if isinstance(t, Diag) else t for t in ts]
    if fused and _fused_row(tape, op, ins):
        r = tape.ew_jvp(op, out, ins, ts, nb)
        if r is not None:
            return r
    return _JVP[op](Ctx(tape, ins, out, aux, nb), ts)


def _fused_row(tape, op, ins):
    """does an elementwise record's tangent go through its fused C row?  pow only
    where _pow_dx's constant case does not apply (a tracked or array exponent, or the
    exponent's tangent): the row evaluates the general partial per element"""
    return _EW[op] or (op == _OP_POW and not _pow_const(tape, ins))


def _pow_const(tape, ins):
    """is pow's exponent a constant 0-d value (elementwise.py's _pow_dx applies)?"""
    if ins[1] < 0 or tape.flags(ins[1]) & 2:
        return False
    y = tape.node(ins[1])
    return isinstance(y, C.Tensor) and y.ndim == 0 and not y.requires_grad


# ---------------------------------------------------------------- inputs and outputs

def _fresh(x, k, who):
    """the node a transform differentiates with respect to (NOTE [ Transforms and tapes ])"""
    if not isinstance(x, C.Tensor):
        if isinstance(x, (bool, int, np.integer)):
            raise C.DTypeError(f"{who}: argument {k} is the integer {x!r}; differentiation needs "
                               "float inputs (write it as a float)")
        x = C.as_tensor(x)
    if x.dtype.kind != "f":
        raise C.DTypeError(f"{who}: argument {k} has dtype {x.dtype}; differentiation needs float "
                           "inputs")
    if x.requires_grad and C.is_grad_enabled():
        r = C.fresh_view(x)   # (as_strided(x, 0, x.shape, its C-order strides))
        return _N.like(r, x, fresh=True) if _NAMES[0] else r
    return x.detach().requires_grad_(True)


def _handles(tape, x):
    """x's handles on tape: every registration of a leaf, or its node"""
    if x.is_leaf:
        return tape.leaf_handles(x)
    tp, h = C.handle_of(x)
    return [h] if tp is tape else []


def _tapes(outs):
    tapes = []
    for y in outs:
        if isinstance(y, C.Tensor) and y.requires_grad and not y.is_leaf:
            tp = C.handle_of(y)[0]
            if tp.consumed:
                raise C.BackwardError("this tensor's tape was consumed by an earlier backward(); "
                                      "pass retain_graph=True to it")
            if all(tp is not t for t in tapes):
                tapes.append(tp)
    return tapes


def _recording(tape, fresh, seeds=()):
    """must the sweep record (an outer computation tracks something in it: an input,
    a value f closed over, or a cotangent/tangent seed; or cad.record is recording)?"""
    if C.is_recording():
        return True
    if not C.is_grad_enabled():
        return False
    return (_tracked(seeds) or any(not x.is_leaf for x in fresh)
            or tape.foreign_leaves([x for x in fresh if x.is_leaf]))


def _tracked(vals):
    """does an outer computation track one of vals (cotangents or tangents)?"""
    for v in vals:
        if isinstance(v, Diag):
            v = v.v
        if isinstance(v, C.Tensor) and v.requires_grad:
            return True
    return False


def _zeros(shape, dtype, dev=0):
    return C.const_on(np.zeros(shape, dtype=dtype), dev)


def _add(a, b):
    if a is None:
        return b
    if b is None:
        return a
    return b + a if isinstance(b, Diag) and not isinstance(a, Diag) else a + b


def _pullback(outs, cts, fresh, nb, who, force_record=False, plain=False):
    """sum over outputs of ct . d out / d fresh, for every fresh input (batched
    when nb == 1): one sweep per tape.  Every handle is taken before the first
    sweep: a sweep that records may merge tapes (NOTE [ Handles across merges ]).
    plain: the caller found that no sweep records (no outer computation, untracked
    cotangents, cad.record idle), so it is not asked again per tape."""
    res = [None] * len(fresh)
    for y, ct in zip(outs, cts):   # an output that is an input leaf: the identity
        for i, x in enumerate(fresh):
            if y is x and x.is_leaf:
                res[i] = _add(res[i], ct)
    for i, c in enumerate(res):
        if isinstance(c, Diag):
            res[i] = c.dense()
    jobs = []
    for tp in _tapes(outs):
        hs = [_handles(tp, x) for x in fresh]
        # a node's cotangent is complete after the records that follow its producer
        starts = [tp.producer(h) + 1 if not x.is_leaf else tp.first_use(h)
                  for x, hl in zip(fresh, hs) for h in hl]
        if not starts:
            continue
        record = force_record or (not plain and _recording(tp, fresh, cts))
        seeds, tl, cl = {}, [], []
        for y, ct in zip(outs, cts):
            if isinstance(y, C.Tensor) and y.requires_grad and not y.is_leaf:
                yt, h = C.handle_of(y)
                if yt is tp:
                    tl.append(y)
                    cl.append(ct)
                    if record or nb:   # (the rules' sweep takes seeds; the C sweep tl, cl)
                        seeds[h] = _add(seeds.get(h), ct)
        jobs.append((tp, hs, min(starts), seeds, tl, cl, record))
    for tp, hs, stop, seeds, tl, cl, record in jobs:
        if not record and nb == 0:
            with C.no_grad():
                got = C.run_backward(tl, cl, list(fresh), True, False, True, who, stop)
            for i, g in enumerate(got):
                res[i] = _add(res[i], g)
            continue
        want = [h for hl in hs for h in hl]
        ctx = C.enable_grad() if record else C.no_grad()
        with ctx:
            got = reverse_sweep(tp, seeds, stop, nb, want)
            for i, hl in enumerate(hs):
                for h in hl:
                    res[i] = _add(res[i], got[h])
    return res


def _pushforward(outs, fresh, tans, nb):
    """the tangents of outs when fresh inputs move along tans (batched when nb == 1);
    handles are taken before the first sweep (NOTE [ Handles across merges ])"""
    res = [None] * len(outs)
    for k, y in enumerate(outs):   # an output that is an input leaf: the identity
        for x, t in zip(fresh, tans):
            if y is x and x.is_leaf and t is not None:
                res[k] = _add(res[k], t)
    jobs = []
    for tp in _tapes(outs):
        seeds, starts = {}, []
        for x, t in zip(fresh, tans):
            if t is None:
                continue
            for h in _handles(tp, x):
                seeds[h] = t
                starts.append(tp.producer(h) + 1 if not x.is_leaf else tp.first_use(h))
        if not seeds:
            continue
        outh = [(k, C.handle_of(y)[1]) for k, y in enumerate(outs)
                if isinstance(y, C.Tensor) and y.requires_grad and not y.is_leaf
                and C.handle_of(y)[0] is tp]
        jobs.append((tp, seeds, min(starts), outh, _recording(tp, fresh, tans)))
    for tp, seeds, start, outh, record in jobs:
        with (C.enable_grad() if record else C.no_grad()):
            got = forward_sweep(tp, seeds, start, nb, [h for _, h in outh], fused=not record)
        for k, h in outh:
            res[k] = _add(res[k], got[h])
    return [r.dense() if isinstance(r, Diag) else r for r in res]


def _flat_outputs(out, who):
    """the output's leaves (as tensors) and the function that rebuilds its pytree"""
    if type(out) is C.Tensor:   # the common case, without the pytree walk
        return [out], _first
    leaves, d = T.tree_flatten(out)
    items = [o if isinstance(o, C.Tensor) else C.as_tensor(o) for o in leaves]
    if d is T.LEAF:
        return items, _first
    return items, lambda xs: T.tree_unflatten(d, xs)


def _first(xs):
    return xs[0]


def _finish(t, x_like, keep_graph):
    """a result tensor, detached unless an outer computation records"""
    if t is None:
        return _zeros(x_like.shape, x_like.dtype, C.dev_of(x_like))
    if not keep_graph:
        t = t.detach()
    return _N.like(t, x_like, fresh=not keep_graph) if _NAMES[0] else t


def _argnums(argnums, nargs, who):
    if type(argnums) is int and 0 <= argnums < nargs:   # the common case
        return True, (argnums,)
    single = isinstance(argnums, int)
    nums = (argnums,) if single else tuple(argnums)
    if not nums:
        raise ValueError(f"{who}: argnums is empty")
    for n in nums:
        if not isinstance(n, int) or not -nargs <= n < nargs:
            raise ValueError(f"{who}: argnums {n!r} out of range for {nargs} positional arguments")
    return single, tuple(n % nargs for n in nums)


def _fresh_tree(tree, k, who, given=()):
    """fresh nodes for every leaf of argument k (a pytree), its structure; leaves
    in `given` (ids) are already fresh nodes made for this transform (vmap's lifted
    values: no identity view, which would copy a broadcast)"""
    if type(tree) is C.Tensor or isinstance(tree, (float, int)):   # a leaf: no pytree walk
        return [_fresh_or_given(tree, k, who, given)], T.LEAF
    leaves, d = T.tree_flatten(tree)
    if not leaves:
        raise TypeError(f"{who}: argument {k} holds no tensor to differentiate")
    return [_fresh_or_given(x, k, who, given) for x in leaves], d


def _fresh_or_given(x, k, who, given):
    if given and id(x) in given and isinstance(x, C.Tensor) and x.requires_grad and \
            not x.is_leaf and C.is_grad_enabled():
        return x
    return _fresh(x, k, who)


class _Args:
    """the differentiated arguments, flattened: fresh leaves and how to regroup"""

    def __init__(self, args, nums, who, given=()):
        self.args = list(args)
        self.fresh = []
        self.groups = []   # (treedef, first leaf, count)
        for n in nums:
            fl, d = _fresh_tree(self.args[n], n, who, given)
            self.groups.append((d, len(self.fresh), len(fl)))
            self.fresh.extend(fl)
            self.args[n] = fl[0] if d is T.LEAF else T.tree_unflatten(d, fl)

    def regroup(self, per_leaf):
        return [per_leaf[a] if d is T.LEAF else T.tree_unflatten(d, per_leaf[a:a + c])
                for d, a, c in self.groups]


def _call(f, args, kwargs, argnums, who):
    """f on fresh inputs; f runs with recording on even inside no_grad (a transform
    records what it differentiates), the sweep records only if the caller does"""
    single, nums = _argnums(argnums, len(args), who)
    fa = _Args(args, nums, who)
    with C.enable_grad():
        out = f(*fa.args, **kwargs)
    return single, fa, out


def _outer(fresh, seeds=(), outs=()):
    """do the results stay differentiable (an outer computation tracks an input, a
    cotangent/tangent seed, or a value f closed over: then the sweep records)?"""
    if not C.is_grad_enabled():
        return False
    if any(not x.is_leaf for x in fresh) or _tracked(seeds):
        return True
    return any(_recording(tp, fresh) for tp in _tapes(outs))


# ---------------------------------------------------------------- the transforms
# Each takes and returns pytrees (cad.tree).  Inside cad.vmap they peel the
# running level first (NOTE [ Transforms inside vmap ] in cad/vmap.py).

def value_and_grad(f: Callable[..., Any], argnums: Union[int, Sequence[int]] = 0,
                   has_aux: bool = False) -> Callable[..., Tuple[Any, Any]]:
    """f -> (x -> (f(x), df/dx)) for scalar f; argnums an int or a tuple (then a
    tuple of gradients), each argument a pytree; has_aux: f returns (value, aux)
    and the result is ((value, aux), grad), as in JAX."""
    first = type(argnums) is int and argnums == 0

    def vg(*args, **kwargs):
        level = _B.top()
        if level is not None:
            return _V.value_and_grad(level, f, argnums, has_aux, args, kwargs)
        fa = None
        a0 = _plain_in(args[0]) if first and len(args) == 1 and not kwargs else None
        if a0 is not None and _plain_grad_arg(a0):
            x0 = _fresh(a0, 0, "grad")   # NOTE [ Plain grad ]
            with C.enable_grad():
                out = f(x0)
            single = True
        else:
            single, fa, out = _call(f, args, kwargs, argnums, "grad")
        aux = None
        if has_aux:
            if not (isinstance(out, (tuple, list)) and len(out) == 2):
                raise TypeError("grad(has_aux=True): f must return a (value, aux) pair")
            out, aux = out
        y = _grad_output(out)
        if fa is None:
            g = _plain_grad_sweep(x0, y)
            if g is not False:
                value = y.detach()
                return ((value, aux), g) if has_aux else (value, g)
            fa = _one_arg(x0)
        fresh = fa.fresh
        keep = _outer(fresh) or (C.is_grad_enabled() and y.requires_grad and not y.is_leaf
                                 and _recording(C.handle_of(y)[0], fresh))
        # y's one tape was asked above: when nothing keeps the graph, no sweep records
        # (with grad off, _recording is cad.record's state alone)
        gs = _pullback([y], [C.ones_like_value(y)], fresh, 0, "grad",
                       plain=not keep and not C.is_recording())
        gs = fa.regroup([_finish(g, x, keep) for g, x in zip(gs, fresh)])
        g = gs[0] if single else tuple(gs)
        value = y if keep else y.detach()
        return ((value, aux), g) if has_aux else (value, g)
    return vg


# NOTE [ Plain grad ]
# grad(f)(x) of one argument (argnums 0, no kwargs, no vmap level) that is a float, a
# float numpy array (_plain_in) or a host tensor without names, nothing outside
# tracking it, cad.record idle: vg's
# general code (_call's _Args, _outer, _pullback's per-tape bookkeeping, regroup)
# was ~10 us of Python around a sweep of ~1 us for a small scalar function (backward()
# of the same: ~2 us).  _plain_grad_sweep makes the call _pullback makes for it (one
# run_backward from y's seed of ones, from x's first use, not recording) when y is a
# tracked value whose tape nothing outside holds a gradient in (no foreign leaf),
# and returns False for anything else, which goes on through the general code from
# the output f already returned (f runs once).  jvp(f, (x,), (t,)) the same way: the
# one forward sweep _pushforward makes (_jvp_plain, _plain_push).  test_plain_grad
# compares the two paths of both.

def _plain_in(x):
    """a float64/float32 numpy array as the tensor the transforms' _fresh makes of it
    (as_tensor: scipy.optimize hands jac and hessp numpy arrays), so the plain paths
    take it; anything else as it is"""
    if type(x) is np.ndarray and (x.dtype == np.float64 or x.dtype == np.float32):
        return C.as_tensor(x)
    return x


def _plain_grad_arg(x):
    """is x an argument grad's plain path takes (the checks that need no call of f)?"""
    if type(x) is float:
        return not C.is_recording()
    return (type(x) is C.Tensor and x.dtype.kind == "f"
            and not (x.requires_grad and C.is_grad_enabled())
            and _no_names(x) and not C.is_recording() and C.dev_of(x) == 0)


def _plain_grad_sweep(x0, y):
    """the gradient of y with respect to the fresh leaf x0, as grad's _pullback and
    _finish make it when no sweep records; False: the general code decides"""
    if type(y) is not C.Tensor or not y.requires_grad or y.is_leaf:
        return False
    tp = C.handle_of(y)[0]
    if tp.consumed or (C.is_grad_enabled() and tp.foreign_leaves([x0])):
        return False
    hs = tp.leaf_handles(x0)
    g = None
    if hs:
        with C.no_grad():
            g = C.run_backward([y], [C.ones_like_value(y)], [x0], True, False, True, "grad",
                               min(tp.first_use(h) for h in hs))[0]
    return _finish(g, x0, False)


def _grad_output(out):
    """f's output as grad takes it: a float scalar (a 0-d tensor)"""
    y = C.as_tensor(out)
    if y.ndim != 0:
        raise TypeError(f"grad: f must return a scalar (a 0-d tensor), got shape {y.shape}; "
                        "use jacrev or jacobian for non-scalar outputs")
    if y.dtype.kind != "f":
        raise C.DTypeError(f"grad: f returned dtype {y.dtype}; gradients need a float output")
    return y


def grad(f: Callable[..., Any], argnums: Union[int, Sequence[int]] = 0,
         has_aux: bool = False) -> Callable[..., Any]:
    """f -> df/dx for a scalar-valued f (JAX's grad); nests to any depth."""
    vg = value_and_grad(f, argnums, has_aux)

    def g(*args, **kwargs):
        if has_aux:
            (_, aux), gr = vg(*args, **kwargs)
            return gr, aux
        return vg(*args, **kwargs)[1]
    return g


class VjpFn:
    """vjp's pullback: cotangents (a pytree like the output) -> a tuple with one
    cotangent tree per primal.  Called with cotangents batched by a cad.vmap, it
    sweeps once over the whole batch (NOTE [ Transforms inside vmap ])."""

    def __init__(self, outs, fresh, pgroups, odef, keep0, create_graph=False, unused_none=False):
        self.outs = outs
        self.fresh = fresh
        self.pgroups = pgroups
        self.odef = odef
        self.keep0 = keep0
        self.create_graph = create_graph   # autograd.grad(create_graph=True): the sweep records
        self.unused_none = unused_none     # an input the outputs do not use gets None

    def _cts(self, ct, lead):
        leaves, d = T.tree_flatten(ct)
        if d != self.odef:
            raise ValueError(f"vjp: cotangent of structure {d!r} for an output of structure "
                             f"{self.odef!r}")
        cts = []
        for c, y in zip(leaves, self.outs):
            c = c if isinstance(c, C.Tensor) else C.as_tensor(c)
            if tuple(c.shape[lead:]) != tuple(y.shape):
                raise C.ShapeError(f"vjp: cotangent of shape {c.shape[lead:]} for an output of shape "
                                   f"{y.shape}")
            cts.append(c)
        return cts

    def _regroup(self, per_leaf):
        return tuple(T.tree_unflatten(d, per_leaf[a:a + c]) for d, a, c in self.pgroups)

    def __call__(self, ct):
        lv = _V._levels_in(ct)
        if lv:
            return _V.batched_call(self, ct, lv)
        cts = self._cts(ct, 0)
        keep = self.keep0 or _outer(self.fresh, cts, self.outs)
        gs = _pullback(self.outs, cts, self.fresh, 0, "vjp")
        return self._regroup([_finish(g, x, keep) for g, x in zip(gs, self.fresh)])

    def batched(self, ct):
        """cotangents with one leading batch axis: one sweep (torch's is_grads_batched)"""
        cts = self._cts(ct, 1)
        K = cts[0].shape[0] if cts else 0
        keep = self.keep0 or self.create_graph or _outer(self.fresh, cts, self.outs)
        gs = _pullback(self.outs, cts, self.fresh, 1, "vjp", self.create_graph)
        res = []
        for g, x in zip(gs, self.fresh):
            if g is None and self.unused_none:
                res.append(None)
            elif g is None:
                res.append(_zeros((K,) + tuple(x.shape), x.dtype, C.dev_of(x)))
            else:
                res.append(g if keep else g.detach())
        return self._regroup(res)


def vjp(f: Callable[..., Any], *primals: Any, has_aux: bool = False) -> Tuple[Any, ...]:
    """(f(*primals), vjp_fn): vjp_fn(cotangent) returns a tuple with one cotangent
    per primal (JAX's vjp); vjp_fn may be called many times.  Primals, outputs
    and cotangents are pytrees."""
    level = _B.top()
    if level is not None:
        return _V.vjp(level, f, primals, has_aux)
    return vjp_given(f, primals, has_aux, ())


def vjp_given(f, primals, has_aux, given):
    """vjp; the leaves of primals whose ids are in `given` are fresh nodes already"""
    level = _B.top()
    if level is not None:   # the values are batched by an outer vmap: peel it too
        return _V.vjp(level, f, primals, has_aux)
    fa = _Args(primals, range(len(primals)), "vjp", given)
    fresh = fa.fresh
    with C.enable_grad():
        out = f(*fa.args)
    aux = None
    if has_aux:
        out, aux = out
    outs, rebuild = _flat_outputs(out, "vjp")
    keep0 = _outer(fresh, (), outs)
    fn = VjpFn(outs, fresh, fa.groups, T.tree_structure(out), keep0)
    value = rebuild([y if keep0 else y.detach() for y in outs])
    return (value, fn, aux) if has_aux else (value, fn)


def _jvp_core(f, primals, tangents, has_aux, nb):
    primals, tangents = tuple(primals), tuple(tangents)
    if nb == 0 and not has_aux and len(primals) == 1 and len(tangents) == 1:
        x, t = _plain_in(primals[0]), _plain_in(tangents[0])
        if _plain_jvp_args(x, t):
            return _jvp_plain(f, x, t)
    if len(primals) != len(tangents):
        raise ValueError(f"jvp: {len(primals)} primals but {len(tangents)} tangents")
    fa = _Args(primals, range(len(primals)), "jvp")
    fresh = fa.fresh
    tans = []
    for k, (p, t) in enumerate(zip(primals, tangents)):
        pl, pd = T.tree_flatten(p)
        tl, td = T.tree_flatten(t, is_leaf=lambda v: v is None)
        if len(tl) != len(pl) or (td != pd and T.tree_structure(t) != pd):
            raise ValueError(f"jvp: tangent {k} has structure {T.tree_structure(t)!r}, its primal "
                             f"{pd!r}")
        tans.extend(tl)
    ts = []
    for k, (x, t) in enumerate(zip(fresh, tans)):
        if t is None:
            ts.append(None)
            continue
        t = t if isinstance(t, C.Tensor) else C.as_tensor(t)
        if tuple(t.shape[nb:]) != tuple(x.shape):
            raise C.ShapeError(f"jvp: tangent {k} of shape {t.shape[nb:]} for a primal of shape "
                               f"{x.shape}")
        ts.append(C.cast(t, x.dtype))
    with C.enable_grad():
        out = f(*fa.args)
    return _jvp_rest(fresh, ts, out, has_aux, nb)


def _jvp_rest(fresh, ts, out, has_aux, nb):
    """jvp after f ran on the fresh inputs: the tangents ts pushed to its output"""
    aux = None
    if has_aux:
        out, aux = out
    outs, rebuild = _flat_outputs(out, "jvp")
    keep = _outer(fresh, [t for t in ts if t is not None], outs)
    if all(t is None for t in ts):
        tout = [None] * len(outs)
    else:
        tout = _pushforward(outs, fresh, ts, nb)
    value = rebuild([y if keep else y.detach() for y in outs])
    if nb:
        tres = rebuild([None if t is None else (t if keep else t.detach()) for t in tout])
    else:
        tres = rebuild([_finish(t, y, keep) for t, y in zip(tout, outs)])
    return (value, tres, aux) if has_aux else (value, tres)


def _plain_jvp_args(x, t):
    """are x and t a primal and tangent jvp's plain path takes (NOTE [ Plain grad ])?"""
    if type(t) is float:
        return type(x) is float and not C.is_recording()
    return (_plain_grad_arg(x) and type(t) is C.Tensor and C.dev_of(t) == 0
            and not (t.requires_grad and C.is_grad_enabled()) and _no_names(t)
            and t.shape == (() if type(x) is float else x.shape))


def _jvp_plain(f, x, t):
    """jvp(f, (x,), (t,)) for arguments _plain_jvp_args took: the one forward sweep
    _pushforward makes when nothing records (NOTE [ Plain grad ]); anything else f
    returns goes on through _jvp_rest from the output f already returned"""
    x0 = _fresh(x, 0, "jvp")
    t = C.cast(t if type(t) is C.Tensor else C.as_tensor(t), x0.dtype)
    with C.enable_grad():
        out = f(x0)
    if type(out) is C.Tensor:
        r = _plain_push(out, x0, t, 0)
        if r is not False:
            return out.detach(), _finish(r, out, False)
    return _jvp_rest([x0], [t], out, False, 0)


def jvp(f: Callable[..., Any], primals: Sequence[Any], tangents: Sequence[Any],
        has_aux: bool = False) -> Tuple[Any, ...]:
    """(f(*primals), J t): forward mode, tangents pushed along the recorded ops
    (JAX's jvp).  primals and tangents are tuples of pytrees of the same structure."""
    level = _B.top()
    if level is not None:
        return _V.jvp(level, f, tuple(primals), tuple(tangents), has_aux)
    return _jvp_core(f, primals, tangents, has_aux, 0)


def jvp_batched(f, primals, tangents, has_aux=False):
    """jvp with tangents that carry one leading batch axis (None: zero); the output
    tangents carry it too (None where no tangent reached)"""
    return _jvp_core(f, primals, tangents, has_aux, 1)


def jacrev(f: Callable[..., Any], argnums: Union[int, Sequence[int]] = 0,
           has_aux: bool = False) -> Callable[..., Any]:
    """f -> the Jacobian by reverse mode: one sweep over a batch of cotangents (the
    whole output basis); shape out.shape + x.shape; for pytrees, the output's
    structure holding the argument's (a tuple of them for a tuple argnums)."""
    plain = type(argnums) is int and argnums == 0 and not has_aux

    def jf(*args, **kwargs):
        if plain and len(args) == 1 and not kwargs:
            x = _plain_in(args[0])
            if _plain_hessian_arg(x):
                return _jacrev_plain(f, x)
        level = _B.top()
        if level is not None:
            return _V.jacrev(level, f, argnums, has_aux, args, kwargs)
        single, fa, out = _call(f, args, kwargs, argnums, "jacrev")
        return _jacrev_of(fa, single, out, has_aux)
    return jf


def _jacrev_plain(f, x):
    """jacrev(f)(x) for an argument _plain_hessian_arg took and an output of more than
    _JAC_ROWS elements: the batched reverse sweep _jacrev_of's _pullback runs, without
    the argument handling (NOTE [ Plain hessian ]); anything else goes on through
    _jacrev_of from the output f already returned"""
    x0 = _fresh(x, 0, "jacrev")
    with C.enable_grad():   # (jacrev's _call)
        y = f(x0)
    if type(y) is C.Tensor and y.dtype.kind == "f" and y.size > _JAC_ROWS and y.requires_grad \
            and not y.is_leaf and _no_names(y):
        tp, hy = C.handle_of(y)
        if not tp.consumed and not (C.is_grad_enabled() and tp.foreign_leaves([x0])):
            hs = tp.leaf_handles(x0)
            if hs:
                with C.no_grad():   # (_pullback's sweep when nothing records)
                    got = reverse_sweep(tp, {hy: Diag(C.ones_like_value(y), True)},
                                        min(tp.first_use(h) for h in hs), 1, hs)
                g = None
                for h in hs:
                    g = _add(g, got[h])
                if isinstance(g, Diag):
                    g = g.dense()
                if g is None:
                    return _zeros(y.shape + x0.shape, x0.dtype, 0)
                return _reshaped(g, y.shape + x0.shape).detach()
    return _jacrev_of(_one_arg(x0), True, y, False)


def _jac_outputs(fa, out, has_aux, who):
    """f's output split for a Jacobian: (aux, the output's leaves, their rebuild, do
    the results stay differentiable)"""
    aux = None
    if has_aux:
        out, aux = out
    outs, rebuild = _flat_outputs(out, who)
    return aux, outs, rebuild, _outer(fa.fresh, (), outs)


def _jacrev_of(fa, single, out, has_aux):
    """jacrev's result from f's output on the fresh inputs fa (made by _call)"""
    fresh = fa.fresh
    aux, outs, rebuild, keep = _jac_outputs(fa, out, has_aux, "jacrev")
    per_out = []
    for y in outs:
        if y.size == 1:   # one cotangent: a plain gradient, no batch dim
            gs = _pullback([y], [C.ones_like_value(y)], fresh, 0, "jacrev")
        elif 1 < y.size <= _JAC_ROWS and not keep and not C.is_recording():
            gs = _rows_by_c_sweeps(y, fresh)
        else:
            gs = _pullback([y], [Diag(C.ones_like_value(y), True)], fresh, 1, "jacrev",
                           plain=not keep and not C.is_recording())
        js = []
        for g, x in zip(gs, fresh):
            if g is None:
                js.append(_zeros(y.shape + x.shape, x.dtype, C.dev_of(x)))
            else:
                js.append(_finish(_jac_named(_reshaped(g, y.shape + x.shape), y, x), x, keep))
        js = fa.regroup(js)
        per_out.append(js[0] if single else tuple(js))
    r = rebuild(per_out)
    return (r, aux) if has_aux else r


_JAC_ROWS = 16   # jacrev of an output this small: one C sweep per row


def _rows_by_c_sweeps(y, fresh):
    """jacrev of a small output (at most _JAC_ROWS elements) when nothing records:
    one first-order C sweep per output element, the rows stacked, instead of one
    batched sweep through the rules in Python (a few microseconds per record: a
    2 x 15 block of scalar-sized records took 0.9 ms, two sweeps ~0.1 ms)"""
    m = y.size
    dev = C.dev_of(y)
    rows = [[] for _ in fresh]
    for k in range(m):
        e = np.zeros(m, dtype=y.dtype)
        e[k] = 1.0
        gs = _pullback([y], [C.const_on(e.reshape(y.shape), dev)], fresh, 0, "jacrev")
        for i, (g, x) in enumerate(zip(gs, fresh)):
            rows[i].append(g if g is not None else _zeros(x.shape, x.dtype, C.dev_of(x)))
    stack = REGISTRY["stack"].api
    return [stack(r, axis=0) for r in rows]


def _reshaped(t, shape):
    """t reshaped, or t itself when it has that shape (no view record: a recorded
    Hessian's output was a view of a view, which replay copies)"""
    return t if tuple(t.shape) == tuple(shape) else C.reshape(t, shape)


def _jac_named(j, y, x):
    """a Jacobian block (just made) named by y's names then x's (a clash primed)"""
    if _NAMES[0]:
        n = _N.joined(_N.raw(y), _N.raw(x))
        if n is not None:
            j = C.reshape(j, tuple(j.shape))   # (a view of its own: _reshaped may hand back
            C._put_names(j, n)                 # a tensor another holder sees)
    return j


def jacfwd(f: Callable[..., Any], argnums: Union[int, Sequence[int]] = 0,
           has_aux: bool = False) -> Callable[..., Any]:
    """f -> the Jacobian by forward mode: all tangent directions pushed at once;
    shape out.shape + x.shape (pytrees as jacrev)."""
    plain = type(argnums) is int and argnums == 0 and not has_aux

    def jf(*args, **kwargs):
        if plain and len(args) == 1 and not kwargs:
            x = _plain_in(args[0])
            if _plain_hessian_arg(x):
                return _jacfwd_plain(f, x)
        level = _B.top()
        if level is not None:
            return _V.jacfwd(level, f, argnums, has_aux, args, kwargs)
        single, fa, out = _call(f, args, kwargs, argnums, "jacfwd")
        return _jacfwd_of(fa, single, out, has_aux)
    return jf


def _jacfwd_plain(f, x):
    """jacfwd(f)(x) for an argument _plain_hessian_arg took: the forward sweep of the
    diagonal batch jacfwd's _pushforward runs, without its argument handling (NOTE
    [ Plain hessian ]); whatever else f returns or reaches goes on through _jacfwd_of"""
    x0 = _fresh(x, 0, "jacfwd")
    with C.enable_grad():   # (jacfwd's _call)
        y = f(x0)
    t = False
    if type(y) is C.Tensor and y.dtype.kind == "f":
        t = _plain_push(y, x0, Diag(C.ones_like_value(x0), True), 1)
    if t is False:
        return _jacfwd_of(_one_arg(x0), True, y, False)
    return _pushed_jacobian(t, y, x0)


def _jacfwd_of(fa, single, out, has_aux):
    """jacfwd's result from f's output on the fresh inputs fa (made by _call)"""
    fresh = fa.fresh
    aux, outs, rebuild, keep = _jac_outputs(fa, out, has_aux, "jacfwd")
    cols = []   # per input: per output jacobian
    for i, x in enumerate(fresh):
        m = x.size
        tans = [None] * len(fresh)
        nb = 0 if m == 1 else 1   # one direction: a plain tangent, no batch dim
        tans[i] = C.ones_like_value(x) if m == 1 else Diag(C.ones_like_value(x), True)
        ts = _pushforward(outs, fresh, tans, nb)
        js = []
        for t, y in zip(ts, outs):
            if t is None:
                js.append(_zeros(y.shape + x.shape, y.dtype, C.dev_of(y)))
                continue
            j = C.transpose(_reshaped(t, (m, y.size)), (1, 0))
            js.append(_finish(_jac_named(_reshaped(j, y.shape + x.shape), y, x), y, keep))
        cols.append(js)
    per_out = []
    for k in range(len(outs)):
        js = fa.regroup([c[k] for c in cols])
        per_out.append(js[0] if single else tuple(js))
    r = rebuild(per_out)
    return (r, aux) if has_aux else r


def jacobian(f: Callable[..., Any], *args: Any, argnums: Union[int, Sequence[int]] = 0) -> Any:
    """jacobian(f, x): the seed's signature (reverse mode); jacobian(f) returns the
    function, as jacrev."""
    jf = jacrev(f, argnums)
    return jf(*args) if args else jf


def hessian(f: Callable[..., Any], *args: Any, argnums: Union[int, Sequence[int]] = 0) -> Any:
    """hessian(f, x): the matrix of second derivatives of a scalar f, forward over
    reverse (jacfwd(jacrev(f))); hessian(f) returns the function."""
    plain = type(argnums) is int and argnums == 0
    if plain and len(args) == 1:
        x = _plain_in(args[0])
        if _plain_hessian_arg(x):
            return _hessian_plain(f, x)
    general = jacfwd(jacrev(f, argnums), argnums)
    if not plain:
        return general(*args) if args else general

    def hf(*a, **kw):
        if len(a) == 1 and not kw:
            x = _plain_in(a[0])
            if _plain_hessian_arg(x):
                return _hessian_plain(f, x)
        return general(*a, **kw)
    return hf(*args) if args else hf


# NOTE [ Plain hessian ]
# hessian(f)(x) is jacfwd(jacrev(f))(x): two transforms' argument handling, pytree
# walks, output checks and per-tape bookkeeping around two sweeps (the recording
# reverse sweep, then the forward sweep of a diagonal batch), ~30 of W7's ~95 us
# at n = 32.  For the common call (one array argument, no vmap level, no dim
# names, cad.record idle, nothing outside tracking x) _hessian_plain makes the
# same fresh nodes and runs the same two sweeps with the same seeds, starts and
# modes as those transforms would, checking inline what they check through their
# general helpers (names: only values without any, once names are on).
# Whatever else f returns or reaches (a non-scalar or untracked output, another
# tape, a gradient an outer computation tracks) goes on through jacrev's and
# jacfwd's own code (_jacrev_of, _jacfwd_of) from the output f already returned, so
# f runs once either way.  test_plain_hessian compares the two paths bit for bit.
# hvp(f, x, v) is jvp(grad(f), (x,), (v,))[1] the same way: _hvp_plain shares the
# two sweeps (_plain_grad, _plain_push: one tangent instead of the diagonal batch)
# and falls back to grad's _pullback and jvp's _pushforward
# (test_plain_hvp_matches_the_transforms).

def _plain_hessian_arg(x):
    """is x an argument _hessian_plain takes (the checks that need no call of f)?"""
    return (type(x) is C.Tensor and x.ndim >= 1 and x.size > 1 and x.dtype.kind == "f"
            and not (x.requires_grad and C.is_grad_enabled()) and _B.top() is None
            and _no_names(x) and not C.is_recording() and C.dev_of(x) == 0)


def _no_names(t):
    """does t carry no dim names (or are names off in this process)?"""
    return not _NAMES[0] or not any(_N.raw(t) or ())


def _one_arg(x):
    """_Args for one argument that is already a fresh node"""
    fa = _Args.__new__(_Args)
    fa.args = [x]
    fa.fresh = [x]
    fa.groups = [(T.LEAF, 0, 1)]
    return fa


def _plain_grad(xv, y):
    """the recorded gradient of y with respect to the fresh node xv, the one sweep
    grad's and jacrev's _pullback run for it (a recording reverse sweep from y's
    seed of ones; called with recording on); None: y is not a plain tracked scalar
    on xv's tape, and the caller's transform takes it"""
    if type(y) is C.Tensor and y.ndim == 0 and y.requires_grad and not y.is_leaf \
            and _no_names(y):
        tp, hy = C.handle_of(y)
        tx, hx = C.handle_of(xv)
        if tp is tx and not tp.consumed:
            g = reverse_sweep(tp, {hy: C.ones_like_value(y)}, tp.producer(hx) + 1, 0, [hx])[hx]
            return _zeros(xv.shape, xv.dtype, 0) if g is None else g
    return None


def _plain_push(g, x0, seed, nb):
    """the tangent of g (a tensor) when the fresh leaf x0 moves along
    seed (nb batch dims, or a Diag): the one forward sweep jvp's and jacfwd's
    _pushforward run for it, not recorded; False: g's tape needs _pushforward (an
    outer computation tracks it, or g is no plain tracked value)"""
    if nb == 0 and _C_FORWARD and type(seed) is C.Tensor and _no_names(g):
        if _EW is None:
            _tables()
            _ew_tables()
        r = C.plain_push_c(g, x0, seed, _jvp_record, _EW_BYTES)   # (the same, in Cython)
        if r is not None:
            return r if r is False else r[1]
    if type(g) is C.Tensor and g.requires_grad and not g.is_leaf and _no_names(g):
        tp, hg = C.handle_of(g)
        if not tp.consumed and not (C.is_grad_enabled() and tp.foreign_leaves([x0])):
            hs = tp.leaf_handles(x0)
            if not hs:
                return None
            with C.no_grad():
                return forward_sweep(tp, {h: seed for h in hs}, min(tp.first_use(h) for h in hs),
                                     nb, [hg], fused=True)[hg]
    return False


def _hessian_plain(f, x):
    """hessian(f)(x) for an argument _plain_hessian_arg took (NOTE [ Plain hessian ])"""
    x0 = _fresh(x, 0, "jacfwd")
    with C.enable_grad():   # (jacfwd's _call: jacrev's whole call records)
        xv = _fresh(x0, 0, "jacrev")
        y = f(xv)
        g = _plain_grad(xv, y)
        if g is None:
            g = _jacrev_of(_one_arg(xv), True, y, False)
    t = False
    if type(g) is C.Tensor and g.shape == x0.shape:   # jacfwd's diagonal batch
        t = _plain_push(g, x0, Diag(C.ones_like_value(x0), True), 1)
    if t is False:
        return _jacfwd_of(_one_arg(x0), True, g, False)
    return _pushed_jacobian(t, g, x0)


def _pushed_jacobian(t, y, x0):
    """the Jacobian of the tensor y in x0, detached, from the forward sweep's batch t
    for x0's basis (a Diag, a dense batch, or None: y does not depend on x0), as
    _jacfwd_of makes it: the batch's (x, y) layout transposed"""
    if isinstance(t, Diag):
        t = t.dense()
    if t is None:
        return _zeros(y.shape + x0.shape, y.dtype, 0)
    j = C.transpose(_reshaped(t, (x0.size, y.size)), (1, 0))
    return _reshaped(j, y.shape + x0.shape).detach()


def _plain_hvp_args(x, v):
    """are x and v arguments _hvp_plain takes (the checks that need no call of f): a
    primal and tangent jvp's plain path takes, both tensors of one dtype, no vmap level"""
    return (type(x) is C.Tensor and type(v) is C.Tensor and v.dtype == x.dtype
            and _B.top() is None and _plain_jvp_args(x, v))


def _hvp_plain(f, x, v):
    """hvp(f, x, v), jvp(grad(f), (x,), (v,))[1], for arguments _plain_hvp_args took:
    the two sweeps those transforms run, without their argument handling (NOTE [ Plain
    hessian ]); anything else f returns or reaches goes on through their own code"""
    x0 = _fresh(x, 0, "jvp")
    with C.enable_grad():   # (jvp's call of grad(f) records)
        xv = _fresh(x0, 0, "grad")
        y = _grad_output(f(xv))
        g = _plain_grad(xv, y)
        if g is None:   # grad's _pullback (xv is a node: its sweep records) and _finish
            g = _finish(_pullback([y], [C.ones_like_value(y)], [xv], 0, "grad")[0], xv, True)
    t = _plain_push(g, x0, v, 0)
    if t is False:
        t = _pushforward([g], [x0], [v], 0)[0]
        return _finish(t, g, _outer([x0], [v], [g]))
    return _finish(t, g, False)


def hvp(f: Callable[..., Any], x: Any, v: Any) -> Any:
    """the Hessian-vector product H(x) v of a scalar f, without forming H
    (forward over reverse)."""
    xp, vp = _plain_in(x), _plain_in(v)
    if _plain_hvp_args(xp, vp):
        return _hvp_plain(f, xp, vp)
    return jvp(grad(f), (x,), (v,))[1]


# ---------------------------------------------------------------- create_graph for backward/autograd.grad

def grad_create_graph(outputs, inputs, grad_outputs, allow_unused, accumulate, who):
    """autograd.grad / backward with create_graph=True: the rules run with recording
    on, so the gradients are nodes of the tape (differentiable again)."""
    outs = list(outputs)
    gouts = list(grad_outputs)
    seeds_by_tape = {}
    for k, (y, g) in enumerate(zip(outs, gouts)):
        y = C.as_tensor(y)
        if not y.requires_grad:
            raise C.BackwardError(f"{who}: output {k} does not require grad")
        if g is None:
            if y.size != 1:
                raise C.BackwardError(f"{who}: output of shape {y.shape} is not a scalar; pass "
                                      "grad_output (a tensor of the output's shape)")
            g = C.ones_like_value(y)
        else:
            g = C.as_tensor(g)
            if g.shape != y.shape:
                raise C.ShapeError(f"{who}: grad_output of shape {g.shape} does not match the "
                                   f"output's shape {y.shape}")
        if y.is_leaf:
            seeds_by_tape.setdefault(None, []).append((y, g))
            continue
        tp, h = C.handle_of(y)
        if tp.consumed:
            raise C.BackwardError(f"{who}: this tensor's tape was consumed by an earlier backward(); "
                                  "pass retain_graph=True to the first call")
        seeds = seeds_by_tape.setdefault(id(tp), (tp, {}))[1]
        seeds[h] = _add(seeds.get(h), g)
    results = {}
    leaf_objs = {}
    with C.enable_grad():
        for key, val in seeds_by_tape.items():
            if key is None:
                for y, g in val:
                    results[id(y)] = _add(results.get(id(y)), g)
                    leaf_objs[id(y)] = y
                continue
            tp, seeds = val
            if accumulate:
                targets = {}
                for h in range(tp.nbufs):
                    leaf = tp.leaf(h)
                    if leaf is not None:
                        targets.setdefault(id(leaf), (leaf, []))[1].append(h)
            else:
                targets = {}
                for x in inputs:
                    targets.setdefault(id(x), (x, _handles(tp, x)))
            want = [h for _, hl in targets.values() for h in hl]
            got = reverse_sweep(tp, seeds, 0, 0, want)
            for k, (x, hl) in targets.items():
                for h in hl:
                    if got[h] is not None:
                        results[k] = _add(results.get(k), got[h])
                        leaf_objs[k] = x
    if accumulate:
        for k, g in results.items():
            x = leaf_objs[k]
            x.grad = g if x.grad is None else x.grad + g
            if _NAMES[0]:
                x.grad = _N.like(x.grad, x)
        return None
    out = []
    for k, x in enumerate(inputs):
        g = results.get(id(x))
        if g is None and not allow_unused:
            raise C.BackwardError(f"{who}: input {k} (shape {x.shape}) was not used to compute the "
                                  "outputs; pass allow_unused=True to get None for it")
        out.append(g)
    return tuple(out)


_ = REGISTRY  # the table is imported for its side effect of binding the rules
