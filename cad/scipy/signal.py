"""cad.scipy.signal: scipy.signal's convolve, correlate, convolve2d and correlate2d
with exact derivatives.

NOTE [ Direct convolution ]
``convolve(in1, in2, mode)`` is computed directly (no FFT) by composing two cad
ops, so every transform (grad, jvp, vjp, hessian, vmap, backward, CUDA) comes for
free and derivatives of every order in both inputs are exact:
  full[o] = sum_m x[o - m] k[m]      (o over the full output, m over k's shape)
  1. the larger input x (by size; convolution commutes) is flattened and one zero
     is appended (cad.pad); an index array idx (n_out, k.size), built once in numpy
     and cached by shapes, holds for each output o and kernel position m the flat
     index of x[o - m], or the zero slot where o - m falls outside x;
  2. out = x_ext[idx] @ k.ravel(), reshaped: one gather and one matrix-vector product.
Only the outputs the mode keeps are indexed ('same' and 'valid' slice the full
output's index space, scipy's _centered rule).  The cost is n_out * k.size reads
and multiply-adds (a 1000-long signal with a 30-long kernel: 31k; a 64x64 image with
a 5x5 kernel, 'same': 102k), and the index array is n_out * k.size int64s.
convolve2d and correlate2d use the same index array with scipy's boundaries:
'fill' points outside in1 at an appended slot holding fillvalue (a constant, not
differentiated), 'wrap' and 'symm' map the position back into in1 (periodic;
reflected with the edge repeated), so in1's boundary values get their share of
the gradient.  scipy's correlate2d centres 'same' at in2.shape // 2 where
correlate centres at (in2.shape - 1) // 2 (they differ for even kernels), and
cad follows each.
correlate(in1, in2) for real inputs is convolve(in1, flip(in2)) in every mode,
scipy's convention (its 'valid' mode with in2 the larger input gives the reversed
sequence, and so does this).  method='fft' and 'auto' compute directly too (the
values agree with scipy's FFT path to rounding).  Integer and bool inputs, which
have no derivative, are passed to scipy.signal itself (same values and dtype);
complex inputs raise TypeError.
"""
from __future__ import annotations

from typing import Any

import functools

import numpy as np

from .._core import _engine as C

__all__ = ["convolve", "convolve2d", "correlate", "correlate2d"]

_MODES = ("full", "same", "valid")
_METHODS = ("auto", "direct", "fft")


def _cad():
    import cad
    return cad


def _as(x):
    if isinstance(x, C.Tensor) or getattr(x, "__cad_batched__", False):
        return x
    return _cad().tensor(np.asarray(x))


