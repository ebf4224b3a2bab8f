"""cad.linalg: numpy.linalg's functions with exact derivatives of every order.

NOTE [ Linear algebra ]
Each function is a user primitive (cad.primitive, NOTE [ Custom primitives ]):
its forward is numpy.linalg (LAPACK, batched over leading dims, float64 and
float32; triangular solves up to n = 64 by substitution in C, NOTE [ Small
triangular solves ] in cpu/matmul.c), and its vjp and jvp rules are written with cad ops and the other linalg
primitives, so the rules are recorded again under higher-order transforms.  The
rules are the standard ones (Giles 2008, "An extended collection of matrix
derivative results"; Murray 2016 for Cholesky):
  solve   X = A^-1 B          dX = A^-1 (dB - dA X);   gB = A^-T G, gA = -gB X^T
  inv     Y = A^-1            dY = -Y dA Y;             gA = -Y^T G Y^T
  slogdet l = log|det A|      dl = tr(A^-1 dA);         gA = g A^-T
  cholesky A = L L^T          dL = L Phi(L^-1 dA L^-T); gA = sym(L^-T Phi(L^T G) L^-1)
  eigh    A = V diag(w) V^T   dw = diag(V^T dA V), dV = V (F o (V^T dA V)),
                              F_ij = 1 / (w_j - w_i) off the diagonal
  svd, qr: forward rules; their reverse rules are derived by transposition.
Degenerate cases: eigh's and svd's derivatives are undefined at repeated
eigen/singular values (F has 1/0); cad returns inf/nan there as JAX and PyTorch
do.  det's gradient at a singular matrix needs A^-1 and raises LinAlgError.
Batched calls under vmap run the batched LAPACK call once (defvmap).  On CUDA
tensors the computation goes through the host (the README says so).
"""
from __future__ import annotations

import math
import os
import warnings
from typing import Any, Optional, Tuple, Union

import numpy as np

from ._core import _engine as C
from .ops.custom import primitive

__all__ = [
    "LinAlgError",
    "cholesky",
    "det",
    "eigh",
    "eigvalsh",
    "inv",
    "lstsq",
    "matrix_power",
    "matrix_rank",
    "norm",
    "pinv",
    "qr",
    "slogdet",
    "solve",
    "solve_triangular",
    "svd",
    "svdvals",
    "triangular_solve",
]


class LinAlgError(C.CadError, np.linalg.LinAlgError):
    """a singular or not positive definite matrix (also numpy's LinAlgError)"""


def _cad():
    import cad
    return cad


def _np(x):
    return np.asarray(x)


def _square(who, a, name="A"):
    if a.ndim < 2 or a.shape[-1] != a.shape[-2]:
        raise C.ShapeError(f"cad.linalg.{who}: {name} must be a (batch of) square matrices, got "
                           f"shape {tuple(a.shape)}")


def _float(who, *xs):
    for x in xs:
        if np.dtype(x.dtype).kind != "f":
            raise C.DTypeError(f"cad.linalg.{who}: takes float64 or float32 tensors, got {x.dtype}")


def _lapack(who, fn, *shapes):
    try:
        with _blas_threads(max((int(sh[-1]) for sh in shapes if len(sh)), default=0)):
            return fn()
    except np.linalg.LinAlgError as e:
        raise LinAlgError(f"cad.linalg.{who}: {e} (shapes {', '.join(str(tuple(s)) for s in shapes)})") from None


def _T(x):
    return _cad().swapaxes(x, -1, -2)


def _mm(a, b):
    return _cad().matmul(a, b)


def _diag(x):
    """(..., n, n) -> (..., n)"""
    return _cad().einsum("...ii->...i", x)


def _diag_embed(v):
    """(..., n) -> (..., n, n)"""
    n = v.shape[-1]
    return _cad().unsqueeze(v, -1) * _cad().tensor(np.eye(n), dtype=v.dtype)


def _as(x):
    return x if isinstance(x, C.Tensor) else _cad().tensor(x)


# ---------------------------------------------------------------- primitives

# LU factors: solve and slogdet return them as extra outputs (never shown to the
# user), so that their first-order vjps reuse them (an O(n^2) solve for solve, the
# inverse from the factors for slogdet) instead of factoring again; a call on the
# same matrix as the last one (slogdet(K) and solve(K, y)) reuses its factors.
_LU_LAST = [None]


class _blas_threads:
    """every loaded OpenBLAS on one thread for matrices below 1024 (issue 14's
    busy-neighbour cliff: a second BLAS thread waiting for a busy core made an LU 3-4x
    slower than one thread), cad's thread count above unless the pool saw a straggler
    (NOTE [ Stragglers ] in pool.c: its jobs run on the caller alone meanwhile);
    restored after.  NOTE [ Two OpenBLAS ]: numpy's wheel and scipy's each bundle an
    OpenBLAS with its own threads; cad's products and scipy's LAPACK run on scipy's,
    numpy.linalg (qr, eigh, svd, inv, cholesky) on numpy's, and each library's threads
    spin for a while after a call: numpy's qr of a 100 x 100 matrix right after
    scipy's triangular solve (qr's gradient, in a loop) took 4.2 ms against 0.4 alone,
    the two pairs of threads fighting over two cores.  Both are set per calling thread
    (openblas_set_num_threads_local, found by _openblas_setters)."""
    __slots__ = ("n", "prev")

    def __init__(self, n):
        self.n = n

    def __enter__(self):
        nt = 1 if self.n < 1024 or C._pool_contended() else C.get_num_threads()
        setters = _OPENBLAS[0] if _OPENBLAS[0] is not None else _openblas_setters()
        if setters:
            self.prev = [f(nt) for f in setters]
        else:
            self.prev = C.blas_threads_local(nt)

    def __exit__(self, *exc):
        if isinstance(self.prev, list):
            for f, p in zip(reversed(_OPENBLAS[0]), reversed(self.prev)):
                if p >= 0:
                    f(p)
        elif self.prev >= 0:
            C.blas_threads_local(self.prev)


