"""numpy, PyTorch, JAX interop (NOTE [ Interop ] in cad/interop.py): ufuncs and
numpy functions on tensors, DLPack both ways, the CUDA array interface (through
the fake device here; a GPU run checks it against torch and CuPy)."""
import gc

import numpy as np
import pytest

import cad

try:
    import torch
except ImportError:   # pragma: no cover
    torch = None
try:
    import jax.numpy as jnp
except ImportError:   # pragma: no cover
    jnp = None

needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch is not installed")
needs_jax = pytest.mark.skipif(jnp is None, reason="JAX is not installed")


def test_numpy_ufuncs_stay_on_the_tape():
    a = np.array([1.0, 2.0, 4.0])
    x = cad.tensor([0.5, 1.0, 2.0])
    for f, d in [(lambda v: a + v, np.ones(3)), (lambda v: a / v, -a / np.array([0.25, 1, 4])),
                 (lambda v: np.divide(a, v), -a / np.array([0.25, 1, 4])),
                 (lambda v: a * v, a), (lambda v: np.exp(v), np.exp([0.5, 1.0, 2.0]))]:
        g = cad.grad(lambda v, f=f: cad.sum(f(v)))(x)
        np.testing.assert_allclose(np.asarray(g), d, rtol=1e-12)
    assert isinstance(a @ x, cad.Tensor)


def test_numpy_functions_dispatch_to_cad():
    x = cad.tensor([1.0, 2.0, 3.0], requires_grad=True)
    for r in [np.sum(x), np.where(x > 1, x, 0), np.concatenate([x, x]), np.mean(x, axis=0),
              np.linalg.norm(x), np.stack([x, x]), np.clip(x, 1.5, 2.5), np.tensordot(x, x, 1)]:
        assert isinstance(r, cad.Tensor)
    g = cad.grad(lambda v: np.sum(np.where(v > 1.5, v * v, 0.0)))(cad.tensor([1.0, 2.0, 3.0]))
    np.testing.assert_allclose(np.asarray(g), [0, 4, 6])
    assert bool(np.all(x > 0)) and bool(np.any(x > 2))
    with pytest.raises(TypeError, match="out="):
        np.sum(x, out=np.zeros(()))


def test_numpy_functions_cad_lacks():
    x = cad.tensor([3.0, 1.0, 2.0], requires_grad=True)
    assert np.median(x.detach()) == 2.0                       # values, a numpy result
    assert np.median(cad.tensor([3.0, 1.0, 2.0])) == 2.0
    with pytest.raises(TypeError, match="numpy.median.*requires grad"):
        np.median(x)                                        # would drop the gradient
    with cad.no_grad():
        assert np.median(x) == 2.0
    assert np.allclose(x, [3, 1, 2]) and np.shape(x) == (3,) and np.ndim(x) == 1   # read values only
    np.testing.assert_allclose(x, [3, 1, 2])


def test_numpy_scalars_and_0d_arrays():
    x = cad.tensor(2.0, requires_grad=True)
    for s in [np.float64(3.0), np.array(3.0), np.float32(3.0)]:
        y = x * s + s
        y.backward()
        assert float(x.grad) == 3.0
        x.grad = None


def test_asarray_zero_copy_and_read_only():
    x = cad.tensor(np.arange(6.0).reshape(2, 3))
    a = np.asarray(x)
    assert np.shares_memory(a, np.asarray(x)) and not a.flags.writeable


@needs_torch
def test_torch_tensor_and_as_tensor():
    for v in [1.5, [1.0, 2.0], [[1, 2], [3, 4]]]:
        x = cad.tensor(v)
        for f in (torch.tensor, torch.as_tensor):
            np.testing.assert_array_equal(f(x).numpy(), np.asarray(v))
    assert torch.tensor(cad.tensor(True)).dtype == torch.bool


