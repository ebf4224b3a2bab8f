"""Small Jacobians by C sweeps (transforms._rows_by_c_sweeps, StaticTape._jacobian_rows):
an output of at most transforms._JAC_ROWS elements gets one first-order C sweep per
element instead of one batched sweep through the rules in Python.  Checked against
the batched path (_JAC_ROWS = 0), jacfwd and finite differences; the recording cases
(closures over tracked values, inside grad) keep the batched, differentiable path."""
import numpy as np
import pytest

import cad
from cad import transforms

rng = np.random.default_rng(15)


def block(p):
    """BA's reprojection block written with arrays: R^15 -> R^2"""
    cam, X = p[:11], p[11:14]
    Y = X - cam[3:6]
    th = cad.sqrt(cad.sum(cam[0:3] * cam[0:3]))
    Z = Y * cad.cos(th) + cad.cross(cam[0:3] / th, Y) * cad.sin(th)
    proj = Z[0:2] / Z[2]
    r2 = cad.sum(proj * proj)
    dist = 1 + cam[9] * r2 + cam[10] * r2 * r2
    return p[14] * (proj * dist * cam[6] + cam[7:9])


def _batched(fn):
    old = transforms._JAC_ROWS
    transforms._JAC_ROWS = 0
    try:
        return fn()
    finally:
        transforms._JAC_ROWS = old


P = rng.uniform(0.1, 1.0, 15)


def _fd(f, x, eps=1e-6):
    x = np.asarray(x, dtype=float)
    cols = []
    for i in range(x.size):
        d = np.zeros_like(x)
        d.flat[i] = eps
        cols.append((np.asarray(f(cad.tensor(x + d))) - np.asarray(f(cad.tensor(x - d)))) / (2 * eps))
    return np.stack(cols, axis=-1).reshape(np.shape(f(cad.tensor(x))) + x.shape)


def test_block_against_batched_jacfwd_and_fd():
    p = cad.tensor(P)
    J = np.asarray(cad.jacrev(block)(p))
    np.testing.assert_allclose(J, np.asarray(_batched(lambda: cad.jacrev(block)(p))), rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(J, np.asarray(cad.jacfwd(block)(p)), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(J, _fd(block, P), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("m", [2, 3, 16, 17])
def test_sizes_shapes_and_several_inputs(m):
    A = rng.standard_normal((m, 4))
    shape = (m,) if m % 2 else (2, m // 2)

    def f(x, s):
        return cad.reshape(cad.tanh(cad.tensor(A) @ x) * s + x[0], shape)
    x, s = cad.tensor(rng.standard_normal(4)), cad.tensor(0.7)
    jx, js = cad.jacrev(f, argnums=(0, 1))(x, s)
    bx, bs = _batched(lambda: cad.jacrev(f, argnums=(0, 1))(x, s))
    assert jx.shape == shape + (4,) and js.shape == shape
    np.testing.assert_allclose(np.asarray(jx), np.asarray(bx), rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(np.asarray(js), np.asarray(bs), rtol=1e-13, atol=1e-15)
    tape = cad.record(f, x, s)
    np.testing.assert_allclose(np.asarray(tape.jacobian(x, s)), np.asarray(jx), rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(np.asarray(tape.jacobian(x, s, argnum=1)), np.asarray(js), rtol=1e-13, atol=1e-15)


def test_pytree_outputs_float32_and_unused_inputs():
    def f(x, y):
        return {"a": cad.sin(x[:3]) * 2.0, "b": (x[0] * x[1], cad.zeros(2) + 1.0)}
    x = cad.tensor(rng.standard_normal(4).astype(np.float32))
    y = cad.tensor(np.float32(1.5))
    J = cad.jacrev(f, argnums=(0, 1))(x, y)
    B = _batched(lambda: cad.jacrev(f, argnums=(0, 1))(x, y))
    for got, exp in [(J["a"][0], B["a"][0]), (J["b"][0][0], B["b"][0][0]), (J["b"][1][0], B["b"][1][0]),
                     (J["a"][1], B["a"][1])]:
        assert got.dtype == exp.dtype and got.shape == exp.shape
        np.testing.assert_allclose(np.asarray(got), np.asarray(exp), rtol=1e-6)
    assert not np.any(np.asarray(J["b"][1][0])) and not np.any(np.asarray(J["a"][1]))


def test_recording_cases_stay_differentiable():
    # jacrev inside grad: the rows must be differentiable (the batched, recording path)
    A = rng.standard_normal((3, 3))

    def inner(x, w):
        return cad.jacrev(lambda z: cad.tanh(cad.tensor(A) @ z) * w)(x)
    x = cad.tensor(rng.standard_normal(3))
    g = cad.grad(lambda w: cad.sum(inner(x, w)))(cad.tensor(0.8))
    eps = 1e-6
    fd = (float(cad.sum(inner(x, cad.tensor(0.8 + eps)))) - float(cad.sum(inner(x, cad.tensor(0.8 - eps))))) / (2 * eps)
    np.testing.assert_allclose(float(g), fd, rtol=1e-6)
    # a closure over a tracked value
    h = cad.grad(lambda w: cad.sum(cad.jacrev(lambda z: z * z * w)(cad.tensor([1.0, 2.0]))))(cad.tensor(3.0))
    np.testing.assert_allclose(float(h), 2 * (1.0 + 2.0))


def test_tape_jacobian_errors_and_constant_output():
    tape = cad.record(lambda x: x[:2] * 0.0 + 1.0, cad.tensor(np.ones(3)))
    np.testing.assert_array_equal(np.asarray(tape.jacobian(cad.tensor(np.ones(3)))), np.zeros((2, 3)))
    t2 = cad.record(lambda x: cad.sin(x[:2]), cad.tensor(np.ones(3)))
    with pytest.raises(cad.ShapeError):
        t2.jacobian(cad.tensor(np.ones(4)))
    np.testing.assert_allclose(np.asarray(t2.jacobian(cad.tensor(np.full(3, 0.5)))),
                               np.hstack([np.diag(np.cos([0.5, 0.5])), np.zeros((2, 1))]))


def test_tape_jacobian_on_the_device(cuda_or_fake):
    A = rng.standard_normal((3, 4))
    f = lambda x: cad.tanh(cad.tensor(A).to("cuda") @ x)
    x = cad.tensor(rng.standard_normal(4)).to("cuda")
    tape = cad.record(f, x)
    J = tape.jacobian(x)
    assert J.is_cuda
    np.testing.assert_allclose(np.asarray(J.cpu()), np.asarray(cad.jacrev(f)(x).cpu()), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(J.cpu()), _batched(lambda: np.asarray(cad.jacrev(f)(x).cpu())), rtol=1e-12)
