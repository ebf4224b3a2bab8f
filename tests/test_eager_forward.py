"""NOTE [ One forward per primitive ] (cad/_core/tape.pxi): every primitive's eager
value comes from its record's forward kernel, the C function a replay runs.  These
check the inputs that kernel path has to describe (strided views, broadcast values,
0-d positions, more inputs than the stack record holds, float32) against numpy, and
that eager and replayed values are bitwise equal (their gradients to rounding)."""
import threading

import numpy as np
import pytest

import cad


def _rng():
    return np.random.default_rng(7)


def test_concatenate_of_many_tensors_and_views():
    r = _rng()
    parts = [r.standard_normal((2, 3)) for _ in range(11)] + [r.standard_normal((3, 2)).T]
    got = cad.concatenate([cad.tensor(p) for p in parts], axis=0)
    np.testing.assert_array_equal(got.numpy(), np.concatenate(parts, axis=0))
    w = r.standard_normal((24, 3))
    g = cad.grad(lambda *xs: cad.sum(cad.concatenate(xs, axis=0) * w), argnums=tuple(range(12)))(*parts)
    for k, gk in enumerate(g):
        np.testing.assert_array_equal(gk.numpy(), w[2 * k:2 * k + 2])


def test_gather_scatter_of_strided_values():
    r = _rng()
    a = r.standard_normal((5, 4))
    x = cad.tensor(a).T                       # (4, 5), not contiguous
    np.testing.assert_array_equal(x[[0, 2, 2]].numpy(), a.T[[0, 2, 2]])
    np.testing.assert_array_equal(x[:, [4, 0]].numpy(), a.T[:, [4, 0]])
    g = cad.grad(lambda x: cad.sum(x.T[[1, 1, 3]] ** 2))(a)   # the vjp: a scatter with repeats
    want = np.zeros_like(a)
    for i in (1, 1, 3):                        # rows of x.T = columns of a
        want[:, i] += 2 * a[:, i]
    np.testing.assert_allclose(g.numpy(), want, rtol=0, atol=0)


def test_setitem_broadcast_value_repeated_positions_and_0d():
    a = np.arange(12.0).reshape(3, 4)
    y = cad.tensor(a) * 1.0
    y[:, 1] = 7.0                              # a 0-d value broadcast
    y[[0, 0], [2, 2]] = cad.tensor([5.0, 6.0])  # repeated positions: the last write wins (numpy)
    want = a.copy()
    want[:, 1] = 7.0
    want[[0, 0], [2, 2]] = [5.0, 6.0]
    np.testing.assert_array_equal(y.numpy(), want)
    z = cad.tensor(np.arange(4.0)) * 1.0
    z[1] = cad.tensor(9.0)                     # 0-d positions
    np.testing.assert_array_equal(z.numpy(), [0.0, 9.0, 2.0, 3.0])
    zi = cad.tensor(np.arange(4))
    zi[2] = 11                                 # an integer target
    np.testing.assert_array_equal(zi.numpy(), [0, 1, 11, 3])


def test_reductions_matmul_cast_of_views_and_float32():
    r = _rng()
    a = r.standard_normal((6, 5, 4))
    v = cad.tensor(a)[::2, :, 1:]              # strided
    np.testing.assert_allclose(cad.sum(v, axis=(0, 2)).numpy(), a[::2, :, 1:].sum(axis=(0, 2)), rtol=1e-14)
    np.testing.assert_array_equal(cad.max(v, axis=1).numpy(), a[::2, :, 1:].max(axis=1))
    assert float(cad.sum(v)) == pytest.approx(a[::2, :, 1:].sum(), rel=1e-13)
    m = r.standard_normal((5, 3))
    np.testing.assert_allclose((cad.tensor(m).T @ cad.tensor(m)).numpy(), m.T @ m, rtol=1e-13)
    np.testing.assert_allclose((cad.tensor(a)[:, :, 0] @ cad.tensor(m)[:, 0]).numpy(), a[:, :, 0] @ m[:, 0],
                               rtol=1e-13)
    f = cad.astype(v, "float32")
    assert f.dtype == np.float32
    np.testing.assert_array_equal(f.numpy(), a[::2, :, 1:].astype(np.float32))
    back = cad.astype(f, "float64")
    np.testing.assert_array_equal(back.numpy(), a[::2, :, 1:].astype(np.float32).astype(np.float64))
    np.testing.assert_allclose(cad.sum(f, axis=0).numpy(), a[::2, :, 1:].astype(np.float32).sum(axis=0),
                               rtol=1e-6)


def test_eager_and_replay_values_agree_bitwise():
    r = _rng()
    A = r.standard_normal((4, 6))
    idx = np.array([3, 0, 0, 5])

    def f(x):
        y = x * 1.0
        y[1, [0, 2]] = cad.sum(x, axis=1)[:2]
        c = cad.concatenate([y, x[:, ::-1]], axis=1)
        g = c[:, idx]
        return cad.sum(c.T @ g, axis=0) * cad.astype(cad.astype(g[0], "float32"), "float64")

    eager = f(cad.tensor(A)).numpy()
    np.testing.assert_array_equal(cad.record(f, A)(A).numpy(), eager)
    loss = lambda x: cad.sum(f(x))   # noqa: E731
    ge = cad.grad(loss)(A).numpy()
    # (the replayed backward may add a value's cotangents in another order)
    np.testing.assert_allclose(cad.record(loss, A).grad(A)[0].numpy(), ge, rtol=1e-14, atol=1e-14)


def test_threads_run_the_stack_records_independently():
    r = _rng()
    mats = [r.standard_normal((8, 8)) for _ in range(4)]
    want = [np.sum(m @ m, axis=0) for m in mats]
    out = [None] * 4
    errs = []

    def work(k):
        try:
            t = cad.tensor(mats[k])
            for _ in range(200):
                out[k] = cad.sum(t @ t, axis=0).numpy()
        except Exception as e:   # pragma: no cover (reported below)
            errs.append(e)

    th = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in th:
        t.start()
    for t in th:
        t.join()
    assert not errs
    for k in range(4):
        np.testing.assert_allclose(out[k], want[k], rtol=1e-13)
