"""W13: gradients through scipy-style functions (cad.scipy against jax.scipy, torch).

(a) mixture of Gaussians: the log-likelihood of 1000 points in R^5 under 10 Gaussian
components, sum_n logsumexp_k (log softmax(w)_k + log N(x_n | mu_k, L_k L_k^T)), and
its gradient in the means mu (10, 5), the factors L (10, 5, 5) (every entry: the
covariance is L @ L.T) and the logits w (10,).  cad calls
cad.scipy.stats.multivariate_normal.logpdf and cad.scipy.special.logsumexp, JAX their
jax.scipy twins (one call each with the components batched: mean (K, 1, d), cov
(K, 1, d, d), JAX's broadcasting, which cad.scipy.stats follows), torch
torch.distributions.MultivariateNormal (batched over the components), HIPS autograd
a Python loop over the components (its logpdf takes one mean).  hand = numpy
with the gradient by hand (responsibilities, then the Gaussian's derivatives).

(b) an ODE fit: Lotka-Volterra, 100 times in [0, 15], loss = sum of squares to noisy
data, its gradient in the 4 parameters and y0.  cad = cad.scipy.integrate.odeint
(Dopri 5(4) + adjoint, rtol = atol = 1.4e-8), jax / jax.jit =
jax.experimental.ode.odeint (the same method and tolerances), torch =
torchdiffeq.odeint_adjoint (dopri5, same tolerances) when installed, else backprop
through a fixed-step RK4 in torch ops with 2 steps per output interval (198 steps,
about as many as cad's 182 accepted Dopri steps); hand = numpy/scipy by hand: the forward
sensitivities (2 + 2 x 6 states, the Jacobians written out) integrated by
scipy.integrate.odeint (LSODA) at rtol = atol = 1e-10.
"""
import numpy as np

from .harness import Case

K, N, D = 10, 1000, 5


# ---------------------------------------------------------------- (a) mixture of Gaussians

def mog_data(seed=13, k=K, n=N, d=D):
    def make():
        rng = np.random.default_rng(seed)
        L = np.tril(rng.normal(scale=0.3, size=(k, d, d)), -1) + np.eye(d)[None] * rng.uniform(0.8, 1.5, (k, d))[:, :, None]
        L = L + 0.05 * np.triu(rng.normal(size=(k, d, d)), 1)    # every entry of L matters
        return {"x": rng.normal(size=(n, d)) * 2.0, "mu": rng.normal(size=(k, d)), "L": L,
                "w": rng.normal(size=k)}
    return make


def mog_hand(d):
    x, mu, L, w = d["x"], d["mu"], d["L"], d["w"]
    n, dim = x.shape

    def step():
        S = L @ np.swapaxes(L, 1, 2)
        Si = np.linalg.inv(S)
        diff = x[None] - mu[:, None]                              # (K, N, D)
        sd = np.einsum("kij,knj->kni", Si, diff)                  # Sigma^-1 (x - mu)
        maha = np.sum(diff * sd, axis=2)
        logdet = np.linalg.slogdet(S)[1]
        lw = w - w.max()
        lw = lw - np.log(np.sum(np.exp(lw)))                      # log softmax
        lp = lw[:, None] - 0.5 * (maha + logdet[:, None] + dim * np.log(2 * np.pi))
        m = lp.max(axis=0)
        r = np.exp(lp - m)
        r /= r.sum(axis=0)                                        # responsibilities (K, N)
        R = r.sum(axis=1)
        gmu = np.einsum("kn,kni->ki", r, sd)
        G = 0.5 * (np.einsum("kn,kni,knj->kij", r, sd, sd) - R[:, None, None] * Si)
        gL = 2.0 * G @ L
        gw = R - n * np.exp(lw)
        return gmu, gL, gw
    return step


def mog_loss(x, mu, L, w, logpdf, logsumexp, log_softmax, stack, xp, batched=True):
    lw = log_softmax(w)
    if batched:   # one call: mean (K, 1, d) and cov (K, 1, d, d) against x (N, d) give (K, N)
        cov = xp.matmul(L, xp.swapaxes(L, -1, -2))
        lps = logpdf(x, mu[:, None, :], cov[:, None])
    else:
        lps = stack([logpdf(x, mu[k], L[k] @ L[k].T) for k in range(mu.shape[0])])   # (K, N)
    return xp.sum(logsumexp(lps + lw[:, None], axis=0))


def mog_cad(d):
    import cad
    try:
        from cad.scipy.special import logsumexp
        from cad.scipy.stats import multivariate_normal
    except ImportError as e:
        raise ImportError(f"cad.scipy.stats / cad.scipy.special are not in this tree yet ({e})") from e
    x = cad.tensor(d["x"])

    def L_(mu, L, w):
        return mog_loss(x, mu, L, w, multivariate_normal.logpdf, logsumexp, cad.log_softmax, cad.stack, cad)
    g = cad.grad(L_, argnums=(0, 1, 2))
    mu, L, w = cad.tensor(d["mu"]), cad.tensor(d["L"]), cad.tensor(d["w"])
    return lambda: g(mu, L, w)