_OPENBLAS = [None]   # openblas_set_num_threads_local of every OpenBLAS loaded (ctypes)


def _openblas_setters():
    """the per-thread thread-count setters of the OpenBLAS libraries this process has
    loaded (NOTE [ Two OpenBLAS ]), from /proc/self/maps; [] where that cannot be read
    (then only cad's own library, C.blas_threads_local)"""
    import ctypes
    import importlib
    importlib.import_module("scipy.linalg")   # (its OpenBLAS loaded before the scan)
    out, seen = [], set()
    try:
        with open("/proc/self/maps") as f:
            paths = [ln.split(None, 5)[-1].strip() for ln in f if "openblas" in ln.lower()]
    except OSError:
        paths = []
    for path in paths:
        if path in seen or not path.startswith("/"):
            continue
        seen.add(path)
        try:
            fn = ctypes.CDLL(path, mode=getattr(os, "RTLD_NOLOAD", 4) | ctypes.RTLD_GLOBAL).openblas_set_num_threads_local
        except (OSError, AttributeError):
            continue
        fn.restype, fn.argtypes = ctypes.c_int, [ctypes.c_int]
        out.append(fn)
    _OPENBLAS[0] = out
    return out


def _lu(a):
    """(f, piv) of a (..., n, n) ndarray, batched: the factors of each matrix's
    TRANSPOSE, stored C-ordered (f[k].T is LAPACK's Fortran-ordered factor of A^T:
    a C-ordered A is A^T to LAPACK, so neither the factorization nor the solves
    transpose a copy; _lu_solve solves with A^T's factors transposed).  A batch of
    symmetric positive definite matrices gets Cholesky factors instead, marked by
    pivots of -1 (NOTE [ Symmetric factors ])."""
    import scipy.linalg as sl
    last = _LU_LAST[0]
    ai = a.__array_interface__
    key = (ai["data"][0], a.shape, a.strides, a.dtype.str)
    if last is not None and last[0] == key:
        return last[2], last[3]
    n = a.shape[-1]
    flat = np.ascontiguousarray(a.reshape((-1, n, n)))
    out = _chol_factors(flat) if C.is_symmetric(flat) else None
    if out is None:
        lu = np.empty_like(flat)
        piv = np.empty(flat.shape[:-1], dtype=np.int32)
        with warnings.catch_warnings(), _blas_threads(n):   # singular: the callers raise or give -inf
            warnings.simplefilter("ignore", sl.LinAlgWarning)
            for k in range(flat.shape[0]):
                f, piv[k] = sl.lu_factor(flat[k].T, check_finite=False)
                lu[k] = f.T
        out = lu, piv
    lu = out[0].reshape(a.shape)
    piv = out[1].reshape(a.shape[:-1])
    _LU_LAST[0] = (key, a, lu, piv)   # (a kept alive: its address cannot be reused)
    return lu, piv


# NOTE [ Symmetric factors ]
# slogdet, solve and their first-order derivatives factor a symmetric positive
# definite matrix (a covariance, a kernel matrix, a Hessian) by Cholesky: potrf and
# potri cost n^3 flops together where getrf and getri cost 2 n^3, and in scipy's
# OpenBLAS getri is slow besides (W10, n = 512, one thread: getrf 2.4 ms + getri 8.9
# against potrf 1.7 + potri 3.4; the inverse from the factor is now cad's own, NOTE
# [ Parallel SPD inverse ], 1.6 ms).  Whether a matrix is exactly symmetric is checked in
# C (C.is_symmetric, 0.1 ms at n = 512); potrf then decides positive definiteness, and
# a failure falls back to LU (a symmetric indefinite matrix pays for one extra potrf,
# which stops at its first nonpositive pivot).  The results are those of the other
# factorization up to rounding; the sign of the determinant is +1.  The pivots of
# such factors are -1 (_is_chol); _lu_solve and _inv_t read the mark.

def _chol_factors(flat):
    """(L^T stored C-ordered, pivots of -1) for a (b, n, n) C-contiguous batch of
    symmetric matrices, or None if one is not positive definite"""
    import scipy.linalg as sl
    n = flat.shape[-1]
    if n == 0:
        return None
    if flat.shape[0] > 1 and n <= _TRSM_SMALL:
        # NOTE [ Batches of small factors ]: numpy's batched Cholesky (its loop in C)
        # where potrf called from Python per matrix cost microseconds each (500 8 x 8
        # solves with their gradient: 3.5 ms, torch 1.0); f[k] is L^T, as potrf leaves
        # f[k].T (the strict lower triangle of f[k] is zero here, never read)
        try:
            L = np.linalg.cholesky(flat)
        except np.linalg.LinAlgError:
            return None
        f = C.empty_array(flat.shape, flat.dtype)
        np.copyto(f, np.swapaxes(L, -1, -2))
        return f, np.full(flat.shape[:-1], -1, dtype=np.int32)
    potrf, = sl.get_lapack_funcs(("potrf",), (flat,))
    f = C.empty_array(flat.shape, flat.dtype)   # (cad's block cache: no page faults)
    np.copyto(f, flat)   # (potrf works in place on f[k].T, Fortran-ordered; the strict
    with _blas_threads(n):   # upper triangle keeps A's values, never read)
        for k in range(f.shape[0]):
            if potrf(f[k].T, lower=1, clean=0, overwrite_a=1)[1] != 0:
                return None
    return f, np.full(flat.shape[:-1], -1, dtype=np.int32)


