"""The op table's expressions as C (and CUDA C): one translation for the code
generated at build time (tools/gen_ops.py: the C rows and the CUDA module) and at
run time (cad/fuse.py: fused replay kernels).  Pure Python, no imports from cad."""
import re

# THE expression vocabulary (NOTE [ Expression vocabulary ]): every function an op
# table expression may call, once.  C (and CUDA C) spell it as in <math.h> (fabs for
# abs, an `f` suffix in float), or through a macro (MACROS); the differentiable rules
# (cad.ops._rules) evaluate it with the cad op of the same name, or the one RULE_OPS
# names; HEAVY functions make a loop worth more threads (gen_ops) and their scalar
# partials worth deferring.  Constants passed to a C function are written as floats
# (hypot(x, 1.0)): nvcc resolves hypot(double, int) to a host-only C++ overload.
FUNCS = {"sin", "cos", "tan", "exp", "log", "sqrt", "tanh", "pow", "abs", "sign",
         "select", "max2", "min2", "isfinite", "isnan", "log1p", "expm1",
         "sinh", "cosh", "asin", "acos", "atan", "asinh", "acosh", "atanh", "atan2", "hypot",
         "log2", "log10", "exp2", "floor", "ceil", "fmod", "fmax", "fmin", "erf", "erfc",
         "sigmoid", "remainder", "gammaln", "erfinv", "digamma", "polygamma",
         # scipy.special's (cad.scipy.special; ops not exported as cad.*)
         "gamma", "rgamma", "gammasgn", "erfcinv", "ndtr", "logit", "log_ndtr", "ndtri", "j0", "j1",
         "y0", "y1", "jn", "yn", "i0", "i1", "i0e", "i1e"}
RULE_OPS = {"select": "where", "max2": "maximum", "min2": "minimum", "asin": "arcsin",
            "acos": "arccos", "atan": "arctan", "asinh": "arcsinh", "acosh": "arccosh",
            "atanh": "arctanh", "atan2": "arctan2"}
HEAVY = {"sin", "cos", "tan", "exp", "log", "sqrt", "tanh", "pow", "log1p", "expm1",
         "sinh", "cosh", "asin", "acos", "atan", "asinh", "acosh", "atanh", "atan2", "hypot",
         "log2", "log10", "exp2", "fmod", "erf", "erfc", "sigmoid", "remainder", "gammaln",
         "erfinv", "digamma", "polygamma", "gamma", "rgamma", "gammasgn", "erfcinv", "ndtr", "logit",
         "log_ndtr", "ndtri", "j0", "j1", "y0", "y1", "jn", "yn", "i0", "i1", "i0e", "i1e"}
MACROS = {"sign": "CAD_SIGN", "select": "CAD_SELECT", "max2": "CAD_MAX2", "min2": "CAD_MIN2",
          "isfinite": "CAD_ISFINITE", "isnan": "CAD_ISNAN"}
# functions whose C name differs from the vocabulary's (an `f` suffix in float too);
# the cad_ ones are in cad_special.h (special_source)
CNAMES = {"abs": "fabs", "pow": "cad_pow", "sigmoid": "cad_sigmoid", "remainder": "cad_remainder",
          "gammaln": "cad_lgamma", "erfinv": "cad_erfinv", "digamma": "cad_digamma",
          "polygamma": "cad_polygamma"}
CNAMES.update({f: "cad_" + f for f in ("gamma", "rgamma", "gammasgn", "erfcinv", "ndtr", "logit", "log_ndtr", "ndtri",
                                        "j0", "j1", "y0", "y1", "jn", "yn", "i0", "i1", "i0e", "i1e")})
LIT = re.compile(r"(?<![\w.])(\d+\.\d*(?:[eE][-+]?\d+)?|\.\d+|\d+[eE][-+]?\d+)")
IDENT = re.compile(r"[A-Za-z_]\w*")

# the macros the translated expressions use (kernels.cuh defines the same for the
# build-time CUDA module; the run-time kernels include this text)
CUDA_MACROS = """\
#define CAD_SELECT(c, a, b) ((c) ? (a) : (b))
#define CAD_SIGN(x) (((x) > 0) - ((x) < 0))
#define CAD_MAX2(a, b) (((a) > (b) || (a) != (a)) ? (a) : (b))
#define CAD_MIN2(a, b) (((a) < (b) || (a) != (a)) ? (a) : (b))
#define CAD_ISFINITE(x) isfinite((double)(x))
#define CAD_ISNAN(x) isnan((double)(x))
"""


def special_source():
    """the C text of the special functions (cad_special.h, next to this file)"""
    import os
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "cad_special.h")) as f:
        return f.read()


class ExprError(ValueError):
    pass


def idents(expr):
    return set(IDENT.findall(LIT.sub("0", expr))) - FUNCS


def to_c(expr, ctype, op, what):
    """expr (op table syntax) as a C expression over ctype; names: op's args, out,
    and g / t0.. in derivative expressions (what starts with 'd[')"""
    extra = {"g"} | {f"t{i}" for i in range(len(op.args))} if what.startswith("d[") else set()
    bad = idents(expr) - set(op.args) - {"out"} - extra
    if bad:
        raise ExprError(f"op {op.name!r} {what}: unknown names {sorted(bad)} in {expr!r}")

    def fn(m):
        name = m.group(0)
        if name in MACROS:
            return MACROS[name]
        if name in FUNCS:
            base = CNAMES.get(name, name)
            return base + ("f" if ctype == "float" else "")
        return name
    e = LIT.sub(lambda m: f"(({ctype}){m.group(1)})", expr)
    return IDENT.sub(fn, e)


def grad_expr(d):
    """g times a partial derivative expression"""
    d = d.strip()
    if d == "1":
        return "g"
    if d == "-1":
        return "-g"
    return f"g * ({d})"


def scalar_ok(op):
    return not op.nondiff_args


def fusable(op):
    """an elementwise op of arguments x (, y) with float values only: the scalar
    programs, the device sweep and fused replay kernels take these"""
    return (op.kind == "ew" and scalar_ok(op) and len(op.args) <= 2
            and tuple(op.args) == ("x", "y")[:len(op.args)])
