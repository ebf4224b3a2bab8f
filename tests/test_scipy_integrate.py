"""cad.scipy.integrate.odeint (NOTE [ odeint ]): values against scipy.integrate.odeint,
gradients in y0, t and args against float64 central differences and against cad.grad
through a fixed-step RK4 written with cad ops; pytrees of args, every reverse-mode
entry point, the replay's fallbacks, and the errors."""
import numpy as np
import pytest
from _numeric import close, fd_grad
from scipy.integrate import odeint as sp_odeint

import cad
from cad.scipy.integrate import odeint

TIGHT = {"rtol": 1e-10, "atol": 1e-10}


def lv(y, t, p):
    return cad.stack([p[0] * y[0] - p[1] * y[0] * y[1], p[2] * y[0] * y[1] - p[3] * y[1]])


def lv_np(y, t, p):
    return [p[0] * y[0] - p[1] * y[0] * y[1], p[2] * y[0] * y[1] - p[3] * y[1]]


def osc(y, t, w):
    return cad.stack([y[1], -w * w * y[0]])


def osc_np(y, t, w):
    return [y[1], -w * w * y[0]]


P_LV = np.array([1.0, 0.1, 0.075, 1.5])
Y_LV = np.array([10.0, 5.0])


def ref(fn, y0, t, *args):
    return sp_odeint(fn, y0, t, args=args, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------- values

def test_exponential_decay():
    y0 = np.array([1.0, 2.0, -3.0])
    k = np.array([0.5, 1.0, 2.0])
    t = np.linspace(0.0, 3.0, 7)
    ys = odeint(lambda y, t, k: -k * y, cad.tensor(y0), t, cad.tensor(k))
    assert ys.shape == (7, 3)
    close(ys, y0 * np.exp(-np.outer(t, k)), rtol=1e-6, atol=1e-8)
    close(ys, ref(lambda y, t, k: -k * y, y0, t, k), rtol=1e-6, atol=1e-8)


def test_harmonic_oscillator():
    t = np.linspace(0.0, 10.0, 50)
    ys = odeint(osc, cad.tensor([1.0, 0.0]), t, 2.0)
    close(ys, ref(osc_np, np.array([1.0, 0.0]), t, 2.0), rtol=1e-6, atol=1e-6)
    close(ys[:, 0], np.cos(2.0 * t), atol=1e-6)


def test_lotka_volterra():
    t = np.linspace(0.0, 15.0, 100)
    ys = odeint(lv, cad.tensor(Y_LV), t, cad.tensor(P_LV))
    close(ys, ref(lv_np, Y_LV, t, P_LV), rtol=1e-5, atol=1e-5)
    ys = odeint(lv, Y_LV, t, P_LV, **TIGHT)
    close(ys, ref(lv_np, Y_LV, t, P_LV), rtol=1e-7, atol=1e-7)


def test_state_of_any_shape_and_decreasing_times():
    A = np.array([[-1.0, 0.5], [0.2, -0.3]])
    y0 = np.array([[1.0, 2.0], [3.0, 4.0]])
    t = np.array([2.0, 1.0, 0.0])
    ys = odeint(lambda Y, t: cad.tensor(A) @ Y, cad.tensor(y0), t)
    assert ys.shape == (3, 2, 2)
    want = ref(lambda y, t: (A @ y.reshape(2, 2)).ravel(), y0.ravel(), t).reshape(3, 2, 2)
    close(ys, want, rtol=1e-6, atol=1e-8)


def test_tfirst_and_scipy_args_keyword():
    t = np.linspace(0.0, 2.0, 5)
    a = odeint(lambda t, y, w: osc(y, t, w), cad.tensor([1.0, 0.0]), t, args=(3.0,), tfirst=True)
    b = odeint(osc, cad.tensor([1.0, 0.0]), t, 3.0)
    close(a, b.numpy(), rtol=0, atol=0)


def test_one_time_and_float32():
    y = odeint(lambda y, t: -y, cad.tensor([1.0, 2.0]), [0.5])
    close(y, [[1.0, 2.0]])
    y32 = odeint(lambda y, t: -y, cad.tensor([1.0, 2.0], dtype=cad.float32), [0.0, 1.0])
    assert y32.dtype == cad.float32
    close(y32, [[1.0, 2.0], [np.exp(-1), 2 * np.exp(-1)]], rtol=1e-6)


def test_solve_ivp_usage():
    """the docstring's recipe: solve_ivp(fun, (t0, t1), y0, t_eval=...) as odeint(tfirst=True)"""
    from scipy.integrate import solve_ivp
    fun = lambda t, y, k: -k * y * (1 + 0.1 * np.sin(t))
    te = np.linspace(0.5, 4.0, 8)
    r = solve_ivp(fun, (0.0, 4.0), [2.0], t_eval=te, args=(0.7,), rtol=1e-11, atol=1e-12)
    ys = odeint(lambda t, y, k: -k * y * (1 + 0.1 * cad.sin(t)), cad.tensor([2.0]),
                np.concatenate([[0.0], te]), 0.7, tfirst=True)[1:]
    close(ys[:, 0], r.y[0], rtol=1e-6)


# ---------------------------------------------------------------- gradients

def _lv_loss_np(y0, t, p, w):
    return float(np.sum(w * ref(lv_np, y0, t, p)))


T_SHORT = np.array([0.0, 0.7, 1.5, 2.2])


def test_grads_against_finite_differences():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(len(T_SHORT), 2))
    W = cad.tensor(w)

    def loss(y0, t, p):
        return cad.sum(W * odeint(lv, y0, t, p, **TIGHT))
    gy, gt, gp = cad.grad(loss, argnums=(0, 1, 2))(cad.tensor(Y_LV), cad.tensor(T_SHORT), cad.tensor(P_LV))
    close(gy, fd_grad(lambda y: _lv_loss_np(y, T_SHORT, P_LV, w), Y_LV, 1e-5), rtol=1e-5, atol=1e-6)
    close(gp, fd_grad(lambda p: _lv_loss_np(Y_LV, T_SHORT, p, w), P_LV, 1e-6), rtol=1e-5, atol=1e-5)
    close(gt, fd_grad(lambda t: _lv_loss_np(Y_LV, t, P_LV, w), T_SHORT, 1e-6), rtol=1e-5, atol=1e-5)


