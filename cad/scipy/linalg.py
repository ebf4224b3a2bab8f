"""cad.scipy.linalg: scipy.linalg's functions, names, signatures and defaults, with
exact derivatives of every order.

NOTE [ scipy.linalg ]
New primitives (cad.primitive, NOTE [ Custom primitives ]; forward in scipy's
LAPACK on the host, batched over leading dims, rules written with cad ops and
these primitives, so they are recorded again and every order is exact):
  solve_sylvester  X: A X + X B = Q (Bartels-Stewart, scipy's algorithm: Schur + trsyl)
                   dX: A dX + dX B = dQ - dA X - X dB            (the same solver)
                   Y: A^T Y + Y B^T = G;  gQ = Y, gA = -Y X^T, gB = -X^T Y
  expm             dX = L(A, dA), the Frechet derivative: the upper-right block of
                   expm([[A, dA], [0, A]]) (this primitive again); gA = L(A^T, G)
  sqrtm            X dX + dX X = dA (solve_sylvester);  gA: X^T Y + Y X^T = G
  solve_banded     scipy's banded LAPACK solve (gbsv / gtsv), ab[u + i - j, j] == a[i, j]:
                   dX = solve_banded(ab, dB - dA X)     (dA X a band product, O(n (l + u)))
                   gB = solve_banded(ab^T's band, G);  gab[r, j] = -gB[i] . X[j],
                   i = r - u + j, and zero in the corners outside the matrix
                   (ab^T's band is a gather from ab, so every order is exact)
  eigh             scipy's eigh (its driver and eigenvector signs) with cad.linalg.eigh's
                   rules (undefined at repeated eigenvalues)
Compositions of cad.linalg's primitives (their rules give the derivatives):
  solve_triangular (unit_diagonal: the diagonal replaced by ones, so its gradient
  is zero), cho_factor / cholesky / eigh / solve(assume_a='sym' or 'pos') (the
  triangle scipy reads is mirrored, so the derivative is the one of scipy's
  function of every entry: zero in the triangle it ignores), cho_solve (two
  triangular solves), solve, inv, det, svd, qr, lstsq, pinv, norm,
  solve_continuous_lyapunov.
cho_factor's other triangle: scipy leaves there what a held (its "random data"
is a's entries), and so does cad (c = the factor + a's other triangle), so the
values are scipy's.  eigh's eigenvectors are scipy's (its driver, its signs).
Errors: a singular matrix, a matrix that is not positive definite, a Sylvester
equation whose A and -B share an eigenvalue, a matrix with no real square root
raise cad.linalg.LinAlgError naming the function and the shapes; check_finite
(default True, as scipy) raises ValueError on inf or nan in a concrete input.
The overwrite_* arguments are accepted and ignored (cad never writes its inputs).
On CUDA tensors every primitive computes on the host (its inputs and outputs move
through the differentiable to_device op); the compositions' cad ops run on the GPU.
"""
from __future__ import annotations

from typing import Any

import contextlib
import functools

import numpy as np

from .. import linalg as _la
from .._core import _engine as C
from ..linalg import LinAlgError
from ..ops.custom import primitive

__all__ = [
    "LinAlgError",
    "cho_factor",
    "cho_solve",
    "cholesky",
    "det",
    "eigh",
    "eigvalsh",
    "expm",
    "inv",
    "lstsq",
    "norm",
    "pinv",
    "qr",
    "solve",
    "solve_banded",
    "solve_continuous_lyapunov",
    "solve_sylvester",
    "solve_triangular",
    "sqrtm",
    "svd",
    "svdvals",
]


def _cad():
    import cad
    return cad


def _batched(x):
    return getattr(x, "__cad_batched__", False)


def _as(x):
    if isinstance(x, C.Tensor) or _batched(x):
        return x
    a = np.asarray(x)
    if a.dtype.kind in "biu":
        a = a.astype(np.float64)
    return _cad().tensor(a)


def _float(who, *xs):
    for x in xs:
        if np.dtype(x.dtype).kind != "f":
            raise C.DTypeError(f"cad.scipy.linalg.{who}: takes float64 or float32 values, got {x.dtype}")


def _finite(who, check, *xs):
    """scipy's check_finite on concrete values (a vmapped value is not concrete)"""
    if not check:
        return
    for x in xs:
        if isinstance(x, C.Tensor) and x.size and not bool(_cad().all(_cad().isfinite(x.detach()))):
            raise ValueError(f"cad.scipy.linalg.{who}: array must not contain infs or NaNs "
                             f"(shape {tuple(x.shape)})")


