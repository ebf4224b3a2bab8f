"""cumsum and cumprod: the primitives added through the one entry point (bind), their
C sweep kernels (exact with zeros for cumprod), replay, save/load and the rules."""
import numpy as np
import pytest

import cad


def _fd_grad(f, x, eps=1e-6):
    g = np.zeros_like(x)
    for i in range(x.size):
        e = np.zeros_like(x)
        e.flat[i] = eps
        g.flat[i] = (f(x + e) - f(x - e)) / (2 * eps)
    return g


@pytest.mark.parametrize("x", [np.array([2.0, 0.0, 3.0, 0.0, 5.0]), np.array([0.0, 1.5, -2.0]),
                               np.array([1.5, -2.0, 0.0]), np.array([0.7, 1.3, -0.4]),
                               np.array([0.0]), np.array([0.0, 0.0])])
def test_cumprod_gradient_exact_with_zeros(x):
    w = np.random.default_rng(1).normal(size=x.shape)
    f = lambda v: float(np.sum(np.cumprod(v) * w))  # noqa: E731
    t = cad.tensor(x, requires_grad=True)
    (cad.cumprod(t) * w).sum().backward()
    np.testing.assert_allclose(t.grad.numpy(), _fd_grad(f, x), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("axis", [0, 1, 2, -1, None])
def test_cumsum_cumprod_match_numpy_and_fd(axis):
    rng = np.random.default_rng(0)
    x = rng.uniform(0.5, 1.5, size=(2, 3, 4))
    w = rng.normal(size=np.cumsum(x, axis=axis).shape)
    for fn, ref in ((cad.cumsum, np.cumsum), (cad.cumprod, np.cumprod)):
        t = cad.tensor(x, requires_grad=True)
        y = fn(t, axis)
        np.testing.assert_allclose(y.numpy(), ref(x, axis=axis), rtol=1e-13)
        (y * w).sum().backward()
        np.testing.assert_allclose(t.grad.numpy(), _fd_grad(lambda v: float(np.sum(ref(v, axis=axis) * w)), x),
                                   rtol=1e-6, atol=1e-8)


def test_methods_dim_alias_dtypes_and_errors():
    x = cad.tensor([[1.0, 2.0], [3.0, 4.0]])
    np.testing.assert_allclose(x.cumsum(1).numpy(), [[1, 3], [3, 7]])
    np.testing.assert_allclose(cad.cumsum(x, dim=0).numpy(), [[1, 2], [4, 6]])
    assert cad.cumsum(cad.tensor([1, 2, 3])).tolist() == [1, 3, 6]
    assert cad.cumprod(cad.tensor([1.0, 2.0], dtype=cad.float32)).dtype == cad.float32
    assert cad.cumsum(cad.tensor(2.0)).shape == (1,)   # numpy: axis=None flattens
    with pytest.raises(cad.ShapeError, match="cumsum"):
        cad.cumsum(cad.tensor(2.0), axis=0)
    with pytest.raises(ValueError, match="cumsum"):
        cad.cumsum(x, axis=2)


def test_second_order_and_forward_mode():
    x0 = np.array([0.3, -0.7, 1.1])
    f = lambda v: cad.sum(cad.sin(cad.cumsum(v)) * cad.cumprod(v))  # noqa: E731
    fn = lambda v: float(np.sum(np.sin(np.cumsum(v)) * np.cumprod(v)))  # noqa: E731
    g = cad.grad(f)(x0).numpy()
    np.testing.assert_allclose(g, _fd_grad(fn, x0), rtol=1e-6, atol=1e-8)
    H = cad.hessian(f, x0).numpy()
    Hfd = np.stack([_fd_grad(lambda v, i=i: float(cad.grad(f)(v).numpy()[i]), x0) for i in range(3)])
    np.testing.assert_allclose(H, Hfd, rtol=1e-5, atol=1e-7)
    t = np.array([0.2, 0.5, -1.0])
    _, jt = cad.jvp(f, (x0,), (t,))
    np.testing.assert_allclose(float(jt), g @ t, rtol=1e-10)


def test_replay_and_save_load(tmp_path):
    x = cad.tensor([0.5, 2.0, -1.0])
    f = lambda v: cad.sum(cad.cumprod(v) * cad.cumsum(v, reverse=False))  # noqa: E731
    tape = cad.record(f, x)
    x2 = np.array([1.5, 0.0, 2.0])
    ref = cad.grad(f)(x2).numpy()
    np.testing.assert_allclose(tape(x2).item(), f(cad.tensor(x2)).item())
    np.testing.assert_allclose(tape.grad(x2)[0].numpy(), ref, rtol=1e-12)
    p = tmp_path / "scan.cad"
    cad.save(tape, str(p))
    t2 = cad.load(str(p))
    np.testing.assert_allclose(t2.grad(x2)[0].numpy(), ref, rtol=1e-12)
    x3 = np.array([1.5, 0.5, 2.0])   # the differentiable rules of cumprod divide by x
    np.testing.assert_allclose(t2.hessian(x3).numpy(), cad.hessian(f, x3).numpy(), rtol=1e-10)


def test_no_grad_path_does_not_record():
    x = cad.tensor([1.0, 2.0], requires_grad=True)
    with cad.no_grad():
        y = cad.cumsum(x)
    assert not y.requires_grad
    np.testing.assert_allclose(y.numpy(), [1, 3])
