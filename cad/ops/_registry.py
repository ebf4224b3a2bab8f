"""The op table's record type.

Every op is one ``OpDef``: its name, kind, the C expressions of an elementwise op
(forward and one partial derivative per input, from which the CPU loops, the
first-order vjp kernels and, later, the JVP and CUDA kernels are generated), the
name of a hand-written kernel otherwise, the numpy reference used by the tests, and
the test cases.  ``tools/gen_ops.py`` reads this table at build time; the runtime
binds the public functions from it.

Expression language (C and Python at once): inputs by name, ``out`` for the
result, numbers, + - * /, comparisons, and the functions of ``cexpr.FUNCS`` (the one
list of the vocabulary: sin cos ... select(c, a, b) max2 min2 log1p expm1).
"""

PRIMITIVE_KINDS = ("ew", "bool", "reduce", "view", "unview", "gather", "scatter", "setitem", "concat",
                   "cast", "matmul", "xent", "transfer", "scan", "cross", "custom")


class Case:
    """One test case: input specs and keyword arguments.

    An input spec is a shape tuple (a float64 leaf requiring grad), ``("T", shape)``
    (a transposed, non-contiguous leaf of that shape), ``("S", shape)`` (a strided
    view: the op sees ``x[::2]`` of a leaf twice as long in axis 0), ``("I", array)``
    (integer data), ``("B", array)`` (boolean data), ``("C", value)`` (a Python
    constant), or ``("F", array)`` (float data that does not require grad).
    """

    __slots__ = ("inputs", "kwargs", "name")

    def __init__(self, *inputs, name=None, **kwargs):
        self.inputs = inputs
        self.kwargs = kwargs
        self.name = name

    def __repr__(self):
        parts = [repr(i) if not isinstance(i, tuple) or not i or not isinstance(i[0], str)
                 else f"{i[0]}{i[1]!r}" for i in self.inputs]
        parts += [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return self.name or ",".join(parts)


class OpDef:
    __slots__ = ("name", "kind", "args", "fwd", "d", "kernel", "int_ok", "ref", "cases",
                 "domain", "method", "ufunc", "doc", "differentiable", "api", "code",
                 "nondiff_args", "fd_eps", "export", "tol", "seq", "vjp_rule", "jvp_rule",
                 "second_order", "fast_partial", "fkernel", "partial_rule", "partials", "eval_rule",
                 "batch_rule", "name_rule", "check_rule", "linear", "bilinear", "apply_rule", "naux", "reads",
                 "aliases")

    def __init__(self, name, kind, *, args=(), fwd=None, d=None, kernel=None, int_ok=False,
                 ref=None, cases=(), domain=(-2.0, 2.0), method=True, ufunc=None, doc="",
                 differentiable=True, nondiff_args=(), fd_eps=1e-6, export=True, tol=None, seq=False,
                 second_order=True, naux=None, linear=(), bilinear=False, reads=None, aliases=()):
        self.name = name
        self.kind = kind
        self.args = tuple(args)
        self.fwd = fwd
        self.d = dict(d or {})
        self.kernel = kernel
        self.int_ok = int_ok
        self.ref = ref
        self.cases = list(cases)
        self.domain = domain
        self.method = method
        self.ufunc = ufunc
        self.doc = doc
        self.differentiable = differentiable
        self.nondiff_args = tuple(nondiff_args)
        self.api = None
        self.code = -1
        self.fd_eps = fd_eps
        self.export = export
        self.tol = tol
        self.seq = seq   # the api takes its tensor inputs as one sequence (concatenate, stack)
        # Differentiable rules over tensors, used by the Python sweeps (create_graph,
        # forward mode, batched cotangents/tangents).  Elementwise ops get them from
        # ``d`` (cad.ops._rules); the others define them next to their entry.
        self.vjp_rule = None
        self.jvp_rule = None
        self.second_order = second_order   # gradgradcheck applies (False: kinks everywhere)
        # {input: fn(ctx) -> tensor or None}: a cheaper form of a partial for special
        # inputs (pow with a constant exponent); None falls back to ``d``
        self.fast_partial = {}
        self.partial_rule = None   # elementwise: fn(ctx, input name) -> the partial (set by bind)
        self.partials = None       # elementwise: per input, (fn, input positions read, reads out) or None
        self.fkernel = kernel.replace("_vjp", "_fwd") if kernel else None   # replay forward
        # NOTE [ A primitive's rules ]
        # A primitive's rules sit together in its table entry, attached by decorators
        # next to its definition: vjp and jvp (differentiable, over cad ops, with batch
        # dims: NOTE [ Rules and batch dims ]), eval (run one record again from its
        # inputs and aux: a loaded tape as a function), check (the loader's check of
        # a record read from a file: its shape/dtype rule), and the slots that vmap
        # (batch) and named dimensions (names) fill.  Elementwise and bool ops get
        # theirs from the expressions at bind time.  tests/ops/test_rules.py checks
        # that every primitive has every filled slot.
        self.eval_rule = None     # fn(ctx, args) -> the record's output
        self.batch_rule = None    # vmap: fn(op, level, args, kwargs), cad/vmap.py's rules
        self.name_rule = None     # named dimensions: fn(op, body, args, kwargs), cad/names.py's rules
        self.check_rule = None    # cad.load: fn(c) checks one record of a file (its shape/dtype rule)
        # NOTE [ Linear and bilinear ops ] (cad/ops/_rules.py): the inputs the op is
        # linear in; a bilinear op (linear in each input, the other fixed) writes its
        # vjp (the transposes) and its `apply` slot, and its jvp is derived
        self.linear = tuple(linear)
        self.bilinear = bilinear
        self.apply_rule = None    # bilinear: fn(ctx, i, t, other) -> the op with input i the batch t
        self.naux = naux          # the record's aux int count (None: the engine's default)
        # non-elementwise primitives: {input i: the values input i's derivative reads
        # (input indexes, "out")}; the tape keeps exactly those (generated cad_uses,
        # the engine's _need); elementwise ops derive it from their partials
        self.reads = dict(reads or {})
        # other names of the same function (and method): PyTorch's (asin for arcsin)
        self.aliases = tuple(aliases)

    @property
    def primitive(self):
        return self.kind in PRIMITIVE_KINDS

    def __repr__(self):
        return f"<op {self.name} ({self.kind})>"

    def vjp(self, fn):
        """Decorator: fn(ctx, g) -> one cotangent (or None) per input."""
        self.vjp_rule = fn
        return fn

    def jvp(self, fn):
        """Decorator: fn(ctx, tangents) -> the output's tangent (inputs' may be None)."""
        self.jvp_rule = fn
        return fn

    def apply(self, fn):
        """Decorator (bilinear ops): fn(ctx, i, t, other) -> the op with input i the
        batch t (ctx.nb leading dims, or a cad.ops._rules.Diag) and the other input
        the value `other`; the op's jvp is derived from it (NOTE [ Linear and
        bilinear ops ])."""
        self.apply_rule = fn
        return fn

    def eval(self, fn):
        """Decorator: fn(ctx, args) -> the output of one record, recomputed with cad
        ops from its inputs (args) and its aux (ctx.aux, ctx.out_shape, ...)."""
        self.eval_rule = fn
        return fn

    def check(self, fn):
        """Decorator: fn(c) -> None, the loader's check of one record of this op in a
        file against the op's shape and dtype rule (c: cad.io.RecordCheck, whose
        `need`, `out_is`, ... raise cad.FormatError naming the field).  Every
        primitive a file can hold has one (tests/ops/test_rules.py)."""
        self.check_rule = fn
        return fn

    def batch(self, fn):
        """Decorator: fn(op, level, args, kwargs) -> the result of the op on the
        values of a batched call (cad.vmap; NOTE [ Batched values ] in cad/vmap.py)."""
        self.batch_rule = fn
        return fn

    def __call__(self, fn):
        """Decorator: the public Python function of a non-elementwise op.  The
        function returned hands a call with a batched argument (inside cad.vmap) to
        the op's batching rule; outside vmap it costs one flag test."""
        op = self

        def api(*args, **kwargs):
            if VMAP[0]:   # a vmap is running (in some thread)
                r = VMAP[1](op, args, kwargs)
                if r is not NotImplemented:
                    return r
            if NAMES[0]:  # some tensor has named dims (cad/names.py)
                r = NAMES[1](op, fn, args, kwargs)
                if r is not NotImplemented:
                    return r
            return fn(*args, **kwargs)
        api.__name__ = fn.__name__
        api.__qualname__ = fn.__qualname__
        api.__module__ = fn.__module__
        api.__doc__ = fn.__doc__ or self.doc
        api.__wrapped__ = fn
        api.__cad_op__ = self
        self.api = api
        return api


REGISTRY = {}

# [number of vmap levels running in any thread, the dispatcher (cad.vmap sets it)]
VMAP = [0, None]

# [some tensor was ever given names, the dispatcher (cad/names.py sets both)]
NAMES = [False, None]


def defop(name, kind, **kw):
    if name in REGISTRY:
        raise ValueError(f"op {name!r} defined twice")
    op = OpDef(name, kind, **kw)
    REGISTRY[name] = op
    return op


ELEMENTWISE_LIKE = ("sign", "floor", "ceil", "round")   # cmp-kind ops that map element by element


def fill_slot(slot, by_name, ew_rule, what):
    """give every op of the table its rule in `slot` (batch_rule, name_rule): by name
    from by_name, else ew_rule for elementwise and bool ops (and ELEMENTWISE_LIKE);
    ImportError naming the ops left without one (the completeness check)"""
    for op in REGISTRY.values():
        if op.name in by_name:
            setattr(op, slot, by_name[op.name])
        elif op.kind in ("ew", "bool") or op.name in ELEMENTWISE_LIKE:
            setattr(op, slot, ew_rule)
    missing = [op.name for op in REGISTRY.values() if getattr(op, slot) is None]
    if missing:
        raise ImportError(f"cad: ops without a {what}: {missing}")


def check_kind(kinds, fn):
    """fn as the check rule of every op of the given kinds (the elementwise ops
    share one)"""
    for op in REGISTRY.values():
        if op.kind in kinds:
            op.check_rule = fn
    return fn


def primitives():
    """Primitive ops in table order; their position is their op code."""
    return [op for op in REGISTRY.values() if op.primitive]


def ufunc_table():
    """numpy ufunc name -> cad function: the op table's `ufunc` names, matmul, and
    numpy 2's `divide` (true_divide's new name).  Tensor.__array_ufunc__ (the engine)
    and vmap's batched values both dispatch through it."""
    t = {op.ufunc: op.api for op in REGISTRY.values() if op.ufunc}
    t["matmul"] = REGISTRY["matmul"].api
    t["divide"] = t["true_divide"]
    return t
