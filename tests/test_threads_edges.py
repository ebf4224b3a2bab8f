"""Concurrency (NOTE [ Threads and .grad ] in the engine) and the edge cases of issue 10:
NaN through reductions' gradients, empty softmax/logsumexp/cross_entropy, argument
checks with clear messages."""
import threading

import numpy as np
import pytest

import cad


def _hammer(x, n_threads, n_iter, make):
    errors = []

    def work():
        try:
            for _ in range(n_iter):
                make(x).backward()
        except BaseException as e:   # pragma: no cover
            errors.append(e)
    ts = [threading.Thread(target=work) for _ in range(n_threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors, errors


def test_concurrent_backward_into_one_leaf_is_exact():
    x = cad.randn(100000, requires_grad=True)
    _hammer(x, 10, 100, lambda x: (x * 1.0).sum())
    g = x.grad.numpy()
    assert g.min() == 1000 and g.max() == 1000


def test_concurrent_backward_scalar_leaf_is_exact():
    x = cad.tensor(0.5, requires_grad=True)
    _hammer(x, 8, 200, lambda x: x * 2.0)
    assert float(x.grad) == 8 * 200 * 2.0


def test_concurrent_backward_float32_and_two_leaves():
    x = cad.randn(5000, dtype=cad.float32, requires_grad=True)
    w = cad.randn(5000, dtype=cad.float32, requires_grad=True)
    _hammer(x, 6, 50, lambda x: (x * w).sum() + x.sum())
    np.testing.assert_allclose(x.grad.numpy(), 300 * (w.detach().numpy() + 1), rtol=1e-5)
    np.testing.assert_allclose(w.grad.numpy(), 300 * x.detach().numpy(), rtol=1e-5)


# ---- backward's grad_tensors

@pytest.mark.parametrize("gts", [[], [cad.tensor(1.)], [cad.tensor(1.)] * 3])
def test_backward_grad_tensors_count(gts):
    x = cad.ones(3, requires_grad=True)
    with pytest.raises(ValueError, match="grad_tensors"):
        cad.autograd.backward([x.sum(), (x * x).sum()], gts)
    assert x.grad is None


def test_autograd_grad_outputs_count():
    x = cad.ones(3, requires_grad=True)
    with pytest.raises(ValueError, match="grad_outputs"):
        cad.autograd.grad([x.sum(), x.sum()], [x], [None], create_graph=True)


# ---- NaN through reductions (as JAX)

NAN = np.array([1., np.nan, 3.])


@pytest.mark.parametrize("f", [cad.max, cad.min, lambda x: cad.max(x, axis=0),
                               lambda x: cad.logsumexp(x), lambda x: cad.softmax(x)[0],
                               lambda x: cad.log_softmax(x)[2], lambda x: cad.prod(x)],
                         ids=["max", "min", "max0", "lse", "softmax", "log_softmax", "prod"])
def test_nan_propagates_through_reduction_gradients(f):
    assert np.isnan(cad.grad(f)(NAN).numpy()).all()
    assert np.isnan(float(f(cad.tensor(NAN))))


def test_sum_mean_gradients_ignore_nan_values():   # as JAX: d sum / dx = 1 whatever x is
    assert cad.grad(cad.sum)(NAN).tolist() == [1., 1., 1.]
    np.testing.assert_allclose(cad.grad(cad.mean)(NAN).numpy(), [1 / 3] * 3)


@pytest.mark.parametrize("f", [cad.max, cad.min, cad.logsumexp, lambda x: cad.softmax(x)[0]])
def test_nan_gradient_is_nan_everywhere(f):
    assert np.isnan(cad.grad(f)(NAN).numpy()).all()
    x = cad.tensor(NAN, requires_grad=True)
    f(x).backward()
    assert np.isnan(x.grad.numpy()).all()


def test_nan_max_rows_independent():
    x = cad.tensor([[1., np.nan, 3.], [1., 5., 2.]], requires_grad=True)
    cad.max(x, axis=1).sum().backward()
    g = x.grad.numpy()
    assert np.isnan(g[0]).all() and g[1].tolist() == [0., 1., 0.]


def test_nan_max_jacrev_python_rule():
    assert np.isnan(cad.jacrev(cad.max)(NAN).numpy()).all()


# ---- empty inputs where the peers return results

def test_empty_softmax_logsumexp_cross_entropy():
    assert cad.softmax(cad.zeros(0)).shape == (0,)
    assert cad.log_softmax(cad.zeros((2, 0))).shape == (2, 0)
    assert float(cad.logsumexp(cad.zeros(0))) == -np.inf
    np.testing.assert_array_equal(cad.logsumexp(cad.zeros((2, 0)), axis=1).numpy(), [-np.inf, -np.inf])
    assert np.isnan(float(cad.cross_entropy(cad.zeros((0, 3)), np.zeros(0, np.int64))))
    assert float(cad.cross_entropy(cad.zeros((0, 3)), np.zeros(0, np.int64), reduction="sum")) == 0
    assert cad.cross_entropy(cad.zeros((0, 3)), np.zeros(0, np.int64), reduction="none").shape == (0,)
    x = cad.zeros((0, 3), requires_grad=True)
    cad.cross_entropy(x, np.zeros(0, np.int64), reduction="sum").backward()
    assert x.grad.shape == (0, 3)


# ---- clear errors

CASES = [
    (lambda: cad.grad(lambda x: None)(1.0), TypeError, "returned None"),
    (lambda: cad.value_and_grad(lambda x: "a")(1.0), TypeError, "returned a str"),
    (lambda: cad.jvp(cad.sin, cad.ones(3), cad.ones(3)), TypeError, "primals must be a tuple"),
    (lambda: cad.jvp(cad.sin, (cad.ones(3),), cad.ones(3)), TypeError, "tangents must be a tuple"),
    (lambda: cad.grad(3.0), TypeError, "must be a function"),
    (lambda: cad.grad(cad.sin, argnums=1.5), TypeError, "argnums"),
    (lambda: ~cad.ones(2), cad.DTypeError, "invert"),
    (lambda: cad.sum(cad.ones(3), axis=1.5), TypeError, "axis"),
    (lambda: cad.sum(cad.ones(3), axis=[0.5]), TypeError, "axis"),
    (lambda: cad.arange(0, 10, 0), ValueError, "step"),
    (lambda: cad.ones(8).reshape(2 ** 62, 4), cad.ShapeError, "reshape"),
    (lambda: cad.ones(8).reshape(2 ** 62, -1), cad.ShapeError, "reshape"),
    (lambda: cad.ones(8).reshape(2.0, 4), TypeError, "reshape"),
    (lambda: float(cad.ones(3)), TypeError, "float"),
    (lambda: int(cad.ones(3)), TypeError, "int"),
    (lambda: cad.tensor(np.array([2 ** 63 + 1], np.uint64)), OverflowError, "uint64"),
    (lambda: cad.tensor(np.array([2 ** 63 + 1], np.uint64), dtype=cad.int64), OverflowError, "uint64"),
    (lambda: cad.set_num_threads(0), ValueError, "set_num_threads"),
    (lambda: cad.set_num_threads(100000), ValueError, "set_num_threads"),
    (lambda: cad.set_num_threads(2.5), TypeError, "set_num_threads"),
    (lambda: cad.set_cache_limit(-1), ValueError, "set_cache_limit"),
]


@pytest.mark.parametrize("k", range(len(CASES)))
def test_clear_errors(k):
    fn, cls, msg = CASES[k]
    with pytest.raises(cls, match=msg):
        fn()


def test_uint64_in_range_converts():
    assert cad.tensor(np.array([2 ** 63 - 1], np.uint64)).tolist() == [2 ** 63 - 1]


def test_set_num_threads_range_and_default():
    n = cad.get_num_threads()
    cad.set_num_threads(1)
    assert cad.get_num_threads() == 1
    cad.set_num_threads(None)
    assert cad.get_num_threads() == n


def test_tape_rejects_other_float_dtype():
    t = cad.record(lambda x: (x * x).sum(), cad.ones(3))
    with pytest.raises(cad.DTypeError, match="float32"):
        t(cad.ones(3, dtype=cad.float32))
    with pytest.raises(cad.DTypeError, match="float32"):
        t.grad(cad.ones(3, dtype=cad.float32))
    s = cad.record(lambda x: x * x, 2.0)    # a compact scalar program
    with pytest.raises(cad.DTypeError, match="float32"):
        s(cad.tensor(2.0, dtype=cad.float32))
    t32 = cad.record(lambda x: (x * x).sum(), cad.ones(3, dtype=cad.float32))
    with pytest.raises(cad.DTypeError, match="float64"):
        t32(cad.ones(3))


def test_nan_max_gradient_on_the_fake_cuda_device():
    import os
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = ("import cad, numpy as np\n"
            "x = cad.tensor([[1., np.nan, 3.], [1., 5., 2.]]).to('cuda').requires_grad_(True)\n"
            "cad.max(x, axis=1).sum().backward()\n"
            "g = x.grad.cpu().numpy()\n"
            "assert np.isnan(g[0]).all() and g[1].tolist() == [0., 1., 0.], g\n")
    env = dict(os.environ, CAD_CUDA_FAKE="1")
    env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in [env.get("PYTHONPATH")] if p])
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]


