"""prod, cumprod, cross and cross-entropy records in every sweep without their Python
rules (NOTE [ Product rules written once ] in tapeview.pxi: the rules' bodies are
Cython functions the rules and the sweeps both call), and the elementwise records
whose partials hold comparisons and selects (relu, abs, maximum, pow by a tracked
exponent, hypot, ...: _tensor_prog runs them).  Each composition of transforms is
checked bit for bit against the rules' loops (transforms._C_FORWARD and _C_REVERSE
off), against central differences of a lower order, and against torch.func when it
is installed; zeros in x (prod's and cumprod's exact expressions); a spy that no
rule of these ops is reached; broadcast operands, whose cotangents the reverse
sweeps sum down as the rule's unbroadcast does; matmul's matrix-operand and 3-D
batches (NOTE [ Matmul's rules written once ])."""
import numpy as np
import pytest

import cad
import cad.transforms as T
from cad.ops import REGISTRY

from _numeric import fd_jac, same_in_threads

_LAB = np.array([2, 0, 3])
_B = np.random.default_rng(11).standard_normal((2, 3))
_X = np.random.default_rng(12).standard_normal((4, 3))
_B3 = np.random.default_rng(13).standard_normal((2, 2, 2))


def _m(x, shape):
    return cad.reshape(x, shape)


# name: (f of one vector, n, x0 has zeros)
FUNCS = {
    "prod": (lambda x: cad.prod(cad.sin(_m(x, (3, 4))) + 1.5, axis=1) * cad.prod(_m(x, (3, 4)), axis=0)[:3]
             + cad.prod(x * 0.7, keepdims=True), 12, False),
    "prod_zeros": (lambda x: cad.prod(_m(x, (3, 4)), axis=1) + cad.sum(cad.prod(_m(x * x, (3, 4)), axis=0)),
                   12, True),
    "cumprod": (lambda x: cad.sum(cad.cumprod(_m(x, (3, 4)), axis=1) * cad.cumprod(cad.cos(_m(x, (3, 4))), axis=0),
                                  axis=0), 12, False),
    "cumprod_zeros": (lambda x: cad.cumprod(x, axis=0) * x, 6, True),
    "cross": (lambda x: cad.sum(cad.cross(cad.sin(_m(x[:6], (2, 3))), _m(x[6:], (2, 3)))
                                + cad.cross(_m(x[:6], (2, 3)), cad.tensor(_B)), axis=0), 12, False),
    "xent": (lambda x: cad.cross_entropy(_m(x, (3, 4)) * 1.3, _LAB, reduction="none")
             * cad.sum(x[:3]), 12, False),
    "select_partials": (lambda x: cad.relu(x - 0.1) * cad.abs(x - 0.2) + cad.maximum(x, 0.3)
                        + cad.hypot(x, x[::-1]) + cad.minimum(x, x[::-1] * 0.9), 6, False),
    "pow_tracked": (lambda x: (x + 1.2) ** (x[::-1] * 0.5) + x ** x[0], 6, False),
    # broadcast operands (the reverse sweeps sum their cotangents down, the rule's
    # unbroadcast): (2, 3) by (3,), (2, 1) by (3,), a 0-d exponent
    "broadcast": (lambda x: cad.sum(cad.reshape(x, (2, 3)) * cad.sin(x[3:6])
                                    + cad.reshape(x[:2], (2, 1)) / (2.0 + x[3:6]), axis=0)
                  + x[:3] ** x[0] + cad.maximum(x[:3], x[4]), 6, False),
    # three-input elementwise records (where, clip: their partials written out) and
    # comparisons (no tangent, no rule); a broadcast 0-d bound, a constant branch
    "where_clip": (lambda x: cad.where(x > 0.2, x * x, cad.sin(x)) + cad.clip(x, -0.45, cad.abs(x[0]) * 0.4) * x
                   + cad.where(x < 0.0, 1.0, x[::-1]), 6, False),
    # matmul beyond the sweeps' own cases (NOTE [ Matmul's rules written once ]): a
    # matrix operand's batch, both operands tracked, batched (3-D) products
    "matmul_matrix": (lambda x: cad.tanh(cad.tensor(_X) @ cad.reshape(x[:6], (3, 2))) @ cad.reshape(x[6:], (2, 3)),
                      12, False),
    "matmul_batched": (lambda x: cad.reshape(cad.reshape(x[:8], (2, 2, 2)) @ cad.sin(cad.reshape(x[4:], (2, 2, 2)))
                                             + cad.reshape(x[:2], (1, 2)) @ cad.tensor(_B3), (8,)), 12, False),
    # max/min of a 0-d value; pow by a constant reached by a dense batch (after W @)
    "zero_d_and_pow": (lambda x: cad.tensor(_X) @ (cad.sin(x[:3]) ** 3.0) * cad.max(x[3] * 2.0)
                       + cad.min(x[4] * x[5]), 6, False),
    # jacrev's diagonal seed reaching a broadcast operand first (made dense)
    "diag_broadcast": (lambda x: cad.reshape(x, (2, 3)) * cad.sin(x[3:6]) + cad.reshape(x[:2], (2, 1)) * x[5],
                       6, False),
}


