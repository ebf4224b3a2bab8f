"""An MLP on scikit-learn's handwritten digits (8x8 images, 10 classes; the data ships
inside the scikit-learn package, nothing is downloaded), trained with cad's DataLoader,
Adam and a warm-up + cosine learning-rate schedule, then saved as a safetensors
checkpoint, reloaded, and checked.

    python examples/train_mlp.py                 # about 30 epochs, >= 97% test accuracy
    python examples/train_mlp.py --quick         # a few steps (what the tests run)
    python examples/train_mlp.py --epochs 40 --hidden 256 --workers 2
    mpiexec -n 2 python examples/train_mlp.py --distributed   # data parallel (pip install -e ".[mpi]")

The model is a dict of cad tensors and three functions; nothing here is specific to
digits except load_digits().
"""
import argparse
import itertools
import os
import sys
import tempfile
import time

import numpy as np

import cad

try:
    from tqdm import tqdm
except ImportError:      # the progress bar is optional (pip install -e ".[examples]")
    tqdm = None


def load_digits(test_fraction=0.2, seed=0):
    """(x_train, y_train, x_test, y_test): float64 features in [0, 1], int64 labels;
    a stratified split of the 1797 images."""
    from sklearn.datasets import load_digits as _load
    from sklearn.model_selection import train_test_split
    d = _load()
    x = (d.data / 16.0).astype(np.float64)
    y = d.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=test_fraction, random_state=seed, stratify=y)
    return x_tr, y_tr, x_te, y_te


def init_params(sizes, seed=0, dtype=np.float64):
    """{"W0", "b0", "W1", "b1", ...}: He-initialised weights, zero biases, leaves that
    require grad"""
    rng = np.random.default_rng(seed)
    params = {}
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        params[f"W{i}"] = cad.tensor((rng.standard_normal((n_in, n_out)) * np.sqrt(2.0 / n_in)).astype(dtype),
                                     requires_grad=True)
        params[f"b{i}"] = cad.tensor(np.zeros(n_out, dtype=dtype), requires_grad=True)
    return params


def forward(params, x):
    """logits of a batch x (n, n_in): relu hidden layers, a linear last layer"""
    n = len(params) // 2
    h = x
    for i in range(n):
        h = h @ params[f"W{i}"] + params[f"b{i}"]
        if i < n - 1:
            h = cad.relu(h)
    return h


def loss_fn(params, x, y):
    return cad.cross_entropy(forward(params, x), y)


def accuracy(params, x, y):
    with cad.no_grad():
        pred = forward(params, cad.tensor(x)).numpy().argmax(axis=1)
    return float((pred == np.asarray(y)).mean())


def make_optimizer(params, lr, epochs, steps_per_epoch, warmup_epochs=1, weight_decay=1e-4):
    """Adam (decoupled weight decay), a linear warm-up then cosine annealing, stepped
    once per batch"""
    opt = cad.optim.AdamW(list(params.values()), lr=lr, weight_decay=weight_decay)
    S = cad.optim.lr_scheduler
    warm = max(1, warmup_epochs * steps_per_epoch)
    total = max(warm + 1, epochs * steps_per_epoch)
    sched = S.SequentialLR(opt, [S.LinearLR(opt, start_factor=0.1, total_iters=warm),
                                 S.CosineAnnealingLR(opt, T_max=total - warm, eta_min=lr * 0.01)],
                           milestones=[warm])
    return opt, sched


def train_epoch(params, opt, sched, loader, bar=None, max_steps=None, dist=None):
    """one pass over the loader; returns (mean loss, samples/s).  dist: cad.distributed
    when each rank holds a shard (the gradients are averaged over the ranks)"""
    total, count, t0 = 0.0, 0, time.perf_counter()
    for xb, yb in (loader if max_steps is None else itertools.islice(loader, max_steps)):
        opt.zero_grad()
        loss = loss_fn(params, xb, yb)
        loss.backward()
        if dist is not None:
            dist.all_reduce_grads(params)     # average over the ranks, in buckets
        opt.step()
        sched.step()
        lv = float(loss)
        total += lv * len(yb)
        count += len(yb)
        if bar is not None:
            rate = count / max(time.perf_counter() - t0, 1e-9)
            bar.set_postfix(loss=f"{lv:.3f}", samples_s=f"{rate:,.0f}", lr=f"{sched.get_last_lr()[0]:.1e}")
            bar.update(1)
    rate = count / max(time.perf_counter() - t0, 1e-9)
    if dist is not None:   # the loss over every rank's samples, the samples/s of all ranks
        total, count, rate = dist.all_reduce(cad.tensor([total, float(count), rate])).tolist()
    return total / max(count, 1), rate