def test_time_dependent_func_time_gradient():
    """dL/dt_0 = -a(t_0+) . f(y0, t_0) holds for a func that depends on t"""
    def f(y, t, k):
        return -k * y + cad.sin(3.0 * t)

    def f_np(y, t, k):
        return -k * y + np.sin(3.0 * t)
    t0 = np.array([0.3, 1.0, 1.7])
    k = np.array([0.8, 1.3])
    y0 = np.array([1.0, -0.5])

    def L(t):
        return float(np.sum(ref(f_np, y0, t, k) ** 2))
    g = cad.grad(lambda t: cad.sum(odeint(f, cad.tensor(y0), t, cad.tensor(k), **TIGHT) ** 2))(cad.tensor(t0))
    close(g, fd_grad(L, t0, 1e-6), rtol=1e-6, atol=1e-7)


def rk4(f, y0, t, args, nsub):
    """a fixed-step RK4 written with cad ops (cad.grad differentiates it as written)"""
    ys = [y0]
    y = y0
    for i in range(len(t) - 1):
        h = (t[i + 1] - t[i]) / nsub
        tt = t[i]
        for _ in range(nsub):
            k1 = f(y, tt, *args)
            k2 = f(y + h / 2 * k1, tt + h / 2, *args)
            k3 = f(y + h / 2 * k2, tt + h / 2, *args)
            k4 = f(y + h * k3, tt + h, *args)
            y = y + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
            tt = tt + h
        ys.append(y)
    return cad.stack(ys)


