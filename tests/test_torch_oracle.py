"""Compositions of transforms checked against torch.func (an oracle cad did not write);
skipped when PyTorch is not installed (`pip install torch==2.13.0`, a CPU build).

Every function is written twice, once with cad ops and once with torch ops, and
each pair of transforms (reverse/forward over reverse/forward) is compared with
dense random tangents and cotangents, differentiating with respect to the tangents
and cotangents as well as the primals."""
import numpy as np
import pytest

import cad

torch = pytest.importorskip("torch")
tf = torch.func
torch.set_default_dtype(torch.float64)

M = np.array([[0.3, -1.2, 0.5], [0.8, 0.1, -0.4], [-0.6, 0.9, 1.1]])
Mt = torch.tensor(M)
LAB = np.array([2, 0, 1])

# name: (cad function of x (3,), torch function of x (3,)) -> scalar
SCALAR = {
    "dot-sin": (lambda x: cad.sin(cad.dot(x, M[0])), lambda x: torch.sin(torch.dot(x, Mt[0]))),
    "matvec-tanh": (lambda x: cad.sum(cad.tanh(M @ x)), lambda x: torch.sum(torch.tanh(Mt @ x))),
    "quadratic-form": (lambda x: x @ (M @ x), lambda x: x @ (Mt @ x)),
    "exp-log-sigmoid": (lambda x: cad.sum(cad.exp(x) * cad.log(1.5 + cad.sigmoid(x))),
                        lambda x: torch.sum(torch.exp(x) * torch.log(1.5 + torch.sigmoid(x)))),
    "logsumexp": (lambda x: cad.logsumexp(x * x), lambda x: torch.logsumexp(x * x, 0)),
    "softmax": (lambda x: cad.sum(cad.softmax(x) * M[1]), lambda x: torch.sum(torch.softmax(x, 0) * Mt[1])),
    "prod-max": (lambda x: cad.prod(x + 2.0) + cad.max(x * x), lambda x: torch.prod(x + 2.0) + torch.amax(x * x)),
    "pow-const": (lambda x: cad.sum(cad.abs(x) ** 2.5 + x ** 3), lambda x: torch.sum(torch.abs(x) ** 2.5 + x ** 3)),
    "pow-both": (lambda x: cad.sum((x * x + 1.0) ** x), lambda x: torch.sum((x * x + 1.0) ** x)),
    "div-sqrt": (lambda x: cad.sum(x / cad.sqrt(x * x + 1.0)), lambda x: torch.sum(x / torch.sqrt(x * x + 1.0))),
    "index-where": (lambda x: cad.sum(cad.where(x > 0, x ** 2, cad.sin(x))[cad.tensor([2, 0])] * x[1]),
                    lambda x: torch.sum(torch.where(x > 0, x ** 2, torch.sin(x))[torch.tensor([2, 0])] * x[1])),
    "stack-concat": (lambda x: cad.sum(cad.stack([x, x * x]) @ M) + cad.sum(cad.concatenate([x, cad.exp(x)]) ** 2),
                     lambda x: torch.sum(torch.stack([x, x * x]) @ Mt) + torch.sum(torch.cat([x, torch.exp(x)]) ** 2)),
    "cumsum-cumprod": (lambda x: cad.sum(cad.sin(cad.cumsum(x)) * cad.cumprod(x + 2.0)),
                       lambda x: torch.sum(torch.sin(torch.cumsum(x, 0)) * torch.cumprod(x + 2.0, 0))),
    "einsum-outer": (lambda x: cad.einsum("i,j,ij->", x, cad.tanh(x), M),
                     lambda x: torch.einsum("i,j,ij->", x, torch.tanh(x), Mt)),
    "cross-entropy": (lambda x: cad.cross_entropy(cad.reshape(x, (1, 3)) * M, LAB[:3] * 0 + LAB[:1]),
                      lambda x: torch.nn.functional.cross_entropy(x.reshape(1, 3) * Mt, torch.tensor([LAB[0]] * 3))),
    "minimum-clip": (lambda x: cad.sum(cad.minimum(x, cad.cos(x)) * cad.clip(x, -0.5, 0.7)),
                     lambda x: torch.sum(torch.minimum(x, torch.cos(x)) * torch.clip(x, -0.5, 0.7))),
    "mean-transpose": (lambda x: cad.mean(cad.transpose(cad.outer(x, cad.sin(x)), 0, 1) @ x),
                       lambda x: torch.mean(torch.outer(x, torch.sin(x)).transpose(0, 1) @ x)),
}
# vector-valued: (3,) -> (3,)
VECTOR = {
    "matvec-sin": (lambda x: cad.sin(M @ x) * x, lambda x: torch.sin(Mt @ x) * x),
    "cumprod": (lambda x: cad.cumprod(x + 1.5), lambda x: torch.cumprod(x + 1.5, 0)),
    "log-softmax": (lambda x: cad.log_softmax(x * x), lambda x: torch.log_softmax(x * x, 0)),
}


