"""Record once, replay without Python: the static view of AD (AD: f -> f').

NOTE [ Recording ]
``cad.record(f, *example_inputs)`` runs f once in record mode: its inputs are slots
of a fresh tape, and every op on a value that depends on them is recorded, whether
or not it requires grad (inside ``no_grad``, after ``detach``, on integers or
booleans).  Values f reads into Python (``bool()``, ``float()``, ``.item()``,
``.numpy()``, a numpy function, an integer index) cannot be replayed; each becomes
a *guard*: the replay recomputes that value and raises ``ReplayError`` when it
differs from the recorded one (or records again, with ``retrace=True``).  A
comparison that decides an ``if`` is such a value.  Tensors f closes over are
constants of the tape (captured when recorded).

The replay (``Replay`` in the engine) keeps every value in a contiguous slot of an
arena; one call runs the forward records, and for gradients the reverse sweep, in
C with the GIL released.  Several threads may replay one tape at once.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Sequence, Tuple, Union, overload

import numpy as np

from ._core import _engine as C
from .ops import primitives
from .ops._registry import NAMES as _NAMES
from .ops._rules import Ctx
from . import names as _N
from . import tree as _T


_EYES = {}   # the basis cotangents of tape.jacobian's rows, per output size


def _jac_rows():
    from . import transforms
    return transforms._JAC_ROWS


def _stack(rows):
    from .ops import REGISTRY
    return REGISTRY["stack"].api(rows, axis=0)


class ReplayError(RuntimeError, C.CadError):
    """A replay met a value that decided Python control flow differently."""


class Guard:
    __slots__ = ("handle", "value", "why", "index")

    def __init__(self, handle, value, why, index):
        self.handle, self.value, self.why, self.index = handle, value, why, index

    def check(self, now, k=None):
        a = np.asarray(now)
        if a.shape != self.value.shape or not np.array_equal(a, self.value, equal_nan=True):
            raise ReplayError(
                f"replay: the recorded function read a value into Python ({self.why}, guard "
                f"{self.index}); it was {_short(self.value)} when recorded and is {_short(a)} now, "
                "so the recorded ops may not be the ones f runs for these inputs.  Record again "
                "(cad.record(..., retrace=True) does it automatically).")


def _short(a):
    a = np.asarray(a)
    return repr(a.item()) if a.size == 1 else f"an array of shape {a.shape}"


class _Recorder:
    """collects guards while f runs"""

    def __init__(self, tape):
        self.tape = tape
        self.guards = []

    def escape(self, t, why):
        tp, h = C.handle_of(t)
        if tp is not self.tape:
            return
        v = np.array(C.host(C.tape_value(tp, h)), copy=True)
        self.guards.append(Guard(h, v, why, len(self.guards)))


_RECORDERS = []   # the recorders of the recordings running (the escape hook's owners)


def guard(t, why):
    """t's value is read into Python by an op's body without converting t (C.host):
    a guard while recording, as a conversion would be (NOTE [ Recording ])"""
    if _RECORDERS and isinstance(t, C.Tensor):
        for rec in tuple(_RECORDERS):   # (each keeps the guards of its own tape)
            rec.escape(t, why)


def _flatten(out):
    """the output's tensors and its kind: None (one tensor), tuple or list of
    tensors (what cad.save writes), or a TreeDef (any other pytree)"""
    if isinstance(out, (tuple, list)) and type(out) in (tuple, list) and \
            not any(isinstance(o, (tuple, list, dict)) or o is None for o in out):
        return list(out), type(out)
    if isinstance(out, (tuple, list, dict)):
        return T.tree_flatten(out)
    return [out], None


def _rebuild(items, kind):
    if isinstance(kind, T.TreeDef):
        return T.tree_unflatten(kind, list(items))
    return items[0] if kind is None else kind(items)


_CODES = {0: np.float64, 1: np.float32, 2: np.int64, 3: np.bool_}   # the engine's dtype codes


def _hessian_fn(f, idx):
    """xs -> the Hessian blocks of a scalar f in xs[i], xs[j] for i, j in idx, flat
    (row-major over idx x idx)"""
    from .transforms import hessian
    k = len(idx)

    def hf(*xs):
        H = hessian(f, argnums=idx)(*xs)
        return tuple(H[a][b] for a in range(k) for b in range(k))
    return hf


def _jacobian_fn(f, k):
    """xs -> d f(xs)[first output] / d xs[k] (jacrev)"""
    from .transforms import jacrev

    def first(*xs):
        return _flatten(f(*xs))[0][0]

    def jf(*xs):
        return jacrev(first, argnums=k)(*xs)
    return jf


def _hvp_fn(f):
    """(x, v) -> H(x) v of a scalar f (forward over reverse)"""
    from .transforms import grad, jvp

    def hf(x, v):
        return jvp(grad(f), (x,), (v,))[1]
    return hf


def _jvp_fn(f, n):
    """(*primals, *tangents) -> cad.jvp(f, primals, tangents)"""
    from .transforms import jvp

    def jf(*a):
        return jvp(f, tuple(a[:n]), tuple(a[n:]))
    return jf


class StaticTape:
    """What ``cad.record`` returns: f as a tape of ops that replays on new inputs of
    the same shapes and dtypes with no Python per op."""
    # the dim names of the example inputs and of the outputs (None: none named);
    # a replay checks its inputs' names against them and names its results
    _in_names = None
    _out_names = None

    def __init__(self, f: Callable[..., Any], example_inputs: Sequence[Any], retrace: bool = False) -> None:
        self._f = f
        self._retrace = retrace
        self._grad_tape = None
        self._hessian_tapes = None
        self._build(example_inputs)

    @classmethod
    def _from_parts(cls, tape, nodes, outs, guards, kind, diff):
        """a tape rebuilt from parts (cad.load); its function is an interpreter of
        the records, so hessian and hvp still work"""
        self = cls.__new__(cls)
        self._retrace = False
        self._grad_tape = None
        self._hessian_tapes = None
        self._kind = kind
        self._diff = diff
        self._replay = C.replay_compile(tape, nodes, outs, guards)
        self._nodes = nodes
        self._outs = outs
        self._tape = tape
        self._f = _records_as_function(self)
        self._loaded = True
        return self

    # ---- recording
    def _build(self, xs):
        xs = tuple(x if isinstance(x, C.Tensor) else C.as_tensor(x) for x in xs)
        tape = C.Tape()
        rec = _Recorder(tape)
        nodes = [C.record_input(tape, _value(x), x.dtype.kind == "f") for x in xs]
        in_names = [_N.raw(x) for x in xs] if _NAMES[0] else [None]
        if any(n is not None for n in in_names):   # f sees the names (NOTE [ Named dimensions ])
            for nd, n in zip(nodes, in_names):
                C._put_names(nd, n)
        prev_mode = C._set_record_mode(1)
        C._set_escape_hook(rec.escape)
        _RECORDERS.append(rec)
        try:
            with C.enable_grad():
                out = self._f(*nodes)
        finally:
            _RECORDERS.remove(rec)
            C._set_record_mode(prev_mode)
            C._set_escape_hook(None)
        outs, self._kind = _flatten(out)
        outs = [o if isinstance(o, C.Tensor) else C.as_tensor(o) for o in outs]
        self._diff = tuple(x.dtype.kind == "f" for x in xs)
        self._replay = C.replay_compile(tape, nodes, outs, rec.guards)
        if self._replay.dev:
            from . import fuse
            fuse.attach(self._replay, tape, outs, rec.guards)
        self._nodes = nodes
        self._outs = outs
        self._tape = tape
        out_names = [_N.raw(o) for o in outs] if _NAMES[0] else [None]
        if any(n is not None for n in in_names) or any(n is not None for n in out_names):
            self._set_names(in_names, out_names)
        else:
            self._in_names = self._out_names = None
            if type(self) is _NamedTape:
                self.__class__ = StaticTape

    def _set_names(self, in_names, out_names):
        """a tape recorded with named values: its calls check and give names (the
        subclass's methods; an unnamed tape's calls pay nothing for names)"""
        self._in_names = in_names
        self._out_names = out_names
        if type(self) is StaticTape:
            self.__class__ = _NamedTape

    def _run(self, xs, mask, who, fused=True):
        """fused=False: every record's value is computed (the Python sweeps of
        jacobian, hvp and hessian read them; NOTE [ Fused replay ])"""
        try:
            return C.replay_run(self._replay, tuple(xs), mask, None, who, fused)
        except ReplayError:
            if not self._retrace:
                raise
            self._build(xs)
            self._grad_tape = None
            self._hessian_tapes = None
            return C.replay_run(self._replay, tuple(xs), mask, None, who, fused)

    def _mask(self, argnums, nx, who):
        if argnums is None:
            return self._diff
        nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)
        mask = [False] * nx
        for n in nums:
            if not -nx <= n < nx:
                raise ValueError(f"{who}: argnums {n} out of range for {nx} inputs")
            if not self._diff[n]:
                raise C.DTypeError(f"{who}: input {n} is not a float input; it cannot get a gradient")
            mask[n % nx] = True
        return tuple(mask)

    def __reduce__(self):
        """pickles as cad.save's bytes (NOTE [ Pickling ] in cad/io.py): the unpickled
        tape is what cad.load gives, an interpreter of the records"""
        from .io import _unpickle_tape, dumps
        return _unpickle_tape, (dumps(self),)

    # ---- replays
    def __call__(self, *xs: Any) -> Any:
        """f(*xs) by replaying the recorded ops.  Inside cad.vmap (batched inputs) a
        tape of vmap(f) for that batch size is recorded once and replayed."""
        if any(type(x) is _Batched for x in xs):
            return self._vmapped(xs)
        if (C.is_grad_enabled() or C.is_recording()) and any(
                isinstance(x, C.Tensor) and x.requires_grad for x in xs):
            # a transform (or a tensor that requires grad) tracks an input: the replay
            # would give constants, so f runs as ops (differentiable); tape.grad and
            # tape.value_and_grad are the replayed gradients
            self._check_inputs(xs, "tape")
            return self._f(*xs)
        outs, _ = self._run(xs, None, "tape")
        return _rebuild(outs, self._kind)

    def _check_inputs(self, xs, who, lead=0):
        """the shapes and dtypes the tape was recorded with (after `lead` batch dims)"""
        _, shapes, dtypes = C.replay_inputs(self._replay)
        if len(xs) != len(shapes):
            raise TypeError(f"{who}: {len(xs)} inputs for a tape recorded with {len(shapes)}")
        for k, (x, sh, dt) in enumerate(zip(xs, shapes, dtypes)):
            xs_ = tuple(np.shape(x) if not hasattr(x, "shape") else x.shape)[lead:]
            if tuple(xs_) != tuple(sh):
                raise C.ShapeError(f"{who}: input {k} has shape {tuple(xs_)}{' per example' if lead else ''}; "
                                   f"the tape was recorded with {tuple(sh)} (record again for "
                                   "new shapes)")
            xdt = getattr(x, "dtype", None)
            dt = _CODES.get(dt, dt) if isinstance(dt, int) else dt
            if xdt is not None and np.dtype(xdt) != np.dtype(dt):
                raise C.DTypeError(f"{who}: input {k} has dtype {np.dtype(xdt)}; the tape was "
                                   f"recorded with {np.dtype(dt)}")

    def _vmapped(self, xs):
        """the tape called on values batched by cad.vmap: every input lifted to the
        innermost batch, a tape of vmap(f) recorded once per batch size, the
        outputs batched again (nested vmaps peel one level per call)"""
        from .ops import _batch
        from .vmap import vmap
        level = _batch._find(xs, {})
        vals = [_batch.lift(x, level) for x in xs]
        self._check_inputs(vals, "tape (inside vmap)", lead=1)
        if getattr(self, "_loaded", False):
            # a loaded tape's function interprets its records, whose eval rules take
            # plain tensors: one replay per example, stacked
            outs = [_flatten(self(*[v[b] for v in vals]))[0] for b in range(level.size)]
            from .ops import REGISTRY
            stack = REGISTRY["stack"].api
            return _rebuild([_Batched(stack([o[k] for o in outs]), level)
                             for k in range(len(outs[0]))], self._kind)
        key = level.size
        cache = self.__dict__.setdefault("_btapes", {})
        bt = cache.get(key)
        if bt is None:
            ex = [v if isinstance(v, C.Tensor) else C.const_on(np.zeros(v.shape, dtype=v.dtype), 0)
                  for v in vals]
            bt = cache[key] = StaticTape(vmap(self._f), ex, self._retrace)
        out = bt(*vals)
        return _rebuild([_Batched(o, level) for o in _flatten(out)[0]], self._kind)

    def value_and_grad(self, *xs: Any, argnums: Union[int, Sequence[int], None] = None) -> Tuple[Any, Any]:
        """(f(*xs), gradients): one replay of the forward records and one reverse
        sweep.  argnums picks the inputs that get gradients (default: every float
        input); the result is a tuple with one gradient per picked input."""
        mask = self._mask(argnums, len(xs), "tape.value_and_grad")
        outs, grads = self._run(xs, mask, "tape.value_and_grad")
        g = tuple(gr for gr, m in zip(grads, mask) if m)
        return _rebuild(outs, self._kind), (g[0] if isinstance(argnums, int) else g)

    def grad(self, *xs: Any, argnums: Union[int, Sequence[int], None] = None) -> Any:
        """The gradients of the (scalar) output at xs, one per picked input (a
        tuple; a single tensor when argnums is an int)."""
        if argnums is None and not self._retrace:   # the common case, with no wrapper
            return C.replay_grads(self._replay, xs, self._diff, "tape.grad")
        mask = self._diff if argnums is None else self._mask(argnums, len(xs), "tape.grad")
        grads = self._run(xs, mask, "tape.grad")[1]
        if isinstance(argnums, int):
            return grads[argnums % len(xs)]
        return tuple(g for g, m in zip(grads, mask) if m)

    def jacobian(self, *xs: Any, argnum: int = 0) -> C.Tensor:
        """d out / d xs[argnum] (out.shape + x.shape): a replay, then one reverse
        sweep over the whole output basis."""
        m = self._out_size(xs)
        if 1 < m <= _jac_rows():
            return self._jacobian_rows(xs, argnum, m)
        if m > 1:   # NOTE [ Recorded Hessians ]: the Jacobian recorded once, replayed
            self._mask(argnum, len(xs), "tape.jacobian")
            k = argnum % len(xs)
            jt = self._derived(("jac", k), lambda: _jacobian_fn(self._f, k), xs)
            return jt._run(tuple(xs), None, "tape.jacobian")[0][0].detach()
        return self._jacobian_sweep(xs, argnum)

    def _jacobian_sweep(self, xs, argnum):
        """the Jacobian by one replay and one reverse sweep of the basis through the
        rules in Python (a one-element output; tests compare)"""
        from .transforms import reverse_sweep
        outs, _ = self._run(xs, None, "tape.jacobian", fused=False)
        y = outs[0]
        tp = self._tape
        h_out = self._replay_out(0)
        x_h = C.handle_of(self._nodes[argnum])[1]
        if h_out < 0:
            return self._on_dev(C.as_tensor(np.zeros(y.shape + xs[argnum].shape)))
        n = y.size
        seed = self._on_dev(C.from_numpy(np.eye(n, dtype=y.dtype).reshape((n,) + y.shape), None, False, False))
        with C.no_grad():
            got = reverse_sweep(tp, {h_out: seed}, 0, 1, [x_h])[x_h]
        xshape = tuple(self._nodes[argnum].shape)
        if got is None:
            return self._on_dev(C.as_tensor(np.zeros(y.shape + xshape)))
        return C.reshape(got, y.shape + xshape).detach()

    def _out_size(self, xs):
        """the first output's size as recorded (-1 when unknown)"""
        o = self._outs[0] if self._outs else None
        return o.size if isinstance(o, C.Tensor) else -1

    def _jacobian_rows(self, xs, argnum, m):
        """a small output's Jacobian (at most transforms._JAC_ROWS elements): one replay
        with a C sweep per output element, seeded with that basis cotangent, instead
        of a replay and one batched sweep through the rules in Python"""
        mask = self._mask(argnum, len(xs), "tape.jacobian")
        k = argnum % len(xs)
        rows, y = [], None
        E = _EYES.get(m)
        if E is None:
            E = _EYES[m] = np.eye(m)
        xs = tuple(xs)
        for i in range(m):
            try:
                outs, grads = C.replay_run(self._replay, xs, mask, E[i], "tape.jacobian")
            except ReplayError:
                if not self._retrace:
                    raise
                self._build(xs)
                self._grad_tape = None
                self._hessian_tapes = None
                return self.jacobian(*xs, argnum=argnum)
            y = outs[0]
            rows.append(grads[k])
        shape = tuple(y.shape) + tuple(self._nodes[k].shape)
        if self._replay.dev:
            return C.reshape(_stack(rows), shape).detach()
        return C.from_numpy(np.stack([np.asarray(r) for r in rows]).reshape(shape), None, False, False)

    def _on_dev(self, t):
        """t on the tape's device (a tape recorded on CUDA values works there)"""
        return t.to("cuda") if self._replay.dev and not t.is_cuda else t

    def _replay_out(self, k):
        o = self._outs[k]
        if isinstance(o, C.Tensor) and not o.is_leaf and C.handle_of(o)[0] is self._tape:
            return C.handle_of(o)[1]
        return -1

    def _grads_tape(self, xs):
        """the gradient of f, itself recorded once (f': the static derivative)"""
        if self._grad_tape is None:
            from .transforms import grad
            nums = tuple(i for i, d in enumerate(self._diff) if d)   # the float inputs
            self._grad_tape = StaticTape(grad(self._f, argnums=nums), xs, self._retrace)
        return self._grad_tape

    def _grad_out(self, argnum):
        nums = [i for i, d in enumerate(self._diff) if d]
        if argnum not in nums:
            raise C.DTypeError(f"tape: input {argnum} is not a float input")
        return nums.index(argnum)

    # NOTE [ Recorded Hessians ]
    # tape.hessian records the Hessian itself once per set of inputs (cad.hessian of
    # f, forward over reverse, recorded as any f is: the rules' ops are ops of the new
    # tape) and replays that tape: every later call runs in C with no Python per record
    # (W7 at n = 128: 540 us through the rules' forward sweep, ~150-210 replayed).  The
    # rules decide their form from shapes and from C.is_recording() (never from values
    # while recording), so the replay is the Hessian at any input; a guard of f's own
    # (a branch on a value) is a guard of this tape too, retraced as f's is.
    _hessian_tapes: Optional[dict] = None

    def _derived(self, key, make, xs):
        """the tape of a transform of f (make() gives the function), recorded once at
        xs on the first call and kept under key"""
        if self._hessian_tapes is None:
            self._hessian_tapes = {}
        t = self._hessian_tapes.get(key)
        if t is None:
            t = self._hessian_tapes[key] = StaticTape(make(), xs, self._retrace)
        return t

    def jvp(self, primals: Sequence[Any], tangents: Sequence[Any]) -> Tuple[Any, Any]:
        """(f(*primals), the directional derivative along tangents), as cad.jvp(f,
        primals, tangents): forward mode recorded once as a tape of (primals,
        tangents) and replayed (NOTE [ Recorded Hessians ])"""
        primals, tangents = tuple(primals), tuple(tangents)
        n = len(self._nodes)
        if len(primals) != n or len(tangents) != n:
            raise TypeError(f"tape.jvp: {len(primals)} primals and {len(tangents)} tangents for a tape "
                            f"recorded with {n} inputs")
        xs = tuple(x if isinstance(x, C.Tensor) else C.as_tensor(x) for x in primals)
        ts = tuple(self._on_dev(C.cast(C.as_tensor(t), nd.dtype)) for t, nd in zip(tangents, self._nodes))
        for k, (x, t) in enumerate(zip(xs, ts)):
            if tuple(t.shape) != tuple(x.shape):
                raise C.ShapeError(f"tape.jvp: tangent {k} has shape {tuple(t.shape)}, its primal "
                                   f"{tuple(x.shape)}")
        jt = self._derived("jvp", lambda: _jvp_fn(self._f, n), xs + ts)
        out, tan = _rebuild(jt._run(xs + ts, None, "tape.jvp")[0], jt._kind)
        return out, tan

    def hvp(self, x: Any, v: Any) -> C.Tensor:
        """Hessian-vector product of a scalar f of one input: forward mode over the
        gradient, recorded once as a tape of (x, v) and replayed (NOTE [ Recorded
        Hessians ])"""
        vt = self._on_dev(C.cast(C.as_tensor(v), self._nodes[0].dtype))
        xt = x if isinstance(x, C.Tensor) else C.as_tensor(x)
        self._grads_tape((x,))   # (f returns a scalar: grad's own error otherwise)
        ht = self._derived("hvp", lambda: _hvp_fn(self._f), (xt, vt))
        return ht._run((xt, vt), None, "tape.hvp")[0][0].detach()

    def _hvp_sweep(self, x, v):
        """the same by a replay of the gradient tape and the forward sweep (tests compare)"""
        from .transforms import forward_sweep
        gt = self._grads_tape((x,))
        gt._run((x,), None, "tape.hvp", fused=False)
        x_h = C.handle_of(gt._nodes[0])[1]
        v = self._on_dev(C.cast(C.as_tensor(v), gt._nodes[0].dtype))
        outs_h = [gt._replay_out(k) for k in range(len(gt._outs))]
        with C.no_grad():
            got = forward_sweep(gt._tape, {x_h: v}, 0, 0, [h for h in outs_h if h >= 0], fused=True)
        r = got.get(outs_h[0]) if outs_h[0] >= 0 else None
        if r is None:
            return self._on_dev(C.as_tensor(np.zeros(x.shape if hasattr(x, "shape") else ())))
        return r.detach()

    def hessian(self, *xs: Any, argnum: int = 0) -> C.Tensor:
        """The Hessian of a scalar f with respect to xs[argnum]: the recorded gradient
        tape replayed, then all tangent directions pushed through it at once."""
        return self._hessian_blocks(xs, [(argnum, argnum)], "tape.hessian")[(argnum, argnum)]

    def _hessian_blocks(self, xs, pairs, who):
        """{(i, j): d^2 f / d xs[i] d xs[j] (xs[i].shape + xs[j].shape)}: NOTE [ Recorded
        Hessians ]"""
        idx = tuple(sorted({i for p in pairs for i in p}))
        for i in idx:
            self._grad_out(i)   # (a float input)
        self._grads_tape(xs)    # (f returns a scalar: grad's own error otherwise)
        ht = self._derived(idx, lambda: _hessian_fn(self._f, idx), xs)
        outs = ht._run(tuple(xs), None, who)[0]
        k = len(idx)
        return {(i, j): outs[a * k + b].detach() for a, i in enumerate(idx) for b, j in enumerate(idx)
                if (i, j) in pairs}

    def _hessian_blocks_sweep(self, xs, pairs, who):
        """the same by one replay of the gradient tape and one forward sweep per column j
        (reading every row i) through the rules in Python (tests compare the two)"""
        from .transforms import forward_sweep
        gt = self._grads_tape(xs)
        gt._run(xs, None, who, fused=False)
        res = {}
        for j in dict.fromkeys(j for _, j in pairs):
            rows = [i for i, jj in pairs if jj == j]
            nj = gt._nodes[j]
            self._grad_out(j)
            outs = {i: gt._replay_out(self._grad_out(i)) for i in rows}
            live = [h for h in outs.values() if h >= 0]
            got = {}
            if live:
                m = nj.size
                with C.no_grad():
                    if m == 1:   # one direction, no batch dim: scalar records take the C sweep
                        one = self._on_dev(C.from_numpy(np.ones(nj.shape, dtype=nj.dtype), None, False, False))
                        got = forward_sweep(gt._tape, {C.handle_of(nj)[1]: one}, 0, 0, live, fused=True)
                        got = {h: (None if v is None else C.reshape(v, (1,) + tuple(v.shape)))
                               for h, v in got.items()}
                    else:
                        basis = self._on_dev(C.from_numpy(np.eye(m, dtype=nj.dtype).reshape((m,) + nj.shape),
                                                          None, False, False))
                        got = forward_sweep(gt._tape, {C.handle_of(nj)[1]: basis}, 0, 1, live, fused=True)
            for i in rows:
                ni = gt._nodes[i]
                r = got.get(outs[i]) if outs[i] >= 0 else None
                if r is None:
                    res[(i, j)] = self._on_dev(C.as_tensor(np.zeros(ni.shape + nj.shape)))
                else:
                    res[(i, j)] = C.reshape(C.transpose(C.reshape(r, (nj.size, ni.size)), (1, 0)),
                                            ni.shape + nj.shape).detach()
        return res

    # ---- inspection
    def __len__(self) -> int:
        return len(self._replay)

    @property
    def guards(self) -> list[Guard]:
        return list(self._replay.guards)

    def __repr__(self):
        return (f"<cad.StaticTape {len(self)} ops, {len(self._nodes)} inputs, "
                f"{len(self._replay.guards)} guards>")

    def __str__(self):
        names = [op.name for op in primitives()]
        ins = {C.handle_of(n)[1]: k for k, n in enumerate(self._nodes)}
        recs = self._tape.records(0)
        made = {out for _, out, _, _ in recs}
        lines = [repr(self)]

        def ref(h):
            if h in ins:
                return f"in{ins[h]}"
            if h in made:
                return f"%{h}"
            if h < 0:
                return "const"
            v = C.host(C.tape_value(self._tape, h))
            return f"const({v.item()!r})" if v.size == 1 else f"const{list(v.shape)}"
        for op, out, args, aux in recs:
            shape, dt, _ = self._tape.info(out)
            dts = ("f64", "f32", "i64", "bool")[dt]
            lines.append(f"  %{out} = {names[op]}({', '.join(ref(a) for a in args)})"
                         f"{' ' + str(list(aux)) if aux else ''}  : {dts}{list(shape)}")
        for g in self._replay.guards:
            lines.append(f"  guard {g.index}: {ref(g.handle)} == {_short(g.value)}  ({g.why})")
        return "\n".join(lines)


