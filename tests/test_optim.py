"""cad.optim: SGD, Adam and AdamW step by step against torch.optim (when installed)
and against their formulas written in numpy; param groups, state_dict round trips,
zero_grad, parameters without gradients, the identity and immutability of updated
parameters (NOTE [ Optimizer steps ] in cad/optim/__init__.py), learning-rate
schedules against torch.optim.lr_scheduler, the functional (optax-style) form
against the stateful one, float32, the CUDA path on the fake device, bad arguments,
and small training loops."""

import numpy as np
import pytest

import cad
from cad.optim import lr_scheduler as S


def _torch():
    return pytest.importorskip("torch")


SHAPES = [(), (3,), (4, 5), (2, 3, 4)]

SGD_CASES = [
    {"lr": 0.1},
    {"lr": 0.1, "momentum": 0.9},
    {"lr": 0.05, "momentum": 0.9, "dampening": 0.3},
    {"lr": 0.1, "momentum": 0.8, "nesterov": True},
    {"lr": 0.1, "weight_decay": 0.05},
    {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.01, "nesterov": True, "maximize": True},
    {"lr": 0.1, "maximize": True},
]
ADAM_CASES = [
    {},
    {"lr": 0.01},
    {"lr": 0.01, "betas": (0.8, 0.99)},
    {"lr": 0.01, "eps": 1e-3},
    {"lr": 0.01, "weight_decay": 0.1},
    {"lr": 0.01, "amsgrad": True},
    {"lr": 0.01, "maximize": True},
    # beta1 < 0.5: lerp's other branch
    {"lr": 0.02, "betas": (0.3, 0.9), "weight_decay": 0.05, "amsgrad": True, "maximize": True},
]
ADAMW_CASES = [{}, {"lr": 0.01, "weight_decay": 0.1}, {"lr": 0.01, "amsgrad": True, "weight_decay": 0.3},
               {"lr": 0.01, "maximize": True}]
CASES = ([("SGD", kw) for kw in SGD_CASES] + [("Adam", kw) for kw in ADAM_CASES]
         + [("AdamW", kw) for kw in ADAMW_CASES])


def _ids(c):
    return c[0] + "-" + ",".join(f"{k}={v}" for k, v in c[1].items())


def _np(x):
    return np.asarray(x.numpy() if isinstance(x, cad.Tensor) else x.detach().numpy())


def _pair(shapes, dtype="float64", seed=0):
    torch = _torch()
    rng = np.random.default_rng(seed)
    vals = [rng.standard_normal(s) for s in shapes]
    cps = [cad.tensor(v, dtype=dtype, requires_grad=True) for v in vals]
    tps = [torch.tensor(v, dtype=getattr(torch, dtype), requires_grad=True) for v in vals]
    return cps, tps, rng


def _set_grads(cps, tps, rng, dtype="float64"):
    torch = _torch()
    for c, t in zip(cps, tps):
        g = rng.standard_normal(c.shape)
        c.grad = cad.tensor(g, dtype=dtype)
        t.grad = torch.tensor(g, dtype=getattr(torch, dtype))


def _close(cps, tps, atol=1e-12, rtol=0.0):
    for c, t in zip(cps, tps):
        np.testing.assert_allclose(_np(c), _np(t), rtol=rtol, atol=atol)


# ---------------------------------------------------------------- against torch.optim

@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_against_torch_step_by_step(case):
    torch = _torch()
    name, kw = case
    cps, tps, rng = _pair(SHAPES)
    co = getattr(cad.optim, name)(cps, **kw)
    to = getattr(torch.optim, name)(tps, **kw)
    for _ in range(6):
        _set_grads(cps, tps, rng)
        co.step()
        to.step()
        _close(cps, tps)
    # the state too, under torch's names
    sc, st = co.state_dict()["state"], to.state_dict()["state"]
    assert sc.keys() == st.keys()
    for i in st:
        assert sc[i].keys() == st[i].keys()
        for k, v in st[i].items():
            if k == "step":
                assert sc[i][k] == float(v)
            else:
                np.testing.assert_allclose(_np(sc[i][k]), _np(v), rtol=0, atol=1e-12)


def _ref_step(name, kw, p, g, st):
    """the update written from torch.optim's documented formulas, in numpy"""
    lr = kw.get("lr", 1e-3)
    wd = kw.get("weight_decay", 1e-2 if name == "AdamW" else 0.0)
    g = -g if kw.get("maximize") else g
    if name == "SGD":
        mom, damp = kw.get("momentum", 0.0), kw.get("dampening", 0.0)
        g = g + wd * p
        if mom:
            st["b"] = g.copy() if "b" not in st else mom * st["b"] + (1 - damp) * g
            g = g + mom * st["b"] if kw.get("nesterov") else st["b"]
        return p - lr * g
    b1, b2 = kw.get("betas", (0.9, 0.999))
    eps = kw.get("eps", 1e-8)
    if name == "AdamW":
        p = p * (1 - lr * wd)
    else:
        g = g + wd * p
    t = st["t"] = st.get("t", 0) + 1
    st["m"] = b1 * st.get("m", 0.0) + (1 - b1) * g
    st["v"] = b2 * st.get("v", 0.0) + (1 - b2) * g * g
    v = st["v"]
    if kw.get("amsgrad"):
        v = st["vmax"] = np.maximum(st.get("vmax", 0.0), v)
    mhat, vhat = st["m"] / (1 - b1 ** t), v / (1 - b2 ** t)
    return p - lr * mhat / (np.sqrt(vhat) + eps)


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_against_formulas(case):
    """the same without torch: numpy written from the formulas (eps inside the bias
    correction differs from torch's rounding only)"""
    name, kw = case
    rng = np.random.default_rng(1)
    vals = [rng.standard_normal(s) for s in SHAPES]
    ps = [cad.tensor(v, requires_grad=True) for v in vals]
    opt = getattr(cad.optim, name)(ps, **kw)
    refs, sts = [v.copy() for v in vals], [{} for _ in vals]
    for _ in range(5):
        for k, p in enumerate(ps):
            g = rng.standard_normal(p.shape)
            p.grad = cad.tensor(g)
            refs[k] = _ref_step(name, kw, refs[k], g, sts[k])
        opt.step()
        for p, r in zip(ps, refs):
            np.testing.assert_allclose(_np(p), r, rtol=1e-10, atol=1e-12)


