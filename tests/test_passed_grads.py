"""NOTE [ Passed-on gradients ] (sweep.c): add's (and sub's first input's) cotangent
handed to the last input that takes it as the output's own buffer, not a copy.  Every
case against numpy's closed form or finite differences: both inputs one tensor, a
broadcast input, an output whose gradient the caller keeps (autograd.grad of an
intermediate), retain_graph and a second backward, leaf hooks, replays, threads."""
import numpy as np
import pytest

import cad

from _numeric import fd_grad, in_threads

rng = np.random.default_rng(21)


def _t(a):
    return cad.tensor(a, requires_grad=True)


def _passed():
    return cad._core._engine._passed_grads()


@pytest.mark.parametrize("op", ["add", "sub"])
@pytest.mark.parametrize("shape", [(5,), (4, 3), (2, 3, 4), (0, 3)])
def test_add_sub_both_inputs(op, shape):
    A, B = rng.standard_normal(shape), rng.standard_normal(shape)
    a, b = _t(A), _t(B)
    f = (lambda a, b: a + b) if op == "add" else (lambda a, b: a - b)
    y = f(cad.sin(a), cad.exp(b))
    n0 = _passed()
    (cad.sum(y * y)).backward()
    # add: its second input takes the buffer (the first reads it before); sub: its
    # first would, but the second reads the buffer after it (a copy then)
    if op == "add" and 0 not in shape:
        assert _passed() == n0 + 1
    Y = f(np.sin(A), np.exp(B))
    np.testing.assert_allclose(np.asarray(a.grad), 2 * Y * np.cos(A), rtol=1e-13, atol=1e-14)
    sign = 1.0 if op == "add" else -1.0
    np.testing.assert_allclose(np.asarray(b.grad), sign * 2 * Y * np.exp(B), rtol=1e-13, atol=1e-14)


def test_one_tensor_twice_and_chains():
    A = rng.standard_normal((6, 4))
    a = _t(A)
    u = cad.tanh(a)
    y = (u + u) + (u - a) + (a + 1.0)
    cad.sum(y * 3.0).backward()
    want = 3.0 * (2 * (1 - np.tanh(A) ** 2) + (1 - np.tanh(A) ** 2) - 1.0 + 1.0)
    np.testing.assert_allclose(np.asarray(a.grad), want, rtol=1e-13, atol=1e-14)


def test_broadcast_input_and_dtypes():
    A = rng.standard_normal((5, 3))
    B = rng.standard_normal(3)
    a, b = _t(A), _t(B)
    cad.sum(cad.sin(a + b)).backward()   # b broadcast: its gradient is a sum, no pass
    np.testing.assert_allclose(np.asarray(a.grad), np.cos(A + B), rtol=1e-13)
    np.testing.assert_allclose(np.asarray(b.grad), np.cos(A + B).sum(0), rtol=1e-13)
    a32 = _t(A.astype(np.float32))
    c = _t(A)
    cad.sum((a32 + c) ** 2).backward()   # float32 + float64: the output is float64
    np.testing.assert_allclose(np.asarray(c.grad), 2 * (A.astype(np.float32) + A), rtol=1e-6)
    assert np.asarray(a32.grad).dtype == np.float32


def test_kept_output_gradient():
    """autograd.grad of an add's output and of its inputs: the output's gradient is
    kept (returned), so it is not passed on"""
    A, B = rng.standard_normal(4), rng.standard_normal(4)
    a, b = _t(A), _t(B)
    s = cad.sin(a) + cad.cos(b)
    loss = cad.sum(cad.exp(s))
    n0 = _passed()
    gs, ga, gb = cad.autograd.grad(loss, (s, a, b))
    assert _passed() == n0   # s's gradient is returned: kept, so copied
    S = np.sin(A) + np.cos(B)
    np.testing.assert_allclose(np.asarray(gs), np.exp(S), rtol=1e-13)
    np.testing.assert_allclose(np.asarray(ga), np.exp(S) * np.cos(A), rtol=1e-13)
    np.testing.assert_allclose(np.asarray(gb), -np.exp(S) * np.sin(B), rtol=1e-13)


def test_retain_graph_twice_and_hooks():
    A, B = rng.standard_normal((3, 3)), rng.standard_normal((3, 3))
    a, b = _t(A), _t(B)
    seen = []
    a.register_post_accumulate_grad_hook(lambda t: seen.append(np.asarray(t.grad).copy()))
    loss = cad.sum((cad.sin(a) + b * 2.0) ** 2)
    loss.backward(retain_graph=True)
    g1a, g1b = np.asarray(a.grad).copy(), np.asarray(b.grad).copy()
    loss.backward()
    Y = np.sin(A) + 2 * B
    np.testing.assert_allclose(g1a, 2 * Y * np.cos(A), rtol=1e-13)
    np.testing.assert_allclose(g1b, 4 * Y, rtol=1e-13)
    np.testing.assert_allclose(np.asarray(a.grad), 2 * g1a, rtol=1e-13)
    np.testing.assert_allclose(np.asarray(b.grad), 2 * g1b, rtol=1e-13)
    assert len(seen) == 2


def test_replayed_and_second_order():
    W = rng.standard_normal((4, 4))

    def f(x, y):
        z = cad.tanh(x @ W) + y
        return cad.sum((z - x) ** 2 + z)
    X, Y = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    tape = cad.record(f, X, Y)
    for _ in range(3):
        X, Y = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
        gx, gy = tape.grad(X, Y, argnums=(0, 1))
        ex, ey = cad.grad(f, argnums=(0, 1))(X, Y)
        np.testing.assert_allclose(np.asarray(gx), np.asarray(ex), rtol=1e-13)
        np.testing.assert_allclose(np.asarray(gy), np.asarray(ey), rtol=1e-13)
        np.testing.assert_allclose(np.asarray(gy),
                                   fd_grad(lambda v: float(np.asarray(f(cad.tensor(X), cad.tensor(v)))), Y),
                                   rtol=1e-6, atol=1e-8)
    h = cad.hessian(lambda y: f(cad.tensor(X), y))(Y.ravel().reshape(3, 4))
    assert h.shape == (3, 4, 3, 4)


def test_threads():
    As = [rng.standard_normal((50, 20)) for _ in range(4)]

    def work(k):
        for _ in range(30):
            a, b = _t(As[k]), _t(As[k] * 2.0)
            cad.sum(cad.sin(a + b) + (a - b)).backward()
            c = np.cos(3 * As[k])
            np.testing.assert_allclose(np.asarray(a.grad), c + 1.0, rtol=1e-13, atol=1e-15)
            np.testing.assert_allclose(np.asarray(b.grad), c - 1.0, rtol=1e-13, atol=1e-15)
    in_threads(work)


@pytest.mark.parametrize("op", ["remainder", "fmod"])
def test_other_unit_partials(op):
    """the op table's unit partials (cad_unit_partials), not a list of ops: remainder's
    and fmod's first input (partial 1) takes the buffer when the second is a constant"""
    A = rng.uniform(0.5, 3.0, (4, 5))
    a = _t(A)
    f = getattr(cad, op)
    n0 = _passed()
    cad.sum(f(cad.exp(a), 1.5) * 2.0).backward()
    assert _passed() == n0 + 1
    np.testing.assert_allclose(np.asarray(a.grad), 2.0 * np.exp(A), rtol=1e-13)
