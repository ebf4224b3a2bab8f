"""Elementwise ops: one entry each.  ``fwd`` and the partials ``d`` are C
expressions (see _registry); the build generates the CPU loops, the scalar fast
path and the vjp kernels from them."""
import numpy as np

from ._registry import Case, defop


class _SciPy:
    """scipy.special's functions as numpy references, imported when a test calls one:
    the build reads this table where scipy is not installed (pip's build isolation)"""

    def __getattr__(self, name):
        def ref(*a, **kw):
            import scipy.special
            return getattr(scipy.special, name)(*a, **kw)
        ref.__name__ = name
        return ref


_sp = _SciPy()

try:
    from .._core import _engine as C
except ImportError:   # the build reads this table before the extension exists
    C = None

UNARY = [Case(()), Case((3,)), Case((2, 3)), Case((0,)), Case((2, 0)),
         Case(("T", (3, 2))), Case(("S", (3,)))]
BINARY = [Case((), ()), Case((3,), ()), Case((), (3,)), Case((2, 3), (3,)),
          Case((2, 1), (1, 3)), Case(("T", (3, 2)), (3, 2)), Case(("S", (3,)), ("S", (3,))),
          Case((0, 3), (3,)), Case((3,), ("C", 0.7)), Case(("C", 1.3), (2,)),
          Case((2, 3), ("F", np.array([0.6, 1.1, 1.7])))]


def _unary(name, fwd, d, ref, domain=(-2.0, 2.0), **kw):
    return defop(name, "ew", args=("x",), fwd=fwd, d={"x": d}, ref=ref, cases=kw.pop("cases", UNARY),
                 domain=domain, ufunc=kw.pop("ufunc", name), **kw)


def _binary(name, fwd, dx, dy, ref, domain=(-2.0, 2.0), **kw):
    return defop(name, "ew", args=("x", "y"), fwd=fwd, d={"x": dx, "y": dy}, ref=ref,
                 cases=kw.pop("cases", BINARY), domain=domain, ufunc=kw.pop("ufunc", name), **kw)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


_unary("neg", "-x", "-1", np.negative, int_ok=True, ufunc="negative")
_unary("exp", "exp(x)", "out", np.exp)
_unary("log", "log(x)", "1 / x", np.log, domain=(0.5, 2.0))
_unary("sin", "sin(x)", "cos(x)", np.sin)
_unary("cos", "cos(x)", "-sin(x)", np.cos)
_unary("tan", "tan(x)", "1 + out * out", np.tan, domain=(-1.0, 1.0))
_unary("tanh", "tanh(x)", "1 - out * out", np.tanh)
_unary("sigmoid", "select(x >= 0, 1 / (1 + exp(-x)), exp(x) / (1 + exp(x)))",
       "out * (1 - out)", _sigmoid, ufunc=None)
_unary("relu", "max2(x, 0)", "x > 0", lambda x: np.maximum(x, 0), int_ok=True, ufunc=None)
_unary("sqrt", "sqrt(x)", "0.5 / out", np.sqrt, domain=(0.5, 2.0))
_unary("abs", "abs(x)", "sign(x)", np.abs, int_ok=True, ufunc="absolute")
_unary("square", "x * x", "2 * x", np.square, int_ok=True)
_unary("log1p", "log1p(x)", "1 / (1 + x)", np.log1p, domain=(-0.5, 2.0))
_unary("expm1", "expm1(x)", "out + 1", np.expm1)

_unary("sinh", "sinh(x)", "cosh(x)", np.sinh)
_unary("cosh", "cosh(x)", "sinh(x)", np.cosh)
_unary("arcsin", "asin(x)", "1 / sqrt(1 - x * x)", np.arcsin, domain=(-0.9, 0.9), aliases=("asin",))
_unary("arccos", "acos(x)", "-1 / sqrt(1 - x * x)", np.arccos, domain=(-0.9, 0.9), aliases=("acos",))
_unary("arctan", "atan(x)", "1 / (1 + x * x)", np.arctan, aliases=("atan",))
_unary("arcsinh", "asinh(x)", "1 / hypot(x, 1.0)", np.arcsinh, aliases=("asinh",))
_unary("arccosh", "acosh(x)", "1 / (sqrt(x - 1) * sqrt(x + 1))", np.arccosh, domain=(1.2, 3.0),
       aliases=("acosh",))
