"""cad.data: datasets, the DataLoader's batching, shuffling, collation and dtypes; the
same batches whatever the workers (none, threads, processes with shared memory);
memory-mapped .npy files streamed under a memory limit smaller than the file; clean
shutdown (break, exceptions, garbage collection: no live workers, no shared-memory
segment left); worker errors raised in the caller; loader.stats; a training loop."""
import collections
import gc
import mmap
import multiprocessing
import os
import pickle
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

import cad
from cad.data import DataLoader, Dataset, LoaderStats, NpyDataset, TensorDataset, default_collate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODES = [{"num_workers": 0}, {"num_workers": 2, "workers": "thread"}, {"num_workers": 2, "workers": "process"}]
MODE_IDS = ["inline", "threads", "processes"]
OURS = f"cad{os.getpid()}_"   # the prefix of this process's loaders' segments


def _segments():
    return {n for n in os.listdir("/dev/shm") if n.startswith(OURS)} if os.path.isdir("/dev/shm") else set()


@pytest.fixture
def clean():
    """after the test: no worker process alive, no worker thread, no segment of ours
    (other programs on the machine may make their own segments, so only this
    process's names are compared)"""
    before = _segments()
    yield
    gc.collect()
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and (multiprocessing.active_children() or any(
            t.name.startswith("cad-data") for t in threading.enumerate())):
        time.sleep(0.02)
    assert not multiprocessing.active_children()
    assert not [t.name for t in threading.enumerate() if t.name.startswith("cad-data")]
    assert _segments() - before == set()


def _np(batch):
    """a batch as numpy (a structure of tensors, lists and arrays)"""
    if isinstance(batch, cad.Tensor):
        return batch.numpy().copy()
    if isinstance(batch, dict):
        return {k: _np(v) for k, v in batch.items()}
    if isinstance(batch, (tuple, list)):
        return type(batch)(_np(v) for v in batch)
    return batch


def _same(a, b):
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (tuple, list)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and np.array_equal(a, b)
    return a == b


def _xy(n=10):
    return np.arange(3 * n, dtype=np.float64).reshape(n, 3), np.arange(n)


# ----------------------------------------------------------------------------- batching

@pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
def test_batches_and_the_last_partial_one(mode, clean):
    x, y = _xy(10)
    loader = DataLoader(TensorDataset(x, y), batch_size=4, **mode)
    assert len(loader) == 3
    got = list(loader)
    assert [b[0].shape for b in got] == [(4, 3), (4, 3), (2, 3)]
    for k, (xb, yb) in enumerate(got):
        assert isinstance(xb, cad.Tensor) and isinstance(yb, cad.Tensor)
        assert xb.dtype == cad.float64 and yb.dtype == cad.int64
        np.testing.assert_array_equal(xb.numpy(), x[4 * k:4 * k + 4])
        np.testing.assert_array_equal(yb.numpy(), y[4 * k:4 * k + 4])
    assert not xb.requires_grad


@pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
def test_drop_last(mode, clean):
    x, y = _xy(10)
    loader = DataLoader(TensorDataset(x, y), batch_size=4, drop_last=True, **mode)
    assert len(loader) == 2
    assert [len(b[1]) for b in loader] == [4, 4]
    assert len(DataLoader(TensorDataset(x), batch_size=5, drop_last=True)) == 2
    assert list(DataLoader(TensorDataset(x), batch_size=11, drop_last=True)) == []
    assert len(list(DataLoader(TensorDataset(x), batch_size=11))) == 1


def test_empty_dataset_and_batch_size_one():
    assert list(DataLoader(TensorDataset(np.zeros((0, 2))), batch_size=3)) == []
    got = list(DataLoader(np.arange(3.0)))   # an ndarray is a dataset of its rows
    assert [b.shape for b in got] == [(1,)] * 3 and [b.item() for b in got] == [0.0, 1.0, 2.0]


def _order(loader):
    return np.concatenate([b[1].numpy() for b in loader])


