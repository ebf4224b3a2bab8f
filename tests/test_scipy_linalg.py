"""cad.scipy.linalg (NOTE [ scipy.linalg ]): values against scipy.linalg, first and
second derivatives against float64 central differences (every entry of every
argument, as functions of all entries like scipy's), compositions of transforms,
vmap against a loop, float32, batches, errors."""
import warnings

import numpy as np
import pytest
import scipy.linalg as sl
from _numeric import close, fd_grad, fd_jac

import cad
from cad.scipy import linalg as cl

rng = np.random.default_rng(18)


def spd(n):
    a = rng.normal(size=(n, n))
    return a @ a.T + n * np.eye(n)


def well(n):
    return rng.normal(size=(n, n)) + 3 * np.eye(n)


def same(got, want, rtol=1e-9, atol=1e-10):
    if isinstance(want, tuple):
        assert isinstance(got, tuple) and len(got) == len(want)
        for g, w in zip(got, want):
            same(g, w, rtol, atol)
        return
    close(got, np.asarray(want), rtol=rtol, atol=atol)


def check(f, fn, x, rtol=1e-6, atol=1e-8, second=True):
    """grad and Hessian of the scalar f (cad) against central differences of fn
    (numpy; the gradient's for the Hessian), plus jvp-of-grad and grad-of-jvp
    against the Hessian"""
    g = cad.grad(f)(x)
    close(g, fd_grad(fn, x), rtol=rtol, atol=atol)
    if not second:
        return
    H = np.asarray(cad.hessian(f)(x))
    close(H, fd_jac(lambda y: np.asarray(cad.grad(f)(y)), x), rtol=1e-5, atol=1e-7)
    v = rng.normal(size=x.shape)
    Hv = np.tensordot(H, v, axes=v.ndim)
    close(cad.jvp(cad.grad(f), (x,), (v,))[1], Hv, rtol=1e-8, atol=1e-10)
    close(cad.grad(lambda y: cad.jvp(f, (y,), (v,))[1])(x), Hv, rtol=1e-8, atol=1e-10)


def smooth(y, w):
    """a non-quadratic scalar of y (cad)"""
    return cad.sum(cad.sin(y) * w)


def smooth_np(y, w):
    return float(np.sum(np.sin(y) * w))


# ---------------------------------------------------------------- values

def test_values_against_scipy():
    a, b, q, s = well(4), well(3), rng.normal(size=(4, 3)), spd(4)
    same(cl.solve_sylvester(a, b, q), sl.solve_sylvester(a, b, q))
    same(cl.solve_continuous_lyapunov(a, s), sl.solve_continuous_lyapunov(a, s))
    same(cl.expm(0.5 * a), sl.expm(0.5 * a))
    same(cl.sqrtm(s), sl.sqrtm(s))
    t = np.triu(well(4))
    for trans in (0, 1, 2, "N", "T", "C"):
        for lower in (False, True):
            for unit in (False, True):
                tt = t.T if lower else t
                same(cl.solve_triangular(tt, q, trans=trans, lower=lower, unit_diagonal=unit),
                     sl.solve_triangular(tt, q, trans=trans, lower=lower, unit_diagonal=unit))
    same(cl.solve_triangular(t, q[:, 0]), sl.solve_triangular(t, q[:, 0]))     # a vector b
    ns = s + np.triu(rng.normal(size=(4, 4)), 1)    # not symmetric: one triangle is read
    for lower in (False, True):
        c, low = cl.cho_factor(ns, lower=lower)
        cs, lows = sl.cho_factor(ns, lower=lower)
        assert low is lows
        same(c, cs)                                     # the other triangle too: a's entries
        same(cl.cho_solve((c, low), q), sl.cho_solve((cs, lows), q))
        same(cl.cho_solve((c, low), q[:, 0]), sl.cho_solve((cs, lows), q[:, 0]))
        same(cl.cholesky(ns, lower=lower), sl.cholesky(ns, lower=lower))
    same(cl.cholesky(s), np.linalg.cholesky(s).T)      # scipy's default: the upper factor
    for (l, u) in [(1, 1), (2, 0), (0, 2), (1, 2)]:
        ab = rng.normal(size=(l + u + 1, 6))
        ab[u] += 5
        for bb in (rng.normal(size=6), rng.normal(size=(6, 2))):
            same(cl.solve_banded((l, u), ab, bb), sl.solve_banded((l, u), ab, bb))


