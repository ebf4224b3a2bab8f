"""Where a value lives (NOTE [ Storage per device ] in cad/_core/storage.pxi): the
engine above the kernels asks a storage object per device instead of branching on
the device.  Checked two ways: the rooms hold no device branch of their own, and
every operation the interface carries (views, contiguous and converted copies,
indexing, casts, seeds, constants, host access) gives the same values on the CPU
and on the device (the GPU when there is one, else the fake device)."""
import pathlib
import re

import numpy as np
import pytest

import cad

if not (cad.cuda.is_available() and not cad.cuda.is_fake()):
    cad.cuda._use_fake()

CORE = pathlib.Path(cad.__file__).parent / "_core"

# rooms that must ask the storage object; device.pxi (the DevArray type, transfers),
# storage.pxi (the interface itself) and replay.pxi (raw arenas, NOTE [ CUDA replay ])
# are where device-specific code lives
ROOMS = ["construct.pxi", "ops_elementwise.pxi", "ops_reduce.pxi", "ops_shape.pxi",
         "ops_linalg.pxi", "backward.pxi", "tapeview.pxi", "optim.pxi", "tensor.pxi.in"]
BRANCH = re.compile(r"\b(if|elif)\b[^\n]*\._dev\b|\._dev\s+else\b|\bif\s+(not\s+)?dev\s*:")
SAME = re.compile(r"[\w.()<>]*\._dev\s*[!=]=\s*[\w.()<>]+")   # a check that two devices agree
# the host fast path of t[i] (one float64 element of a 1-d array, no Python in between)
ALLOWED = {"tensor.pxi.in": ["type(idx) is int and not self._inline", "if self._dev:   # (the default device"]}


@pytest.mark.parametrize("room", ROOMS)
def test_rooms_hold_no_device_branch(room):
    src = (CORE / room).read_text()
    bad = []
    for i, line in enumerate(src.splitlines(), 1):
        if BRANCH.search(SAME.sub("", line)) and not any(a in line for a in ALLOWED.get(room, [])):
            bad.append(f"{room}:{i}: {line.strip()}")
    assert not bad, "device branches outside storage.pxi:\n" + "\n".join(bad)


def _both(a):
    return cad.tensor(a), cad.tensor(a).to("cuda")


def _same(c, d, rtol=0):
    assert d.device.type == "cuda"
    h = d.cpu()
    assert h.shape == c.shape and h.dtype == c.dtype
    np.testing.assert_allclose(h.numpy(), c.numpy(), rtol=rtol, atol=0)   # (views: bit for bit)


A = np.arange(24.0).reshape(2, 3, 4)

VIEWS = [
    ("reshape", lambda t: cad.reshape(t, (4, 6))),
    ("reshape of a transpose", lambda t: cad.reshape(cad.transpose(t, (2, 0, 1)), (-1,))),
    ("transpose", lambda t: cad.transpose(t, (2, 0, 1))),
    ("swapaxes", lambda t: cad.swapaxes(t, 0, 2)),
    ("expand", lambda t: cad.broadcast_to(t[:, :1], (3, 2, 3, 4))),
    ("basic index", lambda t: t[1, ::-2, 1:3]),
    ("newaxis and ellipsis", lambda t: t[None, ..., 2]),
    ("full index", lambda t: t[1, 2, 3]),
    ("integer array rows", lambda t: t[np.array([1, 0, 1, -1])]),
    ("advanced index", lambda t: t[np.array([0, 1]), :, np.array([3, 0])]),
    ("boolean mask", lambda t: t[A > 10.0]),
    ("contiguous of a view", lambda t: t[:, ::2].contiguous()),
    ("empty slice", lambda t: t[:, 3:, :]),
    ("int cast of a view", lambda t: t[:, 1].astype(cad.int64)),
    ("bool cast", lambda t: (t - 5.0).astype(bool)),
    ("float32 cast of a transpose", lambda t: cad.transpose(t, (1, 0, 2)).astype(cad.float32)),
    ("zero-d", lambda t: cad.reshape(t[0, 0, 1], ())),
]


@pytest.mark.parametrize("name,f", VIEWS, ids=[v[0] for v in VIEWS])
def test_views_and_copies_agree_across_devices(name, f):
    c, d = _both(A)
    _same(f(c), f(d))


@pytest.mark.parametrize("name,f", [v for v in VIEWS if "cast" not in v[0] and "mask" not in v[0]],
                         ids=[v[0] for v in VIEWS if "cast" not in v[0] and "mask" not in v[0]])
def test_gradients_through_views_agree_across_devices(name, f):
    g = np.random.default_rng(0).standard_normal(A.shape)

    def loss(x):
        return cad.sum(f(x) ** 2 * 0.5) + cad.sum(x * cad.tensor(g).to(x.device))

    c = cad.tensor(A, requires_grad=True)
    d = cad.tensor(A).to("cuda").detach().requires_grad_()
    loss(c).backward()
    loss(d).backward()
    np.testing.assert_allclose(d.grad.cpu().numpy(), c.grad.numpy(), rtol=1e-12)


def test_index_errors_name_the_shape_on_both_devices():
    for t in _both(A):
        with pytest.raises(IndexError, match=r"shape \(2, 3, 4\)"):
            t[2]
        with pytest.raises(IndexError, match=r"shape \(2, 3, 4\)"):
            t[np.array([0, 5])]
        with pytest.raises(IndexError, match=r"shape \(2, 3, 4\)"):
            t[0, 0, 0, 0]