def test_pool_under_a_busy_neighbour_gives_identical_results():
    """NOTE [ Pool units ]: each unit is a fixed range merged in unit order, so which
    thread runs it (a descheduled worker's units are taken by the caller) does not
    change a bit of the result"""
    import subprocess
    import sys
    rng = np.random.default_rng(0)
    x = cad.tensor(rng.normal(size=3_000_000))
    w = cad.tensor(rng.normal(size=(3000, 1000)))
    old = cad.get_num_threads()
    try:
        cad.set_num_threads(2)
        calm = (float(cad.sum(x)), np.asarray(cad.exp(w) * 2.0), np.asarray(cad.sum(w, axis=0)))
        procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
        try:
            for _ in range(5):
                busy = (float(cad.sum(x)), np.asarray(cad.exp(w) * 2.0), np.asarray(cad.sum(w, axis=0)))
                assert busy[0] == calm[0]
                assert np.array_equal(busy[1], calm[1])
                assert np.array_equal(busy[2], calm[2])
        finally:
            for p in procs:
                p.kill()
                p.wait()
    finally:
        cad.set_num_threads(old)


def test_pool_after_a_straggler_runs_the_same_units_on_the_caller():
    """NOTE [ Stragglers ] (pool.c): after a job waited for a worker held off its core,
    the next jobs run on the caller alone; they run the same units in the same order,
    so the results keep every bit, and the pool goes parallel again after them"""
    from cad._core import _engine as E
    rng = np.random.default_rng(1)
    x = cad.tensor(rng.normal(size=1_000_000))
    w = cad.tensor(rng.normal(size=(1000, 600)))
    old = cad.get_num_threads()

    def run():
        return (float(cad.sum(x)), np.asarray(cad.tanh(w) * 2.0), np.asarray(cad.sum(cad.exp(w), axis=0)),
                np.asarray(w @ w.T))
    try:
        cad.set_num_threads(2)
        E._pool_stats(reset=True)
        parallel = run()
        E._pool_stats(reset=True)
        assert not E._pool_contended()
        E._pool_stats(reset=True, serial=1000)
        assert E._pool_stats()["serial_left"] == 1000 and E._pool_contended()
        serial = run()
        st = E._pool_stats()
        assert st["serial"] >= 3 and st["serial_left"] == 1000 - st["serial"], st
        for a, b in zip(parallel, serial):
            assert np.array_equal(a, b)
        E._pool_stats(reset=True, serial=2)
        for _ in range(3):
            again = run()
        st = E._pool_stats()   # (a job that straggled on this shared host may start a count again)
        assert st["serial_left"] == 0 or st["straggles"] > 0, st
        for a, b in zip(parallel, again):
            assert np.array_equal(a, b)
        with pytest.raises(ValueError, match="serial"):
            E._pool_stats(reset=True, serial=-1)
    finally:
        E._pool_stats(reset=True)
        cad.set_num_threads(old)


def test_pool_under_busy_neighbours_falls_back_and_stays_exact():
    """two spinning processes: whatever the straggler count, the results keep every bit
    and the counts are consistent"""
    import subprocess
    import sys
    from cad._core import _engine as E
    rng = np.random.default_rng(2)
    x = cad.tensor(rng.normal(size=(400, 500)))
    old = cad.get_num_threads()
    try:
        cad.set_num_threads(2)
        calm = np.asarray(cad.sum(cad.sin(x) * x, axis=1))
        E._pool_stats(reset=True)
        procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
        try:
            for _ in range(200):
                assert np.array_equal(np.asarray(cad.sum(cad.sin(x) * x, axis=1)), calm)
        finally:
            for p in procs:
                p.kill()
                p.wait()
        st = E._pool_stats()
        assert st["serial_left"] <= st["backoff"] <= 4096, st
        assert st["backoff"] == 0 or st["backoff"] >= 14, st   # (16, less an eighth)
        assert st["straggles"] > 0 or st["serial"] == 0, st
    finally:
        E._pool_stats(reset=True)
        cad.set_num_threads(old)