def _is_chol(piv):
    return piv.size > 0 and piv.reshape(-1)[0] < 0


def _lu_solve(lu, piv, b, trans=0):
    """x with A x = b (trans: A^T x = b) from _lu's factors (of A^T); b (..., n, k),
    batched.  Each solve is LAPACK's getrs called from C with the GIL released, its
    right-hand sides split over cad's pool (C.lu_solve); scipy's lu_solve when LAPACK
    is not loaded.  One matrix: the result is Fortran-ordered (no transposing copy)."""
    n = lu.shape[-1]
    dt = np.result_type(lu, b)
    if lu.ndim == 2 and b.ndim > 2 and n > 0 and b.size:
        # one matrix, a batch of right-hand sides (jacrev's batch of cotangents, NOTE
        # [ Batched custom vjps ]): one solve with the batch's columns side by side
        k = b.shape[-1]
        cols = np.moveaxis(b.reshape((-1, n, k)), 0, 1).reshape(n, -1)
        x = _lu_solve(lu, piv, cols, trans)
        return np.moveaxis(x.reshape(n, -1, k), 1, 0).reshape(b.shape)
    if lu.ndim == 2 and b.ndim == 2:   # one matrix (the broadcasting below: ~15 µs)
        shape = ()
        LU, P, B = lu[None], piv[None], b[None]
    else:
        shape = np.broadcast_shapes(lu.shape[:-2], b.shape[:-2])
        LU = np.broadcast_to(lu, shape + (n, n)).reshape((-1, n, n))
        P = np.broadcast_to(piv, shape + (n,)).reshape((-1, n))
        B = np.broadcast_to(b, shape + b.shape[-2:]).reshape((-1,) + b.shape[-2:])
    if LU.shape[0] == 0:   # (an empty batch)
        return np.zeros(shape + b.shape[-2:], dtype=dt)
    outs = []
    if _is_chol(piv) and LU.shape[0] > 1 and 0 < n <= _TRSM_SMALL and LU.dtype == dt \
            and dt.type in (np.float64, np.float32):
        # NOTE [ Batches of small factors ]: A = L L^T with LU[k] = L^T (upper): L y = b,
        # then L^T x = y, by C substitution over the whole batch (C.trsm_small)
        F = np.ascontiguousarray(LU)
        X = np.array(B, dtype=dt, order="C")
        if C.trsm_small(F, X, False, True) or C.trsm_small(F, X, False, False):
            raise np.linalg.LinAlgError("Singular matrix")
        return X.reshape(shape + b.shape[-2:])
    if _is_chol(piv):
        import scipy.linalg as sl
        potrs, = sl.get_lapack_funcs(("potrs",), (np.empty(0, dt),))
        with _blas_threads(n):
            for k in range(LU.shape[0]):
                f = LU[k].T if LU[k].dtype == dt else LU[k].astype(dt).T   # L, Fortran order
                x, info = potrs(f, B[k], lower=1)   # A symmetric: trans is the same solve
                outs.append(x)
    else:
        for k in range(LU.shape[0]):
            f = LU[k].T if LU[k].dtype == dt else LU[k].astype(dt).T   # A^T's factor, Fortran order
            if C.HAVE_LAPACK:
                bf = np.array(B[k], dtype=dt, order="F")
                C.lu_solve(np.asfortranarray(f), (P[k] + 1).astype(np.int32), bf, not trans)
                outs.append(bf)
            else:
                import scipy.linalg as sl
                with _blas_threads(n):
                    outs.append(sl.lu_solve((f, P[k]), B[k], trans=0 if trans else 1, check_finite=False))
    if len(outs) == 1:
        return outs[0].reshape(shape + b.shape[-2:])
    return np.stack(outs).reshape(shape + b.shape[-2:])


def _inv_t(lu, piv, scale=None):
    """A^-T from _lu's factors (those of A^T), times scale (an array of the batch's
    shape, or None); batched.  Cholesky factors: C.spd_inverse, trsm/gemm/trmm
    column blocks over cad's pool (NOTE [ Parallel SPD inverse ] in
    cad_kernels/cpu/matmul.c; W10, n = 512: 1.6 ms on two threads, potri 3.3 on one).
    LU factors: LAPACK's getri gives inv(A^T) directly, 4/3 n^3 flops where solving
    against the identity costs 2 n^3 (n = 512: 7.6 ms on one BLAS thread against 10.4
    for the solve over cad's pool)."""
    import scipy.linalg as sl
    n = lu.shape[-1]
    if scale is not None and np.ndim(scale) > lu.ndim - 2:
        # scale carries batch dims the factors do not (jacrev's batch of cotangents, NOTE
        # [ Batched custom vjps ]): one inverse, scaled for each
        return np.asarray(scale)[..., None, None] * _inv_t(lu, piv)
    if _is_chol(piv):   # (scipy's LAPACK made these factors, so C.HAVE_LAPACK)
        flat = lu.reshape((-1, n, n))
        sc = np.ones(flat.shape[0]) if scale is None else np.broadcast_to(scale, lu.shape[:-2]).reshape(-1)
        if flat.shape[0] == 1:   # (A symmetric: A^-T = A^-1)
            return C.spd_inverse(np.ascontiguousarray(flat[0]), float(sc[0])).reshape(lu.shape)
        if n <= _TRSM_SMALL:   # NOTE [ Batches of small factors ]: L^-T L^-1 by substitution
            X = np.broadcast_to(np.eye(n, dtype=lu.dtype), flat.shape).copy()
            F = np.ascontiguousarray(flat)
            if C.trsm_small(F, X, False, True) or C.trsm_small(F, X, False, False):
                raise np.linalg.LinAlgError("Singular matrix")
            C.symmetrize(X, False)   # (exactly symmetric, as potri's mirrored triangle)
            if scale is not None:
                X *= sc.astype(lu.dtype, copy=False)[:, None, None]
            return X.reshape(lu.shape)
        out = C.empty_array(flat.shape, lu.dtype)
        for k in range(flat.shape[0]):
            out[k] = C.spd_inverse(np.ascontiguousarray(flat[k]), float(sc[k]))
        return out.reshape(lu.shape)
    getri, getri_lwork = sl.get_lapack_funcs(("getri", "getri_lwork"), (lu,))
    lwork = max(int(getri_lwork(n)[0]), n)
    flat, P = lu.reshape((-1, n, n)), piv.reshape((-1, n))
    out = np.empty(flat.shape, dtype=lu.dtype)
    with _blas_threads(n):
        for k in range(flat.shape[0]):
            inv, info = getri(flat[k].T, P[k], lwork=lwork)   # flat[k].T: Fortran-ordered
            if info != 0:   # (singular: the caller checked; any other failure: the solve)
                inv = np.swapaxes(_lu_solve(flat[k], P[k], np.eye(n, dtype=lu.dtype)), -1, -2)
            out[k] = inv
    out = out.reshape(lu.shape)
    return out if scale is None else np.asarray(scale)[..., None, None] * out


