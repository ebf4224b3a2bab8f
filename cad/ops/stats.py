"""Statistics, norms, differences and truth reductions (issue 13), composed from the
table's reductions and elementwise ops; their derivatives, of every order, are those
of the ops their bodies call."""
import builtins

import numpy as np

from ._registry import Case, defop
from ._values import C, index, one_axis, val
from .reduce import RED, _axis, _keep, _no_out, max, mean, min, sum
from .shape import concatenate, broadcast_to, squeeze, unsqueeze


def _ddof(ddof, correction, unbiased, who):
    given = [k for k, v in (("ddof", ddof), ("correction", correction), ("unbiased", unbiased))
             if v is not None]
    if len(given) > 1:
        raise TypeError(f"{who}: give one of {' / '.join(given)}, not several")
    if unbiased is not None:
        return 1 if unbiased else 0
    d = correction if correction is not None else ddof
    if d is None:
        return 0
    if isinstance(d, bool) or not isinstance(d, (int, float, np.integer, np.floating)):
        raise TypeError(f"{who}: ddof must be a number, got {type(d).__name__} {d!r}")
    return d


_VAR_CASES = [c for c in RED if c.inputs[0] != (0, 3)] + [
    Case((2, 3), axis=1, ddof=1), Case((4,), correction=2), Case((3, 2), axis=0, unbiased=True),
    Case((2, 3, 2), axis=(0, -1), ddof=1, keepdims=True), Case((0, 3), axis=1)]


def _np_var(a, axis=None, ddof=0, keepdims=False, correction=None, unbiased=None):
    d = _ddof(ddof if ddof else None, correction, unbiased, "var")
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.var(a, axis=axis, ddof=d, keepdims=keepdims)


VAR = defop("var", "composite", ref=_np_var, cases=_VAR_CASES,
            doc="var(x, axis=None, dtype=None, out=None, ddof=0, keepdims=False): as numpy "
                "(ddof=0 by default; torch's correction=/unbiased= accepted).")
STD = defop("std", "composite", cases=_VAR_CASES,
            ref=lambda a, **kw: np.sqrt(_np_var(a, **kw)),
            doc="std(x, axis=None, dtype=None, out=None, ddof=0, keepdims=False) = sqrt(var).")


def _sqrt0(s):
    """sqrt(s) whose derivatives where s = 0 are 0, not nan (inf times 0): the square
    root never sees the 0.  NOTE: so norm's gradient at x = 0 is 0 (torch's
    subgradient; JAX gives nan) and std's over a constant slice is 0 (torch and JAX: nan)"""
    z = C.eq(s, 0)
    return C.where(z, 0.0, C.sqrt(C.where(z, 1.0, s)))


@VAR
def var(x, axis=None, dtype=None, out=None, ddof=None, keepdims=False, *, dim=None, keepdim=None,
        correction=None, unbiased=None):
    _no_out("var", out)
    d = _ddof(ddof, correction, unbiased, "var")
    x = val(x, "var", floating=True)
    if dtype is not None:
        from .linalg import astype
        x = astype(x, dtype)
    axes = C.normalize_axes(x.ndim, _axis(axis, dim, "var"), "var")
    n = 1
    for a in axes:
        n *= x.shape[a]
    dx = x - mean(x, axes, keepdims=True)
    # NOTE: numpy's sum of squares over n - ddof; n - ddof <= 0 gives inf or nan (numpy warns)
    return sum(dx * dx, axes, _keep(keepdims, keepdim)) / float(builtins.max(n - d, 0))


@STD
def std(x, axis=None, dtype=None, out=None, ddof=None, keepdims=False, *, dim=None, keepdim=None,
        correction=None, unbiased=None):
    return _sqrt0(var(x, axis, dtype, out, ddof, keepdims, dim=dim, keepdim=keepdim,
                      correction=correction, unbiased=unbiased))


# ---- norm

def _np_norm(a, ord=None, axis=None, keepdims=False):
    return np.linalg.norm(a, ord=ord, axis=axis, keepdims=keepdims)


