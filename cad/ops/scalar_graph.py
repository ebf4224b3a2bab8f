"""NOTE [ Scalar second order in C ]

`grad(grad(f))`, `jvp` of `grad`, `hessian` of scalar code and `backward(create_graph=
True)` need a reverse sweep that records: each record's contribution
g * d out / d x_i becomes records on the tape, which the outer transform then sweeps.
The Python sweep (transforms.reverse_sweep) does this with the op table's rules, a few
microseconds per record.  For a tape segment of 0-d float64 records of elementwise ops
(scalar code: the W1/W12 chain, loops over Python floats) the engine does the same in
Cython with no Python object per record (`scalar_graph_sweep` in
_core/scalar_graph.pxi), from the same partials: each op's `d` expression (the one the
generated C rows and the Python rules are made from) compiled here once into a small
program of scalar instructions.

A program computes every value first (the comparisons, `select` conditions, `sign`,
`floor` and the like are values only: their derivative is zero, as in the Python
rules), then records only what the result depends on through the branches `select`
took, and only instructions with a tracked operand (an untracked value stays a
constant, as the eager scalar path does).  Records are made exactly as the eager
scalar path makes them (_rec_scalar: a constant operand is registered when the
record's own derivative reads it), so the outer sweep sees what the Python rules
would have recorded, up to the order of independent records.

Instruction = 4 int64 (kind, code, a, b); slots 0, 1 = the op's inputs, 2 = its
output, 3 + k = instruction k's result; the last instruction's slot is the partial.
"""
import ast
import struct

import numpy as np

CONST, UN, BIN, VUN, VBIN, VF, CMP, SEL, COPY = range(9)
VFUNCS = {"sign": 0, "floor": 1, "ceil": 2, "isnan": 3, "isfinite": 4}
CMPS = {ast.Gt: 0, ast.GtE: 1, ast.Lt: 2, ast.LtE: 3, ast.Eq: 4, ast.NotEq: 5}
AND, OR = 6, 7
BINOPS = {ast.Add: "add", ast.Sub: "sub", ast.Mult: "mul", ast.Div: "div", ast.Pow: "pow"}


class Unsupported(Exception):
    pass


def _bits(v):
    return struct.unpack("<q", struct.pack("<d", float(v)))[0]


def compile_partial(expr, args, registry, rule_ops):
    """the program of one partial (a list of 4-int instructions), or Unsupported"""
    prog = []

    def put(ins):
        prog.append(ins)
        return 3 + len(prog) - 1

    def ew(name, arity):
        op = registry.get(rule_ops.get(name, name))
        if op is None or op.kind != "ew" or len(op.args) != arity:
            raise Unsupported(name)
        return op.code

    def comp(node, vo):
        """vo: a value only (inside a condition or a value-only function)"""
        if isinstance(node, ast.Expression):
            return comp(node.body, vo)
        if isinstance(node, ast.Name):
            if node.id == "out":
                return 2
            if node.id in args[:2]:
                return args.index(node.id)
            raise Unsupported(node.id)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, bool)):
            return put([CONST, 0, _bits(node.value), 0])
        if isinstance(node, ast.UnaryOp):
            a = comp(node.operand, vo)
            if isinstance(node.op, ast.UAdd):
                return a
            if isinstance(node.op, ast.USub):
                return put([VUN if vo else UN, ew("neg", 1), a, 0])
            raise Unsupported(ast.dump(node.op))
        if isinstance(node, ast.BinOp):
            if isinstance(node.op, (ast.BitAnd, ast.BitOr)):
                a, b = comp(node.left, True), comp(node.right, True)
                return put([CMP, AND if isinstance(node.op, ast.BitAnd) else OR, a, b])
            name = BINOPS.get(type(node.op))
            if name is None:
                raise Unsupported(ast.dump(node.op))
            a, b = comp(node.left, vo), comp(node.right, vo)
            return put([VBIN if vo else BIN, ew(name, 2), a, b])
        if isinstance(node, ast.Compare):
            if len(node.ops) != 1 or type(node.ops[0]) not in CMPS:
                raise Unsupported("comparison")
            a, b = comp(node.left, True), comp(node.comparators[0], True)
            return put([CMP, CMPS[type(node.ops[0])], a, b])
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.keywords:
            f, xs = node.func.id, node.args
            if f == "select" and len(xs) == 3:
                c = comp(xs[0], True)
                a, b = comp(xs[1], vo), comp(xs[2], vo)
                return put([SEL, c, a, b])
            if f in VFUNCS and len(xs) == 1:
                return put([VF, VFUNCS[f], comp(xs[0], True), 0])
            if len(xs) == 1:
                code = ew(f, 1)
                return put([VUN if vo else UN, code, comp(xs[0], vo), 0])
            if len(xs) == 2:
                code = ew(f, 2)
                a, b = comp(xs[0], vo), comp(xs[1], vo)
                return put([VBIN if vo else BIN, code, a, b])
        raise Unsupported(ast.dump(node))

    res = comp(ast.parse(expr.strip(), mode="eval"), False)
    if not prog or res != 3 + len(prog) - 1:   # a bare input, output or an earlier slot
        put([COPY, 0, res, 0])
    return prog


def tables():
    """(programs: int64 (n, 4), offsets int64 (OP_COUNT, 2), lengths, trivial int8
    (OP_COUNT, 2): 1 / -1 for the partials "1" / "-1", 2 for none (not differentiable
    in that input), 0 otherwise; reads int32
    (OP_COUNT, 2): bit j = the partial reads input slot j (bit 2: the output)).
    An offset of -1: the op has no program for that input (not elementwise, more than
    two inputs, or a partial outside the vocabulary): its records take the Python sweep."""
    from . import REGISTRY, primitives
    from .cexpr import RULE_OPS
    prims = primitives()
    n = len(prims)
    off = np.full((n, 2), -1, np.int64)
    length = np.zeros((n, 2), np.int64)
    triv = np.zeros((n, 2), np.int8)
    reads = np.zeros((n, 2), np.int32)
    code = []
    for op in prims:
        if op.kind != "ew" or not 1 <= len(op.args) <= 2:
            continue
        for i, a in enumerate(op.args):
            if a not in op.d:   # not differentiable in this input: no contribution
                triv[op.code, i] = 2
                off[op.code, i] = len(code)
                continue
            e = op.d[a].strip()
            if e in ("1", "-1"):
                triv[op.code, i] = 1 if e == "1" else -1
                off[op.code, i] = len(code)
                continue
            try:
                prog = compile_partial(e, list(op.args), REGISTRY, RULE_OPS)
            except Unsupported:
                continue
            r = 0
            for ins in prog:
                kind, _, x, y = ins
                used = [x] if kind in (UN, VUN, VF, COPY) else ([x, y] if kind in (BIN, VBIN, CMP, SEL) else [])
                if kind == SEL:
                    used.append(ins[1])
                for s in used:
                    if s < 3:
                        r |= 1 << s
            off[op.code, i] = len(code)
            length[op.code, i] = len(prog)
            reads[op.code, i] = r
            code.extend(prog)
    progs = np.array(code if code else [[0, 0, 0, 0]], dtype=np.int64).reshape(-1, 4)
    return np.ascontiguousarray(progs), off, length, triv, reads
