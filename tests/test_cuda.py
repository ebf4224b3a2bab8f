"""The CUDA backend: every op of the table on the device against the CPU path (values
and gradients, float64 and float32, generated from the op table), transfers,
backward through .to("cuda"), a training loop, out-of-memory and device-mismatch
errors.

On a machine with a GPU these run on it (and the tests marked ``cuda`` with them);
elsewhere on the fake device (NOTE [ CUDA backend ]): the same launcher and
kernels compiled for the host, on host memory."""
import os
import subprocess
import sys

import numpy as np
import pytest

import cad
from cad.ops import REGISTRY

from ops.test_rules import ALL, ids

REAL = cad.cuda.is_available() and not cad.cuda.is_fake()
if not REAL:
    cad.cuda._use_fake()
real_gpu = pytest.mark.skipif(not REAL, reason="needs an NVIDIA GPU")
pytestmark = pytest.mark.cuda   # -m cuda selects these (on the fake device without a GPU)

# ops whose numpy fallbacks are checked elsewhere: argmax/argmin/sign/floor/ceil/round
# run on the host and come back (covered by test_nondiff_ops_come_back_to_the_device)
CASES = [(op, c) for op, c in ALL]


def _domain(op, k):
    d = op.domain
    if isinstance(d[0], tuple):
        return d[k] if k < len(d) else d[-1]
    return d


def build_both(op, case, dtype, seed=0):
    """(cpu leaves, device leaves, call(leaves, dev)) for one case of the op table"""
    rng = np.random.default_rng(seed)
    cpu, dev, makers = [], [], []
    for k, spec in enumerate(case.inputs):
        lo, hi = _domain(op, k)
        if isinstance(spec, tuple) and spec and isinstance(spec[0], str):
            kind, val = spec
        else:
            kind, val = "A", spec
        if kind in ("A", "T", "S", "V"):
            if kind == "V":
                a = np.asarray(val, dtype=np.float64)
            else:
                shape = tuple(val)
                if kind == "S":
                    shape = (2 * shape[0],) + shape[1:]
                base = rng.uniform(lo, hi, size=shape[::-1] if kind == "T" else shape)
                a = base.T if kind == "T" else base
            c = cad.tensor(a.astype(dtype) if a.dtype.kind == "f" else a, requires_grad=op.differentiable)
            d = c.detach().to("cuda")
            if kind == "T" and a.ndim > 1:   # keep the non-contiguous layout on the device
                d = cad.tensor(a.T.astype(dtype)).to("cuda").T
            d = d.detach().requires_grad_(op.differentiable)
            cpu.append(c)
            dev.append(d)
            i = len(cpu) - 1
            makers.append((lambda ls, i=i: ls[i][::2]) if kind == "S" else (lambda ls, i=i: ls[i]))
        elif kind in ("I", "B", "F"):
            arr = np.asarray(val)
            if kind == "F" and arr.dtype.kind == "f":
                arr = arr.astype(dtype)
            tc = cad.tensor(arr)
            td = tc.to("cuda")
            makers.append(lambda ls, tc=tc, td=td: td if ls and ls[0].is_cuda else tc)
        elif kind == "C":
            makers.append(lambda ls, v=val: v)
        else:
            raise ValueError(kind)

    def call(ls, on_dev):
        xs = [m(ls) for m in makers]
        if not ls:   # no leaves: pick the device from the flag
            xs = [x.to("cuda") if on_dev and isinstance(x, cad.Tensor) else x for x in xs]
        if op.seq:
            return op.api(xs, **case.kwargs)
        return op.api(*xs, **case.kwargs)
    return cpu, dev, call


def _tol(dtype):
    return (1e-9, 1e-11) if dtype == np.float64 else (2e-4, 1e-5)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("op,case", CASES, ids=[ids(p) for p in CASES])
def test_op_on_device_matches_cpu(op, case, dtype):
    cpu, dev, call = build_both(op, case, dtype)
    want = call(cpu, False)
    got = call(dev, True)
    outs_w = want if isinstance(want, (tuple, list)) else [want]
    outs_g = got if isinstance(got, (tuple, list)) else [got]
    rtol, atol = _tol(dtype)
    for w, g in zip(outs_w, outs_g):
        assert g.device == cad.device("cuda"), f"{op.name}: result on {g.device}"
        assert g.shape == w.shape and g.dtype == w.dtype, (g.shape, w.shape, g.dtype, w.dtype)
        np.testing.assert_allclose(np.asarray(g.cpu()), np.asarray(w), rtol=rtol, atol=atol)
    w0 = outs_w[0]
    if not (op.differentiable and cpu and w0.dtype.kind == "f" and w0.requires_grad):
        return
    seed = np.random.default_rng(7).standard_normal(w0.shape).astype(w0.dtype)
    gw = cad.autograd.grad((w0 * cad.tensor(seed)).sum(), cpu, allow_unused=True)
    gg = cad.autograd.grad((outs_g[0] * cad.tensor(seed).to("cuda")).sum(), dev, allow_unused=True)
    for a, b in zip(gw, gg):
        if a is None:
            assert b is None
            continue
        assert b.device == cad.device("cuda") and b.shape == a.shape and b.dtype == a.dtype
        np.testing.assert_allclose(np.asarray(b.cpu()), np.asarray(a), rtol=rtol, atol=atol)


