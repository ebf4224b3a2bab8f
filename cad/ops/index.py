"""Indexing.  Basic indexing (ints, slices, None, Ellipsis) is a ``view``; advanced
indexing (integer arrays, boolean masks) is ``gather`` over flat positions, whose
vjp is a scatter-add (repeated indices accumulate); ``x[idx] = v`` records
``setitem`` and rebinds x to the new value (the tape keeps the old one)."""
import numpy as np

from ._registry import Case, defop

try:
    from .._core import _engine as C
except ImportError:   # the build reads this table before the extension exists
    C = None

GATHER = defop("gather", "gather", kernel="cad_gather_vjp", method=False, export=False,
               doc="out.flat[k] = x.flat[lin[k]] (internal; vjp is scatter-add)")
SETITEM = defop("setitem", "setitem", kernel="cad_setitem_vjp", method=False, export=False,
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
    x = C.as_tensor(x)
    idx = np.asarray(indices)
    if idx.dtype.kind not in "iu":
        raise TypeError(f"take_along_axis: indices must be integers, got {idx.dtype}")
    ax = C.normalize_axes(x.ndim, axis, "take_along_axis")[0]
    if idx.ndim != x.ndim:
        raise ValueError(f"take_along_axis: indices of shape {idx.shape} need {x.ndim} dims "
                         f"like x of shape {x.shape}")
    n = x.shape[ax]
    if idx.size and (idx.min() < -n or idx.max() >= n):
        raise IndexError(f"take_along_axis: index out of range for axis {ax} of size {n}")
    tmpl = np.arange(x.size, dtype=np.int64).reshape(x.shape)
    lin = np.take_along_axis(tmpl, idx.astype(np.int64), ax)
    return C.gather(x, lin)