def _pt(a):
    return torch.tensor(np.asarray(a, dtype=np.float64))


def _close(c, t, name, rtol=1e-9, atol=1e-10):
    np.testing.assert_allclose(np.asarray(c.numpy() if isinstance(c, cad.Tensor) else c, dtype=np.float64),
                               t.detach().numpy(), rtol=rtol, atol=atol, err_msg=name)


def _point(name, k=0):
    rng = np.random.default_rng(abs(hash((name, k))) % 2**32)
    return rng.uniform(-0.9, 0.9, 3), rng.normal(size=3), rng.normal(size=3)


@pytest.mark.parametrize("name", sorted(SCALAR))
def test_hessian_and_second_order_pairs(name):
    fc, ft = SCALAR[name]
    x, t, w = _point(name)
    _close(cad.hessian(fc, x), tf.hessian(ft)(_pt(x)), f"{name} hessian")
    # forward over reverse, reverse over reverse: H t
    ht = tf.jvp(tf.grad(ft), (_pt(x),), (_pt(t),))[1]
    _close(cad.jvp(cad.grad(fc), (x,), (t,))[1], ht, f"{name} fwd-over-rev")
    _close(cad.grad(lambda z: cad.sum(cad.grad(fc)(z) * t))(x), ht, f"{name} rev-over-rev")
    # reverse over forward, in the primal and in the tangent: d/dx <grad f, t> and d/dt
    gx, gt = cad.grad(lambda z, s: cad.jvp(fc, (z,), (s,))[1], argnums=(0, 1))(x, t)
    tgx, tgt = tf.grad(lambda z, s: tf.jvp(ft, (z,), (s,))[1], argnums=(0, 1))(_pt(x), _pt(t))
    _close(gx, tgx, f"{name} rev-over-fwd (x)")
    _close(gt, tgt, f"{name} rev-over-fwd (t)")
    # forward over forward: d/de <grad f(x + e w), t>
    ff = cad.jvp(lambda z: cad.jvp(fc, (z,), (t,))[1], (x,), (w,))[1]
    tff = tf.jvp(lambda z: tf.jvp(ft, (z,), (_pt(t),))[1], (_pt(x),), (_pt(w),))[1]
    _close(ff, tff, f"{name} fwd-over-fwd")


@pytest.mark.parametrize("name", sorted(VECTOR))
def test_vjp_of_vjp_in_the_cotangent_and_the_primal(name):
    fc, ft = VECTOR[name]
    x, u, w = _point(name, 1)

    def c_inner(z, v):
        return cad.sum(cad.vjp(fc, z)[1](v)[0] * w)

    def t_inner(z, v):
        return torch.sum(tf.vjp(ft, z)[1](v)[0] * _pt(w))
    cx, cv = cad.grad(c_inner, argnums=(0, 1))(x, u)
    tx, tv = tf.grad(t_inner, argnums=(0, 1))(_pt(x), _pt(u))
    _close(cx, tx, f"{name} rev-over-rev (x)")
    _close(cv, tv, f"{name} rev-over-rev (cotangent)")
    # jacobians both ways against torch's
    _close(cad.jacrev(fc)(x), tf.jacrev(ft)(_pt(x)), f"{name} jacrev")
    _close(cad.jacfwd(fc)(x), tf.jacfwd(ft)(_pt(x)), f"{name} jacfwd")
    # forward over reverse through the cotangent: d/de vjp(f, x)(u + e w)
    fr = cad.jvp(lambda v: cad.vjp(fc, x)[1](v)[0], (u,), (w,))[1]
    tfr = tf.jvp(lambda v: tf.vjp(ft, _pt(x))[1](v)[0], (_pt(u),), (_pt(w),))[1]
    _close(fr, tfr, f"{name} fwd-over-rev (cotangent)")


