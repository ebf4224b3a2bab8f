"""The strided iterator's loop order (NOTE in cad_kernels/cpu/iter.c): a short
innermost dim under a long one is moved outside, so column slices run long strided
rows.  Every order visits the same elements: values and gradients against numpy on
column slices, broadcasts, transposes, 3-d views, size 0, in place and reductions."""
import numpy as np
import pytest

import cad

rng = np.random.default_rng(14)
P = 257   # a long dim (not a multiple of the SIMD width)


def _views():
    A = rng.standard_normal((P, 9))
    B = rng.standard_normal((P, 2))
    C = rng.standard_normal((3, P, 4))
    return [
        ("col slice + contiguous", A, lambda a: a[:, 7:9], B),
        ("col slice / col slice", A, lambda a: a[:, 0:2], A[:, 2:3]),
        ("row broadcast", rng.standard_normal((P, 3)), lambda a: a, rng.standard_normal(3)),
        ("column broadcast", rng.standard_normal((P, 2)), lambda a: a, rng.standard_normal((P, 1))),
        ("transposed short", rng.standard_normal((2, P)), lambda a: a.T, rng.standard_normal((P, 2))),
        ("3-d strided", C, lambda a: a[:, ::3, 1:3], rng.standard_normal((3, 1, 2))),
        ("3-d short middle", C, lambda a: a[1:, :, 2], rng.standard_normal((2, 1))),
        ("step slice", A, lambda a: a[::2, ::4], rng.standard_normal(3)),
        ("size 0", A, lambda a: a[:0, 7:9], np.ones((0, 2))),
        ("short only", rng.standard_normal((3, 2)), lambda a: a[:, 1:], rng.standard_normal((3, 1))),
    ]


@pytest.mark.parametrize("case", _views(), ids=lambda c: c[0])
def test_elementwise_on_views(case):
    _, A, view, other = case
    a, o = cad.tensor(A), cad.tensor(other)
    V = view(A)
    for f, nf in [(lambda x, y: x + y, np.add), (lambda x, y: x * y, np.multiply),
                  (lambda x, y: x / (y * y + 1.0), lambda x, y: x / (y * y + 1.0)),
                  (lambda x, y: cad.sin(x) - y, lambda x, y: np.sin(x) - y)]:
        np.testing.assert_allclose(np.asarray(f(view(a), o)), nf(V, other), rtol=1e-14, atol=1e-14)
        np.testing.assert_allclose(np.asarray(f(o, view(a))), nf(other, V), rtol=1e-14, atol=1e-14)


def _unbroadcast(g, shape):
    g = g.sum(axis=tuple(range(g.ndim - len(shape)))) if g.ndim > len(shape) else g
    keep = tuple(i for i, n in enumerate(shape) if n == 1 and g.shape[i] != 1)
    return (g.sum(axis=keep, keepdims=True) if keep else g).reshape(shape)


