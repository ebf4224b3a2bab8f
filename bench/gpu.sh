#!/bin/bash
# The one device script (issue 4; ../shared/GPU.md): on the GPU machine, from the
# repository root, with the pycuda wheels carried in .whl/ (carry: [".whl"]):
#   installs pycuda, builds cad, compiles and loads the CUDA kernels, runs the CUDA
#   tests and the GPU benchmark against PyTorch; logs and JSON go to $OUT.
# Usage: bash bench/gpu.sh [--quick]      (well under 10 minutes on an H100/H200)
set -o pipefail
OUT=${OUT:-/tmp/cad_gpu_out}
mkdir -p "$OUT"
QUICK=""
[ "$1" = "--quick" ] && QUICK="--quick"
T0=$(date +%s)
stamp() { echo "[$(( $(date +%s) - T0 ))s] $*" | tee -a "$OUT/steps.log"; }

stamp "install pycuda"
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl \
    > "$OUT/pip.log" 2>&1 || { cat "$OUT/pip.log"; exit 1; }
export PYTHONPATH=/tmp/site:$PWD
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
python3 -c "import torch, numpy, Cython; print('torch', torch.__version__, 'numpy', numpy.__version__, 'cython', Cython.__version__)" \
    2>&1 | tee "$OUT/versions.txt"

stamp "build"
python3 setup.py build_ext --inplace -j 16 > "$OUT/build.log" 2>&1 || { tail -60 "$OUT/build.log"; exit 1; }

stamp "open the device, compile the kernels (nvcc, cached by pycuda)"
timeout 300 python3 -c "
import time, cad, cad.cuda
t = time.time(); x = cad.ones(3).to('cuda'); print('first use', round(time.time() - t, 1), 's')
print(cad.cuda.memory_info()); print((x * 2).cpu())
" 2>&1 | tee "$OUT/init.log"

stamp "CUDA tests"
timeout 420 python3 -m pytest -q -x -p no:cacheprovider tests/test_cuda.py 2>&1 | tee "$OUT/test_cuda.log" | tail -40

stamp "GPU benchmark"
timeout 420 python3 -m bench.gpu $QUICK --json "$OUT/gpu_bench.json" 2>&1 | tee "$OUT/gpu_bench.log"
stamp "done"
