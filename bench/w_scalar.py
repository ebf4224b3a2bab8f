"""W1: a chain of 1000 scalar ops.  W2: the seed's scalar program, and its tensor form.

These measure per-op overhead: the time to record one op on the tape and to
sweep it back, where PyTorch and JAX pay microseconds per op.
"""

import math

import numpy as np

from .harness import Backward, Case

# ---------------------------------------------------------------------------
# W1: y = x; 1000 times: y + c, y * c, sin(y) in turn; gradient w.r.t. x

N_OPS = 1000
C = 0.999  # a Python float, on the right of + and *
X0 = 0.5


def chain(x, sin, n=N_OPS):
    """W1's program, on whatever scalar type ``x`` is."""
    y = x
    for i in range(n):
        k = i % 3
        if k == 0:
            y = y + C
        elif k == 1:
            y = y * C
        else:
            y = sin(y)
    return y


def tape_forward(x, n=N_OPS):
    """The floor: Python floats and a list tape of (op, inputs, local derivatives) records.

    Value k+1 is the output of record k; value 0 is x.
    """
    values = [x]
    tape = []
    y = 0  # index of the current value
    for i in range(n):
        v = values[y]
        k = i % 3
        if k == 0:
            values.append(v + C)
            tape.append(("add", (y,), (1.0,)))
        elif k == 1:
            values.append(v * C)
            tape.append(("mul", (y,), (C,)))
        else:
            values.append(math.sin(v))
            tape.append(("sin", (y,), (math.cos(v),)))
        y = len(values) - 1
    return values, tape


def tape_backward(values, tape):
    """Reverse sweep over the list tape; returns d(last value)/d(value 0)."""
    adjoint = [0.0] * len(values)
    adjoint[-1] = 1.0
    for k in range(len(tape) - 1, -1, -1):
        _, inputs, derivatives = tape[k]
        g = adjoint[k + 1]
        for i, d in zip(inputs, derivatives):
            adjoint[i] += g * d
    return adjoint[0]


def w1_hand(data):
    n = data.get("n", N_OPS)

    def forward():
        values, tape = tape_forward(X0, n)
        return Backward(lambda: tape_backward(values, tape))
    return forward


def w1_torch(data):
    import torch
    x = torch.tensor(X0, dtype=torch.float64, requires_grad=True)

    def forward():
        x.grad = None
        y = chain(x, torch.sin)

        def backward():
            y.backward()
            return x.grad
        return Backward(backward)
    return forward


def w1_cad(data):
    import cad
    x = cad.tensor(X0, requires_grad=True)
    n = data.get("n", N_OPS)

    def forward():
        x.grad = None
        y = chain(x, cad.sin, n)

        def backward():
            y.backward()
            return x.grad
        return Backward(backward)
    return forward


def w1_autograd(data):
    import autograd
    import autograd.numpy as anp
    g = autograd.grad(lambda x: chain(x, anp.sin))
    return lambda: g(X0)


def w1_jax(data):
    import jax
    import jax.numpy as jnp
    g = jax.grad(lambda x: chain(x, jnp.sin))  # eager: not jitted
    x = jnp.asarray(X0, dtype=jnp.float64)
    return lambda: g(x).block_until_ready()


# ---------------------------------------------------------------------------
# W2: the seed's program; x, t require grad, y and b are data


def seed_program(x, t, y, b, sqrt):
    """The seed, as written (in-place operators on list elements, ``sum`` shadowed)."""
    sum = 0
    l = [0, 0, 0, 0]  # noqa: E741
    for i in range(0, 4):
        l[i] += t[i] * x[i]
    for i in range(0, 4):
        l[i] -= y[i] - b
    for i in range(0, 4):
        l[i] *= l[i]
    for i in range(0, 4):
        sum += l[i]
    l = sqrt(sum)  # noqa: E741
    return l


