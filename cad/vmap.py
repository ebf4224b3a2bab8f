"""cad.vmap: f mapped over an axis of its arguments, every op run once on the whole
batch (the rules: cad/ops/_batch.py, NOTE [ Batched values ]).

NOTE [ Transforms inside vmap ]
cad's transforms differentiate a tape of plain tensors, so a transform called on
Batched values (or on plain values while f closes over Batched ones) first *peels*
the innermost running level: it lifts the arguments it differentiates to that
level (a broadcast view when they are not batched there), takes the transform of
the function on the lifted values (batch axis 0, the level suspended while it runs),
and wraps the results again.  The examples never interact, so the gradient of the
batch is the batch of gradients: vmap(grad(f)) is one batched forward and one C
backward sweep.  Lifting even unbatched arguments is what makes a gradient with
respect to a shared parameter per-example (JAX gets the same from its transpose
rules).  A vjp_fn (or autograd.grad) called with cotangents batched by a vmap that
started after it was made sweeps once with a batch of cotangents (torch's
is_grads_batched): vmap(vjp_fn)(eye) is the seed's Jacobian.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Optional

import numpy as np

from . import tree as T
from ._core import _engine as C
from .ops import _batch as B
from .ops._batch import Batched, Level, lift, lshape

_RANDOMNESS = ("error", "same", "different")


def _tensorlike(x):
    return isinstance(x, (C.Tensor, Batched))


# ---------------------------------------------------------------- level bookkeeping

class _Suspend:
    """take levels off this thread's stack while a transform runs on their values"""

    def __init__(self, lv):
        self.lv = [x for x in lv if x is not None]

    def __enter__(self):
        s = B.levels()
        self.saved = list(s)
        keep = [x for x in s if all(x is not y for y in self.lv)]
        for x in self.saved[::-1]:
            B.pop_any(x)
        for x in keep:
            B.push(x)

    def __exit__(self, *exc):
        s = B.levels()
        for x in list(s)[::-1]:
            B.pop_any(x)
        for x in self.saved:
            B.push(x)


class _Resume:
    """put a level back on the stack while f runs on its examples"""

    def __init__(self, level):
        self.level = level

    def __enter__(self):
        B.push(self.level)

    def __exit__(self, *exc):
        B.pop_any(self.level)


def _levels_in(tree):
    """the levels of the Batched leaves of tree, outermost first"""
    if type(tree) is C.Tensor:
        return []
    found = {}
    for x in T.tree_leaves(tree):
        while type(x) is Batched:
            found[x.level.id] = x.level
            x = x.val
    return [found[k] for k in sorted(found)]


# ---------------------------------------------------------------- vmap

_UNSET = object()


def vmap(f: Callable[..., Any], in_dims: Any = 0, out_dims: Any = 0, chunk_size: Optional[int] = None,
         randomness: str = "error", *, in_axes: Any = _UNSET, out_axes: Any = _UNSET) -> Callable[..., Any]:
    """f mapped over an axis of its arguments (torch.func.vmap / jax.vmap).

    in_dims: an int, None (not mapped), negative, or a tuple with one entry per
    positional argument, each a prefix of that argument's pytree; out_dims likewise
    for the outputs.  in_axes= and out_axes= are JAX's names for them.  Keyword
    arguments are passed unmapped (torch.func).  chunk_size: run the batch in chunks
    of this size (less memory).  randomness: "error" (random draws inside f raise),
    "same" (one draw shared by the batch), "different" (one draw per example)."""
    if in_axes is not _UNSET:
        if in_dims != 0:
            raise TypeError("vmap: pass in_dims (torch's name) or in_axes (JAX's), not both")
        in_dims = in_axes
    if out_axes is not _UNSET:
        if out_dims != 0:
            raise TypeError("vmap: pass out_dims (torch's name) or out_axes (JAX's), not both")
        out_dims = out_axes
    if randomness not in _RANDOMNESS:
        raise ValueError(f"vmap: randomness must be one of {_RANDOMNESS}, got {randomness!r}")
    if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
        raise ValueError(f"vmap: chunk_size must be a positive integer or None, got {chunk_size!r}")
    if not callable(f):
        raise TypeError(f"vmap: f must be callable, got {type(f).__name__}")

    @functools.wraps(f)
    def vf(*args, **kwargs):
        return _call(f, args, kwargs, in_dims, out_dims, chunk_size, randomness)
    return vf


