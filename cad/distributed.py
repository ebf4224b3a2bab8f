"""cad.distributed: differentiable collectives, data-parallel gradients and parallel
maps over MPI (mpi4py), for runs under ``mpiexec -n N python script.py``.

    import cad.distributed as dist
    dist.init()                                  # MPI's world (mpi4py imported here, not before)
    dist.rank(), dist.world_size(); dist.barrier()
    y = dist.all_reduce(x)                       # differentiable: cad.grad, jvp, hessian, vmap
    sampler = dist.DistributedSampler(ds, shuffle=True, seed=0)
    loader = cad.data.DataLoader(ds, batch_size=32, sampler=sampler)
    loss.backward(); dist.all_reduce_grads(params)   # average the gradients, in buckets
    dist.map(f, inputs, what="grad")             # f's tape sent as cad's file format

NOTE [ Collectives as primitives ]
    Each collective is a user primitive (cad.primitive, NOTE [ Custom primitives ]):
    its function calls MPI on the host value, and its rules are collectives again,
    the transpose pairs of mpi4jax and JAX's collectives:
        all_reduce      vjp all_reduce      jvp all_reduce
        all_gather      vjp reduce_scatter  jvp all_gather
        reduce_scatter  vjp all_gather      jvp reduce_scatter
        broadcast       vjp reduce          jvp broadcast
        reduce          vjp broadcast       jvp reduce
    Because the rules call the primitives, a sweep that records (create_graph, a
    transform inside a transform, forward over reverse) records collectives again:
    every order is right.  What is differentiated is the SPMD program as a whole: the
    gradient on rank r is d(sum over ranks of each rank's output)/d(rank r's input),
    which is what a data-parallel loss (each rank's loss summed, or averaged) needs.
    The same conventions as MPI: every rank calls the same collectives in the same
    order, forward and backward (each rank's backward sweep reaches the rules in the
    reverse order of the forward); shapes and dtypes agree across ranks (all_gather
    stacks along a new leading axis, as jax.lax.all_gather and mpi4jax).  A sweep
    calls a record's rule only if the output it differentiates depends on the
    record, so every rank's differentiated output must depend on the same
    collectives: a rank whose loss does not use a collective's result adds
    ``0 * y.sum()`` (a dependence through a zero counts), else the other ranks wait
    in that rule's collective (torch DDP's unused-parameter problem has the same
    cause).  CUDA tensors go through host copies (the primitive's differentiable
    to_device, NOTE [ Custom primitives ]).

NOTE [ Failing ranks ]
    A rank that raises would leave the others waiting in their next collective for
    ever.  ``init()`` (called by every function here) installs a ``sys.excepthook``
    (and a ``threading.excepthook``: an exception that ends a thread) that prints the
    traceback, names the rank and calls ``MPI_Abort`` on the world (what ``python -m
    mpi4py script.py`` does): mpiexec then stops every rank and exits with a non-zero
    status.  ``init(abort_on_error=False)`` leaves the hook
    alone (an interactive session, a rank that handles its errors).

The README's "cad.distributed" section has the rest: buckets, the sampler, map,
pickling, CUDA and how this would scale to many GPUs.
"""
from __future__ import annotations

import math
import os
import sys
import time
import traceback
from typing import Any, Iterator, List, Optional, Sequence

import numpy as np

from . import tree as _tree
from .io import dumps
from ._core import _engine as C
from .ops.custom import primitive as _primitive

_STATE = {"comm": None, "MPI": None, "hooked": False}

__all__ = ["init", "is_initialized", "rank", "world_size", "barrier", "cuda_aware", "all_reduce",
           "all_gather", "reduce_scatter", "broadcast", "reduce", "all_reduce_grads",
           "GradReducer", "broadcast_params", "DistributedSampler", "map", "mpiexec_command"]


