#!/usr/bin/env bash
# Builds the GoogleTest suite (the engine without the CUDA kernels, no Python) with AddressSanitizer
# and UndefinedBehaviorSanitizer into build/asan/ and runs it; exits non-zero on any test failure or
# sanitizer report. Not part of CI: the instrumented build takes about 10 minutes on 2 cores, which
# the CI budget does not leave room for (README, "Security and robustness"); run it after touching
# the engine's parsers, loaders or shape checks. Needs the environment scripts/setup.sh prepares.
#   bash scripts/sanitize.sh                         # everything
#   bash scripts/sanitize.sh --gtest_filter='Safetensors*'   # arguments go to nd_tests
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${ND_VENV:-$ROOT/.venv}/bin/python"
OUT="$ROOT/build/asan"

# LibTorch itself is not instrumented: vptr checks would flag its classes' type info across the
# boundary, and allocations made inside it are freed by our code and the other way round.
SAN="-fsanitize=address,undefined -fno-sanitize=vptr -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
export CMAKE_C_COMPILER_LAUNCHER=ccache CMAKE_CXX_COMPILER_LAUNCHER=ccache
export CCACHE_SLOPPINESS="pch_defines,time_macros,include_file_mtime,include_file_ctime"
cmake -S "$ROOT" -B "$OUT" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DND_WITH_CUDA=OFF -DND_BUILD_TESTS=ON \
  -DPython_EXECUTABLE="$PY" -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g" \
  -DCMAKE_CXX_FLAGS="$SAN" -DCMAKE_EXE_LINKER_FLAGS="$SAN" -DCMAKE_SHARED_LINKER_FLAGS="$SAN" >/dev/null
cmake --build "$OUT" --target nd_tests -j "${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}"

# Leaks: LibTorch keeps process-lifetime singletons (its dispatcher, thread pools) that LeakSanitizer
# reports at exit; the Python suite measures our host memory across repeated calls instead.
export ASAN_OPTIONS="detect_leaks=0:alloc_dealloc_mismatch=0:abort_on_error=1:strict_string_checks=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
cd "$ROOT"
"$OUT/nd_tests" "$@"
