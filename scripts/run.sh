#!/usr/bin/env bash
# The main job: sets the machine up, then runs native_diffusers on a checkpoint (a folder or a hub
# id given as the first argument) or, without one, on a small random-weight checkpoint it makes.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh" >&2
exec "${ND_VENV:-$ROOT/.venv}/bin/python" -m native_diffusers "$@"
