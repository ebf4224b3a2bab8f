"""TEMPORARY stand-in (branch S2 only): the real module, with these names as C
op-table lines, comes from another branch and replaces this file at merge.
Simple cad.primitive wrappers over scipy.special, enough for special.py and
stats.py and their tests; only the derivatives those need are given."""
import numpy as np
import scipy.special as _sc

import cad

from ..ops.custom import primitive

_SQ2PI = float(np.sqrt(2 * np.pi))


def _make(name, fn):
    @primitive(name=name)
    def p(*xs):
        arrs = [np.asarray(x) for x in xs]
        dt = np.result_type(*arrs)
        if dt.kind != "f":
            dt = np.dtype(np.float64)
        with np.errstate(all="ignore"):
            return np.asarray(fn(*[a.astype(np.float64) for a in arrs]), dtype=dt)
    p.defvmap(lambda *xs: p(*_bcast(xs)))

    def public(*xs):
        return p(*_bcast(xs))
    public.__name__ = name
    public._prim = p
    return public


def _bcast(xs):
    dts = [x.dtype for x in xs if hasattr(x, "dtype") and not isinstance(x, np.ndarray)]
    dts += [x.dtype for x in xs if isinstance(x, np.ndarray)]
    dt = np.result_type(*[np.dtype(str(d).replace("cad.", "")) for d in dts]) if dts else np.dtype(np.float64)
    dt = cad.float32 if dt == np.float32 else cad.float64
    ts = [x if hasattr(x, "dtype") and not isinstance(x, np.ndarray) else cad.tensor(np.asarray(x, dtype=np.float64), dtype=dt)
          for x in xs]
    ts = [cad.astype(t, dt) if t.dtype != dt else t for t in ts]
    shape = np.broadcast_shapes(*[tuple(t.shape) for t in ts])
    return [cad.broadcast_to(t, shape) if tuple(t.shape) != shape else t for t in ts]


gamma = _make("gamma", _sc.gamma)
rgamma = _make("rgamma", _sc.rgamma)
gammasgn = _make("gammasgn", _sc.gammasgn)
erfcinv = _make("erfcinv", _sc.erfcinv)
logit = _make("logit", _sc.logit)
xlog1py = _make("xlog1py", _sc.xlog1py)
ndtr = _make("ndtr", _sc.ndtr)
log_ndtr = _make("log_ndtr", _sc.log_ndtr)
ndtri = _make("ndtri", _sc.ndtri)
j0 = _make("j0", _sc.j0)
j1 = _make("j1", _sc.j1)
y0 = _make("y0", _sc.y0)
y1 = _make("y1", _sc.y1)
jn = _make("jn", _sc.jv)
yn = _make("yn", _sc.yn)
i0 = _make("i0", _sc.i0)
i1 = _make("i1", _sc.i1)
i0e = _make("i0e", _sc.i0e)
i1e = _make("i1e", _sc.i1e)


def _pdf(x):
    return cad.exp(-0.5 * x * x) / _SQ2PI


gamma._prim.defvjp(lambda g, ans, x: (g * ans * cad.digamma(x),))
rgamma._prim.defvjp(lambda g, ans, x: (-g * ans * cad.digamma(x),))
gammasgn._prim.defvjp(lambda g, ans, x: (g * 0.0,))
logit._prim.defvjp(lambda g, ans, x: (g / (x * (1 - x)),))
xlog1py._prim.defvjp(lambda g, ans, x, y: (g * cad.log1p(y), g * x / (1 + y)))
ndtr._prim.defvjp(lambda g, ans, x: (g * _pdf(x),))
log_ndtr._prim.defvjp(lambda g, ans, x: (g * cad.exp(-0.5 * x * x - ans) / _SQ2PI,))
ndtri._prim.defvjp(lambda g, ans, x: (g / _pdf(ans),))
i0e._prim.defvjp(lambda g, ans, x: (g * (i1e(x) - cad.sign(x) * ans),))
i1e._prim.defvjp(lambda g, ans, x: (g * (0.5 * (i0e(x) + _iv2e(x)) - cad.sign(x) * ans),))


def _iv2e(x):
    return i0e(x) - 2 * i1e(x) / x
