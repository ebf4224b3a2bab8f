"""NOTE [ Batched reverse sweep ] (tapeview.pxi's reverse_sweep_b): jacrev's sweep of a
batch of cotangents (a Diag seed, dense batches after a matmul) in Cython, diagonal
elementwise records and dense batches through elementwise records without their
Python rule.  Checked against the Python loop
(transforms._C_REVERSE = False) bit for bit, finite differences and torch.func."""
import numpy as np
import pytest

import cad
import cad.transforms as T

from _numeric import fd_jac, on_and_off, same_in_threads

rng = np.random.default_rng(77)
N = 20   # outputs over transforms._JAC_ROWS: the batched sweep (smaller ones go row by row)
W = rng.standard_normal((N, N)) / np.sqrt(N)
B = rng.standard_normal((3, N)) * 0.5
IDX = np.array([3, 0, 0, 7, 19, 2])


def _chain(y):
    for _ in range(3):
        y = cad.sin(y) * 1.1 + y * y * 0.1 - cad.exp(-y * y)
    return y


FUNCS = {
    "ew chain after matmul": (lambda x: _chain(cad.tensor(W) @ x), (N,)),
    "ew before matmul": (lambda x: cad.tensor(W) @ _chain(x), (N,)),
    "diag and dense meet": (lambda x: cad.sin(x) * x + cad.tensor(W) @ x, (N,)),
    "one value twice": (lambda x: (x + x) * cad.cos(x) - x, (N,)),
    "broadcast (densified)": (lambda x: cad.sin(x[:, None] + cad.tensor(B).T), (N,)),
    "pow by constants": (lambda x: x ** 3 + x ** 2.5 - (x + 2.0) ** -1.5, (N,)),
    "identity reshape": (lambda x: cad.tanh(cad.reshape(x, (4, 6))) * 2.0, (4, 6)),
    "2-D": (lambda x: cad.tanh(x @ cad.tensor(W)) * x, (3, N)),
    "sum in the middle": (lambda x: cad.exp(x) * cad.sum(x * x), (N,)),
    "tuple output": (lambda x: (cad.sin(x) * x, cad.sum(cad.exp(x))), (N,)),
    "size 0": (lambda x: cad.sin(x) * 2.0, (0,)),
    "row sums": (lambda x: cad.sum(x ** 2.0, axis=1) * cad.sum(cad.sin(x)), (N, 3)),
    "column sums keepdims": (lambda x: cad.exp(cad.sum(x * x, axis=0, keepdims=True)) * 0.5, (3, N)),
    # linear records and max/min (_lin_vjp_r with a batch; a Diag made dense)
    "max and min of rows": (lambda x: cad.max(x, axis=1) * cad.min(cad.sin(x), axis=1) + cad.sum(x, axis=1), (N, 3)),
    "slices, gathers, concatenate": (lambda x: cad.concatenate([cad.sin(x[1:]) * x[:-1], cad.exp(x[IDX]),
                                                                (cad.tensor(W) @ x)[::4]]), (N,)),
    "cumsum both ways": (lambda x: cad.cumsum(cad.sin(x) * x, axis=0) + cad.cumsum(cad.tensor(W) @ x, axis=0,
                                                                                  reverse=True), (N,)),
    "a 0-d factor beside the diagonal": (lambda x: cad.sin(x) * cad.sum(x * x) + cad.exp(x) / cad.max(x)
                                          - cad.sum(x) ** 2.0, (N,)),
    "gradient of slices (unview, scatter)": (lambda x: cad.grad(lambda u: cad.sum(cad.sin(u[1:]) * u[:-1])
                                                                + cad.sum(cad.exp(u[IDX])))(x), (N,)),
}


def _pos(shape):
    return rng.uniform(0.2, 1.2, shape)


def _np(r):
    return tuple(np.asarray(e) for e in r) if isinstance(r, tuple) else np.asarray(r)


def _equal(a, b):
    if isinstance(a, tuple):
        for p, q in zip(a, b):
            np.testing.assert_array_equal(p, q)
    else:
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", list(FUNCS))
def test_jacrev_matches_the_python_loop_and_differences(name, dtype, monkeypatch):
    f, shape = FUNCS[name]
    x = _pos(shape).astype(dtype)
    a, b = on_and_off(monkeypatch, T, "_C_REVERSE", lambda: _np(cad.jacrev(f)(cad.tensor(x))))
    _equal(a, b)
    if dtype == np.float64 and not isinstance(a, tuple):
        J = fd_jac(lambda v: np.asarray(f(cad.tensor(v))), x)
        np.testing.assert_allclose(a, J, rtol=1e-6, atol=1e-7)
    if dtype == np.float64 and not isinstance(a, tuple) and x.size:
        # jacfwd agrees (another sweep)
        np.testing.assert_allclose(a, np.asarray(cad.jacfwd(f)(cad.tensor(x))), rtol=1e-12, atol=1e-13)


