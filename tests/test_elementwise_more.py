"""The numpy surface's elementwise ops beyond the generated suite (tests/ops/test_rules.py
covers every table line at random points): the special functions against scipy at
hard points (negative non-integer x, tails, large and small magnitudes), float32
against float64, third derivatives against finite differences of the second,
derivatives against PyTorch, the % operator's gradient, vmap, the fake CUDA device,
aliases and numpy/scipy ufunc dispatch."""
import numpy as np
import pytest
import scipy.special as sp

import cad


def _np(t):
    return np.asarray(t, dtype=np.float64)


# ------------------------------------------------------------------ forward values

NEG = np.array([-0.1, -0.5, -0.9, -1.5, -2.25, -3.7, -10.5, -20.3, -99.9])
POS = np.concatenate([np.geomspace(1e-8, 1e8, 40), np.linspace(0.05, 30.0, 97)])


@pytest.mark.parametrize("name,ref", [("gammaln", sp.gammaln), ("digamma", sp.digamma)])
def test_gammaln_digamma_against_scipy(name, ref):
    x = np.concatenate([NEG, POS])
    got = _np(getattr(cad, name)(cad.tensor(x)))
    want = ref(x)
    np.testing.assert_allclose(got, want, rtol=2e-13, atol=1e-13)


def test_digamma_at_poles_and_infinities_as_scipy():
    x = np.array([0.0, -0.0, -1.0, -2.0, np.inf, -np.inf, np.nan])
    np.testing.assert_equal(_np(cad.digamma(cad.tensor(x))), sp.digamma(x))


@pytest.mark.parametrize("n", [0, 1, 2, 3, 5])
def test_polygamma_against_scipy(n):
    x = np.concatenate([NEG, POS[POS < 1e6]])
    got = _np(cad.polygamma(n, cad.tensor(x)))
    np.testing.assert_allclose(got, sp.polygamma(n, x), rtol=1e-12, atol=1e-300)
    # n as a tensor broadcast against x; non-integer and negative n give nan
    ns = cad.tensor(np.array([[0.0], [1.0], [2.0]]))
    np.testing.assert_allclose(_np(cad.polygamma(ns, cad.tensor(x[:4]))),
                               sp.polygamma(np.array([[0], [1], [2]]), x[:4]), rtol=1e-12)
    assert np.isnan(float(cad.polygamma(1.5, cad.tensor(2.0))))
    assert np.isnan(float(cad.polygamma(-1, cad.tensor(2.0))))


def test_erf_family_against_scipy():
    y = np.concatenate([np.linspace(-0.999999, 0.999999, 801),
                        [0.999999, -0.999999, 1 - 1e-12, -(1 - 1e-15), 1e-300, 0.5, -0.5, 0.0]])
    np.testing.assert_allclose(_np(cad.erfinv(cad.tensor(y))), sp.erfinv(y), rtol=1e-14, atol=0)
    np.testing.assert_equal(_np(cad.erfinv(cad.tensor([1.0, -1.0, 1.5]))), [np.inf, -np.inf, np.nan])
    x = np.linspace(-6, 6, 241)
    np.testing.assert_allclose(_np(cad.erf(cad.tensor(x))), sp.erf(x), rtol=1e-15, atol=1e-16)
    np.testing.assert_allclose(_np(cad.erfc(cad.tensor(x))), sp.erfc(x), rtol=1e-14, atol=0)
    # erfinv undoes erf (within the conditioning of erf's rounding near +-1)
    z = np.linspace(-3, 3, 101)
    np.testing.assert_allclose(_np(cad.erfinv(cad.erf(cad.tensor(z)))), z, rtol=1e-10, atol=1e-15)


def test_stable_forms_at_large_and_small_magnitudes():
    x = cad.tensor([-800.0, -40.0, 0.0, 40.0, 800.0])
    np.testing.assert_allclose(_np(cad.softplus(x)), np.logaddexp(_np(x), 0.0), rtol=1e-15)
    np.testing.assert_allclose(_np(cad.silu(x)), [-0.0, -40 / (1 + np.exp(40)), 0, 40, 800], rtol=1e-15)
    np.testing.assert_allclose(_np(cad.gelu(cad.tensor([-40.0, -10.0, 10.0]))),
                               [-40 * sp.ndtr(-40.0), -10 * sp.ndtr(-10.0), 10.0], rtol=1e-14)
    big = cad.tensor([1000.0, -1000.0, np.inf, -np.inf, 3.0])
    for f, ref in [(cad.logaddexp, np.logaddexp), (cad.logaddexp2, np.logaddexp2)]:
        for other in (big, cad.tensor([1000.0, -999.0, np.inf, -np.inf, -np.inf])):
            np.testing.assert_allclose(_np(f(big, other)), ref(_np(big), _np(other)), rtol=1e-15)
    np.testing.assert_allclose(_np(cad.hypot(cad.tensor(1e300), cad.tensor(1e300))), np.hypot(1e300, 1e300))
    s = np.array([0.0, 1e-300, 1e-9, -1e-5, 0.0149, 0.0151, 0.5, 1.0, -2.0, 123.25])
    np.testing.assert_allclose(_np(cad.sinc(cad.tensor(s))), np.sinc(s), rtol=1e-15, atol=1e-17)


