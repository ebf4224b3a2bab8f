"""scipy.special's elementwise functions that are ops of cad's table
(cad/ops/elementwise.py, the C in cad/ops/cad_special.h): compiled CPU and CUDA
kernels, every order of derivative, broadcasting and Python scalars as the other
elementwise ops.  Under scipy's names and signatures; cad.scipy.special imports
them from here.  Not cad.* names (numpy has none of them).

float32 inputs compute in double and round once.  Known differences from scipy:
``jn`` of a non-integer order is nan (scipy's jn is jv there); ``erfcinv`` and
``ndtri`` stay finite down to the smallest subnormal (scipy: inf below 1e-323);
``gamma`` and ``log_ndtr`` return the subnormal results scipy flushes to zero.
"""
from .._core import _engine as C

__all__ = ["gamma", "rgamma", "gammasgn", "erfcinv", "logit", "xlog1py", "ndtr", "log_ndtr",
           "ndtri", "j0", "j1", "y0", "y1", "jn", "yn", "i0", "i1", "i0e", "i1e"]


def gamma(z):
    """gamma(z): the gamma function; inf at +0, -inf at -0, nan at the negative
    integers (scipy.special.gamma, real z).  d/dz = gamma(z) digamma(z)."""
    return C.gamma(z)


def rgamma(z):
    """rgamma(z) = 1 / gamma(z), 0 at the poles (scipy.special.rgamma, real z).
    d/dz = -rgamma(z) digamma(z), finite through the poles ((-1)^n n! at -n)."""
    return C.rgamma(z)


def gammasgn(x):
    """gammasgn(x): the sign of gamma(x); nan at the negative integers
    (scipy.special.gammasgn).  Derivative 0."""
    return C.gammasgn(x)


def erfcinv(y):
    """erfcinv(y): the inverse of erfc on [0, 2], accurate for tiny y
    (scipy.special.erfcinv).  d/dy = -sqrt(pi)/2 exp(erfcinv(y)^2)."""
    return C.erfcinv(y)


def logit(x):
    """logit(x) = log(x / (1 - x)) (scipy.special.logit).  d/dx = 1 / (x (1 - x))."""
    return C.logit(x)


def xlog1py(x, y):
    """xlog1py(x, y) = x log1p(y), 0 where x == 0 unless y is nan
    (scipy.special.xlog1py).  d/dx = log1p(y) (0 where x == 0 and y <= -1),
    d/dy = x / (1 + y) (0 where x == 0), as xlogy's."""
    return C.xlog1py(x, y)


def ndtr(x):
    """ndtr(x): the standard normal CDF, accurate in both tails (scipy.special.ndtr).
    d/dx = exp(-x^2/2) / sqrt(2 pi)."""
    return C.ndtr(x)


def log_ndtr(x):
    """log_ndtr(x): log of the standard normal CDF, accurate far into the left tail
    and near 0 for large x (scipy.special.log_ndtr, real x).
    d/dx = exp(-x^2/2 - log_ndtr(x)) / sqrt(2 pi)."""
    return C.log_ndtr(x)


def ndtri(y):
    """ndtri(y): the inverse of ndtr, accurate for tiny y (scipy.special.ndtri).
    d/dy = sqrt(2 pi) exp(ndtri(y)^2 / 2)."""
    return C.ndtri(y)


def j0(x):
    """j0(x): the Bessel function of the first kind of order 0 (scipy.special.j0).
    d/dx = -j1(x)."""
    return C.j0(x)


def j1(x):
    """j1(x): the Bessel function of the first kind of order 1 (scipy.special.j1).
    d/dx = j0(x) - j1(x) / x (1/2 at 0)."""
    return C.j1(x)


def y0(x):
    """y0(x): the Bessel function of the second kind of order 0; -inf at 0, nan for
    x < 0 (scipy.special.y0).  d/dx = -y1(x)."""
    return C.y0(x)


def y1(x):
    """y1(x): the Bessel function of the second kind of order 1; -inf at 0, nan for
    x < 0 (scipy.special.y1).  d/dx = y0(x) - y1(x) / x."""
    return C.y1(x)


def jn(n, x):
    """jn(n, x): the Bessel function of the first kind of integer order n
    (scipy.special.jn; nan for a non-integer n, where scipy's is jv).  Differentiable
    in x: d/dx = (jn(n - 1, x) - jn(n + 1, x)) / 2; n is piecewise constant."""
    return C.jn(n, x)


def yn(n, x):
    """yn(n, x): the Bessel function of the second kind of integer order n (a
    non-integer n is truncated, as scipy.special.yn).  Differentiable in x:
    d/dx = (yn(n - 1, x) - yn(n + 1, x)) / 2; n is piecewise constant."""
    return C.yn(n, x)


def i0(x):
    """i0(x): the modified Bessel function of the first kind of order 0
    (scipy.special.i0).  d/dx = i1(x)."""
    return C.i0(x)


def i1(x):
    """i1(x): the modified Bessel function of the first kind of order 1
    (scipy.special.i1).  d/dx = i0(x) - i1(x) / x (1/2 at 0)."""
    return C.i1(x)


def i0e(x):
    """i0e(x) = exp(-|x|) i0(x) (scipy.special.i0e).  d/dx = i1e(x) - sign(x) i0e(x)
    (0 at the kink x = 0)."""
    return C.i0e(x)


def i1e(x):
    """i1e(x) = exp(-|x|) i1(x) (scipy.special.i1e).
    d/dx = i0e(x) - i1e(x) / x - sign(x) i1e(x) (1/2 at 0)."""
    return C.i1e(x)
