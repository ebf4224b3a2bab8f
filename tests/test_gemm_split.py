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
        # after a straggler (a forced serial job) the same units on the caller: the
        # same bits (the unsplit BLAS call it once took summed columns in another order)
        E._pool_stats(reset=True, serial=3)
        np.testing.assert_array_equal(np.asarray(fn()), got[0])
        E._pool_stats(reset=True)
        cad.set_num_threads(1)
        np.testing.assert_allclose(np.asarray(fn()), got[0], **tol)
    cad.set_num_threads(2)
    xg = cad.tensor(xv, requires_grad=True)
    cad.sum((At @ xg) * yt + (At @ xg) * 2.0).backward()
    np.testing.assert_allclose(np.asarray(xg.grad), A.T @ (yv + 2.0), **tol)


BATCHES = {
    # (a's shape, b's shape, how b is used): GMM's products and their vjps' layouts
    "x @ L.T": ((25, 1000, 10), (25, 10, 10), lambda a, b: cad.matmul(a, cad.swapaxes(b, 1, 2))),
    "g @ L": ((25, 1000, 10), (25, 10, 10), lambda a, b: cad.matmul(a, b)),
    "x.T @ g": ((25, 1000, 10), (25, 1000, 10), lambda a, b: cad.matmul(cad.swapaxes(a, 1, 2), b)),
    "broadcast batch": ((6, 1, 300, 16), (1, 5, 16, 12), lambda a, b: cad.matmul(a, b)),
    "strided rows": ((9, 800, 24), (9, 12, 16), lambda a, b: cad.matmul(a[:, ::2, ::2], b)),
    "odd batch": ((7, 3, 500, 20), (7, 3, 20, 9), lambda a, b: cad.matmul(a, b)),
}


@pytest.mark.parametrize("name", list(BATCHES))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_batches_over_the_pool(name, dtype):
    """NOTE [ Batches over the pool ] (matmul.c): a batch of products each too small to
    split runs in units of the batch over cad's pool; every product is the same BLAS
    call as on one thread, so two threads give one thread's bits, every run; numpy's
    product; the path is a pool job (a forced serial job is counted down)"""
    sa, sb, fn = BATCHES[name]
    a0, b0 = rng.normal(size=sa).astype(dtype), rng.normal(size=sb).astype(dtype)
    A, B = cad.tensor(a0), cad.tensor(b0)
    old = cad.get_num_threads()
    try:
        cad.set_num_threads(1)
        one = np.asarray(fn(A, B))
        cad.set_num_threads(2)
        two = [np.asarray(fn(A, B)) for _ in range(3)]
        E._pool_stats(reset=True, serial=5)
        serial = np.asarray(fn(A, B))
        assert E._pool_stats()["serial_left"] == 4
        E._pool_stats(reset=True)
    finally:
        cad.set_num_threads(old)
    for t in two + [serial]:
        np.testing.assert_array_equal(t, one)
    want = np.asarray(fn(cad.tensor(a0.astype(np.float64)), cad.tensor(b0.astype(np.float64))))
    ref = {"x @ L.T": lambda: a0 @ np.swapaxes(b0, 1, 2), "g @ L": lambda: a0 @ b0,
           "x.T @ g": lambda: np.swapaxes(a0, 1, 2) @ b0, "broadcast batch": lambda: a0 @ b0,
           "strided rows": lambda: a0[:, ::2, ::2] @ b0, "odd batch": lambda: a0 @ b0}[name]()
    tol = dict(rtol=1e-10, atol=1e-10) if dtype == np.float64 else dict(rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(one, ref, **tol)
    np.testing.assert_allclose(want, ref, **tol)


def test_batch_over_the_pool_gradients():
    """GMM's product x @ L^T in a gradient (both vjp products batched over the pool):
    the gradients of one and two threads agree bit for bit, and equal numpy's"""
    x0, l0 = rng.normal(size=(25, 1000, 10)), rng.normal(size=(25, 10, 10))
    g0 = rng.normal(size=(25, 1000, 10))

    def grads():
        X, L = cad.tensor(x0, requires_grad=True), cad.tensor(l0, requires_grad=True)
        cad.sum(cad.matmul(X, cad.swapaxes(L, 1, 2)) * cad.tensor(g0)).backward()
        return np.asarray(X.grad), np.asarray(L.grad)
    old = cad.get_num_threads()
    try:
        cad.set_num_threads(1)
        gx1, gl1 = grads()
        cad.set_num_threads(2)
        gx2, gl2 = grads()
    finally:
        cad.set_num_threads(old)
    np.testing.assert_array_equal(gx1, gx2)
    np.testing.assert_array_equal(gl1, gl2)
    np.testing.assert_allclose(gx2, g0 @ l0, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(gl2, np.swapaxes(g0, 1, 2) @ x0, rtol=1e-10, atol=1e-9)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("m,k", [(16, 32), (7, 5), (8, 1), (33, 64), (9, 0)])
@pytest.mark.parametrize("layout", ["rows", "columns", "strided"])
def test_small_batched_matrix_vector(dtype, m, k, layout):
    """the small-batch loop's matrix-vector products (n == 1: vmap of A @ x, A held by
    rows, by columns or strided): numpy's values; in a gradient that accumulates (beta
    1) and under vmap"""
    B = 37
    w = rng.normal(size=(m, 2 * k)).astype(dtype)
    x = rng.normal(size=(B, k, 1)).astype(dtype)
    W = {"rows": lambda t: t[:, :k], "columns": lambda t: cad.swapaxes(cad.tensor(
        np.ascontiguousarray(np.asarray(t)[:, :k].T)), 0, 1), "strided": lambda t: t[:, ::2]}[layout]
    wn = {"rows": w[:, :k], "columns": w[:, :k], "strided": w[:, ::2]}[layout]
    Wt = W(cad.tensor(w))
    tol = dict(rtol=1e-12, atol=1e-12) if dtype == np.float64 else dict(rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(cad.matmul(Wt, cad.tensor(x))), np.matmul(wn, x), **tol)
    xv = cad.tensor(x[..., 0])
    np.testing.assert_allclose(np.asarray(cad.vmap(lambda v: Wt @ v)(xv)), x[..., 0] @ wn.T, **tol)
    g = rng.normal(size=(B, m, 1)).astype(dtype)
    xg = cad.tensor(x, requires_grad=True)
    (cad.sum(cad.matmul(Wt, xg) * cad.tensor(g)) + cad.sum(cad.matmul(Wt, xg) * cad.tensor(g))).backward()
    np.testing.assert_allclose(np.asarray(xg.grad), 2 * np.matmul(wn.T, g), **tol)