def test_third_order_elementwise_tower():
    for cf, tfn in ((cad.sin, torch.sin), (cad.tanh, torch.tanh), (cad.exp, torch.exp),
                    (cad.sigmoid, torch.sigmoid), (lambda x: x ** 3.5, lambda x: x ** 3.5),
                    (cad.log1p, torch.log1p), (cad.expm1, torch.expm1)):
        x0 = 0.37
        c3 = cad.grad(cad.grad(cad.grad(cf)))(x0)
        t3 = tf.grad(tf.grad(tf.grad(tfn)))(torch.tensor(x0))
        _close(c3, t3, f"{cf} third derivative")
        c3f = cad.jvp(lambda z: cad.jvp(cad.grad(cf), (z,), (1.0,))[1], (x0,), (1.0,))[1]
        _close(c3f, t3, f"{cf} fwd-fwd-rev")


# ---- programs that compose transforms with closures, create_graph, setitem, has_aux,
# recorded tapes, in-place operators and float32 (each against torch.func / autograd)

X0 = np.array([0.3, -0.5, 0.8])
V0 = np.array([0.2, 1.1, -0.7])
W0 = np.array([-0.4, 0.6, 0.9])
x0, v0, w0 = X0, V0, W0


def T(a):
    return torch.tensor(a)


def chk(name, c, t):
    _close(c, t, name, rtol=1e-8, atol=1e-10)


# 1. closure over outer variable at three levels
def test_program_1():
    c = cad.grad(lambda a: cad.grad(lambda b: cad.grad(lambda x: cad.sin(a * b * x))(0.3))(0.7))(1.1)
    t = tf.grad(lambda a: tf.grad(lambda b: tf.grad(lambda x: torch.sin(a * b * x))(torch.tensor(0.3)))(torch.tensor(0.7)))(torch.tensor(1.1))
    chk("3-level closure", c, t)
# 2. jacrev of a function closing over a tracked tensor, then grad through it
def test_program_2():
    a = cad.tensor(x0, requires_grad=True)
    J = cad.jacrev(lambda x: cad.sin(M @ x) * a)(v0)
    s = cad.sum(J * w0[:, None])
    g, = cad.autograd.grad(s, (a,))
    at = T(x0).requires_grad_(True)
    Jt = tf.jacrev(lambda x: torch.sin(Mt @ x) * at)(T(v0))
    gt, = torch.autograd.grad(torch.sum(Jt * T(w0)[:, None]), (at,))
    chk("jacrev closure then autograd.grad", g, gt)
# 3. backward(create_graph=True) then grad of grad
def test_program_3():
    x = cad.tensor(x0, requires_grad=True)
    y = cad.sum(cad.exp(M @ x) * x)
    y.backward(create_graph=True)
    z = cad.sum(x.grad * w0)
    g, = cad.autograd.grad(z, (x,))
    xt = T(x0).requires_grad_(True)
    yt = torch.sum(torch.exp(Mt @ xt) * xt); yt.backward(create_graph=True)
    gt, = torch.autograd.grad(torch.sum(xt.grad * T(w0)), (xt,))
    chk("backward(create_graph) then grad", g, gt)
# 4. hessian through setitem and indexing
def test_program_4():
    def f(x):
        z = cad.zeros(5); z[1:4] = cad.sin(x); z[0] = x[2] * x[0]
        return cad.sum(z * z * cad.tensor([1., 2, 3, 4, 5]))
    def ft(x):
        z = torch.zeros(5); z = z.index_put((torch.arange(1, 4),), torch.sin(x)); z = z.index_put((torch.tensor([0]),), (x[2] * x[0]).reshape(1))
        return torch.sum(z * z * torch.tensor([1., 2, 3, 4, 5]))
    chk("hessian setitem", cad.hessian(f, x0), tf.hessian(ft)(T(x0)))
# 5. vmap-free: jvp of vjp with has_aux
def test_program_5():
    def f(x): return cad.tanh(M @ x), cad.sum(x)
    def inner(x, u):
        out, fn, aux = cad.vjp(f, x, has_aux=True)
        return cad.sum(fn(u)[0] * w0) + aux
    c = cad.jvp(inner, (x0, v0), (w0, x0))[1]
    def ft(x): return torch.tanh(Mt @ x), torch.sum(x)
    def tinner(x, u):
        out, fn, aux = tf.vjp(ft, x, has_aux=True)
        return torch.sum(fn(u)[0] * T(w0)) + aux
    t = tf.jvp(tinner, (T(x0), T(v0)), (T(w0), T(x0)))[1]
    chk("jvp of vjp has_aux", c, t)
