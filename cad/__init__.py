"""cad: tape-based automatic differentiation for numerical Python.

The public names: tensors and their constructors, every op of the op table
(cad/ops), grad mode, and the autograd and testing modules.
"""
from ._core import _engine as _C
from ._core._engine import (  # noqa: F401
    BackwardError, CadError, Device, DeviceError, DTypeError, ShapeError, Tape, Tensor, as_tensor,
    bool_, device, enable_grad, float32, float64, get_num_threads, int64, is_grad_enabled, no_grad,
    set_grad_enabled, set_num_threads, empty_cache, set_cache_limit, cache_info,
)
from . import ops as _ops

_ops.bind(_C)
_exported = []
for _op in _ops.REGISTRY.values():
    if _op.export:
        for _name in (_op.name,) + _op.aliases:   # aliases: the same function
            globals()[_name] = _op.api
            _exported.append(_name)
del _op, _name

from .ops.shape import cat, expand_dims  # noqa: E402
from .ops.manip import array_split, nonzero, split  # noqa: E402
from .ops.sort import topk  # noqa: E402
from .creation import (  # noqa: E402
    arange, eye, full, full_like, linspace, manual_seed, ones, ones_like, rand, randn, tensor, zeros,
    zeros_like,
)
from . import autograd, cuda, testing  # noqa: E402
from .record import ReplayError, StaticTape, record  # noqa: E402
from .io import FormatError, load, save  # noqa: E402
from .names import NamesError  # noqa: E402
from . import transforms  # noqa: E402,F401
from . import data  # noqa: E402
from . import optim  # noqa: E402
from . import distributed  # noqa: E402  (mpi4py is imported at its first use, not here)
from .vmap import vmap  # noqa: E402
from .ops.custom import Primitive, defjvp, defvjp, primitive  # noqa: E402,F401
from . import linalg  # noqa: E402
from .interop import from_dlpack  # noqa: E402
from .tree import tree_flatten, tree_leaves, tree_map, tree_structure, tree_unflatten  # noqa: E402
from ._argcheck import (  # noqa: E402  (the transforms, with their arguments checked)
    grad, hessian, hvp, jacfwd, jacobian, jacrev, jvp, value_and_grad, vjp,
)

bool = bool_  # noqa: A001  (cad.bool, as torch.bool / numpy's bool)

_C._bind_helpers(
    _ops.REGISTRY["matmul"].api, _ops.REGISTRY["stack"].api,
    lambda x: _ops.REGISTRY["transpose"].api(x),
    lambda x: _ops.REGISTRY["swapaxes"].api(x, -1, -2),
)

from ._version import __version__  # noqa: E402  (the one place: cad/_version.py)
__all__ = sorted(set(_exported) | {
    "Tensor", "Tape", "tensor", "as_tensor", "zeros", "ones", "full", "eye", "arange", "linspace",
    "zeros_like", "ones_like", "full_like", "randn", "rand", "manual_seed", "no_grad",
    "enable_grad", "set_grad_enabled", "is_grad_enabled", "set_num_threads", "get_num_threads",
    "float64", "float32", "int64", "bool", "bool_", "device", "Device", "autograd", "testing", "cuda",
    "empty_cache", "set_cache_limit", "cache_info", "cat", "expand_dims", "split", "array_split",
    "nonzero", "topk", "grad", "value_and_grad", "vjp", "jvp", "jacrev", "jacfwd", "jacobian",
    "hessian", "hvp", "vmap", "from_dlpack", "tree_map", "tree_flatten", "tree_unflatten", "tree_leaves",
    "tree_structure", "record", "StaticTape", "ReplayError", "save", "load", "data", "optim", "FormatError", "NamesError", "CadError", "ShapeError", "DTypeError", "DeviceError", "BackwardError",
    "primitive", "Primitive", "defvjp", "defjvp", "linalg", "distributed",
})
