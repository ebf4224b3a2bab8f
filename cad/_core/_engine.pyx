# cython: language_level=3
"""cad's engine: the Tensor type, the tape, the dispatch of every primitive op and
the driver of the backward sweep.  Kernels and the sweep itself are C
(cad_kernels/cpu); this module owns Python objects and never runs per-element
work itself.  See NOTE [ Tape layout ] in cad_kernels/cpu/cad_cpu.h.

NOTE [ Values are immutable ]
A tensor's ndarray is read-only and never written after the op that made it.
In-place operators (+=, x[i] = v, ...) compute a new value, record it, and rebind
the Tensor object to it; the tape keeps the old buffer.  So a recorded value can
never change under the tape, and `l[i] *= l[i]` differentiates correctly.

NOTE [ Tapes ]
Each recording starts on the tape of its inputs; inputs with no tape (leaves,
constants) start a new one, and inputs on two tapes merge them (the smaller is
appended to the larger and forwards its tensors there).  A tape lives as long as
a tensor refers to it, and backward() without retain_graph consumes it.
"""
cimport cython
from cpython.ref cimport PyObject, Py_INCREF, Py_DECREF, Py_XDECREF, Py_REFCNT
from cpython.tuple cimport PyTuple_New, PyTuple_SET_ITEM
from cpython.pycapsule cimport (PyCapsule_New, PyCapsule_GetPointer, PyCapsule_GetName,
                                PyCapsule_IsValid, PyCapsule_SetName, PyCapsule_Destructor)
from cpython.long cimport PyLong_AsLongLongAndOverflow
from cpython.pythread cimport (PyThread_type_lock, PyThread_allocate_lock, PyThread_acquire_lock,
                               PyThread_release_lock, WAIT_LOCK, NOWAIT_LOCK)
from libc.stdint cimport int64_t, int32_t, int8_t, uint8_t, uint16_t, uint64_t
from libc.stdlib cimport malloc, calloc, free
from libc.string cimport memcpy, memcmp
from libc.math cimport NAN, pow as c_pow, floor as c_floor, ceil as c_ceil
cimport numpy as cnp
import numpy as _np
import threading as _threading

cnp.import_array()

include "capi.pxi"

include "_gen_ops.pxi"

DEF MAXDIM = 32

include "dtypes.pxi"


include "modes.pxi"


include "tape.pxi"


# ---------------------------------------------------------------- public-function tables

cdef list _API = []
cdef dict _NP_REF = {}
cdef dict _UFUNCS = {}


def set_api(list fns):
    """the Python functions behind Tensor methods, in op-table order (cad.ops.bind)"""
    global _API
    _API = fns


# cad.vmap's batched-value type and its dispatcher (NOTE [ Batched values ] in
# cad/vmap.py): the elementwise, comparison and numpy-fallback paths hand a call
# with a batched argument to the hook; they look only after the fast paths failed
cdef object _BATCHED_T = None
cdef object _BATCH_HOOK = None


def set_batch_hook(t, fn):
    """the batched-value type and fn(op name or numpy function, args) (cad.vmap)"""
    global _BATCHED_T, _BATCH_HOOK
    _BATCHED_T = t
    _BATCH_HOOK = fn


# ---------------------------------------------------------------- named dimensions
# cad/names.py holds the rules (NOTE [ Named dimensions ] there).  The engine keeps
# a tensor's names (Tensor._names: None when unnamed) and hands an elementwise or
# indexing call with a named operand to the hooks; until the first named tensor is
# made (cad_names_on) the paths test one C int.
cdef object _NAMES_EW = None
cdef object _NAMES_GETITEM = None


def set_names_hooks(ew, getitem):
    """ew(op code or name, args, result) -> the result, named; getitem(t, index)"""
    global _NAMES_EW, _NAMES_GETITEM
    _NAMES_EW = ew
    _NAMES_GETITEM = getitem


def _names_enable():
    """from now on the ops look at names (the first named tensor was made)"""
    global cad_names_on
    cad_names_on = 1


def _names_suspend():
    """this thread's ops stop looking at names (a rule runs an op's body); returns
    the previous state for _names_restore"""
    global cad_names_off
    cdef int prev = cad_names_off
    cad_names_off = 1
    return prev


def _names_restore(int prev):
    global cad_names_off
    cad_names_off = prev


def _names_live():
    """names are on in this process and not suspended in this thread"""
    return bool(cad_names_on and not cad_names_off)


def _raw_names(Tensor t):
    """t's names tuple, or None when unnamed"""
    return t._names


def _put_names(Tensor t, object names):
    """name a tensor the caller just made (cad/names.py checks the tuple)"""
    t._names = names


def _raw_getitem(Tensor t, object index):
    return _getitem0(t, index)


cdef object _unify_names(list tuples, Py_ssize_t nd):
    """names tuples unified from the right into nd dims (None matches anything); None
    when two names clash or one lands at two positions (cad/names.py then raises the
    error that says so)"""
    cdef list out = [None] * nd
    cdef Py_ssize_t k, i, j
    cdef tuple nm
    for o in tuples:
        nm = <tuple>o
        k = len(nm)
        if k > nd:
            return None
        for i in range(1, k + 1):
            b = nm[k - i]
            if b is None:
                continue
            a = out[nd - i]
            if a is None:
                out[nd - i] = b
            elif a is not b and a != b:
                return None
    for i in range(nd):
        a = out[i]
        if a is not None:
            for j in range(i + 1, nd):
                if out[j] is a or out[j] == a:
                    return None
    return tuple(out)


