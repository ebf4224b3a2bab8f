"""Fuzzing cad with hypothesis (issue 10).

    python tools/fuzz.py --minutes 5        # both fuzzers, in child processes
    python tools/fuzz.py --seconds 5 --only load

Two targets:
  load      mutated valid tape files (JSON header edits: handles, op names, shapes,
            dtypes, aux values, records dropped or duplicated; raw byte flips,
            truncation), written as version 1 files or as version 2 files with a
            recomputed checksum (so the validation, not the checksum, must refuse
            them), through cad.load, then call, grad and str of what loads.  A load
            may raise cad.FormatError; what loads must run or raise one of cad's
            errors, and its replay (C) must agree with its interpreter (cad ops).
  programs  random small programs of ops (elementwise, broadcasting, reductions with
            random axes, reshapes, transposes, matmul) on random shapes (empty
            included) in float64/float32: forward against numpy, the C sweep's
            gradient against the Python rules' (jacrev), jvp's C forward sweep against
            the rules', hvp against jvp(grad), jacrev's batched sweep of outputs over
            16 elements against the rules' loop, and a recorded tape's replay
            against the eager run.

Each target runs in a child process that writes every example to a file before
running it, so a crash (a signal) is reported with the input that caused it.  The
parent prints examples tried, failures and crashes per target, and exits non-zero on
any failure or crash.
"""
import argparse
import hashlib
import io
import json
import os
import struct
import subprocess
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

COUNTS = {}   # outcomes by kind, reported with the examples


def _count(k):
    COUNTS[k] = COUNTS.get(k, 0) + 1


ALLOWED = ("CadError", "TypeError", "ValueError", "IndexError", "OverflowError", "MemoryError")


# ---------------------------------------------------------------- base files

def _base_files():
    import numpy as np
    import cad
    tapes = []

    def add(f, *xs):
        t = cad.record(f, *xs)
        b = io.BytesIO()
        cad.save(t, b)
        tapes.append(b.getvalue())
    add(lambda a, b: (cad.sin(a) * b).sum(), cad.ones(3), cad.ones(3))
    W = cad.tensor(np.arange(12.).reshape(3, 4) / 10)
    add(lambda x: cad.tanh(W @ x).sum() + cad.max(x) + cad.logsumexp(x), cad.ones(4))
    add(lambda x, i: cad.cross_entropy(x.reshape(2, 3), i) + x[np.array([0, 2])].sum() + x[1:4].prod(),
        cad.ones(6), np.array([0, 2]))
    add(lambda x: cad.concatenate([x, x * 2.0], 0).astype(cad.float32).sum(), cad.ones((2, 2)))
    add(lambda x: cad.where(x > 0.5, x, 0.0).mean() + (x ** 2.0).sum(), 1.5)
    with open(os.path.join(ROOT, "tests", "data", "v1_tape.cad"), "rb") as f:
        tapes.append(f.read())
    return tapes


def _parts(raw):
    v, hl = struct.unpack("<IQ", raw[4:16])
    fixed = 48 if v == 2 else 16
    return json.loads(raw[fixed:fixed + hl]), raw[fixed + hl:]


def _build(h, data, version):
    hb = json.dumps(h).encode()
    if version == 1:
        return b"CAD\x00" + struct.pack("<IQ", 1, len(hb)) + hb + data
    return b"CAD\x00" + struct.pack("<IQ", 2, len(hb)) + hashlib.sha256(hb + data).digest() + hb + data


# ---------------------------------------------------------------- target: load

INTERESTING = [-(2 ** 63), -(2 ** 31), -5, -1, 0, 1, 2, 3, 4, 7, 31, 32, 33, 64, 80, 255, 2 ** 31, 2 ** 62,
               2 ** 63 - 1, 2 ** 63, 2 ** 64]


def _leaves(v, path=()):
    """(path, value) of every JSON leaf and container"""
    yield path, v
    if isinstance(v, dict):
        for k, e in v.items():
            yield from _leaves(e, path + (k,))
    elif isinstance(v, list):
        for k, e in enumerate(v):
            yield from _leaves(e, path + (k,))


