"""torch-style reverse mode: backward() and grad()."""
from __future__ import annotations

from typing import Any, Optional, Sequence, Tuple, Union

from ._core import _engine as _C
from .ops._registry import NAMES as _NAMES
from .ops._registry import VMAP as _VMAP
from ._core._engine import enable_grad, is_grad_enabled, no_grad, set_grad_enabled  # noqa: F401


def _any_batched(xs):
    """is xs (a tensor or a sequence of them) or one of its items batched by cad.vmap?"""
    if type(xs) is _C.Tensor:
        return False
    if isinstance(xs, (list, tuple)):
        for x in xs:
            if type(x) is not _C.Tensor and getattr(x, "__cad_batched__", False):
                return True
        return False
    return getattr(xs, "__cad_batched__", False)


def _as_list(x, what):
    if type(x) is _C.Tensor:
        return [x]
    if isinstance(x, _C.Tensor) or getattr(x, "__cad_batched__", False):
        return [x]
    if isinstance(x, (list, tuple)):
        return list(x)
    raise TypeError(f"autograd.grad: {what} must be a tensor or a sequence of tensors, got "
                    f"{type(x).__name__}")


def grad(outputs: Union[_C.Tensor, Sequence[_C.Tensor]], inputs: Union[_C.Tensor, Sequence[_C.Tensor]],
         grad_outputs: Any = None, retain_graph: Optional[bool] = None, create_graph: bool = False,
         allow_unused: bool = False) -> Tuple[Optional[_C.Tensor], ...]:
    """Gradients of outputs with respect to inputs, as a tuple (one per input);
    .grad is not touched.  The tape is consumed unless retain_graph=True.
    grad_outputs batched by cad.vmap sweep once with the whole batch (the seed's
    Jacobian: vmap(lambda v: autograd.grad(y, x, v)[0])(eye))."""
    if _VMAP[0]:   # a vmap is running: batched values may be involved
        if _any_batched(outputs) or _any_batched(inputs):
            raise TypeError("autograd.grad: an output or input is batched by cad.vmap; inside "
                            "vmap use cad.grad / cad.vjp (they differentiate each example), or "
                            "call autograd.grad outside and vmap over the cotangents")
        if grad_outputs is not None and _any_batched(grad_outputs):
            from .vmap import _levels_in
            return _batched_grad(outputs, inputs, grad_outputs,
                                 _levels_in(_as_list(grad_outputs, "grad_outputs")), create_graph,
                                 allow_unused)
    if create_graph:
        from .transforms import grad_create_graph
        outs = _as_list(outputs, "outputs")
        ins = _as_list(inputs, "inputs")
        for k, x in enumerate(ins):
            if not isinstance(x, _C.Tensor):
                raise TypeError(f"autograd.grad: input {k} is a {type(x).__name__}, not a tensor")
            if x.dtype.kind != "f":
                raise _C.DTypeError(f"autograd.grad: input {k} has dtype {x.dtype}; gradients are "
                                    "defined for float inputs only")
        gouts = [None] * len(outs) if grad_outputs is None else _as_list(grad_outputs, "grad_outputs")
        if len(gouts) != len(outs):
            raise ValueError(f"autograd.grad: {len(gouts)} grad_outputs for {len(outs)} outputs")
        return _named(grad_create_graph(outs, ins, gouts, allow_unused, False, "autograd.grad"), ins)
    gs = _C.grad_api(outputs, inputs, grad_outputs, retain_graph, allow_unused)
    return _named(gs, inputs) if _NAMES[0] else gs   # (the test inline: a call per grad)


def _named(gs, inputs):
    """gradients named as their inputs (named dimensions)"""
    if not _NAMES[0]:
        return gs
    from .names import like
    ins = inputs if isinstance(inputs, (list, tuple)) else (inputs,)
    return tuple(like(g, x) if g is not None else g for g, x in zip(gs, ins))


def backward(tensors: Union[_C.Tensor, Sequence[_C.Tensor]], grad_tensors: Any = None,
             retain_graph: Optional[bool] = None, create_graph: bool = False) -> None:
    """Accumulate the gradients of tensors into the leaves' .grad."""
    outs = _as_list(tensors, "tensors")
    gouts = [None] * len(outs) if grad_tensors is None else _as_list(grad_tensors, "grad_tensors")
    if len(gouts) != len(outs):
        raise ValueError(f"backward: {len(gouts)} gradients (grad_tensors) for {len(outs)} tensors; "
                         "pass one per tensor (None for a scalar), or none at all")
    if create_graph:
        from .transforms import grad_create_graph
        grad_create_graph(outs, None, gouts, False, True, "backward")
        return
    _C.run_backward(outs, gouts, None, bool(retain_graph), True, False, "backward")


def _batched_grad(outputs, inputs, grad_outputs, levels, create_graph, allow_unused):
    """autograd.grad with grad_outputs batched by the vmaps `levels` (which began
    after the outputs were computed): one sweep over the batch of cotangents; the
    tape is kept (the other rows of the batch reuse it)"""
    from . import tree as T
    from .transforms import VjpFn
    from .vmap import batched_call
    outs = _as_list(outputs, "outputs")
    ins = _as_list(inputs, "inputs")
    gouts = _as_list(grad_outputs, "grad_outputs")
    if len(gouts) != len(outs):
        raise ValueError(f"autograd.grad: {len(gouts)} grad_outputs for {len(outs)} outputs")
    for k, y in enumerate(outs):
        if not isinstance(y, _C.Tensor) or not y.requires_grad:
            raise _C.BackwardError(f"autograd.grad: output {k} does not require grad")
    leaf = T.tree_structure(0)
    fn = VjpFn(outs, ins, [(leaf, k, 1) for k in range(len(ins))], T.tree_structure(outs),
               bool(create_graph), create_graph=bool(create_graph), unused_none=True)
    res = batched_call(fn, gouts, levels)
    if not allow_unused:
        for k, (x, r) in enumerate(zip(ins, res)):
            if r is None:
                raise _C.BackwardError(f"autograd.grad: input {k} (shape {x.shape}) was not used to "
                                       "compute the outputs; pass allow_unused=True")
    return tuple(res)
