"""What ``python -m cad --info`` reports: the machine and the libraries cad runs on.

``collect()`` returns a JSON-able dict (``python -m cad --info --json``, and the
``machine`` entry of ``python -m bench``'s JSON); ``render(info)`` the text.

- SIMD clones: the build (setup.py) defines CAD_CLONES (AVX2 clones of the hot loops),
  CAD_CLONES512 (AVX-512 too) and CAD_LIBMVEC (glibc's vector math) when the compiler
  has them.  The engine reports them (``simd_info()``) with the clone gcc's resolver
  runs: the widest one built that ``__builtin_cpu_supports`` (the resolver's test)
  accepts.  An engine built before that query is read from outside: a cloned function
  leaves symbols named ``<fn>.avx2`` / ``<fn>.avx512f`` (absent from a stripped build),
  libmvec is in its needed libraries, and the clone picked is the widest one built
  whose flag /proc/cpuinfo lists; the report says which source it used.

Some facts the engine has no query for are read from outside it, and the report says so:

- Which BLAS cad calls: cad takes dgemm/sgemm (and LAPACK's getrs) from
  scipy.linalg.cython_blas/cython_lapack (cad/_core/modes.pxi), so it is the library
  that scipy's cython_blas module links; threadpoolctl, when installed, names it with
  its version, kernel and threads.
"""
import os
import platform
import sys
from importlib import metadata

PEERS = ("torch", "jax", "jaxlib", "autograd")
SIMD_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512dq", "avx512bw", "avx512vl")


def _version(dist):
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _cpu():
    info = {"machine": platform.machine(), "logical_cores": os.cpu_count()}
    try:
        info["usable_cores"] = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        pass
    flags, cores = set(), set()
    phys = None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key, value = key.strip(), value.strip()
                if key == "model name" and "model" not in info:
                    info["model"] = value
                elif key == "flags" and not flags:
                    flags = set(value.split())
                elif key == "physical id":
                    phys = value
                elif key == "core id":
                    cores.add((phys, value))
    except OSError:
        pass
    if "model" not in info:
        info["model"] = platform.processor() or "unknown"
    if cores:
        info["physical_cores"] = len(cores)
    if flags:
        info["simd_flags"] = [f for f in SIMD_FLAGS if f in flags]
        info["simd_level"] = ("avx512f" if "avx512f" in flags else "avx2" if "avx2" in flags
                              else "avx" if "avx" in flags else "sse4_2" if "sse4_2" in flags
                              else "baseline")
    return info


def _file_has(path, needles):
    """which of the byte strings occur in the file (a plain scan: symbol and library
    names sit in an ELF file's string tables)"""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return None
    return {n for n in needles if n in data}


def _simd(engine_path, cpu):
    try:
        from ._core import _engine as C
        q = C.simd_info()
    except (ImportError, AttributeError):   # an engine built before its query
        q = None
    if q is not None:
        out = {"source": "the engine's query (cad._core._engine.simd_info: the build's "
                         "clones, and the one gcc's resolver runs here)"}
        out.update(q)
        # libmvec: the engine knows the build enabled it; whether the compiler emitted
        # calls to it (not at -O1: the sanitizer build) its needed libraries tell
        found = _file_has(engine_path, (b"libmvec.so",))
        if found is not None:
            out["libmvec"] = b"libmvec.so" in found
        if not q["clones_built"]:
            out["picked"] = "default (no clones in this build)"
        return out
    return _simd_from_symbols(engine_path, cpu)


def _simd_from_symbols(engine_path, cpu):
    """the SIMD facts read from outside the engine (for one built before its query)"""
    out = {"source": "read from the compiled engine's symbols and needed libraries and "
                     "/proc/cpuinfo (the engine has no query for it)"}
    found = _file_has(engine_path, (b".avx2\x00", b".avx512f\x00", b"libmvec.so"))
    if found is None:
        out["clones_built"] = "unknown (engine not readable)"
        return out
    built = [isa for isa, tag in (("avx512f", b".avx512f\x00"), ("avx2", b".avx2\x00"))
             if tag in found]
    out["libmvec"] = b"libmvec.so" in found
    if not built:
        out["clones_built"] = []
        out["picked"] = "default (no clones in this build, or its symbols are stripped)"
        return out
    out["clones_built"] = built + ["default"]
    flags = set(cpu.get("simd_flags", []))
    if not flags:
        out["picked"] = "unknown (no /proc/cpuinfo)"
    else:
        out["picked"] = next((isa for isa in built if isa in flags), "default")
    return out


