"""Tensor creation, conversion, dtypes, printing and bad input."""
import numpy as np
import pytest

import cad


def test_creation_dtypes_follow_numpy():
    assert cad.tensor([1.0, 2.0]).dtype == np.float64
    assert cad.tensor([1, 2]).dtype == np.int64
    assert cad.tensor([True, False]).dtype == np.bool_
    assert cad.tensor(3.0).dtype == cad.float64
    assert cad.tensor(np.arange(3, dtype=np.int32)).dtype == cad.int64
    assert cad.tensor(np.ones(2, dtype=np.float16)).dtype == cad.float32
    assert cad.tensor([1.0], dtype=cad.float32).dtype == np.float32
    assert cad.zeros(2, 3).shape == (2, 3)
    assert cad.ones((2, 3)).shape == (2, 3)
    assert cad.full((2,), 7.0).tolist() == [7.0, 7.0]
    assert cad.eye(3).numpy().trace() == 3
    assert cad.arange(4).dtype == np.int64 and cad.arange(4).tolist() == [0, 1, 2, 3]
    assert cad.arange(0.0, 1.0, 0.5).tolist() == [0.0, 0.5]
    assert cad.linspace(0, 1, 5).shape == (5,)
    x = cad.ones(2, 3, dtype=cad.float32)
    assert cad.zeros_like(x).dtype == np.float32 and cad.ones_like(x).shape == (2, 3)
    with pytest.raises(TypeError, match="complex"):
        cad.tensor(np.ones(2, dtype=complex))


def test_random_is_seeded():
    cad.manual_seed(7)
    a = cad.randn(3, 2)
    cad.manual_seed(7)
    b = cad.randn(3, 2)
    assert np.array_equal(a.numpy(), b.numpy())
    r = cad.rand(1000)
    assert 0 <= r.numpy().min() and r.numpy().max() < 1
    assert cad.randn(2, dtype=cad.float32).dtype == np.float32


def test_conversion():
    x = cad.tensor([[1.0, 2.0], [3.0, 4.0]])
    assert x.shape == (2, 2) and x.ndim == 2 and x.size == 4 and len(x) == 2
    assert x.device == "cpu" and str(x.device) == "cpu"
    assert x.tolist() == [[1.0, 2.0], [3.0, 4.0]]
    assert np.asarray(x).shape == (2, 2)
    assert float(cad.tensor(2.5)) == 2.5 and int(cad.tensor([3])) == 3
    assert cad.tensor([[5.0]]).item() == 5.0
    assert [row.tolist() for row in x] == [[1.0, 2.0], [3.0, 4.0]]
    assert float(sum(cad.tensor([1.0, 2.0, 3.0]))) == 6.0
    with pytest.raises(ValueError, match="item"):
        x.item()
    with pytest.raises(TypeError):
        len(cad.tensor(1.0))
    with pytest.raises(ValueError, match="ambiguous"):
        bool(x)


def test_values_are_immutable_and_numpy_input_is_copied():
    a = np.array([1.0, 2.0])
    x = cad.tensor(a)
    a[0] = 100.0
    assert x.tolist() == [1.0, 2.0]
    with pytest.raises(ValueError, match="read-only"):
        x.numpy()[0] = 5.0
    c = np.array(x)
    c[0] = 9.0
    assert x.tolist() == [1.0, 2.0]


def test_repr_like_torch():
    assert repr(cad.tensor([1.0, 2.0])) == "tensor([1., 2.])"
    assert repr(cad.tensor([1.0, 2.0], requires_grad=True)) == "tensor([1., 2.], requires_grad=True)"
    assert repr(cad.tensor(3.0)) == "tensor(3.)"
    assert repr(cad.tensor([1, 2])) == "tensor([1, 2])"
    assert "dtype=float32" in repr(cad.tensor([1.0], dtype=cad.float32))
    x = cad.tensor(2.0, requires_grad=True)
    assert repr(x * 3) == "tensor(6., grad_fn=<mul>)"


def test_promotion():
    f32 = cad.tensor([1.0], dtype=cad.float32)
    f64 = cad.tensor([1.0])
    i64 = cad.tensor([1])
    b = cad.tensor([True])
    assert (f32 + f64).dtype == np.float64
    assert (f32 + 2.0).dtype == np.float32          # a Python scalar does not upcast
    assert (f32 + i64).dtype == np.float64          # as numpy
    assert (i64 + 1).dtype == np.int64 and (i64 + 1.5).dtype == np.float64
    assert (b + b).dtype == np.bool_ and (b + 1).dtype == np.int64
    assert cad.sin(i64).dtype == np.float64
    assert (i64 / 2).dtype == np.float64
    assert (i64 * 3).tolist() == [3]


