"""Build: generate the op table's kernels (tools/gen_ops.py), then compile the
Cython engine with the C kernels into one extension, cad._core._engine."""
import os
import subprocess
import sys

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

ROOT = os.path.dirname(os.path.abspath(__file__))
subprocess.check_call([sys.executable, os.path.join(ROOT, "tools", "gen_ops.py")], cwd=ROOT)

DEBUG = os.environ.get("CAD_CYTHON_DEBUG") == "1"
# CAD_SANITIZE=1: AddressSanitizer + UndefinedBehaviorSanitizer build (README, "Sanitizers");
# run it with LD_PRELOAD of libasan (python itself is not instrumented)
SANITIZE = os.environ.get("CAD_SANITIZE") == "1"
SAN_FLAGS = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-g", "-O1"] if SANITIZE else []


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
                                         ("tape.c", "iter.c", "pool.c", "alloc.c", "kernels.c", "sweep.c", "forward.c", "scan.c", "backend.c", "sprog.c", "matmul.c", "optim.c", "custom.c", "_gen_ops.c")]
    + [f"{cuda}/{f}" for f in ("driver.c", "exec.c", "host.c", "fuse.c")],
    include_dirs=[np.get_include(), cpu, cuda, "cad/_core"],
    define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")] + SIMD_DEFS,
    extra_compile_args=["-O3", "-fno-math-errno", "-std=gnu11", "-pthread"] + SIMD_FLAGS
    + (["-O0", "-g"] if DEBUG else []) + SAN_FLAGS,
    extra_link_args=["-pthread", "-lm", "-ldl"] + SAN_FLAGS[:1],
)
setup(ext_modules=cythonize([ext], compiler_directives=directives, include_path=["cad/_core"]))
