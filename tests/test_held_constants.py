"""NOTE [ Held constants ] (tools/gen_ops.py): a binary op's other input held as one
value along a row gets a vectorized vjp loop of its own, and pow by 2, 3 or 4 its own
loops with the exponent written in.  The same numbers as the general loops: a held
scalar against an array of that value, bit for bit, for every binary op; pow by 2 and
3 as products (x * x, x * x * x: torch's and JAX's numbers) in every path."""
import numpy as np
import pytest

import cad

rng = np.random.default_rng(3)
BINARY = ["add", "sub", "mul", "div", "pow", "maximum", "minimum", "fmax", "fmin", "fmod", "remainder",
          "hypot", "arctan2", "logaddexp", "logaddexp2", "xlogy"]


@pytest.mark.parametrize("name", BINARY)
@pytest.mark.parametrize("c", [2.0, 3.0, 4.0, 1.5, -1.0])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_held_scalar_gives_the_array_bits(name, c, dtype):
    f = getattr(cad, name)
    X = (rng.random((7, 37)) * 1.5 + 0.25).astype(dtype)
    X[0, :4] = [1.0, 2.0, 0.5, 3.0]
    full = np.full(X.shape, c, dtype)
    for held, arr in [(lambda x: f(x, dtype(c)), lambda x: f(x, full)),
                      (lambda x: f(dtype(c), x), lambda x: f(full, x))]:
        with np.errstate(all="ignore"):
            np.testing.assert_array_equal(np.asarray(held(cad.tensor(X))), np.asarray(arr(cad.tensor(X))))
            gh = np.asarray(cad.grad(lambda x: cad.sum(held(x) * 1.0))(X))
            ga = np.asarray(cad.grad(lambda x: cad.sum(arr(x) * 1.0))(X))
        if name in ("pow", "xlogy", "logaddexp", "logaddexp2"):
            # a function of the held value alone (log(3) in d 3**x / dx) is hoisted out
            # of the loop and evaluated once by libm, where the array's loop calls the
            # vector library per element: within an ulp
            np.testing.assert_allclose(gh, ga, rtol=2 * np.finfo(dtype).eps, atol=0)
        else:
            np.testing.assert_array_equal(gh, ga)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_pow_by_small_integers_are_products_in_every_path(dtype):
    X = np.concatenate([rng.standard_normal(200) * 10.0 ** rng.integers(-5, 5, 200),
                        [0.0, -0.0, np.inf, -np.inf, np.nan, 1e-310, -1e-310, 1e103, -1e103]]).astype(dtype)
    x = cad.tensor(X)
    with np.errstate(all="ignore"):
        sq, cube = X * X, X * X * X
        np.testing.assert_array_equal(np.asarray(x ** 2), sq)
        np.testing.assert_array_equal(np.asarray(x ** 3), cube)
        np.testing.assert_array_equal(np.asarray(cad.pow(x, cad.tensor(np.full(X.shape, 3, dtype)))), cube)
        np.testing.assert_array_equal(np.asarray(x[::2] ** 3), cube[::2])   # the strided loop
        np.testing.assert_array_equal(np.asarray(x ** 4), np.asarray(cad.pow(x, np.full(X.shape, 4, dtype))))
        fin = np.isfinite(cube) & (np.abs(X) > 1e-100)
        np.testing.assert_array_less(np.abs(cube - np.power(X, dtype(3)))[fin],
                                     1.01 * np.spacing(np.abs(np.power(X, dtype(3))))[fin] + 1e-300)
    for v in [0.7, -1.3, 0.0, 2.0]:   # 0-d values: the scalar path, the same products
        s = cad.tensor(dtype(v))
        assert float(s ** 3) == float(dtype(v) * dtype(v) * dtype(v))
        assert float(cad.grad(lambda t: t ** 3)(dtype(v))) == float(dtype(3) * (dtype(v) * dtype(v)))
    g = np.asarray(cad.grad(lambda t: cad.sum(t ** 3))(X[:200]))
    np.testing.assert_array_equal(g, dtype(3) * (X[:200] * X[:200]))
    g4 = np.asarray(cad.grad(lambda t: cad.sum(t ** 4))(X[:200]))
    np.testing.assert_array_equal(g4, dtype(4) * (X[:200] * X[:200] * X[:200]))


def test_pow_derivatives_at_zero_and_higher_order():
    # the guards of pow's partials still hold in the held loops: d/dx x**y at x = 0
    X = np.array([0.0, -0.0, 0.5, -2.0])
    for c in (2.0, 3.0, 4.0, 2.5, 0.0, 1.0):
        with np.errstate(all="ignore"):
            g = np.asarray(cad.grad(lambda t: cad.sum(t ** c))(X))
            want = np.where(X == 0, 0.0 if c != 1.0 else 1.0, c * np.power(X, c - 1))
        np.testing.assert_allclose(g, want, rtol=1e-15, equal_nan=True)
    h = cad.hessian(lambda t: cad.sum(t ** 3))(np.array([0.5, -1.5, 2.0]))
    np.testing.assert_allclose(np.asarray(h), np.diag([3.0, -9.0, 12.0]), rtol=1e-15)
    d3 = cad.grad(cad.grad(cad.grad(lambda t: t ** 4)))(1.5)
    assert float(d3) == pytest.approx(24 * 1.5, rel=1e-15)
