"""The GPU benchmark (issue 4): cad on cuda:0 against PyTorch on the same card, in
one run.  python -m bench.gpu [--quick] [--json PATH] [--only W4,MLP]

  W1   chain of 1000 ops (+c, *c, sin) on a 0-d CUDA tensor, forward + backward; us per op
  W1f  the same forward alone (graph recorded, no backward): splits W1's cost
  W4   sum(sin(x)*x + exp(-x*x)) over 2^27 float32, forward + backward; ms
  W4f  its forward alone; MUL  one elementwise kernel, x * x over 2^27 float32: split W4's cost
  W5   sum((A@B)**2), A, B 4096 x 4096 float32, gradients of A and B; ms
  R1, R4  W1 and W4 recorded once (cad.record) and replayed: tape.grad, the
       elementwise chains fused into one generated kernel forward and one backward
  MLP  one SGD step of 4096x1024 -> 1024 -> 1024 -> 10, tanh, cross-entropy (float32); ms

Every sample ends with a device synchronisation (cad.cuda.synchronize /
torch.cuda.synchronize); the first calls (kernel compilation, cuBLAS and allocator
warm-up) are not timed.  Medians; cad/torch below 1 means cad is faster.  Matrix
products run in plain FP32 on both sides (TF32 off, the default of both)."""
import argparse
import json
import statistics
import sys
import time

import numpy as np

N_W1 = 1000   # bench.w_scalar.N_OPS


def _time(fn, sync, repeat, min_s):
    fn()
    fn()
    sync()
    samples = []
    t_end = time.perf_counter() + min_s
    while len(samples) < repeat or (time.perf_counter() < t_end and len(samples) < 10 * repeat):
        t0 = time.perf_counter()
        fn()
        sync()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples), len(samples)


# ---------------------------------------------------------------- workloads

from .w_scalar import chain as _chain  # noqa: E402  (W1's program: +c, *c, sin in turn)


# cad and PyTorch share the calls these workloads use (tensor(..., device=), sin, exp,
# backward, .grad), so one maker serves both: mod is the module


def w1(mod):
    x = mod.tensor(0.5, dtype=mod.float64, device="cuda", requires_grad=True)

    def step():
        x.grad = None
        _chain(x, mod.sin).backward()
        return x.grad
    return step


def w1f(mod):
    x = mod.tensor(0.5, dtype=mod.float64, device="cuda", requires_grad=True)
    return lambda: _chain(x, mod.sin)


def _w4_data(quick):
    n = 1 << (24 if quick else 27)
    return np.random.default_rng(4).standard_normal(n).astype(np.float32)


def w4(mod, data):
    x = mod.tensor(data, device="cuda", requires_grad=True)

    def step():
        x.grad = None
        (mod.sin(x) * x + mod.exp(-x * x)).sum().backward()
        return x.grad
    return step


def w4f(mod, data):
    x = mod.tensor(data, device="cuda", requires_grad=True)
    return lambda: (mod.sin(x) * x + mod.exp(-x * x)).sum()


def mul(mod, data):
    x = mod.tensor(data, device="cuda")
    return lambda: x * x


def r1_cad(cad):
    x = cad.tensor(0.5, device="cuda")
    tape = cad.record(lambda a: _chain(a, cad.sin), x)
    return lambda: tape.grad(x)


def r4_cad(cad, data):
    x = cad.tensor(data, device="cuda")
    tape = cad.record(lambda a: (cad.sin(a) * a + cad.exp(-a * a)).sum(), x)
    return lambda: tape.grad(x)


def _w5_data(quick):
    n = 1024 if quick else 4096
    rng = np.random.default_rng(5)
    return (rng.standard_normal((n, n)).astype(np.float32) / np.sqrt(n),
            rng.standard_normal((n, n)).astype(np.float32) / np.sqrt(n))


def w5(mod, data):
    A = mod.tensor(data[0], device="cuda", requires_grad=True)
    B = mod.tensor(data[1], device="cuda", requires_grad=True)

    def step():
        A.grad = B.grad = None
        ((A @ B) ** 2).sum().backward()
        return A.grad, B.grad
    return step


def _mlp_data(quick):
    rng = np.random.default_rng(6)
    n = 512 if quick else 4096
    X = rng.standard_normal((n, 1024)).astype(np.float32)
    y = rng.integers(0, 10, n)
    Ws = [(rng.standard_normal((a, b)) / np.sqrt(a)).astype(np.float32)
          for a, b in ((1024, 1024), (1024, 1024), (1024, 10))]
    return X, y, Ws


def mlp_cad(cad, data):
    X, y, Ws = data
    Xd, yd = cad.tensor(X, device="cuda"), cad.tensor(y, device="cuda")
    ps = []
    for W in Ws:
        ps += [cad.tensor(W, device="cuda", requires_grad=True),
               cad.zeros(W.shape[1], dtype=cad.float32, device="cuda", requires_grad=True)]

    def step():
        h = Xd
        for i in range(0, 4, 2):
            h = cad.tanh(h @ ps[i] + ps[i + 1])
        loss = cad.cross_entropy(h @ ps[4] + ps[5], yd)
        loss.backward()
        with cad.no_grad():
            for p in ps:
                p -= 0.01 * p.grad
                p.grad = None
        return loss
    return step


