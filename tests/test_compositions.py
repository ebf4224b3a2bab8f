"""The composition suite, generated from the op table (issue 9, "Tests").

For every differentiable op (a sample of its cases, fixed seeds), in float64,
against central finite differences of the op's numpy reference (tests/_compose.py):

- order 2, all four mode pairs (rev-over-rev, fwd-over-rev, rev-over-fwd,
  fwd-over-fwd), with random dense tangents and cotangents, derivatives with
  respect to the primals AND the tangent/cotangent ("all"), with respect to the
  tangent/cotangent alone while the primals are constants ("seed"), and with some
  inputs closed over as constants ("first", "last"); with CAD_TEST_FORK=1 each test
  runs in a forked child (tests/_compose.isolated), so an engine segfault fails one
  test, not pytest (by default they run in pytest's process: a crash stops the run);
- order-3 towers for the elementwise ops;
- jacfwd against jacrev, hessian against finite differences;
- constant primals (Python floats, numpy arrays), closures over tracked values,
  cad.tensor of nested lists of tracked tensors;
- every reproducer of issue 9 as a regression test (the crashes in a child process).
"""
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from _compose import (REGISTRY, cad, build, numpy_fn, sample, as_primal, D1, D2, per_component, T3,
                      rng_for, dense, arr, close, has_leaf, spec_kind, isolated)

RTOL, ATOL = 1e-4, 1e-5          # second differences in float64 are good to ~1e-8
# every case of every op (31 s here); CAD_COMPOSE_CASES=2 samples two per op (12 s)
CASES_PER_OP = int(__import__("os").environ.get("CAD_COMPOSE_CASES", "99"))


def _eligible(op):
    if not op.differentiable or op.api is None:
        return []
    out = []
    for i, c in enumerate(op.cases):
        if not has_leaf(c):
            continue
        if op.name == "astype" and c.kwargs.get("dtype") != "float64":
            continue   # float32 values: not a float64 finite-difference check
        leaves, _, _ = build(op, c)
        if any(lf.size == 0 for lf in leaves):
            continue   # empty inputs: nothing to differentiate
        out.append((i, c))
    return out


def _sampled():
    out = []
    for op in REGISTRY.values():
        cs = _eligible(op)
        if not cs:
            continue
        rng = rng_for("cases", op.name)
        pick = sorted(rng.choice(len(cs), size=min(CASES_PER_OP, len(cs)), replace=False))
        out += [(op, cs[j][0], cs[j][1]) for j in pick]
    return out


SAMPLED = _sampled()
SECOND = [(op, i, c) for op, i, c in SAMPLED if op.second_order]
PAIRS = ("rev_rev", "fwd_rev", "rev_fwd", "fwd_fwd")
# wrt = all: derivatives in every float input and in the inner tangent/cotangent;
#       seed: in the inner tangent/cotangent only, the primals constants (floats, arrays);
#       first / last: in the first / last float input (and the seed), the other float
#       inputs closed over as numpy constants (dot(z, r) with a constant r);
# post = op: the op alone; sin_op: followed by sin, so that second derivatives of linear
#       ops are not all zero and the op's rules meet a nonlinear neighbour.
VARIANTS = [("all", "op"), ("seed", "op"), ("all", "sin_op"), ("seed", "sin_op"), ("first", "sin_op"),
            ("last", "sin_op")]


def _n_leaves(op, c):
    return sum(spec_kind(s)[0] in ("A", "T", "S", "V") for s in c.inputs)


ORDER2 = [(op, i, c, pair, wrt, post) for op, i, c in SECOND for pair in PAIRS for wrt, post in VARIANTS
          if not (wrt in ("first", "last") and _n_leaves(op, c) < 2)]


def _id(op, i, c):
    return f"{op.name}-{i}[{c!r}]"


def _tol(op):
    return op.tol or (RTOL, ATOL)


# ------------------------------------------------------------------ order 2, four mode pairs

@pytest.mark.parametrize("op,i,case,pair,wrt,post", ORDER2,
                         ids=[f"{_id(op, i, c)}-{pair}-{wrt}-{post}" for op, i, c, pair, wrt, post in ORDER2])
