"""Sorting: ``argsort`` (integer indices, computed with numpy on the host, not
differentiable) and the ops composed from it, whose values are gathered from x with
``take_along_axis``, so their derivatives of every order are the gather's."""
import collections
from typing import Any

import numpy as np

from ._registry import Case, defop
from ._values import C, index, is_batched, one_axis, read, val
from .index import gather_along, take_along_axis
from .shape import reshape


def _np_argsort(a, axis=-1, descending=False):
    """numpy's stable argsort; descending keeps tied elements in their order (torch's
    stable=True) and puts NaN first, as torch"""
    a = np.asarray(a)
    if axis is None:
        a, axis = a.reshape(-1), 0
    if not descending or a.ndim == 0:
        return np.argsort(a, axis=axis, kind="stable")
    n = a.shape[axis]
    r = np.argsort(np.flip(a, axis), axis=axis, kind="stable")
    return (n - 1 - np.flip(r, axis)).astype(np.int64)


def _fast_argsort(a, axis=-1, descending=False):
    """_np_argsort's permutation, from numpy's faster unstable sort when no row holds two
    equal values or a NaN (then the sorted order is unique, so it is the stable one;
    numpy's vectorized quicksort took 30 ms where the stable sort took 47 on a
    1000 x 1000 matrix); otherwise the stable sort"""
    a = np.asarray(a)
    if axis is None:
        a, axis = a.reshape(-1), 0
    if a.ndim == 0 or a.shape[axis] < 2 or a.dtype.kind != "f" or a.size <= 256:
        return _np_argsort(a, axis, descending)   # (small: the checks below cost more than they save)
    r = np.argsort(a, axis=axis, kind="quicksort")
    s = np.take_along_axis(a, r, axis)
    lo = (slice(None),) * axis + (slice(1, None),)
    hi = (slice(None),) * axis + (slice(None, -1),)
    if np.isnan(s).any() or (s[lo] == s[hi]).any():
        return _np_argsort(a, axis, descending)
    if descending:
        r = np.flip(r, axis)
    return r.astype(np.int64, copy=False)


def _topk_idx(a, k, axis, largest):
    """the first k of _np_argsort(a, axis, descending=largest), by the C kernel for small
    k (NOTE [ Top k ] in kernels.c), else by the sort"""
    a = np.asarray(a)
    n = a.shape[axis]
    if a.dtype not in (np.float64, np.float32) or k > 64 or (4 * k > n and n > 64):
        r = _fast_argsort(a, axis, largest)
        return r[(slice(None),) * axis + (slice(0, k),)]
    if a.ndim == 1 and a.flags.c_contiguous and a.dtype.isnative:   # (one row: 15 -> 8 µs small)
        return C._topk_rows(a.reshape(1, n), k, bool(largest)).reshape(k)
    m = np.moveaxis(a, axis, -1)
    rows = np.ascontiguousarray(m.reshape(-1, n)).astype(m.dtype.newbyteorder("="), copy=False)
    idx = C._topk_rows(rows, k, bool(largest))
    return np.moveaxis(idx.reshape(m.shape[:-1] + (k,)), -1, axis)


_SORT_CASES = [Case((5,)), Case((2, 4)), Case((3, 2), axis=0), Case(("T", (3, 4)), axis=-1),
               Case((2, 3), axis=None), Case((4,), descending=True), Case((3, 2), axis=0, descending=True),
               Case(("S", (3, 2)), axis=0), Case((0, 3))]
ARGSORT = defop("argsort", "cmp", ref=_np_argsort, differentiable=False,
                cases=_SORT_CASES + [Case(("V", np.array([2.0, 1.0, 2.0, 0.5, 1.0]))),
                                     Case(("I", np.array([3, 1, 3, 2, 1])), descending=True),
                                     Case(("V", np.array([1.0, np.nan, 0.0, np.nan])), descending=True)],
                doc="argsort(x, axis=-1, *, descending=False, stable=None): indices that sort x "
                    "(a stable sort: ties keep their order, also descending); NaN sorts last, "
                    "first when descending.")
SORT = defop("sort", "composite", ref=lambda a, axis=-1, descending=False: np.take_along_axis(
                 a.reshape(-1) if axis is None else a, _np_argsort(a, axis, descending),
                 0 if axis is None else axis),
             cases=_SORT_CASES, method=False,
             doc="sort(x, axis=-1, *, descending=False, stable=None): the sorted values "
                 "(numpy; torch.sort also returns the indices: see topk and argsort); "
                 "differentiable, each value's gradient goes to the element it came from.")


def _sort_axis(x, axis, dim, who):
    ax = axis if dim is None else dim
    if ax is None:
        return ax
    if x.ndim == 0:
        raise C.ShapeError(f"{who}: axis {ax} is out of bounds for a 0-d tensor (pass axis=None)")
    return one_axis(x.ndim, ax, who)


def _check_kind(kind, order, who):
    if order is not None:
        raise TypeError(f"{who}: order= (structured arrays) is not supported")
    if kind not in (None, "quicksort", "mergesort", "heapsort", "stable"):
        raise ValueError(f"{who}: unknown sort kind {kind!r}")


@ARGSORT
def argsort(x, axis=-1, kind=None, order=None, *, stable=None, descending=False, dim=None):
    # NOTE: every kind is the stable sort (numpy's kind="stable"), so ties come out in
    # one order whatever kind= and stable= say, on every device
    _check_kind(kind, order, "argsort")
    if is_batched(x):
        raise TypeError("cad.vmap: argsort reached a batched value without its rule")
    x = val(x, "argsort")
    ax = _sort_axis(x, axis, dim, "argsort")
    r = _fast_argsort(read(x, "argsort"), ax, bool(descending))
    return C.const_on(np.asarray(r, dtype=np.int64), C.dev_of(x))


@SORT
def sort(x, axis=-1, kind=None, order=None, *, stable=None, descending=False, dim=None):
    _check_kind(kind, order, "sort")
    x = val(x, "sort")
    ax = _sort_axis(x, axis, dim, "sort")
    if ax is None:
        x, ax = reshape(x, (-1,)), 0
    if is_batched(x):
        return take_along_axis(x, argsort(x, ax, descending=descending), ax)
    r = _fast_argsort(read(x, "sort"), ax, bool(descending))
    return gather_along(x, np.asarray(r, dtype=np.int64), ax)


TopK = collections.namedtuple("topk", ["values", "indices"])   # torch.return_types.topk


def topk(x: Any, k: int, dim: int = -1, largest: bool = True, sorted: bool = True, *,
         axis: Any = None) -> "TopK":
    """topk(x, k, dim=-1, largest=True, sorted=True) -> (values, indices), as torch: the k
    largest (smallest) elements along dim, in order (always sorted; ties: the first
    one first); the values are differentiable."""
    x = val(x, "topk")
    if x.ndim == 0:
        raise C.ShapeError("topk: needs a tensor with at least one dimension, got a 0-d tensor")
    ax = one_axis(x.ndim, dim if axis is None else axis, "topk")
    k = index(k, "topk", "k")
    if not 0 <= k <= x.shape[ax]:
        raise ValueError(f"topk: k={k} is out of range for dim {ax} of size {x.shape[ax]} "
                         f"(shape {x.shape})")
    if is_batched(x):
        idx = argsort(x, ax, descending=largest)[(slice(None),) * ax + (slice(0, k),)]
    else:
        ix = np.asarray(_topk_idx(read(x, "topk"), k, ax, largest), dtype=np.int64)
        return TopK(gather_along(x, ix, ax), C.const_on(ix, C.dev_of(x)))
    return TopK(take_along_axis(x, idx, ax), idx)