@pytest.mark.parametrize("case", _views(), ids=lambda c: c[0])
def test_gradients_on_views(case):
    _, A, view, other = case
    V = view(A)
    W = rng.standard_normal(np.broadcast_shapes(V.shape, other.shape))

    def f(a, o):
        return cad.sum(cad.tensor(W) * cad.sin(view(a)) * o)
    ga, go = cad.grad(f, argnums=(0, 1))(cad.tensor(A), cad.tensor(other))
    # d/dA: W * cos(V) * o summed into the elements of A that the view reads
    gv = W * np.cos(V) * other
    idx = np.broadcast_to(view(np.arange(A.size).reshape(A.shape)), gv.shape)
    exp_a = np.zeros(A.size)
    np.add.at(exp_a, idx.reshape(-1), gv.reshape(-1))
    np.testing.assert_allclose(np.asarray(ga), exp_a.reshape(A.shape), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(np.asarray(go), _unbroadcast(W * np.sin(V), other.shape),
                               rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("case", _views(), ids=lambda c: c[0])
def test_reductions_on_views(case):
    _, A, view, _ = case
    V = view(A)
    a = cad.tensor(A)
    for ax in [None] + list(range(V.ndim)):
        np.testing.assert_allclose(np.asarray(cad.sum(view(a), axis=ax)), V.sum(axis=ax), rtol=1e-12, atol=1e-12)
        if V.size:
            np.testing.assert_allclose(np.asarray(cad.max(view(a), axis=ax)), V.max(axis=ax))
            np.testing.assert_allclose(np.asarray(cad.prod(view(a), axis=ax)), V.prod(axis=ax), rtol=1e-12, atol=1e-300)


def test_setitem_and_copy_of_column_slices():
    A = rng.standard_normal((P, 5))
    a = cad.tensor(A)
    b = a.copy() if hasattr(a, "copy") else a + 0.0
    B = A.copy()

    def f(x):
        y = x + 0.0
        y[:, 1:3] = x[:, 3:5] * 2.0
        return cad.sum(y * y)
    B[:, 1:3] = A[:, 3:5] * 2.0
    np.testing.assert_allclose(float(f(b)), float((B * B).sum()), rtol=1e-13)
    g = cad.grad(f)(a)
    ex = 2 * B.copy()
    ex[:, 1:3] = 0.0
    ex[:, 3:5] += 2 * B[:, 1:3] * 2.0
    np.testing.assert_allclose(np.asarray(g), ex, rtol=1e-12)


def test_large_column_slices_threaded():
    # above the threading threshold: the swapped order split over the pool
    n = (1 << 19) + 3
    A = rng.standard_normal((n, 3))
    a = cad.tensor(A)
    np.testing.assert_allclose(np.asarray(a[:, 0:2] / a[:, 2:3]), A[:, 0:2] / A[:, 2:3], rtol=1e-14)
    np.testing.assert_allclose(np.asarray(cad.sum(a[:, 1:3], axis=0)), A[:, 1:3].sum(0), rtol=1e-10)
    np.testing.assert_allclose(float(cad.sum(a[:, 1:3])), A[:, 1:3].sum(), rtol=1e-10)


@pytest.mark.parametrize("n", [255, 256, 257, 1000, 36455])
@pytest.mark.parametrize("threads", [1, 2])
def test_blocked_short_rows(n, threads):
    # NOTE [ Short rows ]: (short, long) runs in blocks of the long dim, every short
    # index per block; block edges, a remainder, the pool's split (sin is heavy: threaded
    # from 32k elements), reductions along either dim, gradients
    A = rng.standard_normal((n, 11))
    B = rng.standard_normal((n, 3))
    a, b = cad.tensor(A), cad.tensor(B)
    prev = cad.get_num_threads()
    cad.set_num_threads(threads)
    try:
        np.testing.assert_allclose(np.asarray(a[:, 3:6] - b), A[:, 3:6] - B, rtol=1e-15)
        np.testing.assert_allclose(np.asarray(cad.sin(a[:, 0:3]) * a[:, 9:10]),
                                   np.sin(A[:, 0:3]) * A[:, 9:10], rtol=1e-14)
        np.testing.assert_allclose(np.asarray(cad.sum(a[:, 0:3] ** 2, axis=1, keepdims=True)),
                                   (A[:, 0:3] ** 2).sum(1, keepdims=True), rtol=1e-13)
        np.testing.assert_allclose(np.asarray(cad.sum(a[:, 0:3], axis=0)), A[:, 0:3].sum(0), rtol=1e-10)
        g = cad.grad(lambda x: cad.sum(cad.sin(x[:, 1:4]) * x[:, 7:8]))(A)
        ex = np.zeros_like(A)
        ex[:, 1:4] = np.cos(A[:, 1:4]) * A[:, 7:8]
        ex[:, 7] = np.sin(A[:, 1:4]).sum(1)
        np.testing.assert_allclose(np.asarray(g), ex, rtol=1e-12, atol=1e-14)
    finally:
        cad.set_num_threads(prev)


def test_results_take_fortran_order():
    # NOTE [ Result memory order ]: all full-shape operands Fortran-ordered -> a
    # Fortran-ordered result (numpy's order K); any C-ordered one -> C order
    W, D = rng.standard_normal((37, 300)), rng.standard_normal((37, 300))
    w, d = cad.tensor(W), cad.tensor(D)
    r = w.T * d.T                  # both transposes
    assert np.asarray(r).flags.f_contiguous and not np.asarray(r).flags.c_contiguous
    np.testing.assert_array_equal(np.asarray(r), W.T * D.T)
    r2 = cad.sin(w.T) + 1.0        # one operand, a scalar
    assert np.asarray(r2).flags.f_contiguous
    np.testing.assert_allclose(np.asarray(r2), np.sin(W.T) + 1.0, rtol=1e-14, atol=1e-15)
    r3 = w.T * cad.tensor(D.T.copy())   # mixed: C order
    assert np.asarray(r3).flags.c_contiguous
    np.testing.assert_array_equal(np.asarray(r3), W.T * D.T)
    r4 = w.T * cad.tensor(rng.standard_normal(37))   # a broadcast operand does not count
    assert np.asarray(r4).flags.f_contiguous
    # readers of a Fortran-ordered result: reductions, reshape, matmul, indexing, in place
    np.testing.assert_allclose(np.asarray(cad.sum(r2, axis=0)), (np.sin(W.T) + 1.0).sum(0), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(r2.reshape(-1)), (np.sin(W.T) + 1.0).reshape(-1), rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(np.asarray(r2 @ w), (np.sin(W.T) + 1.0) @ W, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(np.asarray(r2[3:9, ::2]), (np.sin(W.T) + 1.0)[3:9, ::2], rtol=1e-14, atol=1e-15)
    r5 = cad.sin(w.T)
    r5 += 2.0
    r5[0, :] = 0.0
    ex = np.sin(W.T) + 2.0
    ex[0, :] = 0.0
    np.testing.assert_allclose(np.asarray(r5), ex, rtol=1e-14, atol=1e-15)


def test_gradients_and_replay_through_fortran_order_results():
    W = rng.standard_normal((40, 300))
    f = lambda w: cad.sum(cad.tanh(w.T * 2.0) ** 2 * cad.exp(w.T))  # noqa: E731
    g = cad.grad(f)(W)
    ex = (2 * np.tanh(2 * W) * (1 - np.tanh(2 * W) ** 2) * 2 * np.exp(W) + np.tanh(2 * W) ** 2 * np.exp(W))
    np.testing.assert_allclose(np.asarray(g), ex, rtol=1e-12)
    tape = cad.record(f, W)
    W2 = rng.standard_normal((40, 300))
    np.testing.assert_allclose(float(tape(W2)), float(f(cad.tensor(W2))), rtol=1e-13)
    np.testing.assert_allclose(np.asarray(tape.grad(W2)[0]), np.asarray(cad.grad(f)(W2)), rtol=1e-10)
    h = cad.hessian(lambda x: cad.sum(cad.sin(cad.reshape(x, (3, 4)).T * 2.0) ** 3))(rng.standard_normal(12))
    assert h.shape == (12, 12)
    np.testing.assert_allclose(np.asarray(h), np.asarray(h).T, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("n", [1, 3, 10, 16, 17, 63])
@pytest.mark.parametrize("m", [1, 2, 51, 1000])
def test_packed_rows(n, m):
    # NOTE [ Packed rows ]: a row repeated over the second-to-last dim (stride 0 there)
    # against contiguous rows, packed R rows per call; several outer indices, chunk
    # edges, a scalar and a second repeated row among the operands; gradients (the
    # sweep's rows: the repeated operand's gradient is a reduction, not packed)
    K = 3
    X = rng.standard_normal((K, m, n))
    Q = rng.standard_normal((K, 1, n))
    M = rng.standard_normal((K, 1, n))
    x, q, mm = cad.tensor(X), cad.tensor(Q), cad.tensor(M)
    np.testing.assert_allclose(np.asarray(q * x - mm), Q * X - M, rtol=1e-15, atol=1e-15)
    np.testing.assert_allclose(np.asarray(cad.where(x > 0.0, q, 2.0 * mm)), np.where(X > 0, Q, 2 * M),
                               rtol=1e-15)
    np.testing.assert_allclose(np.asarray(cad.exp(x[:, None] - q[:, :, None][..., 0, :])),
                               np.exp(X[:, None] - Q[:, :, None][..., 0, :]), rtol=1e-14)
    f = lambda x, q: cad.sum(cad.sin(q * x) * (x - q) ** 2)  # noqa: E731
    gx, gq = cad.grad(f, argnums=(0, 1))(X, Q)
    np.testing.assert_allclose(np.asarray(gx), np.cos(Q * X) * Q * (X - Q) ** 2 + np.sin(Q * X) * 2 * (X - Q),
                               rtol=1e-12, atol=1e-14)
    eq = (np.cos(Q * X) * X * (X - Q) ** 2 - np.sin(Q * X) * 2 * (X - Q)).sum(1, keepdims=True)
    np.testing.assert_allclose(np.asarray(gq), eq, rtol=1e-10, atol=1e-12)
    x32 = cad.tensor(X.astype(np.float32))
    np.testing.assert_allclose(np.asarray(x32 * cad.tensor(Q.astype(np.float32))),
                               (X.astype(np.float32) * Q.astype(np.float32)), rtol=1e-6)
    # the repeated operand's gradient is a sum over the second-to-last dim, packed too
    # (R rows into a zeroed buffer, then added in order): integer terms, so exact in any
    # order; the destination repeated over the outer dim as well; float32
    Xi = rng.integers(-5, 6, size=(K, m, n)).astype(np.float64)
    g = cad.grad(lambda q: cad.sum(q * Xi + 2.0 * q))(np.ones((K, 1, n)))
    np.testing.assert_array_equal(np.asarray(g), Xi.sum(1, keepdims=True) + 2.0 * m)
    g = cad.grad(lambda q: cad.sum(q * Xi))(np.ones((1, 1, n)))
    np.testing.assert_array_equal(np.asarray(g), Xi.sum((0, 1), keepdims=True))
    g = cad.grad(lambda q: cad.sum(q * cad.tensor(Xi.astype(np.float32))))(np.ones((K, 1, n), np.float32))
    np.testing.assert_array_equal(np.asarray(g), Xi.sum(1, keepdims=True).astype(np.float32))


@pytest.mark.parametrize("n", [2, 7, 10, 15, 16, 17, 40])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_packed_reduction_adds_rows_in_order(n, dtype):
    # the gradient of a row repeated over the second-to-last dim: every element is the
    # sum of its column's terms added one row after the other (the register
    # accumulator for rows of at most 16, the loop through memory above), the same
    # bits as a sequential sum, whatever the chunking (rows of one element are a plain
    # reduction, with its own order)
    K, m = 2, 1037
    X = rng.standard_normal((K, m, n)).astype(dtype)
    g = np.asarray(cad.grad(lambda q: cad.sum(q * cad.tensor(X)))(np.ones((K, 1, n), dtype)))
    want = np.zeros((K, 1, n), dtype)
    for i in range(m):
        want[:, 0] += X[:, i]
    np.testing.assert_array_equal(g, want)


@pytest.mark.parametrize("shape", [(7, 11), (7,), (7, 2, 3), (0, 3), (5, 0)])
@pytest.mark.parametrize("ix", [[3, 0, 6, 6, -1], [[1, 2], [-7, 0]], [], 4])
def test_rows_taken_by_one_integer_array(shape, ix):
    # t[ix] with one integer array: numpy's take along axis 0 (a faster path than the
    # general fancy index); values, negative indices, errors, and the recorded gather's
    # gradient (repeated rows accumulate)
    X = rng.standard_normal(shape)
    ia = np.asarray(ix, dtype=np.int64)
    try:
        want = X[ia]
    except IndexError:
        with pytest.raises(IndexError, match="indexing a tensor of shape"):
            cad.tensor(X)[ia]
        return
    got = cad.tensor(X)[ia]
    assert got.shape == want.shape
    np.testing.assert_array_equal(np.asarray(got), want)
    np.testing.assert_array_equal(np.asarray(cad.tensor(X)[ia.astype(np.int32)]), want)
    w = rng.standard_normal(want.shape)
    g = cad.grad(lambda x: cad.sum(x[ia] * w))(X)
    ex = np.zeros_like(X)
    np.add.at(ex, ia, w)
    np.testing.assert_allclose(np.asarray(g), ex, rtol=1e-15)
    tape = cad.record(lambda x: x[ia] * 2.0, X)
    X2 = rng.standard_normal(shape)
    np.testing.assert_array_equal(np.asarray(tape(X2)), X2[ia] * 2.0)


@pytest.mark.parametrize("shape", [(100, 1000, 10), (1, 3001, 7), (5, 4, 300, 3), (3, 1, 2049, 16)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_packed_rows_over_the_pool(shape, dtype):
    # NOTE [ Packed rows over the pool ]: rows packed at two threads, in units of the
    # outer indices (many of them) or of the rows (one or a few), give one thread's
    # bits and numpy's values: a repeated row on either side, two of them, a scalar, a
    # three-operand op; the sizes around a unit's edges; a reduction (not split) keeps
    # its one-thread order; two runs at two threads give the same bits
    from cad._core import _engine as E
    rep = shape[:-2] + (1, shape[-1])
    X = rng.standard_normal(shape).astype(dtype)
    Q = rng.standard_normal(rep).astype(dtype)
    M = rng.standard_normal(rep).astype(dtype)
    x, q, m = cad.tensor(X), cad.tensor(Q), cad.tensor(M)
    progs = [(lambda: q * x, lambda: Q * X), (lambda: x - q, lambda: X - Q),
             (lambda: q * x - m, lambda: Q * X - M), (lambda: cad.where(x > 0.0, q, m), lambda: np.where(X > 0, Q, M)),
             (lambda: cad.exp(q - x * 0.5), lambda: np.exp(Q - X * dtype(0.5))),
             (lambda: cad.sum(q * x, axis=-2, keepdims=True), lambda: (Q * X).sum(-2, keepdims=True))]
    old_nt, old_pm = cad.get_num_threads(), E._par_min()
    try:
        for fn, ref in progs:
            cad.set_num_threads(1)
            one = np.asarray(fn())
            cad.set_num_threads(2)
            E._par_min(1, 1)   # every pass split (the sizes here are below the default)
            two = [np.asarray(fn()) for _ in range(2)]
            E._par_min(*old_pm)
            np.testing.assert_array_equal(two[0], two[1])
            if fn is progs[4][0]:   # exp: a unit's edge may fall in the vector loop's
                # scalar tail, where libm's exp can differ from the SIMD one by an ulp
                np.testing.assert_allclose(two[0], one, rtol=4 * np.finfo(dtype).eps, atol=0)
            else:
                np.testing.assert_array_equal(two[0], one)
            tol = 1e-12 if dtype == np.float64 else 2e-5
            np.testing.assert_allclose(one, ref(), rtol=tol, atol=tol * np.sqrt(shape[-2]))
    finally:
        cad.set_num_threads(old_nt)
        E._par_min(*old_pm)


def test_par_min_roundtrip_and_checks():
    from cad._core import _engine as E
    old = E._par_min()
    assert old[0] > 0 and old[1] > 0
    assert E._par_min(123, 45) == old
    assert E._par_min(*old) == (123, 45)
    with pytest.raises(ValueError, match="_par_min: light"):
        E._par_min(0)
    assert E._par_min() == old


@pytest.mark.parametrize("n", [2, 3, 4, 5, 8, 16, 17, 63])
@pytest.mark.parametrize("m", [2, 171, 1000])
@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int64])
def test_packed_columns_and_row_slices(n, m, dtype):
    # NOTE [ Packed rows ]: a column (one value per row: w[:, None] * d) and rows apart
    # (a column slice of a wider matrix, cams[:, 3:6]) are packed into contiguous runs
    # beside contiguous rows: numpy's bits for exact ops, the same operand twice (packed
    # once), both kinds with a repeated row and a scalar, flipped views, an outer dim,
    # a chunk edge (m = 171 for n = 3), at one thread and split over the pool (the same
    # bits), gradients
    from cad._core import _engine as E
    K = 3

    def mk(shape):
        if dtype == np.int64:
            return rng.integers(-9, 10, size=shape).astype(np.int64)
        return rng.standard_normal(shape).astype(dtype)
    X, Cl, Wd, Rw = mk((K, m, n)), mk((K, m, 1)), mk((K, m, n + 7)), mk((K, 1, n))
    x, c, w, r = cad.tensor(X), cad.tensor(Cl), cad.tensor(Wd), cad.tensor(Rw)
    S, s = Wd[:, :, 3:3 + n], w[:, :, 3:3 + n]
    F, f = Wd[:, ::-1, 2:2 + n], w[:, ::-1, 2:2 + n]
    progs = [(lambda: x * c, lambda: X * Cl), (lambda: c - x, lambda: Cl - X),
             (lambda: s * x, lambda: S * X), (lambda: s * s, lambda: S * S), (lambda: x - f, lambda: X - F),
             (lambda: c * s + r, lambda: Cl * S + Rw), (lambda: cad.where(x > 0, c, s), lambda: np.where(X > 0, Cl, S)),
             (lambda: (s * 2) * c[:, ::-1], lambda: (S * 2) * Cl[:, ::-1]),
             (lambda: x[1] * c[1], lambda: X[1] * Cl[1])]
    old_nt, old_pm = cad.get_num_threads(), E._par_min()
    try:
        for fn, ref in progs:
            cad.set_num_threads(1)
            one = np.asarray(fn())
            np.testing.assert_array_equal(one, ref())
            cad.set_num_threads(2)
            E._par_min(1, 1)
            np.testing.assert_array_equal(np.asarray(fn()), one)
            E._par_min(*old_pm)
    finally:
        cad.set_num_threads(old_nt)
        E._par_min(*old_pm)
    if dtype == np.int64:
        return
    got = np.asarray(cad.exp(s * c))
    np.testing.assert_allclose(got, np.exp(S * Cl), rtol=4 * np.finfo(dtype).eps)
    gw, gc = cad.grad(lambda w, c: cad.sum(cad.sin(c * w[:, :, 3:3 + n]) * x), argnums=(0, 1))(Wd, Cl)
    ew = np.zeros_like(Wd)
    ew[:, :, 3:3 + n] = np.cos(Cl * S) * Cl * X
    tol = 1e-12 if dtype == np.float64 else 1e-4
    np.testing.assert_allclose(np.asarray(gw), ew, rtol=tol, atol=tol)
    np.testing.assert_allclose(np.asarray(gc), (np.cos(Cl * S) * S * X).sum(-1, keepdims=True),
                               rtol=tol, atol=tol * n)