def test_grads_against_rk4_through_cad():
    t = cad.tensor([0.0, 0.5, 1.0])
    w = cad.tensor([[0.3, -1.0], [2.0, 0.5], [1.0, 1.0]])

    def L_ode(y0, p):
        return cad.sum(w * odeint(osc, y0, t, p, **TIGHT))

    def L_rk4(y0, p):
        return cad.sum(w * rk4(osc, y0, t, (p,), 40))
    y0, p = cad.tensor([1.0, 0.5]), cad.tensor(1.7)
    a = cad.grad(L_ode, argnums=(0, 1))(y0, p)
    b = cad.grad(L_rk4, argnums=(0, 1))(y0, p)
    close(a[0], b[0].numpy(), rtol=1e-6)
    close(a[1], b[1].numpy(), rtol=1e-6)


def test_pytree_args():
    params = {"growth": cad.tensor([1.0, 1.5]), "coupling": [cad.tensor(0.1), 0.075]}

    def f(y, t, prm, scale):
        a, d = prm["growth"][0], prm["growth"][1]
        b, c = prm["coupling"]
        return scale * cad.stack([a * y[0] - b * y[0] * y[1], c * y[0] * y[1] - d * y[1]])

    def L(prm):
        return cad.sum(odeint(f, cad.tensor(Y_LV), T_SHORT, prm, 1, **TIGHT) ** 2)
    g = cad.grad(L)(params)
    assert set(g) == {"growth", "coupling"} and len(g["coupling"]) == 2
    gp = cad.grad(lambda p: cad.sum(odeint(lv, cad.tensor(Y_LV), T_SHORT, p, **TIGHT) ** 2))(cad.tensor(P_LV))
    close(g["growth"], gp.numpy()[[0, 3]], rtol=1e-9)
    close(g["coupling"][0], gp.numpy()[1], rtol=1e-9)
    close(g["coupling"][1], gp.numpy()[2], rtol=1e-9)