def test_shuffle_reproducible_with_seed_and_new_each_epoch():
    ds = TensorDataset(*_xy(50))
    a = DataLoader(ds, batch_size=8, shuffle=True, seed=7)
    b = DataLoader(ds, batch_size=8, shuffle=True, seed=7)
    e0, e1, e2 = _order(a), _order(a), _order(a)
    assert sorted(e0) == list(range(50)) and sorted(e1) == list(range(50))
    assert not np.array_equal(e0, e1) and not np.array_equal(e1, e2)   # a new order each epoch
    assert np.array_equal(_order(b), e0) and np.array_equal(_order(b), e1)   # the same for the same seed
    b.set_epoch(2)
    assert np.array_equal(_order(b), e2)   # resume at an epoch
    assert not np.array_equal(_order(DataLoader(ds, batch_size=8, shuffle=True, seed=8)), e0)
    assert np.array_equal(_order(DataLoader(ds, batch_size=8)), np.arange(50))   # no shuffle
    cad.manual_seed(3)
    s1 = _order(DataLoader(ds, batch_size=8, shuffle=True))
    cad.manual_seed(3)
    assert np.array_equal(_order(DataLoader(ds, batch_size=8, shuffle=True)), s1)   # seed=None follows cad's
    cad.manual_seed(4)
    r = cad.randn(2).numpy()
    cad.manual_seed(4)
    DataLoader(ds, batch_size=8)   # an unshuffled loader draws nothing from cad's generator
    np.testing.assert_array_equal(cad.randn(2).numpy(), r)


def test_same_batches_whatever_the_workers(clean):
    """the same seed: the same batches in the same order, over epochs, for every mode
    and prefetch, on the fast path and on the per-row path"""
    x, y = _xy(37)

    class Rows(Dataset):   # per-row __getitem__: the generic (collate) path
        def __len__(self):
            return 37

        def __getitem__(self, i):
            return x[i], y[i]

    for ds in (TensorDataset(x, y), Rows()):
        runs = []
        for mode, prefetch in [(MODES[0], 2), (MODES[1], 1), (MODES[1], 5), (MODES[2], 3)]:
            loader = DataLoader(ds, batch_size=5, shuffle=True, seed=11, prefetch=prefetch, **mode)
            runs.append([[_np(b) for b in loader] for _ in range(2)])
        for r in runs[1:]:
            assert _same(r, runs[0])
        assert not _same(runs[0][0], runs[0][1])


# ----------------------------------------------------------------------------- collation and dtypes

@pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
def test_fast_path_dtypes(mode, clean):
    n = 6
    arrays = [np.linspace(0, 1, n), np.linspace(0, 1, n).astype(np.float32),
              np.linspace(0, 1, n).astype(np.float16), np.arange(n, dtype=np.int32),
              np.arange(n, dtype=np.uint8).reshape(n, 1), np.arange(n) % 2 == 0]
    xb = next(iter(DataLoader(TensorDataset(*arrays), batch_size=4, shuffle=True, seed=0, **mode)))
    assert [t.dtype for t in xb] == [cad.float64, cad.float32, cad.float32, cad.int64, cad.int64, cad.bool]
    assert xb[4].shape == (4, 1)


Pair = collections.namedtuple("Pair", "a b")


class Records(Dataset):
    def __len__(self):
        return 7

    def __getitem__(self, i):
        return {"x": np.full(3, i, dtype=np.float32), "label": i, "weight": 0.5 * i, "name": f"s{i}",
                "flag": i % 2 == 0, "pair": (np.int32(i), [float(i), i]), "nt": Pair(i, np.float64(i))}


@pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
def test_dict_tuple_collation_and_dtypes(mode, clean):
    batches = list(DataLoader(Records(), batch_size=3, **mode))
    assert len(batches) == 3
    b = batches[0]
    assert list(b) == ["x", "label", "weight", "name", "flag", "pair", "nt"]
    assert b["x"].dtype == cad.float32 and b["x"].shape == (3, 3)
    assert b["label"].dtype == cad.int64 and b["label"].tolist() == [0, 1, 2]
    assert b["weight"].dtype == cad.float64 and b["weight"].tolist() == [0.0, 0.5, 1.0]
    assert b["name"] == ["s0", "s1", "s2"]
    assert b["flag"].dtype == cad.bool and b["flag"].tolist() == [True, False, True]
    assert isinstance(b["pair"], tuple) and isinstance(b["pair"][1], list)
    assert b["pair"][0].dtype == cad.int64 and b["pair"][1][0].dtype == cad.float64
    assert b["pair"][1][1].dtype == cad.int64 and b["pair"][1][1].tolist() == [0, 1, 2]   # ints stay ints
    assert isinstance(b["nt"], Pair) and b["nt"].b.dtype == cad.float64
    assert batches[-1]["name"] == ["s6"] and batches[-1]["x"].shape == (1, 3)


