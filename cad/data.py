"""cad.data: incremental data loading (the seed's last slides: loading a whole dataset
into memory is generally undesirable; start by timing how long a batch takes to load;
keep the compute busy; use processes where the CPU must work in parallel).

    ds = cad.data.TensorDataset(x, y)               # or NpyDataset("x.npy", "y.npy")
    loader = cad.data.DataLoader(ds, batch_size=64, shuffle=True, seed=0, num_workers=2)
    for xb, yb in loader:                             # cad tensors, rows stacked
        ...
    print(loader.stats)                               # is loading the bottleneck?

NOTE [ Batches and epochs ]
    A map-style dataset has ``__getitem__(i)`` and (for shuffling and ``len(loader)``)
    ``__len__``.  Epoch e's order is ``default_rng(SeedSequence([seed, e])).permutation(n)``
    (or 0..n-1 unshuffled); batch k holds positions k*batch_size .. (k+1)*batch_size-1 of
    it.  Each ``iter(loader)`` is the next epoch (``set_epoch`` picks one).  A batch is
    a pure function of (seed, epoch, k), prepared by whichever worker and put back in
    order by the parent, so the same seed gives the same batches in the same order
    whatever ``num_workers`` and ``workers``.  A dataset without ``__len__`` (shuffle=False
    only) is read 0, 1, 2, ... until ``__getitem__`` raises IndexError, as Python's old
    sequence protocol.

NOTE [ Collation and copies ]
    The default collate stacks rows with numpy (tuples, lists, namedtuples and dicts
    keep their structure; strings stay lists) and wraps each stacked array as a cad
    tensor without copying it (the array is fresh, so the tensor owns it).  dtypes are
    cad's: float64 stays float64, float32 stays float32 (float16 becomes float32),
    integers become int64, bools stay bool.  TensorDataset, NpyDataset and a bare
    ndarray take a fast path with no per-row Python: the rows are gathered (np.take, or
    one slice copy when unshuffled) straight into the batch's final array, which is
    the one copy between the dataset and the tensor.  A ``collate_fn``'s numpy
    results are copied once into tensors (they may alias the user's arrays); its cad
    tensors are kept.  ``device=`` moves each tensor (one host-to-device copy).

NOTE [ Workers ]
    num_workers=0 loads each batch in ``__next__``.  num_workers>0 keeps the next
    ``prefetch`` batches in preparation while the caller computes on the current one:
    - workers="thread": a thread pool.  numpy's gathers and copies release the GIL, so
      the fast path and memory-mapped reads overlap the caller's compute; a
      ``__getitem__`` that runs Python per row holds the GIL and gains little.
    - workers="process": ``multiprocessing`` processes (the default start method;
      ``mp_context`` picks another: then the dataset and collate_fn must pickle, and
      NpyDataset pickles as its paths).  A worker writes each batch into one
      ``multiprocessing.shared_memory`` segment (fast path: gathered straight into
      it) and sends only its name and layout; the parent maps the segment (on Linux
      through /dev/shm, so the tensors are views of the shared pages: no copy; where
      that file is absent, one copy out of it) and unlinks the name at once, so the
      pages live exactly as long as the tensors.  Segments are named after the parent
      and the batch, so shutdown unlinks any that were made but never opened.
    Shutdown (the last batch, ``break``, an exception, garbage collection or
    interpreter exit; ``it.close()`` too) stops the workers, joins them (terminating
    one that does not stop within a few seconds) and unlinks every segment.  An
    exception in a worker is raised again in the parent, the same type with the same
    message (a note names the worker and the batch, with the worker's traceback); a
    worker process that dies raises RuntimeError with its exit code.
"""
from __future__ import annotations

import math
import mmap as _mmap
import os
import pickle
import queue
import secrets
import signal
import sys
import threading
import time
import traceback
import weakref
from collections.abc import Mapping
from typing import Any, Callable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import creation as _creation
from ._core import _engine as _C

__all__ = ["DataLoader", "Dataset", "LoaderStats", "NpyDataset", "TensorDataset", "default_collate"]


# ----------------------------------------------------------------------------- datasets