def test_recording_batched_sweeps(monkeypatch):
    """jacfwd(jacrev) with several argnums and jacrev under an outer grad: the batched
    sweep records (third order through it)"""
    f = lambda x, y: cad.sum(_chain(cad.tensor(W) @ x) * y)   # noqa: E731
    x, y = _pos(N), _pos(N)

    def run():
        H = cad.hessian(f, argnums=(0, 1))(cad.tensor(x), cad.tensor(y))
        g = cad.grad(lambda v: cad.sum(cad.jacrev(lambda u: _chain(u * v))(cad.tensor(x)) ** 2))(cad.tensor(y))
        return [np.asarray(H[i][j]) for i in range(2) for j in range(2)] + [np.asarray(g)]
    a, b = on_and_off(monkeypatch, T, "_C_REVERSE", run)
    for p, q in zip(a, b):
        np.testing.assert_array_equal(p, q)
    Hxx = fd_jac(lambda v: np.asarray(cad.grad(f)(cad.tensor(v), cad.tensor(y))), x)
    np.testing.assert_allclose(a[0], Hxx, rtol=1e-6, atol=1e-6)
    gfd = fd_jac(lambda v: float(cad.sum(cad.jacrev(lambda u: _chain(u * cad.tensor(v)))(cad.tensor(x)) ** 2)), y)
    np.testing.assert_allclose(a[4], gfd.reshape(-1), rtol=1e-6, atol=1e-6)


def test_vmapped_vjp_and_dense_seeds(monkeypatch):
    f = FUNCS["ew before matmul"][0]
    x = cad.tensor(_pos(N))
    cts = cad.tensor(rng.standard_normal((3, N)))

    def run():
        _, pb = cad.vjp(f, x)
        return np.asarray(cad.vmap(pb)(cts)[0])
    a, b = on_and_off(monkeypatch, T, "_C_REVERSE", run)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(a, np.asarray(cts) @ np.asarray(cad.jacrev(f)(x)), rtol=1e-12)


def test_threads():
    f = FUNCS["ew chain after matmul"][0]
    xs = [cad.tensor(_pos(N)) for _ in range(6)]
    same_in_threads(lambda x: np.asarray(cad.jacrev(f)(x)), xs, 5)


def test_against_torch_func():
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(110).uniform(0.2, 1.2, N)   # (its own draw: not the module's rng)
    Wt = torch.tensor(W)

    def ft(u):
        y = Wt @ u
        for _ in range(3):
            y = torch.sin(y) * 1.1 + y * y * 0.1 - torch.exp(-y * y)
        return y
    want = torch.func.jacrev(ft)(torch.tensor(x)).numpy()
    np.testing.assert_allclose(np.asarray(cad.jacrev(FUNCS["ew chain after matmul"][0])(cad.tensor(x))), want,
                               rtol=1e-13)


def test_diagonal_records_take_no_rule(monkeypatch):
    seen = []
    real = T._rev_record
    monkeypatch.setattr(T, "_rev_record", lambda tape, rec, g, nb, dep: seen.append(rec[0]) or
                        real(tape, rec, g, nb, dep))
    from cad.ops._registry import primitives
    names = [p.name for p in primitives()]
    cad.jacrev(FUNCS["ew chain after matmul"][0])(cad.tensor(_pos(N)))
    assert seen == []   # (W @ x's diagonal batch for x: rows of W scaled, _mv_vjp_b)
    cad.jacrev(FUNCS["pow by constants"][0])(cad.tensor(_pos(N)))
    assert seen == []
    # dense batches (after the matmul) through elementwise records and the matmul
    cad.jacrev(FUNCS["ew before matmul"][0])(cad.tensor(_pos(N)))
    assert seen == []
    # a sum's dense batch (_sum_vjp_b); the broadcasting product around it too
    cad.jacrev(FUNCS["row sums"][0])(cad.tensor(_pos((N, 3))))
    assert seen == []
    seen.clear()
    # the linear records and max/min, dense batches and Diags made dense
    for name in ("max and min of rows", "slices, gathers, concatenate", "cumsum both ways",
                 "gradient of slices (unview, scatter)", "a 0-d factor beside the diagonal"):
        f, shape = FUNCS[name]
        seen.clear()
        cad.jacrev(f)(cad.tensor(_pos(shape)))
        lin = [names[op] for op in seen if names[op] in ("sum", "max", "min", "view", "unview", "gather",
                                                         "scatter", "concatenate", "cumsum", "cast",
                                                         "mul", "div", "sub")]
        assert lin == [], (name, [names[op] for op in seen])
    seen.clear()
    # the matrix wanted too: the rule's body (NOTE [ Matmul's rules written once ])
    cad.jacrev(lambda a, x: cad.tanh(a @ x), argnums=(0, 1))(cad.tensor(W), cad.tensor(_pos(N)))
    assert seen == []


def test_matrix_and_vector_both_wanted(monkeypatch):
    f = lambda a, x: _chain(a @ x)   # noqa: E731
    a, x = W.copy(), _pos(N)
    run = lambda: [np.asarray(j) for j in cad.jacrev(f, argnums=(0, 1))(cad.tensor(a), cad.tensor(x))]  # noqa: E731
    got, want = on_and_off(monkeypatch, T, "_C_REVERSE", run)
    for p, q in zip(got, want):
        np.testing.assert_array_equal(p, q)
    Jx = fd_jac(lambda v: np.asarray(f(cad.tensor(a), cad.tensor(v))), x)
    np.testing.assert_allclose(got[1], Jx, rtol=1e-6, atol=1e-7)


def test_casts(monkeypatch):
    """a batch through float casts both ways: the Python loop's result, and
    differences at float32's precision"""
    f = lambda x: cad.tanh((cad.tensor(W) @ x).astype(np.float32)).astype(np.float64) * x  # noqa: E731
    x = np.random.default_rng(111).uniform(0.2, 1.2, N)
    a, b = on_and_off(monkeypatch, T, "_C_REVERSE", lambda: np.asarray(cad.jacrev(f)(cad.tensor(x))))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(a, fd_jac(lambda v: np.asarray(f(cad.tensor(v))), x, eps=1e-3), rtol=2e-3, atol=2e-3)
