"""Batched values and the batching rules of the op table (cad.vmap).

NOTE [ Batched values ]
Inside ``cad.vmap(f)``, f sees ``Batched`` values: a tensor ``val`` whose axis 0 is
the batch of one vmap *level*, shown to f as the per-example value (``shape`` is
``val.shape[1:]``).  An op called with a Batched argument goes to the op's
batching rule (the ``batch_rule`` slot of its table entry, filled below by kind
and by op): elementwise ops by broadcasting with the batch axis in front,
reductions and shape ops by moving their axes past it, matmul as a batched matmul,
indexing as a batched gather.  A rule runs cad ops once on the whole batch, never a
loop per example, and the results are recorded on the tape like any op, so
gradients flow through vmap (grad of a vmapped function) and ``cad.record``
replays the batched ops.

Nesting: each vmap call is a Level (an id that grows with depth).  An op takes the
highest level among its arguments; arguments of lower levels (and plain tensors)
are values that level does not batch, and a rule's own cad ops on them dispatch
again at their level.  So vmap(vmap(f)) needs no rule of its own.

How calls reach the rules: the elementwise and comparison functions of the
engine hand a call whose argument is Batched to ``_hook`` once their fast paths
fail (a Batched is not a Tensor), and every Python op function (OpDef.__call__)
checks ``VMAP[0]`` (some vmap is running) before its body.  A plain-tensor call
costs one flag test.

Transforms inside vmap (grad, vjp, jvp, jacrev, ...) are in cad/vmap.py.
"""
import inspect
import itertools
import operator
import threading

import numpy as np

from ._registry import NAMES, REGISTRY, VMAP, fill_slot, ufunc_table

try:
    from .._core import _engine as C
except ImportError:   # the build reads the op table before the extension exists
    C = None


class Level:
    """One running vmap: its batch size, its randomness mode, and whether it is
    still running (a Batched that escapes its vmap is an error)."""
    __slots__ = ("active", "id", "randomness", "size")
    def __init__(self, size, randomness):
        self.id = next(_IDS)   # (itertools.count is atomic under the GIL)
        self.size = size
        self.randomness = randomness
        self.active = True

    def __repr__(self):
        return f"<vmap level {self.id}, batch {self.size}>"


_IDS = itertools.count(1)
_tls = threading.local()


def levels():
    """the running vmap levels of this thread, outermost first"""
    s = getattr(_tls, "s", None)
    if s is None:
        s = _tls.s = []
    return s


def top():
    if not VMAP[0]:   # no vmap running in any thread (push/pop count them): no level here
        return None
    s = getattr(_tls, "s", None)
    return s[-1] if s else None


_count_lock = threading.Lock()


def push(level):
    levels().append(level)
    with _count_lock:
        VMAP[0] += 1


def pop_any(level):
    """take level off this thread's stack (wherever it is: a transform suspends
    a level below others, NOTE [ Transforms inside vmap ] in cad/vmap.py)"""
    s = levels()
    for i in range(len(s) - 1, -1, -1):
        if s[i] is level:
            del s[i]
            break
    else:
        raise AssertionError("vmap: a level left the stack twice")
    with _count_lock:
        VMAP[0] -= 1


def _api(name):
    return REGISTRY[name].api