_unary("arctanh", "atanh(x)", "1 / (1 - x * x)", np.arctanh, domain=(-0.9, 0.9), aliases=("atanh",))
_unary("log2", "log2(x)", "1.4426950408889634 / x", np.log2, domain=(0.5, 2.0))
_unary("log10", "log10(x)", "0.4342944819032518 / x", np.log10, domain=(0.5, 2.0))
_unary("exp2", "exp2(x)", "out * 0.6931471805599453", np.exp2)
_unary("reciprocal", "1 / x", "-out * out", lambda x: 1.0 / x, domain=(0.5, 2.0),
       cases=UNARY + [Case(("V", np.array([-1.7, -0.6, 0.8])))])
_unary("rsqrt", "1 / sqrt(x)", "-0.5 * out / x", lambda x: 1.0 / np.sqrt(x), domain=(0.5, 2.0),
       ufunc=None)
_unary("deg2rad", "x * 0.017453292519943295", "0.017453292519943295", np.deg2rad)
_unary("rad2deg", "x * 57.29577951308232", "57.29577951308232", np.rad2deg)
_unary("fabs", "abs(x)", "sign(x)", np.fabs)
# sin(pi x) / (pi x), 1 at 0 (numpy).  The partial (cos(pi x) - out) / x cancels near 0,
# so |x| < 0.015 takes its Taylor polynomial (pi u (-1/3 + u^2/30 - u^4/840 + u^6/45360),
# u = pi x, truncation below 1e-16 relative): the derivatives at 0 then come from the
# polynomial, exact through the 9th (the 10th and higher are not).
_unary("sinc", "select(x == 0, 1, sin(3.141592653589793 * x) / (3.141592653589793 * select(x == 0, 1, x)))",
       "select(abs(x) < 0.015, 9.869604401089358 * x * (-0.3333333333333333 + 9.869604401089358 * x * x"
       " * (0.03333333333333333 + 9.869604401089358 * x * x * (-0.0011904761904761906"
       " + 9.869604401089358 * x * x * 2.2045855379188714e-05))),"
       " (cos(3.141592653589793 * x) - out) / select(abs(x) < 0.015, 1, x))",
       np.sinc, ufunc=None,
       cases=UNARY + [Case(("V", np.array([0.0, 1e-3, -0.01, 0.0149, 0.0151, -0.4, 1.0])))])
# log(1 + exp(x)) without overflow; the partial is sigmoid(x)
_unary("softplus", "max2(x, 0) + log1p(exp(-abs(x)))", "sigmoid(x)", lambda x: np.logaddexp(x, 0.0),
       ufunc=None, method=False, domain=(-4.0, 4.0))
_unary("silu", "x * sigmoid(x)", "sigmoid(x) * (1 + x * (1 - sigmoid(x)))", lambda x: x * _sigmoid(x),
       ufunc=None, method=False, domain=(-4.0, 4.0))
_unary("erf", "erf(x)", "1.1283791670955126 * exp(-x * x)", _sp.erf)
_unary("erfc", "erfc(x)", "-1.1283791670955126 * exp(-x * x)", _sp.erfc)
# d erfinv(x)/dx = sqrt(pi)/2 exp(erfinv(x)^2)
_unary("erfinv", "erfinv(x)", "0.886226925452758 * exp(out * out)", _sp.erfinv, domain=(-0.9, 0.9))


def _np_gelu(x, approximate="none"):
    if approximate == "tanh":
        return 0.5 * x * (1 + np.tanh(0.7978845608028654 * (x + 0.044715 * x ** 3)))
    return 0.5 * x * _sp.erfc(-x / np.sqrt(2.0))


