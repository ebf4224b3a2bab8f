"""Elementwise ops: one entry each.  ``fwd`` and the partials ``d`` are C
expressions (see _registry); the build generates the CPU loops, the scalar fast
path and the vjp kernels from them."""
import numpy as np

from ._registry import Case, defop

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
    return defop(name, "ew", args=("x",), fwd=fwd, d={"x": d}, ref=ref, cases=UNARY,
                 domain=domain, ufunc=kw.pop("ufunc", name), **kw)


def _binary(name, fwd, dx, dy, ref, domain=(-2.0, 2.0), **kw):
    return defop(name, "ew", args=("x", "y"), fwd=fwd, d={"x": dx, "y": dy}, ref=ref,
                 cases=BINARY, domain=domain, ufunc=kw.pop("ufunc", name), **kw)


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
