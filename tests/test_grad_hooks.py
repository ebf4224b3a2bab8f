"""Post-accumulate-grad hooks (NOTE [ Gradient hooks ]): a hooked leaf's gradient is
handed over, and its hooks run, as soon as the backward sweep has passed the first
record that reads it; the values equal an ordinary backward."""
import numpy as np
import pytest

import cad


def _net(seed=0):
    rng = np.random.default_rng(seed)
    W1 = cad.tensor(rng.standard_normal((3, 4)), requires_grad=True)
    W2 = cad.tensor(rng.standard_normal((4, 2)), requires_grad=True)
    b = cad.tensor(rng.standard_normal(2), requires_grad=True)
    x = cad.tensor(rng.standard_normal((5, 3)))
    return W1, W2, b, x


def loss(W1, W2, b, x):
    return (cad.tanh(cad.tanh(x @ W1) @ W2 + b) ** 2).sum()


def test_hooks_run_in_reverse_use_order_with_final_gradients():
    W1, W2, b, x = _net()
    ref = cad.autograd.grad(loss(W1, W2, b, x), (W1, W2, b))
    seen = []
    for name, p in (("W1", W1), ("W2", W2), ("b", b)):
        p.register_post_accumulate_grad_hook(lambda t, name=name: seen.append((name, np.asarray(t.grad).copy())))
    loss(W1, W2, b, x).backward()
    assert [n for n, _ in seen] == ["b", "W2", "W1"]   # last used first
    for (n, g), r in zip(sorted(seen), sorted(zip(("W1", "W2", "b"), ref))):
        np.testing.assert_array_equal(g, np.asarray(r[1]))
    for p, r in zip((W1, W2, b), ref):
        np.testing.assert_array_equal(np.asarray(p.grad), np.asarray(r))


def test_hooks_fire_before_the_sweep_ends():
    """W2's hook sees W1's gradient not yet handed over (the sweep is still running)"""
    W1, W2, b, x = _net(1)
    state = {}
    W2.register_post_accumulate_grad_hook(lambda t: state.setdefault("W1 grad then", W1.grad))
    W1.register_post_accumulate_grad_hook(lambda t: None)
    loss(W1, W2, b, x).backward()
    assert state["W1 grad then"] is None and W1.grad is not None


def test_accumulates_and_remove():
    W1, W2, b, x = _net(2)
    calls = []
    h = W1.register_post_accumulate_grad_hook(lambda t: calls.append(1))
    loss(W1, W2, b, x).backward()
    g1 = np.asarray(W1.grad).copy()
    loss(W1, W2, b, x).backward()
    np.testing.assert_allclose(np.asarray(W1.grad), 2 * g1)
    assert len(calls) == 2
    h.remove()
    h.remove()
    loss(W1, W2, b, x).backward()
    assert len(calls) == 2


def test_scalar_code_and_leaf_used_twice():
    x = cad.tensor(0.7, requires_grad=True)
    got = []
    x.register_post_accumulate_grad_hook(lambda t: got.append(float(t.grad)))
    y = x * x
    for _ in range(10):
        y = cad.sin(y) + x
    y.backward()
    x2 = cad.tensor(0.7, requires_grad=True)
    y2 = x2 * x2
    for _ in range(10):
        y2 = cad.sin(y2) + x2
    (g,) = cad.autograd.grad(y2, (x2,))
    assert got == [float(g)] and float(x.grad) == float(g)


def test_errors():
    W1, W2, b, x = _net(3)
    with pytest.raises(TypeError, match="callable"):
        W1.register_post_accumulate_grad_hook(3)
    with pytest.raises(cad.BackwardError, match="not a leaf"):
        (W1 * 2).register_post_accumulate_grad_hook(lambda t: None)

    def boom(t):
        raise RuntimeError("hook failed")
    W2.register_post_accumulate_grad_hook(boom)
    with pytest.raises(RuntimeError, match="hook failed"):
        loss(W1, W2, b, x).backward()
    # the tape is not left busy: another backward runs
    W1b, W2b, bb, xb = _net(3)
    loss(W1b, W2b, bb, xb).backward()
    assert W2b.grad is not None


def test_named_leaf():
    W = cad.randn(3, 2, names=("in", "out"), requires_grad=True)
    got = []
    W.register_post_accumulate_grad_hook(lambda t: got.append(t.grad.names))
    (cad.ones(4, 3, names=("batch", "in")) @ W).sum().backward()
    assert got == [("in", "out")]


def test_a_hook_keeps_its_tensor_alive_until_removed():
    import sys
    W = cad.ones(3, requires_grad=True)
    rc = sys.getrefcount(W)
    h1 = W.register_post_accumulate_grad_hook(lambda t: None)
    h2 = W.register_post_accumulate_grad_hook(lambda t: None)
    assert sys.getrefcount(W) == rc + 1
    h1.remove()
    assert sys.getrefcount(W) == rc + 1
    h2.remove()
    assert sys.getrefcount(W) == rc
