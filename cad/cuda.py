"""cad.cuda: the GPU (one NVIDIA device, cuda:0).

    cad.cuda.is_available()        a driver with a device and pycuda are there
    cad.cuda.device_count()
    cad.cuda.synchronize()         wait for the kernels queued so far
    cad.cuda.allow_tf32 = True     float32 matrix products on TF32 tensor cores (off by default)
    cad.cuda.fuse_replay = False   record CUDA tapes without fused elementwise kernels
    cad.cuda.empty_cache()         give the cached device blocks back to the driver
    cad.cuda.memory_info()
    x.to("cuda"), x.cuda(), x.cpu(), cad.tensor(data, device="cuda")

Importing cad never imports pycuda; the first use of "cuda" opens the driver
(libcuda.so.1, loaded at run time: building cad needs no CUDA toolkit), compiles
cad's kernels (cad/_core/_kernels.cu, generated from the op table) with pycuda's
compiler, which caches nvcc's output on disk, and loads them into the device's
primary context (the one PyTorch and pycuda's retain_primary_context use).  See
NOTE [ CUDA backend ] in cad_kernels/cuda/cad_cuda.h.

The fake device (``CAD_CUDA_FAKE=1`` in the environment, or ``_use_fake()`` before
first use) runs the same launcher and kernels, compiled for the host, on host
memory: the test suite checks the whole device path with it on machines without a
GPU.  Its addresses have bit 62 set, so host code that touches device memory by
mistake faults there as it would on a GPU; ``CAD_CUDA_TRACE=1`` lists its kernel
launches on stderr.

``CAD_CUDA_CUBIN=path``: a cubin of cad/_core/_kernels.cu built elsewhere (nvcc
--cubin -arch sm_XY) for this device, loaded instead of compiling (bench/gpu.sh
--prebuilt); if it does not load, cad compiles as usual.
"""
from __future__ import annotations

from typing import Any

import glob
import os
import shutil
import sys
import types

from ._core import _engine as _C

DeviceError = _C.DeviceError
OutOfMemoryError = _C.OutOfMemoryError

_fake_wanted = os.environ.get("CAD_CUDA_FAKE") == "1"


def _use_fake(limit_bytes=None):
    """Use the fake device (tests).  Must come before the first use of "cuda"."""
    global _fake_wanted
    is_open, fake, _ = _C.cuda_state()
    if is_open and not fake:
        raise DeviceError("cad.cuda: the real CUDA device is already open in this process")
    _fake_wanted = True
    if limit_bytes is not None:
        _C.cuda_set_fake_limit(int(limit_bytes))
    _init("cad.cuda")


def _pycuda_problem():
    """None when pycuda imports; else what is wrong, in words"""
    try:
        import pycuda.compiler  # noqa: F401
        import pycuda.driver  # noqa: F401
    except ModuleNotFoundError as e:
        if e.name and e.name.split(".")[0] == "pycuda":
            return "pycuda is not installed (pip install 'cad[cuda]')"
        return f"pycuda cannot be imported ({type(e).__name__}: {e})"
    except Exception as e:   # a pycuda built for another CUDA, no driver library, ...
        return f"pycuda cannot be imported ({type(e).__name__}: {e})"
    return None


def _cublas_candidates():
    out = []
    env = os.environ.get("CAD_CUBLAS")
    if env:
        out.append(env)
    homes = [os.environ.get(k) for k in ("CUDA_HOME", "CUDA_PATH")]
    nvcc = shutil.which("nvcc")
    if nvcc:
        homes.append(os.path.dirname(os.path.dirname(os.path.realpath(nvcc))))
    homes.append("/usr/local/cuda")
    for h in homes:
        if h:
            out += sorted(glob.glob(os.path.join(h, "lib64", "libcublas.so*")), reverse=True)
            out += sorted(glob.glob(os.path.join(h, "targets", "*", "lib", "libcublas.so*")), reverse=True)
    for p in sys.path:   # the nvidia-cublas wheels PyTorch installs
        out += sorted(glob.glob(os.path.join(p, "nvidia", "cublas", "lib", "libcublas.so*")), reverse=True)
        out += sorted(glob.glob(os.path.join(p, "nvidia", "cu*", "lib", "libcublas.so*")), reverse=True)
    return [p for p in out if os.path.exists(p)]


