"""Named dimensions: every op's name rule, and the tensor methods that set names.

NOTE [ Named dimensions ]
A tensor's dims may carry names (``cad.tensor(x, names=("batch", "D"))``;
``t.names`` has one str or None per dim).  Names are checked at run time by the
op's *name rule*, the ``name_rule`` slot of its table entry (filled below by kind
and by op, as cad/ops/_batch.py fills the batching rules; tests/test_names.py
checks that every op has one):

- elementwise ops unify names by position from the right: None matches anything
  and takes the other name; two different names at one position raise, naming
  both tuples, the two dims and the position;
- reductions, softmax, scans, sorts, transposes, squeeze, concatenation, diagonal,
  ... accept dim names wherever they take an axis (``t.sum("D")``) and drop,
  keep or permute names as the op moves the dims;
- reshape, view, ravel and kron mix dims: the result is unnamed, except
  ``t.flatten(dims, new_name)`` and ``t.unflatten(name, ((n1, s1), (n2, s2)))``;
- matmul follows the seed: ``("batch", "D") @ ("in", "out")`` is
  ``("batch", "out")``; the contracted dims vanish unchecked (PyTorch's rule: a
  matrix's input and output spaces are usually named differently), batch dims
  unify like an elementwise op.

How calls reach the rules: the engine's elementwise, comparison and indexing paths
hand a call with a named operand to ``_ew_hook`` / ``_getitem_hook``; every
Python op function (OpDef.__call__) tests ``NAMES[0]`` (some named tensor was
ever made) before its body.  A rule runs the op's body with name checking
suspended in this thread (the body's inner ops are unnamed arithmetic) and names
the result.  Until the first named tensor is made nothing looks at names; after,
an unnamed call costs a flag test and a scan of its arguments.

Transforms: the nodes a transform differentiates keep their inputs' names, so f
runs with names checked; gradients are named as their inputs, Jacobians by the
output's names then the input's (a clash gets a prime: ``("D", "D'")``), and the
sweeps run unnamed.  cad.record keeps the names of the example inputs and
outputs: a replay checks its inputs' names against them (None matches anything)
and names its outputs, with no Python per op.  cad.save / cad.load keep names.
"""
from __future__ import annotations

import inspect
import threading
from typing import Any, Optional, Sequence

from ._core import _engine as C
from .ops._batch import Batched as _Batched
from .ops._registry import NAMES, REGISTRY, fill_slot

_Tensor = C.Tensor
_live = C._names_live
_rawn = C._raw_names
_lock = threading.Lock()


class NamesError(ValueError, C.CadError):
    """Names of dims that do not fit an op (names the op, both name tuples and the dims)."""


# ---------------------------------------------------------------- basics

def _on():
    """turn name checking on for the process (the first named tensor)"""
    if NAMES[0]:
        return
    with _lock:
        if NAMES[0]:
            return
        from .ops import method_apis
        C._names_enable()
        C.set_names_hooks(_ew_hook, _getitem_hook)
        NAMES[1] = dispatch
        NAMES[0] = True
        C.set_api(method_apis(named=True))


def raw(t) -> Optional[tuple]:
    """t's names (a tuple) or None when unnamed or not a tensor"""
    if type(t) is _Tensor:
        return C._raw_names(t)
    v = getattr(t, "val", None)   # a vmap Batched value: the per-example names
    if v is not None and type(v) is _Tensor and hasattr(t, "level"):
        n = C._raw_names(v)
        return None if n is None or all(x is None for x in n[1:]) else n[1:]
    return None


def check(names: Any, ndim: int, who: str) -> Optional[tuple]:
    """names as given by a user (a sequence of str/None, one per dim) -> a tuple, or
    None when all are None; raises naming who"""
    if names is None:
        return None
    if isinstance(names, str) or not isinstance(names, Sequence):
        raise TypeError(f"{who}: names must be a tuple of str or None, one per dim, got {names!r}")
    names = tuple(names)
    if len(names) != ndim:
        raise NamesError(f"{who}: {len(names)} names {names} for a tensor of {ndim} dims")
    seen = set()
    for n in names:
        if n is None:
            continue
        if not isinstance(n, str):
            raise TypeError(f"{who}: a dim name must be a str or None, got {n!r} in {names}")
        if n == "...":
            raise NamesError(f"{who}: '...' is not a dim name (it stands for the other dims in "
                             "align_to and refine_names)")
        if n in seen:
            raise NamesError(f"{who}: the name {n!r} is repeated in {names}; names of a tensor's "
                             "dims must differ")
        seen.add(n)
    if not seen:
        return None
    return names


def put(r, names, ins=()):
    """r (an op's result) named `names` (tuple or None); r is aliased first when it
    is one of the op's inputs (an op that returned its argument)"""
    if type(r) is not _Tensor:
        return r
    if names is not None:
        nd = r.ndim
        ln = len(names)
        if ln < nd:   # an unnamed operand broadcast the result to more dims
            names = (None,) * (nd - ln) + tuple(names)
        elif ln > nd or names.count(None) == ln:
            names = None
    cur = C._raw_names(r)
    if cur == names:
        return r
    for x in ins:
        if r is x:
            r = _alias(r)
            break
    C._put_names(r, names)
    return r


def _alias(t):
    """a new tensor object for t's value, recorded as an identity view (gradients
    flow through it to t)"""
    prev = C._names_suspend()
    try:
        return C.reshape(t, tuple(t.shape))
    finally:
        C._names_restore(prev)


