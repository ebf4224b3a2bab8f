"""Fit the damping c and the length L of a pendulum,

    theta'' = -(g / L) sin(theta) - c theta',

to noisy observations of its angle, integrating the ODE step by step with RK4 in a
plain Python loop of scalar operations: about 9000 cad ops per evaluation of the loss,
the kind of code where a framework's per-op overhead is the whole cost.

The loss is recorded once with cad.record and the tape replayed for every evaluation:
Adam on tape.value_and_grad, then a Newton polish with scipy.optimize.minimize
(method="trust-exact", jac= and hess= from the tape: tape.hessian is forward mode over
the recorded gradient).  The same Adam fit is then timed with cad without recording
and with PyTorch (eager, when installed), and the data, the fit and the loss curve are
drawn to a PNG (matplotlib, when installed).

    python examples/pendulum_fit.py                  # fit, compare, plot examples/pendulum_fit.png
    python examples/pendulum_fit.py --quick          # a few iterations (what the tests run)
"""
import argparse
import math
import os
import sys
import time

import numpy as np

import cad

G = 9.81
TRUE = (0.30, 1.20)         # c (1/s), L (m)
START = (0.10, 1.00)        # the initial guess
THETA0, OMEGA0 = 1.0, 0.0   # released at 1 rad, at rest


def simulate(c, L, n, dt, sin, theta0=THETA0, omega0=OMEGA0):
    """the angles after each of n RK4 steps of size dt; c, L: floats, cad or torch
    scalars; sin: the matching sine"""
    k = G / L
    th, om = theta0, omega0
    h2, h6 = 0.5 * dt, dt / 6.0
    out = []
    for _ in range(n):
        a1, b1 = om, -k * sin(th) - c * om
        t2, o2 = th + h2 * a1, om + h2 * b1
        a2, b2 = o2, -k * sin(t2) - c * o2
        t3, o3 = th + h2 * a2, om + h2 * b2
        a3, b3 = o3, -k * sin(t3) - c * o3
        t4, o4 = th + dt * a3, om + dt * b3
        a4, b4 = o4, -k * sin(t4) - c * o4
        th = th + h6 * (a1 + 2.0 * a2 + 2.0 * a3 + a4)
        om = om + h6 * (b1 + 2.0 * b2 + 2.0 * b3 + b4)
        out.append(th)
    return out


def make_data(n=200, dt=0.025, noise=0.05, seed=0):
    """(times, noisy angles as floats, the true angles)"""
    clean = simulate(TRUE[0], TRUE[1], n, dt, math.sin)
    rng = np.random.default_rng(seed)
    obs = [float(v) for v in np.asarray(clean) + noise * rng.standard_normal(n)]
    return dt * np.arange(1, n + 1), obs, clean


def make_loss(obs, dt, sin, scalar=float):
    """loss(p) = mean squared error of the simulated angles, p = [c, L] (a tensor);
    scalar makes the initial state a value sin accepts (torch.sin refuses floats)"""
    n = len(obs)
    theta0, omega0 = scalar(THETA0), scalar(OMEGA0)

    def loss(p):
        th = simulate(p[0], p[1], n, dt, sin, theta0, omega0)
        return sum((t - o) ** 2 for t, o in zip(th, obs)) / n
    return loss


def fit_adam(value_and_grad, p, iters, lr=0.02):
    """Adam (cad.optim.adam, functional form) on value_and_grad(p) -> (loss, (grad,));
    returns (p, losses)"""
    init, update = cad.optim.adam(lr=lr)
    state = init(p)
    losses = []
    for _ in range(iters):
        v, (g,) = value_and_grad(p)
        losses.append(float(v))
        u, state = update(g, state, p)
        p = cad.optim.apply_updates(p, u)
    return p, losses


def fit_newton(tape, p, maxiter=20):
    """polish with scipy's trust-region Newton method, gradient and Hessian from the
    tape; returns (p, scipy's result, the loss after each iteration)"""
    from scipy.optimize import minimize

    def fun(x):
        v, g = tape.value_and_grad(cad.tensor(x))
        return float(v), g[0].numpy()
    losses = [float(tape(p))]
    res = minimize(fun, p.numpy(), jac=True, method="trust-exact", options={"maxiter": maxiter},
                   hess=lambda x: tape.hessian(cad.tensor(x)).numpy(),
                   callback=lambda x: losses.append(float(tape(cad.tensor(x)))))
    return cad.tensor(res.x), res, losses


