"""Indexing.  Basic indexing (ints, slices, None, Ellipsis) is a ``view``; advanced
indexing (integer arrays, boolean masks) is ``gather`` over flat positions, whose
vjp is a scatter-add (repeated indices accumulate); ``x[idx] = v`` records
``setitem`` and rebinds x to the new value (the tape keeps the old one)."""
import math

import numpy as np

from ._registry import Case, defop

try:
    from .._core import _engine as C
except ImportError:   # the build reads this table before the extension exists
    C = None

GATHER = defop("gather", "gather", kernel="cad_gather_vjp", reads={0: (1,)}, method=False, export=False,
               doc="out.flat[k] = x.flat[lin[k]] (internal; vjp is scatter-add)")
def _np_scatter(g, lin, xsize):
    out = np.zeros(xsize)
    np.add.at(out, np.asarray(lin).reshape(-1), np.asarray(g).reshape(-1))
    return out


SCATTER = defop("scatter", "scatter", kernel="cad_scatter_vjp", reads={0: (1,)}, method=False, export=False,
                ref=_np_scatter,
                cases=[Case((3,), ("I", np.array([0, 2, 0])), xsize=4),
                       Case((2, 2), ("I", np.array([[1, 1], [0, 3]])), xsize=4)],
                doc="adjoint of gather: out[b, lin[k]] += g[b, k] into zeros (internal)")


@SCATTER
def scatter(g, lin, xsize):
    return C.scatter(g, lin, xsize)
SETITEM = defop("setitem", "setitem", kernel="cad_setitem_vjp", reads={0: (2,), 1: (2,)}, method=False, export=False,
                ref=lambda a, v, idx: _np_set(a, idx, v),
                cases=[Case((4,), (), idx=1), Case((4,), (2,), idx=slice(1, 3)),
                       Case((3, 2), (2,), idx=0), Case((3, 2), (), idx=(slice(None), 1)),
                       Case((5,), (2,), idx=np.array([0, 3])), Case((5,), (), idx=np.array([1, 1])),
                       Case((3,), ("C", 2.0), idx=np.array([True, False, True]))],
                doc="functional x[idx] = v (what Tensor.__setitem__ records)")


def _np_set(a, idx, v):
    r = a.copy()
    r[idx] = v
    return r


@SETITEM
def setitem(x, v, idx):
    y = C.as_tensor(x) * 1.0
    y[idx] = v
    return y


_M = np.array([[True, False, True], [False, True, True]])
GETITEM = defop("getitem", "composite", method=False, export=False,
                ref=lambda a, idx: a[idx],
                cases=[Case((4,), idx=1), Case((4,), idx=-1), Case((4,), idx=slice(1, 3)),
                       Case((5,), idx=slice(None, None, -2)), Case((2, 3), idx=(1, slice(None))),
                       Case((2, 3), idx=(Ellipsis, None, 1)), Case((2, 3), idx=np.array([1, 1, 0])),
                       Case((2, 3), idx=_M), Case((2, 3), idx=(slice(None), np.array([2, 0]))),
                       Case((2, 3), idx=(np.array([0, 1]), np.array([2, 2]))),
                       Case(("T", (3, 2)), idx=(slice(0, 2), 1)), Case((2, 3), idx=()),
                       Case((3, 4), idx=(slice(1, None), [0, 0, 3])), Case((0, 3), idx=slice(0, 0))],
                doc="x[idx]: numpy indexing")


@GETITEM
def getitem(x, idx):
    return C.as_tensor(x)[idx]


TAKE_ALONG_AXIS = defop("take_along_axis", "composite",
                        ref=lambda a, indices, axis: np.take_along_axis(a, indices, axis),
                        cases=[Case((2, 3), indices=np.array([[0], [2]]), axis=1),
                               Case((2, 3), indices=np.array([[1, 0, 1]]), axis=0),
                               Case((4,), indices=np.array([3, 3, 0]), axis=0)],
                        doc="take_along_axis(x, indices, axis): as numpy.")


