"""Interop with numpy, PyTorch, JAX, CuPy and anything that speaks DLPack or the
CUDA array interface.

NOTE [ Interop ]
- numpy ufuncs on tensors (``np_array + t``, ``np.exp(t)``, ``np.divide(a, t)``) run
  the op-table line whose ``ufunc`` names them (Tensor.__array_ufunc__), so the
  result is a tensor on the tape.
- numpy functions on tensors (``np.sum(t)``, ``np.where(c, t, 0)``,
  ``np.concatenate([t, a])``, ``np.linalg.solve(A, t)``) run cad's function of the
  same name (``cad.X``, ``cad.linalg.X``) through Tensor.__array_function__.  A
  numpy function that cad lacks runs on the values (a numpy result) when no
  argument is tracked, and raises TypeError naming it when one is: it would drop
  the gradient without a word.  Functions that only read values (``np.allclose``,
  ``np.shape``, ``np.array_equal``, ...) always run on the values.
- ``np.asarray(t)``: a CPU tensor's own memory, read-only, no copy.
- DLPack: ``t.__dlpack__()`` hands out a CPU tensor's memory through numpy
  (read-only flag for DLPack 1.0 consumers; an older consumer gets a copy) and a
  CUDA tensor's as a "dltensor" capsule (the device array stays alive until the
  consumer's deleter runs).  ``cad.from_dlpack(x)`` takes any producer (numpy,
  PyTorch, JAX, CuPy): host memory without a copy, CUDA memory without a copy
  through ``__cuda_array_interface__`` or the capsule.  cad tensors are immutable,
  so a producer that writes its array afterwards changes the tensor (as with
  torch.from_dlpack); pass ``copy=True`` to own the memory.  Dtypes cad does not
  hold (int32, float16, ...) are converted, which copies.
- CUDA tensors expose ``__cuda_array_interface__`` (version 3); ``cad.tensor(x,
  device="cuda")`` copies any object that has one device to device.
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np

from ._core import _engine as _C

__all__ = ["from_dlpack"]

# numpy functions that read values and give no differentiable result
_VALUE_ONLY = {
    "allclose", "isclose", "array_equal", "array_equiv", "shape", "ndim", "size", "result_type",
    "can_cast", "iscomplexobj", "isrealobj", "iscomplex", "isreal", "count_nonzero",
    "array_repr", "array_str", "array2string", "may_share_memory", "shares_memory", "save",
    "savez", "savez_compressed", "savetxt", "histogram", "histogram_bin_edges", "bincount",
    "unique", "searchsorted", "digitize", "isneginf", "isposinf", "copyto", "min_scalar_type",
    "common_type", "iterable", "isscalar", "flatnonzero", "argwhere", "nanargmax",
    "nanargmin", "ravel_multi_index", "unravel_index",
}
_NOT_CAD = {"save", "load", "tensor", "array", "asarray"}   # same name, another meaning
_CACHE = {}


def _cad_function(func):
    """cad's function for numpy function func, or None"""
    try:
        return _CACHE[func]
    except (KeyError, TypeError):
        pass
    import cad
    mod = getattr(func, "__module__", None) or ""
    name = getattr(func, "__name__", "")
    fn = None
    if name not in _NOT_CAD and name not in _VALUE_ONLY:
        if mod == "numpy":
            fn = getattr(cad, name, None) if name in cad.__all__ else None
        elif mod == "numpy.linalg":
            fn = getattr(cad.linalg, name, None) if name in cad.linalg.__all__ else None
        if fn is not None and not callable(fn):
            fn = None
    try:
        _CACHE[func] = fn
    except TypeError:
        pass
    return fn


def _walk(x, fn):
    if isinstance(x, (list, tuple)):
        return type(x)(_walk(e, fn) for e in x)
    return fn(x)


def _tracked(x):
    found = []

    def look(e):
        if isinstance(e, _C.Tensor) and e.requires_grad:
            found.append(e)
        return e
    _walk(x, look)
    return bool(found) and (_C.is_grad_enabled() or _C.is_recording())


def _np_name(func):
    mod = getattr(func, "__module__", None) or "numpy"
    return f"{mod}.{getattr(func, '__name__', func)}"


