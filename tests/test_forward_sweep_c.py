"""The C forward sweep (NOTE [ C forward sweep ] in cad_kernels/cpu/forward.c):
jvp pushes inline (0-d float64) records' tangents in C, its common array records in
Cython (NOTE [ Array records in the forward sweep ]) and leaves every other record
to the op table's rules.  Checked against the rules-only sweep
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
from _numeric import fd_jac, on_and_off

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


# NOTE [ Array records in the forward sweep ]: elementwise, view, sum, matmul and pow
# records of arrays pushed by _jvp0_c, against the rules (bit for bit: the same engine
# ops in the same order), finite differences, and torch.func when present

def _fd_jvp(f, xs, ts, eps=1e-6):
    """central difference of f along the tangents (float64)"""
    p = [np.asarray(x, dtype=np.float64) + eps * np.asarray(t) for x, t in zip(xs, ts)]
    m = [np.asarray(x, dtype=np.float64) - eps * np.asarray(t) for x, t in zip(xs, ts)]
    return (np.asarray(f(*[cad.tensor(v) for v in p])) - np.asarray(f(*[cad.tensor(v) for v in m]))) / (2 * eps)


_RNG = np.random.default_rng(1407)
_M = _RNG.standard_normal((5, 4))
_V5 = _RNG.standard_normal(5)

_ARRAY_CASES = {
    # name: (f, primal shapes)
    "ew_broadcast": (lambda x, y: cad.sin(x) * y + cad.exp(x * 0.3) - y / 3.0, [(3, 4), (4,)]),
    "view_slices": (lambda x: cad.tanh(x[1:, ::2]) * x[0, 1] + x.T[2, 1:], [(3, 4)]),
    "view_reshape_transpose": (lambda x: cad.sum(cad.reshape(x, (2, 6)).T ** 2.0, axis=0), [(3, 4)]),
    "sum_axes": (lambda x: cad.sum(x * x, axis=1)[:, 0] + cad.sum(cad.cos(x), axis=(0, 2), keepdims=True)[0, :, 0],
                 [(2, 2, 3)]),
    "sum_all_keepdims": (lambda x: cad.sum(cad.sin(x), keepdims=True) * x, [(3, 2)]),
    "matvec": (lambda x: cad.tensor(_M) @ cad.tanh(x), [(4,)]),
    "vecmat": (lambda x: cad.sin(x) @ cad.tensor(_M), [(5,)]),
    "matmat_both": (lambda a, b: cad.tanh(a @ b) @ b.T, [(3, 4), (4, 2)]),
    "mv_both": (lambda a, b: a @ b * 2.0, [(3, 4), (4,)]),
    "vm_both": (lambda a, b: cad.exp(a @ b * 0.1), [(5,), (5, 4)]),
    "dot_1d": (lambda a, b: cad.sin(a @ b) + a, [(4,), (4,)]),
    "pow_consts": (lambda x: x ** 3 + x ** 2.5 + x ** 0.0 * 2.0 + x ** 1.0 + (x + 3.0) ** -1.5, [(6,)]),
    "pow_tracked_exponent": (lambda x, y: x ** y, [(4,), ()]),
    "float32": (lambda x: cad.sum(cad.tensor(_M.astype(np.float32)) @ cad.sin(x), axis=0), [(4,)]),
    "size0": (lambda x: cad.sum(cad.sin(x) @ cad.tensor(np.ones((0, 3))), axis=0) + cad.sum(x), [(0,)]),
    "zero_d_arrays": (lambda x: cad.sum(x * cad.tensor(_V5)) * x, [()]),
    # linear records (_jvp0_linear): gather, concatenate (a constant part), cumsum
    "gather_repeats": (lambda x: cad.sin(x[np.array([1, 1, 0, 3])]) * 2.0 + x[np.array([3, 2, 1, 0])], [(4,)]),
    "gather_rows": (lambda x: cad.tanh(x[np.array([2, 0, 2])]) * x[np.array([0, 1, 1])], [(3, 4)]),
    "concatenate_const": (lambda x, y: cad.concatenate([cad.sin(x), y * 2.0, cad.tensor(np.ones((1, 3)))]) ** 2.0,
                          [(2, 3), (2, 3)]),
    "stack": (lambda x, y: cad.exp(cad.stack([x, y * y, x * 0.5], axis=1)), [(3,), (3,)]),
    "cumsum_axes": (lambda x: cad.cumsum(cad.sin(x), axis=1) * cad.cumsum(x, axis=0, reverse=True), [(3, 4)]),
    "max_min": (lambda x: cad.max(cad.sin(x), axis=1) * cad.min(x * x, axis=0) + cad.max(x, keepdims=True)[0],
                [(3, 3)]),
    # products (_jvp0_product): prod and cumprod of x without zeros, cross
    "prod_axes": (lambda x: cad.prod(cad.sin(x), axis=1) * cad.prod(x, axis=0)[:3]
                  + cad.prod(x * 0.7, keepdims=True)[0], [(3, 4)]),
    "cumprod_axes": (lambda x: cad.cumprod(x, axis=1) * cad.cumprod(cad.cos(x), axis=0), [(3, 4)]),
    "cross": (lambda a, b: cad.cross(cad.sin(a), b) + cad.cross(a, cad.tensor(_M[:2, :3])), [(2, 3), (2, 3)]),
}


def _case_inputs(shapes, dtype=np.float64):
    rng = np.random.default_rng(len(shapes) * 7 + sum(len(s) for s in shapes))
    xs = [np.abs(rng.standard_normal(s)) + 0.5 for s in shapes]
    ts = [rng.standard_normal(s) for s in shapes]
    return xs, ts


@pytest.mark.parametrize("name", sorted(_ARRAY_CASES))
def test_array_records_match_the_rules_and_differences(name):
    f, shapes = _ARRAY_CASES[name]
    xs, ts = _case_inputs(shapes)
    dt = np.float32 if name == "float32" else np.float64
    prim = tuple(cad.tensor(x.astype(dt)) for x in xs)
    tans = tuple(cad.tensor(t.astype(dt)) for t in ts)
    (y, t), (y2, t2) = _both(f, prim, tans)
    np.testing.assert_array_equal(np.asarray(y), np.asarray(y2))
    np.testing.assert_array_equal(np.asarray(t), np.asarray(t2))
    if dt == np.float64:
        np.testing.assert_allclose(np.asarray(t), _fd_jvp(f, xs, ts), rtol=1e-6, atol=1e-8)


def test_linear_records_in_hvp_and_casts():
    """hvp through gather (its gradient holds a scatter), concatenate and cumsum, and a
    float cast both ways, C sweep against the rules bit for bit and against finite
    differences of the gradient"""
    idx = np.array([2, 0, 3, 3, 1])
    f = lambda x: cad.sum(cad.sin(x[idx]) ** 2.0) + cad.sum(cad.cumsum(x * x, axis=0) * x) + cad.sum(
        cad.concatenate([x, cad.exp(x)]) ** 3.0)
    x0, v0 = np.linspace(-0.8, 0.9, 4), np.cos(np.arange(4.0))
    x, v = cad.tensor(x0), cad.tensor(v0)
    h = cad.hvp(f, x, v)
    transforms._C_FORWARD = False
    try:
        h2 = cad.hvp(f, x, v)
    finally:
        transforms._C_FORWARD = True
    np.testing.assert_array_equal(np.asarray(h), np.asarray(h2))
    g = lambda a: np.asarray(cad.grad(f)(cad.tensor(a)))
    eps = 1e-6
    np.testing.assert_allclose(np.asarray(h), (g(x0 + eps * v0) - g(x0 - eps * v0)) / (2 * eps), rtol=1e-6)
    # max/min at ties: the tangents of the tied entries averaged, as the rule does
    xt = cad.tensor(np.array([[1.0, 3.0, 3.0, 2.0], [0.5, 0.5, 0.5, -1.0]]))
    vt = cad.tensor(np.arange(8.0).reshape(2, 4))
    m = lambda x: cad.max(x, axis=1) + cad.min(x, axis=1) + cad.max(x)
    (_, t), (_, t2) = _both(m, (xt,), (vt,))
    np.testing.assert_array_equal(np.asarray(t), np.asarray(t2))
    np.testing.assert_allclose(np.asarray(t), [1.5 + 0.0 + 1.5, 5.0 + 7.0 + 1.5])
    c = lambda x: cad.sin(x.astype(np.float32)).astype(np.float64) * x
    (y, t), (y2, t2) = _both(c, (x,), (v,))
    np.testing.assert_array_equal(np.asarray(t), np.asarray(t2))
    assert np.asarray(t).dtype == np.float64
    np.testing.assert_allclose(np.asarray(t), np.cos(x0) * v0 * x0 + np.sin(x0) * v0, rtol=1e-6)


def test_array_records_with_non_contiguous_tangents_and_primals():
    base = np.arange(48.0).reshape(6, 8) / 40 + 0.2
    x = cad.tensor(base)[::2, 1::2]          # a strided primal
    tb = np.cos(np.arange(48.0)).reshape(8, 6)
    t = cad.tensor(tb).T[::2, 1::2]          # a transposed, strided tangent
    f = lambda v: cad.tensor(_M[:4, :3]) @ (cad.sin(v) ** 2.0) + cad.sum(v, axis=0)
    (y, tt), (y2, tt2) = _both(f, (x,), (t,))
    np.testing.assert_array_equal(np.asarray(tt), np.asarray(tt2))
    np.testing.assert_allclose(np.asarray(tt), _fd_jvp(f, [np.asarray(x)], [np.asarray(t)]), rtol=1e-6)


def test_array_records_take_no_rule(monkeypatch):
    calls = []
    real = transforms._jvp_record

    def spy(*a):
        calls.append(a[1][0])
        return real(*a)
    monkeypatch.setattr(transforms, "_jvp_record", spy)
    W = cad.tensor(_M)
    g = lambda x: cad.sum(x ** 3) + cad.sum(cad.tanh(W @ x)) + cad.sum(x[1:] * x[:-1])
    x, v = cad.tensor(np.linspace(-1, 1, 4)), cad.tensor(np.ones(4))
    cad.jvp(g, (x,), (v,))
    cad.hvp(g, x, v)
    assert calls == []
    # nor gather, scatter (its vjp, in hvp), concatenate, cumsum, a float cast, max
    idx = np.array([2, 0, 3, 3])
    h = lambda x: cad.max(cad.sin(x[idx]) * cad.cumsum(x, axis=0)) + cad.sum(
        cad.concatenate([x, x.astype(np.float32).astype(np.float64) * 2.0]) ** 2)
    cad.jvp(h, (x,), (v,))
    cad.hvp(h, x, v)
    assert calls == []
    # nor prod, cumprod, cross
    cad.jvp(lambda a: cad.prod(a) * cad.cumprod(a, axis=0) + cad.cross(a[:3], a[1:]).sum(), (x,), (v,))
    assert calls == []
    # nor setitem, nor pow by a tracked exponent (the fused row, as the rules' sweep)
    def st(a):
        b = a * 1.0
        b[np.array([1, 3, 1])] = cad.exp(a[:3])
        return cad.sum(b ** a[0]) + cad.sum((a + 2.0) ** (a * 0.5))
    cad.jvp(st, (x,), (v,))
    assert calls == []
    (_, t), (_, t2) = _both(st, (x,), (v,))
    np.testing.assert_array_equal(np.asarray(t), np.asarray(t2))
    np.testing.assert_allclose(np.asarray(t), _fd_jvp(st, [np.linspace(-1, 1, 4)], [np.ones(4)]), rtol=1e-6)
    calls.clear()   # (the rules' sweep above)
    # nor a 1-D @ 1-D product (_mm_tangent's reshapes), nor a batched product (the
    # rule's body, NOTE [ Matmul's rules written once ]), nor prod and cumprod of an x
    # with a zero (their rules' bodies, NOTE [ Product rules written once ])
    cad.jvp(lambda a: cad.sin(a @ a) + cad.cumprod(a, axis=0), (x,), (v,))
    B3 = cad.tensor(np.arange(32.0).reshape(2, 4, 4) * 0.1)
    bp = lambda a: cad.sum(cad.tanh(B3 @ a) * (cad.reshape(a, (1, 4)) @ B3))  # noqa: E731
    cad.jvp(bp, (x,), (v,))
    assert calls == []
    (_, t), (_, t2) = _both(bp, (x,), (v,))
    np.testing.assert_array_equal(np.asarray(t), np.asarray(t2))
    np.testing.assert_allclose(np.asarray(t), _fd_jvp(bp, [np.linspace(-1, 1, 4)], [np.ones(4)]), rtol=1e-6)
    calls.clear()
    x0 = cad.tensor(np.array([0.5, 0.0, 2.0, 1.5]))
    pz = lambda a: cad.prod(a) + cad.cumprod(a, axis=0)  # noqa: E731
    cad.jvp(pz, (x0,), (v,))
    assert calls == []
    (_, t), (_, t2) = _both(pz, (x0,), (v,))
    np.testing.assert_array_equal(np.asarray(t), np.asarray(t2))
    np.testing.assert_allclose(np.asarray(t), 1.5 + np.array([1.0, 0.5, 1.0, 1.5]))


def _hvp_np(x, v):
    """W7's f = sum(x**3) + sum(tanh(W @ x)): H v by hand"""
    t = np.tanh(_M @ x)
    return 6 * x * v + _M.T @ (-2 * t * (1 - t * t) * (_M @ v))


