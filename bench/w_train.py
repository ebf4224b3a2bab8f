"""W11: one training epoch of examples/train_mlp.py's model on scikit-learn's digits.

The model: 64 -> 192 (relu) -> 10 logits, softmax cross-entropy, float64; Adam
(lr 1e-2, torch's formulas); batches of 64 over the 1437 training images (22 full
batches and one of 29), each call starting from the same initial parameters and
returning the parameters after the epoch, so that every column is checked against
"hand".  The rows are shuffled once in the setup and the loaders do not shuffle, so
that every implementation sees the same batches in the same order.

- hand: numpy, the forward, backward and Adam written by hand, batches sliced.
- torch: torch.utils.data.DataLoader over a TensorDataset, torch.optim.Adam, eager.
- jax.jit: the whole step (loss, grad, Adam update) under jax.jit (compiled by the
  untimed warm-up, for both batch shapes); optax.adam when installed, else the same
  update written in jax.numpy; batches sliced from device arrays.
- cad: cad.data.DataLoader over a TensorDataset, cad.optim.Adam, eager
  (zero_grad, loss.backward(), opt.step()).

Without scikit-learn the data are random arrays of the digits' shapes (the timing is
the same; the case note says which).
"""

import numpy as np

from .harness import Case

BATCH = 64
HIDDEN = 192
LR = 1e-2
BETAS = (0.9, 0.999)
EPS = 1e-8
KEYS = ("W0", "b0", "W1", "b1")


def data(seed=0):
    def make():
        try:
            from sklearn.datasets import load_digits
            from sklearn.model_selection import train_test_split
            d = load_digits()
            x, _, y, _ = train_test_split(d.data / 16.0, d.target, test_size=0.2, random_state=0,
                                          stratify=d.target)
            source = "digits"
        except ImportError:
            rng0 = np.random.default_rng(1)
            x, y = rng0.random((1437, 64)), rng0.integers(0, 10, 1437)
            source = "random arrays of the digits' shapes (no scikit-learn)"
        rng = np.random.default_rng(seed)
        perm = rng.permutation(len(x))
        x = np.ascontiguousarray(x[perm], dtype=np.float64)
        y = np.ascontiguousarray(y[perm], dtype=np.int64)
        params = {"W0": rng.standard_normal((64, HIDDEN)) * np.sqrt(2.0 / 64), "b0": np.zeros(HIDDEN),
                  "W1": rng.standard_normal((HIDDEN, 10)) * np.sqrt(2.0 / HIDDEN), "b1": np.zeros(10)}
        return {"x": x, "y": y, "params": params, "source": source}
    return make


def _batches(n):
    return [(i, min(i + BATCH, n)) for i in range(0, n, BATCH)]


# ---------------------------------------------------------------------------
# hand: numpy


def hand(d):
    x, y = d["x"], d["y"]
    spans = _batches(len(x))
    b1, b2 = BETAS

    def epoch():
        p = {k: v.copy() for k, v in d["params"].items()}
        m = {k: np.zeros_like(v) for k, v in p.items()}
        v2 = {k: np.zeros_like(v) for k, v in p.items()}
        for t, (i, j) in enumerate(spans, start=1):
            xb, yb = x[i:j], y[i:j]
            n = j - i
            z = xb @ p["W0"] + p["b0"]
            h = np.maximum(z, 0.0)
            logits = h @ p["W1"] + p["b1"]
            e = np.exp(logits - logits.max(axis=1, keepdims=True))
            s = e / e.sum(axis=1, keepdims=True)
            s[np.arange(n), yb] -= 1.0
            dl = s / n                                    # d mean xent / d logits
            dh = (dl @ p["W1"].T) * (z > 0)
            g = {"W0": xb.T @ dh, "b0": dh.sum(0), "W1": h.T @ dl, "b1": dl.sum(0)}
            c1, c2 = 1 - b1 ** t, 1 - b2 ** t
            for k in KEYS:
                m[k] = b1 * m[k] + (1 - b1) * g[k]
                v2[k] = b2 * v2[k] + (1 - b2) * g[k] * g[k]
                p[k] -= (LR / c1) * m[k] / (np.sqrt(v2[k]) / np.sqrt(c2) + EPS)
        return tuple(p[k] for k in KEYS)
    return epoch


# ---------------------------------------------------------------------------
# torch