@isolated
def test_order2_mode_pair(op, i, case, pair, wrt, post):
    leaves, call0, xs_all = sample(op, case, seed=i)
    F0 = numpy_fn(op, case)
    if wrt == "first":      # the other float inputs: numpy constants closed over
        consts = [as_primal(x) for x in xs_all[1:]]
        xs = xs_all[:1]
        call1 = lambda x: call0(x, *consts)
        F1 = lambda xa: F0([xa[0]] + xs_all[1:])
        wrt = "all"
    elif wrt == "last":
        consts = [as_primal(x) for x in xs_all[:-1]]
        xs = xs_all[-1:]
        call1 = lambda x: call0(*consts, x)
        F1 = lambda xa: F0(xs_all[:-1] + [xa[0]])
        wrt = "all"
    else:
        xs, call1, F1 = xs_all, call0, F0
    if post == "sin_op":
        call = lambda *a: cad.sin(call1(*a))
        F = lambda xa: np.sin(F1(xa))
    else:
        call, F = call1, F1
    n = len(xs)
    rng = rng_for(op.name, i, pair, wrt, post)
    y0 = F(xs)
    w = dense(rng, y0.shape)                       # cotangent of the inner vjp
    u = [dense(rng, x.shape) for x in xs]          # scalarises the inner vjp / tangent of the inner jvp
    dx = [dense(rng, x.shape) for x in xs]         # outer tangents
    dseed = [dense(rng, x.shape) for x in xs]      # outer tangent of the inner jvp's tangent
    dw = dense(rng, y0.shape)                      # outer tangent of the inner vjp's cotangent
    rtol, atol = _tol(op)
    h2 = max(op.fd_eps, 1e-4)
    P = [as_primal(x) for x in xs]
    W = as_primal(w)
    U = [cad.tensor(a) for a in u]

    def G(*args):                                  # x..., w -> J(x)^T w (one per leaf)
        _, f = cad.vjp(call, *args[:n])
        return f(args[n])

    def H(*args):                                  # x..., t -> J(x) t
        return cad.jvp(call, tuple(args[:n]), tuple(args[n:]))[1]

    def wD2(a, b):
        return float(np.sum(w * D2(F, xs, a, b, h2)))

    if pair == "rev_rev":        # grad of <u, J^T w>
        def S(*args):
            g = G(*args)
            return sum(cad.sum(g[k] * U[k]) for k in range(n))
        if wrt == "all":
            got = cad.grad(S, argnums=tuple(range(n + 1)))(*P, W)
            want_x = per_component(xs, lambda e: wD2(u, e))
            for k in range(n):
                close(got[k], want_x[k], rtol, atol, f"d/dx{k}")
            close(got[n], D1(F, xs, u, op.fd_eps), rtol, atol, "d/dw")
        else:
            got = cad.grad(lambda w_: S(*P, w_))(W)
            close(got, D1(F, xs, u, op.fd_eps), rtol, atol, "d/dw (constant primals)")
    elif pair == "fwd_rev":      # jvp of (x, w) -> J^T w
        if wrt == "all":
            _, got = cad.jvp(G, tuple(P) + (W,), tuple(dx) + (dw,))
            want = per_component(xs, lambda e: wD2(dx, e) + float(np.sum(dw * D1(F, xs, e, op.fd_eps))))
        else:
            _, got = cad.jvp(lambda w_: G(*P, w_), (W,), (dw,))
            want = per_component(xs, lambda e: float(np.sum(dw * D1(F, xs, e, op.fd_eps))))
        assert len(got) == n
        for k in range(n):
            close(got[k], want[k], rtol, atol, f"tangent of cotangent {k}")
    elif pair == "rev_fwd":      # vjp of (x, t) -> J t, cotangent w
        T = [as_primal(a) for a in u]
        if wrt == "all":
            _, f = cad.vjp(H, *P, *T)
            got = f(cad.tensor(w))
            want_x = per_component(xs, lambda e: wD2(u, e))
            for k in range(n):
                close(got[k], want_x[k], rtol, atol, f"d/dx{k}")
            got = got[n:]
        else:
            _, f = cad.vjp(lambda *t_: H(*P, *t_), *T)
            got = f(cad.tensor(w))
        want_t = per_component(xs, lambda e: float(np.sum(w * D1(F, xs, e, op.fd_eps))))
        for k in range(n):
            close(got[k], want_t[k], rtol, atol, f"d/dt{k}")
    else:                        # fwd_fwd: jvp of (x, t) -> J t
        T = [as_primal(a) for a in u]
        if wrt == "all":
            _, got = cad.jvp(H, tuple(P) + tuple(T), tuple(dx) + tuple(dseed))
            want = D2(F, xs, dx, u, h2) + D1(F, xs, dseed, op.fd_eps)
        else:
            _, got = cad.jvp(lambda *t_: H(*P, *t_), tuple(T), tuple(dseed))
            want = D1(F, xs, dseed, op.fd_eps)
        close(got, want, rtol, atol, "tangent of tangent")


