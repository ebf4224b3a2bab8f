"""W8: per-example gradients of a tiny MLP, batch 1000, float64.

One example: h = tanh(x @ W1 + b1), pred = (h @ W2 + b2)[0], loss = (pred - y)**2,
with x in R^16, y a scalar, W1 (16, 16), b1 (16,), W2 (16, 1), b2 (1,).  Each call
returns d loss / d (W1, b1, W2, b2) for each of the 1000 examples of x (1000, 16),
y (1000,): arrays of shapes (1000, 16, 16), (1000, 16), (1000, 16, 1), (1000, 1).

The loss is written for ONE example; the per-example gradients come from
vmap(grad(loss)) (torch.func, jax, cad.vmap), from a Python loop of grad(loss)
over the examples (torch, cad), or from a tape of cad.vmap(cad.grad(loss))
recorded once by cad.record and replayed.  "hand" is the forward and backward
written by hand in numpy, batched by broadcasting and einsum: the floor, and the
values every other column is checked against.
"""

import numpy as np

from .harness import Case

BATCH = 1000
N_IN = 16
N_HIDDEN = 16
ARGNUMS = (0, 1, 2, 3)
IN_DIMS = (None, None, None, None, 0, 0)  # the parameters shared, x and y split on axis 0


def data(batch=BATCH, seed=8):
    """The parameters, and a batch of examples (x, y); float64."""
    def make():
        rng = np.random.default_rng(seed)
        return {
            "W1": rng.standard_normal((N_IN, N_HIDDEN)) / np.sqrt(N_IN),
            "b1": 0.1 * rng.standard_normal(N_HIDDEN),
            "W2": rng.standard_normal((N_HIDDEN, 1)) / np.sqrt(N_HIDDEN),
            "b2": 0.1 * rng.standard_normal(1),
            "x": rng.standard_normal((batch, N_IN)),
            "y": rng.standard_normal(batch),
        }
    return make


def _params(d, convert):
    return tuple(convert(d[k]) for k in ("W1", "b1", "W2", "b2"))


def loss(W1, b1, W2, b2, xi, yi, tanh):
    """The loss of ONE example (xi of shape (16,), yi of shape ()), for any array library."""
    h = tanh(xi @ W1 + b1)
    pred = (h @ W2 + b2)[0]
    return (pred - yi) ** 2


# ---------------------------------------------------------------------------
# hand: numpy, every example at once, the backward pass written by hand


def hand(d):
    W1, b1, W2, b2 = _params(d, np.asarray)
    x, y = d["x"], d["y"]
    w2 = W2[:, 0]

    def step():
        h = np.tanh(x @ W1 + b1)                  # (B, 16)
        r = h @ w2 + b2[0] - y                    # (B,)   pred - y
        g = 2.0 * r                               # (B,)   d loss / d pred
        dz = (g[:, None] * w2) * (1.0 - h * h)    # (B, 16) d loss / d (x @ W1 + b1)
        return (np.einsum("bi,bj->bij", x, dz),   # W1: outer(x_n, dz_n)
                dz,                               # b1
                (g[:, None] * h)[:, :, None],     # W2: (B, 16, 1)
                g[:, None])                       # b2: (B, 1)
    return step


# ---------------------------------------------------------------------------
# torch


def torch_vmap(d):
    import torch
    params = _params(d, torch.tensor)
    x, y = torch.tensor(d["x"]), torch.tensor(d["y"])
    per_example = torch.func.vmap(
        torch.func.grad(lambda *a: loss(*a, tanh=torch.tanh), argnums=ARGNUMS), in_dims=IN_DIMS)
    return lambda: per_example(*params, x, y)


def torch_loop(d):
    """One forward and torch.autograd.grad per example; the examples split in the setup."""
    import torch
    params = tuple(torch.tensor(p, requires_grad=True) for p in _params(d, np.asarray))
    xs, ys = list(torch.tensor(d["x"])), list(torch.tensor(d["y"]))

    def step():
        grads = [torch.autograd.grad(loss(*params, xi, yi, tanh=torch.tanh), params)
                 for xi, yi in zip(xs, ys)]
        return tuple(torch.stack(g) for g in zip(*grads))
    return step