def named(t, names):
    """t with these names (a new tensor object; t keeps its own)"""
    return _reshaped(t, tuple(t.shape), names, "rename")


def _fmt(names):
    return "(" + ", ".join(repr(n) for n in names) + ("," if len(names) == 1 else "") + ")"


def unify(who, tuples):
    """names of the broadcast result of operands with these names (tuples, or None
    for unnamed; all tuples right-aligned)"""
    named = [t for t in tuples if t is not None]
    if not named:
        return None
    got = C._names_unify(named, max(len(t) for t in named))
    if got is not None:
        return got
    out = None
    first = None
    for nm in tuples:
        if nm is None:
            continue
        if out is None:
            out, first = list(nm), nm
            continue
        if len(nm) > len(out):
            out = [None] * (len(nm) - len(out)) + out
        k = len(out)
        for i in range(1, len(nm) + 1):
            a, b = out[k - i], nm[len(nm) - i]
            if b is None:
                continue
            if a is None:
                out[k - i] = b
            elif a != b:
                raise NamesError(f"{who}: cannot broadcast dims {_fmt(first)} and dims {_fmt(nm)}: dim "
                                 f"{a!r} and dim {b!r} are at the same position from the right "
                                 f"({-i}); rename one (t.rename) or line them up (t.align_as)")
        first = tuple(out)
    if out is None:
        return None
    seen = {}
    for i, n in enumerate(out):
        if n is None:
            continue
        if n in seen:
            raise NamesError(f"{who}: the dim {n!r} is at two positions ({seen[n] - len(out)} and "
                             f"{i - len(out)} from the right) after broadcasting "
                             f"{', '.join(_fmt(t) for t in tuples if t is not None)}; align them "
                             "first (t.align_to / t.align_as)")
        seen[n] = i
    return tuple(out)


def _full(t):
    """t's names with None for unnamed dims (() for non-tensors)"""
    n = raw(t)
    if n is not None:
        return n
    nd = getattr(t, "ndim", 0)
    return (None,) * nd


def axis_of(t, a, who, what="axis"):
    """an axis given as an int or a dim name -> an int (negative ints as given)"""
    if isinstance(a, str):
        n = _full(t)
        if a in n:
            return n.index(a)
        raise NamesError(f"{who}: the tensor has no dim named {a!r} (its names are {_fmt(n)}, shape "
                         f"{tuple(t.shape)})")
    return a


def axes_of(t, a, who):
    if isinstance(a, (tuple, list)):
        return type(a)(axis_of(t, e, who) for e in a)
    return axis_of(t, a, who)


def _norm(a, nd, who):
    if not isinstance(a, int) or isinstance(a, bool):
        raise TypeError(f"{who}: axis must be an int or a dim name, got {a!r}")
    if not -nd <= a < max(nd, 1):
        raise C.ShapeError(f"{who}: axis {a} is out of range for a tensor of {nd} dims")
    return a % nd if nd else 0


def _run(fn, args, kwargs):
    prev = C._names_suspend()
    try:
        return fn(*args, **kwargs)
    finally:
        C._names_restore(prev)


# ---------------------------------------------------------------- the dispatcher

def _named_in(x):
    if type(x) is _Tensor:
        return C._raw_names(x) is not None
    if isinstance(x, (list, tuple)):
        return any(_named_in(e) for e in x)
    return raw(x) is not None


def _strs(x):
    if isinstance(x, str):
        return True
    if isinstance(x, (list, tuple)):
        return any(isinstance(e, str) for e in x)
    return False


def dispatch(op, fn, args, kwargs):
    """an op call while names are on: the op's name rule when an argument is named
    or an axis is given by name, else NotImplemented (the plain body)"""
    if not _live():
        return NotImplemented
    for a in args:
        t = type(a)
        if t is _Tensor:
            if _rawn(a) is not None:
                return op.name_rule(op, fn, args, kwargs)
        elif t is str or t is list or t is tuple or t is _Batched:
            break
    else:
        if not kwargs:
            return NotImplemented
    if not (any(_named_in(a) for a in args) or any(_named_in(v) for v in kwargs.values())
            or any(_strs(a) for a in args[1:]) or any(_strs(v) for v in kwargs.values())):
        return NotImplemented
    return op.name_rule(op, fn, args, kwargs)


def _ew_hook(who, args, r):
    """the engine's elementwise paths: r named by unifying the operands' names"""
    name = who if isinstance(who, str) else C.OP_NAMES[who]
    return put(r, unify(name, [raw(a) for a in args]), args)


def _getitem_hook(t, index):
    return getitem_rule(REGISTRY["getitem"], lambda x, i: C._raw_getitem(x, i), (t, index), {})


# ---------------------------------------------------------------- binding

_SPEC = {}
_EMPTY = inspect.Parameter.empty


class _Bound:
    """a call's arguments by name (all of them, defaults filled in), and the call
    rebuilt from them; a cheap inspect.BoundArguments for the rules' hot path"""
    __slots__ = ("arguments", "pos", "kwonly", "defaults")

    def __init__(self, arguments, pos, kwonly, defaults):
        self.arguments = arguments
        self.pos = pos
        self.kwonly = kwonly
        self.defaults = defaults

    @property
    def args(self):
        a = self.arguments
        return tuple(a[n] for n in self.pos)

    @property
    def kwargs(self):
        a = self.arguments
        return {n: a[n] for n in self.kwonly if n in a}