# the exact gelu x Phi(x) (PyTorch's default), as 0.5 x erfc(-x / sqrt 2): no
# cancellation for x < 0; approximate="tanh" is PyTorch's other form, a composite
GELU = _unary("gelu", "0.5 * x * erfc(-0.7071067811865476 * x)",
              "0.5 * erfc(-0.7071067811865476 * x) + 0.3989422804014327 * x * exp(-0.5 * x * x)",
              _np_gelu, ufunc=None, method=False, domain=(-4.0, 4.0),
              cases=UNARY + [Case((3,), approximate="tanh"), Case((2, 3), approximate="tanh")])


@GELU
def gelu(x, approximate="none"):
    """gelu(x, approximate="none"): x Phi(x), Phi the normal CDF (PyTorch's default);
    approximate="tanh": 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
    if approximate == "none":
        return C._prim_gelu(x)
    if approximate == "tanh":
        return 0.5 * x * (1 + C.tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)))
    raise ValueError(f"gelu: approximate must be 'none' or 'tanh', not {approximate!r}")


_NEG = [Case(("V", np.array([-2.7, -1.5, -0.3, 0.4, 3.3])))]   # negative non-integer x too
_unary("gammaln", "gammaln(x)", "digamma(x)", _sp.gammaln, domain=(0.5, 3.0), aliases=("lgamma",),
       cases=UNARY + _NEG)
_unary("digamma", "digamma(x)", "polygamma(1, x)", _sp.digamma, domain=(0.5, 3.0), ufunc="psi",
       cases=UNARY + _NEG)

_binary("add", "x + y", "1", "1", np.add, int_ok=True)
_binary("sub", "x - y", "1", "-1", np.subtract, int_ok=True, ufunc="subtract")
_binary("mul", "x * y", "y", "x", np.multiply, int_ok=True, ufunc="multiply")
_binary("div", "x / y", "1 / y", "-out / y", np.true_divide,
        domain=((-2.0, 2.0), (0.5, 2.0)), ufunc="true_divide")
# The partials guard their singular points twice (the select outside gives the value,
# the select inside keeps the unused branch finite), so that the derivatives of the
# partials (higher order, where the unused branch gets a zero cotangent) are not
# 0 * inf = nan: d/dx at x = y = 0 is 0; d/dy at x = 0, y >= 0 is 0.
POW = _binary("pow", "pow(x, y)",
        "select((x == 0) & (y == 0), 0, y * pow(x, select((x == 0) & (y == 0), 1, y - 1)))",
        "select((x == 0) & (y >= 0), 0, out * log(select((x == 0) & (y >= 0), 1, x)))",
        np.power, int_ok=True,
        domain=((0.5, 2.0), (-2.0, 2.0)), ufunc="power")
_binary("maximum", "max2(x, y)", "select(x > y, 1, select(x == y, 0.5, 0))",
        "select(y > x, 1, select(x == y, 0.5, 0))", np.maximum, int_ok=True)
_binary("minimum", "min2(x, y)", "select(x < y, 1, select(x == y, 0.5, 0))",
        "select(y < x, 1, select(x == y, 0.5, 0))", np.minimum, int_ok=True)

_binary("arctan2", "atan2(x, y)",
        "select((x == 0) & (y == 0), 0, y / select((x == 0) & (y == 0), 1, x * x + y * y))",
        "select((x == 0) & (y == 0), 0, -x / select((x == 0) & (y == 0), 1, x * x + y * y))",
        np.arctan2, aliases=("atan2",))
# d hypot / dx = x / out, 0 at the origin (as the norm's subgradient convention)
_binary("hypot", "hypot(x, y)", "select(out == 0, 0, x / select(out == 0, 1, out))",
        "select(out == 0, 0, y / select(out == 0, 1, out))", np.hypot)
# numpy's remainder (the sign of y), also the operator %: d/dx = 1, d/dy = -floor(x / y)
# (numpy-autograd, JAX, PyTorch)
_binary("remainder", "remainder(x, y)", "1", "-floor(x / y)", np.remainder, int_ok=True,
        domain=((-2.0, 2.0), (0.5, 2.0)), aliases=("mod",))
# C's fmod (the sign of x): d/dy = -trunc(x / y)
_binary("fmod", "fmod(x, y)", "1", "-select(x / y < 0, ceil(x / y), floor(x / y))", np.fmod,
        int_ok=True, domain=((-2.0, 2.0), (0.5, 2.0)))
# log(exp(x) + exp(y)) as numpy (equal arguments, infinities included, give x + log 2);
# the partials exp(x - out), exp(y - out) are the softmax of (x, y)
_binary("logaddexp", "select(x == y, x + 0.6931471805599453, max2(x, y) + log1p(exp(-abs(x - y))))",
        "exp(x - out)", "exp(y - out)", np.logaddexp)
_binary("logaddexp2",
        "select(x == y, x + 1, max2(x, y) + log1p(exp2(-abs(x - y))) * 1.4426950408889634)",
        "exp2(x - out)", "exp2(y - out)", np.logaddexp2)
# numpy's fmax/fmin: a NaN loses to a number; ties split the gradient as maximum does
_binary("fmax", "fmax(x, y)", "select(isnan(y), 1, select(x > y, 1, select(x == y, 0.5, 0)))",
        "select(isnan(x), 1, select(y > x, 1, select(x == y, 0.5, 0)))", np.fmax, int_ok=True)
_binary("fmin", "fmin(x, y)", "select(isnan(y), 1, select(x < y, 1, select(x == y, 0.5, 0)))",
        "select(isnan(x), 1, select(y < x, 1, select(x == y, 0.5, 0)))", np.fmin, int_ok=True)
# x log(y), 0 where x == 0 unless y is nan (scipy, PyTorch).  d/dx = log(y), 0 where
# x == 0 and y <= 0 (PyTorch); d/dy = x / y, 0 where x == 0 (PyTorch: nan at x = y = 0)
_binary("xlogy", "select((x == 0) & (y == y), 0, x * log(y))",
        "select((x == 0) & (y <= 0), 0, log(select((x == 0) & (y <= 0), 1, y)))",
        "select(x == 0, 0, x / select(x == 0, 1, y))",
        _sp.xlogy, domain=((-2.0, 2.0), (0.5, 2.0)),
        cases=BINARY + [Case(("F", np.array([0.0, 0.0, 1.5])), (3,))])
# polygamma(n, x): the n-th derivative of digamma, n a nonnegative integer (nan
# otherwise).  NOTE: the scalar paths name a binary op's inputs x, y, so here x is n
# and y is x; n is piecewise constant (its partial is 0), so the public function
# (below) takes it as a plain argument.
POLYGAMMA = _binary("polygamma", "polygamma(x, y)", "0", "polygamma(x + 1, y)", _sp.polygamma,
                    domain=((0.0, 0.0), (0.5, 3.0)), ufunc=None, method=False,
                    cases=[Case(("C", 1), (3,)), Case(("C", 0), (2, 3)), Case(("C", 2), ()),
                           Case(("C", 3), ("T", (3, 2))), Case(("F", np.array([0.0, 1.0, 2.0])), (3,)),
                           Case(("C", 1), (0,)), Case(("C", 1), _NEG[0].inputs[0]),
                           Case(("C", 2), _NEG[0].inputs[0])])



@POLYGAMMA
def polygamma(n, x):
    """polygamma(n, x): the n-th derivative of digamma (scipy.special.polygamma,
    torch.polygamma); n a nonnegative integer, nan for other n.  Differentiable in x."""
    return C._prim_polygamma(n, x)


# scipy.special's elementwise functions (issue 18): ops of the table (CPU, CUDA,
# every order of derivative) not exported as cad.* (numpy has no such names) nor as
# methods; cad.scipy.special has them under scipy's names and signatures
# (cad/scipy/_table_special.py).  The C of those <math.h> lacks is in cad_special.h.
def _scipy_unary(name, fwd, d, domain=(-2.0, 2.0), **kw):
    return _unary(name, fwd, d, getattr(_sp, name), domain=domain, export=False, method=False, **kw)


_POLES = [Case(("V", np.array([-3.0, -2.0, -1.0, 0.0, -2.5, 0.7, 4.2])))]
_scipy_unary("gamma", "gamma(x)", "out * digamma(x)", domain=(0.5, 3.0), cases=UNARY + _NEG)
# d/dx 1/gamma = -rgamma(x) digamma(x); for x <= 0 by the reflection formula
# 1/gamma(x) = gamma(1 - x) sin(pi x) / pi, smooth through the poles (the value at
# -n is (-1)^n n!): u and v keep the unused branch finite (higher orders)
_U, _V = "select(x <= 0, x, 0.0)", "select(x <= 0, 1.0, x)"
_scipy_unary("rgamma", "rgamma(x)",
             f"select(x <= 0, gamma(1 - {_U}) * (cos(3.141592653589793 * {_U}) - digamma(1 - {_U})"
             f" * sin(3.141592653589793 * {_U}) * 0.3183098861837907), -out * digamma({_V}))",
             domain=(0.5, 3.0), cases=UNARY + _NEG + _POLES)
_scipy_unary("gammasgn", "gammasgn(x)", "0", domain=(0.5, 3.0), cases=UNARY + _NEG)
# d erfcinv(x)/dx = -sqrt(pi)/2 exp(erfcinv(x)^2)
_scipy_unary("erfcinv", "erfcinv(x)", "-0.886226925452758 * exp(out * out)", domain=(0.2, 1.8),
             cases=UNARY + [Case(("V", np.array([0.01, 0.4, 1.0, 1.7, 1.99])))])
# log(x / (1 - x)) (near 1/2 without cancellation, cad_special.h)
_scipy_unary("logit", "logit(x)", "1 / (x * (1 - x))", domain=(0.1, 0.9))
# the normal CDF through erfc: accurate in both tails
_scipy_unary("ndtr", "ndtr(x)", "0.3989422804014327 * exp(-0.5 * x * x)", domain=(-3.0, 3.0))
# d log_ndtr = phi(x) / Phi(x) = exp(-x^2/2 - log_ndtr(x)) / sqrt(2 pi): finite far in the tail
_scipy_unary("log_ndtr", "log_ndtr(x)", "0.3989422804014327 * exp(-0.5 * x * x - out)", domain=(-3.0, 3.0),
             cases=UNARY + [Case(("V", np.array([-40.0, -21.0, -19.0, -5.0, 0.0, 6.0])))])
# d ndtri(p)/dp = sqrt(2 pi) exp(ndtri(p)^2 / 2)
_scipy_unary("ndtri", "ndtri(x)", "2.5066282746310002 * exp(0.5 * out * out)", domain=(0.05, 0.95),
             cases=UNARY + [Case(("V", np.array([0.002, 0.2, 0.5, 0.8, 0.998])))])
# Bessel functions; the 1/x terms are guarded at 0 (where j1' = i1' = 1/2)
_scipy_unary("j0", "j0(x)", "-j1(x)", domain=(-4.0, 4.0))
_scipy_unary("j1", "j1(x)", "select(x == 0, 0.5, j0(x) - out / select(x == 0, 1.0, x))", domain=(-4.0, 4.0),
             cases=UNARY + [Case(("V", np.array([0.0, -7.5, 12.0])))])
_scipy_unary("y0", "y0(x)", "-y1(x)", domain=(0.5, 4.0))
_scipy_unary("y1", "y1(x)", "y0(x) - out / x", domain=(0.5, 4.0))
_scipy_unary("i0", "i0(x)", "i1(x)", domain=(-3.0, 3.0))
_scipy_unary("i1", "i1(x)", "select(x == 0, 0.5, i0(x) - out / select(x == 0, 1.0, x))", domain=(-3.0, 3.0),
             cases=UNARY + [Case(("V", np.array([0.0, -2.5, 3.1])))])
# exp(-|x|) I(x): the kink at 0 takes sign(0) = 0
_I_E = [Case(("V", np.array([-9.5, -0.7, 0.3, 7.9, 8.1, 30.0])))]
_scipy_unary("i0e", "i0e(x)", "i1e(x) - sign(x) * out", domain=(0.2, 3.0), cases=UNARY + _I_E)
_scipy_unary("i1e", "i1e(x)", "select(x == 0, 0.5, i0e(x) - out / select(x == 0, 1.0, x)) - sign(x) * out",
             domain=(0.2, 3.0), cases=UNARY + _I_E)
# x log1p(y), 0 where x == 0 unless y is nan (scipy); partials as xlogy's
_binary("xlog1py", "select((x == 0) & (y == y), 0, x * log1p(y))",
        "select((x == 0) & (y <= -1), 0, log1p(select((x == 0) & (y <= -1), 0.0, y)))",
        "select(x == 0, 0, x / select(x == 0, 1, 1 + y))",
        _sp.xlog1py, domain=((-2.0, 2.0), (-0.5, 2.0)), export=False, method=False,
        cases=BINARY + [Case(("F", np.array([0.0, 0.0, 1.5])), (3,))])
# integer order n (x here, as polygamma's n): piecewise constant, its partial 0;
# d/dx J_n(x) = (J_(n-1)(x) - J_(n+1)(x)) / 2, the same for Y_n
_ORDER = [Case(("C", 1), (3,)), Case(("C", 0), (2, 3)), Case(("C", 2), ()), Case(("C", 3), ("T", (3, 2))),
          Case(("F", np.array([0.0, 1.0, 2.0])), (3,)), Case(("C", 1), (0,)), Case(("C", -2), (3,))]
_binary("jn", "jn(x, y)", "0", "0.5 * (jn(x - 1, y) - jn(x + 1, y))", _sp.jn,
        domain=((0.0, 0.0), (-4.0, 4.0)), export=False, method=False, ufunc=None, cases=_ORDER)
_binary("yn", "yn(x, y)", "0", "0.5 * (yn(x - 1, y) - yn(x + 1, y))", _sp.yn,
        domain=((0.0, 0.0), (0.5, 4.0)), export=False, method=False, cases=_ORDER)


defop("where", "ew", args=("c", "x", "y"), fwd="select(c, x, y)",
      d={"x": "select(c, 1, 0)", "y": "select(c, 0, 1)"}, nondiff_args=("c",),
      ref=np.where, int_ok=True, method=False, ufunc=None,
      cases=[Case(("B", np.array([True, False, True])), (3,), (3,)),
             Case(("B", np.array([[True], [False]])), (3,), ()),
             Case(("B", np.array(True)), (), (2,)),
             Case(("B", np.array([True, False])), ("C", 0.0), (2,))],
      doc="where(c, x, y): x where the boolean c holds, else y (broadcast).")

defop("clip", "ew", args=("x", "lo", "hi"), fwd="min2(max2(x, lo), hi)",
      d={"x": "(x >= lo) & (x <= hi)", "lo": "(x < lo) & (lo <= hi)", "hi": "max2(x, lo) > hi"},
      ref=np.clip, int_ok=True, ufunc=None,
      cases=[Case((4,), ("C", -0.5), ("C", 0.5)), Case((2, 3), ("C", -0.5), ("C", 0.5)),
             Case((), ("C", -0.5), ("C", 0.5)),
             Case((3,), ("F", np.array([-0.9, -0.3, 0.25])), ("F", np.array([0.9, 0.4, 1.5])))],
      doc="clip(x, lo, hi) as numpy: min(max(x, lo), hi).")

# Comparisons and logic: elementwise C kernels with a bool result (no derivative);
# recorded like every op, so a replayed tape recomputes its masks and branch tests.
for _name, _fwd, _ref in [("eq", "x == y", np.equal), ("ne", "x != y", np.not_equal),
                          ("lt", "x < y", np.less), ("le", "x <= y", np.less_equal),
                          ("gt", "x > y", np.greater), ("ge", "x >= y", np.greater_equal),
                          ("logical_and", "(x != 0) && (y != 0)", np.logical_and),
                          ("logical_or", "(x != 0) || (y != 0)", np.logical_or),
                          ("logical_xor", "(x != 0) != (y != 0)", np.logical_xor)]:
    defop(_name, "bool", args=("x", "y"), fwd=_fwd, ref=_ref, differentiable=False,
          ufunc=_ref.__name__, cases=[Case((3,), (3,)), Case((2, 3), ()), Case((), ("C", 0.1)),
                                      Case(("I", np.array([1, 2, 3])), ("C", 2))])
for _name, _fwd, _ref in [("logical_not", "x == 0", np.logical_not),
                          ("isfinite", "isfinite(x)", np.isfinite), ("isnan", "isnan(x)", np.isnan)]:
    defop(_name, "bool", args=("x",), fwd=_fwd, ref=_ref, differentiable=False,
          ufunc=_ref.__name__, cases=[Case((3,)), Case(()),
                                      Case(("F", np.array([1.0, np.inf, np.nan, -np.inf])))])
# Piecewise constant: computed by numpy, the result never requires grad.
for _name, _ref in [("sign", np.sign), ("floor", np.floor), ("ceil", np.ceil), ("round", np.round)]:
    defop(_name, "cmp", args=("x",), ref=_ref, differentiable=False,
          ufunc=None if _name == "round" else _ref.__name__,
          cases=[Case((3,)), Case(())])

_NONFINITE = np.array([1.0, np.nan, np.inf, -np.inf, -2.5])
NAN_TO_NUM = defop(
    "nan_to_num", "composite", ref=np.nan_to_num,
    cases=[Case((3,)), Case((2, 3), nan=1.5, posinf=9.0), Case(("F", _NONFINITE)),
           Case(("F", _NONFINITE), nan=2.0, posinf=3.0, neginf=-4.0),
           Case(("F", _NONFINITE.astype(np.float32)))],
    doc="nan_to_num(x, nan=0.0, posinf=None, neginf=None) as numpy.")


@NAN_TO_NUM
def nan_to_num(x, nan=0.0, posinf=None, neginf=None):
    """nan_to_num(x, nan=0.0, posinf=None, neginf=None) as numpy: nan, +inf and -inf
    replaced (the infinities by the dtype's largest finite values by default);
    the derivative is 1 where x is finite, else 0.  Integers are returned as they are."""
    x = C.as_tensor(x)
    if x.dtype not in (C.float64, C.float32):
        return x
    big = float(np.finfo(np.float64 if x.dtype == C.float64 else np.float32).max)
    posinf = big if posinf is None else posinf
    neginf = -big if neginf is None else neginf
    r = C.where(x == np.inf, posinf, C.where(x == -np.inf, neginf, x))
    return C.where(C.isnan(x), nan, r)


@NAN_TO_NUM.batch
def _nan_to_num_batch(op, level, args, kwargs):
    from ._batch import ew_rule   # (imports the table)
    return ew_rule(op, level, args, kwargs)


def _pow_dx(ctx):
    """d x**c / dx = c x**(c-1) for a constant exponent c (no select: two ops)"""
    if ctx.wants(1) or ctx.ins[1] < 0:
        return None
    y = ctx.val(1)
    if y.ndim != 0 or y.requires_grad:
        return None
    c = float(y)
    x = ctx.val(0)
    if c == 0 or c == 1:   # constants: no pow(x, -1) or pow(x, 0) whose derivative is nan at 0
        one = C.ones_like_value(x)
        return one * 0.0 if c == 0 else one
    return (x ** (c - 1)) * c


POW.fast_partial["x"] = _pow_dx


def check_record(c):
    """the loader's check of an elementwise or bool record (NOTE [ A primitive's rules ];
    c: cad.io.RecordCheck); attached to every such op by cad.ops.bind"""
    c.nargs(len(c.op.args))
    c.naux(0)
    sh = c.bshape()
    if c.op.kind == "ew":
        c.need(c.odt <= 1, f"computes float values; the output is {c.DTN[c.odt]}", "out")
        for k, dt in enumerate(c.dts):
            want = 3 if (c.op.name == "where" and k == 0) else c.odt
            c.need(dt == want, f"input {k} must be {c.DTN[want]} here, it is {c.DTN[dt]}", f"args[{k}]")
        c.out_is(sh, c.odt)
    else:
        c.need(len(set(c.dts)) == 1, f"inputs of one dtype, got {c.sig()}", "args")
        c.out_is(sh, 3)