def _square(who, a, name="a"):
    if a.ndim < 2 or a.shape[-1] != a.shape[-2]:
        raise C.ShapeError(f"cad.scipy.linalg.{who}: {name} must be a (batch of) square matrices, "
                           f"got shape {tuple(a.shape)}")


@contextlib.contextmanager
def _named(who):
    """cad.linalg's LinAlgError re-raised under the scipy name"""
    try:
        yield
    except LinAlgError as e:
        msg = str(e)
        if msg.startswith("cad.linalg."):
            msg = msg.split(": ", 1)[-1]
        raise LinAlgError(f"cad.scipy.linalg.{who}: {msg}") from None


def _T(x):
    return _cad().swapaxes(x, -1, -2)


def _mm(a, b):
    return _cad().matmul(a, b)


def _eye(n, dtype):
    return _cad().tensor(np.eye(n), dtype=dtype)


def _sum_to(g, shape):
    """g summed over the leading dims that a (broadcast) input of this shape lacks"""
    shape = tuple(shape)
    if tuple(g.shape) == shape:
        return g
    cad = _cad()
    lead = g.ndim - len(shape)
    if lead:
        g = cad.sum(g, axis=tuple(range(lead)))
    ax = tuple(i for i, (s, t) in enumerate(zip(shape, g.shape)) if s == 1 and t != 1)
    if ax:
        g = cad.sum(g, axis=ax, keepdims=True)
    return g


# ---------------------------------------------------------------- solve_sylvester

def _sylv_one(a, b, q):
    """scipy.linalg.solve_sylvester's algorithm, with trsyl's info read: 1 means A
    and -B have (nearly) common eigenvalues and the solution is not unique"""
    import scipy.linalg as sl
    r, u = sl.schur(a, output="real")
    s, v = sl.schur(b.T, output="real")
    f = u.T @ q @ v
    trsyl, = sl.get_lapack_funcs(("trsyl",), (r, s, f))
    y, scale, info = trsyl(r, s, f, tranb="C")
    if info != 0:
        return None
    return u @ (scale * y) @ v.T


@primitive
def _sylv(a, b, q):
    """X with A X + X B = Q, batched over leading dims (broadcast)"""
    a, b, q = np.asarray(a), np.asarray(b), np.asarray(q)
    dt = np.result_type(a, b, q)
    lead = np.broadcast_shapes(a.shape[:-2], b.shape[:-2], q.shape[:-2])
    m, n = a.shape[-1], b.shape[-1]
    out = np.empty(lead + (m, n), dtype=dt)
    if m == 0 or n == 0:
        return out
    A = np.broadcast_to(a, lead + (m, m)).reshape((-1, m, m))
    B = np.broadcast_to(b, lead + (n, n)).reshape((-1, n, n))
    Q = np.broadcast_to(q, lead + (m, n)).reshape((-1, m, n))
    flat = out.reshape((-1, m, n))
    for k in range(flat.shape[0]):
        x = _sylv_one(A[k].astype(dt), B[k].astype(dt), Q[k].astype(dt))
        if x is None or not np.all(np.isfinite(x)):
            raise LinAlgError(f"cad.scipy.linalg.solve_sylvester: a and -b have (nearly) common "
                              f"eigenvalues, the solution is not unique (shapes {a.shape}, "
                              f"{b.shape}, {q.shape})")
        flat[k] = x
    return out


@_sylv.defjvp
def _sylv_jvp(ts, x, a, b, q):
    da, db, dq = ts
    return _sylv(a, b, dq - _mm(da, x) - _mm(x, db))


@_sylv.defvjp
def _sylv_vjp(g, x, a, b, q):
    y = _sylv(_T(a), _T(b), g)
    return (_sum_to(-_mm(y, _T(x)), a.shape), _sum_to(-_mm(_T(x), y), b.shape), _sum_to(y, q.shape))


_sylv.defvmap(lambda a, b, q: _sylv(a, b, q))


def solve_sylvester(a: Any, b: Any, q: Any) -> C.Tensor:
    """X with a X + X b = q (scipy.linalg.solve_sylvester; a (..., m, m), b
    (..., n, n), q (..., m, n))"""
    a, b, q = _as(a), _as(b), _as(q)
    _float("solve_sylvester", a, b, q)
    _square("solve_sylvester", a, "a")
    _square("solve_sylvester", b, "b")
    if q.ndim < 2 or tuple(q.shape[-2:]) != (a.shape[-1], b.shape[-1]):
        raise C.ShapeError(f"cad.scipy.linalg.solve_sylvester: a of shape {tuple(a.shape)} and b of "
                           f"shape {tuple(b.shape)} need q of shape (..., {a.shape[-1]}, "
                           f"{b.shape[-1]}), got {tuple(q.shape)}")
    return _sylv(a, b, q)


