"""Helpers for the composite ops of issue 13 (numpy's surface): their bodies call
only public ops, so a batched value (cad.vmap) can run through them unchanged
(NOTE [ Composite bodies ] in _batch.py)."""
import operator

import numpy as np

try:
    from .._core import _engine as C
except ImportError:   # the build reads the op table before the extension exists
    C = None


def is_batched(x):
    return getattr(type(x), "__cad_batched__", False)


def val(x, who, floating=False):
    """x as a tensor (a batched value stays one); floating: integers and bools
    become float64, as numpy's statistics do"""
    if not (is_batched(x) or isinstance(x, C.Tensor)):
        x = C.as_tensor(x)
    if floating and x.dtype.kind != "f":
        from .linalg import astype
        x = astype(x, np.float64)
    return x


def dev(x):
    """the device code of x (0: CPU, 1: CUDA), batched or not"""
    return 1 if x.is_cuda else 0


def const(arr, like):
    """a constant tensor of numpy data on like's device"""
    return C.const_on(np.asarray(arr), dev(like))


def one_axis(ndim, axis, who):
    """one axis (an int) as a non-negative int, checked"""
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"{who}: axis must be an int, got {type(axis).__name__} {axis!r}")
    return C.normalize_axes(ndim, axis, who)[0]


def index(v, who, what):
    try:
        return operator.index(v)
    except TypeError:
        raise TypeError(f"{who}: {what} must be an integer, got {type(v).__name__} {v!r}") from None


def read(x, who="a numpy function"):
    """x's value as a host ndarray, read into Python: inside cad.record it becomes a
    guard (NOTE [ Recording ] in cad/record.py), so a replay on other data raises
    instead of reusing indices computed from the recorded data"""
    from ..record import guard
    x = val(x, who)
    guard(x, who)
    return C.host(x)


def host_ints(v, who, what):
    """integer data (a number, list, array or tensor) as a numpy int64 array"""
    if is_batched(v):
        raise ValueError(f"cad.vmap: {who}'s {what} differ from example to example, so the "
                         "result's shape would too; pass them unbatched")
    a = read(v, who) if isinstance(v, C.Tensor) else np.asarray(v)
    if a.dtype.kind not in "iu" and not (a.dtype.kind == "b" and a.size == 0) and a.size:
        raise TypeError(f"{who}: {what} must be integers, got {a.dtype}")
    return a.astype(np.int64)


def along(ndim, axis, sl):
    """an index that applies sl (a slice or an index array) at axis"""
    return (slice(None),) * axis + (sl,)
