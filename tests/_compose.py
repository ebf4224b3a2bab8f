"""Helpers for tests/test_compositions.py: the op table's cases as numpy-float64
functions of their float leaves, and the finite-difference oracles (our own, in
numpy; cad.testing is not used).

Notation: F(x) is the op applied to the float leaves x = (x_1, ..., x_n) (the
non-float inputs of the case are fixed), computed by the op's numpy reference.
D1(x; a) = d/de F(x + e a) and D2(x; a, b) = d2/de dd F(x + e a + d b), both by
central differences in float64.  Every second-order quantity the composed
transforms compute is a combination of D1 and D2 contracted with a cotangent (the
cotangent enters linearly, so it is contracted exactly)."""
import os
import sys
import zlib

import numpy as np

import cad
from cad.ops import REGISTRY

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "ops"))
from test_rules import build  # noqa: E402  (the suite's case -> inputs/call logic, reused)

LEAF_KINDS = ("A", "T", "S", "V")


def spec_kind(spec):
    if isinstance(spec, tuple) and spec and isinstance(spec[0], str):
        return spec[0], spec[1]
    return "A", spec


def has_leaf(case):
    return any(spec_kind(s)[0] in LEAF_KINDS for s in case.inputs)


def numpy_fn(op, case):
    """F as a numpy function of the list of leaf arrays (as build() lays them out)"""
    def F(xs):
        args, k = [], 0
        for spec in case.inputs:
            kind, val = spec_kind(spec)
            if kind in ("A", "T", "V"):
                args.append(np.asarray(xs[k], dtype=np.float64))
                k += 1
            elif kind == "S":
                args.append(np.asarray(xs[k], dtype=np.float64)[::2])
                k += 1
            elif kind in ("I", "B", "F"):
                args.append(np.asarray(val))
            else:
                args.append(val)
        return np.asarray(op.ref(*args, **case.kwargs), dtype=np.float64)
    return F


# ------------------------------------------------------------------ kinks

KINK = 1e-2   # points closer than this to a kink are redrawn (the stencils move < 1e-3)


def _near_kink(op, case, np_args):
    name = op.name
    xs = [np.asarray(a, dtype=np.float64) if not isinstance(a, str) else a for a in np_args]
    if name in ("relu", "abs"):
        return bool(xs[0].size) and np.min(np.abs(xs[0])) < KINK
    if name in ("maximum", "minimum"):
        a, b = np.broadcast_arrays(xs[0], xs[1])
        return bool(a.size) and np.min(np.abs(a - b)) < KINK
    if name == "clip":
        lo, hi = case.inputs[1][1], case.inputs[2][1]
        return bool(xs[0].size) and min(np.min(np.abs(xs[0] - lo)), np.min(np.abs(xs[0] - hi))) < KINK
    if name in ("max", "min"):
        v = np.sort(xs[0].reshape(-1))
        return v.size > 1 and np.min(np.diff(v)) < KINK
    return False


def sample(op, case, seed):
    """build() at a point away from the op's kinks: (leaves, call, xs as arrays)"""
    for s in range(seed, seed + 50):
        leaves, call, np_args = build(op, case, seed=s)
        xs = [np.array(np.asarray(lf), dtype=np.float64, order="C") for lf in leaves]
        if not _near_kink(op, case, np_args):
            return leaves, call, xs
    raise RuntimeError(f"no point away from the kinks of {op.name}")


def as_primal(a):
    """constants as a user passes them: a Python float for 0-d, else a numpy array"""
    a = np.asarray(a, dtype=np.float64)
    return float(a) if a.ndim == 0 else a.copy()


# ------------------------------------------------------------------ the oracles

def _shift(xs, dirs, steps):
    out = [x.copy() for x in xs]
    for d, s in zip(dirs, steps):
        for k in range(len(out)):
            out[k] = out[k] + s * d[k]
    return out


def D1(F, xs, a, h=1e-6):
    return (F(_shift(xs, [a], [h])) - F(_shift(xs, [a], [-h]))) / (2 * h)


def _d2(F, xs, a, b, h):
    pp = F(_shift(xs, [a, b], [h, h]))
    pm = F(_shift(xs, [a, b], [h, -h]))
    mp = F(_shift(xs, [a, b], [-h, h]))
    mm = F(_shift(xs, [a, b], [-h, -h]))
    return (pp - pm - mp + mm) / (4 * h * h)


def D2(F, xs, a, b, h=1e-4):
    """the mixed second difference, Richardson-extrapolated from steps h and h/2: error
    O(h^4), so that cases near a pole (ndtri at 0.002, erfcinv at 1.99, polygamma near
    0), where the plain O(h^2) difference was off by 0.5%, are checked at the tolerance"""
    return (4.0 * _d2(F, xs, a, b, h / 2) - _d2(F, xs, a, b, h)) / 3.0


