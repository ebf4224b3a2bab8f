"""NOTE [ Recorded Hessians ] (cad/record.py): tape.hessian and tape.jacobian record the
transform once and replay it; each is checked against the Python sweep it replaced,
against cad.hessian / cad.jacrev and finite differences, on array code, scalar code, 0-d
inputs, several inputs, guards, loaded tapes.  Also cad.record of a transform whose f
returns a value its own derivative reads (tanh's output): it raised a TypeError."""
import numpy as np
import pytest
from _numeric import fd_grad

import cad

rng = np.random.default_rng(41)


def close(a, b, rtol=1e-12, atol=1e-12):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=rtol, atol=atol)


W = cad.tensor(rng.normal(size=(7, 7)) / 3)


def arr(x):
    return cad.sum(x ** 3) + cad.sum(cad.tanh(W @ x))


def rosen(x):
    s = 0.0
    for i in range(len(x) - 1):
        s = s + 100.0 * (x[i + 1] - x[i] ** 2) ** 2 + (1 - x[i]) ** 2
    return s


@pytest.mark.parametrize("f", [arr, rosen], ids=["array", "scalar"])
def test_hessian_replayed_matches_sweep_and_fd(f):
    x0 = cad.tensor(rng.normal(size=7))
    tp = cad.record(f, x0)
    for _ in range(3):
        x = cad.tensor(rng.normal(size=7))
        H = tp.hessian(x)
        close(H, tp._hessian_blocks_sweep((x,), [(0, 0)], "t")[(0, 0)], rtol=1e-12, atol=1e-10)
        close(H, cad.hessian(f)(x), rtol=1e-12, atol=1e-10)
        g = cad.grad(f)
        fd = np.stack([fd_grad(lambda z: float(g(cad.tensor(z))[i]), np.asarray(x)) for i in range(7)])
        close(H, fd, rtol=1e-5, atol=1e-5)
    assert len(tp._hessian_tapes) == 1   # recorded once


def test_hessian_of_several_inputs_and_0d():
    def f(a, b, s):
        return cad.sum(cad.sin(a) * b) * s + s ** 3
    a, b, s = rng.normal(size=3), rng.normal(size=(3,)), 0.7
    tp = cad.record(f, cad.tensor(a), cad.tensor(b), cad.tensor(s))
    a1, b1, s1 = cad.tensor(rng.normal(size=3)), cad.tensor(rng.normal(size=3)), cad.tensor(-0.4)
    for k in range(3):
        close(tp.hessian(a1, b1, s1, argnum=k), cad.hessian(f, argnums=k)(a1, b1, s1), atol=1e-12)
    # blocks across inputs (the pytree form)
    tp2 = cad.record(lambda p: f(p["a"], p["b"], s), {"a": cad.tensor(a), "b": cad.tensor(b)})
    H = tp2.hessian({"a": a1, "b": b1})
    want = cad.hessian(lambda p: f(p["a"], p["b"], s))({"a": a1, "b": b1})
    for i in ("a", "b"):
        for j in ("a", "b"):
            close(H[i][j], want[i][j], atol=1e-12)


def test_hessian_and_jacobian_follow_guards():
    def f(x):
        if float(cad.sum(x)) > 0:
            return cad.sum(cad.exp(x))
        return cad.sum(x ** 4)
    x = cad.tensor(np.abs(rng.normal(size=4)))
    tp = cad.record(f, x, retrace=True)
    close(tp.hessian(x), np.diag(np.exp(np.asarray(x))))
    y = cad.tensor(-np.abs(rng.normal(size=4)))
    close(tp.hessian(y), np.diag(12 * np.asarray(y) ** 2))
    strict = cad.record(f, x)
    strict.hessian(x)   # (the Hessian tape is recorded at the first call's inputs)
    with pytest.raises(cad.ReplayError):
        strict.hessian(y)
    with pytest.raises(cad.ReplayError):
        strict.grad(y)


