"""Timing, optional peers, checks, the table and the JSON for ``python -m bench``.

A workload is a :class:`Case`: a function making its (numpy) data once, and for
each implementation a *setup* function ``setup(data) -> fn``.  ``fn`` is the
zero-argument callable that is timed; everything the setup does is excluded.

``fn()`` returns its result (the gradients, say).  If it returns
``Backward(g)`` instead, the harness times ``g()`` as a second phase: this is
how a forward pass (building the tape) and the backward pass are timed apart.

The first call of ``fn`` is a warm-up whose result is compared with the
hand-written implementation's; a difference becomes a note, never an error.
Benchmarks never assert.
"""

import gc
import os
import statistics
import sys
import time
import traceback

import numpy as np

# Column order of the table.  "hand" is numpy (or plain Python floats) with the
# derivative written by hand: the floor every other column is measured against.
# torch.jit (torch.jit.trace), torch.compile and cad.eager are columns of the
# workloads that compare compiled or recorded programs (W9), "cad" there being
# cad's replay of a recorded tape and "cad.eager" cad without recording.
IMPLS = ["hand", "torch", "torch.jit", "torch.compile", "jax", "jax.jit", "autograd",
         "cad.eager", "cad"]
PEERS = ["torch", "jax", "autograd"]
# the ratio columns, cad/<impl>, in this order (those measured in some row)
RATIO_TO = ["hand"] + PEERS + ["jax.jit", "cad.eager", "torch.jit", "torch.compile"]
# the "module" whose availability decides a column (see Peers.available)
MODULE_OF = {"hand": "numpy", "torch": "torch", "torch.jit": "torch.jit",
             "torch.compile": "torch.compile", "jax": "jax", "jax.jit": "jax",
             "autograd": "autograd", "cad.eager": "cad", "cad": "cad"}
# columns left out of --quick runs unless named in --impls (their warm-up compiles
# for about a minute)
SLOW_IMPLS = ["torch.compile"]


class Backward:
    """Returned by a forward callable: the harness times ``fn()`` as a second phase."""

    __slots__ = ("fn",)

    def __init__(self, fn):
        self.fn = fn


class Case:
    """One workload (or one variant of it, e.g. one dtype), timed for every implementation.

    ``per``/``per_name``: report time per ``per`` units (W1: per op), not per call.
    ``tol``: relative (norm) difference from "hand" above which a note is written.
    """

    def __init__(self, workload, name, data, impls, per=1, per_name="call",
                 tol=1e-6, note=None):
        self.workload = workload
        self.name = name
        self.data = data
        self.impls = impls
        self.per = per
        self.per_name = per_name
        self.tol = tol
        self.note = note


# ---------------------------------------------------------------------------
# peers


class Peers:
    """Imports each optional peer once and remembers why one is missing."""

    def __init__(self):
        self.modules = {}
        self.missing = {}

    def available(self, module):
        if module in self.modules:
            return True
        if module in self.missing:
            return False
        try:
            if module == "jax":
                os.environ.setdefault("JAX_PLATFORMS", "cpu")  # the CPU is what is compared
                import jax
                jax.config.update("jax_enable_x64", True)  # float64 everywhere, as numpy
                mod = jax
            elif module == "torch.jit":
                import torch
                if not hasattr(torch.jit, "trace"):
                    raise ImportError("this torch has no torch.jit.trace")
                mod = torch
            elif module == "torch.compile":
                import torch
                if not hasattr(torch, "compile"):
                    raise ImportError("this torch has no torch.compile")
                import torch._dynamo
                if not torch._dynamo.is_dynamo_supported():
                    raise ImportError("torch.compile (dynamo) is not supported on this Python")
                try:  # inductor's CPU backend compiles C++: raises when there is no compiler
                    from torch._inductor.cpp_builder import get_cpp_compiler
                except ImportError:
                    get_cpp_compiler = None  # another torch layout: let the cells try
                if get_cpp_compiler is not None:
                    try:
                        get_cpp_compiler()
                    except Exception as e:
                        raise ImportError(f"no C++ compiler for torch.compile's inductor "
                                          f"({type(e).__name__})") from e
                mod = torch
            else:
                mod = __import__(module)
            if module == "cad" and not hasattr(mod, "tensor"):  # a source tree, not built
                raise ImportError(f"cad at {list(getattr(mod, '__path__', []))} has no "
                                  "cad.tensor (not built yet?)")
            self.modules[module] = mod
            return True
        except Exception as e:  # ImportError, or a half-built cad
            self.missing[module] = f"{type(e).__name__}: {e}".splitlines()[0][:160]
            return False


# ---------------------------------------------------------------------------
# timing