def _bind(op, fn, args, kwargs):
    raw_fn = getattr(fn, "__wrapped__", fn)
    spec = _SPEC.get(raw_fn)
    if spec is None:
        sig = inspect.signature(raw_fn)
        ps = list(sig.parameters.values())
        if any(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD, p.POSITIONAL_ONLY) for p in ps):
            spec = False
        else:
            spec = (tuple(p.name for p in ps if p.kind == p.POSITIONAL_OR_KEYWORD),
                    tuple(p.name for p in ps if p.kind == p.KEYWORD_ONLY),
                    {p.name: p.default for p in ps})
        _SPEC[raw_fn] = spec
    if spec is False:   # *args or **kw: inspect's binding
        try:
            b = inspect.signature(raw_fn).bind(*args, **kwargs)
        except TypeError as e:
            raise TypeError(f"{op.name}: {e}") from None
        return _InspectBound(b)
    pos, kwonly, defaults = spec
    if len(args) > len(pos):
        raise TypeError(f"{op.name}: takes {len(pos)} positional arguments but {len(args)} were given")
    a = dict(defaults)
    for n, v in zip(pos, args):
        a[n] = v
    for k, v in kwargs.items():
        if k not in defaults:
            raise TypeError(f"{op.name}: got an unexpected keyword argument {k!r}")
        if k in pos[:len(args)]:
            raise TypeError(f"{op.name}: got multiple values for argument {k!r}")
        a[k] = v
    for n, v in a.items():
        if v is _EMPTY:
            raise TypeError(f"{op.name}: missing a required argument: {n!r}")
    return _Bound(a, pos, kwonly, defaults)


class _InspectBound:
    """inspect's binding, with _Bound's interface"""
    __slots__ = ("b", "arguments", "defaults")

    def __init__(self, b):
        self.b = b
        self.arguments = b.arguments
        self.defaults = {n: p.default for n, p in b.signature.parameters.items()}

    @property
    def args(self):
        return self.b.args

    @property
    def kwargs(self):
        return self.b.kwargs


def _arg(b, name, default=None):
    return b.arguments.get(name, default)


def _call_bound(fn, b):
    return _run(fn, b.args, b.kwargs)


def _axis_param(b, name, alias, t, who):
    """resolve the axis argument `name` (or its alias) of a bound call in place;
    returns its value"""
    for key in (name, alias):
        if key and key in b.arguments and b.arguments[key] is not None:
            v = axes_of(t, b.arguments[key], who)
            b.arguments[key] = v
            return v
    return None


# ---------------------------------------------------------------- rules by kind

def ew_rule(op, fn, args, kwargs):
    r = _run(fn, args, kwargs)
    ts = [raw(a) for a in args] + [raw(v) for v in kwargs.values()]
    return put(r, unify(op.name, ts), tuple(args) + tuple(kwargs.values()))


def unnamed_rule(op, fn, args, kwargs):
    """the result is unnamed (the op mixes dims: reshape, kron, a custom primitive)"""
    r = _run(fn, args, kwargs)
    if isinstance(r, (tuple, list)):
        return type(r)(put(x, None, args) for x in r)
    return put(r, None, args)


def keep_rule(op, fn, args, kwargs):
    """the result has its first argument's dims (astype, to_device, pad, tril)"""
    x = args[0]
    r = _run(fn, args, kwargs)
    return put(r, raw(x), args)


def _reduced(names, axes, nd, keep):
    if axes is None:
        return names if keep else ()
    if not isinstance(axes, (tuple, list)):
        axes = (axes,)
    ax = {_norm(a, nd, "reduce") for a in axes}
    if keep:
        return names
    return tuple(n for i, n in enumerate(names) if i not in ax)


_IDX = {}


def _index(fn, name):
    """the position of fn's positional parameter `name` (-1: keyword-only or none)"""
    i = _IDX.get((fn, name))
    if i is None:
        ps = list(inspect.signature(getattr(fn, "__wrapped__", fn)).parameters.values())
        i = next((k for k, p in enumerate(ps) if p.name == name and
                  p.kind in (p.POSITIONAL_OR_KEYWORD, p.POSITIONAL_ONLY)), -1)
        _IDX[(fn, name)] = i
    return i


def _pget(fn, args, kwargs, name, alias=None, default=None):
    """an argument of a call by name (or its alias), without binding the whole call"""
    if kwargs:
        if name in kwargs and kwargs[name] is not None:
            return kwargs[name], name
        if alias in kwargs and kwargs[alias] is not None:
            return kwargs[alias], alias
    i = _index(fn, name)
    if 0 <= i < len(args):
        return args[i], i
    return default, None


def _pset(args, kwargs, where, v):
    if type(where) is int:
        args = args[:where] + (v,) + args[where + 1:]
    else:
        kwargs = dict(kwargs)
        kwargs[where] = v
    return args, kwargs


def reduce_rule(op, fn, args, kwargs):
    """sum, mean, var, ...: axes by name; reduced dims drop (keepdims: kept)"""
    x = args[0]
    ax, where = _pget(fn, args, kwargs, "axis", "dim")
    if ax is not None and _strs(ax):
        ax = axes_of(x, ax, op.name)
        args, kwargs = _pset(tuple(args), kwargs, where, ax)
    keep = _pget(fn, args, kwargs, "keepdims", "keepdim", False)[0]
    r = _run(fn, args, kwargs)
    n = raw(x)
    if n is None:
        return put(r, None, args)
    if keep:
        return put(r, n, args)
    if ax is None:
        return put(r, (), args)
    nd = len(n)
    gone = (ax % nd,) if type(ax) is int else tuple(a % nd for a in ax)
    return put(r, tuple([m for i, m in enumerate(n) if i not in gone]), args)


