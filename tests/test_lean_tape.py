"""NOTE [ Value slot ] and NOTE [ Record width ] (cad_kernels/cpu/cad_cpu.h): a value
slot is 32 bytes (an inline value's value and gradient share the words of an array's
data and gradient pointers; owner, leaf and version live in the meta pool, and the
inline values of a scalar program have none), a record 16 bytes and an argument handle
4.  W1's chain holds at most 64 bytes per op; leaves (0-d and arrays) keep their
.grad, their in-place checks and their references through merges, records with many
inputs keep them all, and a loaded tape's records are checked before they are stored
narrow."""
import gc
import sys

import numpy as np
import pytest

import cad
from cad._core import _engine as E
from bench.w_scalar import chain, chain_dual


@pytest.mark.parametrize("n", [1000, 1_000_000])
def test_w1_chain_holds_at_most_64_bytes_per_op(n):
    # (allocated capacity: the arrays grow by doubling, so between powers of two the
    # slack adds up to 2x; at 10^5 ops the same tape holds 73 bytes per op)
    x = cad.tensor(0.5, requires_grad=True)
    y = chain(x, cad.sin, n)
    tape = E.handle_of(y)[0]
    assert tape.nrecs == n and tape.nbufs == n + 2
    assert tape.nbytes / n <= 64
    y.backward()
    v, d = chain_dual(0.5, n)
    assert float(y) == pytest.approx(v, rel=1e-12)
    assert float(x.grad) == pytest.approx(d, rel=1e-12)


def test_scalar_and_array_leaves_on_one_tape():
    rng = np.random.default_rng(0)
    a0 = rng.standard_normal((3, 4))
    s = cad.tensor(0.7, requires_grad=True)
    a = cad.tensor(a0, requires_grad=True)
    y = cad.sum(cad.sin(a * s)) + s * s
    y.backward()
    np.testing.assert_allclose(np.asarray(a.grad), np.cos(a0 * 0.7) * 0.7, rtol=1e-13)
    assert float(s.grad) == pytest.approx(np.sum(np.cos(a0 * 0.7) * a0) + 1.4, rel=1e-13)


@pytest.mark.parametrize("shape", [(), (3,)])
def test_leaf_modified_in_place_after_use_still_raises(shape):
    x = cad.tensor(np.full(shape, 0.5), requires_grad=True)
    y = cad.sum(x * x * 3.0)
    with cad.no_grad():
        x += 1.0
    with pytest.raises(cad.BackwardError, match="modified in place"):
        y.backward()


def test_merged_tapes_keep_leaves_and_inline_values():
    x = cad.tensor(0.3, requires_grad=True)
    z = cad.tensor(np.array([0.1, 0.2]), requires_grad=True)
    u = chain(x, cad.sin, 30)              # a scalar program on x's tape (no meta words)
    w = cad.sum(cad.tanh(z)) * 2.0        # z's tape (meta words for z)
    y = u * w + u                          # the two tapes merged
    y.backward()
    uv, ud = chain_dual(0.3, 30)
    wv = 2.0 * np.sum(np.tanh([0.1, 0.2]))
    assert float(y) == pytest.approx(uv * wv + uv, rel=1e-13)
    assert float(x.grad) == pytest.approx(ud * (wv + 1.0), rel=1e-12)
    np.testing.assert_allclose(np.asarray(z.grad), uv * 2.0 * (1 - np.tanh([0.1, 0.2]) ** 2),
                               rtol=1e-13)


def test_tape_releases_its_leaves_and_arrays():
    x = cad.tensor(np.arange(4.0), requires_grad=True)
    s = cad.tensor(2.0, requires_grad=True)
    arr = np.arange(4.0) + 1.0
    base_x, base_arr = sys.getrefcount(x), sys.getrefcount(arr)
    y = cad.sum(x * cad.tensor(arr) * s)
    assert sys.getrefcount(x) > base_x
    del y
    gc.collect()
    assert sys.getrefcount(x) == base_x
    assert sys.getrefcount(arr) == base_arr
    assert s.grad is None


def test_records_with_many_inputs():
    xs = [cad.tensor(float(i) / 7, requires_grad=True) for i in range(300)]
    y = cad.sum(cad.sin(cad.stack(xs)))
    y.backward()
    np.testing.assert_allclose([float(x.grad) for x in xs], np.cos(np.arange(300) / 7), rtol=1e-13)
    ps = [cad.tensor(np.full(2, i + 1.0), requires_grad=True) for i in range(100)]
    y = cad.sum(cad.concatenate(ps) ** 2)
    y.backward()
    for i, p in enumerate(ps):
        np.testing.assert_allclose(np.asarray(p.grad), np.full(2, 2.0 * (i + 1)))


def test_second_order_of_scalar_code():
    f = lambda x: chain(x, cad.sin, 60)
    x0 = 0.4
    h = float(cad.grad(cad.grad(f))(cad.tensor(x0)))
    eps = 1e-5
    g = lambda v: chain_dual(v, 60)[1]
    assert h == pytest.approx((g(x0 + eps) - g(x0 - eps)) / (2 * eps), rel=1e-6)


def test_recorded_tape_of_mixed_values():
    rng = np.random.default_rng(1)
    W = cad.tensor(rng.standard_normal((4, 4)))

    def f(x, s):
        return cad.sum(cad.tanh(W @ x) * s) + s * s

    x0, s0 = rng.standard_normal(4), 0.8
    tape = cad.record(f, cad.tensor(x0), cad.tensor(s0))
    gx, gs = tape.grad(cad.tensor(x0), cad.tensor(s0))
    ex, es = cad.grad(f, argnums=(0, 1))(cad.tensor(x0), cad.tensor(s0))
    np.testing.assert_allclose(np.asarray(gx), np.asarray(ex), rtol=1e-14)
    assert float(gs) == pytest.approx(float(es), rel=1e-14)


def test_loaded_records_are_checked_before_stored_narrow():
    tp = E.Tape()
    h = E.tape_push_buf(tp, 1.0, 0, (), 1)
    with pytest.raises(ValueError, match="out of range"):
        E.tape_push_rec(tp, 1 << 12, h, (h,), ())
    with pytest.raises(ValueError, match="out of range"):
        E.tape_push_rec(tp, 0, (1 << 32) + h, (h,), ())
    with pytest.raises(ValueError, match="out of range"):
        E.tape_push_rec(tp, 0, h, ((1 << 32) + h,), ())
    assert tp.nrecs == 0
