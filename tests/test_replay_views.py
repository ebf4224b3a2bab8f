"""Replayed views stay views (NOTE [ Views in replay ] in replay.pxi) and replayed
outputs are written straight into new arrays: values and gradients equal eager ones for
slices, transposes, broadcasts, chains of views, views read by readers that need
contiguous values, outputs that are views or repeated; outputs of successive replays
are independent; threads replaying one tape."""
import numpy as np
import pytest

import cad

from _numeric import in_threads

RNG = np.random.default_rng(14)


def _close(a, b, tol=1e-12):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=tol, atol=tol)


def _check(f, *shapes, argnums=None):
    """tape(f) equals f on fresh inputs, three times; tape.grad of a weighted sum of
    the first output equals cad.grad's"""
    xs0 = [RNG.standard_normal(s) for s in shapes]
    tape = cad.record(f, *xs0)
    for _ in range(3):
        xs = [RNG.standard_normal(s) for s in shapes]
        got, want = tape(*xs), f(*[cad.tensor(x) for x in xs])
        if not isinstance(want, tuple):
            got, want = (got,), (want,)
        for g, w in zip(got, want):
            assert g.shape == w.shape
            _close(g, w)
    first = (lambda *a: f(*a)[0]) if isinstance(want, tuple) and len(want) > 1 else f
    w = RNG.standard_normal(first(*[cad.tensor(x) for x in xs0]).shape)
    loss = lambda *a: cad.sum(first(*a) * w)  # noqa: E731
    lt = cad.record(loss, *xs0)
    xs = [RNG.standard_normal(s) for s in shapes]
    nums = tuple(range(len(shapes))) if argnums is None else argnums
    g_rep = lt.grad(*xs, argnums=nums)
    g_eag = cad.grad(loss, argnums=nums)(*xs)
    if not isinstance(g_eag, tuple):
        g_eag = (g_eag,)
    for a, b in zip(g_rep, g_eag):
        _close(a, b)
    return tape


CASES = {
    "transpose": (lambda a: a.T * 2.0 + 1.0, [(3, 4)]),
    "column slice": (lambda a, b: a[:, 1:3] * b, [(5, 4), (5, 2)]),
    "step slice": (lambda a: cad.exp(a[::2, ::-1]), [(6, 3)]),
    "slice of a transpose": (lambda a: a.T[1:3] * 3.0, [(3, 4)]),
    "transpose of a slice": (lambda a: a[1:3].T - 1.0, [(4, 5)]),
    "three views": (lambda a: a.T[1:3][:, ::2] * a[0, 0], [(5, 4)]),
    "broadcast into matmul": (lambda a, b: cad.matmul(cad.broadcast_to(a, (7, 3, 4)), b), [(3, 4), (7, 4, 2)]),
    "shared weight (vmap)": (lambda W, x: cad.vmap(lambda xi: cad.tanh(xi @ W), in_dims=0)(x), [(4, 3), (6, 4)]),
    "transposed matmul": (lambda a, b: a.T @ b[:, 1:], [(4, 3), (4, 5)]),
    "reduce a view": (lambda a: cad.sum(a.T[:, 1:], axis=0) + cad.max(a[:, ::2], axis=1).sum(), [(5, 4)]),
    "concatenate views": (lambda a: cad.concatenate([a.T, a[:3].T * 2.0], axis=1), [(4, 3)]),
    "cast a view": (lambda a: a.T.astype(cad.float32).astype(cad.float64) * a.T, [(3, 2)]),
    "cumsum of a view (copied)": (lambda a: cad.cumsum(a[:, ::2], axis=1), [(3, 6)]),
    "cumprod of a strided view": (lambda a: cad.cumprod(a[::2], axis=0), [(6,)]),
    "gather from a view (copied)": (lambda a: a.T[np.array([2, 0, 1])], [(2, 3)]),
    "setitem into a view": (lambda a, v: _setitem(a.T, v), [(3, 4), (3,)]),
    "output is a view": (lambda a: (a * 2.0).T, [(3, 5)]),
    "output is an input's view": (lambda a: a[1:], [(4, 2)]),
    "output is a slice": (lambda a: (a * 2.0)[1:], [(4, 3)]),
    "output is flipped": (lambda a: (a * 2.0)[::-1, ::-1], [(4, 3)]),
    "output and its transpose": (lambda a: (cad.exp(a), cad.exp(a).T, (a + 1.0).T.T), [(3, 4)]),
    "record and its view both outputs": (lambda a: _both(a), [(2, 5)]),
    "outputs repeated": (lambda a: (cad.sin(a), a[:, 0] + 1.0, cad.sin(a)), [(3, 2)]),
    "size 0": (lambda a: a[:, :0] * 2.0, [(3, 4)]),
    "0-d read": (lambda a: a[1, 2] * a.T, [(3, 4)]),
}


