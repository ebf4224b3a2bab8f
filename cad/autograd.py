"""torch-style reverse mode: backward() and grad()."""
from ._core import _engine as _C
from ._core._engine import enable_grad, is_grad_enabled, no_grad, set_grad_enabled  # noqa: F401


def _as_list(x, what):
    if type(x) is _C.Tensor:
        return [x]
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
    if create_graph:
        raise NotImplementedError("autograd.grad(create_graph=True): higher-order gradients are "
                                  "not in this version of cad")
    return _C.grad_api(outputs, inputs, grad_outputs, retain_graph, allow_unused)


def backward(tensors, grad_tensors=None, retain_graph=None):
    """Accumulate the gradients of tensors into the leaves' .grad."""
    outs = _as_list(tensors, "tensors")
    gouts = [None] * len(outs) if grad_tensors is None else _as_list(grad_tensors, "grad_tensors")
    _C.run_backward(outs, gouts, None, bool(retain_graph), True, False, "backward")
