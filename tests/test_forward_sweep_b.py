"""The batched C forward sweep (NOTE [ C forward sweep ], tapeview.pxi's
forward_sweep_b): jacfwd's and hessian's batch of tangents pushed through
elementwise records in C (dense, diagonal, scaled and mixed batches), every other
record by its rule.  Checked against the rules' sweep (transforms._C_FORWARD =
False) bit for bit where the same rows run, against finite differences, and for the
paths it hands to the rules (broadcast inputs, 0-d values, rows without a fused
kernel, custom primitives)."""
import numpy as np
import pytest

import cad
import cad.transforms as T

from _numeric import fd_jac, on_and_off, same_in_threads

rng = np.random.default_rng(31)
W4 = rng.standard_normal((4, 4)) * 0.5
B43 = rng.standard_normal((4, 3)) * 0.5


FUNCS = {
    "ew chain": (lambda x: cad.exp(cad.sin(x) * x) / (1.0 + x * x), (5,)),
    "W7": (lambda x: (x ** 3).sum() + cad.tanh(cad.tensor(W4) @ x).sum(), (4,)),
    "scaled chain": (lambda x: cad.log1p(cad.square(cad.tanh(cad.tensor(W4) @ x) - 0.5)), (4,)),
    "two batches": (lambda x: cad.sin(cad.tensor(W4) @ x) * cad.cos(cad.tensor(W4.T) @ x), (4,)),
    "mixed": (lambda x: cad.sin(x) * 2.0 + cad.tensor(W4) @ x, (4,)),
    "mixed mul": (lambda x: (x ** 2) * (cad.tensor(W4) @ x), (4,)),
    "2-D": (lambda x: cad.tanh(x @ cad.tensor(B43)) * 3.0 - x.sum(), (2, 4)),
    "broadcast": (lambda x: cad.sin(x[:, None] + cad.tensor(B43)), (4,)),
    "0-d parts": (lambda x: cad.exp(cad.sum(x * x)) * x, (3,)),
    "pow const": (lambda x: (cad.tensor(W4) @ x) ** 3.0 + x ** 2.5, (4,)),
    "where": (lambda x: cad.where(x > 0.5, cad.sin(x), x * x), (4,)),
    "views": (lambda x: cad.exp(x[::2]) * x[1::2] + x.T[0:2], (4,)),
    "identity reshapes": (lambda x: cad.reshape(cad.sin(cad.reshape(x, (2, 3))) * 2.0, (2, 3)) *
                          cad.reshape(x, (2, 3)), (2, 3)),
    "vector @ matrix": (lambda x: cad.sin(x @ cad.tensor(W4)) * x, (4,)),
    "scaled diagonal into matmul": (lambda x: cad.tensor(W4) @ (x * 2.0) + cad.tensor(W4.T) @ cad.exp(x), (4,)),
    "both operands of a product": (lambda x: x * (x @ (cad.tensor(W4) @ x)), (4,)),
    "batched matmul": (lambda x: cad.tanh(cad.tensor(np.stack([W4, W4.T])) @ x), (4,)),
    "scaled through a reshape": (lambda x: cad.exp(cad.reshape(cad.tanh(cad.tensor(W4) @ x), (4,))), (4,)),
}

# the linear records and max/min with a dense batch (_lin_batch): sums, views and
# their adjoints (in the gradient a hessian pushes), gathers and the scatters of their
# gradients, concatenate, cumsum, casts
IDX = np.array([3, 0, 0, 2])
FUNCS.update({
    "sums and max": (lambda x: cad.sum(cad.tanh(cad.tensor(W4) @ x) * x) * x
                     + cad.max(cad.tensor(W4) @ x) + cad.min(cad.reshape(cad.tensor(W4) @ x, (2, 2)), axis=1)[0], (4,)),
    "slices after a product": (lambda x: cad.sin((cad.tensor(W4) @ x)[1:]) * x[:-1] + (cad.tensor(W4) @ x)[::3].sum(), (4,)),
    "gather after a product": (lambda x: cad.exp((cad.tensor(W4) @ x)[IDX] * 0.3) * x[IDX], (4,)),
    "concatenate and cumsum": (lambda x: cad.cumsum(cad.concatenate([cad.tensor(W4) @ x, cad.sin(cad.tensor(W4.T) @ x),
                                                                      cad.tensor(B43[:, 0])]) ** 2, axis=0), (4,)),
    "concatenate of a diagonal batch": (lambda x: cad.concatenate([x, cad.sin(x[::-1]), x[IDX]]) * 2.0, (4,)),
    "2-D sums and cumsum": (lambda x: cad.cumsum(cad.tanh(x @ cad.tensor(B43)), axis=1, reverse=True)
                            * cad.sum(x @ cad.tensor(B43), axis=0, keepdims=True), (2, 4)),
})



def _scalar_loop(x):
    s = 0.0
    for i in range(x.shape[0]):
        s = s + cad.sin(x[i]) * x[(i + 1) % x.shape[0]] + x[i] ** 2
    return s * s


