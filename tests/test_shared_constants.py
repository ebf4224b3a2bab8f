"""NOTE [ Shared constants ] (tape.pxi): consecutive uses of one float constant (bit for
bit) on a tape share its value slot.  The tape of W1's chain holds one slot per result
and one for its constant; derivatives (first and second order, eager, recorded and
replayed, merged tapes) equal those by hand, constants that differ only in their sign
bit (0.0 and -0.0) or alternate are told apart, and a slot is shared only while it
still holds that constant."""
import math

import numpy as np
import pytest

import cad
from cad._core import _engine as E
from bench.w_scalar import chain, chain_dual


def test_w1_chain_tape_has_one_constant_slot():
    x = cad.tensor(0.5, requires_grad=True)
    y = chain(x, cad.sin, 3000)
    tape = E.handle_of(y)[0]
    assert tape.nrecs == 3000
    assert tape.nbufs == 3000 + 2   # x, every result, and 0.999 once
    y.backward()
    v, d = chain_dual(0.5, 3000)
    assert float(y) == pytest.approx(v, rel=1e-13)
    assert float(x.grad) == pytest.approx(d, rel=1e-13)


def test_alternating_and_signed_constants():
    def f(x):
        y = x
        for i in range(60):
            c = (0.5, -0.0, 2.0, 0.0, 0.5)[i % 5]
            y = y * c + y * 1.25 if c == 0.0 else y * c
            y = cad.sin(y) + y * 0.1
        return y

    def f_hand(x):
        y, d = x, 1.0
        for i in range(60):
            c = (0.5, -0.0, 2.0, 0.0, 0.5)[i % 5]
            if c == 0.0:
                y, d = y * c + y * 1.25, d * c + d * 1.25
            else:
                y, d = y * c, d * c
            y, d = math.sin(y) + y * 0.1, d * math.cos(y) + d * 0.1
        return y, d
    x = cad.tensor(0.7, requires_grad=True)
    y = f(x)
    y.backward()
    v, d = f_hand(0.7)
    assert float(y) == pytest.approx(v, rel=1e-13)
    assert float(x.grad) == pytest.approx(d, rel=1e-13)


def test_signed_zeros_replayed():
    """a replay reads the constants from their slots: 0.0 and -0.0 used one after the
    other must not share one"""
    f = lambda x: (x * 0.0, x * -0.0, x * -0.0, x * 0.0)
    tape = cad.record(f, cad.tensor(3.0))
    for x0 in (3.0, 5.0):
        got = [math.copysign(1.0, float(v)) for v in tape(cad.tensor(x0))]
        assert got == [1.0, -1.0, -1.0, 1.0]


def test_second_order_and_recorded():
    f = lambda x: chain(x, cad.sin, 600)
    g2 = float(cad.grad(cad.grad(f))(cad.tensor(0.3)))
    eps = 1e-5
    fd = (chain_dual(0.3 + eps, 600)[1] - chain_dual(0.3 - eps, 600)[1]) / (2 * eps)
    assert g2 == pytest.approx(fd, rel=1e-6)
    tape = cad.record(f, cad.tensor(0.3))
    for x0 in (0.3, 0.9, -0.4):
        g = tape.grad(cad.tensor(x0))
        g = g[0] if isinstance(g, tuple) else g
        assert float(g) == pytest.approx(chain_dual(x0, 600)[1], rel=1e-12)
    assert float(tape.hessian(cad.tensor(0.3))) == pytest.approx(g2, rel=1e-10)


def test_merged_tapes_with_constants():
    a = cad.tensor(0.3, requires_grad=True)
    b = cad.tensor(0.8, requires_grad=True)
    ya = chain(a, cad.sin, 300)   # two tapes, each with its 0.999 slot
    yb = chain(b, cad.sin, 300)
    s = ya * 0.999 + yb * 0.999   # merged; the constant again
    s = s * 0.5
    s.backward()
    assert float(a.grad) == pytest.approx(0.999 * 0.5 * chain_dual(0.3, 300)[1], rel=1e-12)
    assert float(b.grad) == pytest.approx(0.999 * 0.5 * chain_dual(0.8, 300)[1], rel=1e-12)


def test_arrays_with_scalar_constants():
    w = cad.tensor(np.linspace(0.1, 1.0, 4), requires_grad=True)
    y = cad.sum((w * 0.999) * 0.999 + cad.sin(w) * 0.999)
    y.backward()
    np.testing.assert_allclose(np.asarray(w.grad), 0.999 ** 2 + 0.999 * np.cos(np.linspace(0.1, 1.0, 4)),
                               rtol=1e-13)
