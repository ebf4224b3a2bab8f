"""Reductions (primitives with hand-written vjps) and the ops composed from them."""
import numpy as np

from ._registry import Case, defop
from ._values import read

try:
    from .._core import _engine as C
except ImportError:   # the build reads this table before the extension exists
    C = None


def _axis(axis, dim, name):
    if dim is not None:
        if axis is not None:
            raise TypeError(f"{name}: give axis= or dim=, not both")
        return dim
    return axis


def _keep(keepdims, keepdim):
    return bool(keepdims if keepdim is None else keepdim)


def _no_out(name, out):
    if out is not None:
        raise TypeError(f"{name}: out= is not supported (cad tensors are immutable values)")


RED = [Case(()), Case((3,)), Case((2, 3)), Case((2, 3), axis=0),
       Case((2, 3), axis=-1, keepdims=True), Case((2, 3, 4), axis=(0, 2)),
       Case(("T", (3, 2)), axis=1), Case(("S", (3, 2)), axis=0), Case((0, 3), axis=0),
       Case((2, 3), axis=())]
RED_NONEMPTY = [c for c in RED if c.inputs[0] != (0, 3)] + [Case((0, 3), axis=1)]

SUM = defop("sum", "reduce", kernel="cad_sum_vjp", reads={0: ()}, ref=np.sum, int_ok=True, cases=RED,
            doc="sum(x, axis=None, keepdims=False): as numpy (dim=/keepdim= accepted).")
MAX = defop("max", "reduce", kernel="cad_maxmin_vjp", reads={0: (0, "out")}, ref=np.max, int_ok=True, cases=RED_NONEMPTY,
            doc="max(x, axis=None, keepdims=False): values (argmax gives indices); "
                "the gradient is shared evenly between tied maxima.")
MIN = defop("min", "reduce", kernel="cad_maxmin_vjp", reads={0: (0, "out")}, ref=np.min, int_ok=True, cases=RED_NONEMPTY,
            doc="min(x, axis=None, keepdims=False): values; ties share the gradient.")
PROD = defop("prod", "reduce", kernel="cad_prod_vjp", reads={0: (0,)}, ref=np.prod, int_ok=True,
             cases=RED + [Case(("V", np.array([[0.0, 1.5, 2.0], [0.0, 0.0, 3.0], [0.5, 0.0, 1.2]])), axis=1),
                          Case(("V", np.array([0.0, 1.5, 2.0])))],
             doc="prod(x, axis=None, keepdims=False); exact gradients with zeros present.")


def _reduce(op, x, axis, keepdims, dim, keepdim, dtype, out):
    _no_out(op.name, out)
    x = C.as_tensor(x)
    if dtype is not None:
        x = C.cast(x, dtype)
    return C.reduce(op.code, x, _axis(axis, dim, op.name), _keep(keepdims, keepdim))


@SUM
def sum(x, axis=None, keepdims=False, *, dim=None, keepdim=None, dtype=None, out=None):
    return _reduce(SUM, x, axis, keepdims, dim, keepdim, dtype, out)


@MAX
def max(x, axis=None, keepdims=False, *, dim=None, keepdim=None, out=None):
    return _reduce(MAX, x, axis, keepdims, dim, keepdim, None, out)


@MIN
def min(x, axis=None, keepdims=False, *, dim=None, keepdim=None, out=None):
    return _reduce(MIN, x, axis, keepdims, dim, keepdim, None, out)


@PROD
def prod(x, axis=None, keepdims=False, *, dim=None, keepdim=None, dtype=None, out=None):
    return _reduce(PROD, x, axis, keepdims, dim, keepdim, dtype, out)


MEAN = defop("mean", "composite", ref=np.mean, cases=[c for c in RED if c.inputs[0] != (0, 3)],
             doc="mean(x, axis=None, keepdims=False) = sum / count.")


@MEAN
def mean(x, axis=None, keepdims=False, *, dim=None, keepdim=None, dtype=None, out=None):
    _no_out("mean", out)
    x = C.as_float(x, "mean")
    if dtype is not None:
        x = C.cast(x, dtype)
    axes = C.normalize_axes(x.ndim, _axis(axis, dim, "mean"), "mean")
    n = 1
    for a in axes:
        n *= x.shape[a]
    s = C.reduce(SUM.code, x, axes, _keep(keepdims, keepdim))
    return s * (1.0 / n) if n else s * float("nan")


