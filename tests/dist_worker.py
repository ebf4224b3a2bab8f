"""One rank of tests/test_distributed.py, run as ``mpiexec -n N python dist_worker.py MODE``.

MODE "checks": every check below on every rank; rank 0 prints one line
``REPORT <json>``: {check name: [ok, detail]} over all ranks (a check fails if it
fails on any rank).  A check that raises is recorded as failed (its message in the
detail) and the run goes on: the checks keep the ranks in step because every rank
runs every check in the same order, and a check raises, if at all, on every rank.
MODE "raise": rank 1 raises while the others wait in an all_reduce (NOTE [ Failing
ranks ]): mpiexec must stop them all.  MODE "raise_thread": the same from a thread of
rank 1.
"""
import json
import sys
import traceback
import zlib

import numpy as np

import cad
import cad.distributed as dist

EPS = 1e-6


def _rng(*key):
    """a generator from a key that is the same on every rank (str's hash is not)"""
    return np.random.default_rng([zlib.crc32(k.encode()) if isinstance(k, str) else k for k in key])


def _sum_all(v):
    """a Python float summed over the ranks (MPI directly, not differentiated)"""
    from mpi4py import MPI
    return MPI.COMM_WORLD.allreduce(float(v), op=MPI.SUM)


def _fd_grad(F_local, x):
    """the gradient on this rank of G = sum over ranks of F_local(x_r), by central
    differences: every rank perturbs element i of rank k's input in turn"""
    W, me = dist.world_size(), dist.rank()
    x = np.asarray(x, dtype=np.float64)
    sizes = dist._comm().allgather(x.size)
    g = np.zeros(x.size)
    for k in range(W):
        for i in range(sizes[k]):
            vals = []
            for s in (1, -1):
                xp = x.copy().reshape(-1)
                if me == k:
                    xp[i] += s * EPS
                vals.append(_sum_all(float(F_local(cad.tensor(xp.reshape(x.shape))))))
            if me == k:
                g[i] = (vals[0] - vals[1]) / (2 * EPS)
    return g.reshape(x.shape)


def _fd_dir(F_local, x, t):
    """the directional derivative on this rank of F_local(x) (all ranks moving along
    their own t together), by central differences"""
    with cad.no_grad():
        a = np.asarray(F_local(cad.tensor(x + EPS * t)))
        b = np.asarray(F_local(cad.tensor(x - EPS * t)))
    return (a - b) / (2 * EPS)


def _close(a, b, tol):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        return False, f"shapes {a.shape} != {b.shape}"
    err = float(np.max(np.abs(a - b))) if a.size else 0.0
    return err <= tol * (1 + float(np.max(np.abs(b))) if b.size else 1), f"max abs diff {err:.3g}"


# ---------------------------------------------------------------- the collectives

def _cases(W):
    """(name, fn on a tensor, input shape, numpy reference of the value from all inputs)"""
    last = W - 1
    return [
        ("all_reduce_sum", lambda x: dist.all_reduce(x), (3,), lambda xs, r: sum(xs)),
        ("all_reduce_mean", lambda x: dist.all_reduce(x, op="mean"), (2, 2), lambda xs, r: sum(xs) / W),
        ("all_gather", lambda x: dist.all_gather(x), (3,), lambda xs, r: np.stack(xs)),
        ("reduce_scatter_sum", lambda x: dist.reduce_scatter(x), (W, 2), lambda xs, r: sum(x[r] for x in xs)),
        ("reduce_scatter_mean", lambda x: dist.reduce_scatter(x, op="mean"), (W, 2),
         lambda xs, r: sum(x[r] for x in xs) / W),
        ("broadcast", lambda x: dist.broadcast(x, root=last), (3,), lambda xs, r: xs[last]),
        ("reduce", lambda x: dist.reduce(x, root=last), (3,), lambda xs, r: sum(xs) if r == last else 0 * xs[0]),
        ("gather_then_scatter", lambda x: dist.reduce_scatter(dist.all_gather(x * x)), (2,),
         lambda xs, r: W * xs[r] ** 2),
    ]


