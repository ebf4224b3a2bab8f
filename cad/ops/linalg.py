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
