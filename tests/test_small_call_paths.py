"""The short paths of small calls (cross, inner, einsum, diagonal, trace, sort, topk):
each against numpy/torch semantics and against the general path it bypasses,
gradients to second order, vmap (which keeps the general path)."""
import numpy as np
import pytest

import cad
from cad.ops import index as I
from cad.ops import sort as S

rng = np.random.default_rng(38)


@pytest.mark.parametrize("shape,k,a1,a2", [((3, 3), 0, 0, 1), ((2, 4), 1, 0, 1), ((4, 2), -2, 0, 1),
                                           ((2, 3), 5, 0, 1), ((2, 3), -5, 0, 1), ((2, 3, 4), 0, 2, 0),
                                           ((2, 3, 3), -1, -1, -2), ((0, 3), 0, 0, 1), ((3, 0), 1, 0, 1),
                                           ((2, 3, 4), 2, 1, 2), ((1, 1), 0, 1, 0)])
@pytest.mark.parametrize("view", ["c", "T", "step"])
def test_diagonal_and_trace_as_views(shape, k, a1, a2, view):
    X = rng.standard_normal(shape)
    if view == "T":
        base = rng.standard_normal(shape[::-1])
        X, x = base.T, cad.tensor(base).T
    elif view == "step":
        base = rng.standard_normal(shape[:-1] + (2 * shape[-1],))
        X, x = base[..., ::2], cad.tensor(base)[..., ::2]
    else:
        x = cad.tensor(X)
    d = cad.diagonal(x, k, a1, a2)
    want = np.diagonal(X, k, a1, a2)
    assert d.shape == want.shape
    np.testing.assert_array_equal(np.asarray(d), want)
    np.testing.assert_allclose(np.asarray(cad.trace(x, k, a1, a2)), np.trace(X, k, a1, a2), rtol=1e-14)
    # the gradient lands on the diagonal only; second order through the view
    W = rng.standard_normal(want.shape)
    g = cad.grad(lambda x: cad.sum(cad.diagonal(x, k, a1, a2) ** 2 * W))(X)
    ev = np.zeros(X.shape)
    idx = np.arange(X.size).reshape(X.shape)
    pos = np.diagonal(idx, k, a1, a2)
    np.add.at(ev.reshape(-1), pos.reshape(-1), (2 * want * W).reshape(-1))
    np.testing.assert_allclose(np.asarray(g), ev, rtol=1e-14)
    if X.size and pos.ndim == 1:   # second order: d^2 trace(x)^2 = 2 e e^T, e the diagonal's indicator
        H = cad.hessian(lambda x: cad.trace(x, k, a1, a2) ** 2)(X)
        hv = np.zeros((X.size, 1))
        hv[pos, 0] = 1.0
        np.testing.assert_allclose(np.asarray(H).reshape(X.size, X.size), 2 * hv @ hv.T, atol=1e-14)


def test_diagonal_under_vmap_and_setitem_does_not_write_through():
    X = rng.standard_normal((5, 3, 3))
    got = cad.vmap(lambda a: cad.diagonal(a, 1))(X)
    np.testing.assert_array_equal(np.asarray(got), np.stack([np.diagonal(a, 1) for a in X]))
    x = cad.tensor(X[0])
    d = cad.diagonal(x)
    d[0] = 100.0
    np.testing.assert_array_equal(np.asarray(x), X[0])   # values are never written through views
    assert not np.asarray(cad.diagonal(x)).flags.writeable


@pytest.mark.parametrize("a_shape,b_shape", [((3,), (3,)), ((2, 3), (3,)), ((3,), (4, 3)), ((2, 3), (4, 3)),
                                             ((2, 2, 3), (3,)), ((0,), (0,)), ((2, 0), (0,))])