def test_comparisons_and_masks():
    x = cad.tensor([1.0, -2.0, 3.0])
    m = x > 0
    assert m.dtype == np.bool_ and m.tolist() == [True, False, True]
    assert (x == 3.0).tolist() == [False, False, True]
    assert ((x > 0) & (x < 2)).tolist() == [True, False, False]
    assert (~m).tolist() == [False, True, False]
    assert x[m].tolist() == [1.0, 3.0]
    assert cad.argmax(x).item() == 2 and cad.argmin(x).item() == 1
    assert cad.where(m, x, 0.0).tolist() == [1.0, 0.0, 3.0]


def test_numpy_ufuncs_dispatch_to_cad():
    x = cad.tensor([0.5, 1.0], requires_grad=True)
    y = np.sin(x)
    assert isinstance(y, cad.Tensor)
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), np.cos([0.5, 1.0]))
    z = np.ones(2) + x
    assert isinstance(z, cad.Tensor) and z.requires_grad
    with pytest.raises(TypeError, match="not differentiable"):
        np.cbrt(x)   # (a ufunc cad has no op for)


def test_broadcast_errors_name_op_and_shapes():
    with pytest.raises(ValueError, match=r"add: shapes \(3,\) and \(4,\)"):
        cad.ones(3) + cad.ones(4)
    with pytest.raises(cad.ShapeError, match=r"matmul: shapes \(2, 3\) and \(4, 5\)"):
        cad.ones(2, 3) @ cad.ones(4, 5)
    with pytest.raises(ValueError, match="reshape"):
        cad.ones(6).reshape(4, 2)
    with pytest.raises(ValueError, match="concatenate"):
        cad.concatenate([cad.ones(2, 3), cad.ones(2, 4)])
    with pytest.raises(ValueError, match="axis 2 is out of bounds"):
        cad.ones(2, 2).sum(axis=2)
    with pytest.raises(IndexError, match="out of bounds"):
        cad.ones(3)[5]
    with pytest.raises(ValueError, match="zero-size|size 0"):
        cad.zeros(0).max()


def test_devices():
    x = cad.ones(2)
    assert x.cpu() is x and x.to("cpu") is x
    with pytest.raises(cad.DeviceError, match="unknown device"):
        x.to("tpu")
    assert x.to(cad.float32).dtype == np.float32


def test_inplace_rebinds_and_views_are_values():
    x = cad.tensor([1.0, 2.0, 3.0])
    alias = x
    x += 1
    assert alias is x and x.tolist() == [2.0, 3.0, 4.0]
    v = x[0:2]
    x[0] = 10.0
    assert x.tolist() == [10.0, 3.0, 4.0] and v.tolist() == [2.0, 3.0]
    with pytest.raises(ValueError, match="in-place"):
        y = cad.ones(2)
        y += cad.ones(3, 2)
    with pytest.raises(TypeError):
        i = cad.arange(3)
        i += 0.5


def test_setitem_forms():
    x = cad.zeros(3, 4)
    x[1] = 1.0
    x[:, 2] = cad.tensor([5.0, 6.0, 7.0])
    x[x > 5.5] = -1.0
    x[[0, 2], [0, 0]] = 3.0
    want = np.zeros((3, 4))
    want[1] = 1.0
    want[:, 2] = [5.0, 6.0, 7.0]
    want[want > 5.5] = -1.0
    want[[0, 2], [0, 0]] = 3.0
    assert np.array_equal(x.numpy(), want)
    with pytest.raises(ValueError, match="setitem"):
        x[0] = cad.ones(5)


def test_indexing_negative_steps_and_ellipsis():
    a = np.arange(24.0).reshape(2, 3, 4)
    x = cad.tensor(a)
    for idx in [(Ellipsis, 1), (slice(None, None, -1),), (1, slice(None), slice(3, 0, -2)),
                (None, 0), ([1, 0], Ellipsis, [3, 0]), (a > 10,)]:
        assert np.array_equal(x[idx].numpy(), a[idx]), idx
