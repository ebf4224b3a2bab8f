"""NOTE [ Elementwise vjps in the reverse sweep ] (cad/_core/scalar_graph.pxi): the
recording reverse sweep of array code runs an elementwise record's partials from
their compiled programs on tensors instead of the Python rule.  For every
elementwise op of the table: second and third derivatives (whose sweeps read the
records the first one made) bit for bit against the rules (transforms._C_EW_VJP =
False) and against finite differences; the records themselves the rule's (same ops
in the same order); float32; broadcast operands, constants and a wrt-one-input
record (the cases left to the rule or half taken)."""
import numpy as np
import pytest

import cad
import cad.transforms as T
from cad.ops import REGISTRY, primitives

from _numeric import fd_jac, on_and_off

rng = np.random.default_rng(707)

T._tables()
OPS = [op.name for op in primitives()
       if op.kind == "ew" and not op.fast_partial and 1 <= len(op.args) <= 2]
# arguments inside every op's domain where its partials are smooth
DOMAIN = {"arccosh": (1.2, 2.0), "jn": None, "yn": None, "polygamma": None,
          "remainder": (0.3, 0.45), "fmod": (0.3, 0.45)}


def _args(name, shape=(4,), dtype=np.float64):
    op = REGISTRY[name]
    lo, hi = DOMAIN.get(name) or (0.2, 0.8)
    xs = [rng.uniform(lo, hi, shape).astype(dtype) for _ in op.args]
    if name in ("remainder", "fmod"):
        xs[1] = np.full(shape, 0.7, dtype)   # (away from the jumps)
    return xs


def _f(name, consts=()):
    api = REGISTRY[name].api

    def f(*xs):
        return cad.sum(api(*xs) * api(*xs))   # (each partial read twice: shared values)
    if not consts:
        return f
    return lambda x: f(x, *consts)


def _both(fn, monkeypatch):
    return on_and_off(monkeypatch, T, "_C_EW_VJP", fn)


def _run_once(fn, monkeypatch):
    return fn()


@pytest.mark.parametrize("name", OPS)
def test_second_and_third_order_bits_and_fd(name, monkeypatch):
    if name in ("jn", "yn", "polygamma"):   # (an integer order: differentiable in x only)
        n = 2.0
        xs = _args("sin")
        f = _f(name, ())
        g = lambda x: f(cad.tensor(np.full(4, n)), x) if name != "polygamma" else \
            cad.sum(REGISTRY[name].api(cad.tensor(np.full(4, 1.0)), x) * x)  # noqa: E731
        x0 = xs[0] + 1.0
    else:
        xs = _args(name)
        f = _f(name)
        if len(xs) == 1:
            g, x0 = f, xs[0]
        else:   # both inputs functions of one argument: both partials, read twice
            g = lambda x: f(x, cad.sqrt(x) + 0.1)  # noqa: E731
            x0 = xs[0]
    H = lambda: np.asarray(cad.hessian(g)(cad.tensor(x0)))  # noqa: E731
    a, b = _both(H, monkeypatch)
    np.testing.assert_array_equal(a, b)
    ok = np.isfinite(a).all()
    if ok:
        fd = fd_jac(lambda v: np.asarray(cad.grad(g)(cad.tensor(v))), x0)
        np.testing.assert_allclose(a, fd, rtol=2e-5, atol=2e-5)
    v = rng.standard_normal(4)
    third = lambda: np.asarray(cad.grad(lambda y: cad.sum(cad.hessian(g)(y) @ cad.tensor(v)))(cad.tensor(x0)))  # noqa: E731
    a, b = _both(third, monkeypatch)
    np.testing.assert_array_equal(a, b)


def _records(name, monkeypatch, flag, xs, consts=False):
    """the ops recorded by a create_graph gradient (the reverse sweep's records)"""
    monkeypatch.setattr(T, "_C_EW_VJP", flag)
    ts = [cad.tensor(x, requires_grad=True) for x in xs]
    if consts and len(ts) == 2:
        ts[1] = cad.tensor(xs[1])   # a constant operand: only input 0 takes a cotangent
    u = REGISTRY[name].api(*ts)
    y = cad.sum(u * u)
    gs = cad.autograd.grad(y, [t for t in ts if t.requires_grad], create_graph=True)
    tp = cad._core._engine.handle_of(gs[0])[0]
    names = [primitives()[r[0]].name for r in tp.records(0, tp.nrecs)] if tp is not None else []
    return names, [np.asarray(g) for g in gs]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("consts", [False, True])
