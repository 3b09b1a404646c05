#!/usr/bin/env bash
# Installs what is missing (Debian bookworm, as root), builds paper_figures, writes the CSV
# files of the paper's Figures 1 to 4 and draws them:
#   examples/paper_figures/run.sh [BUILD_DIR]
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
cmake --build "$build" --target paper_figures -j2 >/dev/null

mkdir -p "$build/paper_figures"
"$build/examples/paper_figures/paper_figures" --out "$build/paper_figures"
gnuplot -e "dir='$build/paper_figures'; png='$build/paper_figures/paper_figures.png'" \
  "$here/plot.gp"
echo "drew $build/paper_figures/paper_figures.png"
