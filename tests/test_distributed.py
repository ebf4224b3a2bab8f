"""cad.distributed (issue 17): the collectives' values and derivatives, data-parallel
training, the sampler, map and pickling under ``mpiexec -n 2`` and ``-n 3`` (uneven
shards), and a failing rank.

Few launches (each costs about a second): tests/dist_worker.py runs every check in one
``mpiexec -n N`` and prints a JSON report, which the tests below read by topic.  The
sampler's arithmetic, pickling and the DataLoader's sampler argument are also tested
in this process, without MPI.  Skipped only where mpi4py or mpiexec is absent
(``pip install -e ".[test]"`` installs both: mpi4py and MPICH's wheel).
"""
import importlib.util
import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

import cad
import cad.distributed as dist

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def _have(module):
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):   # (a None in sys.modules: blocked)
        return False


HAVE_MPI4PY = _have("mpi4py")


def _command(n):
    if not HAVE_MPI4PY:
        pytest.skip("mpi4py is not installed (pip install -e \".[mpi]\")")
    try:
        return dist.mpiexec_command(n)
    except FileNotFoundError as e:
        pytest.skip(str(e))


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([ROOT] + [p for p in [env.get("PYTHONPATH")] if p])
    env.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")          # (Open MPI only; MPICH ignores them)
    env.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
    env["OMP_NUM_THREADS"] = env["OPENBLAS_NUM_THREADS"] = "1"   # two ranks on two cores
    return env


def _launch(n, args, timeout):
    try:
        return subprocess.run(_command(n) + args, capture_output=True, text=True, timeout=timeout, env=_env(),
                              stdin=subprocess.DEVNULL, cwd=ROOT)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"mpiexec -n {n} {' '.join(args)} did not finish within {timeout} s (a hang?); "
                    f"stderr: {(e.stderr or b'')[-2000:]!r}")


_REPORTS = {}


def _report(n):
    if n not in _REPORTS:
        p = _launch(n, [os.path.join(HERE, "dist_worker.py"), "checks"], timeout=180)
        lines = [l for l in p.stdout.splitlines() if l.startswith("REPORT ")]
        assert p.returncode == 0 and len(lines) == 1, \
            f"mpiexec -n {n} failed (rc {p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
        _REPORTS[n] = json.loads(lines[0][len("REPORT "):])
    return _REPORTS[n]


TOPICS = {
    "collective values": ["value"],
    "vjp (cad.grad, backward) vs finite differences": ["grad vs finite", "backward() (C sweep)"],
    "jvp vs finite differences": ["jvp vs finite", "jvp of the loss"],
    "second order (hvp, hessian, create_graph)": ["hvp", "create_graph", "hessian", "diagonal block"],
    "vmap": ["vmap vs a loop"],
    "data-parallel MLP equals one process to 1e-12": ["data parallel"],
    "all_reduce_grads in buckets, broadcast_params": ["all_reduce_grads", "broadcast_params"],
    "GradReducer: the reduction overlapped with the sweep": ["GradReducer"],
    "sampler shards disjoint and covering": ["DistributedSampler"],
    "map of value, grad, hessian": ["map"],
    "pickling through mpi4py": ["pickled bcast"],
    "basics and argument checks": ["rank and world_size", "cuda_aware", "int tensor", "checks"],
}


@pytest.mark.parametrize("n", [2, 3])
@pytest.mark.parametrize("topic", list(TOPICS))
def test_under_mpiexec(n, topic):
    rep = _report(n)
    crashed = {k: v for k, v in rep.items() if k.endswith(" raised")}
    assert not crashed, crashed
    mine = {k: v for k, v in rep.items() if any(s in k for s in TOPICS[topic])}
    assert mine, f"no check about {topic!r} in the report: {sorted(rep)}"
    bad = {k: v[1] for k, v in mine.items() if not v[0]}
    assert not bad, json.dumps(bad, indent=1)