def torch_epoch(d):
    import torch
    from torch.utils.data import DataLoader, TensorDataset
    loader = DataLoader(TensorDataset(torch.tensor(d["x"]), torch.tensor(d["y"])), batch_size=BATCH,
                        shuffle=False)

    def epoch():
        p = {k: torch.tensor(v, requires_grad=True) for k, v in d["params"].items()}
        opt = torch.optim.Adam([p[k] for k in KEYS], lr=LR, betas=BETAS, eps=EPS)
        for xb, yb in loader:
            opt.zero_grad()
            h = torch.relu(xb @ p["W0"] + p["b0"])
            loss = torch.nn.functional.cross_entropy(h @ p["W1"] + p["b1"], yb)
            loss.backward()
            opt.step()
        return tuple(p[k].detach() for k in KEYS)
    return epoch


# ---------------------------------------------------------------------------
# jax


def jax_jit(d):
    import jax
    import jax.numpy as jnp
    try:
        import optax
        tx = optax.adam(LR, b1=BETAS[0], b2=BETAS[1], eps=EPS)
        init, update = tx.init, tx.update
        apply = optax.apply_updates
    except ImportError:
        init, update, apply = _jax_adam(jnp)

    def loss(p, xb, yb):
        h = jax.nn.relu(xb @ p["W0"] + p["b0"])
        logits = h @ p["W1"] + p["b1"]
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), yb[:, None], axis=1))

    @jax.jit
    def step(p, st, xb, yb):
        g = jax.grad(loss)(p, xb, yb)
        u, st = update(g, st, p)
        return apply(p, u), st

    x, y = jnp.asarray(d["x"]), jnp.asarray(d["y"])
    batches = [(x[i:j], y[i:j]) for i, j in _batches(len(d["x"]))]
    p0 = {k: jnp.asarray(v) for k, v in d["params"].items()}

    def epoch():
        p, st = p0, init(p0)
        for xb, yb in batches:
            p, st = step(p, st, xb, yb)
        return tuple(jax.block_until_ready(p[k]) for k in KEYS)
    return epoch


def _jax_adam(jnp):
    """optax.adam's update (torch's formulas), for when optax is not installed"""
    import jax
    b1, b2 = BETAS

    def init(p):
        z = jax.tree_util.tree_map(jnp.zeros_like, p)
        return (jnp.zeros((), jnp.int64), z, z)

    def update(g, st, p=None):
        t, m, v = st
        t = t + 1
        m = jax.tree_util.tree_map(lambda a, b: b1 * a + (1 - b1) * b, m, g)
        v = jax.tree_util.tree_map(lambda a, b: b2 * a + (1 - b2) * b * b, v, g)
        c1, c2 = 1 - b1 ** t, 1 - b2 ** t
        u = jax.tree_util.tree_map(lambda a, b: -LR * (a / c1) / (jnp.sqrt(b / c2) + EPS), m, v)
        return u, (t, m, v)

    return init, update, lambda p, u: jax.tree_util.tree_map(lambda a, b: a + b, p, u)


# ---------------------------------------------------------------------------
# cad


def cad_epoch(d):
    import cad
    loader = cad.data.DataLoader(cad.data.TensorDataset(d["x"], d["y"]), batch_size=BATCH, shuffle=False)

    def epoch():
        p = {k: cad.tensor(v, requires_grad=True) for k, v in d["params"].items()}
        opt = cad.optim.Adam([p[k] for k in KEYS], lr=LR, betas=BETAS, eps=EPS)
        for xb, yb in loader:
            opt.zero_grad()
            h = cad.relu(xb @ p["W0"] + p["b0"])
            loss = cad.cross_entropy(h @ p["W1"] + p["b1"], yb)
            loss.backward()
            opt.step()
        return tuple(p[k].detach() for k in KEYS)
    epoch.loader = loader
    return epoch


def loader_stats(epochs=5):
    """cad's loader.stats over a few epochs of the cad column (for the closing note)"""
    fn = cad_epoch(data()())
    for _ in range(epochs):
        fn()
    return fn.loader.stats


CASES = [
    Case("W11", "one epoch, MLP on digits", data=data(), tol=1e-6,
         impls={"hand": hand, "torch": torch_epoch, "jax.jit": jax_jit, "cad": cad_epoch},
         note="W11: one epoch (23 batches of 64 of the 1437 training digits) of "
              "examples/train_mlp.py's 64-192-10 relu MLP, float64, softmax cross-entropy, Adam "
              "lr 1e-2, from the same initial parameters each call; torch = "
              "torch.utils.data.DataLoader + torch.optim.Adam (eager), jax.jit = the step "
              "(grad + optax.adam) jitted, batches sliced, cad = cad.data.DataLoader + "
              "cad.optim.Adam (eager); hand = numpy with the backward and Adam by hand."),
]
