"""NOTE [ Plain grad ] (cad/transforms.py): grad(f)(x) of one float or host tensor
argument runs the one reverse sweep _pullback would, without the general argument
handling.  It must give the general code's result bit for bit, call f once, raise the
same errors, and hand every case it does not cover (an outer computation tracking x or
a value f closes over, names, vmap, cad.record, several arguments, an output that is
the input itself or untracked) to the general code with the same result."""
import numpy as np
import pytest

import cad
import cad.transforms as T

from _numeric import fd_jac, without

rng = np.random.default_rng(515)
W = rng.standard_normal((4, 4)) / 2

FUNCS = {
    "scalar chain": lambda x: cad.sin(x) * x + x * x,
    "w7": lambda x: (x ** 3).sum() + cad.tanh(cad.tensor(W) @ x).sum(),
    "matrix arg": lambda x: (cad.tanh(x @ x.T) * x.sum()).sum(),
    "views and reductions": lambda x: (x[1:] * x[:-1]).sum() + cad.logsumexp(x, 0),
    "linear": lambda x: (x * 2.0).sum(),
    "constant output": lambda x: cad.tensor(3.0) * 1.0,
    "float output": lambda x: 1.5,
    "numpy scalar output": lambda x: np.float64(2.0),
    "identity (0-d)": lambda x: x,
    "size 0": lambda x: cad.sum(cad.sin(x)),
}


def _arg(name, dtype=np.float64):
    if name in ("scalar chain", "identity (0-d)"):
        return cad.tensor(np.asarray(0.7, dtype=dtype))
    if name == "matrix arg":
        return cad.tensor(rng.uniform(0.2, 1.1, (3, 2)).astype(dtype))
    if name == "size 0":
        return cad.tensor(np.zeros(0, dtype=dtype))
    return cad.tensor(rng.uniform(0.2, 1.1, 4).astype(dtype))


def _general(monkeypatch, fn):
    return without(monkeypatch, T, "_plain_grad_arg", fn)


def _same(a, b):
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape and a.dtype == b.dtype
    assert np.array_equal(a, b)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", list(FUNCS))
def test_plain_equals_general_and_calls_f_once(monkeypatch, name, dtype):
    f = FUNCS[name]
    x = _arg(name, dtype)
    calls = []

    def counted(v):
        calls.append(1)
        return f(v)
    v, g = cad.value_and_grad(counted)(x)
    assert len(calls) == 1
    v2, g2 = _general(monkeypatch, lambda: cad.value_and_grad(f)(x))
    _same(g, g2)
    _same(v, v2)
    assert not g.requires_grad and not v.requires_grad
    _same(cad.grad(f)(x), g)
    if dtype == np.float64 and name not in ("float output", "numpy scalar output"):
        fd = fd_jac(lambda u: np.asarray(f(cad.tensor(u))), np.asarray(x))
        np.testing.assert_allclose(np.asarray(g), fd.reshape(np.shape(g)), rtol=1e-6, atol=1e-8)


def test_takes_the_plain_path_for_floats_tensors_and_no_grad(monkeypatch):
    seen = []
    real = T._plain_grad_sweep
    monkeypatch.setattr(T, "_plain_grad_sweep", lambda x0, y: seen.append(1) or real(x0, y))
    f = FUNCS["scalar chain"]
    np.testing.assert_allclose(float(cad.grad(f)(0.7)), np.cos(0.7) * 0.7 + np.sin(0.7) + 1.4)
    cad.grad(f)(cad.tensor(0.7))
    with cad.no_grad():   # a tracked x under no_grad: nothing outside records, plain
        cad.grad(f)(cad.tensor(0.7, requires_grad=True))
    (v, aux), g = cad.value_and_grad(lambda x: (f(x), x * 2), has_aux=True)(0.5)
    np.testing.assert_allclose(float(aux), 1.0)
    assert seen == [1, 1, 1, 1]
    seen.clear()
    # left to the general path before f runs
    cad.grad(lambda x, k: f(x) * k)(0.7, 2.0)
    cad.grad(f, argnums=(0,))(0.7)
    cad.grad(lambda x, k=1.0: f(x) * k)(0.7, k=3.0)
    cad.grad(FUNCS["w7"])(cad.tensor(np.ones(4), names=("i",)))
    cad.vmap(cad.grad(f))(cad.tensor(np.array([0.1, 0.2])))
    cad.record(lambda x: cad.grad(f)(x), cad.tensor(0.3))
    assert seen == []