NORM = defop("norm", "composite", ref=_np_norm, second_order=True,
             cases=[Case(()), Case((3,)), Case((2, 3)), Case((2, 3, 2)), Case((3,), ord=1),
                    Case((3,), ord=np.inf), Case((3,), ord=-np.inf), Case((4,), ord=3),
                    Case((4,), ord=0.5), Case((2, 3), axis=1), Case((2, 3), axis=-2, keepdims=True),
                    Case(("T", (3, 2)), ord="fro"), Case((2, 3), ord=1), Case((2, 3), ord=-1),
                    Case((3, 2), ord=np.inf), Case((3, 2), ord=-np.inf),
                    Case((2, 3, 4), axis=(2, 0), ord=1), Case((2, 3, 4), axis=(-1, 1), keepdims=True),
                    Case(("S", (2, 3)), axis=0, ord=2), Case((0, 3), axis=0),
                    Case((3, 2), ord="nuc"), Case((2, 3), ord=2), Case((2, 3, 4), axis=(0, 2), ord=-2),
                    Case((2, 3, 4), axis=(2, 1), ord="nuc", keepdims=True)],
             doc="norm(x, ord=None, axis=None, keepdims=False): numpy.linalg.norm's vector norms "
                 "and its matrix norms 'fro', 'nuc', 1, -1, 2, -2, inf, -inf (the last through the "
                 "singular values); the 2-norm's gradient at 0 is 0 (torch).")


def _l2(x, axes, keep):
    return _sqrt0(sum(x * x, axes, keep))


def _vector_norm(x, ord, axes, keep):
    if ord is None or (not isinstance(ord, str) and ord == 2):
        return _l2(x, axes, keep)
    if isinstance(ord, str):
        raise ValueError(f"norm: invalid ord {ord!r} for a vector norm")
    if ord == np.inf:
        return max(C.abs(x), axes, keep)
    if ord == -np.inf:
        return min(C.abs(x), axes, keep)
    if ord == 0:   # the count of nonzeros (not differentiable)
        return sum(C.ne(x, 0).astype(x.dtype), axes, keep)
    if ord == 1:
        return sum(C.abs(x), axes, keep)
    return sum(C.abs(x) ** ord, axes, keep) ** (1.0 / ord)


def _matrix_norm(x, ord, r, c, keep):
    if ord in (None, "fro", "f"):
        return _l2(x, (r, c), keep)
    if ord in ("nuc", 2, -2):   # the singular values (cad.linalg.svd, NOTE [ Linear algebra ])
        from .. import linalg
        from .manip import moveaxis
        s = linalg.svdvals(moveaxis(x, (r, c), (-2, -1)))
        y = sum(s, -1) if ord == "nuc" else (max(s, -1) if ord == 2 else min(s, -1))
        if keep:
            for a in sorted((r, c)):
                y = unsqueeze(y, a)
        return y
    if isinstance(ord, str) or ord not in (1, -1, np.inf, -np.inf):
        raise ValueError(f"norm: invalid ord {ord!r} for a matrix norm (use 'fro', 'nuc', 1, -1, "
                         "2, -2, inf, -inf)")
    red = max if ord > 0 else min
    inner, outer = (r, c) if ord in (1, -1) else (c, r)   # 1: column sums, inf: row sums
    y = red(sum(C.abs(x), inner, True), outer, True)
    return y if keep else squeeze(y, (r, c))


@NORM
def norm(x, ord=None, axis=None, keepdims=False, *, dim=None, keepdim=None, p=None):
    if p is not None:
        if ord is not None:
            raise TypeError("norm: give ord= or p=, not both")
        ord = p
    x = val(x, "norm", floating=True)
    ax = _axis(axis, dim, "norm")
    keep = _keep(keepdims, keepdim)
    if ax is None:
        if ord is None:   # every axis, flattened (numpy)
            return _l2(x, tuple(range(x.ndim)), keep)
        if x.ndim not in (1, 2):
            raise ValueError(f"norm: ord={ord!r} without axis needs a 1-D or 2-D x, got shape "
                             f"{x.shape}; give axis=")
        ax = tuple(range(x.ndim))
    axes = C.normalize_axes(x.ndim, ax, "norm")
    if len(axes) == 1:
        return _vector_norm(x, ord, axes, keep)
    if len(axes) == 2:
        return _matrix_norm(x, ord, axes[0], axes[1], keep)
    raise ValueError(f"norm: axis must be one axis or two (a matrix norm), got {ax!r}")


