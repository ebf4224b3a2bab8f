"""cad.scipy's table special functions (cad/scipy/_table_special.py, table lines in
cad/ops/elementwise.py; the generated suite in tests/ops/test_rules.py covers them at
random points): values against scipy.special on grids with the hard regions (poles,
tails, large and small magnitudes, infinities), float32 against float64,
broadcasting, first and second derivatives against central differences, forward
over reverse, vmap and the (fake) CUDA device."""
import numpy as np
import pytest
import scipy.special as sp

import cad
from cad.scipy import _table_special as cs

from _numeric import fd_grad

NAMES = ["gamma", "rgamma", "gammasgn", "erfcinv", "logit", "xlog1py", "ndtr", "log_ndtr", "ndtri",
         "j0", "j1", "y0", "y1", "jn", "yn", "i0", "i1", "i0e", "i1e"]
SPECIAL = [np.inf, -np.inf, np.nan]


def _np(t):
    return np.asarray(t, dtype=np.float64)


def test_exports_exactly_scipys_names_and_not_at_top_level():
    assert sorted(cs.__all__) == sorted(NAMES)
    for n in NAMES:
        assert callable(getattr(cs, n))
        assert n not in cad.__all__ and not hasattr(cad, n), n
        assert not hasattr(cad.Tensor, n), n


GRIDS = {
    "gamma": np.r_[np.linspace(-20.5, 171.6, 2001), -np.arange(0.0, 30.0), -np.arange(0.0, 20.0) - 0.5,
                   -np.arange(1.0, 10.0) + 1e-9, -np.arange(1.0, 10.0) - 1e-9, 171.5, 171.7, 172.0,
                   -0.0, 1e-300, -1e-300, -170.5, -171.5, -200.5, SPECIAL],
    "rgamma": np.r_[np.linspace(-20.5, 171.6, 2001), -np.arange(0.0, 30.0), -np.arange(1.0, 10.0) + 1e-9,
                    171.5, 172.0, 180.0, -0.0, -171.5, -200.5, SPECIAL],
    "gammasgn": np.r_[np.linspace(-20.5, 20.6, 2001), -np.arange(0.0, 30.0), -0.0, 1e-300, -1e-300, SPECIAL],
    "erfcinv": np.r_[np.linspace(0.0, 2.0, 2001), 10.0 ** -np.arange(0.0, 308.0, 0.5), 1e-300,
                     2 - 10.0 ** -np.arange(1.0, 16.0, 0.25), -1.0, 2.5, np.nan],
    "logit": np.r_[np.linspace(0.0, 1.0, 2001), 1e-300, 1e-10, 0.5 + 1e-12, 1 - 1e-12, -1.0, 2.0, SPECIAL],
    "ndtr": np.r_[np.linspace(-38.0, 10.0, 2001), -30.0, 8.0, SPECIAL],
    "log_ndtr": np.r_[np.linspace(-60.0, 40.0, 4001), -10.0 ** np.arange(0.0, 5.0, 0.1), -40.0, -20.0, 6.0,
                      SPECIAL],
    "ndtri": np.r_[np.linspace(0.0, 1.0, 2001), 10.0 ** -np.arange(0.0, 308.0, 0.5), 1e-300,
                   1 - 10.0 ** -np.arange(1.0, 16.0, 0.25), -1.0, 2.0, np.nan],
    "j0": np.r_[np.linspace(-60.0, 60.0, 2001), 0.0, 1e-300, 1e5, SPECIAL],
    "j1": np.r_[np.linspace(-60.0, 60.0, 2001), 0.0, -0.0, 1e-300, 1e5, SPECIAL],
    "y0": np.r_[np.linspace(-1.0, 60.0, 2001), 0.0, -0.0, 1e-300, 1e5, SPECIAL],
    "y1": np.r_[np.linspace(-1.0, 60.0, 2001), 0.0, 1e-300, 1e5, SPECIAL],
    "i0": np.r_[np.linspace(-720.0, 720.0, 4001), np.linspace(-9.0, 9.0, 401), 0.0, 709.0, 710.0, SPECIAL],
    "i1": np.r_[np.linspace(-720.0, 720.0, 4001), np.linspace(-9.0, 9.0, 401), 0.0, -0.0, 1e-300, SPECIAL],
    "i0e": np.r_[np.linspace(-800.0, 800.0, 4001), np.linspace(-9.0, 9.0, 401), 700.0, 1e10, 1e300, 0.0,
                 SPECIAL],
    "i1e": np.r_[np.linspace(-800.0, 800.0, 4001), np.linspace(-9.0, 9.0, 401), 700.0, -1e10, 1e300, 0.0,
                 1e-300, SPECIAL],
}
# (rtol, atol): the Bessel functions of <math.h> agree with scipy's to about 1e-16
# absolutely near their zeros (where relative agreement is lost) and to ulp(x) f'(x) at
# large x; scipy's ndtr and log_ndtr lose 2e-13 in their far tails (ours 5e-16, below)
TOL = {"j0": (1e-13, 1e-14), "j1": (1e-13, 1e-14), "y0": (1e-13, 1e-14), "y1": (1e-13, 1e-14),
       "gamma": (1e-13, 0.0), "ndtr": (3e-13, 0.0), "log_ndtr": (3e-13, 0.0)}