# ------------------------------------------------------------------ order 3, elementwise ops

def _tower_cases():
    out = []
    for op in REGISTRY.values():
        if op.kind != "ew" or not op.differentiable or not op.second_order:
            continue
        for i, c in enumerate(op.cases):
            specs = [s if isinstance(s, tuple) and s and isinstance(s[0], str) else ("A", s) for s in c.inputs]
            if all((k == "A" and v == ()) or k == "C" for k, v in specs) and has_leaf(c):
                out.append((op, i, c))
                break
    return out


TOWERS = ("rev_rev_rev", "fwd_fwd_fwd", "fwd_rev_fwd", "rev_fwd_rev")
ORDER3 = [(op, i, c, m) for op, i, c in _tower_cases() for m in TOWERS]


def _sum_dir(g, d):
    """<d, g> for a tuple of 0-d gradients g"""
    g = g if isinstance(g, tuple) else (g,)
    return sum(gk * float(dk) for gk, dk in zip(g, d))


@pytest.mark.parametrize("op,i,case,mode", ORDER3,
                         ids=[f"{_id(op, i, c)}-{m}" for op, i, c, m in ORDER3])
@isolated
def test_order3_tower_elementwise(op, i, case, mode):
    leaves, call, xs = sample(op, case, seed=i)
    F = numpy_fn(op, case)
    m = len(xs)
    rng = rng_for(op.name, i, mode, "tower")
    a, b, c = (dense(rng, (m,)) for _ in range(3))
    p0 = np.array([float(x) for x in xs])
    P = [float(v) for v in p0]
    allarg = tuple(range(m))

    def f_np(p):
        return float(F([np.asarray(v) for v in p]))

    def gradv(f):     # p -> tuple of the m partials
        g = cad.grad(f, argnums=allarg)
        return g

    if mode == "rev_rev_rev":
        g1 = lambda *p: _sum_dir(gradv(call)(*p), a)
        g2 = lambda *p: _sum_dir(gradv(g1)(*p), b)
        got = np.array([float(arr(v)) for v in gradv(g2)(*P)])
        want = np.array([T3(f_np, p0, a, b, e) for e in np.eye(m)])
    elif mode == "fwd_fwd_fwd":
        d1 = lambda *p: cad.jvp(call, p, tuple(a))[1]
        d2 = lambda *p: cad.jvp(d1, p, tuple(b))[1]
        got = arr(cad.jvp(d2, tuple(P), tuple(c))[1])
        want = T3(f_np, p0, a, b, c)
    elif mode == "fwd_rev_fwd":
        d1 = lambda *p: cad.jvp(call, p, tuple(a))[1]
        g2 = lambda *p: _sum_dir(gradv(d1)(*p), b)
        got = arr(cad.jvp(g2, tuple(P), tuple(c))[1])
        want = T3(f_np, p0, a, b, c)
    else:  # rev_fwd_rev
        g1 = lambda *p: _sum_dir(gradv(call)(*p), a)
        d2 = lambda *p: cad.jvp(g1, p, tuple(b))[1]
        got = np.array([float(arr(v)) for v in gradv(d2)(*P)])
        want = np.array([T3(f_np, p0, a, b, e) for e in np.eye(m)])
    close(got, want, 1e-4, 1e-5, f"third derivative ({mode})")


# ------------------------------------------------------------------ jacfwd / jacrev / hessian

JAC = [(op, i, c) for op, i, c in SAMPLED]


@pytest.mark.parametrize("op,i,case", JAC, ids=[_id(*p) for p in JAC])
@isolated
def test_jacfwd_equals_jacrev_and_fd(op, i, case):
    leaves, call, xs = sample(op, case, seed=i + 7)
    F = numpy_fn(op, case)
    n = len(xs)
    P = [as_primal(x) for x in xs]
    jr = cad.jacrev(call, argnums=tuple(range(n)))(*P)
    jf = cad.jacfwd(call, argnums=tuple(range(n)))(*P)
    y = F(xs)
    for k in range(n):
        close(jf[k], arr(jr[k]), 1e-10, 1e-12, f"jacfwd vs jacrev, input {k}")
        cols = [D1(F, xs, [e if kk == k else np.zeros_like(x) for kk, x in enumerate(xs)], op.fd_eps)
                for e in np.eye(xs[k].size).reshape((xs[k].size,) + xs[k].shape)]
        want = np.stack(cols, axis=-1).reshape(y.shape + xs[k].shape) if cols else np.zeros(y.shape + xs[k].shape)
        close(jr[k], want, *_tol(op), f"jacrev vs finite differences, input {k}")


