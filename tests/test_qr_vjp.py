"""qr's reverse rule (cad/linalg.py _qr_vjp: gA = (gQ + Q copyltu(M)) R^-T, M = R gR^T -
gQ^T Q) against finite differences to second order in both modes, and against
torch.autograd where torch is installed: tall, square and batched matrices, either
output alone, float32."""
import numpy as np
import pytest

import cad
from cad.testing import gradcheck

rng = np.random.default_rng(53)
SHAPES = [(5, 3), (4, 4), (2, 5, 3), (3, 6, 6), (7, 1)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("which", [0, 1])
def test_second_order_against_finite_differences(shape, which):
    a = rng.standard_normal(shape)
    assert gradcheck(lambda x: cad.linalg.qr(x)[which], (cad.tensor(a, requires_grad=True),),
                     modes=("rev", "fwd"), order=2)


@pytest.mark.parametrize("shape", SHAPES)
def test_against_torch(shape):
    torch = pytest.importorskip("torch")
    a = rng.standard_normal(shape)
    w1 = rng.standard_normal(shape)
    w2 = rng.standard_normal(shape[:-2] + (shape[-1], shape[-1]))
    g = np.asarray(cad.grad(lambda x: cad.sum(cad.linalg.qr(x)[0] * w1) + cad.sum(cad.linalg.qr(x)[1] * w2))(a))
    at = torch.tensor(a, requires_grad=True)
    q, r = torch.linalg.qr(at)
    ((q * torch.tensor(w1)).sum() + (r * torch.tensor(w2)).sum()).backward()
    np.testing.assert_allclose(g, at.grad.numpy(), rtol=1e-10, atol=1e-10)
    g = np.asarray(cad.grad(lambda x: cad.sum(cad.linalg.qr(x, mode="r") ** 2))(a))
    at = torch.tensor(a, requires_grad=True)
    (torch.linalg.qr(at)[1] ** 2).sum().backward()
    np.testing.assert_allclose(g, at.grad.numpy(), rtol=1e-10, atol=1e-10)


def test_float32():
    a = rng.standard_normal((6, 4))
    g64 = np.asarray(cad.grad(lambda x: cad.sum(cad.linalg.qr(x)[0] ** 3))(a))
    g32 = np.asarray(cad.grad(lambda x: cad.sum(cad.linalg.qr(x)[0] ** 3))(a.astype(np.float32)))
    assert g32.dtype == np.float32
    np.testing.assert_allclose(g32, g64, rtol=1e-3, atol=1e-4)
