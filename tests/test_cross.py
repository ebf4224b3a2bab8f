"""cad.cross as one primitive (NOTE [ cross ] in cad/ops/linalg.py, cpu/cross.c): values
against numpy, every transform pair against finite differences and the formula,
broadcasting, axis, aliasing (cross(a, a)), dtypes, vmap, replay and save/load, the
CUDA path on the fake device (the generated op suite runs the table's cases too)."""
import numpy as np
import pytest
from _numeric import fd_grad

import cad

rng = np.random.default_rng(31)


def close(a, b, **kw):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), **{"rtol": 1e-12, "atol": 1e-12, **kw})


@pytest.mark.parametrize("sa, sb, axis", [((3,), (3,), -1), ((5, 3), (5, 3), -1), ((4, 1, 3), (2, 3), -1),
                                          ((3, 4), (3, 4), 0), ((2, 3, 5), (1, 3, 1), 1), ((0, 3), (3,), -1)])
def test_values_and_first_order(sa, sb, axis):
    a, b = rng.normal(size=sa), rng.normal(size=sb)
    close(cad.cross(a, b, axis=axis), np.cross(a, b, axis=axis))
    w = rng.normal(size=np.cross(a, b, axis=axis).shape)

    def f(x, y):
        return cad.sum(cad.cross(x, y, axis=axis) * w)
    ga, gb = cad.grad(f, argnums=(0, 1))(a, b)
    close(ga, fd_grad(lambda x: float(f(cad.tensor(x), cad.tensor(b))), a), rtol=1e-6, atol=1e-8)
    close(gb, fd_grad(lambda y: float(f(cad.tensor(a), cad.tensor(y))), b), rtol=1e-6, atol=1e-8)


def test_every_mode_pair_against_the_formula():
    """f(x) = sum(w * (x x (x * x + c))): its gradient against FD, then rev/fwd over rev/fwd
    against central differences of the gradient"""
    x0, c, w = rng.normal(size=(4, 3)), rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    v = rng.normal(size=(4, 3))

    def f(x):
        return cad.sum(w * cad.cross(x, x * x + c))

    g = np.asarray(cad.grad(f)(x0))
    close(g, fd_grad(lambda z: float(f(cad.tensor(z))), x0), rtol=1e-6, atol=1e-8)
    eps = 1e-5
    hv = (np.asarray(cad.grad(f)(x0 + eps * v)) - np.asarray(cad.grad(f)(x0 - eps * v))) / (2 * eps)
    close(cad.jvp(cad.grad(f), (x0,), (v,))[1], hv, rtol=1e-6, atol=1e-8)            # fwd over rev
    close(cad.grad(lambda x: cad.sum(cad.grad(f)(x) * v))(x0), hv, rtol=1e-6, atol=1e-8)   # rev over rev
    close(cad.grad(lambda x: cad.jvp(f, (x,), (v,))[1])(x0), hv, rtol=1e-6, atol=1e-8)   # rev over fwd
    vv = float(np.sum(hv * v))
    close(cad.jvp(lambda x: cad.jvp(f, (x,), (v,))[1], (x0,), (v,))[1], vv, rtol=1e-6, atol=1e-8)
    H = np.asarray(cad.hessian(f)(x0)).reshape(12, 12)
    close(H @ v.reshape(-1), hv.reshape(-1), rtol=1e-6, atol=1e-8)
    # third order: the derivative of <H v, v> (cubic in x: exact by central differences)
    t3 = cad.grad(lambda x: cad.jvp(lambda z: cad.jvp(f, (z,), (v,))[1], (x,), (v,))[1])(x0)
    fd3 = fd_grad(lambda z: float(cad.jvp(lambda q: cad.jvp(f, (q,), (v,))[1], (cad.tensor(z),), (v,))[1]), x0)
    close(t3, fd3, rtol=1e-5, atol=1e-7)


def test_derivatives_in_tangents_and_cotangents():
    a, b = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    t, u = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    # the jvp is linear in the tangent: its gradient in t is b x u's transpose action
    gt = cad.grad(lambda tt: cad.sum(cad.jvp(lambda x: cad.cross(x, b), (a,), (tt,))[1] * u))(t)
    close(gt, np.cross(b, u))
    # the vjp in its cotangent
    gu = cad.grad(lambda uu: cad.sum(cad.vjp(lambda x: cad.cross(x, b), a)[1](uu)[0] * t))(u)
    close(gu, np.cross(t, b))
    # constants as primals, closures over tracked values
    close(cad.grad(lambda s: cad.sum(cad.cross(a, s * b) * u))(2.0), np.sum(np.cross(a, b) * u))


