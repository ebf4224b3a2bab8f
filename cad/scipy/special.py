"""cad.scipy.special: scipy.special's functions under scipy's names and signatures,
with exact derivatives of every order through every cad transform.

NOTE [ Special functions ]
Three kinds of function live here:
- the op table's own (gammaln, digamma, polygamma, erf, erfc, erfinv, xlogy,
  sigmoid as expit, logsumexp, softmax, log_softmax), re-exported with scipy's
  signatures (scipy reduces over all axes when axis=None; cad's softmax defaults
  to the last axis, so the wrappers here pass scipy's default explicitly);
- the op-table lines of cad/scipy/_table_special.py (gamma, rgamma, gammasgn,
  erfcinv, logit, xlog1py, ndtr, log_ndtr, ndtri, j0, j1, y0, y1, jn, yn, i0, i1,
  i0e, i1e);
- user primitives (cad.primitive, NOTE [ Custom primitives ]) whose forward is
  scipy.special in float64 (a float32 call is computed in float64 and rounded) and
  whose rules are written with cad ops and these primitives, so every order is
  right: beta, betaln, gammainc, gammaincc, betainc, iv, ive, kv.  Only the
  Bessel functions' order v is not differentiable (a v that requires grad raises
  NotImplementedError naming the function and the argument).  Each is
  elementwise: the arguments are broadcast with cad ops before the call (so the
  rules see equal shapes) and a vmap rule calls it once on the batch.  On CUDA
  tensors these compute on the host.

Derivatives of the regularized incomplete gamma in its first argument
(_gammainc_da, order k >= 1 in a, every k): with t_n = x^(a+n) e^-x / Gamma(a+n+1)
the series P = sum_n t_n gives d^kP/da^k = sum_n t_n B_k(g'_n, g''_n, ...), B_k the
complete Bell polynomial and g_n = (a+n) log x - x - gammaln(a+n+1) (so
g'_n = log x - psi(a+n+1), g^(j)_n = -psi^(j-1)(a+n+1)).  In the upper region
(x > a + 1 + 2 sqrt(a), x > 8) the series cancels, so Q = 1 - P is used instead:
Q = (1/l) int_0^inf e^-s exp((a-1) log(x + s/l) - x - s/l + s - gammaln(a)) ds with
a constant l = max(1 - (a-1)/x, 1/2) (chosen from a's value, then held fixed) that
makes the integrand flat at s = 0, by Gauss-Laguerre (96 nodes); its k-th a-derivative puts B_k(log(x+s/l) - psi(a),
-psi'(a), ...) under the integral.  Every term then has one sign where Q is small,
so the tails keep their relative accuracy.  d/dx of d^kP/da^k is the k-th
a-derivative of the density exp((a-1) log x - x - gammaln(a)), written with cad
ops (Bell again, on polygamma), so mixed and higher orders are all exact.

The regularized incomplete beta the same way, in two parameters (_betainc_d, the
primitive d_a^j d_b^m I for every j, m): I_x(a, b) = sum_n t_n with
t_n = x^(a+n) (1-x)^b Gamma(a+b+n) / (Gamma(b) Gamma(a+n+1)) (all terms positive),
used below the mean x <= (a+1)/(a+b+2) and through I_x(a, b) = 1 - I_(1-x)(b, a)
above it; d_a^j d_b^m t_n = t_n P_jm(g's partials) with P_jm the multivariate
Faa di Bruno polynomial of g_n = log t_n (_fdb_poly, built once per (j, m)).  The
x-derivative of d_a^j d_b^m I is the same polynomial on the density's log,
written with cad ops.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import scipy.special as _sc

from .._core import _engine as C
from ..ops.custom import primitive
from ._table_special import (
    erfcinv,
    gamma,
    gammasgn,
    i0,
    i0e,
    i1,
    i1e,
    j0,
    j1,
    jn,
    log_ndtr,
    logit,
    ndtr,
    ndtri,
    rgamma,
    xlog1py,
    y0,
    y1,
    yn,
)

__all__ = [
    "beta", "betainc", "betaln", "digamma", "erf", "erfc", "erfcinv", "erfinv", "expit",
    "gamma", "gammainc", "gammaincc", "gammaln", "gammasgn", "i0", "i0e", "i1", "i1e",
    "iv", "ive", "j0", "j1", "jn", "kv", "log_ndtr", "log_softmax", "logit", "logsumexp",
    "multigammaln", "ndtr", "ndtri", "polygamma", "psi", "rgamma", "softmax", "xlog1py",
    "xlogy", "y0", "y1", "yn",
]


def _cad():
    import cad
    return cad


# ---------------------------------------------------------------- helpers

def _is_t(x):
    """a cad tensor or a vmap Batched value"""
    return isinstance(x, C.Tensor) or (hasattr(x, "val") and hasattr(x, "level"))


def _dtype(xs):
    """numpy's promotion for float arguments (a Python scalar does not upcast float32)"""
    dts = [np.dtype(x.dtype) for x in xs if _is_t(x) or isinstance(x, np.ndarray)]
    dts = [d for d in dts if d.kind == "f"]
    dt = np.result_type(*dts) if dts else np.dtype(np.float64)
    return np.dtype(np.float32) if dt == np.float32 else np.dtype(np.float64)