def _singular(lu):
    return not np.diagonal(lu, axis1=-2, axis2=-1).all()


def _plain(*xs):
    """no value here is tracked and nothing records: the rule's result needs no
    derivative, so the factors may be used (the C sweep's first-order call)"""
    if C.is_recording():
        return False
    return not any(isinstance(x, C.Tensor) and x.requires_grad for x in xs)


@primitive
def _solve(a, b):
    """solve A X = B for X, B a (batch of) matrices; also A's factors"""
    a, b = _np(a), _np(b)
    if a.shape[-1] == 0:
        x = np.zeros(np.broadcast_shapes(a.shape[:-2], b.shape[:-2]) + b.shape[-2:], dtype=np.result_type(a, b))
        return x, np.zeros(a.shape, a.dtype), np.zeros(a.shape[:-1], a.dtype)
    lu, piv = _lu(a)
    if _singular(lu):
        raise LinAlgError(f"cad.linalg.solve: Singular matrix (shapes {a.shape}, {b.shape})")
    return _lu_solve(lu, piv, b), lu, piv.astype(a.dtype)


@_solve.defvjp
def _solve_vjp(g, ans, a, b):
    x, lu, piv = ans
    gx = g[0]
    if _plain(gx, x, a, lu) and a.shape[-1]:
        gb = _cad().tensor(_lu_solve(_np(lu), _np(piv).astype(np.int32), _np(gx), trans=1))
    else:
        gb = _solve(_T(a), gx)[0]
    return (-_mm(gb, _T(x)), gb)


@_solve.defjvp
def _solve_jvp(ts, ans, a, b):
    x = ans[0]
    zl = _cad().zeros(tuple(ans[1].shape), dtype=x.dtype)
    zp = _cad().zeros(tuple(ans[2].shape), dtype=x.dtype)
    return (_solve(a, ts[1] - _mm(ts[0], x))[0], zl, zp)


_solve.defvmap(lambda a, b: _solve(a, b))
_solve._rules_batch = lambda a, b: b.ndim >= 2   # NOTE [ Batched custom vjps ] (custom.py)


@primitive
def _inv(a):
    return _lapack("inv", lambda: np.linalg.inv(_np(a)), a.shape)


_inv.defvjp(lambda g, y, a: (-_mm(_mm(_T(y), g), _T(y)),))
_inv.defjvp(lambda ts, y, a: -_mm(_mm(y, ts[0]), y))
_inv.defvmap(lambda a: _inv(a))
_inv._rules_batch = lambda a: True


@primitive
def _slogdet(a):
    """(sign, log|det|) and a's factors"""
    a = _np(a)
    n = a.shape[-1]
    if n == 0:
        one = np.ones(a.shape[:-2], a.dtype)
        return one, 0 * one, np.zeros(a.shape, a.dtype), np.zeros(a.shape[:-1], a.dtype)
    lu, piv = _lu(a)
    d = np.diagonal(lu, axis1=-2, axis2=-1)
    if _is_chol(piv):
        logdet = 2.0 * np.sum(np.log(d), axis=-1)
        return (np.ones(a.shape[:-2], a.dtype), np.asarray(logdet, dtype=a.dtype), lu,
                piv.astype(a.dtype))
    swaps = (piv != np.arange(n)).sum(-1)
    sign = np.where(swaps % 2 == 1, -1.0, 1.0) * np.sign(d).prod(-1)
    if d.all():   # (the methods, and errstate only for a zero pivot: 60 -> 40 µs for 3 x 3)
        logdet = np.log(np.abs(d)).sum(-1)
    else:
        with np.errstate(divide="ignore"):
            logdet = np.log(np.abs(d)).sum(-1)
    return (np.asarray(sign, dtype=a.dtype), np.asarray(logdet, dtype=a.dtype), lu,
            piv.astype(a.dtype))


@_slogdet.defvjp
def _slogdet_vjp(g, ans, a):
    gl = g[1]
    lu, piv = ans[2], ans[3]
    if _plain(gl, a, lu) and a.shape[-1]:
        lun = _np(lu)
        if _singular(lun):
            raise LinAlgError(f"cad.linalg.slogdet: the derivative at a singular matrix (shape "
                              f"{tuple(a.shape)}) is not defined")
        return (_inv_t(lun, _np(piv).astype(np.int32), _np(gl)),)
    return (_cad().unsqueeze(_cad().unsqueeze(gl, -1), -1) * _T(_inv(a)),)