def _set(root, path, value):
    o = root
    for k in path[:-1]:
        o = o[k]
    o[path[-1]] = value


def load_strategy():
    from hypothesis import strategies as st
    return st.tuples(st.integers(0, 10 ** 6), st.lists(st.tuples(st.integers(0, 11), st.integers(0, 2 ** 32)),
                                                        min_size=1, max_size=4),
                     st.sampled_from([1, 2]))


def make_load_input(bases, ex):
    """a mutated file from (base index, [(mutation, seed)], version)"""
    import copy
    import random
    bi, muts, version = ex
    raw = bases[bi % len(bases)]
    h, data = _parts(raw)
    h = copy.deepcopy(h)
    data = bytearray(data)
    rawmut = []
    for kind, seed in muts:
        try:
            _mutate(h, data, kind, seed, rawmut)
        except (KeyError, TypeError, IndexError, AttributeError, ValueError):
            pass   # an earlier mutation removed or retyped what this one edits
    blob = bytearray(_build(h, bytes(data), version))
    for seed in rawmut:
        rng = random.Random(seed)
        c = rng.randrange(3)
        if c == 0:
            blob = blob[:rng.randrange(len(blob) + 1)]
        elif c == 1 and blob:
            blob[rng.randrange(len(blob))] ^= 1 << rng.randrange(8)
        else:
            i = rng.randrange(len(blob) + 1)
            blob[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 9)))
    return bytes(blob)