def _x0(name):
    f, n, zeros = FUNCS[name]
    rng = np.random.default_rng(len(name))
    x = rng.uniform(0.4, 1.3, n) * rng.choice([-1.0, 1.0], n)
    if name in ("select_partials", "pow_tracked", "broadcast"):
        x = np.abs(x)
    if zeros:
        x[_ZERO_AT["at"][name]] = 0.0
    return x


# where x0 has its zeros: two in a row of prod_zeros (and in cumprod_zeros' one row),
# where the rules are exact to second order; at most one a row (and a column of
# prod_zeros' x * x) for the third order, where they are exact at every order
# (NOTE [ cumprod's rules at zeros ])
_TWO_A_ROW = {"prod_zeros": [0, 1, 5], "cumprod_zeros": [1, 4]}
_ONE_A_ROW = {"prod_zeros": [1, 6], "cumprod_zeros": [2]}
_ZERO_AT = {"at": _TWO_A_ROW}


def _scalar(name):
    f = FUNCS[name][0]
    y = np.asarray(f(cad.tensor(_x0(name))))
    w = cad.tensor(np.random.default_rng(3).standard_normal(y.shape))
    return lambda x: cad.sum(f(x) * w)


def _v(n, k=0):
    return np.random.default_rng(100 + k).standard_normal(n)


# each: name -> (compute(name) with cad, its oracle by central differences)
def _jvp(name):
    f, n, _ = FUNCS[name]
    return np.asarray(cad.jvp(f, (cad.tensor(_x0(name)),), (cad.tensor(_v(n)),))[1])


def _jvp_fd(name):
    f, n, _ = FUNCS[name]
    return fd_jac(lambda x: np.asarray(f(cad.tensor(x))), _x0(name)) @ _v(n)


def _jacfwd(name):
    return np.asarray(cad.jacfwd(FUNCS[name][0])(cad.tensor(_x0(name))))


def _jacrev(name):
    return np.asarray(cad.jacrev(FUNCS[name][0])(cad.tensor(_x0(name))))


def _jac_fd(name):
    f = FUNCS[name][0]
    return fd_jac(lambda x: np.asarray(f(cad.tensor(x))), _x0(name))


def _grad_fd_jac(name):
    F = _scalar(name)
    return fd_jac(lambda x: np.asarray(cad.grad(F)(cad.tensor(x))), _x0(name))


def _hessian(name):
    return np.asarray(cad.hessian(_scalar(name))(cad.tensor(_x0(name))))


def _jacfwd_grad(name):
    return np.asarray(cad.jacfwd(cad.grad(_scalar(name)))(cad.tensor(_x0(name))))


def _jacrev_grad(name):
    return np.asarray(cad.jacrev(cad.grad(_scalar(name)))(cad.tensor(_x0(name))))


def _grad_grad(name):
    """reverse over reverse: the gradient of <grad F, v>"""
    F, n = _scalar(name), FUNCS[name][1]
    v = cad.tensor(_v(n))
    return np.asarray(cad.grad(lambda x: cad.sum(cad.grad(F)(x) * v))(cad.tensor(_x0(name))))


def _grad_of_jvp(name):
    """reverse over forward: the gradient of <w, jvp f(x; v)>, a recording forward sweep"""
    f, n, _ = FUNCS[name]
    y = np.asarray(f(cad.tensor(_x0(name))))
    w = cad.tensor(np.random.default_rng(5).standard_normal(y.shape))
    v = cad.tensor(_v(n))
    return np.asarray(cad.grad(lambda x: cad.sum(cad.jvp(f, (x,), (v,))[1] * w))(cad.tensor(_x0(name))))


def _grad_of_jvp_fd(name):
    f, n, _ = FUNCS[name]
    y = np.asarray(f(cad.tensor(_x0(name))))
    w = np.random.default_rng(5).standard_normal(y.shape)
    return fd_jac(lambda x: float(np.sum(np.asarray(cad.jvp(f, (cad.tensor(x),), (cad.tensor(_v(n)),))[1]) * w)),
                  _x0(name))