def _bcast(*xs, who="cad.scipy", names=None, expand=True):
    """the arguments as float tensors of one dtype, broadcast to one shape (cad ops,
    so the broadcast's own rule sums cotangents back); shapes that do not broadcast
    raise ShapeError naming who and the arguments (names) with their shapes.
    expand=False: checked, but left in their shapes for the ops to broadcast (a scalar
    parameter of a distribution is then evaluated once, not once per element of x)"""
    cad = _cad()
    dt = _dtype(xs)
    dev = next((x.device for x in xs if _is_t(x) and getattr(x, "device", None) is not None), None)
    ts = [x if _is_t(x) else cad.tensor(np.asarray(x, dtype=np.float64), dtype=dt, device=dev) for x in xs]
    ts = [cad.astype(t, dt) if np.dtype(t.dtype) != dt else t for t in ts]
    try:
        shape = np.broadcast_shapes(*[tuple(t.shape) for t in ts])
    except ValueError:
        names = names or [f"argument {k}" for k in range(len(ts))]
        raise C.ShapeError(f"{who}: the shapes of " + ", ".join(f"{n} {tuple(t.shape)}" for n, t in zip(names, ts))
                           + " do not broadcast") from None
    if not expand:
        return ts
    return [cad.broadcast_to(t, shape) if tuple(t.shape) != shape else t for t in ts]


def _needs_grad(x):
    """x is differentiated (requires grad on a tape, or a Batched value over one)"""
    while hasattr(x, "val") and hasattr(x, "level"):
        x = x.val
    return isinstance(x, C.Tensor) and x.requires_grad


def _no_grad_in(fname, argname, x, why=""):
    if _needs_grad(x):
        raise NotImplementedError(
            f"cad.scipy.special.{fname}: not differentiable in its argument {argname!r}"
            f"{why}; pass it as a constant (a float, an array, or a tensor that does not "
            f"require grad)")


def _elementwise(name, fn):
    """an elementwise primitive over float64 scipy (float32 rounded back)"""
    @primitive(name=name)
    def p(*xs):
        arrs = [np.asarray(x) for x in xs]
        dt = _dtype(arrs)
        with np.errstate(all="ignore"):
            return np.asarray(fn(*[a.astype(np.float64) for a in arrs]), dtype=dt)
    p.defvmap(lambda *xs: p(*_bcast(*xs)))
    return p


def _bell(d, k):
    """the complete Bell polynomial B_k(d[0], ..., d[k-1]) (numpy arrays or tensors)"""
    B = [1.0]
    for m in range(k):
        s = 0.0
        for i in range(m + 1):
            s = s + float(_sc.comb(m, i, exact=True)) * B[m - i] * d[i]
        B.append(s)
    return B[k]


# ---------------------------------------------------------------- the op table's