def test_hvp_and_jvp_through_array_records():
    W = cad.tensor(_M)
    g = lambda x: cad.sum(x ** 3) + cad.sum(cad.tanh(W @ x))
    rng = np.random.default_rng(9)
    x, v = rng.standard_normal(4), rng.standard_normal(4)
    got = cad.hvp(g, cad.tensor(x), cad.tensor(v))
    np.testing.assert_allclose(np.asarray(got), _hvp_np(x, v), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(np.asarray(got), np.asarray(cad.hessian(g)(cad.tensor(x))) @ v, rtol=1e-12)
    # with respect to the tangent and the primal of the hvp (the sweeps record: rules)
    gv = cad.jacrev(lambda vv: cad.hvp(g, cad.tensor(x), vv))(cad.tensor(v))
    np.testing.assert_allclose(np.asarray(gv), np.asarray(cad.hessian(g)(cad.tensor(x))), rtol=1e-12)
    gx = cad.jacrev(lambda xx: cad.hvp(g, xx, cad.tensor(v)))(cad.tensor(x))
    eps = 1e-6
    fd = np.stack([(_hvp_np(x + eps * e, v) - _hvp_np(x - eps * e, v)) / (2 * eps) for e in np.eye(4)], 1)
    np.testing.assert_allclose(np.asarray(gx), fd, rtol=1e-6, atol=1e-8)


def test_array_jvp_against_torch_func():
    torch = pytest.importorskip("torch")
    xs, ts = _case_inputs([(3, 4), (4, 2)])

    def f(a, b, m):
        return m.tanh(a @ b).sum(1) * (a ** 3).sum(0)[:3] if m is torch else \
            cad.sum(cad.tanh(a @ b), axis=1) * cad.sum(a ** 3, axis=0)[:3]
    _, t = cad.jvp(lambda a, b: f(a, b, cad), tuple(cad.tensor(x) for x in xs), tuple(cad.tensor(v) for v in ts))
    _, tt = torch.func.jvp(lambda a, b: f(a, b, torch), tuple(torch.tensor(x) for x in xs),
                           tuple(torch.tensor(v) for v in ts))
    np.testing.assert_allclose(np.asarray(t), tt.numpy(), rtol=1e-12)


# NOTE [ Merges during a C forward sweep ]: custom primitives' records go to their
# rules inside the C sweeps; a jvp through a vjp (defvjp only) records a gradient whose
# tape may absorb the swept one (the larger tape keeps its arrays), and the sweep follows

def _vjp_only(nops):
    """a custom primitive x -> x**2 * 3 with only a vjp, nops cad ops on the cotangent
    alone first (the tape of the gradient its jvp takes outgrows a small swept tape:
    the swept tape merges into it)"""
    @cad.primitive
    def sq3(x):
        return np.asarray(x) ** 2 * 3.0

    def vjp(g, ans, x):
        r = g
        for _ in range(nops):   # (on g's tape alone: it outgrows the swept one before x joins)
            r = r * 1.0
        return r * x * 6.0
    sq3.defvjp(vjp)
    return sq3


@pytest.mark.parametrize("nops", [0, 60])
def test_custom_primitives_in_the_c_sweeps(nops, monkeypatch):
    sq3 = _vjp_only(nops)
    f = lambda x: cad.sin(sq3(cad.tanh(x) * 0.5)) * x + cad.sum(x * x)  # noqa: E731
    x0 = np.linspace(0.2, 0.9, 4)
    v0 = np.cos(np.arange(4.0)) + 0.1
    x, v = cad.tensor(x0), cad.tensor(v0)
    for transform in (lambda: cad.jvp(f, (x,), (v,))[1], lambda: cad.jacfwd(f)(x),
                      lambda: cad.hvp(lambda u: cad.sum(f(u)), x, v),
                      lambda: cad.hessian(lambda u: cad.sum(f(u)))(x)):
        a, b = on_and_off(monkeypatch, transforms, "_C_FORWARD", lambda: np.asarray(transform()))
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-14)
    J = fd_jac(lambda u: np.asarray(f(cad.tensor(u))), x0)
    np.testing.assert_allclose(np.asarray(cad.jacfwd(f)(x)), J, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(np.asarray(cad.jvp(f, (x,), (v,))[1]), J @ v0, rtol=1e-6, atol=1e-8)
    H = fd_jac(lambda u: np.asarray(cad.grad(lambda w: cad.sum(f(w)))(cad.tensor(u))), x0)
    np.testing.assert_allclose(np.asarray(cad.hessian(lambda u: cad.sum(f(u)))(x)), H, rtol=1e-6, atol=1e-7)
    # the long vjp makes the sweeps follow a merge (the swept tape forwarded after it)
    merged = []
    C = cad._core._engine
    for name in ("forward_sweep_c", "forward_sweep_b"):
        real = getattr(C, name)
        monkeypatch.setattr(C, name, (lambda real: lambda tp, *a: (lambda r: merged.append(
            C.tape_live(tp) is not tp) or r)(real(tp, *a)))(real))
    cad.jvp(f, (x,), (v,))
    cad.jacfwd(f)(x)
    assert any(merged) == (nops > 0), merged


def test_custom_primitive_records_take_the_c_sweep(monkeypatch):
    """only the custom record goes to a rule: the rest of the tape stays in C"""
    sq3 = _vjp_only(0)
    calls = []
    real = transforms._jvp_record

    def spy(*a):
        calls.append(transforms.primitives()[a[1][0]].name)
        return real(*a)
    monkeypatch.setattr(transforms, "_jvp_record", spy)
    x, v = cad.tensor(np.linspace(0.2, 0.9, 4)), cad.tensor(np.ones(4))
    cad.jvp(lambda u: cad.exp(sq3(cad.sin(u) * 2.0)) * u, (x,), (v,))
    assert calls == ["custom"]
    calls.clear()
    cad.jacfwd(lambda u: cad.exp(sq3(cad.sin(u) * 2.0)) * u)(x)
    assert calls == ["custom"]


def test_cholesky_solve_hessian_in_the_c_sweeps(monkeypatch):
    """a Gaussian log-density through cholesky and a triangular solve (linalg's custom
    primitives): the C sweeps against the rules' and finite differences"""
    rng = np.random.default_rng(9)
    A = rng.standard_normal((4, 4))
    S0 = A @ A.T + 4 * np.eye(4)
    y = rng.standard_normal(4)

    def nll(theta):
        S = cad.tensor(S0) * cad.exp(theta[0]) + cad.tensor(np.eye(4)) * theta[1] ** 2
        L = cad.linalg.cholesky(S)
        z = cad.linalg.solve_triangular(L, cad.tensor(y) - theta[2:6], lower=True)
        return 0.5 * cad.sum(z * z) + cad.sum(cad.log(cad.diagonal(L)))
    th = np.array([0.1, 0.7, 0.2, -0.3, 0.4, 0.1])
    a, b = on_and_off(monkeypatch, transforms, "_C_FORWARD", lambda: np.asarray(cad.hessian(nll)(cad.tensor(th))))
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13)
    H = fd_jac(lambda u: np.asarray(cad.grad(nll)(cad.tensor(u))), th)
    np.testing.assert_allclose(a, H, rtol=1e-5, atol=1e-6)
