"""Shape ops.  One primitive, ``view``, covers every op that re-indexes its input
without arithmetic (reshape, transpose/permute, expand/broadcast_to, squeeze,
unsqueeze, basic indexing): its record holds (offset, shape, strides) relative to
the input's contiguous layout, and its vjp accumulates into that strided window of
the input's gradient.  ``concatenate`` is the other primitive."""
import math
import operator
from typing import Any, Sequence

import numpy as np

from ._registry import Case, defop

try:
    from .._core import _engine as C
except ImportError:   # the build reads this table before the extension exists
    C = None

VIEW = defop("view", "view", kernel="cad_view_vjp", method=False, export=False,
             doc="as_strided view relative to the input's contiguous layout (internal)")
def _np_unview(g, offset, vshape, vstrides, out_shape):
    out = np.zeros(int(np.prod(out_shape)))
    idx = offset + sum(np.arange(n).reshape((-1,) + (1,) * (len(vshape) - d - 1)) * st
                       for d, (n, st) in enumerate(zip(vshape, vstrides)))
    np.add.at(out, np.broadcast_to(idx, vshape).reshape(-1), np.asarray(g).reshape(-1))
    return out.reshape(out_shape)


UNVIEW = defop("unview", "unview", kernel="cad_unview_vjp", method=False, export=False,
               ref=_np_unview,
               cases=[Case((2, 2), offset=1, vshape=(2, 2), vstrides=(3, 1), out_shape=(2, 3)),
                      Case((3,), offset=0, vshape=(3,), vstrides=(0,), out_shape=(2,)),
                      Case((2, 3), offset=0, vshape=(2, 3), vstrides=(1, 2), out_shape=(3, 2))],
               doc="adjoint of view: zeros, then the strided window += g (internal)")
CONCAT = defop("concatenate", "concat", kernel="cad_concat_vjp", method=False,
               ref=lambda *a, axis=0: np.concatenate(a, axis=axis),
               cases=[Case((2,), (3,)), Case((2, 3), (1, 3)), Case((2, 3), (2, 2), axis=1),
                      Case((0, 3), (2, 3)), Case(("T", (3, 2)), (3, 1), axis=-1),
                      Case((2,), ("F", np.array([1.0, 2.0])))],
               seq=True, doc="concatenate(tensors, axis=0) as numpy (cat(tensors, dim=0) as torch).")


def _shape_arg(shape, name):
    if len(shape) == 1 and not isinstance(shape[0], int) and shape[0] is not None:
        shape = tuple(shape[0])
    try:
        return tuple(operator.index(s) for s in shape)   # (no silent truncation of 2.5)
    except TypeError:
        raise TypeError(f"{name}: shape must be ints, got {shape!r}") from None


RESHAPE = defop("reshape", "composite", ref=lambda a, shape: np.reshape(a, shape),
                cases=[Case((2, 3), shape=(3, 2)), Case((2, 3), shape=(-1,)), Case((), shape=(1, 1)),
                       Case(("T", (3, 2)), shape=(6,)), Case((0, 3), shape=(3, 0)),
                       Case(("S", (2, 2)), shape=(4,)), Case((1,), shape=())],
                doc="reshape(x, *shape): as numpy (C order); -1 infers one size.")


@RESHAPE
def reshape(x, *shape, **kw):
    if "shape" in kw:
        shape = (kw.pop("shape"),)
    if kw:
        raise TypeError(f"reshape: unexpected arguments {sorted(kw)}")
    return C.reshape(C.as_tensor(x), _shape_arg(shape, "reshape"))


FLATTEN = defop("flatten", "composite", ref=lambda a: a.reshape(-1),
                cases=[Case((2, 3)), Case(())], doc="flatten(x): 1-D copy in C order.")


@FLATTEN
def flatten(x):
    return C.reshape(C.as_tensor(x), (-1,))


TRANSPOSE = defop("transpose", "composite", ref=lambda a, axes=None: np.transpose(a, axes),
                  cases=[Case((2, 3)), Case((2, 3, 4), axes=(1, 2, 0)), Case(()), Case(("T", (3, 2))),
                         Case((0, 2))],
                  doc="transpose(x, axes=None): as numpy (reverses the axes by default); "
                      "transpose(x, a, b) with two integer axes swaps them, as torch.")


