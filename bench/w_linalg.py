"""W10: the gradient of a Gaussian-process log-likelihood through linear algebra.

L(X) = 0.5 * log det K + 0.5 * y @ solve(K, y),  K = exp(-D / 2) + 0.1 I,
D the pairwise squared distances of 512 points X in R^2 (float64).  Each call
returns dL/dX (512, 2).  "hand" is numpy written by hand (one inverse:
G = 0.5 (K^-1 - a a^T), a = K^-1 y, then the chain rule through exp and the
distances); the others differentiate L as written, with their own linalg
(torch.linalg, jax.numpy.linalg, autograd.numpy.linalg, cad.linalg).
"""
import numpy as np

from .harness import Case

N = 512


def data(n=N, seed=10):
    def make():
        rng = np.random.default_rng(seed)
        return {"X": rng.standard_normal((n, 2)), "y": rng.standard_normal(n)}
    return make


def loglik(X, y, xp, slogdet, solve):
    """L for any array library (xp: exp, sum; slogdet and solve its linalg)"""
    sq = xp.sum(X * X, axis=1)
    D = sq[:, None] + sq[None, :] - 2.0 * (X @ X.T)
    K = xp.exp(-0.5 * D) + 0.1 * xp.eye(X.shape[0])
    return 0.5 * slogdet(K)[1] + 0.5 * (y @ solve(K, y))


def hand(d):
    X, y = d["X"], d["y"]

    def step():
        sq = np.sum(X * X, axis=1)
        E = np.exp(-0.5 * (sq[:, None] + sq[None, :] - 2.0 * (X @ X.T)))
        Kinv = np.linalg.inv(E + 0.1 * np.eye(X.shape[0]))
        a = Kinv @ y
        W = 0.5 * (Kinv - np.outer(a, a)) * E          # dL/dK o dK/dD * (-2)
        return -2.0 * (X * W.sum(axis=1)[:, None] - W @ X)
    return step


def cad_grad(d):
    import cad
    y = cad.tensor(d["y"])

    class _xp:
        exp = staticmethod(cad.exp)
        sum = staticmethod(cad.sum)
        eye = staticmethod(lambda n: cad.eye(n))
    g = cad.grad(lambda X: loglik(X, y, _xp, cad.linalg.slogdet, cad.linalg.solve))
    return lambda: g(d["X"])


def torch_grad(d):
    import torch
    X0, y = torch.tensor(d["X"]), torch.tensor(d["y"])

    class _xp:
        exp = staticmethod(torch.exp)
        eye = staticmethod(lambda n: torch.eye(n, dtype=torch.float64))

        @staticmethod
        def sum(x, axis=None):
            return torch.sum(x, dim=axis)

    def step():
        X = X0.clone().requires_grad_(True)
        L = loglik(X, y, _xp, torch.linalg.slogdet, torch.linalg.solve)
        return torch.autograd.grad(L, X)[0]
    return step


def _jax(jit):
    def setup(d):
        import jax
        jax.config.update("jax_enable_x64", True)
        import jax.numpy as jnp
        X, y = jnp.asarray(d["X"]), jnp.asarray(d["y"])
        g = jax.grad(lambda X: loglik(X, y, jnp, jnp.linalg.slogdet, jnp.linalg.solve))
        if jit:
            g = jax.jit(g)   # compiled by the untimed warm-up
        return lambda: jax.block_until_ready(g(X))
    return setup


def autograd_grad(d):
    import autograd
    import autograd.numpy as anp
    y = d["y"]
    g = autograd.grad(lambda X: loglik(X, y, anp, anp.linalg.slogdet, anp.linalg.solve))
    return lambda: g(d["X"])


CASES = [
    Case("W10", "GP log-likelihood grad, 512 points", data=data(), tol=1e-7,
         impls={"hand": hand, "torch": torch_grad, "jax": _jax(False), "jax.jit": _jax(True),
                "autograd": autograd_grad, "cad": cad_grad},
         note="W10: dL/dX of L = 0.5 logdet K + 0.5 y @ solve(K, y), K = exp(-D/2) + 0.1 I from "
              "512 points in R^2 (float64); hand = numpy with one inverse and the chain rule by "
              "hand; the others differentiate L as written with their linalg."),
]