def test_nan_rules_as_numpy():
    x = cad.tensor([1.0, np.nan, np.nan, 2.0, 3.0])
    y = cad.tensor([np.nan, 2.0, np.nan, 2.0, -1.0])
    for f, ref in [(cad.fmax, np.fmax), (cad.fmin, np.fmin)]:
        np.testing.assert_equal(_np(f(x, y)), ref(_np(x), _np(y)))
    a = np.array([0.0, 0.0, 0.0, 1.5, -2.0])
    b = np.array([0.0, np.nan, 2.0, 0.0, 3.0])
    np.testing.assert_equal(_np(cad.xlogy(cad.tensor(a), cad.tensor(b))), sp.xlogy(a, b))
    v = np.array([1.0, np.nan, np.inf, -np.inf, -2.5])
    for dt in (np.float64, np.float32):
        got = cad.nan_to_num(cad.tensor(v.astype(dt)))
        assert got.dtype == dt
        np.testing.assert_equal(np.asarray(got), np.nan_to_num(v.astype(dt)))
    k = cad.tensor(np.array([1, 2]))
    assert cad.nan_to_num(k).dtype == np.int64


def test_remainder_and_fmod_signs_and_integers_as_numpy():
    rng = np.random.default_rng(0)
    a = np.concatenate([rng.uniform(-7, 7, 50), [0.0, -0.0, 3.0, -3.0, 5.0]])
    b = np.concatenate([rng.uniform(-3, 3, 50), [2.0, 2.0, -1.5, 1.5, 0.0]])
    for f, ref in [(cad.remainder, np.remainder), (cad.fmod, np.fmod)]:
        with np.errstate(invalid="ignore"):
            want = ref(a, b)
        np.testing.assert_equal(_np(f(cad.tensor(a), cad.tensor(b))), want)
    with np.errstate(invalid="ignore"):
        np.testing.assert_equal(_np(cad.tensor(a) % cad.tensor(b)), np.remainder(a, b))
    i, j = np.array([7, -7, 7, -7]), np.array([3, 3, -3, -3])
    for f, ref in [(cad.remainder, np.remainder), (cad.fmod, np.fmod), (cad.fmax, np.fmax)]:
        r = f(cad.tensor(i), cad.tensor(j))
        assert r.dtype == np.int64
        np.testing.assert_equal(np.asarray(r), ref(i, j))
    assert (cad.tensor(i) % 3).dtype == np.int64
    np.testing.assert_equal(np.asarray(cad.tensor(i) % 3), i % 3)
    assert cad.mod is cad.remainder


@pytest.mark.parametrize("name,lo,hi", [
    ("sinh", -3, 3), ("cosh", -3, 3), ("arcsin", -0.9, 0.9), ("arccos", -0.9, 0.9), ("arctan", -3, 3),
    ("arcsinh", -3, 3), ("arccosh", 1.1, 5), ("arctanh", -0.9, 0.9), ("log2", 0.1, 9), ("log10", 0.1, 9),
    ("exp2", -3, 3), ("sinc", -3, 3), ("softplus", -9, 9), ("gelu", -5, 5), ("silu", -9, 9),
    ("erf", -3, 3), ("erfc", -3, 3), ("erfinv", -0.99, 0.99), ("gammaln", 0.1, 9), ("digamma", 0.1, 9)])
def test_float32_matches_float64(name, lo, hi):
    x = np.linspace(lo, hi, 101)
    f = getattr(cad, name)
    y64 = _np(f(cad.tensor(x)))
    y32 = f(cad.tensor(x, dtype=cad.float32))
    assert y32.dtype == np.float32
    np.testing.assert_allclose(np.asarray(y32, dtype=np.float64), y64, rtol=3e-6, atol=3e-6)