@TRANSPOSE
def transpose(x, axes=None, *args):
    x = C.as_tensor(x)
    if args:
        if len(args) == 1 and isinstance(axes, (int, np.integer)):
            # transpose(x, a, b): two integer axes swap them (torch); they never
            # mean a permutation (numpy's function raises here)
            return swapaxes(x, axes, args[0])
        axes = (axes,) + args   # x.transpose(2, 0, 1): a permutation, as numpy's method
    if axes is None:
        axes = tuple(range(x.ndim - 1, -1, -1))
    return C.transpose(x, tuple(axes))


PERMUTE = defop("permute", "composite", ref=lambda a, dims: np.transpose(a, dims),
                cases=[Case((2, 3, 4), dims=(2, 0, 1))],
                doc="permute(x, *dims): as torch.")


@PERMUTE
def permute(x, *dims, **kw):
    if "dims" in kw:
        dims = (kw.pop("dims"),)
    return C.transpose(C.as_tensor(x), _shape_arg(dims, "permute"))


SWAPAXES = defop("swapaxes", "composite", ref=lambda a, axis1, axis2: np.swapaxes(a, axis1, axis2),
                 cases=[Case((2, 3, 4), axis1=0, axis2=2)], doc="swapaxes(x, a, b).")


@SWAPAXES
def swapaxes(x, axis1, axis2):
    x = C.as_tensor(x)
    ax = list(range(x.ndim))
    a1, a2 = C.normalize_axes(x.ndim, (axis1, axis2), "swapaxes", unique=False)
    ax[a1], ax[a2] = ax[a2], ax[a1]
    return C.transpose(x, tuple(ax))


BROADCAST_TO = defop("broadcast_to", "composite", ref=lambda a, shape: np.broadcast_to(a, shape),
                     cases=[Case((3,), shape=(2, 3)), Case((), shape=(2,)), Case((2, 1), shape=(2, 4)),
                            Case((1, 3), shape=(0, 3))],
                     doc="broadcast_to(x, shape): as numpy.")


@BROADCAST_TO
def broadcast_to(x, shape):
    if isinstance(shape, int):
        shape = (shape,)
    return C.expand(C.as_tensor(x), tuple(int(s) for s in shape))


EXPAND = defop("expand", "composite", ref=lambda a, shape: np.broadcast_to(a, shape),
               cases=[Case((2, 1), shape=(2, 3))],
               doc="expand(x, *sizes): as torch; -1 keeps a size.")


@EXPAND
def expand(x, *shape, **kw):
    if "shape" in kw:
        shape = (kw.pop("shape"),)
    x = C.as_tensor(x)
    shape = list(_shape_arg(shape, "expand"))
    off = len(shape) - x.ndim
    for i, s in enumerate(shape):
        if s == -1:
            if i < off:
                raise ValueError(f"expand: -1 is not allowed for the new leading dim {i}")
            shape[i] = x.shape[i - off]
    return C.expand(x, tuple(shape))


SQUEEZE = defop("squeeze", "composite", ref=lambda a, axis=None: np.squeeze(a, axis),
                cases=[Case((1, 3, 1)), Case((1, 3, 1), axis=0), Case((1, 3, 1), axis=(0, 2))],
                doc="squeeze(x, axis=None): drop size-1 axes.")


@SQUEEZE
def squeeze(x, axis=None, *, dim=None):
    x = C.as_tensor(x)
    axis = dim if dim is not None else axis
    if axis is None:
        axes = tuple(i for i, s in enumerate(x.shape) if s == 1)
    else:
        axes = C.normalize_axes(x.ndim, axis, "squeeze")
        for a in axes:
            if x.shape[a] != 1:
                raise ValueError(f"squeeze: cannot select axis {a} of size {x.shape[a]} "
                                 f"(shape {x.shape}); only size-1 axes can be squeezed")
    return C.squeeze_axes(x, axes)


UNSQUEEZE = defop("unsqueeze", "composite", ref=lambda a, dim: np.expand_dims(a, dim),
                  cases=[Case((3,), dim=0), Case((2, 3), dim=-1), Case((), dim=0)],
                  doc="unsqueeze(x, dim): insert a size-1 axis (expand_dims in numpy).")


