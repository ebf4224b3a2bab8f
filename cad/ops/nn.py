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


XENT = defop("xent", "xent", kernel="cad_xent_vjp", reads={0: (0, 1, "out")}, method=False, export=False,
             doc="per-row logsumexp(z) - z[label] (cross_entropy's primitive)")


def xent(logits, labels):
    """per-row cross-entropy: logsumexp(z[i]) - z[i, labels[i]] for z (N, C) and integer
    labels (N,); one pass in C (cad_xent_fwd, the kernel a replay runs, through the
    engine's one entry point), labels read by the kernel (so a recorded tape takes new
    labels)"""
    z, lab = C.as_tensor(logits), C.as_tensor(labels)
    if z.ndim != 2 or z.dtype.kind != "f":
        raise C.ShapeError(f"cross_entropy: logits must be a float (N, C) tensor, got {z.shape} {z.dtype}")
    if lab.dtype != C.int64:
        raise C.DTypeError(f"cross_entropy: labels must be integers, got {lab.dtype}")
    if lab.shape != (z.shape[0],):
        raise C.ShapeError(f"cross_entropy: logits of shape {z.shape} need labels of shape "
                           f"({z.shape[0]},), got {lab.shape}")
    return C.bind(XENT.code, [z, lab], (), (z.shape[0],), z.dtype, "cross_entropy")


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
        return C.reshape(xent(C.reshape(logits, (1, -1)), C.reshape(lab, (1,))), ())
    nll = xent(logits, lab)
    if reduction == "none":
        return nll
    s = C.reduce(SUM.code, nll, None, False)
    if reduction == "sum":
        return s
    return s * (1.0 / lab.shape[0]) if lab.shape[0] else s * float("nan")   # an empty batch: nan (torch)


# ---- differentiable rules (NOTE [ Rules and batch dims ] in _rules.py)

def _xent_delta(ctx):
    """softmax(z) - onehot(labels): d nll / d z (tapeview.pxi's xent_delta, NOTE
    [ Product rules written once ]: the sweeps call it too)"""
    return C.xent_delta(ctx.val(0), ctx.val(1))


@XENT.vjp
def _xent_vjp(ctx, g):
    return [C.reshape(g, g.shape + (1,)) * _xent_delta(ctx), None]


@XENT.jvp
def _xent_jvp(ctx, ts):
    return C.reduce(SUM.code, ts[0] * _xent_delta(ctx), (ts[0].ndim - 1,), False)


@XENT.eval
def _xent_eval(ctx, a):
    return xent(a[0], a[1])


@XENT.check
def _check_xent(c):
    """the loader's check of a cross-entropy record (c: cad.io.RecordCheck)"""
    c.nargs(2)
    c.naux(0)
    shs, dts = c.shs, c.dts
    c.need(len(shs[0]) == 2 and dts[0] <= 1, f"float (N, C) logits, got {c.sig()}", "args[0]")
    c.need(dts[1] == 2 and shs[1] == shs[0][:1], f"int64 labels of shape ({shs[0][0]},), got {c.sig()}",
           "args[1]")
    c.out_is(shs[0][:1], dts[0])