def solve_continuous_lyapunov(a: Any, q: Any) -> C.Tensor:
    """X with a X + X a^T = q (scipy.linalg.solve_continuous_lyapunov, real a)"""
    a = _as(a)
    _square("solve_continuous_lyapunov", a)
    with _named("solve_continuous_lyapunov"):
        return solve_sylvester(a, _T(a), q)


# ---------------------------------------------------------------- expm

@primitive
def _expm(a):
    import scipy.linalg as sl
    a = np.asarray(a)
    if a.shape[-1] == 0:
        return np.zeros(a.shape, a.dtype)
    return np.asarray(sl.expm(a), dtype=a.dtype)


def _frechet(a, e):
    """L(A, E): the upper-right block of expm([[A, E], [0, A]]), with cad ops and
    _expm itself, so it is differentiable again"""
    cad = _cad()
    n = a.shape[-1]
    e = e + 0 * a if tuple(e.shape) != tuple(a.shape) else e
    a = a + 0 * e if tuple(a.shape) != tuple(e.shape) else a
    top = cad.concatenate([a, e], axis=-1)
    bottom = cad.concatenate([cad.zeros_like(a), a], axis=-1)
    big = _expm(cad.concatenate([top, bottom], axis=-2))
    return big[..., :n, n:]


_expm.defjvp(lambda ts, x, a: _frechet(a, ts[0]))
_expm.defvjp(lambda g, x, a: (_sum_to(_frechet(_T(a), g), a.shape),))
_expm.defvmap(lambda a: _expm(a))


def expm(A: Any) -> C.Tensor:
    """the matrix exponential of A (..., n, n) (scipy.linalg.expm)"""
    A = _as(A)
    _float("expm", A)
    _square("expm", A, "A")
    return _expm(A)


# ---------------------------------------------------------------- sqrtm

@primitive
def _sqrtm(a):
    import scipy.linalg as sl
    a = np.asarray(a)
    if a.shape[-1] == 0:
        return np.zeros(a.shape, a.dtype)
    x = np.asarray(sl.sqrtm(a))
    if x.dtype.kind == "c":
        if np.any(np.abs(x.imag) > 1e3 * np.finfo(a.dtype).eps * max(1.0, float(np.abs(x).max()))):
            raise LinAlgError(f"cad.scipy.linalg.sqrtm: the matrix (shape {a.shape}) has no real "
                              "square root (a negative real eigenvalue); cad computes real roots only")
        x = x.real
    if not np.all(np.isfinite(x)):
        raise LinAlgError(f"cad.scipy.linalg.sqrtm: no square root could be computed (a singular "
                          f"matrix with a defective zero eigenvalue? shape {a.shape})")
    return x.astype(a.dtype, copy=False)


_sqrtm.defjvp(lambda ts, x, a: _sylv(x, x, ts[0]))
_sqrtm.defvjp(lambda g, x, a: (_sum_to(_sylv(_T(x), _T(x), g), a.shape),))
_sqrtm.defvmap(lambda a: _sqrtm(a))


def sqrtm(A: Any, disp: Any = True, blocksize: Any = 64) -> Any:
    """the principal square root X of A (X @ X = A), real A with a real root
    (scipy.linalg.sqrtm; a negative real eigenvalue raises LinAlgError, since the
    root is complex).  disp=False returns (X, errest) as older scipy did, errest =
    ||X X - A||_F^2 / ||A||_F; blocksize is accepted and ignored."""
    A = _as(A)
    _float("sqrtm", A)
    _square("sqrtm", A, "A")
    X = _sqrtm(A)
    if disp:
        return X
    xn, an = np.asarray(X.detach().cpu()), np.asarray(A.detach().cpu())
    return X, float(np.linalg.norm(xn @ xn - an) ** 2 / np.linalg.norm(an))


# ---------------------------------------------------------------- triangular and Cholesky

def _trans(who, trans):
    if trans in (0, "N", "n"):
        return False
    if trans in (1, 2, "T", "C", "t", "c"):
        return True
    raise ValueError(f"cad.scipy.linalg.{who}: trans must be 0, 1, 2, 'N', 'T' or 'C', got {trans!r}")