def test_param_groups_with_their_own_settings():
    torch = _torch()
    cps, tps, rng = _pair([(3,), (2, 2), (5,), ()])
    kw = lambda ps: [{"params": ps[:2]}, {"params": ps[2:], "lr": 0.3, "momentum": 0.5}]
    co = cad.optim.SGD(kw(cps), lr=0.1, momentum=0.9)
    to = torch.optim.SGD(kw(tps), lr=0.1, momentum=0.9)
    assert [g["lr"] for g in co.param_groups] == [0.1, 0.3]
    assert co.param_groups[1]["momentum"] == 0.5 and co.param_groups[0]["momentum"] == 0.9
    for step in range(5):
        if step == 3:   # a mutable lr, changed between steps
            co.param_groups[0]["lr"] = 0.02
            to.param_groups[0]["lr"] = 0.02
        _set_grads(cps, tps, rng)
        co.step()
        to.step()
        _close(cps, tps)


def test_add_param_group():
    torch = _torch()
    cps, tps, rng = _pair([(3,), (4,)])
    co = cad.optim.Adam(cps[:1], lr=0.1)
    to = torch.optim.Adam(tps[:1], lr=0.1)
    for step in range(4):
        if step == 2:
            co.add_param_group({"params": [cps[1]], "lr": 0.05, "amsgrad": True})
            to.add_param_group({"params": [tps[1]], "lr": 0.05, "amsgrad": True})
        _set_grads(cps, tps, rng)
        co.step()
        to.step()
        _close(cps, tps)
    with pytest.raises(ValueError, match="more than one parameter group"):
        co.add_param_group({"params": [cps[0]]})


def test_params_as_a_pytree_and_a_generator():
    params = {"w": cad.ones(3, requires_grad=True), "b": [cad.zeros((), requires_grad=True)]}
    opt = cad.optim.SGD(params, lr=0.5)
    assert len(opt.param_groups[0]["params"]) == 2
    for p in cad.tree_leaves(params):
        p.grad = cad.ones(p.shape)
    opt.step()
    np.testing.assert_allclose(params["w"].numpy(), [0.5] * 3)
    assert params["b"][0].item() == -0.5
    opt2 = cad.optim.SGD((p for p in cad.tree_leaves(params)), lr=0.1)
    assert opt2.param_groups[0]["params"][0] is cad.tree_leaves(params)[0]
    opt3 = cad.optim.Adam(({"params": [p], "lr": 0.1 * (k + 1)}
                           for k, p in enumerate(cad.tree_leaves(params))), fused=True)
    assert [g["lr"] for g in opt3.param_groups] == [0.1, 0.2]


# ---------------------------------------------------------------- state_dict

@pytest.mark.parametrize("case", [("SGD", {"lr": 0.1, "momentum": 0.9, "nesterov": True}),
                                  ("Adam", {"lr": 0.05, "amsgrad": True, "weight_decay": 0.1}),
                                  ("AdamW", {"lr": 0.05})], ids=_ids)
def test_state_dict_round_trip_continues_exactly(case):
    name, kw = case
    rng = np.random.default_rng(3)
    vals = [rng.standard_normal(s) for s in SHAPES]
    grads = [[rng.standard_normal(s) for s in SHAPES] for _ in range(6)]

    def run(ps, opt, steps):
        for gs in steps:
            for p, g in zip(ps, gs):
                p.grad = cad.tensor(g)
            opt.step()

    a = [cad.tensor(v, requires_grad=True) for v in vals]
    oa = getattr(cad.optim, name)([{"params": a[:2]}, {"params": a[2:], "lr": 0.01}], **kw)
    run(a, oa, grads)                   # uninterrupted
    b = [cad.tensor(v, requires_grad=True) for v in vals]
    ob = getattr(cad.optim, name)([{"params": b[:2]}, {"params": b[2:], "lr": 0.01}], **kw)
    run(b, ob, grads[:3])
    sd = ob.state_dict()
    assert set(sd) == {"state", "param_groups"}
    assert [g["params"] for g in sd["param_groups"]] == [[0, 1], [2, 3]]
    assert sorted(sd["state"]) == [0, 1, 2, 3]
    # a fresh optimizer on fresh tensors holding the same values
    c = [cad.tensor(p.numpy(), requires_grad=True) for p in b]
    oc = getattr(cad.optim, name)([{"params": c[:2]}, {"params": c[2:]}], lr=123.0)
    oc.load_state_dict(sd)
    assert oc.param_groups[1]["lr"] == 0.01 and oc.param_groups[1]["params"][0] is c[2]
    run(c, oc, grads[3:])
    for x, y in zip(a, c):
        np.testing.assert_array_equal(x.numpy(), y.numpy())
    # the state dict is a snapshot: more steps do not change it
    before = {i: {k: np.array(v.numpy()) if isinstance(v, cad.Tensor) else v for k, v in s.items()}
              for i, s in sd["state"].items()}
    run(b, ob, grads[3:])
    for i, s in sd["state"].items():
        for k, v in s.items():
            np.testing.assert_array_equal(np.asarray(v.numpy() if isinstance(v, cad.Tensor) else v),
                                          before[i][k])


