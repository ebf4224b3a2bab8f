"""cad.scipy.signal (NOTE [ Direct convolution ]): values against scipy.signal in
every mode and shape rule, first and second derivatives in both inputs against
float64 central differences, compositions of transforms, vmap, errors."""
import numpy as np
import pytest
import scipy.signal as ss
from _numeric import close, fd_grad, fd_jac

import cad
from cad.scipy import signal as cs

rng = np.random.default_rng(18)

SHAPES = [
    ((7,), (3,)), ((3,), (7,)), ((5,), (4,)), ((4,), (5,)), ((6,), (6,)), ((1,), (1,)),
    ((1,), (4,)), ((4,), (1,)),
    ((6, 5), (3, 2)), ((3, 2), (6, 5)), ((5, 5), (2, 4)), ((2, 3), (3, 2)), ((4, 1), (1, 3)),
    ((4, 5, 3), (2, 3, 2)), ((2, 2, 2), (3, 4, 3)),
]
PAIRS = [(cs.convolve, ss.convolve), (cs.correlate, ss.correlate)]


def _scipy(fn, a, b, mode):
    try:
        return fn(a, b, mode=mode)
    except ValueError:
        return ValueError


@pytest.mark.parametrize("s1,s2", SHAPES, ids=[f"{a}x{b}" for a, b in SHAPES])
@pytest.mark.parametrize("mode", ["full", "same", "valid"])
def test_values_against_scipy(s1, s2, mode):
    a, b = rng.normal(size=s1), rng.normal(size=s2)
    for mine, ref in PAIRS:
        want = _scipy(ref, a, b, mode)
        if want is ValueError:   # 'valid' with neither input the larger in every dim
            with pytest.raises(ValueError, match="at least as large"):
                mine(a, b, mode)
            continue
        for method in ("auto", "direct", "fft"):
            got = mine(a, b, mode=mode, method=method)
            assert got.dtype == cad.float64
            close(got, ref(a, b, mode=mode, method="direct"))


@pytest.mark.parametrize("mode", ["full", "same", "valid"])
def test_float32_mixed_int_and_noncontiguous(mode):
    a = rng.normal(size=(9, 8))[::2, ::-1]          # non-contiguous views
    b = rng.normal(size=(3, 6)).T[::2]
    assert not a.flags.c_contiguous and not b.flags.c_contiguous
    for mine, ref in PAIRS:
        close(mine(a, b, mode), ref(a, b, mode))
        close(mine(cad.tensor(a)[:, 1:], cad.tensor(b), mode), ref(a[:, 1:], b, mode))
        a32, b32 = a.astype(np.float32), b.astype(np.float32)
        got = mine(cad.tensor(a32), b32, mode)
        assert got.dtype == cad.float32
        close(got, ref(a32, b32, mode), rtol=1e-5, atol=1e-5)
        got = mine(a32, b, mode)                       # float32 with float64: float64
        assert got.dtype == cad.float64
        ia, ib = np.arange(12).reshape(3, 4), np.array([[1, -2], [3, 0]])
        got = mine(ia, ib, mode)                      # integers: scipy's values and dtype
        want = ref(ia, ib, mode)
        assert np.asarray(got).dtype == want.dtype
        np.testing.assert_array_equal(np.asarray(got), want)
        got = mine(a32, ib, mode)                     # float32 with int64: float64, as scipy
        assert got.dtype == cad.float64
        close(got, ref(a32, ib, mode), rtol=1e-6, atol=1e-6)


def test_edges_scalars_and_empty():
    for mine, ref in PAIRS:
        for mode in ("full", "same", "valid"):
            close(mine(np.array(2.0), np.array(3.0), mode), ref(np.array(2.0), np.array(3.0), mode))
        # 'same' with an empty in1 is defined (an empty result); the rest raise, as scipy
        close(mine(np.ones(0), np.ones(3), "same"), ref(np.ones(0), np.ones(3), "same"))
        close(mine(np.ones((0, 3)), np.ones((2, 2)), "same"), ref(np.ones((0, 3)), np.ones((2, 2)), "same"))
        for a, b, mode in [(np.ones(0), np.ones(3), "full"), (np.ones(3), np.ones(0), "same"),
                           (np.ones(3), np.ones(0), "full"), (np.ones(0), np.ones(3), "valid")]:
            with pytest.raises(ValueError):
                ref(a, b, mode)
            with pytest.raises(ValueError, match="empty"):
                mine(a, b, mode)