def check_collective(name, fn, shape, ref, out):
    W, me = dist.world_size(), dist.rank()
    xs = [_rng(name, k).standard_normal(shape) for k in range(W)]
    x = xs[me]
    t = _rng(name, "t", me).standard_normal(shape)
    v = _rng(name, "v", me).standard_normal(shape)
    c = _rng(name, "c", me).standard_normal(np.asarray(ref(xs, me)).shape)

    def F(z):   # this rank's (nonlinear) loss of the collective's output
        return (cad.tensor(c) * cad.sin(fn(z))).sum() + 0.1 * (fn(z) ** 2).sum()

    val = fn(cad.tensor(x))
    out[f"{name}: value"] = _close(val.numpy(), ref(xs, me), 1e-14)
    xt = cad.tensor(x, requires_grad=True)
    g = cad.grad(F)(xt)
    out[f"{name}: grad vs finite differences"] = _close(g.numpy(), _fd_grad(F, x), 1e-7)
    xt.grad = None
    loss = F(xt)
    loss.backward()
    out[f"{name}: backward() (C sweep) vs cad.grad"] = _close(xt.grad.numpy(), g.numpy(), 1e-14)
    _, tan = cad.jvp(fn, (cad.tensor(x),), (cad.tensor(t),))
    out[f"{name}: jvp vs finite differences"] = _close(tan.numpy(), _fd_dir(fn, x, t), 1e-8)
    _, tanF = cad.jvp(F, (cad.tensor(x),), (cad.tensor(t),))
    out[f"{name}: jvp of the loss vs finite differences"] = _close(tanF.numpy(), _fd_dir(F, x, t), 1e-7)
    # second order: forward over reverse, reverse over reverse, against differences of grads
    _, hv = cad.jvp(cad.grad(F), (cad.tensor(x),), (cad.tensor(v),))
    fd = _fd_dir(lambda z: cad.grad(F)(z), x, v)
    out[f"{name}: hvp (jvp of grad) vs finite differences"] = _close(hv.numpy(), fd, 1e-6)
    hv2 = cad.grad(lambda z: (cad.grad(F)(z) * cad.tensor(v)).sum())(cad.tensor(x))
    out[f"{name}: hvp (grad of grad) vs jvp of grad"] = _close(hv2.numpy(), hv.numpy(), 1e-12)
    xc = cad.tensor(x, requires_grad=True)
    gc, = cad.autograd.grad(F(xc), (xc,), create_graph=True)
    (gc * cad.tensor(v)).sum().backward()
    out[f"{name}: backward(create_graph) twice vs jvp of grad"] = _close(xc.grad.numpy(), hv.numpy(), 1e-12)
    # vmap: one collective for the batch against one per example
    B = np.stack([x, 2 * x, x - 1])
    vb = cad.vmap(fn)(cad.tensor(B))
    loop = np.stack([fn(cad.tensor(b)).numpy() for b in B])
    out[f"{name}: vmap vs a loop"] = _close(vb.numpy(), loop, 1e-14)


def check_hessian(out):
    W, me = dist.world_size(), dist.rank()
    x = _rng("hess", me).standard_normal(3)

    def F(z):
        y = dist.all_reduce(z * z)
        return (y ** 2).sum() * (me + 1.0) + (dist.all_gather(z) ** 3).sum()
    H = cad.hessian(F)(cad.tensor(x)).numpy()
    out["hessian: symmetric"] = _close(H, H.T, 1e-12)
    out["hessian: shape"] = (H.shape == (3, 3), str(H.shape))
    # the diagonal block, with only this rank moving: jacfwd of grad along e_i, other ranks 0
    Hd = np.zeros((3, 3))
    for k in range(W):
        for i in range(3):
            t = np.eye(3)[i] if me == k else np.zeros(3)
            _, hv = cad.jvp(cad.grad(F), (cad.tensor(x),), (cad.tensor(t),))
            if me == k:
                Hd[:, i] = hv.numpy()
    # every rank's transform runs at once: column i of rank r's hessian is the
    # response when every rank moves along its own e_i (NOTE [ Collectives as primitives ])
    Hall = np.stack([_fd_dir(lambda z: cad.grad(F)(z), x, e) for e in np.eye(3)], axis=1)
    out["hessian vs finite differences of the gradient (every rank moving)"] = _close(H, Hall, 1e-6)
    Hdiag = np.zeros((3, 3))
    for k in range(W):   # this rank's block alone: the other ranks' tangents zero
        for i in range(3):
            t = np.eye(3)[i] if me == k else np.zeros(3)
            col = _fd_dir(lambda z: cad.grad(F)(z), x, t)
            if me == k:
                Hdiag[:, i] = col
    out["diagonal block (jvp of grad, the others' tangents zero) vs finite differences"] = \
        _close(Hd, Hdiag, 1e-6)