def test_collation_errors():
    class Ragged(Dataset):
        def __len__(self):
            return 2

        def __getitem__(self, i):
            return np.zeros(i + 2)

    with pytest.raises(ValueError, match=r"cannot stack batch: sample 0 has shape \(2,\) and sample 1 has shape \(3,\)"):
        next(iter(DataLoader(Ragged(), batch_size=2)))

    class Keys(Dataset):
        def __len__(self):
            return 2

        def __getitem__(self, i):
            return {"a": 1} if i == 0 else {"b": 1}

    with pytest.raises(ValueError, match="sample 0 has keys"):
        next(iter(DataLoader(Keys(), batch_size=2)))
    with pytest.raises(TypeError, match="cannot collate"):
        next(iter(DataLoader([object(), object()], batch_size=2)))


@pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
def test_collate_fn(mode, clean):
    x = np.arange(12.0).reshape(6, 2)
    seen = []

    def collate(samples):
        seen.append(len(samples))
        return {"sum": np.stack([s[0] for s in samples]).sum(axis=1), "n": len(samples), "src": x}

    batches = list(DataLoader(TensorDataset(x), batch_size=4, collate_fn=collate, **mode))
    assert [b["n"] for b in batches] == [4, 2]
    assert isinstance(batches[0]["sum"], cad.Tensor) and batches[0]["sum"].tolist() == [1.0, 5.0, 9.0, 13.0]
    src = batches[0]["src"]
    x[0, 0] = 100.0   # the tensor is a copy of what collate_fn returned, not a view of the caller's array
    assert src.numpy()[0, 0] == 0.0
    if mode["num_workers"] == 0:
        assert seen == [4, 2]


def test_default_collate():
    b = default_collate([(np.ones(2, np.float32), 1), (np.zeros(2, np.float32), 2)])
    assert isinstance(b, tuple) and b[0].dtype == cad.float32 and b[1].tolist() == [1, 2]
    t = default_collate([cad.tensor([1.0, 2.0]), cad.tensor([3.0, 4.0])])
    assert t.shape == (2, 2) and t.dtype == cad.float64
    with pytest.raises(TypeError, match="non-empty list"):
        default_collate([])


# ----------------------------------------------------------------------------- datasets

def test_tensor_dataset():
    x = cad.randn(5, 2, requires_grad=True)
    ds = TensorDataset(x, np.arange(5), [[i] for i in range(5)])
    assert len(ds) == 5
    row = ds[3]
    assert isinstance(row, tuple) and len(row) == 3
    np.testing.assert_array_equal(row[0], x.detach().numpy()[3])
    assert row[1] == 3 and row[2].tolist() == [3]
    with pytest.raises(ValueError, match=r"same first dimension.*5 \(argument 0.*4 \(argument 1"):
        TensorDataset(np.zeros((5, 2)), np.zeros(4))
    with pytest.raises(ValueError, match="argument 1 is a scalar"):
        TensorDataset(np.zeros(3), np.float64(1.0))
    with pytest.raises(TypeError, match="at least one"):
        TensorDataset()


def _save(tmp_path, name, a):
    p = tmp_path / name
    np.save(p, a)
    return p


@pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
def test_npy_dataset_memory_maps(tmp_path, mode, clean):
    x = np.random.default_rng(0).normal(size=(23, 4)).astype(np.float32)
    y = np.arange(23, dtype=np.int16)
    ds = NpyDataset(_save(tmp_path, "x.npy", x), str(_save(tmp_path, "y.npy", y)))
    assert len(ds) == 23 and all(isinstance(a, np.memmap) for a in ds.arrays)
    np.testing.assert_array_equal(ds[5][0], x[5])
    loader = DataLoader(ds, batch_size=5, shuffle=True, seed=3, **mode)
    got = list(loader)
    order = np.concatenate([b[1].numpy() for b in got])
    assert sorted(order) == list(range(23))
    np.testing.assert_array_equal(np.concatenate([b[0].numpy() for b in got]), x[order])
    assert got[0][0].dtype == cad.float32 and got[0][1].dtype == cad.int64


