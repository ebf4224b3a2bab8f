"""W4: an elementwise function over 10^7 float64.  W5: sum((A @ B)**2), 1024 x 1024.

These measure the kernels (memory bandwidth, BLAS), not per-op overhead.
"""

import numpy as np

from .harness import Case

# ---------------------------------------------------------------------------
# W4: f = sum(sin(x)*x + exp(-x*x)); gradient w.r.t. x

N4 = 10 ** 7


def w4_data():
    return {"x": np.random.default_rng(4).standard_normal(N4)}


def w4_f(x, np_):
    return (np_.sin(x) * x + np_.exp(-x * x)).sum()


def w4_hand(d):
    x = d["x"]

    def step():
        s = np.sin(x)
        e = np.exp(-x * x)
        f = (s * x + e).sum()
        g = np.cos(x) * x + s - 2.0 * x * e
        return f, g
    return step


def w4_torch(d):
    import torch
    x = torch.tensor(d["x"], requires_grad=True)

    def step():
        f = w4_f(x, torch)
        (g,) = torch.autograd.grad(f, (x,))
        return f, g
    return step


def w4_cad(d):
    import cad
    x = cad.tensor(d["x"], requires_grad=True)

    def step():
        f = w4_f(x, cad)
        (g,) = cad.autograd.grad(f, (x,))
        return f, g
    return step


def w4_autograd(d):
    import autograd
    import autograd.numpy as anp
    value_and_grad = autograd.value_and_grad(lambda x: w4_f(x, anp))
    x = d["x"]
    return lambda: value_and_grad(x)


def _w4_jax(jit):
    def setup(d):
        import jax
        import jax.numpy as jnp
        value_and_grad = jax.value_and_grad(lambda x: w4_f(x, jnp))
        if jit:
            value_and_grad = jax.jit(value_and_grad)
        x = jnp.asarray(d["x"])
        return lambda: jax.block_until_ready(value_and_grad(x))
    return setup


# ---------------------------------------------------------------------------
# W5: loss = sum((A @ B)**2); gradients w.r.t. A and B

N5 = 1024


def w5_data(dtype):
    def make():
        rng = np.random.default_rng(5)
        return {"A": rng.standard_normal((N5, N5)).astype(dtype),
                "B": rng.standard_normal((N5, N5)).astype(dtype)}
    return make


def w5_hand(d):
    A, B = d["A"], d["B"]

    def step():
        C = A @ B
        G = 2 * C
        return G @ B.T, A.T @ G
    return step


def w5_torch(d):
    import torch
    A = torch.tensor(d["A"], requires_grad=True)
    B = torch.tensor(d["B"], requires_grad=True)

    def step():
        return torch.autograd.grad(((A @ B) ** 2).sum(), (A, B))
    return step


def w5_cad(d):
    import cad
    dtype = cad.float32 if d["A"].dtype == np.float32 else cad.float64
    A = cad.tensor(d["A"], dtype=dtype, requires_grad=True)
    B = cad.tensor(d["B"], dtype=dtype, requires_grad=True)

    def step():
        return cad.autograd.grad(((A @ B) ** 2).sum(), (A, B))
    return step


def w5_autograd(d):
    import autograd
    import autograd.numpy as anp
    g = autograd.grad(lambda A, B: (anp.dot(A, B) ** 2).sum(), (0, 1))
    A, B = d["A"], d["B"]
    return lambda: g(A, B)


def _w5_jax(jit):
    def setup(d):
        import jax
        import jax.numpy as jnp
        g = jax.grad(lambda A, B: ((A @ B) ** 2).sum(), argnums=(0, 1))
        if jit:
            g = jax.jit(g)
        A, B = jnp.asarray(d["A"]), jnp.asarray(d["B"])
        return lambda: jax.block_until_ready(g(A, B))
    return setup


CASES = [
    Case("W4", "sin(x)*x+exp(-x*x), 1e7", data=w4_data, tol=1e-9,
         impls={"hand": w4_hand, "torch": w4_torch, "jax": _w4_jax(False),
                "jax.jit": _w4_jax(True), "autograd": w4_autograd, "cad": w4_cad}),
    Case("W5", "(A@B)**2 1024 float64", data=w5_data(np.float64), tol=1e-9,
         impls={"hand": w5_hand, "torch": w5_torch, "jax": _w5_jax(False),
                "jax.jit": _w5_jax(True), "autograd": w5_autograd, "cad": w5_cad}),
    Case("W5", "(A@B)**2 1024 float32", data=w5_data(np.float32), tol=1e-4,
         impls={"hand": w5_hand, "torch": w5_torch, "jax": _w5_jax(False),
                "jax.jit": _w5_jax(True), "autograd": w5_autograd, "cad": w5_cad}),
]
