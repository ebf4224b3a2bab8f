"""cad.scipy.stats (NOTE [ Distributions ]): every method against scipy.stats on
grids that include the tails and points outside the support, broadcasting,
float32, derivatives in the data and the parameters against float64 central
differences of scipy, no nan gradient where scipy's value is finite, compositions,
and the errors for the derivatives that do not exist."""
import numpy as np
import pytest
import scipy.stats as st
from _numeric import close, fd_grad

import cad
import cad.scipy.stats as cs

T = cad.tensor
METHODS = ["logpdf", "pdf", "cdf", "logcdf", "sf", "logsf"]
X = np.array([-40.0, -3.0, -0.5, 0.0, 0.3, 1.0, 2.5, 40.0])
U = np.array([-1.0, 0.0, 1e-5, 0.2, 0.5, 0.97, 1.0, 2.0])
K = np.array([-1.0, 0.0, 1.0, 2.5, 3.0, 10.0, 50.0])

# (name, positional shape parameters and loc/scale, the data grid)
CASES = [
    ("norm", (), X), ("norm", (1.0, 2.0), X),
    ("expon", (), X), ("expon", (0.5, 2.0), X),
    ("laplace", (), X), ("laplace", (0.5, 2.0), X),
    ("gamma", (2.5,), X), ("gamma", (0.5,), X), ("gamma", (1.0, 0.0, 2.0), X), ("gamma", (40.0,), X + 40),
    ("chi2", (3.0,), X), ("chi2", (30.0, 1.0), X + 30),
    ("beta", (2.0, 3.0), U), ("beta", (0.5, 1.0), U), ("beta", (1.0, 4.0), U),
    ("t", (3.0,), X), ("t", (30.0, 1.0, 2.0), X),
]


def _scipy(name, meth, x, args):
    with np.errstate(all="ignore"):
        return getattr(getattr(st, name), meth)(x, *args)


@pytest.mark.parametrize("name,args,xs", CASES)
def test_values(name, args, xs):
    for m in METHODS:
        got = getattr(getattr(cs, name), m)(T(xs), *args)
        want = _scipy(name, m, xs, args)
        # scipy's logcdf near 1 can be log(1 - tiny) rounded; cad keeps the digits
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-10, atol=1e-15 if "log" in m else 0,
                                   err_msg=f"{name}.{m}{args}", equal_nan=True)


def test_poisson_values():
    for args in [(3.5,), (3.5, 1), (0.01,), (200.0,)]:
        for m in ["pmf", "logpmf", "cdf", "logcdf", "sf", "logsf"]:
            got = getattr(cs.poisson, m)(T(K), *args)
            want = _scipy("poisson", m, K, args)
            np.testing.assert_allclose(np.asarray(got), want, rtol=1e-10, atol=1e-15 if "log" in m else 0,
                                       err_msg=f"poisson.{m}{args}")


def test_tails():
    np.testing.assert_allclose(float(cs.norm.logcdf(-40.0)), st.norm.logcdf(-40.0), rtol=1e-14)
    np.testing.assert_allclose(float(cs.norm.logsf(40.0)), st.norm.logsf(40.0), rtol=1e-14)
    np.testing.assert_allclose(float(cs.expon.logcdf(1e-12)), np.log(1e-12), rtol=1e-10)
    np.testing.assert_allclose(float(cs.expon.logcdf(40.0)), -np.exp(-40.0), rtol=1e-12)
    np.testing.assert_allclose(float(cs.laplace.logsf(-40.0)), -0.5 * np.exp(-40.0), rtol=1e-12)
    np.testing.assert_allclose(float(cs.gamma.logsf(200.0, 3.0)), st.gamma.logsf(200.0, 3.0), rtol=1e-12)
    np.testing.assert_allclose(float(cs.t.logcdf(-1e4, 3.0)), st.t.logcdf(-1e4, 3.0), rtol=1e-12)
    # the derivative of norm.logcdf deep in the tail: -x asymptotically (no overflow, no nan)
    g = float(cad.grad(lambda x: cs.norm.logcdf(x))(T(-40.0)))
    np.testing.assert_allclose(g, 40.0249, rtol=1e-5)