def test_records_are_the_rules(dtype, consts, monkeypatch):
    for name in OPS:
        if name in ("jn", "yn", "polygamma"):
            continue
        xs = _args(name, (3,), dtype)
        ra, ga = _records(name, monkeypatch, True, xs, consts)
        rb, gb = _records(name, monkeypatch, False, xs, consts)
        assert ra == rb, name
        for p, q in zip(ga, gb):
            assert p.dtype == q.dtype == dtype
            np.testing.assert_array_equal(p, q, err_msg=name)


def test_taken_and_left_to_the_rule(monkeypatch):
    """tanh, mul, pow by a constant, a select program (maximum), pow by an array
    (both partials by their programs), a broadcast operand (its cotangent summed
    as the rule's unbroadcast) and where (three inputs: its partials written out)
    are taken in C; with _C_EW_VJP off every one takes its rule"""
    calls = []
    T._tables()
    vjps = list(T._VJP)
    for nm in ("tanh", "mul", "maximum", "pow", "view", "where"):
        code = REGISTRY[nm].code
        orig = vjps[code]
        vjps[code] = lambda ctx, g, orig=orig, nm=nm: calls.append(nm) or orig(ctx, g)
    monkeypatch.setattr(T, "_VJP", vjps)
    x = cad.tensor(rng.uniform(0.2, 0.8, 5))
    B = cad.tensor(rng.uniform(0.2, 0.8, (3, 5)))
    cad.hessian(lambda v: cad.sum(cad.tanh(v) * v))(x)
    cad.hessian(lambda v: cad.sum(cad.reshape(v, (5, 1))[1:] ** 3))(x)   # (views: in C too)
    assert calls == []
    cad.hessian(lambda v: cad.sum(cad.maximum(v, 0.5) * B))(x)   # (mul by a broadcast B)
    cad.hessian(lambda v: cad.sum(v * v[0] + cad.reshape(v, (5, 1)) * v))(x)   # (both broadcast)
    assert calls == []
    cad.hessian(lambda v: cad.sum(cad.where(v > 0.5, v * v, v)))(x)
    assert calls == []
    calls.clear()
    cad.hessian(lambda v: cad.sum(v ** 3))(x)   # (pow by a constant: _pow_vjp_c)
    assert calls == []
    cad.hessian(lambda v: cad.sum(v ** cad.tensor(np.full(5, 3.0))))(x)   # (an array exponent)
    cad.hessian(lambda v: cad.sum(v ** (v * 0.5)))(x)   # (a tracked exponent)
    assert calls == []
    monkeypatch.setattr(T, "_C_EW_VJP", False)
    cad.hessian(lambda v: cad.sum(cad.where(v > 0.5, v * v, v)))(x)
    assert sorted(calls) == ["mul", "where"]


