"""Losses built from the primitives."""
import numpy as np

from ._registry import Case, defop
from .reduce import SUM, log_softmax

try:
    from .._core import _engine as C
except ImportError:   # the build reads this table before the extension exists
    C = None


def _np_ce(logits, labels, reduction="mean"):
    z = logits - logits.max(axis=-1, keepdims=True)
    lp = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
    if lp.ndim == 1:
        return -lp[labels]
    nll = -np.take_along_axis(lp, labels[:, None], axis=1)[:, 0]
    return {"mean": nll.mean(), "sum": nll.sum(), "none": nll}[reduction]


CROSS_ENTROPY = defop(
    "cross_entropy", "composite", method=False, ref=_np_ce,
    cases=[Case((4, 3), ("I", np.array([0, 2, 1, 2]))),
           Case((4, 3), ("I", np.array([0, 2, 1, 2])), reduction="sum"),
           Case((2, 5), ("I", np.array([4, 0])), reduction="none"),
           Case((3,), ("I", np.array(1)))],
    doc="cross_entropy(logits, labels, reduction='mean'): logits (N, C) or (C,), integer "
        "labels (N,) or (); as torch.nn.functional.cross_entropy.")


XENT = defop("xent", "xent", kernel="cad_xent_vjp", method=False, export=False,
             doc="per-row logsumexp(z) - z[label] (cross_entropy's primitive)")


@CROSS_ENTROPY
def cross_entropy(logits, labels, reduction="mean"):
    logits = C.as_float(logits, "cross_entropy")
    lab = labels if isinstance(labels, C.Tensor) else C.as_tensor(np.asarray(labels))
    if lab.dtype.kind not in "iu":
        raise TypeError(f"cross_entropy: labels must be integers, got dtype {lab.dtype}")
    if logits.ndim not in (1, 2) or lab.ndim != logits.ndim - 1 or \
            (logits.ndim == 2 and lab.shape[0] != logits.shape[0]):
        raise ValueError(f"cross_entropy: logits of shape {logits.shape} need labels of shape "
                         f"{logits.shape[:-1]}, got {lab.shape}")
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"cross_entropy: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    if logits.ndim == 1:
        return C.reshape(C.xent(C.reshape(logits, (1, -1)), C.reshape(lab, (1,))), ())
    nll = C.xent(logits, lab)
    if reduction == "none":
        return nll
    s = C.reduce(SUM.code, nll, None, False)
    if reduction == "sum":
        return s
    return s * (1.0 / lab.shape[0]) if lab.shape[0] else s * float("nan")   # an empty batch: nan (torch)


# ---- differentiable rules (NOTE [ Rules and batch dims ] in _rules.py)

def _xent_delta(ctx):
    """softmax(z) - onehot(labels): d nll / d z"""
    from .reduce import softmax
    z, lab = ctx.val(0), ctx.val(1)
    onehot = C.cast(C.eq(C.reshape(lab, lab.shape + (1,)),
                         C.const_on(np.arange(z.shape[1]), C.dev_of(z))), z.dtype)
    return softmax(z, -1) - onehot


@XENT.vjp
def _xent_vjp(ctx, g):
    return [C.reshape(g, g.shape + (1,)) * _xent_delta(ctx), None]


@XENT.jvp
def _xent_jvp(ctx, ts):
    return C.reduce(SUM.code, ts[0] * _xent_delta(ctx), (ts[0].ndim - 1,), False)