def mpiexec_command(n: int, python: Optional[str] = None) -> List[str]:
    """The command line that starts ``n`` ranks of ``python`` (default: this
    interpreter) with the MPI next to it, or on PATH: ``mpiexec -n n python``, with the
    flags a container needs (MPICH's hydra: ``-launcher fork``, no ssh; Open MPI:
    ``--oversubscribe``, and running as root is allowed through its environment
    variables, which the caller sets: OMPI_ALLOW_RUN_AS_ROOT=1,
    OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1).  Append the script and its arguments.  Used by
    the tests and the benchmark; raises FileNotFoundError without an mpiexec."""
    import shutil
    import subprocess
    python = python or sys.executable
    exe = os.path.join(os.path.dirname(python), "mpiexec")
    if not os.path.exists(exe):
        exe = shutil.which("mpiexec")
    if exe is None:
        raise FileNotFoundError("cad.distributed: no mpiexec next to the Python interpreter nor on PATH "
                                "(pip install \"cad[mpi]\" installs MPICH's)")
    try:
        ver = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        ver = ""
    if "Open MPI" in ver or "OpenRTE" in ver:
        return [exe, "--oversubscribe", "-n", str(n), python]
    if "HYDRA" in ver.upper():
        return [exe, "-launcher", "fork", "-n", str(n), python]
    return [exe, "-n", str(n), python]


def _mpi():
    if _STATE["MPI"] is None:
        try:
            from mpi4py import MPI
        except ImportError as e:
            raise ImportError("cad.distributed needs mpi4py and an MPI library: "
                              "pip install \"cad[mpi]\" (or pip install mpi4py mpich), then run "
                              "the script under mpiexec -n N") from e
        _STATE["MPI"] = MPI
    return _STATE["MPI"]


def init(comm: Any = None, abort_on_error: bool = True) -> None:
    """Start (or join) MPI: the communicator (default MPI.COMM_WORLD) that every
    function here uses.  Idempotent; every function calls it.  ``abort_on_error``
    installs the hook that aborts every rank when one raises (NOTE [ Failing ranks ])."""
    MPI = _mpi()
    if comm is not None or _STATE["comm"] is None:
        _STATE["comm"] = MPI.COMM_WORLD if comm is None else comm
    if abort_on_error and not _STATE["hooked"]:
        _STATE["hooked"] = True
        sys.excepthook = _abort_hook(sys.excepthook)
        import threading
        previous = threading.excepthook   # an exception that ends a thread: the same

        def thread_hook(args, _hook=_abort_hook(lambda *a: previous(args))):
            if args.exc_type is SystemExit:
                return previous(args)
            return _hook(args.exc_type, args.exc_value, args.exc_traceback)
        threading.excepthook = thread_hook


def _abort_hook(previous):
    def hook(etype, value, tb):
        comm = _STATE["comm"]
        r = comm.Get_rank() if comm is not None else "?"
        n = comm.Get_size() if comm is not None else "?"
        if n == 1:   # nobody to wait for: Python's usual report and exit
            previous(etype, value, tb)
            return
        sys.stderr.write(f"cad.distributed: rank {r} of {n} raised {etype.__name__}; aborting every rank "
                         "(MPI_Abort) so that none waits for it in a collective\n")
        traceback.print_exception(etype, value, tb, file=sys.stderr)
        sys.stderr.flush()
        time.sleep(0.5)   # (the launcher forwards the report before the abort tears the job down)
        _STATE["MPI"].COMM_WORLD.Abort(1)
    hook._cad_previous = previous
    return hook


def is_initialized() -> bool:
    """whether init() has run in this process"""
    return _STATE["comm"] is not None


def _comm():
    if _STATE["comm"] is None:
        init()
    return _STATE["comm"]


def rank() -> int:
    """this process's rank in the communicator (0 .. world_size() - 1)"""
    return _comm().Get_rank()


def world_size() -> int:
    """the number of ranks"""
    return _comm().Get_size()


def barrier() -> None:
    """wait until every rank reaches its barrier()"""
    _comm().Barrier()


def cuda_aware() -> bool:
    """whether the MPI library says it can read and write CUDA device memory
    (MPIX_Query_cuda_support through mpi4py where it exists; False otherwise).  cad
    sends CUDA tensors through host copies either way (the README says why)."""
    MPI = _mpi()
    q = getattr(MPI, "Query_cuda_support", None)
    try:
        return bool(q()) if q is not None else False
    except Exception:   # noqa: BLE001  (an MPI without the extension raises NotImplementedError)
        return False


# ---------------------------------------------------------------- the primitives

def _host(x):
    return np.ascontiguousarray(np.asarray(x))


def _check_op(who, op):
    if op not in ("sum", "mean"):
        raise ValueError(f"cad.distributed.{who}: op must be 'sum' or 'mean', got {op!r}")


def _check_root(who, root):
    n = world_size()
    if isinstance(root, bool) or not isinstance(root, (int, np.integer)) or not 0 <= root < n:
        raise ValueError(f"cad.distributed.{who}: root must be a rank in 0..{n - 1}, got {root!r}")
    return int(root)