def _jvp_of_jvp(name):
    """forward over forward: u' (d/dx jvp f(x; v)), a recording forward sweep inside"""
    f, n, _ = FUNCS[name]
    v, u = cad.tensor(_v(n)), cad.tensor(_v(n, 1))
    g = lambda x: cad.jvp(f, (x,), (v,))[1]  # noqa: E731
    return np.asarray(cad.jvp(g, (cad.tensor(_x0(name)),), (u,))[1])


def _jvp_of_jvp_fd(name):
    f, n, _ = FUNCS[name]
    J = fd_jac(lambda x: np.asarray(cad.jvp(f, (cad.tensor(x),), (cad.tensor(_v(n)),))[1]), _x0(name))
    return J @ _v(n, 1)


def _third(name):
    """order 3: the gradient of u' H v"""
    F, n = _scalar(name), FUNCS[name][1]
    v, u = cad.tensor(_v(n)), cad.tensor(_v(n, 1))
    return np.asarray(cad.grad(lambda x: cad.sum(cad.hvp(F, x, v) * u))(cad.tensor(_x0(name))))


def _third_fd(name):
    F, n = _scalar(name), FUNCS[name][1]
    return fd_jac(lambda x: float(np.sum(np.asarray(cad.hvp(F, cad.tensor(x), cad.tensor(_v(n))))
                                         * _v(n, 1))), _x0(name))


def _jacfwd_jacfwd(name):
    """jacfwd of jacfwd (the inner batch records: NOTE [ Recorded tangent batches ])"""
    return np.asarray(cad.jacfwd(cad.jacfwd(_scalar(name)))(cad.tensor(_x0(name))))


def _jacrev_jacfwd(name):
    return np.asarray(cad.jacrev(cad.jacfwd(_scalar(name)))(cad.tensor(_x0(name))))


def _jacfwd_jacfwd_vec(name):
    """the second derivatives of a vector function: a 3-index array"""
    return np.asarray(cad.jacfwd(cad.jacfwd(FUNCS[name][0]))(cad.tensor(_x0(name))))


def _jac2_fd(name):
    f = FUNCS[name][0]
    return fd_jac(lambda x: np.asarray(cad.jacrev(f)(cad.tensor(x))), _x0(name))


TRANSFORMS = {
    "jvp": (_jvp, _jvp_fd),
    "jacfwd": (_jacfwd, _jac_fd),
    "jacrev": (_jacrev, _jac_fd),
    "hessian": (_hessian, _grad_fd_jac),
    "jacfwd_grad": (_jacfwd_grad, _grad_fd_jac),
    "jacrev_grad": (_jacrev_grad, _grad_fd_jac),
    "grad_grad": (_grad_grad, lambda nm: _grad_fd_jac(nm) @ _v(FUNCS[nm][1])),
    "grad_of_jvp": (_grad_of_jvp, _grad_of_jvp_fd),
    "jvp_of_jvp": (_jvp_of_jvp, _jvp_of_jvp_fd),
    "third": (_third, _third_fd),
    "jacfwd_jacfwd": (_jacfwd_jacfwd, _grad_fd_jac),
    "jacrev_jacfwd": (_jacrev_jacfwd, _grad_fd_jac),
    "jacfwd_jacfwd_vec": (_jacfwd_jacfwd_vec, _jac2_fd),
}


_BATCHED_FORWARD = {"jacfwd", "hessian", "jacfwd_grad", "jacfwd_jacfwd", "jacfwd_jacfwd_vec"}


def _rules(monkeypatch, fn):
    """fn() with every sweep's loop in Python and every record by its rule"""
    monkeypatch.setattr(T, "_C_FORWARD", False)
    monkeypatch.setattr(T, "_C_REVERSE", False)
    try:
        return fn()
    finally:
        monkeypatch.setattr(T, "_C_FORWARD", True)
        monkeypatch.setattr(T, "_C_REVERSE", True)