from .ops._batch import Batched as _Batched  # noqa: E402
from . import tree as T  # noqa: E402


def _records_as_function(st):
    """f(*xs) that runs st's records again through each primitive's eval rule (NOTE
    [ A primitive's rules ]; eagerly, recordable): a tape as a Python function again"""
    from .ops import REGISTRY
    prims = primitives()
    api = {op.code: op for op in prims}
    tp = st._tape
    in_h = [C.handle_of(n)[1] for n in st._nodes]
    out_h = [st._replay_out(k) for k in range(len(st._outs))]

    def run(*xs):
        val = {h: C.as_tensor(x) for h, x in zip(in_h, xs)}

        def get(h):
            if h in val:
                return val[h]
            return C.tape_value(tp, h)
        for op, out, args, aux in tp.records(0):
            o = api[op]
            if o.eval_rule is None:
                raise RuntimeError(f"cad: op {o.name} has no eval rule (op table)")
            val[out] = o.eval_rule(Ctx(tp, args, out, aux, 0), [get(h) for h in args])
        outs = [get(h) if h >= 0 else c for h, c in zip(out_h, st._outs)]
        return _rebuild(outs, st._kind)
    _ = REGISTRY
    return run


def _value(x):
    if x.is_cuda:   # the tape replays on the GPU (NOTE [ CUDA replay ])
        return x
    return x.item() if (x.ndim == 0 and x.dtype == np.float64) else np.asarray(x)