def test_errors_are_the_general_ones(monkeypatch):
    for bad, err, msg in ((lambda x: x * cad.tensor([1.0, 2.0]), TypeError, "grad: f must return a scalar"),
                          (lambda x: cad.tensor(3), cad.DTypeError, "grad: f returned dtype")):
        with pytest.raises(err, match=msg):
            cad.grad(bad)(0.7)
        with pytest.raises(err, match=msg):
            _general(monkeypatch, lambda: cad.grad(bad)(0.7))
    with pytest.raises(cad.DTypeError, match="argument 0 is the integer 3"):
        cad.grad(FUNCS["scalar chain"])(3)
    with pytest.raises(cad.DTypeError, match="argument 0 has dtype int64"):
        cad.grad(FUNCS["linear"])(cad.tensor(np.arange(3)))
    with pytest.raises(TypeError, match="has_aux=True"):
        cad.grad(FUNCS["scalar chain"], has_aux=True)(0.7)


def test_outer_computations_keep_their_graph():
    f = FUNCS["scalar chain"]
    # grad of grad: the inner grad's argument is tracked (general path), third term right
    d2 = cad.grad(cad.grad(f))(0.7)
    np.testing.assert_allclose(float(d2), -np.sin(0.7) * 0.7 + 2 * np.cos(0.7) + 2.0, rtol=1e-13)
    # a closed-over tracked value: the foreign leaf sends it to the general path, and
    # the result stays differentiable in w
    w = cad.tensor(1.3, requires_grad=True)
    g = cad.grad(lambda x: cad.sin(x * w) * x)(0.4)
    assert g.requires_grad
    g.backward()
    # d/dw [w x cos(wx) + sin(wx)] at x = 0.4
    x = 0.4
    want = x * np.cos(1.3 * x) - 1.3 * x * x * np.sin(1.3 * x) + x * np.cos(1.3 * x)
    np.testing.assert_allclose(float(w.grad), want, rtol=1e-12)
    # an inner transform's value closed over, nobody's variable (NOTE [ Orphan leaves ])
    inner = cad.grad(f)(0.2)
    g2 = cad.grad(lambda x: f(x) * inner)(0.7)
    assert not g2.requires_grad


def test_against_torch():
    torch = pytest.importorskip("torch")
    x = rng.uniform(0.2, 1.1, 4)
    xt = torch.tensor(x, requires_grad=True)
    ((xt ** 3).sum() + torch.tanh(torch.tensor(W) @ xt).sum()).backward()
    np.testing.assert_allclose(np.asarray(cad.grad(FUNCS["w7"])(cad.tensor(x))), xt.grad.numpy(), rtol=1e-14)


# jvp(f, (x,), (t,)): the one forward sweep _pushforward makes (_jvp_plain)