# ---------------------------------------------------------------- data parallel

def _mlp_params(seed=0):
    rng = np.random.default_rng(seed)
    sizes = [5, 8, 3]
    p = {}
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        p[f"W{i}"] = cad.tensor(rng.standard_normal((a, b)) / np.sqrt(a), requires_grad=True)
        p[f"b{i}"] = cad.tensor(rng.standard_normal(b) * 0.1, requires_grad=True)
    return p


def _mlp_loss(p, x, y):
    h = cad.tanh(x @ p["W0"] + p["b0"])
    return cad.cross_entropy(h @ p["W1"] + p["b1"], y)


def _train(params, loader, epochs, sync, opt_name, stats=None):
    keys = sorted(params)
    leaves = [params[k] for k in keys]
    opt = cad.optim.Adam(leaves, lr=0.05) if opt_name == "adam" else \
        cad.optim.SGD(leaves, lr=0.3, momentum=0.9)
    reducer = dist.GradReducer(params, bucket_bytes=200) if sync == "overlap" else None
    for _ in range(epochs):
        for xb, yb in loader:
            opt.zero_grad()
            _mlp_loss(params, xb, yb).backward()
            if reducer is not None:   # the buckets started from the sweep's hooks
                reducer.wait()
                if stats is not None:
                    stats.append((reducer.started_in_sweep, len(reducer.buckets)))
            elif sync:
                dist.all_reduce_grads(params, bucket_bytes=200)   # several buckets
            opt.step()
    if reducer is not None:
        reducer.remove()
    return {k: params[k].numpy().copy() for k in keys}


def check_data_parallel(out):
    W, me = dist.world_size(), dist.rank()
    b, n = 4, 4 * W * 3          # 3 batches per epoch of W * b rows
    rng = np.random.default_rng(7)
    X = rng.standard_normal((n, 5))
    Y = rng.integers(0, 3, n)
    ds = cad.data.TensorDataset(X, Y)
    for opt_name in ("sgd", "adam"):
        one = cad.data.DataLoader(ds, batch_size=W * b, shuffle=True, seed=11)
        ref = _train(_mlp_params(), one, 3, False, opt_name)
        sampler = dist.DistributedSampler(ds, shuffle=True, seed=11)
        loader = cad.data.DataLoader(ds, batch_size=b, sampler=sampler)
        got = _train(_mlp_params(), loader, 3, True, opt_name)
        err = max(float(np.max(np.abs(got[k] - ref[k]))) for k in ref)
        moved = max(float(np.max(np.abs(ref[k] - _mlp_params()[k].numpy()))) for k in ref)
        out[f"data parallel ({opt_name}, {W} ranks, 3 epochs) equals one process on the full batch"] = (
            err <= 1e-12 and moved > 1e-3, f"max abs diff {err:.3g}, parameters moved {moved:.3g}")
        # every rank holds the same parameters
        allp = dist._comm().allgather(np.concatenate([got[k].ravel() for k in sorted(got)]))
        out[f"data parallel ({opt_name}): ranks agree"] = (all(np.array_equal(allp[0], a) for a in allp),
                                                            "")
        # GradReducer: the same reduction overlapped with the backward sweep
        sampler = dist.DistributedSampler(ds, shuffle=True, seed=11)
        loader = cad.data.DataLoader(ds, batch_size=b, sampler=sampler)
        stats = []
        ov = _train(_mlp_params(), loader, 3, "overlap", opt_name, stats)
        same = all(np.array_equal(ov[k], got[k]) for k in got)
        early = min(s0 for s0, _ in stats)
        out[f"data parallel ({opt_name}) with GradReducer (overlapped) equals all_reduce_grads"] = (
            same and early >= 1 and stats[0][1] > 1,
            f"identical: {same}; buckets started during the sweep: {early} of {stats[0][1]}")
    del me


