"""W14: cad.distributed on this machine (issue 17), a separate entry point because it
needs mpiexec and mpi4py (pip install -e ".[mpi]"); not part of ``python -m bench``.

    python -m bench.w_dist                    # launches mpiexec -n 1 and -n 2, prints a table
    python -m bench.w_dist --json w_dist.json --repeat 30

Two measurements, each rank timing with the others in step (a barrier before every
sample; the median over samples of the slowest rank's time):
- ``all_reduce_grads`` of one float64 gradient of 10^3 .. 10^7 elements, at 1 rank (the
  copies in and out of the bucket, no message) and 2 ranks (one Allreduce per 25 MiB
  bucket), with the bare ``MPI Allreduce`` of the same buffer beside it: the message
  cost that the on-paper cluster estimate in the README starts from.
- W3's step (bench/w_mlp.py: MLP 32-64-64-10, tanh, cross-entropy, batch 64, SGD) in one
  process against data parallel over 2 ranks (32 rows each, gradients averaged with
  ``all_reduce_grads``); after the timed steps the two runs' parameters are compared
  (a note, not an assert: benchmarks do not assert).
PyTorch DDP (gloo) is timed beside it when torch is installed.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

SIZES = [10 ** 3, 10 ** 4, 10 ** 5, 10 ** 6, 10 ** 7]


def _timed(comm, fn, repeat):
    """median over samples of the slowest rank's seconds for fn()"""
    fn()   # warm-up
    ts = []
    for _ in range(repeat):
        comm.Barrier()
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    from mpi4py import MPI
    worst = np.empty(len(ts))
    comm.Allreduce(np.array(ts), worst, op=MPI.MAX)
    return float(statistics.median(worst))


