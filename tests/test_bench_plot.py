"""python -m bench: --plot draws a saved --json file (synthetic here, no benchmark run),
and the JSON a run writes carries the machine's description (python -m cad --info's facts)."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _row(workload, case, medians, per="call", metric=None):
    cad = medians.get("cad")
    return {"workload": workload, "case": case, "metric": metric,
            "label": f"{workload} {case}" + (f": {metric}" if metric else ""), "per": per,
            "medians_s": medians, "samples": {k: [v] for k, v in medians.items()},
            "number": {k: 1 for k in medians}, "notes": {}, "status": {k: "ok" for k in medians},
            "warmup_s": {}, "ratios": {f"cad/{k}": cad / v for k, v in medians.items()
                                       if k != "cad" and cad is not None}}


RESULT = {
    "date": "2026-01-01T00:00:00+00:00", "argv": ["--quick"], "quick": True, "busy": 0,
    "elapsed_s": 1.0, "machine": {"cpu_model": "synthetic CPU"}, "skipped": {},
    "notes": ["quick run, 1.0 s"], "units": "seconds",
    "rows": [
        _row("W1", "chain of 1000 scalar ops", {"hand": 2e-7, "torch": 5e-6, "jax": 9e-6,
                                                "cad": 4e-7}, per="op"),
        _row("W3", "MLP step", {"hand": 1e-3, "torch": 8e-4, "cad": 7e-4}, metric="forward"),
        _row("W3", "MLP step", {"hand": 2e-3, "torch": 9e-4, "cad": 1.1e-3}, metric="backward"),
        _row("W5", "sum((A@B)**2)", {"hand": 0.05, "torch": 0.04, "jax.jit": 0.06, "cad": 0.05}),
    ],
}


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([ROOT] + [p for p in [env.get("PYTHONPATH")] if p])
    return env


def test_plot_from_saved_json(tmp_path):
    pytest.importorskip("matplotlib")
    src = tmp_path / "results.json"
    src.write_text(json.dumps(RESULT))
    png = tmp_path / "bench.png"
    r = subprocess.run([sys.executable, "-m", "bench", "--from", str(src), "--plot", str(png)],
                       capture_output=True, text=True, cwd=ROOT, env=_env(), timeout=120,
                       check=False)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "W1 chain of 1000 scalar ops" in r.stdout   # the saved run's table
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_plot_function(tmp_path):
    pytest.importorskip("matplotlib")
    sys.path.insert(0, ROOT)
    try:
        from bench.plot import plot
    finally:
        sys.path.remove(ROOT)
    out = plot(RESULT, str(tmp_path / "b.svg"))
    with open(out) as f:
        text = f.read()
    assert "<svg" in text and "W5" in text


def test_json_carries_machine(tmp_path):
    out = tmp_path / "r.json"
    r = subprocess.run([sys.executable, "-m", "bench", "--quick", "--only", "W2",
                        "--impls", "hand,cad", "--repeat", "3", "--json", str(out)],
                       capture_output=True, text=True, cwd=ROOT, env=_env(), timeout=300,
                       check=False)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "cad/hand" in r.stdout   # the table, undisturbed
    result = json.loads(out.read_text())
    machine = result["machine"]
    info = machine["info"]   # the facts of python -m cad --info
    for key in ("cad", "python", "cpu", "numpy", "cuda", "peers"):
        assert key in info, key
    assert info["cad"]["threads"] >= 1 and "simd" in info["cad"]
