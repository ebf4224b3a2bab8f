"""The rules' reverse sweep's loop in Cython (tapeview.pxi's reverse_sweep_r, cotangents
without batch dims: hessian's inner jacrev, grad(grad(f)) of array code,
create_graph=True), with add's and sum's cotangents passed without their Python rule.
Checked against the Python loop (transforms._C_REVERSE = False) bit for bit, against
finite differences, and for its errors and tape merges."""
import numpy as np
import pytest

import cad
import cad.transforms as T

from _numeric import fd_jac, on_and_off, same_in_threads

rng = np.random.default_rng(51)
W = rng.standard_normal((4, 4)) * 0.5
B = rng.standard_normal((3, 4)) * 0.5

FUNCS = {
    "W7": (lambda x: cad.sum(x ** 3) + cad.sum(cad.tanh(cad.tensor(W) @ x)), (4,)),
    "broadcast add": (lambda x: cad.sum(cad.sin(x[:, None] + cad.tensor(B).T) ** 2), (4,)),
    "sums over axes": (lambda x: cad.sum(cad.sum(cad.exp(x * cad.tensor(B)), axis=0) ** 2)
                       + cad.sum(cad.sum(x * x * cad.tensor(B), axis=1, keepdims=True) * 2.0), (4,)),
    "one value twice": (lambda x: cad.sum((x + x) * cad.cos(x) + x), (4,)),
    "2-D": (lambda x: cad.sum(cad.tanh(x @ cad.tensor(W)) + x) ** 2, (3, 4)),
    "constants in adds": (lambda x: cad.sum(cad.log1p(x * x + 1.0) + 2.0), (5,)),
}


def _pos(shape):
    return rng.uniform(0.2, 1.2, shape)


def _both(fn, monkeypatch):
    return on_and_off(monkeypatch, T, "_C_REVERSE", fn)


@pytest.mark.parametrize("name", list(FUNCS))
def test_hessian_and_grad_of_grad(name, monkeypatch):
    f, shape = FUNCS[name]
    x = _pos(shape)
    a, b = _both(lambda: np.asarray(cad.hessian(f)(cad.tensor(x))), monkeypatch)
    np.testing.assert_array_equal(a, b)
    H = fd_jac(lambda v: np.asarray(cad.grad(f)(cad.tensor(v))), x)
    np.testing.assert_allclose(a, H, rtol=1e-6, atol=1e-6)
    v = rng.standard_normal(shape)
    gg = lambda: np.asarray(cad.grad(lambda y: cad.sum(cad.grad(f)(y) * cad.tensor(v)))(cad.tensor(x)))  # noqa: E731
    a, b = _both(gg, monkeypatch)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(a, np.tensordot(H, v, axes=v.ndim) if v.ndim == 1 else
                               np.einsum("ijkl,ij->kl", H, v), rtol=1e-6, atol=1e-6)


def test_create_graph_and_third_order(monkeypatch):
    f, shape = FUNCS["W7"]

    def run():
        x = cad.tensor(_pos(shape) * 0 + 0.7, requires_grad=True)
        (g,) = cad.autograd.grad(f(x), (x,), create_graph=True)
        (h,) = cad.autograd.grad(cad.sum(g * g), (x,), create_graph=True)
        return np.asarray(h), np.asarray(cad.jacfwd(cad.hessian(f))(cad.tensor(np.full(4, 0.3))))
    (a1, a2), (b1, b2) = _both(run, monkeypatch)
    np.testing.assert_array_equal(a1, b1)
    np.testing.assert_allclose(a2, b2, rtol=1e-12, atol=1e-12)


def test_closure_over_a_tracked_value_merges_tapes(monkeypatch):
    """the inner gradient closes over a value of an outer computation: its rules record
    ops mixing the two tapes (a merge during the sweep)"""
    def run():
        s = cad.tensor(np.array([0.9, 1.1]), requires_grad=True)
        c = s * 2.0
        inner = cad.grad(lambda x: cad.sum(cad.sin(x * c[0]) + x * c[1]))
        out = cad.sum(inner(cad.tensor(np.array([0.3, 0.4]))) ** 2)
        (gs,) = cad.autograd.grad(out, (s,))
        return np.asarray(gs)
    a, b = _both(run, monkeypatch)
    np.testing.assert_array_equal(a, b)


def test_consumed_tape_error(monkeypatch):
    x = cad.tensor(np.array([0.5, 0.6]), requires_grad=True)
    y = cad.sum(cad.sin(x) + x)
    y.backward()
    with pytest.raises(cad.BackwardError):
        cad.autograd.grad(y, (x,), create_graph=True)


def test_threads():
    f, shape = FUNCS["sums over axes"]
    same_in_threads(lambda x: cad.hessian(f)(cad.tensor(x)), [_pos(shape) for _ in range(4)], 30)


# ---- the linear ops' and max/min's cotangents without their rules (_lin_vjp_r)

