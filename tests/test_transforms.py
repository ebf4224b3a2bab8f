"""grad / value_and_grad / vjp / jvp / jacrev / jacfwd / jacobian / hessian / hvp,
higher order, nesting."""
import numpy as np
import pytest

import cad
from cad.testing import gradcheck, gradgradcheck


def test_grad_inputs_python_float_numpy_tensor_and_shapes():
    f = lambda x: (x ** 3).sum() if isinstance(x, cad.Tensor) and x.ndim else x ** 3  # noqa: E731
    assert cad.grad(f)(2.0).item() == 12.0
    g = cad.grad(lambda x: (x ** 2).sum())(np.array([1.0, 2.0]))
    assert g.tolist() == [2.0, 4.0] and g.shape == (2,)
    x32 = cad.tensor([1.0, 2.0], dtype=cad.float32)
    g32 = cad.grad(lambda x: (x * x).sum())(x32)
    assert g32.dtype == np.float32 and g32.tolist() == [2.0, 4.0]
    assert not g32.requires_grad


def test_grad_argnums_has_aux_value_and_grad():
    f = lambda x, y: (x * y + cad.sin(x)).sum()  # noqa: E731
    x, y = cad.tensor([0.5, 1.0]), cad.tensor([2.0, 3.0])
    gx, gy = cad.grad(f, argnums=(0, 1))(x, y)
    np.testing.assert_allclose(gx.numpy(), [2.0 + np.cos(0.5), 3.0 + np.cos(1.0)])
    np.testing.assert_allclose(gy.numpy(), [0.5, 1.0])
    assert cad.grad(f, argnums=1)(x, y).tolist() == [0.5, 1.0]
    v, g = cad.value_and_grad(f)(x, y)
    np.testing.assert_allclose(v.item(), 4.0 + np.sin(0.5) + np.sin(1.0))
    (v2, aux), g2 = cad.value_and_grad(lambda x: ((x * x).sum(), "aux"), has_aux=True)(x)
    assert aux == "aux" and g2.tolist() == [1.0, 2.0]
    g3, aux3 = cad.grad(lambda x: ((x * x).sum(), 7), has_aux=True)(x)
    assert aux3 == 7 and g3.tolist() == [1.0, 2.0]


def test_grad_errors():
    with pytest.raises(TypeError, match=r"scalar.*shape \(2,\)"):
        cad.grad(lambda x: x * 2)(cad.tensor([1.0, 2.0]))
    with pytest.raises(TypeError, match="integer"):
        cad.grad(lambda x: x * 2.0)(3)
    with pytest.raises(TypeError, match="int64"):
        cad.grad(lambda x: (x * 2.0).sum())(cad.arange(3))
    with pytest.raises(ValueError, match="argnums"):
        cad.grad(lambda x: x, argnums=2)(1.0)


def test_unused_input_gives_zero_gradient():
    g = cad.grad(lambda x, y: (x * 2).sum(), argnums=(0, 1))(cad.ones(2), cad.ones(3))
    assert g[1].tolist() == [0.0, 0.0, 0.0]
    assert cad.grad(lambda x: 3.0 * cad.ones(()))(1.0).item() == 0.0


def test_grad_to_any_depth():
    f = lambda x: x ** 4  # noqa: E731
    assert cad.grad(f)(2.0).item() == 32.0
    assert cad.grad(cad.grad(f))(2.0).item() == 48.0
    assert cad.grad(cad.grad(cad.grad(f)))(2.0).item() == 48.0
    assert cad.grad(cad.grad(cad.grad(cad.grad(f))))(2.0).item() == 24.0
    assert cad.grad(cad.grad(cad.grad(cad.grad(cad.grad(f)))))(2.0).item() == 0.0


def test_no_perturbation_confusion():
    assert cad.grad(lambda x: x * cad.grad(lambda y: x * y)(x))(3.0).item() == 6.0
    _, t = cad.jvp(lambda x: x * cad.grad(lambda y: x * y)(x), (3.0,), (1.0,))
    assert t.item() == 6.0
    _, t = cad.jvp(lambda x: x * cad.jvp(lambda y: x * y, (x,), (1.0,))[1], (3.0,), (1.0,))
    assert t.item() == 6.0
    g = cad.grad(lambda x: cad.jvp(lambda y: x * y, (x,), (1.0,))[1] * x)(3.0)
    assert g.item() == 6.0


