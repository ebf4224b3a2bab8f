"""topk's C kernel for small k (NOTE [ Top k ] in kernels.c), argsort's unstable fast
sort when no row has ties or NaN, and take_along_axis's computed positions: each
against the stable sort it stands for (cad.ops.sort._np_argsort: ties in their
order, NaN last ascending and first descending) and numpy's take_along_axis."""
import numpy as np
import pytest

import cad
from cad.ops.sort import _np_argsort

rng = np.random.default_rng(31)


def _rows(kind, shape, dtype):
    a = rng.standard_normal(shape)
    if kind == "ties":
        a = np.round(a * 2) / 2
    elif kind == "nan":
        a[rng.random(shape) < 0.1] = np.nan
    elif kind == "zeros":
        a = rng.choice([-0.0, 0.0, 1.0, -1.0], size=shape)
    elif kind == "sorted":
        a = np.sort(a, axis=-1)
    elif kind == "reversed":
        a = np.sort(a, axis=-1)[..., ::-1].copy()
    return a.astype(dtype)


@pytest.mark.parametrize("kind", ["random", "ties", "nan", "zeros", "sorted", "reversed"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("largest", [True, False])
@pytest.mark.parametrize("k", [0, 1, 5, 64, 65, 300])
def test_topk_is_the_stable_sorts_first_k(kind, dtype, largest, k):
    a = _rows(kind, (7, 1000), dtype)
    v, i = cad.topk(cad.tensor(a), k, largest=largest)
    want = _np_argsort(a, -1, largest)[:, :k]
    np.testing.assert_array_equal(np.asarray(i), want)
    np.testing.assert_array_equal(np.asarray(v), np.take_along_axis(a, want, -1))


@pytest.mark.parametrize("axis", [0, 1, 2, -1])
def test_topk_axes_views_and_gradient(axis):
    base = _rows("ties", (6, 40, 9), np.float64)
    a = base[:, ::2]   # a non-contiguous view
    k = 2
    v, i = cad.topk(cad.tensor(a), k, dim=axis)
    want = _np_argsort(a, axis, True)
    want = np.take(want, np.arange(k), axis=axis)
    np.testing.assert_array_equal(np.asarray(i), want)
    w = rng.standard_normal(np.asarray(v).shape)
    g = np.asarray(cad.grad(lambda x: cad.sum(cad.topk(x, k, dim=axis)[0] * w))(a))
    ref = np.zeros_like(a)
    np.put_along_axis(ref, want, w, axis)
    np.testing.assert_array_equal(g, ref)
    # byte-swapped input
    sw = a.astype(a.dtype.newbyteorder(">"))
    np.testing.assert_array_equal(np.asarray(cad.topk(cad.tensor(sw), k, dim=axis)[1]), want)


@pytest.mark.parametrize("kind", ["random", "ties", "nan", "zeros"])
@pytest.mark.parametrize("descending", [False, True])
@pytest.mark.parametrize("axis", [0, 1, None])
def test_argsort_fast_path_is_the_stable_sort(kind, descending, axis):
    a = _rows(kind, (50, 60), np.float64)
    got = np.asarray(cad.argsort(cad.tensor(a), axis=axis, descending=descending))
    np.testing.assert_array_equal(got, _np_argsort(a, axis, descending))
    s = np.asarray(cad.sort(cad.tensor(a), axis=axis, descending=descending))
    flat = a.reshape(-1) if axis is None else a
    np.testing.assert_array_equal(s, np.take_along_axis(flat, _np_argsort(a, axis, descending),
                                                        0 if axis is None else axis))


@pytest.mark.parametrize("shape,ishape,axis", [((3, 4, 5), (3, 2, 5), 1), ((3, 4, 5), (1, 4, 2), 2),
                                               ((3, 4, 5), (6, 4, 5), 0), ((3, 1, 5), (3, 4, 5), 1),
                                               ((4,), (7,), 0), ((3, 4, 5), (3, 4, 1), 2),
                                               ((3, 0, 5), (2, 0, 5), 0), ((0, 4), (0, 2), 1), ((2, 0), (2, 0), 1)])
def test_take_along_axis_positions(shape, ishape, axis):
    a = rng.standard_normal(shape)
    n = shape[axis]
    i = rng.integers(-n, n, size=ishape) if n else np.zeros(ishape, np.int64)
    if n == 0 and np.prod(ishape):
        with pytest.raises(IndexError, match="take_along_axis"):
            cad.take_along_axis(cad.tensor(a), i, axis)
        return
    np.testing.assert_array_equal(np.asarray(cad.take_along_axis(cad.tensor(a), i, axis)),
                                  np.take_along_axis(a, i, axis))
    np.testing.assert_array_equal(np.asarray(cad.take_along_axis(cad.tensor(a.T).T, i, axis)),
                                  np.take_along_axis(a, i, axis))


def test_take_along_axis_errors():
    with pytest.raises(ValueError, match="do not broadcast"):
        cad.take_along_axis(cad.tensor(np.ones((3, 4))), np.zeros((2, 4), int), 1)
    with pytest.raises(IndexError, match="out of range"):
        cad.take_along_axis(cad.tensor(np.ones((3, 4))), np.full((3, 1), 4), 1)
    with pytest.raises(IndexError, match="out of range"):
        cad.take_along_axis(cad.tensor(np.ones((3, 4))), np.full((3, 1), -5), 1)
