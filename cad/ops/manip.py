"""numpy's array-manipulation routines (issue 13), composed from the shape ops
(reshape, transpose, broadcast_to, concatenate), basic indexing (views, negative
steps) and integer-array indexing (gathers); their derivatives, of every order, are
those ops' (scatter-adds for the gathers).  ``split``/``array_split`` return lists and
``nonzero`` a tuple, so they are functions beside the table rather than entries."""
import itertools
from typing import Any

import numpy as np

from ._registry import Case, defop
from ._values import C, along, const, host_ints, index, is_batched, one_axis, read, val
from .shape import broadcast_to, concatenate, reshape, transpose

RAVEL = defop("ravel", "composite", ref=np.ravel,
              cases=[Case((2, 3)), Case(()), Case(("T", (3, 2))), Case((0, 2))],
              doc="ravel(x): the elements in C order, 1-D.")


@RAVEL
def ravel(x):
    return reshape(val(x, "ravel"), (-1,))


REPEAT = defop("repeat", "composite", ref=lambda a, repeats, axis=None: np.repeat(a, repeats, axis),
               cases=[Case((3,), repeats=2), Case((2, 3), repeats=2, axis=1),
                      Case((2, 3), repeats=[1, 0, 3], axis=-1), Case((2, 2), repeats=np.array([2, 1]), axis=0),
                      Case((), repeats=3), Case(("T", (3, 2)), repeats=[2, 0, 1], axis=0),
                      Case((0, 2), repeats=2, axis=0)],
               doc="repeat(x, repeats, axis=None): numpy's repeat (each element repeats[i] "
                   "times; torch's repeat is tile, its repeat_interleave is this).")


@REPEAT
def repeat(x, repeats, axis=None):
    x = val(x, "repeat")
    if axis is None:
        x, ax = reshape(x, (-1,)), 0
    else:
        ax = one_axis(x.ndim, axis, "repeat")
    n = x.shape[ax]
    r = host_ints(repeats, "repeat", "repeats")
    if r.ndim > 1 or (r.size != 1 and r.size != n):
        raise ValueError(f"repeat: {r.size} repeats (shape {r.shape}) for an axis of size {n}")
    if (r < 0).any():
        raise ValueError(f"repeat: repeats must be non-negative, got {r.tolist()}")
    return x[along(x.ndim, ax, np.repeat(np.arange(n), r.reshape(-1)))]


TILE = defop("tile", "composite", ref=lambda a, reps: np.tile(a, reps),
             cases=[Case((3,), reps=2), Case((2, 3), reps=(2, 1)), Case((2,), reps=(2, 1, 3)),
                    Case((), reps=(2,)), Case(("T", (3, 2)), reps=(1, 2)), Case((2, 3), reps=0),
                    Case((2, 1, 2), reps=(2, 2))],
             doc="tile(x, reps): as numpy (torch's Tensor.repeat).")


@TILE
def tile(x, reps):
    x = val(x, "tile")
    reps = (reps,) if isinstance(reps, (int, np.integer)) else tuple(reps)
    reps = tuple(index(r, "tile", "reps") for r in reps)
    if any(r < 0 for r in reps):
        raise ValueError(f"tile: reps must be non-negative, got {reps}")
    d = max(x.ndim, len(reps))
    shape = (1,) * (d - x.ndim) + tuple(x.shape)
    reps = (1,) * (d - len(reps)) + reps
    inter = sum(((1, s) for s in shape), ())
    big = sum(((r, s) for r, s in zip(reps, shape)), ())
    return reshape(broadcast_to(reshape(x, inter), big), tuple(r * s for r, s in zip(reps, shape)))


ROLL = defop("roll", "composite", ref=lambda a, shift, axis=None: np.roll(a, shift, axis),
             cases=[Case((5,), shift=2), Case((2, 3), shift=-1), Case((2, 3), shift=1, axis=1),
                    Case((2, 3), shift=(1, 2), axis=(0, -1)), Case((3, 4), shift=(1, 2), axis=1),
                    Case(("T", (3, 2)), shift=7, axis=0), Case((), shift=1), Case((0, 3), shift=1, axis=0)],
             doc="roll(x, shift, axis=None): as numpy (torch's shifts=/dims= accepted).")


