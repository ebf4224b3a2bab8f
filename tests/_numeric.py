"""Numerical helpers shared by the vmap and pytree suites: numpy views and
central differences (float64); running a check in several threads."""
import threading

import numpy as np


def in_threads(work, n=4):
    """work(k) for k in range(n), each in its own thread; re-raises what any raised"""
    errors = []

    def run(k):
        try:
            work(k)
        except Exception as e:  # pragma: no cover
            errors.append(e)
    ts = [threading.Thread(target=run, args=(k,)) for k in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors, errors


def same_in_threads(fn, xs, reps):
    """fn(x) for each x of xs computed once, then again `reps` times in one thread per x
    at once: every bit the same"""
    want = [np.asarray(fn(x)) for x in xs]

    def work(k):
        for _ in range(reps):
            np.testing.assert_array_equal(np.asarray(fn(xs[k])), want[k])
    in_threads(work, len(xs))


def A(x):
    return np.asarray(x)


def close(got, want, rtol=1e-10, atol=1e-12):
    got = A(got)
    want = np.asarray(want)
    assert got.shape == want.shape, (got.shape, want.shape)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)


def fd_grad(F, x, eps=1e-6):
    """central differences of a scalar numpy function F at x"""
    x = np.array(x, dtype=np.float64)
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[i] = eps
        g[i] = (F(x + e) - F(x - e)) / (2 * eps)
    return g


def fd_jac(F, x, eps=1e-6):
    """central differences of a numpy function F at x: shape F(x).shape + x.shape"""
    x = np.array(x, dtype=np.float64)
    y = np.asarray(F(x))
    J = np.zeros(y.shape + x.shape)
    for i in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[i] = eps
        J[(Ellipsis,) + i] = (np.asarray(F(x + e)) - np.asarray(F(x - e))) / (2 * eps)
    return J


def on_and_off(monkeypatch, obj, flag, fn):
    """(fn() with obj.flag True, fn() with it False), the flag True again after: a
    fast path against the one it stands for (transforms._C_FORWARD, _C_REVERSE)"""
    monkeypatch.setattr(obj, flag, True)
    a = fn()
    monkeypatch.setattr(obj, flag, False)
    b = fn()
    monkeypatch.setattr(obj, flag, True)
    return a, b


def without(monkeypatch, obj, gate, fn):
    """fn() with obj.gate (a plain path's gate: transforms._plain_grad_arg,
    _plain_hessian_arg) refusing every argument, so the general path runs; the gate
    restored after"""
    monkeypatch.setattr(obj, gate, lambda x: False)
    try:
        return fn()
    finally:
        monkeypatch.undo()