@_primitive(name="all_reduce")
def _all_reduce(x):
    a = _host(x)
    out = np.empty_like(a)
    _comm().Allreduce(a, out, op=_mpi().SUM)
    return out


@_primitive(name="all_gather")
def _all_gather(x):
    a = _host(x)
    out = np.empty((world_size(),) + a.shape, dtype=a.dtype)
    _comm().Allgather(a, out)
    return out


@_primitive(name="reduce_scatter")
def _reduce_scatter(x):
    a = _host(x)
    out = np.empty(a.shape[1:], dtype=a.dtype)
    _comm().Reduce_scatter_block(a, out, op=_mpi().SUM)
    return out


@_primitive(name="broadcast")
def _broadcast(x, root):
    a = np.array(x, copy=True, order="C")
    _comm().Bcast(a, root=root)
    return a


@_primitive(name="reduce")
def _reduce(x, root):
    a = _host(x)
    out = np.zeros_like(a)
    _comm().Reduce(a, out if rank() == root else None, op=_mpi().SUM, root=root)
    return out


# NOTE [ Collectives as primitives ]: each rule is the transpose (vjp) or the same
# collective (jvp, every collective being linear), called through the primitives.
_all_reduce.defvjp(lambda g, ans, x: _all_reduce(g))
_all_reduce.defjvp(lambda ts, ans, x: _all_reduce(ts[0]))
_all_gather.defvjp(lambda g, ans, x: _reduce_scatter(g))
_all_gather.defjvp(lambda ts, ans, x: _all_gather(ts[0]))
_reduce_scatter.defvjp(lambda g, ans, x: _all_gather(g))
_reduce_scatter.defjvp(lambda ts, ans, x: _reduce_scatter(ts[0]))
_broadcast.defvjp(lambda g, ans, x, root: (_reduce(g, root), None))
_broadcast.defjvp(lambda ts, ans, x, root: _broadcast(ts[0], root))
_reduce.defvjp(lambda g, ans, x, root: (_broadcast(g, root), None))
_reduce.defjvp(lambda ts, ans, x, root: _reduce(ts[0], root))

# vmap: one collective for the whole batch (the batch axis leads; the rank axis of
# all_gather / reduce_scatter goes after it)
_all_reduce.defvmap(lambda x: _all_reduce(x))
_broadcast.defvmap(lambda x, root: _broadcast(x, root))
_reduce.defvmap(lambda x, root: _reduce(x, root))
_all_gather.defvmap(lambda x: _cad().swapaxes(_all_gather(x), 0, 1))
_reduce_scatter.defvmap(lambda x: _reduce_scatter(_cad().swapaxes(x, 0, 1)))


def _cad():
    import cad
    return cad


def _tensor(who, x):
    from .ops._batch import Batched
    if isinstance(x, (C.Tensor, Batched)):
        return x
    if isinstance(x, (np.ndarray, float, int, list, tuple)) and not isinstance(x, bool):
        import cad
        return cad.tensor(x)
    raise TypeError(f"cad.distributed.{who}: expected a tensor, got {type(x).__name__}")


def all_reduce(t: Any, op: str = "sum") -> Any:
    """The sum (op="sum") or mean (op="mean") of t over the ranks, on every rank.
    Differentiable: its vjp is all_reduce of the cotangent (NOTE [ Collectives as
    primitives ])."""
    _check_op("all_reduce", op)
    r = _all_reduce(_tensor("all_reduce", t))
    return r / world_size() if op == "mean" else r


def all_gather(t: Any) -> Any:
    """Every rank's t stacked along a new leading axis: shape (world_size(), *t.shape),
    on every rank (jax.lax.all_gather's and mpi4jax's layout; torch's
    all_gather_into_tensor concatenates: reshape).  vjp: reduce_scatter."""
    return _all_gather(_tensor("all_gather", t))


def reduce_scatter(t: Any, op: str = "sum") -> Any:
    """t has shape (world_size(), *s); rank r gets the sum (or mean) over the ranks of
    their t[r], shape s.  vjp: all_gather."""
    _check_op("reduce_scatter", op)
    t = _tensor("reduce_scatter", t)
    n = world_size()
    if t.ndim == 0 or t.shape[0] != n:
        raise ValueError(f"cad.distributed.reduce_scatter: the input's leading axis must be the "
                         f"world size {n}; got shape {tuple(t.shape)}")
    r = _reduce_scatter(t)
    return r / n if op == "mean" else r