# 6. hessian of a recorded tape with grad inside
def test_program_6():
    f = lambda x: cad.sum(cad.sin(x) ** 2 * (M @ x))
    tape = cad.record(lambda x: cad.sum(cad.grad(f)(x) * w0), cad.tensor(x0))
    g = tape.grad(x0)[0]
    ft = lambda x: torch.sum(torch.sin(x) ** 2 * (Mt @ x))
    gt = tf.grad(lambda x: torch.sum(tf.grad(ft)(x) * T(w0)))(T(x0))
    chk("tape of grad, tape.grad", g, gt)
# 7. grad wrt a cotangent through jacrev (matrix cotangent)
def test_program_7():
    c = cad.grad(lambda u: cad.sum(cad.vjp(lambda x: cad.outer(x, cad.exp(x)), x0)[1](cad.reshape(u, (3, 3)))[0] ** 2))(np.arange(9.) / 9)
    t = tf.grad(lambda u: torch.sum(tf.vjp(lambda x: torch.outer(x, torch.exp(x)), T(x0))[1](u.reshape(3, 3))[0] ** 2))(torch.arange(9.) / 9)
    chk("grad wrt matrix cotangent", c, t)
# 8. jvp through prod, max, logsumexp, softmax with dense tangents, forward over forward
def test_program_8():
    fc = lambda x: cad.prod(x) + cad.max(x * M[0]) + cad.logsumexp(M @ x) + cad.sum(cad.softmax(x) * w0)
    ft = lambda x: torch.prod(x) + torch.amax(x * Mt[0]) + torch.logsumexp(Mt @ x, 0) + torch.sum(torch.softmax(x, 0) * T(w0))
    c = cad.jvp(lambda z: cad.jvp(fc, (z,), (v0,))[1], (x0,), (w0,))[1]
    t = tf.jvp(lambda z: tf.jvp(ft, (z,), (T(v0),))[1], (T(x0),), (T(w0),))[1]
    chk("fwd-fwd reductions", c, t)
    chk("hessian reductions", cad.hessian(fc, x0), tf.hessian(ft)(T(x0)))
# 9. float32 second derivative
def test_program_9():
    x = np.array([0.3, -0.5], dtype=np.float32)
    c = cad.hessian(lambda x: cad.sum(cad.tanh(x) ** 3), x)
    t = tf.hessian(lambda x: torch.sum(torch.tanh(x) ** 3))(torch.tensor(x))
    assert c.dtype == cad.float32
    np.testing.assert_allclose(c.numpy(), t.numpy(), rtol=1e-5)
# 10. in-place ops under nested transforms
def test_program_10():
    def f(x):
        y = x * 1.0
        y *= cad.sin(x)
        y += x ** 2
        return cad.sum(y)
    c = cad.grad(lambda x: cad.sum(cad.grad(f)(x) * w0))(x0)
    t = tf.grad(lambda x: torch.sum(tf.grad(lambda z: torch.sum(z * torch.sin(z) + z ** 2))(x) * T(w0)))(T(x0))
    chk("in-place nested", c, t)
# 11. jacfwd of jacrev of vector function (3-tensor)
def test_program_11():
    fc = lambda x: cad.sin(M @ x) * x
    ft = lambda x: torch.sin(Mt @ x) * x
    chk("jacfwd(jacrev) 3-tensor", cad.jacfwd(cad.jacrev(fc))(x0), tf.jacfwd(tf.jacrev(ft))(T(x0)))
    chk("jacrev(jacrev) 3-tensor", cad.jacrev(cad.jacrev(fc))(x0), tf.jacrev(tf.jacrev(ft))(T(x0)))
    chk("jacrev(jacfwd) 3-tensor", cad.jacrev(cad.jacfwd(fc))(x0), tf.jacrev(tf.jacfwd(ft))(T(x0)))
    chk("jacfwd(jacfwd) 3-tensor", cad.jacfwd(cad.jacfwd(fc))(x0), tf.jacfwd(tf.jacfwd(ft))(T(x0)))
# 12. einsum hessian, cumsum in jacfwd
def test_program_12():
    fc = lambda x: cad.einsum("i,ij,j->", cad.cumsum(x), M, cad.cumprod(x + 2))
    ft = lambda x: torch.einsum("i,ij,j->", torch.cumsum(x, 0), Mt, torch.cumprod(x + 2, 0))
    chk("einsum/cumsum hessian", cad.hessian(fc, x0), tf.hessian(ft)(T(x0)))
    chk("jacfwd(grad)", cad.jacfwd(cad.grad(fc))(x0), tf.jacfwd(tf.grad(ft))(T(x0)))