def along_rule(op, fn, args, kwargs):
    """softmax, cumsum, sort, flip, roll, diff, ...: the dims stay (axis by name);
    an axis of None that flattens (cumsum, sort, argsort) gives an unnamed result"""
    b = _bind(op, fn, args, kwargs)
    x = args[0]
    axes = None
    for key in ("axis", "dim", "dims", "shifts_axis"):
        if key in b.arguments and b.arguments[key] is not None:
            axes = b.arguments[key] = axes_of(x, b.arguments[key], op.name)
    flat = op.name in _FLATTENS and axes is None and "axis" in b.defaults and \
        b.defaults["axis"] is None and x.ndim > 1
    r = _call_bound(fn, b)
    if isinstance(r, tuple) and not isinstance(r, _Tensor):   # (values, indices)
        return type(r)(*(put(e, None if flat else raw(x), args) for e in r)) \
            if hasattr(r, "_fields") else tuple(put(e, None if flat else raw(x), args) for e in r)
    if getattr(r, "ndim", -1) != x.ndim:
        return put(r, None, args)
    return put(r, None if flat else raw(x), args)


_FLATTENS = {"cumsum", "cumprod", "sort", "argsort", "repeat"}


def transpose_rule(op, fn, args, kwargs):
    """transpose/permute/swapaxes/moveaxis: the names move with the dims"""
    x = args[0]
    nd = x.ndim
    names = _full(x)
    rest = [axes_of(x, a, op.name) for a in args[1:]]
    kw = {k: axes_of(x, v, op.name) for k, v in kwargs.items()}
    r = _run(fn, (x,) + tuple(rest), kw)
    # the permutation, found from the call (shape alone cannot tell equal sizes apart)
    perm = _perm_of(op.name, nd, rest, kw)
    return put(r, tuple(names[p] for p in perm), (x,))


def _perm_of(name, nd, rest, kw):
    if name in ("transpose", "T"):
        axes = kw.get("axes", rest[0] if len(rest) == 1 else (tuple(rest) if rest else None))
        if axes is None:
            return tuple(range(nd))[::-1]
        return tuple(_norm(a, nd, name) for a in axes)
    if name == "mT":
        return tuple(range(nd - 2)) + (nd - 1, nd - 2)
    if name == "permute":
        dims = kw.get("dims", rest[0] if len(rest) == 1 and isinstance(rest[0], (tuple, list)) else rest)
        return tuple(_norm(a, nd, name) for a in dims)
    if name == "swapaxes":
        a1 = _norm(kw.get("axis1", rest[0] if rest else None), nd, name)
        a2 = _norm(kw.get("axis2", rest[1] if len(rest) > 1 else None), nd, name)
        p = list(range(nd))
        p[a1], p[a2] = p[a2], p[a1]
        return tuple(p)
    if name == "moveaxis":
        src = kw.get("source", rest[0] if rest else None)
        dst = kw.get("destination", rest[1] if len(rest) > 1 else None)
        src = [_norm(a, nd, name) for a in (src if isinstance(src, (tuple, list)) else (src,))]
        dst = [_norm(a, nd, name) for a in (dst if isinstance(dst, (tuple, list)) else (dst,))]
        order = [n for n in range(nd) if n not in src]
        for d, s in sorted(zip(dst, src)):
            order.insert(d, s)
        return tuple(order)
    raise AssertionError(name)


def broadcast_rule(op, fn, args, kwargs):
    """broadcast_to/expand/tile: new leading dims are unnamed, the others keep names"""
    x = args[0]
    r = _run(fn, args, kwargs)
    n = _full(x)
    return put(r, (None,) * (r.ndim - len(n)) + n, args)


def squeeze_rule(op, fn, args, kwargs):
    b = _bind(op, fn, args, kwargs)
    x = args[0]
    nd = x.ndim
    axes = _axis_param(b, "axis", "dim", x, op.name)
    r = _call_bound(fn, b)
    n = _full(x)
    if axes is None:
        gone = {i for i, s in enumerate(x.shape) if s == 1}
    else:
        gone = {_norm(a, nd, op.name) for a in (axes if isinstance(axes, (tuple, list)) else (axes,))}
    return put(r, tuple(m for i, m in enumerate(n) if i not in gone), args)


def unsqueeze_rule(op, fn, args, kwargs):
    x = args[0]
    r = _run(fn, args, kwargs)
    b = _bind(op, fn, args, kwargs)
    d = _norm(_arg(b, "dim"), r.ndim, op.name)
    n = list(_full(x))
    n.insert(d, None)
    return put(r, tuple(n), args)


def _seq(args, kwargs):
    seq = args[0] if args else kwargs.get("tensors")
    return list(seq)


