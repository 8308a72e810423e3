#!/usr/bin/env bash
# One call on the lent GPU machine: build against its torch, run the kernel and GPU tests, then the
# side-by-side benchmarks. From this machine (diffusers is carried as a wheel; the CLIP vocabulary too):
#   .venv/bin/pip download diffusers==0.40.0 --no-deps -d .whl
#   device run: bash bench/run_gpu.sh     carry: [".whl", "tests/data"]
# Results land in $OUT (bench_sd15.md, test logs) for bench/RESULTS.md.
set -euo pipefail
OUT="${OUT:-out}"
mkdir -p "$OUT"
python -m pip install -q --no-deps --no-index .whl/*.whl
export CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)"
python -m pip install -q --no-build-isolation -e . -Cbuild-dir=build/gpu \
  -Ccmake.define.CMAKE_CUDA_ARCHITECTURES=90 2>&1 | tail -20
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"
build/gpu/nd_kernel_tests --gtest_brief=1 2>&1 | tee "$OUT/kernel_tests.txt" | tail -5
python -m pytest tests/python -q -x -m gpu -p no:cacheprovider 2>&1 | tee "$OUT/gpu_tests.txt" | tail -5 || true
python bench/bench_img2img.py --config sd15 --device cuda --dtype float16 2>&1 | tee "$OUT/bench_sd15.md" | tail -8
python bench/bench_guide_models.py --model sdxl_refiner --size full --device cuda 2>&1 | tee "$OUT/bench_sdxl_refiner.md" | tail -6
python bench/bench_guide_models.py --model kandinsky22 --size full --device cuda 2>&1 | tee "$OUT/bench_kandinsky22.md" | tail -6