def _shift(x, axes):
    """max over axes (kept), as a constant: x - m is stable and m's gradient cancels
    (computed with cad ops, so a recorded tape recomputes it on replay)"""
    with C.no_grad_ctx():
        if any(x.shape[a] == 0 for a in axes):   # an empty slice: no max, nothing to shift
            return C.reduce(SUM.code, x.detach(), axes, True)      # (zeros of the kept shape)
        m = C.reduce(MAX.code, x.detach(), axes, True)
        m = C.where(C.isfinite(m), m, 0.0)
    return m


LSE_CASES = [Case((3,)), Case((2, 3)), Case((2, 3), axis=1), Case((2, 3), axis=0, keepdims=True),
             Case(("T", (3, 2)), axis=-1), Case((2, 3, 2), axis=(0, 2)), Case(()), Case((0,)),
             Case((2, 0), axis=1)]
LOGSUMEXP = defop("logsumexp", "composite", cases=LSE_CASES,
                  ref=lambda a, axis=None, keepdims=False: _np_lse(a, axis, keepdims),
                  doc="logsumexp(x, axis=None, keepdims=False): log(sum(exp(x))) computed stably.")


def _np_lse(a, axis=None, keepdims=False):
    m = np.max(a, axis=axis, keepdims=True, initial=-np.inf) if a.size else np.zeros(
        np.sum(a, axis=axis, keepdims=True).shape)
    with np.errstate(divide="ignore"):   # log(0) = -inf for an empty slice
        r = np.log(np.sum(np.exp(a - m), axis=axis, keepdims=True)) + m
    return r if keepdims else np.squeeze(r, axis=axis) if axis is not None else r.reshape(())


@LOGSUMEXP
def logsumexp(x, axis=None, keepdims=False, *, dim=None, keepdim=None):
    x = C.as_float(x, "logsumexp")
    axes = C.normalize_axes(x.ndim, _axis(axis, dim, "logsumexp"), "logsumexp")
    m = _shift(x, axes)
    r = C.log(sum(C.exp(x - m), axes, keepdims=True)) + m
    return r if _keep(keepdims, keepdim) else C.squeeze_axes(r, axes)


def _np_softmax(a, axis=-1):
    e = np.exp(a - (np.max(a, axis=axis, keepdims=True) if a.size else 0.0))
    return e / e.sum(axis=axis, keepdims=True)


SM_CASES = [Case((3,)), Case((2, 3)), Case((2, 3), axis=0), Case(("T", (3, 2))), Case((2, 0), axis=0),
            Case((0,)), Case((2, 0))]
SOFTMAX = defop("softmax", "composite", ref=_np_softmax, cases=SM_CASES,
                doc="softmax(x, axis=-1): exp(x) / sum(exp(x)) along axis, stably.")
LOG_SOFTMAX = defop("log_softmax", "composite", cases=SM_CASES,
                    ref=lambda a, axis=-1: np.log(_np_softmax(a, axis)),
                    doc="log_softmax(x, axis=-1) = x - logsumexp(x, axis, keepdims=True).")


@SOFTMAX
def softmax(x, axis=-1, *, dim=None):
    x = C.as_float(x, "softmax")
    axes = C.normalize_axes(x.ndim, axis if dim is None else dim, "softmax")
    e = C.exp(x - _shift(x, axes))
    return e / sum(e, axes, keepdims=True)


@LOG_SOFTMAX
def log_softmax(x, axis=-1, *, dim=None):
    x = C.as_float(x, "log_softmax")
    axes = C.normalize_axes(x.ndim, axis if dim is None else dim, "log_softmax")
    z = x - _shift(x, axes)
    return z - C.log(sum(C.exp(z), axes, keepdims=True))


ARGMAX = defop("argmax", "cmp", ref=np.argmax, differentiable=False,
               cases=[Case((3,)), Case((2, 3), axis=1), Case((2, 3), axis=0, keepdims=True)])
ARGMIN = defop("argmin", "cmp", ref=np.argmin, differentiable=False,
               cases=[Case((3,)), Case((2, 3), axis=1)])


def _arg_axis(x, axis, dim, name):
    """argmax/argmin's one axis (None: all), checked as the other reductions' axes"""
    ax = _axis(axis, dim, name)
    if ax is None:
        return None
    if isinstance(ax, bool) or not isinstance(ax, (int, np.integer)):
        raise TypeError(f"{name}: axis must be an int or None, got {type(ax).__name__} {ax!r}")
    return C.normalize_axes(np.ndim(C.host(x)), ax, name)[0]


@ARGMAX
def argmax(x, axis=None, keepdims=False, *, dim=None, keepdim=None):
    a = np.argmax(read(x, "argmax"), axis=_arg_axis(x, axis, dim, "argmax"), keepdims=_keep(keepdims, keepdim))
    return C.const_on(np.asarray(a), C.dev_of(x))