def test_entropy():
    for name, args in [("norm", ()), ("norm", (1.0, 2.0)), ("expon", (0, 3.0)), ("laplace", (0, 3.0)),
                       ("gamma", (2.5,)), ("chi2", (3.0,)), ("beta", (2.0, 3.0)), ("t", (3.0,)),
                       ("poisson", (3.5,)), ("poisson", (300.0,))]:
        close(getattr(cs, name).entropy(*args), getattr(st, name).entropy(*args), rtol=1e-9,
              atol=0)
    al = np.array([2.0, 3.0, 0.5])
    close(cs.dirichlet.entropy(al), st.dirichlet.entropy(al), rtol=1e-12)
    C = np.array([[2.0, 0.3], [0.3, 1.0]])
    close(cs.multivariate_normal.entropy(None, C), st.multivariate_normal.entropy(None, C), rtol=1e-12)


def test_broadcasting_and_float32():
    x = np.array([[0.5], [1.5], [3.0]])
    a = np.array([0.7, 2.0, 5.0, 9.0])
    r = cs.gamma.logpdf(T(x), T(a), scale=T(np.array([1.0, 2.0, 1.0, 0.5])))
    assert r.shape == (3, 4)
    close(r, st.gamma.logpdf(x, a, scale=[1.0, 2.0, 1.0, 0.5]), rtol=1e-12)
    r = cs.norm.cdf(T(x, dtype=cad.float32), loc=1.0)
    assert r.dtype == cad.float32
    np.testing.assert_allclose(np.asarray(r), st.norm.cdf(x, loc=1.0), rtol=1e-6)
    # invalid parameters give nan, as scipy
    assert np.isnan(float(cs.norm.logpdf(0.0, scale=-1.0)))
    assert np.isnan(float(cs.gamma.cdf(1.0, -2.0)))


# ---------------------------------------------------------------- derivatives

# (name, method, x, parameters (positional, shapes then loc, scale)) at points
# inside the support; the derivative is checked in x and in every parameter
GRAD_CASES = [
    ("norm", m, [-3.0, 0.4, 2.0], [0.5, 1.5]) for m in METHODS
] + [
    ("expon", m, [0.2, 3.0], [0.1, 1.5]) for m in METHODS
] + [
    ("laplace", m, [-2.0, 0.3, 2.0], [0.1, 1.5]) for m in METHODS
] + [
    ("gamma", m, [0.4, 2.0, 9.0], [2.5, 0.1, 1.3]) for m in METHODS
] + [
    ("chi2", m, [0.4, 2.0, 9.0], [3.0, 0.1, 1.3]) for m in METHODS
] + [
    ("beta", m, [0.1, 0.5, 0.9], [2.0, 3.0, 0.0, 1.0]) for m in METHODS
] + [
    ("t", m, [-3.0, 0.5, 4.0], [3.0, 0.2, 1.5]) for m in METHODS
]


@pytest.mark.parametrize("name,meth,xs,params", GRAD_CASES)
def test_derivatives(name, meth, xs, params):
    xs = np.array(xs)
    p = np.array(params, dtype=np.float64)

    def F(v):      # scipy, float64: the sum over the grid, v = [x..., params...]
        return np.sum(getattr(getattr(st, name), meth)(v[:len(xs)], *v[len(xs):]))

    def f(v):
        return cad.sum(getattr(getattr(cs, name), meth)(v[:len(xs)], *[v[len(xs) + i] for i in range(len(p))]))
    v0 = np.concatenate([xs, p])
    g = np.asarray(cad.grad(f)(T(v0)))
    np.testing.assert_allclose(g, fd_grad(F, v0), rtol=1e-6, atol=1e-9, err_msg=f"{name}.{meth}")
    # second order: the Hessian against differences of the gradient
    H = np.asarray(cad.hessian(f)(T(v0)))
    fdH = np.stack([fd_grad(lambda u, i=i: float(np.asarray(cad.grad(f)(T(u)))[i]), v0) for i in range(len(v0))])
    np.testing.assert_allclose(H, fdH, rtol=1e-5, atol=1e-7, err_msg=f"{name}.{meth} hessian")


