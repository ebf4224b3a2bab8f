"""cad.scipy.special (NOTE [ Special functions ]): values against scipy on grids that
include the hard regions, float32, broadcasting, first and second derivatives
against float64 central differences of scipy itself, compositions of transforms,
and the errors for the derivatives that do not exist."""
import numpy as np
import pytest
import scipy.special as ss
from _numeric import close, fd_grad, fd_jac

import cad
import cad.scipy.special as sc

T = cad.tensor


def d1(F, x, eps=1e-6):
    """elementwise derivative of an elementwise numpy F (central differences; eps may
    be an array, a step per element)"""
    x = np.asarray(x, dtype=np.float64)
    return (F(x + eps) - F(x - eps)) / (2 * eps)


def g1(f, x):
    """cad's elementwise derivative of an elementwise f"""
    return np.asarray(cad.grad(lambda v: cad.sum(f(v)))(T(x)))


def g2(f, x):
    """cad's elementwise second derivative (the grad of the grad)"""
    return np.asarray(cad.grad(lambda v: cad.sum(cad.grad(lambda w: cad.sum(f(w)))(v)))(T(x)))


# ---------------------------------------------------------------- values

A_GRID = np.array([0.05, 0.5, 1.0, 2.5, 10.0, 30.0, 150.0, 1000.0, 1e4])
X_GRID = np.array([0.0, 1e-3, 0.3, 1.0, 2.5, 9.0, 40.0, 120.0, 1100.0, 1.2e4])


@pytest.mark.parametrize("name,ref,args", [
    ("gammaln", ss.gammaln, (np.array([-2.5, -0.5, 0.1, 1.0, 3.5, 50.0, 1e8]),)),
    ("digamma", ss.digamma, (np.array([-2.5, -0.5, 0.1, 1.0, 3.5, 50.0, 1e8]),)),
    ("psi", ss.psi, (np.array([0.1, 1.0, 3.5]),)),
    ("erf", ss.erf, (np.array([-5.0, -0.3, 0.0, 0.7, 6.0]),)),
    ("erfc", ss.erfc, (np.array([-5.0, -0.3, 0.0, 0.7, 6.0, 26.0]),)),
    ("erfinv", ss.erfinv, (np.array([-0.999, -0.3, 0.0, 0.7, 0.999999]),)),
    ("expit", ss.expit, (np.array([-800.0, -3.0, 0.0, 3.0, 40.0]),)),
    ("xlogy", ss.xlogy, (np.array([0.0, 0.0, 2.0, 3.0]), np.array([0.0, 2.0, 0.5, 1e-300]))),
    ("beta", ss.beta, (np.array([0.5, 2.0, 30.0, -1.5]), np.array([0.7, 3.0, 40.0, 2.25]))),
    ("betaln", ss.betaln, (np.array([0.5, 2.0, 1e10, 3e5]), np.array([0.7, 3.0, 1e10, 0.5]))),
    ("gammainc", ss.gammainc, np.meshgrid(A_GRID, X_GRID)),
    ("gammaincc", ss.gammaincc, np.meshgrid(A_GRID, X_GRID)),
    ("betainc", ss.betainc, (np.array([0.5, 2.0, 50.0, 1.0]), np.array([0.5, 3.0, 40.0, 1e3]),
                             np.array([0.0, 0.3, 0.55, 1e-4]))),
    ("iv", ss.iv, (np.array([0.0, 1.0, 2.5, 0.5, 3.0]), np.array([0.1, 1.0, 20.0, 700.0, -2.0]))),
    ("ive", ss.ive, (np.array([0.0, 1.0, 2.5, 0.5, 3.0]), np.array([0.1, 1.0, 20.0, 1e4, -2.0]))),
    ("kv", ss.kv, (np.array([0.0, 1.0, 2.5, 0.5, 3.0]), np.array([0.1, 1.0, 20.0, 500.0, 1e-3]))),
])
def test_values(name, ref, args):
    got = getattr(sc, name)(*[T(a) for a in args])
    with np.errstate(all="ignore"):
        want = ref(*args)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-13, atol=0, equal_nan=True)