def test_npy_dataset_pickles_as_paths_and_rejects_bad_input(tmp_path):
    p = _save(tmp_path, "x.npy", np.arange(10.0))
    ds = NpyDataset(p, np.arange(10))
    ds2 = pickle.loads(pickle.dumps(ds))
    assert isinstance(ds2.arrays[0], np.memmap) and ds2.paths[0] == str(p)   # mapped again, not copied
    np.testing.assert_array_equal(ds2.arrays[1], np.arange(10))
    whole = NpyDataset(p, mmap=False)
    assert not isinstance(whole.arrays[0], np.memmap) and whole[3] == (3.0,)
    with pytest.raises(ValueError, match=r"same first dimension"):
        NpyDataset(p, np.arange(9))
    np.savez(tmp_path / "z.npz", a=np.arange(3))
    with pytest.raises(ValueError, match=r"\.npz archive"):
        NpyDataset(tmp_path / "z.npz")
    with pytest.raises(TypeError, match="argument 0 must be a path"):
        NpyDataset(3)
    with pytest.raises(FileNotFoundError):
        NpyDataset(tmp_path / "missing.npy")


def test_npy_dataset_with_spawned_worker(tmp_path, clean):
    """a spawned worker gets the dataset by pickle: it maps the file itself"""
    x = np.arange(40.0).reshape(20, 2)
    loader = DataLoader(NpyDataset(_save(tmp_path, "x.npy", x)), batch_size=8, num_workers=1,
                        workers="process", mp_context="spawn")
    np.testing.assert_array_equal(np.concatenate([b[0].numpy() for b in loader]), x)


_STREAM_CHILD = r"""
import resource, sys
import numpy as np
import cad, cad.data

def vm_data():
    for line in open("/proc/self/status"):
        if line.startswith("VmData:"):
            return int(line.split()[1]) * 1024

path, nbytes = sys.argv[1], int(sys.argv[2])
limit = vm_data() + nbytes * 5 // 8   # what the process uses now, plus less than the file
resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
try:
    np.load(path)
    print("SKIP the limit does not stop a whole load"); sys.exit(0)
except MemoryError:
    pass
ds = cad.data.NpyDataset(path)
for mode in ({"num_workers": 0}, dict(num_workers=2, workers="thread"), dict(num_workers=2, workers="process")):
    total = weighted = 0.0
    rows = 0
    for (b,) in cad.data.DataLoader(ds, batch_size=4096, **mode):
        a = b.numpy()
        r = a.sum(axis=1, dtype=np.float64)
        total += r.sum()
        weighted += (np.arange(rows, rows + len(a)) * r).sum()
        rows += len(a)
    print("SUMS", rows, repr(float(total)), repr(float(weighted)))
"""


def test_spawned_workers_need_a_picklable_collate_fn(clean):
    with pytest.raises(TypeError, match=r"'spawn' start method sends the dataset and collate_fn .* by pickle"):
        iter(DataLoader(TensorDataset(np.zeros(4)), collate_fn=lambda s: s, num_workers=1, workers="process",
                        mp_context="spawn"))


@pytest.mark.skipif("libasan" in os.environ.get("LD_PRELOAD", "") or "ASAN_OPTIONS" in os.environ,
                    reason="a sanitizer runtime reserves memory that RLIMIT_DATA counts (CI's "
                           "sanitizer stage); the release build runs this test")
