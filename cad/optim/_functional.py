"""The functional optimizers, in the style of optax, for cad.grad users:

    opt = cad.optim.adam(lr=1e-2)
    state = opt.init(params)                          # params: a pytree of tensors
    grads = cad.grad(loss)(params)
    updates, state = opt.update(grads, state, params)
    params = cad.optim.apply_updates(params, updates)

Pure: nothing passed in is changed; updates, the new state and the new parameters
are new tensors.  The arithmetic is the stateful optimizers' (PyTorch's formulas,
the same C kernel with the update written to a fresh buffer, NOTE [ Optimizer
updates ] in cad_kernels/cpu/optim.c), so `params + updates` after n steps equals
what cad.optim.Adam gives after n steps (up to the rounding of one addition).  The
learning rate may be a schedule: a function of the number of updates done so far.
Updates are values, not recorded on a tape (the optimizer is not differentiated).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, Tuple, Union

from .._core import _engine as _C
from .._core._engine import Tensor
from ..tree import tree_flatten, tree_map, tree_unflatten

_F = _C.OPT_FLAGS


class GradientTransformation(NamedTuple):
    """init(params) -> state; update(grads, state, params=None) -> (updates, state)"""
    init: Callable[[Any], Any]
    update: Callable[..., Tuple[Any, Any]]


class SGDState(NamedTuple):
    count: int            # updates done
    momentum: Any         # the momentum buffers (a pytree like params), None without momentum


class AdamState(NamedTuple):
    count: int
    exp_avg: Any
    exp_avg_sq: Any
    max_exp_avg_sq: Any   # None without amsgrad


def _leaf(x, who, what):
    if isinstance(x, Tensor):
        return x
    try:
        return _C.as_float(x, who)
    except (TypeError, ValueError):
        raise TypeError(f"{who}: {what} leaves must be tensors or numbers, got {type(x).__name__}") from None


def _zeros(params):
    from .. import zeros_like
    return tree_map(lambda p: zeros_like(_leaf(p, "init", "parameter")), params)


def _lr(lr, count):
    return float(lr(count)) if callable(lr) else float(lr)


def _run(hyp, step, who, grads, params, states, first=False):
    """updates and new state leaves for every leaf: the CPU ones in one C call, the
    CUDA ones with cad ops.  states: [ms, vs, ws] pytrees or None each; first: SGD's
    first momentum step (the buffer starts as the gradient)."""
    g_leaves, tdef = tree_flatten(grads)
    gs = [_leaf(g, who, "gradient") for g in g_leaves]
    if params is None:
        if hyp[1] != 0:
            raise ValueError(f"{who}: weight decay needs the parameters: update(grads, state, params)")
        ps = gs
    else:
        p_leaves, pdef = tree_flatten(params)
        if pdef != tdef:
            raise ValueError(f"{who}: the gradients have structure {tdef!r} but the parameters "
                             f"have {pdef!r}")
        ps = [_leaf(p, who, "parameter") for p in p_leaves]
    n = len(gs)
    lists = []
    for s, name in zip(states, ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")):
        if s is None:
            lists.append([None] * n)
            continue
        leaves, sdef = tree_flatten(s)
        if sdef != tdef:
            raise ValueError(f"{who}: the state's {name} has structure {sdef!r} but the gradients "
                             f"have {tdef!r}; was the state made by init() of these parameters?")
        lists.append(leaves)
    ms, vs, ws = lists
    if first:
        ms = [None] * n
    for k in range(n):
        if gs[k].shape != ps[k].shape:
            raise ValueError(f"{who}: leaf {k}: gradient of shape {gs[k].shape} for a parameter "
                             f"of shape {ps[k].shape}")
    gs = [g.to("cuda") if p.is_cuda and not g.is_cuda else g for g, p in zip(gs, ps)]
    ups, nm, nv, nw = _C.optim_pure(hyp, float(step), list(ps), gs, list(ms), list(vs), list(ws))
    return tdef, ups, nm, nv, nw


def sgd(lr: Union[float, Callable[[int], float]] = 1e-3, momentum: float = 0.0, dampening: float = 0.0,
        weight_decay: float = 0.0, nesterov: bool = False, maximize: bool = False) -> GradientTransformation:
    """SGD as a GradientTransformation (cad.optim.SGD's formulas); lr may be a
    function of the update count."""
    from . import SGD
    if not callable(lr):
        SGD._check_group({"lr": lr, "momentum": momentum, "dampening": dampening,
                              "weight_decay": weight_decay, "nesterov": nesterov})
    flags = (_F["maximize"] if maximize else 0) | (_F["nesterov"] if nesterov else 0)

    def init(params):
        return SGDState(0, _zeros(params) if momentum != 0 else None)

    def update(grads, state, params=None):
        count = int(state.count)
        hyp = (_lr(lr, count), float(weight_decay), 0.0, 0.0, 0.0, float(momentum), float(dampening), flags)
        # the first momentum buffer is the gradient itself (torch)
        tdef, ups, nm, _, _ = _run(hyp, count + 1, "sgd.update", grads, params,
                                   [state.momentum if momentum != 0 else None, None, None],
                                   first=momentum != 0 and count == 0)
        return (tree_unflatten(tdef, ups),
                SGDState(count + 1, tree_unflatten(tdef, nm) if momentum != 0 else None))

    return GradientTransformation(init, update)


def adam(lr: Union[float, Callable[[int], float]] = 1e-3, betas: Tuple[float, float] = (0.9, 0.999),
         eps: float = 1e-8, weight_decay: float = 0.0, amsgrad: bool = False, maximize: bool = False,
         decoupled_weight_decay: bool = False) -> GradientTransformation:
    """Adam as a GradientTransformation (cad.optim.Adam's formulas, bias-corrected);
    lr may be a function of the update count."""
    from . import Adam
    Adam._check_group({"lr": 0.0 if callable(lr) else lr, "betas": betas, "eps": eps,
                           "weight_decay": weight_decay})
    b1, b2 = (float(b) for b in betas)
    flags = (_F["adam"] | (_F["amsgrad"] if amsgrad else 0) | (_F["maximize"] if maximize else 0)
             | (_F["decoupled"] if decoupled_weight_decay else 0))

    def init(params):
        return AdamState(0, _zeros(params), _zeros(params), _zeros(params) if amsgrad else None)

    def update(grads, state, params=None):
        count = int(state.count)
        hyp = (_lr(lr, count), float(weight_decay), b1, b2, float(eps), 0.0, 0.0, flags)
        tdef, ups, nm, nv, nw = _run(hyp, count + 1, "adam.update", grads, params,
                                     [state.exp_avg, state.exp_avg_sq,
                                      state.max_exp_avg_sq if amsgrad else None])
        return tree_unflatten(tdef, ups), AdamState(
            count + 1, tree_unflatten(tdef, nm), tree_unflatten(tdef, nv),
            tree_unflatten(tdef, nw) if amsgrad else None)

    return GradientTransformation(init, update)


def adamw(lr: Union[float, Callable[[int], float]] = 1e-3, betas: Tuple[float, float] = (0.9, 0.999),
          eps: float = 1e-8, weight_decay: float = 1e-2, amsgrad: bool = False,
          maximize: bool = False) -> GradientTransformation:
    """AdamW as a GradientTransformation (decoupled weight decay; needs params in update)"""
    return adam(lr, betas, eps, weight_decay, amsgrad, maximize, decoupled_weight_decay=True)


def apply_updates(params: Any, updates: Any) -> Any:
    """params + updates leaf by leaf, as new tensors (a leaf that required grad gives
    a new leaf that requires grad); nothing is recorded."""
    def add(p, u):
        with _C.no_grad():
            r = p + u
        if isinstance(p, Tensor):
            if r.dtype != p.dtype:
                r = r.to(p.dtype)
            if p.requires_grad and p.is_leaf:
                r.requires_grad_(True)
        return r
    return tree_map(add, params, updates)