def seed_program_out_of_place(x, t, y, b, sqrt):
    """The seed with ``a op= v`` written ``a = a op v``: torch's backward raises on the
    in-place ``l[i] *= l[i]`` (mul saved l[i] for backward, then it was modified)."""
    sum = 0
    l = [0, 0, 0, 0]  # noqa: E741
    for i in range(0, 4):
        l[i] = l[i] + t[i] * x[i]
    for i in range(0, 4):
        l[i] = l[i] - (y[i] - b)
    for i in range(0, 4):
        l[i] = l[i] * l[i]
    for i in range(0, 4):
        sum = sum + l[i]
    l = sqrt(sum)  # noqa: E741
    return l


def tensor_form(x, t, y, b, sqrt):
    l = (t * x - (y - b)) ** 2  # noqa: E741
    return sqrt(l.sum())


def w2_data():
    rng = np.random.default_rng(2)
    return {"x": rng.standard_normal(4), "t": rng.standard_normal(4),
            "y": rng.standard_normal(4), "b": 0.5}


def w2_scalar_hand(d):
    """Python floats, the seed's loops, and the derivative written by hand."""
    x, t, y, b = d["x"].tolist(), d["t"].tolist(), d["y"].tolist(), d["b"]

    def step():
        r = [t[i] * x[i] - (y[i] - b) for i in range(4)]
        s = 0.0
        for v in r:
            s += v * v
        f = math.sqrt(s)
        gx = [t[i] * r[i] / f for i in range(4)]
        gt = [x[i] * r[i] / f for i in range(4)]
        return gx, gt
    return step


def w2_scalar_torch(d):
    import torch
    x = torch.tensor(d["x"], requires_grad=True)
    t = torch.tensor(d["t"], requires_grad=True)
    y, b = torch.tensor(d["y"]), d["b"]

    def step():
        f = seed_program_out_of_place(x, t, y, b, torch.sqrt)
        return torch.autograd.grad(f, (x, t))
    return step


def w2_scalar_cad(d):
    import cad
    x = cad.tensor(d["x"], requires_grad=True)
    t = cad.tensor(d["t"], requires_grad=True)
    y, b = cad.tensor(d["y"]), d["b"]

    def step():
        f = seed_program(x, t, y, b, cad.sqrt)
        return cad.autograd.grad(f, (x, t))
    return step


def w2_scalar_autograd(d):
    # autograd's boxes have no in-place operators: Python runs `a op= v` as
    # `a = a op v`, so the program as written is the out-of-place form here.
    import autograd
    import autograd.numpy as anp
    y, b = d["y"], d["b"]
    g = autograd.grad(lambda x, t: seed_program(x, t, y, b, anp.sqrt), (0, 1))
    x, t = d["x"].copy(), d["t"].copy()
    return lambda: g(x, t)


def w2_scalar_jax(d):
    # jax arrays are immutable: as for autograd, `a op= v` runs as `a = a op v`.
    import jax
    import jax.numpy as jnp
    y, b = jnp.asarray(d["y"]), d["b"]
    g = jax.grad(lambda x, t: seed_program(x, t, y, b, jnp.sqrt), argnums=(0, 1))
    x, t = jnp.asarray(d["x"]), jnp.asarray(d["t"])
    return lambda: jax.block_until_ready(g(x, t))


def w2_tensor_hand(d):
    x, t, y, b = d["x"].copy(), d["t"].copy(), d["y"].copy(), d["b"]

    def step():
        r = t * x - (y - b)
        f = np.sqrt((r * r).sum())
        g = r / f
        return g * t, g * x
    return step


def w2_tensor_torch(d):
    import torch
    x = torch.tensor(d["x"], requires_grad=True)
    t = torch.tensor(d["t"], requires_grad=True)
    y, b = torch.tensor(d["y"]), d["b"]

    def step():
        return torch.autograd.grad(tensor_form(x, t, y, b, torch.sqrt), (x, t))
    return step