def test_load_state_dict_from_torch_and_string_keys():
    torch = _torch()
    cps, tps, rng = _pair([(3,), (2, 2)])
    to = torch.optim.Adam(tps, lr=0.1, amsgrad=True)
    co = cad.optim.Adam(cps, lr=0.1, amsgrad=True)
    _set_grads(cps, tps, rng)
    to.step()
    co.step()
    sd = to.state_dict()   # torch tensors inside; keys as a JSON round trip would leave them
    sd = {"state": {str(k): {n: (v.numpy() if n != "step" else float(v)) for n, v in s.items()}
                    for k, s in sd["state"].items()},
          "param_groups": [{k: v for k, v in g.items()} for g in sd["param_groups"]]}
    co2 = cad.optim.Adam([cad.tensor(t.detach().numpy(), requires_grad=True) for t in tps])
    co2.load_state_dict(sd)
    for _ in range(3):
        _set_grads(co2.param_groups[0]["params"], tps, rng)
        co2.step()
        to.step()
    _close(co2.param_groups[0]["params"], tps)


def test_load_state_dict_rejects_mismatches():
    p = [cad.ones(3, requires_grad=True), cad.ones(2, requires_grad=True)]
    opt = cad.optim.Adam(p)
    for x in p:
        x.grad = cad.ones(x.shape)
    opt.step()
    sd = opt.state_dict()
    with pytest.raises(ValueError, match="number of parameter groups"):
        cad.optim.Adam([{"params": [p[0]]}, {"params": [p[1]]}]).load_state_dict(sd)
    with pytest.raises(ValueError, match="size"):
        cad.optim.Adam([p[0]]).load_state_dict(sd)
    q = [cad.ones(3, requires_grad=True), cad.ones(5, requires_grad=True)]
    o2 = cad.optim.Adam(q)
    with pytest.raises(ValueError, match="shape"):
        o2.load_state_dict(sd)
    assert o2.state == {}   # nothing loaded half-way


# ---------------------------------------------------------------- grads, identity, immutability

def test_zero_grad():
    p = cad.ones(3, requires_grad=True)
    opt = cad.optim.SGD([p], lr=0.1)
    (p * p).sum().backward()
    assert p.grad is not None
    opt.zero_grad(set_to_none=False)
    np.testing.assert_array_equal(p.grad.numpy(), np.zeros(3))
    before = p.numpy().copy()
    opt.step()   # a zero gradient: no change (and no error)
    np.testing.assert_array_equal(p.numpy(), before)
    opt.zero_grad()
    assert p.grad is None


def test_params_without_grad_are_skipped():
    a, b = cad.ones(3, requires_grad=True), cad.full((2,), 5.0, requires_grad=True)
    opt = cad.optim.Adam([a, b], lr=0.1)
    a.grad = cad.ones(3)
    va, vb = a._version_counter, b._version_counter
    opt.step()
    assert a._version_counter == va + 1 and b._version_counter == vb
    np.testing.assert_array_equal(b.numpy(), [5.0, 5.0])
    assert list(opt.state_dict()["state"]) == [0]   # no state for b
    b.grad = cad.ones(2)
    a.grad = None
    opt.step()
    st = opt.state_dict()["state"]
    assert st[0]["step"] == 1.0 and st[1]["step"] == 1.0   # per-parameter step counts


def test_parameter_identity_and_leafness_survive_steps():
    w = cad.tensor([1.0, -2.0, 0.5], requires_grad=True)
    s = cad.tensor(2.0, requires_grad=True)   # a 0-d float64 (inline) parameter
    opt = cad.optim.Adam([w, s], lr=0.1)
    ids = (id(w), id(s))
    for _ in range(3):
        opt.zero_grad()
        loss = ((w * s) ** 2).sum()
        loss.backward()
        opt.step()
    assert (id(w), id(s)) == ids
    assert opt.param_groups[0]["params"][0] is w and opt.param_groups[0]["params"][1] is s
    for p in (w, s):
        assert p.is_leaf and p.requires_grad and p.grad is not None
    # a new forward/backward differentiates at the new value
    opt.zero_grad()
    ((w * s) ** 2).sum().backward()
    wv, sv = w.numpy(), s.item()
    np.testing.assert_allclose(w.grad.numpy(), 2 * wv * sv * sv, rtol=1e-14)
    np.testing.assert_allclose(s.grad.item(), 2 * sv * (wv * wv).sum(), rtol=1e-14)
    # and plain ops still refuse in-place changes of it outside no_grad
    with pytest.raises(cad.BackwardError):
        w += 1