def test_errors():
    with pytest.raises(ValueError, match=r"convolve.*same dimensionality.*\(3,\).*\(2, 2\)"):
        cs.convolve(np.ones(3), np.ones((2, 2)))
    with pytest.raises(ValueError, match="correlate.*mode flags"):
        cs.correlate(np.ones(3), np.ones(2), mode="circular")
    with pytest.raises(ValueError, match="method flags"):
        cs.convolve(np.ones(3), np.ones(2), method="overlap")
    with pytest.raises(ValueError, match=r"valid.*\(2, 3\).*\(3, 2\)"):
        cs.convolve(np.ones((2, 3)), np.ones((3, 2)), mode="valid")
    with pytest.raises(TypeError, match="complex"):
        cs.convolve(np.ones(3, complex), np.ones(2))


# ---------------------------------------------------------------- derivatives

DSHAPES = [((6,), (3,)), ((3,), (5,)), ((4, 3), (2, 2)), ((2, 3), (3, 4)), ((3, 2, 2), (2, 2, 2))]


@pytest.mark.parametrize("s1,s2", DSHAPES, ids=[f"{a}x{b}" for a, b in DSHAPES])
@pytest.mark.parametrize("mode", ["full", "same", "valid"])
@pytest.mark.parametrize("mine,ref", PAIRS, ids=["convolve", "correlate"])
def test_first_and_second_derivatives(s1, s2, mode, mine, ref):
    a, b = rng.normal(size=s1), rng.normal(size=s2)
    w = rng.normal(size=np.shape(ref(a, b, mode)))

    def F(x, y):   # a non-quadratic scalar, so that second derivatives are not constant
        return cad.sum(cad.tanh(mine(x, y, mode)) * w)

    def Fn(x, y):
        return float(np.sum(np.tanh(ref(x, y, mode)) * w))
    ga, gb = cad.grad(F, argnums=(0, 1))(a, b)
    close(ga, fd_grad(lambda x: Fn(x, b), a), rtol=1e-6, atol=1e-8)
    close(gb, fd_grad(lambda y: Fn(a, y), b), rtol=1e-6, atol=1e-8)
    # second order: the Hessian in in2 and the mixed block, against central
    # differences of the exact gradient
    H = cad.hessian(lambda y: F(a, y))(b)
    close(H, fd_jac(lambda y: np.asarray(cad.grad(F, argnums=1)(a, y)), b), rtol=1e-5, atol=1e-7)
    Hab = cad.jacobian(lambda y: cad.grad(F, argnums=0)(a, y))(b)
    close(Hab, fd_jac(lambda y: np.asarray(cad.grad(F, argnums=0)(a, y)), b), rtol=1e-5, atol=1e-7)
    Haa = cad.hessian(lambda x: F(x, b))(a)
    close(Haa, fd_jac(lambda x: np.asarray(cad.grad(F, argnums=0)(x, b)), a), rtol=1e-5, atol=1e-7)
    # forward over reverse (jvp of grad) against the Hessian
    v = rng.normal(size=s2)
    _, hv = cad.jvp(lambda y: cad.grad(F, argnums=1)(a, y), (b,), (v,))
    close(hv, np.tensordot(np.asarray(H), v, axes=v.ndim), rtol=1e-10, atol=1e-12)