def mog_torch(d):
    import torch
    x = torch.tensor(d["x"])

    def step():
        mu = torch.tensor(d["mu"], requires_grad=True)
        L = torch.tensor(d["L"], requires_grad=True)
        w = torch.tensor(d["w"], requires_grad=True)
        mvn = torch.distributions.MultivariateNormal(mu, covariance_matrix=L @ L.transpose(1, 2))
        lp = mvn.log_prob(x[:, None, :]) + torch.log_softmax(w, 0)          # (N, K)
        loss = torch.logsumexp(lp, dim=1).sum()
        return torch.autograd.grad(loss, (mu, L, w))
    return step


def _mog_jax(jit):
    def setup(d):
        import jax
        jax.config.update("jax_enable_x64", True)
        import jax.numpy as jnp
        from jax.scipy.special import logsumexp
        from jax.scipy.stats import multivariate_normal
        x = jnp.asarray(d["x"])

        def L_(mu, L, w):
            return mog_loss(x, mu, L, w, multivariate_normal.logpdf, logsumexp, jax.nn.log_softmax,
                            jnp.stack, jnp)
        g = jax.grad(L_, argnums=(0, 1, 2))
        if jit:
            g = jax.jit(g)
        mu, L, w = jnp.asarray(d["mu"]), jnp.asarray(d["L"]), jnp.asarray(d["w"])
        return lambda: jax.block_until_ready(g(mu, L, w))
    return setup


def mog_autograd(d):
    import autograd
    import autograd.numpy as anp
    from autograd.scipy.special import logsumexp
    from autograd.scipy.stats import multivariate_normal

    def log_softmax(w):
        return w - logsumexp(w)
    x = d["x"]
    g = autograd.grad(lambda mu, L, w: mog_loss(x, mu, L, w, multivariate_normal.logpdf, logsumexp,
                                                log_softmax, anp.stack, anp, batched=False),
                      argnum=(0, 1, 2))
    return lambda: g(d["mu"], d["L"], d["w"])


# ---------------------------------------------------------------- (b) an ODE fit

T_END, NT = 15.0, 100
P_TRUE = np.array([1.0, 0.1, 0.075, 1.5])
Y_TRUE = np.array([10.0, 5.0])
RTOL = ATOL = 1.4e-8
RK4_STEPS = 198  # torch's fixed-step RK4 without torchdiffeq: steps in all (2 per output interval)


def lv_np(y, t, p):
    return np.array([p[0] * y[0] - p[1] * y[0] * y[1], p[2] * y[0] * y[1] - p[3] * y[1]])


def ode_data(seed=13, nt=NT):
    def make():
        from scipy.integrate import odeint as sp_odeint
        t = np.linspace(0.0, T_END, nt)
        rng = np.random.default_rng(seed)
        ys = sp_odeint(lv_np, Y_TRUE, t, args=(P_TRUE,), rtol=1e-11, atol=1e-11)
        return {"t": t, "data": ys + rng.normal(scale=0.5, size=ys.shape),
                "p": P_TRUE * np.array([1.03, 0.97, 1.02, 0.98]), "y0": Y_TRUE + np.array([0.3, -0.2])}
    return make


def ode_hand(d):
    """forward sensitivities S = dy/d(p, y0) (2 x 6) integrated with y by LSODA"""
    from scipy.integrate import odeint as sp_odeint
    t, data, p, y0 = d["t"], d["data"], d["p"], d["y0"]

    def rhs(z, _t):
        y, S = z[:2], z[2:].reshape(2, 6)
        a, b, c, e = p
        J = np.array([[a - b * y[1], -b * y[0]], [c * y[1], c * y[0] - e]])
        Fp = np.array([[y[0], -y[0] * y[1], 0.0, 0.0], [0.0, 0.0, y[0] * y[1], -y[1]]])
        dS = J @ S
        dS[:, :4] += Fp
        return np.concatenate([lv_np(y, _t, p), dS.ravel()])

    def step():
        S0 = np.zeros((2, 6))
        S0[:, 4:] = np.eye(2)
        z = sp_odeint(rhs, np.concatenate([y0, S0.ravel()]), t, rtol=1e-10, atol=1e-10)
        r = 2.0 * (z[:, :2] - data)                                   # dL/dy(t_i)
        g = np.einsum("ti,tij->j", r, z[:, 2:].reshape(-1, 2, 6))
        return g[:4], g[4:]
    return step


def ode_cad(d):
    import cad
    from cad.scipy.integrate import odeint

    def f(y, t, p):
        return cad.stack([p[0] * y[0] - p[1] * y[0] * y[1], p[2] * y[0] * y[1] - p[3] * y[1]])
    t, data = cad.tensor(d["t"]), cad.tensor(d["data"])
    g = cad.grad(lambda p, y0: cad.sum((odeint(f, y0, t, p, rtol=RTOL, atol=ATOL) - data) ** 2),
                 argnums=(0, 1))
    p, y0 = cad.tensor(d["p"]), cad.tensor(d["y0"])
    return lambda: g(p, y0)