def test_entry_points_agree():
    t = cad.tensor(T_SHORT)
    p = cad.tensor(P_LV)

    def L(y0):
        return cad.sum(odeint(lv, y0, t, p) ** 2)
    g = cad.grad(L)(cad.tensor(Y_LV))
    _v, g2 = cad.value_and_grad(L)(cad.tensor(Y_LV))
    close(g2, g.numpy(), rtol=0, atol=0)
    x = cad.tensor(Y_LV, requires_grad=True)
    L(x).backward()
    close(x.grad, g.numpy(), rtol=1e-12)
    out, pull = cad.vjp(lambda y0: odeint(lv, y0, t, p), cad.tensor(Y_LV))
    close(pull(2.0 * out)[0], g.numpy(), rtol=1e-12)
    J = cad.jacobian(lambda y0: odeint(lv, y0, t, p)[-1], cad.tensor(Y_LV))
    assert J.shape == (2, 2)
    eps = 1e-6
    fd = np.stack([(ref(lv_np, Y_LV + eps * e, T_SHORT, P_LV)[-1] - ref(lv_np, Y_LV - eps * e, T_SHORT, P_LV)[-1])
                   / (2 * eps) for e in np.eye(2)], axis=1)
    close(J, fd, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- replay and fallbacks

def test_func_with_python_branch_runs_eagerly():
    def f(y, t):
        if float(y[0]) > 0.5:      # read into Python: cannot be replayed
            return -y
        return -2.0 * y
    t = np.linspace(0.0, 2.0, 5)
    ys = odeint(f, cad.tensor([1.0]), t)
    want = ref(lambda y, t: -y if y[0] > 0.5 else -2.0 * y, np.array([1.0]), t)
    close(ys, want, rtol=1e-5, atol=1e-7)
    ts = np.array([0.0, 0.1, 0.3])      # y stays above 0.5: dL/dy0 = sum exp(-t_i)
    g = cad.grad(lambda y0: cad.sum(odeint(f, y0, ts)))(cad.tensor([1.0]))
    close(g, [np.sum(np.exp(-ts))], rtol=1e-7)


def test_changed_closure_is_seen():
    k = [cad.tensor(1.0)]

    def f(y, t):
        return -k[0] * y
    t = [0.0, 1.0]
    a = odeint(f, cad.tensor([1.0]), t)
    k[0] = cad.tensor(2.0)
    b = odeint(f, cad.tensor([1.0]), t)
    close(a[1], [np.exp(-1.0)], rtol=1e-7)
    close(b[1], [np.exp(-2.0)], rtol=1e-7)


# ---------------------------------------------------------------- errors

def test_errors():
    y0 = cad.tensor([1.0, 2.0])
    with pytest.raises(ValueError, match="odeint: func returned shape"):
        odeint(lambda y, t: cad.sum(y), y0, [0.0, 1.0])
    with pytest.raises(ValueError, match="odeint: t must be a 1-d"):
        odeint(lambda y, t: -y, y0, [[0.0, 1.0]])
    with pytest.raises(ValueError, match="odeint: the times t must be strictly"):
        odeint(lambda y, t: -y, y0, [0.0, 1.0, 0.5])
    with pytest.raises(TypeError, match="odeint: pass args"):
        odeint(lambda y, t, a: -a * y, y0, [0.0, 1.0], 1.0, args=(1.0,))
    with pytest.raises(TypeError, match="odeint: func must be callable"):
        odeint(3.0, y0, [0.0, 1.0])
    with pytest.raises(ValueError, match="odeint: rtol and atol"):
        odeint(lambda y, t: -y, y0, [0.0, 1.0], rtol=0.0, atol=0.0)
    with pytest.raises(RuntimeError, match="odeint: more than mxstep"):
        odeint(lambda y, t: -y, y0, [0.0, 100.0], mxstep=3)


def test_closure_over_a_tracked_tensor_raises():
    def L(k):
        return cad.sum(odeint(lambda y, t: -k * y, cad.tensor([1.0]), [0.0, 1.0]))
    with pytest.raises(ValueError, match="odeint: func depends on a tensor that requires grad"):
        cad.grad(L)(cad.tensor(0.5))
    k = cad.tensor(0.5, requires_grad=True)
    with cad.no_grad():     # no gradient wanted: no error
        ys = odeint(lambda y, t: -k * y, cad.tensor([1.0]), [0.0, 1.0])
    close(ys[1], [np.exp(-0.5)], rtol=1e-7)


def test_func_returning_numpy_raises():
    with pytest.raises(TypeError, match="odeint: func returned a numpy array"):
        odeint(lambda y, t: -np.asarray(y), cad.tensor([1.0]), [0.0, 1.0])


def test_forward_mode_and_second_order_exact_decay():
    """L(k) = sum_i 3 exp(-k t_i): jvp, grad of grad and hessian (forward over reverse)"""
    t = np.array([0.0, 0.5, 1.0])

    def L(k):
        return cad.sum(odeint(lambda y, t, k: -k * y, cad.tensor([1.0, 2.0]), t, k, **TIGHT))
    k = 0.5
    d1 = -3 * np.sum(t * np.exp(-k * t))
    d2 = 3 * np.sum(t ** 2 * np.exp(-k * t))
    v, tv = cad.jvp(L, (cad.tensor(k),), (cad.tensor(1.0),))
    close(v, 3 * np.sum(np.exp(-k * t)), rtol=1e-8)
    close(tv, d1, rtol=1e-8)
    close(cad.grad(cad.grad(L))(cad.tensor(k)), d2, rtol=1e-7)
    close(cad.hessian(L, cad.tensor([k])), [[d2]], rtol=1e-7)


def test_jvp_in_y0_t_and_args_against_finite_differences():
    t0 = np.array([0.0, 0.6, 1.3])
    rng = np.random.default_rng(3)
    ty, tt, tp = rng.normal(size=2), rng.normal(size=3) * 0.1, rng.normal(size=4) * 0.01
    tt[0] = 0.05
    eps = 1e-6
    fd = (ref(lv_np, Y_LV + eps * ty, t0 + eps * tt, P_LV + eps * tp)
          - ref(lv_np, Y_LV - eps * ty, t0 - eps * tt, P_LV - eps * tp)) / (2 * eps)
    _, got = cad.jvp(lambda y, t, p: odeint(lv, y, t, p, **TIGHT),
                     (cad.tensor(Y_LV), cad.tensor(t0), cad.tensor(P_LV)),
                     (cad.tensor(ty), cad.tensor(tt), cad.tensor(tp)))
    close(got, fd, rtol=1e-5, atol=1e-6)


def test_hessian_in_args_against_finite_differences_of_the_gradient():
    t = np.array([0.0, 0.8, 1.6])

    def L(p):
        return cad.sum(odeint(lv, cad.tensor(Y_LV), t, p, **TIGHT) ** 2)
    g = cad.grad(L)
    H = cad.hessian(L, cad.tensor(P_LV))
    eps = 1e-6
    fd = np.stack([(g(cad.tensor(P_LV + eps * e)).numpy() - g(cad.tensor(P_LV - eps * e)).numpy()) / (2 * eps)
                   for e in np.eye(4)], axis=1)
    close(H, fd, rtol=1e-4, atol=1e-4 * np.abs(fd).max())
    close(H, H.numpy().T, rtol=1e-6, atol=1e-6 * np.abs(fd).max())
    gg = cad.grad(lambda p: cad.sum(g(p) * cad.tensor([1.0, -1.0, 0.5, 2.0])))(cad.tensor(P_LV))
    close(gg, H.numpy() @ np.array([1.0, -1.0, 0.5, 2.0]), rtol=1e-5, atol=1e-5 * np.abs(fd).max())


def test_scalar_programs_and_array_tapes_agree(monkeypatch):
    """NOTE [ odeint scalar mode ]: a small state runs as scalar programs; the array
    tapes (forced here, and taken by a func an _SVec cannot follow) give the same"""
    from cad.scipy import integrate as I
    t = cad.tensor(T_SHORT)

    def L(y0, p, f=lv):
        return cad.sum(odeint(f, y0, t, p) ** 2)

    def lv_sum(y, t, p):   # cad.sum(y) on a vector: not scalar mode
        return cad.stack([p[0] * y[0] - p[1] * y[0] * y[1], p[2] * y[0] * y[1] - p[3] * y[1]]) + 0.0 * cad.sum(y)
    args = (cad.tensor(Y_LV), cad.tensor(P_LV))
    a = cad.grad(L, argnums=(0, 1))(*args)
    spec = next(s for s in I._SPECS.values() if s.func is lv)
    assert spec.sf and spec.sf._replay.scalar_program and spec.sb and spec.sb._replay.scalar_program
    b = cad.grad(lambda y0, p: L(y0, p, lv_sum), argnums=(0, 1))(*args)
    spec = next(s for s in I._SPECS.values() if s.func is lv_sum)
    assert spec.sf is False and spec.sb is False
    monkeypatch.setattr(I, "_MAX_SCALAR_INPUTS", 0)
    I._SPECS.clear()
    c = cad.grad(L, argnums=(0, 1))(*args)
    for x, y, z in zip(a, b, c):
        close(y, x.numpy(), rtol=1e-9)
        close(z, x.numpy(), rtol=1e-9)
    I._SPECS.clear()


def test_grads_with_decreasing_times():
    t = np.array([2.0, 1.2, 0.5])
    w = np.array([[0.0, 0.0], [1.0, -2.0], [0.5, 3.0]])

    def L_np(y0, t, p):
        return float(np.sum(w * ref(lv_np, y0, t, p)))
    gy, gt, gp = cad.grad(lambda y0, t, p: cad.sum(cad.tensor(w) * odeint(lv, y0, t, p, **TIGHT)),
                          argnums=(0, 1, 2))(cad.tensor(Y_LV), cad.tensor(t), cad.tensor(P_LV))
    close(gy, fd_grad(lambda y: L_np(y, t, P_LV), Y_LV, 1e-5), rtol=1e-5, atol=1e-6)
    close(gt, fd_grad(lambda tt: L_np(Y_LV, tt, P_LV), t, 1e-6), rtol=1e-5, atol=1e-5)
    close(gp, fd_grad(lambda p: L_np(Y_LV, t, p), P_LV, 1e-6), rtol=1e-5, atol=1e-5)


def test_hessian_in_the_times():
    """L(t) = sum_i 3 exp(-k (t_i - t_0)): the exact Hessian in t"""
    k = 0.7
    t = np.array([0.2, 0.9, 1.5])

    def L(t):
        return cad.sum(odeint(lambda y, t: -k * y, cad.tensor([1.0, 2.0]), t, **TIGHT))
    e = 3 * k * k * np.exp(-k * (t[1:] - t[0]))
    H = np.zeros((3, 3))
    H[0, 0] = e.sum()
    H[0, 1:] = H[1:, 0] = -e
    H[1:, 1:] = np.diag(e)
    close(cad.hessian(L, cad.tensor(t)), H, rtol=1e-6, atol=1e-8)


def test_inside_record_and_vmap():
    t = np.array([0.0, 0.5, 1.0])
    y0 = cad.tensor(Y_LV)

    def L(p):
        return cad.sum(odeint(lv, y0, t, p) ** 2)
    p1 = cad.tensor(P_LV * 1.1)
    tape = cad.record(L, cad.tensor(P_LV))        # replayed: the primitive runs again
    close(tape(p1), L(p1).numpy(), rtol=1e-12)
    close(tape.grad(p1)[0], cad.grad(L)(p1).numpy(), rtol=1e-12)
    Ps = np.stack([P_LV, P_LV * 1.1, P_LV * 0.9])
    close(cad.vmap(L)(cad.tensor(Ps)), [L(cad.tensor(p)).item() for p in Ps], rtol=1e-12)
    close(cad.vmap(cad.grad(L))(cad.tensor(Ps)), np.stack([cad.grad(L)(cad.tensor(p)).numpy() for p in Ps]),
          rtol=1e-12)


def test_a_lambda_per_call_reuses_the_recorded_tapes():
    from cad.scipy import integrate as I
    t = [0.0, 0.5, 1.0]

    def L(k):
        return cad.sum(odeint(lambda y, t, k: -k * y, cad.tensor([1.0, 2.0]), t, k))
    cad.grad(L)(cad.tensor(0.5))
    n = len(I._SPECS)
    for k in (0.6, 0.7):
        g = cad.grad(L)(cad.tensor(k))
        close(g, -3 * np.sum(np.array(t) * np.exp(-k * np.array(t))), rtol=1e-7)
    assert len(I._SPECS) == n


def test_funcs_an_svec_cannot_follow_use_arrays():
    """NOTE [ odeint scalar mode ]: whatever a vector of scalars does not support
    (a reduction, a comparison, numpy, a Tensor on the left) records arrays instead"""
    t = np.linspace(0.0, 1.0, 4)
    y0 = np.array([1.0, -0.5, 0.25])
    k = np.array([0.3, 0.7, 1.1])
    funcs = [lambda y, t, k: -k * y + 0.0 * cad.sum(y),
             lambda y, t, k: cad.where(y == 2 * y, y, -k * y),
             lambda y, t, k: cad.tensor(1.0) * (-k * y),
             lambda y, t, k: -k * cad.exp(cad.log(cad.abs(y) + 1.0) - cad.log(cad.abs(y) + 1.0)) * y]
    want = y0 * np.exp(-np.outer(t, k))
    for f in funcs:
        close(odeint(f, cad.tensor(y0), t, cad.tensor(k)), want, rtol=1e-6, atol=1e-9)
        g = cad.grad(lambda k_, f=f: cad.sum(odeint(f, cad.tensor(y0), t, k_)))(cad.tensor(k))
        close(g, -np.sum(t[:, None] * want, axis=0), rtol=1e-6, atol=1e-9)


# ---- the stepping loops over scalar programs in C (replay.pxi's ode_forward_sprog,
# ode_backward_sprog) against the same loops in Python: the same arithmetic, bitwise

def _both_loops(fn):
    from cad.scipy import integrate as I
    a = fn()
    I._C_LOOPS = False
    try:
        b = fn()
    finally:
        I._C_LOOPS = True
    return a, b


@pytest.mark.parametrize("case", ["lv", "scalar", "no_args", "decreasing", "dense", "tfirst"])
def test_c_stepping_loops_match_python_bitwise(case):
    from cad.scipy import integrate as I
    I._SPECS.clear()
    if case == "lv":
        f, y0, t, args = lv, Y_LV, np.linspace(0.0, 3.0, 7), (cad.tensor(P_LV),)
    elif case == "scalar":
        f, y0, t, args = (lambda y, t, k: -k * y * y + cad.sin(t)), np.array(0.7), np.linspace(0, 2, 5), (cad.tensor(1.3),)
    elif case == "no_args":
        f, y0, t, args = (lambda y, t: cad.stack([y[1], -y[0]])), np.array([1.0, 0.0]), np.linspace(0, 4, 6), ()
    elif case == "decreasing":
        f, y0, t, args = lv, Y_LV, np.array([2.0, 1.2, 0.5]), (cad.tensor(P_LV),)
    elif case == "dense":   # many output times inside one step
        f, y0, t, args = osc, np.array([1.0, 0.0]), np.linspace(0, 0.01, 40), (cad.tensor(2.0),)
    else:
        f, y0, t, args = (lambda t, y, p: cad.stack([p[0] * y[1], -y[0]])), np.array([1.0, 0.5]), np.linspace(0, 1, 4), (cad.tensor(np.array([1.5])),)
    kw = {"tfirst": True} if case == "tfirst" else {}

    def run():
        w = np.random.default_rng(4).standard_normal((len(t),) + np.shape(y0))

        def L(y0_, t_, *a):
            return cad.sum(cad.tensor(w) * odeint(f, y0_, t_, *a, **kw))
        val = odeint(f, cad.tensor(y0), cad.tensor(t), *args, **kw).numpy()
        g = cad.grad(L, argnums=tuple(range(2 + len(args))))(cad.tensor(y0), cad.tensor(t), *args)
        return [val] + [x.numpy() for x in g]
    a, b = _both_loops(run)
    spec = next(iter(I._SPECS.values()))
    assert spec.sf and spec.sb   # the scalar programs (so the C loops) were taken
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    I._SPECS.clear()


def test_c_stepping_loops_errors():
    with pytest.raises(RuntimeError, match="odeint: more than mxstep=3 steps between t=0.0 and t=100.0"):
        odeint(lambda y, t: -y, cad.tensor(np.array([1.0, 2.0])), [0.0, 100.0], mxstep=3)
    with pytest.raises(RuntimeError, match="odeint: the step size fell below"):
        odeint(lambda y, t: y * y, cad.tensor(np.array([1.0, 1.0])), [0.0, 2.0])
    # LV to t=5 takes at most 60 forward steps, but its adjoint more
    y0, t5 = cad.tensor(Y_LV), cad.tensor([0.0, 5.0])
    odeint(lv, y0, t5, cad.tensor(P_LV), mxstep=60)
    with pytest.raises(RuntimeError, match="odeint \\(gradient\\): more than mxstep=60 steps of the adjoint"):
        cad.grad(lambda p: cad.sum(odeint(lv, y0, t5, p, mxstep=60)))(cad.tensor(P_LV))


def test_c_stepping_loops_under_threads():
    import threading
    t = cad.tensor(np.linspace(0.0, 2.0, 9))
    L = lambda p: cad.sum(odeint(lv, cad.tensor(Y_LV), t, p) ** 2)
    ps = [P_LV * (1 + 0.05 * k) for k in range(6)]
    serial = [cad.grad(L)(cad.tensor(p)).numpy() for p in ps]
    got = [None] * len(ps)

    def work(k):
        for _ in range(4):
            got[k] = cad.grad(L)(cad.tensor(ps[k])).numpy()
    th = [threading.Thread(target=work, args=(k,)) for k in range(len(ps))]
    for x in th:
        x.start()
    for x in th:
        x.join()
    for a, b in zip(got, serial):
        np.testing.assert_array_equal(a, b)
