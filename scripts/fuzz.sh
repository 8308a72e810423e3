#!/usr/bin/env bash
# Builds the libFuzzer harnesses of tests/fuzz/ (clang, ASan + UBSan, no LibTorch) into build/fuzz/
# and runs each for ND_FUZZ_SECONDS (default 60) on a copy of its seed corpus, after replaying its
# saved regressions (tests/fuzz/regressions/<harness>/). Exits non-zero on any crash, sanitizer
# report, leak, timeout or out-of-memory, and prints the executions each fuzzer made.
# Installs clang and libFuzzer (compiler-rt) only if missing. Never writes inside the repository
# outside build/fuzz/.
#   ND_FUZZ_SECONDS=5 bash scripts/fuzz.sh            # a short run
#   bash scripts/fuzz.sh fuzz_json_config             # only the named harnesses
#   ND_FUZZ_CXX=clang++-16 bash scripts/fuzz.sh       # another clang
#   ND_FUZZ_CSRC=/path/to/csrc bash scripts/fuzz.sh    # fuzz another copy of the engine sources
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
SECONDS_EACH="${ND_FUZZ_SECONDS:-60}"
CXX_FUZZ="${ND_FUZZ_CXX:-clang++}"
OUT="$ROOT/build/fuzz"
# The engine sources to fuzz; another checkout's csrc/ can be pointed at (e.g. to try a fix).
CSRC="$(cd "${ND_FUZZ_CSRC:-$ROOT/csrc}" && pwd)"
HARNESSES=(fuzz_safetensors fuzz_json_config fuzz_clip_tokenizer)
[ $# -gt 0 ] && HARNESSES=("$@")

# The engine sources each harness links: only torch-free parsers.
sources_for() {
  case "$1" in
    fuzz_safetensors) echo "$CSRC/io/safetensors.cpp $CSRC/io/json_config.cpp" ;;
    fuzz_json_config) echo "$CSRC/io/json_config.cpp" ;;
    fuzz_clip_tokenizer) echo "$CSRC/tokenizers/clip_tokenizer.cpp $CSRC/io/json_config.cpp" ;;
    *) echo "unknown harness '$1'" >&2; return 1 ;;
  esac
}
libs_for() {
  case "$1" in
    fuzz_clip_tokenizer) echo "-lutf8proc" ;;
    *) echo "" ;;
  esac
}

mkdir -p "$OUT"
# Whether the compiler can build and link a libFuzzer + ASan + UBSan binary.
libfuzzer_works() {
  command -v "$CXX_FUZZ" >/dev/null || return 1
  printf '%s\n' '#include <cstddef>' '#include <cstdint>' \
    'extern "C" int LLVMFuzzerTestOneInput(const uint8_t*, size_t) { return 0; }' \
    >"$OUT/probe.cpp"
  "$CXX_FUZZ" -fsanitize=fuzzer,address,undefined "$OUT/probe.cpp" -o "$OUT/probe" 2>/dev/null
}