def test_every_collective_is_checked():
    rep = _report(2)
    for name in ("all_reduce_sum", "all_reduce_mean", "all_gather", "reduce_scatter_sum", "reduce_scatter_mean",
                 "broadcast", "reduce"):
        for what in ("value", "grad vs finite differences", "jvp vs finite differences",
                     "hvp (jvp of grad) vs finite differences", "vmap vs a loop"):
            assert f"{name}: {what}" in rep


@pytest.mark.parametrize("mode", ["raise", "raise_thread"])
def test_a_failing_rank_stops_every_rank(mode):
    """rank 1 raises (in its main thread, or in another) while rank 0 waits in an
    all_reduce: mpiexec must end (not hang) with a non-zero status and say which rank
    raised what (NOTE [ Failing ranks ])"""
    p = _launch(2, [os.path.join(HERE, "dist_worker.py"), mode], timeout=60)
    assert p.returncode != 0
    assert "rank 1 of 2 raised ValueError" in p.stderr and "boom from rank 1" in p.stderr, p.stderr[-2000:]
    assert "rank 0 was not stopped" not in p.stdout


def test_train_mlp_example_distributed():
    pytest.importorskip("sklearn")
    p = _launch(2, [os.path.join(ROOT, "examples", "train_mlp.py"), "--quick", "--distributed", "--no-progress"],
                timeout=120)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    assert "2 ranks" in p.stdout and "reloaded: test accuracy" in p.stdout, p.stdout
    assert p.stdout.count("trained in") == 1, p.stdout    # rank 0 prints


# ---------------------------------------------------------------- in this process

def test_single_process_world():
    if not HAVE_MPI4PY:
        pytest.skip("mpi4py is not installed")
    assert dist.world_size() == 1 and dist.rank() == 0
    x = cad.tensor([1.0, 2.0], requires_grad=True)
    assert np.array_equal(cad.grad(lambda z: (dist.all_reduce(z, op="mean") ** 2).sum())(x).numpy(), [2.0, 4.0])
    assert dist.all_gather(x).shape == (1, 2)
    got = dist.map(lambda z: (z ** 3).sum(), [cad.tensor([1.0, 2.0]), cad.tensor([3.0, 0.0])], what="grad")
    assert [g[0].tolist() for g in got] == [[3.0, 12.0], [27.0, 0.0]]


def test_missing_mpi4py_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    monkeypatch.setitem(dist._STATE, "MPI", None)
    monkeypatch.setitem(dist._STATE, "comm", None)
    with pytest.raises(ImportError, match=r'pip install "cad\[mpi\]"'):
        dist.world_size()


