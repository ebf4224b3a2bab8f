"""What the differentiable rules share: the rule context, broadcasting helpers, and
the rules of elementwise ops, derived from the same partial-derivative expressions
the C kernels are generated from.

NOTE [ Rules and batch dims ]
A rule sees the cotangent g (vjp) or the tangents (jvp) with ``ctx.nb`` leading batch
dims in front of the value's own shape: one sweep then carries a whole basis (jacrev,
jacfwd).  Values (ctx.val) never have batch dims.  Rules use cad ops only, so under
recording (create_graph, nested transforms) their results are differentiable again.
"""
import numpy as np

try:
    from .._core import _engine as C
except ImportError:   # the build reads this table before the extension exists
    C = None


class Ctx:
    """One record as the rules see it."""
    __slots__ = ("tape", "ins", "out", "aux", "nb", "dep", "_info", "_vals", "_outv", "_oinfo")

    def __init__(self, tape, ins, out, aux, nb, dep=None):
        self.tape = tape
        self.ins = ins
        self.out = out
        self.aux = aux
        self.nb = nb
        self.dep = dep   # the handles a reverse sweep wants cotangents for (None: all)
        self._info = [None] * len(ins)
        self._vals = [None] * len(ins)
        self._outv = None
        self._oinfo = None

    def info(self, i):
        if self._info[i] is None and self.ins[i] >= 0:
            self._info[i] = self.tape.info(self.ins[i])
        return self._info[i]

    def shape(self, i):
        return self.info(i)[0]

    def dtype(self, i):
        return (C.float64, C.float32, C.int64, C.bool_)[self.info(i)[1]]

    def wants(self, i):
        """does input i take a gradient?"""
        h = self.ins[i]
        return h >= 0 and (self.dep is None or h in self.dep) and bool(self.info(i)[2] & 2)

    def val(self, i):
        if self._vals[i] is None:
            v = self.tape.node(self.ins[i])
            if v is None:
                raise RuntimeError(f"cad: a rule read input {i} of a record whose value was "
                                   "not kept (op-table inconsistency)")
            self._vals[i] = v
        return self._vals[i]

    def out_val(self):
        if self._outv is None:
            self._outv = self.tape.node(self.out)
        return self._outv

    @property
    def out_shape(self):
        if self._oinfo is None:
            self._oinfo = self.tape.info(self.out)
        return self._oinfo[0]

    @property
    def out_dtype(self):
        if self._oinfo is None:
            self._oinfo = self.tape.info(self.out)
        return (C.float64, C.float32, C.int64, C.bool_)[self._oinfo[1]]


class Diag(C.DiagBase if C is not None else object):   # (the build reads the table only)
    """A batch of cotangents that is the output basis scaled along its diagonal:
    cotangent k is v.flat[k] times the k-th basis vector (v has the value's shape).
    jacrev's seed is Diag(ones); elementwise pullbacks keep it diagonal, and a
    diagonal batch times a matrix is a row scaling, not a GEMM.  Rules that cannot
    keep the structure get it densified (`dense`).  Diag(v, unit=False): unit says v
    is all ones (jacrev's and jacfwd's seeds: no scaling needed); the fields are C
    slots of the engine's DiagBase (NOTE [ Batch classes ])."""
    __slots__ = ()

    def dense(self):
        v = self.v
        n = v.size
        if not v.requires_grad and not C.is_recording() and C.dev_of(v) == 0:
            # nothing differentiates the batch: the diagonal matrix in numpy (W7's
            # forward sweep densified a 128 x 128 one in ~15 us through an eye and a mul)
            d = np.zeros((n, n), dtype=v.dtype)
            d.reshape(-1)[::n + 1] = C.host(v).reshape(-1)
            return C.from_numpy(d.reshape((n,) + tuple(v.shape)), None, False, False)
        eye = C.const_on(np.eye(n, dtype=v.dtype), C.dev_of(v))
        return C.reshape(eye * C.reshape(v, (1, n)), (n,) + v.shape)

    def __add__(self, other):
        if isinstance(other, Diag):
            return Diag(self.v + other.v)
        r = self.plus(other)
        return self.dense() + other if r is None else r

    def plus(self, t):
        """t + this batch, t a dense batch of shape (n,) + v.shape: v added along t's
        diagonal by one setitem (a copy of t; a recorded Hessian's x**3 part), not a
        densified (n, n) matrix and an add.  None: another shape, dtype or device."""
        v = self.v
        n = v.size
        if not isinstance(t, C.Tensor) or n == 0 or tuple(t.shape) != (n,) + tuple(v.shape) \
                or t.dtype != v.dtype or C.dev_of(t) or C.dev_of(v):
            return None
        if not v.requires_grad and not t.requires_grad and not C.is_recording():
            # nothing differentiates the sum: the copy and the diagonal's adds in numpy
            # (the same adds; jacrev of tanh(W @ x) * x at n = 20 spent a third of its
            # time in the engine calls below)
            d = np.array(C.host(t), dtype=t.dtype, order="C").reshape(n, n)
            d.reshape(-1)[::n + 1] += C.host(v).reshape(-1)
            return C.from_numpy(d.reshape(tuple(t.shape)), None, False, False)
        t2 = C.reshape(t, (n, n))
        if t2 is t:   # (the setitem below rebinds t2: never the caller's tensor)
            t2 = C.reshape(C.reshape(t, (n * n,)), (n, n))
        ar = np.arange(n)
        t2[ar, ar] = t2[ar, ar] + C.reshape(v, (n,))
        return C.reshape(t2, tuple(t.shape))

    __radd__ = __add__