def train(data, epochs=30, batch_size=64, lr=1e-2, hidden=(192,), seed=0, workers=0,
          max_steps=None, progress=True, log=print, dist=None):
    """trains on data = (x_train, y_train, x_test, y_test); returns (params, history, loader).
    dist: cad.distributed for data-parallel training under mpiexec: each rank loads its
    shard (DistributedSampler), batch_size // world_size rows a step, so that a step
    sees batch_size rows over all ranks, as one process does"""
    x_tr, y_tr, x_te, y_te = data
    n_classes = int(max(y_tr.max(), y_te.max())) + 1
    params = init_params([x_tr.shape[1], *hidden, n_classes], seed=seed)
    ds = cad.data.TensorDataset(x_tr, y_tr)
    if dist is None:
        loader = cad.data.DataLoader(ds, batch_size=batch_size, shuffle=True, seed=seed, num_workers=workers)
    else:
        dist.broadcast_params(params)     # every rank starts from rank 0's point (the same seed anyway)
        loader = cad.data.DataLoader(ds, batch_size=max(1, batch_size // dist.world_size()),
                                     sampler=dist.DistributedSampler(ds, shuffle=True, seed=seed),
                                     num_workers=workers)
    opt, sched = make_optimizer(params, lr, epochs, len(loader))
    history = []
    for epoch in range(epochs):
        bar = None
        if progress and tqdm is not None:
            bar = tqdm(total=len(loader) if max_steps is None else min(max_steps, len(loader)),
                       desc=f"epoch {epoch + 1}/{epochs}", leave=False, file=sys.stderr)
        loss, rate = train_epoch(params, opt, sched, loader, bar, max_steps, dist)
        if bar is not None:
            bar.close()
        acc = accuracy(params, x_te, y_te)
        history.append({"epoch": epoch + 1, "loss": loss, "test_acc": acc, "samples_per_s": rate})
        log(f"epoch {epoch + 1:3d}  loss {loss:.4f}  test accuracy {acc:.2%}  {rate:,.0f} samples/s")
    return params, history, loader


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-2)
    ap.add_argument("--hidden", type=int, nargs="+", default=[192], help="hidden layer sizes")
    ap.add_argument("--workers", type=int, default=0, help="DataLoader worker threads")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="checkpoint path (default: a temporary "
                                                 "mlp_digits.safetensors)")
    ap.add_argument("--quick", action="store_true", help="2 epochs of 3 steps (for the tests)")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--distributed", action="store_true",
                    help="data parallel over the ranks of mpiexec -n N (needs mpi4py: the [mpi] extra); "
                         "--batch-size stays the batch of one step over all ranks")
    a = ap.parse_args(argv)
    epochs, max_steps = (2, 3) if a.quick else (a.epochs, None)

    dist, print_ = None, print
    if a.distributed:
        import cad.distributed as dist
        dist.init()
        if dist.rank() != 0:      # rank 0 reports; the others train quietly
            def print_(*args, **kwargs):
                return None
    t0 = time.perf_counter()
    data = load_digits(seed=a.seed)
    print_(f"digits: {len(data[0])} training and {len(data[2])} test images of {data[0].shape[1]} pixels"
           + (f"; data parallel over {dist.world_size()} ranks" if dist is not None else ""))
    params, history, loader = train(data, epochs=epochs, batch_size=a.batch_size, lr=a.lr,
                                    hidden=tuple(a.hidden), seed=a.seed, workers=a.workers,
                                    max_steps=max_steps, progress=not a.no_progress and print_ is print,
                                    log=print_, dist=dist)
    elapsed = time.perf_counter() - t0
    if dist is not None and dist.rank() != 0:
        return 0                  # rank 0 writes and checks the checkpoint
    acc = history[-1]["test_acc"]
    print(f"trained in {elapsed:.1f} s: test accuracy {acc:.2%}")
    print(f"loader.stats: {loader.stats}")

    out = a.out or os.path.join(tempfile.mkdtemp(prefix="cad_mlp_"), "mlp_digits.safetensors")
    cad.save({"params": params, "hidden": list(a.hidden), "epochs": epochs, "test_acc": acc}, out)
    ckpt = cad.load(out)
    acc2 = accuracy(ckpt["params"], data[2], data[3])
    print(f"saved {out} ({os.path.getsize(out):,} bytes); reloaded: test accuracy {acc2:.2%}")
    if acc2 != acc:
        print("error: the reloaded model's accuracy differs", file=sys.stderr)
        return 1
    if not a.quick and acc < 0.97:
        print(f"warning: test accuracy {acc:.2%} is below 97%", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