def test_reexports_values():
    a, q, s = well(4), rng.normal(size=(4, 3)), spd(4)
    ns = s + np.triu(rng.normal(size=(4, 4)), 1)
    same(cl.solve(a, q), sl.solve(a, q))
    same(cl.solve(a, q[:, 0]), sl.solve(a, q[:, 0]))
    same(cl.solve(a, q, transposed=True), sl.solve(a, q, transposed=True))
    for assume in ("sym", "pos", "diagonal", "tridiagonal", "upper triangular", "lower triangular", "banded"):
        for lower in (False, True):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                want = sl.solve(ns, q, assume_a=assume, lower=lower)
            same(cl.solve(ns, q, assume_a=assume, lower=lower), want)
    same(cl.inv(a), sl.inv(a))
    same(cl.det(a), sl.det(a))
    same(cl.det(np.stack([a, s])), sl.det(np.stack([a, s])))
    same(cl.eigh(ns), sl.eigh(ns))                          # scipy's driver: its signs too
    same(cl.eigh(ns, lower=False), sl.eigh(ns, lower=False))
    same(cl.eigh(s, eigvals_only=True), sl.eigh(s, eigvals_only=True))
    same(cl.eigh(s, subset_by_index=[1, 2]), sl.eigh(s, subset_by_index=[1, 2]))
    same(cl.eigvalsh(s), sl.eigvalsh(s))
    for A in (a, rng.normal(size=(5, 3)), rng.normal(size=(3, 5))):
        same(cl.svd(A, full_matrices=False), sl.svd(A, full_matrices=False))
        same(cl.svd(A, compute_uv=False), sl.svd(A, compute_uv=False))
        same(cl.svdvals(A), sl.svdvals(A))
        for mode in ("full", "economic", "r"):
            for piv in (False, True):
                same(cl.qr(A, mode=mode, pivoting=piv), tuple(sl.qr(A, mode=mode, pivoting=piv)))
        same(cl.pinv(A), sl.pinv(A))
        same(cl.pinv(A, return_rank=True), sl.pinv(A, return_rank=True))
        same(cl.pinv(A, atol=0.8), sl.pinv(A, atol=0.8))
        same(cl.pinv(A, rtol=0.4), sl.pinv(A, rtol=0.4))
        same(cl.norm(A), sl.norm(A))
        same(cl.norm(A, 1), sl.norm(A, 1))
        same(cl.norm(A, axis=0), sl.norm(A, axis=0))
    A, B = rng.normal(size=(6, 3)), rng.normal(size=(6, 2))
    for bb in (B, B[:, 0]):
        x, res, rank, sv = cl.lstsq(A, bb)
        xs, ress, ranks, svs = sl.lstsq(A, bb)
        same(x, xs)
        same(res, ress)
        assert rank == ranks
        same(sv, svs)
    assert cl.lstsq(A[:3], B[:3])[1].shape == sl.lstsq(A[:3], B[:3])[1].shape == (0,)


def test_float32_batches_and_empty():
    a, b, q, s = well(3), well(2), rng.normal(size=(3, 2)), spd(3)
    f32 = np.float32
    for got, want in [(cl.solve_sylvester(a.astype(f32), b.astype(f32), q.astype(f32)),
                       sl.solve_sylvester(a.astype(f32), b.astype(f32), q.astype(f32))),
                      (cl.expm(a.astype(f32)), sl.expm(a.astype(f32))),
                      (cl.sqrtm(s.astype(f32)), sl.sqrtm(s.astype(f32))),
                      (cl.cho_factor(s.astype(f32))[0], sl.cho_factor(s.astype(f32))[0]),
                      (cl.solve_banded((1, 0), (s[:2] + [[5], [0]]).astype(f32), q.astype(f32)),
                       sl.solve_banded((1, 0), (s[:2] + [[5], [0]]).astype(f32), q.astype(f32)))]:
        assert got.dtype == cad.float32 and want.dtype == np.float32
        same(got, want, rtol=2e-5, atol=2e-5)
    A = np.stack([0.3 * well(3) for _ in range(4)])
    B = np.stack([well(2) for _ in range(4)])
    Q = rng.normal(size=(4, 3, 2))
    S = np.stack([spd(3) for _ in range(4)])
    same(cl.expm(A), sl.expm(A))
    same(cl.sqrtm(S), sl.sqrtm(S))
    same(cl.solve_sylvester(A, B, Q), np.stack([sl.solve_sylvester(A[i], B[i], Q[i]) for i in range(4)]))
    same(cl.solve_sylvester(A, B[0], Q), np.stack([sl.solve_sylvester(A[i], B[0], Q[i]) for i in range(4)]))
    same(cl.solve_triangular(np.triu(A), Q), sl.solve_triangular(np.triu(A), Q))
    same(cl.expm(np.zeros((0, 0))), sl.expm(np.zeros((0, 0))))
    same(cl.expm(np.array([[2.0]])), np.exp([[2.0]]))
    same(cl.sqrtm(np.array([[4.0]])), [[2.0]])
    # integer inputs are promoted to float64, as scipy's LAPACK calls do
    same(cl.solve_triangular(np.array([[2, 1], [0, 4]]), np.array([1, 2])),
         sl.solve_triangular(np.array([[2, 1], [0, 4]]), np.array([1, 2])))


