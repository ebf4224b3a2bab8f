"""Matrix products: one primitive (matmul, BLAS), the rest composed from it."""
import numpy as np

from ._registry import Case, defop

try:
    from .._core import _engine as C
except ImportError:   # the build reads this table before the extension exists
    C = None

MATMUL = defop("matmul", "matmul", kernel="cad_matmul_vjp", ref=np.matmul,
               cases=[Case((3,), (3,)), Case((2, 3), (3,)), Case((3,), (3, 4)), Case((2, 3), (3, 4)),
                      Case((5, 2, 3), (3, 4)), Case((2, 1, 2, 3), (3, 3, 2)),
                      Case(("T", (3, 2)), ("T", (2, 4))), Case((2, 0), (0, 3)), Case((0, 3), (3, 2)),
                      Case(("S", (2, 3)), (3, 2)), Case((4, 3), ("F", np.ones((3, 2))))],
               doc="matmul(a, b): numpy's matmul (1-D promotion, broadcast batch dims), BLAS.")


@MATMUL
def matmul(a, b):
    return C.matmul(C.as_tensor(a), C.as_tensor(b))


DOT = defop("dot", "composite", ref=np.dot,
            cases=[Case((3,), (3,)), Case((2, 3), (3, 4)), Case((), (3,)), Case((2, 3), (3,))],
            doc="dot(a, b): numpy's dot for 0-d, 1-D and 2-D operands.")


@DOT
def dot(a, b):
    a = C.as_tensor(a)
    b = C.as_tensor(b)
    if a.ndim == 0 or b.ndim == 0:
        return a * b
    if a.ndim > 2 or b.ndim > 2:
        raise ValueError(f"dot: operands of shapes {a.shape} and {b.shape}: dot takes 0-d, 1-D "
                         "and 2-D operands; use matmul or einsum for batched products")
    return C.matmul(a, b)


OUTER = defop("outer", "composite", ref=np.outer, cases=[Case((3,), (2,)), Case((2, 2), (3,))],
              doc="outer(a, b): outer product of the flattened operands.")


@OUTER
def outer(a, b):
    a = C.reshape(C.as_tensor(a), (-1, 1))
    b = C.reshape(C.as_tensor(b), (1, -1))
    return a * b


CAST = defop("cast", "cast", kernel="cad_cast_vjp", method=False, export=False,
             doc="dtype conversion between float dtypes (recorded so gradients flow back)")
ASTYPE = defop("astype", "composite", ref=lambda a, dtype: a.astype(dtype).astype(np.float64),
               cases=[Case((3,), dtype="float32"), Case((2, 2), dtype="float64"), Case((), dtype="float32")],
               fd_eps=1e-3, tol=(1e-3, 1e-3),
               doc="astype(x, dtype): convert; between float dtypes the gradient flows back.")


@ASTYPE
def astype(x, dtype):
    return C.cast(C.as_tensor(x), dtype)


# ---- differentiable rules (NOTE [ Rules and batch dims ] in _rules.py)

def _swap(t):
    return C.transpose(t, tuple(range(t.ndim - 2)) + (t.ndim - 1, t.ndim - 2))


def _unsq(t, axis):
    shape = list(t.shape)
    shape.insert(axis if axis >= 0 else len(shape) + 1 + axis, 1)
    return C.reshape(t, tuple(shape))


def _sq(t, axis):
    shape = list(t.shape)
    del shape[axis]
    return C.reshape(t, tuple(shape))


def _rows_times(g, m):
    """g (..., n) @ m (n, k) as one GEMM over all leading dims of g"""
    if g.ndim <= 2:
        return C.matmul(g, m)
    lead = g.shape[:-1]
    rows = 1
    for d in lead:
        rows *= d
    return C.reshape(C.matmul(C.reshape(g, (rows, g.shape[-1])), m), lead + (m.shape[-1],))


@MATMUL.vjp
def _matmul_vjp(ctx, g):
    from ._rules import unbroadcast
    a1, b1 = ctx.aux
    res = [None, None]
    if ctx.wants(0):
        B = ctx.val(1)
        if b1:
            ga = _unsq(g, -1) * B                              # (.., m, 1) * (k,)
        elif B.ndim == 2:
            ga = _rows_times(g if not a1 else g, _swap(B))     # one GEMM
        else:
            ga = C.matmul(_unsq(g, -2) if a1 else g, _swap(B))
            if a1:
                ga = _sq(ga, -2)
        res[0] = unbroadcast(ga, ctx.shape(0), ctx.nb)
    if ctx.wants(1):
        A = ctx.val(0)
        if a1 and b1:
            gb = _unsq(g, -1) * A                              # (.., 1) * (k,)
        elif a1:
            gb = _unsq(A, -1) * _unsq(g, -2)                   # (k, 1) * (.., 1, n)
        elif b1 and A.ndim == 2:
            gb = _rows_times(g, A)                             # g (.., m) @ A (m, k)
        elif b1:
            gb = _sq(C.matmul(_unsq(g, -2), A), -2)
        else:
            gb = C.matmul(_swap(A), g)
        res[1] = unbroadcast(gb, ctx.shape(1), ctx.nb)
    return res


@MATMUL.jvp
def _matmul_jvp(ctx, ts):
    from ._rules import full_shape
    a1, b1 = ctx.aux
    obr = len(ctx.out_shape) - (0 if a1 else 1) - (0 if b1 else 1)   # the output's batch rank
    acc = None
    for which, t in ((0, ts[0]), (1, ts[1])):
        if t is None:
            continue
        # the tangent as a (batched) matrix whose own batch dims line up with the output's
        t = _unsq(t, -2) if (which == 0 and a1) else (_unsq(t, -1) if (which == 1 and b1) else t)
        own = t.ndim - ctx.nb - 2
        if ctx.nb and own < obr:
            t = C.reshape(t, t.shape[:ctx.nb] + (1,) * (obr - own) + t.shape[ctx.nb:])
        if which == 0:
            left = t
            right = _unsq(ctx.val(1), -1) if b1 else ctx.val(1)
            c = _rows_times(left, right) if right.ndim == 2 else C.matmul(left, right)
        else:
            left = _unsq(ctx.val(0), -2) if a1 else ctx.val(0)
            c = C.matmul(left, t)
        if b1:
            c = _sq(c, -1)
        if a1:
            c = _sq(c, -1 if b1 else -2)
        acc = c if acc is None else acc + c
    nbs = next(t for t in ts if t is not None).shape[:ctx.nb]
    return full_shape(acc, nbs, ctx.out_shape)


@CAST.vjp
def _cast_vjp(ctx, g):
    return [C.cast(g, ctx.dtype(0))]


@CAST.jvp
def _cast_jvp(ctx, ts):
    return C.cast(ts[0], ctx.out_dtype)
