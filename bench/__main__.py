"""python -m bench: time cad against its peers, print one table, write JSON."""

import argparse
import datetime
import importlib
import importlib.util
import json
import os
import sys
import time

from . import MODULES


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Time cad against numpy by hand, PyTorch, JAX and HIPS autograd "
                    "(each optional). Prints one table of medians and ratios, writes JSON.")
    p.add_argument("--quick", action="store_true",
                   help="fewer and shorter samples (same problem sizes); about three minutes on a 2-core VM with every peer")
    p.add_argument("--json", metavar="PATH", default="bench_results.json",
                   help="where to write the results (default: bench_results.json)")
    p.add_argument("--only", metavar="W1,W3", default="",
                   help="comma-separated workloads to run (default: all)")
    p.add_argument("--impls", metavar="hand,torch,cad", default="",
                   help="comma-separated implementations: hand, torch, torch.jit, "
                        "torch.compile, jax, jax.jit, autograd, cad.eager, cad (default: all; "
                        "with --quick all but torch.compile)")
    p.add_argument("--repeat", metavar="N", type=int, default=None,
                   help="timed samples per cell (default: 15, or 5 with --quick, fewer "
                        "when one call is slow)")
    p.add_argument("--threads", metavar="N", type=int, default=None,
                   help="threads for BLAS/OpenMP, torch and cad (default: leave as is)")
    p.add_argument("--busy", metavar="N", type=int, default=0,
                   help="busy-neighbour mode: N other processes spin on the CPU for the "
                        "whole run (issue 14's cliff: compare --threads 1 and 2 under --busy 2)")
    p.add_argument("--list", action="store_true", help="list the workloads and exit")
    p.add_argument("--plot", metavar="PNG", default=None,
                   help="draw the results (one panel per workload, log time, cad's ratios; "
                        "needs matplotlib) into this file")
    p.add_argument("--from", dest="from_json", metavar="RESULTS.json", default=None,
                   help="run nothing: print the table of a saved --json file (and --plot it)")
    p.add_argument("--no-progress", action="store_true",
                   help="no tqdm progress bar (it is drawn only when tqdm is installed and "
                        "stderr is a terminal)")
    return p.parse_args(argv)


def start_busy(n):
    """n processes that keep a core busy each (killed when the run ends).  Plain
    interpreters running a spin loop: multiprocessing's spawn cannot find a target
    defined in a package's __main__ (it skips re-importing `bench.__main__`), so the
    children it started died at once and the mode measured an idle machine."""
    import subprocess
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    time.sleep(0.2)
    dead = [p.args for p in procs if p.poll() is not None]
    if dead:
        stop_busy(procs)
        raise RuntimeError(f"--busy: a spinning process exited at once ({dead[0]})")
    return procs


def stop_busy(procs):
    for p in procs:
        p.kill()
        p.wait()


def progress_bar(total, disabled):
    """a tqdm bar on stderr (one tick per case) when tqdm is installed and stderr is a
    terminal; else None.  The table on stdout is never touched."""
    if disabled or not sys.stderr.isatty():
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, unit="case", file=sys.stderr, dynamic_ncols=True, leave=False)


def plot_to(result, path, log):
    try:
        from .plot import plot
        plot(result, path)
    except ImportError as e:
        log(f"--plot: matplotlib is needed ({e})")
        return 1
    log(f"wrote {path}")
    return 0