def solve_triangular(a: Any, b: Any, trans: Any = 0, lower: Any = False, unit_diagonal: Any = False,
                     overwrite_b: Any = False, check_finite: Any = True) -> C.Tensor:
    """x with op(T) x = b, T a's upper (lower=True: lower) triangle, op per trans
    (scipy.linalg.solve_triangular; b a vector or a (batch of) matrices)"""
    a, b = _as(a), _as(b)
    _float("solve_triangular", a, b)
    _square("solve_triangular", a)
    _finite("solve_triangular", check_finite, a, b)
    t = _trans("solve_triangular", trans)
    if unit_diagonal:
        n = a.shape[-1]
        eye = _eye(n, a.dtype)
        a = a * (1.0 - eye) + eye
    _check_rows("solve_triangular", a, b)
    with _named("solve_triangular"):
        return _la.triangular_solve(a, b, lower=bool(lower), trans=t)


def _check_rows(who, a, b):
    n = a.shape[-1]
    if b.ndim == 0 or (b.ndim == 1 and b.shape[0] != n) or (b.ndim > 1 and b.shape[-2] != n):
        raise C.ShapeError(f"cad.scipy.linalg.{who}: a of shape {tuple(a.shape)} and b of shape "
                           f"{tuple(b.shape)} are incompatible (b needs {n} rows)")


def _sym_from(a, lower):
    """the symmetric matrix scipy's LAPACK call sees: a's lower (upper) triangle mirrored"""
    cad = _cad()
    if lower:
        return cad.tril(a) + _T(cad.tril(a, -1))
    return cad.triu(a) + _T(cad.triu(a, 1))


def _chol(who, a, lower, check_finite):
    a = _as(a)
    _float(who, a)
    _square(who, a)
    _finite(who, check_finite, a)
    with _named(who):
        L = _la.cholesky(_sym_from(a, lower))
    return a, (L if lower else _T(L))


def cholesky(a: Any, lower: Any = False, overwrite_a: Any = False, check_finite: Any = True) -> C.Tensor:
    """the Cholesky factor of a: upper U with a = U^T U by default (scipy's
    convention; lower=True: L with a = L L^T); only that triangle of a is read"""
    return _chol("cholesky", a, lower, check_finite)[1]


def cho_factor(a: Any, lower: Any = False, overwrite_a: Any = False, check_finite: Any = True) -> Any:
    """(c, lower) for cho_solve: c holds the factor in its upper (lower) triangle
    and a's entries in the other, as scipy's (NOTE [ scipy.linalg ])"""
    a, f = _chol("cho_factor", a, lower, check_finite)
    cad = _cad()
    c = f + (cad.triu(a, 1) if lower else cad.tril(a, -1))
    return c, bool(lower)


def cho_solve(c_and_lower: Any, b: Any, overwrite_b: Any = False, check_finite: Any = True) -> C.Tensor:
    """x with a x = b from cho_factor's (c, lower): two triangular solves"""
    if not isinstance(c_and_lower, (tuple, list)) or len(c_and_lower) != 2:
        raise TypeError("cad.scipy.linalg.cho_solve: the first argument must be the pair (c, lower) "
                        f"that cho_factor returns, got {type(c_and_lower).__name__}")
    c, lower = c_and_lower
    c, b = _as(c), _as(b)
    _float("cho_solve", c, b)
    _square("cho_solve", c, "c")
    _finite("cho_solve", check_finite, c, b)
    _check_rows("cho_solve", c, b)
    with _named("cho_solve"):
        if lower:   # L L^T x = b
            y = _la.triangular_solve(c, b, lower=True)
            return _la.triangular_solve(c, y, lower=True, trans=True)
        y = _la.triangular_solve(c, b, lower=False, trans=True)   # U^T U x = b
        return _la.triangular_solve(c, y, lower=False)


# ---------------------------------------------------------------- banded

