"""Reductions over a short contiguous last axis (NOTE [ Short reductions ] in
cad_kernels/cpu/kernels.c: GMM's sum over d = 10, BA's sums over 2-3 columns), the
reductions' identity fill, and max/min's NaN and tie rules (CAD_MAX2/MIN2, written
without a branch on the compare).  Against numpy, every row length 1..17 (the short
path stops at 16), float64 and float32, rows under a column slice's outer stride,
the reduction into a gradient that already holds a value, and the derivatives."""
import numpy as np
import pytest

import cad

rng = np.random.default_rng(21)
OPS = [("sum", np.sum), ("max", np.max), ("min", np.min), ("prod", np.prod)]


def _close(got, want, dtype):
    tol = 1e-5 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(np.asarray(got), want, rtol=tol, atol=tol)


@pytest.mark.parametrize("n", list(range(1, 18)))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("op", OPS, ids=lambda o: o[0])
def test_last_axis(op, dtype, n):
    name, nf = op
    A = rng.uniform(0.5, 1.5, size=(3, 67, n)).astype(dtype)
    a = cad.tensor(A)
    for axis, keep in ((2, False), (-1, True)):
        got = getattr(cad, name)(a, axis=axis, keepdims=keep)
        assert got.dtype == dtype
        _close(got, nf(A, axis=axis, keepdims=keep), dtype)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 10, 15])
@pytest.mark.parametrize("op", OPS, ids=lambda o: o[0])
def test_column_slice_rows(op, n):
    """rows of n under an outer stride of 19 (a column slice of a wide array)"""
    name, nf = op
    A = rng.uniform(0.5, 1.5, size=(301, 19))
    got = getattr(cad, name)(cad.tensor(A)[:, 2:2 + n], axis=1)
    _close(got, nf(A[:, 2:2 + n], axis=1), np.float64)


@pytest.mark.parametrize("n", [2, 3, 10])
def test_accumulates_into_a_gradient(n):
    """the vjp of a broadcast (p, 1) -> (p, n) sums rows of n into a gradient that
    another use of the same value already filled"""
    X = rng.standard_normal((211, 1))
    M = rng.standard_normal((211, n))
    x = cad.tensor(X, requires_grad=True)
    y = (x * cad.tensor(M)).sum() + (x * x).sum()
    y.backward()
    np.testing.assert_allclose(np.asarray(x.grad), M.sum(axis=1, keepdims=True) + 2 * X,
                               rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("n", [2, 3, 10, 40])
def test_derivatives(n):
    A = rng.standard_normal((53, n))
    for name in ("sum", "max", "min", "prod"):
        g = cad.grad(lambda a: (getattr(cad, name)(a, axis=1) * cad.arange(53.0)).sum())(cad.tensor(A))
        eps, num = 1e-6, np.zeros_like(A)
        f = lambda B: (getattr(np, name)(B, axis=1) * np.arange(53.0)).sum()
        for i in range(A.shape[0]):
            for j in range(n):
                B = A.copy()
                B[i, j] += eps
                C = A.copy()
                C[i, j] -= eps
                num[i, j] = (f(B) - f(C)) / (2 * eps)
        np.testing.assert_allclose(np.asarray(g), num, rtol=1e-6, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("n", [1, 3, 10, 40])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_nan_propagates(dtype, n):
    """a NaN anywhere in a row makes its max and min NaN (numpy's rule), first or last"""
    A = rng.standard_normal((7, n)).astype(dtype)
    A[1, 0] = np.nan
    A[3, n - 1] = np.nan
    A[5, n // 2] = np.nan
    for name in ("max", "min", "sum"):
        got = np.asarray(getattr(cad, name)(cad.tensor(A), axis=1))
        want = getattr(np, name)(A, axis=1)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=name)
        ok = ~np.isnan(want)
        _close(got[ok], want[ok], dtype)
    # over the outer axis (rows combined elementwise) and the whole array
    for name in ("max", "min"):
        got = np.asarray(getattr(cad, name)(cad.tensor(A), axis=0))
        np.testing.assert_array_equal(np.isnan(got), np.isnan(getattr(np, name)(A, axis=0)))
        assert np.isnan(float(getattr(cad, name)(cad.tensor(A))))


def test_maximum_minimum_elementwise_rules():
    """maximum/minimum/relu: NaN from either side, ties give the second operand (as
    numpy, so maximum(-0.0, 0.0) is 0.0 and maximum(0.0, -0.0) is -0.0)"""
    a = np.array([np.nan, 1.0, np.nan, -0.0, 0.0, 2.0, -3.0])
    b = np.array([1.0, np.nan, np.nan, 0.0, -0.0, 2.0, 5.0])
    for cf, nf in ((cad.maximum, np.maximum), (cad.minimum, np.minimum)):
        got = np.asarray(cf(cad.tensor(a), cad.tensor(b)))
        want = nf(a, b)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        ok = ~np.isnan(want)
        np.testing.assert_array_equal(got[ok], want[ok])
        np.testing.assert_array_equal(np.signbit(got[ok]), np.signbit(want[ok]))
    r = np.asarray(cad.relu(cad.tensor(np.array([np.nan, -1.0, 2.0, -0.0]))))
    assert np.isnan(r[0]) and list(r[1:]) == [0.0, 2.0, 0.0]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_identity_fill(dtype):
    """each reduction's output starts from its identity (the fill): prod of 1s,
    max -inf, min +inf, over many outputs and an empty reduced axis"""
    A = rng.uniform(-2, 2, size=(1001, 3)).astype(dtype)
    for name, nf in OPS:
        _close(getattr(cad, name)(cad.tensor(A), axis=1), nf(A, axis=1), dtype)
    E = np.ones((5, 0), dtype=dtype)
    _close(cad.sum(cad.tensor(E), axis=1), np.zeros(5, dtype), dtype)
    _close(cad.prod(cad.tensor(E), axis=1), np.ones(5, dtype), dtype)


@pytest.mark.parametrize("n", [1, 2, 3, 10, 15, 16, 40])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_sum_vjp_spreads_over_short_rows(dtype, n):
    """a sum's vjp writes each cotangent over its row (the short-row spread), then
    a second use of the same input adds over the first (the accumulate form)"""
    A = rng.standard_normal((3, 71, n)).astype(dtype)
    W1 = rng.standard_normal((3, 71)).astype(dtype)
    W2 = rng.standard_normal((3, 71)).astype(dtype)
    a = cad.tensor(A)
    g1 = cad.grad(lambda a: (cad.sum(a, axis=2) * cad.tensor(W1)).sum())(a)
    _close(g1, np.broadcast_to(W1[:, :, None], A.shape), dtype)
    g2 = cad.grad(lambda a: (cad.sum(a, axis=2) * cad.tensor(W1)).sum()
                  + (cad.sum(a, axis=-1, keepdims=True) * cad.tensor(W2[:, :, None])).sum())(a)
    _close(g2, np.broadcast_to((W1 + W2)[:, :, None], A.shape), dtype)
    tape = cad.record(lambda a: (cad.sum(a, axis=2) * cad.tensor(W1)).sum(), a)
    _close(tape.grad(a)[0], np.broadcast_to(W1[:, :, None], A.shape), dtype)