def _mutate(h, data, kind, seed, rawmut):
    import copy
    import random
    if True:
        rng = random.Random(seed)
        leaves = [(p, v) for p, v in _leaves(h) if p]
        p, v = rng.choice(leaves)
        tape = h.get("tape", {})
        if kind == 0:     # an integer leaf to an interesting value
            ints = [(p, v) for p, v in leaves if type(v) is int]
            if ints:
                p, v = rng.choice(ints)
                _set(h, p, rng.choice(INTERESTING + [v + 1, v - 1, v * 2]))
        elif kind == 1:   # any leaf to another type
            _set(h, p, rng.choice([None, "x", 1.5, [], {}, True, [1, 2], -1, "float64"]))
        elif kind == 2 and tape.get("ops"):   # two op names swapped
            o = tape["ops"]
            i, j = rng.randrange(len(o)), rng.randrange(len(o))
            o[i], o[j] = o[j], o[i]
        elif kind == 3 and tape.get("records"):   # a record dropped or duplicated
            r = tape["records"]
            i = rng.randrange(len(r))
            if rng.random() < 0.5:
                r.pop(i)
            else:
                r.insert(rng.randrange(len(r) + 1), copy.deepcopy(r[i]))
        elif kind == 4 and tape.get("bufs"):      # a shape edited
            b = rng.choice(tape["bufs"])
            sh = b["shape"]
            c = rng.randrange(4)
            if c == 0:
                sh.append(rng.choice([0, 1, 2, 5]))
            elif c == 1 and sh:
                sh.pop()
            elif sh:
                sh[rng.randrange(len(sh))] = rng.choice([0, 1, 2, 3, 4, 7, -1, 2 ** 40])
        elif kind == 5 and tape.get("bufs"):      # a dtype or flags edited
            b = rng.choice(tape["bufs"])
            if rng.random() < 0.5:
                b["dtype"] = rng.choice(["float64", "float32", "int64", "bool", "float16"])
            else:
                b["flags"] = rng.choice([0, 1, 2, 3, 32, 34, 35, 64, 4])
        elif kind == 6 and tape.get("records"):   # an aux or arg list edited
            r = rng.choice(tape["records"])
            lst = r[rng.choice([2, 3])] if isinstance(r, list) and len(r) == 4 else None
            if isinstance(lst, list):
                c = rng.randrange(3)
                if c == 0 or not lst:
                    lst.append(rng.choice(INTERESTING))
                elif c == 1:
                    lst.pop()
                else:
                    lst[rng.randrange(len(lst))] = rng.choice(INTERESTING)
        elif kind == 7 and data:                  # data bytes changed
            for _ in range(rng.randint(1, 4)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        elif kind == 8:                           # a key removed
            dicts = [(p, v) for p, v in leaves if isinstance(v, dict) and v]
            if dicts:
                p, v = rng.choice(dicts)
                v.pop(rng.choice(list(v)))
        else:                                     # raw damage after building
            rawmut.append(seed)


def run_load(blob):
    """one file: returns None, or a failure message"""
    import numpy as np
    import cad
    try:
        t = cad.load(io.BytesIO(blob))
    except cad.FormatError:
        _count("refused (FormatError)")
        return None
    except Exception as e:   # noqa: BLE001
        return f"cad.load raised {type(e).__name__} (not FormatError): {e}"
    if not isinstance(t, cad.StaticTape):
        return None
    try:
        str(t)
        shapes, dts = t._replay_inputs() if hasattr(t, "_replay_inputs") else _inputs_of(t)
        xs = [np.linspace(0.1, 0.9, int(np.prod(s))).reshape(s).astype(d) if d.kind == "f"
              else np.zeros(s, d) for s, d in zip(shapes, dts)]
        out = t(*xs)
        if any(dt.kind == "f" for dt in dts):
            t.grad(*xs)
    except Exception as e:   # noqa: BLE001
        if any(c.__name__ in ALLOWED for c in type(e).__mro__):
            _count(f"loaded, then {type(e).__name__}")
            return None
        return f"a loaded tape raised {type(e).__name__}: {e}\n{traceback.format_exc()}"
    try:   # the interpreter (cad ops, eagerly) must agree with the replay (C)
        with cad.no_grad():
            ref = t._f(*xs)
    except Exception:   # noqa: BLE001  (an eager op may refuse what the replay ran)
        _count("loaded and ran; interpreter refused")
        return None
    _count("loaded and ran; replay == interpreter")
    for a, b in zip(_flat(out), _flat(ref)):
        a, b = np.asarray(cad._C.host(a) if isinstance(a, cad.Tensor) else a), \
            np.asarray(cad._C.host(b) if isinstance(b, cad.Tensor) else b)
        if a.shape != b.shape or not np.allclose(a, b, rtol=1e-5, atol=1e-6, equal_nan=True):
            return f"replay and interpreter disagree: {a!r} vs {b!r}"
    return None


def _flat(o):
    return list(o) if isinstance(o, (tuple, list)) else [o]


def _inputs_of(t):
    import numpy as np
    from cad._core import _engine as C
    _, shapes, dts = C.replay_inputs(t._replay)
    return shapes, [np.dtype(("float64", "float32", "int64", "bool")[d]) for d in dts]


# ---------------------------------------------------------------- target: programs

UNARY = ["sin", "cos", "tanh", "exp", "neg", "abs", "square", "sigmoid", "relu", "log1p", "sqrt1"]
BINARY = ["add", "sub", "mul", "div1", "maximum", "minimum"]


def program_strategy():
    from hypothesis import strategies as st
    shape = st.lists(st.integers(0, 3), min_size=0, max_size=3).map(tuple)
    step = st.one_of(
        st.tuples(st.just("u"), st.sampled_from(UNARY)),
        st.tuples(st.just("b"), st.sampled_from(BINARY), st.integers(0, 1)),
        st.tuples(st.just("r"), st.sampled_from(["sum", "max", "min", "mean", "prod", "logsumexp", "softmax"]),
                  st.integers(-1, 3), st.booleans()),
        st.tuples(st.just("s"), st.sampled_from(["flat", "T", "unsq", "idx", "cumsum", "cat", "take"])),
        st.tuples(st.just("m"), st.integers(1, 3)))
    return st.tuples(shape, shape, st.sampled_from(["float64", "float32"]), st.lists(step, max_size=6),
                     st.integers(0, 2 ** 32 - 1))


def _np_ops():
    import numpy as np
    from scipy.special import logsumexp as lse

    def sm(a, axis):
        if a.size == 0:
            return a.copy()
        e = np.exp(a - np.max(a, axis=axis, keepdims=True))
        return e / e.sum(axis=axis, keepdims=True)
    return {
        "sin": np.sin, "cos": np.cos, "tanh": np.tanh, "exp": lambda a: np.exp(np.clip(a, -5, 5)),
        "neg": np.negative, "abs": np.abs, "square": np.square, "sigmoid": lambda a: 1 / (1 + np.exp(-a)),
        "relu": lambda a: np.maximum(a, 0), "log1p": lambda a: np.log(1 + a * a), "sqrt1": lambda a: np.sqrt(1 + a * a),
        "add": np.add, "sub": np.subtract, "mul": np.multiply, "div1": lambda a, b: a / (1.5 + b * b),
        "maximum": np.maximum, "minimum": np.minimum,
        "sum": np.sum, "max": np.max, "min": np.min, "mean": np.mean, "prod": np.prod,
        "logsumexp": lambda a, axis, keepdims: (lse(a, axis=axis, keepdims=keepdims) if a.size
                                                 else np.full(np.sum(a, axis=axis, keepdims=keepdims).shape, -np.inf)),
        "softmax": lambda a, axis, keepdims: sm(a, axis),
    }


def _cad_ops():
    import cad
    return {
        "sin": cad.sin, "cos": cad.cos, "tanh": cad.tanh, "exp": lambda a: cad.exp(cad.clip(a, -5, 5)),
        "neg": cad.neg, "abs": cad.abs, "square": cad.square, "sigmoid": cad.sigmoid, "relu": cad.relu,
        "log1p": lambda a: cad.log(1 + a * a), "sqrt1": lambda a: cad.sqrt(1 + a * a),
        "add": cad.add, "sub": cad.sub, "mul": cad.mul, "div1": lambda a, b: a / (1.5 + b * b),
        "maximum": cad.maximum, "minimum": cad.minimum,
        "sum": cad.sum, "max": cad.max, "min": cad.min, "mean": cad.mean, "prod": cad.prod,
        "logsumexp": lambda a, axis, keepdims: cad.logsumexp(a, axis, keepdims),
        "softmax": lambda a, axis, keepdims: cad.softmax(a, axis),
    }


def _program(ex, ops, mod):
    """the program of example ex over a module's ops (numpy or cad); returns f(x, y)"""
    import numpy as np
    _, _, _, steps, _ = ex

    def f(x, y):
        v = x
        for st in steps:
            if st[0] == "u":
                v = ops[st[1]](v)
            elif st[0] == "b":
                v = ops[st[1]](v, y) if st[2] else ops[st[1]](y, v)
            elif st[0] == "r":
                nd = len(v.shape)
                if nd == 0:
                    continue
                ax = st[2] % nd
                if st[1] in ("max", "min") and v.shape[ax] == 0:
                    continue
                v = ops[st[1]](v, axis=ax, keepdims=st[3]) if st[1] not in ("logsumexp", "softmax") \
                    else ops[st[1]](v, ax, st[3])
            elif st[0] == "s":
                if st[1] == "flat":
                    v = v.reshape(-1)
                elif st[1] == "T":
                    v = v.T
                elif st[1] == "unsq":
                    v = v.reshape((1,) + tuple(v.shape))
                elif st[1] == "idx" and len(v.shape) and v.shape[0]:
                    v = v[v.shape[0] - 1]
                elif st[1] == "cumsum" and len(v.shape):
                    v = mod.cumsum(v, axis=len(v.shape) - 1)
                elif st[1] == "cat" and len(v.shape):
                    v = mod.concatenate([v, v * 2.0], 0)
                elif st[1] == "take" and len(v.shape) and v.shape[0]:
                    v = v[np.array([v.shape[0] - 1, 0, 0])]   # (a gather: rows repeated)
            elif st[0] == "m" and len(v.shape) >= 1:
                k = v.shape[-1]
                w = mod.ones((k, st[1])) * 0.5 if mod.__name__ == "numpy" else mod.full((k, st[1]), 0.5,
                                                                                         dtype=v.dtype)
                v = v @ w
        return v
    return f


def _flag_off(mod, flag, fn):
    """fn() with mod.flag False (a C path off: the rules' path it stands for), True after"""
    setattr(mod, flag, False)
    try:
        return fn()
    finally:
        setattr(mod, flag, True)


def run_program(ex):
    import numpy as np
    import cad
    xs, ys, dt, steps, seed = ex
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2, 2, xs).astype(dt)
    y = rng.uniform(-2, 2, ys).astype(dt)
    try:
        want = _program(ex, _np_ops(), np)(x.astype(np.float64), y.astype(np.float64))
    except ValueError:   # shapes that do not broadcast: cad must refuse them too
        try:
            _program(ex, _cad_ops(), cad)(cad.tensor(x), cad.tensor(y))
        except (cad.ShapeError, ValueError):
            _count("shapes refused by both")
            return None
        return "numpy refused the program but cad ran it"
    f = _program(ex, _cad_ops(), cad)
    got = f(cad.tensor(x), cad.tensor(y))
    if got.dtype != cad.tensor(x).dtype and got.size:
        return f"dtype {got.dtype} from {dt} inputs"
    tol = dict(rtol=2e-4, atol=2e-4) if dt == "float32" else dict(rtol=1e-9, atol=1e-9)
    if np.shape(want) != got.shape or not np.allclose(got.numpy(), want, equal_nan=True, **tol):
        return f"forward: cad {got.numpy()!r} numpy {want!r}"
    # gradients: the C sweep against the Python rules
    loss = lambda a, b: cad.sum(f(a, b))   # noqa: E731
    g1 = cad.grad(loss, argnums=(0, 1))(cad.tensor(x), cad.tensor(y))
    j = cad.jacrev(loss, argnums=(0, 1))(cad.tensor(x), cad.tensor(y))
    for a, b in zip(g1, j):
        if a.shape != b.shape or not np.allclose(a.numpy(), b.numpy(), equal_nan=True, **tol):
            return f"gradient: C sweep {a.numpy()!r} Python rules {b.numpy()!r}"
    # tangents: the C forward sweep against the Python rules' (transforms._C_FORWARD
    # off), and hvp's plain path against jvp(grad)
    from cad import transforms as T
    tx = rng.uniform(-1, 1, xs).astype(dt)
    ty = rng.uniform(-1, 1, ys).astype(dt)
    prim, tans = (cad.tensor(x), cad.tensor(y)), (cad.tensor(tx), cad.tensor(ty))
    _, t1 = cad.jvp(f, prim, tans)
    _, t2 = _flag_off(T, "_C_FORWARD", lambda: cad.jvp(f, prim, tans))
    if t1.shape != t2.shape or not np.allclose(t1.numpy(), t2.numpy(), equal_nan=True, **tol):
        return f"jvp: C sweep {t1.numpy()!r} Python rules {t2.numpy()!r}"
    if got.size > 16:   # jacrev's batched sweep (NOTE [ Batched reverse sweep ]) against the rules' loop
        j1 = cad.jacrev(f, argnums=(0, 1))(*prim)
        j2 = _flag_off(T, "_C_REVERSE", lambda: cad.jacrev(f, argnums=(0, 1))(*prim))
        for a, b in zip(j1, j2):
            if a.shape != b.shape or not np.allclose(a.numpy(), b.numpy(), equal_nan=True, **tol):
                return f"jacrev: batched C sweep {a.numpy()!r} Python loop {b.numpy()!r}"
        _count("jacrev batched")
    fx = lambda a: loss(a, prim[1])   # noqa: E731
    h1 = cad.hvp(fx, prim[0], tans[0])
    h2 = T.jvp(T.grad(fx), (prim[0],), (tans[0],))[1]
    if h1.shape != h2.shape or not np.allclose(h1.numpy(), h2.numpy(), equal_nan=True, **tol):
        return f"hvp: plain {h1.numpy()!r} jvp(grad) {h2.numpy()!r}"
    # a recorded tape replays what the eager run computed
    t = cad.record(loss, cad.tensor(x), cad.tensor(y))
    v, gt = t.value_and_grad(cad.tensor(x), cad.tensor(y))
    if not np.allclose(float(v), float(loss(cad.tensor(x), cad.tensor(y))), equal_nan=True, **tol):
        return f"replay value {float(v)} vs eager"
    for a, b in zip(gt, g1):
        if not np.allclose(a.numpy(), b.numpy(), equal_nan=True, **tol):
            return f"replay gradient {a.numpy()!r} vs eager {b.numpy()!r}"
    _count(f"compared ({len(steps)} ops{', an empty input' if x.size * y.size == 0 else ''})")
    return None