@UNSQUEEZE
def unsqueeze(x, dim):
    x = C.as_tensor(x)
    nd = x.ndim + 1
    d = dim + nd if dim < 0 else dim
    if not 0 <= d < nd:
        raise IndexError(f"unsqueeze: dim {dim} out of range for a tensor of dimension {x.ndim}")
    shape = list(x.shape)
    shape.insert(d, 1)
    return C.reshape(x, tuple(shape))


def expand_dims(x: Any, axis: Any) -> "C.Tensor":
    """expand_dims(x, axis): as numpy (unsqueeze)."""
    return unsqueeze(x, axis)


@CONCAT
def concatenate(tensors, axis=0, *, dim=None):
    if dim is not None:
        axis = dim
    return C.concat([C.as_tensor(t) for t in tensors], axis)


def cat(tensors: Sequence[Any], dim: int = 0) -> "C.Tensor":
    """cat(tensors, dim=0): torch's name for concatenate."""
    return concatenate(tensors, dim)


STACK = defop("stack", "composite", ref=lambda *a, axis=0: np.stack(a, axis=axis),
              cases=[Case((2,), (2,)), Case((2, 3), (2, 3), axis=1), Case((), ()),
                     Case((3,), (3,), axis=-1)],
              seq=True, doc="stack(tensors, axis=0): join along a new axis.")


@STACK
def stack(tensors, axis=0, *, dim=None):
    if dim is not None:
        axis = dim
    ts = [C.as_tensor(t) for t in tensors]
    if not ts:
        raise ValueError("stack: need at least one tensor")
    nd = ts[0].ndim + 1
    a = axis + nd if axis < 0 else axis
    if not 0 <= a < nd:
        raise IndexError(f"stack: axis {axis} out of range for tensors of dimension {nd - 1}")
    for t in ts[1:]:
        if t.shape != ts[0].shape:
            raise ValueError(f"stack: all tensors must have the same shape, got {ts[0].shape} and {t.shape}")
    return C.concat([unsqueeze(t, a) for t in ts], a)


# ---- differentiable rules (NOTE [ Rules and batch dims ] in _rules.py)

def _prod(shape):
    n = 1
    for s in shape:
        n *= s
    return n


def _batch_strides(bsh, inner):
    """contiguous strides of batch dims in front of blocks of `inner` elements"""
    st, s = [], inner
    for d in reversed(bsh):
        st.append(s)
        s *= max(d, 1)
    return tuple(reversed(st))


def _window(aux):
    off, nd = aux[0], aux[1]
    return off, tuple(aux[2:2 + nd]), tuple(aux[2 + nd:2 + 2 * nd])


@UNVIEW
def unview(g, offset, vshape, vstrides, out_shape):
    return C.unview(g, offset, vshape, vstrides, out_shape)


@VIEW.vjp
def _view_vjp(ctx, g):
    off, vsh, vst = _window(ctx.aux)
    xs = ctx.shape(0)
    bsh = g.shape[:ctx.nb]
    return [C.unview(g, off, bsh + vsh, _batch_strides(bsh, _prod(xs)) + vst, bsh + xs)]


@VIEW.jvp
def _view_jvp(ctx, ts):
    off, vsh, vst = _window(ctx.aux)
    t = ts[0]
    bsh = t.shape[:ctx.nb]
    return C.as_strided(t, off, bsh + vsh, _batch_strides(bsh, _prod(ctx.shape(0))) + vst)


@UNVIEW.vjp
def _unview_vjp(ctx, g):
    off, vsh, vst = _window(ctx.aux)
    bsh = g.shape[:ctx.nb]
    return [C.as_strided(g, off, bsh + vsh, _batch_strides(bsh, _prod(ctx.out_shape)) + vst)]


@UNVIEW.jvp
def _unview_jvp(ctx, ts):
    off, vsh, vst = _window(ctx.aux)
    t = ts[0]
    bsh = t.shape[:ctx.nb]
    osh = ctx.out_shape
    return C.unview(t, off, bsh + vsh, _batch_strides(bsh, _prod(osh)) + vst, bsh + osh)