def _names_unify(list tuples, Py_ssize_t nd):
    """_unify_names for cad/names.py's rules"""
    return _unify_names(tuples, nd)


cdef object _ew_named(object who, tuple args, object r):
    """an elementwise result named from its operands, here in C unless the names
    clash (cad/names.py's _NAMES_EW then raises the error that says how)"""
    cdef object first = None, nm, got
    cdef bint same = True
    cdef list named = None
    for a in args:
        if a is r:
            return _NAMES_EW(who, args, r)
        if type(a) is Tensor:
            nm = (<Tensor>a)._names
            if nm is not None:
                if first is None:
                    first = nm
                elif nm is not first and nm != first:
                    same = False
    if first is None:
        return r
    if type(r) is not Tensor or (<Tensor>r)._names is not None:
        return _NAMES_EW(who, args, r)
    if same and (<Tensor>r).ndim == len(<tuple>first):
        (<Tensor>r)._names = first
        return r
    named = [(<Tensor>a)._names for a in args if type(a) is Tensor and (<Tensor>a)._names is not None]
    got = _unify_names(named, (<Tensor>r).ndim)
    if got is None:
        return _NAMES_EW(who, args, r)
    (<Tensor>r)._names = got
    return r


cdef object _same_names(Tensor src, object r):
    """r (just made from src, same dims) named as src"""
    if src._names is not None and type(r) is Tensor and r is not src and (<Tensor>r)._names is None:
        (<Tensor>r)._names = src._names
    return r


cdef object _ARRAY_FUNCTION = None


def set_array_function(fn):
    """fn(func, types, args, kwargs): Tensor.__array_function__ (cad/interop.py)"""
    global _ARRAY_FUNCTION
    _ARRAY_FUNCTION = fn


def set_refs(dict refs, dict ufuncs):
    """numpy functions for integer fallbacks, and numpy ufunc name -> cad function"""
    global _NP_REF, _UFUNCS
    _NP_REF = refs
    _UFUNCS = ufuncs


# ---------------------------------------------------------------- Tensor

include "_tensor.pxi"


# ---------------------------------------------------------------- devices

cdef class Device:
    """A device: cad.device('cpu') or cad.device('cuda') (cuda:0, the one GPU cad uses)."""
    cdef readonly str type

    def __init__(self, type="cpu"):
        self.type = str(type).split(":")[0]

    @property
    def index(self):
        return 0 if self.type == "cuda" else None

    def __repr__(self):
        if self.type == "cuda":
            return "device(type='cuda', index=0)"
        return f"device(type='{self.type}')"

    def __str__(self):
        return "cuda:0" if self.type == "cuda" else self.type

    def __eq__(self, other):
        if isinstance(other, Device):
            return self.type == (<Device>other).type
        if isinstance(other, str):
            return self.type == other.split(":")[0]
        return NotImplemented

    def __hash__(self):
        return hash(self.type)


cdef Device _CPU = Device("cpu")


def device(spec="cpu"):
    return spec if isinstance(spec, Device) else Device(spec)


cdef int _check_device(object dev, str who) except -1:
    """the device code of a device spec (0 cpu, 1 cuda); CUDA is made ready (or a
    DeviceError says what is missing)"""
    cdef str spec = str(dev) if isinstance(dev, Device) else str(dev)
    cdef str t = spec.split(":")[0]
    if t == "cpu":
        return 0
    if t == "cuda":
        if ":" in spec and spec.split(":", 1)[1] not in ("0", ""):
            raise DeviceError(f"{who}: device {spec!r}: cad uses one GPU, cuda:0")
        _cuda_ready(who)
        return 1
    raise DeviceError(f"{who}: unknown device {dev!r}; cad knows 'cpu' and 'cuda'")


include "device.pxi"


include "construct.pxi"


include "storage.pxi"


include "ops_elementwise.pxi"


include "ops_reduce.pxi"


include "ops_shape.pxi"


include "ops_linalg.pxi"


include "backward.pxi"


# ---------------------------------------------------------------- bound later by cad.ops

cdef object _API_matmul = matmul
cdef object _API_stack = None
cdef object _API_T = None
cdef object _API_mT = None


def _bind_helpers(matmul_fn, stack_fn, T_fn, mT_fn):
    global _API_matmul, _API_stack, _API_T, _API_mT
    _API_matmul = matmul_fn
    _API_stack = stack_fn
    _API_T = T_fn
    _API_mT = mT_fn


def _check_device_py(dev, str who):
    return _check_device(dev, who)


def _tape_of(Tensor t):
    """the (resolved) tape a tensor was recorded on, or None (for tests and tools)"""
    if t._tape is None:
        return None
    return _resolved(t)



include "tapeview.pxi"

# NOTE [ Scalar second order in C ]: the recording reverse sweep of scalar code
include "scalar_graph.pxi"


include "replay.pxi"


include "optim.pxi"

# custom primitives: the sweeps' hooks (cad.primitive)
include "custom.pxi"
