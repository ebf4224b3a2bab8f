"""The documentation site (docs/, mkdocs.yml): every ```python block of every page
runs, and ``mkdocs build --strict`` passes.

A page's blocks run in order in one namespace (a doctest session), in a temporary
working directory (pages write files).  Sections of the README that a page includes
(``--8<-- "README.md:name"``, pymdownx.snippets) are part of the page here too.  An
HTML comment on the line before a block changes how it runs:

    <!-- docs-test: cuda -->           on the GPU when there is one, else on the fake
                                       device (CAD_CUDA_FAKE: the same kernels, on the host)
    <!-- docs-test: skip REASON -->    not run (say why: used sparingly)
    <!-- docs-test: mpi -->            run when mpi4py is installed (cad.distributed; in one
                                       process, a world of one rank), else skipped
"""
import importlib.util
import os
import re
import subprocess
import sys
import time

import pytest

import cad

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(ROOT, "docs")
MARK = re.compile(r"<!--\s*docs-test:\s*(\w+)\s*(.*?)\s*-->")
SNIPPET = re.compile(r'^\s*--8<--\s+"([^"]+)"\s*$')
FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([\w+-]*)")


def _pages():
    if not os.path.isdir(DOCS):
        return []
    out = []
    for d, _, files in os.walk(DOCS):
        out += [os.path.relpath(os.path.join(d, f), DOCS) for f in files if f.endswith(".md")]
    return sorted(out)


def _section(path, name):
    """the lines of path between its --8<-- [start:name] and [end:name] markers"""
    lines = open(os.path.join(ROOT, path)).read().split("\n")
    start = [i for i, l in enumerate(lines) if f"[start:{name}]" in l]
    end = [i for i, l in enumerate(lines) if f"[end:{name}]" in l]
    assert len(start) == 1 and len(end) == 1 and start[0] < end[0], \
        f"{path}: the section {name!r} needs one start and one end marker"
    return lines[start[0] + 1:end[0]]


def _expand(lines, depth=0):
    """the page with its snippet includes replaced by what they include"""
    out = []
    for l in lines:
        m = SNIPPET.match(l)
        if m is None:
            out.append(l)
            continue
        assert depth < 4, "snippets nested too deep"
        spec = m.group(1)
        path, _, name = spec.partition(":")
        inc = _section(path, name) if name else open(os.path.join(ROOT, path)).read().split("\n")
        out += _expand(inc, depth + 1)
    return out


def code_blocks(page):
    """[(line, mode, reason, source)] for the page's ```python blocks, in order"""
    lines = _expand(open(os.path.join(DOCS, page)).read().split("\n"))
    blocks, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if m is None:
            i += 1
            continue
        indent, fence, lang = m.groups()
        j = i + 1
        while j < len(lines) and not lines[j].strip().startswith(fence):
            j += 1
        if lang in ("python", "py"):
            k = i - 1
            while k >= 0 and not lines[k].strip():
                k -= 1
            mark = MARK.search(lines[k]) if k >= 0 else None
            mode, reason = (mark.group(1), mark.group(2)) if mark else ("run", "")
            assert mode in ("run", "cuda", "skip", "mpi"), f"{page}:{k + 1}: unknown marker {mode!r}"
            assert mode != "skip" or reason, f"{page}:{k + 1}: a skipped block says why"
            src = "\n".join(l[len(indent):] if l.startswith(indent) else l for l in lines[i + 1:j])
            blocks.append((i + 1, mode, reason, src))
        i = j + 1
    return blocks


_GPU = []


def _have_mpi4py():
    try:
        return importlib.util.find_spec("mpi4py") is not None
    except (ImportError, ValueError):   # (a None in sys.modules: blocked)
        return False


def _gpu():
    """the real device, else the fake one (as tests/test_cuda.py)"""
    if not _GPU:
        real = cad.cuda.is_available() and not cad.cuda.is_fake()
        if not real:
            cad.cuda._use_fake()
        _GPU.append("GPU" if real else "fake device")
    return _GPU[0]


@pytest.mark.parametrize("page", [p for p in _pages() if code_blocks(p)])
def test_code_blocks_run(page, tmp_path, monkeypatch):
    blocks = code_blocks(page)
    monkeypatch.chdir(tmp_path)
    cad.manual_seed(0)
    ns = {"__name__": "__docs__"}
    ran = 0
    for line, mode, _, src in blocks:
        if mode == "skip" or (mode == "mpi" and not _have_mpi4py()):
            continue
        if mode == "cuda":
            _gpu()
        code = compile(src, f"docs/{page}, block at line {line}", "exec")
        exec(code, ns)
        ran += 1
    if not ran and all(b[1] == "mpi" for b in blocks):
        pytest.skip(f"{page}: its blocks need mpi4py")
    assert ran, f"{page}: every block is skipped"


def test_pages_have_blocks_and_skips_are_rare():
    pages = _pages()
    assert "index.md" in pages
    blocks = [b for p in pages for b in code_blocks(p)]
    skipped = [b for b in blocks if b[1] == "skip"]
    assert len(blocks) >= 20 and len(skipped) <= 3, (len(blocks), len(skipped))


def _reference_text():
    ref = os.path.join(DOCS, "reference")
    return "\n".join(open(os.path.join(ref, f)).read() for f in sorted(os.listdir(ref))
                     if f.endswith(".md"))


def test_reference_documents_every_public_name():
    """every name in cad.__all__ has an entry (a ``::: cad.name`` line, or its module's)"""
    text = _reference_text()
    targets = set(re.findall(r"^:::\s+([\w.]+)", text, re.M))
    headings = set(re.findall(r'heading:\s*"([\w.]+)"', text))
    missing = [n for n in cad.__all__ if f"cad.{n}" not in targets | headings]
    assert not missing, f"docs/reference/ misses {missing}"


def _have_mkdocs():
    try:
        return all(importlib.util.find_spec(m) is not None
                   for m in ("mkdocs", "mkdocstrings", "mkdocstrings_handlers.python", "pymdownx"))
    except ImportError:   # (find_spec of a dotted name imports its parent)
        return False


@pytest.mark.skipif(not _have_mkdocs(), reason="mkdocs, mkdocstrings[python] or pymdown-extensions "
                    "not installed (pip install -e '.[docs]' or '.[test]')")
def test_mkdocs_build_strict(tmp_path):
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f",
                        os.path.join(ROOT, "mkdocs.yml"), "-d", str(tmp_path / "site")],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"mkdocs build --strict failed:\n{r.stdout}\n{r.stderr}"
    assert os.path.exists(tmp_path / "site" / "index.html")
    assert os.path.exists(tmp_path / "site" / "reference" / "tensors" / "index.html")
    print(f"mkdocs build --strict: {time.perf_counter() - t0:.1f} s")