@ROLL
def roll(x, shift=None, axis=None, *, shifts=None, dims=None):
    x = val(x, "roll")
    shift = shifts if shift is None else shift
    axis = dims if axis is None else axis
    if shift is None:
        raise TypeError("roll: missing the shift")
    if axis is None:
        return reshape(roll(reshape(x, (-1,)), shift, 0), x.shape)
    try:
        pairs = np.broadcast(np.asarray(shift), np.asarray(axis))
    except ValueError:
        raise ValueError(f"roll: shift {shift!r} and axis {axis!r} do not broadcast") from None
    total = {}
    for s, a in pairs:
        a = one_axis(x.ndim, int(a), "roll")
        total[a] = total.get(a, 0) + int(s)
    for a, s in total.items():
        n = x.shape[a]
        if n == 0 or s % n == 0:
            continue
        s %= n
        x = concatenate([x[along(x.ndim, a, slice(n - s, None))], x[along(x.ndim, a, slice(0, n - s))]], a)
    return x


FLIP = defop("flip", "composite", ref=lambda a, axis=None: np.flip(a, axis),
             cases=[Case((4,)), Case((2, 3), axis=0), Case((2, 3, 2), axis=(0, -1)), Case(()),
                    Case(("T", (3, 2)), axis=1), Case((0, 2), axis=1)],
             doc="flip(x, axis=None): reverse the order along axis (all axes by default); "
                 "torch's dims= accepted.")


@FLIP
def flip(x, axis=None, *, dims=None):
    x = val(x, "flip")
    axes = C.normalize_axes(x.ndim, axis if dims is None else dims, "flip")
    return x[tuple(slice(None, None, -1) if d in axes else slice(None) for d in range(x.ndim))]


FLIPUD = defop("flipud", "composite", ref=np.flipud, cases=[Case((3,)), Case((3, 2))],
               doc="flipud(x) = flip(x, 0).")
FLIPLR = defop("fliplr", "composite", ref=np.fliplr, cases=[Case((2, 3)), Case((2, 3, 2))],
               doc="fliplr(x) = flip(x, 1).")


@FLIPUD
def flipud(x):
    x = val(x, "flipud")
    if x.ndim < 1:
        raise ValueError("flipud: needs at least 1 dimension, got a 0-d tensor")
    return flip(x, 0)


@FLIPLR
def fliplr(x):
    x = val(x, "fliplr")
    if x.ndim < 2:
        raise ValueError(f"fliplr: needs at least 2 dimensions, got shape {x.shape}")
    return flip(x, 1)


ROT90 = defop("rot90", "composite", ref=lambda a, k=1, axes=(0, 1): np.rot90(a, k, axes),
              cases=[Case((2, 3)), Case((2, 3), k=2), Case((2, 3), k=-1), Case((2, 3, 4), k=3, axes=(2, 0)),
                     Case(("T", (3, 2)), k=5), Case((2, 3), k=4)],
              doc="rot90(x, k=1, axes=(0, 1)): as numpy (torch's dims= accepted).")


@ROT90
def rot90(x, k=1, axes=(0, 1), *, dims=None):
    x = val(x, "rot90")
    axes = tuple(axes if dims is None else dims)
    if len(axes) != 2:
        raise ValueError(f"rot90: axes must be two axes, got {axes!r}")
    if x.ndim < 2:
        raise ValueError(f"rot90: needs at least 2 dimensions, got shape {x.shape}")
    a0, a1 = C.normalize_axes(x.ndim, axes, "rot90", unique=False)
    if a0 == a1:
        raise ValueError(f"rot90: axes {axes!r} must be two different axes")
    k = index(k, "rot90", "k") % 4
    if k == 0:
        return x
    if k == 2:
        return flip(x, (a0, a1))
    perm = list(range(x.ndim))
    perm[a0], perm[a1] = perm[a1], perm[a0]
    if k == 1:
        return transpose(flip(x, a1), tuple(perm))
    return flip(transpose(x, tuple(perm)), a1)