# ---------------------------------------------------------------- derivatives

def test_sylvester_derivatives_all_arguments():
    a, b, q = well(3), well(2), rng.normal(size=(3, 2))
    w = rng.normal(size=(3, 2))
    check(lambda x: smooth(cl.solve_sylvester(x, b, q), w),
          lambda x: smooth_np(sl.solve_sylvester(x, b, q), w), a)
    check(lambda x: smooth(cl.solve_sylvester(a, x, q), w),
          lambda x: smooth_np(sl.solve_sylvester(a, x, q), w), b)
    check(lambda x: smooth(cl.solve_sylvester(a, b, x), w),
          lambda x: smooth_np(sl.solve_sylvester(a, b, x), w), q)
    # the mixed second derivative d2/(da dq) against differences of the exact gradient
    J = cad.jacobian(lambda y: cad.grad(lambda x: smooth(cl.solve_sylvester(x, b, y), w))(a))(q)
    fd = fd_jac(lambda y: np.asarray(cad.grad(lambda x: smooth(cl.solve_sylvester(x, b, y), w))(a)), q)
    close(J, fd, rtol=1e-5, atol=1e-7)
    s = spd(3)
    check(lambda x: smooth(cl.solve_continuous_lyapunov(x, s), np.ones((3, 3))),
          lambda x: smooth_np(sl.solve_continuous_lyapunov(x, s), np.ones((3, 3))), a, second=False)


def test_expm_derivatives():
    a = 0.5 * rng.normal(size=(3, 3))
    w = rng.normal(size=(3, 3))
    check(lambda x: smooth(cl.expm(x), w), lambda x: smooth_np(sl.expm(x), w), a)
    # third order: a jvp of the Hessian-vector product against differences of it
    v = rng.normal(size=(3, 3))

    def hvp(x):
        return cad.jvp(cad.grad(lambda y: smooth(cl.expm(y), w)), (x,), (v,))[1]
    t3 = cad.jvp(hvp, (a,), (v,))[1]
    eps = 1e-5
    fd = (np.asarray(hvp(a + eps * v)) - np.asarray(hvp(a - eps * v))) / (2 * eps)
    close(t3, fd, rtol=1e-5, atol=1e-6)
    # the Frechet derivative against scipy's
    E = rng.normal(size=(3, 3))
    close(cad.jvp(cl.expm, (a,), (E,))[1], sl.expm_frechet(a, E, compute_expm=False))


def test_sqrtm_derivatives():
    s = spd(3) + 0.5 * rng.normal(size=(3, 3))    # not symmetric, real root
    w = rng.normal(size=(3, 3))
    check(lambda x: smooth(cl.sqrtm(x), w), lambda x: smooth_np(sl.sqrtm(x), w), s)


