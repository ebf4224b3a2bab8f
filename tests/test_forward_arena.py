"""NOTE [ Forward-only arena ] (replay.pxi): a forward-only replay packs its values by
liveness into fewer bytes of the arena; gradient replays and the Python sweeps keep
one slot per value.  Every case against the eager function: chains whose slots are
reused, views of freed values, outputs that are views, repeated outputs, dead values,
guards, forward and gradient replays alternating, tape.jacobian/hessian (which read
every value), concurrent replays (a private arena), many shapes."""
import numpy as np
import pytest

import cad

from cad.record import ReplayError

from _numeric import in_threads

rng = np.random.default_rng(41)


def _close(a, b, tol=1e-12):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=tol, atol=tol)


def chain(x, y):
    a = cad.sin(x) * y
    b = cad.exp(a * 0.1) + x
    c = b * b - a          # a's last reader: its slot is free after this
    d = cad.tanh(c[:, 1:3]) * 2.0   # a view of c, read after c's own last use
    e = cad.sum(d, axis=1, keepdims=True) + c[:, 0:1]
    return e * y[:, 0:1] + 1.0


CASES = {
    "chain": (chain, [(50, 4), (50, 4)]),
    "outputs are views and repeated": (lambda x, y: ((x * y).T, cad.exp(x) + y, (x * y).T), [(6, 5), (6, 5)]),
    "dead values": (lambda x, y: (cad.cos(x) * 3.0, x * y)[1] + 0.5, [(7,), (7,)]),
    "long chain": (lambda x, y: _long(x, y), [(30, 3), (30, 3)]),
    "mixed sizes": (lambda x, y: cad.sum(cad.exp(x[:, None, :] * y[None, :, :]), axis=1) + x * 2.0,
                    [(9, 4), (9, 4)]),
    "matmul and reductions": (lambda x, y: cad.tanh(x @ y.T) @ y - cad.max(x, axis=0), [(8, 5), (8, 5)]),
}


def _long(x, y):
    v = x
    for k in range(25):
        v = cad.sin(v) * y + float(k) * 0.01
    return v


@pytest.mark.parametrize("name", sorted(CASES))
def test_forward_replays_equal_eager_and_alternate_with_gradients(name):
    f, shapes = CASES[name]
    xs0 = [rng.standard_normal(s) for s in shapes]
    tape = cad.record(f, *xs0)
    full, used = tape._replay.arena_bytes
    assert used <= full
    first = (lambda *a: f(*a)[0]) if isinstance(f(*xs0), tuple) else f
    loss = cad.record(lambda *a: cad.sum(first(*a) ** 2), *xs0)
    for _ in range(3):
        xs = [rng.standard_normal(s) for s in shapes]
        got, want = tape(*xs), f(*[cad.tensor(x) for x in xs])
        if not isinstance(want, tuple):
            got, want = (got,), (want,)
        for g, w in zip(got, want):
            _close(g, w)
        # forward and gradient replays of one tape in turn (its slot sets switch)
        lv = cad.sum(first(*[cad.tensor(x) for x in xs]) ** 2)
        _close(loss(*xs), lv, 1e-10)
        g_rep = loss.grad(*xs, argnums=tuple(range(len(xs))))
        g_eag = cad.grad(lambda *a: cad.sum(first(*a) ** 2), argnums=tuple(range(len(xs))))(*xs)
        for a, b in zip(g_rep, g_eag):
            _close(a, b, 1e-10)
        _close(loss(*xs), lv, 1e-10)


def test_the_packed_set_is_smaller_for_a_chain():
    tape = cad.record(chain, rng.standard_normal((1000, 4)), rng.standard_normal((1000, 4)))
    full, used = tape._replay.arena_bytes
    assert used < full * 0.7, (full, used)