@needs_torch
def test_dlpack_to_torch_zero_copy():
    x = cad.tensor(np.arange(12.0).reshape(3, 4))
    t = torch.from_dlpack(x)
    assert t.shape == (3, 4) and t.dtype == torch.float64
    assert t.data_ptr() == np.asarray(x).ctypes.data
    v = x[:, ::2]                                   # a strided view keeps its strides
    tv = torch.from_dlpack(v)
    np.testing.assert_array_equal(tv.numpy(), np.asarray(v))
    assert x.__dlpack_device__() == (1, 0)
    for dt, tdt in [(cad.float32, torch.float32), (cad.int64, torch.int64), (cad.bool, torch.bool)]:
        assert torch.from_dlpack(cad.tensor([1, 0, 1]).astype(dt)).dtype == tdt


@needs_torch
def test_from_dlpack_torch_zero_copy_and_copy():
    t = torch.arange(6.0, dtype=torch.float64).reshape(2, 3)
    x = cad.from_dlpack(t)
    assert np.asarray(x).ctypes.data == t.data_ptr()
    t[0, 0] = 7.0                                   # shared memory, as torch.from_dlpack
    assert float(x[0, 0]) == 7.0
    y = cad.from_dlpack(t, copy=True)
    t[0, 0] = 8.0
    assert float(y[0, 0]) == 7.0
    tt = t.t()                                      # non-contiguous
    np.testing.assert_array_equal(np.asarray(cad.from_dlpack(tt)), tt.numpy())
    assert cad.from_dlpack(torch.ones(2, dtype=torch.int32)).dtype == cad.int64   # converted
    with pytest.raises(BufferError):
        cad.from_dlpack(torch.ones(2, dtype=torch.int32), copy=False)
    assert t.data_ptr() != 0 and not np.asarray(x).flags.writeable   # cad's view is read-only
    g = cad.grad(lambda v: cad.sum(v * v))(cad.from_dlpack(torch.tensor([1.0, 2.0])))
    np.testing.assert_allclose(np.asarray(g), [2.0, 4.0])


@needs_jax
def test_dlpack_jax_both_ways():
    x = cad.tensor([1.0, 2.0, 3.0])
    np.testing.assert_array_equal(np.asarray(jnp.from_dlpack(x)), [1, 2, 3])
    a = jnp.arange(4.0)
    y = cad.from_dlpack(a)                   # a JAX GPU array becomes a CUDA tensor, no copy
    gpu = next(iter(a.devices())).platform == "gpu"
    assert y.device.type == ("cuda" if gpu else "cpu")
    np.testing.assert_array_equal(np.asarray(y.cpu()), [0, 1, 2, 3])


def test_numpy_dlpack_round_trip_and_readonly():
    x = cad.tensor([1.0, 2.0])
    a = np.from_dlpack(x)
    assert np.shares_memory(a, np.asarray(x)) and not a.flags.writeable
    b = np.arange(3.0)
    y = cad.from_dlpack(b)
    assert np.shares_memory(np.asarray(y), b) and b.flags.writeable   # the user's array untouched
    with pytest.raises(TypeError, match="from_dlpack"):
        cad.from_dlpack([1.0, 2.0])


def test_dlpack_escape_inside_transforms():
    def f(v):
        v.__dlpack__()
        return cad.sum(v)
    with pytest.raises(Exception, match="__dlpack__"):
        cad.vmap(f)(cad.ones((2, 3)))
    np.testing.assert_allclose(np.asarray(cad.vmap(lambda v: np.sum(v * v))(cad.ones((2, 3)))), [3, 3])
    with pytest.raises(TypeError, match="numpy.median inside cad.vmap"):
        cad.vmap(np.median)(cad.ones((2, 3)))


# ---- CUDA side (on the fake device without a GPU): the CUDA array interface and
# the "dltensor" capsule, round trips through cad itself

@pytest.fixture
def fake_cuda(cuda_or_fake):
    return cuda_or_fake


class _CAI:
    def __init__(self, d):
        self.__cuda_array_interface__ = d


class _Producer:
    def __init__(self, t):
        self.t = t

    def __dlpack__(self, stream=None):
        return self.t.__dlpack__(stream=stream)

    def __dlpack_device__(self):
        return self.t.__dlpack_device__()