def test_reexports_and_table_names():
    x = np.array([0.2, 0.6])
    close(sc.polygamma(2, T(x)), ss.polygamma(2, x), rtol=1e-12)
    close(sc.multigammaln(T(3.5), 4), ss.multigammaln(3.5, 4), rtol=1e-13)
    with pytest.raises(ValueError):
        sc.multigammaln(1.0, 4)
    for n in ["gamma", "rgamma", "gammasgn", "erfcinv", "logit", "ndtr", "log_ndtr", "ndtri",
              "j0", "j1", "y0", "y1", "i0", "i1", "i0e", "i1e"]:
        close(getattr(sc, n)(T(x)), getattr(ss, n)(x), rtol=1e-13)
    close(sc.xlog1py(T(x), T(x)), ss.xlog1py(x, x), rtol=1e-13)
    assert set(sc.__all__) <= set(dir(sc))


def test_float32_and_broadcasting():
    a = T(np.array([[0.5], [2.0], [7.0]]), dtype=cad.float32)
    x = np.array([0.1, 1.0, 3.0, 12.0])
    xt = T(x, dtype=cad.float32)
    for f, ref in [(sc.gammainc, ss.gammainc), (sc.gammaincc, ss.gammaincc), (sc.iv, ss.iv),
                   (sc.kv, ss.kv), (sc.ive, ss.ive), (sc.beta, ss.beta), (sc.betaln, ss.betaln)]:
        r = f(a, xt)
        assert r.shape == (3, 4)
        assert r.dtype == cad.float32, f
        np.testing.assert_allclose(np.asarray(r), ref(np.asarray(a, dtype=np.float64), x.astype(np.float32)).astype(np.float32),
                                   rtol=2e-6)
    assert sc.gammainc(a, 2.0).dtype == cad.float32     # a Python scalar does not upcast
    assert sc.gammainc(a, x).dtype == cad.float64       # a float64 array does (numpy's rule)
    r = sc.betainc(T(2.0), T(np.array([1.0, 3.0])), T(np.array([[0.2], [0.9]])))
    assert r.shape == (2, 2)
    close(r, ss.betainc(2.0, np.array([1.0, 3.0]), np.array([[0.2], [0.9]])), rtol=1e-13)
    # a broadcast argument's gradient sums back to its shape
    A2 = np.array([[1.0, 2.0], [3.0, 4.0]])
    g = cad.grad(lambda x: cad.sum(sc.gammainc(T(A2), x)))(T([0.5, 2.0]))
    close(g, fd_grad(lambda v: np.sum(ss.gammainc(A2, v)), np.array([0.5, 2.0])), rtol=1e-7)


# ---------------------------------------------------------------- gammainc / gammaincc

AX = [(0.5, 0.1), (2.0, 1.0), (10.0, 12.0), (3.0, 30.0), (100.0, 90.0), (100.0, 150.0),
      (1000.0, 1200.0), (0.3, 20.0), (50.0, 1.0), (7.0, 9.5)]


@pytest.mark.parametrize("which", ["P", "Q"])
def test_gammainc_derivatives(which):
    f = sc.gammainc if which == "P" else sc.gammaincc
    a = np.array([p[0] for p in AX])
    x = np.array([p[1] for p in AX])
    sgn = 1.0 if which == "P" else -1.0
    usep = ss.gammainc(a, x) < 0.5      # difference the smaller of P and Q

    def ref(aa, xx):    # P or Q up to a constant, from the accurate side
        return np.where(usep, sgn * ss.gammainc(aa, xx), -sgn * ss.gammaincc(aa, xx))
    # in x: closed form, first and second order
    close(g1(lambda v: f(a, v), x), d1(lambda v: ref(a, v), x, 1e-6 * x), rtol=1e-6, atol=1e-300)
    h = 1e-4 * x
    d2 = (ref(a, x + h) - 2 * ref(a, x) + ref(a, x - h)) / h ** 2
    close(g2(lambda v: f(a, v), x), d2, rtol=1e-4, atol=1e-7)   # (a, x) = (2, 1): exactly 0
    # in a: relative accuracy also in the tails (FD step scaled with a)
    ga = g1(lambda v: f(v, x), a)
    close(ga, d1(lambda v: ref(v, x), a, 1e-5 * a), rtol=1e-5, atol=1e-300)
    h = 1e-3 * a
    d2a = (ref(a + h, x) - 2 * ref(a, x) + ref(a - h, x)) / h ** 2
    close(g2(lambda v: f(v, x), a), d2a, rtol=5e-3, atol=1e-300)
    # (tighter: against differences of the first derivative, itself checked above)
    d2a = d1(lambda v: g1(lambda w: f(w, x), v), a, 1e-5 * a)
    close(g2(lambda v: f(v, x), a), d2a, rtol=1e-6, atol=1e-300)
    # mixed: d/dx of d/da
    mixed = cad.grad(lambda xx: cad.sum(cad.grad(lambda aa: cad.sum(f(aa, xx)))(T(a))))(T(x))
    fdm = d1(lambda v: ref(a + 1e-5 * a, v) - ref(a - 1e-5 * a, v), x, 1e-5 * x) / (2e-5 * a)
    close(mixed, fdm, rtol=1e-4, atol=1e-300)


