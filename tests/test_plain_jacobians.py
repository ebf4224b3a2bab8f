"""jacfwd(f)(x) and jacrev(f)(x) of one array argument without the transforms'
general argument handling (transforms._jacfwd_plain, _jacrev_plain; NOTE [ Plain
hessian ]): the same sweeps with the same seeds, so the same Jacobians bit for bit as
the general path (_plain_hessian_arg off), and every call the plain path does not
take (small outputs, tuples, an output that is the input, a closure over a tracked
value, names, vmap) still right."""
import numpy as np
import pytest

import cad
from cad import transforms as T

from _numeric import fd_jac, without

rng = np.random.default_rng(2024)
W = rng.standard_normal((24, 20)) * 0.3

FUNCS = {
    "tanh(W@x)": (lambda x: cad.tanh(cad.tensor(W) @ x), (20,)),
    "elementwise": (lambda x: cad.sin(x) * x + 1.0, (20,)),
    "2-D": (lambda x: cad.exp(x * 0.5) @ cad.tensor(W[:5, :4]), (6, 5)),
    "reductions": (lambda x: cad.cumsum(x, axis=0) * cad.sum(x ** 2), (20,)),
    "views": (lambda x: cad.concatenate([x[::2], x[1::2] * 2.0, x[:3]]), (20,)),
    "small output": (lambda x: cad.sum(cad.reshape(x, (4, 5)), axis=1), (20,)),
    "constant output": (lambda x: cad.tensor(W[0]), (20,)),
    "identity": (lambda x: x, (20,)),
    "float32": (lambda x: cad.tanh(cad.tensor(W.astype(np.float32)) @ x), (20,)),
}


def _general(monkeypatch, fn):
    return without(monkeypatch, T, "_plain_hessian_arg", fn)


@pytest.mark.parametrize("name", sorted(FUNCS))
@pytest.mark.parametrize("tr", ["jacfwd", "jacrev"])
def test_plain_equals_general(name, tr, monkeypatch):
    f, shape = FUNCS[name]
    dt = np.float32 if name == "float32" else np.float64
    x0 = rng.uniform(0.2, 1.2, shape).astype(dt)
    J = getattr(cad, tr)(f)
    a = J(cad.tensor(x0))
    b = _general(monkeypatch, lambda: J(cad.tensor(x0)))
    assert a.shape == b.shape and a.dtype == b.dtype and not a.requires_grad
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_array_equal(np.asarray(J(x0)), np.asarray(a))   # (a numpy argument)
    if dt == np.float64:
        np.testing.assert_allclose(np.asarray(a), fd_jac(lambda v: np.asarray(f(cad.tensor(v))), x0),
                                   rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("tr", ["jacfwd", "jacrev"])
def test_calls_the_plain_path_hands_on(tr):
    x0 = rng.uniform(0.2, 1.2, 20)
    J = getattr(cad, tr)
    # a closure over a value an outer computation tracks: the Jacobian is differentiable
    s0 = np.array([0.7])
    outer = lambda s: cad.sum(J(lambda x: cad.tanh(cad.tensor(W) @ x) * s)(cad.tensor(x0)) ** 2)  # noqa: E731
    g = cad.grad(outer)(cad.tensor(s0))
    fd = fd_jac(lambda v: np.asarray(outer(cad.tensor(v))), s0)
    np.testing.assert_allclose(np.asarray(g), fd, rtol=1e-6)
    # an argument an outer transform tracks: the hessian by nesting
    H = cad.jacrev(J(lambda x: cad.sin(x) * cad.sum(x)))(cad.tensor(x0))
    Hfd = fd_jac(lambda v: np.asarray(J(lambda x: cad.sin(x) * cad.sum(x))(cad.tensor(v))), x0)
    np.testing.assert_allclose(np.asarray(H), Hfd, rtol=1e-5, atol=1e-6)
    # tuple outputs and has_aux take the general path
    j2 = J(lambda x: (x * 2.0, cad.sin(x)))(cad.tensor(x0))
    assert isinstance(j2, tuple) and j2[0].shape == (20, 20)
    ja, aux = J(lambda x: (cad.sin(x), 3), has_aux=True)(cad.tensor(x0))
    assert aux == 3 and ja.shape == (20, 20)
    # under vmap
    xs = rng.uniform(0.2, 1.2, (3, 20))
    jv = cad.vmap(J(lambda x: cad.tanh(cad.tensor(W) @ x)))(cad.tensor(xs))
    for k in range(3):
        np.testing.assert_allclose(np.asarray(jv)[k], np.asarray(J(lambda x: cad.tanh(cad.tensor(W) @ x))(cad.tensor(xs[k]))),
                                   rtol=1e-13)


def test_errors_are_the_general_paths():
    with pytest.raises(TypeError):
        cad.jacrev(lambda x: None)(cad.tensor(np.ones(20)))
    with pytest.raises(TypeError):
        cad.jacfwd(lambda x: "no")(cad.tensor(np.ones(20)))