def test_poisson_derivatives():
    k = np.array([0.0, 2.0, 7.0])
    for m in ["pmf", "logpmf", "cdf", "logcdf", "sf", "logsf"]:
        g = cad.grad(lambda mu, m=m: cad.sum(getattr(cs.poisson, m)(T(k), mu)))(T(3.5))
        fd = fd_grad(lambda mu, m=m: np.sum(getattr(st.poisson, m)(k, mu)), np.array(3.5))
        np.testing.assert_allclose(float(g), float(fd), rtol=1e-6, err_msg=m)
    g2 = cad.grad(cad.grad(lambda mu: cs.poisson.logcdf(4.0, mu)))(T(3.5))
    fd2 = fd_grad(lambda mu: float(cad.grad(lambda u: cs.poisson.logcdf(4.0, u))(T(float(mu)))), np.array(3.5))
    np.testing.assert_allclose(float(g2), float(fd2), rtol=1e-6)


def test_no_nan_gradient_outside_support():
    xs = T([-1.0, -0.5, 0.5])
    for dist, args in [(cs.expon, ()), (cs.gamma, (2.5,)), (cs.chi2, (3.0,))]:
        for m in METHODS:
            fn = getattr(dist, m)

            def masked(x, fn=fn, args=args):
                v = fn(x, *args)
                return cad.sum(cad.where(cad.isfinite(v), v, 0.0))
            g = cad.grad(masked)(xs)
            assert np.all(np.isfinite(g.numpy())), (dist, m)
            assert np.all(g.numpy()[:2] == 0.0), (dist, m)
    g = cad.grad(lambda a: cad.sum(cs.gamma.cdf(T([-1.0, 2.0]), a)))(T(2.5))
    assert np.isfinite(float(g))
    g = cad.grad(lambda x: cad.sum(cs.beta.pdf(x, 2.0, 3.0)))(T([-0.5, 0.3, 1.5]))
    assert np.all(np.isfinite(g.numpy())) and g.numpy()[0] == 0 and g.numpy()[2] == 0
    g = cad.grad(lambda mu: cad.sum(cs.poisson.pmf(T([-1.0, 2.5, 3.0]), mu)))(T(2.0))
    np.testing.assert_allclose(float(g), float(fd_grad(lambda m: st.poisson.pmf(3.0, m), np.array(2.0))), rtol=1e-7)
    g = cad.grad(lambda x: cad.sum(cs.laplace.logcdf(x)))(T([-800.0, 800.0]))
    assert np.all(np.isfinite(g.numpy()))


def test_not_differentiable_in_parameters():
    with pytest.raises(NotImplementedError, match="multivariate_normal.cdf"):
        cad.grad(lambda m: cs.multivariate_normal.cdf(T([0.0, 0.0]), m, np.eye(2)))(T([0.1, 0.2]))
    # forward values are fine
    np.testing.assert_allclose(float(cs.multivariate_normal.cdf([0.5, 0.1], [0.0, 0.2], [[2.0, 0.3], [0.3, 1.0]])),
                               st.multivariate_normal.cdf([0.5, 0.1], [0.0, 0.2], [[2.0, 0.3], [0.3, 1.0]]),
                               rtol=1e-4)


# ---------------------------------------------------------------- multivariate

