"""The README's list of ops stays current with the op table."""
import os
import re

import cad
from cad.ops import REGISTRY

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_readme_lists_every_public_op():
    path = os.path.join(ROOT, "README.md")
    if not os.path.exists(path):
        import pytest
        pytest.skip("no README next to the tests")
    text = open(path).read()
    section = text.split("## Ops", 1)[1].split("\n## ", 1)[0]
    words = set(re.findall(r"[A-Za-z_]\w*", section))
    missing = [op.name for op in REGISTRY.values() if op.export and op.name not in words]
    assert not missing, f"README's Ops section misses {missing}"
    for name in cad.__all__:
        assert hasattr(cad, name), name