# ---------------------------------------------------------------------------
# jax


def _jax(jit):
    def setup(d):
        import jax
        import jax.numpy as jnp
        params = _params(d, jnp.asarray)
        x, y = jnp.asarray(d["x"]), jnp.asarray(d["y"])
        per_example = jax.vmap(jax.grad(lambda *a: loss(*a, tanh=jnp.tanh), argnums=ARGNUMS),
                               in_axes=IN_DIMS)
        if jit:
            per_example = jax.jit(per_example)  # compiled by the warm-up call, outside the samples
        return lambda: jax.block_until_ready(per_example(*params, x, y))
    return setup


# ---------------------------------------------------------------------------
# cad


def _cad_per_example():
    """cad.vmap(cad.grad(loss)): raises (a cell marked err, with the reason) where this
    cad has no vmap function, so that the other cells still run."""
    import cad
    vmap = getattr(cad, "vmap", None)
    if not callable(vmap):  # missing, or only the submodule cad/vmap.py
        raise NotImplementedError("this cad has no cad.vmap function")
    return vmap(cad.grad(lambda *a: loss(*a, tanh=cad.tanh), argnums=ARGNUMS), in_dims=IN_DIMS)


def cad_vmap(d):
    import cad
    per_example = _cad_per_example()
    params = _params(d, cad.tensor)
    x, y = cad.tensor(d["x"]), cad.tensor(d["y"])
    return lambda: per_example(*params, x, y)


def cad_loop(d):
    """One cad.grad call per example, then cad.stack; the examples split in the setup."""
    import cad
    g = cad.grad(lambda *a: loss(*a, tanh=cad.tanh), argnums=ARGNUMS)
    params = _params(d, cad.tensor)
    xs, ys = [cad.tensor(v) for v in d["x"]], [cad.tensor(v) for v in d["y"]]

    def step():
        grads = [g(*params, xi, yi) for xi, yi in zip(xs, ys)]
        return tuple(cad.stack(list(gs)) for gs in zip(*grads))
    return step


def cad_replay(d):
    """cad.vmap(cad.grad(loss)) recorded once by cad.record (the setup); each call
    replays the tape on the inputs.  The tape returns the tuple of the four gradients."""
    import cad
    per_example = _cad_per_example()
    params = _params(d, cad.tensor)
    x, y = cad.tensor(d["x"]), cad.tensor(d["y"])
    tape = cad.record(lambda W1, b1, W2, b2, x, y: per_example(W1, b1, W2, b2, x, y),
                      *params, x, y)
    return lambda: tape(*params, x, y)


CASES = [
    Case("W8", "per-example grads vmap", data=data(), tol=1e-9,
         impls={"hand": hand, "torch": torch_vmap, "jax": _jax(False), "jax.jit": _jax(True),
                "cad": cad_vmap},
         note="W8: d loss / d (W1, b1, W2, b2) of each of 1000 examples of a 16-16-1 tanh MLP, "
              "loss = (pred - y)**2 (float64).  vmap: torch.func.vmap(torch.func.grad), "
              "jax.vmap(jax.grad) eager and under jax.jit (compiled by the untimed warm-up), "
              "cad.vmap(cad.grad); loop: a Python loop of torch.autograd.grad / cad.grad over "
              "the examples (split in the setup), stacked; replayed: cad = cad.record of "
              "cad.vmap(cad.grad) once in the setup, one tape(...) per call, cad.eager = "
              "cad.vmap(cad.grad) unrecorded."),
    Case("W8", "per-example grads loop", data=data(), tol=1e-9,
         impls={"hand": hand, "torch": torch_loop, "cad": cad_loop}),
    Case("W8", "per-example grads replayed", data=data(), tol=1e-9,
         impls={"hand": hand, "jax.jit": _jax(True), "cad.eager": cad_vmap, "cad": cad_replay}),
]