HESS = [(op, i, c) for op, i, c in SECOND]


@pytest.mark.parametrize("op,i,case", HESS, ids=[_id(*p) for p in HESS])
@isolated
def test_hessian_matches_fd(op, i, case):
    leaves, call, xs = sample(op, case, seed=i + 11)
    F = numpy_fn(op, case)
    n = len(xs)
    rng = rng_for(op.name, i, "hessian")
    w = dense(rng, F(xs).shape)
    W = cad.tensor(w)
    k = n - 1   # the last float input (the others held as numpy constants)
    P = [as_primal(x) for x in xs]

    def phi(xk):
        args = list(P)
        args[k] = xk
        return cad.sum(call(*args) * W)
    Hm = cad.hessian(phi, P[k])
    size = xs[k].size
    E = np.eye(size).reshape((size,) + xs[k].shape)
    zero = [np.zeros_like(x) for x in xs]

    def dirk(e):
        d = list(zero)
        d[k] = e
        return d
    want = np.array([[np.sum(w * D2(F, xs, dirk(E[r]), dirk(E[s]), max(op.fd_eps, 1e-4)))
                      for s in range(size)] for r in range(size)]).reshape(xs[k].shape * 2)
    close(Hm, want, *_tol(op), "hessian")


# ------------------------------------------------------------------ constants and closures

@isolated
def test_grad_of_python_float_and_numpy_array():
    close(cad.grad(lambda x: cad.sin(x) * x)(0.7), np.cos(0.7) * 0.7 + np.sin(0.7), 1e-12, 1e-14, "float")
    x0 = np.array([0.3, -1.2, 2.0])
    close(cad.grad(lambda x: cad.sum(cad.exp(x) * x))(x0), np.exp(x0) * (1 + x0), 1e-12, 1e-14, "ndarray")


@isolated
def test_jvp_and_vjp_of_constants():
    x0 = np.array([0.3, -1.2]); t0 = np.array([0.4, 0.9])
    _, jt = cad.jvp(lambda x: cad.tanh(x) ** 2, (x0,), (t0,))
    close(jt, 2 * np.tanh(x0) * (1 - np.tanh(x0) ** 2) * t0, 1e-12, 1e-14, "jvp")
    _, f = cad.vjp(lambda x: cad.exp(x) * 2.0, 0.5)
    close(f(1.5)[0], 3.0 * np.exp(0.5), 1e-12, 1e-14, "vjp of a Python float with a float cotangent")


CLOSURE_FNS = {
    "mul": (lambda x, y: x * y, lambda x, y: 1.0),
    "x_sin_y": (lambda x, y: x * cad.sin(y), lambda x, y: np.cos(y)),
    "pow": (lambda x, y: x ** y, lambda x, y: x ** (y - 1) * (1 + y * np.log(x))),
    "div": (lambda x, y: cad.exp(x) / y, lambda x, y: -np.exp(x) / y ** 2),
}


CLOSURE_MODES = {
    # d/dx of an inner derivative in y at the constant y0, closing over x
    "grad_of_grad": lambda f, x0, y0: cad.grad(lambda x: cad.grad(lambda y: f(x, y))(y0))(x0),
    "grad_of_jvp": lambda f, x0, y0: cad.grad(lambda x: cad.jvp(lambda y: f(x, y), (y0,), (1.0,))[1])(x0),
    "grad_of_vjp": lambda f, x0, y0: cad.grad(lambda x: cad.vjp(lambda y: f(x, y), y0)[1](1.0)[0])(x0),
    "jvp_of_grad": lambda f, x0, y0: cad.jvp(lambda x: cad.grad(lambda y: f(x, y))(y0), (x0,), (1.0,))[1],
    "jvp_of_jvp": lambda f, x0, y0: cad.jvp(lambda x: cad.jvp(lambda y: f(x, y), (y0,), (1.0,))[1],
                                            (x0,), (1.0,))[1],
}
CLOSURES = [(n, m) for n in ("mul", "x_sin_y", "pow", "div") for m in CLOSURE_MODES]