# ---- diff

DIFF = defop("diff", "composite", ref=lambda a, **kw: np.diff(a, **kw),
             cases=[Case((4,)), Case((2, 4), n=2), Case((3, 2), axis=0), Case(("T", (3, 4)), axis=-2),
                    Case((4,), n=0), Case((3,), n=5), Case((0, 3)), Case(("S", (3, 2)), axis=0),
                    Case((3,), prepend=1.5, append=-1), Case((2, 3), axis=0, prepend=0.5, n=2)],
             doc="diff(x, n=1, axis=-1, prepend=None, append=None): as numpy.")


def _edge(e, x, ax):
    if isinstance(e, (int, float)) and not isinstance(e, bool):   # a Python number takes x's dtype
        e = C.const_on(np.asarray(e, dtype=x.dtype), 1 if x.is_cuda else 0)
    e = val(e, "diff")
    if e.ndim == 0:   # a scalar: one slice of x's shape (numpy)
        e = broadcast_to(e, x.shape[:ax] + (1,) + x.shape[ax + 1:])
    return e


@DIFF
def diff(x, n=1, axis=-1, prepend=None, append=None, *, dim=None):
    x = val(x, "diff")
    n = index(n, "diff", "n")
    if n < 0:
        raise ValueError(f"diff: order n must be non-negative, got {n}")
    if x.ndim == 0:
        raise ValueError("diff: needs an input with at least one dimension, got a 0-d tensor")
    ax = one_axis(x.ndim, axis if dim is None else dim, "diff")
    if prepend is not None or append is not None:
        parts = ([_edge(prepend, x, ax)] if prepend is not None else []) + [x] + \
            ([_edge(append, x, ax)] if append is not None else [])
        x = concatenate(parts, ax)
    hi = (slice(None),) * ax + (slice(1, None),)
    lo = (slice(None),) * ax + (slice(None, -1),)
    for _ in range(n):
        x = C.ne(x[hi], x[lo]) if x.dtype == np.bool_ else x[hi] - x[lo]
    return x


# ---- any / all (bool results)

_TRUTH = [Case(("B", np.array([[True, False, True], [True, True, True]]))),
          Case(("B", np.array([[True, False, True], [True, True, True]])), axis=1),
          Case(("B", np.array([[True, False], [False, False]])), axis=0, keepdims=True),
          Case((2, 3), axis=-1), Case(("I", np.array([[0, 2], [0, 0]])), axis=(0, 1)),
          Case(("B", np.zeros((0, 2), dtype=bool)), axis=0)]
ANY = defop("any", "cmp", ref=np.any, differentiable=False, method=False, cases=_TRUTH,
            doc="any(x, axis=None, keepdims=False): whether any element is nonzero (bool).")
ALL = defop("all", "cmp", ref=np.all, differentiable=False, method=False, cases=_TRUTH,
            doc="all(x, axis=None, keepdims=False): whether every element is nonzero (bool).")


def _truth(who, x, axis, keepdims, dim, keepdim, out):
    """the count of x's zeros (any: nonzeros) over the axes, with cad ops: recorded, so
    a replay recomputes it (no guard), and batched by the composite rule"""
    _no_out(who, out)
    x = val(x, who)
    axes = C.normalize_axes(x.ndim, _axis(axis, dim, who), who)
    hit = C.ne(x, 0) if who == "any" else C.eq(x, 0)
    n = sum(hit, axes, _keep(keepdims, keepdim))
    return C.gt(n, 0) if who == "any" else C.eq(n, 0)


@ANY
def any(x, axis=None, keepdims=False, *, dim=None, keepdim=None, out=None):
    return _truth("any", x, axis, keepdims, dim, keepdim, out)


@ALL
def all(x, axis=None, keepdims=False, *, dim=None, keepdim=None, out=None):
    return _truth("all", x, axis, keepdims, dim, keepdim, out)