# ---------------------------------------------------------------- driver

def child(target, seconds, seed, last_path, stats_path):
    import warnings
    from hypothesis import HealthCheck, given, settings, seed as hseed
    warnings.simplefilter("ignore")
    sys.path.insert(0, ROOT)
    stats = {"examples": 0, "failures": [], "counts": COUNTS}
    if target == "load":
        bases = _base_files()
        strat = load_strategy()

        def one(ex):
            blob = make_load_input(bases, ex)
            with open(last_path, "wb") as f:
                f.write(blob)
            return run_load(blob), blob[:200]
    else:
        strat = program_strategy()

        def one(ex):
            with open(last_path, "w") as f:
                f.write(repr(ex))
            return run_program(ex), repr(ex)
    deadline = time.time() + seconds
    batch = 0
    while time.time() < deadline:   # batches of examples until the time is up (no shrinking:
        @hseed(seed * 100003 + batch)   # a failure is recorded with its input, not raised)
        @settings(max_examples=100, deadline=None, database=None, derandomize=False,
                  suppress_health_check=list(HealthCheck))
        @given(strat)
        def body(ex):
            if time.time() > deadline:
                return
            stats["examples"] += 1
            msg, what = one(ex)
            if msg:
                stats["failures"].append({"input": str(what)[:400], "error": msg[:2000]})
        body()
        batch += 1
    with open(stats_path, "w") as f:
        json.dump(stats, f)


