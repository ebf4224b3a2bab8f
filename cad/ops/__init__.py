"""The op table: one record per op (see _registry).  Importing this package
defines every op; ``bind`` attaches the compiled engine's functions at runtime."""
from . import elementwise, reduce, shape, index, linalg, nn, device, scan, custom  # noqa: F401  (order = op codes)
from . import stats, sort, manip  # noqa: F401,E402  (composites only: no op codes)
from ._registry import REGISTRY, Case, OpDef, defop, primitives, ufunc_table  # noqa: F401


_SELF_ONLY = {"sum", "max", "min", "prod", "mean", "logsumexp", "softmax", "log_softmax", "argmax",
              "argmin", "cumsum", "cumprod", "reshape", "flatten", "transpose", "permute", "swapaxes",
              "broadcast_to", "expand", "squeeze", "unsqueeze", "astype"}


def method_apis(named=False):
    """the functions behind Tensor methods, in table order.  A method's self is a
    plain tensor, so a method whose other arguments are never tensors (x.sum(axis),
    x.reshape(...)) skips the check for batched arguments (cad.vmap) that the public
    function makes, until some tensor has names (named: every method checks them)."""
    from .. import names
    fns = []
    for op in REGISTRY.values():
        if not op.method:
            continue
        if op.name == "flatten":
            fns.append(names._flatten_method)   # t.flatten() or t.flatten(dims, new_name)
        elif op.name in _SELF_ONLY and not named:
            fns.append(getattr(op.api, "__wrapped__", op.api))
        else:
            fns.append(op.api)
    return fns


def bind(engine):
    """Give every op its code and public function; check the build matches the table."""
    prims = primitives()
    names = tuple(op.name for op in prims)
    if names != tuple(engine.OP_NAMES):
        raise ImportError("cad: the compiled engine was built from a different op table; "
                          "rebuild (pip install -e .)")
    for i, op in enumerate(prims):
        op.code = i
    for op in REGISTRY.values():
        if op.api is None and op.kind in ("ew", "bool", "cmp"):
            op.api = getattr(engine, op.name)
    # where(c) with one argument is nonzero(c) (numpy)
    REGISTRY["where"].api = manip.where_api(REGISTRY["where"].api)
    from . import _rules
    _rules.SUM_CODE[0] = REGISTRY["sum"].code
    for op in prims:
        if op.kind == "ew":
            op.vjp_rule, op.jvp_rule = _rules.ew_rules(op)
        elif op.bilinear:   # NOTE [ Linear and bilinear ops ]
            if op.jvp_rule is not None or op.apply_rule is None:
                raise ImportError(f"cad: bilinear op {op.name} needs an apply rule and no jvp rule")
            op.jvp_rule = _rules.bilinear_jvp(op)
        elif op.kind == "bool":   # bool results: nothing flows through them
            op.vjp_rule = lambda ctx, g, n=len(op.args): [None] * n
            op.jvp_rule = lambda ctx, ts: None
        if op.kind in ("ew", "bool"):   # the engine's raw function (clip has a wrapper)
            fn = getattr(engine, "_prim_" + op.name, None) or getattr(engine, op.name)
            op.eval_rule = lambda ctx, a, fn=fn: fn(*a)
            op.check_rule = elementwise.check_record
    engine.set_aux_counts([-1 if op.naux is None else op.naux for op in prims])
    # Tensor methods: a method's self is a plain tensor, so a method whose other
    # arguments are never tensors (x.sum(axis), x.reshape(...)) skips the check for
    # batched arguments (cad.vmap) that the public function makes
    engine.set_api(method_apis())
    refs = {op.code: op.ref for op in prims if op.int_ok}
    engine.set_refs(refs, ufunc_table())
    from . import _batch
    _batch.attach()   # every op's batching rule (cad.vmap), the engine's hook
    from .. import names
    names.attach()    # every op's name rule (named dimensions)
    custom.attach()   # the C sweeps' hooks for user primitives (cad.primitive)