@_slogdet.defjvp
def _slogdet_jvp(ts, ans, a):
    z = [_cad().zeros(tuple(o.shape), dtype=ans[1].dtype) for o in (ans[0], ans[2], ans[3])]
    return (z[0], _cad().sum(_T(_inv(a)) * ts[0], axis=(-2, -1)), z[1], z[2])


_slogdet.defvmap(lambda a: _slogdet(a))
_slogdet._rules_batch = lambda a: True   # NOTE [ Batched custom vjps ] (custom.py)


_TRI_MASKS: dict = {}


def _tri_mask(n, lower, half_diag, dtype):
    """(n, n) ones on the lower (upper) triangle, the diagonal halved if half_diag;
    read-only, cached (the rules of cholesky and the triangular solve use them per call)"""
    key = (n, lower, half_diag, dtype)
    m = _TRI_MASKS.get(key)
    if m is None:
        m = np.tril(np.ones((n, n), dtype=dtype)) if lower else np.triu(np.ones((n, n), dtype=dtype))
        if half_diag:
            m -= 0.5 * np.eye(n, dtype=dtype)
        m.flags.writeable = False
        if len(_TRI_MASKS) < 256:
            _TRI_MASKS[key] = m
    return m


def _phi(x):
    """the lower triangle with half the diagonal"""
    return x * _tri_mask(x.shape[-1], True, True, np.dtype(x.dtype))


@primitive
def _cholesky(a):
    return _lapack("cholesky", lambda: np.linalg.cholesky(_np(a)), a.shape)


@_cholesky.defvjp
def _cholesky_vjp(g, L, a):
    P = _phi(_mm(_T(L), g))
    # S = L^-T P L^-1
    S = _trisolve(L, _T(_trisolve(L, _T(P), lower=True, trans=True)), lower=True, trans=True)
    return (0.5 * (S + _T(S)),)


@_cholesky.defjvp
def _cholesky_jvp(ts, L, a):
    # L^-1 dA L^-T
    X = _trisolve(L, _T(_trisolve(L, ts[0], lower=True)), lower=True)
    return _mm(L, _phi(X))


_cholesky.defvmap(lambda a: _cholesky(a))
_cholesky._rules_batch = lambda a: True


_TRSM_SMALL = 64   # NOTE [ Small triangular solves ]: substitution in C up to this n


def _trisolve_small(a, b, lower, trans):
    """op(T) X = B by substitution in C (C.trsm_small), a (..., n, n) and b (..., n, k)
    or (n,) broadcast as np.linalg.solve does"""
    n = a.shape[-1]
    vec = b.ndim == 1
    if vec:
        b = b[:, None]
    k = b.shape[-1]
    ab, bb = a.shape[:-2], b.shape[:-2]
    batch = ab if ab == bb else tuple(np.broadcast_shapes(ab, bb))
    nb = math.prod(batch)
    if math.prod(ab) == 1:
        A = np.ascontiguousarray(a).reshape(1, n, n)
    else:
        A = np.ascontiguousarray(a if ab == batch else np.broadcast_to(a, batch + (n, n))).reshape(nb, n, n)
    X = np.array(b if bb == batch else np.broadcast_to(b, batch + (n, k)), order="C")
    if C.trsm_small(A, X.reshape(nb, n, k), lower, trans):
        raise np.linalg.LinAlgError("Singular matrix")
    return X[..., 0] if vec else X


def _trisolve_np(a, b, lower, trans):
    a = _np(a)
    b = _np(b)
    if (0 < a.shape[-1] <= _TRSM_SMALL and a.dtype == b.dtype and a.dtype.type in (np.float64, np.float32)
            and b.ndim >= 1):
        return _trisolve_small(a, b, lower, trans)
    if (a.shape[-1] > _TRSM_SMALL and a.dtype == b.dtype and a.dtype.type in (np.float64, np.float32)
            and b.ndim >= 1):
        return _trisolve_lapack(a, b, lower, trans)
    if trans:
        a = np.swapaxes(a, -1, -2)
        lower = not lower
    tri = np.tril(a) if lower else np.triu(a)
    return np.linalg.solve(tri, b)


def _trisolve_lapack(a, b, lower, trans):
    """op(T) X = B by LAPACK's triangular solve (scipy's, matrix by matrix over a batch),
    broadcast as _trisolve_small: an LU of the triangle (np.linalg.solve) took 5x
    torch's time for n = 300"""
    import scipy.linalg as sl
    n = a.shape[-1]
    vec = b.ndim == 1
    if vec:
        b = b[:, None]
    k = b.shape[-1]
    batch = tuple(np.broadcast_shapes(a.shape[:-2], b.shape[:-2]))
    with _blas_threads(n):
        X = _trisolve_lapack_run(sl, a, b, lower, trans, batch, n, k)
    return X[..., 0] if vec else X


def _trisolve_lapack_run(sl, a, b, lower, trans, batch, n, k):
    if not batch:
        X = sl.solve_triangular(a, b, trans=1 if trans else 0, lower=lower, check_finite=False)
    else:
        A = np.broadcast_to(a, batch + (n, n))
        B = np.broadcast_to(b, batch + (n, k))
        X = np.empty(batch + (n, k), dtype=b.dtype)
        for i in np.ndindex(*batch):
            X[i] = sl.solve_triangular(A[i], B[i], trans=1 if trans else 0, lower=lower,
                                       check_finite=False)
    return X