def _dims_of_args(in_dims, args):
    if isinstance(in_dims, (int, str, type(None))):
        return [in_dims] * len(T.tree_leaves(args))
    if isinstance(in_dims, list):
        in_dims = tuple(in_dims)
    if not isinstance(in_dims, tuple):
        raise TypeError(f"vmap: in_dims must be an int, a dim name, None or a tuple, got "
                        f"{type(in_dims).__name__}")
    if len(in_dims) != len(args):
        raise ValueError(f"vmap: in_dims has {len(in_dims)} entries for {len(args)} positional "
                         "arguments")
    return T.broadcast_prefix(in_dims, tuple(args), "vmap in_dims")


def _move0(x, d):
    """x with axis d moved to the front (a view)"""
    if d == 0:
        return x
    n = x.ndim
    perm = (d,) + tuple(i for i in range(n) if i != d)
    return B._api("transpose")(x, perm)


def _call(f, args, kwargs, in_dims, out_dims, chunk, randomness):
    leaves, tdef = T.tree_flatten(tuple(args))
    dims = _dims_of_args(in_dims, args)
    where = _arg_names(args)
    size = None
    first = None
    mapped = []
    for k, (x, d) in enumerate(zip(leaves, dims)):
        if d is None:
            mapped.append(None)
            continue
        if isinstance(d, str) and _tensorlike(x):   # a dim name (named dimensions)
            from .names import vmap_dim
            d = vmap_dim(x, d, "vmap")
        if not isinstance(d, int):
            raise TypeError(f"vmap: in_dims entries must be ints, dim names or None, got {d!r} for "
                            f"{where[k]}")
        if isinstance(x, np.ndarray):
            x = leaves[k] = C.as_tensor(x)
        if not _tensorlike(x):
            raise ValueError(f"vmap: {where[k]} is a {type(x).__name__}, not a tensor, so it has no "
                             f"dim {d} to map over (give it in_dims None)")
        n = x.ndim
        if not -n <= d < n:
            raise ValueError(f"vmap: in_dims {d} for {where[k]} of shape {tuple(x.shape)}: it has no "
                             f"dim {d}")
        d %= n
        s = x.shape[d]
        if size is None:
            size, first = s, (k, d, tuple(x.shape))
        elif s != size:
            k0, d0, sh0 = first
            raise ValueError(f"vmap: the mapped dims differ in size: {where[k0]} of shape {sh0} has "
                             f"{size} at dim {d0}, {where[k]} of shape {tuple(x.shape)} has {s} at "
                             f"dim {d}")
        mapped.append(d)
    if size is None:
        raise ValueError("vmap: every in_dims is None (or there are no tensor arguments); at "
                         "least one argument must be mapped")
    if chunk is not None and size > chunk:
        return _chunked(f, leaves, mapped, tdef, kwargs, out_dims, size, chunk, randomness)
    return _run(f, leaves, mapped, tdef, kwargs, out_dims, size, randomness)


def _arg_names(args):
    names = []
    for k, a in enumerate(args):
        lv, _ = T.tree_flatten(a)
        if len(lv) == 1 and _tensorlike(a) or not isinstance(a, (list, tuple, dict)):
            names.append(f"argument {k}")
        else:
            names.extend(f"argument {k} (leaf {j})" for j in range(len(lv)))
    return names


def _run(f, leaves, mapped, tdef, kwargs, out_dims, size, randomness):
    level = Level(size, randomness)
    wrapped = [x if d is None else Batched(_move0(x, d), level) for x, d in zip(leaves, mapped)]
    B.push(level)
    try:
        out = f(*T.tree_unflatten(tdef, wrapped), **kwargs)
    except BaseException:
        level.active = False
        raise
    finally:
        B.pop_any(level)
    try:
        return _unwrap(out, out_dims, level)
    finally:
        level.active = False


def _unwrap(out, out_dims, level):
    oleaves, odef = T.tree_flatten(out)
    ods = T.broadcast_prefix(out_dims, out, "vmap out_dims")
    res = []
    for k, (o, d) in enumerate(zip(oleaves, ods)):
        if d is None:
            if type(o) is Batched and level.id in [lv.id for lv in _levels_in(o)]:
                raise ValueError(f"vmap: out_dims None for output {k}, which differs from example "
                                 "to example (it is batched); give it an int out_dim")
            res.append(o)
            continue
        if not isinstance(d, int):
            raise TypeError(f"vmap: out_dims entries must be ints or None, got {d!r}")
        if not _tensorlike(o):
            if isinstance(o, (int, float, bool, np.ndarray, np.number)):
                o = C.as_tensor(o)
            else:
                raise TypeError(f"vmap: output {k} is a {type(o).__name__}; f must return tensors "
                                "(or pytrees of them)")
        v = lift(o, level)
        n = v.ndim
        if not -n <= d < n:
            raise ValueError(f"vmap: out_dims {d} for output {k} of shape {tuple(o.shape)} (one "
                             "example)")
        d %= n
        if d:
            perm = tuple(range(1, d + 1)) + (0,) + tuple(range(d + 1, n))
            v = B._api("transpose")(v, perm)
        res.append(v)
    return T.tree_unflatten(odef, res)