def test_old_values_are_never_overwritten():
    """NOTE [ Values are immutable ]: whatever read the old value keeps it"""
    p = cad.tensor([1.0, 2.0, 3.0, 4.0], requires_grad=True)
    old = p.detach()                 # shares the old buffer
    view = p.detach()[1:3]           # a view of it
    arr = p.numpy()                  # the array itself
    y = (p * p).sum()                # a tape holding the old value
    opt = cad.optim.SGD([p], lr=0.5)
    p.grad = cad.ones(4)
    opt.step()
    np.testing.assert_array_equal(p.numpy(), [0.5, 1.5, 2.5, 3.5])
    np.testing.assert_array_equal(old.numpy(), [1.0, 2.0, 3.0, 4.0])
    np.testing.assert_array_equal(view.numpy(), [2.0, 3.0])
    np.testing.assert_array_equal(arr, [1.0, 2.0, 3.0, 4.0])
    assert y.item() == 30.0
    # the tape differentiates at the value it recorded ...
    (g,) = cad.autograd.grad(y, [p], retain_graph=True)
    np.testing.assert_array_equal(g.numpy(), [2.0, 4.0, 6.0, 8.0])
    # ... and backward() into .grad says the leaf changed since (as PyTorch does)
    with pytest.raises(cad.BackwardError, match="modified in place"):
        y.backward()


def test_step_inside_a_recorded_graph_is_not_recorded():
    w = cad.ones(3, requires_grad=True)
    opt = cad.optim.SGD([w], lr=0.1, momentum=0.9)
    w.grad = cad.ones(3)
    opt.step()
    assert w.grad_fn is None and w.is_leaf
    loss = (w * 2).sum()
    assert loss.grad_fn is not None


def test_closure_and_repr():
    w = cad.ones(2, requires_grad=True)
    opt = cad.optim.SGD([w], lr=0.1)

    def closure():
        opt.zero_grad()
        loss = (w * w).sum()
        loss.backward()
        return loss
    with cad.no_grad():   # the closure runs with grad enabled anyway
        loss = opt.step(closure)
    assert loss.item() == 2.0
    np.testing.assert_allclose(w.numpy(), [0.8, 0.8])
    assert "SGD (" in repr(opt) and "lr: 0.1" in repr(opt)


def test_state_property_is_a_copy():
    torch = _torch()
    cps, tps, rng = _pair([(3,)])
    co, to = cad.optim.Adam(cps, lr=0.1), torch.optim.Adam(tps, lr=0.1)
    _set_grads(cps, tps, rng)
    co.step()
    to.step()
    st = co.state[cps[0]]
    np.testing.assert_allclose(st["exp_avg"].numpy(), to.state[tps[0]]["exp_avg"].numpy(), atol=1e-15)
    snapshot = np.array(st["exp_avg"].numpy())
    _set_grads(cps, tps, rng)
    co.step()
    np.testing.assert_array_equal(st["exp_avg"].numpy(), snapshot)   # the copy did not move
    assert not np.allclose(co.state[cps[0]]["exp_avg"].numpy(), snapshot)


def test_many_params_and_threads_agree():
    """one call over parameters of mixed sizes, large enough for the thread pool, gives
    the same bits on one thread and on all, and torch's values"""
    torch = _torch()
    shapes = [(70000,), (3,), (50, 600), (), (1,), (40001,)]
    results = []
    for nt in (1, None):
        cad.set_num_threads(nt if nt else None)
        try:
            cps, tps, rng = _pair(shapes, seed=7)
            co, to = cad.optim.Adam(cps, lr=0.01, amsgrad=True), torch.optim.Adam(tps, lr=0.01, amsgrad=True)
            for _ in range(3):
                _set_grads(cps, tps, rng)
                co.step()
                to.step()
            _close(cps, tps)
            results.append([np.array(c.numpy()) for c in cps])
        finally:
            cad.set_num_threads(None)
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


def test_non_contiguous_params_and_mismatched_grad_dtype():
    base = cad.tensor(np.arange(12.0).reshape(3, 4))
    w = base.T.detach().requires_grad_()          # a strided view as a parameter
    f = cad.ones(4, dtype=cad.float32, requires_grad=True)
    opt = cad.optim.SGD([w, f], lr=0.5)
    w.grad = cad.ones((4, 3))
    f.grad = cad.full((4,), 2.0)                  # float64 gradient of a float32 parameter
    opt.step()
    np.testing.assert_array_equal(w.numpy(), np.arange(12.0).reshape(3, 4).T - 0.5)
    assert f.dtype == cad.float32
    np.testing.assert_array_equal(f.numpy(), np.zeros(4, np.float32))
    np.testing.assert_array_equal(base.numpy(), np.arange(12.0).reshape(3, 4))


def test_empty_params():
    e = cad.zeros((0, 3), requires_grad=True)
    w = cad.ones(2, requires_grad=True)
    opt = cad.optim.Adam([e, w], lr=0.1)
    e.grad = cad.zeros((0, 3))
    w.grad = cad.ones(2)
    opt.step()
    assert e.shape == (0, 3) and opt.state_dict()["state"][0]["step"] == 1.0


# ---------------------------------------------------------------- float32

@pytest.mark.parametrize("case", [("SGD", {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.01}),
                                  ("Adam", {"lr": 0.01, "amsgrad": True}),
                                  ("AdamW", {"lr": 0.01})], ids=_ids)
def test_float32_against_torch(case):
    torch = _torch()
    name, kw = case
    cps, tps, rng = _pair(SHAPES, dtype="float32")
    co, to = getattr(cad.optim, name)(cps, **kw), getattr(torch.optim, name)(tps, **kw)
    for _ in range(5):
        _set_grads(cps, tps, rng, dtype="float32")
        co.step()
        to.step()
        _close(cps, tps, atol=1e-6, rtol=1e-5)
    assert all(c.dtype == cad.float32 for c in cps)
    for s in co.state_dict()["state"].values():
        assert all(v.dtype == cad.float32 for k, v in s.items() if k != "step")


