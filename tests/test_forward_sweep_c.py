"""The C forward sweep (NOTE [ C forward sweep ] in cad_kernels/cpu/forward.c):
jvp pushes inline (0-d float64) records' tangents in C and leaves every other
record to the op table's rules.  Checked against the rules-only sweep
(transforms._C_FORWARD = False), finite differences, and reverse mode: every
elementwise op, scalars mixed with arrays and views, constants, closures, nested
transforms, threads."""
import threading

import numpy as np
import pytest

import cad
from cad import transforms
from cad.ops import REGISTRY
from cad.ops.cexpr import scalar_ok

EW = [op for op in REGISTRY.values() if op.kind == "ew" and scalar_ok(op) and op.differentiable]


def _both(f, primals, tangents):
    """jvp through the C sweep and through the rules alone"""
    y, t = cad.jvp(f, primals, tangents)
    transforms._C_FORWARD = False
    try:
        y2, t2 = cad.jvp(f, primals, tangents)
    finally:
        transforms._C_FORWARD = True
    return (y, t), (y2, t2)


def _inputs(op, rng):
    d = op.domain
    out = []
    for k in range(len(op.args)):
        lo, hi = d[k] if isinstance(d[0], tuple) and k < len(d) else (d[-1] if isinstance(d[0], tuple) else d)
        out.append(float(rng.uniform(lo, hi)))
    return out


@pytest.mark.parametrize("op", EW, ids=lambda o: o.name)
def test_every_elementwise_op_scalar_jvp(op):
    rng = np.random.default_rng(abs(hash(op.name)) % 2**32)
    xs = _inputs(op, rng)
    ts = [float(v) for v in rng.standard_normal(len(xs))]

    def f(*a):
        return op.api(*a) * 1.5 + a[0]
    (y, t), (y2, t2) = _both(f, tuple(cad.tensor(v) for v in xs), tuple(cad.tensor(v) for v in ts))
    assert float(y) == float(y2)
    np.testing.assert_allclose(float(t), float(t2), rtol=1e-13, atol=1e-300)
    # one tangent at a time too (the others absent), against central differences
    for i in [i for i, a in enumerate(op.args) if a in op.d and op.d[a].strip() != "0"]:
        def g(v, i=i):
            a = [cad.tensor(x) for x in xs]
            a[i] = v
            return f(*a)
        _, ti = cad.jvp(g, (cad.tensor(xs[i]),), (cad.tensor(1.0),))
        h = 1e-6 * max(1.0, abs(xs[i]))
        fd = (float(g(cad.tensor(xs[i] + h))) - float(g(cad.tensor(xs[i] - h)))) / (2 * h)
        np.testing.assert_allclose(float(ti), fd, rtol=1e-5, atol=1e-7)


def _chain(x, n=300):
    y = x
    for i in range(n):
        k = i % 4
        y = y + 0.3 if k == 0 else (y * 0.99 if k == 1 else (cad.sin(y) if k == 2 else cad.exp(y * 0.1)))
    return y


def test_long_chain_matches_rules_and_reverse():
    x = cad.tensor(0.4)
    (y, t), (y2, t2) = _both(_chain, (x,), (cad.tensor(2.0),))
    assert float(y) == float(y2)
    np.testing.assert_allclose(float(t), float(t2), rtol=1e-13)
    np.testing.assert_allclose(float(t), 2.0 * float(cad.grad(_chain)(x)), rtol=1e-12)


def test_scalars_mixed_with_arrays_views_and_reductions():
    a = np.array([0.3, -1.2, 2.0, 0.7])
    W = np.arange(12.0).reshape(3, 4) / 10

    def f(v, s):
        u = cad.sin(v) * s               # array times inline scalar
        m = cad.sum(u * u)               # an array reduced to 0-d
        e = u[2]                         # a 0-d view of an array
        z = _chain(m, 70) * cad.cos(e) + s ** 2.5
        w = cad.tensor(W) @ (v * z)      # back to arrays
        return cad.sum(cad.tanh(w)) + z
    prim = (cad.tensor(a), cad.tensor(0.8))
    tans = (cad.tensor(np.array([1.0, -0.5, 0.25, 2.0])), cad.tensor(-1.3))
    (y, t), (y2, t2) = _both(f, prim, tans)
    np.testing.assert_allclose(float(y), float(y2), rtol=1e-15)
    np.testing.assert_allclose(float(t), float(t2), rtol=1e-12)
    ga, gs = cad.grad(f, argnums=(0, 1))(*prim)
    np.testing.assert_allclose(float(t), float(np.dot(np.asarray(ga), np.asarray(tans[0])) + float(gs) * -1.3),
                               rtol=1e-11)


def test_several_outputs_constants_and_pytrees():
    def f(x, y):
        c = cad.tensor(3.0)              # a constant in the middle
        return {"a": cad.sin(x) * c + y, "b": (x * y, c * 2.0)}
    out, tan = cad.jvp(f, (cad.tensor(0.5), cad.tensor(2.0)), (cad.tensor(1.0), cad.tensor(0.0)))
    np.testing.assert_allclose(float(tan["a"]), 3 * np.cos(0.5))
    np.testing.assert_allclose(float(tan["b"][0]), 2.0)
    assert float(tan["b"][1]) == 0.0
    # a tangent of a constant output is zero, and a primal that is a Python float works
    _, t = cad.jvp(lambda x: cad.sin(x) * 2.0, (0.7,), (1.0,))
    np.testing.assert_allclose(float(t), 2 * np.cos(0.7))


