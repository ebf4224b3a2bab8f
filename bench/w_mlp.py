"""W3: one SGD training step of an MLP 32-64-64-10 on a batch of 64 (float64).

tanh activations, cross-entropy with integer labels (mean over the batch),
forward + backward + update of W1, b1, W2, b2, W3, b3.  Each timed call is one
step; the parameters keep training from call to call.
"""

import numpy as np

from .harness import Case

SIZES = [32, 64, 64, 10]
BATCH = 64
LR = 0.1


def data():
    rng = np.random.default_rng(3)
    params = []
    for n_in, n_out in zip(SIZES[:-1], SIZES[1:]):
        params.append(rng.standard_normal((n_in, n_out)) / np.sqrt(n_in))
        params.append(np.zeros(n_out))
    X = rng.standard_normal((BATCH, SIZES[0]))
    labels = rng.integers(0, SIZES[-1], BATCH)  # int64
    return {"params": params, "X": X, "labels": labels}


def hand(d):
    """numpy, the backward pass written by hand, in-place update."""
    W1, b1, W2, b2, W3, b3 = params = [p.copy() for p in d["params"]]
    X, labels = d["X"], d["labels"]
    rows = np.arange(BATCH)

    def step():
        h1 = np.tanh(X @ W1 + b1)
        h2 = np.tanh(h1 @ W2 + b2)
        z = h2 @ W3 + b3
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        s = e.sum(axis=1, keepdims=True)
        loss = (np.log(s[:, 0]) - z[rows, labels]).mean()
        dz = e / s  # softmax
        dz[rows, labels] -= 1.0
        dz /= BATCH
        dh2 = (dz @ W3.T) * (1.0 - h2 * h2)
        dh1 = (dh2 @ W2.T) * (1.0 - h1 * h1)
        grads = [X.T @ dh1, dh1.sum(0), h1.T @ dh2, dh2.sum(0), h2.T @ dz, dz.sum(0)]
        for p, g in zip(params, grads):
            p -= LR * g
        return loss, params
    return step


def torch_(d):
    import torch
    import torch.nn.functional as F
    params = [torch.tensor(p, requires_grad=True) for p in d["params"]]
    X, labels = torch.tensor(d["X"]), torch.tensor(d["labels"])

    def step():
        W1, b1, W2, b2, W3, b3 = params
        h1 = torch.tanh(X @ W1 + b1)
        h2 = torch.tanh(h1 @ W2 + b2)
        loss = F.cross_entropy(h2 @ W3 + b3, labels)
        loss.backward()
        with torch.no_grad():
            for p in params:
                p -= LR * p.grad
                p.grad = None
        return loss, params
    return step


def cad_(d):
    import cad
    params = [cad.tensor(p.copy(), requires_grad=True) for p in d["params"]]
    X, labels = cad.tensor(d["X"]), cad.tensor(d["labels"])

    def step():
        W1, b1, W2, b2, W3, b3 = params
        h1 = cad.tanh(X @ W1 + b1)
        h2 = cad.tanh(h1 @ W2 + b2)
        loss = cad.cross_entropy(h2 @ W3 + b3, labels)
        loss.backward()
        with cad.no_grad():
            for i, p in enumerate(params):
                g = p.grad
                p.grad = None
                p -= LR * g
                params[i] = p  # in case the in-place op rebound the name
        return loss, params
    return step


def autograd_(d):
    import autograd
    import autograd.numpy as anp
    X, labels = d["X"], d["labels"]
    rows = np.arange(BATCH)

    def loss_fn(params):
        W1, b1, W2, b2, W3, b3 = params
        h1 = anp.tanh(anp.dot(X, W1) + b1)
        h2 = anp.tanh(anp.dot(h1, W2) + b2)
        z = anp.dot(h2, W3) + b3
        m = anp.max(z, axis=1, keepdims=True)
        lse = m + anp.log(anp.sum(anp.exp(z - m), axis=1, keepdims=True))
        return anp.mean(lse[:, 0] - z[rows, labels])

    value_and_grad = autograd.value_and_grad(loss_fn)
    params = [p.copy() for p in d["params"]]

    def step():
        loss, grads = value_and_grad(params)
        for p, g in zip(params, grads):
            p -= LR * g
        return loss, params
    return step


def _jax(jit):
    def setup(d):
        import jax
        import jax.numpy as jnp
        X, labels = jnp.asarray(d["X"]), jnp.asarray(d["labels"])

        def loss_fn(params):
            W1, b1, W2, b2, W3, b3 = params
            h1 = jnp.tanh(X @ W1 + b1)
            h2 = jnp.tanh(h1 @ W2 + b2)
            logp = jax.nn.log_softmax(h2 @ W3 + b3)
            return -jnp.mean(jnp.take_along_axis(logp, labels[:, None], axis=1))

        def sgd(params):
            loss, grads = jax.value_and_grad(loss_fn)(params)
            return loss, [p - LR * g for p, g in zip(params, grads)]

        update = jax.jit(sgd) if jit else sgd  # eager: every op dispatched from Python
        state = {"params": [jnp.asarray(p) for p in d["params"]]}

        def step():
            loss, state["params"] = jax.block_until_ready(update(state["params"]))
            return loss, state["params"]
        return step
    return setup


CASES = [
    Case("W3", "MLP 32-64-64-10 step", data=data, tol=1e-9,
         impls={"hand": hand, "torch": torch_, "jax": _jax(False), "jax.jit": _jax(True),
                "autograd": autograd_, "cad": cad_}),
]