def fit_torch(obs, dt, iters, lr=0.02):
    """the same Adam fit in PyTorch (eager): returns (p, losses)"""
    import torch
    loss = make_loss(obs, dt, torch.sin, lambda v: torch.tensor(v, dtype=torch.float64))
    p = torch.tensor(START, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([p], lr=lr)
    losses = []
    for _ in range(iters):
        opt.zero_grad()
        v = loss(p)
        v.backward()
        opt.step()
        losses.append(v.item())
    return p.detach().numpy(), losses


def fit_cad_eager(obs, dt, iters, lr=0.02):
    """the same Adam fit with cad, not recorded: the ops run (and build a tape) every
    iteration, cad.optim.Adam steps"""
    loss = make_loss(obs, dt, cad.sin)
    p = cad.tensor(START, requires_grad=True)
    opt = cad.optim.Adam([p], lr=lr)
    losses = []
    for _ in range(iters):
        opt.zero_grad()
        v = loss(p)
        v.backward()
        opt.step()
        losses.append(float(v))
    return p.detach().numpy(), losses


def plot(path, t, obs, clean, fitted, start, losses, newton_losses):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6), gridspec_kw={"width_ratios": [2, 1]})
    a.plot(t, obs, ".", ms=3, color="0.55", label="observations")
    a.plot(t, clean, "-", lw=1, color="k", label="truth")
    a.plot(t, start, "--", lw=1, color="tab:orange", label="initial guess")
    a.plot(t, fitted, "-", lw=1.5, color="tab:blue", label="fit")
    a.set_xlabel("t (s)")
    a.set_ylabel("theta (rad)")
    a.legend(fontsize=7, ncol=2, loc="upper right")
    a.set_title("pendulum: fit of damping and length")
    b.semilogy(range(1, len(losses) + 1), losses, color="tab:blue", label="Adam")
    if newton_losses:
        b.semilogy(range(len(losses) + 1, len(losses) + 1 + len(newton_losses)), newton_losses, "o-", ms=3,
                   color="tab:red", label="Newton (trust-exact)")
    b.set_xlabel("iteration")
    b.set_ylabel("loss (MSE)")
    b.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--iters", type=int, default=60, help="Adam iterations")
    ap.add_argument("--steps", type=int, default=200, help="RK4 steps (one observation each)")
    ap.add_argument("--noise", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "pendulum_fit.png"))
    ap.add_argument("--no-plot", action="store_true")
    ap.add_argument("--no-compare", action="store_true", help="skip the cad-eager and PyTorch timings")
    ap.add_argument("--quick", action="store_true", help="5 Adam iterations on 40 steps (for the tests)")
    a = ap.parse_args(argv)
    if a.quick:
        a.iters, a.steps = 5, 40
    dt = 0.025
    t, obs, clean = make_data(a.steps, dt, a.noise, a.seed)
    loss = make_loss(obs, dt, cad.sin)
    p0 = cad.tensor(START)

    t0 = time.perf_counter()
    tape = cad.record(loss, p0)
    t_rec = time.perf_counter() - t0
    print(f"recorded the loss once: {len(tape)} ops, {t_rec * 1e3:.1f} ms")
    t0 = time.perf_counter()
    p, losses = fit_adam(tape.value_and_grad, p0, a.iters)
    t_cad = time.perf_counter() - t0
    print(f"Adam, {a.iters} iterations (replays of the tape): {t_cad:.3f} s, "
          f"{t_cad / a.iters * 1e3:.2f} ms per loss and gradient; c, L = {p.numpy().round(4).tolist()}")
    t0 = time.perf_counter()
    p, res, newton_losses = fit_newton(tape, p, maxiter=3 if a.quick else 20)
    t_newton = time.perf_counter() - t0
    print(f"Newton polish (scipy trust-exact, tape.hessian): {res.nit} iterations, {t_newton:.3f} s; "
          f"loss {newton_losses[0]:.3e} -> {res.fun:.3e}")
    c, L = p.numpy().tolist()
    print(f"fit: c = {c:.4f} (true {TRUE[0]}), L = {L:.4f} (true {TRUE[1]})")

    if not a.no_compare:         # (each timed after a 2-iteration warm-up run)
        fit_cad_eager(obs, dt, 2)
        t0 = time.perf_counter()
        pe, le = fit_cad_eager(obs, dt, a.iters)
        t_eager = time.perf_counter() - t0
        print(f"the same Adam fit, cad without recording: {t_eager:.3f} s "
              f"({t_eager / t_cad:.1f}x the replayed tape)")
        if not np.allclose(le, losses, rtol=1e-9):
            print("warning: the unrecorded fit's loss curve differs from the replayed one's", file=sys.stderr)
        try:
            import torch  # noqa: F401
        except ImportError:
            print("PyTorch is not installed: no comparison")
        else:
            fit_torch(obs, dt, 2)
            t0 = time.perf_counter()
            pt, lt = fit_torch(obs, dt, a.iters)
            t_torch = time.perf_counter() - t0
            print(f"the same Adam fit, PyTorch eager: {t_torch:.3f} s ({t_torch / t_cad:.0f}x cad's "
                  f"replayed tape, {t_torch / t_eager:.0f}x cad without recording); "
                  f"c, L = {pt.round(4).tolist()}")
            if not np.allclose(lt, losses, rtol=1e-6):
                print("warning: PyTorch's loss curve differs from cad's", file=sys.stderr)

    if not a.no_plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print("matplotlib is not installed: no plot")
        else:
            fitted = simulate(c, L, a.steps, dt, math.sin)
            start = simulate(START[0], START[1], a.steps, dt, math.sin)
            plot(a.out, t, obs, clean, fitted, start, losses, newton_losses)
            print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