rng2 = np.random.default_rng(52)
IDX = np.array([0, 2, 2, 1])
LIN_FUNCS = {
    "max and min": (lambda x: cad.sum(cad.max(x * x, axis=1)) + cad.min(cad.sin(x))
                    + cad.sum(cad.max(cad.exp(x), axis=0, keepdims=True) * 2.0), (3, 4)),
    "views and their adjoints": (lambda x: cad.sum(cad.sin(x[1:, ::2]) * x[:-1, 1::2]) + cad.sum(x[0] ** 3), (3, 4)),
    "gathers with repeats": (lambda x: cad.sum(cad.exp(x[IDX]) ** 2 * x[IDX[::-1]]), (4,)),
    "cumsum both ways": (lambda x: cad.sum(cad.cumsum(x * x, axis=1) ** 2)
                         + cad.sum(cad.cumsum(cad.sin(x), axis=0) * x), (3, 4)),
    "concatenate with a constant": (lambda x: cad.sum(cad.concatenate(
        [x * x, cad.sin(x), cad.tensor(B[0])]) ** 2), (4,)),
    "stack of rows": (lambda x: cad.sum(cad.tanh(cad.stack([x[0] * x[1], x[2], x[1] ** 2], axis=1)) ** 2),
                      (3, 4)),
}


@pytest.mark.parametrize("name", list(LIN_FUNCS))
def test_linear_ops_without_rules(name, monkeypatch):
    f, shape = LIN_FUNCS[name]
    x = rng2.uniform(0.2, 1.2, shape)
    for flag in ("_C_REVERSE", "_C_EW_VJP"):
        a, b = on_and_off(monkeypatch, T, flag, lambda: np.asarray(cad.hessian(f)(cad.tensor(x))))
        np.testing.assert_array_equal(a, b)
    H = fd_jac(lambda v: np.asarray(cad.grad(f)(cad.tensor(v))), x)
    np.testing.assert_allclose(a, H.reshape(a.shape), rtol=1e-6, atol=1e-6)
    v = rng2.standard_normal(shape)
    gg = lambda: np.asarray(cad.grad(lambda y: cad.sum(cad.grad(f)(y) * cad.tensor(v)))(cad.tensor(x)))  # noqa: E731
    a, b = on_and_off(monkeypatch, T, "_C_REVERSE", gg)
    np.testing.assert_array_equal(a, b)
    n = v.size
    np.testing.assert_allclose(a.reshape(-1), H.reshape(n, n).T @ v.reshape(-1), rtol=1e-6, atol=1e-6)


def test_linear_ops_take_no_rule(monkeypatch):
    """grad(grad) of a function of every op _lin_vjp_r covers: none reaches its rule"""
    from cad.ops._registry import primitives
    T._tables()
    names = ("max", "min", "unview", "gather", "scatter", "cast", "cumsum", "concatenate")
    seen = []
    vjps = list(T._VJP)
    for op in primitives():
        if op.name in names:
            k = primitives().index(op)
            vjps[k] = (lambda rule, nm: lambda ctx, g: (seen.append(nm), rule(ctx, g))[1])(vjps[k], op.name)
    monkeypatch.setattr(T, "_VJP", vjps)

    def f(x):
        y = cad.concatenate([cad.cumsum(x * x, axis=0), x[IDX[:2]]])
        return cad.sum(y ** 2) + cad.max(cad.sin(x)) + cad.sum(x[1:] * x[:-1]) \
            + cad.sum(cad.min(x * 3.0, axis=0, keepdims=True) * (x.astype(cad.float32)).astype(cad.float64))
    x = rng2.uniform(0.2, 1.2, 4)
    h = np.asarray(cad.hessian(f)(cad.tensor(x)))
    assert seen == []
    H = fd_jac(lambda v: np.asarray(cad.grad(f)(cad.tensor(v))), x, eps=1e-3)   # (a float32 term)
    np.testing.assert_allclose(h, H, rtol=1e-3, atol=1e-3)


def test_max_at_ties_and_casts(monkeypatch):
    """ties share the cotangent as the rule shares it; a float32 cast's cotangent in float32"""
    x = np.array([[0.5, 0.5, 0.2], [0.1, 0.7, 0.7]])
    f = lambda y: cad.sum(cad.max(y * y, axis=1) ** 2) + cad.max(y) * cad.sum(y)  # noqa: E731
    a, b = on_and_off(monkeypatch, T, "_C_REVERSE", lambda: np.asarray(cad.hessian(f)(cad.tensor(x))))
    np.testing.assert_array_equal(a, b)
    g = lambda y: cad.sum(cad.tanh(y.astype(cad.float32)).astype(cad.float64) ** 2 * y)  # noqa: E731
    xv = x[0] + 0.1
    a, b = on_and_off(monkeypatch, T, "_C_REVERSE", lambda: np.asarray(cad.hessian(g)(cad.tensor(xv))))
    np.testing.assert_array_equal(a, b)
    H = fd_jac(lambda v: np.asarray(cad.grad(g)(cad.tensor(v))), xv, eps=1e-3)
    np.testing.assert_allclose(a, H, rtol=2e-3, atol=2e-3)
