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
from cpython.ref cimport PyObject, Py_INCREF, Py_DECREF, Py_XDECREF
from cpython.tuple cimport PyTuple_New, PyTuple_SET_ITEM
from cpython.pycapsule cimport (PyCapsule_New, PyCapsule_GetPointer, PyCapsule_GetName,
                                PyCapsule_IsValid, PyCapsule_SetName, PyCapsule_Destructor)
from cpython.long cimport PyLong_AsLongLongAndOverflow
from cpython.pythread cimport (PyThread_type_lock, PyThread_allocate_lock, PyThread_acquire_lock,
                               PyThread_release_lock, WAIT_LOCK, NOWAIT_LOCK)
from libc.stdint cimport int64_t, int32_t, int8_t, uint8_t, uint16_t, uint64_t
from libc.stdlib cimport malloc, calloc, free
from libc.string cimport memcpy
from libc.math cimport NAN, pow as c_pow
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


include "replay.pxi"


include "optim.pxi"

# custom primitives: the sweeps' hooks (cad.primitive)
include "custom.pxi"