class Dataset:
    """A map-style dataset: subclasses define ``__getitem__(i)`` (one sample: an array,
    a number, or a tuple/list/dict of them) and ``__len__()``.  Any object with
    ``__getitem__`` works with DataLoader (lists, ndarrays); this class only names the
    protocol.  A subclass may also define ``__getitems__(indices)`` returning the list
    of samples, to fetch a batch in one call."""

    def __getitem__(self, index: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must define __getitem__(index)")


def _check_rows(who, arrays):
    """all arrays have a first dimension, the same one"""
    for i, a in enumerate(arrays):
        if a.ndim == 0:
            raise ValueError(f"{who}: argument {i} is a scalar (shape ()); each input needs a first "
                             "dimension, the sample index")
    sizes = [a.shape[0] for a in arrays]
    if len(set(sizes)) > 1:
        said = ", ".join(f"{n} (argument {i}, shape {a.shape})" for i, (n, a) in enumerate(zip(sizes, arrays)))
        raise ValueError(f"{who}: every input needs the same first dimension (the number of samples); "
                         f"got {said}")


class TensorDataset(Dataset):
    """Samples are rows of the given tensors/arrays: ``ds[i] == (a[i], b[i], ...)``.

    Accepts cad tensors (their host values are used, detached), numpy arrays and nested
    lists; all must have the same first dimension.  Items are tuples of numpy rows
    (views); DataLoader turns batches of them into cad tensors."""

    def __init__(self, *tensors: Any) -> None:
        if not tensors:
            raise TypeError("TensorDataset: give at least one tensor or array")
        arrays = []
        for i, t in enumerate(tensors):
            if isinstance(t, _C.Tensor):
                a = t.detach().cpu().numpy()
            elif isinstance(t, np.ndarray):
                a = t
            else:
                try:
                    a = np.asarray(t)
                except (TypeError, ValueError) as e:
                    raise TypeError(f"TensorDataset: argument {i} ({type(t).__name__}) is not a tensor, "
                                    f"an array or a nested list: {e}") from None
                if a.dtype == object:
                    raise TypeError(f"TensorDataset: argument {i} ({type(t).__name__}) does not convert "
                                    "to a numeric array (ragged or of objects)")
            arrays.append(a)
        _check_rows("TensorDataset", arrays)
        self.arrays = tuple(arrays)

    def __len__(self) -> int:
        return self.arrays[0].shape[0]

    def __getitem__(self, index: Any) -> Tuple[Any, ...]:
        return tuple(a[index] for a in self.arrays)

    def __repr__(self):
        return f"TensorDataset({len(self)} samples; {', '.join(f'{a.dtype}{list(a.shape[1:])}' for a in self.arrays)})"


def _open_npy(path, mmap, i):
    try:
        a = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except ValueError as e:
        raise ValueError(f"NpyDataset: cannot read argument {i}, {os.fspath(path)!r}: {e}") from None
    if not isinstance(a, np.ndarray):   # an .npz archive (an NpzFile): a wrong file, not a wrong type
        a.close()
        raise ValueError(  # noqa: TRY004
            f"NpyDataset: argument {i}, {os.fspath(path)!r}, is an .npz archive; give its .npy members "
            "(np.load(path)[name]) or save each array with np.save")
    return a


class NpyDataset(Dataset):
    """Samples are rows of ``.npy`` files: ``ds[i] == (a[i], b[i], ...)``.

    Each argument is a path to an ``.npy`` file or an array.  With ``mmap=True`` (the
    default) a file is opened with ``np.load(path, mmap_mode="r")``: nothing is read
    until a row is asked for, so a dataset larger than memory streams through a
    DataLoader (only the batches in flight are in memory; the pages read stay in the
    OS's page cache, which it reclaims).  ``mmap=False`` reads the files whole.  All
    inputs must have the same first dimension.  Pickles (for spawned workers) as its
    paths: a worker maps the files again rather than receiving their bytes."""

    def __init__(self, *paths_or_arrays: Union[str, os.PathLike[str], np.ndarray], mmap: bool = True) -> None:
        if not paths_or_arrays:
            raise TypeError("NpyDataset: give at least one .npy path or array")
        self.mmap = bool(mmap)
        self.paths = []
        arrays = []
        for i, p in enumerate(paths_or_arrays):
            if isinstance(p, (str, bytes, os.PathLike)):
                arrays.append(_open_npy(p, self.mmap, i))
                self.paths.append(os.fspath(p))
            elif isinstance(p, np.ndarray):
                arrays.append(p)
                self.paths.append(None)
            else:
                raise TypeError(f"NpyDataset: argument {i} must be a path to an .npy file or a numpy "
                                f"array; got {type(p).__name__}")
        _check_rows("NpyDataset", arrays)
        self.arrays = tuple(arrays)

    def __len__(self) -> int:
        return self.arrays[0].shape[0]

    def __getitem__(self, index: Any) -> Tuple[Any, ...]:
        return tuple(a[index] for a in self.arrays)

    def __getstate__(self):
        return {"mmap": self.mmap, "paths": self.paths,
                "arrays": [None if p is not None else a for p, a in zip(self.paths, self.arrays)]}

    def __setstate__(self, state):
        self.mmap, self.paths = state["mmap"], state["paths"]
        self.arrays = tuple(_open_npy(p, self.mmap, i) if p is not None else a
                            for i, (p, a) in enumerate(zip(self.paths, state["arrays"])))

    def __repr__(self):
        src = ", ".join(repr(p) if p is not None else "<array>" for p in self.paths)
        return f"NpyDataset({src}; {len(self)} samples, mmap={self.mmap})"


# ----------------------------------------------------------------------------- collation

def _final_dtype(dt):
    """the dtype a numpy array of dtype dt has as a cad tensor (dt itself when cad has
    no tensor for it: it then stays a numpy array; uint64 is left to cad's check)"""
    k = dt.kind
    if k == "f":
        return np.dtype(np.float32) if dt.itemsize <= 4 else np.dtype(np.float64)
    if k == "i" or (k == "u" and dt.itemsize < 8):
        return np.dtype(np.int64)
    if k == "b":
        return np.dtype(np.bool_)
    return dt


def _convertible(a):
    return isinstance(a, np.ndarray) and a.dtype.kind in "fiub"


def _finalize(a):
    """a in its final dtype (a fresh array when it converts)"""
    dt = _final_dtype(a.dtype)
    return a if dt == a.dtype else a.astype(dt)


def _stack(leaves, path):
    first = leaves[0]
    if isinstance(first, (str, bytes)):
        return list(leaves)
    arrays = []
    for i, x in enumerate(leaves):
        if isinstance(x, _C.Tensor):
            x = x.detach().cpu().numpy()
        a = np.asarray(x)
        if a.dtype == object:
            raise TypeError(f"DataLoader: cannot collate {path} of sample {i}: {type(x).__name__} is not an "
                            "array, a number, a string, a tensor, or a tuple/list/dict of them (pass collate_fn=)")
        arrays.append(a)
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        j = next(i for i, a in enumerate(arrays) if a.shape != arrays[0].shape)
        raise ValueError(f"DataLoader: cannot stack {path}: sample 0 has shape {arrays[0].shape} and "
                         f"sample {j} has shape {arrays[j].shape} (pass collate_fn= to pad or group them)")
    return _finalize(np.stack(arrays))


def _collate_numpy(samples, path="batch"):
    """samples (a list of equal structures) -> one structure of stacked numpy arrays"""
    first = samples[0]
    if isinstance(first, Mapping):
        keys = list(first)
        for i, s in enumerate(samples):
            if not isinstance(s, Mapping) or set(s) != set(keys):
                got = sorted(map(str, s)) if isinstance(s, Mapping) else type(s).__name__
                raise ValueError(f"DataLoader: cannot collate {path}: sample 0 has keys {sorted(map(str, keys))}, "
                                 f"sample {i} has {got}")
        return {k: _collate_numpy([s[k] for s in samples], f"{path}[{k!r}]") for k in keys}
    if isinstance(first, (tuple, list)):
        n = len(first)
        for i, s in enumerate(samples):
            if not isinstance(s, (tuple, list)) or len(s) != n:
                got = f"length {len(s)}" if isinstance(s, (tuple, list)) else type(s).__name__
                raise ValueError(f"DataLoader: cannot collate {path}: sample 0 has length {n}, sample {i} has {got}")
        cols = [_collate_numpy([s[j] for s in samples], f"{path}[{j}]") for j in range(n)]
        if isinstance(first, tuple) and hasattr(first, "_fields"):
            return type(first)(*cols)
        return tuple(cols) if isinstance(first, tuple) else cols
    return _stack(samples, path)


# a structure's skeleton: None is a leaf; ("t"|"l", children), ("d", keys, children),
# ("n", namedtuple type, children).  Picklable, so it crosses to the parent with the layout.
def _flatten(x, leaves):
    if type(x) is tuple or type(x) is list:
        return ("t" if type(x) is tuple else "l", [_flatten(e, leaves) for e in x])
    if isinstance(x, tuple) and hasattr(x, "_fields"):
        return ("n", type(x), [_flatten(e, leaves) for e in x])
    if isinstance(x, dict):
        return ("d", list(x), [_flatten(v, leaves) for v in x.values()])
    leaves.append(x)
    return None


def _unflatten(tree, it):
    if tree is None:
        return next(it)
    if tree[0] == "t":
        return tuple(_unflatten(c, it) for c in tree[1])
    if tree[0] == "l":
        return [_unflatten(c, it) for c in tree[1]]
    if tree[0] == "n":
        return tree[1](*(_unflatten(c, it) for c in tree[2]))
    return {k: _unflatten(c, it) for k, c in zip(tree[1], tree[2])}


def _to_cad(x, owned, device):
    """a leaf of a collated batch as the caller gets it: numeric arrays become cad
    tensors (wrapping an array the loader owns, copying one it does not), tensors move
    to device; anything else (strings, non-numeric arrays) is returned as it is"""
    if isinstance(x, np.generic) and x.dtype.kind in "fiub":
        x = np.asarray(x)
    if _convertible(x):
        x = _C.from_numpy(x, None, False, copy=not owned)
    elif not isinstance(x, _C.Tensor):
        return x
    return x.to(device) if device is not None else x


def default_collate(samples: Sequence[Any]) -> Any:
    """The DataLoader's collation: a list of samples (each an array, a number, a string,
    a cad tensor, or a tuple/list/namedtuple/dict of them) -> one structure of cad
    tensors, rows stacked on a new first axis (strings: a list)."""
    if not isinstance(samples, (list, tuple)) or not samples:
        raise TypeError("default_collate: samples must be a non-empty list of samples")
    leaves = []
    tree = _flatten(_collate_numpy(list(samples)), leaves)
    return _unflatten(tree, iter([_to_cad(x, True, None) for x in leaves]))


# ----------------------------------------------------------------------------- loading one batch

def _fast_arrays(dataset):
    """(arrays, single) when a batch can be gathered without per-row Python: a
    TensorDataset/NpyDataset whose __getitem__ is not overridden, or an ndarray"""
    if isinstance(dataset, (TensorDataset, NpyDataset)) and \
            type(dataset).__getitem__ in (TensorDataset.__getitem__, NpyDataset.__getitem__):
        return dataset.arrays, False
    if isinstance(dataset, np.ndarray) and dataset.ndim >= 1 and dataset.dtype != object:
        return (dataset,), True
    return None, False


def _gather(a, idx, out):
    """rows idx (a slice or an int64 array) of a into out (its final dtype): one copy"""
    if isinstance(idx, slice):
        np.copyto(out, a[idx], casting="unsafe")
    elif out.dtype == a.dtype:
        np.take(a, idx, axis=0, out=out, mode="clip")   # (indices are in range; 'clip' is unbuffered)
    else:
        np.copyto(out, a[idx], casting="unsafe")


class _Fetcher:
    """Loads batch k from its indices, into numpy; runs in the caller, a worker thread
    or a worker process (it pickles with the dataset for spawned processes)."""

    def __init__(self, dataset, collate_fn, batch_size, drop_last):
        self.dataset, self.collate_fn = dataset, collate_fn
        self.batch_size, self.drop_last = batch_size, drop_last
        self.arrays, self.single = _fast_arrays(dataset) if collate_fn is None else (None, False)

    def _samples(self, k, idx):
        """(samples, last): last when an unsized dataset ended inside this batch"""
        ds = self.dataset
        if idx is not None:
            ii = range(idx.start, idx.stop) if isinstance(idx, slice) else idx.tolist()
            getitems = getattr(ds, "__getitems__", None)
            return (list(getitems(list(ii))) if getitems is not None else [ds[i] for i in ii]), False
        samples = []
        for i in range(k * self.batch_size, (k + 1) * self.batch_size):
            try:
                samples.append(ds[i])
            except IndexError:
                return samples, True
        return samples, False

    def load(self, k, idx, alloc=None):
        """batch k as (tree, leaves, rows, last, owned), or None past the end of an
        unsized dataset.  alloc(specs) -> output arrays lets the fast path gather
        straight into memory the caller provides (a shared-memory segment)."""
        if self.arrays is not None:
            rows = (idx.stop - idx.start) if isinstance(idx, slice) else len(idx)
            specs = [((rows,) + a.shape[1:], _final_dtype(a.dtype)) for a in self.arrays]
            outs = alloc(specs) if alloc is not None else [np.empty(s, d) for s, d in specs]
            for a, out in zip(self.arrays, outs):
                _gather(a, idx, out)
            tree = None if self.single else ("t", [None] * len(outs))
            return tree, outs, rows, False, True
        samples, last = self._samples(k, idx)
        if not samples or (last and self.drop_last):
            return None
        batch = self.collate_fn(samples) if self.collate_fn is not None else _collate_numpy(samples)
        leaves = []
        tree = _flatten(batch, leaves)
        return tree, leaves, len(samples), last, self.collate_fn is None


def _pack_error(e):
    """(the exception, or a RuntimeError with its message when it does not pickle; the
    formatted traceback)"""
    tb = traceback.format_exc()
    try:
        pickle.loads(pickle.dumps(e))
    except Exception:  # noqa: BLE001  (whatever stops it crossing to the parent)
        e = RuntimeError(f"{type(e).__name__}: {e}")
    return e, tb


def _noted(e, note):
    if hasattr(e, "add_note"):   # Python >= 3.11
        e.add_note(note)
    return e


# ----------------------------------------------------------------------------- shared memory

def _layout(specs):
    """byte offsets (64-aligned) for arrays of the given (shape, dtype)s; total size"""
    offs, off = [], 0
    for shape, dt in specs:
        off = -(-off // 64) * 64
        offs.append(off)
        off += math.prod(shape) * dt.itemsize
    return offs, max(off, 1)


def _write_shm(fetcher, k, idx, name):
    """worker side: batch k into a new segment called name (closed here; the parent
    unlinks it once it has mapped it); the message for the parent"""
    from multiprocessing import shared_memory
    segs = []

    def alloc(specs):
        offs, size = _layout(specs)
        segs.append(shared_memory.SharedMemory(name=name, create=True, size=size))
        return [np.ndarray(s, d, buffer=segs[0].buf, offset=o) for (s, d), o in zip(specs, offs)]

    try:
        msg = _batch_to_shm(fetcher, k, idx, alloc)
        return msg if msg[0] == "end" else msg[:2] + ((name if segs else None),) + msg[2:]
    except BaseException as e:
        traceback.clear_frames(e.__traceback__)   # (views into the segment die with the frames)
        if segs:
            segs[0].close()
            segs[0].unlink()
            segs.clear()
        raise
    finally:
        if segs:
            segs[0].close()


def _batch_to_shm(fetcher, k, idx, alloc):
    """("end", k), or ("ok", k, layout, tree, rows, last, owned) with the batch's arrays
    written through alloc; no view of the segment outlives this call"""
    res = fetcher.load(k, idx, alloc)
    if res is None:
        return ("end", k)
    tree, leaves, rows, last, _owned = res
    if fetcher.arrays is not None:   # gathered straight into the segment
        specs = [(a.shape, a.dtype) for a in leaves]
        offs = iter(_layout(specs)[0])
        return ("ok", k, [("shm", next(offs), s, d) for s, d in specs], tree, rows, last, True)
    # collated in worker memory: numeric arrays (and tensors) are copied into the segment
    arrs = []
    for x in leaves:
        if isinstance(x, _C.Tensor):
            x = x.detach().cpu().numpy()
        if isinstance(x, np.generic):
            x = np.asarray(x)
        arrs.append(_finalize(x) if _convertible(x) else None)
    specs = [(a.shape, a.dtype) for a in arrs if a is not None]
    if specs:
        for v, a in zip(alloc(specs), [a for a in arrs if a is not None]):
            np.copyto(v, a)
    offs = iter(_layout(specs)[0])
    layout = [("obj", x) if a is None else ("shm", next(offs), a.shape, a.dtype) for x, a in zip(leaves, arrs)]
    return ("ok", k, layout, tree, rows, last, True)


def _open_shm(name, layout):
    """parent side: the leaves of a batch a worker wrote into segment name, which is
    unlinked before this returns.  On Linux the arrays are views of a private mmap of
    /dev/shm/<name>, alive as long as they are (no copy); elsewhere copies."""
    from multiprocessing import shared_memory
    if name is None:
        return [x[1] for x in layout]
    seg = shared_memory.SharedMemory(name=name)
    try:
        mm = None
        path = os.path.join("/dev/shm", name)
        if sys.platform.startswith("linux") and os.path.exists(path):
            fd = os.open(path, os.O_RDWR)
            try:
                mm = _mmap.mmap(fd, seg.size)
            finally:
                os.close(fd)
        out = []
        for item in layout:
            if item[0] == "obj":
                out.append(item[1])
            elif mm is not None:
                out.append(np.ndarray(item[2], item[3], buffer=mm, offset=item[1]))
            else:
                out.append(np.ndarray(item[2], item[3], buffer=seg.buf, offset=item[1]).copy())
        return out
    finally:
        seg.close()
        seg.unlink()


def _unlink_quiet(name):
    from multiprocessing import shared_memory
    try:
        seg = shared_memory.SharedMemory(name=name)
    except (FileNotFoundError, OSError, ValueError):
        return
    seg.close()
    try:
        seg.unlink()
    except FileNotFoundError:
        pass


def _worker_loop(fetcher, task_q, result_q, stop, prefix, parent_pid):
    """a worker process: batches from task_q (k, indices) into segments; None stops it"""
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)   # Ctrl-C is the parent's to handle
    except (ValueError, OSError):
        pass
    while not stop.is_set():
        try:
            task = task_q.get(timeout=0.25)
        except queue.Empty:
            if os.getppid() != parent_pid:   # the parent died without shutting us down
                return
            continue
        if task is None:
            return
        k, idx = task
        t0 = time.perf_counter()
        try:
            msg = _write_shm(fetcher, k, idx, f"{prefix}_{k}")
        except BaseException as e:  # noqa: BLE001  (every error goes to the parent)
            msg = ("err", k) + _pack_error(e)
        result_q.put((time.perf_counter() - t0,) + msg)


# ----------------------------------------------------------------------------- worker pools

class _Threads:
    def __init__(self, fetcher, n):
        from concurrent.futures import ThreadPoolExecutor
        self.pid = os.getpid()
        self.prefix = f"cad-data-{secrets.token_hex(3)}"
        self.fetcher = fetcher
        self.pool = ThreadPoolExecutor(n, thread_name_prefix=self.prefix)
        self.futures = {}
        self.closed = False

    def submit(self, k, idx):
        self.futures[k] = self.pool.submit(_timed, self.fetcher.load, k, idx)

    def get(self, k):
        fut = self.futures.pop(k)
        try:
            return fut.result()
        except BaseException as e:
            _noted(e, f"(raised in a DataLoader worker thread while loading batch {k})")
            raise

    def close(self):
        if self.closed or os.getpid() != self.pid:
            return
        self.closed = True
        for f in self.futures.values():
            f.cancel()
        self.futures.clear()
        own = threading.current_thread().name.startswith(self.prefix)
        self.pool.shutdown(wait=not own, cancel_futures=True)


def _timed(fn, *args):
    t0 = time.perf_counter()
    r = fn(*args)
    return time.perf_counter() - t0, r


def _exit_reason(code):
    if code is not None and code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}" + (
                " (out of memory?)" if -code == signal.SIGKILL else "")
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


