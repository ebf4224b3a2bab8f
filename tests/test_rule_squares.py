"""The rules evaluate a partial's ``name * name`` as square(name) (_rules._squares):
by the parse tree only (``a / x * x`` stays), and the derivatives through the
rules (second order: hessian, jacfwd of grad) equal finite differences for every
op whose partial has such a product."""
import ast

import numpy as np
import pytest

import cad
from cad.ops import _rules as R


@pytest.mark.parametrize("expr,want", [
    ("1 - out * out", "1 - square(out)"),
    ("-out * out", "-out * out"),            # (-out) * out
    ("a / x * x", "a / x * x"),
    ("9.8 * x * x + y * y", "9.8 * x * x + square(y)"),
    ("1 / sqrt(1 - x * x)", "1 / sqrt(1 - square(x))"),
    ("x * y", "x * y"),
    ("exp(-x * x)", "exp(-x * x)"),          # (-x) * x: the left is not a name
    ("x * x * x", "square(x) * x"),
])
def test_rewrite(expr, want):
    assert ast.unparse(R._squares(expr)) == want


OPS = {"tanh": (cad.tanh, (-1.5, 1.5)), "tan": (cad.tan, (-0.8, 0.8)),
       "arcsin": (cad.arcsin, (-0.8, 0.8)), "arctan": (cad.arctan, (-2.0, 2.0)),
       "arctanh": (cad.arctanh, (-0.8, 0.8)), "reciprocal": (cad.reciprocal, (0.5, 2.0))}


@pytest.mark.parametrize("name", list(OPS))
def test_second_order_through_rules(name):
    f1, (lo, hi) = OPS[name]
    rng = np.random.default_rng(3)
    x = rng.uniform(lo, hi, 5)
    W = cad.tensor(rng.normal(size=(5, 5)) * 0.2)
    f = lambda v: cad.sum(f1(W @ v + v))
    H = np.asarray(cad.hessian(f, cad.tensor(x)))
    g = lambda v: np.asarray(cad.grad(f)(cad.tensor(v)))
    eps = 1e-6
    fd = np.stack([(g(x + eps * e) - g(x - eps * e)) / (2 * eps) for e in np.eye(5)], 1)
    np.testing.assert_allclose(H, fd, rtol=1e-5, atol=1e-6)
    tp = cad.record(f, cad.tensor(x))   # the recorded Hessian (the rules' ops replayed)
    np.testing.assert_allclose(np.asarray(tp.hessian(cad.tensor(x))), H, rtol=1e-12, atol=1e-12)
