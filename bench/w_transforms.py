"""W6: the full Jacobian of tanh(W @ x), 256 x 256 (and of a 70-op elementwise chain
after W @ x, 32 x 32).  W7: the Hessian of
sum(x**3) + sum(tanh(W @ x)), 128 x 128 (and 32, 512), and its product with one
vector (hvp, n = 128).  All float64, W fixed.

These time the function transforms (jacrev, jacfwd, hessian): a whole matrix of
derivatives per call, from a function of x.  Each call starts from x: the
forward pass is inside the timed call.
"""

import numpy as np

from .harness import Case


def _data(n, seed):
    def make():
        rng = np.random.default_rng(seed)
        return {"W": rng.standard_normal((n, n)) / np.sqrt(n), "x": rng.standard_normal(n)}
    return make


# ---------------------------------------------------------------------------
# W6: J = d tanh(W @ x) / dx, x in R^256

N6 = 256


def w6_f(W, x, np_):
    return np_.tanh(W @ x)


def w6_hand(d):
    W, x = d["W"], d["x"]

    def step():
        t = np.tanh(W @ x)
        return (1.0 - t * t)[:, None] * W
    return step


def _w6_torch(transform):
    def setup(d):
        import torch
        W, x = torch.tensor(d["W"]), torch.tensor(d["x"])
        jac = getattr(torch.func, transform)(lambda x: w6_f(W, x, torch))
        return lambda: jac(x)
    return setup


def w6_torch_vjp_loop(d):
    """One torch.autograd.grad (a VJP with a row of the identity) per output."""
    import torch
    W = torch.tensor(d["W"])
    x = torch.tensor(d["x"], requires_grad=True)
    rows = list(torch.eye(N6, dtype=torch.float64))

    def step():
        y = w6_f(W, x, torch)
        return torch.stack([torch.autograd.grad(y, x, e, retain_graph=True)[0] for e in rows])
    return step


def w6_cad(d):
    import cad
    W, x = cad.tensor(d["W"]), cad.tensor(d["x"])
    jac = cad.jacrev(lambda x: w6_f(W, x, cad))
    return lambda: jac(x)


def w6_cad_jacfwd(d):
    import cad
    W, x = cad.tensor(d["W"]), cad.tensor(d["x"])
    jac = cad.jacfwd(lambda x: w6_f(W, x, cad))
    return lambda: jac(x)


def w6_cad_vjp_loop(d):
    """What cad can do without transforms: one cad.autograd.grad per output row."""
    import cad
    W = cad.tensor(d["W"])
    x = cad.tensor(d["x"], requires_grad=True)
    rows = [cad.tensor(e) for e in np.eye(N6)]

    def step():
        y = w6_f(W, x, cad)
        return cad.stack([cad.autograd.grad(y, x, e, retain_graph=True)[0] for e in rows])
    return step


def w6_autograd(d):
    import autograd
    import autograd.numpy as anp
    W, x = d["W"], d["x"]
    jac = autograd.jacobian(lambda x: w6_f(W, x, anp))
    return lambda: jac(x)


def _w6_jax(transform, jit):
    def setup(d):
        import jax
        import jax.numpy as jnp
        W, x = jnp.asarray(d["W"]), jnp.asarray(d["x"])
        jac = getattr(jax, transform)(lambda x: w6_f(W, x, jnp))
        if jit:
            jac = jax.jit(jac)  # compiled by the warm-up call, outside the samples
        return lambda: jax.block_until_ready(jac(x))
    return setup


# ---------------------------------------------------------------------------
# W7: H = d^2 (sum(x**3) + sum(tanh(W @ x))) / dx^2, x in R^128

N7 = 128


def w7_g(W, x, np_):
    return (x ** 3).sum() + np_.tanh(W @ x).sum()


def w7_hand(d):
    W, x = d["W"], d["x"]

    def step():
        t = np.tanh(W @ x)
        H = W.T @ ((-2.0 * t * (1.0 - t * t))[:, None] * W)
        H[np.diag_indices(x.size)] += 6.0 * x
        return H
    return step


def w7_torch(d):
    import torch
    W, x = torch.tensor(d["W"]), torch.tensor(d["x"])
    hess = torch.func.hessian(lambda x: w7_g(W, x, torch))
    return lambda: hess(x)


def w7_cad(d):
    import cad
    W, x = cad.tensor(d["W"]), cad.tensor(d["x"])
    hessian = cad.hessian  # the seed's signature: hessian(function, input) -> matrix
    return lambda: hessian(lambda x: w7_g(W, x, cad), x)


def w7_autograd(d):
    import autograd
    import autograd.numpy as anp
    W, x = d["W"], d["x"]
    hess = autograd.hessian(lambda x: w7_g(W, x, anp))
    return lambda: hess(x)


def _w7_jax(jit):
    def setup(d):
        import jax
        import jax.numpy as jnp
        W, x = jnp.asarray(d["W"]), jnp.asarray(d["x"])
        hess = jax.hessian(lambda x: w7_g(W, x, jnp))
        if jit:
            hess = jax.jit(hess)  # compiled by the warm-up call, outside the samples
        return lambda: jax.block_until_ready(hess(x))
    return setup


# W6 chain: jacrev of a 70-op elementwise chain after W @ x (n = 32): the batched
# reverse sweep's per-record cost (every record a diagonal batch)

N6C = 32
CHAIN6 = 10


def w6c_f(W, x, np_):
    y = W @ x
    for _ in range(CHAIN6):
        y = np_.sin(y) * 1.1 + y * y * 0.1 - np_.exp(-y * y)
    return y