def bench_all_reduce(comm, repeat):
    import cad
    import cad.distributed as dist
    from mpi4py import MPI
    out = {}
    for n in SIZES:
        r = max(5, repeat // (1 if n < 10 ** 6 else 3))
        p = cad.zeros(n, requires_grad=True)
        g = np.random.default_rng(comm.Get_rank()).standard_normal(n)
        p.grad = cad.tensor(g)

        def step():   # (each call replaces p.grad by the average: the same work every time)
            dist.all_reduce_grads([p])
        buf = g.copy()

        def bare():
            comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
        out[n] = {"all_reduce_grads": _timed(comm, step, r), "mpi_allreduce": _timed(comm, bare, r)}
    return out


def _w3_data():
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from bench import w_mlp
    return w_mlp, w_mlp.data()


def _large_data():
    """an MLP 512-1024-1024-10 on a batch of 64 (12.6 MB of float64 gradients): big
    enough that the reduction and the backward sweep take milliseconds each"""
    from types import SimpleNamespace
    rng = np.random.default_rng(5)
    sizes = [512, 1024, 1024, 10]
    params = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        params += [rng.standard_normal((a, b)) / np.sqrt(a), np.zeros(b)]
    return SimpleNamespace(BATCH=64, LR=0.01), {"params": params, "X": rng.standard_normal((64, 512)),
                                                "labels": rng.integers(0, 10, 64)}


def bench_w3(comm, repeat, sync="blocking", large=False, bucket_bytes=None):
    """µs per step: W3 on this rank's rows (all 64 at 1 rank, 32 each at 2), gradients
    averaged over the ranks (sync: "blocking" all_reduce_grads after backward, or
    "overlap": a GradReducer whose buckets start from the sweep's hooks); then the
    parameters after `steps` steps"""
    import cad
    import cad.distributed as dist
    w_mlp, d = _large_data() if large else _w3_data()
    kw = {} if bucket_bytes is None else {"bucket_bytes": bucket_bytes}
    W, me = comm.Get_size(), comm.Get_rank()
    rows = slice(me * (w_mlp.BATCH // W), (me + 1) * (w_mlp.BATCH // W))
    X, labels = cad.tensor(d["X"][rows]), cad.tensor(d["labels"][rows])

    def make():
        params = [cad.tensor(p.copy(), requires_grad=True) for p in d["params"]]
        reducer = dist.GradReducer(params, **kw) if sync == "overlap" and W > 1 else None

        def step():
            W1, b1, W2, b2, W3, b3 = params
            h1 = cad.tanh(X @ W1 + b1)
            h2 = cad.tanh(h1 @ W2 + b2)
            loss = cad.cross_entropy(h2 @ W3 + b3, labels)
            loss.backward()
            if reducer is not None:
                reducer.wait()
            elif W > 1:
                dist.all_reduce_grads(params, **kw)
            with cad.no_grad():
                for i, p in enumerate(params):
                    g = p.grad
                    p.grad = None
                    p -= w_mlp.LR * g
                    params[i] = p
        return params, step
    _, step = make()
    t = _timed(comm, step, repeat)
    params, step = make()
    for _ in range(20):
        step()
    return t, [p.numpy().tolist() for p in params]


def bench_torch_ddp(comm, repeat):
    """W3's step under torch DDP with gloo on the same ranks (None without torch)"""
    try:
        import torch
        import torch.distributed as tdist
        import torch.nn.functional as F
    except ImportError:
        return None
    w_mlp, d = _w3_data()
    W, me = comm.Get_size(), comm.Get_rank()
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(29500 + os.getppid() % 1000))
    tdist.init_process_group("gloo", rank=me, world_size=W)
    torch.set_num_threads(1)
    rows = slice(me * (w_mlp.BATCH // W), (me + 1) * (w_mlp.BATCH // W))
    X, labels = torch.tensor(d["X"][rows]), torch.tensor(d["labels"][rows])

    class MLP(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.ps = torch.nn.ParameterList([torch.nn.Parameter(torch.tensor(p)) for p in d["params"]])

        def forward(self, x):
            W1, b1, W2, b2, W3, b3 = self.ps
            return torch.tanh(torch.tanh(x @ W1 + b1) @ W2 + b2) @ W3 + b3
    model = torch.nn.parallel.DistributedDataParallel(MLP())
    opt = torch.optim.SGD(model.parameters(), lr=w_mlp.LR)

    def step():
        opt.zero_grad()
        F.cross_entropy(model(X), labels).backward()
        opt.step()
    t = _timed(comm, step, repeat)
    tdist.destroy_process_group()
    return t


def worker(repeat):
    import cad
    import cad.distributed as dist
    dist.init()
    comm = dist._comm()
    cad.set_num_threads(1)
    res = {"ranks": comm.Get_size(), "all_reduce": bench_all_reduce(comm, repeat)}
    res["w3_s"], res["w3_params"] = bench_w3(comm, repeat * 10)
    # overlapped with the sweep: buckets of one layer each (W3's default is one bucket)
    res["w3_overlap_s"], res["w3_overlap_params"] = bench_w3(comm, repeat * 10, "overlap", False, 20_000)
    res["w3_blocking_b_s"], _ = bench_w3(comm, repeat * 10, "blocking", False, 20_000)
    res["large_s"], _ = bench_w3(comm, repeat, "blocking", True, 2 ** 21)
    res["large_overlap_s"], _ = bench_w3(comm, repeat, "overlap", True, 2 ** 21)
    res["torch_ddp_w3_s"] = bench_torch_ddp(comm, repeat * 10)
    if comm.Get_rank() == 0:
        print("RESULT " + json.dumps(res))


def _launch(n, repeat):
    import cad.distributed as dist
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in [env.get("PYTHONPATH")] if p])
    env["OMP_NUM_THREADS"] = env["OPENBLAS_NUM_THREADS"] = "1"
    env.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
    env.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
    p = subprocess.run(dist.mpiexec_command(n) + ["-m", "bench.w_dist", "--worker", "--repeat", str(repeat)],
                       capture_output=True, text=True, env=env, cwd=root, timeout=1200)
    lines = [l for l in p.stdout.splitlines() if l.startswith("RESULT ")]
    if p.returncode != 0 or not lines:
        raise RuntimeError(f"mpiexec -n {n} failed (rc {p.returncode}):\n{p.stdout[-2000:]}\n{p.stderr[-3000:]}")
    return json.loads(lines[0][len("RESULT "):])


def _fmt(s):
    return f"{s * 1e3:.3g} ms" if s >= 1e-3 else f"{s * 1e6:.3g} µs"


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m bench.w_dist", description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=15, help="samples per measurement (W3: 10x)")
    ap.add_argument("--json", default=None, help="write the results here")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker:
        worker(a.repeat)
        return 0
    r1, r2 = _launch(1, a.repeat), _launch(2, a.repeat)
    print("| gradient size (float64) | 1 rank: all_reduce_grads | 2 ranks: all_reduce_grads | "
          "2 ranks: bare MPI Allreduce | 2 ranks: GB/s (bare) |")
    print("|---|---|---|---|---|")
    for n in SIZES:
        a1, a2 = r1["all_reduce"][str(n)], r2["all_reduce"][str(n)]
        gbs = 8 * n / a2["mpi_allreduce"] / 1e9
        print(f"| 10^{int(np.log10(n))} | {_fmt(a1['all_reduce_grads'])} | {_fmt(a2['all_reduce_grads'])} | "
              f"{_fmt(a2['mpi_allreduce'])} | {gbs:.2f} |")
    p1 = np.concatenate([np.ravel(x) for x in r1["w3_params"]])
    p2 = np.concatenate([np.ravel(x) for x in r2["w3_params"]])
    print()
    print(f"W3 step (batch 64): 1 process {_fmt(r1['w3_s'])}, data parallel over 2 ranks (32 rows each) "
          f"{_fmt(r2['w3_s'])}, ratio {r2['w3_s'] / r1['w3_s']:.2f}x")
    print(f"overlap (GradReducer, buckets of 20 kB: one per layer): W3 over 2 ranks blocking "
          f"{_fmt(r2['w3_blocking_b_s'])}, overlapped {_fmt(r2['w3_overlap_s'])} (ratio "
          f"{r2['w3_overlap_s'] / r2['w3_blocking_b_s']:.2f}); parameters identical to all_reduce_grads': "
          f"{r2['w3_overlap_params'] == r2['w3_params']}")
    print(f"MLP 512-1024-1024-10 (12.6 MB of gradients, buckets of 2 MiB): 1 process {_fmt(r1['large_s'])}; "
          f"2 ranks blocking {_fmt(r2['large_s'])}, overlapped {_fmt(r2['large_overlap_s'])} (ratio "
          f"{r2['large_overlap_s'] / r2['large_s']:.2f})")
    if r2.get("torch_ddp_w3_s"):
        print(f"torch DDP (gloo), 2 ranks: {_fmt(r2['torch_ddp_w3_s'])}")
    else:
        print("torch DDP (gloo): not run (torch is not installed)")
    print(f"note: parameters after 20 steps, 2 ranks against 1 process: max abs diff "
          f"{float(np.max(np.abs(p1 - p2))):.2g}")
    if a.json:
        for r in (r1, r2):
            r.pop("w3_params", None)
        with open(a.json, "w") as f:
            json.dump({"1": r1, "2": r2}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
