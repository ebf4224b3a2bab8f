"""Scans along an axis: cumsum and cumprod, each one primitive.

A primitive as NOTE [ A primitive's rules ] wants it: this entry (arguments checked,
output shape and dtype, aux = [axis, reverse]) and its rules (vjp, jvp, eval)
together; its forward and vjp kernels are cpu/scan.c with their CUDA kernels in
cuda/kernels.cuh.  Eager calls go through the engine's one entry point (`bind`),
which records the op and runs the same forward kernel a replay runs."""
import numpy as np

from ._registry import Case, defop

try:
    from .._core import _engine as C
except ImportError:   # the build reads this table before the extension exists
    C = None

SCAN_CASES = [Case((4,)), Case((2, 3), axis=1), Case((2, 3), axis=0), Case((2, 3, 2), axis=-2),
              Case((2, 3)), Case(()), Case((0, 3), axis=1), Case((2, 0), axis=1),
              Case(("T", (3, 2)), axis=0), Case(("S", (3,)), axis=0)]

CUMSUM = defop("cumsum", "scan", kernel="cad_cumsum_vjp", naux=2, linear=("x",),
               ref=lambda a, axis=None: np.cumsum(a, axis=axis), cases=SCAN_CASES,
               doc="cumsum(x, axis=None): running sums along axis (numpy: the flattened "
                   "array when axis is None).")
CUMPROD = defop("cumprod", "scan", kernel="cad_cumprod_vjp", naux=2, reads={0: (0, "out")},
                ref=lambda a, axis=None: np.cumprod(a, axis=axis),
                cases=SCAN_CASES + [Case(("F", np.array([2.0, 0.0, 3.0, 0.0, 5.0])), name="zeros-data")],
                doc="cumprod(x, axis=None): running products along axis (numpy: the flattened "
                    "array when axis is None); the gradient is exact with zeros present.")


def _scan_args(x, axis, who):
    x = C.as_tensor(x)
    if x.dtype.kind not in "fiub":
        raise C.DTypeError(f"{who}: unsupported dtype {x.dtype}")
    if axis is None:
        x = C.reshape(x, (-1,))
        axis = 0
    elif x.ndim == 0:
        raise C.ShapeError(f"{who}: axis {axis} is out of bounds for a 0-d tensor (pass axis=None)")
    else:
        axis = C.normalize_axes(x.ndim, (axis,), who)[0]
    if x.dtype.kind != "f":   # integers and bools: numpy's result (int64), not differentiable
        return None, axis
    return C.contiguous(x), axis


def _scan(op, x, axis, reverse, who):
    t, axis = _scan_args(x, axis, who)
    if t is None:
        a = np.asarray(C.as_tensor(x).cpu().numpy() if isinstance(x, C.Tensor) else x)
        ref = np.cumsum if op is CUMSUM else np.cumprod
        res = ref(a.reshape(-1) if axis is None or a.ndim == 0 else a, axis=0 if a.ndim == 0 else axis)
        return C.const_on(np.asarray(res, dtype=np.int64), C.dev_of(x) if isinstance(x, C.Tensor) else 0)
    return C.bind(op.code, [t], (axis, int(bool(reverse))), tuple(t.shape), t.dtype, who)


@CUMSUM
def cumsum(x, axis=None, *, dim=None, reverse=False):
    """cumsum(x, axis=None); reverse=True sums from the end (used by its own vjp)"""
    return _scan(CUMSUM, x, dim if dim is not None else axis, reverse, "cumsum")


@CUMPROD
def cumprod(x, axis=None, *, dim=None):
    return _scan(CUMPROD, x, dim if dim is not None else axis, False, "cumprod")


# ---- rules (NOTE [ Rules and batch dims ] in _rules.py): the cotangent and tangents
# carry ctx.nb leading batch dims, so the scanned axis moves by nb

def _axis(ctx):
    return ctx.aux[0] + ctx.nb


@CUMSUM.vjp
def _cumsum_vjp(ctx, g):
    if not ctx.wants(0):
        return [None]
    return [cumsum(g, _axis(ctx), reverse=not ctx.aux[1])]


@CUMSUM.jvp
def _cumsum_jvp(ctx, ts):
    return None if ts[0] is None else cumsum(ts[0], _axis(ctx), reverse=bool(ctx.aux[1]))


@CUMSUM.eval
def _cumsum_eval(ctx, a):
    return C.bind(CUMSUM.code, [C.contiguous(a[0])], tuple(ctx.aux), tuple(ctx.out_shape),
                  ctx.out_dtype, "cumsum")


# NOTE [ cumprod's rules at zeros ]: d out_i / d x_j = prod_{k <= i, k != j} x_k for
# j <= i.  Without zeros that is out_i / x_j (the eager fast path).  With zeros the
# rules are written as prod's (reduce.py, _prod_partial): Q = cumprod of x with its
# zeros set to 1, c_i = the zeros in x_0..x_i, and the zero entries kept as factors
# (XF, XS: the row's first and second zero, values 0) so that the rules' own
# derivatives are right there too:
#   c_i = 0: out_i / x_j = Q_i / x_j
#   c_i = 1 (zero z1): Q_i at j = z1, else XF Q_i / x_j
#   c_i = 2 (z1 < z2): XS Q_i at j = z1, XF Q_i at j = z2, else 0 (XF XS Q_i / x_j)
#   c_i >= 3: 0
# Exact to second order with any zeros, to every order with at most one per row
# (prod's rule has the same bound).

# The rules' bodies are tapeview.pxi's cumprod_vjp and cumprod_jvp (NOTE [ Product
# rules written once ]): the sweeps call them too.

@CUMPROD.vjp
def _cumprod_vjp(ctx, g):
    if not ctx.wants(0):
        return [None]
    return [C.cumprod_vjp(ctx.val(0), ctx.out_val(), g, ctx.nb, ctx.aux[0])]   # (g: nb more dims than x)


@CUMPROD.jvp
def _cumprod_jvp(ctx, ts):
    if ts[0] is None:
        return None
    return C.cumprod_jvp(ctx.val(0), ctx.out_val(), ts[0], ctx.nb, ctx.aux[0])   # (t: nb more dims than x)


@CUMPROD.eval
def _cumprod_eval(ctx, a):
    return C.bind(CUMPROD.code, [C.contiguous(a[0])], tuple(ctx.aux), tuple(ctx.out_shape),
                  ctx.out_dtype, "cumprod")


def _check_scan(c):
    """the loader's check of a cumsum/cumprod record (c: cad.io.RecordCheck)"""
    c.nargs(1)
    c.naux(2)
    xsh = c.shs[0]
    c.need(c.dts[0] <= 1, f"scans float values, the input is {c.DTN[c.dts[0]]}", "args[0]")
    c.need(len(xsh) >= 1 and 0 <= c.aux[0] < len(xsh), f"axis {c.aux[0]} out of range for {len(xsh)} dims",
           "aux[0]")
    c.need(c.aux[1] in ((0, 1) if c.op.name == "cumsum" else (0,)), f"direction {c.aux[1]} is not allowed",
           "aux[1]")
    c.out_is(xsh, c.dts[0])


CUMSUM.check(_check_scan)
CUMPROD.check(_check_scan)
