"""NOTE [ Batched custom vjps ] (cad/ops/custom.py): jacrev's batch of cotangents
and jacfwd's batch of tangents through linalg's solve, inv, cholesky, eigh, slogdet
and the triangular solve in one call of their rules (the batch as leading dims), and one LU
solve for a batch of right-hand sides against one matrix.  Checked against one call
per cotangent and the vmapped jvp (custom._BATCHED_VJP = False), finite differences
and torch.func where present."""
import numpy as np
import pytest

import cad
from cad.ops import custom
from cad import linalg as L

from _numeric import fd_jac, on_and_off

rng = np.random.default_rng(77)
N = 6    # (jacrev of more than transforms._JAC_ROWS outputs takes the batched sweep)
NV = 20
A0 = rng.standard_normal((N, N)) + N * np.eye(N)
AV = rng.standard_normal((NV, NV)) + NV * np.eye(NV)
S0 = AV @ AV.T   # symmetric positive definite: the Cholesky-factor path of solve
B0 = rng.standard_normal((N, 3))

def _eig_parts(s):
    """eigenvalues and the squared entries of two eigenvectors (sign-free)"""
    w, V = cad.linalg.eigh(s)
    return cad.concatenate([w, V[:, 0] ** 2, V[:, 1] ** 2])


CASES = {
    # name: (f, x0)
    "solve_vector": (lambda x: cad.tanh(cad.linalg.solve(cad.tensor(AV), cad.sin(x))), rng.standard_normal(NV)),
    "solve_matrix_wrt_a": (lambda a: cad.linalg.solve(cad.reshape(a, (N, N)), cad.tensor(B0)) ** 2,
                           A0.reshape(-1)),
    "solve_spd": (lambda x: cad.linalg.solve(cad.tensor(S0), x * x), rng.standard_normal(NV)),
    "solve_batched_a": (lambda x: cad.linalg.solve(cad.stack([cad.tensor(A0), cad.tensor(A0.T)]),
                                                   cad.reshape(x, (2, N, 2))), rng.standard_normal(4 * N)),
    "inv": (lambda a: cad.linalg.inv(cad.reshape(a, (N, N))) * 2.0, A0.reshape(-1)),
    "cholesky": (lambda a: cad.linalg.cholesky(cad.reshape(a, (N, N)) @ cad.reshape(a, (N, N)).T),
                 A0.reshape(-1)),
    "eigh": (lambda a: _eig_parts(cad.reshape(a, (N, N)) + cad.reshape(a, (N, N)).T),
             (A0 @ A0.T / (4 * N * N)).reshape(-1)),
    "slogdet": (lambda a: cad.stack([cad.linalg.slogdet(cad.reshape(a[:N * N], (N, N)) * a[k])[1]
                                     for k in range(18)]), A0.reshape(-1)),
    "slogdet_spd": (lambda a: cad.stack([cad.linalg.slogdet(cad.reshape(a[:N * N], (N, N)) @ cad.reshape(a[:N * N], (N, N)).T
                                                         + a[k])[1] for k in range(18)]), A0.reshape(-1) * 0.3),
    "triangular_matrix": (lambda x: cad.linalg.triangular_solve(cad.tensor(np.tril(A0)), cad.reshape(x, (N, 3)),
                                                                lower=True), B0.reshape(-1)),
    "triangular_vector": (lambda x: cad.linalg.triangular_solve(cad.tensor(np.triu(AV)), x, lower=False),
                          rng.standard_normal(NV)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_jacrev_batched_against_per_cotangent(name, monkeypatch):
    f, x0 = CASES[name]
    a, b = on_and_off(monkeypatch, custom, "_BATCHED_VJP", lambda: np.asarray(cad.jacrev(f)(cad.tensor(x0))))
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13)
    J = fd_jac(lambda v: np.asarray(f(cad.tensor(v))), x0)
    np.testing.assert_allclose(a, J, rtol=1e-6, atol=1e-7)
    c, d = on_and_off(monkeypatch, custom, "_BATCHED_VJP", lambda: np.asarray(cad.jacfwd(f)(cad.tensor(x0))))
    np.testing.assert_allclose(c, d, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(c, a, rtol=1e-10, atol=1e-11)


@pytest.mark.parametrize("name", ["solve_vector", "inv", "cholesky", "triangular_matrix", "eigh", "slogdet"])
def test_hessian_through_batched_vjps(name, monkeypatch):
    """jacrev of jacrev: the inner batch records (its rule's ops are differentiated)"""
    f, x0 = CASES[name]
    g = lambda x: cad.sum(f(x) ** 2)  # noqa: E731
    a, b = on_and_off(monkeypatch, custom, "_BATCHED_VJP", lambda: np.asarray(cad.jacrev(cad.jacrev(g))(cad.tensor(x0))))
    np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10)
    H = fd_jac(lambda v: np.asarray(cad.grad(g)(cad.tensor(v))), x0)
    np.testing.assert_allclose(a, H, rtol=1e-5, atol=1e-6)


def test_the_batch_reaches_the_rule_once(monkeypatch):
    calls = []
    real = L._solve._vjp

    def spy(g, *a, **k):
        calls.append(tuple(g[0].shape))
        return real(g, *a, **k)
    monkeypatch.setattr(L._solve, "_vjp", spy)
    f, x0 = CASES["solve_vector"]
    cad.jacrev(f)(cad.tensor(x0))
    assert calls == [(NV, NV, 1)]
    calls.clear()
    f, x0 = CASES["triangular_vector"]   # (a 1-D right-hand side: one call per cotangent)
    cad.jacrev(f)(cad.tensor(x0))


def test_lu_solve_with_a_batch_of_right_hand_sides():
    lu, piv = L._lu(A0)
    Bs = rng.standard_normal((4, 2, N, 3))
    for trans in (0, 1):
        x = L._lu_solve(lu, piv, Bs, trans)
        want = np.linalg.solve(A0.T if trans else A0, Bs)
        np.testing.assert_allclose(x, want, rtol=1e-12, atol=1e-12)
    assert L._lu_solve(lu, piv, np.zeros((0, N, 2))).shape == (0, N, 2)


def test_against_torch_func():
    torch = pytest.importorskip("torch")
    f, x0 = CASES["solve_vector"]
    ta = torch.tensor(AV)
    J = torch.func.jacrev(lambda x: torch.tanh(torch.linalg.solve(ta, torch.sin(x))))(torch.tensor(x0))
    np.testing.assert_allclose(np.asarray(cad.jacrev(f)(cad.tensor(x0))), J.numpy(), rtol=1e-12, atol=1e-13)