def test_dirichlet():
    al = np.array([2.0, 3.0, 0.5])
    X3 = np.array([[0.2, 0.3], [0.5, 0.1], [0.3, 0.6]])
    close(cs.dirichlet.logpdf(X3, al), st.dirichlet.logpdf(X3, al), rtol=1e-12)
    close(cs.dirichlet.pdf(X3[:2], al), st.dirichlet.pdf(X3[:2], al), rtol=1e-12)
    close(cs.dirichlet.logpdf(X3[:, 0], al), st.dirichlet.logpdf(X3[:, 0], al), rtol=1e-12)
    with pytest.raises(ValueError):
        cs.dirichlet.logpdf([0.5, 0.6, 0.1], al)
    g = cad.grad(lambda a: cad.sum(cs.dirichlet.logpdf(T(X3), a)))(T(al))
    close(g, fd_grad(lambda a: np.sum(st.dirichlet.logpdf(X3, a)), al), rtol=1e-7)
    g = cad.grad(lambda a: cs.dirichlet.entropy(a))(T(al))
    close(g, fd_grad(lambda a: st.dirichlet.entropy(a), al), rtol=1e-7)


def test_multivariate_normal():
    rng = np.random.default_rng(3)
    C = np.array([[2.0, 0.3, 0.1], [0.3, 1.0, -0.2], [0.1, -0.2, 1.5]])
    mu = np.array([1.0, -1.0, 0.5])
    Y = rng.normal(size=(4, 3))
    mvn = cs.multivariate_normal
    close(mvn.logpdf(Y, mu, C), st.multivariate_normal.logpdf(Y, mu, C), rtol=1e-12)
    close(mvn.logpdf(Y[0], mu, C), st.multivariate_normal.logpdf(Y[0], mu, C), rtol=1e-12)
    close(mvn.pdf(Y, mu, np.diag(C)), st.multivariate_normal.pdf(Y, mu, np.diag(C)), rtol=1e-12)
    close(mvn.logpdf(Y, np.zeros(3), 2.0), st.multivariate_normal.logpdf(Y, np.zeros(3), 2.0), rtol=1e-12)
    close(mvn.logpdf([1.0, 2.0, 3.0]), st.multivariate_normal.logpdf([1.0, 2.0, 3.0]), rtol=1e-12)
    # derivatives in x, mean and cov (cov symmetric: symmetric directions)
    close(cad.grad(lambda m: cad.sum(mvn.logpdf(T(Y), m, T(C))))(T(mu)),
          fd_grad(lambda m: np.sum(st.multivariate_normal.logpdf(Y, m, C)), mu), rtol=1e-7)
    close(cad.grad(lambda y: cad.sum(mvn.logpdf(y, T(mu), T(C))))(T(Y)),
          fd_grad(lambda y: np.sum(st.multivariate_normal.logpdf(y, mu, C)), Y), rtol=1e-7)
    gC = np.asarray(cad.grad(lambda c: cad.sum(mvn.logpdf(T(Y), T(mu), 0.5 * (c + cad.transpose(c)))))(T(C)))
    fdC = fd_grad(lambda c: np.sum(st.multivariate_normal.logpdf(Y, mu, 0.5 * (c + c.T))), C)
    close(gC, fdC, rtol=1e-6, atol=1e-9)
    H = cad.hessian(lambda m: cad.sum(mvn.logpdf(T(Y), m, T(C))))(T(mu))
    close(H, -4 * np.linalg.inv(C), rtol=1e-10)


# ---------------------------------------------------------------- compositions

