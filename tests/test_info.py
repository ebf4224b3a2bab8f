"""python -m cad --info: one line per fact, the same facts as JSON with --json."""
import json
import os
import subprocess
import sys

import pytest

import cad

HERE = os.path.dirname(os.path.abspath(__file__))


def _run(*args):
    # the cad this test imported: its parent folder first on the child's path
    env = dict(os.environ)
    parent = os.path.dirname(os.path.dirname(os.path.abspath(cad.__file__)))
    env["PYTHONPATH"] = os.pathsep.join([parent] + [p for p in [env.get("PYTHONPATH")] if p])
    r = subprocess.run([sys.executable, "-m", "cad", *args], capture_output=True, text=True,
                       env=env, timeout=120, stdin=subprocess.DEVNULL, check=False)
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout


@pytest.fixture(scope="module")
def text():
    return _run("--info")


@pytest.fixture(scope="module")
def info():
    return json.loads(_run("--info", "--json"))


def _lines(text):
    return dict(line.split(": ", 1) for line in text.splitlines() if ": " in line)


def test_info_lines(text):
    lines = _lines(text)
    for key in ("cad", "python", "platform", "cpu", "cores", "simd", "numpy", "numpy blas",
                "scipy", "cad blas", "cad threads", "cad simd clones", "cuda", "pycuda", "peers"):
        assert key in lines, f"no '{key}:' line in\n{text}"
    assert lines["cad"].startswith(cad.__version__ + " ")
    assert lines["python"].startswith("{}.{}.".format(*sys.version_info[:2]))
    assert lines["numpy"] == __import__("numpy").__version__
    assert lines["cad threads"].startswith(f"{cad.get_num_threads()} ")
    assert "cython_blas" in lines["cad blas"]
    for peer in ("torch", "jax", "autograd"):
        assert peer in lines["peers"]


def test_info_cuda_says_why(text, info):
    lines = _lines(text)
    if info["cuda"]["available"]:
        assert lines["cuda"].startswith("available")
    else:
        assert lines["cuda"].startswith("not available: ") and len(lines["cuda"]) > 20
        assert info["cuda"]["why_not"]


def test_info_json(info):
    assert info["cad"]["version"] == cad.__version__
    assert info["cad"]["threads"] == cad.get_num_threads()
    assert info["cpu"]["logical_cores"] == os.cpu_count()
    simd = info["cad"]["simd"]
    assert "picked" in simd or "clones_built" in simd
    if isinstance(simd.get("clones_built"), list) and simd["clones_built"]:
        assert simd["picked"] in simd["clones_built"]
    # the engine's own query agrees with what its symbols and /proc/cpuinfo say
    import cad._core._engine as C
    import cad._info as I
    q = C.simd_info()
    assert q["picked"] in (q["clones_built"] or ["default"])
    assert simd["source"].startswith("the engine")
    outside = I._simd_from_symbols(C.__file__, I._cpu())
    if isinstance(outside.get("clones_built"), list) and outside["clones_built"] and "simd_flags" in I._cpu():
        assert (q["clones_built"], q["picked"]) == (outside["clones_built"], outside["picked"])
        assert simd["libmvec"] == outside["libmvec"]   # (the engine's libmvec: what the build enabled)
    assert set(info["peers"]) >= {"torch", "jax", "autograd"}
    assert isinstance(info["cad"]["blas"]["dgemm"], bool)


def test_no_flag_prints_usage():
    out = _run()
    assert "--info" in out
