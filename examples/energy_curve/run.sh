#!/usr/bin/env bash
# Installs what is missing (Debian bookworm, as root), builds the energy_curve example, runs it
# on the bundled State of the Union sentences and draws the figure:
#   examples/energy_curve/run.sh [BUILD_DIR]
# Writes BUILD_DIR/energy_curve.csv and BUILD_DIR/energy_curve.png.
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
  echo "installing: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DUNFOLD_BUILD_TESTS=OFF \
  -DUNFOLD_BUILD_BENCHMARKS=OFF -DUNFOLD_BUILD_EXAMPLES=ON >/dev/null
cmake --build "$build" --target energy_curve -j2 >/dev/null

"$build/examples/energy_curve/energy_curve" --csv "$build/energy_curve.csv"
gnuplot -e "csv='$build/energy_curve.csv'; png='$build/energy_curve.png'" "$here/plot.gp"
echo "drew $build/energy_curve.png"