def broadcast(t: Any, root: int = 0) -> Any:
    """root's t on every rank (every rank passes a tensor of the same shape and dtype;
    the others' values are not read).  vjp: the cotangents summed onto root (reduce),
    zero on the other ranks."""
    return _broadcast(_tensor("broadcast", t), _check_root("broadcast", root))


def reduce(t: Any, root: int = 0, op: str = "sum") -> Any:
    """The sum (or mean) of t over the ranks on root; zeros of t's shape elsewhere.
    vjp: broadcast of root's cotangent."""
    _check_op("reduce", op)
    r = _reduce(_tensor("reduce", t), _check_root("reduce", root))
    return r / world_size() if op == "mean" else r


# ---------------------------------------------------------------- data parallel

_BUCKET_BYTES = 25 * 2 ** 20   # torch DDP's default bucket_cap_mb


def _grad_params(params):
    leaves = _tree.tree_leaves(params)
    for i, p in enumerate(leaves):
        if not isinstance(p, C.Tensor):
            raise TypeError(f"cad.distributed.all_reduce_grads: parameter {i} is a {type(p).__name__}, "
                            "not a tensor")
    return leaves


def _buckets(leaves, bucket_bytes):
    """[(dtype, [leaf index])]: consecutive parameters of one dtype, up to bucket_bytes
    each (a parameter larger than that is a bucket of its own)"""
    out, cur, cur_dt, cur_b = [], [], None, 0
    for i, p in enumerate(leaves):
        dt = np.dtype(p.dtype)
        nb = math.prod(p.shape) * dt.itemsize
        if cur and (dt != cur_dt or cur_b + nb > bucket_bytes):
            out.append((cur_dt, cur))
            cur, cur_b = [], 0
        cur.append(i)
        cur_dt = dt
        cur_b += nb
    if cur:
        out.append((cur_dt, cur))
    return out


_BUFFERS = {}   # bucket number -> its host buffer, reused from step to step


def _bucket_buffer(b, dt, n):
    """bucket b's host buffer: the same memory every step while its dtype and size stay,
    as torch DDP keeps its buckets (a fresh buffer each call cost about 150 µs more per
    8 KB Allreduce here: MPICH's transports register each new buffer's pages)"""
    buf = _BUFFERS.get(b)
    if buf is None or buf.dtype != dt or buf.size != n:
        buf = _BUFFERS[b] = np.empty(n, dtype=dt)
    return buf


def all_reduce_grads(params: Any, average: bool = True, bucket_bytes: int = _BUCKET_BYTES) -> None:
    """Sum (average=True: average) every parameter's ``.grad`` over the ranks, in place
    of ``.grad``: what a data-parallel step does between ``backward()`` and
    ``opt.step()``.  params: tensors, a pytree of them, or a list of param groups'
    tensors.  The gradients go in buckets of up to ``bucket_bytes`` (25 MiB, torch
    DDP's default), one Allreduce each, so a model of many small tensors pays the
    message latency once per bucket, not once per tensor.  A parameter whose
    ``.grad`` is None counts as zeros (every rank must reduce the same buckets) and
    gets the result.  Runs after backward (blocking); ``GradReducer`` overlaps the
    same reduction with the backward sweep."""
    leaves = _grad_params(params)
    comm = _comm()
    n = comm.Get_size()
    MPI = _mpi()
    for b, (dt, idx) in enumerate(_buckets(leaves, int(bucket_bytes))):
        sizes = [math.prod(leaves[i].shape) for i in idx]
        buf = _bucket_buffer(b, dt, sum(sizes))
        off = 0
        for i, k in zip(idx, sizes):
            g = leaves[i].grad
            if g is None:
                buf[off:off + k] = 0
            else:
                buf[off:off + k] = np.asarray(g if g.device.type == "cpu" else g.cpu()).reshape(-1)
            off += k
        if n > 1:
            comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
        if average and n > 1:
            buf /= n
        off = 0
        for i, k in zip(idx, sizes):
            p = leaves[i]
            g = C.from_numpy(buf[off:off + k].reshape(p.shape).copy(), None, False, False)
            p.grad = g if p.device.type == "cpu" else g.to(p.device)
            off += k