def w2_tensor_cad(d):
    import cad
    x = cad.tensor(d["x"], requires_grad=True)
    t = cad.tensor(d["t"], requires_grad=True)
    y, b = cad.tensor(d["y"]), d["b"]

    def step():
        return cad.autograd.grad(tensor_form(x, t, y, b, cad.sqrt), (x, t))
    return step


def w2_tensor_autograd(d):
    import autograd
    import autograd.numpy as anp
    y, b = d["y"], d["b"]
    g = autograd.grad(lambda x, t: tensor_form(x, t, y, b, anp.sqrt), (0, 1))
    x, t = d["x"].copy(), d["t"].copy()
    return lambda: g(x, t)


def _w2_tensor_jax(jit):
    def setup(d):
        import jax
        import jax.numpy as jnp
        y, b = jnp.asarray(d["y"]), d["b"]
        g = jax.grad(lambda x, t: tensor_form(x, t, y, b, jnp.sqrt), argnums=(0, 1))
        if jit:
            g = jax.jit(g)
        x, t = jnp.asarray(d["x"]), jnp.asarray(d["t"])
        return lambda: jax.block_until_ready(g(x, t))
    return setup


# ---------------------------------------------------------------------------
# W12 (issue 14): forward mode and second order on W1's chain.  jvp: W1's value and
# its tangent for one tangent (1.0); grad of grad: d2/dx2 of the chain.  "hand" is
# the tangent pushed through W1's program in Python floats (dual numbers), and for
# the second derivative (value, first, second) pushed together.


def chain_dual(x, n=N_OPS):
    """W1's program on a dual number: (its value, its derivative at x), Python floats"""
    v, t = x, 1.0
    for i in range(n):
        k = i % 3
        if k == 0:
            v = v + C
        elif k == 1:
            v, t = v * C, t * C
        else:
            v, t = math.sin(v), t * math.cos(v)
    return v, t


def w12_jvp_hand(data):
    return lambda: chain_dual(X0)[1]


def w12_gg_hand(data):
    def run():
        v, d1, d2 = X0, 1.0, 0.0
        for i in range(N_OPS):
            k = i % 3
            if k == 0:
                v = v + C
            elif k == 1:
                v, d1, d2 = v * C, d1 * C, d2 * C
            else:
                s, c = math.sin(v), math.cos(v)
                v, d1, d2 = s, c * d1, c * d2 - s * d1 * d1
        return d2
    return run


def _f(mod_sin):
    return lambda x: chain(x, mod_sin)


def w12_jvp_cad(data):
    import cad
    x, t = cad.tensor(X0), cad.tensor(1.0)
    f = _f(cad.sin)
    return lambda: float(cad.jvp(f, (x,), (t,))[1])


def w12_jvp_torch(data):
    import torch
    from torch.func import jvp
    x, t = torch.tensor(X0, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64)
    f = _f(torch.sin)
    return lambda: float(jvp(f, (x,), (t,))[1])


def _w12_jvp_jax(jit):
    def setup(data):
        import jax
        import jax.numpy as jnp
        f = _f(jnp.sin)
        g = (lambda x, t: jax.jvp(f, (x,), (t,))[1])
        if jit:
            g = jax.jit(g)
        x, t = jnp.asarray(X0, dtype=jnp.float64), jnp.asarray(1.0, dtype=jnp.float64)
        return lambda: float(g(x, t))
    return setup


def w12_gg_cad(data):
    import cad
    x = cad.tensor(X0)
    g = cad.grad(cad.grad(_f(cad.sin)))
    return lambda: float(g(x))


def w12_gg_torch(data):
    import torch
    from torch.func import grad
    x = torch.tensor(X0, dtype=torch.float64)
    g = grad(grad(_f(torch.sin)))
    return lambda: float(g(x))


def w12_hvp_tape_cad(data):
    import cad
    x = cad.tensor(X0)
    tape = cad.record(_f(cad.sin), x)
    return lambda: float(tape.hvp(x, 1.0))


