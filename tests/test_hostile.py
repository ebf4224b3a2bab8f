"""Hostile input (issue 10): every case of tests/hostile_cases.py runs in a child
process (batched; a crash names its case and the rest run in a fresh child) and must
not crash, must raise the expected exception class, and must leave its inputs
unchanged."""
import json
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import hostile_cases as H  # noqa: E402

DATA = os.path.join(HERE, "data")
CASES = H.cases(DATA)


def _run_all():
    """{index: outcome}; a case whose child died gets {"crash": returncode}"""
    todo = list(range(len(CASES)))
    got = {}
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([os.path.dirname(HERE)] + [p for p in [env.get("PYTHONPATH")] if p])
    while todo:
        p = subprocess.run([sys.executable, os.path.join(HERE, "hostile_child.py"), DATA] + [str(k) for k in todo],
                           capture_output=True, text=True, timeout=600, env=env, stdin=subprocess.DEVNULL)
        started = None
        for line in p.stdout.splitlines():
            if line.startswith("START "):
                started = int(line.split()[1])
            elif line.startswith("DONE "):
                _, k, rest = line.split(" ", 2)
                got[int(k)] = json.loads(rest)
                started = None
        if p.returncode == 0:
            break
        if started is None:   # died outside a case
            raise RuntimeError(f"hostile child failed (rc {p.returncode}): {p.stderr[-2000:]}")
        got[started] = {"crash": p.returncode, "stderr": p.stderr[-1000:]}
        todo = [k for k in todo if k not in got]
    return got


@pytest.fixture(scope="module")
def outcomes():
    return _run_all()


def test_enough_cases():
    assert len(CASES) >= 200
    assert len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("k", range(len(CASES)), ids=[c[0][:80] for c in CASES])
def test_hostile(k, outcomes):
    cid, code, expect = CASES[k]
    o = outcomes.get(k)
    assert o is not None, f"{cid}: no outcome"
    assert "crash" not in o, f"{cid}: the child process died (return code {o['crash']}):\n{o['stderr']}"
    assert not o["changed"], f"{cid}: inputs changed: {o['changed']}"
    err = o["err"]
    if expect == "ok":
        assert err is None, f"{cid}: raised {err}: {o['msg']}"
    elif expect == "any":
        assert err is None or err in H.ALLOWED, f"{cid}: raised {err}: {o['msg']}"
    else:
        assert err in expect.split("|"), f"{cid}: expected {expect}, got {err}: {o['msg']}"