def gammaln(x: Any) -> C.Tensor:
    """log|Gamma(x)|; differentiable in x"""
    return _cad().gammaln(x)


def digamma(x: Any) -> C.Tensor:
    """psi(x) = d/dx log Gamma(x); differentiable in x"""
    return _cad().digamma(x)


psi = digamma


def polygamma(n: Any, x: Any) -> C.Tensor:
    """the n-th derivative of digamma (n an integer); differentiable in x"""
    return _cad().polygamma(n, x)


def erf(z: Any) -> C.Tensor:
    """the error function; differentiable in z"""
    return _cad().erf(z)


def erfc(x: Any) -> C.Tensor:
    """1 - erf(x), accurate in the tail; differentiable in x"""
    return _cad().erfc(x)


def erfinv(y: Any) -> C.Tensor:
    """the inverse of erf; differentiable in y"""
    return _cad().erfinv(y)


def expit(x: Any) -> C.Tensor:
    """the logistic sigmoid 1 / (1 + exp(-x)); differentiable in x"""
    return _cad().sigmoid(x)


def xlogy(x: Any, y: Any) -> C.Tensor:
    """x * log(y), 0 where x == 0; differentiable in x and y"""
    return _cad().xlogy(x, y)


def softmax(x: Any, axis: Any = None) -> C.Tensor:
    """exp(x) / sum(exp(x)) over axis (scipy's default None: all elements);
    differentiable in x"""
    cad = _cad()
    if axis is None:
        return cad.exp(x - cad.logsumexp(x, axis=None, keepdims=True))
    return cad.softmax(x, axis=axis)


def log_softmax(x: Any, axis: Any = None) -> C.Tensor:
    """x - logsumexp(x) over axis (scipy's default None: all elements); differentiable in x"""
    cad = _cad()
    if axis is None:
        return x - cad.logsumexp(x, axis=None, keepdims=True)
    return cad.log_softmax(x, axis=axis)


def logsumexp(a: Any, axis: Any = None, b: Any = None, keepdims: Any = False, return_sign: Any = False) -> Any:
    """log(sum(b * exp(a))) over axis, as scipy (b: weights, may be negative; with
    return_sign=True the pair (log|sum|, sign), else nan where the sum is negative).
    Differentiable in a and b."""
    cad = _cad()
    if b is None:
        if not _is_t(a):
            a = cad.tensor(np.asarray(a, dtype=np.float64))
        r = cad.logsumexp(a, axis=axis, keepdims=keepdims)
        if return_sign:
            return r, cad.where(r > -np.inf, cad.ones_like(r), cad.zeros_like(r))
        return r
    a, b = _bcast(a, b, who="cad.scipy.special.logsumexp", names=["a", "b"])
    nz = b != 0
    am = cad.where(nz, a, -np.inf)
    m = cad.max(am, axis=axis, keepdims=True)
    m = cad.where(cad.isfinite(m), m, cad.zeros_like(m))    # all -inf (or +inf): no shift
    m = m.detach() if isinstance(m, C.Tensor) else m
    e = cad.exp(cad.where(nz, a, m) - m)                      # sanitized: no 0 * inf
    s = cad.sum(cad.where(nz, b * e, cad.zeros_like(e)), axis=axis, keepdims=True)
    sgn = cad.sign(s)
    sa = cad.where(sgn != 0, cad.abs(s), cad.ones_like(s))
    out = cad.where(sgn != 0, cad.log(sa), -np.inf * cad.ones_like(s)) + m
    if not keepdims:
        ax = tuple(range(len(a.shape))) if axis is None else axis
        out = cad.squeeze(out, ax)
        sgn = cad.squeeze(sgn, ax)
    if return_sign:
        return out, sgn
    return cad.where(sgn >= 0, out, np.nan * cad.ones_like(out))


# ---------------------------------------------------------------- composites

