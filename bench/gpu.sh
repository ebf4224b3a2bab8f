#!/bin/bash
# The one device script (issue 4; ../shared/GPU.md): on the GPU machine, from the
# repository root, with the pycuda wheels carried in .whl/ (carry: [".whl"]):
#   installs pycuda, builds cad, compiles and loads the CUDA kernels, runs the CUDA
#   tests and the GPU benchmark against PyTorch; logs and JSON go to $OUT.
# Usage: bash bench/gpu.sh [--quick] [--prebuilt]     (well under 10 minutes on an H100/H200)
#   --prebuilt: use a carried CPython 3.12 build (cad/_core/_engine.cpython-312-*.so and
#   cad/_core/_kernels.cu in carry) when it imports, and .whl/cad_sm90.cubin (nvcc --cubin
#   -arch sm_90 -O3 cad/_core/_kernels.cu, made beside it) through CAD_CUDA_CUBIN: this
#   saves the build and the nvcc run (about a minute of device time).
set -o pipefail
OUT=${OUT:-/tmp/cad_gpu_out}
mkdir -p "$OUT"
QUICK=""
PREBUILT=""
for a in "$@"; do
    [ "$a" = "--quick" ] && QUICK="--quick"
    [ "$a" = "--prebuilt" ] && PREBUILT=1
done
T0=$(date +%s)
stamp() { echo "[$(( $(date +%s) - T0 ))s] $*" | tee -a "$OUT/steps.log"; }

stamp "install pycuda"
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl \
    > "$OUT/pip.log" 2>&1 || { cat "$OUT/pip.log"; exit 1; }
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
python3 -c "import torch, numpy, Cython; print('torch', torch.__version__, 'numpy', numpy.__version__, 'cython', Cython.__version__)" \
    2>&1 | tee "$OUT/versions.txt"

if [ -n "$PREBUILT" ] && python3 -c "import cad._core._engine" > "$OUT/build.log" 2>&1; then
    stamp "carried build imports; not building"
    [ -f .whl/cad_sm90.cubin ] && export CAD_CUDA_CUBIN=$PWD/.whl/cad_sm90.cubin
else
    stamp "build"
    python3 setup.py build_ext --inplace -j 16 >> "$OUT/build.log" 2>&1 || { tail -60 "$OUT/build.log"; exit 1; }
fi

stamp "open the device, compile the kernels (nvcc, cached by pycuda)"
timeout 300 python3 -c "
import time, cad, cad.cuda
t = time.time(); x = cad.ones(3).to('cuda'); print('first use', round(time.time() - t, 1), 's')
print(cad.cuda.memory_info()); print((x * 2).cpu())
" 2>&1 | tee "$OUT/init.log"

stamp "CUDA tests"
TO=""
python3 -c "import pytest_timeout" 2>/dev/null && TO="--timeout=100"
timeout 200 python3 -m pytest -q -p no:cacheprovider --maxfail=60 -rf $TO tests/test_cuda.py \
    > "$OUT/test_cuda.log" 2>&1
tail -45 "$OUT/test_cuda.log"
stamp "CUDA tests elsewhere (fused optimizer step, interop with torch/CuPy, cad.scipy on the device)"
timeout 150 python3 -m pytest -q -p no:cacheprovider -rf $TO -k "cuda or gpu" tests/test_optim.py \
    tests/test_interop.py tests/test_scipy_signal.py tests/test_scipy_linalg.py > "$OUT/test_cuda_more.log" 2>&1
tail -15 "$OUT/test_cuda_more.log"

stamp "GPU benchmark"
timeout 240 python3 -m bench.gpu $QUICK --json "$OUT/gpu_bench.json" 2>&1 | tee "$OUT/gpu_bench.log"
stamp "done"
