"""Tensor constructors (numpy's dtype rules: Python floats give float64)."""
from __future__ import annotations

from typing import Any, Callable, Optional, Sequence, TypeVar, Union

import numpy as np

from ._core import _engine as _C
from .ops import REGISTRY
from .ops._batch import Batched
from .ops._batch import top as _vmap_top

_rng = np.random.default_rng()


_F = TypeVar("_F", bound=Callable[..., Any])


def _named_result(like: bool = False) -> Callable[[_F], _F]:
    """a constructor's names= argument: the result's dim names (cad/names.py); the
    *_like constructors keep x's names unless names= is given"""
    def deco(fn: _F) -> _F:
        import functools

        @functools.wraps(fn)
        def make(*args, **kwargs):
            names = kwargs.get("names")
            if names is None and not like and not (args and type(args[0]) is _C.Tensor and
                                                   _C._raw_names(args[0]) is not None):
                return fn(*args, **kwargs)   # (cad.tensor of a named tensor keeps its names)
            t = fn(*args, **kwargs)
            from . import names as N
            if names is None:   # *_like (and cad.tensor of a tensor): x's names
                x = args[0] if args else kwargs.get("x")
                n = N.raw(x) if type(x) is _C.Tensor else None
                return N.put(t, n) if n is not None and len(n) == t.ndim else t
            n = N.check(names, t.ndim, fn.__name__)
            if n is not None:
                N._on()
            return N.put(t, n, args)
        return make  # type: ignore[return-value]
    return deco


def _place(t, device, requires_grad):
    """t (made on the CPU, a leaf) on device, then requiring grad if asked"""
    if device is not None and _C._check_device_py(device, "tensor"):
        t = t.to("cuda")
    return t.requires_grad_(True) if requires_grad else t


def _has_tensor(data):
    """does a (nested) list or tuple hold a tensor?"""
    if isinstance(data, (list, tuple)):
        return any(isinstance(e, (_C.Tensor, Batched)) or _has_tensor(e) for e in data)
    return False


def _has_batched(data):
    if isinstance(data, (list, tuple)):
        return any(type(e) is Batched or _has_batched(e) for e in data)
    return False


def _tracked(t):
    return t.requires_grad and (_C.is_grad_enabled() or _C.is_recording())


@_named_result(like=False)
def tensor(data: Any, dtype: Any = None, requires_grad: bool = False,
           device: Union[str, _C.Device, None] = None,
        names: Any = None) -> _C.Tensor:
    """A new tensor holding a copy of data (a scalar, nested lists, an ndarray or a
    tensor) on device (default: the CPU, or data's device for a tensor).  A (nested)
    list containing tensors is stacked, so gradients flow through it; so does a
    tensor that requires grad (as jnp.array: cad.tensor(x) stays on x's tape; pass
    requires_grad=True, or call .detach(), for a new leaf)."""
    if type(data) is Batched:   # inside cad.vmap: the value itself (as jnp.array)
        return data if dtype is None else data.astype(dtype)
    if not isinstance(data, (_C.Tensor, np.ndarray, list, tuple)) and \
            hasattr(data, "__cuda_array_interface__"):   # CuPy, pycuda, numba: device to device
        return tensor(_C.dev_copy(_C.from_cai(data, "tensor")), dtype, requires_grad, device)
    if _has_tensor(data) and _has_batched(data):
        t = REGISTRY["stack"].api([e if isinstance(e, (_C.Tensor, Batched)) else tensor(e) for e in data])
        return t if dtype is None else t.astype(dtype)
    if device is not None and not isinstance(data, _C.Tensor) and not _has_tensor(data):
        return _place(tensor(data, dtype), device, requires_grad)
    if isinstance(data, _C.Tensor) and device is not None:
        return _place(tensor(data, dtype).to("cpu" if not _C._check_device_py(device, "tensor") else "cuda").detach(),
                      None, requires_grad)
    if isinstance(data, _C.Tensor):
        if _tracked(data) and not requires_grad:
            t = data.reshape(data.shape)   # a node of data's tape (the value is not copied:
            if t is data:                  # tensors are immutable; in-place ops rebind)
                t = data * 1.0 if data.dtype.kind == "f" else data.detach()
        else:
            t = data.detach()
        if dtype is not None:
            t = _C.cast(t, dtype)
        return t.requires_grad_(True) if requires_grad else t
    if _has_tensor(data):
        t = _C.as_tensor([e if isinstance(e, _C.Tensor) else tensor(e) for e in data])
        if dtype is not None:
            t = _C.cast(t, dtype)
        if requires_grad:
            raise _C.BackwardError("tensor: a tensor stacked from other tensors is not a leaf; "
                                   "requires_grad=True applies to leaves")
        return t
    return _C.from_numpy(data, dtype, bool(requires_grad))