def test_inner_paths(a_shape, b_shape):
    A, B = rng.standard_normal(a_shape), rng.standard_normal(b_shape)
    got = cad.inner(A, B)
    np.testing.assert_allclose(np.asarray(got), np.inner(A, B), rtol=1e-14, atol=1e-15)
    ga, gb = cad.grad(lambda a, b: cad.sum(cad.inner(a, b) ** 2), argnums=(0, 1))(A, B)
    r = np.inner(A, B)
    if B.ndim == 1:
        ea, eb = np.multiply.outer(2 * r, B), np.tensordot(2 * r, A, r.ndim)
    else:
        ea = np.tensordot(2 * r, B, ([r.ndim - 1], [0])) if A.ndim == 1 else (2 * r) @ B
        eb = np.tensordot(2 * r, A, ([0], [0])) if A.ndim == 2 else np.multiply.outer(2 * r, A)
    np.testing.assert_allclose(np.asarray(ga), ea, rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(np.asarray(gb), eb, rtol=1e-13, atol=1e-14)


def test_einsum_parse_cache_keys_on_ndim():
    # one subscripts string with '...' over operands of different ranks: each rank its own parse
    for shape in [(3,), (2, 3), (4, 2, 3)]:
        X = rng.standard_normal(shape)
        np.testing.assert_allclose(np.asarray(cad.einsum("...i,i->...", X, np.ones(3))), X.sum(-1), rtol=1e-14)
    A = rng.standard_normal((3, 4))
    for _ in range(3):   # cached, the same answer
        np.testing.assert_allclose(np.asarray(cad.einsum("ij->ji", A)), A.T)
        np.testing.assert_allclose(np.asarray(cad.einsum("ij,ij->", A, A)), (A * A).sum(), rtol=1e-14)
    with pytest.raises(ValueError, match="einsum"):
        cad.einsum("ij,j->i", A, np.ones(3), np.ones(3))


@pytest.mark.parametrize("descending", [False, True])
def test_small_sort_is_the_stable_sort(descending):
    for X in [np.array([2.0, 1.0, 2.0, 0.5, 1.0]), np.array([1.0, np.nan, 0.0, np.nan, -0.0, 0.0]),
              rng.standard_normal((4, 5)), rng.integers(0, 3, (3, 6)).astype(float), np.zeros((2, 0))]:
        for ax in range(X.ndim):
            want = S._np_argsort(X, ax, descending)
            np.testing.assert_array_equal(np.asarray(cad.argsort(X, ax, descending=descending)), want)
            got = cad.sort(X, ax, descending=descending)
            np.testing.assert_array_equal(np.asarray(got), np.take_along_axis(X, want, ax))
    X = rng.standard_normal((3, 4))
    W = rng.standard_normal((3, 4))
    g = cad.grad(lambda x: cad.sum(cad.sort(x, 1, descending=descending) * W))(X)
    e = np.zeros_like(X)
    np.put_along_axis(e, S._np_argsort(X, 1, descending), W, 1)
    np.testing.assert_array_equal(np.asarray(g), e)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_small_topk_one_row(dtype):
    cases = [np.array([0.3, 0.1, 0.3, 0.2]), np.array([np.nan, 1.0, np.nan, -np.inf]),
             np.array([-0.0, 0.0, -0.0]), rng.standard_normal(7), np.array([5.0])]
    for X in cases:
        X = X.astype(dtype)
        for k in range(X.size + 1):
            for largest in (True, False):
                v, i = cad.topk(X, k, largest=largest)
                want = S._np_argsort(X, 0, largest)[:k]
                np.testing.assert_array_equal(np.asarray(i), want)
                np.testing.assert_array_equal(np.asarray(v), X[want])
    Y = rng.standard_normal(12)[::3]   # a strided row: the general path
    np.testing.assert_array_equal(np.asarray(cad.topk(Y, 2)[1]), S._np_argsort(Y, 0, True)[:2])
    g = cad.grad(lambda x: cad.sum(cad.topk(x, 2)[0] ** 2))(np.array([1.0, 3.0, 2.0]))
    np.testing.assert_array_equal(np.asarray(g), [0.0, 6.0, 4.0])


def test_gather_along_cache_is_per_shape_and_axis():
    for shape in [(3, 4), (4, 3), (3, 4, 2)]:
        X = rng.standard_normal(shape)
        for ax in range(len(shape)):
            ix = np.argsort(X, ax)
            np.testing.assert_array_equal(np.asarray(I.gather_along(cad.tensor(X), ix, ax)),
                                          np.take_along_axis(X, ix, ax))
            np.testing.assert_array_equal(np.asarray(cad.take_along_axis(X, ix[..., :1] if ax == len(shape) - 1 else ix, ax)),
                                          np.take_along_axis(X, ix[..., :1] if ax == len(shape) - 1 else ix, ax))


@pytest.mark.parametrize("sa,sb,n", [((3, 3), (3, 3), 1), ((2, 3, 4), (3, 4, 2), 2), ((2, 3), (4,), 0),
                                     ((3,), (3,), 1), ((), (2,), 0), ((2, 0), (0, 3), 1), ((2, 3), (2, 3), 2),
                                     ((2, 3), (3, 2), 0)])
def test_tensordot_int_axes_as_one_product(sa, sb, n):
    A, B = rng.standard_normal(sa), rng.standard_normal(sb)
    np.testing.assert_allclose(np.asarray(cad.tensordot(A, B, n)), np.tensordot(A, B, n), rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(np.asarray(cad.tensordot(A.astype(np.float32), B.astype(np.float32), n)),
                               np.tensordot(A, B, n), rtol=1e-5, atol=1e-6)
    W = rng.standard_normal(np.tensordot(A, B, n).shape)
    ga, gb = cad.grad(lambda a, b: cad.sum(cad.tensordot(a, b, n) * W), argnums=(0, 1))(A, B)
    ea = np.tensordot(W, B, (list(range(W.ndim - (B.ndim - n), W.ndim)), list(range(n, B.ndim))))
    eb = np.tensordot(A, W, (list(range(A.ndim - n)), list(range(A.ndim - n))))
    np.testing.assert_allclose(np.asarray(ga), ea, rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(np.asarray(gb), eb, rtol=1e-13, atol=1e-14)
    Ai = rng.integers(-3, 4, sa)
    np.testing.assert_allclose(np.asarray(cad.tensordot(Ai, B, n)), np.tensordot(Ai, B, n), rtol=1e-14, atol=1e-14)
