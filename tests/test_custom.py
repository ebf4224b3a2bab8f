"""User-defined primitives (cad.primitive, NOTE [ Custom primitives ]): every
transform respects the rules given, derived rules by transposition, several
outputs, vmap, replay, errors, device calls through the host."""
import threading

import numpy as np
import pytest
from _numeric import fd_grad

import cad

X = np.array([0.1, 0.5, -0.3])


def _softmax(x):
    e = np.exp(x - x.max())
    return e / e.sum()


def make_lse(rule="vjp"):
    @cad.primitive
    def lse(x):
        a = np.asarray(x)
        m = a.max()
        return np.log(np.sum(np.exp(a - m))) + m
    if rule in ("vjp", "both"):
        lse.defvjp(lambda g, ans, x: (g * cad.exp(x - ans),))
    if rule in ("jvp", "both"):
        lse.defjvp(lambda ts, ans, x: cad.sum(ts[0] * cad.exp(x - ans)))
    return lse


@pytest.mark.parametrize("rule", ["vjp", "jvp", "both"])
def test_every_transform(rule):
    lse = make_lse(rule)
    s = _softmax(X)
    H = np.diag(s) - np.outer(s, s)
    np.testing.assert_allclose(np.asarray(cad.grad(lse)(X)), s, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(cad.hessian(lse)(X)), H, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(np.asarray(cad.jacfwd(lse)(X)), s, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(cad.jacrev(cad.grad(lse))(X)), H, rtol=1e-10, atol=1e-12)
    t = np.array([0.3, -1.0, 2.0])
    _, jt = cad.jvp(lse, (X,), (t,))
    np.testing.assert_allclose(float(jt), s @ t, rtol=1e-12)
    # jvp of jvp (the second directional derivative) and grad of jvp in the tangent
    h2 = cad.jvp(lambda x: cad.jvp(lse, (x,), (t,))[1], (X,), (t,))[1]
    np.testing.assert_allclose(float(h2), t @ H @ t, rtol=1e-10)
    gt = cad.grad(lambda tt: cad.jvp(lse, (X,), (tt,))[1])(t)
    np.testing.assert_allclose(np.asarray(gt), s, rtol=1e-12)
    # the cotangent is differentiable (derivatives with respect to cotangents)
    gv = cad.grad(lambda v: cad.sum(cad.vjp(lse, X)[1](v)[0]))(1.0)
    np.testing.assert_allclose(float(gv), s.sum(), rtol=1e-12)
    # backward() runs the C sweep's hook
    xt = cad.tensor(X, requires_grad=True)
    lse(xt * 2.0).backward()
    np.testing.assert_allclose(np.asarray(xt.grad), 2 * _softmax(2 * X), rtol=1e-12)
    # third order against finite differences of the Hessian
    d3 = cad.jacfwd(cad.hessian(lse))(X)
    fd = np.stack([(np.asarray(cad.hessian(lse)(X + e)) - np.asarray(cad.hessian(lse)(X - e))) / 2e-5
                   for e in np.eye(3) * 1e-5], axis=-1)
    np.testing.assert_allclose(np.asarray(d3), fd, atol=1e-6)


def test_vmap_loop_and_rule():
    lse = make_lse()
    xs = np.stack([X, 2 * X, -X])
    np.testing.assert_allclose(np.asarray(cad.vmap(lse)(xs)),
                               [np.log(np.exp(r).sum()) for r in xs], rtol=1e-12)
    np.testing.assert_allclose(np.asarray(cad.vmap(cad.grad(lse))(xs)),
                               [_softmax(r) for r in xs], rtol=1e-12)
    calls = []

    @lse.defvmap
    def _(x):
        calls.append(x.shape)
        return cad.logsumexp(x, axis=-1)
    np.testing.assert_allclose(np.asarray(cad.vmap(lse)(xs)),
                               [np.log(np.exp(r).sum()) for r in xs], rtol=1e-12)
    assert calls == [(3, 3)]


def test_several_outputs_and_int_outputs():
    @cad.primitive
    def sincos(x):
        a = np.asarray(x)
        return np.sin(a), np.cos(a), np.argsort(a)

    @sincos.defjvp
    def _(ts, ans, x):
        s, c, _ = ans
        return (c * ts[0], -s * ts[0], None)

    def f(x):
        s, c, idx = sincos(x)
        assert idx.dtype == cad.int64
        return cad.sum(s * c ** 2)
    want = np.cos(X) ** 3 - 2 * np.sin(X) ** 2 * np.cos(X)
    np.testing.assert_allclose(np.asarray(cad.grad(f)(X)), want, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(cad.grad(f)(X)), fd_grad(lambda a: np.sum(np.sin(a) * np.cos(a) ** 2), X),
                               rtol=1e-6)
    H = np.asarray(cad.hessian(f)(X))
    np.testing.assert_allclose(np.diag(H), [fd_grad(lambda a: np.cos(a[0]) ** 3 - 2 * np.sin(a[0]) ** 2 * np.cos(a[0]),
                                                    np.array([v]))[0] for v in X], rtol=1e-5)
    xt = cad.tensor(X, requires_grad=True)
    f(xt).backward()
    np.testing.assert_allclose(np.asarray(xt.grad), want, rtol=1e-12)


def test_autograd_form_static_args_and_float32():
    @cad.primitive
    def scale_pow(x, p, mode="plain"):
        assert mode == "plain"
        return np.asarray(x) ** p
    cad.defvjp(scale_pow, lambda ans, x, p, mode="plain": lambda g: g * p * x ** (p - 1))
    np.testing.assert_allclose(np.asarray(cad.grad(lambda x: cad.sum(scale_pow(x, 3, mode="plain")))(X)),
                               3 * X ** 2, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(cad.hessian(lambda x: cad.sum(scale_pow(x, 3)))(X)),
                               np.diag(6 * X), rtol=1e-12, atol=1e-14)
    x32 = cad.tensor(X.astype(np.float32), requires_grad=True)
    y = scale_pow(x32, 2)
    assert y.dtype == cad.float32
    cad.sum(y).backward()
    assert x32.grad.dtype == cad.float32
    np.testing.assert_allclose(np.asarray(x32.grad), 2 * X, rtol=1e-6)


def test_numpy_rule_is_first_order():
    @cad.primitive
    def sq(x):
        return np.asarray(x) ** 2
    sq.defvjp(lambda g, ans, x: (np.asarray(g) * 2 * np.asarray(x),))
    np.testing.assert_allclose(np.asarray(cad.grad(lambda x: cad.sum(sq(x)))(X)), 2 * X)
    xt = cad.tensor(X, requires_grad=True)
    cad.sum(sq(xt) * 3.0).backward()
    np.testing.assert_allclose(np.asarray(xt.grad), 6 * X)


def test_closure_constants_and_mixed_inputs():
    @cad.primitive
    def wdot(w, x):
        return np.asarray(w) @ np.asarray(x)
    wdot.defvjp(lambda g, ans, w, x: (g * x, g * w))
    w0 = np.array([1.0, -2.0, 0.5])
    # w a constant (numpy), x tracked; then both tracked
    np.testing.assert_allclose(np.asarray(cad.grad(lambda x: wdot(w0, x) ** 2)(X)), 2 * (w0 @ X) * w0)
    gw, gx = cad.grad(lambda w, x: wdot(w, x) * wdot(w, x), argnums=(0, 1))(w0, X)
    np.testing.assert_allclose(np.asarray(gw), 2 * (w0 @ X) * X)
    np.testing.assert_allclose(np.asarray(gx), 2 * (w0 @ X) * w0)


def test_record_replays_the_function_and_save_refuses(tmp_path):
    lse = make_lse()
    f = lambda x: lse(x * x)
    tp = cad.record(f, X)
    x2 = X + 0.25
    np.testing.assert_allclose(float(tp(x2)), np.log(np.exp(x2 * x2).sum()), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(tp.grad(x2)[0]), 2 * x2 * _softmax(x2 * x2), rtol=1e-12)
    with pytest.raises(TypeError, match="cad.primitive"):
        cad.save(tp, tmp_path / "t.cad")


def test_errors_propagate():
    @cad.primitive
    def bad(x):
        return np.asarray(x) * 2

    @bad.defvjp
    def _(g, ans, x):
        raise ZeroDivisionError("rule failed on purpose")
    xt = cad.tensor(X, requires_grad=True)
    with pytest.raises(ZeroDivisionError, match="on purpose"):
        cad.sum(bad(xt)).backward()
    with pytest.raises(ZeroDivisionError):
        cad.grad(lambda x: cad.sum(bad(x)))(X)
    # the engine is usable afterwards
    np.testing.assert_allclose(np.asarray(cad.grad(lambda x: cad.sum(x * x))(X)), 2 * X)

    @cad.primitive
    def norule(x):
        return np.asarray(x)
    with pytest.raises(TypeError, match="no derivative rule"):
        cad.grad(lambda x: cad.sum(norule(x)))(X)


def test_threads():
    lse = make_lse()
    res = [None] * 4

    def work(k):
        xs = X * (k + 1)
        res[k] = np.asarray(cad.grad(lse)(xs))
    ts = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    for k in range(4):
        np.testing.assert_allclose(res[k], _softmax(X * (k + 1)), rtol=1e-12)


@pytest.mark.cuda
def test_device_call_goes_through_host():
    if not cad.cuda.is_available():
        cad.cuda._use_fake()
    lse = make_lse()
    x = cad.tensor(X, device="cuda", requires_grad=True)
    y = lse(x)
    assert y.device.type == "cuda"
    y.backward()
    assert x.grad.device.type == "cuda"
    np.testing.assert_allclose(np.asarray(x.grad.cpu()), _softmax(X), rtol=1e-12)


def test_against_torch_function():
    torch = pytest.importorskip("torch")

    class Cube(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x ** 3

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return 3 * x ** 2 * g

    @cad.primitive
    def cube(x):
        return np.asarray(x) ** 3
    cube.defvjp(lambda g, ans, x: (3 * x ** 2 * g,))
    xt = torch.tensor(X, requires_grad=True)
    (gt,) = torch.autograd.grad(Cube.apply(xt).sin().sum(), xt)
    np.testing.assert_allclose(np.asarray(cad.grad(lambda x: cad.sum(cad.sin(cube(x))))(X)),
                               gt.numpy(), rtol=1e-12)