def test_jvp_vjp_and_backward():
    a, b = rng.normal(size=(8,)), rng.normal(size=(3,))
    ta, tb = rng.normal(size=8), rng.normal(size=3)
    out, t = cad.jvp(lambda x, y: cs.convolve(x, y, "same"), (a, b), (ta, tb))
    # convolution is bilinear: the tangent is conv(ta, b) + conv(a, tb)
    close(t, ss.convolve(ta, b, "same") + ss.convolve(a, tb, "same"))
    out, pull = cad.vjp(lambda x, y: cs.correlate(x, y, "valid"), a, b)
    g = rng.normal(size=out.shape)
    ga, gb = pull(cad.tensor(g))
    J1 = fd_jac(lambda x: ss.correlate(x, b, "valid"), a)
    J2 = fd_jac(lambda y: ss.correlate(a, y, "valid"), b)
    close(ga, g @ J1, rtol=1e-7, atol=1e-9)
    close(gb, g @ J2, rtol=1e-7, atol=1e-9)
    x = cad.tensor(a, requires_grad=True)
    y = cad.tensor(b, requires_grad=True)
    (cs.convolve(x, y) ** 2).sum().backward(create_graph=True)
    gx = x.grad
    (gx ** 2).sum().backward()   # a second backward through the first's graph
    assert y.grad is not None and np.all(np.isfinite(np.asarray(y.grad)))


@pytest.mark.parametrize("mode", ["full", "same", "valid"])
def test_vmap_against_a_loop(mode):
    A, B = rng.normal(size=(4, 9)), rng.normal(size=(4, 3))
    b0 = rng.normal(size=3)
    got = cad.vmap(lambda x, y: cs.convolve(x, y, mode))(A, B)
    close(got, np.stack([ss.convolve(A[i], B[i], mode) for i in range(4)]))
    got = cad.vmap(lambda x: cs.correlate(x, b0, mode))(A)   # one argument batched
    close(got, np.stack([ss.correlate(A[i], b0, mode) for i in range(4)]))

    def F(x, y):
        return cad.sum(cad.sin(cs.correlate(x, y, mode)))
    ga, gb = cad.vmap(cad.grad(F, argnums=(0, 1)))(A, B)
    for i in range(4):
        la, lb = cad.grad(F, argnums=(0, 1))(A[i], B[i])
        close(ga[i], la)
        close(gb[i], lb)
    # vmap of a 2-D convolution over a batch of images
    imgs, k = rng.normal(size=(3, 6, 5)), rng.normal(size=(2, 3))
    got = cad.vmap(lambda im: cs.convolve(im, k, mode))(imgs)
    close(got, np.stack([ss.convolve(im, k, mode) for im in imgs]))


def test_large_cases_stay_cheap():
    """a 1000-long signal with a 30-long kernel and a 64x64 image with a 5x5 kernel:
    values and a gradient (the gather is n_out * k.size; NOTE [ Direct convolution ])"""
    a, b = rng.normal(size=1000), rng.normal(size=30)
    close(cs.convolve(a, b, "same"), ss.convolve(a, b, "same"), rtol=1e-10, atol=1e-10)
    img, k = rng.normal(size=(64, 64)), rng.normal(size=(5, 5))
    close(cs.correlate(img, k, "same"), ss.correlate(img, k, "same"), rtol=1e-10, atol=1e-10)
    g = cad.grad(lambda kk: cad.sum(cs.correlate(img, kk, "valid") ** 2))(k)
    r = ss.correlate(img, k, "valid")
    # d/dk sum(r^2) = 2 correlate(img, r, 'valid')
    close(g, 2 * ss.correlate(img, r, "valid"), rtol=1e-9, atol=1e-9)


def test_cuda_matches_cpu(cuda_or_fake):
    a, b = rng.normal(size=(7, 6)), rng.normal(size=(3, 2))
    for mine, _ in PAIRS:
        for mode in ("full", "same", "valid"):
            x = cad.tensor(a, device="cuda")
            y = cad.tensor(b, device="cuda")
            out = mine(x, y, mode)
            assert out.device.type == "cuda"
            close(out.cpu(), mine(a, b, mode))
            F = cad.grad(lambda p, q, f=mine, m=mode: cad.sum(f(p, q, m) ** 2), argnums=(0, 1))
            gx, gy = F(x, y)
            hx, hy = F(a, b)
            close(gx.cpu(), hx)
            close(gy.cpu(), hy)