def test_jacobian_replayed():
    def g(x):
        return cad.tanh(W @ x) * x[0]
    x0 = cad.tensor(rng.normal(size=7))
    tp = cad.record(g, x0)
    x = cad.tensor(rng.normal(size=7))
    J = tp.jacobian(x)
    close(J, tp._jacobian_sweep((x,), 0))
    close(J, cad.jacrev(g)(x))
    # several outputs: the first one's Jacobian, in the second input
    tp2 = cad.record(lambda a, b: (cad.sin(a * b), cad.sum(a)), x0, x0 * 2)
    close(tp2.jacobian(x, x, argnum=1), np.diag(np.cos(np.asarray(x) ** 2) * np.asarray(x)))


def test_loaded_tape_hessian(tmp_path):
    tp = cad.record(arr, cad.tensor(rng.normal(size=7)))
    p = tmp_path / "arr.cad"
    cad.save(tp, p)
    back = cad.load(p)
    x = cad.tensor(rng.normal(size=7))
    close(back.hessian(x), tp.hessian(x), atol=1e-12)
    close(back.jacobian(x), tp.jacobian(x))


@pytest.mark.parametrize("make", [cad.jacrev, cad.jacfwd, lambda f: cad.vmap(cad.grad(lambda z: cad.sum(f(z))))],
                         ids=["jacrev", "jacfwd", "vmap_grad"])
def test_record_of_a_transform_reading_its_output(make):
    f = lambda x: cad.tanh(x * 2.0)   # noqa: E731  (f's output is what tanh's derivative reads)
    fn = make(f)
    x = rng.normal(size=(5,)) if make in (cad.jacrev, cad.jacfwd) else rng.normal(size=(3, 5))
    tp = cad.record(fn, cad.tensor(x))
    x1 = cad.tensor(rng.normal(size=x.shape))
    close(tp(x1), fn(x1))


@pytest.mark.parametrize("f", [arr, rosen], ids=["array", "scalar"])
def test_hvp_replayed(f):
    tp = cad.record(f, cad.tensor(rng.normal(size=7)))
    for _ in range(2):
        x, v = cad.tensor(rng.normal(size=7)), rng.normal(size=7)
        got = tp.hvp(x, v)
        close(got, tp._hvp_sweep(x, v), atol=1e-11)
        close(got, np.asarray(cad.hessian(f)(x)) @ v, rtol=1e-11, atol=1e-10)
    t0 = cad.record(lambda s: cad.sin(s) * s ** 2, cad.tensor(0.3))
    close(t0.hvp(cad.tensor(0.5), 2.0), 2.0 * float(cad.grad(cad.grad(lambda s: cad.sin(s) * s ** 2))(0.5)))


def test_tape_jvp():
    def f(x, y):
        return cad.tanh(W @ x) * y, cad.sum(x * x)
    x0, y0 = cad.tensor(rng.normal(size=7)), cad.tensor(rng.normal(size=7))
    tp = cad.record(f, x0, y0)
    for _ in range(2):
        x, y = cad.tensor(rng.normal(size=7)), cad.tensor(rng.normal(size=7))
        tx, ty = rng.normal(size=7), rng.normal(size=7)
        (o1, o2), (t1, t2) = tp.jvp((x, y), (tx, ty))
        (w1, w2), (u1, u2) = cad.jvp(f, (x, y), (tx, ty))
        close(o1, w1)
        close(o2, w2)
        close(t1, u1)
        close(t2, u2)
        fd = (np.asarray(f(x + 1e-6 * tx, y + 1e-6 * ty)[0]) - np.asarray(f(x - 1e-6 * tx, y - 1e-6 * ty)[0])) / 2e-6
        close(t1, fd, rtol=1e-6, atol=1e-8)
    g = cad.record(lambda s: cad.sin(s) * s, cad.tensor(0.2))
    y, t = g.jvp((0.5,), (2.0,))
    close(y, np.sin(0.5) * 0.5)
    close(t, 2.0 * (np.cos(0.5) * 0.5 + np.sin(0.5)))
    with pytest.raises(cad.ShapeError, match="tape.jvp: tangent 0"):
        tp.jvp((x0, y0), (np.ones(3), np.ones(7)))
    with pytest.raises(TypeError, match="tape.jvp: 1 primals"):
        tp.jvp((x0,), (np.ones(7),))