def test_cuda_array_interface_round_trip(fake_cuda):
    x = cad.tensor(np.arange(6.0).reshape(2, 3), device="cuda")
    cai = x.__cuda_array_interface__
    assert cai["shape"] == (2, 3) and cai["typestr"] == "<f8" and cai["version"] == 3
    assert x.__dlpack_device__() == (2, 0)
    y = cad.from_dlpack(_CAI(cai))                    # no copy: the same memory
    assert y.__cuda_array_interface__["data"][0] == cai["data"][0]
    np.testing.assert_array_equal(np.asarray(y.cpu()), np.arange(6.0).reshape(2, 3))
    z = cad.tensor(_CAI(cai), device="cuda")          # cad.tensor copies device to device
    assert z.__cuda_array_interface__["data"][0] != cai["data"][0]
    v = x[:, ::2]
    vc = v.__cuda_array_interface__
    assert vc["strides"] == (24, 16)
    np.testing.assert_array_equal(np.asarray(cad.from_dlpack(_CAI(vc)).cpu()), [[0, 2], [3, 5]])
    assert not hasattr(cad.tensor(1.0), "__cuda_array_interface__")
    with pytest.raises(cad.DTypeError, match="int32"):
        cad.from_dlpack(_CAI(dict(cai, typestr="<i4")))


def test_cuda_dlpack_capsule_round_trip(fake_cuda):
    x = cad.tensor([1.0, 2.0, 3.0], device="cuda")
    w = cad.from_dlpack(_Producer(x))
    assert w.device.type == "cuda"
    del x
    gc.collect()                                      # the capsule keeps the memory alive
    np.testing.assert_array_equal(np.asarray((w * 2).cpu()), [2, 4, 6])
    cap = cad.tensor([1.0], device="cuda").__dlpack__()
    del cap                                           # an unconsumed capsule frees itself
    gc.collect()
    for dt in (cad.float32, cad.int64, cad.bool):
        t = cad.tensor([1, 0, 1], device="cuda").astype(dt)
        back = cad.from_dlpack(_Producer(t))
        assert back.dtype == t.dtype
        np.testing.assert_array_equal(np.asarray(back.cpu()), np.asarray(t.cpu()))
    g = cad.grad(lambda v: cad.sum(v * v))(cad.from_dlpack(_Producer(cad.tensor([1.0, 3.0], device="cuda"))))
    np.testing.assert_allclose(np.asarray(g.cpu()), [2.0, 6.0])


# ---- a real GPU: PyTorch's and CuPy's CUDA arrays (skipped without them)

def _real_gpu():
    return cad.cuda.is_available() and not cad.cuda.is_fake()


@pytest.mark.skipif(torch is None or not torch.cuda.is_available(), reason="needs PyTorch with CUDA")
def test_gpu_torch_dlpack_both_ways():
    if not _real_gpu():
        pytest.skip("cad has no real GPU here")
    x = cad.tensor(np.arange(6.0).reshape(2, 3), device="cuda")
    t = torch.from_dlpack(x)
    assert t.is_cuda and t.data_ptr() == x.__cuda_array_interface__["data"][0]
    np.testing.assert_array_equal(t.cpu().numpy(), np.arange(6.0).reshape(2, 3))
    u = torch.arange(4.0, dtype=torch.float64, device="cuda")
    y = cad.from_dlpack(u)
    assert y.device.type == "cuda" and y.__cuda_array_interface__["data"][0] == u.data_ptr()
    g = cad.grad(lambda v: cad.sum(v * v))(y)
    np.testing.assert_allclose(np.asarray(g.cpu()), 2 * np.arange(4.0))
    z = cad.tensor(u, device="cuda")   # through __cuda_array_interface__, a device copy
    assert z.__cuda_array_interface__["data"][0] != u.data_ptr()