def dense(t):
    """a tangent or cotangent batch as a tensor (a Diag densified)"""
    return t.dense() if isinstance(t, Diag) else t


# NOTE [ Linear and bilinear ops ]
# A bilinear primitive (matmul, cross: ``bilinear=True`` in its table entry) writes its
# derivative once, as the transposes of its two linear maps (its vjp rule), over its
# ``apply`` slot: the op itself with one operand a batch of tangents or cotangents
# (ctx.nb leading dims, or a Diag) and the other a value.  Its jvp is derived here:
# the sum over inputs of the op applied to that input's tangent.  The sweeps' diagonal
# batches (Diag: jacrev's and jacfwd's seeds) go through the same two rules, so what
# a matmul of a scaled identity is (a row scaling, no GEMM) is said once, in the
# op's apply.  The primitives linear in their one differentiable input (cumsum, the
# views, gather/scatter, concatenate) write their jvp as the op itself on the tangents
# and their vjp as the adjoint op; ``linear`` names those inputs where declared
# (cumsum), and nothing is derived from it for them.
def bilinear_jvp(op):
    """the jvp rule of a bilinear op: d(a * b) = ta * b + a * tb (NOTE [ Linear and
    bilinear ops ])"""
    def jvp(ctx, ts):
        acc = None
        for i, t in enumerate(ts):
            if t is None:
                continue
            c = op.apply_rule(ctx, i, t, ctx.val(1 - i))
            acc = c if acc is None else acc + c
        if acc is None:
            return None
        return full_shape(acc, acc.shape[:ctx.nb], ctx.out_shape)
    return jvp


def unbroadcast(c, shape, nb):
    """sum c (batch + some broadcast shape) down to batch + shape"""
    cs = c.shape
    if nb == 0 and cs == shape:   # (the common case: nothing to sum)
        return c
    lead = len(cs) - nb - len(shape)
    axes = list(range(nb, nb + lead))
    for d, s in enumerate(shape):
        if s == 1 and cs[nb + lead + d] != 1:
            axes.append(nb + lead + d)
    if axes:
        c = C.reduce(SUM_CODE[0], c, tuple(axes), True)
    want = cs[:nb] + tuple(shape)
    if c.shape != want:
        c = C.reshape(c, want)
    return c


def lift(t, shape, out_ndim, nb):
    """a tangent of batch + shape, with size-1 dims inserted so it broadcasts
    against values of out_ndim dims"""
    pad = out_ndim - len(shape)
    if pad > 0 and nb > 0:
        t = C.reshape(t, t.shape[:nb] + (1,) * pad + tuple(shape))
    return t


def full_shape(t, nb_shape, out_shape):
    want = tuple(nb_shape) + tuple(out_shape)
    return t if t.shape == want else C.expand(t, want)


SUM_CODE = [None]   # set by bind


def _env():
    """the expression vocabulary as cad ops (cexpr.FUNCS, RULE_OPS)"""
    from .cexpr import FUNCS, RULE_OPS
    env = {}
    for f in sorted(FUNCS) + ["square"]:   # (square: _squares)
        fn = getattr(C, RULE_OPS.get(f, f), None)
        if fn is None:
            from . import REGISTRY
            fn = REGISTRY[RULE_OPS.get(f, f)].api
        env[f] = fn
    return env


