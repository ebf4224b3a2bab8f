"""Bilinear primitives (matmul, cross): their jvp is derived from the op applied to one
batched operand, their vjp is the transposes, and the sweeps' diagonal batches go
through the same two rules (NOTE [ Linear and bilinear ops ] in cad/ops/_rules.py).
Checked against finite differences in float64, against the densified path (the same
sweeps with the diagonal batches turned into dense ones), and against torch.func
where it is installed."""
import zlib

import numpy as np
import pytest

import cad
from cad import transforms
from cad.ops import REGISTRY

from _numeric import fd_grad, fd_jac



def _rng(*key):
    return np.random.default_rng(zlib.crc32(repr(key).encode()))

# operand shapes for matmul: vectors, matrices, batches, broadcast batches
MM_SHAPES = [((3,), (3,)), ((3,), (3, 4)), ((2, 3), (3,)), ((2, 3), (3, 4)), ((5, 2, 3), (3, 4)),
             ((2, 3), (5, 3, 4)), ((1, 2, 3), (4, 3, 2)), ((3,), (2, 3, 4)), ((2, 2, 3), (3,)),
             ((0, 3), (3, 2)), ((2, 0), (0, 3))]
CROSS_SHAPES = [((3,), (3,)), ((2, 3), (3,)), ((2, 1, 3), (4, 3))]


def _ops(name):
    return (lambda a, b: cad.matmul(a, b)) if name == "matmul" else (lambda a, b: cad.cross(a, b))


def _cases():
    return [("matmul", s) for s in MM_SHAPES] + [("cross", s) for s in CROSS_SHAPES]


def _scalar(name):
    op = _ops(name)
    return lambda a, b: cad.sum(cad.sin(op(a, b)) * op(a, b))


def _np_scalar(name):
    f = np.matmul if name == "matmul" else np.cross
    return lambda a, b: float(np.sum(np.sin(f(a, b)) * f(a, b)))


def test_bilinear_ops_declare_it():
    for name in ("matmul", "cross"):
        op = REGISTRY[name]
        assert op.bilinear and op.apply_rule is not None
        assert op.jvp_rule.__qualname__.startswith("bilinear_jvp")


@pytest.mark.parametrize("name,shapes", _cases(), ids=lambda v: str(v))
def test_jacobians_of_the_op(name, shapes):
    """jacfwd and jacrev (diagonal seeds) of the op in each operand: the op is linear
    in each, so central differences are exact up to rounding"""
    RNG = _rng(name, shapes)
    a0, b0 = RNG.standard_normal(shapes[0]), RNG.standard_normal(shapes[1])
    f = _ops(name)
    npf = np.matmul if name == "matmul" else np.cross
    for argnum in (0, 1):
        x = (a0, b0)[argnum]
        want = fd_jac(lambda v: npf(v, b0) if argnum == 0 else npf(a0, v), x)
        for jac in (cad.jacfwd, cad.jacrev):
            got = np.asarray(jac(f, argnums=argnum)(a0, b0))
            np.testing.assert_allclose(got, want.reshape(got.shape), rtol=1e-8, atol=1e-9)


