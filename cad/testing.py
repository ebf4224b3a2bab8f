"""Checking derivatives against finite differences."""
import numpy as np

from ._core import _engine as _C
from . import autograd as _autograd


class GradcheckError(AssertionError):
    """Analytical and numerical derivatives disagree (the message has a table)."""


def _outputs(y):
    if isinstance(y, _C.Tensor):
        return [y]
    if isinstance(y, (tuple, list)):
        return [o for o in y if isinstance(o, _C.Tensor)]
    raise TypeError(f"gradcheck: f must return a tensor or a tuple of tensors, got {type(y).__name__}")


def _eval(f, args):
    with _C.no_grad():
        return [np.array(np.asarray(o), dtype=np.float64) for o in _outputs(f(*args))]


def gradcheck(f, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, raise_exception=True, nmax=8):
    """Compare the Jacobian of f at inputs computed by reverse mode with central
    finite differences.  inputs: a tensor or a tuple; the tensors that require grad
    are differentiated.  Returns True, or raises GradcheckError with a table of the
    worst mismatches (False instead when raise_exception=False)."""
    if isinstance(inputs, _C.Tensor) or not isinstance(inputs, (tuple, list)):
        inputs = (inputs,)
    inputs = tuple(inputs)
    diff = [i for i, x in enumerate(inputs) if isinstance(x, _C.Tensor) and x.requires_grad]
    if not diff:
        raise ValueError("gradcheck: no input requires grad")
    for i in diff:
        if inputs[i].dtype != np.float64:
            raise _C.DTypeError(f"gradcheck: input {i} is {inputs[i].dtype}; finite differences "
                                "need float64 inputs")
    outs = _outputs(f(*inputs))
    base = [np.asarray(o) for o in outs]
    rows = []   # (output, input, out index, in index, analytical, numerical)
    # analytical: one reverse sweep per output element
    ana = {}
    for k, o in enumerate(outs):
        for j in range(o.size):
            if not o.requires_grad:
                gs = [None] * len(diff)
            else:
                seed = np.zeros(o.shape, dtype=o.dtype)
                seed.reshape(-1)[j] = 1
                gs = _autograd.grad(o, [inputs[i] for i in diff], grad_outputs=_C.as_tensor(seed),
                                    retain_graph=True, allow_unused=True)
            for n, i in enumerate(diff):
                g = np.zeros(inputs[i].shape) if gs[n] is None else np.asarray(gs[n], dtype=np.float64)
                ana[(k, j, i)] = g.reshape(-1)
    # numerical: central differences per input element
    for i in diff:
        x0 = np.array(np.asarray(inputs[i]), dtype=np.float64)
        order = "F" if (x0.ndim > 1 and np.asarray(inputs[i]).flags.f_contiguous
                        and not np.asarray(inputs[i]).flags.c_contiguous) else "C"
        for e in range(x0.size):
            vals = []
            for sgn in (1, -1):
                xp = x0.copy()
                xp.reshape(-1)[e] += sgn * eps
                xt = _C.from_numpy(np.asarray(xp, order=order), None, True)
                args = list(inputs)
                args[i] = xt
                vals.append(_eval(f, args))
            for k in range(len(outs)):
                num = (vals[0][k] - vals[1][k]).reshape(-1) / (2 * eps)
                for j in range(outs[k].size):
                    a = ana[(k, j, i)][e]
                    rows.append((k, i, j, e, a, num[j]))
    bad = [r for r in rows if not abs(r[4] - r[5]) <= atol + rtol * abs(r[5])]
    if not bad:
        return True
    if not raise_exception:
        return False
    bad.sort(key=lambda r: -abs(r[4] - r[5]))
    lines = [f"gradcheck: {len(bad)} of {len(rows)} Jacobian entries differ "
             f"(atol={atol}, rtol={rtol}, eps={eps}); worst:",
             f"{'output':>6} {'input':>5} {'out idx':>8} {'in idx':>8} {'analytical':>14} {'numerical':>14}"]
    for k, i, j, e, a, n in bad[:nmax]:
        oi = np.unravel_index(j, outs[k].shape) if outs[k].ndim else ()
        ii = np.unravel_index(e, inputs[i].shape) if inputs[i].ndim else ()
        lines.append(f"{k:>6} {i:>5} {str(tuple(int(v) for v in oi)):>8} "
                     f"{str(tuple(int(v) for v in ii)):>8} {a:>14.6g} {n:>14.6g}")
    raise GradcheckError("\n".join(lines))