class _Processes:
    def __init__(self, fetcher, n, ctx):
        import multiprocessing
        from multiprocessing import resource_tracker
        if ctx is None:
            ctx = multiprocessing.get_context()
        elif isinstance(ctx, str):
            ctx = multiprocessing.get_context(ctx)
        resource_tracker.ensure_running()   # one tracker, shared with the workers
        self.pid = os.getpid()
        self.prefix = f"cad{os.getpid()}_{secrets.token_hex(4)}"
        self.task_q, self.result_q, self.stop = ctx.Queue(), ctx.Queue(), ctx.Event()
        self.pending = set()   # batches sent whose segment the parent has not opened
        self.ready = {}
        self.closed = False
        self.procs = []
        try:
            for w in range(n):
                p = ctx.Process(target=_worker_loop, name=f"cad-data-worker-{w}", daemon=True,
                                args=(fetcher, self.task_q, self.result_q, self.stop, self.prefix, self.pid))
                p.start()
                self.procs.append(p)
        except (pickle.PicklingError, AttributeError, TypeError) as e:   # a spawned worker's arguments
            self.close()
            raise TypeError(f"DataLoader: workers='process' with the {ctx.get_start_method()!r} start method "
                            f"sends the dataset and collate_fn to each worker by pickle, and they do not "
                            f"pickle: {e}") from e
        except BaseException:
            self.close()
            raise

    def submit(self, k, idx):
        self.pending.add(k)
        self.task_q.put((k, idx))

    def _check_alive(self):
        for p in self.procs:
            if p.exitcode is not None:
                raise RuntimeError(f"DataLoader: worker process {p.name} (pid {p.pid}) exited unexpectedly "
                                   f"({_exit_reason(p.exitcode)})")

    def get(self, k):
        while k not in self.ready:
            try:
                msg = self.result_q.get(timeout=0.1)
            except queue.Empty:
                self._check_alive()
                continue
            self.ready[msg[2]] = msg
        msg = self.ready.pop(k)
        load_s, kind = msg[0], msg[1]
        if kind == "err":
            self.pending.discard(k)
            exc, tb = msg[3], msg[4]
            raise _noted(exc, f"(raised in a DataLoader worker process while loading batch {k}; "
                              f"the worker's traceback:)\n{tb.rstrip()}")
        if kind == "end":
            self.pending.discard(k)
            return load_s, None
        _, _, _, name, layout, tree, rows, last, owned = msg
        try:
            leaves = _open_shm(name, layout)
        finally:
            self.pending.discard(k)
        return load_s, (tree, leaves, rows, last, owned)

    def _drain(self):
        while True:
            try:
                msg = self.result_q.get_nowait()
            except (queue.Empty, OSError, ValueError, EOFError):
                return
            except Exception:  # noqa: BLE001, S112  (a message that does not unpickle: its segment is swept below)
                continue
            if msg[1] == "ok" and msg[3] is not None:
                _unlink_quiet(msg[3])
                self.pending.discard(msg[2])

    def close(self):
        if self.closed or os.getpid() != self.pid:
            return
        self.closed = True
        self.stop.set()
        for _ in self.procs:
            try:
                self.task_q.put(None)
            except (ValueError, OSError):
                pass
        deadline = time.monotonic() + 5.0
        while any(p.is_alive() for p in self.procs) and time.monotonic() < deadline:
            self._drain()
            for p in self.procs:
                p.join(0.02)
        for p in self.procs:
            if p.is_alive():
                p.terminate()
                p.join(1.0)
            if p.is_alive():
                p.kill()
                p.join()
        self._drain()
        for msg in self.ready.values():
            if msg[1] == "ok" and msg[3] is not None:
                _unlink_quiet(msg[3])
        self.ready.clear()
        for k in self.pending:   # made but never opened, or half made by a terminated worker
            _unlink_quiet(f"{self.prefix}_{k}")
        self.pending.clear()
        for q in (self.task_q, self.result_q):
            q.close()
        self.task_q.cancel_join_thread()
        for p in self.procs:
            p.close()


