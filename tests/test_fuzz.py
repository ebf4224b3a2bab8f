"""A short run of the fuzzers (tools/fuzz.py; `python tools/fuzz.py --minutes 5` is the
long run): mutated tape files through cad.load, call and grad; random programs against
numpy, the C sweep against the Python rules, replay against eager.  In child
processes, so a crash is a failure that names its input."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("target", ["load", "programs"])
def test_fuzz_short(target):
    pytest.importorskip("hypothesis")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([ROOT] + [p for p in [env.get("PYTHONPATH")] if p])
    p = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "fuzz.py"), "--seconds", "3",
                        "--only", target, "--seed", "7"], capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-2000:]
    report = json.loads(p.stdout.strip().splitlines()[-1])[target]
    assert report["examples"] > 20 and report["crashes"] == 0 and report["failures"] == 0, report
