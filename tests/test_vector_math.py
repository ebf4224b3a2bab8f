"""glibc's vector math (libmvec) for the elementwise rows (tools/gen_ops.py SIMD_DECLS,
when setup.py's probe finds it): each vectorized function against numpy on arrays
long enough for the vector loops, their tails, and special values (within 4 ulp, as
glibc states; the special values exactly)."""
import numpy as np
import pytest
import scipy.special as sp

import cad

rng = np.random.default_rng(41)

FUNCS = {   # cad name: (numpy function, domain)
    "log1p": (np.log1p, (-0.99, 10.0)), "expm1": (np.expm1, (-5.0, 5.0)), "erf": (sp.erf, (-4.0, 4.0)),
    "erfc": (sp.erfc, (-4.0, 9.0)), "log2": (np.log2, (1e-3, 1e3)), "log10": (np.log10, (1e-3, 1e3)),
    "exp2": (np.exp2, (-20.0, 20.0)), "sinh": (np.sinh, (-5.0, 5.0)), "cosh": (np.cosh, (-5.0, 5.0)),
    "arcsinh": (np.arcsinh, (-50.0, 50.0)), "arccosh": (np.arccosh, (1.0, 50.0)),
    "arctanh": (np.arctanh, (-0.99, 0.99)), "arcsin": (np.arcsin, (-1.0, 1.0)),
    "arccos": (np.arccos, (-1.0, 1.0)), "arctan": (np.arctan, (-50.0, 50.0)),
}
SPECIAL = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1.0, -1.0, 2.0, -2.0, 0.5, -0.5, 1e-300, 30.0, -30.0])


@pytest.mark.parametrize("name", list(FUNCS))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_vectorized_function_matches_numpy(name, dtype):
    ref, (lo, hi) = FUNCS[name]
    fn = getattr(cad, name)
    x = rng.uniform(lo, hi, size=1003).astype(dtype)   # vector loops and a tail
    got = np.asarray(fn(cad.tensor(x)))
    want = ref(x.astype(np.float64)).astype(dtype)
    eps = np.finfo(dtype).eps
    np.testing.assert_allclose(got, want, rtol=8 * eps, atol=8 * eps * np.abs(want).max() * 1e-3)
    with np.errstate(all="ignore"):
        xs = np.tile(SPECIAL, 5).astype(dtype)
        got = np.asarray(fn(cad.tensor(xs)))
        want = ref(xs.astype(np.float64)).astype(dtype)
    same = (got == want) | (np.isnan(got) & np.isnan(want)) | np.isclose(got, want, rtol=8 * eps, atol=0)
    assert same.all(), (xs[~same], got[~same], want[~same])
    assert (np.signbit(got[want == 0]) == np.signbit(want[want == 0])).all()


def test_softplus_and_gelu_gradients():
    x = np.linspace(-30, 30, 2001)
    g = np.asarray(cad.grad(lambda t: cad.sum(cad.softplus(t)))(x))
    np.testing.assert_allclose(g, 1 / (1 + np.exp(-x)), rtol=1e-14, atol=1e-300)
    g = np.asarray(cad.grad(lambda t: cad.sum(cad.gelu(t)))(x))
    want = 0.5 * sp.erfc(-x / np.sqrt(2)) + x * np.exp(-0.5 * x * x) / np.sqrt(2 * np.pi)
    np.testing.assert_allclose(g, want, rtol=1e-13, atol=1e-15)   # (the sum cancels near -0.75)