# ------------------------------------------------------------------ higher derivatives

def _d(f, k):
    for _ in range(k):
        f = cad.grad(f)
    return f


THIRD = [
    ("sinc@0", lambda x: cad.sinc(x), [0.0, 1e-3, -0.01, 0.3, 1.7]),
    ("gammaln", cad.gammaln, [0.7, 2.5, -1.5, -0.3]),
    ("digamma", cad.digamma, [0.7, 2.5, -2.7]),
    ("erfinv", cad.erfinv, [-0.8, 0.0, 0.5]),
    ("softplus", cad.softplus, [-3.0, 0.0, 2.0]),
    ("gelu", cad.gelu, [-2.0, 0.0, 1.3]),
    ("silu", cad.silu, [-2.0, 0.0, 1.3]),
    ("logaddexp", lambda x: cad.logaddexp(x, 0.4 * x * x), [-1.0, 0.2, 1.5]),
    ("xlogy", lambda x: cad.xlogy(x, x * x + 0.5), [-1.0, 0.2, 1.5]),
    ("arctan2", lambda x: cad.arctan2(x, 1.5 - x), [-1.0, 0.2, 1.1]),
    ("hypot", lambda x: cad.hypot(x, 1.5 - x), [-1.0, 0.2, 1.1]),
    ("arcsinh", cad.arcsinh, [-2.0, 0.3]),
    ("arccosh", cad.arccosh, [1.3, 3.0]),
    ("polygamma", lambda x: cad.polygamma(2, x), [0.8, 3.0, -1.5]),
    ("logaddexp2", lambda x: cad.logaddexp2(x, 1.0 - x), [-1.0, 0.7]),
]


@pytest.mark.parametrize("name,f,xs", THIRD, ids=[t[0] for t in THIRD])
def test_third_derivative_against_differences_of_the_second(name, f, xs):
    d2, d3 = _d(f, 2), _d(f, 3)
    h = 1e-5
    for x in xs:
        fd = (float(d2(cad.tensor(x + h))) - float(d2(cad.tensor(x - h)))) / (2 * h)
        got = float(d3(cad.tensor(x)))
        assert np.isclose(got, fd, rtol=1e-5, atol=1e-5), (x, got, fd)


def test_sinc_derivatives_at_zero_are_exact():
    pi2 = np.pi ** 2
    want = [1.0, 0.0, -pi2 / 3, 0.0, pi2 ** 2 / 5]
    for k, w in enumerate(want):
        assert np.isclose(float(_d(cad.sinc, k)(cad.tensor(0.0))), w, rtol=1e-14, atol=1e-14), k
    # both branches of the partial agree at the threshold
    for x in (0.0149999, 0.0150001):
        assert np.isclose(float(cad.grad(cad.sinc)(cad.tensor(x))),
                          (np.cos(np.pi * x) - np.sinc(x)) / x, rtol=1e-10)


# ------------------------------------------------------------------ against PyTorch

try:
    import torch
except ImportError:   # pragma: no cover
    torch = None
needs_torch = pytest.mark.skipif(torch is None, reason="needs torch")

TORCH = [
    ("softplus", lambda m, a: m.softplus(a[0]), [(-30, 30)]),
    ("gelu", lambda m, a: m.gelu(a[0]), [(-5, 5)]),
    ("gelu_tanh", lambda m, a: m.gelu(a[0], approximate="tanh"), [(-5, 5)]),
    ("silu", lambda m, a: m.silu(a[0]), [(-9, 9)]),
    ("logaddexp", lambda m, a: m.logaddexp(a[0], a[1]), [(-5, 5), (-5, 5)]),
    ("xlogy", lambda m, a: m.xlogy(a[0], a[1]), [(-2, 2), (0.1, 3)]),
    ("hypot", lambda m, a: m.hypot(a[0], a[1]), [(-2, 2), (-2, 2)]),
    ("atan2", lambda m, a: m.atan2(a[0], a[1]), [(-2, 2), (-2, 2)]),
    ("erfinv", lambda m, a: m.erfinv(a[0]), [(-0.99, 0.99)]),
    ("lgamma", lambda m, a: m.lgamma(a[0]), [(0.1, 6)]),
    ("digamma", lambda m, a: m.digamma(a[0]), [(0.1, 6)]),
    ("polygamma", lambda m, a: m.polygamma(2, a[0]), [(0.3, 6)]),
    ("remainder", lambda m, a: m.remainder(a[0], a[1]), [(-5, 5), (0.5, 2)]),
    ("fmod", lambda m, a: m.fmod(a[0], a[1]), [(-5, 5), (0.5, 2)]),
    ("sinc", lambda m, a: m.sinc(a[0]), [(-3, 3)]),
    ("rsqrt", lambda m, a: m.rsqrt(a[0]), [(0.2, 4)]),
]


