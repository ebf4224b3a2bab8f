"""W9: record once, replay.  W1, W2 (scalar) and W3 again, each call one gradient.

The "cad" column is a tape recorded once by ``cad.record`` in the (untimed)
setup and replayed by every timed call: W1 and W2 ``tape.grad``, W3
``tape.value_and_grad`` then the SGD update in numpy.  Its peers are the
programs compiled or traced once in the same way: ``jax.jit``, ``torch.jit``
(``torch.jit.trace`` of the forward, eager backward) and ``torch.compile``
(compiled by the untimed warm-up call; left out of ``--quick`` runs), next to
the eager programs of W1-W3: hand (the floor), torch and "cad.eager" (cad
without recording).  Every column times forward + backward in one call (W3: +
the update), so each case is one row.
"""

import warnings

from . import w_mlp, w_scalar, w_transforms
from .harness import Backward, Case


def _one_call(setup):
    """A W1-W3 setup whose fn may return ``Backward``, as one call: forward + backward
    are timed together (one row per case, as for the compiled peers)."""
    def wrapped(d):
        fn = setup(d)

        def call():
            r = fn()
            return r.fn() if isinstance(r, Backward) else r
        return call
    return wrapped


def _trace(f, example):
    import torch
    with warnings.catch_warnings():  # TracerWarnings on stderr say nothing here
        warnings.simplefilter("ignore")
        return torch.jit.trace(f, example)


# ---------------------------------------------------------------------------
# W9 W1: the chain of 1000 scalar ops, d y / d x per call


def w1_cad(d):
    import cad
    tape = cad.record(lambda x: w_scalar.chain(x, cad.sin), w_scalar.X0)  # float64 0-d
    x = cad.tensor(w_scalar.X0)
    return lambda: tape.grad(x)


def w1_jax_jit(d):
    import jax
    import jax.numpy as jnp
    g = jax.jit(jax.grad(lambda x: w_scalar.chain(x, jnp.sin)))  # compiled by the warm-up
    x = jnp.asarray(w_scalar.X0, dtype=jnp.float64)
    return lambda: g(x).block_until_ready()


def w1_torch_jit(d):
    import torch
    x = torch.tensor(w_scalar.X0, dtype=torch.float64, requires_grad=True)
    f = _trace(lambda x: w_scalar.chain(x, torch.sin), (x,))

    def step():
        x.grad = None
        f(x).backward()
        return x.grad
    return step


def w1_torch_compile(d):
    import torch
    g = torch.compile(torch.func.grad(lambda x: w_scalar.chain(x, torch.sin)))
    x = torch.tensor(w_scalar.X0, dtype=torch.float64)
    return lambda: g(x)


# ---------------------------------------------------------------------------
# W9 W2: the seed's program, d f / d x and d f / d t per call


def w2_cad(d):
    import cad
    x, t, y, b = cad.tensor(d["x"]), cad.tensor(d["t"]), cad.tensor(d["y"]), d["b"]
    tape = cad.record(lambda x, t, y: w_scalar.seed_program(x, t, y, b, cad.sqrt), x, t, y)
    return lambda: tape.grad(x, t, y, argnums=(0, 1))


def w2_jax_jit(d):
    # jax arrays are immutable: `a op= v` runs as `a = a op v` (as in W2)
    import jax
    import jax.numpy as jnp
    y, b = jnp.asarray(d["y"]), d["b"]
    g = jax.jit(jax.grad(lambda x, t: w_scalar.seed_program(x, t, y, b, jnp.sqrt),
                         argnums=(0, 1)))
    x, t = jnp.asarray(d["x"]), jnp.asarray(d["t"])
    return lambda: jax.block_until_ready(g(x, t))


def w2_torch_jit(d):
    import torch
    x = torch.tensor(d["x"], requires_grad=True)
    t = torch.tensor(d["t"], requires_grad=True)
    y, b = torch.tensor(d["y"]), d["b"]
    f = _trace(lambda x, t, y: w_scalar.seed_program_out_of_place(x, t, y, b, torch.sqrt),
               (x, t, y))
    return lambda: torch.autograd.grad(f(x, t, y), (x, t))


def w2_torch_compile(d):
    import torch
    y, b = torch.tensor(d["y"]), d["b"]
    g = torch.compile(torch.func.grad(
        lambda x, t: w_scalar.seed_program_out_of_place(x, t, y, b, torch.sqrt),
        argnums=(0, 1)))
    x, t = torch.tensor(d["x"]), torch.tensor(d["t"])
    return lambda: g(x, t)


# ---------------------------------------------------------------------------
# W9 W3: one SGD step of the MLP; the parameters keep training from call to call,
# so the result checked is that of the first step (the warm-up call), as in W3