JVP_CASES = [(op, c) for op, c in CASES if op.differentiable]


@pytest.mark.parametrize("op,case", JVP_CASES, ids=[ids(p) for p in JVP_CASES])
def test_op_jvp_on_device_matches_cpu(op, case):
    cpu, dev, call = build_both(op, case, np.float64)
    if not cpu:
        return
    rng = np.random.default_rng(3)
    tans = [rng.standard_normal(x.shape) for x in cpu]
    _, tw = cad.jvp(lambda *ls: call(list(ls), False), tuple(cpu), tuple(cad.tensor(t) for t in tans))
    _, tg = cad.jvp(lambda *ls: call(list(ls), True), tuple(dev),
                    tuple(cad.tensor(t).to("cuda") for t in tans))
    if tw is None or (isinstance(tw, cad.Tensor) and tw.dtype.kind != "f"):
        return
    tw = tw if isinstance(tw, (tuple, list)) else [tw]
    tg = tg if isinstance(tg, (tuple, list)) else [tg]
    for a, b in zip(tw, tg):
        assert b.is_cuda and b.shape == a.shape
        np.testing.assert_allclose(np.asarray(b.cpu()), np.asarray(a), rtol=1e-9, atol=1e-11)


def test_cuda_module_functions():
    assert cad.cuda.is_available() and cad.cuda.device_count() >= 1
    x = cad.ones(1000, device="cuda") * 2.0
    cad.cuda.synchronize()
    info = cad.cuda.memory_info()
    assert info["in_use"] > 0 and info["total"] > 0 and isinstance(cad.cuda.get_device_name(), str)
    del x
    cad.cuda.empty_cache()
    assert cad.cuda.memory_info()["cached"] == 0
    assert cad.cuda.allow_tf32 is False


def test_transfers_and_attributes():
    x = cad.tensor([[1.0, 2.0], [3.0, 4.0]])
    d = x.to("cuda")
    assert d.is_cuda and d.device == cad.device("cuda") and str(d.device) == "cuda:0"
    assert d.shape == (2, 2) and d.dtype == np.float64 and d.ndim == 2 and d.size == 4
    assert d.cpu().tolist() == [[1.0, 2.0], [3.0, 4.0]] and d.tolist() == [[1.0, 2.0], [3.0, 4.0]]
    assert d.cuda() is d and x.cpu() is x and d.to("cuda:0") is d
    assert "device='cuda:0'" in repr(d)
    assert d[1, 0].item() == 3.0 and float(d.sum()) == 10.0 and len(d) == 2
    with pytest.raises(cad.DeviceError, match="cpu"):
        d.numpy()
    with pytest.raises(cad.DeviceError, match="cpu"):
        np.asarray(d)
    assert cad.tensor([1, 2], device="cuda").is_cuda
    assert cad.zeros(3, device="cuda").is_cuda and cad.ones(2, 2, device="cuda").cpu().tolist() == [[1, 1], [1, 1]]
    assert d.to(cad.float32).dtype == np.float32 and d.to(cad.float32).is_cuda
    f = cad.tensor([1.5], dtype=cad.float32).to("cuda")
    assert f.dtype == np.float32 and f.cpu().tolist() == [1.5]
    with pytest.raises(cad.DeviceError, match="cuda:1"):
        x.to("cuda:1")