class _TorchNS:
    """torch's functions under cad's names where they differ"""
    softplus = staticmethod(lambda x: torch.nn.functional.softplus(x, threshold=1e9))
    gelu = staticmethod(lambda x, approximate="none": torch.nn.functional.gelu(x, approximate=approximate))
    silu = staticmethod(lambda x: torch.nn.functional.silu(x))

    def __getattr__(self, name):
        return getattr(torch, name)


@needs_torch
@pytest.mark.parametrize("name,f,doms", TORCH, ids=[t[0] for t in TORCH])
def test_value_gradient_and_second_derivative_against_torch(name, f, doms):
    rng = np.random.default_rng(7)
    xs = [rng.uniform(lo, hi, 17) for lo, hi in doms]
    ta = [torch.tensor(x, requires_grad=True) for x in xs]
    ty = f(_TorchNS(), ta)
    tg = torch.autograd.grad(ty.sum(), ta, create_graph=True)
    tgg = torch.autograd.grad(sum(g.sum() for g in tg), ta, allow_unused=True)
    ca = [cad.tensor(x, requires_grad=True) for x in xs]
    cy = f(cad, ca)
    np.testing.assert_allclose(_np(cy), ty.detach().numpy(), rtol=1e-12, atol=1e-13)
    # NOTE: PyTorch's float64 trigamma (digamma's derivative, polygamma(1, .)) is good
    # to about 1e-9 relative; cad's agrees with scipy and mpmath to 1e-15
    rtol = 1e-8 if name in ("digamma", "lgamma") else 1e-10
    cg = cad.autograd.grad(cy.sum(), ca, create_graph=True)
    for a, b in zip(cg, tg):
        np.testing.assert_allclose(_np(a), b.detach().numpy(), rtol=rtol, atol=1e-12)
    if name in ("remainder", "fmod"):   # piecewise linear: the gradient is a constant
        assert not any(g.requires_grad for g in cg)
        return
    cgg = cad.autograd.grad(sum(g.sum() for g in cg), ca, allow_unused=True)
    for a, b in zip(cgg, tgg):
        want = np.zeros(17) if b is None else b.numpy()
        got = np.zeros(17) if a is None else _np(a)
        np.testing.assert_allclose(got, want, rtol=rtol * 10, atol=1e-11)


def test_xlogy_derivatives_at_zero():
    """d/dx = log(y) (0 where x = 0 and y <= 0), d/dy = x / y (0 where x = 0), as
    PyTorch except d/dy at x = y = 0 (PyTorch: 0/0 = nan)"""
    x = np.array([0.0, 0.0, 0.0, 1.0, 0.0])
    y = np.array([0.0, 2.0, 0.5, 2.0, -1.0])
    ca = [cad.tensor(v, requires_grad=True) for v in (x, y)]
    gx, gy = cad.autograd.grad(cad.xlogy(*ca).sum(), ca)
    np.testing.assert_array_equal(_np(gx), [0.0, np.log(2.0), np.log(0.5), np.log(2.0), 0.0])
    np.testing.assert_array_equal(_np(gy), [0.0, 0.0, 0.0, 0.5, 0.0])
    if torch is not None:
        ta = [torch.tensor(v, requires_grad=True) for v in (x, y)]
        tx, ty = torch.autograd.grad(torch.xlogy(*ta).sum(), ta)
        np.testing.assert_array_equal(_np(gx), tx.numpy())
        np.testing.assert_array_equal(_np(gy)[1:], ty.numpy()[1:])


# ------------------------------------------------------------------ %, aliases, dispatch

def test_mod_operator_gradient():
    x = cad.tensor([5.3, -5.3, 2.0, 0.7], requires_grad=True)
    y = cad.tensor([2.0, 2.0, -1.5, 0.3], requires_grad=True)
    gx, gy = cad.autograd.grad((x % y).sum(), [x, y])
    np.testing.assert_array_equal(_np(gx), np.ones(4))
    np.testing.assert_array_equal(_np(gy), -np.floor(_np(x) / _np(y)))
    # Python scalars on either side; the scalar path (0-d) too
    g = cad.grad(lambda t: (t % 2.0) + (7.0 % t))(cad.tensor(3.0))
    assert float(g) == 1.0 - np.floor(7.0 / 3.0)
    # second order: % is piecewise linear
    h = cad.grad(cad.grad(lambda t: (t * t) % 1.5))(cad.tensor(1.1))
    assert float(h) == 2.0