def w3_cad(d):
    import cad
    X, labels = cad.tensor(d["X"]), cad.tensor(d["labels"])

    def loss(W1, b1, W2, b2, W3, b3):
        h1 = cad.tanh(X @ W1 + b1)
        h2 = cad.tanh(h1 @ W2 + b2)
        return cad.cross_entropy(h2 @ W3 + b3, labels)

    params = [p.copy() for p in d["params"]]  # writable float64 arrays, updated in place
    tape = cad.record(loss, *params)
    lr = w_mlp.LR

    def step():
        v, g = tape.value_and_grad(*params)
        for p, gi in zip(params, g):
            p -= lr * gi.numpy()
        return v, params
    return step


def _w3_torch_loss(d):
    import torch
    import torch.nn.functional as F
    X, labels = torch.tensor(d["X"]), torch.tensor(d["labels"])

    def loss(W1, b1, W2, b2, W3, b3):
        h1 = torch.tanh(X @ W1 + b1)
        h2 = torch.tanh(h1 @ W2 + b2)
        return F.cross_entropy(h2 @ W3 + b3, labels)
    return loss


def w3_torch_jit(d):
    import torch
    params = [torch.tensor(p, requires_grad=True) for p in d["params"]]
    f = _trace(_w3_torch_loss(d), tuple(params))
    lr = w_mlp.LR

    def step():
        loss = f(*params)
        loss.backward()
        with torch.no_grad():
            for p in params:
                p -= lr * p.grad
                p.grad = None
        return loss, params
    return step


def w3_torch_compile(d):
    # The whole step as one function of the parameters (as jax.jit's): a compiled
    # forward with loss.backward() and the update outside recompiles every call here.
    import torch
    value_and_grad = torch.func.grad_and_value(_w3_torch_loss(d), argnums=tuple(range(6)))
    lr = w_mlp.LR

    def sgd(*params):
        grads, loss = value_and_grad(*params)
        return loss, [p - lr * g for p, g in zip(params, grads)]

    update = torch.compile(sgd)
    state = {"params": [torch.tensor(p) for p in d["params"]]}

    def step():
        loss, state["params"] = update(*state["params"])
        return loss, state["params"]
    return step


def w7_cad_tape(d):
    """W7's Hessian from a tape of its function recorded once (tape.hessian records the
    Hessian itself on the first, untimed call and replays it: NOTE [ Recorded Hessians ])"""
    import cad
    W, x = cad.tensor(d["W"]), cad.tensor(d["x"])
    tape = cad.record(lambda x: w_transforms.w7_g(W, x, cad), x)
    return lambda: tape.hessian(x)


CASES = [
    Case("W9", "W1 replayed", data=dict, tol=1e-9,
         impls={"hand": _one_call(w_scalar.w1_hand), "torch": _one_call(w_scalar.w1_torch),
                "torch.jit": w1_torch_jit, "torch.compile": w1_torch_compile,
                "jax.jit": w1_jax_jit, "cad.eager": _one_call(w_scalar.w1_cad),
                "cad": w1_cad},
         note="W9: time per call (forward + backward; W3: + the SGD update).  cad = "
              "cad.record once in the setup, then tape.grad (W1, W2) or "
              "tape.value_and_grad + an in-place numpy update (W3) per call; cad.eager = "
              "cad without recording (as W1-W3); torch.jit = torch.jit.trace of the "
              "forward, eager backward; torch.compile = torch.compile of torch.func.grad "
              "(W3: of the whole step, torch.func.grad_and_value + update), jax.jit = "
              "jax.jit of jax.grad (W3: of the whole step), both compiled by the untimed "
              "warm-up call (its time is warmup_s in the JSON)."),
    Case("W9", "W2 replayed", data=w_scalar.w2_data, tol=1e-9,
         impls={"hand": w_scalar.w2_scalar_hand, "torch": w_scalar.w2_scalar_torch,
                "torch.jit": w2_torch_jit, "torch.compile": w2_torch_compile,
                "jax.jit": w2_jax_jit, "cad.eager": w_scalar.w2_scalar_cad, "cad": w2_cad},
         note="W9 W2: cad, cad.eager and jax.jit run the seed as written; torch, torch.jit "
              "and torch.compile run its out-of-place form (as in W2)."),
    Case("W9", "W3 replayed", data=w_mlp.data, tol=1e-9,
         impls={"hand": w_mlp.hand, "torch": w_mlp.torch_, "torch.jit": w3_torch_jit,
                "torch.compile": w3_torch_compile, "jax.jit": w_mlp._jax(True),
                "cad.eager": w_mlp.cad_, "cad": w3_cad}),
    Case("W9", "W7 hessian replayed", data=w_transforms._data(w_transforms.N7, 7), tol=1e-9,
         impls={"hand": w_transforms.w7_hand, "torch": w_transforms.w7_torch,
                "jax.jit": w_transforms._w7_jax(True), "cad.eager": w_transforms.w7_cad,
                "cad": w7_cad_tape},
         note="W9 W7: cad = tape.hessian of a tape of W7's function recorded once (the "
              "Hessian tape recorded by the untimed warm-up call, then replayed); cad.eager "
              "= cad.hessian; jax.jit = jax.jit(jax.hessian), compiled by the warm-up."),
]
