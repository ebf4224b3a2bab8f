"""svd's reverse rule (cad/linalg.py _svd_vjp, Townsend's) against finite differences to
second order in both modes and against torch.autograd where torch is installed, with
losses that do not depend on the singular vectors' signs: the singular values, U S^p V^T
and the projectors U S U^T, V S^2 V^T (the terms for m > k and n > k); tall, wide,
square and batched matrices."""
import numpy as np
import pytest

import cad
from cad.testing import gradcheck

rng = np.random.default_rng(59)
SHAPES = [(6, 3), (3, 6), (4, 4), (2, 7, 4), (2, 3, 5)]


def _parts(x):
    return cad.linalg.svd(x, full_matrices=False)


def _proj(x, W1, W2):
    u, s, vh = _parts(x)
    return (cad.sum(cad.matmul(u * cad.unsqueeze(s, -2), cad.swapaxes(u, -1, -2)) * W1)
            + cad.sum(cad.matmul(cad.swapaxes(vh, -1, -2) * cad.unsqueeze(s ** 2, -2), vh) * W2))


@pytest.mark.parametrize("shape", SHAPES)
def test_second_order_against_finite_differences(shape):
    a = rng.standard_normal(shape)
    x = cad.tensor(a, requires_grad=True)
    assert gradcheck(lambda t: _parts(t)[1], (x,), modes=("rev", "fwd"), order=2)
    assert gradcheck(lambda t: (lambda u, s, vh: cad.matmul(u * cad.unsqueeze(s ** 2, -2), vh))(*_parts(t)),
                     (x,), modes=("rev", "fwd"), order=2)


@pytest.mark.parametrize("shape", SHAPES)
def test_against_torch(shape):
    torch = pytest.importorskip("torch")
    a = rng.standard_normal(shape)
    m, n = shape[-2:]
    W1 = rng.standard_normal(shape[:-2] + (m, m))
    W2 = rng.standard_normal(shape[:-2] + (n, n))
    g = np.asarray(cad.grad(lambda x: _proj(x, W1, W2))(a))
    at = torch.tensor(a, requires_grad=True)
    u, s, vh = torch.linalg.svd(at, full_matrices=False)
    (((u * s.unsqueeze(-2)) @ u.mT * torch.tensor(W1)).sum()
     + ((vh.mT * (s ** 2).unsqueeze(-2)) @ vh * torch.tensor(W2)).sum()).backward()
    np.testing.assert_allclose(g, at.grad.numpy(), rtol=1e-9, atol=1e-9)
    g = np.asarray(cad.grad(lambda x: cad.sum(cad.linalg.svdvals(x) ** 3))(a))
    at = torch.tensor(a, requires_grad=True)
    (torch.linalg.svdvals(at) ** 3).sum().backward()
    np.testing.assert_allclose(g, at.grad.numpy(), rtol=1e-9, atol=1e-9)