@TAKE_ALONG_AXIS
def take_along_axis(x, indices, axis):
    from ._values import read
    x = C.as_tensor(x)
    idx = read(indices, "take_along_axis") if isinstance(indices, C.Tensor) else np.asarray(indices)
    if idx.dtype.kind not in "iu":
        raise TypeError(f"take_along_axis: indices must be integers, got {idx.dtype}")
    ax = C.normalize_axes(x.ndim, axis, "take_along_axis")[0]
    if idx.ndim != x.ndim:
        raise ValueError(f"take_along_axis: indices of shape {idx.shape} need {x.ndim} dims "
                         f"like x of shape {x.shape}")
    n = x.shape[ax]
    idx = idx.astype(np.int64, copy=False)
    lo, hi = (int(idx.min()), int(idx.max())) if idx.size else (0, -1)
    if lo < -n or hi >= n:
        raise IndexError(f"take_along_axis: index out of range for axis {ax} of size {n}")
    try:
        np.broadcast_shapes(idx.shape, x.shape[:ax] + (idx.shape[ax],) + x.shape[ax + 1:])
    except ValueError:
        raise ValueError(f"take_along_axis: indices of shape {idx.shape} do not broadcast "
                         f"against x of shape {x.shape} outside axis {ax}") from None
    if lo < 0:
        idx = np.where(idx < 0, idx + n, idx)
    return gather_along(x, idx, ax)


def gather_along(x, idx, ax):
    """take_along_axis(x, idx, ax) for int64 indices already checked (in range, no
    negatives, idx's dims broadcasting against x's): sort's and topk's own indices"""
    # the positions in x (C order) of numpy's take_along_axis: idx along ax, each
    # other dim's own index, broadcast as numpy's does (computed, where the template
    # arange(x.size) it indexed cost a pass over all of x: topk's 5 of 1000 per row)
    st, s = [0] * x.ndim, 1
    for d in range(x.ndim - 1, -1, -1):
        st[d] = s
        s *= x.shape[d]
    lin = idx * st[ax] if st[ax] != 1 else idx
    key = (x.shape, ax)
    base = _ALONG_BASE.get(key)
    if base is None:   # the other dims' positions (a broadcast sum, cached for small x)
        base = 0
        for d in range(x.ndim):
            if d != ax and x.shape[d] != 1:
                base = base + (np.arange(x.shape[d], dtype=np.int64) * st[d]).reshape(
                    (-1,) + (1,) * (x.ndim - 1 - d))
        if s <= 4096 and len(_ALONG_BASE) < 256:
            _ALONG_BASE[key] = base
    if isinstance(base, np.ndarray):
        lin = lin + base
    return C.gather(x, np.ascontiguousarray(lin))


_ALONG_BASE = {}   # (x's shape, axis) -> gather_along's positions along the other dims


# ---- differentiable rules (NOTE [ Rules and batch dims ] in _rules.py)

@GATHER.vjp
def _gather_vjp(ctx, g):
    xsize = ctx.aux[1]
    lin = ctx.val(1)
    nbt = g.ndim - lin.ndim
    return [C.reshape(C.scatter(g, lin, xsize, nbt), g.shape[:ctx.nb] + ctx.shape(0)), None]


@GATHER.jvp
def _gather_jvp(ctx, ts):
    return C.gather(ts[0], ctx.val(1), None, ctx.nb + ctx.aux[2])


@SCATTER.vjp
def _scatter_vjp(ctx, g):
    return [C.gather(g, ctx.val(1), None, ctx.nb + ctx.aux[2]), None]


@SCATTER.jvp
def _scatter_jvp(ctx, ts):
    return C.scatter(ts[0], ctx.val(1), ctx.aux[1], ctx.nb + ctx.aux[2])