def test_triangular_and_cholesky_derivatives():
    t, q = well(3), rng.normal(size=(3, 2))
    w = rng.normal(size=(3, 2))
    for trans in (0, 1):
        for lower in (False, True):
            for unit in (False, True):
                kw = {"trans": trans, "lower": lower, "unit_diagonal": unit}
                check(lambda x, kw=kw: smooth(cl.solve_triangular(x, q, **kw), w),
                      lambda x, kw=kw: smooth_np(sl.solve_triangular(x, q, **kw), w), t, second=False)
    check(lambda y: smooth(cl.solve_triangular(t, y, lower=True), w),
          lambda y: smooth_np(sl.solve_triangular(t, y, lower=True), w), q)
    check(lambda x: smooth(cl.solve_triangular(x, q, trans="T", unit_diagonal=True), w),
          lambda x: smooth_np(sl.solve_triangular(x, q, trans="T", unit_diagonal=True), w), t)
    s = spd(3) + np.triu(rng.normal(size=(3, 3)), 1)   # derivatives in every entry, as scipy's function
    W = rng.normal(size=(3, 3))
    for lower in (False, True):
        check(lambda x, lo=lower: smooth(cl.cho_factor(x, lower=lo)[0], W),
              lambda x, lo=lower: smooth_np(sl.cho_factor(x, lower=lo)[0], W), s)
        check(lambda x, lo=lower: smooth(cl.cho_solve(cl.cho_factor(x, lower=lo), q), w),
              lambda x, lo=lower: smooth_np(sl.cho_solve(sl.cho_factor(x, lower=lo), q), w), s)
        check(lambda x, lo=lower: smooth(cl.cholesky(x, lower=lo), W),
              lambda x, lo=lower: smooth_np(sl.cholesky(x, lower=lo), W), s, second=False)
    c = sl.cho_factor(spd(3))
    check(lambda y: smooth(cl.cho_solve(c, y), w), lambda y: smooth_np(sl.cho_solve(c, y), w), q)


@pytest.mark.parametrize("l,u", [(1, 2), (2, 0), (0, 1), (0, 0), (1, 1)])
def test_banded_derivatives_respect_the_layout(l, u):
    n = 5
    ab = rng.normal(size=(l + u + 1, n))
    ab[u] += 5
    b = rng.normal(size=(n, 2))
    w = rng.normal(size=(n, 2))
    check(lambda x: smooth(cl.solve_banded((l, u), x, b), w),
          lambda x: smooth_np(sl.solve_banded((l, u), x, b), w), ab)
    check(lambda y: smooth(cl.solve_banded((l, u), ab, y), w),
          lambda y: smooth_np(sl.solve_banded((l, u), ab, y), w), b, second=(l, u) == (1, 2))
    check(lambda y: smooth(cl.solve_banded((l, u), ab, y), w[:, 0]),      # a vector b
          lambda y: smooth_np(sl.solve_banded((l, u), ab, y), w[:, 0]), b[:, 0], second=False)
    g = np.asarray(cad.grad(lambda x: smooth(cl.solve_banded((l, u), x, b), w))(ab))
    # the unused corners of the band storage (ab[u + i - j, j] outside 0 <= i < n) get zero
    for r in range(l + u + 1):
        for j in range(n):
            i = r - u + j
            if not 0 <= i < n:
                assert g[r, j] == 0.0, (r, j)
    # the dense gradient read back through the layout: ab[u + i - j, j] == a[i, j]
    a = np.zeros((n, n))
    for r in range(l + u + 1):
        for j in range(n):
            i = r - u + j
            if 0 <= i < n:
                a[i, j] = ab[r, j]
    ga = np.asarray(cad.grad(lambda x: smooth(cl.solve(x, b), w))(a))
    for r in range(l + u + 1):
        for j in range(n):
            i = r - u + j
            if 0 <= i < n:
                assert abs(g[r, j] - ga[i, j]) < 1e-12


