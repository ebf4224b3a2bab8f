"""python -m bench.compare --base PATH: this tree's cad against another build of cad
(a checkout at PATH, built in place), in one run.

Two builds of one extension cannot share a process, so each round runs `python -m
bench` once per tree, in separate processes, alternating which goes first; the
figure per cell is the median over the rounds of each run's median, and the ratio
new/base is taken from those.  This host drifts in phases of seconds, so ratios from
one compare run are the figures to quote; absolute times are not.

    python -m bench.compare --base ../base --only W1,W2,W3,W6,W7,W9 --rounds 3
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile


def run_bench(tree, only, impls, quick, repeat):
    fd, path = tempfile.mkstemp(suffix=".json")
    os.close(fd)
    cmd = [sys.executable, "-m", "bench", "--only", only, "--impls", impls, "--json", path]
    if quick:
        cmd.append("--quick")
    if repeat:
        cmd += ["--repeat", str(repeat)]
    env = dict(os.environ, PYTHONPATH=os.path.abspath(tree))
    subprocess.run(cmd, cwd=tree, env=env, check=True, stdout=subprocess.DEVNULL)
    with open(path) as f:
        rows = json.load(f)["rows"]
    os.unlink(path)
    out = {}
    for r in rows:
        for impl, m in r["medians_s"].items():
            if m is not None:
                out[(r["label"], r["per"], impl)] = m
    return out


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.compare")
    p.add_argument("--base", required=True, help="a checkout of cad built in place (the baseline)")
    p.add_argument("--only", default="W1,W2,W3,W6,W7,W9")
    p.add_argument("--impls", default="hand,cad,cad.eager")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--repeat", type=int, default=None)
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    trees = {"base": os.path.abspath(a.base), "new": here}
    got = {"base": [], "new": []}
    for r in range(a.rounds):
        order = ("base", "new") if r % 2 == 0 else ("new", "base")
        for which in order:
            print(f"round {r + 1}/{a.rounds}: {which}", file=sys.stderr, flush=True)
            got[which].append(run_bench(trees[which], a.only, a.impls, a.quick, a.repeat))
    keys = sorted(set().union(*got["new"]) & set().union(*got["base"]), key=lambda k: (k[0], k[2]))
    rows = []
    print("| cell | unit | base | new | new/base |\n|---|---|---|---|---|")
    for label, per, impl in keys:
        b = statistics.median(g[(label, per, impl)] for g in got["base"] if (label, per, impl) in g)
        n = statistics.median(g[(label, per, impl)] for g in got["new"] if (label, per, impl) in g)
        unit = "µs/op" if per == "op" else "µs"
        print(f"| {label} [{impl}] | {unit} | {b * 1e6:.3g} | {n * 1e6:.3g} | {n / b:.3f}x |")
        rows.append({"label": label, "impl": impl, "per": per, "base_s": b, "new_s": n, "ratio": n / b})
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"rounds": a.rounds, "base": trees["base"], "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
