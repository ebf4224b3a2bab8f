"""NOTE [ Large tapes ] (cad_kernels/cpu/tape.c): the arrays of the largest freed
tape are kept and taken over by the next tape that grows past the medium cache;
cad.empty_cache() returns them; set_cache_limit bounds them.  Gradients through
tapes that took the kept arrays, two large tapes alive at once, and a merge of
large tapes equal those computed by hand."""
import numpy as np
import pytest

import cad
from bench.w_scalar import chain as _chain
from bench.w_scalar import chain_dual as chain_hand   # (value, derivative) by hand


def chain(x, n):
    return _chain(x, cad.sin, n)


N = 30000   # 40001 values on the tape: past the medium cache (16384)


def grad_of(n, x0=0.5):
    x = cad.tensor(x0, requires_grad=True)
    y = chain(x, n)
    y.backward()
    return float(y), float(x.grad)


@pytest.fixture(autouse=True)
def _clean():
    cad.empty_cache()
    yield
    cad.empty_cache()


def test_kept_arrays_reused_and_released():
    want = chain_hand(0.5, N)
    assert grad_of(N) == pytest.approx(want, rel=1e-12)
    kept = cad.empty_cache()
    assert kept >= N * 32   # at least the value slots of the freed tape (32 bytes each)
    assert cad.empty_cache() == 0
    for _ in range(3):   # the first frees its arrays into the slot, the next ones take them
        assert grad_of(N) == pytest.approx(want, rel=1e-12)
    # a smaller large tape takes the kept (larger) arrays too
    assert grad_of(N // 2) == pytest.approx(chain_hand(0.5, N // 2), rel=1e-12)
    assert grad_of(2 * N) == pytest.approx(chain_hand(0.5, 2 * N), rel=1e-12)


def test_two_large_tapes_alive():
    grad_of(N)   # leaves arrays in the slot
    x = cad.tensor(0.3, requires_grad=True)
    z = cad.tensor(0.7, requires_grad=True)
    y1 = chain(x, N)   # takes the kept arrays
    y2 = chain(z, N)   # grows its own
    y2.backward()
    y1.backward()
    assert (float(y1), float(x.grad)) == pytest.approx(chain_hand(0.3, N), rel=1e-12)
    assert (float(y2), float(z.grad)) == pytest.approx(chain_hand(0.7, N), rel=1e-12)


def test_merged_large_tapes():
    grad_of(N)
    x = cad.tensor(0.3, requires_grad=True)
    z = cad.tensor(0.7, requires_grad=True)
    s = chain(x, N) + chain(z, N)   # two tapes merged into one
    s.backward()
    vx, dx = chain_hand(0.3, N)
    vz, dz = chain_hand(0.7, N)
    assert float(s) == pytest.approx(vx + vz, rel=1e-12)
    assert float(x.grad) == pytest.approx(dx, rel=1e-12)
    assert float(z.grad) == pytest.approx(dz, rel=1e-12)


def test_cache_limit_bounds_kept_arrays():
    _, limit = cad.cache_info()
    try:
        cad.set_cache_limit(0)
        assert grad_of(N) == pytest.approx(chain_hand(0.5, N), rel=1e-12)
        assert cad.empty_cache() == 0   # nothing kept
    finally:
        cad.set_cache_limit(limit)


def test_array_tape_past_medium_size():
    """array records (shapes in meta, aux words) on a tape that took the kept arrays"""
    grad_of(N)
    w = cad.tensor(np.linspace(0.1, 1.0, 5), requires_grad=True)
    y = w
    for _ in range(9000):   # ~18000 values
        y = cad.sin(y) * 1.0001
    cad.sum(y).backward()
    v, d = np.linspace(0.1, 1.0, 5), np.ones(5)
    for _ in range(9000):
        v, d = np.sin(v) * 1.0001, d * np.cos(v) * 1.0001
    np.testing.assert_allclose(np.asarray(w.grad), d, rtol=1e-10)
    np.testing.assert_allclose(np.asarray(y.detach()), v, rtol=1e-10)
