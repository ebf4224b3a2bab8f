"""Tensor constructors (numpy's dtype rules: Python floats give float64)."""
import numpy as np

from ._core import _engine as _C

_rng = np.random.default_rng()


def tensor(data, dtype=None, requires_grad=False, device=None):
    """A new tensor holding a copy of data (a scalar, nested lists, an ndarray or a
    tensor).  A list containing tensors is stacked, so gradients flow through it."""
    if device is not None:
        _C._check_device_py(device, "tensor")
    if isinstance(data, _C.Tensor):
        t = data.detach()
        if dtype is not None:
            t = _C.cast(t, dtype)
        return t.requires_grad_(True) if requires_grad else t
    if isinstance(data, (list, tuple)) and any(isinstance(e, _C.Tensor) for e in data):
        t = _C.as_tensor([tensor(e) if not isinstance(e, _C.Tensor) else e for e in data])
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


def _make(arr, dtype, requires_grad):
    return _C.from_numpy(arr, dtype, bool(requires_grad), copy=False)


def zeros(*shape, dtype=None, requires_grad=False):
    return _make(np.zeros(_shape(shape)), dtype, requires_grad)


def ones(*shape, dtype=None, requires_grad=False):
    return _make(np.ones(_shape(shape)), dtype, requires_grad)


def full(shape, fill_value, dtype=None, requires_grad=False):
    if isinstance(shape, int):
        shape = (shape,)
    return _make(np.full(tuple(shape), fill_value), dtype, requires_grad)


def eye(n, m=None, dtype=None, requires_grad=False):
    return _make(np.eye(n, m), dtype, requires_grad)


def arange(start, stop=None, step=1, dtype=None, requires_grad=False):
    """numpy's arange (integers give int64)"""
    a = np.arange(start, stop, step) if stop is not None else np.arange(start)
    return _make(a, dtype, requires_grad)


def linspace(start, stop, num=50, endpoint=True, dtype=None, requires_grad=False):
    return _make(np.linspace(start, stop, num, endpoint=endpoint), dtype, requires_grad)


def _like(x, fill, dtype, requires_grad):
    x = _C.as_tensor(x)
    return _make(np.full(x.shape, fill, dtype=dtype if dtype is not None else x.dtype), None,
                 requires_grad)


def zeros_like(x, dtype=None, requires_grad=False):
    return _like(x, 0, dtype, requires_grad)


def ones_like(x, dtype=None, requires_grad=False):
    return _like(x, 1, dtype, requires_grad)


def full_like(x, fill_value, dtype=None, requires_grad=False):
    return _like(x, fill_value, dtype, requires_grad)


def manual_seed(seed):
    """Seed cad's random generator (numpy's PCG64)."""
    global _rng
    _rng = np.random.default_rng(seed)


def randn(*shape, dtype=None, requires_grad=False):
    """Standard normal samples (float64 unless dtype says otherwise)."""
    return _make(_rng.standard_normal(_shape(shape)), dtype, requires_grad)


def rand(*shape, dtype=None, requires_grad=False):
    """Uniform samples in [0, 1)."""
    return _make(_rng.random(_shape(shape)), dtype, requires_grad)