@primitive
def _trisolve(a, b, lower=True, trans=False):
    """X with op(T) X = B, T the lower (upper) triangle of a, op = transpose if trans"""
    return _lapack("triangular_solve", lambda: _trisolve_np(a, b, lower, trans), a.shape, b.shape)


@_trisolve.defvjp
def _trisolve_vjp(g, x, a, b, lower=True, trans=False):
    gb = _trisolve(a, g, lower=lower, trans=not trans)
    ga = -_mm(gb, _T(x)) if not trans else -_mm(x, _T(gb))
    return (ga * _tri_mask(a.shape[-1], lower, False, np.dtype(ga.dtype)), gb)


@_trisolve.defjvp
def _trisolve_jvp(ts, x, a, b, lower=True, trans=False):
    da = ts[0] * _tri_mask(a.shape[-1], lower, False, np.dtype(x.dtype))
    if trans:
        da = _T(da)
    return _trisolve(a, ts[1] - _mm(da, x), lower=lower, trans=trans)


_trisolve.defvmap(lambda a, b, lower=True, trans=False: _trisolve(a, b, lower=lower, trans=trans))
_trisolve._rules_batch = lambda a, b, lower=True, trans=False: b.ndim >= 2


@primitive
def _eigh(a, upper=False):
    return _lapack("eigh", lambda: np.linalg.eigh(_np(a), UPLO="U" if upper else "L"), a.shape)


def _eigh_F(w):
    d = _cad().unsqueeze(w, -2) - _cad().unsqueeze(w, -1)   # d_ij = w_j - w_i
    n = w.shape[-1]
    eye = _cad().tensor(np.eye(n), dtype=w.dtype)
    return (1.0 - eye) / (d + eye)


@_eigh.defjvp
def _eigh_jvp(ts, ans, a, upper=False):
    w, V = ans
    dA = ts[0]
    dA = 0.5 * (dA + _T(dA))   # the symmetric part: eigh reads one triangle of a symmetric matrix
    M = _mm(_mm(_T(V), dA), V)
    return (_diag(M), _mm(V, _eigh_F(w) * M))


@_eigh.defvjp
def _eigh_vjp(g, ans, a, upper=False):
    w, V = ans
    gw, gV = g
    inner = _diag_embed(gw) + _eigh_F(w) * _mm(_T(V), gV)
    gA = _mm(_mm(V, inner), _T(V))
    return (0.5 * (gA + _T(gA)), None)


_eigh.defvmap(lambda a, upper=False: _eigh(a, upper))
_eigh._rules_batch = lambda a, upper=False: True   # NOTE [ Batched custom vjps ] (custom.py)


@primitive
def _svd(a):
    u, s, vh = _lapack("svd", lambda: np.linalg.svd(_np(a), full_matrices=False), a.shape)
    return u, s, vh


@_svd.defjvp
def _svd_jvp(ts, ans, a):
    # reduced SVD, A (m, n), k = min(m, n): Townsend's forward rule
    cad = _cad()
    U, S, Vh = ans
    dA = ts[0]
    V = _T(Vh)
    k = S.shape[-1]
    dP = _mm(_mm(_T(U), dA), V)
    dS = _diag(dP)
    F = _eigh_F(S * S)   # 1 / (s_j^2 - s_i^2) off the diagonal, 0 on it
    Sr = cad.unsqueeze(S, -2)   # S as a row
    Sc = cad.unsqueeze(S, -1)
    dPt = _T(dP)
    dU = _mm(U, F * (dP * Sr + Sc * dPt))    # F o (dP S + S dP^T)
    dV = _mm(V, F * (Sc * dP + dPt * Sr))    # F o (S dP + dP^T S)
    m, n = a.shape[-2], a.shape[-1]
    Sinv = cad.unsqueeze(1.0 / S, -2)
    if m > k:
        dU = dU + _mm(dA - _mm(U, _mm(_T(U), dA)), V) * Sinv
    if n > k:
        dV = dV + _mm(_T(dA) - _mm(V, _mm(_T(V), _T(dA))), U) * Sinv
    return (dU, dS, _T(dV))


@_svd.defvjp
def _svd_vjp(g, ans, a):
    # Townsend's reverse rule for the reduced SVD, k = min(m, n), F as in the jvp:
    # gA = U [(F o (U^T gU - gU^T U)) S + diag(gS) + S (F o (V^T gV - gV^T V))] V^T
    #      + (I - U U^T) gU S^-1 V^T + U S^-1 gV^T (I - V V^T)
    # (reverse mode transposed the jvp before: 1.4-1.7x torch's time)
    cad = _cad()
    U, S, Vh = ans
    gU, gS, gVh = g
    V = _T(Vh)
    gU = cad.zeros_like(U) if gU is None else gU
    gS = cad.zeros_like(S) if gS is None else gS
    gV = cad.zeros_like(V) if gVh is None else _T(gVh)
    k = S.shape[-1]
    eye = cad.tensor(np.eye(k), dtype=S.dtype)
    F = _eigh_F(S * S)   # as the jvp's
    Sr = cad.unsqueeze(S, -2)   # S as a row: X * Sr = X S
    Sc = cad.unsqueeze(S, -1)   # Sc * X = S X
    UgU = _mm(_T(U), gU)
    VgV = _mm(_T(V), gV)
    inner = (F * (UgU - _T(UgU))) * Sr + eye * cad.unsqueeze(gS, -2) + Sc * (F * (VgV - _T(VgV)))
    gA = _mm(_mm(U, inner), Vh)
    m, n = a.shape[-2], a.shape[-1]
    Sinv = cad.unsqueeze(1.0 / S, -2)
    if m > k:
        gA = gA + _mm((gU - _mm(U, UgU)) * Sinv, Vh)
    if n > k:
        gA = gA + _mm(U * Sinv, _T(gV - _mm(V, VgV)))
    return (gA,)


