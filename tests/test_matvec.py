"""Matrix-vector products through BLAS gemv (NOTE [ Matrix-vector products ] in
cad_kernels/cpu/matmul.c): every layout the gemv path takes and the ones it hands
back to gemm or the loop (broadcast, negative and zero strides), against numpy in
float64 and float32, with the accumulating products of the reverse sweep."""
import numpy as np
import pytest

import cad

RNG = np.random.default_rng(20261206)


def _mat(m, k, layout, dtype):
    a = RNG.standard_normal((m, k) if layout != "T" else (k, m)).astype(dtype)
    if layout == "T":          # a transposed view: column-major (m, k)
        return a.T
    if layout == "S":          # every other column: row stride 2k, column stride 2
        return RNG.standard_normal((m, 2 * k)).astype(dtype)[:, ::2]
    if layout == "R":          # reversed rows: a negative row stride
        return a[::-1]
    return a


def _vec(k, layout, dtype):
    v = RNG.standard_normal(2 * k).astype(dtype)
    return {"C": v[:k], "S": v[::2], "R": v[:k][::-1], "B": np.broadcast_to(v[:1], (k,))}[layout]


TOL = {np.float64: 1e-12, np.float32: 1e-4}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("alay", ["C", "T", "S", "R"])
@pytest.mark.parametrize("vlay", ["C", "S", "R", "B"])
@pytest.mark.parametrize("m,k", [(1, 1), (1, 7), (7, 1), (5, 9), (64, 33), (0, 4), (4, 0)])
def test_matrix_vector_layouts(dtype, alay, vlay, m, k):
    A = _mat(m, k, alay, dtype)
    x = _vec(k, vlay, dtype)
    got = cad.tensor(A) @ cad.tensor(x)
    np.testing.assert_allclose(got.numpy(), A @ x, rtol=TOL[dtype], atol=TOL[dtype])
    assert got.dtype == np.dtype(dtype) and got.shape == (m,)
    y = _vec(m, vlay, dtype)
    got = cad.tensor(y) @ cad.tensor(A)
    np.testing.assert_allclose(got.numpy(), y @ A, rtol=TOL[dtype], atol=TOL[dtype])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("alay", ["C", "T", "S"])
def test_one_row_and_one_column_matrices(dtype, alay):
    """(m, k) @ (k, 1) and (1, k) @ (k, n): 2-D results with one column / one row"""
    A = _mat(6, 8, alay, dtype)
    b = RNG.standard_normal((8, 1)).astype(dtype)
    np.testing.assert_allclose((cad.tensor(A) @ cad.tensor(b)).numpy(), A @ b, rtol=TOL[dtype])
    r = RNG.standard_normal((1, 6)).astype(dtype)
    np.testing.assert_allclose((cad.tensor(r) @ cad.tensor(A)).numpy(), r @ A, rtol=TOL[dtype])
    B = _mat(8, 6, alay, dtype)
    np.testing.assert_allclose((cad.tensor(r[:, :6]) @ cad.tensor(B.T)).numpy(), r[:, :6] @ B.T,
                               rtol=TOL[dtype])


def test_batched_matrix_vector():
    A = RNG.standard_normal((3, 5, 7))
    x = RNG.standard_normal(7)
    np.testing.assert_allclose((cad.tensor(A) @ cad.tensor(x)).numpy(), A @ x, rtol=1e-12)
    X = RNG.standard_normal((3, 7, 1))
    np.testing.assert_allclose((cad.tensor(A) @ cad.tensor(X)).numpy(), A @ X, rtol=1e-12)
    Y = RNG.standard_normal((3, 1, 5))
    np.testing.assert_allclose((cad.tensor(Y) @ cad.tensor(A)).numpy(), Y @ A, rtol=1e-12)


@pytest.mark.parametrize("alay", ["C", "T", "S"])
def test_gradients_accumulate(alay):
    """the reverse sweep accumulates matrix-vector products into a gradient (beta 1):
    x is read twice, so its gradient is the sum of two products"""
    A = _mat(9, 11, alay, np.float64)
    B = _mat(11, 9, alay, np.float64)
    x = RNG.standard_normal(11)
    g = cad.grad(lambda x: cad.sum(cad.tanh(cad.tensor(A) @ x)) + cad.sum((x @ cad.tensor(B)) ** 2))(
        cad.tensor(x))
    t = np.tanh(A @ x)
    want = A.T @ (1 - t * t) + B @ (2 * (x @ B))
    np.testing.assert_allclose(g.numpy(), want, rtol=1e-12)


def test_nan_in_fresh_output_is_not_kept():
    """the output is zeroed before gemv accumulates (beta 0 never multiplies a
    recycled buffer's NaN): many products in a row, each exact"""
    A = RNG.standard_normal((40, 30))
    Ac = cad.tensor(A)
    for _ in range(50):
        junk = cad.tensor(np.full(40, np.nan)) * 1.0   # a freed buffer full of NaNs
        del junk
        x = RNG.standard_normal(30)
        np.testing.assert_allclose((Ac @ cad.tensor(x)).numpy(), A @ x, rtol=1e-12)


def test_matvec_derivatives_all_modes():
    """jvp, vjp, jacfwd, jacrev and hessian through products that take gemv, against
    the closed forms"""
    A = RNG.standard_normal((12, 12)) / 4
    Ac = cad.tensor(A)
    x = RNG.standard_normal(12)
    v = RNG.standard_normal(12)
    f = lambda x: cad.tanh(Ac @ x)
    t = np.tanh(A @ x)
    J = (1 - t * t)[:, None] * A
    np.testing.assert_allclose(cad.jacfwd(f)(cad.tensor(x)).numpy(), J, rtol=1e-12)
    np.testing.assert_allclose(cad.jacrev(f)(cad.tensor(x)).numpy(), J, rtol=1e-12)
    _, tan = cad.jvp(f, (cad.tensor(x),), (cad.tensor(v),))
    np.testing.assert_allclose(tan.numpy(), J @ v, rtol=1e-12)
    _, pb = cad.vjp(f, cad.tensor(x))
    np.testing.assert_allclose(pb(cad.tensor(v))[0].numpy(), v @ J, rtol=1e-12)
    H = cad.hessian(lambda x: cad.sum(f(x)))(cad.tensor(x)).numpy()
    np.testing.assert_allclose(H, A.T @ ((-2 * t * (1 - t * t))[:, None] * A), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("ash,bsh", [((3, 4), (4, 2)), ((2, 3, 4), (4, 5)), ((4,), (2, 4, 3)),
                                     ((2, 1, 3, 4), (5, 4, 2)), ((1, 3, 4), (2, 4, 2)),
                                     ((2, 3, 4), (2, 4, 1)), ((2, 3, 4), (4,))])
def test_batch_dims_broadcast(ash, bsh):
    """the output's batch dims: equal, one side empty, or broadcast (the fast paths
    beside numpy's broadcast_shapes give the same shapes and values)"""
    A, B = RNG.standard_normal(ash), RNG.standard_normal(bsh)
    got = cad.matmul(cad.tensor(A), cad.tensor(B))
    assert got.shape == np.matmul(A, B).shape
    np.testing.assert_allclose(np.asarray(got), np.matmul(A, B), rtol=1e-12, atol=1e-12)


def test_batch_dims_that_do_not_broadcast():
    with pytest.raises(cad.ShapeError, match=r"matmul: batch dims of shapes \(2, 3, 4\) and \(3, 4, 2\)"):
        cad.matmul(cad.ones((2, 3, 4)), cad.ones((3, 4, 2)))