# scalar loop code (0-d records with a dense batch: the fused row) and views of a
# diagonal batch (_diag_view: the view's batch without the n x n matrix)
FUNCS.update({
    "scalar loop": (_scalar_loop, (5,)),
    "views of the seed": (lambda x: cad.exp(x[1:5:2]) * x[0] + cad.reshape(x, (2, 3))[:, 1].sum() * x[::-1][:2]
                          + cad.broadcast_to(x[2], (2,)), (6,)),
    "2-D views of the seed": (lambda x: cad.sin(x[1:, ::2]) * x.T[0, 1] + x[:2, None, 1], (3, 4)),
})


def _pos(shape):
    return rng.uniform(0.2, 1.2, shape)


def _both(transform, f, x, monkeypatch):
    return on_and_off(monkeypatch, T, "_C_FORWARD", lambda: np.asarray(transform(f)(cad.tensor(x))))


@pytest.mark.parametrize("name", list(FUNCS))
def test_jacfwd_c_equals_rules_and_fd(name, monkeypatch):
    f, shape = FUNCS[name]
    x = _pos(shape)
    a, b = _both(cad.jacfwd, f, x, monkeypatch)
    np.testing.assert_allclose(a, b, rtol=1e-14, atol=1e-14)
    np.testing.assert_allclose(a, fd_jac(lambda v: np.asarray(f(cad.tensor(v))), x), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", [k for k, (f, s) in FUNCS.items()])
def test_hessian_c_equals_rules(name, monkeypatch):
    f, shape = FUNCS[name]
    g = lambda v: cad.sum(f(v))  # noqa: E731
    x = _pos(shape)
    a, b = _both(cad.hessian, g, x, monkeypatch)
    np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-13)
    H = fd_jac(lambda v: np.asarray(cad.grad(g)(cad.tensor(v))), x)
    np.testing.assert_allclose(a, H, rtol=1e-6, atol=1e-6)


def test_paths_taken(monkeypatch):
    """the elementwise records of W7's forward half run in C: no rule call for them"""
    calls = []
    orig = T._jvp_record

    def counted(tape, rec, ts, nb, fused):
        calls.append(T.primitives()[rec[0]].name)
        return orig(tape, rec, ts, nb, fused)
    monkeypatch.setattr(T, "_jvp_record", counted)
    f, shape = FUNCS["W7"]
    cad.hessian(lambda v: cad.sum(f(v)), cad.tensor(_pos(shape)))
    assert calls == [], calls   # (identity views pass their batch on, matmuls run in C)
    # dense batches through sums, max, views, their adjoints, gathers, scatters,
    # concatenate and cumsum: none by rule
    lin = ("sum", "max", "min", "view", "unview", "gather", "scatter", "concatenate", "cumsum")
    for name in ("sums and max", "slices after a product", "gather after a product", "concatenate and cumsum",
                 "concatenate of a diagonal batch"):
        f, shape = FUNCS[name]
        cad.jacfwd(f)(cad.tensor(_pos(shape)))
        # (a broadcasting elementwise record still goes to its rule)
        assert [c for c in calls if c in lin] == [], (name, calls)
        cad.hessian(lambda v: cad.sum(f(v)), cad.tensor(_pos(shape)))
        assert [c for c in calls if c in lin] == [], (name, calls)
    # 0-d records of loop code: no rule at all; views of the diagonal seed: no view
    # by rule (their broadcasting products still are)
    for name in ("scalar loop", "views of the seed", "2-D views of the seed"):
        f, shape = FUNCS[name]
        calls.clear()
        cad.jacfwd(f)(cad.tensor(_pos(shape)))
        cad.hessian(lambda v: cad.sum(f(v)), cad.tensor(_pos(shape)))
        assert [c for c in calls if name == "scalar loop" or c == "view"] == [], (name, calls)


