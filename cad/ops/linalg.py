"""Matrix products: one primitive (matmul, BLAS), the rest composed from it."""
import math

import numpy as np

from ._registry import Case, defop
from ._rules import dense
from ._values import val as _values_val

try:
    from .._core import _engine as C
except ImportError:   # the build reads this table before the extension exists
    C = None

MATMUL = defop("matmul", "matmul", kernel="cad_matmul_vjp", reads={0: (1,), 1: (0,)}, ref=np.matmul,
               linear=("a", "b"), bilinear=True,
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

# matmul's rules' bodies are tapeview.pxi's mm_batch and matmul_vjp (NOTE [ Matmul's
# rules written once ]): the sweeps call them too.

def _mm_batch(i, t, other, a1, b1, nb):
    """matmul(a, b) with operand i the batch t (nb leading dims, or a Diag over a 1-D
    value) and the other operand the value `other`; a1, b1: which operands are 1-D"""
    return C.mm_batch(i, t, other, bool(a1), bool(b1), nb)


@MATMUL.apply
def _matmul_apply(ctx, i, t, other):
    a1, b1 = ctx.aux
    return _mm_batch(i, t, other, a1, b1, ctx.nb)


@MATMUL.vjp
def _matmul_vjp(ctx, g):
    """the transposes of a -> a @ B and b -> A @ b (the jvp is derived: NOTE [ Linear
    and bilinear ops ])"""
    a1, b1 = ctx.aux
    w0, w1 = ctx.wants(0), ctx.wants(1)
    return C.matmul_vjp(g, ctx.val(0) if w1 else None, ctx.val(1) if w0 else None, bool(a1), bool(b1),
                        ctx.nb, w0, w1, tuple(ctx.shape(0)) if w0 else (), tuple(ctx.shape(1)) if w1 else ())


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
    prod = lambda cs: math.prod([size[c] for c in cs])  # noqa: E731
    pa = tuple(ta.index(c) for c in batch + left + con)
    pb = tuple(tb.index(c) for c in batch + con + right)
    A = C.reshape(_permuted(a, pa), (prod(batch), prod(left), prod(con)))
    B = C.reshape(_permuted(b, pb), (prod(batch), prod(con), prod(right)))
    r = C.matmul(A, B)
    t = "".join(batch + left + right)
    return C.reshape(r, tuple(size[c] for c in t)), t


def _permuted(x, perm):
    """x's axes in order perm (x itself for the identity: no view op)"""
    return x if perm == tuple(range(len(perm))) else C.transpose(x, perm)


_EIN_PARSED = {}   # (subscripts, the operands' ndims) -> _parse_einsum's result


@EINSUM
def einsum(*args, subscripts=None):
    if subscripts is None:
        if not args or not isinstance(args[0], str):
            raise TypeError("einsum: the first argument is the subscripts string")
        subscripts, args = args[0], args[1:]
    ops = [C.as_float(o, "einsum") for o in args]
    key = (subscripts, tuple(x.ndim for x in ops))
    parsed = _EIN_PARSED.get(key)
    if parsed is None:
        parsed = _parse_einsum(subscripts, ops)
        if len(_EIN_PARSED) < 1024:
            _EIN_PARSED[key] = parsed
    letters, out = parsed
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


# ---- numpy's matrix routines (issue 13), composed from the ops above, the shape ops
# and indexing, over public ops only (NOTE [ Composite bodies ] in _batch.py)

def _val(x, who):
    if type(x) is C.Tensor:
        return x
    return _values_val(x, who)


DIAGONAL = defop("diagonal", "composite",
                 ref=lambda a, offset=0, axis1=0, axis2=1: np.diagonal(a, offset, axis1, axis2),
                 cases=[Case((3, 3)), Case((2, 4), offset=1), Case((4, 2), offset=-2), Case((2, 3), offset=5),
                        Case((2, 3, 4), axis1=2, axis2=0), Case((2, 3, 3), offset=-1, axis1=-1, axis2=-2),
                        Case(("T", (3, 2))), Case((0, 3))],
                 doc="diagonal(x, offset=0, axis1=0, axis2=1): as numpy (the diagonal is the last "
                     "axis; a copy, not a view); torch's dim1=/dim2= accepted.")


@DIAGONAL
def diagonal(x, offset=0, axis1=0, axis2=1, *, dim1=None, dim2=None):
    from .shape import transpose
    x = _val(x, "diagonal")
    if x.ndim < 2:
        raise ValueError(f"diagonal: needs at least 2 dimensions, got shape {x.shape}")
    a1, a2 = C.normalize_axes(x.ndim, (axis1 if dim1 is None else dim1, axis2 if dim2 is None else dim2),
                              "diagonal", unique=False)
    if a1 == a2:
        raise ValueError(f"diagonal: axis1 and axis2 must differ, got {a1} and {a2} (shape {x.shape})")
    n1, n2 = x.shape[a1], x.shape[a2]
    k = int(offset)
    length = max(0, min(n1, n2 - k) if k >= 0 else min(n1 + k, n2))
    rest = tuple(d for d in range(x.ndim) if d not in (a1, a2))
    perm = rest + (a1, a2)
    if type(x) is C.Tensor:   # a strided view (read-only, as every cad value): 8 -> 2 µs small
        y = x if perm == tuple(range(x.ndim)) else transpose(x, perm)
        cs, s = [0] * y.ndim, 1
        for d in range(y.ndim - 1, -1, -1):
            cs[d] = s
            s *= max(y.shape[d], 1)
        off = (max(k, 0) * cs[-1] + max(-k, 0) * cs[-2]) if length else 0
        return C.as_strided(y, off, tuple(y.shape[:-2]) + (length,), tuple(cs[:-2]) + (cs[-2] + cs[-1],))
    i = np.arange(length) + max(-k, 0)
    return transpose(x, perm)[(Ellipsis, i, i + k)]


TRACE = defop("trace", "composite", ref=lambda a, offset=0, axis1=0, axis2=1: np.trace(a, offset, axis1, axis2),
              cases=[Case((3, 3)), Case((2, 4), offset=1), Case((2, 3, 4), axis1=1, axis2=2), Case((0, 2)),
                     Case(("T", (3, 2)), offset=-1)],
              doc="trace(x, offset=0, axis1=0, axis2=1): the sum of a diagonal, as numpy.")


@TRACE
def trace(x, offset=0, axis1=0, axis2=1, dtype=None, out=None):
    from .reduce import sum, _no_out
    _no_out("trace", out)
    return sum(diagonal(x, offset, axis1, axis2), -1, dtype=dtype)


DIAG = defop("diag", "composite", ref=lambda a, k=0: np.diag(a, k),
             cases=[Case((3,)), Case((2,), k=1), Case((2,), k=-2), Case((3, 3)), Case((2, 4), k=1),
                    Case((0,)), Case((0,), k=1), Case(("T", (3, 2)), k=-1)],
             doc="diag(v, k=0): as numpy: a 1-D v gives the matrix with v on diagonal k, a 2-D v "
                 "its diagonal k.")


@DIAG
def diag(v, k=0):
    from .shape import concatenate, reshape
    from .manip import pad
    v = _val(v, "diag")
    k = int(k)
    if v.ndim == 2:
        return diagonal(v, k)
    if v.ndim != 1:
        raise ValueError(f"diag: needs a 1-D or 2-D input, got shape {v.shape}")
    m = v.shape[0]
    # v as the first column of an (m, m + 1) block of zeros: its first m * m elements,
    # read as (m, m), hold v on the diagonal (row i starts at i * m, v[i] at i * (m + 1))
    z = C.const_on(np.zeros((m, m), dtype=v.dtype), 1 if v.is_cuda else 0)
    w = reshape(concatenate([reshape(v, (m, 1)), z], 1), (-1,))[:m * m]
    d = reshape(w, (m, m))
    if k:
        d = pad(d, ((0, k), (k, 0)) if k > 0 else ((-k, 0), (0, -k)))
    return d


def _tri(x, k, who, lower):
    x = _val(x, who)
    if x.ndim == 0:
        raise ValueError(f"{who}: needs at least 1 dimension, got a 0-d tensor")
    n, m = (x.shape[-1], x.shape[-1]) if x.ndim == 1 else x.shape[-2:]
    k = int(k)
    mask = np.tri(n, m, k, dtype=bool) if lower else ~np.tri(n, m, k - 1, dtype=bool)
    zero = False if x.dtype == np.bool_ else 0
    return C.where(C.const_on(mask, 1 if x.is_cuda else 0), x, zero)


TRIL = defop("tril", "composite", ref=lambda a, k=0: np.tril(a, k),
             cases=[Case((3, 3)), Case((2, 4), k=1), Case((3, 2), k=-1), Case((2, 3, 3)), Case((3,)),
                    Case(("T", (3, 2))), Case((0, 2))],
             doc="tril(x, k=0): zeros above diagonal k of the last two axes (torch's diagonal= "
                 "accepted).")
TRIU = defop("triu", "composite", ref=lambda a, k=0: np.triu(a, k),
             cases=[Case((3, 3)), Case((2, 4), k=1), Case((3, 2), k=-1), Case((2, 3, 3)), Case((3,)),
                    Case(("T", (3, 2))), Case((0, 2))],
             doc="triu(x, k=0): zeros below diagonal k of the last two axes.")


@TRIL
def tril(x, k=0, *, diagonal=None):
    return _tri(x, k if diagonal is None else diagonal, "tril", True)


@TRIU
def triu(x, k=0, *, diagonal=None):
    return _tri(x, k if diagonal is None else diagonal, "triu", False)


KRON = defop("kron", "composite", ref=np.kron,
             cases=[Case((2,), (3,)), Case((2, 2), (2, 3)), Case((2,), (2, 3)), Case((), (3,)),
                    Case(("T", (3, 2)), (2, 1)), Case((2, 1, 2), (2, 2))],
             doc="kron(a, b): the Kronecker product, as numpy.")


@KRON
def kron(a, b):
    from .shape import reshape
    a, b = _val(a, "kron"), _val(b, "kron")
    nd = max(a.ndim, b.ndim)
    sa = (1,) * (nd - a.ndim) + tuple(a.shape)
    sb = (1,) * (nd - b.ndim) + tuple(b.shape)
    A = reshape(a, tuple(d for s in sa for d in (s, 1)))
    B = reshape(b, tuple(d for s in sb for d in (1, s)))
    return reshape(A * B, tuple(p * q for p, q in zip(sa, sb)))


TENSORDOT = defop("tensordot", "composite", ref=lambda a, b, axes=2: np.tensordot(a, b, axes),
                  method=False,
                  cases=[Case((2, 3), (3, 2), axes=1), Case((2, 3, 4), (3, 4, 2)), Case((2, 3), (4,), axes=0),
                         Case((2, 3, 4), (4, 2, 3), axes=([1, 2], [2, 0])), Case(("T", (3, 2)), (3, 2), axes=([0], [0])),
                         Case((3,), (3,), axes=1), Case((), (2,), axes=0)],
                  doc="tensordot(a, b, axes=2): as numpy (an int: the last axes of a with the first "
                      "of b; a pair of axis lists); torch's dims= accepted.")


@TENSORDOT
def tensordot(a, b, axes=2, *, dims=None):
    a, b = _val(a, "tensordot"), _val(b, "tensordot")
    axes = axes if dims is None else dims
    if isinstance(axes, (int, np.integer)):
        n = int(axes)
        if n < 0 or n > a.ndim or n > b.ndim:
            raise ValueError(f"tensordot: axes={n} for operands of shapes {a.shape} and {b.shape}")
        if (type(a) is C.Tensor and type(b) is C.Tensor and a.dtype == b.dtype and a.dtype.kind == "f"
                and a.shape[a.ndim - n:] == b.shape[:n]):
            # the last n axes of a against the first n of b, both C-ordered runs: one
            # product of reshaped operands (46 -> 6 µs for two 3 x 3 matrices)
            lead, trail = a.shape[:a.ndim - n], b.shape[n:]
            k = math.prod(b.shape[:n])
            r = C.matmul(C.reshape(a, (math.prod(lead), k)), C.reshape(b, (k, math.prod(trail))))
            return C.reshape(r, tuple(lead) + tuple(trail))
        xa, xb = tuple(range(a.ndim - n, a.ndim)), tuple(range(n))
    else:
        try:
            pa, pb = axes
        except (TypeError, ValueError):
            raise ValueError(f"tensordot: axes must be an int or a pair of axis lists, got {axes!r}") from None
        xa = C.normalize_axes(a.ndim, pa if isinstance(pa, (tuple, list)) else (pa,), "tensordot")
        xb = C.normalize_axes(b.ndim, pb if isinstance(pb, (tuple, list)) else (pb,), "tensordot")
        if len(xa) != len(xb):
            raise ValueError(f"tensordot: {len(xa)} axes of a and {len(xb)} of b")
    for i, j in zip(xa, xb):
        if a.shape[i] != b.shape[j]:
            raise C.ShapeError(f"tensordot: shapes {a.shape} and {b.shape} do not match on the "
                               f"contracted axes {xa} and {xb}")
    letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
    if a.ndim + b.ndim - len(xa) > len(letters):
        raise ValueError("tensordot: too many axes")
    ta = letters[:a.ndim]
    tb, nxt = [], a.ndim
    for j in range(b.ndim):
        if j in xb:
            tb.append(ta[xa[xb.index(j)]])
        else:
            tb.append(letters[nxt])
            nxt += 1
    out = "".join(c for i, c in enumerate(ta) if i not in xa) + "".join(
        c for j, c in enumerate(tb) if j not in xb)
    return einsum(f"{ta},{''.join(tb)}->{out}", a, b)


INNER = defop("inner", "composite", ref=np.inner,
              cases=[Case((3,), (3,)), Case((2, 3), (3,)), Case((2, 3), (4, 3)), Case((), (2,)),
                     Case(("T", (3, 2)), (2,))],
              doc="inner(a, b): the sum over the last axes, as numpy.")


@INNER
def inner(a, b):
    a, b = _val(a, "inner"), _val(b, "inner")
    if a.ndim == 0 or b.ndim == 0:
        return a * b
    if a.shape[-1] != b.shape[-1]:
        raise C.ShapeError(f"inner: shapes {a.shape} and {b.shape}: the last dims differ")
    if b.ndim == 1:   # (a product: 43 -> 3 µs for two 3-vectors)
        return matmul(a, b)
    if a.ndim == 1 and b.ndim == 2:
        return matmul(b, a)
    return tensordot(a, b, ((a.ndim - 1,), (b.ndim - 1,)))


# NOTE [ cross ]
# cross of float tensors is one primitive (kind "cross", cpu/cross.c): its record takes
# a and b broadcast to one shape (..., 3), contiguous, and its C kernels do a row per
# element triple, forward and vjp (bilinear: ga = b x g, gb = g x a, the same kernel);
# the rules below are that formula over cad.cross itself, so every order is exact.
# The composite of slices it replaces was twelve ops on strided columns (ADBench BA's
# rodrigues rotation, (36455, 3): 1.8 ms forward and backward against torch's 0.63).
# Integer and bool inputs keep the composite (numpy's integer result, not
# differentiable).
CROSS = defop("cross", "cross", kernel="cad_cross_vjp", naux=0, reads={0: (1,), 1: (0,)},
              linear=("a", "b"), bilinear=True,
              ref=lambda a, b, axis=-1: np.cross(a, b, axis=axis),
              cases=[Case((3,), (3,)), Case((2, 3), (3,)), Case((3, 2), (3, 2), axis=0),
                     Case(("T", (3, 4)), (3, 1), axis=0), Case((2, 1, 3), (4, 3)), Case((0, 3), (3,))],
              doc="cross(a, b, axis=-1): the cross product of 3-vectors along axis (broadcast), "
                  "as numpy; torch's dim= accepted.")


@CROSS
def cross(a, b, axis=-1, *, dim=None):
    from .shape import broadcast_to, stack
    from .manip import moveaxis
    a, b = _val(a, "cross"), _val(b, "cross")
    axis = axis if dim is None else dim
    sa = a.shape
    if (sa == b.shape and sa and sa[-1] == 3 and (axis == -1 or axis == len(sa) - 1)
            and a.dtype == b.dtype and a.dtype.kind == "f"):   # (the common call: 7 -> 2 µs)
        return C.bind(CROSS.code, [C.contiguous(a), C.contiguous(b)], (), tuple(sa), a.dtype, "cross")
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(f"cross: needs vectors, got shapes {a.shape} and {b.shape}")
    sa, sb = a.shape, b.shape
    a, b = moveaxis(a, axis, -1), moveaxis(b, axis, -1)
    if a.shape[-1] != 3 or b.shape[-1] != 3:
        raise ValueError(f"cross: needs 3-vectors along axis {axis}, got shapes {sa} and {sb} "
                         "(numpy 2 deprecates 2-vectors: for them use "
                         "a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0])")
    if a.dtype.kind == "f" and b.dtype.kind == "f":
        dt = np.result_type(a.dtype, b.dtype)
        try:
            shape = np.broadcast_shapes(tuple(a.shape), tuple(b.shape))
        except ValueError:
            raise C.ShapeError(f"cross: shapes {sa} and {sb} do not broadcast (3-vectors along "
                               f"axis {axis})") from None
        ins = []
        for x in (a, b):
            if x.dtype != dt:
                x = C.cast(x, dt)
            if tuple(x.shape) != shape:
                x = broadcast_to(x, shape)
            ins.append(C.contiguous(x))
        c = C.bind(CROSS.code, ins, (), shape, dt, "cross")
    else:
        a0, a1, a2 = a[..., 0], a[..., 1], a[..., 2]
        b0, b1, b2 = b[..., 0], b[..., 1], b[..., 2]
        c = stack([a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0], -1)
    return moveaxis(c, -1, axis)


# (the rules: cotangents and tangents carry ctx.nb leading batch dims, which cross's
# broadcasting takes as they are; NOTE [ Rules and batch dims ])
@CROSS.apply
def _cross_apply(ctx, i, t, other):
    t = dense(t)
    return cross(t, other) if i == 0 else cross(other, t)


@CROSS.vjp
def _cross_vjp(ctx, g):
    """the transposes of a -> a x b and b -> a x b: b x g and g x a"""
    g = dense(g)
    a, b = ctx.val(0), ctx.val(1)
    return [cross(b, g) if ctx.wants(0) else None, cross(g, a) if ctx.wants(1) else None]


@CROSS.eval
def _cross_eval(ctx, a):
    return C.bind(CROSS.code, [C.contiguous(a[0]), C.contiguous(a[1])], (), tuple(ctx.out_shape),
                  ctx.out_dtype, "cross")


# ---- the loader's checks (c: cad.io.RecordCheck; NOTE [ A primitive's rules ])

@CAST.check
def _check_cast(c):
    c.nargs(1)
    c.naux(0)
    c.out_is(c.shs[0], c.odt)


@MATMUL.check
def _check_matmul(c):
    c.nargs(2)
    c.naux(2)
    (a, b), (da, db) = c.shs, c.dts
    c.need(da == db and da <= 1, f"float operands of one dtype, got {c.sig()}", "args")
    c.need(len(a) >= 1 and len(b) >= 1, "0-d operands", "args")
    c.need(c.aux[0] == (len(a) == 1) and c.aux[1] == (len(b) == 1), f"aux {c.aux} must flag the 1-d operands",
           "aux")
    k1 = a[-1]
    k2 = b[0] if len(b) == 1 else b[-2]
    c.need(k1 == k2, f"operands {c.sig()} are not aligned", "args")
    try:
        batch = np.broadcast_shapes(a[:-2], b[:-2])
    except ValueError:
        c.fail(f"{c.f}.args", f"batch dims of {c.sig()} do not broadcast")
    o = tuple(batch) + (() if len(a) == 1 else (a[-2],)) + (() if len(b) == 1 else (b[-1],))
    c.out_is(o, da)


@CROSS.check
def _check_cross(c):
    c.nargs(2)
    c.naux(0)
    shs, dts = c.shs, c.dts
    c.need(dts[0] == dts[1] and dts[0] <= 1, f"float operands of one dtype, got {c.sig()}", "args")
    c.need(shs[0] == shs[1] and len(shs[0]) >= 1 and shs[0][-1] == 3,
           f"operands of one shape (..., 3), got {c.sig()}", "args")
    c.out_is(shs[0], dts[0])