@pytest.mark.parametrize("name", sorted(GRIDS))
def test_unary_values_against_scipy(name):
    x = GRIDS[name]
    with np.errstate(all="ignore"):
        want = getattr(sp, name)(x)
    got = _np(getattr(cs, name)(cad.tensor(x)))
    if name in ("gamma", "log_ndtr", "ndtr"):   # scipy flushes some subnormal results to 0
        sub = (np.abs(got) < 1e-300) & (want == 0)
        got = np.where(sub, want, got)
    rtol, atol = TOL.get(name, (2e-14, 0.0))
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)
    # the infinities, zeros and nans where scipy has them (the signs of zeros too)
    special = ~np.isfinite(want) | (want == 0)
    np.testing.assert_equal(got[special], want[special])
    if name != "erfcinv":   # (scipy's erfcinv(1) is -0.0)
        assert np.array_equal(np.signbit(got[want == 0]), np.signbit(want[want == 0])), name


def test_hard_points():
    """the tails and poles the brief names, against scipy"""
    t = cad.tensor
    assert np.isclose(float(cs.log_ndtr(t(-40.0))), sp.log_ndtr(-40.0), rtol=1e-15)
    assert np.isclose(float(cs.log_ndtr(t(-1e5))), sp.log_ndtr(-1e5), rtol=1e-15)
    assert np.isclose(float(cs.log_ndtr(t(9.0))), sp.log_ndtr(9.0), rtol=1e-14)   # -1.1e-19
    assert np.isclose(float(cs.ndtri(t(1e-300))), sp.ndtri(1e-300), rtol=1e-15)
    assert np.isclose(float(cs.erfcinv(t(1e-300))), sp.erfcinv(1e-300), rtol=1e-15)
    assert np.isclose(float(cs.erfcinv(t(5e-324))), 27.21329321081295, rtol=1e-14)   # scipy: inf
    assert np.isclose(float(cs.i0e(t(700.0))), sp.i0e(700.0), rtol=1e-15)
    assert np.isclose(float(cs.ndtr(t(-37.0))), sp.ndtr(-37.0), rtol=1e-12)
    assert float(cs.gamma(t(171.5))) == pytest.approx(sp.gamma(171.5), rel=1e-13)
    assert float(cs.gamma(t(171.7))) == np.inf and float(cs.rgamma(t(172.0))) == 0.0
    for k in range(1, 8):   # next to the poles
        for e in (1e-9, -1e-9, 1e-4):
            x = -k + e
            assert np.isclose(float(cs.gamma(t(x))), sp.gamma(x), rtol=1e-7), x
            assert np.isclose(float(cs.rgamma(t(x))), sp.rgamma(x), rtol=1e-7), x


def test_accuracy_against_mpmath():
    """ndtr and log_ndtr to a few ulp in both tails (scipy's lose 2e-13 there), and
    the inverses in the far tail"""
    mp = pytest.importorskip("mpmath")
    mp.mp.dps = 40
    x = np.r_[np.linspace(-38.0, 9.0, 95), np.linspace(9.5, 37.0, 12)]
    ndtr = [float(mp.ncdf(v)) for v in x]
    log_ndtr = [float(mp.log(mp.ncdf(v)) if v < 0 else mp.log1p(-mp.ncdf(-v))) for v in x]
    np.testing.assert_allclose(_np(cs.ndtr(cad.tensor(x[x < 9]))), np.array(ndtr)[x < 9], rtol=2e-15)
    np.testing.assert_allclose(_np(cs.log_ndtr(cad.tensor(x))), log_ndtr, rtol=2e-15)
    y = 10.0 ** -np.arange(1.0, 320.0, 7.0)
    want = [float(mp.findroot(lambda v: mp.erfc(v) - mp.mpf(float(u)), float(sp.erfcinv(u)) or 27.0))
            for u in y]
    np.testing.assert_allclose(_np(cs.erfcinv(cad.tensor(y))), want, rtol=4e-16)
    y, want = y[y > 1e-300], np.array(want)[y > 1e-300]   # (y / 2 exact)
    np.testing.assert_allclose(_np(cs.ndtri(cad.tensor(y / 2))), -np.sqrt(2) * want, rtol=4e-16)
    for v in (0.3, 4.5, 8.0, 8.5, 30.0, 400.0):   # both sides of the expansions' joints
        assert float(cs.i0e(cad.tensor(v))) == pytest.approx(float(mp.besseli(0, v) * mp.exp(-v)), rel=5e-16)
        assert float(cs.i1e(cad.tensor(-v))) == pytest.approx(-float(mp.besseli(1, v) * mp.exp(-v)), rel=5e-16)