def test_gradient_flows_back_through_to_device():
    x = cad.tensor([0.5, -1.0, 2.0], requires_grad=True)
    y = (cad.sin(x.to("cuda")) * 3.0).sum()
    y.backward()
    assert x.grad is not None and not x.grad.is_cuda
    np.testing.assert_allclose(x.grad.numpy(), 3 * np.cos([0.5, -1.0, 2.0]), rtol=1e-12)
    d = cad.tensor([1.0, 2.0], requires_grad=True).to("cuda").detach().requires_grad_()
    z = (d.cpu() ** 2).sum()
    (g,) = cad.autograd.grad(z, [d])
    assert g.is_cuda and g.cpu().tolist() == [2.0, 4.0]
    # transforms on device values
    gx = cad.grad(lambda v: (cad.tanh(v) ** 2).sum())(cad.tensor([0.3, 0.7]).to("cuda"))
    assert gx.is_cuda
    np.testing.assert_allclose(gx.cpu().numpy(), 2 * np.tanh([0.3, 0.7]) / np.cosh([0.3, 0.7]) ** 2,
                               rtol=1e-12)
    H = cad.hessian(lambda v: (v ** 3).sum(), cad.ones(3).to("cuda"))
    assert H.is_cuda and np.allclose(H.cpu().numpy(), 6 * np.eye(3))


def test_device_mismatch_names_both_devices():
    a = cad.ones(3)
    b = cad.ones(3).to("cuda")
    with pytest.raises(cad.DeviceError, match="cpu.*cuda:0|cuda:0.*cpu"):
        a + b
    with pytest.raises(cad.DeviceError, match="cuda"):
        cad.matmul(cad.ones((2, 2)), b[:2].reshape(2, 1))
    with pytest.raises(cad.DeviceError, match="cuda"):
        cad.stack([a, b])


def test_nondiff_ops_come_back_to_the_device():
    d = cad.tensor([[3.0, -1.0], [0.5, 2.0]]).to("cuda")
    for r in (cad.argmax(d, axis=1), cad.sign(d), d > 0, cad.floor(d), d.any(), (d > 0).all()):
        assert r.is_cuda
    assert cad.argmax(d, axis=1).cpu().tolist() == [0, 1]
    i = cad.arange(4).to("cuda")
    assert (i * 2 + 1).cpu().tolist() == [1, 3, 5, 7] and (i * 2).is_cuda
    assert (i.sum()).cpu().item() == 6


def test_indexing_on_device():
    a = np.arange(24.0).reshape(2, 3, 4)
    d = cad.tensor(a, requires_grad=True).to("cuda").detach().requires_grad_()
    np.testing.assert_array_equal(d[1, :, ::2].cpu().numpy(), a[1, :, ::2])
    np.testing.assert_array_equal(d[:, [0, 2, 0]].cpu().numpy(), a[:, [0, 2, 0]])
    m = cad.tensor(a > 10).to("cuda")
    np.testing.assert_array_equal(d[m].cpu().numpy(), a[a > 10])
    (g,) = cad.autograd.grad(d[:, [0, 2, 0]].sum(), [d])
    want = np.zeros_like(a)
    np.add.at(want, (slice(None), [0, 2, 0]), 1.0)
    np.testing.assert_array_equal(g.cpu().numpy(), want)
    e = cad.zeros(5).to("cuda")
    e[[1, 3, 1]] = cad.tensor([1.0, 2.0, 3.0]).to("cuda")
    assert e.cpu().tolist() == [0.0, 3.0, 0.0, 2.0, 0.0] and e.is_cuda


def test_training_loop_on_device_matches_cpu():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 8))
    y = rng.integers(0, 3, 64)
    W1 = rng.standard_normal((8, 16)) * 0.3
    W2 = rng.standard_normal((16, 3)) * 0.3
    losses = {}
    for dev in ("cpu", "cuda"):
        Xt, yt = cad.tensor(X).to(dev), cad.tensor(y).to(dev)
        w1 = cad.tensor(W1).to(dev).detach().requires_grad_()
        w2 = cad.tensor(W2).to(dev).detach().requires_grad_()
        b1 = cad.zeros(16).to(dev).detach().requires_grad_()
        out = []
        for _ in range(20):
            loss = cad.cross_entropy(cad.tanh(Xt @ w1 + b1) @ w2, yt)
            loss.backward()
            with cad.no_grad():
                for p in (w1, w2, b1):
                    p -= 0.5 * p.grad
                    p.grad = None
            out.append(float(loss))
        losses[dev] = out
    assert losses["cuda"][-1] < 0.8 * losses["cuda"][0]
    np.testing.assert_allclose(losses["cuda"], losses["cpu"], rtol=1e-9)