def _shape(shape):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        return tuple(shape[0])
    return tuple(shape)


def _make(arr, dtype, requires_grad, device=None):
    if device is not None:
        return _place(_C.from_numpy(arr, dtype, False, copy=False), device, requires_grad)
    return _C.from_numpy(arr, dtype, bool(requires_grad), copy=False)


def _filled(shape, value, dtype, requires_grad, device):
    """a constant tensor; on the GPU made there (no host array)"""
    if device is not None and _C._check_device_py(device, "tensor"):
        t = _C.device_full(tuple(int(s) for s in shape), np.dtype(dtype or np.float64), value)
        return t.requires_grad_(True) if requires_grad else t
    return _make(np.full(tuple(shape), value, dtype=dtype or np.float64), None, requires_grad)


@_named_result(like=False)
def zeros(*shape: Union[int, Sequence[int]], dtype: Any = None, requires_grad: bool = False,
          device: Union[str, _C.Device, None] = None,
        names: Any = None) -> _C.Tensor:
    return _filled(_shape(shape), 0, dtype, requires_grad, device)


@_named_result(like=False)
def ones(*shape: Union[int, Sequence[int]], dtype: Any = None, requires_grad: bool = False,
         device: Union[str, _C.Device, None] = None,
        names: Any = None) -> _C.Tensor:
    return _filled(_shape(shape), 1, dtype, requires_grad, device)


@_named_result(like=False)
def full(shape: Union[int, Sequence[int]], fill_value: Any, dtype: Any = None,
         requires_grad: bool = False, device: Union[str, _C.Device, None] = None,
        names: Any = None) -> _C.Tensor:
    if isinstance(shape, int):
        shape = (shape,)
    if dtype is None:
        dtype = np.asarray(fill_value).dtype
        dtype = np.float64 if dtype.kind == "f" else (np.int64 if dtype.kind in "iu" else dtype)
    return _filled(tuple(shape), fill_value, dtype, requires_grad, device)


@_named_result(like=False)
def eye(n: int, m: Optional[int] = None, dtype: Any = None, requires_grad: bool = False,
        device: Union[str, _C.Device, None] = None,
        names: Any = None) -> _C.Tensor:
    return _make(np.eye(n, m), dtype, requires_grad, device)


@_named_result(like=False)
def arange(start: float, stop: Optional[float] = None, step: float = 1, dtype: Any = None,
           requires_grad: bool = False, device: Union[str, _C.Device, None] = None,
        names: Any = None) -> _C.Tensor:
    """numpy's arange (integers give int64)"""
    if step == 0:
        raise ValueError("arange: step must not be zero")
    for name, v in (("start", start), ("stop", stop), ("step", step)):
        if v is not None and not isinstance(v, (int, float, np.integer, np.floating)):
            raise TypeError(f"arange: {name} must be a number, got {type(v).__name__} {v!r:.40}")
    a = np.arange(start, stop, step) if stop is not None else np.arange(start)
    return _make(a, dtype, requires_grad, device)


@_named_result(like=False)
def linspace(start: Any, stop: Any, num: int = 50, endpoint: bool = True, dtype: Any = None,
             requires_grad: bool = False, device: Union[str, _C.Device, None] = None,
        names: Any = None) -> _C.Tensor:
    """numpy's linspace; differentiable in start and stop when either is a tensor
    (tensor endpoints of any shape: the result is (num,) + their broadcast shape)"""
    if isinstance(start, (_C.Tensor, Batched)) or isinstance(stop, (_C.Tensor, Batched)):
        return _linspace_t(start, stop, num, endpoint, dtype, requires_grad, device)
    return _make(np.linspace(start, stop, num, endpoint=endpoint), dtype, requires_grad, device)