def _chunked(f, leaves, mapped, tdef, kwargs, out_dims, size, chunk, randomness):
    from . import creation
    outs = []
    state = creation._rng.bit_generator.state if randomness == "same" else None
    for s in range(0, size, chunk):
        e = min(s + chunk, size)
        if state is not None:   # "same": every chunk draws what the first drew
            creation._rng.bit_generator.state = state
        part = [x if d is None else _slice(x, d, s, e) for x, d in zip(leaves, mapped)]
        outs.append(_run(f, part, mapped, tdef, kwargs, out_dims, e - s, randomness))
    lv0, odef = T.tree_flatten(outs[0])
    ods = T.broadcast_prefix(out_dims, outs[0], "vmap out_dims")
    cols = [T.tree_leaves(o) for o in outs]
    res = []
    for j, d in enumerate(ods):
        if d is None:
            res.append(lv0[j])
        else:
            res.append(B._api("concatenate")([c[j] for c in cols], d))
    return T.tree_unflatten(odef, res)


def _slice(x, d, s, e):
    return x[(slice(None),) * d + (slice(s, e),)]


# ---------------------------------------------------------------- random draws inside vmap

def random_draw(draw, shape):
    """draw(shape) inside the running vmaps: one draw for all ("same") or one per
    example ("different"); "error" refuses (torch.func's default)"""
    lv = list(B.levels())
    for level in lv:
        if level.randomness == "error":
            raise ValueError("cad.vmap: a random draw inside vmap(randomness='error'); pass "
                             "randomness='same' (one draw for the batch) or 'different' (one per "
                             "example)")
    diff = [level for level in lv if level.randomness == "different"]
    if not diff:
        return None
    r = draw(tuple(level.size for level in diff) + tuple(shape))
    for level in diff:
        r = Batched(r, level)
    return r


# ---------------------------------------------------------------- transforms inside vmap

def _ids(vals):
    """the lifted values made for one transform (fresh nodes: transforms need no
    identity view of them)"""
    return {id(x) for x in T.tree_leaves(vals)}


def _lift_tree(t, level):
    def one(x):
        if isinstance(x, np.ndarray):   # an array argument of a transform: a tensor, as outside vmap
            x = C.as_tensor(x)
        return lift(x, level) if _tensorlike(x) or isinstance(x, float) else x
    return T.tree_map(one, t)


def _wrap_tree(t, level):
    return T.tree_map(lambda x: Batched(x, level) if _tensorlike(x) else x, t)


def _argnums(argnums, nargs, who):
    single = isinstance(argnums, int)
    nums = (argnums,) if single else tuple(argnums)
    for n in nums:
        if not -nargs <= n < nargs:
            raise ValueError(f"{who}: argnums {n} out of range for {nargs} positional arguments")
    return single, tuple(n % nargs for n in nums)


def _lifter(level, has_aux):
    """post() of a peeled function: its outputs (and aux) lifted to the level"""
    def post(out):
        if has_aux:
            out, aux = out
            return _lift_tree(out, level), _lift_tree(aux, level)
        return _lift_tree(out, level)
    return post


def _peeled(level, f, args, kwargs, nums, post):
    """g(*vals): f on the examples of the lifted arguments `nums` (vals: their
    values batched at level), its outputs lifted; post(out) checks them first"""
    def g(*vals):
        a = list(args)
        for n, v in zip(nums, vals):
            a[n] = _wrap_tree(v, level)
        with _Resume(level):
            out = f(*a, **kwargs)
        return post(out)
    return g


