"""The examples (examples/, issue 15): each one's training loop on a few steps.  The
scripts' extras (scikit-learn, matplotlib, tqdm, torch: pip install -e ".[examples]")
may be missing where the suite runs, so each example's core is also tested on its own
without them (synthetic data for the MLP, no plot for the pendulum)."""
import importlib.util
import math
import os

import numpy as np
import pytest

import cad

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")


def _module(name):
    spec = importlib.util.spec_from_file_location(f"cad_example_{name}", os.path.join(EXAMPLES, f"{name}.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def mlp():
    return _module("train_mlp")


@pytest.fixture(scope="module")
def pendulum():
    return _module("pendulum_fit")


# ---------------------------------------------------------------- train_mlp


def _blobs(n=300, d=8, k=3, seed=0):
    rng = np.random.default_rng(seed)
    centers = 3.0 * rng.standard_normal((k, d))
    y = rng.integers(0, k, n)
    x = centers[y] + rng.standard_normal((n, d))
    return x[:240], y[:240].astype(np.int64), x[240:], y[240:].astype(np.int64)


def test_mlp_core_trains_and_checkpoints(mlp, tmp_path):
    """the example's model, loop, optimizer and schedule on synthetic data (no scikit-learn)"""
    data = _blobs()
    logs = []
    params, hist, loader = mlp.train(data, epochs=4, batch_size=32, hidden=(16,), progress=False,
                                     log=logs.append)
    assert len(hist) == 4 and len(logs) == 4
    assert hist[-1]["loss"] < hist[0]["loss"]
    assert hist[-1]["test_acc"] > 0.9
    assert loader.stats.batches == 4 * len(loader)
    p = tmp_path / "m.safetensors"
    cad.save({"params": params}, p)
    back = cad.load(p)["params"]
    assert all(back[k].requires_grad for k in back)
    assert mlp.accuracy(back, data[2], data[3]) == hist[-1]["test_acc"]


def test_mlp_max_steps(mlp):
    data = _blobs()
    _, _, loader = mlp.train(data, epochs=2, batch_size=32, hidden=(8,), max_steps=3,
                                progress=False, log=lambda s: None)
    assert loader.stats.batches == 6 and loader.stats.samples == 6 * 32


def test_mlp_script_quick(mlp, tmp_path, capsys):
    pytest.importorskip("sklearn")
    out = tmp_path / "digits.safetensors"
    assert mlp.main(["--quick", "--no-progress", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "reloaded: test accuracy" in text and "loader.stats" in text
    ck = cad.load(out)
    assert set(ck["params"]) == {"W0", "b0", "W1", "b1"} and ck["params"]["W0"].shape == (64, 192)


def test_mlp_progress_bar(mlp, tmp_path, capsys):
    pytest.importorskip("sklearn")
    pytest.importorskip("tqdm")
    assert mlp.main(["--quick", "--out", str(tmp_path / "d.safetensors")]) == 0
    assert "samples_s=" in capsys.readouterr().err


# ---------------------------------------------------------------- pendulum_fit


def test_pendulum_integrator(pendulum):
    """RK4 with floats: small swings follow the linearised solution, energy decays with damping"""
    n, dt, L = 400, 0.01, 1.0
    th = pendulum.simulate(0.0, L, n, dt, math.sin, theta0=0.01, omega0=0.0)
    w = math.sqrt(pendulum.G / L)
    t = dt * np.arange(1, n + 1)
    np.testing.assert_allclose(th, 0.01 * np.cos(w * t), atol=1e-6)
    damped = pendulum.simulate(0.5, L, n, dt, math.sin, theta0=1.0, omega0=0.0)
    assert max(abs(v) for v in damped[-100:]) < 0.5


def test_pendulum_tape_matches_eager(pendulum):
    """the recorded loss, its gradient and Hessian against the eager ones and finite differences"""
    _, obs, _ = pendulum.make_data(n=30, dt=0.05, noise=0.02, seed=1)
    loss = pendulum.make_loss(obs, 0.05, cad.sin)
    p = cad.tensor([0.2, 1.1])
    tape = cad.record(loss, p)
    v, (g,) = tape.value_and_grad(p)
    ve, ge = cad.value_and_grad(loss)(p)
    np.testing.assert_allclose(float(v), float(ve), rtol=1e-12)
    np.testing.assert_allclose(g.numpy(), ge.numpy(), rtol=1e-10)
    f = pendulum.make_loss(obs, 0.05, math.sin)                  # floats
    eps = 1e-6
    fd = [(f([0.2 + eps, 1.1]) - f([0.2 - eps, 1.1])) / (2 * eps),
          (f([0.2, 1.1 + eps]) - f([0.2, 1.1 - eps])) / (2 * eps)]
    np.testing.assert_allclose(g.numpy(), fd, rtol=1e-5)
    H = tape.hessian(p).numpy()
    np.testing.assert_allclose(H, cad.hessian(loss)(p).numpy(), rtol=1e-9)
    np.testing.assert_allclose(H, H.T, rtol=1e-12)


def test_pendulum_fit_recovers_parameters(pendulum):
    """Adam on the replayed tape, then the Newton polish: noise-free data gives the truth"""
    _, obs, _ = pendulum.make_data(n=80, dt=0.025, noise=0.0)
    tape = cad.record(pendulum.make_loss(obs, 0.025, cad.sin), cad.tensor(pendulum.START))
    p, losses = pendulum.fit_adam(tape.value_and_grad, cad.tensor(pendulum.START), 40)
    assert losses[-1] < losses[0] / 10
    p, _, nl = pendulum.fit_newton(tape, p, maxiter=30)
    np.testing.assert_allclose(p.numpy(), pendulum.TRUE, rtol=1e-4)
    assert nl[-1] <= nl[0]


def test_pendulum_same_fit_eager_and_torch(pendulum):
    _, obs, _ = pendulum.make_data(n=20, dt=0.05)
    tape = cad.record(pendulum.make_loss(obs, 0.05, cad.sin), cad.tensor(pendulum.START))
    p, losses = pendulum.fit_adam(tape.value_and_grad, cad.tensor(pendulum.START), 4)
    pe, le = pendulum.fit_cad_eager(obs, 0.05, 4)
    np.testing.assert_allclose(le, losses, rtol=1e-12)
    np.testing.assert_allclose(pe, p.numpy(), rtol=1e-12)
    pytest.importorskip("torch")
    pt, lt = pendulum.fit_torch(obs, 0.05, 4)
    np.testing.assert_allclose(lt, losses, rtol=1e-10)
    np.testing.assert_allclose(pt, p.numpy(), rtol=1e-10)


def test_pendulum_script_quick(pendulum, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "p.png"
    assert pendulum.main(["--quick", "--out", str(out)]) == 0
    assert out.stat().st_size > 1000
    text = capsys.readouterr().out
    assert "recorded the loss once" in text and "fit: c =" in text


def test_pendulum_script_without_plot(pendulum, capsys):
    assert pendulum.main(["--quick", "--no-plot", "--no-compare"]) == 0
    assert "Newton polish" in capsys.readouterr().out