def concat_rule(op, fn, args, kwargs):
    """concatenate: the operands' names unify (the joined dim too); axis by name"""
    ts = _seq(args, kwargs)
    b = _bind(op, fn, args, kwargs)
    named_t = next((t for t in ts if raw(t) is not None), ts[0])
    _axis_param(b, "axis", "dim", named_t, op.name)
    if op.name == "concatenate":
        nd = {getattr(t, "ndim", 0) for t in ts}
        if len(nd) > 1:
            return unnamed_rule(op, fn, b.args, b.kwargs)   # the body raises its own error
    out = unify(op.name, [raw(t) for t in ts])
    r = _call_bound(fn, b)
    if op.name == "stack":
        ax = _norm(_arg(b, "axis", _arg(b, "dim", 0)) or 0, r.ndim, op.name)
        n = list(out or (None,) * (r.ndim - 1))
        n.insert(ax, None)
        return put(r, tuple(n), ts)
    if out is not None and len(out) != r.ndim:
        out = (None,) * (r.ndim - len(out)) + out
    return put(r, out, ts)


def stacks_rule(op, fn, args, kwargs):
    """vstack/hstack/column_stack/atleast_*: names from the operands as numpy pads
    them (new dims unnamed), unified"""
    ts = _seq(args, kwargs) if op.name in ("vstack", "hstack", "column_stack") else list(args)
    r = _run(fn, args, kwargs)
    padded = []
    for t in ts:
        n = _full(t)
        nd = len(n)
        if op.name == "vstack" or op.name == "atleast_2d":
            n = (None,) * max(0, 2 - nd) + n
        elif op.name == "column_stack":
            n = n + (None,) if nd == 1 else ((None, None) if nd == 0 else n)
        elif op.name == "atleast_1d":
            n = n or (None,)
        elif op.name == "atleast_3d":
            n = {0: (None, None, None), 1: (None,) + n + (None,), 2: n + (None,)}.get(nd, n)
        elif op.name == "hstack":
            n = n or (None,)
        padded.append(n if any(m is not None for m in n) else None)
    if op.name.startswith("atleast"):
        if isinstance(r, (list, tuple)):
            return type(r)(put(e, p, ts) for e, p in zip(r, padded))
        return put(r, padded[0], ts)
    if op.name == "hstack" and all(len(_full(t)) == 1 for t in ts):
        return put(r, unify(op.name, padded), ts)
    # the joined dim's names must agree too (numpy joins along it)
    return put(r, unify(op.name, padded), ts)


def matmul_rule(op, fn, args, kwargs):
    """the seed's rule: ('batch', 'D') @ ('in', 'out') -> ('batch', 'out'); batch
    dims unify; the contracted dims vanish"""
    a, b = args[0], args[1]
    r = _run(fn, args, kwargs)
    na, nb = _full(a), _full(b)
    if len(na) == 0 or len(nb) == 0:
        return put(r, unify(op.name, [raw(a), raw(b)]), args)
    if op.name == "dot" and len(na) > 2 and len(nb) >= 2:   # numpy's dot: a[:-1] + b[:-2] + b[-1:]
        out = na[:-1] + nb[:-2] + nb[-1:]
        return put(r, _dedupe(op.name, out), args)
    if len(na) == 1 and len(nb) == 1:
        return put(r, (), args)
    if len(na) == 1:
        out = nb[:-2] + nb[-1:]
    elif len(nb) == 1:
        out = na[:-1]
    else:
        batch = unify(op.name, [na[:-2] or None, nb[:-2] or None]) or ()
        nbatch = r.ndim - 2
        batch = (None,) * (nbatch - len(batch)) + tuple(batch)
        out = batch + (na[-2], nb[-1])
    return put(r, _dedupe(op.name, out), args)


def _dedupe(who, out):
    seen = set()
    for n in out:
        if n is not None and n in seen:
            raise NamesError(f"{who}: the result would have the dim name {n!r} twice ({_fmt(out)}); "
                             "rename one operand's dim first")
        seen.add(n)
    return out


def inner_rule(op, fn, args, kwargs):
    a, b = args[0], args[1]
    r = _run(fn, args, kwargs)
    na, nb = _full(a), _full(b)
    if op.name == "outer":
        out = ((na[0] if len(na) == 1 else None), (nb[0] if len(nb) == 1 else None))
    elif op.name == "inner":
        out = na[:-1] + nb[:-1]
    else:   # tensordot
        bd = _bind(op, fn, args, kwargs)
        axes = _arg(bd, "axes", 2) if _arg(bd, "dims") is None else _arg(bd, "dims")
        if isinstance(axes, int):
            ia, ib = list(range(len(na) - axes, len(na))), list(range(axes))
        else:
            ia, ib = axes
            ia = [ia] if isinstance(ia, int) else list(ia)
            ib = [ib] if isinstance(ib, int) else list(ib)
            ia = [i % len(na) for i in ia]
            ib = [i % len(nb) for i in ib]
        out = tuple(n for i, n in enumerate(na) if i not in ia) + \
            tuple(n for i, n in enumerate(nb) if i not in ib)
    if len(out) != getattr(r, "ndim", len(out)):
        out = None
    return put(r, _dedupe(op.name, out) if out else out, args)