if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
apt_updated=0
apt_install() {
  if [ "$apt_updated" = 0 ]; then $SUDO apt-get update -qq; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@"
}
need_apt=()
[ -f /usr/include/nlohmann/json.hpp ] || need_apt+=(nlohmann-json3-dev)
[ -f /usr/include/utf8proc.h ] || need_apt+=(libutf8proc-dev)
command -v "$CXX_FUZZ" >/dev/null || need_apt+=(clang)
if [ ${#need_apt[@]} -gt 0 ]; then apt_install "${need_apt[@]}"; fi
if ! libfuzzer_works; then
  # Debian's clang only recommends compiler-rt, which holds libFuzzer and the sanitizer runtimes:
  # the distribution's default (libclang-rt-dev), else the one matching this clang's version.
  major="$("$CXX_FUZZ" -dumpversion | cut -d. -f1)"
  apt_install libclang-rt-dev || apt_install "libclang-rt-$major-dev" || true
fi
if ! libfuzzer_works; then
  echo "FAILED: $CXX_FUZZ cannot build -fsanitize=fuzzer,address,undefined binaries" >&2
  exit 1
fi
rm -f "$OUT/probe.cpp" "$OUT/probe"

# ---- build ---------------------------------------------------------------------------------------
CXXFLAGS=(-std=c++17 -O1 -g -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined
  -fno-sanitize-recover=undefined -Wall -Wextra -I "$CSRC")
LAUNCHER=()
command -v ccache >/dev/null && LAUNCHER=(ccache)
export CCACHE_SLOPPINESS="${CCACHE_SLOPPINESS:-time_macros,include_file_mtime,include_file_ctime}"

build_start=$(date +%s)
declare -A objects=()
for h in "${HARNESSES[@]}"; do
  for src in tests/fuzz/$h.cpp $(sources_for "$h"); do objects["$src"]=1; done
done
mkdir -p "$OUT/obj"
pids=()
jobs_max="$(nproc)"
for src in "${!objects[@]}"; do
  obj="$OUT/obj/$(basename "$src" .cpp).o"
  "${LAUNCHER[@]}" "$CXX_FUZZ" "${CXXFLAGS[@]}" -c "$src" -o "$obj" &
  pids+=($!)
  if [ ${#pids[@]} -ge "$jobs_max" ]; then wait "${pids[0]}"; pids=("${pids[@]:1}"); fi
done
for p in "${pids[@]}"; do wait "$p"; done
for h in "${HARNESSES[@]}"; do
  objs=()
  for src in tests/fuzz/$h.cpp $(sources_for "$h"); do objs+=("$OUT/obj/$(basename "$src" .cpp).o"); done
  # shellcheck disable=SC2046
  "$CXX_FUZZ" "${CXXFLAGS[@]}" "${objs[@]}" $(libs_for "$h") -o "$OUT/$h"
done
echo "fuzz build: $(( $(date +%s) - build_start )) s"

# ---- run -----------------------------------------------------------------------------------------
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
export ND_FUZZ_TMPDIR="$OUT/tmp"
status=0
summary=()
for h in "${HARNESSES[@]}"; do
  log="$OUT/$h.log"
  corpus="$OUT/corpus/$h"
  artifacts="$OUT/artifacts/$h"
  rm -rf "$corpus" "$artifacts" "$ND_FUZZ_TMPDIR"
  mkdir -p "$corpus" "$artifacts" "$ND_FUZZ_TMPDIR"
  [ -d "tests/fuzz/corpus/$h" ] && cp -r "tests/fuzz/corpus/$h/." "$corpus/"
  common=(-rss_limit_mb=2048 -timeout=10 -artifact_prefix="$artifacts/")

  # Saved crashes first: each is run once and must pass.
  regressions=()
  if [ -d "tests/fuzz/regressions/$h" ]; then
    while IFS= read -r -d '' f; do regressions+=("$f"); done \
      < <(find "tests/fuzz/regressions/$h" -type f ! -name '*.md' -print0 | sort -z)
  fi
  failed=0
  : >"$OUT/$h.regressions.log"
  for f in "${regressions[@]}"; do
    rrc=0
    "$OUT/$h" "${common[@]}" "$f" >"$OUT/$h.regression.tmp" 2>&1 || rrc=$?
    cat "$OUT/$h.regression.tmp" >>"$OUT/$h.regressions.log"
    if [ "$rrc" -ne 0 ]; then
      echo "FAILED: $h crashes on the saved regression input $f"
      grep -m 1 -E 'runtime error|invariant violated|ND_FUZZ_STRICT|ERROR: ' "$OUT/$h.regression.tmp" || true
      failed=$((failed + 1))
    fi
  done
  rm -f "$OUT/$h.regression.tmp"
  if [ "$failed" -gt 0 ]; then
    # The fuzzer would stop at the same bug; fix it first (log: build/fuzz/<harness>.regressions.log).
    status=1
    summary+=("$h|-|-|CRASH on $failed of ${#regressions[@]} regression inputs")
    continue
  fi

  echo "== $h: ${SECONDS_EACH} s on $(find "$corpus" -type f | wc -l) seed inputs, ${#regressions[@]} regressions =="
  start=$(date +%s)
  rc=0
  # A fixed seed keeps CI's run reproducible; ND_FUZZ_SEED=0 lets libFuzzer pick one (exploration).
  "$OUT/$h" "${common[@]}" -seed="${ND_FUZZ_SEED:-1}" -max_total_time="$SECONDS_EACH" -print_final_stats=1 "$corpus" \
    >"$log" 2>&1 || rc=$?
  took=$(( $(date +%s) - start ))
  execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)"
  done_line="$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1 || true)"
  [ -n "$done_line" ] && echo "$done_line"
  leftovers="$(find "$ND_FUZZ_TMPDIR" -mindepth 1 | head -n 5)"
  if [ "$rc" -ne 0 ]; then
    echo "FAILED: $h exited $rc after $took s; inputs saved under $artifacts/ (log: $log)"
    grep -E 'ERROR: |SUMMARY: |runtime error|invariant violated|ND_FUZZ_STRICT' "$log" | head -n 10 || true
    tail -n 60 "$log"
    status=1
    summary+=("$h|${execs:-?}|$took|CRASH (exit $rc)")
  elif [ -n "$leftovers" ]; then
    echo "FAILED: $h left temporary files behind: $leftovers"
    status=1
    summary+=("$h|${execs:-?}|$took|LEFT TEMP FILES")
  else
    summary+=("$h|${execs:-?}|$took|ok")
  fi
done
rm -rf "$ND_FUZZ_TMPDIR"

echo "== Fuzz summary (ND_FUZZ_SECONDS=$SECONDS_EACH) =="
printf '%-22s %14s %8s  %s\n' harness executions seconds result
for row in "${summary[@]}"; do
  IFS='|' read -r name execs took result <<<"$row"
  printf '%-22s %14s %8s  %s\n' "$name" "$execs" "$took" "$result"
done
exit "$status"