MOVEAXIS = defop("moveaxis", "composite", ref=lambda a, source, destination: np.moveaxis(a, source, destination),
                 cases=[Case((2, 3, 4), source=0, destination=-1), Case((2, 3, 4), source=(0, 1), destination=(2, 0)),
                        Case(("T", (3, 2)), source=1, destination=0)],
                 doc="moveaxis(x, source, destination): as numpy.")


@MOVEAXIS
def moveaxis(x, source, destination):
    x = val(x, "moveaxis")
    src = C.normalize_axes(x.ndim, source, "moveaxis")
    dst = C.normalize_axes(x.ndim, destination, "moveaxis")
    if len(src) != len(dst):
        raise ValueError(f"moveaxis: source {source!r} and destination {destination!r} must have "
                         "the same number of axes")
    order = [d for d in range(x.ndim) if d not in src]
    for d, s in sorted(zip(dst, src)):
        order.insert(d, s)
    return transpose(x, tuple(order))


# ---- at least n dims, stacking

def _atleast(x, n, who):
    x = val(x, who)
    if x.ndim >= n:
        return x
    if n == 1 or x.ndim == 0:
        return reshape(x, (1,) * n)
    if n == 2:
        return reshape(x, (1,) + tuple(x.shape))
    return reshape(x, (1,) + tuple(x.shape) + (1,) if x.ndim == 1 else tuple(x.shape) + (1,))


def _atleast_op(n):
    def fn(*xs) -> Any:   # a tensor, or a tuple of them for several arguments (numpy)
        r = tuple(_atleast(x, n, f"atleast_{n}d") for x in xs)
        return r[0] if len(r) == 1 else r
    fn.__name__ = fn.__qualname__ = f"atleast_{n}d"   # (a module-level name: the docs resolve it)
    return fn


_AT_CASES = [Case(()), Case((3,)), Case((2, 3)), Case((2, 3, 2)), Case((0,))]
ATLEAST_1D = defop("atleast_1d", "composite", ref=np.atleast_1d, cases=_AT_CASES, method=False,
                   doc="atleast_1d(*xs): as numpy (one input: a tensor; several: a tuple).")
ATLEAST_2D = defop("atleast_2d", "composite", ref=np.atleast_2d, cases=_AT_CASES, method=False,
                   doc="atleast_2d(*xs): as numpy; (n,) becomes (1, n).")
ATLEAST_3D = defop("atleast_3d", "composite", ref=np.atleast_3d, cases=_AT_CASES, method=False,
                   doc="atleast_3d(*xs): as numpy; (n,) becomes (1, n, 1), (m, n) (m, n, 1).")
atleast_1d = ATLEAST_1D(_atleast_op(1))
atleast_2d = ATLEAST_2D(_atleast_op(2))
atleast_3d = ATLEAST_3D(_atleast_op(3))


def _seq(tensors, who):
    ts = list(tensors)
    if not ts:
        raise ValueError(f"{who}: needs at least one tensor")
    return ts


VSTACK = defop("vstack", "composite", ref=lambda *a: np.vstack(a), seq=True, method=False,
               cases=[Case((3,), (3,)), Case((2, 3), (1, 3)), Case((), ()), Case(("T", (3, 2)), (2, 2))],
               doc="vstack(tensors): concatenate along axis 0 after atleast_2d.")
HSTACK = defop("hstack", "composite", ref=lambda *a: np.hstack(a), seq=True, method=False,
               cases=[Case((3,), (2,)), Case((2, 3), (2, 1)), Case((), ()), Case(("T", (3, 2)), (3, 1))],
               doc="hstack(tensors): concatenate along axis 1 (axis 0 for 1-D) after atleast_1d.")