def _order_grid():
    n = np.array([-5, -3, -2, -1, 0, 1, 2, 3, 5, 10, 30])[:, None]
    return n, np.r_[np.linspace(0.0, 40.0, 801), 1e-300, 1e-3, 100.0, 1e4, SPECIAL][None, :]


@pytest.mark.parametrize("name", ["jn", "yn"])
def test_integer_order_against_scipy(name):
    n, x = _order_grid()
    if name == "jn":
        x = np.concatenate([-x, x], axis=1)
    with np.errstate(all="ignore"):
        want = getattr(sp, name)(n, x)
    got = _np(getattr(cs, name)(cad.tensor(n.astype(float)), cad.tensor(x)))
    assert got.shape == want.shape
    fin = np.isfinite(want)
    np.testing.assert_equal(got[~fin], want[~fin])
    # the recurrences of <math.h> and scipy agree relatively, or near zeros absolutely
    err = np.abs(got[fin] - want[fin]) / np.maximum(np.abs(want[fin]), 1e-3)
    assert err.max() < 1e-11, err.max()
    # a Python int order, and the order broadcast against x
    np.testing.assert_allclose(_np(getattr(cs, name)(2, cad.tensor([0.5, 3.0]))),
                               getattr(sp, name)(2, np.array([0.5, 3.0])), rtol=1e-14)


def test_order_rules():
    assert np.isnan(float(cs.jn(2.5, cad.tensor(1.0))))   # scipy's jn is jv there
    with np.errstate(all="ignore"), pytest.warns(RuntimeWarning):
        assert float(cs.yn(2.5, cad.tensor(1.0))) == pytest.approx(sp.yn(2.5, 1.0), rel=1e-14)   # truncated
    assert float(cs.yn(-1, cad.tensor(0.0))) == sp.yn(-1, 0.0) == np.inf


def test_xlog1py_against_scipy():
    x = np.array([0.0, 0.0, 0.0, 0.0, 1.0, -2.0, 1.5, 0.0, 3.0])[:, None]
    y = np.array([-1.0, -2.0, np.nan, 0.5, 1e-20, -0.99, 1e10, np.inf, -np.inf])[None, :]
    with np.errstate(all="ignore"):
        want = sp.xlog1py(x, y)
    got = _np(cs.xlog1py(cad.tensor(x), cad.tensor(y)))
    np.testing.assert_allclose(got, want, rtol=1e-15)
    np.testing.assert_equal(np.isnan(got), np.isnan(want))


def test_logit_near_one_half_and_python_scalars():
    x = 0.5 + np.array([-1e-12, 1e-15, 3e-8, 0.1])
    np.testing.assert_allclose(_np(cs.logit(cad.tensor(x))), sp.logit(x), rtol=1e-14)
    assert float(cs.logit(0.25)) == pytest.approx(sp.logit(0.25), rel=1e-15)
    assert float(cs.xlog1py(2.0, 0.5)) == pytest.approx(sp.xlog1py(2.0, 0.5), rel=1e-15)


# ------------------------------------------------------------------ float32, broadcasting

F32 = [("gamma", 0.1, 9), ("rgamma", -3.5, 9), ("gammasgn", -3.5, 3), ("erfcinv", 0.01, 1.99),
       ("logit", 0.01, 0.99), ("ndtr", -9, 9), ("log_ndtr", -30, 9), ("ndtri", 0.001, 0.999),
       ("j0", -20, 20), ("j1", -20, 20), ("y0", 0.1, 20), ("y1", 0.1, 20), ("i0", -20, 20),
       ("i1", -20, 20), ("i0e", -20, 20), ("i1e", -20, 20)]


