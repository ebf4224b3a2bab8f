"""torch-style reverse mode: backward() and grad()."""
from ._core import _engine as _C
from ._core._engine import enable_grad, is_grad_enabled, no_grad, set_grad_enabled  # noqa: F401


def _as_list(x, what):
    if isinstance(x, _C.Tensor):
        return [x]
    if isinstance(x, (list, tuple)):
        return list(x)
    raise TypeError(f"autograd.grad: {what} must be a tensor or a sequence of tensors, got "
                    f"{type(x).__name__}")


def grad(outputs, inputs, grad_outputs=None, retain_graph=None, create_graph=False,
         allow_unused=False):
    """Gradients of outputs with respect to inputs, as a tuple (one per input);
    .grad is not touched.  The tape is consumed unless retain_graph=True."""
    outs = _as_list(outputs, "outputs")
    ins = _as_list(inputs, "inputs")
    for k, x in enumerate(ins):
        if not isinstance(x, _C.Tensor):
            raise TypeError(f"autograd.grad: input {k} is a {type(x).__name__}, not a tensor")
        if x.dtype.kind != "f":
            raise _C.DTypeError(f"autograd.grad: input {k} has dtype {x.dtype}; gradients are "
                                "defined for float inputs only")
        if not x.requires_grad:
            raise _C.BackwardError(f"autograd.grad: input {k} (shape {x.shape}) does not require "
                                   "grad")
    if grad_outputs is None:
        gouts = [None] * len(outs)
    else:
        gouts = _as_list(grad_outputs, "grad_outputs")
        if len(gouts) != len(outs):
            raise ValueError(f"autograd.grad: {len(gouts)} grad_outputs for {len(outs)} outputs")
    if create_graph:
        raise NotImplementedError("autograd.grad(create_graph=True): higher-order gradients are "
                                  "not in this version of cad")
    retain = create_graph if retain_graph is None else retain_graph
    return tuple(_C.run_backward(outs, gouts, ins, bool(retain), False, bool(allow_unused),
                                 "autograd.grad"))


def backward(tensors, grad_tensors=None, retain_graph=None):
    """Accumulate the gradients of tensors into the leaves' .grad."""
    outs = _as_list(tensors, "tensors")
    gouts = [None] * len(outs) if grad_tensors is None else _as_list(grad_tensors, "grad_tensors")
    _C.run_backward(outs, gouts, None, bool(retain_graph), True, False, "backward")
