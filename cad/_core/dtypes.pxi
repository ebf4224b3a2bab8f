# dtypes, dtype codes and the error classes.  Included by _engine.pyx (one extension module: calls between the rooms
# stay direct C calls); the include order is the module's order.

# ---------------------------------------------------------------- dtypes
float64 = _np.dtype(_np.float64)
float32 = _np.dtype(_np.float32)
int64 = _np.dtype(_np.int64)
bool_ = _np.dtype(_np.bool_)
cdef tuple _DTYPES = (float64, float32, int64, bool_)
cdef tuple _DTNAMES = ("float64", "float32", "int64", "bool")
cdef int _TYPENUM[4]
_TYPENUM[:] = [cnp.NPY_DOUBLE, cnp.NPY_FLOAT, cnp.NPY_INT64, cnp.NPY_BOOL]
cdef int _ESIZE[4]
_ESIZE[:] = [8, 4, 8, 1]


class CadError(Exception):
    """Base of cad's own errors."""


class ShapeError(ValueError, CadError):
    """Shapes that do not fit an op (names the op and the shapes)."""


class DTypeError(TypeError, CadError):
    """A dtype an op cannot take."""


class DeviceError(RuntimeError, CadError):
    """A device that is missing or that does not match."""


class BackwardError(RuntimeError, CadError):
    """A backward pass that cannot run (consumed tape, non-scalar output, ...)."""


cdef extern from *:
    """
    static int cad_dt_from_typenum(int tn) {
        /* NPY_INT64 aliases NPY_LONG or NPY_LONGLONG depending on the platform */
        if (tn == NPY_DOUBLE) return 0;
        if (tn == NPY_FLOAT) return 1;
        if (tn == NPY_BOOL) return 3;
        if (tn == NPY_INT64 || (tn == NPY_LONGLONG && sizeof(long long) == 8)
            || (tn == NPY_LONG && sizeof(long) == 8)) return 2;
        return -1;
    }
    """
    int _dt_from_typenum "cad_dt_from_typenum"(int tn) noexcept


cdef int _dtype_code(object dt, str who) except -1:
    """cad dtype code of anything numpy understands as a dtype"""
    cdef object d
    if dt is float:
        return CAD_F64
    try:
        d = _np.dtype(dt)
    except TypeError:
        raise DTypeError(f"{who}: {dt!r} is not a dtype") from None
    if d == float64:
        return CAD_F64
    if d == float32:
        return CAD_F32
    if d == int64:
        return CAD_I64
    if d == bool_:
        return CAD_BOOL
    raise DTypeError(f"{who}: dtype {d} is not supported; cad has float64, float32, int64 and bool")


cdef inline int _promote(int a, int b) noexcept:
    """numpy's promotion over cad's dtypes (int64 with float32 gives float64)"""
    if a < 0:
        return b
    if b < 0 or a == b:
        return a
    if (a == CAD_F32 and b == CAD_I64) or (a == CAD_I64 and b == CAD_F32):
        return CAD_F64
    # order: bool(3) < int64(2) < float32(1) < float64(0)
    return a if a < b else b


cdef inline bint _isfloat(int dt) noexcept:
    return dt == CAD_F64 or dt == CAD_F32
