"""A user's script over cad's public API, as the README and the docs use it:
tests/test_stubs.py runs ``mypy --strict`` on it (and runs it), so a typed user
gets no "call to untyped function" errors and the types say what the calls return."""
from __future__ import annotations

import os
import tempfile
from typing import Any, Callable

import numpy as np

import cad
import cad.scipy.special as sc
import cad.scipy.stats as st


def loss(p: dict[str, cad.Tensor], xi: cad.Tensor, yi: cad.Tensor) -> cad.Tensor:
    return (cad.dot(p["w"], xi) + p["b"] - yi) ** 2


def cube_sum(x: cad.Tensor) -> cad.Tensor:
    return (x ** 3).sum()


def main(tmp: str) -> None:
    # tensors and ops
    x: cad.Tensor = cad.tensor([1.0, 2.0], requires_grad=True)
    t = cad.tensor([2.0, 3.0], requires_grad=True)
    y = cad.randn(2)
    z = cad.zeros(2, 3, dtype=cad.float32)
    e = cad.eye(3) + cad.ones(3, 3) * 2.0 - cad.full((3, 3), 0.5)
    a = cad.arange(6).reshape(2, 3) @ cad.linspace(0.0, 1.0, 3)
    f = cad.sum((x * t - y) ** 2) ** 0.5
    f2 = sum((x * t - y) ** 2) ** 0.5   # Python's sum over a tensor's rows (the README's)
    s: cad.Tensor = cad.sin(x) * cad.exp(t) + cad.where(x > 1.0, x, t)
    m: cad.Tensor = cad.mean(s, axis=0) + s.sum() + cad.maximum(x, 0.0).max()
    shape: tuple[int, ...] = z.shape
    arr: np.ndarray = e.numpy()
    val: float = float(a.sum())
    parts: list[cad.Tensor] = cad.split(cad.arange(6.0), 3)

    # reverse mode on the tape
    f.backward()
    g: cad.Tensor | None = x.grad
    gx, gt = cad.autograd.grad(cad.sum(x * t), inputs=(x, t))
    cad.autograd.backward([m])
    with cad.no_grad():
        w = x * 2

    # the transforms
    d3: Callable[..., Any] = cad.grad(cad.grad(lambda u: u ** 3))
    d3(2.0)
    v, gr = cad.value_and_grad(cube_sum)(cad.ones(3))
    J = cad.jacobian(lambda u: u ** 3, cad.ones(3))
    H = cad.hessian(cube_sum, cad.ones(3))
    out, tan = cad.jvp(lambda u: cad.sin(u) * u, (x,), (cad.ones(2),))
    out2, pullback = cad.vjp(cad.sin, x)
    (ct,) = pullback(cad.ones(2))
    params = {"w": cad.randn(3, requires_grad=True), "b": cad.tensor(0.5, requires_grad=True)}
    per_ex = cad.vmap(cad.grad(loss), in_dims=(None, 0, 0))(params, cad.randn(8, 3), cad.randn(8))
    batched = cad.vmap(cad.vmap(cad.dot))(cad.ones(3, 2, 5), cad.ones(3, 2, 5))
    leaves = cad.tree_leaves(per_ex)
    doubled = cad.tree_map(lambda u: u * 2, params)

    # record once, replay
    tape = cad.record(lambda u, w2: (cad.sin(u) * w2).sum(), x, t)
    r = tape(x, t)
    tg = tape.grad(x, t)
    th = tape.hessian(x, t)
    path = os.path.join(tmp, "f.cad")
    cad.save(tape, path)
    back = cad.load(path)

    # optimizers, a schedule, data
    opt = cad.optim.Adam(list(params.values()), lr=1e-2)
    sched = cad.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=10)
    ds = cad.data.TensorDataset(np.random.rand(16, 3), np.random.rand(16))
    loader = cad.data.DataLoader(ds, batch_size=4, shuffle=True, seed=0)
    for xb, yb in loader:
        opt.zero_grad()
        cad.sum(loss(params, xb[0], yb[0])).backward()
        opt.step()
        sched.step()
    lr: list[float] = sched.get_last_lr()
    init, update = cad.optim.adam(lr=1e-3)
    state = init(params)
    updates, state = update(cad.grad(loss)(params, cad.ones(3), cad.tensor(1.0)), state, params)
    params = cad.optim.apply_updates(params, updates)
    cad.save({"params": params, "opt": opt.state_dict(), "epoch": 3}, os.path.join(tmp, "c.safetensors"))
    ck = cad.load(os.path.join(tmp, "c.safetensors"))
    opt.load_state_dict(ck["opt"])

    # linalg, scipy, interop
    A = cad.tensor(np.eye(3) * 2.0, requires_grad=True)
    sol: cad.Tensor = cad.linalg.solve(A, cad.ones(3))
    ld = cad.linalg.slogdet(A)
    det: cad.Tensor = cad.linalg.det(A) + cad.linalg.inv(A).sum() + cad.linalg.norm(A)
    sp: cad.Tensor = sc.gammaln(x) + sc.erf(x) + sc.logsumexp(x)
    lp: cad.Tensor = st.norm.logpdf(x, loc=0.0, scale=1.0)
    dl: cad.Tensor = cad.from_dlpack(np.arange(3.0))
    # what the types say is what the values are
    assert shape == (2, 3) and arr.shape == (3, 3) and len(parts) == 3 and g is not None
    for v_ in (f, f2, s, m, gx, gt, w, v, gr, J, H, out, tan, out2, ct, r, th, sol, det, sp, lp, dl):
        assert isinstance(v_, cad.Tensor), type(v_)
    assert batched.shape == (3, 2) and len(leaves) == 2 and set(doubled) == {"w", "b"}
    assert len(tg) == 2 and isinstance(back, cad.StaticTape) and len(lr) == 1 and len(ld) == 2
    assert val == float(a.sum()) and z.dtype == cad.float32


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as d:
        main(d)