def test_gammainc_tail_accuracy():
    # where Q is tiny its a-derivative keeps its relative accuracy (references: mpmath,
    # 30 digits: diff of the regularized gammainc)
    cases = [(3.0, 30.0, 1.131008131742054e-10), (1e4, 1.1e4, 1.6308824174316845e-23),
             (0.3, 20.0, 5.358973135044527e-10)]
    for a, x, want in cases:
        got = float(cad.grad(lambda v, x=x: sc.gammaincc(v, x))(T(a)))
        np.testing.assert_allclose(got, want, rtol=1e-11)
    # third order in a (a primitive per order)
    a, x = 2.5, 3.0
    g3 = float(cad.grad(cad.grad(cad.grad(lambda v: sc.gammainc(v, x))))(T(a)))
    want3 = 0.08529270238289406    # mpmath diff(gammainc(a, 0, x, regularized), a, 3)
    sec = cad.grad(cad.grad(lambda w: sc.gammainc(w, x)))
    np.testing.assert_allclose(g3, (float(sec(T(a + 1e-5))) - float(sec(T(a - 1e-5)))) / 2e-5, rtol=1e-6)
    np.testing.assert_allclose(g3, want3, rtol=1e-9)


def test_gammainc_edges():
    # at x == 0 the value is 0 and the x-derivative is the density's limit
    close(sc.gammainc(T([0.5, 1.0, 2.0]), 0.0), [0.0, 0.0, 0.0])
    g = cad.grad(lambda x: cad.sum(sc.gammainc(T([1.0, 2.0]), x)))(T([0.0, 0.0]))
    close(g, [1.0, 0.0])
    g = cad.grad(lambda a: cad.sum(sc.gammainc(a, T([0.0, 3.0]))))(T([2.0, 2.0]))
    assert np.all(np.isfinite(g.numpy())) and g.numpy()[0] == 0.0


# ---------------------------------------------------------------- betainc, beta, betaln

def test_betainc_derivatives():
    a, b = np.array([0.5, 2.0, 5.0, 60.0]), np.array([0.7, 3.0, 2.0, 40.0])
    x = np.array([0.2, 0.5, 0.9, 0.58])
    close(g1(lambda v: sc.betainc(a, b, v), x), d1(lambda v: ss.betainc(a, b, v), x), rtol=1e-7)
    h = 1e-4
    d2 = (ss.betainc(a, b, x + h) - 2 * ss.betainc(a, b, x) + ss.betainc(a, b, x - h)) / h ** 2
    close(g2(lambda v: sc.betainc(a, b, v), x), d2, rtol=1e-5)
    # in a and b: first order against scipy, second and mixed against differences of
    # the first (both branches of the series: x below and above the mean)
    close(g1(lambda v: sc.betainc(v, b, x), a), d1(lambda v: ss.betainc(v, b, x), a, 1e-6 * a), rtol=1e-6)
    close(g1(lambda v: sc.betainc(a, v, x), b), d1(lambda v: ss.betainc(a, v, x), b, 1e-6 * b), rtol=1e-6)
    close(g2(lambda v: sc.betainc(v, b, x), a),
          d1(lambda v: g1(lambda w: sc.betainc(w, b, x), v), a, 1e-5 * a), rtol=1e-6)
    mixed = cad.grad(lambda bb: cad.sum(cad.grad(lambda aa: cad.sum(sc.betainc(aa, bb, T(x))))(T(a))))(T(b))
    close(mixed, d1(lambda v: g1(lambda w: sc.betainc(w, v, x), a), b, 1e-5 * b), rtol=1e-6)
    mixed = cad.grad(lambda xx: cad.sum(cad.grad(lambda aa: cad.sum(sc.betainc(aa, T(b), xx)))(T(a))))(T(x))
    close(mixed, d1(lambda v: g1(lambda w: sc.betainc(w, b, v), a), x, 1e-6), rtol=1e-6)
    # references: mpmath, 30 digits (diff of the regularized betainc)
    H = cad.hessian(lambda p: sc.betainc(p[0], p[1], 0.3))(T([2.0, 3.0]))
    close(H, [[0.1318018671727777, -0.030286638966075346], [-0.030286638966075346, -0.009503625625889786]],
          rtol=1e-13)
    # outside (0, 1) the derivatives are 0, not nan
    close(g1(lambda v: sc.betainc(2.0, 3.0, v), np.array([0.0, 1.0])), [0.0, 0.0])
    close(g1(lambda v: sc.betainc(v, 3.0, np.array([0.0, 1.0])), np.array([2.0, 2.0])), [0.0, 0.0])