class Settings:
    def __init__(self, quick=False, repeat=None):
        self.quick = quick
        self.repeat = repeat  # None: decided by the budget below
        # default samples per (case, implementation), fewer when one call is slow
        self.default_repeat = 5 if quick else 15
        self.min_repeat = 3 if quick else 5
        self.budget_s = 0.8 if quick else 8.0  # time aimed at for the samples of one cell
        self.sample_s = 0.005 if quick else 0.02  # a fast call is looped to last this long


def _call(fn):
    """One call.  Returns (phase durations, result)."""
    t0 = time.perf_counter()
    r = fn()
    t1 = time.perf_counter()
    if isinstance(r, Backward):
        t1 = time.perf_counter()
        r = r.fn()
        t2 = time.perf_counter()
        return (t1 - t0, t2 - t1), r
    return (t1 - t0,), r


def _loop(fn, number):
    """Mean duration of ``number`` calls of a one-phase fn."""
    t0 = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - t0) / number


def prepare(fn, settings):
    """Warm up and calibrate.  Returns the cell's state: samples so far (the warm
    call's, when it is one call per sample), calls per sample, samples wanted, the
    warm-up result and time."""
    t0 = time.perf_counter()
    _, result = _call(fn)  # warm-up (jit compilation, ...); its result is checked
    warmup_s = time.perf_counter() - t0
    result = to_numpy(result)  # now: later calls may update state in place
    est_times, _ = _call(fn)  # a warm call, to size the samples
    est = sum(est_times)
    phased = len(est_times) > 1
    number = 1
    if not phased and est < settings.sample_s:
        number = max(1, int(settings.sample_s / max(est, 1e-9)))
    if settings.repeat:
        repeats = settings.repeat
    else:
        fit = int(settings.budget_s / max(est * number, 1e-9))
        repeats = max(settings.min_repeat, min(settings.default_repeat, fit))
    return {"samples": [est_times] if number == 1 else [], "number": number, "repeats": repeats,
            "result": result, "warmup_s": warmup_s}


def sample(fn, m, upto):
    """Take samples until m holds `upto` of them."""
    while len(m["samples"]) < min(upto, m["repeats"]):
        if m["number"] == 1:
            m["samples"].append(_call(fn)[0])
        else:
            m["samples"].append((_loop(fn, m["number"]),))


def measure(fn, settings):
    """Warm up, calibrate, sample.  Returns dict(samples=[phase tuples], number, result)."""
    m = prepare(fn, settings)
    sample(fn, m, m["repeats"])
    return m


# ---------------------------------------------------------------------------
# checks


def to_numpy(obj):
    """A result (tensor, array, float, nested tuples/lists) as a flat list of numpy arrays."""
    if isinstance(obj, (list, tuple)):
        if obj and all(isinstance(v, (int, float)) for v in obj):
            return [np.array(obj, dtype=np.float64)]
        return [a for v in obj for a in to_numpy(v)]
    if isinstance(obj, np.ndarray):
        return [obj.copy()]
    if hasattr(obj, "detach"):  # torch, cad
        obj = obj.detach()
    if hasattr(obj, "numpy"):
        obj = obj.numpy()
    return [np.array(obj)]  # jax arrays, numpy scalars, Python floats


def compare(ref, got, tol):
    """None if ``got`` matches ``ref`` (lists of arrays), else a short note."""
    if len(ref) != len(got):
        return f"returned {len(got)} arrays, hand returned {len(ref)}"
    worst = 0.0
    for a, b in zip(ref, got):
        if a.shape != b.shape:
            return f"shape {b.shape}, hand {a.shape}"
        if a.dtype != b.dtype and a.dtype.kind == "f" and b.dtype.kind == "f":
            return f"dtype {b.dtype}, hand {a.dtype}"
        a64, b64 = a.astype(np.float64), b.astype(np.float64)
        if not np.all(np.isfinite(b64)):
            return "non-finite values"
        scale = max(np.linalg.norm(a64), 1e-300)
        worst = max(worst, float(np.linalg.norm(a64 - b64)) / scale)
    if worst > tol:
        return f"differs from hand by {worst:.1e} (relative)"
    return None


# ---------------------------------------------------------------------------
# running


# implementations whose worker threads (torch's OpenMP, XLA's pool) keep spinning for a
# while after a call: on 2 cores they would take the core the next one's threads need
THREADED = {"torch", "torch.jit", "torch.compile", "jax", "jax.jit"}