def test_aliasing_dtypes_and_integers():
    a = rng.normal(size=(6, 3))
    close(cad.grad(lambda x: cad.sum(cad.cross(x, x)))(a), np.zeros_like(a))
    g = cad.grad(lambda x: cad.sum(cad.cross(x, x[::-1]) ** 2))(a)
    close(g, fd_grad(lambda z: float(cad.sum(cad.cross(cad.tensor(z), cad.tensor(z[::-1])) ** 2)), a),
          rtol=1e-6, atol=1e-7)
    r = cad.cross(a.astype(np.float32), a[::-1])
    assert r.dtype == np.float64
    close(r, np.cross(a.astype(np.float32), a[::-1]), rtol=1e-6, atol=1e-6)
    r32 = cad.cross(a.astype(np.float32), a[::-1].astype(np.float32))
    assert r32.dtype == np.float32
    ri = cad.cross(np.array([[1, 2, 3]]), np.array([[4, 5, 7]]))
    assert ri.dtype.kind == "i"
    close(ri, np.cross([[1, 2, 3]], [[4, 5, 7]]))
    with pytest.raises(cad.ShapeError, match="cross: shapes .* do not broadcast"):
        cad.cross(np.ones((4, 3)), np.ones((5, 3)))
    with pytest.raises(ValueError, match="cross: needs 3-vectors"):
        cad.cross(np.ones((4, 2)), np.ones((4, 2)))


@pytest.mark.parametrize("in_axes, axis", [((0, 0), -1), ((0, None), -1), ((None, 1), 0), ((1, 0), 0)])
def test_vmap(in_axes, axis):
    a, b = rng.normal(size=(4, 3, 2)), rng.normal(size=(3, 4))
    if in_axes == (0, 0):
        a, b = rng.normal(size=(4, 5, 3)), rng.normal(size=(4, 3))
    elif in_axes == (0, None):
        a, b = rng.normal(size=(4, 5, 3)), rng.normal(size=(3,))
    elif in_axes == (None, 1):
        a, b = rng.normal(size=(3, 2)), rng.normal(size=(3, 4, 2))
    else:
        a, b = rng.normal(size=(3, 4, 2)), rng.normal(size=(4, 3, 1))
    f = lambda x, y: cad.cross(x, y, axis=axis)   # noqa: E731
    got = cad.vmap(f, in_dims=in_axes)(a, b)

    def ex(arr, ax, k):
        return arr if ax is None else np.take(arr, k, axis=ax)
    n = a.shape[in_axes[0]] if in_axes[0] is not None else b.shape[in_axes[1]]
    want = np.stack([np.cross(ex(a, in_axes[0], k), ex(b, in_axes[1], k), axis=axis) for k in range(n)])
    close(got, want)
    # vmap of the gradient against a loop of gradients
    w = rng.normal(size=want.shape[1:])
    gf = cad.grad(lambda x, y: cad.sum(cad.cross(x, y, axis=axis) * w))
    got = cad.vmap(gf, in_dims=in_axes)(a, b)
    want = np.stack([np.asarray(gf(ex(a, in_axes[0], k), ex(b, in_axes[1], k))) for k in range(n)])
    close(got, want)


def test_record_replay_and_save_load(tmp_path):
    b = rng.normal(size=(7, 3))

    def f(x):
        return cad.sum(cad.sin(cad.cross(x, b)) * x)
    x0 = rng.normal(size=(7, 3))
    tape = cad.record(f, cad.tensor(x0))
    x1 = rng.normal(size=(7, 3))
    close(tape(cad.tensor(x1)), f(cad.tensor(x1)))
    close(tape.grad(cad.tensor(x1))[0], cad.grad(f)(x1))
    p = tmp_path / "cross.cad"
    cad.save(tape, p)
    back = cad.load(p)
    close(back.grad(cad.tensor(x1))[0], cad.grad(f)(x1))
    close(back.hessian(cad.tensor(x1)), cad.hessian(f)(x1), rtol=1e-10, atol=1e-12)


def test_cuda_fake_device_matches_cpu():
    if not cad.cuda.is_available():
        cad.cuda._use_fake()
    a, b = rng.normal(size=(9, 3)), rng.normal(size=(9, 3))
    x = cad.tensor(a, requires_grad=True).to("cuda")
    y = cad.tensor(b).to("cuda")
    out = cad.cross(x, y)
    assert out.device.type == "cuda"
    close(out.cpu(), np.cross(a, b))
    ga = cad.grad(lambda p: cad.sum(cad.cross(p, y) ** 2))(cad.tensor(a).to("cuda"))
    close(ga.cpu(), cad.grad(lambda p: cad.sum(cad.cross(p, b) ** 2))(a))