_svd.defvmap(lambda a: _svd(a))


@primitive
def _qr(a):
    q, r = _lapack("qr", lambda: np.linalg.qr(_np(a), mode="reduced"), a.shape)
    return q, r


@_qr.defjvp
def _qr_jvp(ts, ans, a):
    # A = QR (m >= n): dR R^-1 upper, Q^T dQ skew
    cad = _cad()
    Q, R = ans
    dA = ts[0]
    n = R.shape[-1]
    # C = Q^T dA R^-1  (R^-T from the right: solve R^T C^T = (Q^T dA)^T)
    Cm = _T(_trisolve(R, _T(_mm(_T(Q), dA)), lower=False, trans=True))
    low = cad.tensor(np.tril(np.ones((n, n)), -1), dtype=R.dtype)
    Om = Cm * low - _T(Cm * low)   # the skew part below the diagonal
    dR = _mm(Cm - Om, R)
    dQ = _mm(dA, _inv_upper(R)) - _mm(Q, Cm - Om)
    return (dQ, dR)


@_qr.defvjp
def _qr_vjp(g, ans, a):
    # A = QR (m >= n, reduced): gA = (gQ + Q copyltu(M)) R^-T with M = R gR^T - gQ^T Q,
    # copyltu(M) M's lower triangle mirrored above the diagonal (Walter and Lehmann's
    # rule, PyTorch's): four products and one triangular solve, where reverse mode
    # transposed the jvp above (2.5-3.8x torch's time for the gradient)
    cad = _cad()
    Q, R = ans
    gQ, gR = g
    gQ = cad.zeros_like(Q) if gQ is None else gQ
    gR = cad.zeros_like(R) if gR is None else gR
    n = R.shape[-1]
    M = _mm(R, _T(gR)) - _mm(_T(gQ), Q)
    Ml = M * cad.tensor(np.tril(np.ones((n, n)), -1), dtype=R.dtype)
    b = gQ + _mm(Q, Ml + _T(Ml) + M * cad.tensor(np.eye(n), dtype=R.dtype))
    return (_T(_trisolve(R, _T(b), lower=False)),)


def _inv_upper(R):
    n = R.shape[-1]
    eye = _cad().tensor(np.broadcast_to(np.eye(n), tuple(R.shape)), dtype=R.dtype)
    return _trisolve(R, eye, lower=False)


_qr.defvmap(lambda a: _qr(a))


# ---------------------------------------------------------------- the public functions

def solve(a: Any, b: Any) -> C.Tensor:
    """x with a @ x = b (numpy 2's rule: b is a vector only when it is 1-D)"""
    a, b = _as(a), _as(b)
    _float("solve", a, b)
    _square("solve", a)
    cad = _cad()
    if b.ndim == 1:
        if b.shape[0] != a.shape[-1]:
            raise C.ShapeError(f"cad.linalg.solve: A of shape {tuple(a.shape)} and b of shape "
                               f"{tuple(b.shape)}: b needs {a.shape[-1]} rows")
        return cad.squeeze(_solve(a, cad.unsqueeze(b, -1))[0], -1)
    if b.shape[-2] != a.shape[-1]:
        raise C.ShapeError(f"cad.linalg.solve: A of shape {tuple(a.shape)} and B of shape "
                           f"{tuple(b.shape)}: B needs {a.shape[-1]} rows")
    return _solve(a, b)[0]


def inv(a: Any) -> C.Tensor:
    a = _as(a)
    _float("inv", a)
    _square("inv", a)
    return _inv(a)


def slogdet(a: Any) -> Tuple[C.Tensor, C.Tensor]:
    """(sign, log|det a|); the sign is not differentiable"""
    a = _as(a)
    _float("slogdet", a)
    _square("slogdet", a)
    s, l = _slogdet(a)[:2]
    return s.detach(), l


def det(a: Any) -> C.Tensor:
    a = _as(a)
    _float("det", a)
    _square("det", a)
    s, l = _slogdet(a)[:2]
    return s.detach() * _cad().exp(l)


def cholesky(a: Any, upper: bool = False) -> C.Tensor:
    """the lower factor L with a = L L^T (upper=True: L^T), as numpy / torch"""
    a = _as(a)
    _float("cholesky", a)
    _square("cholesky", a)
    L = _cholesky(a)
    return _T(L) if upper else L


def eigh(a: Any, UPLO: str = "L") -> Tuple[C.Tensor, C.Tensor]:
    """(w, V) of a symmetric matrix, ascending eigenvalues (numpy.linalg.eigh)"""
    a = _as(a)
    _float("eigh", a)
    _square("eigh", a)
    if UPLO not in ("L", "U"):
        raise ValueError(f"cad.linalg.eigh: UPLO must be 'L' or 'U', got {UPLO!r}")
    return _eigh(a, UPLO == "U")


def eigvalsh(a: Any, UPLO: str = "L") -> C.Tensor:
    return eigh(a, UPLO)[0]


def svd(a: Any, full_matrices: bool = True, compute_uv: bool = True,
        hermitian: bool = False) -> Any:   # (u, s, vh), or s when compute_uv=False
    """numpy.linalg.svd; derivatives for the reduced form (full_matrices=False) and
    for the singular values"""
    a = _as(a)
    _float("svd", a)
    if a.ndim < 2:
        raise C.ShapeError(f"cad.linalg.svd: needs a (batch of) matrices, got shape {tuple(a.shape)}")
    u, s, vh = _svd(a)
    if not compute_uv:
        return s
    if full_matrices and a.shape[-1] != a.shape[-2]:
        if a.requires_grad:
            raise ValueError("cad.linalg.svd: derivatives need full_matrices=False for a non-square "
                             "matrix (the extra singular vectors are not unique)")
        return tuple(_cad().tensor(x) for x in np.linalg.svd(np.asarray(a), full_matrices=True))
    return u, s, vh


