"""cad.scipy.integrate: ``odeint`` with exact gradients by the adjoint method.

NOTE [ odeint ]
``odeint(func, y0, t, *args)`` (JAX's signature; scipy's ``args=`` keyword too) solves
dy/dt = func(y, t, *args) with an adaptive Dormand-Prince 5(4) integrator and returns
y at the times t, shape (len(t),) + y0.shape.  It is one user primitive
(cad.primitive, NOTE [ Custom primitives ]) of three tensors: y0 flattened, t, and
every float leaf of args concatenated; so grad, vjp, value_and_grad, jacobian (rev)
and Tensor.backward see it as one op.

Speed.  func is cheap and called thousands of times, so nothing runs Python per
evaluation: one whole Dopri step (six evaluations of func, the 5th-order update, the
error ratio and the dense-output coefficients) is recorded once with cad.record and
replayed, one C call per step; Python keeps only the step-size control (floats) and
the interpolation at the output times.  A small state (2n + m + 2 <= 64 scalars, y and
args of at most one dimension) is recorded element by element so that the step is a
scalar program, about twenty times cheaper per record (NOTE [ odeint scalar mode ]);
otherwise the step is a tape of array records.  The tapes are cached per (func,
shapes, tolerances).  Values func reads that are not y, t or args (closures, globals) are
constants of a recorded tape: every call checks func's value at (y0, t[0]) against
the replay and records again when they differ (and a closed-over tensor that needs a
gradient raises: pass it in args).  The cache key is func's code and the objects it
closes over, so a lambda written inside a loss is recorded once.  A func that reads
values into Python (an ``if`` on a tensor) cannot be replayed: the step then runs
eagerly (correct, slower; the values read are constants of the gradient, as under
cad.grad).

Gradients (the vjp rule).  The backward integrates, from t[-1] down to t[0], the
augmented state s = [y, a, g_args] with
    dy/dt = f(y, t),   da/dt = -a . df/dy,   dg_args/dt = -a . df/dargs
(HIPS autograd's and jax.experimental.ode's adjoint), adding the output cotangent
g_i to a at each t_i (the steps land on the t_i; the step size carries over; the
jump, the dynamics after it and g_i . f(y_i, t_i) are one more replay).  The
vector-Jacobian products are recorded inside the backward's Dopri step (cad.vjp of
func on arrays; cad.autograd.grad of each stage on scalars), so the backward is
replayed as the forward is.  Times: dL/dt_i = g_i . f(y(t_i), t_i) for i >= 1 and
dL/dt_0 = -a(t_0+) . f(y0, t_0) (a(t_0+): the adjoint before g_0 is added), exact
also for a func that depends on t.

Higher order.  The first-order sweeps (the C sweep, a sweep under no_grad) take the
numpy adjoint above.  A sweep that records (create_graph: grad of grad, hessian's
reverse part) takes the same adjoint written with cad ops, an odeint of the
augmented system per interval, so it differentiates again (as JAX's).  The jvp rule
is forward sensitivities, also an odeint (of [y, ty], d(ty)/dt = J_y ty + J_args
t_args by cad.jvp of func), so cad.jvp, jacfwd and hessian work; a tangent of the
times moves the start (ty0 - f(y0, t0) tt0) and the outputs (+ f(y_i, t_i) tt_i).
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from .. import tree as T
from .._core import _engine as C
from ..ops._registry import VMAP
from ..ops.custom import primitive

__all__ = ["odeint"]

# ---------------------------------------------------------------- Dormand-Prince 5(4)

_C = (0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0)
_A = ((),
      (1 / 5,),
      (3 / 40, 9 / 40),
      (44 / 45, -56 / 15, 32 / 9),
      (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
      (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
      (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84))
_E = (71 / 57600, 0.0, -71 / 16695, 71 / 1920, -17253 / 339200, 22 / 525, -1 / 40)
# y at the step's midpoint (Shampine's dense output, as jax.experimental.ode)
_MID = (6025192743 / 30085553152 / 2, 0.0, 51252292925 / 65400821598 / 2,
        -2691868925 / 45128329728 / 2, 187940372067 / 1594534317056 / 2,
        -1776094331 / 19743644256 / 2, 11237099 / 235043384 / 2)
_SAFETY, _IFACTOR, _DFACTOR = 0.9, 10.0, 0.2


def _cad():
    import cad
    return cad


def _comb(ks, coefs):
    """sum of c * k over the nonzero coefficients (one stack and one product when
    there are several: fewer records to replay)"""
    cad = _cad()
    pairs = [(k, c) for k, c in zip(ks, coefs) if c != 0.0]
    if len(pairs) == 1:
        return pairs[0][0] * pairs[0][1]
    return cad.tensor(np.array([c for _, c in pairs])) @ cad.stack([k for k, _ in pairs])


# the quartic through a step from (h f0, h f1, y0, y1, y_mid), highest power first
_DENSE = np.array([[-2.0, 2.0, -8.0, -8.0, 16.0],
                   [5.0, -3.0, 18.0, 14.0, -32.0],
                   [-4.0, 1.0, -11.0, -5.0, 16.0],
                   [1.0, 0.0, 0.0, 0.0, 0.0],
                   [0.0, 0.0, 1.0, 0.0, 0.0]])


def _make_step(D, rtol, atol, dense, has_p):
    """one Dopri step of dy/dt = D(y, t, p), written with cad ops (recorded once):
    (y, f0 = D(y, t), t, h[, p]) -> (y1, f1 = D(y1, t + h), error ratio[, 5 coefficients
    of the quartic through the step, highest power first])"""
    cad = _cad()

    def step(y, f0, t, h, *p):
        ks = [f0]
        for i in range(1, 7):
            yi = y + h * _comb(ks, _A[i])
            if i == 6:
                y1 = yi
            ks.append(D(yi, t + _C[i] * h, *p))
        f1 = ks[6]
        K = cad.stack(ks)
        err = h * (cad.tensor(np.array(_E)) @ K)
        tol = atol + rtol * cad.maximum(cad.abs(y), cad.abs(y1))
        ratio = cad.sqrt(cad.mean((err / tol) ** 2))
        if not dense:
            return y1, f1, ratio
        ym = y + h * (cad.tensor(np.array(_MID)) @ K)
        return y1, f1, ratio, cad.tensor(_DENSE) @ cad.stack([h * f0, h * f1, y, y1, ym])
    return step


class _Runner:
    """a cad function run by replaying its tape (recorded on first use), or eagerly
    (no_grad) when it cannot be replayed"""
    __slots__ = ("eager", "fn", "tape")

    def __init__(self, fn):
        self.fn = fn
        self.tape = None
        self.eager = False

    def __call__(self, *xs):
        if not self.eager:
            try:
                if self.tape is None:
                    self.tape = _cad().record(self.fn, *[C.as_tensor(x) for x in xs])
                    if self.tape.guards:        # it branches on values: replay would guard
                        raise _NoReplay
                return C.replay_run(self.tape._replay, xs, None, None, "odeint")[0]
            except (_NoReplay, C.CadError) as e:
                if isinstance(e, C.CadError) and not _is_replay_problem(e):
                    raise
                self.eager = True
                self.tape = None
        with C.no_grad():
            out = self.fn(*[C.as_tensor(x) for x in xs])
        return list(out) if isinstance(out, (tuple, list)) else [out]


class _NoReplay(Exception):
    pass


def _is_replay_problem(e):
    from ..record import ReplayError
    return isinstance(e, ReplayError) or "record" in str(e).lower() or "replay" in str(e).lower()


# ---------------------------------------------------------------- scalar mode

# NOTE [ odeint scalar mode ]
# A replay of records on 0-d float64 values runs as a compact scalar program, about
# twenty times faster per record than records on small arrays.  A small state (and
# args of at most one dimension) is therefore recorded element by element: y and
# each 1-d float leaf of args reach func as an _SVec (a vector of 0-d tensors with
# elementwise arithmetic, indexing, iteration and len), and cad.stack / cad.tensor of
# 0-d tensors give an _SVec back while this thread records (the patch is undone after
# recording, and other threads see the original functions).  Whatever an _SVec does
# not support (cad.sum(y), y @ A, numpy on it...) raises, and the step is recorded on
# arrays instead; the scalar tape is also checked against the array tape's values.
# The stepping loops of _forward and _backward then run in C over those programs
# (replay.pxi's ode_forward_sprog and ode_backward_sprog: the same arithmetic in the
# same order, bitwise equal to the Python loops, which remain for array steppers and
# for a second thread using the same programs at once).

import threading

_TLS = threading.local()
_MAX_SCALAR_INPUTS = 64


class _NoScalar(Exception):
    pass


def _s0(x):
    if isinstance(x, C.Tensor):
        if x.ndim != 0:
            raise _NoScalar
        return x
    if isinstance(x, (int, float)) and not isinstance(x, bool):
        return x
    raise _NoScalar


class _SVec:
    """a 1-d vector of 0-d tensors (NOTE [ odeint scalar mode ])"""
    __slots__ = ("items",)
    __array_ufunc__ = None
    __array_priority__ = 1e6

    def __init__(self, items):
        self.items = list(items)

    def __array__(self, *a, **k):
        raise _NoScalar

    @property
    def shape(self):
        return (len(self.items),)

    @property
    def ndim(self):
        return 1

    @property
    def size(self):
        return len(self.items)

    @property
    def dtype(self):
        return np.dtype(np.float64)

    def __len__(self):
        return len(self.items)

    def __iter__(self):
        return iter(self.items)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return _SVec(self.items[i])
        if isinstance(i, (int, np.integer)) and not isinstance(i, bool):
            return self.items[i]
        raise _NoScalar

    def _zip(self, other):
        if isinstance(other, _SVec):
            if len(other.items) != len(self.items):
                raise _NoScalar
            return other.items
        return [_s0(other)] * len(self.items)

    def __add__(self, o):
        return _SVec([a + b for a, b in zip(self.items, self._zip(o))])

    def __radd__(self, o):
        return _SVec([b + a for a, b in zip(self.items, self._zip(o))])

    def __sub__(self, o):
        return _SVec([a - b for a, b in zip(self.items, self._zip(o))])

    def __rsub__(self, o):
        return _SVec([b - a for a, b in zip(self.items, self._zip(o))])

    def __mul__(self, o):
        return _SVec([a * b for a, b in zip(self.items, self._zip(o))])

    def __rmul__(self, o):
        return _SVec([b * a for a, b in zip(self.items, self._zip(o))])

    def __truediv__(self, o):
        return _SVec([a / b for a, b in zip(self.items, self._zip(o))])

    def __rtruediv__(self, o):
        return _SVec([b / a for a, b in zip(self.items, self._zip(o))])

    def __pow__(self, o):
        return _SVec([a ** b for a, b in zip(self.items, self._zip(o))])

    def __rpow__(self, o):
        return _SVec([b ** a for a, b in zip(self.items, self._zip(o))])

    def __neg__(self):
        return _SVec([-a for a in self.items])

    def __pos__(self):
        return self

    def __eq__(self, o):       # (object's identity comparison would be silently wrong)
        raise _NoScalar

    def __ne__(self, o):
        raise _NoScalar

    def __bool__(self):
        raise _NoScalar

    __hash__ = None

    def __getattr__(self, name):
        raise _NoScalar


def _scalars_of(xs):
    """an _SVec from a list of 0-d tensors and numbers (None: not such a list)"""
    if not isinstance(xs, (list, tuple)) or not xs:
        return None
    if not all(isinstance(x, (int, float)) or (isinstance(x, C.Tensor) and x.ndim == 0) for x in xs):
        return None
    if not any(isinstance(x, C.Tensor) for x in xs):
        return None
    return _SVec([x if isinstance(x, C.Tensor) else C.as_tensor(float(x)) for x in xs])


def _patched(orig):
    def f(x, *a, **k):
        if getattr(_TLS, "scalar", False) and not a and not k:
            v = _scalars_of(x)
            if v is not None:
                return v
        return orig(x, *a, **k)
    f.__wrapped__ = orig
    return f


class _ScalarRecording:
    """cad.stack / cad.tensor give _SVecs on this thread while recording"""
    _LOCK = threading.RLock()

    def __enter__(self):
        cad = _cad()
        self._LOCK.acquire()
        self.saved = {"stack": cad.stack, "tensor": cad.tensor}
        for k, v in self.saved.items():
            setattr(cad, k, _patched(v))
        _TLS.scalar = True
        return self

    def __exit__(self, *exc):
        cad = _cad()
        _TLS.scalar = False
        for k, v in self.saved.items():
            setattr(cad, k, v)
        self._LOCK.release()
        return False


def _scomb(ks, coefs):
    acc = None
    for k, c in zip(ks, coefs):
        if c == 0.0:
            continue
        term = k * c
        acc = term if acc is None else acc + term
    return acc


def _make_sstep(D, n, rtol, atol, dense, live=None):
    """_make_step on _SVecs: inputs y (n), f0 (n), t, h, the args' scalars; outputs the
    scalars of y1, f1, the ratio and (dense) the 5 x n coefficients.  live: D reads
    only the first `live` components (the adjoint's g_args are quadratures): the
    stages compute only those"""
    cad = _cad()
    live = n if live is None else live

    def step(*xs):
        y, f0 = _SVec(xs[:n]), _SVec(xs[n:2 * n])
        t, h, pit = xs[2 * n], xs[2 * n + 1], xs[2 * n + 2:]
        yl = _SVec(y.items[:live])
        ks, kl = [f0], [_SVec(f0.items[:live])]
        for i in range(1, 7):
            # (an _SVec on the left: a Tensor's operators do not defer to it)
            if i == 6:
                yi = y1 = y + _scomb(ks, _A[i]) * h
                yi = _SVec(yi.items[:live])
            else:
                yi = yl + _scomb(kl, _A[i]) * h
            k = D(yi, t + _C[i] * h, pit)
            ks.append(k)
            kl.append(_SVec(k.items[:live]))
        f1 = ks[6]
        err = _scomb(ks, _E) * h
        acc = None
        for e, a, b in zip(err.items, y.items, y1.items):
            q = e / (atol + rtol * cad.maximum(cad.abs(a), cad.abs(b)))
            acc = q * q if acc is None else acc + q * q
        ratio = cad.sqrt(acc * (1.0 / n))
        outs = y1.items + f1.items + [ratio]
        if dense:
            ym = y + _scomb(ks, _MID) * h
            rows = [f0 * h, f1 * h, y, y1, ym]
            for r in _DENSE[:3]:
                outs += _scomb(rows, r).items
            outs += rows[0].items + y.items
        return tuple(outs)
    return step


class _ArrayStepper:
    """steps of a recorded array tape: the state is the tuple (y, f) of tensors"""

    def __init__(self, runner, p, aug=None, n=0, F=None):
        self.run, self.p = runner, tuple(p)
        self.aug, self.n, self.F = aug, n, F

    def jump(self, yf, g, y, t):
        """the backward's state with g added to a, its derivative, and g . f(y, t)"""
        s = _np(yf[0]).copy()
        s[self.n:2 * self.n] += g
        gt = float(np.dot(_np(self.F(C.as_tensor(y), t, *self.p)[0]), g))
        return self.load(s, self.aug(C.as_tensor(s), t, *self.p)[0]), gt

    def load(self, y, f):
        return (C.as_tensor(np.ascontiguousarray(y)), f)

    def step(self, yf, t, h):
        o = self.run(*yf, t, h, *self.p)
        return (o[0], o[1]), float(o[2]), (o[3] if len(o) > 3 else None)

    def coef(self, c):
        return _np(c)

    @staticmethod
    def interp(cf, s):
        return (((cf[0] * s + cf[1]) * s + cf[2]) * s + cf[3]) * s + cf[4]

    def y_np(self, yf):
        return _np(yf[0])


class _ScalarStepper:
    """steps of a recorded scalar program: the state is the list of y's and f's
    values as Python floats (C.replay_floats runs the program on them: no tensor
    per value)"""

    def __init__(self, tape, n, pitems, jump=None, ny=0):
        self.rp, self.n, self.ny = tape._replay, n, ny
        self.pitems = [float(v) for v in pitems]
        self.jrp = jump._replay if jump is not None else None

    def jump(self, yf, g, y, t):
        """the backward's state with g added to a, its derivative, and g . f(y, t)
        (one replay)"""
        o = C.replay_floats(self.jrp, yf[:self.n] + g.tolist() + y.tolist() + [t] + self.pitems)
        return o[:-1], o[-1]

    def load(self, y, f):
        return [float(v) for v in np.ravel(y)] + [float(v) for v in np.ravel(_np(f))]

    def step(self, yf, t, h):
        n2 = 2 * self.n
        o = C.replay_floats(self.rp, yf + [t, h] + self.pitems)
        return o[:n2], o[n2], o

    def coef(self, o):
        return o[2 * self.n + 1:]

    def interp(self, c, s):
        """the quartic at s in Python floats (cheaper than numpy for a small state)"""
        n = self.n
        return [(((c[j] * s + c[n + j]) * s + c[2 * n + j]) * s + c[3 * n + j]) * s + c[4 * n + j]
                for j in range(n)]

    def y_np(self, yf):
        return np.array(yf[:self.n])


# ---------------------------------------------------------------- the problem

class _Spec:
    """func with the structure of its state and arguments: builds the flat dynamics
    F(y (n,), t (), p (m,)) -> (n,) with cad ops, and caches the tapes"""

    def __init__(self, func, yshape, treedef, parts, statics, tfirst, rtol, atol, mxstep, hmax):
        self.mxstep, self.hmax = mxstep, hmax
        self.func, self.yshape, self.treedef = func, yshape, treedef
        self.parts = parts          # per leaf: ("f", offset, shape) or ("s", index)
        self.statics = statics      # the non-float leaves, as given
        self.tfirst = tfirst
        self.rtol, self.atol = rtol, atol
        self.n = int(np.prod(yshape, dtype=np.int64))
        self.m = sum(int(np.prod(s, dtype=np.int64)) for k, _, s in parts if k == "f")
        self.reset()

    def reset(self):
        """forget the recorded tapes (recorded again on first use)"""
        self.F = _Runner(self.dyn)
        self.step = _Runner(_make_step(self.dyn, self.rtol, self.atol, True, self.m > 0))
        self.bstep = None           # the backward's step (made on first use)
        self.aug = None
        self.sf = self.sb = self.sj = None   # the scalar programs (NOTE [ odeint scalar mode ]); False: none

    # -- scalar mode
    def sargs(self, pit):
        leaves = []
        for kind, a, b in self.parts:
            if kind == "s":
                leaves.append(self.statics[a])
            elif len(b) == 0:
                leaves.append(pit[a])
            elif len(b) == 1:
                leaves.append(_SVec(pit[a:a + b[0]]))
            else:
                raise _NoScalar
        return T.tree_unflatten(self.treedef, leaves)

    def sdyn(self, yv, t, pit):
        if len(self.yshape) > 1:
            raise _NoScalar
        Y = yv.items[0] if len(self.yshape) == 0 else yv
        args = self.sargs(pit)
        out = self.func(t, Y, *args) if self.tfirst else self.func(Y, t, *args)
        if isinstance(out, (list, tuple)):
            out = _scalars_of(out)
        elif isinstance(out, C.Tensor) and out.ndim == 0 and len(self.yshape) == 0:
            out = _SVec([out])
        if not isinstance(out, _SVec) or len(out.items) != self.n:
            raise _NoScalar
        return _SVec([o if isinstance(o, C.Tensor) else C.as_tensor(float(_s0(o))) for o in out.items])

    def saug(self, sv, t, pit):
        """the adjoint's dynamics on scalars.  The vjp is cad.autograd.grad of this
        stage's outputs with respect to this stage's state and a private copy of the
        args' scalars (so that only the paths through this evaluation count): no
        fresh-node views, so the step stays a scalar program"""
        n = self.n
        y, a = sv.items[:n], sv.items[n:2 * n]
        pc = [q * 1.0 for q in pit]
        fy = self.sdyn(_SVec(y), t, tuple(pc)).items
        live = [i for i, v in enumerate(fy) if isinstance(v, C.Tensor) and v.requires_grad]
        cts = [None] * (n + len(pc))
        if live:
            got = _cad().autograd.grad([fy[i] for i in live], list(y) + pc,
                                       grad_outputs=[a[i] for i in live], create_graph=True,
                                       allow_unused=True)
            cts = list(got)
        return _SVec(list(fy) + [C.as_tensor(0.0) if c is None else -c for c in cts])

    def stepper(self, p, back, y, f, t, h):
        """the steps' runner: a scalar program when the problem allows one, else the
        array tape (y, f, t, h: an example step, to check the scalar program)"""
        pitems = tuple(float(v) for v in _np(p[0])) if p else ()
        N = 2 * self.n + self.m if back else self.n
        tape = self.sb if back else self.sf
        if tape is None:
            tape = False
            if 2 * N + 2 + self.m <= _MAX_SCALAR_INPUTS and len(self.yshape) <= 1:
                tape = self._record_scalar(back, N, p, pitems, y, f, t, h)
            if back:
                self.sb = tape
                self.sj = tape and self._record_jump(N, p, pitems, y, t)
                if self.sj is False:
                    self.sb = tape = False
            else:
                self.sf = tape
        if tape is not False:
            return _ScalarStepper(tape, N, pitems, self.sj if back else None, self.n)
        if back:
            return _ArrayStepper(self.backward_step(), p, self.aug_runner(), self.n, self.F)
        return _ArrayStepper(self.step, p)

    def _record_jump(self, N, p, pitems, s, t):
        """the scalar program (s, g, t, args) -> (s with a += g, the dynamics there)"""
        n = self.n

        def jump(*xs):
            sv = list(xs[:N])
            g, yv, tt, pit = xs[N:N + n], xs[N + n:N + 2 * n], xs[N + 2 * n], xs[N + 2 * n + 1:]
            for j in range(n):
                sv[n + j] = sv[n + j] + g[j]
            out = self.saug(_SVec(sv), tt, pit)
            fy = self.sdyn(_SVec(yv), tt, pit).items
            gt = fy[0] * g[0]
            for j in range(1, n):
                gt = gt + fy[j] * g[j]
            return tuple(sv) + tuple(out.items) + (gt,)
        gl = [0.5] * n
        sl = [float(v) for v in np.ravel(s)]
        ex = [C.as_tensor(v) for v in sl + gl + sl[:n] + [float(t)] + list(pitems)]
        try:
            with _ScalarRecording():
                tape = _cad().record(jump, *ex)
        except Exception:   # noqa: BLE001 (as in _record_scalar)
            return False
        if tape.guards or not tape._replay.scalar_program:
            return False
        got = C.replay_run(tape._replay, tuple(sl + gl + sl[:n] + [float(t)] + list(pitems)), None, None,
                           "odeint")[0]
        s2 = np.asarray(sl)
        s2[n:2 * n] += gl
        fy = _np(self.F(C.as_tensor(np.asarray(sl[:n])), float(t), *p)[0])
        want = np.concatenate([s2, _np(self.aug_runner()(C.as_tensor(s2), float(t), *p)[0]),
                               [np.dot(fy, gl)]])
        have = np.array([v.item() for v in got])
        if not np.allclose(have, want, rtol=1e-9, atol=1e-12 * (1 + np.abs(want).max())):
            return False
        return tape

    def _record_scalar(self, back, N, p, pitems, y, f, t, h):
        D = self.saug if back else self.sdyn
        fn = _make_sstep(D, N, self.rtol, self.atol, not back, 2 * self.n if back else None)
        yl = [float(v) for v in np.ravel(y)]
        fl = [float(v) for v in np.ravel(_np(f))]
        ex = [C.as_tensor(v) for v in yl + fl + [float(t), float(h)] + list(pitems)]
        try:
            with _ScalarRecording():
                tape = _cad().record(fn, *ex)
        except Exception:   # noqa: BLE001 (anything an _SVec does not support: arrays instead)
            return False
        if tape.guards or not tape._replay.scalar_program:
            return False
        # the scalar program against the array tape on the example step
        got = C.replay_run(tape._replay, tuple(yl + fl + [float(t), float(h)] + list(pitems)), None,
                           None, "odeint")[0]
        arr = (self.backward_step() if back else self.step)(C.as_tensor(np.asarray(yl)),
                                                           C.as_tensor(np.asarray(fl)), float(t),
                                                           float(h), *p)
        want = np.concatenate([_np(arr[0]), _np(arr[1])])
        have = np.array([v.item() for v in got[:2 * N]])
        if not np.allclose(have, want, rtol=1e-9, atol=1e-12 * (1 + np.abs(want).max())):
            return False
        return tape

    def args(self, p):
        leaves = []
        for kind, a, b in self.parts:
            if kind == "s":
                leaves.append(self.statics[a])
            else:
                k = int(np.prod(b, dtype=np.int64))
                leaves.append(C.reshape(p[a:a + k], b))
        return T.tree_unflatten(self.treedef, leaves)

    def call(self, Y, t, args):
        out = self.func(t, Y, *args) if self.tfirst else self.func(Y, t, *args)
        if isinstance(out, np.ndarray):
            raise TypeError("odeint: func returned a numpy array; write it with cad ops (cad.sin, "
                            "cad.stack, ...) so that odeint can record and differentiate it")
        if isinstance(out, (list, tuple)):
            out = _cad().stack([C.as_tensor(o) for o in out])
        elif not isinstance(out, C.Tensor):
            out = C.as_tensor(out)
        if tuple(out.shape) != tuple(self.yshape):
            raise C.ShapeError(f"odeint: func returned shape {tuple(out.shape)}; the state y0 has "
                               f"shape {tuple(self.yshape)} (func must return dy/dt, the shape of y)")
        return out

    def dyn(self, y, t, *p):
        args = self.args(p[0]) if p else self.args(None)
        out = self.call(C.reshape(y, self.yshape), t, args)
        if out.dtype != np.float64:
            out = out.astype(np.float64)
        return C.reshape(out, (self.n,))

    def augmented(self, s, t, *p):
        """[f, -a.df/dy, -a.df/dp] at s = [y, a, g_p]: the adjoint's dynamics"""
        cad = _cad()
        n = self.n
        y, a = s[:n], s[n:2 * n]
        if p:
            fy, pull = cad.vjp(lambda y_, p_: self.dyn(y_, t, p_), y, p[0])
            gy, gp = pull(a)
            return cad.concatenate([fy, -gy, -gp])
        fy, pull = cad.vjp(lambda y_: self.dyn(y_, t), y)
        return cad.concatenate([fy, -pull(a)[0]])

    def backward_step(self):
        if self.bstep is None:
            self.bstep = _Runner(_make_step(self.augmented, self.rtol, self.atol, False, self.m > 0))
        return self.bstep

    def aug_fn(self):
        """the augmented dynamics as a func for odeint (one object: its tapes are cached)"""
        if getattr(self, "_aug_fn", None) is None:
            def aug(s, t, *p):
                return self.augmented(s, t, *p)
            self._aug_fn = aug
        return self._aug_fn

    def tan_fn(self):
        """the tangent dynamics [f, J_y ty + J_args t_args] at z = [y, ty] as a func for
        odeint (args: (p, t_p), or none)"""
        if getattr(self, "_tan_fn", None) is None:
            cad = _cad()
            n = self.n

            def tan(z, t, *ptp):
                y, ty = z[:n], z[n:]
                if ptp:
                    fy, tf = cad.jvp(lambda y_, p_: self.dyn(y_, t, p_), (y, ptp[0]), (ty, ptp[1]))
                else:
                    fy, tf = cad.jvp(lambda y_: self.dyn(y_, t), (y,), (ty,))
                return cad.concatenate([fy, tf])
            self._tan_fn = tan
        return self._tan_fn

    def aug_runner(self):
        if self.aug is None:
            self.aug = _Runner(self.augmented)
        return self.aug


_SPECS = {}        # key -> _Spec (a bounded cache: the recorded tapes)
_SPECS_MAX = 64


def _spec_for(key, make):
    s = _SPECS.get(key)
    if s is None:
        if len(_SPECS) >= _SPECS_MAX:
            _SPECS.pop(next(iter(_SPECS)))
        s = _SPECS[key] = make()
    return s


# ---------------------------------------------------------------- the integrator

def _initial_step(F, y0, f0, t0, p, rtol, atol, direction):
    """Hairer, Norsett and Wanner's starting step (as scipy and JAX)"""
    scale = atol + np.abs(y0) * rtol
    d0 = float(np.linalg.norm(y0 / scale))
    d1 = float(np.linalg.norm(f0 / scale))
    h0 = 1e-6 if (d0 < 1e-5 or d1 < 1e-5) else 0.01 * d0 / d1
    y1 = y0 + direction * h0 * f0
    f1 = _np(F(y1, t0 + direction * h0, *p)[0])
    d2 = float(np.linalg.norm((f1 - f0) / scale)) / h0
    if d1 <= 1e-15 and d2 <= 1e-15:
        h1 = max(1e-6, h0 * 1e-3)
    else:
        h1 = (0.01 / max(d1, d2)) ** (1.0 / 5.0)
    return min(100.0 * h0, h1)


def _np(x):
    return x.numpy() if isinstance(x, C.Tensor) else np.asarray(x)


_C_LOOPS = True   # the stepping loops over scalar programs in C (False: in Python; tests compare)


def _factor(ratio):
    """the next step over this one from the error ratio (safety 0.9, within [0.2, 10])"""
    if ratio == 0.0:
        return _IFACTOR
    if not ratio < 1e300:    # inf or nan (an overflow): shrink hard
        return _DFACTOR
    f = _SAFETY * ratio ** -0.2
    return _IFACTOR if f > _IFACTOR else (max(f, _DFACTOR))


def _forward(spec, y0, ts, p, mxstep, hmax):
    """the solution at ts (len(ts), n): steps of the recorded Dopri step, dense
    output at the times inside each accepted step (the loop is written for few
    Python operations per step: NOTE [ odeint ])"""
    F = spec.F
    rtol, atol = spec.rtol, spec.atol
    nt = len(ts)
    ts = ts.tolist()     # Python floats: cheaper than numpy scalars in the loop
    out = np.empty((nt, spec.n))
    out[0] = y0
    if nt == 1:
        return out
    d = 1.0 if ts[-1] > ts[0] else -1.0
    t = ts[0]
    f = F(C.as_tensor(y0), t, *p)[0]
    h = min(_initial_step(F, y0, _np(f), t, p, rtol, atol, d), hmax)
    S = spec.stepper(p, False, y0, f, t, d * h)
    step, coef, interp = S.step, S.coef, S.interp
    yf = S.load(y0, f)
    tend = ts[-1]
    hmin = 1e-14 * max(1.0, abs(ts[0]), abs(tend))
    if isinstance(S, _ScalarStepper) and _C_LOOPS and C.ode_forward_sprog(
            S.rp, yf, t, h, d, ts, out, spec.n, mxstep, hmax, hmin, S.pitems):
        return out   # the same loop in C (replay.pxi; False: another thread holds the program)
    i, steps = 1, 0
    tnext = ts[1]
    while True:
        rem = (tend - t) * d
        last = h >= rem
        hs = rem if last else h
        yf1, ratio, co = step(yf, t, d * hs)
        steps += 1
        if ratio <= 1.0:
            tn = tend if last else t + d * hs
            if (tn - tnext) * d >= 0:
                cf = coef(co)
                while (tn - tnext) * d >= 0:
                    out[i] = interp(cf, (tnext - t) / (d * hs))
                    i += 1
                    if i == nt:
                        return out
                    tnext = ts[i]
                steps = 0
            t, yf = tn, yf1
        if steps > mxstep:
            raise RuntimeError(f"odeint: more than mxstep={mxstep} steps between t={ts[i - 1]!r} and "
                               f"t={ts[i]!r} (the problem may be stiff, or the tolerances too "
                               "tight; raise mxstep)")
        h = hs * _factor(ratio)
        h = min(h, hmax)
        if h < hmin:
            raise RuntimeError(f"odeint: the step size fell below {h:.1e} at t={t!r} (the solution "
                               "may blow up there)")


def _backward(spec, ys, ts, p, g, mxstep, hmax):
    """(dL/dy0, dL/dt, dL/dp) from the output cotangent g (len(ts), n) by the adjoint"""
    n, m = spec.n, spec.m
    nt = len(ts)
    A = spec.aug_runner()
    rtol, atol = spec.rtol, spec.atol
    F = spec.F
    gt = np.zeros(nt)     # dL/dt_i = g_i . f(y_i, t_i); the jumps give those inside
    ts = ts.tolist()
    gt[-1] = float(np.dot(_np(F(C.as_tensor(ys[-1]), ts[-1], *p)[0]), g[-1]))
    s = np.concatenate([ys[-1], g[-1], np.zeros(m)])
    t = float(ts[-1])
    direction = 1.0 if ts[0] > ts[-1] else -1.0
    f = A(C.as_tensor(s), t, *p)[0]
    h = min(_initial_step(A, s, _np(f), t, p, rtol, atol, direction), hmax)
    S = spec.stepper(p, True, s, f, t, direction * h)
    st = S.load(s, f)
    step = S.step
    d = direction
    hmin = 1e-14 * max(1.0, abs(ts[0]), abs(ts[-1]))
    got = None
    if isinstance(S, _ScalarStepper) and _C_LOOPS:   # the same loop in C (replay.pxi; None:
        got = C.ode_backward_sprog(                   # another thread holds the programs)
            S.rp, S.jrp, st, h, d, ts, np.ascontiguousarray(g, dtype=np.float64).reshape(nt, n),
            np.ascontiguousarray(ys, dtype=np.float64).reshape(nt, n), gt, S.n, n, mxstep, hmax, hmin,
            S.pitems)
    if got is not None:
        st = got
    else:
        for i in range(nt - 1, 0, -1):
            t, t_stop = ts[i], ts[i - 1]
            steps = 0
            while True:
                rem = (t_stop - t) * d
                if rem <= 0:
                    break
                last = h >= rem
                hs = rem if last else h
                s1, ratio, _ = step(st, t, d * hs)
                steps += 1
                if ratio <= 1.0:
                    t = t_stop if last else t + d * hs
                    st = s1
                    if last:      # a step clipped at t_stop says little about h
                        continue
                if steps > mxstep:
                    raise RuntimeError(f"odeint (gradient): more than mxstep={mxstep} steps of the "
                                       f"adjoint between t={ts[i]!r} and t={ts[i - 1]!r} (raise mxstep)")
                h = hs * _factor(ratio)
                h = min(h, hmax)
                if h < hmin:
                    raise RuntimeError(f"odeint (gradient): the adjoint's step size fell below {h:.1e} "
                                       f"at t={t!r}")
            if i > 1:     # a += g_i, the dynamics at the new state, and dL/dt_i
                st, gt[i - 1] = S.jump(st, g[i - 1], ys[i - 1], t_stop)
    s = np.array(S.y_np(st), dtype=np.float64)
    a_plus = s[n:2 * n].copy()
    s[n:2 * n] += g[0]
    gt[0] = -float(np.dot(_np(F(C.as_tensor(ys[0]), float(ts[0]), *p)[0]), a_plus))
    return s[n:2 * n], gt, s[2 * n:]


# ---------------------------------------------------------------- the primitive

def _tracked(*xs):
    return C.is_grad_enabled() and any(isinstance(x, C.Tensor) and x.requires_grad for x in xs)


@primitive
def _odeint_p(y0, ts, *rest):
    """rest: [p (m,)] then the _Spec (the static argument)"""
    spec, p = rest[-1], rest[:-1]
    pp = tuple(C.as_tensor(_np(x).astype(np.float64)) for x in p)
    return _forward(spec, _np(y0).astype(np.float64), _np(ts).astype(np.float64), pp,
                    spec.mxstep, spec.hmax)


@_odeint_p.defvjp
def _odeint_vjp(g, ans, y0, ts, *rest):
    spec, p = rest[-1], rest[:-1]
    if _tracked(g, ans, y0, ts, *p):     # a sweep that records: the rule as cad ops
        gy0, gts, gp = _vjp_ops(spec, g, ans, ts, p)
        return (gy0, gts) + ((gp,) if p else ()) + (None,)
    pp = tuple(C.as_tensor(_np(x).astype(np.float64)) for x in p)
    gy0, gts, gp = _backward(spec, _np(ans), _np(ts).astype(np.float64), pp, _np(g).astype(np.float64),
                             spec.mxstep, spec.hmax)
    return (gy0, gts) + ((gp,) if p else ()) + (None,)


def _opts(spec):
    return {"rtol": spec.rtol, "atol": spec.atol, "mxstep": spec.mxstep, "hmax": spec.hmax}


def _vjp_ops(spec, g, ys, ts, p):
    """the adjoint written with cad ops (an odeint of the augmented system per
    interval, as jax.experimental.ode), so that it differentiates again: the rule of
    grad of grad, and of hessian's forward-over-reverse"""
    cad = _cad()
    n, m = spec.n, spec.m
    nt = ts.shape[0]
    A = spec.aug_fn()
    zeros = [cad.zeros((m,))] if m else []
    gts = [None] * nt
    s = cad.concatenate([ys[nt - 1], g[nt - 1]] + zeros)
    a_plus = cad.zeros((n,))
    for i in range(nt - 1, 0, -1):
        gts[i] = cad.sum(spec.dyn(ys[i], ts[i], *p) * g[i])
        s = odeint(A, s, cad.stack([ts[i], ts[i - 1]]), *p, **_opts(spec))[1]
        if i == 1:
            a_plus = s[n:2 * n]
        s = cad.concatenate([s[:n], s[n:2 * n] + g[i - 1], s[2 * n:]])
    if nt == 1:
        s = cad.concatenate([ys[0], g[0]] + zeros)
    gts[0] = -cad.sum(spec.dyn(ys[0], ts[0], *p) * a_plus)
    return s[n:2 * n], cad.stack(gts), (s[2 * n:] if m else None)


@_odeint_p.defjvp
def _odeint_jvp(tangents, ans, y0, ts, *rest):
    """forward sensitivities: odeint of [y, ty] with d(ty)/dt = J_y ty + J_args t_args
    (cad.jvp of func), an odeint again, so it differentiates again; a tangent of the
    times moves the start (ty0 - f(y0, t0) tt0) and the outputs (+ f(y_i, t_i) tt_i)"""
    cad = _cad()
    spec, p = rest[-1], rest[:-1]
    n = spec.n
    ty0, tts = tangents[0], tangents[1]
    tp = tangents[2] if p else None
    moved = _tracked(tts) or bool(np.any(_np(tts.detach()) != 0))
    if moved:
        ty0 = ty0 - spec.dyn(y0, ts[0], *p) * tts[0]
    z0 = cad.concatenate([y0, ty0])
    targs = (p[0], tp) if p else ()
    Z = odeint(spec.tan_fn(), z0, ts, *targs, **_opts(spec))
    out = Z[:, n:]
    if moved:
        fs = cad.stack([spec.dyn(ans[i], ts[i], *p) for i in range(ts.shape[0])])
        out = out + fs * cad.reshape(tts, (ts.shape[0], 1))
    return out


# ---------------------------------------------------------------- the public function

def odeint(func: Callable[..., Any], y0: Any, t: Any, *args: Any, rtol: float = 1.4e-8, atol: float = 1.4e-8,
           mxstep: int = 100000, hmax: float = np.inf, tfirst: bool = False, **kwargs: Any) -> Any:
    """Integrate the system dy/dt = func(y, t, *args) from y(t[0]) = y0; returns y at
    every time of t, shape (len(t),) + y0.shape.

    As ``jax.experimental.ode.odeint(func, y0, t, *args, rtol, atol, mxstep, hmax)``,
    and as ``scipy.integrate.odeint``: ``args=(...)`` as a keyword, ``tfirst=True`` for
    func(t, y, *args).  func is written with cad ops; y0 is a float tensor of any
    shape; t a 1-d sequence of strictly increasing (or strictly decreasing) times;
    args tensors, numbers or pytrees (lists, tuples, dicts) of them.

    The integrator is an adaptive Dormand-Prince 5(4) (error per step below
    atol + rtol * |y| in the RMS norm, as JAX's), with the solution at the times t
    from its dense output; mxstep bounds the steps between two times of t, hmax the
    step size.  Gradients with respect to y0, t and the float leaves of args come from
    the adjoint method (NOTE [ odeint ]), under the same tolerances; cad.grad,
    cad.value_and_grad, cad.vjp, cad.jacrev/jacobian and Tensor.backward work.
    Forward mode (cad.jvp, jacfwd) integrates the forward sensitivities (a few times
    the gradient's time), and second derivatives (hessian, grad of grad) differentiate
    an adjoint written as one odeint per interval of t (far slower: seconds for 100
    times).

    func is recorded once (cad.record) and replayed, so tensors it closes over are
    read when recorded (checked at each call against func(y0, t[0]), recorded again
    when different); pass parameters that need gradients in args (a closed-over
    tensor that requires grad raises).

    scipy's ``solve_ivp(fun, (t0, t1), y0, t_eval=ts, args=a)`` is
    ``odeint(fun, y0, ts, *a, tfirst=True)`` with ts[0] = t0 (prepend t0 when t_eval
    starts later and drop the first row): the integration spans t[0]..t[-1] and the
    solution is returned at every time of t::

        ys = odeint(lambda t, y, k: -k * y, y0, cad.linspace(0., 5., 50), 0.3, tfirst=True)
    """
    cad = _cad()
    if "args" in kwargs:
        extra = kwargs.pop("args")
        if args:
            raise TypeError("odeint: pass args either positionally or as args=(...), not both")
        args = tuple(extra) if isinstance(extra, (tuple, list)) else (extra,)
    if kwargs:
        raise TypeError(f"odeint: unexpected keyword argument {next(iter(kwargs))!r}")
    opts = {"rtol": rtol, "atol": atol, "mxstep": mxstep, "hmax": hmax, "tfirst": tfirst}
    if VMAP[0]:     # inside cad.vmap
        r = _vmapped(func, y0, t, args, opts)
        if r is not None:
            return r
    if not callable(func):
        raise TypeError(f"odeint: func must be callable, got {type(func).__name__}")
    if not (rtol >= 0 and atol >= 0 and rtol + atol > 0):
        raise ValueError(f"odeint: rtol and atol must be >= 0 and not both 0 (got {rtol}, {atol})")
    mxstep = int(mxstep)
    if mxstep < 1:
        raise ValueError(f"odeint: mxstep must be positive, got {mxstep}")
    hmax = float(hmax)
    if not hmax > 0:
        raise ValueError(f"odeint: hmax must be positive, got {hmax}")
    # the state
    y0 = y0 if isinstance(y0, C.Tensor) else cad.tensor(np.asarray(y0, dtype=np.float64))
    if y0.dtype.kind != "f":
        y0 = y0.astype(np.float64)
    out_dtype = y0.dtype
    yshape = tuple(y0.shape)
    # the times
    t = t if isinstance(t, C.Tensor) else cad.tensor(np.asarray(t, dtype=np.float64))
    if t.ndim != 1 or t.shape[0] < 1:
        raise C.ShapeError(f"odeint: t must be a 1-d sequence of times, got shape {tuple(t.shape)}")
    if t.dtype.kind != "f":
        t = t.astype(np.float64)
    prev = C._set_record_mode(0)   # reading t and checking func are no part of a recording
    try:
        tn = _np(t.detach()).astype(np.float64)
    finally:
        C._set_record_mode(prev)
    if not np.all(np.isfinite(tn)):
        raise ValueError("odeint: t holds a non-finite time")
    if len(tn) > 1:
        d = np.diff(tn)
        if not (np.all(d > 0) or np.all(d < 0)):
            raise ValueError("odeint: the times t must be strictly increasing or strictly decreasing")
    # the arguments: float leaves -> one vector p, the others static
    leaves, treedef = T.tree_flatten(tuple(args))
    parts, statics, fl = [], [], []
    off = 0
    for leaf in leaves:
        if isinstance(leaf, (bool, int, str, type(None))) or callable(leaf) or (
                isinstance(leaf, np.ndarray) and leaf.dtype.kind not in "fc") or (
                isinstance(leaf, C.Tensor) and leaf.dtype.kind != "f"):
            parts.append(("s", len(statics), None))
            statics.append(leaf)
            continue
        x = leaf if isinstance(leaf, C.Tensor) else cad.tensor(np.asarray(leaf, dtype=np.float64))
        if x.dtype != np.float64:
            x = x.astype(np.float64)
        parts.append(("f", off, tuple(x.shape)))
        off += x.size
        fl.append(C.reshape(x, (x.size,)))
    p = (fl[0] if len(fl) == 1 else cad.concatenate(fl)) if fl else None
    try:
        skey = tuple(_static_key(s) for s in statics)
        hash(skey)
    except TypeError:
        skey = ("id",) + tuple(id(s) for s in statics)
    key = (_func_key(func), yshape, treedef, tuple(parts), skey, bool(tfirst), float(rtol),
           float(atol), mxstep, hmax)
    spec = _spec_for(key, lambda: _Spec(func, yshape, treedef, parts, statics, bool(tfirst),
                                        float(rtol), float(atol), mxstep, hmax))
    grad_on = C.is_grad_enabled()
    prev = C._set_record_mode(0)
    try:
        _check(spec, y0, tn, p, grad_on)
    finally:
        C._set_record_mode(prev)
    ins = (C.reshape(y0.astype(np.float64) if y0.dtype != np.float64 else y0, (spec.n,)), t)
    if p is not None:
        ins = ins + (p,)
    ys = _odeint_p(*ins, spec)
    ys = C.reshape(ys, (len(tn),) + yshape)
    return ys if out_dtype == np.float64 else ys.astype(out_dtype)


def _vmapped(func, y0, t, args, opts):
    """inside cad.vmap: one odeint per example of the innermost batch, stacked (None:
    no argument is batched at that level)"""
    from ..ops import _batch
    level = _batch._find((y0, t) + tuple(args), {})
    if level is None:
        return None

    def pick(x, b):
        if type(x) is _batch.Batched and x.level is level:
            v = x.val
            return v[b] if v.shape[0] != 1 else v[0]
        return x
    rows = []
    for b in range(level.size):
        ab = T.tree_map(lambda x, b=b: pick(x, b), tuple(args),
                        is_leaf=lambda x: type(x) is _batch.Batched)
        rows.append(odeint(func, pick(y0, b), pick(t, b), *ab, **opts))
    return _batch.Batched(_cad().stack(rows), level)


def _func_key(func):
    """the cache key of func: a Python function by its code and the objects it closes
    over, so that a lambda written inside a loss (a new object at each call) finds the
    tapes recorded for the previous one (the cached spec keeps those objects alive, so
    their ids stay theirs)"""
    code = getattr(func, "__code__", None)
    if code is None or not hasattr(func, "__closure__"):
        return func
    try:
        cells = tuple(id(c.cell_contents) for c in (func.__closure__ or ()))
    except ValueError:   # an empty cell
        return func
    defaults = tuple(id(d) for d in (func.__defaults__ or ()))
    kw = tuple(sorted((k, id(v)) for k, v in (func.__kwdefaults__ or {}).items()))
    return ("code", code, cells, defaults, kw, id(func.__globals__))


def _static_key(s):
    if isinstance(s, np.ndarray):
        return ("nd", s.dtype.str, s.shape, s.tobytes())
    if isinstance(s, C.Tensor):
        a = s.numpy()
        return ("t", a.dtype.str, a.shape, a.tobytes())
    return s


def _check(spec, y0, tn, p, grad_on=True):
    """func once, eagerly, on (y0, t[0], args): its shape, no closed-over tensor that
    needs a gradient, and the recorded tapes still give its value (else record again)"""
    y = y0.detach()
    if y.dtype != np.float64:
        y = y.astype(np.float64)
    pd = p.detach() if p is not None else None
    with C.enable_grad():
        out = spec.call(y, C.as_tensor(float(tn[0])), spec.args(pd))
    if grad_on and isinstance(out, C.Tensor) and out.requires_grad:
        raise ValueError("odeint: func depends on a tensor that requires grad and is not passed in "
                         "args (a closure); pass it through args so that odeint can differentiate "
                         "it: odeint(func, y0, t, param) with func(y, t, param)")
    want = np.asarray(_np(out.detach()), dtype=np.float64).reshape(-1)
    if not spec.F.eager and spec.F.tape is not None:
        got = _np(spec.F(C.reshape(y, (spec.n,)), float(tn[0]), *((pd,) if pd is not None else ()))[0])
        # (a tolerance: eager and replayed kernels may round differently, as a
        # forward-mode sweep's fused rows do)
        if not np.allclose(got, want, rtol=1e-11, atol=1e-13 * (1.0 + np.abs(want).max(initial=0.0)),
                           equal_nan=True):
            spec.reset()