class Batched:
    """A value batched by cad.vmap (NOTE [ Batched values ]): f sees one example."""
    __slots__ = ("level", "val")
    __cad_batched__ = True

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        """numpy ufuncs that are cad ops dispatch to cad (np.sin(x), ndarray + x), as
        for a Tensor; others raise"""
        fn = _UFUNCS.get(ufunc.__name__) if method == "__call__" and not kwargs else None
        if fn is None:
            fn = _NP_FNS.get(ufunc.__name__) if method == "__call__" and not kwargs else None
        if fn is None:
            raise TypeError(f"cad.vmap: numpy's {ufunc.__name__} on a batched value; use the cad "
                            "function (numpy cannot see one example's value)")
        return fn(*inputs)

    def __init__(self, val, level):
        self.val = val
        self.level = level

    # ---- what f sees: one example
    @property
    def shape(self):
        return tuple(self.val.shape[1:])

    @property
    def ndim(self):
        return self.val.ndim - 1

    @property
    def names(self):
        """one example's dim names (named dimensions)"""
        n = C._raw_names(self.val) if type(self.val) is C.Tensor else None
        return n[1:] if n is not None else (None,) * (self.val.ndim - 1)

    @property
    def size(self):
        n = 1
        for s in self.shape:
            n *= s
        return n

    def numel(self):
        return self.size

    def dim(self):
        return self.ndim

    def __len__(self):
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    def __iter__(self):
        if self.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        return (self[i] for i in range(self.shape[0]))

    @property
    def dtype(self):
        return self.val.dtype

    @property
    def device(self):
        return self.val.device

    @property
    def is_cuda(self):
        return self.val.is_cuda

    @property
    def requires_grad(self):
        return self.val.requires_grad

    @property
    def is_leaf(self):
        return False

    @property
    def grad(self):
        raise ValueError("cad.vmap: .grad of a batched value; use cad.grad inside the vmapped "
                         "function (per-example gradients)")

    @property
    def T(self):
        return _api("transpose")(self)

    @property
    def mT(self):
        return _api("swapaxes")(self, -1, -2)

    def _no_value(self, what):
        raise ValueError(f"cad.vmap: {what} of a batched value: inside vmap a value differs "
                         "from example to example, so it cannot become one Python value "
                         "(data-dependent control flow: use cad.where)")

    def item(self):
        self._no_value("item()")

    def __float__(self):
        self._no_value("float()")

    def __int__(self):
        self._no_value("int()")

    def __index__(self):  # noqa: PLE0305  (it raises)
        self._no_value("an index")

    def __bool__(self):  # noqa: PLE0304  (it raises)
        self._no_value("bool() (an if or while on a tensor)")

    def numpy(self):
        self._no_value("numpy()")

    def tolist(self):
        self._no_value("tolist()")

    def __array__(self, *a, **k):
        self._no_value("a numpy array")

    def __dlpack__(self, *a, **k):
        self._no_value("__dlpack__")

    def __array_function__(self, func, types, args, kwargs):
        """numpy functions on batched values: cad's function of the same name, as for
        a Tensor (NOTE [ Interop ] in cad/interop.py)"""
        from ..interop import array_function
        return array_function(func, types, args, kwargs)

    def backward(self, *a, **k):
        raise ValueError("cad.vmap: backward() of a batched value; use cad.grad or cad.vjp "
                         "inside the vmapped function")

    def __repr__(self):
        return f"Batched(shape={self.shape}, batch={self.level.size}, level={self.level.id})"

    __hash__ = object.__hash__

    # ---- methods that are not ops
    def detach(self):
        return Batched(self.val.detach(), self.level)

    def clone(self):
        return Batched(self.val.clone(), self.level)

    def to(self, *args, **kwargs):
        return Batched(self.val.to(*args, **kwargs), self.level)

    def cpu(self):
        return Batched(self.val.cpu(), self.level)

    def cuda(self):
        return Batched(self.val.cuda(), self.level)

    def contiguous(self):
        return self

    def view(self, *shape):
        return _api("reshape")(self, *shape)

    def any(self, axis=None, keepdims=False):
        return _api("max")(self._nonzero(), axis, keepdims) > 0

    def all(self, axis=None, keepdims=False):
        return _api("min")(self._nonzero(), axis, keepdims) > 0

    def _nonzero(self):
        return _api("where")(_api("ne")(self, 0), 1.0, 0.0)

    def __setitem__(self, idx, value):
        _setitem_batched(self, idx, value)

    def __getitem__(self, idx):
        return dispatch(REGISTRY["getitem"], (self, idx), {})

    def __matmul__(self, o):
        return dispatch(REGISTRY["matmul"], (self, o), {})

    def __rmatmul__(self, o):
        return dispatch(REGISTRY["matmul"], (o, self), {})

    def __neg__(self):
        return _api("neg")(self)

    def __pos__(self):
        return self

    def __abs__(self):
        return _api("abs")(self)

    def __invert__(self):
        return _ew_callable(operator.invert, "invert", (self,))

    def __floordiv__(self, o):
        return _ew_callable(operator.floordiv, "floor_divide", (self, o))

    def __rfloordiv__(self, o):
        return _ew_callable(operator.floordiv, "floor_divide", (o, self))

    def __mod__(self, o):
        return _ew_callable(operator.mod, "remainder", (self, o))

    def __rmod__(self, o):
        return _ew_callable(operator.mod, "remainder", (o, self))


def _binop(name, reflected=False):
    def f(self, o, _n=name):
        api = REGISTRY[_n].api
        return api(o, self) if reflected else api(self, o)
    f.__name__ = name
    return f


for _dn, _op in (("add", "add"), ("sub", "sub"), ("mul", "mul"), ("truediv", "div"), ("pow", "pow"),
                 ("and", "logical_and"), ("or", "logical_or"), ("xor", "logical_xor")):
    setattr(Batched, f"__{_dn}__", _binop(_op))
    setattr(Batched, f"__r{_dn}__", _binop(_op, True))
    setattr(Batched, f"__i{_dn}__", _binop(_op))
for _dn, _op in (("eq", "eq"), ("ne", "ne"), ("lt", "lt"), ("le", "le"), ("gt", "gt"), ("ge", "ge")):
    setattr(Batched, f"__{_dn}__", _binop(_op))
del _dn, _op


def _pow(self, o):
    """x ** 2 is square, as for a Tensor (one multiply, and its rules, not pow's)"""
    if type(o) in (int, float) and o == 2:
        return REGISTRY["square"].api(self)
    return REGISTRY["pow"].api(self, o)


Batched.__pow__ = _pow


def _attach_methods():
    """a method for every op the Tensor has as a method (x.sum(), x.reshape(...))"""
    for op in REGISTRY.values():
        for name in (op.name,) + op.aliases if op.method else ():
            if not hasattr(Batched, name):
                def m(self, *args, _op=op, **kwargs):
                    return dispatch(_op, (self,) + args, kwargs)
                m.__name__ = name
                setattr(Batched, name, m)
    Batched.float = lambda self: _api("astype")(self, np.float32)
    Batched.double = lambda self: _api("astype")(self, np.float64)


# ---------------------------------------------------------------- dispatch

def _is(a, level):
    return type(a) is Batched and a.level is level


