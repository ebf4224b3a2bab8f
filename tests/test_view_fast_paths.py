"""reshape, expand (broadcast_to) and transpose take a fast path for plain arguments
(exact non-negative Python ints; the strides in C, no ndarray.reshape call) and the
general path for anything else (-1, numpy ints, errors).  Both must give the same
values, the same recorded view (its aux: offset, shape, strides) and the same
gradients; the errors stay the general path's."""
import numpy as np
import pytest

import cad
from cad._core import _engine as C

from _numeric import fd_jac

RNG = np.random.default_rng(11)


def _np_ints(shape):
    return tuple(np.int64(s) for s in shape)


X = RNG.standard_normal((2, 3, 4))


def _views(make):
    """the value and the last recorded view's aux of make(x) for a tracked x"""
    x = cad.tensor(X).requires_grad_(True)
    with C.enable_grad():
        y = make(x)
    tp, h = C.handle_of(y)
    rec = [r for r in tp.records(0, tp.nrecs) if r[1] == h][0]
    return y.numpy(), rec[3]


BASES = {
    "contiguous": lambda x: x,
    "transposed": lambda x: C.transpose(x, (2, 0, 1)),
    "sliced": lambda x: x[:, 1:, ::2],
    "0-d": lambda x: cad.sum(x),
    "size 0": lambda x: x[:, :0],
}


@pytest.mark.parametrize("base", list(BASES))
def test_reshape_fast_equals_general(base):
    b = BASES[base]
    x0 = b(cad.tensor(np.arange(24.0).reshape(2, 3, 4)))
    n = x0.size
    for shape in [(n,), (1, n), (n, 1, 1), () if n == 1 else (n,)]:
        fast = _views(lambda x: C.reshape(b(x), shape))
        gen = _views(lambda x: C.reshape(b(x), _np_ints(shape)))
        assert fast[0].shape == shape and np.array_equal(fast[0], gen[0])
        assert fast[1] == gen[1]
        assert np.array_equal(C.reshape(x0, shape).numpy(), x0.numpy().reshape(shape))


@pytest.mark.parametrize("base", list(BASES))
def test_expand_fast_equals_general(base):
    b = BASES[base]
    x0 = b(cad.tensor(np.arange(24.0).reshape(2, 3, 4)))
    xs = tuple(x0.shape)
    shapes = [xs, (5,) + xs, (2, 1) + xs]
    if xs and xs[-1] != 0:
        one = xs[:-1] + (1,)
        shapes.append(one[:-1] + (7,))
        x1 = lambda x: b(x)[..., :1]
    else:
        x1 = None
    for shape in shapes[:3]:
        fast = _views(lambda x: C.expand(b(x), shape))
        gen = _views(lambda x: C.expand(b(x), _np_ints(shape)))
        assert fast[0].shape == shape and np.array_equal(fast[0], gen[0])
        assert fast[1] == gen[1]
        assert np.array_equal(C.expand(x0, shape).numpy(), np.broadcast_to(x0.numpy(), shape))
    if x1 is not None:
        shape = shapes[3]
        fast = _views(lambda x: C.expand(x1(x), shape))
        gen = _views(lambda x: C.expand(x1(x), _np_ints(shape)))
        assert np.array_equal(fast[0], gen[0]) and fast[1] == gen[1]


@pytest.mark.parametrize("base", ["contiguous", "transposed", "sliced", "size 0"])
def test_transpose_fast_equals_general(base):
    b = BASES[base]
    for axes in [(0, 1, 2), (2, 0, 1), (1, 2, 0), (2, 1, 0)]:
        fast = _views(lambda x: C.transpose(b(x), axes))
        gen = _views(lambda x: C.transpose(b(x), _np_ints(axes)))
        neg = _views(lambda x: C.transpose(b(x), tuple(a - 3 for a in axes)))
        assert np.array_equal(fast[0], gen[0]) and fast[1] == gen[1] == neg[1]
        x0 = b(cad.tensor(np.arange(24.0).reshape(2, 3, 4)))
        assert np.array_equal(C.transpose(x0, axes).numpy(), x0.numpy().transpose(axes))


def test_zero_d_transpose_and_reshape():
    s = cad.tensor(3.0)
    assert C.transpose(s, ()).numpy() == 3.0
    assert C.reshape(s, (1, 1)).shape == (1, 1)
    assert C.expand(s, (2, 3)).numpy().tolist() == [[3.0] * 3] * 2


def test_errors_unchanged():
    x = cad.tensor(np.ones((2, 3)))
    with pytest.raises(C.ShapeError, match="cannot reshape"):
        C.reshape(x, (4, 2))
    with pytest.raises(C.ShapeError, match="cannot reshape"):
        C.reshape(x, (1 << 70, 0))
    with pytest.raises(TypeError, match="sizes must be ints"):
        C.reshape(x, (True, 6))
    with pytest.raises(TypeError, match="sizes must be ints"):
        C.reshape(x, (2.0, 3))
    assert C.reshape(x, (-1,)).shape == (6,)
    with pytest.raises(C.ShapeError, match="broadcast_to"):
        C.expand(x, (2, 4))
    with pytest.raises(C.ShapeError, match="shorter"):
        C.expand(x, (3,))
    with pytest.raises(C.ShapeError):
        C.transpose(x, (0, 0))
    with pytest.raises(C.ShapeError):
        C.transpose(x, (0, 2))
    with pytest.raises(C.ShapeError):
        C.transpose(x, (0,))
    with pytest.raises(Exception):
        C.transpose(x, (0, 1 << 70))


def test_gradients_through_the_views():
    a = RNG.standard_normal((3, 4))
    w = RNG.standard_normal((4, 1, 3))

    def f(x):
        t = C.transpose(x, (1, 0))              # (4, 3)
        r = C.reshape(t, (4, 1, 3))
        e = C.expand(r, (2, 4, 5, 3))
        return cad.sum(cad.tanh(e) * cad.tensor(np.broadcast_to(w, (2, 4, 5, 3)).copy()))
    g = cad.grad(f)(cad.tensor(a)).numpy()
    ref = fd_jac(lambda z: f(cad.tensor(z)).numpy(), a)
    assert np.allclose(g, ref, atol=1e-6)
    H = cad.hessian(lambda v: f(C.reshape(v, (3, 4))), cad.tensor(a.reshape(-1))).numpy()
    Href = fd_jac(lambda z: cad.grad(lambda v: f(C.reshape(v, (3, 4))))(cad.tensor(z)).numpy(),
                  a.reshape(-1))
    assert np.allclose(H, Href, atol=1e-5)


def test_reshape_result_is_read_only_and_shares_memory():
    a = np.arange(6.0)
    x = cad.tensor(a)
    r = C.reshape(x, (2, 3))
    v = r.numpy()
    assert np.shares_memory(v, x.numpy())
    assert not v.flags.writeable


@pytest.mark.parametrize("base", list(BASES))
def test_fresh_view_is_as_strided(base):
    # transforms._fresh's identity view: the record and value of as_strided with the
    # C-order strides of x's shape (size-0 and size-1 dims counted as 1)
    b = BASES[base]

    def cstrides(shape):
        st, s = [], 1
        for d in reversed(shape):
            st.append(s)
            s *= max(d, 1)
        return tuple(reversed(st))
    shape = tuple(b(cad.tensor(X)).shape)
    fast = _views(lambda x: C.fresh_view(b(x)))
    ref = _views(lambda x: C.as_strided(b(x), 0, shape, cstrides(shape)))
    assert np.array_equal(fast[0], ref[0]) and fast[1] == ref[1]
    assert fast[0].flags.c_contiguous