def _blas_libs():
    """threadpoolctl's view of the loaded BLAS/OpenMP libraries, or why there is none"""
    try:
        import threadpoolctl
    except ImportError:
        return None, "threadpoolctl not installed: pip install threadpoolctl names the library and its threads"
    try:
        return threadpoolctl.threadpool_info(), None
    except Exception as e:  # pragma: no cover (a broken library)
        return None, f"threadpoolctl failed: {type(e).__name__}: {e}"


def _linked(module_file, libs):
    """the threadpoolctl entries (BLAS) whose library the extension module links"""
    if not module_file or not libs:
        return []
    blas = [lib for lib in libs if lib.get("user_api") == "blas"]
    names = {os.path.basename(lib["filepath"]).encode(): lib for lib in blas if lib.get("filepath")}
    found = _file_has(module_file, tuple(names)) or set()
    return [names[n] for n in sorted(found)]


def _describe_blas(lib):
    keys = ("internal_api", "version", "architecture", "threading_layer", "num_threads", "filepath")
    return {k: lib.get(k) for k in keys if lib.get(k) is not None}


def _blas_build(mod, into):
    """the BLAS numpy's or scipy's build record names (show_config), where it has one"""
    try:
        blas = mod.show_config(mode="dicts")["Build Dependencies"]["blas"]
        into["blas_build"] = f"{blas.get('name')} {blas.get('version')}"
    except Exception:
        pass


def _numpy_scipy(libs):
    import numpy as np
    out = {"numpy": {"version": np.__version__}}
    _blas_build(np, out["numpy"])
    try:
        from numpy._core import _multiarray_umath as mu
    except ImportError:  # numpy 1.x
        try:
            from numpy.core import _multiarray_umath as mu
        except ImportError:
            mu = None
    linked = _linked(getattr(mu, "__file__", None), libs)
    if linked:
        out["numpy"]["blas"] = _describe_blas(linked[0])
    try:
        import scipy
    except ImportError as e:
        out["scipy"] = {"version": None, "problem": f"{type(e).__name__}: {e}"}
        return out
    out["scipy"] = {"version": scipy.__version__}
    _blas_build(scipy, out["scipy"])
    try:
        from scipy.linalg import cython_blas
        linked = _linked(cython_blas.__file__, libs)
        if linked:
            out["scipy"]["blas"] = _describe_blas(linked[0])
    except ImportError:
        pass
    return out


def _cuda(C):
    from . import cuda
    out = {"available": False}
    try:
        out["available"] = bool(cuda.is_available())
        n, msg = C.cuda_device_count()
        out["devices"] = max(int(n), 0)
        if n <= 0:
            out["driver"] = msg
        problem = cuda._pycuda_problem()
        out["pycuda"] = _version("pycuda") if problem is None else None
        if problem is not None:
            out["pycuda_problem"] = problem
        if cuda.is_fake():
            out["fake"] = True
        if out["available"] and not cuda.is_fake():
            why = []
        elif out["available"]:
            why = ["the fake device (CAD_CUDA_FAKE=1): host memory, no GPU"]
        else:
            why = ([f"driver: {msg}"] if n <= 0 else []) + ([problem] if problem else [])
        if why:
            out["why_not"] = "; ".join(why)
    except Exception as e:  # never let the report fail on the GPU's account
        out["why_not"] = f"{type(e).__name__}: {e}"
    return out


def collect():
    """Everything --info reports, as a JSON-able dict."""
    import cad

    from ._core import _engine as C
    cpu = _cpu()
    libs, blas_problem = _blas_libs()
    info = {
        "cad": {"version": cad.__version__, "path": os.path.dirname(cad.__file__),
                "engine": C.__file__},
        "python": {"version": platform.python_version(),
                   "implementation": platform.python_implementation(),
                   "executable": sys.executable},
        "platform": platform.platform(),
        "cpu": cpu,
    }
    info.update(_numpy_scipy(libs))
    cad_blas = {"source": "scipy.linalg.cython_blas / cython_lapack (dgemm, sgemm, getrs)",
                "dgemm": bool(C.HAVE_BLAS), "lapack": bool(C.HAVE_LAPACK),
                "per_call_threads": bool(C.BLAS_THREAD_CONTROL)}
    if "blas" in info.get("scipy", {}):
        cad_blas["library"] = info["scipy"]["blas"]
    else:   # scipy's build record: the library's name and version, not its threads
        cad_blas["library"] = info.get("scipy", {}).get("blas_build", "unknown")
        if blas_problem:
            cad_blas["library_problem"] = blas_problem
    info["cad"]["blas"] = cad_blas
    info["cad"]["threads"] = cad.get_num_threads()
    info["cad"]["simd"] = _simd(C.__file__, cpu)
    if libs is not None:
        info["threadpools"] = [_describe_blas(lib) | {"user_api": lib.get("user_api")}
                               for lib in libs]
    info["cuda"] = _cuda(C)
    info["peers"] = {p: _version(p) for p in PEERS}
    info["env"] = {k: v for k, v in sorted(os.environ.items())
                   if k.startswith(("OPENBLAS_", "OMP_", "MKL_", "CAD_", "JAX_", "XLA_"))}
    return info


