"""The engine's stub (cad/_core/_engine.pyi, generated from _engine.pyi.in and the op
table) matches the compiled module: mypy.stubtest, with only Cython's own pickling
and doctest names allowed (tests/stubtest_allowlist.txt)."""
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))


def test_stubtest_engine():
    pytest.importorskip("mypy")   # in the [test] extras, so CI runs it
    r = subprocess.run([sys.executable, "-m", "mypy.stubtest", "cad._core._engine",
                        "--allowlist", os.path.join(HERE, "stubtest_allowlist.txt"),
                        "--mypy-config-file", os.path.join(HERE, "stubtest_mypy.ini")],
                       capture_output=True, text=True, cwd=os.path.dirname(HERE))
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]


def test_package_is_typed():
    """cad ships py.typed (PEP 561): without it mypy ignores an installed cad's stubs, and
    stubtest against an installed wheel finds no stub and checks nothing"""
    import cad
    assert os.path.exists(os.path.join(os.path.dirname(cad.__file__), "py.typed"))
