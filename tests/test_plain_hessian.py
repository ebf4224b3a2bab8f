"""NOTE [ Plain hessian ] (cad/transforms.py): cad.hessian(f, x) of one array argument
runs the two sweeps of jacfwd(jacrev(f)) without those transforms' general argument
handling.  It must give jacfwd(jacrev(f))'s result bit for bit (the same sweeps), call
f once, and hand every case it does not cover (a non-scalar or untracked output, a
gradient that does not depend on x, an outer computation tracking x or a value f
closes over, names, vmap, cad.record) to the general code with the same result."""
import numpy as np
import pytest

import cad
import cad.transforms as T

from _numeric import fd_jac

rng = np.random.default_rng(4040)
W = rng.standard_normal((5, 5)) / 3


def _w7(x):
    return (x ** 3).sum() + cad.tanh(cad.tensor(W) @ x).sum()


FUNCS = {
    "w7": _w7,
    "ew chain": lambda x: (cad.exp(-x * x) * cad.sin(x) + x / (1.0 + x * x)).sum(),
    "matrix arg": lambda x: (cad.tanh(x @ x.T) * x.sum()).sum(),
    "quadratic": lambda x: (x * x).sum() * 0.5,
    "linear (gradient constant)": lambda x: (x * 2.0).sum(),
    "constant in x": lambda x: cad.tensor(3.0) * 1.0,
    "vector output": lambda x: cad.sin(x) * x,
    "tuple output": lambda x: ((x ** 2).sum(), (x ** 3).sum()),
    "float output (zeros)": lambda x: 1.5,
    "untracked numpy output (zeros)": lambda x: np.float64(2.0),
}


def _arg(name, dtype=np.float64):
    shape = (3, 4) if name == "matrix arg" else (5,)
    return cad.tensor(rng.uniform(0.2, 1.1, shape).astype(dtype))


def _general(f, x):
    return T.jacfwd(T.jacrev(f))(x)


def _np(r):
    if isinstance(r, tuple):
        return tuple(_np(e) for e in r)
    return np.asarray(r)


def _same_bits(a, b):
    if isinstance(a, tuple):
        assert isinstance(b, tuple) and len(a) == len(b)
        for p, q in zip(a, b):
            _same_bits(p, q)
        return
    assert a.shape == b.shape and a.dtype == b.dtype
    assert np.array_equal(a, b), np.abs(a - b).max()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", list(FUNCS))
def test_plain_equals_general_bit_for_bit_and_calls_f_once(name, dtype):
    f = FUNCS[name]
    x = _arg(name, dtype)
    calls = []

    def counted(v):
        calls.append(1)
        return f(v)
    got = cad.hessian(counted, x)
    assert len(calls) == 1
    assert not isinstance(got, tuple) or name == "tuple output"
    _same_bits(_np(got), _np(_general(f, x)))
    _same_bits(_np(cad.hessian(f)(x)), _np(got))   # (hessian(f) then a call: the same path)
    if not isinstance(got, tuple):
        assert not got.requires_grad


def test_takes_the_plain_path(monkeypatch):
    seen = []
    real = T._hessian_plain
    monkeypatch.setattr(T, "_hessian_plain", lambda f, x: seen.append(1) or real(f, x))
    x = _arg("w7")
    cad.tensor(np.ones(2), names=("i",))   # names on in this process: unnamed x still plain
    H = cad.hessian(_w7, x)
    assert seen == [1]
    # against finite differences of the gradient (an oracle not written here)
    Hfd = fd_jac(lambda v: np.asarray(cad.grad(_w7)(cad.tensor(v))), np.asarray(x))
    np.testing.assert_allclose(np.asarray(H), Hfd, rtol=1e-6, atol=1e-7)
    # the cases it leaves to the general path do not enter it
    seen.clear()
    cad.hessian(lambda v: (v ** 3).sum(), cad.tensor(1.5))   # a 0-d argument
    cad.hessian(lambda v: (v ** 3).sum(), cad.tensor([1.5]))   # one element
    cad.hessian(lambda v, k: (v ** 3).sum() * k, x, 2.0)   # two arguments
    cad.hessian(lambda v: (v ** 3).sum(), x, argnums=(0,))
    cad.hessian(_w7, cad.tensor(np.asarray(x), names=("i",)))   # a named argument
    with cad.no_grad():
        cad.hessian(_w7, x)   # (no_grad: still plain, nothing outside tracks)
    assert seen == [1]


