"""Bench W13 (gradients through cad.scipy): on tiny sizes, cad's cells agree with the
hand-written numpy gradients (the mixture of Gaussians by hand, the ODE fit by forward
sensitivities), and so does torch's when installed.  A smoke test of the benchmark's
cells, not a timing."""
import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest

from bench import w_scipy as w13
from bench.harness import compare, to_numpy

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def mog():
    return w13.mog_data(k=3, n=40, d=3)()


@pytest.fixture(scope="module")
def ode():
    return w13.ode_data(nt=12)()


def test_w13_mog_hand_matches_finite_differences(mog):
    gmu, _gL, _gw = w13.mog_hand(mog)()

    def loss(mu):
        x, L, w = mog["x"], mog["L"], mog["w"]
        S = L @ np.swapaxes(L, 1, 2)
        lw = w - np.log(np.sum(np.exp(w)))
        lp = []
        for k in range(len(w)):
            dd = x - mu[k]
            z = np.linalg.solve(S[k], dd.T).T
            lp.append(lw[k] - 0.5 * (np.sum(dd * z, 1) + np.linalg.slogdet(S[k])[1] + x.shape[1] * np.log(2 * np.pi)))
        lp = np.array(lp)
        m = lp.max(0)
        return float(np.sum(m + np.log(np.sum(np.exp(lp - m), 0))))
    eps = 1e-6
    fd = np.zeros_like(mog["mu"])
    for i in np.ndindex(fd.shape):
        e = np.zeros_like(fd)
        e[i] = eps
        fd[i] = (loss(mog["mu"] + e) - loss(mog["mu"] - e)) / (2 * eps)
    np.testing.assert_allclose(gmu, fd, rtol=1e-6, atol=1e-7)


def test_w13_mog_cad_matches_hand(mog):
    if importlib.util.find_spec("cad.scipy.stats") is None or importlib.util.find_spec("cad.scipy.special") is None:
        pytest.skip("cad.scipy.stats / cad.scipy.special are not in this tree")
    assert compare(to_numpy(w13.mog_hand(mog)()), to_numpy(w13.mog_cad(mog)()), 1e-9) is None


def test_w13_mog_torch_matches_hand(mog):
    pytest.importorskip("torch")
    assert compare(to_numpy(w13.mog_hand(mog)()), to_numpy(w13.mog_torch(mog)()), 1e-9) is None


def test_w13_ode_cad_matches_hand(ode):
    ref = to_numpy(w13.ode_hand(ode)())
    fn = w13.ode_cad(ode)
    assert compare(ref, to_numpy(fn()), 1e-6) is None
    assert compare(ref, to_numpy(fn()), 1e-6) is None     # the cached tapes give the same


def test_w13_ode_torch_matches_hand(ode):
    pytest.importorskip("torch")
    assert compare(to_numpy(w13.ode_hand(ode)()), to_numpy(w13.ode_torch(ode)()), 1e-3) is None


def test_w13_jax_matches_hand():
    """in a child process: JAX's threads, once started here, would deadlock the suite's
    later fork()s (tests/_compose.py)"""
    if importlib.util.find_spec("jax") is None:
        pytest.skip("jax is not installed")
    code = ("import jax; jax.config.update('jax_enable_x64', True)\n"
            "from bench import w_scipy as w\nfrom bench.harness import compare, to_numpy\n"
            "m = w.mog_data(k=3, n=40, d=3)()\n"
            "print(compare(to_numpy(w.mog_hand(m)()), to_numpy(w._mog_jax(True)(m)()), 1e-9))\n"
            "o = w.ode_data(nt=12)()\n"
            "print(compare(to_numpy(w.ode_hand(o)()), to_numpy(w._ode_jax(True)(o)()), 1e-6))")
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env["PYTHONPATH"] = os.pathsep.join([ROOT] + [p for p in [env.get("PYTHONPATH")] if p])
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                       env=env, cwd=ROOT, check=False)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.strip().splitlines()[-2:] == ["None", "None"], p.stdout


def test_w13_registered():
    import importlib

    from bench import MODULES
    cases = [c for m in MODULES for c in importlib.import_module(f"bench.{m}").CASES
             if c.workload == "W13"]
    assert len(cases) == 2
    for c in cases:
        assert {"hand", "cad", "jax", "jax.jit", "torch"} <= set(c.impls)