def einsum_rule(op, fn, args, kwargs):
    """einsum: each subscript letter takes the name its operands give it (two
    different names for one letter raise); the output's letters carry them"""
    r = _run(fn, args, kwargs)
    if isinstance(args[0], str):
        spec, ops = args[0], list(args[1:])
    elif "subscripts" in kwargs and kwargs["subscripts"] is not None:
        spec, ops = kwargs["subscripts"], list(args)
    else:
        return put(r, None, args)
    spec = spec.replace(" ", "")
    if "..." in spec:
        return put(r, None, args)
    lhs, _, rhs = spec.partition("->")
    terms = lhs.split(",")
    if not _:
        rhs = "".join(sorted(c for c in set(lhs.replace(",", "")) if lhs.replace(",", "").count(c) == 1))
    letter = {}
    for term, t in zip(terms, ops):
        mine = {}
        for c, n in zip(term, _full(t)):
            if c in mine and mine[c] != n:   # a diagonal ('ii'): no one name
                mine[c] = None
            elif c not in mine:
                mine[c] = n
        for c, n in mine.items():
            if n is None:
                continue
            m = letter.get(c)
            if m is not None and m != n and c in rhs:
                # a contracted letter is unchecked, as matmul's contracted dims (the seed)
                raise NamesError(f"einsum: subscript {c!r} is dim {m!r} in one operand and dim {n!r} "
                                 "in another; rename one")
            letter.setdefault(c, n)
    out = tuple(letter.get(c) for c in rhs)
    return put(r, _dedupe("einsum", out), ops)


def getitem_rule(op, fn, args, kwargs):
    """indexing: the dims that survive keep their names; ints drop a dim, None adds
    an unnamed one, an advanced index gives unnamed dims"""
    x = args[0]
    idx = args[1] if len(args) > 1 else kwargs.get("idx", kwargs.get("index"))
    r = _run(fn, args, kwargs)
    n = _full(x)
    items = idx if isinstance(idx, tuple) else (idx,)
    simple = all(e is None or e is Ellipsis or isinstance(e, (int, slice)) for e in items) and \
        not any(isinstance(e, bool) for e in items)
    if not simple:
        return put(r, None, (x,))
    nreal = sum(1 for e in items if e is not None and e is not Ellipsis)
    out, k = [], 0
    for e in items:
        if e is Ellipsis:
            m = len(n) - nreal
            out.extend(n[k:k + m])
            k += m
        elif e is None:
            out.append(None)
        elif isinstance(e, slice):
            out.append(n[k])
            k += 1
        else:
            k += 1
    out.extend(n[k:])
    if len(out) != r.ndim:
        return put(r, None, (x,))
    return put(r, tuple(out), (x,))


def setitem_rule(op, fn, args, kwargs):
    """x[i] = v: x keeps its names (the functional form: the result has x's)"""
    return keep_rule(op, fn, args, kwargs)


def diag_rule(op, fn, args, kwargs):
    b = _bind(op, fn, args, kwargs)
    x = args[0]
    n = _full(x)
    if op.name == "diag":
        r = _call_bound(fn, b)
        return put(r, None, args)
    a1 = _arg(b, "axis1", 0) if _arg(b, "dim1") is None else _arg(b, "dim1")
    a2 = _arg(b, "axis2", 1) if _arg(b, "dim2") is None else _arg(b, "dim2")
    a1, a2 = axis_of(x, a1, op.name), axis_of(x, a2, op.name)
    for key, v in (("axis1", a1), ("axis2", a2)):
        if key in b.arguments or key in b.defaults:
            b.arguments[key] = v
    for key in ("dim1", "dim2"):
        b.arguments.pop(key, None)
    r = _call_bound(fn, b)
    gone = {_norm(a1, len(n), op.name), _norm(a2, len(n), op.name)}
    rest = tuple(m for i, m in enumerate(n) if i not in gone)
    return put(r, rest + ((None,) if op.name == "diagonal" else ()), args)   # trace: the rest


def rot90_rule(op, fn, args, kwargs):
    b = _bind(op, fn, args, kwargs)
    x = args[0]
    axes = _arg(b, "dims") or _arg(b, "axes", (0, 1))
    axes = tuple(axis_of(x, a, op.name) for a in axes)
    if _arg(b, "dims") is not None:
        b.arguments["dims"] = axes
    else:
        b.arguments["axes"] = axes
    k = _arg(b, "k", 1)
    r = _call_bound(fn, b)
    n = list(_full(x))
    if k % 2:
        i, j = (_norm(a, len(n), op.name) for a in axes)
        n[i], n[j] = n[j], n[i]
    return put(r, tuple(n), args)


def xent_rule(op, fn, args, kwargs):
    logits, labels = args[0], args[1]
    r = _run(fn, args, kwargs)
    if getattr(r, "ndim", 0) == 0:
        return put(r, (), args)
    return put(r, unify(op.name, [(raw(logits) or (None,) * logits.ndim)[:-1] or None, raw(labels)]), args)


def take_along_rule(op, fn, args, kwargs):
    b = _bind(op, fn, args, kwargs)
    x = args[0]
    _axis_param(b, "axis", None, x, op.name)
    r = _call_bound(fn, b)
    return put(r, unify(op.name, [raw(x), raw(b.arguments.get("indices"))]), args)


def cross_rule(op, fn, args, kwargs):
    b = _bind(op, fn, args, kwargs)
    named_t = args[0] if raw(args[0]) is not None else args[1]
    _axis_param(b, "axis", "dim", named_t, op.name)
    r = _call_bound(fn, b)
    return put(r, unify(op.name, [raw(args[0]), raw(args[1])]), args)


def flatten_op_rule(op, fn, args, kwargs):
    """the op table's flatten (all dims into one) and reshape: unnamed results"""
    return unnamed_rule(op, fn, args, kwargs)


# ---------------------------------------------------------------- the table's slots