# ----------------------------------------------------------------------------- the loader

class LoaderStats:
    """Where a loop's time goes (the seed: "start by timing.  How long does it take to
    load a batch?").  Summed over every iteration of the loader until ``reset()``.

    - batches, samples: how many were handed out
    - wait_s: time inside ``__next__``, waiting for data (the whole load when
      num_workers=0; worker start-up is in the first batch's wait)
    - compute_s: time outside the loader between batches: the caller's compute (from a
      batch's return to the next ``__next__``)
    - load_s: time spent preparing the batches handed out, in whichever thread or
      process did it (with workers, overlapped with compute_s)

    ``str(stats)`` says whether loading is the bottleneck (the loop waits for data
    longer than it computes)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.batches = 0
        self.samples = 0
        self.wait_s = 0.0
        self.compute_s = 0.0
        self.load_s = 0.0

    @property
    def wait_fraction(self) -> float:
        """the share of the loop's time spent waiting for data"""
        total = self.wait_s + self.compute_s
        return self.wait_s / total if total > 0 else 0.0

    @property
    def bottleneck(self) -> bool:
        """True when the loop waits for data longer than it computes"""
        return self.batches > 0 and self.wait_s > self.compute_s

    def as_dict(self) -> dict[str, Any]:
        return {"batches": self.batches, "samples": self.samples, "wait_s": self.wait_s,
                "compute_s": self.compute_s, "load_s": self.load_s,
                "wait_fraction": self.wait_fraction, "bottleneck": self.bottleneck}

    def __repr__(self):
        return "LoaderStats(" + ", ".join(f"{k}={v!r}" for k, v in self.as_dict().items()) + ")"

    def __str__(self):
        if not self.batches:
            return "DataLoader stats: no batches yet"
        n = self.batches
        ms = 1e3 / n
        head = (f"DataLoader stats: {n} batches ({self.samples} samples); waiting for data "
                f"{self.wait_s:.3g} s ({self.wait_s * ms:.3g} ms/batch), outside the loader "
                f"{self.compute_s:.3g} s ({self.compute_s * ms:.3g} ms/batch); a batch takes "
                f"{self.load_s * ms:.3g} ms to prepare.  ")
        pct = f"{100 * self.wait_fraction:.0f}%"
        if self.bottleneck:
            return head + (f"Loading is the bottleneck: the loop waits for data {pct} of the time "
                           "(try num_workers > 0 or more workers, a larger prefetch, workers='process' "
                           "when __getitem__ runs Python per row, or a cheaper dataset).")
        if self.wait_fraction > 0.1:
            return head + (f"Loading is not the bottleneck, but the loop waits for data {pct} of the "
                           "time (more workers or a larger prefetch would hide it).")
        return head + f"Loading is not the bottleneck: the loop waits for data {pct} of the time."


