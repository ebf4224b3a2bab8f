"""Triangular solves above the C substitution's size (cad/linalg.py _trisolve_lapack:
LAPACK's triangular solve through scipy, matrix by matrix over a batch) against numpy
on the triangle: lower and upper, transposed, a vector or columns on the right,
batches that broadcast, float32, gradients against finite differences, and a zero on
the diagonal as cad's LinAlgError."""
import numpy as np
import pytest

import cad
from cad.testing import gradcheck

rng = np.random.default_rng(43)
N = 100   # above _TRSM_SMALL (64)


def _tri(shape, lower):
    a = rng.standard_normal(shape) / np.sqrt(shape[-1])
    a = a + 3 * np.eye(shape[-1])
    return np.tril(a) if lower else np.triu(a)


@pytest.mark.parametrize("lower", [True, False])
@pytest.mark.parametrize("trans", [0, 1])
@pytest.mark.parametrize("ashape,bshape", [((N, N), (N, 3)), ((N, N), (N,)), ((4, N, N), (4, N, 2)),
                                           ((N, N), (2, 3, N, 2)), ((2, 1, N, N), (3, N, 1))])
def test_values_against_numpy(lower, trans, ashape, bshape):
    a = _tri(ashape, lower) + np.triu(rng.standard_normal(ashape), 1) * (1 if lower else 0) \
        + np.tril(rng.standard_normal(ashape), -1) * (0 if lower else 1)   # junk in the other triangle
    b = rng.standard_normal(bshape)
    x = np.asarray(cad.linalg.solve_triangular(cad.tensor(a), cad.tensor(b), trans=trans, lower=lower))
    t = np.tril(a) if lower else np.triu(a)
    if trans:
        t = np.swapaxes(t, -1, -2)
    want = np.linalg.solve(t, b[..., None])[..., 0] if b.ndim == 1 else np.linalg.solve(t, b)
    np.testing.assert_allclose(x, want, rtol=1e-10, atol=1e-10)


def test_float32_and_gradients():
    a = _tri((N, N), True)
    b = rng.standard_normal((N, 2))
    x32 = cad.linalg.solve_triangular(cad.tensor(a.astype(np.float32)), cad.tensor(b.astype(np.float32)),
                                      lower=True)
    assert x32.dtype == cad.float32
    np.testing.assert_allclose(np.asarray(x32), np.linalg.solve(a, b), rtol=1e-4, atol=1e-4)
    a, b = _tri((70, 70), True), rng.standard_normal((70, 1))   # (still above the C substitution's 64)
    assert gradcheck(lambda a, b: cad.linalg.solve_triangular(cad.tril(a), b, lower=True, trans=1),
                     (cad.tensor(a, requires_grad=True), cad.tensor(b, requires_grad=True)),
                     modes=("rev", "fwd"))


def test_zero_on_the_diagonal():
    a = _tri((N, N), True)
    a[17, 17] = 0.0
    with pytest.raises(cad.linalg.LinAlgError, match="triangular_solve"):
        cad.linalg.solve_triangular(cad.tensor(a), cad.tensor(np.ones(N)), lower=True)
