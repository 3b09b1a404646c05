#!/usr/bin/env bash
# Installs what is missing (Debian bookworm, as root), builds energy_families, runs every
# energy family on the bundled sentences and draws the figure:
#   examples/energy_families/run.sh [BUILD_DIR]
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${1:-"$root/build-example"}

missing=()
for pkg in cmake g++ make libeigen3-dev gnuplot-nox; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" ||
    missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DUNFOLD_BUILD_TESTS=OFF \
  -DUNFOLD_BUILD_BENCHMARKS=OFF -DUNFOLD_BUILD_EXAMPLES=ON >/dev/null
cmake --build "$build" --target energy_families -j2 >/dev/null

"$build/examples/energy_families/energy_families" --csv "$build/energy_families.csv"
gnuplot -e "csv='$build/energy_families.csv'; png='$build/energy_families.png'" "$here/plot.gp"
echo "drew $build/energy_families.png"