def test_outputs_of_successive_forward_replays_are_independent():
    tape = cad.record(chain, np.zeros((20, 4)), np.ones((20, 4)))
    x1, y1 = rng.standard_normal((20, 4)), rng.standard_normal((20, 4))
    x2, y2 = rng.standard_normal((20, 4)), rng.standard_normal((20, 4))
    r1 = tape(x1, y1)
    keep = np.array(r1)
    tape(x2, y2)
    _close(r1, keep, 0)
    _close(r1, chain(cad.tensor(x1), cad.tensor(y1)))


def test_guards_read_after_the_forward():
    """a guard's value (a float() read of s) is checked after the forward: its slot
    lives to the end, and inputs with the same s (signs flipped) pass it"""
    def f(x):
        s = cad.sum(x * x)
        if float(s) > 1.0:
            return cad.exp(x) * 2.0 + s
        return x - 1.0
    x0 = rng.uniform(0.5, 1.0, 5)
    tape = cad.record(f, x0)
    for k in range(4):
        x = x0 * np.where(rng.uniform(size=5) < 0.5, -1.0, 1.0)
        _close(tape(x), f(cad.tensor(x)))
    with pytest.raises(ReplayError):
        tape(x0 * 0.5)


def test_jacobian_hessian_hvp_after_forward_replays():
    W = rng.standard_normal((4, 4))

    def f(x):
        return cad.sum(cad.tanh(cad.tensor(W) @ x) ** 2) + cad.sum(cad.sin(x) * x)
    x0 = rng.standard_normal(4)
    tape = cad.record(f, x0)
    for _ in range(2):
        x = rng.standard_normal(4)
        tape(x)
        _close(tape.hessian(x), cad.hessian(f)(cad.tensor(x)), 1e-10)
        tape(x)
        _close(tape.hvp(x, np.ones(4)), cad.hvp(f, cad.tensor(x), cad.tensor(np.ones(4))), 1e-10)
        _close(tape.grad(x)[0], cad.grad(f)(cad.tensor(x)), 1e-12)
    g = cad.record(lambda x: cad.tanh(cad.tensor(W) @ x) * x, x0)
    g(x0)
    _close(g.jacobian(x0), cad.jacrev(lambda x: cad.tanh(cad.tensor(W) @ x) * x)(cad.tensor(x0)), 1e-12)


def test_threads_replay_forward_and_gradients():
    shapes = [(40, 4), (40, 4)]
    tape = cad.record(chain, *[rng.standard_normal(s) for s in shapes])
    loss = cad.record(lambda x, y: cad.sum(chain(x, y)), *[rng.standard_normal(s) for s in shapes])
    data = [[rng.standard_normal(s) for s in shapes] for _ in range(4)]
    want = [np.asarray(chain(*[cad.tensor(a) for a in d])) for d in data]
    gwant = [cad.grad(lambda x, y: cad.sum(chain(x, y)), argnums=(0, 1))(*d) for d in data]
    loss.grad(*data[0], argnums=(0, 1))

    def work(k):
        for _ in range(40):
            _close(tape(*data[k]), want[k])
            for a, b in zip(loss.grad(*data[k], argnums=(0, 1)), gwant[k]):
                _close(a, b)
    in_threads(work)


def test_many_sizes_alive_and_freed_interleaved():
    """3000 values of 97 sizes alive at once, then freed in an interleaved order: the
    free list is bounded (its smallest blocks dropped) and the values stay right"""
    def f(x):
        keep = [cad.sin(x[: (k % 97) + 1]) * 2.0 for k in range(3000)]
        acc = x[:1] * 0.0
        for k in range(0, 3000, 2):
            acc = acc + cad.sum(keep[k])
        for k in range(1, 3000, 2):
            acc = acc + cad.sum(keep[k] * 3.0)
        return acc
    x0 = np.linspace(0.1, 1, 100)
    tape = cad.record(f, x0)
    full, used = tape._replay.arena_bytes
    assert used < full
    for s in (0.5, 1.5):
        _close(tape(x0 * s), f(cad.tensor(x0 * s)), 1e-11)
