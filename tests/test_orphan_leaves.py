"""NOTE [ Orphan leaves ]: a transform whose function runs another transform over a
value it closes over returned a result that still carried a graph (the inner
transform's fresh input stayed on the shared tape as a leaf, and the outer one's "does
anything outside track this?" check counted it).  A leaf only the tape holds is nobody's
variable; a leaf anyone holds still makes the sweep record."""
import gc

import numpy as np
import pytest

import cad
from cad._core import _engine as C

from _numeric import fd_jac

RNG = np.random.default_rng(5)
W0 = RNG.standard_normal((3, 3))
X0 = RNG.standard_normal(3)


def _f(W):
    def f(x):
        gW = cad.grad(lambda w: cad.sum(cad.tanh(w @ x)))(W)
        return cad.sum(gW * x)
    return f


def _f_np(x):
    t = np.tanh(W0 @ x)
    gW = np.outer(1 - t * t, x)
    return np.sum(gW * x)


@pytest.mark.parametrize("transform", ["grad", "jacrev", "jacfwd", "hessian"])
def test_inner_transform_over_a_closed_over_constant(transform):
    f = _f(cad.tensor(W0))
    x = cad.tensor(X0)
    got = getattr(cad, transform)(f)(x)
    assert not got.requires_grad and got.is_leaf
    if transform == "hessian":
        ref = fd_jac(lambda z: cad.grad(f)(cad.tensor(z)).numpy(), X0)
    else:
        ref = fd_jac(_f_np, X0)
    assert np.allclose(got.numpy(), ref, atol=1e-5)


def test_a_leaf_the_user_holds_still_records():
    w = cad.tensor(W0, requires_grad=True)   # the user's variable, closed over
    f = _f(w)
    x = cad.tensor(X0)
    g = cad.grad(f)(x)
    assert g.requires_grad   # a graph back to w: the outer computation tracks it
    cad.sum(g).backward()
    assert w.grad is not None

    def loss(wv):
        return cad.sum(cad.grad(_f(wv))(cad.tensor(X0)))
    ref = fd_jac(lambda z: loss(cad.tensor(z)).numpy(), W0)
    assert np.allclose(w.grad.numpy(), ref, atol=1e-5)


def test_an_outer_grad_through_the_inner_transform():
    # grad over W of a function that runs grad over x inside: the inner transform's
    # result must differentiate with respect to the outer's fresh input
    def outer(W):
        return cad.sum(cad.grad(lambda x: cad.sum(cad.tanh(W @ x) ** 2))(cad.tensor(X0)))
    got = cad.grad(outer)(cad.tensor(W0)).numpy()
    ref = fd_jac(lambda z: outer(cad.tensor(z)).numpy(), W0)
    assert np.allclose(got, ref, atol=1e-5)


def test_a_leaf_registered_twice_and_held():
    # the same user leaf used twice on the tape (two registrations) and held by the
    # caller: counted, so the sweep records
    w = cad.tensor(W0, requires_grad=True)

    def f(x):
        return cad.sum(cad.tanh(w @ x)) + cad.sum(w @ x)
    g = cad.grad(f)(cad.tensor(X0))
    assert g.requires_grad
    gc.collect()
    assert C.is_grad_enabled()
