"""A matrix product split by rows over cad's pool (NOTE [ Pool units ], matmul.c)
gives the unsplit product (to rounding: BLAS's kernels for a unit's few rows may add
in another order) and the same bits on every run (units are fixed row ranges), in
every operand layout, float64 and float32, with a batch folded into the rows and in
a gradient that accumulates.
cad._core._engine._blas_par_min moves the size from which products split, so small
products take the split path here."""
import numpy as np
import pytest

import cad
from cad._core import _engine as E

rng = np.random.default_rng(11)


@pytest.fixture
def split_small():
    old_min, old_nt = E._blas_par_min(), cad.get_num_threads()
    yield
    E._blas_par_min(old_min)
    cad.set_num_threads(old_nt)


def _both(fn):
    """fn() unsplit (one thread) and split (two threads, every product), the split
    one checked to give the same bits on three runs"""
    cad.set_num_threads(1)
    E._blas_par_min(1e30)
    a = np.asarray(fn())
    cad.set_num_threads(2)
    E._blas_par_min(1)
    b = np.asarray(fn())
    for _ in range(2):
        np.testing.assert_array_equal(np.asarray(fn()), b)
    return a, b


LAYOUTS = {
    "A @ B": lambda A, B: A @ B,
    "A.T @ B": lambda A, B: cad.transpose(A, (1, 0)) @ B,
    "A @ B.T": lambda A, B: A @ cad.transpose(B, (1, 0)),
    "A.T @ B.T": lambda A, B: cad.transpose(A, (1, 0)) @ cad.transpose(B, (1, 0)),
    "column slices": lambda A, B: A[:, 1:60] @ B[1:60, ::2],
    "batch of A": lambda A, B: cad.reshape(A, (4, 16, 64)) @ B,
}


@pytest.mark.parametrize("name", list(LAYOUTS))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_split_product_equals_unsplit(name, dtype, split_small):
    A = cad.tensor(rng.normal(size=(64, 64)).astype(dtype))
    B = cad.tensor(rng.normal(size=(64, 64)).astype(dtype))
    a, b = _both(lambda: LAYOUTS[name](A, B))
    assert a.dtype == b.dtype == dtype
    tol = 1e-4 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(b, a, rtol=tol, atol=tol)
    ref = np.asarray(LAYOUTS[name](cad.tensor(np.asarray(A, dtype=np.float64)),
                                   cad.tensor(np.asarray(B, dtype=np.float64))))
    np.testing.assert_allclose(b, ref, rtol=tol, atol=tol)


def test_split_product_gradients(split_small):
    A0, B0 = rng.normal(size=(48, 40)), rng.normal(size=(40, 56))

    def grads():
        A, B = cad.tensor(A0, requires_grad=True), cad.tensor(B0, requires_grad=True)
        y = cad.sum(cad.tanh(A @ B) * (A @ B))
        y.backward()
        return np.concatenate([np.asarray(A.grad).ravel(), np.asarray(B.grad).ravel()])
    a, b = _both(grads)
    np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-12)


def test_blas_par_min_roundtrip():
    old = E._blas_par_min()
    assert old > 0
    assert E._blas_par_min(12345) == old
    assert E._blas_par_min(old) == 12345


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", [(1000, 10, 10), (40, 10, 10), (39, 10, 10), (500, 32, 32), (500, 33, 32),
                                   (300, 3, 7), (64, 1, 16), (2000, 16, 64)])
def test_small_transposed_right_operand(dtype, shape):
    """NOTE [ Small transposed right operand ] (matmul.c): x @ W.T with a small W (at
    most 1024 elements, at least 4x as many rows of x) is computed from W copied into
    rows; the same product as numpy's in every layout around the threshold, batched,
    with x non-contiguous, accumulated into a gradient, and a recorded replay"""
    m, k, n = shape
    tol = dict(rtol=1e-12, atol=1e-12) if dtype == np.float64 else dict(rtol=1e-5, atol=1e-5)
    x = rng.normal(size=(m, k)).astype(dtype)
    w = rng.normal(size=(n, k)).astype(dtype)
    X, Wt = cad.tensor(x), cad.tensor(w)
    np.testing.assert_allclose(np.asarray(X @ Wt.T), x @ w.T, **tol)
    xs = rng.normal(size=(m, 2 * k)).astype(dtype)
    np.testing.assert_allclose(np.asarray(cad.tensor(xs)[:, ::2] @ Wt.T), xs[:, ::2] @ w.T, **tol)
    xb = rng.normal(size=(3, m, k)).astype(dtype)
    wb = rng.normal(size=(3, n, k)).astype(dtype)
    np.testing.assert_allclose(np.asarray(cad.matmul(cad.tensor(xb), cad.swapaxes(cad.tensor(wb), 1, 2))),
                               xb @ np.swapaxes(wb, 1, 2), **tol)
    # gradients: d/dx sum((x W^T) * g) = g W, d/dW = g^T x, accumulated over two uses
    g = rng.normal(size=(m, n)).astype(dtype)
    Xg = cad.tensor(x, requires_grad=True)
    Wg = cad.tensor(w, requires_grad=True)
    (cad.sum((Xg @ Wg.T) * cad.tensor(g)) + cad.sum((Xg @ Wg.T) * cad.tensor(g))).backward()
    np.testing.assert_allclose(np.asarray(Xg.grad), 2 * g @ w, rtol=tol["rtol"] * 10, atol=tol["atol"] * 10)
    np.testing.assert_allclose(np.asarray(Wg.grad), 2 * g.T @ x, rtol=tol["rtol"] * 10, atol=tol["atol"] * 10 * m)
    tape = cad.record(lambda a, b: a @ b.T, X, Wt)
    for _ in range(2):
        np.testing.assert_allclose(np.asarray(tape(X, Wt)), x @ w.T, **tol)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_matrix_vector_products_over_the_pool(dtype, split_small):
    """NOTE [ Matrix-vector products over the pool ] (matmul.c): a large gemv split into
    units of y's elements, one BLAS thread each: numpy's product in the four layouts
    (A @ x, A.T @ x, x @ B, x @ B.T), a strided vector, gradients that accumulate, the
    same bits on every run and as on one thread"""
    tol = dict(rtol=1e-10, atol=1e-10) if dtype == np.float64 else dict(rtol=2e-4, atol=2e-3)
    A = rng.normal(size=(1500, 1300)).astype(dtype)
    xv = rng.normal(size=1300).astype(dtype)
    yv = rng.normal(size=1500).astype(dtype)
    At, xt, yt = cad.tensor(A), cad.tensor(xv), cad.tensor(yv)
    cases = [(lambda: At @ xt, A @ xv), (lambda: At.T @ yt, A.T @ yv), (lambda: yt @ At, yv @ A),
             (lambda: xt @ At.T, xv @ A.T),
             (lambda: At @ cad.tensor(np.repeat(xv, 2))[::2], A @ xv)]
    E._blas_par_min(1e5)
    for fn, want in cases:
        cad.set_num_threads(2)
        got = [np.asarray(fn()) for _ in range(3)]
        np.testing.assert_allclose(got[0], want, **tol)
        assert all(np.array_equal(got[0], g) for g in got[1:])
        cad.set_num_threads(1)
        np.testing.assert_allclose(np.asarray(fn()), got[0], **tol)
    cad.set_num_threads(2)
    xg = cad.tensor(xv, requires_grad=True)
    cad.sum((At @ xg) * yt + (At @ xg) * 2.0).backward()
    np.testing.assert_allclose(np.asarray(xg.grad), A.T @ (yv + 2.0), **tol)