def array_function(func, types, args, kwargs):
    """Tensor.__array_function__ (NOTE [ Interop ])"""
    from .ops._batch import Batched
    for t in types:
        if not issubclass(t, (_C.Tensor, np.ndarray, Batched)):
            return NotImplemented
    fn = _cad_function(func)
    if fn is not None:
        kwargs = dict(kwargs)
        if kwargs.pop("out", None) is not None:
            raise TypeError(f"{_np_name(func)}: out= cannot be a cad tensor's destination (tensors "
                            f"are immutable); use the result, cad.{func.__name__}(...)")
        if "dtype" in kwargs and kwargs["dtype"] is None:
            del kwargs["dtype"]
        return fn(*args, **kwargs)
    name = getattr(func, "__name__", "")
    if name in ("shape", "ndim", "size") and args and isinstance(args[0], (_C.Tensor, Batched)):
        x = args[0]   # read without the value (a batched value has no single one)
        axis = args[1] if len(args) > 1 else kwargs.get("axis")
        if name == "size" and axis is not None:
            return x.shape[axis]
        return getattr(x, name)
    if name not in _VALUE_ONLY and (_tracked(args) or _tracked(list(kwargs.values()))):
        raise TypeError(f"{_np_name(func)}: cad has no {name}, and running it on the values of a "
                        f"tensor that requires grad would drop the gradient; use cad's ops, or "
                        f"pass t.detach() to compute on the values")

    def plain(e):
        if isinstance(e, Batched):
            raise TypeError(f"{_np_name(func)} inside cad.vmap: cad has no {name}; write it with "
                            f"cad's ops")
        return np.asarray(e) if isinstance(e, _C.Tensor) else e
    args = _walk(args, plain)
    kwargs = {k: _walk(v, plain) for k, v in kwargs.items()}
    return func(*args, **kwargs)


_C.set_array_function(array_function)


def _dl_device(x):
    if hasattr(x, "__dlpack_device__"):
        return int(x.__dlpack_device__()[0])
    if hasattr(x, "__cuda_array_interface__"):
        return 2
    if hasattr(x, "__dlpack__"):
        return 1
    raise TypeError(f"from_dlpack: a {type(x).__name__} has neither __dlpack__ nor "
                    f"__cuda_array_interface__")


def from_dlpack(x: Any, *, device: Any = None, copy: Optional[bool] = None) -> _C.Tensor:
    """A tensor over x's memory, without a copy where the layout and dtype allow
    (the array API's from_dlpack): x is any DLPack producer (numpy, PyTorch, JAX,
    CuPy arrays) or an object with ``__cuda_array_interface__`` (pycuda, numba).
    ``copy=True`` always copies; ``copy=False`` raises where a copy is needed;
    ``device="cpu"``/``"cuda"`` moves the result.  NOTE [ Interop ]."""
    if isinstance(x, _C.Tensor):
        t = x
    else:
        kind = _dl_device(x)
        if kind in (2, 13):   # kDLCUDA, kDLCUDAManaged
            if hasattr(x, "__cuda_array_interface__"):
                t = _C.from_cai(x, "from_dlpack")
            else:
                t = _C.from_dlpack_capsule(x.__dlpack__(stream=1), "from_dlpack")
            if copy:
                t = _C.dev_copy(t)
        elif kind in (1, 3):  # kDLCPU, kDLCUDAHost (host memory)
            a = np.from_dlpack(x)
            if a.dtype.kind not in "fiub":
                raise _C.DTypeError(f"from_dlpack: cannot make a tensor from dtype {a.dtype}")
            native = a.dtype in (np.float64, np.float32, np.int64, np.bool_)
            if copy is False and not native:
                raise BufferError(f"from_dlpack: dtype {a.dtype} is converted to one cad holds, "
                                  f"which copies; copy=False forbids it")
            t = _C.from_numpy(a.copy() if copy else a.view(), None, False, False)
        else:
            raise _C.DeviceError(f"from_dlpack: DLPack device type {kind} (cad takes the CPU, 1, "
                                 f"and CUDA, 2)")
    if device is not None:
        t = t.to(device)
    return t
