"""polygamma(1, x) by its own series (cad/ops/cad_special.h cad_trigamma: recurrence to
x >= 10, the asymptotic series, the reflection for x < 0) against scipy: the positive
axis from subnormals to 1e300, negative non-integers down to tiny ones, the poles and
special values, float32; digamma's gradient, and the gradient of polygamma(1, x)."""
import numpy as np
import scipy.special as sp

import cad

rng = np.random.default_rng(61)


def test_values_against_scipy():
    x = np.concatenate([rng.uniform(0.5, 3.0, 1000), rng.uniform(1e-8, 0.5, 200), rng.uniform(3, 1e6, 300),
                        -rng.uniform(0, 30, 300), -rng.uniform(0, 1e-6, 50),
                        [1e-300, 1e300, 10.0, 9.999999999, 10.000000001, -0.5, -1.5, -1e-9, -2 + 1e-9,
                         -2 - 1e-9]])
    got = np.asarray(cad.polygamma(1, cad.tensor(x)))
    np.testing.assert_allclose(got, sp.polygamma(1, x), rtol=4e-15, atol=0)


def test_poles_and_special_values():
    x = np.array([0.0, -0.0, -1.0, -3.0, -1e20, np.inf, -np.inf, np.nan, 5e-324])
    got = np.asarray(cad.polygamma(1, cad.tensor(x)))
    with np.errstate(all="ignore"):
        want = sp.polygamma(1, x)
    np.testing.assert_array_equal(got, want)


def test_float32_and_gradients():
    x = rng.uniform(0.1, 20.0, 500)
    g32 = np.asarray(cad.polygamma(1, cad.tensor(x.astype(np.float32))))
    assert g32.dtype == np.float32
    np.testing.assert_allclose(g32, sp.polygamma(1, x.astype(np.float32)).astype(np.float32), rtol=2e-6)
    g = np.asarray(cad.grad(lambda t: cad.sum(cad.digamma(t)))(x))
    np.testing.assert_allclose(g, sp.polygamma(1, x), rtol=4e-15)
    g2 = np.asarray(cad.grad(lambda t: cad.sum(cad.polygamma(1, t)))(x))
    np.testing.assert_allclose(g2, sp.polygamma(2, x), rtol=1e-13)
    h = np.asarray(cad.grad(cad.grad(lambda t: cad.digamma(t)))(2.5))
    np.testing.assert_allclose(h, sp.polygamma(2, 2.5), rtol=1e-13)