def _find(args, kwargs):
    """the highest level among the Batched arguments (one list/tuple deep: the
    operands of concatenate, stack, einsum), or None"""
    best = None
    for a in args:
        if type(a) is Batched:
            if best is None or a.level.id > best.id:
                best = a.level
        elif type(a) in (list, tuple):
            for e in a:
                if type(e) is Batched and (best is None or e.level.id > best.id):
                    best = e.level
    for a in kwargs.values():
        if type(a) is Batched and (best is None or a.level.id > best.id):
            best = a.level
    if best is not None and not best.active:
        raise ValueError("cad.vmap: a batched value escaped the vmap that made it (kept in a "
                         "global or a closure and used after vmap returned); return it from "
                         "the vmapped function instead")
    return best


def _wrap(r, level):
    if isinstance(r, tuple):
        return tuple(Batched(x, level) for x in r)
    return Batched(r, level)


def dispatch(op, args, kwargs):
    """an op called with Batched arguments: its batching rule on the whole batch"""
    level = _find(args, kwargs)
    if level is None:
        return NotImplemented
    rule = op.batch_rule
    if not callable(rule):
        raise TypeError(f"cad.vmap: {op.name} has no batching rule")
    if NAMES[0]:   # axes given by dim name: their positions in the example
        from ..names import resolve_axes
        args, kwargs = resolve_axes(op, args, kwargs)
    return _wrap(rule(op, level, args, kwargs), level)


_NP_FNS = {}
_UFUNCS = {}   # numpy ufunc name -> cad function (the op table's ufunc names)


def _hook(key, args):
    """the engine's hand-off: an elementwise op (by name) or a numpy fallback (by
    function) called with a Batched argument"""
    if key == "as_tensor":   # a Batched reached a function that needs a plain tensor
        level = _find(args, {})   # raises when it escaped its vmap
        raise TypeError("cad.vmap: a batched value reached a function that needs a plain tensor "
                        "(a method of an unbatched tensor called with a batched argument, or a "
                        "conversion to numpy); call the cad function instead (cad.dot(a, b))"
                        if level is not None else "cad.vmap: not a batched value")
    if isinstance(key, str):
        return dispatch(REGISTRY[key], args, {})
    fn = _NP_FNS.get(getattr(key, "__name__", None))
    if fn is None:
        raise TypeError(f"cad.vmap: {getattr(key, '__name__', key)} has no batching rule")
    return _ew_callable(fn, key.__name__, args)


# ---------------------------------------------------------------- helpers

def lndim(a, level):
    """a's number of dims as the examples of level see it"""
    if type(a) is Batched:
        return a.val.ndim - 1 if a.level is level else a.ndim
    if isinstance(a, C.Tensor):
        return a.ndim
    if type(a) in (float, int, bool):
        return 0
    return np.ndim(a)


def lshape(a, level):
    if type(a) is Batched:
        return tuple(a.val.shape[1:]) if a.level is level else a.shape
    if isinstance(a, C.Tensor):
        return a.shape
    return np.shape(a)


def _reshape(v, shape):
    return C.reshape(v, shape) if type(v) is C.Tensor else _api("reshape")(v, shape)


def _tensorish(a):
    return a if isinstance(a, (C.Tensor, Batched)) else C.as_tensor(a)


def lift(a, level):
    """a's value batched at level: its batch axis 0 (a broadcast view when a is
    not batched there: no copy)"""
    if _is(a, level):
        return a.val
    a = _tensorish(a)
    shape = tuple(a.shape)
    return _api("broadcast_to")(_reshape(a, (1,) + shape), (level.size,) + shape)


def _align(a, level, n):
    """a's value for an elementwise op whose examples have n dims: a batched
    value gets size-1 dims after its batch axis; others broadcast as they are"""
    if _is(a, level):
        v = a.val
        k = v.ndim - 1
        if k < n:
            sh = tuple(v.shape)
            v = _reshape(v, (sh[0],) + (1,) * (n - k) + sh[1:])
        return v
    return a


def _nax(ax, n, who):
    """a per-example axis as a physical one (the batch axis is 0)"""
    try:
        ax = operator.index(ax)
    except TypeError:
        raise TypeError(f"{who}: axis must be an integer, got {ax!r}") from None
    if not -n <= ax < n:
        raise C.ShapeError(f"{who}: axis {ax} is out of range for a tensor of {n} dims "
                           "(inside vmap: the shape of one example)")
    return ax % n + 1


def _axes(axis, n, who):
    if axis is None:
        return tuple(range(1, n + 1))
    if isinstance(axis, (tuple, list)):
        return tuple(_nax(a, n, who) for a in axis)
    return _nax(axis, n, who)


_SIG = {}


_PLAIN = {}   # op name -> ((name, default), ...) when every parameter is positional-or-keyword


def _plain_params(op, sig):
    ps = tuple(sig.parameters.values())
    if all(p.kind is p.POSITIONAL_OR_KEYWORD for p in ps):
        return tuple((p.name, p.default) for p in ps)
    return None


def _bind(op, args, kwargs):
    """the arguments of a call by name (the raw function's signature)"""
    sig = _SIG.get(op.name)
    if sig is None:
        sig = _SIG[op.name] = inspect.signature(op.api.__wrapped__)
        _PLAIN[op.name] = _plain_params(op, sig)
    plain = _PLAIN[op.name]
    if plain is not None and not kwargs and len(args) <= len(plain) and \
            all(d is not inspect.Parameter.empty for _, d in plain[len(args):]):
        r = {n: (args[i] if i < len(args) else d) for i, (n, d) in enumerate(plain)}   # (Signature.bind
        r["__op__"] = op.name                                                        # costs ~10 us)
        return r
    try:
        b = sig.bind(*args, **kwargs)
    except TypeError as e:
        raise TypeError(f"{op.name}: {e}") from None
    b.apply_defaults()
    r = dict(b.arguments)
    r["__op__"] = op.name
    return r