@pytest.mark.parametrize("name,mode", CLOSURES, ids=[f"{n}-{m}" for n, m in CLOSURES])
@isolated
def test_inner_transform_at_a_constant_closing_over_the_outer_variable(name, mode):
    """e.g. cad.grad(lambda x: cad.grad(lambda y: f(x, y))(y0))(x0) = d2f/dxdy"""
    f, dxy = CLOSURE_FNS[name]
    x0, y0 = 1.3, 0.6
    close(CLOSURE_MODES[mode](f, x0, y0), dxy(x0, y0), 1e-10, 1e-12, mode)


LEAF_MODES = {
    "grad": lambda f, a, y0: cad.grad(lambda y: f(a, y))(y0),
    "jvp": lambda f, a, y0: cad.jvp(lambda y: f(a, y), (y0,), (1.0,))[1],
    "vjp": lambda f, a, y0: cad.vjp(lambda y: f(a, y), y0)[1](1.0)[0],
}
LEAF_CLOSURES = [(n, m) for n in ("mul", "x_sin_y", "pow", "div") for m in LEAF_MODES]


@pytest.mark.parametrize("name,mode", LEAF_CLOSURES, ids=[f"{n}-{m}" for n, m in LEAF_CLOSURES])
@isolated
def test_inner_transform_closing_over_a_tensor_that_requires_grad(name, mode):
    """an inner transform over y closing over a leaf a: autograd.grad of its result in a"""
    f, dxy = CLOSURE_FNS[name]
    x0, y0 = 1.3, 0.6
    a = cad.tensor(x0, requires_grad=True)
    (da,) = cad.autograd.grad(LEAF_MODES[mode](f, a, y0), (a,))
    close(da, dxy(x0, y0), 1e-10, 1e-12, f"autograd.grad of an inner {mode} over a closed-over leaf")


@isolated
def test_vjp_cotangent_closing_over_the_outer_variable():
    # d/dx [ d/dy sin(x*y) at y=0.3 ] = cos(xy) - xy sin(xy)
    x0, y0 = 0.7, 0.3
    got = cad.grad(lambda x: cad.vjp(lambda y: cad.sin(x * y), y0)[1](1.0)[0])(x0)
    close(got, np.cos(x0 * y0) - x0 * y0 * np.sin(x0 * y0), 1e-10, 1e-12, "grad of vjp (closure)")


# ------------------------------------------------------------------ cad.tensor of tracked tensors

@isolated
def test_tensor_of_nested_list_of_tracked_tensors():
    close(cad.grad(lambda x: cad.sum(cad.tensor([[x, 2 * x]])))(1.0), 3.0, 0, 0, "nested list")


@isolated
def test_tensor_of_flat_list_of_tracked_tensors():
    close(cad.grad(lambda x: cad.sum(cad.tensor([x, 2 * x])))(1.0), 3.0, 0, 0, "flat list")


@isolated
def test_tensor_of_a_tracked_tensor_keeps_the_graph():
    close(cad.grad(lambda x: cad.tensor(x) * 3.0)(1.0), 3.0, 0, 0, "cad.tensor(x)")


def _nested_f(x, y):
    # f = sum(M @ v), M = [[x, y], [x*y, 1]], v = [y, x]:  2xy + x y^2 + x
    M = cad.tensor([[x, y], [x * y, 1.0]])
    v = cad.tensor([y, x])
    return cad.sum(M @ v)


NESTED_PAIRS = {
    "rev_rev": lambda x0, y0: cad.grad(lambda x: cad.grad(_nested_f, argnums=1)(x, y0))(x0),
    "fwd_rev": lambda x0, y0: cad.jvp(lambda x: cad.grad(_nested_f, argnums=1)(x, y0), (x0,), (1.0,))[1],
    "rev_fwd": lambda x0, y0: cad.grad(lambda x: cad.jvp(lambda y: _nested_f(x, y), (y0,), (1.0,))[1])(x0),
    "fwd_fwd": lambda x0, y0: cad.jvp(lambda x: cad.jvp(lambda y: _nested_f(x, y), (y0,), (1.0,))[1],
                                      (x0,), (1.0,))[1],
    "rev_rev_tracked": lambda x0, y0: cad.grad(
        lambda x: cad.grad(_nested_f, argnums=1)(x, y0 + 0 * x))(x0),
}


@isolated
def test_tensor_of_nested_lists_first_order():
    x0, y0 = 0.4, -1.1
    g = cad.grad(_nested_f, argnums=(0, 1))(x0, y0)
    close(g[0], 2 * y0 + y0 ** 2 + 1, 1e-12, 1e-14, "df/dx")
    close(g[1], 2 * x0 + 2 * x0 * y0, 1e-12, 1e-14, "df/dy")
    _, t = cad.jvp(_nested_f, (x0, y0), (0.3, -0.8))
    close(t, (2 * y0 + y0 ** 2 + 1) * 0.3 + (2 * x0 + 2 * x0 * y0) * -0.8, 1e-12, 1e-14, "jvp")


