#!/usr/bin/env bash
# Installs what an example needs and is missing (Debian bookworm, as root), then configures
# the examples in BUILD_DIR and builds one of them:
#   examples/build.sh TARGET BUILD_DIR
# The run.sh beside each example calls this, then runs the program and draws its figure.
set -euo pipefail

target=${1:?usage: examples/build.sh TARGET BUILD_DIR}
build=${2:?usage: examples/build.sh TARGET BUILD_DIR}
root=$(cd "$(dirname "$0")/.." && pwd)

missing=()
for pkg in cmake g++ make libeigen3-dev gnuplot-nox; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" ||
    missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DUNFOLD_BUILD_TESTS=OFF \
  -DUNFOLD_BUILD_BENCHMARKS=OFF -DUNFOLD_BUILD_EXAMPLES=ON >/dev/null
cmake --build "$build" --target "$target" -j2 >/dev/null