@functools.lru_cache(maxsize=32)
def _band_maps(l, u, n):
    """index arrays (read-only) into flat band storage (l + u + 1, n) plus a zero
    slot at the end, and into a flat vector of n rows plus a zero row:
      mv_ab, mv_x  (R, n): ab[r, j] and x[j] with j = i + u - r, for (A x)_i
      t_ab         (R, n): the storage of A^T (lower u, upper l) gathered from ab
      rows         (R, n): i = r - u + j, the row of A that ab[r, j] sits in"""
    R = l + u + 1
    r = np.arange(R)[:, None]
    c = np.arange(n)[None, :]
    zslot = R * n
    j = c + u - r                     # column read for output row c
    ok = (j >= 0) & (j < n)
    mv_ab = np.where(ok, r * n + j, zslot)
    mv_x = np.where(ok, j, n)
    i = r - l + c                     # A^T's band: abT[r, c] = A[c, i] = ab[u + c - i, i]
    ok = (i >= 0) & (i < n)
    t_ab = np.where(ok, (u + l - r) * n + i, zslot)
    i = r - u + c
    rows = np.where((i >= 0) & (i < n), i, n)
    out = []
    for m in (mv_ab, mv_x, t_ab, rows):
        m = np.ascontiguousarray(m)
        m.flags.writeable = False
        out.append(m)
    return tuple(out)


def _flat_ext(ab):
    cad = _cad()
    return cad.pad(cad.reshape(ab, (ab.shape[0] * ab.shape[1],)), (0, 1))


def _rows_ext(x):
    return _cad().pad(x, ((0, 1), (0, 0)))


def _band_mv(ab, x, l, u):
    """A x for A in band storage ab, x (n, k): O(n (l + u) k), with cad ops"""
    mv_ab, mv_x, _, _ = _band_maps(l, u, ab.shape[1])
    P = _flat_ext(ab)[mv_ab]                  # (R, n)
    X = _rows_ext(x)[mv_x]                    # (R, n, k)
    return _cad().sum(_cad().unsqueeze(P, -1) * X, axis=0)


def _band_T(ab, l, u):
    """A^T's band storage (lower u, upper l)"""
    return _flat_ext(ab)[_band_maps(l, u, ab.shape[1])[2]]


@primitive
def _banded(ab, b, l, u):
    """x with A x = b, A in band storage ab (l + u + 1, n), b (n, k): scipy's
    solve_banded (LAPACK gbsv / gtsv)"""
    import scipy.linalg as sl
    ab, b = np.asarray(ab), np.asarray(b)
    try:
        return sl.solve_banded((l, u), ab, b, check_finite=False)
    except np.linalg.LinAlgError as e:
        raise LinAlgError(f"cad.scipy.linalg.solve_banded: {e} (shapes {ab.shape}, {b.shape}, "
                          f"l={l}, u={u})") from None


@_banded.defjvp
def _banded_jvp(ts, x, ab, b, l, u):
    return _banded(ab, ts[1] - _band_mv(ts[0], x, l, u), l, u)


@_banded.defvjp
def _banded_vjp(g, x, ab, b, l, u):
    gb = _banded(_band_T(ab, l, u), g, u, l)
    rows = _band_maps(l, u, ab.shape[1])[3]
    G = _rows_ext(gb)[rows]                   # (R, n, k): gb[i] for ab[r, j], i = r - u + j
    gab = -_cad().sum(G * _cad().unsqueeze(x, 0), axis=-1)
    return (gab, gb, None, None)


def solve_banded(l_and_u: Any, ab: Any, b: Any, overwrite_ab: Any = False, overwrite_b: Any = False,
                 check_finite: Any = True) -> C.Tensor:
    """x with a x = b, a given in band storage ab[u + i - j, j] == a[i, j]
    (scipy.linalg.solve_banded: its LAPACK call; the derivatives are O(n (l + u))
    band products and banded solves with a and a^T, zero outside the band)"""
    try:
        l, u = (int(v) for v in l_and_u)
    except (TypeError, ValueError):
        raise TypeError("cad.scipy.linalg.solve_banded: l_and_u must be the pair (l, u)") from None
    ab, b = _as(ab), _as(b)
    _float("solve_banded", ab, b)
    _finite("solve_banded", check_finite, ab, b)
    if ab.ndim != 2:
        raise C.ShapeError(f"cad.scipy.linalg.solve_banded: ab must be 2-D (l + u + 1, n), got shape "
                           f"{tuple(ab.shape)}")
    if l < 0 or u < 0 or l + u + 1 != ab.shape[0]:
        raise ValueError(f"cad.scipy.linalg.solve_banded: invalid values for the number of lower and "
                         f"upper diagonals: l+u+1 ({l + u + 1}) does not equal ab.shape[0] "
                         f"({ab.shape[0]})")
    n = ab.shape[1]
    if b.ndim == 0 or b.shape[0] != n:
        raise ValueError(f"cad.scipy.linalg.solve_banded: shapes of ab {tuple(ab.shape)} and b "
                         f"{tuple(b.shape)} are not compatible")
    cad = _cad()
    dt = np.result_type(np.dtype(ab.dtype), np.dtype(b.dtype))
    ab = ab if ab.dtype == dt else cad.astype(ab, dt)
    b = b if b.dtype == dt else cad.astype(b, dt)
    x = _banded(ab, cad.reshape(b, (n, -1)), l, u)
    return cad.reshape(x, tuple(b.shape))