def check_all_reduce_grads(out):
    W, me = dist.world_size(), dist.rank()
    shapes = [(3, 4), (5,), (), (2, 2, 2)]
    ps = [cad.zeros(s, requires_grad=True) for s in shapes] + [cad.zeros(3, dtype=cad.float32, requires_grad=True)]
    grads = {r: [_rng("arg", r, i).standard_normal(p.shape) for i, p in enumerate(ps)] for r in range(W)}
    for bucket in (1, 64, 2 ** 20):
        for i, p in enumerate(ps):
            p.grad = cad.tensor(grads[me][i], dtype=p.dtype) if i != 1 else None   # one None: zeros
        dist.all_reduce_grads(ps, bucket_bytes=bucket)
        ok, det = True, []
        for i, p in enumerate(ps):
            want = sum(grads[r][i] for r in range(W) if i != 1) / W if i != 1 else np.zeros(p.shape)
            o, d = _close(p.grad.numpy(), want, 1e-6 if p.dtype == cad.float32 else 1e-15)
            ok &= o and p.grad.dtype == p.dtype and p.grad.shape == p.shape
            det.append(d)
        out[f"all_reduce_grads (bucket {bucket} bytes): the average"] = (ok, "; ".join(det))
    for p in ps:
        p.grad = cad.ones(p.shape, dtype=p.dtype)
    dist.all_reduce_grads({"a": ps[:2], "b": ps[2:]}, average=False)
    out["all_reduce_grads(average=False), a pytree: the sum"] = (
        all(np.all(p.grad.numpy() == W) for p in ps), "")
    q = cad.tensor(_rng("bp", me).standard_normal(4), requires_grad=True)
    dist.broadcast_params([q], root=W - 1)
    out["broadcast_params"] = _close(q.numpy(), _rng("bp", W - 1).standard_normal(4), 0)
    out["broadcast_params keeps the leaf"] = (q.requires_grad and q.grad is None, "")