def test_casts(monkeypatch):
    """a dense batch through float casts both ways: the rules' result, and differences
    at float32's precision"""
    f = lambda x: (cad.tensor(W4) @ x).astype(np.float32).astype(np.float64) * x  # noqa: E731
    x = _pos(4)
    a, b = _both(cad.jacfwd, f, x, monkeypatch)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(a, fd_jac(lambda v: np.asarray(f(cad.tensor(v))), x, eps=1e-3), rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_float32_and_layout(dtype, monkeypatch):
    x = _pos(4).astype(dtype)
    f = lambda v: cad.sin(v) * 2.0 + cad.tensor(W4.astype(dtype)) @ v  # noqa: E731
    a, b = _both(cad.jacfwd, f, x, monkeypatch)
    assert a.dtype == dtype
    tol = 1e-6 if dtype == np.float32 else 1e-14
    np.testing.assert_allclose(a, b, rtol=tol, atol=tol)
    np.testing.assert_allclose(a, np.diag(2.0 * np.cos(x)) + W4.astype(dtype), rtol=tol, atol=tol)


def test_nested_and_recording_take_the_rules(monkeypatch):
    """an outer transform: the inner sweep records (not the C sweep), and the third
    derivative agrees with the rules-only one"""
    f = lambda x: (cad.sin(x) * x ** 3).sum() + cad.tanh(cad.tensor(W4) @ x).sum()  # noqa: E731
    x = _pos(4)
    a, b = _both(lambda g: cad.jacfwd(cad.hessian(g)), f, x, monkeypatch)
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_custom_primitive_falls_back():
    """a custom primitive on the tape: its record by its rule, the rest in C"""
    @cad.primitive
    def sq(x):
        return np.asarray(x) ** 2
    sq.defjvp(lambda ts, ans, x: 2.0 * x * ts[0])
    x = _pos(3)
    J = np.asarray(cad.jacfwd(lambda v: cad.sin(sq(v) * 1.5))(cad.tensor(x)))
    np.testing.assert_allclose(J, np.diag(np.cos(1.5 * x * x) * 3 * x), rtol=1e-13, atol=1e-14)


def test_inputs_and_tangents_unchanged():
    W = cad.tensor(W4)
    x = cad.tensor(_pos(4))
    before = np.asarray(W).copy(), np.asarray(x).copy()
    for _ in range(3):
        J = np.asarray(cad.jacfwd(lambda v: v + W @ v)(x))
        np.testing.assert_allclose(J, np.eye(4) + W4, rtol=1e-14, atol=1e-14)
    np.testing.assert_array_equal(np.asarray(W), before[0])
    np.testing.assert_array_equal(np.asarray(x), before[1])


def test_threads():
    f, shape = FUNCS["W7"]
    g = lambda v: cad.sum(f(v))  # noqa: E731
    same_in_threads(lambda x: cad.hessian(g)(cad.tensor(x)), [_pos(shape) for _ in range(4)], 40)


# NOTE [ Batched custom jvps ]: a custom primitive's jvp takes jacfwd's batch through
# one vmap of its rule (linalg's through their defvmap rules), against one call per
# tangent (custom._VMAP_JVP = False) and finite differences

def _linalg_funcs():
    A0 = W4 @ W4.T + 3.0 * np.eye(4)
    return {
        "solve": lambda x: cad.linalg.solve(cad.tensor(A0) + cad.outer(x, x), cad.sin(x)),
        "inv": lambda x: cad.sum(cad.linalg.inv(cad.tensor(A0) * x[0] + cad.diag(x)), axis=0),
        "cholesky": lambda x: cad.sum(cad.linalg.cholesky(cad.tensor(A0) + cad.diag(x * x)), axis=1),
        "slogdet": lambda x: cad.linalg.slogdet(cad.tensor(A0) + cad.outer(x, x))[1] * x,
        "eigh": lambda x: cad.linalg.eigh(cad.tensor(A0) + cad.diag(x))[0] * 2.0,
    }


@pytest.mark.parametrize("name", ["solve", "inv", "cholesky", "slogdet", "eigh"])
def test_custom_jvp_batches_through_vmap(name, monkeypatch):
    from cad.ops import custom
    f = _linalg_funcs()[name]
    x = _pos(4)
    a, b = on_and_off(monkeypatch, custom, "_VMAP_JVP", lambda: np.asarray(cad.jacfwd(f)(cad.tensor(x))))
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(a, fd_jac(lambda v: np.asarray(f(cad.tensor(v))), x), rtol=1e-6, atol=1e-7)
    g = lambda v: cad.sum(f(v) ** 2)  # noqa: E731
    a, b = on_and_off(monkeypatch, custom, "_VMAP_JVP", lambda: np.asarray(cad.hessian(g)(cad.tensor(x))))
    np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-12)
    H = fd_jac(lambda v: np.asarray(cad.grad(g)(cad.tensor(v))), x)
    np.testing.assert_allclose(a, H, rtol=1e-5, atol=1e-6)


def test_custom_jvp_vmap_and_its_fallback():
    """a jvp through a vjp (transposition) batches under vmap; a rule that reads its
    tangent as numpy cannot, and is called per tangent (and not tried again)"""
    @cad.primitive
    def cube(x):
        return np.asarray(x) ** 3
    cube.defvjp(lambda g, ans, x: g * 3.0 * x * x)

    @cad.primitive
    def sq(x):
        return np.asarray(x) ** 2
    sq.defjvp(lambda ts, ans, x: cad.tensor(2.0 * np.asarray(x) * np.asarray(ts[0])))
    x = _pos(3)
    J = np.asarray(cad.jacfwd(lambda v: cad.sin(cube(v)) + sq(v))(cad.tensor(x)))
    np.testing.assert_allclose(J, np.diag(np.cos(x ** 3) * 3 * x * x + 2 * x), rtol=1e-13)
    assert sq.__dict__.get("_jvp_vmaps") is False and "_jvp_vmaps" not in cube.__dict__
    J = np.asarray(cad.jacfwd(lambda v: sq(v) * 2.0)(cad.tensor(x)))
    np.testing.assert_allclose(J, np.diag(4 * x), rtol=1e-13)