def run_case(case, peers, settings, impls_wanted, log):
    """Times every implementation of one case.  Returns the rows for the table/JSON.

    The samples of a full run are taken in rounds that alternate the order of the
    implementations (A B C, C B A, A B C): this machine's speed drifts in phases of
    seconds, and a ratio between two cells measured minutes apart would carry it."""
    data = case.data()
    cells = {}  # impl -> dict(samples, number) or dict(status, note)
    live = {}   # impl -> (fn, state) while sampling
    ref = None
    prev = None
    for impl in IMPLS:
        if impl not in case.impls or impl not in impls_wanted:
            continue
        if not peers.available(MODULE_OF[impl]):
            cells[impl] = {"status": "skipped", "note": peers.missing[MODULE_OF[impl]]}
            continue
        label = f"{case.workload} {case.name} / {impl}"
        log(f"  {label} ...")
        try:
            fn = case.impls[impl](data)
            if prev in THREADED or impl in THREADED:
                time.sleep(0.3)
            prev = impl
            live[impl] = (fn, prepare(fn, settings))
        except Exception as e:
            msg = f"{type(e).__name__}: {e}".splitlines()[0][:200]
            tb = traceback.format_exc(limit=-3)
            cells[impl] = {"status": "error", "note": msg, "traceback": tb}
            log(f"    error: {msg}")
        cells.setdefault(impl, None)
    rounds = 1 if settings.quick else 3
    order = list(live)
    for r in range(rounds):
        for impl in (order if r % 2 == 0 else order[::-1]):
            fn, m = live[impl]
            if prev in THREADED or impl in THREADED:
                time.sleep(0.3)
            prev = impl
            try:
                sample(fn, m, -(-m["repeats"] * (r + 1) // rounds))
            except Exception as e:
                msg = f"{type(e).__name__}: {e}".splitlines()[0][:200]
                cells[impl] = {"status": "error", "note": msg, "traceback": traceback.format_exc(limit=-3)}
                live[impl] = (fn, dict(m, repeats=0))
    for impl in order:
        fn, m = live[impl]
        if cells.get(impl) is not None:   # failed while sampling
            continue
        cell = {"status": "ok", "samples": m["samples"], "number": m["number"],
                "warmup_s": m["warmup_s"]}
        if impl == "hand":
            ref = m["result"]
        elif ref is not None:
            diff = compare(ref, m["result"], case.tol)
            if diff:
                cell["note"] = diff
        cells[impl] = cell
        value, unit = format_time(statistics.median(sum(s) for s in m["samples"]) / case.per)
        log(f"    {impl}: {value} {unit}/{case.per_name}  "
            f"({len(m['samples'])} samples x {m['number']} calls)")
    live.clear()
    gc.collect()
    return make_rows(case, {k: v for k, v in cells.items() if v is not None})


def make_rows(case, cells):
    """Splits the cells of a case into table rows: one, or forward/backward/total."""
    phased = any(c.get("status") == "ok" and len(c["samples"][0]) > 1 for c in cells.values())
    metrics = [("forward", 0), ("backward", 1), ("fwd+bwd", None)] if phased else [(None, None)]
    rows = []
    for metric, phase in metrics:
        row = {"workload": case.workload, "case": case.name, "metric": metric,
               "label": f"{case.workload} {case.name}" + (f": {metric}" if metric else ""),
               "per": case.per_name, "medians_s": {}, "samples": {}, "number": {},
               "notes": {}, "status": {}, "warmup_s": {}}
        if case.note and (metric is None or metric == "fwd+bwd"):
            row["case_note"] = case.note
        for impl, c in cells.items():
            row["status"][impl] = c["status"]
            if c.get("note"):
                row["notes"][impl] = c["note"]
            if c["status"] != "ok":
                if c.get("traceback"):
                    row.setdefault("tracebacks", {})[impl] = c["traceback"]
                continue
            one_phase = len(c["samples"][0]) == 1
            if phase is not None and one_phase:
                row["status"][impl] = "n/a"  # forward+backward in one call: total row only
                continue
            per_sample = [(sum(s) if phase is None else s[phase]) / case.per for s in c["samples"]]
            row["samples"][impl] = per_sample
            row["number"][impl] = c["number"]
            row["medians_s"][impl] = statistics.median(per_sample)
            row["warmup_s"][impl] = c["warmup_s"]  # the first, untimed call (compiles)
        cad = row["medians_s"].get("cad")
        row["ratios"] = {}
        for peer in RATIO_TO:
            other = row["medians_s"].get(peer)
            if cad is not None and other:
                row["ratios"][f"cad/{peer}"] = cad / other
        rows.append(row)
    return rows


# ---------------------------------------------------------------------------
# formatting


def format_time(seconds, unit=None):
    """(number string, unit) in µs, ms or s: the unit is chosen if not given."""
    if unit is None:
        unit = "µs" if seconds < 1e-3 else "ms" if seconds < 1.0 else "s"
    scale = {"µs": 1e6, "ms": 1e3, "s": 1.0}[unit]
    v = seconds * scale
    text = f"{v:.0f}" if v >= 99.95 else f"{v:.1f}" if v >= 9.995 else f"{v:.2f}"
    return text, unit


def format_ratio(r):
    return f"{r:.0f}x" if r >= 10 else f"{r:.1f}x" if r >= 1 else f"{r:.2g}x"


def render_table(rows, notes):
    """The one table: medians per implementation, then cad's ratios to each peer."""
    present = [i for i in IMPLS if any(i in r["status"] for r in rows)]
    have_cad = any("cad" in r["medians_s"] for r in rows)
    ratio_cols = []
    if have_cad:
        ratio_cols = [f"cad/{p}" for p in RATIO_TO
                      if any(f"cad/{p}" in r["ratios"] for r in rows)]
    header = ["workload", "unit"] + present + ratio_cols
    body = []
    marks = {}  # footnote text -> number
    for r in rows:
        values = [v for v in r["medians_s"].values()]
        unit = None
        if values:
            unit = format_time(min(values))[1]
        unit_label = f"{unit}/{r['per']}" if unit else "-"
        line = [r["label"], unit_label]
        for impl in present:
            status = r["status"].get(impl)
            if impl in r["medians_s"]:
                text = format_time(r["medians_s"][impl], unit)[0]
            elif status in (None, "n/a"):
                text = "-"
            elif status == "skipped":
                text = "skip"
            else:
                text = "err"
            note = r["notes"].get(impl)
            if note and status != "skipped":
                key = f"{r['workload']} {r['case']} / {impl}: {note}"
                marks.setdefault(key, len(marks) + 1)
                text += f"[{marks[key]}]"
            line.append(text)
        for col in ratio_cols:
            line.append(format_ratio(r["ratios"][col]) if col in r["ratios"] else "-")
        body.append(line)
    widths = [max(len(str(x[i])) for x in [header] + body) for i in range(len(header))]
    out = []
    fmt_row = lambda cells: "  ".join(  # noqa: E731
        (c.ljust(w) if i < 2 else c.rjust(w)) for i, (c, w) in enumerate(zip(cells, widths)))
    out.append(fmt_row(header))
    out.append("  ".join("-" * w for w in widths))
    prev = None
    for r, line in zip(rows, body):
        if prev is not None and r["workload"] != prev:
            out.append("")
        prev = r["workload"]
        out.append(fmt_row(line))
    out.append("")
    out.append("Median time per call (W1: per op) in the unit of each row. "
               "cad/X = cad's median / X's median (below 1x: cad is faster).")
    out.append("hand = numpy (W1, W2 scalar, W9 W1/W2: plain Python floats) with the "
               "derivative written by hand, the floor.  '-': not measured for that row; "
               "skip: not importable; err: raised.")
    for text, n in marks.items():
        out.append(f"[{n}] {text}")
    for n in notes:
        out.append(f"note: {n}")
    return "\n".join(out)


# ---------------------------------------------------------------------------
# machine


def machine_info(peers):
    import platform
    import subprocess
    from importlib import metadata

    info = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "env": {k: v for k, v in os.environ.items()
                if k.startswith(("OPENBLAS_", "OMP_", "MKL_", "JAX_", "XLA_"))},
        "versions": {},
    }
    try:
        info["cpus_usable"] = len(os.sched_getaffinity(0))
    except AttributeError:
        pass
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    for dist in ["numpy", "torch", "jax", "jaxlib", "autograd", "cad"]:
        try:
            info["versions"][dist] = metadata.version(dist)
        except Exception:
            mod = peers.modules.get(dist)
            if mod is not None:
                info["versions"][dist] = getattr(mod, "__version__", "unknown")
    if "cad" in peers.modules:
        info["cad_path"] = getattr(peers.modules["cad"], "__file__", None)
        try:
            info["cad_num_threads"] = peers.modules["cad"].get_num_threads()
        except Exception:
            pass
    try:  # the facts of `python -m cad --info`
        from cad._info import collect
        info["info"] = collect()
    except Exception as e:  # cad missing or not built: say why
        info["info"] = {"problem": f"{type(e).__name__}: {e}".splitlines()[0][:200]}
    if "torch" in peers.modules:
        info["torch_num_threads"] = peers.modules["torch"].get_num_threads()
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True,
                                text=True, timeout=5)
        if commit.returncode == 0:
            info["git_commit"] = commit.stdout.strip()
    except Exception:
        pass
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        info["numpy_blas"] = f"{blas.get('name')} {blas.get('version')}"
    except Exception:
        pass
    try:
        import threadpoolctl  # optional: which BLAS kernel numpy runs
        info["blas"] = [{k: p.get(k) for k in ("internal_api", "version", "architecture",
                                               "num_threads")}
                        for p in threadpoolctl.threadpool_info()]
    except Exception:
        pass
    return info


def fmt_seconds(s):
    return f"{s:.1f} s" if s < 120 else f"{s / 60:.1f} min"