def multigammaln(a: Any, d: Any) -> C.Tensor:
    """log of the multivariate gamma function of dimension d (an integer);
    differentiable in a.  Like scipy, raises if some a <= (d - 1) / 2 (concrete a)."""
    cad = _cad()
    d = int(d)
    if not (hasattr(a, "level") and hasattr(a, "val")):
        av = np.asarray(a.detach() if isinstance(a, C.Tensor) else a)
        if np.any(av <= 0.5 * (d - 1)):
            raise ValueError(f"condition a ({float(np.min(av)):f}) > 0.5 * (d-1) ({0.5 * (d - 1):f}) not met")
    (a,) = _bcast(a)
    r = 0.25 * d * (d - 1) * np.log(np.pi)
    for j in range(d):
        r = r + cad.gammaln(a - 0.5 * j)
    return r


_betaln = _elementwise("betaln", _sc.betaln)
_betaln.defvjp(lambda g, ans, a, b: (g * (digamma(a) - digamma(a + b)),
                                     g * (digamma(b) - digamma(a + b))))


def betaln(a: Any, b: Any) -> C.Tensor:
    """log|B(a, b)| (scipy.special.betaln's forward); differentiable in a and b"""
    return _betaln(*_bcast(a, b, who="cad.scipy.special.betaln", names=["a", "b"]))


_beta = _elementwise("beta", _sc.beta)
_beta.defvjp(lambda g, ans, a, b: (g * ans * (digamma(a) - digamma(a + b)),
                                   g * ans * (digamma(b) - digamma(a + b))))


def beta(a: Any, b: Any) -> C.Tensor:
    """B(a, b) = Gamma(a) Gamma(b) / Gamma(a + b); differentiable in a and b"""
    return _beta(*_bcast(a, b, who="cad.scipy.special.beta", names=["a", "b"]))


# ---------------------------------------------------------------- incomplete gamma

_LAG_X, _LAG_W = np.polynomial.laguerre.laggauss(96)


def _psis(z, k):
    """[psi(z), psi'(z), ..., psi^(k-1)(z)] (numpy)"""
    return [_sc.digamma(z)] + [_sc.polygamma(j, z) for j in range(1, k)]


def _upper(a, x):
    """where the Q representation is used for the a-derivatives"""
    return (x > a + 1 + 2 * np.sqrt(np.maximum(a, 0))) & (x > 8)