def _linspace_t(start, stop, num, endpoint, dtype, requires_grad, device):
    """start + arange(num) * step, as numpy computes it, with tensor endpoints"""
    import operator
    api = lambda name: REGISTRY[name].api  # noqa: E731
    if requires_grad:
        raise TypeError("linspace: requires_grad=True with tensor endpoints (the result is not a "
                        "leaf; it is differentiable in them already)")
    num = operator.index(num)
    if num < 0:
        raise ValueError(f"linspace: num must be non-negative, got {num}")
    ends = [e for e in (start, stop) if isinstance(e, (_C.Tensor, Batched))]
    on = 1 if any(e.is_cuda for e in ends) else 0
    dt = np.float32 if all(e.dtype == np.float32 for e in ends) else np.float64
    start = start if isinstance(start, (_C.Tensor, Batched)) else float(start)
    stop = stop if isinstance(stop, (_C.Tensor, Batched)) else float(stop)
    delta = stop - start
    if delta.dtype.kind != "f":
        delta = api("astype")(delta, dt)
    shape = tuple(delta.shape)
    div = num - 1 if endpoint else num
    t = _C.const_on(np.arange(num, dtype=dt).reshape((num,) + (1,) * len(shape)), on)
    # NOTE: numpy's order of operations (arange * step + start), so the values agree
    y = t * (delta / div) + start if div > 0 else t * delta + start
    if endpoint and num > 1:   # the last point is stop exactly (numpy)
        last = api("reshape")(api("broadcast_to")(stop + 0 * delta, shape), (1,) + shape)
        y = api("concatenate")([y[:num - 1], last], 0)
    if dtype is not None:
        y = api("astype")(y, dtype)
    return y.to("cuda") if device is not None and _C._check_device_py(device, "linspace") else y


def _like(x, fill, dtype, requires_grad, device=None):
    if type(x) is not Batched:   # a batched x: its example's shape (not batched, as JAX)
        x = _C.as_tensor(x)
    dev = device if device is not None else ("cuda" if x.is_cuda else None)
    return _filled(x.shape, fill, dtype if dtype is not None else x.dtype, requires_grad, dev)


@_named_result(like=True)
def zeros_like(x: Any, dtype: Any = None, requires_grad: bool = False,
               device: Union[str, _C.Device, None] = None,
        names: Any = None) -> _C.Tensor:
    return _like(x, 0, dtype, requires_grad, device)


@_named_result(like=True)
def ones_like(x: Any, dtype: Any = None, requires_grad: bool = False,
              device: Union[str, _C.Device, None] = None,
        names: Any = None) -> _C.Tensor:
    return _like(x, 1, dtype, requires_grad, device)


@_named_result(like=True)
def full_like(x: Any, fill_value: Any, dtype: Any = None, requires_grad: bool = False,
              device: Union[str, _C.Device, None] = None,
        names: Any = None) -> _C.Tensor:
    return _like(x, fill_value, dtype, requires_grad, device)


def manual_seed(seed: Any) -> None:
    """Seed cad's random generator (numpy's PCG64)."""
    global _rng
    _rng = np.random.default_rng(seed)


@_named_result(like=False)
def randn(*shape: Union[int, Sequence[int]], dtype: Any = None, requires_grad: bool = False,
          device: Union[str, _C.Device, None] = None,
        names: Any = None) -> _C.Tensor:
    """Standard normal samples (float64 unless dtype says otherwise; drawn on the
    host, so a seed gives the same values on every device)."""
    if _vmap_top() is not None:
        r = _in_vmap(lambda s: _make(_rng.standard_normal(s), dtype, requires_grad, device), shape)
        if r is not None:
            return r
    return _make(_rng.standard_normal(_shape(shape)), dtype, requires_grad, device)


@_named_result(like=False)
def rand(*shape: Union[int, Sequence[int]], dtype: Any = None, requires_grad: bool = False,
         device: Union[str, _C.Device, None] = None,
        names: Any = None) -> _C.Tensor:
    """Uniform samples in [0, 1)."""
    if _vmap_top() is not None:
        r = _in_vmap(lambda s: _make(_rng.random(s), dtype, requires_grad, device), shape)
        if r is not None:
            return r
    return _make(_rng.random(_shape(shape)), dtype, requires_grad, device)


def _in_vmap(draw, shape):
    """a draw inside cad.vmap (its randomness= says how; None: one plain draw)"""
    from .vmap import random_draw
    return random_draw(draw, _shape(shape))