def test_outer_computation_tracking_a_closed_over_value():
    """grad through hessian: W tracked by an outer grad; the plain path finds the
    foreign leaf and keeps the result differentiable as jacfwd(jacrev) does"""
    x = _arg("w7")
    w0 = rng.uniform(0.5, 1.5, 5)

    def outer(w, make):
        return (make(lambda v: (w * v ** 3).sum() + cad.tanh(v * w).sum(), x) ** 2).sum()
    g_plain = cad.grad(lambda w: outer(w, cad.hessian))(cad.tensor(w0))
    g_gen = cad.grad(lambda w: outer(w, lambda f, v: _general(f, v)))(cad.tensor(w0))
    _same_bits(np.asarray(g_plain), np.asarray(g_gen))
    fd = fd_jac(lambda wn: np.asarray(outer(cad.tensor(wn), cad.hessian)), w0)
    np.testing.assert_allclose(np.asarray(g_plain), fd.reshape(-1), rtol=1e-6, atol=1e-6)


def test_outer_computation_tracking_x():
    """x itself tracked (hessian inside grad): the general path, third derivatives right"""
    x0 = rng.uniform(0.2, 1.1, 4)
    f = lambda v: (cad.sin(v) * v ** 2).sum()
    g = cad.grad(lambda v: cad.hessian(f, v).sum())(cad.tensor(x0))
    g2 = cad.grad(lambda v: _general(f, v).sum())(cad.tensor(x0))
    _same_bits(np.asarray(g), np.asarray(g2))
    fd = fd_jac(lambda v: np.asarray(cad.hessian(f, cad.tensor(v)).sum()), x0)
    np.testing.assert_allclose(np.asarray(g), fd.reshape(-1), rtol=1e-6, atol=1e-6)


def test_under_vmap_record_and_names():
    xs = cad.tensor(rng.uniform(0.2, 1.1, (3, 5)))
    f = lambda v: (cad.exp(v) * v).sum()
    hv = cad.vmap(lambda v: cad.hessian(f, v))(xs)
    for k in range(3):   # (vmap's batched sweep: the same numbers to rounding)
        np.testing.assert_allclose(np.asarray(hv[k]), np.asarray(_general(f, xs[k])), rtol=1e-14)
    x = _arg("w7")
    tp = cad.record(lambda v: cad.hessian(_w7, v), x)   # (cad.record running: the general path)
    x2 = _arg("w7")
    np.testing.assert_allclose(np.asarray(tp(x2)), np.asarray(_general(_w7, x2)), rtol=1e-13)
    xn = cad.tensor(np.asarray(x), names=("i",))
    Hn = cad.hessian(_w7, xn)
    assert Hn.names == _general(_w7, xn).names


def test_consumed_and_size_zero():
    x = cad.tensor(np.zeros(0))
    _same_bits(np.asarray(cad.hessian(lambda v: (v ** 3).sum(), x)),
               np.asarray(_general(lambda v: (v ** 3).sum(), x)))

    def consumes(v):
        y = (v ** 3).sum()
        y.backward()
        return y
    with pytest.raises(Exception) as e1:
        cad.hessian(consumes, _arg("w7"))
    with pytest.raises(type(e1.value)):
        _general(consumes, _arg("w7"))


def test_batch_classes():
    # NOTE [ Batch classes ]: Diag and _Scaled keep their fields in the engine's C
    # slots; made by the batched forward sweep without a Python __init__
    from cad.ops._rules import Diag
    from cad._core import _engine as C
    v = cad.tensor(np.arange(3.0))
    d = Diag(v)
    assert d.v is v and d.unit is False and Diag(v, True).unit is True
    assert isinstance(d, C.DiagBase) and not hasattr(d, "__dict__")
    with pytest.raises(AttributeError):
        d.other = 1
    assert np.array_equal(d.dense().numpy(), np.diag(np.arange(3.0)))
    m = cad.tensor(np.ones((3, 3)))
    s = T._Scaled(m, None)
    assert s.dense() is m and isinstance(s, C.ScaledBase)
    assert np.array_equal(T._Scaled(m, v).dense().numpy(), np.ones((3, 3)) * np.arange(3.0))
    # the sweep's own batches: a Diag through elementwise records, a _Scaled through
    # a matmul, then both added (W7's shape of computation)
    W = cad.tensor(np.random.default_rng(3).standard_normal((4, 4)))
    x = cad.tensor(np.random.default_rng(4).standard_normal(4))
    f = lambda x: (x ** 3).sum() + cad.tanh(W @ x).sum()
    got = cad.hessian(f, x).numpy()
    ref = fd_jac(lambda xx: cad.grad(f)(cad.tensor(xx)).numpy(), x.numpy())
    assert np.allclose(got, ref, atol=1e-6)


# hvp(f, x, v) = jvp(grad(f), (x,), (v,))[1] by the same two sweeps (_hvp_plain)

HVP_FUNCS = {k: FUNCS[k] for k in ("w7", "ew chain", "matrix arg", "quadratic",
                                     "linear (gradient constant)", "constant in x",
                                     "float output (zeros)", "untracked numpy output (zeros)")}


