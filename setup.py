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
directives = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "cdivision": not DEBUG,
    "initializedcheck": DEBUG,
    "embedsignature": True,
}
cpu = "cad_kernels/cpu"
ext = Extension(
    "cad._core._engine",
    sources=["cad/_core/_engine.pyx"] + [f"{cpu}/{f}" for f in
                                         ("tape.c", "iter.c", "pool.c", "kernels.c", "sweep.c", "matmul.c", "_gen_ops.c")],
    include_dirs=[np.get_include(), cpu, "cad/_core"],
    define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    extra_compile_args=["-O3", "-fno-math-errno", "-std=gnu11", "-pthread"] + (["-O0", "-g"] if DEBUG else []),
    extra_link_args=["-pthread"],
)
setup(ext_modules=cythonize([ext], compiler_directives=directives, include_path=["cad/_core"]))