# ---------------------------------------------------------------- schedulers

def _sched_pair(make, steps=30, lr=0.5, groups=2):
    torch = _torch()
    cps = [cad.ones(2, requires_grad=True) for _ in range(groups)]
    tps = [torch.ones(2, requires_grad=True) for _ in range(groups)]
    co = cad.optim.SGD([{"params": [p], "lr": lr * (k + 1)} for k, p in enumerate(cps)], lr=lr)
    to = torch.optim.SGD([{"params": [p], "lr": lr * (k + 1)} for k, p in enumerate(tps)], lr=lr)
    cs, ts = make(S, co), make(torch.optim.lr_scheduler, to)
    assert cs.get_last_lr() == ts.get_last_lr()
    for _ in range(steps):
        co.step()
        to.step()
        cs.step()
        ts.step()
        assert cs.get_last_lr() == pytest.approx(ts.get_last_lr(), rel=1e-15, abs=0)
        assert [g["lr"] for g in co.param_groups] == pytest.approx([g["lr"] for g in to.param_groups],
                                                                    rel=1e-15, abs=0)
    return cs, ts, co


SCHEDULES = {
    "StepLR": lambda m, o: m.StepLR(o, step_size=4, gamma=0.5),
    "MultiStepLR": lambda m, o: m.MultiStepLR(o, milestones=[3, 7, 7, 20], gamma=0.3),
    "ExponentialLR": lambda m, o: m.ExponentialLR(o, gamma=0.9),
    "CosineAnnealingLR": lambda m, o: m.CosineAnnealingLR(o, T_max=10),
    "CosineAnnealingLR-eta_min": lambda m, o: m.CosineAnnealingLR(o, T_max=7, eta_min=0.01),
    "LinearLR": lambda m, o: m.LinearLR(o, start_factor=0.1, total_iters=8),
    "LinearLR-decay": lambda m, o: m.LinearLR(o, start_factor=1.0, end_factor=0.2, total_iters=5),
    "ConstantLR": lambda m, o: m.ConstantLR(o, factor=0.25, total_iters=4),
    "PolynomialLR": lambda m, o: m.PolynomialLR(o, total_iters=12, power=2.0),
    "LambdaLR": lambda m, o: m.LambdaLR(o, lambda e: 1.0 / (1 + e)),
    "LambdaLR-per-group": lambda m, o: m.LambdaLR(o, [lambda e: 0.9 ** e, lambda e: min(1.0, (e + 1) / 5)]),
    "MultiplicativeLR": lambda m, o: m.MultiplicativeLR(o, lambda e: 0.95),
    "warmup-then-cosine": lambda m, o: m.SequentialLR(
        o, [m.LinearLR(o, start_factor=0.01, total_iters=5), m.CosineAnnealingLR(o, T_max=20, eta_min=1e-3)],
        milestones=[5]),
    "chained": lambda m, o: m.ChainedScheduler([m.ConstantLR(o, factor=0.5, total_iters=3),
                                                m.ExponentialLR(o, gamma=0.95)]),
}


@pytest.mark.parametrize("name", list(SCHEDULES))
def test_schedulers_against_torch(name):
    _sched_pair(SCHEDULES[name])


def test_scheduler_state_dict_round_trip():
    make = SCHEDULES["warmup-then-cosine"]
    cs, _, co = _sched_pair(make, steps=7)
    sd = cs.state_dict()
    co2 = cad.optim.SGD([{"params": [cad.ones(2, requires_grad=True)], "lr": 0.5},
                         {"params": [cad.ones(2, requires_grad=True)], "lr": 1.0}], lr=0.5)
    cs2 = make(S, co2)
    cs2.load_state_dict(sd)
    co2.load_state_dict(co.state_dict())   # after the scheduler is made (as torch says)
    for _ in range(10):
        cs.step()
        cs2.step()
        assert cs.get_last_lr() == cs2.get_last_lr()
    assert cs.get_last_lr() == [g["lr"] for g in co.param_groups]


def test_scheduler_needs_an_optimizer():
    with pytest.raises(TypeError, match="not an Optimizer"):
        S.StepLR(object(), step_size=2)


# ---------------------------------------------------------------- functional form

@pytest.mark.parametrize("case", [("sgd", "SGD", {"lr": 0.1, "momentum": 0.9, "dampening": 0.1}),
                                  ("sgd", "SGD", {"lr": 0.1, "weight_decay": 0.1, "nesterov": True, "momentum": 0.5}),
                                  ("adam", "Adam", {"lr": 0.05, "weight_decay": 0.01}),
                                  ("adam", "Adam", {"lr": 0.05, "amsgrad": True, "maximize": True}),
                                  ("adamw", "AdamW", {"lr": 0.05, "weight_decay": 0.1})],
                         ids=lambda c: c[0] + "-" + ",".join(f"{k}={v}" for k, v in c[2].items()))
