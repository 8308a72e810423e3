#!/usr/bin/env bash
# One call on the lent GPU machine: build against its torch, run the kernel and GPU tests, then the
# side-by-side benchmarks. Every phase logs to $OUT and a failing phase does not stop the next ones,
# so one call brings back everything it can. The GPU machine has no network: from this machine,
# diffusers travels as a wheel (with pillow and tqdm for a Python 3.12 machine that lacks them), and
# the CLIP vocabulary too:
#   .venv/bin/pip download diffusers==0.40.0 --no-deps -d .whl
#   .venv/bin/pip download pillow tqdm --no-deps --only-binary=:all: --python-version 3.12 \
#     --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .whl
#   .venv/bin/pip download pytest pluggy iniconfig --no-deps --only-binary=:all: --python-version 3.12 -d .whl
#   device run: bash bench/run_gpu.sh [PHASE...]      carry: [".whl", "tests/data"]
# Phases (default: all, in this order): build tests kernels sd15 sdxl sdxl_refiner kandinsky controlnet
# x4_upscaler inpaint
# All of them take longer than one call's 10 minutes. With a 15-minute device budget, run the most
# telling first, each call warm on the last: `build tests` (the build and GPU parity, ~8 min), then
# `sd15` (issue 4's and 5's SD 1.5 tables; the build persists while the machine stays warm), then
# `sdxl` if time is left. The build phase must run again on a fresh machine.
set -uo pipefail
OUT="${OUT:-out}"
mkdir -p "$OUT"
PHASES=("$@")
[ ${#PHASES[@]} -eq 0 ] && PHASES=(build tests kernels sd15 sdxl sdxl_refiner kandinsky controlnet x4_upscaler inpaint)
has() { local p; for p in "${PHASES[@]}"; do [ "$p" = "$1" ] && return 0; done; return 1; }
# Each phase gets a wall-clock cap so one hang cannot eat the session's device time.
phase() { local name=$1 limit=$2; shift 2; echo "== $name (limit ${limit}s)"; local t0=$SECONDS
  timeout "$limit" "$@" > "$OUT/$name.txt" 2>&1; local rc=$?
  echo "   rc=$rc in $((SECONDS - t0))s"; tail -n 25 "$OUT/$name.txt"; return 0; }

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"
python -c "import torch; print('torch', torch.__version__, torch.version.cuda)" | tee -a "$OUT/gpu.txt"
python -m pip install -q --no-deps --no-index .whl/diffusers-*.whl 2>&1 | tail -2
python -c "import PIL" 2>/dev/null || python -m pip install -q --no-deps --no-index .whl/pillow-*.whl 2>&1 | tail -2
python -c "import tqdm" 2>/dev/null || python -m pip install -q --no-deps --no-index .whl/tqdm-*.whl 2>&1 | tail -2
python -c "import pytest" 2>/dev/null || python -m pip install -q --no-deps --no-index .whl/pytest-*.whl \
  .whl/pluggy-*.whl .whl/iniconfig-*.whl 2>&1 | tail -2

if has build; then
  export CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)"
  phase build 420 python -m pip install --no-build-isolation --no-deps -e . -Cbuild-dir=build/gpu \
    -Ccmake.define.ND_CUDA_ARCHITECTURES=90
  python -c "import native_diffusers._C as C; print('kernels', C.fused_kernels_available())" | tee -a "$OUT/gpu.txt"
fi
if has tests; then
  phase kernel_tests 120 build/gpu/nd_kernel_tests --gtest_brief=1
  phase gpu_tests 420 python -m pytest tests/python/test_fused_ops.py tests/python/gpu -q -p no:cacheprovider -rs
fi
has kernels && phase bench_kernels 120 python bench/bench_kernels.py
has sd15 && phase bench_sd15 600 python bench/bench_img2img.py --config sd15 --device cuda --dtype float16 \
  --offload none,model,sequential
has sdxl && phase bench_sdxl 600 python bench/bench_img2img.py --config sdxl --device cuda --dtype float16 \
  --offload none,model,sequential --runs 2
has sdxl_refiner && phase bench_sdxl_refiner 600 python bench/bench_guide_models.py --model sdxl_refiner --size full --device cuda
has kandinsky && phase bench_kandinsky22 600 python bench/bench_guide_models.py --model kandinsky22 --size full --device cuda
has controlnet && phase bench_controlnet 600 python bench/bench_guide_models.py --model controlnet --size full --device cuda
has x4_upscaler && phase bench_x4_upscaler 600 python bench/bench_guide_models.py --model x4_upscaler --size full \
  --device cuda
has inpaint && phase bench_inpaint 600 python bench/bench_guide_models.py --model inpaint --size full --device cuda
exit 0
