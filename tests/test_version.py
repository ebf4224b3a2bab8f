"""The version is written in one place, cad/_version.py: cad.__version__ re-exports it,
pyproject.toml reads it (setuptools' dynamic version), and an installed cad's metadata
carries it."""
import os
from importlib import metadata

import pytest

import cad

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_version_is_the_one_in_version_py():
    from cad import _version
    assert cad.__version__ == _version.__version__
    parts = cad.__version__.split(".")
    assert len(parts) >= 3 and all(p.isdigit() for p in parts[:3]), cad.__version__


def test_pyproject_reads_version_py():
    """what `pip install .` will call the version: setuptools' own reading of pyproject.toml"""
    path = os.path.join(ROOT, "pyproject.toml")
    if not (os.path.exists(path) and os.path.exists(os.path.join(ROOT, "cad", "_version.py"))):
        pytest.skip("not a source checkout")
    from setuptools.config.pyprojecttoml import read_configuration
    here = os.getcwd()
    os.chdir(ROOT)   # setuptools resolves attr: against the project's directory
    try:
        conf = read_configuration(path, expand=True)
    finally:
        os.chdir(here)
    assert "version" in conf["project"].get("dynamic", []) or "version" in conf["project"]
    assert conf["project"]["version"] == cad.__version__


def _is_this_cad(dist):
    """is dist the distribution the imported cad came from (a wheel install, or an
    editable install of this tree)?"""
    mine = os.path.realpath(cad.__file__)
    try:
        if os.path.realpath(str(dist.locate_file("cad/__init__.py"))) == mine:
            return True
    except Exception:
        pass
    try:
        import json
        url = json.loads(dist.read_text("direct_url.json") or "{}").get("url", "")
    except Exception:
        return False
    if url.startswith("file://"):
        src = os.path.realpath(url[len("file://"):])
        return mine.startswith(src + os.sep)
    return False


def test_installed_metadata_matches():
    try:
        dist = metadata.distribution("cad")
    except metadata.PackageNotFoundError:
        pytest.skip("cad is not installed (imported from a source tree)")
    if not _is_this_cad(dist):
        pytest.skip(f"the installed cad {dist.version} is not the one imported ({cad.__file__})")
    assert dist.version == cad.__version__