class _Stop(Exception):
    pass


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=None)
    ap.add_argument("--seconds", type=float, default=None)
    ap.add_argument("--only", choices=["load", "programs"], default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--child", nargs=4, metavar=("TARGET", "SECONDS", "LAST", "STATS"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        child(a.child[0], float(a.child[1]), a.seed, a.child[2], a.child[3])
        return 0
    total = a.seconds if a.seconds is not None else 60 * (a.minutes if a.minutes is not None else 1)
    targets = [a.only] if a.only else ["load", "programs"]
    import tempfile
    bad = 0
    report = {}
    for tgt in targets:
        per = total / len(targets)
        end = time.time() + per
        ex = crashes = 0
        counts = {}
        fails = []
        run = 0
        while time.time() < end - 0.5:
            with tempfile.TemporaryDirectory() as d:
                last, stats = os.path.join(d, "last"), os.path.join(d, "stats.json")
                env = dict(os.environ)
                env["PYTHONPATH"] = os.pathsep.join([ROOT] + [p for p in [env.get("PYTHONPATH")] if p])
                p = subprocess.run([sys.executable, os.path.abspath(__file__), "--seed", str(a.seed + run),
                                    "--child", tgt, str(max(end - time.time(), 0.5)), last, stats],
                                   env=env, capture_output=True, text=True)
                run += 1
                if p.returncode == 0 and os.path.exists(stats):
                    with open(stats) as f:
                        s = json.load(f)
                    ex += s["examples"]
                    for k, v in s["counts"].items():
                        counts[k] = counts.get(k, 0) + v
                    fails += s["failures"]
                else:   # a signal is a crash of cad; another exit an error of this harness
                    crashes += p.returncode < 0
                    what = open(last, "rb").read() if os.path.exists(last) else b""
                    fails.append({"input": repr(what[:400]), "error": f"child died (rc {p.returncode}): "
                                                                      f"{p.stderr[-1500:]}"})
                    if len(fails) > 20:
                        break
        report[tgt] = {"examples": ex, "failures": len(fails) - crashes, "crashes": crashes, "runs": run}
        print(f"{tgt}: {ex} examples, {len(fails) - crashes} failures, {crashes} crashes", flush=True)
        for k in sorted(counts):
            print(f"  {counts[k]:7d}  {k}")
        report[tgt]["outcomes"] = counts
        for fl in fails[:5]:
            print("  input:", fl["input"][:300])
            print("  error:", fl["error"][:1500])
        bad += len(fails)
    print(json.dumps(report))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
