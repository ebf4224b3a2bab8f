"""cad.linalg (NOTE [ Linear algebra ]): forward against numpy, identities, and
derivatives of first and second order against finite differences in float64 on
well-conditioned random matrices; vmap, float32, errors."""
import numpy as np
import pytest
from _numeric import fd_grad

import cad
from cad import linalg as LA

rng = np.random.default_rng(7)


def spd(n, batch=()):
    a = rng.normal(size=batch + (n, n))
    return a @ np.swapaxes(a, -1, -2) + n * np.eye(n)


def well(n, batch=()):
    return rng.normal(size=batch + (n, n)) + 3 * np.eye(n)


def _sym(v):
    return 0.5 * (v + np.swapaxes(v, -1, -2))


def check_grad(f, x, rtol=1e-5, atol=1e-7, sym=False):
    g = np.asarray(cad.grad(f)(x))
    if sym:   # a function of a symmetric matrix (reads one triangle): symmetric directions
        for _ in range(3):
            v = _sym(rng.normal(size=x.shape))
            eps = 1e-6
            fd = (float(f(cad.tensor(x + eps * v))) - float(f(cad.tensor(x - eps * v)))) / (2 * eps)
            np.testing.assert_allclose(np.sum(g * v), fd, rtol=rtol, atol=atol)
        np.testing.assert_allclose(g, np.swapaxes(g, -1, -2), rtol=1e-10, atol=1e-12)
        return
    fd = fd_grad(lambda a: float(f(cad.tensor(a))), x)
    np.testing.assert_allclose(g, fd, rtol=rtol, atol=atol)


def check_hvp(f, x, rtol=1e-4, atol=1e-6, sym=False):
    """the Hessian (reverse over reverse) against finite differences of the gradient,
    and forward over reverse against it"""
    v = rng.normal(size=x.shape)
    if sym:
        v = _sym(v)
    H = np.asarray(cad.jacrev(cad.grad(f))(x)).reshape(x.size, x.size)
    eps = 1e-5
    fd = (np.asarray(cad.grad(f)(x + eps * v)) - np.asarray(cad.grad(f)(x - eps * v))) / (2 * eps)
    np.testing.assert_allclose(H @ v.reshape(-1), fd.reshape(-1), rtol=rtol, atol=atol)
    fr = np.asarray(cad.jvp(cad.grad(f), (x,), (v,))[1])
    np.testing.assert_allclose(fr.reshape(-1), fd.reshape(-1), rtol=rtol, atol=atol)
    # forward over forward and reverse over forward: the second directional derivative
    vv = np.sum(fd * v)
    ff = float(cad.jvp(lambda y: cad.jvp(f, (y,), (v,))[1], (x,), (v,))[1])
    np.testing.assert_allclose(ff, vv, rtol=rtol, atol=atol)
    rf = np.asarray(cad.grad(lambda y: cad.jvp(f, (y,), (v,))[1])(x))
    np.testing.assert_allclose(np.sum(rf * v), vv, rtol=rtol, atol=atol)


W = rng.normal(size=(4, 4))
V3 = rng.normal(size=4)

