"""NOTE [ Scaled tangents ]: a batch of tangents kept as m * v through elementwise
records.  Every case against the same transform with the structure off (every batch
dense, the rules' own products), against finite differences, and W7's Hessian
against its closed form; eager, recorded (tape.hessian) and differentiated again."""
import numpy as np
import pytest

import cad
import cad.transforms as T

from _numeric import fd_grad, fd_jac


@pytest.fixture
def unscaled(monkeypatch):
    def off():
        monkeypatch.setattr(T, "_SCALED", False)
    return off


def _rng(seed=0):
    return np.random.default_rng(seed)


def _w7(W):
    return lambda x: cad.sum(x ** 3) + cad.sum(cad.tanh(W @ x))


def _w7_hessian(Wn, xn):
    t = np.tanh(Wn @ xn)
    return np.diag(6 * xn) + Wn.T @ np.diag(-2 * t * (1 - t * t)) @ Wn


@pytest.mark.parametrize("n", [1, 3, 32])
def test_w7_eager_and_recorded(n):
    r = _rng(n)
    Wn, xn = r.standard_normal((n, n)) / np.sqrt(n), r.standard_normal(n)
    W, x = cad.tensor(Wn), cad.tensor(xn)
    want = _w7_hessian(Wn, xn)
    np.testing.assert_allclose(np.asarray(cad.hessian(_w7(W), x)), want, rtol=1e-12, atol=1e-12)
    tape = cad.record(_w7(W), x)
    for _ in range(2):   # the first call records the Hessian's tape, the second replays it
        np.testing.assert_allclose(np.asarray(tape.hessian(x)), want, rtol=1e-12, atol=1e-12)


def test_w7_recorded_tape_has_one_product_at_the_batch_size():
    """the chain tanh, square, sub, mul of the gradient's tanh part is recorded on
    128-vectors and the batch multiplied in once (four (n, n) products before)"""
    n = 16
    r = _rng(1)
    W, x = cad.tensor(r.standard_normal((n, n))), cad.tensor(r.standard_normal(n))
    tape = cad.record(_w7(W), x)
    tape.hessian(x)
    ht = list(tape._hessian_tapes.values())[0]
    big = [line for line in str(ht).splitlines()[1:]
           if line.rstrip().endswith(f"[{n}, {n}]") and "view(" not in line]
    # the batch times the tanh chain's factor, the GEMM, and x**3's diagonal added
    # by one setitem (Diag.plus; a densified diagonal and an add before)
    assert len(big) == 3, "\n".join(big)
    assert sum("setitem(" in line for line in big) == 1


def _same(f, x, unscaled, transform, rtol=1e-12):
    got = np.asarray(transform(f)(x))
    unscaled()
    ref = np.asarray(transform(f)(x))
    np.testing.assert_allclose(got, ref, rtol=rtol, atol=1e-12)
    return got


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_chain_after_matmul_jacfwd(unscaled, dtype):
    r = _rng(2)
    A = cad.tensor(r.standard_normal((5, 4)).astype(dtype))
    x = cad.tensor(r.standard_normal(4).astype(dtype))

    def f(x):
        y = A @ x
        return cad.sin(cad.exp(y * 0.5) - 1.0) / (1.0 + y * y)
    got = _same(f, x, unscaled, cad.jacfwd, rtol=1e-5 if dtype == np.float32 else 1e-12)
    if dtype == np.float64:
        np.testing.assert_allclose(got, fd_jac(lambda v: np.asarray(f(cad.tensor(v))),
                                                    np.asarray(x)), rtol=1e-6, atol=1e-8)


def test_mixed_with_the_diagonal_and_two_batches(unscaled):
    """a Scaled batch meeting jacfwd's Diag seed (x * ...), and two batches of
    different m (A @ x and B @ x) added: both densified, the rules decide"""
    r = _rng(3)
    A, B = cad.tensor(r.standard_normal((4, 4))), cad.tensor(r.standard_normal((4, 4)))
    x = cad.tensor(r.standard_normal(4))

    def f(x):
        return cad.tanh(A @ x) * x + cad.cos(B @ x) * cad.exp(A @ x)
    got = _same(f, x, unscaled, cad.jacfwd)
    np.testing.assert_allclose(got, fd_jac(lambda v: np.asarray(f(cad.tensor(v))), np.asarray(x)),
                               rtol=1e-6, atol=1e-8)