JVP_FUNCS = dict(FUNCS, **{
    "vector output": lambda x: cad.sin(x) * x,
    "tuple output": lambda x: (cad.sum(x ** 2), cad.exp(x)),
})


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", list(JVP_FUNCS))
def test_plain_jvp_equals_general_and_calls_f_once(monkeypatch, name, dtype):
    f = JVP_FUNCS[name]
    x = _arg(name, dtype)
    t = cad.tensor(rng.standard_normal(x.shape).astype(dtype))
    calls = []

    def counted(v):
        calls.append(1)
        return f(v)
    y, ty = cad.jvp(counted, (x,), (t,))
    assert len(calls) == 1
    monkeypatch.setattr(T, "_plain_jvp_args", lambda x, t: False)
    y2, ty2 = cad.jvp(f, (x,), (t,))
    monkeypatch.undo()
    for a, b in zip(cad.tree.tree_leaves((y, ty)), cad.tree.tree_leaves((y2, ty2))):
        _same(a, b)
        assert not a.requires_grad
    if dtype == np.float64 and name not in ("float output", "numpy scalar output", "tuple output"):
        J = fd_jac(lambda u: np.asarray(f(cad.tensor(u))), np.asarray(x))
        want = J.reshape(np.size(np.asarray(ty)), -1) @ np.asarray(t).reshape(-1)
        np.testing.assert_allclose(np.asarray(ty).reshape(-1), want, rtol=1e-6, atol=1e-8)


def test_plain_jvp_paths_and_errors(monkeypatch):
    seen = []
    real = T._jvp_plain
    monkeypatch.setattr(T, "_jvp_plain", lambda f, x, t: seen.append(1) or real(f, x, t))
    f = FUNCS["scalar chain"]
    _, t = cad.jvp(f, (0.7,), (2.0,))
    np.testing.assert_allclose(float(t), 2 * (np.cos(0.7) * 0.7 + np.sin(0.7) + 1.4), rtol=1e-14)
    cad.jvp(f, (cad.tensor(0.7),), (cad.tensor(1.0, dtype=cad.float32),))   # the tangent cast
    assert seen == [1, 1]
    seen.clear()
    with pytest.raises(cad.ShapeError, match="jvp: tangent 0 of shape"):
        cad.jvp(FUNCS["w7"], (cad.tensor(np.ones(4)),), (cad.tensor(np.ones(3)),))
    with pytest.raises(ValueError, match="1 primals but 2 tangents"):
        cad.jvp(f, (0.7,), (1.0, 2.0))
    cad.jvp(lambda a, b: a * b, (0.7, 0.2), (1.0, 0.0))
    cad.jvp(f, (0.7,), (1.0,), has_aux=False)
    assert seen == [1]
    seen.clear()
    (y, t, aux) = cad.jvp(lambda x: (f(x), 3), (0.7,), (1.0,), has_aux=True)
    assert aux == 3 and seen == []
    # a tracked value closed over: the tangent keeps its graph to it
    w = cad.tensor(1.3, requires_grad=True)
    _, t = cad.jvp(lambda x: cad.sin(x * w), (0.4,), (1.0,))
    assert t.requires_grad
    t.backward()
    np.testing.assert_allclose(float(w.grad), np.cos(0.52) - 0.4 * 1.3 * np.sin(0.52), rtol=1e-13)


def test_plain_push_in_cython_equals_the_python_one(monkeypatch):
    """_plain_push's Cython half (C.plain_push_c): the tangent bit for bit as the
    Python checks and sweep give it, grad mode as it was afterwards (also when the
    sweep raises), an outer computation's leaf still sent to _pushforward"""
    calls = []
    real = T.C.plain_push_c
    monkeypatch.setattr(T.C, "plain_push_c", lambda *a: calls.append(1) or real(*a))
    W = cad.tensor(np.linspace(-1, 1, 12).reshape(3, 4))
    idx = np.array([0, 3, 3])
    fs = [FUNCS["w7"] if "w7" in FUNCS else (lambda x: cad.sum(cad.tanh(W @ x))),
          lambda x: cad.concatenate([cad.sin(x[idx]), W @ x]) * 2.0,
          lambda x: cad.cumsum(x * x, axis=0)]
    x, v = cad.tensor(np.linspace(0.1, 0.9, 4)), cad.tensor(np.cos(np.arange(4.0)))
    for f in fs:
        calls.clear()
        _, t = cad.jvp(f, (x,), (v,))
        assert calls == [1]
        monkeypatch.setattr(T.C, "plain_push_c", lambda *a: None)   # the Python route
        _, t2 = cad.jvp(f, (x,), (v,))
        monkeypatch.setattr(T.C, "plain_push_c", lambda *a: calls.append(1) or real(*a))
        np.testing.assert_array_equal(np.asarray(t), np.asarray(t2))
        assert cad.is_grad_enabled()
    with cad.no_grad():
        cad.jvp(fs[1], (x,), (v,))
        assert not cad.is_grad_enabled()

    def boom(*a):
        raise RuntimeError("rule")
    monkeypatch.setattr(T, "_jvp_record", boom)
    @cad.primitive
    def cube(a):
        return np.asarray(a) ** 3
    cube.defjvp(lambda ts, ans, a: ts[0] * 3.0 * a * a)
    with pytest.raises(RuntimeError, match="rule"):
        cad.jvp(lambda x: cad.sum(cube(x)) * x, (x,), (v,))   # (a custom primitive: by its rule)
    assert cad.is_grad_enabled()