@pytest.mark.parametrize("name,lo,hi", F32, ids=[f[0] for f in F32])
def test_float32_matches_float64(name, lo, hi):
    x = np.linspace(lo, hi, 101).astype(np.float32).astype(np.float64)   # the same points
    if name == "gammasgn":
        x = x[x != np.round(x)]
    f = getattr(cs, name)
    y64 = _np(f(cad.tensor(x)))
    y32 = f(cad.tensor(x, dtype=cad.float32))
    assert y32.dtype == np.float32
    # computed in double and rounded once: within half a float32 ulp of the double
    np.testing.assert_allclose(np.asarray(y32, dtype=np.float64), y64, rtol=6.2e-8, atol=1e-38)


@pytest.mark.parametrize("name", ["jn", "yn", "xlog1py"])
def test_binary_float32_and_broadcasting(name):
    f = getattr(cs, name)
    a = np.array([[0.0], [1.0], [3.0]]) if name != "xlog1py" else np.array([[0.0], [-1.5], [2.0]])
    b = np.array([0.4, 1.7, 6.5, 11.0])
    want = getattr(sp, name)(a, b)
    got = f(cad.tensor(a), cad.tensor(b))
    assert got.shape == (3, 4)
    np.testing.assert_allclose(_np(got), want, rtol=1e-13, atol=1e-15)
    got32 = f(cad.tensor(a, dtype=cad.float32), cad.tensor(b.astype(np.float32), dtype=cad.float32))
    assert got32.dtype == np.float32
    want32 = getattr(sp, name)(a, b.astype(np.float32).astype(np.float64))
    np.testing.assert_allclose(np.asarray(got32, dtype=np.float64), want32, rtol=1e-7, atol=1e-8)


def test_unary_broadcasts_with_shapes_and_scalars():
    x = cad.tensor(np.linspace(0.1, 0.9, 6).reshape(2, 3))
    for name in ("gamma", "ndtri", "i1e", "j1", "logit"):
        y = getattr(cs, name)(x)
        assert y.shape == (2, 3)
        np.testing.assert_allclose(_np(y), getattr(sp, name)(_np(x)), rtol=1e-14)
    assert float(cs.ndtr(0.3)) == pytest.approx(sp.ndtr(0.3), rel=1e-15)


# ------------------------------------------------------------------ derivatives

def _grad_fn(f):
    return cad.grad(lambda x: f(x).sum())


# (name, f(x) over cad tensors, the same over numpy, points): points include the
# poles of rgamma, 0 for j1/i1/i1e, the tails of log_ndtr, ndtri, erfcinv
DERIV = [
    ("gamma", cs.gamma, sp.gamma, [-2.5, -0.3, 0.4, 1.0, 3.3, 10.2]),
    ("rgamma", cs.rgamma, sp.rgamma, [-3.0, -2.0, -1.0, 0.0, -2.5, -0.3, 0.4, 3.3]),
    ("gammasgn", cs.gammasgn, sp.gammasgn, [-2.5, -0.3, 0.4, 3.3]),
    ("erfcinv", cs.erfcinv, sp.erfcinv, [1e-3, 0.05, 0.4, 1.0, 1.6, 1.999]),
    ("logit", cs.logit, sp.logit, [0.01, 0.3, 0.5, 0.64, 0.9]),
    ("ndtr", cs.ndtr, sp.ndtr, [-8.0, -1.0, 0.0, 2.5, 7.0]),
    ("log_ndtr", cs.log_ndtr, sp.log_ndtr, [-40.0, -21.0, -19.0, -3.0, 0.0, 4.0]),
    ("ndtri", cs.ndtri, sp.ndtri, [1e-4, 0.1, 0.3, 0.5, 0.8, 0.9999]),
    ("j0", cs.j0, sp.j0, [-7.0, 0.0, 0.5, 2.4, 15.0]),
    ("j1", cs.j1, sp.j1, [-7.0, 0.0, 1e-3, 0.5, 3.8, 15.0]),
    ("y0", cs.y0, sp.y0, [0.1, 0.9, 2.0, 15.0]),
    ("y1", cs.y1, sp.y1, [0.1, 0.9, 2.0, 15.0]),
    ("i0", cs.i0, sp.i0, [-9.0, 0.0, 0.5, 7.9, 8.1, 30.0]),
    ("i1", cs.i1, sp.i1, [-9.0, 0.0, 1e-3, 0.5, 7.9, 8.1, 30.0]),
    ("i0e", cs.i0e, sp.i0e, [-9.0, -0.5, 0.5, 7.9, 8.1, 30.0]),
    ("i1e", cs.i1e, sp.i1e, [-9.0, -0.5, 0.5, 7.9, 8.1, 30.0]),
    ("jn(3)", lambda x: cs.jn(3, x), lambda x: sp.jn(3, x), [-4.0, 0.5, 2.0, 9.0]),
    ("jn(-2)", lambda x: cs.jn(-2, x), lambda x: sp.jn(-2, x), [-4.0, 0.0, 2.0, 9.0]),
    ("yn(2)", lambda x: cs.yn(2, x), lambda x: sp.yn(2, x), [0.7, 2.0, 9.0]),
    ("yn(0)", lambda x: cs.yn(0, x), lambda x: sp.yn(0, x), [0.7, 2.0, 9.0]),
    ("xlog1py(x, .)", lambda x: cs.xlog1py(x, 0.3 + x * x), lambda x: sp.xlog1py(x, 0.3 + x * x),
     [-1.0, 0.0, 0.2, 1.5]),
    ("xlog1py(., y)", lambda x: cs.xlog1py(1.3 - x, x), lambda x: sp.xlog1py(1.3 - x, x),
     [-0.5, 0.2, 1.5]),
]