@ARGMIN
def argmin(x, axis=None, keepdims=False, *, dim=None, keepdim=None):
    a = np.argmin(read(x, "argmin"), axis=_arg_axis(x, axis, dim, "argmin"), keepdims=_keep(keepdims, keepdim))
    return C.const_on(np.asarray(a), C.dev_of(x))


# ---- differentiable rules (NOTE [ Rules and batch dims ] in _rules.py)

def _kept(xs, mask):
    return tuple(1 if (mask >> d) & 1 else s for d, s in enumerate(xs))


def _axes_of(mask, nd):
    return tuple(d for d in range(nd) if (mask >> d) & 1)


def _spread(ctx, g):
    """g (batch + out shape) broadcast back over the reduced axes"""
    xs = ctx.shape(0)
    bsh = g.shape[:ctx.nb]
    return C.expand(C.reshape(g, bsh + _kept(xs, ctx.aux[0])), bsh + xs)


def _collapse(ctx, t):
    """sum t (batch + x shape) over the reduced axes, as the op's output"""
    xs = ctx.shape(0)
    axes = tuple(a + ctx.nb for a in _axes_of(ctx.aux[0], len(xs)))
    return C.reduce(SUM.code, t, axes, len(ctx.out_shape) == len(xs) and len(xs) > 0)


@SUM.vjp
def _sum_vjp(ctx, g):
    return [_spread(ctx, g)]


@SUM.jvp
def _sum_jvp(ctx, ts):
    return _collapse(ctx, ts[0])


def _extreme_weights(ctx):
    """where x attains the max/min, 1/count (ties share): constant weights"""
    x, xs, mask = ctx.val(0), ctx.shape(0), ctx.aux[0]
    w = C.cast(C.eq(x, C.reshape(ctx.out_val(), _kept(xs, mask))), x.dtype)
    return w / C.reduce(SUM.code, w, _axes_of(mask, len(xs)), True)


@MAX.vjp
def _max_vjp(ctx, g):
    return [_spread(ctx, g) * _extreme_weights(ctx)]


@MAX.jvp
def _max_jvp(ctx, ts):
    return _collapse(ctx, ts[0] * _extreme_weights(ctx))


MIN.vjp(_max_vjp)
MIN.jvp(_max_jvp)


def _prod_partial(ctx):
    """d prod / dx_i = the product of the others, exact with zeros present and
    differentiable again (tapeview.pxi's prod_partial, NOTE [ Product rules written
    once ]: the sweeps call it too)"""
    return C.prod_partial(ctx.val(0), tuple(ctx.shape(0)), ctx.aux[0])


@PROD.vjp
def _prod_vjp(ctx, g):
    return [_spread(ctx, g) * _prod_partial(ctx)]


@PROD.jvp
def _prod_jvp(ctx, ts):
    return _collapse(ctx, ts[0] * _prod_partial(ctx))


# ---- eval rules (NOTE [ A primitive's rules ]): one record recomputed from its aux

def _reduce_eval(op):
    def ev(ctx, a):
        xs = ctx.shape(0)
        axes = tuple(d for d in range(len(xs)) if (ctx.aux[0] >> d) & 1)
        keep = len(ctx.out_shape) == len(xs) and len(xs) > 0
        return C.reduce(op.code, a[0], axes, keep)
    return ev


for _op in (SUM, MAX, MIN, PROD):
    _op.eval(_reduce_eval(_op))


def _check_reduce(c):
    """the loader's check of a reduction record (c: cad.io.RecordCheck)"""
    c.nargs(1)
    c.naux(1)
    xsh = c.shs[0]
    c.need(c.dts[0] <= 1, f"reduces float values, the input is {c.DTN[c.dts[0]]}", "args[0]")
    m = c.aux[0]
    c.need(0 <= m < (1 << len(xsh)), f"axis mask {m} out of range for {len(xsh)} dims", "aux[0]")
    red = [d for d in range(len(xsh)) if (m >> d) & 1]
    if c.op.name in ("max", "min"):
        c.need(all(xsh[d] > 0 for d in red), "reduces an empty axis (no identity)", "aux[0]")
    drop = tuple(s for d, s in enumerate(xsh) if d not in red)
    keep = tuple(1 if d in red else s for d, s in enumerate(xsh))
    c.out_is(keep if (c.osh == keep and len(c.osh) == len(xsh)) else drop, c.dts[0])


for _op in (SUM, MAX, MIN, PROD):
    _op.check(_check_reduce)
