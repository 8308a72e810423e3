#!/usr/bin/env bash
# Prepares a fresh machine: system packages, a virtual environment, torch, the build and the
# test-only reference packages. Idempotent: a second run only rebuilds what changed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${ND_VENV:-$ROOT/.venv}"
TORCH_SPEC="${ND_TORCH_SPEC:-torch==2.13.0}"

# Pinned so that a new release cannot move the parity target silently.
DIFFUSERS_VERSION=0.40.0
TRANSFORMERS_VERSION=5.17.0

need_apt=()
[ -f /usr/include/nlohmann/json.hpp ] || need_apt+=(nlohmann-json3-dev)
[ -f /usr/include/gtest/gtest.h ] || need_apt+=(libgtest-dev)
[ -f /usr/include/utf8proc.h ] || need_apt+=(libutf8proc-dev)
command -v ccache >/dev/null || need_apt+=(ccache)
command -v ninja >/dev/null || need_apt+=(ninja-build)
command -v cmake >/dev/null || need_apt+=(cmake)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}"
fi

if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
PY="$VENV/bin/python"
"$PY" -m pip install -q --upgrade pip
if ! "$PY" -c "import torch" 2>/dev/null; then
  "$PY" -m pip install -q "$TORCH_SPEC"
fi
"$PY" -m pip install -q "scikit-build-core>=0.10" "pybind11>=2.13" numpy pillow safetensors \
  pytest nbclient nbformat ipykernel "huggingface_hub" scipy "ruff==0.17.6" \
  "diffusers==$DIFFUSERS_VERSION" "transformers==$TRANSFORMERS_VERSION"

# The real CLIP BPE vocabulary ships inside open_clip_torch's wheel; its dependencies (torchvision)
# have no CPU build here, so take the wheel alone and keep just the vocabulary file.
VOCAB="$ROOT/tests/data/bpe_simple_vocab_16e6.txt.gz"
if [ ! -f "$VOCAB" ]; then
  tmp="$(mktemp -d)"
  "$PY" -m pip download -q --no-deps open_clip_torch==3.3.0 -d "$tmp"
  "$PY" - "$tmp" "$VOCAB" <<'PYEOF'
import glob, os, sys, zipfile
wheel = glob.glob(os.path.join(sys.argv[1], "*.whl"))[0]
os.makedirs(os.path.dirname(sys.argv[2]), exist_ok=True)
with zipfile.ZipFile(wheel) as z:
    name = next(n for n in z.namelist() if n.endswith("bpe_simple_vocab_16e6.txt.gz"))
    with open(sys.argv[2], "wb") as f:
        f.write(z.read(name))
PYEOF
  rm -rf "$tmp"
fi

# ccache keeps rebuilds after a fresh clone short; PCH needs its sloppiness settings.
export CMAKE_C_COMPILER_LAUNCHER=ccache CMAKE_CXX_COMPILER_LAUNCHER=ccache CMAKE_CUDA_COMPILER_LAUNCHER=ccache
export CCACHE_SLOPPINESS="pch_defines,time_macros,include_file_mtime,include_file_ctime"
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}"
"$PY" -m pip install -q --no-build-isolation -e "$ROOT" \
  -Cbuild-dir="$ROOT/build/release" -Ceditable.rebuild=false
