"""The recording forward sweep's loop in Cython (tapeview.pxi's forward_sweep_r, NOTE
[ Recording forward sweep ]): jvp's tangents without batch dims when an outer
computation tracks something in them (grad of a jvp, jvp of a jvp, a closure over a
tracked value).  Checked against the rules' Python loop (transforms._C_FORWARD =
False) bit for bit, record for record, against finite differences, with derivatives
with respect to the primals and to the tangents, and in threads."""
import numpy as np
import pytest

import cad
import cad._core._engine as C
from cad import transforms as T

from _numeric import fd_jac, on_and_off, same_in_threads
from test_forward_sweep_c import _ARRAY_CASES, _case_inputs

# records whose jvp still takes its rule in the recording sweep: none of the table's
# (prod, cumprod, cross and xent call their rules' bodies, NOTE [ Product rules
# written once ]; pow by a tracked exponent the partials' programs)
_BY_RULE = set()


def _both(monkeypatch, fn):
    return on_and_off(monkeypatch, T, "_C_FORWARD", fn)


def _ror(f, xs, ts, w, wrt_tangents=False):
    """the gradient of <w, jvp(f)(xs; ts)> with respect to the primals (or the
    tangents), and the op codes the inner jvp recorded"""
    def inner(*a):
        p, t = (xs, a) if wrt_tangents else (a, ts)
        out = cad.jvp(f, tuple(cad.tensor(v) if not isinstance(v, cad.Tensor) else v for v in p),
                      tuple(cad.tensor(v) if not isinstance(v, cad.Tensor) else v for v in t))[1]
        inner.ops = [r[0] for r in C.handle_of(out)[0].records()] if out.requires_grad else []
        return cad.sum(out * cad.tensor(w))
    args = ts if wrt_tangents else xs
    g = cad.grad(inner, argnums=tuple(range(len(args))))(*[cad.tensor(v) for v in args])
    return [np.asarray(v) for v in g], inner.ops


