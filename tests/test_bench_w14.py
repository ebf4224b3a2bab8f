"""Bench W14 (ADBench: GMM gradient, BA residual and Jacobian): on tiny sizes the
hand-written numpy gradient and Jacobian blocks agree with finite differences of the
objectives, and cad's cells (and torch's, JAX's when installed) agree with hand.  A
smoke test of the benchmark's cells, not a timing."""
import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest

from bench import w_adbench as w14
from bench.harness import compare, to_numpy

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def gmm():
    return w14.gmm_data(d=4, k=3, n=30, seed=141)()


@pytest.fixture(scope="module")
def ba():
    return w14.ba_data(n=3, m=10, p=40, seed=142)()


def _np_gmm(dd, alphas, means, icf):
    from scipy.special import logsumexp
    return w14.gmm_objective(alphas, means, icf, dd["x"], dd["tri"], dd["const"], np,
                             lambda v, axis: logsumexp(v, axis=axis), np.concatenate, np.zeros)


def _fd(f, x, eps=1e-6):
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[i] = eps
        g[i] = (f(x + e) - f(x - e)) / (2 * eps)
    return g


def test_w14_gmm_hand_matches_finite_differences(gmm):
    ga, gm, gicf = w14.gmm_hand(gmm)()
    a, m, icf = gmm["alphas"], gmm["means"], gmm["icf"]
    np.testing.assert_allclose(ga, _fd(lambda v: _np_gmm(gmm, v, m, icf), a), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(gm, _fd(lambda v: _np_gmm(gmm, a, v, icf), m), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(gicf, _fd(lambda v: _np_gmm(gmm, a, m, v), icf), rtol=1e-6, atol=1e-7)


def test_w14_ba_hand_matches_finite_differences(ba):
    J = to_numpy(w14.ba_jac_hand(ba)())
    cg, Xg = ba["cams"][ba["obs"][:, 0]], ba["X"][ba["obs"][:, 1]]
    w, feats = ba["w"], ba["feats"]

    def err(c, x, ww):
        return w14.reproj_err(c, x, ww, feats, np, np.cross)
    for row in (0, 1):
        # every observation depends on its own row only: one column of inputs at a time
        eps = 1e-6
        jc = np.stack([(err(cg + eps * np.eye(11)[j], Xg, w) - err(cg - eps * np.eye(11)[j], Xg, w))[:, row]
                       / (2 * eps) for j in range(11)], 1)
        jx = np.stack([(err(cg, Xg + eps * np.eye(3)[j], w) - err(cg, Xg - eps * np.eye(3)[j], w))[:, row]
                       / (2 * eps) for j in range(3)], 1)
        jw = (err(cg, Xg, w + eps) - err(cg, Xg, w - eps))[:, row] / (2 * eps)
        got = J[3 * row: 3 * row + 3]
        for a, b in zip(got, (jc, jx, jw)):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * np.abs(b).max())


@pytest.mark.parametrize("replay", [False, True], ids=["eager", "replayed"])
@pytest.mark.parametrize("case", ["gmm", "ba_res", "ba_jac"])
def test_w14_cad_matches_hand(case, replay, gmm, ba):
    """the eager cells, and the replayed rows' cells (a tape recorded once, called
    three times)"""
    hand, setup, data, tol = {"gmm": (w14.gmm_hand, w14.gmm_cad, gmm, 1e-10),
                              "ba_res": (w14.ba_res_hand, w14.ba_res_cad, ba, 1e-12),
                              "ba_jac": (w14.ba_jac_hand, w14.ba_jac_cad, ba, 1e-10)}[case]
    if replay:
        setup = {"gmm": w14.gmm_cad_replay, "ba_res": w14.ba_res_cad_replay,
                 "ba_jac": w14.ba_jac_cad_replay}[case]
    ref = to_numpy(hand(data)())
    fn = setup(data)
    for _ in range(3):
        assert compare(ref, to_numpy(fn()), tol) is None


@pytest.mark.parametrize("case", ["gmm", "ba_res", "ba_jac"])
def test_w14_torch_matches_hand(case, gmm, ba):
    pytest.importorskip("torch")
    hand, setup, data = {"gmm": (w14.gmm_hand, w14.gmm_torch, gmm),
                         "ba_res": (w14.ba_res_hand, w14.ba_res_torch, ba),
                         "ba_jac": (w14.ba_jac_hand, w14.ba_jac_torch, ba)}[case]
    assert compare(to_numpy(hand(data)()), to_numpy(setup(data)()), 1e-10) is None


def test_w14_jax_matches_hand():
    """in a child process: JAX's threads, once started here, would deadlock the suite's
    later fork()s (tests/_compose.py)"""
    if importlib.util.find_spec("jax") is None:
        pytest.skip("jax is not installed")
    code = ("import jax; jax.config.update('jax_enable_x64', True)\n"
            "from bench import w_adbench as w\nfrom bench.harness import compare, to_numpy\n"
            "g = w.gmm_data(d=4, k=3, n=30)()\nb = w.ba_data(n=3, m=10, p=40)()\n"
            "for hand, setup, d in [(w.gmm_hand, w._gmm_jax, g), (w.ba_res_hand, w._ba_res_jax, b),\n"
            "                       (w.ba_jac_hand, w._ba_jac_jax, b)]:\n"
            "    for jit in (False, True):\n"
            "        print(compare(to_numpy(hand(d)()), to_numpy(setup(jit)(d)()), 1e-10))")
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env["PYTHONPATH"] = os.pathsep.join([ROOT] + [p for p in [env.get("PYTHONPATH")] if p])
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                       env=env, cwd=ROOT, check=False)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.strip().splitlines()[-6:] == ["None"] * 6, p.stdout


def test_w14_registered():
    import importlib

    from bench import MODULES
    cases = [c for m in MODULES for c in importlib.import_module(f"bench.{m}").CASES
             if c.workload == "W14"]
    assert len(cases) == 8
    for c in cases[:4]:
        assert {"hand", "cad", "jax", "jax.jit", "torch"} <= set(c.impls)
    for c in cases[4:]:   # replayed rows (as W9): cad = the replay, cad.eager = eager cad
        assert c.name.endswith("replayed")
        assert {"hand", "cad", "cad.eager", "jax.jit"} <= set(c.impls)