def _pick(a, name, alias):
    """axis= or its alias dim= (a["__op__"]'s signature says what was left at its default)"""
    v = a.get(alias)
    if v is not None:
        sig = _SIG.get(a.get("__op__"))
        default = sig.parameters[name].default if sig is not None and name in sig.parameters else None
        if a.get(name) is not None and a.get(name) != default:
            raise TypeError(f"give {name}= or {alias}=, not both")
        return v
    return a.get(name)


# ---------------------------------------------------------------- the rules

def _ew_callable(fn, name, args):
    level = _find(args, {})
    n = max(lndim(a, level) for a in args)
    return Batched(fn(*[_align(a, level, n) for a in args]), level)


def ew_rule(op, level, args, kwargs):
    """elementwise ops, comparisons, where, clip: broadcasting with the batch axis
    in front of every batched operand"""
    n = max([lndim(a, level) for a in args] + [lndim(a, level) for a in kwargs.values()])
    try:
        return op.api(*[_align(a, level, n) for a in args],
                      **{k: _align(v, level, n) for k, v in kwargs.items()})
    except C.ShapeError:
        shapes = " and ".join(str(lshape(a, level)) for a in args)
        raise C.ShapeError(f"{op.name}: shapes {shapes} cannot be broadcast together (inside "
                           "vmap: the shapes of one example)") from None


def reduce_rule(op, level, args, kwargs):
    """sum max min prod mean logsumexp: the axes move past the batch axis"""
    a = _bind(op, args, kwargs)
    x = a["x"]
    n = lndim(x, level)
    axis = _axes(_pick(a, "axis", "dim"), n, op.name)
    keep = a["keepdims"] if a.get("keepdim") is None else a["keepdim"]
    kw = {k: a[k] for k in ("dtype", "out") if a.get(k) is not None}
    return op.api(lift(x, level), axis, bool(keep), **kw)


def softmax_rule(op, level, args, kwargs):
    a = _bind(op, args, kwargs)
    x = a["x"]
    v = lift(x, level)
    n = lndim(x, level)
    axis = _pick(a, "axis", "dim")
    if axis is None:   # every axis of the example
        sh = tuple(v.shape)
        return _reshape(op.api(_reshape(v, (sh[0], -1 if sh[0] else _prod(sh[1:]))), 1), sh)
    return op.api(v, _nax(axis, n, op.name))


def _prod(s):
    p = 1
    for d in s:
        p *= d
    return p


def argm_rule(op, level, args, kwargs):
    a = _bind(op, args, kwargs)
    x = a["x"]
    v = lift(x, level)
    n = lndim(x, level)
    axis = _pick(a, "axis", "dim")
    keep = a["keepdims"] if a.get("keepdim") is None else a["keepdim"]
    if axis is None:
        B = v.shape[0]
        r = op.api(_reshape(v, (B, _prod(v.shape[1:]))), 1)
        return _reshape(r, (B,) + (1,) * n) if keep else r
    return op.api(v, _nax(axis, n, op.name), bool(keep))


def scan_rule(op, level, args, kwargs):
    a = _bind(op, args, kwargs)
    x = a["x"]
    v = lift(x, level)
    n = lndim(x, level)
    axis = _pick(a, "axis", "dim")
    kw = {"reverse": a["reverse"]} if "reverse" in a else {}
    if axis is None:
        B = v.shape[0]
        return op.api(_reshape(v, (B, _prod(v.shape[1:]))), 1, **kw)
    return op.api(v, _nax(axis, n, op.name), **kw)