def test_beta_betaln_derivatives():
    a, b = np.array([0.5, 2.0, 30.0]), np.array([0.7, 3.0, 4.0])
    for f, ref in [(sc.beta, ss.beta), (sc.betaln, ss.betaln)]:
        close(g1(lambda v, f=f: f(v, b), a), d1(lambda v, ref=ref: ref(v, b), a), rtol=1e-6)
        close(g1(lambda v, f=f: f(a, v), b), d1(lambda v, ref=ref: ref(a, v), b), rtol=1e-6)
        h = 1e-4
        close(g2(lambda v, f=f: f(v, b), a), (ref(a + h, b) - 2 * ref(a, b) + ref(a - h, b)) / h ** 2, rtol=1e-4)
    H = cad.hessian(lambda p: sc.multigammaln(p[0], 3))(T([4.0, 0.0]))
    close(H[0, 0], sum(ss.polygamma(1, 4.0 - 0.5 * j) for j in range(3)), rtol=1e-12)


# ---------------------------------------------------------------- Bessel

@pytest.mark.parametrize("f,ref,v,x", [
    (sc.iv, ss.iv, np.array([0.0, 1.0, 2.5, 0.5]), np.array([0.3, 2.0, 15.0, 300.0])),
    (sc.ive, ss.ive, np.array([0.0, 1.0, 2.5, 0.5]), np.array([0.3, -2.0, 15.0, 5e3])),
    (sc.kv, ss.kv, np.array([0.0, 1.0, 2.5, 0.5]), np.array([0.3, 2.0, 15.0, 300.0])),
])
def test_bessel_derivatives(f, ref, v, x):
    close(g1(lambda u: f(v, u), x), d1(lambda u: ref(v, u), x, 1e-6 * np.abs(x)), rtol=1e-6, atol=1e-300)
    h = 1e-4 * np.abs(x)
    d2 = (ref(v, x + h) - 2 * ref(v, x) + ref(v, x - h)) / h ** 2
    close(g2(lambda u: f(v, u), x), d2, rtol=1e-4, atol=1e-300)


def test_bessel_order_error():
    for f in (sc.iv, sc.ive, sc.kv):
        with pytest.raises(NotImplementedError, match=f"{f.__name__}.*'v'"):
            cad.grad(lambda v, f=f: f(v, 2.0))(T(1.0))
        with pytest.raises(NotImplementedError, match=f"{f.__name__}.*'v'"):
            cad.jvp(lambda v, f=f: f(v, 2.0), (T(1.0),), (T(1.0),))
        with pytest.raises(NotImplementedError, match=f"{f.__name__}.*'v'"):
            cad.vmap(cad.grad(lambda v, f=f: f(v, 2.0)))(T([1.0, 2.0]))
    # an order that is a plain tensor is fine
    close(sc.iv(T([0.0, 1.0]), 2.0), ss.iv([0.0, 1.0], 2.0), rtol=1e-14)


# ---------------------------------------------------------------- logsumexp, softmax