@pytest.mark.parametrize("name", sorted(_ARRAY_CASES))
@pytest.mark.parametrize("wrt_tangents", [False, True])
def test_reverse_over_forward_matches_the_rules(name, wrt_tangents, monkeypatch):
    f, shapes = _ARRAY_CASES[name]
    xs, ts = _case_inputs(shapes)
    dt = np.float32 if name == "float32" else np.float64
    xs = [x.astype(dt) for x in xs]
    ts = [t.astype(dt) for t in ts]
    y = np.asarray(f(*[cad.tensor(x) for x in xs]))
    w = np.random.default_rng(len(name)).standard_normal(y.shape).astype(dt)
    (a, ops_a), (b, ops_b) = _both(monkeypatch, lambda: _ror(f, xs, ts, w, wrt_tangents))
    assert ops_a == ops_b   # the same records, in the same order
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    if dt != np.float64:
        return
    for k in range(len(xs)):   # against central differences of <w, jvp>
        def phi(v, k=k):
            p, t = list(xs), list(ts)
            (t if wrt_tangents else p)[k] = v
            _, tan = cad.jvp(f, tuple(cad.tensor(q) for q in p), tuple(cad.tensor(q) for q in t))
            return float(np.sum(np.asarray(tan) * w))
        fd = fd_jac(phi, (ts if wrt_tangents else xs)[k])
        np.testing.assert_allclose(a[k], fd, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", sorted(set(_ARRAY_CASES) - _BY_RULE))
def test_recording_sweep_takes_no_rule(name, monkeypatch):
    f, shapes = _ARRAY_CASES[name]
    xs, ts = _case_inputs(shapes)
    y = np.asarray(f(*[cad.tensor(x) for x in xs]))
    calls = []
    real = T._jvp_record

    def spy(tape, rec, ts_, nb, fused):
        calls.append(rec[0])
        return real(tape, rec, ts_, nb, fused)
    monkeypatch.setattr(T, "_jvp_record", spy)
    _ror(f, xs, ts, np.ones(y.shape))
    assert calls == []


def test_custom_primitives_still_reach_their_rules(monkeypatch):
    """a custom primitive's jvp is its user's Python: the one record the sweep hands on"""
    calls = []
    real = T._jvp_record
    monkeypatch.setattr(T, "_jvp_record", lambda *a: calls.append(a[1][0]) or real(*a))

    @cad.primitive
    def cube(x):
        return np.asarray(x) ** 3
    cube.defjvp(lambda ts, ans, x: ts[0] * 3.0 * x * x)
    f = lambda x: cad.sin(cube(x)) * x  # noqa: E731
    xs, ts = _case_inputs([(4,)])
    g, _ = _ror(f, xs, ts, np.ones(4))
    assert len(calls) == 1
    fd = fd_jac(lambda v: float(np.sum(np.asarray(cad.jvp(f, (cad.tensor(v),), (cad.tensor(ts[0]),))[1]))),
                xs[0])
    np.testing.assert_allclose(g[0], fd, rtol=1e-6, atol=1e-7)


def test_jvp_of_jvp_and_third_order(monkeypatch):
    """forward over forward: the inner jvp records (the outer one tracks x)"""
    rng = np.random.default_rng(3)
    M = cad.tensor(rng.standard_normal((4, 4)) * 0.5)
    f = lambda x: cad.sum(cad.tanh(M @ x) ** 2) + cad.sum(cad.sin(x[1:]) * x[:-1]) + cad.max(x * x)  # noqa: E731
    x0, t0, u0 = rng.standard_normal(4), rng.standard_normal(4), rng.standard_normal(4)

    def run():
        g = lambda x: cad.jvp(f, (x,), (cad.tensor(t0),))[1]  # noqa: E731
        second = cad.jvp(g, (cad.tensor(x0),), (cad.tensor(u0),))[1]
        third = cad.grad(lambda x: cad.jvp(g, (x,), (cad.tensor(u0),))[1])(cad.tensor(x0))
        return float(second), np.asarray(third)
    (s1, th1), (s2, th2) = _both(monkeypatch, run)
    assert s1 == s2
    np.testing.assert_array_equal(th1, th2)
    H = fd_jac(lambda v: np.asarray(cad.grad(f)(cad.tensor(v))), x0)
    np.testing.assert_allclose(s1, u0 @ H @ t0, rtol=1e-6, atol=1e-7)
    d3 = fd_jac(lambda v: float(cad.jvp(lambda x: cad.jvp(f, (x,), (cad.tensor(t0),))[1],
                                         (cad.tensor(v),), (cad.tensor(u0),))[1]), x0)
    np.testing.assert_allclose(th1, d3, rtol=1e-5, atol=1e-6)


def test_closure_over_a_tracked_value_merges_tapes(monkeypatch):
    """the inner jvp closes over a value of an outer computation: its ops mix the two
    tapes (a merge during the sweep); constants as primals"""
    def run():
        s = cad.tensor(np.array([0.9, 1.1]), requires_grad=True)
        c = s * 2.0
        f = lambda x: cad.sin(x * c[0]) + x * c[1] + cad.sum(x[::2] ** 3.0) + cad.tensor(np.ones(3))  # noqa: E731
        _, t = cad.jvp(f, (cad.tensor(np.array([0.3, 0.4, 0.5])),), (cad.tensor(np.array([1.0, -0.5, 2.0])),))
        (gs,) = cad.autograd.grad(cad.sum(t ** 2), (s,))
        return np.asarray(gs)
    a, b = _both(monkeypatch, run)
    np.testing.assert_array_equal(a, b)

    def phi(sv):
        f = lambda x: cad.sin(x * (2 * sv[0])) + x * (2 * sv[1]) + cad.sum(x[::2] ** 3.0)  # noqa: E731
        _, t = cad.jvp(f, (cad.tensor(np.array([0.3, 0.4, 0.5])),), (cad.tensor(np.array([1.0, -0.5, 2.0])),))
        return float(np.sum(np.asarray(t) ** 2))
    np.testing.assert_allclose(a, fd_jac(phi, np.array([0.9, 1.1])), rtol=1e-6, atol=1e-7)


def test_ew_programs_off_take_the_rules(monkeypatch):
    """_C_EW_VJP off: the sweep's loop is Cython, every record by its rule"""
    f, shapes = _ARRAY_CASES["ew_broadcast"]
    xs, ts = _case_inputs(shapes)
    w = np.ones(np.asarray(f(*[cad.tensor(x) for x in xs])).shape)
    a, b = on_and_off(monkeypatch, T, "_C_EW_VJP", lambda: _ror(f, xs, ts, w))
    assert a[1] == b[1]
    for u, v in zip(a[0], b[0]):
        np.testing.assert_array_equal(u, v)


def test_threads():
    rng = np.random.default_rng(8)
    M = cad.tensor(rng.standard_normal((5, 5)) * 0.4)
    v = cad.tensor(rng.standard_normal(5))
    f = lambda x: cad.sum(cad.tanh(M @ x) * x) + cad.sum(cad.cumsum(x * x, axis=0) ** 2)  # noqa: E731
    hv = lambda x: cad.grad(lambda y: cad.jvp(f, (y,), (v,))[1])(cad.tensor(x))  # noqa: E731
    same_in_threads(hv, [rng.standard_normal(5) for _ in range(4)], 20)
