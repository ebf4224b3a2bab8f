"""The flat positions a recorded fancy index gathers (ops_shape.pxi's _lin_index: a
sum over dims of the index applied to each dim's term, for tensors of more than 4096
elements) against numpy's indexing: values, gradients (numpy's add.at) and a recorded
replay, for every kind of index numpy takes."""
import numpy as np
import pytest

import cad

rng = np.random.default_rng(37)
A0 = rng.standard_normal((30, 40, 50))

INDICES = {
    "two arrays": (np.arange(5), np.arange(5)),
    "ellipsis, two arrays": (Ellipsis, np.array([1, 3]), np.array([2, 4])),
    "slice, list": (slice(None), [0, 0, 3]),
    "2-d array": (np.array([[1, 2], [3, 4]]),),
    "mask": (A0 > 1.0,),
    "slices around an array": (slice(2, 20, 3), None, np.array([4, 1]), slice(None, None, -2)),
    "int, array, negative step": (1, np.array([3, 2]), slice(5, 1, -1)),
    "arrays apart": (np.array([0, 29]), slice(None), np.array([49, 0])),
    "2-d mask": (A0[:, :, 0] > 0,),
    "empty": (np.array([], int),),
    "negative": (np.array([-1, -30]), np.array([-40, 0])),
    "new axes": (None, 3, None, np.array([1])),
    "mask in the middle": (slice(None), A0[0, :, 0] > 0, 7),
}


@pytest.mark.parametrize("name", list(INDICES))
def test_recorded_positions_match_numpy(name):
    ix = INDICES[name]
    want = A0[ix]
    x = cad.tensor(A0, requires_grad=True)
    np.testing.assert_array_equal(np.asarray(x[ix]), want)
    w = rng.standard_normal(want.shape)
    g = np.asarray(cad.grad(lambda a: cad.sum(a[ix] * w))(A0))
    gw = np.zeros_like(A0)
    np.add.at(gw, ix, w)
    np.testing.assert_allclose(g, gw, rtol=1e-13, atol=1e-13)
    tape = cad.record(lambda a: a[ix] * 2.0, cad.tensor(A0))
    B0 = rng.standard_normal(A0.shape)
    np.testing.assert_array_equal(np.asarray(tape(cad.tensor(B0))), B0[ix] * 2.0)


def test_size_one_dims_and_diagonal():
    a = rng.standard_normal((1, 5000, 1))
    x = cad.tensor(a, requires_grad=True)
    ix = (0, np.array([4999, 0, 7]), 0)
    np.testing.assert_array_equal(np.asarray(x[ix]), a[ix])
    m = rng.standard_normal((300, 300))
    g = np.asarray(cad.grad(lambda t: cad.trace(t) + cad.sum(cad.diagonal(t, 2) ** 2))(m))
    want = np.eye(300)
    want[np.arange(298), np.arange(2, 300)] += 2 * np.diagonal(m, 2)
    np.testing.assert_allclose(g, want, rtol=1e-13)