def test_out_of_memory_is_clear_and_keeps_tensors():
    keep = cad.tensor([1.0, 2.0, 3.0]).to("cuda")
    info = cad.cuda.memory_info()
    if not REAL:   # the fake device: a small memory, so the host does not fill up
        cad._core._engine.cuda_set_fake_limit(info["in_use"] + info["cached"] + (64 << 20))
    try:
        n = int(cad.cuda.memory_info()["total"] // 8) + (1 << 20)
        with pytest.raises(cad.cuda.OutOfMemoryError, match="memory"):
            cad.zeros(n, device="cuda")
        with pytest.raises(MemoryError, match="cannot allocate"):
            (keep.reshape(3, 1) * cad.ones(1, n // 3 + 1, device="cpu").to("cuda") if not REAL
             else cad.zeros(n // 2, device="cuda") + cad.zeros(n // 2, device="cuda"))
    finally:
        if not REAL:
            cad._core._engine.cuda_set_fake_limit(1 << 32)
    assert keep.cpu().tolist() == [1.0, 2.0, 3.0]
    assert (keep * 2).cpu().tolist() == [2.0, 4.0, 6.0]


def test_large_reductions_split_over_threads_match_cpu():
    """reductions and broadcast gradients big enough for the partial-sum path
    (NOTE [ Kernel iteration ])"""
    rng = np.random.default_rng(5)
    for dtype in (np.float64, np.float32):
        a = rng.standard_normal((300, 257)).astype(dtype)
        b = rng.standard_normal((257,)).astype(dtype)
        s = rng.standard_normal(()).astype(dtype)
        rtol = 1e-10 if dtype == np.float64 else 1e-4
        res = {}
        for dev in ("cpu", "cuda"):
            x = cad.tensor(a).to(dev).detach().requires_grad_()
            y = cad.tensor(b).to(dev).detach().requires_grad_()
            z = cad.tensor(s).to(dev).detach().requires_grad_()
            out = [x.sum(), x.sum(axis=0), x.sum(axis=1), x.max(), x.max(axis=0), x.min(axis=1),
                   (x * x).mean(), cad.logsumexp(x, axis=1)]
            loss = ((x + y) * z).sum() + cad.tanh(x * y).sum() + x.max() + (x ** 2).prod(axis=1).sum() * 0
            gs = cad.autograd.grad(loss, [x, y, z])
            res[dev] = [np.asarray(t.cpu()) for t in out + list(gs)]
        for u, v in zip(res["cpu"], res["cuda"]):
            np.testing.assert_allclose(v, u, rtol=rtol, atol=rtol)


@real_gpu
@pytest.mark.cuda
def test_tf32_switch_and_float32_matmul_accuracy():
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((256, 256)).astype(np.float32), rng.standard_normal((256, 256)).astype(np.float32)
    ref = a.astype(np.float64) @ b
    da, db = cad.tensor(a).to("cuda"), cad.tensor(b).to("cuda")
    exact = (da @ db).cpu().numpy()
    assert np.abs(exact - ref).max() < 1e-3
    cad.cuda.allow_tf32 = True
    try:
        fast = (da @ db).cpu().numpy()
    finally:
        cad.cuda.allow_tf32 = False
    assert np.abs(fast - ref).max() < 0.5


def test_no_gpu_errors_say_what_is_missing():
    if REAL:
        pytest.skip("this machine has a GPU")
    code = ("import sys, cad\n"
            "print('PYCUDA', 'pycuda' in sys.modules)\n"   # import cad never imports pycuda
            "try:\n    cad.ones(2).to('cuda')\nexcept cad.DeviceError as e:\n    print('ERR', e)\n"
            "print('AVAIL', cad.cuda.is_available(), cad.cuda.device_count())\n")
    env = dict(os.environ)
    env.pop("CAD_CUDA_FAKE", None)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env).stdout
    assert "ERR to: CUDA is not available" in out, out
    assert ("driver" in out or "no CUDA device" in out or "sees no" in out), out
    assert "AVAIL False 0" in out and "PYCUDA False" in out, out


def test_generated_kernels_compile_with_nvcc(tmp_path):
    """the CUDA module cad builds at run time compiles for the GPU machine's arch"""
    import shutil
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc is not installed")
    src = os.path.join(os.path.dirname(cad._core._engine.__file__), "_kernels.cu")
    # -Xcicc -O0: the whole front end and PTX generation without NVVM's optimizer
    # (8 s instead of 100 s for this 740 kB module; the driver optimizes at load anyway)
    r = subprocess.run([nvcc, "-ptx", "-arch=sm_90", "-Xcicc", "-O0", src, "-o", str(tmp_path / "k.ptx")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    ptx = (tmp_path / "k.ptx").read_text()
    for name in ("k_acc_f64", "k_cad_add_fwd_f32", "k_xentb_f32", "k_cad_tanh_vjp0_f64_set"):
        assert f".entry {name}(" in ptx


def _host_linalg(op, c):
    """matrix norms through the singular values run cad.linalg on the host (README):
    a tape that moves values between devices is not replayable"""
    o = c.kwargs.get("ord")
    return op.name == "norm" and (o in ("nuc", -2) or (o == 2 and "axis" not in c.kwargs))


REPLAY_CASES = [(op, c) for op, c in CASES if op.name not in ("argmax", "argmin", "sign", "floor",
                                                               "ceil", "round", "argsort", "sort")
                and not _host_linalg(op, c)]


@pytest.mark.parametrize("op,case", REPLAY_CASES, ids=[ids(p) for p in REPLAY_CASES])
def test_replay_on_device_equals_eager(op, case):
    """a tape recorded on CUDA values replays on the device (NOTE [ CUDA replay ]):
    values and gradients equal eager device execution, for every op of the table"""
    _, dev0, call = build_both(op, case, np.float64, seed=0)
    _, dev1, _ = build_both(op, case, np.float64, seed=1)
    if not dev0:
        pytest.skip("no tensor inputs")
    f = lambda *ls: call(list(ls), True)  # noqa: E731
    # fused regions run through the interpreter on the fake device; on a GPU each
    # would be an nvcc run, so the per-op cases replay record by record there
    # (the fusion tests below compile their kernels)
    cad.cuda.fuse_replay = not REAL
    try:
        tape = cad.record(f, *[d.detach() for d in dev0])
    finally:
        cad.cuda.fuse_replay = True
    want = f(*dev1)
    got = tape(*[d.detach() for d in dev1])
    want = want[0] if isinstance(want, (tuple, list)) else want
    got = got[0] if isinstance(got, (tuple, list)) else got
    assert got.is_cuda and got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_allclose(np.asarray(got.cpu()), np.asarray(want.cpu()), rtol=1e-12, atol=1e-12)
    if not (op.differentiable and want.dtype.kind == "f"):
        return
    w = cad.tensor(np.random.default_rng(5).standard_normal(want.shape)).to("cuda")

    def loss(*ls):
        y = f(*ls)
        return ((y[0] if isinstance(y, (tuple, list)) else y) * w).sum()
    cad.cuda.fuse_replay = not REAL
    try:
        lt = cad.record(loss, *[d.detach() for d in dev0])
    finally:
        cad.cuda.fuse_replay = True
    g_replay = lt.grad(*[d.detach() for d in dev1])
    leaves = [d.detach().requires_grad_(d.dtype.kind == "f") for d in dev1]
    g_eager = cad.autograd.grad(loss(*leaves), [x for x in leaves if x.requires_grad], allow_unused=True)
    for a, b in zip(g_replay, g_eager):
        assert a.is_cuda
        np.testing.assert_allclose(np.asarray(a.cpu()), np.zeros(a.shape) if b is None else np.asarray(b.cpu()),
                                   rtol=1e-10, atol=1e-12)


def test_replay_on_device_mlp_step_threads_and_errors():
    rng = np.random.default_rng(2)
    W1 = cad.tensor(rng.standard_normal((8, 16)) / 3).to("cuda")
    W2 = cad.tensor(rng.standard_normal((16, 3)) / 4).to("cuda")
    y = cad.tensor(rng.integers(0, 3, 32)).to("cuda")

    def loss(X, w1, w2):
        return cad.cross_entropy(cad.tanh(X @ w1) @ w2, y)
    X = cad.tensor(rng.standard_normal((32, 8))).to("cuda")
    tape = cad.record(loss, X, W1, W2)
    v, g = tape.value_and_grad(X, W1, W2, argnums=(1, 2))
    ls = [W1.detach().requires_grad_(), W2.detach().requires_grad_()]
    ge = cad.autograd.grad(loss(X, *ls), ls)
    np.testing.assert_allclose(float(v.cpu()), float(loss(X, W1, W2).cpu()), rtol=1e-12)
    for a, b in zip(g, ge):
        assert a.is_cuda
        np.testing.assert_allclose(np.asarray(a.cpu()), np.asarray(b.cpu()), rtol=1e-10, atol=1e-12)
    # host inputs are moved to the device (as jax.jit does); bad shapes are named
    np.testing.assert_allclose(float(tape(X.cpu(), W1, W2).cpu()), float(v.cpu()), rtol=1e-12)
    with pytest.raises(cad.ShapeError, match="input 0 has shape"):
        tape(cad.zeros((3, 8), dtype=cad.float64, device="cuda"), W1, W2)
    # threads replay one tape at once
    import threading
    Xs = [cad.tensor(rng.standard_normal((32, 8))).to("cuda") for _ in range(4)]
    want = [np.asarray(tape.grad(x, W1, W2)[1].cpu()) for x in Xs]
    got = [None] * 4

    def work(k):
        for _ in range(5):
            got[k] = np.asarray(tape.grad(Xs[k], W1, W2)[1].cpu())
    ts = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    # a tape that moves values between devices is refused, clearly
    with pytest.raises(cad.DeviceError, match="one device"):
        cad.record(lambda x: (x.to("cuda") * 2.0).sum(), cad.tensor([1.0, 2.0]))
    cpu_tape = cad.record(lambda x: cad.sin(x) * 2.0, 1.0)
    with pytest.raises(cad.DeviceError, match="recorded on the CPU"):
        cpu_tape(cad.tensor(1.0).to("cuda"))


def test_overlapping_windows_accumulate_like_the_cpu():
    """a destination whose kept strides overlap (a sliding window) must not race"""
    C = cad._core._engine
    g = np.arange(9.0).reshape(3, 3)
    want = np.asarray(C.unview(cad.tensor(g), 0, (3, 3), (1, 1), (5,)))
    got = C.unview(cad.tensor(g).to("cuda"), 0, (3, 3), (1, 1), (5,))
    np.testing.assert_array_equal(got.cpu().numpy(), want)
    assert want.tolist() == [0.0, 4.0, 12.0, 12.0, 8.0]
    x = cad.tensor(np.arange(5.0)).to("cuda").detach().requires_grad_()
    w = C.as_strided(x, 0, (3, 3), (1, 1))   # w[i, j] = x[i + j]
    (gx,) = cad.autograd.grad((w * cad.tensor(g).to("cuda")).sum(), [x])
    np.testing.assert_array_equal(gx.cpu().numpy(), want)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_matmul_layouts_through_the_cublas_mapping(dtype):
    """every operand layout cad hands to cuBLAS (on the fake device: a column-major
    GEMM emulation with cuBLAS's arguments): transposed, sliced, broadcast rows,
    1-D operands, batches with broadcasting; values and gradients"""
    rng = np.random.default_rng(9)
    rtol = 1e-11 if dtype == np.float64 else 1e-4

    def cases(dev):
        def t(a):
            return cad.tensor(a.astype(dtype)).to(dev)
        A = rng.standard_normal((5, 4))
        B = rng.standard_normal((4, 3))
        yield t(A), t(B)
        yield t(A.T.copy()).T, t(B)                          # A column-major
        yield t(A), t(B.T.copy()).T                          # B column-major
        yield t(np.concatenate([A, A], 1))[:, ::2], t(B)     # strided columns: copied first
        yield t(A[:1]).expand((5, 4)), t(B)                   # a broadcast row (stride 0)
        yield t(A[0]), t(B)                                  # 1-D @ 2-D
        yield t(A), t(B[:, 0])                               # 2-D @ 1-D
        yield t(A[0]), t(B[:, 0])                            # 1-D @ 1-D
        yield t(rng.standard_normal((2, 3, 5, 4))), t(rng.standard_normal((3, 4, 2)))  # batches
        yield t(rng.standard_normal((2, 1, 5, 4))), t(rng.standard_normal((3, 4, 2)))  # broadcast batch
        yield t(rng.standard_normal((3, 5, 4))), t(B[:, 0])  # batch @ 1-D
        yield t(rng.standard_normal((0, 4))), t(B)           # empty
    for (a0, b0), seed in zip(cases("cpu"), range(100)):
        rng2 = np.random.default_rng(seed)
        a1, b1 = a0.to("cuda"), b0.to("cuda")
        la, lb = a0.detach().requires_grad_(), b0.detach().requires_grad_()
        da, db = a1.detach().requires_grad_(), b1.detach().requires_grad_()
        want, got = la @ lb, da @ db
        assert got.is_cuda and got.shape == want.shape
        np.testing.assert_allclose(got.cpu().numpy(), want.numpy(), rtol=rtol, atol=rtol)
        if want.size:
            w = rng2.standard_normal(want.shape).astype(dtype)
            ga = cad.autograd.grad((want * cad.tensor(w)).sum(), [la, lb])
            gd = cad.autograd.grad((got * cad.tensor(w).to("cuda")).sum(), [da, db])
            for x, y in zip(ga, gd):
                np.testing.assert_allclose(y.cpu().numpy(), x.numpy(), rtol=rtol, atol=rtol)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_long_scalar_chains_on_the_device_sweep_in_one_kernel(dtype):
    """runs of 0-d device records are swept by one kernel (NOTE [ Device scalar runs ]):
    the same gradients as the CPU, with values reused, constants the partials read,
    records no gradient reaches, intermediates asked for, and retain_graph"""
    rtol = 1e-12 if dtype == np.float64 else 2e-5

    def f(x, y):
        a, unused = x, []
        for i in range(40):
            a = cad.sin(a) * 0.9 + y * a if i % 3 == 0 else (a * a + 0.5 if i % 3 == 1 else cad.exp(-a) + x)
            unused.append(a * 3.0)           # recorded, but no gradient reaches it
            if i == 20:
                mid = a
        return cad.tanh(a) / (y * y + 1.0), mid

    res = {}
    for dev in ("cpu", "cuda"):
        x = cad.tensor(np.asarray(0.3, dtype)).to(dev).detach().requires_grad_()
        y = cad.tensor(np.asarray(0.7, dtype)).to(dev).detach().requires_grad_()
        out, mid = f(x, y)
        g1 = cad.autograd.grad(out, [x, y, mid], retain_graph=True)
        g2 = cad.autograd.grad(out, [x, y], retain_graph=True)
        out.backward()
        res[dev] = [float(v) for v in (*g1, *g2, x.grad, y.grad, out)]
        assert all(v.device == cad.device(dev) for v in (*g1, x.grad))
    np.testing.assert_allclose(res["cuda"], res["cpu"], rtol=rtol)


def test_cross_entropy_bad_label_is_reported_at_the_next_copy():
    """the label check runs on the device (no round trip per call, as PyTorch's
    device-side asserts) and raises at the next copy to the host or synchronisation"""
    z = cad.tensor(np.zeros((3, 4)), device="cuda")
    loss = cad.cross_entropy(z, cad.tensor(np.array([0, 4, 1])).to("cuda"))
    with pytest.raises(cad.cuda.DeviceError, match="cross_entropy: a label outside"):
        loss.cpu()
    loss = cad.cross_entropy(z, cad.tensor(np.array([0, -1, 1])).to("cuda"))
    with pytest.raises(cad.cuda.DeviceError, match="cross_entropy"):
        cad.cuda.synchronize()
    # reported once; good labels afterwards work
    good = cad.cross_entropy(z, cad.tensor(np.array([0, 3, 1])).to("cuda"))
    np.testing.assert_allclose(float(good.cpu()), np.log(4.0), rtol=1e-12)


def _eager_grads(f, xs):
    ls = [x.detach().requires_grad_() for x in xs]
    return f(*ls), cad.autograd.grad(f(*ls), ls)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_fused_replay_regions(dtype):
    """NOTE [ Fused replay ]: runs of elementwise records become one kernel forward
    and one backward; values and gradients equal eager execution; inner values that
    escape end a region; 0-d constants broadcast; an input used inside and after a
    region gets both gradient contributions"""
    rng = np.random.default_rng(11)
    rtol = 1e-12 if dtype == np.float64 else 2e-5
    c = cad.tensor(np.asarray(0.7, dtype=dtype)).to("cuda")

    def f(x, y):
        a = cad.sin(x) * x + cad.exp(-x * x)          # region 1 (x read three times)
        b = a * 2.0 + y * c                          # continues: 0-d constants broadcast
        h = cad.tanh(b)
        k = (h * h).sum()                            # h escapes to the reduction
        return k + (h * y).sum() + (x * 3.0).mean()  # x used again after the region
    xs = [cad.tensor(rng.standard_normal((33, 7)).astype(dtype)).to("cuda") for _ in range(2)]
    tape = cad.record(f, *xs)
    assert tape._replay.fused_regions >= 2
    src = tape._replay.fz_sources[0]
    assert "fz_fwd_0" in src and "fz_bwd_0" in src
    ys = [cad.tensor(rng.standard_normal((33, 7)).astype(dtype)).to("cuda") for _ in range(2)]
    want, gw = _eager_grads(f, ys)
    np.testing.assert_allclose(float(tape(*ys).cpu()), float(want.cpu()), rtol=rtol)
    v, gs = tape.value_and_grad(*ys)
    np.testing.assert_allclose(float(v.cpu()), float(want.cpu()), rtol=rtol)
    for a, b in zip(gs, gw):
        np.testing.assert_allclose(np.asarray(a.cpu()), np.asarray(b.cpu()), rtol=10 * rtol, atol=rtol)
    # one input's gradient only; then both again (flags recomputed per mask)
    g1 = tape.grad(*ys, argnums=1)
    np.testing.assert_allclose(np.asarray(g1.cpu()), np.asarray(gw[1].cpu()), rtol=10 * rtol, atol=rtol)
    # the same without fusion
    cad.cuda.fuse_replay = False
    try:
        plain = cad.record(f, *xs)
    finally:
        cad.cuda.fuse_replay = True
    assert plain._replay.fused_regions == 0
    for a, b in zip(plain.grad(*ys), gs):
        np.testing.assert_allclose(np.asarray(a.cpu()), np.asarray(b.cpu()), rtol=10 * rtol, atol=rtol)
    # the Python sweeps (jacobian) see every value: they replay unfused
    jt = cad.record(lambda x: cad.exp(cad.sin(x) * 0.5) + x, xs[0][0])
    J = jt.jacobian(ys[0][0])
    np.testing.assert_allclose(np.asarray(J.cpu()), np.diag(np.asarray(
        (cad.exp(cad.sin(ys[0][0]) * 0.5) * cad.cos(ys[0][0]) * 0.5 + 1.0).cpu())), rtol=10 * rtol, atol=rtol)


def test_fused_replay_scalar_chain():
    """a 0-d chain: regions write every value, the device sweep does the backward"""
    from bench.w_scalar import chain
    s = cad.tensor(0.5).to("cuda")
    tape = cad.record(lambda a: chain(a, cad.sin), s)
    assert tape._replay.fused_regions >= 1
    for v in (0.3, -1.1):
        x = cad.tensor(v).to("cuda")
        want, (gw,) = _eager_grads(lambda a: chain(a, cad.sin), [x])
        got, (g,) = tape.value_and_grad(x)
        np.testing.assert_allclose(float(got.cpu()), float(want.cpu()), rtol=1e-12)
        np.testing.assert_allclose(float(g.cpu()), float(gw.cpu()), rtol=1e-10)


def test_fused_kernels_compile_with_nvcc(tmp_path):
    """the generated fused kernels are valid CUDA (nvcc -ptx where nvcc is installed)"""
    import shutil
    if shutil.which("nvcc") is None:
        pytest.skip("nvcc not installed")
    from cad import fuse
    x = cad.tensor(np.ones((4, 3), dtype=np.float32)).to("cuda")
    tape = cad.record(lambda a, b: (cad.tanh(a * b + 1.0) * cad.sqrt(b * b + 2.0)).sum(), x, x)
    src = fuse.source(fuse.plan(tape._tape, tape._outs, [])[0])
    (tmp_path / "fz.cu").write_text(src)
    r = subprocess.run(["nvcc", "-ptx", "-arch=sm_90", "-o", str(tmp_path / "fz.ptx"), str(tmp_path / "fz.cu")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    ptx = (tmp_path / "fz.ptx").read_text()
    assert ".entry fz_fwd_0(" in ptx and ".entry fz_bwd_0(" in ptx


def test_save_load_of_a_cuda_tape(tmp_path):
    """a CUDA tape is saved from host copies and loads as a CPU tape"""
    x = cad.tensor(np.arange(3.0)).to("cuda")
    tape = cad.record(lambda a: (cad.sin(a) * 2.0).sum(), x)
    cad.save(tape, tmp_path / "t.cad")
    back = cad.load(tmp_path / "t.cad")
    np.testing.assert_allclose(float(back(x.cpu())), float(tape(x).cpu()), rtol=1e-15)
    np.testing.assert_allclose(np.asarray(back.grad(x.cpu())[0]), np.asarray(tape.grad(x)[0].cpu()), rtol=1e-15)
    cad.save(x, tmp_path / "x.cad")
    np.testing.assert_array_equal(np.asarray(cad.load(tmp_path / "x.cad")), np.arange(3.0))


# ---- vmap on CUDA tensors (the rules are cad ops, so they run on the tensors' device)

def _vmap_cases():
    W = np.random.default_rng(3).standard_normal((4, 3))

    def mlp(w, x):
        return cad.sum(cad.tanh(w @ x) ** 2)
    return {
        "ew": (lambda x: cad.sin(x) * x + 1.0, None),
        "reduce": (lambda x: cad.logsumexp(x, axis=0) + cad.max(x), None),
        "matmul": (lambda x: cad.matmul(cad.tensor(W, device=x.device), x), None),
        "getitem": (lambda x: x[1:] * x[0], None),
        "per_example_grad": (lambda x: cad.grad(mlp)(cad.tensor(W, device=x.device), x), None),
        "jacrev": (lambda x: cad.jacrev(lambda z: cad.sin(z) * cad.sum(z))(x), None),
    }


@pytest.mark.parametrize("name", list(_vmap_cases()))
def test_vmap_on_cuda_matches_cpu(name):
    f, _ = _vmap_cases()[name]
    X = np.random.default_rng(4).standard_normal((5, 3))
    cpu = cad.vmap(f)(cad.tensor(X))
    gpu = cad.vmap(f)(cad.tensor(X).to("cuda"))
    assert gpu.is_cuda
    np.testing.assert_allclose(gpu.cpu().numpy(), cpu.numpy(), rtol=1e-10, atol=1e-12)