@CONCAT.vjp
def _concat_vjp(ctx, g):
    axis = ctx.aux[0]
    res, off = [], 0
    for i in range(len(ctx.ins)):
        n = ctx.shape(i)[axis]
        res.append(g[(slice(None),) * (ctx.nb + axis) + (slice(off, off + n),)] if ctx.wants(i) else None)
        off += n
    return res


@CONCAT.jvp
def _concat_jvp(ctx, ts):
    bsh = next(t for t in ts if t is not None).shape[:ctx.nb]
    dev = C.dev_of(next(t for t in ts if t is not None))
    parts = [t if t is not None else C.const_on(np.zeros(bsh + ctx.shape(i), dtype=ctx.out_dtype), dev)
             for i, t in enumerate(ts)]
    return C.concat(parts, ctx.aux[0] + ctx.nb)


# ---- eval rules (NOTE [ A primitive's rules ]): one record recomputed from its aux

@VIEW.eval
def _view_eval(ctx, a):
    nd = ctx.aux[1]
    return C.as_strided(a[0], ctx.aux[0], tuple(ctx.aux[2:2 + nd]), tuple(ctx.aux[2 + nd:2 + 2 * nd]))


@UNVIEW.eval
def _unview_eval(ctx, a):
    nd = ctx.aux[1]
    return C.unview(a[0], ctx.aux[0], tuple(ctx.aux[2:2 + nd]), tuple(ctx.aux[2 + nd:2 + 2 * nd]),
                    tuple(ctx.out_shape))


@CONCAT.eval
def _concat_eval(ctx, a):
    return C.concat(a, ctx.aux[0])


def _check_window(c):
    """the loader's check of a view or unview record (c: cad.io.RecordCheck)"""
    c.nargs(1)
    aux = c.aux
    c.need(len(aux) >= 2, "aux is [offset, ndim, shape..., strides...]", "aux")
    off, nd = aux[0], aux[1]
    c.need(0 <= nd <= c.MAXDIM and len(aux) == 2 + 2 * nd,
           f"aux of ndim {nd} must have {2 + 2 * nd} values, has {len(aux)}", "aux")
    vsh, vst = tuple(aux[2:2 + nd]), tuple(aux[2 + nd:])
    c.need(all(0 <= s <= c.MAXSIZE for s in vsh), f"window shape {list(vsh)}", "aux")
    c.need(all(abs(s) <= c.MAXSIZE for s in vst), f"window strides {list(vst)}", "aux")
    view = c.op.kind == "view"
    base = c.shs[0] if view else c.osh
    size = math.prod(base)
    if math.prod(vsh):
        lo = off + sum((s - 1) * st for s, st in zip(vsh, vst) if st < 0)
        hi = off + sum((s - 1) * st for s, st in zip(vsh, vst) if st > 0)
        c.need(0 <= lo and hi < size, f"window (offset {off}, shape {list(vsh)}, strides "
                                      f"{list(vst)}) reaches outside a value of {size} elements", "aux")
    if view:
        c.out_is(vsh, c.dts[0])
    else:
        c.need(c.shs[0] == vsh, f"input of shape {list(c.shs[0])} for a window of shape {list(vsh)}",
               "args[0]")
        c.out_is(c.osh, c.dts[0])


VIEW.check(_check_window)
UNVIEW.check(_check_window)


@CONCAT.check
def _check_concat(c):
    c.naux(1)
    shs, dts = c.shs, c.dts
    c.need(1 <= len(c.args), "needs at least one input", "args")
    nd = len(shs[0])
    c.need(nd >= 1, "0-d inputs", "args")
    ax = c.aux[0]
    c.need(0 <= ax < nd, f"axis {ax} out of range for {nd} dims", "aux[0]")
    for k, (s, dt) in enumerate(zip(shs, dts)):
        c.need(len(s) == nd and all(s[d] == shs[0][d] for d in range(nd) if d != ax) and dt == dts[0],
               f"inputs {c.sig()} differ outside axis {ax}", f"args[{k}]")
    o = list(shs[0])
    o[ax] = sum(s[ax] for s in shs)
    c.out_is(o, dts[0])