def _dP_da_series(a, x, k):
    """d^kP/da^k by the series (a, x 1-d float64, x > 0)"""
    n_max = int(np.max(np.maximum(x - a, 0) + 12 * np.sqrt(x) + 40)) if x.size else 1
    out = np.zeros_like(x)
    # chunks bound the (points, terms) arrays
    step = max(1, 2_000_000 // max(n_max, 1))
    for s in range(0, x.size, step):
        aa = a[s:s + step, None]
        xx = x[s:s + step, None]
        n = np.arange(n_max, dtype=np.float64)[None, :]
        z = aa + n + 1
        lx = np.log(xx)
        g = (aa + n) * lx - xx - _sc.gammaln(z)
        ps = _psis(z, k)
        d = [lx - ps[0]] + [-ps[j] for j in range(1, k)]
        out[s:s + step] = np.sum(np.exp(g) * _bell(d, k), axis=1)
    return out


def _dQ_da_quad(a, x, k):
    """d^kQ/da^k by Gauss-Laguerre on the shifted integral (x in the upper region)"""
    lam = np.maximum(1 - (a - 1) / x, 0.5)[:, None]
    aa, xx = a[:, None], x[:, None]
    s = _LAG_X[None, :]
    ls = np.log(xx + s / lam)
    h = (aa - 1) * ls - xx - s / lam + s - _sc.gammaln(aa)
    ps = _psis(a, k)
    d = [ls - ps[0][:, None]] + [-ps[j][:, None] for j in range(1, k)]
    return np.sum(_LAG_W[None, :] * np.exp(h) * _bell(d, k), axis=1) / lam[:, 0]


def _dP_da_np(a, x, k):
    a = np.asarray(a, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    shape = np.broadcast_shapes(a.shape, x.shape)
    a = np.broadcast_to(a, shape).ravel()
    x = np.broadcast_to(x, shape).ravel()
    out = np.zeros(a.shape)
    bad = ~(a > 0) | ~(x >= 0) | np.isnan(x)
    inner = ~bad & (x > 0) & np.isfinite(x)
    up = inner & _upper(a, x)
    lo = inner & ~up
    with np.errstate(all="ignore"):
        if lo.any():
            out[lo] = _dP_da_series(a[lo], x[lo], k)
        if up.any():
            out[up] = -_dQ_da_quad(a[up], x[up], k)
    out[bad] = np.nan
    return out.reshape(shape)


def _density_da(a, x, k):
    """d^k/da^k of x^(a-1) e^-x / Gamma(a) with cad ops (0 for x <= 0 but at a == 1, k == 0)"""
    cad = _cad()
    pos = x > 0
    xs = cad.where(pos, x, cad.ones_like(x))
    lx = cad.log(xs)
    f = cad.exp((a - 1) * lx - xs - cad.gammaln(a))
    if k:
        d = [lx - cad.digamma(a)] + [-cad.polygamma(j, a) for j in range(1, k)]
        f = f * _bell(d, k)
    at0 = cad.where(a == 1, cad.ones_like(a), cad.where(a < 1, np.inf * cad.ones_like(a), cad.zeros_like(a))) \
        if k == 0 else cad.zeros_like(a)
    return cad.where(pos, f, at0)


_DA = {}


def _gammainc_da(k):
    """the primitive d^kP/da^k (k >= 1), P the regularized lower incomplete gamma"""
    if k not in _DA:
        p = _elementwise(f"gammainc_da{k}", lambda a, x, k=k: _dP_da_np(a, x, k))
        p.defvjp(lambda g, ans, a, x, k=k: (g * _gammainc_da(k + 1)(a, x), g * _density_da(a, x, k)))
        _DA[k] = p
    return _DA[k]


_gammainc = _elementwise("gammainc", _sc.gammainc)
_gammainc.defvjp(lambda g, ans, a, x: (g * _gammainc_da(1)(a, x), g * _density_da(a, x, 0)))
_gammaincc = _elementwise("gammaincc", _sc.gammaincc)
_gammaincc.defvjp(lambda g, ans, a, x: (-g * _gammainc_da(1)(a, x), -g * _density_da(a, x, 0)))


def gammainc(a: Any, x: Any) -> C.Tensor:
    """the regularized lower incomplete gamma P(a, x) = gamma(a, x) / Gamma(a).
    Differentiable in x (closed form) and in a (every order: a series, or a
    Gauss-Laguerre integral in the upper tail; NOTE [ Special functions ])."""
    return _gammainc(*_bcast(a, x, who="cad.scipy.special.gammainc", names=["a", "x"]))


def gammaincc(a: Any, x: Any) -> C.Tensor:
    """the regularized upper incomplete gamma Q(a, x) = 1 - P(a, x), accurate in the
    upper tail.  Differentiable in x and in a (every order), as gammainc."""
    return _gammaincc(*_bcast(a, x, who="cad.scipy.special.gammaincc", names=["a", "x"]))


# ---------------------------------------------------------------- incomplete beta

def _fdb_poly(j, m):
    """d_a^j d_b^m exp(g) = exp(g) P(g's partials) (multivariate Faa di Bruno): P as
    {monomial: coefficient}, a monomial a sorted tuple of partials (i, k) = d_a^i d_b^k g"""
    key = (j, m)
    if key in _FDB:
        return _FDB[key]
    if j == 0 and m == 0:
        return {(): 1}
    prev, ax = (_fdb_poly(j - 1, m), 0) if j else (_fdb_poly(j, m - 1), 1)
    out = {}
    step = (1, 0) if ax == 0 else (0, 1)
    for mono, c in prev.items():
        new = tuple(sorted(mono + (step,)))          # the exponential's own derivative
        out[new] = out.get(new, 0) + c
        for n, (i, k) in enumerate(mono):             # a factor's derivative
            f = (i + 1, k) if ax == 0 else (i, k + 1)
            new = tuple(sorted(mono[:n] + (f,) + mono[n + 1:]))
            out[new] = out.get(new, 0) + c
    _FDB[key] = out
    return out


_FDB = {}


def _fdb_eval(poly, part):
    """P evaluated with part(i, k) the partials (numpy arrays or tensors)"""
    cache = {}
    total = 0.0
    for mono, c in poly.items():
        t = float(c)
        for f in mono:
            if f not in cache:
                cache[f] = part(*f)
            t = t * cache[f]
        total = total + t
    return total


def _pg(n, z):
    """psi^(n)(z) for numpy"""
    return _sc.digamma(z) if n == 0 else _sc.polygamma(n, z)


def _betainc_series_d(a, b, x, j, m):
    """d_a^j d_b^m I_x(a, b) by I = sum_n t_n, t_n = x^(a+n) (1-x)^b Gamma(a+b+n) /
    (Gamma(b) Gamma(a+n+1)) (a, b, x 1-d float64, 0 < x < 1, x below the switch)"""
    poly = _fdb_poly(j, m)
    lx, l1x = np.log(x)[:, None], np.log1p(-x)[:, None]
    A, B = a[:, None], b[:, None]
    out = np.zeros(x.shape)
    done = np.zeros(x.shape, bool)
    n0, blk = 0, 256
    while not done.all() and n0 < 200_000:
        idx = ~done
        n = np.arange(n0, n0 + blk, dtype=np.float64)[None, :]
        Ai, Bi, lxi, l1xi = A[idx], B[idx], lx[idx], l1x[idx]
        g = ((Ai + n) * lxi + Bi * l1xi + _sc.gammaln(Ai + Bi + n) - _sc.gammaln(Ai + n + 1)
             - _sc.gammaln(Bi))

        def part(i, k, Ai=Ai, Bi=Bi, lxi=lxi, l1xi=l1xi, n=n):
            r = _pg(i + k - 1, Ai + Bi + n)
            if k == 0:
                r = r - _pg(i - 1, Ai + n + 1) + (lxi if i == 1 else 0.0)
            if i == 0:
                r = r - _pg(k - 1, Bi) + (l1xi if k == 1 else 0.0)
            return r
        terms = np.exp(g) * _fdb_eval(poly, part)
        s = np.sum(terms, axis=1)
        out[idx] += s
        # stop where the terms have fallen (they decrease geometrically past the peak)
        last = np.abs(terms[:, -1]) + np.exp(g[:, -1])
        fin = (last <= 1e-17 * np.maximum(np.abs(out[idx]), 1e-300)) | (np.exp(g[:, -1]) < 1e-300)
        fin &= (Ai[:, 0] + Bi[:, 0] + n0 + blk) * x[idx] < (Ai[:, 0] + n0 + blk + 1)   # past the peak
        done[np.flatnonzero(idx)[fin]] = True
        n0 += blk
    return out


def _betainc_d_np(a, b, x, j, m):
    a, b, x = (np.asarray(v, dtype=np.float64) for v in (a, b, x))
    shape = np.broadcast_shapes(a.shape, b.shape, x.shape)
    a, b, x = (np.broadcast_to(v, shape).ravel() for v in (a, b, x))
    out = np.zeros(a.shape)
    bad = ~(a > 0) | ~(b > 0) | np.isnan(x)
    inner = ~bad & (x > 0) & (x < 1)
    swap = inner & (x > (a + 1) / (a + b + 2))
    keep = inner & ~swap
    with np.errstate(all="ignore"):
        if keep.any():
            out[keep] = _betainc_series_d(a[keep], b[keep], x[keep], j, m)
        if swap.any():   # I_x(a, b) = 1 - I_(1-x)(b, a)
            out[swap] = -_betainc_series_d(b[swap], a[swap], 1 - x[swap], m, j)
    out[bad] = np.nan
    return out.reshape(shape)


def _betainc_density_d(a, b, x, j, m):
    """d_a^j d_b^m of x^(a-1) (1-x)^(b-1) / B(a, b), with cad ops (0 outside (0, 1))"""
    cad = _cad()
    inside = cad.logical_and(x > 0, x < 1)
    xs = cad.where(inside, x, 0.5 * cad.ones_like(x))
    lx, l1x = cad.log(xs), cad.log1p(-xs)
    f = cad.exp((a - 1) * lx + (b - 1) * l1x - betaln(a, b))
    if j or m:
        def pg(n, z):
            return cad.digamma(z) if n == 0 else cad.polygamma(n, z)

        def part(i, k):
            r = pg(i + k - 1, a + b)
            if k == 0:
                r = r - pg(i - 1, a) + (lx if i == 1 else 0.0)
            if i == 0:
                r = r - pg(k - 1, b) + (l1x if k == 1 else 0.0)
            return r
        f = f * _fdb_eval(_fdb_poly(j, m), part)
    return cad.where(inside, f, cad.zeros_like(f))


_BD = {}


def _betainc_d(j, m):
    """the primitive d_a^j d_b^m I_x(a, b); (0, 0) is scipy's betainc"""
    if (j, m) not in _BD:
        if j == 0 and m == 0:
            p = _elementwise("betainc", _sc.betainc)
        else:
            p = _elementwise(f"betainc_d{j}{m}", lambda a, b, x, j=j, m=m: _betainc_d_np(a, b, x, j, m))
        p.defvjp(lambda g, ans, a, b, x, j=j, m=m: (g * _betainc_d(j + 1, m)(a, b, x),
                                                      g * _betainc_d(j, m + 1)(a, b, x),
                                                      g * _betainc_density_d(a, b, x, j, m)))
        _BD[(j, m)] = p
    return _BD[(j, m)]


_betainc = _betainc_d(0, 0)


def betainc(a: Any, b: Any, x: Any) -> C.Tensor:
    """the regularized incomplete beta I_x(a, b).  Differentiable in x (closed form)
    and in a and b, every order and mixed (the power series of I, or of
    1 - I_(1-x)(b, a) above the mean, differentiated termwise; NOTE [ Special
    functions ]).  The a- and b-derivatives are accurate to about 1e-16 relative to
    the largest term of the series, so where I or 1 - I is tiny their relative
    accuracy can be less."""
    return _betainc(*_bcast(a, b, x, who="cad.scipy.special.betainc", names=["a", "b", "x"]))


# ---------------------------------------------------------------- Bessel functions

_iv = _elementwise("iv", _sc.iv)
_ive = _elementwise("ive", _sc.ive)
_kv = _elementwise("kv", _sc.kv)
_iv.defvjp(lambda g, ans, v, x: (None, g * 0.5 * (_iv(v - 1, x) + _iv(v + 1, x))))
_ive.defvjp(lambda g, ans, v, x: (None, g * (0.5 * (_ive(v - 1, x) + _ive(v + 1, x))
                                                - _cad().sign(x) * ans)))
_kv.defvjp(lambda g, ans, v, x: (None, -g * 0.5 * (_kv(v - 1, x) + _kv(v + 1, x))))


def _bessel(name, p, v, x):
    _no_grad_in(name, "v", v, " (the order; derivatives are in x only)")
    v, x = _bcast(v, x, who=f"cad.scipy.special.{name}", names=["v", "x"])
    return p(v.detach() if isinstance(v, C.Tensor) else v, x)


def iv(v: Any, x: Any) -> C.Tensor:
    """the modified Bessel function of the first kind I_v(x) (real order v).
    Differentiable in x (every order: I_v' = (I_(v-1) + I_(v+1)) / 2); not in the
    order v (a v that requires grad raises NotImplementedError)."""
    return _bessel("iv", _iv, v, x)


def ive(v: Any, x: Any) -> C.Tensor:
    """the exponentially scaled I_v(x) e^-|x|, for large x.  Differentiable in x
    (every order); not in v (raises NotImplementedError)."""
    return _bessel("ive", _ive, v, x)


def kv(v: Any, x: Any) -> C.Tensor:
    """the modified Bessel function of the second kind K_v(x).  Differentiable in x
    (every order: K_v' = -(K_(v-1) + K_(v+1)) / 2); not in v (raises
    NotImplementedError)."""
    return _bessel("kv", _kv, v, x)
