"""python -m bench.busy: issue 14's busy-neighbour check, cell by cell.

Every cad cell of the chosen workloads at 2 threads against 1 thread, with N other
processes spinning on the CPU (default 2: both cores of a 2-core host taken).  The
two thread counts alternate sample by sample in one process (1, 2, 2, 1, 1, 2, ...),
so the machine's drift and the scheduler's phases fall on both alike; a ratio of
two separate `python -m bench --busy 2 --threads K` runs carries minutes of drift
and, on a 2-core host shared with two spinners, read 0.4x-5x for single-threaded
cells whose code does not depend on the thread count at all.

Prints per cell and trial the median of each setting and their ratio (2 threads /
1 thread), then the worst ratio over the trials; writes JSON (--json).

`--threads 1,1` is the null comparison: the same setting in both slots, alternated
the same way, so every ratio it reads is the measurement's own spread under the
spinners (the floor a 2-thread cell's worst trial cannot be told from).
"""

import argparse
import importlib
import json
import statistics
import sys
import time

from . import MODULES
from .__main__ import start_busy, stop_busy


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m bench.busy", description=__doc__.split("\n\n")[0])
    p.add_argument("--busy", type=int, default=2, help="spinning processes (default 2)")
    p.add_argument("--trials", type=int, default=3, help="trials per cell (default 3)")
    p.add_argument("--only", default="", help="comma-separated workloads (default: all)")
    p.add_argument("--impls", default="cad,cad.eager", help="cad cells to run (default: cad,cad.eager)")
    p.add_argument("--budget", type=float, default=2.0,
                   help="seconds of samples per cell and trial (default 2; at least 3 pairs)")
    p.add_argument("--threads", default="1,2", help="the two thread counts compared (default 1,2)")
    p.add_argument("--json", default="bench_busy.json", help="where to write the results")
    return p.parse_args(argv)


def _timed(fn, number):
    """seconds per call of `number` calls (a phased cell: forward then its backward)"""
    from .harness import _call
    t = 0.0
    for _ in range(number):
        t += sum(_call(fn)[0])
    return t / number


def ab_cell(fn, cad, counts, budget, sample_s=0.02):
    """alternate the two settings sample by sample; [seconds per call] for each, in
    the order of counts (by position: `--threads 1,1` is the null comparison, the
    same setting in both slots, whose spread is the measurement's own floor)"""
    for k in counts:   # warm both settings (pool threads started, caches filled)
        cad.set_num_threads(k)
        _timed(fn, 1)
    est = _timed(fn, 1)
    number = max(1, int(sample_s / max(est, 1e-9)))
    got = ([], [])
    start = time.perf_counter()
    i = 0
    while i < 6 or (time.perf_counter() - start < budget and i < 60):
        slot = i % 2 if (i // 2) % 2 == 0 else 1 - i % 2
        cad.set_num_threads(counts[slot])
        got[slot].append(_timed(fn, number))
        i += 1
    return got


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from . import harness
    counts = [int(k) for k in args.threads.split(",")]
    if len(counts) != 2:
        print("--threads takes two counts", file=sys.stderr)
        return 2
    cases = [c for m in MODULES for c in importlib.import_module(f"bench.{m}").CASES]
    only = {w.strip().upper() for w in args.only.split(",") if w.strip()}
    if only:
        cases = [c for c in cases if c.workload.upper() in only]
    impls = [i.strip() for i in args.impls.split(",") if i.strip()]
    import cad
    old = cad.get_num_threads()
    busy = start_busy(args.busy) if args.busy else []
    rows = []
    try:
        for case in cases:
            data = case.data()
            for impl in impls:
                if impl not in case.impls:
                    continue
                label = f"{case.workload} {case.name} / {impl}"
                try:
                    fn = case.impls[impl](data)
                    trials = [ab_cell(fn, cad, counts, args.budget) for _ in range(args.trials)]
                except Exception as e:   # a cell that fails is reported, the rest run
                    print(f"{label}: {type(e).__name__}: {e}", file=sys.stderr)
                    continue
                meds = [[statistics.median(t[0]), statistics.median(t[1])] for t in trials]
                ratios = [m[1] / m[0] for m in meds]
                rows.append({"label": label, "medians_s": meds, "ratios": ratios,
                             "worst": max(ratios), "samples": [len(t[0]) for t in trials]})
                a, b = (" ".join(harness.format_time(meds[0][j])) for j in range(2))
                print(f"{max(ratios):5.2f}x  ({' '.join(f'{r:.2f}' for r in ratios)})  {label}  "
                      f"(first trial: {counts[0]} thread(s) {a}, {counts[1]} {b})", flush=True)
    finally:
        spun = sum(p.poll() is None for p in busy)
        stop_busy(busy)
        cad.set_num_threads(old)
    worst = max(rows, key=lambda r: r["worst"]) if rows else None
    if worst:
        print(f"worst: {worst['worst']:.2f}x ({worst['label']}); {sum(r['worst'] <= 1.2 for r in rows)} of "
              f"{len(rows)} cells within 1.2x in every trial; {args.busy} spinning processes"
              + ("" if spun == args.busy else f" (only {spun} at the end)"))
    with open(args.json, "w") as f:
        json.dump({"argv": sys.argv[1:] if argv is None else list(argv), "busy": args.busy,
                   "threads": counts, "rows": rows, "machine": harness.machine_info(harness.Peers())},
                  f, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