_BY_NAME = {
    **{k: reduce_rule for k in ("sum", "max", "min", "prod", "mean", "logsumexp", "var", "std", "any",
                                "all", "argmax", "argmin", "norm")},
    **{k: along_rule for k in ("softmax", "log_softmax", "cumsum", "cumprod", "sort", "argsort", "flip",
                               "roll", "diff", "repeat")},
    **{k: keep_rule for k in ("astype", "cast", "to_device", "pad", "tril", "triu", "fliplr", "flipud")},
    **{k: transpose_rule for k in ("transpose", "permute", "swapaxes", "moveaxis")},
    **{k: unnamed_rule for k in ("reshape", "flatten", "ravel", "kron", "custom", "view", "unview",
                                 "gather", "scatter", "xent")},
    "broadcast_to": broadcast_rule, "expand": broadcast_rule,
    "squeeze": squeeze_rule, "unsqueeze": unsqueeze_rule,
    "concatenate": concat_rule, "stack": concat_rule,
    **{k: stacks_rule for k in ("vstack", "hstack", "column_stack", "atleast_1d", "atleast_2d", "atleast_3d")},
    "matmul": matmul_rule, "dot": matmul_rule,
    "inner": inner_rule, "outer": inner_rule, "tensordot": inner_rule,
    "einsum": einsum_rule, "getitem": getitem_rule, "setitem": setitem_rule,
    "diagonal": diag_rule, "diag": diag_rule, "trace": diag_rule, "rot90": rot90_rule, "tile": broadcast_rule,
    "cross_entropy": xent_rule, "take_along_axis": take_along_rule, "cross": cross_rule,
    "nan_to_num": ew_rule, "clip": ew_rule, "where": ew_rule,
}


def attach():
    """fill every op's name_rule slot (NOTE [ Named dimensions ])"""
    fill_slot("name_rule", _BY_NAME, ew_rule, "name rule")


# ---------------------------------------------------------------- methods that set names

def rename(t, *names, **renames):
    """t.rename(*names): new names for every dim (None unnames); t.rename(old=new):
    rename some dims; t.rename(None): unnamed.  A new tensor object (gradients flow)."""
    if names and renames:
        raise TypeError("rename: give either the names of every dim or old=new pairs, not both")
    if renames:
        cur = list(_full(t))
        for old, new in renames.items():
            if old not in cur:
                raise NamesError(f"rename: the tensor has no dim named {old!r} (its names are "
                                 f"{_fmt(tuple(cur))})")
            cur[cur.index(old)] = new
        return named(t, tuple(cur))
    if len(names) == 1 and names[0] is None:
        return named(t, None)
    if len(names) == 1 and isinstance(names[0], (tuple, list)):
        names = tuple(names[0])
    if "..." in names:
        return named(t, _expand_dots(t, names, "rename"))
    return named(t, names)


def _expand_dots(t, names, who):
    i = names.index("...")
    if names.count("...") > 1:
        raise NamesError(f"{who}: '...' appears twice in {names}")
    cur = _full(t)
    m = t.ndim - (len(names) - 1)
    if m < 0:
        raise NamesError(f"{who}: {len(names) - 1} names {names} for a tensor of {t.ndim} dims")
    return tuple(names[:i]) + tuple(cur[i:i + m]) + tuple(names[i + 1:])


def refine_names(t, *names):
    """names for the unnamed dims; a named dim must keep its name ('...' stands for
    the dims in between)"""
    if len(names) == 1 and isinstance(names[0], (tuple, list)):
        names = tuple(names[0])
    if "..." in names:
        names = _expand_dots(t, names, "refine_names")
    cur = _full(t)
    if len(names) != len(cur):
        raise NamesError(f"refine_names: {len(names)} names {names} for a tensor of {len(cur)} dims")
    for i, (a, b) in enumerate(zip(cur, names)):
        if a is not None and a != b:
            raise NamesError(f"refine_names: cannot refine dim {a!r} (position {i}) to {b!r}; a named "
                             f"dim keeps its name (use rename)")
    return named(t, names)


def align_to(t, *names):
    """the dims permuted to this order ('...' stands for the dims not listed, in
    their order); names not in t become new dims of size 1"""
    if len(names) == 1 and isinstance(names[0], (tuple, list)):
        names = tuple(names[0])
    cur = _full(t)
    if raw(t) is None:
        raise NamesError("align_to: the tensor is unnamed; name its dims first (t.rename or "
                         "refine_names)")
    if names.count("...") > 1:
        raise NamesError(f"align_to: '...' appears twice in {names}")
    listed = [n for n in names if n != "..."]
    for n in listed:
        if not isinstance(n, str):
            raise TypeError(f"align_to: dim names must be str, got {n!r}")
    if len(set(listed)) != len(listed):
        raise NamesError(f"align_to: a name is repeated in {names}")
    rest = [i for i, n in enumerate(cur) if n not in listed]
    if "..." not in names:
        unnamed = [i for i in rest]
        if unnamed:
            what = [cur[i] for i in unnamed]
            raise NamesError(f"align_to: the dims {what} of the tensor (names {_fmt(cur)}) are not in "
                             f"{names}; list them or add '...'")
    order, out = [], []
    for n in names:
        if n == "...":
            order.extend(("old", i) for i in rest)
            out.extend(cur[i] for i in rest)
        elif n in cur:
            order.append(("old", cur.index(n)))
            out.append(n)
        else:
            order.append(("new", None))
            out.append(n)
    perm = [i for k, i in order if k == "old"]
    prev = C._names_suspend()
    try:
        r = t.transpose(tuple(perm)) if perm != list(range(t.ndim)) else t
        shape = []
        it = iter(perm)
        for k, _ in order:
            shape.append(t.shape[next(it)] if k == "old" else 1)
        if len(shape) != r.ndim:
            r = C.reshape(r, tuple(shape))
        elif r is t:
            r = _alias(t)
    finally:
        C._names_restore(prev)
    C._put_names(r, check(tuple(out), len(out), "align_to"))
    return r