class GradReducer:
    """all_reduce_grads overlapped with the backward sweep (torch DDP's reducer):

        reducer = cad.distributed.GradReducer(params)     # once
        loss.backward()     # each bucket's Iallreduce starts as its last gradient is final
        reducer.wait()      # the averaged gradients in .grad; then opt.step()

    Each parameter gets a post-accumulate-grad hook (NOTE [ Gradient hooks ]): the
    backward sweep stops where a parameter's gradient is final, the hook copies it into
    its bucket, and once every parameter of the bucket is in, the bucket's
    non-blocking all-reduce starts while the sweep goes on.  Buckets are the blocks of
    all_reduce_grads in reverse (the last layers' gradients are final first, as DDP
    orders them) and start in one order on every rank (a ready bucket waits for the
    ones before it), so ranks whose sweeps finish parameters in different orders still
    match.  ``wait()`` starts what is left (a parameter that got no gradient this step
    counts as zeros), waits, and writes the results into ``.grad``.  The values equal
    all_reduce_grads' (the same buckets and sums).  One backward per ``wait()``; for
    gradient accumulation over several backward calls use all_reduce_grads after the
    last.  ``remove()`` takes the hooks off."""

    def __init__(self, params: Any, average: bool = True, bucket_bytes: int = _BUCKET_BYTES) -> None:
        self.params = _grad_params(params)
        self.average = bool(average)
        for i, p in enumerate(self.params):
            if not p.is_leaf or not p.requires_grad:
                raise ValueError(f"GradReducer: parameter {i} (shape {tuple(p.shape)}) is not a leaf "
                                 "that requires grad")
        blocks = _buckets(self.params, int(bucket_bytes))[::-1]
        self.buckets = []      # [dtype, [param index], sizes, offsets, buffer]
        self.where = {}        # param index -> bucket number
        for b, (dt, idx) in enumerate(blocks):
            sizes = [math.prod(self.params[i].shape) for i in idx]
            offs = [sum(sizes[:k]) for k in range(len(sizes))]
            self.buckets.append((dt, idx, sizes, offs, np.empty(sum(sizes), dtype=dt)))
            for i in idx:
                self.where[i] = b
        self._ids = {id(p): i for i, p in enumerate(self.params)}
        self._handles = [p.register_post_accumulate_grad_hook(self._hook) for p in self.params]
        self._reset()

    def _reset(self):
        self._ready = [set() for _ in self.buckets]
        self._reqs = [None] * len(self.buckets)
        self._next = 0          # the next bucket to start (they start in order)

    def _copy_in(self, i):
        b = self.where[i]
        dt, idx, sizes, offs, buf = self.buckets[b]
        k = idx.index(i)
        g = self.params[i].grad
        if g is None:
            buf[offs[k]:offs[k] + sizes[k]] = 0
        else:
            buf[offs[k]:offs[k] + sizes[k]] = np.asarray(g if g.device.type == "cpu" else g.cpu()).reshape(-1)
        self._ready[b].add(i)

    def _start_ready(self):
        comm = _comm()
        MPI = _mpi()
        while self._next < len(self.buckets) and \
                len(self._ready[self._next]) == len(self.buckets[self._next][1]):
            buf = self.buckets[self._next][4]
            if comm.Get_size() > 1:
                self._reqs[self._next] = comm.Iallreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
            self._next += 1
        started = [r for r in self._reqs if r is not None]
        if started:   # let MPI progress the started reductions while the sweep runs
            MPI.Request.Testall(started)

    def _hook(self, p):
        i = self._ids.get(id(p))
        if i is None or i in self._ready[self.where[i]]:
            return
        self._copy_in(i)
        self._start_ready()

    def wait(self) -> None:
        """start the buckets not started, wait for all, write the sums (averages) into
        every parameter's .grad"""
        self.started_in_sweep = self._next   # buckets the hooks started (for tests and bench)
        try:
            for b, (dt, idx, sizes, offs, buf) in enumerate(self.buckets):
                for i in idx:
                    if i not in self._ready[b]:
                        self._copy_in(i)
            self._start_ready()
            MPI = _mpi()
            started = [r for r in self._reqs if r is not None]
            if started:
                MPI.Request.Waitall(started)
            n = _comm().Get_size()
            for dt, idx, sizes, offs, buf in self.buckets:
                if self.average and n > 1:
                    buf /= n
                for i, k, o in zip(idx, sizes, offs):
                    p = self.params[i]
                    g = C.from_numpy(buf[o:o + k].reshape(p.shape).copy(), None, False, False)
                    p.grad = g if p.device.type == "cpu" else g.to(p.device)
        finally:
            self._reset()

    def remove(self) -> None:
        """take the hooks off the parameters"""
        for h in self._handles:
            h.remove()
        self._handles = []


