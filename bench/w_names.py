"""W15: what named dimensions cost (issue 12).

``python -m bench.w_names [--repeat N] [--base PATH]`` times, each in a fresh
process (name checking is switched on for a process by its first named tensor, so
the modes cannot share one):

- W1 (the 1000-op scalar chain, forward + backward, per op) and W3 (the MLP step)
  in a process that never names a tensor: what names cost when unused;
- the same after a named tensor was made elsewhere in the process (every op then
  tests for names and finds none);
- W3 with names on every tensor (parameters, data, labels).

With ``--base PATH`` (a checkout of cad built before named dimensions) the unused
rows are also timed with that build, in the same run: the ratio head/base is the
cost of the flag tests.  Prints a table of medians and ratios; never asserts.
"""
import argparse
import json
import os
import subprocess
import sys

CHILD = r"""
import json, sys, time, statistics
import numpy as np
sys.path.insert(0, {root!r})
import cad
mode, what, repeat = {mode!r}, {what!r}, {repeat}
if mode == "names_on":
    cad.ones(1, names=("warm",))


def w1():
    from bench import w_scalar
    def step():
        x = cad.tensor(w_scalar.X0, requires_grad=True)
        w_scalar.chain(x, cad.sin).backward()
        return x.grad
    return step, w_scalar.N_OPS


def w3(named):
    from bench import w_mlp
    d = w_mlp.data()
    def T(a, names=None, rg=False):
        if named:
            return cad.tensor(a.copy(), requires_grad=rg, names=names)
        return cad.tensor(a.copy(), requires_grad=rg)   # (a build before names has no names=)
    pn = [("in", "h1"), ("h1",), ("h1", "h2"), ("h2",), ("h2", "class"), ("class",)]
    params = [T(p, n, True) for p, n in zip(d["params"], pn)]
    X, labels = T(d["X"], ("batch", "in")), T(d["labels"], ("batch",))
    def step():
        W1, b1, W2, b2, W3, b3 = params
        h1 = cad.tanh(X @ W1 + b1)
        h2 = cad.tanh(h1 @ W2 + b2)
        loss = cad.cross_entropy(h2 @ W3 + b3, labels)
        loss.backward()
        with cad.no_grad():
            for i, p in enumerate(params):
                g = p.grad
                p.grad = None
                p -= 0.1 * g
                params[i] = p
        return loss
    return step, 1


fn, per = w1() if what == "W1" else w3(mode == "named")
for _ in range(20):
    fn()
ts = []
for _ in range(repeat):
    t0 = time.perf_counter()
    n = 0
    while True:
        fn()
        n += 1
        if time.perf_counter() - t0 > 0.02:
            break
    ts.append((time.perf_counter() - t0) / n / per)
print(json.dumps(statistics.median(ts)))
"""


def run(root, mode, what, repeat):
    code = CHILD.format(root=root, mode=mode, what=what, repeat=repeat)
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if out.returncode:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median of medians)")
    ap.add_argument("--base", default=None, help="a checkout built before named dimensions")
    a = ap.parse_args(argv)
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    rows = [("W1", "unused", here), ("W1", "names_on", here), ("W3", "unused", here),
            ("W3", "names_on", here), ("W3", "named", here)]
    if a.base:
        rows = [("W1", "unused", a.base), ("W3", "unused", a.base)] + rows
    got = {r: [] for r in rows}
    for _ in range(a.rounds):   # interleaved, so drift on a shared host hits every row
        for r in rows:
            got[r].append(run(r[2], r[1], r[0], a.repeat))
    med = {r: sorted(v)[len(v) // 2] for r, v in got.items()}
    unit = {"W1": ("us/op", 1e6), "W3": ("ms/step", 1e3)}
    print(f"{'workload':8} {'build':6} {'mode':9} {'median':>12}  ratio")
    for r in rows:
        w, mode, root = r
        u, k = unit[w]
        ref = med[(w, "unused", a.base)] if a.base else med[(w, "unused", here)]
        print(f"{w:8} {'base' if root == a.base and root != here else 'head':6} {mode:9} "
              f"{med[r] * k:9.4f} {u}  {med[r] / ref:.3f}")
    return med


if __name__ == "__main__":
    main()