@pytest.mark.parametrize("tname", sorted(TRANSFORMS))
@pytest.mark.parametrize("name", sorted(FUNCS))
def test_against_the_rules_and_differences(name, tname, monkeypatch):
    run, oracle = TRANSFORMS[tname]
    if tname == "third":
        monkeypatch.setitem(_ZERO_AT, "at", _ONE_A_ROW)
    got = run(name)
    rules = _rules(monkeypatch, lambda: run(name))
    if tname in _BATCHED_FORWARD:
        # (jacfwd's batched forward sweep: its fused rows for the elementwise records
        # around these can differ from the rules' in the last bit, with or without a
        # product record: sum(sin(a) * b)'s Hessian does too)
        np.testing.assert_allclose(got, rules, rtol=1e-14, atol=1e-14, err_msg=f"{tname} {name}")
    else:
        np.testing.assert_array_equal(got, rules, err_msg=f"{tname} {name}")
    if tname == "third" and name.endswith("_zeros"):
        # (differences of hvp across a zero lose digits: near one, the rules' p0 =
        # prod / x has derivatives that cancel; JAX's rules are exact there)
        jax = pytest.importorskip("jax")
        np.testing.assert_allclose(got, _third_jax(jax, name), rtol=1e-12, atol=1e-12)
        return
    tol = 5e-5 if tname == "third" else 1e-6
    np.testing.assert_allclose(got, oracle(name), rtol=tol, atol=tol, err_msg=f"{tname} {name}")


def _third_jax(jax, name):
    jax.config.update("jax_enable_x64", True)
    jnp = jax.numpy
    x0 = _x0(name)
    fs = {"prod_zeros": lambda x: jnp.prod(x.reshape(3, 4), axis=1) + jnp.sum(jnp.prod((x * x).reshape(3, 4), axis=0)),
          "cumprod_zeros": lambda x: jnp.cumprod(x) * x}
    f = fs[name]
    w = np.random.default_rng(3).standard_normal(np.shape(f(x0)))
    F = lambda x: jnp.sum(f(x) * w)  # noqa: E731
    n = FUNCS[name][1]
    hvp = lambda x: jax.jvp(jax.grad(F), (x,), (_v(n),))[1]  # noqa: E731
    return np.asarray(jax.grad(lambda x: jnp.sum(hvp(x) * _v(n, 1)))(x0))


_OPS = ("prod", "cumprod", "cross", "xent", "relu", "abs", "maximum", "minimum", "hypot", "pow", "mul",
        "div", "add", "sin", "where", "clip", "gt", "lt", "matmul", "max", "min")


def test_no_rule_is_reached(monkeypatch):
    """none of these records goes to its Python rule in any sweep (a plain grad's C
    kernels aside, which run no rule at all)"""
    T._tables()
    calls = []
    jvps, vjps = list(T._JVP), list(T._VJP)
    for nm in _OPS:
        code = REGISTRY[nm].code
        oj, ov = jvps[code], vjps[code]
        jvps[code] = lambda ctx, ts, oj=oj, nm=nm: calls.append(("jvp", nm)) or oj(ctx, ts)
        vjps[code] = lambda ctx, g, ov=ov, nm=nm: calls.append(("vjp", nm)) or ov(ctx, g)
    monkeypatch.setattr(T, "_JVP", jvps)
    monkeypatch.setattr(T, "_VJP", vjps)
    for name in FUNCS:
        for tname, (run, _) in TRANSFORMS.items():
            run(name)
            assert calls == [], (name, tname, calls)


def test_the_rules_run_the_same_bodies():
    """the rules call the Cython bodies: a rule and a sweep give one answer (the
    eager fast path without zeros, the exact expression with them)"""
    x = cad.tensor(np.array([[0.5, 0.0, 2.0], [1.5, -1.0, 3.0]]))
    import cad._core._engine as C
    got = np.asarray(C.prod_partial(x, (2, 3), 0b10))
    np.testing.assert_array_equal(got, [[0.0, 1.0, 0.0], [-3.0, 4.5, -1.5]])
    o = cad.cumprod(x, axis=1)
    t = cad.tensor(np.ones((2, 3)))
    np.testing.assert_allclose(np.asarray(C.cumprod_jvp(x, o, t, 0, 1)), [[1.0, 0.5, 1.0], [1.0, 0.5, 0.0]],
                               atol=1e-14)
    z = cad.tensor(np.array([[1.0, 2.0, 3.0]]))
    d = np.asarray(C.xent_delta(z, cad.tensor(np.array([1]))))
    s = np.exp([1.0, 2.0, 3.0]) / np.exp([1.0, 2.0, 3.0]).sum()
    np.testing.assert_allclose(d, [s - [0, 1, 0]], rtol=1e-15)