def test_vjp_and_jvp():
    x = cad.tensor([0.3, -1.2, 2.0])
    out, vjp_fn = cad.vjp(lambda x: cad.sin(x) * 2, x)
    (g,) = vjp_fn(cad.tensor([1.0, 0.0, 2.0]))
    np.testing.assert_allclose(g.numpy(), [2 * np.cos(0.3), 0.0, 4 * np.cos(2.0)])
    (g2,) = vjp_fn(cad.ones(3))   # callable again
    np.testing.assert_allclose(g2.numpy(), 2 * np.cos(x.numpy()))
    with pytest.raises(ValueError, match="cotangent"):
        vjp_fn(cad.ones(2))
    y, t = cad.jvp(lambda a, b: a * b, (x, cad.ones(3)), (cad.ones(3), cad.zeros(3)))
    assert t.tolist() == [1.0, 1.0, 1.0]
    (u, v), (tu, tv) = cad.jvp(lambda a: (a * 2, a.sum()), (x,), (cad.ones(3),))
    assert tu.tolist() == [2.0, 2.0, 2.0] and tv.item() == 3.0
    with pytest.raises(ValueError, match="tangent"):
        cad.jvp(lambda a: a, (x,), (cad.ones(2),))


def test_seed_jacobian_and_hessian():
    np.testing.assert_array_equal(cad.jacobian(lambda x: x ** 3, cad.ones(3)).numpy(), 3 * np.eye(3))
    np.testing.assert_array_equal(cad.hessian(lambda x: (x ** 3).sum(), cad.ones(3)).numpy(),
                                  6 * np.eye(3))


def test_jacobian_shapes_and_modes_agree():
    rng = np.random.default_rng(0)
    W = cad.tensor(rng.standard_normal((4, 3)))
    f = lambda x: cad.tanh(W @ x).reshape(2, 2)  # noqa: E731
    x = cad.tensor(rng.standard_normal(3))
    jr, jf = cad.jacrev(f)(x), cad.jacfwd(f)(x)
    assert jr.shape == (2, 2, 3) and jf.shape == (2, 2, 3)
    np.testing.assert_allclose(jr.numpy(), jf.numpy(), rtol=1e-12)
    t = np.tanh(W.numpy() @ x.numpy())
    np.testing.assert_allclose(jr.numpy().reshape(4, 3), (1 - t ** 2)[:, None] * W.numpy())
    j0, j1 = cad.jacrev(lambda a, b: a * b, argnums=(0, 1))(cad.ones(2), cad.tensor([2.0, 3.0]))
    assert j0.tolist() == [[2.0, 0.0], [0.0, 3.0]] and j1.tolist() == [[1.0, 0.0], [0.0, 1.0]]


def test_hessian_symmetric_and_equal_to_differences_of_the_gradient():
    rng = np.random.default_rng(1)
    W = cad.tensor(rng.standard_normal((5, 4)) / 2)
    g = lambda x: (x ** 3).sum() + cad.tanh(W @ x).sum() + cad.logsumexp(x * x)  # noqa: E731
    x0 = rng.standard_normal(4)
    H = cad.hessian(g, cad.tensor(x0)).numpy()
    np.testing.assert_allclose(H, H.T, rtol=1e-12, atol=1e-12)
    eps = 1e-6
    fd = np.stack([(cad.grad(g)(cad.tensor(x0 + eps * e)).numpy() -
                    cad.grad(g)(cad.tensor(x0 - eps * e)).numpy()) / (2 * eps) for e in np.eye(4)])
    np.testing.assert_allclose(H, fd, rtol=1e-5, atol=1e-6)
    # the seed's reverse-over-reverse construction gives the same matrix
    def grad0(x):
        y = g(x)
        return cad.autograd.grad(y, x, create_graph=True)[0]
    np.testing.assert_allclose(cad.jacobian(grad0, cad.tensor(x0)).numpy(), H, rtol=1e-10, atol=1e-12)
    # Hessian-vector products without the matrix
    v = rng.standard_normal(4)
    np.testing.assert_allclose(cad.hvp(g, cad.tensor(x0), cad.tensor(v)).numpy(), H @ v, rtol=1e-10)


def test_backward_create_graph():
    x = cad.tensor([1.0, 2.0], requires_grad=True)
    y = (x ** 3).sum()
    y.backward(create_graph=True)
    assert x.grad.tolist() == [3.0, 12.0] and x.grad.requires_grad
    (h,) = cad.autograd.grad(x.grad.sum(), [x])
    assert h.tolist() == [6.0, 12.0]
    z = cad.tensor(2.0, requires_grad=True)
    (gz,) = cad.autograd.grad(cad.sin(z) * z, [z], create_graph=True)
    (ggz,) = cad.autograd.grad(gz, [z], create_graph=True)
    (gggz,) = cad.autograd.grad(ggz, [z])
    np.testing.assert_allclose(gggz.item(), -3 * np.sin(2.0) - 2 * np.cos(2.0))


