"""Reverse mode: backward/grad semantics, the tape's lifetime, errors, threads,
the seed's programs."""
import gc
import math
import threading

import numpy as np
import pytest

import cad


def test_leaves_accumulate_grad():
    x = cad.tensor([1.0, 2.0], requires_grad=True)
    (x * x).sum().backward()
    (x * 3.0).sum().backward()
    assert x.grad.tolist() == [5.0, 7.0]
    x.grad = None
    (x ** 3).sum().backward()
    assert x.grad.tolist() == [3.0, 12.0]


def test_autograd_grad_returns_tuple_and_leaves_grad_untouched():
    x = cad.tensor(2.0, requires_grad=True)
    y = cad.tensor([1.0, 3.0], requires_grad=True)
    f = (x * y).sum()
    gx, gy = cad.autograd.grad(f, (x, y))
    assert gx.item() == 4.0 and gy.tolist() == [2.0, 2.0]
    assert x.grad is None and y.grad is None


def test_grad_of_intermediate_and_unused_inputs():
    x = cad.tensor([1.0, 2.0], requires_grad=True)
    h = x * 2
    y = (h * h).sum()
    (gh,) = cad.autograd.grad(y, [h], retain_graph=True)
    assert gh.tolist() == [4.0, 8.0]
    z = cad.tensor(1.0, requires_grad=True)
    with pytest.raises(RuntimeError, match="not used"):
        cad.autograd.grad(y, [z], retain_graph=True)
    assert cad.autograd.grad(y, [x, z], allow_unused=True)[1] is None


def test_grad_outputs_and_nonscalar_error():
    x = cad.tensor([1.0, 2.0, 3.0], requires_grad=True)
    y = x * x
    with pytest.raises(RuntimeError, match=r"not a scalar.*grad_output"):
        y.backward()
    with pytest.raises(ValueError, match="does not match"):
        y.backward(cad.ones(2))
    y.backward(cad.tensor([1.0, 0.0, 2.0]))
    assert x.grad.tolist() == [2.0, 0.0, 12.0]


def test_backward_twice_needs_retain_graph():
    x = cad.tensor(3.0, requires_grad=True)
    y = x * x
    y.backward(retain_graph=True)
    y.backward()
    assert x.grad.item() == 12.0
    with pytest.raises(RuntimeError, match="consumed"):
        y.backward()
    z = y * 2    # a consumed value can still be used as data
    assert z.item() == 18.0
    with pytest.raises(RuntimeError, match="consumed"):
        z.backward()


def test_grad_of_integer_or_non_grad_input_is_an_error():
    with pytest.raises(TypeError, match="floating"):
        cad.tensor([1, 2], requires_grad=True)
    i = cad.tensor([1, 2])
    x = cad.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(TypeError, match="int64"):
        cad.autograd.grad((x * 2).sum(), [i])
    with pytest.raises(RuntimeError, match="does not require grad"):
        cad.tensor(1.0).backward()


def test_inplace_on_a_needed_leaf_is_caught():
    w = cad.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf"):
        w += 1
    with pytest.raises(RuntimeError, match="leaf"):
        w[0] = 5.0
    loss = (w * w).sum()
    with cad.no_grad():
        w -= 0.1          # an optimizer step before backward: the version counter notices
    assert w.requires_grad and w.is_leaf
    with pytest.raises(RuntimeError, match="modified in place"):
        loss.backward()
    assert w.grad is None   # nothing written on error


def test_no_grad_detach_requires_grad():
    x = cad.tensor([1.0], requires_grad=True)
    with cad.no_grad():
        y = x * 2
    assert not y.requires_grad and y.is_leaf
    assert cad.is_grad_enabled()
    d = (x * 2).detach()
    assert not d.requires_grad
    z = cad.tensor([2.0]).requires_grad_()
    assert z.requires_grad and (z * x).requires_grad

    @cad.no_grad()
    def f(a):
        return a * 3
    assert not f(x).requires_grad
    with cad.no_grad():
        with cad.enable_grad():
            assert (x * 1).requires_grad


def test_grad_mode_is_per_thread():
    x = cad.tensor(1.0, requires_grad=True)
    seen = []
    with cad.no_grad():
        t = threading.Thread(target=lambda: seen.append((x * 2).requires_grad))
        t.start()
        t.join()
    assert seen == [True]


def test_seed_scalar_program_as_written():
    """The seed's program, with in-place ops on list elements (torch cannot run it)."""
    from cad import sqrt
    x = cad.tensor([0.5, -1.0, 2.0, 0.3], requires_grad=True)
    t = cad.tensor([2.0, 3.0, -1.0, 0.5], requires_grad=True)
    y = cad.tensor([1.0, 0.2, 0.1, -0.4])
    b = 0.25
    sum = 0
    l = [0, 0, 0, 0]
    for i in range(0, 4):
        l[i] += t[i] * x[i]
    for i in range(0, 4):
        l[i] -= y[i] - b
    for i in range(0, 4):
        l[i] *= l[i]
    for i in range(0, 4):
        sum += l[i]
    l = sqrt(sum)
    gx, gt = cad.autograd.grad(l, (x, t))
    xv, tv, yv = (np.asarray(v) for v in (x, t, y))
    r = tv * xv - (yv - b)
    L = np.sqrt((r * r).sum())
    np.testing.assert_allclose(l.item(), L)
    np.testing.assert_allclose(gx.numpy(), r * tv / L)
    np.testing.assert_allclose(gt.numpy(), r * xv / L)