def test_plain_jvp_against_torch():
    torch = pytest.importorskip("torch")
    x, v = rng.uniform(0.2, 1.1, 4), rng.standard_normal(4)
    Wt = torch.tensor(W)
    _, want = torch.func.jvp(lambda u: torch.tanh(Wt @ u) * u, (torch.tensor(x),), (torch.tensor(v),))
    _, got = cad.jvp(lambda u: cad.tanh(cad.tensor(W) @ u) * u, (cad.tensor(x),), (cad.tensor(v),))
    np.testing.assert_allclose(np.asarray(got), want.numpy(), rtol=1e-14)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_numpy_arguments_take_the_plain_paths(monkeypatch, dtype):
    """scipy.optimize hands jac and hessp numpy arrays: grad, jvp, hvp and hessian of
    them take the plain paths (_plain_in) with the general code's results"""
    f = FUNCS["w7"]
    x = rng.uniform(0.2, 1.1, 4).astype(dtype)
    p = rng.standard_normal(4).astype(dtype)
    calls = {k: [] for k in ("grad", "jvp", "hvp", "hessian")}
    for name, attr in (("grad", "_plain_grad_sweep"), ("jvp", "_jvp_plain"), ("hvp", "_hvp_plain"),
                       ("hessian", "_hessian_plain")):
        real = getattr(T, attr)
        monkeypatch.setattr(T, attr, lambda *a, real=real, name=name: calls[name].append(1) or real(*a))

    def run():
        return [cad.grad(f)(x), cad.jvp(f, (x,), (p,))[1], cad.hvp(f, x, p), cad.hessian(f, x),
                cad.hessian(f)(x)]
    got = run()
    assert {k: len(v) for k, v in calls.items()} == {"grad": 1, "jvp": 1, "hvp": 1, "hessian": 2}
    monkeypatch.setattr(T, "_plain_in", lambda v: v)   # numpy arrays: the general paths
    want = run()
    assert {k: len(v) for k, v in calls.items()} == {"grad": 1, "jvp": 1, "hvp": 1, "hessian": 2}
    for a, b in zip(got, want):
        _same(a, b)
    # float16 and integer arrays are left to the general code (its errors)
    with pytest.raises(cad.DTypeError):
        cad.grad(f)(np.arange(4))


def test_plain_paths_in_threads():
    """grad, jvp and hvp's plain paths from several threads at once: every bit the
    same as one at a time (each call has its own fresh leaf and tape)"""
    from _numeric import same_in_threads
    f = FUNCS["w7"]
    xs = [cad.tensor(rng.uniform(0.2, 1.1, 4)) for _ in range(4)]
    v = cad.tensor(rng.standard_normal(4))
    same_in_threads(lambda x: np.concatenate([np.asarray(cad.grad(f)(x)), np.asarray(cad.jvp(f, (x,), (v,))[1])[None],
                                              np.asarray(cad.hvp(f, x, v))]), xs, 20)