def test_three_deep_compositions():
    f = lambda x: cad.sin(x) * x ** 2  # noqa: E731
    x0 = 0.7

    def num3(x):   # third derivative by finite differences
        h = 1e-3
        d2 = lambda z: (np.sin(z + h) * (z + h) ** 2 - 2 * np.sin(z) * z ** 2 + np.sin(z - h) * (z - h) ** 2) / h ** 2  # noqa: E731
        return (d2(x + h) - d2(x - h)) / (2 * h)
    want = num3(x0)
    g1 = lambda x: cad.grad(f)(x)  # noqa: E731
    rev3 = cad.grad(cad.grad(g1))(x0).item()
    fwd3 = cad.jvp(lambda x: cad.jvp(lambda y: cad.jvp(f, (y,), (1.0,))[1], (x,), (1.0,))[1],
                   (x0,), (1.0,))[1].item()
    mix = cad.jacfwd(cad.jacrev(cad.grad(f)))(cad.tensor(x0)).item()
    mix2 = cad.grad(lambda x: cad.jvp(cad.grad(f), (x,), (1.0,))[1])(x0).item()
    for v in (rev3, fwd3, mix, mix2):
        np.testing.assert_allclose(v, want, rtol=1e-4)
    np.testing.assert_allclose([rev3, fwd3, mix], [mix2] * 3, rtol=1e-12)


def test_checker_modes_and_order():
    x = cad.tensor([0.3, -0.7, 1.2], requires_grad=True)
    W = cad.tensor(np.arange(6.0).reshape(2, 3) / 5, requires_grad=True)
    f = lambda x, W: cad.tanh(W @ x) * cad.sin(x[:2])  # noqa: E731
    assert gradcheck(f, (x, W), modes=("fwd", "rev"), order=2)
    assert gradgradcheck(f, (x, W))
    with pytest.raises(ValueError, match="mode"):
        gradcheck(f, (x, W), modes=("sideways",))


def test_transforms_of_tracked_inputs_are_differentiable():
    w = cad.tensor([1.0, 2.0], requires_grad=True)
    g = cad.grad(lambda x: (w * x * x).sum())(cad.tensor([3.0, 4.0]))   # = 2 w x
    assert g.tolist() == [6.0, 16.0] and g.requires_grad
    g.sum().backward()
    assert w.grad.tolist() == [6.0, 8.0]


def test_grad_inside_no_grad_still_differentiates():
    with cad.no_grad():
        assert cad.grad(lambda x: x * x)(3.0).item() == 6.0


def test_jacrev_structured_seed_matches_jacfwd():
    # jacrev seeds with the diagonal of the output basis and keeps it diagonal through
    # elementwise ops, identity views and matrix-vector products; every mix of kept and
    # densified paths must agree with forward mode
    rng = np.random.default_rng(3)
    A = cad.tensor(rng.standard_normal((4, 3)))
    B = cad.tensor(rng.standard_normal((3, 5)))
    fs = [
        lambda x: cad.tanh(A @ x) * 2.0 - x.sum(),
        lambda x: cad.sin(x @ B) + (x @ B) ** 2,
        lambda x: cad.exp(x) + x * x,                      # a value used twice
        lambda x: x,                                       # identity
        lambda x: cad.reshape(cad.sin(x), (3, 1))[:, 0] + x,
        lambda x: cad.stack([x, cad.cos(x)]),              # densified through concat
        lambda x: A @ cad.tanh(x) + 0.0 * (A @ x).sum(),
        lambda x: (x @ B).sum() * x,                       # broadcast in an ew op
    ]
    x = cad.tensor(rng.standard_normal(3))
    for f in fs:
        jr, jf = cad.jacrev(f)(x), cad.jacfwd(f)(x)
        # oracle without structured seeds: one dense jvp per basis direction
        cols = [cad.jvp(f, (x,), (cad.tensor(np.eye(3)[k]),))[1].numpy() for k in range(3)]
        ref = np.stack(cols, axis=-1)
        assert jr.shape == jf.shape == ref.shape
        np.testing.assert_allclose(jr.numpy(), ref, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(jf.numpy(), ref, rtol=1e-12, atol=1e-12)
    h = cad.hessian(lambda x: (cad.tanh(A @ x) ** 2).sum())(x)
    hf = cad.jacfwd(cad.jacfwd(lambda x: (cad.tanh(A @ x) ** 2).sum()))(x)
    np.testing.assert_allclose(h.numpy(), hf.numpy(), rtol=1e-10, atol=1e-12)
    z = cad.tensor(np.zeros((0,)))
    assert cad.jacrev(cad.sin)(z).shape == (0, 0) and cad.jacfwd(cad.sin)(z).shape == (0, 0)
    assert cad.jacfwd(cad.sin)(cad.tensor(0.5)).shape == ()
    assert cad.jacrev(cad.sin)(cad.tensor(0.5)).shape == ()