def test_nested_transforms_still_record():
    # jvp inside grad, jvp of jvp, grad of a jvp's tangent: these sweeps record (rules path)
    r = 0.7
    h = lambda x, t: cad.jvp(lambda z: cad.sin(z * r) * z, (x,), (t,))[1]
    gx, gt = cad.grad(h, argnums=(0, 1))(cad.tensor(0.3), cad.tensor(1.5))
    # d/dx [t (r cos(rx) x + sin(rx))] and d/dt
    np.testing.assert_allclose(float(gx), 1.5 * (2 * r * np.cos(r * 0.3) - r * r * 0.3 * np.sin(r * 0.3)), rtol=1e-12)
    np.testing.assert_allclose(float(gt), r * np.cos(r * 0.3) * 0.3 + np.sin(r * 0.3), rtol=1e-12)
    inner = lambda x: cad.jvp(cad.sin, (x,), (cad.tensor(1.0),))[1]
    _, t2 = cad.jvp(inner, (cad.tensor(0.4),), (cad.tensor(1.0),))
    np.testing.assert_allclose(float(t2), -np.sin(0.4), rtol=1e-14)
    # a closure over a tracked value (the outer grad's x) inside the jvp
    g = cad.grad(lambda x: cad.jvp(lambda z: z * x * x, (cad.tensor(2.0),), (cad.tensor(1.0),))[1])(cad.tensor(3.0))
    np.testing.assert_allclose(float(g), 6.0)


def test_jvp_of_replayed_and_hessian_unchanged():
    f = lambda x: cad.sum(cad.sin(x) * x)
    x = cad.tensor(np.array([0.1, 0.5, -0.3]))
    H = cad.hessian(f)(x)
    d = np.array([0.1, 0.5, -0.3])
    np.testing.assert_allclose(np.asarray(H), np.diag(2 * np.cos(d) - d * np.sin(d)), atol=1e-14)
    J = cad.jacfwd(lambda s: cad.sin(s) * s)(cad.tensor(0.3))   # batched tangents: rules path
    np.testing.assert_allclose(float(J), np.cos(0.3) * 0.3 + np.sin(0.3), rtol=1e-14)


def test_threads_each_their_own_jvp():
    xs = [0.1 * k for k in range(1, 9)]
    serial = [float(cad.jvp(_chain, (cad.tensor(v),), (cad.tensor(1.0),))[1]) for v in xs]
    got = [None] * len(xs)

    def work(k):
        for _ in range(5):
            got[k] = float(cad.jvp(_chain, (cad.tensor(xs[k]),), (cad.tensor(1.0),))[1])
    th = [threading.Thread(target=work, args=(k,)) for k in range(len(xs))]
    for t in th:
        t.start()
    for t in th:
        t.join()
    assert got == serial


def test_issue9_reproducers_still_right():
    r = np.array([1., 2.])
    x0 = np.array([.1, .2])
    t0 = np.array([1., 0.])
    h = lambda x, t: cad.jvp(lambda z: cad.sin(cad.dot(z, r)), (x,), (t,))[1]
    gx, gt = cad.grad(h, argnums=(0, 1))(x0, t0)
    np.testing.assert_allclose(np.asarray(gx), -np.sin(.5) * r * 1.0, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(gt), np.cos(.5) * r, rtol=1e-12)
    np.testing.assert_allclose(float(cad.grad(lambda t: cad.jvp(cad.sin, (0.7,), (t,))[1])(1.0)), np.cos(0.7))


def test_plain_jvp_takes_the_c_sweep(monkeypatch):
    from cad._core import _engine as C
    calls = []
    real = C.forward_sweep_c

    def spy(*a):
        calls.append(1)
        return real(*a)
    monkeypatch.setattr(C, "forward_sweep_c", spy)
    cad.jvp(_chain, (cad.tensor(0.2),), (cad.tensor(1.0),))
    assert calls == [1]
    cad.jacfwd(lambda v: cad.sin(v))(cad.tensor(np.ones(3)))   # batched tangents: the rules
    assert calls == [1]


def test_tape_hessian_of_scalar_inputs_takes_the_c_sweep():
    def f(a, b):
        y = a * b
        for _ in range(40):
            y = cad.sin(y) * 0.99 + a * 0.01 - b * b * 0.001
        return y
    a, b = cad.tensor(0.3), cad.tensor(0.7)
    tape = cad.record(f, a, b)
    H = cad.hessian(f, argnums=(0, 1))(a, b)
    for k in (0, 1):
        got = tape.hessian(a, b, argnum=k)
        assert got.shape == ()
        np.testing.assert_allclose(float(got), float(H[k][k]), rtol=1e-12)
    # a one-element vector input: the same sweep, the block's shape (1, 1)
    g = lambda v: cad.sum(cad.sin(v * v) * 3.0)
    v = cad.tensor(np.array([0.4]))
    tv = cad.record(g, v)
    hv = tv.hessian(v)
    assert hv.shape == (1, 1)
    np.testing.assert_allclose(np.asarray(hv), np.asarray(cad.hessian(g)(v)), rtol=1e-12)
    # and the C sweep's result equals the rules-only one
    transforms._C_FORWARD = False
    try:
        ref = float(tape.hessian(a, b, argnum=1))
    finally:
        transforms._C_FORWARD = True
    np.testing.assert_allclose(float(tape.hessian(a, b, argnum=1)), ref, rtol=1e-14)