def mlp_torch(torch, data):
    X, y, Ws = data
    Xd, yd = torch.tensor(X, device="cuda"), torch.tensor(y, device="cuda")
    ps = []
    for W in Ws:
        ps += [torch.tensor(W, device="cuda", requires_grad=True),
               torch.zeros(W.shape[1], device="cuda", requires_grad=True)]
    F = torch.nn.functional

    def step():
        h = Xd
        for i in range(0, 4, 2):
            h = torch.tanh(h @ ps[i] + ps[i + 1])
        loss = F.cross_entropy(h @ ps[4] + ps[5], yd)
        loss.backward()
        with torch.no_grad():
            for p in ps:
                p -= 0.01 * p.grad
                p.grad = None
        return loss
    return step


WORKLOADS = [
    ("W1", "1000 ops on a 0-d CUDA tensor, fwd+bwd", "us/op", N_W1, None, w1, w1),
    ("W1f", "  its forward alone (the graph recorded)", "us/op", N_W1, None, w1f, w1f),
    ("W4", "sum(sin(x)*x+exp(-x*x)), 2^27 f32, fwd+bwd", "ms", 1, _w4_data, w4, w4),
    ("W4f", "  its forward alone (the graph recorded)", "ms", 1, _w4_data, w4f, w4f),
    ("MUL", "  one kernel: x * x, 2^27 f32 (1 GiB moved)", "ms", 1, _w4_data, mul, mul),
    ("R1", "W1 replayed (cad.record; torch: eager)", "us/op", N_W1, None, r1_cad, w1),
    ("R4", "W4 replayed, fused kernels (torch: eager)", "ms", 1, _w4_data, r4_cad, w4),
    ("W5", "sum((A@B)**2), 4096^2 f32, grads of A, B", "ms", 1, _w5_data, w5, w5),
    ("MLP", "SGD step 4096x1024-1024-1024-10 f32", "ms", 1, _mlp_data, mlp_cad, mlp_torch),
]


def _result_of(r):
    if isinstance(r, tuple):
        return [np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x) for x in r]
    if hasattr(r, "detach") and hasattr(r, "cpu"):
        try:
            return [np.asarray(r.detach().cpu().numpy())]
        except Exception:
            pass
    return [np.asarray(r.cpu() if hasattr(r, "cpu") else r)]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller problems, fewer samples")
    ap.add_argument("--json", default="gpu_bench_results.json")
    ap.add_argument("--only", default="")
    ap.add_argument("--repeat", type=int, default=0)
    ap.add_argument("--fake", action="store_true", help=argparse.SUPPRESS)   # smoke test on the fake device
    args = ap.parse_args(argv)
    import cad
    import cad.cuda
    if args.fake:
        cad.cuda._use_fake()
    elif not cad.cuda.is_available() or cad.cuda.is_fake():
        print("bench.gpu: no GPU here (cad.cuda.is_available() is False); nothing to time")
        return 0
    try:
        import torch
        have_torch = torch.cuda.is_available()
    except ImportError:
        torch, have_torch = None, False
    info = cad.cuda.memory_info()
    print(f"device: {info['name']} (sm_{info['capability'][0]}{info['capability'][1]}, "
          f"{info['total'] / 2**30:.0f} GiB); torch {torch.__version__ if torch else '-'}", flush=True)
    only = {w.strip() for w in args.only.split(",") if w.strip()}
    rows = []
    repeat = args.repeat or (5 if args.quick else 15)
    min_s = 0.5 if args.quick else 2.0
    datas = {}
    for key, name, unit, per, data_fn, cad_fn, torch_fn in WORKLOADS:
        if only and key not in only:
            continue
        if data_fn and data_fn not in datas:
            datas.clear()
            datas[data_fn] = data_fn(args.quick)
        data = datas.get(data_fn)
        row = {"workload": key, "name": name, "unit": unit}
        scale = 1e6 / per if unit == "us/op" else 1e3
        for impl, fn_maker, mod, sync in (
                ("cad", cad_fn, cad, cad.cuda.synchronize),
                ("torch", torch_fn, torch, (torch.cuda.synchronize if have_torch else None))):
            if impl == "torch" and not have_torch:
                row[impl] = None
                continue
            try:
                fn = fn_maker(mod, data) if data_fn else fn_maker(mod)
                med, n = _time(fn, sync, repeat, min_s)
                row[impl] = med * scale
                row[impl + "_samples"] = n
                row[impl + "_result"] = [float(np.asarray(a, dtype=np.float64).ravel()[:4].sum())
                                         for a in _result_of(fn())]
            except Exception as e:   # report, go on with the next cell
                row[impl] = None
                row[impl + "_error"] = f"{type(e).__name__}: {e}"[:300]
                print(f"  {key} {impl}: {row[impl + '_error']}", flush=True)
            print(f"  {key} {impl}: {row[impl]}", flush=True)
        if row.get("cad") and row.get("torch"):
            row["cad/torch"] = row["cad"] / row["torch"]
        rows.append(row)
    print()
    print(f"{'workload':6} {'':46} {'unit':6} {'cad':>9} {'torch':>9} {'cad/torch':>9}")
    for r in rows:
        f = lambda v: "-" if v is None else f"{v:9.3g}"  # noqa: E731
        print(f"{r['workload']:6} {r['name']:46} {r['unit']:6} {f(r.get('cad'))} {f(r.get('torch'))} "
              f"{f(r.get('cad/torch'))}")
    with open(args.json, "w") as fh:
        json.dump({"device": info, "torch": getattr(torch, "__version__", None), "quick": args.quick,
                   "rows": rows}, fh, indent=1, default=str)
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
