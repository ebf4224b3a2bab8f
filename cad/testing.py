"""Checking derivatives against finite differences."""
from __future__ import annotations

from typing import Any, Callable, Sequence

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
    # not under no_grad: f may differentiate inside (derivative functions)
    return [np.array(np.asarray(o), dtype=np.float64) for o in _outputs(f(*args))]


def _analytic_rev(f, inputs, diff, outs):
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
    return ana


def _analytic_fwd(f, inputs, diff, outs):
    """columns of the Jacobian by forward mode (one jvp per input element)"""
    from .transforms import jvp
    cols = {}   # (k, i) -> array (out size, in size)
    for i in diff:
        x = inputs[i]
        for e in range(x.size):
            def g(xi, i=i):
                args = list(inputs)
                args[i] = xi
                return tuple(_outputs(f(*args)))
            t = np.zeros(x.shape)
            t.reshape(-1)[e] = 1
            _, touts = jvp(g, (x,), (_C.as_tensor(t),))
            for k, to in enumerate(touts):
                cols.setdefault((k, i), np.zeros((outs[k].size, x.size)))[:, e] = \
                    np.asarray(to, dtype=np.float64).reshape(-1)
    ana = {}
    for (k, i), m in cols.items():
        for j in range(outs[k].size):
            ana[(k, j, i)] = m[j]
    return ana


def gradcheck(f: Callable[..., Any], inputs: Any, eps: float = 1e-6, atol: float = 1e-5, rtol: float = 1e-3,
              raise_exception: bool = True, nmax: int = 8, modes: Sequence[str] = ("rev",),
              order: int = 1) -> bool:
    """Compare the Jacobian of f at inputs with central finite differences.

    inputs: a tensor or a tuple; the tensors that require grad are differentiated.
    modes: "rev" (reverse mode, autograd.grad) and/or "fwd" (forward mode, jvp).
    order=2 also checks the derivatives of the derivative functions (vjp with a fixed
    random cotangent, jvp with a fixed random tangent) in every mode, as HIPS
    autograd's check_grads does.  Returns True, or raises GradcheckError with a
    table of the worst mismatches (False instead when raise_exception=False)."""
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
    for m in modes:
        if m not in ("rev", "fwd"):
            raise ValueError(f"gradcheck: unknown mode {m!r}; use 'rev' and/or 'fwd'")
    outs = _outputs(f(*inputs))
    num = {}
    for i in diff:
        x0 = np.array(np.asarray(inputs[i]), dtype=np.float64)
        order_ = "F" if (x0.ndim > 1 and np.asarray(inputs[i]).flags.f_contiguous
                         and not np.asarray(inputs[i]).flags.c_contiguous) else "C"
        for e in range(x0.size):
            vals = []
            for sgn in (1, -1):
                xp = x0.copy()
                xp.reshape(-1)[e] += sgn * eps
                args = list(inputs)
                args[i] = _C.from_numpy(np.asarray(xp, order=order_), None, True)
                vals.append(_eval(f, args))
            for k in range(len(outs)):
                d = (vals[0][k] - vals[1][k]).reshape(-1) / (2 * eps)
                for j in range(outs[k].size):
                    num[(k, j, i, e)] = d[j]
    ok = True
    for mode in modes:
        ana = (_analytic_rev if mode == "rev" else _analytic_fwd)(f, inputs, diff, outs)
        rows = [(k, i, j, e, ana[(k, j, i)][e], n) for (k, j, i, e), n in num.items()]
        bad = [r for r in rows if not abs(r[4] - r[5]) <= atol + rtol * abs(r[5])]
        if bad:
            if not raise_exception:
                return False
            bad.sort(key=lambda r: -abs(r[4] - r[5]))
            lines = [f"gradcheck ({mode} mode): {len(bad)} of {len(rows)} Jacobian entries differ "
                     f"(atol={atol}, rtol={rtol}, eps={eps}); worst:",
                     f"{'output':>6} {'input':>5} {'out idx':>8} {'in idx':>8} {'analytical':>14} "
                     f"{'numerical':>14}"]
            for k, i, j, e, a, n in bad[:nmax]:
                oi = np.unravel_index(j, outs[k].shape) if outs[k].ndim else ()
                ii = np.unravel_index(e, inputs[i].shape) if inputs[i].ndim else ()
                lines.append(f"{k:>6} {i:>5} {str(tuple(int(v) for v in oi)):>8} "
                             f"{str(tuple(int(v) for v in ii)):>8} {a:>14.6g} {n:>14.6g}")
            raise GradcheckError("\n".join(lines))
    if order > 1:
        ok = _check_derivative_functions(f, inputs, diff, outs, eps, atol, rtol, raise_exception,
                                         nmax, modes, order)
    return ok


def _check_derivative_functions(f, inputs, diff, outs, eps, atol, rtol, raise_exception, nmax,
                                modes, order):
    from .transforms import jvp, vjp
    rng = np.random.default_rng(0)
    xs = tuple(inputs[i] for i in diff)

    def call(*zs):
        args = list(inputs)
        for i, z in zip(diff, zs):
            args[i] = z
        return tuple(_outputs(f(*args)))
    for mode in modes:
        if mode == "rev":
            cts = tuple(_C.as_tensor(rng.standard_normal(o.shape)) for o in outs)

            def deriv(*zs, cts=cts):
                return vjp(call, *zs)[1](cts)
        else:
            tans = tuple(_C.as_tensor(rng.standard_normal(x.shape)) for x in xs)

            def deriv(*zs, tans=tans):
                return jvp(call, zs, tans)[1]
        leaves = tuple(_C.from_numpy(np.asarray(x), None, True) for x in xs)
        if not gradcheck(deriv, leaves, eps, atol, rtol, raise_exception, nmax, modes, order - 1):
            return False
    return True


def gradgradcheck(f: Callable[..., Any], inputs: Any, grad_outputs: Any = None, eps: float = 1e-6,
                  atol: float = 1e-5, rtol: float = 1e-3, raise_exception: bool = True) -> bool:
    """Check second derivatives the way torch.autograd.gradgradcheck does: the
    gradient of f (taken with create_graph=True, against fixed random grad_outputs)
    is checked with gradcheck."""
    if isinstance(inputs, _C.Tensor) or not isinstance(inputs, (tuple, list)):
        inputs = (inputs,)
    inputs = tuple(inputs)
    diff = [i for i, x in enumerate(inputs) if isinstance(x, _C.Tensor) and x.requires_grad]
    outs = _outputs(f(*inputs))
    if grad_outputs is None:
        rng = np.random.default_rng(1)
        grad_outputs = [_C.as_tensor(rng.standard_normal(o.shape)) for o in outs]
    elif isinstance(grad_outputs, _C.Tensor):
        grad_outputs = [grad_outputs]

    def first(*zs):
        args = list(inputs)
        for i, z in zip(diff, zs):
            args[i] = z
        os_ = [o for o in _outputs(f(*args))]
        live = [(o, g) for o, g in zip(os_, grad_outputs) if o.requires_grad]
        if not live:
            return tuple(_C.as_tensor(np.zeros(z.shape)) for z in zs)
        gs = _autograd.grad([o for o, _ in live], list(zs), [g for _, g in live],
                            create_graph=True, allow_unused=True)
        return tuple(g if g is not None else _C.as_tensor(np.zeros(z.shape)) for g, z in zip(gs, zs))
    leaves = tuple(inputs[i] for i in diff)
    return gradcheck(first, leaves, eps, atol, rtol, raise_exception)