class TreeTape:
    """A tape recorded on pytree arguments (a dict of parameters...): the leaves are
    the tape's inputs; calls take and give the same structures."""

    def __init__(self, f: Callable[..., Any], example_inputs: Sequence[Any], retrace: bool) -> None:
        leaves, self._def = T.tree_flatten(tuple(example_inputs))
        self._nargs = len(example_inputs)
        self._counts = [len(T.tree_leaves(a)) for a in example_inputs]
        d = self._def

        def flat(*xs):
            return f(*T.tree_unflatten(d, list(xs)))
        self.tape = StaticTape(flat, leaves, retrace)

    def _leaves(self, xs, who):
        leaves, d = T.tree_flatten(tuple(xs))
        if d != self._def:
            raise ValueError(f"{who}: arguments of structure {d!r}; the tape was recorded with "
                             f"{self._def!r}")
        return leaves

    def _nums(self, argnums):
        """leaf positions of whole arguments"""
        nums = range(self._nargs) if argnums is None else \
            ((argnums,) if isinstance(argnums, int) else tuple(argnums))
        starts = [sum(self._counts[:k]) for k in range(self._nargs)]
        groups = []
        for n in nums:
            if not -self._nargs <= n < self._nargs:
                raise ValueError(f"argnums {n} out of range for {self._nargs} arguments")
            n %= self._nargs
            groups.append((n, list(range(starts[n], starts[n] + self._counts[n]))))
        return groups

    def _regroup(self, groups, per_leaf, xs, argnums):
        res = []
        for n, idx in groups:
            sub = T.tree_structure(xs[n])
            res.append(T.tree_unflatten(sub, [per_leaf[i] for i in idx]))
        return res[0] if isinstance(argnums, int) else tuple(res)

    def __call__(self, *xs: Any) -> Any:
        return self.tape(*self._leaves(xs, "tape"))

    def grad(self, *xs: Any, argnums: Union[int, Sequence[int], None] = None) -> Any:
        """gradients per picked argument, each with that argument's structure"""
        leaves = self._leaves(xs, "tape.grad")
        groups = self._nums(argnums)
        flat = [i for _, idx in groups for i in idx]
        g = self.tape.grad(*leaves, argnums=tuple(flat))
        per = dict(zip(flat, g))
        return self._regroup(groups, per, xs, argnums)

    def value_and_grad(self, *xs: Any, argnums: Union[int, Sequence[int], None] = None) -> Tuple[Any, Any]:
        leaves = self._leaves(xs, "tape.value_and_grad")
        groups = self._nums(argnums)
        flat = [i for _, idx in groups for i in idx]
        v, g = self.tape.value_and_grad(*leaves, argnums=tuple(flat))
        return v, self._regroup(groups, dict(zip(flat, g)), xs, argnums)

    def jacobian(self, *xs: Any, argnum: int = 0) -> Any:
        """d out / d xs[argnum] with the argument's structure: one block per leaf
        (out.shape + leaf.shape), as jax.jacrev of a function of a pytree"""
        if not isinstance(argnum, int):
            raise TypeError("tape.jacobian: argnum must be an int")
        leaves = self._leaves(xs, "tape.jacobian")
        groups = self._nums(argnum)
        per = {i: self.tape.jacobian(*leaves, argnum=i) for i in groups[0][1]}
        return self._regroup(groups, per, xs, argnum)

    def hessian(self, *xs: Any, argnum: int = 0) -> Any:
        """the Hessian of a scalar f in xs[argnum], nested as jax.hessian does for a
        pytree argument: the argument's structure, each entry the argument's structure
        again, holding the block leaf_i.shape + leaf_j.shape"""
        if not isinstance(argnum, int):
            raise TypeError("tape.hessian: argnum must be an int")
        leaves = self._leaves(xs, "tape.hessian")
        groups = self._nums(argnum)
        idx = groups[0][1]
        blocks = self.tape._hessian_blocks(leaves, [(i, j) for i in idx for j in idx], "tape.hessian")
        sub = T.tree_structure(xs[groups[0][0]])
        return T.tree_unflatten(sub, [T.tree_unflatten(sub, [blocks[(i, j)] for j in idx]) for i in idx])

    def __len__(self) -> int:
        return len(self.tape)

    def __repr__(self):
        return f"<cad.TreeTape {self._def!r}: {self.tape!r}>"