# the distance from x to the nearest singularity (the domain's ends): steps scale with it
DIST = {"erfcinv": lambda x: min(x, 2 - x), "ndtri": lambda x: min(x, 1 - x),
        "logit": lambda x: min(x, 1 - x), "y0": abs, "y1": abs, "yn(2)": abs, "yn(0)": abs}


def _scale(name, x):
    return min(max(1.0, abs(x)), DIST.get(name, lambda x: np.inf)(x))


def _fd(F, x, order, s):
    """the order-th derivative of the scalar numpy function F at x: central
    differences, steps relative to the scale s"""
    if order == 1:
        return float(fd_grad(lambda v: float(F(v)), np.array(x), eps=1e-6 * s))
    h = 1e-4 * s
    return (F(x + h) - 2 * F(x) + F(x - h)) / (h * h)


@pytest.mark.parametrize("name,f,ref,xs", DERIV, ids=[d[0] for d in DERIV])
def test_first_and_second_derivatives_against_differences(name, f, ref, xs):
    d1 = _grad_fn(f)
    d2 = _grad_fn(d1)
    with np.errstate(all="ignore"):
        for x in xs:
            # high precision differences of the float64 reference (mpmath-free: the
            # reference is smooth; the step is scaled)
            s = _scale(name, x)
            g1, g2 = float(d1(cad.tensor(x))), float(d2(cad.tensor(x)))
            w1 = _fd(ref, x, 1, s)
            assert np.isclose(g1, w1, rtol=1e-6, atol=1e-8 * max(1.0, abs(w1))), (x, g1, w1)
            # the second derivative: central differences of our (checked) first
            h = 1e-6 * s
            w2 = (float(d1(cad.tensor(x + h))) - float(d1(cad.tensor(x - h)))) / (2 * h)
            assert np.isclose(g2, w2, rtol=1e-5, atol=1e-7 * max(1.0, abs(w2))), (x, g2, w2)
            if name not in ("log_ndtr",) or x > -20:   # (the 2nd difference of scipy's reference
                w2s = _fd(ref, x, 2, s)              #  loses its digits far in the tail)
                assert np.isclose(g2, w2s, rtol=2e-3, atol=1e-5 * max(1.0, abs(w2s))), (x, g2, w2s)


def test_exact_derivatives_at_special_points():
    t = cad.tensor
    # 1/gamma at -n: (-1)^n n!
    for n in range(5):
        assert float(_grad_fn(cs.rgamma)(t(-float(n)))) == pytest.approx((-1) ** n * sp.factorial(n), rel=1e-14)
    assert float(_grad_fn(cs.j1)(t(0.0))) == 0.5 and float(_grad_fn(cs.i1)(t(0.0))) == 0.5
    assert float(_grad_fn(cs.i1e)(t(0.0))) == 0.5 and float(_grad_fn(cs.i0e)(t(0.0))) == 0.0
    assert float(_grad_fn(_grad_fn(cs.j1))(t(0.0))) == 0.0
    # the order takes no gradient
    n = t(2.0, requires_grad=True)
    x = t(1.3, requires_grad=True)
    gn, gx = cad.autograd.grad(cs.jn(n, x), [n, x])
    assert float(gn) == 0.0 and float(gx) == pytest.approx(0.5 * (sp.jn(1, 1.3) - sp.jn(3, 1.3)), rel=1e-14)
    # log_ndtr's derivative far in the tail, where phi / Phi ~ -x
    assert float(_grad_fn(cs.log_ndtr)(t(-40.0))) == pytest.approx(40.02498, rel=1e-6)
    assert float(_grad_fn(cs.ndtri)(t(1e-300))) == pytest.approx(
        np.sqrt(2 * np.pi) * np.exp(0.5 * sp.ndtri(1e-300) ** 2), rel=1e-12)


