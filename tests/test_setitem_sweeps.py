"""NOTE [ Setitem records in the sweeps ] (tapeview.pxi): x[i] = v records through
every sweep without their Python rules (jvp's plain sweep, the recording forward
sweep, jacfwd's batched sweep, the recording reverse sweep, jacrev's batched sweep),
on the masks set_masks makes.  Checked against the rules (the sweeps' flags off) bit
for bit, against finite differences, with repeated positions (the last write
wins), constant and tracked x and values, broadcast values, slices of 2-D values
and empty writes."""
import numpy as np
import pytest

import cad
import cad._core._engine as C
from cad import transforms as T

from _numeric import fd_jac, on_and_off


def _same(a, b):
    """the sweeps against the rules: equal to rounding (other records of these
    functions, a Diag batch summed with dense ones, already differed in the last bit
    between the Cython and the Python loops before setitem left its rule)"""
    np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-14)

rng = np.random.default_rng(404)
N = 20   # (jacrev of more than 16 outputs takes the batched sweep)


def stencil(x):
    u = cad.zeros(N)
    for i in range(1, N - 1):
        u[i] = x[i - 1] - 2.0 * x[i] + x[i + 1] * x[i]
    return u * cad.sin(x)


def repeats(x):
    y = x * 1.0
    y[np.array([3, 5, 3, 7])] = cad.exp(x[:4])   # position 3 twice: the second write wins
    y[2:6] = 0.5                                 # a constant write
    return cad.tanh(y) * x


def rows(x):
    m = cad.reshape(x, (4, 5)) * 2.0
    m[1] = cad.cos(m[2])                         # a row
    m[:, 3] = x[:4] ** 2                         # a column: a strided write
    m[2:, :2] = x[0]                             # a broadcast (0-d) value
    m[np.array([], dtype=np.int64)] = 1.0        # an empty write
    return cad.reshape(m * m, (N,))


FUNCS = {"stencil": stencil, "repeats": repeats, "rows": rows}


def _check(monkeypatch, flag, fn, want, tol):
    """fn() with the sweep's flag on and off equal to rounding, and against want"""
    a, b = on_and_off(monkeypatch, T, flag, lambda: np.asarray(fn()))
    _same(a, b)
    np.testing.assert_allclose(a, want, rtol=tol, atol=tol / 10)


@pytest.mark.parametrize("name", sorted(FUNCS))
def test_first_order_sweeps_match_the_rules(name, monkeypatch):
    f = FUNCS[name]
    x0, t0 = rng.uniform(0.3, 1.1, N), rng.standard_normal(N)
    x, t = cad.tensor(x0), cad.tensor(t0)
    J = fd_jac(lambda v: np.asarray(f(cad.tensor(v))), x0)
    _check(monkeypatch, "_C_FORWARD", lambda: cad.jvp(f, (x,), (t,))[1], J @ t0, 1e-6)
    _check(monkeypatch, "_C_FORWARD", lambda: cad.jacfwd(f)(x), J, 1e-6)
    _check(monkeypatch, "_C_REVERSE", lambda: cad.jacrev(f)(x), J, 1e-6)


@pytest.mark.parametrize("name", sorted(FUNCS))
def test_second_order_sweeps_match_the_rules(name, monkeypatch):
    f = FUNCS[name]
    w = rng.standard_normal(N)
    g = lambda x: cad.sum(f(x) * cad.tensor(w))  # noqa: E731
    x0, t0 = rng.uniform(0.3, 1.1, N), rng.standard_normal(N)
    x, t = cad.tensor(x0), cad.tensor(t0)
    H = fd_jac(lambda v: np.asarray(cad.grad(g)(cad.tensor(v))), x0)
    gg = lambda: cad.grad(lambda y: cad.sum(cad.grad(g)(y) * t))(x)  # noqa: E731
    for flag in ("_C_REVERSE", "_C_EW_VJP"):   # grad of grad: the recording reverse sweep
        _check(monkeypatch, flag, gg, H @ t0, 1e-5)
    # grad of a jvp: the recording forward sweep; hessian: both halves
    _check(monkeypatch, "_C_FORWARD", lambda: cad.grad(lambda y: cad.jvp(g, (y,), (t,))[1])(x), H @ t0, 1e-5)
    _check(monkeypatch, "_C_FORWARD", lambda: cad.hessian(g)(x), H, 1e-5)


def test_tracked_values_and_constant_targets(monkeypatch):
    """the derivative with respect to the written values and to a closure's tracked
    value (x constant, v tracked; both tracked)"""
    v0 = rng.standard_normal(3)

    def f(v):
        y = cad.zeros(6)
        y[np.array([0, 4, 0])] = v * 2.0
        z = cad.ones(6) * v[1]
        z[1:4] = cad.sin(v)
        return cad.sum(y * z) + cad.sum(z ** 3)
    for flag in ("_C_FORWARD", "_C_REVERSE"):
        a, b = on_and_off(monkeypatch, T, flag, lambda: np.asarray(cad.hessian(f)(cad.tensor(v0))))
        _same(a, b)
    np.testing.assert_allclose(a, fd_jac(lambda v: np.asarray(cad.grad(f)(cad.tensor(v))), v0),
                               rtol=1e-6, atol=1e-6)


def test_setitem_takes_no_rule(monkeypatch):
    calls = []
    real_f, real_r = T._jvp_record, T._rev_record
    monkeypatch.setattr(T, "_jvp_record", lambda *a: calls.append(a[1][0]) or real_f(*a))
    monkeypatch.setattr(T, "_rev_record", lambda *a: calls.append(a[1][0]) or real_r(*a))
    x0, t0 = rng.uniform(0.3, 1.1, N), rng.standard_normal(N)
    cad.jvp(stencil, (cad.tensor(x0),), (cad.tensor(t0),))
    cad.hvp(lambda x: cad.sum(stencil(x) ** 2), cad.tensor(x0), cad.tensor(t0))
    cad.jacrev(stencil)(cad.tensor(x0))
    cad.jacfwd(stencil)(cad.tensor(x0))
    from cad.ops import REGISTRY
    setitem = next(op.code for op in REGISTRY.values() if op.name == "setitem")
    assert setitem not in calls


def test_set_masks():
    lin = np.array([[4, 1], [4, 0]])
    keep, last = C.set_masks(cad.tensor(lin), (2, 3))
    np.testing.assert_array_equal(np.asarray(keep), [[False, False, True], [True, False, True]])
    np.testing.assert_array_equal(np.asarray(last), [[False, True], [True, True]])
    assert C.set_masks(cad.tensor(np.array([6])), (2, 3)) is None
    assert C.set_masks(cad.tensor(np.array([-1])), (2, 3)) is None
    keep, last = C.set_masks(cad.tensor(np.zeros((0,), dtype=np.int64)), (0,))
    assert np.asarray(keep).shape == (0,) and np.asarray(last).shape == (0,)
