"""NOTE [ Tangent layout ]: a batch of tangents laid out column-major (jacfwd's basis
through a matmul) is pushed through elementwise records in its own memory order;
values equal the C-ordered computation."""
import numpy as np
import pytest

import cad


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n,m", [(7, 5), (256, 256), (1, 4), (4, 1)])
def test_jacfwd_through_matmul_and_elementwise(n, m, dtype):
    rng = np.random.default_rng(n * 10 + m)
    W = cad.tensor(rng.standard_normal((n, m)).astype(dtype))
    b = cad.tensor(rng.standard_normal(n).astype(dtype))
    x = cad.tensor(rng.standard_normal(m).astype(dtype))

    def f(v):
        return cad.sin(cad.tanh(W @ v) * b + 0.5 * (W @ v))

    Jf = np.asarray(cad.jacfwd(f)(x))
    Jr = np.asarray(cad.jacrev(f)(x))
    y = np.asarray(W) @ np.asarray(x)
    u = np.tanh(y) * np.asarray(b) + 0.5 * y
    want = (np.cos(u) * ((1 - np.tanh(y) ** 2) * np.asarray(b) + 0.5))[:, None] * np.asarray(W)
    tol = 1e-12 if dtype == np.float64 else 1e-4
    np.testing.assert_allclose(Jf, want, rtol=tol, atol=tol)
    np.testing.assert_allclose(Jr, want, rtol=tol, atol=tol)
    assert Jf.dtype == dtype


def test_jvp_with_a_transposed_batch_of_tangents():
    """vmap of jvp over tangents stored column-major"""
    rng = np.random.default_rng(3)
    x = cad.tensor(rng.standard_normal(6))
    T = np.asfortranarray(rng.standard_normal((4, 6)))
    ts = cad.tensor(T).T.T   # a column-major (4, 6) batch
    got = cad.vmap(lambda t: cad.jvp(lambda v: cad.exp(v) * v, (x,), (t,))[1])(ts)
    xv = np.asarray(x)
    np.testing.assert_allclose(np.asarray(got), T * (np.exp(xv) * xv + np.exp(xv)), rtol=1e-13)


def test_hessian_uses_the_same_path():
    rng = np.random.default_rng(4)
    W = cad.tensor(rng.standard_normal((5, 5)))
    H = np.asarray(cad.hessian(lambda v: cad.sum(cad.tanh(W @ v)))(cad.tensor(rng.standard_normal(5))))
    np.testing.assert_allclose(H, H.T, atol=1e-12)