def check_sampler(out):
    W, me = dist.world_size(), dist.rank()
    comm = dist._comm()
    res = []
    for n in (W * 4, W * 4 + 1, 7, 1, 2 * W - 1):
        for shuffle in (True, False):
            for drop_last in (False, True):
                s = dist.DistributedSampler(n, shuffle=shuffle, seed=3, drop_last=drop_last)
                s.set_epoch(2)
                mine = s.indices()
                every = comm.allgather(mine.tolist())
                lens = {len(e) for e in every}
                flat = [i for e in every for i in e]
                if drop_last:
                    good = len(set(flat)) == len(flat) == (n // W) * W
                else:
                    good = set(flat) == set(range(n)) and len(flat) == -(-n // W) * W
                # disjoint before padding: the first n positions of the padded order
                order = [every[p % W][p // W] for p in range(len(flat))]
                good &= len(set(order[:min(n, len(order))])) == min(n, len(order))
                good &= len(lens) == 1 and len(s) == len(mine)
                s.set_epoch(3)
                if shuffle and n >= 4:
                    later = comm.allgather(s.indices().tolist())
                    good &= later != every
                res.append((n, shuffle, drop_last, good))
    out["DistributedSampler: disjoint shards covering the data"] = (
        all(r[3] for r in res), str([r[:3] for r in res if not r[3]]))
    del me


def check_map(out):
    W, me = dist.world_size(), dist.rank()

    def f(x, y):
        return (cad.sin(x) * y).sum() + (x ** 3).sum()
    inputs = [(_rng("map", i).standard_normal(3), float(i)) for i in range(2 * W + 1)]
    tape = cad.record(f, cad.tensor(inputs[0][0]), inputs[0][1])
    for what in ("value", "grad", "hessian"):
        got = dist.map(f if me == 0 else None, inputs if me == 0 else None, what=what)
        ok, det = len(got) == len(inputs), f"{len(got)} results"
        for (x, y), r in zip(inputs, got):
            want = {"value": lambda: tape(cad.tensor(x), y), "grad": lambda: tape.grad(cad.tensor(x), y),
                    "hessian": lambda: tape.hessian(cad.tensor(x), y)}[what]()
            a = np.concatenate([np.ravel(np.asarray(v)) for v in cad.tree_leaves(r)])
            b = np.concatenate([np.ravel(np.asarray(v)) for v in cad.tree_leaves(want)])
            o, d = _close(a, b, 1e-13)
            ok &= o
        out[f"map(what={what!r}) over {len(inputs)} inputs"] = (ok, det)
    got = dist.map(tape if me == W - 1 else None, inputs if me == W - 1 else None, root=W - 1)
    out["map of a StaticTape from another root"] = (
        all(abs(float(r) - float(tape(cad.tensor(x), y))) < 1e-13 for (x, y), r in zip(inputs, got)), "")
    # a tape that cannot be sent (a user primitive): an error on every rank, no hang
    local = cad.primitive(lambda x: np.asarray(x) * 2.0)
    local.defvjp(lambda g, ans, x: 2.0 * g)
    try:
        dist.map((lambda x: local(x).sum()) if me == 0 else None, [np.ones(2)] if me == 0 else None)
        out["map of an unsendable tape raises everywhere"] = (False, "no error")
    except Exception as e:   # noqa: BLE001
        out["map of an unsendable tape raises everywhere"] = (True, f"{type(e).__name__}: {str(e)[:80]}")


def check_pickle(out):
    W, me = dist.world_size(), dist.rank()
    comm = dist._comm()
    x = cad.tensor(_rng("pk", 0).standard_normal((2, 3)), requires_grad=True)
    got = comm.bcast(x if me == 0 else None, root=0)   # mpi4py's lowercase call pickles
    out["a tensor through mpi4py's pickled bcast"] = (
        np.array_equal(got.numpy(), x.numpy()) and got.requires_grad, "")
    tape = cad.record(lambda z: (cad.tanh(z) ** 2).sum(), x)
    t2 = comm.bcast(tape if me == 0 else None, root=0)
    out["a tape through mpi4py's pickled bcast"] = _close(t2.grad(x)[0].numpy(), tape.grad(x)[0].numpy(), 1e-14)
    del W


def check_basics(out):
    from mpi4py import MPI
    W, me = dist.world_size(), dist.rank()
    out["rank and world_size"] = (W == MPI.COMM_WORLD.Get_size() and me == MPI.COMM_WORLD.Get_rank(),
                                  f"{me}/{W}")
    dist.barrier()
    out["cuda_aware is a bool"] = (isinstance(dist.cuda_aware(), bool), str(dist.cuda_aware()))
    ints = dist.all_reduce(cad.tensor([me, 1]))
    out["all_reduce of an int tensor (value only)"] = (ints.tolist() == [W * (W - 1) // 2, W], str(ints.tolist()))
    try:
        dist.reduce_scatter(cad.ones(W + 1, 2))
        out["reduce_scatter checks the leading axis"] = (False, "no error")
    except ValueError as e:
        out["reduce_scatter checks the leading axis"] = ("world size" in str(e), str(e)[:80])
    try:
        dist.all_reduce(cad.ones(2), op="max")
        out["all_reduce checks op"] = (False, "no error")
    except ValueError as e:
        out["all_reduce checks op"] = ("'sum' or 'mean'" in str(e), str(e)[:80])


def run_checks():
    dist.init()
    cad.set_num_threads(1)   # N ranks on a machine of few cores: no thread pools competing
    W, me = dist.world_size(), dist.rank()
    out = {}
    steps = [("basics", check_basics)]
    steps += [(c[0], lambda o, c=c: check_collective(*c, o)) for c in _cases(W)]
    steps += [(f.__name__, f) for f in (check_hessian, check_all_reduce_grads, check_data_parallel,
                                        check_sampler, check_map, check_pickle)]
    for name, step in steps:
        try:
            step(out)
        except Exception as e:   # noqa: BLE001  (recorded; the ranks stay in step: every rank raises)
            out[f"{name} raised"] = (False, "".join(
                traceback.format_exception(type(e), e, e.__traceback__))[-1500:])
    mine = {k: [bool(v[0]), str(v[1])] for k, v in out.items()}
    every = dist._comm().gather(mine, root=0)
    if me == 0:
        rep = {}
        for r, d in enumerate(every):
            for k, (ok, det) in d.items():
                o = rep.setdefault(k, [True, []])
                o[0] &= ok
                if not ok or det:
                    o[1].append(f"rank {r}: {det}")
        print("REPORT " + json.dumps({k: [v[0], " | ".join(v[1])[:2000]] for k, v in rep.items()}))
        sys.stdout.flush()


def run_raise():
    dist.init()
    if dist.rank() == 1:
        raise ValueError("boom from rank 1")
    dist.all_reduce(cad.ones(3))   # would wait for rank 1 for ever
    print("rank 0 was not stopped")


def run_raise_thread():
    import threading
    dist.init()
    if dist.rank() == 1:
        def work():
            raise ValueError("boom from rank 1")
        t = threading.Thread(target=work)
        t.start()
        t.join()
        import time
        time.sleep(60)   # (not the all_reduce: if the abort were slow to land, rank 1's
        #                   main thread would complete rank 0's all_reduce and the test race)
    dist.all_reduce(cad.ones(3))
    print("rank 0 was not stopped")


if __name__ == "__main__":
    mode = sys.argv[1] if len(sys.argv) > 1 else "checks"
    {"checks": run_checks, "raise": run_raise, "raise_thread": run_raise_thread}[mode]()