def unit(xs, k, j):
    e = [np.zeros(x.shape) for x in xs]
    e[k].reshape(-1)[j] = 1.0
    return e


def per_component(xs, fn):
    """[array shaped like x_k whose entry j is fn(e_kj)] for each leaf"""
    out = []
    for k, x in enumerate(xs):
        g = np.zeros(x.shape)   # C order: reshape(-1) is a view
        for j in range(x.size):
            g.reshape(-1)[j] = fn(unit(xs, k, j))
        out.append(g)
    return out


def T3(f, p, a, b, c):
    """d3/da db dc f(p + al a + be b + ga c) of a scalar numpy function of a vector
    p, by the 8-point stencil with Richardson extrapolation (h, h/2)"""
    p, a, b, c = (np.asarray(v, dtype=np.float64) for v in (p, a, b, c))

    def st(h):
        s = 0.0
        for s1 in (1, -1):
            for s2 in (1, -1):
                for s3 in (1, -1):
                    s += s1 * s2 * s3 * f(p + h * (s1 * a + s2 * b + s3 * c))
        return s / (8 * h ** 3)
    h = 4e-3
    return (4 * st(h / 2) - st(h)) / 3


def rng_for(*parts):
    return np.random.default_rng(zlib.crc32("/".join(map(str, parts)).encode()))


def dense(rng, shape):
    """a random dense direction (no zero entries, not a basis vector)"""
    v = rng.standard_normal(shape)
    v = np.where(np.abs(v) < 0.1, 0.5, v)
    return np.asarray(v, dtype=np.float64)


def arr(t):
    return np.array(np.asarray(t), dtype=np.float64)


def close(got, want, rtol, atol, what):
    got = arr(got)
    want = np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape}, expected {want.shape}"
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, err_msg=what)


__all__ = ["REGISTRY", "cad", "build", "numpy_fn", "sample", "as_primal", "D1", "D2",
           "per_component", "T3", "rng_for", "dense", "arr", "close", "has_leaf", "spec_kind"]


# ------------------------------------------------------------------ crash isolation

CHILD_TIMEOUT_S = 120


def isolated(fn):
    """With CAD_TEST_FORK=1, run the test body in a forked child: a segfault in the
    engine fails this test (with the signal's name) instead of killing pytest, and
    assertion messages come back through a pipe.  By default the body runs in
    pytest's process: a fork per case cost 10x the suite's own time (176 s against
    16 s for 5765 cases; 6 min under the sanitizer build), and a crash still fails
    the run, with faulthandler's traceback naming the test.  Use the fork to find
    every crashing case in one run."""
    import functools
    import pickle
    import signal
    import traceback

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        import pytest
        if not hasattr(os, "fork") or os.environ.get("CAD_TEST_FORK") != "1":
            return fn(*args, **kwargs)
        sys.stdout.flush()
        sys.stderr.flush()
        import faulthandler
        import tempfile
        trace = tempfile.TemporaryFile(mode="w+")
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:   # child
            os.close(r)
            faulthandler.enable(file=trace)   # where a crash happened, for the parent
            signal.alarm(CHILD_TIMEOUT_S)       # a hang fails the test (SIGALRM) instead of CI
            code, msg = 0, b""
            try:
                fn(*args, **kwargs)
            except BaseException as e:   # noqa: BLE001 (reported to the parent)
                code = 2 if isinstance(e, pytest.skip.Exception) else 1
                msg = pickle.dumps("".join(traceback.format_exception(type(e), e, e.__traceback__))[-6000:])
            try:
                os.write(w, msg)
            finally:
                os.close(w)
                os._exit(code)
        os.close(w)
        chunks = []
        while True:
            b = os.read(r, 65536)
            if not b:
                break
            chunks.append(b)
        os.close(r)
        _, status = os.waitpid(pid, 0)
        if os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
            trace.seek(0)
            frames = [ln.strip() for ln in trace.read().splitlines()
                      if "File " in ln and "site-packages" not in ln and "<frozen" not in ln]
            trace.close()
            pytest.fail(f"CRASH: the engine killed the process with {signal.Signals(sig).name}\n  "
                        + "\n  ".join(frames[:8]), pytrace=False)
        trace.close()
        code = os.WEXITSTATUS(status)
        text = pickle.loads(b"".join(chunks)) if chunks else ""
        if code == 2:
            pytest.skip(text.strip().splitlines()[-1])
        if code != 0:
            pytest.fail(text, pytrace=False)
    return wrapper