@pytest.mark.parametrize("pair", list(NESTED_PAIRS))
@isolated
def test_tensor_of_nested_lists_second_order(pair):
    x0, y0 = 0.4, -1.1
    close(NESTED_PAIRS[pair](x0, y0), 2 + 2 * y0, 1e-12, 1e-14, f"d2f/dxdy ({pair})")


@isolated
def test_tensor_of_nested_list_jvp_and_jacobian():
    f = lambda x: cad.tensor([[cad.sin(x), x * x], [x, 1.0]])
    _, t = cad.jvp(f, (0.5,), (2.0,))
    close(t, np.array([[np.cos(0.5), 1.0], [1.0, 0.0]]) * 2.0, 1e-12, 1e-14, "jvp")
    close(cad.jacfwd(f)(0.5), np.array([[np.cos(0.5), 1.0], [1.0, 0.0]]), 1e-12, 1e-14, "jacfwd")
    close(cad.jacrev(f)(0.5), np.array([[np.cos(0.5), 1.0], [1.0, 0.0]]), 1e-12, 1e-14, "jacrev")


# ------------------------------------------------------------------ issue 9: silently wrong

@isolated
def test_issue9_grad_of_jvp_of_dot_wrt_primal_and_tangent():
    r = np.array([1., 2.]); x0 = np.array([.1, .2]); t0 = np.array([1., 0.])
    h = lambda x, t: cad.jvp(lambda z: cad.sin(cad.dot(z, r)), (x,), (t,))[1]
    gx, gt = cad.grad(h, argnums=(0, 1))(x0, t0)
    # h = cos(x.r) (t.r), x.r = 0.5, t.r = 1
    close(gx, -np.sin(.5) * r, 1e-12, 1e-14, "d/dx")
    close(gt, np.cos(.5) * r, 1e-12, 1e-14, "d/dt")


@isolated
def test_issue9_grad_of_jvp_of_exp_dot():
    r = np.array([1., 2.]); x0 = np.array([.1, .2]); t0 = np.array([.3, -.7])
    h = lambda x, t: cad.jvp(lambda z: cad.exp(cad.dot(z, r)), (x,), (t,))[1]
    gx, gt = cad.grad(h, argnums=(0, 1))(x0, t0)
    s = x0 @ r
    close(gx, np.exp(s) * (t0 @ r) * r, 1e-12, 1e-14, "d/dx")
    close(gt, np.exp(s) * r, 1e-12, 1e-14, "d/dt")


@isolated
def test_issue9_grad_of_jvp_of_sin_sum_is_right_reference():
    r = np.array([1., 2.]); x0 = np.array([.1, .2]); t0 = np.array([1., 0.])
    h = lambda x, t: cad.jvp(lambda z: cad.sin(cad.sum(z * r)), (x,), (t,))[1]
    gx, gt = cad.grad(h, argnums=(0, 1))(x0, t0)
    close(gx, -np.sin(.5) * r, 1e-12, 1e-14, "d/dx")
    close(gt, np.cos(.5) * r, 1e-12, 1e-14, "d/dt")


@isolated
def test_issue9_cotangent_differentiable_with_constant_primal():
    close(cad.grad(lambda v: cad.vjp(cad.sin, 0.7)[1](v)[0])(1.0), np.cos(0.7), 1e-12, 1e-14, "vjp")


@isolated
def test_issue9_tangent_differentiable_with_constant_primal():
    close(cad.grad(lambda t: cad.jvp(cad.sin, (0.7,), (t,))[1])(1.0), np.cos(0.7), 1e-12, 1e-14, "jvp")


@isolated
def test_issue9_pow_zero_exponent_second_derivative_at_zero():
    close(cad.grad(cad.grad(lambda x: x ** 0.0))(0.0), 0.0, 0, 0, "x**0 at 0")


@isolated
def test_issue9_pow_zero_base_second_derivative_in_exponent():
    close(cad.grad(cad.grad(lambda y: cad.pow(0.0, y)))(0.3), 0.0, 0, 0, "0**y")


@isolated
def test_issue9_tensor_nested_list():
    close(cad.grad(lambda x: cad.sum(cad.tensor([[x, 2 * x]])))(1.0), 3.0, 0, 0, "nested")