def test_broadcast_input_is_not_scaled(unscaled):
    """an elementwise record whose input is broadcast to its output: the factor would
    not be the output's, so the batch is densified first"""
    r = _rng(4)
    A = cad.tensor(r.standard_normal((3, 3)))
    c = cad.tensor(r.standard_normal((2, 3)))
    x = cad.tensor(r.standard_normal(3))

    def f(x):
        y = cad.exp(A @ x)          # (3,), scaled
        return cad.sin(y + c) * 2.0  # broadcast to (2, 3)
    got = _same(f, x, unscaled, cad.jacfwd)
    np.testing.assert_allclose(got, fd_jac(lambda v: np.asarray(f(cad.tensor(v))), np.asarray(x)),
                               rtol=1e-6, atol=1e-8)


def test_matrix_input_and_constant_exponent(unscaled):
    """a 2-D value (batch m of shape (k, 3, 2)) and pow with a constant exponent
    (a rule with a special-case partial: not the fused row)"""
    r = _rng(5)
    B = cad.tensor(r.standard_normal((4, 2)))
    X = cad.tensor(r.standard_normal((3, 4)))

    def f(X):
        return cad.log1p((X @ B) ** 2.0) ** 3.0
    got = _same(f, X, unscaled, cad.jacfwd)
    fd = fd_jac(lambda v: np.asarray(f(cad.tensor(v))), np.asarray(X))
    np.testing.assert_allclose(got, fd, rtol=1e-6, atol=1e-8)


def test_differentiated_again(unscaled):
    """jacfwd inside grad: the scaled batch and its factor are recorded (m itself
    tracked when the matrix depends on the outer variable), and the outer gradient
    agrees with the dense batches' and with finite differences"""
    r = _rng(6)
    An = r.standard_normal((3, 3))
    x0 = r.standard_normal(3)

    def outer(s):
        A = cad.tensor(An) * s[0]   # the batch from A @ x depends on s

        def f(x):
            return cad.tanh(A @ x) * 3.0 - cad.square(A @ x)
        return cad.sum(cad.jacfwd(f)(cad.tensor(x0) * s[1]))
    s = cad.tensor(np.array([0.7, 1.3]))
    g = np.asarray(cad.grad(outer)(s))
    unscaled()
    np.testing.assert_allclose(g, np.asarray(cad.grad(outer)(s)), rtol=1e-12, atol=1e-12)
    fd = fd_grad(lambda v: float(np.asarray(outer(cad.tensor(v)))), np.asarray(s))
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-8)


def test_third_order(unscaled):
    r = _rng(7)
    W = cad.tensor(r.standard_normal((3, 3)))
    x = cad.tensor(r.standard_normal(3))
    f = _w7(W)
    got = np.asarray(cad.jacfwd(cad.hessian(f))(x))
    unscaled()
    ref = np.asarray(cad.jacfwd(cad.hessian(f))(x))
    np.testing.assert_allclose(got, ref, rtol=1e-11, atol=1e-11)
    fd = fd_jac(lambda v: np.asarray(cad.hessian(f)(cad.tensor(v))).ravel(), np.asarray(x))
    np.testing.assert_allclose(got.reshape(9, 3), fd, rtol=1e-5, atol=1e-7)


def test_vmap_of_jacfwd(unscaled):
    r = _rng(8)
    A = cad.tensor(r.standard_normal((3, 3)))
    xs = cad.tensor(r.standard_normal((4, 3)))

    def f(x):
        return cad.exp(cad.tanh(A @ x))
    got = np.asarray(cad.vmap(cad.jacfwd(f))(xs))
    unscaled()
    np.testing.assert_allclose(got, np.asarray(cad.vmap(cad.jacfwd(f))(xs)), rtol=1e-12, atol=1e-12)