def _blas_line(b):
    if not isinstance(b, dict):
        return str(b)
    parts = [b.get("internal_api", "?"), b.get("version", "")]
    extra = []
    if b.get("architecture"):
        extra.append(f"kernel {b['architecture']}")
    if b.get("num_threads") is not None:
        extra.append(f"{b['num_threads']} threads")
    text = " ".join(p for p in parts if p)
    if extra:
        text += f" ({', '.join(extra)})"
    if b.get("filepath"):
        text += f"  {b['filepath']}"
    return text


def render(info):
    """The --info text: one fact a line, 'name: value'."""
    cpu = info["cpu"]
    simd = info["cad"]["simd"]
    lines = [
        f"cad: {info['cad']['version']}  ({info['cad']['path']})",
        (f"python: {info['python']['version']} ({info['python']['implementation']})  "
         f"{info['python']['executable']}"),
        f"platform: {info['platform']}",
        f"cpu: {cpu.get('model')}",
        f"cores: {cpu.get('logical_cores')} logical"
        + (f", {cpu['physical_cores']} physical" if "physical_cores" in cpu else "")
        + (f", {cpu['usable_cores']} usable by this process" if "usable_cores" in cpu else ""),
        f"simd: {cpu.get('simd_level', 'unknown')}"
        + (f"  (flags: {' '.join(cpu['simd_flags'])})" if cpu.get("simd_flags") else ""),
        f"numpy: {info['numpy']['version']}",
    ]
    np_blas = info["numpy"].get("blas") or info["numpy"].get("blas_build")
    if np_blas:
        lines.append(f"numpy blas: {_blas_line(np_blas)}")
    sp = info.get("scipy", {})
    lines.append(f"scipy: {sp.get('version') or 'not installed (' + sp.get('problem', '') + ')'}")
    cb = info["cad"]["blas"]
    lib = cb.get("library") or (sp.get("blas_build") if sp else None) or "unknown"
    state = ("dgemm+lapack" if cb["dgemm"] and cb["lapack"] else "dgemm" if cb["dgemm"]
             else "none: plain-loop matmul fallback")
    lines.append(f"cad blas: {_blas_line(lib)}  [via scipy.linalg.cython_blas: {state}"
                 f"{', per-call thread control' if cb['per_call_threads'] else ''}]"
                 + (f"  ({cb['library_problem']})" if cb.get("library_problem") else ""))
    lines.append(f"cad threads: {info['cad']['threads']}  (cad.get_num_threads)")
    clones = simd.get("clones_built")
    clones_text = ", ".join(clones) if isinstance(clones, list) and clones else (clones or "none")
    lines.append(f"cad simd clones: built {clones_text}; picked {simd.get('picked', 'unknown')}; "
                 f"libmvec {'yes' if simd.get('libmvec') else 'no'}  "
                 + ("(the engine's query)" if simd.get("source", "").startswith("the engine")
                    else "(read from the engine's symbols: no engine query)"))
    cu = info["cuda"]
    if cu.get("available"):
        lines.append(f"cuda: available, {cu.get('devices', 0)} device(s)"
                     + (" (fake device)" if cu.get("fake") else ""))
    else:
        lines.append(f"cuda: not available: {cu.get('why_not', 'unknown')}")
    lines.append(f"pycuda: {cu.get('pycuda') or cu.get('pycuda_problem', 'unknown')}")
    peers = info["peers"]
    lines.append("peers: " + ", ".join(f"{p} {v or 'not installed'}" for p, v in peers.items()))
    if info["env"]:
        lines.append("env: " + " ".join(f"{k}={v}" for k, v in info["env"].items()))
    return "\n".join(lines)