COLUMN_STACK = defop("column_stack", "composite", ref=lambda *a: np.column_stack(a), seq=True, method=False,
                     cases=[Case((3,), (3,)), Case((3,), (3, 2)), Case(("T", (3, 2)), (3,))],
                     doc="column_stack(tensors): 1-D tensors as columns, then concatenate along axis 1.")


@VSTACK
def vstack(tensors):
    return concatenate([_atleast(t, 2, "vstack") for t in _seq(tensors, "vstack")], 0)


@HSTACK
def hstack(tensors):
    ts = [_atleast(t, 1, "hstack") for t in _seq(tensors, "hstack")]
    return concatenate(ts, 0 if ts[0].ndim == 1 else 1)


@COLUMN_STACK
def column_stack(tensors):
    ts = []
    for t in _seq(tensors, "column_stack"):
        t = val(t, "column_stack")
        ts.append(reshape(t, (-1, 1)) if t.ndim < 2 else t)
    return concatenate(ts, 1)


# ---- split (lists of tensors: functions beside the table)

def _split(x, indices_or_sections, axis, who, equal):
    x = val(x, who)
    if x.ndim == 0:
        raise C.ShapeError(f"{who}: cannot split a 0-d tensor")
    ax = one_axis(x.ndim, axis, who)
    n = x.shape[ax]
    if isinstance(indices_or_sections, (int, np.integer)) and not isinstance(indices_or_sections, bool):
        k = int(indices_or_sections)
        if k <= 0:
            raise ValueError(f"{who}: the number of sections must be positive, got {k}")
        if equal and n % k:
            raise ValueError(f"{who}: an axis of size {n} does not split into {k} equal sections "
                             "(array_split allows unequal ones)")
        each, extra = divmod(n, k)
        sizes = [each + 1] * extra + [each] * (k - extra)
        bounds = np.concatenate([[0], np.cumsum(sizes)]).tolist()
    else:
        idx = host_ints(indices_or_sections, who, "indices")
        if idx.ndim != 1:
            raise ValueError(f"{who}: indices must be an int or a 1-D sequence, got shape {idx.shape}")
        bounds = [0] + idx.tolist() + [n]
    return [x[along(x.ndim, ax, slice(a, b))] for a, b in itertools.pairwise(bounds)]


def split(x: Any, indices_or_sections: Any, axis: int = 0) -> "list[C.Tensor]":
    """split(x, indices_or_sections, axis=0): a list of tensors, as numpy (an int: that
    many equal sections; a sequence: the split points; torch's split takes sizes)."""
    return _split(x, indices_or_sections, axis, "split", True)


def array_split(x: Any, indices_or_sections: Any, axis: int = 0) -> "list[C.Tensor]":
    """array_split(x, indices_or_sections, axis=0): as split, with unequal sections
    allowed (the first n % k sections get one element more, numpy)."""
    return _split(x, indices_or_sections, axis, "array_split", False)


# ---- pad

_PAD_MODES = ("constant", "edge", "reflect", "symmetric", "wrap")
_PAD_CASES = [Case((3,), pad_width=2), Case((2, 3), pad_width=((1, 0), (2, 1))),
              Case((2, 3), pad_width=(1, 2), constant_values=1.5),
              Case((2, 3), pad_width=1, constant_values=((1.0, 2.0), (3.0, 4.0))),
              Case(("T", (3, 2)), pad_width=((0, 1), (1, 1))), Case((), pad_width=2),
              Case((0, 2), pad_width=((1, 1), (0, 0))), Case((4,), pad_width=0)]