def test_npy_dataset_streams_a_file_larger_than_the_memory_limit(tmp_path, clean):
    """A child process may use less memory than the .npy file (RLIMIT_DATA: loading the
    whole file fails there) and still iterates all of it through a DataLoader, with
    each kind of worker; its checksums match a chunked numpy computation.

    RLIMIT_DATA rather than RLIMIT_AS: the address-space limit counts the memory map
    itself (mapping a 320 MB file takes 320 MB of address space), so no memory-mapped
    reader runs under an RLIMIT_AS smaller than its file; RLIMIT_DATA (Linux >= 4.7)
    counts the memory a process allocates (heap, anonymous and private writable maps)
    but not a read-only map of a file, which is the distinction streaming makes."""
    if not sys.platform.startswith("linux"):
        pytest.skip("needs Linux's RLIMIT_DATA accounting and /proc/self/status")
    resource = pytest.importorskip("resource")
    rows, cols = 80_000, 1_000   # float32: 320 MB
    nbytes = rows * cols * 4
    if shutil.disk_usage(tmp_path).free < 3 * nbytes:
        pytest.skip("not enough disk for the 320 MB file")
    _soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
    if hard != resource.RLIM_INFINITY and hard < 2 * nbytes:
        pytest.skip("RLIMIT_DATA is already set lower than the test needs")
    path = tmp_path / "big.npy"
    m = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(rows, cols))
    total = weighted = 0.0
    for s in range(0, rows, 8192):   # written and summed in chunks: the test never holds the file
        e = min(rows, s + 8192)
        chunk = ((np.arange(s, e)[:, None] * 7 + np.arange(cols)[None, :]) % 251).astype(np.float32)
        m[s:e] = chunk
        r = chunk.sum(axis=1, dtype=np.float64)
        total += r.sum()
        weighted += (np.arange(s, e) * r).sum()
    m.flush()
    del m
    r = subprocess.run([sys.executable, "-c", _STREAM_CHILD, str(path), str(nbytes)], capture_output=True,
                       text=True, cwd=ROOT, timeout=120, check=False)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    if r.stdout.startswith("SKIP"):
        pytest.skip(r.stdout.strip())
    sums = [line.split()[1:] for line in r.stdout.splitlines() if line.startswith("SUMS")]
    assert len(sums) == 3, r.stdout
    for n, t, w in sums:   # integers below 2**53: exact in float64
        assert (int(n), float(t), float(w)) == (rows, total, weighted)


# ----------------------------------------------------------------------------- workers: shutdown and errors

@pytest.mark.parametrize("mode", MODES[1:], ids=MODE_IDS[1:])
def test_early_break_shuts_workers_down(mode, clean):
    x = np.arange(4000.0).reshape(1000, 4)
    loader = DataLoader(TensorDataset(x), batch_size=10, shuffle=True, seed=0, prefetch=4, **mode)
    t0 = time.monotonic()
    for epoch in range(3):
        for k, (b,) in enumerate(loader):
            if k == 2:
                break
    it = iter(loader)   # dropped unfinished: garbage collection shuts it down
    next(it)
    del it
    with pytest.raises(KeyError):   # an exception in the loop body
        for b in loader:
            raise KeyError("boom")
    assert time.monotonic() - t0 < 20
    it = iter(loader)
    next(it)
    it.close()
    with pytest.raises(StopIteration):   # a closed iterator has ended
        next(it)


def test_break_unlinks_segments_made_but_never_opened(clean):
    """batches that workers finished while the caller computed are in /dev/shm under
    this process's prefix; leaving the loop removes them"""
    if not os.path.isdir("/dev/shm"):
        pytest.skip("no /dev/shm")
    loader = DataLoader(TensorDataset(np.ones((100, 1000))), batch_size=10, num_workers=2, workers="process",
                        prefetch=3)
    it = iter(loader)
    b = next(it)
    deadline = time.monotonic() + 5
    while len(_segments()) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(_segments()) == 3   # batches 1..3, ready and waiting
    it.close()
    assert _segments() == set()
    assert b[0].numpy().sum() == 10 * 1000   # the batch handed out outlives the workers


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the no-copy path is Linux's /dev/shm")
def test_process_batches_are_views_of_shared_memory(clean):
    (b,) = next(iter(DataLoader(TensorDataset(np.ones((8, 3))), batch_size=4, num_workers=1, workers="process")))
    a = b.numpy()
    assert isinstance(a.base, mmap.mmap)   # no copy between the worker's segment and the tensor
    assert a.sum() == 12.0 and not a.flags.writeable


class Failing(Dataset):
    def __len__(self):
        return 10

    def __getitem__(self, i):
        if i == 5:
            raise ValueError(f"bad row {i}")
        return np.float64(i)


class OddError(Exception):
    def __init__(self, a, b):   # does not unpickle from its args
        super().__init__(f"odd {a}")