def test_functional_matches_stateful(case):
    fname, cname, kw = case
    rng = np.random.default_rng(5)
    vals = {"w": rng.standard_normal((3, 2)), "b": rng.standard_normal(2), "s": np.array(0.7)}
    params = {k: cad.tensor(v) for k, v in vals.items()}
    stateful = {k: cad.tensor(v, requires_grad=True) for k, v in vals.items()}
    opt = getattr(cad.optim, fname)(**kw)
    state = opt.init(params)
    sopt = getattr(cad.optim, cname)(stateful, **kw)
    for _ in range(5):
        grads = {k: cad.tensor(rng.standard_normal(v.shape)) for k, v in vals.items()}
        keep_p = {k: np.array(v.numpy()) for k, v in params.items()}
        keep_s = [np.array(x.numpy()) for x in cad.tree_leaves(state) if isinstance(x, cad.Tensor)]
        old_params, old_state = params, state
        updates, state = opt.update(grads, state, params)
        params = cad.optim.apply_updates(params, updates)
        # pure: what went in is unchanged
        for k, v in old_params.items():
            np.testing.assert_array_equal(v.numpy(), keep_p[k])
        for x, y in zip([x for x in cad.tree_leaves(old_state) if isinstance(x, cad.Tensor)], keep_s):
            np.testing.assert_array_equal(x.numpy(), y)
        for k, p in stateful.items():
            p.grad = grads[k]
        sopt.step()
        for k in vals:
            np.testing.assert_allclose(params[k].numpy(), stateful[k].numpy(), rtol=0, atol=1e-12)
    assert state.count == 5


def test_functional_schedule_and_errors():
    lrs = []

    def sched(count):
        lrs.append(count)
        return 0.1 / (1 + count)
    opt = cad.optim.sgd(lr=sched)
    p = [cad.ones(2)]
    st = opt.init(p)
    for _ in range(3):
        u, st = opt.update([cad.ones(2)], st, p)
        p = cad.optim.apply_updates(p, u)
    assert lrs == [0, 1, 2]
    np.testing.assert_allclose(p[0].numpy(), 1 - 0.1 - 0.05 - 0.1 / 3)
    with pytest.raises(ValueError, match="structure"):
        opt.update({"a": cad.ones(2)}, st, p)
    with pytest.raises(ValueError, match="weight decay needs the parameters"):
        cad.optim.adamw().update([cad.ones(2)], cad.optim.adamw().init([cad.ones(2)]))
    with pytest.raises(ValueError, match="Invalid learning rate"):
        cad.optim.adam(lr=-1.0)


def test_functional_with_grad_trains():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 3))
    y = X @ np.array([1.5, -2.0, 0.5]) + 0.3
    Xc, yc = cad.tensor(X), cad.tensor(y)

    def loss(p):
        return ((Xc @ p["w"] + p["b"] - yc) ** 2).mean()
    params = {"w": cad.zeros(3), "b": cad.zeros(())}
    opt = cad.optim.adam(lr=0.1)
    state = opt.init(params)
    g = cad.grad(loss)
    for _ in range(300):
        updates, state = opt.update(g(params), state, params)
        params = cad.optim.apply_updates(params, updates)
    assert loss(params).item() < 1e-6
    np.testing.assert_allclose(params["w"].numpy(), [1.5, -2.0, 0.5], atol=1e-3)


# ---------------------------------------------------------------- training loops

@pytest.mark.parametrize("name,kw", [("SGD", {"lr": 0.05, "momentum": 0.9}), ("Adam", {"lr": 0.1}),
                                     ("AdamW", {"lr": 0.1, "weight_decay": 1e-4})])
def test_linear_regression_converges(name, kw):
    rng = np.random.default_rng(1)
    X = cad.tensor(rng.standard_normal((128, 4)))
    w_true = np.array([0.5, -1.0, 2.0, 0.0])
    y = cad.tensor(X.numpy() @ w_true - 0.7 + 0.001 * rng.standard_normal(128))
    w = cad.zeros(4, requires_grad=True)
    b = cad.zeros((), requires_grad=True)
    opt = getattr(cad.optim, name)([w, b], **kw)
    sched = S.StepLR(opt, step_size=100, gamma=0.5)
    for _ in range(300):
        opt.zero_grad()
        loss = ((X @ w + b - y) ** 2).mean()
        loss.backward()
        opt.step()
        sched.step()
    assert loss.item() < 1e-4
    np.testing.assert_allclose(w.numpy(), w_true, atol=0.01)
    assert abs(b.item() + 0.7) < 0.01


# ---------------------------------------------------------------- CUDA (fake device here)

@pytest.fixture
def cuda():
    if not (cad.cuda.is_available() and not cad.cuda.is_fake()):
        cad.cuda._use_fake()
    return "cuda"


@pytest.mark.cuda
@pytest.mark.parametrize("case", [("SGD", {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 0.1}),
                                  ("Adam", {"lr": 0.05, "amsgrad": True, "weight_decay": 0.1}),
                                  ("AdamW", {"lr": 0.05, "maximize": True})], ids=_ids)
