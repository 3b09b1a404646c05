#!/usr/bin/env bash
# Installs what is missing (Debian bookworm, as root), then builds and runs every test twice:
# an optimised build (tests, benchmarks and examples built; the tests run) and an
# address + undefined sanitizer build of the tests and examples.
#   tests/run.sh [BUILD_ROOT]
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-"$root/build-tests"}
jobs=${UNFOLD_JOBS:-2}

missing=()
for pkg in cmake g++ make libeigen3-dev catch2 libbenchmark-dev; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" ||
    missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

echo "== optimised build: $build/release"
cmake -S "$root" -B "$build/release" -DCMAKE_BUILD_TYPE=Release -DUNFOLD_BUILD_TESTS=ON \
  -DUNFOLD_BUILD_BENCHMARKS=ON -DUNFOLD_BUILD_EXAMPLES=ON >/dev/null
cmake --build "$build/release" -j"$jobs"
ctest --test-dir "$build/release" --output-on-failure -j"$jobs"

# Eigen's own assertions stay on here (no NDEBUG), beside the sanitizers.
echo "== sanitizer build (address, undefined): $build/sanitize"
cmake -S "$root" -B "$build/sanitize" -DCMAKE_BUILD_TYPE=None -DCMAKE_CXX_FLAGS="-O1 -g" \
  -DUNFOLD_SANITIZE=ON -DUNFOLD_BUILD_TESTS=ON -DUNFOLD_BUILD_BENCHMARKS=OFF \
  -DUNFOLD_BUILD_EXAMPLES=ON >/dev/null
cmake --build "$build/sanitize" -j"$jobs"
ctest --test-dir "$build/sanitize" --output-on-failure -j"$jobs"