def value_and_grad(level, f, argnums, has_aux, args, kwargs):
    from . import transforms as TR
    single, nums = _argnums(argnums, len(args), "grad")
    vals = [_lift_tree(args[n], level) for n in nums]

    def post(out):
        aux = None
        if has_aux:
            if not (isinstance(out, (tuple, list)) and len(out) == 2):
                raise TypeError("grad(has_aux=True): f must return a (value, aux) pair")
            out, aux = out
        if not _tensorlike(out):
            out = C.as_tensor(out)
        if lshape(out, level) != ():
            raise TypeError(f"grad: f must return a scalar (a 0-d tensor), got shape "
                            f"{lshape(out, level)}; use jacrev or jacobian for non-scalar outputs")
        o = lift(out, level)
        return (o, _lift_tree(aux, level)) if has_aux else o
    g = _peeled(level, f, args, kwargs, nums, post)
    with _Suspend([level]):
        r = TR.vjp_given(g, vals, has_aux, _ids(vals))
        o, fn = r[0], r[1]
        gs = fn(C.ones_like_value(o) if isinstance(o, C.Tensor) else B._api("add")(B._api("mul")(o, 0.0), 1.0))
    grads = [_wrap_tree(gv, level) for gv in gs]
    grad = grads[0] if single else tuple(grads)
    value = Batched(o, level)
    if has_aux:
        return (value, _wrap_tree(r[2], level)), grad
    return value, grad


def vjp(level, f, primals, has_aux):
    from . import transforms as TR
    vals = [_lift_tree(p, level) for p in primals]

    post = _lifter(level, has_aux)
    g = _peeled(level, f, tuple(primals), {}, tuple(range(len(primals))), post)
    with _Suspend([level]):
        r = TR.vjp_given(g, vals, has_aux, _ids(vals))
    out = _wrap_tree(r[0], level)
    fn = LevelVjp(r[1], level)
    if has_aux:
        return out, fn, _wrap_tree(r[2], level)
    return out, fn


class LevelVjp:
    """the vjp_fn of a vjp taken inside vmap level `level` (NOTE [ Transforms inside vmap ])"""

    def __init__(self, inner, level):
        self.inner = inner
        self.level = level

    def __call__(self, ct):
        higher = [lv for lv in _levels_in(ct) if lv.id > self.level.id]
        if higher:
            return batched_call(self, ct, higher)
        ctp = _lift_tree(ct, self.level)
        with _Suspend([self.level]):
            res = self.inner(ctp)
        return tuple(_wrap_tree(r, self.level) for r in res)

    def batched(self, ct):
        """cotangents with one leading batch axis K: results with the same axis"""
        def phys(x):   # (B, K, ...) -> (K, B, ...)
            v = lift(x, self.level)
            return B._api("swapaxes")(v, 0, 1)
        ctp = T.tree_map(lambda x: phys(x) if _tensorlike(x) else x, ct)
        with _Suspend([self.level]):
            res = self.inner.batched(ctp)
        return tuple(T.tree_map(lambda r: Batched(B._api("swapaxes")(r, 0, 1), self.level)
                                if _tensorlike(r) else r, rr) for rr in res)


def batched_call(fn, ct, higher):
    """fn (a vjp_fn) called with cotangents batched by the vmaps `higher`, which
    started after fn was made: one sweep over the whole batch of cotangents"""
    sizes = tuple(lv.size for lv in higher)
    K = 1
    for s in sizes:
        K *= s

    def peel(x):
        if not _tensorlike(x):
            x = C.as_tensor(x)
        for lv in reversed(higher):   # innermost first: its axis ends up last of the batch
            x = lift(x, lv)
        return x

    leaves, d = T.tree_flatten(ct)
    phys = []
    for x in leaves:
        v = peel(x)
        # v: (outermost..., innermost..., example) with the higher levels' axes in front
        phys.append(B._reshape(v, (K,) + tuple(v.shape[len(sizes):])))
    with _Suspend(higher):
        res = fn.batched(T.tree_unflatten(d, phys))

    def wrap(r):
        if r is None:
            return None
        r = B._reshape(r, sizes + tuple(r.shape[1:]))
        for lv in higher:
            r = Batched(r, lv)
        return r
    return tuple(T.tree_map(wrap, rr) for rr in res)


def jvp(level, f, primals, tangents, has_aux):
    from . import transforms as TR
    vals = [_lift_tree(p, level) for p in primals]
    tans = [_lift_tree(t, level) for t in tangents]

    post = _lifter(level, has_aux)
    g = _peeled(level, f, tuple(primals), {}, tuple(range(len(primals))), post)
    with _Suspend([level]):
        r = TR.jvp(g, vals, tans, has_aux=has_aux)
    res = (_wrap_tree(r[0], level), _wrap_tree(r[1], level))
    return res + (_wrap_tree(r[2], level),) if has_aux else res