# ---------------------------------------------------------------- cad.linalg under scipy's conventions

_ASSUME = {None: "gen", "gen": "gen", "general": "gen", "sym": "sym", "symmetric": "sym",
           "her": "sym", "hermitian": "sym", "pos": "pos", "positive definite": "pos",
           "diagonal": "diag", "tridiagonal": "tri", "banded": "gen",
           "upper triangular": "upper", "lower triangular": "lower"}


def solve(a: Any, b: Any, lower: Any = False, overwrite_a: Any = False, overwrite_b: Any = False,
          check_finite: Any = True, assume_a: Any = None, transposed: Any = False) -> C.Tensor:
    """x with a x = b (scipy.linalg.solve; transposed: a^T x = b).  assume_a 'sym',
    'her', 'pos' read one triangle (lower), 'diagonal' the diagonal, 'tridiagonal'
    three diagonals, the triangular ones a triangle, as scipy's LAPACK calls do;
    the solve itself is cad.linalg.solve's LU (values equal scipy's to rounding)."""
    if assume_a not in _ASSUME:
        raise ValueError(f"cad.scipy.linalg.solve: assume_a {assume_a!r} is not one of "
                         f"{sorted(k for k in _ASSUME if k)}")
    a, b = _as(a), _as(b)
    _float("solve", a, b)
    _square("solve", a)
    _finite("solve", check_finite, a, b)
    _check_rows("solve", a, b)
    kind = _ASSUME[assume_a]
    cad = _cad()
    if kind in ("upper", "lower"):
        return solve_triangular(a, b, trans=1 if transposed else 0, lower=kind == "lower",
                                check_finite=False)
    if transposed:
        a = _T(a)
    if kind in ("sym", "pos"):
        a = _sym_from(a, lower)
    elif kind == "diag":
        a = a * _eye(a.shape[-1], a.dtype)
    elif kind == "tri":
        n = a.shape[-1]
        a = a * cad.tensor(np.tri(n, n, 1) - np.tri(n, n, -2), dtype=a.dtype)
    with _named("solve"):
        if b.ndim > 2 and a.ndim == 2:   # scipy: b (n, ...) with a (n, n)
            x = _la.solve(a, cad.reshape(b, (b.shape[0], -1)))
            return cad.reshape(x, tuple(b.shape))
        return _la.solve(a, b)


def inv(a: Any, overwrite_a: Any = False, check_finite: Any = True, *, assume_a: Any = None,
        lower: Any = False) -> C.Tensor:
    """a^-1 (scipy.linalg.inv)"""
    a = _as(a)
    _float("inv", a)
    _square("inv", a)
    _finite("inv", check_finite, a)
    if assume_a in ("sym", "her", "pos", "symmetric", "hermitian", "positive definite"):
        a = _sym_from(a, lower)
    elif assume_a in ("upper triangular", "lower triangular"):
        a = _cad().triu(a) if assume_a.startswith("upper") else _cad().tril(a)
    with _named("inv"):
        return _la.inv(a)


def det(a: Any, overwrite_a: Any = False, check_finite: Any = True) -> C.Tensor:
    """det(a) (scipy.linalg.det; batched)"""
    a = _as(a)
    _float("det", a)
    _square("det", a)
    _finite("det", check_finite, a)
    with _named("det"):
        return _la.det(a)


@primitive
def _eigh_sp(a, lower=True):
    """scipy's eigh (its driver, its eigenvector signs), batched"""
    import scipy.linalg as sl
    a = np.asarray(a)
    n = a.shape[-1]
    if n == 0:
        return np.zeros(a.shape[:-1], a.dtype), np.zeros(a.shape, a.dtype)
    flat = a.reshape((-1, n, n))
    w = np.empty(flat.shape[:-1], a.dtype)
    V = np.empty(flat.shape, a.dtype)
    for k in range(flat.shape[0]):
        try:
            w[k], V[k] = sl.eigh(flat[k], lower=lower, check_finite=False)
        except np.linalg.LinAlgError as e:
            raise LinAlgError(f"cad.scipy.linalg.eigh: {e} (shape {a.shape})") from None
    return w.reshape(a.shape[:-1]), V.reshape(a.shape)