def test_cuda_params_match_cpu(cuda, case):
    name, kw = case
    rng = np.random.default_rng(2)
    vals = [rng.standard_normal(s) for s in [(3,), (2, 3), ()]]
    cpu = [cad.tensor(v, requires_grad=True) for v in vals]
    dev = [cad.tensor(v, requires_grad=True, device=cuda) for v in vals]
    ids = [id(p) for p in dev]
    oc, od = getattr(cad.optim, name)(cpu, **kw), getattr(cad.optim, name)(dev, **kw)
    for _ in range(4):
        for a, b in zip(cpu, dev):
            g = rng.standard_normal(a.shape)
            a.grad = cad.tensor(g)
            b.grad = cad.tensor(g, device=cuda)
        oc.step()
        od.step()
        for a, b in zip(cpu, dev):
            np.testing.assert_allclose(b.cpu().numpy(), a.numpy(), rtol=0, atol=1e-12)
    assert [id(p) for p in dev] == ids
    assert all(p.is_cuda and p.is_leaf and p.requires_grad for p in dev)
    # state_dict round trip on the device
    od2 = getattr(cad.optim, name)([cad.tensor(v, requires_grad=True, device=cuda) for v in vals], **kw)
    od2.load_state_dict(od.state_dict())
    # the functional form on the device
    f = getattr(cad.optim, name.lower())(**kw)
    st = f.init(dev)
    u, st = f.update([cad.ones(p.shape, device=cuda) for p in dev], st, dev)
    assert all(x.is_cuda for x in u)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("case", [("SGD", {"lr": 0.1, "momentum": 0.9, "dampening": 0.2}),
                                  ("SGD", {"lr": 0.1}),
                                  ("Adam", {"lr": 0.05, "betas": (0.3, 0.99)}),
                                  ("AdamW", {"lr": 0.05, "amsgrad": True, "weight_decay": 0.3})], ids=_ids)
def test_cuda_fused_step_values_and_state(cuda, case, dtype):
    """the fused device kernel (k_optim) against the CPU kernel, per element, with
    mixed sizes (one parameter larger than the others, an empty one), the state
    handed out as copies and loaded as the optimizer's own buffers"""
    name, kw = case
    rng = np.random.default_rng(5)
    vals = [rng.standard_normal(s).astype(dtype) for s in [(1000,), (3, 2), (), (0, 2)]]
    cpu = [cad.tensor(v, requires_grad=True) for v in vals]
    dev = [cad.tensor(v, requires_grad=True, device=cuda) for v in vals]
    oc, od = getattr(cad.optim, name)(cpu, **kw), getattr(cad.optim, name)(dev, **kw)
    tol = dict(rtol=0, atol=1e-12) if dtype == "float64" else dict(rtol=2e-6, atol=2e-6)
    saved = None
    for step in range(3):
        for a, b in zip(cpu, dev):
            g = rng.standard_normal(a.shape).astype(dtype)
            a.grad = cad.tensor(g)
            b.grad = cad.tensor(g.astype(np.float64), device=cuda)   # converted to the param's dtype
        oc.step()
        od.step()
        for a, b in zip(cpu, dev):
            assert b.dtype == a.dtype
            np.testing.assert_allclose(b.cpu().numpy(), a.numpy(), **tol)
        if step == 0:
            saved = od.state_dict()
            frozen = {k: {n: np.array(v.cpu()) if isinstance(v, cad.Tensor) else v for n, v in st.items()}
                      for k, st in saved["state"].items()}
    for k, st in saved["state"].items():   # the step after state_dict() left its copies alone
        for n, v in st.items():
            if isinstance(v, cad.Tensor):
                assert v.is_cuda
                np.testing.assert_array_equal(np.asarray(v.cpu()), frozen[k][n])
    sd = od.state_dict()
    od2 = getattr(cad.optim, name)([cad.tensor(np.asarray(p.cpu()), requires_grad=True, device=cuda)
                                    for p in dev], **kw)
    od2.load_state_dict(sd)
    before = {k: {n: np.array(v.cpu()) for n, v in st.items() if isinstance(v, cad.Tensor)}
              for k, st in sd["state"].items()}
    for a, b, c in zip(cpu, dev, od2.param_groups[0]["params"]):
        g = rng.standard_normal(a.shape).astype(dtype)
        a.grad, b.grad, c.grad = cad.tensor(g), cad.tensor(g, device=cuda), cad.tensor(g, device=cuda)
    oc.step()
    od.step()
    od2.step()
    for a, b, c in zip(cpu, dev, od2.param_groups[0]["params"]):
        np.testing.assert_allclose(c.cpu().numpy(), a.numpy(), **tol)
        np.testing.assert_array_equal(c.cpu().numpy(), b.cpu().numpy())
    for k, st in sd["state"].items():   # loading copied: the dict's tensors did not move
        for n, v in st.items():
            if isinstance(v, cad.Tensor):
                np.testing.assert_array_equal(np.asarray(v.cpu()), before[k][n])


@pytest.mark.cuda
@pytest.mark.parametrize("name", ["sgd", "adam", "adamw"])
def test_cuda_functional_matches_cpu(cuda, name):
    kw = {"learning_rate": 0.1} if False else {}
    f = getattr(cad.optim, name)(**({"lr": 0.1, "momentum": 0.5} if name == "sgd" else {"lr": 0.1}))
    rng = np.random.default_rng(3)
    vals = {"w": rng.standard_normal((4, 3)), "b": rng.standard_normal(3)}
    pc = {k: cad.tensor(v) for k, v in vals.items()}
    pd = {k: cad.tensor(v, device=cuda) for k, v in vals.items()}
    sc, sd = f.init(pc), f.init(pd)
    for _ in range(3):
        g = {k: rng.standard_normal(v.shape) for k, v in vals.items()}
        uc, sc = f.update({k: cad.tensor(v) for k, v in g.items()}, sc, pc)
        ud, sd = f.update({k: cad.tensor(v, device=cuda) for k, v in g.items()}, sd, pd)
        for k in vals:
            assert ud[k].is_cuda
            np.testing.assert_allclose(np.asarray(ud[k].cpu()), np.asarray(uc[k]), rtol=0, atol=1e-12)
        pc = cad.optim.apply_updates(pc, uc)
        pd = cad.optim.apply_updates(pd, ud)
    assert kw == {}
    with pytest.raises(cad.DeviceError, match="on cpu but its parameter is on cuda"):
        f.update({k: cad.tensor(v, device=cuda) for k, v in vals.items()}, sc, pd)


