#!/usr/bin/env bash
# Runs every test: the GoogleTest suite (C++ engine, no Python) and pytest (Python API and parity
# with diffusers/transformers). Sets the machine up first, so it works on a fresh clone.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh
PY="${ND_VENV:-$ROOT/.venv}/bin/python"

echo "== Lint (ruff: pyflakes + pycodestyle, pyproject.toml) =="
lint_status=0
"$PY" -m ruff check python tests bench || lint_status=$?

echo "== C++ tests (GoogleTest) =="
cpp_status=0
"$ROOT/build/release/nd_tests" --gtest_brief=1 "$@" || cpp_status=$?
if [ -x "$ROOT/build/release/nd_kernel_tests" ]; then
  "$ROOT/build/release/nd_kernel_tests" --gtest_brief=1 || cpp_status=$?
fi

echo "== Fuzzers (libFuzzer, 60 s each) =="
fuzz_status=0
bash scripts/fuzz.sh || fuzz_status=$?

echo "== Python tests (pytest) =="
py_status=0
"$PY" -m pytest tests/python -q -p no:cacheprovider || py_status=$?

if [ "$lint_status" -ne 0 ] || [ "$cpp_status" -ne 0 ] || [ "$fuzz_status" -ne 0 ] ||
  [ "$py_status" -ne 0 ]; then
  echo "FAILED: lint exit $lint_status, C++ exit $cpp_status, fuzz exit $fuzz_status, Python exit $py_status"
  exit 1
fi
