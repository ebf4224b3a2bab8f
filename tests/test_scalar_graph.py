"""NOTE [ Scalar second order in C ]: the recording reverse sweep of scalar code in
the engine (C.scalar_graph_sweep) against the Python sweep it replaces
(transforms.reverse_sweep, forced with transforms._C_SCALAR_GRAPH = False), for every
elementwise op of one or two inputs at points that take each branch of the partials'
`select`s (zeros for pow, xlogy, arctan2, hypot ...), in every second- and third-order
composition that records a reverse sweep; and against finite differences."""

import numpy as np
import pytest

import cad
import cad.transforms as T
from cad.ops import REGISTRY, primitives

EW = [op for op in primitives() if op.kind == "ew" and 1 <= len(op.args) <= 2 and op.d]
POINTS = [0.0, 0.3, -0.7, 1.0, 1.6, 2.5]
PAIRS = [(0.0, 0.0), (0.0, 2.0), (2.0, 0.0), (0.7, 1.3), (-1.2, 0.4), (1.5, -2.0), (3.0, 3.0), (0.0, -1.0)]


def api(op):
    return REGISTRY[op.name].api


def both(fn, c_used=True):
    """fn() under the C sweep and under the Python sweep; c_used: the C sweep ran
    (returned a result) at least once in the first"""
    prev, sweep, fwd = T._C_SCALAR_GRAPH, T.C.scalar_graph_sweep, T.C.scalar_graph_forward
    ran = []

    def counted(f):
        def run(*args):
            r = f(*args)
            ran.append(r is not None)
            return r
        return run
    try:
        T._C_SCALAR_GRAPH = True
        T.C.scalar_graph_sweep, T.C.scalar_graph_forward = counted(sweep), counted(fwd)
        a = fn()
        T._C_SCALAR_GRAPH = False
        b = fn()
    finally:
        T._C_SCALAR_GRAPH = prev
        T.C.scalar_graph_sweep, T.C.scalar_graph_forward = sweep, fwd
    assert any(ran) == c_used, ran
    return a, b


def same(a, b):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-300, equal_nan=True)


def _unary_fns(op):
    f = api(op)
    return {"f": lambda x: f(cad.sin(x) + x),   # the op on a tracked non-leaf
            "g": lambda x: f(x) * x}


@pytest.mark.parametrize("op", [o for o in EW if len(o.args) == 1], ids=lambda o: o.name)
def test_unary_ops_second_and_third_order_match_the_python_sweep(op):
    for name, fn in _unary_fns(op).items():
        for x in POINTS:
            with np.errstate(all="ignore"):
                same(*both(lambda: cad.grad(cad.grad(fn))(x)))
                same(*both(lambda: cad.grad(cad.grad(cad.grad(fn)))(x)))
                same(*both(lambda: cad.jvp(cad.grad(fn), (x,), (0.7,))[1]))
                same(*both(lambda: cad.grad(lambda v: cad.jvp(fn, (v,), (0.7,))[1])(x)))   # rev over fwd
                same(*both(lambda: cad.jvp(lambda v: cad.jvp(fn, (v,), (1.3,))[1], (x,), (0.7,))[1]))


@pytest.mark.parametrize("op", [o for o in EW if len(o.args) == 2], ids=lambda o: o.name)
def test_binary_ops_second_order_in_each_input_match_the_python_sweep(op):
    f = api(op)
    for x, y in PAIRS:
        with np.errstate(all="ignore"):
            for argnums in (0, 1, (0, 1)):
                h = lambda a, b: f(a, b) * (a + b)
                same(*both(lambda: cad.grad(lambda a, b: cad.grad(h, argnums=(0, 1))(a, b)[0] * 1.3
                                            + cad.grad(h, argnums=(0, 1))(a, b)[1], argnums=argnums)(x, y)))
            same(*both(lambda: cad.grad(cad.grad(lambda a: f(a, y)))(x)))      # a constant operand
            same(*both(lambda: cad.grad(cad.grad(lambda b: f(x, b)))(y)))
            same(*both(lambda: cad.grad(cad.grad(lambda a: f(a, a * 0.5 + 1.0)))(x)))   # one value twice
            # reverse over forward in both inputs, the tangents differentiated too
            same(*both(lambda: cad.grad(lambda a, b, u: cad.jvp(lambda p, q: f(p, q) * p, (a, b), (u, 0.4))[1],
                                        argnums=(0, 1, 2))(x, y, 0.9)))