def test_logsumexp_weights_and_sign():
    a = np.array([[1.0, 2.0, 3.0], [-1.0, 0.5, 800.0]])
    b = np.array([[1.0, -2.0, 1.0], [2.0, 0.0, -1.0]])
    for kw in [{}, {"axis": 1}, {"axis": 0, "keepdims": True}, {"axis": (0, 1)}]:
        r, s = sc.logsumexp(T(a), b=T(b), return_sign=True, **kw)
        wr, ws = ss.logsumexp(a, b=b, return_sign=True, **kw)
        close(r, wr, rtol=1e-14)
        close(s, ws)
        with np.errstate(invalid="ignore"):
            close(sc.logsumexp(T(a), b=T(b), **kw), ss.logsumexp(a, b=b, **kw), rtol=1e-14)
        close(sc.logsumexp(T(a), **kw), ss.logsumexp(a, **kw), rtol=1e-14)
    # b == 0 masks an inf entry; an all-zero b gives -inf
    close(sc.logsumexp(T([1.0, np.inf]), b=T([1.0, 0.0])), 1.0)
    assert float(sc.logsumexp(T([1.0, 2.0]), b=T([0.0, 0.0]))) == -np.inf
    # gradients in a and b
    a1, b1 = np.array([0.3, 1.2, -0.4]), np.array([1.0, -0.5, 2.0])
    close(cad.grad(lambda v: sc.logsumexp(v, b=T(b1)))(T(a1)),
          fd_grad(lambda v: ss.logsumexp(v, b=b1), a1), rtol=1e-7)
    close(cad.grad(lambda v: sc.logsumexp(T(a1), b=v))(T(b1)),
          fd_grad(lambda v: ss.logsumexp(a1, b=v), b1), rtol=1e-7)
    H = cad.hessian(lambda v: sc.logsumexp(v, b=T(b1)))(T(a1))
    fdH = fd_jac(lambda v: np.asarray(cad.grad(lambda w: sc.logsumexp(w, b=T(b1)))(T(v))), a1)
    close(H, fdH, rtol=1e-5, atol=1e-8)


def test_softmax_default_axis_is_all():
    x = np.array([[1.0, 2.0], [3.0, 0.5]])
    close(sc.softmax(T(x)), ss.softmax(x), rtol=1e-14)
    close(sc.log_softmax(T(x)), ss.log_softmax(x), rtol=1e-14)
    close(sc.softmax(T(x), axis=0), ss.softmax(x, axis=0), rtol=1e-14)
    close(sc.log_softmax(T(x), axis=1), ss.log_softmax(x, axis=1), rtol=1e-14)


# ---------------------------------------------------------------- compositions

def test_compositions():
    x = 3.0
    a = np.array([0.7, 2.0, 9.0])
    # cad.jvp of cad.grad (forward over reverse) in a
    ga = cad.grad(lambda v: cad.sum(sc.gammainc(v, x)))
    _, tan = cad.jvp(ga, (T(a),), (T(np.ones(3)),))
    h = 1e-3 * a
    close(tan, (ss.gammainc(a + h, x) - 2 * ss.gammainc(a, x) + ss.gammainc(a - h, x)) / h ** 2, rtol=2e-4)
    # cad.hessian of a function mixing a and x
    H = cad.hessian(lambda p: sc.gammaincc(p[0], p[1]))(T([2.0, 1.5]))
    assert H.shape == (2, 2)
    close(H[0, 1], H[1, 0], rtol=1e-12)
    # cad.vmap of cad.grad: one batched call, the same values as the loop
    xs = np.array([0.5, 2.0, 40.0])
    vg = cad.vmap(cad.grad(lambda u: sc.kv(1.5, u)))(T(xs))
    close(vg, [float(cad.grad(lambda u: sc.kv(1.5, u))(T(v))) for v in xs], rtol=1e-14)
    vg = cad.vmap(cad.grad(lambda v: sc.gammainc(v, 2.0)))(T(a))
    close(vg, d1(lambda v: ss.gammainc(v, 2.0), a, 1e-6 * a), rtol=1e-6)
    # Tensor.backward
    v = T(np.array([1.0, 4.0]), requires_grad=True)
    cad.sum(sc.ive(0.5, v) * sc.betaln(v, 2.0)).backward()
    close(v.grad, d1(lambda u: ss.ive(0.5, u) * ss.betaln(u, 2.0), np.array([1.0, 4.0])), rtol=1e-7)