def _region(mode, s1, s2):
    """(start, length) per dim of the outputs kept, in the full output's index space"""
    if mode == "full":
        return tuple(0 for _ in s1), tuple(a + b - 1 for a, b in zip(s1, s2))
    if mode == "same":
        return tuple((b - 1) // 2 for b in s2), tuple(s1)
    return tuple(min(a, b) - 1 for a, b in zip(s1, s2)), tuple(abs(a - b) + 1 for a, b in zip(s1, s2))


@functools.lru_cache(maxsize=64)
def _index(sx, sk, start, length, boundary="fill"):
    """the gather index (n_out, k.size) into x's flat values plus one slot (zero, or
    convolve2d's fillvalue); boundary 'wrap' and 'symm' map a position outside x
    periodically or by reflection (the edge repeated, numpy.pad's 'symmetric')"""
    nd = len(sx)
    nx = int(np.prod(sx, dtype=np.int64))
    flat = np.zeros((1,) * (2 * nd), dtype=np.int64)
    ok = np.ones_like(flat, dtype=bool)
    stride = 1
    for d in reversed(range(nd)):
        pos = (start[d] + np.arange(length[d]))[:, None] - np.arange(sk[d])[None, :]
        if boundary == "wrap":
            pos = pos % sx[d]
        elif boundary == "symm":
            pos = pos % (2 * sx[d])
            pos = np.where(pos >= sx[d], 2 * sx[d] - 1 - pos, pos)
        shape = [1] * (2 * nd)
        shape[d], shape[nd + d] = length[d], sk[d]
        pos = pos.reshape(shape)
        flat = flat + pos * stride
        ok = ok & (pos >= 0) & (pos < sx[d])
        stride *= sx[d]
    idx = np.where(ok, flat, nx)
    idx = np.broadcast_to(idx, tuple(length) + tuple(sk)).reshape(
        int(np.prod(length, dtype=np.int64)), int(np.prod(sk, dtype=np.int64)))
    idx = np.ascontiguousarray(idx)
    idx.flags.writeable = False
    return idx


def _check(who, in1, in2, mode, method):
    if mode not in _MODES:
        raise ValueError(f"cad.scipy.signal.{who}: acceptable mode flags are 'valid', 'same', or "
                         f"'full', got {mode!r}")
    if method not in _METHODS:
        raise ValueError(f"cad.scipy.signal.{who}: acceptable method flags are 'auto', 'direct', "
                         f"or 'fft', got {method!r}")
    s1, s2 = tuple(in1.shape), tuple(in2.shape)
    if len(s1) != len(s2):
        raise ValueError(f"cad.scipy.signal.{who}: in1 and in2 should have the same "
                         f"dimensionality, got shapes {s1} and {s2}")
    for x in (in1, in2):
        if np.dtype(x.dtype).kind == "c":
            raise TypeError(f"cad.scipy.signal.{who}: complex inputs are not supported "
                            f"(dtype {x.dtype})")
    if mode == "valid" and not (all(a >= b for a, b in zip(s1, s2)) or all(b >= a for a, b in zip(s1, s2))):
        raise ValueError(f"cad.scipy.signal.{who}: for 'valid' mode, one must be at least as large "
                         f"as the other in every dimension, got shapes {s1} and {s2}")
    if 0 in s2 or (0 in s1 and mode != "same"):
        raise ValueError(f"cad.scipy.signal.{who}: an empty input in mode {mode!r} (shapes {s1} "
                         f"and {s2}); scipy defines only 'same' with an empty in1")


def _plain_np(x):
    return not isinstance(x, C.Tensor) and not getattr(x, "__cad_batched__", False)


def _conv(who, in1, in2, mode, method, flip, boundary="fill", fillvalue=0):
    raw = (in1, in2)
    in1, in2 = _as(in1), _as(in2)
    _check(who, in1, in2, mode, method)
    dt = np.result_type(np.dtype(in1.dtype), np.dtype(in2.dtype))
    if dt.kind != "f":   # no derivative: scipy's own values and dtype
        import scipy.signal as ss
        fn = getattr(ss, who)
        kw = {} if who in ("convolve", "correlate") else {"boundary": boundary, "fillvalue": fillvalue}
        if all(_plain_np(r) for r in raw):
            return _cad().tensor(fn(np.asarray(raw[0]), np.asarray(raw[1]), mode=mode, **kw))
        a, b = (np.asarray(_as(r).detach().cpu()) for r in raw)
        return _cad().tensor(fn(a, b, mode=mode, **kw), device=in1.device)
    cad = _cad()
    if in1.dtype != dt:
        in1 = cad.astype(in1, dt)
    if in2.dtype != dt:
        in2 = cad.astype(in2, dt)
    if flip and in2.ndim:
        in2 = cad.flip(in2)
    s1, s2 = tuple(in1.shape), tuple(in2.shape)
    if not s1:
        return in1 * in2
    start, length = _region(mode, s1, s2)
    if who == "correlate2d" and mode == "same":   # scipy's correlate2d centres 'same' at s2 // 2
        start = tuple(b // 2 for b in s2)
    if 0 in length:
        return cad.zeros(length, dtype=dt, device=in1.device) + 0 * cad.sum(in1) * cad.sum(in2)
    if boundary == "fill" and fillvalue == 0 or mode == "valid":
        # convolution commutes: gather the larger input
        x, k = (in1, in2) if in1.size >= in2.size else (in2, in1)
        boundary = "fill"
        slot = (0, 1)
    else:   # the boundary extends in1
        x, k = in1, in2
        slot = None
    idx = _index(tuple(x.shape), tuple(k.shape), start, length, boundary)
    xf = cad.reshape(x, (x.size,))
    if slot is not None or boundary != "fill":
        xe = cad.pad(xf, (0, 1))
    else:
        xe = cad.pad(xf, (0, 1), constant_values=fillvalue)
    out = cad.matmul(xe[idx], cad.reshape(k, (k.size,)))
    return cad.reshape(out, length)


def convolve(in1: Any, in2: Any, mode: Any = "full", method: Any = "auto") -> C.Tensor:
    """scipy.signal.convolve: the N-D convolution of in1 and in2 (same ndim), mode
    'full', 'same' (in1's shape, centered) or 'valid'; computed directly for every
    method (NOTE [ Direct convolution ])"""
    return _conv("convolve", in1, in2, mode, method, flip=False)


def correlate(in1: Any, in2: Any, mode: Any = "full", method: Any = "auto") -> C.Tensor:
    """scipy.signal.correlate: the N-D cross-correlation of in1 and in2 (real
    inputs: convolve(in1, flip(in2), mode), scipy's convention in every mode)"""
    return _conv("correlate", in1, in2, mode, method, flip=True)


_BOUNDARIES = {"fill": "fill", "pad": "fill", "wrap": "wrap", "circular": "wrap", "symm": "symm",
               "symmetric": "symm"}


def _check2d(who, in1, in2, boundary, fillvalue):
    if boundary not in _BOUNDARIES:
        raise ValueError(f"cad.scipy.signal.{who}: acceptable boundary flags are 'fill', 'wrap' and "
                         f"'symm', got {boundary!r}")
    if getattr(in1, "ndim", np.ndim(in1)) != 2 or getattr(in2, "ndim", np.ndim(in2)) != 2:
        raise ValueError(f"cad.scipy.signal.{who}: inputs must both be 2-D arrays, got shapes "
                         f"{tuple(np.shape(in1) if _plain_np(in1) else in1.shape)} and "
                         f"{tuple(np.shape(in2) if _plain_np(in2) else in2.shape)}")
    if isinstance(fillvalue, C.Tensor) or np.ndim(fillvalue) != 0 or np.iscomplexobj(fillvalue):
        raise ValueError(f"cad.scipy.signal.{who}: fillvalue must be a real Python or numpy scalar "
                         "(it is not differentiated)")
    return _BOUNDARIES[boundary], float(fillvalue)


def convolve2d(in1: Any, in2: Any, mode: Any = "full", boundary: Any = "fill", fillvalue: Any = 0) -> C.Tensor:
    """scipy.signal.convolve2d: 2-D convolution with boundary 'fill' (fillvalue),
    'wrap' or 'symm' extending in1 (NOTE [ Direct convolution ]: the boundary is
    the index array's map; fillvalue is a constant, not differentiated)"""
    b, fv = _check2d("convolve2d", in1, in2, boundary, fillvalue)
    return _conv("convolve2d", in1, in2, mode, "direct", False, b, fv)


def correlate2d(in1: Any, in2: Any, mode: Any = "full", boundary: Any = "fill", fillvalue: Any = 0) -> C.Tensor:
    """scipy.signal.correlate2d: convolve2d(in1, flip(in2)) with the boundary
    extending in1 (scipy's conventions, 'valid' with in2 the larger included)"""
    b, fv = _check2d("correlate2d", in1, in2, boundary, fillvalue)
    return _conv("correlate2d", in1, in2, mode, "direct", True, b, fv)