def test_reexport_derivatives():
    s = spd(3) + np.tril(rng.normal(size=(3, 3)), -1)
    W = rng.normal(size=(3, 3))
    # eigh reads one triangle: the derivative in every entry (eigenvectors through
    # squares, which do not depend on their signs)
    for lower in (True, False):
        check(lambda x, lo=lower: smooth(cl.eigh(x, lower=lo)[1] ** 2, W) + cad.sum(cl.eigh(x, lower=lo)[0] ** 2),
              lambda x, lo=lower: smooth_np(sl.eigh(x, lower=lo)[1] ** 2, W) + float(np.sum(sl.eigh(x, lower=lo)[0] ** 2)),
              s, rtol=1e-5, atol=1e-6, second=lower)
    a, q = well(3), rng.normal(size=(3, 2))
    w = rng.normal(size=(3, 2))
    check(lambda x: smooth(cl.solve(x, q, assume_a="pos"), w),
          lambda x: smooth_np(sl.solve(x, q, assume_a="pos"), w), spd(3) + np.triu(W, 1))
    check(lambda x: smooth(cl.solve(x, q, transposed=True), w),
          lambda x: smooth_np(sl.solve(x, q, transposed=True), w), a, second=False)
    check(lambda x: cl.det(x) ** 2, lambda x: sl.det(x) ** 2, a, second=False)
    check(lambda x: smooth(cl.inv(x), W), lambda x: smooth_np(sl.inv(x), W), a, second=False)
    A = rng.normal(size=(5, 3))
    check(lambda x: smooth(cl.qr(x, mode="economic")[0], np.ones((5, 3))),
          lambda x: smooth_np(sl.qr(x, mode="economic")[0], np.ones((5, 3))), A, second=False)
    check(lambda x: smooth(cl.qr(x)[1], np.ones((3, 5))),
          lambda x: smooth_np(sl.qr(x)[1], np.ones((3, 5))), A.T.copy(), second=False)
    check(lambda x: smooth(cl.pinv(x), np.ones((3, 5))), lambda x: smooth_np(sl.pinv(x), np.ones((3, 5))),
          A, second=False)
    y = rng.normal(size=5)
    check(lambda x: cl.lstsq(x, y)[1], lambda x: float(sl.lstsq(x, y)[1]), A, second=False)
    check(lambda x: smooth(cl.svd(x, full_matrices=False)[1], np.ones(3)),
          lambda x: smooth_np(sl.svd(x, full_matrices=False)[1], np.ones(3)), A, second=False)


# ---------------------------------------------------------------- transforms

def _vs_loop(f, *xs):
    got = cad.vmap(f)(*xs)
    rows = [f(*[x[i] for x in xs]) for i in range(xs[0].shape[0])]
    if isinstance(got, tuple):
        for k, g in enumerate(got):
            close(g, np.stack([np.asarray(r[k]) for r in rows]), rtol=1e-9, atol=1e-10)
    else:
        close(got, np.stack([np.asarray(r) for r in rows]), rtol=1e-9, atol=1e-10)


def test_vmap_of_grad_against_a_loop():
    A = cad.tensor(np.stack([0.4 * well(3) for _ in range(3)]))
    B = cad.tensor(np.stack([well(2) for _ in range(3)]))
    Q = cad.tensor(rng.normal(size=(3, 3, 2)))
    S = cad.tensor(np.stack([spd(3) for _ in range(3)]))
    AB = cad.tensor(rng.normal(size=(3, 3, 4)) + np.array([0.0, 5.0, 0.0])[:, None])
    bb = cad.tensor(rng.normal(size=(3, 4)))
    _vs_loop(cl.solve_sylvester, A, B, Q)
    _vs_loop(cad.grad(lambda a, b, q: cad.sum(cad.sin(cl.solve_sylvester(a, b, q))), argnums=(0, 1, 2)), A, B, Q)
    _vs_loop(cad.grad(lambda a: cad.sum(cad.sin(cl.expm(a)))), A)
    _vs_loop(cad.grad(lambda a: cad.sum(cad.sin(cl.sqrtm(a)))), S)
    _vs_loop(cad.grad(lambda a, q: cad.sum(cad.sin(cl.cho_solve(cl.cho_factor(a), q))), argnums=(0, 1)), S, Q)
    _vs_loop(cad.grad(lambda a, q: cad.sum(cad.sin(cl.solve_triangular(a, q, unit_diagonal=True))),
                      argnums=(0, 1)), A, Q)
    _vs_loop(cad.grad(lambda x, y: cad.sum(cad.sin(cl.solve_banded((1, 1), x, y))), argnums=(0, 1)), AB, bb)
    _vs_loop(cad.grad(lambda a: cad.sum(cad.sin(cl.eigh(a)[1] ** 2))), S)
    # only one argument batched; and the Hessian under vmap
    b0 = B[0]
    _vs_loop(lambda q: cad.grad(lambda a: cad.sum(cad.sin(cl.solve_sylvester(a, b0, q))))(A[0]), Q)
    _vs_loop(cad.hessian(lambda a: cad.sum(cad.sin(cl.expm(a)))), A)


def test_backward_create_graph():
    a = cad.tensor(0.5 * well(3), requires_grad=True)
    y = cad.sum(cad.sin(cl.expm(a)))
    y.backward(create_graph=True)
    g = a.grad
    w = rng.normal(size=(3, 3))
    a2 = cad.tensor(np.asarray(a.detach()))
    H = np.asarray(cad.hessian(lambda x: cad.sum(cad.sin(cl.expm(x))))(a2)).reshape(9, 9)
    a.grad = None
    cad.sum(g * cad.tensor(w)).backward()
    close(a.grad, (H @ w.reshape(-1)).reshape(3, 3), rtol=1e-9, atol=1e-10)


