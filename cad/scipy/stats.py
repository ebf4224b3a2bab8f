"""cad.scipy.stats: scipy.stats' distributions as objects with scipy's method names,
parameter names and defaults (``norm.logpdf(x, loc=0, scale=1)``,
``gamma.cdf(x, a, loc=0, scale=1)``), broadcasting like scipy and returning cad
tensors differentiable in the data and in the parameters.

NOTE [ Distributions ]
Every continuous distribution is written once in standard form (z = (x - loc) /
scale) with cad ops and cad.scipy.special; the methods add loc and scale.  All
arguments are broadcast together first (scipy's output shape).  Out of the
support the values are scipy's (logpdf -inf, pdf 0, cdf 0 or 1); the unsafe
branch of a where gets a sanitized argument (the double-where trick), so no nan
gradient leaks where scipy's value is finite.  Invalid parameters (scale <= 0,
a shape <= 0) give nan, as scipy.  The tails: norm.logcdf/logsf use log_ndtr,
expon's and laplace's use log1p/expm1; the others take the log of an
accurately computed cdf or sf (gammaincc, betainc, stdtr for the upper tails).

Every method is differentiable in the data and in every continuous parameter,
to every order: gamma's and chi2's cdf/sf through gammainc's a-derivatives,
beta's through betainc's a- and b-derivatives, t's through stdtr with a
df-derivative built from betainc's.  The one exception:
multivariate_normal.cdf is scipy's forward value only, and raises
NotImplementedError when an argument requires grad.  poisson is differentiable
in mu (k and loc are discrete).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import scipy.special as _ss

from .._core import _engine as C
from . import special as _sp
from .special import (
    _bcast,
    _elementwise,
    _is_t,
    _needs_grad,
    betaln,
    digamma,
    gammainc,
    gammaincc,
    gammaln,
    log_ndtr,
    ndtr,
    xlog1py,
    xlogy,
)

__all__ = ["beta", "chi2", "dirichlet", "expon", "gamma", "laplace", "multivariate_normal",
           "norm", "poisson", "t"]

_LOG2PI = float(np.log(2 * np.pi))
_LN2 = float(np.log(2.0))


def _cad():
    import cad
    return cad


def _w(c, x, y):
    """where with a scalar branch taken as a number (cad.where broadcasts it and keeps
    the tensor branch's dtype; a full array of it cost a pass per call)"""
    cad = _cad()
    if not _is_t(x) and not _is_t(y):
        x = cad.full_like(c, float(x), dtype=_cad().float64)
    return cad.where(c, x if _is_t(x) else float(x), y if _is_t(y) else float(y))


def _log1mexp(u):
    """log(1 - exp(-u)) for u >= 0, accurate for small and large u (-inf at 0)"""
    cad = _cad()
    pos = u > 0
    small = cad.logical_and(pos, u < _LN2)
    u1 = _w(small, u, 0.5)
    u2 = _w(cad.logical_and(pos, cad.logical_not(small)), u, 1.0)
    r = _w(small, cad.log(-cad.expm1(-u1)), cad.log1p(-cad.exp(-u2)))
    return _w(pos, r, -np.inf)


def _detach(x):
    return x.detach() if isinstance(x, C.Tensor) else x


class _Continuous:
    """a distribution in standard form; subclasses give _logpdf, _cdf, _sf and maybe
    _logcdf, _logsf, _entropy over (z, *shapes), all tensors of one shape"""
    name = ""
    shapes = ()

    def __repr__(self):
        return f"<cad.scipy.stats.{self.name}>"

    def _parse(self, meth, x, args, kwargs):
        names = list(self.shapes) + ["loc", "scale"]
        if len(args) > len(names):
            raise TypeError(f"{self.name}.{meth}: too many arguments")
        vals = dict(zip(names, args))
        for k, v in kwargs.items():
            if k not in names:
                raise TypeError(f"{self.name}.{meth}() got an unexpected keyword argument {k!r}")
            if k in vals:
                raise TypeError(f"{self.name}.{meth}() got multiple values for argument {k!r}")
            vals[k] = v
        for s in self.shapes:
            if s not in vals:
                raise TypeError(f"{self.name}.{meth}() missing required argument {s!r}")
        vals.setdefault("loc", 0.0)
        vals.setdefault("scale", 1.0)
        ins = ([] if x is None else [x]) + [vals[n] for n in names]
        ts = _bcast(*ins, who=f"cad.scipy.stats.{self.name}.{meth}",
                    names=([] if x is None else ["x"]) + names, expand=meth != "logpdf")
        if x is None:
            return None, ts[:-2], ts[-2], ts[-1]
        return ts[0], ts[1:-2], ts[-2], ts[-1]

    def _valid(self, shapes, scale):
        v = scale > 0
        for s in shapes:
            v = _cad().logical_and(v, s > 0)
        return v

    def _finish(self, r, shapes, scale):
        return _w(self._valid(shapes, scale), r, np.nan)

    def _z(self, x, loc, scale):
        return (x - loc) / scale

    def logpdf(self, x: Any, *args: Any, **kwargs: Any) -> C.Tensor:
        x, sh, loc, scale = self._parse("logpdf", x, args, kwargs)
        return self._finish(self._logpdf(self._z(x, loc, scale), *sh) - _sp._cad().log(scale), sh, scale)

    def pdf(self, x: Any, *args: Any, **kwargs: Any) -> C.Tensor:
        return _cad().exp(self.logpdf(x, *args, **kwargs))

    def cdf(self, x: Any, *args: Any, **kwargs: Any) -> C.Tensor:
        x, sh, loc, scale = self._parse("cdf", x, args, kwargs)
        return self._finish(self._cdf(self._z(x, loc, scale), *sh), sh, scale)

    def sf(self, x: Any, *args: Any, **kwargs: Any) -> C.Tensor:
        x, sh, loc, scale = self._parse("sf", x, args, kwargs)
        return self._finish(self._sf(self._z(x, loc, scale), *sh), sh, scale)

    def logcdf(self, x: Any, *args: Any, **kwargs: Any) -> C.Tensor:
        x, sh, loc, scale = self._parse("logcdf", x, args, kwargs)
        return self._finish(self._logcdf(self._z(x, loc, scale), *sh), sh, scale)

    def logsf(self, x: Any, *args: Any, **kwargs: Any) -> C.Tensor:
        x, sh, loc, scale = self._parse("logsf", x, args, kwargs)
        return self._finish(self._logsf(self._z(x, loc, scale), *sh), sh, scale)

    def entropy(self, *args: Any, **kwargs: Any) -> C.Tensor:
        _, sh, _loc, scale = self._parse("entropy", None, args, kwargs)
        return self._finish(self._entropy(*sh) + _cad().log(scale), sh, scale)

    def _logcdf(self, z, *sh):
        return _log_of(self._cdf(z, *sh), self._sf(z, *sh))

    def _logsf(self, z, *sh):
        return _log_of(self._sf(z, *sh), self._cdf(z, *sh))


def _log_of(p, q):
    """log p where p = 1 - q: log1p(-q) where p > 1/2 (keeps the upper tail's digits)"""
    cad = _cad()
    big = p > 0.5
    pos = p > 0
    return _w(big, cad.log1p(-_w(big, q, 0.0)), _w(pos, cad.log(_w(big, 0.5, _w(pos, p, 1.0))), -np.inf))


# ---------------------------------------------------------------- norm

class norm_gen(_Continuous):
    """the normal distribution: norm.logpdf(x, loc=0, scale=1), ...; everything
    differentiable in x, loc and scale; logcdf/logsf via log_ndtr (accurate far in
    the tails, e.g. logcdf(-40))"""
    name = "norm"

    def _logpdf(self, z):
        return -0.5 * z * z - 0.5 * _LOG2PI

    def _cdf(self, z):
        return ndtr(z)

    def _sf(self, z):
        return ndtr(-z)

    def _logcdf(self, z):
        return log_ndtr(z)

    def _logsf(self, z):
        return log_ndtr(-z)

    def _entropy(self):
        return 0.5 * (_LOG2PI + 1)


# ---------------------------------------------------------------- expon, laplace

class expon_gen(_Continuous):
    """the exponential distribution: expon.logpdf(x, loc=0, scale=1), ...;
    differentiable in x, loc and scale"""
    name = "expon"

    def _logpdf(self, z):
        return _w(z >= 0, -_w(z >= 0, z, 0.0), -np.inf)

    def _cdf(self, z):
        return _w(z > 0, -_cad().expm1(-_w(z > 0, z, 0.0)), 0.0)

    def _sf(self, z):
        return _w(z > 0, _cad().exp(-_w(z > 0, z, 0.0)), 1.0)

    def _logcdf(self, z):
        return _w(z > 0, _log1mexp(_w(z > 0, z, 1.0)), -np.inf)

    def _logsf(self, z):
        return _w(z > 0, -_w(z > 0, z, 0.0), 0.0)

    def _entropy(self):
        return 1.0


class laplace_gen(_Continuous):
    """the Laplace distribution: laplace.logpdf(x, loc=0, scale=1), ...;
    differentiable in x, loc and scale (at x == loc the derivative in x is 0)"""
    name = "laplace"

    def _logpdf(self, z):
        return -_cad().abs(z) - _LN2

    def _cdf(self, z):
        cad = _cad()
        neg = z <= 0
        return _w(neg, 0.5 * cad.exp(_w(neg, z, 0.0)), 1 - 0.5 * cad.exp(-_w(neg, 0.0, z)))

    def _sf(self, z):
        return self._cdf(-z)

    def _logcdf(self, z):
        cad = _cad()
        neg = z <= 0
        return _w(neg, _w(neg, z, 0.0) - _LN2, cad.log1p(-0.5 * cad.exp(-_w(neg, 0.0, z))))

    def _logsf(self, z):
        return self._logcdf(-z)

    def _entropy(self):
        return 1 + _LN2


# ---------------------------------------------------------------- gamma, chi2

def _gamma_logpdf(z, a):
    cad = _cad()
    pos = z > 0
    zs = _w(pos, z, 1.0)
    lp = xlogy(a - 1, zs) - zs - gammaln(a)
    at0 = _w(a == 1, 0.0, _w(a < 1, cad.full_like(a, np.inf), -np.inf))
    return _w(pos, lp, _w(z == 0, at0, -np.inf))


def _gamma_entropy(a):
    return a + gammaln(a) + (1 - a) * digamma(a)


class gamma_gen(_Continuous):
    """the gamma distribution: gamma.logpdf(x, a, loc=0, scale=1), ...;
    differentiable in x, a, loc and scale, cdf/sf included (to every order in a)"""
    name = "gamma"
    shapes = ("a",)

    def _logpdf(self, z, a):
        return _gamma_logpdf(z, a)

    def _cdf(self, z, a):
        return gammainc(a, _w(z > 0, z, 0.0))

    def _sf(self, z, a):
        return gammaincc(a, _w(z > 0, z, 0.0))

    def _entropy(self, a):
        return _gamma_entropy(a)


class chi2_gen(_Continuous):
    """the chi-squared distribution: chi2.logpdf(x, df, loc=0, scale=1), ...;
    differentiable in x, df, loc and scale, cdf/sf included"""
    name = "chi2"
    shapes = ("df",)

    def _logpdf(self, z, df):
        return _gamma_logpdf(0.5 * z, 0.5 * df) - _LN2

    def _cdf(self, z, df):
        return gammainc(0.5 * df, _w(z > 0, 0.5 * z, 0.0))

    def _sf(self, z, df):
        return gammaincc(0.5 * df, _w(z > 0, 0.5 * z, 0.0))

    def _entropy(self, df):
        return _gamma_entropy(0.5 * df) + _LN2


# ---------------------------------------------------------------- beta

class beta_gen(_Continuous):
    """the beta distribution: beta.logpdf(x, a, b, loc=0, scale=1), ...; everything
    differentiable in x, a, b, loc and scale (cdf/sf through betainc's parameter
    derivatives)"""
    name = "beta"
    shapes = ("a", "b")

    def _logpdf(self, z, a, b):
        cad = _cad()
        inside = cad.logical_and(z > 0, z < 1)
        zs = _w(inside, z, 0.5)
        lp = xlogy(a - 1, zs) + xlog1py(b - 1, -zs) - betaln(a, b)
        edge = cad.logical_or(z == 0, z == 1)
        ze = _detach(_w(edge, z, 0.5))
        le = xlogy(_detach(a) - 1, ze) + xlog1py(_detach(b) - 1, -ze) - betaln(_detach(a), _detach(b))
        return _w(inside, lp, _w(edge, le, -np.inf))

    def _cdf(self, z, a, b):
        return _sp.betainc(a, b, _w(z > 0, _w(z < 1, z, 1.0), 0.0))

    def _sf(self, z, a, b):
        return _sp.betainc(b, a, 1 - _w(z > 0, _w(z < 1, z, 1.0), 0.0))

    def _entropy(self, a, b):
        return betaln(a, b) - (a - 1) * digamma(a) - (b - 1) * digamma(b) + (a + b - 2) * digamma(a + b)


# ---------------------------------------------------------------- t

_stdtr = _elementwise("stdtr", _ss.stdtr)


def _t_logpdf(z, df):
    cad = _cad()
    return (gammaln(0.5 * (df + 1)) - gammaln(0.5 * df) - 0.5 * cad.log(df * np.pi)
            - 0.5 * (df + 1) * cad.log1p(z * z / df))


def _stdtr_ddf(df, z):
    """d/ddf of stdtr: with w = df / (df + z^2), stdtr = 0.5 I_w(df/2, 1/2) for z < 0
    and 1 - 0.5 I_w(df/2, 1/2) for z >= 0"""
    cad = _cad()
    zz = z * z
    w = df / (df + zz)
    a = 0.5 * df
    b = 0.5 * cad.ones_like(df)
    d = 0.5 * (0.5 * _sp._betainc_d(1, 0)(a, b, w) + _sp._betainc_density_d(a, b, w, 0, 0) * zz / (df + zz) ** 2)
    return cad.where(z < 0, d, -d)


_stdtr.defvjp(lambda g, ans, df, z: (g * _stdtr_ddf(df, z), g * _cad().exp(_t_logpdf(z, df))))


class t_gen(_Continuous):
    """Student's t distribution: t.logpdf(x, df, loc=0, scale=1), ...; everything
    differentiable in x, df, loc and scale (cdf, logcdf, sf and logsf are
    scipy.special.stdtr, its df-derivative through betainc's)"""
    name = "t"
    shapes = ("df",)

    def _logpdf(self, z, df):
        return _t_logpdf(z, df)

    def _cdf(self, z, df):
        return _stdtr(df, z)

    def _sf(self, z, df):
        return _stdtr(df, -z)

    def _entropy(self, df):
        h = 0.5 * (df + 1)
        return h * (digamma(h) - digamma(0.5 * df)) + 0.5 * _cad().log(df) + betaln(0.5 * df, 0.5)


# ---------------------------------------------------------------- poisson

def _concrete(x):
    while hasattr(x, "val") and hasattr(x, "level"):
        x = x.val
    return np.asarray(_detach(x))


class poisson_gen:
    """the Poisson distribution: poisson.pmf(k, mu, loc=0), logpmf, cdf, logcdf, sf,
    logsf, entropy(mu); differentiable in mu (k and loc are discrete).  entropy sums
    the pmf over k < mu + 20 sqrt(mu) + 40 (the rest is below 1e-80)."""
    name = "poisson"

    def __repr__(self):
        return "<cad.scipy.stats.poisson>"

    def _args(self, k, mu, loc):
        k, mu, loc = _bcast(k, mu, loc, who="cad.scipy.stats.poisson", names=["k", "mu", "loc"])
        return k - loc, mu

    def _finish(self, r, mu):
        return _w(mu >= 0, r, np.nan)

    def logpmf(self, k: Any, mu: Any, loc: Any = 0) -> C.Tensor:
        cad = _cad()
        k, mu = self._args(k, mu, loc)
        ok = cad.logical_and(k >= 0, cad.floor(k) == k)
        ks = _detach(_w(ok, k, 0.0))
        return self._finish(_w(ok, xlogy(ks, mu) - mu - gammaln(ks + 1), -np.inf), mu)

    def pmf(self, k: Any, mu: Any, loc: Any = 0) -> C.Tensor:
        return _cad().exp(self.logpmf(k, mu, loc))

    def cdf(self, k: Any, mu: Any, loc: Any = 0) -> C.Tensor:
        cad = _cad()
        k, mu = self._args(k, mu, loc)
        ks = _detach(cad.floor(_w(k >= 0, k, 0.0)))
        return self._finish(_w(k >= 0, gammaincc(ks + 1, mu), 0.0), mu)

    def sf(self, k: Any, mu: Any, loc: Any = 0) -> C.Tensor:
        cad = _cad()
        k, mu = self._args(k, mu, loc)
        ks = _detach(cad.floor(_w(k >= 0, k, 0.0)))
        return self._finish(_w(k >= 0, gammainc(ks + 1, mu), 1.0), mu)

    def logcdf(self, k: Any, mu: Any, loc: Any = 0) -> C.Tensor:
        return _log_of(self.cdf(k, mu, loc), self.sf(k, mu, loc))

    def logsf(self, k: Any, mu: Any, loc: Any = 0) -> C.Tensor:
        return _log_of(self.sf(k, mu, loc), self.cdf(k, mu, loc))

    def entropy(self, mu: Any) -> C.Tensor:
        cad = _cad()
        (mu,) = _bcast(mu)
        m = float(np.max(_concrete(mu), initial=0.0))
        n = int(m + 20 * np.sqrt(m) + 40)
        ks = cad.arange(n, dtype=mu.dtype)
        mu1 = cad.unsqueeze(mu, -1)
        ms = _w(mu1 > 0, mu1, 1.0)
        lp = xlogy(ks, ms) - ms - gammaln(ks + 1)
        h = -cad.sum(cad.exp(lp) * lp, axis=-1)
        return self._finish(_w(mu > 0, h, 0.0), mu)


# ---------------------------------------------------------------- dirichlet

class dirichlet_gen:
    """the Dirichlet distribution: dirichlet.pdf(x, alpha), logpdf, entropy(alpha),
    as scipy: alpha 1-d of length K, x of shape (K, ...) or (K - 1, ...) (the last
    component is then 1 - the sum), the components along the FIRST axis.
    Differentiable in x and alpha.  Like scipy, raises ValueError for x off the
    simplex (when x is concrete)."""
    name = "dirichlet"

    def __repr__(self):
        return "<cad.scipy.stats.dirichlet>"

    def _prep(self, x, alpha):
        cad = _cad()
        x, = _bcast(x) if not _is_t(x) or not _is_t(alpha) else (x,)
        (alpha,) = [alpha] if _is_t(alpha) else [cad.tensor(np.asarray(alpha, dtype=np.dtype(x.dtype)))]
        if len(alpha.shape) != 1:
            raise ValueError(f"Parameter vector 'a' must be one dimensional, but a.shape = {tuple(alpha.shape)}.")
        K = alpha.shape[0]
        if x.shape[0] == K - 1:
            x = cad.concatenate([x, 1 - cad.sum(x, axis=0, keepdims=True)], axis=0)
        elif x.shape[0] != K:
            raise ValueError("Vector 'x' must have either the same number of entries as, "
                             "or one entry fewer than, parameter vector 'a', but alpha.shape = "
                             f"{tuple(alpha.shape)} and x.shape = {tuple(x.shape)}.")
        xv = _concrete(x)
        if np.any(xv < 0) or np.any(xv > 1):
            raise ValueError("Each entry in 'x' must be greater than or equal to zero and less than or equal to one.")
        if (np.abs(np.sum(xv, 0) - 1.0) > 10e-10).any():
            raise ValueError("The input vector 'x' must lie within the normal simplex. "
                             f"but np.sum(x, 0) = {np.sum(xv, 0)}.")
        a = cad.reshape(alpha, (K,) + (1,) * (len(x.shape) - 1))
        return x, alpha, a

    def _lnB(self, alpha):
        cad = _cad()
        return cad.sum(gammaln(alpha)) - gammaln(cad.sum(alpha))

    def logpdf(self, x: Any, alpha: Any) -> C.Tensor:
        cad = _cad()
        x, alpha, a = self._prep(x, alpha)
        return cad.sum(xlogy(a - 1, x), axis=0) - self._lnB(alpha)

    def pdf(self, x: Any, alpha: Any) -> C.Tensor:
        return _cad().exp(self.logpdf(x, alpha))

    def entropy(self, alpha: Any) -> C.Tensor:
        cad = _cad()
        (alpha,) = _bcast(alpha)
        a0 = cad.sum(alpha)
        K = alpha.shape[0]
        return self._lnB(alpha) + (a0 - K) * digamma(a0) - cad.sum((alpha - 1) * digamma(alpha))


# ---------------------------------------------------------------- multivariate_normal

def _batched_maha(cad, Li, x, mean, d):
    """|Li (x - mean)|^2 over the last axis, Li (Bc, d, d), mean (Bm, d) and x (Bx, d)
    broadcast.  The points never meet the means in a broadcast subtraction (slow with a
    small last axis, forward and backward): per covariance, one batched product
    [x - c, 1] @ [Li^T; -(Li (mean - c))^T] whose rows are the batch dims where the
    parameters have size 1 (the points).  c, the points' average, keeps the
    subtraction inside the product from losing digits to an origin far from the data."""
    Bp = tuple(np.broadcast_shapes(tuple(Li.shape[:-2]), tuple(mean.shape[:-1])))
    Bx = tuple(x.shape[:-1])
    c = cad.mean(cad.reshape(x, (-1, d)), axis=0) if x.size else cad.zeros((d,), dtype=x.dtype)
    xc = x - c
    Li = cad.broadcast_to(Li, Bp + (d, d))
    b = cad.sum(Li * cad.expand_dims(cad.broadcast_to(mean - c, Bp + (d,)), -2), axis=-1)
    M = cad.concatenate([cad.swapaxes(Li, -1, -2), -cad.expand_dims(b, -2)], axis=-2)   # (Bp, d+1, d)
    xa = cad.concatenate([xc, cad.ones(Bx + (1,), dtype=xc.dtype)], axis=-1)              # (Bx, d+1)
    S = tuple(np.broadcast_shapes(Bp, Bx))
    n = len(S)
    Bp1 = (1,) * (n - len(Bp)) + Bp
    Bx1 = (1,) * (n - len(Bx)) + Bx
    free = [k for k in range(n) if Bp1[k] == 1 and S[k] != 1]
    bat = [k for k in range(n) if k not in free]
    shared = all(Bx1[k] == 1 for k in bat)   # the same points for every parameter set
    xa = cad.broadcast_to(cad.reshape(xa, Bx1 + (d + 1,)),
                          tuple((1 if shared else S[k]) if k in bat else S[k] for k in range(n)) + (d + 1,))
    nb = int(np.prod([S[k] for k in bat])) if bat else 1
    nf = int(np.prod([S[k] for k in free])) if free else 1
    xr = cad.reshape(cad.permute(xa, bat + free + [n]), (1 if shared else nb, nf, d + 1))
    Mr = cad.reshape(cad.broadcast_to(cad.reshape(M, Bp1 + (d + 1, d)),
                                      tuple(S[k] if k in bat else 1 for k in range(n)) + (d + 1, d)),
                     (nb, d + 1, d))
    y = cad.matmul(xr, Mr)   # (nb, nf, d)
    m = cad.reshape(cad.sum(y * y, axis=-1), tuple(S[k] for k in bat + free))
    inv = [0] * n
    for i, k in enumerate(bat + free):
        inv[k] = i
    return cad.permute(m, inv)


class multivariate_normal_gen:
    """the multivariate normal: multivariate_normal.logpdf(x, mean=None, cov=1,
    allow_singular=False), pdf, entropy(mean=None, cov=1), as scipy (cov a scalar,
    a 1-d diagonal or a matrix; x's last axis the components; the output squeezed).
    Batched parameters broadcast as in jax.scipy.stats: mean (..., d) and cov
    (..., d, d) against x (..., d), e.g. x (N, d), mean (K, 1, d), cov (K, 1, d, d)
    give (K, N) (scipy itself takes one mean and one cov).
    Differentiable in x, mean and cov (cad.linalg.cholesky and solve_triangular).
    A singular cov raises cad.linalg.LinAlgError even with allow_singular=True (no
    pseudo-determinant).  cdf is scipy's forward value only: it raises
    NotImplementedError when any argument requires grad."""
    name = "multivariate_normal"

    def __repr__(self):
        return "<cad.scipy.stats.multivariate_normal>"

    def _params(self, mean, cov, x=None):
        cad = _cad()
        ins = [v for v in (x, mean, cov) if v is not None]
        dt = _sp._dtype(ins)
        def T(v):
            if _is_t(v):
                return cad.astype(v, dt) if np.dtype(v.dtype) != dt else v
            return cad.tensor(np.asarray(v, dtype=np.float64), dtype=dt)
        cov = T(cov)
        if mean is not None:
            mean = T(mean)
            if len(mean.shape) == 0:
                mean = cad.reshape(mean, (1,))
            d = mean.shape[-1]
        elif len(cov.shape) >= 1:
            d = cov.shape[-1]
        else:
            d = 1
        if mean is None:
            mean = cad.zeros((d,), dtype=dt)
        if len(cov.shape) == 0:
            cov = cov * cad.eye(d, dtype=dt)
        elif len(cov.shape) == 1:
            cov = cad.diag(cov) if cov.shape[0] == d else cov * cad.eye(d, dtype=dt)
        if tuple(cov.shape[-2:]) != (d, d):
            raise ValueError(f"Array 'cov' must be square if it is two dimensional, but cov.shape = {tuple(cov.shape)}.")
        return mean, cov, d

    def logpdf(self, x: Any, mean: Any = None, cov: Any = 1, allow_singular: Any = False) -> C.Tensor:
        cad = _cad()
        mean, cov, d = self._params(mean, cov, x)
        x = x if _is_t(x) else cad.tensor(np.asarray(x, dtype=np.float64), dtype=mean.dtype)
        if len(x.shape) == 0:
            x = cad.reshape(x, (1,))
        elif len(x.shape) == 1:
            x = cad.reshape(x, (-1, 1) if d == 1 else (1, -1))
        L = cad.linalg.cholesky(cov)
        if len(cov.shape) == 2 and len(mean.shape) == 1:   # scipy's case: one solve for every x
            diff = x - mean
            batch = tuple(diff.shape[:-1])
            flat = cad.reshape(diff, (-1, d))
            y = cad.linalg.solve_triangular(L, cad.transpose(flat), lower=True)
            maha = cad.reshape(cad.sum(y * y, axis=0), batch)
        else:   # batched mean/cov (JAX's broadcasting): L^-1 once per covariance, then products
            Li = cad.linalg.solve_triangular(L, cad.eye(d, dtype=L.dtype), lower=True)
            maha = _batched_maha(cad, Li, x, mean, d)
        logdet = 2 * cad.sum(cad.log(cad.diagonal(L, axis1=-2, axis2=-1)), axis=-1)
        out = -0.5 * (d * _LOG2PI + logdet + maha)
        return cad.squeeze(out) if any(s == 1 for s in out.shape) else out

    def pdf(self, x: Any, mean: Any = None, cov: Any = 1, allow_singular: Any = False) -> C.Tensor:
        return _cad().exp(self.logpdf(x, mean, cov, allow_singular))

    def entropy(self, mean: Any = None, cov: Any = 1) -> C.Tensor:
        cad = _cad()
        _, cov, d = self._params(mean, cov)
        L = cad.linalg.cholesky(cov)
        return 0.5 * d * (1 + _LOG2PI) + cad.sum(cad.log(cad.diagonal(L, axis1=-2, axis2=-1)), axis=-1)

    def cdf(self, x: Any, mean: Any = None, cov: Any = 1, allow_singular: Any = False, **kwargs: Any) -> C.Tensor:
        for n, v in (("x", x), ("mean", mean), ("cov", cov)):
            if _needs_grad(v):
                raise NotImplementedError(
                    f"cad.scipy.stats.multivariate_normal.cdf: not differentiable (in {n!r}); "
                    f"it is scipy's forward value only")
        import scipy.stats as _st
        c = lambda v: None if v is None else _concrete(v)
        r = _st.multivariate_normal.cdf(c(x), c(mean), c(cov), allow_singular=allow_singular, **kwargs)
        return _cad().tensor(np.asarray(r, dtype=np.float64))


norm = norm_gen()
expon = expon_gen()
laplace = laplace_gen()
gamma = gamma_gen()
chi2 = chi2_gen()
beta = beta_gen()
t = t_gen()
poisson = poisson_gen()
dirichlet = dirichlet_gen()
multivariate_normal = multivariate_normal_gen()