def _hvp_general(f, x, v):
    return T.jvp(T.grad(f), (x,), (v,))[1]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", list(HVP_FUNCS))
def test_plain_hvp_matches_the_transforms(name, dtype):
    f = HVP_FUNCS[name]
    x = _arg(name, dtype)
    v = cad.tensor(rng.standard_normal(x.shape).astype(dtype))
    calls = []

    def counted(u):
        calls.append(1)
        return f(u)
    got = cad.hvp(counted, x, v)
    assert len(calls) == 1
    _same_bits(np.asarray(got), np.asarray(_hvp_general(f, x, v)))
    assert not got.requires_grad and got.shape == x.shape and got.dtype == x.dtype
    if dtype == np.float64 and name != "untracked numpy output (zeros)":
        H = np.asarray(cad.hessian(f, x)).reshape(x.size, x.size)
        np.testing.assert_allclose(np.asarray(got).reshape(-1), H @ np.asarray(v).reshape(-1),
                                   rtol=1e-12, atol=1e-12)


def test_plain_hvp_errors_and_other_calls(monkeypatch):
    seen = []
    real = T._hvp_plain
    monkeypatch.setattr(T, "_hvp_plain", lambda f, x, v: seen.append(1) or real(f, x, v))
    x = _arg("w7")
    v = cad.tensor(np.linspace(-1, 1, 5))
    # grad's errors, in grad's words
    with pytest.raises(TypeError, match="grad: f must return a scalar"):
        cad.hvp(lambda u: u * 2.0, x, v)
    with pytest.raises(cad.DTypeError, match="grad: f returned dtype"):
        cad.hvp(lambda u: cad.tensor(3), x, v)
    assert seen == [1, 1]
    seen.clear()
    # left to jvp(grad(f)): a shape mismatch (jvp's error), a tracked x; a numpy
    # tangent takes the plain path too (_plain_in)
    with pytest.raises(cad.ShapeError, match="jvp: tangent 0"):
        cad.hvp(_w7, x, cad.tensor(np.ones(4)))
    np.testing.assert_allclose(np.asarray(cad.hvp(_w7, x, np.asarray(v))),
                               np.asarray(cad.hvp(_w7, x, v)), rtol=0, atol=0)
    assert seen == [1, 1]
    seen.clear()
    xr = cad.tensor(np.asarray(x), requires_grad=True)
    hv = cad.hvp(_w7, xr, v)
    assert seen == [] and hv.requires_grad   # an outer computation tracks x: third order kept
    (hv * hv).sum().backward()
    xn, vn = np.asarray(x), np.asarray(v)

    def hvp_np(u):
        t = np.tanh(W @ u)
        return 6 * u * vn + W.T @ (-2 * t * (1 - t * t) * (W @ vn))
    fd = fd_jac(lambda u: (hvp_np(u) ** 2).sum(), xn)
    np.testing.assert_allclose(np.asarray(xr.grad), fd.reshape(-1), rtol=1e-6, atol=1e-7)
    # a 0-d argument takes the plain path too
    seen.clear()
    np.testing.assert_allclose(float(cad.hvp(lambda u: u ** 4, cad.tensor(1.5), cad.tensor(2.0))), 12 * 1.5 ** 2 * 2)
    assert seen == [1]


def test_plain_hvp_with_an_outer_computation_tracking_a_closed_over_value():
    x = _arg("w7")
    v = cad.tensor(rng.standard_normal(5))
    w0 = rng.uniform(0.5, 1.5, 5)

    def outer(w, hvp):
        return (hvp(lambda u: (w * u ** 3).sum() + cad.tanh(u * w).sum(), x, v) ** 2).sum()
    g_plain = cad.grad(lambda w: outer(w, cad.hvp))(cad.tensor(w0))
    g_gen = cad.grad(lambda w: outer(w, _hvp_general))(cad.tensor(w0))
    _same_bits(np.asarray(g_plain), np.asarray(g_gen))
    fd = fd_jac(lambda wn: np.asarray(outer(cad.tensor(wn), cad.hvp)), w0)
    np.testing.assert_allclose(np.asarray(g_plain), fd.reshape(-1), rtol=1e-6, atol=1e-6)


def test_plain_hvp_against_torch_func():
    torch = pytest.importorskip("torch")
    x = _arg("w7")
    v = rng.standard_normal(5)
    Wt = torch.tensor(W)
    f_t = lambda u: (u ** 3).sum() + torch.tanh(Wt @ u).sum()
    _, want = torch.func.jvp(torch.func.grad(f_t), (torch.tensor(np.asarray(x)),), (torch.tensor(v),))
    np.testing.assert_allclose(np.asarray(cad.hvp(_w7, x, cad.tensor(v))), want.numpy(), rtol=1e-13)
