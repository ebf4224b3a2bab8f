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