def _kernel_source():
    path = os.path.join(os.path.dirname(_C.__file__), "_kernels.cu")
    if not os.path.exists(path):
        raise DeviceError(f"cad.cuda: the kernel source {path} is missing (rebuild cad: "
                          "pip install -e .)")
    with open(path) as f:
        return f.read()


def _init(who):
    """Open the device and load the kernels (the engine calls this on first use)."""
    is_open, fake, loaded = _C.cuda_state()
    if is_open and loaded:
        return
    if _fake_wanted:
        err = _C.cuda_open(True)
        if err:
            raise DeviceError(f"{who}: {err}")
        return
    n, msg = _C.cuda_device_count()
    problem = _pycuda_problem()
    if n <= 0:
        extra = "" if problem is None else f"; and {problem}"
        raise DeviceError(f"{who}: CUDA is not available: {msg}{extra}")
    if problem is not None:
        raise DeviceError(f"{who}: a GPU is present but {problem}")
    err = _C.cuda_open(False)
    if err:
        raise DeviceError(f"{who}: {err}")
    from pycuda.compiler import compile as _compile
    major, minor = _C.cuda_info()["capability"]
    arch = f"sm_{major}{minor}"
    _C.cuda_set_cublas_paths(":".join(_cublas_candidates()))
    pre = os.environ.get("CAD_CUDA_CUBIN")   # a cubin of _kernels.cu built elsewhere for this arch
    if pre and os.path.exists(pre):
        with open(pre, "rb") as f:
            try:
                _C.cuda_load(f.read())
                return
            except DeviceError as e:   # another toolkit or arch: compile here instead
                print(f"cad.cuda: CAD_CUDA_CUBIN={pre} not loaded ({e}); compiling", file=sys.stderr)
    try:
        cubin = _compile(_kernel_source(), no_extern_c=True, arch=arch, options=["-O3"])
    except Exception as e:
        raise DeviceError(f"{who}: compiling cad's CUDA kernels for {arch} failed: {e}") from None
    _C.cuda_load(cubin)


def is_available() -> bool:
    """Is there a GPU cad can use (a driver that sees a device, and pycuda)?  True
    for the fake device too."""
    is_open, fake, _ = _C.cuda_state()
    if is_open or _fake_wanted:
        return True
    n, _ = _C.cuda_device_count()
    return n > 0 and _pycuda_problem() is None


def is_fake() -> bool:
    return bool(_C.cuda_state()[1]) or _fake_wanted


def device_count() -> int:
    if is_fake():
        return 1
    n, _ = _C.cuda_device_count()
    return max(n, 0)


def synchronize() -> None:
    """Wait until every kernel cad queued on the GPU has finished."""
    if _C.cuda_state()[0]:
        _C.cuda_sync()


def empty_cache() -> int:
    """Return cached device blocks to the driver; the number of bytes."""
    return _C.cuda_empty_cache()


def memory_info() -> Any:
    """{'name', 'capability', 'free', 'total', 'in_use', 'cached'} (bytes)"""
    _init("cad.cuda.memory_info")
    return _C.cuda_info()


def get_device_name() -> str:
    _init("cad.cuda.get_device_name")
    return _C.cuda_info()["name"]


class _CudaModule(types.ModuleType):
    @property
    def allow_tf32(self):
        return self.__dict__.get("_allow_tf32", False)

    @allow_tf32.setter
    def allow_tf32(self, on):
        self.__dict__["_allow_tf32"] = bool(on)
        _C.cuda_set_tf32(bool(on))


# cad.record on CUDA values fuses runs of elementwise records into one generated
# kernel forward and one backward (NOTE [ Fused replay ]); False: record by record
fuse_replay = True

sys.modules[__name__].__class__ = _CudaModule
_C._set_cuda_init(_init)