def test_size_zero_and_scalar_values(unscaled):
    A = cad.tensor(np.zeros((0, 3)))
    x = cad.tensor(np.ones(3))
    j = cad.jacfwd(lambda x: cad.exp(A @ x))(x)
    assert tuple(j.shape) == (0, 3)
    a = cad.tensor(np.array([1.0, 2.0]))
    j = cad.jacfwd(lambda x: cad.exp(cad.sum(a * x)) * 2.0)(cad.tensor(np.array([0.1, 0.2])))
    e = np.exp(0.1 + 0.4)
    np.testing.assert_allclose(np.asarray(j), 2 * e * np.array([1.0, 2.0]), rtol=1e-12)


def test_diag_plus_dense():
    """Diag.plus: a dense batch plus a diagonal one by a setitem of the diagonal,
    eager and recorded, differentiated through both, the dense batch not changed"""
    from cad.ops._rules import Diag
    r = _rng(9)
    t0 = r.standard_normal((4, 4))
    v0 = r.standard_normal(4)
    t, v = cad.tensor(t0), cad.tensor(v0)
    got = Diag(v) + t
    np.testing.assert_allclose(np.asarray(got), t0 + np.diag(v0), rtol=0, atol=0)
    np.testing.assert_allclose(np.asarray(t), t0, rtol=0, atol=0)
    t3 = cad.tensor(r.standard_normal((4, 2, 2)))   # a batch of a 2-D value
    v3 = cad.tensor(r.standard_normal((2, 2)))
    want = np.asarray(t3) + np.eye(4).reshape(4, 2, 2) * np.asarray(v3)
    np.testing.assert_allclose(np.asarray(Diag(v3) + t3), want, rtol=0, atol=1e-15)
    assert Diag(v).plus(cad.tensor(np.ones((3, 4)))) is None   # not (n,) + v.shape
    # nothing tracked: the adds in numpy, equal to the engine's (a tracked batch) bit for
    # bit, a transposed batch read in its logical order and left as it was
    tn = cad.tensor(t0.T.copy()).T
    tr = cad.tensor(t0.T.copy(), requires_grad=True).T
    a, b = Diag(v).plus(tn), Diag(v).plus(tr)
    assert not a.requires_grad and b.requires_grad
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b.detach()))
    np.testing.assert_array_equal(np.asarray(a), t0 + np.diag(v0))
    np.testing.assert_array_equal(np.asarray(tn), t0)
    assert Diag(v).plus(cad.tensor(np.ones((4, 4), dtype=np.float32))) is None

    def f(a, b):   # through the setitem, both arguments
        return cad.sum(cad.sin(Diag(a * 2.0) + cad.exp(b)))
    ga, gb = cad.grad(f, argnums=(0, 1))(v, t)
    e = np.exp(t0) + np.diag(2 * v0)
    np.testing.assert_allclose(np.asarray(ga), 2 * np.diag(np.cos(e)), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(gb), np.cos(e) * np.exp(t0), rtol=1e-12)
    tape = cad.record(f, v, t)
    for a, b in zip(tape.grad(v, t, argnums=(0, 1)), (ga, gb)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-12)


def test_hessian_with_diagonal_and_dense_parts_second_order(unscaled):
    """x * c + A.T @ tanh(A @ x) pieces: the add of a Diag and a dense tangent inside
    a recorded Hessian and a third derivative through it"""
    r = _rng(10)
    A = cad.tensor(r.standard_normal((5, 5)))
    c = cad.tensor(r.standard_normal(5))

    def f(x):
        return cad.sum(cad.exp(x) * c) + cad.sum(cad.log1p(cad.square(A @ x)))
    x = cad.tensor(r.standard_normal(5) * 0.3)
    tape = cad.record(f, x)
    h1 = np.asarray(cad.hessian(f, x))
    np.testing.assert_allclose(np.asarray(tape.hessian(x)), h1, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(np.asarray(tape.hessian(x)), h1, rtol=1e-12, atol=1e-12)
    fd = fd_jac(lambda v: np.asarray(cad.grad(f)(cad.tensor(v))), np.asarray(x))
    np.testing.assert_allclose(h1, fd, rtol=1e-6, atol=1e-7)
    d3 = np.asarray(cad.jacfwd(cad.hessian(f))(x))
    unscaled()
    np.testing.assert_allclose(d3, np.asarray(cad.jacrev(cad.jacrev(cad.grad(f)))(x)), rtol=1e-10, atol=1e-10)
