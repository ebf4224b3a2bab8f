"""Build: generate the op table's kernels (tools/gen_ops.py), then compile the
Cython engine with the C kernels into one extension, cad._core._engine."""
import glob
import os
import subprocess
import sys

import numpy as np
from Cython.Build import cythonize
from concurrent.futures import ThreadPoolExecutor

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext as _build_ext

ROOT = os.path.dirname(os.path.abspath(__file__))
subprocess.check_call([sys.executable, os.path.join(ROOT, "tools", "gen_ops.py")], cwd=ROOT)

DEBUG = os.environ.get("CAD_CYTHON_DEBUG") == "1"
# CAD_SANITIZE=1: AddressSanitizer + UndefinedBehaviorSanitizer build (README, "Sanitizers");
# run it with LD_PRELOAD of libasan (python itself is not instrumented)
SANITIZE = os.environ.get("CAD_SANITIZE") == "1"
# (-g1: line tables for the reports' stack traces, a third cheaper to compile than -g)
SAN_FLAGS = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-g1", "-O1"] if SANITIZE else []


def _probe(src, flags):
    """does this C source compile and link with flags?"""
    import shutil
    import sysconfig
    import tempfile
    cc = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    d = tempfile.mkdtemp()
    try:
        with open(os.path.join(d, "p.c"), "w") as f:
            f.write(src)
        cmd = cc.split() + ["-O2"] + flags + [os.path.join(d, "p.c"), "-o", os.path.join(d, "p"), "-lm"]
        return subprocess.call(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) == 0
    except OSError:
        return False
    finally:
        shutil.rmtree(d, ignore_errors=True)


# glibc's vector math (libmvec) and gcc's function clones for AVX2: used when present
SIMD_FLAGS = []
SIMD_DEFS = []
if _probe("""#include <math.h>
#pragma omp declare simd notinbranch
double tanh(double);
__attribute__((target_clones("avx2", "default"))) void f(double *o, const double *x, long n) {
    _Pragma("omp simd") for (long i = 0; i < n; i++) o[i] = tanh(x[i]); }
int main(void) { double a[8] = {0}, b[8]; f(b, a, 8); return (int)b[0]; }
""", ["-fopenmp-simd", "-fno-math-errno"]):
    SIMD_FLAGS = ["-fopenmp-simd"]
    SIMD_DEFS = [("CAD_LIBMVEC", "1"), ("CAD_CLONES", "1")]
    # AVX-512 clones too, where the compiler and libmvec have them (8 doubles per call)
    if _probe("""#include <math.h>
#pragma omp declare simd notinbranch
double tanh(double);
__attribute__((target_clones("avx512f", "avx2", "default"))) void f(double *o, const double *x, long n) {
    _Pragma("omp simd") for (long i = 0; i < n; i++) o[i] = tanh(x[i]); }
int main(void) { double a[16] = {0}, b[16]; f(b, a, 16); return (int)b[0]; }
""", ["-fopenmp-simd", "-fno-math-errno"]):
        SIMD_DEFS.append(("CAD_CLONES512", "1"))
directives = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "cdivision": not DEBUG,
    "initializedcheck": DEBUG,
    "embedsignature": True,
}
cpu = "cad_kernels/cpu"
cuda = "cad_kernels/cuda"   # the CUDA backend's C side: no CUDA toolkit needed (dlopen at run time)
ext = Extension(
    "cad._core._engine",
    sources=["cad/_core/_engine.pyx"] + [f"{cpu}/{f}" for f in
                                         ("tape.c", "iter.c", "pool.c", "alloc.c", "kernels.c", "sweep.c", "forward.c", "scan.c", "cross.c", "backend.c", "sprog.c", "matmul.c", "optim.c", "custom.c", "_gen_ops.c")]
    + [f"{cuda}/{f}" for f in ("driver.c", "exec.c", "host.c", "fuse.c")],
    include_dirs=[np.get_include(), cpu, cuda, "cad/_core"],
    define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")] + SIMD_DEFS,
    # -g0: Python's CFLAGS ask for full debug info, which is 40% of compiling the 8 MB
    # Cython module and 15% of the generated kernels (CAD_CYTHON_DEBUG=1 puts it back)
    extra_compile_args=["-O3", "-g0", "-fno-math-errno", "-std=gnu11", "-pthread"] + SIMD_FLAGS
    + (["-O0", "-g"] if DEBUG else []) + SAN_FLAGS,
    extra_link_args=["-pthread", "-lm", "-ldl"] + SAN_FLAGS[:1],
)


def _fresh(obj, src, stamp):
    """an object file newer than its source and every header (.h, .cuh) of the tree, compiled
    with the same command (the stamp beside it): setuptools recompiles all of an
    extension's files when one changed; this skips the rest (a rebuild after editing
    one C file: seconds, not two minutes)"""
    try:
        with open(obj + ".flags") as f:
            if f.read() != stamp:
                return False
        t = os.path.getmtime(obj)
    except OSError:
        return False
    deps = [src] + [p for d in ("cad_kernels/*", "cad/_core") for ext in ("h", "cuh")
                    for p in glob.glob(os.path.join(ROOT, d, "*." + ext))]
    return all(os.path.getmtime(d) < t for d in deps)


class build_ext(_build_ext):
    """compiles one extension's C files in parallel (setuptools' -j only runs whole
    extensions in parallel, and cad is one), the longest first: the Cython module and
    the generated kernels, then the fake CUDA device's kernels (cuda/host.c: every
    generated CUDA kernel compiled for the host, for the tests without a GPU; at -O1,
    4x quicker to compile than -O3, and its speed is not measured).  CAD_BUILD_JOBS
    sets the count (default: -j if given, else the CPU count)."""

    FIRST = ("_engine.c", "_gen_ops.c", "host.c")

    def build_extension(self, ext):
        cc = self.compiler
        jobs = int(os.environ.get("CAD_BUILD_JOBS") or self.parallel or os.cpu_count() or 1)
        if hasattr(cc, "_setup_compile") and hasattr(cc, "_compile"):
            def compile(sources, output_dir=None, macros=None, include_dirs=None, debug=0,
                        extra_preargs=None, extra_postargs=None, depends=None):
                macros, objects, extra_postargs, pp_opts, build = cc._setup_compile(
                    output_dir, macros, include_dirs, sources, depends, extra_postargs)
                cc_args = cc._get_cc_args(pp_opts, debug, extra_preargs)

                def one(obj):
                    src, kind = build[obj]
                    post = list(extra_postargs or [])
                    if src.replace(os.sep, "/").endswith("cuda/host.c") and not (DEBUG or SANITIZE):
                        post.append("-O1")
                    stamp = repr((cc.compiler_so, cc_args, post, pp_opts))
                    if not self.force and _fresh(obj, src, stamp):
                        return
                    cc._compile(obj, src, kind, cc_args, post, pp_opts)
                    with open(obj + ".flags", "w") as f:
                        f.write(stamp)

                def rank(obj):
                    name = os.path.basename(build[obj][0])
                    return self.FIRST.index(name) if name in self.FIRST else len(self.FIRST)
                todo = sorted((o for o in objects if o in build), key=rank)
                with ThreadPoolExecutor(max(1, min(jobs, len(todo)))) as ex:
                    list(ex.map(one, todo))
                return objects
            cc.compile = compile
        super().build_extension(ext)


setup(ext_modules=cythonize([ext], compiler_directives=directives, include_path=["cad/_core"]),
      cmdclass={"build_ext": build_ext})