def test_setitem_converts_on_the_value_device():
    for x in _both(np.zeros((2, 3))):
        with cad.no_grad():
            x[0] = np.array([1, 2, 3])            # host ints into a float tensor
            x[1, 1:] = cad.tensor([True, False]).to(x.device)   # bools
        np.testing.assert_array_equal(x.cpu().numpy(), [[1, 2, 3], [0, 1, 0]])
    for x in _both(np.zeros(3, dtype=np.int64)):
        with cad.no_grad():
            x[1:] = cad.tensor([2.7, -1.2]).to(x.device)   # floats into ints truncate (numpy)
        np.testing.assert_array_equal(x.cpu().numpy(), [0, 2, -1])


def test_elementwise_results_and_scalars_on_both_devices():
    x = np.random.default_rng(1).standard_normal((5, 4))
    c, d = _both(x)
    for f in (lambda t: t * 2.0 + 1, lambda t: cad.where(True, t, 0.0), lambda t: t > 0.5,
              lambda t: cad.exp(t.T) * t.T,      # Fortran-ordered operands (host result order)
              lambda t: t.astype(cad.int64) * 3, lambda t: (t > 0) & (t < 1)):
        _same(f(c), f(d), rtol=1e-15)   # (the device's exp may differ in the last bit)


def test_seeds_and_constants_on_both_devices():
    x = np.random.default_rng(2).standard_normal((3, 2))
    go = np.random.default_rng(3).standard_normal((3, 2))
    for t in _both(x):
        t = t.detach().requires_grad_()
        y = cad.sin(t)
        y.backward(go)                             # a host grad_output, moved to y's device
        np.testing.assert_allclose(t.grad.cpu().numpy(), np.cos(x) * go, rtol=1e-13)
        t.grad = None
        y = cad.sin(t)
        y.backward(cad.tensor(go, dtype=cad.float32))   # cast to y's dtype
        np.testing.assert_allclose(t.grad.cpu().numpy(), np.cos(x) * go.astype(np.float32), rtol=1e-6)
        z = cad.zeros((2,)).to(t.device)
        z.zero_()
        assert z.device == t.device
        assert cad.ones_like(t).device == t.device
        assert t.any().device == t.device and bool(t.any().item())


def test_host_access_says_which_device():
    c, d = _both(A)
    assert c.__dlpack_device__() == (1, 0) and d.__dlpack_device__() == (2, 0)
    assert str(c.device) == "cpu" and str(d.device) == "cuda:0"
    assert "device='cuda:0'" in repr(d) and "device" not in repr(c)
    np.testing.assert_array_equal(np.from_dlpack(c), A)
    with pytest.raises(cad.DeviceError, match=r"numpy\(\): the tensor \(shape \(2, 3, 4\)\) is on cuda:0"):
        d.numpy()
    with pytest.raises(cad.DeviceError, match="cpu"):
        np.asarray(d)
    with pytest.raises(AttributeError, match="cpu"):
        c.__cuda_array_interface__
    assert d.__cuda_array_interface__["shape"] == (2, 3, 4)


def test_replay_values_and_gradients_agree_across_devices():
    # a replay's arena, constants, seeds and copied-out values and gradients go through
    # its storage object; a view output reads through its strides on the host
    x = np.random.default_rng(4).standard_normal((4, 3))
    W = np.random.default_rng(5).standard_normal((3, 3)).T   # a non-contiguous constant
    res = []
    for xs in _both(x):
        Wd = cad.tensor(W).to(xs.device)
        f = lambda x: cad.sum(cad.tanh(x @ Wd)[:, ::2] ** 2)
        g = lambda x: cad.tanh(x @ Wd).T[1:]                 # a strided view as the output
        tf, tg = cad.record(f, xs), cad.record(g, xs)
        res.append((tf(xs).cpu().numpy(), tf.grad(xs)[0].cpu().numpy(), tg(xs).cpu().numpy(),
                    tg.jacobian(xs).cpu().numpy()))
    for c, d in zip(*res):
        np.testing.assert_allclose(d, c, rtol=1e-13, atol=1e-15)


def test_a_replay_in_a_garbage_cycle_is_freed_safely():
    # the GC clears a Replay's object fields before deallocating it (a Replay reached
    # only from a garbage cycle, or alive at exit): freeing its arena must not go
    # through them (a SIGSEGV at exit under mpiexec found this)
    import subprocess
    import sys
    code = r'''
import gc
import numpy as np
import cad
if not (cad.cuda.is_available() and not cad.cuda.is_fake()):
    cad.cuda._use_fake()

keep = []
for dev in ("cpu", "cuda"):
    for k in range(20):
        x = cad.tensor(np.ones(3) * k).to(dev)
        t = cad.record(lambda x: cad.sum(cad.sin(x) * 2.0), x)
        t(x)
        t.grad(x)
        rp = t._replay
        t._me = t
        cycle = [rp, t]
        cycle.append(cycle)
        if k % 2:
            keep.append(cycle)   # alive at exit, in a cycle
        del t, rp, cycle
        gc.collect()
print("ok")
'''
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and p.stdout.strip() == "ok", (p.returncode, p.stderr[-2000:])