_eigh_sp.defjvp(lambda ts, ans, a, lower=True: _la._eigh_jvp(ts, ans, a))
_eigh_sp.defvjp(lambda g, ans, a, lower=True: _la._eigh_vjp(g, ans, a))
_eigh_sp.defvmap(lambda a, lower=True: _eigh_sp(a, lower))


def eigh(a: Any, b: Any = None, *, lower: Any = True, eigvals_only: Any = False,
         overwrite_a: Any = False, overwrite_b: Any = False, type: Any = 1, check_finite: Any = True,
         subset_by_index: Any = None, subset_by_value: Any = None, driver: Any = None) -> Any:
    """(w, v) of a real symmetric a, ascending (scipy.linalg.eigh, the standard
    problem: b=None; subset_by_index [lo, hi] supported).  The derivative is the
    symmetric one (a perturbation of the triangle read moves both of its mirror
    entries' contributions), as cad.linalg.eigh; undefined at repeated eigenvalues."""
    if b is not None:
        raise NotImplementedError("cad.scipy.linalg.eigh: the generalized problem (b given) is "
                                  "not supported")
    if subset_by_value is not None:
        raise NotImplementedError("cad.scipy.linalg.eigh: subset_by_value is not supported "
                                  "(use subset_by_index)")
    a = _as(a)
    _float("eigh", a)
    _square("eigh", a)
    _finite("eigh", check_finite, a)
    w, V = _eigh_sp(_sym_from(a, lower), bool(lower))   # the triangle scipy reads
    if subset_by_index is not None:
        lo, hi = (int(i) for i in subset_by_index)
        n = a.shape[-1]
        if not 0 <= lo <= hi < n:
            raise ValueError(f"cad.scipy.linalg.eigh: subset_by_index {subset_by_index!r} out of "
                             f"range for shape {tuple(a.shape)}")
        w, V = w[..., lo:hi + 1], V[..., :, lo:hi + 1]
    return w if eigvals_only else (w, V)


def eigvalsh(a: Any, b: Any = None, *, lower: Any = True, overwrite_a: Any = False,
             overwrite_b: Any = False, type: Any = 1, check_finite: Any = True,
             subset_by_index: Any = None, subset_by_value: Any = None, driver: Any = None) -> C.Tensor:
    """eigh's eigenvalues (scipy.linalg.eigvalsh)"""
    return eigh(a, b, lower=lower, eigvals_only=True, check_finite=check_finite,
                subset_by_index=subset_by_index, subset_by_value=subset_by_value)


def svd(a: Any, full_matrices: Any = True, compute_uv: Any = True, overwrite_a: Any = False,
        check_finite: Any = True, lapack_driver: Any = "gesdd") -> Any:
    """(U, s, Vh) (scipy.linalg.svd; derivatives for full_matrices=False or a square
    a, and for s; lapack_driver is accepted, the driver is gesdd as scipy's default)"""
    if lapack_driver not in ("gesdd", "gesvd"):
        raise ValueError(f"cad.scipy.linalg.svd: lapack_driver must be 'gesdd' or 'gesvd', got "
                         f"{lapack_driver!r}")
    a = _as(a)
    _float("svd", a)
    _finite("svd", check_finite, a)
    with _named("svd"):
        return _la.svd(a, full_matrices=full_matrices, compute_uv=compute_uv)


def svdvals(a: Any, overwrite_a: Any = False, check_finite: Any = True) -> C.Tensor:
    return svd(a, compute_uv=False, check_finite=check_finite)


