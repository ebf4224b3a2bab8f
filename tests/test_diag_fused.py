"""Diagonal tangent batches (jacfwd's and hessian's identity seeds, kept diagonal
through elementwise records) pushed through the fused C jvp rows
(transforms._diag_ew_fused) give what the rules give (_diag_jvp's one cad op per
partial) and what finite differences give: unary and binary ops, both operands
carrying the batch, constants, broadcast operands (handed to the rules), float32."""
import numpy as np
import pytest

import cad
import cad.transforms as T

rng = np.random.default_rng(2026)

FUNCS = {
    "sin*x^2": lambda x: (cad.sin(x) * x ** 2).sum(),
    "exp(-x*x)+tanh": lambda x: (cad.exp(-x * x) + cad.tanh(x) * 3.0).sum(),
    "x*x/(1+x*x)": lambda x: (x * x / (1.0 + x * x)).sum(),
    "log1p(x^2)-sqrt": lambda x: (cad.log1p(x * x) - cad.sqrt(x * x + 2.0)).sum(),
    "broadcast row": lambda x: (cad.sin(x[:, None] * cad.ones((1, 3)))).sum(),
    "with matmul": lambda x: (cad.tanh(cad.tensor(np.ones((3, 4)) * 0.3) @ x) * x[:3]).sum(),
}


def _fd_hessian(f, x, eps=1e-5):
    n = x.size
    H = np.zeros((n, n))
    g = lambda v: np.asarray(cad.grad(f)(cad.tensor(v)))
    for j in range(n):
        e = np.zeros(n)
        e[j] = eps
        H[:, j] = (g(x + e) - g(x - e)) / (2 * eps)
    return H