@isolated
def test_issue9_tensor_of_tracked_tensor():
    close(cad.grad(lambda x: cad.tensor(x) * 3.0)(1.0), 3.0, 0, 0, "cad.tensor(x)")


@isolated
def test_issue9_mod_derivative():
    close(cad.grad(lambda x: x % 1.8)(0.7), 1.0, 0, 0, "x % 1.8")
    close(cad.grad(lambda x: x % 1.8)(2.5), 1.0, 0, 0, "x % 1.8 past one period")


@isolated
def test_issue9_transpose_two_integer_axes_swaps_or_raises():
    x = cad.tensor(np.arange(6.0).reshape(2, 3))
    try:
        y = cad.transpose(x, 0, 1)
    except (TypeError, ValueError):
        return
    assert arr(y).shape == (3, 2), f"transpose(x, 0, 1) gave shape {arr(y).shape}"
    close(y, np.arange(6.0).reshape(2, 3).T, 0, 0, "swapped")


@isolated
def test_issue9_no_grad_without_parentheses_runs_the_function():
    @cad.no_grad
    def f(x):
        return x * 2.0
    y = f(cad.tensor(1.5, requires_grad=True))
    assert isinstance(y, cad.Tensor), f"@cad.no_grad returned {type(y).__name__}"
    assert not y.requires_grad
    close(y, 3.0, 0, 0, "value")


@isolated
def test_issue9_dot_shape_error_names_dot():
    with pytest.raises(Exception) as e:
        cad.dot(cad.ones(3), cad.ones(4))
    assert "dot" in str(e.value) and "matmul" not in str(e.value), str(e.value)


@isolated
def test_issue9_saved_tape_with_cross_entropy_hessian(tmp_path):
    labels = np.array([0, 2, 1])
    f = lambda z: cad.cross_entropy(z, labels)
    z0 = np.random.default_rng(0).standard_normal((3, 3))
    tape = cad.record(f, cad.tensor(z0, requires_grad=True))
    path = str(tmp_path / "xent.cad")
    cad.save(tape, path)
    t2 = cad.load(path)
    want = arr(cad.hessian(f, z0))
    got = t2.hessian(cad.tensor(z0, requires_grad=True))
    close(got, want, 1e-10, 1e-12, "loaded tape hessian")


# ------------------------------------------------------------------ issue 9: crashes, in a child

def _child(code):
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, (f"child exited with {r.returncode}"
                               f"{' (signal %d)' % -r.returncode if r.returncode < 0 else ''}\n"
                               f"{r.stdout[-2000:]}{r.stderr[-2000:]}")
    return r.stdout


def test_issue9_crash_autograd_grad_broadcast_create_graph():
    out = _child("""
        import numpy as np, cad
        x = cad.tensor(0.7, requires_grad=True); v = cad.ones(1, requires_grad=True)
        (g,) = cad.autograd.grad(cad.exp(x) + np.array([2.0]), x, grad_outputs=v, create_graph=True)
        print(repr(float(np.asarray(g))))
    """)
    assert abs(float(out.strip()) - np.exp(0.7)) < 1e-12, out


def test_issue9_crash_jvp_of_jvp_sum_sin_matmul():
    out = _child("""
        import numpy as np, cad
        M = np.array([[1., 2.], [3., 4.]])
        h = lambda x, t: cad.jvp(lambda z: cad.sum(cad.sin(M @ z)), (x,), (t,))[1]
        _, t = cad.jvp(h, (np.array([.1, .2]), np.array([1., 0.])), (np.array([.3, -.2]), np.array([.5, .7])))
        print(repr(float(np.asarray(t))))
    """)
    x, t, dx, dt = np.array([.1, .2]), np.array([1., 0.]), np.array([.3, -.2]), np.array([.5, .7])
    M = np.array([[1., 2.], [3., 4.]])
    z = M @ x
    want = np.sum(-np.sin(z) * (M @ dx) * (M @ t)) + np.sum(np.cos(z) * (M @ dt))
    assert abs(float(out.strip()) - want) < 1e-12, (out, want)


# ------------------------------------------------------------------ optional cross-check (JAX)

@isolated
def test_cross_check_against_jax_hessians():
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    jnp = jax.numpy
    x0 = np.array([0.3, -0.7, 1.1])
    M = np.array([[1., 2., 0.5], [-1., 0.3, 2.]])
    fns = {
        "sin_exp": (lambda x: cad.sum(cad.sin(x) * cad.exp(x)), lambda x: jnp.sum(jnp.sin(x) * jnp.exp(x))),
        "tanh_matmul": (lambda x: cad.sum(cad.tanh(M @ x) ** 2), lambda x: jnp.sum(jnp.tanh(M @ x) ** 2)),
        "logsumexp": (lambda x: cad.logsumexp(x * x), lambda x: jax.scipy.special.logsumexp(x * x)),
    }
    for name, (fc, fj) in fns.items():
        close(cad.hessian(fc, x0), np.asarray(jax.hessian(fj)(x0)), 1e-10, 1e-12, name)