def svdvals(a: Any) -> C.Tensor:
    return svd(a, compute_uv=False)


def qr(a: Any, mode: str = "reduced") -> Any:   # (q, r), or r when mode="r"
    """numpy.linalg.qr, mode 'reduced' (derivatives for m >= n) or 'r'"""
    a = _as(a)
    _float("qr", a)
    if a.ndim < 2:
        raise C.ShapeError(f"cad.linalg.qr: needs a (batch of) matrices, got shape {tuple(a.shape)}")
    if mode not in ("reduced", "r"):
        raise ValueError(f"cad.linalg.qr: mode {mode!r}; cad has 'reduced' and 'r'")
    if a.shape[-2] < a.shape[-1] and a.requires_grad:
        raise ValueError(f"cad.linalg.qr: derivatives need m >= n, got shape {tuple(a.shape)}")
    q, r = _qr(a)
    return r if mode == "r" else (q, r)


def triangular_solve(a: Any, b: Any, lower: bool = True, trans: bool = False,
                     left: bool = True) -> C.Tensor:
    """x with op(T) x = b (left) or x op(T) = b (left=False), T a's lower (upper)
    triangle; b a vector or a (batch of) matrices"""
    a, b = _as(a), _as(b)
    _float("triangular_solve", a, b)
    _square("triangular_solve", a)
    cad = _cad()
    if not left:   # x T = b  <=>  T^T x^T = b^T
        return _T(triangular_solve(a, _T(b), lower=lower, trans=not trans))
    if b.ndim == 1:
        return cad.squeeze(_trisolve(a, cad.unsqueeze(b, -1), lower=lower, trans=trans), -1)
    if b.shape[-2] != a.shape[-1]:
        raise C.ShapeError(f"cad.linalg.triangular_solve: T of shape {tuple(a.shape)} and B of shape "
                           f"{tuple(b.shape)}: B needs {a.shape[-1]} rows")
    return _trisolve(a, b, lower=lower, trans=trans)


def solve_triangular(a: Any, b: Any, trans: Union[int, str] = 0, lower: bool = False) -> C.Tensor:
    """scipy.linalg.solve_triangular's argument order and defaults (upper by default)"""
    return triangular_solve(a, b, lower=lower, trans=bool(trans) and trans not in ("N", 0))


def lstsq(a: Any, b: Any, rcond: Optional[float] = None) -> Tuple[C.Tensor, C.Tensor, int, C.Tensor]:
    """numpy.linalg.lstsq's (x, residuals, rank, s) for a full-column-rank a (m >= n);
    x is differentiable (through QR), the rest are not"""
    a, b = _as(a), _as(b)
    _float("lstsq", a, b)
    if a.ndim != 2 or a.shape[0] < a.shape[1]:
        raise C.ShapeError(f"cad.linalg.lstsq: needs an (m, n) matrix with m >= n, got {tuple(a.shape)}")
    cad = _cad()
    q, r = qr(a)
    vec = b.ndim == 1
    bb = cad.unsqueeze(b, -1) if vec else b
    x = _trisolve(r, _mm(_T(q), bb), lower=False)
    if vec:
        x = cad.squeeze(x, -1)
    _, res, rank, s = np.linalg.lstsq(np.asarray(a.detach()), np.asarray(b.detach()), rcond=rcond)
    if rank < a.shape[1]:
        raise LinAlgError(f"cad.linalg.lstsq: a of shape {tuple(a.shape)} has rank {rank} < "
                          f"{a.shape[1]}; cad's lstsq needs full column rank")
    return x, cad.tensor(res), int(rank), cad.tensor(s)


def matrix_power(a: Any, n: int) -> C.Tensor:
    """a @ a @ ... (n times; n < 0 inverts; n = 0 the identity), by squaring"""
    a = _as(a)
    _square("matrix_power", a)
    n = int(n)
    if n < 0:
        a, n = inv(a), -n
    if n == 0:
        k = a.shape[-1]
        return _cad().broadcast_to(_cad().tensor(np.eye(k), dtype=a.dtype), tuple(a.shape)) + 0 * a
    result, base = None, a
    while n:
        if n & 1:
            result = base if result is None else _mm(result, base)
        n >>= 1
        if n:
            base = _mm(base, base)
    return result


def matrix_rank(a: Any, tol: Optional[float] = None) -> int:
    return int(np.linalg.matrix_rank(np.asarray(_as(a).detach()), tol=tol))


def pinv(a: Any) -> C.Tensor:
    """the pseudo-inverse through the SVD (differentiable where the rank is constant)"""
    u, s, vh = svd(a, full_matrices=False)
    cad = _cad()
    big = np.asarray(s.detach()) > (np.finfo(np.dtype(s.dtype)).eps * max(a.shape[-2:]) *
                                     np.asarray(s.detach()).max(axis=-1, keepdims=True))
    sinv = cad.where(cad.tensor(big), 1.0 / cad.where(cad.tensor(big), s, 1.0), 0.0)
    return _mm(_T(vh) * cad.unsqueeze(sinv, -2), _T(u))


def norm(x: Any, ord: Any = None, axis: Any = None, keepdims: bool = False) -> C.Tensor:
    """numpy.linalg.norm (cad.norm: vector norms and every matrix norm)"""
    return _cad().norm(x, ord=ord, axis=axis, keepdims=keepdims)