def _resolve(shape, size, who):
    """a target shape with its -1 filled in from size"""
    shape = tuple(shape)
    if shape.count(-1) > 1:
        raise ValueError(f"{who}: only one dimension can be -1, got {shape}")
    if -1 in shape:
        rest = _prod(d for d in shape if d != -1)
        if rest == 0 or size % rest:
            raise ValueError(f"{who}: cannot reshape an example of size {size} into {shape}")
        shape = tuple(size // rest if d == -1 else d for d in shape)
    if _prod(shape) != size:
        raise ValueError(f"{who}: cannot reshape an example of size {size} into shape {shape}")
    return shape


def reshape_rule(op, level, args, kwargs):
    from .shape import _shape_arg
    x, shape = args[0], args[1:]
    if "shape" in kwargs:
        shape = (kwargs["shape"],)
    shape = _shape_arg(shape, "reshape")
    v = lift(x, level)
    s = _resolve(shape, _prod(lshape(x, level)), "reshape")
    return _reshape(v, (v.shape[0],) + s)


def flatten_rule(op, level, args, kwargs):
    x = args[0]
    v = lift(x, level)
    return _reshape(v, (v.shape[0], _prod(lshape(x, level))))


def _perm(op, x, level, perm):
    n = lndim(x, level)
    perm = tuple(perm)
    if sorted(p % n if -n <= p < n else -1 for p in perm) != list(range(n)):
        raise ValueError(f"{op.name}: axes {perm} are not a permutation of the {n} axes of an "
                         f"example of shape {lshape(x, level)}")
    v = lift(x, level)
    axes = (0,) + tuple(p % n + 1 for p in perm)
    return C.transpose(v, axes) if type(v) is C.Tensor else _api("transpose")(v, axes)


def transpose_rule(op, level, args, kwargs):
    x = args[0]
    axes = args[1] if len(args) > 1 else kwargs.get("axes")
    extra = args[2:]
    n = lndim(x, level)
    if extra:   # transpose(x, a, b): swap (torch)
        p = list(range(n))
        i, j = _nax(axes, n, "transpose") - 1, _nax(extra[0], n, "transpose") - 1
        p[i], p[j] = p[j], p[i]
        return _perm(op, x, level, p)
    if axes is None:
        return _perm(op, x, level, range(n - 1, -1, -1))
    return _perm(op, x, level, tuple(axes))


def permute_rule(op, level, args, kwargs):
    x, dims = args[0], args[1:]
    if "dims" in kwargs:
        dims = (kwargs["dims"],)
    if len(dims) == 1 and not isinstance(dims[0], int):
        dims = tuple(dims[0])
    return _perm(op, x, level, dims)


def swapaxes_rule(op, level, args, kwargs):
    a = _bind(op, args, kwargs)
    x = a["x"]
    n = lndim(x, level)
    p = list(range(n))
    i, j = _nax(a["axis1"], n, op.name) - 1, _nax(a["axis2"], n, op.name) - 1
    p[i], p[j] = p[j], p[i]
    return _perm(op, x, level, p)


def _bcast(x, level, target, who):
    v = _align(x, level, len(target)) if _is(x, level) else lift(x, level)
    if not _is(x, level):
        v = _align(Batched(v, level), level, len(target))
    return _api("broadcast_to")(v, (level.size,) + tuple(target))


def broadcast_to_rule(op, level, args, kwargs):
    a = _bind(op, args, kwargs)
    shape = a["shape"]
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    return _bcast(a["x"], level, shape, op.name)


def expand_rule(op, level, args, kwargs):
    from .shape import _shape_arg
    x, shape = args[0], args[1:]
    for k in ("shape", "size"):
        if k in kwargs:
            shape = (kwargs[k],)
    shape = _shape_arg(shape, "expand")
    xs = lshape(x, level)
    off = len(shape) - len(xs)
    shape = tuple(xs[i - off] if d == -1 and i >= off else d for i, d in enumerate(shape))
    return _bcast(x, level, shape, op.name)


def squeeze_rule(op, level, args, kwargs):
    a = _bind(op, args, kwargs)
    x = a["x"]
    s = lshape(x, level)
    axis = _pick(a, "axis", "dim")
    if axis is None:
        drop = {i for i, d in enumerate(s) if d == 1}
    else:
        axs = axis if isinstance(axis, (tuple, list)) else (axis,)
        drop = {_nax(ax, len(s), op.name) - 1 for ax in axs}
        for i in drop:
            if s[i] != 1:
                raise C.ShapeError(f"squeeze: axis {i} has size {s[i]}, not 1 (an example of "
                                   f"shape {s})")
    v = lift(x, level)
    return _reshape(v, (v.shape[0],) + tuple(d for i, d in enumerate(s) if i not in drop))


def unsqueeze_rule(op, level, args, kwargs):
    a = _bind(op, args, kwargs)
    x = a["x"]
    n = lndim(x, level)
    d = _nax(a["dim"], n + 1, op.name)
    v = lift(x, level)
    sh = tuple(v.shape)
    return _reshape(v, sh[:d] + (1,) + sh[d:])


def _seq_rule(op, level, args, kwargs, extra):
    a = _bind(op, args, kwargs)
    ts = list(a["tensors"])
    if not ts:
        raise ValueError(f"{op.name}: needs at least one tensor")
    n = lndim(ts[0], level)
    axis = _pick(a, "axis", "dim")
    return op.api([lift(t, level) for t in ts], _nax(0 if axis is None else axis, n + extra, op.name))


def concat_rule(op, level, args, kwargs):
    return _seq_rule(op, level, args, kwargs, 0)


def stack_rule(op, level, args, kwargs):
    return _seq_rule(op, level, args, kwargs, 1)


def take_along_rule(op, level, args, kwargs):
    a = _bind(op, args, kwargs)
    x, idx, axis = a["x"], a["indices"], a["axis"]
    v, iv = lift(x, level), lift(_tensorish(idx) if not isinstance(idx, Batched) else idx, level)
    if axis is None:
        B = v.shape[0]
        return op.api(_reshape(v, (B, _prod(v.shape[1:]))), iv, 1)
    n = lndim(x, level)
    ni = lndim(idx, level)
    if ni != n:
        raise C.ShapeError(f"take_along_axis: indices of {ni} dims for an example of {n} dims")
    return op.api(v, iv, _nax(axis, n, op.name))


def _mm_phys(level, a, b, who):
    """matmul of per-example a and b, batched at level (either may be unbatched)"""
    na, nb = lndim(a, level), lndim(b, level)
    if na == 0 or nb == 0:
        raise C.ShapeError(f"{who}: operands of shapes {lshape(a, level)} and {lshape(b, level)}: "
                           "0-d operands are not allowed (use * for scalars)")
    ba, bb = _is(a, level), _is(b, level)
    va = a.val if ba else _tensorish(a)
    vb = b.val if bb else _tensorish(b)
    sa, sb = False, False
    if na == 1:   # (k,) -> (1, k)
        va = _reshape(va, ((va.shape[0], 1) + tuple(va.shape[1:])) if ba else (1,) + tuple(va.shape))
        na, sa = 2, True
    if nb == 1:   # (k,) -> (k, 1)
        vb = _reshape(vb, tuple(vb.shape) + (1,))
        nb, sb = 2, True
    N = max(na, nb)
    if ba and na < N:
        sh = tuple(va.shape)
        va = _reshape(va, (sh[0],) + (1,) * (N - na) + sh[1:])
    if bb and nb < N:
        sh = tuple(vb.shape)
        vb = _reshape(vb, (sh[0],) + (1,) * (N - nb) + sh[1:])
    try:
        r = _api("matmul")(va, vb)
    except C.ShapeError:
        raise C.ShapeError(f"{who}: shapes {lshape(a, level)} and {lshape(b, level)} are not "
                           "aligned (inside vmap: the shapes of one example)") from None
    if sa or sb:
        sh = tuple(r.shape)
        if sa and sb:
            sh = sh[:-2]
        elif sa:
            sh = sh[:-2] + sh[-1:]
        else:
            sh = sh[:-1]
        r = _reshape(r, sh)
    return r


def matmul_rule(op, level, args, kwargs):
    a = _bind(op, args, kwargs)
    return _mm_phys(level, a["a"], a["b"], "matmul")


def dot_rule(op, level, args, kwargs):
    a = _bind(op, args, kwargs)
    x, y = a["a"], a["b"]
    na, nb = lndim(x, level), lndim(y, level)
    if na == 0 or nb == 0:
        return ew_rule(REGISTRY["mul"], level, (x, y), {})
    sa, sb = lshape(x, level), lshape(y, level)
    if na > 2 or nb > 2:
        raise ValueError(f"dot: operands of shapes {sa} and {sb}: dot takes 0-d, 1-D and 2-D "
                         "operands; use matmul or einsum for batched products")
    if sa[-1] != sb[0]:
        raise C.ShapeError(f"dot: shapes {sa} and {sb} are not aligned: {sa[-1]} (last dim of a) "
                           f"!= {sb[0]} (dim 0 of b)")
    return _mm_phys(level, x, y, "dot")


def outer_rule(op, level, args, kwargs):
    a = _bind(op, args, kwargs)
    x, y = a["a"], a["b"]
    vx = _reshape(x.val, (x.val.shape[0], -1 if x.val.shape[0] else _prod(lshape(x, level)), 1)) \
        if _is(x, level) else _reshape(_tensorish(x), (-1, 1))
    vy = _reshape(y.val, (y.val.shape[0], 1, -1 if y.val.shape[0] else _prod(lshape(y, level)))) \
        if _is(y, level) else _reshape(_tensorish(y), (1, -1))
    return vx * vy


def einsum_rule(op, level, args, kwargs):
    from .linalg import _parse_einsum
    subs = kwargs.get("subscripts")
    ops = list(args)
    if subs is None:
        subs, ops = ops[0], ops[1:]
    ops = [o if isinstance(o, (Batched, C.Tensor)) else C.as_float(o, "einsum") for o in ops]

    class _Nd:   # the example's ndim for the parser
        def __init__(self, o):
            self.ndim = lndim(o, level)
            self.shape = lshape(o, level)
    letters, out = _parse_einsum(subs, [_Nd(o) for o in ops])
    used = set("".join(letters) + out)
    z = next(c for c in "ZYXWVUTSRQPONMLKJIHGFEDCBAzyxwvutsrqponmlkjihgfedcba" if c not in used)
    terms = [(z + t) if _is(o, level) else t for o, t in zip(ops, letters)]
    spec = ",".join(terms) + "->" + z + out
    return op.api(spec, *[o.val if _is(o, level) else o for o in ops])


def astype_rule(op, level, args, kwargs):
    a = _bind(op, args, kwargs)
    return op.api(lift(a["x"], level), a["dtype"])


def xent_rule(op, level, args, kwargs):
    a = _bind(op, args, kwargs)
    logits, labels, red = a["logits"], a["labels"], a["reduction"]
    if not isinstance(labels, (Batched, C.Tensor)):
        labels = C.as_tensor(np.asarray(labels))
    nl = lndim(logits, level)
    vz, vl = lift(logits, level), lift(labels, level)
    if nl == 1:
        return op.api(vz, vl, reduction="none")
    if nl != 2 or lndim(labels, level) != 1:
        raise ValueError(f"cross_entropy: logits of shape {lshape(logits, level)} need labels of "
                         f"shape {lshape(logits, level)[:-1]}, got {lshape(labels, level)}")
    B, N, K = vz.shape
    nll = _reshape(op.api(_reshape(vz, (B * N, K)), _reshape(vl, (B * N,)), reduction="none"), (B, N))
    if red == "none":
        return nll
    if red == "sum":
        return _api("sum")(nll, 1)
    return _api("mean")(nll, 1)


# ---- indexing

def _expand_index(idx, n):
    """idx as a tuple with its Ellipsis spelled out as slices"""
    if not isinstance(idx, tuple):
        idx = (idx,)
    k = sum(1 for e in idx if e is not None and e is not Ellipsis and not _isbool(e)) + \
        sum(_ndim(e) for e in idx if _isbool(e))
    if sum(1 for e in idx if e is Ellipsis) > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    out = []
    for e in idx:
        if e is Ellipsis:
            out.extend([slice(None)] * max(n - k, 0))
        else:
            out.append(e)
    return tuple(out)


def _isbool(e):
    if type(e) is Batched or isinstance(e, (C.Tensor, np.ndarray)):
        return e.dtype == np.bool_
    if isinstance(e, list):
        return np.asarray(e).dtype == np.bool_
    return False


def _ndim(e):
    return e.ndim if hasattr(e, "ndim") else np.ndim(e)


def _is_arr(e):
    return type(e) is Batched or isinstance(e, (C.Tensor, np.ndarray, list))


def _adv(idx, level):
    """positions of the advanced entries (numpy: arrays, and integers when an
    array is present) and the ndim of their broadcast"""
    arr = [i for i, e in enumerate(idx) if _is_arr(e)]
    if not arr:
        return [], 0
    pos = [i for i, e in enumerate(idx) if _is_arr(e) or isinstance(e, (int, np.integer))
           and not isinstance(e, bool)]
    shapes = []
    for i in pos:
        e = idx[i]
        if _isbool(e):
            shapes.append((1,))
        elif isinstance(e, (int, np.integer)):
            shapes.append(())
        else:
            shapes.append(lshape(e, level) if type(e) is Batched else np.shape(e) if isinstance(e, list)
                          else tuple(e.shape))
    return pos, len(np.broadcast_shapes(*shapes))


def _phys_index(idx, level, B):
    """the physical index of a per-example index (batch axis in front), and the
    permutation that puts the result's axes in numpy's per-example order"""
    pos, adv_nd = _adv(idx, level)
    batched = [i for i, e in enumerate(idx) if _is(e, level)]
    contiguous = bool(pos) and pos == list(range(pos[0], pos[-1] + 1))
    if not batched:
        phys = (slice(None),) + idx
        if pos and not contiguous:   # numpy puts the advanced dims first: (adv, B, ...)
            return phys, ("move", adv_nd)
        return phys, None
    for i in batched:
        if _isbool(idx[i]):
            raise ValueError("cad.vmap: a batched boolean mask gives each example a different "
                             "shape; use cad.where")
    ar = C.const_on(np.arange(B).reshape((B,) + (1,) * adv_nd), C.dev_of(idx[batched[0]].val)
                    if type(idx[batched[0]].val) is C.Tensor else 0)
    ents = []
    for i, e in enumerate(idx):
        if _is(e, level):
            v = e.val
            k = v.ndim - 1
            if k < adv_nd:
                sh = tuple(v.shape)
                v = _reshape(v, (sh[0],) + (1,) * (adv_nd - k) + sh[1:])
            ents.append(v)
        else:
            ents.append(e)
    phys = (ar,) + tuple(ents)
    if contiguous and pos[0] > 0:   # result (B, adv, pre, post): adv goes after pre
        npre = sum(1 for e in idx[:pos[0]])   # slices and Nones: one dim each
        return phys, ("adv_after", adv_nd, npre)
    return phys, None


def getitem_rule(op, level, args, kwargs):
    a = _bind(op, args, kwargs)
    x, idx = a["x"], a["idx"]
    n = lndim(x, level)
    idx = _expand_index(idx, n)
    v = lift(x, level)
    phys, fix = _phys_index(idx, level, v.shape[0])
    r = v[phys]
    if fix is None:
        return r
    return _api("transpose")(r, _fix_perm(fix, r.ndim))


def _fix_perm(fix, nd):
    """the permutation from the physical index's result (numpy's placement of the
    advanced dims after the batch's index is prepended) to the batched per-example
    layout (B, numpy's per-example result)"""
    if fix[0] == "move":   # (adv..., B, rest...) -> (B, adv..., rest...)
        k = fix[1]
        return (k,) + tuple(range(k)) + tuple(range(k + 1, nd))
    _, k, npre = fix       # (B, adv..., pre..., rest...) -> (B, pre..., adv..., rest...)
    return (0,) + tuple(range(1 + k, 1 + k + npre)) + tuple(range(1, 1 + k)) + \
        tuple(range(1 + k + npre, nd))


def _setitem_rule(op, level, args, kwargs):
    """setitem(x, v, idx): a new value (x is not changed), as the op itself"""
    a = _bind(op, args, kwargs)
    y = Batched(lift(a["x"], level) * 1.0, level)
    _setitem_batched(y, a["idx"], a["v"])
    return y.val


def _setitem_batched(x, idx, value):
    """x[idx] = value for a Batched x (rebinding x.val, NOTE [ Values are immutable ])"""
    level = _find((x, value) + (idx if isinstance(idx, tuple) else (idx,)), {})
    if x.level is not level:
        raise ValueError(f"cad.vmap: x[...] = v writes a value batched by an inner vmap into x "
                         f"(shape {x.shape}) that it does not batch; build the result with "
                         "cad.where or cad.stack")
    n = x.ndim
    idx = _expand_index(idx, n)
    phys, fix = _phys_index(idx, level, level.size)
    if _is(value, level):
        region = np.empty(x.shape, dtype=np.bool_)[tuple(
            np.zeros(lshape(e, level), dtype=np.int64) if _is(e, level) else
            (e.numpy() if isinstance(e, C.Tensor) else e) for e in idx)].shape
        value = _align(value, level, len(region))
        if fix is not None:   # v is (B, per-example region): into the physical index's order
            if value.ndim != 1 + len(region):
                raise C.ShapeError(f"cad.vmap: x[idx] = v: v of {value.ndim - 1} dims per example "
                                   f"does not fit the region of shape {region}")
            inv = np.argsort(_fix_perm(fix, value.ndim))   # the inverse permutation
            value = _api("transpose")(value, tuple(int(k) for k in inv))
    v = x.val
    v[phys] = value
    x.val = v


# ---- composites over public ops

# NOTE [ Composite bodies ]
# The composites of issue 13 (var, norm, sort, pad, diag, kron, ...) call only public
# ops in their bodies (the table's functions and Tensor methods, never the engine's
# raw reshape/reduce/concat, which take plain tensors), and read only .shape, .ndim,
# .dtype and .is_cuda of their inputs, which a Batched value shows per example.  So
# one rule batches them all: run the body on the batched arguments; each op inside
# dispatches to its own rule.  A result that the batch does not reach (the body
# only read shapes) is broadcast over the batch.

def _phys(r, level):
    if isinstance(r, tuple):
        return tuple(_phys(e, level) for e in r)
    return lift(r, level)


def cross_rule(op, level, args, kwargs):
    """cross's axis is each operand's own (numpy's axisa = axisb = axisc): moved last in
    both lifted values, their ranks aligned after the batch axis, one call, the result's
    axis put back"""
    from .manip import moveaxis
    a = _bind(op, args, kwargs)
    x, y = a["a"], a["b"]
    axis = _pick(a, "axis", "dim")
    nx, ny = lndim(x, level), lndim(y, level)
    if nx == 0 or ny == 0:
        raise ValueError(f"cross: needs vectors, got shapes {lshape(x, level)} and {lshape(y, level)}")
    n = max(nx, ny)
    vs = []
    for v, k in ((x, nx), (y, ny)):
        v = moveaxis(lift(v, level), _nax(axis, k, "cross"), -1)
        vs.append(_reshape(v, (v.shape[0],) + (1,) * (n - k) + tuple(v.shape[1:])))
    return moveaxis(op.api(vs[0], vs[1]), -1, _nax(axis, n, "cross"))


def composite_rule(op, level, args, kwargs):
    return _phys(op.api.__wrapped__(*args, **kwargs), level)


def argsort_rule(op, level, args, kwargs):
    a = _bind(op, args, kwargs)
    x = a["x"]
    v = lift(x, level)
    n = lndim(x, level)
    axis = _pick(a, "axis", "dim")
    kw = {k: a[k] for k in ("kind", "stable", "descending")}
    if axis is None:
        B = v.shape[0]
        return op.api(_reshape(v, (B, _prod(v.shape[1:]))), 1, **kw)
    return op.api(v, _nax(axis, n, op.name), **kw)


# ---------------------------------------------------------------- the table's slots

def _internal(public):
    def rule(op, level, args, kwargs):
        raise TypeError(f"cad.vmap: {op.name} is internal; {public} batches it")
    rule.internal = public
    return rule


_BY_NAME = {
    "sum": reduce_rule, "max": reduce_rule, "min": reduce_rule, "prod": reduce_rule,
    "mean": reduce_rule, "logsumexp": reduce_rule,
    "softmax": softmax_rule, "log_softmax": softmax_rule,
    "argmax": argm_rule, "argmin": argm_rule,
    "cumsum": scan_rule, "cumprod": scan_rule,
    "reshape": reshape_rule, "flatten": flatten_rule, "transpose": transpose_rule,
    "permute": permute_rule, "swapaxes": swapaxes_rule, "broadcast_to": broadcast_to_rule,
    "expand": expand_rule, "squeeze": squeeze_rule, "unsqueeze": unsqueeze_rule,
    "concatenate": concat_rule, "stack": stack_rule, "getitem": getitem_rule,
    "take_along_axis": take_along_rule, "matmul": matmul_rule, "dot": dot_rule,
    "outer": outer_rule, "einsum": einsum_rule, "astype": astype_rule,
    "cross_entropy": xent_rule,
    "argsort": argsort_rule,
    **{name: composite_rule for name in (
        "var", "std", "norm", "diff", "any", "all", "sort", "ravel", "repeat", "tile", "roll", "flip", "flipud",
        "fliplr", "rot90", "moveaxis", "atleast_1d", "atleast_2d", "atleast_3d", "vstack", "hstack",
        "column_stack", "pad", "diagonal", "trace", "diag", "tril", "triu", "kron", "tensordot",
        "inner")},
    "cross": cross_rule,
    "setitem": _setitem_rule,
    # internal primitives: no user call reaches them with a Batched argument
    "view": _internal("getitem, reshape, transpose and broadcast_to"),
    "unview": _internal("the vjp of view (a rule over plain tensors)"),
    "gather": _internal("getitem"), "scatter": _internal("the vjp of gather"),
    "cast": _internal("astype (x.astype, x.to(dtype))"), "xent": _internal("cross_entropy"),
    "to_device": _internal("x.to(device) (a method of the batched value)"),
    "custom": _internal("a cad.primitive call (it runs its defvmap rule or a loop)"),
}


def attach():
    """fill every op's batch_rule slot; install the engine hook and the dispatcher"""
    fill_slot("batch_rule", _BY_NAME, ew_rule, "batching rule")
    _NP_FNS.update({"sign": _api("sign"), "floor": _api("floor"), "ceil": _api("ceil"),
                    "round": _api("round"), "floor_divide": operator.floordiv,
                    "remainder": operator.mod, "invert": operator.invert})
    _UFUNCS.update(ufunc_table())
    _attach_methods()
    VMAP[1] = dispatch
    C.set_batch_hook(Batched, _hook)
