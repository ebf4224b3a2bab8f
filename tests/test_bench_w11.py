"""Bench W11 (one training epoch of the examples' MLP): cad's cell agrees with the
hand-written numpy epoch (forward, backward and Adam by hand), and so do torch's and
JAX's when installed.  A smoke test of the benchmark's cells, not a timing."""
import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest

from bench import w_train as w11
from bench.harness import compare, to_numpy

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def d():
    return w11.data()()


@pytest.fixture(scope="module")
def ref(d):
    return to_numpy(w11.hand(d)())


def test_w11_hand_trains(d, ref):
    assert [a.shape for a in ref] == [(64, 192), (192,), (192, 10), (10,)]
    assert not np.allclose(ref[0], d["params"]["W0"])


def test_w11_cad_matches_hand(d, ref):
    fn = w11.cad_epoch(d)
    assert compare(ref, to_numpy(fn()), 1e-9) is None
    assert compare(ref, to_numpy(fn()), 1e-9) is None      # each call starts afresh
    assert fn.loader.stats.batches == 2 * 23


def test_w11_torch_matches_hand(d, ref):
    pytest.importorskip("torch")
    assert compare(ref, to_numpy(w11.torch_epoch(d)()), 1e-9) is None


def test_w11_jax_matches_hand():
    """in a child process: JAX's threads, once started here, would deadlock the suite's
    later fork()s (tests/_compose.py)"""
    if importlib.util.find_spec("jax") is None:
        pytest.skip("jax is not installed")
    code = ("import jax; jax.config.update('jax_enable_x64', True)\n"
            "from bench import w_train as w\nfrom bench.harness import compare, to_numpy\n"
            "d = w.data()()\n"
            "print(compare(to_numpy(w.hand(d)()), to_numpy(w.jax_jit(d)()), 1e-6))")
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env["PYTHONPATH"] = os.pathsep.join([ROOT] + [p for p in [env.get("PYTHONPATH")] if p])
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                       env=env, cwd=ROOT, check=False)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.strip().splitlines()[-1] == "None", p.stdout