def test_gpu_cupy_both_ways():
    cp = pytest.importorskip("cupy")
    if not _real_gpu():
        pytest.skip("cad has no real GPU here")
    a = cp.arange(5.0)
    y = cad.from_dlpack(a)
    np.testing.assert_array_equal(np.asarray(y.cpu()), np.arange(5.0))
    b = cp.asarray(cad.tensor([1.0, 2.0], device="cuda"))   # CuPy reads __cuda_array_interface__
    np.testing.assert_array_equal(cp.asnumpy(b), [1.0, 2.0])
    c = cp.from_dlpack(cad.tensor([3.0], device="cuda"))
    np.testing.assert_array_equal(cp.asnumpy(c), [3.0])


@pytest.mark.skipif(torch is None or not torch.cuda.is_available(), reason="needs PyTorch with CUDA")
def test_gpu_torch_views_dtypes_and_streams():
    if not _real_gpu():
        pytest.skip("cad has no real GPU here")
    base = torch.arange(12.0, dtype=torch.float64, device="cuda").reshape(3, 4)
    v = base[:, ::2]                                   # a strided view: no copy, strides kept
    y = cad.from_dlpack(v)
    assert y.__cuda_array_interface__["data"][0] == v.data_ptr()
    np.testing.assert_array_equal(np.asarray(y.cpu()), v.cpu().numpy())
    base.add_(1.0)                                     # the producer writes: the tensor sees it
    torch.cuda.synchronize()
    np.testing.assert_array_equal(np.asarray(y.cpu()), v.cpu().numpy())
    own = cad.from_dlpack(v, copy=True)                # copy=True owns its memory
    base.add_(1.0)
    torch.cuda.synchronize()
    np.testing.assert_array_equal(np.asarray(own.cpu()), v.cpu().numpy() - 1.0)
    for tdt, cdt in [(torch.float32, cad.float32), (torch.int64, cad.int64), (torch.bool, cad.bool)]:
        src = (torch.arange(5, device="cuda") % 2).to(tdt)
        c = cad.from_dlpack(src)
        assert c.dtype == cdt
        np.testing.assert_array_equal(np.asarray(c.cpu()), src.cpu().numpy())
        back = torch.from_dlpack(c)
        assert back.dtype == tdt and torch.equal(back, src)
    s = torch.cuda.Stream()                            # a consumer on its own stream
    with torch.cuda.stream(s):
        x = cad.tensor(np.arange(3.0), device="cuda") * 2.0
        t = torch.from_dlpack(x)
        w = t + 1.0
    s.synchronize()
    np.testing.assert_array_equal(w.cpu().numpy(), [1.0, 3.0, 5.0])
    x = cad.tensor(np.arange(6.0).reshape(2, 3), device="cuda")
    tv = torch.from_dlpack(x.T)                        # a cad view: torch sees its strides
    np.testing.assert_array_equal(tv.cpu().numpy(), np.arange(6.0).reshape(2, 3).T)
    g = torch.tensor(np.asarray(cad.tensor([1.0, 2.0]).cpu()), device="cuda")
    gg = cad.grad(lambda q: cad.sum(cad.sin(q)))(cad.from_dlpack(g))
    np.testing.assert_allclose(np.asarray(gg.cpu()), np.cos([1.0, 2.0]))


def test_gpu_pycuda_gpuarray():
    gpuarray = pytest.importorskip("pycuda.gpuarray")
    if not _real_gpu():
        pytest.skip("cad has no real GPU here")
    # pycuda's own calls need a pycuda context: autoprimaryctx pushes the device's
    # primary context, the one cad uses (pycuda.autoinit would make another)
    import pycuda.autoprimaryctx  # noqa: F401
    a = gpuarray.to_gpu(np.arange(6.0).reshape(2, 3))
    y = cad.from_dlpack(a)                             # through __cuda_array_interface__, no copy
    assert y.__cuda_array_interface__["data"][0] == int(a.gpudata)
    z = cad.tensor(a, device="cuda")                   # a device-to-device copy
    assert z.__cuda_array_interface__["data"][0] != int(a.gpudata)
    np.testing.assert_array_equal(np.asarray((y + z).cpu()), 2 * np.arange(6.0).reshape(2, 3))