@pytest.mark.parametrize("n", [1, 2, 7, 10, 11, 12])
@pytest.mark.parametrize("W", [1, 2, 3, 4])
@pytest.mark.parametrize("drop_last", [False, True])
def test_sampler_shards(n, W, drop_last):
    shards = [dist.DistributedSampler(n, num_replicas=W, rank=r, seed=5, drop_last=drop_last) for r in range(W)]
    for s in shards:
        s.set_epoch(1)
    idx = [s.indices() for s in shards]
    assert len({len(i) for i in idx}) == 1 and all(len(s) == len(i) for s, i in zip(shards, idx))
    flat = np.concatenate(idx)
    if drop_last:
        assert len(flat) == (n // W) * W and len(set(flat.tolist())) == len(flat)
    else:
        assert set(flat.tolist()) == set(range(n)) and len(flat) == -(-n // W) * W
    # the union of the ranks' batch k is batch k of one loader with W times the batch
    one = np.random.default_rng(np.random.SeedSequence([5, 1])).permutation(n)
    order = np.array([idx[p % W][p // W] for p in range(len(flat))])
    assert np.array_equal(order[:min(n, len(order))], one[:min(n, len(order))])


def test_sampler_in_a_dataloader_reshuffles_each_epoch():
    ds = cad.data.TensorDataset(np.arange(12.0))
    s = dist.DistributedSampler(ds, num_replicas=2, rank=1, seed=0)
    loader = cad.data.DataLoader(ds, batch_size=2, sampler=s)
    assert len(loader) == 3
    e0 = [b[0].tolist() for b in loader]
    e1 = [b[0].tolist() for b in loader]
    assert e0 != e1 and s.epoch == 1
    s0 = dist.DistributedSampler(ds, num_replicas=2, rank=0, seed=0)
    s0.set_epoch(1)
    assert set(sum(e1, [])) | {float(i) for i in s0.indices()} == {float(i) for i in range(12)}
    with pytest.raises(ValueError, match="exclusive"):
        cad.data.DataLoader(ds, sampler=s, shuffle=True)
    with pytest.raises(TypeError, match="sampler must be"):
        cad.data.DataLoader(ds, sampler=3)
    with pytest.raises(ValueError, match="rank must be"):
        dist.DistributedSampler(ds, num_replicas=2, rank=2)


def test_pickle_round_trips():
    x = cad.tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)
    for t in (x, cad.tensor(2.5), cad.tensor([1, 2, 3]), cad.tensor([1.0, 2.0], dtype=cad.float32), x * 2):
        u = pickle.loads(pickle.dumps(t))
        assert type(u) is cad.Tensor and u.dtype == t.dtype and u.shape == t.shape
        assert np.array_equal(u.numpy(), t.numpy()) and u.requires_grad == t.requires_grad
    tape = cad.record(lambda z: (cad.sin(z) * z).sum(), x)
    t2 = pickle.loads(pickle.dumps(tape))
    assert isinstance(t2, cad.StaticTape)
    assert np.allclose(t2(x).numpy(), tape(x).numpy(), atol=1e-15, rtol=0)
    assert np.allclose(t2.grad(x)[0].numpy(), tape.grad(x)[0].numpy(), atol=1e-15, rtol=0)
    assert np.allclose(t2.hessian(x).numpy(), tape.hessian(x).numpy(), atol=1e-13, rtol=0)
    # the pickle is cad's file format behind a reference to its loader: no code of the sender's
    raw = pickle.dumps(x)
    assert b"cad.io" in raw and b"_unpickle_tensor" in raw and b"CAD\x00" in raw
    # damaged bytes inside a pickle raise FormatError (the loader validates them)
    bad = raw.replace(b'"float64"', b'"float65"')
    with pytest.raises(cad.FormatError):
        pickle.loads(bad)


def test_pickle_a_tape_with_a_user_primitive_raises():
    p = cad.primitive(lambda z: np.asarray(z) * 2.0)
    p.defvjp(lambda g, ans, z: 2.0 * g)
    tape = cad.record(lambda z: p(z).sum(), cad.tensor([1.0, 2.0]))
    with pytest.raises((TypeError, ValueError)):
        pickle.dumps(tape)


@pytest.mark.cuda
def test_cuda_tensors_through_host_copies(cuda_or_fake):
    """collectives and all_reduce_grads on CUDA tensors (in one process: a world of one
    rank): the values go through the host and come back to the device"""
    if not HAVE_MPI4PY:
        pytest.skip("mpi4py is not installed")
    x = cad.tensor([1.0, 2.0, 3.0], device="cuda", requires_grad=True)
    y = dist.all_reduce(x)
    assert y.device.type == "cuda" and np.array_equal(y.cpu().numpy(), [1.0, 2.0, 3.0])
    g = cad.grad(lambda z: (dist.all_gather(z) ** 2).sum())(x)
    assert g.device.type == "cuda" and np.array_equal(g.cpu().numpy(), [2.0, 4.0, 6.0])
    p = cad.zeros(3, device="cuda", requires_grad=True)
    (p * x).sum().backward()
    dist.all_reduce_grads([p])
    assert p.grad.device.type == "cuda" and np.array_equal(p.grad.cpu().numpy(), [1.0, 2.0, 3.0])
    u = pickle.loads(pickle.dumps(x))
    assert u.device.type == "cuda" and u.requires_grad and np.array_equal(u.cpu().numpy(), [1.0, 2.0, 3.0])
    assert dist.cuda_aware() in (True, False)