def _w12_gg_jax(jit):
    def setup(data):
        import jax
        import jax.numpy as jnp
        g = jax.grad(jax.grad(_f(jnp.sin)))
        if jit:
            g = jax.jit(g)
        x = jnp.asarray(X0, dtype=jnp.float64)
        return lambda: float(g(x))
    return setup


# W1 at 10^3 .. 10^6 ops: cad's per-op time as the tape grows, and the bytes its tape
# holds per op (issue 14: at most 64 bytes, at most 1.2x the per-op time of 10^3 ops)

W1_SIZES = (10 ** 3, 10 ** 4, 10 ** 5, 10 ** 6)


def tape_bytes_per_op(n):
    """bytes cad's tape of W1's n-op chain holds per op (its arrays' allocated size,
    measured after the forward pass); None without cad"""
    try:
        import cad
        from cad._core import _engine as E
    except ImportError:
        return None
    x = cad.tensor(X0, requires_grad=True)
    y = chain(x, cad.sin, n)
    tape = E.handle_of(y)[0]
    return tape.nbytes / n, tape.nrecs, tape.nbufs


def _w1_sized(n):
    case = Case("W1", f"{n} scalar ops, tape size", data=None, per=n, per_name="op", tol=1e-9,
                impls={"hand": w1_hand, "cad": w1_cad})

    def data():
        got = tape_bytes_per_op(n)
        if got is not None:
            case.note = (f"W1 {n} ops, tape size: cad's tape holds {got[0]:.0f} bytes per op "
                         f"({got[1]} records, {got[2]} values; the arrays' allocated size after "
                         "the forward pass)")
        return {"n": n}
    case.data = data
    return case


CASES = [
    Case("W1", "1000 scalar ops", data=dict, per=N_OPS, per_name="op", tol=1e-9,
         impls={"hand": w1_hand, "torch": w1_torch, "jax": w1_jax,
                "autograd": w1_autograd, "cad": w1_cad},
         note="W1: jax (eager jax.grad) and autograd run forward+backward in one call: "
              "fwd+bwd row only."),
    *[_w1_sized(n) for n in W1_SIZES],
    Case("W2", "seed, scalar", data=w2_data, tol=1e-9,
         impls={"hand": w2_scalar_hand, "torch": w2_scalar_torch, "jax": w2_scalar_jax,
                "autograd": w2_scalar_autograd, "cad": w2_scalar_cad},
         note="W2 seed, scalar: cad, jax, autograd run the seed as written; torch runs the "
              "out-of-place form (its backward raises on the in-place l[i] *= l[i])."),
    Case("W12", "jvp of W1 (1000 ops)", data=dict, per=N_OPS, per_name="op", tol=1e-9,
         impls={"hand": w12_jvp_hand, "torch": w12_jvp_torch, "jax": _w12_jvp_jax(False),
                "jax.jit": _w12_jvp_jax(True), "cad": w12_jvp_cad}),
    Case("W12", "grad(grad) of W1 (1000 ops)", data=dict, per=N_OPS, per_name="op", tol=1e-9,
         impls={"hand": w12_gg_hand, "torch": w12_gg_torch, "jax": _w12_gg_jax(False),
                "jax.jit": _w12_gg_jax(True), "cad": w12_gg_cad}),
    Case("W12", "its tape: tape.hvp of W1 recorded", data=dict, per=N_OPS, per_name="op", tol=1e-9,
         impls={"hand": w12_gg_hand, "jax.jit": _w12_gg_jax(True), "cad": w12_hvp_tape_cad},
         note="W12 tape.hvp: cad records W1 once (cad.record) and runs the forward sweep over "
              "its replayed gradient tape; jax.jit compiles grad(grad(f))."),
    Case("W2", "seed, tensor", data=w2_data, tol=1e-9,
         impls={"hand": w2_tensor_hand, "torch": w2_tensor_torch,
                "jax": _w2_tensor_jax(False), "jax.jit": _w2_tensor_jax(True),
                "autograd": w2_tensor_autograd, "cad": w2_tensor_cad}),
]