# ---- NOTE [ cumprod's rules at zeros ]: the differentiable rules divided by x
# (hessian, jvp at a zero: nan; found by hand on 2026-12-05)

_CP_ROWS = np.array([[1.0, 0.0, 2.0, 3.0],      # one zero
                     [0.0, 2.0, 0.0, 3.0],      # two
                     [1.2, 0.0, 0.0, 0.0],      # three
                     [0.5, 2.0, -1.5, 0.7]])    # none


def _cp_f(x):
    return cad.sum(cad.sin(cad.cumprod(x, axis=1)) * _CP_W)


_CP_W = np.random.default_rng(5).normal(size=(4, 4))


def _cp_np_grad(x):
    """the gradient by hand: d/dx_j sum_i w_i sin(y_i) = sum_{i>=j} w_i cos(y_i) prod_{k<=i, k!=j} x_k"""
    g = np.zeros_like(x)
    for r in range(x.shape[0]):
        y = np.cumprod(x[r])
        for j in range(x.shape[1]):
            for i in range(j, x.shape[1]):
                g[r, j] += _CP_W[r, i] * np.cos(y[i]) * np.prod(np.delete(x[r, :i + 1], j))
    return g


def test_cumprod_rules_at_zeros_every_mode_pair():
    x = _CP_ROWS
    np.testing.assert_allclose(np.asarray(cad.grad(_cp_f)(x)), _cp_np_grad(x), rtol=1e-12, atol=1e-12)
    want = _fd_jac_of(_cp_np_grad, x)
    for name, H in (("rev/rev", cad.jacrev(cad.jacrev(_cp_f))), ("fwd/rev", cad.jacfwd(cad.jacrev(_cp_f))),
                    ("rev/fwd", cad.jacrev(cad.jacfwd(_cp_f))), ("fwd/fwd", cad.jacfwd(cad.jacfwd(_cp_f))),
                    ("hessian", cad.hessian(_cp_f))):
        got = np.asarray(H(x))
        assert np.isfinite(got).all(), name
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6, err_msg=name)


def _fd_jac_of(F, x, eps=1e-6):
    """d F(x) / d x by central differences: F's output dims, then x's"""
    out = np.zeros(np.shape(F(x)) + x.shape)
    for idx in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[idx] = eps
        out[(...,) + idx] = (F(x + e) - F(x - e)) / (2 * eps)
    return out


def test_cumprod_jvp_and_vmap_at_zeros():
    x, t = _CP_ROWS, np.random.default_rng(6).normal(size=(4, 4))
    y, dy = cad.jvp(lambda v: cad.cumprod(v, axis=1), (x,), (t,))
    eps = 1e-6
    np.testing.assert_allclose(np.asarray(dy), (np.cumprod(x + eps * t, 1) - np.cumprod(x - eps * t, 1)) / (2 * eps),
                               rtol=1e-8, atol=1e-8)
    row = lambda r: cad.sum(cad.sin(cad.cumprod(r)))
    Hv = np.asarray(cad.vmap(cad.hessian(row))(x))
    for k in range(4):
        np.testing.assert_allclose(Hv[k], np.asarray(cad.hessian(row)(x[k])), rtol=1e-12, atol=1e-12)
        assert np.isfinite(Hv[k]).all()


def test_cumprod_third_order_with_one_zero_per_row():
    """every order with at most one zero per row: the third derivative against central
    differences of the (exact) Hessian; torch.func reads 4.0 off here at the zero"""
    x = np.array([[1.0, 0.0, 2.0, 3.0], [0.5, 2.0, 0.0, 1.5]])
    f = lambda v: cad.sum(cad.sin(cad.cumprod(v, axis=1)) * _CP_W[:2])
    H = lambda v: np.asarray(cad.hessian(f)(v))
    want = _fd_jac_of(H, x, eps=1e-5)
    for T3f in (cad.jacfwd(cad.hessian(f)), cad.jacrev(cad.jacrev(cad.jacrev(f)))):
        np.testing.assert_allclose(np.asarray(T3f(x)), want, rtol=1e-5, atol=1e-5)