# ---------------------------------------------------------------- errors

def test_errors():
    LinAlgError = cad.linalg.LinAlgError
    with pytest.raises(LinAlgError, match=r"solve_sylvester.*common eigenvalues.*\(2, 2\)"):
        cl.solve_sylvester(np.eye(2), -np.eye(2), np.ones((2, 2)))
    with pytest.raises(LinAlgError, match=r"cho_factor.*\(2, 2\)"):
        cl.cho_factor(-np.eye(2))
    with pytest.raises(LinAlgError, match="cholesky"):
        cl.cholesky(np.diag([1.0, -1.0]))
    with pytest.raises(LinAlgError, match="solve_triangular"):
        cl.solve_triangular(np.zeros((2, 2)), np.ones(2))
    with pytest.raises(LinAlgError, match="solve_banded"):
        cl.solve_banded((1, 1), np.zeros((3, 3)), np.ones(3))
    with pytest.raises(LinAlgError, match=r"cad.scipy.linalg.solve\b"):
        cl.solve(np.ones((2, 2)), np.ones(2))
    with pytest.raises(LinAlgError, match="sqrtm.*no real square root"):
        cl.sqrtm(np.diag([-4.0, 9.0]))
    assert isinstance(LinAlgError("x"), np.linalg.LinAlgError)
    with pytest.raises(ValueError, match=r"l\+u\+1 \(3\) does not equal ab.shape\[0\] \(2\)"):
        cl.solve_banded((1, 1), np.ones((2, 3)), np.ones(3))
    with pytest.raises(ValueError, match="not compatible"):
        cl.solve_banded((1, 1), np.ones((3, 3)), np.ones(4))
    with pytest.raises(ValueError, match=r"solve_sylvester.*\(3, 3\).*\(2, 2\).*\(3, 3\)"):
        cl.solve_sylvester(np.eye(3), np.eye(2), np.ones((3, 3)))
    with pytest.raises(ValueError, match=r"expm.*square.*\(2, 3\)"):
        cl.expm(np.ones((2, 3)))
    with pytest.raises(ValueError, match="infs or NaNs"):
        cl.solve_triangular(np.array([[1.0, np.nan], [0.0, 1.0]]), np.ones(2))
    cl.solve_triangular(np.array([[1.0, np.nan], [0.0, 1.0]]), np.ones(2), lower=True, check_finite=False)
    with pytest.raises(ValueError, match="trans"):
        cl.solve_triangular(np.eye(2), np.ones(2), trans=3)
    with pytest.raises(ValueError, match=r"solve_triangular.*\(2, 2\).*\(3,\)"):
        cl.solve_triangular(np.eye(2), np.ones(3))
    with pytest.raises(TypeError, match="cho_solve"):
        cl.cho_solve(np.eye(2), np.ones(2))
    with pytest.raises(NotImplementedError, match="generalized"):
        cl.eigh(np.eye(2), np.eye(2))
    with pytest.raises(ValueError, match="assume_a"):
        cl.solve(np.eye(2), np.ones(2), assume_a="nonsense")
    with pytest.raises(ValueError, match="mode"):
        cl.qr(np.eye(2), mode="raw")
    with pytest.raises(ValueError, match="economic"):
        cad.grad(lambda x: cad.sum(cl.qr(x)[0]))(rng.normal(size=(4, 2)))


def test_cuda_goes_through_the_host_and_back(cuda_or_fake):
    a, b, q = well(3), well(2), rng.normal(size=(3, 2))
    ad, bd, qd = (cad.tensor(x, device="cuda") for x in (a, b, q))
    x = cl.solve_sylvester(ad, bd, qd)
    assert x.device.type == "cuda"
    close(x.cpu(), sl.solve_sylvester(a, b, q))
    g = cad.grad(lambda t: cad.sum(cad.sin(cl.expm(t))))(ad)
    assert g.device.type == "cuda"
    close(g.cpu(), cad.grad(lambda t: cad.sum(cad.sin(cl.expm(t))))(a))
    S = spd(3)
    c = cl.cho_factor(cad.tensor(S, device="cuda"))
    close(cl.cho_solve(c, qd).cpu(), sl.cho_solve(sl.cho_factor(S), q))