@pytest.mark.parametrize("name", list(FUNCS))
def test_hessian_fused_equals_rules_and_fd(name, monkeypatch):
    f = FUNCS[name]
    x = rng.uniform(0.2, 1.2, 4)
    monkeypatch.setattr(T, "_DIAG_FUSED", True)
    fused = np.asarray(cad.hessian(f, cad.tensor(x)))
    jf = np.asarray(cad.jacfwd(cad.grad(f))(cad.tensor(x)))
    monkeypatch.setattr(T, "_DIAG_FUSED", False)
    rules = np.asarray(cad.hessian(f, cad.tensor(x)))
    np.testing.assert_allclose(fused, rules, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(jf, rules, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(fused, _fd_hessian(f, x), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_jacfwd_of_elementwise_chain(dtype, monkeypatch):
    x = rng.uniform(0.2, 1.2, 5).astype(dtype)
    f = lambda x: cad.exp(cad.sin(x) * x) / (1.0 + x * x)
    monkeypatch.setattr(T, "_DIAG_FUSED", True)
    a = np.asarray(cad.jacfwd(f)(cad.tensor(x)))
    monkeypatch.setattr(T, "_DIAG_FUSED", False)
    b = np.asarray(cad.jacfwd(f)(cad.tensor(x)))
    assert a.dtype == dtype
    tol = 1e-5 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(a, b, rtol=tol, atol=tol)
    np.testing.assert_allclose(a, np.diag(np.diag(b)), rtol=tol, atol=tol)   # elementwise: diagonal


def test_nested_hessian_records(monkeypatch):
    """an outer transform over hessian: the inner sweeps record (not fused), and the
    fused path must not be taken where the tangents have to stay differentiable"""
    monkeypatch.setattr(T, "_DIAG_FUSED", True)
    x = rng.uniform(0.2, 1.2, 3)
    f = lambda x: (cad.sin(x) * x ** 3).sum()
    third = np.asarray(cad.jacfwd(lambda v: cad.hessian(f, v))(cad.tensor(x)))
    monkeypatch.setattr(T, "_DIAG_FUSED", False)
    ref = np.asarray(cad.jacfwd(lambda v: cad.hessian(f, v))(cad.tensor(x)))
    np.testing.assert_allclose(third, ref, rtol=1e-12, atol=1e-12)
    # d^3/dx^3 of sin(x) x^3 on the diagonal
    d3 = -np.cos(x) * x ** 3 - 9 * np.sin(x) * x ** 2 + 18 * np.cos(x) * x + 6 * np.sin(x)
    np.testing.assert_allclose(np.einsum("iii->i", third), d3, rtol=1e-10, atol=1e-10)


# ---- mixed diagonal and dense tangents (transforms._mixed_ew_fused): W7's gradient
# adds the diagonal tangent of its x**3 part to the dense one of its W.T @ ... part

W4 = rng.normal(size=(4, 4)) / 2.0
B3 = rng.normal(size=(3, 3)) / 2.0

MIXED = {
    "W7 (add)": (lambda x, W, B: (x ** 3).sum() + cad.tanh(W @ x).sum(), (4,)),
    "sub": (lambda x, W, B: (x ** 3).sum() - cad.sin(W @ x).sum(), (4,)),
    "mul": (lambda x, W, B: ((x ** 2) * (W @ x)).sum(), (4,)),
    "2-D input": (lambda x, W, B: (x ** 3).sum() + cad.tanh(x @ B).sum(), (2, 3)),
}


def _count_mixed(monkeypatch):
    """counts transforms._mixed_ew_fused's results; the batched C sweep (which has its
    own mixed path, tests/test_forward_sweep_b.py) is turned off so the rules' sweep
    takes every record"""
    monkeypatch.setattr(T, "_C_FORWARD", False)
    hits = []
    orig = T._mixed_ew_fused

    def counted(*a):
        r = orig(*a)
        hits.append(r is not None)
        return r
    monkeypatch.setattr(T, "_mixed_ew_fused", counted)
    return hits


@pytest.mark.parametrize("name", list(MIXED))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_hessian_mixed_diag_dense(name, dtype, monkeypatch):
    g, shape = MIXED[name]
    W, B = cad.tensor(W4.astype(dtype)), cad.tensor(B3.astype(dtype))
    f = lambda v: g(v, W, B)
    x = rng.uniform(0.2, 1.2, shape)
    xt = cad.tensor(x.astype(dtype))
    hits = _count_mixed(monkeypatch)
    monkeypatch.setattr(T, "_DIAG_FUSED", True)
    fused = np.asarray(cad.hessian(f, xt))
    assert any(hits), "the mixed path was not taken"
    assert fused.dtype == dtype
    monkeypatch.setattr(T, "_DIAG_FUSED", False)
    rules = np.asarray(cad.hessian(f, xt))
    tol = 1e-5 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(fused, rules, rtol=tol, atol=tol)
    if dtype == np.float64:
        H = _fd_hessian(lambda v: f(cad.reshape(v, shape)), x.reshape(-1)).reshape(shape + shape)
        np.testing.assert_allclose(fused, H, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_jacfwd_mixed_column_major(dtype, monkeypatch):
    """W @ x's tangent batch is W's transpose (column-major, NOTE [ Tangent layout ]):
    the diagonal lands on the strided result"""
    x = rng.uniform(0.2, 1.2, 4).astype(dtype)
    W = W4.astype(dtype)
    f = lambda v: cad.sin(v) * 2.0 + cad.tensor(W) @ v
    hits = _count_mixed(monkeypatch)
    monkeypatch.setattr(T, "_DIAG_FUSED", True)
    J = np.asarray(cad.jacfwd(f)(cad.tensor(x)))
    assert any(hits)
    assert J.dtype == dtype
    tol = 1e-6 if dtype == np.float32 else 1e-14
    np.testing.assert_allclose(J, np.diag(2.0 * np.cos(x)) + W, rtol=tol, atol=tol)
    monkeypatch.setattr(T, "_DIAG_FUSED", False)
    np.testing.assert_allclose(np.asarray(cad.jacfwd(f)(cad.tensor(x))), J, rtol=tol, atol=tol)


def test_mixed_result_is_not_aliased(monkeypatch):
    """the diagonal is added into the fresh result only: the dense tangent it was
    computed from (another record's, or a value the user holds) is unchanged"""
    monkeypatch.setattr(T, "_DIAG_FUSED", True)
    W = cad.tensor(W4)
    x = cad.tensor(rng.uniform(0.2, 1.2, 4))
    before = np.asarray(W).copy()
    for _ in range(3):
        J = np.asarray(cad.jacfwd(lambda v: v + W @ v)(x))
        np.testing.assert_allclose(J, np.eye(4) + W4, rtol=1e-14, atol=1e-14)
    np.testing.assert_array_equal(np.asarray(W), before)
