"""t[ix] for one integer array ix (rows of t: storage.take into cad's block cache, the
recorded positions built by _row_positions): values, errors and gradients as numpy
and finite differences give them, for every dtype, negative and repeated indices,
index arrays of any shape and integer kind, views, 1-d to 3-d t, sizes past the
block cache's threshold (64 KiB), and empty index arrays."""
import numpy as np
import pytest

import cad

rng = np.random.default_rng(5)

SHAPES = [(21, 11), (11315, 3), (7,), (5, 4, 3), (4000, 9)]


def _ix(n, shape=(50,), kind=np.int64):
    if np.dtype(kind).kind == "u":
        return rng.integers(0, n, shape).astype(kind)
    return rng.integers(-n, n, shape).astype(kind)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int64, np.bool_])
def test_values_as_numpy(shape, dtype):
    a = (rng.normal(size=shape) * 10).astype(dtype)
    t = cad.tensor(a)
    for ishape in [(37,), (6, 5), (), (0,), (36455,)]:
        ix = _ix(shape[0], ishape)
        got = t[ix]
        want = a[ix]
        assert got.shape == want.shape and got.dtype == want.dtype
        np.testing.assert_array_equal(np.asarray(got), want)


@pytest.mark.parametrize("kind", [np.int32, np.int64, np.uint8, np.uint64])
def test_index_kinds(kind):
    a = rng.normal(size=(21, 11))
    ix = _ix(21, (40,), kind)
    np.testing.assert_array_equal(np.asarray(cad.tensor(a)[ix]), a[ix])
    t = cad.tensor(a, requires_grad=True)
    cad.sum(t[ix] * 2.0).backward()
    want = np.zeros_like(a)
    np.add.at(want, ix, 2.0)
    np.testing.assert_array_equal(np.asarray(t.grad), want)


def test_views():
    a = rng.normal(size=(300, 40))
    t = cad.tensor(a)
    ix = _ix(40, (500,))
    tt = cad.transpose(t, (1, 0))          # (40, 300), column-major
    np.testing.assert_array_equal(np.asarray(tt[ix]), a.T[ix])
    cs = t[:, 3:9]                          # a column slice: strided rows
    ix2 = _ix(300, (1000,))
    np.testing.assert_array_equal(np.asarray(cs[ix2]), a[:, 3:9][ix2])


@pytest.mark.parametrize("bad", [21, -22, 1000])
def test_out_of_bounds(bad):
    t = cad.tensor(rng.normal(size=(21, 11)))
    ix = np.array([0, 3, bad])
    with pytest.raises(IndexError, match=f"index {bad} is out of bounds for axis 0 with size 21"):
        t[ix]
    tr = cad.tensor(rng.normal(size=(21, 11)), requires_grad=True)
    with pytest.raises(IndexError, match="out of bounds"):
        tr[ix]


@pytest.mark.parametrize("shape", [(21, 11), (11315, 3), (5, 4, 3)])
def test_gradients_repeated_and_negative(shape):
    a = rng.normal(size=shape)
    ix = _ix(shape[0], (36455,) if shape[0] > 100 else (300,))
    w = rng.normal(size=ix.shape + shape[1:])
    t = cad.tensor(a, requires_grad=True)
    y = cad.sum(cad.sin(t[ix]) * w)
    y.backward()
    want = np.zeros_like(a)
    np.add.at(want, ix, np.cos(a[ix]) * w)
    np.testing.assert_allclose(np.asarray(t.grad), want, rtol=1e-12, atol=1e-12)
    assert float(y) == pytest.approx(float(np.sum(np.sin(a[ix]) * w)), rel=1e-12)


def test_fd_and_second_order():
    a = rng.normal(size=(6, 3))
    ix = np.array([0, 5, -1, 2, 2])
    f = lambda x: cad.sum(x[ix] ** 3)
    H = np.asarray(cad.hessian(f, cad.tensor(a)))
    cnt = np.zeros(6)
    np.add.at(cnt, ix % 6, 1)
    want = np.zeros((6, 3, 6, 3))
    for i in range(6):
        for j in range(3):
            want[i, j, i, j] = 6 * a[i, j] * cnt[i]
    np.testing.assert_allclose(H, want, rtol=1e-12, atol=1e-12)
    g = np.asarray(cad.grad(f)(cad.tensor(a)))
    eps = 1e-6
    for i, j in [(0, 0), (5, 2), (2, 1), (3, 0)]:
        e = np.zeros_like(a)
        e[i, j] = eps
        fd = (float(f(cad.tensor(a + e))) - float(f(cad.tensor(a - e)))) / (2 * eps)
        assert g[i, j] == pytest.approx(fd, rel=1e-6, abs=1e-8)


def test_recorded_and_replayed():
    a = rng.normal(size=(21, 11))
    ix = _ix(21, (36455,))
    tape = cad.record(lambda t: cad.sum(t[ix] ** 2), cad.tensor(a))
    b = rng.normal(size=(21, 11))
    want = np.zeros_like(b)
    np.add.at(want, ix, 2 * b[ix])
    g = tape.grad(cad.tensor(b))
    g = g[0] if isinstance(g, tuple) else g
    np.testing.assert_allclose(np.asarray(g), want, rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int64, np.bool_])