def test_torch_aliases_are_the_same_function():
    for alias, name in [("asin", "arcsin"), ("acos", "arccos"), ("atan", "arctan"), ("asinh", "arcsinh"),
                        ("acosh", "arccosh"), ("atanh", "arctanh"), ("atan2", "arctan2"),
                        ("lgamma", "gammaln"), ("mod", "remainder")]:
        assert getattr(cad, alias) is getattr(cad, name)
        assert alias in cad.__all__
    x = cad.tensor([0.3, 0.5])
    np.testing.assert_array_equal(_np(x.asin()), _np(x.arcsin()))
    np.testing.assert_array_equal(_np(x.atan2(x + 1)), np.arctan2(_np(x), _np(x) + 1))
    np.testing.assert_allclose(_np(x.lgamma()), sp.gammaln(_np(x)), rtol=1e-15)


def test_numpy_and_scipy_ufuncs_dispatch_to_cad():
    x = cad.tensor([0.3, 0.5], requires_grad=True)
    for fn, ref in [(np.sinh, cad.sinh), (np.arcsinh, cad.arcsinh), (np.log2, cad.log2),
                    (np.exp2, cad.exp2), (np.fabs, cad.fabs), (np.deg2rad, cad.deg2rad),
                    (sp.gammaln, cad.gammaln), (sp.digamma, cad.digamma), (sp.erf, cad.erf),
                    (sp.erfinv, cad.erfinv)]:
        y = fn(x)
        assert isinstance(y, cad.Tensor) and y.requires_grad, fn
        np.testing.assert_array_equal(_np(y), _np(ref(x)))
    for fn in (np.arctan2, np.hypot, np.logaddexp, np.fmax, np.remainder, np.mod, np.fmod, sp.xlogy):
        y = fn(x, x + 1.0)
        assert isinstance(y, cad.Tensor) and y.requires_grad, fn


# ------------------------------------------------------------------ vmap and the device

def test_vmap_of_new_ops_matches_a_loop():
    rng = np.random.default_rng(3)
    X = cad.tensor(rng.uniform(0.5, 2.0, (4, 3)))
    Y = cad.tensor(rng.uniform(0.5, 2.0, (4, 3)))

    def f(x, y):
        return (cad.logaddexp(x, y) + cad.polygamma(1, x) + cad.xlogy(x, y) + cad.gelu(x, approximate="tanh")
                + cad.nan_to_num(cad.log(x - 1.0)) + x.asin().sum() * 0 + cad.sinc(y) + x % y)
    got = cad.vmap(f)(X, Y)
    want = np.stack([_np(f(X[i], Y[i])) for i in range(4)])
    np.testing.assert_allclose(_np(got), want, rtol=1e-13)
    gx = cad.vmap(cad.grad(lambda x: cad.digamma(x).sum()))(X)
    np.testing.assert_allclose(_np(gx), sp.polygamma(1, _np(X)), rtol=1e-12)


def test_new_ops_on_the_cuda_device_match_the_cpu():
    if not cad.cuda.is_available():
        cad.cuda._use_fake()
    rng = np.random.default_rng(4)
    xs = rng.uniform(0.2, 0.9, 6)
    for dt in (cad.float64, cad.float32):
        for f in (cad.digamma, cad.gammaln, cad.erfinv, cad.sinc, cad.softplus, lambda t: cad.polygamma(2, t),
                  lambda t: cad.logaddexp(t, 1 - t), lambda t: t % 0.3, lambda t: cad.xlogy(t, t + 1)):
            xc = cad.tensor(xs, dtype=dt, requires_grad=True)
            xd = cad.tensor(xs, dtype=dt).to("cuda").requires_grad_()
            yc, yd = f(xc), f(xd)
            assert yd.device.type == "cuda"
            tol = 1e-12 if dt == cad.float64 else 1e-5
            np.testing.assert_allclose(_np(yd.to("cpu")), _np(yc), rtol=tol, atol=tol)
            gc = cad.autograd.grad(yc.sum(), [xc])[0]
            gd = cad.autograd.grad(yd.sum(), [xd])[0]
            np.testing.assert_allclose(_np(gd.to("cpu")), _np(gc), rtol=tol, atol=tol)