# for type checkers: tensor (array, number) inputs give a StaticTape (with hvp, guards);
# pytree inputs a TreeTape
@overload
def record(f: Callable[..., Any], *example_inputs: Union[C.Tensor, np.ndarray, float],
           retrace: bool = False) -> StaticTape: ...
@overload
def record(f: Callable[..., Any], *example_inputs: Any, retrace: bool = False) -> Union[StaticTape, TreeTape]: ...
def record(f: Callable[..., Any], *example_inputs: Any, retrace: bool = False) -> Union[StaticTape, TreeTape]:
    """Record f once on example inputs; the result replays f (and its gradients,
    Jacobian, Hessian) on new inputs of the same shapes and dtypes with no Python
    per op.  See NOTE [ Recording ] for what is recorded and what becomes a guard.
    Inputs and outputs may be pytrees (a dict of parameters): then the tape takes
    and returns the same structures (call, grad, value_and_grad, jacobian, hessian)."""
    if any(isinstance(a, (tuple, list, dict)) for a in example_inputs):
        return TreeTape(f, example_inputs, retrace)
    return StaticTape(f, example_inputs, retrace)


# ---------------------------------------------------------------- named dimensions

def _names_in_out(method):
    """a replay of a tape recorded with named values: the inputs' names checked
    against the recorded ones (None matches anything), the results named"""
    kind = method.__name__

    def run(self, *xs, **kw):
        if self._in_names is None:
            return method(self, *xs, **kw)
        _check_names(self, xs, "tape" if kind == "__call__" else f"tape.{kind}")
        r = method(self, *xs, **kw)
        ins = self._in_names
        if kind == "__call__":
            leaves, tdef = _T.tree_flatten(r)
            return _T.tree_unflatten(tdef, [_put_if(o, n, xs) for o, n in zip(leaves, self._out_names)])
        if kind in ("grad", "value_and_grad"):
            argnums = kw.get("argnums")
            if argnums is None:
                idx = [i for i, m in enumerate(self._diff) if m]
            else:
                idx = [argnums % len(xs)] if isinstance(argnums, int) else sorted({a % len(xs) for a in argnums})
            g = r[1] if kind == "value_and_grad" else r
            if isinstance(argnums, int):
                g = _put_if(g, ins[idx[0]], xs)
            else:
                g = tuple(_put_if(e, ins[i], xs) for e, i in zip(g, idx))
            if kind == "grad":
                return g
            leaves, tdef = _T.tree_flatten(r[0])
            return _T.tree_unflatten(tdef, [_put_if(o, n, xs) for o, n in zip(leaves, self._out_names)]), g
        a = kw.get("argnum", 0)
        if kind == "jacobian":
            return _put_if(r, _N.joined(self._out_names[0], ins[a]), xs)
        if kind == "hessian":
            return _put_if(r, _N.joined(ins[a], ins[a]), xs)
        return _put_if(r, ins[0], xs)   # hvp
    run.__name__ = method.__name__
    run.__doc__ = method.__doc__
    run.__wrapped__ = method
    return run


def _put_if(t, names, xs):
    if names is None or type(t) is not C.Tensor or t.ndim != len(names):
        return t
    return _N.put(t, names, xs)


def _check_names(st, xs, who):
    for k, (x, rec) in enumerate(zip(xs, st._in_names)):
        got = _N.raw(x) if isinstance(x, C.Tensor) else None
        if got is None or rec is None:
            continue
        for i, (a, b) in enumerate(zip(got, rec)):
            if a is not None and b is not None and a != b:
                raise _N.NamesError(f"{who}: input {k} has names {got}; the tape was recorded with "
                                    f"{rec}: dim {a!r} where the recording had {b!r} (position {i})")


class _NamedTape(StaticTape):
    """a StaticTape recorded with named values (NOTE [ Named dimensions ])"""


for _m in ("__call__", "grad", "value_and_grad", "jacobian", "hessian", "hvp"):
    setattr(_NamedTape, _m, _names_in_out(getattr(StaticTape, _m)))