@pytest.mark.cuda
@pytest.mark.parametrize("name,kw", [("SGD", {"lr": 0.1, "momentum": 0.9}), ("Adam", {"lr": 0.05, "amsgrad": True})])
def test_one_optimizer_over_both_devices(cuda, name, kw):
    """one step over CPU and CUDA parameters of one optimizer: each device's
    parameters through that device's backend (one code path, cad_optim_run), the
    state made where the parameter lives, values as an all-CPU optimizer gives"""
    rng = np.random.default_rng(11)
    vals = [rng.standard_normal(s) for s in [(4,), (2, 3), (), (5,)]]
    ref = [cad.tensor(v, requires_grad=True) for v in vals]
    mixed = [cad.tensor(v, requires_grad=True, device=cuda if i % 2 else "cpu") for i, v in enumerate(vals)]
    o_ref, o_mix = getattr(cad.optim, name)(ref, **kw), getattr(cad.optim, name)(mixed, **kw)
    for _ in range(3):
        for a, b in zip(ref, mixed):
            g = rng.standard_normal(a.shape)
            a.grad = cad.tensor(g)
            b.grad = cad.tensor(g, device=cuda if b.is_cuda else "cpu")
        o_ref.step()
        o_mix.step()
        for a, b in zip(ref, mixed):
            np.testing.assert_allclose(np.asarray(b.cpu()), a.numpy(), rtol=0, atol=1e-12)
    for i, b in enumerate(mixed):
        assert b.is_cuda == bool(i % 2)
        for v in o_mix.state_dict()["state"][i].values():
            if isinstance(v, cad.Tensor):
                assert v.is_cuda == bool(i % 2)


def test_cuda_step_is_one_launch():
    """every CUDA parameter of a step goes to one kernel launch (the fake device's
    launch trace, in a child process)"""
    import subprocess
    import sys
    code = (
        "import cad, numpy as np\n"
        "cad.cuda._use_fake()\n"
        "ps = [cad.tensor(np.ones(s), requires_grad=True, device='cuda') for s in [(5,), (2, 3), (7,), ()]]\n"
        "opt = cad.optim.Adam(ps, lr=0.1)\n"
        "for p in ps: p.grad = cad.ones(p.shape, device='cuda')\n"
        "opt.step()\n"   # the first step also makes the state (zero fills)
        "for p in ps: p.grad = cad.ones(p.shape, device='cuda')\n"
        "import sys; sys.stderr.write('STEP\\n'); sys.stderr.flush()\n"
        "opt.step()\n"
        "sys.stderr.write('DONE\\n')\n")
    env = dict(__import__("os").environ, CAD_CUDA_TRACE="1")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    step = r.stderr.split("STEP", 1)[1].split("DONE", 1)[0]
    launches = [ln for ln in step.splitlines() if ln.startswith("cad fake launch")]
    assert [ln.split()[3] for ln in launches] == ["k_optim"], step


# ---------------------------------------------------------------- bad arguments

def test_bad_arguments():
    p = cad.ones(2, requires_grad=True)
    with pytest.raises(ValueError, match="Invalid learning rate"):
        cad.optim.SGD([p], lr=-0.1)
    with pytest.raises(ValueError, match="Invalid learning rate"):
        cad.optim.Adam([p], lr=-1e-3)
    with pytest.raises(ValueError, match="beta parameter at index 0"):
        cad.optim.Adam([p], betas=(1.0, 0.999))
    with pytest.raises(ValueError, match="beta parameter at index 1"):
        cad.optim.AdamW([p], betas=(0.9, -0.1))
    with pytest.raises(ValueError, match="betas must be a pair"):
        cad.optim.Adam([p], betas=(0.9,))
    with pytest.raises(ValueError, match="epsilon"):
        cad.optim.Adam([p], eps=-1.0)
    with pytest.raises(ValueError, match="weight_decay"):
        cad.optim.AdamW([p], weight_decay=-0.1)
    with pytest.raises(ValueError, match="momentum"):
        cad.optim.SGD([p], lr=0.1, momentum=-0.5)
    with pytest.raises(ValueError, match="Nesterov"):
        cad.optim.SGD([p], lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="non-leaf"):
        cad.optim.SGD([p * 2], lr=0.1)
    with pytest.raises(TypeError, match="floating-point"):
        cad.optim.SGD([cad.tensor([1, 2])], lr=0.1)
    with pytest.raises(TypeError, match="cad tensors"):
        cad.optim.SGD([np.ones(2)], lr=0.1)
    with pytest.raises(ValueError, match="empty parameter list"):
        cad.optim.Adam([])
    with pytest.raises(TypeError, match="not a set"):
        cad.optim.Adam({p})
    with pytest.raises(ValueError, match="twice"):
        cad.optim.Adam([p, p])
    with pytest.raises(TypeError, match="number"):
        cad.optim.SGD([p], lr="fast")
    with pytest.raises(ValueError, match="step_size"):
        S.StepLR(cad.optim.SGD([p], lr=0.1), step_size=0)