def _check_int(name, v, lo):
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
        raise TypeError(f"DataLoader: {name} must be an int >= {lo}; got {type(v).__name__} {v!r:.60}")
    if v < lo:
        raise ValueError(f"DataLoader: {name} must be >= {lo}; got {v}")
    return int(v)


def _check_bool(name, v):
    if not isinstance(v, (bool, np.bool_)):
        raise TypeError(f"DataLoader: {name} must be True or False; got {type(v).__name__} {v!r:.60}")
    return bool(v)


def _epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """epoch's shuffled order of n samples (int64): the DataLoader's, and
    cad.distributed.DistributedSampler's before it shards it"""
    return np.random.default_rng(np.random.SeedSequence([seed, epoch])).permutation(n).astype(np.int64)


class DataLoader:
    """Batches of a map-style dataset as cad tensors.

    DataLoader(dataset, batch_size=1, shuffle=False, drop_last=False, seed=None,
               num_workers=0, prefetch=2, collate_fn=None, device=None, workers="thread",
               mp_context=None)

    - batch_size rows per batch; the last batch is partial unless drop_last.
    - shuffle: each epoch (each ``iter``) in a new order drawn from (seed, epoch):
      reproducible, and the same whatever num_workers (NOTE [ Batches and epochs ]).
      seed=None draws one seed from cad's generator (``cad.manual_seed`` fixes it).
    - num_workers > 0 prepares the next ``prefetch`` batches in the background, in
      threads (workers="thread") or processes writing to shared memory
      (workers="process"; mp_context: a start method or context, default the
      platform's) (NOTE [ Workers ]).
    - collate_fn(list of samples) replaces the default stacking (NOTE [ Collation and
      copies ]); device moves the tensors (e.g. "cuda").
    - sampler: an iterable of dataset indices with ``__len__`` (e.g.
      ``cad.distributed.DistributedSampler``) giving each epoch's order instead of
      shuffle (which must then be False, as in torch); the loader calls its
      ``set_epoch(epoch)``, when it has one, before each epoch (torch leaves that
      call to you).
    - ``len(loader)`` is the number of batches; ``loader.stats`` times the loop
      (LoaderStats)."""

    def __init__(self, dataset: Any, batch_size: int = 1, shuffle: bool = False, drop_last: bool = False,
                 seed: Optional[int] = None, num_workers: int = 0, prefetch: int = 2,
                 collate_fn: Optional[Callable[[List[Any]], Any]] = None, device: Any = None,
                 workers: str = "thread", mp_context: Any = None, sampler: Any = None) -> None:
        if not hasattr(dataset, "__getitem__"):
            raise TypeError(f"DataLoader: dataset must be map-style (__getitem__, and __len__ to shuffle); "
                            f"got {type(dataset).__name__}, which has no __getitem__ (wrap an iterable in a "
                            "list, or write a cad.data.Dataset)")
        self.dataset = dataset
        self.batch_size = _check_int("batch_size", batch_size, 1)
        self.shuffle = _check_bool("shuffle", shuffle)
        self.drop_last = _check_bool("drop_last", drop_last)
        self.num_workers = _check_int("num_workers", num_workers, 0)
        self.prefetch = _check_int("prefetch", prefetch, 1)
        if collate_fn is not None and not callable(collate_fn):
            raise TypeError(f"DataLoader: collate_fn must be callable or None; got {type(collate_fn).__name__}")
        self.collate_fn = collate_fn
        if workers not in ("thread", "process"):
            raise ValueError(f"DataLoader: workers must be 'thread' or 'process'; got {workers!r}")
        self.workers = workers
        if mp_context is not None and not isinstance(mp_context, str) and not hasattr(mp_context, "Process"):
            raise TypeError(f"DataLoader: mp_context must be None, a start method name or a multiprocessing "
                            f"context; got {type(mp_context).__name__}")
        self.mp_context = mp_context
        if device is not None:
            _C._check_device_py(device, "DataLoader")   # raises for an unknown device, or CUDA without a GPU
        self.device = device
        if sampler is not None:
            if self.shuffle:
                raise ValueError("DataLoader: sampler and shuffle=True are exclusive (the sampler gives the "
                                 "order; DistributedSampler(shuffle=True) shuffles)")
            if not hasattr(sampler, "__iter__") or not hasattr(sampler, "__len__"):
                raise TypeError(f"DataLoader: sampler must be an iterable of indices with __len__; got "
                                f"{type(sampler).__name__}")
        self.sampler = sampler
        try:
            self._n = len(dataset) if sampler is None else len(sampler)
        except TypeError:
            self._n = None
        if self._n is None and self.shuffle:
            raise TypeError(f"DataLoader: shuffle=True needs a dataset with __len__; {type(dataset).__name__} "
                            "has none (give it __len__, or shuffle=False to read it until IndexError)")
        if seed is not None and (isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer))
                                 or seed < 0):
            raise TypeError(f"DataLoader: seed must be None or an int >= 0; got {type(seed).__name__} {seed!r:.60}")
        if seed is None and self.shuffle:   # (drawn only when shuffling: cad's stream is otherwise untouched)
            seed = int(_creation._rng.integers(2 ** 63))
        self.seed = None if seed is None else int(seed)
        self.epoch = 0   # the epoch the next iter() runs
        self.stats = LoaderStats()

    def __len__(self) -> int:
        if self._n is None:
            raise TypeError(f"DataLoader: len() is unknown: the dataset ({type(self.dataset).__name__}) has "
                            "no __len__")
        return self._n // self.batch_size if self.drop_last else -(-self._n // self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """the epoch the next iteration runs (its order, when shuffling): resume at epoch"""
        self.epoch = _check_int("epoch", epoch, 0)

    def __iter__(self) -> Iterator[Any]:
        it = _LoaderIter(self, self.epoch)
        self.epoch += 1
        return it

    def __repr__(self):
        return (f"DataLoader({type(self.dataset).__name__}, batch_size={self.batch_size}, shuffle={self.shuffle}, "
                f"drop_last={self.drop_last}, num_workers={self.num_workers}, workers={self.workers!r})")