def test_against_finite_differences_and_a_long_chain():
    def f(x):
        y = x
        for k in range(40):
            y = cad.sin(y) * 1.1 + cad.tanh(y * 0.3) - y ** 2 * 0.01 + cad.exp(-y * y) / (2.0 + y * y)
        return y
    g = cad.grad(f)
    for x in (0.3, -0.9, 1.4):
        eps = 1e-6
        fd = (float(g(x + eps)) - float(g(x - eps))) / (2 * eps)
        got = float(cad.grad(cad.grad(f))(x))
        assert abs(got - fd) <= 1e-6 * max(1.0, abs(fd))
        same(*both(lambda: cad.grad(cad.grad(f))(x)))
        same(*both(lambda: cad.grad(cad.grad(cad.grad(f)))(x)))
        got = float(cad.grad(lambda v: cad.jvp(f, (v,), (1.0,))[1])(x))
        assert abs(got - fd) <= 1e-6 * max(1.0, abs(fd))


def test_seeds_closures_and_create_graph():
    # a tracked cotangent with a constant primal (issue 9's reproducer)
    a, b = both(lambda: cad.grad(lambda v: cad.vjp(cad.sin, 0.7)[1](v)[0])(1.0))
    same(a, b)
    assert abs(float(a) - np.cos(0.7)) < 1e-15
    # a tracked tangent with a constant primal (issue 9's other reproducer)
    a, b = both(lambda: cad.grad(lambda t: cad.jvp(cad.sin, (0.7,), (t,))[1])(1.0))
    same(a, b)
    assert abs(float(a) - np.cos(0.7)) < 1e-15
    # a closure over an outer tracked value
    same(*both(lambda: cad.grad(lambda s: cad.grad(lambda x: cad.sin(x * s) * s)(0.4))(1.3)))
    # backward(create_graph=True) then grad of the gradient
    def cg():
        x = cad.tensor(0.8, requires_grad=True)
        y = cad.exp(cad.sin(x) * x)
        (gx,) = cad.autograd.grad(y, x, create_graph=True)
        (ggx,) = cad.autograd.grad(gx * gx, x)
        return ggx
    same(*both(cg))
    # hessian of a function of a few scalars packed in a tuple
    same(*both(lambda: cad.hessian(lambda x, y: cad.sin(x * y) + x ** 3, argnums=(0, 1))(0.5, 1.5)))


def test_segments_with_arrays_take_the_python_sweep():
    w = np.array([0.5, -1.0, 2.0])
    f = lambda x: cad.sum(cad.sin(x * w)) * x          # an array record: not of the kind
    same(*both(lambda: cad.grad(cad.grad(f))(0.7), c_used=False))
    assert abs(float(cad.grad(cad.grad(f))(0.7))
               - float(np.sum(-np.sin(0.7 * w) * w * w) * 0.7 + 2 * np.sum(np.cos(0.7 * w) * w))) < 1e-12


def test_tape_records_match_the_python_sweep_in_number():
    """the records the C sweep makes are those the Python rules make (the outer sweep's work)"""
    def f(x):
        return cad.sin(x) * cad.exp(x) + x ** 3 / (1.0 + x * x)
    def count():
        x = cad.tensor(0.6, requires_grad=True)
        (g,) = cad.autograd.grad(f(x), x, create_graph=True)
        return cad._core._engine.handle_of(g)[0].nrecs
    a, b = both(count)
    assert a <= b