# ---------------------------------------------------------------- convolve2d, correlate2d

PAIRS2 = [(cs.convolve2d, ss.convolve2d), (cs.correlate2d, ss.correlate2d)]
SHAPES2 = [((6, 5), (3, 2)), ((3, 2), (6, 5)), ((5, 5), (2, 4)), ((4, 1), (1, 3)), ((2, 3), (5, 7)),
           ((1, 1), (3, 3)), ((4, 4), (4, 4))]


@pytest.mark.parametrize("s1,s2", SHAPES2, ids=[f"{a}x{b}" for a, b in SHAPES2])
@pytest.mark.parametrize("boundary", ["fill", "wrap", "symm"])
def test_2d_values_against_scipy(s1, s2, boundary):
    a, b = rng.normal(size=s1), rng.normal(size=s2)
    for mine, ref in PAIRS2:
        for mode in ("full", "same", "valid"):
            for fill in (0, 1.5):
                want = _scipy(lambda x, y, mode, r=ref, f=fill: r(x, y, mode, boundary, f), a, b, mode)
                if want is ValueError:
                    with pytest.raises(ValueError):
                        mine(a, b, mode, boundary, fill)
                    continue
                close(mine(a, b, mode, boundary, fill), want)


@pytest.mark.parametrize("boundary", ["fill", "wrap", "symm"])
@pytest.mark.parametrize("mode", ["full", "same", "valid"])
@pytest.mark.parametrize("mine,ref", PAIRS2, ids=["convolve2d", "correlate2d"])
def test_2d_derivatives(boundary, mode, mine, ref):
    a, b = rng.normal(size=(4, 3)), rng.normal(size=(2, 2))
    w = rng.normal(size=np.shape(ref(a, b, mode, boundary, 0.5)))

    def F(x, y):
        return cad.sum(cad.tanh(mine(x, y, mode, boundary, 0.5)) * w)

    def Fn(x, y):
        return float(np.sum(np.tanh(ref(x, y, mode, boundary, 0.5)) * w))
    ga, gb = cad.grad(F, argnums=(0, 1))(a, b)
    close(ga, fd_grad(lambda x: Fn(x, b), a), rtol=1e-6, atol=1e-8)
    close(gb, fd_grad(lambda y: Fn(a, y), b), rtol=1e-6, atol=1e-8)
    Haa = cad.hessian(lambda x: F(x, b))(a)
    close(Haa, fd_jac(lambda x: np.asarray(cad.grad(F, argnums=0)(x, b)), a), rtol=1e-5, atol=1e-7)
    Hab = cad.jacobian(lambda y: cad.grad(F, argnums=0)(a, y))(b)
    close(Hab, fd_jac(lambda y: np.asarray(cad.grad(F, argnums=0)(a, y)), b), rtol=1e-5, atol=1e-7)
    imgs = rng.normal(size=(3, 4, 3))
    gv = cad.vmap(cad.grad(F, argnums=1), in_dims=(0, None))(imgs, cad.tensor(b))
    close(gv, np.stack([np.asarray(cad.grad(F, argnums=1)(im, b)) for im in imgs]))


def test_2d_errors_and_ints():
    with pytest.raises(ValueError, match=r"convolve2d.*2-D.*\(3,\)"):
        cs.convolve2d(np.ones(3), np.ones((2, 2)))
    with pytest.raises(ValueError, match="correlate2d.*boundary"):
        cs.correlate2d(np.ones((3, 3)), np.ones((2, 2)), boundary="reflect")
    with pytest.raises(ValueError, match="fillvalue"):
        cs.convolve2d(np.ones((3, 3)), np.ones((2, 2)), fillvalue=np.ones(2))
    ia, ib = np.arange(12).reshape(3, 4), np.array([[1, -2], [3, 0]])
    for mine, ref in PAIRS2:
        got, want = mine(ia, ib, "same", "symm"), ref(ia, ib, "same", "symm")
        assert np.asarray(got).dtype == want.dtype
        np.testing.assert_array_equal(np.asarray(got), want)