class OddFailing(Failing):
    def __getitem__(self, i):
        raise OddError(i, 0)


@pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
def test_worker_exceptions_are_raised_in_the_caller(mode, clean):
    seen = []
    with pytest.raises(ValueError, match="bad row 5") as info:
        for b in DataLoader(Failing(), batch_size=2, **mode):
            seen.append(b.tolist())
    assert str(info.value) == "bad row 5"   # the original message (pytest's match also reads the notes)
    assert seen == [[0.0, 1.0], [2.0, 3.0]]   # the batches before the failing one came through
    if mode["num_workers"] and sys.version_info >= (3, 11):
        assert any("DataLoader worker" in n and "batch 2" in n for n in info.value.__notes__)
    if mode.get("workers") == "process":
        with pytest.raises(RuntimeError, match="OddError: odd 0"):   # an exception that does not pickle
            next(iter(DataLoader(OddFailing(), batch_size=2, **mode)))


class Killer(Dataset):
    def __init__(self):
        self.parent = os.getpid()

    def __len__(self):
        return 10

    def __getitem__(self, i):
        if os.getpid() != self.parent:
            os.kill(os.getpid(), signal.SIGKILL)
        return 0.0


def test_a_dying_worker_process_raises(clean):
    with pytest.raises(RuntimeError, match=r"exited unexpectedly \(killed by signal SIGKILL"):
        next(iter(DataLoader(Killer(), batch_size=2, num_workers=1, workers="process")))


# ----------------------------------------------------------------------------- datasets without __len__

class Unsized:
    def __getitem__(self, i):
        if i >= 7:
            raise IndexError(i)
        return (np.float64(i),)


@pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
def test_a_dataset_without_len_is_read_until_index_error(mode, clean):
    assert [len(b[0]) for b in DataLoader(Unsized(), batch_size=3, **mode)] == [3, 3, 1]
    assert [len(b[0]) for b in DataLoader(Unsized(), batch_size=3, drop_last=True, **mode)] == [3, 3]
    assert [len(b[0]) for b in DataLoader(Unsized(), batch_size=7, **mode)] == [7]


def test_a_dataset_without_len_cannot_shuffle_or_have_a_length():
    with pytest.raises(TypeError, match=r"shuffle=True needs a dataset with __len__"):
        DataLoader(Unsized(), shuffle=True)
    with pytest.raises(TypeError, match=r"len\(\) is unknown"):
        len(DataLoader(Unsized()))


# ----------------------------------------------------------------------------- arguments

@pytest.mark.parametrize("kwargs, exc, match", [
    ({"batch_size": 0}, ValueError, "batch_size must be >= 1; got 0"),
    ({"batch_size": 2.5}, TypeError, "batch_size must be an int"),
    ({"batch_size": None}, TypeError, "batch_size must be an int"),
    ({"batch_size": True}, TypeError, "batch_size must be an int"),
    ({"num_workers": -1}, ValueError, "num_workers must be >= 0"),
    ({"num_workers": "2"}, TypeError, "num_workers must be an int"),
    ({"prefetch": 0}, ValueError, "prefetch must be >= 1"),
    ({"workers": "fork"}, ValueError, "workers must be 'thread' or 'process'; got 'fork'"),
    ({"shuffle": "yes"}, TypeError, "shuffle must be True or False"),
    ({"drop_last": 1}, TypeError, "drop_last must be True or False"),
    ({"seed": -1}, TypeError, "seed must be None or an int >= 0"),
    ({"seed": 1.5}, TypeError, "seed must be None or an int"),
    ({"collate_fn": 3}, TypeError, "collate_fn must be callable"),
    ({"device": "gpu"}, cad.DeviceError, "DataLoader: unknown device 'gpu'"),
    ({"mp_context": 3}, TypeError, "mp_context must be None"),
])
def test_argument_errors_name_the_argument(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        DataLoader(TensorDataset(np.zeros((4, 2))), **kwargs)


def test_dataset_errors():
    with pytest.raises(TypeError, match="dataset must be map-style"):
        DataLoader(iter(range(3)))
    with pytest.raises(NotImplementedError, match="must define __getitem__"):
        next(iter(DataLoader(type("Empty", (Dataset,), {"__len__": lambda self: 2})())))
    with pytest.raises(TypeError, match=r"epoch must be an int"):
        DataLoader(TensorDataset(np.zeros(3))).set_epoch("1")


# ----------------------------------------------------------------------------- devices

def test_device_cuda_without_a_gpu_is_refused():
    if cad.cuda.is_available():
        pytest.skip("a CUDA device (or the fake one) is available in this process")
    with pytest.raises(cad.DeviceError, match="DataLoader: CUDA is not available"):
        DataLoader(TensorDataset(np.zeros((4, 2))), device="cuda")


def test_device_cuda_on_the_fake_device():
    """device="cuda" puts every tensor of a batch there (on the fake device: the CUDA
    path compiled for the host, NOTE [ CUDA backend ])"""
    code = textwrap.dedent("""
        import numpy as np, cad
        ds = cad.data.TensorDataset(np.arange(12.0).reshape(6, 2), np.arange(6))
        for mode in (dict(), dict(num_workers=2, workers="process")):
            got = list(cad.data.DataLoader(ds, batch_size=4, device="cuda", **mode))
            assert all(t.device.type == "cuda" for b in got for t in b), [t.device for b in got for t in b]
            assert got[1][0].cpu().numpy().tolist() == [[8.0, 9.0], [10.0, 11.0]]
        print("ok")
    """)
    env = dict(os.environ, CAD_CUDA_FAKE="1")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env,
                       timeout=120, check=False)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stdout[-2000:] + r.stderr[-3000:]


