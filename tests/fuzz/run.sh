#!/usr/bin/env bash
# Builds the libFuzzer targets of the file readers and runs each for SECONDS seconds.
#   tests/fuzz/run.sh SECONDS [LIBFUZZER_FLAG...]
# SECONDS = 0 means no time limit (then pass -runs=N). The build and the working corpora
# go to $UNFOLD_FUZZ_BUILD (default build-fuzz/ at the repository root); the seed corpora in
# tests/fuzz/corpus/ are only read. UNFOLD_FUZZ_TARGETS picks some of "glove sentences npy".
# Needs clang++ with libFuzzer (Debian: clang, libclang-rt-14-dev). A crash, sanitizer
# report, leak, timeout or allocation over the limits fails the script and leaves the input
# in $UNFOLD_FUZZ_BUILD/artifacts/<target>/.
set -euo pipefail

if [ $# -lt 1 ] || ! [[ $1 =~ ^[0-9]+$ ]]; then
  echo "usage: $0 SECONDS [LIBFUZZER_FLAG...]" >&2
  exit 2
fi
seconds=$1
shift

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${UNFOLD_FUZZ_BUILD:-"$root/build-fuzz"}
cxx=${UNFOLD_FUZZ_CXX:-clang++}
read -r -a targets <<<"${UNFOLD_FUZZ_TARGETS:-glove sentences npy}"

eigen_flags=$(pkg-config --cflags eigen3 2>/dev/null || echo "-I/usr/include/eigen3")
mkdir -p "$build"

echo "== fuzz build ($cxx): $build"
pids=()
for t in "${targets[@]}"; do
  # shellcheck disable=SC2086  # eigen_flags is a list of flags
  "$cxx" -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
    -fno-omit-frame-pointer -Wall -Wextra -Wpedantic -I"$root/include" $eigen_flags \
    "$here/fuzz_$t.cpp" -o "$build/fuzz_$t" &
  pids+=($!)
done
built=1
for pid in "${pids[@]}"; do
  wait "$pid" || built=0
done
if [ "$built" -eq 0 ]; then
  echo "fuzz build failed" >&2
  exit 1
fi

# Limits: 2 GB resident in all, 512 MB in one allocation, 30 s for one input.
flags=(-max_total_time="$seconds" -rss_limit_mb=2048 -malloc_limit_mb=512 -timeout=30
       -max_len=4096 -print_final_stats=1 "$@")
summary=()
status=0
for t in "${targets[@]}"; do
  corpus="$build/corpus/$t"
  artifacts="$build/artifacts/$t/"
  log="$build/fuzz_$t.log"
  mkdir -p "$corpus" "$artifacts"
  echo "== fuzz_$t: ${seconds}s $*"
  start=$(date +%s)
  # New inputs go to the working corpus (first directory); the seeds are read only.
  if ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} \
     UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
     "$build/fuzz_$t" -dict="$here/$t.dict" -artifact_prefix="$artifacts" "${flags[@]}" \
       "$corpus" "$here/corpus/$t" >"$log" 2>&1; then
    result=ok
  else
    result="FAILED (see $log; input in $artifacts)"
    status=1
    tail -n 60 "$log"
  fi
  elapsed=$(( $(date +%s) - start ))
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  # With -fork=N the parent prints no final stats, only its count of runs so far.
  [ -n "$runs" ] ||
    runs=$(sed -n 's/^#\([0-9]*\): cov:.*/\1/p; s/^INFO: fuzzed for \([0-9]*\) iterations.*/\1/p' \
      "$log" | tail -n 1)
  rss=$(sed -n 's/^stat::peak_rss_mb: *//p' "$log" | tail -n 1)
  line=$(printf 'fuzz_%-10s %10s executions in %4d s, peak RSS %s MB: %s' \
    "$t" "${runs:-?}" "$elapsed" "${rss:-?}" "$result")
  echo "$line"
  summary+=("$line")
done

echo "== fuzz summary"
printf '%s\n' "${summary[@]}"
exit "$status"
