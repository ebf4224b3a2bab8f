"""cad.scipy.stats' logpdf with its parameters left in their own shapes (the ops
broadcast; _bcast(expand=False)): values against scipy.stats for every continuous
distribution with array x and scalar parameters, scalar x and array parameters, and
shapes that broadcast both ways, outside the support too; gradients in x and in a
scalar parameter against finite differences."""
import numpy as np
import pytest
import scipy.stats as ss

import cad
import cad.scipy.stats as cst

rng = np.random.default_rng(67)
DISTS = {"norm": (), "expon": (), "laplace": (), "gamma": (2.5,), "chi2": (3.0,), "t": (4.0,),
         "beta": (2.0, 3.0)}


def _x(name, shape):
    lo, hi = (0.05, 0.95) if name == "beta" else (-2.0, 3.0)
    x = rng.uniform(lo, hi, size=shape)
    if x.size > 3:
        x.flat[0], x.flat[1] = -0.5, 0.0   # outside / on the edge of some supports
    return x


@pytest.mark.parametrize("name", list(DISTS))
@pytest.mark.parametrize("case", ["x array", "params array", "both broadcast"])
def test_logpdf_shapes_and_values(name, case):
    sh = DISTS[name]
    loc, scale = 0.3, 1.7
    if case == "x array":
        x, ps = _x(name, (50,)), sh
    elif case == "params array":
        x, ps = 0.4, tuple(np.full(4, p) + rng.uniform(0, 0.5, 4) for p in sh)
        loc = rng.uniform(-0.2, 0.2, 4) if not sh else loc
    else:
        x, ps = _x(name, (3, 1)), tuple(np.full(4, p) + rng.uniform(0, 0.5, 4) for p in sh)
        scale = rng.uniform(1, 2, 4)
    got = np.asarray(getattr(cst, name).logpdf(x, *ps, loc=loc, scale=scale))
    with np.errstate(all="ignore"):
        want = getattr(ss, name).logpdf(x, *ps, loc=loc, scale=scale)
    assert got.shape == np.shape(want)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", [n for n in DISTS if DISTS[n]])
def test_gradient_in_a_scalar_parameter(name):
    x = rng.uniform(0.1, 0.9, 30)
    sh = DISTS[name]

    def f(p0):
        return cad.sum(getattr(cst, name).logpdf(x, p0, *sh[1:]))
    g = float(cad.grad(f)(sh[0]))
    h = 1e-6
    fd = (float(f(sh[0] + h)) - float(f(sh[0] - h))) / (2 * h)
    np.testing.assert_allclose(g, fd, rtol=1e-6)
    gx = np.asarray(cad.grad(lambda t: cad.sum(getattr(cst, name).logpdf(t, *sh)))(x))
    assert gx.shape == x.shape