def _both(a):
    y = cad.sin(a) * 2.0
    return y.T, y, y.reshape((5, 2))


def _setitem(x, v):
    y = x * 1.0
    y[1] = v
    return y


@pytest.mark.parametrize("name", sorted(CASES))
def test_replay_with_views_equals_eager(name):
    f, shapes = CASES[name]
    _check(f, *shapes)


def test_outputs_of_successive_replays_are_independent():
    tape = cad.record(lambda a: (cad.exp(a), a.T * 2.0), np.zeros((3, 4)))
    x1, x2 = RNG.standard_normal((3, 4)), RNG.standard_normal((3, 4))
    r1 = tape(x1)
    keep = [np.array(r) for r in r1]
    r2 = tape(x2)
    for a, b in zip(r1, keep):
        _close(a, b, 0)
    _close(r2[0], np.exp(x2))
    r3 = tape(x1)
    _close(r2[0], np.exp(x2))        # a third replay leaves the second's outputs alone
    _close(r3[1], x1.T * 2.0)


def test_replayed_broadcast_reaches_matmul_without_a_copy():
    # W8's shape: a shared parameter broadcast over a batch by vmap feeds a matmul
    W = RNG.standard_normal((16, 16))
    x = RNG.standard_normal((1000, 16))
    f = cad.vmap(lambda W, xi: cad.tanh(xi @ W), in_dims=(None, 0))
    tape = cad.record(f, W, x)
    _close(tape(W, x), np.tanh(x @ W))
    assert "view" in str(tape)


def test_threads_replay_a_tape_with_views():
    W = RNG.standard_normal((30, 20))
    f = lambda W, x: cad.sum(cad.tanh(x @ W.T[:, 10:]) * x[:, ::-1].T.T)  # noqa: E731
    x0 = RNG.standard_normal((50, 20))
    tape = cad.record(f, W, x0)
    xs = [RNG.standard_normal((50, 20)) for _ in range(4)]
    want = [cad.grad(f, argnums=(0, 1))(W, x) for x in xs]
    tape.grad(W, xs[0], argnums=(0, 1))   # concurrent replays share the argnums set first

    def work(k):
        for _ in range(30):
            g = tape.grad(W, xs[k], argnums=(0, 1))
            for a, b in zip(g, want[k]):
                _close(a, b)
            _close(tape(W, xs[k]), f(cad.tensor(W), cad.tensor(xs[k])))
    in_threads(work)


def test_jacobian_hessian_hvp_of_a_tape_with_views():
    W = RNG.standard_normal((4, 6))
    f = lambda x: cad.sum(cad.tanh(W.T[1:] @ x[::-1]) ** 2) + cad.sum(x[:2] ** 3)  # noqa: E731
    x0 = RNG.standard_normal(4)
    tape = cad.record(f, x0)
    x = RNG.standard_normal(4)
    _close(tape.hessian(x), cad.hessian(f)(x), 1e-10)
    v = RNG.standard_normal(4)
    _close(tape.hvp(x, v), cad.hessian(f)(x).numpy() @ v, 1e-10)
    g = lambda x: cad.tanh(W.T[1:] @ x[::-1])  # noqa: E731
    tg = cad.record(g, x0)
    _close(tg.jacobian(x), cad.jacrev(g)(x), 1e-10)


def test_view_outputs_are_views_of_new_arrays():
    """an output that is a transpose of a computed record: the record writes into a
    new array and the output views it (no strided copy out of the arena), a new
    array per call; a record and its view both returned share one array, as eagerly"""
    tape = cad.record(lambda a: (a * 2.0).T, np.zeros((3, 5)))
    x1, x2 = RNG.standard_normal((3, 5)), RNG.standard_normal((3, 5))
    r1 = np.asarray(tape(x1))
    assert r1.shape == (5, 3) and not r1.flags["C_CONTIGUOUS"] and r1.flags["F_CONTIGUOUS"]
    r2 = np.asarray(tape(x2))
    assert not np.shares_memory(r1, r2)
    _close(r1, (x1 * 2.0).T, 0)
    _close(r2, (x2 * 2.0).T, 0)
    t2 = cad.record(_both, np.zeros((2, 5)))
    a, b, c = (np.asarray(r) for r in t2(x1[:2]))
    assert np.shares_memory(a, b) and np.shares_memory(b, c)
    _close(b, np.sin(x1[:2]) * 2.0)
    _close(a, b.T, 0)
    _close(c, b.reshape(5, 2), 0)


def test_threads_replay_view_outputs():
    tape = cad.record(lambda a: (cad.tanh(a) * 3.0).T, np.zeros((20, 30)))
    xs = [RNG.standard_normal((20, 30)) for _ in range(4)]

    def work(k):
        for _ in range(50):
            _close(tape(xs[k]), (np.tanh(xs[k]) * 3.0).T)
    in_threads(work)