CASES = {
    "solve_vec": (lambda a: cad.sum(LA.solve(a, V3) * V3), lambda: well(4)),
    "solve_mat": (lambda a: cad.sum(LA.solve(a, W) ** 2), lambda: well(4)),
    "inv": (lambda a: cad.sum(LA.inv(a) * W), lambda: well(4)),
    "det": (lambda a: LA.det(a), lambda: well(4)),
    "slogdet": (lambda a: LA.slogdet(a)[1], lambda: well(4)),
    "cholesky": (lambda a: cad.sum(LA.cholesky(a) * W), lambda: spd(4)),
    "eigh_w": (lambda a: cad.sum(LA.eigh(a)[0] * V3), lambda: spd(4)),
    "eigh_v": (lambda a: cad.sum(cad.abs(LA.eigh(a)[1]) * W), lambda: spd(4)),
    "svd_s": (lambda a: cad.sum(LA.svdvals(a) * cad.tensor([1.0, 0.5, 0.25])), lambda: rng.normal(size=(4, 3))),
    "svd_u": (lambda a: cad.sum(cad.abs(LA.svd(a, full_matrices=False)[0]) * W[:, :3]),
              lambda: rng.normal(size=(4, 3))),
    "svd_vh_wide": (lambda a: cad.sum(cad.abs(LA.svd(a, full_matrices=False)[2]) * W[:3, :]),
                    lambda: rng.normal(size=(3, 4))),
    "qr_r": (lambda a: cad.sum(LA.qr(a)[1] * W[:3, :3]), lambda: rng.normal(size=(4, 3))),
    "qr_q": (lambda a: cad.sum(LA.qr(a)[0] * W[:, :3]), lambda: rng.normal(size=(4, 3))),
    "tri_lower": (lambda a: cad.sum(LA.triangular_solve(a, W) * W), lambda: well(4)),
    "tri_upper_T": (lambda a: cad.sum(LA.triangular_solve(a, V3, lower=False, trans=True) * V3),
                    lambda: well(4)),
    "lstsq": (lambda a: cad.sum(LA.lstsq(a, V3)[0] ** 2), lambda: rng.normal(size=(4, 3))),
    "matrix_power": (lambda a: cad.sum(LA.matrix_power(a, 3) * W), lambda: rng.normal(size=(4, 4))),
    "matrix_power_neg": (lambda a: cad.sum(LA.matrix_power(a, -2) * W), lambda: well(4)),
    "norm_nuc": (lambda a: LA.norm(a, "nuc"), lambda: rng.normal(size=(4, 3))),
    "norm_2": (lambda a: LA.norm(a, 2), lambda: rng.normal(size=(4, 3))),
    "pinv": (lambda a: cad.sum(LA.pinv(a) * W[:3, :]), lambda: rng.normal(size=(4, 3))),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_grad_and_hessian(name):
    f, make = CASES[name]
    x = make()
    sym = name.startswith(("cholesky", "eigh"))
    check_grad(f, x, sym=sym)
    check_hvp(f, x, sym=sym)


def test_forward_and_identities():
    A = well(5, (3,))
    S = spd(5, (2,))
    x = rng.normal(size=(3, 5, 2))
    np.testing.assert_allclose(np.asarray(LA.solve(A, A @ x)), x, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(np.asarray(LA.inv(A)), np.linalg.inv(A), rtol=1e-10)
    np.testing.assert_allclose(float(LA.det(A[0] @ A[1])), float(LA.det(A[0])) * float(LA.det(A[1])), rtol=1e-10)
    L = np.asarray(LA.cholesky(S))
    np.testing.assert_allclose(L @ np.swapaxes(L, -1, -2), S, rtol=1e-10)
    np.testing.assert_allclose(np.asarray(LA.cholesky(S, upper=True)), np.swapaxes(L, -1, -2))
    w, V = LA.eigh(S)
    w, V = np.asarray(w), np.asarray(V)
    np.testing.assert_allclose((V * w[..., None, :]) @ np.swapaxes(V, -1, -2), S, rtol=1e-10)
    M = rng.normal(size=(2, 5, 3))
    u, s, vh = (np.asarray(t) for t in LA.svd(M, full_matrices=False))
    np.testing.assert_allclose((u * s[..., None, :]) @ vh, M, rtol=1e-10, atol=1e-12)
    q, r = (np.asarray(t) for t in LA.qr(M))
    np.testing.assert_allclose(q @ r, M, rtol=1e-10, atol=1e-12)
    sg, ld = LA.slogdet(A)
    nsg, nld = np.linalg.slogdet(A)
    np.testing.assert_allclose(np.asarray(sg), nsg)
    np.testing.assert_allclose(np.asarray(ld), nld, rtol=1e-12)
    for ord in (None, 1, 2, np.inf, -np.inf, 0, 3.5):
        v = rng.normal(size=6)
        np.testing.assert_allclose(float(LA.norm(v, ord)), np.linalg.norm(v, ord), rtol=1e-12)
    for ord in (None, "fro", "nuc", 1, -1, 2, -2, np.inf, -np.inf):
        np.testing.assert_allclose(float(LA.norm(M[0], ord)), np.linalg.norm(M[0], ord), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(LA.norm(M, axis=(1, 2))), np.linalg.norm(M, axis=(1, 2)))
    np.testing.assert_allclose(np.asarray(LA.matrix_power(A[0], 0)), np.eye(5))
    np.testing.assert_allclose(np.asarray(LA.matrix_power(A[0], 5)), np.linalg.matrix_power(A[0], 5),
                               rtol=1e-10)
    np.testing.assert_allclose(np.asarray(LA.pinv(M[0])), np.linalg.pinv(M[0]), rtol=1e-8, atol=1e-12)


def test_batched_grads_match_loops():
    A = well(3, (4,))
    f = lambda a: cad.sum(LA.slogdet(a)[1]) + cad.sum(LA.solve(a, cad.tensor(np.ones((4, 3, 1)))))
    g = np.asarray(cad.grad(f)(A))
    for k in range(4):
        gk = np.asarray(cad.grad(lambda a: LA.slogdet(a)[1] + cad.sum(LA.solve(a, np.ones((3, 1)))))(A[k]))
        np.testing.assert_allclose(g[k], gk, rtol=1e-10)


def test_vmap_runs_one_batched_call():
    A = well(3, (5,))
    b = rng.normal(size=3)
    got = np.asarray(cad.vmap(lambda a: LA.solve(a, b))(A))
    np.testing.assert_allclose(got, np.linalg.solve(A, b[None, :, None])[..., 0], rtol=1e-10)
    gv = np.asarray(cad.vmap(cad.grad(lambda a: LA.slogdet(a)[1]))(A))
    np.testing.assert_allclose(gv, np.swapaxes(np.linalg.inv(A), -1, -2), rtol=1e-10)


def test_float32():
    A = well(4).astype(np.float32)
    x = LA.solve(cad.tensor(A), np.ones(4, dtype=np.float32))
    assert x.dtype == cad.float32
    g = cad.grad(lambda a: LA.slogdet(a)[1])(A)
    assert g.dtype == cad.float32
    np.testing.assert_allclose(np.asarray(g), np.linalg.inv(A).T, rtol=1e-4)


def test_errors_name_the_op_and_shapes():
    with pytest.raises(LA.LinAlgError, match=r"cad.linalg.solve.*\(3, 3\)"):
        LA.solve(np.zeros((3, 3)), np.ones(3))
    with pytest.raises(np.linalg.LinAlgError):   # numpy's class too
        LA.cholesky(-np.eye(2))
    with pytest.raises(cad.ShapeError, match=r"inv.*\(2, 3\)"):
        LA.inv(np.ones((2, 3)))
    with pytest.raises(cad.ShapeError, match=r"solve.*\(4,\)"):
        LA.solve(np.eye(3), np.ones(4))
    with pytest.raises(cad.DTypeError, match="det"):
        LA.det(cad.tensor(np.eye(2, dtype=np.int64)))


def test_against_torch():
    torch = pytest.importorskip("torch")
    A = spd(4)
    y = rng.normal(size=4)

    def tf(a):
        return 0.5 * torch.logdet(a) + 0.5 * y_t @ torch.linalg.solve(a, y_t)
    y_t = torch.tensor(y)
    at = torch.tensor(A, requires_grad=True)
    (gt,) = torch.autograd.grad(tf(at), at)
    cf = lambda a: 0.5 * LA.slogdet(a)[1] + 0.5 * cad.dot(cad.tensor(y), LA.solve(a, y))
    np.testing.assert_allclose(np.asarray(cad.grad(cf)(A)), gt.numpy(), rtol=1e-10)
    Ht = torch.autograd.functional.hessian(lambda a: torch.linalg.eigh(a)[0].sum() + torch.linalg.cholesky(a).sum(),
                                           torch.tensor(A))
    Hc = cad.hessian(lambda a: cad.sum(LA.eigh(a)[0]) + cad.sum(LA.cholesky(a)))(A)
    # eigh reads one triangle: compare on symmetric directions
    v = rng.normal(size=(4, 4))
    v = v + v.T
    np.testing.assert_allclose(np.tensordot(np.asarray(Hc), v, 2), np.tensordot(Ht.numpy(), v, 2),
                               rtol=1e-8, atol=1e-10)


@pytest.mark.cuda
def test_device_tensors_go_through_the_host():
    if not cad.cuda.is_available():
        cad.cuda._use_fake()
    A = spd(4)
    y = rng.normal(size=4)
    f = lambda a: 0.5 * LA.slogdet(a)[1] + 0.5 * cad.sum(cad.tensor(y, device=a.device) *
                                                        LA.solve(a, cad.tensor(y, device=a.device)))
    a = cad.tensor(A, device="cuda", requires_grad=True)
    out = f(a)
    assert out.device.type == "cuda"
    out.backward()
    assert a.grad.device.type == "cuda"
    np.testing.assert_allclose(np.asarray(a.grad.cpu()), np.asarray(cad.grad(f)(A)), rtol=1e-12)


def test_singular_and_shared_factors():
    s, l = LA.slogdet(np.zeros((3, 3)))
    assert float(s) == 0 and float(l) == -np.inf
    with pytest.raises(LA.LinAlgError, match="slogdet"):
        cad.grad(lambda a: LA.slogdet(a)[1])(np.zeros((3, 3)))
    # slogdet and solve of one matrix share its factors; a different matrix does not
    A, B = well(4), well(4)
    ta, tb = cad.tensor(A), cad.tensor(B)
    LA.slogdet(ta)
    np.testing.assert_allclose(np.asarray(LA.solve(tb, np.ones(4))), np.linalg.solve(B, np.ones(4)))
    np.testing.assert_allclose(np.asarray(LA.solve(ta, np.ones(4))), np.linalg.solve(A, np.ones(4)))
    np.testing.assert_allclose(float(LA.slogdet(tb)[1]), np.linalg.slogdet(B)[1])
    # empty matrices
    assert LA.solve(np.zeros((0, 0)), np.zeros(0)).shape == (0,)
    assert float(LA.det(np.zeros((0, 0)))) == 1.0


def _symmetric_indefinite(n):
    a = rng.normal(size=(n, n))
    return a + a.T + np.diag(np.where(np.arange(n) % 2 == 0, 4.0, -4.0))


@pytest.mark.parametrize("kind", ["spd", "indefinite", "mixed batch", "nonsymmetric", "spd f32"])
def test_symmetric_factors(kind):
    """NOTE [ Symmetric factors ]: a symmetric positive definite matrix is factored by
    Cholesky (pivots -1), anything else by LU; slogdet, solve and their gradients agree
    with numpy and with each other either way"""
    dt = np.float32 if "f32" in kind else np.float64
    if kind.startswith("spd"):
        A = spd(6, (2,)).astype(dt)
    elif kind == "indefinite":
        A = np.stack([_symmetric_indefinite(6), _symmetric_indefinite(6)])
    elif kind == "mixed batch":
        A = np.stack([spd(6), _symmetric_indefinite(6)])
    else:
        A = well(6, (2,))
    chol = kind.startswith("spd")
    LA._LU_LAST[0] = None
    f, piv = LA._lu(np.ascontiguousarray(A))
    assert LA._is_chol(piv) == chol
    rt = 1e-4 if dt == np.float32 else 1e-10
    s, l = LA.slogdet(A)
    s0, l0 = np.linalg.slogdet(A.astype(np.float64))
    np.testing.assert_allclose(np.asarray(s), s0)
    np.testing.assert_allclose(np.asarray(l), l0, rtol=rt)
    b = rng.normal(size=(2, 6, 3)).astype(dt)
    np.testing.assert_allclose(np.asarray(LA.solve(A, b)), np.linalg.solve(A, b), rtol=rt * 10, atol=rt)
    if dt == np.float32:
        return
    Ainv = np.linalg.inv(A)
    np.testing.assert_allclose(np.asarray(cad.grad(lambda a: cad.sum(LA.slogdet(a)[1]))(A)),
                               np.swapaxes(Ainv, -1, -2), rtol=1e-9, atol=1e-12)
    check_grad(lambda a: cad.sum(LA.slogdet(a)[1]) + cad.sum(LA.solve(a, b) ** 2), A)
    # the cotangent of b: A^-T g (the factors' transposed solve)
    gb = np.asarray(cad.grad(lambda bb: cad.sum(LA.solve(A, bb) * b))(b))
    np.testing.assert_allclose(gb, np.linalg.solve(np.swapaxes(A, -1, -2), b), rtol=1e-9, atol=1e-12)
    check_hvp(lambda a: cad.sum(LA.slogdet(a)[1]), A[0])


def test_symmetric_check_in_c():
    a = spd(40, (3,))
    assert cad._core._engine.is_symmetric(np.ascontiguousarray(a))
    b = a.copy()
    b[2, 33, 1] += 1e-15 * b[2, 33, 1] + 1e-300
    assert not cad._core._engine.is_symmetric(b)
    b = a.copy()
    b[1, 5, 6] = np.nan   # (off the diagonal: a NaN there fails potrf, LU follows)
    assert not cad._core._engine.is_symmetric(b)
    assert cad._core._engine.is_symmetric(np.zeros((2, 0, 0)))
    u = np.triu(rng.normal(size=(2, 37, 37)))
    full = cad._core._engine.symmetrize(u.copy(), True)
    np.testing.assert_array_equal(full, np.triu(u) + np.swapaxes(np.triu(u, 1), -1, -2))
    low = cad._core._engine.symmetrize(np.swapaxes(u, -1, -2).copy(), False)
    np.testing.assert_array_equal(low, full)


@pytest.mark.parametrize("n", [1, 2, 63, 64, 65, 130, 257])
@pytest.mark.parametrize("dt", [np.float64, np.float32])
def test_parallel_spd_inverse(n, dt):
    """NOTE [ Parallel SPD inverse ]: alpha A^-1 from the Cholesky factor, exactly
    symmetric, the same bits at one and two threads (blocks of 64, ragged edges)"""
    E = cad._core._engine
    A = spd(n)
    f = np.ascontiguousarray(np.linalg.cholesky(A).T).astype(dt)   # L^T C-ordered
    f[np.tril_indices(n, -1)] = np.nan   # (the other triangle is never read)
    prev = cad.get_num_threads()
    try:
        outs = []
        for nt in (1, 2):
            cad.set_num_threads(nt)
            outs.append(E.spd_inverse(f, -2.5))
    finally:
        cad.set_num_threads(prev)
    np.testing.assert_array_equal(outs[0], outs[1])
    inv = outs[0]
    assert inv.dtype == dt and inv.shape == (n, n) and inv.flags.c_contiguous
    np.testing.assert_array_equal(inv, inv.T)
    ref = -2.5 * np.linalg.inv(A)
    tol = 1e-12 if dt == np.float64 else 2e-5
    assert np.abs(inv - ref).max() <= tol * np.abs(ref).max()
    assert E.spd_inverse(np.zeros((0, 0), dt)).shape == (0, 0)
    if n > 1:
        with pytest.raises(ValueError, match="layouts"):
            E.spd_inverse(np.asfortranarray(f))
    with pytest.raises(ValueError, match="shapes"):
        E.spd_inverse(f[:, :0])


def test_slogdet_grad_of_a_batch_scales_each_inverse():
    """slogdet's first-order vjp at symmetric positive definite matrices passes each
    matrix's cotangent into the inverse (the scale of C.spd_inverse)"""
    A = spd(70, (3,))
    w = np.array([0.5, -2.0, 3.0])
    g = np.asarray(cad.grad(lambda a: cad.sum(LA.slogdet(a)[1] * w))(A))
    np.testing.assert_allclose(g, w[:, None, None] * np.linalg.inv(A), rtol=1e-9, atol=1e-13)
    g1 = np.asarray(cad.grad(lambda a: LA.slogdet(a)[1] * 2.0)(A[1]))
    np.testing.assert_allclose(g1, 2.0 * np.linalg.inv(A[1]), rtol=1e-9, atol=1e-13)


@pytest.mark.parametrize("ash, bsh", [((5, 5), (5, 3)), ((10, 5, 5), (10, 5, 5)), ((10, 5, 5), (5,)),
                                      ((1, 4, 4), (7, 4, 2)), ((3, 1, 4, 4), (1, 6, 4, 2)),
                                      ((2, 3, 3), (2, 3, 0)), ((0, 3, 3), (3, 2)), ((1, 1, 1), (1,)),
                                      ((70, 70), (70, 3))])
@pytest.mark.parametrize("dt", [np.float64, np.float32])
def test_triangular_solve_small_path_against_numpy(ash, bsh, dt):
    """NOTE [ Small triangular solves ]: substitution in C up to n = 64 (numpy's LU solve
    on the triangle above), broadcast as np.linalg.solve, each triangle, transposed;
    values and the gradients in both arguments"""
    a = (rng.normal(size=ash) + 3 * np.eye(ash[-1])).astype(dt)
    b = rng.normal(size=bsh).astype(dt)
    a_nc = np.asfortranarray(a) if a.ndim == 2 else a   # a non-contiguous layout too
    for lower in (True, False):
        for trans in (False, True):
            got = LA._trisolve_np(a_nc, b, lower, trans)
            aa = np.swapaxes(a, -1, -2) if trans else a
            ref = np.linalg.solve(np.tril(aa) if lower ^ trans else np.triu(aa), b)
            assert got.shape == ref.shape and got.dtype == ref.dtype
            np.testing.assert_allclose(got, ref, rtol=1e-4 if dt == np.float32 else 1e-10,
                                       atol=1e-4 if dt == np.float32 else 1e-10)


def test_triangular_solve_small_path_singular_and_grads():
    a = np.tril(well(4))
    a[2, 2] = 0.0
    with pytest.raises(LA.LinAlgError, match="triangular_solve"):
        LA.triangular_solve(a, np.ones((4, 2)))
    A, B = well(5, (3,)), rng.normal(size=(3, 5, 2))
    for lower, trans in ((True, False), (False, True)):
        f = lambda a_: cad.sum(cad.sin(LA.triangular_solve(a_, B, lower=lower, trans=trans)))
        check_grad(f, A)
        f = lambda b_: cad.sum(cad.sin(LA.triangular_solve(A, b_, lower=lower, trans=trans)))
        check_grad(f, B)


def test_blas_threads_set_every_openblas_and_restore():
    # NOTE [ Two OpenBLAS ] (cad/linalg.py): numpy's and scipy's bundled OpenBLAS are
    # both set to one thread for small matrices, and both restored after
    import sys
    from cad import linalg as L
    setters = L._openblas_setters()
    if not sys.platform.startswith("linux") or not setters:
        pytest.skip("no OpenBLAS with openblas_set_num_threads_local found in /proc/self/maps")
    before = [f(3) for f in setters]
    try:
        with L._blas_threads(10):
            inside = [f(1) for f in setters]
            assert inside == [1] * len(setters)
        assert [f(3) for f in setters] == [3] * len(setters)   # restored to 3
        with L._blas_threads(2000):
            pass
        assert [f(3) for f in setters] == [3] * len(setters)
    finally:
        for f, p in zip(setters, before):
            f(p)
    # the factorizations through numpy run under it: values unchanged
    A = np.random.default_rng(0).standard_normal((100, 100))
    q, r = cad.linalg.qr(A)
    np.testing.assert_allclose(np.asarray(q) @ np.asarray(r), A, atol=1e-12)
    g = cad.grad(lambda a: cad.sum(cad.linalg.qr(a)[1]))(A)
    assert np.isfinite(np.asarray(g)).all()