def _set_masks(ctx):
    """positions of x that survive, and which writes survive (the last of repeats):
    C.set_masks on the CPU (NOTE [ Setitem records in the sweeps ])"""
    lin_t = ctx.val(2)
    xs = tuple(ctx.out_shape)   # x's shape (x may be a constant the tape did not register)
    got = C.set_masks(lin_t, xs)
    if got is not None:
        return got
    lin = C.host(lin_t).reshape(-1)
    keep = np.ones(int(np.prod(xs, dtype=np.int64)), dtype=bool)
    keep[lin] = False
    last = np.zeros(lin.size, dtype=bool)
    _, first_rev = np.unique(lin[::-1], return_index=True)
    last[lin.size - 1 - first_rev] = True
    dev = C.dev_of(lin_t)
    return C.const_on(keep.reshape(xs), dev), C.const_on(last.reshape(lin_t.shape), dev)


@SETITEM.vjp
def _setitem_vjp(ctx, g):
    keep, last = _set_masks(ctx)
    gx = g * keep if ctx.wants(0) else None
    gv = None
    if ctx.wants(1):
        gv = C.gather(g, ctx.val(2), None, ctx.nb) * last
    return [gx, gv, None]


@SETITEM.jvp
def _setitem_jvp(ctx, ts):
    keep, last = _set_masks(ctx)
    tx, tv = ts[0], ts[1]
    xs = tuple(ctx.out_shape)
    r = None
    if tx is not None:
        r = tx * keep
    if tv is not None:
        bsh = tv.shape[:ctx.nb]
        s = C.reshape(C.scatter(tv * last, ctx.val(2), keep.size, ctx.nb), bsh + xs)
        r = s if r is None else r + s
    return r


# ---- eval rules (NOTE [ A primitive's rules ]): one record recomputed from its aux

@GATHER.eval
def _gather_eval(ctx, a):
    return C.gather(a[0], a[1], None, ctx.aux[2])


@SCATTER.eval
def _scatter_eval(ctx, a):
    return C.scatter(a[0], a[1], ctx.aux[1], ctx.aux[2])


@SETITEM.eval
def _setitem_eval(ctx, a):
    x, v, lin = a
    r = C.reshape(x, (-1,)) * 1.0 if x.dtype.kind == "f" else C.reshape(x, (-1,))
    r[np.asarray(lin).reshape(-1)] = C.reshape(v, (-1,))
    return C.reshape(r, x.shape)


# ---- the loader's checks (c: cad.io.RecordCheck; NOTE [ A primitive's rules ])

@GATHER.check
def _check_gather(c):
    c.nargs(2)
    c.naux(3)
    B, xsize, nbd = c.aux
    xsh = c.shs[0]
    c.need(0 <= nbd <= len(xsh), f"{nbd} batch dims of a {len(xsh)}-d input", "aux[2]")
    c.need(B == math.prod(xsh[:nbd]) and B * xsize == math.prod(xsh) and xsize >= 0,
           f"aux {c.aux} does not fit an input of shape {list(xsh)}", "aux")
    lsh = c.const_lin(1, xsize)
    c.out_is(xsh[:nbd] + lsh, c.dts[0])


@SCATTER.check
def _check_scatter(c):
    c.nargs(2)
    c.naux(3)
    B, xsize, nbd = c.aux
    gsh = c.shs[0]
    c.need(c.dts[0] <= 1, "scatters float values", "args[0]")
    c.need(0 <= nbd <= len(gsh) and 0 <= xsize <= c.MAXSIZE, f"aux {c.aux}", "aux")
    c.need(B == math.prod(gsh[:nbd]), f"aux {c.aux} does not fit an input of shape {list(gsh)}", "aux")
    lsh = c.const_lin(1, xsize)
    c.need(gsh[nbd:] == lsh, f"values of shape {list(gsh)} for positions of shape {list(lsh)}", "args[0]")
    c.out_is(gsh[:nbd] + (xsize,), c.dts[0])


@SETITEM.check
def _check_setitem(c):
    c.nargs(3)
    c.naux(0)
    shs, dts = c.shs, c.dts
    c.need(dts[1] == dts[0], f"value dtype {c.DTN[dts[1]]} for a {c.DTN[dts[0]]} target", "args[1]")
    lsh = c.const_lin(2, math.prod(shs[0]))
    c.need(shs[1] == lsh, f"value of shape {list(shs[1])} for positions of shape {list(lsh)}", "args[1]")
    c.out_is(shs[0], dts[0])
