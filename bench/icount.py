"""python -m bench.icount [--base PATH] [--only W1,W2]: instructions per call of cad's
cells, counted by valgrind's callgrind (repeatable on a busy host, where wall-clock
medians drift by 10-60%).  With --base, the same cells of another build (a checkout
built in place) in the same run, and the ratio new/base.

Each cell is two processes under callgrind: its setup and a warm-up call, then N
calls or none; the difference over N is the count per call."""
import argparse
import importlib
import json
import os
import subprocess
import sys
import tempfile

CHILD = r"""
import importlib, sys, gc
sys.path.insert(0, {tree!r})
import cad
cad.set_num_threads(1)   # one thread: valgrind serialises threads, spinning would count
mod = importlib.import_module("bench." + {module!r})
case = [c for c in mod.CASES if c.workload == {workload!r} and c.name == {name!r}][0]
data = case.data()
fn = case.impls[{impl!r}](data)
r = fn()
if hasattr(r, "fn"):
    r.fn()
gc.collect()
gc.disable()
for _ in range({n}):
    r = fn()
    if hasattr(r, "fn"):
        r.fn()
"""

MODULES = ["w_scalar", "w_mlp", "w_transforms", "w_replay"]


def cells(tree, only):
    sys.path.insert(0, tree)
    out = []
    for m in MODULES:
        mod = importlib.import_module("bench." + m)
        for c in mod.CASES:
            if only and c.workload not in only:
                continue
            for impl in ("cad", "cad.eager"):
                if impl in c.impls:
                    out.append((m, c.workload, c.name, impl))
    sys.path.pop(0)
    return out


def count(tree, module, workload, name, impl, n):
    """instructions of n calls (callgrind, the whole process minus a run with n = 0)"""
    tot = []
    env = dict(os.environ, PYTHONPATH=tree)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    subprocess.run([sys.executable, "-c", f"import bench.{module}"], cwd=tree, env=env, check=True)
    for k in (0, n):
        with tempfile.TemporaryDirectory() as d:
            src = CHILD.format(tree=tree, module=module, workload=workload, name=name, impl=impl,
                               n=k)
            out = os.path.join(d, "cg.out")
            env = dict(os.environ, PYTHONPATH=tree, PYTHONHASHSEED="0", OPENBLAS_NUM_THREADS="1",
                       OMP_NUM_THREADS="1")
            # byte-compiled modules: compiling them at import is ~1e9 instructions whose
            # count varies by 1e5-1e6 between processes (the n=0 and n calls runs)
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                            sys.executable, "-c", src], cwd=tree, env=env, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            with open(out) as f:
                for line in f:
                    if line.startswith("summary:") or line.startswith("totals:"):
                        tot.append(int(line.split()[1]))
                        break
    return (tot[1] - tot[0]) / n


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.icount")
    p.add_argument("--base", default=None)
    p.add_argument("--only", default="W1,W2,W3,W6,W7,W9")
    p.add_argument("-n", type=int, default=200)
    p.add_argument("--json", default=None)
    p.add_argument("--tree", default=None, help="count this checkout instead of this one")
    a = p.parse_args(argv)
    here = os.path.abspath(a.tree) if a.tree else os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    only = {w.strip().upper() for w in a.only.split(",") if w.strip()}
    rows = []
    print("| cell | new (instructions/call) | base | new/base |\n|---|---|---|---|")
    for module, w, name, impl in cells(here, only):
        new = count(here, module, w, name, impl, a.n)
        base = count(os.path.abspath(a.base), module, w, name, impl, a.n) if a.base else None
        ratio = f"{new / base:.3f}x" if base else ""
        print(f"| {w} {name} [{impl}] | {new:,.0f} | {'' if base is None else f'{base:,.0f}'} | {ratio} |",
              flush=True)
        rows.append({"workload": w, "name": name, "impl": impl, "new": new, "base": base})
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