def test_seed_tensor_form_and_autograd_grad():
    cad.manual_seed(0)
    x = cad.randn(2, requires_grad=True)
    t = cad.tensor([2.0, 3.0], requires_grad=True)
    y = cad.randn(2)
    f = sum((x * t - y) ** 2) ** 0.5
    gx, gt = cad.autograd.grad(f, inputs=(x, t))
    r = np.asarray(x) * np.asarray(t) - np.asarray(y)
    F = np.sqrt((r ** 2).sum())
    np.testing.assert_allclose(gx.numpy(), r * np.asarray(t) / F)
    np.testing.assert_allclose(gt.numpy(), r * np.asarray(x) / F)


def test_picrograd_chain():
    a = cad.tensor(1.5, requires_grad=True)
    b = cad.tensor(-0.5, requires_grad=True)
    c = a + b
    d = c * a + b * b
    e = d * d + c
    e.backward()
    av, bv = 1.5, -0.5
    cv = av + bv
    dv = cv * av + bv * bv
    assert math.isclose(a.grad.item(), 2 * dv * (2 * av + bv) + 1)
    assert math.isclose(b.grad.item(), 2 * dv * (av + 2 * bv) + 1)


def test_tapes_merge_across_roots():
    x = cad.tensor([1.0, 2.0], requires_grad=True)
    a = x * 2          # tape 1
    b = x * 3          # tape 2
    c = (a * b).sum()  # merges them
    c.backward()
    assert x.grad.tolist() == [12.0, 24.0]


def test_gradient_through_repeated_index_is_scatter_add():
    x = cad.tensor([1.0, 2.0, 3.0], requires_grad=True)
    y = x[[0, 0, 2, 0]].sum()
    y.backward()
    assert x.grad.tolist() == [3.0, 0.0, 1.0]


def test_two_backward_passes_in_two_threads():
    """The sweep releases the GIL: two big sweeps run at once and both are right."""
    n = 2_000_000
    errors = []

    def work(scale):
        try:
            x = cad.tensor(np.linspace(0, 1, n) * scale, requires_grad=True)
            y = (cad.sin(x) * x + cad.exp(-x * x)).sum()
            for _ in range(3):
                (g,) = cad.autograd.grad(y, [x], retain_graph=True)
                xv = np.asarray(x)
                want = np.cos(xv) * xv + np.sin(xv) - 2 * xv * np.exp(-xv * xv)
                np.testing.assert_allclose(g.numpy(), want, rtol=1e-10, atol=1e-12)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)
    ts = [threading.Thread(target=work, args=(s,)) for s in (1.0, 2.0)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors, errors


def _rss_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def test_training_loop_memory_is_flat():
    w = cad.tensor([0.5, -0.3], requires_grad=True)
    xs = cad.tensor([1.0, 2.0])

    def step():
        nonlocal w
        loss = ((w * xs).sum() - 1.0) ** 2
        loss.backward()
        with cad.no_grad():
            w -= 0.01 * w.grad
        w.grad = None
    for _ in range(2000):
        step()
    gc.collect()
    before = _rss_kib()
    for _ in range(100_000):
        step()
    gc.collect()
    grown = _rss_kib() - before
    assert grown < 4096, f"RSS grew by {grown} KiB over 1e5 steps"


def test_tape_freed_when_unreferenced():
    import weakref  # noqa: F401
    from cad._core import _engine
    x = cad.tensor([1.0, 2.0], requires_grad=True)
    before = _rss_kib()
    for _ in range(20000):
        y = (x * 2 + 1).sum()   # never backpropagated: each tape dies with y
    gc.collect()
    assert _rss_kib() - before < 4096
    assert _engine._tape_of(y) is not None


def test_error_in_sweep_leaves_state_untouched():
    x = cad.tensor([1.0, 2.0], requires_grad=True)
    h = x * 2
    (h.sum()).backward()
    g_before = x.grad.tolist()
    z = (h * x).sum()      # h's tape is consumed: the gradient through h cannot be computed
    with pytest.raises(RuntimeError, match="consumed"):
        z.backward()
    assert x.grad.tolist() == g_before


def test_stack_of_many_tensors():
    xs = [cad.tensor(float(i), requires_grad=True) for i in range(20)]
    s = cad.stack(xs)
    (s * s).sum().backward()
    assert [x.grad.item() for x in xs] == [2.0 * i for i in range(20)]
    assert cad.tensor(xs).shape == (20,)
