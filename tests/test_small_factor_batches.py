"""Batches of small symmetric positive definite matrices (NOTE [ Batches of small
factors ] in cad/linalg.py: numpy's batched Cholesky, solves and the inverse by C
substitution over the batch) against numpy: solve, slogdet, det, their gradients
(slogdet's is the inverse), broadcasting, float32, and the fallbacks (an indefinite
symmetric matrix in the batch takes LU; a singular one raises)."""
import numpy as np
import pytest

import cad
from cad.testing import gradcheck

rng = np.random.default_rng(47)


def _spd(batch, n, dtype=np.float64):
    m = rng.standard_normal(batch + (n, n))
    return (m @ np.swapaxes(m, -1, -2) + n * np.eye(n)).astype(dtype)


@pytest.mark.parametrize("n", [1, 2, 8, 64, 65])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_solve_slogdet_det(n, dtype):
    a = _spd((7,), n, dtype)
    b = rng.standard_normal((7, n, 3)).astype(dtype)
    tol = dict(rtol=1e-9, atol=1e-9) if dtype == np.float64 else dict(rtol=2e-3, atol=2e-3)
    np.testing.assert_allclose(np.asarray(cad.linalg.solve(cad.tensor(a), cad.tensor(b))),
                               np.linalg.solve(a.astype(np.float64), b.astype(np.float64)), **tol)
    s, ld = cad.linalg.slogdet(cad.tensor(a))
    ws, wld = np.linalg.slogdet(a.astype(np.float64))
    np.testing.assert_array_equal(np.asarray(s), ws)
    np.testing.assert_allclose(np.asarray(ld), wld, **tol)
    g = np.asarray(cad.grad(lambda t: cad.sum(cad.linalg.slogdet(t)[1]))(a))
    inv = np.linalg.inv(a.astype(np.float64))
    np.testing.assert_allclose(g, np.swapaxes(inv, -1, -2), **tol)
    if dtype == np.float64:
        np.testing.assert_array_equal(g, np.swapaxes(g, -1, -2))   # exactly symmetric
    w = rng.standard_normal((7, n, 3))
    ga, gb = cad.grad(lambda t, u: cad.sum(cad.linalg.solve(t, u) * w), argnums=(0, 1))(a, b)
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    gbw = np.linalg.solve(np.swapaxes(a64, -1, -2), w)
    np.testing.assert_allclose(np.asarray(gb), gbw, **tol)
    np.testing.assert_allclose(np.asarray(ga), -gbw @ np.swapaxes(np.linalg.solve(a64, b64), -1, -2), **tol)


def test_broadcast_and_vector_right_hand_sides():
    a = _spd((4, 1), 5)
    b = rng.standard_normal((3, 5, 2))
    np.testing.assert_allclose(np.asarray(cad.linalg.solve(cad.tensor(a), cad.tensor(b))),
                               np.linalg.solve(a, b), rtol=1e-10, atol=1e-12)
    a = _spd((6,), 5)
    d = np.asarray(cad.linalg.det(cad.tensor(a)))
    np.testing.assert_allclose(d, np.linalg.det(a), rtol=1e-10)


def test_indefinite_member_falls_back_and_singular_raises():
    a = _spd((5,), 4)
    a[2] = np.diag([1.0, -2.0, 3.0, 4.0])   # symmetric, not positive definite
    b = rng.standard_normal((5, 4, 2))
    np.testing.assert_allclose(np.asarray(cad.linalg.solve(cad.tensor(a), cad.tensor(b))),
                               np.linalg.solve(a, b), rtol=1e-10, atol=1e-12)
    s, ld = cad.linalg.slogdet(cad.tensor(a))
    np.testing.assert_allclose(np.asarray(s) * np.exp(np.asarray(ld)), np.linalg.det(a), rtol=1e-10)
    a[3] = 0.0
    with pytest.raises(cad.linalg.LinAlgError, match="solve"):
        cad.linalg.solve(cad.tensor(a), cad.tensor(b))


def test_second_order():
    a = _spd((3,), 4)
    assert gradcheck(lambda t: cad.linalg.slogdet(t)[1], (cad.tensor(a, requires_grad=True),),
                     modes=("rev", "fwd"), order=2)
    b = rng.standard_normal((3, 4, 2))
    assert gradcheck(lambda t, u: cad.linalg.solve(t, u),
                     (cad.tensor(a, requires_grad=True), cad.tensor(b, requires_grad=True)),
                     modes=("rev", "fwd"), order=2)