def _squares(expr):
    """expr with every product of a name by itself (``out * out``) as ``square(out)``:
    the rules' ops then hold one square, whose jvp is one fused pass (2 x dx), where
    mul(out, out)'s derived jvp made two products and a sum (three passes over a
    Hessian's (n, n) tangent batch, tanh's partial in W7).  By the parse tree, so
    ``a / x * x`` ((a / x) * x) is left as it is; x * x and square(x) are the same
    number."""
    import ast

    class Sq(ast.NodeTransformer):
        def visit_BinOp(self, node):
            self.generic_visit(node)
            if (isinstance(node.op, ast.Mult) and isinstance(node.left, ast.Name)
                    and isinstance(node.right, ast.Name) and node.left.id == node.right.id):
                return ast.copy_location(ast.Call(ast.Name("square", ast.Load()), [node.left], []), node)
            return node
    tree = ast.fix_missing_locations(Sq().visit(ast.parse(expr, mode="eval")))
    return tree


def ew_rules(op):
    """vjp and jvp rules of an elementwise op from its partials ``d``"""
    import re
    import ast
    codes = {a: _squares(e) for a, e in op.d.items()}
    names = {a: set(re.findall(r"[A-Za-z_]\w*", e)) for a, e in op.d.items()}
    reads = {a: [(j, b) for j, b in enumerate(op.args) if b in names[a]] for a in op.d}
    trivial = {a: e.strip() if e.strip() in ("1", "-1") else None for a, e in op.d.items()}
    env0 = _env()
    fast = dict(op.fast_partial)

    # each partial as a function of the values it reads (a lambda over the expression,
    # the vocabulary its globals): no namespace built per call
    fns = {}
    for a in op.d:
        params = [b for _, b in reads[a]] + (["out"] if "out" in names[a] else [])
        lam = ast.Expression(ast.Lambda(
            ast.arguments(posonlyargs=[], args=[ast.arg(b) for b in params], kwonlyargs=[],
                          kw_defaults=[], defaults=[]),
            codes[a].body))
        fns[a] = eval(compile(ast.fix_missing_locations(lam), f"<d{op.name}/d{a}>", "eval"),
                      dict(env0))
    uses_out = {a: "out" in names[a] for a in op.d}

    def partial(ctx, a):
        if a in fast:
            d = fast[a](ctx)
            if d is not None:
                return d
        vals = [ctx.val(j) for j, _ in reads[a]]
        if uses_out[a]:
            vals.append(ctx.out_val())
        d = fns[a](*vals)
        if isinstance(d, C.Tensor) and d.dtype != ctx.out_dtype:
            d = C.cast(d, ctx.out_dtype)
        return d

    # each nontrivial partial's function and what it reads (input positions, the
    # output), per input: the sweeps' rule-free paths run the partials of ops the
    # compiled programs cannot take (where, clip: three inputs) from here, so the
    # table's expressions stay the one source (tapeview.pxi's _rule_partial)
    op.partials = [(fns[a], tuple(j for j, _ in reads[a]), uses_out[a])
                   if a in op.d and trivial[a] is None else None for a in op.args]
    op.partial_rule = lambda ctx, a: (1.0 if trivial[a] == "1" else
                                      (-1.0 if trivial[a] == "-1" else partial(ctx, a)))

    def vjp(ctx, g):
        res = []
        for i, a in enumerate(op.args):
            if a not in op.d or not ctx.wants(i):
                res.append(None)
                continue
            tr = trivial[a]
            c = g if tr == "1" else (-g if tr == "-1" else g * partial(ctx, a))
            res.append(unbroadcast(c, ctx.shape(i), ctx.nb))
        return res

    def jvp(ctx, ts):
        acc = None
        oshape = ctx.out_shape
        for i, a in enumerate(op.args):
            t = ts[i]
            if t is None or a not in op.d:
                continue
            t = lift(t, ctx.shape(i), len(oshape), ctx.nb)
            tr = trivial[a]
            c = t if tr == "1" else (-t if tr == "-1" else t * partial(ctx, a))
            acc = c if acc is None else acc + c
        if acc is None:
            return None
        nbs = next(t for t in ts if t is not None).shape[:ctx.nb]
        return full_shape(acc, nbs, oshape)
    return vjp, jvp
