"""Matrix products: one primitive (matmul, BLAS), the rest composed from it."""
import numpy as np

from ._registry import Case, defop

try:
    from .._core import _engine as C
except ImportError:   # the build reads this table before the extension exists
    C = None

MATMUL = defop("matmul", "matmul", kernel="cad_matmul_vjp", reads={0: (1,), 1: (0,)}, ref=np.matmul,
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
    kb = b.shape[0]
    if a.shape[-1] != kb:
        raise C.ShapeError(f"dot: shapes {a.shape} and {b.shape} are not aligned: {a.shape[-1]} "
                           f"(last dim of a) != {kb} (dim 0 of b)")
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
            ga = _rows_times(g, _swap(B))                      # one GEMM
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
        elif b1 and not a1 and ctx.val(0).ndim == 2:
            # A (m, k) times a batch of vectors: one GEMM, t (.., k, 1) -> (.., k) @ A^T
            c = _unsq(_rows_times(_sq(t, -1), _swap(ctx.val(0))), -1)
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


# ---- einsum: pairwise contractions as (transpose, reshape, batched matmul), so the
# products go to BLAS and the derivatives are the (einsum-shaped) rules of those ops

_EIN_CASES = [("ij,jk->ik", [(2, 3), (3, 4)]), ("i,i->", [(3,), (3,)]), ("ij->ji", [(2, 3)]),
              ("ii->i", [(3, 3)]), ("ii", [(3, 3)]), ("bij,bjk->bik", [(2, 2, 3), (2, 3, 2)]),
              ("i,j->ij", [(2,), (3,)]), ("ij,ij->ij", [(2, 3), (2, 3)]),
              ("...ij,jk->...ik", [(2, 2, 3), (3, 2)]), ("ijk->", [(2, 3, 2)]), ("ij,j", [(2, 3), (3,)]),
              ("ijk,ikl->jl", [(2, 3, 2), (2, 2, 3)]), ("ij,jk,kl->il", [(2, 3), (3, 2), (2, 2)]),
              ("ij,kj->ik", [("T", (2, 3)), (2, 3)])]
EINSUM = defop("einsum", "composite", ref=lambda *ops, subscripts: np.einsum(subscripts, *ops),
               cases=[Case(*shapes, subscripts=s) for s, shapes in _EIN_CASES], method=False,
               doc="einsum(subscripts, *operands): numpy's notation (implicit output, '...', "
                   "repeated indices for diagonals); products run as BLAS matmuls.")


def _parse_einsum(subscripts, ops):
    s = subscripts.replace(" ", "")
    if "->" in s:
        lhs, out = s.split("->")
        explicit = True
    else:
        lhs, out, explicit = s, None, False
    terms = lhs.split(",")
    if len(terms) != len(ops):
        raise ValueError(f"einsum: {len(terms)} operand terms in {subscripts!r} for {len(ops)} operands")
    used = set(c for c in s if c.isalpha())
    pool = [c for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz" if c not in used]
    ell_n = 0
    for t, x in zip(terms, ops):
        if "..." in t:
            ell_n = max(ell_n, x.ndim - len(t.replace("...", "")))
    ell = "".join(pool[:ell_n])
    letters = []
    for k, (t, x) in enumerate(zip(terms, ops)):
        if "..." in t:
            n = x.ndim - len(t.replace("...", ""))
            t = t.replace("...", ell[ell_n - n:] if n else "")
        if len(t) != x.ndim or not all(c.isalpha() for c in t):
            raise ValueError(f"einsum: term {terms[k]!r} does not fit operand {k} of shape {x.shape}")
        letters.append(t)
    if explicit:
        out = out.replace("...", ell)
    else:
        counts = {}
        for t in letters:
            for c in t:
                counts[c] = counts.get(c, 0) + 1
        out = ell + "".join(sorted(c for c, n in counts.items() if n == 1 and c not in ell))
    return letters, out


def _diag(x, t):
    """take the diagonal over repeated letters within one term"""
    while len(set(t)) < len(t):
        for p2 in range(len(t)):
            p1 = t.index(t[p2])
            if p1 != p2:
                break
        cs = [1] * x.ndim
        for d in range(x.ndim - 2, -1, -1):
            cs[d] = cs[d + 1] * x.shape[d + 1]
        if x.shape[p1] != x.shape[p2]:
            raise C.ShapeError(f"einsum: repeated index {t[p1]!r} over dims of sizes "
                               f"{x.shape[p1]} and {x.shape[p2]}")
        shape = tuple(s for d, s in enumerate(x.shape) if d != p2)
        st = [c for d, c in enumerate(cs) if d != p2]
        st[p1] = cs[p1] + cs[p2]
        x = C.as_strided(C.contiguous(x), 0, shape, tuple(st))
        t = t[:p2] + t[p2 + 1:]
    return x, t


def _sum_letters(x, t, drop):
    axes = tuple(i for i, c in enumerate(t) if c in drop)
    if axes:
        x = C.reduce(_SUM_CODE(), x, axes, False)
        t = "".join(c for c in t if c not in drop)
    return x, t


def _SUM_CODE():
    from .reduce import SUM
    return SUM.code


def _contract(a, ta, b, tb, keep):
    """contract two operands; letters in keep stay (batch if in both)"""
    batch = [c for c in ta if c in tb and c in keep]
    con = [c for c in ta if c in tb and c not in keep]
    left = [c for c in ta if c not in tb]
    right = [c for c in tb if c not in ta]
    size = {}
    for x, t in ((a, ta), (b, tb)):
        for c, n in zip(t, x.shape):
            if size.setdefault(c, n) != n:
                raise C.ShapeError(f"einsum: index {c!r} has size {size[c]} in one operand and "
                                   f"{n} in another")
    prod = lambda cs: int(np.prod([size[c] for c in cs], dtype=np.int64))  # noqa: E731
    pa = tuple(ta.index(c) for c in batch + left + con)
    pb = tuple(tb.index(c) for c in batch + con + right)
    A = C.reshape(C.transpose(a, pa), (prod(batch), prod(left), prod(con)))
    B = C.reshape(C.transpose(b, pb), (prod(batch), prod(con), prod(right)))
    r = C.matmul(A, B)
    t = "".join(batch + left + right)
    return C.reshape(r, tuple(size[c] for c in t)), t


@EINSUM
def einsum(*args, subscripts=None):
    if subscripts is None:
        if not args or not isinstance(args[0], str):
            raise TypeError("einsum: the first argument is the subscripts string")
        subscripts, args = args[0], args[1:]
    ops = [C.as_float(o, "einsum") for o in args]
    letters, out = _parse_einsum(subscripts, ops)
    xs = []
    for x, t in zip(ops, letters):
        x, t = _diag(x, t)
        xs.append([x, t])
    # sum letters that live in one operand only and not in the output
    for k, (x, t) in enumerate(xs):
        others = "".join(tt for j, (_, tt) in enumerate(xs) if j != k) + out
        xs[k] = list(_sum_letters(x, t, set(c for c in t if c not in others)))
    x, t = xs[0]
    for k in range(1, len(xs)):
        later = "".join(tt for _, tt in xs[k + 1:]) + out
        x, t = _contract(x, t, xs[k][0], xs[k][1], set(later))
    x, t = _sum_letters(x, t, set(c for c in t if c not in out))
    if set(out) - set(t):
        raise ValueError(f"einsum: output index {sorted(set(out) - set(t))} does not appear in the inputs")
    if t != out:
        x = C.transpose(x, tuple(t.index(c) for c in out))
    return x


# ---- eval rules (NOTE [ A primitive's rules ]): one record recomputed from its aux

@MATMUL.eval
def _matmul_eval(ctx, a):
    return C.matmul(a[0], a[1])


@CAST.eval
def _cast_eval(ctx, a):
    return C.cast(a[0], ctx.out_dtype)