@pytest.mark.parametrize("name", ["gamma", "log_ndtr", "i1e", "ndtri", "jn"])
def test_forward_over_reverse_matches_the_second_derivative(name):
    """cad.jvp of cad.grad: the Hessian-vector product of a sum of the op"""
    f = {"gamma": cs.gamma, "log_ndtr": cs.log_ndtr, "i1e": cs.i1e, "ndtri": cs.ndtri,
         "jn": lambda x: cs.jn(2, x)}[name]
    x = np.array([0.3, 0.6, 0.7]) if name == "ndtri" else np.array([-2.5, 0.4, 1.7]) * (
        1 if name not in ("gamma",) else -1)
    v = np.array([1.0, -0.5, 2.0])
    g = cad.grad(lambda z: f(z).sum())
    _, hv = cad.jvp(g, (cad.tensor(x),), (cad.tensor(v),))
    d2 = cad.grad(lambda z: cad.grad(lambda w: f(w).sum())(z).sum())
    want = _np(d2(cad.tensor(x))) * v   # the Hessian is diagonal
    np.testing.assert_allclose(_np(hv), want, rtol=1e-12)


def test_vmap_matches_a_loop():
    rng = np.random.default_rng(5)
    X = cad.tensor(rng.uniform(0.1, 0.9, (4, 3)))

    def f(x):
        return cs.ndtri(x) + cs.i1e(x) * cs.gamma(x) + cs.jn(1, x) + cs.xlog1py(x, x) + cs.logit(x)
    got = cad.vmap(f)(X)
    np.testing.assert_allclose(_np(got), np.stack([_np(f(X[i])) for i in range(4)]), rtol=1e-14)
    gx = cad.vmap(cad.grad(lambda x: cs.i0(x).sum()))(X)
    np.testing.assert_allclose(_np(gx), sp.i1(_np(X)), rtol=1e-14)


def test_on_the_cuda_device_match_the_cpu():
    if not cad.cuda.is_available():
        cad.cuda._use_fake()
    xs = np.random.default_rng(6).uniform(0.2, 0.9, 5)
    fns = [getattr(cs, n) for n in NAMES if n not in ("jn", "yn", "xlog1py")]
    fns += [lambda t: cs.jn(2, t), lambda t: cs.yn(1, t), lambda t: cs.xlog1py(t, t - 0.5)]
    for dt in (cad.float64, cad.float32):
        for f in fns:
            xc = cad.tensor(xs, dtype=dt, requires_grad=True)
            xd = cad.tensor(xs, dtype=dt).to("cuda").requires_grad_()
            yc, yd = f(xc), f(xd)
            assert yd.device.type == "cuda"
            tol = 1e-12 if dt == cad.float64 else 1e-5
            np.testing.assert_allclose(_np(yd.to("cpu")), _np(yc), rtol=tol, atol=tol)
            gc = cad.autograd.grad(yc.sum(), [xc])[0]
            gd = cad.autograd.grad(yd.sum(), [xd])[0]
            np.testing.assert_allclose(_np(gd.to("cpu")), _np(gc), rtol=tol, atol=tol)


def test_scipy_ufuncs_dispatch_to_the_ops():
    """scipy.special's ufuncs on a cad tensor call the table op (as sp.gammaln does)"""
    x = cad.tensor([0.3, 0.6], requires_grad=True)
    for fn in (sp.gamma, sp.rgamma, sp.erfcinv, sp.logit, sp.ndtr, sp.log_ndtr, sp.ndtri, sp.j0, sp.y1,
               sp.i0e, sp.i1):
        y = fn(x)
        assert isinstance(y, cad.Tensor) and y.requires_grad, fn
        np.testing.assert_array_equal(_np(y), _np(getattr(cs, fn.__name__)(x)))
    for y in (sp.xlog1py(x, x + 1.0), sp.yn(1, x)):
        assert isinstance(y, cad.Tensor) and y.requires_grad