_PAD_CASES += [Case((3,), pad_width=(2, 4), mode=m) for m in _PAD_MODES[1:]]
_PAD_CASES += [Case((2, 3), pad_width=((1, 2), (3, 1)), mode=m) for m in _PAD_MODES[1:]]
_PAD_CASES += [Case(("S", (2, 2)), pad_width=1, mode="reflect"), Case((1, 2), pad_width=2, mode="reflect")]
PAD = defop("pad", "composite", ref=lambda a, pad_width, **kw: np.pad(a, pad_width, **kw), cases=_PAD_CASES,
            method=False,
            doc="pad(x, pad_width, mode='constant', constant_values=0): numpy's pad (modes constant, "
                "edge, reflect, symmetric, wrap; pad_width as numpy, axis 0 first).")


@PAD
def pad(x, pad_width, mode="constant", constant_values=0):
    x = val(x, "pad")
    if mode not in _PAD_MODES:
        raise ValueError(f"pad: mode {mode!r} is not supported; use one of {', '.join(_PAD_MODES)}")
    pw = host_ints(pad_width, "pad", "pad_width")
    try:
        pw = np.broadcast_to(pw, (x.ndim, 2))
    except ValueError:
        raise ValueError(f"pad: pad_width of shape {np.shape(pad_width)} does not fit a tensor of shape "
                         f"{x.shape} (give an int, a pair, or one pair per axis)") from None
    if (pw < 0).any():
        raise ValueError(f"pad: pad_width must be non-negative, got {pw.tolist()}")
    if mode == "constant":
        cv = np.asarray(constant_values)
        try:
            cv = np.broadcast_to(cv, (x.ndim, 2))
        except ValueError:
            raise ValueError(f"pad: constant_values of shape {cv.shape} does not fit a tensor of "
                             f"shape {x.shape}") from None
    for ax in range(x.ndim):
        before, after = int(pw[ax, 0]), int(pw[ax, 1])
        if not before and not after:
            continue
        if mode == "constant":   # NOTE: later axes pad over earlier axes' padding (corners), as numpy
            parts = []
            for w, c in ((before, cv[ax, 0]), (after, cv[ax, 1])):
                sh = tuple(x.shape[:ax]) + (w,) + tuple(x.shape[ax + 1:])
                parts.append(const(np.full(sh, c, dtype=x.dtype), x))
            x = concatenate([parts[0], x, parts[1]], ax)
        else:
            n = x.shape[ax]
            if n == 0:
                raise ValueError(f"pad: cannot extend the empty axis {ax} of shape {x.shape} in "
                                 f"mode {mode!r}")
            # numpy's pad of the positions 0..n-1 says where each padded element comes from
            x = x[along(x.ndim, ax, np.pad(np.arange(n), (before, after), mode=mode))]
    return x


# ---- nonzero, and where with one argument

def nonzero(x: Any) -> "tuple[C.Tensor, ...]":
    """nonzero(x): a tuple of int64 index tensors, one per dimension, of the nonzero
    elements (numpy; not differentiable)."""
    if is_batched(x):
        raise ValueError("cad.vmap: nonzero of a batched value: each example would have its own "
                         "number of nonzeros; use cad.where(c, x, y)")
    x = val(x, "nonzero")
    a = read(x, "nonzero")
    if a.ndim == 0:
        raise ValueError("nonzero: a 0-d tensor has no index (numpy 2); use atleast_1d(x) first")
    return tuple(C.const_on(np.asarray(i, dtype=np.int64), C.dev_of(x)) for i in np.nonzero(a))


_NO = object()


def where_api(fast):
    """cad.where: the engine's where(c, x, y), and numpy's where(c) = nonzero(c)"""
    def where(condition, x=_NO, y=_NO):
        if y is _NO:   # (one Python frame more than the engine's where: ~0.1 us)
            if x is _NO:
                return nonzero(condition)
            raise TypeError("where: give both x and y, or neither (where(c) is nonzero(c))")
        return fast(condition, x, y)
    where.__doc__ = (fast.__doc__ or "") + "\nwhere(c) with one argument is nonzero(c) (numpy)."
    where.__module__, where.__qualname__ = "cad", "where"   # its public home (the docs resolve it)
    where.__cad_fast__ = fast
    return where