def _basis(v):
    """for a value v batched at a level (batch axis 0): (batch size, example shape,
    example size m, the example's basis as a batch of m directions, each broadcast
    over the level's batch: shape (m, batch) + example shape)"""
    Bn = v.shape[0]
    es = tuple(v.shape[1:])
    m = 1
    for s in es:
        m *= s
    eye = C.const_on(np.eye(m, dtype=v.dtype).reshape((m, 1) + es), C.dev_of(v))
    return Bn, es, m, B._api("broadcast_to")(eye, (m, Bn) + es)


def jacrev(level, f, argnums, has_aux, args, kwargs):
    """the per-example Jacobian: the vjp of the lifted function swept once with the
    output basis as a batch of cotangents (JAX's vmap of the vjp)"""
    from . import transforms as TR
    single, nums = _argnums(argnums, len(args), "jacrev")
    vals = [_lift_tree(args[n], level) for n in nums]

    post = _lifter(level, has_aux)
    g = _peeled(level, f, args, kwargs, nums, post)
    with _Suspend([level]):
        r = TR.vjp_given(g, vals, has_aux, _ids(vals))
        out, fn = r[0], r[1]
        oleaves, odef = T.tree_flatten(out)
        per_out = []
        for k, o in enumerate(oleaves):
            Bn, es, m, basis = _basis(o)
            cts = []
            for j, o2 in enumerate(oleaves):   # cotangent batch: the basis of output k, zeros elsewhere
                if j == k:
                    cts.append(basis)
                else:
                    cts.append(C.const_on(np.zeros((m,) + tuple(o2.shape), dtype=o2.dtype), C.dev_of(o2)))
            res = fn.batched(T.tree_unflatten(odef, cts))
            js = []
            for rr in res:   # per argnum: a tree of (m, B, x...) -> (B, out..., x...)
                def fix(v, Bn=Bn, es=es):
                    v = B._api("swapaxes")(v, 0, 1)
                    return B._reshape(v, (Bn,) + es + tuple(v.shape[2:]))
                js.append(T.tree_map(fix, rr))
            per_out.append(js)
    res = T.tree_unflatten(odef, [_wrap_tree(js[0] if single else tuple(js), level) for js in per_out])
    if has_aux:
        return res, _wrap_tree(r[2], level)
    return res


def jacfwd(level, f, argnums, has_aux, args, kwargs):
    """the per-example Jacobian by forward mode: the jvp of the lifted function
    pushed once with the input basis as a batch of tangents"""
    from . import transforms as TR
    single, nums = _argnums(argnums, len(args), "jacfwd")
    vals = [_lift_tree(args[n], level) for n in nums]

    post = _lifter(level, has_aux)
    g = _peeled(level, f, args, kwargs, nums, post)
    flat = [T.tree_flatten(v) for v in vals]
    with _Suspend([level]):
        cols = []   # per argnum: per leaf: the tree of jacobian blocks of every output
        out = aux = None
        for i, (lv, d) in enumerate(flat):
            per_leaf = []
            for li, x in enumerate(lv):
                _, es, m, basis = _basis(x)
                tans = []
                for j, (lv2, d2) in enumerate(flat):
                    tl = []
                    for q, x2 in enumerate(lv2):
                        if j == i and q == li:
                            tl.append(basis)
                        else:
                            tl.append(None)
                    tans.append(T.tree_unflatten(d2, tl))
                r = TR.jvp_batched(g, vals, tans, has_aux=has_aux)
                out = r[0]
                if has_aux:
                    aux = r[2]

                def fix(t, o, es=es, m=m):   # (m, B, out...) -> (B, out..., x...)
                    if t is None:
                        return C.const_on(np.zeros(tuple(o.shape) + es, dtype=o.dtype), C.dev_of(o))
                    nd = t.ndim
                    t = B._api("transpose")(t, tuple(range(1, nd)) + (0,))
                    return B._reshape(t, tuple(o.shape) + es)
                per_leaf.append(T.tree_map(fix, r[1], out, is_leaf=lambda v: v is None))
            cols.append((d, per_leaf))
    oleaves, odef = T.tree_flatten(out)
    res = []
    for k in range(len(oleaves)):
        per_arg = [T.tree_unflatten(d, [T.tree_leaves(pl, is_leaf=lambda v: v is None)[k] for pl in per_leaf])
                   for d, per_leaf in cols]
        res.append(_wrap_tree(per_arg[0] if single else tuple(per_arg), level))
    res = T.tree_unflatten(odef, res)
    if has_aux:
        return res, _wrap_tree(aux, level)
    return res
