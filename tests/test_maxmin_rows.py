"""The gradient of max/min along the last axis (NOTE [ Counts into one slot ] in
sweep.c): the ties' count in an integer, the share a select over the row.  Against
a numpy reference (the gradient split evenly between tied extremes, a NaN slice's
NaN on every element), and bit for bit against the general strided rows (the same
values from a column-major copy), signed zeros included."""
import numpy as np
import pytest

import cad

rng = np.random.default_rng(23)


def _ref(a, axis, kind):
    m = (np.max if kind == "max" else np.min)(a, axis=axis, keepdims=True)
    hit = a == m
    c = hit.sum(axis=axis, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        g = np.where(hit, 1.0 / c, 0.0)
    return np.where(np.isnan(m), np.nan, g).astype(a.dtype)


def _data(shape, dtype, ties):
    a = rng.standard_normal(shape).astype(dtype)
    if ties and a.size:
        a = np.round(a * 2) / 2   # many ties
    return a


@pytest.mark.parametrize("shape", [(1000, 1000), (3, 4, 17), (257,), (6, 1), (0, 5), (4, 0)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kind", ["max", "min"])
@pytest.mark.parametrize("ties", [False, True])
def test_gradient_along_the_last_axis(shape, dtype, kind, ties):
    a = _data(shape, dtype, ties)
    fn = cad.max if kind == "max" else cad.min
    if a.ndim and a.shape[-1] == 0:
        return   # (an empty slice has no extreme: an error, tested with the op)
    g = np.asarray(cad.grad(lambda x: cad.sum(fn(x, axis=-1)))(a))
    np.testing.assert_allclose(g, _ref(a, -1, kind), rtol=1e-6)
    if a.ndim == 1:
        g = np.asarray(cad.grad(lambda x: fn(x))(a))
        np.testing.assert_allclose(g, _ref(a, None, kind), rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_nan_rows_and_bits_against_the_strided_rows(dtype):
    a = _data((40, 33), dtype, True)
    a[3, 5] = np.nan
    a[7, :] = np.nan
    w = rng.standard_normal((40, 1)).astype(dtype)

    def f(x):   # max's share weighted per row, and a -0.0 term into every element first
        return cad.sum(cad.max(x, axis=1, keepdims=True) * w) + cad.sum(x * -0.0)
    gc = np.asarray(cad.grad(f)(cad.tensor(a)))
    gf = np.asarray(cad.grad(f)(cad.tensor(np.asfortranarray(a))))
    np.testing.assert_array_equal(gc, gf)
    np.testing.assert_array_equal(np.signbit(gc), np.signbit(gf))
    assert np.isnan(gc[3]).all() and np.isnan(gc[7]).all()
    want = _ref(a, 1, "max") * w
    ok = ~np.isnan(want)
    np.testing.assert_allclose(gc[ok], want[ok], rtol=1e-6)


def test_prod_gradient_counts_zeros():
    # the zero count of prod's gradient (the same one-slot count)
    a = np.array([[1.0, 0.0, 3.0, 4.0], [0.0, 0.0, 2.0, 1.0], [2.0, 3.0, 4.0, 5.0]])
    g = np.asarray(cad.grad(lambda x: cad.sum(cad.prod(x, axis=1)))(a))
    np.testing.assert_array_equal(g, [[0.0, 12.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0],
                                      [60.0, 40.0, 30.0, 24.0]])