def w6c_hand(d):
    W, x = d["W"], d["x"]

    def step():
        y = W @ x
        dy = np.ones_like(y)
        for _ in range(CHAIN6):
            e = np.exp(-y * y)
            dy = (np.cos(y) * 1.1 + 0.2 * y + 2.0 * y * e) * dy
            y = np.sin(y) * 1.1 + y * y * 0.1 - e
        return dy[:, None] * W
    return step


def w6c_torch(d):
    import torch
    W, x = torch.tensor(d["W"]), torch.tensor(d["x"])
    jac = torch.func.jacrev(lambda x: w6c_f(W, x, torch))
    return lambda: jac(x)


def _w6c_jax(d):
    import jax
    import jax.numpy as jnp
    W, x = jnp.asarray(d["W"]), jnp.asarray(d["x"])
    jac = jax.jit(jax.jacrev(lambda x: w6c_f(W, x, jnp)))
    return lambda: jax.block_until_ready(jac(x))


def w6c_cad(d):
    import cad
    W, x = cad.tensor(d["W"]), cad.tensor(d["x"])
    jac = cad.jacrev(lambda x: w6c_f(W, x, cad))
    return lambda: jac(x)


# W7 hvp: H v of the same f (forward over reverse: jvp of grad), one direction v

def _hvp_data(n, seed):
    def make():
        d = _data(n, seed)()
        d["v"] = np.random.default_rng(seed + 1).standard_normal(n)
        return d
    return make


def w7_hvp_hand(d):
    W, x, v = d["W"], d["x"], d["v"]

    def step():
        t = np.tanh(W @ x)
        return 6.0 * x * v + W.T @ (-2.0 * t * (1.0 - t * t) * (W @ v))
    return step


def w7_hvp_torch(d):
    import torch
    W, x, v = (torch.tensor(d[k]) for k in ("W", "x", "v"))
    g = torch.func.grad(lambda x: w7_g(W, x, torch))
    return lambda: torch.func.jvp(g, (x,), (v,))[1]


def _w7_hvp_jax(jit):
    def setup(d):
        import jax
        import jax.numpy as jnp
        W, x, v = (jnp.asarray(d[k]) for k in ("W", "x", "v"))

        def hvp(x, v):
            return jax.jvp(jax.grad(lambda x: w7_g(W, x, jnp)), (x,), (v,))[1]
        if jit:
            hvp = jax.jit(hvp)
        return lambda: jax.block_until_ready(hvp(x, v))
    return setup


def w7_hvp_cad(d):
    import cad
    W, x, v = (cad.tensor(d[k]) for k in ("W", "x", "v"))
    return lambda: cad.hvp(lambda x: w7_g(W, x, cad), x, v)


CASES = [
    Case("W6", "jacrev tanh(W@x) 256", data=_data(N6, 6), tol=1e-9,
         impls={"hand": w6_hand, "torch": _w6_torch("jacrev"), "jax": _w6_jax("jacrev", False),
                "jax.jit": _w6_jax("jacrev", True), "autograd": w6_autograd, "cad": w6_cad}),
    Case("W6", "jacfwd tanh(W@x) 256", data=_data(N6, 6), tol=1e-9,
         impls={"hand": w6_hand, "torch": _w6_torch("jacfwd"), "jax": _w6_jax("jacfwd", False),
                "jax.jit": _w6_jax("jacfwd", True), "cad": w6_cad_jacfwd},
         note="W6 jacfwd: forward mode (torch.func.jacfwd, jax.jacfwd, cad.jacfwd); "
              "autograd has no jacfwd"),
    Case("W6", "jacrev 70-op chain after W@x 32", data=_data(N6C, 6), tol=1e-9,
         impls={"hand": w6c_hand, "torch": w6c_torch, "jax.jit": _w6c_jax, "cad": w6c_cad},
         note="W6 chain: jacrev of ten rounds of sin(y)*1.1 + y*y*0.1 - exp(-y*y) after W @ x "
              "(70 elementwise records, n = 32)"),
    Case("W6", "VJP loop tanh(W@x) 256", data=_data(N6, 6), tol=1e-9,
         impls={"hand": w6_hand, "torch": w6_torch_vjp_loop, "cad": w6_cad_vjp_loop},
         note="W6 VJP loop: torch and cad call autograd.grad once per output row "
              "(retain_graph=True), no transform"),
    Case("W7", "hessian x**3+tanh(W@x) 128", data=_data(N7, 7), tol=1e-9,
         impls={"hand": w7_hand, "torch": w7_torch, "jax": _w7_jax(False),
                "jax.jit": _w7_jax(True), "autograd": w7_autograd, "cad": w7_cad}),
] + [
    # issue 14's other two sizes: n = 32 is the fixed cost per call (the sweeps'
    # bookkeeping), n = 512 the products (W.T @ (s * W): 134M multiply-adds)
    Case("W7", f"hessian x**3+tanh(W@x) {n}", data=_data(n, 7), tol=1e-9,
         impls={"hand": w7_hand, "torch": w7_torch, "jax.jit": _w7_jax(True), "cad": w7_cad},
         note=f"W7 {n}: jax eager and autograd left out at this size (W7 128 has them)")
    for n in (32, 512)
] + [
    Case("W7", "hvp x**3+tanh(W@x) 128", data=_hvp_data(N7, 7), tol=1e-9,
         impls={"hand": w7_hvp_hand, "torch": w7_hvp_torch, "jax.jit": _w7_hvp_jax(True),
                "cad": w7_hvp_cad},
         note="W7 hvp: H v for one v, jvp of grad (torch.func.jvp(grad), jax.jvp(grad), cad.hvp)"),
]