def test_float32_and_batched_shapes(monkeypatch):
    """float32 values, cross over a batch of rows against one constant, prod over
    every axis: jacrev, jacfwd and hessian against the rules"""
    B = cad.tensor(_B.astype(np.float32))

    def f(x):
        m = cad.reshape(x, (2, 3))
        return cad.sum(cad.cross(m, B) * cad.prod(m + 2.0), axis=1) + cad.cumprod(x, axis=0)[:2]
    x = cad.tensor(np.linspace(-0.7, 0.9, 6).astype(np.float32))
    for tr in (cad.jacrev, cad.jacfwd):
        a = np.asarray(tr(f)(x))
        assert a.dtype == np.float32
        np.testing.assert_array_equal(a, _rules(monkeypatch, lambda: np.asarray(tr(f)(x))))
    F = lambda x: cad.sum(f(x))  # noqa: E731
    H = np.asarray(cad.hessian(F)(x))
    np.testing.assert_array_equal(H, _rules(monkeypatch, lambda: np.asarray(cad.hessian(F)(x))))
    H64 = fd_jac(lambda v: np.asarray(cad.grad(F)(cad.tensor(v))), np.linspace(-0.7, 0.9, 6))
    np.testing.assert_allclose(H, H64, rtol=2e-3, atol=2e-3)


def test_against_torch_func():
    torch = pytest.importorskip("torch")
    from torch.func import hessian, jacrev
    x0 = np.random.default_rng(8).uniform(0.3, 1.2, 12)
    lab = torch.tensor(_LAB)
    Bt = torch.tensor(_B)

    def tf(x):
        m = x.reshape(3, 4)
        a = torch.prod(torch.sin(m) + 1.5, dim=1) * torch.cumprod(m, dim=1)[:, -1]
        c = torch.linalg.cross(m[:2, :3], Bt)
        e = torch.nn.functional.cross_entropy(m * 1.3, lab, reduction="none")
        return a + torch.sum(c, dim=1).repeat(2)[:3] + e + torch.relu(x[:3] - 0.5) * torch.maximum(x[3:6], x[6:9])

    def cf(x):
        m = cad.reshape(x, (3, 4))
        a = cad.prod(cad.sin(m) + 1.5, axis=1) * cad.cumprod(m, axis=1)[:, -1]
        c = cad.cross(m[:2, :3], cad.tensor(_B))
        e = cad.cross_entropy(m * 1.3, _LAB, reduction="none")
        s = cad.sum(c, axis=1)
        return a + cad.concatenate([s, s])[:3] + e + cad.relu(x[:3] - 0.5) * cad.maximum(x[3:6], x[6:9])
    xt = torch.tensor(x0)
    np.testing.assert_allclose(np.asarray(cad.jacrev(cf)(cad.tensor(x0))), jacrev(tf)(xt).numpy(), rtol=1e-10,
                               atol=1e-12)
    np.testing.assert_allclose(np.asarray(cad.jacfwd(cf)(cad.tensor(x0))), jacrev(tf)(xt).numpy(), rtol=1e-10,
                               atol=1e-12)
    Fc = lambda x: cad.sum(cf(x) ** 2)  # noqa: E731
    Ft = lambda x: torch.sum(tf(x) ** 2)  # noqa: E731
    np.testing.assert_allclose(np.asarray(cad.hessian(Fc)(cad.tensor(x0))), hessian(Ft)(xt).numpy(),
                               rtol=1e-9, atol=1e-11)


def test_threads():
    """the sweeps of every composition on several threads at once: every bit the same"""
    names = ["prod_zeros", "cross", "xent", "matmul_matrix", "where_clip", "broadcast"]
    runs = [_jacrev_jacfwd, _grad_of_jvp, _jacrev, _hessian]
    same_in_threads(lambda k: runs[k % 4](names[k]), list(range(len(names))), 5)


def test_the_composition_suite_reaches_no_table_rule(tmp_path):
    """the composition suite's second-order mode pairs, order-3 towers, jacfwd/jacrev
    and hessians over two cases of every op, in a child pytest with
    tests/_rule_spy.py counting every record that reaches the rules' Python
    dispatch (transforms._jvp_record, _rev_record) or a rule: none but custom
    primitives' (broadcast operands, mixed diagonal and dense adds, recorded batches
    included)"""
    import json
    import os
    import subprocess
    import sys
    here = os.path.dirname(os.path.abspath(__file__))
    out = tmp_path / "calls.json"
    env = dict(os.environ, CAD_COMPOSE_CASES="2", CAD_RULE_SPY_OUT=str(out),
               PYTHONPATH=os.pathsep.join([here, os.environ.get("PYTHONPATH", "")]))
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-p", "_rule_spy",
                        os.path.join(here, "test_compositions.py"), "-k",
                        "order2_mode_pair or jacfwd_equals or hessian_matches or order3"],
                       env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert json.loads(out.read_text()) == {}