def qr(a: Any, overwrite_a: Any = False, lwork: Any = None, mode: Any = "full", pivoting: Any = False,
       check_finite: Any = True) -> Any:
    """scipy.linalg.qr: mode 'full' (Q (m, m); differentiable when m <= n), 'economic'
    (Q (m, k)), 'r' (returns (R,), R (m, n) as scipy); pivoting=True adds scipy's column
    permutation P (locally constant) and factors a[:, P].  Derivatives need m >= n
    (cad.linalg.qr's rule), so a differentiable 'full' Q needs a square a."""
    if mode not in ("full", "economic", "r"):
        raise ValueError(f"cad.scipy.linalg.qr: mode {mode!r}; cad has 'full', 'economic' and 'r'")
    a = _as(a)
    _float("qr", a)
    if a.ndim != 2:
        raise C.ShapeError(f"cad.scipy.linalg.qr: needs a matrix, got shape {tuple(a.shape)}")
    _finite("qr", check_finite, a)
    perm = None
    if pivoting:
        import scipy.linalg as sl
        perm = sl.qr(np.asarray(a.detach().cpu()), mode="r", pivoting=True)[1]
        a = a[:, perm]
    m, n = a.shape
    if mode == "r" and m > n:   # scipy's R is (m, n): zero rows below the reduced R
        r = _la.qr(a)[1]
        r = _cad().concatenate([r, _cad().zeros((m - n, n), dtype=r.dtype) + 0 * r[:1]], axis=0)
        return (r, perm) if pivoting else (r,)
    if mode == "full" and m > n:
        if a.requires_grad:
            raise ValueError(f"cad.scipy.linalg.qr: derivatives of mode='full' need m <= n (the extra "
                             f"columns of Q are not unique), got shape {tuple(a.shape)}; use "
                             f"mode='economic'")
        import scipy.linalg as sl
        q, r = (_cad().tensor(x) for x in sl.qr(np.asarray(a.detach().cpu()), mode="full"))
    elif m < n:
        # a = Q [R1 R2]: Q R1 from the leading square block, R2 = Q^T a[:, m:]
        q, r1 = _la.qr(a[:, :m])
        r = _cad().concatenate([r1, _mm(_T(q), a[:, m:])], axis=-1)
    else:
        q, r = _la.qr(a)
    if mode == "r":
        return (r, perm) if pivoting else (r,)
    return (q, r, perm) if pivoting else (q, r)


def lstsq(a: Any, b: Any, cond: Any = None, overwrite_a: Any = False, overwrite_b: Any = False,
          check_finite: Any = True, lapack_driver: Any = None) -> Any:
    """(x, residues, rank, s) (scipy.linalg.lstsq) for an a of full column rank
    (m >= n; x and residues are differentiable, through QR); residues are the
    squared column norms of b - a x when m > n, else empty, as scipy"""
    a, b = _as(a), _as(b)
    _float("lstsq", a, b)
    _finite("lstsq", check_finite, a, b)
    with _named("lstsq"):
        x, _, rank, s = _la.lstsq(a, b, rcond=cond)
    cad = _cad()
    m, n = a.shape
    if m > n and rank == n:
        r = b - _mm(a, x) if x.ndim > 1 else b - cad.matmul(a, x)
        res = cad.sum(r * r, axis=0)
    else:
        res = cad.zeros((0,), dtype=x.dtype)
    return x, res, rank, s


def pinv(a: Any, *, atol: Any = None, rtol: Any = None, return_rank: Any = False, check_finite: Any = True) -> Any:
    """the pseudo-inverse through the SVD (scipy.linalg.pinv: singular values
    above atol + rtol * s_max kept; rtol defaults to max(m, n) * eps when atol is
    not given, else 0); differentiable where the rank is constant"""
    a = _as(a)
    _float("pinv", a)
    _finite("pinv", check_finite, a)
    cad = _cad()
    with _named("pinv"):
        u, s, vh = _la.svd(a, full_matrices=False)
    sv = np.asarray(s.detach().cpu()) if isinstance(s, C.Tensor) else None
    if sv is None:
        raise ValueError("cad.scipy.linalg.pinv: the rank is data dependent (not under vmap)")
    atol_ = 0.0 if atol is None else float(atol)
    rtol_ = (max(a.shape[-2:]) * np.finfo(np.dtype(s.dtype)).eps if atol is None else 0.0) \
        if rtol is None else float(rtol)
    smax = sv.max(axis=-1, keepdims=True) if sv.size else np.zeros(sv.shape[:-1] + (1,))
    keep = sv > atol_ + rtol_ * smax
    kt = cad.tensor(keep)
    sinv = cad.where(kt, 1.0 / cad.where(kt, s, 1.0), 0.0)
    B = _mm(_T(vh) * cad.unsqueeze(sinv, -2), _T(u))
    if return_rank:
        rank = keep.sum(axis=-1)
        return B, (int(rank) if rank.ndim == 0 else rank)
    return B


def norm(a: Any, ord: Any = None, axis: Any = None, keepdims: Any = False, check_finite: Any = True) -> C.Tensor:
    """scipy.linalg.norm (cad.norm: vector norms and every matrix norm)"""
    a = _as(a)
    _finite("norm", check_finite, a)
    return _cad().norm(a, ord=ord, axis=axis, keepdims=keepdims)