@pytest.mark.parametrize("name,shapes", _cases(), ids=lambda v: str(v))
def test_second_order_against_finite_differences(name, shapes):
    RNG = _rng(name, shapes)
    a0, b0 = RNG.standard_normal(shapes[0]), RNG.standard_normal(shapes[1])
    F = _np_scalar(name)
    f = _scalar(name)
    # the Hessian blocks by forward-over-reverse (jacfwd(jacrev)), and by reverse-over-reverse
    for i in (0, 1):
        for j in (0, 1):
            x = (a0, b0)[j]

            def gi(v, i=i, j=j):
                args = [a0, b0]
                args[j] = v
                return fd_grad(lambda u: F(*(args[:i] + [u] + args[i + 1:])), args[i], eps=1e-4)
            want = fd_jac(gi, x, eps=1e-4)
            for h in (cad.jacfwd(cad.jacrev(f, argnums=i), argnums=j),
                      cad.jacrev(cad.jacrev(f, argnums=i), argnums=j)):
                got = np.asarray(h(a0, b0))
                np.testing.assert_allclose(got.reshape(want.shape), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name,shapes", _cases(), ids=lambda v: str(v))
def test_dense_tangents_and_derivatives_in_them(name, shapes):
    """jvp with dense random tangents, and the gradient of the jvp in the primals and
    in the tangents (reverse-over-forward), against finite differences"""
    RNG = _rng(name, shapes)
    a0, b0 = RNG.standard_normal(shapes[0]), RNG.standard_normal(shapes[1])
    ta, tb = RNG.standard_normal(shapes[0]), RNG.standard_normal(shapes[1])
    F = _np_scalar(name)
    f = _scalar(name)
    eps = 1e-4   # the jvp's own check; the gradients of it below take 1e-4 twice
    want = (F(a0 + eps * ta, b0 + eps * tb) - F(a0 - eps * ta, b0 - eps * tb)) / (2 * eps)
    got = cad.jvp(f, (a0, b0), (ta, tb))[1]
    np.testing.assert_allclose(float(got), want, rtol=1e-6, atol=1e-6)

    def h(a, b, u, w):
        return cad.jvp(f, (a, b), (u, w))[1]

    def H(a, b, u, w):
        return (F(a + eps * u, b + eps * w) - F(a - eps * u, b - eps * w)) / (2 * eps)
    got = cad.grad(h, argnums=(0, 1, 2, 3))(a0, b0, ta, tb)
    args = [a0, b0, ta, tb]
    for k in range(4):
        want_k = fd_grad(lambda v: H(*(args[:k] + [v] + args[k + 1:])), args[k], eps=1e-4)
        np.testing.assert_allclose(np.asarray(got[k]), want_k, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name,shapes", _cases(), ids=lambda v: str(v))
def test_diagonal_batches_match_dense_ones(name, shapes, monkeypatch):
    """the Diag seeds through the op's rules give what the densified seeds give"""
    RNG = _rng(name, shapes)
    a0, b0 = RNG.standard_normal(shapes[0]), RNG.standard_normal(shapes[1])
    f = _scalar(name)
    g = _ops(name)
    fns = [cad.hessian(f, argnums=0), cad.hessian(f, argnums=1), cad.jacfwd(g, argnums=1),
           cad.jacrev(g, argnums=0), cad.jacfwd(cad.grad(f, argnums=1), argnums=0)]
    fast = [np.asarray(h(a0, b0)) for h in fns]
    monkeypatch.setattr(transforms, "_diag_jvp", lambda opdef, ctx, ts: False)
    monkeypatch.setattr(transforms, "_diag_vjp", lambda opdef, ctx, g: None)
    for h, want in zip(fns, fast):
        np.testing.assert_allclose(np.asarray(h(a0, b0)), want, rtol=1e-12, atol=1e-12)


def test_matrix_vector_hessian_against_torch():
    torch = pytest.importorskip("torch")
    from torch.func import hessian as thess
    RNG = _rng("torch")
    W = RNG.standard_normal((6, 5))
    x0 = RNG.standard_normal(5)

    def f(x):
        return cad.sum(x ** 3) + cad.sum(cad.tanh(W @ x)) + cad.dot(x, W.T @ cad.sin(W @ x))

    Wt = torch.tensor(W)

    def tf(x):
        return (x ** 3).sum() + torch.tanh(Wt @ x).sum() + x @ (Wt.T @ torch.sin(Wt @ x))
    want = thess(tf)(torch.tensor(x0)).numpy()
    for h in (cad.hessian(f), cad.jacrev(cad.grad(f)), cad.jacfwd(cad.jacfwd(f))):
        np.testing.assert_allclose(np.asarray(h(x0)), want, rtol=1e-10, atol=1e-10)