def from_saved(args):
    from . import harness
    with open(args.from_json) as f:
        result = json.load(f)
    print(harness.render_table(result["rows"], result.get("notes", [])))
    if args.plot:
        return plot_to(result, args.plot, lambda msg: print(msg, file=sys.stderr))
    return 0


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.from_json:
        return from_saved(args)
    if args.plot and importlib.util.find_spec("matplotlib") is None:   # before, not after, the run
        print("--plot needs matplotlib (pip install matplotlib)", file=sys.stderr)
        return 2
    if args.threads:  # before numpy loads its BLAS
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(args.threads)

    from . import harness
    cases = [c for m in MODULES for c in importlib.import_module(f"bench.{m}").CASES]
    if args.list:
        for c in cases:
            print(f"{c.workload}  {c.name}  ({', '.join(c.impls)})")
        return 0
    only = {w.strip().upper() for w in args.only.split(",") if w.strip()}
    if only:
        cases = [c for c in cases if c.workload.upper() in only]
    impls = [i.strip() for i in args.impls.split(",") if i.strip()] or harness.IMPLS
    left_out = []  # slow columns a --quick run leaves out unless --impls names them
    if args.quick and not args.impls:
        left_out = [i for i in harness.SLOW_IMPLS if any(i in c.impls for c in cases)]
        impls = [i for i in impls if i not in left_out]
    unknown = [i for i in impls if i not in harness.IMPLS]
    if unknown or not cases:
        print(f"nothing to run (unknown implementations: {unknown})" if unknown
              else f"no workload matches --only {args.only}", file=sys.stderr)
        return 2

    started = time.perf_counter()
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    peers = harness.Peers()
    for module in sorted({harness.MODULE_OF[i] for i in impls}):
        peers.available(module)  # import time stays out of the timings
    if args.threads:
        if "torch" in peers.modules:
            peers.modules["torch"].set_num_threads(args.threads)
        if "cad" in peers.modules:
            try:
                peers.modules["cad"].set_num_threads(args.threads)
            except Exception as e:
                log(f"cad.set_num_threads failed: {e}")
    settings = harness.Settings(quick=args.quick, repeat=args.repeat)

    busy = start_busy(args.busy) if args.busy else []
    rows = []
    bar = progress_bar(len(cases), args.no_progress)
    if bar is not None:
        log = lambda msg: bar.write(msg, file=sys.stderr)  # noqa: E731  (above the bar)
    try:
        for case in cases:
            log(f"{case.workload} {case.name}")
            if bar is not None:
                bar.set_description(f"{case.workload} {case.name}"[:40])
            rows.extend(harness.run_case(case, peers, settings, impls, log))
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
        spun = sum(p.poll() is None for p in busy)
        stop_busy(busy)
    elapsed = time.perf_counter() - started

    notes = [f"{name} not importable, skipped: {why}" for name, why in peers.missing.items()]
    notes += sorted({r["case_note"] for r in rows if "case_note" in r})
    notes += [f"{i} not run with --quick (its untimed warm-up compiles, up to about a minute "
              f"per cell): run without --quick, or name it in --impls" for i in left_out]
    if os.environ.get("OPENBLAS_CORETYPE"):
        notes.append(f"OPENBLAS_CORETYPE={os.environ['OPENBLAS_CORETYPE']} is set: numpy's "
                     "OpenBLAS runs that kernel (run with `env -u OPENBLAS_CORETYPE -u "
                     "OPENBLAS_L2_SIZE` to let it pick its own)")
    if args.busy:
        notes.append(f"busy-neighbour mode: {args.busy} other processes spun on the CPU during the run"
                     + ("" if spun == args.busy else f" (only {spun} still spinning at its end)"))
    notes.append(f"{'quick' if args.quick else 'full'} run, {harness.fmt_seconds(elapsed)}")
    print(harness.render_table(rows, notes))

    result = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "argv": sys.argv[1:] if argv is None else list(argv),
        "quick": args.quick,
        "busy": args.busy,
        "elapsed_s": elapsed,
        "machine": harness.machine_info(peers),
        "skipped": peers.missing,
        "notes": notes,
        "units": "medians_s and samples are seconds per call, or per op where per == 'op'",
        "rows": rows,
    }
    with open(args.json, "w") as f:
        json.dump(result, f, indent=1, default=str)
    log(f"wrote {args.json}")
    if args.plot:
        return plot_to(result, args.plot, log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