class _LoaderIter:
    """one epoch of a DataLoader; its workers shut down at the end, on close(), on an
    error, or when it is garbage collected"""

    def __init__(self, loader, epoch):
        self._n, self._bs = loader._n, loader.batch_size
        self._order = None
        if loader.sampler is not None:
            if hasattr(loader.sampler, "set_epoch"):
                loader.sampler.set_epoch(epoch)
            self._order = np.fromiter(iter(loader.sampler), dtype=np.int64)
            self._n = len(self._order)
        elif loader.shuffle:
            self._order = _epoch_order(loader.seed, epoch, self._n)
        self._stop = len(loader) if self._n is not None else None   # the first batch not to hand out
        self._fetcher = _Fetcher(loader.dataset, loader.collate_fn, loader.batch_size, loader.drop_last)
        self._device = loader.device
        self._stats = loader.stats
        self._prefetch = loader.prefetch
        self._k = 0   # the next batch to hand out
        self._sent = 0   # the next batch to give a worker
        self._t_out = None   # when the last batch left __next__
        self._pool = None
        self._finalizer = None
        if loader.num_workers > 0:
            if loader.workers == "thread":
                self._pool = _Threads(self._fetcher, loader.num_workers)
            else:
                self._pool = _Processes(self._fetcher, loader.num_workers, loader.mp_context)
            self._finalizer = weakref.finalize(self, self._pool.close)
            self._fill()

    def _indices(self, k):
        if self._n is None:
            return None
        lo = k * self._bs
        hi = min(lo + self._bs, self._n)
        return slice(lo, hi) if self._order is None else self._order[lo:hi]

    def _fill(self):
        upto = self._k + 1 + self._prefetch
        if self._stop is not None:
            upto = min(upto, self._stop)
        while self._sent < upto:
            self._pool.submit(self._sent, self._indices(self._sent))
            self._sent += 1

    def __iter__(self) -> _LoaderIter:
        return self

    def __next__(self) -> Any:
        t0 = time.perf_counter()
        if self._t_out is not None:
            self._stats.compute_s += t0 - self._t_out
            self._t_out = None
        try:
            batch = self._next()
        except BaseException:  # (StopIteration, an error, Ctrl-C: shut the workers down, re-raise)
            self._stats.wait_s += time.perf_counter() - t0
            self.close()
            raise
        t1 = time.perf_counter()
        self._stats.wait_s += t1 - t0
        self._t_out = t1
        return batch

    def _next(self):
        k = self._k
        if self._stop is not None and k >= self._stop:
            raise StopIteration
        if self._pool is None:
            load_s, res = _timed(self._fetcher.load, k, self._indices(k))
        else:
            self._fill()
            load_s, res = self._pool.get(k)
        self._k = k + 1
        if res is None:
            self._stop = k
            raise StopIteration
        tree, leaves, rows, last, owned = res
        if last:
            self._stop = k + 1
        out = _unflatten(tree, iter([_to_cad(x, owned, self._device) for x in leaves]))
        st = self._stats
        st.batches += 1
        st.samples += rows
        st.load_s += load_s
        return out

    def close(self) -> None:
        """stop the workers and free what they hold (idempotent); the iterator then ends"""
        self._stop = self._k if self._stop is None else min(self._stop, self._k)
        if self._finalizer is not None:
            self._finalizer()