# ----------------------------------------------------------------------------- stats

class Slow(Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, i):
        time.sleep(0.01)
        return np.float64(i)


def test_stats_when_loading_is_the_bottleneck():
    loader = DataLoader(Slow(), batch_size=2)
    assert str(loader.stats) == "DataLoader stats: no batches yet"
    for _ in loader:
        pass
    st = loader.stats
    assert isinstance(st, LoaderStats) and (st.batches, st.samples) == (4, 8)
    assert st.wait_s >= 0.08 and st.load_s >= 0.08 and st.compute_s < st.wait_s   # 4 batches of 2 x 10 ms
    assert st.bottleneck and st.wait_fraction > 0.5
    assert "Loading is the bottleneck" in str(st) and "4 batches (8 samples)" in str(st)
    assert st.as_dict()["batches"] == 4
    for _ in loader:   # summed over epochs until reset
        pass
    assert st.batches == 8
    st.reset()
    assert st.batches == 0 and st.wait_s == 0.0


def test_stats_when_compute_is_the_bottleneck(clean):
    loader = DataLoader(TensorDataset(np.zeros((8, 2))), batch_size=2)
    for _ in loader:
        time.sleep(0.02)   # the caller's compute
    st = loader.stats
    assert st.batches == 4 and st.compute_s >= 0.08 and st.wait_s < st.compute_s
    assert not st.bottleneck and "Loading is not the bottleneck" in str(st)
    # workers hide a slow dataset behind the caller's compute
    loader = DataLoader(Slow(), batch_size=2, num_workers=2, prefetch=2)
    for _ in loader:
        time.sleep(0.05)
    assert loader.stats.load_s >= 0.08 and loader.stats.wait_s < loader.stats.compute_s


# ----------------------------------------------------------------------------- training

def test_a_training_loop_with_grad(clean):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 3))
    w_true = np.array([1.5, -2.0, 0.5])
    y = x @ w_true + 0.25
    loader = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True, seed=0, num_workers=2)

    def loss(w, b, xb, yb):
        return ((xb @ w + b - yb) ** 2).mean()

    step = cad.value_and_grad(loss, argnums=(0, 1))
    w, b = cad.zeros(3), cad.zeros(1)
    first = None
    for epoch in range(15):
        for xb, yb in loader:
            value, (gw, gb) = step(w, b, xb, yb)
            first = value.item() if first is None else first
            w, b = w - 0.1 * gw, b - 0.1 * gb
    assert value.item() < 1e-3 * first
    np.testing.assert_allclose(w.numpy(), w_true, atol=1e-2)
    np.testing.assert_allclose(b.numpy(), [0.25], atol=1e-2)
    assert loader.stats.batches == 15 * 8