def align_as(t, other):
    """t's dims permuted (and size-1 dims added) to line up with other's names"""
    return align_to(t, *_full(other))


def flatten_names(t, dims, new_name):
    """t.flatten(dims, new_name): the dims (adjacent, in order; names or ints) merged
    into one dim named new_name"""
    idx = [_norm(axis_of(t, d, "flatten"), t.ndim, "flatten") for d in dims]
    if not idx or idx != list(range(idx[0], idx[0] + len(idx))):
        raise NamesError(f"flatten: the dims {tuple(dims)} must be adjacent and in order (names "
                         f"{_fmt(_full(t))}); align them first (t.align_to)")
    cur = _full(t)
    shape = list(t.shape)
    n = 1
    for i in idx:
        n *= shape[i]
    new_shape = tuple(shape[:idx[0]]) + (n,) + tuple(shape[idx[-1] + 1:])
    names = cur[:idx[0]] + (new_name,) + cur[idx[-1] + 1:]
    return _reshaped(t, new_shape, names, "flatten")


def _reshaped(t, shape, names, who):
    """t reshaped (a recorded view, a new tensor object), named `names` (checked)"""
    names = check(names, len(shape), who)
    r = _run(C.reshape, (t, shape), {})
    if names is not None:
        _on()
    C._put_names(r, names)
    return r


def unflatten(t, dim, sizes):
    """t.unflatten(dim, ((n1, s1), (n2, s2))): one dim split into named dims (or
    t.unflatten(dim, (s1, s2)): unnamed)"""
    i = _norm(axis_of(t, dim, "unflatten"), t.ndim, "unflatten")
    pairs = [(s if isinstance(s, (tuple, list)) else (None, s)) for s in sizes]
    new = [int(s) for _, s in pairs]
    total = 1
    for s in new:
        total *= s
    if -1 in new:
        known = -total
        new = [t.shape[i] // known if s == -1 else s for s in new]
        total = t.shape[i]
    if total != t.shape[i]:
        raise C.ShapeError(f"unflatten: sizes {tuple(new)} do not multiply to dim {dim!r}'s size "
                           f"{t.shape[i]}")
    cur = _full(t)
    names = cur[:i] + tuple(n for n, _ in pairs) + cur[i + 1:]
    shape = tuple(t.shape[:i]) + tuple(new) + tuple(t.shape[i + 1:])
    return _reshaped(t, shape, names, "unflatten")


def _flatten_method(t, *args, **kwargs):
    """t.flatten(): one dim (numpy); t.flatten(dims, new_name): named dims merged"""
    if len(args) == 2 or "new_name" in kwargs or "out_dim" in kwargs:
        dims = args[0] if args else kwargs.get("dims")
        new = args[1] if len(args) > 1 else kwargs.get("new_name", kwargs.get("out_dim"))
        return flatten_names(t, dims, new)
    return REGISTRY["flatten"].api(t, *args, **kwargs)


def like(g, x, fresh=False):
    """g (a gradient or tangent of x's shape) named as x"""
    n = raw(x)
    if n is None or type(g) is not _Tensor or g.ndim != len(n) or C._raw_names(g) == n:
        return g
    if fresh:
        C._put_names(g, n)
        return g
    r = _alias(g)
    C._put_names(r, n)
    return r


def joined(first, second):
    """names for a Jacobian: the output's then the input's, a clash primed"""
    a, b = first or (), second or ()
    if not any(a) and not any(b):
        return None
    out = list(a)
    taken = {n for n in a if n is not None}
    for n in b:
        while n is not None and n in taken:
            n = n + "'"
        if n is not None:
            taken.add(n)
        out.append(n)
    return tuple(out)


_AXIS_KEYS = ("axis", "dim", "axis1", "axis2", "dim1", "dim2", "dims", "axes", "source", "destination")


def resolve_axes(op, args, kwargs):
    """args and kwargs with the axes given by dim name replaced by their positions
    in the first argument (cad.vmap's batched calls)"""
    if not args or not (any(_strs(a) for a in args[1:]) or any(_strs(v) for v in kwargs.values())):
        return args, kwargs
    if op.name in ("einsum", "pad", "cross_entropy"):
        return args, kwargs
    x = args[0]
    if op.name in ("concatenate", "stack") and isinstance(x, (list, tuple)) and x:
        x = x[0]
    if op.name in ("transpose", "permute"):
        return (args[0],) + tuple(axes_of(x, a, op.name) for a in args[1:]), \
            {k: axes_of(x, v, op.name) for k, v in kwargs.items()}
    b = _bind(op, getattr(op.api, "__wrapped__", op.api), args, kwargs)
    for k in _AXIS_KEYS:
        if k in b.arguments and b.arguments[k] is not None and _strs(b.arguments[k]):
            b.arguments[k] = axes_of(x, b.arguments[k], op.name)
    return b.args, b.kwargs


def vmap_dim(x, d, who):
    """vmap's in_dims entry d for x: a dim name -> its position"""
    if isinstance(d, str):
        return axis_of(x, d, who)
    return d