@pytest.mark.parametrize("shape", [(21, 11), (11315, 3), (50, 20), (30, 17), (40,), (6, 0), (9, 2, 5)])
def test_c_row_gather_any_index_stride(dtype, shape):
    """NOTE [ Row gathers ] (kernels.c): a 1-D int64 index of any stride (a column of
    BA's (p, 2) observations, a reversed view) through the C loop, rows of up to 16
    words inline and longer or odd-sized rows by memcpy, as numpy gives them"""
    a = (rng.normal(size=shape) * 10).astype(dtype)
    t = cad.tensor(a)
    n = shape[0]
    obs = np.stack([rng.integers(-n, n, 5000), rng.integers(-n, n, 5000)], 1)   # int64, (p, 2)
    for ix in (obs[:, 1], obs[:, 0], obs[::-1, 0], obs[::3, 1], obs[:0, 0]):
        got = t[ix]
        want = a[ix]
        assert got.shape == want.shape and got.dtype == want.dtype
        np.testing.assert_array_equal(np.asarray(got), want)


def test_c_row_gather_reports_the_first_bad_index():
    t = cad.tensor(rng.normal(size=(21, 11)))
    obs = np.array([[0, 3], [1, 40], [2, -30], [3, 2]])
    with pytest.raises(IndexError, match="index 40 is out of bounds for axis 0 with size 21"):
        t[obs[:, 1]]
    with pytest.raises(IndexError, match="index 0 is out of bounds for axis 0 with size 0"):
        cad.tensor(np.zeros((0, 3)))[np.array([0, 1])]
    big = np.concatenate([rng.integers(0, 21, 100000), [-22]])   # (the loop without the GIL)
    with pytest.raises(IndexError, match="index -22 is out of bounds"):
        t[big]


def test_c_row_gather_gradients_through_a_strided_index():
    a = rng.normal(size=(21, 11))
    obs = np.stack([rng.integers(-21, 21, 300), rng.integers(0, 21, 300)], 1)
    t = cad.tensor(a, requires_grad=True)
    cad.sum(t[obs[:, 0]] * 3.0).backward()
    want = np.zeros_like(a)
    np.add.at(want, obs[:, 0], 3.0)
    np.testing.assert_array_equal(np.asarray(t.grad), want)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", [(21, 11), (11315, 3), (5, 4, 3), (30, 17), (40,), (6, 1)])
def test_recorded_row_gathers_replay_and_gradients(dtype, shape):
    """NOTE [ Row gathers ] (kernels.c): a recorded t[ix] of a 2-D or 3-D t marks its
    positions as whole rows; the replay copies rows and the vjp adds rows, in the
    element-wise kernels' order, so values and gradients (repeated and negative
    indices) are numpy's take and add.at exactly, replayed several times, with a
    strided index and with the gathered value computed on the tape"""
    a = rng.normal(size=shape).astype(dtype)
    n = shape[0]
    obs = np.stack([rng.integers(-n, n, 700), rng.integers(-n, n, 700)], 1)
    ix = obs[:, 1]
    w = rng.normal(size=(700,) + shape[1:]).astype(dtype)
    tape = cad.record(lambda t: cad.sum((t * 2.0)[ix] * w), cad.tensor(a))
    tape2 = cad.record(lambda t: t[ix], cad.tensor(a))
    want_g = np.zeros_like(a)
    np.add.at(want_g, ix, 2.0 * w)
    for k in range(3):
        b = a + k
        np.testing.assert_array_equal(np.asarray(tape2(cad.tensor(b))), b[ix])
        g = tape.grad(cad.tensor(b))
        g = g[0] if isinstance(g, (tuple, list)) else g
        np.testing.assert_array_equal(np.asarray(g), want_g)
    t = cad.tensor(a, requires_grad=True)
    cad.sum(t[ix] * w).backward()
    want = np.zeros_like(a)
    np.add.at(want, ix, w)
    np.testing.assert_array_equal(np.asarray(t.grad), want)


def test_row_gather_byte_swapped_and_unaligned_indices():
    """index arrays the C loop does not read (byte-swapped, unaligned) keep numpy's
    take: the same rows"""
    a = rng.normal(size=(21, 11))
    t = cad.tensor(a)
    ix = rng.integers(-21, 21, 50)
    sw = ix.astype(">i8")
    np.testing.assert_array_equal(np.asarray(t[sw]), a[ix])
    buf = np.zeros(50 * 8 + 1, dtype=np.uint8)
    un = np.ndarray((50,), dtype=np.int64, buffer=buf, offset=1)   # unaligned
    un[:] = ix
    np.testing.assert_array_equal(np.asarray(t[un]), a[ix])
    with pytest.raises(IndexError, match="out of bounds"):
        t[np.array([0, 21], dtype=">i8")]
