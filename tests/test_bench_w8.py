"""Bench W8 (per-example gradients of a tiny MLP): its hand-written numpy reference is
exact, and cad's cells of the table (the loop of cad.grad; cad.vmap and its recorded
tape where this cad has cad.vmap) agree with it.  A small batch: a smoke test."""

import numpy as np
import pytest

import cad
from bench import w_vmap as w8
from bench.harness import compare, to_numpy

BATCH = 7


@pytest.fixture(scope="module")
def d():
    return w8.data(batch=BATCH, seed=81)()


@pytest.fixture(scope="module")
def ref(d):
    return to_numpy(w8.hand(d)())


def test_w8_hand_shapes(ref):
    assert [a.shape for a in ref] == [(BATCH, 16, 16), (BATCH, 16), (BATCH, 16, 1), (BATCH, 1)]
    assert all(a.dtype == np.float64 for a in ref)


def test_w8_hand_against_finite_differences(d, ref):
    params = [d[k] for k in ("W1", "b1", "W2", "b2")]
    eps = 1e-6
    for n in (0, BATCH - 1):
        xi, yi = d["x"][n], d["y"][n]
        for k, p in enumerate(params):
            fd = np.zeros_like(p)
            for idx in np.ndindex(p.shape):
                hi = [q.copy() for q in params]
                lo = [q.copy() for q in params]
                hi[k][idx] += eps
                lo[k][idx] -= eps
                fd[idx] = (w8.loss(*hi, xi, yi, tanh=np.tanh)
                           - w8.loss(*lo, xi, yi, tanh=np.tanh)) / (2 * eps)
            np.testing.assert_allclose(ref[k][n], fd, rtol=1e-6, atol=1e-8)


def test_w8_cad_loop(d, ref):
    fn = w8.cad_loop(d)
    assert compare(ref, to_numpy(fn()), 1e-12) is None
    assert compare(ref, to_numpy(fn()), 1e-12) is None  # a second call: the same


@pytest.mark.skipif(not callable(getattr(cad, "vmap", None)), reason="this cad has no cad.vmap function")
@pytest.mark.parametrize("setup", [w8.cad_vmap, w8.cad_replay], ids=["vmap", "replay"])
def test_w8_cad_vmap(d, ref, setup):
    fn = setup(d)
    assert compare(ref, to_numpy(fn()), 1e-12) is None
    assert compare(ref, to_numpy(fn()), 1e-12) is None


def test_w8_registered():
    import importlib

    from bench import MODULES
    cases = [c for m in MODULES for c in importlib.import_module(f"bench.{m}").CASES
             if c.workload == "W8"]
    assert {c.name for c in cases} == {"per-example grads vmap", "per-example grads loop",
                                       "per-example grads replayed"}
    for c in cases:
        assert "hand" in c.impls and "cad" in c.impls
