#!/usr/bin/env bash
# Installs what is missing (Debian bookworm, as root), builds paper_figures, writes the CSV
# files of the paper's Figures 1 to 4 and draws them:
#   examples/paper_figures/run.sh [BUILD_DIR]
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${1:-"$root/build-example"}

bash "$root/examples/build.sh" paper_figures "$build"

mkdir -p "$build/paper_figures"
"$build/examples/paper_figures/paper_figures" --out "$build/paper_figures"
gnuplot -e "dir='$build/paper_figures'; png='$build/paper_figures/paper_figures.png'" \
  "$here/plot.gp"
echo "drew $build/paper_figures/paper_figures.png"