def _ode_jax(jit):
    def setup(d):
        import jax
        jax.config.update("jax_enable_x64", True)
        import jax.numpy as jnp
        from jax.experimental.ode import odeint

        def f(y, t, p):
            return jnp.stack([p[0] * y[0] - p[1] * y[0] * y[1], p[2] * y[0] * y[1] - p[3] * y[1]])
        t, data = jnp.asarray(d["t"]), jnp.asarray(d["data"])
        g = jax.grad(lambda p, y0: jnp.sum((odeint(f, y0, t, p, rtol=RTOL, atol=ATOL) - data) ** 2),
                     argnums=(0, 1))
        if jit:
            g = jax.jit(g)
        p, y0 = jnp.asarray(d["p"]), jnp.asarray(d["y0"])
        return lambda: jax.block_until_ready(g(p, y0))
    return setup


def ode_torch(d):
    import torch
    t, data = torch.tensor(d["t"]), torch.tensor(d["data"])
    try:
        import torchdiffeq
    except ImportError:
        torchdiffeq = None

    if torchdiffeq is not None:
        class LV(torch.nn.Module):
            def __init__(self, p):
                super().__init__()
                self.p = torch.nn.Parameter(p)

            def forward(self, _t, y):
                p = self.p
                return torch.stack([p[0] * y[0] - p[1] * y[0] * y[1], p[2] * y[0] * y[1] - p[3] * y[1]])

        def step():
            m = LV(torch.tensor(d["p"]))
            y0 = torch.tensor(d["y0"], requires_grad=True)
            ys = torchdiffeq.odeint_adjoint(m, y0, t, rtol=RTOL, atol=ATOL, method="dopri5")
            loss = ((ys - data) ** 2).sum()
            return torch.autograd.grad(loss, (m.p, y0))
        return step

    def f(y, p):
        return torch.stack([p[0] * y[0] - p[1] * y[0] * y[1], p[2] * y[0] * y[1] - p[3] * y[1]])
    sub = -(-RK4_STEPS // (len(t) - 1))        # steps per output interval
    hs = [float(t[i + 1] - t[i]) / sub for i in range(len(t) - 1)]

    def step():
        p = torch.tensor(d["p"], requires_grad=True)
        y0 = torch.tensor(d["y0"], requires_grad=True)
        y, ys = y0, [y0]
        for h in hs:
            for _ in range(sub):
                k1 = f(y, p)
                k2 = f(y + h / 2 * k1, p)
                k3 = f(y + h / 2 * k2, p)
                k4 = f(y + h * k3, p)
                y = y + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
            ys.append(y)
        loss = ((torch.stack(ys) - data) ** 2).sum()
        return torch.autograd.grad(loss, (p, y0))
    return step


def ode_autograd(d):
    import autograd
    import autograd.numpy as anp
    from autograd.scipy.integrate import odeint

    def f(y, t, p):
        return anp.array([p[0] * y[0] - p[1] * y[0] * y[1], p[2] * y[0] * y[1] - p[3] * y[1]])
    t, data = d["t"], d["data"]
    g = autograd.grad(lambda p, y0: anp.sum((odeint(f, y0, t, (p,), rtol=RTOL, atol=ATOL) - data) ** 2),
                      argnum=(0, 1))
    return lambda: g(d["p"], d["y0"])


def _torch_note():
    import importlib.util
    if importlib.util.find_spec("torchdiffeq") is not None:
        return "torch = torchdiffeq.odeint_adjoint (dopri5, the same tolerances)"
    return (f"torch = backprop through a fixed-step RK4 in torch ops, {RK4_STEPS // (NT - 1)} steps per "
            f"output interval ({RK4_STEPS} steps; torchdiffeq is not installed)")


CASES = [
    Case("W13", "mixture of 10 Gaussians, grad, 1000 x 5", data=mog_data(), tol=1e-8,
         impls={"hand": mog_hand, "torch": mog_torch, "jax": _mog_jax(False), "jax.jit": _mog_jax(True),
                "autograd": mog_autograd, "cad": mog_cad},
         note="W13a: d/d(mu, L, logits) of sum_n logsumexp_k(log softmax(w)_k + "
              "multivariate_normal.logpdf(x_n, mu_k, L_k L_k^T)), 1000 points in R^5, 10 components, "
              "float64; cad.scipy.stats / jax.scipy.stats (the components batched in one call), torch "
              "MultivariateNormal (batched); hand = numpy with the gradient by hand."),
    Case("W13", "Lotka-Volterra fit, odeint grad, 100 times", data=ode_data(), tol=1e-4,
         impls={"hand": ode_hand, "torch": ode_torch, "jax": _ode_jax(False), "jax.jit": _ode_jax(True),
                "autograd": ode_autograd, "cad": ode_cad},
         note="W13b: d/d(p, y0) of sum((odeint(LV, y0, t, p) - data)^2), 100 times in [0, 15]; "
              "cad = cad.scipy.integrate.odeint, jax = jax.experimental.ode.odeint (both Dopri 5(4) "
              "+ adjoint, rtol = atol = 1.4e-8); " + _torch_note() + "; hand = forward "
              "sensitivities by LSODA (scipy) at 1e-10."),
]