def test_compositions():
    x = np.array([0.3, 1.7, 4.0])
    # cad.vmap of cad.grad in the parameter of a cdf: one value per row, as a loop
    a = np.array([0.8, 2.0, 6.0])
    vg = cad.vmap(cad.grad(lambda aa: cad.sum(cs.gamma.cdf(T(x), aa))))(T(a))
    loop = [float(cad.grad(lambda aa: cad.sum(cs.gamma.cdf(T(x), aa)))(T(v))) for v in a]
    close(vg, loop, rtol=1e-13)
    close(vg, [float(fd_grad(lambda aa: np.sum(st.gamma.cdf(x, aa)), np.array(v))) for v in a], rtol=1e-6)
    # cad.jvp of cad.grad (forward over reverse): norm.logcdf's second derivative
    g = cad.grad(lambda v: cad.sum(cs.norm.logcdf(v)))
    _, tan = cad.jvp(g, (T(x),), (T(np.ones(3)),))
    fd2 = np.array([float(fd_grad(lambda u: float(np.asarray(g(T(np.array([u]))))[0]), np.array(v))) for v in x])
    close(tan, fd2, rtol=1e-6)
    # cad.hessian in (loc, scale) of a t log-likelihood
    H = cad.hessian(lambda p: cad.sum(cs.t.logpdf(T(x), 4.0, p[0], p[1])))(T([0.5, 1.3]))
    gt = cad.grad(lambda p: cad.sum(cs.t.logpdf(T(x), 4.0, p[0], p[1])))
    fdH = np.stack([fd_grad(lambda u, i=i: float(np.asarray(gt(T(u)))[i]), np.array([0.5, 1.3])) for i in range(2)])
    close(H, fdH, rtol=1e-6, atol=1e-8)
    # Tensor.backward through a beta log-likelihood (a, b)
    p = T([2.0, 3.0], requires_grad=True)
    u = np.array([0.2, 0.6])
    cad.sum(cs.beta.logpdf(T(u), p[0], p[1])).backward()
    close(p.grad, fd_grad(lambda q: np.sum(st.beta.logpdf(u, q[0], q[1])), np.array([2.0, 3.0])), rtol=1e-7)


def test_multivariate_normal_batched_parameters():
    """mean (..., d) and cov (..., d, d) broadcast against x (..., d) as in jax.scipy.stats
    (scipy takes one mean and one cov): values against scipy per component, derivatives
    against the loop over components, the Hessian too"""
    import scipy.stats as ss

    from cad.scipy.stats import multivariate_normal as mvn
    rng = np.random.default_rng(7)
    K, N, d = 3, 6, 4
    A = rng.normal(size=(K, d, d))
    cov = A @ A.transpose(0, 2, 1) + d * np.eye(d)
    mu, x = rng.normal(size=(K, d)), rng.normal(size=(N, d))
    want = np.stack([ss.multivariate_normal.logpdf(x, mu[k], cov[k]) for k in range(K)])
    np.testing.assert_allclose(np.asarray(mvn.logpdf(x, mu[:, None, :], cov[:, None])), want, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(mvn.logpdf(x[:, None, :], mu, cov)), want.T, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(mvn.logpdf(x[0], mu, cov)), want[:, 0], rtol=1e-12)
    np.testing.assert_allclose(np.asarray(mvn.entropy(mu, cov)),
                               [ss.multivariate_normal.entropy(mu[k], cov[k]) for k in range(K)], rtol=1e-12)

    def batched(m, c):
        return cad.sum(mvn.logpdf(x, m[:, None, :], c[:, None]) ** 2)

    def loop(m, c):
        return sum(cad.sum(mvn.logpdf(x, m[k], c[k]) ** 2) for k in range(K))
    for a, b in zip(cad.grad(batched, argnums=(0, 1))(mu, cov), cad.grad(loop, argnums=(0, 1))(mu, cov)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(np.asarray(cad.hessian(lambda m: batched(m, cov))(mu)),
                               np.asarray(cad.hessian(lambda m: loop(m, cov))(mu)), rtol=1e-9, atol=1e-10)


def test_shape_mismatch_names_the_function_and_arguments():
    import cad.scipy.special as SP
    with pytest.raises(cad.ShapeError, match=r"cad\.scipy\.stats\.norm\.logpdf: the shapes of x \(3,\), loc \(2,\)"):
        cs.norm.logpdf(np.ones(3), np.zeros(2), 1.0)
    with pytest.raises(cad.ShapeError, match=r"cad\.scipy\.stats\.poisson: .*k \(3,\), mu \(2,\)"):
        cs.poisson.logpmf(np.ones(3), np.ones(2))
    with pytest.raises(cad.ShapeError, match=r"cad\.scipy\.special\.gammainc: the shapes of a \(3,\), x \(2,\)"):
        SP.gammainc(np.ones(3), np.ones(2))
    with pytest.raises(cad.ShapeError, match=r"cad\.scipy\.special\.iv: the shapes of v \(3,\), x \(2,\)"):
        SP.iv(np.ones(3), np.ones(2))