def test_float32_and_shared_values_against_fd():
    x0 = rng.uniform(0.2, 0.8, 6)
    f = lambda v: cad.sum(cad.tanh(v) * cad.exp(-v) / (1.0 + v * v))  # noqa: E731
    H64 = np.asarray(cad.hessian(f)(cad.tensor(x0)))
    H32 = np.asarray(cad.hessian(f)(cad.tensor(x0.astype(np.float32))))
    assert H32.dtype == np.float32
    fd = fd_jac(lambda v: np.asarray(cad.grad(f)(cad.tensor(v))), x0)
    np.testing.assert_allclose(H64, fd, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(H32, fd, rtol=2e-3, atol=2e-4)


def _records_of(fn, xs, monkeypatch, flag):
    monkeypatch.setattr(T, "_C_EW_VJP", flag)
    ts = [cad.tensor(x, requires_grad=r) for x, r in xs]
    y = fn(*ts)
    wrt = [t for t in ts if t.requires_grad]
    gs = cad.autograd.grad(y, wrt, create_graph=True)
    tp = cad._core._engine.handle_of(gs[0])[0]
    if tp is None:   # (a constant gradient: nothing recorded)
        return [], [np.asarray(g) for g in gs], []
    names = [primitives()[r[0]].name for r in tp.records(0, tp.nrecs)]
    third = cad.autograd.grad(cad.sum(cad.sin(gs[0]) * gs[0]), wrt)   # reads those records
    return names, [np.asarray(g) for g in gs], [np.asarray(g) for g in third]


def _same_on_and_off(f, xs, dtype, monkeypatch):
    """the C cotangents and the rules record the same ops and give the same bits"""
    ra, ga, ta = _records_of(f, xs, monkeypatch, True)
    rb, gb, tb = _records_of(f, xs, monkeypatch, False)
    assert ra == rb
    for p, q in zip(ga + ta, gb + tb):
        assert p.dtype == q.dtype == dtype
        np.testing.assert_array_equal(p, q)


MATMULS = {
    "A @ b": ((3, 4), (4,)),
    "a @ B": ((4,), (4, 3)),
    "A @ B": ((3, 4), (4, 2)),
    "A @ B (1 row)": ((1, 4), (4, 1)),
    "batched (rule)": ((2, 3, 4), (4,)),
    "a @ b (rule)": ((4,), (4,)),
}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("tracked", [(True, True), (True, False), (False, True)])
@pytest.mark.parametrize("case", list(MATMULS))
def test_matmul_records_and_bits(case, tracked, dtype, monkeypatch):
    sa, sb = MATMULS[case]
    xs = [(rng.uniform(-1, 1, sa).astype(dtype), tracked[0]),
          (rng.uniform(-1, 1, sb).astype(dtype), tracked[1])]
    f = lambda a, b: cad.sum(cad.tanh(a @ b) ** 2)  # noqa: E731
    _same_on_and_off(f, xs, dtype, monkeypatch)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("c", [3.0, 2.5, 1.5, 4.0, -1.5, 2.0, 1.0, 0.0, "tracked", "array"])
def test_pow_records_and_bits(c, dtype, monkeypatch):
    x0 = rng.uniform(0.3, 1.3, 5).astype(dtype)
    if c == "tracked":
        xs = [(x0, True), (np.asarray(2.5, dtype), True)]
        f = lambda x, y: cad.sum(x ** y)  # noqa: E731
    elif c == "array":
        xs = [(x0, True), (np.full(5, 2.5, dtype), False)]
        f = lambda x, y: cad.sum(x ** y)  # noqa: E731
    else:
        xs = [(x0, True)]
        f = lambda x: cad.sum(cad.tensor(np.ones(5, dtype)) * x ** c)  # noqa: E731
    _same_on_and_off(f, xs, dtype, monkeypatch)


def test_pow_and_matmul_against_fd():
    W = rng.standard_normal((3, 4))
    f = lambda v: (cad.sum(cad.tanh(cad.tensor(W) @ v) ** 3) + cad.sum(v ** 3.5)  # noqa: E731
                   + cad.sum(cad.sin(v @ cad.tensor(W.T)) ** 2))
    x0 = rng.uniform(0.3, 1.0, 4)
    H = np.asarray(cad.hessian(f)(cad.tensor(x0)))
    fd = fd_jac(lambda v: np.asarray(cad.grad(f)(cad.tensor(v))), x0)
    np.testing.assert_allclose(H, fd, rtol=1e-6, atol=1e-6)


VIEWS = {
    "reshape": lambda x: cad.reshape(x, (2, 6)),
    "transpose": lambda x: cad.transpose(cad.reshape(x, (3, 4))),
    "slice": lambda x: x[1:9:2],
    "new axis": lambda x: x[:, None] * cad.tensor(np.ones((12, 2))),
    "row of a matrix": lambda x: cad.reshape(x, (3, 4))[1],
    "broadcast view": lambda x: cad.broadcast_to(x, (2, 12)),
}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", list(VIEWS))
def test_view_records_and_bits(case, dtype, monkeypatch):
    v = VIEWS[case]
    xs = [(rng.uniform(0.2, 0.9, 12).astype(dtype), True)]
    _same_on_and_off(lambda x: cad.sum(cad.sin(v(x)) ** 2), xs, dtype, monkeypatch)
    x0 = rng.uniform(0.2, 0.9, 12)
    f = lambda x: cad.sum(cad.sin(v(x)) ** 2)  # noqa: E731
    H = np.asarray(cad.hessian(f)(cad.tensor(x0)))
    fd = fd_jac(lambda u: np.asarray(cad.grad(f)(cad.tensor(u))), x0)
    np.testing.assert_allclose(H, fd, rtol=1e-6, atol=1e-6)


def test_python_scalar_operands(monkeypatch):
    """constants written as Python numbers on either side (kept by the engine where a
    partial reads them): Hessians and third derivatives bit for bit against the rules"""
    x = cad.tensor(rng.uniform(0.2, 0.9, 6))
    fs = [lambda v: cad.sum(v * 2.0 * v + 3.0 / v - 1.5 ** v + v ** 2 - 2.0 * cad.exp(-v)
                            + (v - 0.5) ** 3),
          lambda v: cad.sum(cad.arctan2(v, 0.7) + cad.hypot(0.3, v) + cad.maximum(v, 0.5) * v)]
    for f in fs:
        a, b = on_and_off(monkeypatch, T, "_C_EW_VJP",
                          lambda: (np.asarray(cad.hessian(f)(x)),
                                   np.asarray(cad.jacfwd(cad.hessian(f))(x))))
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
