"""cad.optim: SGD, Adam and AdamW with PyTorch's update formulas, learning-rate
schedules (cad.optim.lr_scheduler), and a functional form for cad.grad users in the
style of optax (cad.optim.sgd / adam / adamw, apply_updates).

    opt = cad.optim.Adam(params, lr=1e-3)          # params: tensors, a pytree, or groups
    loss = f(params); loss.backward(); opt.step(); opt.zero_grad()

NOTE [ Optimizer steps ]
step() hands every parameter that has a gradient to one C call
(cad._core._engine.optim_step -> cad_optim_step in cad_kernels/cpu/optim.c): the
kernel reads each old value and gradient and writes the new value into a fresh
buffer, in one fused pass per parameter over all of them (threads split the
concatenated elements), and updates the optimizer's state buffers in place.  Each
parameter object is then bound to its new value: it stays the same Python object,
a leaf that requires grad, and its version counter moves, so a tape that recorded
the old value keeps reading the old buffer (values are immutable, NOTE [ Values are
immutable ] in cad/_core/_engine.pyx) and backward() through such a tape says the
leaf changed, as PyTorch does.  The state (momentum buffers, exp_avg, ...) is owned
by the optimizer as plain arrays; state_dict() and `state` give copies.

Parameters on CUDA go to one launch of one kernel for all of them (k_optim in
cad_kernels/cuda/kernels.cuh, the same arithmetic element by element); their state
buffers are CUDA tensors the optimizer owns.  torch's `foreach=` and `fused=` are
accepted and ignored: a step is always one fused call per device.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Optional, Tuple

import numpy as np

from .._core import _engine as _C
from .._core._engine import Tensor
from ..tree import tree_leaves

_F = _C.OPT_FLAGS

__all__ = [
    "SGD",
    "Adam",
    "AdamState",
    "AdamW",
    "GradientTransformation",
    "Optimizer",
    "SGDState",
    "adam",
    "adamw",
    "apply_updates",
    "lr_scheduler",
    "sgd",
]


def _copy_state(v):
    """a state buffer handed out: a copy (the optimizer updates its own in place)"""
    if isinstance(v, np.ndarray):
        return _C.from_numpy(v, None, False, True)
    if isinstance(v, Tensor) and v.is_cuda:
        return _C.dev_copy(v)
    return v


def _is_group(x):
    return isinstance(x, dict) and "params" in x


def _as_list(params, who):
    """the tensors of a params argument: a tensor, an iterable of tensors, or a pytree"""
    if isinstance(params, Tensor):
        return [params]
    if isinstance(params, (set, frozenset)):
        raise TypeError(f"{who}: parameters must be an ordered collection (a list, a tuple, a "
                        "dict or a pytree), not a set: their order names their state")
    if not isinstance(params, (list, tuple, dict)):
        try:
            params = list(params)
        except TypeError:
            raise TypeError(f"{who}: params must be tensors, a pytree of tensors or a list of "
                            f"param-group dicts, got {type(params).__name__}") from None
    return tree_leaves(params)


def _check_float(name, value, lo=None, lo_open=False, hi=None, hi_open=False):
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}") from None
    if math.isnan(v):
        raise ValueError(f"Invalid {name}: {value}")
    if lo is not None and (v < lo or (lo_open and v == lo)):
        raise ValueError(f"Invalid {name}: {value}")
    if hi is not None and (v > hi or (hi_open and v == hi)):
        raise ValueError(f"Invalid {name}: {value}")
    return v


class Optimizer:
    """The base of cad's optimizers (torch.optim.Optimizer's interface): param_groups
    (a list of dicts whose "lr" and other settings may be changed between steps),
    step(), zero_grad(), state_dict()/load_state_dict(), add_param_group()."""

    # the per-parameter state names, in the order of the engine's [step, m, v, w]
    _kind = 0

    def __init__(self, params: Any, defaults: dict[str, Any]) -> None:
        self.defaults = dict(defaults)
        self._state = {}   # parameter -> [step, m, v, w]: arrays (CPU) or tensors (CUDA)
        self.param_groups = []
        who = type(self).__name__
        if not isinstance(params, (Tensor, dict, list, tuple, set, frozenset)):
            try:   # a generator (model.parameters()-style) of tensors or of groups
                params = list(params)
            except TypeError:
                raise TypeError(f"{who}: params must be tensors, a pytree of tensors or a list of "
                                f"param-group dicts, got {type(params).__name__}") from None
        if isinstance(params, dict) and _is_group(params):
            groups = [params]
        elif isinstance(params, (list, tuple)) and params and all(_is_group(g) for g in params):
            groups = list(params)
        else:
            leaves = _as_list(params, who)
            groups = [{"params": leaves}]
        if not groups or all(len(_as_list(g["params"], who)) == 0 for g in groups):
            raise ValueError(f"{who}: optimizer got an empty parameter list")
        for g in groups:
            self.add_param_group(g)

    # ---- groups
    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group of parameters with its own settings (missing ones take the
        optimizer's defaults), e.g. to train new layers at another learning rate."""
        who = type(self).__name__
        if not isinstance(param_group, dict):
            raise TypeError(f"{who}: a param group must be a dict, got {type(param_group).__name__}")
        if "params" not in param_group:
            raise ValueError(f"{who}: a param group needs a 'params' entry")
        params = _as_list(param_group["params"], who)
        seen = set()
        for p in params:
            if not isinstance(p, Tensor):
                raise TypeError(f"{who}: can only optimize cad tensors, got {type(p).__name__}")
            if not p.is_leaf:
                raise ValueError(f"{who}: can't optimize a non-leaf tensor (shape {p.shape}); "
                                 "optimize the leaf it was computed from, or .detach()"
                                 ".requires_grad_() a copy")
            if p.dtype not in (_C.float64, _C.float32):
                raise TypeError(f"{who}: can only optimize floating-point tensors, got one of "
                                f"dtype {p.dtype} (shape {p.shape})")
            if id(p) in seen:
                raise ValueError(f"{who}: a parameter group holds the same tensor twice")
            seen.add(id(p))
        for g in self.param_groups:
            if any(id(p) in seen for p in g["params"]):
                raise ValueError(f"{who}: some parameters appear in more than one parameter group")
        group = dict(param_group)
        group["params"] = params
        for k, v in self.defaults.items():
            group.setdefault(k, v)
        self._check_group(group)
        self.param_groups.append(group)

    @staticmethod
    def _check_group(group):
        raise NotImplementedError

    def _hyper(self, group):
        """(lr, weight_decay, beta1, beta2, eps, momentum, dampening, flags) for the engine"""
        raise NotImplementedError

    # ---- the step
    def step(self, closure: Optional[Callable[[], Any]] = None) -> Any:
        """One update of every parameter that has a .grad (the others are skipped).
        closure: an optional function that recomputes the loss (run with grad
        enabled); its value is returned."""
        loss = None
        if closure is not None:
            with _C.enable_grad():
                loss = closure()
        groups = [(g["params"], self._hyper(g)) for g in self.param_groups]
        _C.optim_step(groups, self._state)
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clear every parameter's .grad: None (the default, as PyTorch), or zeros
        (new zero tensors: gradients are values too, never changed in place)."""
        from .. import zeros_like
        for g in self.param_groups:
            for p in g["params"]:
                if p.grad is not None:
                    p.grad = None if set_to_none else zeros_like(p.grad)

    # ---- state
    _names = ()

    def _pack(self, st):
        out = {}
        for k, name in enumerate(self._names):
            if name == "step":
                out["step"] = float(st[0])
                continue
            v = st[k]
            if v is None and name in ("max_exp_avg_sq",):
                continue
            out[name] = _copy_state(v)
        return out

    @property
    def state(self) -> dict[Tensor, dict[str, Any]]:
        """parameter -> its state ({"momentum_buffer": ...} or {"step", "exp_avg",
        "exp_avg_sq"[, "max_exp_avg_sq"]}), as copies: the optimizer's own buffers
        change at every step and are never handed out"""
        return {p: packed for p, st in self._state.items() if (packed := self._pack(st))}

    def state_dict(self) -> dict[str, Any]:
        """{"state": {param index: state}, "param_groups": [settings + "params": indices]},
        PyTorch's layout; tensors are copies."""
        index = {}
        groups = []
        for g in self.param_groups:
            packed = {k: v for k, v in g.items() if k != "params"}
            for p in g["params"]:
                index.setdefault(id(p), len(index))
            packed["params"] = [index[id(p)] for p in g["params"]]
            groups.append(packed)
        state = {}
        for p, st in self._state.items():
            packed = self._pack(st)
            if id(p) in index and packed:
                state[index[id(p)]] = packed
        return {"state": dict(sorted(state.items())), "param_groups": groups}

    def _unpack(self, p, saved, who):
        """the engine's [step, m, v, w] for parameter p from its saved state"""
        if not isinstance(saved, dict):
            raise TypeError(f"{who}: a parameter's state must be a dict, got {type(saved).__name__}")
        st = [0.0, None, None, None]
        for k, name in enumerate(self._names):
            if name == "step":
                if "step" in saved:
                    st[0] = float(saved["step"])
                continue
            v = saved.get(name)
            if v is None:
                continue
            v = _C.as_tensor(v) if not isinstance(v, Tensor) else v
            if tuple(v.shape) != tuple(p.shape):
                raise ValueError(f"{who}: the saved {name!r} has shape {tuple(v.shape)} but its "
                                 f"parameter has shape {tuple(p.shape)}")
            if p.is_cuda:
                st[k] = _C.dev_copy(v.detach().to(p.dtype).to("cuda"))   # owned: updated in place
            else:
                st[k] = np.array(_C.host(v), dtype=p.dtype, copy=True, order="C")
        return st

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load what state_dict() returned (by this optimizer or one built the same
        way): settings and per-parameter state; training then continues exactly as
        without the interruption."""
        who = f"{type(self).__name__}.load_state_dict"
        if not isinstance(state_dict, dict) or "param_groups" not in state_dict:
            raise ValueError(f"{who}: expected a dict with 'state' and 'param_groups'")
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"{who}: loaded state dict has a different number of parameter groups "
                             f"({len(saved_groups)}, this optimizer has {len(self.param_groups)})")
        for g, s in zip(self.param_groups, saved_groups):
            if len(g["params"]) != len(s["params"]):
                raise ValueError(f"{who}: loaded state dict contains a parameter group that doesn't "
                                 "match the size of optimizer's group")
        id_map = {}
        for g, s in zip(self.param_groups, saved_groups):
            for p, i in zip(g["params"], s["params"]):
                id_map[int(i)] = p
        new_state = {}
        for k, saved in dict(state_dict.get("state", {})).items():
            i = int(k)
            if i not in id_map:
                raise ValueError(f"{who}: state for parameter index {k!r}, which no group holds")
            new_state[id_map[i]] = self._unpack(id_map[i], saved, who)
        new_groups = []
        for g, s in zip(self.param_groups, saved_groups):
            ng = {k: v for k, v in s.items() if k != "params"}
            ng["params"] = g["params"]
            if "betas" in ng:
                ng["betas"] = tuple(ng["betas"])
            self._check_group(ng)
            new_groups.append(ng)
        for g, ng in zip(self.param_groups, new_groups):   # the same dicts: schedulers hold them
            g.clear()
            g.update(ng)
        self._state = new_state

    def __repr__(self):
        s = type(self).__name__ + " ("
        for i, g in enumerate(self.param_groups):
            s += f"\nParameter Group {i}"
            for k in sorted(g):
                if k != "params":
                    s += f"\n    {k}: {g[k]}"
        return s + "\n)"


class SGD(Optimizer):
    """Stochastic gradient descent, with momentum (optionally Nesterov), dampening,
    weight decay and maximize, as torch.optim.SGD:

        g = -grad if maximize else grad;  g += weight_decay * p
        b = g (first step) | momentum * b + (1 - dampening) * g;  g = g + momentum * b if nesterov else b
        p = p - lr * g
    """
    _names = ("step", "momentum_buffer")

    def __init__(self, params: Any, lr: float = 1e-3, momentum: float = 0, dampening: float = 0,
                 weight_decay: float = 0, nesterov: bool = False, *, maximize: bool = False,
                 foreach: Optional[bool] = None, fused: Optional[bool] = None) -> None:
        defaults = {"lr": lr, "momentum": momentum, "dampening": dampening, "weight_decay": weight_decay,
                        "nesterov": nesterov, "maximize": maximize}
        self._check_group(defaults)
        super().__init__(params, defaults)

    @staticmethod
    def _check_group(g):
        _check_float("learning rate", g["lr"], lo=0.0)
        _check_float("momentum value", g["momentum"], lo=0.0)
        _check_float("dampening value", g["dampening"])
        _check_float("weight_decay value", g["weight_decay"], lo=0.0)
        if g["nesterov"] and (g["momentum"] <= 0 or g["dampening"] != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")

    def _hyper(self, g):
        flags = (_F["maximize"] if g["maximize"] else 0) | (_F["nesterov"] if g["nesterov"] else 0)
        return (float(g["lr"]), float(g["weight_decay"]), 0.0, 0.0, 0.0, float(g["momentum"]),
                float(g["dampening"]), flags)

    def _pack(self, st):
        v = st[1]
        if v is None:   # no momentum: no state (torch keeps none either)
            return {}
        return {"momentum_buffer": _copy_state(v)}


class Adam(Optimizer):
    """Adam (Kingma & Ba), with amsgrad, weight decay (L2, or decoupled as AdamW) and
    maximize, as torch.optim.Adam:

        g = -grad if maximize else grad;  g += weight_decay * p   (AdamW: p *= 1 - lr * weight_decay)
        m = lerp(m, g, 1 - beta1);  v = beta2 * v + (1 - beta2) * g * g;  vmax = max(vmax, v)
        p = p - lr / (1 - beta1**t) * m / (sqrt(v or vmax) / sqrt(1 - beta2**t) + eps)
    """
    _names = ("step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq")
    _decoupled = False

    def __init__(self, params: Any, lr: float = 1e-3, betas: Tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0, amsgrad: bool = False, *,
                 maximize: bool = False, decoupled_weight_decay: Optional[bool] = None,
                 foreach: Optional[bool] = None, fused: Optional[bool] = None) -> None:
        if decoupled_weight_decay is None:
            decoupled_weight_decay = self._decoupled
        defaults = {"lr": lr, "betas": tuple(betas) if isinstance(betas, (list, tuple)) else betas,
                        "eps": eps, "weight_decay": weight_decay, "amsgrad": amsgrad, "maximize": maximize,
                        "decoupled_weight_decay": bool(decoupled_weight_decay)}
        self._check_group(defaults)
        super().__init__(params, defaults)

    @staticmethod
    def _check_group(g):
        _check_float("learning rate", g["lr"], lo=0.0)
        _check_float("epsilon value", g["eps"], lo=0.0)
        betas = g["betas"]
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        _check_float("beta parameter at index 0", betas[0], lo=0.0, hi=1.0, hi_open=True)
        _check_float("beta parameter at index 1", betas[1], lo=0.0, hi=1.0, hi_open=True)
        _check_float("weight_decay value", g["weight_decay"], lo=0.0)

    def _hyper(self, g):
        flags = (_F["adam"] | (_F["amsgrad"] if g["amsgrad"] else 0)
                 | (_F["maximize"] if g["maximize"] else 0)
                 | (_F["decoupled"] if g.get("decoupled_weight_decay", self._decoupled) else 0))
        b1, b2 = g["betas"]
        return (float(g["lr"]), float(g["weight_decay"]), float(b1), float(b2), float(g["eps"]), 0.0,
                0.0, flags)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter), as torch.optim.AdamW:
    p *= 1 - lr * weight_decay before the Adam update; weight_decay defaults to 1e-2."""
    _decoupled = True

    def __init__(self, params: Any, lr: float = 1e-3, betas: Tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2, amsgrad: bool = False, *,
                 maximize: bool = False, foreach: Optional[bool] = None, fused: Optional[bool] = None) -> None:
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         amsgrad=amsgrad, maximize=maximize, decoupled_weight_decay=True)


from . import lr_scheduler
from ._functional import (
    AdamState,
    GradientTransformation,
    SGDState,
    adam,
    adamw,
    apply_updates,
    sgd,
)