def broadcast_params(params: Any, root: int = 0) -> None:
    """Copy root's parameter values to every rank (in place, under no_grad), as torch
    DDP does when it wraps a model: after it every rank starts from the same point."""
    leaves = _grad_params(params)
    root = _check_root("broadcast_params", root)
    comm = _comm()
    for p in leaves:
        a = np.array(np.asarray(p.detach() if p.device.type == "cpu" else p.detach().cpu()), copy=True,
                     order="C")
        comm.Bcast(a, root=root)
        v = C.from_numpy(a, None, False, False)
        with C.no_grad():
            p[...] = v if p.device.type == "cpu" else v.to(p.device)


class DistributedSampler:
    """The indices of this rank's shard of a dataset, for
    ``cad.data.DataLoader(ds, batch_size=b, sampler=sampler)``; torch's
    DistributedSampler.

    Each epoch's order is the one cad's DataLoader would shuffle with the same seed
    (``default_rng(SeedSequence([seed, epoch])).permutation(n)``; 0..n-1 unshuffled),
    padded with its own first indices to a multiple of the number of ranks (or cut
    to one with drop_last), and rank r takes positions r, r + N, r + 2N, ...: the
    shards are disjoint (before padding) and cover the data, and batch k of every
    rank's loader together is batch k of a single loader with batch size N * b.
    ``set_epoch(e)`` reshuffles (a DataLoader calls it at each epoch; torch leaves
    it to you).  The seed must be the same on every rank (the default 0 is)."""

    def __init__(self, dataset: Any, num_replicas: Optional[int] = None, rank: Optional[int] = None,
                 shuffle: bool = True, seed: int = 0, drop_last: bool = False) -> None:
        n = dataset if isinstance(dataset, (int, np.integer)) and not isinstance(dataset, bool) else len(dataset)
        if num_replicas is None:
            num_replicas = world_size()
        if rank is None:
            rank = globals()["rank"]()
        if isinstance(num_replicas, bool) or not isinstance(num_replicas, (int, np.integer)) or num_replicas < 1:
            raise ValueError(f"DistributedSampler: num_replicas must be an int >= 1, got {num_replicas!r}")
        if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)) or not 0 <= rank < num_replicas:
            raise ValueError(f"DistributedSampler: rank must be in 0..{num_replicas - 1}, got {rank!r}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise TypeError(f"DistributedSampler: seed must be an int >= 0, got {seed!r}")
        self.n = int(n)
        self.num_replicas = int(num_replicas)
        self.rank = int(rank)
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.drop_last = bool(drop_last)
        self.epoch = 0
        if self.drop_last and self.n % self.num_replicas:
            self.num_samples = self.n // self.num_replicas
        else:
            self.num_samples = -(-self.n // self.num_replicas)
        self.total_size = self.num_samples * self.num_replicas

    def set_epoch(self, epoch: int) -> None:
        """the epoch whose order the next iteration gives"""
        self.epoch = int(epoch)

    def indices(self) -> np.ndarray:
        """this rank's indices for the current epoch (int64)"""
        from .data import _epoch_order
        order = _epoch_order(self.seed, self.epoch, self.n) if self.shuffle else np.arange(self.n, dtype=np.int64)
        if self.total_size > self.n:
            reps = -(-(self.total_size - self.n) // max(self.n, 1))
            order = np.concatenate([order] + [order] * reps)[:self.total_size]
        else:
            order = order[:self.total_size]
        return order[self.rank:self.total_size:self.num_replicas]

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices().tolist())

    def __len__(self) -> int:
        return self.num_samples

    def __repr__(self):
        return (f"DistributedSampler(n={self.n}, num_replicas={self.num_replicas}, rank={self.rank}, "
                f"shuffle={self.shuffle}, seed={self.seed}, drop_last={self.drop_last}, epoch={self.epoch})")


# ---------------------------------------------------------------- parallel map

def _loads(raw):
    from .io import loads
    return loads(raw, "<cad.distributed message>")


# raw bytes between ranks (MPI's buffer calls: nothing is pickled)

def _bcast_bytes(comm, b, root):
    n = np.array([len(b) if comm.Get_rank() == root else 0], dtype=np.int64)
    comm.Bcast(n, root=root)
    buf = np.frombuffer(b, dtype=np.uint8).copy() if comm.Get_rank() == root else np.empty(int(n[0]), np.uint8)
    comm.Bcast(buf, root=root)
    return buf.tobytes()


def _scatter_bytes(comm, parts, root):
    me, size = comm.Get_rank(), comm.Get_size()
    counts = np.array([len(p) for p in parts] if me == root else [0] * size, dtype=np.int64)
    comm.Bcast(counts, root=root)
    recv = np.empty(int(counts[me]), np.uint8)
    send = None
    if me == root:
        send = [np.frombuffer(b"".join(parts), dtype=np.uint8), counts.tolist()]
    comm.Scatterv(send, recv, root=root)
    return recv.tobytes()


def _allgather_bytes(comm, b):
    counts = np.empty(comm.Get_size(), dtype=np.int64)
    comm.Allgather(np.array([len(b)], dtype=np.int64), counts)
    buf = np.empty(int(counts.sum()), np.uint8)
    comm.Allgatherv(np.frombuffer(b, dtype=np.uint8), [buf, counts.tolist()])
    offs = np.concatenate([[0], np.cumsum(counts)])
    raw = buf.tobytes()
    return [raw[offs[i]:offs[i + 1]] for i in range(len(counts))]


def map(f: Any, inputs: Optional[Sequence[Any]] = None, what: str = "value", root: int = 0) -> List[Any]:  # noqa: A001
    """Evaluate a recorded tape's value, gradient (``tape.grad``) or Hessian
    (``tape.hessian``) at many inputs, spread over the ranks; every rank gets the
    list of results in the order of the inputs.

    f: a ``cad.StaticTape`` or a function (recorded on root at the first input),
    needed on root only; the tape goes to the other ranks as cad's file format (the
    bytes ``cad.save`` writes, validated by ``cad.load``: no code is sent, so a tape
    holding user primitives cannot be sent).  inputs (on root; the other ranks may
    pass None): a sequence of argument tuples (or of single arguments).  Rank r
    evaluates inputs r, r + N, ...; inputs and results travel in the same format.
    f runs on root alone when it is recorded: it must not call collectives."""
    if what not in ("value", "grad", "hessian"):
        raise ValueError(f"cad.distributed.map: what must be 'value', 'grad' or 'hessian', got {what!r}")
    comm = _comm()
    root = _check_root("map", root)
    me, n = comm.Get_rank(), comm.Get_size()
    from .record import StaticTape, record
    tape, shards, err, head = None, None, None, b""
    if me == root:
        try:
            if inputs is None:
                raise ValueError("cad.distributed.map: root needs the inputs")
            args = [tuple(a) if isinstance(a, (tuple, list)) else (a,) for a in inputs]
            if isinstance(f, StaticTape):
                tape = f
            elif callable(f):
                if not args:
                    raise ValueError("cad.distributed.map: no inputs to record the function at")
                tape = record(f, *args[0])
            else:
                raise TypeError(f"cad.distributed.map: f must be a cad.StaticTape or a function, got "
                                f"{type(f).__name__}")
            head = b"\x01" + dumps(tape)
            shards = [dumps(list(args[r::n])) for r in range(n)]
        except Exception as e:   # noqa: BLE001  (the other ranks are told, then it is raised here)
            err = e
            head = b"\x00" + f"{type(e).__name__}: {e}".encode("utf-8", "replace")
    head = _bcast_bytes(comm, head, root)
    if head[:1] != b"\x01":
        if me == root:
            raise err
        raise RuntimeError(f"cad.distributed.map: root (rank {root}) failed: {head[1:].decode('utf-8', 'replace')}")
    if me != root:
        tape = _loads(head[1:])
    mine = _loads(_scatter_bytes(comm, shards, root))
    res = []
    for a in mine:
        a = tuple(a)
        if what == "value":
            res.append(tape(*a))
        elif what == "grad":
            res.append(tape.grad(*a))
        else:
            res.append(tape.hessian(*a))
    per = [_loads(p) for p in _allgather_bytes(comm, dumps(res))]
    out = [None] * sum(len(p) for p in per)
    for r, p in enumerate(per):
        for j, v in enumerate(p):
            out[r + j * n] = v
    return out
